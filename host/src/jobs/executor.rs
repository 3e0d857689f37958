//! The run sequence. Every path — manual, cron, replay — goes through
//! [`Lily::run_job`]:
//!
//! 1. load + validate the spec (`job_not_found`, `job_invalid_spec`,
//!    `job_trigger_invalid`: nothing written)
//! 2. resolve the blueprint (`job_target_unresolved`)
//! 3. validate bindings (`job_bindings_invalid`)
//! 4. enforce policy (`job_policy_denied`)
//! 5. compile + run through the sandbox with timeout / retry / parallelism
//!    caps (`job_execution_failed`, blueprint code kept as the cause)
//! 6. persist artifacts and the receipt (atomic)
//! 7. render a deterministic summary

use crate::blueprints::{Blueprint, ExecCtx, Graph, Prepared, Registry};
use crate::error::{ErrorCode, LilyError};
use crate::llm::{LlmService, RunModels};
use crate::policy::Policy;
use crate::runnables::RunnableRegistry;
use crate::runs::EventSink;
use crate::runs::{
    self, ArtifactRecord, Attempt, AttemptStatus, ComponentRecord, Decision, DriftRecord, EventLog, PolicyRecord, Receipt, ReceiptError, RunDir, RunStatus,
    TargetRecord, TriggerRecord, Verdict,
};
use crate::sandbox::{ClockTape, Grants, Limits, Sandbox, SandboxOptions, Seeds};
use crate::spec::{self, JobSpec, SpecFile, SummaryFormat};
use crate::util::rfc3339;
use crate::workspace::Root;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How one attempt ended.
enum AttemptOutcome {
    Succeeded(crate::blueprints::BlueprintOutput, Vec<(String, String, crate::sandbox::Proposal)>),
    Failed { error: LilyError, cause: Value, retryable: bool },
    Cancelled,
}

/// Retry backoff: the initial delay, doubling, capped at 300 s.
struct Backoff(Duration);

impl Backoff {
    fn new(initial_seconds: u64) -> Backoff {
        Backoff(Duration::from_secs(initial_seconds))
    }

    /// Sleep for the current delay (then double it); `true` when cancelled.
    async fn wait(&mut self, cancel: &Cancel) -> bool {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(300));
        sleep_or_cancel(d, cancel).await
    }
}

/// Replay-related options carried through the attempts.
struct Extra {
    replay_tapes: BTreeMap<String, ClockTape>,
    no_auto_effects: bool,
}

/// How far planning got: a plan to run, or a compile failure worth retrying
/// (each attempt plans again until one succeeds).
enum Planned {
    Ready(Box<Plan>),
    Retry(Option<PlanError>),
}

/// What every attempt of one run reads.
struct AttemptInput<'a> {
    spec: &'a JobSpec,
    policy: &'a Policy,
    events: &'a Arc<EventLog>,
    run: &'a RunDir,
    cancel: &'a Cancel,
    seeds: Seeds,
    extra: &'a Extra,
    verify: Option<&'a super::replay::VerifyAgainst>,
}

/// How one attempt ended, for its record.
struct AttemptEnd<'a> {
    n: u32,
    start: chrono::DateTime<Utc>,
    error: &'a LilyError,
    cause: Value,
    retryable: bool,
    will_retry: bool,
}

/// The host: one root, one sandbox, the registries.
pub struct Lily {
    pub root: Root,
    pub sandbox: Arc<Sandbox>,
    pub blueprints: Registry,
    pub runnables: RunnableRegistry,
    /// The model providers of `.lily/config.yaml`.
    pub llm: Arc<LlmService>,
    /// The policy as last parsed, with the stamp of its file (`None`: no
    /// file). Re-read whenever the file's stamp changes.
    policy_cache: std::sync::Mutex<Option<(Option<crate::util::Stamp>, Result<Arc<Policy>, LilyError>)>>,
}

/// How a run was started.
#[derive(Debug, Clone)]
pub enum TriggerInfo {
    Manual,
    Cron {
        scheduled_for: chrono::DateTime<Utc>,
        local: String,
        timezone: String,
    },
    Replay {
        of: String,
    },
    Mcp {
        client: String,
        session: String,
        tool: String,
    },
}

impl TriggerInfo {
    fn record(&self) -> TriggerRecord {
        match self {
            TriggerInfo::Manual => TriggerRecord::Manual,
            TriggerInfo::Cron {
                scheduled_for,
                local,
                timezone,
            } => TriggerRecord::Cron {
                scheduled_for: rfc3339(*scheduled_for),
                scheduled_for_local: local.clone(),
                timezone: timezone.clone(),
            },
            TriggerInfo::Replay { of } => TriggerRecord::Replay { replay_of: of.clone() },
            TriggerInfo::Mcp { client, session, tool } => TriggerRecord::Mcp {
                client: client.clone(),
                session: session.clone(),
                tool: tool.clone(),
            },
        }
    }
}

/// Stops a run's cancel-request watcher when the run ends.
struct CancelWatch(tokio::task::JoinHandle<()>);

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A cancellation signal shared with a run (Ctrl-C, scheduler shutdown).
#[derive(Clone, Default)]
pub struct Cancel(Arc<tokio::sync::watch::Sender<bool>>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel(Arc::new(tokio::sync::watch::channel(false).0))
    }
    pub fn cancel(&self) {
        let _ = self.0.send(true);
    }
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// [`RunOptions::on_started`]: called with the run id and the run directory.
pub type OnStarted = Box<dyn FnOnce(&str, &std::path::Path) + Send>;

/// Options of one run.
pub struct RunOptions {
    pub trigger: TriggerInfo,
    /// Wait for a free parallel-run slot instead of refusing.
    pub wait: bool,
    pub cancel: Cancel,
    /// Called for every event (live progress).
    pub observer: Option<Box<dyn Fn(&str, &Value) + Send + Sync>>,
    /// Called once, right after the run is on disk and started (its first
    /// receipt written and `job_started` recorded), before any step runs,
    /// with the run id and the run directory.
    pub on_started: Option<OnStarted>,
    /// Use this spec instead of the file (replay).
    pub spec_override: Option<SpecFile>,
    /// Recorded seeds to feed the sandbox (replay); else fresh.
    pub seeds: Option<Seeds>,
    /// Recorded clock reads per node to feed back (replay).
    pub replay_tapes: BTreeMap<String, ClockTape>,
    /// Never apply effects, even auto-approved ones (replay).
    pub no_auto_effects: bool,
    /// Component drift accepted by `--allow-drift` (recorded in the receipt).
    pub drift: Vec<DriftRecord>,
    /// `lily jobs replay --verify`: compare with this run before the
    /// receipt is committed (the result goes into it).
    pub verify_against: Option<super::replay::VerifyAgainst>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            trigger: TriggerInfo::Manual,
            wait: false,
            cancel: Cancel::new(),
            observer: None,
            on_started: None,
            spec_override: None,
            seeds: None,
            replay_tapes: BTreeMap::new(),
            no_auto_effects: false,
            drift: Vec::new(),
            verify_against: None,
        }
    }
}

