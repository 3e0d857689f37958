//! `lily mcp serve`: the jobs and runnables an operator exposes in
//! `.lily/config.yaml` (`mcp.expose`) as MCP tools, over stdio, through the
//! official Rust SDK (`rmcp`).
//!
//! Every tool call is an ordinary Lily run — run directory, receipt with
//! trigger `mcp` (client, session, tool), events, replayable — under the
//! job's own policy, bindings and caps: the agent chooses only the input.
//! There is no tool that changes policy, installs runnables or approves
//! effects; effects proposed during a call stay pending for an operator and
//! the result names them. A session has a budget (calls, wall time, model
//! tokens; `mcp:` in the config); exhaustion is a tool error with the
//! reason. Progress notifications follow the steps; a client's cancellation
//! cancels the run (`cancelled`), as Ctrl-C does.
//!
//! What goes back to the agent is data: the summary text has control and
//! bidi characters removed, artifacts are returned as text only when they
//! are UTF-8 and within [`MAX_ARTIFACT_BYTES`].

use crate::config::McpConfig;
use crate::error::{ErrorCode, LilyError};
use crate::jobs::{Cancel, Lily, RunOptions, RunResult, TriggerInfo};
use crate::spec::SpecFile;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, InitializeResult, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest tool arguments (as JSON) a call may pass: a spec is at most
/// 1 MiB, and nothing larger is parsed, validated or written.
pub const MAX_ARGUMENT_BYTES: usize = 512 << 10;
/// HTTP connections served at once (`--http`).
pub const MAX_HTTP_CONNECTIONS: usize = 256;
/// Time a connection has to send each request head (`--http`).
const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest artifact `get_artifact` returns.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 20;
/// The read-only helper tools (no job or runnable may take these names).
pub const HELPERS: [&str; 3] = ["list_runs", "get_run", "get_artifact"];

/// One exposed tool.
#[derive(Debug, Clone)]
enum Target {
    Job {
        id: String,
        input_schema: Value,
    },
    Runnable {
        id: String,
        loaded: Arc<crate::sandbox::Loaded>,
    },
    /// `list_runs`, `get_run`, `get_artifact` (read-only, exposed jobs only).
    Helper,
}

/// A message to a call's progress sender.
enum Progress {
    Step(u64, String),
    /// Answered once every earlier notification went out.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// What a session used, and what its running calls hold.
#[derive(Debug, Default)]
struct Used {
    calls: u32,
    seconds: f64,
    seconds_held: f64,
    llm_tokens: u64,
    tokens_held: u64,
}

/// One call's share of the session budget.
#[derive(Debug, Clone, Copy)]
struct Allotment {
    /// Wall time the call may take.
    seconds: f64,
    /// Input and output model tokens of its run, if capped.
    tokens: Option<(u64, u64)>,
    /// Whether `tokens` is held against the session's cap.
    holds_tokens: bool,
}

/// The server of one stdio session.
pub struct McpServer {
    lily: Arc<Lily>,
    config: McpConfig,
    tools: Vec<(Tool, Target)>,
    session: String,
    used: Mutex<Used>,
}

fn schema_object(v: &Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("object") => Arc::new(m.clone()),
        // MCP arguments are always an object: a runnable that declares
        // anything else gets a plain object schema (its own schema still
        // applies when it runs).
        _ => Arc::new(json!({"type": "object"}).as_object().cloned().unwrap_or_default()),
    }
}

