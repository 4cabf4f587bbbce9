//! Reading the log: `logs list`, `logs show ID`, and the report of a run for `replay`.
//! Every text from the log came from models, providers or the user: the text renderings
//! pass it through [`visible`].

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::cli::LogsAction;
use crate::error::ConfigError;
use crate::report::text::visible;

/// `logs ACTION` on the log at `path`: the text to print. A log that does not exist yet
/// has no runs, and nothing is created to say so.
pub fn command(action: Option<LogsAction>, path: &Path) -> anyhow::Result<String> {
    let open = || -> Result<Option<Connection>, ConfigError> {
        if !path.exists() {
            return Ok(None);
        }
        super::open_existing(path).map(Some).map_err(|e| {
            ConfigError::new(format!("cannot read the run log {}: {e}", path.display()))
        })
    };
    let pretty = |v: &Value| -> anyhow::Result<String> {
        let mut s = serde_json::to_string_pretty(v)?;
        s.push('\n');
        Ok(s)
    };
    Ok(
        match action.unwrap_or(LogsAction::List { n: 20, json: false }) {
            LogsAction::Path => format!("{}\n", path.display()),
            LogsAction::List { n, json } => {
                let runs = match open()? {
                    Some(db) => list(&db, n)?,
                    None => Vec::new(),
                };
                if json {
                    pretty(&Value::Array(runs))?
                } else {
                    render_list(&runs)
                }
            }
            LogsAction::Show { id, json } => {
                let run = match open()? {
                    Some(db) => show(&db, id)?,
                    None => None,
                };
                let run = run.ok_or_else(|| {
                    ConfigError::new(format!("no run {id} in the run log {}", path.display()))
                })?;
                if json {
                    pretty(&run)?
                } else {
                    render_show(&run)
                }
            }
        },
    )
}

/// The final report (the `ask --json` object) of run `id`; None for a run that never
/// finished (killed) or does not exist.
pub fn load_report(db: &Connection, id: i64) -> Option<Value> {
    let text: Option<String> = db
        .query_row("SELECT report FROM runs WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()
        .ok()
        .flatten()
        .flatten();
    serde_json::from_str(&text?).ok()
}

fn run_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let params: String = row.get("params")?;
    let seats: String = row.get("seats")?;
    Ok(json!({
        "id": row.get::<_, i64>("id")?,
        "started_at": row.get::<_, String>("started_at")?,
        "finished_at": row.get::<_, Option<String>>("finished_at")?,
        "strategy": row.get::<_, String>("strategy")?,
        "seed": row.get::<_, i64>("seed")? as u64,
        "prompt": row.get::<_, String>("prompt")?,
        "params": serde_json::from_str::<Value>(&params).unwrap_or(Value::Null),
        "seats": serde_json::from_str::<Value>(&seats).unwrap_or(Value::Null),
        "status": row.get::<_, Option<String>>("status")?,
        "exit_code": row.get::<_, Option<i64>>("exit_code")?,
        "calls": row.get::<_, i64>("calls")?,
        "cost_usd": row.get::<_, Option<f64>>("cost_usd")?,
    }))
}

const RUN_COLUMNS: &str = "r.id, r.started_at, r.finished_at, r.strategy, r.seed, r.prompt,
    r.params, r.seats, r.status, r.exit_code,
    (SELECT COUNT(*) FROM calls c WHERE c.run_id = r.id) AS calls,
    (SELECT SUM(c.cost_usd) FROM calls c WHERE c.run_id = r.id) AS cost_usd";

/// The latest `n` runs, newest first, as JSON objects.
pub fn list(db: &Connection, n: usize) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = db.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM runs r ORDER BY r.id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![n.min(i64::MAX as usize) as i64], run_json)?;
    rows.collect()
}

