//! Any local program as a provider: the prompt goes to its standard input, or into its
//! arguments where one contains `{prompt}`; the answer is its standard output. A non-zero
//! exit or a timeout is a failed call whose error is the last line of standard error.
//! Calls are not retried: a program does its own retrying.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::http::{self, MAX_ANSWER_BYTES, human_duration};
use super::{ChatRequest, Completion, Finish, Outcome, Transport, Usage};
use crate::error::{ErrorKind, ProviderError};

/// A program and its arguments, with `{prompt}`, `{system}` and `{model}` placeholders.
#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    pub argv: Vec<String>,
}

impl Program {
    /// Whether the prompt travels in the arguments instead of standard input.
    fn prompt_in_args(&self) -> bool {
        self.argv.iter().any(|a| a.contains("{prompt}"))
    }

    /// The arguments with placeholders filled in.
    pub fn args(&self, request: &ChatRequest) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| {
                a.replace("{model}", &request.model)
                    .replace("{system}", request.system.as_deref().unwrap_or(""))
                    .replace("{prompt}", &request.user)
            })
            .collect()
    }

    /// What goes to standard input: the prompt (after the system prompt, unless the
    /// arguments take it), or nothing when the arguments carry the prompt.
    pub fn stdin(&self, request: &ChatRequest) -> String {
        if self.prompt_in_args() {
            return String::new();
        }
        let system_in_args = self.argv.iter().any(|a| a.contains("{system}"));
        match &request.system {
            Some(system) if !system_in_args => format!("{system}\n\n{}", request.user),
            _ => request.user.to_string(),
        }
    }

    /// One call, bounded by the call timeout and the run deadline.
    pub async fn complete(&self, transport: &Transport, request: &ChatRequest) -> Outcome {
        let budget = transport.attempt_budget();
        let result = if budget.is_zero() {
            Err(ProviderError::new(
                ErrorKind::Timeout,
                "the run deadline passed before the program was started",
            ))
        } else {
            self.run(request, budget).await
        };
        Outcome {
            result: result.map_err(|mut e| {
                e.message = format!("{}: {}", self.name, e.message);
                e
            }),
            attempts: 1,
            reported_ms: None,
        }
    }

    async fn run(
        &self,
        request: &ChatRequest,
        budget: Duration,
    ) -> Result<Completion, ProviderError> {
        let args = self.args(request);
        let Some((program, rest)) = args.split_first() else {
            return Err(ProviderError::new(
                ErrorKind::Rejected,
                "the command is empty: set command = [\"program\", \"arg\", ...]",
            ));
        };
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ProviderError::new(ErrorKind::Rejected, format!("cannot run `{program}`: {e}"))
            })?;
        let input = self.stdin(request);
        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            let write = async {
                if let Some(mut pipe) = stdin.take() {
                    // A program that does not read its input closes the pipe: not an error.
                    let _ = pipe.write_all(input.as_bytes()).await;
                    let _ = pipe.shutdown().await;
                }
            };
            let (_, out, err, status) = tokio::join!(
                write,
                read_capped(stdout),
                read_capped(stderr),
                child.wait()
            );
            (out, err, status)
        };
        let finished = tokio::time::timeout(budget, work).await;
        let (out, err, status) = match finished {
            Ok(done) => done,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "`{program}` gave no answer within {} and was stopped",
                        human_duration(budget)
                    ),
                ));
            }
        };
        let status = status.map_err(|e| {
            ProviderError::new(ErrorKind::Network, format!("waiting for `{program}`: {e}"))
        })?;
        let (out, out_too_long) = out;
        let (err, _) = err;
        if !status.success() {
            let last = String::from_utf8_lossy(&err)
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(|l| l.chars().take(300).collect::<String>())
                .unwrap_or_else(|| "no message on standard error".to_string());
            let how = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_string(),
            };
            return Err(ProviderError::new(
                ErrorKind::Program,
                format!("`{program}` failed ({how}): {last}"),
            ));
        }
        if out_too_long {
            return Err(ProviderError::new(
                ErrorKind::Malformed,
                format!(
                    "`{program}` wrote more than {} MiB",
                    MAX_ANSWER_BYTES / (1024 * 1024)
                ),
            ));
        }
        let text = String::from_utf8(out).map_err(|_| {
            ProviderError::new(
                ErrorKind::Malformed,
                format!("`{program}` wrote output that is not UTF-8"),
            )
        })?;
        let text = text.trim_end().to_string();
        if text.trim().is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Malformed,
                format!("`{program}` exited successfully but wrote nothing"),
            ));
        }
        http::check_answer_size(&text)?;
        Ok(Completion {
            text,
            finish: Some(Finish::Stop),
            usage: Usage::default(),
        })
    }
}

/// Reads a pipe to its end, keeping at most the answer cap (the rest is drained so that
/// the program is not blocked on a full pipe). Returns the bytes and whether some were cut.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut cut = false;
    let Some(mut pipe) = pipe else {
        return (kept, cut);
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_ANSWER_BYTES + 1 - kept.len().min(MAX_ANSWER_BYTES + 1);
                if n > room {
                    cut = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    let cut = cut || kept.len() > MAX_ANSWER_BYTES;
    (kept, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m1".into(),
            system: Some("Be terse.".into()),
            user: "2+2?".into(),
            temperature: None,
            max_tokens: None,
        }
    }

    #[test]
    fn prompt_goes_to_stdin_unless_an_argument_takes_it() {
        let p = Program {
            name: "cmd".into(),
            argv: vec!["llm".into(), "-m".into(), "{model}".into()],
        };
        assert_eq!(p.args(&request()), ["llm", "-m", "m1"]);
        assert_eq!(p.stdin(&request()), "Be terse.\n\n2+2?");
        let p = Program {
            name: "cmd".into(),
            argv: vec!["ask".into(), "--system={system}".into(), "{prompt}".into()],
        };
        assert_eq!(p.args(&request()), ["ask", "--system=Be terse.", "2+2?"]);
        assert_eq!(p.stdin(&request()), "");
    }
}
