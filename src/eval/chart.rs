//! The risk–coverage table as text: a plain table for pipes and files, with bars on a
//! terminal (coloured unless NO_COLOR is set or TERM is dumb).

use std::fmt::Write as _;
use std::io::IsTerminal;

use super::calibrate::{RiskCoverage, Row};
use crate::weights::Calibration;

/// Width of a full bar, in characters.
const BAR: usize = 20;

/// How the table is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Bars for coverage and precision (a terminal).
    pub bars: bool,
    /// ANSI colour on the bars and the run's own row.
    pub color: bool,
}

impl Style {
    /// For standard output as it is: bars on a terminal, colour unless NO_COLOR is set
    /// or TERM is dumb; the plain table on a pipe or a file.
    pub fn stdout() -> Style {
        let terminal = std::io::stdout().is_terminal();
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Style {
            bars: terminal,
            color: terminal && !set("NO_COLOR") && !dumb,
        }
    }
}

/// What a measure is, for the table's heading.
fn what(measure: &str) -> &'static str {
    match measure {
        "support" => "the winner's support (share of the live seats' weight agreeing with it)",
        "share" => "the winning group's share of the live seats' weight",
        "first_places" => "the share of readable ballots ranking the winner's answer first",
        "score" => "the winner's confidence × luminance",
        _ => "the verdict's measure",
    }
}

/// Appends the table to `out`.
pub fn render(out: &mut String, table: &RiskCoverage, style: Style) {
    let _ = writeln!(
        out,
        "risk-coverage of FINAL over {} labeled items: FINAL when {} reaches the threshold ({}):",
        table.labeled,
        what(&table.measure),
        table.parameter
    );
    let _ = writeln!(
        out,
        "  {:<9} {:>6} {:>6}  {:<w$}  precision",
        table.parameter,
        "FINAL",
        "right",
        "coverage",
        w = if style.bars { BAR + 9 } else { 8 }
    );
    for row in &table.rows {
        let _ = writeln!(out, "{}", row_text(row, style));
    }
    if table.closed_early > 0 {
        let _ = writeln!(
            out,
            "  note: {} of these runs closed early (calls not awaited): their {} counts only the seats that answered, so rows above this run's threshold may count them FINAL wrongly; --wait-all (implied by eval --calibrate) makes every row exact",
            table.closed_early,
            table.measure.replace('_', " ")
        );
    }
}

fn row_text(row: &Row, style: Style) -> String {
    let threshold = format!(
        "{}{:.2}",
        if row.strict { ">" } else { ">=" },
        row.threshold
    );
    let coverage = percent(Some(row.coverage));
    let precision = percent(row.precision);
    let mut line = if style.bars {
        format!(
            "  {threshold:<9} {:>6} {:>6}  {} {coverage:>6}  {} {precision:>6}",
            row.final_,
            row.right,
            bar(row.coverage, style.color, "36"),
            bar(row.precision.unwrap_or(0.0), style.color, "32"),
        )
    } else {
        format!(
            "  {threshold:<9} {:>6} {:>6}  {coverage:>8}  {precision:>9}",
            row.final_, row.right
        )
    };
    if row.run {
        line.push_str(&paint(style.color, "1", "  <- this run"));
    }
    line
}

/// `[#####.....]`, the filled part in `color` (an SGR code) when colour is on.
fn bar(share: f64, color: bool, code: &str) -> String {
    let filled = ((share.clamp(0.0, 1.0) * BAR as f64).round() as usize).min(BAR);
    let (full, empty) = ("#".repeat(filled), ".".repeat(BAR - filled));
    format!(
        "[{}{}]",
        paint(color, code, &full),
        paint(color, "2", &empty)
    )
}

/// `text` in the SGR `code` when colour is on (and there is text).
fn paint(color: bool, code: &str, text: &str) -> String {
    if color && !text.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_string(), |s| format!("{:.1}%", 100.0 * s))
}

/// The line `--calibrate P` prints.
pub fn calibration(parameter: &str, target: f64, found: Option<&Calibration>) -> String {
    match found {
        Some(c) => {
            let final_ = (c.coverage * c.items as f64).round() as u64;
            let right = (c.precision * final_ as f64).round() as u64;
            format!(
                "calibrated FINAL for precision {target}: {parameter} {} (FINAL on {final_} of {} labeled items, coverage {}; {right} right, precision {})",
                c.beta2,
                c.items,
                percent(Some(c.coverage)),
                percent(Some(c.precision)),
            )
        }
        None => format!(
            "calibrated FINAL for precision {target}: no {parameter} reaches it on the labeled items"
        ),
    }
}
