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

/// SIGTERM (how clients stop a server) ends the server at once, with exit 130, and the
/// process group of a command provider still answering goes with it.
#[cfg(target_os = "linux")]
#[test]
fn sigterm_ends_the_server_and_its_command_providers() {
    use std::io::Write;
    use std::time::Duration;

    let sandbox = Sandbox::new();
    let pidfile = sandbox.path().join("slow.pid");
    let config = format!(
        "[providers.slow]\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo $$ > {}; sleep 30; echo 'Final answer: 4'\"]\n\n\
         [[participants]]\nprovider = \"slow\"\nmodel = \"m\"\nname = \"slow\"\ncount = 2\n\n\
         [log]\nenabled = false\n",
        pidfile.display()
    );
    sandbox.write("panel.toml", &config);
    let mut child = sandbox
        .process()
        .args(["mcp", "--config", "panel.toml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "by-hand", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "consensus_ask", "arguments": {"prompt": "2+2?"}}}),
    ] {
        writeln!(stdin, "{line}").unwrap();
    }
    let end = Instant::now() + LIMIT;
    while std::fs::read_to_string(&pidfile).map_or(true, |p| p.trim().is_empty()) {
        assert!(Instant::now() < end, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let stopped = Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    // Killed, it may stay a zombie until init reaps it: that is not running.
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim().to_string())
            })
            .is_some_and(|rest| !rest.starts_with('Z'))
    };
    let end = Instant::now() + Duration::from_secs(3);
    while running() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!running(), "the command provider still runs");
    drop(stdin);
}
