//! Answer keys and how alike two of them are: pure functions, no I/O.
//!
//! A *key* is the part of an answer that is compared (docs/protocol.md §1). Each file below
//! has one job:
//! - `mode`: which part of an answer is compared (`--answer`) and how (`--similarity`);
//! - `extract`: finding that part in an answer: the `Final answer:` line, the last
//!   number, a choice letter, a regex group, a JSON value. Start here when a key was not
//!   found;
//! - `tokens`: splitting text into lowercased tokens, and sets of them;
//! - `key`: a key normalized once into tokens and, when it is a number, that number;
//! - `compare`: the comparator that makes keys and scores pairs of them.

mod compare;
mod extract;
mod key;
mod mode;
mod tokens;

pub use compare::{Comparator, jaro_winkler, levenshtein};
pub use extract::{choice_key, extract, final_answer_line, json_key, number_key, parse_number};
pub use key::Key;
pub use mode::{AnswerMode, Metric, Pattern};
pub use tokens::{TokenSet, Vocabulary, tokens};
