//! `llm-consensus mcp` with a client that is not the SDK: JSON-RPC lines written and read
//! by hand over the pipes, as any other client would.

use std::process::Stdio;
use std::time::Instant;

use serde_json::{Value, json};

use super::{AGREE, LIMIT};
use crate::common::*;

/// A client that is not the SDK: JSON-RPC lines written by hand. Every line on standard
/// output is a protocol message, also while a run warns (on stderr) and reports progress.
#[test]
fn standard_output_carries_only_protocol_messages() {
    use std::io::{BufRead, BufReader, Write};

    let sandbox = Sandbox::new();
    sandbox.write("panel.toml", &format!("{AGREE}\n[log]\nenabled = false\n"));
    let mut child = sandbox
        .process()
        .args(["mcp", "--config", "panel.toml", "--cache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "by-hand", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        // The server declares logging: clients set its level.
        json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel",
            "params": {"level": "info"}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "consensus_ask", "arguments": {"prompt": "Capital of France?"},
            "_meta": {"progressToken": "p-1"}}}),
        // No progress token: no progress notifications.
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "consensus_ask", "arguments": {"prompt": "Capital of France?"}}}),
    ];
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    // Read on a thread of its own, so that a missing answer fails the test in time.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut messages = Vec::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("{e}: no more answers after {messages:#?}"));
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a protocol message ({e}): {line:?}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        messages.push(message);
        // The calls run at once: any may end first.
        if [2, 3, 4]
            .iter()
            .all(|id| messages.iter().any(|m| m["id"] == *id))
        {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.is_empty(), "more after the answers: {rest:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(messages[0]["result"]["serverInfo"]["name"], "llm-consensus");
    assert_eq!(messages[0]["result"]["capabilities"]["logging"], json!({}));
    let set_level = messages.iter().find(|m| m["id"] == 4).unwrap();
    assert_eq!(set_level["result"], json!({}), "{set_level:#}");
    let tokens: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| &m["params"]["progressToken"])
        .collect();
    assert!(tokens.len() >= 3, "{messages:#?}");
    assert!(tokens.iter().all(|t| *t == "p-1"), "{tokens:?}");
    for id in [2, 3] {
        let response = messages.iter().find(|m| m["id"] == id).unwrap();
        let status = &response["result"]["structuredContent"]["status"];
        assert_eq!(status, "final", "{response:#}");
    }
    // The runs' warnings went to stderr, one per call.
    let warned = stderr
        .matches("warning: --cache: no run log to answer from")
        .count();
    assert_eq!(warned, 2, "{stderr}");
}
