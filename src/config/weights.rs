//! `--weights FILE` / `[consensus] weights`: the weights file a run applies to its panel,
//! and the `beta_2` its calibration gives.
//!
//! `beta_2` follows the one precedence rule, with the calibration at the level where the
//! file was named: `--beta2` > the calibration of a file named by `--weights` >
//! `[consensus] beta_2` > the calibration of a file named by `[consensus] weights` > the
//! default. Within a level, a beta_2 the user wrote beats the file's.

use std::path::Path;
use std::sync::Arc;

use super::limits::{Opt, Source, pick};
use super::schema::ConsensusSection;
use super::{Result, SeatSpec, Settings};
use crate::cli::AskArgs;
use crate::consensus::Params;
use crate::error::ConfigError;
use crate::weights::{InUse, file};

/// The weights file of the run, applied to `seats` (and its calibration to `params`);
/// None without one.
pub(super) fn resolve_weights(
    args: &AskArgs,
    c: &ConsensusSection,
    config_path: Option<&Path>,
    seats: &mut [SeatSpec],
    params: &mut Params,
) -> Result<Option<InUse>> {
    // A relative path in the file is relative to the file, as its author sees it.
    let key = c
        .weights
        .as_ref()
        .map(|p| match config_path.and_then(Path::parent) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        });
    let opt = Opt {
        flag: "--weights",
        key: "weights",
    };
    let Some(picked) = pick(opt, args.consensus.weights.clone(), key) else {
        if let Some(category) = &args.category {
            return Err(ConfigError::new(format!(
                "--category {category} picks weights of a weights file: give --weights FILE (or [consensus] weights)"
            )));
        }
        return Ok(None);
    };
    let weights = file::load(&picked.value)?;
    let configured = seats.iter().map(|s| (s.name.clone(), s.weight)).collect();
    let category = args.category.as_deref();
    let mut in_use = InUse::new(picked.value, weights, configured, category)?;
    let from_flag = matches!(picked.source, Source::Flag(_));
    let (a, k) = (args.consensus.beta_2, c.beta_2);
    in_use.beta_2_from = match &in_use.file.calibration {
        Some(cal) if a.is_none() && (from_flag || k.is_none()) => {
            params.beta_2 = cal.beta2;
            "the weights file's calibration".to_string()
        }
        _ if a.is_some() => "--beta2".to_string(),
        _ if k.is_some() => "[consensus] beta_2".to_string(),
        _ => "the default".to_string(),
    };
    apply(&in_use, seats);
    Ok(Some(in_use))
}

/// Sets each seat's weight to its configured weight times the file's.
fn apply(weights: &InUse, seats: &mut [SeatSpec]) {
    for (seat, weight) in seats.iter_mut().zip(weights.applied()) {
        seat.weight = weight;
    }
}

/// The settings for an eval item of `category`: its weights when the weights file has
/// that category, else the settings as they are (the file's overall weights).
pub fn for_category(settings: &Arc<Settings>, category: Option<&str>) -> Arc<Settings> {
    let Some(weights) = settings
        .weights
        .as_ref()
        .and_then(|w| w.for_category(category))
    else {
        return Arc::clone(settings);
    };
    let mut s = (**settings).clone();
    apply(&weights, &mut s.seats);
    s.weights = Some(weights);
    Arc::new(s)
}
