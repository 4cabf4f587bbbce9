//! Drives a strategy with real provider calls, phase by phase: setup (the transport, the
//! scrubber, the progress lines), the rounds (every call of a round concurrently, see
//! [`rounds`]), the report of the decision, and the optional `--synthesize` call (see
//! [`synthesis`]). Ctrl-C and the run deadline stop new calls and cut those in flight:
//! the answers so far decide.

pub(crate) mod budget;
mod emit;
mod interrupt;
mod log;
mod rounds;
pub mod scrub;
mod synthesis;
pub mod transcript;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::config::Settings;
use crate::consensus::{self, Decision};
use crate::events::Events;
use crate::progress::Progress;
use crate::provider::Transport;
use crate::provider::retry::Clock;
use crate::report::{Report, Status};

use budget::Budget;
use interrupt::Interrupt;
use rounds::Rounds;
pub use scrub::Scrubber;
pub use transcript::write_transcript;

/// How the run talks to the person watching, or to the tool wrapping it.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Log every call on stderr.
    pub verbose: bool,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// `--events`: JSON lines on stderr as calls start and finish and rounds decide.
    pub events: Arc<Events>,
}

/// What every phase of a run shares.
struct Run<'a> {
    settings: &'a Settings,
    prompt: &'a str,
    options: RunOptions,
    transport: Arc<Transport>,
    /// Each provider's `max_concurrency`, shared by all of its seats (and, in an eval, by
    /// every run).
    limits: Limits,
    /// Every provider result passes it before it is shown, stored or forwarded.
    scrubber: Arc<Scrubber>,
    progress: Arc<Progress>,
    events: Arc<Events>,
    started: Instant,
}

/// Runs the panel on `prompt` and returns the report. `interrupt` resolves when the
/// user asks to stop (first Ctrl-C): during the rounds, the calls in flight are cut and
/// the answers so far decide; during the synthesis, the winner's answer stays.
pub async fn execute(
    settings: &Settings,
    prompt: &str,
    options: RunOptions,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Report> {
    let shared = Shared::new(settings)?;
    execute_shared(settings, prompt, options, interrupt, &shared).await
}

/// One semaphore per provider with `max_concurrency`.
type Limits = Arc<HashMap<String, Arc<Semaphore>>>;

/// What many runs of one panel share (`eval`): one connection pool, and each provider's
/// `max_concurrency` counted over all of their calls together. The run deadline stays
/// each run's own.
#[derive(Clone)]
pub struct Shared {
    client: reqwest::Client,
    limits: Limits,
}

impl Shared {
    pub fn new(settings: &Settings) -> anyhow::Result<Shared> {
        let mut limits = HashMap::new();
        for seat in &settings.seats {
            if let Some(n) = seat.max_concurrency {
                limits
                    .entry(seat.provider_name.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(n)));
            }
        }
        Ok(Shared {
            client: Transport::new(settings.policy.clone())?.client,
            limits: Arc::new(limits),
        })
    }
}

/// [`execute`], with the connections and concurrency limits of `shared`.
pub async fn execute_shared(
    settings: &Settings,
    prompt: &str,
    options: RunOptions,
    interrupt: impl std::future::Future<Output = ()>,
    shared: &Shared,
) -> anyhow::Result<Report> {
    let run = Run::new(settings, prompt, options, shared);
    run.events.run_started(settings);
    run.events.to_log(|log| {
        log.run_started(settings, prompt, &|t| run.scrubber.scrub(t).into_owned());
    });
    tokio::pin!(interrupt);
    let mut stop = Interrupt::armed(interrupt).await;
    let mut budget = Budget::new(settings.max_cost);
    let seats = settings.seats.iter().map(|s| s.engine_seat()).collect();
    let mut strategy = consensus::build(&settings.params, seats, prompt);

    let rounds = rounds::run(&run, strategy.as_mut(), &mut budget, &mut stop).await;
    run.progress.clear();
    let mut decision = strategy.finish();
    decision.mark_not_awaited(
        rounds
            .not_awaited
            .iter()
            .map(|&(round, seat)| (round, settings.seats[seat].name.as_str())),
    );
    let mut report = run.report(&decision, rounds, stop.fired());

    if let Some(synth) = &settings.synthesizer
        && !stop.fired()
        && report.synthesis.is_some()
        && report.status != Status::Failed
    {
        synthesis::run(&run, synth, &mut report, &budget, &mut stop).await;
        report.elapsed_ms = run.elapsed_ms();
    }
    Ok(report)
}

impl<'a> Run<'a> {
    fn new(settings: &'a Settings, prompt: &'a str, options: RunOptions, shared: &Shared) -> Self {
        let started = Instant::now();
        let names: Vec<String> = settings.seats.iter().map(|s| s.name.clone()).collect();
        Run {
            settings,
            prompt,
            transport: Arc::new(Transport {
                client: shared.client.clone(),
                clock: Clock::start(settings.policy.clone()),
            }),
            limits: Arc::clone(&shared.limits),
            scrubber: Arc::new(Scrubber::new(scrub::secrets(settings))),
            progress: Arc::new(Progress::new(&names, options.progress)),
            events: Arc::clone(&options.events),
            options,
            started,
        }
    }

    /// A warning on stderr: a `warning` event with `--events`, else a `warning:` line.
    fn warn(&self, message: &str) {
        self.events.warn(message);
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// The report of the decision, with what the rounds counted besides it.
    fn report(&self, decision: &Decision, rounds: Rounds, interrupted: bool) -> Report {
        let mut report = Report::build(
            self.settings,
            self.prompt,
            decision,
            self.elapsed_ms(),
            interrupted,
        );
        for (participant, &n) in report.participants.iter_mut().zip(&rounds.retries) {
            participant.retries = n;
        }
        report.usage.retries = rounds.retries.iter().sum();
        for &(round, seat) in &rounds.cached {
            let name = &self.settings.seats[seat].name;
            let entries = report.rounds.iter_mut().filter(|r| r.round == round);
            for entry in entries.flat_map(|r| r.participants.iter_mut()) {
                if entry.called && entry.participant.as_ref() == name.as_str() {
                    entry.cached = true;
                }
            }
        }
        if let Some(reason) = rounds.over_budget {
            report.status = Status::Failed;
            report.finalized = false;
            report.error = Some(reason);
        }
        report
    }
}
