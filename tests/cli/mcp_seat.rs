//! `kind = "mcp"`: MCP agents as seats. A Streamable HTTP MCP server runs in the test
//! (rmcp's server on hyper, on 127.0.0.1:0); a server started as a command is the
//! `mcp_echo_server` example, a real stdio MCP server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeRequestParams,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::common::{Sandbox, TestServer, gone_soon, json as json_reply, with_header};

const QUESTION: &str = "What is 2 + 2?";

/// What the test server saw.
#[derive(Default)]
struct Seen {
    initialize: usize,
    /// Each `tools/call`: the tool and its arguments.
    calls: Vec<(String, Value)>,
    authorization: Vec<String>,
}

/// The agent behind the test server. Tools: `consult` answers `answer`, `fail` reports
/// an error, `slow` answers after 30 s, `whoami` answers with the Authorization header,
/// `report` answers with a JSON result (structured, and as text) as `consensus_ask` does.
#[derive(Clone)]
struct Agent {
    answer: String,
    seen: Arc<Mutex<Seen>>,
}

fn tool(name: &'static str) -> Tool {
    let schema = json!({"type": "object", "properties": {"question": {"type": "string"}}});
    Tool::new(
        name,
        "a test tool",
        Arc::new(schema.as_object().unwrap().clone()),
    )
}

impl ServerHandler for Agent {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.seen.lock().unwrap().initialize += 1;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            ["consult", "fail", "slow", "whoami", "report"]
                .map(tool)
                .to_vec(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        let authorization = context
            .extensions
            .get::<hyper::http::request::Parts>()
            .and_then(|parts| parts.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        {
            let mut seen = self.seen.lock().unwrap();
            seen.calls.push((request.name.to_string(), arguments));
            seen.authorization.push(authorization.clone());
        }
        let text = |t: String| Ok(CallToolResult::success(vec![ContentBlock::text(t)]).into());
        match request.name.as_ref() {
            "consult" => text(self.answer.clone()),
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "the agent lost its notes\nsecond line",
            )])
            .into()),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                text(self.answer.clone())
            }
            "whoami" => text(format!("I was sent {authorization}\nFinal answer: 4")),
            "report" => Ok(CallToolResult::structured(json!({
                "status": "final",
                "answer": "4",
                "synthesis": self.answer,
            }))
            .into()),
            other => Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
    }
}

