//! `--strategy metastable` (the default): the seed protocol's shape with its defects fixed
//! (docs/protocol.md §3).
//!
//! - Round 0: every seat answers the question.
//! - Sampling rounds: every unsettled seat sees its own previous answer and a sample of
//!   `min(k, live-1)` other live seats' latest answers, drawn without replacement,
//!   weighted by luminance, from a stream seeded by (seed, round, seat name), so the draw
//!   does not depend on the order of the panel.
//! - Agreement is scored on the round's snapshot, after every answer of the round is in.
//!   Confidence starts at the first agreement and then moves halfway towards each new one.
//! - Support of i: the weighted share of live seats j with sim(key_i, key_j) >= alpha.
//!   The winner has the highest support (ties between positions: the more central
//!   position, see [`Metastable::centrality`]; then confidence × luminance, then
//!   confidence, then the key's text, then seat order); finalized when that support reaches beta_2 and
//!   the quorum is live.
//! - Phase I ends early when the decision is final, every live seat is settled
//!   (confidence >= beta_1), or a round changed no answer. "Live" is a seat with a
//!   standing answer ([`super::seats`]): a failed call leaves it standing, unscored.

use super::prompt;
use super::rounds::Rounds;
use super::sampling::{Sampler, SplitMix};
use super::seats::SeatBook;
use super::{
    CallResult, CallSpec, Decision, Names, Params, RoundTrace, Rule, Seat, Strategy, Text,
};
use std::borrow::Cow;
use std::sync::Arc;

use crate::similarity::{Comparator, Key, TokenSet};

/// Supports equal within this margin are ties.
const TIE: f64 = 1e-12;

/// What metastable keeps per seat beyond its standing answer.
#[derive(Clone, Default)]
struct SeatState {
    confidence: f64,
    scored: bool,
    settled: bool,
    support: Option<f64>,
}

#[derive(Clone)]
pub struct Metastable {
    params: Params,
    book: SeatBook,
    prompt: Text,
    cmp: Comparator,
    state: Vec<SeatState>,
    /// Each live seat's supporters (itself included) after the latest round.
    supporters: Vec<Vec<usize>>,
    /// Per round in flight: the peers sampled for each seat called.
    rounds: Rounds<Vec<Vec<usize>>>,
    changed_last_round: bool,
}

impl Metastable {
    pub fn new(params: Params, seats: Vec<Seat>, prompt: &str) -> Metastable {
        let state = seats.iter().map(|_| SeatState::default()).collect();
        Metastable {
            cmp: Comparator::new(params.similarity, params.tolerance),
            supporters: vec![Vec::new(); seats.len()],
            book: SeatBook::new(&params, seats),
            params,
            prompt: Text::from(prompt),
            state,
            rounds: Rounds::default(),
            changed_last_round: true,
        }
    }

