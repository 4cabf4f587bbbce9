//! `-v`: one stderr line per call and per retry.

use crate::consensus::{CallResult, CallSpec};
use crate::progress::Progress;
use crate::provider::http::{Retry, human_duration};
use crate::report::text::tokens;

pub(super) fn call(
    progress: &Progress,
    name: &str,
    model: &str,
    call: &CallSpec,
    result: &CallResult,
) {
    let line = match &result.error {
        None => format!(
            "[round {}] {name} ({model}): ok in {:.0} ms, {}, {} chars",
            call.round,
            result.latency_ms,
            tokens(&result.usage),
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
pub(super) fn retry(progress: &Progress, stage: &str, name: &str, model: &str, retry: &Retry<'_>) {
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
