//! The consensus strategies.
//!
//! A strategy is a synchronous state machine: it says which calls it wants made
//! ([`Strategy::next_round`]), takes their results ([`Strategy::absorb`]) and finally
//! returns a [`Decision`]. It never performs I/O, never reads a clock and draws all of its
//! randomness from the seed, so a run can be replayed from its transcript and the engine
//! can be benchmarked without a network.

pub mod bft;
pub mod confidence;
mod details;
pub mod early;
pub mod hanzo;
pub mod leader;
pub mod metastable;
pub mod prompt;
pub mod pyrandom;
pub mod rank;
mod rounds;
mod sampling;
mod seats;
pub mod vote;

use serde::Serialize;

pub use details::{Attestation, BallotReport, Details, Group, Rule, ScoreReport, Suspect, Term};

use crate::similarity::{AnswerMode, Metric};
pub use crate::text::{Prompt, Text};
use crate::usage::Usage;

/// Which decision procedure runs the panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    Metastable,
    Hanzo,
    Vote,
    Rank,
    Bft,
    Leader,
}

impl StrategyKind {
    /// Every strategy, the default first.
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::Metastable,
        StrategyKind::Hanzo,
        StrategyKind::Vote,
        StrategyKind::Rank,
        StrategyKind::Bft,
        StrategyKind::Leader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Metastable => "metastable",
            StrategyKind::Hanzo => "hanzo",
            StrategyKind::Vote => "vote",
            StrategyKind::Rank => "rank",
            StrategyKind::Bft => "bft",
            StrategyKind::Leader => "leader",
        }
    }

    /// One line on what the strategy does, for `--help`.
    pub fn about(self) -> &'static str {
        match self {
            StrategyKind::Metastable => {
                "Sampling rounds with per-participant peer samples, support-based finality (default)"
            }
            StrategyKind::Hanzo => "The seed protocol of hanzo-consensus 0.1.0, reproduced exactly",
            StrategyKind::Vote => {
                "Independent answers grouped by key; plurality by seat weight, final at --quorum-share"
            }
            StrategyKind::Rank => {
                "Each participant ranks the others' anonymous answers; Borda or --rule chb picks one"
            }
            StrategyKind::Bft => {
                "PBFT-style: prepare and commit attestations on the proposal, final with 2f+1 of each"
            }
            StrategyKind::Leader => {
                "Raft-style terms: the leader proposes, a majority of accepts commits, else a new leader"
            }
        }
    }
}

impl std::str::FromStr for StrategyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown strategy `{s}` (expected {})", names.join(", "))
            })
    }
}

/// Everything a strategy needs to know about the run, resolved from flags and config.
#[derive(Clone, Debug)]
pub struct Params {
    pub strategy: StrategyKind,
    /// Sampling rounds after round 0.
    pub rounds: usize,
    /// Peers shown to a participant per sampling round.
    pub k: usize,
    /// Agreement threshold: j supports i when sim(key_i, key_j) >= alpha.
    pub alpha: f64,
    /// Preference threshold: a participant whose confidence reaches it is settled.
    pub beta_1: f64,
    /// Decision threshold: finalized when the winner's support reaches it.
    pub beta_2: f64,
    pub seed: u64,
    /// Live participants needed for a decision to count.
    pub quorum: usize,
    pub answer: AnswerMode,
    pub similarity: Metric,
    /// Relative tolerance for numeric keys.
    pub tolerance: f64,
    /// The system prompt every seat gets unless it has its own.
    pub system: Option<String>,
    /// `vote`: the share of the live seat weight the top group needs to be final.
    pub quorum_share: vote::QuorumShare,
    /// `rank`: how ballots are aggregated.
    pub rule: rank::RankRule,
    /// `bft`: faulty participants tolerated (None: the most the panel allows).
    pub faults: Option<usize>,
    /// `metastable` and `vote`: ask for a self-reported confidence and weigh answers by
    /// its recalibrated bucket.
    pub confidence: bool,
}

