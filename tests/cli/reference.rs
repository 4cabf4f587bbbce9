//! docs/protocol.md P0: `--strategy hanzo` reproduces the 21 recorded runs of
//! hanzo-consensus 0.1.0 in `tests/fixtures/hanzo-0.1.0-scenarios.json`: with the same
//! scripted outputs, ok flags and ms and seed 0, the shared samples, the per-round prompts
//! (byte for byte), agreements, confidences, luminances, scores, winner, finalized flag,
//! synthesis and every recorded response are equal (floats to 1e-12).

use std::collections::BTreeMap;

use llm_consensus::consensus::{self, CallResult, CallSpec, Params, Seat, StrategyKind};
use serde_json::Value;

/// The recorded runs, part of the repository: a missing or unreadable file fails the test.
pub(crate) fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hanzo-0.1.0-scenarios.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

struct Run {
    decision: consensus::Decision,
    prompts: BTreeMap<usize, Vec<String>>,
}

fn run_scenario(s: &Value, seed: u64) -> Run {
    let names: Vec<String> = s["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let eff = &s["effective_params"];
    let mut params = Params::defaults(names.len());
    params.strategy = StrategyKind::Hanzo;
    params.seed = seed;
    params.rounds = eff["rounds"].as_u64().unwrap() as usize;
    params.k = eff["k"].as_u64().unwrap() as usize;
    params.alpha = eff["alpha"].as_f64().unwrap();
    params.beta_1 = eff["beta_1"].as_f64().unwrap();
    params.beta_2 = eff["beta_2"].as_f64().unwrap();
    params.quorum = 1;
    let seats = names.iter().map(|n| Seat::new(n.clone())).collect();
    let mut strategy = consensus::build(&params, seats, s["prompt"].as_str().unwrap());
    let mut calls = vec![0usize; names.len()];
    let mut prompts: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let decision = consensus::drive(strategy.as_mut(), |call: &CallSpec| {
        prompts
            .entry(call.round)
            .or_default()
            .push(call.user.to_string());
        let script = s["script"][&names[call.seat]].as_array().unwrap();
        let step = &script[calls[call.seat].min(script.len() - 1)];
        calls[call.seat] += 1;
        let output = step["output"].as_str().unwrap();
        let ms = step["ms"].as_f64().unwrap();
        let mut r = if step["ok"].as_bool().unwrap() {
            CallResult::ok(call.seat, output, ms)
        } else {
            CallResult::failed(call.seat, "scripted failure", ms)
        };
        r.text = output.to_string();
        r
    });
    Run { decision, prompts }
}

#[test]
fn hanzo_reproduces_every_recorded_run() {
    let reference = reference();
    let scenarios = reference["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 21);
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let names: Vec<&str> = s["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let canonical = &s["canonical"];
        let run = run_scenario(s, canonical["seed"].as_u64().unwrap());
        let d = &run.decision;
        let rounds = canonical["rounds"].as_array().unwrap();
        assert_eq!(d.rounds_executed, rounds.len(), "{name}: rounds executed");

        // Round 0 is the raw prompt, for everybody.
        for p in &run.prompts[&0] {
            assert_eq!(p, s["prompt"].as_str().unwrap(), "{name}: round-0 prompt");
        }
        for (i, expected) in rounds.iter().enumerate() {
            let round = i + 1;
            let trace = &d.rounds[round];
            assert_eq!(trace.round, round);
            let sampled: Vec<&str> = expected["sampled"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let got: Vec<&str> = trace
                .shared_sample
                .as_ref()
                .unwrap()
                .iter()
                .map(String::as_str)
                .collect();
            assert_eq!(got, sampled, "{name} round {round}: shared sample");
            let weights: Vec<f64> = expected["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_f64().unwrap())
                .collect();
            assert_eq!(
                trace.weights.as_ref().unwrap(),
                &weights,
                "{name} round {round}: weights"
            );
            for p in &run.prompts[&round] {
                assert_eq!(
                    p,
                    expected["prompt"].as_str().unwrap(),
                    "{name} round {round}: prompt bytes"
                );
            }
            let agreements = expected["agreements"].as_object().unwrap();
            for entry in &trace.participants {
                match agreements.get(entry.participant.as_str()) {
                    Some(a) => assert!(
                        close(entry.agreement.unwrap(), a.as_f64().unwrap()),
                        "{name} round {round} {}: agreement {:?} vs {a}",
                        entry.participant,
                        entry.agreement
                    ),
                    None => assert_eq!(
                        entry.agreement, None,
                        "{name} round {round} {}: failed call has no agreement",
                        entry.participant
                    ),
                }
                let c = expected["confidence_after"][entry.participant.as_str()]
                    .as_f64()
                    .unwrap();
                assert!(
                    close(entry.confidence, c),
                    "{name} round {round} {}: confidence {} vs {c}",
                    entry.participant,
                    entry.confidence
                );
            }
        }

        let f = &canonical["final"];
        let winner = d.winner.map(|w| names[w]);
        assert_eq!(winner, f["winner"].as_str(), "{name}: winner");
        assert_eq!(
            d.finalized,
            f["finalized"].as_bool().unwrap(),
            "{name}: finalized"
        );
        assert_eq!(
            d.synthesis.as_deref(),
            f["synthesis"].as_str(),
            "{name}: synthesis"
        );
        for (i, seat) in names.iter().enumerate() {
            let o = &d.seats[i];
            for (what, got, want) in [
                ("confidence", o.confidence, &f["confidence"][seat]),
                ("luminance", o.luminance, &f["luminance"][seat]),
                ("score", o.score, &f["scores"][seat]),
            ] {
                assert!(
                    close(got, want.as_f64().unwrap()),
                    "{name} {seat}: {what} {got} vs {want}"
                );
            }
            let history: Vec<&str> = d
                .rounds
                .iter()
                .filter_map(|r| r.participants.iter().find(|e| e.participant == *seat))
                .map(|e| e.answer.as_deref().unwrap())
                .collect();
            let want: Vec<&str> = f["responses"][seat]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(history, want, "{name} {seat}: responses");
        }
    }
}

#[test]
fn hanzo_is_deterministic_for_other_seeds() {
    let reference = reference();
    assert_eq!(reference["scenarios"].as_array().unwrap().len(), 21);
    for s in reference["scenarios"].as_array().unwrap() {
        for seed in [1, 42, 1 << 40] {
            let a = run_scenario(s, seed);
            let b = run_scenario(s, seed);
            assert_eq!(a.prompts, b.prompts);
            assert_eq!(a.decision.winner, b.decision.winner);
        }
    }
}
