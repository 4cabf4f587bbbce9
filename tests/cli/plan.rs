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

/// The seeds the server received, read at `pointer` in each body.
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
    // Every call awaited: two agreeing seats would otherwise close the round before the
    // third call reaches the server.
    let args = ["--seed", "41", "--strategy", "vote", "--wait-all"];
    let (code, report, stderr) = ask(&sb, &cfg, &args);
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

// ------------------------------------------------------------------------------ --dry-run

/// `ask --dry-run --json` on a panel of `seats` seats of an OpenAI-compatible server at
/// `server`, with `--system "Be terse."` (so round 0's prompts are known) and `extra`.
fn dry_run(
    sb: &Sandbox,
    server: &TestServer,
    table_extra: &str,
    seats: usize,
    extra: &[&str],
) -> (i32, Value, String) {
    let table = format!("{OPENAI}\n{table_extra}");
    let cfg = panel(sb, &server.url(), &table, "m", seats);
    let mut args = vec!["--dry-run", "--seed", "1", "--system", "Be terse."];
    args.extend_from_slice(extra);
    ask(sb, &cfg, &args)
}

/// (calls, input tokens, output tokens) of each stage, with its name.
fn stages(plan: &Value) -> Vec<(String, u64, u64, u64)> {
    plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["what"].as_str().unwrap_or_default().to_string(),
                s["calls"].as_u64().unwrap(),
                s["input_tokens"].as_u64().unwrap(),
                s["output_tokens"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Round 0's input per call: the system prompt and the question, a token per byte.
const FIRST: u64 = ("Be terse.".len() + QUESTION.len()) as u64;

#[test]
fn dry_run_of_a_3_seat_metastable_panel_sends_nothing_and_counts_every_round() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let (code, plan, stderr) = dry_run(&sb, &server, "", 3, &["--max-tokens", "100"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.count(), 0, "a dry run sends nothing");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["strategy"], "metastable");
    assert_eq!(plan["rounds"], 3);
    let st = stages(&plan);
    assert_eq!(st.len(), 4, "{st:?}");
    assert_eq!(st[0], ("answers".to_string(), 3, 3 * FIRST, 300));
    for s in &st[1..] {
        assert_eq!((s.0.as_str(), s.1, s.3), ("refinement", 3, 300));
        assert_eq!(s.2, st[1].2, "every sampling round quotes as much");
        // Each call quotes its own answer and two peers, 100 tokens each, and the question.
        assert!(s.2 > 3 * (FIRST + 300), "{s:?}");
    }
    let worst = &plan["worst_case"];
    assert_eq!(worst["calls"], 12, "1 + 3 rounds per seat");
    assert_eq!(worst["output_tokens"], 1200);
    assert_eq!(worst["input_tokens"], 3 * FIRST + 3 * st[1].2);
    for seat in plan["seats"].as_array().unwrap() {
        assert_eq!(seat["calls"], 4);
        assert_eq!(seat["max_output_tokens"], 100);
    }

    // A longer output limit: each refinement call quotes 3 answers, each 100 tokens longer.
    let (_, longer, _) = dry_run(&sb, &server, "", 3, &["--max-tokens", "200"]);
    assert_eq!(stages(&longer)[1].2, st[1].2 + 3 * 3 * 100);
    assert_eq!(stages(&longer)[0].2, st[0].2, "round 0 quotes nothing");
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_of_a_vote_panel_counts_its_refinement_rounds_only() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let (code, plan, stderr) = dry_run(&sb, &server, "", 3, &["--strategy", "vote"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        plan["worst_case"]["calls"], 3,
        "vote: one answer each by default"
    );
    assert_eq!(
        plan["worst_case"]["output_tokens"],
        3 * 4096,
        "no limit: 4096 assumed"
    );
    let (_, plan, _) = dry_run(
        &sb,
        &server,
        "",
        3,
        &["--strategy", "vote", "--rounds", "2"],
    );
    let st = stages(&plan);
    assert_eq!(
        st.iter().map(|s| (s.0.as_str(), s.1)).collect::<Vec<_>>(),
        vec![("answers", 3), ("refinement", 3), ("refinement", 3)]
    );
    assert_eq!(plan["worst_case"]["calls"], 9);
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_counts_every_strategy_and_the_synthesizer() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let calls = |seats: usize, extra: &[&str]| {
        let (code, plan, stderr) = dry_run(&sb, &server, "", seats, extra);
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        plan["worst_case"]["calls"].as_u64().unwrap()
    };
    assert_eq!(calls(3, &["--strategy", "rank"]), 6, "rank: 2 per seat");
    assert_eq!(calls(4, &["--strategy", "bft"]), 12, "bft: 3 per seat");
    // leader, 3 seats, 2 terms: 3 answers, 2 votes; a proposal and 2 votes.
    assert_eq!(calls(3, &["--strategy", "leader", "--rounds", "2"]), 8);
    assert_eq!(calls(3, &["--strategy", "hanzo", "--rounds", "2"]), 9);
    assert_eq!(calls(1, &[]), 1, "a seat alone is not asked to refine");
    let (_, plan, _) = dry_run(&sb, &server, "", 3, &["--synthesize", "p:big"]);
    assert_eq!(plan["worst_case"]["calls"], 13);
    let last = stages(&plan).pop().unwrap();
    assert_eq!((last.0.as_str(), last.1), ("synthesis", 1));
    assert_eq!(plan["synthesizer"]["model"], "big");
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_prices_the_worst_case_or_says_it_is_unknown() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let price = "price = { input = 2.0, output = 10.0 }";
    let (code, plan, stderr) = dry_run(&sb, &server, price, 2, &["--max-tokens", "50"]);
    assert_eq!(code, 0, "{stderr}");
    let worst = &plan["worst_case"];
    let input = worst["input_tokens"].as_f64().unwrap();
    let output = worst["output_tokens"].as_f64().unwrap();
    let expected = (input * 2.0 + output * 10.0) / 1e6;
    let cost = worst["cost_usd"]
        .as_f64()
        .expect("a priced panel has a cost");
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    assert!(cost > 0.0);
    assert_eq!(worst["unpriced"], json!([]));
    // The text says whether the worst case fits in --max-cost.
    let cfg = panel(&sb, &server.url(), &format!("{OPENAI}\n{price}"), "m", 2);
    for (limit, says) in [
        (cost * 2.0, "the worst case fits"),
        (
            cost / 2.0,
            "the run stops before a round whose worst case would pass it",
        ),
    ] {
        let limit = limit.to_string();
        let out = sb
            .cmd()
            .env("TEST_KEY", "sk-test")
            .args(["ask", "--dry-run", "--seed", "1", "--system", "Be terse."])
            .args([
                "--max-tokens",
                "50",
                "--max-cost",
                &limit,
                "--config",
                &cfg,
                QUESTION,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains(&format!("${cost:.4}")), "{stdout}");
        assert!(stdout.contains(says), "{limit}: {stdout}");
    }
    let seats: f64 = plan["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cost_usd"].as_f64().unwrap())
        .sum();
    assert!((seats - cost).abs() < 1e-12);

    // Without a price the cost is unknown, never 0, and the seats are named.
    let (_, plan, _) = dry_run(&sb, &server, "", 2, &[]);
    assert_eq!(plan["worst_case"]["cost_usd"], Value::Null);
    assert_eq!(plan["worst_case"]["unpriced"], json!(["p:m", "p:m#2"]));
    assert_eq!(plan["seats"][0]["price"], Value::Null);
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_json_has_the_documented_fields_and_masks_the_endpoint() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let url = server.url().replace("http://", "http://user:hunter2@");
    let cfg = panel(&sb, &url, OPENAI, "m", 1);
    let (code, plan, stderr) = ask(&sb, &cfg, &["--dry-run", "--seed", "5"]);
    assert_eq!(code, 0, "{stderr}");
    let mut keys: Vec<&str> = plan
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "config",
            "dry_run",
            "k",
            "max_cost_usd",
            "quorum",
            "rounds",
            "seats",
            "seed",
            "stages",
            "strategy",
            "synthesizer",
            "worst_case"
        ]
    );
    assert_eq!(plan["seed"], 5);
    let seat = &plan["seats"][0];
    for key in [
        "name",
        "provider",
        "kind",
        "model",
        "base_url",
        "key_env",
        "key_set",
        "price",
        "max_output_tokens",
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "unpriced",
    ] {
        assert!(seat.get(key).is_some(), "seats[].{key} in {seat}");
    }
    assert_eq!(seat["kind"], "openai");
    assert_eq!(seat["key_env"], "TEST_KEY");
    assert_eq!(seat["key_set"], true);
    let stage = &plan["stages"][0];
    for key in [
        "round",
        "what",
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    ] {
        assert!(stage.get(key).is_some(), "stages[].{key} in {stage}");
    }
    let text = plan.to_string();
    assert!(!text.contains("hunter2"), "the password is masked: {text}");
    assert!(!text.contains("sk-test"), "no key value: {text}");
    assert!(text.contains("user:***@"), "{text}");
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_prints_a_plan_as_text_by_default() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), OPENAI, "m", 3);
    let out = sb
        .cmd()
        .env("TEST_KEY", "sk-test")
        .args([
            "ask",
            "--dry-run",
            "--seed",
            "1",
            "--config",
            &cfg,
            QUESTION,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("Dry run: nothing was sent."), "{stdout}");
    assert!(
        stdout.contains("strategy metastable, --rounds 3, k 3, seed 1"),
        "{stdout}"
    );
    assert!(stdout.contains("p:m#3"), "every seat is listed: {stdout}");
    assert!(
        stdout.contains("at most 12 calls,")
            && stdout.contains("cost unknown: p:m, p:m#2, p:m#3 unpriced"),
        "{stdout}"
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_with_a_missing_key_exits_2_like_a_run() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), OPENAI, "m", 2);
    let out = sb
        .cmd()
        .args(["ask", "--dry-run", "--config", &cfg, QUESTION])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("TEST_KEY"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(server.count(), 0);
}

