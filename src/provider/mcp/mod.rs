//! An MCP server's tool as a provider (`kind = "mcp"`): an agent takes a seat. The server
//! is a local program speaking MCP on its standard input and output, or a Streamable HTTP
//! endpoint; the prompt goes in one argument of the tool, and the tool's text is the answer.
//!
//! Each seat keeps one session for the whole run, opened at its first call: refinement
//! rounds are further calls of the same tool in the same session. Calls are not retried
//! (an agent does its own retrying), except that a session that broke between two calls
//! is opened again once. A server that is a program runs in its own process group, which
//! is killed when the session ends: at the end of the run (a first Ctrl-C ends it), or at
//! once at a second Ctrl-C.
//!
//! MCP reports no tokens: the usage of an answer is unknown, not zero.

mod process;
mod reply;

use std::fmt;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ServiceError, ServiceExt};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::http::human_duration;
use super::{ChatRequest, Completion, Outcome, Secret, Transport, Usage};
use crate::error::{ErrorKind, ProviderError};
use process::Process;
use reply::{causes, handshake_error};

/// Where the server is.
#[derive(Clone, Debug, PartialEq)]
pub enum Server {
    /// A program and its arguments, started for the session.
    Command(Vec<String>),
    /// A Streamable HTTP endpoint.
    Url(String),
}

