//! The `llm-consensus` binary: parse the command line, run the command, print its result
//! once (errors as one `error:` line) and turn it into the exit code of docs/protocol.md §5.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use llm_consensus::cli::{AskArgs, Cli, Command, LogsArgs, ProvidersArgs, ReplayArgs};
use llm_consensus::config::{self, Env};
use llm_consensus::error::ConfigError;
use llm_consensus::events::Events;
use llm_consensus::expect::Expectation;
use llm_consensus::report::{self, Report, text::Style};
use llm_consensus::run::{self, RunOptions};
use llm_consensus::stderr_line;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ask(args) => ask(args),
        Command::Providers(args) => providers(args),
        Command::Replay(args) => replay(args),
        Command::Eval(args) => llm_consensus::eval::main(args),
        Command::EvalSummary(args) => llm_consensus::eval::summarize(args),
        Command::Completions { shell } => completions(shell),
        Command::Man { command } => man(command.as_deref()),
        Command::Logs(args) => logs(args),
        Command::Mcp(args) => llm_consensus::mcp::main(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Printed once; a configuration problem (nothing was sent) is exit 2.
        Err(e) => {
            // A config value or a server's message may carry control characters.
            stderr_line!("error: {}", report::text::visible(&format!("{e:#}")));
            let usage = e.downcast_ref::<ConfigError>().is_some();
            ExitCode::from(if usage { 2 } else { 3 })
        }
    }
}

/// Writes all of `text` to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `completions SHELL`: the completion script, generated from the clap definitions.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "llm-consensus", &mut script);
    print_stdout(&script)?;
    Ok(0)
}

/// `man [COMMAND]`: the manual page in roff, generated from the clap definitions.
fn man(command: Option<&str>) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    cmd.build();
    let (page, title) = match command {
        None => (cmd, "llm-consensus".to_string()),
        Some(name) => {
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            let sub = cmd.find_subcommand(name).cloned().ok_or_else(|| {
                ConfigError::new(format!(
                    "man {name}: no such command (use one of {})",
                    names.join(", ")
                ))
            })?;
            // The page is named after the full command, as git's pages are.
            let title = format!("llm-consensus-{}", sub.get_name());
            (sub, title)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).title(title).render(&mut roff)?;
    print_stdout(&roff)?;
    Ok(0)
}

/// `logs`: the runs in the run log.
fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    let env = Env::from_process();
    let path = config::log_path_for_logs(args.config.as_deref(), &env)?.ok_or_else(|| {
        ConfigError::new("no run log: set LLM_CONSENSUS_LOG_DB, XDG_DATA_HOME or HOME")
    })?;
    let text = llm_consensus::log::command(args.action, &path)?;
    print_stdout(text.as_bytes())?;
    Ok(0)
}

/// `providers`: the resolved panel, checked with --check; exit 3 when a check fails.
fn providers(args: ProvidersArgs) -> anyhow::Result<u8> {
    let env = Env::from_process();
    let (json, check) = (args.json, args.check);
    // Every seat is shown, also those whose key is not set; that is an error after the table.
    let settings = llm_consensus::inspect::resolve(args, &env)?;
    let runtime = runtime()?;
    let panel = runtime.block_on(llm_consensus::inspect::panel(&settings, &env, check))?;
    runtime.shutdown_background();
    let text = if json {
        let mut s = serde_json::to_string_pretty(&panel)?;
        s.push('\n');
        s
    } else {
        llm_consensus::inspect::render(&panel)
    };
    print_stdout(text.as_bytes())?;
    if let Some(missing) = settings.seats.iter().find_map(|s| s.missing_key.as_deref()) {
        return Err(ConfigError::new(missing).into());
    }
    Ok(if panel.any_failed() { 3 } else { 0 })
}

