//! The engine alone on the reference workload: n = 3, 10, 50, 200 participants, 3
//! sampling rounds, ~300-word answers that differ per participant and round (so no panel
//! converges and every round runs), answers scripted and instant. Both strategies.
//!
//! `cargo bench --bench engine` prints, per strategy and n, the median, minimum and mean
//! wall time of one whole run (strategy construction, every round's keys, samples,
//! prompts, agreements and supports, and the decision). `-- --quick` runs fewer samples;
//! other arguments select cases: `-- metastable 200` runs only that strategy and size.

// A benchmark prints its table with println!: a closed stdout only loses the table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use llm_consensus::consensus::{self, CallResult, Params, Seat, StrategyKind};

/// A deterministic word source: syllable words with a skewed (Zipf-like) frequency, so
/// answers share common words the way real answers to one question do.
struct Words {
    vocab: Vec<String>,
    state: u64,
}

impl Words {
    fn new(seed: u64) -> Words {
        let syllables = [
            "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "pa", "ri", "co", "ba", "ne",
            "tu", "ga",
        ];
        let mut vocab = Vec::new();
        for a in syllables {
            for b in syllables {
                for c in ["", "n", "s", "ta", "ro", "mi", "le", "x"] {
                    vocab.push(format!("{a}{b}{c}"));
                }
            }
        }
        Words {
            vocab,
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn answer(&mut self, words: usize) -> String {
        let mut out = String::with_capacity(words * 7);
        for i in 0..words {
            // Squaring a uniform draw skews towards the common (low-index) words.
            let u = (self.next() % 10_000) as f64 / 10_000.0;
            let w = &self.vocab[((u * u) * self.vocab.len() as f64) as usize];
            if i > 0 {
                out.push(if i % 17 == 0 { '.' } else { ' ' });
                if i % 17 == 0 {
                    out.push(' ');
                }
            }
            out.push_str(w);
        }
        out.push('.');
        out
    }
}

fn workload(n: usize) -> Vec<Vec<String>> {
    let mut words = Words::new(n as u64);
    (0..n)
        .map(|_| (0..4).map(|_| words.answer(300)).collect())
        .collect()
}

/// One whole run. The scripted answers arrive as owned strings, the way a provider hands
/// them over: making them is the provider's work, so callers copy them before the clock
/// starts.
fn one_run(kind: StrategyKind, mut answers: Vec<Vec<String>>) -> consensus::Decision {
    let n = answers.len();
    let mut params = Params::defaults(n);
    params.strategy = kind;
    params.seed = 1;
    params.rounds = 3;
    let seats = (0..n).map(|i| Seat::new(format!("seat{i}"))).collect();
    let mut strategy = consensus::build(&params, seats, "Explain the trade-offs of the design.");
    let mut calls = vec![0usize; n];
    consensus::drive(strategy.as_mut(), |call| {
        let round = calls[call.seat];
        calls[call.seat] += 1;
        CallResult::ok(
            call.seat,
            std::mem::take(&mut answers[call.seat][round.min(3)]),
            100.0 + call.seat as f64,
        )
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // cargo passes `--bench`; every other bare word selects a strategy name or a size.
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |what: &str| {
        let of_kind = filters.iter().any(|f| f.parse::<usize>().is_err());
        let of_size = filters.iter().any(|f| f.parse::<usize>().is_ok());
        let (name, n) = what.split_once(' ').expect("strategy and size");
        (!of_kind || filters.contains(&name)) && (!of_size || filters.contains(&n))
    };
    let budget = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    println!(
        "{:<11} {:>4} {:>7} {:>11} {:>11} {:>11} {:>8}",
        "strategy", "n", "rounds", "median", "min", "mean", "samples"
    );
    for kind in [StrategyKind::Metastable, StrategyKind::Hanzo] {
        for n in [3, 10, 50, 200] {
            if !wanted(&format!("{} {n}", kind.name())) {
                continue;
            }
            let answers = workload(n);
            let check = one_run(kind, answers.clone());
            assert_eq!(
                check.rounds_executed, 3,
                "the workload must run every sampling round"
            );
            for _ in 0..3 {
                black_box(one_run(kind, answers.clone()));
            }
            let mut times = Vec::new();
            let start = Instant::now();
            while (start.elapsed() < budget || times.len() < 10) && times.len() < 10_000 {
                let input = answers.clone();
                let t = Instant::now();
                let decision = one_run(kind, black_box(input));
                times.push(t.elapsed());
                // Freeing the decision is the caller's business, after the run.
                drop(black_box(decision));
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            println!(
                "{:<11} {:>4} {:>7} {:>11.3?} {:>11.3?} {:>11.3?} {:>8}",
                kind.name(),
                n,
                check.rounds_executed,
                times[times.len() / 2],
                times[0],
                mean,
                times.len()
            );
        }
    }
}
