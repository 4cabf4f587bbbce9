//! The run log: every `ask` in an SQLite database (docs/log.md lists the tables),
//! written as the run goes — the run at its start, each call as it comes back, each
//! round's decision, the report at the end — so that a run killed in the middle keeps
//! every answer that had arrived. The log is a record, never a reason to fail: a log that
//! cannot be opened or written is one warning, and the run goes on without it.

mod read;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// An open log, for `logs` and `replay` ([`open_existing`], [`load_report`]).
pub type Db = Connection;

pub use read::{command, list, load_report, render_list, render_show, show};

/// Opens (creating it and its directory when needed) and migrates the log at `path`.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A directory that cannot be made shows up as the open's error.
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: each commit is durable on its own, and readers never block the run.
    set_wal(&conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Closing the last connection would otherwise checkpoint the WAL into the database
    // and sync it to disk, which costs a run more wall time than all its writes; the
    // WAL is checkpointed as it grows instead. A killed run loses nothing either way.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    schema::migrate(&conn)?;
    Ok(conn)
}

/// Opens the log read-only for `logs`: a log that does not exist is not created.
pub fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    schema::migrate(&conn)?;
    Ok(conn)
}

/// Switches a log to WAL. Switching needs the database to itself, and SQLite does not wait
/// for that (no busy handler): when another process is opening a new log at the same
/// moment, try again for as long as the busy timeout, unless it already switched it.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < std::time::Duration::from_secs(5) =>
            {
                let mode: String = conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))
                    .unwrap_or_default();
                if mode.eq_ignore_ascii_case("wal") {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// One call as it is logged (texts already scrubbed of keys).
pub struct CallRecord<'a> {
    /// `round` (a seat's call) or `synthesis` (the `--synthesize` call).
    pub stage: &'a str,
    pub round: usize,
    /// The seat; None for the synthesizer, which has none.
    pub seat: Option<usize>,
    pub name: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    /// What was sent: system, user, temperature, max_tokens, seed.
    pub request: Option<Value>,
    /// The cache key of the request (see [`request_hash`]).
    pub request_hash: Option<String>,
    pub ok: bool,
    pub response: &'a str,
    pub error: Option<&'a str>,
    pub usage: &'a crate::usage::Usage,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    pub cached: bool,
}

/// The log of one run, shared by the run's tasks. After the first failure it is off.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    /// Shared by the runs of one process (`eval` logs each item on one connection).
    conn: Arc<Mutex<Option<Connection>>>,
    run_id: Mutex<Option<i64>>,
    /// The failure that turned the log off, until the run's events report it.
    failure: Mutex<Option<String>>,
}

