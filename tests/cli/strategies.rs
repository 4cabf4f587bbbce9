//! The decision rules of the strategies other than metastable and hanzo, shown on
//! scripted panels built to separate them (docs/protocol.md §4), driven through the engine.

use llm_consensus::consensus::{self, CallResult, CallSpec, Decision, Params, Seat, StrategyKind};
use llm_consensus::similarity::AnswerMode;

/// A scripted seat: answers by call (the last repeats) and latency.
#[derive(Clone, Debug)]
struct Scripted {
    name: String,
    answers: Vec<String>,
    ms: f64,
    weight: f64,
}

fn seat(name: &str, answer: &str, ms: f64) -> Scripted {
    Scripted {
        name: name.into(),
        answers: vec![answer.into()],
        ms,
        weight: 1.0,
    }
}

fn seat_seq(name: &str, answers: &[&str], ms: f64) -> Scripted {
    Scripted {
        name: name.into(),
        answers: answers.iter().map(|a| a.to_string()).collect(),
        ms,
        weight: 1.0,
    }
}

struct Run {
    decision: Decision,
    specs: Vec<CallSpec>,
}

fn run(panel: &[Scripted], params: &Params) -> Run {
    let seats = panel
        .iter()
        .map(|s| Seat {
            weight: s.weight,
            ..Seat::new(s.name.clone())
        })
        .collect();
    let mut strategy = consensus::build(params, seats, "Which option is right?");
    let mut calls = vec![0usize; panel.len()];
    let mut specs = Vec::new();
    let decision = consensus::drive(strategy.as_mut(), |call| {
        specs.push(call.clone());
        let s = &panel[call.seat];
        let n = calls[call.seat];
        calls[call.seat] += 1;
        CallResult::ok(
            call.seat,
            s.answers[n.min(s.answers.len() - 1)].clone(),
            s.ms,
        )
    });
    Run { decision, specs }
}

fn params(strategy: StrategyKind, n: usize) -> Params {
    let mut p = Params::defaults(n);
    p.strategy = strategy;
    p.seed = 11;
    p.answer = AnswerMode::Choice;
    if strategy == StrategyKind::Vote {
        p.rounds = 0;
    }
    p
}

fn winner_name(panel: &[Scripted], d: &Decision) -> Option<String> {
    d.winner.map(|w| panel[w].name.clone())
}

/// Three slow seats say B; two fast seats say A.
fn slow_majority_fast_minority() -> Vec<Scripted> {
    vec![
        seat("fast-1", "Quick take.\nFinal answer: A", 40.0),
        seat("slow-1", "Careful reasoning.\nThe answer is (B).", 90_000.0),
        seat("fast-2", "Obvious.\nAnswer: A", 60.0),
        seat("slow-2", "Worked it out: \\boxed{B}", 60_000.0),
        seat("slow-3", "Long derivation.\nFinal answer: (B)", 120_000.0),
    ]
}

#[test]
fn vote_a_slow_majority_beats_a_fast_minority_and_is_final() {
    let panel = slow_majority_fast_minority();
    let r = run(&panel, &params(StrategyKind::Vote, panel.len()));
    let d = &r.decision;
    assert_eq!(d.answer.as_deref(), Some("B"));
    assert!(d.finalized, "3 of 5 is a majority");
    assert!(winner_name(&panel, d).unwrap().starts_with("slow"));
    assert_eq!(r.specs.len(), 5, "one independent round: one call per seat");
    let groups: Vec<(&str, usize)> = d
        .details
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.members.len()))
        .collect();
    assert_eq!(groups, [("B", 3), ("A", 2)]);
    assert!((d.details.groups[0].share - 0.6).abs() < 1e-12);
    assert!(d.details.tie.is_empty());
}

#[test]
fn vote_finality_follows_the_quorum_share() {
    let panel = slow_majority_fast_minority();
    let mut p = params(StrategyKind::Vote, panel.len());
    for (share, final_) in [
        ("majority", true),
        ("0.6", true),
        ("supermajority", false),
        ("unanimous", false),
    ] {
        p.quorum_share = share.parse().unwrap();
        let d = run(&panel, &p).decision;
        assert_eq!(d.finalized, final_, "--quorum-share {share}");
        assert_eq!(
            d.answer.as_deref(),
            Some("B"),
            "the winner does not depend on finality"
        );
    }
    // Exactly half is not a majority.
    let half = vec![
        seat("a", "Final answer: A", 10.0),
        seat("b", "Final answer: A", 10.0),
        seat("c", "Final answer: C", 10.0),
        seat("d", "I do not know.", 10.0),
    ];
    let d = run(&half, &params(StrategyKind::Vote, 4)).decision;
    assert_eq!(d.answer.as_deref(), Some("A"));
    assert!(!d.finalized, "2 of 4 is not more than half");
}

