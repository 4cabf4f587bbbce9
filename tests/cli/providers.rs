//! Every provider kind against a loopback server speaking its real wire format: the
//! request sent (path, headers, JSON body), plain and streamed answers, token usage in
//! `--json`, and each error class, retried or not, with the server's call count.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const KEY: &str = "sk-test-key-0123456789";
const QUESTION: &str = "What is 2+2?";

/// One seat of provider table `table` (TOML lines, `{url}` replaced by the server URL).
fn config(sandbox: &Sandbox, url: &str, table: &str, model: &str) -> String {
    let text = format!(
        "[providers.p]\n{}\n\n[[participants]]\nprovider = \"p\"\nmodel = \"{model}\"\n",
        table.replace("{url}", url)
    );
    sandbox
        .write("panel.toml", &text)
        .to_string_lossy()
        .into_owned()
}

/// Runs `ask --json` with the config, the key in TEST_KEY, and `extra` flags.
fn ask(sandbox: &Sandbox, config: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut cmd = sandbox.cmd();
    cmd.env("TEST_KEY", KEY).args([
        "ask",
        "--config",
        config,
        "--json",
        "--seed",
        "1",
        "--system",
        "Be terse.",
    ]);
    cmd.args(extra).arg(QUESTION);
    finish(cmd)
}

fn finish(mut cmd: assert_cmd::Command) -> (i32, Value, String) {
    let out = cmd.output().expect("run llm-consensus");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn errors(report: &Value) -> String {
    report["participants"][0]["errors"].to_string()
}

// ----------------------------------------------------------------------------- Anthropic

const ANTHROPIC: &str = "kind = \"anthropic\"\nbase_url = \"{url}\"\napi_key_env = \"TEST_KEY\"";

#[test]
fn anthropic_request_shape_answer_and_usage() {
    let server = TestServer::always(anthropic_ok("4\nFinal answer: 4", 12, 3));
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), ANTHROPIC, "claude-test");
    let (code, report, stderr) = ask(&sb, &cfg, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["answer"], "4");
    assert_eq!(report["participants"][0]["kind"], "anthropic");
    assert_eq!(report["usage"]["input_tokens"], 12);
    assert_eq!(report["usage"]["output_tokens"], 3);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.json(),
        json!({"model": "claude-test", "max_tokens": 4096, "system": "Be terse.",
               "messages": [{"role": "user", "content": QUESTION}]})
    );
}

#[test]
fn anthropic_stream_takes_cumulative_usage_and_survives_rechunking() {
    let server = TestServer::always(rechunked(
        anthropic_sse(&["Final ", "answer: ", "4 ✓"], 20, 7),
        5,
    ));
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), ANTHROPIC, "claude-test");
    let (code, report, stderr) = ask(&sb, &cfg, &["--stream", "--max-tokens", "99"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["answer"], "4 ✓");
    assert_eq!(report["usage"]["input_tokens"], 20);
    assert_eq!(report["usage"]["output_tokens"], 7);
    let body = server.requests()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 99);
}

#[test]
fn anthropic_529_overloaded_is_retried() {
    let server = TestServer::sequence(vec![
        with_header(
            anthropic_error(529, "overloaded_error", "Overloaded"),
            "retry-after",
            "0",
        ),
        anthropic_ok("Final answer: 4", 1, 1),
    ]);
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), ANTHROPIC, "claude-test");
    let (code, report, stderr) = ask(&sb, &cfg, &["--retries", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.count(), 2);
    assert_eq!(report["usage"]["retries"], 1);
    assert_eq!(report["participants"][0]["retries"], 1);
}

#[test]
fn anthropic_error_event_mid_stream_is_retried() {
    let broken = event_stream(
        200,
        "text/event-stream",
        vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n".into(),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded mid-stream\"}}\n\n".into(),
        ],
    );
    let server = TestServer::always(broken);
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), ANTHROPIC, "claude-test");
    let (code, report, _) = ask(&sb, &cfg, &["--stream", "--retries", "1"]);
    assert_eq!(code, 3);
    assert_eq!(server.count(), 2);
    let e = errors(&report);
    assert!(
        e.contains("overloaded_error") && e.contains("Overloaded mid-stream"),
        "{e}"
    );
    assert!(e.contains("after 2 attempts"), "{e}");
}

