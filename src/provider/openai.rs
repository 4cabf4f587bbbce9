//! OpenAI chat completions, spoken by OpenAI and every OpenAI-compatible server
//! (docs/providers.md, Kinds): `POST {base}/chat/completions`, JSON or SSE answers. Azure
//! OpenAI is the same protocol with another auth header and URL scheme.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body;
use super::framing::Framing;
use super::http::{self, Answer, KeyHeader};
use super::{ChatRequest, Completion, Finish, Usage, answer, cut_off};
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

/// How the key is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI and every compatible server).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

/// Where the request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `{base}/chat/completions` (also Azure's `/openai/v1` form).
    ChatCompletions,
    /// Azure's dated API: `{base}/openai/deployments/{model}/chat/completions?api-version=V`,
    /// where the model is the deployment name.
    AzureDeployment { api_version: String },
}

/// What sets one OpenAI-compatible server apart from another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialect {
    pub max_tokens_field: MaxTokensField,
    pub auth: Auth,
    pub route: Route,
    /// The name of the seed field: `seed`, or Mistral's `random_seed`.
    pub seed_field: &'static str,
}

impl Default for Dialect {
    /// Every compatible server: Bearer auth, `{base}/chat/completions`, `max_tokens`.
    fn default() -> Dialect {
        Dialect {
            max_tokens_field: MaxTokensField::MaxTokens,
            auth: Auth::Bearer,
            route: Route::ChatCompletions,
            seed_field: "seed",
        }
    }
}

impl Dialect {
    /// An Azure OpenAI resource, and the base URL calls go to: `api-key` auth; with an
    /// `api_version` the dated deployment URL, without one the `/openai/v1` API.
    pub fn azure(resource_url: &str, api_version: Option<String>) -> (String, Dialect) {
        let resource = resource_url.trim_end_matches('/');
        let (base_url, route) = match api_version {
            Some(api_version) => (
                resource.trim_end_matches("/openai").to_string(),
                Route::AzureDeployment { api_version },
            ),
            None if resource.ends_with("/openai/v1") => {
                (resource.to_string(), Route::ChatCompletions)
            }
            None => (
                format!("{}/openai/v1", resource.trim_end_matches("/openai")),
                Route::ChatCompletions,
            ),
        };
        let dialect = Dialect {
            auth: Auth::ApiKey,
            route,
            ..Dialect::default()
        };
        (base_url, dialect)
    }

    pub fn key_header(&self) -> KeyHeader {
        match self.auth {
            Auth::Bearer => KeyHeader::Bearer,
            Auth::ApiKey => KeyHeader::Named("api-key"),
        }
    }

    /// The URL of a call to `model` at `base`, given without a trailing slash.
    pub fn url(&self, base: &str, model: &str) -> String {
        match &self.route {
            Route::ChatCompletions => format!("{base}/chat/completions"),
            Route::AzureDeployment { api_version } => format!(
                "{base}/openai/deployments/{}/chat/completions?api-version={}",
                body::path_segment(model),
                body::path_segment(api_version)
            ),
        }
    }

    /// The JSON body: unset sampling parameters are omitted, not sent as defaults.
    pub fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let max_tokens_field = match self.max_tokens_field {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        };
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), request.chat_messages());
        let mut sampling = request.sampling(max_tokens_field);
        if let Some(seed) = sampling.remove("seed") {
            sampling.insert(self.seed_field.into(), seed);
        }
        body.extend(sampling);
        if stream {
            body.insert("stream".into(), json!(true));
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
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
        body::snippet(body)
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

/// Parses a non-streaming answer.
pub fn parse_completion(body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
    let value = body::json_object(body, content_type)?;
    if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
        let body = json!({ "error": err }).to_string();
        let mut e = classify(500, body.as_bytes());
        e.message = e.message.replacen("HTTP 500", "error in a 200 response", 1);
        return Err(e);
    }
    let wire: WireCompletion = body::typed(value, "completion")?;
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
        if self.text.len() > body::MAX_BODY_BYTES {
            return Err(body::too_large());
        }
        Ok(())
    }
}

impl Answer for StreamState {
    const FRAMING: Framing = Framing::Sse;

    fn frame(&mut self, event: Option<&str>, data: &str) -> Result<bool, ProviderError> {
        self.event(event, data)?;
        Ok(self.done)
    }

    fn body(&mut self, body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
        parse_completion(body, content_type)
    }

    /// The answer once the stream has ended: only a stream in which some chunk said why
    /// the model stopped is an answer. `[DONE]` alone proves nothing (a llama.cpp-based
    /// server ends an interrupted answer with it).
    fn finish(self) -> Result<Completion, ProviderError> {
        if self.finish.is_none() {
            let end = "[DONE] but no chunk said why the model stopped (no finish_reason)";
            return Err(cut_off(self.done.then_some(end)));
        }
        answer(self.text, self.refusal, self.finish, self.usage)
    }

    fn usage(&self) -> Usage {
        self.usage.clone()
    }

    fn classify(&self, status: u16, body: &[u8]) -> ProviderError {
        classify(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::endpoint::{Endpoint, Protocol};

    fn endpoint() -> Endpoint {
        Endpoint::new(
            "local",
            "http://x/v1/",
            Protocol::OpenAi(Dialect::default()),
        )
    }

    /// An Azure endpoint as the config builds it.
    fn azure(resource_url: &str, api_version: Option<String>) -> Endpoint {
        let (base_url, dialect) = Dialect::azure(resource_url, api_version);
        Endpoint::new("az", base_url, Protocol::OpenAi(dialect))
    }

    #[test]
    fn unset_parameters_are_omitted() {
        let req = ChatRequest {
            model: "m".into(),
            system: None,
            user: "hi".into(),
            temperature: None,
            max_tokens: None,
            seed: None,
        };
        assert_eq!(
            endpoint().body(&req),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        );
        assert_eq!(endpoint().url("m"), "http://x/v1/chat/completions");
    }

    #[test]
    fn azure_urls_in_both_styles() {
        let dated = azure("https://r.openai.azure.com/", Some("2024-10-21".into()));
        assert_eq!(
            dated.url("my-gpt"),
            "https://r.openai.azure.com/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"
        );
        let v1 = azure("https://r.openai.azure.com", None);
        assert_eq!(
            v1.url("my-gpt"),
            "https://r.openai.azure.com/openai/v1/chat/completions"
        );
        let given = azure("https://r.openai.azure.com/openai/v1/", None);
        assert_eq!(given.url("x"), v1.url("x"));
        assert_eq!(v1.kind(), "azure");
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

    #[test]
    fn done_without_a_finish_reason_is_cut_off_and_length_is_kept_as_cut() {
        let mut s = StreamState::default();
        s.event(None, r#"{"choices":[{"delta":{"content":"The key is"}}]}"#)
            .unwrap();
        s.event(None, "[DONE]").unwrap();
        let e = s.finish().unwrap_err();
        assert!(
            e.kind.retryable() && e.message.contains("no finish_reason"),
            "{e}"
        );

        let mut s = StreamState::default();
        s.event(
            None,
            r#"{"choices":[{"delta":{"content":"The key is"},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        s.event(None, "[DONE]").unwrap();
        let c = s.finish().unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish),
            ("The key is", Some(Finish::Length))
        );
    }
}
