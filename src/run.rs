//! Drives a strategy with real provider calls: every call of a round runs concurrently;
//! Ctrl-C stops new calls and returns what is known.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{SeatSpec, Settings};
use crate::consensus::{self, CallResult, CallSpec};
use crate::progress::Progress;
use crate::provider::http::{Retry, human_duration};
use crate::provider::pricing::ASSUMED_MAX_OUTPUT;
use crate::provider::{ChatRequest, Transport};
use crate::report::{Report, Status};

/// How the run talks to the person watching.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Log every call on stderr.
    pub verbose: bool,
    /// Show progress bars on stderr.
    pub progress: bool,
}

/// Runs the panel on `prompt` and returns the report. `interrupt` resolves when the
/// user asks to stop (first Ctrl-C).
pub async fn execute(
    settings: &Settings,
    prompt: &str,
    options: RunOptions,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let transport = Arc::new(Transport::new(settings.policy.clone())?);
    let seats: Vec<_> = settings.seats.iter().map(|s| s.engine_seat()).collect();
    let names: Vec<String> = settings.seats.iter().map(|s| s.name.clone()).collect();
    let mut strategy = consensus::build(&settings.params, seats, prompt);
    let progress = Arc::new(Progress::new(&names, options.progress));
    let mut calls_made = vec![0usize; settings.seats.len()];
    let mut retries = vec![0u32; settings.seats.len()];
    let mut interrupted = false;
    tokio::pin!(interrupt);
    // One limit per provider with `max_concurrency`, shared by all of its seats.
    let mut limits: HashMap<&str, Arc<Semaphore>> = HashMap::new();
    for seat in &settings.seats {
        if let Some(n) = seat.max_concurrency {
            limits
                .entry(seat.provider_name.as_str())
                .or_insert_with(|| Arc::new(Semaphore::new(n)));
        }
    }
    let policy = &settings.policy;
    // Spent so far, for --max-cost: actual costs, or the bound when a count is unknown.
    let mut spent = 0.0;
    let mut over_budget: Option<String> = None;

    loop {
        if transport.expired() {
            break;
        }
        let Some(calls) = strategy.next_round() else {
            break;
        };
        let round_started = Instant::now();
        let called: Vec<usize> = calls.iter().map(|c| c.seat).collect();
        let round = calls.first().map_or(0, |c| c.round);
        let bounds: Vec<f64> = calls
            .iter()
            .map(|c| worst_case(&settings.seats[c.seat], c))
            .collect();
        if let Some(limit) = settings.max_cost {
            let worst: f64 = bounds.iter().sum();
            if spent + worst > limit {
                over_budget = Some(format!(
                    "stopped before round {round}: its worst case (${worst:.4}) would bring the cost to ${:.4}, over --max-cost ${limit}",
                    spent + worst
                ));
                break;
            }
        }
        // The round may close early once this many have answered.
        let needed = settings.params.quorum.min(called.len());
        let round_close = policy.round_timeout.map(|t| round_started + t);
        let mut set = JoinSet::new();
        for call in calls {
            let seat = &settings.seats[call.seat];
            let index = calls_made[call.seat];
            calls_made[call.seat] += 1;
            let provider = seat.provider.clone();
            let request = ChatRequest {
                model: seat.model.clone(),
                system: call.system.clone(),
                user: call.user.clone(),
                temperature: seat.temperature,
                max_tokens: seat.max_tokens,
            };
            let transport = Arc::clone(&transport);
            let progress = Arc::clone(&progress);
            let name = seat.name.clone();
            let verbose = options.verbose;
            let limit = limits.get(seat.provider_name.as_str()).cloned();
            let key_env = seat.key_env.clone();
            set.spawn(async move {
                // Waiting for a free slot is not the model's latency.
                let _permit = match limit {
                    Some(limit) => limit.acquire_owned().await.ok(),
                    None => None,
                };
                progress.started(call.seat, call.round);
                let t0 = Instant::now();
                let on_retry = |r: &Retry<'_>| {
                    progress.retrying(call.seat, call.round, r.attempt, r.delay, r.reason);
                    if verbose {
                        log_retry(
                            &progress,
                            &format!("round {}", call.round),
                            &name,
                            &request.model,
                            r,
                        );
                    }
                };
                let mut outcome = provider
                    .complete(&transport, &request, index, on_retry)
                    .await;
                if let Err(e) = &mut outcome.result {
                    e.hint_key(key_env.as_deref(), provider.key().is_some());
                }
                let outcome_attempts = outcome.attempts;
                let measured = t0.elapsed().as_secs_f64() * 1000.0;
                let result = to_result(&call, outcome, measured);
                progress.finished(
                    call.seat,
                    call.round,
                    result.latency_ms,
                    result.error.as_deref(),
                );
                if verbose {
                    log_call(&progress, &name, &request.model, &call, &result);
                }
                (result, outcome_attempts)
            });
        }
        let mut results: Vec<CallResult> = Vec::new();
        let mut cut: Option<String> = None;
        loop {
            let quorum_in = results.iter().filter(|r| r.ok).count() >= needed;
            let close = async {
                match round_close {
                    Some(at) if quorum_in => tokio::time::sleep_until(at.into()).await,
                    _ => std::future::pending().await,
                }
            };
            let run_end = async {
                match transport.deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = set.join_next() => match next {
                    Some(Ok((result, attempts))) => {
                        retries[result.seat] += attempts.saturating_sub(1);
                        results.push(result);
                    }
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(Err(_)) => {}
                    None => break,
                },
                () = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    set.abort_all();
                }
                () = close, if cut.is_none() => {
                    cut = Some(format!(
                        "absent: no answer within the round timeout of {} (the round closed once the quorum had answered)",
                        human_duration(policy.round_timeout.unwrap_or_default())
                    ));
                    set.abort_all();
                }
                () = run_end, if cut.is_none() => {
                    cut = Some(format!(
                        "absent: no answer before the run deadline of {}",
                        human_duration(policy.run_deadline.unwrap_or_default())
                    ));
                    set.abort_all();
                }
            }
        }
        if let Some(why) = &cut {
            let waited = round_started.elapsed().as_secs_f64() * 1000.0;
            for &seat in &called {
                if !results.iter().any(|r| r.seat == seat) {
                    results.push(CallResult::failed(seat, why.clone(), waited));
                }
            }
        }
        for r in results.iter().filter(|r| r.ok) {
            let bound = called
                .iter()
                .position(|&s| s == r.seat)
                .map_or(0.0, |i| bounds[i]);
            let price = settings.seats[r.seat].price;
            spent += price.and_then(|p| p.cost(&r.usage)).unwrap_or(bound);
        }
        // A sampling round the run deadline cut before anyone answered adds nothing: the
        // decision stands on the rounds before it.
        let dropped = round > 0 && transport.expired() && !results.iter().any(|r| r.ok);
        if !dropped {
            strategy.absorb(results);
        }
        if interrupted {
            break;
        }
    }
    progress.clear();
    let decision = strategy.finish();
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let mut report = Report::build(settings, prompt, &decision, elapsed, interrupted);
    for (participant, &n) in report.participants.iter_mut().zip(&retries) {
        participant.retries = n;
    }
    report.usage.retries = retries.iter().sum();
    if let Some(reason) = over_budget {
        report.status = Status::Failed;
        report.finalized = false;
        report.error = Some(reason);
    }
    if let Some(synth) = &settings.synthesizer
        && !interrupted
        && report.synthesis.is_some()
        && report.status != Status::Failed
    {
        synthesize(
            settings,
            synth,
            &transport,
            prompt,
            &mut report,
            options.verbose,
        )
        .await;
        report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    }
    Ok(report)
}

