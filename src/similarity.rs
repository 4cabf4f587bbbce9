//! Answer keys and similarity metrics: pure functions, no I/O.
//!
//! A *key* is the part of an answer that is compared (docs/protocol.md §1). It is normalized
//! once into tokens (maximal runs of Unicode letters and digits, lowercased, so `Paris.`
//! equals `paris`) and, when the key is a number, into that number (`4` equals `4.0`,
//! `1,000` equals `1000`). Metrics then compare normalized keys and return a value in
//! [0, 1] that is symmetric and 1 on identical keys.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;

use crate::text::Text;

pub mod scan;
pub mod table;

pub use scan::{TokenClass, for_each_token_hash};
pub use table::SetTable;

/// Which part of an answer is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerMode {
    /// The `Final answer:` line when there is one, the whole text otherwise.
    Auto,
    /// The whole text.
    Full,
    /// Only the `Final answer:` line; an answer without one has no key.
    Line,
    /// The last number of the `Final answer:` line, or of the whole text.
    Number,
    /// A multiple-choice letter A–J, from the usual phrasings.
    Choice,
    /// The first capture group of a regular expression (its last match in the answer).
    Regex(Pattern),
    /// The value at a JSON pointer (RFC 6901) of the JSON object in the answer.
    Json(String),
}

/// A compiled `--answer regex:` pattern; equal when the source text is.
#[derive(Clone, Debug)]
pub struct Pattern(Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl AnswerMode {
    /// Whether participants should be asked to end with a `Final answer:` line.
    pub fn asks_for_final_line(&self) -> bool {
        !matches!(self, AnswerMode::Full)
    }
}

impl FromStr for AnswerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AnswerMode, String> {
        let s = s.trim();
        if let Some(re) = s.strip_prefix("regex:") {
            let re = Regex::new(re).map_err(|e| format!("invalid regex `{re}`: {e}"))?;
            if re.captures_len() < 2 {
                return Err(format!(
                    "the regex `{}` has no capture group: put the compared part in (...)",
                    re.as_str()
                ));
            }
            return Ok(AnswerMode::Regex(Pattern(re)));
        }
        if let Some(pointer) = s.strip_prefix("json:") {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(format!(
                    "the JSON pointer `{pointer}` must be empty or start with `/` (for example json:/answer)"
                ));
            }
            return Ok(AnswerMode::Json(pointer.to_string()));
        }
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AnswerMode::Auto),
            "full" => Ok(AnswerMode::Full),
            "line" => Ok(AnswerMode::Line),
            "number" => Ok(AnswerMode::Number),
            "choice" => Ok(AnswerMode::Choice),
            other => Err(format!(
                "unknown answer mode `{other}` (expected auto, full, line, number, choice, regex:<RE> or json:<POINTER>)"
            )),
        }
    }
}

impl fmt::Display for AnswerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerMode::Auto => f.write_str("auto"),
            AnswerMode::Full => f.write_str("full"),
            AnswerMode::Line => f.write_str("line"),
            AnswerMode::Number => f.write_str("number"),
            AnswerMode::Choice => f.write_str("choice"),
            AnswerMode::Regex(p) => write!(f, "regex:{}", p.0.as_str()),
            AnswerMode::Json(p) => write!(f, "json:{p}"),
        }
    }
}

/// How two keys are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// |A ∩ B| / |A ∪ B| over token sets.
    Jaccard,
    /// 2|A ∩ B| / (|A| + |B|) over token sets.
    Dice,
    /// 1 − edit distance / longer length, over the token sequences.
    Levenshtein,
    /// Jaro–Winkler over the normalized token text.
    JaroWinkler,
    /// 1 when the normalized token sequences are equal, else 0.
    Exact,
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Metric, String> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "jaccard" => Ok(Metric::Jaccard),
            "dice" => Ok(Metric::Dice),
            "levenshtein" => Ok(Metric::Levenshtein),
            "jaro-winkler" | "jarowinkler" => Ok(Metric::JaroWinkler),
            "exact" => Ok(Metric::Exact),
            other => Err(format!(
                "unknown similarity `{other}` (expected jaccard, dice, levenshtein, jaro-winkler or exact)"
            )),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Jaccard => "jaccard",
            Metric::Dice => "dice",
            Metric::Levenshtein => "levenshtein",
            Metric::JaroWinkler => "jaro-winkler",
            Metric::Exact => "exact",
        })
    }
}

/// A normalized key.
#[derive(Clone, Debug)]
pub struct Key {
    /// The extracted text, trimmed, as shown to people.
    text: Text,
    /// Normalized tokens in order, joined by single spaces; built only for the metrics
    /// that compare sequences (levenshtein, jaro-winkler, exact).
    seq: String,
    /// The distinct tokens: the set the set metrics compare.
    set: TokenSet,
    /// The value, when the whole key is a number.
    number: Option<f64>,
}

impl Key {
    /// Normalizes a key's text, interning its tokens in `vocabulary`. Keys are only
    /// comparable with keys of the same vocabulary.
    fn new(text: &str, vocabulary: &mut Vocabulary, sequence: bool) -> Key {
        Key::new_in(text, None, vocabulary, sequence)
    }

    /// [`Key::new`], keeping `whole` as the key's text when the trimmed text is all of it
    /// instead of copying it.
    fn new_in(
        text: &str,
        whole: Option<&Text>,
        vocabulary: &mut Vocabulary,
        sequence: bool,
    ) -> Key {
        let text = text.trim();
        let mut seq = String::new();
        let set = if text.is_ascii() && !sequence {
            // The common case: ASCII letters and digits are exactly the ASCII characters
            // that are Unicode letters or digits.
            vocabulary.set_of_ascii(text.as_bytes(), TokenClass::AsciiAlnum)
        } else if text.is_ascii() {
            let mut set = TokenSet::with_capacity(vocabulary.len());
            for token in ascii_runs(text.as_bytes(), &ASCII_ALNUM) {
                set.insert(vocabulary.id(hash_lower_ascii(token)));
                if !seq.is_empty() {
                    seq.push(' ');
                }
                seq.extend(token.iter().map(|&b| char::from(b.to_ascii_lowercase())));
            }
            set
        } else {
            let mut set = TokenSet::with_capacity(vocabulary.len());
            let mut lowered = String::new();
            for token in tokens(text) {
                lowered.clear();
                push_lower(&mut lowered, token);
                set.insert(vocabulary.id(hash(lowered.as_bytes())));
                if sequence {
                    if !seq.is_empty() {
                        seq.push(' ');
                    }
                    seq.push_str(&lowered);
                }
            }
            set
        };
        let shared = whole.filter(|w| std::ptr::eq(w.as_ref(), text));
        Key {
            text: shared.map_or_else(|| Text::from(text), Text::clone),
            seq,
            set,
            number: parse_number(text),
        }
    }

