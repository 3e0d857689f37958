//! `run_receipt.json`: the record of one run.

use crate::error::ErrorCode;
use crate::sandbox::Cause;
use crate::util::rfc3339;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Terminal and non-terminal run states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// It completed, but not all of it: some step failed and the blueprint
    /// went on without it (a council with a failed specialist).
    Partial,
    Failed,
    Denied,
    Cancelled,
    /// The process died (no terminal event, no live owner). Derived, never written.
    Interrupted,
    /// A scheduled time that did not run (daemon down, outside the deadline).
    Missed,
    /// A scheduled time skipped because the job was still running.
    SkippedOverlap,
    /// A scheduled time another process (pod) had already claimed in the
    /// run store (a duplicate Kubernetes Job, the second pass of a DST
    /// fall-back hour): not run again.
    DuplicateSkipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Denied => "denied",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Missed => "missed",
            RunStatus::SkippedOverlap => "skipped_overlap",
            RunStatus::DuplicateSkipped => "duplicate_skipped",
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
    Cancelled,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Cancelled => "cancelled",
        }
    }
}

/// One attempt of a run.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    pub n: u32,
    pub status: AttemptStatus,
    pub started_at: String,
    pub ended_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub retryable: bool,
    pub will_retry: bool,
}

/// A file of the run directory.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArtifactRecord {
    pub name: String,
    pub media_type: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The error of a failed run.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReceiptError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default)]
    pub cause: Value,
    /// `seq` of the event where the first error code appeared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_seq: Option<u64>,
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerRecord {
    Manual,
    Cron {
        /// The scheduled instant (RFC 3339, UTC).
        scheduled_for: String,
        /// The same instant in the job's zone.
        #[serde(default)]
        scheduled_for_local: String,
        #[serde(default)]
        timezone: String,
    },
    Replay {
        replay_of: String,
    },
    /// A tool call of an MCP client (`lily mcp serve`).
    Mcp {
        /// The client's name and version, as it introduced itself.
        client: String,
        /// The server's id of the client's session.
        session: String,
        /// The tool that was called.
        tool: String,
    },
    /// A run killed before its first receipt: what started it is not known.
    Unknown,
}

impl TriggerRecord {
    /// `manual`, `cron`, `replay`, `mcp` or `unknown`.
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerRecord::Manual => "manual",
            TriggerRecord::Cron { .. } => "cron",
            TriggerRecord::Replay { .. } => "replay",
            TriggerRecord::Mcp { .. } => "mcp",
            TriggerRecord::Unknown => "unknown",
        }
    }

    /// The scheduled instant of a cron run.
    pub fn scheduled_for(&self) -> Option<&str> {
        match self {
            TriggerRecord::Cron { scheduled_for, .. } => Some(scheduled_for),
            _ => None,
        }
    }
}

/// What a run targets: the spec's target, and the version it resolved to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetRecord {
    pub kind: String,
    pub id: String,
    /// The spec's semver requirement (`null` when it names none).
    #[serde(default)]
    pub requirement: Option<String>,
    /// The job's input (absent from `missed` / `skipped_overlap` records).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
    /// The blueprint version the run resolved to (once planned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What the policy did about one subject.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A capability (directory, env var, network name) is given to a step.
    Granted,
    /// A requested value is within the policy's ceiling.
    Allowed,
    /// The policy supplied a value the job left unset (e.g. its fuel ceiling).
    Applied,
    /// The request was refused.
    Denied,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Granted => "granted",
            Verdict::Allowed => "allowed",
            Verdict::Applied => "applied",
            Verdict::Denied => "denied",
        }
    }
}

/// One policy decision (receipts, `lily policy explain`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Decision {
    pub subject: String,
    pub decision: Verdict,
    pub reason: String,
}

/// What the policy decided for a run: its decisions, the limits of its
/// steps and the grants of each node (env values redacted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Vec<Decision>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<crate::sandbox::Limits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<BTreeMap<String, Value>>,
}

/// The component that ran a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ComponentRecord {
    pub node: String,
    pub runnable: String,
    pub version: String,
    pub digest: String,
}

/// What every step of a run recorded: `outcome` is `ok` or the kind of
/// its [`Cause`].
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepRecord {
    pub node: String,
    pub runnable: String,
    pub digest: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    pub duration_ms: u64,
    pub fuel_used: u64,
    /// Model calls and tokens of the step (absent: it made none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::sandbox::llm::LlmTotals>,
    /// HTTP requests and body bytes of the step (absent: it made none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::sandbox::http::HttpTotals>,
    /// In a replay: host calls that differed from the recorded tape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replay_misses: Vec<String>,
    /// Files the step opened for reading through its grants (path as the
    /// guest saw it, size, sha256): what a replay checks the workspace against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<crate::sandbox::FileRead>,
}

/// The outcome of `lily jobs replay --verify`, recorded in the replay's
/// receipt (and its `replay_verified` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verification {
    pub identical: bool,
    /// Per compared item: name, original sha256, replay sha256, identical.
    pub compared: Vec<Value>,
    /// The first differing field or artifact, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<String>,
    /// Files the original run read whose content is not what it was
    /// (checked before the outputs: the likely reason they differ).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspace_changes: Vec<WorkspaceChange>,
}

