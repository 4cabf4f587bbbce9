//! One line of an eval file: an item, checked before it runs; and the stable shard of
//! an id.

use serde_json::{Map, Value};

use crate::expect::{Expectation, Require};

/// The fields an item may set; any other is kept and written back as `fields`.
const KNOWN: [&str; 8] = [
    "id",
    "prompt",
    "expect",
    "expect_number",
    "expect_choice",
    "expect_regex",
    "system",
    "category",
];

#[derive(Debug)]
pub struct Item {
    pub id: String,
    pub prompt: String,
    pub system: Option<String>,
    pub category: Option<String>,
    pub expectation: Option<Expectation>,
    /// The line's other fields, passed through to its result.
    pub fields: Map<String, Value>,
}

/// Parses one line; the error says what is wrong with it, in one line.
pub fn parse(line: &str, require: Require) -> Result<Item, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".to_string());
    };
    let id = match object.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("no \"id\" (a non-empty string or a number)".to_string()),
    };
    let prompt = match object.get("prompt") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(format!("item {id}: no \"prompt\" (a non-empty string)")),
    };
    let text = |name: &str| -> Result<Option<String>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // A number is the natural way to write an expected number.
            Some(Value::Number(n)) if name == "expect_number" => Ok(Some(n.to_string())),
            Some(_) => Err(format!("item {id}: \"{name}\" is not a string")),
        }
    };
    let expects = [
        text("expect")?,
        text("expect_number")?,
        text("expect_choice")?,
        text("expect_regex")?,
    ];
    if expects.iter().flatten().count() > 1 {
        return Err(format!(
            "item {id}: more than one of expect, expect_number, expect_choice, expect_regex"
        ));
    }
    let [expect, number, choice, regex] = expects;
    let expectation = Expectation::from_flags(
        expect.as_deref(),
        number.as_deref(),
        choice.as_deref(),
        regex.as_deref(),
        require,
    )
    // The messages name the flags; here they are the fields of the same names.
    .map_err(|e| format!("item {id}: {}", field_names(&e.to_string())))?;
    let system = text("system")?;
    let category = text("category")?;
    object.retain(|k, _| !KNOWN.contains(&k.as_str()));
    Ok(Item {
        id,
        prompt,
        system,
        category,
        expectation,
        fields: object,
    })
}

/// An expectation error names the flag; an item's names the field.
fn field_names(message: &str) -> String {
    ["number", "choice", "regex"]
        .iter()
        .fold(message.to_string(), |m, kind| {
            m.replace(&format!("--expect-{kind}"), &format!("expect_{kind}"))
        })
        .replace("--expect", "expect")
}

/// `--shard K/N`: K from 1 to N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text}: expected K/N with 1 <= K <= N (e.g. 2/4)");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (u64, u64) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }

    /// Whether the item `id` is in this slice: FNV-1a (64 bits) of the id's bytes, so
    /// that every machine, build and run puts an id in the same slice.
    pub fn holds(self, id: &str) -> bool {
        fnv1a(id.as_bytes()) % self.n == self.k - 1
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_split_ids_exactly() {
        let n = 5;
        for i in 0..1000 {
            let id = format!("item-{i}");
            let holders = (1..=n).filter(|&k| Shard { k, n }.holds(&id)).count();
            assert_eq!(holders, 1, "{id}");
        }
    }

    #[test]
    fn shard_flags_are_checked() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn items_keep_their_other_fields_and_reject_what_is_wrong() {
        let item = parse(
            r#"{"id":"q1","prompt":"2+2?","expect_number":4,"category":"math","source":"x"}"#,
            Require::Final,
        )
        .unwrap();
        assert_eq!(item.id, "q1");
        assert_eq!(item.category.as_deref(), Some("math"));
        assert!(item.expectation.is_some());
        assert_eq!(item.fields.get("source"), Some(&Value::from("x")));
        assert_eq!(item.fields.len(), 1);
        for (line, error) in [
            ("{", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"prompt":"p"}"#, "no \"id\""),
            (r#"{"id":"a"}"#, "no \"prompt\""),
            (
                r#"{"id":"a","prompt":"p","expect":"x","expect_regex":"y"}"#,
                "more than one",
            ),
            (
                r#"{"id":"a","prompt":"p","expect_choice":"Z"}"#,
                "expect_choice",
            ),
            (
                r#"{"id":"a","prompt":"p","system":3}"#,
                "\"system\" is not a string",
            ),
        ] {
            let e = parse(line, Require::Final).unwrap_err();
            assert!(e.contains(error), "{line}: {e}");
        }
    }
}
