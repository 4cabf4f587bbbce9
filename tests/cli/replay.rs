//! The default strategy against a plain plurality vote, on a slice of the recorded
//! answers of 8 real models to MMLU-Pro questions (`tests/fixtures/mmlu_pro_replay_250.jsonl`,
//! Apache-2.0; see `tests/fixtures/README.md`).

use llm_consensus::consensus::{Params, StrategyKind};
use llm_consensus::replay::{self, Question};
use llm_consensus::similarity::AnswerMode;

const SLICE: usize = 250;

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

/// The slice is part of the repository: a missing or unreadable file fails the test.
fn slice() -> Vec<Question> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mmlu_pro_replay_250.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    replay::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn gold(q: &Question) -> char {
    q.gold.chars().next().unwrap()
}

#[test]
fn the_default_strategy_is_not_worse_than_plurality_on_recorded_answers() {
    let questions = slice();
    assert_eq!(questions.len(), SLICE);
    for size in [8, 3] {
        let panel = &MODELS[..size];
        let mut p = Params::defaults(size);
        p.strategy = StrategyKind::Metastable;
        p.seed = 7;
        p.answer = AnswerMode::Choice;
        let (mut ours, mut plural) = (0.0, 0.0);
        for q in &questions {
            let top = replay::plurality(q, panel);
            let picked = replay::run(&p, q, panel);
            if top.len() == 1 {
                // Without a tie the plurality's letter must win, whatever the latencies.
                assert_eq!(picked.letters, top, "{}: top {size}", q.id);
            }
            ours += replay::credit(&picked.letters, gold(q));
            plural += replay::credit(&top, gold(q));
        }
        assert!(
            ours >= plural,
            "top {size}: metastable {ours} < plurality {plural} of {SLICE}"
        );
    }
}
