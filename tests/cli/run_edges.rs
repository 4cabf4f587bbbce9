//! The edges of a run: keys a provider echoes stay home, Ctrl-C is honoured during the
//! synthesis, the transcript is written atomically, the run deadline bounds a trickling
//! provider, and the synthesizer's cost counts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const QUESTION: &str = "What is 2+2?";
const LEAKY_KEY: &str = "sk-LEAKY-5b1e77d0-ECHOED-9931";
const OTHER_KEY: &str = "sk-OTHER-0c4f1a2b-HONEST-1177";
const PASSWORD: &str = "pw-USERINFO-83d2c6";

/// The key a request carried, from its `Authorization: Bearer` header.
fn bearer(req: &Request) -> String {
    req.header("authorization")
        .unwrap_or_default()
        .trim_start_matches("Bearer ")
        .to_string()
}

/// Standard base64 of `bytes`, to recognise a Basic authorization echoed back.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A successful answer, trickled one byte per `pace`: a server that never goes idle
/// long enough for the idle timeout.
fn trickled(reply: Reply, pace: Duration) -> Reply {
    let Reply::Full {
        status,
        headers,
        body,
    } = reply
    else {
        panic!("trickled needs a full reply");
    };
    Reply::Stream {
        status,
        headers,
        chunks: body.into_iter().map(|b| (pace, vec![b])).collect(),
        end: End::Finish,
    }
}

fn spawn_binary(sb: &Sandbox, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"))
        .env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start llm-consensus")
}

fn interrupt(pid: u32) {
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
}

#[test]
fn a_key_echoed_in_an_answer_reaches_no_output_and_no_other_provider() {
    // Answers well, and quotes the key it was sent in the answer.
    let leaky = TestServer::start(|req, _| {
        openai_ok(
            &format!("I was called with {}.\nFinal answer: 4", bearer(req)),
            10,
            5,
        )
    });
    // Reached with user:password in its base_url; quotes the password and the Basic
    // authorization it received.
    let basic = TestServer::start(|req, _| {
        let auth = req.header("authorization").unwrap_or("none").to_string();
        openai_ok(
            &format!("My password is {PASSWORD}, sent as {auth}.\nFinal answer: 5"),
            10,
            5,
        )
    });
    let honest = TestServer::always(openai_ok("Final answer: 6", 10, 5));
    let judge = TestServer::always(openai_ok("Four.\nDissent: none", 10, 5));
    let sb = Sandbox::new();
    let basic_url = basic
        .url()
        .replace("http://", &format!("http://user:{PASSWORD}@"));
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.leaky]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"LEAKY_KEY\"\n\n\
             [providers.basic]\nkind = \"openai\"\nbase_url = \"{basic_url}\"\n\n\
             [providers.honest]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"OTHER_KEY\"\n\n\
             [providers.judge]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"OTHER_KEY\"\n\n\
             [[participants]]\nprovider = \"leaky\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"basic\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"honest\"\nmodel = \"m\"\n",
            leaky.url(),
            honest.url(),
            judge.url()
        ),
    );
    let transcript = sb.path().join("run.json");
    let out = sb
        .cmd()
        .env("LEAKY_KEY", LEAKY_KEY)
        .env("OTHER_KEY", OTHER_KEY)
        .args(["ask", "-v", "--json", "--seed", "1", "--rounds", "2"])
        .args(["--synthesize", "judge:m", "--config"])
        .arg(&cfg)
        .arg("--transcript")
        .arg(&transcript)
        .arg(QUESTION)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let saved = std::fs::read_to_string(&transcript).unwrap();

    // The secrets really reached the servers, and came back in the answers.
    assert_eq!(bearer(&leaky.requests()[0]), LEAKY_KEY);
    let basic_auth = basic.requests()[0]
        .header("authorization")
        .unwrap_or_default()
        .to_string();
    let encoded = base64(format!("user:{PASSWORD}").as_bytes());
    assert_eq!(basic_auth, format!("Basic {encoded}"));
    // Peers' answers were quoted to the others, and the synthesizer was asked.
    assert!(honest.count() >= 2, "no refinement round: {report:#}");
    assert_eq!(judge.count(), 1, "{report:#}");
    assert_eq!(report["synthesis_source"], "synthesizer", "{report:#}");
    let quoted = honest.requests()[1].text();
    assert!(
        quoted.contains("I was called with <redacted>") || quoted.contains("sent as <redacted>"),
        "the refinement prompt quotes no scrubbed peer: {quoted}"
    );
    assert!(stdout.contains("I was called with <redacted>"), "{stdout}");

    let mut places = vec![
        ("stdout".to_string(), stdout.clone()),
        ("stderr".to_string(), stderr.clone()),
        ("transcript".to_string(), saved),
    ];
    for (name, server) in [
        ("leaky", &leaky),
        ("basic", &basic),
        ("honest", &honest),
        ("judge", &judge),
    ] {
        for (i, req) in server.requests().iter().enumerate() {
            places.push((format!("request {i} to {name}"), req.text()));
        }
    }
    for (place, text) in &places {
        for secret in [LEAKY_KEY, OTHER_KEY, PASSWORD, encoded.as_str()] {
            assert!(!text.contains(secret), "{secret} is in {place}:\n{text}");
        }
    }
}

