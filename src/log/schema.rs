//! The log's schema, versioned with `PRAGMA user_version`: each migration moves the
//! database one version up, in one transaction, so an older log is upgraded in place.

use rusqlite::Connection;

/// Migration N takes the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: runs, their calls and their rounds.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        strategy TEXT NOT NULL,
        seed INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        params TEXT NOT NULL,
        seats TEXT NOT NULL,
        status TEXT,
        exit_code INTEGER,
        report TEXT
    );
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        finished_at TEXT NOT NULL,
        stage TEXT NOT NULL,
        round INTEGER NOT NULL,
        seat INTEGER,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        request TEXT,
        request_hash TEXT,
        ok INTEGER NOT NULL,
        response TEXT NOT NULL,
        error TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        usage TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        cost_usd REAL,
        cached INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX calls_by_run ON calls(run_id);
    CREATE INDEX calls_by_request ON calls(request_hash);
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        round INTEGER NOT NULL,
        decided_at TEXT NOT NULL,
        decision TEXT NOT NULL
    );
    CREATE INDEX rounds_by_run ON rounds(run_id);",
];

/// The version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`]; a newer log (from a later release) is refused
/// rather than written in a shape it does not have.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let read = |c: &Connection| -> rusqlite::Result<i64> {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
    };
    let newer = |version: i64| {
        rusqlite::Error::InvalidParameterName(format!(
            "the log has schema version {version}, newer than this build's {VERSION}"
        ))
    };
    let version = read(conn)?;
    if version == VERSION {
        return Ok(());
    }
    if version > VERSION {
        return Err(newer(version));
    }
    // Two processes (or an MCP server's concurrent runs) may open a new log at once: the
    // write lock is taken first and the version read again under it, so only one of them
    // migrates and the other finds the work done.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let version = read(&tx)?;
    if version > VERSION {
        return Err(newer(version));
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_log_gets_every_migration_and_a_second_open_changes_nothing() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        migrate(&conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.execute_batch(
            "SELECT id, report FROM runs; SELECT cached FROM calls; SELECT decision FROM rounds;",
        )
        .unwrap();
    }

    #[test]
    fn processes_opening_a_new_log_at_once_all_get_it_migrated() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log.sqlite");
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || super::super::open(&path).map(|_| ()))
                })
                .collect();
            for t in opened {
                t.join().unwrap().expect("every opener gets a migrated log");
            }
        }
    }

    #[test]
    fn a_log_from_a_newer_build_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(migrate(&conn).is_err());
    }
}
