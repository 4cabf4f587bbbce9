//! Through the binary, on the committed slice of recorded MMLU-Pro answers of 8 real
//! models (`tests/fixtures/mmlu_pro_replay_250.jsonl`, Apache-2.0; see
//! `tests/fixtures/README.md`): each seat is served its model's recorded text over the
//! OpenAI wire by a loopback server, `eval --answer choice` decides, and the accuracies
//! are computed from the tool's own per-seat keys in `--out`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::{Sandbox, TestServer};
use crate::recorded::*;

/// The first 250 questions of the full file (200 business, 50 law).
const FIRST_250: &str = "mmlu_pro_replay_250.jsonl";
/// Every 10th question of the full file: 275, 20 of each category (engineering 15).
/// For the learned-weights check below, once the estimator lands.
const EVERY_10TH: &str = "mmlu_pro_replay_every10.jsonl";

/// A committed slice: a missing or unreadable file fails the test.
fn slice(name: &str) -> Vec<RecordedQuestion> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    recorded_questions(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A slice served, and its items written into a sandbox.
struct Replay {
    sandbox: Sandbox,
    server: TestServer,
    items: PathBuf,
    gold: HashMap<String, String>,
    count: usize,
}

fn replay(name: &str) -> Replay {
    let questions = slice(name);
    let gold = questions
        .iter()
        .map(|q| (q.id.clone(), q.gold.clone()))
        .collect();
    let count = questions.len();
    let sandbox = Sandbox::new();
    let items = sandbox.write("items.jsonl", &recorded_items(&questions));
    let server = recorded_server(questions);
    Replay {
        sandbox,
        server,
        items,
        gold,
        count,
    }
}

impl Replay {
    /// `eval --answer choice` of the slice by the best `seats` models with the default
    /// strategy and `extra` flags; the score of its --out file.
    fn eval(&self, name: &str, seats: usize, extra: &[&str]) -> PanelScore {
        let config = self.sandbox.write(
            &format!("panel-{seats}.toml"),
            &recorded_config(&self.server.url(), &RECORDED_MODELS[..seats]),
        );
        let out = self.sandbox.path().join(format!("{name}.jsonl"));
        let before = self.server.count();
        let run = self
            .sandbox
            .cmd()
            .arg("eval")
            .arg(&self.items)
            .arg("--config")
            .arg(&config)
            .args([
                "--answer",
                "choice",
                "--seed",
                "7",
                "--jobs",
                "32",
                "--retries",
                "0",
            ])
            // Every seat's key is scored: no call is cancelled as not needed.
            .arg("--wait-all")
            .arg("--out")
            .arg(&out)
            .args(extra)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(0), "eval {name}: {stderr}");
        // Every seat answered every item over the wire, at least once.
        let calls = self.server.count() - before;
        assert!(calls >= self.count * seats, "eval {name}: {calls} calls");
        let text = std::fs::read_to_string(&out).unwrap();
        let score = score_results(&text, &self.gold).unwrap();
        assert_eq!(
            score.items, self.count,
            "eval {name}: every item has a result"
        );
        assert_eq!(
            score.failed_seats, 0,
            "eval {name}: a seat's call failed: {stderr}"
        );
        assert_eq!(score.unanswered, 0, "eval {name}: a seat has no answer");
        score
    }
}

/// Equal weights (today's default): the consensus answer is right at least as often as
/// a plurality of the same run's keys, and FINAL is right more often than the consensus
/// answer overall (it stands on more agreement).
#[test]
fn equal_weights_select_at_least_as_well_as_plurality_through_the_binary() {
    let replay = replay(FIRST_250);
    assert_eq!(replay.count, 250);
    let score = replay.eval("equal", 8, &[]);
    let (best, best_acc) = score.best_single();
    // The recorded keys are what the fixture's README says they are: the run scored
    // what it was served.
    assert_eq!(best, "gemini-pro", "{score:?}");
    assert!(best_acc > 0.7, "{score:?}");
    assert!(
        score.consensus_accuracy() >= score.plurality_accuracy(),
        "consensus {} < plurality {}: {score:?}",
        score.consensus_accuracy(),
        score.plurality_accuracy()
    );
    assert!(score.finals > 0, "{score:?}");
    assert!(
        score.final_precision() > score.consensus_accuracy(),
        "FINAL precision {} <= accuracy {}: {score:?}",
        score.final_precision(),
        score.consensus_accuracy()
    );
}

/// Learned weights: weights learned from the slice's own keys (no labels) and applied
/// with `--weights` select at least as well as plurality and as the best single seat of
/// the same run's keys, on the panel of the best `seats` models.
///
/// Which slice: on [`FIRST_250`] even weights from the labeled accuracies (`ln(p/(1-p))`)
/// stay below its best seat (0.756 against 0.772, 8 seats), so no weight per seat can
/// pass there. On [`EVERY_10TH`] the labeled weights give 0.7455 (8 seats) and 0.7564
/// (3 seats) against a best seat of 0.7418 and plurality 0.7268 / 0.7285.
fn learned_weights_beat_plurality_and_the_best_single_seat(slice: &str, seats: usize) {
    let replay = replay(slice);
    let weights = replay.sandbox.path().join("weights.json");
    let weights = weights.to_str().unwrap();
    replay.eval("learn", seats, &["--learn-weights", weights]);
    let score = replay.eval("weighted", seats, &["--weights", weights]);
    let (best, best_acc) = score.best_single();
    assert!(
        score.consensus_accuracy() >= score.plurality_accuracy(),
        "weighted {} < plurality {}: {score:?}",
        score.consensus_accuracy(),
        score.plurality_accuracy()
    );
    assert!(
        score.consensus_accuracy() >= best_acc,
        "weighted {} < best single {best} {best_acc}: {score:?}",
        score.consensus_accuracy()
    );
}

/// The guard: on all 8 models, weights learned without labels select better than
/// plurality and than the best single seat (on this slice, with equal weights the
/// consensus is below both). With 3 models the learned weights do not beat plurality on
/// this slice (0.720 against 0.728): docs/strategies.md has the whole-set numbers.
#[test]
fn learned_weights_on_eight_models_beat_plurality_and_the_best_seat() {
    learned_weights_beat_plurality_and_the_best_single_seat(EVERY_10TH, 8);
}
