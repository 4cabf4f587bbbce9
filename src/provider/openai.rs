//! OpenAI chat completions, spoken by OpenAI and every OpenAI-compatible server
//! (PROVIDERS.md §1–2): `POST {base}/chat/completions`, JSON or SSE answers.

use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{self, SseParser, Transport};
use super::{ChatRequest, Completion, Finish, Secret, Usage};
use crate::error::{ErrorKind, ProviderError};

/// Which field carries the output-token limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// The current OpenAI field (also counts reasoning tokens).
    MaxCompletionTokens,
    /// The field every other compatible server understands.
    MaxTokens,
}

/// An OpenAI-compatible endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Provider name, for messages.
    pub name: String,
    pub base_url: String,
    pub key: Option<Secret>,
    pub max_tokens_field: MaxTokensField,
    pub stream: bool,
    /// Extra, non-secret headers (attribution, organization...).
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }

    /// The JSON body: unset sampling parameters are omitted, not sent as defaults.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": request.user}));
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(max) = request.max_tokens {
            let field = match self.max_tokens_field {
                MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
                MaxTokensField::MaxTokens => "max_tokens",
            };
            body.insert(field.into(), json!(max));
        }
        if self.stream {
            body.insert("stream".into(), json!(true));
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
    }

    /// One attempt.
    pub async fn complete(
        &self,
        transport: &Transport,
        request: &ChatRequest,
        _deadline: Instant,
    ) -> Result<Completion, ProviderError> {
        let mut builder = transport
            .client
            .post(self.url())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body(request).to_string());
        if let Some(key) = &self.key {
            builder = builder.bearer_auth(key.expose());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let retry_after = http::retry_after(response.headers());
            let should_retry = response
                .headers()
                .get("x-should-retry")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.eq_ignore_ascii_case("true"));
            let body = http::read_body(&mut response).await.unwrap_or_default();
            let mut err = classify(status, &body).with_retry_after(retry_after);
            err.message = format!("{}: {}", self.name, err.message);
            match should_retry {
                Some(true) if !err.kind.retryable() => err.kind = ErrorKind::Unavailable,
                Some(false) if err.kind.retryable() => err.kind = ErrorKind::Rejected,
                _ => {}
            }
            return Err(err);
        }
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let result = if is_sse {
            read_stream(&mut response).await
        } else {
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = http::read_body(&mut response).await?;
            parse_completion(&body, &content_type)
        };
        result.map_err(|mut e| {
            e.message = format!("{}: {}", self.name, e.message);
            e
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
            cached_input_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
        }
    }
}

#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireMessage {
    content: Option<String>,
    refusal: Option<String>,
}

/// The error body `{"error": {"message", "type", "code"}}`, tolerating plain-string errors.
#[derive(Deserialize)]
struct WireErrorBody {
    error: WireError,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireError {
    Object {
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<Value>,
    },
    Text(String),
}

impl WireError {
    fn parts(&self) -> (String, String, String) {
        match self {
            WireError::Object {
                message,
                kind,
                code,
            } => (
                message.clone().unwrap_or_default(),
                kind.clone().unwrap_or_default(),
                match code {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                },
            ),
            WireError::Text(t) => (t.clone(), String::new(), String::new()),
        }
    }
}

/// Classifies a non-success response from its status and error body.
pub fn classify(status: u16, body: &[u8]) -> ProviderError {
    let parsed = serde_json::from_slice::<WireErrorBody>(body).ok();
    let (message, kind_name, code) = parsed.as_ref().map(|b| b.error.parts()).unwrap_or_default();
    let mut kind = http::kind_for_status(status);
    let quota = [
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
    ];
    if quota.contains(&code.as_str()) || quota.contains(&kind_name.as_str()) {
        kind = ErrorKind::Quota;
    }
    if code == "content_filter" {
        kind = ErrorKind::Refused;
    }
    let detail = if message.is_empty() {
        http::snippet(body)
    } else {
        message
    };
    let label = [kind_name.as_str(), code.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let text = match (label.is_empty(), detail.is_empty()) {
        (true, true) => format!("HTTP {status}"),
        (true, false) => format!("HTTP {status}: {detail}"),
        (false, true) => format!("HTTP {status} {label}"),
        (false, false) => format!("HTTP {status} {label}: {detail}"),
    };
    ProviderError::new(kind, text).with_status(status)
}

fn not_json(content_type: &str, body: &[u8]) -> ProviderError {
    let what = if content_type.is_empty() {
        "a body".to_string()
    } else {
        content_type.to_string()
    };
    ProviderError::new(
        ErrorKind::Malformed,
        format!(
            "expected a JSON completion, got {what}: {}",
            http::snippet(body)
        ),
    )
}

/// Parses a non-streaming answer.
pub fn parse_completion(body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
    let trimmed = body.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Err(not_json(content_type, body));
    }
    let value: Value = serde_json::from_slice(trimmed).map_err(|e| {
        ProviderError::new(
            ErrorKind::Malformed,
            format!("invalid JSON in the completion: {e}"),
        )
    })?;
    if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
        let body = json!({ "error": err }).to_string();
        let mut e = classify(500, body.as_bytes());
        e.message = e.message.replacen("HTTP 500", "error in a 200 response", 1);
        return Err(e);
    }
    let wire: WireCompletion = serde_json::from_value(value).map_err(|e| {
        ProviderError::new(
            ErrorKind::Malformed,
            format!("unexpected completion shape: {e}"),
        )
    })?;
    let usage = wire.usage.map(Usage::from).unwrap_or_default();
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(ProviderError::new(
            ErrorKind::Malformed,
            "the completion has no choices",
        ));
    };
    let finish = choice.finish_reason.as_deref().map(Finish::from_openai);
    let message = choice.message.unwrap_or_default();
    answer(
        message.content.unwrap_or_default(),
        message.refusal,
        finish,
        usage,
    )
}

