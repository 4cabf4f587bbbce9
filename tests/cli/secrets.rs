//! An API key is never printed: servers of every kind quote the key they were sent in
//! every error path, and the key must not appear on stdout, stderr (with -v), in the
//! transcript, or in --help.

use crate::common::*;
use serde_json::Value;

const KEY: &str = "sk-FAKE-7f3a9c2e-LEAKCHECK-0042";
const KINDS: [&str; 5] = ["openai", "azure", "anthropic", "gemini", "ollama"];

/// The key as received, from whichever header the kind uses.
fn received_key(req: &Request) -> String {
    ["authorization", "api-key", "x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|h| req.header(h))
        .map(|v| v.trim_start_matches("Bearer ").to_string())
        .unwrap_or_else(|| "NO KEY RECEIVED".to_string())
}

/// A server that fails with `fault` and quotes the key it received.
fn echo_server(fault: &'static str) -> TestServer {
    TestServer::start(move |req, _| {
        let key = received_key(req);
        match fault {
            "401" => json(
                401,
                &serde_json::json!({"type": "error", "error": {
                    "type": "authentication_error",
                    "message": format!("Incorrect API key provided: {key}")}}),
            ),
            "500" => text(500, "text/plain", &format!("internal error for {key}")),
            "html" => text(200, "text/html", &format!("<html><p>{key}</p></html>")),
            "json" => text(200, "application/json", &format!("{{\"broken\": \"{key}")),
            "stream" => event_stream(
                200,
                "text/event-stream",
                vec![format!(
                    "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"bad key {key}\"}}}}\n\n"
                )],
            ),
            other => panic!("unknown fault {other}"),
        }
    })
}

#[test]
fn no_error_path_prints_the_key() {
    for fault in ["401", "500", "html", "json", "stream"] {
        let servers: Vec<TestServer> = KINDS.iter().map(|_| echo_server(fault)).collect();
        let sb = Sandbox::new();
        let mut config = String::new();
        for (kind, server) in KINDS.iter().zip(&servers) {
            config.push_str(&format!(
                "[providers.{kind}-p]\nkind = \"{kind}\"\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n\n",
                server.url()
            ));
        }
        for kind in KINDS {
            config.push_str(&format!(
                "[[participants]]\nprovider = \"{kind}-p\"\nmodel = \"m\"\n\n"
            ));
        }
        let cfg = sb.write("panel.toml", &config);
        let transcript = sb.path().join("transcript.json");
        let mut cmd = sb.cmd();
        cmd.env("FAKE_KEY", KEY)
            .args(["ask", "-v", "--json", "--retries", "0", "--config"])
            .arg(&cfg)
            .arg("--transcript")
            .arg(&transcript);
        if fault == "stream" {
            cmd.arg("--stream");
        }
        let out = cmd.arg("What is 2+2?").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let saved = std::fs::read_to_string(&transcript).unwrap();
        // Every server really received the key, and every seat's error was reported.
        for server in &servers {
            assert_eq!(received_key(&server.requests()[0]), KEY, "{fault}");
        }
        let report: Value = serde_json::from_str(&stdout).unwrap();
        for p in report["participants"].as_array().unwrap() {
            assert_eq!(p["errors"].as_array().unwrap().len(), 1, "{fault}: {p:#}");
        }
        // Errors that quote the provider's text show where the key was.
        if fault != "json" {
            assert!(stdout.contains("<redacted>"), "{fault}: {stdout}");
        }
        for (what, text) in [
            ("stdout", &*stdout),
            ("stderr", &*stderr),
            ("transcript", &saved),
        ] {
            assert!(
                !text.contains(KEY),
                "{fault}: the key is in {what}:\n{text}"
            );
            assert!(
                !text.contains("7f3a9c2e"),
                "{fault}: part of the key is in {what}"
            );
        }
    }
}

#[test]
fn help_and_config_errors_do_not_print_the_key() {
    let sb = Sandbox::new();
    for args in [
        vec!["--help"],
        vec!["ask", "--help"],
        vec!["ask", "-m", "nosuch:model", "q"],
        vec!["ask", "-m", "azure:dep", "q"],
    ] {
        let out = sb
            .cmd()
            .env("OPENAI_API_KEY", KEY)
            .env("AZURE_OPENAI_API_KEY", KEY)
            .env("ANTHROPIC_API_KEY", KEY)
            .args(&args)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.is_empty(), "{args:?}");
        assert!(!all.contains(KEY), "{args:?}: {all}");
    }
}

#[test]
fn verbose_logs_each_retry_as_it_happens_without_the_key() {
    let server = TestServer::start(|req, i| {
        let key = received_key(req);
        match i {
            0 => text(500, "text/plain", &format!("internal error for {key}")),
            1 => with_header(
                openai_error(
                    429,
                    &format!("Rate limit reached for {key}"),
                    "requests",
                    Some("rate_limit_exceeded"),
                ),
                "retry-after-ms",
                "50",
            ),
            _ => openai_ok("Final answer: 4", 3, 2),
        }
    });
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n\n\
             [[participants]]\nprovider = \"p\"\nmodel = \"m\"\n",
            server.url()
        ),
    );
    let out = sb
        .cmd()
        .env("FAKE_KEY", KEY)
        .args(["ask", "-v", "--json", "--retries", "2", "--config"])
        .arg(&cfg)
        .arg("What is 2+2?")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(server.count(), 3);
    assert!(!stderr.contains(KEY), "the key is in stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("p:m")).collect();
    assert_eq!(lines.len(), 3, "two retries, then the answer:\n{stderr}");
    let first = lines[0];
    assert!(
        first.contains("attempt 1 failed, retrying in ")
            && first.contains(" ms (backoff): p: HTTP 500")
            && first.contains("internal error for <redacted>"),
        "{first}"
    );
    assert_eq!(
        lines[1],
        "[round 0] p:m (m): attempt 2 failed, retrying in 50 ms (as the provider asked): \
         p: HTTP 429 requests/rate_limit_exceeded: Rate limit reached for <redacted>",
    );
    assert!(lines[2].contains("ok in"), "{}", lines[2]);
}