/// What `run_job` returns for every run that got a run directory.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_dir: PathBuf,
    pub receipt: Receipt,
    pub summary: String,
}

impl RunResult {
    pub fn error_code(&self) -> Option<ErrorCode> {
        Some(self.receipt.error.as_ref()?.code)
    }
}

/// Everything the plan of a job resolved to (shared by run, plan, validate
/// and `policy explain`).
pub struct Plan {
    pub blueprint: Blueprint,
    pub prepared: Arc<Prepared>,
    pub decisions: Vec<Decision>,
    pub limits: Limits,
}

impl Plan {
    /// Every node of the graph, in graph order, with the component loaded
    /// for it (what the receipt's `components` and `lily jobs plan` list).
    pub fn nodes(&self) -> impl Iterator<Item = (&crate::blueprints::Node, &crate::sandbox::Loaded)> {
        self.prepared
            .graph
            .nodes
            .iter()
            .filter_map(|n| self.prepared.loaded.get(&n.id).map(|l| (n, l.as_ref())))
    }
}

/// A failure while planning: the job-level error plus the blueprint cause.
#[derive(Debug, Clone)]
pub struct PlanError {
    pub error: LilyError,
    pub cause: Value,
    pub retryable: bool,
    pub status: RunStatus,
}

impl PlanError {
    fn new(code: ErrorCode, inner: &LilyError, retryable: bool) -> PlanError {
        let status = match code {
            ErrorCode::JobPolicyDenied => RunStatus::Denied,
            // Refused at the parallel-run cap: the run overlapped others.
            ErrorCode::JobBusy => RunStatus::SkippedOverlap,
            _ => RunStatus::Failed,
        };
        let mut error = LilyError::new(code, inner.message.clone());
        error.hint = inner.hint.clone();
        error.details = inner.details.clone();
        PlanError {
            error,
            cause: json!({"code": inner.code.as_str(), "message": inner.message}),
            retryable,
            status,
        }
    }
}

/// The key path of the binding a blueprint's bindings error is about:
/// `details.key` when the blueprint gives it, else the binding its message
/// names, else `bindings`.
fn bindings_key(spec: &JobSpec, e: &LilyError) -> String {
    if let Some(k) = e.details.get("key").and_then(Value::as_str) {
        return k.to_string();
    }
    let mut names: Vec<&String> = spec.bindings.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    names.sort_by_key(|k| std::cmp::Reverse(k.len()));
    names
        .into_iter()
        .find(|k| e.message.contains(k.as_str()) || e.message.contains(k.trim_end_matches('s')))
        .map(|k| format!("bindings.{k}"))
        .unwrap_or_else(|| "bindings".into())
}

/// The key path of the binding whose value is (or lists) runnable `id`.
fn binding_naming(spec: &JobSpec, id: &str) -> String {
    let Some(m) = spec.bindings.as_object() else {
        return "bindings".into();
    };
    for (k, v) in m {
        if v.as_str() == Some(id) {
            return format!("bindings.{k}");
        }
        if let Some(i) = v.as_array().and_then(|a| a.iter().position(|x| x.as_str() == Some(id))) {
            return format!("bindings.{k}.{i}");
        }
    }
    "bindings".into()
}

impl PlanError {
    /// The job-level message located at `key` of the spec (`<file>:<line>: …`);
    /// the cause keeps the blueprint's own message.
    fn at_key(mut self, spec: &JobSpec, key: &str) -> PlanError {
        self.error = spec.at_key(key, self.error);
        self
    }

    /// [`PlanError::at_key`] for unresolved runnable ids: at the binding that
    /// names the first of them.
    fn at_unresolved(self, spec: &JobSpec, e: &LilyError) -> PlanError {
        match e.message.strip_prefix("unresolved runnable ids: ") {
            Some(ids) => {
                let key = binding_naming(spec, ids.split(", ").next().unwrap_or(""));
                self.at_key(spec, &key)
            }
            None => self,
        }
    }
}

impl Lily {
    /// Open a root with a sandbox whose compile cache lives in `.lily/cache/`.
    pub fn open(root: Root) -> anyhow::Result<Lily> {
        let sandbox = Sandbox::new(SandboxOptions {
            cache_dir: Some(root.cache_dir()),
        })?;
        let runnables = RunnableRegistry::new(Some(&root));
        let llm = Arc::new(LlmService::new(&root.config.llm));
        let lily = Lily {
            llm,
            root,
            sandbox: Arc::new(sandbox),
            blueprints: Registry::builtin(),
            runnables,
            policy_cache: std::sync::Mutex::new(None),
        };
        // Sets the sandbox's component size limit from the policy (a broken
        // policy is reported by whatever uses it next).
        let _ = lily.policy();
        Ok(lily)
    }

    /// The same root, sandbox and model providers, resolving runnables
    /// through `runnables` (a replay pins the digests it recorded).
    pub fn with_runnables(&self, runnables: RunnableRegistry) -> Lily {
        Lily {
            root: self.root.clone(),
            sandbox: self.sandbox.clone(),
            blueprints: Registry::builtin(),
            runnables,
            llm: self.llm.clone(),
            policy_cache: std::sync::Mutex::new(None),
        }
    }

    /// `.lily/policy.yaml` as it is now. A long-lived `Lily` (the scheduler)
    /// parses it once per version of the file, not once per run: the file
    /// is stat'ed first and parsed again only when its stamp changed.
    pub fn policy(&self) -> Result<Arc<Policy>, LilyError> {
        let stamp = crate::util::Stamp::of_path(&self.root.policy_path());
        if let Ok(cache) = self.policy_cache.lock()
            && let Some((s, p)) = cache.as_ref()
            && *s == stamp
        {
            return p.clone();
        }
        let loaded = Policy::load(&self.root).map(Arc::new);
        if let Ok(p) = &loaded {
            self.sandbox.set_max_component_bytes(p.file.limits.max_component_mb.saturating_mul(1 << 20));
        }
        if let Ok(mut cache) = self.policy_cache.lock() {
            *cache = Some((stamp, loaded.clone()));
        }
        loaded
    }

    /// Step 1: find and validate the spec.
    pub fn load_spec(&self, job_id: &str) -> Result<SpecFile, LilyError> {
        let index = self.root.state_dir().join(spec::SCAN_INDEX_FILE);
        let f = spec::find_indexed(&self.root.jobs_dir, job_id, Some(&index))?;
        f.spec.clone()?;
        Ok(f)
    }