/// The structured result of every job and runnable tool.
pub fn output_schema() -> Value {
    json!({
        "type": "object",
        "required": ["job_id", "run_id", "status", "summary", "receipt_sha256", "approvals_pending"],
        "properties": {
            "job_id": {"type": "string"},
            "run_id": {"type": "string"},
            "status": {"type": "string", "description": "succeeded, partial, failed, denied, cancelled, …"},
            "summary": {"type": "string", "description": "the run's summary.md as plain text"},
            "receipt_sha256": {"type": "string"},
            "ranked_findings": {"type": "array", "items": {"type": "object"}},
            "payload": {"description": "the blueprint's output (council: the ranked findings and reports; step: the runnable's result)"},
            "approvals_pending": {"type": "array", "items": {"type": "string"}, "description": "approval ids waiting for an operator (lily approvals …)"},
            "error": {"type": ["object", "null"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        },
    })
}

/// Text for the agent: control characters (but newline and tab) and the
/// invisible format characters — bidi controls, zero-width and joiners,
/// soft hyphen, the Unicode tag block (invisible text a model still reads),
/// line/paragraph separators — removed.
pub fn plain_text(s: &str) -> String {
    s.chars().filter(|c| *c == '\n' || *c == '\t' || !(c.is_control() || invisible(*c))).collect()
}

/// The Unicode format (Cf) and separator characters that render as nothing.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x115F..=0x1160
        | 0x17B4..=0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164
        | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(plain_text(&message.into()))])
}

impl McpServer {
    /// The tools of `config`, resolved now: an exposed job that does not
    /// exist, a runnable that does not load, or a name taken twice is an
    /// error before the server answers anything.
    pub async fn new(lily: Arc<Lily>, config: McpConfig) -> Result<McpServer, LilyError> {
        lily.policy()?.check_mcp(&config)?;
        let mut tools = Vec::new();
        let out = schema_object(&output_schema());
        for id in &config.expose.jobs {
            if HELPERS.contains(&id.as_str()) {
                return Err(LilyError::new(
                    ErrorCode::JobInvalidSpec,
                    format!("mcp.expose.jobs: {id:?} is the name of a built-in tool"),
                ));
            }
            let f = lily.load_spec(id).map_err(|e| e.with_hint("mcp.expose.jobs lists a job that does not load"))?;
            let spec = f.spec.clone()?;
            let bp = lily.blueprints.resolve(&spec.target.id, spec.target.version.as_deref())?;
            let input_schema = bp.meta.input_schema.clone();
            let mut t = Tool::new(
                id.clone(),
                format!(
                    "Run the Lily job {id:?} ({}: {}) with this input; returns its run and results",
                    bp.meta.id,
                    plain_text(&spec.title)
                ),
                schema_object(&input_schema),
            );
            t.output_schema = Some(out.clone());
            tools.push((t, Target::Job { id: id.clone(), input_schema }));
        }
        for id in &config.expose.runnables {
            if HELPERS.contains(&id.as_str()) {
                return Err(LilyError::new(
                    ErrorCode::JobInvalidSpec,
                    format!("mcp.expose.runnables: {id:?} is the name of a built-in tool"),
                ));
            }
            let loaded = lily
                .runnables
                .load(&lily.sandbox, id)
                .await
                .map_err(|e| LilyError::new(ErrorCode::BlueprintContractInvalid, format!("mcp.expose.runnables: {id}: {}", e.message)))?
                .ok_or_else(|| {
                    LilyError::new(
                        ErrorCode::JobTargetUnresolved,
                        format!("mcp.expose.runnables: no runnable {id:?} (built-in or installed)"),
                    )
                })?;
            let mut t = Tool::new(
                id.clone(),
                format!("Run the Lily runnable {id} in its sandbox: {}", plain_text(&loaded.descriptor.summary)),
                schema_object(&loaded.descriptor.input_schema),
            );
            t.output_schema = Some(out.clone());
            tools.push((t, Target::Runnable { id: id.clone(), loaded }));
        }
        let helper = |name: &str, desc: &str, schema: Value| Tool::new(name.to_string(), desc.to_string(), schema_object(&schema));
        let helpers = [
            helper(
                "list_runs",
                "List recent Lily runs of a job (newest first)",
                json!({"type": "object", "required": ["job"], "properties": {"job": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}}),
            ),
            helper(
                "get_run",
                "A Lily run's receipt and summary",
                json!({"type": "object", "required": ["run_id"], "properties": {"run_id": {"type": "string"}}}),
            ),
            helper(
                "get_artifact",
                "One artifact of a Lily run, as text (UTF-8, at most 1 MiB)",
                json!({"type": "object", "required": ["run_id", "name"], "properties": {"run_id": {"type": "string"}, "name": {"type": "string"}}}),
            ),
        ];
        tools.extend(helpers.into_iter().map(|h| (h, Target::Helper)));
        Ok(McpServer {
            lily,
            config,
            tools,
            session: new_session_id(),
            used: Mutex::default(),
        })
    }

