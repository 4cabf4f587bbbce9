//! End to end: the release binary against ten loopback OpenAI-compatible servers that
//! answer after a fixed 200 ms. Every seat gives a new answer on every call, so the panel
//! never converges and the first round plus all three sampling rounds run: 40 calls in 4
//! rounds. The ideal wall time is (1 + 3) × 200 ms = 800 ms; the rest is the tool's own
//! overhead (process start, config, connections, per-round work, output).
//!
//! `cargo bench --bench e2e` prints, per run, the wall time of the whole process, the run's
//! own `elapsed_ms` (from `--json`) and the overhead over the ideal, and the mean latency of
//! one call (so the overhead splits into process, per-call and per-round time), then the median,
//! minimum and maximum. `-- --runs N` sets the number of measured runs (default 10).

// A benchmark prints its table with println!: a closed stdout only loses the table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/cli/common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reply, Sandbox, TestServer, openai_ok};
use serde_json::Value;

const SEATS: usize = 10;
const LATENCY: Duration = Duration::from_millis(200);
const SAMPLING_ROUNDS: usize = 3;
const ROUNDS: usize = 1 + SAMPLING_ROUNDS;

/// A seat that never agrees with anyone, itself included: a new number on every call.
fn diverging_server(seat: usize) -> TestServer {
    TestServer::start(move |_, i| {
        let text = format!("Final answer: {}", 1000 * (seat + 1) + i);
        Reply::Delayed(LATENCY, Box::new(openai_ok(&text, 10, 5)))
    })
}

struct Sample {
    wall: Duration,
    /// The run as the binary measured it, from the start of its first round to its decision.
    elapsed: Duration,
    /// Mean latency of one call as the binary measured it (request sent to answer parsed).
    call: Duration,
}

/// One run of the binary; panics unless all rounds ran with every call answered.
fn run_once(sb: &Sandbox, config: &str, servers: &[TestServer]) -> Sample {
    let before: Vec<usize> = servers.iter().map(TestServer::count).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-consensus"));
    cmd.env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("XDG_STATE_HOME", sb.state_dir())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["ask", "--json", "--seed", "7", "--config", config])
        .arg("Pick a number.")
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
    // Measure what the benchmark claims: no consensus, all sampling rounds, every call answered.
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected no consensus: {report:#}"
    );
    assert_eq!(report["status"], "no_consensus", "{report:#}");
    assert_eq!(
        report["rounds_executed"], SAMPLING_ROUNDS,
        "not every sampling round ran: {report:#}"
    );
    assert_eq!(report["usage"]["calls"], SEATS * ROUNDS, "{report:#}");
    for p in report["participants"].as_array().expect("participants") {
        assert_eq!(p["errors"].as_array().map_or(0, Vec::len), 0, "{p:#}");
    }
    for (s, b) in servers.iter().zip(before) {
        assert_eq!(s.count() - b, ROUNDS, "each seat is called once per round");
    }
    let elapsed_ms = report["elapsed_ms"].as_f64().expect("elapsed_ms");
    let latencies: Vec<f64> = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["latency_ms"].as_f64().expect("latency_ms"))
        .collect();
    let call_ms = latencies.iter().sum::<f64>() / latencies.len() as f64;
    Sample {
        wall,
        elapsed: Duration::from_secs_f64(elapsed_ms / 1000.0),
        call: Duration::from_secs_f64(call_ms / 1000.0),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn overhead(d: Duration, ideal: Duration) -> f64 {
    (d.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10);

    let servers: Vec<TestServer> = (0..SEATS).map(diverging_server).collect();
    let sb = Sandbox::new();
    let mut text = String::new();
    for (i, s) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[providers.s{i}]\nkind = \"openai\"\nbase_url = \"{}\"\n\n",
            s.url()
        ));
    }
    for i in 0..SEATS {
        text.push_str(&format!(
            "[[participants]]\nprovider = \"s{i}\"\nmodel = \"m\"\n\n"
        ));
    }
    let config = sb.write("panel.toml", &text).to_string_lossy().into_owned();

    let ideal = LATENCY * ROUNDS as u32;
    println!(
        "e2e: {SEATS} seats, {ROUNDS} rounds ({SAMPLING_ROUNDS} sampling), {} ms per call; ideal {:.0} ms",
        LATENCY.as_millis(),
        ms(ideal)
    );
    // The first run warms the page cache and the dynamic loader; it is not counted.
    run_once(&sb, &config, &servers);
    let mut walls = Vec::new();
    let mut elapsed = Vec::new();
    for i in 1..=runs {
        let s = run_once(&sb, &config, &servers);
        println!(
            "run {i:>2}: wall {:>6.1} ms ({:+5.1}%)   in-run {:>6.1} ms ({:+5.1}%)   mean call {:>5.1} ms",
            ms(s.wall),
            overhead(s.wall, ideal),
            ms(s.elapsed),
            overhead(s.elapsed, ideal),
            ms(s.call)
        );
        walls.push(s.wall);
        elapsed.push(s.elapsed);
    }
    walls.sort();
    elapsed.sort();
    for (what, v) in [("wall", &walls), ("in-run", &elapsed)] {
        let med = median(v);
        println!(
            "{what:>6}: median {:.1} ms ({:+.1}%), min {:.1} ms ({:+.1}%), max {:.1} ms ({:+.1}%)",
            ms(med),
            overhead(med, ideal),
            ms(v[0]),
            overhead(v[0], ideal),
            ms(v[v.len() - 1]),
            overhead(v[v.len() - 1], ideal)
        );
    }
    let med = median(&walls);
    let verdict = if overhead(med, ideal) <= 10.0 {
        "within"
    } else {
        "NOT within"
    };
    println!(
        "median wall time {:.1} ms is {verdict} 10% of the ideal {:.0} ms",
        ms(med),
        ms(ideal)
    );
}