    /// Steps 2–5a: resolve, validate bindings, policy, compile and load.
    /// What it reads of the spec is [`plan_key`]'s input (and, for the
    /// location in a refusal's message, the spec's file).
    pub async fn plan(&self, spec: &JobSpec, policy: &Policy) -> Result<Plan, PlanError> {
        let blueprint = self
            .blueprints
            .resolve(&spec.target.id, spec.target.version.as_deref())
            .map_err(|e| {
                let key = if e.message.starts_with("no blueprint") {
                    "target.id"
                } else {
                    "target.version"
                };
                PlanError::new(ErrorCode::JobTargetUnresolved, &e, false).at_key(spec, key)
            })?
            .clone();
        let graph = blueprint.compile(&spec.bindings).map_err(|e| {
            let key = bindings_key(spec, &e);
            PlanError::new(ErrorCode::JobBindingsInvalid, &e, false).at_key(spec, &key)
        })?;
        check_target_io(&blueprint, spec).map_err(|e| PlanError::new(ErrorCode::JobInvalidSpec, &e, false))?;
        check_dirs_exist(&self.root, &graph).map_err(|e| PlanError::new(ErrorCode::JobBindingsInvalid, &e, false))?;
        // Unknown runnable ids before the policy is asked about them (its
        // hint would otherwise offer grants for a runnable that does not exist).
        self.check_runnables_exist(&graph)
            .map_err(|e| PlanError::new(ErrorCode::JobTargetUnresolved, &e, false).at_unresolved(spec, &e))?;
        // Every refusal at once (every missing grant, every cap above its
        // ceiling), not the first one per attempt.
        if let Some(e) = policy.review(&self.root, spec, &step_asks(&graph)).denial() {
            return Err(PlanError::new(ErrorCode::JobPolicyDenied, &e, false));
        }
        let mut decisions = policy.check_runtime(spec).map_err(|e| PlanError::new(ErrorCode::JobPolicyDenied, &e, false))?;
        let grants = self
            .grants_for(&graph, policy, &mut decisions)
            .map_err(|e| PlanError::new(ErrorCode::JobPolicyDenied, &e, false))?;
        let limits = policy.limits_for(spec);
        let loaded = self.load_graph(&graph).await.map_err(|e| {
            // A runnable id that is neither built in nor installed is the
            // target's problem, not a transient failure: never retried.
            if e.code == ErrorCode::BlueprintCompileFailed {
                PlanError::new(ErrorCode::JobTargetUnresolved, &e, false).at_unresolved(spec, &e)
            } else {
                PlanError::new(ErrorCode::JobExecutionFailed, &e, true)
            }
        })?;
        let mut grants = grants;
        check_llm(
            &graph,
            &loaded,
            &mut grants,
            spec.runtime.llm.as_ref(),
            &self.root.config.llm,
            policy,
            &mut decisions,
        )
        .map_err(|e| PlanError::new(ErrorCode::JobPolicyDenied, &e, false))?;
        let prepared = Arc::new(Prepared {
            graph,
            bindings: spec.bindings.clone(),
            loaded,
            grants,
        });
        blueprint.check_kinds(&prepared).map_err(|e| {
            let retry = e.code == ErrorCode::BlueprintCompileFailed;
            PlanError::new(ErrorCode::JobExecutionFailed, &e, retry)
        })?;
        Ok(Plan {
            blueprint,
            prepared,
            decisions,
            limits,
        })
    }

    /// What `lily policy explain` shows: every row of the policy review of
    /// a job (its target and bindings must compile).
    pub fn review(&self, spec: &JobSpec, policy: &Policy) -> Result<crate::policy::review::Review, LilyError> {
        let blueprint = self.blueprints.resolve(&spec.target.id, spec.target.version.as_deref())?;
        let graph = blueprint.compile(&spec.bindings)?;
        // What planning refuses before it asks the policy, refused here too.
        let recode = |code: ErrorCode| {
            move |mut e: LilyError| {
                e.code = code;
                e
            }
        };
        check_dirs_exist(&self.root, &graph).map_err(recode(ErrorCode::JobBindingsInvalid))?;
        self.check_runnables_exist(&graph).map_err(recode(ErrorCode::JobTargetUnresolved))?;
        Ok(policy.review(&self.root, spec, &step_asks(&graph)))
    }

    fn grants_for(&self, graph: &Graph, policy: &Policy, decisions: &mut Vec<Decision>) -> Result<BTreeMap<String, Grants>, LilyError> {
        let mut out = BTreeMap::new();
        for node in &graph.nodes {
            let mut dirs = Vec::new();
            for d in &node.dirs {
                let (g, dec) = policy.grant_dir(&self.root, &node.runnable, &d.path, &d.guest, d.perms)?;
                dirs.push(g);
                decisions.push(dec);
            }
            let (env, env_dec) = policy.grant_env(&node.runnable, &node.env)?;
            decisions.extend(env_dec);
            let grants = policy.grants_for(&node.runnable, dirs, env);
            for n in &grants.network {
                decisions.push(Decision {
                    subject: format!("{}: network {n}", node.runnable),
                    decision: Verdict::Granted,
                    reason: "listed in policy".into(),
                });
            }
            for h in &grants.http {
                decisions.push(Decision {
                    subject: format!("{}: http {h}", node.runnable),
                    decision: Verdict::Granted,
                    reason: "listed in policy".into(),
                });
            }
            out.insert(node.id.clone(), grants);
        }
        Ok(out)
    }

    /// Every runnable id of a graph is built in or installed (no bytes read);
    /// else all unresolved ids, in graph order (`blueprint_compile_failed`).
    fn check_runnables_exist(&self, graph: &Graph) -> Result<(), LilyError> {
        let unresolved = self.runnables.unresolved(graph.nodes.iter().map(|n| n.runnable.as_str()));
        if unresolved.is_empty() {
            return Ok(());
        }
        Err(unresolved_error(&unresolved, &self.runnables.ids()))
    }

