//! The strategies seen from the command line: the real binary against an
//! OpenAI-compatible server on 127.0.0.1, asserting stdout JSON and exit codes.

use crate::common::{Sandbox, TestServer, openai_ok};
use serde_json::Value;

/// A server that answers each model with its own text, and a config naming the models.
fn panel(answers: &[(&'static str, &'static str)]) -> (TestServer, Sandbox, std::path::PathBuf) {
    let table: Vec<(String, String)> = answers
        .iter()
        .map(|(m, a)| (m.to_string(), a.to_string()))
        .collect();
    let server = TestServer::start(move |req, _| {
        let body = req.json();
        let model = body["model"].as_str().unwrap_or_default().to_string();
        let text = table
            .iter()
            .find(|(m, _)| *m == model)
            .map_or("unknown model", |(_, a)| a.as_str());
        openai_ok(text, 20, 5)
    });
    let mut config = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
        server.url()
    );
    for (model, _) in answers {
        config.push_str(&format!(
            "\n[[participants]]\nprovider = \"local\"\nmodel = \"{model}\"\n"
        ));
    }
    let sandbox = Sandbox::new();
    let path = sandbox.write("panel.toml", &config);
    (server, sandbox, path)
}

fn run_json(sandbox: &Sandbox, args: &[&str]) -> (Value, i32) {
    let out = sandbox.cmd().args(args).output().expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code().unwrap_or(-1))
}

#[test]
fn vote_over_http_reports_groups_and_exits_by_finality() {
    let (server, sandbox, config) = panel(&[
        ("m1", "Reasoning.\nThe answer is (C)."),
        ("m2", "Final answer: C"),
        ("m3", "I think \\boxed{A}"),
    ]);
    let config = config.to_str().unwrap();
    let base = [
        "ask",
        "--config",
        config,
        "--strategy",
        "vote",
        "--answer",
        "choice",
        "--seed",
        "1",
        "--json",
        // Every seat's answer is grouped: none is cancelled as not needed.
        "--wait-all",
    ];
    let (json, code) = run_json(&sandbox, &[&base[..], &["Pick one."]].concat());
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["status"], "final");
    assert_eq!(json["strategy"], "vote");
    assert_eq!(json["answer"], "C");
    assert_eq!(json["groups"][0]["key"], "C");
    assert_eq!(json["groups"][0]["members"].as_array().unwrap().len(), 2);
    assert_eq!(json["groups"][1]["key"], "A");
    assert_eq!(server.count(), 3, "a vote makes one call per seat");
    // Every request asked for a final-answer line.
    for req in server.requests() {
        let body = req.json();
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("Final answer:")
        );
    }

    let (json, code) = run_json(
        &sandbox,
        &[&base[..], &["--quorum-share", "unanimous", "Pick one."]].concat(),
    );
    assert_eq!(code, 1, "not final exits 1");
    assert_eq!(json["status"], "no_consensus");
    assert_eq!(json["answer"], "C");
    assert_eq!(json["params"]["quorum_share"], "unanimous");
}

#[test]
fn vote_tie_over_http_has_no_winner_and_says_so() {
    let (_server, sandbox, config) = panel(&[
        ("m1", "Final answer: B"),
        ("m2", "Final answer: D"),
        ("m3", "Final answer: B"),
        ("m4", "Final answer: D"),
    ]);
    let config = config.to_str().unwrap();
    let args = [
        "ask",
        "--config",
        config,
        "--strategy",
        "vote",
        "--answer",
        "choice",
        "--seed",
        "1",
    ];
    let (json, code) = run_json(&sandbox, &[&args[..], &["--json", "Pick one."]].concat());
    assert_eq!(code, 1);
    assert_eq!(json["status"], "no_consensus");
    assert_eq!(json["winner"], Value::Null);
    assert_eq!(json["tie"], serde_json::json!(["B", "D"]));
    let out = sandbox.cmd().args(args).arg("Pick one.").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Tie: B (local:m1, local:m3) vs D (local:m2, local:m4) — no winner"),
        "{text}"
    );
}

