use serde_json::json;

use super::*;

/// A labeled result line: metastable (support, at least `beta_2`), the winner `w` with
/// `support`, and whether its answer matched.
fn line(status: &str, support: Option<f64>, right: bool) -> Value {
    rule_line("support", 0.8, false, status, support, right)
}

fn rule_line(
    measure: &str,
    threshold: f64,
    strict: bool,
    status: &str,
    support: Option<f64>,
    right: bool,
) -> Value {
    json!({
        "id": "x",
        "check": {"matched": right},
        "report": {
            "status": status,
            "winner": support.map(|_| "w"),
            "live": 3,
            "participants": [
                {"name": "l", "support": 0.1, "score": 0.1},
                {"name": "w", "support": support, "score": support.map(|s| s / 2.0)},
            ],
            "verdict_rule": {"measure": measure, "threshold": threshold, "strict": strict},
        },
    })
}

fn points(lines: &[Value]) -> Points {
    let mut p = Points::default();
    for l in lines {
        p.add(l);
    }
    p
}

fn row(table: &RiskCoverage, threshold: f64) -> &Row {
    table
        .rows
        .iter()
        .find(|r| (r.threshold - threshold).abs() < 1e-9 && !r.strict)
        .unwrap_or_else(|| panic!("no row {threshold}: {table:?}"))
}

const THIRD: f64 = 1.0 / 3.0;

/// 3/3 right twice, 3/3 wrong once, 2/3 right once and wrong twice, and a tie.
fn panel() -> Vec<Value> {
    vec![
        line("final", Some(1.0), true),
        line("final", Some(1.0), true),
        line("final", Some(1.0), false),
        line("no_consensus", Some(2.0 * THIRD), true),
        line("no_consensus", Some(2.0 * THIRD), false),
        line("no_consensus", Some(2.0 * THIRD), false),
        line("no_consensus", None, false),
    ]
}

#[test]
fn the_table_counts_final_and_right_items_per_threshold_over_the_labeled_ones() {
    let table = points(&panel()).table().unwrap();
    assert_eq!(
        (table.measure.as_str(), table.parameter),
        ("support", "beta_2")
    );
    assert_eq!(table.labeled, 7);
    // 0.50..1.00 by 0.05 (the run's 0.80 among them).
    assert_eq!(table.rows.len(), 11);
    let low = row(&table, 0.5);
    assert_eq!((low.final_, low.right), (6, 3));
    assert_eq!(low.coverage, 6.0 / 7.0);
    assert_eq!(low.precision, Some(0.5));
    // 2/3 is FINAL at 0.65 and not at 0.70.
    assert_eq!(row(&table, 0.65).final_, 6);
    let high = row(&table, 0.7);
    assert_eq!((high.final_, high.right), (3, 2));
    assert_eq!(high.precision, Some(2.0 / 3.0));
    let run: Vec<f64> = table
        .rows
        .iter()
        .filter(|r| r.run)
        .map(|r| r.threshold)
        .collect();
    assert_eq!(run, [0.8]);
    // The run's own row agrees with the run's FINAL count.
    assert_eq!(row(&table, 0.8).final_, 3);
    assert_eq!(row(&table, 1.0).final_, 3);
}

#[test]
fn a_threshold_exactly_at_a_support_value_makes_it_final() {
    let lines = [
        line("final", Some(0.8), true),
        line("final", Some(4.0 / 5.0), true),
        line("no_consensus", Some(0.75), false),
    ];
    let table = points(&lines).table().unwrap();
    assert_eq!(row(&table, 0.8).final_, 2);
    assert_eq!(row(&table, 0.75).final_, 3);
    assert_eq!(row(&table, 0.85).final_, 0);
    assert_eq!(row(&table, 0.85).precision, None);
    let c = points(&lines).calibrate(1.0).unwrap();
    assert_eq!((c.beta2, c.precision, c.items), (0.8, 1.0, 3));
    assert_eq!(c.coverage, 2.0 / 3.0);
}

#[test]
fn calibrate_picks_the_smallest_observed_value_reaching_the_precision() {
    let p = points(&panel());
    // 3/6 at 2/3, 2/3 at 1: 0.5 is reached at the lowest support already.
    let c = p.calibrate(0.5).unwrap();
    assert_eq!(c.beta2, 2.0 * THIRD);
    assert_eq!((c.target, c.precision, c.coverage), (0.5, 0.5, 6.0 / 7.0));
    let c = p.calibrate(0.6).unwrap();
    assert_eq!(
        (c.beta2, c.precision, c.coverage),
        (1.0, 2.0 / 3.0, 3.0 / 7.0)
    );
    // Exactly at the precision reached counts.
    assert_eq!(p.calibrate(2.0 / 3.0).unwrap().beta2, 1.0);
    // No threshold reaches 0.9.
    assert_eq!(p.calibrate(0.9), None);
}

