//! A small MCP server on standard input and output, to try a `kind = "mcp"` seat and to
//! test one started as a command:
//!
//! ```toml
//! [providers.echo]
//! kind = "mcp"
//! command = ["target/debug/examples/mcp_echo_server", "--answer", "Final answer: 4"]
//! tool = "ask"
//! ```
//!
//! Tools: `ask` answers its `prompt` argument with the `--answer` text (by default, the
//! prompt's last line); `fail` always reports an error. Flags: `--answer TEXT`, `--log FILE`
//! (one line per handshake and per call, with the arguments), `--hang` (`ask` never answers),
//! `--exit-on-call N` (the process exits, unanswering, at its Nth call: a server that dies).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeRequestParams,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;

#[derive(Clone, Default)]
struct Echo {
    answer: Option<String>,
    log: Option<String>,
    hang: bool,
    exit_on_call: Option<usize>,
    calls: Arc<AtomicUsize>,
}

impl Echo {
    fn log(&self, line: &str) {
        if let Some(path) = &self.log
            && let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

fn tool(name: &'static str, description: &'static str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {"prompt": {"type": "string"}},
        "required": ["prompt"],
    });
    let schema = schema.as_object().cloned().unwrap_or_default();
    Tool::new(name, description, Arc::new(schema))
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.log("initialize");
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("ask", "Answers the prompt"),
            tool("fail", "Always fails"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = serde_json::Value::Object(request.arguments.clone().unwrap_or_default());
        self.log(&format!("call {} {arguments}", request.name));
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.exit_on_call == Some(n) {
            std::process::exit(1);
        }
        match request.name.as_ref() {
            "ask" => {
                if self.hang {
                    std::future::pending::<()>().await;
                }
                let prompt = arguments["prompt"].as_str().unwrap_or_default();
                let answer = self
                    .answer
                    .clone()
                    .unwrap_or_else(|| prompt.lines().last().unwrap_or_default().to_string());
                Ok(CallToolResult::success(vec![ContentBlock::text(answer)]).into())
            }
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "the echo agent is out of ideas",
            )])
            .into()),
            other => Err(ErrorData::invalid_params(
                format!("no tool named {other}"),
                None,
            )),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut echo = Echo::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--answer" => echo.answer = args.next(),
            "--log" => echo.log = args.next(),
            "--hang" => echo.hang = true,
            "--exit-on-call" => echo.exit_on_call = args.next().and_then(|n| n.parse().ok()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    echo.serve(rmcp::transport::stdio())
        .await?
        .waiting()
        .await?;
    Ok(())
}
