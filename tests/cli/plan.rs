//! `--seed` at the providers (each kind's request body carries the run's seed, one per
//! seat) and `--dry-run` (the call plan, with nothing sent).

use crate::common::*;
use serde_json::{Value, json};

const QUESTION: &str = "What is 2+2?";

/// A panel of `seats` seats of one provider (TOML lines of its table, `{url}` replaced).
fn panel(sandbox: &Sandbox, url: &str, table: &str, model: &str, seats: usize) -> String {
    let mut text = format!("[providers.p]\n{}\n", table.replace("{url}", url));
    for _ in 0..seats {
        text.push_str(&format!(
            "\n[[participants]]\nprovider = \"p\"\nmodel = \"{model}\"\n"
        ));
    }
    sandbox
        .write("panel.toml", &text)
        .to_string_lossy()
        .into_owned()
}

/// `ask --json --config CONFIG EXTRA... QUESTION` with the key in TEST_KEY.
fn ask(sandbox: &Sandbox, config: &str, extra: &[&str]) -> (i32, Value, String) {
    let out = sandbox
        .cmd()
        .env("TEST_KEY", "sk-test")
        .args(["ask", "--json", "--config", config])
        .args(extra)
        .arg(QUESTION)
        .output()
        .expect("run llm-consensus");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// The seeds the server received, by seat (the seat's name is `p-model#N` or `p-model`),
/// read at `pointer` in each body.
fn seeds(server: &TestServer, pointer: &str) -> Vec<Value> {
    server
        .requests()
        .iter()
        .map(|r| r.json().pointer(pointer).cloned().unwrap_or(Value::Null))
        .collect()
}

const OPENAI: &str = "kind = \"openai\"\nbase_url = \"{url}/v1\"\napi_key_env = \"TEST_KEY\"";
const OLLAMA: &str = "kind = \"ollama\"\nbase_url = \"{url}\"";
const GEMINI: &str = "kind = \"gemini\"\nbase_url = \"{url}/v1beta\"\napi_key_env = \"TEST_KEY\"";
const ANTHROPIC: &str = "kind = \"anthropic\"\nbase_url = \"{url}\"\napi_key_env = \"TEST_KEY\"";

#[test]
fn a_given_seed_reaches_openai_compatible_servers_one_per_seat() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), OPENAI, "m", 3);
    let (code, report, stderr) = ask(&sb, &cfg, &["--seed", "41", "--strategy", "vote"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["seed"], 41);
    let mut got: Vec<u64> = seeds(&server, "/seed")
        .iter()
        .map(|s| s.as_u64().expect("a seed in every body"))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        vec![41, 42, 43],
        "the run's seed plus the seat's index"
    );
}

#[test]
fn a_drawn_seed_is_sent_too_so_the_reported_one_repeats_the_requests() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), OPENAI, "m", 1);
    let (code, report, stderr) = ask(&sb, &cfg, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(seeds(&server, "/seed"), vec![json!(seat_seed(&report, 0))]);
    let first = server.requests()[0].json();
    let seed = report["seed"].to_string();
    let (code, _, stderr) = ask(&sb, &cfg, &["--seed", &seed]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        server.requests()[1].json(),
        first,
        "the rerun sends the same body"
    );
}

#[test]
fn a_large_seed_is_sent_below_2_to_the_31() {
    let server = TestServer::always(gemini_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), GEMINI, "gemini-test", 1);
    let big = u64::MAX.to_string();
    let (code, _, stderr) = ask(&sb, &cfg, &["--seed", &big]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        seeds(&server, "/generationConfig/seed"),
        vec![json!(u64::MAX % (1 << 31))]
    );
}

#[test]
fn ollama_gets_the_seed_in_its_options() {
    let server = TestServer::always(ollama_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), OLLAMA, "llama-test", 2);
    let (code, _, stderr) = ask(
        &sb,
        &cfg,
        &["--seed", "7", "--strategy", "vote", "--temperature", "0.5"],
    );
    assert_eq!(code, 0, "{stderr}");
    let mut got: Vec<Value> = server
        .requests()
        .iter()
        .map(|r| r.json()["options"].clone())
        .collect();
    got.sort_by_key(|o| o["seed"].as_u64());
    assert_eq!(
        got,
        vec![
            json!({"temperature": 0.5, "seed": 7}),
            json!({"temperature": 0.5, "seed": 8})
        ]
    );
}

#[test]
fn gemini_gets_the_seed_in_its_generation_config() {
    let server = TestServer::always(gemini_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), GEMINI, "gemini-test", 1);
    let (code, _, stderr) = ask(&sb, &cfg, &["--seed", "7", "--max-tokens", "9"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        server.requests()[0].json()["generationConfig"],
        json!({"maxOutputTokens": 9, "seed": 7})
    );
}

#[test]
fn anthropic_has_no_seed_and_gets_none() {
    let server = TestServer::always(anthropic_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), ANTHROPIC, "claude-test", 1);
    let (code, _, stderr) = ask(&sb, &cfg, &["--seed", "7"]);
    assert_eq!(code, 0, "{stderr}");
    let body = server.requests()[0].json();
    assert!(
        !body.to_string().contains("seed"),
        "no seed field anywhere: {body}"
    );
}

#[test]
fn mistral_gets_its_own_seed_field() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        &format!("[providers.mistral]\nbase_url = \"{}/v1\"\n", server.url()),
    );
    let out = sb
        .cmd()
        .env("MISTRAL_API_KEY", "k")
        .args(["ask", "--json", "--seed", "7", "--config"])
        .arg(&cfg)
        .args(["-m", "mistral:mistral-test", QUESTION])
        .output()
        .expect("run llm-consensus");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = server.requests()[0].json();
    assert_eq!(body["random_seed"], 7);
    assert_eq!(body.get("seed"), None);
}