    /// The key as extracted (trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The key's text, shared rather than copied.
    pub fn shared_text(&self) -> Text {
        Text::clone(&self.text)
    }

    /// The normalized tokens joined by spaces (`"Paris."` → `"paris"`).
    pub fn normalized(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        for token in tokens(&self.text) {
            if !out.is_empty() {
                out.push(' ');
            }
            push_lower(&mut out, token);
        }
        out
    }

    /// Jaccard of the two keys' token sets, whatever the comparator's metric (both keys
    /// from one comparator).
    pub fn token_jaccard(&self, other: &Key) -> f64 {
        self.set.jaccard(&other.set)
    }

    /// The distinct tokens.
    pub fn tokens(&self) -> &TokenSet {
        &self.set
    }

    /// The distinct tokens, without the rest of the key.
    pub fn into_tokens(self) -> TokenSet {
        self.set
    }

    /// The number the key denotes, when it is one.
    pub fn number(&self) -> Option<f64> {
        self.number
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Dense ids for token hashes, so that token sets are bitsets and comparing two sets is
/// a run of AND + popcount instead of a merge.
///
/// An open-addressing table of buckets, each one cache line of four keys and their ids.
/// A lookup compares the key with the whole bucket at once (one vector compare where the
/// CPU has one), so finding a known token reads one line and takes no branch that depends
/// on where in its bucket the token sits.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    buckets: Vec<Bucket>,
    len: u32,
    /// 64 - log2(buckets): a key's home bucket is the top bits of key × an odd constant.
    shift: u32,
    /// The token keys of the text being interned.
    scratch: Vec<u64>,
    /// One byte per id, all zero between uses: the tokens of the text being interned.
    /// Storing a flag byte per token, then packing the flags into bits, is faster than
    /// setting bits one by one, where every token would read back the word written by
    /// the one before.
    seen: Vec<u8>,
}

/// Slots per bucket.
const SLOTS: usize = 4;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; SLOTS],
    ids: [u32; SLOTS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    keys: [VACANT; SLOTS],
    ids: [0; SLOTS],
};

/// A free slot's key: no token's key (see [`hash`]).
const VACANT: u64 = u64::MAX;

/// Buckets of a new vocabulary (64 KB): it holds about a thousand distinct tokens before
/// it grows, so a small panel's run rarely rehashes.
const FIRST_BUCKETS: usize = 1024;

/// Multiplying by it spreads a key's bits into the top ones (Fibonacci hashing): short
/// keys are raw text, whose low bits alone would crowd a few buckets.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for Vocabulary {
    fn default() -> Vocabulary {
        Vocabulary::with_buckets(FIRST_BUCKETS)
    }
}

impl Vocabulary {
    /// An empty vocabulary of `buckets` (a power of two) buckets.
    fn with_buckets(buckets: usize) -> Vocabulary {
        assert!(buckets.is_power_of_two());
        Vocabulary {
            buckets: vec![EMPTY_BUCKET; buckets],
            len: 0,
            shift: 64 - buckets.trailing_zeros(),
            scratch: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The id of a token hash, assigning the next one to a new hash.
    pub fn id(&mut self, token_hash: u64) -> u32 {
        self.id_with(token_hash, slots_equal)
    }

    /// [`Vocabulary::id`], with `equal` giving the slots of a bucket that hold a key.
    #[inline(always)]
    fn id_with(&mut self, key: u64, equal: impl Fn(&[u64; SLOTS], u64) -> u32) -> u32 {
        debug_assert_ne!(key, VACANT);
        let mask = self.buckets.len() - 1;
        let mut b = self.home(key);
        loop {
            let bucket = &self.buckets[b];
            let hit = equal(&bucket.keys, key);
            if hit != 0 {
                return bucket.ids[hit.trailing_zeros() as usize];
            }
            // Slots fill in order, so a bucket with a free slot ends the search.
            let free = equal(&bucket.keys, VACANT);
            if free != 0 {
                return self.insert(b, free.trailing_zeros() as usize, key);
            }
            b = (b + 1) & mask;
        }
    }

    /// The set of the tokens of ASCII `text` (see [`for_each_token_hash`]), interned.
    ///
    /// The text is scanned into a buffer of keys first and the keys are looked up after:
    /// two tight loops, each with few live values, instead of one that does both.
    pub fn set_of_ascii(&mut self, text: &[u8], class: TokenClass) -> TokenSet {
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        scan::token_keys(text, class, &mut keys);
        // Its words are allocated once the highest id is known.
        let mut set = TokenSet::default();
        self.insert_all(&keys, &mut set);
        self.scratch = keys;
        set.recount();
        set
    }

    fn insert_all(&mut self, keys: &[u64], set: &mut TokenSet) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: the CPU has just been found to support AVX-512F, -VL and -BW.
                return unsafe { self.insert_all_avx512(keys, set) };
            }
        }
        self.insert_all_with(keys, set, slots_equal, |flags| {
            flags
                .iter()
                .enumerate()
                .fold(0, |m, (i, &f)| m | u64::from(f) << i)
        });
    }

    /// [`Vocabulary::insert_all`] with a bucket compared, and 64 flags packed, in one
    /// instruction each.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw")]
    fn insert_all_avx512(&mut self, keys: &[u64], set: &mut TokenSet) {
        use std::arch::x86_64::{
            _mm256_cmpeq_epi64_mask, _mm256_loadu_si256, _mm256_set1_epi64x, _mm512_loadu_si512,
            _mm512_test_epi8_mask,
        };
        self.insert_all_with(
            keys,
            set,
            |slots, key| {
                // SAFETY: `slots` is 32 readable bytes; the load has no alignment
                // requirement.
                let slots = unsafe { _mm256_loadu_si256(slots.as_ptr().cast()) };
                u32::from(_mm256_cmpeq_epi64_mask(
                    slots,
                    _mm256_set1_epi64x(key as i64),
                ))
            },
            |flags| {
                // SAFETY: `flags` is 64 readable bytes; the load has no alignment
                // requirement.
                let flags = unsafe { _mm512_loadu_si512(flags.as_ptr().cast()) };
                _mm512_test_epi8_mask(flags, flags)
            },
        );
    }

    /// Adds the ids of `keys` to `set` (an empty one).
    #[inline(always)]
    fn insert_all_with(
        &mut self,
        keys: &[u64],
        set: &mut TokenSet,
        equal: impl Fn(&[u64; SLOTS], u64) -> u32,
        pack: impl Fn(&[u8; 64]) -> u64,
    ) {
        debug_assert!(set.bits.is_empty());
        for &key in keys {
            let id = self.id_with(key, &equal);
            self.seen[id as usize] = 1;
        }
        if keys.is_empty() {
            return;
        }
        // Every flag that may be set, packed; then the words past this text's highest id
        // are dropped, so a set ends at its last id as if built one id at a time.
        let words = self.len().div_ceil(64);
        set.bits.reserve_exact(words);
        set.bits
            .extend(self.seen[..words * 64].chunks_exact_mut(64).map(|flags| {
                let flags: &mut [u8; 64] = flags.try_into().expect("64 flags");
                let word = pack(flags);
                flags.fill(0);
                word
            }));
        while set.bits.last() == Some(&0) {
            set.bits.pop();
        }
    }

    /// Distinct tokens seen.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(SPREAD) >> self.shift) as usize
    }

    #[inline(never)]
    fn insert(&mut self, bucket: usize, slot: usize, key: u64) -> u32 {
        let id = self.len;
        self.buckets[bucket].keys[slot] = key;
        self.buckets[bucket].ids[slot] = id;
        self.len += 1;
        if self.seen.len() < self.len as usize {
            self.seen.resize(self.seen.len() + 64, 0);
        }
        // At most a quarter full: a bucket then overflows into the next one rarely
        // enough that nearly every lookup reads one cache line.
        if self.len as usize * 4 > self.buckets.len() * SLOTS {
            self.grow();
        }
        id
    }

    #[cold]
    fn grow(&mut self) {
        let size = self.buckets.len() * 2;
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY_BUCKET; size]);
        self.shift -= 1;
        let mask = size - 1;
        for bucket in &old {
            for (&key, &id) in bucket.keys.iter().zip(&bucket.ids) {
                if key == VACANT {
                    break;
                }
                let mut b = self.home(key);
                loop {
                    let free = slots_equal(&self.buckets[b].keys, VACANT);
                    if free != 0 {
                        let slot = free.trailing_zeros() as usize;
                        self.buckets[b].keys[slot] = key;
                        self.buckets[b].ids[slot] = id;
                        break;
                    }
                    b = (b + 1) & mask;
                }
            }
        }
    }
}