#[test]
fn vote_a_two_way_tie_is_reported_and_never_broken() {
    let panel = [
        seat("a", "Final answer: A", 10.0),
        seat("b", "Final answer: B", 20.0),
        seat("c", "Final answer: A", 30.0),
        seat("d", "Final answer: B", 40.0),
    ];
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]] {
        let shuffled: Vec<Scripted> = order.iter().map(|&i| panel[i].clone()).collect();
        let d = run(&shuffled, &params(StrategyKind::Vote, 4)).decision;
        assert_eq!(d.winner, None, "a tie has no winner");
        assert_eq!(d.answer, None);
        assert!(!d.finalized);
        let mut tie = d.details.tie.clone();
        tie.sort();
        assert_eq!(tie, ["A", "B"]);
    }
}

#[test]
fn vote_seat_weight_decides_the_plurality() {
    let mut panel = vec![
        seat("light-1", "Final answer: A", 10.0),
        seat("light-2", "Final answer: A", 10.0),
        seat("heavy", "Final answer: C", 10.0),
    ];
    panel[2].weight = 3.0;
    let d = run(&panel, &params(StrategyKind::Vote, 3)).decision;
    assert_eq!(d.answer.as_deref(), Some("C"));
    assert!((d.details.groups[0].share - 0.6).abs() < 1e-12);
    assert!(d.finalized);
}

