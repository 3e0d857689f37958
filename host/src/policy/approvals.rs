//! Approval requests for proposed effects. A runnable never performs a risky
//! effect: the host records a request (content kept in the run directory,
//! hashed), policy decides, and a write happens only once approved — with
//! cap-std, confined to the root.

use super::{EffectMode, Policy, effects};
use crate::runs::EventSink;
use crate::runs::{self, ApprovalRecord};
use crate::sandbox::{Proposal, ProposedEffect};
use crate::spec::Publish;
use crate::util::{atomic_write, rfc3339, sha256};
use crate::workspace::Root;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// States of a request (the run store's, so receipts name them the same).
pub use crate::runs::ApprovalState as State;

/// `.lily/state/approvals/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub job_id: String,
    pub run_id: String,
    pub runnable: String,
    pub kind: String,
    /// Root-relative path (write_file), destination (publish) or channel (send).
    pub target: String,
    pub sha256: String,
    pub bytes: u64,
    pub reason: String,
    pub created_at: String,
    pub expires_at: String,
    pub state: State,
    /// sha256 of the target file when proposed (`absent` if none).
    pub target_sha256_at_proposal: String,
    /// Identity of the directories leading to the target when proposed
    /// (`device:inode` of each existing one, from the root): approval is
    /// refused if the way to the target changed (a directory swapped or
    /// replaced). Empty in requests written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_parent_at_proposal: String,
    pub decided_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the proposed content is kept.
    pub content_path: PathBuf,
    /// The run's artifact a `publish` delivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// What delivering a `send` / `publish` did (last attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<super::delivery::DeliveryRecord>,
}

impl Request {
    /// The file name a delivery writes or announces: the published
    /// artifact's, or `<id>.txt` for a message.
    pub fn delivery_file_name(&self) -> String {
        match &self.artifact {
            Some(a) => a.rsplit('/').next().unwrap_or(a).to_string(),
            None => format!("{}.txt", self.id),
        }
    }
}

impl Request {
    /// The request as the run's receipt lists it.
    pub fn summary(&self) -> ApprovalRecord {
        ApprovalRecord {
            id: self.id.clone(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            state: self.state,
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            runnable: self.runnable.clone(),
            reason: self.reason.clone(),
        }
    }
}

fn dir(root: &Root) -> PathBuf {
    root.state_dir().join("approvals")
}

/// Read an effect target without following any link (see
/// [`effects::walk_target`]): a target reached through a symbolic link reads
/// as absent, never as the file it points to.
pub fn read_target(root: &Path, rel: &str) -> Option<Vec<u8>> {
    read_walked(&effects::walk_target(root, rel, false).ok()?)
}

/// The bytes of a walked target, if it exists.
fn read_walked(w: &effects::Walked) -> Option<Vec<u8>> {
    if !w.exists {
        return None;
    }
    w.parent.as_ref()?.read(&w.name).ok()
}

/// sha256 of a walked target, or `absent`.
fn walked_hash(w: &effects::Walked) -> String {
    read_walked(w).map_or_else(|| "absent".into(), |b| sha256(&b))
}

/// The run whose proposals are being recorded.
pub struct ProposingRun<'a> {
    pub root: &'a Root,
    pub run_dir: &'a Path,
    pub job_id: &'a str,
    pub run_id: &'a str,
    pub policy: &'a Policy,
    pub events: &'a dyn EventSink,
    /// A replay: an `auto_approve` match only asks for approval.
    pub never_apply: bool,
}

