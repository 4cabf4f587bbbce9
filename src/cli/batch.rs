//! The flags of `eval` and `eval-summary`, the batch commands.

use std::path::PathBuf;

use clap::Args;

use super::{CallArgs, ConsensusArgs, LogArgs};

/// `eval`: the panel and decision flags of `ask`, and the batch's own.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The items: one JSON object per line, `{"id", "prompt", "expect"?, "expect_number"?,
    /// "expect_choice"?, "expect_regex"?, "system"?, "category"?}`; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// A seat: PROVIDER:MODEL, optionally @N (repeatable), as for `ask`.
    #[arg(short = 'm', long = "model", value_name = "PROVIDER:MODEL[@N]")]
    pub models: Vec<String>,

    /// Panel and defaults file (TOML), found as for `ask`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A system prompt for every item that sets no `system` of its own. Key `system`.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// Items run at the same time, 1–1024; every call still obeys each
    /// provider's `max_concurrency`, counted over all items.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: u32,

    /// Write one JSON line per item as it finishes: `{"id", "category"?, "check"?,
    /// "fields"?, "report"}`, the report being the `ask --json` object.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Run only the items whose id is not already in --out, and append to it.
    #[arg(long, requires = "out")]
    pub resume: bool,

    /// Run only the K-th of N disjoint slices of the items (by a stable hash of `id`),
    /// K from 1 to N.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Exit 4 when the accuracy over the items with an expected answer is below this
    /// share, 0–1.
    #[arg(long, value_name = "0..1")]
    pub min_accuracy: Option<f64>,

    /// Which outcomes pass an item's check: final, majority or any [default: final].
    #[arg(long, value_name = "OUTCOME", value_enum)]
    pub require: Option<crate::expect::Require>,

    /// Print the smallest beta_2 (vote: quorum share) whose FINAL precision on the
    /// items with an expected answer is at least P, with its coverage; exit 4 when none
    /// reaches P. P in (0, 1]. Implies --wait-all.
    #[arg(long, value_name = "P")]
    pub calibrate: Option<f64>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub learn: LearnArgs,

    #[command(flatten)]
    pub consensus: ConsensusArgs,

    #[command(flatten)]
    pub calls: CallArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Learning seat weights from a batch's results (README, "Seat weights").
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Learn each seat's weight from the results and write them to FILE for --weights
    /// (with --resume, the items already in --out count too).
    #[arg(long, value_name = "FILE")]
    pub learn_weights: Option<PathBuf>,

    /// What --learn-weights learns from: `answers`, the seats' answers alone (expected
    /// answers are not read), or `labels`, each seat's accuracy on the items' expected
    /// answers.
    #[arg(
        long,
        value_name = "SOURCE",
        value_enum,
        default_value_t,
        requires = "learn_weights"
    )]
    pub learn_from: LearnFrom,
}

/// `--learn-from`: where learned seat weights come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LearnFrom {
    /// The seats' answers alone: no expected answer is read.
    #[default]
    Answers,
    /// The items' expected answers: each seat's share of matched answers.
    Labels,
}

impl LearnFrom {
    pub fn source(self) -> crate::weights::learn::Source {
        match self {
            LearnFrom::Answers => crate::weights::learn::Source::Answers,
            LearnFrom::Labels => crate::weights::learn::Source::Labels,
        }
    }
}

/// `eval-summary`: the summary of one or more --out files.
#[derive(Debug, Args)]
pub struct EvalSummaryArgs {
    /// Result files written by `eval --out`.
    #[arg(value_name = "OUT", required = true)]
    pub files: Vec<PathBuf>,

    /// Exit 4 when the accuracy is below this share, 0–1.
    #[arg(long, value_name = "0..1")]
    pub min_accuracy: Option<f64>,

    /// As for `eval`: the smallest beta_2 whose FINAL precision reaches P, from the
    /// recorded results.
    #[arg(long, value_name = "P")]
    pub calibrate: Option<f64>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub learn: LearnArgs,
}
