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

/// Receives [`SchedulerEvent`]s (from the scheduler and from run threads).
pub type Observer = Arc<dyn Fn(&SchedulerEvent) + Send + Sync>;
