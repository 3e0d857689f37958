//! `lily mcp serve`: the jobs and runnables `.lily/config.yaml` exposes
//! (`mcp.expose`), as MCP tools over stdio (see `lily::mcp`).

use super::{EXIT_OK, Global, root};
use clap::Subcommand;
use lily::error::{ErrorCode, LilyError};
use lily::jobs::Lily;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Serve MCP over stdin/stdout (the transport every MCP client supports):
    /// each exposed job and runnable is a tool; every call is a recorded run
    Serve,
}

pub async fn run(g: &Global, cmd: McpCmd) -> Result<i32, LilyError> {
    match cmd {
        McpCmd::Serve => {
            let root = root(g)?;
            let config = root.config.mcp.clone();
            if config.expose.jobs.is_empty() && config.expose.runnables.is_empty() {
                return Err(LilyError::new(
                    ErrorCode::JobInvalidSpec,
                    "nothing is exposed: .lily/config.yaml has no mcp.expose jobs or runnables",
                )
                .with_hint("add for example:\nmcp:\n  expose:\n    jobs: [demo]\n    runnables: [echo.v1]"));
            }
            let lily = Arc::new(Lily::open(root).map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot open the root: {e}")))?);
            let server = lily::mcp::McpServer::new(lily, config).await?;
            server.serve_stdio().await?;
            Ok(EXIT_OK)
        }
    }
}
