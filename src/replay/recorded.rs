//! What replay reads of a recorded run: the part of an `ask --json` report it needs
//! (parameters, seats, the trace), checked and turned into the engine's inputs: the
//! parameters and seats to run with, and the result recorded for each (round, seat).

use std::collections::HashMap;

use serde::Deserialize;

use crate::config::limits::{Source, range};
use crate::consensus::{CallResult, Params, StrategyKind, bft};
use crate::error::ConfigError;
use crate::provider::Usage;
use crate::provider::pricing::Price;

/// The part of a recorded report replay reads; everything else is ignored.
#[derive(Debug, Deserialize)]
pub(super) struct Recorded {
    pub(super) status: String,
    pub(super) strategy: String,
    pub(super) seed: u64,
    pub(super) prompt: String,
    pub(super) params: RecordedParams,
    pub(super) participants: Vec<RecordedSeat>,
    pub(super) rounds: Vec<RecordedRound>,
    #[serde(default)]
    pub(super) error: Option<String>,
    #[serde(default)]
    pub(super) winner: Option<String>,
    #[serde(default)]
    pub(super) answer: Option<String>,
    #[serde(default)]
    pub(super) synthesis: Option<String>,
    #[serde(default)]
    pub(super) synthesis_source: Option<String>,
    #[serde(default)]
    pub(super) synthesizer: Option<String>,
    #[serde(default)]
    pub(super) synthesis_error: Option<String>,
    #[serde(default)]
    pub(super) warnings: Vec<String>,
    #[serde(default)]
    pub(super) usage: Option<RecordedUsage>,
    #[serde(default)]
    pub(super) elapsed_ms: f64,
    #[serde(default)]
    pub(super) expect: Option<RecordedCheck>,
    /// The weights file the run applied, with each seat's configured weight.
    #[serde(default)]
    pub(super) weights: Option<crate::weights::WeightsReport>,
}

/// The run's totals: with `--synthesize`, the synthesis call is counted in them.
#[derive(Debug, Deserialize)]
pub(super) struct RecordedUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) total_tokens: Option<u64>,
    pub(super) calls: usize,
    pub(super) cost_usd: Option<f64>,
}