/// Bit i set when `slots[i] == key`.
#[inline(always)]
fn slots_equal(slots: &[u64; SLOTS], key: u64) -> u32 {
    slots
        .iter()
        .enumerate()
        .fold(0, |m, (i, &k)| m | u32::from(k == key) << i)
}

/// A set of token ids of one [`Vocabulary`], as a bitset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSet {
    bits: Vec<u64>,
    len: usize,
    /// `head[c]`: how many ids lie in the first `(c + 1) * HEAD_WORDS` words, so a
    /// comparison can stop early once the rest cannot reach its threshold.
    head: [u32; HEAD_CHECKS],
}

/// Words between the early-stop checks of [`TokenSet::jaccard_at_least`].
const HEAD_WORDS: usize = 8;
/// Early-stop checks.
const HEAD_CHECKS: usize = 3;

impl TokenSet {
    /// An empty set with room for ids below `ids` without growing.
    pub fn with_capacity(ids: usize) -> TokenSet {
        TokenSet {
            bits: Vec::with_capacity(ids / 64 + 1),
            len: 0,
            head: [0; HEAD_CHECKS],
        }
    }

    #[inline]
    pub fn insert(&mut self, id: u32) {
        let word = id as usize / 64;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << (id % 64);
        if self.bits[word] & mask == 0 {
            self.bits[word] |= mask;
            self.len += 1;
            for h in &mut self.head[(word / HEAD_WORDS).min(HEAD_CHECKS)..] {
                *h += 1;
            }
        }
    }

    /// Adds `id` without counting it: for building a set in one go, then [`recount`].
    ///
    /// [`recount`]: TokenSet::recount
    #[inline]
    pub fn insert_uncounted(&mut self, id: u32) {
        let word = id as usize / 64;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1u64 << (id % 64);
    }

    /// Brings the size up to date after [`insert_uncounted`].
    ///
    /// [`insert_uncounted`]: TokenSet::insert_uncounted
    pub fn recount(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has just been found to support POPCNT.
                return unsafe { self.recount_popcnt() };
            }
        }
        self.recount_with();
    }

    /// [`TokenSet::recount`] with one instruction per word's count.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn recount_popcnt(&mut self) {
        self.recount_with();
    }

    #[inline(always)]
    fn recount_with(&mut self) {
        let mut len = 0;
        for (c, chunk) in self.bits.chunks(HEAD_WORDS).enumerate() {
            len += chunk.iter().map(|w| w.count_ones() as usize).sum::<usize>();
            if let Some(head) = self.head.get_mut(c) {
                *head = len as u32;
            }
        }
        // Checks past the last word: every id lies before them.
        let full = self.bits.len().div_ceil(HEAD_WORDS);
        for h in &mut self.head[full.min(HEAD_CHECKS)..] {
            *h = len as u32;
        }
        self.len = len;
    }

    /// Whether `self.jaccard(other) >= threshold - 1e-12`, stopping early when even
    /// the best case for the words not yet compared stays below it.
    pub fn jaccard_at_least(&self, other: &TokenSet, threshold: f64) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512_popcount() {
                // SAFETY: the CPU has just been found to support AVX-512F and VPOPCNTDQ.
                return unsafe { self.jaccard_at_least_avx512(other, threshold) };
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has just been found to support the popcnt instruction.
                return unsafe { self.jaccard_at_least_popcnt(other, threshold) };
            }
        }
        self.jaccard_at_least_with(other, threshold, popcount_and_portable)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn jaccard_at_least_popcnt(&self, other: &TokenSet, threshold: f64) -> bool {
        self.jaccard_at_least_with(other, threshold, popcount_and_portable)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    fn jaccard_at_least_avx512(&self, other: &TokenSet, threshold: f64) -> bool {
        self.jaccard_at_least_with(other, threshold, |a, b| popcount_and_avx512(a, b))
    }

    #[inline(always)]
    fn jaccard_at_least_with(
        &self,
        other: &TokenSet,
        threshold: f64,
        count: impl Fn(&[u64], &[u64]) -> usize,
    ) -> bool {
        let limit = threshold - 1e-12;
        if self.is_empty() && other.is_empty() {
            return 1.0 >= limit;
        }
        let total = self.len + other.len;
        let n = self.bits.len().min(other.bits.len());
        let (a, b) = (&self.bits[..n], &other.bits[..n]);
        let mut common = 0;
        let mut done = 0;
        for c in 0..HEAD_CHECKS {
            let end = (c + 1) * HEAD_WORDS;
            if end >= n {
                break;
            }
            common += count(&a[done..end], &b[done..end]);
            done = end;
            // At best every id left in the smaller rest is common; the Jaccard value
            // grows with the common count, so this bound is above the exact value.
            let rest = (self.len - self.head[c] as usize).min(other.len - other.head[c] as usize);
            let best = common + rest;
            if (best as f64) / ((total - best) as f64) < limit {
                return false;
            }
        }
        common += count(&a[done..], &b[done..]);
        common as f64 / (total - common) as f64 >= limit
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn intersection(&self, other: &TokenSet) -> usize {
        popcount_and(&self.bits, &other.bits)
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

/// Whether the CPU counts the bits of eight words at once (AVX-512 VPOPCNTDQ).
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx512_popcount() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
}

/// |a ∩ b| over the common length, eight words per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
fn popcount_and_avx512(a: &[u64], b: &[u64]) -> usize {
    use std::arch::x86_64::{
        _mm512_add_epi64, _mm512_and_si512, _mm512_loadu_si512, _mm512_maskz_loadu_epi64,
        _mm512_popcnt_epi64, _mm512_reduce_add_epi64, _mm512_setzero_si512,
    };
    let n = a.len().min(b.len());
    let mut sum = _mm512_setzero_si512();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: words i..i + 8 of both slices are in bounds; the loads are unaligned.
        let (x, y) = unsafe {
            (
                _mm512_loadu_si512(a.as_ptr().add(i).cast()),
                _mm512_loadu_si512(b.as_ptr().add(i).cast()),
            )
        };
        sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(_mm512_and_si512(x, y)));
        i += 8;
    }
    if i < n {
        let mask = (1u8 << (n - i)) - 1;
        // SAFETY: the mask selects only the words i..n, which are in bounds; masked-off
        // words are not read.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_epi64(mask, a.as_ptr().add(i).cast()),
                _mm512_maskz_loadu_epi64(mask, b.as_ptr().add(i).cast()),
            )
        };
        sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(_mm512_and_si512(x, y)));
    }
    _mm512_reduce_add_epi64(sum) as usize
}

