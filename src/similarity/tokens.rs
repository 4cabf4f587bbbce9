//! Tokens, and sets of them: text splits into maximal runs of letters and digits, each
//! lowercased; a [`Vocabulary`] gives every distinct token a small number, so that a
//! [`TokenSet`] is a bitset and comparing two sets is counting the bits they share.

use rustc_hash::FxHashMap;

/// Maximal runs of Unicode letters and digits.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// Each ASCII letter and digit lowercased, and 0 for every other byte: one load tells
/// whether a byte continues a token and what it adds to it.
const LOWER_ALNUM: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if byte.is_ascii_alphanumeric() {
            table[b] = byte.to_ascii_lowercase();
        }
        b += 1;
    }
    table
};

/// Appends `token` lowercased, character by character.
pub(super) fn push_lower(out: &mut String, token: &str) {
    if token.is_ascii() {
        let start = out.len();
        out.push_str(token);
        out[start..].make_ascii_lowercase();
    } else {
        out.extend(token.chars().flat_map(char::to_lowercase));
    }
}

/// Dense ids for distinct tokens: the first token seen is 0, the next new one 1, and so
/// on. Sets of ids are only comparable when their ids come from one vocabulary.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    /// Tokens of up to 15 bytes (nearly all words) as numbers: looking one up then hashes
    /// and compares integers instead of strings (calls to `memcmp` took a sixth of the
    /// reference workload's time).
    short: FxHashMap<u128, u32>,
    long: FxHashMap<Box<[u8]>, u32>,
}

impl Vocabulary {
    /// The id of `token` (its UTF-8 bytes), assigning the next one to a token not seen
    /// before.
    pub fn id(&mut self, token: &[u8]) -> u32 {
        let next = self.next_id();
        match as_number(token) {
            Some(key) => *self.short.entry(key).or_insert(next),
            None => match self.long.get(token) {
                Some(&id) => id,
                None => {
                    self.long.insert(token.into(), next);
                    next
                }
            },
        }
    }

    /// Calls `each` with the id of every token of ASCII `text`, lowercased, in order:
    /// the ids of [`tokens`] of the text, found in one pass over its bytes that
    /// lowercases and packs each token as it goes (no lowercased copy of the text).
    pub fn ascii_ids(&mut self, text: &[u8], mut each: impl FnMut(u32)) {
        // The token so far as `as_number` packs it, and where it started.
        let mut packed = 1u128;
        let mut start = 0;
        for (at, &b) in text.iter().enumerate() {
            let lower = LOWER_ALNUM[usize::from(b)];
            if lower != 0 {
                packed = packed << 8 | u128::from(lower);
                continue;
            }
            if at > start {
                each(self.ascii_id(&text[start..at], packed));
            }
            packed = 1;
            start = at + 1;
        }
        if text.len() > start {
            each(self.ascii_id(&text[start..], packed));
        }
    }

    /// The id of `token`, whose lowercase is `packed` when it has at most 15 bytes.
    fn ascii_id(&mut self, token: &[u8], packed: u128) -> u32 {
        if token.len() <= 15 {
            let next = self.next_id();
            *self.short.entry(packed).or_insert(next)
        } else {
            self.id(&token.to_ascii_lowercase())
        }
    }

    fn next_id(&self) -> u32 {
        u32::try_from(self.len()).expect("fewer than 2^32 distinct tokens")
    }

    /// Distinct tokens seen.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token of at most 15 bytes as one number: a 1 bit, then the token's bytes. The
/// highest set bit marks the length, so two tokens are equal exactly when their numbers
/// are.
fn as_number(token: &[u8]) -> Option<u128> {
    (token.len() <= 15).then(|| token.iter().fold(1u128, |key, &b| key << 8 | u128::from(b)))
}

/// A set of token ids of one [`Vocabulary`], as a bitset: bit `id % 64` of word
/// `id / 64`. The words end at the highest id, so equal sets are equal values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSet {
    words: Vec<u64>,
    len: usize,
}

impl TokenSet {
    pub fn insert(&mut self, id: u32) {
        let word = id as usize / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (id % 64);
        // Counted without a branch: whether a word repeats is a coin toss for the
        // processor, and a wrong guess cost more than the count.
        self.len += usize::from(self.words[word] & bit == 0);
        self.words[word] |= bit;
    }

    /// An empty set with room for the ids below `ids` (the vocabulary's size), so that
    /// inserting them does not grow it step by step.
    pub fn with_room(ids: usize) -> TokenSet {
        TokenSet {
            words: Vec::with_capacity(ids.div_ceil(64)),
            len: 0,
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// |A ∩ B|.
    pub fn intersection(&self, other: &TokenSet) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as usize)
            .sum()
    }

    /// |A ∩ B| / |A ∪ B|; 1 when both are empty.
    pub fn jaccard(&self, other: &TokenSet) -> f64 {
        if self.is_empty() && other.is_empty() {
            return 1.0;
        }
        let common = self.intersection(other);
        common as f64 / (self.len + other.len - common) as f64
    }

    /// 2|A ∩ B| / (|A| + |B|); 1 when both are empty.
    pub fn dice(&self, other: &TokenSet) -> f64 {
        if self.is_empty() && other.is_empty() {
            return 1.0;
        }
        2.0 * self.intersection(other) as f64 / (self.len + other.len) as f64
    }
}

