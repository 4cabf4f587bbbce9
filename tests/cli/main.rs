//! The integration tests: one binary (as ripgrep and xh do), so the suite links once.
//! Each module covers one area; `common` holds the loopback provider server and the
//! sandbox that runs the real `llm-consensus` binary.

mod common;

mod ask;
mod cli_strategies;
mod costs;
mod faults;
mod hanzo_binary;
mod metastable;
mod providers;
mod reference;
mod replay;
mod secrets;
mod standing;
mod strategies;
