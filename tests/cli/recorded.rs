#![allow(dead_code)]
//! Recorded answers of real models served over the OpenAI wire: the recorded-answers
//! file (`tests/fixtures/mmlu_pro_replay_250.jsonl`'s format), a loopback server that
//! answers each seat with its model's recorded text, the eval items and panel config for
//! it, and the score of an `eval --out` file from the tool's own per-seat keys. Used by
//! `mmlu_weights` and by `examples/mmlu_eval.rs` (which includes this file and
//! `common.rs` by path).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json as j};

use crate::common::{TestServer, openai_error, openai_ok};

/// The eight recorded models, best first by their published MMLU-Pro accuracy: the seat
/// name a panel gives each, and the model name the recorded file (and the wire) uses.
pub const RECORDED_MODELS: [(&str, &str); 8] = [
    ("gemini-pro", "gemini-1.5-pro-002"),
    ("gemini-flash", "gemini-1.5-flash-002"),
    ("llama-70b", "Meta-Llama-3_1-70B-Instruct"),
    ("deepseek-coder", "DeepSeek-Coder-V2"),
    ("jamba-large", "jamba-1.5-large"),
    ("qwen-72b", "Qwen1.5-72B-Chat"),
    ("phi-3-mini", "Phi-3-mini-4k-instruct"),
    ("mixtral-8x7b", "Mixtral-8x7B-Instruct-v0.1"),
];

/// One line of a recorded-answers file (`tests/fixtures/mmlu_pro_replay_250.jsonl`).
#[derive(Clone, Debug)]
pub struct RecordedQuestion {
    pub id: String,
    pub category: String,
    pub question: String,
    pub gold: String,
    /// Model name → its recorded answer text.
    pub answers: HashMap<String, String>,
}

/// Parses a recorded-answers file; Err names the line that is not one.
pub fn recorded_questions(text: &str) -> Result<Vec<RecordedQuestion>, String> {
    let field = |v: &Value, name: &str, line: usize| -> Result<String, String> {
        v[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("line {line}: no string \"{name}\""))
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let v: Value = serde_json::from_str(l).map_err(|e| format!("line {line}: {e}"))?;
            let answers = v["answers"]
                .as_object()
                .ok_or_else(|| format!("line {line}: no object \"answers\""))?
                .iter()
                .filter_map(|(m, t)| Some((m.clone(), t.as_str()?.to_string())))
                .collect();
            Ok(RecordedQuestion {
                id: field(&v, "id", line)?,
                category: field(&v, "category", line).unwrap_or_default(),
                question: field(&v, "question", line)?,
                gold: field(&v, "gold", line)?,
                answers,
            })
        })
        .collect()
}

/// Which recorded question a chat-completions prompt asks: the first round's prompt is
/// the question itself; a refinement prompt starts with `Question:\n`, the question and a
/// blank line (the question may hold blank lines of its own, so each is tried).
fn recorded_question_of(index: &HashMap<String, usize>, prompt: &str) -> Option<usize> {
    if let Some(&i) = index.get(prompt.trim()) {
        return Some(i);
    }
    let rest = prompt.strip_prefix("Question:\n")?;
    rest.match_indices("\n\n")
        .find_map(|(at, _)| index.get(rest[..at].trim()).copied())
}

/// A loopback OpenAI chat-completions server that answers every call with the recorded
/// text of the request's `model` for the question its last user message asks, in every
/// round (the recorded models cannot refine). An unknown model or a prompt that asks no
/// recorded question gets a 404 with an OpenAI error body, so a mismatch fails loudly.
pub fn recorded_server(questions: Vec<RecordedQuestion>) -> TestServer {
    let index: HashMap<String, usize> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| (q.question.trim().to_string(), i))
        .collect();
    TestServer::start(move |req, _| {
        let not_found = |what: String| openai_error(404, &what, "invalid_request_error", None);
        if req.method != "POST" || !req.path_only().ends_with("/chat/completions") {
            return not_found(format!("no route {} {}", req.method, req.path));
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return openai_error(400, &format!("body is not JSON: {e}"), "x", None),
        };
        let model = body["model"].as_str().unwrap_or_default();
        let prompt = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        let Some(q) = recorded_question_of(&index, prompt).map(|i| &questions[i]) else {
            let start: String = prompt.chars().take(80).collect();
            return not_found(format!("no recorded question matches the prompt {start:?}"));
        };
        match q.answers.get(model) {
            Some(text) => openai_ok(text, prompt.len() as u64 / 4, text.len() as u64 / 4),
            None => not_found(format!("no recorded answer of model {model:?} to {}", q.id)),
        }
    })
}

/// The eval items of recorded questions: `id`, `prompt` (the question), `expect_choice`
/// (the gold letter) and `category`, one JSON object a line.
pub fn recorded_items(questions: &[RecordedQuestion]) -> String {
    questions
        .iter()
        .map(|q| {
            let item = j!({"id": q.id, "prompt": q.question, "expect_choice": q.gold,
                           "category": q.category});
            item.to_string() + "\n"
        })
        .collect()
}

