//! Checking the panel's answer against the expected one (`--expect`, `--expect-number`,
//! `--expect-choice`, `--expect-regex`) and deciding whether the run passes
//! (`--require`). Pure functions: the flags are parsed into an [`Expectation`] before any
//! call, and the run's winning key is checked after it.
//!
//! What is compared is always the winner's *key* (the compared part of its answer, the
//! JSON `answer`), normalized as the run normalizes keys:
//! - `--expect TEXT`: TEXT is taken as a key (it is not searched for a `Final answer:`
//!   line). The two match when their normalized token sequences are equal (`Canberra.`
//!   matches `canberra`), or, when both are numbers, when they are equal within
//!   `--tolerance` (`1,000` matches `1000.0`).
//! - `--expect-number N`: the last number of the key, equal to N within `--tolerance`.
//! - `--expect-choice X`: the choice letter (A–J) of the key, read as `--answer choice`
//!   reads a `Final answer:` line (`B`, `(B)`, `B. Paris`, `Option B`).
//! - `--expect-regex RE`: RE matches somewhere in the key (anchor it with `^…$`).

use std::fmt;

use regex::Regex;
use serde::Serialize;

use crate::error::ConfigError;
use crate::similarity::{Comparator, Metric, choice_key, number_key, parse_number};

/// Which outcomes count as a pass (`--require`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// The decision is FINAL and its answer matches.
    #[default]
    Final,
    /// The answer matches and the decision is FINAL or the winner's support is more than
    /// half of the live weight.
    Majority,
    /// The answer matches, FINAL or not.
    Any,
}

impl Require {
    /// Whether a run passes: its answer `matched`, and the decision was `finalized`, or
    /// (majority) the winner's `support` is more than half, or (any) it finished at all.
    /// The caller passes only finished runs (FINAL or NOT FINAL).
    pub fn passes(self, matched: bool, finalized: bool, support: Option<f64>) -> bool {
        matched
            && match self {
                Require::Final => finalized,
                Require::Majority => finalized || support.is_some_and(|s| s > 0.5),
                Require::Any => true,
            }
    }
}

impl fmt::Display for Require {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Require::Final => "final",
            Require::Majority => "majority",
            Require::Any => "any",
        })
    }
}

/// The expected answer, checked and compiled.
#[derive(Clone, Debug)]
pub enum Expected {
    Text(String),
    /// The number as written (compared through the run's comparator) and its value.
    Number(String, f64),
    Choice(char),
    Regex(Regex),
}

/// An expectation of a run: what is expected, and what counts as a pass.
#[derive(Clone, Debug)]
pub struct Expectation {
    pub expected: Expected,
    pub require: Require,
}

/// The expected value as the JSON shows it: a number for `--expect-number`, else text.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    Number(f64),
}

/// The outcome of a check: the JSON `expect` object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// `text`, `number`, `choice` or `regex`.
    pub kind: &'static str,
    pub value: Value,
    /// Whether the winner's key matches; false when there is no winner.
    pub matched: bool,
    pub require: Require,
    /// Whether the run passes: matched, with the outcome `require` asks for (set by the
    /// report, which knows the outcome).
    pub passed: bool,
}

impl Expectation {
    /// The expectation given by the flags (at most one; clap enforces that); None without
    /// one. A value that cannot be an expectation is a usage error.
    pub fn from_flags(
        text: Option<&str>,
        number: Option<&str>,
        choice: Option<&str>,
        regex: Option<&str>,
        require: Require,
    ) -> Result<Option<Expectation>, ConfigError> {
        let expected = if let Some(t) = text {
            if t.trim().is_empty() {
                return Err(ConfigError::new(
                    "--expect: the expected answer is empty (give the text the answer should be)",
                ));
            }
            Expected::Text(t.trim().to_string())
        } else if let Some(n) = number {
            let value = parse_number(n).filter(|v| v.is_finite()).ok_or_else(|| {
                ConfigError::new(format!(
                    "--expect-number: `{n}` is not a number (for example 391, -3.5 or 1e6)"
                ))
            })?;
            Expected::Number(n.trim().to_string(), value)
        } else if let Some(c) = choice {
            let letter = c.trim().to_ascii_uppercase();
            match letter.as_bytes() {
                [l @ b'A'..=b'J'] => Expected::Choice(char::from(*l)),
                _ => {
                    return Err(ConfigError::new(format!(
                        "--expect-choice: `{c}` is not a choice letter (one of A to J)"
                    )));
                }
            }
        } else if let Some(re) = regex {
            Expected::Regex(
                Regex::new(re)
                    .map_err(|e| ConfigError::new(format!("--expect-regex: invalid regex: {e}")))?,
            )
        } else {
            return Ok(None);
        };
        Ok(Some(Expectation { expected, require }))
    }

