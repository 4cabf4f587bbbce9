//! Drives a strategy with real provider calls: every call of a round runs concurrently;
//! Ctrl-C stops new calls and returns what is known.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::config::Settings;
use crate::consensus::{self, CallResult, CallSpec};
use crate::progress::Progress;
use crate::provider::{ChatRequest, Transport};
use crate::report::Report;

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
    let mut interrupted = false;
    tokio::pin!(interrupt);

    while let Some(calls) = strategy.next_round() {
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
            set.spawn(async move {
                progress.started(call.seat, call.round);
                let t0 = Instant::now();
                let outcome = provider.complete(&transport, &request, index).await;
                let measured = t0.elapsed().as_secs_f64() * 1000.0;
                let result = to_result(&call, outcome, measured);
                progress.finished(
                    call.seat,
                    call.round,
                    result.latency_ms,
                    result.error.as_deref(),
                );
                if verbose {
                    log_call(&name, &request.model, &call, &result);
                }
                result
            });
        }
        let mut results = Vec::new();
        loop {
            tokio::select! {
                next = set.join_next() => match next {
                    Some(Ok(result)) => results.push(result),
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(Err(_)) => {}
                    None => break,
                },
                () = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    set.abort_all();
                }
            }
        }
        strategy.absorb(results);
        if interrupted {
            break;
        }
    }
    progress.clear();
    let decision = strategy.decide();
    let mut report = Report::build(settings, prompt, &decision, 0.0, interrupted);
    if let Some(synth) = &settings.synthesizer
        && !interrupted
        && report.synthesis.is_some()
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
    }
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
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
        .filter_map(|p| p.answers.last().map(|a| (p.key.as_deref(), a.as_str())))
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
        user: consensus::prompt::synthesis(prompt, &answers, &agreement),
        temperature: synth.temperature,
        max_tokens: synth.max_tokens,
    };
    let t0 = Instant::now();
    let outcome = synth.provider.complete(transport, &request, 0).await;
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

fn log_call(name: &str, model: &str, call: &CallSpec, result: &CallResult) {
    let tokens = match (result.usage.input_tokens, result.usage.output_tokens) {
        (None, None) => "tokens unknown".to_string(),
        (i, o) => format!(
            "{}/{} tokens",
            i.map_or("?".into(), |v| v.to_string()),
            o.map_or("?".into(), |v| v.to_string())
        ),
    };
    match &result.error {
        None => eprintln!(
            "[round {}] {name} ({model}): ok in {:.0} ms, {tokens}, {} chars",
            call.round,
            result.latency_ms,
            result.text.chars().count()
        ),
        Some(e) => eprintln!(
            "[round {}] {name} ({model}): failed in {:.0} ms: {e}",
            call.round, result.latency_ms
        ),
    }
}