/// Record the proposals of a finished run (and the job's `output.publish`),
/// decide them by policy, apply the auto-approved ones. Returns the
/// `approvals_requested` list.
pub fn record_proposals(run: &ProposingRun<'_>, proposals: &[(String, String, Proposal)], publish: Option<&Publish>) -> Vec<ApprovalRecord> {
    let ProposingRun {
        root,
        run_dir,
        job_id,
        run_id,
        policy,
        events,
        never_apply,
    } = *run;
    let mut out = Vec::new();
    let mut all: Vec<(String, Proposal)> = proposals.iter().map(|(_, r, p)| (r.clone(), p.clone())).collect();
    if let Some(p) = publish {
        all.push((
            "job".into(),
            Proposal {
                id: format!("apr-{}", crate::util::random_hex(8)),
                effect: ProposedEffect::Publish {
                    artifact: p.artifact.clone(),
                    to: p.to.clone(),
                },
                reason: "output.publish".into(),
            },
        ));
    }
    if all.is_empty() {
        return out;
    }
    let adir = run_dir.join("approvals");
    let _ = crate::util::ensure_dir(&adir);
    let _ = crate::util::ensure_dir(&dir(root));
    for (runnable, p) in all {
        let (kind, target, content, artifact): (&str, String, Vec<u8>, Option<String>) = match &p.effect {
            ProposedEffect::WriteFile { path, contents } => ("write_file", path.clone(), contents.clone(), None),
            ProposedEffect::Publish { artifact, to } => ("publish", to.clone(), read_artifact(run_dir, artifact), Some(artifact.clone())),
            ProposedEffect::Send { channel, message } => ("send", channel.clone(), message.clone().into_bytes(), None),
        };
        let content_path = adir.join(format!("{}.bin", p.id));
        let _ = atomic_write(&content_path, &content);
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(policy.approval_ttl()).unwrap_or(chrono::Duration::days(7));
        // A write_file target is walked without following links; the policy's
        // globs then match the path that would really be written (no link is
        // ever followed, so it is the lexical path).
        let walked = (kind == "write_file").then(|| effects::walk_target(&root.path, &target, false));
        let (mode, why) = if kind == "write_file" && crate::paths::check_relative_file(&target).is_err() {
            (EffectMode::Deny, "target outside the root".to_string())
        } else if let Some(why) = (kind == "write_file").then(|| effects::protected_target(&target)).flatten() {
            (EffectMode::Deny, why)
        } else if let Some(Err(e)) = &walked {
            (EffectMode::Deny, format!("target refused: {e}"))
        } else if let Some(a) = artifact.as_deref().filter(|a| !artifact_readable(run_dir, a)) {
            (EffectMode::Deny, format!("publish artifact {a:?} is not a file of this run"))
        } else if kind != "write_file" && !root.config.destinations.contains_key(&target) {
            (
                EffectMode::Deny,
                format!("unknown destination {target:?}: .lily/config.yaml configures no such destination (destinations:)"),
            )
        } else {
            match policy.decide_effect(kind, &target) {
                (EffectMode::AutoApprove, _) if never_apply => (
                    EffectMode::RequireApproval,
                    "replay: effects are never applied automatically; approve afresh".to_string(),
                ),
                other => other,
            }
        };
        let mut req = Request {
            id: p.id.clone(),
            job_id: job_id.into(),
            run_id: run_id.into(),
            runnable,
            kind: kind.into(),
            target: target.clone(),
            sha256: sha256(&content),
            bytes: content.len() as u64,
            reason: p.reason.clone(),
            created_at: rfc3339(now),
            expires_at: rfc3339(now + ttl),
            state: State::Pending,
            target_sha256_at_proposal: match &walked {
                Some(Ok(w)) => walked_hash(w),
                Some(Err(_)) => "absent".into(),
                None => String::new(),
            },
            target_parent_at_proposal: match &walked {
                Some(Ok(w)) => w.identity.clone(),
                _ => String::new(),
            },
            decided_by: why.clone(),
            decided_at: None,
            note: None,
            content_path,
            artifact,
            delivery: None,
        };
        events.emit(
            "approval_requested",
            json!({"approval_id": req.id, "kind": kind, "target": target, "sha256": req.sha256, "bytes": req.bytes, "runnable": req.runnable}),
        );
        match mode {
            EffectMode::Deny => {
                req.state = State::Denied;
                req.decided_at = Some(rfc3339(Utc::now()));
                events.emit("approval_denied", json!({"approval_id": req.id, "by": why}));
            }
            EffectMode::AutoApprove => match carry_out(root, &req) {
                Ok(done) => {
                    req.state = done.state;
                    req.decided_at = Some(rfc3339(Utc::now()));
                    req.note = Some(done.message.clone());
                    let kind = match done.state {
                        State::Delivered => "approval_delivered",
                        State::DeliveryFailed => "approval_delivery_failed",
                        _ => "approval_applied",
                    };
                    events.emit(kind, json!({"approval_id": req.id, "by": why, "delivery": done.delivery}));
                    req.delivery = done.delivery;
                }
                Err(e) => {
                    let e = e.to_string();
                    req.state = State::Failed;
                    req.note = Some(e.clone());
                    events.emit("approval_failed", json!({"approval_id": req.id, "error": e}));
                }
            },
            EffectMode::RequireApproval => {}
        }
        let _ = save(root, &req);
        out.push(req.summary());
    }
    out
}

