//! Errors that callers branch on.

use std::time::Duration;

use thiserror::Error;

use crate::usage::Usage;

/// A usage or configuration problem: nothing was sent, exit code 2.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

/// How a failed provider call failed, which decides whether it is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad or missing credentials, or no permission (401, 403).
    Auth,
    /// The request itself is wrong (400, 404, 413, 422): repeating it cannot help.
    Rejected,
    /// Out of credits, spend limit or per-day quota: repeating it cannot help.
    Quota,
    /// Rate limited (429): retry after the delay the provider asks for.
    RateLimited,
    /// The provider failed or is overloaded (5xx, 529, 408, 409).
    Unavailable,
    /// No answer in time.
    Timeout,
    /// No data within the idle timeout. A read cannot name the limit, so the retry loop
    /// turns it into a [`ErrorKind::Timeout`] whose message does.
    Idle,
    /// Could not connect, or the connection broke.
    Network,
    /// A response that is not what the protocol promises (HTML, bad JSON, truncated stream, no choices).
    Malformed,
    /// The provider refused or filtered the prompt or the answer.
    Refused,
    /// The call was abandoned because the run is stopping.
    Cancelled,
    /// A local program (the command provider) exited with a failure status, or an MCP
    /// tool reported an error.
    Program,
}

impl ErrorKind {
    /// Whether another attempt of the same call may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::Idle
                | ErrorKind::Network
                | ErrorKind::Malformed
        )
    }

    /// Whether later calls of the same seat are pointless too.
    pub fn fatal(self) -> bool {
        matches!(
            self,
            ErrorKind::Auth | ErrorKind::Rejected | ErrorKind::Quota
        )
    }
}

/// A failed provider call.
#[derive(Clone, Debug, Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    /// One line naming what happened, with the provider's own message when there is one.
    pub message: String,
    /// How long the provider asked us to wait before trying again.
    pub retry_after: Option<Duration>,
    /// Text the call produced despite failing (scripted panels record it).
    pub output: String,
    /// Tokens the provider reported before the attempt failed (a stream that broke after
    /// its usage): paid for, so counted even though the answer is lost.
    pub usage: Option<Box<Usage>>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind,
            status: None,
            message: message.into(),
            retry_after: None,
            output: String::new(),
            usage: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> ProviderError {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, delay: Option<Duration>) -> ProviderError {
        self.retry_after = delay;
        self
    }

    /// Names the variable to fix when the provider rejected the credentials.
    pub fn hint_key(&mut self, key_env: Option<&str>, key_set: bool) {
        if self.kind != ErrorKind::Auth {
            return;
        }
        match key_env {
            Some(var) if key_set => self.message.push_str(&format!(" (check the key in {var})")),
            Some(var) => self
                .message
                .push_str(&format!(" (no key was sent: set {var})")),
            None => {}
        }
    }
}
