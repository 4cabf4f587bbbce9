//! The result of a run as data, and its renderings. Renderers are pure functions of a
//! [`Report`].

pub mod json;
pub mod rules;
mod terminal;
pub mod text;

use serde::Serialize;

use crate::config::SeatSpec;
use crate::config::Settings;
use crate::consensus::{Decision, Details, Params, RoundTrace, SeatOutcome, Text};
use crate::expect::{Check, Expectation};
use crate::provider::Usage;
use crate::provider::pricing::Price;

/// Bumped whenever a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// How the run ended; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Finished and finalized.
    Final,
    /// Finished, not finalized.
    NoConsensus,
    /// Fewer live participants than the quorum.
    Degraded,
    /// Nobody answered.
    Failed,
    /// Stopped by Ctrl-C.
    Interrupted,
}

impl Status {
    /// The exit code contract of the README (docs/protocol.md §5).
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Final => 0,
            Status::NoConsensus => 1,
            Status::Degraded | Status::Failed => 3,
            Status::Interrupted => 130,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Final => "FINAL",
            Status::NoConsensus => "NOT FINAL",
            Status::Degraded => "DEGRADED",
            Status::Failed => "FAILED",
            Status::Interrupted => "INTERRUPTED",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ParamsReport {
    pub rounds: usize,
    pub k: usize,
    pub alpha: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub quorum: usize,
    pub answer: String,
    pub similarity: String,
    pub tolerance: f64,
    /// vote: the share the top group needs.
    pub quorum_share: String,
    /// rank: how ballots are aggregated.
    pub rule: String,
    /// bft: the faulty participants tolerated.
    pub faults: Option<usize>,
    /// metastable, vote: answers weighed by stated confidence.
    pub confidence: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ParticipantReport {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub kind: String,
    pub weight: f64,
    /// How the seat stands in the decision (confidence, support, luminance, score, live,
    /// key): the engine's own record, serialized in place.
    #[serde(flatten)]
    pub outcome: SeatOutcome,
    pub calls: usize,
    /// Its successful answers, in call order.
    pub answers: Vec<Text>,
    /// Its failed calls, as `round N: message`.
    pub errors: Vec<String>,
    /// Mean latency of its calls, in milliseconds.
    pub latency_ms: Option<f64>,
    pub usage: Usage,
    /// Attempts repeated after retryable failures (429, 5xx, timeouts), over all its calls.
    pub retries: u32,
    /// USD per million tokens; null when unknown.
    pub price: Option<Price>,
    /// What its calls cost in USD; null when unpriced or a token count is unknown.
    pub cost_usd: Option<f64>,
}

/// The engine's record of a seat reads as the participant's own fields.
impl std::ops::Deref for ParticipantReport {
    type Target = SeatOutcome;
    fn deref(&self) -> &SeatOutcome {
        &self.outcome
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct UsageReport {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub calls: usize,
    /// Attempts repeated after retryable failures, over all calls.
    pub retries: u32,
    /// What the run cost in USD; null when any participant's cost is unknown.
    pub cost_usd: Option<f64>,
}

/// Everything a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub status: Status,
    pub finalized: bool,
    /// The winning participant's name.
    pub winner: Option<String>,
    /// The winner's key: the compared part of its answer.
    pub answer: Option<String>,
    /// The `--expect…` check of `answer`; absent without an expectation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Check>,
    pub synthesis: Option<String>,
    /// Where the synthesis comes from: `winner_verbatim`, or `synthesizer` (--synthesize).
    pub synthesis_source: &'static str,
    /// The --synthesize model, when one was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesizer: Option<String>,
    /// Why the --synthesize call failed (the winner's answer was used verbatim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesis_error: Option<String>,
    /// Things the user should know that did not stop the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub strategy: &'static str,
    pub seed: u64,
    pub rounds_executed: usize,
    pub live: usize,
    pub quorum: usize,
    pub params: ParamsReport,
    pub prompt: String,
    pub participants: Vec<ParticipantReport>,
    pub rounds: Vec<RoundTrace>,
    pub usage: UsageReport,
    pub elapsed_ms: f64,
    /// Why the run failed or degraded, in one line.
    pub error: Option<String>,
    /// `--weights`: the file, and each seat's configured and learned weight; absent
    /// without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<crate::weights::WeightsReport>,
    /// Strategy-specific results (answer groups, ties...).
    #[serde(flatten)]
    pub details: Details,
}

impl Report {
    /// Assembles the report of a run from its settings and decision.
    pub fn build(
        settings: &Settings,
        prompt: &str,
        decision: &Decision,
        elapsed_ms: f64,
        interrupted: bool,
    ) -> Report {
        let participants: Vec<ParticipantReport> = settings
            .seats
            .iter()
            .enumerate()
            .map(|(i, seat)| participant(seat, decision.seats.get(i), &decision.rounds))
            .collect();
        let (status, error) = status(decision, &participants, interrupted);
        let p = &settings.params;
        Report {
            schema_version: SCHEMA_VERSION,
            status,
            finalized: decision.finalized && matches!(status, Status::Final),
            winner: decision.winner.map(|w| settings.seats[w].name.clone()),
            answer: decision.answer.clone(),
            expect: None,
            synthesis: decision.synthesis.clone(),
            synthesis_source: "winner_verbatim",
            synthesizer: None,
            synthesis_error: None,
            warnings: weightless(settings, &participants).into_iter().collect(),
            strategy: p.strategy.name(),
            seed: p.seed,
            rounds_executed: decision.rounds_executed,
            live: decision.live,
            quorum: decision.quorum,
            params: params(settings),
            prompt: prompt.to_string(),
            usage: usage(&participants),
            participants,
            rounds: decision.rounds.clone(),
            elapsed_ms,
            error,
            weights: settings.weights.as_ref().map(|w| w.report(p.beta_2)),
            details: decision.details.clone(),
        }
    }
}

impl Report {
    /// Checks the winner's key against the expectation with the run's similarity and
    /// tolerance, and whether the run passes under `--require`; records the check.
    pub fn check(&mut self, expectation: &Expectation, params: &Params) {
        let mut check =
            expectation.check(self.answer.as_deref(), params.similarity, params.tolerance);
        let finished = matches!(self.status, Status::Final | Status::NoConsensus);
        check.passed = finished
            && check.require.passes(
                check.matched,
                self.status == Status::Final,
                self.winner_support(),
            );
        self.expect = Some(check);
    }

    /// The winner's support: its weighted share of the live participants, when the
    /// strategy measures one.
    pub fn winner_support(&self) -> Option<f64> {
        let winner = self.winner.as_deref()?;
        self.participants
            .iter()
            .find(|p| p.name == winner)
            .and_then(|p| p.support)
    }

    /// The exit code (docs/protocol.md §5): the status's, except that with an expectation
    /// a finished run exits 0 when it passes, 4 when the winner's answer did not match,
    /// and 1 (its status is then `no_consensus`) when it matched but the outcome
    /// `--require` asks for was not reached, or when there was no winning answer to check.
    /// Failed, degraded and interrupted runs keep 3 and 130.
    pub fn exit_code(&self) -> i32 {
        match &self.expect {
            Some(check) if matches!(self.status, Status::Final | Status::NoConsensus) => {
                if check.passed {
                    0
                } else if !check.matched && self.answer.is_some() {
                    4
                } else {
                    1
                }
            }
            _ => self.status.exit_code(),
        }
    }
}

/// `--weights` with a strategy that counts one per seat, or when every participant that
/// answered weighs 0 (no answer counted, nothing could be final): said, since the table
/// alone does not show why.
fn weightless(settings: &Settings, participants: &[ParticipantReport]) -> Option<String> {
    settings.weights.as_ref()?;
    weights_warning(settings.params.strategy, participants)
}

/// The warning of a run with a weights file, if any (also shown under the text report).
pub(crate) fn weights_warning(
    strategy: crate::consensus::StrategyKind,
    participants: &[ParticipantReport],
) -> Option<String> {
    if !weighs_seats(strategy) {
        return Some(format!(
            "--weights: {} counts one per seat, so the weights do not enter its decision (metastable, vote and bft use them)",
            strategy.name()
        ));
    }
    all_live_weigh_zero(participants).then(|| {
        "every participant that answered weighs 0 in the weights file: no answer counted as evidence".to_string()
    })
}

/// Whether the strategy's decision depends on seat weights (docs/strategies.md).
fn weighs_seats(strategy: crate::consensus::StrategyKind) -> bool {
    use crate::consensus::StrategyKind::*;
    matches!(strategy, Metastable | Vote | Bft)
}

/// Some participant answered, and every one that did weighs 0.
fn all_live_weigh_zero(participants: &[ParticipantReport]) -> bool {
    let mut live = participants.iter().filter(|p| p.live).peekable();
    live.peek().is_some() && live.all(|p| p.weight == 0.0)
}

/// A seat's part of the report: the engine's outcome, and its calls added up from the
/// trace.
fn participant(
    seat: &SeatSpec,
    outcome: Option<&SeatOutcome>,
    rounds: &[RoundTrace],
) -> ParticipantReport {
    let mut usage = Usage::default();
    let (mut calls, mut answers, mut errors, mut latency) = (0, Vec::new(), Vec::new(), Vec::new());
    // An answer without token counts makes the cost unknown.
    let mut counted = true;
    for round in rounds {
        let Some(entry) = round
            .participants
            .iter()
            .find(|e| e.participant == seat.name)
            .filter(|e| e.called)
        else {
            continue;
        };
        calls += 1;
        if let Some(u) = &entry.usage {
            usage.add(u);
        }
        // Cancelled as not needed: neither an answer nor a failure, and no latency.
        if entry.not_awaited {
            continue;
        }
        if let Some(ms) = entry.latency_ms {
            latency.push(ms);
        }
        match &entry.error {
            Some(e) => errors.push(format!("round {}: {e}", round.round)),
            None => {
                answers.extend(entry.answer.clone());
                counted &= entry
                    .usage
                    .as_ref()
                    .is_some_and(|u| u.input_tokens.is_some() && u.output_tokens.is_some());
            }
        }
    }
    ParticipantReport {
        name: seat.name.clone(),
        provider: seat.provider_name.clone(),
        model: seat.model.clone(),
        kind: seat.provider.kind().to_string(),
        weight: seat.weight,
        // A seat the engine has no outcome for never answered.
        outcome: outcome.cloned().unwrap_or(SeatOutcome {
            confidence: 0.0,
            support: None,
            luminance: 0.0,
            score: 0.0,
            live: false,
            stale: false,
            key: None,
        }),
        calls,
        answers,
        errors,
        latency_ms: (!latency.is_empty())
            .then(|| latency.iter().sum::<f64>() / latency.len() as f64),
        cost_usd: seat.price.filter(|_| counted).map(|p| {
            p.bound(
                usage.input_tokens.unwrap_or(0),
                usage.output_tokens.unwrap_or(0),
            )
        }),
        usage,
        retries: 0,
        price: seat.price,
    }
}

/// How the run ended, and why in one line when it did not end well.
fn status(
    decision: &Decision,
    participants: &[ParticipantReport],
    interrupted: bool,
) -> (Status, Option<String>) {
    if interrupted {
        (
            Status::Interrupted,
            Some("interrupted before the run finished".to_string()),
        )
    } else if let Some(failure) = &decision.details.failure {
        (Status::Failed, Some(failure.clone()))
    } else if decision.live == 0 {
        let causes: Vec<String> = participants
            .iter()
            .map(|p| {
                format!(
                    "{}: {}",
                    p.name,
                    p.errors.last().map_or("no answer", |e| e.as_str())
                )
            })
            .collect();
        (
            Status::Failed,
            Some(format!("no participant answered ({})", causes.join("; "))),
        )
    } else if decision.live < decision.quorum {
        (
            Status::Degraded,
            Some(format!(
                "only {} of {} participants answered; the quorum is {}",
                decision.live,
                participants.len(),
                decision.quorum
            )),
        )
    } else if decision.finalized {
        (Status::Final, None)
    } else {
        (Status::NoConsensus, None)
    }
}

/// The seats as `--events`' `run_started` and the run log list them: index, name,
/// provider, model, kind and weight.
pub fn seats(settings: &Settings) -> serde_json::Value {
    settings
        .seats
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "seat": i,
                "name": s.name,
                "provider": s.provider_name,
                "model": s.model,
                "kind": s.provider.kind().to_string(),
                "weight": s.weight,
            })
        })
        .collect()
}

/// The parameters as reported (also in `--events`' `run_started`).
pub fn params(settings: &Settings) -> ParamsReport {
    let p = &settings.params;
    ParamsReport {
        rounds: p.rounds,
        k: p.k,
        alpha: p.alpha,
        beta_1: p.beta_1,
        beta_2: p.beta_2,
        quorum: p.quorum,
        answer: p.answer.to_string(),
        similarity: p.similarity.to_string(),
        tolerance: p.tolerance,
        quorum_share: p.quorum_share.to_string(),
        rule: p.rule.to_string(),
        faults: (p.strategy == crate::consensus::StrategyKind::Bft).then(|| {
            p.faults
                .unwrap_or_else(|| crate::consensus::bft::default_faults(settings.seats.len()))
        }),
        confidence: p.confidence,
    }
}

/// The run's totals over its participants.
fn usage(participants: &[ParticipantReport]) -> UsageReport {
    let mut total = Usage::default();
    for p in participants {
        total.add(&p.usage);
    }
    UsageReport {
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        total_tokens: total.total(),
        calls: participants.iter().map(|p| p.calls).sum(),
        retries: 0,
        cost_usd: participants.iter().map(|p| p.cost_usd).sum::<Option<f64>>(),
    }
}
