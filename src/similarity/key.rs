//! A key, normalized once for comparing: its distinct tokens (`Paris.` equals `paris`),
//! their sequence when the metric compares sequences, and its value when the key is a
//! number (`4` equals `4.0`, `1,000` equals `1000`).

use crate::text::Text;

use super::extract::parse_number;
use super::tokens::{TokenSet, Vocabulary, push_lower, tokens};

/// A normalized key.
#[derive(Clone, Debug)]
pub struct Key {
    /// The extracted text, trimmed, as shown to people.
    text: Text,
    /// Normalized tokens in order, joined by single spaces; built only for the metrics
    /// that compare sequences (levenshtein, jaro-winkler, exact).
    pub(super) seq: String,
    /// The distinct tokens: the set the set metrics compare.
    pub(super) set: TokenSet,
    /// The value, when the whole key is a number.
    pub(super) number: Option<f64>,
}

impl Key {
    /// Normalizes a key's text, interning its tokens in `vocabulary` (keys are only
    /// comparable with keys of the same vocabulary), and keeping the token sequence when
    /// `sequence`. When the trimmed text is all of `whole`, the key shares that text
    /// instead of copying it.
    pub(super) fn new(
        text: &str,
        whole: Option<&Text>,
        vocabulary: &mut Vocabulary,
        sequence: bool,
    ) -> Key {
        let text = text.trim();
        let mut set = TokenSet::with_room(vocabulary.len());
        let mut seq = String::new();
        if text.is_ascii() && !sequence {
            // The common case, split and lowercased byte by byte.
            vocabulary.ascii_ids(text.as_bytes(), |id| set.insert(id));
        } else {
            let mut lowered = String::new();
            for token in tokens(text) {
                lowered.clear();
                push_lower(&mut lowered, token);
                set.insert(vocabulary.id(lowered.as_bytes()));
                if sequence {
                    if !seq.is_empty() {
                        seq.push(' ');
                    }
                    seq.push_str(&lowered);
                }
            }
        }
        let shared = whole.filter(|w| w.as_str() == text);
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

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
