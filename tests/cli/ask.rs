//! `llm-consensus ask` end to end: the real binary, a hermetic environment, and an
//! OpenAI-compatible chat completions server on 127.0.0.1 (docs/providers.md). The tests
//! assert what a user or a script sees: stdout, stderr, the exit code (docs/protocol.md §5), and
//! the requests that reached the provider.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const KEY: &str = "sk-test-4f9c2e7a1b6d";

/// A config whose provider `local` is the test server, keyed by LOCAL_KEY.
fn config(server: &TestServer, extra: &str) -> String {
    format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n{extra}\n",
        server.url()
    )
}

/// Runs `ask --json` with the given config and extra arguments; returns (exit code, JSON, stderr).
fn ask_json(sandbox: &Sandbox, config_text: &str, args: &[&str]) -> (i32, Value, String) {
    let path = sandbox.write("providers.toml", config_text);
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .arg("ask")
        .arg("--config")
        .arg(&path)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    (out.status.code().unwrap(), json, stderr)
}

fn model_of(req: &Request) -> String {
    req.json()["model"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_unanimous_panel_is_final_and_the_requests_follow_the_wire_format() {
    let server = TestServer::always(openai_ok(
        "The capital is Paris.\nFinal answer: Paris",
        12,
        7,
    ));
    let sandbox = Sandbox::new();
    let (code, json, stderr) = ask_json(
        &sandbox,
        &config(&server, ""),
        &[
            "-m",
            "local:m-a",
            "-m",
            "local:m-b",
            "-m",
            "local:m-c",
            "--seed",
            "3",
            "What is the capital of France?",
        ],
    );
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(stderr, "", "nothing on stderr when it is not a terminal");
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["status"], "final");
    assert_eq!(json["finalized"], true);
    assert_eq!(json["answer"], "Paris");
    assert_eq!(
        json["synthesis"],
        "The capital is Paris.\nFinal answer: Paris"
    );
    assert_eq!(json["strategy"], "metastable");
    assert_eq!(json["seed"], 3);
    assert!(["local:m-a", "local:m-b", "local:m-c"].contains(&json["winner"].as_str().unwrap()));
    // P1/P7: unanimity is final after at most one sampling round, at most 2 calls a seat.
    assert!(json["rounds_executed"].as_u64().unwrap() <= 1);
    for p in json["participants"].as_array().unwrap() {
        assert!(p["calls"].as_u64().unwrap() <= 2, "{p:#}");
        assert_eq!(p["provider"], "local");
        assert_eq!(p["support"], 1.0);
        assert_eq!(p["errors"], Value::Array(vec![]));
    }
    let calls = server.count() as u64;
    assert_eq!(json["usage"]["input_tokens"], 12 * calls);
    assert_eq!(json["usage"]["output_tokens"], 7 * calls);

    let requests = server.requests();
    let first = requests.iter().find(|r| model_of(r) == "m-a").unwrap();
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = first.json();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("Final answer:")
    );
    assert_eq!(
        messages[1],
        serde_json::json!({"role": "user", "content": "What is the capital of France?"})
    );
    // Unset sampling parameters are omitted, not sent as defaults.
    for field in [
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "top_p",
        "n",
    ] {
        assert!(body.get(field).is_none(), "{field} sent unasked: {body}");
    }
}

#[test]
fn seat_options_reach_the_request_body() {
    let server = TestServer::always(openai_ok("Final answer: 4", 3, 2));
    let sandbox = Sandbox::new();
    let text = config(
        &server,
        "max_tokens_field = \"max_completion_tokens\"\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"m\"\ncount = 2\ntemperature = 0.2\nmax_tokens = 64\nsystem = \"Be terse.\"\n",
    );
    let (code, json, _) = ask_json(&sandbox, &text, &["2+2?"]);
    assert_eq!(code, 0, "{json:#}");
    let names: Vec<&str> = json["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local:m", "local:m#2"]);
    let body = server.requests()[0].json();
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_completion_tokens"], 64);
    assert!(body.get("max_tokens").is_none());
    assert_eq!(
        body["messages"][0],
        serde_json::json!({"role": "system", "content": "Be terse."})
    );
}

