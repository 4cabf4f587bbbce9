//! `--strategy hanzo`: the seed protocol of hanzo-consensus 0.1.0, reproduced exactly,
//! defects included (docs/protocol.md §2). Its value is parity: the same scripted answers and
//! seed give the same winner, confidences, luminances, synthesis and prompts, byte for byte.

use crate::similarity::{TokenSet, Vocabulary};

use super::pyrandom::{PyRandom, REFERENCE_SUM, normalized_weights_with};
use super::{
    CallResult, CallSpec, Decision, Params, RoundTrace, Seat, SeatOutcome, Strategy, Text,
    TraceEntry, complete_results,
};

/// Characters that Python's `str.split()` treats as whitespace: Unicode White_Space plus
/// the information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `set(text.lower().split())`, its words interned in `vocabulary`.
pub fn py_word_set(text: &str, vocabulary: &mut Vocabulary) -> TokenSet {
    if text.is_ascii() {
        // The common case, split byte by byte: Python's ASCII whitespace is \t..\r, the
        // space and \x1c..\x1f.
        let lowered = text.to_ascii_lowercase();
        return lowered
            .as_bytes()
            .split(|&b| is_py_space(char::from(b)))
            .filter(|w| !w.is_empty())
            .map(|w| vocabulary.id(w))
            .collect();
    }
    let mut set = TokenSet::default();
    for word in text.split(is_py_space).filter(|w| !w.is_empty()) {
        // Lowercasing word by word equals lowercasing the whole text first: the
        // final-sigma context never extends across whitespace.
        set.insert(vocabulary.id(word.to_lowercase().as_bytes()));
    }
    set
}

/// Jaccard of two word sets; 0 when either is empty (as the reference).
pub fn set_jaccard(a: &TokenSet, b: &TokenSet) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.jaccard(b)
}

