//! An MCP server started as a program: in its own process group, killed with the group
//! when the session ends, its standard error kept for the message of a failure.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use super::reply::first_line;
use crate::error::ProviderError;
use crate::provider::command::group;

/// A server started as a program. The group guard comes first, so that it is dropped
/// first: the whole group is killed, then the child is reaped.
pub(super) struct Process {
    _group: group::Guard,
    pub(super) child: tokio::process::Child,
    pub(super) program: String,
    /// The last line the server wrote to standard error, for the message of a failure.
    last_line: Arc<StdMutex<String>>,
    stderr: JoinHandle<()>,
}

impl Process {
    pub(super) fn start(argv: &[String]) -> Result<Process, ProviderError> {
        let (mut child, program) = group::spawn(argv, |_| {})
            .map_err(|e| e.with_program(|p| format!("cannot start the MCP server `{p}`")))?;
        let group = group::Guard::new(child.id());
        let last_line = Arc::new(StdMutex::new(String::new()));
        let stderr = tokio::spawn(keep_last_line(child.stderr.take(), Arc::clone(&last_line)));
        Ok(Process {
            _group: group,
            child,
            program,
            last_line,
            stderr,
        })
    }

    /// `why`, with the program's exit status and last line of standard error when it has
    /// ended (it is given a moment to).
    pub(super) async fn ended(mut self, why: &str) -> String {
        let moment = Duration::from_millis(500);
        let status = tokio::time::timeout(moment, self.child.wait()).await;
        let _ = tokio::time::timeout(moment, &mut self.stderr).await;
        let last = self
            .last_line
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let program = &self.program;
        let how = match status {
            Ok(Ok(status)) => match status.code() {
                Some(code) => format!("`{program}` exited (exit status {code})"),
                None => format!("`{program}` was killed by a signal"),
            },
            _ => return format!("`{program}`: {why}"),
        };
        if last.is_empty() {
            format!("{how}: {why}")
        } else {
            format!("{how}: {last}")
        }
    }
}

/// Reads the server's standard error to its end, keeping its last non-empty line (the
/// server's own messages are not ours to print).
async fn keep_last_line(pipe: Option<impl AsyncRead + Unpin>, last: Arc<StdMutex<String>>) {
    let Some(pipe) = pipe else { return };
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(line) = first_line(&line) {
            *last.lock().unwrap_or_else(|e| e.into_inner()) = line;
        }
    }
}
