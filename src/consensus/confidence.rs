//! `--confidence`: self-reported confidence, recalibrated before it weighs anything.
//!
//! Models state high confidence whether or not they are right, so the raw number is not
//! used as a weight. It is read from a `Confidence: N%` line and put in one of three
//! coarse buckets whose weights stay within a factor of two: a confident answer counts at
//! most twice an unsure one, and an answer without a stated confidence counts as medium.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use super::{Params, Seat};

/// Appended to the system prompt when `--confidence` is on.
pub const INSTRUCTION: &str = "After your answer, add a last line `Confidence: N%` giving the probability (0-100%) that your answer is correct.";

/// A participant's reported confidence and what it weighs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SelfConfidence {
    pub participant: String,
    /// As reported, in [0, 1]; None when the answer stated none.
    pub raw: Option<f64>,
    /// `low` (< 0.6), `medium` (0.6 to < 0.9, or not stated) or `high` (≥ 0.9).
    pub bucket: &'static str,
    /// The weight factor of the bucket: 0.5, 0.75 or 1.0.
    pub weight: f64,
}

/// The confidence stated on the last `Confidence:` line, in [0, 1]: `80%`, `0.8` and `80`
/// are the same.
pub fn parse(text: &str) -> Option<f64> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?im)^[\s*_#>`-]*confidence[\s*_`]*[:：][\s*_`]*([0-9]+(?:\.[0-9]+)?)\s*(%)?")
            .expect("a valid regex")
    });
    let c = re.captures_iter(text).last()?;
    let v: f64 = c[1].parse().ok()?;
    let v = if c.get(2).is_some() || v > 1.0 {
        v / 100.0
    } else {
        v
    };
    Some(v.clamp(0.0, 1.0))
}

/// `text` without its `Confidence:` lines, so that a stated confidence is never taken for
/// the answer (a `number` key would otherwise read `80%` as the answer).
pub fn strip(text: &str) -> String {
    text.lines()
        .filter(|l| parse(l).is_none())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The recalibrated bucket of a reported confidence: (name, weight factor).
pub fn bucket(raw: Option<f64>) -> (&'static str, f64) {
    match raw {
        Some(v) if v < 0.6 => ("low", 0.5),
        Some(v) if v >= 0.9 => ("high", 1.0),
        _ => ("medium", 0.75),
    }
}

/// The system prompt with the confidence instruction appended (to whatever the seat or
/// run would get, even a user's own system prompt: the flag asks for it).
pub fn with_instruction(system: Option<String>) -> Option<String> {
    Some(match system {
        Some(s) => format!("{s}\n\n{INSTRUCTION}"),
        None => INSTRUCTION.to_string(),
    })
}

/// A seat's weight in support: its configured weight, times its confidence bucket's
/// factor under `--confidence`.
pub fn seat_weight(params: &Params, seat: &Seat, reported: Option<f64>) -> f64 {
    let factor = if params.confidence {
        bucket(reported).1
    } else {
        1.0
    };
    seat.weight * factor
}

/// The JSON `self_confidence` list: each live seat's reported and recalibrated
/// confidence, empty unless `--confidence` is on. `seats` yields (name, live, reported).
pub fn report<'a>(
    params: &Params,
    seats: impl Iterator<Item = (&'a str, bool, Option<f64>)>,
) -> Vec<SelfConfidence> {
    if !params.confidence {
        return Vec::new();
    }
    seats
        .filter(|&(_, live, _)| live)
        .map(|(name, _, raw)| {
            let (bucket, weight) = bucket(raw);
            SelfConfidence {
                participant: name.to_string(),
                raw,
                bucket,
                weight,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stated_confidence_is_read_in_its_usual_spellings() {
        assert_eq!(parse("Final answer: B\nConfidence: 80%"), Some(0.8));
        assert_eq!(parse("**Confidence:** 0.35"), Some(0.35));
        assert_eq!(parse("Confidence: 95"), Some(0.95));
        assert_eq!(parse("Confidence: 150%"), Some(1.0));
        assert_eq!(parse("I am fairly confident."), None);
        assert_eq!(strip("It is 42.\nConfidence: 80%"), "It is 42.");
    }

    #[test]
    fn buckets_are_coarse_and_bounded() {
        assert_eq!(bucket(Some(0.2)), ("low", 0.5));
        assert_eq!(bucket(Some(0.7)), ("medium", 0.75));
        assert_eq!(bucket(None), ("medium", 0.75));
        assert_eq!(bucket(Some(0.99)), ("high", 1.0));
    }
}
