//! The run log: every `ask` in an SQLite database written as the run goes, read back with
//! `logs`, and `--cache` answering identical requests from it. The real binary runs
//! against loopback OpenAI servers.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const KEY: &str = "sk-FAKE-77aa01-RUNLOGLEAK-4242";

/// One OpenAI provider per server, one seat each (`s0`, `s1`, …).
fn panel(sb: &Sandbox, servers: &[&TestServer]) -> std::path::PathBuf {
    let mut config = String::new();
    for (i, server) in servers.iter().enumerate() {
        config.push_str(&format!(
            "[providers.p{i}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n\n\
             [[participants]]\nprovider = \"p{i}\"\nmodel = \"m\"\nname = \"s{i}\"\n\n",
            server.url()
        ));
    }
    sb.write("panel.toml", &config)
}

fn db(sb: &Sandbox) -> std::path::PathBuf {
    sb.path().join("log").join("runs.db")
}

fn ask(sb: &Sandbox, cfg: &std::path::Path, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = sb.cmd();
    cmd.env("FAKE_KEY", KEY)
        .env("LLM_CONSENSUS_LOG_DB", db(sb))
        .args([
            "ask",
            "--json",
            "--strategy",
            "vote",
            "--seed",
            "5",
            "--config",
        ])
        .arg(cfg)
        .args(extra)
        .arg("What is the capital of France?");
    cmd
}

fn logs(sb: &Sandbox, args: &[&str]) -> Value {
    let out = sb
        .cmd()
        .env("LLM_CONSENSUS_LOG_DB", db(sb))
        .arg("logs")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_run_is_logged_with_its_calls_rounds_and_report() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let b = TestServer::always(openai_ok("It is Paris.\nFinal answer: Paris", 12, 4));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a, &b]);
    let out = ask(&sb, &cfg, &[]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    let runs = logs(&sb, &["list", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let id = runs[0]["id"].to_string();
    let run = logs(&sb, &["show", &id, "--json"]);
    assert_eq!(run["seed"], 5);
    assert_eq!(run["strategy"], "vote");
    assert_eq!(run["prompt"], "What is the capital of France?");
    assert_eq!(run["status"], "final");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(
        run["report"], report,
        "the logged report is the --json object"
    );
    let calls = run["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{run}");
    let mut texts: Vec<&str> = calls
        .iter()
        .map(|c| c["response"].as_str().unwrap())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        ["Final answer: Paris", "It is Paris.\nFinal answer: Paris"]
    );
    for call in calls {
        assert_eq!(call["ok"], true);
        assert!(
            call["request"]["user"]
                .as_str()
                .unwrap()
                .contains("capital of France"),
            "{call}"
        );
        assert!(call["request"]["seed"].is_u64(), "{call}");
        assert!(call["usage"]["input_tokens"].is_u64(), "{call}");
    }
    assert!(!run["rounds"].as_array().unwrap().is_empty(), "{run}");

    // The text views print the same run.
    let out = sb
        .cmd()
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .args(["logs", "show", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("It is Paris."),
        "{text}"
    );
    let out = sb
        .cmd()
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .args(["logs", "path"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        db(&sb).display().to_string()
    );

    // The key never reaches the log (nor its write-ahead file).
    for suffix in ["", "-wal"] {
        let mut path = db(&sb).into_os_string();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                "the key is in {path:?}"
            );
        }
    }
}

#[test]
fn the_default_log_is_in_the_xdg_data_directory() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    let data = sb.path().join("data");
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .env("XDG_DATA_HOME", &data)
        .args(["ask", "--json", "--config"])
        .arg(&cfg)
        .arg("q?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(data.join("llm-consensus").join("logs.db").is_file());
}

#[test]
fn no_log_writes_nothing() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    let out = ask(&sb, &cfg, &["--no-log"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!db(&sb).exists());
    assert!(
        !sb.path().join(".local").exists(),
        "nothing in the default place either"
    );
}

#[test]
fn a_log_that_cannot_be_written_is_a_warning_and_the_run_goes_on() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    // The log's directory is a file: it cannot be created.
    sb.write("blocker", "not a directory");
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .env(
            "LLM_CONSENSUS_LOG_DB",
            sb.path().join("blocker").join("logs.db"),
        )
        .args(["ask", "--json", "--config"])
        .arg(&cfg)
        .arg("q?")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: run log") && stderr.contains("blocker"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "final");
}