#[test]
fn vote_an_answer_without_a_key_supports_nobody() {
    let panel = vec![
        seat("a", "Final answer: D", 10.0),
        seat("b", "It depends on the context.", 10.0),
        seat("c", "Final answer: D", 10.0),
    ];
    let mut p = params(StrategyKind::Vote, 3);
    p.quorum_share = "unanimous".parse().unwrap();
    let d = run(&panel, &p).decision;
    assert_eq!(d.seats[1].key, None);
    assert_eq!(d.seats[1].support, Some(0.0));
    assert_eq!(d.answer.as_deref(), Some("D"));
    assert!((d.seats[0].support.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!(
        !d.finalized,
        "the keyless answer still counts as not agreeing"
    );
}

#[test]
fn vote_refinement_rounds_run_only_when_asked() {
    let panel = vec![
        seat("a", "Final answer: A", 10.0),
        seat_seq(
            "b",
            &["Final answer: B", "Peers convinced me.\nFinal answer: A"],
            10.0,
        ),
        seat("c", "Final answer: A", 10.0),
        seat_seq("d", &["Final answer: B", "Final answer: A"], 10.0),
    ];
    let p = params(StrategyKind::Vote, 4);
    let once = run(&panel, &p);
    assert_eq!(once.specs.len(), 4);
    assert_eq!(once.decision.answer, None, "2 against 2 is a tie");
    let mut refined = p.clone();
    refined.rounds = 2;
    let r = run(&panel, &refined);
    assert_eq!(r.decision.answer.as_deref(), Some("A"));
    assert!(r.decision.finalized);
    // Round 1 changed answers; round 2 repeats them and ends the refinement.
    assert_eq!(r.decision.rounds_executed, 2);
    let round1: Vec<&CallSpec> = r.specs.iter().filter(|s| s.round == 1).collect();
    assert_eq!(round1.len(), 4);
    assert!(round1.iter().all(|s| s.user.contains("\nPeer 1 [")));
}

// ---------------------------------------------------------------------------------------
// rank
// ---------------------------------------------------------------------------------------

/// The letters of the answers shown in a ballot prompt, in the order shown.
fn shown_letters(prompt: &str) -> Vec<char> {
    let mut letters = Vec::new();
    for i in 1.. {
        let Some(start) = prompt.find(&format!("\nAnswer {i}:\n")) else {
            break;
        };
        let rest = &prompt[start + 1..];
        let end = rest[1..]
            .find(&format!("\nAnswer {}:\n", i + 1))
            .or_else(|| rest.find("\nRank these"))
            .unwrap_or(rest.len());
        let body = &rest[rest.find('\n').unwrap() + 1..end];
        letters.push(llm_consensus::similarity::choice_key(body.trim_end_matches('`')).unwrap());
    }
    letters
}

/// A voter that answers `own` and then ranks what it is shown by `preference`
/// (letters earlier in it rank higher), or writes `ballot` verbatim when given.
struct Voter {
    name: &'static str,
    own: char,
    preference: Vec<char>,
    ballot: Option<&'static str>,
    ms: f64,
}

fn voter(name: &'static str, own: char, preference: &str) -> Voter {
    Voter {
        name,
        own,
        preference: preference.chars().collect(),
        ballot: None,
        ms: 100.0,
    }
}

fn run_rank(voters: &[Voter], params: &Params) -> Run {
    let seats = voters.iter().map(|v| Seat::new(v.name)).collect();
    let mut strategy = consensus::build(params, seats, "Which option is right?");
    let mut specs = Vec::new();
    let decision = consensus::drive(strategy.as_mut(), |call| {
        specs.push(call.clone());
        let v = &voters[call.seat];
        if call.round == 0 {
            return CallResult::ok(
                call.seat,
                format!("Reasoning of {}.\nFinal answer: {}", v.name, v.own),
                v.ms,
            );
        }
        if let Some(text) = v.ballot {
            return CallResult::ok(call.seat, text, v.ms);
        }
        let shown = shown_letters(&call.user);
        assert!(
            !call.user.contains(&format!("Reasoning of {}.", v.name)),
            "{} was shown its own answer",
            v.name
        );
        let mut order: Vec<usize> = (0..shown.len()).collect();
        order.sort_by_key(|&i| {
            v.preference
                .iter()
                .position(|&c| c == shown[i])
                .unwrap_or(99)
        });
        let ranking: Vec<String> = order.iter().map(|i| (i + 1).to_string()).collect();
        CallResult::ok(
            call.seat,
            format!(
                "I compared them carefully.\nRanking: {}",
                ranking.join(" > ")
            ),
            v.ms,
        )
    });
    Run { decision, specs }
}

fn names(d: &Decision, voters: &[Voter]) -> Option<&'static str> {
    d.winner.map(|w| voters[w].name)
}

#[test]
fn rank_never_shows_a_voter_its_own_answer_and_borda_picks_the_best_ranked() {
    // Slow voters agree on B; two fast ones say A. Everyone prefers B over A after their own.
    let mut voters = vec![
        voter("fast-1", 'A', "ABCD"),
        voter("slow-1", 'B', "BACD"),
        voter("fast-2", 'A', "ABCD"),
        voter("slow-2", 'B', "BACD"),
        voter("slow-3", 'B', "BACD"),
    ];
    voters[0].ms = 20.0;
    voters[2].ms = 30.0;
    let r = run_rank(&voters, &params(StrategyKind::Rank, 5));
    let d = &r.decision;
    assert_eq!(d.answer.as_deref(), Some("B"));
    assert!(names(d, &voters).unwrap().starts_with("slow"));
    // Ballots show the 4 other answers, never the voter's own.
    for spec in r.specs.iter().filter(|s| s.round == 1) {
        assert_eq!(shown_letters(&spec.user).len(), 4);
    }
    assert_eq!(
        r.specs.len(),
        10,
        "one answer and one ballot per participant"
    );
    assert_eq!(d.details.ballots.len(), 5);
    assert!(d.details.ballots.iter().all(|b| b.ranking.is_some()));
    assert!(!d.finalized, "no answer is first on 80% of the ballots");
}

#[test]
fn rank_chb_prefers_first_places_when_the_borda_winner_has_few() {
    let voters = vec![
        voter("a", 'A', "BCDE"),
        voter("b", 'B', "ACDE"),
        voter("c", 'C', "ABDE"),
        voter("d", 'D', "ABCE"),
        voter("e", 'E', "BCDA"),
    ];
    let mut p = params(StrategyKind::Rank, 5);
    let borda = run_rank(&voters, &p).decision;
    assert_eq!(
        borda.answer.as_deref(),
        Some("B"),
        "Borda: B 10 points, A 9"
    );
    assert_eq!(borda.details.scores[0].participant, "b");
    assert_eq!(borda.details.scores[0].borda, 10.0);
    p.rule = "chb".parse().unwrap();
    let chb = run_rank(&voters, &p).decision;
    assert_eq!(
        chb.answer.as_deref(),
        Some("A"),
        "CHB: A has 3 first places of 5"
    );
}

#[test]
fn rank_drops_unreadable_ballots_and_reports_them() {
    let mut voters = vec![
        voter("a", 'C', "CAB"),
        voter("b", 'C', "CAB"),
        voter("c", 'A', "CAB"),
        voter("d", 'B', "CAB"),
    ];
    voters[3].ballot = Some("They are all fine answers, I cannot choose.");
    let d = run_rank(&voters, &params(StrategyKind::Rank, 4)).decision;
    assert_eq!(d.answer.as_deref(), Some("C"));
    assert_eq!(d.details.failure, None);
    let dropped: Vec<(&str, &str)> = d
        .details
        .ballots
        .iter()
        .filter_map(|b| b.dropped.as_deref().map(|why| (b.voter.as_str(), why)))
        .collect();
    assert_eq!(dropped, [("d", "no `Ranking:` line")]);

    // Three of four unreadable: fewer than half, the run fails with the reason.
    voters[0].ballot = Some("Ranking: 1 > 1 > 2");
    voters[1].ballot = Some("Ranking: 7");
    let d = run_rank(&voters, &params(StrategyKind::Rank, 4)).decision;
    assert_eq!(d.winner, None);
    assert!(!d.finalized);
    let failure = d.details.failure.expect("the run fails");
    assert!(failure.contains("only 1 of 4 ballots"), "{failure}");
}

#[test]
fn rank_is_final_when_the_winner_tops_enough_ballots() {
    let voters = vec![
        voter("a", 'D', "DAB"),
        voter("b", 'D', "DAB"),
        voter("c", 'D', "DAB"),
        voter("d", 'D', "DAB"),
    ];
    let d = run_rank(&voters, &params(StrategyKind::Rank, 4)).decision;
    assert_eq!(d.answer.as_deref(), Some("D"));
    // First places are spread over four identical answers, but every ballot tops a D.
    assert_eq!(d.details.scores.len(), 4);
    let firsts: Vec<usize> = d.details.scores.iter().map(|s| s.first_places).collect();
    assert_eq!(firsts.iter().sum::<usize>(), 4);
    assert!(firsts[0] < 4, "{firsts:?}");
    assert!(d.finalized);

    // Two of four ballots top the winner's answer: 50% < beta_2.
    let split = vec![
        voter("a", 'D', "DAB"),
        voter("b", 'D', "DAB"),
        voter("c", 'A', "ADB"),
        voter("d", 'A', "ADB"),
    ];
    let d = run_rank(&split, &params(StrategyKind::Rank, 4)).decision;
    assert!(!d.finalized);
}

// ---------------------------------------------------------------------------------------
// bft
// ---------------------------------------------------------------------------------------

/// How a scripted participant attests.
#[derive(Clone, Copy)]
enum Attests {
    /// AGREE exactly when the proposal's letter is its own.
    Honest,
    /// These verdicts in prepare and commit, whatever the proposal.
    Fixed(&'static str, &'static str),
    /// AGREE, quoting a digest that is not the proposal's.
    WrongDigest,
}

struct Member {
    name: &'static str,
    own: char,
    ms: f64,
    attests: Attests,
}

fn member(name: &'static str, own: char, ms: f64, attests: Attests) -> Member {
    Member {
        name,
        own,
        ms,
        attests,
    }
}

/// The proposal quoted in an attestation prompt, and the digest announced with it.
fn proposal_in(prompt: &str) -> (String, String) {
    let at = prompt.find("(SHA-256 ").unwrap() + "(SHA-256 ".len();
    let digest = prompt[at..at + 64].to_string();
    let body_start = prompt[at..].find("```text\n").unwrap() + at + "```text\n".len();
    let body_end = prompt[body_start..].find("\n```").unwrap() + body_start;
    (prompt[body_start..body_end].to_string(), digest)
}

fn run_bft(panel: &[Member], params: &Params) -> Run {
    let seats = panel.iter().map(|m| Seat::new(m.name)).collect();
    let mut strategy = consensus::build(params, seats, "Which option is right?");
    let mut specs = Vec::new();
    let decision = consensus::drive(strategy.as_mut(), |call| {
        specs.push(call.clone());
        let m = &panel[call.seat];
        if call.round == 0 {
            return CallResult::ok(
                call.seat,
                format!("Reasoning of {}.\nFinal answer: {}", m.name, m.own),
                m.ms,
            );
        }
        let (proposal, digest) = proposal_in(&call.user);
        let letter = llm_consensus::similarity::choice_key(&proposal).unwrap();
        let verdict = match m.attests {
            Attests::Honest if letter == m.own => "AGREE",
            Attests::Honest => "DISAGREE",
            Attests::Fixed(p, c) => [p, c][call.round - 1],
            Attests::WrongDigest => {
                return CallResult::ok(
                    call.seat,
                    format!("Attestation: AGREE {}\nReason: fine.", "0".repeat(64)),
                    m.ms,
                );
            }
        };
        CallResult::ok(
            call.seat,
            format!(
                "Checked it.\nAttestation: {verdict} {digest}\nReason: my answer is {}.",
                m.own
            ),
            m.ms,
        )
    });
    Run { decision, specs }
}

fn suspects(d: &Decision) -> Vec<(String, Vec<String>)> {
    d.details
        .suspects
        .iter()
        .map(|s| (s.participant.clone(), s.reasons.clone()))
        .collect()
}

#[test]
fn bft_decides_the_slow_majority_with_two_quorums_of_attestations() {
    let panel = [
        member("fast", 'A', 30.0, Attests::Honest),
        member("slow-1", 'B', 60_000.0, Attests::Honest),
        member("slow-2", 'B', 90_000.0, Attests::Honest),
        member("slow-3", 'B', 120_000.0, Attests::Honest),
    ];
    let r = run_bft(&panel, &params(StrategyKind::Bft, 4));
    let d = &r.decision;
    assert_eq!(d.answer.as_deref(), Some("B"));
    assert!(
        d.finalized,
        "3 = 2f+1 AGREE in prepare and in commit (f = 1)"
    );
    assert_eq!(
        r.specs.len(),
        12,
        "answer, prepare and commit for each of 4"
    );
    // Every attestation names the SHA-256 of the proposal shown.
    let winner_text = d.synthesis.clone().unwrap();
    let digest = llm_consensus::consensus::bft::sha256_hex(&winner_text);
    assert_eq!(d.details.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(d.details.attestations.len(), 8);
    assert!(d.details.attestations.iter().all(|a| a.digest == digest));
    for spec in r.specs.iter().filter(|s| s.round > 0) {
        assert_eq!(
            proposal_in(&spec.user),
            (winner_text.clone(), digest.clone())
        );
    }
    assert_eq!(
        suspects(d),
        [(
            "fast".to_string(),
            vec!["its answer (A) is outside the decided group".to_string()]
        )]
    );
}

#[test]
fn bft_names_a_participant_that_contradicts_its_own_attestation() {
    let panel = [
        member("b1", 'B', 100.0, Attests::Honest),
        member("flip", 'A', 100.0, Attests::Fixed("AGREE", "DISAGREE")),
        member("b2", 'B', 100.0, Attests::Honest),
        member("b3", 'B', 100.0, Attests::Honest),
    ];
    let d = run_bft(&panel, &params(StrategyKind::Bft, 4)).decision;
    assert!(d.finalized);
    let found = suspects(&d);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "flip");
    let reasons = found[0].1.join("; ");
    assert!(
        reasons.contains("attested AGREE in prepare to a proposal its own answer contradicts"),
        "{reasons}"
    );
    assert!(
        reasons.contains("changed its attestation from AGREE (prepare) to DISAGREE (commit)"),
        "{reasons}"
    );
}

#[test]
fn bft_without_2f_plus_1_matching_prepares_never_commits() {
    // A two-way split: whichever side proposes, only 2 of 4 agree.
    let split = [
        member("a1", 'A', 100.0, Attests::Honest),
        member("b1", 'B', 100.0, Attests::Honest),
        member("a2", 'A', 100.0, Attests::Honest),
        member("b2", 'B', 100.0, Attests::Honest),
    ];
    let r = run_bft(&split, &params(StrategyKind::Bft, 4));
    assert!(!r.decision.finalized);
    assert!(
        r.specs.iter().all(|s| s.round < 2),
        "no commit phase after a failed prepare"
    );

    // Agreeing on a different digest is not a matching attestation.
    let forged = [
        member("b1", 'B', 100.0, Attests::Honest),
        member("b2", 'B', 100.0, Attests::Honest),
        member("x1", 'B', 100.0, Attests::WrongDigest),
        member("x2", 'B', 100.0, Attests::WrongDigest),
    ];
    let d = run_bft(&forged, &params(StrategyKind::Bft, 4)).decision;
    assert!(!d.finalized);
    let names: Vec<String> = suspects(&d).into_iter().map(|s| s.0).collect();
    assert_eq!(names, ["x1", "x2"]);
}

// ---------------------------------------------------------------------------------------
// leader
// ---------------------------------------------------------------------------------------

struct Citizen {
    name: &'static str,
    own: char,
    ms: f64,
    /// As leader of a later term, propose the letter most critiques argue for.
    persuadable: bool,
}

fn citizen(name: &'static str, own: char, ms: f64, persuadable: bool) -> Citizen {
    Citizen {
        name,
        own,
        ms,
        persuadable,
    }
}

fn run_leader(panel: &[Citizen], params: &Params) -> Run {
    let seats = panel.iter().map(|c| Seat::new(c.name)).collect();
    let mut strategy = consensus::build(params, seats, "Which option is right?");
    let mut specs = Vec::new();
    let decision = consensus::drive(strategy.as_mut(), |call| {
        specs.push(call.clone());
        let c = &panel[call.seat];
        let answer = |letter: char| format!("Reasoning of {}.\nFinal answer: {letter}", c.name);
        if call.round == 0 {
            return CallResult::ok(call.seat, answer(c.own), c.ms);
        }
        if call.user.contains("You lead term") {
            let argued: Vec<char> = call
                .user
                .match_indices("The answer is ")
                .filter_map(|(i, _)| call.user[i + 14..].chars().next())
                .collect();
            let mut letter = c.own;
            if c.persuadable
                && let Some(&most) = argued
                    .iter()
                    .max_by_key(|&&l| argued.iter().filter(|&&x| x == l).count())
            {
                letter = most;
            }
            return CallResult::ok(call.seat, answer(letter), c.ms);
        }
        let start = call.user.rfind("```text\n").unwrap() + 8;
        let end = call.user[start..].find("\n```").unwrap() + start;
        let proposed = llm_consensus::similarity::choice_key(&call.user[start..end]).unwrap();
        let text = if proposed == c.own {
            "Vote: ACCEPT\nCritique: none".to_string()
        } else {
            format!("Vote: REJECT\nCritique: The answer is {}.", c.own)
        };
        CallResult::ok(call.seat, text, c.ms)
    });
    Run { decision, specs }
}

fn fast_wrong_leaders(persuadable: bool) -> Vec<Citizen> {
    vec![
        citizen("slow-1", 'B', 60_000.0, false),
        citizen("fast-1", 'A', 20.0, false),
        citizen("slow-2", 'B', 90_000.0, false),
        citizen("fast-2", 'A', 30.0, persuadable),
        citizen("slow-3", 'B', 120_000.0, false),
    ]
}

#[test]
fn leader_terms_pass_from_fast_wrong_leaders_to_the_slow_majority() {
    let panel = fast_wrong_leaders(false);
    let r = run_leader(&panel, &params(StrategyKind::Leader, 5));
    let d = &r.decision;
    assert_eq!(d.answer.as_deref(), Some("B"));
    assert!(d.finalized, "3 of 5 accept in term 3");
    let terms: Vec<(&str, Option<&str>, bool)> = d
        .details
        .terms
        .iter()
        .map(|t| (t.leader.as_str(), t.proposal.as_deref(), t.committed))
        .collect();
    assert_eq!(
        terms,
        [
            ("fast-1", Some("A"), false),
            ("fast-2", Some("A"), false),
            ("slow-1", Some("B"), true)
        ]
    );
    assert_eq!(
        d.details.terms[0].rejected_by,
        ["slow-1", "slow-2", "slow-3"]
    );
    // The second leader was shown the first term's critiques.
    let second = r
        .specs
        .iter()
        .find(|s| s.user.contains("You lead term 2"))
        .unwrap();
    assert_eq!(second.user.matches("The answer is B.").count(), 3);
}

#[test]
fn leader_commits_as_soon_as_a_leader_heeds_the_critiques() {
    let panel = fast_wrong_leaders(true);
    let r = run_leader(&panel, &params(StrategyKind::Leader, 5));
    let d = &r.decision;
    assert_eq!(d.answer.as_deref(), Some("B"));
    assert!(d.finalized);
    assert_eq!(d.details.terms.len(), 2);
    assert_eq!(d.winner.map(|w| panel[w].name), Some("fast-2"));
    // round 0 (5) + term 1 votes (4) + term 2 proposal (1) + votes (4).
    assert_eq!(r.specs.len(), 14);
}

#[test]
fn leader_without_a_majority_in_any_term_is_not_final() {
    let panel = fast_wrong_leaders(false);
    let mut p = params(StrategyKind::Leader, 5);
    p.rounds = 1;
    let d = run_leader(&panel, &p).decision;
    assert!(!d.finalized);
    assert_eq!(
        d.answer.as_deref(),
        Some("A"),
        "the latest proposal is reported"
    );
    assert_eq!(d.details.terms.len(), 1);
}

// ---------------------------------------------------------------------------------------
// --confidence
// ---------------------------------------------------------------------------------------

/// Three unsure seats say A, two sure ones say B.
fn unsure_majority_sure_minority() -> Vec<Scripted> {
    vec![
        seat("u1", "Final answer: A\nConfidence: 30%", 100.0),
        seat("s1", "Final answer: B\nConfidence: 95%", 100.0),
        seat("u2", "Final answer: A\nConfidence: 0.4", 100.0),
        seat("s2", "Final answer: B\nConfidence: 99%", 100.0),
        seat("u3", "Final answer: A\nConfidence: 20%", 100.0),
    ]
}

#[test]
fn confidence_buckets_weigh_the_vote_only_when_asked() {
    let panel = unsure_majority_sure_minority();
    let mut p = params(StrategyKind::Vote, 5);
    let plain = run(&panel, &p);
    assert_eq!(plain.decision.answer.as_deref(), Some("A"));
    assert!(plain.decision.details.self_confidence.is_empty());
    assert!(
        !plain.specs[0]
            .system
            .as_deref()
            .unwrap_or("")
            .contains("Confidence:")
    );

    p.confidence = true;
    let r = run(&panel, &p);
    // A: 3 × 0.5 = 1.5; B: 2 × 1.0 = 2.0.
    assert_eq!(r.decision.answer.as_deref(), Some("B"));
    assert!((r.decision.details.groups[0].share - 2.0 / 3.5).abs() < 1e-12);
    assert!(
        r.specs[0]
            .system
            .as_deref()
            .unwrap()
            .contains("Confidence: N%")
    );
    let reported: Vec<(Option<f64>, &str, f64)> = r
        .decision
        .details
        .self_confidence
        .iter()
        .map(|c| (c.raw, c.bucket, c.weight))
        .collect();
    assert_eq!(reported[0], (Some(0.3), "low", 0.5));
    assert_eq!(reported[1], (Some(0.95), "high", 1.0));
    assert_eq!(reported[2], (Some(0.4), "low", 0.5));
}

#[test]
fn confidence_weighs_metastable_support_and_never_becomes_the_key() {
    let panel = unsure_majority_sure_minority();
    let mut p = params(StrategyKind::Metastable, 5);
    p.confidence = true;
    p.rounds = 0;
    let d = run(&panel, &p).decision;
    assert_eq!(d.answer.as_deref(), Some("B"));
    assert!((d.seats[1].support.unwrap() - 2.0 / 3.5).abs() < 1e-12);

    // A number key is not taken from the confidence line.
    let numbers = vec![
        seat("a", "It is 42.\nConfidence: 80%", 100.0),
        seat("b", "I get 42\nConfidence: 60%", 100.0),
    ];
    let mut p = params(StrategyKind::Metastable, 2);
    p.answer = AnswerMode::Number;
    p.confidence = true;
    let d = run(&numbers, &p).decision;
    assert_eq!(d.answer.as_deref(), Some("42"));
    assert!(d.finalized);
}

// ---------------------------------------------------------------------------------------
// metastable: ties between positions
// ---------------------------------------------------------------------------------------

#[test]
fn metastable_breaks_a_support_tie_by_shared_reasoning_not_speed() {
    let shared = "The derivative of x squared is two x, so at three the slope is six.";
    let panel = [
        seat("fast-b1", "Guessing quickly.\nFinal answer: B", 20.0),
        seat("slow-a1", &format!("{shared}\nFinal answer: A"), 90_000.0),
        seat(
            "fast-b2",
            "Some hunch about tangents maybe.\nFinal answer: B",
            30.0,
        ),
        seat("slow-a2", &format!("{shared}\nFinal answer: A"), 120_000.0),
    ];
    let mut p = params(StrategyKind::Metastable, 4);
    p.rounds = 0;
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let shuffled: Vec<Scripted> = order.iter().map(|&i| panel[i].clone()).collect();
        let d = run(&shuffled, &p).decision;
        assert_eq!(d.answer.as_deref(), Some("A"), "order {order:?}");
        assert!(!d.finalized, "a 2-2 split is never final");
    }
}