    /// Resolve and load every runnable of a graph: unresolved ids are listed
    /// together (`blueprint_compile_failed`), a refused component is
    /// `blueprint_contract_invalid`.
    pub async fn load_graph(&self, graph: &Graph) -> Result<BTreeMap<String, Arc<crate::sandbox::Loaded>>, LilyError> {
        // Each distinct runnable is loaded once, all of them concurrently
        // (cache checksum + deserialize + describe run on every core).
        let mut ids: Vec<String> = graph.nodes.iter().map(|n| n.runnable.clone()).collect();
        ids.sort();
        ids.dedup();
        let mut set = tokio::task::JoinSet::new();
        for id in ids {
            let (sandbox, runnables) = (self.sandbox.clone(), self.runnables.clone());
            set.spawn(async move {
                let r = runnables.load(&sandbox, &id).await;
                (id, r)
            });
        }
        let mut by_id = BTreeMap::new();
        let mut unresolved = Vec::new();
        let mut refused = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (id, r) = joined.map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("loading runnables failed: {e}")))?;
            match r {
                Ok(Some(l)) => {
                    by_id.insert(id, l);
                }
                Ok(None) => unresolved.push(id),
                Err(e) => refused.push((id, e)),
            }
        }
        refused.sort_by(|a: &(String, crate::sandbox::LoadError), b| a.0.cmp(&b.0));
        if let Some((id, e)) = refused.into_iter().next() {
            // The component's problem, unless the host could not set up the load.
            let code = match e.kind {
                crate::sandbox::LoadErrorKind::Internal => ErrorCode::JobExecutionFailed,
                _ => ErrorCode::BlueprintContractInvalid,
            };
            return Err(LilyError::new(code, format!("runnable {id} was refused: {e}")));
        }
        if !unresolved.is_empty() {
            // In graph order, as the bindings list them.
            let order: Vec<&String> = graph.nodes.iter().map(|n| &n.runnable).collect();
            unresolved.sort_by_key(|id| order.iter().position(|o| *o == id));
            let ids: Vec<&str> = unresolved.iter().map(String::as_str).collect();
            return Err(unresolved_error(&ids, &self.runnables.ids()));
        }
        Ok(graph
            .nodes
            .iter()
            .filter_map(|n| by_id.get(&n.runnable).map(|l| (n.id.clone(), l.clone())))
            .collect())
    }

    /// Run a job once through the whole run sequence.
    pub async fn run_job(&self, job_id: &str, mut opts: RunOptions) -> Result<RunResult, LilyError> {
        // 1. Spec: failures here write nothing.
        let spec_file = match opts.spec_override.clone() {
            Some(f) => f,
            None => self.load_spec(job_id)?,
        };
        let spec = spec_file.spec.clone()?;
        let policy = self.policy();

        // Every later outcome gets a run directory with a receipt.
        let run = RunDir::create(&self.root.runs_dir(), &spec.id).map_err(|e| {
            LilyError::new(
                ErrorCode::JobExecutionFailed,
                format!("cannot create a run directory under {}: {e}", self.root.runs_dir().display()),
            )
        })?;
        // This run's own cancellation: the caller's signal (Ctrl-C, the
        // scheduler's shutdown) or a cancel request in the run directory
        // (`lily jobs cancel`), which cancels this run only.
        let cancel = Cancel::new();
        let _watch = CancelWatch(tokio::spawn({
            let (outer, inner, dir) = (opts.cancel.clone(), cancel.clone(), run.path.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = outer.cancelled() => break,
                        _ = tokio::time::sleep(runs::CANCEL_POLL) => if runs::cancel_requested(&dir) { break },
                    }
                }
                inner.cancel();
            }
        }));
        let events = Arc::new(
            EventLog::create(&run.path, &run.run_id, opts.observer.take())
                .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot write events: {e}")))?,
        );
        let mut receipt = Receipt::start(
            &spec.id,
            &run.run_id,
            opts.trigger.record(),
            spec_file.sha256.as_deref().unwrap_or(""),
            &spec_file.path.display().to_string(),
        );
        let seeds = opts.seeds.unwrap_or_else(|| Seeds {
            wall_clock_start_ns: now_ns(),
            random_seed: crate::util::random_u64(),
        });
        receipt.seeds = Some(seeds);
        if let TriggerInfo::Replay { of } = &opts.trigger {
            receipt.replay_of = Some(of.clone());
        }
        receipt.target = TargetRecord {
            kind: spec.target.kind.clone(),
            id: spec.target.id.clone(),
            requirement: spec.target.version.clone(),
            input: spec.target.input.clone(),
            version: None,
        };
        write_receipt(&run, &mut receipt, &events)?;
        events.emit(
            "job_started",
            json!({"job_id": spec.id, "trigger": receipt.trigger, "replay_of": receipt.replay_of, "pid": std::process::id()}),
        );
        if let Some(started) = opts.on_started.take() {
            started(&run.run_id, &run.path);
        }
        // The spec snapshot (what replay runs again) is written before any
        // step runs, but after `job_started`: the first receipt and the event
        // are what a started run needs first.
        if let Some(raw) = &spec_file.raw {
            let _ = run.write_record(runs::SPEC_SNAPSHOT, raw.as_bytes());
        }

        let policy = match policy {
            Ok(p) => p,
            Err(e) => {
                let pe = PlanError::new(ErrorCode::JobPolicyDenied, &e, false);
                return self.finish_without_attempt(&run, &events, receipt, &spec, pe, opts.verify_against.as_ref());
            }
        };

        receipt.drift = opts.drift.clone();
        if !opts.drift.is_empty() {
            events.emit("component_drift", json!({"drift": opts.drift}));
        }
        let extra = Extra {
            replay_tapes: opts.replay_tapes.clone(),
            no_auto_effects: opts.no_auto_effects,
        };

        // 2–4 (+ loading): plan. Compile failures are retried like
        // execution failures, by the attempts.
        let planned = match self.plan(&spec, &policy).await {
            Ok(p) => Planned::Ready(Box::new(p)),
            Err(pe) if !pe.retryable => return self.finish_without_attempt(&run, &events, receipt, &spec, pe, opts.verify_against.as_ref()),
            Err(pe) => Planned::Retry(Some(pe)),
        };
        let input = AttemptInput {
            spec: &spec,
            policy: &policy,
            events: &events,
            run: &run,
            cancel: &cancel,
            seeds,
            extra: &extra,
            verify: opts.verify_against.as_ref(),
        };
        let ended = self.run_attempts(&input, planned, &mut receipt, opts.wait).await?;
        self.persist(&input, receipt, ended)
    }

    /// 4b–5b: the run slot, then attempts with retries and backoff.
    async fn run_attempts(&self, input: &AttemptInput<'_>, mut planned: Planned, receipt: &mut Receipt, wait: bool) -> Result<Ended, LilyError> {
        let AttemptInput { spec, events, run, cancel, .. } = *input;
        if let Planned::Ready(p) = &planned {
            record_plan(receipt, p);
        }
        // Parallel-run cap, across processes.
        let max = spec.runtime.max_parallel_runs;
        let mut slot = acquire_slot(&self.root, &spec.id, max, false, cancel, &run.run_id).await;
        if slot.as_ref().is_err_and(|e| e.code == ErrorCode::JobBusy) && wait {
            // Say what the run waits for (the progress display shows it).
            events.emit(
                "waiting_for_slot",
                json!({"max_parallel_runs": max, "held_by": slot_holders(&self.root, &spec.id, max)}),
            );
            slot = acquire_slot(&self.root, &spec.id, max, true, cancel, &run.run_id).await;
        }
        let slot = match slot {
            Ok(s) => s,
            // Ctrl-C / SIGTERM while waiting for a slot cancels the run; it
            // is not a policy denial.
            Err(_) if cancel.is_cancelled() => return Ok(Ended::Cancelled),
            Err(e) => return Ok(Ended::Refused(PlanError::new(ErrorCode::JobBusy, &e, false))),
        };
        if let Some(d) = receipt.policy.decisions.as_mut() {
            d.push(Decision {
                subject: "runtime.max_parallel_runs".into(),
                decision: Verdict::Allowed,
                reason: format!("slot {} of {}", slot.1 + 1, spec.runtime.max_parallel_runs),
            });
        }
        write_receipt(run, receipt, events)?;

        let max_attempts = spec.runtime.retry_max + 1;
        let mut backoff = Backoff::new(spec.runtime.retry_backoff_seconds);
        let mut last: Option<(ErrorCode, String, Value)> = None;
        let mut success = None;
        let mut cancelled = false;
        for n in 1..=max_attempts {
            let att_start = Utc::now();
            events.emit("job_attempt_started", json!({"attempt": n}));
            let outcome = self.attempt(input, &mut planned, receipt).await;
            match outcome {
                AttemptOutcome::Cancelled => {
                    cancelled = true;
                    receipt.attempts.push(Attempt {
                        n,
                        status: AttemptStatus::Cancelled,
                        started_at: rfc3339(att_start),
                        ended_at: rfc3339(Utc::now()),
                        error_code: None,
                        message: Some("cancelled".into()),
                        retryable: false,
                        will_retry: false,
                    });
                    break;
                }
                AttemptOutcome::Succeeded(out, proposals) => {
                    receipt.attempts.push(Attempt {
                        n,
                        status: AttemptStatus::Succeeded,
                        started_at: rfc3339(att_start),
                        ended_at: rfc3339(Utc::now()),
                        error_code: None,
                        message: None,
                        retryable: false,
                        will_retry: false,
                    });
                    events.emit("job_attempt_succeeded", json!({"attempt": n}));
                    success = Some((out, proposals));
                    break;
                }
                AttemptOutcome::Failed { error, cause, retryable } => {
                    let will_retry = retryable && n < max_attempts;
                    last = Some(attempt_failed(
                        events,
                        receipt,
                        AttemptEnd {
                            n,
                            start: att_start,
                            error: &error,
                            cause,
                            retryable,
                            will_retry,
                        },
                    ));
                    if !will_retry {
                        break;
                    }
                    if backoff.wait(cancel).await {
                        cancelled = true;
                        break;
                    }
                }
            }
        }
        drop(slot);
        Ok(if cancelled {
            Ended::Cancelled
        } else {
            match success {
                Some((out, proposals)) => Ended::Succeeded(out, proposals),
                None => Ended::Failed(last),
            }
        })
    }

    /// 6: persist what the attempts ended with.
    fn persist(&self, input: &AttemptInput<'_>, mut receipt: Receipt, ended: Ended) -> Result<RunResult, LilyError> {
        let AttemptInput {
            spec,
            policy,
            events,
            run,
            extra,
            verify,
            ..
        } = *input;
        let (success, last) = match ended {
            Ended::Refused(pe) => return self.finish_without_attempt(run, events, receipt, spec, pe, verify),
            Ended::Cancelled => {
                receipt.status = RunStatus::Cancelled;
                receipt.error = Some(ReceiptError {
                    code: ErrorCode::JobExecutionFailed,
                    message: if runs::cancel_requested(&run.path) {
                        "run cancelled (lily jobs cancel)".into()
                    } else {
                        "run cancelled".into()
                    },
                    cause: json!({"kind": "cancelled"}),
                    first_event_seq: None,
                });
                events.emit("job_cancelled", json!({}));
                return self.finalize(run, events, receipt, spec, verify);
            }
            Ended::Succeeded(out, proposals) => (Some((out, proposals)), None),
            Ended::Failed(last) => (None, last),
        };
        match success {
            Some((out, proposals)) => {
                let offered: Vec<(String, String, Vec<u8>)> = out.artifacts.clone();
                let wanted = spec.output.artifacts.clone();
                for (name, media, bytes) in offered {
                    if wanted.as_ref().is_some_and(|w| !w.contains(&name)) {
                        continue;
                    }
                    if matches!(
                        name.as_str(),
                        runs::RECEIPT | runs::EVENTS | runs::SUMMARY_MD | runs::SUMMARY_JSON | runs::SPEC_SNAPSHOT | runs::TAPES
                    ) {
                        continue;
                    }
                    let rec = run.write_file(&name, &media, &bytes).map_err(|e| io_failed(run, e))?;
                    receipt.artifacts.push(rec);
                }
                receipt.payload = out.payload;
                receipt.references = out.references;
                receipt.approvals_requested = crate::policy::approvals::record_proposals(
                    &crate::policy::approvals::ProposingRun {
                        root: &self.root,
                        run_dir: &run.path,
                        job_id: &spec.id,
                        run_id: &run.run_id,
                        policy,
                        events: &**events,
                        never_apply: extra.no_auto_effects,
                    },
                    &proposals,
                    spec.output.publish.as_ref(),
                );
                receipt.status = match out.status {
                    crate::sandbox::EnvelopeStatus::Ok => RunStatus::Succeeded,
                    crate::sandbox::EnvelopeStatus::Partial => RunStatus::Partial,
                };
                events.emit(
                    "job_completed",
                    json!({"status": out.status, "artifacts": receipt.artifacts.iter().map(|a| &a.name).collect::<Vec<_>>()}),
                );
            }
            None => {
                let (code, message, cause) = last.unwrap_or((ErrorCode::JobExecutionFailed, "no attempt ran".into(), Value::Null));
                receipt.status = RunStatus::Failed;
                receipt.error = Some(ReceiptError {
                    code,
                    message: message.clone(),
                    cause: cause.clone(),
                    first_event_seq: events.first_error_seq(),
                });
                events.emit("job_failed", json!({"error_code": code.as_str(), "message": message, "cause": cause}));
            }
        }
        self.finalize(run, events, receipt, spec, verify)
    }

    /// One attempt: (re-)plan if needed, then execute under the attempt
    /// timeout, racing cancellation.
    async fn attempt(&self, input: &AttemptInput<'_>, planned: &mut Planned, receipt: &mut Receipt) -> AttemptOutcome {
        let AttemptInput {
            spec,
            policy,
            events,
            run,
            cancel,
            seeds,
            extra,
            ..
        } = *input;
        // A plan that failed to compile is retried like an execution failure:
        // the first attempt reports the failure planning already met, later
        // ones plan again.
        if let Planned::Retry(first) = planned {
            let result = match first.take() {
                Some(pe) => Err(pe),
                None => self.plan(spec, policy).await,
            };
            match result {
                Ok(p) => {
                    record_plan(receipt, &p);
                    *planned = Planned::Ready(Box::new(p));
                }
                Err(pe) => {
                    return AttemptOutcome::Failed {
                        error: pe.error,
                        cause: pe.cause,
                        retryable: pe.retryable,
                    };
                }
            }
        }
        let Planned::Ready(p) = &*planned else {
            unreachable!("planned above");
        };
        let timeout = Duration::from_secs(spec.runtime.timeout_seconds);
        let mut ctx = ExecCtx::new(
            self.sandbox.clone(),
            events.clone() as Arc<dyn EventSink>,
            p.limits.clone(),
            // Unset, the default (cores) is capped by the policy ceiling.
            spec.runtime.parallelism().min(policy.file.limits.max_parallelism),
            Instant::now() + timeout,
        );
        ctx.seeds = Some(seeds);
        ctx.replay_tapes = extra.replay_tapes.clone();
        ctx.models = Some(Arc::new(RunModels::new(self.llm.clone())));
        let ctx = Arc::new(ctx);
        let exec = p.blueprint.execute(&p.prepared, &spec.target.input, &ctx);
        let result = tokio::select! {
            r = tokio::time::timeout(timeout + Duration::from_millis(500), exec) => Some(r),
            _ = cancel.cancelled() => None,
        };
        if let Ok(steps) = ctx.steps.lock() {
            receipt.steps.extend(steps.iter().cloned());
            let mut total = crate::sandbox::llm::LlmTotals::default();
            for s in receipt.steps.iter().filter_map(|s| s.llm.as_ref()) {
                total.add(s);
            }
            receipt.llm = Some(total).filter(|t| !t.is_zero());
            let mut http = crate::sandbox::http::HttpTotals::default();
            for s in receipt.steps.iter().filter_map(|s| s.http.as_ref()) {
                http.add(s);
            }
            receipt.http = Some(http).filter(|t| !t.is_zero());
        }
        if let Ok(t) = ctx.tapes.lock()
            && let Ok(bytes) = serde_json::to_vec(&*t)
        {
            let _ = run.write_record(runs::TAPES, &bytes);
        }
        match result {
            None => AttemptOutcome::Cancelled,
            Some(Ok(Ok(out))) => AttemptOutcome::Succeeded(out, ctx.proposals.lock().map(|p| p.clone()).unwrap_or_default()),
            Some(Ok(Err(f))) => AttemptOutcome::Failed {
                error: LilyError::new(ErrorCode::JobExecutionFailed, f.message.clone()),
                cause: json!({"code": f.code.as_str(), "message": f.message, "detail": f.cause}),
                retryable: f.retryable,
            },
            Some(Err(_elapsed)) => AttemptOutcome::Failed {
                error: LilyError::new(
                    ErrorCode::JobExecutionFailed,
                    format!("attempt timed out after {} s", spec.runtime.timeout_seconds),
                ),
                cause: json!({"code": "blueprint_execution_failed", "message": "timeout", "detail": {"kind": "timeout", "timeout_seconds": spec.runtime.timeout_seconds}}),
                retryable: true,
            },
        }
    }

    fn finish_without_attempt(
        &self,
        run: &RunDir,
        events: &EventLog,
        mut receipt: Receipt,
        spec: &JobSpec,
        pe: PlanError,
        verify: Option<&super::replay::VerifyAgainst>,
    ) -> Result<RunResult, LilyError> {
        receipt.status = pe.status;
        let kind = match pe.status {
            RunStatus::Denied => "policy_denied",
            RunStatus::SkippedOverlap => "job_skipped_overlap",
            _ => "job_failed",
        };
        events.emit(
            kind,
            json!({"error_code": pe.error.code.as_str(), "message": pe.error.message, "cause": pe.cause, "hint": pe.error.hint}),
        );
        if pe.status == RunStatus::Denied {
            events.emit("job_denied", json!({"error_code": pe.error.code.as_str()}));
        }
        receipt.error = Some(ReceiptError {
            code: pe.error.code,
            message: pe.error.message.clone(),
            cause: json!({"cause": pe.cause, "hint": pe.error.hint, "details": pe.error.details}),
            first_event_seq: events.first_error_seq(),
        });
        self.finalize(run, events, receipt, spec, verify)
    }

    /// 6–7: summary, final receipt.
    fn finalize(
        &self,
        run: &RunDir,
        events: &EventLog,
        mut receipt: Receipt,
        spec: &JobSpec,
        verify: Option<&super::replay::VerifyAgainst>,
    ) -> Result<RunResult, LilyError> {
        receipt.ended_at = Some(rfc3339(Utc::now()));
        // A verified replay: compared with its original before the commit,
        // so the receipt says whether it differs (artifacts are written).
        if let Some(v) = verify {
            let ver = super::replay::verify(&v.original_dir, &v.original, &run.path, &receipt);
            events.emit("replay_verified", serde_json::to_value(&ver).unwrap_or(Value::Null));
            receipt.verify = Some(ver);
        }
        // Decisions operators made while the run was going show in the summary too.
        events.locked(|w| w.merge_decisions(&mut receipt)).map_err(|e| io_failed(run, e))?;
        let (name, media, text) = match spec.output.summary_format {
            SummaryFormat::Markdown => (
                runs::SUMMARY_MD,
                "text/markdown",
                super::summary::markdown(
                    &receipt,
                    spec.bindings.get("max_findings").and_then(Value::as_u64).or_else(|| {
                        // The council's default cap when the binding is unset.
                        receipt
                            .payload
                            .get("ranked_findings")
                            .map(|_| u64::from(crate::blueprints::council::DEFAULT_MAX_FINDINGS))
                    }),
                ),
            ),
            SummaryFormat::Json => (runs::SUMMARY_JSON, "application/json", super::summary::json(&receipt)),
        };
        let rec: ArtifactRecord = run.write_file(name, media, text.as_bytes()).map_err(|e| io_failed(run, e))?;
        receipt.artifacts.push(rec);
        run.commit_receipt(&mut receipt, events).map_err(|e| io_failed(run, e))?;
        if let Err(e) = runs::append_index(&self.root.runs_dir(), &receipt) {
            tracing::warn!(error = %e, "could not update the run index; listings fall back to receipts");
        }
        Ok(RunResult {
            run_dir: run.path.clone(),
            receipt,
            summary: text,
        })
    }
}

