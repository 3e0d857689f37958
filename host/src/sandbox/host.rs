//! Per-store state and the host side of the Run Contract imports (`events`,
//! `effects`), plus capped stdout/stderr capture.

use super::grants::Perms;
use super::limits::{Limiter, Limits};
use super::outcome::{ClockTape, GuestEvent, Proposal, ProposedEffect, TapedCall};
use super::wit::lily::runnable::{effects, events, types};
use super::{Cause, StepEnvelope, StepReport, StepRequest};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Store data of one step.
pub struct StepState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    /// State of the bounded WASI functions ([`super::shadow`]).
    pub(super) bounds: super::shadow::Bounds,
    pub(crate) limiter: Limiter,
    pub(crate) deadline_hit: Arc<AtomicBool>,
    limits: Limits,
    events: Vec<GuestEvent>,
    events_dropped: u64,
    proposals: Vec<Proposal>,
    /// Bytes held by `proposals` (capped at the output cap).
    proposal_bytes: u64,
    stdout: CappedPipe,
    stderr: CappedPipe,
    denied: Arc<Mutex<Vec<String>>>,
    tape: TapeRecorder,
    /// The step's absolute deadline (host calls never outlive it).
    pub(super) deadline: std::time::Instant,
    /// Model access, when the step's policy grants `llm`.
    pub(super) models: Option<super::llm::Models>,
    /// Model calls made so far (on the tape's `calls`).
    pub(super) calls: Vec<super::llm::LlmCall>,
    /// In a replay: the recorded model calls still to be served.
    pub(super) replay_calls: Option<std::collections::VecDeque<super::llm::LlmCall>>,
    /// `wasi:http`: its context and the step's hooks (allow-list, caps, tape).
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    http: super::http::HttpHooks,
    /// In a replay: calls that differed from the tape.
    pub(super) replay_misses: Vec<String>,
}

impl StepState {
    pub(crate) fn new(req: &StepRequest) -> wasmtime::Result<StepState> {
        let limits = req.limits.clone();
        let stdout = CappedPipe::new(limits.max_stdio_bytes as usize);
        let stderr = CappedPipe::new(limits.max_stdio_bytes as usize);
        let denied = Arc::new(Mutex::new(Vec::new()));
        let tape = TapeRecorder::new(req.replay_tape.as_ref());
        // Granted names are resolved once (by the policy, or here) and serve
        // both the connect check and the name lookups.
        let network = req.grants.network_addrs();
        let wasi = build_wasi(
            req,
            &network,
            Channels {
                tape: tape.clone(),
                stdout: stdout.clone(),
                stderr: stderr.clone(),
                denied: denied.clone(),
            },
        )?;
        // Every WASI handle (open file, socket, stream, pollable) is an entry
        // here, and files and sockets are host file descriptors: cap them per
        // step so a guest cannot exhaust the host process's descriptors.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Ok(StepState {
            wasi,
            table,
            bounds: super::shadow::Bounds {
                names: granted_names(&network),
                dir_stream_budget: limits.memory_bytes,
                ..Default::default()
            },
            limiter: Limiter {
                memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                table_elements: limits.max_table_elements,
                instances: limits.max_instances,
                memory_hit: false,
                table_hit: false,
            },
            deadline_hit: Arc::new(AtomicBool::new(false)),
            limits,
            events: Vec::new(),
            events_dropped: 0,
            proposals: Vec::new(),
            proposal_bytes: 0,
            stdout,
            stderr,
            denied,
            tape,
            deadline: std::time::Instant::now() + req.limits.deadline,
            models: req.models.clone(),
            calls: Vec::new(),
            replay_calls: req.replay_tape.as_ref().map(|t| {
                t.calls
                    .iter()
                    .filter_map(|c| match c {
                        TapedCall::Llm(c) => Some(c.clone()),
                        _ => None,
                    })
                    .collect()
            }),
            replay_misses: Vec::new(),
            http_ctx: {
                let mut c = wasmtime_wasi_http::WasiHttpCtx::new();
                c.set_field_size_limit(super::http::FIELD_SIZE_LIMIT);
                c
            },
            http: super::http::HttpHooks::new(
                &req.grants.http,
                req.limits.http,
                std::time::Instant::now() + req.limits.deadline,
                req.replay_tape.as_ref().map(|t| {
                    t.calls
                        .iter()
                        .filter_map(|c| match c {
                            TapedCall::Http(c) => Some(c.clone()),
                            _ => None,
                        })
                        .collect()
                }),
            ),
        })
    }

    /// Record a capability the guest tried and was denied.
    pub(super) fn record_denied(&self, what: String) {
        if let Ok(mut d) = self.denied.lock()
            && d.len() < MAX_DENIED_RECORDS
        {
            d.push(what);
        }
    }

    /// What this store saw, for telling a failed call's cause.
    pub(crate) fn seen(&self) -> super::outcome::Seen {
        super::outcome::Seen {
            deadline_hit: self.deadline_hit.load(std::sync::atomic::Ordering::Relaxed),
            memory_hit: self.limiter.memory_hit,
            stderr: String::from_utf8_lossy(&self.stderr.contents()).into_owned(),
        }
    }

    pub(crate) fn proposal_ids(&self) -> Vec<String> {
        self.proposals.iter().map(|p| p.id.clone()).collect()
    }

    pub(crate) fn into_report(self, outcome: Result<StepEnvelope, Cause>, duration: Duration, fuel_used: u64) -> StepReport {
        let truncated = self.stdout.truncated() || self.stderr.truncated();
        let denied = self.denied.lock().map(|d| d.clone()).unwrap_or_default();
        let http = self.http.record();
        let mut calls: Vec<TapedCall> = self.calls.into_iter().map(TapedCall::Llm).collect();
        calls.extend(http.calls.into_iter().map(TapedCall::Http));
        let mut replay_misses = self.replay_misses;
        replay_misses.extend(http.misses);
        StepReport {
            outcome,
            duration,
            fuel_used,
            events: self.events,
            events_dropped: self.events_dropped,
            proposals: self.proposals,
            stdout: String::from_utf8_lossy(&self.stdout.contents()).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr.contents()).into_owned(),
            stdio_truncated: truncated,
            denied_connections: denied,
            denied_http: http.denied,
            tape: ClockTape { calls, ..self.tape.tape() },
            replay_misses,
            reads: self.bounds.reads,
        }
    }
}

