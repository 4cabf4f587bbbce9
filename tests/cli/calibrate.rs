//! A FINAL you can calibrate: `eval`'s per-seat accuracy, its risk–coverage table of FINAL
//! and `--calibrate P`, and `eval-summary` counting the same from the --out file. The
//! panel: three seats on an OpenAI-compatible server on 127.0.0.1 that answers by the
//! item's tag and the seat's model, so each item's support is known: 3/3 agreeing (two
//! right, one wrong), 2/3 agreeing (one right, two wrong), and 2/2 when the third seat
//! fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const KEY: &str = "sk-test-calibrate-7c1e";

/// The answers of seats m0, m1, m2 to the item tagged `tag`; None is an HTTP 500.
fn answers(tag: &str) -> [Option<&'static str>; 3] {
    let all = |a| [Some(a); 3];
    match tag {
        "Q-1" => all("Final answer: Paris"),
        "Q-2" => all("Final answer: Rome"),
        "Q-3" => all("Final answer: Sydney"),
        "Q-4" => [
            Some("Final answer: 4"),
            Some("Final answer: 4"),
            Some("Final answer: 5"),
        ],
        "Q-5" => [
            Some("Final answer: 7"),
            Some("Final answer: 7"),
            Some("Final answer: 8"),
        ],
        "Q-6" => [
            Some("Final answer: 9"),
            Some("Final answer: 9"),
            Some("Final answer: 3"),
        ],
        "Q-7" => all("Final answer: Oslo"),
        "Q-8" => [Some("Final answer: Lima"), Some("Final answer: Lima"), None],
        _ => all("Final answer: 42"),
    }
}

/// Support 1: right, right, wrong, and right on 2 of 2 live seats; support 2/3: right,
/// wrong, wrong; one item without an expected answer.
const ITEMS: &str = r#"{"id":"paris","prompt":"Q-1","expect":"Paris"}
{"id":"rome","prompt":"Q-2","expect":"Rome"}
{"id":"canberra","prompt":"Q-3","expect":"Canberra"}
{"id":"four","prompt":"Q-4","expect_number":4}
{"id":"eight","prompt":"Q-5","expect_number":8}
{"id":"three","prompt":"Q-6","expect_number":3}
{"id":"oslo","prompt":"Q-7"}
{"id":"lima","prompt":"Q-8","expect":"Lima"}
"#;

fn panel() -> TestServer {
    panel_with_slow_m2(Duration::ZERO)
}