#[test]
fn dry_run_refuses_what_a_run_refuses() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let cfg = panel(&sb, &server.url(), OPENAI, "m", 1);
    // --max-cost needs a price for every seat: the same configuration error as a run.
    let out = sb
        .cmd()
        .env("TEST_KEY", "sk-test")
        .args([
            "ask",
            "--dry-run",
            "--max-cost",
            "9",
            "--config",
            &cfg,
            QUESTION,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--max-cost needs a price"), "{stderr}");
    assert_eq!(server.count(), 0);
}

/// The prompt bytes of a chat completions request: its messages' contents.
fn prompt_bytes(request: &Request) -> u64 {
    request.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().len() as u64)
        .sum()
}

#[test]
fn a_run_where_nobody_ever_agrees_makes_the_planned_calls_within_the_planned_tokens() {
    for extra in [
        &["--strategy", "metastable"][..],
        &["--strategy", "vote", "--rounds", "2"],
        &["--strategy", "rank"],
        &["--strategy", "leader", "--rounds", "3"],
        &["--strategy", "hanzo", "--rounds", "2"],
    ] {
        // Every answer a new word: no key agrees with another or with an earlier one, no
        // ballot or vote is readable.
        let server = TestServer::start(|_, i| openai_ok(&format!("Final answer: w{i}x"), 5, 2));
        let sb = Sandbox::new();
        let mut args = vec!["--max-tokens", "40"];
        args.extend_from_slice(extra);
        let (code, plan, stderr) = dry_run(&sb, &server, "", 3, &args);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(server.count(), 0);
        let cfg = panel(&sb, &server.url(), OPENAI, "m", 3);
        let mut run = vec!["--seed", "1", "--system", "Be terse."];
        run.extend_from_slice(&args);
        let (_, report, stderr) = ask(&sb, &cfg, &run);
        assert!(report["status"].is_string(), "{stderr}");
        let requests = server.requests();
        assert_eq!(
            requests.len() as u64,
            plan["worst_case"]["calls"].as_u64().unwrap(),
            "{extra:?}"
        );
        let sent: u64 = requests.iter().map(prompt_bytes).sum();
        let planned = plan["worst_case"]["input_tokens"].as_u64().unwrap();
        assert!(
            sent <= planned,
            "{extra:?}: {sent} bytes sent, {planned} planned"
        );
    }
}

