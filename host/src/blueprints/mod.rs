//! Blueprints: code-defined recipes that compile typed bindings into an
//! execution graph of runnables, then drive it through the sandbox.

pub mod council;
pub mod graph;
pub mod step;

pub use graph::{DirRequest, Graph, Node, Role, Settings};

use crate::error::{ErrorCode, LilyError};
use crate::runs::EventSink;
use crate::sandbox::{ClockTape, EnvelopeStatus, Grants, Limits, Loaded, Proposal, Sandbox, Seeds, StepReport, StepRequest, TapedCall};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Static description of a blueprint.
#[derive(Debug, Clone, Serialize)]
pub struct BlueprintMeta {
    pub id: String,
    pub version: semver::Version,
    pub summary: String,
    pub bindings_schema: Value,
    pub input_schema: Value,
    pub output_schema: Value,
    /// Target-specific artifacts it can write.
    pub artifacts: Vec<String>,
}

/// The blueprints Lily knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlueprintKind {
    Council,
    Step,
}

#[derive(Debug, Clone)]
pub struct Blueprint {
    pub meta: BlueprintMeta,
    pub kind: BlueprintKind,
}

impl Blueprint {
    /// Validate bindings and compile them into a graph. Deterministic and
    /// side-effect free.
    pub fn compile(&self, bindings: &Value) -> Result<Graph, LilyError> {
        match self.kind {
            BlueprintKind::Council => council::compile(bindings),
            BlueprintKind::Step => step::compile(bindings),
        }
    }

    /// Run a prepared graph.
    pub async fn execute(&self, prepared: &Arc<Prepared>, input: &Value, ctx: &Arc<ExecCtx>) -> Result<BlueprintOutput, BlueprintFailure> {
        match self.kind {
            BlueprintKind::Council => council::execute(prepared, input, ctx).await,
            BlueprintKind::Step => step::execute(prepared, input, ctx).await,
        }
    }

    /// `target.input` against the blueprint's input schema, as a list of
    /// messages ([`typed_check`] of its input type).
    pub fn input_errors(&self, input: &Value) -> Vec<String> {
        let schema = || self.meta.input_schema.clone();
        let checked = match self.kind {
            BlueprintKind::Council => typed_check::<council::CouncilInput>(input, schema).map(drop),
            BlueprintKind::Step => typed_check::<step::StepInput>(input, schema).map(drop),
        };
        checked.err().unwrap_or_default()
    }

    /// Check the role/kind of every resolved runnable.
    pub fn check_kinds(&self, prepared: &Prepared) -> Result<(), LilyError> {
        match self.kind {
            BlueprintKind::Council => council::check_kinds(prepared),
            BlueprintKind::Step => Ok(()),
        }
    }
}

/// The registry of blueprints, admitted once at start-up.
pub struct Registry {
    blueprints: Vec<Blueprint>,
}

impl Registry {
    /// The built-in blueprints.
    pub fn builtin() -> Registry {
        let mut r = Registry { blueprints: Vec::new() };
        for b in [council::blueprint(), step::blueprint()] {
            r.admit(b).expect("built-in blueprints are valid");
        }
        r
    }

    /// Admit a blueprint: blank id/version/summary or a schema that is not an
    /// object schema is `blueprint_contract_invalid`; a duplicate id+version
    /// is refused too.
    pub fn admit(&mut self, b: Blueprint) -> Result<(), LilyError> {
        let m = &b.meta;
        let bad = |msg: String| Err(LilyError::new(ErrorCode::BlueprintContractInvalid, msg));
        if m.id.trim().is_empty() || m.summary.trim().is_empty() {
            return bad(format!("blueprint {:?}: id and summary must not be blank", m.id));
        }
        if m.version == semver::Version::new(0, 0, 0) {
            return bad(format!("blueprint {}: version must be set", m.id));
        }
        for (what, s) in [("bindings", &m.bindings_schema), ("input", &m.input_schema), ("output", &m.output_schema)] {
            if s.get("type").and_then(Value::as_str) != Some("object") {
                return bad(format!("blueprint {}: {what} schema must be an object schema", m.id));
            }
        }
        if self.blueprints.iter().any(|x| x.meta.id == m.id && x.meta.version == m.version) {
            return bad(format!("blueprint {}@{} is already registered", m.id, m.version));
        }
        self.blueprints.push(b);
        Ok(())
    }

    pub fn list(&self) -> &[Blueprint] {
        &self.blueprints
    }

