//! The rounds: each round's calls run concurrently; a round ends when every call is back,
//! or is cut by Ctrl-C, the round timeout (once the quorum has answered) or the run
//! deadline. No round starts after the deadline, after Ctrl-C, or past `--max-cost`.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::budget::{self, Budget};
use super::interrupt::Interrupt;
use super::{Run, emit, log, scrub};
use crate::consensus::{CallResult, CallSpec, Strategy, early};
use crate::provider::http::{Retry, human_duration};
use crate::provider::{ChatRequest, Outcome, Provider, provider_seed};

/// What the rounds counted besides the strategy's own trace.
pub(super) struct Rounds {
    /// Attempts repeated after retryable failures, per seat.
    pub retries: Vec<u32>,
    /// Why `--max-cost` stopped the run before a round.
    pub over_budget: Option<String>,
    /// The calls `--cache` answered from the run log, as (round, seat).
    pub cached: Vec<(usize, usize)>,
    /// The calls cancelled because the outcome was certain without them, as (round, seat).
    pub not_awaited: Vec<(usize, usize)>,
}

/// Runs rounds until the strategy is done, the user interrupts, the run deadline passes
/// or the next round could exceed `--max-cost`.
pub(super) async fn run(
    run: &Run<'_>,
    strategy: &mut dyn Strategy,
    budget: &mut Budget,
    stop: &mut Interrupt<'_>,
) -> Rounds {
    let seats = run.settings.seats.len();
    let limits = &run.limits;
    let mut calls_made = vec![0usize; seats];
    let mut rounds = Rounds {
        retries: vec![0; seats],
        over_budget: None,
        cached: Vec::new(),
        not_awaited: Vec::new(),
    };
    // Every distinct answer seen so far: the answers a late call could give.
    let mut seen: Vec<String> = Vec::new();
    while !run.transport.clock.expired() && !stop.fired() {
        let Some(calls) = strategy.next_round() else {
            break;
        };
        let round = calls.first().map_or(0, |c| c.round);
        let bounds: Vec<f64> = calls
            .iter()
            .map(|c| {
                let seat = &run.settings.seats[c.seat];
                budget::worst_case(seat, c.system.as_deref(), &c.user)
            })
            .collect();
        if let Some(why) = budget.refuse(bounds.iter().sum()) {
            rounds.over_budget = Some(format!("stopped before round {round}: {why}"));
            break;
        }
        let called: Vec<usize> = calls.iter().map(|c| c.seat).collect();
        // The round starts before its first call: the round timeout and the time a cut
        // call waited count from here, never from after a call has already gone out.
        let started = Instant::now();
        let mut set = JoinSet::new();
        for call in calls {
            let index = calls_made[call.seat];
            calls_made[call.seat] += 1;
            let limit = limits
                .get(run.settings.seats[call.seat].provider_name.as_str())
                .cloned();
            let (round, seat) = (call.round, call.seat);
            let (cached, task) = ask(run, call, index, limit);
            if cached {
                rounds.cached.push((round, seat));
            }
            set.spawn(task);
        }
        let early = Early {
            strategy: (!run.settings.wait_all).then_some(&*strategy),
            seen: &mut seen,
        };
        let (results, skipped) = collect(
            run,
            InFlight { set, started },
            round,
            &called,
            &mut rounds.retries,
            stop,
            early,
        )
        .await;
        rounds
            .not_awaited
            .extend(skipped.into_iter().map(|seat| (round, seat)));
        for r in &results {
            let price = run.settings.seats[r.seat].price;
            if r.ok {
                let bound = called
                    .iter()
                    .position(|&s| s == r.seat)
                    .map_or(0.0, |i| bounds[i]);
                budget.charge(price, &r.usage, bound);
            } else {
                budget.charge_reported(price, &r.usage);
            }
        }
        // A sampling round the run deadline cut before anyone answered adds nothing: the
        // decision stands on the rounds before it.
        let dropped = round > 0 && run.transport.clock.expired() && !results.iter().any(|r| r.ok);
        if !dropped {
            strategy.absorb(results);
        }
        if run.events.listened() || run.events.log().is_some() {
            emit::round_decided(
                &run.events,
                run.settings,
                round,
                &strategy.decide(),
                !dropped,
            );
        }
    }
    rounds
}

