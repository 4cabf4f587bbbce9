//! The MCP handler: who the server is, its two tools, and which call goes where. Each
//! request is its own task in the SDK, so a long run never holds up another call, and a
//! cancellation reaches only the run of the request it names.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::Value;

use crate::cli::McpArgs;
use crate::config::{self, Env};

use super::{ask, schema};

pub const ASK: &str = "consensus_ask";
pub const PROVIDERS: &str = "consensus_providers";

const INSTRUCTIONS: &str = "Ask a panel of language models the same question and learn whether they agree. \
consensus_ask returns the decision (status final / no_consensus / degraded / failed / interrupted, the winner's answer, \
each participant's answers); consensus_providers shows the panel and which API keys are set.";

/// The server: the flags it was started with are the defaults of every call.
#[derive(Clone)]
pub struct Server {
    flags: Arc<McpArgs>,
    /// The client set a log level above `notice` (`logging/setLevel`): a cancelled run's
    /// partial result, a notice, is not sent.
    quiet: Arc<AtomicBool>,
}

impl Server {
    pub fn new(flags: McpArgs) -> Server {
        Server {
            flags: Arc::new(flags),
            quiet: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The two tools, with their argument schemas and `consensus_ask`'s result schema.
pub fn tools() -> Vec<Tool> {
    let ask_input = object_schema(serde_json::to_value(rmcp::schemars::schema_for!(
        ask::AskParams
    )));
    let ask = Tool::new(
        ASK,
        "Ask the configured panel of language models a question; they answer, see each other's \
answers and refine, and the result says whether they agree (`status`: final when the agreement \
reached the threshold), with the winning answer (`answer`, `synthesis`) and every participant's \
answers. Long runs report progress and can be cancelled.",
        ask_input,
    )
    .with_title("Ask a panel of models")
    .with_raw_output_schema(Arc::new(schema::output_schema()))
    .with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .open_world(true)
            .idempotent(false),
    );
    let providers_input = object_schema(Ok(serde_json::json!({
        "type": "object",
        "properties": {},
        "additionalProperties": false,
    })));
    let providers = Tool::new(
        PROVIDERS,
        "The panel consensus_ask uses with no `models` argument: each seat's provider, kind, \
model, endpoint and key variable, and whether that key is set (never its value).",
        providers_input,
    )
    .with_title("Show the panel")
    .with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .open_world(false)
            .idempotent(true),
    );
    vec![ask, providers]
}

/// A schema as the tool definition holds it: a JSON object.
fn object_schema(value: serde_json::Result<Value>) -> Arc<JsonObject> {
    match value {
        Ok(Value::Object(map)) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

impl ServerHandler for Server {
    // Logging is declared because a cancelled run's partial result is a log message.
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "llm-consensus",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        use rmcp::model::LoggingLevel::{Debug, Info, Notice};
        let quiet = !matches!(request.level, Debug | Info | Notice);
        self.quiet.store(quiet, Ordering::Relaxed);
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let result = match request.name.as_ref() {
            ASK => {
                let notices = !self.quiet.load(Ordering::Relaxed);
                ask::call(&self.flags, request.arguments, context, notices).await
            }
            PROVIDERS => providers(&self.flags).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool `{other}` (the tools are {ASK} and {PROVIDERS})"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}

/// `consensus_providers`: what `providers --json` shows, for the server's panel.
async fn providers(flags: &McpArgs) -> CallToolResult {
    let env = Env::from_process();
    // Seats whose key is not set are shown (with `key_set: false`), as `providers` shows them.
    let settings = match config::resolve_lenient(&ask::defaults(flags), &env) {
        Ok(s) => s,
        Err(e) => return ask::error_result(&e.into()),
    };
    let panel = match crate::inspect::panel(&settings, &env, false).await {
        Ok(p) => p,
        Err(e) => return ask::error_result(&e),
    };
    let value = serde_json::to_value(&panel).unwrap_or_default();
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}
