//! The sandbox: one shared wasmtime [`Engine`], a compile cache, and a fresh
//! [`Store`] per step whose only capabilities are the explicit [`Grants`]
//! and whose runtime is capped by [`Limits`].
//!
//! Public surface: [`Sandbox`], [`Loaded`], [`StepRequest`], [`StepReport`],
//! [`Cause`]. Everything wasmtime-specific stays behind it.

mod builtins;
mod cache;
pub mod complexity;
mod grants;
mod host;
pub mod http;
mod limits;
pub mod llm;
mod outcome;
pub mod schema;
mod shadow;

pub use builtins::{BUILTIN_IDS, builtin_bytes};
pub use grants::{DirGrant, Grants, LlmBudget, LlmGrant, Perms};
pub use limits::Limits;
pub use outcome::{Cause, ClockTape, GuestEvent, Proposal, ProposedEffect, StepReport, TapedCall};
pub use shadow::{FileRead, MAX_HASHED_BYTES, MAX_RECORDED_READS};

use crate::sandbox::host::StepState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

/// Bindings generated from `wit/` (Run Contract R0).
mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "runnable",
        imports: { "lily:runnable/llm.complete": async },
        exports: { default: async },
    });
}

use wit::lily::runnable::types::Kind as WitKind;
use wit::{Runnable, RunnablePre};

/// How often the epoch ticker advances the engine's epoch.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Live stores (steps and `describe` calls) the pooling allocator is sized
/// for; a step beyond that waits for a free slot instead of failing.
pub const POOL_STORES: u32 = 128;

/// What a runnable says about itself (`describe`), in host types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub id: String,
    pub version: String,
    pub summary: String,
    pub kind: RunnableKind,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnableKind {
    Specialist,
    Synthesizer,
    Llm,
    Generic,
}

impl RunnableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnableKind::Specialist => "specialist",
            RunnableKind::Synthesizer => "synthesizer",
            RunnableKind::Llm => "llm",
            RunnableKind::Generic => "generic",
        }
    }

    /// The kind named by [`RunnableKind::as_str`].
    pub fn parse(s: &str) -> Option<RunnableKind> {
        [RunnableKind::Specialist, RunnableKind::Synthesizer, RunnableKind::Llm, RunnableKind::Generic]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// How a step (or a blueprint run) says it went when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeStatus {
    /// Everything it set out to do.
    Ok,
    /// Some of it (a council with a failed specialist, a runnable that says so).
    Partial,
}

impl EnvelopeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeStatus::Ok => "ok",
            EnvelopeStatus::Partial => "partial",
        }
    }
}

/// The envelope a runnable returned, in host types, after validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepEnvelope {
    pub status: EnvelopeStatus,
    pub artifacts: Vec<StepArtifact>,
    pub approvals_requested: Vec<String>,
    pub references: Vec<String>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepArtifact {
    pub name: String,
    pub media_type: String,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A component compiled, linked and described once, reused for every run.
pub struct Loaded {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub descriptor: Descriptor,
    /// Interfaces the component imports (the capabilities it could ask for).
    pub imports: Vec<String>,
    pub size: usize,
    pre: RunnablePre<StepState>,
    output_schema: Arc<schema::GuestSchema>,
    input_schema: Arc<schema::GuestSchema>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("digest", &self.digest)
            .field("descriptor", &self.descriptor)
            .finish()
    }
}

impl Loaded {
    /// Check an input against the component's declared input schema, within
    /// `budget` (the schema is the guest's: its validation is bounded).
    pub fn check_input(&self, input: &serde_json::Value, budget: Duration) -> Result<(), String> {
        match self.input_schema.check(input, Some(Instant::now() + budget), 5) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(errors)) => Err(format!("input does not match the runnable's input schema: {errors}")),
            Err(e) => Err(format!("input could not be checked: {e}")),
        }
    }
}