/// Is `name` a plain artifact name of a regular file (not a link) in the
/// run directory? Only such a file is ever read for a `publish`.
fn artifact_readable(run_dir: &Path, name: &str) -> bool {
    crate::sandbox::valid_artifact_name(name) && std::fs::symlink_metadata(run_dir.join(name)).is_ok_and(|m| m.file_type().is_file())
}

/// The bytes a `publish` would deliver, or nothing for a name that is not
/// a run artifact (the request is then denied).
fn read_artifact(run_dir: &Path, name: &str) -> Vec<u8> {
    if artifact_readable(run_dir, name) {
        std::fs::read(run_dir.join(name)).unwrap_or_default()
    } else {
        Vec::new()
    }
}

fn save(root: &Root, r: &Request) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    atomic_write(&dir(root).join(format!("{}.json", r.id)), &bytes)
}

/// Load one request (expired pending ones read as `expired`).
pub fn load(root: &Root, id: &str) -> Option<Request> {
    if !id.starts_with("apr-") || id.contains('/') || id.contains("..") {
        return None;
    }
    let text = std::fs::read(dir(root).join(format!("{id}.json"))).ok()?;
    let mut r: Request = serde_json::from_slice(&text).ok()?;
    if r.state == State::Pending && chrono::DateTime::parse_from_rfc3339(&r.expires_at).is_ok_and(|t| t < Utc::now()) {
        r.state = State::Expired;
    }
    Some(r)
}

/// All requests, oldest first, optionally for one job.
pub fn list(root: &Root, job: Option<&str>) -> Vec<Request> {
    let mut v: Vec<Request> = std::fs::read_dir(dir(root))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
                .filter_map(|id| load(root, &id))
                .collect()
        })
        .unwrap_or_default();
    v.retain(|r| job.is_none_or(|j| r.job_id == j));
    v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    v
}

/// Apply a write_file effect: the protected targets are refused again, the
/// way to the target is walked without following links (creating missing
/// directories), and the bytes are written to a temporary file in the
/// target's own directory and renamed over it through that directory's
/// handle — nothing a later swap of a parent can redirect.
fn carry_out(root: &Root, r: &Request) -> Result<Done, ApprovalError> {
    let content = std::fs::read(&r.content_path).map_err(|e| ApprovalError::Io(format!("proposed content missing: {e}")))?;
    if sha256(&content) != r.sha256 {
        return Err(ApprovalError::Refused("proposed content does not match its recorded sha256".into()));
    }
    match r.kind.as_str() {
        "write_file" => {
            write_confined(root, &r.target, &content)?;
            Ok(Done {
                state: State::Applied,
                message: "approved and applied".into(),
                delivery: None,
            })
        }
        // `send` and `publish` are delivered to their destination; a failed
        // delivery is an outcome (recorded, retryable), not an "applied".
        _ => match super::delivery::deliver(root, &r.target, &r.id, &r.delivery_file_name(), &content) {
            Ok(d) => Ok(Done {
                state: State::Delivered,
                message: match (&d.status, &d.path) {
                    (Some(s), _) => format!("delivered to {} (HTTP {s}, {} attempt(s))", d.destination, d.attempts),
                    (_, Some(p)) => format!("delivered to {} ({p})", d.destination),
                    _ => format!("delivered to {}", d.destination),
                },
                delivery: Some(d),
            }),
            Err(d) => Ok(Done {
                state: State::DeliveryFailed,
                message: format!(
                    "delivery to {} failed after {} attempt(s): {}; `lily approvals retry {}` tries again",
                    d.destination,
                    d.attempts,
                    d.error.as_deref().unwrap_or("unknown"),
                    r.id
                ),
                delivery: Some(d),
            }),
        },
    }
}

