//! The comparator: makes the keys of a run (sharing one vocabulary) and scores how alike
//! two of them are, in [0, 1], symmetric, and 1 on identical keys. Two numeric keys
//! compare by value within the relative tolerance; any other pair by the metric.

use std::cell::RefCell;

use crate::text::Text;

use super::extract::extract;
use super::key::Key;
use super::mode::{AnswerMode, Metric};
use super::tokens::Vocabulary;

/// Extracts keys and compares them with one metric and numeric tolerance. Keys made by
/// one comparator share its vocabulary and are only comparable with each other.
#[derive(Clone, Debug)]
pub struct Comparator {
    metric: Metric,
    /// Relative tolerance for numeric keys: |a − b| ≤ tolerance · max(|a|, |b|).
    tolerance: f64,
    vocabulary: RefCell<Vocabulary>,
}

impl Comparator {
    pub fn new(metric: Metric, tolerance: f64) -> Comparator {
        Comparator {
            metric,
            tolerance,
            vocabulary: RefCell::default(),
        }
    }

    /// The normalized key of an answer; None when it has no extractable key.
    pub fn key(&self, answer: &str, mode: &AnswerMode) -> Option<Key> {
        let key = self.key_of(&extract(answer, mode)?);
        (!key.is_empty()).then_some(key)
    }

    /// [`Comparator::key`] of a shared answer, sharing its text when the key is all of it.
    pub fn key_in(&self, answer: &Text, mode: &AnswerMode) -> Option<Key> {
        let text = extract(answer, mode)?;
        let key = self.make(&text, Some(answer));
        (!key.is_empty()).then_some(key)
    }

    /// The normalized key of a text taken as a whole.
    pub fn key_of(&self, text: &str) -> Key {
        self.make(text, None)
    }

    fn make(&self, text: &str, whole: Option<&Text>) -> Key {
        Key::new(
            text,
            whole,
            &mut self.vocabulary.borrow_mut(),
            self.metric.compares_sequences(),
        )
    }

    /// Calls `each(i, j)`, `i < j` in increasing order, for every pair of `keys` with
    /// `at_least(keys[i], keys[j], threshold)`.
    pub fn pairs_at_least(
        &self,
        keys: &[&Key],
        threshold: f64,
        mut each: impl FnMut(usize, usize),
    ) {
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                if self.at_least(keys[i], keys[j], threshold) {
                    each(i, j);
                }
            }
        }
    }

    /// Similarity in [0, 1].
    pub fn sim(&self, a: &Key, b: &Key) -> f64 {
        if let (Some(x), Some(y)) = (a.number, b.number) {
            return if numbers_equal(x, y, self.tolerance) {
                1.0
            } else {
                0.0
            };
        }
        match self.metric {
            Metric::Jaccard => a.set.jaccard(&b.set),
            Metric::Dice => a.set.dice(&b.set),
            Metric::Levenshtein => levenshtein(&a.seq, &b.seq),
            Metric::JaroWinkler => jaro_winkler(&a.seq, &b.seq),
            Metric::Exact => f64::from(u8::from(a.seq == b.seq)),
        }
    }

    /// Whether `sim(a, b) >= threshold`, within 1e-12 (so that a value computed as
    /// 0.6 reaches a threshold of 0.6).
    pub fn at_least(&self, a: &Key, b: &Key, threshold: f64) -> bool {
        self.sim(a, b) >= threshold - 1e-12
    }
}

fn numbers_equal(x: f64, y: f64, tolerance: f64) -> bool {
    x == y || (x - y).abs() <= tolerance * x.abs().max(y.abs())
}

/// 1 − (edit distance over tokens) / (longer token count); 1 when both are empty.
pub fn levenshtein(a: &str, b: &str) -> f64 {
    let ta: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
    let tb: Vec<&str> = b.split(' ').filter(|t| !t.is_empty()).collect();
    let longer = ta.len().max(tb.len());
    if longer == 0 {
        return 1.0;
    }
    1.0 - strsim::generic_levenshtein(&ta, &tb) as f64 / longer as f64
}

