//! `replay`: re-decides a recorded run (an `ask --json` object, as `--transcript` writes
//! it) from its recorded answers, without a network.
//!
//! The engine is a deterministic state machine, so replay feeds it, for every call it asks
//! for, the result recorded for that (round, seat). The trace does not hold the prompts;
//! they are rebuilt by first replaying the run with its own parameters, which asks exactly
//! the recorded calls (checked). A re-decision with other parameters may then only ask
//! calls that were made, with the same prompt: anything else would need new calls, and
//! is refused with the round and participant that would need one.

use crate::cli::ConsensusArgs;
use crate::config::limits::{Source, range};
use crate::config::{SeatSpec, Settings};
use crate::consensus::{self, Decision, Params, Seat, StrategyKind, Text, bft};
use crate::error::ConfigError;
use crate::expect::{Expectation, Require};
use crate::provider::Provider;
use crate::provider::mock::Script;
use crate::provider::retry::Policy;
use crate::report::{Report, Status};
use crate::weights::{InUse, file};

use super::recorded::*;

/// How a replay went: the decision, the prompts asked, and whether the engine wanted a
/// round the trace does not have (the run was stopped: Ctrl-C, deadline, budget).
struct Replayed {
    decision: Decision,
    prompts: Prompts,
    stopped_at: Option<usize>,
    /// The last round it asked calls of.
    last_round: Option<usize>,
}

/// Why a replay needs a call the recorded run did not make.
enum Missing {
    /// The call was never made.
    Call { round: usize, seat: usize },
    /// It was made with another prompt.
    Prompt { round: usize, seat: usize },
    /// The recorded run has no such round.
    Round { round: usize },
}

/// Drives the strategy of `params` on the recorded calls. With `asked`, each call must
/// have been asked with the same prompt; `stopped_at` is the round at which the recorded
/// run was stopped from outside, where this replay stops too.
fn drive(
    run: &Run,
    params: &Params,
    asked: Option<&Prompts>,
    stopped_at: Option<usize>,
) -> Result<Replayed, Missing> {
    let seats: Vec<Seat> = run
        .recorded
        .participants
        .iter()
        .map(|p| Seat {
            name: Text::from(p.name.as_str()),
            weight: p.weight,
            system: None,
        })
        .collect();
    let mut strategy = consensus::build(params, seats, &run.recorded.prompt);
    let mut prompts = Prompts::new();
    let mut stopped = None;
    let mut last_round = None;
    while let Some(calls) = strategy.next_round() {
        let round = calls.first().map_or(0, |c| c.round);
        if !run.rounds.contains(&round) {
            if asked.is_none() || stopped_at == Some(round) {
                stopped = Some(round);
                break;
            }
            return Err(Missing::Round { round });
        }
        let mut results = Vec::with_capacity(calls.len());
        for call in &calls {
            let at = (call.round, call.seat);
            let Some(recorded) = run.calls.get(&at) else {
                return Err(Missing::Call {
                    round: call.round,
                    seat: call.seat,
                });
            };
            let prompt = (
                call.system.as_ref().map(|s| s.to_string()),
                call.user.to_string(),
            );
            if let Some(asked) = asked
                && asked.get(&at) != Some(&prompt)
            {
                return Err(Missing::Prompt {
                    round: call.round,
                    seat: call.seat,
                });
            }
            prompts.insert(at, prompt);
            results.push(recorded.clone());
        }
        strategy.absorb(results);
        last_round = Some(round);
    }
    Ok(Replayed {
        decision: strategy.finish(),
        prompts,
        stopped_at: stopped,
        last_round,
    })
}

/// Re-decides the recorded run `report` (an `ask --json` object) with `overrides`
/// applied, without a call. An override that would need a call the run did not make, a
/// report that is not one, or one that does not replay, is an error (exit 2).
pub fn from_report(
    report: &serde_json::Value,
    overrides: &ConsensusArgs,
) -> Result<Report, ConfigError> {
    checked(report, overrides, None)
}

/// [`from_report`], checking the replayed answer against `expectation` (an `--expect…`
/// flag of `replay`) instead of the recorded run's own check.
pub fn checked(
    report: &serde_json::Value,
    overrides: &ConsensusArgs,
    expectation: Option<&Expectation>,
) -> Result<Report, ConfigError> {
    weighted(report, overrides, None, expectation)
}

