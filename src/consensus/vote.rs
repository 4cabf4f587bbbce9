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

use super::confidence;
use super::metastable::{SplitMix, weighted_sample};
use super::prompt;
use super::{
    CallResult, CallSpec, Decision, Details, Group, Params, RoundTrace, Seat, SeatOutcome,
    Strategy, Text, TraceEntry, complete_results,
};
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

#[derive(Default)]
struct SeatState {
    /// `--confidence`: the confidence stated with the latest answer.
    reported: Option<f64>,
    text: Option<String>,
    key: Option<Key>,
    live: bool,
    luminance: Option<f64>,
    dead: bool,
}

struct Pending {
    round: usize,
    called: Vec<usize>,
    samples: Vec<Vec<usize>>,
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

pub struct Vote {
    params: Params,
    seats: Vec<Seat>,
    /// Each seat's system prompt, the same in every round.
    systems: Vec<Option<Text>>,
    prompt: Text,
    cmp: Comparator,
    state: Vec<SeatState>,
    pending: Option<Pending>,
    absorbed: usize,
    changed_last_round: bool,
    trace: Vec<RoundTrace>,
    done: bool,
}

impl Vote {
    pub fn new(params: Params, seats: Vec<Seat>, prompt: &str) -> Vote {
        let state = seats.iter().map(|_| SeatState::default()).collect();
        Vote {
            cmp: Comparator::new(params.similarity, params.tolerance),
            systems: prompt::seat_systems(&params, &seats),
            params,
            seats,
            prompt: Text::from(prompt),
            state,
            pending: None,
            absorbed: 0,
            changed_last_round: true,
            trace: Vec::new(),
            done: false,
        }
    }

    fn system_for(&self, seat: usize) -> Option<Text> {
        self.systems[seat].clone()
    }

    fn weight(&self, seat: usize) -> f64 {
        confidence::seat_weight(&self.params, &self.seats[seat], self.state[seat].reported)
    }

    fn self_confidence(&self) -> Vec<confidence::SelfConfidence> {
        confidence::report(
            &self.params,
            self.seats
                .iter()
                .zip(&self.state)
                .map(|(seat, s)| (seat.name.as_str(), s.live, s.reported)),
        )
    }

    fn live_seats(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.seats.len()).filter(|&i| self.state[i].live)
    }

    fn tally(&self) -> Tally {
        let keyed: Vec<(usize, f64, &Key)> = self
            .live_seats()
            .filter_map(|i| self.state[i].key.as_ref().map(|k| (i, self.weight(i), k)))
            .collect();
        Tally {
            groups: group_keys(&self.cmp, self.params.alpha, &keyed),
            total: self.live_seats().map(|i| self.weight(i)).sum(),
        }
    }

    /// Each live seat's share: the share of the group it belongs to.
    fn shares(&self, tally: &Tally) -> Vec<Option<f64>> {
        let mut out = vec![None; self.seats.len()];
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

    fn luminances(&self) -> Vec<f64> {
        let max = self
            .live_seats()
            .filter_map(|i| self.state[i].luminance)
            .fold(0.0, f64::max);
        (0..self.seats.len())
            .map(|i| match (self.state[i].live, self.state[i].luminance) {
                (true, Some(l)) if max > 0.0 => l / max,
                _ => 0.0,
            })
            .collect()
    }
}

impl Strategy for Vote {
    fn next_round(&mut self) -> Option<Vec<CallSpec>> {
        if self.done || self.pending.is_some() {
            return None;
        }
        let round = self.absorbed;
        if round == 0 {
            let called: Vec<usize> = (0..self.seats.len()).collect();
            let calls = called
                .iter()
                .map(|&seat| CallSpec {
                    seat,
                    round: 0,
                    system: self.system_for(seat),
                    user: self.prompt.clone().into(),
                })
                .collect();
            self.pending = Some(Pending {
                round: 0,
                called,
                samples: Vec::new(),
            });
            return Some(calls);
        }
        let live: Vec<usize> = self.live_seats().collect();
        if round > self.params.rounds || live.len() < 2 || !self.changed_last_round {
            self.done = true;
            return None;
        }
        let asks = self.params.answer.asks_for_final_line();
        let (mut called, mut samples, mut calls) = (Vec::new(), Vec::new(), Vec::new());
        for &seat in &live {
            if self.state[seat].dead {
                continue;
            }
            let candidates: Vec<(usize, f64)> = live
                .iter()
                .filter(|&&j| j != seat)
                .map(|&j| (j, 1.0))
                .collect();
            let m = self.params.k.min(candidates.len());
            let mut rng = SplitMix::for_draw(self.params.seed, round, &self.seats[seat].name);
            let sample = weighted_sample(&mut rng, &candidates, m);
            let peers: Vec<&str> = sample
                .iter()
                .map(|&j| self.state[j].text.as_deref().unwrap_or(""))
                .collect();
            let user = prompt::refine(&self.prompt, self.state[seat].text.as_deref(), &peers, asks);
            calls.push(CallSpec {
                seat,
                round,
                system: self.system_for(seat),
                user,
            });
            called.push(seat);
            samples.push(sample);
        }
        if calls.is_empty() {
            self.done = true;
            return None;
        }
        self.pending = Some(Pending {
            round,
            called,
            samples,
        });
        Some(calls)
    }