/// `replay TRANSCRIPT`: the recorded run re-decided, printed as `ask` prints a run.
fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    use llm_consensus::replay::transcript;
    let (recorded, from) = recorded_run(&args.source)?;
    let expectation = args.expect.expectation()?;
    let category = args.category.as_deref();
    let report = transcript::weighted(&recorded, &args.consensus, category, expectation.as_ref())?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&transcript::mark(&report, &from))?;
        s.push('\n');
        s
    } else if args.quiet {
        report::text::render_quiet(&report)
    } else {
        let style = Style {
            color: color(std::io::stdout().is_terminal()),
        };
        format!(
            "Replayed from {} (no calls made)\n{}",
            report::text::visible(&from),
            report::text::render(&report, style)
        )
    };
    print_stdout(text.as_bytes())?;
    Ok(report.exit_code() as u8)
}

/// The `--transcript` file: the JSON result, plus the run's full record (every request
/// sent and every response, from the run log) under `record` when the run is logged.
fn transcript(report: &Report, events: &Events) -> String {
    let Some(record) = events.log().and_then(|log| log.record()) else {
        return report::json::render(report);
    };
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("record".into(), record);
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// `replay`'s argument: a transcript file, or the ID of a finished run in the run log.
fn recorded_run(source: &std::path::Path) -> anyhow::Result<(serde_json::Value, String)> {
    use llm_consensus::replay::transcript;
    let id = source.to_str().and_then(|s| s.parse::<i64>().ok());
    if let (Some(id), false) = (id, source.exists()) {
        let env = Env::from_process();
        let path = config::log_path_for_logs(None, &env)?.ok_or_else(|| {
            ConfigError::new("no run log: set LLM_CONSENSUS_LOG_DB, XDG_DATA_HOME or HOME")
        })?;
        let db = llm_consensus::log::open_existing(&path).map_err(|e| {
            ConfigError::new(format!("cannot read the run log {}: {e}", path.display()))
        })?;
        let report = llm_consensus::log::load_report(&db, id).ok_or_else(|| {
            ConfigError::new(format!(
                "run {id} is not a finished run of the run log {} (see `llm-consensus logs list`)",
                path.display()
            ))
        })?;
        return Ok((report, format!("run {id} of the run log")));
    }
    Ok((transcript::read(source)?, source.display().to_string()))
}

/// The question: the argument, or standard input when it is `-` or absent and piped.
fn read_prompt(arg: Option<&str>) -> Result<String, ConfigError> {
    let prompt = match arg {
        Some(p) if p != "-" => p.to_string(),
        _ => {
            let stdin = std::io::stdin();
            if arg.is_none() && stdin.is_terminal() {
                return Err(ConfigError::new(
                    "no question: pass it as an argument (llm-consensus ask \"...\") or pipe it on standard input",
                ));
            }
            let mut bytes = Vec::new();
            stdin.lock().read_to_end(&mut bytes).map_err(|e| {
                ConfigError::new(format!("cannot read the question from standard input: {e}"))
            })?;
            let mut text = String::from_utf8(bytes).map_err(|_| {
                ConfigError::new("the question on standard input is not UTF-8 text")
            })?;
            // `echo question |` adds a newline that is no part of the question.
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
    };
    if prompt.trim().is_empty() {
        return Err(ConfigError::new("the question is empty"));
    }
    Ok(prompt)
}

fn ask(args: AskArgs) -> anyhow::Result<u8> {
    let env = Env::from_process();
    let settings = config::resolve(&args, &env)?;
    let expectation = expectation(&args)?;
    let prompt = read_prompt(args.prompt.as_deref())?;
    let output = &args.output;
    if args.dry_run {
        return dry_run(&settings, &prompt, &env, output.json);
    }
    // With --events, stderr carries events only: a wrapper parses every line.
    let events = Events::new(output.events).logged(settings.log_path.as_deref(), settings.cache);
    let events = std::sync::Arc::new(events);
    let options = RunOptions {
        verbose: output.verbose && !output.events,
        progress: std::io::stderr().is_terminal()
            && !output.quiet
            && !output.json
            && !output.events,
        events: events.clone(),
    };
    if options.verbose {
        stderr_line!(
            "{} seat(s), strategy {}, seed {}, deadline {}{}",
            settings.seats.len(),
            settings.params.strategy.name(),
            settings.params.seed,
            settings
                .policy
                .run_deadline
                .map(|d| format!("{} s", d.as_secs_f64()))
                .unwrap_or_else(|| "none".to_string()),
            settings
                .config_path
                .as_ref()
                .map(|p| format!(", config {}", p.display()))
                .unwrap_or_default()
        );
        if let Some(w) = &settings.weights {
            stderr_line!("{}", w.report(settings.params.beta_2).line());
        }
    }
    let runtime = runtime()?;
    let mut report = runtime.block_on(async {
        let interrupt = async {
            if tokio::signal::ctrl_c().await.is_ok() {
                if events.enabled() {
                    events.emit("interrupted", serde_json::json!({}));
                } else {
                    stderr_line!(
                        "interrupted: finishing with the answers so far (Ctrl-C again to quit at once)"
                    );
                }
                tokio::spawn(quit_on_ctrl_c());
            } else {
                std::future::pending::<()>().await;
            }
        };
        run::execute(&settings, &prompt, options, interrupt).await
    })?;
    if let Some(expectation) = &expectation {
        report.check(expectation, &settings.params);
    }
    // From here on a Ctrl-C ends the process at once, also while a large result is being
    // written to a pipe that is not read: the runtime stays up to listen for it.
    runtime.spawn(quit_on_ctrl_c());

    if let Some(path) = &output.transcript
        && let Err(e) = run::write_transcript(path, &transcript(&report, &events))
    {
        let warning = format!("cannot write the transcript to {}: {e}", path.display());
        if events.enabled() {
            events.emit("warning", serde_json::json!({ "message": warning }));
        } else {
            stderr_line!("warning: {warning}");
        }
    }
    let printed = print_result(&report, &args);
    runtime.shutdown_background();
    printed?;
    // A hint for people; scripts find the seed in the result.
    if !settings.seed_given
        && !output.json
        && !output.quiet
        && !output.events
        && std::io::stderr().is_terminal()
    {
        stderr_line!(
            "(seed {}: pass --seed {} to replay the same draws)",
            report.seed,
            report.seed
        );
    }
    let code = report.exit_code() as u8;
    events.run_finished(&report, code);
    Ok(code)
}

/// The `--expect…` flags, checked before any call (a bad value is a usage error).
fn expectation(args: &AskArgs) -> Result<Option<Expectation>, ConfigError> {
    args.expect.expectation()
}

/// `ask --dry-run`: the plan of the run, nothing sent.
fn dry_run(settings: &config::Settings, prompt: &str, env: &Env, json: bool) -> anyhow::Result<u8> {
    let plan = llm_consensus::plan::plan(settings, prompt, env);
    let text = if json {
        let mut s = serde_json::to_string_pretty(&plan)?;
        s.push('\n');
        s
    } else {
        llm_consensus::plan::render(&plan)
    };
    print_stdout(text.as_bytes())?;
    Ok(0)
}

fn print_result(report: &Report, args: &AskArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let text = if args.output.json {
        report::json::render(report)
    } else if args.output.quiet {
        report::text::render_quiet(report)
    } else {
        report::text::render(
            report,
            Style {
                color: color(stdout.is_terminal()),
            },
        )
    };
    if args.output.quiet
        && !args.output.events
        && let Some(error) = &report.error
    {
        stderr_line!("error: {}", report::text::visible(error));
    }
    Ok(print_stdout(text.as_bytes())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Ends the process at the next Ctrl-C, with the command providers' process groups.
async fn quit_on_ctrl_c() {
    if tokio::signal::ctrl_c().await.is_ok() {
        llm_consensus::provider::command::stop_all();
        std::process::exit(130);
    }
}

/// Colour on a terminal, unless NO_COLOR is set or TERM says the terminal has none.
fn color(terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    terminal && !no_color && !dumb
}
