//! Seat weights: `--weights FILE` (and `[consensus] weights`) for ask, eval and replay, a
//! category's weights, the calibrated beta_2 and its precedence, and `eval --learn-weights`
//! (from items without expected answers) written to a file that `--weights` accepts.
//!
//! The panel is three scripted seats: `a` answers Paris, `b` and `c` answer Lyon. With
//! equal weights Lyon wins; a file weighing `a` 5, `b` 1 and `c` 0 makes Paris win.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::*;

const PANEL: &str = "\
[[participants]]\nprovider = \"mock\"\nname = \"a\"\nscript = [ { output = \"Final answer: Paris\" } ]\n\
[[participants]]\nprovider = \"mock\"\nname = \"b\"\nscript = [ { output = \"Final answer: Lyon\" } ]\n\
[[participants]]\nprovider = \"mock\"\nname = \"c\"\nscript = [ { output = \"Final answer: Lyon\" } ]\n";

fn seat(weight: f64) -> Value {
    json!({ "accuracy": 0.5, "weight": weight, "items": 10 })
}

/// A weights file for seats a, b, c.
fn weights(a: f64, b: f64, c: f64) -> Value {
    json!({
        "version": 1,
        "method": "by hand",
        "items": 10,
        "seats": { "a": seat(a), "b": seat(b), "c": seat(c) },
    })
}

fn write_json(sandbox: &Sandbox, name: &str, value: &Value) -> PathBuf {
    sandbox.write(name, &serde_json::to_string_pretty(value).unwrap())
}

