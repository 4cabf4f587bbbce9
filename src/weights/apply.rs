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
use crate::config::{SeatSpec, Settings};
use crate::error::ConfigError;

/// A weights file in use by a run.
#[derive(Clone, Debug)]
pub struct InUse {
    pub path: PathBuf,
    pub file: Arc<WeightsFile>,
    /// The category whose weights are applied; None: the file's `seats`.
    pub category: Option<String>,
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

    /// Sets each seat's weight to its configured weight times its learned one.
    pub fn apply(&self, seats: &mut [SeatSpec]) {
        for (seat, weight) in seats.iter_mut().zip(self.applied()) {
            seat.weight = weight;
        }
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
}

/// The settings for an item of `category`: its weights when the file has that category,
/// else the settings as they are (the file's `seats`).
pub fn for_category(settings: &Arc<Settings>, category: Option<&str>) -> Arc<Settings> {
    let Some(weights) = &settings.weights else {
        return Arc::clone(settings);
    };
    match category {
        Some(c) if weights.file.categories.contains_key(c) => {
            let mut s = (**settings).clone();
            let mut w = weights.clone();
            w.category = Some(c.to_string());
            w.apply(&mut s.seats);
            s.weights = Some(w);
            Arc::new(s)
        }
        _ => Arc::clone(settings),
    }
}