/// `--synthesize`: a separate call writes the synthesis from the final answers and the
/// agreement found. On failure the winner's answer stays, and the report says why.
async fn synthesize(
    settings: &Settings,
    synth: &crate::config::SeatSpec,
    transport: &Transport,
    prompt: &str,
    report: &mut Report,
    verbose: bool,
) {
    report.synthesizer = Some(synth.name.clone());
    if settings
        .seats
        .iter()
        .any(|s| s.provider_name == synth.provider_name && s.model == synth.model)
    {
        let warning = format!(
            "the synthesizer {} also sits on the panel: its own answer may be favoured",
            synth.name
        );
        eprintln!("warning: {warning}");
        report.warnings.push(warning);
    }
    let answers: Vec<(Option<&str>, &str)> = report
        .participants
        .iter()
        .filter(|p| p.live)
        .filter_map(|p| p.answers.last().map(|a| (p.key.as_deref(), &**a)))
        .collect();
    let winner_support = report
        .winner
        .as_ref()
        .and_then(|w| report.participants.iter().find(|p| &p.name == w))
        .and_then(|p| p.support);
    let agreement = format!(
        "{} — the panel's answer is {} with support {}, {} of {} participants answered",
        if report.finalized {
            "final"
        } else {
            "not final"
        },
        report.answer.as_deref().unwrap_or("undecided"),
        winner_support.map_or("unknown".to_string(), |s| format!("{:.0}%", s * 100.0)),
        report.live,
        report.participants.len()
    );
    let request = ChatRequest {
        model: synth.model.clone(),
        system: None,
        user: consensus::prompt::synthesis(prompt, &answers, &agreement).into(),
        temperature: synth.temperature,
        max_tokens: synth.max_tokens,
    };
    let t0 = Instant::now();
    // The progress lines are gone by now: retries are logged straight to stderr.
    let quiet = Progress::disabled();
    let on_retry = |r: &Retry<'_>| {
        if verbose {
            log_retry(&quiet, "synthesis", &synth.name, &synth.model, r);
        }
    };
    let outcome = synth
        .provider
        .complete(transport, &request, 0, on_retry)
        .await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    match outcome.result {
        Ok(c) if !c.text.trim().is_empty() => {
            if verbose {
                eprintln!("[synthesis] {}: ok in {ms:.0} ms", synth.name);
            }
            let mut total = crate::provider::Usage {
                input_tokens: report.usage.input_tokens,
                output_tokens: report.usage.output_tokens,
                ..Default::default()
            };
            total.add(&c.usage);
            report.usage.input_tokens = total.input_tokens;
            report.usage.output_tokens = total.output_tokens;
            report.usage.total_tokens = total.total();
            report.usage.calls += 1;
            report.synthesis = Some(c.text);
            report.synthesis_source = "synthesizer";
        }
        Ok(_) => {
            report.synthesis_error = Some("empty answer".to_string());
            eprintln!(
                "warning: the synthesizer {} gave an empty answer; the winner's answer is used verbatim",
                synth.name
            );
        }
        Err(e) => {
            eprintln!(
                "warning: the synthesizer {} failed ({}); the winner's answer is used verbatim",
                synth.name, e.message
            );
            report.synthesis_error = Some(e.message);
        }
    }
}

