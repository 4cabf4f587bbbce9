#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use llm_consensus::cli::{AskArgs, Cli, Command, ProvidersArgs};
use llm_consensus::config::{self, Env};
use llm_consensus::error::ConfigError;
use llm_consensus::report::{self, Report, text::Style};
use llm_consensus::run::{self, RunOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ask(args) => ask(args),
        Command::Providers(args) => providers(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Printed once; a configuration problem (nothing was sent) is exit 2.
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e.downcast_ref::<ConfigError>().is_some();
            ExitCode::from(if usage { 2 } else { 3 })
        }
    }
}

/// `providers`: the resolved panel, checked with --check; exit 3 when a check fails.
fn providers(args: ProvidersArgs) -> anyhow::Result<u8> {
    let env = Env::from_process();
    let (json, check) = (args.json, args.check);
    let settings = llm_consensus::inspect::resolve(args, &env)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let panel = runtime.block_on(llm_consensus::inspect::panel(&settings, &env, check))?;
    runtime.shutdown_background();
    let text = if json {
        let mut s = serde_json::to_string_pretty(&panel)?;
        s.push('\n');
        s
    } else {
        llm_consensus::inspect::render(&panel)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(if panel.any_failed() { 3 } else { 0 })
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
            let mut text = String::new();
            stdin.lock().read_to_string(&mut text).map_err(|e| {
                ConfigError::new(format!("cannot read the question from standard input: {e}"))
            })?;
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
    let prompt = read_prompt(args.prompt.as_deref())?;
    let output = &args.output;
    let options = RunOptions {
        verbose: output.verbose,
        progress: std::io::stderr().is_terminal() && !output.quiet && !output.json,
    };
    if output.verbose {
        eprintln!(
            "{} seat(s), strategy {}, seed {}{}",
            settings.seats.len(),
            settings.params.strategy.name(),
            settings.params.seed,
            settings
                .config_path
                .as_ref()
                .map(|p| format!(", config {}", p.display()))
                .unwrap_or_default()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = runtime.block_on(async {
        let interrupt = async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "interrupted: finishing with the answers so far (Ctrl-C again to quit at once)"
                );
                tokio::spawn(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                });
            } else {
                std::future::pending::<()>().await;
            }
        };
        run::execute(&settings, &prompt, options, interrupt).await
    })?;
    // From here on a Ctrl-C ends the process at once, also while a large result is being
    // written to a pipe that is not read: the runtime stays up to listen for it.
    runtime.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });

    if let Some(path) = &output.transcript
        && let Err(e) = std::fs::write(path, report::json::render(&report))
    {
        eprintln!(
            "warning: cannot write the transcript to {}: {e}",
            path.display()
        );
    }
    let printed = print_result(&report, &args);
    runtime.shutdown_background();
    printed?;
    // A hint for people; scripts find the seed in the result.
    if !settings.seed_given && !output.json && !output.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "(seed {}: pass --seed {} to replay the same draws)",
            report.seed, report.seed
        );
    }
    Ok(report.status.exit_code() as u8)
}

fn print_result(report: &Report, args: &AskArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let text = if args.output.json {
        report::json::render(report)
    } else if args.output.quiet {
        match &report.synthesis {
            Some(s) => format!("{}\n", s.trim_end()),
            None => String::new(),
        }
    } else {
        let color =
            stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        report::text::render(report, Style { color })
    };
    if args.output.quiet
        && let Some(error) = &report.error
    {
        eprintln!("error: {error}");
    }
    let mut lock = stdout.lock();
    match lock.write_all(text.as_bytes()).and_then(|()| lock.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
