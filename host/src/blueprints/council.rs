//! `council.v1`: a map/reduce council. Every specialist reviews the topic
//! (and, if granted, a read-only workspace at `/workspace`) in its own
//! sandbox instance; a synthesizer ranks their findings.

use super::{
    Blueprint, BlueprintFailure, BlueprintKind, BlueprintMeta, BlueprintOutput, DirRequest, ExecCtx, Graph, Node, Prepared, Role, Settings, schema_errors,
    schema_of, typed_check,
};
use crate::error::{ErrorCode, LilyError};
use crate::sandbox::{EnvelopeStatus, Perms, RunnableKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

pub use lily_contract::council::{
    CouncilOutput, Finding, RankedFinding, Report, ReportStatus, SpecialistInput, SpecialistOutput, SynthInput, WORKSPACE_GUEST_PATH,
};

pub const ID: &str = "council.v1";
pub const VERSION: &str = "1.0.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SynthStrategy {
    /// Rank findings deterministically with a synthesizer of kind `synthesizer`.
    #[default]
    Deterministic,
    /// Use a synthesizer of kind `llm`; its failure fails the run.
    Llm,
    /// Use an `llm` synthesizer, falling back to the deterministic ranking.
    LlmWithFallback,
}

impl SynthStrategy {
    fn as_str(self) -> &'static str {
        match self {
            SynthStrategy::Deterministic => "deterministic",
            SynthStrategy::Llm => "llm",
            SynthStrategy::LlmWithFallback => "llm_with_fallback",
        }
    }
}

/// `max_findings` when the bindings leave it unset.
pub const DEFAULT_MAX_FINDINGS: u32 = 8;

fn default_max_findings() -> u32 {
    DEFAULT_MAX_FINDINGS
}

/// Bindings of `council.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CouncilBindings {
    /// Specialist runnable ids (at least 2, distinct).
    pub specialists: Vec<String>,
    /// Synthesizer runnable id.
    pub synthesizer: String,
    #[serde(default)]
    pub synth_strategy: SynthStrategy,
    /// Ranked findings kept (1-20).
    #[serde(default = "default_max_findings")]
    pub max_findings: u32,
    /// Directory relative to the root, granted read-only to every specialist
    /// at `/workspace` (subject to policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// Input of `council.v1`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CouncilInput {
    /// What the council reviews (non-empty).
    pub topic: String,
    /// Context lines passed to every specialist.
    #[serde(default)]
    pub context: Vec<String>,
}

pub fn blueprint() -> Blueprint {
    Blueprint {
        meta: BlueprintMeta {
            id: ID.into(),
            version: semver::Version::parse(VERSION).expect("version"),
            summary: "Map/reduce council: specialists review a topic (and a read-only workspace), a synthesizer ranks their findings".into(),
            bindings_schema: schema_of::<CouncilBindings>(),
            input_schema: schema_of::<CouncilInput>(),
            output_schema: schema_of::<CouncilOutput>(),
            artifacts: vec!["report.md".into(), "evidence.json".into()],
        },
        kind: BlueprintKind::Council,
    }
}

fn bindings_invalid(msg: impl Into<String>) -> LilyError {
    LilyError::new(ErrorCode::BlueprintBindingsInvalid, msg)
}

/// A bindings parse error that names the binding: serde's type errors
/// (`invalid type: string, expected a sequence`) do not, so the first schema
/// error with a location supplies it (`council.v1 bindings.specialists: …`).
/// An unknown field gets a "did you mean" hint when a known one is close;
/// `details.key` is the binding's key path (for the spec line).
pub(crate) fn bindings_error(blueprint: &str, schema: &Value, bindings: &Value, e: &serde_json::Error) -> LilyError {
    let msg = e.to_string();
    if let Some((field, _)) = crate::text::serde_unknown_field(&msg) {
        let mut err = bindings_invalid(format!("{blueprint} bindings: {msg}")).with_details(serde_json::json!({"key": format!("bindings.{field}")}));
        if let Some(h) = crate::text::unknown_field_hint(&msg) {
            err = err.with_hint(format!("{h} (`lily blueprints show {blueprint}` lists the bindings)"));
        }
        return err;
    }
    let at = jsonschema::validator_for(schema)
        .ok()
        .and_then(|v| v.iter_errors(bindings).map(|err| err.instance_path().to_string()).find(|p| !p.is_empty()));
    match at {
        Some(p) => {
            let key = format!("bindings.{}", p.trim_start_matches('/').replace('/', "."));
            bindings_invalid(format!("{blueprint} {key}: {e}")).with_details(serde_json::json!({ "key": key }))
        }
        None => bindings_invalid(format!("{blueprint} bindings: {e}")),
    }
}