#[test]
fn anthropic_spend_limit_and_auth_errors_are_not_retried() {
    let spend = json(
        429,
        &json!({"type": "error", "error": {"type": "rate_limit_error",
            "message": "You have reached your spend limit",
            "details": {"error_code": "enforced_spend_limit_reached"}}}),
    );
    for (reply, expect) in [
        (spend, "spend limit"),
        (
            anthropic_error(401, "authentication_error", "invalid x-api-key"),
            "invalid x-api-key (check the key in TEST_KEY)",
        ),
    ] {
        let server = TestServer::always(reply);
        let sb = Sandbox::new();
        let cfg = config(&sb, &server.url(), ANTHROPIC, "claude-test");
        let (code, report, _) = ask(&sb, &cfg, &["--retries", "3"]);
        assert_eq!(code, 3);
        assert_eq!(server.count(), 1, "{expect}");
        assert!(errors(&report).contains(expect), "{}", errors(&report));
    }
}

#[test]
fn anthropic_builtin_name_works_without_config() {
    let server = TestServer::always(anthropic_ok("Final answer: 4", 2, 2));
    let sb = Sandbox::new();
    let mut cmd = sb.cmd();
    cmd.env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", server.url())
        .args([
            "ask",
            "--json",
            "-m",
            "anthropic:claude-sonnet-test",
            QUESTION,
        ]);
    let (code, report, stderr) = finish(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        report["participants"][0]["name"],
        "anthropic:claude-sonnet-test"
    );
    let req = &server.requests()[0];
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.json()["model"], "claude-sonnet-test");
}

#[test]
fn builtin_names_say_which_variable_is_missing() {
    let sb = Sandbox::new();
    for (seat, var) in [
        ("anthropic:claude-x", "ANTHROPIC_API_KEY"),
        ("gemini:gemini-x", "GOOGLE_API_KEY or GEMINI_API_KEY"),
        ("azure:my-deployment", "AZURE_OPENAI_ENDPOINT"),
    ] {
        let out = sb
            .cmd()
            .args(["ask", "-m", seat, QUESTION])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{seat}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{seat}: {stderr}");
    }
}

#[test]
fn openai_builtin_sends_organization_and_project_from_the_environment() {
    let server = TestServer::always(openai_ok("Final answer: 4", 3, 1));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!("[providers.openai]\nbase_url = \"{}\"\n", server.url()),
    );
    let mut cmd = sb.cmd();
    cmd.env("OPENAI_API_KEY", KEY)
        .env("OPENAI_ORG_ID", "org-test")
        .env("OPENAI_PROJECT_ID", "proj_test")
        .args(["ask", "--json", "--config"])
        .arg(&cfg)
        .args(["-m", "openai:gpt-4o-mini", "--max-tokens", "20", QUESTION]);
    let (code, _, stderr) = finish(cmd);
    assert_eq!(code, 0, "{stderr}");
    let req = &server.requests()[0];
    assert_eq!(req.path, "/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.header("openai-organization"), Some("org-test"));
    assert_eq!(req.header("openai-project"), Some("proj_test"));
    assert_eq!(req.json()["max_completion_tokens"], 20);
}

// -------------------------------------------------------------------------------- Gemini

const GEMINI: &str = "kind = \"gemini\"\nbase_url = \"{url}/v1beta\"\napi_key_env = \"TEST_KEY\"";

