//! Command-line interface: clap derive only, no logic.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::consensus::StrategyKind;

mod batch;
pub use batch::{EvalArgs, EvalSummaryArgs, LearnArgs, LearnFrom};

/// `--strategy`: the engine's names, each with its one-line description (listed in
/// `--help` and completions), parsed by the engine's own `FromStr` so that the engine
/// needs no clap.
fn strategy_parser() -> impl TypedValueParser<Value = StrategyKind> {
    PossibleValuesParser::new(
        StrategyKind::ALL.map(|k| PossibleValue::new(k.name()).help(k.about())),
    )
    .try_map(|name| name.parse::<StrategyKind>())
}

const EXAMPLES: &str = "\
Examples:
  llm-consensus ask --config examples/demo.toml \"What is the capital of France?\"
  llm-consensus ask -m openai:gpt-4o-mini -m groq:llama-3.3-70b-versatile \"Is 1009 prime?\"
  llm-consensus ask -m ollama:llama3.2@3 --answer number \"What is 17 * 23?\"
  echo \"Which sorting algorithm is stable?\" | llm-consensus ask --json | jq .answer
  llm-consensus ask --config panel.toml --expect Canberra \"Capital of Australia?\" --json > result.json

Exit codes: 0 final (and matched, with --expect...), 1 no consensus, 2 usage or configuration
error, 3 too few answers (failed or degraded), 4 the answer did not match --expect...,
130 interrupted.";

const REPLAY_NOTE: &str = "\
Unset flags keep the recorded run's values (the defaults and config keys named above are
`ask`'s; no config file is read). A run in the run log is replayed by its ID, from the log
that `logs path` names.

Examples:
  llm-consensus ask --config panel.toml --transcript run.json \"Is 1009 prime?\"
  llm-consensus replay run.json --beta2 1.0
  llm-consensus replay run.json --strategy vote --json | jq .status
  llm-consensus replay 42 --beta2 0.9";

/// Ask several language models the same question, let them refine against each other,
/// and report whether they agree.
#[derive(Debug, Parser)]
#[command(name = "llm-consensus", version, after_help = EXAMPLES, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask the panel a question and print the decision.
    #[command(after_help = EXAMPLES)]
    Ask(AskArgs),
    /// Show the resolved panel: each seat's provider, kind, endpoint and key variable;
    /// with --check, make one small call per seat.
    Providers(ProvidersArgs),
    /// Re-decide a recorded run offline from its answers (no call is made): the same
    /// parameters give the same decision; other strategies and thresholds where they need
    /// no new call (exit 2 naming the call otherwise). Exit codes as for `ask`.
    #[command(after_help = REPLAY_NOTE)]
    Replay(ReplayArgs),
    /// Run every item of a JSON-lines file through the panel, as `ask` would, and summarize
    /// accuracy, FINAL rate, tokens and cost (README, "Batch evaluation").
    Eval(EvalArgs),
    /// Merge the --out files of `eval` runs (shards, resumed runs) into one summary.
    EvalSummary(EvalSummaryArgs),
    /// Print a shell completion script: bash, zsh, fish, powershell or elvish
    /// (e.g. `llm-consensus completions bash > ~/.local/share/bash-completion/completions/llm-consensus`).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Read the run log: `logs [list] [-n N]`, `logs show ID`, `logs path`.
    Logs(LogsArgs),
    /// Serve the panel over the Model Context Protocol on standard input and output, for
    /// coding agents and chat clients: tools `consensus_ask` and `consensus_providers`
    /// (docs/mcp.md). The flags are the defaults of every call; a call's arguments win.
    Mcp(McpArgs),
    /// Print the manual page (roff): `llm-consensus man | man -l -`; `man ask` for the
    /// page of one command.
    Man {
        /// A command (ask, providers, ...) whose page to print instead of the main one.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recorded run: a file written by `ask --transcript FILE` (or saved `ask --json`),
    /// or the ID of a finished run in the run log (`logs list`).
    #[arg(value_name = "TRANSCRIPT|ID")]
    pub source: PathBuf,

    /// Re-decide with these instead of the recorded run's (--synthesize, and anything that
    /// changes a prompt or asks a call that was not made, is refused).
    #[command(flatten)]
    pub consensus: ConsensusArgs,

    /// With --weights: the weights the file learned for this item category.
    #[arg(long, value_name = "NAME", requires = "weights")]
    pub category: Option<String>,

    /// Print one JSON object, as `ask --json`, with `replayed_from`.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,

    /// Print only the synthesis.
    #[arg(short, long)]
    pub quiet: bool,

    /// Check the replayed answer instead of the recorded run's own `--expect…` check.
    #[command(flatten)]
    pub expect: ExpectArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(subcommand)]
    pub action: Option<LogsAction>,

    /// Config file whose `[log] path` to read, found as for `ask`.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LogsAction {
    /// The latest runs, newest first (the default).
    List {
        /// How many runs.
        #[arg(short = 'n', value_name = "N", default_value_t = 20)]
        n: usize,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One run: its parameters, every call's request and answer, each round's decision.
    Show {
        /// The run's id (from `logs list`).
        #[arg(value_name = "ID")]
        id: i64,
        /// One JSON object, with the run's report.
        #[arg(long)]
        json: bool,
    },
    /// Print where the run log is.
    Path,
}