/// One step to run.
#[derive(Debug, Clone, Default)]
pub struct StepRequest {
    pub input: serde_json::Value,
    pub grants: Grants,
    pub limits: Limits,
    /// Random seed (and recorded start); `None` = fresh randomness.
    pub seeds: Option<Seeds>,
    /// Clock reads and host calls to feed back (replay); `None` = real
    /// clocks and calls (recorded).
    pub replay_tape: Option<ClockTape>,
    /// Model access (`lily:runnable/llm`), when policy grants it.
    pub models: Option<llm::Models>,
}

/// The nondeterminism a step can observe, recorded for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Seeds {
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub wall_clock_start_ns: u64,
    pub random_seed: u64,
}

/// Where compiled components are cached, and how.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Directory for serialized compiled components; `None` disables the
    /// on-disk cache.
    pub cache_dir: Option<PathBuf>,
}

/// The one shared engine plus everything loaded into it.
pub struct Sandbox {
    /// Engine, linker, cache and store slots: built on a thread of their
    /// own (see [`Core`]); the first use waits for them.
    core: Arc<std::sync::OnceLock<Result<Core, String>>>,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    stop_ticker: Arc<AtomicBool>,
    /// Largest component accepted (policy `limits.max_component_mb`).
    max_component_bytes: std::sync::atomic::AtomicU64,
}

/// What every load and step needs and nothing guest-chosen goes into:
/// the engine (Cranelift's flags, the pooling allocator's reservations —
/// a `mprotect` per fiber stack), the linker (~1,000 WASI and HTTP host
/// functions named and type-checked) and the compile cache's key. A few
/// milliseconds of CPU that depend on nothing a command reads, so
/// [`Sandbox::new`] builds them on a thread while the command reads its
/// root, policy and spec (`docs/performance.md`, "Start-up in parallel").
struct Core {
    engine: Engine,
    linker: Linker<StepState>,
    cache: Option<cache::CompileCache>,
    /// One permit per live store when the pooling allocator (finite slots) is in use.
    store_slots: Option<tokio::sync::Semaphore>,
}

