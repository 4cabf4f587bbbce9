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
