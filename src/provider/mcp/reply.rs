//! What a tool call comes back with, as an answer or a one-line error.

use rmcp::model::CallToolResult;
use rmcp::service::ClientInitializeError;
use rmcp::transport::streamable_http_client::StreamableHttpError;
use serde_json::Value;

use crate::error::{ErrorKind, ProviderError};
use crate::provider::body::check_answer_size;
use crate::provider::{Completion, Finish, Usage};

/// The seat's answer: the tool's text (or, at `pointer`, the part of its JSON result the
/// answer is in), or the error the tool reported.
pub(super) fn answer(
    tool: &str,
    pointer: Option<&str>,
    result: CallToolResult,
) -> Result<Completion, ProviderError> {
    let mut text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error == Some(true) {
        let message = first_line(&text).unwrap_or_else(|| "no message".to_string());
        return Err(ProviderError::new(
            ErrorKind::Program,
            format!("the tool `{tool}` returned an error: {message}"),
        ));
    }
    let structured = result.structured_content.filter(|v| !v.is_null());
    if let Some(pointer) = pointer {
        text = pointed(tool, pointer, structured, &text)?;
    } else if text.trim().is_empty()
        && let Some(structured) = structured
    {
        text = structured.to_string();
    }
    let text = text.trim_end().to_string();
    if text.trim().is_empty() {
        return Err(ProviderError::new(
            ErrorKind::Malformed,
            format!("the tool `{tool}` returned no text"),
        ));
    }
    check_answer_size(&text)?;
    Ok(Completion {
        text,
        finish: Some(Finish::Stop),
        usage: Usage::default(),
    })
}

/// The answer at `pointer` in the structured result, else in the text read as JSON: a
/// string as it is, any other value as JSON.
fn pointed(
    tool: &str,
    pointer: &str,
    structured: Option<Value>,
    text: &str,
) -> Result<String, ProviderError> {
    let malformed = |why: String| {
        ProviderError::new(
            ErrorKind::Malformed,
            format!("the result of `{tool}` {why} (result_pointer = \"{pointer}\")"),
        )
    };
    let json = match structured {
        Some(value) => value,
        None => {
            serde_json::from_str::<Value>(text).map_err(|_| malformed("is not JSON".to_string()))?
        }
    };
    match json.pointer(pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Err(malformed(format!("has nothing at {pointer}"))),
        Some(other) => Ok(other.to_string()),
    }
}

/// Why a handshake failed: for a transport error, what the transport says (not its type).
pub(super) fn handshake_error(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::TransportError { error, .. } => causes(&*error.error),
        other => other.to_string(),
    }
}

/// An error and its causes on one line, each cause once (many errors quote their source).
pub(super) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    // The HTTP client's error is not given as a source: its causes say what went wrong.
    if let Some(StreamableHttpError::Client(e)) =
        error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return causes(e);
    }
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

/// The first non-empty line of `text`, trimmed and cut at 300 characters.
pub(super) fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}
