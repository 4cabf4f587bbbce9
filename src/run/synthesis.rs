//! `--synthesize`: a separate call writes the synthesis from the final answers and the
//! agreement found. Whenever it does not (it fails, it could pass `--max-cost`, Ctrl-C
//! stops it) the winner's answer stays, and the report says why.

use std::time::Instant;

use serde_json::json;

use super::budget::{self, Budget};
use super::interrupt::Interrupt;
use super::{Run, emit, log, scrub};
use crate::config::SeatSpec;
use crate::consensus;
use crate::progress::Progress;
use crate::provider::http::Retry;
use crate::provider::{ChatRequest, Usage};
use crate::report::{Report, Status};

pub(super) async fn run(
    run: &Run<'_>,
    synth: &SeatSpec,
    report: &mut Report,
    budget: &Budget,
    stop: &mut Interrupt<'_>,
) {
    report.synthesizer = Some(synth.name.clone());
    if run
        .settings
        .seats
        .iter()
        .any(|s| s.provider_name == synth.provider_name && s.model == synth.model)
    {
        let warning = format!(
            "the synthesizer {} also sits on the panel: its own answer may be favoured",
            synth.name
        );
        run.warn(&warning);
        report.warnings.push(warning);
    }
    let request = request(run.prompt, synth, report);
    let worst = budget::worst_case(synth, None, &request.user);
    let unaffordable = if budget.limited() && synth.price.is_none() {
        Some("it has no price, and --max-cost needs one".to_string())
    } else {
        budget.refuse(worst)
    };
    if let Some(why) = unaffordable {
        let why = format!("not asked: {why}");
        let warning = format!("the synthesizer {} was {why}", synth.name);
        return fall_back(run, report, &warning, why);
    }

    let verbose = run.options.verbose;
    let events = &run.events;
    events.emit(
        "synthesis_started",
        json!({ "name": synth.name, "model": synth.model }),
    );
    let t0 = Instant::now();
    // The progress lines are gone by now: retries are logged straight to stderr.
    let quiet = Progress::disabled();
    let on_retry = |r: &Retry<'_>| {
        scrub::retry(&run.scrubber, r, |r| {
            if verbose {
                log::retry(&quiet, "synthesis", &synth.name, &synth.model, r);
            }
            events.emit(
                "synthesis_retry",
                json!({
                    "name": synth.name,
                    "attempt": r.attempt,
                    "delay_ms": r.delay.as_millis() as u64,
                    "asked": r.asked,
                    "reason": r.reason,
                }),
            );
        });
    };
    let call = synth
        .provider
        .complete(&run.transport, &request, 0, on_retry);
    let mut outcome = tokio::select! {
        outcome = call => outcome,
        () = stop.wait() => {
            report.status = Status::Interrupted;
            report.finalized = false;
            report.error = Some("interrupted during the synthesis".to_string());
            let warning = format!("the synthesizer {} was interrupted", synth.name);
            return fall_back(run, report, &warning, "interrupted by Ctrl-C".to_string());
        }
    };
    scrub::outcome(&run.scrubber, &mut outcome);
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let sent = emit::sent(&request, &run.scrubber);
    emit::synthesis_logged(events, synth, report.rounds_executed, sent, &outcome, ms);
    let error = match &outcome.result {
        Ok(c) if c.text.trim().is_empty() => Some("empty answer"),
        Ok(_) => None,
        Err(e) => Some(e.message.as_str()),
    };
    events.emit(
        "synthesis_finished",
        json!({
            "name": synth.name,
            "ok": error.is_none(),
            "latency_ms": ms,
            "usage": outcome.result.as_ref().map_or(&outcome.failed_usage, |c| &c.usage),
            "error": error,
            "retries": outcome.attempts.saturating_sub(1),
        }),
    );
    // Tokens of failed attempts were paid for, whatever the outcome.
    let failed = outcome.failed_usage;
    match outcome.result {
        Ok(c) if !c.text.trim().is_empty() => {
            if verbose {
                crate::stderr_line!("[synthesis] {}: ok in {ms:.0} ms", synth.name);
            }
            count(report, synth, &budget::with_failed(c.usage, &failed), true);
            report.synthesis = Some(c.text);
            report.synthesis_source = "synthesizer";
        }
        Ok(c) => {
            count(report, synth, &budget::with_failed(c.usage, &failed), false);
            report.synthesis_error = Some("empty answer".to_string());
            run.warn(&format!(
                "the synthesizer {} gave an empty answer; the winner's answer is used verbatim",
                synth.name
            ));
        }
        Err(e) => {
            if failed != Usage::default() {
                count(report, synth, &failed, false);
            }
            let warning = format!("the synthesizer {} failed ({})", synth.name, e.message);
            fall_back(run, report, &warning, e.message);
        }
    }
}

/// The synthesizer's prompt: the live participants' final answers and the agreement.
fn request(prompt: &str, synth: &SeatSpec, report: &Report) -> ChatRequest {
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
    ChatRequest {
        model: synth.model.clone(),
        system: None,
        user: consensus::prompt::synthesis(prompt, &answers, &agreement).into(),
        temperature: synth.temperature,
        max_tokens: synth.max_tokens,
        // The synthesizer counts as one seat after the panel's.
        seed: Some(crate::provider::provider_seed(
            report.seed,
            report.participants.len(),
        )),
    }
}

/// Adds the synthesis call's tokens and cost to the run's (and, when it `answered`, the
/// call). The cost becomes unknown when the synthesizer is unpriced or an answer came
/// without token counts; a failed call costs what its attempts reported.
fn count(report: &mut Report, synth: &SeatSpec, usage: &Usage, answered: bool) {
    let mut total = Usage {
        input_tokens: report.usage.input_tokens,
        output_tokens: report.usage.output_tokens,
        ..Default::default()
    };
    total.add(usage);
    report.usage.input_tokens = total.input_tokens;
    report.usage.output_tokens = total.output_tokens;
    report.usage.total_tokens = total.total();
    if answered {
        report.usage.calls += 1;
    }
    let cost = if answered {
        synth.price.and_then(|p| p.cost(usage))
    } else {
        synth
            .price
            .map(|_| budget::reported_cost(synth.price, usage))
    };
    report.usage.cost_usd = report.usage.cost_usd.zip(cost).map(|(a, b)| a + b);
}

/// The winner's answer stays: stderr says what happened, the report why.
fn fall_back(run: &Run<'_>, report: &mut Report, what: &str, why: String) {
    run.warn(&format!("{what}; the winner's answer is used verbatim"));
    report.synthesis_error = Some(why);
}