impl Core {
    fn build(cache_dir: Option<PathBuf>, stop_ticker: Arc<AtomicBool>) -> anyhow::Result<Core> {
        let (engine, pooled) = new_engine()?;
        let mut linker: Linker<StepState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // `wasi:http` for every component; a request goes out only under the
        // step's allow-list (`http.rs`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Runnable::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)?;
        shadow::install(&mut linker)?;
        {
            let engine = engine.weak();
            std::thread::Builder::new().name("lily-epoch".into()).spawn(move || {
                while !stop_ticker.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        }
        let cache = cache_dir.map(|dir| cache::CompileCache::new(dir, &engine));
        Ok(Core {
            engine,
            linker,
            cache,
            store_slots: pooled.then(|| tokio::sync::Semaphore::new(POOL_STORES as usize)),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Why a component could not be loaded (always a problem of the
/// component, except [`LoadErrorKind::Internal`]): a kind to act on, and the
/// message to show.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub kind: LoadErrorKind,
    pub message: String,
}

/// What went wrong loading a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// Not a WebAssembly component (a core module, garbage, truncated bytes).
    NotAComponent,
    /// Over the size limit, nested too deep, or over the compile budget.
    TooComplex,
    /// Imports interfaces the host does not provide (listed).
    MissingImports(Vec<String>),
    /// Its imports do not link against what the host provides.
    LinkFailed,
    /// No `describe` / `run` exports of the `lily:runnable` world.
    MissingExports,
    /// `describe` trapped, ran out of fuel or time.
    DescribeFailed,
    /// The descriptor's id is not a valid runnable id.
    BadId,
    /// The descriptor's version is not semver.
    BadVersion,
    /// The descriptor's summary is blank.
    BlankSummary,
    /// A declared schema is not JSON, not an object, too large or deep, or
    /// not valid for the host's engine.
    BadSchema,
    /// The host could not set up the load.
    Internal,
}

impl LoadError {
    pub fn new(kind: LoadErrorKind, message: impl Into<String>) -> LoadError {
        LoadError { kind, message: message.into() }
    }
}

impl Sandbox {
    /// Start a sandbox: its [`Core`] is built on a thread of its own, and
    /// then the JSON Schema meta-schema every guest schema is checked
    /// against is compiled there too ([`schema::prewarm`]); a load or step
    /// waits for the core only if it comes first. Fails only if the thread
    /// cannot be started; a core that cannot be built fails every load
    /// with that cause.
    pub fn new(options: SandboxOptions) -> anyhow::Result<Sandbox> {
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let core = Arc::new(std::sync::OnceLock::new());
        {
            let (core, stop, dir) = (core.clone(), stop_ticker.clone(), options.cache_dir);
            std::thread::Builder::new().name("lily-sandbox".into()).spawn(move || {
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Core::build(dir, stop)));
                let _ = core.set(match built {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err("the sandbox's start-up thread panicked".to_string()),
                });
                schema::prewarm();
            })?;
        }
        Ok(Sandbox {
            core,
            loaded: Mutex::new(HashMap::new()),
            stop_ticker,
            max_component_bytes: std::sync::atomic::AtomicU64::new(complexity::DEFAULT_MAX_COMPONENT_BYTES),
        })
    }

    /// The core, once built (blocks the caller until then: a few ms, once
    /// per process, and only when nothing else was left to do).
    fn core(&self) -> Result<&Core, LoadError> {
        self.core
            .wait()
            .as_ref()
            .map_err(|e| LoadError::new(LoadErrorKind::Internal, format!("the sandbox could not start: {e}")))
    }

    /// Wait for a store slot (pooling allocator only; never closed).
    async fn store_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match self.core().ok().and_then(|c| c.store_slots.as_ref()) {
            Some(s) => s.acquire().await.ok(),
            None => None,
        }
    }

    /// Set the largest component [`Sandbox::load`] accepts.
    pub fn set_max_component_bytes(&self, bytes: u64) {
        self.max_component_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn engine(&self) -> Result<&Engine, LoadError> {
        Ok(&self.core()?.engine)
    }

    /// `sha256:<hex>` of component bytes.
    pub fn digest(bytes: &[u8]) -> String {
        match builtins::builtin_digest_of(bytes) {
            Some(d) => d.to_string(),
            None => crate::util::sha256(bytes),
        }
    }

    /// Compile (or load from cache), link and describe a component. Cached in
    /// memory by digest, so a component is prepared once per process.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Loaded>, LoadError> {
        let digest = Self::digest(bytes);
        if let Some(l) = self.loaded.lock().expect("loaded lock").get(&digest) {
            return Ok(l.clone());
        }
        let component = self.compile(bytes, &digest).await?;
        self.prepare(digest, bytes.len(), component).await
    }

    /// [`Sandbox::load`] of a component the caller knows by its `digest`
    /// and `size` (an installed runnable whose file is unchanged since it
    /// was hashed): prepared in memory or held by the compile cache, it is
    /// neither read nor hashed; otherwise `read` gives its bytes, loaded
    /// (and hashed) as [`Sandbox::load`] would.
    pub async fn load_known(&self, digest: &str, size: u64, read: impl FnOnce() -> std::io::Result<Vec<u8>>) -> Result<Arc<Loaded>, LoadError> {
        if let Some(l) = self.loaded.lock().expect("loaded lock").get(digest) {
            return Ok(l.clone());
        }
        let max = self.max_component_bytes.load(Ordering::Relaxed);
        let core = self.core()?;
        if size <= max
            && let Some(cache) = &core.cache
            && let Some(c) = cache.load(&core.engine, digest)
        {
            return self.prepare(digest.to_string(), usize::try_from(size).unwrap_or(usize::MAX), c).await;
        }
        // Read and hashed like any bytes: what is loaded (and recorded in a
        // receipt) is always what the file holds.
        let bytes = read().map_err(|e| LoadError::new(LoadErrorKind::Internal, format!("cannot read the component: {e}")))?;
        self.load(&bytes).await
    }

    /// Link and describe a compiled component, then keep it in memory.
    async fn prepare(&self, digest: String, size: usize, component: Component) -> Result<Arc<Loaded>, LoadError> {
        let core = self.core()?;
        let imports = component_imports(&core.engine, &component);
        let instance_pre = core.linker.instantiate_pre(&component).map_err(|e| {
            let missing: Vec<&String> = imports.iter().filter(|i| !host_provides(i)).collect();
            if missing.is_empty() {
                LoadError::new(LoadErrorKind::LinkFailed, format!("component cannot be linked: {e:#}"))
            } else {
                LoadError::new(
                    LoadErrorKind::MissingImports(missing.iter().map(|s| s.to_string()).collect()),
                    format!(
                        "component imports interfaces the host does not provide: {}",
                        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            }
        })?;
        let pre = RunnablePre::new(instance_pre).map_err(|e| {
            LoadError::new(
                LoadErrorKind::MissingExports,
                format!("component does not implement the lily:runnable world (describe/run exports): {e:#}"),
            )
        })?;
        let (descriptor, input_schema, output_schema) = self.describe(&pre, &digest).await?;
        let loaded = Arc::new(Loaded {
            digest: digest.clone(),
            descriptor,
            imports,
            size,
            pre,
            output_schema: Arc::new(output_schema),
            input_schema: Arc::new(input_schema),
        });
        self.loaded.lock().expect("loaded lock").insert(digest, loaded.clone());
        Ok(loaded)
    }

    /// Compile `bytes` (or take them from the cache), within bounds: the
    /// size limit, the linear nesting pre-check, and a compile time budget
    /// ([`complexity`], CPU time with a wall-clock backstop). A compile over
    /// budget is abandoned to finish on its own thread and reported as
    /// `component_too_complex`.
    async fn compile(&self, bytes: &[u8], digest: &str) -> Result<Component, LoadError> {
        let max = self.max_component_bytes.load(Ordering::Relaxed);
        if bytes.len() as u64 > max {
            return Err(LoadError::new(
                LoadErrorKind::TooComplex,
                format!(
                    "component_too_complex: the component is {} bytes; at most {max} are accepted (policy limits.max_component_mb)",
                    bytes.len()
                ),
            ));
        }
        let core = self.core()?;
        if let Some(cache) = &core.cache
            && let Some(c) = cache.load(&core.engine, digest)
        {
            return Ok(c);
        }
        complexity::precheck(bytes).map_err(|e| LoadError::new(LoadErrorKind::TooComplex, format!("component_too_complex: {e}")))?;
        // One compile at a time in a process: Cranelift's pool already uses
        // every core, and the budget charges the process's CPU time. Waited
        // for asynchronously: a long compile holds no runtime worker (the
        // scheduler keeps firing other jobs meanwhile).
        static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        let _turn = ONE_AT_A_TIME
            .acquire()
            .await
            .map_err(|e| LoadError::new(LoadErrorKind::Internal, format!("could not wait for a compile: {e}")))?;
        let clock = complexity::CompileClock::start(bytes.len());
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (engine, owned) = (core.engine.clone(), bytes.to_vec());
        std::thread::Builder::new()
            .name("lily-compile".into())
            .spawn(move || {
                let _ = tx.send(Component::new(&engine, &owned));
            })
            .map_err(|e| LoadError::new(LoadErrorKind::Internal, format!("could not start a compile: {e}")))?;
        let result = loop {
            match tokio::time::timeout(Duration::from_millis(100), &mut rx).await {
                Ok(r) => break r,
                Err(_) => {
                    if let Err(over) = clock.check() {
                        return Err(LoadError::new(LoadErrorKind::TooComplex, format!("component_too_complex: {over}")));
                    }
                }
            }
        };
        let component = match result {
            Ok(r) => r.map_err(|e| LoadError::new(LoadErrorKind::NotAComponent, format!("not a valid WebAssembly component: {e:#}")))?,
            Err(_) => return Err(LoadError::new(LoadErrorKind::Internal, "the compile thread ended without a result")),
        };
        if let Some(cache) = &core.cache {
            cache.store(digest, &component);
        }
        Ok(component)
    }

    /// Compile without using or filling any cache (benchmarks).
    pub fn compile_uncached(&self, bytes: &[u8]) -> anyhow::Result<()> {
        Component::new(&self.core()?.engine, bytes)?;
        Ok(())
    }

    /// The component's descriptor: what its `describe` returned when its
    /// compile cache entry was written (kept beside the entry, see
    /// [`cache`]), else a fresh instance calling `describe` (then kept).
    async fn describe(&self, pre: &RunnablePre<StepState>, digest: &str) -> Result<(Descriptor, schema::GuestSchema, schema::GuestSchema), LoadError> {
        let cache = self.core()?.cache.as_ref();
        let raw = match cache.and_then(|c| c.load_descriptor(digest)) {
            Some(raw) => raw,
            None => {
                let raw = self.call_describe(pre).await?;
                let parsed = Self::descriptor_of(raw.clone(), false)?;
                if let Some(c) = cache {
                    c.store_descriptor(digest, &raw);
                }
                return Ok(parsed);
            }
        };
        // Kept only after it passed `descriptor_of` with its schemas
        // compiled: they are compiled again at their first check, not here.
        Self::descriptor_of(raw, true)
    }

    async fn call_describe(&self, pre: &RunnablePre<StepState>) -> Result<cache::RawDescriptor, LoadError> {
        let limits = Limits::for_describe();
        let _slot = self.store_slot().await;
        let mut store = self
            .new_store(&StepRequest {
                limits: limits.clone(),
                ..Default::default()
            })
            .map_err(|e| LoadError::new(LoadErrorKind::Internal, e.to_string()))?;
        let call = async {
            let inst = pre.instantiate_async(&mut store).await?;
            inst.call_describe(&mut store).await
        };
        let d = match tokio::time::timeout(limits.deadline + Duration::from_millis(500), call).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let cause = outcome::classify_trap(&e, &store.data().seen(), &limits);
                return Err(LoadError::new(LoadErrorKind::DescribeFailed, format!("describe failed: {}", cause.message())));
            }
            Err(_) => {
                return Err(LoadError::new(
                    LoadErrorKind::DescribeFailed,
                    format!("describe failed: deadline of {:?} exceeded", limits.deadline),
                ));
            }
        };
        let kind = match d.kind {
            WitKind::Specialist => RunnableKind::Specialist,
            WitKind::Synthesizer => RunnableKind::Synthesizer,
            WitKind::Llm => RunnableKind::Llm,
            WitKind::Generic => RunnableKind::Generic,
        };
        Ok(cache::RawDescriptor {
            id: d.id,
            version: d.version,
            summary: d.summary,
            kind: kind.as_str().to_string(),
            input_schema: d.input_schema,
            output_schema: d.output_schema,
        })
    }

    /// A descriptor as `describe` returned it, checked: schemas parsed and
    /// compiled (`kept`: a descriptor kept beside its cache entry, which
    /// passed this check when it was kept — its schemas are parsed now and
    /// compiled at their first use), the descriptor's rules
    /// ([`validate_descriptor`]).
    fn descriptor_of(d: cache::RawDescriptor, kept: bool) -> Result<(Descriptor, schema::GuestSchema, schema::GuestSchema), LoadError> {
        let parse = |what: &str, s: &str| -> Result<(serde_json::Value, schema::GuestSchema), LoadError> {
            let bad = |e: schema::SchemaError| LoadError::new(LoadErrorKind::BadSchema, format!("descriptor {what} {e}"));
            if kept {
                if s.len() > schema::MAX_SCHEMA_BYTES {
                    return Err(bad(schema::SchemaError::TooLarge { bytes: s.len() }));
                }
                let v: serde_json::Value = serde_json::from_str(s).map_err(|e| bad(schema::SchemaError::NotJson(e.to_string())))?;
                let deferred = schema::GuestSchema::deferred(s.to_string());
                return Ok((v, deferred));
            }
            schema::GuestSchema::parse(s).map_err(bad)
        };
        let (input_schema, input) = parse("input", &d.input_schema)?;
        let (output_schema, output) = parse("output", &d.output_schema)?;
        let kind = RunnableKind::parse(&d.kind)
            .ok_or_else(|| LoadError::new(LoadErrorKind::DescribeFailed, format!("describe returned an unknown kind {:?}", d.kind)))?;
        let desc = Descriptor {
            input_schema,
            output_schema,
            id: d.id,
            version: d.version,
            summary: d.summary,
            kind,
        };
        validate_descriptor(&desc)?;
        Ok((desc, input, output))
    }

    fn new_store(&self, req: &StepRequest) -> wasmtime::Result<Store<StepState>> {
        let state = StepState::new(req)?;
        let core = self.core().map_err(|e| wasmtime::format_err!("{e}"))?;
        let mut store = Store::new(&core.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(req.limits.fuel.unwrap_or(u64::MAX))?;
        store.fuel_async_yield_interval(Some(10_000_000))?;
        let deadline = Instant::now() + req.limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= deadline {
                ctx.data().deadline_hit.store(true, Ordering::Relaxed);
                Err(wasmtime::Error::new(limits::DeadlineTrap))
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Run one step: fresh store, fresh instance, `run(input)`, output checks.
    pub async fn run(&self, loaded: &Loaded, req: StepRequest) -> StepReport {
        let started = Instant::now();
        // The step's deadline is absolute: host work for the step (input and
        // output validation included) ends by then too.
        let deadline = started + req.limits.deadline;
        let input_text = req.input.to_string();
        let _slot = self.store_slot().await;
        let mut store = match self.new_store(&req) {
            Ok(s) => s,
            Err(e) => {
                return StepReport::failed(
                    Cause::Trap {
                        message: format!("could not set up the sandbox: {e:#}"),
                    },
                    started.elapsed(),
                );
            }
        };
        if let Err(cause) = check_schema(&loaded.input_schema, &req.input, deadline, Subject::Input, &req.limits) {
            return StepReport::failed(cause, started.elapsed());
        }
        let call = async {
            let inst = loaded.pre.instantiate_async(&mut store).await?;
            inst.call_run(&mut store, &input_text).await
        };
        let result = tokio::time::timeout(req.limits.deadline + Duration::from_millis(250), call).await;
        let fuel_used = req.limits.fuel.unwrap_or(u64::MAX).saturating_sub(store.get_fuel().unwrap_or(0));
        let outcome = match result {
            Err(_) => Err(Cause::DeadlineExceeded { limit: req.limits.deadline }),
            Ok(Err(trap)) => Err(outcome::classify_trap(&trap, &store.data().seen(), &req.limits)),
            // The runnable's own strings go into receipts and events: cap them.
            Ok(Ok(Err(e))) => Err(Cause::GuestError {
                code: cap_str(e.code, MAX_ERROR_CODE_BYTES),
                message: cap_str(e.message, MAX_ERROR_MESSAGE_BYTES),
                retryable: e.retryable,
            }),
            Ok(Ok(Ok(env))) => check_envelope(loaded, env, &req.limits, deadline, store.data()),
        };
        let state = store.into_data();
        state.into_report(outcome, started.elapsed(), fuel_used)
    }
}

/// Engine settings shared by both allocation strategies.
fn base_config() -> Config {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.concurrency_support(false);
    config.max_wasm_stack(1 << 20);
    config
}

/// The engine, with the pooling allocator when it can start (`true`): slots
/// for memories, tables, instances and fiber stacks are reserved once and
/// reused, so a step costs no mmap/munmap (and no TLB shootdowns between
/// cores). Falls back to on-demand allocation if the pool cannot reserve its
/// address space, or when `LILY_SANDBOX_POOLING=0`.
fn new_engine() -> anyhow::Result<(Engine, bool)> {
    if std::env::var("LILY_SANDBOX_POOLING").as_deref() != Ok("0") {
        let mut config = base_config();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling_config()));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "pooling allocator unavailable; falling back to on-demand allocation"),
        }
    }
    Ok((Engine::new(&base_config())?, false))
}

/// Pool sized for [`POOL_STORES`] live stores of components with up to 16
/// core instances, 2 memories and 4 tables each (a Rust `wasm32-wasip2`
/// runnable has 3, 1 and 1). Memories keep the 4 GiB maximum of on-demand
/// allocation; tables hold the default `max_table_elements`.
fn pooling_config() -> wasmtime::PoolingAllocationConfig {
    let n = POOL_STORES;
    let mut p = wasmtime::PoolingAllocationConfig::new();
    p.total_component_instances(n)
        .total_stacks(n)
        .max_core_instances_per_component(16)
        .total_core_instances(n * 16)
        .max_memories_per_component(2)
        .max_memories_per_module(2)
        .total_memories(n * 2)
        .max_tables_per_component(4)
        .max_tables_per_module(4)
        .total_tables(n * 4)
        .table_elements(Limits::default().max_table_elements)
        // A freed table is reset with memset (it is small) rather than madvise.
        .table_keep_resident(1 << 20);
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        // Reset a freed memory by rewriting only its dirty pages (PAGEMAP_SCAN,
        // Linux 6.7+), up to 8 MiB, instead of madvise + page faults on the
        // next use. Without the ioctl the first 8 MiB would be memset every
        // time, so the default (madvise) stays.
        p.pagemap_scan(wasmtime::Enabled::Yes).linear_memory_keep_resident(8 << 20);
    }
    p
}

