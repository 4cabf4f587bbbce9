//! llm-consensus: ask a panel of language models the same question, let them refine
//! against each other's answers, and decide whether they agree.
//!
//! The crate is split so that each part has one job:
//! - [`text`], [`usage`]: small shared types (texts, prompts, token counts); leaves
//!   that every layer may use;
//! - [`similarity`]: answer keys and similarity metrics (pure functions);
//! - [`consensus`]: the strategies, as synchronous state machines that know no HTTP;
//! - [`provider`]: the wire protocols (one closed enum) and transport policy;
//! - [`config`]: the TOML schema, discovery and precedence, resolved into [`config::Settings`];
//! - [`report`]: the result as data, and its text and JSON renderings;
//! - [`run`]: the glue that drives a strategy with real provider calls;
//! - [`inspect`]: the `providers` command (the resolved panel, and a check call per seat);
//! - [`mcp`]: `llm-consensus mcp`, the panel as a Model Context Protocol server;
//! - [`plan`]: `ask --dry-run`, the worst-case calls, tokens and cost of a run;
//! - [`eval`]: many items through one panel, the summary, FINAL's risk–coverage table;
//! - [`weights`]: seat weights learned from a batch's answers, applied with `--weights`;
//! - [`replay`]: measuring strategies on recorded answers of real models.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod consensus;
pub mod error;
pub mod eval;
pub mod events;
pub mod expect;
pub mod inspect;
pub mod log;
pub mod mcp;
pub mod plan;
pub mod progress;
pub mod provider;
pub mod replay;
pub mod report;
pub mod run;
pub mod similarity;
pub mod stderr;
pub mod text;
pub mod usage;
pub mod weights;
