//! The summary of an eval, counted from its result lines (the lines of `--out`), so that
//! `eval` and `eval-summary` count alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::calibrate::{Points, RiskCoverage};
use super::chart::{self, Style};
use crate::stderr_line;
use crate::weights::{Calibration, WeightsFile};

/// Items with an expected answer, and how many matched it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Tally {
    pub checked: u64,
    pub matched: u64,
    /// matched / checked; null when nothing was checked.
    pub accuracy: Option<f64>,
}

impl Tally {
    fn add(&mut self, matched: bool) {
        self.checked += 1;
        self.matched += u64::from(matched);
        self.accuracy = Some(self.matched as f64 / self.checked as f64);
    }
}

/// A seat's own answers against the expectations: over every labeled item (an item it did
/// not answer counts as wrong) and over the items it answered.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SeatTally {
    /// `checked` (labeled items), `matched`, `accuracy` (matched / checked).
    #[serde(flatten)]
    pub overall: Tally,
    /// Labeled items it answered with a readable key.
    pub answered: u64,
    /// matched / answered; null when it answered none.
    pub accuracy_answered: Option<f64>,
    /// Its accuracy as the weights file in use estimates it (without labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated: Option<f64>,
}

impl SeatTally {
    fn add(&mut self, matched: bool, answered: bool) {
        self.overall.add(matched);
        self.answered += u64::from(answered);
        self.accuracy_answered =
            (self.answered > 0).then(|| self.overall.matched as f64 / self.answered as f64);
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Items counted: those with a result, and those that did not finish.
    pub items: u64,
    /// Items with a result (in --out).
    pub finished: u64,
    /// Lines that are not items (reported on stderr with their line number).
    pub malformed: u64,
    /// Items that did not finish (interrupted, or an error before any decision).
    pub unfinished: u64,
    /// Items already in --out with --resume (counted from there).
    pub resumed: u64,
    /// Finished items whose decision is FINAL.
    #[serde(rename = "final")]
    pub final_: u64,
    /// final / finished; null when nothing finished.
    pub final_rate: Option<f64>,
    /// Finished items whose check passed (`--require`).
    pub passed: u64,
    /// Over every finished item with an expected answer: the winner's answer matched.
    pub accuracy: Tally,
    /// The same over the FINAL items alone.
    pub accuracy_final: Tally,
    pub categories: BTreeMap<String, Tally>,
    /// Per seat: its own final answer matched the item's expectation.
    pub seats: BTreeMap<String, SeatTally>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    /// USD over the finished items; `cost_complete` is false when some were unpriced.
    pub cost_usd: f64,
    pub cost_complete: bool,
    /// The items' own run times, added up.
    pub item_ms: f64,
    /// The eval's wall time (null in `eval-summary`).
    pub wall_ms: Option<f64>,
    /// FINAL re-thresholded over the labeled items ([`Summary::conclude`]); null without
    /// labeled items or when the verdict has no threshold to re-apply.
    pub risk_coverage: Option<RiskCoverage>,
    /// Why there is no table, when there are labeled items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_coverage_note: Option<String>,
    /// `--calibrate P`: the threshold found, null when none reaches P; absent unless asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Option<Calibration>>,
    #[serde(skip)]
    points: Points,
    /// The P of `--calibrate P`.
    #[serde(skip)]
    calibrate: Option<f64>,
}

impl Summary {
    pub fn new() -> Summary {
        Summary {
            cost_complete: true,
            ..Summary::default()
        }
    }

