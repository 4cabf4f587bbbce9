//! All transport policy lives here: timeouts, retries, backoff, Retry-After, body limits,
//! and the line framing of streamed bodies. Adapters describe requests and parse bodies.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::{Completion, Outcome, Secret};
use crate::error::{ErrorKind, ProviderError};

/// The most a response body may hold; larger bodies are failed calls, not memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The longest answer text kept; a longer answer is a failed call.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The longest server-requested wait that is honoured (the official SDKs cap it similarly).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How calls are made.
#[derive(Clone, Debug)]
pub struct Policy {
    pub connect_timeout: Duration,
    /// Longest silence between two reads of a response body.
    pub idle_timeout: Duration,
    /// Longest time for one attempt of one call.
    pub call_timeout: Duration,
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First backoff step; doubles per attempt, capped at `max_backoff`, with jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest time for the whole run (`--deadline`); no call outlives it.
    pub run_deadline: Option<Duration>,
    /// A round closes once the quorum has answered and this much time has passed
    /// (`--round-timeout`); the participants still out are absent for that round.
    pub round_timeout: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(120),
            retries: 2,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            run_deadline: None,
            round_timeout: None,
        }
    }
}

/// A failed attempt that is about to be retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry<'a> {
    /// The attempt that failed, counted from 1.
    pub attempt: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// Whether the provider asked for that wait (otherwise it is the backoff).
    pub asked: bool,
    /// Why the attempt failed.
    pub reason: &'a str,
}

/// An HTTP client plus the policy it is used with.
#[derive(Clone, Debug)]
pub struct Transport {
    pub client: reqwest::Client,
    pub policy: Policy,
    /// The instant the run must be over by, from `policy.run_deadline` at creation.
    pub deadline: Option<Instant>,
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
            .user_agent(concat!("llm-consensus/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let deadline = policy.run_deadline.map(|d| Instant::now() + d);
        Ok(Transport {
            client,
            policy,
            deadline,
        })
    }

    /// Time left before the run deadline; None when there is no deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the run deadline has passed.
    pub fn expired(&self) -> bool {
        self.time_left().is_some_and(|left| left.is_zero())
    }

    /// How long the next attempt may take: the call timeout, capped by the run deadline.
    pub fn attempt_budget(&self) -> Duration {
        match self.time_left() {
            Some(left) => left.min(self.policy.call_timeout),
            None => self.policy.call_timeout,
        }
    }

    fn deadline_error(&self) -> ProviderError {
        ProviderError::new(
            ErrorKind::Timeout,
            format!(
                "the run deadline of {} passed",
                human_duration(self.policy.run_deadline.unwrap_or_default())
            ),
        )
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent. Each
    /// attempt gets the instant by which it must be done: the call timeout, capped by the
    /// run deadline. A wait the provider asks for that is longer than [`MAX_RETRY_AFTER`]
    /// or than the time left ends the call instead. `on_retry` hears of each retry before
    /// its wait.
    pub async fn with_retries<F, Fut>(
        &self,
        mut attempt: F,
        mut on_retry: impl FnMut(&Retry<'_>),
    ) -> Outcome
    where
        F: FnMut(Instant) -> Fut,
        Fut: Future<Output = Result<Completion, ProviderError>>,
    {
        let mut attempts = 0;
        let done = |result, attempts| Outcome {
            result,
            attempts,
            reported_ms: None,
        };
        loop {
            if self.expired() {
                let e = self.deadline_error();
                return done(Err(e), attempts.max(1));
            }
            attempts += 1;
            let budget = self.attempt_budget();
            let deadline = Instant::now() + budget;
            let result = match tokio::time::timeout(budget, attempt(deadline)).await {
                Ok(Err(mut e)) if e.kind == ErrorKind::Timeout && e.message == IDLE_TIMEOUT => {
                    e.message = format!(
                        "no data from the provider for {} (raise --timeout)",
                        human_duration(self.policy.idle_timeout)
                    );
                    Err(e)
                }
                Ok(result) => result,
                Err(_) if budget < self.policy.call_timeout => Err(self.deadline_error()),
                Err(_) => Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no complete answer within {} (raise --timeout)",
                        human_duration(self.policy.call_timeout)
                    ),
                )),
            };
            match result {
                Err(mut e) if e.kind.retryable() && attempts <= self.policy.retries => {
                    let delay = match e.retry_after {
                        Some(asked) if asked > MAX_RETRY_AFTER => {
                            e.message.push_str(&format!(
                                " (not retried: the provider asked to wait {}, more than {})",
                                human_duration(asked),
                                human_duration(MAX_RETRY_AFTER)
                            ));
                            return done(Err(e), attempts);
                        }
                        Some(asked) => asked,
                        None => backoff(&self.policy, attempts),
                    };
                    if self.time_left().is_some_and(|left| left <= delay) {
                        e.message.push_str(&format!(
                            " (not retried: waiting {} would pass the run deadline)",
                            human_duration(delay)
                        ));
                        return done(Err(e), attempts);
                    }
                    on_retry(&Retry {
                        attempt: attempts,
                        delay,
                        asked: e.retry_after.is_some(),
                        reason: &e.message,
                    });
                    tokio::time::sleep(delay).await;
                }
                result => return done(result, attempts),
            }
        }
    }
}