    fn live_seats(&self) -> impl Iterator<Item = usize> + '_ {
        self.book.live()
    }

    /// The live seats weighted by luminance, to draw samples from.
    fn sampler(&self) -> Sampler {
        Sampler::new(
            self.live_seats()
                .map(|j| (j, self.book[j].luminance.unwrap_or(0.0))),
        )
    }

    /// The sample of live peers shown to (or scored against) `seat` in `round`.
    fn draw(&self, sampler: &Sampler, seat: usize, round: usize) -> Vec<usize> {
        if self.params.k == 0 {
            return Vec::new();
        }
        let mut rng = SplitMix::for_draw(self.params.seed, round, self.book.name(seat));
        sampler.draw(&mut rng, seat, self.params.k)
    }

    /// Mean similarity of `seat`'s key to its live sampled peers' keys; None when no
    /// sampled peer is live (absence is never disagreement).
    fn agreement(&self, seat: usize, sample: &[usize]) -> Option<f64> {
        let peers = || sample.iter().copied().filter(|&j| self.book[j].live());
        let count = peers().count();
        if count == 0 {
            return None;
        }
        let Some(own) = &self.book[seat].key else {
            return Some(0.0);
        };
        let total: f64 = peers()
            .map(|j| {
                self.book[j]
                    .key
                    .as_ref()
                    .map_or(0.0, |k| self.cmp.sim(own, k))
            })
            .sum();
        Some(total / count as f64)
    }

    /// Weighted share of live seats supporting each live seat with a key; returns each
    /// seat's supporters (itself included), in the lists of `supporters` (last round's,
    /// whose room is reused).
    fn compute_support(&mut self, mut supporters: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
        let live: Vec<usize> = self.live_seats().collect();
        let weights: Vec<f64> = (0..self.book.len())
            .map(|i| self.book.weight(&self.params, i))
            .collect();
        let total: f64 = live.iter().map(|&i| weights[i]).sum();
        supporters.resize_with(self.book.len(), Vec::new);
        supporters.iter_mut().for_each(Vec::clear);
        let keyed: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.book[i].key.is_some())
            .collect();
        let keys: Vec<&Key> = keyed
            .iter()
            .filter_map(|&i| self.book[i].key.as_ref())
            .collect();
        for &i in &keyed {
            supporters[i].push(i);
        }
        self.cmp.pairs_at_least(&keys, self.params.alpha, |a, b| {
            supporters[keyed[a]].push(keyed[b]);
            supporters[keyed[b]].push(keyed[a]);
        });
        // In seat order, as the sums below need to be the same whatever found the pairs.
        let mut acc = vec![0.0; self.book.len()];
        for &i in &keyed {
            supporters[i].sort_unstable();
            acc[i] = supporters[i].iter().map(|&j| weights[j]).sum();
        }
        for (i, s) in self.state.iter_mut().enumerate() {
            let standing = &self.book[i];
            s.support = if standing.live() && total > 0.0 {
                Some(if standing.key.is_some() {
                    acc[i] / total
                } else {
                    0.0
                })
            } else {
                None
            };
        }
        supporters
    }

    /// For each live seat with a key, how central its position is: the mean, over the
    /// seats that support it, of their full answers' mean Jaccard similarity to every other
    /// live answer. Members of one position share the value; it breaks ties in support
    /// between positions (the answer whose reasoning the panel shares more, a
    /// minimum-Bayes-risk choice) before speed is looked at.
    ///
    /// Computed only when positions that do not support each other tie for the highest
    /// support; otherwise every value is 0 and the tie-break is not needed.
    /// Only the decision needs it: finality depends on the top support alone.
    fn centrality(&self) -> Vec<f64> {
        let supporters = &self.supporters;
        let live: Vec<usize> = self.live_seats().collect();
        let n = self.book.len();
        let mut out = vec![0.0; n];
        if live.len() < 2 {
            return out;
        }
        let top = live
            .iter()
            .filter_map(|&i| self.state[i].support)
            .fold(f64::NEG_INFINITY, f64::max);
        let leaders: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.book[i].key.is_some())
            .filter(|&i| {
                self.state[i]
                    .support
                    .is_some_and(|s| (s - top).abs() <= TIE)
            })
            .collect();
        let contested = leaders
            .iter()
            .any(|&i| !supporters[leaders[0]].contains(&i));
        if !contested {
            return out;
        }
        // Each live answer's summed Jaccard similarity to every other one, added pair by
        // pair in the order `a < b`: for each answer, the terms come in the order of the
        // other answer.
        let m = live.len();
        let mut total = vec![0.0; m];
        let whole = |i: usize| {
            let s = &self.book[i];
            matches!((&s.key, s.text.as_deref()), (Some(key), Some(text)) if key.text() == text.trim())
        };
        // Whole answers as token sets of the run's vocabulary; the key's own set when
        // the key already is the whole answer.
        let full: Vec<(usize, Cow<'_, TokenSet>)> = live
            .iter()
            .enumerate()
            .filter_map(|(a, &i)| {
                let s = &self.book[i];
                let text = s.text.as_deref()?;
                let set = match &s.key {
                    Some(key) if whole(i) => Cow::Borrowed(key.tokens()),
                    _ => Cow::Owned(self.cmp.key_of(text).into_tokens()),
                };
                Some((a, set))
            })
            .collect();
        // Jaccard is symmetric to the bit (the same integer counts on either side):
        // each pair of live seats is compared once.
        for (x, (a, set_a)) in full.iter().enumerate() {
            for (b, set_b) in &full[x + 1..] {
                let value = set_a.jaccard(set_b);
                total[*a] += value;
                total[*b] += value;
            }
        }
        let mut own = vec![0.0; n];
        for (a, _) in &full {
            own[live[*a]] = total[*a] / (m - 1) as f64;
        }
        for &i in &leaders {
            let group = &supporters[i];
            out[i] = group.iter().map(|&j| own[j]).sum::<f64>() / group.len() as f64;
        }
        out
    }

    /// Phase II on the current state: (winner, its support).
    fn winner(&self) -> Option<(usize, f64)> {
        let max_lum = self.book.max_luminance();
        let central = self.centrality();
        let mut best: Option<(usize, f64)> = None;
        for i in self.live_seats() {
            let (Some(support), Some(key)) = (self.state[i].support, &self.book[i].key) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((b, bs)) => {
                    if (support - bs).abs() > TIE {
                        support > bs
                    } else if (central[i] - central[b]).abs() > TIE {
                        central[i] > central[b]
                    } else {
                        let (si, sb) = (
                            self.state[i].confidence * self.book.luminance(i, max_lum),
                            self.state[b].confidence * self.book.luminance(b, max_lum),
                        );
                        let bk = self.book[b].key.as_ref().map_or("", |k| k.text());
                        si.total_cmp(&sb)
                            .then(
                                self.state[i]
                                    .confidence
                                    .total_cmp(&self.state[b].confidence),
                            )
                            .then_with(|| bk.cmp(key.text()))
                            .is_gt()
                    }
                }
            };
            if better {
                best = Some((i, support));
            }
        }
        best
    }

    fn is_final(&self) -> bool {
        let live = self.live_seats().count();
        // The winner has the top support, whichever of the tied positions it comes from.
        let top = self
            .live_seats()
            .filter(|&i| self.book[i].key.is_some())
            .filter_map(|i| self.state[i].support)
            .fold(None, |best: Option<f64>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            });
        live >= self.params.quorum && top.is_some_and(|s| s >= self.params.beta_2 - TIE)
    }
}

