//! Ollama's native chat API (docs/providers.md, Kinds): `POST {host}/api/chat`, one JSON object,
//! or NDJSON lines when streaming. `stream` defaults to true on the server, so it is
//! always sent.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body;
use super::framing::Framing;
use super::http::{self, Answer};
use super::{ChatRequest, Completion, Finish, Usage, answer};
use crate::error::{ErrorKind, ProviderError};

/// The server address from `OLLAMA_HOST` (`host`, `host:port`, or a URL); the port
/// defaults to 11434.
pub fn host_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let with_scheme = if host.starts_with("http://") || host.starts_with("https://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    let authority = with_scheme.split_once("://").map_or("", |(_, rest)| rest);
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if has_port || authority.contains('/') {
        with_scheme
    } else {
        format!("{with_scheme}:11434")
    }
}

/// The chat URL of `base` (`http://localhost:11434`, or `https://ollama.com` for the
/// cloud, whose key goes as a Bearer token), given without a trailing slash.
pub fn url(base: &str) -> String {
    let base = base.strip_suffix("/api").unwrap_or(base);
    format!("{base}/api/chat")
}

/// The JSON body: `stream` always, `options` only with what the seat sets.
pub fn body(request: &ChatRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), request.chat_messages());
    body.insert("stream".into(), json!(stream));
    let options = request.sampling("num_predict");
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    Value::Object(body)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireChunk {
    message: Option<WireMessage>,
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireMessage {
    content: Option<String>,
}

#[derive(Default)]
pub(crate) struct State {
    /// The model asked, named in the error for a model that is not pulled.
    model: String,
    text: String,
    done: bool,
    finish: Option<Finish>,
    usage: Usage,
}

impl State {
    pub fn new(model: &str) -> State {
        State {
            model: model.to_string(),
            ..State::default()
        }
    }

    /// Applies a whole reply or one NDJSON line; true once the final line arrived.
    fn apply(&mut self, value: Value) -> Result<bool, ProviderError> {
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            let message = error
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            return Err(ProviderError::new(
                ErrorKind::Unavailable,
                format!("error in the response: {message}"),
            ));
        }
        let chunk: WireChunk = body::typed(value, "reply")?;
        if let Some(content) = chunk.message.and_then(|m| m.content) {
            self.text.push_str(&content);
            body::check_answer_size(&self.text)?;
        }
        if chunk.done {
            self.done = true;
            self.finish = Some(match chunk.done_reason.as_deref() {
                None | Some("stop") => Finish::Stop,
                Some("length") => Finish::Length,
                Some(other) => Finish::Other(other.to_string()),
            });
            self.usage = Usage {
                input_tokens: chunk.prompt_eval_count,
                output_tokens: chunk.eval_count,
                ..Usage::default()
            };
        }
        Ok(self.done)
    }
}

impl Answer for State {
    const FRAMING: Framing = Framing::Ndjson;

    fn frame(&mut self, _event: Option<&str>, line: &str) -> Result<bool, ProviderError> {
        self.apply(body::json_object(line.as_bytes(), "a line")?)
    }

    fn body(&mut self, body: &[u8], content_type: &str) -> Result<Completion, ProviderError> {
        self.apply(body::json_object(body, content_type)?)?;
        std::mem::take(self).finish()
    }

    fn finish(self) -> Result<Completion, ProviderError> {
        if !self.done {
            return Err(ProviderError::new(
                ErrorKind::Malformed,
                "the stream ended before the answer was complete (no \"done\": true line)",
            ));
        }
        answer(self.text, None, self.finish, self.usage)
    }

    fn usage(&self) -> Usage {
        self.usage.clone()
    }

    fn classify(&self, status: u16, body: &[u8]) -> ProviderError {
        classify(status, body, &self.model)
    }
}

/// Classifies an error response `{"error": "text"}`; a missing model names `ollama pull`.
pub fn classify(status: u16, body: &[u8], model: &str) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body::snippet(body));
    let mut text = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    if status == 404 && message.contains("not found") {
        text.push_str(&format!(" (run `ollama pull {model}`)"));
    }
    ProviderError::new(http::kind_for_status(status), text).with_status(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::endpoint::{Endpoint, Protocol};

    #[test]
    fn host_forms() {
        assert_eq!(host_url("127.0.0.1:11500"), "http://127.0.0.1:11500");
        assert_eq!(host_url("http://gpu-box"), "http://gpu-box:11434");
        assert_eq!(host_url("https://o.example:443/"), "https://o.example:443");
        assert_eq!(host_url("0.0.0.0"), "http://0.0.0.0:11434");
    }

    #[test]
    fn stream_is_always_sent_and_options_only_when_set() {
        let e = Endpoint::new("ollama", "http://h:1/", Protocol::Ollama);
        let mut req = ChatRequest {
            model: "llama3.2".into(),
            system: None,
            user: "hi".into(),
            temperature: None,
            max_tokens: None,
            seed: None,
        };
        assert_eq!(
            e.body(&req),
            json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false})
        );
        req.temperature = Some(0.0);
        req.max_tokens = Some(9);
        assert_eq!(
            e.body(&req)["options"],
            json!({"temperature": 0.0, "num_predict": 9})
        );
        assert_eq!(e.url("llama3.2"), "http://h:1/api/chat");
    }

    #[test]
    fn mid_stream_error_lines_fail_the_call() {
        let mut s = State::default();
        s.apply(json!({"message": {"content": "Pa"}, "done": false}))
            .unwrap();
        let e = s
            .apply(json!({"error": "the model failed to generate a response"}))
            .unwrap_err();
        assert!(e.message.contains("failed to generate"));
        let mut s = State::default();
        s.apply(json!({"message": {"content": "Pa"}, "done": false}))
            .unwrap();
        assert!(s.finish().is_err());
    }

    #[test]
    fn no_done_line_is_cut_off_and_length_is_kept_as_cut() {
        let mut s = State::default();
        s.apply(json!({"message": {"content": "The key is"}, "done": false}))
            .unwrap();
        assert!(s.finish().unwrap_err().kind.retryable());
        let mut s = State::default();
        s.apply(
            json!({"message": {"content": "The key is"}, "done": true, "done_reason": "length"}),
        )
        .unwrap();
        assert_eq!(s.finish().unwrap().finish, Some(Finish::Length));
    }
}