#[test]
fn gemini_request_shape_answer_and_usage() {
    let server = TestServer::always(gemini_ok("Final answer: 4", 9, 4));
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), GEMINI, "models/gemini-test");
    let (code, report, stderr) = ask(&sb, &cfg, &["--temperature", "0.3", "--max-tokens", "50"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["answer"], "4");
    assert_eq!(report["participants"][0]["kind"], "gemini");
    assert_eq!(report["usage"]["input_tokens"], 9);
    assert_eq!(report["usage"]["output_tokens"], 4);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1beta/models/gemini-test:generateContent");
    assert_eq!(req.header("x-goog-api-key"), Some(KEY));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.query("key"), None, "the key never goes in the URL");
    assert_eq!(
        req.json(),
        json!({
            "systemInstruction": {"parts": [{"text": "Be terse."}]},
            "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 50,
                                 "seed": seat_seed(&report, 0)}
        })
    );
}

#[test]
fn gemini_stream_excludes_thoughts_and_keeps_the_last_usage() {
    let thought = json!({"candidates": [{"content": {"role": "model",
        "parts": [{"text": "Let me think", "thought": true}]}, "index": 0}]});
    let Reply::Stream {
        status,
        headers,
        mut chunks,
        end,
    } = gemini_sse(&["Final ", "answer: 4"], 11, 5)
    else {
        unreachable!()
    };
    chunks.insert(
        0,
        (
            Duration::ZERO,
            format!("data: {thought}\r\n\r\n").into_bytes(),
        ),
    );
    let server = TestServer::always(rechunked(
        Reply::Stream {
            status,
            headers,
            chunks,
            end,
        },
        7,
    ));
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), GEMINI, "gemini-test");
    let (code, report, stderr) = ask(&sb, &cfg, &["--stream"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["answer"], "4");
    assert_eq!(report["participants"][0]["answers"][0], "Final answer: 4");
    assert_eq!(report["usage"]["input_tokens"], 11);
    assert_eq!(report["usage"]["output_tokens"], 5);
    let req = &server.requests()[0];
    assert_eq!(
        req.path_only(),
        "/v1beta/models/gemini-test:streamGenerateContent"
    );
    assert_eq!(req.query("alt").as_deref(), Some("sse"));
    // Unset sampling parameters are left out; only the run's seed is always sent.
    assert_eq!(
        req.json()["generationConfig"],
        json!({"seed": seat_seed(&report, 0)})
    );
}

#[test]
fn gemini_retry_info_delay_is_honoured() {
    let server = TestServer::sequence(vec![
        gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", Some("0.4s")),
        gemini_ok("Final answer: 4", 1, 1),
    ]);
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), GEMINI, "gemini-test");
    let t0 = Instant::now();
    let (code, report, stderr) = ask(&sb, &cfg, &["--retries", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.count(), 2);
    assert_eq!(report["usage"]["retries"], 1);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "waited the RetryInfo delay"
    );
}

