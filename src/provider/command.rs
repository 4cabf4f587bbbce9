//! Any local program as a provider: the prompt goes to its standard input, or into its
//! arguments where one contains `{prompt}`; it is also in the environment
//! ([`PROMPT_VAR`], [`SYSTEM_VAR`], [`MODEL_VAR`]), the safe way to hand it to a shell.
//! The answer is its standard output. A non-zero exit or a timeout is a failed call whose
//! error is the last line of standard error. Calls are not retried: a program does its
//! own retrying.
//!
//! The program runs in its own process group, and the whole group is killed when the call
//! ends, times out or is abandoned (Ctrl-C): a wrapper's children make no calls after.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::body::{MAX_ANSWER_BYTES, check_answer_size};
use super::http::human_duration;
use super::{ChatRequest, Completion, Finish, Outcome, Transport, Usage};
use crate::error::{ErrorKind, ProviderError};

/// The environment variable that holds the prompt.
pub const PROMPT_VAR: &str = "LLM_CONSENSUS_PROMPT";
/// The environment variable that holds the system prompt (empty when there is none).
pub const SYSTEM_VAR: &str = "LLM_CONSENSUS_SYSTEM";
/// The environment variable that holds the model name.
pub const MODEL_VAR: &str = "LLM_CONSENSUS_MODEL";
/// The longest value put in one environment variable: Linux refuses to start a program
/// with a longer one (`MAX_ARG_STRLEN`, 128 KiB), so a longer prompt is not in the
/// environment, and a command that names the variable fails with a clear message.
pub const MAX_ENV_VALUE: usize = 128 * 1024 - 64;

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

    /// The variables set for the program: each of [`PROMPT_VAR`], [`SYSTEM_VAR`] and
    /// [`MODEL_VAR`] that fits in [`MAX_ENV_VALUE`]. A value too long is an error when
    /// the arguments name its variable (the program would read an empty prompt).
    pub fn env(&self, request: &ChatRequest) -> Result<Vec<(&'static str, String)>, ProviderError> {
        let values = [
            (PROMPT_VAR, request.user.to_string()),
            (
                SYSTEM_VAR,
                request.system.as_deref().unwrap_or("").to_string(),
            ),
            (MODEL_VAR, request.model.clone()),
        ];
        let mut vars = Vec::new();
        for (name, value) in values {
            if value.len() <= MAX_ENV_VALUE {
                vars.push((name, value));
            } else if self.argv.iter().any(|a| a.contains(name)) {
                return Err(ProviderError::new(
                    ErrorKind::Rejected,
                    format!(
                        "the value of {name} is {} KiB, more than an environment variable can hold ({} KiB): read the prompt from standard input instead",
                        value.len() / 1024,
                        MAX_ENV_VALUE / 1024
                    ),
                ));
            }
        }
        Ok(vars)
    }

    /// One call, bounded by the call timeout and the run deadline.
    pub async fn complete(&self, transport: &Transport, request: &ChatRequest) -> Outcome {
        let budget = transport.clock.attempt_budget();
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
            failed_usage: Usage::default(),
        }
    }

    async fn run(
        &self,
        request: &ChatRequest,
        budget: Duration,
    ) -> Result<Completion, ProviderError> {
        let args = self.args(request);
        let env = self.env(request)?;
        let (mut child, program) = group::spawn(&args, |c| {
            c.envs(env);
        })
        .map_err(|e| e.with_program(|p| format!("cannot run `{p}`")))?;
        // Declared after `child`, so dropped before it: the group dies first.
        let _group = group::Guard::new(child.id());
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
        check_answer_size(&text)?;
        Ok(Completion {
            text,
            finish: Some(Finish::Stop),
            usage: Usage::default(),
        })
    }
}

/// The process groups of the programs running now (commands and MCP servers), so that
/// each can be killed with all its descendants.
pub(super) mod group {
    use std::process::Stdio;
    use std::sync::Mutex;

    use crate::error::{ErrorKind, ProviderError};

    /// Why a program could not be started: its name and the error, or an empty command.
    pub enum SpawnError {
        Empty,
        Failed(String, std::io::Error),
    }

    impl SpawnError {
        /// The provider error, `what` naming the program (`cannot run `x``).
        pub fn with_program(self, what: impl Fn(&str) -> String) -> ProviderError {
            match self {
                SpawnError::Empty => ProviderError::new(
                    ErrorKind::Rejected,
                    "the command is empty: set command = [\"program\", \"arg\", ...]",
                ),
                SpawnError::Failed(program, e) => {
                    ProviderError::new(ErrorKind::Rejected, format!("{}: {e}", what(&program)))
                }
            }
        }
    }

    /// Starts `argv` with piped standard streams, killed on drop, in a process group of
    /// its own, so that the whole group can be killed (and a terminal's Ctrl-C reaches
    /// only us: we decide when it stops). `setup` adds what the caller needs.
    pub fn spawn(
        argv: &[String],
        setup: impl FnOnce(&mut tokio::process::Command),
    ) -> Result<(tokio::process::Child, String), SpawnError> {
        let Some((program, rest)) = argv.split_first() else {
            return Err(SpawnError::Empty);
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        setup(&mut command);
        match command.spawn() {
            Ok(child) => Ok((child, program.clone())),
            Err(e) => Err(SpawnError::Failed(program.clone(), e)),
        }
    }

    /// Groups alive now, for [`stop_all`].
    static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    /// Kills the process group led by a child when dropped: the call ended, timed out or
    /// was abandoned.
    pub struct Guard(Option<u32>);

    impl Guard {
        pub fn new(pid: Option<u32>) -> Guard {
            if let Some(pid) = pid {
                LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
            }
            Guard(pid)
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                kill(pid);
                LIVE.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|&p| p != pid);
            }
        }
    }

    /// Kills every running program's group: for an exit that skips destructors.
    pub fn stop_all() {
        let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
        for pid in live {
            kill(pid);
        }
    }

    #[cfg(unix)]
    fn kill(pid: u32) {
        use rustix::process::{Pid, Signal, kill_process_group};
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            // Gone already is fine.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }

    #[cfg(not(unix))]
    fn kill(_pid: u32) {}
}

/// Kills the process groups of all command providers and MCP servers still running. Call
/// it before an exit that skips destructors (`std::process::exit` on a second Ctrl-C).
pub fn stop_all() {
    group::stop_all();
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
            seed: None,
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
