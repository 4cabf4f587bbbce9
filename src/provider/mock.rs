//! The scripted provider: no network, answers from a script. The r-th call of a seat
//! returns `script[min(r, len-1)]`, the semantics of the recorded reference runs.

use std::time::Duration;

use serde::Deserialize;

use super::{Completion, Finish, Outcome, Usage};
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

    pub async fn complete(&self, call_index: usize) -> Outcome {
        let step = self.step(call_index);
        if self.sleep && step.ms > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(step.ms / 1000.0)).await;
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
        }
    }
}
