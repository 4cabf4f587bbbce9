//! Checking the panel's answer (`--expect`, `--expect-number`, `--expect-choice`,
//! `--expect-regex`, `--require`): the exit code (docs/protocol.md §5), the JSON `expect`
//! object and the report line, against an OpenAI-compatible server on 127.0.0.1 whose
//! seats answer by model name.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const KEY: &str = "sk-test-expect-7c1d";

/// A server where seat `m{i}` always answers `answers[i]`; `None` answers HTTP 503.
fn panel(answers: [Option<&'static str>; 3]) -> TestServer {
    TestServer::start(move |req, _| {
        let model = req.json()["model"].as_str().unwrap_or_default().to_string();
        let i: usize = model.trim_start_matches('m').parse().unwrap_or(0);
        match answers[i] {
            Some(text) => openai_ok(text, 5, 3),
            None => openai_error(503, "down", "server_error", None),
        }
    })
}

/// Runs `ask` against the panel with `args`; returns (exit code, stdout, stderr).
fn ask(sandbox: &Sandbox, server: &TestServer, args: &[&str]) -> (i32, String, String) {
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
        .args(["ask", "--seed", "1", "--retries", "0", "--config"])
        .arg(&config)
        .args(["-m", "local:m0", "-m", "local:m1", "-m", "local:m2"])
        .args(args)
        .arg("What is the answer?")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// As [`ask`] with `--json`; returns (exit code, the JSON result).
fn ask_json(sandbox: &Sandbox, server: &TestServer, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = ask(sandbox, server, &all);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, json)
}

#[test]
fn each_kind_of_expectation_passes_on_the_panels_answer_and_exits_4_on_another() {
    // (the panel's unanimous answer, the flag, a value that matches, the JSON value, a
    // value that does not)
    let cases: [(&str, &str, &str, Value, &str); 4] = [
        (
            "The capital is Canberra.\nFinal answer: Canberra.",
            "--expect",
            "canberra",
            json!("canberra"),
            "Sydney",
        ),
        (
            "17 * 23 = 391\nFinal answer: 391",
            "--expect-number",
            "391.0",
            json!(391.0),
            "392",
        ),
        (
            "Paris is in France.\nFinal answer: (B) Paris",
            "--expect-choice",
            "b",
            json!("B"),
            "C",
        ),
        (
            "Final answer: Canberra",
            "--expect-regex",
            "^Canb",
            json!("^Canb"),
            "^Syd",
        ),
    ];
    let sandbox = Sandbox::new();
    for (answer, flag, good, value, bad) in cases {
        let server = panel([Some(answer); 3]);
        let kind = flag.trim_start_matches("--expect").trim_start_matches('-');
        let kind = if kind.is_empty() { "text" } else { kind };

        let (code, report) = ask_json(&sandbox, &server, &[flag, good]);
        assert_eq!(report["status"], "final", "{flag} {good}: {report}");
        assert_eq!(
            report["expect"],
            json!({"kind": kind, "value": value, "matched": true, "require": "final", "passed": true}),
            "{flag} {good}"
        );
        assert_eq!(code, 0, "{flag} {good}");

        let (code, report) = ask_json(&sandbox, &server, &[flag, bad]);
        assert_eq!(report["status"], "final", "{flag} {bad}");
        assert_eq!(report["expect"]["matched"], false, "{flag} {bad}");
        assert_eq!(report["expect"]["passed"], false, "{flag} {bad}");
        assert_eq!(code, 4, "{flag} {bad}: a FINAL answer that does not match");

        // The text report exits the same way and says so.
        let (code, stdout, _) = ask(&sandbox, &server, &[flag, bad]);
        assert_eq!(code, 4, "{flag} {bad}, text");
        assert!(
            stdout.contains("✘ expected ") && stdout.contains(": the answer was \""),
            "{flag} {bad}: {stdout}"
        );
        let (code, stdout, _) = ask(&sandbox, &server, &[flag, good]);
        assert_eq!(code, 0, "{flag} {good}, text");
        assert!(stdout.contains(": matched\n"), "{flag} {good}: {stdout}");
    }
}

#[test]
fn the_text_report_names_the_expected_and_the_actual_answer() {
    let server = panel([Some("Final answer: Canberra"); 3]);
    let sandbox = Sandbox::new();
    let (_, stdout, _) = ask(&sandbox, &server, &["--expect", "Sydney"]);
    assert!(
        stdout.contains("✘ expected \"Sydney\": the answer was \"Canberra\"\n"),
        "{stdout}"
    );
    let (_, stdout, _) = ask(&sandbox, &server, &["--expect", "Canberra"]);
    assert!(
        stdout.contains("✔ expected \"Canberra\": matched\n"),
        "{stdout}"
    );
}

#[test]
fn a_number_matches_within_the_tolerance_only() {
    let server = panel([Some("Final answer: about 391"); 3]);
    let sandbox = Sandbox::new();
    let (code, report) = ask_json(&sandbox, &server, &["--expect-number", "400"]);
    assert_eq!((code, &report["expect"]["matched"]), (4, &json!(false)));
    let (code, report) = ask_json(
        &sandbox,
        &server,
        &["--expect-number", "400", "--tolerance", "0.05"],
    );
    assert_eq!((code, &report["expect"]["matched"]), (0, &json!(true)));
    // A negative number is a value, not a flag.
    let (code, _) = ask_json(&sandbox, &server, &["--expect-number", "-391"]);
    assert_eq!(code, 4);
}

#[test]
fn require_decides_whether_a_matching_answer_that_is_not_final_passes() {
    let sandbox = Sandbox::new();
    // Two of three say 4: the winner's support is 2/3, below beta_2 (0.8): NOT FINAL.
    let two_thirds = panel([
        Some("Final answer: 4"),
        Some("Final answer: 4"),
        Some("Final answer: 5"),
    ]);
    // Three different answers: the winner's support is 1/3.
    let split = panel([
        Some("Final answer: 4"),
        Some("Final answer: 5"),
        Some("Final answer: 6"),
    ]);
    // (panel, --require, expected exit code)
    let table: [(&TestServer, Option<&str>, i32); 7] = [
        (&two_thirds, None, 1),
        (&two_thirds, Some("final"), 1),
        (&two_thirds, Some("majority"), 0),
        (&two_thirds, Some("any"), 0),
        (&split, Some("final"), 1),
        (&split, Some("majority"), 1),
        (&split, Some("any"), 0),
    ];
    for (i, (server, require, code)) in table.into_iter().enumerate() {
        let mut args = vec!["--expect", "4"];
        if let Some(r) = require {
            args.extend(["--require", r]);
        }
        let (got, report) = ask_json(&sandbox, server, &args);
        assert_eq!(report["status"], "no_consensus", "case {i}: {report}");
        assert_eq!(report["answer"], "4", "case {i}");
        assert_eq!(report["expect"]["matched"], true, "case {i}");
        assert_eq!(report["expect"]["require"], require.unwrap_or("final"));
        assert_eq!(report["expect"]["passed"], code == 0, "case {i}");
        assert_eq!(got, code, "case {i}: {require:?}");
        // A winner that does not match exits 4 whatever is required.
        let mut args = vec!["--expect", "7"];
        if let Some(r) = require {
            args.extend(["--require", r]);
        }
        let (got, report) = ask_json(&sandbox, server, &args);
        assert_eq!((got, &report["expect"]["matched"]), (4, &json!(false)));
    }
    // The text report says why a matching answer did not pass.
    let (_, stdout, _) = ask(
        &sandbox,
        &split,
        &["--expect", "4", "--require", "majority"],
    );
    assert!(
        stdout.contains(
            "✘ expected \"4\": matched, but the decision is NOT FINAL and the winner's support, 33%, is not more than half (--require majority)"
        ),
        "{stdout}"
    );
}

#[test]
fn a_run_with_too_few_answers_keeps_exit_3_with_an_expectation() {
    let server = panel([Some("Final answer: 4"), None, None]);
    let sandbox = Sandbox::new();
    let (code, report) = ask_json(&sandbox, &server, &["--expect", "4", "--require", "any"]);
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(report["expect"]["passed"], false);
    assert_eq!(code, 3);
}

#[test]
fn conflicting_or_invalid_expectations_exit_2_before_any_call() {
    let server = panel([Some("Final answer: 4"); 3]);
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--expect", "4", "--expect-number", "4"],
            "cannot be used with",
        ),
        (
            &["--expect-choice", "A", "--expect-regex", "A"],
            "cannot be used with",
        ),
        (&["--require", "any"], "--expect"),
        (
            &["--expect", "4", "--require", "most"],
            "invalid value 'most'",
        ),
        (
            &["--expect-number", "four"],
            "--expect-number: `four` is not a number",
        ),
        (
            &["--expect-choice", "K"],
            "--expect-choice: `K` is not a choice letter",
        ),
        (
            &["--expect-regex", "(unclosed"],
            "--expect-regex: invalid regex",
        ),
    ];
    for (args, message) in cases {
        let (code, stdout, stderr) = ask(&sandbox, &server, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    assert_eq!(server.count(), 0, "a usage error sends nothing");
}

#[test]
fn without_an_expectation_the_json_has_no_expect_field() {
    let server = panel([Some("Final answer: 4"); 3]);
    let sandbox = Sandbox::new();
    let (code, report) = ask_json(&sandbox, &server, &[]);
    assert_eq!(code, 0);
    assert!(report.get("expect").is_none(), "{report}");
}

#[test]
fn an_answer_with_control_characters_is_shown_escaped_in_the_check_line() {
    let server = panel([Some("Final answer: Can\u{1b}[2Jberra\u{202e}"); 3]);
    let sandbox = Sandbox::new();
    let (code, stdout, _) = ask(&sandbox, &server, &["--expect", "Sydney\u{7}"]);
    assert_eq!(code, 4);
    let line = stdout
        .lines()
        .find(|l| l.contains("expected"))
        .unwrap_or_else(|| panic!("no check line: {stdout}"));
    assert_eq!(
        line,
        "✘ expected \"Sydney\\u{7}\": the answer was \"Can\\u{1b}[2Jberra\\u{202e}\""
    );
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\u{7}'));
}

#[test]
fn the_transcript_carries_the_check() {
    let server = panel([Some("Final answer: 4"); 3]);
    let sandbox = Sandbox::new();
    let path = sandbox.path().join("run.json");
    let path_arg = path.to_str().unwrap();
    let (code, _, _) = ask(
        &sandbox,
        &server,
        &["--expect-number", "5", "--transcript", path_arg],
    );
    assert_eq!(code, 4);
    let transcript: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        transcript["expect"],
        json!({"kind": "number", "value": 5.0, "matched": false, "require": "final", "passed": false})
    );
}
