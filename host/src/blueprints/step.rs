//! `step.v1`: run one runnable with the job's input as its input. The
//! simplest blueprint: useful for single-purpose jobs and for testing
//! runnables with exactly the grants policy allows.

use super::{
    Blueprint, BlueprintFailure, BlueprintKind, BlueprintMeta, BlueprintOutput, DirRequest, ExecCtx, Graph, Node, Prepared, Role, Settings, schema_of,
};
use crate::error::{ErrorCode, LilyError};
use crate::sandbox::{Cause, Perms};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const ID: &str = "step.v1";

/// Bindings of `step.v1`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBindings {
    /// Runnable id.
    pub runnable: String,
    /// Directory (relative to the root) granted read-only at `/workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Directory (relative to the root) granted read-write at `/state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Env var names passed from the host environment (subject to policy).
    #[serde(default)]
    pub env: Vec<String>,
}

/// Input: any JSON object, passed to the runnable as is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StepInput {
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

/// Output: the runnable's payload under `result`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StepOutput {
    pub runnable: String,
    pub result: Value,
}

pub fn blueprint() -> Blueprint {
    Blueprint {
        meta: BlueprintMeta {
            id: ID.into(),
            version: semver::Version::new(1, 0, 0),
            summary: "Run one runnable with the job's input".into(),
            bindings_schema: schema_of::<StepBindings>(),
            input_schema: schema_of::<StepInput>(),
            output_schema: schema_of::<StepOutput>(),
            artifacts: vec!["result.json".into()],
        },
        kind: BlueprintKind::Step,
    }
}

fn check_rel(what: &str, p: &str) -> Result<(), LilyError> {
    if p.is_empty() || crate::paths::check_relative(p).is_err() {
        return Err(LilyError::new(
            ErrorCode::BlueprintBindingsInvalid,
            format!("{what} {p:?} must be a path relative to the root, without '..'"),
        ));
    }
    Ok(())
}

pub fn compile(bindings: &Value) -> Result<Graph, LilyError> {
    let b: StepBindings =
        serde_json::from_value(bindings.clone()).map_err(|e| super::council::bindings_error(ID, &schema_of::<StepBindings>(), bindings, &e))?;
    if !crate::paths::valid_id(&b.runnable) {
        return Err(LilyError::new(
            ErrorCode::BlueprintBindingsInvalid,
            format!("runnable id {:?} is not valid", b.runnable),
        ));
    }
    let mut dirs = Vec::new();
    if let Some(w) = &b.workspace {
        check_rel("workspace", w)?;
        dirs.push(DirRequest {
            path: w.clone(),
            guest: "/workspace".into(),
            perms: Perms::ReadOnly,
        });
    }
    if let Some(s) = &b.state_dir {
        check_rel("state_dir", s)?;
        dirs.push(DirRequest {
            path: s.clone(),
            guest: "/state".into(),
            perms: Perms::ReadWrite,
        });
    }
    Ok(Graph {
        blueprint: ID.into(),
        settings: Settings::None,
        nodes: vec![Node {
            id: format!("step:{}", b.runnable),
            runnable: b.runnable,
            role: Role::Step,
            dirs,
            env: b.env,
        }],
        edges: Vec::new(),
    })
}

pub async fn execute(prepared: &Prepared, input: &Value, ctx: &ExecCtx) -> Result<BlueprintOutput, BlueprintFailure> {
    let node = &prepared.graph.nodes[0];
    let report = ctx.run_step(prepared, node, input.clone()).await;
    match report.outcome {
        Ok(env) => {
            let mut artifacts: Vec<(String, String, Vec<u8>)> = env.artifacts.into_iter().map(|a| (a.name, a.media_type, a.bytes)).collect();
            artifacts.push((
                "result.json".into(),
                "application/json".into(),
                serde_json::to_vec_pretty(&env.payload).unwrap_or_default(),
            ));
            Ok(BlueprintOutput {
                status: env.status,
                payload: json!({"runnable": node.runnable, "result": env.payload}),
                artifacts,
                references: env.references,
            })
        }
        Err(cause) => {
            let code = match cause {
                Cause::ContractInvalid { .. } => ErrorCode::BlueprintContractInvalid,
                _ => ErrorCode::BlueprintExecutionFailed,
            };
            let retryable = cause.retryable();
            Err(BlueprintFailure::new(
                code,
                format!("{} failed: {}", node.runnable, cause.message()),
                serde_json::to_value(&cause).unwrap_or(Value::Null),
                retryable,
            ))
        }
    }
}