/// What carrying out an approved request did.
struct Done {
    state: State,
    message: String,
    delivery: Option<super::delivery::DeliveryRecord>,
}

/// Write `content` to the root-relative `rel`: never a protected target, the
/// way walked without following links (missing directories created), a
/// temporary file in the target's own directory renamed over it through
/// that directory's handle — nothing a later swap of a parent can redirect.
pub(super) fn write_confined(root: &Root, rel: &str, content: &[u8]) -> Result<(), ApprovalError> {
    if let Some(why) = effects::protected_target(rel) {
        return Err(ApprovalError::Refused(why));
    }
    let w = effects::walk_target(&root.path, rel, true).map_err(ApprovalError::Refused)?;
    let dir = w
        .parent
        .ok_or_else(|| ApprovalError::Io(format!("{rel}: its directory could not be created")))?;
    let tmp = format!(".{}.lily-tmp-{}", w.name, crate::util::random_hex(4));
    dir.write(&tmp, content).map_err(|e| ApprovalError::Io(format!("{rel}: {e}")))?;
    dir.rename(&tmp, &dir, &w.name).map_err(|e| {
        let _ = dir.remove_file(&tmp);
        ApprovalError::Io(format!("{rel}: {e}"))
    })?;
    Ok(())
}

/// Why an approval decision was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval request {0}")]
    NotFound(String),
    #[error("approval request {id} is {}, not pending", state.as_str())]
    NotPending { id: String, state: State },
    /// The rules refuse it (target changed, the way to it changed, a link,
    /// a protected target, no destination adapter).
    #[error("{0}")]
    Refused(String),
    /// Writing the effect or the request's record failed.
    #[error("{0}")]
    Io(String),
}

impl ApprovalError {
    /// The stable code of this refusal (the one place it is chosen).
    pub fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            ApprovalError::NotFound(_) => ErrorCode::JobNotFound,
            ApprovalError::NotPending { .. } | ApprovalError::Refused(_) => ErrorCode::JobPolicyDenied,
            ApprovalError::Io(_) => ErrorCode::JobExecutionFailed,
        }
    }
}

/// Outcome of approve/deny.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    pub id: String,
    pub state: State,
    pub message: String,
}

/// Approve a pending request: exactly one application even with two
/// approvers at once (a lock on the request), the recorded bytes only, and
/// refused if the target changed since the proposal unless `force`.
pub fn approve(root: &Root, id: &str, force: bool) -> Result<Decided, ApprovalError> {
    decide(root, id, |req| {
        if req.kind == "write_file" {
            // Never overridable: the way to the target is walked without
            // links, and must be the one recorded at proposal.
            let walked = effects::walk_target(&root.path, &req.target, false).map_err(|e| ApprovalError::Refused(format!("could not apply: {e}")))?;
            // The directories that existed at proposal must be the same ones
            // now; directories created since (by an earlier approval into a
            // new directory, say) extend the chain and are walked like any.
            let (then, now): (Vec<&str>, Vec<&str>) = (req.target_parent_at_proposal.split('/').collect(), walked.identity.split('/').collect());
            if !req.target_parent_at_proposal.is_empty() && !now.starts_with(&then) {
                return Err(ApprovalError::Refused(format!(
                    "the directories leading to {} changed since the proposal (a directory was replaced or moved); deny this request and propose again",
                    req.target
                )));
            }
            if !force {
                let now = walked_hash(&walked);
                if now != req.target_sha256_at_proposal {
                    return Err(ApprovalError::Refused(format!(
                        "{} changed since the proposal ({} → {}); review it and pass --force to overwrite",
                        req.target, req.target_sha256_at_proposal, now
                    )));
                }
            }
        }
        match carry_out(root, req) {
            Ok(done) => Ok(done),
            Err(ApprovalError::Io(e)) => Err(ApprovalError::Io(format!("could not apply: {e}"))),
            Err(ApprovalError::Refused(e)) => Err(ApprovalError::Refused(format!("could not apply: {e}"))),
            Err(e) => Err(e),
        }
    })
}