/// The recorded run's `--expect…` check, checked again on the replayed decision.
#[derive(Debug, Deserialize)]
pub(super) struct RecordedCheck {
    pub(super) kind: String,
    pub(super) value: serde_json::Value,
    pub(super) require: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordedParams {
    pub(super) rounds: usize,
    pub(super) k: usize,
    pub(super) alpha: f64,
    pub(super) beta_1: f64,
    pub(super) beta_2: f64,
    pub(super) quorum: usize,
    pub(super) answer: String,
    pub(super) similarity: String,
    pub(super) tolerance: f64,
    pub(super) quorum_share: String,
    pub(super) rule: String,
    #[serde(default)]
    pub(super) faults: Option<usize>,
    #[serde(default)]
    pub(super) confidence: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordedSeat {
    pub(super) name: String,
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) kind: String,
    pub(super) weight: f64,
    #[serde(default)]
    pub(super) retries: u32,
    #[serde(default)]
    pub(super) price: Option<Price>,
    #[serde(default)]
    pub(super) calls: usize,
    #[serde(default)]
    pub(super) usage: Usage,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordedRound {
    pub(super) round: usize,
    pub(super) participants: Vec<RecordedEntry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordedEntry {
    pub(super) participant: String,
    pub(super) called: bool,
    #[serde(default)]
    pub(super) answer: Option<String>,
    #[serde(default)]
    pub(super) key: Option<String>,
    #[serde(default)]
    pub(super) latency_ms: Option<f64>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
    #[serde(default)]
    pub(super) error: Option<String>,
    #[serde(default)]
    pub(super) cut: bool,
    /// The round closed without this call (its outcome was already certain).
    #[serde(default)]
    pub(super) not_awaited: bool,
}

/// A recorded call's result, by (round, seat).
pub(super) type Calls = HashMap<(usize, usize), CallResult>;
/// The prompt (system, user) each call was asked, by (round, seat).
pub(super) type Prompts = HashMap<(usize, usize), (Option<String>, String)>;

/// A recorded run, checked and indexed.
pub(super) struct Run {
    pub(super) recorded: Recorded,
    pub(super) params: Params,
    pub(super) kind: StrategyKind,
    pub(super) calls: Calls,
    /// The round numbers the trace holds.
    pub(super) rounds: Vec<usize>,
    /// The calls the round closed without (round, participant).
    pub(super) not_awaited: Vec<(usize, String)>,
}

pub(super) fn invalid(why: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(format!("the recorded run cannot be replayed: {why}"))
}

/// Reads and checks a recorded report: every field replay needs is there and in range.
pub(super) fn load(report: &serde_json::Value) -> Result<Run, ConfigError> {
    let recorded = Recorded::deserialize(report).map_err(|e| {
        invalid(format!(
            "it is not an `ask --json` report ({e}); write one with `ask --transcript FILE`"
        ))
    })?;
    let kind: StrategyKind = recorded.strategy.parse().map_err(invalid)?;
    let n = recorded.participants.len();
    if n == 0 {
        return Err(invalid("it has no participants"));
    }
    let mut index = HashMap::new();
    for (seat, p) in recorded.participants.iter().enumerate() {
        // A run with a weights file may weigh a seat 0: its answers are no evidence.
        let limit = match recorded.weights {
            Some(_) => range::APPLIED_WEIGHT,
            None => range::WEIGHT,
        };
        limit.check(&key(&format!("weight of {}", p.name)), p.weight)?;
        if index.insert(p.name.as_str(), seat).is_some() {
            return Err(invalid(format!("participant {} is listed twice", p.name)));
        }
    }
    let params = recorded_params(&recorded, kind, n)?;
    let mut calls = Calls::new();
    let mut rounds = Vec::new();
    let mut not_awaited = Vec::new();
    for round in &recorded.rounds {
        if rounds.contains(&round.round) {
            return Err(invalid(format!("round {} is listed twice", round.round)));
        }
        rounds.push(round.round);
        for entry in round.participants.iter().filter(|e| e.called) {
            if entry.not_awaited {
                not_awaited.push((round.round, entry.participant.clone()));
            }
            let seat = *index.get(entry.participant.as_str()).ok_or_else(|| {
                invalid(format!(
                    "round {} names {}, who is not a participant",
                    round.round, entry.participant
                ))
            })?;
            if calls
                .insert((round.round, seat), result(seat, entry, kind))
                .is_some()
            {
                return Err(invalid(format!(
                    "round {} lists {} twice",
                    round.round, entry.participant
                )));
            }
        }
    }
    mark_fatal(&mut calls, &rounds);
    Ok(Run {
        recorded,
        params,
        kind,
        calls,
        rounds,
        not_awaited,
    })
}

pub(super) fn key(name: &str) -> Source {
    Source::Key(format!("the transcript's {name}"))
}

/// The run's own parameters, as its report states them.
pub(super) fn recorded_params(
    r: &Recorded,
    kind: StrategyKind,
    n: usize,
) -> Result<Params, ConfigError> {
    let p = &r.params;
    let mut params = Params::defaults(n);
    params.strategy = kind;
    params.seed = r.seed;
    params.rounds = range::ROUNDS.check_count(&key("rounds"), p.rounds)?;
    params.k = k_range(kind).check_count(&key("k"), p.k)?;
    params.alpha = range::SHARE.check(&key("alpha"), p.alpha)?;
    params.beta_1 = range::BETA_1.check(&key("beta_1"), p.beta_1)?;
    params.beta_2 = range::SHARE.check(&key("beta_2"), p.beta_2)?;
    params.tolerance = range::SHARE.check(&key("tolerance"), p.tolerance)?;
    params.quorum = check_quorum(&key("quorum"), p.quorum, n)?;
    params.answer = p.answer.parse().map_err(invalid)?;
    params.similarity = p.similarity.parse().map_err(invalid)?;
    params.quorum_share = p.quorum_share.parse().map_err(invalid)?;
    params.rule = p.rule.parse().map_err(invalid)?;
    params.faults = p.faults;
    params.confidence = p.confidence;
    if kind == StrategyKind::Bft {
        bft::check_faults(n, p.faults.unwrap_or_else(|| bft::default_faults(n)))
            .map_err(invalid)?;
    }
    Ok(params)
}

pub(super) fn k_range(kind: StrategyKind) -> crate::config::limits::Limit {
    if kind == StrategyKind::Hanzo {
        range::HANZO_K
    } else {
        range::K
    }
}

pub(super) fn check_quorum(source: &Source, quorum: usize, n: usize) -> Result<usize, ConfigError> {
    if quorum == 0 || quorum > n {
        return Err(ConfigError::new(format!(
            "{source} {quorum} is impossible with {n} seat(s): use 1..={n}"
        )));
    }
    Ok(quorum)
}

/// The engine's view of a recorded call. A call that answered is recorded with its text
/// (hanzo: and its text as its key), whatever the engine then made of it; an error beside
/// it is the engine's own note (an unreadable ballot, an empty answer), which it writes
/// again. A failed call is recorded with its error (hanzo: and what it produced).
pub(super) fn result(seat: usize, e: &RecordedEntry, kind: StrategyKind) -> CallResult {
    let latency = e.latency_ms.filter(|ms| ms.is_finite()).unwrap_or(0.0);
    let answered = match kind {
        StrategyKind::Hanzo => e.key.is_some(),
        _ => e.answer.is_some(),
    };
    let text = e.answer.clone().unwrap_or_default();
    let mut r = match (&e.error, answered) {
        // As the live run gave it to the engine: a failed call, not needed.
        _ if e.not_awaited => CallResult::failed(seat, "not needed", latency),
        (Some(error), false) => CallResult {
            text,
            ..CallResult::failed(seat, error.as_str(), latency)
        },
        (None, false) => CallResult::failed(seat, "no answer recorded", latency),
        (_, true) => CallResult::ok(seat, text, latency),
    };
    r.usage = e.usage.clone().unwrap_or_default();
    r.cut = e.cut;
    r
}

/// Whether a failure was fatal is not recorded; the engine stops calling a seat whose
/// failure was, so a seat that failed and was never called in a later recorded round is
/// taken as stopped there. Replaying with the run's own parameters checks the guess: it
/// must ask exactly the recorded calls.
pub(super) fn mark_fatal(calls: &mut Calls, rounds: &[usize]) {
    let called_after = |calls: &Calls, seat: usize, round: usize| {
        calls.keys().any(|&(r, s)| s == seat && r > round)
    };
    let failed: Vec<(usize, usize)> = calls
        .iter()
        .filter(|(_, r)| !r.ok)
        .map(|(&k, _)| k)
        .collect();
    for (round, seat) in failed {
        let later_rounds = rounds.iter().any(|&r| r > round);
        if later_rounds
            && !called_after(calls, seat, round)
            && let Some(r) = calls.get_mut(&(round, seat))
        {
            r.fatal = true;
        }
    }
}
