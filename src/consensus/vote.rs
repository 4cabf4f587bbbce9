//! `--strategy vote`: the baseline every other strategy must beat (docs/protocol.md §4).
//!
//! - Round 0: every seat answers the question independently.
//! - Optional refinement rounds (`--rounds`, default 0 for this strategy): each live seat
//!   sees its own answer and `min(k, live-1)` other live answers, drawn uniformly from a
//!   seeded stream (latency plays no part in a vote).
//! - The latest answers are grouped by key: the most supported key opens a group that
//!   takes every unassigned answer with sim >= alpha to it, and so on. A group weighs the
//!   sum of its members' seat weights; its share is that weight over the live seats'.
//! - Plurality: the heaviest group wins. When several groups share the top weight the
//!   result is a tie: no winner, not final, and the tied keys are reported.
//! - Final when the winner's share reaches `--quorum-share` and the quorum is live.

use std::fmt;
use std::str::FromStr;

use super::prompt;
use super::rounds::Rounds;
use super::sampling::{SplitMix, weighted_sample};
use super::seats::SeatBook;
use super::{CallResult, CallSpec, Decision, Details, Group, Params, Rule, Seat, Strategy, Text};
use crate::similarity::{Comparator, Key};

/// Weights and shares equal within this margin are equal.
const TIE: f64 = 1e-9;

/// `--quorum-share`: how much of the live seat weight the top group needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuorumShare {
    pub share: f64,
    /// Strictly more than `share` (a majority is more than half).
    pub strict: bool,
}

impl QuorumShare {
    pub const MAJORITY: QuorumShare = QuorumShare {
        share: 0.5,
        strict: true,
    };
    pub const SUPERMAJORITY: QuorumShare = QuorumShare {
        share: 2.0 / 3.0,
        strict: false,
    };
    pub const UNANIMOUS: QuorumShare = QuorumShare {
        share: 1.0,
        strict: false,
    };

    /// Whether a group holding `share` of the live weight is final.
    pub fn reached(self, share: f64) -> bool {
        if self.strict {
            share > self.share + TIE
        } else {
            share >= self.share - TIE
        }
    }
}

impl FromStr for QuorumShare {
    type Err = String;
    fn from_str(s: &str) -> Result<QuorumShare, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "majority" => Ok(QuorumShare::MAJORITY),
            "supermajority" => Ok(QuorumShare::SUPERMAJORITY),
            "unanimous" => Ok(QuorumShare::UNANIMOUS),
            other => match other.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => Ok(QuorumShare {
                    share: v,
                    strict: false,
                }),
                _ => Err(format!(
                    "`{other}` is not a quorum share (expected majority, supermajority, unanimous or a number in (0, 1])"
                )),
            },
        }
    }
}

impl fmt::Display for QuorumShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QuorumShare::MAJORITY => f.write_str("majority"),
            QuorumShare::SUPERMAJORITY => f.write_str("supermajority"),
            QuorumShare::UNANIMOUS => f.write_str("unanimous"),
            QuorumShare { share, .. } => write!(f, "{share}"),
        }
    }
}

