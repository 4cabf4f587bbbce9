//! The per-seat books every strategy keeps: who sits at the table, what each seat is
//! told, and each seat's standing answer (PROTOCOL.md P4, P10); from them, the parts of
//! a round's trace and of the decision that every strategy reports alike.
//!
//! A seat's standing answer is its latest successful one. A later call that fails (or is
//! cut off by Ctrl-C or the deadline) leaves it standing, marked stale: the seat still
//! counts in support and can still be sampled, so an outage never silences a dissenter
//! and a round in which every call fails leaves the previous decision standing. A seat
//! that never answered is absent: never counted, never sampled, never a dissenter.
//!
//! `hanzo` keeps its own books: it reproduces the reference's, where a failed call's
//! output becomes the seat's latest, luminance starts at 1.0 and the system prompt asks
//! for no answer format.

use std::sync::Arc;

use super::{
    CallResult, CallSpec, Decision, Details, Params, RoundTrace, Seat, SeatOutcome, Text,
    TraceEntry, confidence,
};
use crate::similarity::{Comparator, Key};

/// One seat's standing.
#[derive(Clone, Default)]
pub(crate) struct Standing {
    /// The standing answer: the latest successful one.
    pub text: Option<Text>,
    /// Its key.
    pub key: Option<Key>,
    /// `--confidence`: the confidence stated with the standing answer.
    pub reported: Option<f64>,
    /// 1 / (1 + ms/1000) of the call that gave the standing answer.
    pub luminance: Option<f64>,
    /// The latest call failed: the standing answer is an earlier one.
    pub stale: bool,
    /// A call failed in a way that cannot succeed if repeated: not called again.
    pub dead: bool,
}

impl Standing {
    /// Whether the seat has a standing answer, and so counts.
    pub fn live(&self) -> bool {
        self.text.is_some()
    }
}

/// The seats of a run and their standings.
#[derive(Clone)]
pub(crate) struct SeatBook {
    seats: Vec<Seat>,
    /// Every seat's name, by seat, shared by the trace's lists of peers.
    names: Arc<[Text]>,
    /// The system prompt of each seat's answering calls, the same in every round.
    systems: Vec<Option<Text>>,
    state: Vec<Standing>,
}

/// Whether a successful call's text carries an answer.
fn has_answer(r: &CallResult) -> bool {
    r.ok && !r.text.trim().is_empty()
}

/// The key of an answer and the confidence it states; under `--confidence`, the key of
/// the answer without its confidence line.
pub(crate) fn answer_key(
    cmp: &Comparator,
    params: &Params,
    text: &Text,
) -> (Option<Key>, Option<f64>) {
    if params.confidence {
        let key = cmp.key(&confidence::strip(text), &params.answer);
        (key, confidence::parse(text))
    } else {
        (cmp.key_in(text, &params.answer), None)
    }
}

impl SeatBook {
    pub fn new(params: &Params, seats: Vec<Seat>) -> SeatBook {
        SeatBook {
            names: seats.iter().map(|seat| seat.name.clone()).collect(),
            systems: super::prompt::seat_systems(params, &seats),
            state: seats.iter().map(|_| Standing::default()).collect(),
            seats,
        }
    }

    pub fn len(&self) -> usize {
        self.seats.len()
    }

    pub fn seat(&self, seat: usize) -> &Seat {
        &self.seats[seat]
    }

    pub fn name(&self, seat: usize) -> &Text {
        &self.seats[seat].name
    }

    pub fn names(&self) -> &Arc<[Text]> {
        &self.names
    }

    pub fn get_mut(&mut self, seat: usize) -> &mut Standing {
        &mut self.state[seat]
    }

