//! `--events` of the rounds: the call and round events, built from the run's scrubbed
//! results (see [`crate::events`] for the line format).

use serde_json::json;

use crate::config::Settings;
use crate::consensus::{CallResult, CallSpec, Decision, Params, confidence};
use crate::events::Events;
use crate::provider::http::Retry;
use crate::similarity::Comparator;

pub(super) fn call_started(events: &Events, name: &str, call: &CallSpec, index: usize) {
    events.emit(
        "call_started",
        json!({
            "round": call.round,
            "seat": call.seat,
            "name": name,
            "call": index,
            "attempt": 1,
        }),
    );
}

/// An attempt failed and the call tries again after `delay_ms`.
pub(super) fn call_retry(events: &Events, name: &str, call: &CallSpec, retry: &Retry<'_>) {
    events.emit(
        "call_retry",
        json!({
            "round": call.round,
            "seat": call.seat,
            "name": name,
            "attempt": retry.attempt,
            "delay_ms": retry.delay.as_millis() as u64,
            "asked": retry.asked,
            "reason": retry.reason,
        }),
    );
}

/// A request as the log keeps it and the cache matches it: every field that can change
/// the answer (keys are not among them, and the texts are scrubbed anyway).
pub(super) fn sent(
    request: &crate::provider::ChatRequest,
    scrubber: &super::Scrubber,
) -> serde_json::Value {
    json!({
        "model": request.model,
        "system": request.system.as_ref().map(|t| scrubber.scrub(t).into_owned()),
        "user": scrubber.scrub(&request.user),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    })
}

/// The `--synthesize` call, for the run log (its events are the synthesis_* ones).
pub(super) fn synthesis_logged(
    events: &Events,
    synth: &crate::config::SeatSpec,
    round: usize,
    sent: serde_json::Value,
    outcome: &crate::provider::Outcome,
    latency_ms: f64,
) {
    let asked = Asked::new(synth, Some(sent));
    let (ok, text, error, usage) = match &outcome.result {
        Ok(c) => (true, c.text.as_str(), None, c.usage.clone()),
        Err(e) => (
            false,
            e.output.as_str(),
            Some(e.message.as_str()),
            outcome.failed_usage.clone(),
        ),
    };
    events.to_log(|log| {
        log.call(&crate::log::CallRecord {
            stage: "synthesis",
            round,
            seat: None,
            name: &synth.name,
            provider: &asked.provider,
            model: &asked.model,
            request: asked.request.clone(),
            request_hash: asked.hash.clone(),
            ok,
            response: text,
            error,
            usage: &usage,
            latency_ms,
            cost_usd: asked.price.and_then(|p| p.cost(&usage)),
            cached: false,
        });
    });
}

/// What the run log keeps of a call besides its result: who was asked, and what.
#[derive(Clone, Debug)]
pub(super) struct Asked {
    pub provider: String,
    pub model: String,
    pub price: Option<crate::provider::pricing::Price>,
    /// The request as sent (scrubbed), None for a call cut before it came back.
    pub request: Option<serde_json::Value>,
    /// Its cache key.
    pub hash: Option<String>,
    /// Answered from the log (`--cache`).
    pub cached: bool,
}

impl Asked {
    /// A seat's call; `request` is None when what was sent is not at hand.
    pub fn new(seat: &crate::config::SeatSpec, request: Option<serde_json::Value>) -> Asked {
        let hash = request
            .as_ref()
            .map(|r| crate::log::request_hash(&seat.provider_name, seat.provider.kind(), r));
        Asked {
            provider: seat.provider_name.clone(),
            model: seat.model.clone(),
            price: seat.price,
            request,
            hash,
            cached: false,
        }
    }
}

/// A call is back: its answer's key (as the strategy will compare it) or its error; the
/// run log (when on) gets the whole call.
pub(super) fn call_finished(
    events: &Events,
    params: &Params,
    name: &str,
    round: usize,
    result: &CallResult,
    attempts: u32,
    asked: &Asked,
) {
    events.to_log(|log| {
        log.call(&crate::log::CallRecord {
            stage: "round",
            round,
            seat: Some(result.seat),
            name,
            provider: &asked.provider,
            model: &asked.model,
            request: asked.request.clone(),
            request_hash: asked.hash.clone(),
            ok: result.ok,
            response: &result.text,
            error: result.error.as_deref(),
            usage: &result.usage,
            latency_ms: result.latency_ms,
            cost_usd: if asked.cached {
                Some(0.0)
            } else {
                asked.price.and_then(|p| p.cost(&result.usage))
            },
            cached: asked.cached,
        });
    });
    if !events.listened() {
        return;
    }
    let key = result.ok.then(|| key(params, &result.text)).flatten();
    events.emit(
        "call_finished",
        json!({
            "round": round,
            "seat": result.seat,
            "name": name,
            "ok": result.ok,
            "latency_ms": result.latency_ms,
            "usage": result.usage,
            "key": key,
            "error": result.error,
            "cut": result.cut,
            "retries": attempts.saturating_sub(1),
        }),
    );
}

/// The compared part of an answer, made as the strategies make it.
fn key(params: &Params, text: &str) -> Option<String> {
    let cmp = Comparator::new(params.similarity, params.tolerance);
    let key = if params.confidence {
        cmp.key(&confidence::strip(text), &params.answer)
    } else {
        cmp.key(text, &params.answer)
    };
    key.map(|k| k.text().to_string())
}

/// The decision as it stands after a round. `counted` is false for a round the run
/// deadline cut before anyone answered: it adds nothing to the decision.
pub(super) fn round_decided(
    events: &Events,
    settings: &Settings,
    round: usize,
    decision: &Decision,
    counted: bool,
) {
    let winner = decision.winner;
    let fields = json!({
        "round": round,
        "counted": counted,
        "winner": winner.and_then(|w| settings.seats.get(w)).map(|s| &s.name),
        "winner_seat": winner,
        "answer": decision.answer,
        "support": winner.and_then(|w| decision.seats.get(w)).and_then(|s| s.support),
        "finalized": decision.finalized,
        "live": decision.live,
        "quorum": decision.quorum,
    });
    events.to_log(|log| log.round_decided(round, &fields));
    events.emit("round_decided", fields);
}
