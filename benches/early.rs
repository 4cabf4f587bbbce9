//! End to end: closing a round as soon as its outcome is certain. The release binary runs
//! against loopback OpenAI-compatible servers, one per seat, each answering after its own
//! delay and recording when the tool hangs up on it.
//!
//! - 5 seats, four answering "4" in 200 ms and one in 10 s, with `metastable` and with
//!   `vote`: FINAL in under 300 ms wall, the slow call cancelled (its server sees the
//!   connection close); `--wait-all` for comparison takes the 10 s.
//! - A split vote (two "4" and two "5" fast, the deciding "4" in 1 s) and a unanimous
//!   panel whose slowest seat is needed for the quorum (`--quorum 3` of 3): the same
//!   decision and the same time as `--wait-all` (nothing closes when it must not).
//!
//! `cargo bench --bench early` prints each case's wall times and decisions and whether
//! the targets hold; `-- --runs N` sets the runs per case (default 3).

// A benchmark prints its table with println!: a closed stdout only loses the table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/cli/common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, WatchedServer, openai_ok};
use serde_json::Value;

const FAST: Duration = Duration::from_millis(200);

/// A named panel (each seat's answer and delay) and the flags it runs with.
type Case = (
    &'static str,
    Vec<(&'static str, Duration)>,
    Vec<&'static str>,
);

struct Panel {
    sandbox: Sandbox,
    config: String,
    servers: Vec<WatchedServer>,
}

fn panel(seats: &[(&str, Duration)]) -> Panel {
    let sandbox = Sandbox::new();
    let mut text = String::new();
    let mut servers = Vec::new();
    for (i, &(answer, delay)) in seats.iter().enumerate() {
        let server =
            WatchedServer::start(delay, openai_ok(&format!("Final answer: {answer}"), 10, 5));
        text.push_str(&format!(
            "[providers.p{i}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\n\
             [[participants]]\nprovider = \"p{i}\"\nmodel = \"m\"\nname = \"s{i}\"\n\n",
            server.url()
        ));
        servers.push(server);
    }
    let config = sandbox
        .write("panel.toml", &text)
        .to_string_lossy()
        .into_owned();
    Panel {
        sandbox,
        config,
        servers,
    }
}

/// What a run decided, and how long it took.
struct Run {
    wall: Duration,
    status: String,
    answer: String,
    not_awaited: usize,
}

impl Run {
    fn decision(&self) -> (&str, &str) {
        (&self.status, &self.answer)
    }
}

fn run_once(panel: &Panel, flags: &[&str]) -> Run {
    let sb = &panel.sandbox;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-consensus"));
    cmd.env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("XDG_STATE_HOME", sb.state_dir())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["ask", "--json", "--no-log", "--seed", "7", "--config"])
        .arg(&panel.config)
        .args(flags)
        .arg("What is 2+2?")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let out = cmd.output().expect("run llm-consensus");
    let wall = t0.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let not_awaited = report["rounds"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["participants"].as_array().into_iter().flatten())
        .filter(|e| e["not_awaited"] == true)
        .count();
    Run {
        wall,
        status: report["status"].as_str().unwrap_or("?").to_string(),
        answer: report["answer"].as_str().unwrap_or("-").to_string(),
        not_awaited,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `flags` on `panel` `runs` times; the median wall time and the last run.
fn measure(panel: &Panel, flags: &[&str], runs: usize) -> (Duration, Run) {
    let mut walls = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let r = run_once(panel, flags);
        walls.push(r.wall);
        last = Some(r);
    }
    (median(walls), last.expect("at least one run"))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "holds" } else { "DOES NOT HOLD" }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let slow = Duration::from_secs(10);
    let four_and_slow = [
        ("4", FAST),
        ("4", FAST),
        ("4", FAST),
        ("4", FAST),
        ("4", slow),
    ];

    for strategy in ["metastable", "vote"] {
        let panel = panel(&four_and_slow);
        // The first run warms the page cache and the dynamic loader; it is not counted.
        run_once(&panel, &["--strategy", strategy]);
        let (wall, run) = measure(&panel, &["--strategy", strategy], runs);
        // Every run cancelled the slow call: its server saw each connection close.
        let hangups = panel.servers[4].settled(runs + 1, Duration::from_secs(3));
        let cancelled = hangups.len() == runs + 1 && hangups.iter().all(Option::is_some);
        let (wait_wall, wait) = measure(&panel, &["--strategy", strategy, "--wait-all"], 1);
        let ok = run.decision() == ("final", "4")
            // Vote is certain at three "4" of five: a fourth fast call may be cancelled too.
            && run.not_awaited >= 1
            && wall < Duration::from_millis(300)
            && cancelled
            && wait.decision() == run.decision();
        println!(
            "4 fast + 1 slow, {strategy:<10}: early {:>7.1} ms ({} {}, {} not awaited, slow call cancelled: {cancelled})   --wait-all {:>8.1} ms ({} {})   target {}",
            ms(wall),
            run.status,
            run.answer,
            run.not_awaited,
            ms(wait_wall),
            wait.status,
            wait.answer,
            verdict(ok)
        );
    }

    let late = Duration::from_secs(1);
    let cases: [Case; 2] = [
        (
            "split 3 vs 2, vote",
            vec![
                ("4", FAST),
                ("4", FAST),
                ("5", FAST),
                ("5", FAST),
                ("4", late),
            ],
            vec!["--strategy", "vote"],
        ),
        (
            "unanimous, quorum 3 of 3",
            vec![("4", FAST), ("4", FAST), ("4", late)],
            vec!["--quorum", "3"],
        ),
    ];
    for (name, seats, flags) in cases {
        let panel = panel(&seats);
        run_once(&panel, &flags);
        let (wall, run) = measure(&panel, &flags, runs);
        let mut all = flags.clone();
        all.push("--wait-all");
        let (wait_wall, wait) = measure(&panel, &all, runs);
        let close = (ms(wall) - ms(wait_wall)).abs() <= 0.1 * ms(wait_wall);
        let ok = run.decision() == wait.decision() && run.not_awaited == 0 && close;
        println!(
            "{name:<26}: early {:>7.1} ms ({} {})   --wait-all {:>7.1} ms ({} {})   same decision and time: {}",
            ms(wall),
            run.status,
            run.answer,
            ms(wait_wall),
            wait.status,
            wait.answer,
            verdict(ok)
        );
    }
}