/// Check `value` against a guest-declared schema within the step's budget:
/// a mismatch and an exhausted budget are contract violations of the
/// runnable, a validation still running at the deadline is the deadline.
fn check_schema(schema: &schema::GuestSchema, value: &serde_json::Value, deadline: Instant, subject: Subject, limits: &Limits) -> Result<(), Cause> {
    let name = match subject {
        Subject::Input => "input",
        Subject::Output => "output",
    };
    match schema.check(value, Some(deadline), 5) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errors)) => Err(Cause::ContractInvalid {
            reason: match subject {
                Subject::Input => format!("input does not match the runnable's input schema: {errors}"),
                Subject::Output => format!("payload does not match the declared output schema: {errors}"),
            },
        }),
        Err(schema::SchemaError::Deadline) => Err(Cause::DeadlineExceeded { limit: limits.deadline }),
        Err(e) => Err(Cause::ContractInvalid { reason: format!("{name} {e}") }),
    }
}

#[derive(Clone, Copy)]
enum Subject {
    Input,
    Output,
}

/// Validate what `describe` returned.
pub fn validate_descriptor(d: &Descriptor) -> Result<(), LoadError> {
    if !crate::paths::valid_id(&d.id) {
        return Err(LoadError::new(
            LoadErrorKind::BadId,
            format!("descriptor id {:?} is not a valid runnable id ([a-z0-9][a-z0-9._-]{{0,63}})", d.id),
        ));
    }
    semver::Version::parse(&d.version)
        .map_err(|e| LoadError::new(LoadErrorKind::BadVersion, format!("descriptor version {:?} is not semver: {e}", d.version)))?;
    if d.summary.trim().is_empty() {
        return Err(LoadError::new(LoadErrorKind::BlankSummary, "descriptor summary is blank"));
    }
    for (what, s) in [("input", &d.input_schema), ("output", &d.output_schema)] {
        if !(s.is_object() || s.is_boolean()) {
            return Err(LoadError::new(
                LoadErrorKind::BadSchema,
                format!("descriptor {what} schema must be a JSON object"),
            ));
        }
    }
    Ok(())
}