    /// The same tools and configuration for a new session (its own id and
    /// budget).
    fn fresh(&self) -> McpServer {
        McpServer {
            lily: self.lily.clone(),
            config: self.config.clone(),
            tools: self.tools.clone(),
            session: new_session_id(),
            used: Mutex::default(),
        }
    }

    /// Serve the streamable-HTTP transport on `listener` (path `/mcp`):
    /// every request must carry `Authorization: Bearer <token>` (else 401,
    /// before MCP sees it); each MCP session gets its own budget. Runs until
    /// the listener fails.
    pub async fn serve_http(self, listener: tokio::net::TcpListener, token: String) -> Result<(), LilyError> {
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
        let addr = listener
            .local_addr()
            .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, e.to_string()))?;
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        hosts.push(addr.ip().to_string());
        let template = Arc::new(self);
        let service = StreamableHttpService::new(
            move || Ok(template.fresh()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
        );
        let expected = Arc::new(format!("Bearer {token}"));
        // Connections at once: beyond it a new one is closed at once (an
        // unauthenticated flood cannot exhaust the process's descriptors).
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of descriptors or a transient error: wait and go on —
                // an accept error never ends the server.
                Err(e) => {
                    tracing::warn!(error = %e, "accept on {addr}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let (service, expected) = (service.clone(), expected.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let handler = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (service, expected) = (service.clone(), expected.clone());
                    async move {
                        let authorized = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .is_some_and(|v| constant_time_eq(v.as_bytes(), expected.as_bytes()));
                        let response = if !authorized {
                            refused(http::StatusCode::UNAUTHORIZED, "a bearer token is required (Authorization: Bearer <token>)")
                        } else if req.uri().path() != "/mcp" {
                            refused(http::StatusCode::NOT_FOUND, "the MCP endpoint is /mcp")
                        } else {
                            service.handle(req).await
                        };
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                // A client that does not send its request head in time is
                // dropped (idle and slow connections hold no slot for long).
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HTTP_HEADER_TIMEOUT)
                    .serve_connection(io, handler)
                    .await;
            });
        }
    }

    /// Serve one session on stdin/stdout until the client goes away.
    pub async fn serve_stdio(self) -> Result<(), LilyError> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("MCP session did not start: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("MCP session ended with an error: {e}")))?;
        Ok(())
    }

    fn job_ids(&self) -> Vec<String> {
        self.config
            .expose
            .jobs
            .iter()
            .cloned()
            .chain(self.config.expose.runnables.iter().map(|r| runnable_job_id(r)))
            .collect()
    }

    /// Reserve one call of the session's budget, or say why not. The call
    /// holds its share of the session's time and tokens while it runs, so
    /// concurrent calls cannot together spend more than the session has.
    fn reserve(&self) -> Result<Allotment, String> {
        let mut u = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let c = &self.config;
        if u.calls >= c.max_calls_per_session {
            return Err(format!(
                "session budget exhausted: {} tool calls (mcp.max_calls_per_session)",
                c.max_calls_per_session
            ));
        }
        let seconds_left = c.max_seconds_per_session as f64 - u.seconds - u.seconds_held;
        if seconds_left < 1.0 {
            return Err(format!(
                "session budget exhausted: {} s of tool calls (mcp.max_seconds_per_session)",
                c.max_seconds_per_session
            ));
        }
        let seconds = seconds_left.min(c.max_seconds_per_call as f64);
        // Tokens: what is left of the session's (less what running calls
        // hold), split between input and output; each at most the per-call cap.
        let session = match c.max_llm_tokens_per_session {
            Some(max) => {
                let left = max.saturating_sub(u.llm_tokens + u.tokens_held);
                if left < 2 {
                    return Err(format!("session budget exhausted: {max} model tokens (mcp.max_llm_tokens_per_session)"));
                }
                Some((left / 2, left - left / 2))
            }
            None => None,
        };
        let per_call = c.max_llm_tokens_per_call.map(|t| (t, t));
        let tokens = match (session, per_call) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.min(b.1))),
            (a, b) => a.or(b),
        };
        u.calls += 1;
        u.seconds_held += seconds;
        if session.is_some() {
            u.tokens_held += tokens.map(|(i, o)| i + o).unwrap_or(0);
        }
        Ok(Allotment {
            seconds,
            tokens,
            holds_tokens: session.is_some(),
        })
    }

    /// Give back what a call held and count what it used.
    fn settle(&self, a: &Allotment, took: Duration, r: Option<&RunResult>) {
        let mut u = self.used.lock().unwrap_or_else(|e| e.into_inner());
        u.seconds_held = (u.seconds_held - a.seconds).max(0.0);
        u.seconds += took.as_secs_f64();
        if a.holds_tokens {
            u.tokens_held = u.tokens_held.saturating_sub(a.tokens.map(|(i, o)| i + o).unwrap_or(0));
        }
        if let Some(l) = r.and_then(|r| r.receipt.llm.as_ref()) {
            u.llm_tokens += l.input_tokens + l.output_tokens;
        }
    }

    async fn run_tool(&self, target: &Target, args: Value, client: String, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let size = serde_json::to_vec(&args).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_ARGUMENT_BYTES {
            return tool_error(format!("the arguments are {size} bytes; at most {MAX_ARGUMENT_BYTES}"));
        }
        // The input is checked before any budget is taken or file read.
        let checked = match target {
            Target::Job { id, input_schema } => {
                let errors = crate::blueprints::schema_errors(input_schema, &args);
                (errors.is_empty())
                    .then_some(())
                    .ok_or_else(|| format!("the arguments do not match {id}'s input schema: {}", errors.join("; ")))
            }
            Target::Runnable { id, loaded } => loaded.check_input(&args, Duration::from_secs(1)).map_err(|why| format!("{id}: {why}")),
            Target::Helper => Err("not a runnable tool".into()),
        };
        if let Err(why) = checked {
            return tool_error(why);
        }
        let allot = match self.reserve() {
            Ok(a) => a,
            Err(why) => return tool_error(why),
        };
        let (tool, spec_file) = match target {
            Target::Runnable { id, .. } => (id.clone(), runnable_job(&self.lily, id, &args, allot.seconds.ceil() as u64, allot.tokens)),
            _ => {
                let id = spec_job_id(target);
                let f = job_with_input(&self.lily, &id, &args, allot.tokens);
                (id, f)
            }
        };
        let spec_file = match spec_file {
            Ok(f) => f,
            Err(e) => {
                self.settle(&allot, Duration::ZERO, None);
                return tool_error(format!("{}: {}", e.code, e.message));
            }
        };
        let started = Instant::now();
        let cancel = Cancel::new();
        // Progress: one notification per finished step, when the client
        // asked for it (a progress token in the request's `_meta`), all sent
        // before the result (the run's end flushes them).
        let progress = ctx.meta.get_progress_token().map(|token| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
            let peer = ctx.peer.clone();
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    match msg {
                        Progress::Step(done, message) => {
                            let mut p = ProgressNotificationParam::new(token.clone(), done as f64);
                            p.message = Some(message);
                            let _ = peer.notify_progress(p).await;
                        }
                        Progress::Flush(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            });
            tx
        });
        let flush = progress.clone();
        let observer: Option<Box<dyn Fn(&str, &Value) + Send + Sync>> = progress.map(|tx| {
            let done = std::sync::atomic::AtomicU64::new(0);
            Box::new(move |kind: &str, v: &Value| {
                if kind == "step_finished" {
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let what = format!("{} {}", v["node"].as_str().unwrap_or("step"), v["outcome"].as_str().unwrap_or(""));
                    let _ = tx.send(Progress::Step(n, plain_text(&what)));
                }
            }) as Box<dyn Fn(&str, &Value) + Send + Sync>
        });
        let opts = RunOptions {
            trigger: TriggerInfo::Mcp {
                client,
                session: self.session.clone(),
                tool: tool.clone(),
            },
            wait: true,
            cancel: cancel.clone(),
            observer,
            spec_override: Some(spec_file),
            ..RunOptions::default()
        };
        let job_id = spec_job_id(target);
        let run = self.lily.run_job(&job_id, opts);
        let limit = Duration::from_secs_f64(allot.seconds);
        let ct = ctx.ct.clone();
        let watcher = async {
            tokio::select! {
                _ = ct.cancelled() => "the client cancelled the call",
                _ = tokio::time::sleep(limit) => "the call reached its time (mcp.max_seconds_per_call, or what was left of mcp.max_seconds_per_session)",
            }
        };
        tokio::pin!(run);
        let mut why_cancelled = None;
        let result = tokio::select! {
            r = &mut run => r,
            why = watcher => {
                why_cancelled = Some(why);
                cancel.cancel();
                run.await
            }
        };
        if let Some(tx) = flush {
            let (ack, done) = tokio::sync::oneshot::channel();
            if tx.send(Progress::Flush(ack)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
            }
        }
        self.settle(&allot, started.elapsed(), result.as_ref().ok());
        match result {
            Ok(r) => {
                let mut out = tool_result(&r);
                if let Some(why) = why_cancelled {
                    out.content.push(ContentBlock::text(format!("cancelled: {why}")));
                }
                out
            }
            Err(e) => tool_error(format!("{}: {}", e.code, e.message)),
        }
    }

    fn helper(&self, name: &str, args: &Value) -> CallToolResult {
        let runs = self.lily.root.runs_dir();
        let allowed = self.job_ids();
        let run_dir = |run_id: &str| -> Result<std::path::PathBuf, CallToolResult> {
            let no_run = || tool_error(format!("no run {:?}", plain_text(&crate::text::truncate_chars(run_id, 80))));
            // A run id is `<UTC time>-<hex>`: digits, letters, '.', '-'.
            let shaped = run_id.len() <= 64
                && run_id.starts_with(|c: char| c.is_ascii_digit())
                && run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !shaped {
                return Err(no_run());
            }
            let dir = crate::runs::find_run(&runs, run_id).ok_or_else(no_run)?;
            let job = dir
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !allowed.contains(&job) {
                return Err(tool_error(format!("run {run_id:?} is not of a job this server exposes")));
            }
            // The job and run directories themselves, never a link to elsewhere.
            let real = |p: &std::path::Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir());
            if !real(&dir) || !real(&runs.join(&job)) {
                return Err(no_run());
            }
            Ok(dir)
        };
        match name {
            "list_runs" => {
                let job = args["job"].as_str().unwrap_or("");
                if !allowed.iter().any(|j| j == job) {
                    return tool_error(format!("{job:?} is not a job this server exposes"));
                }
                let limit = args["limit"].as_u64().unwrap_or(20).clamp(1, 200) as usize;
                let list: Vec<Value> = crate::runs::list_runs(&runs, job, limit, None)
                    .iter()
                    .map(|s| json!({"run_id": s.run_id, "status": s.status, "started_at": s.started_at, "ended_at": s.ended_at, "trigger": s.trigger}))
                    .collect();
                let mut r = CallToolResult::success(vec![ContentBlock::text(format!("{} run(s) of {job}", list.len()))]);
                r.structured_content = Some(json!({"runs": list}));
                r
            }
            "get_run" => {
                let dir = match run_dir(args["run_id"].as_str().unwrap_or("")) {
                    Ok(d) => d,
                    Err(e) => return e,
                };
                let receipt = crate::runs::read_receipt(&dir)
                    .and_then(|r| serde_json::to_value(r).ok())
                    .unwrap_or(Value::Null);
                let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
                let mut r = CallToolResult::success(vec![ContentBlock::text(plain_text(&summary))]);
                r.structured_content = Some(json!({"receipt": receipt}));
                r
            }
            "get_artifact" => {
                let dir = match run_dir(args["run_id"].as_str().unwrap_or("")) {
                    Ok(d) => d,
                    Err(e) => return e,
                };
                let name = args["name"].as_str().unwrap_or("");
                if !crate::sandbox::valid_artifact_name(name) {
                    return tool_error(format!("{name:?} is not an artifact name"));
                }
                // A regular file of the run directory (never a link), within the cap.
                let path = dir.join(name);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_file() && m.len() <= MAX_ARTIFACT_BYTES => match std::fs::read(&path).map(String::from_utf8) {
                        Ok(Ok(text)) => CallToolResult::success(vec![ContentBlock::text(plain_text(&text))]),
                        Ok(Err(_)) => tool_error(format!("{name} is not UTF-8 text")),
                        Err(e) => tool_error(format!("{name}: {e}")),
                    },
                    Ok(m) if m.file_type().is_file() => tool_error(format!("{name} is over {MAX_ARTIFACT_BYTES} bytes")),
                    _ => tool_error(format!("run has no artifact {name:?}")),
                }
            }
            other => tool_error(format!("no tool {other:?}")),
        }
    }
}

