//! The JSON schema of `consensus_ask`'s result (the `ask --json` object): committed as
//! docs/consensus_ask.schema.json and served from that file as the tool's output schema,
//! so the documented schema is the served one. [`check`] holds a result against it, and
//! also finds fields the schema does not document: the tests run it on real reports, so
//! the report and its documentation cannot drift apart.

use rmcp::model::JsonObject;
use serde_json::Value;

/// The documented schema, as committed.
pub const TEXT: &str = include_str!("../../docs/consensus_ask.schema.json");

/// The schema served as `consensus_ask`'s `outputSchema`.
pub fn output_schema() -> JsonObject {
    serde_json::from_str(TEXT).unwrap_or_default()
}

/// What in `value` breaks `schema` or is not documented in it, one line each with its
/// JSON pointer. Covers the keywords the committed schema uses: `type`, `const`, `enum`,
/// `required`, `properties`, `items` and `anyOf`. A schema's `properties` list every
/// field: one missing from them is reported (JSON Schema itself allows it, and clients
/// may rely on that; the documentation may not lag).
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(schema, value, "", &mut problems);
    problems
}

fn walk(schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(options) = schema["anyOf"].as_array() {
        let fits = options.iter().any(|option| check(option, value).is_empty());
        if !fits {
            problems.push(format!("{at}: fits none of anyOf: {value}"));
        }
        return;
    }
    if let Some(types) = types(&schema["type"])
        && !types.iter().any(|t| is(t, value))
    {
        problems.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        problems.push(format!("{at}: {value} is not {expected}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {}", schema["enum"]));
    }
    match value {
        Value::Object(fields) => {
            for name in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str()
                    && !fields.contains_key(name)
                {
                    problems.push(format!("{at}/{name}: required, missing"));
                }
            }
            if let Some(properties) = schema["properties"].as_object() {
                for (name, field) in fields {
                    match properties.get(name) {
                        Some(inner) => walk(inner, field, &format!("{at}/{name}"), problems),
                        None => problems.push(format!("{at}/{name}: not in the schema")),
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(inner) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(inner, item, &format!("{at}/{i}"), problems);
                }
            }
        }
        _ => {}
    }
}

fn types(t: &Value) -> Option<Vec<&str>> {
    match t {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(list) => Some(list.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn is(t: &str, value: &Value) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        serde_json::from_str(TEXT).expect("the committed schema is JSON")
    }

    #[test]
    fn the_served_schema_is_the_committed_file() {
        let served = Value::Object(output_schema());
        assert_eq!(served, schema());
        assert_eq!(served["type"], "object", "MCP needs an object schema");
    }

    #[test]
    fn the_checker_finds_wrong_types_missing_and_undocumented_fields() {
        let schema = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"type": "array", "items": {"enum": [1, 2]}},
                "c": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
        });
        assert!(check(&schema, &json!({"a": null, "b": [1, 2], "c": 3})).is_empty());
        let problems = check(&schema, &json!({"a": 1, "b": [3], "c": "x", "d": 0}));
        assert_eq!(
            problems,
            [
                "/a: 1 is not of type [\"string\",\"null\"]",
                "/b/0: 3 is not one of [1,2]",
                "/c: fits none of anyOf: \"x\"",
                "/d: not in the schema",
            ]
        );
        assert_eq!(check(&schema, &json!({})).len(), 2);
    }

    /// A panel that agrees, dissents, fails once and fails always: most fields appear.
    const PANEL: &str = "
[[participants]]
provider = \"mock\"
name = \"a\"
count = 2
script = [ { output = \"Final answer: Paris\\nConfidence: 90%\", input_tokens = 10, output_tokens = 3 } ]
[[participants]]
provider = \"mock\"
name = \"b\"
script = [ { output = \"Final answer: Lyon\" }, { output = \"Final answer: Paris\" } ]
[[participants]]
provider = \"mock\"
name = \"c\"
script = [ { ok = false, error = \"HTTP 503\" }, { output = \"Final answer: Paris\" } ]
[[participants]]
provider = \"mock\"
name = \"d\"
script = [ { ok = false, error = \"HTTP 500\" } ]
";

    fn report(strategy: crate::consensus::StrategyKind, extra: impl Fn(&mut AskArgs)) -> Value {
        let mut args = AskArgs::default();
        args.consensus.strategy = Some(strategy);
        args.consensus.seed = Some(7);
        args.calls.wait_all = true;
        extra(&mut args);
        let file = crate::config::parse(PANEL).expect("the panel parses");
        let env = crate::config::Env::from_pairs([]);
        let mut settings =
            crate::config::resolve_with(&args, &file, None, &env).expect("the panel resolves");
        settings.log_path = None;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let options = crate::run::RunOptions::default();
        let never = std::future::pending::<()>();
        let mut report = runtime
            .block_on(crate::run::execute(
                &settings,
                "Capital of France?",
                options,
                never,
            ))
            .expect("the run ends");
        let expectation = args.expect.expectation().unwrap();
        if let Some(expectation) = &expectation {
            report.check(expectation, &settings.params);
        }
        serde_json::from_str(&crate::report::json::render(&report)).unwrap()
    }

    use crate::cli::AskArgs;

    #[test]
    fn the_report_of_every_strategy_fits_the_documented_schema() {
        let schema = schema();
        for kind in crate::consensus::StrategyKind::ALL {
            let runs = [
                report(kind, |_| {}),
                report(kind, |a| {
                    a.expect.expect = Some("Paris".into());
                    a.consensus.synthesize = Some("mock:Final answer: Paris".into());
                }),
                report(kind, |a| {
                    a.expect.expect_number = Some("3".into());
                    a.consensus.confidence = matches!(
                        kind,
                        crate::consensus::StrategyKind::Metastable
                            | crate::consensus::StrategyKind::Vote
                    );
                }),
            ];
            for value in runs {
                let problems = check(&schema, &value);
                assert!(problems.is_empty(), "{}: {problems:#?}", kind.name());
            }
        }
    }

    #[test]
    fn a_report_with_seat_weights_fits_the_documented_schema() {
        let plain = report(crate::consensus::StrategyKind::Metastable, |_| {});
        let seats: serde_json::Map<String, Value> = plain["participants"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let w = serde_json::json!({"accuracy": 0.7, "weight": i as f64, "items": 10});
                (p["name"].as_str().unwrap().to_string(), w)
            })
            .collect();
        let file = serde_json::json!({"version": 1, "method": "test", "items": 10, "seats": seats,
            "calibration": {"beta2": 0.7, "target": 0.9, "precision": 0.9, "coverage": 0.5, "items": 10}});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.json");
        std::fs::write(&path, file.to_string()).unwrap();
        let schema = schema();
        for kind in crate::consensus::StrategyKind::ALL {
            let value = report(kind, |a| a.consensus.weights = Some(path.clone()));
            assert!(value.get("weights").is_some(), "{value}");
            let problems = check(&schema, &value);
            assert!(problems.is_empty(), "{}: {problems:#?}", kind.name());
        }
    }
}