fn popcount_and(a: &[u64], b: &[u64]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512_popcount() {
            // SAFETY: the CPU has just been found to support AVX-512F and VPOPCNTDQ.
            return unsafe { popcount_and_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has just been found to support the popcnt instruction.
            return unsafe { popcount_and_native(a, b) };
        }
    }
    popcount_and_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn popcount_and_native(a: &[u64], b: &[u64]) -> usize {
    popcount_and_portable(a, b)
}

#[inline(always)]
fn popcount_and_portable(a: &[u64], b: &[u64]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // Four independent sums, so the popcounts of a chunk run in parallel.
    let mut sums = [0u64; 4];
    let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..4 {
            sums[k] += u64::from((x[k] & y[k]).count_ones());
        }
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sums[0] += u64::from((x & y).count_ones());
    }
    (sums[0] + sums[1] + sums[2] + sums[3]) as usize
}

/// Byte classes for [`ascii_runs`]: `true` for the bytes that belong to a token.
pub type ByteClass = [bool; 256];

/// ASCII letters and digits.
pub static ASCII_ALNUM: ByteClass = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    t
};

/// The maximal runs of bytes of class `member`, scanned with a lookup table.
#[inline]
pub fn ascii_runs<'a>(
    bytes: &'a [u8],
    member: &'a ByteClass,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !member[usize::from(bytes[i])] {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && member[usize::from(bytes[i])] {
            i += 1;
        }
        (start < i).then(|| &bytes[start..i])
    })
}

/// Maximal runs of Unicode letters and digits.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

