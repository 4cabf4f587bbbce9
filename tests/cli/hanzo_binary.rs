//! docs/protocol.md P0, checked from outside: the built binary, given each recorded run of
//! hanzo-consensus 0.1.0 (`tests/fixtures/hanzo-0.1.0-scenarios.json`) as a config of
//! scripted `mock` seats, with `--strategy hanzo --seed 0`, reports the recorded winner,
//! finalized flag, confidences, luminances, scores, synthesis and every response.

use crate::common::Sandbox;
use crate::reference::reference;
use serde_json::Value;

/// A JSON string literal is also a valid TOML basic string.
fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The scenario as a config file: its parameters and one scripted seat per participant.
fn config(s: &Value) -> String {
    let p = &s["effective_params"];
    let mut out = format!(
        "[consensus]\nstrategy = \"hanzo\"\nseed = 0\nrounds = {}\nk = {}\nalpha = {}\nbeta_1 = {}\nbeta_2 = {}\nquorum = 1\n",
        p["rounds"], p["k"], p["alpha"], p["beta_1"], p["beta_2"]
    );
    for name in s["participants"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let steps: Vec<String> = s["script"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                format!(
                    "{{ output = {}, ok = {}, ms = {} }}",
                    quoted(step["output"].as_str().unwrap()),
                    step["ok"],
                    step["ms"].as_f64().unwrap()
                )
            })
            .collect();
        out.push_str(&format!(
            "\n[[participants]]\nprovider = \"mock\"\nname = {}\nscript = [ {} ]\n",
            quoted(name),
            steps.join(", ")
        ));
    }
    out
}

fn close(a: &Value, b: &Value) -> bool {
    (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-12
}

#[test]
fn the_binary_reproduces_every_recorded_hanzo_run() {
    let reference = reference();
    let scenarios = reference["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 21);
    let sandbox = Sandbox::new();
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let path = sandbox.write(&format!("{name}.toml"), &config(s));
        let out = sandbox
            .cmd()
            .arg("ask")
            .arg("--config")
            .arg(&path)
            .arg("--json")
            .arg(s["prompt"].as_str().unwrap())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let f = &s["canonical"]["final"];
        assert_eq!(json["strategy"], "hanzo", "{name}");
        assert_eq!(json["seed"], 0, "{name}");
        assert_eq!(json["winner"], f["winner"], "{name}: winner");
        assert_eq!(json["finalized"], f["finalized"], "{name}: finalized");
        assert_eq!(json["synthesis"], f["synthesis"], "{name}: synthesis");
        assert_eq!(
            json["rounds_executed"], f["rounds_executed"],
            "{name}: rounds"
        );
        let code = out.status.code().unwrap();
        let expected = if f["finalized"].as_bool().unwrap() {
            0
        } else {
            1
        };
        assert_eq!(code, expected, "{name}: exit code");
        for p in json["participants"].as_array().unwrap() {
            let seat = p["name"].as_str().unwrap();
            assert!(
                close(&p["confidence"], &f["confidence"][seat]),
                "{name} {seat}: confidence"
            );
            assert!(
                close(&p["luminance"], &f["luminance"][seat]),
                "{name} {seat}: luminance"
            );
            assert!(
                close(&p["score"], &f["scores"][seat]),
                "{name} {seat}: score"
            );
        }
        // Every recorded response, failed calls' output included, in call order.
        for (r, round) in json["rounds"].as_array().unwrap().iter().enumerate() {
            for e in round["participants"].as_array().unwrap() {
                let seat = e["participant"].as_str().unwrap();
                assert_eq!(
                    e["answer"], f["responses"][seat][r],
                    "{name} {seat}: response {r}"
                );
            }
        }
    }
}