#[derive(Debug, Args)]
pub struct ProvidersArgs {
    /// A seat: PROVIDER:MODEL, optionally @N (repeatable), as for `ask`.
    #[arg(short = 'm', long = "model", value_name = "PROVIDER:MODEL[@N]")]
    pub models: Vec<String>,

    /// Panel and defaults file (TOML), found as for `ask`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Make one small call per seat, in parallel, and show its latency and tokens or the
    /// exact error; exit 3 when any seat fails.
    #[arg(long)]
    pub check: bool,

    #[command(flatten)]
    pub calls: CallArgs,
}

/// `mcp`: the panel and defaults of every `consensus_ask` call, found as for `ask`.
#[derive(Clone, Debug, Default, Args)]
pub struct McpArgs {
    /// A seat: PROVIDER:MODEL, optionally @N (repeatable), as for `ask`; a call's `models`
    /// replace them.
    #[arg(short = 'm', long = "model", value_name = "PROVIDER:MODEL[@N]")]
    pub models: Vec<String>,

    /// Panel and defaults file (TOML), found as for `ask` (read again at every call).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A system prompt for every seat, unless a call sets `system`. Key `system`.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    #[command(flatten)]
    pub consensus: ConsensusArgs,

    #[command(flatten)]
    pub calls: CallArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Clone, Debug, Default, Args)]
pub struct AskArgs {
    /// The question. Read from standard input when it is `-` or absent and input is piped.
    pub prompt: Option<String>,

    /// A seat: PROVIDER:MODEL, optionally @N for N copies (repeatable). Only the first
    /// colon splits, so `ollama:llama3:8b` keeps its tag. Replaces the config's participants.
    #[arg(short = 'm', long = "model", value_name = "PROVIDER:MODEL[@N]")]
    pub models: Vec<String>,

    /// Panel and defaults file (TOML). Default: $LLM_CONSENSUS_CONFIG, then
    /// $XDG_CONFIG_HOME/llm-consensus/providers.toml (or ~/.config/...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A system prompt for every seat (replaces the default `Final answer:` instruction).
    /// Key `system`.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// With --weights: use the weights the file learned for this item category instead of
    /// its overall ones.
    #[arg(long, value_name = "NAME")]
    pub category: Option<String>,

    /// Print the call plan (seats, rounds, worst-case calls, tokens and cost) and exit 0
    /// without sending anything; with --json as one JSON object. Configuration errors
    /// (a key variable that is not set, too) still exit 2.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub consensus: ConsensusArgs,

    #[command(flatten)]
    pub calls: CallArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub expect: ExpectArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The run log (docs/log.md): every run, call and round in an SQLite database.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Log")]
pub struct LogArgs {
    /// Do not write this run to the run log (config: `[log] enabled = false`).
    #[arg(long, conflicts_with = "cache")]
    pub no_log: bool,

    /// Answer each call whose request (provider, model, parameters, seed, messages) is
    /// identical to a logged successful one from the log: no call, cost 0. The seed is
    /// part of the request: a hit needs the same --seed.
    #[arg(long)]
    pub cache: bool,
}

/// How the panel decides. Unset flags fall back to the config's [consensus] table, whose
/// key for each flag is named in its help ("key `beta_1`"); ranges are in the README.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Consensus")]
pub struct ConsensusArgs {
    /// Decision procedure (docs/strategies.md) [default: metastable]. Key `strategy`.
    #[arg(long, value_name = "NAME", value_parser = strategy_parser())]
    pub strategy: Option<StrategyKind>,

