//! The scripted provider: no network, answers from a script. The r-th call of a seat
//! returns `script[min(r, len-1)]`, the semantics of the recorded reference runs.

use std::time::Duration;

use serde::Deserialize;

use super::http::human_duration;
use super::{Completion, Finish, Outcome, Transport, Usage};
use crate::error::{ErrorKind, ProviderError};

/// One scripted call.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub output: String,
    /// A failed call when false; its output is still what the hanzo strategy records.
    #[serde(default = "yes")]
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// The latency the call reports, in milliseconds.
    #[serde(default)]
    pub ms: f64,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Step {
    pub fn answer(output: impl Into<String>) -> Step {
        Step {
            output: output.into(),
            ok: true,
            error: None,
            ms: 0.0,
            input_tokens: None,
            output_tokens: None,
        }
    }
}

/// A seat's script.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub steps: Vec<Step>,
    /// Really wait `ms` before answering (otherwise the latency is only reported).
    pub sleep: bool,
}

impl Script {
    pub fn step(&self, call_index: usize) -> &Step {
        &self.steps[call_index.min(self.steps.len() - 1)]
    }

    /// The scripted call. With `sleep`, it really takes `ms`; like any call it is stopped
    /// by the call timeout (so `ms = inf` is a call that times out, not a crash).
    pub async fn complete(&self, transport: &Transport, call_index: usize) -> Outcome {
        let step = self.step(call_index);
        if self.sleep && step.ms > 0.0 {
            let limit = transport.clock.policy.call_timeout;
            match Duration::try_from_secs_f64(step.ms / 1000.0) {
                Ok(wait) if wait <= limit => tokio::time::sleep(wait).await,
                _ => {
                    tokio::time::sleep(limit).await;
                    let e = ProviderError::new(
                        ErrorKind::Timeout,
                        format!(
                            "no complete answer within {} (raise --timeout)",
                            human_duration(limit)
                        ),
                    );
                    return Outcome {
                        result: Err(e),
                        attempts: 1,
                        reported_ms: Some(step.ms),
                        failed_usage: Usage::default(),
                    };
                }
            }
        }
        let result = if step.ok {
            Ok(Completion {
                text: step.output.clone(),
                finish: Some(Finish::Stop),
                usage: Usage {
                    input_tokens: step.input_tokens,
                    output_tokens: step.output_tokens,
                    ..Usage::default()
                },
            })
        } else {
            let mut e = ProviderError::new(
                ErrorKind::Unavailable,
                step.error
                    .clone()
                    .unwrap_or_else(|| "scripted failure".to_string()),
            );
            e.output = step.output.clone();
            Err(e)
        };
        Outcome {
            result,
            attempts: 1,
            reported_ms: Some(step.ms),
            failed_usage: Usage::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::Policy;

    #[tokio::test]
    async fn an_endless_scripted_call_times_out() {
        let transport = Transport::new(Policy {
            call_timeout: Duration::from_millis(20),
            ..Policy::default()
        })
        .unwrap();
        for ms in [f64::INFINITY, 1e300, 60_000.0] {
            let script = Script {
                steps: vec![Step {
                    ms,
                    ..Step::answer("4")
                }],
                sleep: true,
            };
            let outcome = script.complete(&transport, 0).await;
            let e = outcome.result.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Timeout, "{ms}");
        }
    }
}
