//! `eval`: many items through one panel, as `ask` runs each, concurrently up to `--jobs`,
//! streamed from the file to `--out` (neither the items nor the results are held), and a
//! summary at the end; `eval-summary` counts the summary of result files.
//!
//! The runs share one connection pool and each provider's `max_concurrency`
//! ([`run::Shared`]), so the limits hold over the whole batch.

pub mod calibrate;
mod chart;
mod files;
pub mod items;
pub mod learning;
pub mod summary;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cli::{AskArgs, EvalArgs, EvalSummaryArgs};
use crate::config::{self, Env, Settings};
use crate::error::ConfigError;
use crate::events::Events;
use crate::expect::{self, Expectation};
use crate::log::RunLog;
use crate::report::{Report, Status};
use crate::run::{self, RunOptions, Shared};
use crate::stderr_line;

use files::{count_items, open_input, open_out, read_results};
use items::{Item, Shard};
use summary::Summary;

/// One line of `--out`.
#[derive(Serialize)]
struct ResultLine<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<ItemCheck>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    fields: &'a Map<String, Value>,
    report: &'a Report,
}

/// The item's check: the run's, and each seat's own final answer checked the same way.
#[derive(Serialize)]
struct ItemCheck {
    kind: &'static str,
    value: expect::Value,
    matched: bool,
    passed: bool,
    seats: Vec<SeatCheck>,
}

#[derive(Serialize)]
struct SeatCheck {
    name: String,
    matched: bool,
}

fn item_check(report: &Report, expectation: &Expectation, settings: &Settings) -> ItemCheck {
    let check = report
        .expect
        .clone()
        .expect("the report was checked before its line is written");
    let p = &settings.params;
    let seats = report
        .participants
        .iter()
        .map(|s| SeatCheck {
            name: s.name.clone(),
            matched: expectation
                .check(s.key.as_deref(), p.similarity, p.tolerance)
                .matched,
        })
        .collect();
    ItemCheck {
        kind: check.kind,
        value: check.value,
        matched: check.matched,
        passed: check.passed,
        seats,
    }
}

/// Minimal validation of the batch flags, before anything is read or sent.
fn check_flags(min_accuracy: Option<f64>) -> Result<(), ConfigError> {
    if let Some(x) = min_accuracy
        && !(0.0..=1.0).contains(&x)
    {
        return Err(ConfigError::new(format!(
            "--min-accuracy {x}: give a share from 0 to 1 (0.9 = 90%)"
        )));
    }
    Ok(())
}