/// Run `id` with its calls, rounds and report; None when there is no such run.
pub fn show(db: &Connection, id: i64) -> rusqlite::Result<Option<Value>> {
    let Some(mut run) = db
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = ?1"),
            params![id],
            run_json,
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = db.prepare(
        "SELECT stage, round, seat, name, provider, model, request, ok, response, error, usage,
            latency_ms, cost_usd, cached, finished_at
         FROM calls WHERE run_id = ?1 ORDER BY id",
    )?;
    let calls = stmt
        .query_map(params![id], |r| {
            let request: Option<String> = r.get("request")?;
            let usage: String = r.get("usage")?;
            Ok(json!({
                "stage": r.get::<_, String>("stage")?,
                "round": r.get::<_, i64>("round")?,
                "seat": r.get::<_, Option<i64>>("seat")?,
                "name": r.get::<_, String>("name")?,
                "provider": r.get::<_, String>("provider")?,
                "model": r.get::<_, String>("model")?,
                "request": request.and_then(|t| serde_json::from_str::<Value>(&t).ok()),
                "ok": r.get::<_, bool>("ok")?,
                "response": r.get::<_, String>("response")?,
                "error": r.get::<_, Option<String>>("error")?,
                "usage": serde_json::from_str::<Value>(&usage).unwrap_or(Value::Null),
                "latency_ms": r.get::<_, f64>("latency_ms")?,
                "cost_usd": r.get::<_, Option<f64>>("cost_usd")?,
                "cached": r.get::<_, bool>("cached")?,
                "finished_at": r.get::<_, String>("finished_at")?,
            }))
        })?
        .collect::<rusqlite::Result<Vec<Value>>>()?;
    let mut stmt =
        db.prepare("SELECT round, decision FROM rounds WHERE run_id = ?1 ORDER BY id")?;
    let rounds = stmt
        .query_map(params![id], |r| {
            let decision: String = r.get(1)?;
            Ok(json!({
                "round": r.get::<_, i64>(0)?,
                "decision": serde_json::from_str::<Value>(&decision).unwrap_or(Value::Null),
            }))
        })?
        .collect::<rusqlite::Result<Vec<Value>>>()?;
    run["calls"] = Value::Array(calls);
    run["rounds"] = Value::Array(rounds);
    run["report"] = load_report(db, id).unwrap_or(Value::Null);
    Ok(Some(run))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One line per run: id, start, strategy, status, calls, cost, the prompt's first line.
pub fn render_list(runs: &[Value]) -> String {
    let mut out = String::new();
    for run in runs {
        let prompt = str_of(run, "prompt").lines().next().unwrap_or("");
        let prompt: String = prompt.chars().take(60).collect();
        let status = run
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unfinished");
        let cost = run
            .get("cost_usd")
            .and_then(Value::as_f64)
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            out,
            "{:>5}  {}  {:<10}  {:<10}  {:>3} calls  {:>9}  {}",
            run["id"],
            visible(str_of(run, "started_at")),
            visible(str_of(run, "strategy")),
            visible(status),
            run["calls"],
            cost,
            visible(&prompt)
        );
    }
    out
}

/// A run with each call's request and answer.
pub fn render_show(run: &Value) -> String {
    let mut out = String::new();
    let status = run
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unfinished (no report: the run did not end)");
    let _ = writeln!(
        out,
        "run {}  started {}",
        run["id"],
        visible(str_of(run, "started_at"))
    );
    let _ = writeln!(
        out,
        "strategy {}, seed {}, status {}",
        visible(str_of(run, "strategy")),
        run["seed"],
        visible(status)
    );
    let _ = writeln!(out, "prompt: {}", visible(str_of(run, "prompt")));
    for call in run["calls"].as_array().into_iter().flatten() {
        let cached = if call["cached"] == true {
            ", cached"
        } else {
            ""
        };
        let stage = match call["stage"].as_str() {
            Some("round") | None => format!("round {}", call["round"]),
            Some(other) => visible(other).into_owned(),
        };
        let _ = writeln!(
            out,
            "\n[{stage}] {} ({}:{}): {} in {:.0} ms{cached}",
            visible(str_of(call, "name")),
            visible(str_of(call, "provider")),
            visible(str_of(call, "model")),
            if call["ok"] == true { "ok" } else { "failed" },
            call["latency_ms"].as_f64().unwrap_or(0.0),
        );
        if let Some(e) = call.get("error").and_then(Value::as_str) {
            let _ = writeln!(out, "error: {}", visible(e));
        }
        let response = str_of(call, "response");
        if !response.is_empty() {
            let _ = writeln!(out, "{}", visible(response.trim_end()));
        }
    }
    for round in run["rounds"].as_array().into_iter().flatten() {
        let d = &round["decision"];
        let _ = writeln!(
            out,
            "\nround {} decided: winner {}, finalized {}",
            round["round"],
            visible(d.get("winner").and_then(Value::as_str).unwrap_or("none")),
            d["finalized"]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_run_has_no_report_and_a_missing_one_is_none() {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn).unwrap();
        conn.execute(
            "INSERT INTO runs (started_at, strategy, seed, prompt, params, seats)
             VALUES ('t', 'vote', 1, 'q', '{}', '[]')",
            [],
        )
        .unwrap();
        assert_eq!(load_report(&conn, 1), None);
        assert_eq!(load_report(&conn, 2), None);
        conn.execute(
            "UPDATE runs SET report = '{\"status\":\"final\"}' WHERE id = 1",
            [],
        )
        .unwrap();
        assert_eq!(load_report(&conn, 1), Some(json!({"status": "final"})));
        assert!(show(&conn, 1).unwrap().is_some());
        assert!(show(&conn, 3).unwrap().is_none());
    }
}
