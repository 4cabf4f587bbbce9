//! A FINAL you can calibrate: the risk–coverage table of FINAL over the labeled items of
//! an eval, and `--calibrate P`, the smallest threshold whose FINAL precision reaches P.
//!
//! Each labeled result line gives one point: the value of the measure its strategy's
//! verdict rule thresholds (JSON `verdict_rule.measure`: the winner's support, share,
//! first places or score), or none when the item could not be FINAL at any threshold (no
//! winner, a tie, the quorum not live, a failed run), and whether the winner's answer
//! matched. Re-thresholding those values is exactly the strategy's last step; what the
//! threshold changed *during* the run (metastable's seats settling, early closing) is not
//! replayed: the table re-thresholds the runs as they ran.

use serde::Serialize;
use serde_json::Value;

use crate::error::ConfigError;
use crate::weights::Calibration;

/// Values equal within this margin are equal, as in the strategies' own comparisons.
const TIE: f64 = 1e-12;

/// The thresholds every table shows: 0.50 to 1.00 by 0.05 (the run's own is added).
fn grid() -> impl Iterator<Item = f64> {
    (10..=20).map(|i| f64::from(i) / 20.0)
}

/// What a measure's threshold is called on the command line; None when the verdict has
/// no single share to re-apply (bft counts attestations in two phases, leader accepts
/// per term).
pub fn parameter(measure: &str) -> Option<&'static str> {
    match measure {
        "support" | "first_places" | "score" => Some("beta_2"),
        "share" => Some("quorum_share"),
        _ => None,
    }
}

/// `--calibrate P`: P in (0, 1], and (`eval`, before any call) a strategy whose FINAL
/// thresholds a share.
pub fn check_flag(p: Option<f64>, strategy: Option<&str>) -> Result<(), ConfigError> {
    let Some(p) = p else { return Ok(()) };
    if !(p > 0.0 && p <= 1.0) {
        return Err(ConfigError::new(format!(
            "--calibrate {p}: give the FINAL precision wanted, more than 0 and at most 1 (0.9 = 90%)"
        )));
    }
    match strategy {
        Some(s @ ("bft" | "leader")) => Err(ConfigError::new(format!(
            "--calibrate: the {s} strategy's FINAL counts votes, not a share a threshold can calibrate; use metastable, vote, rank or hanzo"
        ))),
        _ => Ok(()),
    }
}

/// One labeled item as its verdict rule saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The winner's value of the measure; None: not FINAL at any threshold.
    pub value: Option<f64>,
    /// The winner's answer matched the expectation.
    pub right: bool,
}

/// The points of the labeled items, and what their verdict rules were.
#[derive(Clone, Debug, Default)]
pub struct Points {
    points: Vec<Point>,
    /// Every measure met, in order of appearance (one, unless files of different
    /// strategies were merged).
    measures: Vec<String>,
    /// The runs' own threshold and strictness, when every line had the same.
    own: Option<(f64, bool)>,
    own_differs: bool,
    /// Items whose run cancelled calls as not needed (early closing).
    closed_early: u64,
}

impl Points {
    /// Counts a result line (`{"check"?, "report"}`); lines without an expected answer do
    /// not count.
    pub fn add(&mut self, line: &Value) {
        let Some(right) = line["check"]["matched"].as_bool() else {
            return;
        };
        let report = &line["report"];
        let rule = &report["verdict_rule"];
        let measure = rule["measure"].as_str().unwrap_or("none");
        if !self.measures.iter().any(|m| m == measure) {
            self.measures.push(measure.to_string());
        }
        if let Some(threshold) = rule["threshold"].as_f64() {
            let own = (threshold, rule["strict"].as_bool() == Some(true));
            match self.own {
                None if !self.own_differs => self.own = Some(own),
                Some((t, s)) if (t - own.0).abs() > TIE || s != own.1 => {
                    self.own = None;
                    self.own_differs = true;
                }
                _ => {}
            }
        }
        self.points.push(Point {
            value: value(report, measure),
            right,
        });
        let not_awaited = |round: &Value| {
            round["participants"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["not_awaited"] == true))
        };
        let rounds = report["rounds"].as_array();
        self.closed_early += u64::from(rounds.is_some_and(|rs| rs.iter().any(not_awaited)));
    }

    /// The table, or why there is none (one line).
    pub fn table(&self) -> Result<RiskCoverage, String> {
        let measure = match self.measures.as_slice() {
            [] => return Err("no item with an expected answer".into()),
            [one] => one,
            many => {
                return Err(format!(
                    "the results were decided by different verdict measures ({})",
                    many.join(", ")
                ));
            }
        };
        let Some(parameter) = parameter(measure) else {
            return Err(if measure == "none" {
                "the results do not state their verdict rule".into()
            } else {
                format!(
                    "the verdict counts {}, not a share a threshold can re-apply",
                    measure.replace('_', " ")
                )
            });
        };
        let mut rows: Vec<Row> = grid().map(|t| self.row(t, false, false)).collect();
        if let Some((t, strict)) = self.own {
            match rows
                .iter_mut()
                .find(|r| !strict && (r.threshold - t).abs() <= TIE)
            {
                Some(row) => row.run = true,
                None => rows.push(self.row(t, strict, true)),
            }
        }
        rows.sort_by(|a, b| {
            a.threshold
                .total_cmp(&b.threshold)
                .then(a.strict.cmp(&b.strict))
        });
        Ok(RiskCoverage {
            measure: measure.clone(),
            parameter,
            labeled: self.points.len() as u64,
            closed_early: self.closed_early,
            rows,
        })
    }

    fn row(&self, threshold: f64, strict: bool, run: bool) -> Row {
        let (final_, right) = count(&self.points, threshold, strict);
        Row::new(threshold, strict, run, final_, right, self.points.len())
    }

    /// `--calibrate P`: the smallest threshold (an observed value, so exact) whose FINAL
    /// precision on the labeled items is at least `p`; None when none reaches it.
    pub fn calibrate(&self, p: f64) -> Option<Calibration> {
        calibrate(&self.points, p)
    }
}