#[test]
fn ctrl_c_during_the_synthesis_reports_the_winner_verbatim_as_interrupted() {
    let a = TestServer::always(openai_ok("2 + 2 = 4.\nFinal answer: 4", 10, 5));
    let b = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let judge = TestServer::always(Reply::Hang);
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.judge]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"b\"\nname = \"b\"\nmodel = \"m\"\n",
            a.url(),
            b.url(),
            judge.url()
        ),
    );
    let cfg = cfg.to_string_lossy();
    let t0 = Instant::now();
    let child = spawn_binary(
        &sb,
        &[
            "ask",
            "--json",
            "--seed",
            "1",
            "--timeout",
            "30",
            "--synthesize",
            "judge:m",
            "--config",
            &cfg,
            QUESTION,
        ],
    );
    while judge.count() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "no synthesis call");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    interrupt(child.id());
    let t1 = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "the synthesis call went on for {:?} after Ctrl-C: {stderr}",
        t1.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["finalized"], false);
    assert_eq!(report["answer"], "4");
    assert_eq!(report["synthesis_source"], "winner_verbatim");
    let winner = report["winner"].as_str().unwrap();
    let verbatim = if winner == "a" {
        "2 + 2 = 4.\nFinal answer: 4"
    } else {
        "Final answer: 4"
    };
    assert_eq!(report["synthesis"], verbatim);
    assert!(
        report["synthesis_error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{report:#}"
    );
    assert_eq!(judge.count(), 1);
}

#[test]
fn the_transcript_replaces_a_symlink_and_leaves_no_temporary_file() {
    let server = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"p\"\nmodel = \"m\"\n",
            server.url()
        ),
    );
    let victim = sb.write("elsewhere/precious.txt", "precious\n");
    let dir = sb.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let transcript = dir.join("run.json");
    std::os::unix::fs::symlink(&victim, &transcript).unwrap();
    let out = sb
        .cmd()
        .args(["ask", "--json", "--config"])
        .arg(&cfg)
        .arg("--transcript")
        .arg(&transcript)
        .arg(QUESTION)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the transcript was written through the symlink"
    );
    let meta = std::fs::symlink_metadata(&transcript).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&transcript).unwrap()).unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(saved["synthesis"], printed["synthesis"]);
    assert_eq!(saved["status"], "final");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["run.json"], "a temporary file was left behind");
}

#[test]
fn a_trickling_provider_cannot_keep_the_run_past_its_deadline() {
    // Sends its answer one byte a second: never idle, never done in time.
    let trickler = TestServer::always(trickled(
        openai_ok("Final answer: 5", 10, 5),
        Duration::from_secs(1),
    ));
    let a = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let b = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.t]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"b\"\nname = \"b\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"t\"\nname = \"t\"\nmodel = \"m\"\n",
            a.url(),
            b.url(),
            trickler.url()
        ),
    );
    let t0 = Instant::now();
    let out = sb
        .cmd()
        .args([
            "ask",
            "--json",
            "--seed",
            "1",
            "--deadline",
            "2",
            "--config",
        ])
        .arg(&cfg)
        .arg(QUESTION)
        .output()
        .unwrap();
    let elapsed = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?}: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The answers that came in decide; the trickler is absent, cut at the deadline.
    assert_eq!(report["answer"], "4", "{report:#}");
    assert_eq!(report["status"], "final", "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let t = &report["participants"][2];
    assert_eq!(t["live"], false);
    assert!(
        t["errors"][0].as_str().unwrap().contains("deadline"),
        "{t:#}"
    );
    assert_eq!(trickler.count(), 1, "asked again after the deadline");
}

