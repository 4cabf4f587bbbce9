//! `llm-consensus mcp`: the real binary as an MCP server over its standard input and
//! output, driven by the official SDK's client (and once by raw JSON-RPC lines, as a
//! client that is not that SDK). The panels are scripted mock seats, or a loopback
//! server for the key test.

// A cancelled run's partial result arrives as a log message, which a draft of the
// protocol deprecates (the SDK marks the types so).
#![allow(deprecated)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject,
    LoggingMessageNotificationParam, ProgressNotificationParam, ServerResult,
};
use rmcp::service::{
    NotificationContext, PeerRequestOptions, RequestHandle, RoleClient, RunningService,
};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::common::*;

mod raw;

/// Three mock seats that agree at once.
const AGREE: &str = "[[participants]]\nprovider = \"mock\"\nname = \"a\"\ncount = 3\nmodel = \"Final answer: Paris\"\n";

/// One seat answers at once; two take 30 s, so round 0 stays open until cancelled.
const SLOW: &str = "[[participants]]\nprovider = \"mock\"\nname = \"fast\"\nmodel = \"Final answer: Paris\"\n\n\
[[participants]]\nprovider = \"mock\"\nname = \"slow\"\ncount = 2\nsleep = true\n\
script = [ { output = \"Final answer: Paris\", ms = 30000 } ]\n";

const LIMIT: Duration = Duration::from_secs(60);

/// What the client hears besides responses.
struct Listener {
    progress: UnboundedSender<ProgressNotificationParam>,
    logs: UnboundedSender<LoggingMessageNotificationParam>,
}

impl ClientHandler for Listener {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.logs.send(params);
    }
}

struct Session {
    client: RunningService<RoleClient, Listener>,
    progress: UnboundedReceiver<ProgressNotificationParam>,
    logs: UnboundedReceiver<LoggingMessageNotificationParam>,
    /// The server's standard error, read to its end when the session closes.
    stderr: tokio::task::JoinHandle<String>,
}

/// Starts `llm-consensus mcp ARGS` in the sandbox and initializes a session with it.
async fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Session {
    let mut cmd = sandbox.process();
    cmd.arg("mcp").args(args);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let (transport, stderr) = TokioChildProcess::builder(tokio::process::Command::from(cmd))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start llm-consensus mcp");
    let mut stderr = stderr.expect("stderr is piped");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let (progress_tx, progress) = unbounded_channel();
    let (logs_tx, logs) = unbounded_channel();
    let listener = Listener {
        progress: progress_tx,
        logs: logs_tx,
    };
    let client = tokio::time::timeout(LIMIT, listener.serve(transport))
        .await
        .expect("initialize in time")
        .expect("the server initializes");
    Session {
        client,
        progress,
        logs,
        stderr,
    }
}

impl Session {
    async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        tokio::time::timeout(LIMIT, self.client.call_tool(params))
            .await
            .expect("the call returns in time")
            .expect("the call is answered")
    }

    /// Starts a `consensus_ask` call that can be cancelled (it has a progress token).
    async fn start_ask(&self, arguments: Value) -> RequestHandle<RoleClient> {
        let params = CallToolRequestParams::new("consensus_ask").with_arguments(args(arguments));
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let options = PeerRequestOptions::no_options();
        self.client
            .send_cancellable_request(request, options)
            .await
            .unwrap()
    }

    /// Closes standard input and returns what the server wrote on standard error.
    async fn close(self) -> String {
        let _ = self.client.cancel().await;
        tokio::time::timeout(LIMIT, self.stderr)
            .await
            .expect("the server exits when its input closes")
            .unwrap_or_default()
    }
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured result a started call ends with.
async fn structured(handle: RequestHandle<RoleClient>) -> Value {
    let response = tokio::time::timeout(LIMIT, handle.await_response()).await;
    match response.expect("the call returns in time").unwrap() {
        ServerResult::CallToolResult(result) => result.structured_content.unwrap(),
        other => panic!("not a tool result: {other:?}"),
    }
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => panic!("an object"),
    }
}