#[test]
fn a_bft_run_that_reaches_commit_makes_the_planned_calls() {
    // Everyone answers alike and attests AGREE to the proposal's digest: both phases run.
    let server = TestServer::start(|req, _| {
        let body = req.text();
        let reply = match body.split_once("(SHA-256 ") {
            Some((_, rest)) => {
                let digest: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
                format!("Attestation: AGREE {digest}\nReason: right.")
            }
            None => "Final answer: 4".to_string(),
        };
        openai_ok(&reply, 5, 2)
    });
    let sb = Sandbox::new();
    let args = ["--strategy", "bft", "--max-tokens", "40"];
    let (code, plan, stderr) = dry_run(&sb, &server, "", 4, &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(plan["worst_case"]["calls"], 12);
    let cfg = panel(&sb, &server.url(), OPENAI, "m", 4);
    // Every call awaited, so the count is the plan's whatever the scheduling.
    let mut run = vec!["--seed", "1", "--system", "Be terse.", "--wait-all"];
    run.extend_from_slice(&args);
    let (code, report, stderr) = ask(&sb, &cfg, &run);
    assert_eq!(code, 0, "the panel commits: {stderr} {report}");
    let requests = server.requests();
    assert_eq!(requests.len(), 12);
    let sent: u64 = requests.iter().map(prompt_bytes).sum();
    assert!(sent <= plan["worst_case"]["input_tokens"].as_u64().unwrap());
}