/// A digest of everything [`Lily::plan`] reads of a spec: the target (kind,
/// id, version requirement, input), the bindings, the runtime and the
/// output. Two specs with one key plan alike under one policy and one state
/// of the root (installed runnables, bound directories), whatever their id,
/// title, trigger or retention — the scheduler plans each key once per batch
/// of newly loaded jobs. A change to what `plan` reads must change this.
pub fn plan_key(spec: &JobSpec) -> [u8; 32] {
    use sha2::Digest;
    let parts = (&spec.target, &spec.bindings, &spec.runtime, &spec.output);
    let bytes = serde_json::to_vec(&parts).unwrap_or_default();
    sha2::Sha256::digest(&bytes).into()
}

/// How the attempts of a run ended.
enum Ended {
    /// Refused before any attempt (the run slot).
    Refused(PlanError),
    Cancelled,
    Succeeded(crate::blueprints::BlueprintOutput, Vec<(String, String, crate::sandbox::Proposal)>),
    /// The last attempt's code, message and cause.
    Failed(Option<(ErrorCode, String, Value)>),
}

/// Record a failed attempt in the receipt and the events.
fn attempt_failed(events: &EventLog, receipt: &mut Receipt, end: AttemptEnd<'_>) -> (ErrorCode, String, Value) {
    let AttemptEnd {
        n,
        start,
        error: err,
        cause,
        retryable,
        will_retry,
    } = end;
    receipt.attempts.push(Attempt {
        n,
        status: AttemptStatus::Failed,
        started_at: rfc3339(start),
        ended_at: rfc3339(Utc::now()),
        error_code: Some(err.code),
        message: Some(err.message.clone()),
        retryable,
        will_retry,
    });
    events.emit(
        "job_attempt_failed",
        json!({"attempt": n, "error_code": err.code.as_str(), "message": err.message, "cause": cause, "retryable": retryable, "will_retry": will_retry}),
    );
    (err.code, err.message.clone(), cause)
}

