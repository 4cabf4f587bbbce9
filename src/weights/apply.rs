//! A weights file applied to a panel: its seats matched to the panel's by name, each
//! seat's weight set to its configured weight times its learned one (for the item's
//! category when the file has it), and what was applied, as the report shows it.
//!
//! Multiplying keeps both meanings: a configured weight says how much the user trusts a
//! seat whatever the data, a learned one how reliable the batch showed it to be; with the
//! default configured weight 1 the learned weight is used as it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{SeatWeight, WeightsFile};
use crate::error::ConfigError;

/// A weights file in use by a run.
#[derive(Clone, Debug)]
pub struct InUse {
    pub path: PathBuf,
    pub file: Arc<WeightsFile>,
    /// The category whose weights are applied; None: the file's `seats`.
    category: Option<String>,
    /// Where `beta_2` came from, as the report says it (the file's calibration, a flag, a
    /// key or the default).
    pub beta_2_from: String,
    /// Each seat's name and configured weight, in panel order.
    configured: Vec<(String, f64)>,
}

/// What the report says of the weights applied (JSON `weights`, absent without a file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsReport {
    /// The file, as named.
    pub file: String,
    /// How its weights were estimated.
    pub method: String,
    /// The category whose weights were applied; absent: the file's `seats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The run's `beta_2`, and where it came from.
    pub beta_2: f64,
    pub beta_2_from: String,
    /// Per seat, in panel order; `participants[].weight` is configured × learned.
    pub seats: Vec<AppliedSeat>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppliedSeat {
    pub name: String,
    pub configured: f64,
    pub learned: f64,
}

impl WeightsReport {
    /// One line for people: `weights FILE (METHOD, category C): a 2, b 0.5; beta_2 0.7
    /// from SOURCE`.
    pub fn line(&self) -> String {
        let category = self
            .category
            .as_ref()
            .map(|c| format!(", category {c}"))
            .unwrap_or_default();
        let seats: Vec<String> = self
            .seats
            .iter()
            .map(|s| {
                let applied = s.configured * s.learned;
                if s.configured == 1.0 {
                    format!("{} {}", s.name, round(applied))
                } else {
                    format!(
                        "{} {} ({} × {})",
                        s.name,
                        round(applied),
                        round(s.configured),
                        round(s.learned)
                    )
                }
            })
            .collect();
        format!(
            "weights {} ({}{category}): {}; beta_2 {} from {}",
            self.file,
            self.method,
            seats.join(", "),
            round(self.beta_2),
            self.beta_2_from
        )
    }
}

/// A weight as people read it: at most 3 decimals.
fn round(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// At most this many names are listed in an error.
const LISTED: usize = 8;

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut shown = names[..names.len().min(LISTED)].join(", ");
    if names.len() > LISTED {
        shown.push_str(&format!(", … ({} in all)", names.len()));
    }
    shown
}

/// Checks that the file weighs exactly the panel's seats: a seat of one that the other
/// does not name is an error naming it, the file, and the names there are.
pub fn check_seats(path: &Path, file: &WeightsFile, panel: &[&str]) -> Result<(), ConfigError> {
    let shown = path.display();
    if let Some(seat) = panel.iter().find(|s| !file.seats.contains_key(**s)) {
        return Err(ConfigError::new(format!(
            "the weights file {shown} does not weigh seat {seat} of the panel (it weighs: {}); learn weights for this panel with `eval --learn-weights`",
            list(file.seats.keys().map(String::as_str))
        )));
    }
    if let Some(seat) = file.seats.keys().find(|s| !panel.contains(&s.as_str())) {
        return Err(ConfigError::new(format!(
            "the weights file {shown} weighs seat {seat}, who is not in the panel (its seats: {})",
            list(panel.iter().copied())
        )));
    }
    Ok(())
}

/// The categories of the file, listed for an error.
fn categories(file: &WeightsFile) -> String {
    if file.categories.is_empty() {
        "it has none".to_string()
    } else {
        format!(
            "it has: {}",
            list(file.categories.keys().map(String::as_str))
        )
    }
}