#[test]
fn a_bad_quorum_share_is_a_usage_error() {
    let (server, sandbox, config) = panel(&[("m1", "Final answer: B")]);
    let out = sandbox
        .cmd()
        .args(["ask", "--config", config.to_str().unwrap()])
        .args(["--strategy", "vote", "--quorum-share", "most", "Q?"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--quorum-share"));
    assert_eq!(server.count(), 0, "nothing was sent");
}

#[test]
fn bft_refuses_a_panel_too_small_for_its_faults_before_sending_anything() {
    let (server, sandbox, config) = panel(&[
        ("m1", "Final answer: B"),
        ("m2", "Final answer: B"),
        ("m3", "Final answer: B"),
    ]);
    let out = sandbox
        .cmd()
        .args(["ask", "--config", config.to_str().unwrap()])
        .args(["--strategy", "bft", "--faults", "1", "Q?"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--faults 1 needs at least 4 participants (n >= 3f+1), the panel has 3"),
        "{stderr}"
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn rank_fails_with_exit_3_when_most_ballots_cannot_be_read() {
    // Every request gets the model's answer, so no ballot contains a ranking.
    let (server, sandbox, config) = panel(&[
        ("m1", "Final answer: B"),
        ("m2", "Final answer: C"),
        ("m3", "Final answer: B"),
    ]);
    let (json, code) = run_json(
        &sandbox,
        &[
            "ask",
            "--config",
            config.to_str().unwrap(),
            "--strategy",
            "rank",
            "--answer",
            "choice",
            "--seed",
            "3",
            "--json",
            "Pick one.",
        ],
    );
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["status"], "failed");
    assert_eq!(json["finalized"], false);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("only 0 of 3 ballots could be read"),
        "{json}"
    );
    let dropped: Vec<&str> = json["ballots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["dropped"].as_str().unwrap())
        .collect();
    assert_eq!(dropped, ["no `Ranking:` line"; 3]);
    assert_eq!(
        server.count(),
        6,
        "one answer and one ballot per participant"
    );
}

#[test]
fn bft_over_http_decides_and_lists_the_dissenter() {
    let server = TestServer::start(|req, _| {
        let body = req.json();
        let model = body["model"].as_str().unwrap_or_default().to_string();
        let user = body["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        let own = if model == "m4" { "A" } else { "B" };
        if user.contains("Attestation:") {
            let verdict = if own == "B" { "AGREE" } else { "DISAGREE" };
            openai_ok(
                &format!("Attestation: {verdict}\nReason: I said {own}."),
                50,
                5,
            )
        } else {
            openai_ok(&format!("Working.\nFinal answer: {own}"), 20, 5)
        }
    });
    let mut config = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
        server.url()
    );
    for m in ["m1", "m2", "m3", "m4"] {
        config.push_str(&format!(
            "\n[[participants]]\nprovider = \"local\"\nmodel = \"{m}\"\n"
        ));
    }
    let sandbox = Sandbox::new();
    let path = sandbox.write("panel.toml", &config);
    let (json, code) = run_json(
        &sandbox,
        &[
            "ask",
            "--config",
            path.to_str().unwrap(),
            "--strategy",
            "bft",
            "--answer",
            "choice",
            "--seed",
            "3",
            "--json",
            // Every attestation is counted: none is cancelled as not needed.
            "--wait-all",
            "Pick one.",
        ],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["status"], "final");
    assert_eq!(json["answer"], "B");
    assert_eq!(json["digest"].as_str().unwrap().len(), 64);
    assert_eq!(json["attestations"].as_array().unwrap().len(), 8);
    assert_eq!(json["suspects"][0]["participant"], "local:m4");
    assert_eq!(json["params"]["faults"], 1);
    assert_eq!(server.count(), 12);
}

/// A panel of m1..m3 plus a `judge` model on the same server; `judge` replies `judge_reply`.
fn panel_with_judge(
    judge_reply: crate::common::Reply,
) -> (TestServer, Sandbox, std::path::PathBuf) {
    let server = TestServer::start(move |req, _| {
        let body = req.json();
        match body["model"].as_str().unwrap_or_default() {
            "judge" => judge_reply.clone(),
            "m3" => openai_ok("Hmm.\nFinal answer: A", 20, 5),
            _ => openai_ok("Worked it out.\nFinal answer: C", 20, 5),
        }
    });
    let mut config = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
        server.url()
    );
    for m in ["m1", "m2", "m3"] {
        config.push_str(&format!(
            "\n[[participants]]\nprovider = \"local\"\nmodel = \"{m}\"\n"
        ));
    }
    let sandbox = Sandbox::new();
    let path = sandbox.write("panel.toml", &config);
    (server, sandbox, path)
}

#[test]
fn synthesize_asks_a_separate_model_with_every_final_answer() {
    let (server, sandbox, config) = panel_with_judge(openai_ok(
        "C, because both derivations agree.\nDissent: one participant chose A.",
        90,
        12,
    ));
    let (json, code) = run_json(
        &sandbox,
        &[
            "ask",
            "--config",
            config.to_str().unwrap(),
            "--strategy",
            "vote",
            "--answer",
            "choice",
            "--synthesize",
            "local:judge",
            "--json",
            // The dissenting third answer is quoted: it is awaited, not cancelled.
            "--wait-all",
            "Pick one.",
        ],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["synthesis_source"], "synthesizer");
    assert_eq!(json["synthesizer"], "local:judge");
    assert!(
        json["synthesis"]
            .as_str()
            .unwrap()
            .contains("Dissent: one participant chose A.")
    );
    assert_eq!(json["usage"]["calls"], 4);
    assert!(json.get("warnings").is_none());
    let judge: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.json()["model"] == "judge")
        .collect();
    assert_eq!(judge.len(), 1);
    // The third participant's compared part (A) is quoted, inside a fence, after its label.
    let asked = judge[0].json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        asked.contains("\nParticipant 3 [")
            && asked.contains("]:\nCompared part of its answer:\n```text\nA\n```\n"),
        "{asked}"
    );
    assert!(asked.contains("Agreement found"), "{asked}");
    assert!(asked.contains("```text\nfinal — "), "{asked}");
    assert!(asked.contains("Dissent:"), "{asked}");
}

#[test]
fn a_failed_synthesizer_falls_back_to_the_winner_and_says_so() {
    let (_server, sandbox, config) = panel_with_judge(crate::common::openai_error(
        400,
        "model judge does not exist",
        "invalid_request_error",
        Some("model_not_found"),
    ));
    let args = [
        "ask",
        "--config",
        config.to_str().unwrap(),
        "--strategy",
        "vote",
        "--answer",
        "choice",
        "--synthesize",
        "local:judge",
        "--retries",
        "0",
    ];
    let (json, code) = run_json(&sandbox, &[&args[..], &["--json", "Pick one."]].concat());
    assert_eq!(code, 0, "the decision stands: {json}");
    assert_eq!(json["synthesis_source"], "winner_verbatim");
    assert_eq!(json["synthesis"], "Worked it out.\nFinal answer: C");
    assert!(
        json["synthesis_error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{json}"
    );
    let out = sandbox.cmd().args(args).arg("Pick one.").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Synthesis (the winner's answer, verbatim: local:judge failed"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("warning: the synthesizer local:judge failed")
    );
}

#[test]
fn a_synthesizer_that_sits_on_the_panel_is_warned_about() {
    let (_server, sandbox, config) = panel_with_judge(openai_ok("unused", 1, 1));
    let out = sandbox
        .cmd()
        .args([
            "ask",
            "--config",
            config.to_str().unwrap(),
            "--answer",
            "choice",
        ])
        .args([
            "--strategy",
            "vote",
            "--synthesize",
            "local:m1",
            "--json",
            "Pick one.",
        ])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["synthesis_source"], "synthesizer");
    assert!(
        json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("also sits on the panel"),
        "{json}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("also sits on the panel"));
}

#[test]
fn confidence_is_reported_raw_and_recalibrated_and_refused_where_unused() {
    let (_server, sandbox, config) = panel(&[
        ("m1", "Final answer: B\nConfidence: 97%"),
        ("m2", "Final answer: B\nConfidence: 45%"),
        ("m3", "Final answer: B"),
    ]);
    let config = config.to_str().unwrap();
    let (json, code) = run_json(
        &sandbox,
        &[
            "ask",
            "--config",
            config,
            "--strategy",
            "vote",
            "--answer",
            "choice",
            "--confidence",
            "--json",
            // Every seat's confidence is reported: none is cancelled as not needed.
            "--wait-all",
            "Pick one.",
        ],
    );
    assert_eq!(code, 0, "{json}");
    let reported = json["self_confidence"].as_array().unwrap();
    assert_eq!(reported[0]["raw"], 0.97);
    assert_eq!(reported[0]["bucket"], "high");
    assert_eq!(reported[1]["bucket"], "low");
    assert_eq!(reported[2]["raw"], Value::Null);
    assert_eq!(reported[2]["bucket"], "medium");

    let out = sandbox
        .cmd()
        .args([
            "ask",
            "--config",
            config,
            "--strategy",
            "rank",
            "--confidence",
            "Q?",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--confidence works with --strategy metastable or vote")
    );
}

#[test]
fn leader_over_http_commits_when_followers_accept() {
    let server = TestServer::start(|req, _| {
        let body = req.json();
        let user = body["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        if user.contains("Vote: ACCEPT") {
            openai_ok("Vote: ACCEPT\nCritique: none", 40, 4)
        } else {
            openai_ok("Computed.\nFinal answer: 391", 20, 5)
        }
    });
    let mut config = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
        server.url()
    );
    for m in ["m1", "m2", "m3"] {
        config.push_str(&format!(
            "\n[[participants]]\nprovider = \"local\"\nmodel = \"{m}\"\n"
        ));
    }
    let sandbox = Sandbox::new();
    let path = sandbox.write("panel.toml", &config);
    let (json, code) = run_json(
        &sandbox,
        &[
            "ask",
            "--config",
            path.to_str().unwrap(),
            "--strategy",
            "leader",
            "--answer",
            "number",
            "--json",
            // Both followers' votes are awaited (the first accept already commits).
            "--wait-all",
            "What is 17 * 23?",
        ],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["status"], "final");
    assert_eq!(json["answer"], "391");
    assert_eq!(json["terms"].as_array().unwrap().len(), 1);
    assert_eq!(json["terms"][0]["committed"], true);
    assert_eq!(json["terms"][0]["accepted_by"].as_array().unwrap().len(), 2);
    assert_eq!(server.count(), 5, "three answers, then two follower votes");
}

#[test]
fn verbose_logs_a_retried_synthesizer_call() {
    let judge_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = judge_calls.clone();
    let server =
        TestServer::start(
            move |req, _| match req.json()["model"].as_str().unwrap_or_default() {
                "judge" if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                    crate::common::with_header(
                        crate::common::openai_error(429, "Rate limit reached", "requests", None),
                        "retry-after-ms",
                        "10",
                    )
                }
                "judge" => openai_ok("C.\nDissent: none.", 5, 5),
                _ => openai_ok("Final answer: C", 5, 5),
            },
        );
    let sandbox = Sandbox::new();
    let config = sandbox.write(
        "panel.toml",
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
            server.url()
        ),
    );
    let out = sandbox
        .cmd()
        .args(["ask", "--config", config.to_str().unwrap()])
        .args(["-m", "local:m@2", "--synthesize", "local:judge", "-v", "Q?"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(judge_calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(
        stderr.contains("[synthesis] local:judge (judge): attempt 1 failed, retrying"),
        "{stderr}"
    );
}
