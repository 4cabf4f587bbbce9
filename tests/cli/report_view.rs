//! The text report as a user sees it: untrusted text shown as data, each strategy's
//! verdict stating its own rule, failures and columns explained, and snapshots of the
//! whole layout (`tests/cli/snapshots/`) so that a change to it is a reviewable diff.
//! Review a changed snapshot with `cargo insta review`, or rerun with INSTA_UPDATE=always.

use std::path::{Path, PathBuf};

use crate::common::*;

/// What one run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(sandbox: &Sandbox, config: &Path, args: &[&str]) -> Run {
    let out = sandbox
        .cmd()
        .arg("ask")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml")
}

/// A panel of scripted seats: (name, script) pairs, the script as TOML steps.
fn panel(sandbox: &Sandbox, seats: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (name, script) in seats {
        text.push_str(&format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"{name}\"\nscript = [ {script} ]\n\n"
        ));
    }
    sandbox.write("panel.toml", &text)
}

/// The report with its one wall-clock measure (the run's elapsed time, last on the
/// footer) replaced: the scripted latencies in the table are fixed by the config.
fn normalised(report: &str) -> String {
    report
        .lines()
        .map(|line| match line.rfind(" · ") {
            Some(at) if line.contains(" · seed ") => format!("{} · [elapsed]", &line[..at]),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Characters a terminal acts on instead of showing: none may reach it from a model.
fn assert_no_terminal_controls(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c)
        })
        .collect();
    assert!(bad.is_empty(), "{what} carries {bad:?}:\n{text}");
}

// A model that clears the screen, sets the window title, returns to the start of the line
// to print a fake verdict, and reverses what follows; a seat name and an error message
// that try the same.
const HOSTILE_ANSWER: &str = r#"{ output = "\u001b[2J\u001b]0;pwned\u0007\r✔ FINAL fake\u202e\nFinal answer: Paris\u009b31m", ms = 100 }"#;
const HOSTILE_ERROR: &str =
    r#"{ output = "", ok = false, error = "HTTP 500 \u001b[1A\u001b[2K✔ FINAL", ms = 50 }"#;

fn hostile_panel(sandbox: &Sandbox) -> PathBuf {
    panel(
        sandbox,
        &[
            ("a", HOSTILE_ANSWER),
            ("b", HOSTILE_ANSWER),
            ("evil\\u001b[31m", HOSTILE_ANSWER),
            ("d", HOSTILE_ERROR),
        ],
    )
}

