//! An HTTP provider: where it is and how it is reached, the same for every wire protocol,
//! and the protocol it speaks. Each protocol's module builds its URL and body and reads
//! its replies; the one exchange in `http` does the rest.

use serde_json::Value;

use super::http::{Call, KeyHeader, Transport};
use super::{ChatRequest, Completion, Secret, anthropic, gemini, ollama, openai};
use crate::error::ProviderError;

/// The wire protocols spoken over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI chat completions: OpenAI, every compatible server, and Azure OpenAI.
    OpenAi(openai::Dialect),
    Anthropic,
    Gemini,
    Ollama,
}

/// An HTTP provider.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Provider name, for messages.
    pub name: String,
    pub base_url: String,
    pub key: Option<Secret>,
    pub stream: bool,
    /// Extra, non-secret headers (attribution, organization, `anthropic-beta`...).
    pub headers: Vec<(String, String)>,
    pub protocol: Protocol,
}

impl Endpoint {
    /// An endpoint without a key or extra headers, whose answers come as one body.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>, protocol: Protocol) -> Self {
        Endpoint {
            name: name.into(),
            base_url: base_url.into(),
            key: None,
            stream: false,
            headers: Vec::new(),
            protocol,
        }
    }

    /// The kind, as a config names it.
    pub fn kind(&self) -> &'static str {
        match &self.protocol {
            Protocol::OpenAi(dialect) if dialect.auth == openai::Auth::ApiKey => "azure",
            Protocol::OpenAi(_) => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
            Protocol::Ollama => "ollama",
        }
    }

    /// Where a call to `model` goes.
    pub fn url(&self, model: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        match &self.protocol {
            Protocol::OpenAi(dialect) => dialect.url(base, model),
            Protocol::Anthropic => anthropic::url(base),
            Protocol::Gemini => gemini::url(base, model, self.stream),
            Protocol::Ollama => ollama::url(base),
        }
    }

    /// The JSON body of a call.
    pub fn body(&self, request: &ChatRequest) -> Value {
        match &self.protocol {
            Protocol::OpenAi(dialect) => dialect.body(request, self.stream),
            Protocol::Anthropic => anthropic::body(request, self.stream),
            Protocol::Gemini => gemini::body(request),
            Protocol::Ollama => ollama::body(request, self.stream),
        }
    }

    /// One attempt of a call, without retries.
    /// The header the key is sent in (`Authorization` for a bearer token).
    pub fn key_header_name(&self) -> &'static str {
        let header = match &self.protocol {
            Protocol::OpenAi(dialect) => dialect.key_header(),
            Protocol::Anthropic => anthropic::KEY_HEADER,
            Protocol::Gemini => gemini::KEY_HEADER,
            Protocol::Ollama => KeyHeader::Bearer,
        };
        match header {
            KeyHeader::Bearer => "Authorization",
            KeyHeader::Named(name) => name,
        }
    }

    pub async fn attempt(
        &self,
        transport: &Transport,
        request: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        let (key_header, protocol_headers) = match &self.protocol {
            Protocol::OpenAi(dialect) => (dialect.key_header(), &[][..]),
            Protocol::Anthropic => (anthropic::KEY_HEADER, anthropic::HEADERS),
            Protocol::Gemini => (gemini::KEY_HEADER, &[][..]),
            Protocol::Ollama => (KeyHeader::Bearer, &[][..]),
        };
        let call = Call {
            url: self.url(&request.model),
            body: self.body(request),
            key: self.key.as_ref(),
            key_header,
            protocol_headers,
            headers: &self.headers,
        };
        match &self.protocol {
            Protocol::OpenAi(_) => {
                transport
                    .exchange(call, openai::StreamState::default())
                    .await
            }
            Protocol::Anthropic => {
                transport
                    .exchange(call, anthropic::StreamState::default())
                    .await
            }
            Protocol::Gemini => transport.exchange(call, gemini::State::default()).await,
            Protocol::Ollama => {
                transport
                    .exchange(call, ollama::State::new(&request.model))
                    .await
            }
        }
    }
}
