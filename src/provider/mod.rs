//! Provider wire protocols.
//!
//! The set of protocols is small and closed, so it is an enum, not trait objects. An
//! OpenAI-compatible vendor is data (base URL, key variable, dialect), not a new type.

pub mod anthropic;
pub mod body;
pub mod command;
pub mod endpoint;
pub mod framing;
pub mod gemini;
pub mod http;
pub mod mcp;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod pricing;
pub mod retry;
pub mod scrub;
pub mod vendors;

#[cfg(test)]
mod no_panic;

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, ProviderError};
pub use crate::usage::Usage;
pub use endpoint::{Endpoint, Protocol};
pub use http::Transport;
pub use scrub::Scrubber;

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    Length,
    ContentFilter,
    Other(String),
}

impl Finish {
    pub fn from_openai(reason: &str) -> Finish {
        match reason {
            "stop" => Finish::Stop,
            "length" => Finish::Length,
            "content_filter" => Finish::ContentFilter,
            other => Finish::Other(other.to_string()),
        }
    }
}

/// Turns the collected parts of an answer into a completion or a failed call: an empty
/// answer is a failure that says why (a refusal, the filter, the token limit).
pub(crate) fn answer(
    text: String,
    refusal: Option<String>,
    finish: Option<Finish>,
    usage: Usage,
) -> Result<Completion, ProviderError> {
    if text.trim().is_empty() {
        if let Some(refusal) = refusal.filter(|r| !r.trim().is_empty()) {
            return Err(ProviderError::new(
                ErrorKind::Refused,
                format!("the model refused: {refusal}"),
            ));
        }
        let why = match &finish {
            Some(Finish::Length) => " (stopped at the token limit: raise max_tokens)".to_string(),
            Some(Finish::ContentFilter) => " (stopped by the content filter)".to_string(),
            Some(Finish::Other(reason)) => format!(" (stop reason {reason})"),
            _ => String::new(),
        };
        let kind = match finish {
            Some(Finish::ContentFilter) => ErrorKind::Refused,
            // The same limit would cut the next attempt too (thinking models spend it all).
            Some(Finish::Length) => ErrorKind::Rejected,
            _ => ErrorKind::Malformed,
        };
        return Err(ProviderError::new(kind, format!("empty answer{why}")));
    }
    body::check_answer_size(&text)?;
    Ok(Completion {
        text,
        finish,
        usage,
    })
}

/// The error of a stream that ended without saying why the model stopped: a failed
/// (retryable) call, never an answer. `end` is the end marker it did send, and what was
/// missing before it.
pub(crate) fn cut_off(end: Option<&str>) -> ProviderError {
    let why = match end {
        Some(end) => format!("the stream ended with {end}: the answer may be cut off"),
        None => "the stream ended before the answer was complete".to_string(),
    };
    ProviderError::new(ErrorKind::Malformed, why)
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Completion {
    pub text: String,
    pub finish: Option<Finish>,
    pub usage: Usage,
}

/// What one seat asks its provider.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub system: Option<crate::text::Text>,
    /// Shared: a round often asks every seat the same.
    pub user: crate::text::Prompt,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// The sampling seed, for providers that accept one (Anthropic has none): see
    /// [`provider_seed`].
    pub seed: Option<u64>,
}

/// The seed sent to seat `seat`'s provider in a run seeded with `run_seed`: one per seat,
/// so that copies of one model (`@N`) still answer independently, and below 2^31, so
/// that it fits every API's integer (Gemini's is 32 bits).
pub fn provider_seed(run_seed: u64, seat: usize) -> u64 {
    run_seed.wrapping_add(seat as u64) % (1 << 31)
}

impl ChatRequest {
    /// The messages in the chat format OpenAI and Ollama share, the system prompt first.
    pub(crate) fn chat_messages(&self) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": self.user}));
        Value::Array(messages)
    }

    /// The sampling parameters the seat sets, under the protocol's name for the output
    /// limit. Unset ones are left out, so that the provider's own defaults apply.
    pub(crate) fn sampling(&self, max_tokens_field: &str) -> Map<String, Value> {
        let mut params = Map::new();
        if let Some(t) = self.temperature {
            params.insert("temperature".into(), json!(t));
        }
        if let Some(max) = self.max_tokens {
            params.insert(max_tokens_field.into(), json!(max));
        }
        if let Some(seed) = self.seed {
            params.insert("seed".into(), json!(seed));
        }
        params
    }
}