/// The first `limit` code points of `text`.
fn cut_chars(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

struct SeatState {
    latest: Text,
    /// `set(latest.lower().split())`; None until a round needs it.
    words: Option<TokenSet>,
    ok: bool,
    confidence: f64,
    luminance: f64,
}

pub struct Hanzo {
    params: Params,
    seats: Vec<Seat>,
    /// Each seat's system prompt, the same in every round.
    systems: Vec<Option<Text>>,
    prompt: Text,
    state: Vec<SeatState>,
    vocabulary: Vocabulary,
    rng: PyRandom,
    /// Rounds issued so far (0 = the proposals).
    issued: usize,
    /// Sampling rounds completed.
    executed: usize,
    sample: Vec<usize>,
    pending: Option<RoundTrace>,
    trace: Vec<RoundTrace>,
    done: bool,
}

impl Hanzo {
    pub fn new(params: Params, seats: Vec<Seat>, prompt: &str) -> Hanzo {
        let state = seats
            .iter()
            .map(|_| SeatState {
                latest: Text::from(""),
                words: None,
                ok: false,
                confidence: 0.0,
                luminance: 1.0,
            })
            .collect();
        // The reference sends a seat's own system prompt, else the run's, and nothing more.
        let systems = seats
            .iter()
            .map(|seat| {
                seat.system
                    .as_deref()
                    .or(params.system.as_deref())
                    .map(Text::from)
            })
            .collect();
        Hanzo {
            systems,
            rng: PyRandom::new(params.seed),
            vocabulary: Vocabulary::default(),
            params,
            seats,
            prompt: Text::from(prompt),
            state,
            issued: 0,
            executed: 0,
            sample: Vec::new(),
            pending: None,
            trace: Vec::new(),
            done: false,
        }
    }

    fn system_for(&self, seat: usize) -> Option<Text> {
        self.systems[seat].clone()
    }

    /// The shared refinement prompt of the reference, byte for byte.
    fn round_prompt(&self) -> String {
        let mut out = format!("Query: {}\n\nPeers:", self.prompt);
        for &p in &self.sample {
            out.push_str(&format!(
                "\n[{}] {}",
                self.seats[p].name,
                cut_chars(&self.state[p].latest, 1000)
            ));
        }
        out.push_str("\n\nRefine your response:");
        out
    }

    /// A seat's word set, made by now (every answer of a sampling round, and every seat
    /// sampled).
    fn words(&self, seat: usize) -> &TokenSet {
        self.state[seat]
            .words
            .as_ref()
            .expect("the words of every compared answer are made before the comparison")
    }

    /// The trace entry of `result`, whose text has moved to `text`.
    fn entry(
        &self,
        seat: usize,
        result: &CallResult,
        text: &Text,
        agreement: Option<f64>,
    ) -> TraceEntry {
        TraceEntry {
            participant: self.seats[seat].name.clone(),
            called: true,
            sampled: self
                .sample
                .iter()
                .map(|&p| self.seats[p].name.clone())
                .collect(),
            answer: Some(text.clone()),
            key: result.ok.then(|| text.clone()),
            agreement,
            confidence: self.state[seat].confidence,
            support: None,
            luminance: Some(self.state[seat].luminance),
            latency_ms: Some(result.latency_ms),
            usage: Some(result.usage.clone()),
            error: result.error.clone(),
            stale: false,
            cut: result.ok && result.cut,
            cached: false,
            not_awaited: false,
        }
    }
}

impl Strategy for Hanzo {
    fn next_round(&mut self) -> Option<Vec<CallSpec>> {
        if self.done {
            return None;
        }
        let n = self.seats.len();
        if self.issued == 0 {
            self.issued = 1;
            self.pending = Some(RoundTrace {
                round: 0,
                ..RoundTrace::default()
            });
            return Some(
                (0..n)
                    .map(|seat| CallSpec {
                        seat,
                        round: 0,
                        system: self.system_for(seat),
                        user: self.prompt.clone().into(),
                    })
                    .collect(),
            );
        }
        if self.executed >= self.params.rounds {
            self.done = true;
            return None;
        }
        let round = self.executed + 1;
        let lums: Vec<f64> = self.state.iter().map(|s| s.luminance).collect();
        let weights = normalized_weights_with(&lums, REFERENCE_SUM);
        self.sample = self.rng.choices(&weights, self.params.k.min(n));
        for i in 0..self.sample.len() {
            let s = &mut self.state[self.sample[i]];
            if s.words.is_none() {
                s.words = Some(py_word_set(&s.latest, &mut self.vocabulary));
            }
        }
        let user = super::Prompt::from(self.round_prompt());
        self.pending = Some(RoundTrace {
            round,
            shared_sample: Some(
                self.sample
                    .iter()
                    .map(|&p| self.seats[p].name.to_string())
                    .collect(),
            ),
            weights: Some(weights),
            participants: Vec::new(),
        });
        self.issued += 1;
        Some(
            (0..n)
                .map(|seat| CallSpec {
                    seat,
                    round,
                    system: self.system_for(seat),
                    user: user.clone(),
                })
                .collect(),
        )
    }

    fn absorb(&mut self, results: Vec<CallResult>) {
        let Some(mut trace) = self.pending.take() else {
            return;
        };
        let all: Vec<usize> = (0..self.seats.len()).collect();
        let results = complete_results(&all, results);
        if trace.round == 0 {
            for r in &results {
                let s = &mut self.state[r.seat];
                // The word set is made when a round samples this seat (see next_round):
                // most proposals are never compared.
                s.words = None;
                s.ok = r.ok;
                if r.ok && r.latency_ms > 0.0 {
                    s.luminance = 1.0 / (1.0 + r.latency_ms / 1000.0);
                }
            }
            for mut r in results {
                let text = Text::from(std::mem::take(&mut r.text));
                let entry = self.entry(r.seat, &r, &text, None);
                trace.participants.push(entry);
                self.state[r.seat].latest = text;
            }
        } else {
            // Results are applied in participant order, each against the state as it is
            // at that moment: earlier participants are already updated, later ones not.
            for mut r in results {
                let words = py_word_set(&r.text, &mut self.vocabulary);
                let s = &mut self.state[r.seat];
                s.ok = r.ok;
                s.words = Some(words);
                let mut agreement = None;
                if r.ok {
                    let a = if self.sample.is_empty() {
                        0.0
                    } else {
                        let own = self.words(r.seat);
                        let total: f64 = self
                            .sample
                            .iter()
                            .fold(0.0, |acc, &p| acc + set_jaccard(own, self.words(p)));
                        total / self.sample.len() as f64
                    };
                    let s = &mut self.state[r.seat];
                    s.confidence = s.confidence * 0.5 + a * 0.5;
                    agreement = Some(a);
                }
                let text = Text::from(std::mem::take(&mut r.text));
                let entry = self.entry(r.seat, &r, &text, agreement);
                trace.participants.push(entry);
                self.state[r.seat].latest = text;
            }
            self.executed += 1;
            let best = self
                .state
                .iter()
                .map(|s| s.confidence)
                .fold(f64::NEG_INFINITY, f64::max);
            if best >= self.params.beta_1 {
                self.done = true;
            }
        }
        self.trace.push(trace);
    }

    fn decide(&self) -> Decision {
        self.decision(self.trace.clone())
    }

    fn finish(&mut self) -> Decision {
        let rounds = std::mem::take(&mut self.trace);
        self.decision(rounds)
    }
}

impl Hanzo {
    /// The decision on the current state, with `rounds` as its trace (the strategy's).
    fn decision(&self, rounds: Vec<RoundTrace>) -> Decision {
        let scores: Vec<f64> = self
            .state
            .iter()
            .map(|s| s.confidence * s.luminance)
            .collect();
        let mut winner = 0;
        for (i, &score) in scores.iter().enumerate() {
            if score > scores[winner] {
                winner = i;
            }
        }
        let live = self.state.iter().filter(|s| s.ok).count();
        let answered = !rounds.is_empty() && live > 0;
        let winner = (answered && !self.seats.is_empty()).then_some(winner);
        let synthesis = winner.map(|w| self.state[w].latest.to_string());
        Decision {
            winner,
            finalized: winner.is_some_and(|w| scores[w] >= self.params.beta_2),
            answer: synthesis.clone(),
            synthesis,
            rounds_executed: self.executed,
            seats: self
                .state
                .iter()
                .zip(&scores)
                .map(|(s, &score)| SeatOutcome {
                    confidence: s.confidence,
                    support: None,
                    luminance: s.luminance,
                    score,
                    live: s.ok,
                    // The reference keeps no standing answers: a failed call's output
                    // becomes the latest.
                    stale: false,
                    key: s.ok.then(|| s.latest.clone()),
                })
                .collect(),
            rounds,
            live,
            quorum: self.params.quorum,
            details: super::Details {
                verdict_rule: Some(super::Rule::share(
                    "score",
                    self.params.beta_2,
                    false,
                    "confidence × luminance",
                )),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `set(text.lower().split())` the plain way: Unicode lowercasing of the whole text,
    /// split on Python's whitespace, each word hashed as it is.
    fn reference(text: &str, vocabulary: &mut Vocabulary) -> TokenSet {
        let lowered = text.to_lowercase();
        let mut set = TokenSet::default();
        for word in lowered.split(is_py_space).filter(|w| !w.is_empty()) {
            set.insert(vocabulary.id(word.as_bytes()));
        }
        set
    }

    proptest! {
        #[test]
        fn word_sets_equal_the_plain_split(
            text in "([a-zA-Z0-9.,]{1,20}|[ \t\n\r\u{b}\u{c}\u{1c}-\u{1f}\u{85}\u{a0}\u{3000}]|\\PC){0,60}"
        ) {
            let mut vocabulary = Vocabulary::default();
            let want = reference(&text, &mut vocabulary);
            prop_assert_eq!(py_word_set(&text, &mut vocabulary), want);
        }

        #[test]
        fn ascii_word_sets_equal_the_plain_split(text in "[ -~\t\n\r\u{b}\u{c}\u{1c}-\u{1f}]{0,200}") {
            let mut vocabulary = Vocabulary::default();
            let want = reference(&text, &mut vocabulary);
            prop_assert_eq!(py_word_set(&text, &mut vocabulary), want);
        }
    }
}