impl Params {
    /// Defaults of docs/protocol.md (rounds 3, k 3, alpha 0.6, beta_1 0.5, beta_2 0.8) for a panel of `seats`.
    pub fn defaults(seats: usize) -> Params {
        Params {
            strategy: StrategyKind::Metastable,
            rounds: 3,
            k: 3,
            alpha: 0.6,
            beta_1: 0.5,
            beta_2: 0.8,
            seed: 0,
            quorum: default_quorum(seats),
            answer: AnswerMode::Auto,
            similarity: Metric::Jaccard,
            tolerance: 0.0,
            system: None,
            quorum_share: vote::QuorumShare::MAJORITY,
            rule: rank::RankRule::Borda,
            faults: None,
            confidence: false,
        }
    }
}

/// A majority of the seats.
pub fn default_quorum(seats: usize) -> usize {
    seats / 2 + 1
}

/// A seat at the table, as the engine sees it.
#[derive(Clone, Debug)]
pub struct Seat {
    /// Shared: a round's trace names every seat, and every peer it was shown.
    pub name: Text,
    pub weight: f64,
    /// A per-seat system prompt that replaces [`Params::system`].
    pub system: Option<String>,
}

impl Seat {
    pub fn new(name: impl Into<String>) -> Seat {
        Seat {
            name: Text::from(name.into()),
            weight: 1.0,
            system: None,
        }
    }
}

/// One call the engine wants made.
#[derive(Clone, Debug, PartialEq)]
pub struct CallSpec {
    pub seat: usize,
    pub round: usize,
    pub system: Option<Text>,
    /// Shared: a round often asks every seat the same, and a refinement prompt shares
    /// the question and the quoted answers with the round's other prompts.
    pub user: Prompt,
}

/// What came back from one call.
#[derive(Clone, Debug, Default)]
pub struct CallResult {
    pub seat: usize,
    pub ok: bool,
    /// The answer text; for a failed call, whatever the provider produced (usually empty).
    pub text: String,
    pub error: Option<String>,
    /// The call cannot succeed if repeated (bad key, unknown model...): do not call again.
    pub fatal: bool,
    pub latency_ms: f64,
    pub usage: Usage,
    /// The answer stopped at the token limit (max_tokens): kept, but marked as cut
    /// (docs/protocol.md P10).
    pub cut: bool,
}

impl CallResult {
    pub fn ok(seat: usize, text: impl Into<String>, latency_ms: f64) -> CallResult {
        CallResult {
            seat,
            ok: true,
            text: text.into(),
            latency_ms,
            ..CallResult::default()
        }
    }

    pub fn failed(seat: usize, error: impl Into<String>, latency_ms: f64) -> CallResult {
        CallResult {
            seat,
            ok: false,
            error: Some(error.into()),
            latency_ms,
            ..CallResult::default()
        }
    }
}

/// Per-seat state at the end of the run.
#[derive(Clone, Debug, Serialize)]
pub struct SeatOutcome {
    pub confidence: f64,
    /// Weighted share of live participants that support this one (None when absent).
    pub support: Option<f64>,
    pub luminance: f64,
    pub score: f64,
    /// It has a standing answer (its latest successful one): it counts.
    pub live: bool,
    /// Its latest call failed: it stands on an earlier answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// The key of the standing answer.
    pub key: Option<Text>,
}

/// One participant's line in one round of the trace (docs/protocol.md P9).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TraceEntry {
    pub participant: Text,
    /// Whether the participant was called this round (settled ones are not).
    pub called: bool,
    /// Peers shown to it (names, in the order shown).
    pub sampled: Names,
    /// Shared with the strategy's state and the decision: a long answer is stored once.
    pub answer: Option<Text>,
    pub key: Option<Text>,
    pub agreement: Option<f64>,
    pub confidence: f64,
    pub support: Option<f64>,
    pub luminance: Option<f64>,
    pub latency_ms: Option<f64>,
    pub usage: Option<Usage>,
    pub error: Option<String>,
    /// The call failed and the participant stands on an earlier answer, which still
    /// counts (PROTOCOL.md P4). Left out of the JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// The answer stopped at the token limit: it counts, marked as cut (P10). Left out of
    /// the JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
    /// `--cache` answered the call from the run log (set by the run, not the strategy).
    /// Left out of the JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// The call was cancelled: the outcome was certain without it (set by the run, not
    /// the strategy). Neither an answer nor a failure. Left out of the JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not_awaited: bool,
}

