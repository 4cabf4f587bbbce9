//! Property tests: every parser that sees a provider's bytes (framing, bodies, streams,
//! error bodies, headers, durations) takes anything without panicking. Inputs are raw
//! bytes and JSON built from the protocols' own field names and values, so that the
//! generated documents reach deep into the parsers.

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::framing::{Framing, NdjsonParser, SseParser};
use super::http::Answer;
use super::{anthropic, gemini, ollama, openai, retry};

/// Field names of every protocol, so that objects look like real replies.
const KEYS: &[&str] = &[
    "choices",
    "message",
    "content",
    "refusal",
    "finish_reason",
    "delta",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "error",
    "type",
    "code",
    "text",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "details",
    "error_code",
    "candidates",
    "parts",
    "thought",
    "finishReason",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "promptFeedback",
    "blockReason",
    "blockReasonMessage",
    "status",
    "@type",
    "retryDelay",
    "violations",
    "quotaId",
    "done",
    "done_reason",
    "prompt_eval_count",
    "eval_count",
];

/// Values with a meaning somewhere.
const WORDS: &[&str] = &[
    "stop",
    "length",
    "content_filter",
    "end_turn",
    "max_tokens",
    "refusal",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "text",
    "text_delta",
    "message_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "error",
    "overloaded_error",
    "billing_error",
    "insufficient_quota",
    "enforced_spend_limit_reached",
    "type.googleapis.com/google.rpc.RetryInfo",
    "type.googleapis.com/google.rpc.QuotaFailure",
    "1e300s",
    "-5s",
    "NaNs",
    "infs",
    "38s",
    "45.837906927s",
    "PerDay",
    "[DONE]",
    "",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(WORDS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |fields| Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                )
            ),
        ]
    })
}

/// A body: raw bytes, or JSON text.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        json().prop_map(|v| v.to_string().into_bytes()),
    ]
}

/// A stream's frames: an optional event name and data that is mostly JSON.
fn frames() -> impl Strategy<Value = Vec<(Option<String>, String)>> {
    let name = proptest::option::of(proptest::sample::select(WORDS).prop_map(str::to_string));
    let data = prop_oneof![
        json().prop_map(|v| v.to_string()),
        ".{0,40}",
        Just("[DONE]".to_string()),
    ];
    proptest::collection::vec((name, data), 0..12)
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("application/json".to_string()),
        Just("text/event-stream".to_string()),
        Just(String::new()),
        "[a-z/+-]{0,20}",
    ]
}

/// Feeds frames to an answer until one fails or ends the stream, then finishes it.
fn stream<A: Answer>(mut answer: A, frames: &[(Option<String>, String)]) {
    for (event, data) in frames {
        match answer.frame(event.as_deref(), data) {
            Ok(false) => {}
            Ok(true) | Err(_) => break,
        }
    }
    let _ = answer.usage();
    let _ = answer.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn framing_takes_any_bytes_in_any_pieces(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(0usize..600, 0..8),
        text in "(data:|event:|:|\\{|\\}|\"|\\\\|\r|\n| |x|é){0,80}",
    ) {
        for input in [bytes, text.into_bytes()] {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();
            for framing in [Framing::Sse, Framing::SseWithBareJson, Framing::Ndjson] {
                let mut decoder = super::framing::Decoder::new(framing);
                let mut at = 0;
                let mut failed = false;
                for &cut in cuts.iter().chain([input.len()].iter()) {
                    if decoder.feed(&input[at..cut]).is_err() {
                        failed = true;
                        break;
                    }
                    at = cut;
                }
                if !failed {
                    let _ = decoder.finish();
                }
            }
            let mut sse = SseParser::with_bare_json();
            let _ = sse.feed(&input);
            let _ = sse.finish();
            let mut nd = NdjsonParser::default();
            let _ = nd.feed(&input);
            let _ = nd.finish();
        }
    }

    #[test]
    fn whole_bodies_of_every_kind(body in body(), content_type in content_type()) {
        let _ = openai::parse_completion(&body, &content_type);
        let _ = anthropic::parse_message(&body, &content_type);
        let _ = gemini::State::default().body(&body, &content_type);
        let _ = ollama::State::default().body(&body, &content_type);
    }

    #[test]
    fn streams_of_every_kind(frames in frames()) {
        stream(openai::StreamState::default(), &frames);
        stream(anthropic::StreamState::default(), &frames);
        stream(gemini::State::default(), &frames);
        stream(ollama::State::default(), &frames);
    }

    #[test]
    fn error_bodies_of_every_kind(status in any::<u16>(), body in body()) {
        let _ = openai::classify(status, &body);
        let _ = anthropic::classify(status, &body);
        let _ = gemini::classify(status, &body);
        let _ = ollama::classify(status, &body, "m");
    }

    #[test]
    fn waits_a_server_asks_for(
        value in prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            ".{0,30}",
            (any::<i64>(), 0usize..12, any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>())
                .prop_map(|(d, mon, y, h, m, s)| {
                    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
                    format!("Wed, {d} {} {y} {h}:{m}:{s} GMT", months[mon])
                }),
            (1i64..=31, 0usize..12, 1970i64..=9999, 0i64..24, 0i64..60, 0i64..=60)
                .prop_map(|(d, mon, y, h, m, s)| {
                    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
                    format!("Wed, {d} {} {y} {h:02}:{m:02}:{s:02} GMT", months[mon])
                }),
        ],
    ) {
        for name in ["retry-after", "retry-after-ms"] {
            if let Ok(header) = HeaderValue::from_str(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(name, header);
                if let Some(wait) = retry::retry_after(&headers) {
                    prop_assert!(wait <= retry::MAX_SERVER_DURATION);
                }
            }
        }
        if let Some(wait) = gemini::parse_delay(&format!("{value}s")) {
            prop_assert!(wait <= retry::MAX_SERVER_DURATION);
        }
        let _ = gemini::parse_delay(&value);
    }
}