/// Denied attempts recorded per step (each becomes a `capability_denied`
/// event); more are not recorded.
const MAX_DENIED_RECORDS: usize = 1000;

/// The granted network host names, each with the addresses the host
/// resolved for it: the only names a guest's lookups may resolve.
fn granted_names(network: &[(String, Vec<SocketAddr>)]) -> Vec<(String, Vec<std::net::IpAddr>)> {
    network
        .iter()
        .filter_map(|(hp, addrs)| {
            let (host, _) = hp.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
            Some((host, addrs.iter().map(|a| a.ip()).collect()))
        })
        .collect()
}

/// Bytes one `get-random-bytes` call may ask the host for.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The host ends of a step's WASI context, which the store keeps too: the
/// clock tape, the capped stdio pipes and the denied-capability records.
struct Channels {
    tape: TapeRecorder,
    stdout: CappedPipe,
    stderr: CappedPipe,
    denied: Arc<Mutex<Vec<String>>>,
}

/// The WASI context of one step: exactly its grants (directories, env,
/// resolved network names), its clocks on the tape, its seeds and limits.
fn build_wasi(req: &StepRequest, network: &[(String, Vec<SocketAddr>)], channels: Channels) -> wasmtime::Result<WasiCtx> {
    let Channels { tape, stdout, stderr, denied } = channels;
    let (grants, limits) = (&req.grants, &req.limits);
    let mut b = WasiCtxBuilder::new();
    b.stdout(stdout).stderr(stderr);
    for d in &grants.dirs {
        let perms = match d.perms {
            Perms::ReadOnly => FsPerms::ReadOnly,
            Perms::ReadWrite => FsPerms::ReadWrite,
        };
        b.preopened_dir(&d.host, &d.guest, perms)
            .map_err(|e| wasmtime::format_err!("cannot open granted directory {}: {e}", d.host.display()))?;
    }
    for (k, v) in &grants.env {
        b.env(k, v);
    }
    b.wall_clock(TapeWall(tape.clone()));
    b.monotonic_clock(TapeMonotonic(tape, std::time::Instant::now()));
    if let Some(s) = req.seeds {
        b.insecure_random_seed(u128::from(s.random_seed));
        b.secure_random(StdRng::seed_from_u64(s.random_seed ^ 0x9E37_79B9_7F4A_7C15));
        b.insecure_random(StdRng::seed_from_u64(s.random_seed));
    }
    // Network: TCP is allowed at the WASI level only so that every address
    // passes the check below, which says yes to granted `host:port` pairs
    // and records everything else as a denied capability.
    let allowed: Vec<SocketAddr> = network.iter().flat_map(|(_, a)| a.iter().copied()).collect();
    b.allow_tcp(true);
    b.allow_udp(false);
    // Name lookups are answered by the host's own implementation
    // (`shadow.rs`), which resolves granted names only; the stock one stays off.
    b.allow_ip_name_lookup(false);
    // A random-bytes call allocates its result on the host: at most 1 MiB
    // (and never more than the guest's own memory limit); larger traps.
    b.max_random_size(MAX_RANDOM_BYTES.min(limits.memory_bytes));
    b.socket_addr_check(move |addr, use_| {
        let ok = match use_ {
            SocketAddrUse::TcpConnect => allowed.contains(&addr),
            // The implicit bind before a connect: harmless on its own, and
            // letting it through means the connect itself is checked (and
            // recorded with the address the guest wanted).
            SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
            _ => false,
        };
        if !ok
            && let Ok(mut d) = denied.lock()
            && d.len() < MAX_DENIED_RECORDS
        {
            d.push(format!("{addr} ({use_:?})"));
        }
        Box::pin(async move { ok })
    });
    Ok(b.build())
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for StepState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl types::Host for StepState {}

impl events::Host for StepState {
    fn emit(&mut self, level: events::Level, kind: String, fields: String) {
        if self.events.len() as u64 >= self.limits.max_events || fields.len() as u64 > self.limits.max_event_bytes || !valid_event_kind(&kind) {
            self.events_dropped += 1;
            return;
        }
        let fields = match serde_json::from_str::<serde_json::Value>(&fields) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(other) => serde_json::json!({ "value": other }),
            Err(_) => serde_json::json!({ "invalid_fields": true }),
        };
        let level = match level {
            events::Level::Debug => "debug",
            events::Level::Info => "info",
            events::Level::Warn => "warn",
            events::Level::Error => "error",
        };
        self.events.push(GuestEvent { level, kind, fields });
    }
}