/// `eval`: returns the exit code.
pub fn main(args: EvalArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let env = Env::from_process();
    check_flags(args.min_accuracy)?;
    let shard = args
        .shard
        .as_deref()
        .map(Shard::parse)
        .transpose()
        .map_err(ConfigError::new)?;
    let mut ask = AskArgs {
        models: args.models,
        config: args.config,
        system: args.system,
        consensus: args.consensus,
        calls: args.calls,
        log: args.log,
        ..AskArgs::default()
    };
    // Calibrating needs every seat's answer on record: no round closes early.
    ask.calls.wait_all |= args.calibrate.is_some() || args.learn.learn_weights.is_some();
    let settings = Arc::new(config::resolve(&ask, &env)?);
    calibrate::check_flag(args.calibrate, Some(settings.params.strategy.name()))?;
    let batch_weights = settings.weights.clone();
    let resumed = args.out.as_deref().filter(|_| args.resume);
    let learning = learning::start(args.learn.learn_weights.as_deref(), &settings, resumed)?;
    let require = args.require.unwrap_or_default();
    let mut summary = Summary::new();

    // The ids already done (--resume), and the file results go to; both before any call.
    let mut done = HashSet::new();
    let out = match &args.out {
        Some(path) => Some(open_out(path, args.resume, &mut done, &mut summary)?),
        None => None,
    };
    let input = open_input(&args.file)?;
    let terminal = std::io::stderr().is_terminal();
    let total = match (&args.file, terminal) {
        (path, true) if path.as_os_str() != "-" => count_items(path, shard, &done, require),
        _ => None,
    };

    let shared = Shared::new(&settings)?;
    let log = Events::new(false).logged(settings.log_path.as_deref(), settings.cache);
    let batch = Batch {
        settings,
        shared,
        require,
        shard,
        done,
        out,
        bar: progress(total, terminal && !args.json),
        jobs: args.jobs as usize,
        log,
        learning,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The runs are driven on this thread (a run is not `Send`); their calls are tasks of
    // the runtime's workers.
    let local = tokio::task::LocalSet::new();
    let (interrupted, learning) =
        runtime.block_on(local.run_until(batch.run(input, &mut summary)))?;
    // From here on a Ctrl-C ends the process at once.
    runtime.spawn(quit_on_ctrl_c());
    summary.wall_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let in_use = batch_weights.as_ref();
    let source = args.learn.learn_from.source();
    learning::conclude(&mut summary, learning, source, in_use, args.calibrate)?;
    print_summary(&summary, args.json)?;
    runtime.shutdown_background();
    if interrupted {
        return Ok(130);
    }
    Ok(summary.calibrate_gate(gate(&summary, args.min_accuracy)))
}

/// `eval-summary`: the summary of result files; returns the exit code.
pub fn summarize(args: EvalSummaryArgs) -> anyhow::Result<u8> {
    check_flags(args.min_accuracy)?;
    calibrate::check_flag(args.calibrate, None)?;
    let mut summary = Summary::new();
    // Ids counted once: the same file given twice, or an item in two files, counts once.
    let mut seen = HashSet::new();
    let mut learning = learning::for_files(args.learn.learn_weights.as_deref())?;
    for path in &args.files {
        let file = File::open(path).map_err(|e| {
            ConfigError::new(format!(
                "cannot read the result file {}: {e}",
                path.display()
            ))
        })?;
        read_results(BufReader::new(file), path, |id, line| {
            if seen.insert(id.to_string()) {
                summary.add(line);
            }
        })?;
        learning::read_back(&mut learning, path)?;
    }
    let source = args.learn.learn_from.source();
    learning::conclude(&mut summary, learning, source, None, args.calibrate)?;
    print_summary(&summary, args.json)?;
    Ok(summary.calibrate_gate(gate(&summary, args.min_accuracy)))
}

/// `--min-accuracy`: 4 below it (or with no checked item), else 0.
fn gate(summary: &Summary, min: Option<f64>) -> u8 {
    match min {
        Some(min) if !summary.meets(min) => {
            stderr_line!(
                "accuracy {} is below --min-accuracy {min}",
                summary.accuracy.accuracy.map_or(
                    "(no item with an expected answer)".to_string(),
                    |a| format!("{a:.4}")
                )
            );
            4
        }
        _ => 0,
    }
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    let text = if json {
        summary.render_json()
    } else {
        summary.render_text(chart::Style::stdout())
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is not an error of the eval.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The progress bar on a terminal: items done of those to run, with an ETA; from
/// standard input (no count ahead) the items done and the time so far.
fn progress(total: Option<u64>, enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let target = indicatif::ProgressDrawTarget::stderr();
    let (bar, template) = match total {
        Some(total) => (
            indicatif::ProgressBar::with_draw_target(Some(total), target),
            "{bar:30} {pos}/{len} items, {elapsed} elapsed, ETA {eta}",
        ),
        None => (
            indicatif::ProgressBar::with_draw_target(None, target),
            "{spinner} {pos} items done, {elapsed} elapsed",
        ),
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

/// Ends the process at the next Ctrl-C, with the command providers' process groups.
async fn quit_on_ctrl_c() {
    if tokio::signal::ctrl_c().await.is_ok() {
        crate::provider::command::stop_all();
        std::process::exit(130);
    }
}

/// What the batch's tasks share.
struct Batch {
    settings: Arc<Settings>,
    shared: Shared,
    require: expect::Require,
    shard: Option<Shard>,
    done: HashSet<String>,
    out: Option<File>,
    bar: Option<indicatif::ProgressBar>,
    jobs: usize,
    /// The run log, opened once (a warning when it cannot be): each item is a run of its
    /// own in it, written on the one connection.
    log: Events,
    /// `--learn-weights`: the finished items' keys.
    learning: Option<learning::Collector>,
}

/// A line of the input: its number and its bytes.
type Line = (usize, std::io::Result<Vec<u8>>);

/// An item's run, back.
type Finished = (Item, Arc<Settings>, anyhow::Result<Report>, Arc<Events>);

impl Batch {
    /// Runs every item; returns whether the user interrupted.
    async fn run(
        mut self,
        input: Box<dyn Read + Send>,
        summary: &mut Summary,
    ) -> anyhow::Result<(bool, Option<learning::Collector>)> {
        // The file is read on a thread of its own (standard input blocks), a few lines
        // ahead of the runs.
        let (tx, mut lines) = mpsc::channel::<Line>(self.jobs);
        std::thread::spawn(move || read_lines(input, tx));
        let (stop, stopped) = watch::channel(false);
        let mut running: JoinSet<Finished> = JoinSet::new();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut interrupted = false;
        let mut input_done = false;
        while !(input_done || interrupted) || !running.is_empty() {
            tokio::select! {
                biased;
                r = &mut ctrl_c, if !interrupted => {
                    if r.is_ok() {
                        interrupted = true;
                        let _ = stop.send(true);
                        self.note("interrupted: finishing the items in flight (Ctrl-C again to quit at once)");
                        tokio::spawn(quit_on_ctrl_c());
                    }
                }
                Some(joined) = running.join_next() => {
                    match joined {
                        Ok(finished) => self.finish(finished, summary)?,
                        Err(e) => {
                            summary.add_unfinished();
                            self.note(&format!("an item's run stopped: {e}"));
                        }
                    }
                }
                line = lines.recv(), if !input_done && !interrupted && running.len() < self.jobs => {
                    match line {
                        None => input_done = true,
                        Some((number, bytes)) => {
                            if let Some(item) = self.item(number, bytes, summary) {
                                self.spawn(&mut running, item, &stopped);
                            }
                        }
                    }
                }
            }
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        Ok((interrupted, self.learning))
    }

    /// A line as an item to run, or None: blank, malformed (reported and counted), in
    /// another shard, or done before (--resume).
    fn item(
        &self,
        number: usize,
        bytes: std::io::Result<Vec<u8>>,
        summary: &mut Summary,
    ) -> Option<Item> {
        let parsed = match bytes {
            Err(e) => Err(format!("cannot be read: {e}")),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(_) => Err("not UTF-8 text".to_string()),
                Ok(text) if text.trim().is_empty() => return None,
                Ok(text) => items::parse(&text, self.require),
            },
        };
        match parsed {
            Err(why) => {
                summary.malformed += 1;
                self.note(&format!("line {number}: {why}; skipped"));
                None
            }
            Ok(item) => {
                let here = self.shard.is_none_or(|s| s.holds(&item.id));
                (here && !self.done.contains(&item.id)).then_some(item)
            }
        }
    }

    fn spawn(&self, running: &mut JoinSet<Finished>, item: Item, stopped: &watch::Receiver<bool>) {
        // The weights of the item's category, when the weights file has it; each item is
        // a run, so MCP seats open sessions of their own.
        let base = config::for_category(&self.settings, item.category.as_deref());
        let fresh = base.with_new_sessions();
        let settings = match (&item.system, fresh) {
            (None, None) => base,
            (system, fresh) => {
                let mut s = fresh.unwrap_or_else(|| (*base).clone());
                if let Some(system) = system {
                    s.params.system = Some(system.clone());
                }
                Arc::new(s)
            }
        };
        let shared = self.shared.clone();
        // Each item is a run of its own in the run log (`logs list` shows one per item).
        let events = Arc::new(Events::new(false).with_log(self.log.log().map(RunLog::another_run)));
        let mut stopped = stopped.clone();
        running.spawn_local(async move {
            let interrupt = async move {
                if stopped.wait_for(|&s| s).await.is_err() {
                    // The batch is gone: nobody will ask to stop.
                    std::future::pending::<()>().await;
                }
            };
            let options = RunOptions {
                events: Arc::clone(&events),
                ..RunOptions::default()
            };
            let result =
                run::execute_shared(&settings, &item.prompt, options, interrupt, &shared).await;
            (item, settings, result, events)
        });
    }

    /// A run is back: its result line is written and counted; an interrupted run is
    /// neither (--resume runs it again).
    fn finish(
        &mut self,
        (item, settings, result, events): Finished,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        let mut report = match result {
            Ok(report) => report,
            Err(e) => {
                summary.add_unfinished();
                self.note(&format!("item {}: {e:#}", item.id));
                return Ok(());
            }
        };
        if report.status == Status::Interrupted {
            summary.add_unfinished();
            return Ok(());
        }
        let check = item.expectation.as_ref().map(|e| {
            report.check(e, &settings.params);
            item_check(&report, e, &settings)
        });
        // The item's run in the run log gets its report and outcome, as an `ask` does.
        events.run_finished(&report, report.exit_code() as u8);
        let mut line = serde_json::to_string(&ResultLine {
            id: &item.id,
            category: item.category.as_deref(),
            check,
            fields: &item.fields,
            report: &report,
        })?;
        let value = serde_json::from_str(&line)?;
        summary.add(&value);
        learning::add(&mut self.learning, &value)?;
        if let Some(out) = &mut self.out {
            line.push('\n');
            // One write per line: a kill leaves at most the last line cut.
            out.write_all(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write the results: {e}"))?;
        }
        Ok(())
    }

    /// A line on stderr, above the progress bar.
    fn note(&self, message: &str) {
        let message = crate::report::text::visible(message);
        match &self.bar {
            Some(bar) => bar.suspend(|| stderr_line!("{message}")),
            None => stderr_line!("{message}"),
        }
    }
}

/// Sends the lines of `input` with their numbers; stops when the batch is gone.
fn read_lines(input: Box<dyn Read + Send>, tx: mpsc::Sender<Line>) {
    let mut reader = BufReader::new(input);
    let mut number = 0;
    loop {
        number += 1;
        let mut buf = Vec::new();
        let line = match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => Ok(buf),
            Err(e) => Err(e),
        };
        let failed = line.is_err();
        if tx.blocking_send((number, line)).is_err() || failed {
            return;
        }
    }
}
