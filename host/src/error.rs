//! The stable error codes. Every failure a user can see ends in exactly one
//! of these codes; their spelling is part of the public contract (tests pin
//! it, `docs/runbook.md` lists it).

use serde::Serialize;
use std::fmt;

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    JobNotFound,
    JobInvalidSpec,
    JobTriggerInvalid,
    JobTargetUnresolved,
    JobBindingsInvalid,
    JobExecutionFailed,
    JobPolicyDenied,
    /// The job already has `runtime.max_parallel_runs` runs in progress.
    JobBusy,
    /// `lily jobs cancel` of a run that is not running (it ended).
    RunNotActive,
    /// `lily runnables remove` of a runnable a job spec references, or of a
    /// built-in one.
    RunnableInUse,
    BlueprintNotFound,
    BlueprintBindingsInvalid,
    BlueprintCompileFailed,
    BlueprintExecutionFailed,
    BlueprintContractInvalid,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::JobNotFound,
        ErrorCode::JobInvalidSpec,
        ErrorCode::JobTriggerInvalid,
        ErrorCode::JobTargetUnresolved,
        ErrorCode::JobBindingsInvalid,
        ErrorCode::JobExecutionFailed,
        ErrorCode::JobPolicyDenied,
        ErrorCode::JobBusy,
        ErrorCode::RunNotActive,
        ErrorCode::RunnableInUse,
        ErrorCode::BlueprintNotFound,
        ErrorCode::BlueprintBindingsInvalid,
        ErrorCode::BlueprintCompileFailed,
        ErrorCode::BlueprintExecutionFailed,
        ErrorCode::BlueprintContractInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::JobNotFound => "job_not_found",
            ErrorCode::JobInvalidSpec => "job_invalid_spec",
            ErrorCode::JobTriggerInvalid => "job_trigger_invalid",
            ErrorCode::JobTargetUnresolved => "job_target_unresolved",
            ErrorCode::JobBindingsInvalid => "job_bindings_invalid",
            ErrorCode::JobExecutionFailed => "job_execution_failed",
            ErrorCode::JobPolicyDenied => "job_policy_denied",
            ErrorCode::JobBusy => "job_busy",
            ErrorCode::RunNotActive => "run_not_active",
            ErrorCode::RunnableInUse => "runnable_in_use",
            ErrorCode::BlueprintNotFound => "blueprint_not_found",
            ErrorCode::BlueprintBindingsInvalid => "blueprint_bindings_invalid",
            ErrorCode::BlueprintCompileFailed => "blueprint_compile_failed",
            ErrorCode::BlueprintExecutionFailed => "blueprint_execution_failed",
            ErrorCode::BlueprintContractInvalid => "blueprint_contract_invalid",
        }
    }

    /// The `lily` process exit status for this code (part of the contract,
    /// listed in `docs/runbook.md`).
    pub fn exit_status(self) -> i32 {
        match self {
            ErrorCode::JobNotFound | ErrorCode::JobInvalidSpec | ErrorCode::JobTriggerInvalid => 10,
            ErrorCode::JobTargetUnresolved | ErrorCode::JobBindingsInvalid => 11,
            ErrorCode::JobPolicyDenied => 12,
            ErrorCode::JobExecutionFailed => 13,
            ErrorCode::JobBusy => 15,
            ErrorCode::RunNotActive => 16,
            ErrorCode::RunnableInUse => 17,
            _ => 14,
        }
    }

    /// Whether a run that failed with this code may succeed when retried.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::JobExecutionFailed | ErrorCode::BlueprintCompileFailed | ErrorCode::BlueprintExecutionFailed
        )
    }
}

/// A code equals its stable name (`ErrorCode::JobNotFound == "job_not_found"`).
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code, a message, an optional actionable hint and
/// structured details.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LilyError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl LilyError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        LilyError {
            code,
            message: message.into(),
            hint: None,
            details: serde_json::Value::Null,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

pub type Result<T, E = LilyError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