/// One seat's tool: the server, the tool and how the prompt is passed, and the seat's
/// session. Clones share the session (a run clones the provider for every call); a new
/// seat gets its own with [`Tool::for_seat`].
#[derive(Clone, Debug)]
pub struct Tool {
    /// The provider's name, which starts every error.
    pub name: String,
    pub server: Server,
    pub tool: String,
    /// The argument that receives the prompt.
    pub prompt_argument: String,
    /// The argument that receives the system prompt; without it, the system prompt goes
    /// before the prompt, as it does on a command's standard input.
    pub system_argument: Option<String>,
    /// Arguments sent with every call, as configured.
    pub arguments: Map<String, Value>,
    /// Headers sent to a server at a URL.
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer` to a server at a URL.
    pub key: Option<Secret>,
    /// Where the answer is in a JSON result (a JSON pointer), when it is not the text.
    pub result_pointer: Option<String>,
    session: Arc<Slot>,
}

/// The session of one seat, once opened.
#[derive(Default)]
struct Slot(Mutex<Option<Session>>);

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Slot")
    }
}

struct Session {
    client: RunningService<RoleClient, ClientConfig>,
    /// The server's process, when it is a program.
    process: Option<Process>,
}

/// How a call failed: the session broke (it may be opened again), or the call did.
enum Failure {
    Broken(String),
    Call(ProviderError),
}

impl Tool {
    pub fn new(name: String, server: Server, tool: String) -> Tool {
        Tool {
            name,
            server,
            tool,
            prompt_argument: "prompt".to_string(),
            system_argument: None,
            arguments: Map::new(),
            headers: Vec::new(),
            key: None,
            result_pointer: None,
            session: Arc::default(),
        }
    }

    /// The same tool with a session of its own, for another seat.
    pub fn for_seat(&self) -> Tool {
        Tool {
            session: Arc::default(),
            ..self.clone()
        }
    }

    /// The URL called, for a server at a URL.
    pub fn url(&self) -> Option<&str> {
        match &self.server {
            Server::Url(url) => Some(url),
            Server::Command(_) => None,
        }
    }

    /// The tool's arguments for one call: the configured ones, the prompt, and the system
    /// prompt (in its own argument, or before the prompt).
    pub fn arguments(&self, request: &ChatRequest) -> Map<String, Value> {
        let mut arguments = self.arguments.clone();
        let prompt = match (&request.system, &self.system_argument) {
            (Some(system), Some(argument)) => {
                arguments.insert(argument.clone(), Value::String(system.to_string()));
                request.user.to_string()
            }
            (Some(system), None) => format!("{system}\n\n{}", request.user),
            (None, _) => request.user.to_string(),
        };
        arguments.insert(self.prompt_argument.clone(), Value::String(prompt));
        arguments
    }

    /// One call, bounded by the call timeout and the run deadline (opening the session
    /// included).
    pub async fn complete(&self, transport: &Transport, request: &ChatRequest) -> Outcome {
        let budget = transport.clock.attempt_budget();
        let mut attempts = 1;
        let result = if budget.is_zero() {
            Err(ProviderError::new(
                ErrorKind::Timeout,
                "the run deadline passed before the tool was called",
            ))
        } else {
            let call = self.call(transport, request, &mut attempts);
            match tokio::time::timeout(budget, call).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "the tool `{}` gave no answer within {}",
                        self.tool,
                        human_duration(budget)
                    ),
                )),
            }
        };
        Outcome {
            result: result.map_err(|mut e| {
                e.message = format!("{}: {}", self.name, e.message);
                e
            }),
            attempts,
            reported_ms: None,
            failed_usage: Usage::default(),
        }
    }

    async fn call(
        &self,
        transport: &Transport,
        request: &ChatRequest,
        attempts: &mut u32,
    ) -> Result<Completion, ProviderError> {
        let arguments = self.arguments(request);
        // Held for the call: a seat makes one call at a time, and a session is opened once.
        let mut slot = self.session.0.lock().await;
        loop {
            let fresh = slot.is_none();
            let session = match &mut *slot {
                Some(session) => session,
                None => slot.insert(self.open(transport).await?),
            };
            let params =
                CallToolRequestParams::new(self.tool.clone()).with_arguments(arguments.clone());
            let failure = match session.client.call_tool(params).await {
                Ok(result) => {
                    return reply::answer(&self.tool, self.result_pointer.as_deref(), result);
                }
                Err(e) => self.failure(e),
            };
            match failure {
                Failure::Call(e) => return Err(e),
                Failure::Broken(why) => {
                    let why = match slot.take() {
                        Some(session) => session.broken(&why).await,
                        None => why,
                    };
                    // A session that broke at its first call would break again.
                    if fresh || *attempts > 1 {
                        return Err(ProviderError::new(ErrorKind::Network, why));
                    }
                    *attempts += 1;
                }
            }
        }
    }

    /// Starts or reaches the server, completes the handshake, and checks that the tool
    /// is there.
    async fn open(&self, transport: &Transport) -> Result<Session, ProviderError> {
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("llm-consensus", env!("CARGO_PKG_VERSION")),
        );
        let session = match &self.server {
            Server::Command(argv) => {
                let mut process = Process::start(argv)?;
                let (Some(stdout), Some(stdin)) =
                    (process.child.stdout.take(), process.child.stdin.take())
                else {
                    return Err(ProviderError::new(
                        ErrorKind::Program,
                        format!("`{}` started without its pipes", process.program),
                    ));
                };
                match info.serve((stdout, stdin)).await {
                    Ok(client) => Session {
                        client,
                        process: Some(process),
                    },
                    Err(e) => {
                        let why = format!("no MCP handshake ({})", handshake_error(&e));
                        let why = process.ended(&why).await;
                        return Err(ProviderError::new(ErrorKind::Program, why));
                    }
                }
            }
            Server::Url(url) => {
                let client = info
                    .serve(self.http_transport(url, transport)?)
                    .await
                    .map_err(|e| {
                        if e.is_authorization_required() || e.auth_challenge().is_some() {
                            let hint = match &self.key {
                                Some(_) => "the token was refused",
                                None => "no token was sent: set api_key_env",
                            };
                            return ProviderError::new(
                                ErrorKind::Auth,
                                format!("{url} asks for authorization ({hint})"),
                            );
                        }
                        ProviderError::new(
                            ErrorKind::Network,
                            format!("no MCP session with {url}: {}", handshake_error(&e)),
                        )
                    })?;
                Session {
                    client,
                    process: None,
                }
            }
        };
        let tools = match session.client.peer().list_all_tools().await {
            Ok(tools) => tools,
            Err(e) => {
                // A server that died is like one that failed the handshake; one that
                // cannot list tools cannot be asked either.
                return Err(match self.failure(e) {
                    Failure::Broken(why) => {
                        ProviderError::new(ErrorKind::Program, session.broken(&why).await)
                    }
                    Failure::Call(e) => ProviderError::new(
                        ErrorKind::Rejected,
                        format!("cannot list the server's tools: {}", e.message),
                    ),
                });
            }
        };
        if !tools.iter().any(|t| t.name == self.tool) {
            let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
            names.sort_unstable();
            let offered = if names.is_empty() {
                "it offers none".to_string()
            } else {
                format!("it offers {}", names.join(", "))
            };
            return Err(ProviderError::new(
                ErrorKind::Rejected,
                format!(
                    "the server has no tool `{}` ({offered}): set tool = \"NAME\"",
                    self.tool
                ),
            ));
        }
        Ok(session)
    }

    fn http_transport(
        &self,
        url: &str,
        transport: &Transport,
    ) -> Result<StreamableHttpClientTransport<reqwest::Client>, ProviderError> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url);
        config.auth_header = self.key.as_ref().map(|k| k.expose().to_string());
        for (name, value) in &self.headers {
            let bad = |what: &str| {
                ProviderError::new(ErrorKind::Rejected, format!("header `{name}`: {what}"))
            };
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| bad("not a valid header value"))?;
            config.custom_headers.insert(name, value);
        }
        // The run's client: its connect and idle timeouts, no redirects, our TLS.
        Ok(StreamableHttpClientTransport::with_client(
            transport.client.clone(),
            config,
        ))
    }

    fn failure(&self, error: ServiceError) -> Failure {
        let call = |kind, message: String| Failure::Call(ProviderError::new(kind, message));
        match error {
            ServiceError::TransportClosed => Failure::Broken("the session closed".to_string()),
            ServiceError::TransportSend(e) => {
                Failure::Broken(format!("the session broke: {}", causes(&*e.error)))
            }
            ServiceError::McpError(e) => call(
                ErrorKind::Rejected,
                format!(
                    "the server refused the call of `{}`: {} (error {})",
                    self.tool, e.message, e.code.0
                ),
            ),
            ServiceError::Timeout { timeout } => call(
                ErrorKind::Timeout,
                format!("no answer within {}", human_duration(timeout)),
            ),
            ServiceError::Cancelled { reason } => call(
                ErrorKind::Cancelled,
                format!(
                    "the call was cancelled{}",
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            ),
            other => call(
                ErrorKind::Malformed,
                format!("unexpected reply to the call of `{}`: {other}", self.tool),
            ),
        }
    }
}

impl Session {
    /// Why the session broke, with how the server's program ended when it did.
    async fn broken(self, why: &str) -> String {
        let Session { client, process } = self;
        drop(client);
        match process {
            Some(process) => process.ended(why).await,
            None => why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(system: Option<&str>) -> ChatRequest {
        ChatRequest {
            model: "agent".into(),
            system: system.map(Into::into),
            user: "2+2?".into(),
            temperature: None,
            max_tokens: None,
            seed: None,
        }
    }

    #[test]
    fn the_prompt_goes_in_its_argument_after_the_system_prompt_unless_that_has_one() {
        let mut tool = Tool::new("agent".into(), Server::Url("http://x".into()), "ask".into());
        tool.prompt_argument = "question".into();
        tool.arguments.insert("depth".into(), Value::from(2));
        let args = tool.arguments(&request(Some("Be terse.")));
        assert_eq!(args["question"], "Be terse.\n\n2+2?");
        assert_eq!(args["depth"], 2);
        tool.system_argument = Some("instructions".into());
        let args = tool.arguments(&request(Some("Be terse.")));
        assert_eq!(args["question"], "2+2?");
        assert_eq!(args["instructions"], "Be terse.");
        assert_eq!(tool.arguments(&request(None))["question"], "2+2?");
    }

    #[test]
    fn clones_share_a_session_and_each_seat_has_its_own() {
        let tool = Tool::new("agent".into(), Server::Url("http://x".into()), "ask".into());
        assert!(Arc::ptr_eq(&tool.session, &tool.clone().session));
        assert!(!Arc::ptr_eq(&tool.session, &tool.for_seat().session));
    }
}
