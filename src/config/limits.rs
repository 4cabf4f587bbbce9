//! Precedence and ranges in one place: every option is picked flag > file > default by
//! [`pick`], which remembers where the value came from, and checked against its
//! [`Limit`], so that an error names the flag or the config key the user has to fix.
//! The README's "Limits" table lists the same numbers.

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A command-line flag, e.g. `--alpha`.
    Flag(&'static str),
    /// A config key, e.g. `[consensus] alpha` or `[[participants]] #2 weight`.
    Key(String),
    /// The built-in default.
    Default(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => f.write_str(flag),
            Source::Key(key) => f.write_str(key),
            Source::Default(name) => write!(f, "the default {name}"),
        }
    }
}

/// One option of `[consensus]` and its flag: `--beta1` is the key `beta_1`.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    pub flag: &'static str,
    pub key: &'static str,
}

/// A value and where it came from.
#[derive(Clone, Debug)]
pub struct Picked<T> {
    pub value: T,
    pub source: Source,
}

/// flag > `[consensus]` key > nothing.
pub fn pick<T>(opt: Opt, flag: Option<T>, file: Option<T>) -> Option<Picked<T>> {
    match (flag, file) {
        (Some(value), _) => Some(Picked {
            value,
            source: Source::Flag(opt.flag),
        }),
        (None, Some(value)) => Some(Picked {
            value,
            source: Source::Key(format!("[consensus] {}", opt.key)),
        }),
        (None, None) => None,
    }
}

/// flag > `[consensus]` key > `default`.
pub fn pick_or<T>(opt: Opt, flag: Option<T>, file: Option<T>, default: T) -> Picked<T> {
    pick(opt, flag, file).unwrap_or(Picked {
        value: default,
        source: Source::Default(opt.key),
    })
}

/// A closed range of numbers, or half-open when `above` is set (the value must be more
/// than `lo`), with the unit the message names.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub lo: f64,
    pub hi: f64,
    /// The value must be strictly more than `lo` (durations, costs, weights).
    pub above: bool,
    pub unit: &'static str,
}

impl Limit {
    pub const fn between(lo: f64, hi: f64) -> Limit {
        Limit {
            lo,
            hi,
            above: false,
            unit: "",
        }
    }

    pub const fn positive(hi: f64, unit: &'static str) -> Limit {
        Limit {
            lo: 0.0,
            hi,
            above: true,
            unit,
        }
    }

    pub const fn unit(self, unit: &'static str) -> Limit {
        Limit { unit, ..self }
    }

    pub fn contains(&self, v: f64) -> bool {
        // Written so that NaN is outside.
        (if self.above {
            v > self.lo
        } else {
            v >= self.lo
        }) && v <= self.hi
    }

    fn describe(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        if self.above {
            format!("more than {} and at most {}{unit}", self.lo, self.hi)
        } else {
            format!("between {} and {}{unit}", self.lo, self.hi)
        }
    }

    /// Checks a number from `source`; the error names the source and the range.
    pub fn check<T: Copy + Into<f64> + fmt::Display>(
        &self,
        source: &Source,
        value: T,
    ) -> Result<T, ConfigError> {
        self.admit(source, value, value.into())
    }

    /// Checks a count (whose conversion to f64 is exact within every limit here).
    pub fn check_count(&self, source: &Source, value: usize) -> Result<usize, ConfigError> {
        self.admit(source, value, value as f64)
    }

    /// `value` when `number` (its value as f64) is in range; the error shows `value` as
    /// given, since a huge count would print rounded as an f64.
    fn admit<T: fmt::Display>(
        &self,
        source: &Source,
        value: T,
        number: f64,
    ) -> Result<T, ConfigError> {
        if self.contains(number) {
            Ok(value)
        } else {
            Err(ConfigError::new(format!(
                "{source} must be {}, got {value}",
                self.describe()
            )))
        }
    }

    /// Checks a number of seconds and turns it into a duration (never panics: the limit
    /// keeps it finite and small).
    pub fn seconds(&self, source: &Source, secs: f64) -> Result<Duration, ConfigError> {
        self.check(source, secs).map(Duration::from_secs_f64)
    }
}

