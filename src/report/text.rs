//! The human-readable report.

use std::fmt::Write;

use super::{Report, Status};

/// Terminal styling, off unless stdout is a terminal and NO_COLOR is unset.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn green(self, t: &str) -> String {
        self.paint("1;32", t)
    }
    fn yellow(self, t: &str) -> String {
        self.paint("1;33", t)
    }
    fn red(self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
}

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

fn one_line(text: &str, width: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > width {
        let cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// The default report: verdict, answer, synthesis, then the table of participants.
pub fn render(report: &Report, style: Style) -> String {
    let mut out = String::new();
    let headline = match report.status {
        Status::Final => style.green(&format!("✔ {}", report.status.label())),
        Status::NoConsensus => style.yellow(&format!("✘ {}", report.status.label())),
        _ => style.red(&format!("✘ {}", report.status.label())),
    };
    let winner_support = report
        .winner
        .as_ref()
        .and_then(|w| report.participants.iter().find(|p| &p.name == w))
        .and_then(|p| p.support);
    let _ = write!(out, "{headline}");
    match report.status {
        Status::Final | Status::NoConsensus if winner_support.is_some() => {
            let _ = write!(
                out,
                "  support {} (needs {}), {} of {} answered",
                pct(winner_support),
                pct(Some(
                    report.details.threshold.unwrap_or(report.params.beta_2)
                )),
                report.live,
                report.participants.len()
            );
        }
        Status::Final | Status::NoConsensus => {
            let _ = write!(
                out,
                "  {} of {} answered",
                report.live,
                report.participants.len()
            );
        }
        _ => {}
    }
    out.push('\n');
    if let Some(error) = &report.error {
        let _ = writeln!(out, "{}", style.red(&format!("  {error}")));
    }
    if !report.details.tie.is_empty() {
        let sides: Vec<String> = report
            .details
            .groups
            .iter()
            .filter(|g| report.details.tie.contains(&g.key))
            .map(|g| format!("{} ({})", one_line(&g.key, 60), g.members.join(", ")))
            .collect();
        let _ = writeln!(
            out,
            "{} {} — no winner",
            style.bold("Tie:"),
            sides.join(" vs ")
        );
    }
    let details = &report.details;
    for b in &details.ballots {
        if let Some(why) = &b.dropped {
            let _ = writeln!(
                out,
                "{} {}: {why}",
                style.yellow("Ballot dropped:"),
                b.voter
            );
        }
    }
    for t in &details.terms {
        let _ = writeln!(
            out,
            "{} {} led, proposed {}; accepted by {}, rejected by {}{}",
            style.bold(&format!("Term {}:", t.term)),
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
        let _ = writeln!(
            out,
            "{} sha256 {}…; AGREE in prepare {}, in commit {}",
            style.bold("Proposal:"),
            &digest[..digest.len().min(12)],
            count("prepare"),
            count("commit")
        );
    }
    for s in &details.suspects {
        let _ = writeln!(
            out,
            "{} {}: {}",
            style.yellow("Suspected faulty:"),
            s.participant,
            s.reasons.join("; ")
        );
    }
    if let Some(winner) = &report.winner {
        let _ = writeln!(out, "{} {winner}", style.bold("Winner:"));
    }
    if let Some(answer) = &report.answer {
        let _ = writeln!(out, "{} {}", style.bold("Answer:"), one_line(answer, 200));
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
        let _ = writeln!(out, "\n{}", style.bold(&title));
        for line in synthesis.trim_end().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out.push('\n');

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
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    for p in &report.participants {
        let mark = if report.winner.as_deref() == Some(p.name.as_str()) {
            "*"
        } else {
            " "
        };
        let last = match (&p.key, p.errors.last()) {
            (Some(key), _) if p.live => one_line(key, 40),
            (_, Some(e)) => one_line(e, 60),
            _ => "-".into(),
        };
        rows.push([
            mark.into(),
            p.name.clone(),
            format!("{}:{}", p.provider, p.model),
            format!("{:.2}", p.confidence),
            pct(p.support),
            format!("{:.2}", p.luminance),
            ms(p.latency_ms),
            p.calls.to_string(),
            last,
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
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
    let _ = writeln!(out, "{}", style.dim(&line(&header.map(String::from))));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let tokens = match (report.usage.input_tokens, report.usage.output_tokens) {
        (None, None) => "tokens unknown".to_string(),
        (i, o) => format!(
            "{} in / {} out tokens",
            i.map_or("?".into(), |v| v.to_string()),
            o.map_or("?".into(), |v| v.to_string())
        ),
    };
    let tokens = match report.usage.cost_usd {
        Some(usd) => format!("{tokens} · ${usd:.4}"),
        None => tokens,
    };
    let _ = writeln!(
        out,
        "\n{}",
        style.dim(&format!(
            "{} · seed {} · {} sampling round(s) · {} call(s) · {} · quorum {} · {}",
            report.strategy,
            report.seed,
            report.rounds_executed,
            report.usage.calls,
            tokens,
            report.quorum,
            ms(Some(report.elapsed_ms))
        ))
    );
    out
}
