//! The transport at its edges, against loopback servers that behave like hostile or
//! broken providers: waits too long to represent, keys split by an excerpt's cut,
//! redirects to another host, streams that never say why they stopped, seats that all
//! retry at once, and command providers whose children outlive them.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const KEY: &str = "sk-EDGE-0123456789abcdef-LEAKCHECK";
const QUESTION: &str = "What is 2+2?";

/// A panel with one seat per `(name, kind, url)`, keys from EDGE_KEY.
fn panel(sb: &Sandbox, seats: &[(&str, &str, String)]) -> String {
    let mut text = String::new();
    for (name, kind, url) in seats {
        text.push_str(&format!(
            "[providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key_env = \"EDGE_KEY\"\n\n"
        ));
    }
    for (name, _, _) in seats {
        text.push_str(&format!(
            "[[participants]]\nprovider = \"{name}\"\nname = \"{name}\"\nmodel = \"m\"\n\n"
        ));
    }
    sb.write("panel.toml", &text).to_string_lossy().into_owned()
}

struct Run {
    code: i32,
    report: Value,
    stdout: String,
    stderr: String,
}

fn ask(sb: &Sandbox, config: &str, flags: &[&str]) -> Run {
    let out = sb
        .cmd()
        .env("EDGE_KEY", KEY)
        .args(["ask", "--json", "--seed", "1", "--config", config])
        .args(flags)
        .arg(QUESTION)
        .output()
        .expect("run llm-consensus");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 101, "the binary panicked:\n{stderr}");
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    Run {
        code,
        report,
        stdout,
        stderr,
    }
}

fn errors(report: &Value, name: &str) -> String {
    report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no participant {name} in {report}"))["errors"]
        .to_string()
}

fn rate_limited() -> Reply {
    openai_error(
        429,
        "Rate limit reached",
        "requests",
        Some("rate_limit_exceeded"),
    )
}

// ------------------------------------------------------------------------ never crash

/// Waits no `Duration` can hold (and an HTTP date whose arithmetic overflows) are read
/// with a cap: the call is not retried, and the run ends normally.
#[test]
fn waits_too_long_to_represent_end_the_call_not_the_run() {
    let ms = TestServer::always(with_header(rate_limited(), "retry-after-ms", "1e300"));
    let secs = TestServer::always(with_header(rate_limited(), "retry-after", "1e20"));
    let date = TestServer::always(with_header(
        rate_limited(),
        "retry-after",
        "Wed, 21 Oct 99999999999999999 07:28:00 GMT",
    ));
    let gemini = TestServer::always(gemini_error(
        429,
        "RESOURCE_EXHAUSTED",
        "slow down",
        Some("1e300s"),
    ));
    let good = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let sb = Sandbox::new();
    let cfg = panel(
        &sb,
        &[
            ("ms", "openai", ms.url()),
            ("secs", "openai", secs.url()),
            ("date", "openai", date.url()),
            ("gemini", "gemini", gemini.url()),
            ("good", "openai", good.url()),
        ],
    );
    let run = ask(&sb, &cfg, &["--retries", "1"]);
    assert_eq!(run.report["answer"], "4", "{}", run.stderr);
    for name in ["ms", "secs", "gemini"] {
        let e = errors(&run.report, name);
        assert!(e.contains("not retried"), "{name}: {e}");
        assert!(!e.contains("attempts"), "{name} was retried: {e}");
    }
    // A date out of range is no wait at all: the backoff applies.
    let e = errors(&run.report, "date");
    assert!(e.contains("after 2 attempts"), "{e}");
    // Each seat was asked once per round (refinement rounds call again).
    assert_eq!(ms.count(), secs.count());
    assert_eq!(gemini.count(), ms.count());
    assert_eq!(date.count(), 2 * ms.count());
}

// ------------------------------------------------------------------------ keys stay home

