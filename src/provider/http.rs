//! The HTTP client and the one exchange every HTTP provider makes: POST a JSON body, turn
//! a failure status into a classified error, then read the answer as a stream or as one
//! body. Protocols plug in through [`Answer`]; retries live in `retry`, framing in
//! `framing`, body helpers in `body`.

use std::sync::OnceLock;

use super::body::{read_body, snippet, transport_error};
use super::framing::{Decoder, Framing};
use super::scrub::Scrubber;
use super::{Completion, Secret, Usage};
use crate::error::{ErrorKind, ProviderError};

pub use super::body::{MAX_ANSWER_BYTES, MAX_BODY_BYTES};
pub use super::retry::{Clock, MAX_RETRY_AFTER, Policy, Retry, human_duration};

/// An HTTP client plus the policy it is used with.
#[derive(Clone, Debug)]
pub struct Transport {
    pub client: reqwest::Client,
    /// The policy, and the run deadline counted from the transport's creation.
    pub clock: Clock,
}

fn install_crypto() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Transport {
    pub fn new(policy: Policy) -> anyhow::Result<Transport> {
        install_crypto();
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.idle_timeout)
            // A redirect would carry the key headers and the prompt to whatever host it
            // names (the client strips only `Authorization`): a 3xx is an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("llm-consensus/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Transport {
            client,
            clock: Clock::start(policy),
        })
    }
}

/// Where a request carries its API key.
#[derive(Clone, Copy, Debug)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key alone in a header of this name (`x-api-key`, `x-goog-api-key`, `api-key`).
    Named(&'static str),
}

/// One POST of a JSON body, as a protocol describes it.
pub struct Call<'a> {
    pub url: String,
    pub body: serde_json::Value,
    pub key: Option<&'a Secret>,
    pub key_header: KeyHeader,
    /// The protocol's own headers (`anthropic-version`).
    pub protocol_headers: &'static [(&'static str, &'static str)],
    /// The provider's configured extra headers.
    pub headers: &'a [(String, String)],
}

/// How a protocol reads its reply. The transport sends, checks the status and picks
/// stream or body by content type; the protocol only parses.
pub trait Answer: Default {
    /// How the protocol's streams are framed; a reply of another content type is one body.
    const FRAMING: Framing;
    /// The error of a response with a failure status, from its (scrubbed) body.
    fn classify(&self, status: u16, body: &[u8]) -> ProviderError;
    /// Applies one frame of a stream; true when it was the protocol's end marker.
    fn frame(&mut self, event: Option<&str>, data: &str) -> Result<bool, ProviderError>;
    /// The answer in a whole body.
    fn body(&mut self, body: &[u8], content_type: &str) -> Result<Completion, ProviderError>;
    /// The answer once the stream has ended. A stream that never said why the model
    /// stopped was cut off: that is a failed (retryable) call, never an answer.
    fn finish(self) -> Result<Completion, ProviderError>;
    /// Tokens reported so far, kept when the attempt fails.
    fn usage(&self) -> Usage;
}

impl Transport {
    /// One attempt of a call: the request, the status check, then the reply read by
    /// `answer`. Every byte from the provider is scrubbed of the key before anything
    /// parses, quotes or cuts it. A failure carries the tokens reported before it.
    pub async fn exchange<A: Answer>(
        &self,
        call: Call<'_>,
        mut answer: A,
    ) -> Result<Completion, ProviderError> {
        let scrubber = Scrubber::new(call.key.map(Secret::expose));
        let classify = |status, body: &[u8]| answer.classify(status, body);
        let mut response = self.send(call, classify, &scrubber).await?;
        let content_type = content_type(&response);
        let result = if content_type == A::FRAMING.content_type() {
            read_stream(&mut response, &scrubber, &mut answer).await
        } else {
            match read_body(&mut response).await {
                Ok(body) => answer.body(&scrubber.scrub_bytes(&body), &content_type),
                Err(e) => Err(e),
            }
        };
        result.map_err(|mut e| {
            let usage = answer.usage();
            if e.usage.is_none() && usage != Usage::default() {
                e.usage = Some(Box::new(usage));
            }
            e
        })
    }