/// An API key. Its value is never formatted: Debug and Display print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that puts it in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `<redacted>`. Keys too short to
    /// be told apart from ordinary text are left alone.
    pub fn redact(&self, text: &str) -> String {
        Scrubber::new([self.expose()]).scrub(text).into_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A wire protocol with everything needed to reach it.
#[derive(Clone, Debug)]
pub enum Provider {
    /// OpenAI (and compatibles, and Azure), Anthropic, Gemini or Ollama.
    Http(Endpoint),
    Command(command::Program),
    /// A tool of an MCP server (`kind = "mcp"`).
    Mcp(mcp::Tool),
    Mock(mock::Script),
}

impl Provider {
    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Http(e) => e.kind(),
            Provider::Command(_) => "command",
            Provider::Mcp(_) => "mcp",
            Provider::Mock(_) => "mock",
        }
    }

    /// The provider for another seat: the same, except that an MCP seat gets a session
    /// of its own.
    pub fn for_seat(&self) -> Provider {
        match self {
            Provider::Mcp(tool) => Provider::Mcp(tool.for_seat()),
            other => other.clone(),
        }
    }

    /// The base URL called, when there is one.
    pub fn base_url(&self) -> Option<&str> {
        match self {
            Provider::Http(e) => Some(&e.base_url),
            Provider::Mcp(tool) => tool.url(),
            Provider::Command(_) | Provider::Mock(_) => None,
        }
    }

    /// One call, with the transport's retries. `call_index` counts this seat's calls from 0.
    /// `on_retry` hears of each retry as it is about to happen.
    pub async fn complete(
        &self,
        transport: &Transport,
        request: &ChatRequest,
        call_index: usize,
        on_retry: impl FnMut(&http::Retry<'_>),
    ) -> Outcome {
        match self {
            Provider::Http(e) => {
                let attempt = || e.attempt(transport, request);
                self.retried(&e.name, transport, attempt, on_retry).await
            }
            Provider::Command(program) => program.complete(transport, request).await,
            Provider::Mcp(tool) => tool.complete(transport, request).await,
            Provider::Mock(script) => script.complete(transport, call_index).await,
        }
    }

    /// Runs `attempt` with the transport's retries. Errors start with the provider's name
    /// and never hold the key: neither the final one nor the reasons given to `on_retry`.
    async fn retried<F, Fut>(
        &self,
        name: &str,
        transport: &Transport,
        attempt: F,
        mut on_retry: impl FnMut(&http::Retry<'_>),
    ) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Completion, ProviderError>>,
    {
        // A provider may quote the key it was sent (in an error page, a 401 message...).
        let scrub = |message: &str| {
            let message = format!("{name}: {message}");
            match self.key() {
                Some(key) => key.redact(&message),
                None => message,
            }
        };
        let note = |r: &http::Retry<'_>| {
            let reason = scrub(r.reason);
            on_retry(&http::Retry {
                reason: &reason,
                ..*r
            });
        };
        let mut outcome = transport.clock.with_retries(attempt, note).await;
        if let Err(e) = &mut outcome.result {
            e.message = scrub(&e.message);
            if let Some(key) = self.key() {
                e.output = key.redact(&e.output);
            }
        }
        outcome
    }

    /// The key sent with every call, when there is one.
    pub fn key(&self) -> Option<&Secret> {
        match self {
            Provider::Http(e) => e.key.as_ref(),
            Provider::Mcp(tool) => tool.key.as_ref(),
            Provider::Command(_) | Provider::Mock(_) => None,
        }
    }
}

/// The result of a call, with what the transport did to get it.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Completion, ProviderError>,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// A latency the provider reports instead of the measured one (scripted panels).
    pub reported_ms: Option<f64>,
    /// Tokens reported by attempts that failed (retried, or the last one): paid for
    /// though no answer came of them, so they count toward the cost and `--max-cost`.
    pub failed_usage: Usage,
}

#[cfg(test)]
mod seed_tests {
    use super::provider_seed;

    #[test]
    fn each_seat_has_its_own_seed_and_every_seed_fits_32_bits() {
        assert_eq!(provider_seed(41, 0), 41);
        assert_eq!(provider_seed(41, 2), 43);
        assert_eq!(provider_seed((1 << 31) - 1, 1), 0);
        assert_eq!(provider_seed(u64::MAX, 1), 0, "wraps, never panics");
        assert!(provider_seed(u64::MAX - 5, 3) < 1 << 31);
    }
}
