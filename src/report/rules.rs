//! What each strategy's numbers mean, for the text report: the rule that makes its
//! decision final (the verdict line states it) and what its table columns measure (the
//! legend). Derived here, in one place, from the strategy and its parameters.

use super::Report;
use crate::consensus::StrategyKind;
use crate::consensus::vote::QuorumShare;

/// What makes a strategy's decision final.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// The winner's `measure` (a share; `{}` in it stands for the value) must reach
    /// `share`, or exceed it when `strict`.
    Share {
        measure: &'static str,
        share: f64,
        strict: bool,
    },
    /// hanzo: the winner's score (confidence × luminance) must reach `needed`.
    Score { needed: f64 },
    /// bft: `needed` = 2f+1 matching AGREE attestations in prepare and in commit.
    Attestations { needed: usize, faults: usize },
}

/// The finality rule of the report's strategy.
pub fn rule(report: &Report) -> Rule {
    let p = &report.params;
    let threshold = report.details.threshold.unwrap_or(p.beta_2);
    match strategy(report) {
        StrategyKind::Metastable => Rule::Share {
            measure: "support {}",
            share: p.beta_2,
            strict: false,
        },
        StrategyKind::Hanzo => Rule::Score { needed: p.beta_2 },
        StrategyKind::Vote => {
            let q = p
                .quorum_share
                .parse::<QuorumShare>()
                .unwrap_or(QuorumShare::MAJORITY);
            Rule::Share {
                measure: "weight share {}",
                share: q.share,
                strict: q.strict,
            }
        }
        StrategyKind::Rank => Rule::Share {
            measure: "ranked first on {} of the ballots",
            share: threshold,
            strict: false,
        },
        StrategyKind::Bft => {
            let faults = p.faults.unwrap_or(0);
            Rule::Attestations {
                needed: 2 * faults + 1,
                faults,
            }
        }
        StrategyKind::Leader => Rule::Share {
            measure: "accepted by {} of the answering seats",
            share: 0.5,
            strict: true,
        },
    }
}

fn strategy(report: &Report) -> StrategyKind {
    report.strategy.parse().unwrap_or(StrategyKind::Metastable)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The verdict line's measure and rule, e.g. `support 75% (needs at least 80%)`; None
/// when the winner has no measure to show.
pub fn verdict(report: &Report) -> Option<String> {
    let winner = report
        .winner
        .as_ref()
        .and_then(|w| report.participants.iter().find(|p| &p.name == w));
    match rule(report) {
        Rule::Share {
            measure,
            share,
            strict,
        } => {
            let support = winner?.support?;
            let bound = if strict { "more than" } else { "at least" };
            Some(format!(
                "{} (needs {bound} {})",
                measure.replace("{}", &pct(support)),
                pct(share)
            ))
        }
        Rule::Score { needed } => Some(format!(
            "score {:.2} (needs at least {needed:.2})",
            winner?.score
        )),
        Rule::Attestations { needed, faults } => {
            let details = &report.details;
            details.digest.as_ref()?;
            let agree = |phase: &str| {
                details
                    .attestations
                    .iter()
                    .filter(|a| a.phase == phase && a.verdict == Some("AGREE"))
                    .count()
            };
            Some(format!(
                "AGREE {} in prepare, {} in commit (needs {needed} = 2f+1 in each, f = {faults})",
                agree("prepare"),
                agree("commit")
            ))
        }
    }
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