    /// Sends the request. A non-success status becomes the error `classify(status, body)`,
    /// with the wait the response asks for and the `x-should-retry` override applied; a
    /// redirect is an error that names where it points.
    async fn send(
        &self,
        call: Call<'_>,
        classify: impl FnOnce(u16, &[u8]) -> ProviderError,
        scrubber: &Scrubber,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut builder = self
            .client
            .post(&call.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(call.body.to_string());
        if let Some(key) = call.key {
            builder = match call.key_header {
                // One Authorization header: the `user:password` of the URL (sent as Basic)
                // was written for this endpoint, and a second header would be ignored.
                KeyHeader::Bearer if has_userinfo(&call.url) => builder,
                KeyHeader::Bearer => builder.bearer_auth(key.expose()),
                KeyHeader::Named(name) => builder.header(name, key.expose()),
            };
        }
        for (name, value) in call.protocol_headers {
            builder = builder.header(*name, *value);
        }
        for (name, value) in call.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let code = status.as_u16();
        if status.is_redirection() {
            return Err(redirect_error(code, response.headers(), scrubber));
        }
        let asked = super::retry::retry_after(response.headers());
        let should_retry = response
            .headers()
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().eq_ignore_ascii_case("true"));
        let body = read_body(&mut response).await.unwrap_or_default();
        let mut err = classify(code, &scrubber.scrub_bytes(&body));
        if err.status.is_none() {
            err.status = Some(code);
        }
        if asked.is_some() {
            err.retry_after = asked;
        }
        match should_retry {
            Some(true) if !err.kind.retryable() => err.kind = ErrorKind::Unavailable,
            Some(false) if err.kind.retryable() => err.kind = ErrorKind::Rejected,
            _ => {}
        }
        Err(err)
    }
}

/// Whether the URL carries a `user:password` that the client sends as Basic authorization.
fn has_userinfo(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// A 3xx: not followed, not retried; the message names the `Location` so that the user
/// can fix `base_url`.
fn redirect_error(
    code: u16,
    headers: &reqwest::header::HeaderMap,
    scrubber: &Scrubber,
) -> ProviderError {
    let location = headers
        .get(reqwest::header::LOCATION)
        .map(|v| snippet(&scrubber.scrub_bytes(v.as_bytes())));
    let target = match location {
        Some(l) if !l.is_empty() => format!("redirects to {l}"),
        _ => "redirects (no Location header)".to_string(),
    };
    ProviderError::new(
        ErrorKind::Rejected,
        format!(
            "HTTP {code}: the provider {target}; redirects are not followed (they would take the key and the prompt elsewhere): set base_url to the address that answers"
        ),
    )
    .with_status(code)
}

/// Gives each frame of a streamed body, scrubbed, to `answer` until it reports the
/// protocol's end marker or the body ends; then the answer.
async fn read_stream<A: Answer>(
    response: &mut reqwest::Response,
    scrubber: &Scrubber,
    answer: &mut A,
) -> Result<Completion, ProviderError> {
    let mut decoder = Decoder::new(A::FRAMING);
    'body: {
        while let Some(chunk) = super::body::next_chunk(response).await? {
            for frame in decoder.feed(&chunk)? {
                if answer.frame(frame.event.as_deref(), &scrubber.scrub(&frame.data))? {
                    break 'body;
                }
            }
        }
        for frame in decoder.finish()? {
            if answer.frame(frame.event.as_deref(), &scrubber.scrub(&frame.data))? {
                break;
            }
        }
    }
    std::mem::take(answer).finish()
}

/// The response's content type, lowercased, without parameters ("" when absent).
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The error class of an HTTP status, before looking at the body.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Auth,
        402 => ErrorKind::Quota,
        408 | 409 | 500..=599 => ErrorKind::Unavailable,
        429 => ErrorKind::RateLimited,
        _ => ErrorKind::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::provider::{ChatRequest, Endpoint, Protocol, Provider};

    /// Serves every connection `reply`, after reading the request, then closes it.
    async fn serve(reply: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as much body as they announce.
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        url
    }

    /// An Anthropic stream that breaks off after `message_start` reported the input
    /// tokens: each attempt fails, and the tokens of every attempt are kept.
    #[tokio::test]
    async fn a_stream_that_breaks_after_its_usage_keeps_the_usage() {
        let event = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n";
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                event.len()
            )
            .into_boxed_str(),
        );
        let url = serve(reply).await;
        let transport = Transport::new(Policy {
            retries: 1,
            base_backoff: Duration::from_millis(1),
            ..Policy::default()
        })
        .unwrap();
        let provider = Provider::Http(Endpoint {
            stream: true,
            ..Endpoint::new("a", url, Protocol::Anthropic)
        });
        let request = ChatRequest {
            model: "m".into(),
            system: None,
            user: "2+2?".into(),
            temperature: None,
            max_tokens: None,
            seed: None,
        };
        let outcome = provider.complete(&transport, &request, 0, |_| {}).await;
        let e = outcome.result.unwrap_err();
        assert!(e.message.contains("broke off"), "{e}");
        assert_eq!(outcome.attempts, 2);
        assert_eq!(outcome.failed_usage.input_tokens, Some(50));
        assert_eq!(outcome.failed_usage.output_tokens, Some(2));
    }
}