    /// Look up by id and optional semver requirement: the highest matching
    /// version, else `blueprint_not_found` (with the available versions).
    pub fn resolve(&self, id: &str, req: Option<&str>) -> Result<&Blueprint, LilyError> {
        let candidates: Vec<&Blueprint> = self.blueprints.iter().filter(|b| b.meta.id == id).collect();
        if candidates.is_empty() {
            let mut known: Vec<&str> = self.blueprints.iter().map(|b| b.meta.id.as_str()).collect();
            known.dedup();
            let e = LilyError::new(ErrorCode::BlueprintNotFound, format!("no blueprint {id:?}; known: {}", known.join(", ")));
            return Err(match crate::text::suggest(id, known.iter().copied()) {
                Some(s) => e.with_hint(format!("did you mean `{s}`? (`lily blueprints list` lists them)")),
                None => e.with_hint("`lily blueprints list` lists the blueprints"),
            });
        }
        let req = match req {
            Some(r) => semver::VersionReq::parse(r).map_err(|e| LilyError::new(ErrorCode::BlueprintNotFound, format!("bad version requirement {r:?}: {e}")))?,
            None => semver::VersionReq::STAR,
        };
        candidates
            .iter()
            .filter(|b| req.matches(&b.meta.version))
            .max_by(|a, b| a.meta.version.cmp(&b.meta.version))
            .copied()
            .ok_or_else(|| {
                let versions: Vec<String> = candidates.iter().map(|b| b.meta.version.to_string()).collect();
                LilyError::new(
                    ErrorCode::BlueprintNotFound,
                    format!("blueprint {id} has no version matching {req}; available: {}", versions.join(", ")),
                )
            })
    }
}

/// A graph whose runnables are resolved and loaded.
pub struct Prepared {
    pub graph: Graph,
    /// The bindings the graph was compiled from.
    pub bindings: Value,
    /// Node id → loaded component.
    pub loaded: BTreeMap<String, Arc<Loaded>>,
    /// Node id → grants decided by policy.
    pub grants: BTreeMap<String, Grants>,
}

/// What a blueprint run produced.
#[derive(Debug, Clone)]
pub struct BlueprintOutput {
    pub status: EnvelopeStatus,
    pub payload: Value,
    pub artifacts: Vec<(String, String, Vec<u8>)>,
    pub references: Vec<String>,
}

/// A blueprint-level failure: its code, message and structured cause.
#[derive(Debug, Clone)]
pub struct BlueprintFailure {
    pub code: ErrorCode,
    pub message: String,
    pub cause: Value,
    pub retryable: bool,
}

impl BlueprintFailure {
    pub fn new(code: ErrorCode, message: impl Into<String>, cause: Value, retryable: bool) -> Self {
        BlueprintFailure {
            code,
            message: message.into(),
            cause,
            retryable,
        }
    }
}

pub use crate::runs::StepRecord;

/// Everything a blueprint needs to run steps.
pub struct ExecCtx {
    pub sandbox: Arc<Sandbox>,
    pub events: Arc<dyn EventSink>,
    pub limits: Limits,
    pub parallelism: usize,
    /// The attempt's deadline: steps get at most the time left.
    pub deadline: Instant,
    pub seeds: Option<Seeds>,
    pub steps: Mutex<Vec<StepRecord>>,
    pub proposals: Mutex<Vec<(String, String, Proposal)>>,
    /// Clock reads to feed back per node (replay).
    pub replay_tapes: BTreeMap<String, ClockTape>,
    /// Clock reads recorded per node.
    pub tapes: Mutex<BTreeMap<String, ClockTape>>,
    /// The run's model budgets (steps whose grants include `llm`).
    pub models: Option<Arc<crate::llm::RunModels>>,
}

impl ExecCtx {
    /// A context with no seeds, no replay and empty records.
    pub fn new(sandbox: Arc<Sandbox>, events: Arc<dyn EventSink>, limits: Limits, parallelism: usize, deadline: Instant) -> ExecCtx {
        ExecCtx {
            sandbox,
            events,
            limits,
            parallelism,
            deadline,
            seeds: None,
            steps: Mutex::new(Vec::new()),
            proposals: Mutex::new(Vec::new()),
            replay_tapes: BTreeMap::new(),
            tapes: Mutex::new(BTreeMap::new()),
            models: None,
        }
    }
}

/// A per-node seed: the run's seed mixed with the node id (FNV-1a), so
/// concurrent steps get fixed seeds whatever order they run in.
pub fn node_seeds(run: Seeds, node: &str) -> Seeds {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Seeds {
        wall_clock_start_ns: run.wall_clock_start_ns,
        random_seed: run.random_seed ^ h,
    }
}

impl ExecCtx {
    /// Run one node of the graph and record it.
    pub async fn run_step(&self, prepared: &Prepared, node: &Node, input: Value) -> StepReport {
        self.run_step_until(prepared, node, input, self.deadline).await
    }

