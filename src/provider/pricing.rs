//! Prices in USD per million tokens: a bundled table of list prices for common models of
//! the first-party APIs, overridable per provider or participant in the config. A model
//! that is not in the table is unpriced (`None`), never free.

use serde::{Deserialize, Serialize};

use super::Usage;

/// USD per million input and output tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// The cost of `usage`; None when a count it needs is unknown.
    pub fn cost(&self, usage: &Usage) -> Option<f64> {
        let input = usage.input_tokens?;
        let output = usage.output_tokens?;
        Some((input as f64 * self.input + output as f64 * self.output) / 1e6)
    }

    /// The most `input` and `output` tokens can cost.
    pub fn bound(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input + output as f64 * self.output) / 1e6
    }
}

/// The output tokens a call is assumed to use at most when its seat sets no `max_tokens`.
pub const ASSUMED_MAX_OUTPUT: u64 = 4096;

const fn p(input: f64, output: f64) -> Price {
    Price { input, output }
}

/// List prices (standard tier, prompts up to 200k tokens), by built-in provider and model
/// name. A dated or suffixed model id (`gpt-4o-mini-2024-07-18`) takes the price of the
/// longest name it starts with, followed by `-`.
pub const TABLE: &[(&str, &str, Price)] = &[
    ("openai", "gpt-5", p(1.25, 10.0)),
    ("openai", "gpt-5-mini", p(0.25, 2.0)),
    ("openai", "gpt-5-nano", p(0.05, 0.40)),
    ("openai", "gpt-4.1", p(2.0, 8.0)),
    ("openai", "gpt-4.1-mini", p(0.40, 1.60)),
    ("openai", "gpt-4.1-nano", p(0.10, 0.40)),
    ("openai", "gpt-4o", p(2.50, 10.0)),
    ("openai", "gpt-4o-mini", p(0.15, 0.60)),
    ("openai", "o3", p(2.0, 8.0)),
    ("openai", "o3-mini", p(1.10, 4.40)),
    ("openai", "o4-mini", p(1.10, 4.40)),
    ("anthropic", "claude-opus-4-1", p(15.0, 75.0)),
    ("anthropic", "claude-opus-4", p(15.0, 75.0)),
    ("anthropic", "claude-sonnet-4-5", p(3.0, 15.0)),
    ("anthropic", "claude-sonnet-4", p(3.0, 15.0)),
    ("anthropic", "claude-3-7-sonnet", p(3.0, 15.0)),
    ("anthropic", "claude-haiku-4-5", p(1.0, 5.0)),
    ("anthropic", "claude-3-5-haiku", p(0.80, 4.0)),
    ("gemini", "gemini-2.5-pro", p(1.25, 10.0)),
    ("gemini", "gemini-2.5-flash", p(0.30, 2.50)),
    ("gemini", "gemini-2.5-flash-lite", p(0.10, 0.40)),
    ("gemini", "gemini-2.0-flash", p(0.10, 0.40)),
    ("gemini", "gemini-2.0-flash-lite", p(0.075, 0.30)),
    ("groq", "llama-3.3-70b-versatile", p(0.59, 0.79)),
    ("groq", "llama-3.1-8b-instant", p(0.05, 0.08)),
];

/// The bundled price of `model` at built-in provider `provider`.
pub fn lookup(provider: &str, model: &str) -> Option<Price> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    TABLE
        .iter()
        .filter(|(p, name, _)| {
            *p == provider
                && (model == *name
                    || model
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('-')))
        })
        .max_by_key(|(_, name, _)| name.len())
        .map(|(_, _, price)| *price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_name_wins_and_unknown_is_unpriced() {
        assert_eq!(
            lookup("openai", "gpt-4o-mini-2024-07-18"),
            Some(p(0.15, 0.60))
        );
        assert_eq!(lookup("openai", "gpt-4o"), Some(p(2.50, 10.0)));
        assert_eq!(
            lookup("gemini", "models/gemini-2.5-flash"),
            Some(p(0.30, 2.50))
        );
        assert_eq!(lookup("openai", "gpt-4omni"), None);
        assert_eq!(lookup("openrouter", "gpt-4o"), None);
        assert_eq!(lookup("ollama", "llama3.2"), None);
    }

    #[test]
    fn cost_needs_both_counts() {
        let price = p(1.0, 2.0);
        let usage = Usage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(500_000),
            ..Usage::default()
        };
        assert_eq!(price.cost(&usage), Some(2.0));
        assert_eq!(price.cost(&Usage::default()), None);
    }
}