    /// Checks the winner's key (None when there is no winner) with the run's similarity
    /// metric and numeric tolerance.
    pub fn check(&self, key: Option<&str>, metric: Metric, tolerance: f64) -> Check {
        let matched = key.is_some_and(|k| self.matches(k, &Comparator::new(metric, tolerance)));
        Check {
            kind: self.kind(),
            value: match &self.expected {
                Expected::Number(_, v) => Value::Number(*v),
                _ => Value::Text(self.value_text()),
            },
            matched,
            require: self.require,
            passed: false,
        }
    }

    fn kind(&self) -> &'static str {
        match self.expected {
            Expected::Text(_) => "text",
            Expected::Number(..) => "number",
            Expected::Choice(_) => "choice",
            Expected::Regex(_) => "regex",
        }
    }

    fn value_text(&self) -> String {
        match &self.expected {
            Expected::Text(t) => t.clone(),
            Expected::Number(n, _) => n.clone(),
            Expected::Choice(c) => c.to_string(),
            Expected::Regex(re) => re.as_str().to_string(),
        }
    }

    fn matches(&self, key: &str, comparator: &Comparator) -> bool {
        match &self.expected {
            Expected::Text(text) => {
                let (a, b) = (comparator.key_of(key), comparator.key_of(text));
                match (a.number(), b.number()) {
                    // Both numeric: the comparator compares values within the tolerance.
                    (Some(_), Some(_)) => comparator.sim(&a, &b) >= 1.0,
                    _ => a.normalized() == b.normalized(),
                }
            }
            Expected::Number(written, _) => number_key(key).is_some_and(|found| {
                let (a, b) = (comparator.key_of(found), comparator.key_of(written));
                a.number().is_some() && comparator.sim(&a, &b) >= 1.0
            }),
            // The key read as a `Final answer:` value, as `--answer choice` reads one.
            Expected::Choice(letter) => {
                choice_key(&format!("Final answer: {key}")) == Some(*letter)
            }
            Expected::Regex(re) => re.is_match(key),
        }
    }
}