fn new_session_id() -> String {
    format!("mcp-{}", crate::runs::new_run_id().rsplit('-').next().unwrap_or("0"))
}

/// Compare without an early exit (a token check must not leak its prefix
/// through timing).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type HttpResponse = http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>>;

fn refused(status: http::StatusCode, why: &str) -> HttpResponse {
    use http_body_util::BodyExt;
    let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(why.to_string())).boxed());
    *r.status_mut() = status;
    if status == http::StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    r
}

/// The job id an exposed runnable's runs are kept under.
fn runnable_job_id(runnable: &str) -> String {
    format!("mcp.{runnable}")
}

fn spec_job_id(t: &Target) -> String {
    match t {
        Target::Job { id, .. } => id.clone(),
        Target::Runnable { id, .. } => runnable_job_id(id),
        Target::Helper => String::new(),
    }
}

/// The job's spec with `target.input` replaced by the agent's arguments
/// (everything else as the operator wrote it), model tokens capped at
/// `llm_cap`.
fn job_with_input(lily: &Lily, id: &str, args: &Value, llm_cap: Option<(u64, u64)>) -> Result<SpecFile, LilyError> {
    let f = lily.load_spec(id)?;
    let raw = f.raw.clone().unwrap_or_default();
    let mut doc: Value = serde_norway::from_str(&raw).map_err(|e| LilyError::new(ErrorCode::JobInvalidSpec, e.to_string()))?;
    doc["target"]["input"] = args.clone();
    spec_file(lily, f.path.clone(), doc, llm_cap)
}