#[test]
fn all_right_calibrates_to_the_lowest_support_and_none_or_empty_to_nothing() {
    let all = [
        line("final", Some(1.0), true),
        line("no_consensus", Some(0.6), true),
        line("degraded", Some(1.0), true),
    ];
    let c = points(&all).calibrate(1.0).unwrap();
    // The degraded run is never FINAL: it is labeled but not covered.
    assert_eq!((c.beta2, c.coverage, c.items), (0.6, 2.0 / 3.0, 3));
    let none = [
        line("final", Some(1.0), false),
        line("final", Some(0.9), false),
    ];
    assert_eq!(points(&none).calibrate(0.01), None);
    assert_eq!(Points::default().calibrate(0.5), None);
    assert_eq!(
        Points::default().table(),
        Err("no item with an expected answer".into())
    );
    // Lines without an expected answer are not counted.
    let mut unlabeled = line("final", Some(1.0), true);
    unlabeled["check"] = Value::Null;
    assert!(points(&[unlabeled]).table().is_err());
}

#[test]
fn ties_and_items_without_a_winner_are_never_final() {
    let lines = [
        line("no_consensus", None, false),
        line("no_consensus", None, true),
    ];
    let table = points(&lines).table().unwrap();
    assert!(
        table
            .rows
            .iter()
            .all(|r| r.final_ == 0 && r.precision.is_none())
    );
    assert_eq!(points(&lines).calibrate(0.1), None);
}

#[test]
fn a_strict_own_rule_gets_its_own_row_and_an_off_grid_threshold_too() {
    // vote's majority: more than half; a half is not FINAL there, but is at 0.50.
    let lines = [
        rule_line("share", 0.5, true, "no_consensus", Some(0.5), true),
        rule_line("share", 0.5, true, "final", Some(1.0), true),
    ];
    let table = points(&lines).table().unwrap();
    assert_eq!(table.parameter, "quorum_share");
    assert_eq!(table.rows.len(), 12);
    assert_eq!(row(&table, 0.5).final_, 2);
    let strict = table.rows.iter().find(|r| r.strict).unwrap();
    assert!(strict.run && strict.threshold == 0.5 && strict.final_ == 1);
    // A beta_2 off the grid is a row of its own, in order.
    let lines = [rule_line("support", 0.67, false, "final", Some(0.7), true)];
    let table = points(&lines).table().unwrap();
    let thresholds: Vec<f64> = table.rows.iter().map(|r| r.threshold).collect();
    assert_eq!(&thresholds[3..6], [0.65, 0.67, 0.7]);
    assert!(table.rows[4].run);
    // Runs with different thresholds have no row of their own.
    let lines = [
        rule_line("support", 0.8, false, "final", Some(0.9), true),
        rule_line("support", 0.9, false, "final", Some(0.9), true),
    ];
    assert!(points(&lines).table().unwrap().rows.iter().all(|r| !r.run));
}

#[test]
fn each_measure_is_read_where_its_strategy_keeps_it() {
    // hanzo: the winner's score (here support / 2).
    let table = points(&[rule_line("score", 0.8, false, "final", Some(1.0), true)])
        .table()
        .unwrap();
    assert_eq!((row(&table, 0.5).final_, row(&table, 0.55).final_), (1, 0));
    // rank: a lone live seat is FINAL whatever its ballots.
    let mut lone = rule_line("first_places", 0.8, false, "final", Some(0.0), true);
    lone["report"]["live"] = json!(1);
    assert_eq!(points(&[lone]).table().unwrap().rows[10].final_, 1);
}

#[test]
fn verdicts_without_a_share_and_mixed_measures_have_no_table() {
    let bft = rule_line("attestations", 0.75, false, "final", Some(1.0), true);
    assert_eq!(
        points(std::slice::from_ref(&bft)).table(),
        Err("the verdict counts attestations, not a share a threshold can re-apply".into())
    );
    let mixed = [bft, line("final", Some(1.0), true)];
    assert_eq!(
        points(&mixed).table(),
        Err(
            "the results were decided by different verdict measures (attestations, support)".into()
        )
    );
    let mut old = line("final", Some(1.0), true);
    old["report"]["verdict_rule"] = Value::Null;
    assert!(points(&[old]).table().unwrap_err().contains("verdict rule"));
}