/// The panel, with seat m2 answering after `delay`.
fn panel_with_slow_m2(delay: Duration) -> TestServer {
    TestServer::start(move |req, _| {
        let body = req.json();
        let model = body["model"].as_str().unwrap_or_default().to_string();
        let seat: usize = model.trim_start_matches('m').parse().unwrap_or(0);
        let text = req.text();
        let tag = (1..=8)
            .map(|i| format!("Q-{i}"))
            .find(|t| text.contains(t.as_str()))
            .unwrap_or_default();
        if seat == 2 {
            std::thread::sleep(delay);
        }
        match answers(&tag)[seat] {
            Some(answer) => openai_ok(answer, 5, 3),
            None => openai_error(500, "overloaded", "server_error", None),
        }
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

fn finish(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `llm-consensus eval ITEMS ARGS` over the panel (metastable unless ARGS say otherwise;
/// every call awaited, so each seat's answer is in its report).
fn eval(sandbox: &Sandbox, server: &TestServer, args: &[&str]) -> Run {
    eval_closing(sandbox, server, &[&["--wait-all"], args].concat())
}

/// The same, with rounds closing early unless ARGS say otherwise.
fn eval_closing(sandbox: &Sandbox, server: &TestServer, args: &[&str]) -> Run {
    let config = sandbox.write(
        "providers.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            server.url()
        ),
    );
    let items = sandbox.write("items.jsonl", ITEMS);
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .arg("eval")
        .arg(&items)
        .args(["--seed", "1", "--retries", "0"])
        .arg("--config")
        .arg(&config)
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    finish(out)
}

fn eval_summary(sandbox: &Sandbox, files: &[&Path], args: &[&str]) -> Run {
    let out = sandbox
        .cmd()
        .arg("eval-summary")
        .args(files)
        .args(args)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    finish(out)
}

/// The row of `threshold` (at least), as (final, right, coverage, precision, run).
fn row(summary: &Value, threshold: f64) -> (u64, u64, f64, Option<f64>, bool) {
    let r = summary["risk_coverage"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| (r["threshold"].as_f64().unwrap() - threshold).abs() < 1e-9)
        .unwrap_or_else(|| panic!("no row {threshold}: {summary}"));
    (
        r["final"].as_u64().unwrap(),
        r["right"].as_u64().unwrap(),
        r["coverage"].as_f64().unwrap(),
        r["precision"].as_f64(),
        r["run"] == true,
    )
}

fn out_path(sandbox: &Sandbox) -> PathBuf {
    sandbox.path().join("out.jsonl")
}

#[test]
fn eval_reports_per_seat_accuracy_and_the_risk_coverage_of_final() {
    let sandbox = Sandbox::new();
    let server = panel();
    let run = eval(&sandbox, &server, &["--json"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let s = run.json();
    assert_eq!(s["accuracy"]["checked"], 7);
    assert_eq!(s["accuracy"]["matched"], 4);

    // m0 and m1 always side with the winner; m2 dissents on the 2/3 items (right once)
    // and has no answer for Q-8.
    let m0 = &s["seats"]["local:m0"];
    assert_eq!(
        (m0["checked"].as_u64(), m0["matched"].as_u64()),
        (Some(7), Some(4))
    );
    assert_eq!(
        (m0["answered"].as_u64(), m0["accuracy_answered"].as_f64()),
        (Some(7), Some(4.0 / 7.0))
    );
    let m2 = &s["seats"]["local:m2"];
    assert_eq!(
        (m2["checked"].as_u64(), m2["matched"].as_u64()),
        (Some(7), Some(4))
    );
    assert_eq!(m2["accuracy"].as_f64(), Some(4.0 / 7.0));
    assert_eq!(
        (m2["answered"].as_u64(), m2["accuracy_answered"].as_f64()),
        (Some(6), Some(4.0 / 6.0))
    );
    // No weights file in use: no estimate.
    assert!(m2.get("estimated").is_none(), "{m2}");

    let rc = &s["risk_coverage"];
    assert_eq!(rc["measure"], "support");
    assert_eq!(rc["parameter"], "beta_2");
    assert_eq!(rc["labeled"], 7);
    assert_eq!(rc["rows"].as_array().unwrap().len(), 11);
    // Every labeled item is FINAL up to 2/3, the four of support 1 above it.
    assert_eq!(row(&s, 0.5), (7, 4, 1.0, Some(4.0 / 7.0), false));
    assert_eq!(row(&s, 0.65), (7, 4, 1.0, Some(4.0 / 7.0), false));
    assert_eq!(row(&s, 0.7), (4, 3, 4.0 / 7.0, Some(0.75), false));
    assert_eq!(row(&s, 1.0), (4, 3, 4.0 / 7.0, Some(0.75), false));
    // The run's own beta_2 (0.8): the items the runs made FINAL.
    assert_eq!(row(&s, 0.8), (4, 3, 4.0 / 7.0, Some(0.75), true));
    assert_eq!(s["accuracy_final"]["checked"], 4);
    assert_eq!(s["accuracy_final"]["matched"], 3);
    // Not asked: no calibration.
    assert!(s.get("calibration").is_none(), "{s}");

    // A beta_2 off the grid is a row of its own; it changes which items are FINAL.
    let run = eval(&sandbox, &server, &["--json", "--beta2", "0.66"]);
    let s = run.json();
    assert_eq!(s["risk_coverage"]["rows"].as_array().unwrap().len(), 12);
    assert_eq!(row(&s, 0.66), (7, 4, 1.0, Some(4.0 / 7.0), true));
    assert_eq!(s["final"], 8);
}

#[test]
fn on_a_pipe_the_summary_prints_the_plain_table() {
    let sandbox = Sandbox::new();
    let server = panel();
    let run = eval(&sandbox, &server, &[]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let text = &run.stdout;
    for line in [
        "  seat local:m2: right on 4 of 7 (57.1%) labeled items, on 4 of 6 (66.7%) it answered\n",
        "  seat local:m0: right on 4 of 7 (57.1%) labeled items, on 4 of 7 (57.1%) it answered\n",
        "risk-coverage of FINAL over 7 labeled items: FINAL when the winner's support (share of the live seats' weight agreeing with it) reaches the threshold (beta_2):\n",
        "  beta_2     FINAL  right  coverage  precision\n",
        "  >=0.65         7      4    100.0%      57.1%\n",
        "  >=0.70         4      3     57.1%      75.0%\n",
        "  >=0.80         4      3     57.1%      75.0%  <- this run\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // No bars and no colour off a terminal.
    assert!(!text.contains('#') && !text.contains('\x1b'), "{text}");
}

#[test]
fn calibrate_prints_the_smallest_beta2_reaching_the_precision() {
    let sandbox = Sandbox::new();
    let server = panel();
    // 0.7: not reached at 2/3 (4 of 7), reached at 1 (3 of 4).
    let run = eval(&sandbox, &server, &["--json", "--calibrate", "0.7"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        run.json()["calibration"],
        json!({"beta2": 1.0, "target": 0.7, "precision": 0.75, "coverage": 4.0 / 7.0, "items": 7})
    );
    // 0.5: the lowest support observed, exactly.
    let run = eval(&sandbox, &server, &["--calibrate", "0.5"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        run.stdout.contains(
            "calibrated FINAL for precision 0.5: beta_2 0.6666666666666666 (FINAL on 7 of 7 labeled items, coverage 100.0%; 4 right, precision 57.1%)\n"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn calibrate_says_when_no_threshold_reaches_the_precision_and_exits_4() {
    let sandbox = Sandbox::new();
    let server = panel();
    let run = eval(&sandbox, &server, &["--json", "--calibrate", "0.9"]);
    assert_eq!(run.code, 4, "stderr: {}", run.stderr);
    assert_eq!(run.json()["calibration"], Value::Null);
    assert!(
        run.stderr.contains(
            "--calibrate 0.9: no beta_2 gives FINAL precision 0.9 on the 7 labeled items"
        ),
        "{}",
        run.stderr
    );
    let run = eval(&sandbox, &server, &["--calibrate", "0.9"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stdout.contains(
            "calibrated FINAL for precision 0.9: no beta_2 reaches it on the labeled items"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn eval_summary_gives_the_same_table_and_calibration_from_the_out_file() {
    let sandbox = Sandbox::new();
    let server = panel();
    let out = out_path(&sandbox);
    let run = eval(
        &sandbox,
        &server,
        &[
            "--json",
            "--calibrate",
            "0.7",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let live = run.json();
    let calls = server.count();
    std::fs::copy(&out, "/tmp/calshow/out.jsonl").unwrap();
    let again = eval_summary(&sandbox, &[&out], &["--json", "--calibrate", "0.7"]);
    assert_eq!(again.code, 0, "stderr: {}", again.stderr);
    let recorded = again.json();
    assert_eq!(recorded["risk_coverage"], live["risk_coverage"]);
    assert_eq!(recorded["calibration"], live["calibration"]);
    assert_eq!(recorded["seats"], live["seats"]);
    assert_eq!(recorded["calibration"]["beta2"], 1.0);
    // Counted from the file alone.
    assert_eq!(server.count(), calls);
    let miss = eval_summary(&sandbox, &[&out], &["--calibrate", "0.95"]);
    assert_eq!(miss.code, 4, "stderr: {}", miss.stderr);
}

#[test]
fn under_vote_the_table_thresholds_the_quorum_share() {
    let sandbox = Sandbox::new();
    let server = panel();
    let run = eval(
        &sandbox,
        &server,
        &["--json", "--strategy", "vote", "--calibrate", "0.7"],
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let s = run.json();
    assert_eq!(s["risk_coverage"]["measure"], "share");
    assert_eq!(s["risk_coverage"]["parameter"], "quorum_share");
    // The run's own rule, majority: more than half, a row of its own.
    let own: Vec<&Value> = s["risk_coverage"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["run"] == true)
        .collect();
    assert_eq!(own.len(), 1);
    assert_eq!(
        (&own[0]["threshold"], &own[0]["strict"]),
        (&json!(0.5), &json!(true))
    );
    assert_eq!(own[0]["final"], 7);
    assert_eq!(s["calibration"]["beta2"], 1.0);
}

#[test]
fn calibrate_errors_exit_2_before_any_call() {
    let sandbox = Sandbox::new();
    let server = panel();
    for (args, says) in [
        (
            &["--calibrate", "0"][..],
            "--calibrate 0: give the FINAL precision wanted",
        ),
        (
            &["--calibrate", "1.5"][..],
            "--calibrate 1.5: give the FINAL precision wanted",
        ),
        (
            &["--calibrate", "0.9", "--strategy", "bft"][..],
            "--calibrate: the bft strategy's FINAL counts votes",
        ),
    ] {
        let run = eval(&sandbox, &server, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    assert_eq!(server.count(), 0);

    // Recorded bft results have no threshold to calibrate, and say so.
    let out = out_path(&sandbox);
    let run = eval(
        &sandbox,
        &server,
        &[
            "--json",
            "--strategy",
            "bft",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.json()["risk_coverage"], Value::Null);
    assert!(
        run.json()["risk_coverage_note"]
            .as_str()
            .unwrap()
            .contains("attestations"),
        "{}",
        run.stdout
    );
    let again = eval_summary(&sandbox, &[&out], &["--calibrate", "0.9"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("--calibrate 0.9: nothing to calibrate: the verdict counts attestations"),
        "{}",
        again.stderr
    );
}

#[test]
fn runs_that_closed_early_are_flagged_and_calibrate_waits_for_every_seat() {
    let sandbox = Sandbox::new();
    // At beta_2 0.6, m0 and m1 agreeing make an item FINAL whatever m2 says: its slow
    // call is cancelled, and the support counts two seats only (2/2, not 2/3).
    let server = panel_with_slow_m2(Duration::from_millis(1500));
    let run = eval_closing(&sandbox, &server, &["--beta2", "0.6"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        run.stdout.contains(
            "  note: 7 of these runs closed early (calls not awaited): their support counts only the seats that answered"
        ),
        "{}",
        run.stdout
    );
    let out = out_path(&sandbox);
    let run = eval_closing(
        &sandbox,
        &server,
        &["--beta2", "0.6", "--json", "--out", out.to_str().unwrap()],
    );
    let s = run.json();
    assert_eq!(s["risk_coverage"]["closed_early"], 7);
    assert_eq!(row(&s, 1.0), (7, 4, 1.0, Some(4.0 / 7.0), false));
    // Calibrating from those results above their threshold warns that it may be low.
    let again = eval_summary(&sandbox, &[&out], &["--calibrate", "0.5"]);
    assert_eq!(again.code, 0, "stderr: {}", again.stderr);
    assert!(
        again.stderr.contains(
            "warning: --calibrate 0.5: 7 of the runs closed early (calls not awaited), so this threshold, above theirs, may be too low"
        ),
        "{}",
        again.stderr
    );

    // --calibrate awaits every call: nothing closes early, and nothing to warn about.
    let run = eval_closing(
        &sandbox,
        &server,
        &["--beta2", "0.6", "--json", "--calibrate", "0.7"],
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let s = run.json();
    assert_eq!(s["risk_coverage"]["closed_early"], 0);
    assert_eq!(s["seats"]["local:m2"]["answered"], 6);
    assert_eq!(row(&s, 0.7), (4, 3, 4.0 / 7.0, Some(0.75), false));
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

/// A weights file giving each seat of the panel weight 1.
fn equal_weights(sandbox: &Sandbox) -> PathBuf {
    let seat = json!({"accuracy": 0.5, "weight": 1.0, "items": 0});
    let file = json!({"version": 1, "method": "equal", "items": 0,
        "seats": {"local:m0": seat, "local:m1": seat, "local:m2": seat}});
    sandbox.write("weights.json", &file.to_string())
}

#[test]
fn learning_from_labels_differs_from_answers_and_the_summary_shows_the_estimate() {
    let sandbox = Sandbox::new();
    let server = panel();
    let file = sandbox.path().join("learned.json");
    let learned = |from: &str| {
        let args = [
            "--json",
            "--learn-weights",
            path(&file),
            "--learn-from",
            from,
        ];
        let run = eval(&sandbox, &server, &args);
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let weights: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        (run.json(), weights)
    };
    // m2 dissents on the three 2/3 items: the answers alone make it the least reliable
    // seat; the labels show it right on 4 of the 6 items it answered, m0 on 4 of 7.
    let (summary, answers) = learned("answers");
    let acc = |w: &Value, s: &str| w["seats"][s]["accuracy"].as_f64().unwrap();
    assert!(
        acc(&answers, "local:m2") < acc(&answers, "local:m0"),
        "{answers}"
    );
    assert!(answers["method"].as_str().unwrap().contains("no labels"));
    assert_eq!(
        summary["seats"]["local:m2"]["estimated"].as_f64(),
        Some(acc(&answers, "local:m2"))
    );
    let (summary, labels) = learned("labels");
    assert_eq!(acc(&labels, "local:m0"), 0.555556); // (4 + 1) / (7 + 2)
    assert_eq!(acc(&labels, "local:m2"), 0.625); // (4 + 1) / (6 + 2)
    assert_eq!(
        summary["seats"]["local:m0"]["estimated"].as_f64(),
        Some(0.555556)
    );
}

#[test]
fn calibrating_with_a_weights_file_writes_beta2_into_it_and_ask_uses_it() {
    let sandbox = Sandbox::new();
    let server = panel();
    let weights = equal_weights(&sandbox);
    let run = eval(
        &sandbox,
        &server,
        &["--weights", path(&weights), "--calibrate", "0.7"],
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("beta_2 1 written to {}", path(&weights))),
        "{}",
        run.stderr
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&weights).unwrap()).unwrap();
    assert_eq!(file["calibration"]["beta2"], 1.0);
    assert_eq!(file["calibration"]["target"], 0.7);
    assert_eq!(file["seats"]["local:m0"]["weight"], 1.0);

    // The next run with the file decides with that beta_2.
    let config = sandbox.write(
        "providers.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            server.url()
        ),
    );
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args([
            "ask",
            "--json",
            "--config",
            path(&config),
            "--weights",
            path(&weights),
        ])
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2", "Q-4"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let run = finish(out);
    let report = run.json();
    // The calibrated beta_2 replaces the default 0.8, and the report says where from.
    assert_eq!(report["params"]["beta_2"], 1.0, "{report}");
    assert_eq!(report["weights"]["beta_2"], 1.0);
    assert_eq!(
        report["weights"]["beta_2_from"],
        "the weights file's calibration"
    );
}

#[test]
fn calibrating_without_a_weights_file_writes_nothing() {
    let sandbox = Sandbox::new();
    let server = panel();
    let run = eval(&sandbox, &server, &["--calibrate", "0.7"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(!run.stderr.contains("written to"), "{}", run.stderr);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}