/// Participants' names, in order. Held as seat numbers into the panel's names, which
/// every entry of a run can share, or as the names themselves; reads, prints and
/// serializes as the list of names either way.
#[derive(Clone, Default)]
pub struct Names(NamesRepr);

#[derive(Clone)]
enum NamesRepr {
    Seats(std::sync::Arc<[Text]>, Vec<usize>),
    Listed(Vec<Text>),
}

impl Default for NamesRepr {
    fn default() -> NamesRepr {
        NamesRepr::Listed(Vec::new())
    }
}

impl Names {
    /// The names of `seats` in `panel` (every seat's name, by seat).
    pub fn of_seats(panel: &std::sync::Arc<[Text]>, seats: Vec<usize>) -> Names {
        Names(NamesRepr::Seats(std::sync::Arc::clone(panel), seats))
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            NamesRepr::Seats(_, seats) => seats.len(),
            NamesRepr::Listed(names) => names.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<&Text> {
        match &self.0 {
            NamesRepr::Seats(panel, seats) => seats.get(i).map(|&seat| &panel[seat]),
            NamesRepr::Listed(names) => names.get(i),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Text> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }
}

impl FromIterator<Text> for Names {
    fn from_iter<I: IntoIterator<Item = Text>>(names: I) -> Names {
        Names(NamesRepr::Listed(names.into_iter().collect()))
    }
}

impl From<Vec<Text>> for Names {
    fn from(names: Vec<Text>) -> Names {
        Names(NamesRepr::Listed(names))
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// One round of the trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoundTrace {
    pub round: usize,
    /// The sample shared by everybody (hanzo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_sample: Option<Vec<String>>,
    /// Normalized sampling weights (hanzo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    pub participants: Vec<TraceEntry>,
}

/// What a strategy decided.
#[derive(Clone, Debug)]
pub struct Decision {
    pub winner: Option<usize>,
    pub finalized: bool,
    /// The winner's key (the compared part of its answer).
    pub answer: Option<String>,
    /// The winner's final answer, verbatim.
    pub synthesis: Option<String>,
    /// Sampling rounds executed after round 0.
    pub rounds_executed: usize,
    pub seats: Vec<SeatOutcome>,
    pub rounds: Vec<RoundTrace>,
    /// Participants with a standing answer (hanzo: whose latest call succeeded).
    pub live: usize,
    pub quorum: usize,
    /// What the strategy found beyond the common fields (groups, ties...).
    pub details: Details,
}

impl Decision {
    /// Marks the trace entries of `calls` (round, participant) as not awaited: the round
    /// closed without them. The engine saw a failed call; the reader sees a call not
    /// waited for.
    pub fn mark_not_awaited<'a>(&mut self, calls: impl IntoIterator<Item = (usize, &'a str)>) {
        for (round, name) in calls {
            let entries = self.rounds.iter_mut().filter(|r| r.round == round);
            for entry in entries.flat_map(|r| r.participants.iter_mut()) {
                if entry.called && entry.participant.as_ref() == name {
                    entry.not_awaited = true;
                    entry.error = None;
                    entry.latency_ms = None;
                }
            }
        }
    }
}

/// A consensus procedure, driven by the runner.
pub trait Strategy: Send {
    /// The calls of the next round, or None when the run is over.
    fn next_round(&mut self) -> Option<Vec<CallSpec>>;
    /// The results of the round just issued, in any order. A call missing from
    /// `results` counts as failed (it did not answer in time); a failed call leaves the
    /// seat's standing answer in place, so a round in which every call failed (or that
    /// Ctrl-C cut) leaves the decision of the rounds before it.
    fn absorb(&mut self, results: Vec<CallResult>);
    /// The decision on what is known now.
    fn decide(&self) -> Decision;
    /// The decision at the end of the run: [`decide`](Strategy::decide), except that the
    /// strategy may move its trace into the decision instead of copying it. Called once,
    /// last; the strategy is not used afterwards.
    fn finish(&mut self) -> Decision {
        self.decide()
    }
    /// A copy to try hypothetical results on ([`early::certain`]); None for a strategy
    /// that never closes a round early (hanzo: the seed protocol waits for every call).
    fn fork(&self) -> Option<Box<dyn Strategy>> {
        None
    }
}

/// Builds the strategy `params.strategy` over `seats` for `prompt`.
pub fn build(params: &Params, seats: Vec<Seat>, prompt: &str) -> Box<dyn Strategy> {
    match params.strategy {
        StrategyKind::Metastable => {
            Box::new(metastable::Metastable::new(params.clone(), seats, prompt))
        }
        StrategyKind::Hanzo => Box::new(hanzo::Hanzo::new(params.clone(), seats, prompt)),
        StrategyKind::Vote => Box::new(vote::Vote::new(params.clone(), seats, prompt)),
        StrategyKind::Rank => Box::new(rank::Rank::new(params.clone(), seats, prompt)),
        StrategyKind::Bft => Box::new(bft::Bft::new(params.clone(), seats, prompt)),
        StrategyKind::Leader => Box::new(leader::Leader::new(params.clone(), seats, prompt)),
    }
}

/// Runs a strategy to completion with a synchronous answer source (scripted panels,
/// benchmarks and tests).
pub fn drive(
    strategy: &mut dyn Strategy,
    mut answer: impl FnMut(&CallSpec) -> CallResult,
) -> Decision {
    while let Some(calls) = strategy.next_round() {
        let results = calls.iter().map(&mut answer).collect();
        strategy.absorb(results);
    }
    strategy.finish()
}

/// Fills in failed results for the calls of `calls` that have none in `results`, keeps
/// one result per call, and orders them by seat.
pub(crate) fn complete_results(calls: &[usize], results: Vec<CallResult>) -> Vec<CallResult> {
    // Already one result per call, in seat order: nothing to do.
    if results.len() == calls.len()
        && results.iter().zip(calls).all(|(r, &seat)| r.seat == seat)
        && calls.is_sorted_by(|a, b| a < b)
    {
        return results;
    }
    let seats = calls
        .iter()
        .chain(results.iter().map(|r| &r.seat))
        .max()
        .map_or(0, |m| m + 1);
    let mut slot: Vec<Option<CallResult>> = vec![None; seats];
    for r in results {
        let seat = r.seat;
        if slot[seat].is_none() {
            slot[seat] = Some(r);
        }
    }
    let mut out: Vec<CallResult> = calls
        .iter()
        .map(|&seat| {
            slot[seat].take().unwrap_or_else(|| {
                CallResult::failed(seat, "no answer before the round closed", 0.0)
            })
        })
        .collect();
    out.sort_by_key(|r| r.seat);
    out.dedup_by_key(|r| r.seat);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outline(results: &[CallResult]) -> Vec<(usize, bool, &str)> {
        results
            .iter()
            .map(|r| (r.seat, r.ok, r.error.as_deref().unwrap_or(&r.text)))
            .collect()
    }

    #[test]
    fn results_are_completed_to_one_per_call_in_seat_order() {
        let ok = |seat: usize, text: &str| CallResult::ok(seat, text, 1.0);
        let complete = complete_results(&[0, 2, 5], vec![ok(0, "a"), ok(2, "b"), ok(5, "c")]);
        assert_eq!(
            outline(&complete),
            [(0, true, "a"), (2, true, "b"), (5, true, "c")]
        );
        // Out of order, a second result for a seat, a seat not called and one missing.
        let messy = vec![ok(5, "c"), ok(0, "a"), ok(0, "again"), ok(3, "uncalled")];
        assert_eq!(
            outline(&complete_results(&[0, 2, 5], messy)),
            [
                (0, true, "a"),
                (2, false, "no answer before the round closed"),
                (5, true, "c")
            ]
        );
        // As many results as calls, but not for the seats called.
        let swapped = vec![ok(0, "a"), ok(3, "uncalled"), ok(5, "c")];
        assert_eq!(
            outline(&complete_results(&[0, 2, 5], swapped)),
            [
                (0, true, "a"),
                (2, false, "no answer before the round closed"),
                (5, true, "c")
            ]
        );
    }
}
