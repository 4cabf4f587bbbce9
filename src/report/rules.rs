//! What each strategy's numbers mean, for the text report: the verdict line, which
//! states the rule the engine applied (`Details::verdict_rule`, the one source of it), and
//! what the table columns measure (the legend).

use super::Report;
use crate::consensus::StrategyKind;

fn strategy(report: &Report) -> StrategyKind {
    report.strategy.parse().unwrap_or(StrategyKind::Metastable)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The verdict line's measure and rule, e.g. `support 75%, needs at least 80% of the live
/// seats' weight agreeing with the winner`; None when the engine stated no rule.
pub fn verdict(report: &Report) -> Option<String> {
    let rule = report.details.verdict_rule.as_ref()?;
    let winner = report
        .winner
        .as_ref()
        .and_then(|w| report.participants.iter().find(|p| &p.name == w));
    // The winner's own value of the measure, when it has one to show.
    let value = match rule.measure {
        "attestations" => report.details.digest.as_ref().map(|_| {
            let agree = |phase: &str| {
                report
                    .details
                    .attestations
                    .iter()
                    .filter(|a| a.phase == phase && a.verdict == Some("AGREE"))
                    .count()
            };
            format!(
                "AGREE {} in prepare and {} in commit",
                agree("prepare"),
                agree("commit")
            )
        }),
        // hanzo's score (confidence x luminance) is a fraction like its threshold.
        "score" => winner.map(|w| format!("score {}", pct(w.score))),
        "accepts" => winner
            .and_then(|w| w.support)
            .map(|s| format!("accepted by {}", pct(s))),
        measure => winner
            .and_then(|w| w.support)
            .map(|s| format!("{} {}", measure.replace('_', " "), pct(s))),
    };
    Some(match value {
        Some(value) => format!("{value}, needs {}", rule.needs),
        None => format!("needs {}", rule.needs),
    })
}

/// What the table's `conf`, `support` and `lum` columns measure for this strategy, as
/// (column, meaning) pairs.
pub fn legend(report: &Report) -> [(&'static str, &'static str); 3] {
    const LUM: (&str, &str) = ("lum", "speed weight of its answers (the fastest = 1.00)");
    match strategy(report) {
        StrategyKind::Metastable => [
            (
                "conf",
                "agreement with the peers it was shown, averaged over rounds (0-1)",
            ),
            (
                "support",
                "weighted share of the answering participants that agree with its answer",
            ),
            (
                "lum",
                "speed weight (the fastest = 1.00), used to draw peers and break ties",
            ),
        ],
        StrategyKind::Hanzo => [
            (
                "conf",
                "agreement with the sample shared by all, averaged over rounds (0-1)",
            ),
            ("support", "not measured by hanzo"),
            (
                "lum",
                "speed weight 1/(1 + seconds) of round 0; the winner has the highest conf x lum",
            ),
        ],
        StrategyKind::Vote => [
            ("conf", "its answer group's share of the answering weight"),
            ("support", "the same share"),
            LUM,
        ],
        StrategyKind::Rank => [
            ("conf", "Borda score of its answer (the best = 1.00)"),
            ("support", "share of the ballots that rank its answer first"),
            LUM,
        ],
        StrategyKind::Bft => [
            (
                "conf",
                "share of its two attestations (prepare, commit) that AGREE",
            ),
            (
                "support",
                "share of the answering participants with the same answer",
            ),
            LUM,
        ],
        StrategyKind::Leader => [
            (
                "conf",
                "1.00 when it led or accepted the last term's proposal",
            ),
            (
                "support",
                "the winner's: share of the answering participants that accepted its proposal",
            ),
            LUM,
        ],
    }
}