    /// The seats with a standing answer, in seat order.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.seats.len()).filter(|&i| self.state[i].live())
    }

    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// The key of the seat's standing answer, as text.
    pub fn key_text(&self, seat: usize) -> String {
        self.state[seat]
            .key
            .as_ref()
            .map_or(String::new(), |k| k.text().to_string())
    }

    /// The system prompt of the seat's answering calls.
    pub fn system(&self, seat: usize) -> Option<Text> {
        self.systems[seat].clone()
    }

    /// The system prompt of a call that judges rather than answers (a ballot, an
    /// attestation, a vote): the seat's own or the run's, with no answer format.
    pub fn judge_system(&self, params: &Params, seat: usize) -> Option<Text> {
        self.seats[seat]
            .system
            .clone()
            .or_else(|| params.system.clone())
            .map(Text::from)
    }

    /// The seat's weight in support (its confidence bucket's under `--confidence`).
    pub fn weight(&self, params: &Params, seat: usize) -> f64 {
        confidence::seat_weight(params, &self.seats[seat], self.state[seat].reported)
    }

    /// The JSON `self_confidence` list (empty unless `--confidence`).
    pub fn self_confidence(&self, params: &Params) -> Vec<confidence::SelfConfidence> {
        confidence::report(
            params,
            self.seats
                .iter()
                .zip(&self.state)
                .map(|(seat, s)| (seat.name.as_str(), s.live(), s.reported)),
        )
    }

    /// Round 0: every seat is asked the question.
    pub fn answer_calls(&self, prompt: &Text) -> (Vec<usize>, Vec<CallSpec>) {
        let called: Vec<usize> = (0..self.seats.len()).collect();
        let calls = called
            .iter()
            .map(|&seat| CallSpec {
                seat,
                round: 0,
                system: self.system(seat),
                user: prompt.clone().into(),
            })
            .collect();
        (called, calls)
    }

    /// Takes the result of an answering call. An answer becomes the seat's standing
    /// answer (its text moves out of `r`), keyed by `key`, which returns the key and the
    /// stated confidence; the result is `Some(whether the key changed)`, by `same`. A
    /// failure leaves the standing answer, stale, and gives None.
    pub fn take_answer(
        &mut self,
        r: &mut CallResult,
        key: impl FnOnce(&Text) -> (Option<Key>, Option<f64>),
        same: impl FnOnce(&Key, &Key) -> bool,
    ) -> Option<bool> {
        let s = &mut self.state[r.seat];
        if !has_answer(r) {
            s.stale = s.live();
            s.dead |= r.fatal;
            return None;
        }
        let text = Text::from(std::mem::take(&mut r.text));
        let (key, reported) = key(&text);
        let changed = !s.live()
            || match (&s.key, &key) {
                (Some(a), Some(b)) => !same(a, b),
                (a, b) => a.is_some() != b.is_some(),
            };
        s.text = Some(text);
        s.key = key;
        s.reported = reported;
        s.luminance = Some(1.0 / (1.0 + r.latency_ms.max(0.0) / 1000.0));
        s.stale = false;
        Some(changed)
    }

    /// Takes the results of a round of answering calls, each by
    /// [`take_answer`](Self::take_answer) keyed by [`answer_key`]. Returns, per result,
    /// whether its text became the standing answer, and whether any seat's key changed
    /// (by `same`).
    pub fn take_answers(
        &mut self,
        results: &mut [CallResult],
        cmp: &Comparator,
        params: &Params,
        same: impl Fn(&Key, &Key) -> bool,
    ) -> (Vec<bool>, bool) {
        let mut changed = false;
        let took = results
            .iter_mut()
            .map(|r| {
                let took = self.take_answer(r, |text| answer_key(cmp, params, text), &same);
                changed |= took == Some(true);
                took.is_some()
            })
            .collect();
        (took, changed)
    }

    /// Takes the results of round 0, when no seat has an earlier key to compare with;
    /// returns, per result, whether its text became the standing answer.
    pub fn take_first_answers(
        &mut self,
        results: &mut [CallResult],
        cmp: &Comparator,
        params: &Params,
    ) -> Vec<bool> {
        self.take_answers(results, cmp, params, |a, b| a.text() == b.text())
            .0
    }

    /// Takes the result of a judging call (a ballot, an attestation, a vote): the
    /// standing answer is unchanged; a failure marks it stale. Returns whether the call
    /// answered.
    pub fn take_judgement(&mut self, r: &CallResult) -> bool {
        let s = &mut self.state[r.seat];
        let answered = has_answer(r);
        s.stale = !answered && s.live();
        s.dead |= r.fatal;
        answered
    }

    /// The highest luminance among the live seats.
    pub fn max_luminance(&self) -> f64 {
        self.live()
            .filter_map(|i| self.state[i].luminance)
            .fold(0.0, f64::max)
    }

    /// The seat's luminance normalized so the fastest live seat has 1.0; 0 when absent.
    pub fn luminance(&self, seat: usize, max: f64) -> f64 {
        let s = &self.state[seat];
        match (s.live(), s.luminance) {
            (true, Some(l)) if max > 0.0 => l / max,
            _ => 0.0,
        }
    }

    /// The common part of the seat's trace entry for a round: the call, its answer,
    /// latency, usage and error, and whether the seat stands on an earlier answer.
    /// `took`: the result's text became the standing answer (and moved out of it).
    pub fn entry(&self, seat: usize, result: Option<&CallResult>, took: bool) -> TraceEntry {
        let s = &self.state[seat];
        let answered = took || result.is_some_and(has_answer);
        TraceEntry {
            participant: self.seats[seat].name.clone(),
            called: result.is_some(),
            answer: result.filter(|r| r.ok).map(|r| match (&s.text, took) {
                (Some(text), true) => text.clone(),
                _ => Text::from(r.text.as_str()),
            }),
            latency_ms: result.map(|r| r.latency_ms),
            usage: result.map(|r| r.usage.clone()),
            error: result.and_then(|r| {
                if r.ok && !answered {
                    Some("empty answer".to_string())
                } else {
                    r.error.clone()
                }
            }),
            stale: result.is_some() && !answered && s.live(),
            cut: answered && result.is_some_and(|r| r.cut),
            ..TraceEntry::default()
        }
    }

    /// One round of the trace: each seat's [`entry`](Self::entry), for the seats of
    /// `called` with their result (`results` and `took` are in the order of `called`;
    /// `took`: the result's text became the standing answer), completed by
    /// `fill(seat, the index of its call in called, entry)`.
    pub fn round_trace(
        &self,
        round: usize,
        called: &[usize],
        results: &[CallResult],
        took: &[bool],
        mut fill: impl FnMut(usize, Option<usize>, &mut TraceEntry),
    ) -> RoundTrace {
        let mut position = vec![None; self.seats.len()];
        for (i, &seat) in called.iter().enumerate() {
            position[seat] = Some(i);
        }
        let participants = position
            .iter()
            .enumerate()
            .map(|(seat, &idx)| {
                let result = idx.map(|i| &results[i]);
                let mut entry = self.entry(seat, result, idx.is_some_and(|i| took[i]));
                fill(seat, idx, &mut entry);
                entry
            })
            .collect();
        RoundTrace {
            round,
            participants,
            ..RoundTrace::default()
        }
    }

    /// The key of the seat's standing answer; None when the seat is absent.
    pub fn live_key(&self, seat: usize) -> Option<Text> {
        let s = &self.state[seat];
        s.live()
            .then(|| s.key.as_ref().map(Key::shared_text))
            .flatten()
    }

    /// The seat's standing answer, as text.
    pub fn answer_text(&self, seat: usize) -> Option<String> {
        self.state[seat].text.as_deref().map(str::to_string)
    }

    /// The part of a decision for `winner`'s standing answer that every strategy reports
    /// alike: the winner, its key and answer, the live seats and the quorum. The strategy
    /// fills in the rest (finality, outcomes, trace, details).
    pub fn decision(&self, params: &Params, winner: Option<usize>) -> Decision {
        Decision {
            winner,
            finalized: false,
            answer: winner.map(|w| self.key_text(w)),
            synthesis: winner.and_then(|w| self.answer_text(w)),
            rounds_executed: 0,
            seats: Vec::new(),
            rounds: Vec::new(),
            live: self.live_count(),
            quorum: params.quorum,
            details: Details::default(),
        }
    }

    /// The seat's outcome at the end of the run, with the strategy's own measures.
    pub fn outcome(
        &self,
        seat: usize,
        confidence: f64,
        support: Option<f64>,
        score: f64,
        max_luminance: f64,
    ) -> SeatOutcome {
        let s = &self.state[seat];
        SeatOutcome {
            confidence,
            support,
            luminance: self.luminance(seat, max_luminance),
            score,
            live: s.live(),
            stale: s.stale && s.live(),
            key: self.live_key(seat),
        }
    }
}

