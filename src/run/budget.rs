//! `--max-cost`: what the run has spent, and whether the next stage (a round, or the
//! synthesis call) fits in what is left even in its worst case.

use crate::config::SeatSpec;
use crate::provider::Usage;
use crate::provider::pricing::{ASSUMED_MAX_OUTPUT, Price};

pub(super) struct Budget {
    limit: Option<f64>,
    /// Actual costs, or a call's worst case when a token count is unknown.
    spent: f64,
}

impl Budget {
    pub(super) fn new(limit: Option<f64>) -> Budget {
        Budget { limit, spent: 0.0 }
    }

    pub(super) fn limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Why a stage whose worst case is `worst` may not start, in the words that follow
    /// its name ("round 2: …"); None when it fits or there is no limit.
    pub(super) fn refuse(&self, worst: f64) -> Option<String> {
        let limit = self.limit?;
        let total = self.spent + worst;
        (total > limit).then(|| {
            format!(
                "its worst case (${worst:.4}) would bring the cost to ${total:.4}, over --max-cost ${limit}"
            )
        })
    }

    /// Counts a call that answered: its cost, or `bound` when a count it needs is unknown.
    pub(super) fn charge(&mut self, price: Option<Price>, usage: &Usage, bound: f64) {
        self.spent += price.and_then(|p| p.cost(usage)).unwrap_or(bound);
    }

    /// Counts a call that failed: the tokens its attempts reported (often none).
    pub(super) fn charge_reported(&mut self, price: Option<Price>, usage: &Usage) {
        self.spent += reported_cost(price, usage);
    }
}

/// The cost of the tokens `usage` reports, an unknown count as none.
pub(super) fn reported_cost(price: Option<Price>, usage: &Usage) -> f64 {
    price.map_or(0.0, |p| {
        p.bound(
            usage.input_tokens.unwrap_or(0),
            usage.output_tokens.unwrap_or(0),
        )
    })
}

/// An answer's usage with the tokens its failed attempts reported added. A count the
/// answer itself did not report stays unknown: the failed attempts' share alone would
/// understate it.
pub(super) fn with_failed(answer: Usage, failed: &Usage) -> Usage {
    let known = Usage {
        input_tokens: answer.input_tokens.and(failed.input_tokens),
        output_tokens: answer.output_tokens.and(failed.output_tokens),
        reasoning_tokens: answer.reasoning_tokens.and(failed.reasoning_tokens),
        cached_input_tokens: answer.cached_input_tokens.and(failed.cached_input_tokens),
    };
    let mut usage = answer;
    usage.add(&known);
    usage
}

/// The most tokens a call can use, input and output: every byte of its prompt a token,
/// and the seat's output limit (or [`ASSUMED_MAX_OUTPUT`] when it sets none) all used.
/// `--dry-run` plans with it too.
pub(crate) fn worst_tokens(seat: &SeatSpec, system: Option<&str>, user: &str) -> (u64, u64) {
    let input = system.map_or(0, str::len) + user.len();
    let output = seat.max_tokens.map_or(ASSUMED_MAX_OUTPUT, u64::from);
    (input as u64, output)
}

/// The most a call can cost: the price of [`worst_tokens`]. 0 when unpriced.
pub(super) fn worst_case(seat: &SeatSpec, system: Option<&str>, user: &str) -> f64 {
    let (input, output) = worst_tokens(seat, system, user);
    seat.price.map_or(0.0, |p| p.bound(input, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_refused_only_when_its_worst_case_passes_the_limit() {
        let mut budget = Budget::new(Some(1.0));
        assert_eq!(budget.refuse(1.0), None);
        let price = Price {
            input: 1e6,
            output: 0.0,
        };
        let usage = Usage {
            input_tokens: Some(1),
            output_tokens: Some(0),
            ..Usage::default()
        };
        budget.charge(Some(price), &usage, 9.0);
        assert_eq!(budget.refuse(0.0), None);
        let why = budget.refuse(0.5).unwrap();
        assert!(why.contains("bring the cost to $1.5000"), "{why}");
        // An unknown count costs the call's worst case.
        budget.charge(Some(price), &Usage::default(), 0.25);
        assert!(budget.refuse(0.0).is_some());
        assert_eq!(Budget::new(None).refuse(f64::MAX), None);
    }

    #[test]
    fn failed_attempts_add_to_the_counts_an_answer_reported() {
        let failed = Usage {
            input_tokens: Some(50),
            output_tokens: Some(2),
            ..Usage::default()
        };
        let answer = Usage {
            input_tokens: Some(10),
            output_tokens: None,
            ..Usage::default()
        };
        let usage = with_failed(answer, &failed);
        assert_eq!((usage.input_tokens, usage.output_tokens), (Some(60), None));
        let mut budget = Budget::new(Some(1.0));
        let price = Price {
            input: 1e4,
            output: 1e4,
        };
        budget.charge_reported(Some(price), &failed);
        assert!((budget.spent - 0.52).abs() < 1e-12);
    }
}