#[test]
fn gemini_per_day_quota_and_blocked_prompt_are_not_retried() {
    let per_day = json(
        429,
        &json!({"error": {"code": 429, "message": "You exceeded your current quota",
            "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]}}),
    );
    let blocked = json(
        200,
        &json!({"promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}),
    );
    for (reply, expect) in [(per_day, "daily quota"), (blocked, "blocked (SAFETY)")] {
        let server = TestServer::always(reply);
        let sb = Sandbox::new();
        let cfg = config(&sb, &server.url(), GEMINI, "gemini-test");
        let (code, report, _) = ask(&sb, &cfg, &["--retries", "3"]);
        assert_eq!(code, 3);
        assert_eq!(server.count(), 1, "{expect}");
        assert!(errors(&report).contains(expect), "{}", errors(&report));
    }
}

#[test]
fn gemini_thoughts_that_use_up_the_token_limit_are_not_retried() {
    let spent = json(
        200,
        &json!({"candidates": [{"content": {"role": "model", "parts": [
                    {"text": "Thinking about it", "thought": true}]},
                "finishReason": "MAX_TOKENS", "index": 0}],
                "usageMetadata": {"promptTokenCount": 5, "thoughtsTokenCount": 16, "totalTokenCount": 21}}),
    );
    let server = TestServer::always(spent);
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), GEMINI, "gemini-test");
    let (code, report, _) = ask(&sb, &cfg, &["--retries", "2", "--max-tokens", "16"]);
    assert_eq!(code, 3);
    assert_eq!(server.count(), 1);
    assert!(
        errors(&report).contains("raise max_tokens"),
        "{}",
        errors(&report)
    );
}

/// A 200 event stream whose only content is a Google error body written as plain,
/// pretty-printed JSON over several lines (no `data:` prefix).
fn gemini_error_in_stream(code: u16, status: &str, message: &str) -> Reply {
    let body = serde_json::to_string_pretty(
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
    .unwrap();
    let lines = body.lines().map(|l| format!("{l}\n")).collect();
    event_stream(200, "text/event-stream", lines)
}

#[test]
fn gemini_errors_written_over_several_lines_in_a_stream_keep_their_message() {
    // Retryable: the model is overloaded, the next attempt answers.
    let server = TestServer::sequence(vec![
        gemini_error_in_stream(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
        gemini_sse(&["Final answer: 4"], 3, 2),
    ]);
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), GEMINI, "gemini-test");
    let (code, report, stderr) = ask(&sb, &cfg, &["--stream", "--retries", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.count(), 2);
    assert_eq!(report["usage"]["retries"], 1);

    // Not retryable: the provider's own words reach the user.
    let server = TestServer::always(gemini_error_in_stream(
        400,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument: {contents} is empty.",
    ));
    let sb = Sandbox::new();
    let cfg = config(&sb, &server.url(), GEMINI, "gemini-test");
    let (code, report, _) = ask(&sb, &cfg, &["--stream", "--retries", "2"]);
    assert_eq!(code, 3);
    assert_eq!(server.count(), 1, "{}", errors(&report));
    let errors = errors(&report);
    assert!(
        errors.contains(
            "INVALID_ARGUMENT: Request contains an invalid argument: {contents} is empty."
        ),
        "{errors}"
    );
}

#[test]
fn gemini_prefers_google_api_key_when_both_are_set() {
    let server = TestServer::always(gemini_ok("Final answer: 4", 1, 1));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!("[providers.gemini]\nbase_url = \"{}\"\n", server.url()),
    );
    let mut cmd = sb.cmd();
    cmd.env("GEMINI_API_KEY", "gemini-key")
        .env("GOOGLE_API_KEY", "google-key")
        .args(["ask", "--json", "--config"])
        .arg(&cfg)
        .args(["-m", "gemini:gemini-test", QUESTION]);
    let (code, _, stderr) = finish(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        server.requests()[0].header("x-goog-api-key"),
        Some("google-key")
    );
}

// -------------------------------------------------------------------------------- Ollama

fn ollama_cmd(sb: &Sandbox, server: &TestServer, extra: &[&str]) -> (i32, Value, String) {
    let mut cmd = sb.cmd();
    cmd.env("OLLAMA_HOST", format!("127.0.0.1:{}", server.port()))
        .args([
            "ask",
            "--json",
            "--system",
            "Be terse.",
            "-m",
            "ollama:llama-test",
        ])
        .args(extra)
        .arg(QUESTION);
    finish(cmd)
}

#[test]
fn ollama_builtin_is_native_and_follows_ollama_host() {
    let server = TestServer::always(ollama_ok("Final answer: 4", 26, 8));
    let sb = Sandbox::new();
    let (code, report, stderr) = ollama_cmd(&sb, &server, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["participants"][0]["kind"], "ollama");
    assert_eq!(report["usage"]["input_tokens"], 26);
    assert_eq!(report["usage"]["output_tokens"], 8);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/chat");
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.json(),
        json!({"model": "llama-test", "stream": false, "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": QUESTION}],
            "options": {"seed": seat_seed(&report, 0)}})
    );
}