fn check_envelope(
    loaded: &Loaded,
    env: wit::lily::runnable::types::Envelope,
    limits: &Limits,
    deadline: Instant,
    state: &StepState,
) -> Result<StepEnvelope, Cause> {
    // Everything the host keeps counts: payload, artifacts (bytes, names,
    // media types) and references.
    let total: usize = env.payload.len()
        + env.artifacts.iter().map(|a| a.bytes.len() + a.name.len() + a.media_type.len()).sum::<usize>()
        + env.references.iter().map(String::len).sum::<usize>();
    if total as u64 > limits.max_output_bytes {
        return Err(Cause::OutputTooLarge {
            bytes: total as u64,
            limit: limits.max_output_bytes,
        });
    }
    let payload: serde_json::Value = serde_json::from_str(&env.payload).map_err(|e| Cause::ContractInvalid {
        reason: format!("payload is not valid JSON: {e}"),
    })?;
    check_schema(&loaded.output_schema, &payload, deadline, Subject::Output, limits)?;
    let mut artifacts = Vec::new();
    for a in env.artifacts {
        if !valid_artifact_name(&a.name) {
            return Err(Cause::ContractInvalid {
                reason: format!("artifact name {:?} is not a plain file name", a.name),
            });
        }
        artifacts.push(StepArtifact {
            name: a.name,
            media_type: a.media_type,
            bytes: a.bytes,
        });
    }
    let known = state.proposal_ids();
    if let Some(unknown) = env.approvals_requested.iter().find(|id| !known.contains(id)) {
        return Err(Cause::ContractInvalid {
            reason: format!("approvals_requested names {unknown:?}, which this step never proposed"),
        });
    }
    Ok(StepEnvelope {
        status: match env.status {
            wit::lily::runnable::types::RunStatus::Ok => EnvelopeStatus::Ok,
            wit::lily::runnable::types::RunStatus::Partial => EnvelopeStatus::Partial,
        },
        artifacts,
        approvals_requested: env.approvals_requested,
        references: env.references,
        payload,
    })
}

