//! When to try a call again and how long to wait: the retry loop, backoff with jitter,
//! and the waits servers ask for (`retry-after-ms`, `Retry-After`, HTTP dates). Every
//! duration a server gives is read with a cap, so no value can overflow or panic.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use super::{Completion, Outcome, Usage};
use crate::error::{ErrorKind, ProviderError};

/// The longest server-requested wait that is honoured (the official SDKs cap it similarly).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest duration read from a server: a longer one (`retry-after-ms: 1e300`) is read
/// as this. It is far above [`MAX_RETRY_AFTER`], so such a call is not retried.
pub const MAX_SERVER_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How calls are made.
#[derive(Clone, Debug)]
pub struct Policy {
    pub connect_timeout: Duration,
    /// Longest silence between two reads of a response body.
    pub idle_timeout: Duration,
    /// Longest time for one attempt of one call.
    pub call_timeout: Duration,
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First backoff step; doubles per attempt, capped at `max_backoff`, with jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest time for the whole run (`--deadline`); no call outlives it.
    pub run_deadline: Option<Duration>,
    /// A round closes once the quorum has answered and this much time has passed
    /// (`--round-timeout`); the participants still out are absent for that round.
    pub round_timeout: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(120),
            retries: 2,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            run_deadline: None,
            round_timeout: None,
        }
    }
}

/// A failed attempt that is about to be retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry<'a> {
    /// The attempt that failed, counted from 1.
    pub attempt: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// Whether the provider asked for that wait (otherwise it is the backoff).
    pub asked: bool,
    /// Why the attempt failed.
    pub reason: &'a str,
}

/// A run's clock: its policy, and the instant the run must be over by (from
/// `policy.run_deadline`, counted from [`Clock::start`]).
#[derive(Clone, Debug)]
pub struct Clock {
    pub policy: Policy,
    pub deadline: Option<Instant>,
}

impl Clock {
    pub fn start(policy: Policy) -> Clock {
        let deadline = policy.run_deadline.map(|d| Instant::now() + d);
        Clock { policy, deadline }
    }

    /// Time left before the run deadline; None when there is no deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the run deadline has passed.
    pub fn expired(&self) -> bool {
        self.time_left().is_some_and(|left| left.is_zero())
    }

    /// How long the next attempt may take: the call timeout, capped by the run deadline.
    pub fn attempt_budget(&self) -> Duration {
        match self.time_left() {
            Some(left) => left.min(self.policy.call_timeout),
            None => self.policy.call_timeout,
        }
    }