#[test]
fn the_table_is_plain_on_a_pipe_with_bars_on_a_terminal_and_colour_when_allowed() {
    use super::super::chart::{Style, render};
    let table = points(&panel()).table().unwrap();
    let mut plain = String::new();
    render(&mut plain, &table, Style::default());
    assert!(
        plain.starts_with("risk-coverage of FINAL over 7 labeled items"),
        "{plain}"
    );
    assert!(
        plain.contains("  >=0.50         6      3     85.7%      50.0%\n"),
        "{plain}"
    );
    assert!(
        plain.contains("  >=0.80         3      2     42.9%      66.7%  <- this run\n"),
        "{plain}"
    );
    assert!(!plain.contains('#') && !plain.contains('\x1b'), "{plain}");
    let mut bars = String::new();
    render(
        &mut bars,
        &table,
        Style {
            bars: true,
            color: false,
        },
    );
    assert!(
        bars.contains("  >=0.50         6      3  [#################...]  85.7%  [##########..........]  50.0%\n"),
        "{bars}"
    );
    assert!(!bars.contains('\x1b'));
    let mut color = String::new();
    render(
        &mut color,
        &table,
        Style {
            bars: true,
            color: true,
        },
    );
    assert!(color.contains("\x1b[32m##########\x1b[0m"), "{color}");
}

#[test]
fn runs_that_closed_early_are_counted_and_noted_under_the_table() {
    let mut early = line("final", Some(1.0), true);
    early["report"]["rounds"] = json!([{"participants": [
        {"participant": "w", "called": true},
        {"participant": "l", "called": true, "not_awaited": true},
    ]}]);
    let mut waited = line("final", Some(1.0), true);
    waited["report"]["rounds"] = json!([{"participants": [{"participant": "w"}]}]);
    let table = points(&[early, waited]).table().unwrap();
    assert_eq!(table.closed_early, 1);
    let mut text = String::new();
    super::super::chart::render(&mut text, &table, Default::default());
    assert!(
        text.contains("  note: 1 of these runs closed early"),
        "{text}"
    );
    let table = points(&panel()).table().unwrap();
    assert_eq!(table.closed_early, 0);
    let mut text = String::new();
    super::super::chart::render(&mut text, &table, Default::default());
    assert!(!text.contains("note"), "{text}");
}

#[test]
fn a_calibration_goes_to_a_weights_file_only_when_it_is_a_beta_2() {
    use super::super::summary::Summary;
    let summary = |lines: &[Value], p: Option<f64>| {
        let mut s = Summary::new();
        for l in lines {
            s.add(l);
        }
        s.conclude(None, p);
        s
    };
    let found = summary(&panel(), Some(0.6))
        .calibration_for_weights()
        .unwrap();
    assert_eq!((found.beta2, found.target), (1.0, 0.6));
    assert_eq!(summary(&panel(), Some(0.9)).calibration_for_weights(), None);
    assert_eq!(summary(&panel(), None).calibration_for_weights(), None);
    let vote = [rule_line("share", 0.5, true, "final", Some(1.0), true)];
    let s = summary(&vote, Some(0.9));
    assert_eq!(s.calibration.clone().flatten().unwrap().beta2, 1.0);
    assert_eq!(s.calibration_for_weights(), None);
}

#[test]
fn calibrate_exit_codes_keep_min_accuracy_and_say_what_failed() {
    use super::super::summary::Summary;
    let gate = |lines: &[Value], p: Option<f64>, min_accuracy: u8| {
        let mut s = Summary::new();
        for l in lines {
            s.add(l);
        }
        s.conclude(None, p);
        s.calibrate_gate(min_accuracy)
    };
    // Reached: --min-accuracy's code stands.
    assert_eq!(gate(&panel(), Some(0.6), 0), 0);
    assert_eq!(gate(&panel(), Some(0.6), 4), 4);
    assert_eq!(gate(&panel(), None, 4), 4);
    // Not reached, or nothing labeled: 4.
    assert_eq!(gate(&panel(), Some(0.9), 0), 4);
    let mut unlabeled = line("final", Some(1.0), true);
    unlabeled["check"] = Value::Null;
    assert_eq!(gate(&[unlabeled], Some(0.5), 0), 4);
    // Nothing to calibrate: 2, whatever else.
    let bft = rule_line("attestations", 0.75, false, "final", Some(1.0), true);
    assert_eq!(gate(&[bft], Some(0.5), 4), 2);
}
