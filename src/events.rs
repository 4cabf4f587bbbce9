//! `--events`: one JSON object per line on standard error, as the run goes, for tools that
//! wrap this one (the README's "Events" table lists them and their fields). Every event
//! carries `event`, `schema_version` and `t_ms` (milliseconds since the process started
//! the run). The texts in events come from the run's scrubbed data, so keys never appear,
//! and each line is plain ASCII (every other character a JSON `\u` escape), so nothing in
//! an answer can steer the terminal that shows it. A line that cannot be written is lost:
//! events never fail the run.

use std::time::Instant;

use serde_json::{Value, json};

use crate::config::Settings;
use crate::report::Report;

/// Bumped whenever an event or a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// Where events go: standard error when on, nowhere when off; and to a watcher, if any.
#[derive(Debug)]
pub struct Events {
    on: bool,
    started: Instant,
    /// The run log: the other sink of the run's start, calls, rounds and end.
    log: Option<crate::log::RunLog>,
    watcher: Option<Watcher>,
}

/// Something in this process that follows the run's events (the MCP server turns them
/// into progress notifications): called with each event's name and fields, whether or
/// not the events are also written to stderr.
pub struct Watcher(Box<WatchFn>);

type WatchFn = dyn Fn(&str, &Value) + Send + Sync;

impl Watcher {
    pub fn new(f: impl Fn(&str, &Value) + Send + Sync + 'static) -> Watcher {
        Watcher(Box::new(f))
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

impl Default for Events {
    fn default() -> Events {
        Events::new(false)
    }
}

impl Events {
    /// Events on or off; `t_ms` counts from now.
    pub fn new(on: bool) -> Events {
        Events {
            on,
            started: Instant::now(),
            log: None,
            watcher: None,
        }
    }

    /// Also hands every event to `watcher`.
    pub fn watched(mut self, watcher: Watcher) -> Events {
        self.watcher = Some(watcher);
        self
    }

    /// Also writes the run to `log`.
    pub fn with_log(mut self, log: Option<crate::log::RunLog>) -> Events {
        self.log = log;
        self
    }

    /// Also writes the run to the log at `path` (None: not logged). A log that cannot be
    /// opened is a warning, and so is `cache` (`--cache`) without a log to answer from.
    pub fn logged(mut self, path: Option<&std::path::Path>, cache: bool) -> Events {
        if let Some(path) = path {
            match crate::log::RunLog::open(path) {
                Ok(log) => self.log = Some(log),
                Err(warning) => self.warn(&warning),
            }
        }
        if cache && self.log.is_none() {
            self.warn(
                "--cache: no run log to answer from ([log] enabled = false, or the log cannot be opened): every call is sent",
            );
        }
        self
    }

    /// Whether events are written to stderr.
    pub fn enabled(&self) -> bool {
        self.on
    }

    /// Whether anyone reads the events: stderr or a watcher (the run log aside).
    pub fn listened(&self) -> bool {
        self.on || self.watcher.is_some()
    }

    /// The run log, when the run is logged.
    pub fn log(&self) -> Option<&crate::log::RunLog> {
        self.log.as_ref()
    }

    /// Writes to the run log, if any, through `f`; a write that fails is a warning (a
    /// `warning` event with `--events`), and the log is off from then on.
    pub fn to_log(&self, f: impl FnOnce(&crate::log::RunLog)) {
        if let Some(log) = &self.log {
            f(log);
            if let Some(failure) = log.take_failure() {
                self.warn(&failure);
            }
        }
    }

    /// A warning on stderr: a `warning` event when on, else a `warning:` line.
    pub fn warn(&self, message: &str) {
        if self.on {
            self.emit("warning", json!({ "message": message }));
        } else {
            crate::stderr_line!("warning: {message}");
        }
    }

    /// Writes the event `event` with `fields` (a JSON object) as one line.
    pub fn emit(&self, event: &str, fields: Value) {
        if let Some(Watcher(watch)) = &self.watcher {
            watch(event, &fields);
        }
        if !self.on {
            return;
        }
        let rest = match fields {
            Value::Object(fields) if !fields.is_empty() => {
                let rest = serde_json::to_string(&fields).unwrap_or_default();
                format!(",{}", ascii(rest.strip_prefix('{').unwrap_or(&rest)))
            }
            _ => "}".to_string(),
        };
        let event = ascii(&serde_json::to_string(event).unwrap_or_default()).into_owned();
        // The time is read while holding stderr, so that `t_ms` never goes back from one
        // line to the next (stderr's lock is reentrant: the write takes it again).
        let _hold = std::io::stderr().lock();
        let t_ms = self.started.elapsed().as_millis() as u64;
        // The common fields first, so that a reader of the raw lines sees what each is.
        crate::stderr_line!(
            "{{\"event\":{event},\"schema_version\":{SCHEMA_VERSION},\"t_ms\":{t_ms}{rest}"
        );
    }

    /// `run_started`: what the run will do, before any call.
    pub fn run_started(&self, settings: &Settings) {
        if !self.listened() {
            return;
        }
        let seats = crate::report::seats(settings);
        self.emit(
            "run_started",
            json!({
                "strategy": settings.params.strategy.name(),
                "seed": settings.params.seed,
                "seats": seats,
                "synthesizer": settings.synthesizer.as_ref().map(|s| &s.name),
                "params": crate::report::params(settings),
            }),
        );
    }

    /// `run_finished`: how the run ended and the exit code the process returns.
    pub fn run_finished(&self, report: &Report, exit_code: u8) {
        self.to_log(|log| {
            let status = serde_json::to_value(report.status).unwrap_or_default();
            log.run_finished(
                &crate::report::json::render(report),
                status.as_str().unwrap_or_default(),
                exit_code,
            );
        });
        self.emit(
            "run_finished",
            json!({
                "status": report.status,
                "exit_code": exit_code,
                "finalized": report.finalized,
                "winner": report.winner,
                "answer": report.answer,
                "synthesis": report.synthesis,
                "rounds_executed": report.rounds_executed,
                "usage": report.usage,
                "cost_usd": report.usage.cost_usd,
                "elapsed_ms": report.elapsed_ms,
                "error": report.error,
            }),
        );
    }
}

/// JSON text with every character outside printable ASCII written as a `\u` escape
/// (UTF-16, as JSON spells it). serde escapes the C0 controls already; this also covers
/// DEL, the C1 controls and the bidirectional overrides, and costs nothing to check.
/// Outside strings, compact JSON is printable ASCII, so only string contents change.
fn ascii(json: &str) -> std::borrow::Cow<'_, str> {
    if json.bytes().all(|b| (b' '..b'\x7f').contains(&b)) {
        return json.into();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if (' '..'\x7f').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_that_is_not_printable_ascii_is_escaped_and_round_trips() {
        let text = "é\u{1b}[2J\u{7f}\u{9b}\u{202e}\r\n😀\"\\";
        let json = serde_json::to_string(&json!({ "a": text })).unwrap();
        let line = ascii(&json);
        assert!(line.bytes().all(|b| (b' '..b'\x7f').contains(&b)), "{line}");
        assert!(
            line.contains("\\u00e9") && line.contains("\\ud83d\\ude00"),
            "{line}"
        );
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["a"], text);
        assert!(matches!(ascii("{\"a\":1}"), std::borrow::Cow::Borrowed(_)));
    }
}