/// [`checked`], with `--weights` (and `--category`) re-weighing the recorded seats.
pub fn weighted(
    report: &serde_json::Value,
    overrides: &ConsensusArgs,
    category: Option<&str>,
    expectation: Option<&Expectation>,
) -> Result<Report, ConfigError> {
    let mut run = load(report)?;
    let seat_names: Vec<String> = run
        .recorded
        .participants
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let names = |seat: usize| seat_names[seat].as_str();

    // The run's own parameters ask exactly the recorded calls; their prompts are the
    // recorded run's.
    let own = drive(&run, &run.params, None, None).map_err(|m| match m {
        Missing::Call { round, seat } => invalid(format!(
            "round {round} asks {}, whose call the trace does not record (was it written by another version?)",
            names(seat)
        )),
        _ => invalid("its trace does not match its parameters"),
    })?;
    let made: usize = own.prompts.len();
    if made != run.calls.len() {
        return Err(invalid(format!(
            "its trace records {} call(s), and its parameters ask {made} (was it written by another version?)",
            run.calls.len()
        )));
    }

    let (mut params, mut changed) = apply(&run, overrides)?;
    let weights = reweigh(&mut run, overrides, category, &mut params, &mut changed)?;
    let replayed = if changed.is_empty() {
        own
    } else {
        drive(&run, &params, Some(&own.prompts), own.stopped_at).map_err(|m| {
            let with = changed.join(" ");
            let (round, what) = match m {
                Missing::Call { round, seat } => (
                    round,
                    format!("would call {}, who was not called then", names(seat)),
                ),
                Missing::Prompt { round, seat } => (
                    round,
                    format!(
                        "would send {} a prompt the recorded run never sent it",
                        names(seat)
                    ),
                ),
                Missing::Round { round } => (round, "would be a round the recorded run never ran".to_string()),
            };
            let last = run.rounds.iter().max().copied().unwrap_or(0);
            // Fewer rounds help where rounds are refinements of the same answers.
            let refines = matches!(
                params.strategy,
                StrategyKind::Metastable | StrategyKind::Hanzo | StrategyKind::Vote
            );
            let hint = if round > 0 && refines {
                format!("; the recorded rounds are 0..={last}: try --rounds {}", round - 1)
            } else {
                String::new()
            };
            ConfigError::new(format!(
                "replay with {with} would need calls the recorded run never made: round {round} {what}{hint}"
            ))
        })?
    };
    let mut report = report_of(&run, &params, &replayed, weights);
    let recorded = recorded_expectation(&run.recorded)?;
    if let Some(expectation) = expectation.or(recorded.as_ref()) {
        report.check(expectation, &params);
    }
    Ok(report)
}

/// The recorded `--expect…` check as an expectation, so that the exit code follows the
/// same contract (an `--expect…` flag given to `replay` replaces it).
fn recorded_expectation(recorded: &Recorded) -> Result<Option<Expectation>, ConfigError> {
    let Some(check) = &recorded.expect else {
        return Ok(None);
    };
    let value = match &check.value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(invalid(format!("its expect.value {other} is not a value"))),
    };
    let require = <Require as clap::ValueEnum>::from_str(&check.require, false)
        .map_err(|_| invalid(format!("its expect.require `{}` is unknown", check.require)))?;
    let pick = |kind: &str| (check.kind == kind).then_some(value.as_str());
    if !["text", "number", "choice", "regex"].contains(&check.kind.as_str()) {
        return Err(invalid(format!(
            "its expect.kind `{}` is unknown",
            check.kind
        )));
    }
    Expectation::from_flags(
        pick("text"),
        pick("number"),
        pick("choice"),
        pick("regex"),
        require,
    )
    .map_err(|e| invalid(format!("its expectation: {e}")))
}

