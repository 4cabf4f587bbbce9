//! Estimating each seat's reliability from a batch's own answers, without expected
//! answers, and the weight that follows from it.
//!
//! **Accuracy.** A one-coin Dawid–Skene model fitted by EM: on every item the truth is
//! one of the keys the seats gave; seat *i* gives it with probability `p_i`, and otherwise
//! one of the other `K − 1` keys, each equally likely (`K`: the number of distinct keys in
//! the batch, at least 2). EM starts from the plurality (each key's share of the item's
//! answers as the probability that it is the truth) and alternates: the expected number of
//! items each seat got right gives `p_i` (with one right and one wrong pseudo-answer, so
//! that no estimate is exactly 0 or 1), and the `p_i` give each key's posterior.
//! Per category, the same EM runs on the category's items with the batch-wide estimate
//! as a prior worth [`CATEGORY_PRIOR_ITEMS`] items, so a small category stays close to it.
//!
//! **Weight.** `max(0, ln(p / (1 − p)))`: the weight of a seat's vote when each item is a
//! choice between the truth and *one* wrong answer. Models that are wrong tend to be
//! wrong together (the same distractor), so their agreement on a wrong key is far
//! likelier than `K − 1` independent alternatives would make it. With uniformly scattered
//! errors the weight would be `ln(p (K − 1) / (1 − p))`, which is nearly the same for
//! every seat above chance and lets several weak seats that share a mistake outvote a
//! strong one; the two-answer weight gives a seat no say until it is right more often than
//! not. When fewer than two seats are right more often than not (a very hard batch), the
//! two-answer weights would leave one seat or none deciding alone, and the scattered-error
//! weights are used instead.
//!
//! Without labels an estimate can only credit a seat for agreeing with seats that are
//! estimated to be right, so it favours the answers a correlated majority gives; measured
//! numbers and their limits are in docs/strategies.md.

use std::collections::{BTreeMap, HashMap};

use super::{SeatWeight, VERSION, WeightsFile};

/// How many items the batch-wide estimate counts for in a category's estimate.
pub const CATEGORY_PRIOR_ITEMS: f64 = 20.0;

const MAX_ITERATIONS: usize = 500;
const TOLERANCE: f64 = 1e-7;

/// One item of the batch: its category (if any), each seat's key (None: no readable
/// answer) and, when the item has an expected answer, whether each seat's key matched it;
/// both in the order of the seats.
#[derive(Clone, Debug, Default)]
pub struct LearnItem {
    pub category: Option<String>,
    pub keys: Vec<Option<String>>,
    pub matched: Option<Vec<bool>>,
}

/// Where the accuracies come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The answers alone (EM); expected answers are not looked at.
    Answers,
    /// The expected answers: each seat's share of matched answers among the labeled
    /// items it answered.
    Labels,
}

/// Learns the weights of `seats` from `items`.
pub fn learn(seats: &[String], items: &[LearnItem], source: Source) -> WeightsFile {
    let all: Vec<&LearnItem> = items.iter().collect();
    let estimate = |subset: &[&LearnItem], prior: Option<&Estimate>| match source {
        Source::Answers => em(seats.len(), subset, prior),
        Source::Labels => labeled(seats.len(), subset, prior),
    };
    let overall = estimate(&all, None);
    let mut by_category: BTreeMap<&str, Vec<&LearnItem>> = BTreeMap::new();
    for item in items {
        if let Some(c) = item.category.as_deref() {
            by_category.entry(c).or_default().push(item);
        }
    }
    // A category in which no seat's answer is evidence is left out: its items use the
    // batch-wide weights (a file never weighs every seat 0).
    let categories = by_category
        .iter()
        .map(|(c, subset)| {
            (
                c.to_string(),
                estimate(subset, Some(&overall)).seat_weights(seats),
            )
        })
        .filter(|(_, w)| w.values().any(|s| s.weight > 0.0))
        .collect();
    let mut seat_weights = overall.seat_weights(seats);
    let evidence = seat_weights.values().any(|s| s.weight > 0.0);
    if !evidence {
        for s in seat_weights.values_mut() {
            s.weight = 1.0;
        }
    }
    let method = match source {
        Source::Answers => format!(
            "one-coin Dawid-Skene EM over {} distinct keys, no labels; weight ln(p/(1-p)){}",
            overall.keys,
            if overall.scattered {
                " (fewer than two seats above 1/2: ln(p(K-1)/(1-p)))"
            } else {
                ""
            }
        ),
        Source::Labels => "accuracy on the labeled items; weight ln(p/(1-p))".to_string(),
    };
    let method = if evidence {
        method
    } else {
        format!("{method}; no seat above chance, so equal weights")
    };
    WeightsFile {
        version: VERSION,
        method,
        items: match source {
            Source::Answers => items.len() as u64,
            Source::Labels => items.iter().filter(|i| i.matched.is_some()).count() as u64,
        },
        seats: seat_weights,
        categories,
        calibration: None,
    }
}

