//! Closing a round early: whether the outcome of the run is already certain, whatever
//! the calls still in flight return (docs/strategies.md, "Closing a round early").
//!
//! The test is the same for every strategy that allows it: on a copy of the strategy,
//! the round is absorbed once per scenario for the seats still out — all of them absent,
//! all of them giving one answer already seen (every one in turn: the strongest rival
//! among them), all of them giving an answer nobody gave — and the round may close only
//! when, in every scenario, the run would end after this round with a FINAL decision on
//! the same key. A round that is not the last, or a decision that is not FINAL, waits:
//! what a later round shows the seats must not depend on who answered first.

use super::{CallResult, Strategy};

/// More distinct answers than this to try: the round waits (the test stays cheap).
const MAX_SCENARIOS: usize = 16;

/// An answer no seat gave: the worst case when no rival answer was seen.
const UNSEEN: &str = "an answer no other participant gave (zq7xv)";

/// What a round is waiting for.
pub struct Pending<'a> {
    /// The results of the round so far.
    pub arrived: &'a [CallResult],
    /// The seats whose calls are still in flight.
    pub outstanding: &'a [usize],
    /// The distinct successful answers seen in the run so far (this round's included).
    pub seen: &'a [String],
    /// How long the round has been waiting: a late answer takes at least that long.
    pub elapsed_ms: f64,
}

/// The winning key, when the round may close now: the run would end after it with a
/// FINAL decision on that key whether the seats still out answer (like any answer seen,
/// or with one nobody gave) or not. None for a strategy that never closes early.
pub fn certain(strategy: &dyn Strategy, pending: &Pending<'_>) -> Option<String> {
    if pending.outstanding.is_empty() || pending.seen.len() > MAX_SCENARIOS {
        return None;
    }
    let absent = outcome(strategy, pending, None)?;
    let texts = pending.seen.iter().map(String::as_str);
    texts
        .chain([UNSEEN])
        .all(|text| outcome(strategy, pending, Some(text)).as_ref() == Some(&absent))
        .then_some(absent)
}

/// Whether `results` (the seats missing from them absent) end the run after this round
/// with a FINAL decision on `key`: answers that came in as the round closed may be kept
/// when they leave the certain outcome as it was.
pub fn keeps(strategy: &dyn Strategy, results: &[CallResult], key: &str) -> bool {
    let pending = Pending {
        arrived: results,
        outstanding: &[],
        seen: &[],
        elapsed_ms: 0.0,
    };
    outcome(strategy, &pending, None).as_deref() == Some(key)
}

