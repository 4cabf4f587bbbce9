//! What a strategy found beyond the common fields of a [`Decision`](super::Decision):
//! answer groups, ballots, attestations, terms, the verdict rule and notes. Plain data,
//! serialized into the JSON report; empty fields are left out.

use serde::Serialize;

use super::confidence;

/// Answers that agree (sim >= alpha with the group's first member).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    /// The key of the group's representative.
    pub key: String,
    pub members: Vec<String>,
    /// Sum of the members' seat weights.
    pub weight: f64,
    /// `weight` over the live seats' total weight.
    pub share: f64,
}

/// Strategy-specific results; empty fields are left out of the JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Details {
    /// The share (or support) the winner needed for the decision to be final, when it is
    /// not beta_2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The answer groups, largest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// The keys tied for first place; when not empty there is no winner.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tie: Vec<String>,
    /// rank: every ballot, readable or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ballots: Vec<BallotReport>,
    /// rank: the aggregated scores, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<ScoreReport>,
    /// bft: the proposal's SHA-256 digest (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// bft: every attestation, both phases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<Attestation>,
    /// bft: participants suspected of being faulty, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suspects: Vec<Suspect>,
    /// leader: one entry per term.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<Term>,
    /// `--confidence`: each live participant's reported and recalibrated confidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub self_confidence: Vec<confidence::SelfConfidence>,
    /// Why the strategy could not decide (the run then fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The rule that made the decision final or not, for the report to state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_rule: Option<Rule>,
    /// What a reader of the result should know about how it was reached (a bft panel
    /// too small to tolerate a fault...), one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A strategy's verdict rule as data: what it measures and what the winner needs for the
/// decision to be final, so a report states the rule actually applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// What is measured: `support` (metastable), `score` (hanzo), `share` (vote),
    /// `first_places` (rank), `attestations` (bft), `accepts` (leader).
    pub measure: &'static str,
    /// What the winner needs, as a fraction of the measure's whole (for `attestations`,
    /// the count needed in each phase over the seats).
    pub threshold: f64,
    /// Strictly more than `threshold` (a majority is more than half); else at least.
    pub strict: bool,
    /// For counted rules: how many are needed (bft: 2f+1 matching attestations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// What the winner needs, to follow the word "needs": `more than 50% of the live seat
    /// weight`, `3 matching AGREE attestations in prepare and commit`.
    pub needs: String,
}

impl Rule {
    /// A rule on a fraction: `at least` or `more than` `threshold` of `whole`.
    pub fn share(measure: &'static str, threshold: f64, strict: bool, whole: &str) -> Rule {
        let pct = format!("{:.0}%", threshold * 100.0);
        Rule {
            measure,
            threshold,
            strict,
            count: None,
            needs: format!(
                "{} {pct} {whole}",
                if strict { "more than" } else { "at least" }
            ),
        }
    }
}

/// One participant's ranking of the others' answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BallotReport {
    pub voter: String,
    /// Best first; None when the ballot could not be read.
    pub ranking: Option<Vec<String>>,
    /// Why the ballot was dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}

/// A candidate's aggregated ranking score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreReport {
    pub participant: String,
    pub borda: f64,
    /// Ballots that rank it first.
    pub first_places: usize,
}

/// One participant's verdict on the proposal in one phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attestation {
    pub participant: String,
    /// `prepare` or `commit`.
    pub phase: &'static str,
    /// `AGREE`, `DISAGREE`, or None when unreadable or absent.
    pub verdict: Option<&'static str>,
    pub reason: Option<String>,
    /// SHA-256 of the proposal this attestation refers to.
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suspect {
    pub participant: String,
    pub reasons: Vec<String>,
}

/// One leader term.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Term {
    pub term: usize,
    pub leader: String,
    /// The proposal's key.
    pub proposal: Option<String>,
    pub accepted_by: Vec<String>,
    pub rejected_by: Vec<String>,
    pub committed: bool,
}