/// A file a step of the original run read that the replay found changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkspaceChange {
    pub node: String,
    /// The path as the guest saw it.
    pub path: String,
    /// sha256 when the original read it (`None`: not hashed).
    pub original: Option<String>,
    /// sha256 when the replay read it (`None`: not read, or not hashed).
    pub replay: Option<String>,
    pub original_size: u64,
    /// `None`: the replay did not read the file.
    pub replay_size: Option<u64>,
}

impl WorkspaceChange {
    /// `src/main.py (sha256:ab… → sha256:cd…)`, or what is known.
    pub fn describe(&self) -> String {
        let what = match (&self.original, &self.replay, self.replay_size) {
            (_, _, None) => "read by the original run, not by the replay".to_string(),
            (Some(a), Some(b), _) => format!("{a} → {b}"),
            (_, _, Some(n)) => format!("{} → {n} bytes", self.original_size),
        };
        format!("{} ({what})", self.path)
    }
}

/// A component that differed from the replayed run (`--allow-drift`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DriftRecord {
    pub node: String,
    pub runnable: String,
    pub recorded: String,
    /// The digest that runs now (`null`: the runnable is gone).
    pub current: Option<String>,
}

/// State of an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Applied,
    Denied,
    Expired,
    Failed,
    /// A `send` / `publish` reached its destination.
    Delivered,
    /// Approved, but the destination could not be reached (retryable).
    DeliveryFailed,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Applied => "applied",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Failed => "failed",
            ApprovalState::Delivered => "delivered",
            ApprovalState::DeliveryFailed => "delivery_failed",
        }
    }
}

/// An approval request a run made, as its receipt lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalRecord {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub state: ApprovalState,
    pub sha256: String,
    pub bytes: u64,
    pub runnable: String,
    pub reason: String,
}

/// The shape version new receipts are written with (`receipt_version`).
/// Bumped when a field changes meaning or is removed; added optional
/// fields keep it.
pub const RECEIPT_VERSION: u32 = 1;

/// `run_receipt.json`: the source of truth of a run.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Receipt {
    /// The receipt's shape version ([`RECEIPT_VERSION`]); absent in
    /// receipts written before it existed (Lily 0.1.0: read as version 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_version: Option<u32>,
    pub lily_version: String,
    pub job_id: String,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub trigger: TriggerRecord,
    pub target: TargetRecord,
    pub artifacts: Vec<ArtifactRecord>,
    pub approvals_requested: Vec<ApprovalRecord>,
    pub references: Vec<String>,
    pub payload: Value,
    pub attempts: Vec<Attempt>,
    pub policy: PolicyRecord,
    pub components: Vec<ComponentRecord>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// Model calls and tokens of the whole run (absent: none were made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::sandbox::llm::LlmTotals>,
    /// HTTP requests of the whole run (absent: none were made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::sandbox::http::HttpTotals>,
    pub spec_sha256: String,
    #[serde(default)]
    pub spec_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<crate::sandbox::Seeds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// Components that differed from the replayed run (`--allow-drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftRecord>,
    /// `lily jobs replay --verify`: how this replay compares with its original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verification>,
    pub pid: u32,
    /// Where the run ran: the host name, and in a Kubernetes pod its pod and
    /// node (from `LILY_POD_NAME` / `LILY_NODE_NAME`, which `lily export
    /// k8s` sets through the downward API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReceiptError>,
}

/// The machine (and pod) a run ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunnerRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl RunnerRecord {
    /// This process's host, pod and node (each only when known).
    pub fn current() -> Option<RunnerRecord> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty() && v.len() <= 253);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.len() <= 253)
            .or_else(|| var("HOSTNAME"));
        let r = RunnerRecord {
            hostname,
            pod: var("LILY_POD_NAME"),
            node: var("LILY_NODE_NAME"),
        };
        (r.hostname.is_some() || r.pod.is_some() || r.node.is_some()).then_some(r)
    }
}

impl Receipt {
    /// A receipt for a run that just started.
    pub fn start(job_id: &str, run_id: &str, trigger: TriggerRecord, spec_sha256: &str, spec_path: &str) -> Receipt {
        Receipt {
            receipt_version: Some(RECEIPT_VERSION),
            lily_version: crate::VERSION.into(),
            job_id: job_id.into(),
            run_id: run_id.into(),
            status: RunStatus::Running,
            started_at: rfc3339(Utc::now()),
            ended_at: None,
            trigger,
            target: TargetRecord::default(),
            artifacts: Vec::new(),
            approvals_requested: Vec::new(),
            references: Vec::new(),
            payload: Value::Null,
            attempts: Vec::new(),
            policy: PolicyRecord::default(),
            components: Vec::new(),
            steps: Vec::new(),
            llm: None,
            http: None,
            spec_sha256: spec_sha256.into(),
            spec_path: spec_path.into(),
            seeds: None,
            replay_of: None,
            drift: Vec::new(),
            verify: None,
            pid: std::process::id(),
            runner: RunnerRecord::current(),
            error: None,
        }
    }
}