/// A guest event kind is snake_case, 1-64 bytes (`[a-z][a-z0-9_]{0,63}`):
/// it is shown in `jobs tail` and matched by tools, so it is a name, never
/// text. Other kinds are dropped and counted like a flood.
pub fn valid_event_kind(kind: &str) -> bool {
    let b = kind.as_bytes();
    !b.is_empty() && b.len() <= 64 && b[0].is_ascii_lowercase() && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Hard cap on proposals per step.
const MAX_PROPOSALS: usize = 64;

/// Handles (WASI resources) a step may hold at once.
pub const MAX_RESOURCES: usize = 1024;

/// Bytes of a proposal's names (publish artifact and destination, channel).
const MAX_EFFECT_NAME_BYTES: usize = 1024;

impl effects::Host for StepState {
    fn propose(&mut self, effect: effects::Effect, reason: String) -> Result<String, String> {
        if self.proposals.len() >= MAX_PROPOSALS {
            return Err(format!("at most {MAX_PROPOSALS} effects may be proposed per step"));
        }
        let effect = match effect {
            effects::Effect::WriteFile(w) => {
                crate::paths::check_relative_file(&w.path).map_err(|e| e.to_string())?;
                if w.contents.len() as u64 > self.limits.max_output_bytes {
                    return Err(format!("contents of {} bytes exceed the output cap", w.contents.len()));
                }
                ProposedEffect::WriteFile {
                    path: w.path,
                    contents: w.contents,
                }
            }
            effects::Effect::Publish(p) => {
                if p.artifact.len() > MAX_EFFECT_NAME_BYTES || p.to.len() > MAX_EFFECT_NAME_BYTES {
                    return Err(format!("publish artifact and destination must be at most {MAX_EFFECT_NAME_BYTES} bytes"));
                }
                // An artifact of this run, by its plain name: never a path
                // the host would resolve outside the run directory.
                if !super::valid_artifact_name(&p.artifact) {
                    return Err(format!(
                        "publish artifact {:?} is not an artifact name ([A-Za-z0-9._-], no leading '.')",
                        p.artifact
                    ));
                }
                ProposedEffect::Publish {
                    artifact: p.artifact,
                    to: p.to,
                }
            }
            effects::Effect::Send(s) => {
                if s.channel.len() > MAX_EFFECT_NAME_BYTES {
                    return Err(format!("send channel must be at most {MAX_EFFECT_NAME_BYTES} bytes"));
                }
                ProposedEffect::Send {
                    channel: s.channel,
                    message: s.message,
                }
            }
        };
        // Proposals are kept until the run ends: together they may not hold
        // more than the output cap (one guest buffer proposed many times
        // would otherwise multiply into host memory).
        let bytes = match &effect {
            ProposedEffect::WriteFile { path, contents } => path.len() + contents.len(),
            ProposedEffect::Publish { artifact, to } => artifact.len() + to.len(),
            ProposedEffect::Send { channel, message } => channel.len() + message.len(),
        } as u64;
        if self.proposal_bytes.saturating_add(bytes) > self.limits.max_output_bytes {
            return Err(format!(
                "proposals of this step would exceed the output cap of {} bytes",
                self.limits.max_output_bytes
            ));
        }
        self.proposal_bytes += bytes;
        let id = format!("apr-{}", crate::util::random_hex(8));
        self.proposals.push(Proposal {
            id: id.clone(),
            effect,
            reason: reason.chars().take(500).collect(),
        });
        Ok(id)
    }
}

/// Reads kept per clock and step (a guest reading more gets real time past it).
pub const MAX_TAPE: usize = 4096;

#[derive(Clone, Default)]
pub(crate) struct TapeRecorder {
    rec: Arc<Mutex<ClockTape>>,
    replay: Arc<Mutex<(std::collections::VecDeque<u64>, std::collections::VecDeque<u64>)>>,
}

impl TapeRecorder {
    fn new(replay: Option<&ClockTape>) -> Self {
        let r = TapeRecorder::default();
        if let Some(t) = replay
            && let Ok(mut q) = r.replay.lock()
        {
            q.0 = t.wall.iter().copied().collect();
            q.1 = t.monotonic.iter().copied().collect();
        }
        r
    }
    pub(crate) fn tape(&self) -> ClockTape {
        self.rec.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

struct TapeWall(TapeRecorder);

impl wasmtime_wasi::HostWallClock for TapeWall {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        let replayed = self.0.replay.lock().ok().and_then(|mut q| q.0.pop_front());
        let ns = replayed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        if let Ok(mut t) = self.0.rec.lock()
            && t.wall.len() < MAX_TAPE
        {
            t.wall.push(ns);
        }
        Duration::from_nanos(ns)
    }
}

struct TapeMonotonic(TapeRecorder, std::time::Instant);

impl wasmtime_wasi::HostMonotonicClock for TapeMonotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        let replayed = self.0.replay.lock().ok().and_then(|mut q| q.1.pop_front());
        let ns = replayed.unwrap_or_else(|| self.1.elapsed().as_nanos() as u64);
        if let Ok(mut t) = self.0.rec.lock()
            && t.monotonic.len() < MAX_TAPE
        {
            t.monotonic.push(ns);
        }
        ns
    }
}

/// stdout/stderr capture that keeps the first `cap` bytes and silently drops
/// the rest (counted), so a chatty guest neither traps nor floods the host.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<(Vec<u8>, bool)>>,
    cap: usize,
}

impl CappedPipe {
    fn new(cap: usize) -> Self {
        CappedPipe {
            inner: Arc::new(Mutex::new((Vec::new(), false))),
            cap,
        }
    }
    fn contents(&self) -> Vec<u8> {
        self.inner.lock().map(|g| g.0.clone()).unwrap_or_default()
    }
    fn truncated(&self) -> bool {
        self.inner.lock().map(|g| g.1).unwrap_or(false)
    }
    fn push(&self, bytes: &[u8]) {
        if let Ok(mut g) = self.inner.lock() {
            let room = self.cap.saturating_sub(g.0.len());
            let n = room.min(bytes.len());
            g.0.extend_from_slice(&bytes[..n]);
            if n < bytes.len() {
                g.1 = true;
            }
        }
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
