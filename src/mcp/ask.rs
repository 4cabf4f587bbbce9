//! `consensus_ask`: one run of the panel, resolved and decided exactly as `ask` does it,
//! returned as the `ask --json` object. The run's events become progress notifications
//! when the client asked for them, and a cancellation stops the run as Ctrl-C stops `ask`.

use std::sync::Arc;

use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, ProgressNotificationParam, ProgressToken,
};
use rmcp::schemars::JsonSchema;
use rmcp::service::{Peer, RequestContext, RoleServer};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::{AskArgs, ExpectArgs, McpArgs};
use crate::config::{self, Env, Settings};
use crate::error::ConfigError;
use crate::events::{Events, Watcher};
use crate::expect::{Expectation, Require};
use crate::report::{self, Report};
use crate::run::{self, RunOptions};

/// The arguments of `consensus_ask`; each one left out keeps the server's flags, then the
/// config file's key, then the default, as for `ask`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct AskParams {
    /// The question.
    pub prompt: String,
    /// Seats as `provider:model`, optionally `@N` for N copies (`openai:gpt-4o-mini@2`);
    /// they replace the configured panel.
    pub models: Option<Vec<String>>,
    /// Decision procedure: metastable (default), vote, rank, bft, leader or hanzo.
    pub strategy: Option<String>,
    /// What part of an answer is compared: auto, full, line, number, choice (A-J),
    /// regex:<RE> or json:<POINTER>.
    pub answer: Option<String>,
    /// Sampling rounds after the first answers, 0-100.
    pub rounds: Option<usize>,
    /// Stop before a round whose worst case would bring the run's cost over this many USD.
    pub max_cost: Option<f64>,
    /// Seconds the whole run may take; then the answers so far decide.
    pub deadline: Option<f64>,
    /// A system prompt for every seat.
    pub system: Option<String>,
    /// Seed of every random draw (the result reports the one used).
    pub seed: Option<u64>,
    /// A separate model (`provider:model`) that writes the synthesis.
    pub synthesize: Option<String>,
    /// The expected answer (normalized as keys are); the result's `expect` says whether
    /// the winner's key matched. At most one of the four `expect…` arguments.
    pub expect: Option<String>,
    /// The expected number, compared within the tolerance.
    pub expect_number: Option<NumberOrText>,
    /// The expected choice letter, A-J.
    pub expect_choice: Option<String>,
    /// A regular expression that must match somewhere in the winner's key.
    pub expect_regex: Option<String>,
    /// Which outcomes pass the check: final (default), majority or any.
    pub require: Option<String>,
    /// With seat weights (the server's --weights or the `weights` key): use the weights
    /// the file learned for this item category (README, "Seat weights").
    pub category: Option<String>,
}

/// A number, given as a JSON number or as text (`"1e3"`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(crate = "rmcp::schemars")]
pub enum NumberOrText {
    Number(serde_json::Number),
    Text(String),
}

/// The `ask` arguments that the server's flags give, before a call's own.
pub fn defaults(flags: &McpArgs) -> AskArgs {
    AskArgs {
        models: flags.models.clone(),
        config: flags.config.clone(),
        system: flags.system.clone(),
        consensus: flags.consensus.clone(),
        calls: flags.calls.clone(),
        log: flags.log.clone(),
        ..AskArgs::default()
    }
}

/// The `ask` arguments of a call: the server's flags, with the call's arguments on top.
pub fn ask_args(flags: &McpArgs, params: AskParams) -> Result<AskArgs, ConfigError> {
    let mut args = defaults(flags);
    if params.prompt.trim().is_empty() {
        return Err(ConfigError::new("the question is empty"));
    }
    if let Some(models) = params.models {
        args.models = models;
    }
    if let Some(name) = params.strategy {
        args.consensus.strategy = Some(name.parse().map_err(ConfigError::new)?);
    }
    let c = &mut args.consensus;
    c.answer = params.answer.or(c.answer.take());
    c.rounds = params.rounds.or(c.rounds);
    c.seed = params.seed.or(c.seed);
    c.synthesize = params.synthesize.or(c.synthesize.take());
    let calls = &mut args.calls;
    calls.max_cost = params.max_cost.or(calls.max_cost);
    calls.deadline = params.deadline.or(calls.deadline);
    args.system = params.system.or(args.system.take());
    args.category = params.category;
    let given = [
        params.expect.is_some(),
        params.expect_number.is_some(),
        params.expect_choice.is_some(),
        params.expect_regex.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(ConfigError::new(
            "at most one of expect, expect_number, expect_choice and expect_regex",
        ));
    }
    let require = match params.require.as_deref() {
        None => None,
        Some(_) if !given.contains(&true) => {
            return Err(ConfigError::new(
                "require needs one of expect, expect_number, expect_choice or expect_regex",
            ));
        }
        Some(name) => Some(
            <Require as clap::ValueEnum>::from_str(name, false).map_err(|_| {
                ConfigError::new(format!(
                    "require: `{name}` is not one of final, majority, any"
                ))
            })?,
        ),
    };
    args.expect = ExpectArgs {
        expect: params.expect,
        expect_number: params.expect_number.map(|n| match n {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Text(t) => t,
        }),
        expect_choice: params.expect_choice,
        expect_regex: params.expect_regex,
        require,
    };
    args.prompt = Some(params.prompt);
    Ok(args)
}

