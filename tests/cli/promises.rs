//! The README's exit-code promise, checked as one table: for every outcome a run can
//! have, the exit code and the JSON `status` say the same thing (docs/protocol.md §5),
//! with and without `--json`, for the default strategy and `vote` (the others need
//! scripted ballots or votes; their exit codes are checked in `cli_strategies.rs`).

use std::time::Duration;

use serde_json::Value;

use crate::common::Sandbox;

/// A panel of three scripted seats: `answers[i]` is seat i's answer on every call, or
/// `None` for a seat whose every call fails.
fn panel(answers: [Option<&str>; 3]) -> String {
    let mut config = String::new();
    for (i, answer) in answers.iter().enumerate() {
        let step = match answer {
            Some(text) => format!("{{ output = \"Final answer: {text}\", ms = 10 }}"),
            None => "{ output = \"\", ok = false, error = \"HTTP 503: down\", ms = 10 }".into(),
        };
        config.push_str(&format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"s{i}\"\nscript = [ {step} ]\n"
        ));
    }
    config
}

#[test]
fn the_exit_code_always_says_what_the_json_status_says() {
    let outcomes: [(&str, [Option<&str>; 3], &str, i32); 4] = [
        ("unanimous", [Some("4"), Some("4"), Some("4")], "final", 0),
        (
            "split",
            [Some("4"), Some("5"), Some("6")],
            "no_consensus",
            1,
        ),
        ("below quorum", [Some("4"), None, None], "degraded", 3),
        ("nobody answered", [None, None, None], "failed", 3),
    ];
    let sandbox = Sandbox::new();
    for (what, answers, status, code) in outcomes {
        let config = sandbox.write("panel.toml", &panel(answers));
        for strategy in ["metastable", "vote"] {
            let run = |json: bool| {
                let mut cmd = sandbox.cmd();
                cmd.args(["ask", "--seed", "1", "--strategy", strategy, "--config"])
                    .arg(&config)
                    .timeout(Duration::from_secs(20));
                if json {
                    cmd.arg("--json");
                }
                cmd.arg("What is 2 + 2?").output().unwrap()
            };
            let out = run(true);
            let report: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{what}, {strategy}: not JSON: {e}"));
            assert_eq!(report["status"], status, "{what}, {strategy}: {report}");
            assert_eq!(out.status.code(), Some(code), "{what}, {strategy} --json");
            assert_eq!(
                report["finalized"],
                status == "final",
                "{what}, {strategy}: finalized agrees with the status"
            );
            // The text report exits the same way.
            assert_eq!(run(false).status.code(), Some(code), "{what}, {strategy}");
        }
    }
}

/// The same promise with an `--expect…` check (docs/protocol.md §5): a finished run exits
/// 0 when it passes, 4 when the winner's answer does not match, and 1 when it matched
/// without the outcome `--require` asks for or there was no answer to check; 3 stays 3.
#[test]
fn with_an_expectation_the_exit_code_still_says_what_the_json_says() {
    // (what, answers, flags, (status, exit) for metastable, and for vote)
    type Case = (
        &'static str,
        [Option<&'static str>; 3],
        &'static [&'static str],
        (&'static str, i32),
        (&'static str, i32),
    );
    let outcomes: [Case; 8] = [
        (
            "unanimous, matched",
            [Some("4"), Some("4"), Some("4")],
            &["--expect", "4"],
            ("final", 0),
            ("final", 0),
        ),
        (
            "unanimous, not matched",
            [Some("4"), Some("4"), Some("4")],
            &["--expect-number", "5"],
            ("final", 4),
            ("final", 4),
        ),
        (
            "unanimous, matched, any",
            [Some("4"), Some("4"), Some("4")],
            &["--expect-regex", "^4$", "--require", "any"],
            ("final", 0),
            ("final", 0),
        ),
        // metastable picks a winner with 1/3 support; a three-way vote is a tie, no answer.
        (
            "split, matched, final required",
            [Some("4"), Some("5"), Some("6")],
            &["--expect", "4"],
            ("no_consensus", 1),
            ("no_consensus", 1),
        ),
        (
            "split, matched, any",
            [Some("4"), Some("5"), Some("6")],
            &["--expect", "4", "--require", "any"],
            ("no_consensus", 0),
            ("no_consensus", 1),
        ),
        (
            "split, not matched",
            [Some("4"), Some("5"), Some("6")],
            &["--expect", "7", "--require", "any"],
            ("no_consensus", 4),
            ("no_consensus", 1),
        ),
        (
            "below quorum, matched",
            [Some("4"), None, None],
            &["--expect", "4", "--require", "any"],
            ("degraded", 3),
            ("degraded", 3),
        ),
        (
            "nobody answered",
            [None, None, None],
            &["--expect", "4"],
            ("failed", 3),
            ("failed", 3),
        ),
    ];
    let sandbox = Sandbox::new();
    for (what, answers, flags, metastable, vote) in outcomes {
        let config = sandbox.write("panel.toml", &panel(answers));
        for (strategy, (status, code)) in [("metastable", metastable), ("vote", vote)] {
            let run = |json: bool| {
                let mut cmd = sandbox.cmd();
                cmd.args(["ask", "--seed", "1", "--strategy", strategy, "--config"])
                    .arg(&config)
                    .args(flags)
                    .timeout(Duration::from_secs(20));
                if json {
                    cmd.arg("--json");
                }
                cmd.arg("What is 2 + 2?").output().unwrap()
            };
            let out = run(true);
            let report: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{what}, {strategy}: not JSON: {e}"));
            assert_eq!(report["status"], status, "{what}, {strategy}: {report}");
            assert_eq!(out.status.code(), Some(code), "{what}, {strategy} --json");
            assert_eq!(
                report["expect"]["passed"],
                code == 0,
                "{what}, {strategy}: passed agrees with the exit code"
            );
            if code == 4 {
                assert_eq!(report["expect"]["matched"], false, "{what}, {strategy}");
            }
            assert_eq!(run(false).status.code(), Some(code), "{what}, {strategy}");
        }
    }
}