/// Accuracies of the seats and the items each rests on.
struct Estimate {
    accuracy: Vec<f64>,
    items: Vec<u64>,
    /// K, the number of distinct keys.
    keys: usize,
    /// Fewer than two seats above 1/2: the scattered-error weights are used.
    scattered: bool,
}

impl Estimate {
    fn new(accuracy: Vec<f64>, items: Vec<u64>, keys: usize) -> Estimate {
        let scattered = accuracy.iter().filter(|&&p| p > 0.5).count() < 2;
        Estimate {
            accuracy,
            items,
            keys,
            scattered,
        }
    }

    fn weight(&self, p: f64) -> f64 {
        let alternatives = if self.scattered {
            (self.keys.max(2) - 1) as f64
        } else {
            1.0
        };
        (p * alternatives / (1.0 - p)).ln().max(0.0)
    }

    fn seat_weights(&self, seats: &[String]) -> BTreeMap<String, SeatWeight> {
        seats
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let p = self.accuracy[i];
                let w = SeatWeight {
                    accuracy: round(p),
                    weight: round(self.weight(p)),
                    items: self.items[i],
                };
                (name.clone(), w)
            })
            .collect()
    }
}

/// Six decimals: the file is read by people, and more digits are noise.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The smoothed share `right / answered` pulled toward the prior by its weight in items.
fn share(right: f64, answered: f64, prior: Option<f64>) -> f64 {
    match prior {
        Some(p) => (right + CATEGORY_PRIOR_ITEMS * p) / (answered + CATEGORY_PRIOR_ITEMS),
        None => (right + 1.0) / (answered + 2.0),
    }
}

fn labeled(n: usize, items: &[&LearnItem], prior: Option<&Estimate>) -> Estimate {
    let (mut right, mut answered) = (vec![0.0; n], vec![0u64; n]);
    for item in items {
        let Some(matched) = &item.matched else {
            continue;
        };
        for i in 0..n {
            if item.keys.get(i).is_some_and(Option::is_some) {
                answered[i] += 1;
                right[i] += f64::from(u8::from(matched.get(i).copied().unwrap_or(false)));
            }
        }
    }
    let accuracy = (0..n)
        .map(|i| share(right[i], answered[i] as f64, prior.map(|e| e.accuracy[i])))
        .collect();
    Estimate::new(accuracy, answered, prior.map_or(2, |e| e.keys))
}

/// One item as EM sees it: each answering seat with the index of its key among the
/// item's distinct keys.
struct Votes {
    seats: Vec<(usize, usize)>,
    distinct: usize,
}