/// Everything a run needs, checked before any call: what `ask` checks before its first.
struct Prepared {
    settings: Settings,
    prompt: String,
    expectation: Option<Expectation>,
}

fn prepare(flags: &McpArgs, arguments: Option<JsonObject>) -> anyhow::Result<Prepared> {
    let params: AskParams = serde_json::from_value(Value::Object(arguments.unwrap_or_default()))
        .map_err(|e| ConfigError::new(format!("consensus_ask: invalid arguments: {e}")))?;
    let args = ask_args(flags, params)?;
    let settings = config::resolve(&args, &Env::from_process())?;
    let expectation = args.expect.expectation()?;
    Ok(Prepared {
        settings,
        prompt: args.prompt.unwrap_or_default(),
        expectation,
    })
}

/// An error as `ask` prints it, as the tool's error result.
pub fn error_result(e: &anyhow::Error) -> CallToolResult {
    let line = format!("error: {}", report::text::visible(&format!("{e:#}")));
    CallToolResult::error(vec![ContentBlock::text(line)])
}

/// The tool call: the run's report, or the one-line error `ask` would print. `notices`:
/// whether the client hears log messages at level notice (a cancelled run's result).
pub async fn call(
    flags: &McpArgs,
    arguments: Option<JsonObject>,
    context: RequestContext<RoleServer>,
    notices: bool,
) -> CallToolResult {
    let prepared = match prepare(flags, arguments) {
        Ok(p) => p,
        Err(e) => return error_result(&e),
    };
    let progress = context
        .meta
        .get_progress_token()
        .map(|token| Progress::start(token, context.peer.clone()));
    let mut events = Events::new(false).logged(
        prepared.settings.log_path.as_deref(),
        prepared.settings.cache,
    );
    if let Some(progress) = &progress {
        events = events.watched(progress.watcher());
    }
    let events = Arc::new(events);
    let stop = context.ct.clone();
    let run = run_on_own_thread(
        prepared.settings.clone(),
        prepared.prompt,
        Arc::clone(&events),
        async move { stop.cancelled().await },
    )
    .await;
    let mut report = match run {
        Ok(report) => report,
        Err(e) => return error_result(&e),
    };
    if let Some(expectation) = &prepared.expectation {
        report.check(expectation, &prepared.settings.params);
    }
    let code = report.exit_code() as u8;
    events.run_finished(&report, code);
    // The last event is out: the notifications are all sent before the result.
    drop(events);
    if let Some(progress) = progress {
        progress.finish().await;
    }
    let json = report::json::render(&report);
    let value: Value = serde_json::from_str(&json).unwrap_or_default();
    if context.ct.is_cancelled() && notices {
        // The client cancelled the request: it reads no response to it (the SDK does not
        // send one), so what the run has reaches it as a log message instead.
        interrupted(&context.peer, &report, &value).await;
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(json)]);
    result.structured_content = Some(value);
    result
}

/// The partial result of a cancelled run, as a `notifications/message` at level notice.
/// Log messages are deprecated by a draft of the protocol, but they are the one way every
/// current client hears from a server about a request it cancelled.
#[allow(deprecated)]
async fn interrupted(peer: &Peer<RoleServer>, report: &Report, value: &Value) {
    let mut data = serde_json::Map::new();
    data.insert(
        "message".into(),
        Value::from(format!(
            "consensus_ask cancelled: {} with the answers so far",
            report.status.label()
        )),
    );
    data.insert("result".into(), value.clone());
    use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
    let mut param = LoggingMessageNotificationParam::new(LoggingLevel::Notice, Value::Object(data));
    param.logger = Some("llm-consensus".into());
    let _ = peer.notify_logging_message(param).await;
}

/// Runs the panel on a thread of its own: a run is one task tree that stays on one
/// thread (as `eval` runs its items), and the server keeps answering meanwhile.
async fn run_on_own_thread(
    settings: Settings,
    prompt: String,
    events: Arc<Events>,
    interrupt: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Report> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("consensus-run".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    let options = RunOptions {
                        verbose: false,
                        // Standard output carries the protocol; the bars would be on stderr,
                        // but nobody watches the server's stderr as a terminal.
                        progress: false,
                        events,
                    };
                    let local = tokio::task::LocalSet::new();
                    runtime.block_on(
                        local.run_until(run::execute(&settings, &prompt, options, interrupt)),
                    )
                });
            let _ = tx.send(result);
        })
        .map_err(|e| anyhow::anyhow!("cannot start the run: {e}"))?;
    rx.await.map_err(|_| {
        anyhow::anyhow!("the run stopped without a result (a bug: please report it)")
    })?
}