/// Exponential backoff with jitter in [0.75, 1.0] of the step.
pub fn backoff(policy: &Policy, attempt: u32) -> Duration {
    let step = policy
        .base_backoff
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(policy.max_backoff);
    let nanos =
        Instant::now().elapsed().as_nanos() as u64 ^ u64::from(attempt).wrapping_mul(0x9e37_79b9);
    let jitter = 0.75 + 0.25 * ((nanos % 1000) as f64 / 1000.0);
    step.mul_f64(jitter)
}

/// The wait a response asks for: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    http_date_from_now(value)
}

/// Seconds from now until an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`); zero when past.
fn http_date_from_now(value: &str) -> Option<Duration> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let at = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs((at - now).max(0) as u64))
}

/// The message of a read that found no data within the idle timeout; [`Transport::with_retries`]
/// replaces it with one that names the limit.
const IDLE_TIMEOUT: &str = "timed out waiting for the provider";

/// Classifies a failed reqwest operation.
pub fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::new(ErrorKind::Timeout, IDLE_TIMEOUT)
    } else if e.is_connect() {
        ProviderError::new(
            ErrorKind::Network,
            format!("could not connect: {}", root_cause(e)),
        )
    } else {
        ProviderError::new(
            ErrorKind::Network,
            format!("connection failed: {}", root_cause(e)),
        )
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
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

/// A response body, read with the idle timeout and the size cap.
pub async fn read_body(response: &mut reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(response).await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
    }
    Ok(body)
}

pub fn too_large() -> ProviderError {
    ProviderError::new(
        ErrorKind::Malformed,
        format!(
            "response larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
    )
}

/// The next piece of a body; None at its end.
pub async fn next_chunk(
    response: &mut reqwest::Response,
) -> Result<Option<bytes::Bytes>, ProviderError> {
    response.chunk().await.map_err(|e| {
        let mut err = transport_error(&e);
        if !e.is_timeout() {
            err.message = format!("the response broke off: {}", root_cause(&e));
        }
        err
    })
}

/// Text of a body for an error message: one line, bounded.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Server-sent events framing: feed bytes, get complete events.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// Whether a JSON object written as plain lines between events is an event too.
    bare_json: bool,
    gathering: Option<BareJson>,
}

/// A JSON object arriving line by line outside any `data:` field; complete when its
/// braces and brackets balance (those inside strings do not count).
#[derive(Default)]
struct BareJson {
    text: String,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl BareJson {
    fn push(&mut self, line: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        for c in line.chars() {
            if self.in_string {
                match c {
                    _ if self.escaped => self.escaped = false,
                    '\\' => self.escaped = true,
                    '"' => self.in_string = false,
                    _ => {}
                }
            } else {
                match c {
                    '"' => self.in_string = true,
                    '{' | '[' => self.depth += 1,
                    '}' | ']' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
    }
}

/// One server-sent event.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseParser {
    /// A parser that also takes a JSON object written as plain lines between events (not
    /// in a `data:` field, possibly over several lines) as one event. Google's API sends an
    /// error inside a stream that way; its SDK gathers the lines until the braces balance.
    pub fn with_bare_json() -> SseParser {
        SseParser {
            bare_json: true,
            ..SseParser::default()
        }
    }

    /// Adds bytes; returns the events they complete. Invalid UTF-8 in a line is an error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, ProviderError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| {
                ProviderError::new(ErrorKind::Malformed, "the event stream is not valid UTF-8")
            })?;
            self.line(&line, &mut events);
        }
        let gathered = self.gathering.as_ref().map_or(0, |g| g.text.len());
        if self.buf.len() + gathered > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(events)
    }

    /// Flushes what is left open when the stream ends: an event without its blank line,
    /// or an unfinished bare JSON object (which then fails to parse, naming the problem).
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if !self.buf.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            self.line(rest.trim_end_matches('\r'), &mut events);
        }
        if let Some(data) = self.data.take() {
            events.push(SseEvent {
                event: self.event.take(),
                data,
            });
        }
        if let Some(json) = self.gathering.take() {
            events.push(SseEvent {
                event: None,
                data: json.text,
            });
        }
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        let bare = self.bare_json && self.data.is_none() && line.trim_start().starts_with('{');
        if self.gathering.is_some() || bare {
            let json = self.gathering.get_or_insert_with(BareJson::default);
            json.push(line);
            if json.depth == 0 && !json.in_string {
                let json = self.gathering.take().unwrap_or_default();
                events.push(SseEvent {
                    event: None,
                    data: json.text,
                });
            }
            return;
        }
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            } else {
                self.event = None;
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }
}

