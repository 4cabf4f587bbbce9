//! `eval` end to end: the release binary runs N items × 3 seats (strategy vote: one call
//! per seat and item) against a loopback OpenAI-compatible server that answers every call
//! after 50 ms, at `--jobs 32`. The ideal wall time is ceil(N / 32) × 50 ms: the rest is
//! the tool's own overhead (process start, connections, per-item work, result lines).
//! Peak memory (VmHWM of the process, sampled from /proc while it runs) is printed for two
//! sizes, to show that it does not grow with the number of items.
//!
//! `cargo bench --bench eval` prints, per size, the wall time, the ideal, the overhead over
//! it and the peak RSS. `-- --items N` sets the larger size (default 1000).

// A benchmark prints its table with println!: a closed stdout only loses the table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/cli/common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reply, Sandbox, TestServer, openai_ok};
use serde_json::Value;

const SEATS: usize = 3;
const JOBS: usize = 32;
const LATENCY: Duration = Duration::from_millis(50);

struct Sample {
    wall: Duration,
    /// Peak resident memory of the process in KiB, when /proc tells it.
    peak_rss_kib: Option<u64>,
    /// User + system CPU time of the process, when /proc tells it.
    cpu: Option<Duration>,
    /// Mean run time of one item as the binary measured it (its `elapsed_ms`).
    item: Duration,
}

/// utime + stime of a live process, from /proc/PID/stat (in clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One eval of `items` items; panics unless every item finished with its three calls.
fn run_once(sb: &Sandbox, server: &TestServer, items: usize) -> Sample {
    let lines: String = (0..items)
        .map(|i| format!("{{\"id\":\"q{i}\",\"prompt\":\"Question {i}?\",\"expect\":\"42\"}}\n"))
        .collect();
    let file = sb.write("items.jsonl", &lines);
    let out = sb.path().join("out.jsonl");
    let config = sb.write(
        "providers.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            server.url()
        ),
    );
    let before = server.count();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-consensus"));
    cmd.env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("XDG_STATE_HOME", sb.state_dir())
        .env("LOCAL_KEY", "sk-bench-eval")
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["eval", "--json", "--strategy", "vote", "--seed", "7"])
        .args(["--jobs", &JOBS.to_string(), "--config"])
        .arg(&config)
        .args(["-m", "local:a", "-m", "local:b", "-m", "local:c"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("run llm-consensus");
    let pid = child.id();
    let (mut peak, mut cpu) = (None, None);
    while child.try_wait().expect("wait").is_none() {
        peak = vm_hwm(pid).or(peak);
        cpu = cpu_time(pid).or(cpu);
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = t0.elapsed();
    let output = child.wait_with_output().expect("output");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(output.status.code(), Some(0), "{summary:#}");
    assert_eq!(summary["finished"], items, "{summary:#}");
    assert_eq!(summary["accuracy"]["matched"], items, "{summary:#}");
    assert_eq!(server.count() - before, items * SEATS);
    Sample {
        wall,
        peak_rss_kib: peak,
        cpu,
        item: Duration::from_secs_f64(
            summary["item_ms"].as_f64().unwrap_or(0.0) / items as f64 / 1000.0,
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let items = args
        .iter()
        .position(|a| a == "--items")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000usize);
    // `cargo test --benches` runs every bench once with --bench absent: keep that quick.
    let quick = !args.iter().any(|a| a == "--bench");
    let items = if quick { 64 } else { items };
    let server = TestServer::start(|_, _| {
        Reply::Delayed(LATENCY, Box::new(openai_ok("Final answer: 42", 10, 2)))
    });
    let sb = Sandbox::new();
    println!(
        "eval: {SEATS} seats, --jobs {JOBS}, every call answered after {} ms",
        LATENCY.as_millis()
    );
    println!(
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>12}",
        "items", "wall", "ideal", "overhead", "peak RSS"
    );
    for n in [items / 4, items] {
        let ideal = LATENCY * n.div_ceil(JOBS) as u32;
        let s = run_once(&sb, &server, n);
        println!(
            "{:>7}  {:>7.0}ms  {:>7.0}ms  {:>8.1}%  {:>12}  {:>7}ms  {:>7.1}ms",
            n,
            s.wall.as_secs_f64() * 1000.0,
            ideal.as_secs_f64() * 1000.0,
            100.0 * (s.wall.as_secs_f64() / ideal.as_secs_f64() - 1.0),
            s.peak_rss_kib.map_or("unknown".to_string(), |k| format!(
                "{:.1} MiB",
                k as f64 / 1024.0
            )),
            s.cpu.map_or("?".to_string(), |c| c.as_millis().to_string()),
            s.item.as_secs_f64() * 1000.0
        );
    }
}