/// A `step.v1` job running `runnable` on the agent's arguments.
fn runnable_job(lily: &Lily, runnable: &str, args: &Value, timeout: u64, llm_cap: Option<(u64, u64)>) -> Result<SpecFile, LilyError> {
    let id = runnable_job_id(runnable);
    let doc = json!({
        "id": id,
        "title": format!("MCP tool {runnable}"),
        "target": {"kind": "blueprint", "id": "step.v1", "input": args},
        "bindings": {"runnable": runnable},
        "trigger": {"type": "manual"},
        "runtime": {"timeout_seconds": timeout},
        "output": {},
    });
    spec_file(lily, lily.root.lily_dir().join("mcp").join(format!("{id}.job.yaml")), doc, llm_cap)
}

/// The spec document as the run's spec: with `llm_cap` (input, output),
/// `runtime.llm` lowers every model grant of the job's steps to at most
/// that many input and output tokens (never above any grant, so it only
/// lowers; an operator's lower `runtime.llm` stays).
fn spec_file(lily: &Lily, path: std::path::PathBuf, mut doc: Value, llm_cap: Option<(u64, u64)>) -> Result<SpecFile, LilyError> {
    let invalid = |e: String| LilyError::new(ErrorCode::JobInvalidSpec, e);
    if let Some((cap_in, cap_out)) = llm_cap {
        let text = serde_norway::to_string(&doc).map_err(|e| invalid(e.to_string()))?;
        let spec = crate::spec::parse(&path, &text)?;
        let graph = lily
            .blueprints
            .resolve(&spec.target.id, spec.target.version.as_deref())?
            .compile(&spec.bindings)?;
        let policy = lily.policy()?;
        let grants: Vec<_> = graph.nodes.iter().filter_map(|n| policy.llm_for(&n.runnable)).collect();
        if !grants.is_empty() {
            let low = spec.runtime.llm.unwrap_or_default();
            let fit = |asked: Option<u64>, cap: u64, granted: fn(&crate::sandbox::LlmBudget) -> u64| {
                grants.iter().map(|g| granted(&g.budget)).chain(asked).chain([cap]).min().unwrap_or(cap).max(1)
            };
            doc["runtime"]["llm"] = json!({
                "max_input_tokens": fit(low.max_input_tokens, cap_in, |b| b.max_input_tokens),
                "max_output_tokens": fit(low.max_output_tokens, cap_out, |b| b.max_output_tokens),
            });
            if let Some(c) = low.max_calls {
                doc["runtime"]["llm"]["max_calls"] = json!(c);
            }
        }
    }
    let text = serde_norway::to_string(&doc).map_err(|e| invalid(e.to_string()))?;
    Ok(SpecFile {
        sha256: Some(crate::util::sha256(text.as_bytes())),
        spec: crate::spec::parse(&path, &text),
        raw: Some(text),
        path,
    })
}