/// An error body quoting the key where the excerpt is cut: the key is scrubbed before
/// the cut, so not even its first characters are shown.
#[test]
fn a_key_split_by_the_excerpt_cut_is_still_scrubbed() {
    let body = format!("{}{KEY} and more", "x".repeat(192));
    let kinds = ["openai", "anthropic", "gemini", "ollama"];
    let servers: Vec<TestServer> = kinds
        .iter()
        .map(|_| TestServer::always(text(500, "text/plain", &body)))
        .collect();
    let seats: Vec<(&str, &str, String)> = kinds
        .iter()
        .zip(&servers)
        .map(|(kind, s)| (*kind, *kind, s.url()))
        .collect();
    let sb = Sandbox::new();
    let cfg = panel(&sb, &seats);
    let run = ask(&sb, &cfg, &["-v", "--retries", "1"]);
    for kind in kinds {
        let e = errors(&run.report, kind);
        assert!(e.contains("xxxxxxxx"), "{kind}: the excerpt is shown: {e}");
    }
    let prefix = &KEY[..8];
    assert!(!run.stdout.contains(prefix), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains(prefix), "stderr: {}", run.stderr);
}

/// A provider that answers with a redirect: nothing goes to the host it names (the key
/// headers and the prompt would), and the error names the `Location` without retrying.
#[test]
fn redirects_are_not_followed_and_name_the_location() {
    let cases = [
        ("anthropic", anthropic_ok("Final answer: 4", 5, 2)),
        ("gemini", gemini_ok("Final answer: 4", 5, 2)),
        ("azure", openai_ok("Final answer: 4", 5, 2)),
        ("openai", openai_ok("Final answer: 4", 5, 2)),
    ];
    for (kind, answer) in cases {
        let elsewhere = TestServer::always(answer);
        let target = format!("{}/stolen", elsewhere.url());
        let redirecting = TestServer::always(with_header(
            text(307, "text/plain", "moved"),
            "Location",
            &target,
        ));
        let sb = Sandbox::new();
        let cfg = panel(&sb, &[(kind, kind, redirecting.url())]);
        let run = ask(&sb, &cfg, &["--retries", "2"]);
        assert_eq!(
            elsewhere.count(),
            0,
            "{kind}: the redirect was followed: {:?}",
            elsewhere.requests().first().map(|r| r.headers.clone())
        );
        assert_eq!(redirecting.count(), 1, "{kind}: a redirect is not retried");
        assert_ne!(run.code, 0, "{kind}");
        let e = errors(&run.report, kind);
        assert!(
            e.contains("HTTP 307") && e.contains(&target) && e.contains("base_url"),
            "{kind}: {e}"
        );
    }
}

/// A `base_url` with `user:password@` and a key: each request carries one Authorization
/// header, the Basic one written for that address (a server reads only one of two). A key
/// that travels in its own header is still sent beside it.
#[test]
fn a_url_password_and_a_key_make_one_authorization_header() {
    let cases = [
        ("openai", openai_ok("Final answer: 4", 5, 2), None),
        ("ollama", ollama_ok("Final answer: 4", 5, 2), None),
        ("azure", openai_ok("Final answer: 4", 5, 2), Some("api-key")),
        (
            "anthropic",
            anthropic_ok("Final answer: 4", 5, 2),
            Some("x-api-key"),
        ),
        (
            "gemini",
            gemini_ok("Final answer: 4", 5, 2),
            Some("x-goog-api-key"),
        ),
    ];
    for (kind, answer, key_header) in cases {
        let server = TestServer::always(answer);
        let url = server.url().replace("http://", "http://alice:s3cret-pw@");
        let sb = Sandbox::new();
        let cfg = panel(&sb, &[(kind, kind, url)]);
        let run = ask(&sb, &cfg, &[]);
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let request = &server.requests()[0];
        let authorization: Vec<&str> = request
            .headers
            .iter()
            .filter(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_str())
            .collect();
        // base64("alice:s3cret-pw")
        assert_eq!(
            authorization,
            ["Basic YWxpY2U6czNjcmV0LXB3"],
            "{kind}: {:?}",
            request.headers
        );
        assert_eq!(
            key_header.and_then(|h| request.header(h)),
            key_header.map(|_| KEY),
            "{kind}"
        );
    }
}