/// The winning key if, with the seats still out giving `late` (None: absent), the run
/// would end after this round with a FINAL decision; else None.
fn outcome(strategy: &dyn Strategy, pending: &Pending<'_>, late: Option<&str>) -> Option<String> {
    let mut copy = strategy.fork()?;
    let mut results = pending.arrived.to_vec();
    if let Some(text) = late {
        results.extend(
            pending
                .outstanding
                .iter()
                .map(|&seat| CallResult::ok(seat, text, pending.elapsed_ms)),
        );
    }
    copy.absorb(results);
    let decision = copy.decide();
    if !decision.finalized || copy.next_round().is_some() {
        return None;
    }
    decision.answer
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::consensus::{Params, Seat, StrategyKind, build};

    /// Runs `kind` on a panel whose seat `i` answers `answers[i]` after `latency[i]` ms in
    /// every round, either waiting for every call or closing rounds early; returns the
    /// winning key, finality, and the seats a round did not wait for.
    fn run(
        kind: StrategyKind,
        answers: &[&str],
        latency: &[u32],
        early: bool,
    ) -> (Option<String>, bool, Vec<usize>) {
        let each_round = |_: usize, seat: usize| answers[seat].to_string();
        run_script(kind, answers.len(), &each_round, latency, early)
    }

    /// [`run`] with seat `s` answering `answer(round, s)` in round `round`; the seats a
    /// round did not wait for are listed as (round, seat).
    fn run_script(
        kind: StrategyKind,
        n: usize,
        answer: &dyn Fn(usize, usize) -> String,
        latency: &[u32],
        early: bool,
    ) -> (Option<String>, bool, Vec<usize>) {
        let mut params = Params::defaults(n);
        params.strategy = kind;
        if kind == StrategyKind::Vote {
            // The command line's default for vote: no refinement round.
            params.rounds = 0;
        }
        let seats = (0..n).map(|i| Seat::new(format!("s{i}"))).collect();
        let mut strategy = build(&params, seats, "What is 2+2?");
        let mut seen: Vec<String> = Vec::new();
        let mut skipped = Vec::new();
        let mut first_skipped: Option<Vec<usize>> = None;
        while let Some(calls) = strategy.next_round() {
            let mut order: Vec<usize> = calls.iter().map(|c| c.seat).collect();
            order.sort_by_key(|&s| (latency[s], s));
            let mut arrived = Vec::new();
            for (n, &seat) in order.iter().enumerate() {
                let text = answer(calls[0].round, seat);
                if !seen.contains(&text) {
                    seen.push(text.clone());
                }
                arrived.push(CallResult::ok(seat, text, f64::from(latency[seat])));
                let outstanding = &order[n + 1..];
                let pending = Pending {
                    arrived: &arrived,
                    outstanding,
                    seen: &seen,
                    elapsed_ms: f64::from(latency[seat]),
                };
                if early && certain(strategy.as_ref(), &pending).is_some() {
                    if calls[0].round == 0 {
                        first_skipped = Some(outstanding.to_vec());
                    }
                    skipped.extend_from_slice(outstanding);
                    break;
                }
            }
            strategy.absorb(arrived);
        }
        let decision = strategy.finish();
        // A seat not awaited in round 0 has no answer to win with (in a later round it
        // stands on its earlier answer, as after a failed call).
        if let (Some(w), Some(first)) = (decision.winner, first_skipped) {
            assert!(!first.contains(&w), "a seat not awaited in round 0 won");
        }
        (decision.answer, decision.finalized, skipped)
    }

    #[test]
    fn four_agreeing_of_five_close_without_the_slowest() {
        let answers = ["4", "4", "4", "4", "4"];
        let latency = [200, 200, 200, 200, 10_000];
        for kind in [StrategyKind::Metastable, StrategyKind::Vote] {
            let (key, fin, skipped) = run(kind, &answers, &latency, true);
            assert_eq!((key.as_deref(), fin), (Some("4"), true), "{kind:?}");
            // Vote is certain once three of five agree: a majority whatever the rest say.
            assert!(skipped.contains(&4), "{kind:?}: {skipped:?}");
        }
    }

    #[test]
    fn a_split_panel_waits_for_every_answer() {
        let answers = ["4", "4", "5", "5", "4"];
        let latency = [100, 100, 100, 100, 10_000];
        for kind in [StrategyKind::Metastable, StrategyKind::Vote] {
            let (_, _, skipped) = run(kind, &answers, &latency, true);
            assert!(skipped.is_empty(), "{kind:?}: {skipped:?}");
        }
    }

    #[test]
    fn hanzo_never_closes_early() {
        let answers = ["4", "4", "4", "4", "4"];
        let latency = [200, 200, 200, 200, 10_000];
        let (_, _, skipped) = run(StrategyKind::Hanzo, &answers, &latency, true);
        assert!(skipped.is_empty());
    }

    #[test]
    fn bft_and_leader_close_their_last_round_once_it_is_certain() {
        // Four seats (f = 1): three matching commits decide; the slow fourth is not needed.
        let attest = |round: usize, _: usize| match round {
            0 => "Final answer: 4".to_string(),
            _ => "Attestation: AGREE\nReason: the same answer".to_string(),
        };
        let latency = [100, 100, 100, 10_000];
        let (key, fin, skipped) = run_script(StrategyKind::Bft, 4, &attest, &latency, true);
        assert_eq!((key.as_deref(), fin), (Some("4"), true));
        assert_eq!(skipped, [3], "only the commit round closes early");
        let (all_key, all_fin, _) = run_script(StrategyKind::Bft, 4, &attest, &latency, false);
        assert_eq!((all_key, all_fin), (key, fin));

        // Leader: the first accept of two followers is a majority of three with the leader.
        let vote = |round: usize, _: usize| match round {
            0 => "Final answer: 4".to_string(),
            _ => "Vote: ACCEPT\nCritique: none".to_string(),
        };
        let latency = [100, 100, 10_000];
        let (key, fin, skipped) = run_script(StrategyKind::Leader, 3, &vote, &latency, true);
        assert_eq!((key.as_deref(), fin), (Some("4"), true));
        assert_eq!(skipped, [2]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn closing_early_reaches_the_decision_of_waiting(
            panel in prop::collection::vec((0usize..3, 1u32..5000), 2..7),
            kind in prop::sample::select(vec![
                StrategyKind::Metastable,
                StrategyKind::Vote,
                StrategyKind::Bft,
                StrategyKind::Leader,
                StrategyKind::Rank,
            ]),
        ) {
            // Round 0 answers; later rounds' replies also say how the seat votes or
            // attests, agreeing or not (the answer strategies read them as answers, and
            // rank finds no readable ballot in them: its failure must match too).
            const TEXTS: [&str; 3] = ["4", "5", "The answer is 22"];
            const LATER: [&str; 3] = [
                "Vote: ACCEPT\nAttestation: AGREE\nFinal answer: 4",
                "Vote: REJECT\nAttestation: DISAGREE\nFinal answer: 5",
                "The answer is 22",
            ];
            let script = |round: usize, seat: usize| {
                let a = panel[seat].0;
                if round == 0 { TEXTS[a] } else { LATER[a] }.to_string()
            };
            let latency: Vec<u32> = panel.iter().map(|&(_, l)| l).collect();
            let n = panel.len();
            let (key, fin, _) = run_script(kind, n, &script, &latency, true);
            let (all_key, all_fin, none) = run_script(kind, n, &script, &latency, false);
            prop_assert!(none.is_empty());
            prop_assert_eq!((key, fin), (all_key, all_fin));
        }
    }
}