/// The run's parameters with the overrides, each checked as `ask` checks its flag; and
/// the flags that changed something.
fn apply(run: &Run, o: &ConsensusArgs) -> Result<(Params, Vec<String>), ConfigError> {
    let n = run.recorded.participants.len();
    if let Some(synth) = &o.synthesize {
        return Err(ConfigError::new(format!(
            "replay cannot use --synthesize {synth}: the synthesis would be a new call"
        )));
    }
    let mut p = run.params.clone();
    let mut changed = Vec::new();
    let flag = Source::Flag;
    if let Some(kind) = o.strategy
        && kind != run.kind
    {
        p.strategy = kind;
        // Another strategy starts from its own default rounds (a vote has none).
        p.rounds = match kind {
            StrategyKind::Vote => 0,
            _ => Params::defaults(n).rounds,
        };
        changed.push(format!("--strategy {}", kind.name()));
    }
    if let Some(rounds) = o.rounds {
        p.rounds = range::ROUNDS.check_count(&flag("--rounds"), rounds)?;
        changed.push(format!("--rounds {rounds}"));
    }
    if let Some(k) = o.k {
        p.k = k_range(p.strategy).check_count(&flag("-k"), k)?;
        changed.push(format!("-k {k}"));
    }
    for (slot, limit, name, value) in [
        (&mut p.alpha, range::SHARE, "--alpha", o.alpha),
        (&mut p.beta_1, range::BETA_1, "--beta1", o.beta_1),
        (&mut p.beta_2, range::SHARE, "--beta2", o.beta_2),
        (&mut p.tolerance, range::SHARE, "--tolerance", o.tolerance),
    ] {
        if let Some(v) = value {
            *slot = limit.check(&flag(name), v)?;
            changed.push(format!("{name} {v}"));
        }
    }
    if let Some(seed) = o.seed {
        p.seed = seed;
        changed.push(format!("--seed {seed}"));
    }
    if let Some(q) = o.quorum {
        p.quorum = check_quorum(&flag("--quorum"), q, n)?;
        changed.push(format!("--quorum {q}"));
    }
    if let Some(v) = &o.answer {
        p.answer = parse_flag("--answer", v)?;
        changed.push(format!("--answer {v}"));
    }
    if let Some(v) = &o.similarity {
        p.similarity = parse_flag("--similarity", v)?;
        changed.push(format!("--similarity {v}"));
    }
    if let Some(v) = &o.quorum_share {
        p.quorum_share = parse_flag("--quorum-share", v)?;
        changed.push(format!("--quorum-share {v}"));
    }
    if let Some(v) = &o.rule {
        p.rule = parse_flag("--rule", v)?;
        changed.push(format!("--rule {v}"));
    }
    if o.confidence && !p.confidence {
        p.confidence = true;
        changed.push("--confidence".to_string());
    }
    if let Some(f) = o.faults {
        p.faults = Some(f);
        changed.push(format!("--faults {f}"));
    }
    if p.confidence && !matches!(p.strategy, StrategyKind::Metastable | StrategyKind::Vote) {
        return Err(ConfigError::new(format!(
            "--confidence works with --strategy metastable or vote, not {}",
            p.strategy.name()
        )));
    }
    if p.strategy == StrategyKind::Bft {
        bft::check_faults(n, p.faults.unwrap_or_else(|| bft::default_faults(n)))
            .map_err(ConfigError::new)?;
    }
    Ok((p, changed))
}

fn parse_flag<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| ConfigError::new(format!("{flag} {value}: {e}")))
}

