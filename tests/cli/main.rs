//! The integration tests: one binary (as ripgrep and xh do), so the suite links once.
//! Each module covers one area; `common` holds the loopback provider server and the
//! sandbox that runs the real `llm-consensus` binary; `recorded` serves recorded answers of
//! real models over the OpenAI wire and scores `eval --out` files.

mod common;
mod recorded;

mod ask;
mod calibrate;
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
mod mcp_both;
mod mcp_seat;
mod mcp_server;
mod metastable;
mod mmlu_weights;
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
mod weights;
