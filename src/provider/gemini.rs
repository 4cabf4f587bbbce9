//! Google Gemini (docs/providers.md, Kinds): `POST {base}/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` when streaming, with `x-goog-api-key`,
//! `systemInstruction` and a camelCase `generationConfig`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body;
use super::framing::Framing;
use super::http::{self, Answer, KeyHeader};
use super::{ChatRequest, Completion, Finish, Usage, answer};
use crate::error::{ErrorKind, ProviderError};

/// How the key travels.
pub const KEY_HEADER: KeyHeader = KeyHeader::Named("x-goog-api-key");

/// The URL of a call to `model` at `base` (`https://generativelanguage.googleapis.com/v1beta`,
/// without a trailing slash). The model may be given with or without its `models/` prefix.
pub fn url(base: &str, model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let model = body::path_segment(model);
    if stream {
        format!("{base}/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{base}/models/{model}:generateContent")
    }
}

/// The JSON body; `generationConfig` holds only what the seat sets.
pub fn body(request: &ChatRequest) -> Value {
    let mut body = Map::new();
    if let Some(system) = &request.system {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    body.insert(
        "contents".into(),
        json!([{"role": "user", "parts": [{"text": request.user}]}]),
    );
    let config = request.sampling("maxOutputTokens");
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Value::Object(body)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireResponse {
    candidates: Vec<WireCandidate>,
    prompt_feedback: Option<WirePromptFeedback>,
    usage_metadata: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireContent {
    parts: Vec<WirePart>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WirePart {
    text: Option<String>,
    thought: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WirePromptFeedback {
    block_reason: Option<String>,
    block_reason_message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
}

impl From<WireUsage> for Usage {
    /// Output is what is billed as output: the answer and the thoughts.
    fn from(u: WireUsage) -> Usage {
        let output = match (u.candidates_token_count, u.thoughts_token_count) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        Usage {
            input_tokens: u.prompt_token_count,
            output_tokens: output,
            reasoning_tokens: u.thoughts_token_count,
            cached_input_tokens: u.cached_content_token_count,
        }
    }
}

fn finish(reason: &str) -> Finish {
    match reason {
        "STOP" => Finish::Stop,
        "MAX_TOKENS" => Finish::Length,
        "SAFETY" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "RECITATION" => {
            Finish::ContentFilter
        }
        other => Finish::Other(other.to_string()),
    }
}

/// Accumulates one answer: a whole response, or the events of a stream (each carries the
/// new text; usage is repeated, so the last one counts).
#[derive(Default)]
pub(crate) struct State {
    text: String,
    finish: Option<Finish>,
    usage: Usage,
    blocked: Option<String>,
}

impl State {
    fn apply(&mut self, value: Value) -> Result<(), ProviderError> {
        if value.get("error").is_some_and(|e| !e.is_null()) {
            let body = value.to_string();
            let status = value
                .pointer("/error/code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            let mut e = classify(status, body.as_bytes());
            e.message = format!("error in a 200 response: {}", e.message);
            return Err(e);
        }
        let response: WireResponse = body::typed(value, "response")?;
        if let Some(usage) = response.usage_metadata {
            self.usage = usage.into();
        }
        if let Some(feedback) = response.prompt_feedback
            && let Some(reason) = feedback.block_reason
        {
            let why = feedback
                .block_reason_message
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            self.blocked = Some(format!("{reason}{why}"));
        }
        if let Some(candidate) = response.candidates.into_iter().next() {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if part.thought != Some(true)
                    && let Some(text) = part.text
                {
                    self.text.push_str(&text);
                }
            }
            body::check_answer_size(&self.text)?;
            if let Some(reason) = candidate.finish_reason {
                self.finish = Some(finish(&reason));
            }
        }
        Ok(())
    }
}

impl Answer for State {
    const FRAMING: Framing = Framing::SseWithBareJson;

    fn frame(&mut self, _event: Option<&str>, data: &str) -> Result<bool, ProviderError> {
        let data = data.trim();
        if !data.is_empty() {
            self.apply(body::json_object(data.as_bytes(), "an event")?)?;
        }
        Ok(false)
    }

    fn body(&mut self, body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
        self.apply(body::json_object(body, content_type)?)?;
        std::mem::take(self).finish()
    }

    /// The answer: only a response with a `finishReason` is one (a stream that ends
    /// without it was cut off).
    fn finish(self) -> Result<Completion, ProviderError> {
        if self.text.trim().is_empty()
            && let Some(reason) = self.blocked
        {
            return Err(ProviderError::new(
                ErrorKind::Refused,
                format!("the prompt was blocked ({reason})"),
            ));
        }
        if self.finish.is_none() {
            let what = if self.text.is_empty() {
                "the response has no candidates"
            } else {
                "the stream ended before the answer was complete"
            };
            return Err(ProviderError::new(ErrorKind::Malformed, what));
        }
        answer(self.text, None, self.finish, self.usage)
    }

    fn usage(&self) -> Usage {
        self.usage.clone()
    }

    fn classify(&self, status: u16, body: &[u8]) -> ProviderError {
        classify(status, body)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireError {
    message: String,
    status: String,
    details: Vec<WireDetail>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireDetail {
    #[serde(rename = "@type")]
    kind: String,
    retry_delay: Option<String>,
    violations: Vec<WireViolation>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WireViolation {
    quota_id: Option<String>,
}

/// A protobuf duration (`"38s"`, `"45.837906927s"`), capped like every duration a
/// server gives.
pub fn parse_delay(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    super::retry::server_secs(secs)
}

/// Classifies an error response: RetryInfo gives the delay, a per-day quota is final.
pub fn classify(status: u16, body: &[u8]) -> ProviderError {
    let error: WireError = body::error_object(body);
    let mut kind = http::kind_for_status(status);
    let mut delay = None;
    let mut per_day = None;
    for detail in &error.details {
        if detail.kind.ends_with("google.rpc.RetryInfo") {
            delay = detail.retry_delay.as_deref().and_then(parse_delay);
        }
        if detail.kind.ends_with("google.rpc.QuotaFailure") {
            per_day = detail
                .violations
                .iter()
                .filter_map(|v| v.quota_id.clone())
                .find(|id| id.contains("PerDay"));
        }
    }
    // A per-day quota does not clear within a run, whatever RetryInfo says.
    if per_day.is_some() {
        kind = ErrorKind::Quota;
        delay = None;
    }
    let detail = if error.message.is_empty() {
        body::snippet(body)
    } else {
        error.message
    };
    let mut text = format!("HTTP {status}");
    if !error.status.is_empty() {
        text = format!("{text} {}", error.status);
    }
    if !detail.is_empty() {
        text = format!("{text}: {detail}");
    }
    if let Some(quota) = per_day {
        text = format!("{text} (daily quota {quota}: it resets tomorrow)");
    }
    ProviderError::new(kind, text)
        .with_status(status)
        .with_retry_after(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::endpoint::{Endpoint, Protocol};

    fn endpoint(stream: bool) -> Endpoint {
        Endpoint {
            stream,
            ..Endpoint::new("gemini", "https://g/v1beta/", Protocol::Gemini)
        }
    }

    #[test]
    fn urls_accept_the_models_prefix() {
        assert_eq!(
            endpoint(false).url("models/gemini-2.5-flash"),
            "https://g/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            endpoint(true).url("gemini-2.5-flash"),
            "https://g/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn body_is_camel_case_and_omits_unset_parameters() {
        let mut req = ChatRequest {
            model: "m".into(),
            system: Some("Be terse.".into()),
            user: "2+2?".into(),
            temperature: None,
            max_tokens: None,
            seed: None,
        };
        assert_eq!(
            endpoint(false).body(&req),
            json!({"systemInstruction": {"parts": [{"text": "Be terse."}]},
                   "contents": [{"role": "user", "parts": [{"text": "2+2?"}]}]})
        );
        req.temperature = Some(0.5);
        req.max_tokens = Some(64);
        assert_eq!(
            endpoint(false).body(&req)["generationConfig"],
            json!({"temperature": 0.5, "maxOutputTokens": 64})
        );
    }

    #[test]
    fn retry_delay_and_per_day_quota() {
        let e = classify(
            429,
            br#"{"error":{"code":429,"message":"slow","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"45.5s"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(45_500)));
        let e = classify(
            429,
            br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"3s"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Quota);
        assert!(e.message.contains("PerDay"), "{}", e.message);
    }

    #[test]
    fn thoughts_are_excluded_and_blocked_prompts_refused() {
        let mut s = State::default();
        s.apply(json!({"candidates":[{"content":{"parts":[{"text":"thinking…","thought":true},{"text":"4"}]},"finishReason":"STOP"}],
                       "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"thoughtsTokenCount":5}}))
            .unwrap();
        let c = s.finish().unwrap();
        assert_eq!(c.text, "4");
        assert_eq!(c.usage.output_tokens, Some(6));
        let mut s = State::default();
        s.apply(json!({"promptFeedback":{"blockReason":"SAFETY"}}))
            .unwrap();
        let e = s.finish().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Refused);
        assert!(!e.kind.retryable());
    }

    #[test]
    fn no_finish_reason_is_cut_off_and_max_tokens_is_kept_as_cut() {
        let mut s = State::default();
        s.apply(json!({"candidates":[{"content":{"parts":[{"text":"The key is"}]}}]}))
            .unwrap();
        let e = s.finish().unwrap_err();
        assert!(e.kind.retryable(), "{e}");
        let mut s = State::default();
        s.apply(json!({"candidates":[{"content":{"parts":[{"text":"The key is"}]},"finishReason":"MAX_TOKENS"}]}))
            .unwrap();
        assert_eq!(s.finish().unwrap().finish, Some(Finish::Length));
    }
}
