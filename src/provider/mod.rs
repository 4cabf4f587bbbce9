//! Provider wire protocols.
//!
//! The set of protocols is small and closed, so it is an enum, not trait objects. An
//! OpenAI-compatible vendor is data (base URL, key variable, dialect), not a new type.

pub mod http;
pub mod mock;
pub mod openai;
pub mod vendors;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
pub use http::Transport;

/// Token counts of one call or a sum of calls; unknown counts stay None, never 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
}

impl Usage {
    /// Adds `other` into `self`; a count known on either side stays known.
    pub fn add(&mut self, other: &Usage) {
        fn sum(a: &mut Option<u64>, b: Option<u64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0) + b);
            }
        }
        sum(&mut self.input_tokens, other.input_tokens);
        sum(&mut self.output_tokens, other.output_tokens);
        sum(&mut self.reasoning_tokens, other.reasoning_tokens);
        sum(&mut self.cached_input_tokens, other.cached_input_tokens);
    }

    pub fn total(&self) -> Option<u64> {
        match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }
}

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
    pub system: Option<String>,
    pub user: String,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
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

    /// Replaces every occurrence of the value in `text` (a provider or proxy may echo the
    /// key back in an error body) with a placeholder.
    pub fn scrub(&self, text: &mut String) {
        if !self.0.is_empty() && text.contains(&self.0) {
            *text = text.replace(&self.0, "<redacted>");
        }
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
    OpenAi(openai::Endpoint),
    Mock(mock::Script),
}

impl Provider {
    pub fn kind(&self) -> &'static str {
        match self {
            Provider::OpenAi(_) => "openai",
            Provider::Mock(_) => "mock",
        }
    }

    /// The base URL called, when there is one.
    pub fn base_url(&self) -> Option<&str> {
        match self {
            Provider::OpenAi(e) => Some(&e.base_url),
            Provider::Mock(_) => None,
        }
    }

    /// The key this provider sends, when it has one.
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Provider::OpenAi(e) => e.key.as_ref(),
            Provider::Mock(_) => None,
        }
    }

    /// One call, with the transport's retries. `call_index` counts this seat's calls from 0.
    /// Whatever comes back has the key scrubbed from it.
    pub async fn complete(
        &self,
        transport: &Transport,
        request: &ChatRequest,
        call_index: usize,
    ) -> Outcome {
        let mut outcome = self.call(transport, request, call_index).await;
        if let Some(key) = self.secret() {
            match &mut outcome.result {
                Ok(c) => key.scrub(&mut c.text),
                Err(e) => {
                    key.scrub(&mut e.message);
                    key.scrub(&mut e.output);
                }
            }
        }
        outcome
    }

    async fn call(
        &self,
        transport: &Transport,
        request: &ChatRequest,
        call_index: usize,
    ) -> Outcome {
        match self {
            Provider::OpenAi(endpoint) => {
                transport
                    .with_retries(|deadline| endpoint.complete(transport, request, deadline))
                    .await
            }
            Provider::Mock(script) => script.complete(call_index).await,
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
}