/// Groups of agreeing keys, heaviest first: `(members, weight)`, the first member being
/// the representative whose key names the group. Order-independent: representatives are
/// chosen by support, then by normalized key, then by seat index.
pub(crate) fn group_keys(
    cmp: &Comparator,
    alpha: f64,
    keyed: &[(usize, f64, &Key)],
) -> Vec<(Vec<usize>, f64)> {
    let n = keyed.len();
    let mut agrees = vec![vec![false; n]; n];
    let mut support = vec![0.0; n];
    for a in 0..n {
        agrees[a][a] = true;
        for b in a + 1..n {
            let yes = cmp.at_least(keyed[a].2, keyed[b].2, alpha);
            agrees[a][b] = yes;
            agrees[b][a] = yes;
        }
    }
    for a in 0..n {
        support[a] = (0..n).filter(|&b| agrees[a][b]).map(|b| keyed[b].1).sum();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        support[b]
            .total_cmp(&support[a])
            .then_with(|| keyed[a].2.normalized().cmp(&keyed[b].2.normalized()))
            .then(keyed[a].0.cmp(&keyed[b].0))
    });
    let mut assigned = vec![false; n];
    let mut groups = Vec::new();
    for &rep in &order {
        if assigned[rep] {
            continue;
        }
        let mut members = vec![rep];
        assigned[rep] = true;
        for &other in &order {
            if !assigned[other] && agrees[rep][other] {
                assigned[other] = true;
                members.push(other);
            }
        }
        let weight = members.iter().map(|&m| keyed[m].1).sum();
        groups.push((members.iter().map(|&m| keyed[m].0).collect(), weight));
    }
    // Stable: equal weights keep the representative order.
    groups.sort_by(|a: &(Vec<usize>, f64), b| b.1.total_cmp(&a.1));
    groups
}

/// The tally of the latest answers.
struct Tally {
    /// (members, weight), heaviest first.
    groups: Vec<(Vec<usize>, f64)>,
    total: f64,
}

impl Tally {
    fn share(&self, weight: f64) -> f64 {
        if self.total > 0.0 {
            weight / self.total
        } else {
            0.0
        }
    }

    /// The groups tied for first place (one when there is a clear winner).
    fn top(&self) -> &[(Vec<usize>, f64)] {
        let Some(first) = self.groups.first() else {
            return &[];
        };
        let n = self
            .groups
            .iter()
            .take_while(|g| (g.1 - first.1).abs() <= TIE)
            .count();
        &self.groups[..n]
    }
}

#[derive(Clone)]
pub struct Vote {
    params: Params,
    book: SeatBook,
    prompt: Text,
    cmp: Comparator,
    /// Per round in flight: the peers sampled for each seat called.
    rounds: Rounds<Vec<Vec<usize>>>,
    changed_last_round: bool,
}

impl Vote {
    pub fn new(params: Params, seats: Vec<Seat>, prompt: &str) -> Vote {
        Vote {
            cmp: Comparator::new(params.similarity, params.tolerance),
            book: SeatBook::new(&params, seats),
            params,
            prompt: Text::from(prompt),
            rounds: Rounds::default(),
            changed_last_round: true,
        }
    }

    fn live_seats(&self) -> impl Iterator<Item = usize> + '_ {
        self.book.live()
    }

    fn weight(&self, seat: usize) -> f64 {
        self.book.weight(&self.params, seat)
    }

    fn tally(&self) -> Tally {
        let keyed: Vec<(usize, f64, &Key)> = self
            .live_seats()
            .filter_map(|i| self.book[i].key.as_ref().map(|k| (i, self.weight(i), k)))
            .collect();
        Tally {
            groups: group_keys(&self.cmp, self.params.alpha, &keyed),
            total: self.live_seats().map(|i| self.weight(i)).sum(),
        }
    }

    /// Each live seat's share: the share of the group it belongs to.
    fn shares(&self, tally: &Tally) -> Vec<Option<f64>> {
        let mut out = vec![None; self.book.len()];
        for i in self.live_seats() {
            out[i] = Some(0.0);
        }
        for (members, weight) in &tally.groups {
            for &m in members {
                out[m] = Some(tally.share(*weight));
            }
        }
        out
    }
}

impl Strategy for Vote {
    fn fork(&self) -> Option<Box<dyn Strategy>> {
        Some(Box::new(self.clone()))
    }