#[test]
fn ollama_ndjson_stream_with_options() {
    let server = TestServer::always(rechunked(
        ollama_ndjson(&["Final ", "answer: ", "4 ✓"], 30, 3),
        9,
    ));
    let sb = Sandbox::new();
    let (code, report, stderr) = ollama_cmd(
        &sb,
        &server,
        &["--stream", "--temperature", "0", "--max-tokens", "64"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["answer"], "4 ✓");
    assert_eq!(report["usage"]["input_tokens"], 30);
    assert_eq!(report["usage"]["output_tokens"], 3);
    let body = server.requests()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["options"],
        json!({"temperature": 0.0, "num_predict": 64, "seed": seat_seed(&report, 0)})
    );
}

#[test]
fn ollama_mid_stream_error_is_retried_and_named() {
    let broken = event_stream(
        200,
        "application/x-ndjson",
        vec![
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Fin\"},\"done\":false}\n".into(),
            "{\"error\":\"an error was encountered while running the model: out of memory\"}\n".into(),
        ],
    );
    let server = TestServer::always(broken);
    let sb = Sandbox::new();
    let (code, report, _) = ollama_cmd(&sb, &server, &["--stream", "--retries", "1"]);
    assert_eq!(code, 3);
    assert_eq!(server.count(), 2);
    let e = errors(&report);
    assert!(
        e.contains("out of memory") && e.contains("after 2 attempts"),
        "{e}"
    );
}

#[test]
fn ollama_missing_model_is_not_retried_and_says_how_to_fix_it() {
    let server = TestServer::always(ollama_error(
        404,
        "model \"llama-test\" not found, try pulling it first",
    ));
    let sb = Sandbox::new();
    let (code, report, _) = ollama_cmd(&sb, &server, &["--retries", "2"]);
    assert_eq!(code, 3);
    assert_eq!(server.count(), 1);
    assert!(
        errors(&report).contains("ollama pull llama-test"),
        "{}",
        errors(&report)
    );
}

// --------------------------------------------------------------------------------- Azure

#[test]
fn azure_deployment_url_with_api_version_and_api_key_header() {
    let server = TestServer::always(openai_ok("Final answer: 4", 7, 2));
    let sb = Sandbox::new();
    let cfg = config(
        &sb,
        &server.url(),
        "kind = \"azure\"\nbase_url = \"{url}\"\napi_version = \"2024-10-21\"\napi_key_env = \"TEST_KEY\"",
        "my-deployment",
    );
    let (code, report, stderr) = ask(&sb, &cfg, &["--max-tokens", "32"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["participants"][0]["kind"], "azure");
    assert_eq!(report["usage"]["input_tokens"], 7);
    let req = &server.requests()[0];
    assert_eq!(
        req.path_only(),
        "/openai/deployments/my-deployment/chat/completions"
    );
    assert_eq!(req.query("api-version").as_deref(), Some("2024-10-21"));
    assert_eq!(req.header("api-key"), Some(KEY));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.json()["max_completion_tokens"], 32);
}

#[test]
fn azure_builtin_uses_the_v1_api_from_the_environment() {
    let server = TestServer::always(openai_sse(&["Final answer: ", "4"], Some((5, 2))));
    let sb = Sandbox::new();
    let mut cmd = sb.cmd();
    cmd.env("AZURE_OPENAI_API_KEY", KEY)
        .env("AZURE_OPENAI_ENDPOINT", format!("{}/", server.url()))
        .args([
            "ask",
            "--json",
            "--stream",
            "-m",
            "azure:my-deployment",
            QUESTION,
        ]);
    let (code, report, stderr) = finish(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["usage"]["output_tokens"], 2);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/openai/v1/chat/completions");
    assert_eq!(req.header("api-key"), Some(KEY));
    assert_eq!(req.json()["model"], "my-deployment");
}