/// Deliver again a request whose delivery failed (`lily approvals retry`).
/// Only a `delivery_failed` request can be retried, under the request's
/// lock: once delivered, a second retry or approve is refused.
pub fn retry(root: &Root, id: &str) -> Result<Decided, ApprovalError> {
    decide_from(root, id, State::DeliveryFailed, |req| carry_out(root, req))
}

/// Deny a pending request.
pub fn deny(root: &Root, id: &str, reason: Option<&str>) -> Result<Decided, ApprovalError> {
    decide(root, id, |_| {
        Ok(Done {
            state: State::Denied,
            message: reason.map(str::to_string).unwrap_or_else(|| "denied".into()),
            delivery: None,
        })
    })
}

fn decide(root: &Root, id: &str, f: impl FnOnce(&Request) -> Result<Done, ApprovalError>) -> Result<Decided, ApprovalError> {
    decide_from(root, id, State::Pending, f)
}

/// Take a decision on a request in state `from`, under its lock.
fn decide_from(root: &Root, id: &str, from: State, f: impl FnOnce(&Request) -> Result<Done, ApprovalError>) -> Result<Decided, ApprovalError> {
    if load(root, id).is_none() {
        return Err(ApprovalError::NotFound(id.into()));
    }
    let lock_path = dir(root).join(format!("{id}.lock"));
    let lock = crate::util::private_open_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| ApprovalError::Io(format!("{}: {e}", lock_path.display())))?;
    lock.lock().map_err(|e| ApprovalError::Io(format!("{}: {e}", lock_path.display())))?;
    let mut req = load(root, id).ok_or_else(|| ApprovalError::NotFound(id.into()))?;
    if req.state != from {
        return Err(ApprovalError::NotPending {
            id: id.into(),
            state: req.state,
        });
    }
    let Done { state, message, delivery } = f(&req)?;
    if delivery.is_some() {
        req.delivery = delivery;
    }
    req.state = state;
    req.decided_at = Some(rfc3339(Utc::now()));
    req.decided_by = "operator".into();
    req.note = Some(message.clone());
    save(root, &req).map_err(|e| ApprovalError::Io(format!("cannot save the request: {e}")))?;
    // The request file is the decision; the run's record follows it. A run
    // directory that is gone (pruned) cannot record it, which is reported.
    if let Err(e) = record_in_run(root, &req) {
        return Ok(Decided {
            id: id.into(),
            state,
            message: format!("{message} (not recorded in the run: {e})"),
        });
    }
    Ok(Decided { id: id.into(), state, message })
}

/// Record the outcome in the run, through the run store's writer: the
/// event gets the run's next `seq`, the receipt (if written) the new state,
/// and a run still going keeps the decision in every later receipt.
fn record_in_run(root: &Root, req: &Request) -> Result<(), String> {
    let run_dir = root.runs_dir().join(&req.job_id).join(&req.run_id);
    let (kind, state) = match req.state {
        State::Applied => ("approval_applied", State::Applied),
        State::Denied => ("approval_denied", State::Denied),
        State::Failed => ("approval_failed", State::Failed),
        State::Expired => ("approval_updated", State::Expired),
        State::Pending => ("approval_updated", State::Pending),
        State::Delivered => ("approval_delivered", State::Delivered),
        State::DeliveryFailed => ("approval_delivery_failed", State::DeliveryFailed),
    };
    runs::record_operator_decision(&run_dir, &req.run_id, &req.id, kind, state).map_err(|e| format!("{}: {e}", run_dir.display()))
}
