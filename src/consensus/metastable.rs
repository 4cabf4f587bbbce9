//! `--strategy metastable` (the default): the seed protocol's shape with its defects fixed
//! (PROTOCOL.md §3).
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
//!   (confidence >= beta_1), or a round changed no answer.

use super::confidence;
use super::prompt;
use super::{
    CallResult, CallSpec, Decision, Names, Params, RoundTrace, Seat, SeatOutcome, Strategy, Text,
    TraceEntry, complete_results,
};
use std::borrow::Cow;
use std::sync::Arc;

use crate::similarity::{Comparator, Key, TokenSet};

/// Supports equal within this margin are ties.
const TIE: f64 = 1e-12;

/// SplitMix64: a tiny, well-mixed, seedable stream. The engine's draws are a documented
/// function of (seed, round, seat name), so they must never change with a dependency.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn for_draw(seed: u64, round: usize, name: &str) -> SplitMix {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in name.bytes().chain((round as u64).to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut s = SplitMix(h);
        s.next_u64();
        s
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }
}

/// The live seats of a round with their luminance, for weighted draws of peers.
struct Sampler {
    seats: Vec<usize>,
    /// Running sums of the weights: `prefix[i]` = weight of `seats[..=i]`.
    prefix: Vec<f64>,
}

impl Sampler {
    fn new(weighted: impl Iterator<Item = (usize, f64)>) -> Sampler {
        let mut seats = Vec::new();
        let mut prefix = Vec::new();
        let mut total = 0.0;
        for (seat, w) in weighted {
            total += w.max(f64::MIN_POSITIVE);
            seats.push(seat);
            prefix.push(total);
        }
        Sampler { seats, prefix }
    }

    fn weight(&self, i: usize) -> f64 {
        self.prefix[i] - if i == 0 { 0.0 } else { self.prefix[i - 1] }
    }

    /// `m` seats other than `asker`, without replacement, each pick proportional to its
    /// weight among those not yet picked; returned in a shuffled order.
    fn draw(&self, rng: &mut SplitMix, asker: usize, m: usize) -> Vec<usize> {
        let others = self.seats.len() - usize::from(self.seats.contains(&asker));
        let m = m.min(others);
        let mut picked: Vec<usize> = Vec::with_capacity(m);
        if m == others {
            picked.extend(self.seats.iter().copied().filter(|&s| s != asker));
        } else {
            let total = *self.prefix.last().unwrap_or(&0.0);
            while picked.len() < m {
                // Rejection keeps each draw O(log n); a run of rejections (one seat holds
                // nearly all the weight) falls back to an exact draw over the rest.
                let mut chosen = None;
                for _ in 0..32 {
                    let x = rng.unit() * total;
                    let i = self
                        .prefix
                        .partition_point(|&p| p < x)
                        .min(self.seats.len() - 1);
                    let seat = self.seats[i];
                    if seat != asker && !picked.contains(&seat) {
                        chosen = Some(seat);
                        break;
                    }
                }
                let seat = chosen.unwrap_or_else(|| {
                    let rest: Vec<usize> = (0..self.seats.len())
                        .filter(|&i| self.seats[i] != asker && !picked.contains(&self.seats[i]))
                        .collect();
                    let sum: f64 = rest.iter().map(|&i| self.weight(i)).sum();
                    let mut x = rng.unit() * sum;
                    for &i in &rest {
                        x -= self.weight(i);
                        if x <= 0.0 {
                            return self.seats[i];
                        }
                    }
                    self.seats[*rest.last().expect("fewer picks than candidates")]
                });
                picked.push(seat);
            }
        }
        for i in (1..picked.len()).rev() {
            let j = rng.below(i + 1);
            picked.swap(i, j);
        }
        picked
    }
}

/// `m` of `candidates` without replacement, each pick proportional to its weight among
/// those not yet picked, in a shuffled order.
pub(crate) fn weighted_sample(
    rng: &mut SplitMix,
    candidates: &[(usize, f64)],
    m: usize,
) -> Vec<usize> {
    Sampler::new(candidates.iter().copied()).draw(rng, usize::MAX, m)
}