    /// Sampling rounds after the first answers, 0–100 (vote: refinement rounds; leader:
    /// terms) [default: 3; vote: 0]. Key `rounds`.
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,

    /// Peers shown to each participant per round, 1–100 [default: 3]. Key `k`.
    #[arg(short = 'k', long = "k", value_name = "N")]
    pub k: Option<usize>,

    /// Agreement threshold, 0–1: j supports i when their keys' similarity is at least this
    /// [default: 0.6]. Key `alpha`.
    #[arg(long, value_name = "0..1")]
    pub alpha: Option<f64>,

    /// Confidence, 0–1, at which a participant is settled and not asked again; above 1
    /// (up to 2), never [default: 0.5]. Key `beta_1`.
    #[arg(long = "beta1", value_name = "0..2")]
    pub beta_1: Option<f64>,

    /// Support, 0–1, the winner needs for the decision to be final [default: 0.8].
    /// Key `beta_2`.
    #[arg(long = "beta2", value_name = "0..1")]
    pub beta_2: Option<f64>,

    /// Seed of every random draw; a random one is chosen and reported when absent. Key `seed`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Participants that must answer for a decision to count, 1–seats [default: a majority
    /// of the seats]. Key `quorum`.
    #[arg(long, value_name = "N")]
    pub quorum: Option<usize>,

    /// What part of an answer is compared: auto (the `Final answer:` line if any, else
    /// everything), full, line (only the `Final answer:` line), number, choice (A–J),
    /// regex:<RE> (its first capture group) or json:<POINTER> [default: auto]. Key `answer`.
    #[arg(long, value_name = "MODE")]
    pub answer: Option<String>,

    /// Relative tolerance, 0–1, under which two numeric keys agree (0.01 = within 1%)
    /// [default: 0]. Key `tolerance`.
    #[arg(long, value_name = "REL")]
    pub tolerance: Option<f64>,

    /// vote: share of the live seat weight the top group needs to be final: majority
    /// (more than half), supermajority (2/3), unanimous, or a number in (0, 1]
    /// [default: majority]. Key `quorum_share`.
    #[arg(long, value_name = "SHARE")]
    pub quorum_share: Option<String>,

    /// rank: how ballots are aggregated: borda, or chb (Constrained Hybrid Borda)
    /// [default: borda]. Key `rule`.
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,

    /// bft: faulty participants to tolerate; needs at least 3f+1 seats [default: the most
    /// the panel allows, (n-1)/3]. Key `faults`.
    #[arg(long, value_name = "F")]
    pub faults: Option<usize>,

    /// A separate model that writes the synthesis from the final answers and the agreement
    /// found, listing dissent (any strategy). The winner's answer is used verbatim when
    /// this call fails. Key `synthesize`.
    #[arg(long, value_name = "PROVIDER:MODEL")]
    pub synthesize: Option<String>,

    /// metastable and vote: participants also state a confidence (`Confidence: N%`),
    /// recalibrated into low / medium / high buckets (weights 0.5 / 0.75 / 1) that
    /// multiply their seat weight. Key `confidence`.
    #[arg(long)]
    pub confidence: bool,

    /// How keys are compared: jaccard (shared words over all words), dice, levenshtein
    /// (over words), jaro-winkler or exact [default: jaccard]. Key `similarity`.
    #[arg(long, value_name = "METRIC")]
    pub similarity: Option<String>,

    /// Seat weights learned by eval --learn-weights (README, "Seat weights"). Each seat's
    /// weight is its configured one times the file's (in eval, the item category's), and
    /// the file's calibrated beta_2 is used unless --beta2 is given. Every seat must be in
    /// the file. Key `weights` (relative to the config file).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
}

/// How calls are made. Each flag but --temperature, --max-tokens and --stream has a
/// [consensus] key of the same name with `_` for `-`.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Calls")]
pub struct CallArgs {
    /// Seconds one attempt of a call may take, and the longest silence while reading an
    /// answer; more than 0, at most 3600 [default: 120]. Key `timeout`.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Extra attempts after a retryable failure (429, 5xx, timeouts), 0–10 [default: 2].
    /// Key `retries`.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// Seconds the whole run may take: calls still out then are abandoned, no new round
    /// starts, and the decision is made on the answers so far; more than 0, at most 86400
    /// [default: 600]. Key `deadline`.
    #[arg(long, value_name = "SECONDS")]
    pub deadline: Option<f64>,