impl<T> Picked<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Picked<U> {
        Picked {
            value: f(self.value),
            source: self.source,
        }
    }
}

impl Picked<String> {
    /// The text parsed as a `V`; the error names where the text came from.
    pub fn parse<V>(&self) -> Result<V, ConfigError>
    where
        V: std::str::FromStr,
        V::Err: fmt::Display,
    {
        self.value
            .parse()
            .map_err(|e| ConfigError::new(format!("{}: {e}", self.source)))
    }
}

/// The ranges, one per number a user can give (README, "Limits").
pub mod range {
    use super::Limit;

    pub const ROUNDS: Limit = Limit::between(0.0, 100.0);
    pub const K: Limit = Limit::between(1.0, 100.0);
    /// `--strategy hanzo` reproduces the seed protocol, whose recorded runs include k = 0
    /// (no peers shown); every other strategy needs at least one peer to refine against.
    pub const HANZO_K: Limit = Limit::between(0.0, 100.0);
    /// alpha, beta_2 and tolerance.
    pub const SHARE: Limit = Limit::between(0.0, 1.0);
    /// beta_1: a confidence, so at most 1 settles; up to 2 is accepted to mean "never
    /// settle", which the recorded hanzo-consensus runs use (1.01) to switch off its early exit.
    pub const BETA_1: Limit = Limit::between(0.0, 2.0);
    pub const TIMEOUT: Limit = Limit::positive(3600.0, "seconds");
    pub const RETRIES: Limit = Limit::between(0.0, 10.0);
    pub const DEADLINE: Limit = Limit::positive(86_400.0, "seconds");
    pub const ROUND_TIMEOUT: Limit = Limit::positive(3600.0, "seconds");
    pub const MAX_COST: Limit = Limit::positive(1_000_000.0, "USD");
    pub const TEMPERATURE: Limit = Limit::between(0.0, 2.0);
    pub const MAX_TOKENS: Limit = Limit::between(1.0, 1_000_000.0);
    pub const WEIGHT: Limit = Limit::positive(1000.0, "");
    /// A seat's weight as a run applies it: the configured one times the one of a
    /// weights file (0 to `weights::MAX_WEIGHT`).
    pub const APPLIED_WEIGHT: Limit = Limit::between(0.0, 1e9);
    pub const COUNT: Limit = Limit::between(1.0, 64.0);
    pub const MAX_CONCURRENCY: Limit = Limit::between(1.0, 1024.0);
    /// A mock step's latency.
    pub const MOCK_MS: Limit = Limit::between(0.0, 3_600_000.0).unit("ms");
    /// USD per million tokens, input or output.
    pub const PRICE: Limit = Limit::between(0.0, 1_000_000.0);
}

/// The run deadline when neither `--deadline` nor `deadline` is given: a run whose
/// providers trickle or keep failing ends with the answers it has instead of going on
/// for as long as its calls are allowed to take, round after round.
pub const DEFAULT_DEADLINE_SECS: f64 = 600.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_are_outside_every_limit() {
        for limit in [range::SHARE, range::TIMEOUT, range::WEIGHT, range::MOCK_MS] {
            assert!(!limit.contains(f64::NAN));
            assert!(!limit.contains(f64::INFINITY));
            assert!(!limit.contains(f64::NEG_INFINITY));
        }
    }

    #[test]
    fn the_flag_wins_over_the_key_and_errors_name_the_source() {
        let opt = Opt {
            flag: "--beta1",
            key: "beta_1",
        };
        let p = pick_or(opt, None, Some(5.0), 0.5);
        let err = range::SHARE.check(&p.source, p.value).unwrap_err();
        assert_eq!(err.0, "[consensus] beta_1 must be between 0 and 1, got 5");
        let p = pick_or(opt, Some(0.7), Some(5.0), 0.5);
        assert_eq!((p.value, p.source), (0.7, Source::Flag("--beta1")));
        let p = pick_or(opt, None, None, 0.5);
        assert_eq!(p.source, Source::Default("beta_1"));
    }
}
