//! The human-readable report. Everything it writes passes [`visible`] (through
//! [`Out`]), so an answer, an error message or a seat name cannot steer the terminal.

use std::fmt::Write;

use super::terminal::{Out, Paint};
pub use super::terminal::{Style, visible};
use super::{ParticipantReport, Report, Status, rules};
use crate::usage::Usage;

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 1000.0 => format!("{v:.0} ms"),
        Some(v) => format!("{:.1} s", v / 1000.0),
    }
}

/// Token counts as `IN in / OUT out tokens` (`?` for an unknown count), or `tokens
/// unknown`. Every text path that shows token counts writes them with this.
pub fn tokens(usage: &Usage) -> String {
    match (usage.input_tokens, usage.output_tokens) {
        (None, None) => "tokens unknown".to_string(),
        (i, o) => {
            let count = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
            format!("{} in / {} out tokens", count(i), count(o))
        }
    }
}

fn one_line(text: &str, width: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > width {
        let cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// `-q`: the synthesis alone, one trailing newline; empty when there is none.
pub fn render_quiet(report: &Report) -> String {
    match &report.synthesis {
        Some(s) => format!("{}\n", visible(s.trim_end())),
        None => String::new(),
    }
}

/// The default report: verdict, answer, synthesis, the table of participants, what
/// failed, what the columns mean, and the run's totals.
pub fn render(report: &Report, style: Style) -> String {
    let mut out = Out::new(style);
    verdict(&mut out, report);
    expectation(&mut out, report);
    scripted(&mut out, report);
    strategy_details(&mut out, report);
    answer(&mut out, report);
    out.push_newline();
    table(&mut out, report);
    failures(&mut out, report);
    legend(&mut out, report);
    footer(&mut out, report);
    weights(&mut out, report);
    out.finish()
}

fn verdict(out: &mut Out, report: &Report) {
    let (paint, mark) = match report.status {
        Status::Final => (Paint::Green, "✔"),
        Status::NoConsensus => (Paint::Yellow, "✘"),
        _ => (Paint::Red, "✘"),
    };
    out.paint(paint, &format!("{mark} {}", report.status.label()));
    if matches!(report.status, Status::Final | Status::NoConsensus) {
        let answered = format!("{} of {} answered", report.live, report.participants.len());
        match rules::verdict(report) {
            Some(rule) => {
                let _ = write!(out, "  {answered}; {rule}");
            }
            None => {
                let _ = write!(out, "  {answered}");
            }
        }
    }
    out.push_newline();
    if let Some(error) = &report.error {
        out.paint(Paint::Red, &format!("  {error}"));
        out.push_newline();
    }
    // How the result was reached, when a reader should know (a bft panel that tolerates
    // no fault...).
    for note in &report.details.notes {
        out.paint(Paint::Yellow, "  Note:");
        let _ = writeln!(out, " {note}");
    }
}

/// The `--expect…` check and its result, right under the verdict: `✔ expected
/// "Canberra": matched`, `✘ expected "Sydney": the answer was "Canberra"`.
fn expectation(out: &mut Out, report: &Report) {
    let Some(check) = &report.expect else {
        return;
    };
    let result = if check.passed {
        "matched".to_string()
    } else if !check.matched {
        match &report.answer {
            Some(answer) => format!("the answer was \"{}\"", one_line(answer, 80)),
            None => "there was no answer".to_string(),
        }
    } else {
        let support = match (check.require, report.winner_support()) {
            (crate::expect::Require::Majority, Some(s)) => {
                format!(
                    " and the winner's support, {}, is not more than half",
                    pct(Some(s))
                )
            }
            _ => String::new(),
        };
        format!(
            "matched, but the decision is {}{support} (--require {})",
            report.status.label(),
            check.require
        )
    };
    let (paint, mark) = if check.passed {
        (Paint::Green, "✔")
    } else {
        (Paint::Red, "✘")
    };
    out.paint(paint, &format!("{mark} expected {}:", check.describe()));
    let _ = writeln!(out, " {result}");
}

/// What the strategy found beyond the verdict: ties, dropped ballots, terms, the bft
/// proposal and suspects.
fn strategy_details(out: &mut Out, report: &Report) {
    let details = &report.details;
    if !details.tie.is_empty() {
        let sides: Vec<String> = details
            .groups
            .iter()
            .filter(|g| details.tie.contains(&g.key))
            .map(|g| format!("{} ({})", one_line(&g.key, 60), g.members.join(", ")))
            .collect();
        out.paint(Paint::Bold, "Tie:");
        let _ = writeln!(out, " {} — no winner", sides.join(" vs "));
    }
    for b in &details.ballots {
        if let Some(why) = &b.dropped {
            out.paint(Paint::Yellow, "Ballot dropped:");
            let _ = writeln!(out, " {}: {why}", b.voter);
        }
    }
    for t in &details.terms {
        out.paint(Paint::Bold, &format!("Term {}:", t.term));
        let _ = writeln!(
            out,
            " {} led, proposed {}; accepted by {}, rejected by {}{}",
            t.leader,
            t.proposal
                .as_deref()
                .map_or("an answer without a key".into(), |p| one_line(p, 40)),
            t.accepted_by.len(),
            t.rejected_by.len(),
            if t.committed { " — committed" } else { "" }
        );
    }
    if let Some(digest) = &details.digest {
        let count = |phase: &str| {
            details
                .attestations
                .iter()
                .filter(|a| a.phase == phase && a.verdict == Some("AGREE"))
                .count()
        };
        out.paint(Paint::Bold, "Proposal:");
        let _ = writeln!(
            out,
            " sha256 {}…; AGREE in prepare {}, in commit {}",
            digest.chars().take(12).collect::<String>(),
            count("prepare"),
            count("commit")
        );
    }
    for s in &details.suspects {
        out.paint(Paint::Yellow, "Suspected faulty:");
        let _ = writeln!(out, " {}: {}", s.participant, s.reasons.join("; "));
    }
}

fn answer(out: &mut Out, report: &Report) {
    if let Some(winner) = &report.winner {
        out.paint(Paint::Bold, "Winner:");
        let _ = writeln!(
            out,
            " {winner}{}",
            if standing_cut(report, winner) {
                " (its answer was cut at the token limit)"
            } else {
                ""
            }
        );
    }
    if let Some(answer) = &report.answer {
        out.paint(Paint::Bold, "Answer:");
        let _ = writeln!(out, " {}", one_line(answer, 200));
    }
    if let Some(synthesis) = &report.synthesis {
        let title = match (report.synthesis_source, &report.synthesizer) {
            ("synthesizer", Some(model)) => format!("Synthesis (written by {model}):"),
            (_, Some(model)) => format!(
                "Synthesis (the winner's answer, verbatim: {model} failed: {}):",
                report.synthesis_error.as_deref().unwrap_or("no answer")
            ),
            _ => "Synthesis (the winner's answer, verbatim):".to_string(),
        };
        out.push_newline();
        out.paint(Paint::Bold, &title);
        out.push_newline();
        for line in synthesis.trim_end().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
}

/// Failed calls: the table shows only the latest answer, so a seat that failed and
/// recovered would leave no trace there.
fn calls_cell(p: &ParticipantReport) -> String {
    match p.errors.len() {
        0 => p.calls.to_string(),
        n => format!("{} ({n} failed)", p.calls),
    }
}

fn table(out: &mut Out, report: &Report) {
    let header = [
        "",
        "participant",
        "model",
        "conf",
        "support",
        "lum",
        "latency",
        "calls",
        "answer / error",
    ]
    .map(String::from);
    let rows: Vec<[String; 9]> = report
        .participants
        .iter()
        .map(|p| {
            let mark = if report.winner.as_deref() == Some(p.name.as_str()) {
                "*"
            } else {
                " "
            };
            let last = match (&p.key, p.errors.last()) {
                (Some(key), _) if p.live && standing_cut(report, &p.name) => {
                    format!("{} (cut at the token limit)", one_line(key, 40))
                }
                (Some(key), _) if p.live => one_line(key, 40),
                _ if not_needed(report, &p.name) => "not needed".into(),
                (_, Some(e)) => one_line(e, 60),
                _ => "-".into(),
            };
            // Widths are measured on what the terminal will show.
            [
                mark.into(),
                if p.stale {
                    format!("{} (stale)", p.name)
                } else {
                    p.name.clone()
                },
                format!("{}:{}", p.provider, p.model),
                format!("{:.2}", p.confidence),
                pct(p.support),
                format!("{:.2}", p.luminance),
                ms(p.latency_ms),
                calls_cell(p),
                last,
            ]
            .map(|cell| visible(&cell).into_owned())
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    out.paint(Paint::Dim, &line(&header));
    out.push_newline();
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
}

/// Every failed call, by seat, and how the seat stands at the end.
fn failures(out: &mut Out, report: &Report) {
    let failed: Vec<&ParticipantReport> = report
        .participants
        .iter()
        .filter(|p| !p.errors.is_empty())
        .collect();
    if failed.is_empty() {
        return;
    }
    out.push_newline();
    out.paint(Paint::Yellow, "Failed calls:");
    out.push_newline();
    for p in failed {
        let standing = match (
            calls_of(report, &p.name, true),
            calls_of(report, &p.name, false),
        ) {
            (None, _) => "never answered".to_string(),
            (Some(ok), Some(failed)) if ok > failed => format!("recovered in round {ok}"),
            (Some(ok), _) if p.live => format!("its answer of round {ok} stands"),
            (Some(ok), _) => format!("absent at the end; last answered in round {ok}"),
        };
        let _ = writeln!(
            out,
            "  {}: {}; {standing}",
            p.name,
            p.errors
                .iter()
                .map(|e| one_line(e, 100))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

/// Whether the answer `name` stands on stopped at the token limit: kept, but the reader
/// should know it may be incomplete (docs/protocol.md P10).
fn standing_cut(report: &Report, name: &str) -> bool {
    report
        .rounds
        .iter()
        .rev()
        .flat_map(|r| &r.participants)
        .find(|e| e.participant == name && e.called && e.error.is_none() && e.answer.is_some())
        .is_some_and(|e| e.cut)
}

/// Whether the latest call of `name` was cancelled because the outcome was certain
/// without it.
fn not_needed(report: &Report, name: &str) -> bool {
    report
        .rounds
        .iter()
        .rev()
        .flat_map(|r| &r.participants)
        .find(|e| e.participant == name && e.called)
        .is_some_and(|e| e.not_awaited)
}

/// The last round in which `name` was called and answered (`answered`) or failed.
fn calls_of(report: &Report, name: &str, answered: bool) -> Option<usize> {
    report
        .rounds
        .iter()
        .rev()
        .find(|r| {
            r.participants.iter().any(|e| {
                e.participant == name && e.called && !e.not_awaited && e.error.is_none() == answered
            })
        })
        .map(|r| r.round)
}

/// What the columns mean for the strategy that ran.
fn legend(out: &mut Out, report: &Report) {
    out.push_newline();
    let mut legend = rules::legend(report).to_vec();
    legend.push(("latency", "mean time per call"));
    legend.push(("*", "the winner"));
    if report.participants.iter().any(|p| p.stale) {
        legend.push((
            "(stale)",
            "its latest call failed; its earlier answer stands and still counts",
        ));
    }
    for (i, (column, meaning)) in legend.iter().enumerate() {
        let lead = if i == 0 { "Columns:" } else { "" };
        out.paint(Paint::Dim, &format!("{lead:<9}{column:<8} {meaning}"));
        out.push_newline();
    }
}

/// Says, right under the verdict, which seats are scripted rather than real models: their
/// latencies and answers would otherwise look measured.
fn scripted(out: &mut Out, report: &Report) {
    let scripted: Vec<&str> = report
        .participants
        .iter()
        .filter(|p| p.kind == "mock")
        .map(|p| p.name.as_str())
        .collect();
    let note = if scripted.is_empty() {
        return;
    } else if scripted.len() == report.participants.len() {
        "Scripted panel (provider mock): answers, latencies and token counts come from the config file; nothing was sent over a network.".to_string()
    } else {
        format!(
            "Scripted seats (provider mock): {}; their answers, latencies and token counts come from the config file.",
            scripted.join(", ")
        )
    };
    out.paint(Paint::Dim, &note);
    out.push_newline();
}

fn footer(out: &mut Out, report: &Report) {
    let usage = Usage {
        input_tokens: report.usage.input_tokens,
        output_tokens: report.usage.output_tokens,
        ..Usage::default()
    };
    let tokens = match report.usage.cost_usd {
        Some(usd) => format!("{} · ${usd:.4}", tokens(&usage)),
        None => tokens(&usage),
    };
    out.push_newline();
    out.paint(
        Paint::Dim,
        &format!(
            "{} · seed {} · {} sampling round(s) · {} call(s) · {} · quorum {} · {}",
            report.strategy,
            report.seed,
            report.rounds_executed,
            report.usage.calls,
            tokens,
            report.quorum,
            ms(Some(report.elapsed_ms))
        ),
    );
    out.push_newline();
}

/// `--weights`: the weights the seats were given, and where beta_2 came from.
fn weights(out: &mut Out, report: &Report) {
    if let Some(w) = &report.weights {
        out.paint(Paint::Dim, &w.line());
        out.push_newline();
        let strategy = report.strategy.parse();
        if let Some(warning) = strategy
            .ok()
            .and_then(|s| super::weights_warning(s, &report.participants))
        {
            out.paint(Paint::Yellow, &format!("warning: {warning}"));
            out.push_newline();
        }
    }
}
