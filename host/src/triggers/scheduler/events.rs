//! What the scheduler reports as it works.

use super::*;

/// What the scheduler reports as it works (rendered by `lily jobs serve`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SchedulerEvent {
    Serving {
        root: PathBuf,
        pid: u32,
        jobs: usize,
        grace_seconds: u64,
        /// The run store every fire claims in and publishes to.
        #[serde(skip_serializing_if = "Option::is_none")]
        store: Option<String>,
    },
    JobLoaded {
        job_id: String,
        cron: String,
        timezone: String,
        state: Activity,
        next_fire: Option<String>,
        next_fire_local: Option<String>,
    },
    JobUnloaded {
        job_id: String,
    },
    SpecInvalid {
        path: PathBuf,
        code: ErrorCode,
        message: String,
    },
    DuplicateId {
        job_id: String,
        paths: Vec<PathBuf>,
    },
    StateChanged {
        job_id: String,
        state: Activity,
    },
    Fired {
        job_id: String,
        scheduled_for: String,
        scheduled_for_local: String,
        /// From the scheduled time to the run handed to its thread.
        late_ms: i64,
    },
    RunFinished {
        job_id: String,
        run_id: String,
        status: RunStatus,
        scheduled_for: String,
        run_dir: PathBuf,
        /// The receipt's error (code and message), for a run that did not succeed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<RunError>,
    },
    /// A cron job that was loaded but cannot run as it stands (its plan is
    /// refused: policy, bindings, an unknown runnable…); every fire would
    /// fail the same way until the spec or the policy changes.
    JobCannotRun {
        job_id: String,
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    RunNotStarted {
        job_id: String,
        scheduled_for: String,
        code: ErrorCode,
        message: String,
    },
    Missed {
        job_id: String,
        /// The newest missed time of the decision.
        scheduled_for: String,
        reason: String,
        count: u64,
    },
    SkippedOverlap {
        job_id: String,
        scheduled_for: String,
        running: u32,
        max_parallel_runs: u32,
    },
    StateWriteFailed {
        message: String,
    },
    ShuttingDown {
        running: usize,
        grace_seconds: u64,
    },
    CancellingRuns {
        running: usize,
    },
    Stopped {
        fired: u64,
    },
}

/// A run's error as the scheduler reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RunError {
    pub code: ErrorCode,
    pub message: String,
}

/// Receives [`SchedulerEvent`]s (from the scheduler and from run threads).
pub type Observer = Arc<dyn Fn(&SchedulerEvent) + Send + Sync>;