fn committed_schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/consensus_ask.schema.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_client_lists_both_tools_and_a_mock_panel_answers_final_as_ask_json_would() {
    let sandbox = Sandbox::new();
    let config = sandbox.write("panel.toml", AGREE);
    let config = config.to_str().unwrap();
    let session = start(&sandbox, &["--config", config], &[]).await;

    let info = session
        .client
        .peer_info()
        .expect("the server introduced itself");
    assert_eq!(info.server_info.as_ref().unwrap().name, "llm-consensus");
    let tools = session.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["consensus_ask", "consensus_providers"]);
    let ask = &tools[0];
    assert_eq!(ask.input_schema["required"], json!(["prompt"]));
    for name in [
        "prompt", "models", "strategy", "answer", "rounds", "max_cost", "expect",
    ] {
        assert!(
            ask.input_schema["properties"].get(name).is_some(),
            "no argument {name}: {:?}",
            ask.input_schema
        );
    }
    let served = Value::Object((**ask.output_schema.as_ref().unwrap()).clone());
    assert_eq!(
        served,
        committed_schema(),
        "the served schema is the documented one"
    );
    assert_eq!(tools[1].input_schema["type"], "object");

    let result = session
        .call(
            "consensus_ask",
            json!({"prompt": "Capital of France?", "seed": 5, "expect": "paris"}),
        )
        .await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    let structured = result.structured_content.clone().unwrap();
    assert_eq!(structured["status"], "final");
    assert_eq!(structured["answer"], "Paris");
    assert_eq!(structured["expect"]["passed"], true);
    let from_text: Value = serde_json::from_str(&text(&result)).unwrap();
    assert_eq!(from_text, structured, "the text is the same JSON");
    let problems = llm_consensus::mcp::schema::check(&served, &structured);
    assert!(problems.is_empty(), "{problems:#?}");

    // The same object as `ask --json` with the same arguments (but for the wall time).
    let out = sandbox
        .cmd()
        .args(["ask", "--config", config, "--json", "--seed", "5"])
        .args(["--expect", "paris", "Capital of France?"])
        .output()
        .unwrap();
    let mut ask_json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut mcp_json = structured;
    for v in [&mut ask_json, &mut mcp_json] {
        v.as_object_mut().unwrap().remove("elapsed_ms");
    }
    assert_eq!(mcp_json, ask_json);
    session.close().await;
}

#[tokio::test]
async fn a_call_with_a_progress_token_hears_each_answer_and_each_round() {
    let sandbox = Sandbox::new();
    sandbox.write("panel.toml", SLOW.replace("30000", "50").as_str());
    let mut session = start(&sandbox, &["--config", "panel.toml"], &[]).await;
    let handle = session
        .start_ask(json!({"prompt": "Capital?", "rounds": 1}))
        .await;
    let token = handle.progress_token.clone();
    assert_eq!(structured(handle).await["status"], "final");
    let mut heard = Vec::new();
    while let Ok(p) = session.progress.try_recv() {
        assert_eq!(p.progress_token, token);
        heard.push(p);
    }
    let messages: Vec<&str> = heard.iter().filter_map(|p| p.message.as_deref()).collect();
    assert!(
        messages.contains(&"round 0: fast answered: Paris")
            && messages.contains(&"round 0: slow answered: Paris")
            && messages
                .iter()
                .any(|m| m.starts_with("round 0 decided: fast leads with Paris")),
        "{messages:#?}"
    );
    let steps: Vec<f64> = heard.iter().map(|p| p.progress).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    session.close().await;
}

