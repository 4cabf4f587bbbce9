//! The default strategy against a plain plurality vote, on a slice of the recorded
//! answers of 8 real models to MMLU-Pro questions (`../shared/data`, skipped when absent).

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

fn slice() -> Option<Vec<Question>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/mmlu_pro_replay.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} is absent", path.display());
        return None;
    };
    let head: String = text.lines().take(SLICE).collect::<Vec<_>>().join("\n");
    Some(replay::parse(&head).expect("the recorded answers parse"))
}

fn gold(q: &Question) -> char {
    q.gold.chars().next().unwrap()
}

#[test]
fn the_default_strategy_is_not_worse_than_plurality_on_recorded_answers() {
    let Some(questions) = slice() else {
        return;
    };
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