/// A plain file name that cannot pass for one of the host's own hidden files
/// in the run directory (`.run.lock`, `.tmp-*.partial` temp files).
pub fn valid_artifact_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Bytes of a guest error code / message kept in receipts and events.
pub const MAX_ERROR_CODE_BYTES: usize = 128;
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes (on a char boundary), marked when cut.
fn cap_str(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub(16);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" [truncated]");
    }
    s
}

/// The interfaces a component imports, as `namespace:package/interface@version`.
fn component_imports(engine: &Engine, component: &Component) -> Vec<String> {
    let ty = component.component_type();
    let mut v: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
    v.sort();
    v
}

/// Interfaces the host links: WASI 0.2 (cli, clocks, filesystem, io,
/// random, sockets; of `wasi:http` the client side, `types` and
/// `outgoing-handler`) plus the Run Contract imports.
pub fn host_provides(import: &str) -> bool {
    const WASI: [&str; 8] = [
        "wasi:cli/",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:io/",
        "wasi:random/",
        "wasi:sockets/",
        "wasi:http/types",
        "wasi:http/outgoing-handler",
    ];
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    if name.starts_with("lily:runnable/") {
        return version.is_empty() || version.starts_with("0.1.");
    }
    WASI.iter().any(|p| name.starts_with(p)) && (version.is_empty() || version.starts_with("0.2."))
}
