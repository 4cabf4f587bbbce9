//! Seat weights learned from a batch's own answers (`eval --learn-weights`), applied by
//! `--weights` wherever a strategy weighs seats, and a calibrated `beta_2`
//! (`eval --calibrate`).
//!
//! The file is JSON, versioned, and names every seat it weighs: a seat of the panel that
//! the file does not name, a seat it names that is not in the panel, or a malformed file
//! is an error, never a silent default.

pub mod apply;
pub mod file;
pub mod learn;

pub use apply::{InUse, WeightsReport};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// The largest weight a file may give a seat (0 is the smallest: no evidence).
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// A weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsFile {
    pub version: u32,
    /// How the weights were estimated, for people (e.g. "one-coin EM, correlated errors").
    pub method: String,
    /// Items the estimate rests on.
    pub items: u64,
    /// Per seat (by the seat's name, as the report's `participants[].name` gives it).
    pub seats: BTreeMap<String, SeatWeight>,
    /// Per item category, per seat; a category missing here (or a run without one) uses
    /// `seats`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, BTreeMap<String, SeatWeight>>,
    /// A calibrated FINAL threshold (`eval --calibrate P`), used as `beta_2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// One seat's estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatWeight {
    /// Estimated probability that the seat's answer is right, 0–1.
    pub accuracy: f64,
    /// The weight derived from it (non-negative; 0 = the seat's answer is not evidence).
    pub weight: f64,
    /// Items with an answer from this seat that the estimate rests on.
    pub items: u64,
}

/// `eval --calibrate P`: the smallest `beta_2` whose FINAL precision on the labeled items
/// was at least `precision`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub beta2: f64,
    /// The precision asked for.
    pub target: f64,
    /// Measured at `beta2` on the labeled items.
    pub precision: f64,
    pub coverage: f64,
    /// Labeled items it was measured on.
    pub items: u64,
}