    fn absorb(&mut self, results: Vec<CallResult>) {
        let Some(Pending {
            round,
            called,
            samples,
        }) = self.pending.take()
        else {
            return;
        };
        let results = complete_results(&called, results);
        let mut changed = false;
        for r in &results {
            let s = &mut self.state[r.seat];
            if r.ok && !r.text.trim().is_empty() {
                let key = if self.params.confidence {
                    s.reported = confidence::parse(&r.text);
                    self.cmp
                        .key(&confidence::strip(&r.text), &self.params.answer)
                } else {
                    self.cmp.key(&r.text, &self.params.answer)
                };
                changed |= !s.live
                    || s.key.as_ref().map(|k| k.normalized())
                        != key.as_ref().map(|k| k.normalized());
                s.text = Some(r.text.clone());
                s.key = key;
                s.live = true;
                s.luminance = Some(1.0 / (1.0 + r.latency_ms.max(0.0) / 1000.0));
            } else {
                s.live = false;
                s.dead |= r.fatal;
            }
        }
        let tally = self.tally();
        let shares = self.shares(&tally);
        let lum = self.luminances();
        let entries = (0..self.seats.len())
            .map(|seat| {
                let idx = called.iter().position(|&c| c == seat);
                let result = idx.map(|i| &results[i]);
                let s = &self.state[seat];
                TraceEntry {
                    participant: self.seats[seat].name.clone(),
                    called: idx.is_some(),
                    sampled: idx
                        .and_then(|i| samples.get(i))
                        .map(|sample| sample.iter().map(|&j| self.seats[j].name.clone()).collect())
                        .unwrap_or_default(),
                    answer: result.filter(|r| r.ok).map(|r| Text::from(r.text.as_str())),
                    key: s
                        .live
                        .then(|| s.key.as_ref().map(Key::shared_text))
                        .flatten(),
                    agreement: None,
                    confidence: shares[seat].unwrap_or(0.0),
                    support: shares[seat],
                    luminance: s.live.then_some(lum[seat]),
                    latency_ms: result.map(|r| r.latency_ms),
                    usage: result.map(|r| r.usage.clone()),
                    error: result.and_then(|r| {
                        if r.ok && r.text.trim().is_empty() {
                            Some("empty answer".to_string())
                        } else {
                            r.error.clone()
                        }
                    }),
                }
            })
            .collect();
        self.trace.push(RoundTrace {
            round,
            participants: entries,
            ..RoundTrace::default()
        });
        self.changed_last_round = round == 0 || changed;
        self.absorbed += 1;
    }

    fn decide(&self) -> Decision {
        let tally = self.tally();
        let shares = self.shares(&tally);
        let lum = self.luminances();
        let live = self.live_seats().count();
        let top = tally.top();
        let key_of = |seat: usize| {
            self.state[seat]
                .key
                .as_ref()
                .map_or(String::new(), |k| k.text().to_string())
        };
        let (winner, tie) = match top {
            [(members, _)] => (Some(members[0]), Vec::new()),
            [] => (None, Vec::new()),
            tied => (None, tied.iter().map(|(m, _)| key_of(m[0])).collect()),
        };
        let finalized = winner.is_some_and(|w| {
            live >= self.params.quorum
                && shares[w].is_some_and(|s| self.params.quorum_share.reached(s))
        });
        let seats = (0..self.seats.len())
            .map(|i| {
                let s = &self.state[i];
                SeatOutcome {
                    confidence: shares[i].unwrap_or(0.0),
                    support: shares[i],
                    luminance: lum[i],
                    score: shares[i].unwrap_or(0.0),
                    live: s.live,
                    key: s
                        .live
                        .then(|| s.key.as_ref().map(Key::shared_text))
                        .flatten(),
                }
            })
            .collect();
        let groups = tally
            .groups
            .iter()
            .map(|(members, weight)| Group {
                key: key_of(members[0]),
                members: members
                    .iter()
                    .map(|&m| self.seats[m].name.to_string())
                    .collect(),
                weight: *weight,
                share: tally.share(*weight),
            })
            .collect();
        Decision {
            winner,
            finalized,
            answer: winner.map(key_of),
            synthesis: winner.and_then(|w| self.state[w].text.clone()),
            rounds_executed: self.absorbed.saturating_sub(1),
            seats,
            rounds: self.trace.clone(),
            live,
            quorum: self.params.quorum,
            details: Details {
                threshold: Some(self.params.quorum_share.share),
                groups,
                tie,
                self_confidence: self.self_confidence(),
                ..Details::default()
            },
        }
    }
}
