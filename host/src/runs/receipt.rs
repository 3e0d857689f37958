//! `run_receipt.json`: the record of one run.

use crate::util::rfc3339;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Terminal and non-terminal run states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Denied,
    Cancelled,
    /// The process died (no terminal event, no live owner). Derived, never written.
    Interrupted,
    /// A scheduled time that did not run (daemon down, outside the deadline).
    Missed,
    /// A scheduled time skipped because the job was still running.
    SkippedOverlap,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Denied => "denied",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Missed => "missed",
            RunStatus::SkippedOverlap => "skipped_overlap",
        }
    }
}

/// One attempt of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub status: String,
    pub started_at: String,
    pub ended_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub retryable: bool,
    pub will_retry: bool,
}

/// A file of the run directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub media_type: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The error of a failed run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub cause: Value,
    /// `seq` of the event where the first error code appeared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_seq: Option<u64>,
}

/// `run_receipt.json`: the source of truth of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub lily_version: String,
    pub job_id: String,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub trigger: Value,
    pub target: Value,
    pub artifacts: Vec<ArtifactRecord>,
    pub approvals_requested: Vec<Value>,
    pub references: Vec<String>,
    pub payload: Value,
    pub attempts: Vec<Attempt>,
    pub policy: Value,
    pub components: Vec<Value>,
    #[serde(default)]
    pub steps: Vec<Value>,
    pub spec_sha256: String,
    #[serde(default)]
    pub spec_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<crate::sandbox::Seeds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// Components that differed from the replayed run (`--allow-drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Value>,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReceiptError>,
}

impl Receipt {
    /// A receipt for a run that just started.
    pub fn start(job_id: &str, run_id: &str, trigger: Value, spec_sha256: &str, spec_path: &str) -> Receipt {
        Receipt {
            lily_version: crate::VERSION.into(),
            job_id: job_id.into(),
            run_id: run_id.into(),
            status: RunStatus::Running,
            started_at: rfc3339(Utc::now()),
            ended_at: None,
            trigger,
            target: Value::Null,
            artifacts: Vec::new(),
            approvals_requested: Vec::new(),
            references: Vec::new(),
            payload: Value::Null,
            attempts: Vec::new(),
            policy: json!({}),
            components: Vec::new(),
            steps: Vec::new(),
            spec_sha256: spec_sha256.into(),
            spec_path: spec_path.into(),
            seeds: None,
            replay_of: None,
            drift: Vec::new(),
            pid: std::process::id(),
            error: None,
        }
    }
}