    /// Counts one result line (`{"id", "category"?, "check"?, "report"}`).
    pub fn add(&mut self, line: &Value) {
        let report = &line["report"];
        self.items += 1;
        self.finished += 1;
        let is_final = report["status"] == "final";
        self.final_ += u64::from(is_final);
        self.final_rate = Some(self.final_ as f64 / self.finished as f64);
        let check = &line["check"];
        if let Some(matched) = check["matched"].as_bool() {
            self.accuracy.add(matched);
            if is_final {
                self.accuracy_final.add(matched);
            }
            if let Some(category) = line["category"].as_str() {
                self.categories
                    .entry(category.to_string())
                    .or_default()
                    .add(matched);
            }
            for seat in check["seats"].as_array().into_iter().flatten() {
                if let (Some(name), Some(m)) = (seat["name"].as_str(), seat["matched"].as_bool()) {
                    // A seat answered when its standing answer has a key.
                    let answered = report["participants"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == name && p["key"].is_string());
                    self.seats
                        .entry(name.to_string())
                        .or_default()
                        .add(m, answered);
                }
            }
            self.passed += u64::from(check["passed"].as_bool() == Some(true));
            self.points.add(line);
        }
        let usage = &report["usage"];
        let count = |name: &str| usage[name].as_u64().unwrap_or(0);
        self.input_tokens += count("input_tokens");
        self.output_tokens += count("output_tokens");
        self.total_tokens += count("total_tokens");
        match usage["cost_usd"].as_f64() {
            Some(c) => self.cost_usd += c,
            None => self.cost_complete = false,
        }
        self.item_ms += report["elapsed_ms"].as_f64().unwrap_or(0.0);
    }

    /// An item that did not finish (it has no result line).
    pub fn add_unfinished(&mut self) {
        self.items += 1;
        self.unfinished += 1;
    }

    /// `--min-accuracy`: whether the accuracy reaches `min`. Without any checked item
    /// there is no accuracy, and the gate fails.
    pub fn meets(&self, min: f64) -> bool {
        self.accuracy.accuracy.is_some_and(|a| a >= min)
    }

    /// After the last line: the risk–coverage table, each seat's estimated accuracy from
    /// `weights` (the file `--weights` or `--learn-weights` uses), and with `calibrate`
    /// the smallest threshold whose FINAL precision reaches it.
    pub fn conclude(&mut self, weights: Option<&WeightsFile>, calibrate: Option<f64>) {
        if let Some(w) = weights {
            for (name, seat) in &mut self.seats {
                seat.estimated = w.seats.get(name).map(|s| s.accuracy);
            }
        }
        match self.points.table() {
            Ok(table) => self.risk_coverage = Some(table),
            Err(why) if self.accuracy.checked > 0 => self.risk_coverage_note = Some(why),
            Err(_) => {}
        }
        self.calibrate = calibrate;
        if let Some(p) = calibrate {
            self.calibration = Some(
                self.risk_coverage
                    .as_ref()
                    .and_then(|_| self.points.calibrate(p)),
            );
        }
    }

    /// The exit code with `--calibrate P`, from `min_accuracy`'s (0 or 4): 2 when the
    /// results' verdict has no threshold to calibrate, 4 when no threshold reaches P (or
    /// no item has an expected answer); the message goes to stderr.
    pub fn calibrate_gate(&self, min_accuracy: u8) -> u8 {
        let Some(p) = self.calibrate else {
            return min_accuracy;
        };
        match (&self.calibration, &self.risk_coverage_note) {
            (Some(Some(c)), _) => {
                // Above the runs' own threshold, a run closed early may look FINAL wrongly.
                if let Some(t) = &self.risk_coverage
                    && t.closed_early > 0
                    && !t.rows.iter().any(|r| r.run && r.threshold >= c.beta2)
                {
                    stderr_line!(
                        "warning: --calibrate {p}: {} of the runs closed early (calls not awaited), so this threshold, above theirs, may be too low; run eval with --calibrate (or --wait-all) for an exact one",
                        t.closed_early
                    );
                }
                min_accuracy
            }
            (_, Some(why)) => {
                stderr_line!("--calibrate {p}: nothing to calibrate: {why}");
                2
            }
            _ if self.accuracy.checked == 0 => {
                stderr_line!("--calibrate {p}: no item with an expected answer");
                4
            }
            _ => {
                stderr_line!(
                    "--calibrate {p}: no {} gives FINAL precision {p} on the {} labeled items",
                    self.calibrated_parameter(),
                    self.accuracy.checked
                );
                4
            }
        }
    }