    /// Seconds after which a round closes once the quorum has answered; participants
    /// still out are absent for that round; more than 0, at most 3600 [default: none].
    /// Key `round_timeout`.
    #[arg(long, value_name = "SECONDS")]
    pub round_timeout: Option<f64>,

    /// Wait for every call of every round. By default a round closes as soon as its
    /// outcome (the winning answer and FINAL) is certain whatever the calls still out
    /// return; those calls are cancelled and their seats reported "not needed".
    #[arg(long)]
    pub wait_all: bool,

    /// Stop before a round whose worst case would bring the run's cost over this many USD
    /// (exit 3); every seat needs a price (bundled or from the config). More than 0, at
    /// most 1000000. Key `max_cost`.
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,

    /// Sampling temperature, 0–2, for seats that set none (omitted from requests when
    /// unset). Per seat: `temperature` in [[participants]].
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Output-token limit per call, 1–1000000, for seats that set none (omitted from
    /// requests when unset). Per seat: `max_tokens` in [[participants]].
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,

    /// Stream answers (server-sent events, or NDJSON from Ollama) from HTTP providers.
    /// Per provider: `stream` in [providers.NAME].
    #[arg(long)]
    pub stream: bool,
}

/// What is printed.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print one JSON object (schema in the README) instead of the report.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,

    /// Print only the synthesis.
    #[arg(short, long)]
    pub quiet: bool,

    /// Log each call (provider, model, status, latency, tokens) and each retry on standard error.
    #[arg(short, long)]
    pub verbose: bool,

    /// Write the run as JSON lines on standard error as it goes (run, call and round
    /// events; schema in the README). Replaces the progress lines and -v there.
    #[arg(long)]
    pub events: bool,

    /// Also write the full JSON result to FILE (written even when the run fails); its
    /// directory must exist, checked before any call.
    #[arg(long, value_name = "FILE")]
    pub transcript: Option<PathBuf>,
}

/// Checking the answer (for CI): at most one expectation per run, compared with the
/// winner's key. An answer that does not match exits 4; the JSON carries `expect: {kind,
/// value, matched, require, passed}` (README, "Checking the answer").
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Checking")]
pub struct ExpectArgs {
    /// The expected answer: matches when the winner's key, normalized as keys are
    /// (case, punctuation, spacing; numbers by value within --tolerance), equals TEXT.
    #[arg(long, value_name = "TEXT", group = "expectation")]
    pub expect: Option<String>,

    /// The expected number: matches when the last number of the winner's key equals N
    /// within --tolerance.
    #[arg(
        long,
        value_name = "N",
        group = "expectation",
        allow_hyphen_values = true
    )]
    pub expect_number: Option<String>,

    /// The expected choice letter, A–J: matches when the winner's key names it (as
    /// --answer choice reads a `Final answer:` line).
    #[arg(long, value_name = "LETTER", group = "expectation")]
    pub expect_choice: Option<String>,

    /// A regular expression that must match somewhere in the winner's key (anchor it with
    /// ^...$).
    #[arg(long, value_name = "RE", group = "expectation")]
    pub expect_regex: Option<String>,

    /// Which outcomes pass the check: final (FINAL and matched), majority (matched, and
    /// FINAL or the winner's support above half) or any (matched) [default: final].
    #[arg(long, value_name = "OUTCOME", value_enum, requires = "expectation")]
    pub require: Option<crate::expect::Require>,
}

impl ExpectArgs {
    /// The expectation these flags ask for, checked (a bad value is a usage error).
    pub fn expectation(
        &self,
    ) -> Result<Option<crate::expect::Expectation>, crate::error::ConfigError> {
        crate::expect::Expectation::from_flags(
            self.expect.as_deref(),
            self.expect_number.as_deref(),
            self.expect_choice.as_deref(),
            self.expect_regex.as_deref(),
            self.require.unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_strategy_parses() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.name().parse::<StrategyKind>(), Ok(kind));
        }
    }

    /// `providers` resolves its panel as `ask` with no other flag, through `Default`.
    #[test]
    fn ask_with_no_flags_is_the_default() {
        use clap::{Args, FromArgMatches};
        let matches = AskArgs::augment_args(clap::Command::new("ask"))
            .try_get_matches_from(["ask"])
            .unwrap();
        let parsed = AskArgs::from_arg_matches(&matches).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", AskArgs::default()));
    }

    #[test]
    fn the_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