#[test]
fn streamed_answers_are_assembled_with_their_usage() {
    let server = TestServer::always(rechunked(
        openai_sse(
            &["The answer", " is 42.\nFinal ", "answer: 42"],
            Some((20, 9)),
        ),
        7,
    ));
    let sandbox = Sandbox::new();
    let (code, json, _) = ask_json(
        &sandbox,
        &config(&server, "stream = true\nmax_tokens_field = \"max_tokens\""),
        &["-m", "local:x@2", "--max-tokens", "100", "What is 6 * 7?"],
    );
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["answer"], "42");
    assert_eq!(json["synthesis"], "The answer is 42.\nFinal answer: 42");
    let calls = server.count() as u64;
    assert_eq!(json["usage"]["input_tokens"], 20 * calls);
    assert_eq!(json["usage"]["output_tokens"], 9 * calls);
    let body = server.requests()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["stream_options"],
        serde_json::json!({"include_usage": true})
    );
    assert_eq!(body["max_tokens"], 100);
}

#[test]
fn a_truncated_stream_is_a_failed_call_not_an_answer() {
    let server = TestServer::start(|req, _| {
        if model_of(req) == "broken" {
            truncated(openai_sse(&["Par", "is"], None), 2, End::Abort)
        } else {
            openai_ok("Final answer: Paris", 1, 1)
        }
    });
    let sandbox = Sandbox::new();
    let (code, json, _) = ask_json(
        &sandbox,
        &config(&server, "stream = true"),
        &[
            "-m",
            "local:good@2",
            "-m",
            "local:broken",
            "--retries",
            "0",
            "Capital of France?",
        ],
    );
    let broken = &json["participants"][2];
    assert_eq!(broken["name"], "local:broken");
    assert_eq!(broken["answers"], Value::Array(vec![]));
    let error = broken["errors"][0].as_str().unwrap();
    assert!(
        error.contains("ended before") || error.contains("broke off"),
        "{error}"
    );
    // P4: absence is not disagreement; the two live seats agree and reach the quorum.
    assert_eq!(json["answer"], "Paris");
    assert_eq!(code, 0, "{json:#}");
}