    /// What `--calibrate` puts into the weights file `--learn-weights` writes (its
    /// `calibration`, used as `beta_2`): the threshold found, when it is a `beta_2` (a
    /// vote's quorum share is not). It holds for the seat weights these runs used.
    pub fn calibration_for_weights(&self) -> Option<Calibration> {
        let found = self.calibration.clone().flatten()?;
        (self.calibrated_parameter() == "beta_2").then_some(found)
    }

    /// The setting a calibrated threshold is for (`beta_2`, `quorum_share`).
    pub fn calibrated_parameter(&self) -> &'static str {
        self.risk_coverage
            .as_ref()
            .map_or("beta_2", |t| t.parameter)
    }

    pub fn render_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a summary always serializes");
        s.push('\n');
        s
    }

    pub fn render_text(&self, style: Style) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "items: {}, finished {}, unfinished {}, malformed lines {}{}",
            self.items,
            self.finished,
            self.unfinished,
            self.malformed,
            if self.resumed > 0 {
                format!(" ({} from the earlier --out)", self.resumed)
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "FINAL: {}", share(self.final_, self.finished));
        if self.accuracy.checked == 0 {
            let _ = writeln!(out, "accuracy: no item with an expected answer");
        } else {
            let _ = writeln!(out, "accuracy: {}", tally(&self.accuracy));
            let _ = writeln!(
                out,
                "accuracy of FINAL items: {}",
                tally(&self.accuracy_final)
            );
            let _ = writeln!(
                out,
                "passed (--require): {} of {}",
                self.passed, self.accuracy.checked
            );
            for (name, t) in &self.categories {
                let _ = writeln!(out, "  category {}: {}", visible(name), tally(t));
            }
            for (name, t) in &self.seats {
                let _ = writeln!(
                    out,
                    "  seat {}: right on {} labeled items, on {} it answered{}",
                    visible(name),
                    tally(&t.overall),
                    share(t.overall.matched, t.answered),
                    t.estimated
                        .map_or(String::new(), |e| format!(", estimated {:.1}%", 100.0 * e))
                );
            }
            match (&self.risk_coverage, &self.risk_coverage_note) {
                (Some(table), _) => chart::render(&mut out, table, style),
                (None, Some(why)) => {
                    let _ = writeln!(out, "risk-coverage of FINAL: none ({why})");
                }
                (None, None) => {}
            }
            if let (Some(found), Some(p)) = (&self.calibration, self.calibrate) {
                let _ = writeln!(
                    out,
                    "{}",
                    chart::calibration(self.calibrated_parameter(), p, found.as_ref())
                );
            }
        }
        let _ = writeln!(
            out,
            "tokens: {} (input {}, output {})",
            self.total_tokens, self.input_tokens, self.output_tokens
        );
        let _ = if self.cost_complete {
            writeln!(out, "cost: ${:.6}", self.cost_usd)
        } else {
            writeln!(
                out,
                "cost: at least ${:.6} (some items unpriced)",
                self.cost_usd
            )
        };
        match self.wall_ms {
            Some(wall) => {
                let _ = writeln!(
                    out,
                    "time: {:.1} s wall, {:.1} s of item runs",
                    wall / 1000.0,
                    self.item_ms / 1000.0
                );
            }
            None => {
                let _ = writeln!(out, "time: {:.1} s of item runs", self.item_ms / 1000.0);
            }
        }
        out
    }
}

fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    crate::report::text::visible(text)
}

fn share(n: u64, of: u64) -> String {
    if of == 0 {
        format!("{n} of {of}")
    } else {
        format!("{n} of {of} ({:.1}%)", 100.0 * n as f64 / of as f64)
    }
}

