//! The integration tests: one binary (as ripgrep and xh do), so the suite links once.
//! Each module covers one area; `common` holds the loopback provider server and the
//! sandbox that runs the real `llm-consensus` binary.

mod common;

mod ask;
mod cli_strategies;
mod config_edges;
mod costs;
mod early;
mod eval;
mod events;
mod expect;
mod faults;
mod hanzo_binary;
mod inspect_edges;
mod mcp_server;
mod metastable;
mod plan;
mod promises;
mod provider_edges;
mod providers;
mod reference;
mod replay;
mod replay_cmd;
mod report_view;
mod run_edges;
mod runlog;
mod secrets;
mod standing;
mod strategies;