/// Sends a request. A non-success status becomes the error `classify(status, body)`,
/// with the wait the response asks for and the `x-should-retry` override applied.
/// Where a request carries its API key.
#[derive(Clone, Copy, Debug)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key alone in a header of this name (`x-api-key`, `x-goog-api-key`, `api-key`).
    Named(&'static str),
}

impl Transport {
    /// A POST of `body` as JSON to `url`, with the key (when there is one) where the
    /// provider expects it, and the provider's extra headers.
    pub fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        key: Option<&Secret>,
        key_header: KeyHeader,
        headers: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            builder = match key_header {
                KeyHeader::Bearer => builder.bearer_auth(key.expose()),
                KeyHeader::Named(name) => builder.header(name, key.expose()),
            };
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder
    }
}

pub async fn send(
    builder: reqwest::RequestBuilder,
    classify: impl FnOnce(u16, &[u8]) -> ProviderError,
) -> Result<reqwest::Response, ProviderError> {
    let mut response = builder.send().await.map_err(|e| transport_error(&e))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let asked = retry_after(response.headers());
    let should_retry = response
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().eq_ignore_ascii_case("true"));
    let body = read_body(&mut response).await.unwrap_or_default();
    let mut err = classify(status, &body);
    if err.status.is_none() {
        err.status = Some(status);
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

/// Parses a body that must be one JSON object; HTML pages, other text and broken JSON
/// are clear failures that quote the start of the body.
pub fn json_object(body: &[u8], content_type: &str) -> Result<serde_json::Value, ProviderError> {
    let trimmed = body.trim_ascii();
    if !trimmed.starts_with(b"{") {
        let what = if content_type.is_empty() {
            "a body without a content type"
        } else {
            content_type
        };
        let shown = if trimmed.is_empty() {
            "(empty)".to_string()
        } else {
            snippet(body)
        };
        return Err(ProviderError::new(
            ErrorKind::Malformed,
            format!("expected a JSON answer, got {what}: {shown}"),
        ));
    }
    serde_json::from_slice(trimmed).map_err(|e| {
        ProviderError::new(
            ErrorKind::Malformed,
            format!("invalid JSON in the response: {e}"),
        )
    })
}

/// Deserializes a JSON value into a wire struct; a mismatch is a malformed response.
pub fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
) -> Result<T, ProviderError> {
    serde_json::from_value(value).map_err(|e| {
        ProviderError::new(
            ErrorKind::Malformed,
            format!("unexpected {what} shape: {e}"),
        )
    })
}

/// Reads a server-sent event stream, giving each event to `on_event` until it returns
/// true (the protocol's end marker) or the body ends.
pub async fn read_sse(
    response: &mut reqwest::Response,
    on_event: impl FnMut(Option<&str>, &str) -> Result<bool, ProviderError>,
) -> Result<(), ProviderError> {
    read_sse_with(response, SseParser::default(), on_event).await
}

/// [`read_sse`] with a parser configured for the protocol.
pub async fn read_sse_with(
    response: &mut reqwest::Response,
    mut parser: SseParser,
    mut on_event: impl FnMut(Option<&str>, &str) -> Result<bool, ProviderError>,
) -> Result<(), ProviderError> {
    while let Some(chunk) = next_chunk(response).await? {
        for event in parser.feed(&chunk)? {
            if on_event(event.event.as_deref(), &event.data)? {
                return Ok(());
            }
        }
    }
    for event in parser.finish() {
        if on_event(event.event.as_deref(), &event.data)? {
            break;
        }
    }
    Ok(())
}

/// Reads a newline-delimited JSON stream, giving each non-empty line to `on_line` until it
/// returns true or the body ends. Lines are split before decoding, so a chunk boundary
/// inside a multi-byte character is harmless; a line that is not UTF-8 is an error.
pub async fn read_ndjson(
    response: &mut reqwest::Response,
    mut on_line: impl FnMut(&str) -> Result<bool, ProviderError>,
) -> Result<(), ProviderError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut line = |raw: &[u8]| -> Result<bool, ProviderError> {
        let text = std::str::from_utf8(raw).map_err(|_| {
            ProviderError::new(ErrorKind::Malformed, "the stream is not valid UTF-8")
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(false);
        }
        on_line(text)
    };
    while let Some(chunk) = next_chunk(response).await? {
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=pos).collect();
            if line(&raw)? {
                return Ok(());
            }
        }
        if buf.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
    }
    if !buf.is_empty() {
        line(&buf)?;
    }
    Ok(())
}