/// The most a call can cost: every byte of its prompt a token, and the seat's output
/// limit (or [`ASSUMED_MAX_OUTPUT`] when it sets none) all used. 0 when unpriced.
fn worst_case(seat: &SeatSpec, call: &CallSpec) -> f64 {
    let input = call.system.as_deref().map_or(0, str::len) + call.user.len();
    let output = seat.max_tokens.map_or(ASSUMED_MAX_OUTPUT, u64::from);
    seat.price.map_or(0.0, |p| p.bound(input as u64, output))
}

fn to_result(call: &CallSpec, outcome: crate::provider::Outcome, measured_ms: f64) -> CallResult {
    let latency_ms = outcome.reported_ms.unwrap_or(measured_ms);
    match outcome.result {
        Ok(c) => CallResult {
            seat: call.seat,
            ok: true,
            text: c.text,
            error: None,
            fatal: false,
            latency_ms,
            usage: c.usage,
        },
        Err(e) => {
            let mut message = e.message.clone();
            if outcome.attempts > 1 {
                message.push_str(&format!(" (after {} attempts)", outcome.attempts));
            }
            CallResult {
                seat: call.seat,
                ok: false,
                text: e.output.clone(),
                error: Some(message),
                fatal: e.kind.fatal(),
                latency_ms,
                usage: Default::default(),
            }
        }
    }
}

fn log_call(progress: &Progress, name: &str, model: &str, call: &CallSpec, result: &CallResult) {
    let tokens = match (result.usage.input_tokens, result.usage.output_tokens) {
        (None, None) => "tokens unknown".to_string(),
        (i, o) => format!(
            "{}/{} tokens",
            i.map_or("?".into(), |v| v.to_string()),
            o.map_or("?".into(), |v| v.to_string())
        ),
    };
    let line = match &result.error {
        None => format!(
            "[round {}] {name} ({model}): ok in {:.0} ms, {tokens}, {} chars",
            call.round,
            result.latency_ms,
            result.text.chars().count()
        ),
        Some(e) => format!(
            "[round {}] {name} ({model}): failed in {:.0} ms: {e}",
            call.round, result.latency_ms
        ),
    };
    progress.log(&line);
}

/// `stage` says which call it is: `round N` or `synthesis`.
fn log_retry(progress: &Progress, stage: &str, name: &str, model: &str, retry: &Retry<'_>) {
    let wait = if retry.asked {
        "as the provider asked"
    } else {
        "backoff"
    };
    progress.log(&format!(
        "[{stage}] {name} ({model}): attempt {} failed, retrying in {} ({wait}): {}",
        retry.attempt,
        human_duration(retry.delay),
        retry.reason
    ));
}
