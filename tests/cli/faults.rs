//! Fault injection: the binary against loopback providers that rate-limit, fail, hang,
//! break off mid-stream or answer garbage. The run must complete with the survivors,
//! count the retries, name each error, and stay within its deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const QUESTION: &str = "What is 2+2?";

/// A seat: its name, provider kind and server.
struct Seat {
    name: &'static str,
    kind: &'static str,
    server: TestServer,
    extra: &'static str,
}

fn seat(name: &'static str, kind: &'static str, server: TestServer) -> Seat {
    Seat {
        name,
        kind,
        server,
        extra: "",
    }
}

fn panel_config(sb: &Sandbox, seats: &[Seat]) -> String {
    let mut text = String::new();
    for s in seats {
        text.push_str(&format!(
            "[providers.{}]\nkind = \"{}\"\nbase_url = \"{}\"\n{}\n\n",
            s.name,
            s.kind,
            s.server.url(),
            s.extra
        ));
    }
    for s in seats {
        text.push_str(&format!(
            "[[participants]]\nprovider = \"{}\"\nname = \"{}\"\nmodel = \"m\"\n\n",
            s.name, s.name
        ));
    }
    sb.write("panel.toml", &text).to_string_lossy().into_owned()
}

fn run(sb: &Sandbox, config: &str, flags: &[&str]) -> (i32, Value, Duration) {
    let t0 = Instant::now();
    let out = sb
        .cmd()
        .args(["ask", "--json", "--seed", "3", "--config", config])
        .args(flags)
        .arg(QUESTION)
        .output()
        .expect("run llm-consensus");
    let elapsed = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report, elapsed)
}

fn participant<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no participant {name}"))
}

fn ok() -> Reply {
    openai_ok("2 + 2 = 4.\nFinal answer: 4", 10, 5)
}

#[test]
fn a_panel_of_broken_providers_completes_with_the_survivors() {
    let seats = vec![
        seat("ok1", "openai", TestServer::always(ok())),
        seat("ok2", "openai", TestServer::always(ok())),
        seat(
            "limited",
            "openai",
            TestServer::sequence(vec![
                with_header(
                    openai_error(429, "Rate limit reached", "requests", Some("rate_limit_exceeded")),
                    "retry-after",
                    "0",
                ),
                ok(),
            ]),
        ),
        seat(
            "e500",
            "openai",
            TestServer::always(openai_error(500, "The server had an error", "server_error", None)),
        ),
        seat(
            "e503",
            "openai",
            TestServer::always(text(503, "text/plain", "upstream connect error")),
        ),
        seat(
            "e529",
            "anthropic",
            TestServer::always(anthropic_error(529, "overloaded_error", "Overloaded")),
        ),
        seat("hang", "openai", TestServer::always(Reply::Hang)),
        seat(
            "cut",
            "openai",
            TestServer::always(truncated(openai_sse(&["2 + 2", " = 4"], None), 2, End::Abort)),
        ),
        seat(
            "html",
            "openai",
            TestServer::always(text(
                200,
                "text/html",
                "<!DOCTYPE html><html><body>Gateway login</body></html>",
            )),
        ),
        seat(
            "badjson",
            "openai",
            TestServer::always(text(200, "application/json", "{\"choices\": [{\"message\":")),
        ),
        seat(
            "badutf8",
            "openai",
            TestServer::always(Reply::Full {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\"},\"finish_reason\":\"stop\"}]}"
                    .to_vec(),
            }),
        ),
        seat("closed", "openai", TestServer::always(Reply::Close)),
        // DeepSeek under load: keep-alive comments forever, so the idle timer never fires.
        seat(
            "keepalive",
            "openai",
            TestServer::always(Reply::Stream {
                status: 200,
                headers: vec![("Content-Type".into(), "text/event-stream".into())],
                chunks: (0..100)
                    .map(|_| (Duration::from_millis(100), b": keep-alive\n\n".to_vec()))
                    .collect(),
                end: End::Hang,
            }),
        ),
        seat(
            "nochoices",
            "openai",
            TestServer::always(text(200, "application/json", "{\"id\":\"x\",\"choices\":[]}")),
        ),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let (code, report, elapsed) = run(
        &sb,
        &cfg,
        &["--retries", "1", "--timeout", "1", "--quorum", "3"],
    );

    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "final");
    assert_eq!(report["answer"], "4");
    assert_eq!(report["live"], 3);
    // Round 0 is unanimous among the survivors, so it is the only round; the hang costs
    // two 1 s attempts and one backoff.
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");

    let expected: [(&str, usize, &str); 14] = [
        ("ok1", 1, ""),
        ("ok2", 1, ""),
        ("limited", 2, ""),
        ("e500", 2, "HTTP 500"),
        ("e503", 2, "upstream connect error"),
        ("e529", 2, "Overloaded"),
        ("hang", 2, "raise --timeout"),
        ("cut", 2, "the response broke off"),
        ("html", 2, "text/html"),
        ("badjson", 2, "invalid JSON"),
        ("badutf8", 2, "invalid JSON"),
        ("closed", 2, "connection failed"),
        ("keepalive", 2, "no complete answer within 1 s"),
        ("nochoices", 2, "no choices"),
    ];
    for ((name, calls, error), s) in expected.iter().zip(&seats) {
        assert_eq!(s.name, *name);
        assert_eq!(s.server.count(), *calls, "calls to {name}");
        let p = participant(&report, name);
        if error.is_empty() {
            assert_eq!(p["live"], true, "{name}: {p:#}");
        } else {
            let errors = p["errors"].to_string();
            assert!(errors.contains(error), "{name}: {errors}");
            assert!(errors.contains(&format!("{name}: ")), "{name}: {errors}");
        }
        assert_eq!(p["retries"], (*calls - 1) as u64, "{name}");
    }
    assert_eq!(report["usage"]["retries"], 12);
}