#[tokio::test]
async fn a_cancelled_run_stops_at_once_with_its_partial_result_and_the_server_serves_on() {
    let sandbox = Sandbox::new();
    sandbox.write("panel.toml", SLOW);
    let mut session = start(&sandbox, &["--config", "panel.toml"], &[]).await;
    let handle = session
        .start_ask(json!({"prompt": "Capital of France?"}))
        .await;
    let token = handle.progress_token.clone();
    // Another run on the same panel, bounded by a deadline, goes on while the first is
    // cancelled: its response arrives, and nothing in it was interrupted.
    let other = session
        .start_ask(json!({"prompt": "Other question?", "deadline": 3}))
        .await;
    // Cancelled once the fast seat has answered: the slow ones are 30 s away.
    loop {
        let p = tokio::time::timeout(LIMIT, session.progress.recv())
            .await
            .expect("progress in time")
            .unwrap();
        if p.progress_token == token
            && p.message.as_deref() == Some("round 0: fast answered: Paris")
        {
            break;
        }
    }
    let cancelled = Instant::now();
    handle
        .cancel(Some("the user stopped it".into()))
        .await
        .unwrap();
    let log = tokio::time::timeout(Duration::from_secs(10), session.logs.recv())
        .await
        .expect("the partial result arrives within 10 s of the cancel")
        .unwrap();
    let waited = cancelled.elapsed();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let partial = &log.data["result"];
    assert_eq!(partial["status"], "interrupted", "{:#}", log.data);
    assert_eq!(partial["error"], "interrupted before the run finished");
    let fast = &partial["participants"][0];
    assert_eq!(fast["name"], "fast");
    assert_eq!(fast["answers"], json!(["Final answer: Paris"]));
    assert_eq!(partial["participants"][1]["answers"], json!([]));
    assert!(
        log.data["message"]
            .as_str()
            .unwrap()
            .starts_with("consensus_ask cancelled: INTERRUPTED"),
        "{:#}",
        log.data
    );

    // One cancelled request ends neither the session nor the other run.
    let after = session.call("consensus_providers", json!({})).await;
    assert_eq!(after.is_error, Some(false), "{}", text(&after));
    let other = structured(other).await;
    assert_eq!(other["prompt"], "Other question?");
    assert_eq!(other["status"], "degraded", "{other:#}");
    assert_eq!(
        other["participants"][0]["answers"],
        json!(["Final answer: Paris"])
    );
    let errors = other["participants"][1]["errors"].to_string();
    assert!(errors.contains("run deadline"), "{other:#}");
    assert!(
        !other.to_string().contains("interrupted"),
        "the other run was interrupted: {other:#}"
    );
    let stderr = session.close().await;

    // The run log has the run, interrupted, as it has an interrupted `ask`.
    let out = sandbox
        .cmd()
        .args(["logs", "list", "--json"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cancelled = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prompt"] == "Capital of France?")
        .unwrap_or_else(|| panic!("the cancelled run is not in the log: {runs:#}\n{stderr}"));
    assert_eq!(cancelled["exit_code"], 130, "{runs:#}");
    // Both runs, which opened the new log at the same time.
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs:#}\n{stderr}");
}

#[tokio::test]
async fn consensus_providers_shows_each_seat_and_whether_its_key_is_set_never_the_key() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let secret = "sk-live-9d8c7b6a5f4e3d2c1b0a";
    let sandbox = Sandbox::new();
    let config = format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n\n\
         [providers.other]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"OTHER_KEY\"\n\n\
         [[participants]]\nprovider = \"local\"\nmodel = \"m-a\"\n\n\
         [[participants]]\nprovider = \"other\"\nmodel = \"m-b\"\n",
        server.url(),
        server.url()
    );
    sandbox.write("panel.toml", &config);
    let session = start(
        &sandbox,
        &["--config", "panel.toml"],
        &[("LOCAL_KEY", secret)],
    )
    .await;
    let result = session.call("consensus_providers", json!({})).await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    let panel = result.structured_content.clone().unwrap();
    let seats = panel["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 2);
    assert_eq!(
        (
            &seats[0]["provider"],
            &seats[0]["key_env"],
            &seats[0]["key_set"]
        ),
        (&json!("local"), &json!("LOCAL_KEY"), &json!(true))
    );
    assert_eq!(
        (
            &seats[1]["provider"],
            &seats[1]["key_env"],
            &seats[1]["key_set"]
        ),
        (&json!("other"), &json!("OTHER_KEY"), &json!(false))
    );
    let whole = serde_json::to_string(&result).unwrap();
    assert!(!whole.contains(secret), "the key leaked: {whole}");
    assert!(
        !whole.contains("9d8c7b6a"),
        "part of the key leaked: {whole}"
    );
    assert_eq!(server.count(), 0, "no call is made");
    session.close().await;
}

#[tokio::test]
async fn bad_arguments_are_a_tool_error_with_asks_message_and_the_server_serves_on() {
    let sandbox = Sandbox::new();
    sandbox.write("panel.toml", AGREE);
    let session = start(&sandbox, &["--config", "panel.toml"], &[]).await;

    // The message `ask` prints for the same mistake.
    let out = sandbox
        .cmd()
        .args(["ask", "--config", "panel.toml", "--rounds", "1000", "q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let ask_says = String::from_utf8(out.stderr).unwrap();
    let result = session
        .call("consensus_ask", json!({"prompt": "q", "rounds": 1000}))
        .await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(text(&result), ask_says.trim_end());

    let cases = [
        (json!({"rounds": 1}), "missing field `prompt`"),
        (
            json!({"prompt": "q", "strategyy": "vote"}),
            "unknown field `strategyy`",
        ),
        (
            json!({"prompt": "q", "rounds": "three"}),
            "invalid type: string \"three\"",
        ),
        (
            json!({"prompt": "q", "strategy": "borda"}),
            "unknown strategy `borda`",
        ),
        (json!({"prompt": "  "}), "the question is empty"),
        (json!({"prompt": "q", "models": ["nobody:m"]}), "nobody"),
        (
            json!({"prompt": "q", "expect": "a", "expect_number": 3}),
            "at most one of expect",
        ),
        (json!({"prompt": "q", "expect_choice": "Z"}), "Z"),
    ];
    for (arguments, says) in cases {
        let result = session.call("consensus_ask", arguments.clone()).await;
        let message = text(&result);
        assert_eq!(result.is_error, Some(true), "{arguments}: {message}");
        assert!(
            message.starts_with("error: ") && message.contains(says) && !message.contains('\n'),
            "{arguments}: {message}"
        );
    }
    let unknown = tokio::time::timeout(
        LIMIT,
        session
            .client
            .call_tool(CallToolRequestParams::new("consensus_vote")),
    )
    .await
    .unwrap();
    let error = unknown.expect_err("an unknown tool is a protocol error");
    assert!(error.to_string().contains("consensus_vote"), "{error}");

    let result = session
        .call("consensus_ask", json!({"prompt": "Capital of France?"}))
        .await;
    assert_eq!(result.structured_content.unwrap()["status"], "final");
    let stderr = session.close().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn the_servers_flags_are_defaults_that_a_calls_arguments_override() {
    let sandbox = Sandbox::new();
    // No config file: the panel is the server's -m, or the call's `models`.
    let session = start(
        &sandbox,
        &[
            "-m",
            "mock:Final answer: Paris@3",
            "--strategy",
            "vote",
            "--no-log",
        ],
        &[],
    )
    .await;
    let result = session.call("consensus_ask", json!({"prompt": "q"})).await;
    let report = result.structured_content.unwrap();
    assert_eq!(report["strategy"], "vote");
    assert_eq!(report["participants"].as_array().unwrap().len(), 3);
    assert_eq!(report["answer"], "Paris");

    let result = session
        .call(
            "consensus_ask",
            json!({"prompt": "q", "strategy": "metastable", "models": ["mock:Final answer: Rome@4"]}),
        )
        .await;
    let report = result.structured_content.unwrap();
    assert_eq!(report["strategy"], "metastable");
    assert_eq!(report["participants"].as_array().unwrap().len(), 4);
    assert_eq!(report["answer"], "Rome");

    let providers = session.call("consensus_providers", json!({})).await;
    let seats = &providers.structured_content.unwrap()["seats"];
    assert_eq!(seats.as_array().unwrap().len(), 3, "{seats:#}");
    assert_eq!(seats[0]["model"], "Final answer: Paris");
    session.close().await;
    // --no-log: nothing was written.
    let out = sandbox
        .cmd()
        .args(["logs", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs, json!([]));
}