/// Fails when an answer being collected has grown past the cap.
pub fn check_answer_size(text: &str) -> Result<(), ProviderError> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(ProviderError::new(
            ErrorKind::Malformed,
            format!(
                "the answer is longer than {} MiB",
                MAX_ANSWER_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(())
}

/// Percent-encodes what cannot stand in a URL path segment or query value.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn human_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_framing_follows_the_spec() {
        let mut p = SseParser::default();
        let mut events = p
            .feed(b": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: error\ndata:x\ndata: y\n")
            .unwrap();
        assert_eq!(
            events.remove(0),
            SseEvent {
                event: None,
                data: "{\"a\":1}".into()
            }
        );
        assert!(events.is_empty());
        let events = p.feed(b"\n").unwrap();
        assert_eq!(
            events,
            vec![SseEvent {
                event: Some("error".into()),
                data: "x\ny".into()
            }]
        );
    }

    #[test]
    fn a_bare_json_object_over_several_lines_is_one_event() {
        let body = "data: {\"a\":1}\r\n\r\n{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"busy } {[\\\"\",\n    \"details\": []\n  }\n}\n";
        let mut p = SseParser::with_bare_json();
        let mut events = Vec::new();
        // Fed a few bytes at a time, so lines and braces straddle the pieces.
        for piece in body.as_bytes().chunks(5) {
            events.extend(p.feed(piece).unwrap());
        }
        events.extend(p.finish());
        assert_eq!(events.len(), 2, "{events:?}");
        let error: serde_json::Value = serde_json::from_str(&events[1].data).unwrap();
        assert_eq!(error["error"]["message"], "busy } {[\"");
        assert_eq!(error["error"]["code"], 503);

        // Without the option, such lines are unknown fields and ignored, as the spec says.
        let mut p = SseParser::default();
        let mut events = p.feed(body.as_bytes()).unwrap();
        events.extend(p.finish());
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_multibyte_character_split_across_chunks_survives() {
        let mut p = SseParser::default();
        let bytes = "data: é\n\n".as_bytes();
        let mut events = p.feed(&bytes[..7]).unwrap();
        events.extend(p.feed(&bytes[7..]).unwrap());
        assert_eq!(events[0].data, "é");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_micros(150_500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    fn transport(retries: u32, run_deadline: Option<Duration>) -> Transport {
        Transport::new(Policy {
            retries,
            run_deadline,
            ..Policy::default()
        })
        .unwrap()
    }

    fn rate_limited(wait: Duration) -> ProviderError {
        ProviderError::new(ErrorKind::RateLimited, "slow down").with_retry_after(Some(wait))
    }

    fn answer() -> Completion {
        Completion {
            text: "4".into(),
            finish: None,
            usage: Default::default(),
        }
    }

    #[tokio::test]
    async fn retries_wait_as_asked_until_an_answer() {
        let t = transport(2, None);
        let mut calls = 0;
        let mut heard = Vec::new();
        let outcome = t
            .with_retries(
                |_| {
                    calls += 1;
                    let n = calls;
                    async move {
                        if n < 3 {
                            Err(rate_limited(Duration::from_millis(10)))
                        } else {
                            Ok(answer())
                        }
                    }
                },
                |r| heard.push((r.attempt, r.delay, r.asked, r.reason.to_string())),
            )
            .await;
        assert!(outcome.result.is_ok());
        assert_eq!(outcome.attempts, 3);
        let wait = Duration::from_millis(10);
        assert_eq!(
            heard,
            [
                (1, wait, true, "slow down".to_string()),
                (2, wait, true, "slow down".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn no_wait_or_attempt_outlives_the_run_deadline() {
        let t = transport(5, Some(Duration::from_millis(200)));
        let started = Instant::now();
        let outcome = t
            .with_retries(
                |_| async { Err(rate_limited(Duration::from_secs(5))) },
                |_| panic!("not retried"),
            )
            .await;
        assert_eq!(outcome.attempts, 1);
        let e = outcome.result.unwrap_err();
        assert!(e.message.contains("would pass the run deadline"), "{e}");

        let outcome = t
            .with_retries(
                |_| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(answer())
                },
                |_| panic!("not retried"),
            )
            .await;
        let e = outcome.result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.contains("run deadline"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = Policy::default();
        assert!(
            backoff(&p, 1) <= Duration::from_millis(500)
                && backoff(&p, 1) >= Duration::from_millis(375)
        );
        assert!(backoff(&p, 10) <= Duration::from_secs(8));
    }
}
