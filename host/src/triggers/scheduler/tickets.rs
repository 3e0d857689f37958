//! Fire times and tickets: what one decision still has to do (its run seen
//! to start, its records written) before it leaves the durable state's
//! `pending` list — the scheduler's crash recovery works from these.

use super::*;

/// One scheduled time to run.
#[derive(Debug, Clone)]
pub struct Fire {
    pub job_id: String,
    pub scheduled_for: DateTime<Utc>,
    /// RFC 3339 in the job's time zone, with its offset.
    pub local: String,
    pub timezone: String,
    pub spec_path: PathBuf,
    /// The spec as the scheduler read it (for a record if the run cannot start).
    pub spec_sha256: String,
    pub target: crate::runs::TargetRecord,
}

impl Fire {
    /// The spec file as it is now: read and parsed when the run starts, on
    /// the run's own thread (the scheduler keeps no parsed spec per job).
    pub fn spec_now(&self) -> SpecFile {
        spec::load_file(&self.spec_path)
    }
}

impl Fire {
    /// The `missed` record of this time when its run could not start.
    pub fn not_started_record(&self, code: ErrorCode, message: &str) -> Record {
        Record {
            job_id: self.job_id.clone(),
            status: RunStatus::Missed,
            scheduled_for: self.scheduled_for,
            scheduled_for_local: self.local.clone(),
            timezone: self.timezone.clone(),
            reason: MISSED_NOT_STARTED.to_string(),
            details: json!({"error_code": code.as_str(), "message": message}),
            spec_sha256: self.spec_sha256.clone(),
            spec_path: self.spec_path.display().to_string(),
            target: self.target.clone(),
        }
    }
}

/// `job_missed` reason: the run was due and decided, but the executor
/// refused to start it (its spec became invalid, …).
pub const MISSED_NOT_STARTED: &str = "not_started";
/// `job_missed` reason: the scheduler recorded the decision to run, then
/// stopped (crash, kill) before the run started.
pub const MISSED_SCHEDULER_STOPPED: &str = "scheduler_stopped";

/// The parts of one decision still to be done: its run seen to start, its
/// records written. When none is left the decision leaves the state's
/// `pending` list (at the next state write).
pub struct Ticket {
    pub(super) job_id: String,
    pub(super) at: DateTime<Utc>,
    pub(super) remaining: std::sync::atomic::AtomicUsize,
}

impl Ticket {
    pub(super) fn new(job_id: &str, at: DateTime<Utc>, parts: usize) -> Arc<Ticket> {
        Arc::new(Ticket {
            job_id: job_id.to_string(),
            at,
            remaining: std::sync::atomic::AtomicUsize::new(parts),
        })
    }

    pub(super) fn part_done(&self) {
        let _ = self
            .remaining
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub(super) fn is_done(&self) -> bool {
        self.remaining.load(std::sync::atomic::Ordering::SeqCst) == 0
    }
}

/// Tells the scheduler a run has started (its run directory and first
/// receipt exist) or will never start (a `missed` record says why). Cloneable;
/// only the first call counts.
#[derive(Clone)]
pub struct StartSignal(pub(super) Arc<StartOnce>);

pub(super) struct StartOnce {
    pub(super) ticket: Option<Arc<Ticket>>,
    pub(super) done: std::sync::atomic::AtomicBool,
}

impl StartSignal {
    pub fn started(&self) {
        if !self.0.done.swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Some(t) = &self.0.ticket
        {
            t.part_done();
        }
    }
}
