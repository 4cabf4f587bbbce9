//! `llm-consensus replay TRANSCRIPT`: a run recorded with `ask --transcript` is re-decided
//! from its recorded answers, without a call. The recorded run is real: scripted seats and
//! an OpenAI-compatible server on 127.0.0.1, with a seat whose calls fail (and are asked
//! again) and one whose key is refused (and is not asked again).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::common::*;
use llm_consensus::cli::ConsensusArgs;
use proptest::prelude::*;
use serde_json::Value;

const KEY: &str = "sk-test-replay-5d1e";

/// Nine seats: four for Paris (one of them over HTTP), three for Lyon of which one turns
/// to Paris in round 1, one that always fails (503) and one whose key is refused (401).
/// With --beta2 0.7 and one sampling round, the run is FINAL after round 1, at 5 of 7 live
/// seats (71%).
fn panel(server: &TestServer) -> String {
    let mock = |name: &str, steps: &[(&str, u32)]| {
        let steps: Vec<String> = steps
            .iter()
            .map(|(text, ms)| format!("{{ output = \"Final answer: {text}\", ms = {ms} }}"))
            .collect();
        format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"{name}\"\nscript = [ {} ]\n\n",
            steps.join(", ")
        )
    };
    let mut out = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n\n",
        server.url()
    );
    out += &mock("ada", &[("Paris", 100)]);
    out += &mock("bo", &[("Lyon", 200), ("Paris", 210)]);
    out += &mock("cy", &[("Lyon", 250)]);
    out += "[[participants]]\nprovider = \"mock\"\nname = \"dee\"\nscript = [ { ok = false, error = \"HTTP 503 (scripted outage)\", ms = 5 } ]\n\n";
    out += &mock("dan", &[("Paris", 150)]);
    out += &mock("eve", &[("Paris", 300)]);
    out += &mock("fay", &[("Lyon", 400)]);
    out += "[[participants]]\nprovider = \"local\"\nmodel = \"m-good\"\nname = \"scribe\"\n\n";
    out += "[[participants]]\nprovider = \"local\"\nmodel = \"m-locked\"\nname = \"locked\"\n\n";
    out
}

fn server() -> TestServer {
    TestServer::start(|req, _| {
        if req.json()["model"] == "m-locked" {
            openai_error(
                401,
                "Incorrect API key provided",
                "invalid_request_error",
                None,
            )
        } else {
            openai_ok("Paris, of course.\nFinal answer: Paris", 11, 6)
        }
    })
}

/// A recorded run: the sandbox, the transcript's path and what `ask --json` printed.
struct Recorded {
    sandbox: Sandbox,
    transcript: PathBuf,
    code: i32,
    report: Value,
}

fn record(server: &TestServer) -> Recorded {
    record_with(server, &["--beta2", "0.7", "--rounds", "1"])
}

fn record_with(server: &TestServer, flags: &[&str]) -> Recorded {
    let sandbox = Sandbox::new();
    let config = sandbox.write("panel.toml", &panel(server));
    let transcript = sandbox.path().join("run.json");
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args(["ask", "--json", "--seed", "5"])
        .arg("--config")
        .arg(&config)
        .arg("--transcript")
        .arg(&transcript)
        .args(flags)
        .arg("What is the capital of France?")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ask printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Recorded {
        sandbox,
        transcript,
        code: out.status.code().unwrap(),
        report,
    }
}

/// `replay` with `args`, in a sandbox whose environment has no key and no config.
fn replay(r: &Recorded, args: &[&str]) -> (i32, String, String) {
    let out = r
        .sandbox
        .cmd()
        .arg("replay")
        .arg(&r.transcript)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn replay_json(r: &Recorded, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = replay(r, &all);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("replay printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, json)
}

/// The report without what is measured anew or names the replay.
fn decision(report: &Value) -> Value {
    let mut v = report.clone();
    let map = v.as_object_mut().unwrap();
    map.remove("elapsed_ms");
    map.remove("replayed_from");
    v
}

fn entry<'a>(report: &'a Value, round: usize, name: &str) -> &'a Value {
    report["rounds"][round]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["participant"] == name)
        .unwrap_or_else(|| panic!("no entry for {name} in round {round}"))
}