fn push_lower(out: &mut String, token: &str) {
    if token.is_ascii() {
        out.extend(token.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        out.extend(token.chars().flat_map(char::to_lowercase));
    }
}

/// A token's 64-bit key. An ASCII token of at most eight bytes is its bytes themselves,
/// with the top bit of its last byte set to mark the length: exact, so two short tokens
/// never share a key, and free to compute. Longer tokens are hashed eight bytes at a time
/// with a final avalanche, and marked with the top bits of the last two bytes, which no
/// short key has: they do not collide in practice.
pub fn hash(bytes: &[u8]) -> u64 {
    match bytes.len() {
        0 => EMPTY_KEY,
        1..=8 if bytes.is_ascii() => short_key(load_partial_word(bytes), bytes.len()),
        _ => long_key(hash_words(bytes, |w| w)),
    }
}

/// `hash` of the ASCII-lowercased bytes of an ASCII token, without copying them: eight
/// bytes are lowercased at once (`A`–`Z` gain the 0x20 bit).
#[inline]
pub fn hash_lower_ascii(bytes: &[u8]) -> u64 {
    match bytes.len() {
        0 => EMPTY_KEY,
        1..=8 => short_key(lower_ascii_word(load_partial_word(bytes)), bytes.len()),
        _ => long_key(hash_words(bytes, lower_ascii_word)),
    }
}

/// The mark of a hashed (long) token's key: the top bits of its last two bytes.
const LONG_KEY: u64 = 0x8080 << 48;
/// The key of the empty token (never a real one): no top bit set, unlike every other key.
const EMPTY_KEY: u64 = 0;

/// A long token's key: its hash marked with [`LONG_KEY`], and bit 62 clear so that no
/// key is the vocabulary's [`VACANT`] (a short key has one top bit set, so it is not).
#[inline(always)]
fn long_key(hash: u64) -> u64 {
    (hash | LONG_KEY) & !(1 << 62)
}

/// The key of an ASCII token of `len` (1..=8) bytes packed little-endian into `word`.
#[inline(always)]
fn short_key(word: u64, len: usize) -> u64 {
    debug_assert!((1..=8).contains(&len));
    word | 0x80 << (8 * (len - 1))
}

/// Up to eight bytes as the low bytes of a little-endian word.
#[inline(always)]
fn load_partial_word(bytes: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(bytes) {
        Ok(all) => u64::from_le_bytes(all),
        Err(_) => load_partial(bytes),
    }
}

/// Eight ASCII bytes lowercased at once.
#[inline(always)]
fn lower_ascii_word(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Per byte b < 0x80: b + 0x3f has its high bit set iff b >= 'A', and b + 0x25 iff
    // b > 'Z'; neither sum carries into the next byte.
    let at_least_a = w.wrapping_add(ONES * (0x80 - u64::from(b'A')));
    let above_z = w.wrapping_add(ONES * (0x80 - u64::from(b'Z') - 1));
    let upper = at_least_a & !above_z & !w & (ONES * 0x80);
    w | (upper >> 2)
}

/// Up to 7 bytes as the low bytes of a little-endian word, with two overlapping fixed-size
/// reads instead of a variable-length copy.
#[inline(always)]
fn load_partial(rest: &[u8]) -> u64 {
    let n = rest.len();
    let read4 = |at: usize| {
        u64::from(u32::from_le_bytes(
            rest[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    let read2 = |at: usize| {
        u64::from(u16::from_le_bytes(
            rest[at..at + 2].try_into().expect("2 bytes"),
        ))
    };
    match n {
        0 => 0,
        1 => u64::from(rest[0]),
        2 | 3 => read2(0) | read2(n - 2) << (8 * (n - 2)),
        _ => read4(0) | read4(n - 4) << (8 * (n - 4)),
    }
}

/// The hash state's start for a token of `len` bytes.
const LEN_MUL: u64 = 0xff51_afd7_ed55_8ccd;

/// One eight-byte word into the hash state.
#[inline(always)]
fn mix_word(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

/// The final avalanche.
#[inline(always)]
fn finish_hash(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline(always)]
fn hash_words(bytes: &[u8], word: impl Fn(u64) -> u64) -> u64 {
    let mut h = (bytes.len() as u64).wrapping_mul(LEN_MUL);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        h = mix_word(
            h,
            word(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = mix_word(h, word(load_partial(rest)));
    }
    finish_hash(h)
}

/// The number a key denotes: `42`, `-3.5`, `1,000`, `1e3`, `$12`, `50%`, `4.` all count;
/// text around a number does not.
pub fn parse_number(text: &str) -> Option<f64> {
    // No number is written with this many characters; long keys are prose.
    if text.len() > 64 {
        return None;
    }
    let t = text.trim().trim_end_matches('.').trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    if t.is_empty() || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let plain: String = if t.contains(',') {
        // Only well-formed thousands groups: 1,000 or 12,345.5, never 1,5.
        let (int, frac) = t.split_once('.').map_or((t, None), |(i, f)| (i, Some(f)));
        let digits = int.trim_start_matches(['-', '+']);
        let mut groups = digits.split(',');
        let first = groups.next()?;
        if first.is_empty() || first.len() > 3 || !groups.all(|g| g.len() == 3) {
            return None;
        }
        let mut s = int.replace(',', "");
        if let Some(f) = frac {
            s.push('.');
            s.push_str(f);
        }
        s
    } else {
        t.to_string()
    };
    if !plain
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    plain.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn final_line_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)^[\s*_#>`-]*final\s+answer[\s*_`]*[:：][\s*_]*(.*?)[\s*_`]*$")
            .expect("a valid regex")
    })
}

/// The text of the last `Final answer:` line (markdown emphasis tolerated); when that line
/// is empty, the next non-empty line.
pub fn final_answer_line(text: &str) -> Option<&str> {
    // The line needs a colon, ASCII or fullwidth (U+FF1A, whose UTF-8 starts 0xEF): most
    // texts without one are passed over at memchr speed.
    memchr::memchr2(b':', 0xEF, text.as_bytes())?;
    let re = final_line_regex();
    for line in text.lines().rev() {
        if memchr::memchr2(b':', 0xEF, line.as_bytes()).is_none() {
            continue;
        }
        if let Some(c) = re.captures(line) {
            let value = c.get(1).map_or("", |m| m.as_str()).trim();
            if !value.is_empty() {
                return Some(value);
            }
            // The line is a slice of `text`: what follows it is the rest of `text`.
            let after = line.as_ptr() as usize - text.as_ptr() as usize + line.len();
            return text[after..].lines().map(str::trim).find(|l| !l.is_empty());
        }
    }
    None
}

/// The part of `answer` that `mode` compares; None when there is nothing to compare.
pub fn extract<'a>(answer: &'a str, mode: &AnswerMode) -> Option<Cow<'a, str>> {
    let key: Cow<'a, str> = match mode {
        AnswerMode::Full => Cow::Borrowed(answer),
        AnswerMode::Line => Cow::Borrowed(final_answer_line(answer)?),
        AnswerMode::Auto => Cow::Borrowed(final_answer_line(answer).unwrap_or(answer)),
        AnswerMode::Number => Cow::Borrowed(number_key(answer)?),
        AnswerMode::Choice => Cow::Owned(choice_key(answer)?.to_string()),
        AnswerMode::Regex(p) => Cow::Borrowed(regex_key(answer, &p.0)?),
        AnswerMode::Json(pointer) => Cow::Owned(json_key(answer, pointer)?),
    };
    let trimmed = key.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(match key {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    })
}

fn number_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?",
        )
            .expect("a valid regex")
    })
}

/// The last number of the `Final answer:` line, or of the whole text when there is no
/// such line (or it holds no number).
pub fn number_key(answer: &str) -> Option<&str> {
    let last = |text: &'_ str| -> Option<(usize, usize)> {
        let m = number_regex()
            .find_iter(text)
            .filter(|m| parse_number(m.as_str()).is_some())
            .last()?;
        // A sign glued to a word is a hyphen (`pages 3-4`), not a minus.
        let glued = text[..m.start()]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        let signed = m.as_str().starts_with(['-', '+']);
        Some((m.start() + usize::from(glued && signed), m.end()))
    };
    if let Some(line) = final_answer_line(answer)
        && let Some((a, b)) = last(line)
    {
        return Some(&line[a..b]);
    }
    last(answer).map(|(a, b)| &answer[a..b])
}

fn choice_regexes() -> &'static [Regex; 4] {
    static RE: OnceLock<[Regex; 4]> = OnceLock::new();
    RE.get_or_init(|| {
        [
            // The answer is (B) / the correct answer is: B / answer is **C**
            Regex::new(r"(?i:answer\s+is)\s*:?\s*[*_]*\s*(?:\(([A-Ja-j])\)|\[([A-J])\]|([A-J])\b)")
                .expect("a valid regex"),
            // \boxed{B} / \boxed{\text{B}}
            Regex::new(r"\\boxed\{\s*(?:\\text(?:bf)?\{)?\s*\(?([A-J])\b").expect("a valid regex"),
            // Answer: B / **Answer:** (B)
            Regex::new(r"(?i:answer)[*_]*\s*[:：]\s*[*_]*\s*(?:\(([A-Ja-j])\)|([A-J])\b)")
                .expect("a valid regex"),
            // A lone letter (the last line): B / (B) / **B.**
            Regex::new(r"^[\s*_>#]*(?:\(([A-Ja-j])\)|([A-J]))[\s*_.):]*$").expect("a valid regex"),
        ]
    })
}