#[test]
fn the_synthesizer_counts_in_the_cost_and_in_max_cost() {
    let a = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let b = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let judge = TestServer::always(openai_ok("Four.\nDissent: none", 100, 20));
    let free = TestServer::always(openai_ok("Four.\nDissent: none", 100, 20));
    let sb = Sandbox::new();
    let price = "price = { input = 1000.0, output = 1000.0 }";
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n{price}\n\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}\"\n{price}\n\n\
             [providers.judge]\nkind = \"openai\"\nbase_url = \"{}\"\n{price}\n\n\
             [providers.free]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\nmax_tokens = 10\n\n\
             [[participants]]\nprovider = \"b\"\nname = \"b\"\nmodel = \"m\"\nmax_tokens = 10\n",
            a.url(),
            b.url(),
            judge.url(),
            free.url()
        ),
    );
    let run = |flags: &[&str]| {
        let out = sb
            .cmd()
            .args(["ask", "--json", "--seed", "1", "--config"])
            .arg(&cfg)
            .args(flags)
            .arg(QUESTION)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), report, stderr)
    };
    let cost = |report: &Value| report["usage"]["cost_usd"].as_f64().unwrap();
    let panel_cost = |report: &Value| {
        report["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["cost_usd"].as_f64().unwrap())
            .sum::<f64>()
    };

    // 100 input and 20 output tokens at $1000 per million: $0.12 on top of the panel.
    let (code, report, stderr) = run(&["--synthesize", "judge:m"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["synthesis_source"], "synthesizer");
    let panel = panel_cost(&report);
    assert!(panel > 0.0);
    assert!((cost(&report) - (panel + 0.12)).abs() < 1e-9, "{report:#}");

    // The synthesis prompt (hundreds of bytes) and 4096 assumed output tokens could cost
    // over $4: with --max-cost 1 the rounds run, the synthesizer is not asked.
    let asked = judge.count();
    let (code, report, stderr) = run(&["--synthesize", "judge:m", "--max-cost", "1"]);
    assert_eq!(
        judge.count(),
        asked,
        "the synthesizer was asked: {report:#}"
    );
    assert_eq!(code, Some(0), "the decision stands: {stderr}");
    assert_eq!(report["synthesis_source"], "winner_verbatim");
    assert_eq!(report["synthesis"], "Final answer: 4");
    let why = report["synthesis_error"].as_str().unwrap();
    assert!(
        why.contains("--max-cost") && why.contains("worst case"),
        "{why}"
    );
    assert!(stderr.contains("was not asked"), "{stderr}");
    assert!((cost(&report) - panel_cost(&report)).abs() < 1e-12);

    // An unpriced synthesizer makes the run's cost unknown, never smaller (under
    // --max-cost it is a configuration error: see config_edges).
    let (_, report, _) = run(&["--synthesize", "free:m"]);
    assert_eq!(report["synthesis_source"], "synthesizer");
    assert!(report["usage"]["cost_usd"].is_null(), "{report:#}");
    assert_eq!(free.count(), 1);
}

#[test]
fn a_trickling_synthesizer_is_cut_at_the_deadline_and_the_winner_stays() {
    let a = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let b = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let judge = TestServer::always(trickled(
        openai_ok("Four.\nDissent: none", 10, 5),
        Duration::from_secs(1),
    ));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.judge]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"b\"\nname = \"b\"\nmodel = \"m\"\n",
            a.url(),
            b.url(),
            judge.url()
        ),
    );
    let t0 = Instant::now();
    let out = sb
        .cmd()
        .args(["ask", "--json", "--seed", "1", "--deadline", "2"])
        .args(["--synthesize", "judge:m", "--config"])
        .arg(&cfg)
        .arg(QUESTION)
        .output()
        .unwrap();
    let elapsed = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?}: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["synthesis_source"], "winner_verbatim");
    assert_eq!(report["synthesis"], "Final answer: 4");
    let why = report["synthesis_error"].as_str().unwrap();
    assert!(why.contains("deadline"), "{why}");
    assert_eq!(judge.count(), 1, "retried past the deadline");
}