#[test]
fn cache_hits_make_no_calls_and_cost_nothing() {
    let sb = Sandbox::new();
    let price = "price = { input = 1.0, output = 2.0 }\n";
    let first = TestServer::always(openai_ok("Final answer: Paris", 1000, 500));
    let cfg = panel(&sb, &[&first]);
    let config = std::fs::read_to_string(&cfg).unwrap().replacen(
        "model = \"m\"",
        &format!("model = \"m\"\n{price}"),
        1,
    );
    std::fs::write(&cfg, &config).unwrap();
    let out = ask(&sb, &cfg, &["--cache"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["usage"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(first.count(), 1);
    let entry = &report["rounds"][0]["participants"][0];
    assert!(
        entry.get("cached").is_none(),
        "only a cached call says so: {entry}"
    );

    // The same request again: answered from the log.
    let out = ask(&sb, &cfg, &["--cache"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(first.count(), 1, "a cache hit makes no call");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["answer"].as_str().map(str::trim),
        Some("Paris"),
        "{report}"
    );
    assert_eq!(report["usage"]["cost_usd"], 0.0, "{report}");
    assert_eq!(report["participants"][0]["cost_usd"], 0.0, "{report}");
    assert_eq!(report["usage"]["input_tokens"], 0, "{report}");
    let entry = &report["rounds"][0]["participants"][0];
    assert_eq!(entry["cached"], true, "{entry}");
    let run = logs(&sb, &["show", "2", "--json"]);
    assert_eq!(run["calls"][0]["cached"], true, "{run}");
    assert_eq!(run["calls"][0]["cost_usd"], 0.0, "{run}");

    // Another seed is another request: it is sent.
    let mut cmd = sb.cmd();
    cmd.env("FAKE_KEY", KEY)
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .args([
            "ask",
            "--json",
            "--strategy",
            "vote",
            "--seed",
            "6",
            "--cache",
            "--config",
        ])
        .arg(&cfg)
        .arg("What is the capital of France?");
    assert_eq!(cmd.output().unwrap().status.code(), Some(0));
    assert_eq!(first.count(), 2);
}

#[test]
fn a_run_killed_mid_round_keeps_the_answers_that_had_arrived() {
    let fast = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let fast2 = TestServer::always(openai_ok("Final answer: Lyon", 10, 3));
    let slow = TestServer::always(paced(
        openai_sse(&["Final answer: Paris"], Some((10, 3))),
        Duration::from_secs(30),
    ));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&fast, &fast2, &slow]);
    let bin = assert_cmd::cargo::cargo_bin("llm-consensus");
    let mut child = std::process::Command::new(bin)
        .env_clear()
        .env("HOME", sb.path())
        .env("FAKE_KEY", KEY)
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .args(["ask", "--json", "--strategy", "vote", "--config"])
        .arg(&cfg)
        .arg("q?")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until both fast answers are in the log, then SIGKILL.
    let started = Instant::now();
    let answered = loop {
        let out = sb
            .cmd()
            .env("LLM_CONSENSUS_LOG_DB", db(&sb))
            .args(["logs", "list", "--json"])
            .output()
            .unwrap();
        let runs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if runs[0]["calls"] == 2 {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(answered, "the fast answers never reached the log");
    assert_eq!(slow.count(), 1, "the slow seat was asked");

    let run = logs(&sb, &["show", "1", "--json"]);
    assert_eq!(run["status"], Value::Null, "a killed run has no end: {run}");
    assert_eq!(run["report"], Value::Null);
    let mut texts: Vec<&str> = run["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["response"].as_str().unwrap())
        .collect();
    texts.sort();
    assert_eq!(texts, ["Final answer: Lyon", "Final answer: Paris"]);
}

#[test]
fn the_config_names_the_log_or_turns_it_off() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let elsewhere = sb.path().join("elsewhere.db");
    let named = format!("[log]\npath = \"{}\"\n\n{base}", elsewhere.display());
    std::fs::write(&cfg, named).unwrap();
    let run = |cfg: &std::path::Path| {
        let out = sb
            .cmd()
            .env("FAKE_KEY", KEY)
            .args(["ask", "--json", "--config"])
            .arg(cfg)
            .arg("q?")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&cfg);
    assert!(elsewhere.is_file(), "[log] path is where the run is logged");
    let out = sb
        .cmd()
        .args(["logs", "path", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        elsewhere.display().to_string()
    );

    std::fs::remove_file(&elsewhere).unwrap();
    let off = format!(
        "[log]\nenabled = false\npath = \"{}\"\n\n{base}",
        elsewhere.display()
    );
    std::fs::write(&cfg, off).unwrap();
    run(&cfg);
    assert!(!elsewhere.exists(), "enabled = false logs nothing");
    assert!(!sb.path().join(".local").exists());
}

#[test]
fn a_key_a_provider_quotes_back_never_reaches_the_log() {
    let echo = TestServer::always(openai_ok(
        &format!("Your key is {KEY}.\nFinal answer: Paris"),
        10,
        3,
    ));
    let fails = TestServer::always(openai_error(
        400,
        &format!("bad request from {KEY}"),
        "invalid_request_error",
        None,
    ));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&echo, &fails]);
    let out = ask(&sb, &cfg, &[]).output().unwrap();
    assert!(
        out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = logs(&sb, &["show", "1", "--json"]);
    assert_eq!(run["calls"].as_array().unwrap().len(), 2, "{run}");
    let text = run.to_string();
    assert!(
        text.contains("Your key is") && text.contains("bad request from"),
        "{text}"
    );
    assert!(!text.contains(KEY), "{text}");
    for suffix in ["", "-wal"] {
        let mut path = db(&sb).into_os_string();
        path.push(suffix);
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is in {path:?}"
        );
    }
}

#[test]
fn a_relative_log_path_is_relative_to_the_config_file() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let cfg = sb.write(
        "conf/panel.toml",
        &format!("[log]\npath = \"sub/here.db\"\n\n{base}"),
    );
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .args(["ask", "--json", "--config"])
        .arg(&cfg)
        .arg("q?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(sb.path().join("conf/sub/here.db").is_file());
    assert!(!sb.path().join("sub").exists());
}

#[test]
fn logs_before_any_run_lists_nothing_and_creates_nothing() {
    let sb = Sandbox::new();
    assert_eq!(logs(&sb, &["list", "--json"]), serde_json::json!([]));
    let out = sb
        .cmd()
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .arg("logs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let out = sb
        .cmd()
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .args(["logs", "show", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no run 1 in the run log"), "{stderr}");
    assert!(!db(&sb).exists());
}

#[test]
fn with_events_a_log_that_cannot_be_opened_is_a_warning_event() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    sb.write("blocker", "not a directory");
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .env(
            "LLM_CONSENSUS_LOG_DB",
            sb.path().join("blocker").join("logs.db"),
        )
        .args(["ask", "--json", "--events", "--config"])
        .arg(&cfg)
        .arg("q?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warning = events.iter().find(|e| e["event"] == "warning").unwrap();
    assert!(
        warning["message"].as_str().unwrap().contains("run log"),
        "{warning}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "run_finished"),
        "{stderr}"
    );
}

#[test]
fn logs_text_shows_control_characters_as_visible_escapes() {
    let a = TestServer::always(openai_ok("\u{1b}[2JFinal answer: Paris\u{202e}", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    assert_eq!(ask(&sb, &cfg, &[]).output().unwrap().status.code(), Some(0));
    for args in [&["show", "1"][..], &["list"][..]] {
        let out = sb
            .cmd()
            .env("LLM_CONSENSUS_LOG_DB", db(&sb))
            .arg("logs")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text:?}"
        );
    }
    let out = sb
        .cmd()
        .env("LLM_CONSENSUS_LOG_DB", db(&sb))
        .args(["logs", "show", "1"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\\u{1b}[2JFinal answer: Paris\\u{202e}")
    );
}

#[test]
fn cache_without_a_log_says_every_call_is_sent() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("[log]\nenabled = false\n\n{base}")).unwrap();
    let out = ask(&sb, &cfg, &["--cache"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: --cache: no run log"), "{stderr}");
    assert_eq!(a.count(), 1);
}

#[test]
fn the_synthesis_call_is_logged_too() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let synth = TestServer::always(openai_ok("All agree: Paris.", 40, 6));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a, &synth]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    // Only p0 sits on the panel; p1 writes the synthesis.
    let panel_only = base.split("[providers.p1]").next().unwrap().to_string();
    let p1 = format!(
        "[providers.p1]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n\n",
        synth.url()
    );
    std::fs::write(&cfg, format!("{p1}{panel_only}")).unwrap();
    let out = ask(&sb, &cfg, &["--synthesize", "p1:writer"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = logs(&sb, &["show", "1", "--json"]);
    let calls = run["calls"].as_array().unwrap();
    let last = calls.last().unwrap();
    assert_eq!(last["stage"], "synthesis", "{run}");
    assert_eq!(last["seat"], Value::Null);
    assert_eq!(last["model"], "writer");
    assert_eq!(last["response"], "All agree: Paris.");
    assert!(
        calls[..calls.len() - 1]
            .iter()
            .all(|c| c["stage"] == "round"),
        "{run}"
    );
}

#[test]
fn a_log_that_stops_taking_writes_is_one_warning_and_the_run_goes_on() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let b = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a, &b]);
    assert_eq!(ask(&sb, &cfg, &[]).output().unwrap().status.code(), Some(0));
    // Another writer holds the log: every write of the next run times out.
    let holder = rusqlite::Connection::open(db(&sb)).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = ask(&sb, &cfg, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("warning: run log").count(), 1, "{stderr}");
    assert!(stderr.contains("locked"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "final");
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_logged_run_replays_by_its_id_to_the_same_decision() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let b = TestServer::always(openai_ok("It is Paris.\nFinal answer: Paris", 12, 4));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a, &b]);
    let out = ask(&sb, &cfg, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = logs(&sb, &["list", "--json"])[0]["id"].to_string();
    let calls = (a.count(), b.count());

    let replay = |id: &str, extra: &[&str]| {
        sb.cmd()
            .env("LLM_CONSENSUS_LOG_DB", db(&sb))
            .args(["replay", id, "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = replay(&id, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "status",
        "winner",
        "answer",
        "finalized",
        "participants",
        "rounds",
    ] {
        assert_eq!(replayed[field], report[field], "{field}");
    }
    assert_eq!(
        replayed["replayed_from"],
        format!("run {id} of the run log")
    );
    assert_eq!((a.count(), b.count()), calls, "a replay makes no call");

    // A stricter threshold re-decides offline; an unknown id is a one-line usage error.
    let out = replay(&id, &["--quorum-share", "unanimous"]);
    assert!(out.status.code().is_some_and(|c| c == 0 || c == 1));
    let out = replay("999", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run 999 is not a finished run of the run log"),
        "{stderr}"
    );
}

#[test]
fn the_transcript_carries_the_full_record_of_a_logged_run() {
    let a = TestServer::always(openai_ok("Final answer: Paris", 10, 3));
    let b = TestServer::always(openai_ok("It is Paris.\nFinal answer: Paris", 12, 4));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &[&a, &b]);
    let path = sb.path().join("t.json");
    let read = |extra: &[&str]| {
        let out = ask(
            &sb,
            &cfg,
            &[&["--transcript", path.to_str().unwrap()], extra].concat(),
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let transcript: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (transcript, report)
    };
    let (transcript, report) = read(&[]);
    let calls = transcript["record"]["calls"]
        .as_array()
        .expect("record.calls");
    assert_eq!(calls.len(), 2, "{transcript}");
    for call in calls {
        assert_eq!(
            call["request"]["user"], "What is the capital of France?",
            "the request as sent: {call}"
        );
    }
    assert!(!transcript.to_string().contains(KEY));
    // Besides the record, the transcript is the --json result.
    let mut without = transcript.clone();
    without.as_object_mut().unwrap().remove("record");
    assert_eq!(without["rounds"], report["rounds"]);
    assert_eq!(without["status"], report["status"]);

    // Without the log there is no record to add: the transcript is the result alone.
    let (transcript, _) = read(&["--no-log"]);
    assert!(transcript.get("record").is_none(), "{transcript}");
}
