//! `llm-consensus mcp`: the panel as a Model Context Protocol server on standard input and
//! output (docs/mcp.md), built on the official SDK. Standard output carries the protocol
//! and nothing else: runs show no progress lines and print no report, and diagnostics go
//! to standard error.
//!
//! - [`server`]: the handler: the server's identity, the tool list, dispatch;
//! - [`ask`]: `consensus_ask`, one run as `ask --json` makes it, with progress
//!   notifications and cancellation;
//! - [`schema`]: the result's JSON schema (docs/consensus_ask.schema.json), served as the
//!   tool's output schema.

pub mod ask;
pub mod schema;
pub mod server;

use anyhow::Context;
use rmcp::ServiceExt;

use crate::cli::McpArgs;
use crate::config::{self, Env};
use crate::stderr_line;

/// Serves until the client closes standard input; exit 0 then.
pub fn main(args: McpArgs) -> anyhow::Result<u8> {
    // A panel that does not resolve now may be fixed before the first call (the file is
    // read at every call), or calls may name their models: a warning, not a refusal.
    match config::resolve_lenient(&ask::defaults(&args), &Env::from_process()) {
        Err(e) => stderr_line!(
            "warning: {}",
            crate::report::text::visible(&format!("{e:#}"))
        ),
        // The run log is created now: runs that start together would otherwise race to
        // create it, and the loser would run unlogged. A log that cannot be opened is
        // each run's warning.
        Ok(settings) => {
            if let Some(path) = &settings.log_path {
                let _ = crate::log::open(path);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let served = runtime.block_on(async {
        let service = server::Server::new(args)
            .serve(rmcp::transport::stdio())
            .await
            .context("the MCP session did not start")?;
        tokio::select! {
            ended = service.waiting() => {
                ended.context("the MCP session ended with an error")?;
                anyhow::Ok(0)
            }
            () = stopped() => Ok(130),
        }
    });
    // Runs still going when the client left (the SDK waits a few seconds for their
    // answers) are abandoned: their command providers' process groups go with them, and a
    // read of stdin still pending cannot be awaited.
    crate::provider::command::stop_all();
    runtime.shutdown_background();
    served
}

/// Resolves at Ctrl-C or SIGTERM (how clients stop a server that does not leave when its
/// input closes): the server then ends as if the client had left.
async fn stopped() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if r.is_err() {
                std::future::pending::<()>().await;
            }
        }
        () = terminate => {}
    }
}