/// A letter from a final-answer value: `B`, `(B)`, `B. Paris`, `Option B`, `**B**`.
fn letter_of_line(line: &str) -> Option<char> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r"^[\s*_>#]*(?:(?i:option)\s+)?(?:\(([A-Ja-j])\)|\[([A-J])\]|([A-J]))(?:[\s*_.):,]|$)",
        )
        .expect("a valid regex")
    });
    let bare = line.trim_matches(|c: char| c.is_whitespace() || "*_.()[]".contains(c));
    if let [letter @ (b'a'..=b'j' | b'A'..=b'J')] = bare.as_bytes() {
        return Some(char::from(letter.to_ascii_uppercase()));
    }
    if let Some(c) = re.captures(line) {
        return first_group_letter(&c);
    }
    // "Final answer: the answer is (B)" and similar.
    choice_regexes()[..3]
        .iter()
        .find_map(|re| re.captures_iter(line).last())
        .and_then(|c| first_group_letter(&c))
}

fn first_group_letter(c: &regex::Captures<'_>) -> Option<char> {
    c.iter()
        .skip(1)
        .flatten()
        .next()
        .and_then(|m| m.as_str().chars().next())
        .map(|ch| ch.to_ascii_uppercase())
}

/// The multiple-choice letter (A–J) of an answer. In order: the `Final answer:` line;
/// the last `the answer is (X)`; the last `\boxed{X}`; the last `Answer: X`; a lone
/// letter on the last non-empty line.
pub fn choice_key(answer: &str) -> Option<char> {
    if let Some(line) = final_answer_line(answer)
        && let Some(letter) = letter_of_line(line)
    {
        return Some(letter);
    }
    let res = choice_regexes();
    for re in &res[..3] {
        if let Some(c) = re.captures_iter(answer).last() {
            return first_group_letter(&c);
        }
    }
    let last_line = answer.lines().rev().find(|l| !l.trim().is_empty())?;
    res[3]
        .captures(last_line)
        .and_then(|c| first_group_letter(&c))
}

/// The first capture group of the last match of `re`.
fn regex_key<'a>(answer: &'a str, re: &Regex) -> Option<&'a str> {
    re.captures_iter(answer)
        .filter_map(|c| c.get(1))
        .last()
        .map(|m| m.as_str())
}

/// The JSON document of an answer: the whole text, else the last fenced code block that
/// parses, else the span from the first `{` (or `[`) to the last `}` (or `]`).
fn json_document(answer: &str) -> Option<serde_json::Value> {
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t.trim()).ok();
    if let Some(v) = parse(answer) {
        return Some(v);
    }
    let mut blocks = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        let Some(close) = body.find("```") else {
            break;
        };
        blocks.push(&body[..close]);
        rest = &body[close + 3..];
    }
    if let Some(v) = blocks.iter().rev().find_map(|b| parse(b)) {
        return Some(v);
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(a), Some(b)) = (answer.find(open), answer.rfind(close))
            && a < b
            && let Some(v) = parse(&answer[a..=b])
        {
            return Some(v);
        }
    }
    None
}