/// The report of a replayed decision: the shape of `ask --json`, with the recorded
/// participants' providers, models, prices and retries, and how the run ended when that
/// was decided outside the engine (Ctrl-C, `--max-cost`).
fn report_of(run: &Run, params: &Params, replayed: &Replayed, weights: Option<InUse>) -> Report {
    let recorded = &run.recorded;
    let seats = recorded
        .participants
        .iter()
        .map(|p| SeatSpec {
            name: p.name.clone(),
            provider_name: p.provider.clone(),
            model: p.model.clone(),
            // Never called: replay makes no call.
            provider: Provider::Mock(Script {
                steps: Vec::new(),
                sleep: false,
            }),
            temperature: None,
            max_tokens: None,
            weight: p.weight,
            system: None,
            key_env: None,
            max_concurrency: None,
            price: p.price,
            missing_key: None,
        })
        .collect();
    let settings = Settings {
        params: params.clone(),
        seed_given: true,
        seats,
        policy: Policy::default(),
        config_path: None,
        max_cost: None,
        synthesizer: None,
        // A replay sends nothing: there is nothing to log or to answer from the log.
        log_path: None,
        cache: false,
        wait_all: false,
        weights,
    };
    // Ctrl-C stopped the recorded run in its last round: a replay that gets there is
    // stopped there too; one that decides earlier finished before it.
    let interrupted = recorded.status == "interrupted"
        && (replayed.stopped_at.is_some()
            || replayed.last_round == run.rounds.iter().max().copied());
    // The calls the recorded round closed without stay "not needed" in the trace.
    let mut decision = replayed.decision.clone();
    decision.mark_not_awaited(run.not_awaited.iter().map(|(r, n)| (*r, n.as_str())));
    let mut report = Report::build(
        &settings,
        &recorded.prompt,
        &decision,
        recorded.elapsed_ms,
        interrupted,
    );
    // Weights the recorded run applied stand (replay keeps its seats' weights).
    if report.weights.is_none()
        && let Some(mut w) = recorded.weights.clone()
    {
        if w.beta_2 != params.beta_2 {
            w.beta_2 = params.beta_2;
            w.beta_2_from = "--beta2".to_string();
        }
        report.weights = Some(w);
    }
    for (out, p) in report.participants.iter_mut().zip(&recorded.participants) {
        out.kind = p.kind.clone();
        out.retries = p.retries;
    }
    report.usage.retries = recorded.participants.iter().map(|p| p.retries).sum();
    // `--max-cost` stopped the recorded run before a round: so it ends here too.
    if let (Some(_), Some(error)) = (replayed.stopped_at, &recorded.error)
        && recorded.status == "failed"
        && error.starts_with("stopped before round")
    {
        report.status = Status::Failed;
        report.finalized = false;
        report.error = Some(error.clone());
    }
    // The synthesis a model wrote stands when it was written on the same decision after
    // the same calls; with it stand its warnings and its share of the totals.
    if let Some(model) = &recorded.synthesizer {
        let same_calls = report
            .participants
            .iter()
            .zip(&recorded.participants)
            .all(|(now, then)| now.calls == then.calls && now.usage == then.usage);
        let same = same_calls
            && recorded.winner == report.winner
            && recorded.answer == report.answer
            && report.synthesis.is_some()
            && report.status != Status::Failed;
        if same {
            if recorded.synthesis_source.as_deref() == Some("synthesizer") {
                report.synthesis = recorded.synthesis.clone();
                report.synthesis_source = "synthesizer";
            }
            report.synthesizer = Some(model.clone());
            report.synthesis_error = recorded.synthesis_error.clone();
            report.warnings = recorded.warnings.clone();
            if let Some(u) = &recorded.usage {
                report.usage.input_tokens = u.input_tokens;
                report.usage.output_tokens = u.output_tokens;
                report.usage.total_tokens = u.total_tokens;
                report.usage.calls = u.calls;
                report.usage.cost_usd = u.cost_usd;
            }
        } else {
            report.warnings.push(format!(
                "the recorded synthesis by {model} was written on another decision and is not redone (that would be a new call); the winner's answer is shown verbatim"
            ));
        }
    }
    report
}

/// The recorded run of a transcript file, as `replay PATH` reads it.
pub fn read(path: &std::path::Path) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!(
            "cannot read the transcript {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        ConfigError::new(format!(
            "the transcript {} is not JSON ({e}): is it cut short? write one with `ask --transcript FILE`",
            path.display()
        ))
    })
}

/// Marks a replayed report's JSON with where its answers come from.
pub fn mark(report: &Report, from: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(report).expect("a report always serializes");
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("replayed_from".to_string(), from.into());
    }
    value
}

/// `--weights FILE`: the recorded seats weighed again, each its configured weight (as the
/// recorded run had it before any weights file) times the file's; the file's calibrated
/// beta_2 replaces the recorded one unless `--beta2` is given.
fn reweigh(
    run: &mut Run,
    o: &ConsensusArgs,
    category: Option<&str>,
    params: &mut Params,
    changed: &mut Vec<String>,
) -> Result<Option<InUse>, ConfigError> {
    let Some(path) = &o.weights else {
        return Ok(None);
    };
    let configured = run
        .recorded
        .participants
        .iter()
        .map(|p| {
            let before = run.recorded.weights.as_ref().and_then(|w| {
                w.seats
                    .iter()
                    .find(|s| s.name == p.name)
                    .map(|s| s.configured)
            });
            (p.name.clone(), before.unwrap_or(p.weight))
        })
        .collect();
    let mut in_use = InUse::new(path.clone(), file::load(path)?, configured, category)?;
    in_use.beta_2_from = match &in_use.file.calibration {
        Some(cal) if o.beta_2.is_none() => {
            params.beta_2 = cal.beta2;
            "the weights file's calibration".to_string()
        }
        _ if o.beta_2.is_some() => "--beta2".to_string(),
        _ => "the recorded run".to_string(),
    };
    for (p, weight) in run.recorded.participants.iter_mut().zip(in_use.applied()) {
        p.weight = weight;
    }
    changed.push(format!("--weights {}", path.display()));
    Ok(Some(in_use))
}