impl std::ops::Index<usize> for SeatBook {
    type Output = Standing;
    fn index(&self, seat: usize) -> &Standing {
        &self.state[seat]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::{AnswerMode, Comparator, Metric};

    #[test]
    fn a_failed_call_leaves_the_standing_answer_stale_and_counted() {
        let params = Params::defaults(2);
        let cmp = Comparator::new(Metric::Jaccard, 0.0);
        let mut book = SeatBook::new(&params, vec![Seat::new("a"), Seat::new("b")]);
        let key = |text: &Text| (cmp.key(text, &AnswerMode::Auto), None);
        let same = |a: &Key, b: &Key| a.text() == b.text();

        // b fails before it ever answered: absent, not stale.
        let mut failed = CallResult::failed(1, "HTTP 503", 5.0);
        assert_eq!(book.take_answer(&mut failed, key, same), None);
        assert!(!book[1].live() && !book.entry(1, Some(&failed), false).stale);

        let mut first = CallResult::ok(0, "Final answer: Paris", 1000.0);
        assert_eq!(book.take_answer(&mut first, key, same), Some(true));
        assert_eq!(
            book.entry(0, Some(&first), true).answer.unwrap(),
            "Final answer: Paris"
        );

        // a's next call fails: its answer stands, counted, marked stale.
        let mut later = CallResult::failed(0, "HTTP 503", 5.0);
        assert_eq!(book.take_answer(&mut later, key, same), None);
        assert!(book[0].live() && book[0].stale);
        assert_eq!(book.live().collect::<Vec<_>>(), [0]);
        assert_eq!(book.key_text(0), "Paris");
        assert_eq!(
            book[0].luminance,
            Some(0.5),
            "the luminance of the answer that stands"
        );
        let entry = book.entry(0, Some(&later), false);
        assert!(entry.stale && entry.answer.is_none());
        assert_eq!(entry.error.as_deref(), Some("HTTP 503"));
        assert!(book.outcome(0, 0.0, None, 0.0, 0.5).stale);

        // An empty reply to a judging call is a failure too; a reply is not.
        assert!(!book.take_judgement(&CallResult::ok(0, "  ", 5.0)));
        assert!(book[0].stale);
        assert!(book.take_judgement(&CallResult::ok(0, "Vote: ACCEPT", 5.0)));
        assert!(!book[0].stale);
    }
}