/// The value at `pointer` of the answer's JSON: strings as they are, other values as
/// compact JSON; null or missing gives no key.
pub fn json_key(answer: &str, pointer: &str) -> Option<String> {
    let doc = json_document(answer)?;
    match doc.pointer(pointer)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

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
        let key = Key::new_in(
            &text,
            Some(answer),
            &mut self.vocabulary.borrow_mut(),
            self.sequence(),
        );
        (!key.is_empty()).then_some(key)
    }

    /// The normalized key of a text taken as a whole.
    pub fn key_of(&self, text: &str) -> Key {
        Key::new(text, &mut self.vocabulary.borrow_mut(), self.sequence())
    }

    /// Whether keys keep their token sequence (for the metrics that compare sequences).
    fn sequence(&self) -> bool {
        matches!(
            self.metric,
            Metric::Levenshtein | Metric::JaroWinkler | Metric::Exact
        )
    }

    /// Calls `each(i, j)`, `i < j` in increasing order, for every pair of `keys` with
    /// `at_least(keys[i], keys[j], threshold)`. When the pass counts every pair's common
    /// tokens in full (Jaccard over a vocabulary of up to 2,048 tokens), it also leaves
    /// them in `commons`, pair by pair in the order `i < j`, and returns true.
    pub fn pairs_at_least(
        &self,
        keys: &[&Key],
        threshold: f64,
        mut each: impl FnMut(usize, usize),
        commons: Option<&mut Vec<u32>>,
    ) -> bool {
        if self.metric != Metric::Jaccard {
            for i in 0..keys.len() {
                for j in i + 1..keys.len() {
                    if self.at_least(keys[i], keys[j], threshold) {
                        each(i, j);
                    }
                }
            }
            if let Some(commons) = commons {
                commons.clear();
            }
            return false;
        }
        let sets: Vec<&TokenSet> = keys.iter().map(|k| &k.set).collect();
        let counted = SetTable::new(&sets).pairs_at_least(
            threshold,
            |i, j| {
                if keys[i].number.is_none() || keys[j].number.is_none() {
                    each(i, j);
                }
            },
            commons,
        );
        // Two numbers compare by value instead: a second, short pass over them alone.
        let numbers: Vec<usize> = (0..keys.len())
            .filter(|&i| keys[i].number.is_some())
            .collect();
        for (a, &i) in numbers.iter().enumerate() {
            for &j in &numbers[a + 1..] {
                if self.at_least(keys[i], keys[j], threshold) {
                    each(i, j);
                }
            }
        }
        counted
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

    /// Whether `sim(a, b) >= threshold`, skipping the work when sizes alone decide.
    pub fn at_least(&self, a: &Key, b: &Key, threshold: f64) -> bool {
        if self.metric == Metric::Jaccard && (a.number.is_none() || b.number.is_none()) {
            let (small, large) = if a.set.len() <= b.set.len() {
                (a.set.len(), b.set.len())
            } else {
                (b.set.len(), a.set.len())
            };
            // |A ∩ B| / |A ∪ B| ≤ |small| / |large|.
            if (small as f64) < (threshold - 1e-12) * large as f64 {
                return false;
            }
        }
        if self.metric == Metric::Jaccard && (a.number.is_none() || b.number.is_none()) {
            return a.set.jaccard_at_least(&b.set, threshold);
        }
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
        assert_eq!(parse_number("1,5"), None);
        assert_eq!(parse_number("about 4"), None);
        let loose = Comparator::new(Metric::Jaccard, 0.01);
        assert_eq!(loose.sim(&key("100"), &key("100.5")), 1.0);
        assert_eq!(loose.sim(&key("100"), &key("102")), 0.0);
    }

    #[test]
    fn the_final_answer_line_is_found_in_its_usual_shapes() {
        assert_eq!(
            final_answer_line("Reasoning...\nFinal answer: Paris"),
            Some("Paris")
        );
        assert_eq!(
            final_answer_line("x\n**Final Answer:** Canberra\n"),
            Some("Canberra")
        );
        assert_eq!(final_answer_line("x\nFinal answer:\n\n  42\n"), Some("42"));
        assert_eq!(
            final_answer_line("Final answer: A\nmore\nFINAL ANSWER: B"),
            Some("B")
        );
        assert_eq!(final_answer_line("no such line"), None);
    }

    #[test]
    fn modes_pick_the_compared_part() {
        let text = "Long reasoning about cities.\nFinal answer: Paris";
        assert_eq!(extract(text, &AnswerMode::Auto).as_deref(), Some("Paris"));
        assert_eq!(extract(text, &AnswerMode::Line).as_deref(), Some("Paris"));
        assert_eq!(extract(text, &AnswerMode::Full).as_deref(), Some(text));
        assert_eq!(
            extract("just Paris", &AnswerMode::Auto).as_deref(),
            Some("just Paris")
        );
        assert_eq!(extract("just Paris", &AnswerMode::Line), None);
        assert!(
            cmp(Metric::Jaccard)
                .key("...!", &AnswerMode::Full)
                .is_none()
        );
    }

    #[test]
    fn names_parse_and_print_back() {
        for m in ["jaccard", "dice", "levenshtein", "jaro-winkler", "exact"] {
            assert_eq!(m.parse::<Metric>().unwrap().to_string(), m);
        }
        for m in [
            "auto",
            "full",
            "line",
            "number",
            "choice",
            "regex:x=(\\d+)",
            "json:/a/b",
        ] {
            assert_eq!(m.parse::<AnswerMode>().unwrap().to_string(), m);
        }
        assert!("cosine".parse::<Metric>().unwrap_err().contains("jaccard"));
    }

    #[test]
    fn choice_letters_come_from_the_usual_phrasings() {
        let cases = [
            ("Reasoning.\nFinal answer: B", Some('B')),
            ("Reasoning.\n**Final Answer:** (c) Paris", Some('C')),
            ("Final answer: Option D", Some('D')),
            ("Thinking... The answer is (E).", Some('E')),
            ("so the correct answer is: F", Some('F')),
            (
                "First I thought the answer is (A), but the answer is (G).",
                Some('G'),
            ),
            ("We get $\\boxed{H}$", Some('H')),
            ("\\boxed{\\text{I}}", Some('I')),
            ("Answer: J", Some('J')),
            ("**Answer:** (a)", Some('A')),
            ("Long reasoning\n\n(B)\n", Some('B')),
            ("Long reasoning\nC.", Some('C')),
            ("A lot of text with A and B inside but no verdict", None),
            ("The answer is a good question", None),
            ("The answer is (K)", None),
        ];
        for (text, want) in cases {
            assert_eq!(choice_key(text), want, "{text:?}");
        }
    }

    #[test]
    fn numbers_come_from_the_final_line_or_the_last_number() {
        assert_eq!(number_key("3 apples and 4 pears: 7"), Some("7"));
        assert_eq!(
            number_key("7 in all\nFinal answer: 1,000 units (not 9)"),
            Some("9")
        );
        assert_eq!(
            number_key("Final answer: about 1e3\nchecked 3 times"),
            Some("1e3")
        );
        assert_eq!(
            number_key("Final answer: none\nbut 42 is close"),
            Some("42")
        );
        assert_eq!(number_key("see pages 3-4"), Some("4"));
        assert_eq!(number_key("it is -4.5"), Some("-4.5"));
        assert_eq!(number_key("no digits at all"), None);
        let c = cmp(Metric::Jaccard);
        let k = |t: &str| c.key(t, &AnswerMode::Number).unwrap();
        assert_eq!(c.sim(&k("Final answer: 1,000"), &k("It is 1000.0")), 1.0);
        assert_eq!(c.sim(&k("so 1e3"), &k("Final answer: $1,000")), 1.0);
        assert_eq!(c.sim(&k("so 999"), &k("1000")), 0.0);
        let loose = Comparator::new(Metric::Jaccard, 0.01);
        assert_eq!(loose.sim(&k("999.5"), &k("1000")), 1.0);
    }

    #[test]
    fn regex_and_json_keys_extract_the_named_part() {
        let re: AnswerMode = r"regex:result=(\w+)".parse().unwrap();
        assert_eq!(
            extract("result=old ... result=new", &re).as_deref(),
            Some("new")
        );
        assert_eq!(extract("nothing here", &re), None);
        assert!(
            "regex:no group"
                .parse::<AnswerMode>()
                .unwrap_err()
                .contains("capture group")
        );
        assert!("regex:(".parse::<AnswerMode>().is_err());
        let js: AnswerMode = "json:/answer/city".parse().unwrap();
        let fenced = "Here you go:\n```json\n{\"answer\": {\"city\": \"Paris\"}}\n```\nBye";
        assert_eq!(extract(fenced, &js).as_deref(), Some("Paris"));
        let inline = "Sure: {\"answer\": {\"city\": 42}} done";
        assert_eq!(extract(inline, &js).as_deref(), Some("42"));
        assert_eq!(extract("{\"answer\": null}", &js), None);
        assert_eq!(extract("not json", &js), None);
        assert!("json:answer".parse::<AnswerMode>().is_err());
    }

    #[test]
    fn answers_without_a_key_have_none() {
        let c = cmp(Metric::Jaccard);
        assert!(c.key("I am not sure.", &AnswerMode::Choice).is_none());
        assert!(c.key("I am not sure.", &AnswerMode::Number).is_none());
        assert!(c.key("I am not sure.", &AnswerMode::Line).is_none());
    }

    const METRICS: [Metric; 5] = [
        Metric::Jaccard,
        Metric::Dice,
        Metric::Levenshtein,
        Metric::JaroWinkler,
        Metric::Exact,
    ];

    #[test]
    fn short_tokens_have_distinct_exact_keys() {
        // A key holds the bytes and marks the length, so zero bytes and case pad nothing.
        let tokens: [&[u8]; 9] = [
            b"",
            b"a",
            b"a\0",
            b"\0a",
            b"ab",
            b"abcdefgh",
            b"abcdefghi",
            b"\0",
            b"\0\0",
        ];
        let keys: Vec<u64> = tokens.iter().map(|t| hash(t)).collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{:?} and {:?}", tokens[i], tokens[j]);
            }
        }
        assert_eq!(hash_lower_ascii(b"AbC"), hash(b"abc"));
        assert_eq!(hash_lower_ascii(b""), hash(b""));
    }

    #[test]
    fn vocabulary_ids_are_dense_and_survive_growth() {
        let mut v = Vocabulary::default();
        let ids: Vec<u32> = (0..10_000u64)
            .map(|i| v.id(hash(&i.to_le_bytes())))
            .collect();
        assert_eq!(ids, (0..10_000).collect::<Vec<u32>>());
        assert_eq!(v.id(hash(&1234u64.to_le_bytes())), 1234);
        assert_eq!(v.len(), 10_000);
        // The same through the batch path, which compares buckets with vector instructions.
        let text: String = (0..20_000).map(|i| format!("w{i} ")).collect();
        let mut v = Vocabulary::default();
        let set = v.set_of_ascii(text.as_bytes(), TokenClass::AsciiAlnum);
        assert_eq!((set.len(), v.len()), (20_000, 20_000));
        let again = v.set_of_ascii(text.as_bytes(), TokenClass::AsciiAlnum);
        assert_eq!((&again, v.len()), (&set, 20_000));
        assert_eq!(v.id(hash(b"w19999")), 19_999);
    }

    proptest! {
        #[test]
        fn early_stopping_jaccard_equals_the_full_one(
            a in proptest::collection::vec(0u32..2500, 0..400),
            b in proptest::collection::vec(0u32..2500, 0..400),
            skew in 1u32..8,
            threshold in 0.0f64..1.0,
        ) {
            // Skewed ids (most near 0), like the ids of frequent words.
            let build = |ids: &[u32], counted: bool| {
                let mut set = TokenSet::default();
                for &id in ids {
                    let id = id / skew;
                    if counted { set.insert(id) } else { set.insert_uncounted(id) }
                }
                if !counted {
                    set.recount();
                }
                set
            };
            let (sa, sb) = (build(&a, true), build(&b, false));
            prop_assert_eq!(&sa, &build(&a, false));
            for t in [threshold, 0.6, 0.0, 1.0, sa.jaccard(&sb)] {
                prop_assert_eq!(sa.jaccard_at_least(&sb, t), sa.jaccard(&sb) >= t - 1e-12);
                prop_assert_eq!(sb.jaccard_at_least(&sa, t), sb.jaccard(&sa) >= t - 1e-12);
            }
        }

        #[test]
        fn partial_words_load_like_a_zero_padded_copy(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = [0u8; 8];
            buf[..bytes.len()].copy_from_slice(&bytes);
            prop_assert_eq!(load_partial(&bytes), u64::from_le_bytes(buf));
        }

        #[test]
        fn lowercasing_eight_bytes_at_once_equals_lowercasing_each(s in "[ -~]{0,40}") {
            prop_assert_eq!(hash_lower_ascii(s.as_bytes()), hash(s.to_ascii_lowercase().as_bytes()));
        }

        #[test]
        fn ascii_and_unicode_paths_agree(words in proptest::collection::vec("[a-zA-Z0-9]{1,12}", 1..6)) {
            // The same tokens reach the same ids whether the text is ASCII or not: joined by
            // an em dash (not ASCII, not a token), the words are one key with the ASCII one.
            for m in METRICS {
                let c = cmp(m);
                let ascii = c.key_of(&words.join(" "));
                let unicode = c.key_of(&words.join(" \u{2014} "));
                prop_assert_eq!(c.sim(&ascii, &unicode), 1.0);
            }
        }

        #[test]
        fn interning_a_text_at_once_equals_interning_each_token(
            texts in proptest::collection::vec("[a-zA-Z0-9 .,'-]{0,300}", 1..12),
            class in prop_oneof![Just(TokenClass::AsciiAlnum), Just(TokenClass::PyWord)],
        ) {
            // One vocabulary across the texts, starting small, so ids grow, buckets fill
            // and overflow, the table grows, and a text never inherits the tokens of the
            // one before.
            let mut fast = Vocabulary::with_buckets(2);
            let mut slow = Vocabulary::with_buckets(2);
            for text in &texts {
                let got = fast.set_of_ascii(text.as_bytes(), class);
                let mut want = TokenSet::default();
                for token in ascii_runs(text.as_bytes(), class.table()) {
                    want.insert(slow.id(hash_lower_ascii(token)));
                }
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(fast.len(), slow.len());
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
        fn a_stated_choice_is_recovered_whatever_precedes_it(
            prose in "[a-z .,\n]{0,200}",
            letter in "[A-J]",
            shape in 0usize..6,
        ) {
            let stated = match shape {
                0 => format!("Final answer: {letter}"),
                1 => format!("The answer is ({letter})."),
                2 => format!("Answer: {letter}"),
                3 => format!("\\boxed{{{letter}}}"),
                4 => format!("\n({letter})"),
                _ => format!("**Final Answer:** {}", letter.to_lowercase()),
            };
            let text = format!("{prose}\n{stated}");
            prop_assert_eq!(choice_key(&text), letter.chars().next());
        }

        #[test]
        fn a_stated_number_is_recovered_in_any_spelling(
            prose in "[a-z .]{0,80}",
            n in 0u32..10_000_000,
            spelling in 0usize..4,
        ) {
            let written = match spelling {
                0 => n.to_string(),
                1 => format!("{n}.0"),
                2 => {
                    // Thousands separators: 1234567 -> 1,234,567.
                    let digits = n.to_string();
                    let mut out = String::new();
                    for (i, ch) in digits.chars().enumerate() {
                        if i > 0 && (digits.len() - i) % 3 == 0 {
                            out.push(',');
                        }
                        out.push(ch);
                    }
                    out
                }
                _ => format!("{:e}", f64::from(n)),
            };
            let text = format!("{prose} 12 and 7\nFinal answer: {written}");
            let key = cmp(Metric::Jaccard).key(&text, &AnswerMode::Number).unwrap();
            prop_assert_eq!(key.number(), Some(f64::from(n)));
        }

        #[test]
        fn extraction_never_panics_and_keys_are_trimmed(text in "\\PC{0,200}") {
            let modes = [
                AnswerMode::Auto,
                AnswerMode::Line,
                AnswerMode::Number,
                AnswerMode::Choice,
                AnswerMode::Json("/a".into()),
                "regex:(\\w+)".parse().unwrap(),
            ];
            for mode in &modes {
                if let Some(k) = extract(&text, mode) {
                    prop_assert!(!k.is_empty());
                    prop_assert_eq!(k.trim(), &*k);
                }
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
    }
}