#[test]
fn azure_content_filter_is_not_retried() {
    let server = TestServer::always(openai_error(
        400,
        "The response was filtered due to the prompt triggering content management policy",
        "invalid_request_error",
        Some("content_filter"),
    ));
    let sb = Sandbox::new();
    let cfg = config(
        &sb,
        &server.url(),
        "kind = \"azure\"\nbase_url = \"{url}\"\napi_key_env = \"TEST_KEY\"",
        "dep",
    );
    let (code, report, _) = ask(&sb, &cfg, &["--retries", "2"]);
    assert_eq!(code, 3);
    assert_eq!(server.count(), 1);
    assert!(
        errors(&report).contains("content_filter"),
        "{}",
        errors(&report)
    );
}

// ------------------------------------------------------------------------------- Command

fn command_config(sb: &Sandbox, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    let text = format!(
        "[providers.local]\nkind = \"command\"\ncommand = [{}]\n\n[[participants]]\nprovider = \"local\"\nmodel = \"m1\"\n",
        argv.join(", ")
    );
    sb.write("panel.toml", &text).to_string_lossy().into_owned()
}

#[test]
fn command_reads_the_prompt_on_stdin_and_answers_on_stdout() {
    let sb = Sandbox::new();
    let cfg = command_config(
        &sb,
        &[
            "sh",
            "-c",
            "cat > stdin.txt; echo \"model $0\"; echo 'Final answer: 4'",
            "{model}",
        ],
    );
    let (code, report, stderr) = ask(&sb, &cfg, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["answer"], "4");
    assert_eq!(report["participants"][0]["kind"], "command");
    assert_eq!(
        report["participants"][0]["answers"][0],
        "model m1\nFinal answer: 4"
    );
    let stdin = std::fs::read_to_string(sb.path().join("stdin.txt")).unwrap();
    assert_eq!(stdin, format!("Be terse.\n\n{QUESTION}"));
}

#[test]
fn command_substitutes_the_prompt_into_its_arguments() {
    let sb = Sandbox::new();
    let cfg = command_config(
        &sb,
        &[
            "sh",
            "-c",
            "printf '%s' \"$0\" > arg.txt; cat > stdin.txt; echo 'Final answer: ok'",
            "{prompt}",
        ],
    );
    let (code, _, stderr) = ask(&sb, &cfg, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("arg.txt")).unwrap(),
        QUESTION
    );
    assert_eq!(
        std::fs::read_to_string(sb.path().join("stdin.txt")).unwrap(),
        ""
    );
}

#[test]
fn command_failure_reports_the_last_line_of_stderr() {
    let sb = Sandbox::new();
    let cfg = command_config(
        &sb,
        &[
            "sh",
            "-c",
            "echo 'warming up' >&2; echo 'model m1 is not installed' >&2; exit 3",
        ],
    );
    let (code, report, _) = ask(&sb, &cfg, &[]);
    assert_eq!(code, 3);
    let e = errors(&report);
    assert!(
        e.contains("model m1 is not installed") && e.contains("exit status 3"),
        "{e}"
    );
    assert!(!e.contains("warming up"), "{e}");
}

