//! `ask --events`: JSON lines on stderr as the run goes, for tools that wrap this one. The
//! real binary runs scripted (mock) seats or loopback OpenAI servers.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const KEY: &str = "sk-FAKE-5e1d7c3b-EVENTLEAK-0099";
/// The key of another seat: the HTTP layer scrubs only a call's own key, the run the rest.
const OTHER_KEY: &str = "sk-FAKE-0a9b8c7d-OTHERSEAT-0100";

/// Mock seats named `a`, `b`, … answering `answers[i]` every call.
fn mock_panel(sb: &Sandbox, answers: &[&str]) -> std::path::PathBuf {
    let mut config = String::new();
    for (i, answer) in answers.iter().enumerate() {
        let name = char::from(b'a' + i as u8);
        config.push_str(&format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"{name}\"\nscript = [ {{ output = {}, ms = {}, input_tokens = 10, output_tokens = 5 }} ]\n\n",
            toml_string(answer),
            100 * (i + 1)
        ));
    }
    sb.write("panel.toml", &config)
}

/// A TOML basic string of `text`, its control characters as `\uXXXX` escapes.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every stderr line parsed as an event; fails on any line that is not one.
fn events(stderr: &[u8]) -> Vec<Value> {
    let stderr = String::from_utf8(stderr.to_vec()).expect("stderr is UTF-8");
    stderr
        .lines()
        .map(|line| {
            assert!(
                line.bytes().all(|b| (b' '..b'\x7f').contains(&b)),
                "not printable ASCII: {line}"
            );
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stderr}"));
            assert!(event["event"].is_string(), "{line}");
            assert_eq!(event["schema_version"], 1, "{line}");
            assert!(event["t_ms"].is_u64(), "{line}");
            event
        })
        .collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn a_unanimous_run_is_told_from_run_started_to_run_finished() {
    let sb = Sandbox::new();
    let panel = mock_panel(
        &sb,
        &[
            "Final answer: Paris",
            "It is Paris.\nFinal answer: Paris",
            "Final answer: paris",
        ],
    );
    let out = sb
        .cmd()
        .args(["ask", "--events", "--seed", "3", "--config"])
        .arg(&panel)
        .arg("Capital of France?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // stdout is still the report, for people.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FINAL"), "{stdout}");
    let events = events(&out.stderr);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");

    let started = &events[0];
    assert_eq!(started["strategy"], "metastable");
    assert_eq!(started["seed"], 3);
    assert_eq!(started["seats"].as_array().unwrap().len(), 3);
    assert_eq!(started["seats"][1]["name"], "b");
    assert_eq!(started["params"]["beta_2"], 0.8);

    // One call_started and one call_finished per call, the start first.
    let calls = named(&events, "call_started");
    let finished = named(&events, "call_finished");
    assert_eq!(calls.len(), 3, "{kinds:?}");
    assert_eq!(finished.len(), 3, "{kinds:?}");
    for call in &calls {
        let pos = |e: &Value| events.iter().position(|x| x == e).unwrap();
        let done = finished
            .iter()
            .find(|f| f["seat"] == call["seat"] && f["round"] == call["round"])
            .unwrap_or_else(|| panic!("no call_finished for {call}"));
        assert!(pos(call) < pos(done), "{kinds:?}");
        assert_eq!(done["ok"], true);
        // The key as the strategy compares it (case is kept; comparison ignores it).
        let expected = ["Paris", "Paris", "paris"][call["seat"].as_u64().unwrap() as usize];
        assert_eq!(done["key"], expected, "{done}");
        assert_eq!(done["usage"]["input_tokens"], 10);
        assert_eq!(done["error"], Value::Null);
        assert_eq!(done["retries"], 0);
    }
    let latencies: Vec<f64> = (0..3)
        .map(|seat| {
            finished.iter().find(|f| f["seat"] == seat).unwrap()["latency_ms"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(latencies, [100.0, 200.0, 300.0]);

    let rounds = named(&events, "round_decided");
    assert_eq!(rounds.len(), 1, "{kinds:?}");
    assert_eq!(rounds[0]["round"], 0);
    assert_eq!(rounds[0]["answer"], "Paris");
    assert_eq!(rounds[0]["support"], 1.0);
    assert_eq!(rounds[0]["finalized"], true);
    assert!(rounds[0]["winner"].is_string(), "{}", rounds[0]);

    let end = events.last().unwrap();
    assert_eq!(end["status"], "final");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["finalized"], true);
    assert_eq!(end["answer"], "Paris");
    assert_eq!(end["usage"]["calls"], 3);
    assert_eq!(end["usage"]["input_tokens"], 30);
    assert!(end["elapsed_ms"].is_number(), "{end}");
    // t_ms never goes back.
    let times: Vec<u64> = events.iter().map(|e| e["t_ms"].as_u64().unwrap()).collect();
    assert!(times.is_sorted(), "{times:?}");
}

#[test]
fn with_json_stdout_is_the_report_and_stderr_only_events_even_with_verbose() {
    let sb = Sandbox::new();
    let panel = mock_panel(
        &sb,
        &["Final answer: 4", "Final answer: 4", "Final answer: 5"],
    );
    let out = sb
        .cmd()
        .args([
            "ask", "--events", "--json", "-v", "--rounds", "1", "--config",
        ])
        .arg(&panel)
        .arg("2+2?")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    assert_eq!(report["schema_version"], 1);
    let code = out.status.code().unwrap();
    assert_eq!(code as i64, report_exit(&report), "{report}");
    // Every stderr line is an event: no `-v` line, no hint.
    let events = events(&out.stderr);
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["status"], report["status"]);
    assert_eq!(end["exit_code"], code);
    assert_eq!(end["answer"], report["answer"]);
    assert_eq!(end["usage"], report["usage"]);
    assert_eq!(
        named(&events, "call_finished").len() as u64,
        report["usage"]["calls"].as_u64().unwrap()
    );
    assert_eq!(
        named(&events, "round_decided").len() as u64,
        report["rounds_executed"].as_u64().unwrap() + 1
    );
}