/// A config with the provider `recorded` (kind openai at `server_url`/v1, free) and one
/// seat per `(name, model)`, in order.
pub fn recorded_config(server_url: &str, seats: &[(&str, &str)]) -> String {
    let mut toml = format!(
        "[providers.recorded]\nkind = \"openai\"\nbase_url = \"{server_url}/v1\"\n\
         price = {{ input = 0.0, output = 0.0 }}\n"
    );
    for (name, model) in seats {
        let _ = write!(
            toml,
            "\n[[participants]]\nprovider = \"recorded\"\nmodel = \"{model}\"\nname = \"{name}\"\n"
        );
    }
    toml
}

/// What an `eval --out` file of a panel says, scored against the gold letters of its items
/// from the tool's own keys: each seat's key (`participants[].key`), the plurality of the
/// seats' keys, the consensus answer (`report.answer`) and FINAL.
#[derive(Clone, Debug, Default)]
pub struct PanelScore {
    pub items: usize,
    /// Per seat, in the report's order: its name and how many items its key got right.
    pub seats: Vec<(String, usize)>,
    /// Items the plurality of keys got right; a k-way tie that holds the gold letter
    /// counts 1/k (the expected score of breaking it at random).
    pub plurality: f64,
    /// Items whose consensus answer is the gold letter.
    pub consensus: usize,
    /// Items decided FINAL, and those of them whose answer is the gold letter.
    pub finals: usize,
    pub finals_right: usize,
    /// Seat calls that failed (every seat of a recorded panel should answer).
    pub failed_seats: usize,
    /// Seats without an answer: failed, or cancelled when early closing made them not
    /// needed (`--wait-all` keeps every seat's key, which a per-seat score needs).
    pub unanswered: usize,
}

impl PanelScore {
    fn share(&self, n: f64) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            n / self.items as f64
        }
    }

    /// The best seat: its name and accuracy.
    pub fn best_single(&self) -> (String, f64) {
        self.seats
            .iter()
            .map(|(name, right)| (name.clone(), self.share(*right as f64)))
            .fold((String::new(), -1.0), |a, b| if b.1 > a.1 { b } else { a })
    }

    pub fn seat_accuracy(&self) -> Vec<(String, f64)> {
        self.seats
            .iter()
            .map(|(name, right)| (name.clone(), self.share(*right as f64)))
            .collect()
    }

    pub fn plurality_accuracy(&self) -> f64 {
        self.share(self.plurality)
    }

    pub fn consensus_accuracy(&self) -> f64 {
        self.share(self.consensus as f64)
    }

    /// Share of the items decided FINAL.
    pub fn final_coverage(&self) -> f64 {
        self.share(self.finals as f64)
    }

    /// Share of the FINAL items whose answer is right (0 with none).
    pub fn final_precision(&self) -> f64 {
        if self.finals == 0 {
            0.0
        } else {
            self.finals_right as f64 / self.finals as f64
        }
    }
}

/// Scores the result lines of `eval --out` (`out`) against `gold` (item id → letter).
/// Err names a line that is not a result, or an item without a gold letter.
pub fn score_results(out: &str, gold: &HashMap<String, String>) -> Result<PanelScore, String> {
    let same = |key: &Value, gold: &str| key.as_str().is_some_and(|k| k.trim() == gold);
    let mut score = PanelScore::default();
    for (i, line) in out
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let id = v["id"].as_str().unwrap_or_default();
        let gold = gold
            .get(id)
            .ok_or_else(|| format!("line {}: item {id:?} has no gold letter", i + 1))?;
        let report = &v["report"];
        let seats = report["participants"]
            .as_array()
            .ok_or_else(|| format!("line {}: no report.participants", i + 1))?;
        if score.seats.is_empty() {
            score.seats = seats
                .iter()
                .map(|s| (s["name"].as_str().unwrap_or_default().to_string(), 0))
                .collect();
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (at, seat) in seats.iter().enumerate() {
            if seat["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                score.failed_seats += 1;
            }
            if seat["answers"].as_array().is_none_or(Vec::is_empty) {
                score.unanswered += 1;
            }
            if same(&seat["key"], gold) {
                score.seats[at].1 += 1;
            }
            if let Some(key) = seat["key"].as_str().filter(|k| !k.trim().is_empty()) {
                *counts.entry(key.trim()).or_default() += 1;
            }
        }
        let top = counts.values().copied().max().unwrap_or(0);
        let tied: Vec<&str> = counts
            .iter()
            .filter(|&(_, &c)| c == top)
            .map(|(&k, _)| k)
            .collect();
        if top > 0 && tied.contains(&gold.as_str()) {
            score.plurality += 1.0 / tied.len() as f64;
        }
        let right = same(&report["answer"], gold);
        score.consensus += usize::from(right);
        if report["finalized"] == true {
            score.finals += 1;
            score.finals_right += usize::from(right);
        }
        score.items += 1;
    }
    Ok(score)
}