#[test]
fn metastable_breaks_a_tie_between_whole_answers_by_the_words_the_panel_shares() {
    // Whole answers are the keys: two pairs of identical answers tie at 2/5 support. The
    // fifth answer shares most of its words with the slow pair and none with the fast
    // one, so the slow pair's position is the more central and wins over speed.
    let slow = "The derivative of x squared is two x, so at three the slope is six.";
    let near =
        format!("{slow} And the curve rises steeply past that point on the graph overall, indeed.");
    let panel = [
        seat("fast-b1", "Maybe ten.", 20.0),
        seat("slow-a1", slow, 90_000.0),
        seat("near", &near, 60_000.0),
        seat("fast-b2", "Maybe ten.", 30.0),
        seat("slow-a2", slow, 120_000.0),
    ];
    let mut p = params(StrategyKind::Metastable, 5);
    p.rounds = 0;
    p.answer = AnswerMode::Full;
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
        let shuffled: Vec<Scripted> = order.iter().map(|&i| panel[i].clone()).collect();
        let d = run(&shuffled, &p).decision;
        assert_eq!(d.answer.as_deref(), Some(slow), "order {order:?}");
        assert!(!d.finalized, "2 of 5 is never final");
    }
}

#[test]
fn a_failed_judgement_call_is_absence_not_dissent() {
    // bft: one of four attestation calls fails in both phases; the other three decide and
    // the absent participant is not suspected.
    let panel = [
        member("b1", 'B', 100.0, Attests::Honest),
        member("b2", 'B', 100.0, Attests::Honest),
        member("b3", 'B', 100.0, Attests::Honest),
        member("down", 'B', 100.0, Attests::Honest),
    ];
    let seats = panel.iter().map(|m| Seat::new(m.name)).collect();
    let mut strategy = consensus::build(&params(StrategyKind::Bft, 4), seats, "Q?");
    let d = consensus::drive(strategy.as_mut(), |call| {
        if call.round > 0 && call.seat == 3 {
            return CallResult::failed(call.seat, "HTTP 503", 10.0);
        }
        if call.round == 0 {
            return CallResult::ok(call.seat, "Final answer: B", 10.0);
        }
        let (_, digest) = proposal_in(&call.user);
        CallResult::ok(
            call.seat,
            format!("Attestation: AGREE {digest}\nReason: yes"),
            10.0,
        )
    });
    assert!(d.finalized);
    assert!(d.details.suspects.is_empty(), "{:?}", d.details.suspects);

    // leader: a follower whose vote call fails is not counted as rejecting.
    let seats = ["l", "f1", "f2", "down"].map(Seat::new).to_vec();
    let mut strategy = consensus::build(&params(StrategyKind::Leader, 4), seats, "Q?");
    let d = consensus::drive(strategy.as_mut(), |call| match (call.round, call.seat) {
        (0, s) => CallResult::ok(s, "Final answer: C", if s == 0 { 10.0 } else { 500.0 }),
        (_, 3) => CallResult::failed(3, "HTTP 503", 10.0),
        (_, s) => CallResult::ok(s, "Vote: ACCEPT\nCritique: none", 10.0),
    });
    assert!(d.finalized);
    assert_eq!(d.details.terms[0].rejected_by, Vec::<String>::new());
    assert_eq!(d.details.terms[0].accepted_by, ["f1", "f2"]);
}