#[test]
fn a_transcript_replays_to_the_identical_decision_without_a_call() {
    let server = server();
    let r = record(&server);
    // The run is the one described: several rounds, a failing seat asked again, a refused
    // key not asked again, FINAL.
    assert_eq!(r.code, 0, "{:#}", r.report);
    assert_eq!(r.report["status"], "final");
    assert_eq!(r.report["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(entry(&r.report, 1, "dee")["called"], true);
    assert!(entry(&r.report, 0, "locked")["error"].is_string());
    assert_eq!(entry(&r.report, 1, "locked")["called"], false);
    let requests = server.count();

    let (code, replayed) = replay_json(&r, &[]);
    assert_eq!(code, r.code);
    assert_eq!(server.count(), requests, "replay made a request");
    assert_eq!(decision(&replayed), decision(&r.report));
    assert_eq!(
        replayed["replayed_from"],
        r.transcript.to_str().unwrap(),
        "the JSON names the transcript"
    );

    // The text report is the same report, saying where it comes from.
    let (code, stdout, _) = replay(&r, &[]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Replayed from "), "{stdout}");
    let winner = format!("Winner: {}", r.report["winner"].as_str().unwrap());
    assert!(
        stdout.contains("✔ FINAL") && stdout.contains(&winner),
        "{stdout}"
    );
}

#[test]
fn a_stricter_threshold_changes_finality_offline() {
    let r = {
        let server = server();
        record(&server)
        // The server is gone from here on: a call would fail.
    };
    assert_eq!(r.report["status"], "final");
    let (code, replayed) = replay_json(&r, &["--beta2", "1.0"]);
    assert_eq!(code, 1, "{replayed:#}");
    assert_eq!(replayed["status"], "no_consensus");
    assert_eq!(replayed["finalized"], false);
    assert_eq!(replayed["params"]["beta_2"], 1.0);
    // Same answers, same winner, same support: only the threshold moved.
    assert_eq!(replayed["winner"], r.report["winner"]);
    assert_eq!(replayed["answer"], "Paris");
    assert_eq!(replayed["rounds"], r.report["rounds"]);
    assert_eq!(replayed["participants"], r.report["participants"]);

    // A looser one finalizes after round 0 (4 of 7 for Paris): fewer calls, all made.
    let (code, replayed) = replay_json(&r, &["--beta2", "0.5"]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["rounds_executed"], 0);
    assert_eq!(replayed["rounds"].as_array().unwrap().len(), 1);
}

#[test]
fn another_strategy_whose_calls_were_made_is_decided() {
    let r = record(&server());
    // A vote asks round 0 exactly as metastable did: 4 of 7 live seats for Paris is a majority.
    let (code, replayed) = replay_json(&r, &["--strategy", "vote"]);
    assert_eq!(code, 0, "{replayed:#}");
    assert_eq!(replayed["strategy"], "vote");
    assert_eq!(replayed["answer"], "Paris");
    assert_eq!(replayed["rounds"].as_array().unwrap().len(), 1);
}

#[test]
fn an_override_that_needs_new_calls_exits_2_naming_the_call() {
    let r = record(&server());
    // rank's round 1 asks for ballots, which were never asked for.
    let (code, stdout, stderr) = replay(&r, &["--strategy", "rank"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: replay with --strategy rank would need calls the recorded run never made: round 1 would send "
        ),
        "{stderr}"
    );
    // Another seed samples other peers: the refinement prompts differ.
    let (code, _, stderr) = replay(&r, &["--seed", "6"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--seed 6 would need calls the recorded run never made: round 1 "),
        "{stderr}"
    );
    // More rounds than were run.
    let (code, _, stderr) = replay(&r, &["--beta2", "1.0", "--rounds", "5"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("round 2 would be a round the recorded run never ran"),
        "{stderr}"
    );
    // --synthesize is a call.
    let (code, _, stderr) = replay(&r, &["--synthesize", "local:m-good"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the synthesis would be a new call"),
        "{stderr}"
    );
    // A threshold out of range is refused as `ask` refuses it.
    let (code, _, stderr) = replay(&r, &["--beta2", "1.5"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--beta2"), "{stderr}");
}

#[test]
fn a_malformed_or_truncated_transcript_exits_2_with_one_line() {
    let r = record(&server());
    let text = std::fs::read_to_string(&r.transcript).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "cut.json",
            text[..text.len() / 2].to_string(),
            "is not JSON",
        ),
        ("empty.json", String::new(), "is not JSON"),
        (
            "other.json",
            "{\"answer\": 42}".to_string(),
            "is not an `ask --json` report",
        ),
        (
            "list.json",
            "[1, 2]".to_string(),
            "is not an `ask --json` report",
        ),
    ];
    for (name, contents, says) in cases {
        let path = r.sandbox.write(name, &contents);
        let out = r.sandbox.cmd().arg("replay").arg(&path).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{name}: {stderr}"
        );
    }
    let out = r
        .sandbox
        .cmd()
        .args(["replay", "missing.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the transcript missing.json")
    );

    // Recorded values are checked as flags are.
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit, &str); 3] = [
        (
            "beta.json",
            |v| v["params"]["beta_2"] = 5.into(),
            "the transcript's beta_2 must be between 0 and 1, got 5",
        ),
        (
            "weight.json",
            |v| v["participants"][0]["weight"] = (-1).into(),
            "the transcript's weight of ada must be more than 0",
        ),
        (
            "strategy.json",
            |v| v["strategy"] = "magic".into(),
            "unknown strategy `magic`",
        ),
    ];
    for (name, edit, says) in edits {
        let mut bad = r.report.clone();
        edit(&mut bad);
        let path = r.sandbox.write(name, &bad.to_string());
        let out = r.sandbox.cmd().arg("replay").arg(&path).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }

    // A trace that does not match its parameters (an answer taken out) is refused.
    let mut broken = r.report.clone();
    broken["rounds"][1]["participants"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["participant"] != "bo");
    let path = r.sandbox.write("broken.json", &broken.to_string());
    let out = r.sandbox.cmd().arg("replay").arg(&path).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot be replayed: round 1 asks bo"),
        "{stderr}"
    );
}

#[test]
fn the_recorded_expectation_is_checked_again_and_a_flag_replaces_it() {
    let r = record_with(
        &server(),
        &["--beta2", "0.7", "--rounds", "1", "--expect", "Lyon"],
    );
    assert_eq!(r.code, 4, "{:#}", r.report);
    let (code, replayed) = replay_json(&r, &[]);
    assert_eq!(code, 4);
    assert_eq!(decision(&replayed), decision(&r.report));
    assert_eq!(replayed["expect"]["matched"], false);
    // Checked on the replayed decision: with a stricter threshold the answer still does
    // not match (4), and the expected answer passes only when FINAL.
    let (code, _) = replay_json(&r, &["--expect", "Paris"]);
    assert_eq!(code, 0);
    let (code, replayed) = replay_json(&r, &["--expect", "Paris", "--beta2", "1.0"]);
    assert_eq!(code, 1);
    assert_eq!(replayed["expect"]["matched"], true);
    assert_eq!(replayed["expect"]["passed"], false);
    let (code, _) = replay_json(&r, &["--beta2", "1.0"]);
    assert_eq!(code, 4);
}

#[test]
fn a_run_cut_by_its_deadline_replays_to_where_it_stopped() {
    // The HTTP seat answers round 0 at once and round 1 too late: the deadline cuts the
    // run in round 1, NOT FINAL (below 90%) with rounds left, which replay does not ask for.
    let scribe_calls = std::sync::atomic::AtomicUsize::new(0);
    let server = TestServer::start(move |req, _| {
        if req.json()["model"] == "m-locked" {
            return openai_error(
                401,
                "Incorrect API key provided",
                "invalid_request_error",
                None,
            );
        }
        let reply = openai_ok("Final answer: Paris", 11, 6);
        if scribe_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            reply
        } else {
            Reply::Delayed(std::time::Duration::from_secs(10), Box::new(reply))
        }
    });
    let r = record_with(
        &server,
        &["--beta2", "0.9", "--rounds", "3", "--deadline", "1.5"],
    );
    let cut = entry(&r.report, 1, "scribe")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(cut.contains("run deadline"), "{:#}", r.report);
    assert_eq!(r.report["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(r.report["status"], "no_consensus");
    let (code, replayed) = replay_json(&r, &[]);
    assert_eq!(code, r.code);
    assert_eq!(decision(&replayed), decision(&r.report));
}

#[test]
fn a_synthesis_stands_on_the_same_decision_and_is_not_redone_on_another() {
    let server = server();
    let r = record_with(
        &server,
        &[
            "--beta2",
            "0.7",
            "--rounds",
            "1",
            "--synthesize",
            "local:m-good",
        ],
    );
    assert_eq!(
        r.report["synthesis_source"], "synthesizer",
        "{:#}",
        r.report
    );
    let requests = server.count();
    let (code, replayed) = replay_json(&r, &[]);
    assert_eq!(code, 0);
    assert_eq!(server.count(), requests, "replay made a request");
    assert_eq!(decision(&replayed), decision(&r.report));
    // Decided after round 0, the synthesis would have been written on other answers.
    let (code, replayed) = replay_json(&r, &["--beta2", "0.5"]);
    assert_eq!(code, 0);
    assert_eq!(replayed["synthesis_source"], "winner_verbatim");
    let warnings = replayed["warnings"].to_string();
    assert!(warnings.contains("is not redone"), "{warnings}");
}

#[test]
fn every_strategy_replays_to_its_recorded_decision() {
    // Scripted seats that answer, then judge: one text a ballot, an attestation and a
    // vote can all be read from (four answers to rank: the voter's own is not shown);
    // eve's judgement cannot be read, which the trace notes beside her answered call.
    let judge = "Ranking: 1 > 2 > 3 > 4\\nAttestation: AGREE\\nVote: ACCEPT\\nReason: fine\\nCritique: fine\\nFinal answer: Paris";
    let mut config = String::new();
    for (i, (name, answer)) in [
        ("ada", "Paris"),
        ("bo", "Paris"),
        ("cy", "Lyon"),
        ("dan", "Paris"),
        ("eve", "Paris"),
    ]
    .into_iter()
    .enumerate()
    {
        config += &format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"{name}\"\nscript = [ {{ output = \"Final answer: {answer}\", ms = {} }}, {{ output = \"{}\", ms = {} }} ]\n\n",
            100 * (i + 1),
            if name == "eve" {
                "Final answer: Paris"
            } else {
                judge
            },
            50 * (i + 1)
        );
    }
    config += "[[participants]]\nprovider = \"mock\"\nname = \"dee\"\nscript = [ { ok = false, error = \"HTTP 503 (scripted outage)\", ms = 5 } ]\n";
    let sandbox = Sandbox::new();
    let path = sandbox.write("judges.toml", &config);
    for strategy in ["metastable", "hanzo", "vote", "rank", "bft", "leader"] {
        let transcript = sandbox.path().join(format!("{strategy}.json"));
        let out = sandbox
            .cmd()
            .args([
                "ask",
                "--json",
                "--seed",
                "7",
                "--strategy",
                strategy,
                "--config",
            ])
            .arg(&path)
            .arg("--transcript")
            .arg(&transcript)
            .arg("What is the capital of France?")
            .output()
            .unwrap();
        let recorded: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(recorded["winner"].is_string(), "{strategy}: {recorded:#}");
        let r = Recorded {
            sandbox: Sandbox::new(),
            transcript,
            code: out.status.code().unwrap(),
            report: recorded,
        };
        let (code, replayed) = replay_json(&r, &[]);
        assert_eq!(code, r.code, "{strategy}");
        assert_eq!(decision(&replayed), decision(&r.report), "{strategy}");
    }
}

#[test]
fn an_interrupted_run_replays_as_interrupted_unless_it_decides_before() {
    let r = record(&server());
    // As Ctrl-C in its last round leaves it (the trace is the same).
    let mut stopped = r.report.clone();
    stopped["status"] = "interrupted".into();
    stopped["finalized"] = false.into();
    stopped["error"] = "interrupted before the run finished".into();
    let path = r.sandbox.write("stopped.json", &stopped.to_string());
    let stopped = Recorded {
        sandbox: Sandbox::new(),
        transcript: path,
        code: 130,
        report: stopped,
    };
    let (code, replayed) = replay_json(&stopped, &[]);
    assert_eq!(code, 130);
    assert_eq!(decision(&replayed), decision(&stopped.report));
    // Final after round 0, the run would have ended before the Ctrl-C in round 1.
    let (code, replayed) = replay_json(&stopped, &["--beta2", "0.5"]);
    assert_eq!(code, 0);
    assert_eq!(replayed["status"], "final");
}

/// One recorded run, shared by the property tests.
fn recorded_report() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| record(&server()).report)
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at the `pick`-th node (in a walk of `v`) with `with`.
fn replace_nth(v: &mut Value, pick: &mut usize, with: &Value) -> bool {
    if *pick == 0 {
        *v = with.clone();
        return true;
    }
    *pick -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|x| replace_nth(x, pick, with)),
        Value::Object(map) => map.values_mut().any(|x| replace_nth(x, pick, with)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics_the_loader(value in any_json()) {
        let _ = llm_consensus::replay::from_report(&value, &ConsensusArgs::default());
    }

    #[test]
    fn a_mangled_transcript_never_panics_the_loader(pick in 0usize..400, with in any_json()) {
        let mut report = recorded_report().clone();
        let mut n = pick;
        replace_nth(&mut report, &mut n, &with);
        let _ = llm_consensus::replay::from_report(&report, &ConsensusArgs::default());
    }
}

#[test]
fn a_run_whose_round_closed_early_replays_to_the_same_decision_without_a_call() {
    // Four scripted seats agree at once; the fifth is a server that would answer after
    // 5 s: the round closes without it (FINAL at 4 of 5 whatever it says).
    let slow = TestServer::always(Reply::Delayed(
        std::time::Duration::from_secs(5),
        Box::new(openai_ok("Final answer: Lyon", 5, 2)),
    ));
    let mut config = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n\n",
        slow.url()
    );
    for name in ["a", "b", "c", "d"] {
        config += &format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"{name}\"\nscript = [ {{ output = \"Final answer: Paris\" }} ]\n\n"
        );
    }
    config += "[[participants]]\nprovider = \"local\"\nmodel = \"m\"\nname = \"slow\"\n";
    let sandbox = Sandbox::new();
    let path = sandbox.write("panel.toml", &config);
    let transcript = sandbox.path().join("run.json");
    let started = std::time::Instant::now();
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args(["ask", "--json", "--seed", "3", "--config"])
        .arg(&path)
        .arg("--transcript")
        .arg(&transcript)
        .arg("Capital of France?")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(entry(&report, 0, "slow")["not_awaited"], true, "{report}");
    let recorded = Recorded {
        sandbox,
        transcript,
        code: 0,
        report,
    };
    let asked = slow.requests().len();
    let (code, replayed) = replay_json(&recorded, &[]);
    assert_eq!(code, recorded.code);
    assert_eq!(decision(&replayed), decision(&recorded.report));
    assert_eq!(slow.requests().len(), asked, "the replay made no call");
}