/// One call, as a task of its round: the provider's result, scrubbed, as the engine's
/// [`CallResult`], and the attempts it took; and whether `--cache` answers it.
fn ask(
    run: &Run<'_>,
    call: CallSpec,
    index: usize,
    limit: Option<Arc<Semaphore>>,
) -> (
    bool,
    impl Future<Output = (CallResult, u32)> + Send + 'static,
) {
    let seat = &run.settings.seats[call.seat];
    let provider = seat.provider.clone();
    let request = ChatRequest {
        model: seat.model.clone(),
        system: call.system.clone(),
        user: call.user.clone(),
        temperature: seat.temperature,
        max_tokens: seat.max_tokens,
        seed: Some(provider_seed(run.settings.params.seed, call.seat)),
    };
    let transport = Arc::clone(&run.transport);
    let progress = Arc::clone(&run.progress);
    let events = Arc::clone(&run.events);
    let params = run.settings.params.clone();
    let scrubber = Arc::clone(&run.scrubber);
    let name = seat.name.clone();
    let verbose = run.options.verbose;
    let key_env = seat.key_env.clone();
    let sent = emit::sent(&request, &scrubber);
    let mut asked = emit::Asked::new(seat, Some(sent));
    let hit = match (run.settings.cache, run.events.log(), &asked.hash) {
        (true, Some(log), Some(hash)) => log.cached(hash),
        _ => None,
    };
    asked.cached = hit.is_some();
    let cached = asked.cached;
    let task = async move {
        if let Some((text, _usage)) = hit {
            // Answered from the log: no call, nothing paid.
            progress.started(call.seat, call.round);
            emit::call_started(&events, &name, &call, index);
            let mut result = CallResult::ok(call.seat, text, 0.0);
            // Nothing was sent: no token was paid for, so the call costs exactly 0.
            result.usage.input_tokens = Some(0);
            result.usage.output_tokens = Some(0);
            progress.finished(call.seat, call.round, 0.0, None);
            if verbose {
                log::call(&progress, &name, &request.model, &call, &result);
            }
            emit::call_finished(&events, &params, &name, call.round, &result, 1, &asked);
            return (result, 1);
        }
        // Waiting for a free slot is not the model's latency.
        let _permit = match limit {
            Some(limit) => limit.acquire_owned().await.ok(),
            None => None,
        };
        progress.started(call.seat, call.round);
        emit::call_started(&events, &name, &call, index);
        let t0 = Instant::now();
        let on_retry = |r: &Retry<'_>| {
            scrub::retry(&scrubber, r, |r| {
                progress.retrying(call.seat, call.round, r.attempt, r.delay, r.reason);
                if verbose {
                    let stage = format!("round {}", call.round);
                    log::retry(&progress, &stage, &name, &request.model, r);
                }
                emit::call_retry(&events, &name, &call, r);
            });
        };
        let mut outcome = provider
            .complete(&transport, &request, index, on_retry)
            .await;
        scrub::outcome(&scrubber, &mut outcome);
        if let Err(e) = &mut outcome.result {
            e.hint_key(key_env.as_deref(), provider.key().is_some());
        }
        let attempts = outcome.attempts;
        let measured = t0.elapsed().as_secs_f64() * 1000.0;
        let result = to_result(&call, outcome, measured);
        progress.finished(
            call.seat,
            call.round,
            result.latency_ms,
            result.error.as_deref(),
        );
        if verbose {
            log::call(&progress, &name, &request.model, &call, &result);
        }
        emit::call_finished(
            &events, &params, &name, call.round, &result, attempts, &asked,
        );
        (result, attempts)
    };
    (cached, task)
}

/// What closing a round early needs: the strategy as it stands before the round (None
/// with `--wait-all`) and the answers seen in the run so far.
struct Early<'a> {
    strategy: Option<&'a dyn Strategy>,
    seen: &'a mut Vec<String>,
}

/// Why a call was cancelled when the outcome was certain without it.
pub(super) const NOT_NEEDED: &str = "not needed";

/// The results of a round's calls as they come back, until all are in, the outcome is
/// certain without the rest ([`early::certain`]), or the round is cut; a call that was
/// cut is reported failed, saying why. Also the seats whose calls were cancelled because
/// they were not needed.
/// A round's calls, sent since `started`.
struct InFlight {
    set: JoinSet<(CallResult, u32)>,
    started: Instant,
}