impl Strategy for Metastable {
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
        let stop = round > self.params.rounds
            || live.is_empty()
            || self.is_final()
            || live.iter().all(|&i| self.state[i].settled)
            || !self.changed_last_round;
        if stop {
            return self.rounds.stop();
        }
        let asks = self.params.answer.asks_for_final_line();
        let sampler = self.sampler();
        // Each answer is cut and fenced once, for every prompt of the round that shows it.
        let quoted = (0..self.book.len())
            .map(|i| self.book[i].text.as_ref().map(prompt::Quoted::new))
            .collect();
        let mut called = Vec::new();
        let mut samples = Vec::new();
        for seat in 0..self.book.len() {
            if self.state[seat].settled || self.book[seat].dead {
                continue;
            }
            let sample = self.draw(&sampler, seat, round);
            if sample.is_empty() {
                continue;
            }
            called.push(seat);
            samples.push(sample);
        }
        if called.is_empty() {
            return self.rounds.stop();
        }
        let shown = samples.iter().flatten().copied().collect();
        let shared = Arc::new(prompt::Refinements::new(
            self.prompt.clone(),
            quoted,
            shown,
            asks,
        ));
        let mut at = 0;
        let calls = called
            .iter()
            .zip(&samples)
            .map(|(&seat, sample)| {
                let previous = self.book[seat].text.is_some().then_some(seat);
                let peers = at..at + sample.len();
                at = peers.end;
                CallSpec {
                    seat,
                    round,
                    system: self.book.system(seat),
                    user: prompt::refine_in(&shared, previous, peers),
                }
            })
            .collect();
        self.rounds.issue(round, called, samples, calls)
    }

    fn absorb(&mut self, results: Vec<CallResult>) {
        let Some((round, called, mut samples, mut results)) = self.rounds.take(results) else {
            return;
        };
        // Per result: whether it is an answer, whose text then moves into the seat's
        // standing answer. A failure leaves the standing answer (stale).
        let (answered_at, changed) =
            self.book
                .take_answers(&mut results, &self.cmp, &self.params, |a, b| {
                    a.text() == b.text()
                });
        if round == 0 {
            let sampler = self.sampler();
            samples = called
                .iter()
                .map(|&seat| self.draw(&sampler, seat, 0))
                .collect();
        }
        // Support first, on the round's snapshot; then each called seat's agreement.
        let last = std::mem::take(&mut self.supporters);
        self.supporters = self.compute_support(last);
        // Only a seat that answered this round is scored: a stale one's confidence stands.
        let mut agreements = vec![None; self.book.len()];
        for (idx, &seat) in called.iter().enumerate() {
            if !answered_at[idx] {
                continue;
            }
            if let Some(a) = self.agreement(seat, &samples[idx]) {
                agreements[seat] = Some(a);
                let s = &mut self.state[seat];
                // Confidence starts at the round-0 agreement; a seat first scored in a
                // later round starts from 0 (c = λ·a), so a latecomer never outranks the
                // seats that held the same answer from round 0 (docs/protocol.md §3).
                s.confidence = if s.scored || round > 0 {
                    0.5 * s.confidence + 0.5 * a
                } else {
                    a
                };
                s.scored = true;
                s.settled = s.confidence >= self.params.beta_1;
            }
        }
        let max_lum = self.book.max_luminance();
        let (book, state) = (&self.book, &self.state);
        let trace = book.round_trace(
            round,
            &called,
            &results,
            &answered_at,
            |seat, idx, entry| {
                if let Some(i) = idx {
                    entry.sampled = Names::of_seats(book.names(), std::mem::take(&mut samples[i]));
                }
                entry.key = book.live_key(seat);
                entry.agreement = agreements[seat];
                entry.confidence = state[seat].confidence;
                entry.support = state[seat].support;
                entry.luminance = book[seat].live().then(|| book.luminance(seat, max_lum));
            },
        );
        self.rounds.close(trace);
        self.changed_last_round = round == 0 || changed;
    }

    fn decide(&self) -> Decision {
        self.decision(self.rounds.trace.clone())
    }

    fn finish(&mut self) -> Decision {
        let rounds = std::mem::take(&mut self.rounds.trace);
        self.decision(rounds)
    }
}

impl Metastable {
    /// The decision on the current state, with `rounds` as its trace (the strategy's).
    fn decision(&self, rounds: Vec<RoundTrace>) -> Decision {
        let winner = self.winner();
        let max_lum = self.book.max_luminance();
        let seats = (0..self.book.len())
            .map(|i| {
                let s = &self.state[i];
                let luminance = self.book.luminance(i, max_lum);
                let score = if self.book[i].live() {
                    s.confidence * luminance
                } else {
                    0.0
                };
                self.book
                    .outcome(i, s.confidence, s.support, score, max_lum)
            })
            .collect();
        Decision {
            finalized: self.is_final(),
            rounds_executed: self.rounds.executed(),
            seats,
            rounds,
            details: super::Details {
                self_confidence: self.book.self_confidence(&self.params),
                verdict_rule: Some(Rule::share(
                    "support",
                    self.params.beta_2,
                    false,
                    "of the live seats' weight agreeing with the winner",
                )),
                ..Default::default()
            },
            ..self.book.decision(&self.params, winner.map(|(w, _)| w))
        }
    }
}
