//! Accuracy of a panel through the binary: recorded MMLU-Pro answers of 8 real models are
//! served over the OpenAI wire by a loopback server, the release binary's `eval` decides
//! with `--answer choice`, and every number is computed from its `--out` file with the
//! tool's own per-seat keys (`participants[].key`).
//!
//!     cargo build --release
//!     cargo run --release --example mmlu_eval [-- PATH] [--panels 8,5,3] [--jobs N]
//!                                             [--dir DIR] [--bin PATH]
//!     cargo run --release --example mmlu_eval -- PATH --serve [--dir DIR]
//!
//! PATH is a JSONL file of recorded questions; by default the 250-question slice in
//! `tests/fixtures/mmlu_pro_replay_250.jsonl` (source, licence and the full 2,743-question
//! file it comes from: `tests/fixtures/README.md`). DIR (default `target/mmlu-eval`) gets
//! the items, one config per panel and the `--out` files. `--bin` is the binary to run
//! (default `target/release/llm-consensus`).
//!
//! Per panel (the best 8, 5 and 3 models by published accuracy), seed 7, default strategy:
//! each seat's accuracy, plurality of the seats' keys (a k-way tie that holds the gold
//! letter counts 1/k), the consensus answer's accuracy and FINAL (precision, coverage) at
//! the default `beta_2`, plus the risk–coverage curve of the winner's support. When the
//! binary has `--learn-weights` and `--weights` (its `eval --help` says so), weights are
//! learned from the batch's own keys (`--learn-from answers`: no labels) and, for
//! comparison, from the labels (`--learn-from labels`), then applied: on the whole set,
//! and split in halves (`--shard 1/2`, `2/2`: learned and `--calibrate 0.9`d on one half,
//! applied to the other with that beta_2).
//!
//! `--serve` only serves: it writes the items and the configs, prints the server's
//! address and answers until it is killed, for running the binary by hand.

// A measuring script run by hand: printing with println! is fine here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/cli/common.rs"]
mod common;
#[path = "../tests/cli/recorded.rs"]
mod recorded;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use recorded::{
    PanelScore, RECORDED_MODELS, recorded_config, recorded_items, recorded_questions,
    recorded_server, score_results,
};
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

struct Options {
    path: PathBuf,
    dir: PathBuf,
    bin: PathBuf,
    jobs: usize,
    panels: Vec<usize>,
    serve: bool,
}

fn options() -> Result<Options, Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Options {
        path: root.join("tests/fixtures/mmlu_pro_replay_250.jsonl"),
        dir: root.join("target/mmlu-eval"),
        bin: root.join("target/release/llm-consensus"),
        jobs: 64,
        panels: vec![8, 5, 3],
        serve: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--dir" => o.dir = value("--dir")?.into(),
            "--bin" => o.bin = value("--bin")?.into(),
            "--jobs" => o.jobs = value("--jobs")?.parse()?,
            "--panels" => {
                o.panels = value("--panels")?
                    .split(',')
                    .map(|n| match n.trim().parse() {
                        Ok(n @ 1..=8) => Ok(n),
                        _ => Err(format!("--panels: {n:?} is not a panel size from 1 to 8")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--serve" => o.serve = true,
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}").into()),
            path => o.path = path.into(),
        }
    }
    Ok(o)
}

/// The served panel: the server, the files the binary reads, and the gold letters.
struct Bench {
    o: Options,
    server: TestServer,
    items: PathBuf,
    gold: HashMap<String, String>,
    /// The binary's `eval --help`, to see which flags it has.
    eval_help: String,
}

/// One `eval` run: its score and how long the binary took.
struct Run {
    score: PanelScore,
    wall: Duration,
    /// The winner's support and whether its answer is right, per item.
    support: Vec<(f64, bool)>,
    /// The binary's stdout (the summary) and stderr.
    stdout: String,
    stderr: String,
}

impl Bench {
    fn config(&self, n: usize) -> Result<PathBuf, Error> {
        let path = self.o.dir.join(format!("panel-{n}.toml"));
        std::fs::write(
            &path,
            recorded_config(&self.server.url(), &RECORDED_MODELS[..n]),
        )?;
        Ok(path)
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.eval_help.contains(flag)
    }

    /// `eval --answer choice` of panel `n` with `extra` flags, results to `NAME.jsonl`.
    fn eval(&self, n: usize, name: &str, extra: &[&str]) -> Result<Run, Error> {
        let out = self.o.dir.join(format!("{name}.jsonl"));
        let mut cmd = Command::new(&self.o.bin);
        cmd.arg("eval")
            .arg(&self.items)
            .arg("--config")
            .arg(self.config(n)?)
            // Every seat's key is scored: no call is cancelled as not needed.
            .args([
                "--answer",
                "choice",
                "--seed",
                "7",
                "--wait-all",
                "--no-log",
            ])
            .args(["--jobs", &self.o.jobs.to_string()])
            .arg("--out")
            .arg(&out)
            .args(extra);
        let started = Instant::now();
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.o.bin.display()))?;
        // The server logs every request; emptied while the binary runs, so memory stays flat.
        let (stdout, stderr) = {
            let reader = std::thread::spawn(move || child.wait_with_output());
            while !reader.is_finished() {
                self.server.forget_requests();
                std::thread::sleep(Duration::from_millis(100));
            }
            let output = reader.join().map_err(|_| "the eval thread panicked")??;
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            // `--calibrate P` exits 4 when no beta_2 reaches P: a result, not a failure.
            let calibrating = extra.contains(&"--calibrate") && output.status.code() == Some(4);
            if !(output.status.success() || calibrating) {
                return Err(format!(
                    "eval {name} exited with {}: {}",
                    output.status,
                    text(&output.stderr)
                )
                .into());
            }
            (text(&output.stdout), text(&output.stderr))
        };
        let wall = started.elapsed();
        if !stderr.trim().is_empty() {
            eprintln!("eval {name}: {}", stderr.trim());
        }
        let text = std::fs::read_to_string(&out)?;
        let score = score_results(&text, &self.gold)?;
        if score.failed_seats + score.unanswered > 0 {
            return Err(format!(
                "eval {name}: {} seat calls failed, {} seats without an answer",
                score.failed_seats, score.unanswered
            )
            .into());
        }
        let support = winner_support(&text, &self.gold);
        Ok(Run {
            score,
            wall,
            support,
            stdout,
            stderr,
        })
    }
}

