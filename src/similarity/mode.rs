//! The two choices a run makes about comparing answers: which part of an answer is its
//! key (`--answer`), and how two keys are scored (`--similarity`).

use std::fmt;
use std::str::FromStr;

use regex::Regex;

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

impl Pattern {
    pub fn regex(&self) -> &Regex {
        &self.0
    }
}

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

impl Metric {
    /// Whether the metric compares token sequences (and keys must keep theirs) rather
    /// than token sets.
    pub fn compares_sequences(self) -> bool {
        matches!(
            self,
            Metric::Levenshtein | Metric::JaroWinkler | Metric::Exact
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_regex_needs_a_capture_group_and_a_pointer_a_slash() {
        assert!(
            "regex:no group"
                .parse::<AnswerMode>()
                .unwrap_err()
                .contains("capture group")
        );
        assert!("regex:(".parse::<AnswerMode>().is_err());
        assert!("json:answer".parse::<AnswerMode>().is_err());
    }
}