fn tally(t: &Tally) -> String {
    share(t.matched, t.checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(status: &str, matched: Option<bool>, category: Option<&str>) -> Value {
        let mut l = json!({
            "id": "x",
            "report": {"status": status, "usage": {"input_tokens": 10, "output_tokens": 2,
                "total_tokens": 12, "cost_usd": null}, "elapsed_ms": 5.0},
        });
        if let Some(m) = matched {
            l["check"] = json!({"matched": m, "passed": m && status == "final",
                "seats": [{"name": "a", "matched": m}, {"name": "b", "matched": true}]});
        }
        if let Some(c) = category {
            l["category"] = json!(c);
        }
        l
    }

    #[test]
    fn results_are_tallied_overall_for_final_items_per_category_and_per_seat() {
        let mut s = Summary::new();
        s.add(&line("final", Some(true), Some("geo")));
        s.add(&line("no_consensus", Some(false), Some("geo")));
        s.add(&line("final", None, None));
        s.add_unfinished();
        assert_eq!((s.items, s.finished, s.unfinished, s.final_), (4, 3, 1, 2));
        assert_eq!(s.final_rate, Some(2.0 / 3.0));
        assert_eq!((s.accuracy.checked, s.accuracy.matched), (2, 1));
        assert_eq!((s.accuracy_final.checked, s.accuracy_final.matched), (1, 1));
        assert_eq!(s.categories["geo"].accuracy, Some(0.5));
        assert_eq!(s.seats["a"].overall.matched, 1);
        assert_eq!(s.seats["b"].overall.matched, 2);
        assert_eq!(s.passed, 1);
        assert_eq!(s.total_tokens, 36);
        assert!(!s.cost_complete);
        assert!(s.meets(0.5) && !s.meets(0.51));
        // No checked item: no accuracy, and the gate fails.
        assert!(!Summary::new().meets(0.0));
    }

    #[test]
    fn a_seat_is_counted_over_the_items_it_answered_next_to_its_estimate() {
        let mut s = Summary::new();
        let mut answered = line("final", Some(true), None);
        answered["report"]["participants"] =
            json!([{"name": "a", "key": "x"}, {"name": "b", "key": "x"}]);
        let mut silent = line("final", Some(false), None);
        silent["report"]["participants"] =
            json!([{"name": "a", "key": null}, {"name": "b", "key": "y"}]);
        s.add(&answered);
        s.add(&silent);
        let a = s.seats["a"];
        assert_eq!(
            (a.overall.checked, a.overall.matched, a.answered),
            (2, 1, 1)
        );
        assert_eq!(
            (a.overall.accuracy, a.accuracy_answered),
            (Some(0.5), Some(1.0))
        );
        let weights: WeightsFile = serde_json::from_value(json!({
            "version": 1, "method": "test", "items": 2,
            "seats": {"a": {"accuracy": 0.9, "weight": 2.0, "items": 2},
                      "b": {"accuracy": 0.25, "weight": 0.1, "items": 2}},
        }))
        .unwrap();
        s.conclude(Some(&weights), None);
        assert_eq!(s.seats["a"].estimated, Some(0.9));
        let text = s.render_text(Style::default());
        assert!(
            text.contains("  seat a: right on 1 of 2 (50.0%) labeled items, on 1 of 1 (100.0%) it answered, estimated 90.0%\n"),
            "{text}"
        );
        assert!(text.contains("seat b: right on 2 of 2 (100.0%) labeled items, on 2 of 2 (100.0%) it answered, estimated 25.0%\n"), "{text}");
        let json: Value = serde_json::from_str(&s.render_json()).unwrap();
        assert_eq!(json["seats"]["a"]["estimated"], 0.9);
        assert_eq!(json["seats"]["a"]["accuracy_answered"], 1.0);
        // These lines state no verdict rule: no table, and the reason.
        assert_eq!(json["risk_coverage"], Value::Null);
        assert!(
            text.contains(
                "risk-coverage of FINAL: none (the results do not state their verdict rule)"
            ),
            "{text}"
        );
    }
}