/// Per item: the winner's support and whether the answer is the gold letter.
fn winner_support(out: &str, gold: &HashMap<String, String>) -> Vec<(f64, bool)> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let r = &v["report"];
            let winner = r["participants"]
                .as_array()
                .and_then(|p| p.iter().find(|s| s["name"] == r["winner"]));
            let support = winner.and_then(|w| w["support"].as_f64()).unwrap_or(0.0);
            let right = v["id"]
                .as_str()
                .and_then(|id| gold.get(id))
                .is_some_and(|g| r["answer"].as_str().map(str::trim) == Some(g.as_str()));
            (support, right)
        })
        .collect()
}

/// The risk–coverage curve of a support threshold: for each threshold, the share of the
/// items whose winner's support reaches it (coverage) and the share of those that are
/// right (precision). With recorded answers that never change, this is what FINAL would
/// be at `beta_2` = the threshold.
fn coverage_curve(support: &[(f64, bool)]) -> Vec<(f64, f64, f64)> {
    let mut thresholds: Vec<f64> = support.iter().map(|s| s.0).collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    // Weighted supports take hundreds of values: a grid is what a reader can use.
    if thresholds.len() > 12 {
        thresholds = (10..=20).map(|i| f64::from(i) * 0.05).collect();
    }
    thresholds
        .into_iter()
        .map(|t| {
            let covered: Vec<bool> = support
                .iter()
                .filter(|s| s.0 >= t - 1e-9)
                .map(|s| s.1)
                .collect();
            let right = covered.iter().filter(|&&r| r).count();
            let coverage = covered.len() as f64 / support.len().max(1) as f64;
            let precision = right as f64 / covered.len().max(1) as f64;
            (t, precision, coverage)
        })
        .collect()
}

fn print_run(label: &str, run: &Run) {
    let s = &run.score;
    let (best, best_acc) = s.best_single();
    println!(
        "  {label:<28} consensus {:.4}  plurality {:.4}  best single {:.4} ({best})  \
         FINAL precision {:.4} coverage {:.4}  [{} items, {:.1} s]",
        s.consensus_accuracy(),
        s.plurality_accuracy(),
        best_acc,
        s.final_precision(),
        s.final_coverage(),
        s.items,
        run.wall.as_secs_f64()
    );
}

fn print_seats(run: &Run) {
    let seats: Vec<String> = run
        .score
        .seat_accuracy()
        .iter()
        .map(|(name, acc)| format!("{name} {acc:.4}"))
        .collect();
    println!("  seats: {}", seats.join(", "));
}

fn print_curve(run: &Run) {
    let curve = coverage_curve(&run.support);
    let line: Vec<String> = curve
        .iter()
        .map(|(t, p, c)| format!("≥{t:.3}: {p:.3}@{c:.3}"))
        .collect();
    println!("  support (precision@coverage): {}", line.join("  "));
}

