//! `eval` and `eval-summary`: items from a JSON-lines file through a panel of three seats
//! on an OpenAI-compatible server on 127.0.0.1 that answers by the item's prompt and the
//! seat's model; per-item result lines, the summary, the gate, --resume, --shard and
//! --jobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const KEY: &str = "sk-test-eval-41b2";

/// The answers of seats m0, m1, m2 to the prompt that contains `tag`.
fn answers(tag: &str) -> [&'static str; 3] {
    match tag {
        "Q-fr" | "Q-free" => ["Final answer: Paris"; 3],
        "Q-au" => ["Final answer: Sydney"; 3],
        "Q-sum" => ["Final answer: 4", "Final answer: 4", "Final answer: 5"],
        _ => ["Final answer: 42"; 3],
    }
}

fn panel() -> TestServer {
    panel_with_delay(Duration::ZERO)
}

fn panel_with_delay(delay: Duration) -> TestServer {
    TestServer::start(move |req, _| {
        let body = req.json();
        let model = body["model"].as_str().unwrap_or_default().to_string();
        let seat: usize = model.trim_start_matches('m').parse().unwrap_or(0);
        let text = req.text();
        let tag = ["Q-free", "Q-fr", "Q-au", "Q-sum"]
            .into_iter()
            .find(|t| text.contains(t))
            .unwrap_or("");
        std::thread::sleep(delay);
        openai_ok(answers(tag)[seat], 5, 3)
    })
}

fn config(sandbox: &Sandbox, server: &TestServer) -> PathBuf {
    sandbox.write(
        "providers.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            server.url()
        ),
    )
}

