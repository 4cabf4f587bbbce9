//! `llm-consensus providers`: the resolved panel, and with `--check` one small call per
//! seat, so that a broken key or endpoint shows up before a run.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::{AskArgs, ProvidersArgs};
use crate::config::{self, Env, SeatSpec, Settings};
use crate::provider::pricing::Price;
use crate::provider::{ChatRequest, Transport, Usage};
use crate::report::text::{tokens, visible};
use crate::run::scrub::{self, Scrubber};

/// What the check call asks.
pub const CHECK_PROMPT: &str = "Reply with the single word OK.";

/// One seat, as shown.
#[derive(Clone, Debug, Serialize)]
pub struct SeatInfo {
    pub name: String,
    pub provider: String,
    pub kind: String,
    pub model: String,
    pub base_url: Option<String>,
    /// The variable the key is read from (its name only, never its value).
    pub key_env: Option<String>,
    pub key_set: bool,
    pub max_concurrency: Option<usize>,
    /// USD per million tokens; null when unknown.
    pub price: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckResult>,
}

/// The outcome of one check call.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub ok: bool,
    pub latency_ms: f64,
    pub attempts: u32,
    pub usage: Usage,
    pub answer: Option<String>,
    pub error: Option<String>,
}

impl CheckResult {
    fn failed(latency_ms: f64, attempts: u32, error: String) -> Self {
        CheckResult {
            ok: false,
            latency_ms,
            attempts,
            usage: Usage::default(),
            answer: None,
            error: Some(error),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Panel {
    pub config: Option<String>,
    pub seats: Vec<SeatInfo>,
}

impl Panel {
    /// Whether a check was made and any seat failed it.
    pub fn any_failed(&self) -> bool {
        self.seats
            .iter()
            .any(|s| s.check.as_ref().is_some_and(|c| !c.ok))
    }
}

/// The settings `ask` would resolve with these panel flags; seats whose key is not set
/// are kept (with `missing_key`), so that every seat is shown.
pub fn resolve(args: ProvidersArgs, env: &Env) -> anyhow::Result<Settings> {
    // Every `ask` flag is optional (unset means "the file's, else the default"), so
    // `Default` is `ask` with none given.
    let ask = AskArgs {
        models: args.models,
        config: args.config,
        calls: args.calls,
        ..AskArgs::default()
    };
    Ok(config::resolve_lenient(&ask, env)?)
}

/// How `seat` is shown (`--dry-run` shows its seats the same way).
pub fn info(seat: &SeatSpec, env: &Env) -> SeatInfo {
    SeatInfo {
        name: seat.name.clone(),
        provider: seat.provider_name.clone(),
        kind: seat.provider.kind().to_string(),
        model: seat.model.clone(),
        base_url: seat.provider.base_url().map(mask_userinfo),
        key_env: seat.key_env.clone(),
        key_set: seat
            .key_env
            .as_deref()
            .is_some_and(|v| env.get(v).is_some()),
        max_concurrency: seat.max_concurrency,
        price: seat.price,
        check: None,
    }
}

/// The URL with the password of its userinfo (`https://user:PASSWORD@host`) masked:
/// the table and its JSON are pasted into issues and chats.
pub fn mask_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    // The last `@` ends the userinfo; a password may itself contain `@`.
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The panel, checked when `check` is set: one call per seat, all at once.
pub async fn panel(settings: &Settings, env: &Env, check: bool) -> anyhow::Result<Panel> {
    let mut seats: Vec<SeatInfo> = settings.seats.iter().map(|s| info(s, env)).collect();
    if check {
        let transport = Arc::new(Transport::new(settings.policy.clone())?);
        // The transport scrubs a seat's own key; a check answer or error may also quote
        // another seat's key or a `base_url` password, as in a run.
        let scrubber = Arc::new(Scrubber::new(scrub::secrets(settings)));
        let mut set = JoinSet::new();
        for (i, seat) in settings.seats.iter().enumerate() {
            let transport = Arc::clone(&transport);
            let scrubber = Arc::clone(&scrubber);
            let provider = seat.provider.clone();
            let request = ChatRequest {
                model: seat.model.clone(),
                system: None,
                user: CHECK_PROMPT.into(),
                temperature: seat.temperature,
                max_tokens: seat.max_tokens,
                // A check is one call, not a run to repeat.
                seed: None,
            };
            let key_env = seat.key_env.clone();
            let missing_key = seat.missing_key.clone();
            set.spawn(async move {
                // A call without its key would only be refused (or sent where it should not).
                if let Some(message) = missing_key {
                    return (i, CheckResult::failed(0.0, 0, message));
                }
                let t0 = Instant::now();
                let mut outcome = provider.complete(&transport, &request, 0, |_| {}).await;
                // Scrubbed before the answer is cut, so that no cut splits a secret.
                scrub::outcome(&scrubber, &mut outcome);
                if let Err(e) = &mut outcome.result {
                    e.hint_key(key_env.as_deref(), provider.key().is_some());
                }
                let latency_ms = outcome
                    .reported_ms
                    .unwrap_or_else(|| t0.elapsed().as_secs_f64() * 1000.0);
                let result = match outcome.result {
                    Ok(c) => CheckResult {
                        ok: true,
                        latency_ms,
                        attempts: outcome.attempts,
                        usage: c.usage,
                        answer: Some(c.text.chars().take(80).collect()),
                        error: None,
                    },
                    Err(e) => CheckResult::failed(latency_ms, outcome.attempts, e.message),
                };
                (i, result)
            });
        }
        while let Some(done) = set.join_next().await {
            let (i, result) = done?;
            seats[i].check = Some(result);
        }
    }
    Ok(Panel {
        config: settings
            .config_path
            .as_ref()
            .map(|p| p.display().to_string()),
        seats,
    })
}

/// The panel as a table.
pub fn render(panel: &Panel) -> String {
    let mut rows = vec![vec![
        "SEAT".to_string(),
        "KIND".to_string(),
        "MODEL".to_string(),
        "ENDPOINT".to_string(),
        "KEY".to_string(),
        "PRICE IN/OUT".to_string(),
    ]];
    let checked = panel.seats.iter().any(|s| s.check.is_some());
    if checked {
        rows[0].push("CHECK".to_string());
    }
    for s in &panel.seats {
        let key = match &s.key_env {
            Some(var) if s.key_set => format!("{var} (set)"),
            Some(var) => format!("{var} (not set)"),
            None => "-".to_string(),
        };
        let mut row = vec![
            s.name.clone(),
            s.kind.clone(),
            s.model.clone(),
            s.base_url.clone().unwrap_or_else(|| "-".to_string()),
            key,
            match s.price {
                Some(p) => format!("${}/${}", p.input, p.output),
                None => "unpriced".to_string(),
            },
        ];
        if let Some(c) = &s.check {
            row.push(if c.ok {
                format!("ok in {:.0} ms, {}", c.latency_ms, tokens(&c.usage))
            } else {
                format!("FAILED: {}", c.error.as_deref().unwrap_or("unknown error"))
            });
        }
        rows.push(row.iter().map(|c| cell(c)).collect());
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    if let Some(path) = &panel.config {
        let _ = writeln!(out, "config: {}", visible(path));
    }
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// A table cell: seat names, endpoints and errors come from a config file or a server,
/// so control characters show as escapes and a line break cannot start a forged row.
fn cell(text: &str) -> String {
    visible(&text.replace(['\n', '\t'], " ")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::mask_userinfo;

    #[test]
    fn userinfo_is_masked_and_the_rest_kept() {
        assert_eq!(
            mask_userinfo("https://alice:s3cr%40t@proxy.example:8443/v1?x=1"),
            "https://alice:***@proxy.example:8443/v1?x=1"
        );
        assert_eq!(mask_userinfo("http://token@host/v1"), "http://***@host/v1");
        assert_eq!(mask_userinfo("http://a:b@c@host"), "http://a:***@host");
        assert_eq!(
            mask_userinfo("http://host/v1/a@b"),
            "http://host/v1/a@b",
            "an @ in the path is not userinfo"
        );
        assert_eq!(mask_userinfo("not a url"), "not a url");
    }
}