    fn next_round(&mut self) -> Option<Vec<CallSpec>> {
        let round = self.rounds.upcoming()?;
        if round == 0 {
            return self
                .rounds
                .ask_everyone(&self.book, &self.prompt, Vec::new());
        }
        let live: Vec<usize> = self.live_seats().collect();
        if round > self.params.rounds || live.len() < 2 || !self.changed_last_round {
            return self.rounds.stop();
        }
        let asks = self.params.answer.asks_for_final_line();
        let (mut called, mut samples, mut calls) = (Vec::new(), Vec::new(), Vec::new());
        for &seat in &live {
            if self.book[seat].dead {
                continue;
            }
            let candidates: Vec<(usize, f64)> = live
                .iter()
                .filter(|&&j| j != seat)
                .map(|&j| (j, 1.0))
                .collect();
            let m = self.params.k.min(candidates.len());
            let mut rng = SplitMix::for_draw(self.params.seed, round, self.book.name(seat));
            let sample = weighted_sample(&mut rng, &candidates, m);
            let peers: Vec<&str> = sample
                .iter()
                .map(|&j| self.book[j].text.as_deref().unwrap_or(""))
                .collect();
            let user = prompt::refine(&self.prompt, self.book[seat].text.as_deref(), &peers, asks);
            calls.push(CallSpec {
                seat,
                round,
                system: self.book.system(seat),
                user,
            });
            called.push(seat);
            samples.push(sample);
        }
        if calls.is_empty() {
            return self.rounds.stop();
        }
        self.rounds.issue(round, called, samples, calls)
    }

    fn absorb(&mut self, results: Vec<CallResult>) {
        let Some((round, called, samples, mut results)) = self.rounds.take(results) else {
            return;
        };
        let (took, changed) =
            self.book
                .take_answers(&mut results, &self.cmp, &self.params, |a, b| {
                    a.normalized() == b.normalized()
                });
        let tally = self.tally();
        let shares = self.shares(&tally);
        let max_lum = self.book.max_luminance();
        let book = &self.book;
        let trace = book.round_trace(round, &called, &results, &took, |seat, idx, entry| {
            entry.sampled = idx
                .and_then(|i| samples.get(i))
                .map(|sample| sample.iter().map(|&j| book.name(j).clone()).collect())
                .unwrap_or_default();
            entry.key = book.live_key(seat);
            entry.confidence = shares[seat].unwrap_or(0.0);
            entry.support = shares[seat];
            entry.luminance = book[seat].live().then(|| book.luminance(seat, max_lum));
        });
        self.rounds.close(trace);
        self.changed_last_round = round == 0 || changed;
    }

    fn decide(&self) -> Decision {
        let tally = self.tally();
        let shares = self.shares(&tally);
        let max_lum = self.book.max_luminance();
        let live = self.book.live_count();
        let top = tally.top();
        let key_of = |seat: usize| self.book.key_text(seat);
        let (winner, tie) = match top {
            [(members, _)] => (Some(members[0]), Vec::new()),
            [] => (None, Vec::new()),
            tied => (None, tied.iter().map(|(m, _)| key_of(m[0])).collect()),
        };
        let finalized = winner.is_some_and(|w| {
            live >= self.params.quorum
                && shares[w].is_some_and(|s| self.params.quorum_share.reached(s))
        });
        let seats = (0..self.book.len())
            .map(|i| {
                let share = shares[i].unwrap_or(0.0);
                self.book.outcome(i, share, shares[i], share, max_lum)
            })
            .collect();
        let groups = tally
            .groups
            .iter()
            .map(|(members, weight)| Group {
                key: key_of(members[0]),
                members: members
                    .iter()
                    .map(|&m| self.book.name(m).to_string())
                    .collect(),
                weight: *weight,
                share: tally.share(*weight),
            })
            .collect();
        let share = self.params.quorum_share;
        Decision {
            finalized,
            rounds_executed: self.rounds.executed(),
            seats,
            rounds: self.rounds.trace.clone(),
            details: Details {
                threshold: Some(share.share),
                groups,
                tie,
                self_confidence: self.book.self_confidence(&self.params),
                verdict_rule: Some(Rule::share(
                    "share",
                    share.share,
                    share.strict,
                    "of the live seats' weight in the winning group",
                )),
                ..Details::default()
            },
            ..self.book.decision(&self.params, winner)
        }
    }
}
