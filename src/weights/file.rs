//! Reading a weights file: parsed strictly, its version checked first, every number in
//! range, and every weight set naming the same seats. Errors name the file and what to fix.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{MAX_WEIGHT, SeatWeight, VERSION, WeightsFile};
use crate::error::ConfigError;

/// Reads, parses and checks the weights file at `path`.
pub fn load(path: &Path) -> Result<WeightsFile, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read the weights file {shown}: {e}")))?;
    parse(&text).map_err(|why| ConfigError::new(format!("weights file {shown}: {why}")))
}

/// Only the version, read before the rest: a file of another version is named as such
/// rather than as one with unknown fields.
#[derive(Deserialize)]
struct Versioned {
    version: Option<serde_json::Value>,
}

/// Parses and checks a weights file's text; the error says where and what.
pub fn parse(text: &str) -> Result<WeightsFile, String> {
    let versioned: Versioned = serde_json::from_str(text).map_err(|e| invalid(&e))?;
    match versioned.version {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "version {v} is not the version this build reads ({VERSION}): write it again with `llm-consensus eval FILE --learn-weights OUT` of this version"
            ));
        }
        None => return Err(format!("no \"version\" (this build reads {VERSION})")),
    }
    let file: WeightsFile = serde_json::from_str(text).map_err(|e| invalid(&e))?;
    check(&file)?;
    Ok(file)
}

/// A JSON error as `line L, column C: what`.
fn invalid(e: &serde_json::Error) -> String {
    let message = e.to_string();
    // serde_json appends the position to its message; it is given first here.
    let what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what);
    format!(
        "invalid JSON at line {}, column {}: {what}",
        e.line(),
        e.column()
    )
}

/// Every number in range; every category names exactly the seats of `seats`; no weight
/// set in which no seat counts.
fn check(file: &WeightsFile) -> Result<(), String> {
    check_set("seats", &file.seats)?;
    for (category, set) in &file.categories {
        let at = format!("categories.{category}");
        check_set(&at, set)?;
        if let Some(name) = set.keys().find(|n| !file.seats.contains_key(*n)) {
            return Err(format!("{at} weighs {name}, who is not in \"seats\""));
        }
        if let Some(name) = file.seats.keys().find(|n| !set.contains_key(*n)) {
            return Err(format!("{at} does not weigh {name}, who is in \"seats\""));
        }
    }
    if let Some(c) = &file.calibration {
        for (name, value) in [
            ("beta2", c.beta2),
            ("target", c.target),
            ("precision", c.precision),
            ("coverage", c.coverage),
        ] {
            within(&format!("calibration.{name}"), value, 1.0)?;
        }
    }
    Ok(())
}

/// `value` is a number from 0 to `hi` (NaN is not).
fn within(at: &str, value: f64, hi: f64) -> Result<(), String> {
    if (0.0..=hi).contains(&value) {
        Ok(())
    } else {
        // A huge number is shown as 1e308, not as its 309 digits.
        let got = if value.abs() >= 1e9 {
            format!("{value:e}")
        } else {
            value.to_string()
        };
        Err(format!("{at} must be between 0 and {hi}, got {got}"))
    }
}

fn check_set(at: &str, set: &BTreeMap<String, SeatWeight>) -> Result<(), String> {
    if set.is_empty() {
        return Err(format!("{at} weighs no seat"));
    }
    for (name, w) in set {
        within(&format!("{at}.{name}.weight"), w.weight, MAX_WEIGHT)?;
        within(&format!("{at}.{name}.accuracy"), w.accuracy, 1.0)?;
    }
    // Checked before any call: with every weight 0 no answer would count, and no run
    // could decide anything.
    if set.values().all(|w| w.weight == 0.0) {
        return Err(format!(
            "every seat of {at} weighs 0, so no answer would count: give at least one seat a positive weight"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(seats: &str, extra: &str) -> String {
        format!(r#"{{"version": 1, "method": "test", "items": 3, "seats": {{{seats}}}{extra}}}"#)
    }

    const AB: &str = r#""a": {"accuracy": 0.9, "weight": 2.0, "items": 3}, "b": {"accuracy": 0.5, "weight": 0.0, "items": 3}"#;

    #[test]
    fn a_good_file_parses_and_a_zero_weight_is_allowed() {
        let f = parse(&file(AB, "")).unwrap();
        assert_eq!(f.seats["a"].weight, 2.0);
        assert_eq!(f.seats["b"].weight, 0.0);
    }

    #[test]
    fn another_version_is_named_before_unknown_fields() {
        let err = parse(r#"{"version": 2, "new_field": 1}"#).unwrap_err();
        assert!(
            err.starts_with("version 2 is not the version this build reads (1)"),
            "{err}"
        );
        let err = parse(r#"{"method": "x"}"#).unwrap_err();
        assert!(err.contains("no \"version\""), "{err}");
    }

    #[test]
    fn malformed_json_gives_its_position() {
        let err = parse("{\"version\": 1,\n  \"seats\": {,}}").unwrap_err();
        assert!(
            err.starts_with("invalid JSON at line 2, column 13:"),
            "{err}"
        );
        let err = parse(&file(AB, r#", "extra": true"#)).unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_name_their_field() {
        let neg = r#""a": {"accuracy": 0.9, "weight": -1.0, "items": 3}"#;
        let err = parse(&file(neg, "")).unwrap_err();
        assert_eq!(err, "seats.a.weight must be between 0 and 1000000, got -1");
        let huge = r#""a": {"accuracy": 0.5, "weight": 1e308, "items": 1}"#;
        let err = parse(&file(huge, "")).unwrap_err();
        assert!(err.ends_with("got 1e308"), "{err}");
        let acc = r#""a": {"accuracy": 1.5, "weight": 1.0, "items": 3}"#;
        let err = parse(&file(acc, "")).unwrap_err();
        assert!(
            err.starts_with("seats.a.accuracy must be between 0 and 1"),
            "{err}"
        );
        let cal = r#", "calibration": {"beta2": 1.2, "target": 0.9, "precision": 0.9, "coverage": 0.4, "items": 10}"#;
        let err = parse(&file(AB, cal)).unwrap_err();
        assert!(
            err.starts_with("calibration.beta2 must be between 0 and 1"),
            "{err}"
        );
    }

    #[test]
    fn all_zero_and_mismatched_categories_are_refused() {
        let zero = r#""a": {"accuracy": 0.5, "weight": 0.0, "items": 3}"#;
        let err = parse(&file(zero, "")).unwrap_err();
        assert!(err.starts_with("every seat of seats weighs 0"), "{err}");
        let cats =
            r#", "categories": {"law": {"a": {"accuracy": 0.5, "weight": 1.0, "items": 1}}}"#;
        let err = parse(&file(AB, cats)).unwrap_err();
        assert_eq!(err, "categories.law does not weigh b, who is in \"seats\"");
    }
}