#[test]
fn command_timeout_kills_the_program() {
    let sb = Sandbox::new();
    let cfg = command_config(&sb, &["sh", "-c", "echo $$ > pid.txt; exec sleep 30"]);
    let t0 = Instant::now();
    let (code, report, _) = ask(&sb, &cfg, &["--timeout", "0.5"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 3);
    assert!(
        errors(&report).contains("was stopped"),
        "{}",
        errors(&report)
    );
    let pid = std::fs::read_to_string(sb.path().join("pid.txt")).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the timed-out program {pid} is still running");
}

// ---------------------------------------------------------------------- providers command

#[test]
fn providers_shows_the_panel_and_where_each_key_comes_from() {
    let sb = Sandbox::new();
    let out = sb
        .cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .env("OLLAMA_HOST", "127.0.0.1:9")
        .args([
            "providers",
            "--json",
            "-m",
            "anthropic:claude-x",
            "-m",
            "gemini:g@2",
        ])
        .output()
        .unwrap();
    // The gemini key is missing: a configuration error naming both variables.
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GOOGLE_API_KEY or GEMINI_API_KEY"));

    let out = sb
        .cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .env("OLLAMA_HOST", "127.0.0.1:9")
        .args([
            "providers",
            "--json",
            "-m",
            "anthropic:claude-x",
            "-m",
            "ollama:llama3@2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(KEY));
    let panel: Value = serde_json::from_str(&stdout).unwrap();
    let seats = panel["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 3);
    assert_eq!(seats[0]["kind"], "anthropic");
    assert_eq!(seats[0]["base_url"], "https://api.anthropic.com");
    assert_eq!(seats[0]["key_env"], "ANTHROPIC_API_KEY");
    assert_eq!(seats[0]["key_set"], true);
    assert_eq!(seats[2]["name"], "ollama:llama3#2");
    assert_eq!(seats[2]["kind"], "ollama");
    assert_eq!(seats[2]["base_url"], "http://127.0.0.1:9");
    assert_eq!(seats[2]["key_set"], false);
    assert!(seats[0].get("check").is_none());
}

#[test]
fn providers_check_makes_one_call_per_seat_and_fails_on_any_error() {
    let good = TestServer::always(anthropic_ok("OK", 4, 1));
    let bad = TestServer::always(gemini_error(
        403,
        "PERMISSION_DENIED",
        "API key not valid",
        None,
    ));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key_env = \"TEST_KEY\"\n\n\
             [providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\napi_key_env = \"TEST_KEY\"\n\n\
             [[participants]]\nprovider = \"a\"\nmodel = \"claude-x\"\n\n\
             [[participants]]\nprovider = \"g\"\nmodel = \"gemini-x\"\n",
            good.url(),
            bad.url()
        ),
    );
    let out = sb
        .cmd()
        .env("TEST_KEY", KEY)
        .args(["providers", "--check", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let panel: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &panel["seats"][0]["check"];
    assert_eq!(a["ok"], true);
    assert_eq!(a["usage"]["input_tokens"], 4);
    let g = &panel["seats"][1]["check"];
    assert_eq!(g["ok"], false);
    assert!(
        g["error"].as_str().unwrap().contains("API key not valid"),
        "{g}"
    );
    assert_eq!((good.count(), bad.count()), (1, 1));
    assert_eq!(
        good.requests()[0].json()["messages"][0]["content"],
        "Reply with the single word OK."
    );

    // The table names the failure too.
    let out = sb
        .cmd()
        .env("TEST_KEY", KEY)
        .args(["providers", "--check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("FAILED: g: HTTP 403 PERMISSION_DENIED"),
        "{table}"
    );
    assert!(table.contains("ok in"), "{table}");
}

// ------------------------------------------------------------------------- every kind

#[test]
fn a_stream_that_ends_early_is_a_failed_call_in_every_format() {
    let cases = [
        (
            ANTHROPIC,
            truncated(
                anthropic_sse(&["Final ", "answer: 4"], 3, 2),
                4,
                End::Finish,
            ),
        ),
        (
            GEMINI,
            truncated(gemini_sse(&["Final ", "answer: 4"], 3, 2), 1, End::Finish),
        ),
        (
            "kind = \"ollama\"\nbase_url = \"{url}\"",
            truncated(
                ollama_ndjson(&["Final ", "answer: 4"], 3, 2),
                2,
                End::Finish,
            ),
        ),
        (
            "kind = \"openai\"\nbase_url = \"{url}\"",
            truncated(openai_sse(&["Final ", "answer: 4"], None), 3, End::Finish),
        ),
    ];
    for (table, reply) in cases {
        let server = TestServer::always(reply);
        let sb = Sandbox::new();
        let cfg = config(&sb, &server.url(), table, "m");
        let (code, report, _) = ask(&sb, &cfg, &["--stream", "--retries", "1"]);
        assert_eq!(code, 3, "{table}: {report:#}");
        assert_eq!(server.count(), 2, "{table}: retried once");
        let e = errors(&report);
        assert!(
            e.contains("ended before the answer was complete"),
            "{table}: {e}"
        );
    }
}
