//! `lily mcp serve`: the jobs and runnables `.lily/config.yaml` exposes
//! (`mcp.expose`), as MCP tools over stdio (see `lily::mcp`).

use super::{EXIT_OK, Global, root};
use clap::Subcommand;
use lily::error::{ErrorCode, LilyError};
use lily::jobs::Lily;
use std::sync::Arc;

/// 32 random bytes as hex.
fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS's randomness; without it there is no token worth having.
    if getrandom::fill(&mut b).is_err() {
        return String::new();
    }
    hex::encode(b)
}

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Serve MCP over stdin/stdout (the transport every MCP client supports),
    /// or streamable HTTP with --http: each exposed job and runnable is a
    /// tool; every call is a recorded run
    Serve {
        /// Serve streamable HTTP on this address (path /mcp) instead of
        /// stdio; loopback only unless --allow-remote; always behind a
        /// bearer token
        #[arg(long, value_name = "ADDR:PORT")]
        http: Option<std::net::SocketAddr>,
        /// Allow --http on a non-loopback address
        #[arg(long, requires = "http")]
        allow_remote: bool,
        /// The environment variable holding the bearer token (default
        /// LILY_MCP_TOKEN; unset = a random token, printed once on stderr)
        #[arg(long, value_name = "NAME", requires = "http")]
        token_env: Option<String>,
    },
}

pub async fn run(g: &Global, cmd: McpCmd) -> Result<i32, LilyError> {
    match cmd {
        McpCmd::Serve { http, allow_remote, token_env } => {
            if let Some(addr) = http
                && !addr.ip().is_loopback()
                && !allow_remote
            {
                return Err(LilyError::new(
                    ErrorCode::JobPolicyDenied,
                    format!("--http {addr} is not a loopback address; MCP over the network needs --allow-remote"),
                )
                .with_hint("bind 127.0.0.1 (or ::1), or add --allow-remote; a bearer token is required either way"));
            }
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
            match http {
                None => server.serve_stdio().await?,
                Some(addr) => {
                    let name = token_env.unwrap_or_else(|| "LILY_MCP_TOKEN".into());
                    let (token, generated) = match std::env::var(&name) {
                        Ok(t) if t.len() >= 16 => (t, false),
                        Ok(_) => {
                            return Err(LilyError::new(
                                ErrorCode::JobPolicyDenied,
                                format!("${name} holds a token shorter than 16 characters"),
                            ));
                        }
                        Err(_) => (random_token(), true),
                    };
                    if token.is_empty() {
                        return Err(LilyError::new(ErrorCode::JobExecutionFailed, "no randomness for a token; set LILY_MCP_TOKEN"));
                    }
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot listen on {addr}: {e}")))?;
                    let bound = listener
                        .local_addr()
                        .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, e.to_string()))?;
                    errln!("lily mcp: serving http://{bound}/mcp (Authorization: Bearer <token>)");
                    if generated {
                        errln!("lily mcp: token (shown once; set ${name} to choose one): {token}");
                    } else {
                        errln!("lily mcp: token from ${name}");
                    }
                    server.serve_http(listener, token).await?;
                }
            }
            Ok(EXIT_OK)
        }
    }
}