/// What a run becomes for the agent.
fn tool_result(r: &RunResult) -> CallToolResult {
    let receipt_sha = std::fs::read(r.run_dir.join("run_receipt.json"))
        .map(|b| crate::util::sha256(&b))
        .unwrap_or_default();
    let rc = &r.receipt;
    let pending: Vec<String> = rc
        .approvals_requested
        .iter()
        .filter(|a| a.state == crate::policy::approvals::State::Pending)
        .map(|a| a.id.clone())
        .collect();
    let summary = plain_text(&r.summary);
    let structured = json!({
        "job_id": rc.job_id,
        "run_id": rc.run_id,
        "status": rc.status,
        "summary": summary,
        "receipt_sha256": receipt_sha,
        "ranked_findings": rc.payload.get("ranked_findings").cloned().unwrap_or(json!([])),
        "payload": rc.payload,
        "approvals_pending": pending,
        "error": rc.error.as_ref().map(|e| json!({"code": e.code, "message": plain_text(&e.message)})),
    });
    let mut text = summary;
    if !pending.is_empty() {
        text.push_str(&format!(
            "\n\nWaiting for an operator: {} approval(s) ({}); nothing was applied.",
            pending.len(),
            pending.join(", ")
        ));
    }
    let ok = matches!(rc.status, crate::runs::RunStatus::Succeeded | crate::runs::RunStatus::Partial);
    let mut out = if ok {
        CallToolResult::success(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::error(vec![ContentBlock::text(text)])
    };
    out.structured_content = Some(structured);
    out
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lily", crate::VERSION))
            .with_instructions(
                "Lily runs jobs and runnables in a WebAssembly sandbox under the operator's policy. Each tool call is a recorded, \
                 replayable run; effects it proposes wait for an operator's approval.",
            )
    }

    async fn list_tools(&self, _request: Option<PaginatedRequestParams>, _ctx: RequestContext<RoleServer>) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.iter().map(|(t, _)| t.clone()).collect()))
    }

    async fn call_tool(&self, request: CallToolRequestParams, ctx: RequestContext<RoleServer>) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let Some((_, target)) = self.tools.iter().find(|(t, _)| t.name == name) else {
            return Err(McpError::invalid_params(format!("no tool {name:?}"), None));
        };
        if matches!(target, Target::Helper) {
            return Ok(self.helper(&name, &args).into());
        }
        let client = ctx
            .peer
            .peer_info()
            .map(|i| format!("{} {}", i.client_info.name, i.client_info.version))
            .unwrap_or_else(|| "unknown".into());
        Ok(self.run_tool(target, args, plain_text(&client), &ctx).await.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_drops_controls_bidi_zero_width_and_tag_characters() {
        let hostile = "ok\u{1b}[31m\u{202e}\u{200b}\u{2060}\u{061c}\u{00ad}\u{2028}\u{e0049}\u{e0047}\u{9b}\tend\n";
        assert_eq!(plain_text(hostile), "ok[31m\tend\n");
        assert_eq!(plain_text("Grüße, 日本語 — fine"), "Grüße, 日本語 — fine");
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
    }
}