/// Runs `llm-consensus CMD` against the panel (vote: one call per seat and item);
/// returns (exit code, stdout, stderr).
fn eval(sandbox: &Sandbox, server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let config = config(sandbox, server);
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args([
            "eval",
            "--strategy",
            "vote",
            "--seed",
            "1",
            "--retries",
            "0",
        ])
        .arg("--config")
        .arg(&config)
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The result lines of an --out file, by id.
fn results(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn by_id<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no result for {id}"))
}

const ITEMS: &str = r#"{"id":"fr","prompt":"Q-fr","expect":"Paris","category":"geo"}
{"id":"au","prompt":"Q-au","expect":"Canberra","category":"geo"}
{"id":"bad","prompt":
{"id":"sum","prompt":"Q-sum","expect_number":4,"category":"math","source":"hand"}

{"id":"x"}
{"id":"free","prompt":"Q-free"}
"#;

#[test]
fn an_eval_file_gives_per_item_results_a_summary_and_a_gate() {
    let sandbox = Sandbox::new();
    let server = panel();
    let items = sandbox.write("items.jsonl", ITEMS);
    let out = sandbox.path().join("out.jsonl");
    let (code, stdout, stderr) = eval(
        &sandbox,
        &server,
        &[
            items.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
            // Every seat's tally is counted: no call is cancelled as not needed.
            "--wait-all",
        ],
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    // The malformed lines are named by number, and the rest ran.
    assert!(stderr.contains("line 3: not JSON"), "{stderr}");
    assert!(stderr.contains("line 6: item x: no \"prompt\""), "{stderr}");
    assert_eq!(server.count(), 4 * 3);

    let lines = results(&out);
    assert_eq!(lines.len(), 4);
    let fr = by_id(&lines, "fr");
    assert_eq!(fr["category"], "geo");
    assert_eq!(fr["check"]["kind"], "text");
    assert_eq!(fr["check"]["value"], "Paris");
    assert_eq!(fr["check"]["matched"], true);
    assert_eq!(fr["report"]["status"], "final");
    assert_eq!(fr["report"]["prompt"], "Q-fr");
    assert_eq!(fr["report"]["expect"]["matched"], true);
    let au = by_id(&lines, "au");
    assert_eq!(au["check"]["matched"], false);
    assert_eq!(au["report"]["answer"], "Sydney");
    let sum = by_id(&lines, "sum");
    assert_eq!(sum["check"]["kind"], "number");
    assert_eq!(sum["check"]["value"], json!(4.0));
    assert_eq!(sum["check"]["matched"], true);
    assert_eq!(sum["fields"], json!({"source": "hand"}));
    let seats: Vec<bool> = sum["check"]["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["matched"].as_bool().unwrap())
        .collect();
    assert_eq!(seats, [true, true, false]);
    let free = by_id(&lines, "free");
    assert!(free.get("check").is_none(), "{free}");
    assert!(free.get("category").is_none(), "{free}");

    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["items"], 4);
    assert_eq!(summary["finished"], 4);
    assert_eq!(summary["malformed"], 2);
    assert_eq!(summary["final"], 4);
    assert_eq!(summary["final_rate"], json!(1.0));
    assert_eq!(summary["accuracy"]["checked"], 3);
    assert_eq!(summary["accuracy"]["matched"], 2);
    assert_eq!(summary["accuracy_final"]["matched"], 2);
    assert_eq!(summary["categories"]["geo"]["matched"], 1);
    assert_eq!(summary["categories"]["geo"]["checked"], 2);
    assert_eq!(summary["categories"]["math"]["matched"], 1);
    let seat_names: Vec<&str> = sum["check"]["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(summary["seats"][seat_names[0]]["matched"], 2);
    assert_eq!(summary["seats"][seat_names[2]]["matched"], 1);
    // 4 items x 3 calls x (5 + 3) tokens.
    assert_eq!(summary["total_tokens"], 4 * 3 * 8);

    // The gate: 2 of 3 is below 0.7 (exit 4) and reaches 0.6.
    let (code, stdout, stderr) = eval(
        &sandbox,
        &server,
        &[items.to_str().unwrap(), "--min-accuracy", "0.7"],
    );
    assert_eq!(code, 4, "stderr: {stderr}");
    assert!(stdout.contains("accuracy: 2 of 3 (66.7%)"), "{stdout}");
    assert!(stderr.contains("below --min-accuracy 0.7"), "{stderr}");
    let (code, _, stderr) = eval(
        &sandbox,
        &server,
        &[items.to_str().unwrap(), "--min-accuracy", "0.6"],
    );
    assert_eq!(code, 0, "stderr: {stderr}");
}

#[test]
fn items_come_from_standard_input_with_a_dash() {
    let sandbox = Sandbox::new();
    let server = panel();
    let config = config(&sandbox, &server);
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        // Every seat is called: none is cancelled as not needed.
        .args([
            "eval",
            "-",
            "--json",
            "--strategy",
            "vote",
            "--wait-all",
            "--config",
        ])
        .arg(&config)
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
        .write_stdin("{\"id\":\"fr\",\"prompt\":\"Q-fr\",\"expect\":\"paris\"}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accuracy"]["matched"], 1);
    assert_eq!(server.count(), 3);
}

#[test]
fn resume_runs_only_the_items_not_in_out() {
    let sandbox = Sandbox::new();
    let server = panel();
    let items = sandbox.write("items.jsonl", ITEMS);
    let out = sandbox.path().join("out.jsonl");
    // A first run finished `fr` and was killed while writing `au`'s line.
    let (code, _, stderr) = eval(
        &sandbox,
        &server,
        // Every call is counted: none is cancelled as not needed.
        &[
            items.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--wait-all",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let first = std::fs::read_to_string(&out).unwrap();
    let fr = first.lines().find(|l| l.contains("\"id\":\"fr\"")).unwrap();
    let au = first.lines().find(|l| l.contains("\"id\":\"au\"")).unwrap();
    std::fs::write(&out, format!("{fr}\n{}", &au[..au.len() / 2])).unwrap();
    let before = server.count();

    let (code, stdout, stderr) = eval(
        &sandbox,
        &server,
        &[
            items.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--json",
            "--wait-all",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // au, sum and free ran again (3 seats each); fr did not.
    assert_eq!(server.count() - before, 3 * 3);
    let lines = results(&out);
    let mut ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["au", "fr", "free", "sum"]);
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["items"], 4);
    assert_eq!(summary["resumed"], 1);
    assert_eq!(summary["accuracy"]["matched"], 2);

    // Nothing is left: no call at all.
    let before = server.count();
    let (code, _, _) = eval(
        &sandbox,
        &server,
        &[
            items.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--resume",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(server.count(), before);
    assert_eq!(results(&out).len(), 4);
}

#[test]
fn shards_split_the_file_exactly_and_eval_summary_merges_them() {
    let sandbox = Sandbox::new();
    let server = panel();
    let lines: String = (0..30)
        .map(|i| format!("{{\"id\":\"q{i}\",\"prompt\":\"Q-fr {i}\",\"expect\":\"Paris\"}}\n"))
        .collect();
    let items = sandbox.write("items.jsonl", &lines);
    let mut all = Vec::new();
    let mut outs = Vec::new();
    for k in 1..=3 {
        let out = sandbox.path().join(format!("out{k}.jsonl"));
        let shard = format!("{k}/3");
        let (code, _, stderr) = eval(
            &sandbox,
            &server,
            &[
                items.to_str().unwrap(),
                "--shard",
                &shard,
                "--out",
                out.to_str().unwrap(),
                // Every call's tokens are counted: none is cancelled as not needed.
                "--wait-all",
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        let ids: Vec<String> = results(&out)
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect();
        assert!(!ids.is_empty() && ids.len() < 30, "shard {shard}: {ids:?}");
        all.extend(ids);
        outs.push(out);
    }
    all.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("q{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "the shards are disjoint and cover the file");
    assert_eq!(server.count(), 30 * 3);

    let out = sandbox
        .cmd()
        .arg("eval-summary")
        .args(&outs)
        .args(["--json", "--min-accuracy", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["items"], 30);
    assert_eq!(summary["accuracy"]["matched"], 30);
    assert_eq!(summary["total_tokens"], 30 * 3 * 8);

    // A file given twice counts once; text output; a missing file is exit 2.
    let out = sandbox
        .cmd()
        .arg("eval-summary")
        .args([&outs[0], &outs[0]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let n = results(&outs[0]).len();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("items: {n}, finished {n}")),
        "{text}"
    );
    let out = sandbox
        .cmd()
        .args(["eval-summary", "nope.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.jsonl"));
}

#[test]
fn items_run_concurrently_up_to_jobs_and_within_max_concurrency() {
    // Counts the calls in flight at once.
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(Mutex::new(0usize));
    let server = {
        let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
        TestServer::start(move |_, _| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            {
                let mut p = peak.lock().unwrap();
                *p = (*p).max(n);
            }
            std::thread::sleep(Duration::from_millis(300));
            now.fetch_sub(1, Ordering::SeqCst);
            openai_ok("Final answer: 42", 5, 3)
        })
    };
    let sandbox = Sandbox::new();
    let lines: String = (0..8)
        .map(|i| format!("{{\"id\":\"q{i}\",\"prompt\":\"Q {i}\"}}\n"))
        .collect();
    let items = sandbox.write("items.jsonl", &lines);
    let (code, _, stderr) = eval(&sandbox, &server, &[items.to_str().unwrap(), "--jobs", "4"]);
    assert_eq!(code, 0, "{stderr}");
    // 4 items x 3 seats at once, never more.
    assert_eq!(*peak.lock().unwrap(), 12);

    // max_concurrency holds over all items together.
    *peak.lock().unwrap() = 0;
    let config = sandbox.write(
        "limited.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\nmax_concurrency = 2\n",
            server.url()
        ),
    );
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        // A cancelled call's server thread would still count as busy: wait for each.
        .args([
            "eval",
            "--strategy",
            "vote",
            "--wait-all",
            "--jobs",
            "4",
            "--config",
        ])
        .arg(&config)
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
        .arg(&items)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(*peak.lock().unwrap(), 2);
}

#[test]
fn bad_batch_flags_are_usage_errors_before_any_call() {
    let sandbox = Sandbox::new();
    let server = panel();
    let items = sandbox.write("items.jsonl", ITEMS);
    for (args, error) in [
        (
            vec![items.to_str().unwrap(), "--shard", "4/3"],
            "--shard 4/3",
        ),
        (
            vec![items.to_str().unwrap(), "--min-accuracy", "2"],
            "--min-accuracy",
        ),
        (vec!["missing.jsonl"], "missing.jsonl"),
        (
            vec![items.to_str().unwrap(), "--out", "no/such/dir/out.jsonl"],
            "no/such/dir",
        ),
    ] {
        let (code, _, stderr) = eval(&sandbox, &server, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
    }
    assert_eq!(server.count(), 0);
}

#[test]
fn ctrl_c_keeps_the_finished_results_and_prints_the_summary_so_far() {
    let server = TestServer::start(|req, _| {
        if req.text().contains("Q-hang") {
            Reply::Hang
        } else {
            openai_ok("Final answer: Paris", 5, 3)
        }
    });
    let sandbox = Sandbox::new();
    let config = config(&sandbox, &server);
    let items = sandbox.write(
        "items.jsonl",
        "{\"id\":\"a\",\"prompt\":\"Q-fr a\",\"expect\":\"Paris\"}\n\
         {\"id\":\"h1\",\"prompt\":\"Q-hang 1\"}\n\
         {\"id\":\"b\",\"prompt\":\"Q-fr b\",\"expect\":\"Paris\"}\n\
         {\"id\":\"h2\",\"prompt\":\"Q-hang 2\"}\n",
    );
    let out = sandbox.path().join("out.jsonl");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"))
        .env_clear()
        .env("HOME", sandbox.path())
        .env("LOCAL_KEY", KEY)
        .current_dir(sandbox.path())
        // Every call goes out (12 of them): none is cancelled as not needed.
        .args([
            "eval",
            "--json",
            "--strategy",
            "vote",
            "--wait-all",
            "--jobs",
            "4",
        ])
        .arg("--config")
        .arg(&config)
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
        .arg(&items)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    // Interrupt once the two quick items are written and the hanging calls are out.
    loop {
        let written = std::fs::read_to_string(&out)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if written == 2 && server.count() == 12 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the items never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let mut ids: Vec<String> = results(&out)
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"], "only finished items are in --out");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["finished"], 2);
    assert_eq!(summary["unfinished"], 2);
    assert_eq!(summary["accuracy"]["matched"], 2);
}

/// The long flags of `llm-consensus SUB --help`.
fn flags_in_help(sub: &str) -> Vec<String> {
    let out = Sandbox::new().cmd().args([sub, "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<String> = help
        .lines()
        .flat_map(|l| l.split([' ', ',', '=', '[', '<']))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_flag_of_eval_is_documented_in_the_readme() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Batch evaluation").expect("the section")..];
    let flags = flags_in_help("eval");
    assert!(flags.contains(&"--jobs".to_string()), "{flags:?}");
    let mut missing: Vec<String> = flags
        .iter()
        .filter(|f| f.as_str() != "--help")
        .filter(|f| !readme.contains(&format!("`{f}")))
        .cloned()
        .collect();
    // The batch's own flags are in its section.
    for own in [
        "--jobs",
        "--out",
        "--resume",
        "--shard",
        "--min-accuracy",
        "--require",
    ] {
        if !section.contains(&format!("`{own}")) {
            missing.push(own.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "eval flags not in README.md: {missing:?}"
    );
    let summary = flags_in_help("eval-summary");
    assert!(
        summary
            .iter()
            .all(|f| f == "--help" || section.contains(&format!("`{f}")))
    );
}

#[test]
fn every_item_is_a_run_in_the_run_log_unless_no_log() {
    let sandbox = Sandbox::new();
    let server = panel();
    let items = sandbox.write("items.jsonl", ITEMS);
    let db = sandbox.path().join("log.db");
    let logged = |extra: &[&str]| {
        let config = config(&sandbox, &server);
        let out = sandbox
            .cmd()
            .env("LOCAL_KEY", KEY)
            .env("LLM_CONSENSUS_LOG_DB", &db)
            .args(["eval", "--strategy", "vote", "--config"])
            .arg(&config)
            .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
            .arg(&items)
            .args(extra)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(out.status.code().is_some(), "exited");
        let list = sandbox
            .cmd()
            .env("LLM_CONSENSUS_LOG_DB", &db)
            .args(["logs", "list", "--json"])
            .output()
            .unwrap();
        let runs: Value = serde_json::from_slice(&list.stdout).unwrap();
        runs.as_array().cloned().unwrap_or_default()
    };
    // Four well-formed items with a prompt: four runs, each finished with its outcome.
    assert!(logged(&["--no-log"]).is_empty());
    let runs = logged(&[]);
    assert_eq!(runs.len(), 4, "{runs:?}");
    for run in &runs {
        assert_eq!(run["status"], "final", "{run}");
    }
}