/// The weighted runs of panel `n`: weights learned on the whole set (from the equal-weight
/// run's keys) and applied to it; then learned on each half and applied to the other.
fn weighted(bench: &Bench, n: usize, from: &str) -> Result<(), Error> {
    if !(bench.has_flag("--learn-weights") && bench.has_flag("--weights")) {
        println!("  (weighted: the binary has no --learn-weights / --weights yet)");
        return Ok(());
    }
    let dir = &bench.o.dir;
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let learn = |weights: &str, extra: &[&str], name: &str| -> Result<Run, Error> {
        let mut args = vec!["--learn-weights", weights, "--learn-from", from];
        args.extend_from_slice(extra);
        bench.eval(n, name, &args)
    };
    let whole = file(&format!("weights-{n}-{from}.json"));
    learn(&whole, &[], &format!("learn-{n}-{from}"))?;
    let run = bench.eval(n, &format!("weighted-{n}-{from}"), &["--weights", &whole])?;
    print_run(&format!("weighted ({from}, all)"), &run);
    print_curve(&run);
    let calibrate = |weights: &str, extra: &[&str], name: &str| -> Result<String, Error> {
        let mut args = vec!["--weights", weights, "--calibrate", "0.9"];
        args.extend_from_slice(extra);
        let cal = bench.eval(n, name, &args)?;
        // The summary's line that names the calibrated beta_2, else why there is none.
        let said = cal.stdout.lines().find(|l| l.contains("calibrated"));
        Ok(said.unwrap_or(cal.stderr.trim()).trim().to_string())
    };
    let said = calibrate(&whole, &[], &format!("calibrate-{n}-{from}"))?;
    println!("  --calibrate 0.9: {said}");
    // Learned and calibrated on one half, applied to the other (with the calibrated
    // beta_2), both ways.
    let halves = [("1/2", "2/2"), ("2/2", "1/2")];
    let mut held_out = PanelScore::default();
    for (i, (learn_on, apply_to)) in halves.iter().enumerate() {
        let weights = file(&format!("weights-{n}-{from}-half{}.json", i + 1));
        let half = i + 1;
        learn(
            &weights,
            &["--shard", learn_on],
            &format!("learn-{n}-{from}-half{half}"),
        )?;
        let said = calibrate(
            &weights,
            &["--shard", learn_on],
            &format!("calibrate-{n}-{from}-half{half}"),
        )?;
        let run = bench.eval(
            n,
            &format!("applied-{n}-{from}-half{}", 2 - i),
            &["--shard", apply_to, "--weights", &weights],
        )?;
        print_run(
            &format!("learned on {learn_on}, applied to {apply_to}"),
            &run,
        );
        println!("    (calibrated on {learn_on}: {said})");
        held_out = merged(held_out, &run.score);
    }
    println!(
        "  held out (both halves): consensus {:.4}  plurality {:.4}  best single {:.4}  \
         FINAL precision {:.4} coverage {:.4}",
        held_out.consensus_accuracy(),
        held_out.plurality_accuracy(),
        held_out.best_single().1,
        held_out.final_precision(),
        held_out.final_coverage()
    );
    Ok(())
}

/// Two disjoint runs of the same panel as one.
fn merged(mut a: PanelScore, b: &PanelScore) -> PanelScore {
    if a.seats.is_empty() {
        a.seats = b.seats.iter().map(|(n, _)| (n.clone(), 0)).collect();
    }
    for (seat, (_, right)) in a.seats.iter_mut().zip(&b.seats) {
        seat.1 += right;
    }
    a.items += b.items;
    a.plurality += b.plurality;
    a.consensus += b.consensus;
    a.finals += b.finals;
    a.finals_right += b.finals_right;
    a.failed_seats += b.failed_seats;
    a.unanswered += b.unanswered;
    a
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let text =
        std::fs::read_to_string(&o.path).map_err(|e| format!("{}: {e}", o.path.display()))?;
    let questions = recorded_questions(&text).map_err(|e| format!("{}: {e}", o.path.display()))?;
    if questions.is_empty() {
        return Err(format!("{}: no questions", o.path.display()).into());
    }
    std::fs::create_dir_all(&o.dir)?;
    let items = o.dir.join("items.jsonl");
    std::fs::write(&items, recorded_items(&questions))?;
    let gold = questions
        .iter()
        .map(|q| (q.id.clone(), q.gold.clone()))
        .collect();
    let count = questions.len();
    let server = recorded_server(questions);
    let eval_help = if o.serve {
        String::new()
    } else {
        let help = Command::new(&o.bin)
            .args(["eval", "--help"])
            .output()
            .map_err(|e| {
                format!(
                    "{}: {e} (run `cargo build --release` first)",
                    o.bin.display()
                )
            })?;
        String::from_utf8_lossy(&help.stdout).into_owned()
    };
    let bench = Bench {
        o,
        server,
        items,
        gold,
        eval_help,
    };
    if bench.o.serve {
        for &n in &bench.o.panels {
            bench.config(n)?;
        }
        println!(
            "serving {count} questions at {}/v1; items and panel-N.toml configs in {}",
            bench.server.url(),
            bench.o.dir.display()
        );
        loop {
            bench.server.forget_requests();
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    println!(
        "{count} questions from {}, binary {}, --jobs {}\n",
        bench.o.path.display(),
        bench.o.bin.display(),
        bench.o.jobs
    );
    for &n in &bench.o.panels {
        println!("top {n}:");
        let run = bench.eval(n, &format!("equal-{n}"), &[])?;
        print_seats(&run);
        print_run("equal weights", &run);
        print_curve(&run);
        weighted(&bench, n, "answers")?;
        weighted(&bench, n, "labels")?;
        println!();
    }
    Ok(())
}
