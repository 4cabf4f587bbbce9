//! Measuring strategies on recorded answers of real models; and, in [`transcript`],
//! re-deciding a recorded run (`replay`).
//!
//! Each seat answers every call with its model's recorded text: the models cannot refine,
//! so a replay measures how well a strategy *selects* among fixed answers. Where a
//! strategy asks for a judgement (ballots, attestations, votes), the recorded model judges
//! by its own recorded letter (see [`judge`]). Latencies are
//! not recorded; each (question, model) gets a pseudo-random latency between 0.3 s and
//! 60 s, so a strategy that favours fast answers is exposed to speed that says nothing
//! about correctness.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::consensus::{self, CallResult, Params, Seat};
use crate::similarity::choice_key;

/// One line of `mmlu_pro_replay.jsonl`.
#[derive(Clone, Debug, Deserialize)]
pub struct Question {
    pub id: String,
    #[serde(default)]
    pub category: String,
    pub question: String,
    pub gold: String,
    pub answers: BTreeMap<String, String>,
}

/// Parses a JSONL file of recorded questions.
pub fn parse(text: &str) -> Result<Vec<Question>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// The credit of a pick: 1 when right; for a tie, 1/k when the gold letter is among the
/// k tied letters (the expected score of breaking it at random); 0 otherwise.
pub fn credit(picked: &[char], gold: char) -> f64 {
    if picked.contains(&gold) {
        1.0 / picked.len() as f64
    } else {
        0.0
    }
}

/// The letters with the most answers among `models` (several on a tie).
pub fn plurality(q: &Question, models: &[&str]) -> Vec<char> {
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for m in models {
        if let Some(letter) = q.answers.get(*m).and_then(|a| choice_key(a)) {
            *counts.entry(letter).or_default() += 1;
        }
    }
    let top = counts.values().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .filter(|&(_, c)| c == top && top > 0)
        .map(|(l, _)| l)
        .collect()
}

fn latency_ms(question: &str, model: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in question.bytes().chain([0]).chain(model.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 29;
    let unit = (h % 1_000_000) as f64 / 1_000_000.0;
    // Log-uniform between 300 ms and 60 s.
    300.0 * (200.0f64).powf(unit)
}

/// What a strategy picked on one question: the letters it stands behind (one, several on
/// a reported tie, none without an answer) and the calls it made.
pub struct Picked {
    pub letters: Vec<char>,
    pub calls: usize,
}

/// The quoted (fenced) blocks of a prompt, in order.
fn quoted_blocks(prompt: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(open) = rest.find("```text\n") {
        let fence_len = rest[..open].chars().rev().take_while(|&c| c == '`').count() + 3;
        let body = &rest[open + "```text\n".len()..];
        let close = "\n".to_string() + &"`".repeat(fence_len);
        let Some(end) = body.find(&close) else {
            break;
        };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// What a recorded model "says" when asked to judge: it cannot be asked, so it judges
/// by its own recorded letter. Ballots rank answers with its letter first (then in the
/// order shown); attestations and follower votes agree exactly when the proposal's letter
/// is its own; a leader re-proposes its recorded answer.
fn judge(own: Option<char>, user: &str) -> Option<String> {
    let letter_of = |text: &str| choice_key(text);
    if user.contains("Ranking:") && user.contains("Rank these answers") {
        let shown: Vec<Option<char>> = quoted_blocks(user).into_iter().map(letter_of).collect();
        let mut order: Vec<usize> = (0..shown.len()).collect();
        order.sort_by_key(|&i| usize::from(shown[i].is_none() || shown[i] != own));
        let ranking: Vec<String> = order.iter().map(|i| (i + 1).to_string()).collect();
        return Some(format!("Ranking: {}", ranking.join(" > ")));
    }
    let proposal = quoted_blocks(user).last().and_then(|p| letter_of(p));
    let same = own.is_some() && proposal == own;
    if user.contains("Attestation: AGREE") {
        let verdict = if same { "AGREE" } else { "DISAGREE" };
        return Some(format!("Attestation: {verdict}\nReason: recorded answer"));
    }
    if user.contains("Vote: ACCEPT") {
        let vote = if same { "ACCEPT" } else { "REJECT" };
        return Some(format!("Vote: {vote}\nCritique: recorded answer"));
    }
    None
}

/// Runs the strategy of `params` on one recorded question with a panel of `models`.
pub fn run(params: &Params, q: &Question, models: &[&str]) -> Picked {
    let seats = models.iter().map(|m| Seat::new(*m)).collect();
    let mut strategy = consensus::build(params, seats, &q.question);
    let mut calls = 0;
    let decision = consensus::drive(strategy.as_mut(), |call| {
        calls += 1;
        let model = models[call.seat];
        let ms = latency_ms(&q.id, model);
        match q.answers.get(model) {
            Some(text) => match judge(choice_key(text), &call.user) {
                Some(verdict) if call.round > 0 => CallResult::ok(call.seat, verdict, ms),
                _ => CallResult::ok(call.seat, text.clone(), ms),
            },
            None => CallResult::failed(call.seat, "no recorded answer", 0.0),
        }
    });
    let letters = if !decision.details.tie.is_empty() {
        decision
            .details
            .tie
            .iter()
            .filter_map(|k| choice_key(k))
            .collect()
    } else {
        decision
            .synthesis
            .as_deref()
            .and_then(choice_key)
            .into_iter()
            .collect()
    };
    Picked { letters, calls }
}

mod recorded;
pub mod transcript;

pub use transcript::from_report;