/// A Streamable HTTP MCP server on 127.0.0.1:0, in a thread of its own.
struct McpServer {
    url: String,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl McpServer {
    fn start(answer: &str) -> McpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let agent = Agent {
            answer: answer.to_string(),
            seen: Arc::clone(&seen),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let service: StreamableHttpService<Agent, LocalSessionManager> =
                    StreamableHttpService::new(
                        move || Ok(agent.clone()),
                        Default::default(),
                        StreamableHttpServerConfig::default(),
                    );
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let service = TowerToHyperService::new(service.clone());
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        McpServer {
            url,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn initialized(&self) -> usize {
        self.seen.lock().unwrap().initialize
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().calls.clone()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `mcp_echo_server` example, which a whole `cargo test` builds.
fn echo_server() -> String {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/cli-HASH → target/<profile>/examples/
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path: PathBuf = dir
        .join("examples")
        .join(format!("mcp_echo_server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the example MCP server {} is missing: build it with `cargo build --example mcp_echo_server` (a whole `cargo test` builds it)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

struct Run {
    code: i32,
    report: Value,
    stderr: String,
}

fn ask(sb: &Sandbox, config: &str, flags: &[&str]) -> Run {
    let out = sb
        .cmd()
        .env("AGENT_TOKEN", "tok-5ecret-0123456789")
        .args(["ask", "--json", "--seed", "1", "--config", config])
        .args(flags)
        .arg(QUESTION)
        .output()
        .expect("run llm-consensus");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 101, "the binary panicked:\n{stderr}");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Run {
        code,
        report,
        stderr,
    }
}

fn participant<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["participants"]
        .as_array()
        .unwrap_or_else(|| panic!("no participants in {report}"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no participant {name} in {report}"))
}

fn errors(report: &Value, name: &str) -> String {
    participant(report, name)["errors"].to_string()
}

/// A provider table for the test server's `tool`, with `extra` lines, and `seats`
/// seats of it named agent, agent#2...
fn http_panel(sb: &Sandbox, server: &McpServer, tool: &str, extra: &str) -> String {
    let text = format!(
        "[providers.agent]\nkind = \"mcp\"\nurl = \"{}\"\ntool = \"{tool}\"\n{extra}\n",
        server.url
    );
    sb.write("panel.toml", &text).to_string_lossy().into_owned()
}

/// Two seats of one MCP server decide with their answers: the prompt is in
/// `prompt_argument`, with the configured arguments. Over several rounds, each seat keeps
/// the one session it opened, and a refinement is a further call of the same tool.
#[test]
fn mcp_seats_decide_with_their_tools_answers_one_session_per_seat() {
    let server = McpServer::start("It is four.\nFinal answer: 4");
    let sb = Sandbox::new();
    let cfg = http_panel(
        &sb,
        &server,
        "consult",
        "prompt_argument = \"question\"\narguments = { depth = 2 }\n\n[[participants]]\nprovider = \"agent\"\nname = \"agent\"\ncount = 2\n",
    );
    let run = ask(&sb, &cfg, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    assert_eq!(run.report["status"], "final");
    assert_eq!(run.report["answer"], "4");
    assert_eq!(
        participant(&run.report, "agent")["answers"][0],
        "It is four.\nFinal answer: 4"
    );
    assert_eq!(participant(&run.report, "agent#2")["kind"], "mcp");
    // MCP reports no tokens: unknown, not zero.
    assert_eq!(run.report["usage"]["input_tokens"], Value::Null);
    let calls = server.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (tool, arguments) in &calls {
        assert_eq!(tool, "consult");
        assert!(
            arguments["question"].as_str().unwrap().contains(QUESTION),
            "{arguments}"
        );
        assert_eq!(arguments["depth"], 2);
        assert!(arguments.get("prompt").is_none(), "{arguments}");
    }
    assert_eq!(server.initialized(), 2, "one session per seat");

    // A refinement round: two calls per seat, still one session each.
    let run = ask(&sb, &cfg, &["--strategy", "hanzo", "--rounds", "3"]);
    assert_ne!(run.code, 3, "{}\n{}", run.stderr, run.report);
    let calls = server.calls();
    assert_eq!(calls.len(), 2 + 4, "{calls:?}");
    let refinements = calls[2..]
        .iter()
        .filter(|(_, a)| a["question"].as_str().unwrap().contains("Peers:"))
        .count();
    assert_eq!(refinements, 2, "{calls:?}");
    assert_eq!(server.initialized(), 2 + 2, "one session per seat per run");
}

/// A tool result with `isError` fails its seat with the tool's message; the other seats
/// decide without it.
#[test]
fn a_tool_that_reports_an_error_fails_its_seat_and_the_others_decide() {
    let server = McpServer::start("Final answer: 4");
    let sb = Sandbox::new();
    let text = format!(
        "[providers.agent]\nkind = \"mcp\"\nurl = \"{url}\"\ntool = \"consult\"\n\n\
[providers.broken]\nkind = \"mcp\"\nurl = \"{url}\"\ntool = \"fail\"\n\n\
[[participants]]\nprovider = \"agent\"\nname = \"agent\"\ncount = 3\n\n\
[[participants]]\nprovider = \"broken\"\nname = \"broken\"\n",
        url = server.url
    );
    let cfg = sb.write("panel.toml", &text).to_string_lossy().into_owned();
    let run = ask(&sb, &cfg, &[]);
    assert_eq!(run.report["answer"], "4", "{}", run.report);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let broken = participant(&run.report, "broken");
    assert_eq!(broken["live"], false);
    assert_eq!(broken["answers"], json!([]));
    assert!(
        errors(&run.report, "broken")
            .contains("broken: the tool `fail` returned an error: the agent lost its notes"),
        "{}",
        errors(&run.report, "broken")
    );
}

/// A tool the server does not have is a clear error naming the tools it has; it is not
/// called, and not asked again in later rounds.
#[test]
fn a_missing_tool_is_a_clear_error_and_is_not_called() {
    let server = McpServer::start("Final answer: 4");
    let sb = Sandbox::new();
    let cfg = http_panel(
        &sb,
        &server,
        "ask_me",
        "\n[[participants]]\nprovider = \"agent\"\nname = \"agent\"\n",
    );
    let run = ask(&sb, &cfg, &["--strategy", "leader", "--rounds", "3"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.report["status"], "failed");
    let errors = errors(&run.report, "agent");
    assert!(
        errors.contains(
            "agent: the server has no tool `ask_me` (it offers consult, fail, report, slow, whoami): set tool = \\\"NAME\\\""
        ),
        "{errors}"
    );
    assert!(server.calls().is_empty());
    assert_eq!(server.initialized(), 1, "asked once, not every round");
}

/// With `result_pointer`, the answer is that field of the tool's JSON result (another
/// panel's `synthesis`, say); a result without it is a failed call saying so.
#[test]
fn result_pointer_takes_the_answer_from_a_json_result() {
    let server = McpServer::start("It is four.\nFinal answer: 4");
    let sb = Sandbox::new();
    let text = format!(
        "[providers.panel]\nkind = \"mcp\"\nurl = \"{url}\"\ntool = \"report\"\nresult_pointer = \"/synthesis\"\n\n\
[providers.odd]\nkind = \"mcp\"\nurl = \"{url}\"\ntool = \"report\"\nresult_pointer = \"/verdict/text\"\n\n\
[[participants]]\nprovider = \"panel\"\nname = \"panel\"\ncount = 2\n\n\
[[participants]]\nprovider = \"odd\"\nname = \"odd\"\n",
        url = server.url
    );
    let cfg = sb.write("panel.toml", &text).to_string_lossy().into_owned();
    let run = ask(&sb, &cfg, &[]);
    assert_eq!(run.report["answer"], "4", "{}", run.report);
    assert_eq!(
        participant(&run.report, "panel")["answers"],
        json!(["It is four.\nFinal answer: 4"])
    );
    let errors = participant(&run.report, "odd")["errors"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        errors,
        "round 0: odd: the result of `report` has nothing at /verdict/text (result_pointer = \"/verdict/text\")"
    );
}

/// A tool that does not answer within the call timeout fails its seat, saying so.
#[test]
fn a_tool_that_does_not_answer_in_time_times_out() {
    let server = McpServer::start("Final answer: 4");
    let sb = Sandbox::new();
    let cfg = http_panel(
        &sb,
        &server,
        "slow",
        "\n[[participants]]\nprovider = \"agent\"\nname = \"agent\"\n",
    );
    let t0 = Instant::now();
    let run = ask(&sb, &cfg, &["--timeout", "0.5"]);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(run.code, 3, "{}", run.stderr);
    let errors = errors(&run.report, "agent");
    assert!(
        errors.contains("agent: the tool `slow` gave no answer within 500 ms"),
        "{errors}"
    );
}

/// The token of `api_key_env` goes to the server as a bearer token, and never into the
/// answers or the report.
#[test]
fn a_url_servers_token_is_sent_and_scrubbed_from_answers() {
    let server = McpServer::start("Final answer: 4");
    let sb = Sandbox::new();
    let cfg = http_panel(
        &sb,
        &server,
        "whoami",
        "api_key_env = \"AGENT_TOKEN\"\n\n[[participants]]\nprovider = \"agent\"\nname = \"agent\"\n",
    );
    let run = ask(&sb, &cfg, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        server.seen.lock().unwrap().authorization,
        ["Bearer tok-5ecret-0123456789"]
    );
    let report = run.report.to_string();
    assert!(!report.contains("tok-5ecret"), "{report}");
    assert!(report.contains("I was sent Bearer <redacted>"), "{report}");
}

/// A server at a URL that asks for authorization (401) is a failed call that says so and
/// names what to set; the seat is not asked again.
#[test]
fn a_url_server_that_asks_for_authorization_says_what_to_set() {
    let server = TestServer::always(with_header(
        json_reply(401, &json!({"error": "unauthorized"})),
        "WWW-Authenticate",
        "Bearer realm=\"agents\"",
    ));
    let sb = Sandbox::new();
    for (extra, hint) in [
        ("", "(no token was sent: set api_key_env)"),
        (
            "api_key_env = \"AGENT_TOKEN\"\n",
            "(the token was refused) (check the key in AGENT_TOKEN)",
        ),
    ] {
        let text = format!(
            "[providers.agent]\nkind = \"mcp\"\nurl = \"{}/mcp\"\ntool = \"ask\"\n{extra}\n\
[[participants]]\nprovider = \"agent\"\nname = \"agent\"\n",
            server.url()
        );
        let cfg = sb.write("panel.toml", &text).to_string_lossy().into_owned();
        let run = ask(&sb, &cfg, &["--strategy", "leader", "--rounds", "3"]);
        assert_eq!(run.code, 3, "{}", run.stderr);
        let agent = participant(&run.report, "agent");
        let errors = agent["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "asked once: {errors:?}");
        let expected = format!(
            "round 0: agent: {}/mcp asks for authorization {hint}",
            server.url()
        );
        assert_eq!(errors[0], expected.as_str());
    }
}

/// A server that cannot be started fails its seat with a clear message, and the run
/// ends by the exit-code contract (too few answered: 3), without a crash.
#[test]
fn a_server_that_never_starts_is_a_clear_error() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        "[providers.agent]\nkind = \"mcp\"\ncommand = [\"/nonexistent/x\"]\ntool = \"ask\"\n\n\
[[participants]]\nprovider = \"agent\"\nname = \"agent\"\n\n\
[[participants]]\nprovider = \"mock\"\nname = \"mock\"\nmodel = \"Final answer: 4\"\n",
    );
    let run = ask(&sb, &cfg.to_string_lossy(), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.report["status"], "degraded");
    let errors = errors(&run.report, "agent");
    assert!(
        errors.contains("agent: cannot start the MCP server `/nonexistent/x`: No such file"),
        "{errors}"
    );
}

/// A server started as a command, with a helper process in its group: it answers, keeps
/// one session for all rounds, and its whole group is gone after the run.
#[test]
fn a_command_server_answers_and_its_process_group_is_gone_after_the_run() {
    let sb = Sandbox::new();
    let script = format!(
        "sleep 300 & echo $! > helper.txt; exec '{}' --answer 'Final answer: 4' --log calls.txt",
        echo_server()
    );
    let text = format!(
        "[providers.echo]\nkind = \"mcp\"\ncommand = [\"sh\", \"-c\", {script:?}]\ntool = \"ask\"\n\n\
[[participants]]\nprovider = \"echo\"\nname = \"echo\"\n"
    );
    let cfg = sb.write("panel.toml", &text).to_string_lossy().into_owned();
    // hanzo refines: two calls of the one seat.
    let run = ask(&sb, &cfg, &["--strategy", "hanzo", "--rounds", "3"]);
    assert_ne!(run.code, 3, "{}\n{}", run.stderr, run.report);
    assert_eq!(
        participant(&run.report, "echo")["answers"],
        json!(["Final answer: 4", "Final answer: 4"])
    );
    let log = std::fs::read_to_string(sb.path().join("calls.txt")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "initialize", "{log}");
    assert_eq!(lines.iter().filter(|l| **l == "initialize").count(), 1);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("call ask ")).count(),
        2,
        "{log}"
    );
    assert!(lines[1].contains(QUESTION), "{log}");
    let helper = std::fs::read_to_string(sb.path().join("helper.txt")).unwrap();
    assert!(
        gone_soon(&helper),
        "the server's helper {} still runs",
        helper.trim()
    );
}

/// A command server that dies between two calls is started again, once: the call is
/// made in a new session. One that dies again fails the call, quoting how it ended.
#[test]
fn a_command_server_that_dies_is_started_again_once() {
    let sb = Sandbox::new();
    let panel = |flags: &str| {
        let text = format!(
            "[providers.echo]\nkind = \"mcp\"\ncommand = [\"{}\", \"--answer\", \"Final answer: 4\", \"--log\", \"calls.txt\", {flags}]\ntool = \"ask\"\n\n\
[[participants]]\nprovider = \"echo\"\nname = \"echo\"\n",
            echo_server()
        );
        sb.write("panel.toml", &text).to_string_lossy().into_owned()
    };
    let cfg = panel("\"--exit-on-call\", \"2\"");
    let run = ask(&sb, &cfg, &["--strategy", "hanzo", "--rounds", "3"]);
    assert_ne!(run.code, 3, "{}\n{}", run.stderr, run.report);
    let echo = participant(&run.report, "echo");
    assert_eq!(
        echo["answers"],
        json!(["Final answer: 4", "Final answer: 4"])
    );
    assert_eq!(echo["errors"], json!([]), "no round lost its answer");
    assert_eq!(echo["calls"], 2);
    assert_eq!(
        echo["retries"], 1,
        "the call in the new session is a second attempt"
    );
    let log = std::fs::read_to_string(sb.path().join("calls.txt")).unwrap();
    let kinds: Vec<&str> = log.lines().map(|l| &l[..l.len().min(8)]).collect();
    assert_eq!(
        kinds,
        ["initiali", "call ask", "call ask", "initiali", "call ask"],
        "{log}"
    );

    // Dies at every session's first call: the first call fails, never started twice.
    std::fs::remove_file(sb.path().join("calls.txt")).unwrap();
    let cfg = panel("\"--exit-on-call\", \"1\"");
    let run = ask(&sb, &cfg, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let errors = errors(&run.report, "echo");
    assert!(errors.contains("exited (exit status 1)"), "{errors}");
    let log = std::fs::read_to_string(sb.path().join("calls.txt")).unwrap();
    assert_eq!(log.matches("initialize").count(), 1, "{log}");
}

/// Ctrl-C while a command server works on a call: the run stops, and the server and its
/// group go with it.
#[test]
fn ctrl_c_stops_a_command_servers_process_group() {
    let sb = Sandbox::new();
    let script = format!(
        "sleep 300 & echo $! > helper.txt; echo $$ > server.txt; exec '{}' --hang --log calls.txt",
        echo_server()
    );
    let text = format!(
        "[providers.echo]\nkind = \"mcp\"\ncommand = [\"sh\", \"-c\", {script:?}]\ntool = \"ask\"\n\n\
[[participants]]\nprovider = \"echo\"\nname = \"echo\"\n"
    );
    let cfg = sb.write("panel.toml", &text).to_string_lossy().into_owned();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("llm-consensus"));
    cmd.env_clear()
        .env("HOME", sb.path())
        .env("XDG_CONFIG_HOME", sb.config_dir())
        .env("XDG_STATE_HOME", sb.state_dir())
        .env("NO_COLOR", "1")
        .current_dir(sb.path())
        .args(["ask", "--json", "--config", &cfg, QUESTION])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().expect("start llm-consensus");
    let log = sb.path().join("calls.txt");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("call ask")) {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the server was never called");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the run did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "interrupted");
    for file in ["server.txt", "helper.txt"] {
        let pid = std::fs::read_to_string(sb.path().join(file)).unwrap();
        assert!(gone_soon(&pid), "{file}: {} still runs", pid.trim());
    }
}

/// `providers` lists an MCP seat with its kind, its tool as the model and its URL, and
/// `--dry-run` starts no server.
#[test]
fn providers_and_dry_run_show_an_mcp_seat_without_starting_it() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "panel.toml",
        "[providers.remote]\nkind = \"mcp\"\nurl = \"http://127.0.0.1:9/mcp\"\ntool = \"consult\"\n\n\
[providers.local]\nkind = \"mcp\"\ncommand = [\"sh\", \"-c\", \"touch started\"]\ntool = \"ask\"\n\n\
[[participants]]\nprovider = \"remote\"\n\n[[participants]]\nprovider = \"local\"\n",
    );
    let cfg = cfg.to_string_lossy();
    let out = sb
        .cmd()
        .args(["providers", "--json", "--config", &cfg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let panel: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seats = panel["seats"].as_array().unwrap();
    assert_eq!(seats[0]["name"], "remote:consult");
    assert_eq!(seats[0]["kind"], "mcp");
    assert_eq!(seats[0]["model"], "consult");
    assert_eq!(seats[0]["base_url"], "http://127.0.0.1:9/mcp");
    assert_eq!(seats[1]["kind"], "mcp");
    assert_eq!(seats[1]["base_url"], Value::Null);
    let out = sb
        .cmd()
        .args(["ask", "--dry-run", "--config", &cfg, QUESTION])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("local:ask"), "{stdout}");
    assert!(!sb.path().join("started").exists());
}

/// Config mistakes are one line naming the key, exit 2, before anything starts.
#[test]
fn mcp_config_mistakes_name_the_key() {
    let cases = [
        (
            "kind = \"mcp\"\ntool = \"ask\"",
            "[providers.agent] kind = \"mcp\" needs command = [\"program\", \"arg\", ...] (a server speaking MCP on standard input and output) or url = \"https://...\" (a Streamable HTTP server)",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]\nurl = \"http://127.0.0.1:9\"\ntool = \"ask\"",
            "[providers.agent] kind = \"mcp\" takes command = [...] (a server it starts) or url = \"...\" (a server it reaches), not both",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]",
            "[providers.agent] kind = \"mcp\" needs tool = \"NAME\" (the tool that answers the prompt)",
        ),
        (
            "kind = \"mcp\"\nurl = \"127.0.0.1:9\"\ntool = \"ask\"",
            "[providers.agent] url `127.0.0.1:9` must start with http:// or https://",
        ),
        (
            "kind = \"mcp\"\nbase_url = \"http://127.0.0.1:9\"\ntool = \"ask\"",
            "[providers.agent] base_url does not apply to kind = \"mcp\": a server at a URL is url = \"https://...\"",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]\ntool = \"ask\"\nprompt_argument = \"\"",
            "[providers.agent] prompt_argument is empty",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]\ntool = \"ask\"\narguments = { prompt = \"x\" }",
            "[providers.agent] arguments.prompt is where the prompt goes: remove it from arguments",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]\ntool = \"ask\"\napi_key_env = \"T\"",
            "[providers.agent] api_key_env applies to a server at a url",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]\ntool = \"ask\"\nresult_pointer = \"synthesis\"",
            "[providers.agent] result_pointer `synthesis` is not a JSON pointer: start it with /",
        ),
        (
            "kind = \"mcp\"\ncommand = [\"srv\"]\ntool = \"ask\"\nresult_pointer = \"synthesis\"",
            "[providers.agent] result_pointer `synthesis` is not a JSON pointer: start it with /",
        ),
        (
            "kind = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\ntool = \"ask\"",
            "[providers.agent] tool applies to kind = \"mcp\" only (this provider is kind = \"openai\")",
        ),
    ];
    for (table, message) in cases {
        let sb = Sandbox::new();
        let cfg = sb.write(
            "panel.toml",
            &format!(
                "[providers.agent]\n{table}\n\n[[participants]]\nprovider = \"agent\"\nmodel = \"m\"\n"
            ),
        );
        let out = sb
            .cmd()
            .args(["ask", "--config", &cfg.to_string_lossy(), QUESTION])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{table}: {stderr}");
        assert!(stderr.contains(message), "{table}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// Each item of an `eval` is a run of its own: an MCP seat opens a new session for it,
/// so that an agent's memory of one item cannot reach the next.
#[test]
fn each_eval_item_gets_a_session_of_its_own() {
    let server = McpServer::start("Final answer: 4");
    let sb = Sandbox::new();
    let cfg = http_panel(
        &sb,
        &server,
        "consult",
        "\n[[participants]]\nprovider = \"agent\"\nname = \"agent\"\n",
    );
    let items = sb.write(
        "items.jsonl",
        "{\"id\": \"a\", \"prompt\": \"2+2?\", \"expect_number\": \"4\"}\n{\"id\": \"b\", \"prompt\": \"3+1?\", \"expect_number\": \"4\"}\n",
    );
    let out = sb
        .cmd()
        .args([
            "eval",
            "--strategy",
            "vote",
            "--jobs",
            "1",
            "--config",
            &cfg,
        ])
        .arg(&items)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let prompts: Vec<String> = server
        .calls()
        .iter()
        .map(|(_, a)| a["prompt"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts[0].contains("2+2?") && prompts[1].contains("3+1?"));
    assert_eq!(server.initialized(), 2, "one session per item");
}
