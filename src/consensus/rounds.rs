//! The round machinery every strategy but `hanzo` keeps: the round in flight, how many
//! rounds were absorbed, their trace, and whether the run is over.

use super::seats::SeatBook;
use super::{CallResult, CallSpec, RoundTrace, Text, complete_results};

/// The round in flight: its number, the seats called (in seat order) and what the
/// strategy keeps about it until its results are in.
#[derive(Clone)]
struct Pending<P> {
    round: usize,
    called: Vec<usize>,
    extra: P,
}

#[derive(Clone)]
pub(crate) struct Rounds<P = ()> {
    pending: Option<Pending<P>>,
    /// Rounds absorbed so far (round 0 included).
    pub absorbed: usize,
    pub trace: Vec<RoundTrace>,
    /// No more rounds will be issued.
    pub done: bool,
}

impl<P> Default for Rounds<P> {
    fn default() -> Rounds<P> {
        Rounds {
            pending: None,
            absorbed: 0,
            trace: Vec::new(),
            done: false,
        }
    }
}

impl<P> Rounds<P> {
    /// Whether a round may be issued: the run is not over and no round is in flight.
    fn open(&self) -> bool {
        !self.done && self.pending.is_none()
    }

    /// The number of the round to issue next; None while one is in flight or when the
    /// run is over.
    pub fn upcoming(&self) -> Option<usize> {
        self.open().then_some(self.absorbed)
    }

    /// Issues round 0: every seat of `book` is asked the question.
    pub fn ask_everyone(
        &mut self,
        book: &SeatBook,
        prompt: &Text,
        extra: P,
    ) -> Option<Vec<CallSpec>> {
        let (called, calls) = book.answer_calls(prompt);
        self.issue(0, called, extra, calls)
    }

    /// Issues `calls`, to the seats `called`, as round `round`.
    pub fn issue(
        &mut self,
        round: usize,
        called: Vec<usize>,
        extra: P,
        calls: Vec<CallSpec>,
    ) -> Option<Vec<CallSpec>> {
        self.pending = Some(Pending {
            round,
            called,
            extra,
        });
        Some(calls)
    }

    /// Ends the run: no round is issued.
    pub fn stop(&mut self) -> Option<Vec<CallSpec>> {
        self.done = true;
        None
    }

    /// The round in flight, if any: its number, the seats called, what the strategy
    /// kept, and `results` completed to one per call in seat order
    /// ([`complete_results`]).
    pub fn take(
        &mut self,
        results: Vec<CallResult>,
    ) -> Option<(usize, Vec<usize>, P, Vec<CallResult>)> {
        let Pending {
            round,
            called,
            extra,
        } = self.pending.take()?;
        let results = complete_results(&called, results);
        Some((round, called, extra, results))
    }

    /// Closes the round just taken with its trace.
    pub fn close(&mut self, trace: RoundTrace) {
        self.trace.push(trace);
        self.absorbed += 1;
    }

    /// Sampling rounds executed after round 0.
    pub fn executed(&self) -> usize {
        self.absorbed.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_issued_taken_with_its_missing_results_and_closed() {
        let mut rounds: Rounds<&str> = Rounds::default();
        assert_eq!(rounds.upcoming(), Some(0));
        rounds.issue(0, vec![0, 2], "extra", Vec::new());
        assert_eq!(rounds.upcoming(), None, "a round is in flight");
        let (round, called, extra, results) = rounds
            .take(vec![CallResult::ok(2, "b", 1.0)])
            .expect("the round in flight");
        assert_eq!((round, called, extra), (0, vec![0, 2], "extra"));
        assert_eq!(results.len(), 2);
        assert!(!results[0].ok && results[1].ok);
        assert!(rounds.take(Vec::new()).is_none(), "taken once");
        rounds.close(RoundTrace::default());
        assert_eq!((rounds.upcoming(), rounds.executed()), (Some(1), 0));
        assert_eq!(rounds.stop(), None);
        assert_eq!(rounds.upcoming(), None, "the run is over");
    }
}