/// `llm-consensus ARGS` in the sandbox: (exit code, stdout, stderr).
fn run(sandbox: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = sandbox.cmd().args(args).output().unwrap();
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `ask` with the panel, seed 1, and `args`; the JSON result.
fn ask(sandbox: &Sandbox, args: &[&str]) -> (i32, Value, String) {
    let config = sandbox.write("providers.toml", PANEL);
    let out = sandbox
        .cmd()
        .args(["ask", "--no-log", "--seed", "1", "--json", "--config"])
        .arg(&config)
        .args(args)
        .arg("Capital of France?")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().expect("exited"),
        value,
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn seat_weights(report: &Value) -> Vec<f64> {
    report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["weight"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_weights_file_turns_the_decision_in_vote_and_metastable() {
    let sandbox = Sandbox::new();
    let file = write_json(&sandbox, "w.json", &weights(5.0, 1.0, 0.0));
    for strategy in ["vote", "metastable"] {
        let (code, equal, _) = ask(&sandbox, &["--strategy", strategy]);
        assert_eq!(equal["answer"], "Lyon", "{strategy}: {equal}");
        assert!(
            equal.get("weights").is_none(),
            "no weights field without a file"
        );
        // Equal weights: a vote is final at 2 of 3; metastable needs 80%.
        assert_eq!(code, if strategy == "vote" { 0 } else { 1 }, "{strategy}");

        let (code, weighted, stderr) = ask(
            &sandbox,
            &["--strategy", strategy, "--weights", path(&file)],
        );
        assert_eq!(code, 0, "{strategy}: {stderr}");
        assert_eq!(weighted["status"], "final", "{strategy}");
        assert_eq!(weighted["answer"], "Paris", "{strategy}: {weighted}");
        assert_eq!(weighted["winner"], "a");
        assert_eq!(seat_weights(&weighted), [5.0, 1.0, 0.0]);
        let w = &weighted["weights"];
        assert_eq!(w["file"], path(&file));
        assert_eq!(w["method"], "by hand");
        assert_eq!(w["beta_2_from"], "the default");
        assert_eq!(
            w["seats"][2],
            json!({ "name": "c", "configured": 1.0, "learned": 0.0 })
        );
        // Paris holds 5 of the live weight 6.
        let support = weighted["participants"][0]["support"].as_f64().unwrap();
        assert!((support - 5.0 / 6.0).abs() < 1e-9, "{support}");
    }
}

#[test]
fn the_learned_weight_multiplies_the_configured_one() {
    let sandbox = Sandbox::new();
    // b is configured at 3: 3 × 1 outweighs a's 1 × 2 (Lyon: 3 + 0, Paris: 2).
    let panel = PANEL.replacen("name = \"b\"\n", "name = \"b\"\nweight = 3\n", 1);
    let config = sandbox.write("panel.toml", &panel);
    let file = write_json(&sandbox, "w.json", &weights(2.0, 1.0, 0.0));
    let out = sandbox
        .cmd()
        .args([
            "ask",
            "--no-log",
            "--seed",
            "1",
            "--json",
            "--strategy",
            "vote",
        ])
        .args(["--config", path(&config), "--weights", path(&file), "Q?"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "Lyon", "{report}");
    assert_eq!(seat_weights(&report), [2.0, 3.0, 0.0]);
    assert_eq!(report["weights"]["seats"][1]["configured"], 3.0);
}

#[test]
fn the_text_report_and_the_plan_name_the_weights() {
    let sandbox = Sandbox::new();
    let config = sandbox.write("providers.toml", PANEL);
    let file = write_json(&sandbox, "w.json", &weights(5.0, 1.0, 0.0));
    let text = |extra: &[&str]| {
        let out = sandbox
            .cmd()
            .args(["ask", "--no-log", "--seed", "1", "--config", path(&config)])
            .args(extra)
            .arg("Q?")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let line = format!(
        "weights {} (by hand): a 5, b 1, c 0; beta_2 0.8 from the default",
        path(&file)
    );
    assert!(text(&["--weights", path(&file)]).contains(&line));
    assert!(!text(&[]).contains("weights "));
    let plan = text(&["--weights", path(&file), "--dry-run"]);
    assert!(plan.contains(&line), "{plan}");
    let verbose = sandbox
        .cmd()
        .args([
            "ask",
            "--no-log",
            "--seed",
            "1",
            "-v",
            "--config",
            path(&config),
        ])
        .args(["--weights", path(&file), "Q?"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(verbose.stderr).unwrap();
    assert!(stderr.contains(&line), "{stderr}");
}

#[test]
fn a_file_that_does_not_fit_the_panel_is_exit_2_naming_the_seat_and_the_file() {
    let sandbox = Sandbox::new();
    let mut missing = weights(1.0, 1.0, 1.0);
    missing["seats"].as_object_mut().unwrap().remove("c");
    let mut extra = weights(1.0, 1.0, 1.0);
    extra["seats"]["zed"] = seat(1.0);
    let mut version = weights(1.0, 1.0, 1.0);
    version["version"] = json!(7);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "missing.json",
            serde_json::to_string(&missing).unwrap(),
            vec!["does not weigh seat c of the panel (it weighs: a, b)"],
        ),
        (
            "extra.json",
            serde_json::to_string(&extra).unwrap(),
            vec!["weighs seat zed, who is not in the panel (its seats: a, b, c)"],
        ),
        (
            "bad.json",
            "{\"version\": 1,\n \"seats\": {\"a\": }}".to_string(),
            vec!["invalid JSON at line 2, column 17: expected value"],
        ),
        (
            "version.json",
            serde_json::to_string(&version).unwrap(),
            vec![
                "version 7 is not the version this build reads (1)",
                "--learn-weights",
            ],
        ),
        (
            "negative.json",
            serde_json::to_string(&weights(1.0, -0.5, 1.0)).unwrap(),
            vec!["seats.b.weight must be between 0 and 1000000, got -0.5"],
        ),
        (
            "zero.json",
            serde_json::to_string(&weights(0.0, 0.0, 0.0)).unwrap(),
            vec!["every seat of seats weighs 0"],
        ),
    ];
    for (name, contents, wanted) in cases {
        let file = sandbox.write(name, &contents);
        let (code, report, stderr) = ask(&sandbox, &["--weights", path(&file)]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert_eq!(report, Value::Null, "{name}: nothing on stdout");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(stderr.contains(name), "{name}: names the file: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{name}: wants {w:?}: {stderr}");
        }
    }
    let (code, _, stderr) = ask(&sandbox, &["--weights", "absent.json"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the weights file absent.json"),
        "{stderr}"
    );
}

#[test]
fn category_picks_the_file_s_weights_for_that_category() {
    let sandbox = Sandbox::new();
    let mut file = weights(5.0, 1.0, 0.0);
    file["categories"] = json!({ "geo": { "a": seat(0.1), "b": seat(1.0), "c": seat(1.0) } });
    let file = write_json(&sandbox, "w.json", &file);
    let w = path(&file);
    let (_, overall, _) = ask(&sandbox, &["--strategy", "vote", "--weights", w]);
    assert_eq!(overall["answer"], "Paris");
    assert!(overall["weights"].get("category").is_none());
    let (code, geo, _) = ask(
        &sandbox,
        &["--strategy", "vote", "--weights", w, "--category", "geo"],
    );
    assert_eq!(code, 0);
    assert_eq!(geo["answer"], "Lyon");
    assert_eq!(geo["weights"]["category"], "geo");
    assert_eq!(seat_weights(&geo), [0.1, 1.0, 1.0]);

    let (code, _, stderr) = ask(&sandbox, &["--weights", w, "--category", "law"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--category law: the weights file") && stderr.contains("(it has: geo)"),
        "{stderr}"
    );
    let (code, _, stderr) = ask(&sandbox, &["--category", "geo"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("give --weights FILE"), "{stderr}");
}

/// Equal weights with a calibrated beta_2 of 0.6: Lyon's 67% is FINAL under it and not
/// under the default 0.8.
#[test]
fn the_calibrated_beta2_decides_final_unless_one_is_set_where_it_ranks_higher() {
    let sandbox = Sandbox::new();
    let mut file = weights(1.0, 1.0, 1.0);
    file["calibration"] = json!({
        "beta2": 0.6, "target": 0.9, "precision": 0.92, "coverage": 0.5, "items": 40
    });
    let file = write_json(&sandbox, "cal.json", &file);
    let w = path(&file);
    let status = |report: &Value| {
        (
            report["status"].as_str().unwrap().to_string(),
            report["params"]["beta_2"].as_f64().unwrap(),
            report["weights"]["beta_2_from"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let (code, report, _) = ask(&sandbox, &["--weights", w]);
    assert_eq!(code, 0);
    let from_file = "the weights file's calibration".to_string();
    assert_eq!(status(&report), ("final".into(), 0.6, from_file.clone()));
    let (code, report, _) = ask(&sandbox, &["--weights", w, "--beta2", "0.8"]);
    assert_eq!(code, 1);
    assert_eq!(
        status(&report),
        ("no_consensus".into(), 0.8, "--beta2".into())
    );

    // In the config: a file named by --weights beats the key beta_2; a file named by the
    // key `weights` does not.
    let keyed = |weights_key: bool| {
        let mut toml = "[consensus]\nbeta_2 = 0.8\n".to_string();
        if weights_key {
            toml += "weights = \"cal.json\"\n";
        }
        let config = sandbox.write("keyed.toml", &(toml + PANEL));
        let mut cmd = sandbox.cmd();
        cmd.args(["ask", "--no-log", "--seed", "1", "--json"])
            .args(["--config", path(&config)]);
        if !weights_key {
            cmd.args(["--weights", w]);
        }
        let out = cmd.arg("Q?").output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(status(&keyed(false)), ("final".into(), 0.6, from_file));
    assert_eq!(
        status(&keyed(true)),
        ("no_consensus".into(), 0.8, "[consensus] beta_2".into())
    );
}

#[test]
fn the_config_key_is_relative_to_the_config_file() {
    let sandbox = Sandbox::new();
    write_json(&sandbox, "panels/w.json", &weights(5.0, 1.0, 0.0));
    let config = sandbox.write(
        "panels/panel.toml",
        &format!("[consensus]\nweights = \"w.json\"\nstrategy = \"vote\"\n{PANEL}"),
    );
    let out = sandbox
        .cmd()
        .args(["ask", "--no-log", "--seed", "1", "--json"])
        .args(["--config", path(&config), "Q?"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "Paris", "{report}");
    assert_eq!(
        report["weights"]["file"],
        path(&sandbox.path().join("panels/w.json"))
    );
}

/// `a` (weight 1) fails; `b` and `c` answer but weigh 0: nothing counts, nothing is final.
#[test]
fn when_every_seat_that_answered_weighs_0_the_run_is_not_final_and_says_why() {
    let sandbox = Sandbox::new();
    let panel = PANEL.replacen(
        "{ output = \"Final answer: Paris\" }",
        "{ ok = false, error = \"scripted outage\" }",
        1,
    );
    let config = sandbox.write("failing.toml", &panel);
    let file = write_json(&sandbox, "w.json", &weights(1.0, 0.0, 0.0));
    for strategy in ["metastable", "vote", "bft"] {
        let out = sandbox
            .cmd()
            .args([
                "ask",
                "--no-log",
                "--seed",
                "1",
                "--json",
                "--strategy",
                strategy,
            ])
            .args(["--config", path(&config), "--weights", path(&file), "Q?"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains("NaN") && !text.contains("null,null"),
            "{text}"
        );
        let report: Value = serde_json::from_str(&text).unwrap();
        let code = out.status.code().unwrap();
        assert!(code == 1 || code == 3, "{strategy}: {code}");
        assert_ne!(report["status"], "final", "{strategy}");
        assert_eq!(
            report["warnings"][0],
            "every participant that answered weighs 0 in the weights file: no answer counted as evidence",
            "{strategy}"
        );
    }
    let out = sandbox
        .cmd()
        .args(["ask", "--no-log", "--seed", "1", "--config", path(&config)])
        .args(["--weights", path(&file), "Q?"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("warning: every participant that answered weighs 0"),
        "{text}"
    );
}

#[test]
fn strategies_that_count_one_per_seat_say_the_weights_do_not_enter() {
    let sandbox = Sandbox::new();
    let file = write_json(&sandbox, "w.json", &weights(5.0, 1.0, 0.0));
    for strategy in ["rank", "leader", "hanzo"] {
        let (_, report, stderr) = ask(
            &sandbox,
            &["--strategy", strategy, "--weights", path(&file)],
        );
        let wanted = format!(
            "--weights: {strategy} counts one per seat, so the weights do not enter its decision (metastable, vote and bft use them)"
        );
        assert_eq!(
            report["warnings"][0],
            wanted.as_str(),
            "{strategy}: {stderr}"
        );
    }
    let (_, report, _) = ask(&sandbox, &["--strategy", "bft", "--weights", path(&file)]);
    assert!(report.get("warnings").is_none(), "{report}");
}

const ITEMS: &str = "\
{\"id\": \"q1\", \"prompt\": \"Capital of France?\", \"category\": \"geo\"}\n\
{\"id\": \"q2\", \"prompt\": \"Largest city of the Rhône?\"}\n";

fn eval(sandbox: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let config = sandbox.write("providers.toml", PANEL);
    let items = sandbox.write("items.jsonl", ITEMS);
    let mut full = vec!["eval", path(&items), "--no-log", "--config", path(&config)];
    full.extend(["--strategy", "vote", "--seed", "1", "--jobs", "1"]);
    full.extend(args);
    run(sandbox, &full)
}

#[test]
fn eval_learns_weights_without_expected_answers_and_they_round_trip() {
    let sandbox = Sandbox::new();
    let learned = sandbox.path().join("learned.json");
    let (code, _, stderr) = eval(&sandbox, &["--learn-weights", path(&learned)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("weights of 3 seat(s) learned from 2 item(s) (one-coin Dawid-Skene EM")
            && stderr.contains(&format!(
                "no labels; weight ln(p/(1-p))) written to {}",
                path(&learned)
            )),
        "{stderr}"
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&learned).unwrap()).unwrap();
    assert_eq!(file["version"], 1);
    assert_eq!(file["items"], 2);
    let names: Vec<&String> = file["seats"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["a", "b", "c"]);

    // The file is accepted by ask and eval.
    let (code, report, stderr) = ask(&sandbox, &["--weights", path(&learned)]);
    assert!(code == 0 || code == 1, "{stderr}");
    assert_eq!(report["weights"]["file"], path(&learned));
    let (code, _, stderr) = eval(&sandbox, &["--weights", path(&learned)]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn eval_learning_with_resume_counts_the_items_already_done_and_eval_summary_learns_too() {
    let sandbox = Sandbox::new();
    let out = sandbox.path().join("out.jsonl");
    let first = sandbox.write("first.jsonl", ITEMS.lines().next().unwrap());
    let config = sandbox.write("providers.toml", PANEL);
    let (code, _, stderr) = run(
        &sandbox,
        &[
            "eval",
            path(&first),
            "--no-log",
            "--config",
            path(&config),
            "--out",
            path(&out),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // --resume with no result file yet starts one.
    let fresh = sandbox.path().join("fresh.jsonl");
    let learned = sandbox.path().join("w.json");
    let (code, _, stderr) = eval(
        &sandbox,
        &[
            "--out",
            path(&fresh),
            "--resume",
            "--learn-weights",
            path(&learned),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("learned from 2 item(s)"), "{stderr}");
    let (_, _, stderr) = eval(
        &sandbox,
        &[
            "--out",
            path(&out),
            "--resume",
            "--learn-weights",
            path(&learned),
        ],
    );
    assert!(stderr.contains("learned from 2 item(s)"), "{stderr}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&learned).unwrap()).unwrap();
    assert_eq!(file["items"], 2);

    let merged = sandbox.path().join("merged.json");
    let (code, _, stderr) = run(
        &sandbox,
        &[
            "eval-summary",
            path(&out),
            path(&out),
            "--learn-weights",
            path(&merged),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("learned from 2 item(s)"), "{stderr}");
    assert!(merged.is_file());

    // Results of another panel are not learned from together: exit 2 before any call.
    let two = sandbox.write(
        "two.toml",
        &PANEL[..PANEL.rfind("[[participants]]").unwrap()],
    );
    let other = sandbox.path().join("other.jsonl");
    run(
        &sandbox,
        &[
            "eval",
            path(&first),
            "--no-log",
            "--config",
            path(&two),
            "--out",
            path(&other),
        ],
    );
    let (code, _, stderr) = eval(
        &sandbox,
        &[
            "--out",
            path(&other),
            "--resume",
            "--learn-weights",
            path(&learned),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("item q1 was run by another panel (a, b) than this run's (a, b, c)"),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        &sandbox,
        &[
            "eval-summary",
            path(&out),
            path(&other),
            "--learn-weights",
            path(&merged),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("another panel (a, b) than the first result's (a, b, c)")
            && stderr.contains("learn weights from one panel's results"),
        "{stderr}"
    );
}

#[test]
fn eval_applies_an_item_s_category_weights_and_the_overall_ones_otherwise() {
    let sandbox = Sandbox::new();
    let mut file = weights(5.0, 1.0, 0.0);
    file["categories"] = json!({ "geo": { "a": seat(0.1), "b": seat(1.0), "c": seat(1.0) } });
    let file = write_json(&sandbox, "w.json", &file);
    let out = sandbox.path().join("out.jsonl");
    let (code, _, stderr) = eval(&sandbox, &["--weights", path(&file), "--out", path(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_id = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap()["report"].clone();
    let geo = by_id("q1");
    assert_eq!(geo["answer"], "Lyon");
    assert_eq!(geo["weights"]["category"], "geo");
    let other = by_id("q2");
    assert_eq!(other["answer"], "Paris");
    assert!(other["weights"].get("category").is_none());
}

#[test]
fn eval_with_a_file_that_does_not_fit_makes_no_call() {
    let sandbox = Sandbox::new();
    let server = TestServer::always(openai_ok("Final answer: Paris", 1, 1));
    let config = sandbox.write(
        "http.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            server.url()
        ),
    );
    let items = sandbox.write("items.jsonl", ITEMS);
    let file = write_json(&sandbox, "w.json", &weights(1.0, 1.0, 1.0));
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", "sk-test-weights")
        .args(["eval", path(&items), "--no-log", "--config", path(&config)])
        .args(["-m", "local:m0", "-m", "local:m1", "--weights", path(&file)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("does not weigh seat"), "{stderr}");
    assert_eq!(server.count(), 0);
}

#[test]
fn replay_re_decides_a_recorded_run_with_a_weights_file_and_no_call() {
    let sandbox = Sandbox::new();
    let transcript = sandbox.path().join("run.json");
    let (code, recorded, _) = ask(
        &sandbox,
        &["--strategy", "vote", "--transcript", path(&transcript)],
    );
    assert_eq!((code, recorded["answer"].as_str()), (0, Some("Lyon")));
    let mut file = weights(5.0, 1.0, 0.0);
    file["calibration"] = json!({
        "beta2": 0.9, "target": 0.9, "precision": 0.9, "coverage": 0.4, "items": 40
    });
    let file = write_json(&sandbox, "w.json", &file);
    let (code, stdout, stderr) = run(
        &sandbox,
        &[
            "replay",
            path(&transcript),
            "--json",
            "--weights",
            path(&file),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let replayed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(replayed["answer"], "Paris");
    assert_eq!(seat_weights(&replayed), [5.0, 1.0, 0.0]);
    assert_eq!(replayed["params"]["beta_2"], 0.9);
    assert_eq!(replayed["usage"]["calls"], 3);

    // The replayed report records its weights: replaying it keeps them.
    let again = sandbox.write("replayed.json", &stdout);
    let (code, stdout, stderr) = run(&sandbox, &["replay", path(&again), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let kept: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(kept["answer"], "Paris");
    assert_eq!(kept["weights"]["file"], path(&file));

    let (code, _, stderr) = run(
        &sandbox,
        &["replay", path(&transcript), "--category", "geo"],
    );
    assert_eq!(code, 2, "--category needs --weights: {stderr}");
}

#[test]
fn learning_from_labels_needs_items_with_expected_answers() {
    let sandbox = Sandbox::new();
    let learned = sandbox.path().join("learned.json");
    let args = ["--learn-weights", path(&learned), "--learn-from", "labels"];
    let (code, _, stderr) = eval(&sandbox, &args);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--learn-from labels: no item has an expected answer"),
        "{stderr}"
    );
    assert!(!learned.exists());
}