/// Turns the collected parts of an answer into a completion or a failed call.
fn answer(
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
            Some(Finish::Length) => " (stopped at the token limit: raise max_tokens)",
            Some(Finish::ContentFilter) => " (stopped by the content filter)",
            _ => "",
        };
        let kind = if finish == Some(Finish::ContentFilter) {
            ErrorKind::Refused
        } else {
            ErrorKind::Malformed
        };
        return Err(ProviderError::new(kind, format!("empty answer{why}")));
    }
    Ok(Completion {
        text,
        finish,
        usage,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireChunk {
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireChunkChoice {
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireDelta {
    content: Option<String>,
    refusal: Option<String>,
}

/// Accumulates a streamed answer.
#[derive(Default)]
pub struct StreamState {
    text: String,
    refusal: Option<String>,
    finish: Option<Finish>,
    usage: Usage,
    done: bool,
}

impl StreamState {
    /// Applies one SSE event.
    pub fn event(&mut self, event: Option<&str>, data: &str) -> Result<(), ProviderError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::new(
                ErrorKind::Malformed,
                format!("invalid JSON in the event stream: {e}"),
            )
        })?;
        if event == Some("error") || value.get("error").is_some_and(|e| !e.is_null()) {
            let err = value.get("error").cloned().unwrap_or(value);
            let body = json!({ "error": err }).to_string();
            let mut e = classify(500, body.as_bytes());
            e.message = e.message.replacen("HTTP 500", "error in the stream", 1);
            return Err(e);
        }
        let chunk: WireChunk = serde_json::from_value(value).map_err(|e| {
            ProviderError::new(ErrorKind::Malformed, format!("unexpected chunk shape: {e}"))
        })?;
        if let Some(usage) = chunk.usage {
            self.usage = usage.into();
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    self.text.push_str(&content);
                }
                if let Some(refusal) = delta.refusal {
                    self.refusal
                        .get_or_insert_with(String::new)
                        .push_str(&refusal);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(Finish::from_openai(&reason));
            }
        }
        if self.text.len() > http::MAX_BODY_BYTES {
            return Err(http::too_large());
        }
        Ok(())
    }

    /// The answer once the stream has ended.
    pub fn finish(self) -> Result<Completion, ProviderError> {
        if !self.done && self.finish.is_none() {
            return Err(ProviderError::new(
                ErrorKind::Malformed,
                "the stream ended before the answer was complete",
            ));
        }
        answer(self.text, self.refusal, self.finish, self.usage)
    }
}

async fn read_stream(response: &mut reqwest::Response) -> Result<Completion, ProviderError> {
    let mut parser = SseParser::default();
    let mut state = StreamState::default();
    while let Some(chunk) = http::next_chunk(response).await? {
        for event in parser.feed(&chunk)? {
            state.event(event.event.as_deref(), &event.data)?;
        }
        if state.done {
            break;
        }
    }
    if let Some(event) = parser.finish() {
        state.event(event.event.as_deref(), &event.data)?;
    }
    state.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            name: "local".into(),
            base_url: "http://x/v1/".into(),
            key: None,
            max_tokens_field: MaxTokensField::MaxTokens,
            stream: false,
            headers: vec![],
        }
    }

    #[test]
    fn unset_parameters_are_omitted() {
        let req = ChatRequest {
            model: "m".into(),
            system: None,
            user: "hi".into(),
            temperature: None,
            max_tokens: None,
        };
        assert_eq!(
            endpoint().body(&req),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        );
        assert_eq!(endpoint().url(), "http://x/v1/chat/completions");
    }

    #[test]
    fn quota_429_is_not_retryable_but_rate_limit_is() {
        let quota = classify(429, br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#);
        assert_eq!(quota.kind, ErrorKind::Quota);
        assert!(quota.message.contains("You exceeded your current quota"));
        let rate = classify(
            429,
            br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(rate.kind, ErrorKind::RateLimited);
    }

    #[test]
    fn html_with_200_is_a_clear_failure() {
        let e = parse_completion(b"<!DOCTYPE html><html>oops</html>", "text/html").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("text/html"), "{}", e.message);
    }

    #[test]
    fn a_stream_without_finish_is_truncated() {
        let mut s = StreamState::default();
        s.event(None, r#"{"choices":[{"delta":{"content":"Par"}}]}"#)
            .unwrap();
        assert!(s.finish().unwrap_err().message.contains("ended before"));
    }

    #[test]
    fn azure_style_chunks_without_delta_are_tolerated() {
        let mut s = StreamState::default();
        s.event(None, r#"{"choices":[],"prompt_filter_results":[]}"#)
            .unwrap();
        s.event(None, r#"{"choices":[{"content_filter_results":{}}]}"#)
            .unwrap();
        s.event(
            None,
            r#"{"choices":[{"delta":{"content":"Paris"},"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        s.event(
            None,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
        )
        .unwrap();
        let c = s.finish().unwrap();
        assert_eq!(c.text, "Paris");
        assert_eq!(c.usage.input_tokens, Some(3));
    }
}
