//! MCP both ways at once: seats of `kind = "mcp"` whose server is `llm-consensus mcp`
//! itself, started as a command, each serving a mock panel of its own. The outer panel
//! decides on the inner panels' answers (`result_pointer = "/answer"` takes the answer from
//! `consensus_ask`'s JSON result).

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A config for `llm-consensus mcp` whose mock panel of three answers `answer` (two seats)
/// and `other` (one).
fn inner_panel(sb: &Sandbox, name: &str, answer: &str, other: &str) -> String {
    let text = format!(
        "[[participants]]\nprovider = \"mock\"\nname = \"x\"\ncount = 2\n\
         script = [{{ output = \"Final answer: {answer}\" }}]\n\n\
         [[participants]]\nprovider = \"mock\"\nname = \"y\"\n\
         script = [{{ output = \"Final answer: {other}\" }}]\n"
    );
    sb.write(name, &text).to_string_lossy().into_owned()
}

fn binary() -> String {
    assert_cmd::cargo::cargo_bin("llm-consensus")
        .to_string_lossy()
        .into_owned()
}

/// The outer panel: one `mcp` seat per inner config, each `llm-consensus mcp --config C`.
fn outer_panel(sb: &Sandbox, inner: &[&str]) -> String {
    let mut text = String::new();
    for (i, config) in inner.iter().enumerate() {
        text.push_str(&format!(
            "[providers.panel{i}]\nkind = \"mcp\"\ncommand = [{:?}, \"mcp\", \"--no-log\", \"--config\", {config:?}]\n\
             tool = \"consensus_ask\"\nresult_pointer = \"/answer\"\n\n\
             [[participants]]\nprovider = \"panel{i}\"\nname = \"panel{i}\"\n\n",
            binary()
        ));
    }
    sb.write("outer.toml", &text).to_string_lossy().into_owned()
}

fn ask(sb: &Sandbox, config: &str) -> (i32, Value, String) {
    let out = sb
        .cmd()
        .args(["ask", "--json", "--no-log", "--config", config])
        .args(["--strategy", "vote", "--wait-all", "Capital of France?"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let report =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (out.status.code().unwrap(), report, stderr)
}

#[test]
fn panels_served_by_llm_consensus_mcp_are_seats_of_a_panel() {
    let sb = Sandbox::new();
    let a = inner_panel(&sb, "a.toml", "Paris", "Lyon");
    let b = inner_panel(&sb, "b.toml", "Paris", "Nice");
    let c = inner_panel(&sb, "c.toml", "Lyon", "Paris");
    let outer = outer_panel(&sb, &[&a, &b, &c]);
    let (code, report, stderr) = ask(&sb, &outer);
    assert_eq!(code, 0, "{stderr}\n{report}");
    assert_eq!(report["status"], "final");
    assert_eq!(report["answer"], "Paris");
    // Each seat's answer is its inner panel's decision.
    let answers: Vec<&str> = report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["answers"][0].as_str().unwrap())
        .collect();
    assert_eq!(answers, ["Paris", "Paris", "Lyon"]);
    assert!(
        report["participants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["kind"] == "mcp")
    );
}

#[test]
fn an_inner_panel_that_cannot_decide_is_a_failed_seat_not_a_vote() {
    let sb = Sandbox::new();
    let a = inner_panel(&sb, "a.toml", "Paris", "Lyon");
    // An inner config that does not parse: that server never answers a call.
    let broken = sb
        .write("broken.toml", "[[participants]\n")
        .to_string_lossy()
        .into_owned();
    let outer = outer_panel(&sb, &[&a, &broken]);
    let (code, report, stderr) = ask(&sb, &outer);
    let broken_seat = &report["participants"][1];
    assert_eq!(broken_seat["live"], false, "{report}");
    assert!(
        !broken_seat["errors"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(report["participants"][0]["answers"][0], "Paris");
    assert_ne!(code, 101, "{stderr}");
}
