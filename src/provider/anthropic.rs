//! Anthropic Messages API (docs/providers.md, Kinds): `POST {base}/v1/messages` with `x-api-key`
//! and `anthropic-version`, a top-level `system`, a required `max_tokens`, and SSE with
//! named events when streaming.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body;
use super::framing::Framing;
use super::http::{self, Answer, KeyHeader};
use super::{ChatRequest, Completion, Finish, Usage, answer, cut_off};
use crate::error::{ErrorKind, ProviderError};

/// The API version every request names (the SDKs still send this one).
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by the API; this is sent when the seat sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// How the key travels.
pub const KEY_HEADER: KeyHeader = KeyHeader::Named("x-api-key");
/// Sent with every request.
pub const HEADERS: &[(&str, &str)] = &[("anthropic-version", API_VERSION)];

/// The messages URL of `base` (`https://api.anthropic.com`; a trailing `/v1` is accepted
/// too), given without a trailing slash.
pub fn url(base: &str) -> String {
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// The JSON body. The API takes temperatures in 0..=1, so higher ones are clamped.
pub fn body(request: &ChatRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(system) = &request.system {
        body.insert("system".into(), json!(system));
    }
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": request.user}]),
    );
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Total input counts the cached and cache-writing tokens too.
    fn input(&self) -> Option<u64> {
        match (
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ) {
            (None, None, None) => None,
            // Saturating: a hostile provider may report any count.
            (a, b, c) => Some(
                a.unwrap_or(0)
                    .saturating_add(b.unwrap_or(0))
                    .saturating_add(c.unwrap_or(0)),
            ),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireMessage {
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// The error object of `{"type":"error","error":{"type","message","details"?}}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
    details: Option<WireErrorDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireErrorDetails {
    error_code: Option<String>,
}

fn finish(reason: &str) -> Finish {
    match reason {
        "end_turn" | "stop_sequence" => Finish::Stop,
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "refusal" => Finish::ContentFilter,
        other => Finish::Other(other.to_string()),
    }
}

/// The class of an error type, for errors that arrive inside a 200 stream.
fn kind_for_type(kind: &str) -> Option<ErrorKind> {
    Some(match kind {
        "invalid_request_error" | "not_found_error" | "request_too_large" => ErrorKind::Rejected,
        "authentication_error" | "permission_error" => ErrorKind::Auth,
        "billing_error" => ErrorKind::Quota,
        "rate_limit_error" => ErrorKind::RateLimited,
        "api_error" | "overloaded_error" => ErrorKind::Unavailable,
        "timeout_error" => ErrorKind::Timeout,
        _ => return None,
    })
}

/// Classifies an error response; `status` 0 means an error inside a 200 response (an
/// `error` event of a stream, or an error object as the body).
pub fn classify(status: u16, body: &[u8]) -> ProviderError {
    let error: WireError = body::error_object(body);
    let mut kind = if status == 0 {
        kind_for_type(&error.kind).unwrap_or(ErrorKind::Unavailable)
    } else {
        http::kind_for_status(status)
    };
    // A spend-limit 429 will not clear by waiting.
    let code = error.details.and_then(|d| d.error_code).unwrap_or_default();
    if code == "enforced_spend_limit_reached" || error.kind == "billing_error" {
        kind = ErrorKind::Quota;
    }
    let detail = if error.message.is_empty() {
        body::snippet(body)
    } else {
        error.message
    };
    let label = [error.kind.as_str(), code.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let head = if status == 0 {
        "error in the response".to_string()
    } else {
        format!("HTTP {status}")
    };
    let text = match (label.is_empty(), detail.is_empty()) {
        (true, true) => head,
        (true, false) => format!("{head}: {detail}"),
        (false, true) => format!("{head} {label}"),
        (false, false) => format!("{head} {label}: {detail}"),
    };
    let err = ProviderError::new(kind, text);
    if status == 0 {
        err
    } else {
        err.with_status(status)
    }
}

/// Parses a non-streaming message.
pub fn parse_message(body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
    let value = body::json_object(body, content_type)?;
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err(classify(0, body));
    }
    let message: WireMessage = body::typed(value, "message")?;
    let usage = message
        .usage
        .map(|u| Usage {
            input_tokens: u.input(),
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cache_read_input_tokens,
            ..Usage::default()
        })
        .unwrap_or_default();
    let text: String = message
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    answer(
        text,
        None,
        message.stop_reason.as_deref().map(finish),
        usage,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<WireMessage>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    stop_reason: Option<String>,
}

/// Accumulates a streamed message.
#[derive(Default)]
pub struct StreamState {
    text: String,
    finish: Option<Finish>,
    input: Option<u64>,
    cached: Option<u64>,
    output: Option<u64>,
    stopped: bool,
}

impl StreamState {
    /// Applies one event; true once `message_stop` arrived.
    pub fn event(&mut self, event: Option<&str>, data: &str) -> Result<bool, ProviderError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(self.stopped);
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::new(
                ErrorKind::Malformed,
                format!("invalid JSON in the event stream: {e}"),
            )
        })?;
        if event == Some("error") || value.get("type").and_then(Value::as_str) == Some("error") {
            return Err(classify(0, data.as_bytes()));
        }
        let ev: WireEvent = body::typed(value, "stream event")?;
        match ev.kind.as_str() {
            "message_start" => {
                if let Some(u) = ev.message.and_then(|m| m.usage) {
                    self.input = u.input();
                    self.cached = u.cache_read_input_tokens;
                    self.output = u.output_tokens;
                }
            }
            "content_block_delta" => {
                if let Some(delta) = ev.delta
                    && delta.kind.as_deref() == Some("text_delta")
                    && let Some(text) = delta.text
                {
                    self.text.push_str(&text);
                    body::check_answer_size(&self.text)?;
                }
            }
            "message_delta" => {
                if let Some(reason) = ev.delta.and_then(|d| d.stop_reason) {
                    self.finish = Some(finish(&reason));
                }
                // Counts here are cumulative: they replace, never add.
                if let Some(u) = ev.usage {
                    if u.output_tokens.is_some() {
                        self.output = u.output_tokens;
                    }
                    if let Some(input) = u.input().filter(|&i| i > 0) {
                        self.input = Some(input);
                    }
                }
            }
            "message_stop" => self.stopped = true,
            _ => {}
        }
        Ok(self.stopped)
    }
}

impl Answer for StreamState {
    const FRAMING: Framing = Framing::Sse;

    fn frame(&mut self, event: Option<&str>, data: &str) -> Result<bool, ProviderError> {
        self.event(event, data)
    }

    fn body(&mut self, body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
        parse_message(body, content_type)
    }

    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input,
            output_tokens: self.output,
            cached_input_tokens: self.cached,
            ..Usage::default()
        }
    }

    /// The answer once the stream has ended: only a stream whose `message_delta` said why
    /// the model stopped (`stop_reason`) is an answer, even if `message_stop` came.
    fn finish(self) -> Result<Completion, ProviderError> {
        if self.finish.is_none() {
            let end = "message_stop but no stop_reason";
            return Err(cut_off(self.stopped.then_some(end)));
        }
        let usage = self.usage();
        answer(self.text, None, self.finish, usage)
    }

    fn classify(&self, status: u16, body: &[u8]) -> ProviderError {
        classify(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::endpoint::{Endpoint, Protocol};

    fn endpoint(base_url: &str) -> Endpoint {
        Endpoint::new("anthropic", base_url, Protocol::Anthropic)
    }

    #[test]
    fn body_has_top_level_system_and_required_max_tokens() {
        let req = ChatRequest {
            model: "claude-x".into(),
            system: Some("Be terse.".into()),
            user: "2+2?".into(),
            temperature: Some(1.5),
            max_tokens: None,
            seed: None,
        };
        let official = endpoint("https://api.anthropic.com");
        assert_eq!(
            official.body(&req),
            json!({"model": "claude-x", "max_tokens": 4096, "system": "Be terse.",
                   "messages": [{"role": "user", "content": "2+2?"}], "temperature": 1.0})
        );
        assert_eq!(official.url("m"), "https://api.anthropic.com/v1/messages");
        assert_eq!(endpoint("http://h/v1/").url("m"), "http://h/v1/messages");
    }

    #[test]
    fn spend_limit_is_quota_and_overload_is_retryable() {
        let spend = classify(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"spend limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#,
        );
        assert_eq!(spend.kind, ErrorKind::Quota);
        let overloaded = classify(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(overloaded.kind.retryable());
        assert!(overloaded.message.contains("Overloaded"));
    }

    #[test]
    fn thinking_blocks_are_not_the_answer() {
        let c = parse_message(
            br#"{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"4"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":3}}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(c.text, "4");
        assert_eq!(c.usage.input_tokens, Some(8));
    }

    #[test]
    fn message_stop_without_a_stop_reason_is_cut_off_and_max_tokens_is_kept_as_cut() {
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The key is"}}"#;
        let mut s = StreamState::default();
        s.event(None, delta).unwrap();
        assert!(s.event(None, r#"{"type":"message_stop"}"#).unwrap());
        let e = s.finish().unwrap_err();
        assert!(
            e.kind.retryable() && e.message.contains("no stop_reason"),
            "{e}"
        );

        let mut s = StreamState::default();
        s.event(None, delta).unwrap();
        s.event(
            None,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":3}}"#,
        )
        .unwrap();
        s.event(None, r#"{"type":"message_stop"}"#).unwrap();
        let c = s.finish().unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish),
            ("The key is", Some(Finish::Length))
        );
    }
}