fn em(n: usize, items: &[&LearnItem], prior: Option<&Estimate>) -> Estimate {
    let mut names: HashMap<&str, ()> = HashMap::new();
    let votes: Vec<Votes> = items
        .iter()
        .map(|item| {
            let mut local: Vec<&str> = Vec::new();
            let seats = item
                .keys
                .iter()
                .take(n)
                .enumerate()
                .filter_map(|(i, k)| {
                    let k = k.as_deref()?;
                    names.insert(k, ());
                    let at = local.iter().position(|x| *x == k).unwrap_or_else(|| {
                        local.push(k);
                        local.len() - 1
                    });
                    Some((i, at))
                })
                .collect();
            Votes {
                seats,
                distinct: local.len(),
            }
        })
        .filter(|v: &Votes| v.distinct > 0)
        .collect();
    let keys = prior.map_or(names.len().max(2), |e| e.keys);
    let mut items_of = vec![0u64; n];
    for v in &votes {
        for &(i, _) in &v.seats {
            items_of[i] += 1;
        }
    }

    // Start from the plurality: a key's posterior is its share of the item's answers.
    let mut posteriors: Vec<Vec<f64>> = votes
        .iter()
        .map(|v| {
            let mut q = vec![0.0; v.distinct];
            for &(_, k) in &v.seats {
                q[k] += 1.0 / v.seats.len() as f64;
            }
            q
        })
        .collect();
    let mut p = vec![0.5; n];
    for _ in 0..MAX_ITERATIONS {
        // M: each seat's expected share of right answers.
        let mut right = vec![0.0; n];
        for (v, q) in votes.iter().zip(&posteriors) {
            for &(i, k) in &v.seats {
                right[i] += q[k];
            }
        }
        let next: Vec<f64> = (0..n)
            .map(|i| share(right[i], items_of[i] as f64, prior.map(|e| e.accuracy[i])))
            .collect();
        let change = next
            .iter()
            .zip(&p)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        p = next;
        // E: each key's posterior given the accuracies.
        let log_right: Vec<f64> = p.iter().map(|&x| x.ln()).collect();
        let log_wrong: Vec<f64> = p
            .iter()
            .map(|&x| ((1.0 - x) / (keys - 1) as f64).ln())
            .collect();
        for (v, q) in votes.iter().zip(posteriors.iter_mut()) {
            let mut score = vec![0.0; v.distinct];
            for &(i, k) in &v.seats {
                for (t, s) in score.iter_mut().enumerate() {
                    *s += if t == k { log_right[i] } else { log_wrong[i] };
                }
            }
            let top = score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = score.iter().map(|s| (s - top).exp()).sum();
            for (qt, s) in q.iter_mut().zip(&score) {
                *qt = (s - top).exp() / total;
            }
        }
        if change < TOLERANCE {
            break;
        }
    }
    Estimate::new(p, items_of, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(keys: &[Option<&str>]) -> LearnItem {
        LearnItem {
            category: None,
            keys: keys.iter().map(|k| k.map(str::to_string)).collect(),
            matched: None,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    /// A deterministic panel: seat accuracies `acc`, `n` items with truth "T", wrong
    /// answers drawn uniformly from `distractors` (4 for [`panel`]), from a fixed seed.
    fn panel(acc: &[f64], n: usize, seed: u64) -> Vec<LearnItem> {
        panel_with(acc, n, seed, 4)
    }

    fn panel_with(acc: &[f64], n: usize, seed: u64, distractors: usize) -> Vec<LearnItem> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let keys = acc
                    .iter()
                    .map(|&p| {
                        Some(if rng.f64() < p {
                            "T".to_string()
                        } else {
                            format!("W{}", rng.usize(0..distractors))
                        })
                    })
                    .collect();
                LearnItem {
                    category: None,
                    keys,
                    matched: None,
                }
            })
            .collect()
    }

    #[test]
    fn independent_seats_are_ranked_by_their_accuracy() {
        let acc = [0.9, 0.75, 0.6, 0.55, 0.4];
        let items = panel(&acc, 3000, 7);
        let w = learn(&names(5), &items, Source::Answers);
        let est: Vec<f64> = (0..5).map(|i| w.seats[&format!("s{i}")].accuracy).collect();
        for (e, a) in est.iter().zip(acc) {
            assert!(
                (e - a).abs() < 0.05,
                "estimate {e} for accuracy {a}: {est:?}"
            );
        }
        let weights: Vec<f64> = (0..5).map(|i| w.seats[&format!("s{i}")].weight).collect();
        assert!(
            weights.windows(2).all(|p| p[0] > p[1] || p[1] == 0.0),
            "{weights:?}"
        );
        assert_eq!(w.seats["s4"].weight, 0.0, "a coin-flip seat is no evidence");
    }

    #[test]
    fn the_weights_let_a_strong_seat_outvote_two_weak_ones() {
        let items = panel(&[0.95, 0.55, 0.55], 2000, 3);
        let w = learn(&names(3), &items, Source::Answers);
        let (a, b, c) = (
            w.seats["s0"].weight,
            w.seats["s1"].weight,
            w.seats["s2"].weight,
        );
        assert!(a > b + c, "{a} vs {b} + {c}");
    }

    #[test]
    fn labels_are_not_read_when_learning_from_answers() {
        let mut items = panel(&[0.9, 0.6, 0.6], 500, 11);
        let plain = learn(&names(3), &items, Source::Answers);
        for it in &mut items {
            it.matched = Some(vec![false, true, true]);
        }
        assert_eq!(plain, learn(&names(3), &items, Source::Answers));
        let from_labels = learn(&names(3), &items, Source::Labels);
        assert!(from_labels.seats["s0"].accuracy < 0.01);
        assert!(from_labels.seats["s1"].accuracy > 0.99);
    }

    #[test]
    fn a_seat_without_answers_has_no_items_and_no_weight() {
        let items = vec![item(&[Some("a"), None]), item(&[Some("b"), None])];
        let w = learn(&names(2), &items, Source::Answers);
        assert_eq!(w.seats["s1"].items, 0);
        assert_eq!(w.seats["s1"].weight, 0.0);
        assert_eq!(w.seats["s0"].items, 2);
    }

    #[test]
    fn no_items_give_finite_estimates_and_equal_weights() {
        let w = learn(&names(2), &[], Source::Answers);
        for s in w.seats.values() {
            assert!(s.accuracy.is_finite());
            assert_eq!(s.weight, 1.0);
        }
        assert!(w.method.contains("equal weights"), "{}", w.method);
        assert_eq!(w.items, 0);
    }

    #[test]
    fn a_category_where_no_seat_is_evidence_is_left_out() {
        let mut items = panel(&[0.9, 0.8, 0.7], 500, 4);
        // Labeled: every seat wrong on every item of "lost".
        let mut lost = panel(&[0.9, 0.8, 0.7], 300, 5);
        for it in &mut lost {
            it.category = Some("lost".into());
            it.matched = Some(vec![false; 3]);
        }
        for it in &mut items {
            it.category = Some("fine".into());
            it.matched = Some(vec![true; 3]);
        }
        items.extend(lost);
        let w = learn(&names(3), &items, Source::Labels);
        assert!(w.categories.contains_key("fine"));
        assert!(!w.categories.contains_key("lost"), "{:?}", w.categories);
        assert!(w.seats.values().all(|s| s.weight > 0.0));
    }

    #[test]
    fn a_hard_batch_falls_back_to_scattered_error_weights() {
        // At most one seat is right more than half of the time; all are above chance.
        let items = panel_with(&[0.45, 0.4, 0.35, 0.3, 0.3], 3000, 5, 9);
        let w = learn(&names(5), &items, Source::Answers);
        assert!(
            w.method.contains("fewer than two seats above 1/2"),
            "{} {:?}",
            w.method,
            w.seats
        );
        assert!(w.seats.values().all(|s| s.weight > 0.0));
    }

    #[test]
    fn categories_are_estimated_apart_and_pulled_toward_the_whole() {
        let mut items = panel(&[0.9, 0.5, 0.7], 1000, 1);
        for it in &mut items {
            it.category = Some("easy".into());
        }
        let mut hard = panel(&[0.5, 0.9, 0.7], 1000, 2);
        for it in &mut hard {
            it.category = Some("hard".into());
        }
        items.extend(hard);
        items.push(LearnItem {
            category: Some("tiny".into()),
            ..item(&[Some("x"), Some("y"), Some("x")])
        });
        let w = learn(&names(3), &items, Source::Answers);
        let easy = &w.categories["easy"];
        let hard = &w.categories["hard"];
        assert!(easy["s0"].weight > easy["s1"].weight);
        assert!(hard["s1"].weight > hard["s0"].weight);
        let tiny = &w.categories["tiny"];
        let whole = &w.seats;
        assert!((tiny["s0"].accuracy - whole["s0"].accuracy).abs() < 0.05);
    }
}
