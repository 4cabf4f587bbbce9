//! Token prices: the bundled table, config overrides, unpriced models reported as null,
//! and --max-cost stopping the run before a round that could exceed it.

use crate::common::*;
use serde_json::Value;

const KEY: &str = "sk-test-cost";

fn run(sb: &Sandbox, config: &std::path::Path, flags: &[&str]) -> (i32, Value, String) {
    let out = sb
        .cmd()
        .env("OPENAI_API_KEY", KEY)
        .args([
            "ask",
            "--json",
            "--seed",
            "1",
            "--system",
            "Be terse.",
            "--config",
        ])
        .arg(config)
        .args(flags)
        .arg("What is 2+2?")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn bundled_prices_cost_the_usage_and_unknown_prices_are_null() {
    let openai = TestServer::always(openai_ok("Final answer: 4", 1000, 500));
    let local = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!(
            "[providers.openai]\nbase_url = \"{}\"\n\n[providers.local]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini-2024-07-18\"\n\n\
             [[participants]]\nprovider = \"local\"\nmodel = \"qwen\"\n",
            openai.url(),
            local.url()
        ),
    );
    let (code, report, stderr) = run(&sb, &cfg, &[]);
    assert_eq!(code, 0, "{stderr}");
    let priced = &report["participants"][0];
    assert_eq!(
        priced["price"],
        serde_json::json!({"input": 0.15, "output": 0.6})
    );
    assert!(
        close(&priced["cost_usd"], (1000.0 * 0.15 + 500.0 * 0.6) / 1e6),
        "{priced:#}"
    );
    let unpriced = &report["participants"][1];
    assert!(unpriced["price"].is_null() && unpriced["cost_usd"].is_null());
    assert!(
        report["usage"]["cost_usd"].is_null(),
        "an unknown price is never 0"
    );

    // A price on the local participant's entry (the file's last table) prices it, and
    // the total becomes known.
    let text = std::fs::read_to_string(&cfg).unwrap() + "price = { input = 2.0, output = 4.0 }\n";
    std::fs::write(&cfg, text).unwrap();
    let (code, report, stderr) = run(&sb, &cfg, &[]);
    assert_eq!(code, 0, "{stderr}");
    let local_cost = (10.0 * 2.0 + 5.0 * 4.0) / 1e6;
    assert!(close(&report["participants"][1]["cost_usd"], local_cost));
    assert!(close(
        &report["usage"]["cost_usd"],
        (1000.0 * 0.15 + 500.0 * 0.6) / 1e6 + local_cost
    ));
}

fn two_priced_seats(sb: &Sandbox, a: &TestServer, b: &TestServer) -> std::path::PathBuf {
    sb.write(
        "panel.toml",
        &format!(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\nprice = {{ input = 1000.0, output = 1000.0 }}\n\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"{}\"\nprice = {{ input = 1000.0, output = 1000.0 }}\n\n\
             [[participants]]\nprovider = \"a\"\nmodel = \"m\"\nmax_tokens = 10\n\n\
             [[participants]]\nprovider = \"b\"\nmodel = \"m\"\nmax_tokens = 10\n",
            a.url(),
            b.url()
        ),
    )
}

#[test]
fn max_cost_stops_before_a_round_whose_worst_case_exceeds_it() {
    let a = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let b = TestServer::always(openai_ok("Final answer: 5", 10, 5));
    let sb = Sandbox::new();
    let cfg = two_priced_seats(&sb, &a, &b);
    // Round 0: 21 prompt bytes + 10 output tokens per call at $1000/M = $0.062 worst case,
    // $0.03 spent; round 1 shows each seat its peer's answer and cannot fit in $0.08.
    let (code, report, stderr) = run(&sb, &cfg, &["--max-cost", "0.08"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["status"], "failed");
    assert_eq!(report["finalized"], false);
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("before round 1") && error.contains("--max-cost"),
        "{error}"
    );
    assert_eq!((a.count(), b.count()), (1, 1));
    assert!(close(&report["usage"]["cost_usd"], 0.03));

    // Without the limit the same panel goes on refining.
    let (_, report, _) = run(&sb, &cfg, &[]);
    assert!(report["rounds_executed"].as_u64().unwrap() >= 1);
    assert!(a.count() > 2);
}

#[test]
fn max_cost_below_the_first_round_makes_no_call() {
    let a = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let b = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let sb = Sandbox::new();
    let cfg = two_priced_seats(&sb, &a, &b);
    let (code, report, _) = run(&sb, &cfg, &["--max-cost", "0.01"]);
    assert_eq!(code, 3);
    assert!(report["error"].as_str().unwrap().contains("before round 0"));
    assert_eq!((a.count(), b.count()), (0, 0));
}

#[test]
fn max_cost_needs_every_seat_priced() {
    let sb = Sandbox::new();
    let out = sb
        .cmd()
        .env("OLLAMA_HOST", "127.0.0.1:9")
        .args(["ask", "--max-cost", "1", "-m", "ollama:llama3", "q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ollama:llama3") && stderr.contains("price"),
        "{stderr}"
    );
}