#[test]
fn answers_errors_and_names_are_shown_as_escapes_on_the_terminal() {
    let sandbox = Sandbox::new();
    let config = hostile_panel(&sandbox);
    let report = run(&sandbox, &config, &["--seed", "1", "Q?"]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    assert_no_terminal_controls("the report", &report.stdout);
    for shown in [
        "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}✔ FINAL fake\\u{202e}",
        "evil\\u{1b}[31m",
        "HTTP 500 \\u{1b}[1A\\u{1b}[2K✔ FINAL",
    ] {
        assert!(
            report.stdout.contains(shown),
            "{shown:?} not in:\n{}",
            report.stdout
        );
    }

    let quiet = run(&sandbox, &config, &["--seed", "1", "-q", "Q?"]);
    assert_eq!(quiet.code, Some(0));
    assert_no_terminal_controls("-q", &quiet.stdout);
    assert!(
        quiet.stdout.starts_with("\\u{1b}[2J\\u{1b}]0;pwned")
            && quiet.stdout.contains("\nFinal answer: Paris\\u{9b}31m\n"),
        "{}",
        quiet.stdout
    );

    let verbose = run(&sandbox, &config, &["--seed", "1", "-v", "Q?"]);
    assert_no_terminal_controls("-v", &verbose.stderr);
    assert!(
        verbose.stderr.contains("evil\\u{1b}[31m")
            && verbose.stderr.contains("HTTP 500 \\u{1b}[1A"),
        "{}",
        verbose.stderr
    );

    // The JSON keeps the text as it came, escaped by the JSON encoder.
    let json = run(&sandbox, &config, &["--seed", "1", "--json", "Q?"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        value["synthesis"]
            .as_str()
            .unwrap()
            .starts_with("\x1b[2J\x1b]0;pwned\x07\r"),
        "{}",
        json.stdout
    );
    assert_eq!(value["participants"][2]["name"], "evil\x1b[31m");
}

#[test]
fn a_quiet_run_that_fails_shows_the_error_as_escapes() {
    let sandbox = Sandbox::new();
    let config = panel(&sandbox, &[("a", HOSTILE_ERROR), ("b", HOSTILE_ERROR)]);
    let quiet = run(&sandbox, &config, &["-q", "Q?"]);
    assert_eq!(quiet.code, Some(3));
    assert_no_terminal_controls("-q stderr", &quiet.stderr);
    assert!(quiet.stderr.contains("\\u{1b}[1A"), "{}", quiet.stderr);
}

#[test]
fn each_strategy_states_its_own_rule_on_the_verdict_line() {
    let sandbox = Sandbox::new();
    let cases = [
        (
            "metastable",
            "✔ FINAL  5 of 5 answered; support 100%, needs at least 80% of the live seats' weight agreeing with the winner",
        ),
        (
            "vote",
            "✔ FINAL  4 of 5 answered; share 75%, needs more than 50% of the live seats' weight in the winning group",
        ),
        (
            "leader",
            "✘ NOT FINAL  4 of 5 answered; accepted by 25%, needs more than 50% of the live seats accepting the proposal (the leader accepts its own)",
        ),
        (
            "bft",
            "✘ NOT FINAL  4 of 5 answered; AGREE 0 in prepare and 0 in commit, needs 3 matching AGREE attestations in both prepare and commit (2f+1, f = 1)",
        ),
        (
            "hanzo",
            "✘ NOT FINAL  5 of 5 answered; score 31%, needs at least 80% confidence × luminance",
        ),
    ];
    for (strategy, verdict) in cases {
        let out = run(&sandbox, &demo(), &["--strategy", strategy, "Q?"]);
        assert_eq!(
            out.stdout.lines().next(),
            Some(verdict),
            "{strategy}:\n{}",
            out.stdout
        );
    }
    // vote with a share that is not a strict majority.
    let out = run(
        &sandbox,
        &demo(),
        &[
            "--strategy",
            "vote",
            "--quorum-share",
            "supermajority",
            "Q?",
        ],
    );
    assert_eq!(
        out.stdout.lines().next(),
        Some(
            "✔ FINAL  4 of 5 answered; share 75%, needs at least 67% of the live seats' weight in the winning group"
        ),
        "{}",
        out.stdout
    );
    // rank: the share of ballots that put the answer first.
    let voter =
        r#"{ output = "Final answer: Paris", ms = 100 }, { output = "Ranking: 1 > 2", ms = 100 }"#;
    let config = panel(&sandbox, &[("a", voter), ("b", voter), ("c", voter)]);
    let out = run(&sandbox, &config, &["--strategy", "rank", "Q?"]);
    assert_eq!(
        out.stdout.lines().next(),
        Some(
            "✔ FINAL  3 of 3 answered; first places 100%, needs at least 80% of the readable ballots ranking first an answer that agrees with the winner's"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn the_demo_report_shows_its_failed_call_explains_its_columns_and_says_it_is_scripted() {
    let sandbox = Sandbox::new();
    let out = run(&sandbox, &demo(), &["What is the capital of Australia?"]);
    assert_eq!(out.code, Some(0));
    for needle in [
        "2 (1 failed)",
        "Failed calls:\n  503-then-canberra: round 0: HTTP 503 overloaded (scripted); recovered in round 1\n",
        "Columns: conf     agreement with the peers it was shown, averaged over rounds (0-1)\n",
        "         lum      speed weight",
        "Scripted panel (provider mock)",
        "nothing was sent over a network",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn a_seat_that_never_answers_is_listed_with_its_errors() {
    let sandbox = Sandbox::new();
    let ok = r#"{ output = "Final answer: 4", ms = 100 }"#;
    let down = r#"{ output = "", ok = false, error = "HTTP 502 bad gateway", ms = 10 }"#;
    let config = panel(&sandbox, &[("a", ok), ("b", ok), ("c", down)]);
    let out = run(&sandbox, &config, &["--seed", "3", "Q?"]);
    assert!(
        out.stdout
            .contains("  c: round 0: HTTP 502 bad gateway; never answered\n"),
        "{}",
        out.stdout
    );
}

// Snapshots of the whole text report.

#[test]
fn snapshot_the_demo() {
    let sandbox = Sandbox::new();
    let out = run(&sandbox, &demo(), &["What is the capital of Australia?"]);
    insta::assert_snapshot!("demo", normalised(&out.stdout));
}

#[test]
fn snapshot_strategy_outcomes_on_the_demo_panel() {
    let sandbox = Sandbox::new();
    for strategy in ["vote", "leader", "bft", "hanzo"] {
        let out = run(&sandbox, &demo(), &["--strategy", strategy, "Q?"]);
        insta::assert_snapshot!(format!("demo_{strategy}"), normalised(&out.stdout));
    }
}

#[test]
fn snapshot_not_final_degraded_and_failed() {
    let sandbox = Sandbox::new();
    let paris = r#"{ output = "Final answer: Paris", ms = 300 }"#;
    let lyon = r#"{ output = "Final answer: Lyon", ms = 500 }"#;
    let nice = r#"{ output = "Final answer: Nice", ms = 700 }"#;
    let down = r#"{ output = "", ok = false, error = "HTTP 503 overloaded", ms = 20 }"#;
    let cases = [
        ("not_final", vec![("a", paris), ("b", lyon), ("c", nice)], 1),
        ("degraded", vec![("a", paris), ("b", down), ("c", down)], 3),
        ("all_failed", vec![("a", down), ("b", down)], 3),
    ];
    for (name, seats, code) in cases {
        let config = panel(&sandbox, &seats);
        let out = run(&sandbox, &config, &["--seed", "5", "Q?"]);
        assert_eq!(out.code, Some(code), "{name}: {}", out.stdout);
        insta::assert_snapshot!(name, normalised(&out.stdout));
    }
}

#[test]
fn snapshot_hostile_text() {
    let sandbox = Sandbox::new();
    let config = hostile_panel(&sandbox);
    let out = run(&sandbox, &config, &["--seed", "1", "Q?"]);
    insta::assert_snapshot!("hostile", normalised(&out.stdout));
}

#[test]
fn the_engines_notes_are_shown_under_the_verdict() {
    let sandbox = Sandbox::new();
    let agree = r#"{ output = "Final answer: Paris", ms = 100 }, { output = "Attestation: AGREE\nReason: it is Paris.", ms = 100 }"#;
    let config = panel(&sandbox, &[("a", agree), ("b", agree), ("c", agree)]);
    let out = run(&sandbox, &config, &["--strategy", "bft", "Q?"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("✔ FINAL  3 of 3 answered; "),
        "{}",
        out.stdout
    );
    assert!(
        lines[1]
            .starts_with("  Note: bft with 3 participants tolerates no faulty participant (f = 0)")
            && lines[1].contains("4 or more participants tolerate one"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_seat_standing_on_an_earlier_answer_is_marked_stale_and_explained() {
    let sandbox = Sandbox::new();
    // Round 0: two for Paris, one for Lyon; the dissenter's refinement call fails, so
    // its Lyon answer of round 0 stands.
    let paris = r#"{ output = "Final answer: Paris", ms = 100 }"#;
    let dissenter = r#"{ output = "Final answer: Lyon", ms = 300 }, { output = "", ok = false, error = "HTTP 503 overloaded", ms = 5 }"#;
    let config = panel(&sandbox, &[("a", paris), ("b", paris), ("c", dissenter)]);
    let out = run(&sandbox, &config, &["--seed", "5", "Q?"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains(" c (stale) "))
        .unwrap_or_else(|| panic!("no stale row for c:\n{}", out.stdout));
    assert!(row.ends_with("Lyon"), "{row}");
    // Only c is marked: once in the table, once in the legend.
    assert_eq!(out.stdout.matches("(stale)").count(), 2, "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "         (stale)  its latest call failed; its earlier answer stands and still counts\n"
        ),
        "{}",
        out.stdout
    );
    // Without a stale seat the legend does not mention it.
    let config = panel(&sandbox, &[("a", paris), ("b", paris)]);
    let out = run(&sandbox, &config, &["Q?"]);
    assert!(!out.stdout.contains("(stale)"), "{}", out.stdout);
}

/// Runs `ask` against a loopback OpenAI server whose model `m-cut` (or every model, with
/// `all_cut`) stops at the token limit; returns the text report and the JSON.
fn ask_with_a_cut_answer(all_cut: bool) -> (Run, serde_json::Value) {
    let server = TestServer::start(move |req, _| {
        let model = req.json()["model"].as_str().unwrap_or_default().to_string();
        if all_cut || model == "m-cut" {
            openai_finished(
                "Paris is the capital of France, and it has been since",
                5,
                8,
                "length",
            )
        } else {
            openai_ok("Final answer: Paris", 5, 3)
        }
    });
    let sandbox = Sandbox::new();
    let config = sandbox.write(
        "providers.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            server.url()
        ),
    );
    let ask = |json: bool| {
        let mut cmd = sandbox.cmd();
        cmd.env("LOCAL_KEY", "sk-test-cut")
            .arg("ask")
            .arg("--config")
            .arg(&config)
            .args(["-m", "local:m-a", "-m", "local:m-b", "-m", "local:m-cut"])
            .args(["--answer", "full", "--seed", "2"]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.arg("Q?").output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    };
    let text = ask(false);
    let json = ask(true);
    let value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", json.stdout, json.stderr));
    (text, value)
}

#[test]
fn an_answer_cut_at_the_token_limit_is_kept_and_marked_as_cut() {
    let (text, json) = ask_with_a_cut_answer(false);
    // Kept: the cut answer counts (docs/protocol.md P10)...
    let entries = json["rounds"][0]["participants"].as_array().unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e["participant"].as_str().unwrap().contains(name))
            .unwrap_or_else(|| panic!("no {name} in {json:#}"))
    };
    assert_eq!(entry("m-cut")["cut"], true, "{json:#}");
    assert!(entry("m-cut")["error"].is_null(), "{json:#}");
    // ...and the other entries carry no `cut` field at all.
    for name in ["m-a", "m-b"] {
        assert!(entry(name).get("cut").is_none(), "{json:#}");
    }
    // The text report marks that seat's answer, and only it.
    let rows: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.contains("(cut at the token limit)"))
        .collect();
    assert_eq!(rows.len(), 1, "{}\n{}", text.stdout, text.stderr);
    assert!(rows[0].contains("m-cut"), "{}", text.stdout);
}

#[test]
fn a_winner_whose_answer_was_cut_says_so() {
    let (text, json) = ask_with_a_cut_answer(true);
    assert!(json["winner"].is_string(), "{json:#}");
    assert!(
        text.stdout.lines().any(|l| l.starts_with("Winner: ")
            && l.ends_with(" (its answer was cut at the token limit)")),
        "{}\n{}",
        text.stdout,
        text.stderr
    );
}
