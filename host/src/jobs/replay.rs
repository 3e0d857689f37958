//! Deterministic replay: re-run exactly what ran before — the recorded spec
//! snapshot, the same component digests, the same seeds and clock reads —
//! and say whether the result is the same.

use super::executor::{Lily, RunOptions, RunResult, TriggerInfo};
use crate::error::{ErrorCode, LilyError};
use crate::runs::{self, DriftRecord, Receipt};
use crate::sandbox::{ClockTape, Sandbox};
use crate::spec::{self, SpecFile};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `lily jobs replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Run even when a component's digest differs from the recorded one.
    pub allow_drift: bool,
}

pub use crate::runs::{Verification, WorkspaceChange};

/// What `--verify` compares a replay with: the original run. Handed to the
/// executor so the result is part of the replay's receipt and events.
#[derive(Debug, Clone)]
pub struct VerifyAgainst {
    pub original_dir: PathBuf,
    pub original: Receipt,
}

fn not_found(run_id: &str, root: &Path) -> LilyError {
    LilyError::new(ErrorCode::JobNotFound, format!("no run {run_id} under {}", root.display())).with_hint("`lily jobs runs <job>` lists run ids")
}

/// Replay run `run_id` as a new run with `replay_of` set.
pub async fn replay(lily: &Lily, run_id: &str, opts: ReplayOptions, run_opts: RunOptions) -> Result<(RunResult, Receipt), LilyError> {
    replay_with(lily, run_id, opts, false, run_opts).await
}

/// [`replay`], and with `verify` compare it with the original before its
/// receipt is committed (the result is in the receipt's `verify` and a
/// `replay_verified` event).
pub async fn replay_with(lily: &Lily, run_id: &str, opts: ReplayOptions, verify: bool, run_opts: RunOptions) -> Result<(RunResult, Receipt), LilyError> {
    let runs = lily.root.runs_dir();
    let dir = runs::find_run(&runs, run_id).ok_or_else(|| not_found(run_id, &runs))?;
    let original = runs::read_receipt(&dir).ok_or_else(|| LilyError::new(ErrorCode::JobInvalidSpec, format!("{}: receipt unreadable", dir.display())))?;
    let snapshot = dir.join(runs::SPEC_SNAPSHOT);
    let raw = std::fs::read_to_string(&snapshot).map_err(|e| {
        LilyError::new(
            ErrorCode::JobInvalidSpec,
            format!("{}: the run has no spec snapshot to replay: {e}", snapshot.display()),
        )
    })?;
    let spec = spec::parse(&snapshot, &raw);
    let spec_file = SpecFile {
        path: snapshot.clone(),
        sha256: Some(crate::util::sha256(raw.as_bytes())),
        raw: Some(raw),
        spec,
    };
    spec_file.spec.clone()?;

    // Components: each recorded digest runs again — the current component
    // when it has that digest, else the kept copy of it (installed
    // components are kept by content); drift only when neither exists.
    let mut drift = Vec::new();
    let mut pins = BTreeMap::new();
    for c in &original.components {
        let current = lily.runnables.bytes(&c.runnable).map(|(b, _)| Sandbox::digest(&b));
        if current.as_deref() != Some(c.digest.as_str()) && lily.runnables.bytes_by_digest(&c.digest).is_some() {
            pins.insert(c.runnable.clone(), c.digest.clone());
        } else if current.as_deref() != Some(c.digest.as_str()) {
            drift.push(DriftRecord {
                node: c.node.clone(),
                runnable: c.runnable.clone(),
                recorded: c.digest.clone(),
                current,
            });
        }
    }
    if !drift.is_empty() && !opts.allow_drift {
        let lines: Vec<String> = drift
            .iter()
            .map(|d| format!("{}: recorded {} now {}", d.runnable, d.recorded, d.current.as_deref().unwrap_or("(missing)")))
            .collect();
        return Err(LilyError::new(
            ErrorCode::JobTargetUnresolved,
            format!("replay refused: components changed since run {run_id}: {}", lines.join("; ")),
        )
        .with_hint("pass --allow-drift to replay with the current components (the drift is recorded in the receipt)")
        .with_details(json!({"drift": drift})));
    }

    let tapes: BTreeMap<String, ClockTape> = std::fs::read(dir.join(runs::TAPES))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let run_opts = RunOptions {
        trigger: TriggerInfo::Replay { of: original.run_id.clone() },
        spec_override: Some(spec_file),
        seeds: original.seeds,
        replay_tapes: tapes,
        no_auto_effects: true,
        drift,
        verify_against: verify.then(|| VerifyAgainst {
            original_dir: dir.clone(),
            original: original.clone(),
        }),
        ..run_opts
    };
    let result = if pins.is_empty() {
        lily.run_job(&original.job_id, run_opts).await?
    } else {
        lily.with_runnables(lily.runnables.pinned(pins)).run_job(&original.job_id, run_opts).await?
    };
    Ok((result, original))
}

/// Compare a replay with its original: payload and every target artifact
/// (sha256 each). The summary is excluded (it names the run).
pub fn verify(original_dir: &Path, original: &Receipt, replay_dir: &Path, replay: &Receipt) -> Verification {
    let mut compared = Vec::new();
    // Changed inputs first: a workspace file that is not what the original
    // read explains every difference after it.
    let workspace_changes = workspace_changes(original, replay);
    let mut first = workspace_changes.first().map(|c| format!("workspace changed: {}", c.describe()));
    // A host call the tape did not hold is the next: the step and call it
    // names are where the replay left the recorded run.
    if first.is_none() {
        first = replay
            .steps
            .iter()
            .find_map(|s| s.replay_misses.first().map(|m| format!("step {} ({}): host call {m}", s.node, s.runnable)));
    }
    let h = |v: &Value| crate::util::sha256(v.to_string().as_bytes());
    let (a, b) = (h(&original.payload), h(&replay.payload));
    if a != b && first.is_none() {
        first = Some(format!(
            "payload{}",
            first_json_difference(&original.payload, &replay.payload, String::new()).unwrap_or_default()
        ));
    }
    compared.push(json!({"name": "payload", "original": a, "replay": b, "identical": a == b}));
    let skip = [runs::SUMMARY_MD, runs::SUMMARY_JSON];
    let names: std::collections::BTreeSet<&str> = original
        .artifacts
        .iter()
        .chain(replay.artifacts.iter())
        .map(|x| x.name.as_str())
        .filter(|n| !skip.contains(n))
        .collect();
    for name in names {
        let a = std::fs::read(original_dir.join(name)).ok().map(|b| crate::util::sha256(&b));
        let b = std::fs::read(replay_dir.join(name)).ok().map(|b| crate::util::sha256(&b));
        let same = a.is_some() && a == b;
        if !same && first.is_none() {
            first = Some(format!("artifact {name}"));
        }
        compared.push(json!({"name": name, "original": a, "replay": b, "identical": same}));
    }
    if original.status != replay.status && first.is_none() {
        first = Some(format!("status ({} vs {})", original.status.as_str(), replay.status.as_str()));
    }
    Verification {
        identical: first.is_none(),
        compared,
        first_difference: first,
        workspace_changes,
    }
}

/// Files a step of the original read whose recorded sha256 differs from
/// what the same step of the replay read (or that it did not read).
pub fn workspace_changes(original: &Receipt, replay: &Receipt) -> Vec<WorkspaceChange> {
    let mut out = Vec::new();
    for step in &original.steps {
        let again = replay.steps.iter().find(|s| s.node == step.node);
        for r in &step.reads {
            let now = again.and_then(|s| s.reads.iter().find(|x| x.path == r.path));
            let changed = match now {
                None => true,
                Some(x) => match (&r.sha256, &x.sha256) {
                    (Some(a), Some(b)) => a != b,
                    // Not hashed (over the step's budget): sizes only.
                    _ => r.size != x.size,
                },
            };
            if changed {
                out.push(WorkspaceChange {
                    node: step.node.clone(),
                    path: r.path.clone(),
                    original: r.sha256.clone(),
                    replay: now.and_then(|x| x.sha256.clone()),
                    original_size: r.size,
                    replay_size: now.map(|x| x.size),
                });
            }
        }
    }
    out
}

/// JSON path of the first difference between two values (`.a[2].b`).
pub fn first_json_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_json_difference(u, v, p) {
                            return Some(d);
                        }
                    }
                    _ => return Some(p),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (u, v)) in x.iter().zip(y.iter()).enumerate() {
                if let Some(d) = first_json_difference(u, v, format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            if x.len() != y.len() {
                Some(format!("{path}[{}]", x.len().min(y.len())))
            } else {
                None
            }
        }
        _ if a == b => None,
        _ => Some(if path.is_empty() { ".".into() } else { path }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_paths() {
        let a = json!({"x": [1, {"y": 2}], "z": 1});
        assert_eq!(first_json_difference(&a, &a, String::new()), None);
        assert_eq!(
            first_json_difference(&a, &json!({"x": [1, {"y": 3}], "z": 1}), String::new()).as_deref(),
            Some(".x[1].y")
        );
        assert_eq!(first_json_difference(&a, &json!({"x": [1], "z": 1}), String::new()).as_deref(), Some(".x[1]"));
        assert_eq!(first_json_difference(&a, &json!({"x": [1, {"y": 2}]}), String::new()).as_deref(), Some(".z"));
    }
}
