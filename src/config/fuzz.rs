//! Property tests: a config file is outside data. Whatever bytes it holds, reading,
//! parsing and resolving it ends in settings within their ranges or in a
//! [`ConfigError`](crate::error::ConfigError), never in a panic.

use clap::{Args, FromArgMatches};
use proptest::prelude::*;

use super::*;

/// `ask` with these flags, as clap parses them (None when clap itself refuses them).
fn ask_args(flags: &[String]) -> Option<AskArgs> {
    let cmd = AskArgs::augment_args(clap::Command::new("ask"));
    let argv = std::iter::once("ask".to_string()).chain(flags.iter().cloned());
    let matches = cmd.try_get_matches_from(argv).ok()?;
    AskArgs::from_arg_matches(&matches).ok()
}

/// Numbers at the edges of what TOML and the flags can carry.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "0.5",
    "2",
    "100",
    "1e308",
    "-1e308",
    "1e-320",
    "inf",
    "-inf",
    "nan",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
];

/// Values of the keys that take text.
const TEXTS: &[&str] = &[
    "\"\"",
    "\"x\"",
    "\"metastable\"",
    "\"bft\"",
    "\"vote\"",
    "\"majority\"",
    "\"0\"",
    "\"nan\"",
    "\"regex:(\"",
    "\"regex:(\\\\d+)\"",
    "\"json:/a\"",
    "\"mock:x\"",
    "\"chb\"",
    "\"exact\"",
];

const NUMBER_KEYS: &[&str] = &[
    "rounds",
    "k",
    "alpha",
    "beta_1",
    "beta_2",
    "seed",
    "quorum",
    "tolerance",
    "faults",
    "timeout",
    "retries",
    "deadline",
    "round_timeout",
    "max_cost",
];

const TEXT_KEYS: &[&str] = &[
    "strategy",
    "answer",
    "similarity",
    "quorum_share",
    "rule",
    "synthesize",
    "system",
];

const PARTICIPANT_KEYS: &[&str] = &["count", "weight", "temperature", "max_tokens"];

const FLAGS: &[&str] = &[
    "--rounds",
    "-k",
    "--alpha",
    "--beta1",
    "--beta2",
    "--quorum",
    "--tolerance",
    "--timeout",
    "--retries",
    "--deadline",
    "--round-timeout",
    "--max-cost",
    "--temperature",
    "--max-tokens",
    "--faults",
];

/// Mostly ordinary numbers, so that a case gets past its first key; an edge one often.
fn number() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        2 => prop::sample::select(&["1", "0.5", "3"][..]),
        1 => prop::sample::select(NUMBERS),
    ]
}

/// `key = value` lines, each key once, values of the key's type.
fn lines(
    numbers: &'static [&'static str],
    texts: &'static [&'static str],
) -> impl Strategy<Value = String> {
    let number_lines = prop::collection::btree_map(prop::sample::select(numbers), number(), 0..4);
    let text_lines = prop::collection::btree_map(
        prop::sample::select(texts),
        prop::sample::select(TEXTS),
        0..2,
    );
    (number_lines, text_lines, any::<Option<bool>>()).prop_map(|(numbers, texts, switch)| {
        let mut out = String::new();
        for (key, value) in numbers.into_iter().chain(texts) {
            out.push_str(&format!("{key} = {value}\n"));
        }
        if let Some(on) = switch {
            out.push_str(&format!("confidence = {on}\n"));
        }
        out
    })
}

/// A config assembled from real keys with edge values: most of it parses, so the
/// resolver, not only the TOML parser, sees the numbers.
fn config_text() -> impl Strategy<Value = String> {
    let participant = (
        prop::sample::select(&["mock", "mock", "local", "openai", "nosuch"][..]),
        prop::collection::btree_map(prop::sample::select(PARTICIPANT_KEYS), number(), 0..3),
        prop::option::weighted(0.3, number()),
    );
    let provider = (
        prop::option::weighted(0.3, number()),
        prop::option::weighted(0.3, number()),
        prop::sample::select(&["openai", "openai", "mock", "command", "x"][..]),
    );
    (
        lines(NUMBER_KEYS, TEXT_KEYS),
        prop::collection::vec(participant, 0..4),
        provider,
    )
        .prop_map(|(consensus, participants, (concurrency, price, kind))| {
            let mut text = format!("[consensus]\n{consensus}");
            text.push_str(&format!(
                "[providers.local]\nkind = \"{kind}\"\nbase_url = \"http://u:p@127.0.0.1:9/v1\"\n\
                 command = [\"true\"]\n"
            ));
            if let Some(n) = concurrency {
                text.push_str(&format!("max_concurrency = {n}\n"));
            }
            if let Some(price) = price {
                text.push_str(&format!("price = {{ input = {price}, output = 1 }}\n"));
            }
            for (provider, keys, ms) in participants {
                text.push_str(&format!(
                    "[[participants]]\nprovider = \"{provider}\"\nmodel = \"Final answer: 1\"\n"
                ));
                for (key, value) in keys {
                    text.push_str(&format!("{key} = {value}\n"));
                }
                if let Some(ms) = ms {
                    text.push_str(&format!("script = [ {{ output = \"a\", ms = {ms} }} ]\n"));
                }
            }
            text
        })
}

fn flags() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((prop::sample::select(FLAGS), number()), 0..3).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(flag, value)| format!("{flag}={value}"))
            .collect()
    })
}

/// Resolves and, when that succeeds, checks that every number is within its range.
fn resolve_and_check(text: &str, flags: &[String]) {
    let Ok(file) = parse(text) else { return };
    let Some(args) = ask_args(flags) else { return };
    let env = Env::from_pairs([("OPENAI_API_KEY", "sk-x"), ("LOCAL_KEY", "k")]);
    let Ok(settings) = resolve_with(&args, &file, None, &env) else {
        return;
    };
    let p = &settings.params;
    for share in [p.alpha, p.beta_2, p.tolerance] {
        assert!((0.0..=1.0).contains(&share), "{share} from\n{text}");
    }
    assert!((0.0..=2.0).contains(&p.beta_1), "{} from\n{text}", p.beta_1);
    assert!((1..=100).contains(&p.k) && p.rounds <= 100);
    assert!(p.quorum >= 1 && p.quorum <= settings.seats.len());
    let deadline = settings.policy.run_deadline.expect("a deadline by default");
    assert!(deadline.as_secs_f64() <= 86_400.0);
    assert!(settings.policy.call_timeout.as_secs_f64() <= 3600.0);
    for seat in &settings.seats {
        assert!(
            seat.weight > 0.0 && seat.weight <= 1000.0,
            "{}",
            seat.weight
        );
        assert!(seat.max_concurrency.is_none_or(|n| (1..=1024).contains(&n)));
        assert!(seat.temperature.is_none_or(|t| (0.0..=2.0).contains(&t)));
    }
}

proptest! {
    #[test]
    fn any_text_is_parsed_or_refused_without_a_panic(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn any_bytes_in_a_config_file_are_read_or_refused_without_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.toml");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(file) = load(&path) {
            let args = ask_args(&[]).unwrap();
            let _ = resolve_with(&args, &file, Some(path), &Env::default());
        }
    }

    #[test]
    fn configs_at_the_edges_resolve_within_range_or_are_refused(
        text in config_text(),
        flags in flags(),
    ) {
        resolve_and_check(&text, &flags);
    }
}