// ------------------------------------------------------------------------ nothing invented

fn sse(events: &[(Option<&str>, Value)], done: bool) -> Reply {
    let mut chunks: Vec<String> = events
        .iter()
        .map(|(name, data)| match name {
            Some(name) => format!("event: {name}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect();
    if done {
        chunks.push("data: [DONE]\n\n".to_string());
    }
    event_stream(200, "text/event-stream", chunks)
}

/// Streams that end (with `[DONE]`, `message_stop`, or just the end of the body) without
/// any chunk saying why the model stopped were cut off: failed calls, retried, never an
/// answer, in every streaming format.
#[test]
fn a_stream_that_never_says_why_it_stopped_is_a_failed_call() {
    let half = "The key is in the second drawer of";
    let openai = sse(
        &[
            (
                None,
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            ),
            (
                None,
                json!({"choices": [{"index": 0, "delta": {"content": half}, "finish_reason": null}]}),
            ),
        ],
        true,
    );
    let anthropic = sse(
        &[
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {"content": [], "stop_reason": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": half}}),
            ),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": 9}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        false,
    );
    let gemini = sse(
        &[(
            None,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": half}]}}]}),
        )],
        false,
    );
    let ollama = event_stream(
        200,
        "application/x-ndjson",
        vec![
            json!({"message": {"role": "assistant", "content": half}, "done": false}).to_string()
                + "\n",
        ],
    );
    let cases = [
        ("openai", openai, "no finish_reason"),
        ("anthropic", anthropic, "no stop_reason"),
        ("gemini", gemini, "ended before"),
        ("ollama", ollama, "ended before"),
    ];
    for (kind, reply, why) in cases {
        let server = TestServer::always(reply);
        let sb = Sandbox::new();
        let cfg = panel(&sb, &[(kind, kind, server.url())]);
        let run = ask(&sb, &cfg, &["--stream", "--retries", "1"]);
        let e = errors(&run.report, kind);
        assert!(e.contains(why), "{kind}: {e}");
        assert_eq!(
            server.count(),
            2,
            "{kind}: a cut-off stream is retried: {e}"
        );
        assert_ne!(run.code, 0, "{kind}");
        assert!(run.report["answer"].is_null(), "{kind}: {}", run.report);
        assert!(
            !run.stdout.contains("second drawer\""),
            "{kind}: {}",
            run.stdout
        );
    }
}

// ------------------------------------------------------------------------ honest numbers

/// Seats that fail together come back at different times: the backoff's jitter is random
/// (uniform over the top quarter of the step), not a function of the clock that every
/// seat reads at the same moment (which sent nearly every seat back after 466 ms).
#[test]
fn seats_that_fail_together_do_not_retry_together() {
    let names = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
    let servers: Vec<TestServer> = names
        .iter()
        .map(|_| TestServer::always(openai_error(500, "boom", "server_error", None)))
        .collect();
    let seats: Vec<(&str, &str, String)> = names
        .iter()
        .zip(&servers)
        .map(|(n, s)| (*n, "openai", s.url()))
        .collect();
    let sb = Sandbox::new();
    let cfg = panel(&sb, &seats);
    let run = ask(&sb, &cfg, &["-v", "--retries", "2", "--rounds", "1"]);
    // (attempt, wait in ms) of every retry in round 0.
    let mut waits: Vec<(u32, u64)> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("[round 0]"))
        .filter_map(|l| {
            let attempt = l
                .split_once("attempt ")?
                .1
                .split_once(' ')?
                .0
                .parse()
                .ok()?;
            let ms = l
                .split_once("retrying in ")?
                .1
                .split_once(" ms")?
                .0
                .parse()
                .ok()?;
            Some((attempt, ms))
        })
        .collect();
    assert_eq!(waits.len(), 2 * names.len(), "{}", run.stderr);
    waits.sort_unstable();
    waits.dedup();
    // Eight draws from 126 values (attempt 1) and eight from 251 (attempt 2): five
    // repeats or more is a 1-in-30000 event.
    assert!(
        waits.len() >= 12,
        "the seats retry in step: only {} distinct waits: {waits:?}",
        waits.len()
    );
}

// ------------------------------------------------------------------------ command provider

fn command_config(sb: &Sandbox, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    let text = format!(
        "[providers.local]\nkind = \"command\"\ncommand = [{}]\n\n[[participants]]\nprovider = \"local\"\nname = \"local\"\nmodel = \"m1\"\n",
        argv.join(", ")
    );
    sb.write("panel.toml", &text).to_string_lossy().into_owned()
}

/// A wrapper that starts a child and waits: on timeout the whole group goes, not only
/// the wrapper (a surviving child would keep making paid calls).
#[test]
fn a_command_timeout_kills_the_programs_children_too() {
    let sb = Sandbox::new();
    let cfg = command_config(&sb, &["sh", "-c", "sleep 30 & echo $! > child.txt; wait"]);
    let run = ask(&sb, &cfg, &["--timeout", "0.5"]);
    assert!(errors(&run.report, "local").contains("was stopped"));
    let pid = std::fs::read_to_string(sb.path().join("child.txt")).unwrap();
    assert!(
        gone_soon(&pid),
        "the wrapper's child {} still runs",
        pid.trim()
    );
}

/// Ctrl-C while a wrapper's child runs: the run stops and so does the child.
#[test]
fn ctrl_c_kills_a_commands_children() {
    let sb = Sandbox::new();
    let cfg = command_config(&sb, &["sh", "-c", "sleep 30 & echo $! > child.txt; wait"]);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"));
    cmd.env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("XDG_STATE_HOME", sb.state_dir())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["ask", "--json", "--config", &cfg, QUESTION])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().expect("start llm-consensus");
    let file = sb.path().join("child.txt");
    let t0 = Instant::now();
    while std::fs::read_to_string(&file).map_or(true, |s| !s.ends_with('\n')) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the run did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&file).unwrap();
    assert!(
        gone_soon(&pid),
        "the wrapper's child {} still runs",
        pid.trim()
    );
}

/// The prompt and system prompt are in the environment: a shell reads them as data,
/// where `{prompt}` inside `sh -c` would be run as code.
#[test]
fn a_command_finds_the_prompt_in_its_environment() {
    let sb = Sandbox::new();
    let cfg = command_config(
        &sb,
        &[
            "sh",
            "-c",
            "printf '%s' \"$LLM_CONSENSUS_PROMPT\" > prompt.txt; printf '%s' \"$LLM_CONSENSUS_SYSTEM\" > system.txt; printf '%s' \"$LLM_CONSENSUS_MODEL\" > model.txt; echo 'Final answer: 4'",
        ],
    );
    let run = ask(&sb, &cfg, &["--system", "Be terse; $(touch pwned)"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let read = |f: &str| std::fs::read_to_string(sb.path().join(f)).unwrap();
    assert_eq!(read("prompt.txt"), QUESTION);
    assert_eq!(read("system.txt"), "Be terse; $(touch pwned)");
    assert_eq!(read("model.txt"), "m1");
    assert!(!sb.path().join("pwned").exists());
}

// ------------------------------------------------------------------------ mock provider

/// A scripted step that sleeps forever is a call that times out (or a config error),
/// never a crash.
#[test]
fn an_endless_scripted_sleep_is_not_a_crash() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        "[[participants]]\nprovider = \"mock\"\nname = \"slow\"\nsleep = true\nscript = [ { output = \"4\", ms = inf } ]\n\n[[participants]]\nprovider = \"mock\"\nname = \"fast\"\nscript = [ { output = \"4\" } ]\n",
    );
    let out = sb
        .cmd()
        .args(["ask", "--json", "--timeout", "0.3", "--config"])
        .arg(&cfg)
        .arg(QUESTION)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