#[derive(Default)]
struct SeatState {
    /// `--confidence`: the confidence stated with the latest answer.
    reported: Option<f64>,
    /// The latest successful answer (kept while absent, for its next prompt).
    text: Option<Text>,
    key: Option<Key>,
    /// The latest call succeeded.
    live: bool,
    /// 1 / (1 + ms/1000) of the latest successful call.
    luminance: Option<f64>,
    confidence: f64,
    scored: bool,
    settled: bool,
    /// A call failed in a way that cannot succeed if repeated.
    dead: bool,
    support: Option<f64>,
}

struct Pending {
    round: usize,
    called: Vec<usize>,
    samples: Vec<Vec<usize>>,
}

pub struct Metastable {
    params: Params,
    seats: Vec<Seat>,
    /// Every seat's name, by seat, shared by the trace's lists of peers.
    names: Arc<[Text]>,
    /// Each seat's system prompt, the same in every round.
    systems: Vec<Option<Text>>,
    prompt: Text,
    cmp: Comparator,
    state: Vec<SeatState>,
    /// Each live seat's supporters (itself included) after the latest round.
    supporters: Vec<Vec<usize>>,
    pending: Option<Pending>,
    /// Rounds absorbed so far (round 0 included).
    absorbed: usize,
    changed_last_round: bool,
    trace: Vec<RoundTrace>,
    done: bool,
}