impl InUse {
    /// The file at `path` for the panel `seats` (their configured weights as they are),
    /// with `category`'s weights (an unknown one is an error listing the file's).
    pub fn new(
        path: PathBuf,
        file: WeightsFile,
        seats: Vec<(String, f64)>,
        category: Option<&str>,
    ) -> Result<InUse, ConfigError> {
        let names: Vec<&str> = seats.iter().map(|s| s.0.as_str()).collect();
        check_seats(&path, &file, &names)?;
        if let Some(c) = category
            && !file.categories.contains_key(c)
        {
            return Err(ConfigError::new(format!(
                "--category {c}: the weights file {} has no such category ({})",
                path.display(),
                categories(&file)
            )));
        }
        Ok(InUse {
            path,
            category: category.map(str::to_string),
            file: Arc::new(file),
            beta_2_from: String::new(),
            configured: seats,
        })
    }

    /// The learned weights applied: the category's, else the file's `seats`.
    fn set(&self) -> &std::collections::BTreeMap<String, SeatWeight> {
        self.category
            .as_deref()
            .and_then(|c| self.file.categories.get(c))
            .unwrap_or(&self.file.seats)
    }

    /// Each seat's weight in panel order: its configured weight times its learned one.
    pub fn applied(&self) -> Vec<f64> {
        let set = self.set();
        self.configured
            .iter()
            .map(|(name, configured)| configured * set.get(name).map_or(1.0, |w| w.weight))
            .collect()
    }

    pub fn report(&self, beta_2: f64) -> WeightsReport {
        let set = self.set();
        WeightsReport {
            file: self.path.display().to_string(),
            method: self.file.method.clone(),
            category: self.category.clone(),
            beta_2,
            beta_2_from: self.beta_2_from.clone(),
            seats: self
                .configured
                .iter()
                .map(|(name, configured)| AppliedSeat {
                    name: name.clone(),
                    configured: *configured,
                    learned: set.get(name).map_or(1.0, |w| w.weight),
                })
                .collect(),
        }
    }

    /// The same file with `category`'s weights, when the file has that category.
    pub fn for_category(&self, category: Option<&str>) -> Option<InUse> {
        let c = category.filter(|c| self.file.categories.contains_key(*c))?;
        let mut w = self.clone();
        w.category = Some(c.to_string());
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::file::parse;

    const FILE: &str = r#"{"version": 1, "method": "m", "items": 4,
        "seats": {"a": {"accuracy": 0.9, "weight": 4, "items": 4},
                  "b": {"accuracy": 0.6, "weight": 0, "items": 4}},
        "categories": {"law": {"a": {"accuracy": 0.5, "weight": 0.5, "items": 2},
                               "b": {"accuracy": 0.8, "weight": 2, "items": 2}}}}"#;

    fn in_use(seats: &[(&str, f64)], category: Option<&str>) -> Result<InUse, ConfigError> {
        let seats = seats.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        InUse::new("w.json".into(), parse(FILE).unwrap(), seats, category)
    }

    #[test]
    fn the_applied_weight_is_configured_times_learned_per_category() {
        let w = in_use(&[("b", 3.0), ("a", 1.0)], None).unwrap();
        assert_eq!(w.applied(), [0.0, 4.0]);
        let law = w.for_category(Some("law")).unwrap();
        assert_eq!(law.applied(), [6.0, 0.5]);
        assert_eq!(law.report(0.7).category.as_deref(), Some("law"));
        assert!(w.for_category(Some("math")).is_none());
        assert!(w.for_category(None).is_none());
        let report = w.report(0.7);
        assert_eq!(
            report.seats[0],
            AppliedSeat {
                name: "b".into(),
                configured: 3.0,
                learned: 0.0
            }
        );
        assert_eq!(
            report.line(),
            "weights w.json (m): b 0 (3 × 0), a 4; beta_2 0.7 from "
        );
    }

    #[test]
    fn seats_must_match_both_ways_and_categories_must_exist() {
        let err = in_use(&[("a", 1.0)], None).unwrap_err().0;
        assert_eq!(
            err,
            "the weights file w.json weighs seat b, who is not in the panel (its seats: a)"
        );
        let err = in_use(&[("a", 1.0), ("b", 1.0), ("c", 1.0)], None)
            .unwrap_err()
            .0;
        assert!(
            err.starts_with(
                "the weights file w.json does not weigh seat c of the panel (it weighs: a, b)"
            ),
            "{err}"
        );
        let err = in_use(&[("a", 1.0), ("b", 1.0)], Some("math"))
            .unwrap_err()
            .0;
        assert_eq!(
            err,
            "--category math: the weights file w.json has no such category (it has: law)"
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let shown = list(names.iter().map(String::as_str));
        assert_eq!(shown, "s0, s1, s2, s3, s4, s5, s6, s7, … (10 in all)");
    }
}