/// Progress notifications for one call: the run's events, in order, as they happen.
struct Progress {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    sender: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(token: ProgressToken, peer: Peer<RoleServer>) -> Progress {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let sender = tokio::spawn(async move {
            let mut n = 0u32;
            while let Some(message) = rx.recv().await {
                n += 1;
                let param = ProgressNotificationParam::new(token.clone(), f64::from(n))
                    .with_message(message);
                // A client that went away misses its progress; the run goes on.
                let _ = peer.notify_progress(param).await;
            }
        });
        Progress { tx, sender }
    }

    fn watcher(&self) -> Watcher {
        let tx = self.tx.clone();
        Watcher::new(move |event, fields| {
            if let Some(message) = describe(event, fields) {
                let _ = tx.send(message);
            }
        })
    }

    /// Waits until every notification is sent (the watcher is gone with the run's events).
    async fn finish(self) {
        drop(self.tx);
        let _ = self.sender.await;
    }
}

/// One line of progress for an event, or None for events that are not worth one.
pub fn describe(event: &str, f: &Value) -> Option<String> {
    let text = |name: &str| -> String {
        let s = match &f[name] {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        clip(&s)
    };
    let line = match event {
        "run_started" => format!(
            "{} seat(s), strategy {}",
            f["seats"].as_array().map_or(0, Vec::len),
            text("strategy")
        ),
        "call_finished" if f["ok"] == Value::Bool(true) => format!(
            "round {}: {} answered: {}",
            f["round"],
            text("name"),
            text("key")
        ),
        "call_finished" => format!(
            "round {}: {} failed: {}",
            f["round"],
            text("name"),
            text("error")
        ),
        "call_retry" => format!(
            "round {}: {} retries in {} ms: {}",
            f["round"],
            text("name"),
            f["delay_ms"],
            text("reason")
        ),
        "round_decided" => format!(
            "round {} decided: {} leads with {} ({})",
            f["round"],
            text("winner"),
            text("answer"),
            if f["finalized"] == Value::Bool(true) {
                "final"
            } else {
                "not final yet"
            }
        ),
        "synthesis_started" => format!("synthesis by {}", text("name")),
        _ => return None,
    };
    Some(line)
}

/// A progress line stays short: an answer's key can be a whole answer.
fn clip(s: &str) -> String {
    const MAX: usize = 120;
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_progress_line_is_one_short_line_whatever_the_answer() {
        let key = format!("é{}\nend", "word ".repeat(100));
        let fields = json!({"round": 2, "name": "gpt", "ok": true, "key": key});
        let line = describe("call_finished", &fields).unwrap();
        assert!(
            line.starts_with("round 2: gpt answered: éword word"),
            "{line}"
        );
        assert!(!line.contains('\n') && line.ends_with('…'), "{line}");
        assert_eq!(line.chars().count(), "round 2: gpt answered: ".len() + 121);
        let failed = json!({"round": 0, "name": "c", "ok": false, "error": "HTTP 503"});
        assert_eq!(
            describe("call_finished", &failed).unwrap(),
            "round 0: c failed: HTTP 503"
        );
        assert_eq!(describe("call_started", &fields), None);
    }

    #[test]
    fn a_calls_arguments_win_over_the_servers_flags() {
        let mut flags = McpArgs {
            models: vec!["openai:gpt-4o-mini".into()],
            ..McpArgs::default()
        };
        flags.consensus.rounds = Some(2);
        flags.consensus.answer = Some("number".into());
        flags.calls.max_cost = Some(1.0);
        let params: AskParams = serde_json::from_value(json!({
            "prompt": "q", "rounds": 5, "strategy": "vote", "expect_number": 4
        }))
        .unwrap();
        let args = ask_args(&flags, params).unwrap();
        assert_eq!(args.models, ["openai:gpt-4o-mini"]);
        assert_eq!(args.consensus.rounds, Some(5));
        assert_eq!(args.consensus.answer.as_deref(), Some("number"));
        assert_eq!(args.consensus.strategy.map(|s| s.name()), Some("vote"));
        assert_eq!(args.calls.max_cost, Some(1.0));
        assert_eq!(args.expect.expect_number.as_deref(), Some("4"));
        assert_eq!(args.prompt.as_deref(), Some("q"));
    }

    #[test]
    fn a_category_argument_picks_learned_weights_and_needs_a_weights_file() {
        let params = |v| serde_json::from_value::<AskParams>(v).unwrap();
        let flags = McpArgs {
            models: vec!["mock:Final answer: 4".into()],
            ..McpArgs::default()
        };
        let args = ask_args(&flags, params(json!({"prompt": "q", "category": "law"}))).unwrap();
        assert_eq!(args.category.as_deref(), Some("law"));
        // Without a weights file the run is refused as `ask --category` is.
        let Err(e) = prepare(
            &flags,
            Some(
                json!({"prompt": "q", "category": "law"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        ) else {
            panic!("a category without weights runs");
        };
        assert!(
            e.to_string().contains("--category law picks weights"),
            "{e}"
        );
    }
}