/// Parse and validate bindings.
pub fn parse_bindings(bindings: &Value) -> Result<CouncilBindings, LilyError> {
    let b: CouncilBindings = serde_json::from_value(bindings.clone()).map_err(|e| bindings_error(ID, &schema_of::<CouncilBindings>(), bindings, &e))?;
    if b.specialists.len() < 2 {
        return Err(bindings_invalid(format!(
            "council.v1 needs at least 2 specialists, got {}",
            b.specialists.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &b.specialists {
        if !crate::paths::valid_id(s) {
            return Err(bindings_invalid(format!("specialist id {s:?} is not a valid runnable id")));
        }
        if !seen.insert(s) {
            return Err(bindings_invalid(format!("specialist {s:?} is listed twice; specialists must be distinct")));
        }
    }
    if !crate::paths::valid_id(&b.synthesizer) {
        return Err(bindings_invalid(format!("synthesizer id {:?} is not a valid runnable id", b.synthesizer)));
    }
    if !(1..=20).contains(&b.max_findings) {
        return Err(bindings_invalid(format!("max_findings must be 1-20, got {}", b.max_findings)));
    }
    if let Some(w) = &b.workspace {
        let p = std::path::Path::new(w);
        if w.is_empty() || p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(bindings_invalid(format!("workspace {w:?} must be a path relative to the root, without '..'")));
        }
    }
    Ok(b)
}

/// Compile bindings to the map/reduce graph.
pub fn compile(bindings: &Value) -> Result<Graph, LilyError> {
    let b = parse_bindings(bindings)?;
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let synth_id = format!("reduce:{}", b.synthesizer);
    for s in &b.specialists {
        let id = format!("map:{s}");
        nodes.push(Node {
            id: id.clone(),
            runnable: s.clone(),
            role: Role::Specialist,
            dirs: b
                .workspace
                .iter()
                .map(|w| DirRequest {
                    path: w.clone(),
                    guest: WORKSPACE_GUEST_PATH.into(),
                    perms: Perms::ReadOnly,
                })
                .collect(),
            env: Vec::new(),
        });
        edges.push((id, synth_id.clone()));
    }
    nodes.push(Node {
        id: synth_id.clone(),
        runnable: b.synthesizer.clone(),
        role: Role::Synthesizer,
        dirs: Vec::new(),
        env: Vec::new(),
    });
    if b.synth_strategy == SynthStrategy::LlmWithFallback {
        for s in &b.specialists {
            edges.push((format!("map:{s}"), FALLBACK_NODE.into()));
        }
        edges.push((synth_id, FALLBACK_NODE.into()));
        nodes.push(Node {
            id: FALLBACK_NODE.into(),
            runnable: "default.v1".into(),
            role: Role::Synthesizer,
            dirs: Vec::new(),
            env: Vec::new(),
        });
    }
    Ok(Graph {
        blueprint: ID.into(),
        settings: Settings::Council(b),
        nodes,
        edges,
    })
}

/// Descriptor kinds must match the roles they are bound to.
pub fn check_kinds(prepared: &Prepared) -> Result<(), LilyError> {
    for node in &prepared.graph.nodes {
        let d = &prepared.loaded[&node.id].descriptor;
        if d.id != node.runnable {
            return Err(LilyError::new(
                ErrorCode::BlueprintContractInvalid,
                format!("runnable {:?} describes itself as {:?}", node.runnable, d.id),
            ));
        }
        let ok = match node.role {
            Role::Specialist => d.kind == RunnableKind::Specialist,
            Role::Synthesizer => matches!(d.kind, RunnableKind::Synthesizer | RunnableKind::Llm),
            Role::Step => true,
        };
        if !ok {
            return Err(LilyError::new(
                ErrorCode::BlueprintContractInvalid,
                format!("runnable {} is of kind {}, but is bound as a {:?}", node.runnable, d.kind.as_str(), node.role).to_lowercase(),
            ));
        }
    }
    if let Some(reduce) = prepared.graph.nodes.iter().find(|n| n.id.starts_with("reduce:")) {
        check_strategy(bindings_of(prepared)?, prepared.loaded[&reduce.id].descriptor.kind)?;
    }
    if let Some(fallback) = prepared.loaded.get(FALLBACK_NODE)
        && fallback.descriptor.kind != RunnableKind::Synthesizer
    {
        return Err(LilyError::new(
            ErrorCode::BlueprintCompileFailed,
            "fallback synthesizer default.v1 is not a deterministic synthesizer",
        ));
    }
    Ok(())
}

/// The synthesizer kind a strategy needs (checked at compile/resolve time).
pub fn check_strategy(b: &CouncilBindings, synth_kind: RunnableKind) -> Result<(), LilyError> {
    let needs_llm = matches!(b.synth_strategy, SynthStrategy::Llm | SynthStrategy::LlmWithFallback);
    if needs_llm && synth_kind != RunnableKind::Llm {
        return Err(LilyError::new(
            ErrorCode::BlueprintCompileFailed,
            format!(
                "unresolved llm synthesizer: {} is of kind {}, strategy {} needs kind llm",
                b.synthesizer,
                synth_kind.as_str(),
                b.synth_strategy.as_str()
            ),
        ));
    }
    if !needs_llm && synth_kind != RunnableKind::Synthesizer {
        return Err(LilyError::new(
            ErrorCode::BlueprintCompileFailed,
            format!(
                "unresolved llm synthesizer: {} is of kind {}, strategy deterministic needs kind synthesizer (use synth_strategy llm or llm_with_fallback for an llm synthesizer)",
                b.synthesizer,
                synth_kind.as_str()
            ),
        ));
    }
    Ok(())
}

fn exec_failed(msg: impl Into<String>, cause: Value, retryable: bool) -> BlueprintFailure {
    BlueprintFailure::new(ErrorCode::BlueprintExecutionFailed, msg, cause, retryable)
}

/// Map, then reduce.
pub async fn execute(prepared: &Arc<Prepared>, input: &Value, ctx: &Arc<ExecCtx>) -> Result<BlueprintOutput, BlueprintFailure> {
    let input = match typed_check::<CouncilInput>(input, schema_of::<CouncilInput>) {
        Ok(i) if !i.topic.trim().is_empty() => i,
        Ok(_) => {
            return Err(exec_failed(
                "invalid council input: topic must not be empty",
                json!({"kind": "invalid_input"}),
                false,
            ));
        }
        Err(errors) => {
            return Err(exec_failed(
                format!("invalid council input: {}", errors.join("; ")),
                json!({"kind": "invalid_input", "errors": errors}),
                false,
            ));
        }
    };
    let graph = &prepared.graph;
    let synth_node = graph
        .nodes
        .iter()
        .find(|n| n.role == Role::Synthesizer && n.id.starts_with("reduce:"))
        .cloned()
        .ok_or_else(|| exec_failed("graph has no synthesizer", Value::Null, false))?;
    let specialists: Vec<Node> = graph.nodes.iter().filter(|n| n.role == Role::Specialist).cloned().collect();
    let bindings = bindings_of(prepared).map_err(|e| exec_failed(e.message, Value::Null, false))?;
    let (strategy, max_findings) = (bindings.synth_strategy, bindings.max_findings);

    // Map. Specialists must stop early enough for the reduce to run: a
    // specialist that hits its deadline is contained, so keep a fifth of the
    // attempt's remaining time (at most 30 s) for the synthesizer.
    let remaining = ctx.deadline.saturating_duration_since(std::time::Instant::now());
    let map_deadline = ctx
        .deadline
        .checked_sub((remaining / 5).min(std::time::Duration::from_secs(30)))
        .unwrap_or(ctx.deadline);
    // Each specialist is its own task, so steps spread over the runtime's
    // worker threads (cores), at most `parallelism` at once; dropping the
    // set (cancellation, timeout) aborts them and their stores.
    let sem = Arc::new(tokio::sync::Semaphore::new(ctx.parallelism.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in specialists.iter().enumerate() {
        let has_ws = !node.dirs.is_empty() && prepared.grants.get(&node.id).is_some_and(|g| !g.dirs.is_empty());
        let step_input = to_json(&SpecialistInput {
            topic: input.topic.clone(),
            context: input.context.clone(),
            workspace: has_ws.then(|| WORKSPACE_GUEST_PATH.to_string()),
        })?;
        let (sem, ctx, prepared, node) = (sem.clone(), ctx.clone(), prepared.clone(), node.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let report = ctx.run_step_until(&prepared, &node, step_input, map_deadline).await;
            let retryable = report.outcome.as_ref().err().is_some_and(|c| c.retryable());
            (i, to_report(&node.runnable, report), retryable)
        });
    }
    let mut reports: Vec<(usize, Report, bool)> = Vec::with_capacity(specialists.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => reports.push(r),
            Err(e) => return Err(exec_failed(format!("a specialist task failed: {e}"), Value::Null, true)),
        }
    }
    // Reports keep the bindings order.
    reports.sort_by_key(|(i, _, _)| *i);
    let reports: Vec<(Report, bool)> = reports.into_iter().map(|(_, r, t)| (r, t)).collect();
    // Running again can only help if some specialist failed for a transient cause.
    let any_retryable = reports.iter().any(|(_, r)| *r);
    let reports: Vec<Report> = reports.into_iter().map(|(r, _)| r).collect();

    let failed: Vec<&Report> = reports.iter().filter(|r| r.status != ReportStatus::Ok).collect();
    if failed.len() == reports.len() {
        return Err(exec_failed(
            format!(
                "all {} specialists failed: {}",
                reports.len(),
                failed.iter().map(|r| format!("{} ({})", r.specialist, r.notes)).collect::<Vec<_>>().join("; ")
            ),
            json!({"kind": "all_specialists_failed", "failed_specialists": reports.iter().map(|r| &r.specialist).collect::<Vec<_>>()}),
            any_retryable,
        ));
    }

    // Reduce.
    let synth_input = to_json(&SynthInput {
        topic: input.topic.clone(),
        max_findings,
        reports,
    })?;
    let output = match strategy {
        SynthStrategy::Deterministic => run_synth(prepared, &synth_node, &synth_input, ctx).await.map_err(|e| {
            exec_failed(
                format!("synthesizer {} failed: {}", synth_node.runnable, e.message),
                json!({"kind": "synth_failed", "synth_error": e.cause}),
                e.retryable,
            )
        })?,
        SynthStrategy::Llm => run_synth(prepared, &synth_node, &synth_input, ctx).await.map_err(|e| {
            exec_failed(
                format!("llm synthesizer {} failed: {}", synth_node.runnable, e.message),
                json!({"kind": "synth_failed", "synth_error_code": "llm_synth_failed", "synth_error": e.cause}),
                e.retryable,
            )
        })?,
        SynthStrategy::LlmWithFallback => match run_synth(prepared, &synth_node, &synth_input, ctx).await {
            Ok(o) => o,
            Err(SynthError { message: reason, .. }) => {
                ctx.events.emit("synth_fallback", json!({"synthesizer": synth_node.runnable, "reason": reason}));
                let fallback_node = prepared.graph.node(FALLBACK_NODE).cloned();
                let result = match fallback_node {
                    Some(n) => run_synth(prepared, &n, &synth_input, ctx).await,
                    None => Err(SynthError {
                        message: "no deterministic synthesizer available".into(),
                        cause: Value::Null,
                        retryable: false,
                    }),
                };
                match result {
                    Ok(mut o) => {
                        o.summary = format!("{} [fallback: llm_synth_failed ({reason})]", o.summary);
                        o
                    }
                    Err(e) => {
                        return Err(exec_failed(
                            format!("llm synthesizer failed ({reason}) and the deterministic fallback failed too: {}", e.message),
                            json!({"kind": "synth_failed", "synth_error_code": "llm_synth_fallback_failed", "synth_error": e.cause}),
                            e.retryable,
                        ));
                    }
                }
            }
        },
    };

    let payload = to_json(&output)?;
    // The payload is the host's own `CouncilOutput`, serialized: it matches
    // the schema generated from that type by construction, so the check
    // (a validator compile per run) is kept for debug builds and tests.
    let errors = if cfg!(debug_assertions) {
        schema_errors(&schema_of::<CouncilOutput>(), &payload)
    } else {
        Vec::new()
    };
    if !errors.is_empty() {
        return Err(BlueprintFailure::new(
            ErrorCode::BlueprintContractInvalid,
            format!("council output does not match its schema: {}", errors.join("; ")),
            Value::Null,
            false,
        ));
    }
    let report_md = render_report(&output);
    let evidence = json!({
        "topic": output.topic,
        "findings": output.ranked_findings,
        "reports": output.reports.iter().map(|r| json!({"specialist": r.specialist, "status": r.status, "notes": r.notes, "findings": r.findings})).collect::<Vec<_>>(),
    });
    let evidence_bytes = serde_json::to_vec_pretty(&evidence).unwrap_or_default();
    Ok(BlueprintOutput {
        status: if output.failed_specialists.is_empty() {
            EnvelopeStatus::Ok
        } else {
            EnvelopeStatus::Partial
        },
        references: output.participating_specialists.clone(),
        payload,
        artifacts: vec![
            ("report.md".into(), "text/markdown".into(), report_md.into_bytes()),
            ("evidence.json".into(), "application/json".into(), evidence_bytes),
        ],
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, BlueprintFailure> {
    serde_json::to_value(value).map_err(|e| exec_failed(format!("serialize: {e}"), Value::Null, false))
}

/// Node id of the deterministic fallback synthesizer (added to the graph
/// when the strategy is `llm_with_fallback`).
pub const FALLBACK_NODE: &str = "fallback:default.v1";

/// The bindings [`compile`] parsed into the graph.
fn bindings_of(prepared: &Prepared) -> Result<&CouncilBindings, LilyError> {
    match &prepared.graph.settings {
        Settings::Council(b) => Ok(b),
        Settings::None => Err(LilyError::new(ErrorCode::BlueprintCompileFailed, "the graph was not compiled by council.v1")),
    }
}

fn to_report(specialist: &str, report: crate::sandbox::StepReport) -> Report {
    match report.outcome {
        Ok(env) => match serde_json::from_value::<SpecialistOutput>(env.payload) {
            // The specialist's own output schema may be looser than the
            // council's: a finding the synthesizer would refuse fails only
            // this specialist, never the whole council.
            Ok(p) if p.findings.iter().any(|f| finding_problem(f).is_some()) => Report {
                specialist: specialist.into(),
                status: ReportStatus::Error,
                findings: vec![],
                notes: format!(
                    "contract_invalid: payload is not a specialist report: {}",
                    p.findings.iter().find_map(finding_problem).unwrap_or_default()
                ),
            },
            Ok(p) => Report {
                specialist: specialist.into(),
                status: ReportStatus::Ok,
                findings: p.findings,
                notes: p.notes,
            },
            Err(e) => Report {
                specialist: specialist.into(),
                status: ReportStatus::Error,
                findings: vec![],
                notes: format!("contract_invalid: payload is not a specialist report: {e}"),
            },
        },
        Err(cause) => Report {
            specialist: specialist.into(),
            status: ReportStatus::Error,
            findings: vec![],
            notes: cause_notes(&cause),
        },
    }
}

/// `<kind>: <message>` for a failed specialist, without saying the kind
/// twice (`trap: trap: …`, `contract_invalid: contract invalid: …`).
fn cause_notes(cause: &crate::sandbox::Cause) -> String {
    let message = cause.message();
    let spoken = format!("{}: ", cause.kind().replace('_', " "));
    format!("{}: {}", cause.kind(), message.strip_prefix(&spoken).unwrap_or(&message))
}

/// Why a finding breaks the council's finding schema (title non-empty,
/// confidence a number in 0-1), if it does.
fn finding_problem(f: &Finding) -> Option<String> {
    if f.title.is_empty() {
        return Some("a finding has an empty title".into());
    }
    if !(0.0..=1.0).contains(&f.confidence) {
        return Some(format!("finding {:?} has confidence {}, outside 0-1", f.title, f.confidence));
    }
    None
}

/// Why a synthesizer step failed, and whether running again could help.
struct SynthError {
    message: String,
    cause: Value,
    retryable: bool,
}

async fn run_synth(prepared: &Prepared, node: &Node, input: &Value, ctx: &ExecCtx) -> Result<CouncilOutput, SynthError> {
    let report = ctx.run_step(prepared, node, input.clone()).await;
    let contract = |message: String| SynthError {
        message,
        cause: json!({"kind": "contract_invalid"}),
        retryable: false,
    };
    match report.outcome {
        Ok(env) => typed_check::<CouncilOutput>(&env.payload, schema_of::<CouncilOutput>)
            .map_err(|errors| contract(format!("output does not match the council output schema: {}", errors.join("; ")))),
        Err(cause) => Err(SynthError {
            message: cause.message(),
            retryable: cause.retryable(),
            cause: serde_json::to_value(&cause).unwrap_or(Value::Null),
        }),
    }
}

/// `report.md`: ranked findings table, a section per specialist, failures.
/// Every string in it came from a runnable or the job's input: each is
/// escaped as inert Markdown text ([`crate::text::markdown`]).
pub fn render_report(o: &CouncilOutput) -> String {
    use crate::text::markdown as md;
    let mut s = format!("# Council report: {}\n\n{}\n\n## Ranked findings\n\n", md(&o.topic), md(&o.summary));
    if o.ranked_findings.is_empty() {
        s.push_str("No findings.\n");
    } else {
        s.push_str("| # | Finding | Specialist | Confidence | Recommendation |\n|---|---|---|---|---|\n");
        for (i, f) in o.ranked_findings.iter().enumerate() {
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} | {} |\n",
                i + 1,
                md(&f.title),
                md(&f.source_specialist),
                f.confidence,
                md(&f.recommendation)
            ));
        }
    }
    s.push_str("\n## Specialists\n");
    for r in &o.reports {
        s.push_str(&format!("\n### {} ({})\n\n", md(&r.specialist), r.status.as_str()));
        if r.status == ReportStatus::Ok {
            if r.findings.is_empty() {
                s.push_str("No findings.\n");
            }
            for f in &r.findings {
                s.push_str(&format!("- **{}** ({:.2}): {}\n", md(&f.title), f.confidence, md(&f.recommendation)));
                for e in f.evidence.iter().take(10) {
                    s.push_str(&format!("  - {}\n", crate::text::markdown_code(e)));
                }
                if f.evidence.len() > 10 {
                    s.push_str(&format!("  - … {} more in evidence.json\n", f.evidence.len() - 10));
                }
            }
        }
        s.push_str(&format!("\nNotes: {}\n", md(&r.notes)));
    }
    if !o.failed_specialists.is_empty() {
        s.push_str("\n## Failed specialists\n\n");
        for r in o.reports.iter().filter(|r| r.status != ReportStatus::Ok) {
            s.push_str(&format!("- {}: {}\n", md(&r.specialist), md(&r.notes)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: Value) -> Result<CouncilBindings, LilyError> {
        parse_bindings(&v)
    }

    #[test]
    fn bindings_rules() {
        let ok = b(json!({"specialists": ["a", "b"], "synthesizer": "s"})).expect("ok");
        assert_eq!(ok.max_findings, 8);
        assert_eq!(ok.synth_strategy, SynthStrategy::Deterministic);
        for bad in [
            json!({"specialists": ["a"], "synthesizer": "s"}),
            json!({"specialists": ["a", "a"], "synthesizer": "s"}),
            json!({"specialists": ["a", "b"]}),
            json!({"specialists": ["a", "b"], "synthesizer": "s", "max_findings": 0}),
            json!({"specialists": ["a", "b"], "synthesizer": "s", "max_findings": 21}),
            json!({"specialists": ["a", "b"], "synthesizer": "s", "synth_strategy": "magic"}),
            json!({"specialists": ["a", "b"], "synthesizer": "s", "workspace": "../up"}),
            json!({"specialists": ["a", "b"], "synthesizer": "s", "workspace": "/abs"}),
            json!({"specialists": ["a", "b"], "synthesizer": "s", "extra": 1}),
        ] {
            assert_eq!(b(bad.clone()).expect_err("bad").code, ErrorCode::BlueprintBindingsInvalid, "{bad}");
        }
    }

    #[test]
    fn compile_is_deterministic_map_reduce() {
        let v = json!({"specialists": ["security.v1", "operations.v1"], "synthesizer": "default.v1", "workspace": "ws"});
        let g1 = compile(&v).expect("compile");
        let g2 = compile(&v).expect("compile");
        assert_eq!(g1, g2);
        assert_eq!(g1.nodes.len(), 3);
        assert_eq!(
            g1.edges,
            vec![
                ("map:security.v1".into(), "reduce:default.v1".into()),
                ("map:operations.v1".into(), "reduce:default.v1".into())
            ]
        );
        assert_eq!(g1.nodes[0].dirs[0].guest, "/workspace");
    }

    #[test]
    fn schemas_are_object_schemas() {
        let m = blueprint().meta;
        for s in [m.bindings_schema, m.input_schema, m.output_schema] {
            assert_eq!(s["type"], "object");
        }
    }
}