#[test]
fn error_bodies_are_classified_retried_or_not_and_named() {
    // m-auth always answers 401 (never retried); m-rate answers 429 once, then succeeds.
    let server = TestServer::start(|req, _| match model_of(req).as_str() {
        "m-auth" => openai_error(
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        _ => openai_ok("Final answer: Paris", 1, 1),
    });
    let rate = TestServer::sequence(vec![
        with_header(
            openai_error(
                429,
                "Rate limit reached",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            "retry-after-ms",
            "10",
        ),
        openai_ok("Final answer: Paris", 1, 1),
        openai_ok("Final answer: Paris", 1, 1),
    ]);
    let sandbox = Sandbox::new();
    let text = format!(
        "{}[providers.rate]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
        config(&server, ""),
        rate.url()
    );
    let (code, json, _) = ask_json(
        &sandbox,
        &text,
        &[
            "-m",
            "local:m-ok",
            "-m",
            "local:m-auth",
            "-m",
            "rate:m-rate",
            "--retries",
            "2",
            "Capital of France?",
        ],
    );
    assert_eq!(code, 0, "{json:#}");
    let auth_calls = server
        .requests()
        .iter()
        .filter(|r| model_of(r) == "m-auth")
        .count();
    assert_eq!(
        auth_calls, 1,
        "a 401 is not retried, and its seat is not called again"
    );
    let auth = &json["participants"][1];
    let error = auth["errors"][0].as_str().unwrap();
    assert!(
        error.contains("401") && error.contains("Incorrect API key provided."),
        "{error}"
    );
    // The 429 was retried once within the same call: 2 requests for round 0.
    let rate_seat = &json["participants"][2];
    assert_eq!(rate_seat["errors"], Value::Array(vec![]));
    assert_eq!(
        rate.count() as u64,
        rate_seat["calls"].as_u64().unwrap() + 1
    );
}

#[test]
fn when_nobody_answers_the_run_fails_with_each_cause_and_a_transcript() {
    let server = TestServer::start(|req, _| match model_of(req).as_str() {
        "a" => openai_error(
            404,
            "The model `a` does not exist",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        _ => text(
            200,
            "text/html",
            "<!DOCTYPE html><html><body>Gateway login</body></html>",
        ),
    });
    let sandbox = Sandbox::new();
    let transcript = sandbox.path().join("run.json");
    let (code, json, _) = ask_json(
        &sandbox,
        &config(&server, ""),
        &[
            "-m",
            "local:a",
            "-m",
            "local:b",
            "--retries",
            "0",
            "--transcript",
            transcript.to_str().unwrap(),
            "Q?",
        ],
    );
    assert_eq!(code, 3);
    assert_eq!(json["status"], "failed");
    assert_eq!(json["finalized"], false);
    assert_eq!(json["winner"], Value::Null);
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("local:a") && error.contains("does not exist"),
        "{error}"
    );
    assert!(
        error.contains("local:b") && error.contains("text/html"),
        "{error}"
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&transcript).unwrap()).unwrap();
    assert_eq!(saved["status"], "failed");

    // The text report says the same on stdout, with exit code 3.
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args([
            "ask",
            "--config",
            "providers.toml",
            "-m",
            "local:a",
            "--retries",
            "0",
            "Q?",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("FAILED") && stdout.contains("does not exist"),
        "{stdout}"
    );
}

#[test]
fn below_quorum_is_degraded_and_never_final() {
    let server = TestServer::start(|req, _| match model_of(req).as_str() {
        "up" => openai_ok("Final answer: Paris", 1, 1),
        _ => openai_error(503, "overloaded", "server_error", None),
    });
    let sandbox = Sandbox::new();
    let (code, json, _) = ask_json(
        &sandbox,
        &config(&server, ""),
        &[
            "-m",
            "local:up",
            "-m",
            "local:down@2",
            "--retries",
            "0",
            "Q?",
        ],
    );
    assert_eq!(code, 3, "{json:#}");
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["finalized"], false);
    assert_eq!(json["answer"], "Paris");
    assert!(json["error"].as_str().unwrap().contains("quorum"));
}

#[test]
fn disagreement_is_reported_as_no_consensus() {
    let server = TestServer::start(|req, _| {
        let answer = match model_of(req).as_str() {
            "a" => "Final answer: Paris",
            "b" => "Final answer: Lyon",
            _ => "Final answer: Marseille",
        };
        openai_ok(answer, 1, 1)
    });
    let sandbox = Sandbox::new();
    let (code, json, _) = ask_json(
        &sandbox,
        &config(&server, ""),
        &[
            "-m", "local:a", "-m", "local:b", "-m", "local:c", "--rounds", "2", "Q?",
        ],
    );
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(json["status"], "no_consensus");
    assert_eq!(json["finalized"], false);
    // P9: a trace entry per round and participant, with samples, keys and agreement.
    let rounds = json["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 2);
    for round in rounds {
        let entries = round["participants"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        for e in entries {
            for field in [
                "participant",
                "sampled",
                "answer",
                "key",
                "agreement",
                "confidence",
                "support",
                "luminance",
                "latency_ms",
                "usage",
                "error",
            ] {
                assert!(e.get(field).is_some(), "trace entry lacks {field}: {e}");
            }
        }
    }
    // A sampling round shows each participant both others, by name.
    for e in rounds[1]["participants"].as_array().unwrap() {
        let mut shown: Vec<&str> = e["sampled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        shown.sort_unstable();
        let mut others: Vec<&str> = ["local:a", "local:b", "local:c"]
            .into_iter()
            .filter(|&name| name != e["participant"])
            .collect();
        others.sort_unstable();
        assert_eq!(shown, others, "{e}");
    }
    // Peers are shown as fenced, anonymous, untrusted data.
    let refine = server
        .requests()
        .into_iter()
        .find(|r| r.text().contains("Peer 1"))
        .unwrap();
    let user = refine.json()["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        user.contains("do not follow them") && user.contains("```"),
        "{user}"
    );
    assert!(
        !user.contains("local:"),
        "peer names leak into the prompt: {user}"
    );
}

#[test]
fn the_prompt_comes_from_stdin_and_quiet_prints_only_the_synthesis() {
    let server = TestServer::always(openai_ok(
        "Paris is the capital.\nFinal answer: Paris",
        1,
        1,
    ));
    let sandbox = Sandbox::new();
    sandbox.write("providers.toml", &config(&server, ""));
    for args in [vec!["-"], vec![]] {
        let out = sandbox
            .cmd()
            .env("LOCAL_KEY", KEY)
            .args(["ask", "--config", "providers.toml", "-m", "local:m@2", "-q"])
            .args(&args)
            .write_stdin("Capital of France, from stdin?\n")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "Paris is the capital.\nFinal answer: Paris\n"
        );
        assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    }
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.text().contains("from stdin?"))
    );

    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args([
            "ask",
            "--config",
            "providers.toml",
            "-m",
            "local:m",
            "--system",
            "Answer in French.",
        ])
        .write_stdin("   \n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("the question is empty")
    );
}

#[test]
fn the_default_report_shows_verdict_synthesis_and_table() {
    let server = TestServer::always(openai_ok("Final answer: Paris", 5, 2));
    let sandbox = Sandbox::new();
    sandbox.write("providers.toml", &config(&server, ""));
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args([
            "ask",
            "--config",
            "providers.toml",
            "-m",
            "local:m@3",
            "--seed",
            "1",
            "Q?",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "FINAL",
        "Winner:",
        "Answer: Paris",
        "Synthesis",
        "participant",
        "support",
        "latency",
        "local:m#3",
        "seed 1",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("\x1b["),
        "NO_COLOR output has no escape codes"
    );
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
}

#[test]
fn configuration_errors_exit_2_name_the_fix_and_send_nothing() {
    let server = TestServer::always(openai_ok("Final answer: x", 1, 1));
    let sandbox = Sandbox::new();
    let good = config(&server, "");
    let cases: Vec<(Vec<String>, Option<&str>, &[&str])> = vec![
        (
            vec!["-m".into(), "nosuch:model".into()],
            None,
            &["unknown provider", "nosuch"],
        ),
        (
            vec!["-m".into(), "openai:gpt-4o-mini".into()],
            None,
            &["OPENAI_API_KEY"],
        ),
        (
            vec![],
            Some("[consensus]\nrounds = 3\nk = \"three\"\n"),
            &["line 3"],
        ),
        (
            vec![],
            Some("[consensus]\nroundz = 3\n"),
            &["line 2", "roundz"],
        ),
        (
            vec!["-m".into(), "local:m".into()],
            Some(
                "[providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"MISSING_KEY\"\n",
            ),
            &["MISSING_KEY"],
        ),
        (
            vec![
                "-m".into(),
                "local:m".into(),
                "--alpha".into(),
                "1.5".into(),
            ],
            Some(&good),
            &["--alpha"],
        ),
        (
            vec!["-m".into(), "local:m".into(), "--quorum".into(), "5".into()],
            Some(&good),
            &["--quorum"],
        ),
        (
            vec![
                "-m".into(),
                "local:m".into(),
                "--answer".into(),
                "vibes".into(),
            ],
            Some(&good),
            &["--answer", "auto"],
        ),
    ];
    for (args, file, needles) in cases {
        let mut cmd = sandbox.cmd();
        cmd.env("LOCAL_KEY", KEY).arg("ask");
        if let Some(text) = file {
            let path = sandbox.write("bad.toml", text);
            cmd.arg("--config").arg(path);
        }
        let out = cmd.args(&args).arg("Q?").output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in {stderr}"
            );
        }
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        server.count(),
        0,
        "nothing is sent when the configuration is wrong"
    );

    // No panel at all: the message shows how to configure one.
    let out = sandbox.cmd().args(["ask", "Q?"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("-m PROVIDER:MODEL") && stderr.contains("examples/demo.toml"),
        "{stderr}"
    );
}

#[test]
fn two_participants_given_the_same_name_are_a_config_error_naming_both() {
    let server = TestServer::always(openai_ok("Final answer: x", 1, 1));
    let sandbox = Sandbox::new();
    let text = config(
        &server,
        "[[participants]]\nprovider = \"local\"\nmodel = \"a\"\nname = \"judge\"\n\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"b\"\n\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"c\"\nname = \"judge\"\n",
    );
    let path = sandbox.write("providers.toml", &text);
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args(["ask", "--json", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[[participants]] #1 and [[participants]] #3 are both named `judge`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(server.count(), 0, "nothing is sent");
}

#[test]
fn default_names_are_numbered_and_never_take_a_given_name() {
    let sandbox = Sandbox::new();
    // The first seat's default name is the name the second one was given.
    let text = "[providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"m\"\n\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"other\"\nname = \"local:m\"\n\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"m\"\ncount = 2\n";
    let path = sandbox.write("providers.toml", text);
    let out = sandbox
        .cmd()
        .args(["providers", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let panel: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seats: Vec<(&str, &str)> = panel["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["model"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seats,
        [
            ("local:m#2", "m"),
            ("local:m", "other"),
            ("local:m#3", "m"),
            ("local:m#4", "m"),
        ]
    );
}

#[test]
fn an_unknown_provider_lists_each_known_name_once() {
    let sandbox = Sandbox::new();
    // A table named after a built-in is one provider, not two.
    let path = sandbox.write(
        "providers.toml",
        "[providers.groq]\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    );
    let out = sandbox
        .cmd()
        .args(["ask", "-m", "nosuch:m", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let list = stderr
        .split_once("use one of ")
        .and_then(|(_, rest)| rest.split_once(" or define"))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no list of names in {stderr}"));
    let names: Vec<&str> = list.split(", ").collect();
    for name in ["groq", "local", "openai", "mock"] {
        assert_eq!(
            names.iter().filter(|n| **n == name).count(),
            1,
            "{name} once in {list}"
        );
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{list}");
}

#[test]
fn the_config_is_found_through_the_environment_and_xdg() {
    let server = TestServer::always(openai_ok("Final answer: Paris", 1, 1));
    let sandbox = Sandbox::new();
    let text = format!(
        "{}[[participants]]\nprovider = \"local\"\nmodel = \"from-file\"\n",
        config(&server, "")
    );
    let elsewhere = sandbox.write("elsewhere/panel.toml", &text);
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .env("LLM_CONSENSUS_CONFIG", &elsewhere)
        .args(["ask", "--json", "Q?"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sandbox.write(
        "config/llm-consensus/providers.toml",
        &text.replace("from-file", "from-xdg"),
    );
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args(["ask", "--json", "Q?"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models: Vec<String> = server.requests().iter().map(model_of).collect();
    assert!(
        models.contains(&"from-file".to_string()) && models.contains(&"from-xdg".to_string()),
        "{models:?}"
    );
}

#[test]
fn the_api_key_is_never_printed() {
    // The provider echoes the key back in its error, as some proxies do.
    let server = TestServer::start(|req, _| {
        let auth = req.header("authorization").unwrap_or_default().to_string();
        openai_error(
            401,
            &format!("bad credentials: {auth}"),
            "invalid_request_error",
            Some("invalid_api_key"),
        )
    });
    let sandbox = Sandbox::new();
    let path = sandbox.write("providers.toml", &config(&server, ""));
    let transcript = sandbox.path().join("t.json");
    for extra in [vec!["--json"], vec!["-v"], vec![]] {
        let out = sandbox
            .cmd()
            .env("LOCAL_KEY", KEY)
            .arg("ask")
            .arg("--config")
            .arg(&path)
            .args(["-m", "local:m", "--transcript"])
            .arg(&transcript)
            .args(&extra)
            .arg("Q?")
            .output()
            .unwrap();
        let all = format!(
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&transcript).unwrap_or_default()
        );
        assert_eq!(out.status.code(), Some(3));
        assert!(all.contains("bad credentials"), "{all}");
        assert!(!all.contains(KEY), "the key leaked with {extra:?}: {all}");
    }
}

#[test]
fn the_offline_demo_of_the_readme_runs_with_no_keys_and_no_network() {
    let sandbox = Sandbox::new();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let out = sandbox
        .cmd()
        .arg("ask")
        .arg("--config")
        .arg(&demo)
        .arg("What is the capital of Australia?")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("FINAL") && stdout.contains("Canberra"),
        "{stdout}"
    );
}

/// Drops what measures time, which may differ between two runs of the same panel.
fn without_timings(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("elapsed_ms");
            map.remove("latency_ms");
            for (_, child) in map.iter_mut() {
                *child = without_timings(child.take());
            }
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                *child = without_timings(child.take());
            }
        }
        _ => {}
    }
    v
}

#[test]
fn p6_the_same_seed_and_answers_give_the_same_json() {
    // Scripted seats report fixed latencies, so luminance is part of what is replayed.
    let panel = "\
[[participants]]\nprovider = \"mock\"\nname = \"a\"\nscript = [ { output = \"Final answer: Paris\", ms = 300 } ]\n\
[[participants]]\nprovider = \"mock\"\nname = \"b\"\nscript = [ { output = \"Final answer: Paris\", ms = 900 } ]\n\
[[participants]]\nprovider = \"mock\"\nname = \"c\"\ncount = 3\nscript = [ { output = \"Final answer: Lyon\", ms = 450 }, { output = \"Final answer: Paris\", ms = 500 } ]\n\
[[participants]]\nprovider = \"mock\"\nname = \"d\"\nscript = [ { output = \"\", ok = false, error = \"HTTP 503\", ms = 20 }, { output = \"Final answer: Lyon\", ms = 80 } ]\n";
    let sandbox = Sandbox::new();
    let run = |extra: &[&str]| {
        let mut args = vec!["-k", "2"];
        args.extend_from_slice(extra);
        args.push("Q?");
        let (code, json, _) = ask_json(&sandbox, panel, &args);
        (code, without_timings(json))
    };
    let first = run(&["--seed", "11"]);
    assert_eq!(run(&["--seed", "11"]), first);
    assert_eq!(first.1["seed"], 11);
    assert!(
        first.1["rounds"].as_array().unwrap().len() >= 2,
        "the panel refines"
    );
    // Without --seed, one is drawn and reported; passing it back replays the run.
    let drawn = run(&[]);
    let seed = drawn.1["seed"].as_u64().unwrap().to_string();
    assert_eq!(run(&["--seed", &seed]), drawn);
}