/// Jaro–Winkler over characters, symmetric by construction; 1 when both are empty.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    strsim::jaro_winkler(x, y).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmp(metric: Metric) -> Comparator {
        Comparator::new(metric, 0.0)
    }

    thread_local! {
        static SHARED: Comparator = Comparator::new(Metric::Jaccard, 0.0);
    }

    /// Keys of one shared vocabulary, comparable by any comparator's metric.
    fn key(text: &str) -> Key {
        SHARED.with(|c| c.key_of(text))
    }

    const METRICS: [Metric; 5] = [
        Metric::Jaccard,
        Metric::Dice,
        Metric::Levenshtein,
        Metric::JaroWinkler,
        Metric::Exact,
    ];

    #[test]
    fn punctuation_and_case_do_not_split_agreement() {
        let c = cmp(Metric::Jaccard);
        assert_eq!(c.sim(&key("Paris."), &key("paris")), 1.0);
        assert_eq!(key("Hello, World!").normalized(), "hello world");
        assert_eq!(key("ÉCOLE Ünïcode").normalized(), "école ünïcode");
    }

    #[test]
    fn numbers_compare_numerically() {
        let c = cmp(Metric::Jaccard);
        assert_eq!(c.sim(&key("4"), &key("4.0")), 1.0);
        assert_eq!(c.sim(&key("1,000"), &key("1000")), 1.0);
        assert_eq!(c.sim(&key("1e3"), &key("1000.")), 1.0);
        assert_eq!(c.sim(&key("4"), &key("5")), 0.0);
        let loose = Comparator::new(Metric::Jaccard, 0.01);
        assert_eq!(loose.sim(&key("100"), &key("100.5")), 1.0);
        assert_eq!(loose.sim(&key("100"), &key("102")), 0.0);
    }

    #[test]
    fn answers_without_a_key_have_none() {
        let c = cmp(Metric::Jaccard);
        assert!(c.key("I am not sure.", &AnswerMode::Choice).is_none());
        assert!(c.key("I am not sure.", &AnswerMode::Number).is_none());
        assert!(c.key("I am not sure.", &AnswerMode::Line).is_none());
    }

    #[test]
    fn a_key_that_is_the_whole_answer_shares_its_text() {
        let c = cmp(Metric::Jaccard);
        let answer = Text::from("  Paris is the capital.  ");
        let key = c.key_in(&answer, &AnswerMode::Full).unwrap();
        assert_eq!(key.text(), "Paris is the capital.");
        let answer = Text::from("Paris is the capital.");
        let key = c.key_in(&answer, &AnswerMode::Full).unwrap();
        assert!(std::ptr::eq(key.text(), answer.as_str()));
    }

    #[test]
    fn pairs_at_least_lists_the_close_pairs_in_order() {
        let c = cmp(Metric::Jaccard);
        let keys = [
            c.key_of("red green blue"),
            c.key_of("blue green red"),
            c.key_of("red green"),
            c.key_of("cyan"),
            c.key_of("3"),
            c.key_of("3.0"),
        ];
        let refs: Vec<&Key> = keys.iter().collect();
        let mut got = Vec::new();
        c.pairs_at_least(&refs, 0.6, |i, j| got.push((i, j)));
        // 2/3 ≈ 0.667 reaches 0.6; the numbers compare by value.
        assert_eq!(got, [(0, 1), (0, 2), (1, 2), (4, 5)]);
    }

    proptest! {
        #[test]
        fn ascii_and_unicode_texts_tokenize_alike(words in proptest::collection::vec("[a-zA-Z0-9]{1,12}", 1..6)) {
            // Joined by an em dash (not ASCII, not a token), the words make the same key
            // as joined by spaces.
            for m in METRICS {
                let c = cmp(m);
                let ascii = c.key_of(&words.join(" "));
                let unicode = c.key_of(&words.join(" \u{2014} "));
                prop_assert_eq!(c.sim(&ascii, &unicode), 1.0);
            }
        }

        #[test]
        fn metrics_are_symmetric_bounded_and_reflexive(a in "\\PC{0,40}", b in "\\PC{0,40}") {
            for m in METRICS {
                let c = cmp(m);
                let (ka, kb) = (c.key_of(&a), c.key_of(&b));
                let ab = c.sim(&ka, &kb);
                let ba = c.sim(&kb, &ka);
                prop_assert!((0.0..=1.0).contains(&ab), "{m}: {ab}");
                prop_assert!((ab - ba).abs() < 1e-12, "{m}: {ab} vs {ba}");
                prop_assert_eq!(c.sim(&ka, &ka.clone()), 1.0);
                prop_assert_eq!(c.at_least(&ka, &kb, 0.6), ab >= 0.6 - 1e-12);
            }
        }

        #[test]
        fn case_and_punctuation_never_matter(words in proptest::collection::vec("[a-zA-Zéß0-9]{1,8}", 1..8)) {
            let plain = words.join(" ");
            let noisy = format!("**{}!**", words.join(", ").to_uppercase());
            for m in METRICS {
                let c = cmp(m);
                // Uppercasing ß gives SS, which lowercases to ss: compare to the round trip.
                let expected = c.key_of(&plain.to_uppercase());
                prop_assert_eq!(c.sim(&expected, &c.key_of(&noisy)), 1.0);
                prop_assert_eq!(c.sim(&c.key_of(&plain), &c.key_of("something else entirely")) < 1.0, true);
            }
        }

        /// Jaccard keys score what ordinary sets of their lowercased words score.
        #[test]
        fn jaccard_is_the_share_of_common_words(
            a in proptest::collection::vec("[a-cA-C]{1,2}", 0..12),
            b in proptest::collection::vec("[a-cA-C]{1,2}", 0..12),
        ) {
            use std::collections::BTreeSet;
            let c = cmp(Metric::Jaccard);
            let words = |w: &[String]| w.iter().map(|t| t.to_lowercase()).collect::<BTreeSet<_>>();
            let (wa, wb) = (words(&a), words(&b));
            let union = wa.union(&wb).count();
            let want = if union == 0 { 1.0 } else { wa.intersection(&wb).count() as f64 / union as f64 };
            prop_assert_eq!(c.sim(&c.key_of(&a.join(" ")), &c.key_of(&b.join(", "))), want);
        }
    }
}