async fn collect(
    run: &Run<'_>,
    in_flight: InFlight,
    round: usize,
    called: &[usize],
    retries: &mut [u32],
    stop: &mut Interrupt<'_>,
    early: Early<'_>,
) -> (Vec<CallResult>, Vec<usize>) {
    let policy = &run.settings.policy;
    let InFlight {
        mut set,
        started: round_started,
    } = in_flight;
    // The round may close early once this many have answered.
    let needed = run.settings.params.quorum.min(called.len());
    let round_close = policy.round_timeout.map(|t| round_started + t);
    let mut results: Vec<CallResult> = Vec::new();
    let mut cut: Option<String> = None;
    // The seats whose calls were cancelled, or not waited for, once the outcome was certain.
    let mut skipped = Vec::new();
    // The winning key once the outcome is certain, and the answers that came in as the
    // round closed.
    let mut settled: Option<String> = None;
    let mut late: Vec<CallResult> = Vec::new();
    loop {
        let quorum_in = results.iter().filter(|r| r.ok).count() >= needed;
        let close = async {
            match round_close {
                Some(at) if quorum_in => tokio::time::sleep_until(at.into()).await,
                _ => std::future::pending().await,
            }
        };
        let run_end = async {
            match run.transport.clock.deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = set.join_next() => match next {
                Some(Ok((result, attempts))) => {
                    retries[result.seat] += attempts.saturating_sub(1);
                    if settled.is_some() {
                        // Finished just as the round closed: kept below if it leaves the
                        // certain outcome as it was.
                        late.push(result);
                        continue;
                    }
                    if result.ok && !early.seen.contains(&result.text) {
                        early.seen.push(result.text.clone());
                    }
                    results.push(result);
                    if let Some(strategy) = early.strategy
                        && cut.is_none()
                        && let Some(key) =
                            closes(run, strategy, &results, called, early.seen, round_started)
                    {
                        settled = Some(key);
                        // Dropping the calls closes their connections and kills command
                        // providers' process groups: nothing more is paid for.
                        cut = Some(NOT_NEEDED.to_string());
                        set.abort_all();
                    }
                }
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(Err(_)) => {}
                None => break,
            },
            () = stop.wait() => set.abort_all(),
            () = close, if cut.is_none() => {
                cut = Some(format!(
                    "absent: no answer within the round timeout of {} (the round closed once the quorum had answered)",
                    human_duration(policy.round_timeout.unwrap_or_default())
                ));
                set.abort_all();
            }
            () = run_end, if cut.is_none() => {
                cut = Some(format!(
                    "absent: no answer before the run deadline of {}",
                    human_duration(policy.run_deadline.unwrap_or_default())
                ));
                set.abort_all();
            }
        }
    }
    let waited = round_started.elapsed().as_secs_f64() * 1000.0;
    if let (Some(key), Some(strategy)) = (&settled, early.strategy)
        && !late.is_empty()
    {
        let mut with_late = results.clone();
        with_late.extend(late.iter().cloned());
        if early::keeps(strategy, &with_late, key) {
            results = with_late;
        } else {
            // The decision was certain without them and is made without them; what they
            // cost still counts.
            for r in late {
                let mut not_needed = CallResult::failed(r.seat, NOT_NEEDED, r.latency_ms);
                not_needed.usage = r.usage;
                skipped.push(r.seat);
                results.push(not_needed);
            }
        }
    }
    for &seat in called {
        if results.iter().any(|r| r.seat == seat) {
            continue;
        }
        // A call cut in flight never reports back itself: its event is sent here.
        let why = cut.as_deref().unwrap_or("interrupted by Ctrl-C");
        let failed = CallResult::failed(seat, why, waited);
        let spec = &run.settings.seats[seat];
        let asked = emit::Asked::new(spec, None);
        emit::call_finished(
            &run.events,
            &run.settings.params,
            &spec.name,
            round,
            &failed,
            1,
            &asked,
        );
        if cut.as_deref() == Some(NOT_NEEDED) {
            skipped.push(seat);
        }
        if cut.is_some() {
            results.push(failed);
        }
    }
    (results, skipped)
}

/// The winning key, when the round may close with `results`: the outcome is certain
/// whatever the calls still out return.
fn closes(
    run: &Run<'_>,
    strategy: &dyn Strategy,
    results: &[CallResult],
    called: &[usize],
    seen: &[String],
    round_started: Instant,
) -> Option<String> {
    let outstanding: Vec<usize> = called
        .iter()
        .copied()
        .filter(|&seat| !results.iter().any(|r| r.seat == seat))
        .collect();
    // A scripted seat that does not really wait answers at once: waiting for it costs
    // nothing, and a scripted run stays the same from one run to the next.
    let instant = |seat: usize| matches!(&run.settings.seats[seat].provider, Provider::Mock(script) if !script.sleep);
    if outstanding.iter().any(|&seat| instant(seat)) {
        return None;
    }
    let pending = early::Pending {
        arrived: results,
        outstanding: &outstanding,
        seen,
        elapsed_ms: round_started.elapsed().as_secs_f64() * 1000.0,
    };
    early::certain(strategy, &pending)
}

/// The engine's view of a call. Its usage includes the tokens that failed attempts
/// reported: they were paid for.
fn to_result(call: &CallSpec, outcome: Outcome, measured_ms: f64) -> CallResult {
    let latency_ms = outcome.reported_ms.unwrap_or(measured_ms);
    match outcome.result {
        Ok(c) => CallResult {
            seat: call.seat,
            ok: true,
            text: c.text,
            error: None,
            fatal: false,
            latency_ms,
            usage: budget::with_failed(c.usage, &outcome.failed_usage),
            cut: c.finish == Some(crate::provider::Finish::Length),
        },
        Err(e) => {
            let mut message = e.message.clone();
            if outcome.attempts > 1 {
                message.push_str(&format!(" (after {} attempts)", outcome.attempts));
            }
            CallResult {
                seat: call.seat,
                ok: false,
                text: e.output.clone(),
                error: Some(message),
                fatal: e.kind.fatal(),
                latency_ms,
                usage: outcome.failed_usage,
                cut: false,
            }
        }
    }
}