impl Metastable {
    pub fn new(params: Params, seats: Vec<Seat>, prompt: &str) -> Metastable {
        let state = seats.iter().map(|_| SeatState::default()).collect();
        Metastable {
            cmp: Comparator::new(params.similarity, params.tolerance),
            supporters: vec![Vec::new(); seats.len()],
            systems: prompt::seat_systems(&params, &seats),
            names: seats.iter().map(|seat| seat.name.clone()).collect(),
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

    /// The live seats weighted by luminance, to draw samples from.
    fn sampler(&self) -> Sampler {
        Sampler::new(
            self.live_seats()
                .map(|j| (j, self.state[j].luminance.unwrap_or(0.0))),
        )
    }

    /// The sample of live peers shown to (or scored against) `seat` in `round`.
    fn draw(&self, sampler: &Sampler, seat: usize, round: usize) -> Vec<usize> {
        if self.params.k == 0 {
            return Vec::new();
        }
        let mut rng = SplitMix::for_draw(self.params.seed, round, &self.seats[seat].name);
        sampler.draw(&mut rng, seat, self.params.k)
    }

    /// Mean similarity of `seat`'s key to its live sampled peers' keys; None when no
    /// sampled peer is live (absence is never disagreement).
    fn agreement(&self, seat: usize, sample: &[usize]) -> Option<f64> {
        let peers = || sample.iter().copied().filter(|&j| self.state[j].live);
        let count = peers().count();
        if count == 0 {
            return None;
        }
        let Some(own) = &self.state[seat].key else {
            return Some(0.0);
        };
        let total: f64 = peers()
            .map(|j| {
                self.state[j]
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
        let weights: Vec<f64> = (0..self.seats.len()).map(|i| self.weight(i)).collect();
        let total: f64 = live.iter().map(|&i| weights[i]).sum();
        supporters.resize_with(self.seats.len(), Vec::new);
        supporters.iter_mut().for_each(Vec::clear);
        let keyed: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.state[i].key.is_some())
            .collect();
        let keys: Vec<&Key> = keyed
            .iter()
            .filter_map(|&i| self.state[i].key.as_ref())
            .collect();
        for &i in &keyed {
            supporters[i].push(i);
        }
        self.cmp.pairs_at_least(&keys, self.params.alpha, |a, b| {
            supporters[keyed[a]].push(keyed[b]);
            supporters[keyed[b]].push(keyed[a]);
        });
        // In seat order, as the sums below need to be the same whatever found the pairs.
        let mut acc = vec![0.0; self.seats.len()];
        for &i in &keyed {
            supporters[i].sort_unstable();
            acc[i] = supporters[i].iter().map(|&j| weights[j]).sum();
        }
        for (i, s) in self.state.iter_mut().enumerate() {
            s.support = if s.live && total > 0.0 {
                Some(if s.key.is_some() { acc[i] / total } else { 0.0 })
            } else {
                None
            };
        }
        supporters
    }

    fn max_luminance(&self) -> f64 {
        self.live_seats()
            .filter_map(|i| self.state[i].luminance)
            .fold(0.0, f64::max)
    }

    fn normalized_luminance(&self, seat: usize, max: f64) -> f64 {
        match (self.state[seat].live, self.state[seat].luminance) {
            (true, Some(l)) if max > 0.0 => l / max,
            _ => 0.0,
        }
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
        let n = self.seats.len();
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
            .filter(|&i| self.state[i].key.is_some())
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
            let s = &self.state[i];
            matches!((&s.key, s.text.as_deref()), (Some(key), Some(text)) if key.text() == text.trim())
        };
        // Whole answers as token sets of the run's vocabulary; the key's own set when
        // the key already is the whole answer.
        let full: Vec<(usize, Cow<'_, TokenSet>)> = live
            .iter()
            .enumerate()
            .filter_map(|(a, &i)| {
                let s = &self.state[i];
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
        let max_lum = self.max_luminance();
        let central = self.centrality();
        let mut best: Option<(usize, f64)> = None;
        for i in self.live_seats() {
            let (Some(support), Some(key)) = (self.state[i].support, &self.state[i].key) else {
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
                            self.state[i].confidence * self.normalized_luminance(i, max_lum),
                            self.state[b].confidence * self.normalized_luminance(b, max_lum),
                        );
                        let bk = self.state[b].key.as_ref().map_or("", |k| k.text());
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
            .filter(|&i| self.state[i].key.is_some())
            .filter_map(|i| self.state[i].support)
            .fold(None, |best: Option<f64>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            });
        live >= self.params.quorum && top.is_some_and(|s| s >= self.params.beta_2 - TIE)
    }
}

impl Strategy for Metastable {
    fn next_round(&mut self) -> Option<Vec<CallSpec>> {
        if self.done || self.pending.is_some() {
            return None;
        }
        if self.absorbed == 0 {
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
        let round = self.absorbed;
        let live: Vec<usize> = self.live_seats().collect();
        let stop = round > self.params.rounds
            || live.is_empty()
            || self.is_final()
            || live.iter().all(|&i| self.state[i].settled)
            || !self.changed_last_round;
        if stop {
            self.done = true;
            return None;
        }
        let asks = self.params.answer.asks_for_final_line();
        let sampler = self.sampler();
        // Each answer is cut and fenced once, for every prompt of the round that shows it.
        let quoted = self
            .state
            .iter()
            .map(|s| s.text.as_ref().map(prompt::Quoted::new))
            .collect();
        let mut called = Vec::new();
        let mut samples = Vec::new();
        for seat in 0..self.seats.len() {
            let s = &self.state[seat];
            if s.settled || s.dead {
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
            self.done = true;
            return None;
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
                let previous = self.state[seat].text.is_some().then_some(seat);
                let peers = at..at + sample.len();
                at = peers.end;
                CallSpec {
                    seat,
                    round,
                    system: self.system_for(seat),
                    user: prompt::refine_in(&shared, previous, peers),
                }
            })
            .collect();
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
            mut samples,
        }) = self.pending.take()
        else {
            return;
        };
        let mut results = complete_results(&called, results);
        let mut changed = false;
        // Per result: whether it is an answer, whose text then moves into the seat's state.
        let mut answered_at = vec![false; results.len()];
        for (r, answered_at) in results.iter_mut().zip(&mut answered_at) {
            let s = &mut self.state[r.seat];
            let answered = r.ok && !r.text.trim().is_empty();
            *answered_at = answered;
            if answered {
                let text = Text::from(std::mem::take(&mut r.text));
                let key = if self.params.confidence {
                    s.reported = confidence::parse(&text);
                    self.cmp.key(&confidence::strip(&text), &self.params.answer)
                } else {
                    self.cmp.key_in(&text, &self.params.answer)
                };
                changed |= !s.live || s.key.as_ref().map(Key::text) != key.as_ref().map(Key::text);
                s.text = Some(text);
                s.key = key;
                s.live = true;
                s.luminance = Some(1.0 / (1.0 + r.latency_ms.max(0.0) / 1000.0));
            } else {
                s.live = false;
                s.dead |= r.fatal;
            }
        }
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
        let mut agreements = vec![None; self.seats.len()];
        for (idx, &seat) in called.iter().enumerate() {
            if !self.state[seat].live {
                continue;
            }
            if let Some(a) = self.agreement(seat, &samples[idx]) {
                agreements[seat] = Some(a);
                let s = &mut self.state[seat];
                s.confidence = if s.scored {
                    0.5 * s.confidence + 0.5 * a
                } else {
                    a
                };
                s.scored = true;
                s.settled = s.confidence >= self.params.beta_1;
            }
        }
        let max_lum = self.max_luminance();
        let mut entries = Vec::with_capacity(self.seats.len());
        let mut position = vec![None; self.seats.len()];
        for (i, &seat) in called.iter().enumerate() {
            position[seat] = Some(i);
        }
        for (seat, &agreement) in agreements.iter().enumerate() {
            let idx = position[seat];
            let result = idx.map(|i| &results[i]);
            let answered = idx.is_some_and(|i| answered_at[i]);
            let s = &self.state[seat];
            entries.push(TraceEntry {
                participant: self.seats[seat].name.clone(),
                called: idx.is_some(),
                sampled: idx
                    .map(|i| Names::of_seats(&self.names, std::mem::take(&mut samples[i])))
                    .unwrap_or_default(),
                answer: result.filter(|r| r.ok).map(|r| {
                    if answered {
                        s.text.clone().unwrap_or_else(|| Text::from(""))
                    } else {
                        Text::from(r.text.as_str())
                    }
                }),
                key: if result.is_some_and(|r| r.ok) || (idx.is_none() && s.live) {
                    s.key.as_ref().map(Key::shared_text)
                } else {
                    None
                },
                agreement,
                confidence: s.confidence,
                support: s.support,
                luminance: s.live.then(|| self.normalized_luminance(seat, max_lum)),
                latency_ms: result.map(|r| r.latency_ms),
                usage: result.map(|r| r.usage.clone()),
                error: result.and_then(|r| {
                    if r.ok && !answered {
                        Some("empty answer".to_string())
                    } else {
                        r.error.clone()
                    }
                }),
            });
        }
        self.trace.push(RoundTrace {
            round,
            participants: entries,
            ..RoundTrace::default()
        });
        self.changed_last_round = round == 0 || changed;
        self.absorbed += 1;
    }

    fn decide(&self) -> Decision {
        self.decision(self.trace.clone())
    }

    fn finish(&mut self) -> Decision {
        let rounds = std::mem::take(&mut self.trace);
        self.decision(rounds)
    }
}

impl Metastable {
    /// The decision on the current state, with `rounds` as its trace (the strategy's).
    fn decision(&self, rounds: Vec<RoundTrace>) -> Decision {
        let winner = self.winner();
        let max_lum = self.max_luminance();
        let live = self.live_seats().count();
        let seats = (0..self.seats.len())
            .map(|i| {
                let s = &self.state[i];
                let luminance = self.normalized_luminance(i, max_lum);
                SeatOutcome {
                    confidence: s.confidence,
                    support: s.support,
                    luminance,
                    score: if s.live {
                        s.confidence * luminance
                    } else {
                        0.0
                    },
                    live: s.live,
                    key: s
                        .live
                        .then(|| s.key.as_ref().map(Key::shared_text))
                        .flatten(),
                }
            })
            .collect();
        Decision {
            winner: winner.map(|(w, _)| w),
            finalized: self.is_final(),
            answer: winner
                .and_then(|(w, _)| self.state[w].key.as_ref().map(|k| k.text().to_string())),
            synthesis: winner.and_then(|(w, _)| self.state[w].text.as_deref().map(str::to_string)),
            rounds_executed: self.absorbed.saturating_sub(1),
            seats,
            rounds,
            live,
            quorum: self.params.quorum,
            details: super::Details {
                self_confidence: self.self_confidence(),
                ..Default::default()
            },
        }
    }
}