impl FromIterator<u32> for TokenSet {
    fn from_iter<I: IntoIterator<Item = u32>>(ids: I) -> TokenSet {
        let mut set = TokenSet::default();
        for id in ids {
            set.insert(id);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn tokens_are_runs_of_letters_and_digits() {
        let got: Vec<&str> = tokens("Hello, wörld! x2 -- 3.5").collect();
        assert_eq!(got, ["Hello", "wörld", "x2", "3", "5"]);
        let mut out = String::new();
        push_lower(&mut out, "ÉCOLE");
        push_lower(&mut out, "AbC");
        assert_eq!(out, "écoleabc");
    }

    #[test]
    fn vocabulary_ids_are_dense_and_stable() {
        let mut v = Vocabulary::default();
        let ids: Vec<u32> = (0..10_000)
            .map(|i| v.id(format!("w{i}").as_bytes()))
            .collect();
        assert_eq!(ids, (0..10_000).collect::<Vec<u32>>());
        assert_eq!(v.id(b"w1234"), 1234);
        assert_eq!(v.len(), 10_000);
        // Tokens are compared as whole strings: no two distinct tokens share an id.
        assert_ne!(v.id(b"a"), v.id(b"a\0"));
        assert_ne!(v.id(b""), v.id(b"\0"));
        assert_ne!(v.id(b"ab"), v.id(b"a"));
        // Tokens longer than 15 bytes are kept apart from their prefixes too.
        let long = [b'a'; 16];
        assert_ne!(v.id(&long), v.id(&long[..15]));
        assert_eq!(v.id(&[b'a'; 16]), v.id(&long));
    }

    proptest! {
        /// Two tokens get one id exactly when they are equal, short or long.
        #[test]
        fn ids_are_equal_exactly_when_tokens_are(
            tokens in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..20),
                0..40,
            ),
        ) {
            let mut v = Vocabulary::default();
            let ids: Vec<u32> = tokens.iter().map(|t| v.id(t)).collect();
            for i in 0..tokens.len() {
                for j in 0..tokens.len() {
                    prop_assert_eq!(ids[i] == ids[j], tokens[i] == tokens[j]);
                }
            }
            let distinct: BTreeSet<&Vec<u8>> = tokens.iter().collect();
            prop_assert_eq!(v.len(), distinct.len());
        }

        /// One pass over ASCII bytes finds the ids of the lowercased [`tokens`], short
        /// (packed) or long (looked up as bytes), in either order of first sight.
        #[test]
        fn ascii_ids_are_the_ids_of_the_lowercased_tokens(
            text in "[a-zA-Z0-9 .,!\\-]{0,80}",
            long in "[a-zA-Z0-9]{14,20}",
        ) {
            let text = format!("{text} {long} {}", long.to_uppercase());
            for packed_first in [true, false] {
                let mut v = Vocabulary::default();
                let by_token = |v: &mut Vocabulary| {
                    tokens(&text).map(|t| v.id(t.to_lowercase().as_bytes())).collect::<Vec<u32>>()
                };
                let one_pass = |v: &mut Vocabulary| {
                    let mut ids = Vec::new();
                    v.ascii_ids(text.as_bytes(), |id| ids.push(id));
                    ids
                };
                let (one_pass, by_bytes) = if packed_first {
                    let first = one_pass(&mut v);
                    (first, by_token(&mut v))
                } else {
                    let first = by_token(&mut v);
                    (one_pass(&mut v), first)
                };
                prop_assert_eq!(&one_pass, &by_bytes);
                let distinct: BTreeSet<String> = tokens(&text).map(str::to_lowercase).collect();
                prop_assert_eq!(v.len(), distinct.len());
            }
        }

        /// The bitset counts exactly what ordinary sets of the same ids count.
        #[test]
        fn set_measures_equal_those_of_ordinary_sets(
            a in proptest::collection::vec(0u32..3000, 0..300),
            b in proptest::collection::vec(0u32..3000, 0..300),
        ) {
            let (sa, sb): (TokenSet, TokenSet) = (a.iter().copied().collect(), b.iter().copied().collect());
            let (ra, rb): (BTreeSet<u32>, BTreeSet<u32>) = (a.iter().copied().collect(), b.iter().copied().collect());
            let common = ra.intersection(&rb).count();
            let union = ra.union(&rb).count();
            prop_assert_eq!((sa.len(), sb.len()), (ra.len(), rb.len()));
            prop_assert_eq!(sa.intersection(&sb), common);
            let jaccard = if union == 0 { 1.0 } else { common as f64 / union as f64 };
            prop_assert_eq!(sa.jaccard(&sb), jaccard);
            prop_assert_eq!(sb.jaccard(&sa), jaccard);
            let dice = if union == 0 { 1.0 } else { 2.0 * common as f64 / (ra.len() + rb.len()) as f64 };
            prop_assert_eq!(sa.dice(&sb), dice);
            prop_assert!(a.iter().all(|&id| sa.contains(id)));
            prop_assert!((0..3000).filter(|id| !ra.contains(id)).all(|id| !sa.contains(id)));
            // The same ids in another order make an equal value.
            let reversed: TokenSet = a.iter().rev().copied().collect();
            prop_assert_eq!(&reversed, &sa);
        }
    }
}