    /// [`ExecCtx::run_step`] with an earlier deadline than the attempt's (a
    /// blueprint keeps time for the steps that must run after this one).
    pub async fn run_step_until(&self, prepared: &Prepared, node: &Node, input: Value, deadline: Instant) -> StepReport {
        let loaded = &prepared.loaded[&node.id];
        let grants = prepared.grants.get(&node.id).cloned().unwrap_or_default();
        let grants_llm = grants.llm.clone();
        let remaining = deadline.min(self.deadline).saturating_duration_since(Instant::now());
        let limits = Limits {
            deadline: self.limits.deadline.min(remaining),
            ..self.limits.clone()
        };
        self.events
            .emit("step_started", json!({"node": node.id, "runnable": node.runnable, "digest": loaded.digest}));
        let report = self
            .sandbox
            .run(
                loaded,
                StepRequest {
                    input,
                    grants,
                    limits,
                    seeds: self.seeds.map(|s| node_seeds(s, &node.id)),
                    replay_tape: self.replay_tapes.get(&node.id).cloned(),
                    models: grants_llm.and_then(|g| self.models.as_ref().map(|m| m.for_step(&g))),
                },
            )
            .await;
        if let Ok(mut t) = self.tapes.lock() {
            t.insert(node.id.clone(), report.tape.clone());
        }
        for e in &report.events {
            self.events
                .emit("guest_event", json!({"node": node.id, "level": e.level, "kind": e.kind, "fields": e.fields}));
        }
        if report.events_dropped > 0 {
            self.events
                .emit("guest_events_dropped", json!({"node": node.id, "dropped": report.events_dropped}));
        }
        for d in &report.denied_connections {
            self.events.emit(
                "capability_denied",
                json!({"node": node.id, "runnable": node.runnable, "capability": "network", "target": d}),
            );
        }
        for d in &report.denied_http {
            let hint = d
                .grant
                .as_ref()
                .map(|g| format!("to allow it, add {g:?} under runnables.{:?}.http in .lily/policy.yaml", node.runnable));
            self.events.emit(
                "capability_denied",
                json!({
                    "node": node.id, "runnable": node.runnable, "capability": "http",
                    "method": d.method, "target": d.url, "reason": d.reason, "hint": hint,
                }),
            );
        }
        if !report.stderr.is_empty() || !report.stdout.is_empty() {
            self.events.emit(
                "guest_output",
                json!({"node": node.id, "stdout": report.stdout, "stderr": report.stderr, "truncated": report.stdio_truncated}),
            );
        }
        // A step that fails after its model budget ran out ended because of
        // the budget, whatever the guest made of the refusal.
        let budget_ended = report
            .tape
            .calls
            .iter()
            .rev()
            .find_map(|c| match c {
                TapedCall::Llm(c) => Some(c),
                _ => None,
            })
            .is_some_and(|c| matches!(c.outcome, Err(crate::sandbox::llm::LlmError::BudgetExhausted { .. })));
        let (outcome, cause) = match &report.outcome {
            Ok(_) => ("ok".to_string(), None),
            Err(c) if budget_ended => ("llm_budget_exhausted".to_string(), Some(c.clone())),
            Err(c) => (c.kind().to_string(), Some(c.clone())),
        };
        for c in &report.tape.calls {
            match c {
                TapedCall::Llm(c) => self.events.emit(
                    "llm_call",
                    json!({
                        "node": node.id, "call_id": c.call_id, "model": c.request.model, "request_hash": c.request_hash,
                        "latency_ms": c.latency_ms, "usage": c.usage(),
                        "error": c.outcome.as_ref().err().map(|e| e.to_string()),
                    }),
                ),
                TapedCall::Http(c) => self.events.emit(
                    "http_call",
                    json!({
                        "node": node.id, "call_id": c.call_id, "method": c.request.method,
                        "url": c.request.url, "request_hash": c.request_hash,
                        "latency_ms": c.latency_ms, "status": c.outcome.as_ref().ok().map(|r| r.status),
                        "response_bytes": c.outcome.as_ref().ok().map(|r| r.body_bytes),
                        "error": c.outcome.as_ref().err().map(|f| format!("{}: {}", f.code, f.message)),
                    }),
                ),
            }
        }
        self.events.emit(
            "step_finished",
            json!({
                "node": node.id, "runnable": node.runnable, "duration_ms": report.duration.as_millis() as u64,
                "fuel_used": report.fuel_used, "outcome": outcome,
                "cause": cause.as_ref().map(|c| c.message()), "files_read": report.reads.len(),
            }),
        );
        if let Ok(mut p) = self.proposals.lock() {
            for pr in &report.proposals {
                p.push((node.id.clone(), node.runnable.clone(), pr.clone()));
            }
        }
        if let Ok(mut s) = self.steps.lock() {
            s.push(StepRecord {
                node: node.id.clone(),
                runnable: node.runnable.clone(),
                digest: loaded.digest.clone(),
                outcome,
                cause,
                duration_ms: report.duration.as_millis() as u64,
                fuel_used: report.fuel_used,
                llm: Some(crate::sandbox::llm::LlmTotals::of(&report.tape.calls)).filter(|t| !t.is_zero()),
                http: Some(crate::sandbox::http::HttpTotals::of(&report.tape.calls)).filter(|t| !t.is_zero()),
                replay_misses: report.replay_misses.clone(),
                reads: report.reads.clone(),
            });
        }
        report
    }
}