/// The winner's value of `measure`, when the item was decided at all.
fn value(report: &Value, measure: &str) -> Option<f64> {
    // Failed, degraded (the quorum not live) and interrupted runs are never FINAL.
    if !matches!(report["status"].as_str(), Some("final" | "no_consensus")) {
        return None;
    }
    // No winner (a tie, nothing readable): not FINAL whatever the threshold.
    let winner = report["winner"].as_str()?;
    let seat = report["participants"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == winner)?;
    match measure {
        // rank finalizes a lone live seat whatever its ballots say.
        "first_places" if report["live"].as_u64() == Some(1) => Some(1.0),
        "support" | "share" | "first_places" => seat["support"].as_f64(),
        "score" => seat["score"].as_f64(),
        _ => None,
    }
}

/// FINAL items at `threshold`, and how many of them are right.
fn count(points: &[Point], threshold: f64, strict: bool) -> (u64, u64) {
    let mut n = (0, 0);
    for p in points {
        let passes = p.value.is_some_and(|v| {
            if strict {
                v > threshold + TIE
            } else {
                v >= threshold - TIE
            }
        });
        if passes {
            n.0 += 1;
            n.1 += u64::from(p.right);
        }
    }
    n
}

/// The smallest observed value whose FINAL precision reaches `p`, with its coverage.
/// Every threshold between the next lower observed value and it makes the same items
/// FINAL; the observed value is the one that is surely on the right side.
pub fn calibrate(points: &[Point], p: f64) -> Option<Calibration> {
    let mut values: Vec<f64> = points.iter().filter_map(|p| p.value).collect();
    values.sort_by(f64::total_cmp);
    // Values within TIE are one threshold: the lowest of them admits them all.
    values.dedup_by(|later, kept| *later - *kept <= TIE);
    let labeled = points.len() as u64;
    values.into_iter().find_map(|t| {
        let (final_, right) = count(points, t, false);
        let precision = right as f64 / final_ as f64;
        (final_ > 0 && precision >= p - TIE).then(|| Calibration {
            beta2: t,
            target: p,
            precision,
            coverage: final_ as f64 / labeled as f64,
            items: labeled,
        })
    })
}

/// The risk–coverage table of FINAL: per threshold, the labeled items that would be FINAL
/// and how many of those are right.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RiskCoverage {
    /// The measure of the verdict rule that is thresholded.
    pub measure: String,
    /// The setting the threshold stands for: `beta_2`, or `quorum_share` (vote).
    pub parameter: &'static str,
    /// Items with an expected answer: the whole coverage is measured against.
    pub labeled: u64,
    /// Labeled items whose run closed a round early: their measure counts only the seats
    /// that answered, so rows above the runs' own threshold may count them FINAL wrongly.
    pub closed_early: u64,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub threshold: f64,
    /// More than the threshold (the run's own rule, e.g. vote's `majority`); else at least.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// The runs' own threshold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub run: bool,
    #[serde(rename = "final")]
    pub final_: u64,
    pub right: u64,
    /// final / labeled.
    pub coverage: f64,
    /// right / final; null when nothing is FINAL.
    pub precision: Option<f64>,
}

impl Row {
    fn new(threshold: f64, strict: bool, run: bool, final_: u64, right: u64, of: usize) -> Row {
        Row {
            threshold,
            strict,
            run,
            final_,
            right,
            coverage: if of == 0 {
                0.0
            } else {
                final_ as f64 / of as f64
            },
            precision: (final_ > 0).then(|| right as f64 / final_ as f64),
        }
    }
}

#[cfg(test)]
#[path = "calibrate_tests.rs"]
mod tests;