fn record_plan(receipt: &mut Receipt, p: &Plan) {
    receipt.target.version = Some(p.blueprint.meta.version.to_string());
    receipt.policy = PolicyRecord {
        decisions: Some(p.decisions.clone()),
        limits: Some(p.limits.clone()),
        grants: Some(p.prepared.grants.iter().map(|(node, g)| (node.clone(), g.redacted())).collect()),
    };
    receipt.components = p
        .nodes()
        .map(|(n, l)| ComponentRecord {
            node: n.id.clone(),
            runnable: n.runnable.clone(),
            version: l.descriptor.version.clone(),
            digest: l.digest.clone(),
        })
        .collect();
}

fn io_failed(run: &RunDir, e: std::io::Error) -> LilyError {
    LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot write to {}: {e}", run.path.display()))
}

fn write_receipt(run: &RunDir, r: &mut Receipt, events: &EventLog) -> Result<(), LilyError> {
    run.write_receipt(r, events).map_err(|e| io_failed(run, e))
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sleep for `d`, or return `true` early when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &Cancel) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

/// Where a job's run slots are: `state/locks/<job>/slot-<i>.lock`.
fn slot_path(root: &Root, job_id: &str, i: u32) -> std::path::PathBuf {
    root.state_dir().join("locks").join(job_id).join(format!("slot-{i}.lock"))
}