#[test]
fn a_full_stderr_loses_the_synthesis_warning_not_the_run() {
    let server = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"p\"\nmodel = \"m\"\n",
            server.url()
        ),
    );
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    // The synthesizer also sits on the panel: the run warns about it on stderr.
    let cfg = cfg.to_string_lossy();
    let out = Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"))
        .env_clear()
        .env("HOME", sb.path())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args([
            "ask",
            "--json",
            "--synthesize",
            "p:m",
            "--config",
            &cfg,
            QUESTION,
        ])
        .stdin(Stdio::null())
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["synthesis_source"], "synthesizer");
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("also sits on the panel")
    );
}

#[test]
fn tokens_of_a_failed_attempt_count_in_the_cost() {
    // The first attempt's stream breaks off after reporting 50 input tokens and 1 output
    // token; the retry answers with 10 and 5.
    let server = TestServer::sequence(vec![
        truncated(anthropic_sse(&["Final answer: 4"], 50, 2), 1, End::Abort),
        anthropic_sse(&["Final answer: 4"], 10, 5),
    ]);
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nstream = true\n\
             price = {{ input = 1000.0, output = 1000.0 }}\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\nmax_tokens = 10\n",
            server.url()
        ),
    );
    let out = sb
        .cmd()
        .args(["ask", "--json", "--seed", "1", "--retries", "1", "--config"])
        .arg(&cfg)
        .arg(QUESTION)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(server.count(), 2);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &report["participants"][0];
    assert_eq!(a["retries"], 1, "{a:#}");
    assert_eq!(a["usage"]["input_tokens"], 60, "{a:#}");
    assert_eq!(a["usage"]["output_tokens"], 6, "{a:#}");
    let cost = report["usage"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 66.0 * 1000.0 / 1e6).abs() < 1e-12, "{report:#}");
}

#[test]
fn tokens_of_a_failed_attempt_count_toward_max_cost() {
    // Seat a's first attempt breaks off after reporting 5000 input tokens ($5 at $1000
    // per million); the retry answers. Seat b dissents, so a refinement round follows,
    // unless the $5 already spent leaves too little of --max-cost 3 for it.
    let a = TestServer::sequence(vec![
        truncated(anthropic_sse(&["Final answer: 4"], 5000, 2), 1, End::Abort),
        anthropic_sse(&["Final answer: 4"], 10, 5),
        anthropic_sse(&["Final answer: 4"], 10, 5),
    ]);
    let b = TestServer::always(openai_ok("Final answer: 5", 10, 5));
    let sb = Sandbox::new();
    let price = "price = { input = 1000.0, output = 1000.0 }";
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\nstream = true\n{price}\n\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}\"\n{price}\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\nmax_tokens = 10\n\n\
             [[participants]]\nprovider = \"b\"\nname = \"b\"\nmodel = \"m\"\nmax_tokens = 10\n",
            a.url(),
            b.url()
        ),
    );
    let out = sb
        .cmd()
        .args(["ask", "--json", "--seed", "1", "--retries", "1"])
        .args(["--max-cost", "3", "--config"])
        .arg(&cfg)
        .arg(QUESTION)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("before round 1") && error.contains("--max-cost"),
        "{error}"
    );
    assert_eq!((a.count(), b.count()), (2, 1));
    assert!(
        report["usage"]["cost_usd"].as_f64().unwrap() > 5.0,
        "{report:#}"
    );
}

#[test]
fn tokens_of_a_failed_synthesis_count_in_the_cost() {
    let a = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    // The synthesizer's stream breaks off after reporting 100 input tokens and 1 output.
    let judge = TestServer::always(truncated(anthropic_sse(&["Four."], 100, 2), 1, End::Abort));
    let sb = Sandbox::new();
    let price = "price = { input = 1000.0, output = 1000.0 }";
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\n{price}\n\n\
             [providers.judge]\nkind = \"anthropic\"\nbase_url = \"{}\"\nstream = true\n{price}\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\n",
            a.url(),
            judge.url()
        ),
    );
    let out = sb
        .cmd()
        .args(["ask", "--json", "--seed", "1", "--retries", "0"])
        .args(["--synthesize", "judge:m", "--config"])
        .arg(&cfg)
        .arg(QUESTION)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(judge.count(), 1);
    assert_eq!(report["synthesis_source"], "winner_verbatim");
    let panel = report["participants"][0]["cost_usd"].as_f64().unwrap();
    let cost = report["usage"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - panel - 101.0 * 1000.0 / 1e6).abs() < 1e-12,
        "{report:#}"
    );
}