/// A value of one of a blueprint's own types, checked against the schema
/// generated from that type (`schema`): parsed first — a value the type
/// accepts matches its schema, so the usual case compiles no validator (a
/// compile costs ~0.1 ms, and the first one in a process ~3 ms more for the
/// meta-schema). When it does not parse: the schema's messages (as
/// [`schema_errors`]), or the parser's if the schema finds nothing.
pub fn typed_check<T: serde::de::DeserializeOwned>(value: &Value, schema: impl FnOnce() -> Value) -> Result<T, Vec<String>> {
    T::deserialize(value).map_err(|e| {
        let errors = schema_errors(&schema(), value);
        if errors.is_empty() { vec![e.to_string()] } else { errors }
    })
}

/// Validate a JSON value against a schema, as a list of messages.
pub fn schema_errors(schema: &Value, value: &Value) -> Vec<String> {
    match jsonschema::validator_for(schema) {
        Ok(v) => v.iter_errors(value).take(10).map(|e| format!("{} (at '{}')", e, e.instance_path())).collect(),
        Err(e) => vec![format!("schema does not compile: {e}")],
    }
}

/// A schemars-generated schema as JSON.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_input_check_agrees_with_the_schema() {
        let r = Registry::builtin();
        let inputs = [
            json!({"topic": "t"}),
            json!({"topic": "t", "context": ["a", "b"]}),
            json!({"topic": ""}),
            json!({"topic": 3}),
            json!({"topic": "t", "context": null}),
            json!({"topic": "t", "context": [1]}),
            json!({"topic": "t", "extra": true}),
            json!({"context": []}),
            json!({}),
            json!([]),
            json!("topic"),
            json!(null),
            json!({"message": "hello", "n": 1}),
        ];
        for id in ["council.v1", "step.v1"] {
            let b = r.resolve(id, None).expect("built in");
            for input in &inputs {
                let typed = b.input_errors(input);
                let schema = schema_errors(&b.meta.input_schema, input);
                assert_eq!(typed.is_empty(), schema.is_empty(), "{id} {input}: typed {typed:?}, schema {schema:?}");
                if !schema.is_empty() {
                    assert_eq!(typed, schema, "{id} {input}: the schema's own messages");
                }
            }
        }
    }

    #[test]
    fn registry_resolves_by_id_and_version() {
        let r = Registry::builtin();
        assert_eq!(r.resolve("council.v1", None).expect("found").meta.id, "council.v1");
        assert_eq!(r.resolve("council.v1", Some("^1.0")).expect("found").meta.version.major, 1);
        let e = r.resolve("council.v1", Some("2")).expect_err("mismatch");
        assert_eq!(e.code, ErrorCode::BlueprintNotFound);
        assert!(e.message.contains("available: 1."), "{}", e.message);
        assert_eq!(r.resolve("nope", None).expect_err("missing").code, ErrorCode::BlueprintNotFound);
    }

    #[test]
    fn registry_admission_rejects_bad_contracts_and_duplicates() {
        let mut r = Registry::builtin();
        let good = council::blueprint();
        assert_eq!(r.admit(good.clone()).expect_err("dup").code, ErrorCode::BlueprintContractInvalid);
        let mut blank = good.clone();
        blank.meta.summary = " ".into();
        blank.meta.version = semver::Version::new(9, 0, 0);
        assert_eq!(r.admit(blank).expect_err("blank").code, ErrorCode::BlueprintContractInvalid);
        let mut not_obj = good;
        not_obj.meta.version = semver::Version::new(9, 0, 1);
        not_obj.meta.input_schema = json!({"type": "string"});
        assert_eq!(r.admit(not_obj).expect_err("schema").code, ErrorCode::BlueprintContractInvalid);
    }

    #[test]
    fn builtin_ids_are_unique() {
        let r = Registry::builtin();
        let mut ids: Vec<String> = r.list().iter().map(|b| format!("{}@{}", b.meta.id, b.meta.version)).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
