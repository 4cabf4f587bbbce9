//! The config file's schema: what `providers.toml` may say. Unknown keys are errors
//! (with their line), and every number is range-checked when it is resolved
//! ([`super::limits`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::provider::mock::Step;
use crate::provider::openai::MaxTokensField;
use crate::provider::pricing::Price;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub consensus: ConsensusSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub participants: Vec<ParticipantSection>,
    #[serde(default)]
    pub log: LogSection,
}

/// `[log]`: the run log (docs/log.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// false: no run is logged (as `--no-log`).
    pub enabled: Option<bool>,
    /// The database file (under `$LLM_CONSENSUS_LOG_DB`, over the XDG data directory).
    pub path: Option<std::path::PathBuf>,
}

/// `[consensus]`: run defaults that flags override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    pub strategy: Option<String>,
    pub rounds: Option<usize>,
    pub k: Option<usize>,
    pub alpha: Option<f64>,
    pub beta_1: Option<f64>,
    pub beta_2: Option<f64>,
    pub seed: Option<u64>,
    pub quorum: Option<usize>,
    pub answer: Option<String>,
    pub similarity: Option<String>,
    pub tolerance: Option<f64>,
    pub quorum_share: Option<String>,
    pub rule: Option<String>,
    pub faults: Option<usize>,
    pub synthesize: Option<String>,
    pub confidence: Option<bool>,
    pub system: Option<String>,
    /// Seconds per call.
    pub timeout: Option<f64>,
    pub retries: Option<u32>,
    /// Seconds the whole run may take.
    pub deadline: Option<f64>,
    /// Seconds after which a round closes once the quorum has answered.
    pub round_timeout: Option<f64>,
    /// USD the run may cost at most (`--max-cost`).
    pub max_cost: Option<f64>,
    /// A weights file (`--weights`); relative to the config file.
    pub weights: Option<std::path::PathBuf>,
}

/// `[providers.NAME]`: a wire protocol, an endpoint and where its key comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub stream: Option<bool>,
    pub max_tokens_field: Option<MaxTokensField>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Azure OpenAI: the dated API version (without it, the `/openai/v1` API is used).
    pub api_version: Option<String>,
    /// Calls to this provider in flight at once, across all of its seats.
    pub max_concurrency: Option<usize>,
    /// kind = "command": the program and its arguments (`{prompt}`, `{system}`, `{model}`).
    /// kind = "mcp": the MCP server to start, speaking on standard input and output.
    pub command: Option<Vec<String>>,
    /// kind = "mcp": the Streamable HTTP endpoint of the MCP server.
    pub url: Option<String>,
    /// kind = "mcp": the tool that answers.
    pub tool: Option<String>,
    /// kind = "mcp": the tool's argument that receives the prompt (default `prompt`).
    pub prompt_argument: Option<String>,
    /// kind = "mcp": the tool's argument that receives the system prompt (by default it
    /// goes before the prompt).
    pub system_argument: Option<String>,
    /// kind = "mcp": arguments sent with every call.
    pub arguments: Option<toml::Table>,
    /// kind = "mcp": where the answer is in a JSON result (a JSON pointer, `/synthesis`).
    pub result_pointer: Option<String>,
    /// USD per million tokens, for every seat of this provider.
    pub price: Option<Price>,
}

/// `[[participants]]`: one or more seats.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSection {
    pub provider: String,
    pub model: Option<String>,
    pub name: Option<String>,
    pub count: Option<usize>,
    pub temperature: Option<f64>,
    pub weight: Option<f64>,
    pub system: Option<String>,
    pub max_tokens: Option<u32>,
    pub script: Option<Vec<Step>>,
    #[serde(default)]
    pub sleep: bool,
    /// USD per million tokens for these seats (over the provider's and the bundled table).
    pub price: Option<Price>,
}