    fn deadline_error(&self) -> ProviderError {
        ProviderError::new(
            ErrorKind::Timeout,
            format!(
                "the run deadline of {} passed",
                human_duration(self.policy.run_deadline.unwrap_or_default())
            ),
        )
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent. Each
    /// attempt gets the call timeout, capped by the run deadline. A wait the provider asks
    /// for that is longer than [`MAX_RETRY_AFTER`] or than the time left ends the call
    /// instead. `on_retry` hears of each retry before its wait. Tokens that failed
    /// attempts reported are summed in [`Outcome::failed_usage`].
    pub async fn with_retries<F, Fut>(
        &self,
        mut attempt: F,
        mut on_retry: impl FnMut(&Retry<'_>),
    ) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Completion, ProviderError>>,
    {
        let mut attempts = 0;
        let mut failed_usage = Usage::default();
        let done = |result, attempts, failed_usage| Outcome {
            result,
            attempts,
            reported_ms: None,
            failed_usage,
        };
        loop {
            if self.expired() {
                let e = self.deadline_error();
                return done(Err(e), attempts.max(1), failed_usage);
            }
            attempts += 1;
            let budget = self.attempt_budget();
            let result = match tokio::time::timeout(budget, attempt()).await {
                Ok(Err(mut e)) if e.kind == ErrorKind::Idle => {
                    e.kind = ErrorKind::Timeout;
                    e.message = format!(
                        "no data from the provider for {} (raise --timeout)",
                        human_duration(self.policy.idle_timeout)
                    );
                    Err(e)
                }
                Ok(result) => result,
                Err(_) if budget < self.policy.call_timeout => Err(self.deadline_error()),
                Err(_) => Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no complete answer within {} (raise --timeout)",
                        human_duration(self.policy.call_timeout)
                    ),
                )),
            };
            if let Err(ProviderError {
                usage: Some(usage), ..
            }) = &result
            {
                failed_usage.add(usage);
            }
            match result {
                Err(mut e) if e.kind.retryable() && attempts <= self.policy.retries => {
                    let delay = match e.retry_after {
                        Some(asked) if asked > MAX_RETRY_AFTER => {
                            let or_more = if asked >= MAX_SERVER_DURATION {
                                " or more"
                            } else {
                                ""
                            };
                            e.message.push_str(&format!(
                                " (not retried: the provider asked to wait {}{or_more}, more than {})",
                                human_duration(asked),
                                human_duration(MAX_RETRY_AFTER)
                            ));
                            return done(Err(e), attempts, failed_usage);
                        }
                        Some(asked) => asked,
                        None => backoff(&self.policy, attempts),
                    };
                    if self.time_left().is_some_and(|left| left <= delay) {
                        e.message.push_str(&format!(
                            " (not retried: waiting {} would pass the run deadline)",
                            human_duration(delay)
                        ));
                        return done(Err(e), attempts, failed_usage);
                    }
                    on_retry(&Retry {
                        attempt: attempts,
                        delay,
                        asked: e.retry_after.is_some(),
                        reason: &e.message,
                    });
                    tokio::time::sleep(delay).await;
                }
                result => return done(result, attempts, failed_usage),
            }
        }
    }
}

/// Exponential backoff with a random jitter in [0.75, 1.0] of the step, so that seats
/// that failed together do not all come back at the same millisecond.
pub fn backoff(policy: &Policy, attempt: u32) -> Duration {
    let step = policy
        .base_backoff
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    step.mul_f64(0.75 + 0.25 * fastrand::f64())
}

/// A number of seconds a server gave, capped at [`MAX_SERVER_DURATION`]; None when it is
/// not a finite, non-negative number.
pub fn server_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let capped = secs.min(MAX_SERVER_DURATION.as_secs_f64());
    Some(Duration::try_from_secs_f64(capped).unwrap_or(MAX_SERVER_DURATION))
}

/// The wait a response asks for: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| server_secs(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return server_secs(secs);
    }
    http_date_from_now(value, SystemTime::now())
}

/// The time from `now` until an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`); zero when
/// past. Fields out of their calendar ranges make it no date at all, which also keeps
/// the arithmetic far from overflow.
pub fn http_date_from_now(value: &str, now: SystemTime) -> Option<Duration> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3]
        .parse()
        .ok()
        .filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else {
        return None;
    };
    if !((0..24).contains(&h) && (0..60).contains(&m) && (0..=60).contains(&s)) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m_) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m_ + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let at = days * 86_400 + h * 3600 + m * 60 + s;
    let now = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    server_secs(at.saturating_sub(now).max(0) as f64)
}

