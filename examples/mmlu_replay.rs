//! Accuracy of every strategy on recorded MMLU-Pro answers of 8 real models, next to a
//! plain plurality vote and the best single model.
//!
//!     cargo run --release --example mmlu_replay [-- PATH]
//!
//! PATH is a JSONL file of recorded questions; by default the 250-question slice in
//! `tests/fixtures/mmlu_pro_replay_250.jsonl` (source, licence and the full 2,743-question
//! file it comes from: `tests/fixtures/README.md`).
//!
//! Each seat serves its model's recorded text (the models cannot refine: this measures
//! selection), keys are `--answer choice`, parameters are the defaults, seed 7. Where a
//! strategy asks for ballots, attestations or votes, each model judges by its own
//! recorded letter.
// A measuring script run by hand: printing with println! is fine here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use llm_consensus::consensus::{Params, StrategyKind};
use llm_consensus::replay::{self, Question};
use llm_consensus::similarity::{AnswerMode, choice_key};

/// Models by their reference accuracy, best first.
const MODELS: [&str; 8] = [
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "Meta-Llama-3_1-70B-Instruct",
    "DeepSeek-Coder-V2",
    "jamba-1.5-large",
    "Qwen1.5-72B-Chat",
    "Phi-3-mini-4k-instruct",
    "Mixtral-8x7B-Instruct-v0.1",
];

fn params(kind: StrategyKind, n: usize) -> Params {
    let mut p = Params::defaults(n);
    p.strategy = kind;
    p.seed = 7;
    p.answer = AnswerMode::Choice;
    if kind == StrategyKind::Vote {
        p.rounds = 0;
    }
    p
}

fn gold(q: &Question) -> char {
    q.gold.chars().next().unwrap_or('?')
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mmlu_pro_replay_250.jsonl"
        )
        .into()
    });
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let questions = replay::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    if questions.is_empty() {
        return Err(format!("{path}: no questions").into());
    }
    println!("{} questions from {path}\n", questions.len());

    let single: Vec<(f64, &str)> = MODELS
        .iter()
        .map(|m| {
            let right = questions
                .iter()
                .filter(|q| q.answers.get(*m).and_then(|a| choice_key(a)) == Some(gold(q)))
                .count();
            (right as f64 / questions.len() as f64, *m)
        })
        .collect();
    for (acc, m) in &single {
        println!("  single {m:<30} {acc:.3}");
    }
    println!();

    let kinds = [
        StrategyKind::Metastable,
        StrategyKind::Vote,
        StrategyKind::Rank,
        StrategyKind::Bft,
        StrategyKind::Leader,
        StrategyKind::Hanzo,
    ];
    println!(
        "{:<8} {:>11} {:>11}  strategies (accuracy, calls per question)",
        "panel", "plurality", "best single"
    );
    for size in [8, 5, 3] {
        let panel = &MODELS[..size];
        let plurality: f64 = questions
            .iter()
            .map(|q| replay::credit(&replay::plurality(q, panel), gold(q)))
            .sum::<f64>()
            / questions.len() as f64;
        let best = single[..size].iter().map(|s| s.0).fold(0.0, f64::max);
        let mut line = format!("top {size:<4} {plurality:>11.4} {best:>11.4} ");
        for kind in kinds {
            let p = params(kind, size);
            let (mut total, mut calls) = (0.0, 0usize);
            for q in &questions {
                let picked = replay::run(&p, q, panel);
                total += replay::credit(&picked.letters, gold(q));
                calls += picked.calls;
            }
            line.push_str(&format!(
                " {} {:.4} ({:.1})",
                kind.name(),
                total / questions.len() as f64,
                calls as f64 / questions.len() as f64
            ));
        }
        println!("{line}");
    }
    Ok(())
}
