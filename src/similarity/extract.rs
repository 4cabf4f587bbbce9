//! Finding an answer's key: the part of the answer that `--answer` says is compared.
//!
//! "Why was my answer's key not found?" is answered here. In short: `auto` takes the last
//! `Final answer:` line (else the whole text), `line` requires that line, `number` takes
//! the last number of that line (else of the whole text), `choice` the letter of the
//! usual phrasings, `regex:` the first group of the last match, and `json:` the value at
//! a pointer of the answer's JSON. An answer where the part is missing or blank has no
//! key.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

use super::mode::AnswerMode;

/// The part of `answer` that `mode` compares, trimmed; None when there is nothing to
/// compare.
pub fn extract<'a>(answer: &'a str, mode: &AnswerMode) -> Option<Cow<'a, str>> {
    let key: Cow<'a, str> = match mode {
        AnswerMode::Full => Cow::Borrowed(answer),
        AnswerMode::Line => Cow::Borrowed(final_answer_line(answer)?),
        AnswerMode::Auto => Cow::Borrowed(final_answer_line(answer).unwrap_or(answer)),
        AnswerMode::Number => Cow::Borrowed(number_key(answer)?),
        AnswerMode::Choice => Cow::Owned(choice_key(answer)?.to_string()),
        AnswerMode::Regex(p) => Cow::Borrowed(regex_key(answer, p.regex())?),
        AnswerMode::Json(pointer) => Cow::Owned(json_key(answer, pointer)?),
    };
    let key = match key {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    };
    (!key.is_empty()).then_some(key)
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
    let re = final_line_regex();
    // Walking up from the end: the nearest non-empty line below the current one.
    let mut below = None;
    for line in text.lines().rev() {
        if let Some(c) = re.captures(line) {
            let value = c.get(1).map_or("", |m| m.as_str()).trim();
            return if value.is_empty() { below } else { Some(value) };
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            below = Some(trimmed);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::{Comparator, Metric};
    use proptest::prelude::*;

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
    fn an_empty_final_answer_line_takes_the_next_non_empty_one() {
        assert_eq!(
            final_answer_line("Final answer:\r\n\r\n  Rome \r\nend"),
            Some("Rome")
        );
        assert_eq!(final_answer_line("Final answer：\n\t\nOslo"), Some("Oslo"));
        assert_eq!(final_answer_line("x\nFinal answer:\n \n"), None);
        // The last such line counts, even when an earlier one has a value.
        assert_eq!(final_answer_line("Final answer: A\nFinal answer:"), None);
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
            Comparator::new(Metric::Jaccard, 0.0)
                .key("...!", &AnswerMode::Full)
                .is_none()
        );
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
        assert_eq!(parse_number("1,5"), None);
        assert_eq!(parse_number("about 4"), None);
        let c = Comparator::new(Metric::Jaccard, 0.0);
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
        let js: AnswerMode = "json:/answer/city".parse().unwrap();
        let fenced = "Here you go:\n```json\n{\"answer\": {\"city\": \"Paris\"}}\n```\nBye";
        assert_eq!(extract(fenced, &js).as_deref(), Some("Paris"));
        let inline = "Sure: {\"answer\": {\"city\": 42}} done";
        assert_eq!(extract(inline, &js).as_deref(), Some("42"));
        assert_eq!(extract("{\"answer\": null}", &js), None);
        assert_eq!(extract("not json", &js), None);
    }

    proptest! {
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
            let key = Comparator::new(Metric::Jaccard, 0.0).key(&text, &AnswerMode::Number).unwrap();
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
    }
}
