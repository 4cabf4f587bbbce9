//! Response bodies: reading them within the size cap, and turning their bytes into
//! JSON, wire structs and one-line excerpts for error messages.

use crate::error::{ErrorKind, ProviderError};

/// The most a response body may hold; larger bodies are failed calls, not memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The longest answer text kept; a longer answer is a failed call.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The most characters of a body quoted in an error message.
pub const SNIPPET_CHARS: usize = 200;

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

/// Text of a body for an error message: one line, bounded. Bodies are scrubbed of keys
/// before they get here (see `http::exchange`), so the cut cannot split a key.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = line.chars().take(SNIPPET_CHARS).collect();
    if line.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
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

/// The error object of an error body `{"error": {...}}`; an empty one when the body is
/// anything else, so that the message falls back to an excerpt of the body.
pub fn error_object<E: serde::de::DeserializeOwned + Default>(body: &[u8]) -> E {
    #[derive(serde::Deserialize)]
    struct Envelope<E> {
        error: Option<E>,
    }
    serde_json::from_slice::<Envelope<E>>(body)
        .ok()
        .and_then(|b| b.error)
        .unwrap_or_default()
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

/// Classifies a failed reqwest operation.
pub fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::new(ErrorKind::Idle, "timed out waiting for the provider")
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

pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