#[test]
fn the_run_deadline_bounds_hung_calls_and_waits() {
    let seats = vec![
        seat("ok1", "openai", TestServer::always(ok())),
        seat("ok2", "openai", TestServer::always(ok())),
        seat("hang", "openai", TestServer::always(Reply::Hang)),
        // Asks for a 10 s wait that the deadline cannot afford: no retry.
        seat(
            "slow429",
            "openai",
            TestServer::always(with_header(
                openai_error(
                    429,
                    "Rate limit reached",
                    "requests",
                    Some("rate_limit_exceeded"),
                ),
                "retry-after",
                "10",
            )),
        ),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let (code, report, elapsed) = run(
        &sb,
        &cfg,
        &[
            "--deadline",
            "1.5",
            "--timeout",
            "60",
            "--retries",
            "3",
            "--quorum",
            "2",
        ],
    );
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["live"], 2);
    assert_eq!(seats[2].server.count(), 1);
    assert_eq!(seats[3].server.count(), 1, "no retry past the deadline");
    let hang = participant(&report, "hang")["errors"].to_string();
    assert!(hang.contains("run deadline"), "{hang}");
    let limited = participant(&report, "slow429")["errors"].to_string();
    assert!(
        limited.contains("Rate limit reached") && limited.contains("would pass the run deadline"),
        "{limited}"
    );
}