/// How many of a job's `max` run slots are held (by any process).
pub fn held_slots(root: &Root, job_id: &str, max: u32) -> u32 {
    held_slot_files(root, job_id, max).len() as u32
}

/// The run ids holding a job's run slots (each holder writes its run id
/// into its slot file once it has the lock).
pub fn slot_holders(root: &Root, job_id: &str, max: u32) -> Vec<String> {
    held_slot_files(root, job_id, max)
        .into_iter()
        .map(|mut f| {
            use std::io::Read;
            let mut s = String::new();
            let _ = (&mut f).take(256).read_to_string(&mut s);
            s.trim().to_string()
        })
        .collect()
}

fn held_slot_files(root: &Root, job_id: &str, max: u32) -> Vec<File> {
    let mut held = Vec::new();
    for i in 0..max {
        let Ok(f) = File::options().read(true).write(true).open(slot_path(root, job_id, i)) else {
            continue;
        };
        match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
            }
            Err(std::fs::TryLockError::WouldBlock) => held.push(f),
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    held
}

/// Unresolved runnable ids, with a "did you mean" for each one close to a
/// `known` id.
fn unresolved_error(ids: &[&str], known: &[String]) -> LilyError {
    let guesses: Vec<String> = ids
        .iter()
        .filter_map(|id| crate::text::suggest(id, known.iter().map(String::as_str)).map(|s| format!("`{s}` for `{id}`")))
        .collect();
    let mut hint = String::new();
    if !guesses.is_empty() {
        hint.push_str(&format!("did you mean {}? ", guesses.join(", ")));
    }
    hint.push_str("`lily runnables list` shows the built-in and installed runnables; `lily runnables install <file.wasm>` adds one");
    LilyError::new(ErrorCode::BlueprintCompileFailed, format!("unresolved runnable ids: {}", ids.join(", "))).with_hint(hint)
}

/// Every directory a step binds (a council's `workspace`) exists under the
/// root: a missing one is a bindings mistake, reported before the policy is
/// asked (which would otherwise refuse it with an OS error).
fn check_dirs_exist(root: &Root, graph: &Graph) -> Result<(), LilyError> {
    for node in &graph.nodes {
        for d in &node.dirs {
            let host = root.path.join(&d.path);
            if std::fs::symlink_metadata(&host).is_err() {
                return Err(LilyError::new(
                    ErrorCode::BlueprintBindingsInvalid,
                    format!(
                        "directory {:?} bound for {} does not exist under {}",
                        d.path,
                        node.runnable,
                        root.path.display()
                    ),
                )
                .with_hint(format!("create it, or fix the path in `bindings` (it is relative to {})", root.path.display()))
                .with_details(json!({"path": d.path, "runnable": node.runnable})));
            }
        }
    }
    Ok(())
}

/// Take one of `max` run slots of a job (file locks, so the cap holds
/// across processes). Returns the held lock and its index.
pub async fn acquire_slot(root: &Root, job_id: &str, max: u32, wait: bool, cancel: &Cancel, holder: &str) -> Result<(File, u32), LilyError> {
    let dir = root.state_dir().join("locks").join(job_id);
    crate::util::ensure_dir(&dir).map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("{}: {e}", dir.display())))?;
    loop {
        for i in 0..max {
            let path = slot_path(root, job_id, i);
            let f = crate::util::private_open_options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("{}: {e}", path.display())))?;
            if f.try_lock().is_ok() {
                // Who holds it, for a run that waits (best effort: the lock
                // is what counts).
                use std::io::Write as _;
                let _ = f.set_len(0).and_then(|()| (&f).write_all(holder.as_bytes()));
                return Ok((f, i));
            }
        }
        if !wait {
            return Err(LilyError::new(
                ErrorCode::JobBusy,
                format!("parallel run cap reached: {job_id} already has {max} run(s) in progress (runtime.max_parallel_runs = {max})"),
            )
            .with_hint("wait for the running run to finish, or use `lily jobs run --wait`")
            .with_details(json!({"reason": "parallel_run_cap", "max_parallel_runs": max})));
        }
        if sleep_or_cancel(Duration::from_millis(100), cancel).await {
            return Err(LilyError::new(ErrorCode::JobExecutionFailed, "cancelled while waiting for a parallel-run slot"));
        }
    }
}

