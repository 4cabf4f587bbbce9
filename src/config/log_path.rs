//! Where the run log is: `--no-log` and `[log] enabled = false` turn it off; else
//! `$LLM_CONSENSUS_LOG_DB`, the config's `[log] path` (relative to the config file), then
//! `$XDG_DATA_HOME/llm-consensus/logs.db` (or `~/.local/share/...`).

use std::path::{Path, PathBuf};

use super::schema::FileConfig;
use super::{Env, Result, discover, load};
use crate::cli::AskArgs;

/// The run log's file: none with `--no-log` or `[log] enabled = false`; else
/// `$LLM_CONSENSUS_LOG_DB`, `[log] path`, then the XDG data directory.
pub(super) fn log_path(
    args: &AskArgs,
    file: &FileConfig,
    config_path: Option<&Path>,
    env: &Env,
) -> Option<PathBuf> {
    if args.log.no_log || file.log.enabled == Some(false) {
        return None;
    }
    found(configured_log(file, config_path).as_deref(), env)
}

/// `[log] path`; a relative one is relative to the config file, as its author sees it.
fn configured_log(file: &FileConfig, config_path: Option<&Path>) -> Option<PathBuf> {
    let path = file.log.path.as_deref()?;
    match config_path.and_then(Path::parent) {
        Some(dir) if path.is_relative() => Some(dir.join(path)),
        _ => Some(path.to_path_buf()),
    }
}

/// The run log `logs` reads: as for `ask`, with the config found as `ask` finds it.
pub fn log_path_for_logs(config: Option<&Path>, env: &Env) -> Result<Option<PathBuf>> {
    let config_path = discover(config, env)?;
    let file = match &config_path {
        Some(path) => load(path)?,
        None => FileConfig::default(),
    };
    Ok(found(
        configured_log(&file, config_path.as_deref()).as_deref(),
        env,
    ))
}

/// Where the log is: `$LLM_CONSENSUS_LOG_DB`, the config's `[log] path`, then
/// `$XDG_DATA_HOME/llm-consensus/logs.db` (or `~/.local/share/...`). None without a home.
fn found(configured: Option<&Path>, env: &Env) -> Option<PathBuf> {
    if let Some(p) = env.get("LLM_CONSENSUS_LOG_DB").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    let base = match (
        env.get("XDG_DATA_HOME").filter(|p| !p.is_empty()),
        env.get("HOME"),
    ) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(home).join(".local").join("share"),
        (None, None) => return None,
    };
    Some(base.join("llm-consensus").join("logs.db"))
}