impl RunLog {
    /// The log at `path`, or the warning that says why it cannot be used.
    pub fn open(path: &Path) -> Result<RunLog, String> {
        let conn = open(path).map_err(|e| failure(path, &e))?;
        Ok(RunLog {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(Some(conn))),
            run_id: Mutex::new(None),
            failure: Mutex::new(None),
        })
    }

    /// A log for another run on the same connection: `eval` opens the log once for all
    /// its items instead of once per item.
    pub fn another_run(&self) -> RunLog {
        RunLog {
            path: self.path.clone(),
            conn: Arc::clone(&self.conn),
            run_id: Mutex::new(None),
            failure: Mutex::new(None),
        }
    }

    /// The failure that turned the log off, once.
    pub fn take_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> Option<i64> {
        *self.run_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the connection; a failure turns the log off and is kept for
    /// [`take_failure`](Self::take_failure).
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = guard.as_ref()?;
        match f(conn) {
            Ok(v) => Some(v),
            Err(e) => {
                *guard = None;
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(failure(&self.path, &e));
                None
            }
        }
    }

    /// This run's record as logged so far: every call (the request sent and what came
    /// back) and every round's decision, as `logs show ID --json` has them. None when the
    /// run is not logged.
    pub fn record(&self) -> Option<Value> {
        let id = self.run_id()?;
        let mut run = self.write(|c| read::show(c, id))??;
        Some(json!({ "calls": run["calls"].take(), "rounds": run["rounds"].take() }))
    }

    /// The run's row, before any call.
    pub fn run_started(
        &self,
        settings: &crate::config::Settings,
        prompt: &str,
        scrub: &dyn Fn(&str) -> String,
    ) {
        let seats = crate::report::seats(settings);
        let params = crate::report::params(settings);
        let id = self.write(|c| {
            c.prepare_cached(
                "INSERT INTO runs (started_at, strategy, seed, prompt, params, seats)
                 VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                settings.params.strategy.name(),
                settings.params.seed as i64,
                scrub(prompt),
                serde_json::to_string(&params).unwrap_or_default(),
                seats.to_string(),
            ])?;
            Ok(c.last_insert_rowid())
        });
        *self.run_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    /// A call that came back (or was cut).
    pub fn call(&self, call: &CallRecord<'_>) {
        let Some(run) = self.run_id() else { return };
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO calls (run_id, finished_at, stage, round, seat, name, provider,
                    model, request, request_hash, ok, response, error, input_tokens,
                    output_tokens, usage, latency_ms, cost_usd, cached)
                 VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?18, ?2, ?3, ?4, ?5, ?6,
                    ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?
            .execute(params![
                run,
                call.round as i64,
                call.seat.map(|s| s as i64),
                call.name,
                call.provider,
                call.model,
                call.request.as_ref().map(|r| r.to_string()),
                call.request_hash,
                call.ok,
                call.response,
                call.error,
                call.usage
                    .input_tokens
                    .map(|n| n.min(i64::MAX as u64) as i64),
                call.usage
                    .output_tokens
                    .map(|n| n.min(i64::MAX as u64) as i64),
                serde_json::to_string(call.usage).unwrap_or_default(),
                call.latency_ms,
                call.cost_usd,
                call.cached,
                call.stage,
            ])
        });
    }

    /// The decision as it stands after a round.
    pub fn round_decided(&self, round: usize, decision: &Value) {
        let Some(run) = self.run_id() else { return };
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO rounds (run_id, round, decided_at, decision)
                 VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?3)",
            )?
            .execute(params![run, round as i64, decision.to_string()])
        });
    }

    /// The end of the run: its report (the `ask --json` object) and exit code.
    pub fn run_finished(&self, report_json: &str, status: &str, exit_code: u8) {
        let Some(run) = self.run_id() else { return };
        self.write(|c| {
            c.prepare_cached(
                "UPDATE runs SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'),
                    status = ?2, exit_code = ?3, report = ?4 WHERE id = ?1",
            )?
            .execute(params![run, status, exit_code as i64, report_json])
        });
    }

    /// `--cache`: the latest successful logged answer to an identical request.
    pub fn cached(&self, request_hash: &str) -> Option<(String, crate::usage::Usage)> {
        let guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = guard.as_ref()?;
        conn.query_row(
            "SELECT response, usage FROM calls
             WHERE request_hash = ?1 AND ok = 1 AND stage = 'round'
             ORDER BY id DESC LIMIT 1",
            params![request_hash],
            |row| {
                let text: String = row.get(0)?;
                let usage: Option<String> = row.get(1)?;
                Ok((text, usage))
            },
        )
        .ok()
        .map(|(text, usage)| {
            let usage = usage
                .and_then(|u| serde_json::from_str(&u).ok())
                .unwrap_or_default();
            (text, usage)
        })
    }
}

/// The cache key of a request: every field that can change the answer, hashed.
pub fn request_hash(provider: &str, kind: &str, request: &Value) -> String {
    use sha2::{Digest, Sha256};
    let text = json!({ "provider": provider, "kind": kind, "request": request }).to_string();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn failure(path: &Path, e: &rusqlite::Error) -> String {
    format!(
        "run log {}: {e} (the run goes on without it; set LLM_CONSENSUS_LOG_DB or [log] path, or pass --no-log)",
        path.display()
    )
}