#[test]
fn a_round_closes_after_its_timeout_once_the_quorum_answered() {
    let seats = vec![
        seat("fast", "openai", TestServer::always(ok())),
        // Later than the round timeout but needed for the quorum: waited for.
        seat(
            "needed",
            "openai",
            TestServer::always(Reply::Delayed(Duration::from_millis(600), Box::new(ok()))),
        ),
        seat(
            "late",
            "openai",
            TestServer::always(Reply::Delayed(Duration::from_secs(20), Box::new(ok()))),
        ),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let (code, report, elapsed) = run(&sb, &cfg, &["--round-timeout", "0.2", "--quorum", "2"]);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(participant(&report, "needed")["live"], true);
    let late = &report["rounds"][0]["participants"][2];
    assert_eq!(late["participant"], "late");
    let error = late["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("absent") && error.contains("round timeout"),
        "{late:#}"
    );
    assert!(late["latency_ms"].as_f64().unwrap() >= 600.0, "{late:#}");
}

/// A server that answers after `hold` and records the most requests it had at once.
fn counting_server(hold: Duration, peak: Arc<AtomicUsize>) -> TestServer {
    let now = Arc::new(AtomicUsize::new(0));
    TestServer::start(move |_, _| {
        let current = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(current, Ordering::SeqCst);
        std::thread::sleep(hold);
        now.fetch_sub(1, Ordering::SeqCst);
        ok()
    })
}

#[test]
fn max_concurrency_limits_calls_in_flight_per_provider() {
    for (limit, expected_peak) in [(1, 1), (3, 3)] {
        let peak = Arc::new(AtomicUsize::new(0));
        let server = counting_server(Duration::from_millis(250), Arc::clone(&peak));
        let sb = Sandbox::new();
        let text = format!(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\nmax_concurrency = {limit}\n\n\
             [[participants]]\nprovider = \"p\"\nmodel = \"m\"\ncount = 3\n",
            server.url()
        );
        let cfg = sb.write("panel.toml", &text);
        let out = sb
            .cmd()
            .args(["ask", "--json", "--seed", "1", "--config"])
            .arg(&cfg)
            .arg(QUESTION)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(server.count(), 3);
        assert_eq!(peak.load(Ordering::SeqCst), expected_peak, "limit {limit}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        // Waiting for a slot is not counted as the model's latency.
        for p in report["participants"].as_array().unwrap() {
            assert!(p["latency_ms"].as_f64().unwrap() < 700.0, "{p:#}");
        }
    }
}

#[test]
fn oversized_answers_are_failed_calls() {
    let big = "x".repeat(1024 * 1024 + 10);
    let endless = " ".repeat(9 * 1024 * 1024);
    let seats = vec![
        seat("ok1", "openai", TestServer::always(ok())),
        seat(
            "huge",
            "openai",
            TestServer::always(openai_sse(&[&big, "\nFinal answer: 4"], None)),
        ),
        seat(
            "hugejson",
            "openai",
            TestServer::always(openai_ok(&big, 1, 1)),
        ),
        seat(
            "hugebody",
            "openai",
            TestServer::always(text(200, "application/json", &endless)),
        ),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let (code, report, _) = run(&sb, &cfg, &["--retries", "0", "--quorum", "1"]);
    assert_eq!(code, 0, "{report:#}");
    for (name, error) in [
        ("huge", "longer than 1 MiB"),
        ("hugejson", "longer than 1 MiB"),
        ("hugebody", "larger than 8 MiB"),
    ] {
        let errors = participant(&report, name)["errors"].to_string();
        assert!(errors.contains(error), "{name}: {errors}");
    }
}

#[test]
fn a_wait_longer_than_the_cap_is_not_retried() {
    let seats = vec![
        seat("ok1", "openai", TestServer::always(ok())),
        seat(
            "patient",
            "openai",
            TestServer::always(with_header(
                openai_error(
                    429,
                    "Rate limit reached",
                    "requests",
                    Some("rate_limit_exceeded"),
                ),
                "retry-after",
                "600",
            )),
        ),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let (code, report, elapsed) = run(&sb, &cfg, &["--retries", "3", "--quorum", "1"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(seats[1].server.count(), 1);
    let errors = participant(&report, "patient")["errors"].to_string();
    assert!(errors.contains("asked to wait 600 s"), "{errors}");
}

/// Answers that never converge (a new number on every call) after a fixed latency.
fn diverging_server(seat: usize, latency: Duration) -> TestServer {
    TestServer::start(move |_, i| {
        let text = format!("Final answer: {}", 1000 * (seat + 1) + i);
        Reply::Delayed(latency, Box::new(openai_ok(&text, 10, 5)))
    })
}

#[test]
fn the_calls_of_a_round_run_concurrently() {
    // Ten seats that never agree: round 0 and all three sampling rounds run, 40 calls of
    // 200 ms each. One after the other they would take 8 s; concurrently about 0.8 s.
    let servers: Vec<TestServer> = (0..10)
        .map(|seat| diverging_server(seat, Duration::from_millis(200)))
        .collect();
    let sb = Sandbox::new();
    let mut text = String::new();
    for (i, s) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[providers.s{i}]\nkind = \"openai\"\nbase_url = \"{}\"\n\n",
            s.url()
        ));
    }
    for i in 0..servers.len() {
        text.push_str(&format!(
            "[[participants]]\nprovider = \"s{i}\"\nmodel = \"m\"\n\n"
        ));
    }
    let cfg = sb.write("panel.toml", &text);
    let (code, report, elapsed) = run(&sb, &cfg.to_string_lossy(), &[]);
    assert_eq!(code, 1, "no consensus: {report:#}");
    assert_eq!(report["rounds_executed"], 3);
    assert_eq!(report["usage"]["calls"], 40);
    assert!(servers.iter().all(|s| s.count() == 4));
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[test]
fn ctrl_c_stops_the_calls_and_prints_the_partial_result() {
    let seats = vec![
        seat("ok1", "openai", TestServer::always(ok())),
        seat("ok2", "openai", TestServer::always(ok())),
        seat("hang", "openai", TestServer::always(Reply::Hang)),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"));
    cmd.env_clear()
        .env("HOME", sb.path())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["ask", "--json", "--seed", "1", "--config", &cfg, QUESTION])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let t0 = Instant::now();
    let child = cmd.spawn().unwrap();
    // Interrupt once the fast seats have answered and only the hung call is out.
    while seats[2].server.count() == 0 || t0.elapsed() < Duration::from_millis(500) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the run never called"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(130));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(
        participant(&report, "ok1")["answers"][0],
        "2 + 2 = 4.\nFinal answer: 4"
    );
    assert_eq!(participant(&report, "hang")["live"], false);
}

#[test]
fn a_second_ctrl_c_exits_at_once_even_while_the_result_is_written() {
    // The result is far larger than a pipe's buffer and nobody reads it, so after the first
    // Ctrl-C the binary blocks writing it: only a second Ctrl-C can end it.
    let long = format!("{}\nFinal answer: 4", "word ".repeat(60_000));
    let seats = vec![
        seat(
            "long",
            "openai",
            TestServer::always(openai_ok(&long, 10, 5)),
        ),
        seat("ok", "openai", TestServer::always(ok())),
        seat("hang", "openai", TestServer::always(Reply::Hang)),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"))
        .env_clear()
        .env("HOME", sb.path())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["ask", "--json", "--seed", "1", "--config", &cfg, QUESTION])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let interrupt = |pid: u32| {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let t0 = Instant::now();
    while seats[2].server.count() == 0 || t0.elapsed() < Duration::from_millis(500) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the run never called"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(child.id());
    let noticed = loop {
        match lines.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.starts_with("interrupted:") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let blocked = child.try_wait().unwrap().is_none();
    if !(noticed && blocked) {
        let _ = child.kill();
        panic!(
            "the first Ctrl-C was not noticed ({noticed}) or did not leave the binary writing ({blocked})"
        );
    }
    interrupt(child.id());
    let t1 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t1.elapsed() > Duration::from_secs(3) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = status.expect("the second Ctrl-C did not end the binary");
    assert_eq!(status.code(), Some(130));
    assert!(
        t1.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t1.elapsed()
    );
}

#[test]
fn a_sampling_round_cut_by_the_deadline_before_any_answer_is_dropped() {
    let five = openai_ok("Final answer: 5", 10, 5);
    let seats = vec![
        seat("a", "openai", TestServer::always(ok())),
        seat("b", "openai", TestServer::always(ok())),
        // Dissents in round 0, then hangs when asked to refine.
        seat("c", "openai", TestServer::sequence(vec![five, Reply::Hang])),
    ];
    let sb = Sandbox::new();
    let cfg = panel_config(&sb, &seats);
    let (code, report, elapsed) = run(&sb, &cfg, &["--deadline", "1", "--quorum", "2"]);
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert_eq!(seats[2].server.count(), 2, "c was asked to refine");
    // The decision rests on round 0, where c still dissents: the hung refinement does
    // not silence it into a consensus.
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["status"], "no_consensus");
    assert_eq!(report["rounds_executed"], 0);
    assert_eq!(participant(&report, "c")["live"], true);
}