/// Model calls are planned like every capability: a component that imports
/// `lily:runnable/llm` runs only where policy grants `llm` (else the run is
/// refused before any step, with the lines to add), and every granted alias
/// should be configured (one that is not is a recorded decision).
fn check_llm(
    graph: &crate::blueprints::Graph,
    loaded: &BTreeMap<String, Arc<crate::sandbox::Loaded>>,
    grants: &mut BTreeMap<String, Grants>,
    lower: Option<&crate::spec::LlmRuntime>,
    config: &crate::config::LlmConfig,
    policy: &Policy,
    decisions: &mut Vec<Decision>,
) -> Result<(), LilyError> {
    for node in &graph.nodes {
        let imports_llm = loaded
            .get(&node.id)
            .is_some_and(|l| l.imports.iter().any(|i| i.starts_with("lily:runnable/llm@")));
        let mut grant = grants.get_mut(&node.id).and_then(|g| g.llm.as_mut());
        if let (Some(g), Some(low)) = (grant.as_deref_mut(), lower) {
            lower_budget(g, low, &node.runnable)?;
        }
        let grant = grant.map(|g| &*g);
        match grant {
            None if imports_llm => {
                let example = config.models.keys().next().map(String::as_str).unwrap_or("reviewer");
                return Err(LilyError::new(
                    ErrorCode::JobPolicyDenied,
                    format!("{} imports lily:runnable/llm, but {} grants it no models", node.runnable, policy.source_name()),
                )
                .with_hint(format!(
                    "add to {}:\nrunnables:\n  \"{}\":\n    llm: {{models: [{example}], max_calls: 20, max_input_tokens: 60000, max_output_tokens: 8000}}",
                    policy.source_name(),
                    node.runnable
                )));
            }
            None => {}
            Some(g) => {
                // An alias granted but not configured is not a refusal: the
                // step runs, its calls to it fail with `model-not-allowed`
                // (a council with `llm_with_fallback` falls back), and the
                // decision says why.
                for missing in g.models.iter().filter(|m| !config.models.contains_key(*m)) {
                    decisions.push(Decision {
                        subject: format!("{}: llm {missing}", node.runnable),
                        decision: Verdict::Denied,
                        reason: format!("granted by policy, but .lily/config.yaml defines no llm.models.{missing}: calls to it will fail"),
                    });
                }
                decisions.push(Decision {
                    subject: format!("{}: llm", node.runnable),
                    decision: Verdict::Granted,
                    reason: format!(
                        "models [{}]; per run under rule {:?}: {} calls, {} input and {} output tokens",
                        g.models.join(", "),
                        g.rule,
                        g.budget.max_calls,
                        g.budget.max_input_tokens,
                        g.budget.max_output_tokens
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Apply a job's `runtime.llm` to a grant: each cap may only go down.
fn lower_budget(g: &mut crate::sandbox::LlmGrant, low: &crate::spec::LlmRuntime, runnable: &str) -> Result<(), LilyError> {
    let b = &mut g.budget;
    let caps: [(&str, Option<u64>, &mut u64); 2] = [
        ("max_input_tokens", low.max_input_tokens, &mut b.max_input_tokens),
        ("max_output_tokens", low.max_output_tokens, &mut b.max_output_tokens),
    ];
    for (name, asked, have) in caps {
        if let Some(asked) = asked {
            if asked > *have {
                return Err(LilyError::new(
                    ErrorCode::JobPolicyDenied,
                    format!("runtime.llm.{name} = {asked} exceeds what policy rule {:?} grants {runnable} ({have})", g.rule),
                )
                .with_hint(format!("lower runtime.llm.{name}, or raise runnables.{:?}.llm.{name} in the policy", g.rule)));
            }
            *have = asked;
        }
    }
    if let Some(asked) = low.max_calls {
        if asked > b.max_calls {
            return Err(LilyError::new(
                ErrorCode::JobPolicyDenied,
                format!(
                    "runtime.llm.max_calls = {asked} exceeds what policy rule {:?} grants {runnable} ({})",
                    g.rule, b.max_calls
                ),
            )
            .with_hint(format!(
                "lower runtime.llm.max_calls, or raise runnables.{:?}.llm.max_calls in the policy",
                g.rule
            )));
        }
        b.max_calls = asked;
    }
    Ok(())
}

/// What a spec asks of its blueprint, checked before anything runs: the
/// input must match the blueprint's input schema, and `output.artifacts`
/// may name only artifacts the blueprint produces (when its list is
/// closed: `step.v1` passes on whatever its runnable returns). Both are
/// `job_invalid_spec` — the spec asks for something its target cannot do.
fn check_target_io(blueprint: &Blueprint, spec: &JobSpec) -> Result<(), LilyError> {
    let meta = &blueprint.meta;
    let errors = blueprint.input_errors(&spec.target.input);
    if !errors.is_empty() {
        return Err(LilyError::new(
            ErrorCode::JobInvalidSpec,
            format!("target.input does not match {}'s input schema: {}", meta.id, errors.join("; ")),
        )
        .with_hint(format!("`lily blueprints show {}` prints the input schema", meta.id)));
    }
    if blueprint.kind == crate::blueprints::BlueprintKind::Council
        && let Some(wanted) = &spec.output.artifacts
        && let Some(unknown) = wanted.iter().find(|a| !meta.artifacts.contains(a))
    {
        return Err(LilyError::new(
            ErrorCode::JobInvalidSpec,
            format!(
                "output.artifacts lists {unknown:?}, which {} does not produce (it produces {})",
                meta.id,
                meta.artifacts.join(", ")
            ),
        ));
    }
    Ok(())
}

/// What each node of a graph asks of the policy.
fn step_asks(graph: &Graph) -> Vec<crate::policy::review::StepAsk> {
    graph
        .nodes
        .iter()
        .map(|n| crate::policy::review::StepAsk {
            node: n.id.clone(),
            runnable: n.runnable.clone(),
            dirs: n.dirs.iter().map(|d| (d.path.clone(), d.perms)).collect(),
            env: n.env.clone(),
        })
        .collect()
}

#[cfg(test)]
mod plan_key_tests {
    use super::plan_key;

    fn spec(text: &str) -> crate::spec::JobSpec {
        crate::spec::parse(std::path::Path::new("x.job.yaml"), text).expect("valid spec")
    }

    const BASE: &str = "id: a\ntitle: A\ntarget:\n  kind: blueprint\n  id: step.v1\n  input:\n    message: hi\nbindings:\n  runnable: echo.v1\n\
trigger:\n  type: cron\n  cron: \"0 3 * * *\"\n  timezone: UTC\nruntime:\n  timeout_seconds: 10\noutput:\n  summary_format: json\n";

    /// What planning does not read leaves the key alone; what it reads changes it.
    #[test]
    fn the_plan_key_covers_what_planning_reads_and_nothing_else() {
        let k = plan_key(&spec(BASE));
        for same in [
            BASE.replace("id: a\n", "id: b\n"),
            BASE.replace("title: A", "title: Other"),
            BASE.replace("0 3 * * *", "*/5 * * * *"),
            BASE.replace("timezone: UTC", "timezone: Europe/Berlin"),
        ] {
            assert_eq!(plan_key(&spec(&same)), k, "{same}");
        }
        for differs in [
            BASE.replace("message: hi", "message: ho"),
            BASE.replace("runnable: echo.v1", "runnable: default.v1"),
            BASE.replace("timeout_seconds: 10", "timeout_seconds: 11"),
            BASE.replace("summary_format: json", "summary_format: markdown"),
            BASE.replace("id: step.v1", "id: step.v1\n  version: \"^1\""),
        ] {
            assert_ne!(plan_key(&spec(&differs)), k, "{differs}");
        }
    }
}