#[test]
fn rank_a_failed_ballot_call_is_reported_but_does_not_count_as_unreadable() {
    let seats = ["a", "b", "c"].map(Seat::new).to_vec();
    let mut strategy = consensus::build(&params(StrategyKind::Rank, 3), seats, "Q?");
    let d = consensus::drive(strategy.as_mut(), |call| match (call.round, call.seat) {
        (0, s) => CallResult::ok(s, format!("Final answer: {}", ["A", "B", "B"][s]), 10.0),
        (_, 0 | 1) => CallResult::failed(call.seat, "HTTP 503", 10.0),
        (_, s) => {
            // Rank the B answer first when it is shown, else the order shown.
            let shown = shown_letters(&call.user);
            let first = shown.iter().position(|&l| l == 'B').unwrap_or(0);
            let other = 1 - first;
            CallResult::ok(s, format!("Ranking: {} > {}", first + 1, other + 1), 10.0)
        }
    });
    assert_eq!(
        d.details.failure, None,
        "1 readable of 2 answered ballots is half"
    );
    let absent = d.details.ballots.iter().find(|b| b.voter == "a").unwrap();
    assert!(absent.dropped.as_deref().unwrap().contains("HTTP 503"));
    assert_eq!(d.answer.as_deref(), Some("B"));
}