pub fn human_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_micros(150_500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn huge_waits_are_capped_not_a_panic() {
        for (name, value) in [
            ("retry-after-ms", "1e300"),
            ("retry-after", "1e20"),
            ("retry-after", "Wed, 21 Oct 9999 07:28:00 GMT"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            assert_eq!(
                retry_after(&h),
                Some(MAX_SERVER_DURATION),
                "{name}: {value}"
            );
        }
        let epoch = UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(
            http_date_from_now("Wed, 21 Oct 2015 07:28:00 GMT", epoch),
            Some(Duration::from_secs(10))
        );
        for bad in [
            "Wed, 21 Oct 99999999999999999 07:28:00 GMT",
            "Wed, 99999999999999 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 99999999999:28:00 GMT",
            "Wed, 21 Oct 2015 07:28 GMT",
        ] {
            assert_eq!(http_date_from_now(bad, SystemTime::now()), None, "{bad}");
        }
        assert_eq!(server_secs(f64::NAN), None);
        assert_eq!(server_secs(-1.0), None);
    }

    fn transport(retries: u32, run_deadline: Option<Duration>) -> Clock {
        Clock::start(Policy {
            retries,
            run_deadline,
            ..Policy::default()
        })
    }

    fn rate_limited(wait: Duration) -> ProviderError {
        ProviderError::new(ErrorKind::RateLimited, "slow down").with_retry_after(Some(wait))
    }

    fn answer() -> Completion {
        Completion {
            text: "4".into(),
            finish: None,
            usage: Default::default(),
        }
    }

    /// Attempts that fail with `error(n)` on the first two calls (n = 1, 2), then answer.
    fn failing_twice(
        error: impl Fn(u64) -> ProviderError,
    ) -> impl FnMut() -> std::future::Ready<Result<Completion, ProviderError>> {
        let mut calls = 0;
        move || {
            calls += 1;
            std::future::ready(if calls < 3 {
                Err(error(calls))
            } else {
                Ok(answer())
            })
        }
    }

    #[tokio::test]
    async fn retries_wait_as_asked_until_an_answer() {
        let t = transport(2, None);
        let mut heard = Vec::new();
        let attempt = failing_twice(|_| rate_limited(Duration::from_millis(10)));
        let outcome = t
            .with_retries(attempt, |r| {
                heard.push((r.attempt, r.delay, r.asked, r.reason.to_string()))
            })
            .await;
        assert!(outcome.result.is_ok());
        assert_eq!(outcome.attempts, 3);
        let wait = Duration::from_millis(10);
        assert_eq!(
            heard,
            [
                (1, wait, true, "slow down".to_string()),
                (2, wait, true, "slow down".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn tokens_of_failed_attempts_are_kept() {
        let t = transport(2, None);
        let attempt = failing_twice(|n| {
            let mut e = rate_limited(Duration::from_millis(1));
            e.usage = Some(Box::new(Usage {
                input_tokens: Some(100),
                output_tokens: Some(n),
                ..Usage::default()
            }));
            e
        });
        let outcome = t.with_retries(attempt, |_| {}).await;
        assert!(outcome.result.is_ok());
        assert_eq!(outcome.failed_usage.input_tokens, Some(200));
        assert_eq!(outcome.failed_usage.output_tokens, Some(3));
    }

    #[tokio::test]
    async fn no_wait_or_attempt_outlives_the_run_deadline() {
        let t = transport(5, Some(Duration::from_millis(200)));
        let started = Instant::now();
        let outcome = t
            .with_retries(
                || async { Err(rate_limited(Duration::from_secs(5))) },
                |_| panic!("not retried"),
            )
            .await;
        assert_eq!(outcome.attempts, 1);
        let e = outcome.result.unwrap_err();
        assert!(e.message.contains("would pass the run deadline"), "{e}");

        let outcome = t
            .with_retries(
                || async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(answer())
                },
                |_| panic!("not retried"),
            )
            .await;
        let e = outcome.result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.contains("run deadline"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = Policy::default();
        assert!(
            backoff(&p, 1) <= Duration::from_millis(500)
                && backoff(&p, 1) >= Duration::from_millis(375)
        );
        assert!(backoff(&p, 10) <= Duration::from_secs(8));
    }

    #[test]
    fn jitter_spreads_over_its_whole_range() {
        let p = Policy::default();
        let waits: Vec<u128> = (0..200).map(|_| backoff(&p, 1).as_millis()).collect();
        let mut distinct = waits.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let spread = distinct.last().unwrap() - distinct.first().unwrap();
        assert!(distinct.len() >= 50, "{} distinct waits", distinct.len());
        assert!(spread >= 80, "waits within {spread} ms of each other");
    }
}