fn report_exit(report: &Value) -> i64 {
    match report["status"].as_str().unwrap() {
        "final" => 0,
        "no_consensus" => 1,
        "degraded" | "failed" => 3,
        other => panic!("status {other}"),
    }
}

#[test]
fn a_key_a_provider_echoes_appears_in_no_event() {
    // One seat answers with its key and another seat's in its answer, one fails twice
    // quoting both (a retry event and a failed call), one answers cleanly.
    let echo = TestServer::always(openai_ok(
        &format!("Your key is {KEY}, theirs {OTHER_KEY}.\nFinal answer: {KEY} {OTHER_KEY}"),
        5,
        5,
    ));
    let failing = TestServer::always(text(
        500,
        "text/plain",
        &format!("internal error for {KEY} and {OTHER_KEY}"),
    ));
    let clean = TestServer::always(openai_ok("Final answer: 4", 5, 5));
    let sb = Sandbox::new();
    let mut config = String::new();
    let servers = [
        ("echo", &echo, "FAKE_KEY"),
        ("failing", &failing, "FAKE_KEY"),
        ("clean", &clean, "OTHER_KEY"),
    ];
    for (name, server, key_env) in servers {
        config.push_str(&format!(
            "[providers.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"{key_env}\"\n\n",
            server.url()
        ));
    }
    for name in ["echo", "failing", "clean"] {
        config.push_str(&format!(
            "[[participants]]\nprovider = \"{name}\"\nmodel = \"m\"\nname = \"{name}\"\n\n"
        ));
    }
    let cfg = sb.write("panel.toml", &config);
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .env("OTHER_KEY", OTHER_KEY)
        .args([
            "ask",
            "--events",
            "--json",
            "--retries",
            "1",
            "--rounds",
            "0",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("2+2?")
        .output()
        .unwrap();
    assert_eq!(failing.count(), 2, "the failing seat was retried once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [KEY, OTHER_KEY] {
        assert!(!stderr.contains(key), "a key is in an event:\n{stderr}");
    }
    let events = events(&out.stderr);
    let retry = named(&events, "call_retry");
    assert_eq!(retry.len(), 1, "{stderr}");
    assert_eq!(retry[0]["name"], "failing");
    assert_eq!(retry[0]["attempt"], 1);
    assert!(
        retry[0]["reason"].as_str().unwrap().contains("<redacted>"),
        "{}",
        retry[0]
    );
    let finished = named(&events, "call_finished");
    let by = |name: &str| *finished.iter().find(|f| f["name"] == name).unwrap();
    assert!(
        by("echo")["key"].as_str().unwrap().contains("redacted"),
        "{}",
        by("echo")
    );
    assert!(
        by("failing")["error"]
            .as_str()
            .unwrap()
            .contains("<redacted>"),
        "{}",
        by("failing")
    );
    assert_eq!(by("failing")["retries"], 1);
}

#[test]
fn answers_that_would_steer_a_terminal_arrive_as_json_escapes() {
    let sb = Sandbox::new();
    let hostile = "Final answer: \u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}é";
    let panel = mock_panel(&sb, &[hostile, hostile, hostile]);
    let out = sb
        .cmd()
        .args(["ask", "--events", "--json", "--answer", "line", "--config"])
        .arg(&panel)
        .arg("Q?")
        .output()
        .unwrap();
    // `events` asserts that every line is printable ASCII; the text survives decoding.
    let events = events(&out.stderr);
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_finished");
    assert!(
        end["synthesis"]
            .as_str()
            .unwrap()
            .contains("\u{1b}[2J\u{202e}é"),
        "{end}"
    );
}

/// The binary, as `Sandbox::cmd` runs it (with `FAKE_KEY` set), stdout and stderr piped.
fn spawn(sb: &Sandbox, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"))
        .env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("XDG_STATE_HOME", sb.state_dir())
        .env("NO_COLOR", "1")
        .env("FAKE_KEY", KEY)
        .current_dir(sb.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// [`spawn`] with stderr read line by line as it is written: (arrival, line) per line.
fn spawn_reading_stderr(
    sb: &Sandbox,
    args: &[&str],
) -> (std::process::Child, mpsc::Receiver<(Instant, String)>) {
    let mut child = spawn(sb, args);
    let stderr = child.stderr.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (child, receive)
}

#[test]
fn events_arrive_as_calls_finish_not_at_the_end() {
    let slow_for = Duration::from_secs(4);
    let fast = TestServer::always(openai_ok("Final answer: 4", 5, 5));
    let slow = TestServer::always(Reply::Delayed(
        slow_for,
        Box::new(openai_ok("Final answer: 4", 5, 5)),
    ));
    let sb = Sandbox::new();
    let mut config = String::new();
    for (name, server) in [("fast", &fast), ("slow", &slow)] {
        config.push_str(&format!(
            "[providers.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n\n",
            server.url()
        ));
    }
    for (name, provider) in [("fast-1", "fast"), ("fast-2", "fast"), ("slow", "slow")] {
        config.push_str(&format!(
            "[[participants]]\nprovider = \"{provider}\"\nmodel = \"m\"\nname = \"{name}\"\n\n"
        ));
    }
    let cfg = sb.write("panel.toml", &config);
    let started = Instant::now();
    let (mut child, lines) = spawn_reading_stderr(
        &sb,
        &[
            "ask",
            "--events",
            "--json",
            "--strategy",
            "vote",
            // The two fast seats already decide the vote: without this the round closes
            // as soon as they answer, and the run may end before the check below.
            "--wait-all",
            "--config",
            cfg.to_str().unwrap(),
            "2+2?",
        ],
    );
    let mut fast_done = Vec::new();
    let mut seen = Vec::new();
    while fast_done.len() < 2 {
        let Ok((at, line)) = lines.recv_timeout(Duration::from_secs(3)) else {
            let _ = child.kill();
            panic!("the fast seats' call_finished did not arrive in time: {seen:?}");
        };
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "call_finished" && event["name"] != "slow" {
            fast_done.push(at);
        }
        assert_ne!(
            (event["event"].as_str(), event["name"].as_str()),
            (Some("call_finished"), Some("slow")),
            "the slow seat finished first"
        );
        seen.push(line);
    }
    // Both arrived well before the slow seat could answer, while the run still ran.
    for at in &fast_done {
        assert!(
            *at - started < slow_for - Duration::from_secs(1),
            "{seen:?}"
        );
    }
    assert!(child.try_wait().unwrap().is_none(), "the run already ended");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let rest: Vec<String> = lines.iter().map(|(_, l)| l).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("\"call_finished\"") && l.contains("\"slow\"")),
        "{rest:?}"
    );
    assert!(
        rest.last().unwrap().contains("\"run_finished\""),
        "{rest:?}"
    );
}

#[test]
fn a_closed_stderr_does_not_fail_the_run() {
    let sb = Sandbox::new();
    let panel = mock_panel(
        &sb,
        &["Final answer: 4", "Final answer: 4", "Final answer: 4"],
    );
    let mut child = spawn(
        &sb,
        &[
            "ask",
            "--events",
            "--json",
            "--config",
            panel.to_str().unwrap(),
            "2+2?",
        ],
    );
    // The reader goes away at once: every event write fails with a broken pipe.
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "final");
}

#[test]
fn a_call_the_round_timeout_cuts_still_has_its_call_finished() {
    let fast = TestServer::always(openai_ok("Final answer: 4", 5, 5));
    let hung = TestServer::always(Reply::Hang);
    let sb = Sandbox::new();
    let mut config = String::new();
    for (name, server) in [("fast", &fast), ("hung", &hung)] {
        config.push_str(&format!(
            "[providers.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n\n",
            server.url()
        ));
    }
    for (name, provider) in [("fast-1", "fast"), ("fast-2", "fast"), ("hung", "hung")] {
        config.push_str(&format!(
            "[[participants]]\nprovider = \"{provider}\"\nmodel = \"m\"\nname = \"{name}\"\n\n"
        ));
    }
    let cfg = sb.write("panel.toml", &config);
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .args(["ask", "--events", "--json", "--strategy", "vote"])
        // The round timeout, not the certain outcome, cuts the hung call.
        .args(["--round-timeout", "0.5", "--wait-all", "--config"])
        .arg(&cfg)
        .arg("2+2?")
        .output()
        .unwrap();
    let events = events(&out.stderr);
    let started = named(&events, "call_started");
    let finished = named(&events, "call_finished");
    assert_eq!((started.len(), finished.len()), (3, 3), "{events:?}");
    let hung = finished.iter().find(|f| f["name"] == "hung").unwrap();
    assert_eq!(hung["ok"], false);
    assert!(
        hung["error"].as_str().unwrap().contains("round timeout"),
        "{hung}"
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["round_decided", "run_finished"],
        "{kinds:?}"
    );
}

#[test]
fn the_synthesis_call_and_its_warnings_are_events_too() {
    let sb = Sandbox::new();
    let panel = mock_panel(
        &sb,
        &["Final answer: 4", "Final answer: 4", "Final answer: 4"],
    );
    // The synthesizer also sits on the panel: a warning, which must be an event here.
    let out = sb
        .cmd()
        .args(["ask", "--events", "--synthesize", "mock:script", "--config"])
        .arg(&panel)
        .arg("2+2?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let events = events(&out.stderr);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind}: {kinds:?}"))
    };
    assert!(at("round_decided") < at("synthesis_started"), "{kinds:?}");
    assert!(
        at("synthesis_started") < at("synthesis_finished"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"run_finished"));
    let warning = &events[at("warning")];
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("also sits on the panel"),
        "{warning}"
    );
    let done = &events[at("synthesis_finished")];
    assert_eq!(done["ok"], true);
    assert_eq!(done["name"], "mock:script");
}