impl Check {
    /// How the check reads in the text report: `"Canberra"`, `the number 391`,
    /// `choice B`, `/^Canb/`.
    pub fn describe(&self) -> String {
        match (&self.value, self.kind) {
            (Value::Number(v), _) => format!("the number {v}"),
            (Value::Text(t), "choice") => format!("choice {t}"),
            (Value::Text(t), "regex") => format!("/{t}/"),
            (Value::Text(t), _) => format!("\"{t}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(kind: &str, value: &str) -> Expectation {
        let pick = |k: &str| (kind == k).then_some(value);
        Expectation::from_flags(
            pick("text"),
            pick("number"),
            pick("choice"),
            pick("regex"),
            Require::Final,
        )
        .unwrap()
        .unwrap()
    }

    fn matched(kind: &str, value: &str, key: &str, tolerance: f64) -> bool {
        expect(kind, value)
            .check(Some(key), Metric::Jaccard, tolerance)
            .matched
    }

    #[test]
    fn text_matches_after_the_key_normalization() {
        assert!(matched("text", "Canberra", "canberra.", 0.0));
        assert!(matched("text", "New York", "new  york!", 0.0));
        assert!(!matched("text", "Canberra", "Sydney", 0.0));
        // Equal token sequences, not overlapping sets.
        assert!(!matched("text", "Canberra", "Canberra or Sydney", 0.0));
        assert!(!matched("text", "york new", "new york", 0.0));
        // Numbers by value, within the tolerance.
        assert!(matched("text", "1000", "1,000.0", 0.0));
        assert!(matched("text", "100", "101", 0.02));
        assert!(!matched("text", "100", "101", 0.0));
    }

    #[test]
    fn a_number_is_the_last_number_of_the_key_within_the_tolerance() {
        assert!(matched("number", "391", "391", 0.0));
        assert!(matched("number", "391", "17 * 23 = 391.", 0.0));
        assert!(matched("number", "1e3", "$1,000", 0.0));
        assert!(matched("number", "400", "391", 0.05));
        assert!(!matched("number", "400", "391", 0.01));
        assert!(!matched("number", "391", "no number here", 0.5));
    }

    #[test]
    fn a_choice_is_read_as_a_final_answer_value() {
        for key in ["B", "b", "(B)", "B. Paris", "Option B", "**B**"] {
            assert!(matched("choice", "b", key, 0.0), "{key}");
        }
        assert!(!matched("choice", "B", "C", 0.0));
        assert!(!matched("choice", "B", "Paris", 0.0));
    }

    #[test]
    fn a_regex_searches_the_key() {
        assert!(matched("regex", "^Canb", "Canberra", 0.0));
        assert!(matched("regex", "(?i)canberra", "It is CANBERRA", 0.0));
        assert!(!matched("regex", "^Canberra$", "Canberra, Australia", 0.0));
    }

    #[test]
    fn require_says_which_outcomes_pass() {
        use Require::*;
        // (require, matched, finalized, support) -> passes
        let table = [
            (Final, true, true, Some(0.9), true),
            (Final, true, false, Some(0.9), false),
            (Final, false, true, Some(1.0), false),
            (Majority, true, false, Some(0.67), true),
            (Majority, true, false, Some(0.5), false),
            (Majority, true, false, None, false),
            (Majority, true, true, Some(0.4), true),
            (Majority, false, false, Some(1.0), false),
            (Any, true, false, Some(0.1), true),
            (Any, true, false, None, true),
            (Any, false, true, Some(1.0), false),
        ];
        for (require, matched, finalized, support, passes) in table {
            assert_eq!(
                require.passes(matched, finalized, support),
                passes,
                "{require} {matched} {finalized} {support:?}"
            );
        }
    }

    #[test]
    fn no_winner_never_matches() {
        let check = expect("text", "x").check(None, Metric::Jaccard, 0.0);
        assert!(!check.matched);
    }

    #[test]
    fn values_that_cannot_be_expected_are_usage_errors() {
        let err = |t, n, c, r| {
            Expectation::from_flags(t, n, c, r, Require::Final)
                .unwrap_err()
                .to_string()
        };
        assert!(err(Some("  "), None, None, None).contains("empty"));
        assert!(err(None, Some("many"), None, None).contains("not a number"));
        assert!(err(None, None, Some("K"), None).contains("A to J"));
        assert!(err(None, None, Some("AB"), None).contains("A to J"));
        assert!(err(None, None, None, Some("(")).contains("invalid regex"));
        assert!(
            Expectation::from_flags(None, None, None, None, Require::Any)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_json_value_is_a_number_only_for_numbers() {
        let json = |kind, value| {
            serde_json::to_value(expect(kind, value).check(Some("4"), Metric::Jaccard, 0.0))
                .unwrap()
        };
        assert_eq!(json("number", "4")["value"], serde_json::json!(4.0));
        assert_eq!(json("text", "4")["value"], "4");
        assert_eq!(json("choice", "c")["value"], "C");
        assert_eq!(json("text", "4")["require"], "final");
        assert_eq!(json("text", "4")["matched"], true);
    }
}
