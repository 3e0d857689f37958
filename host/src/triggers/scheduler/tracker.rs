//! Runs in progress per job, and the [`Launcher`] that starts them.

use super::*;

/// Starts runs. The run counts as in progress until `guard` is dropped.
pub trait Launcher: Send + Sync {
    fn launch(&self, fire: Fire, guard: RunGuard);

    /// Start every run due at one instant (several jobs may share it).
    fn launch_all(&self, batch: Vec<(Fire, RunGuard)>) {
        for (fire, guard) in batch {
            self.launch(fire, guard);
        }
    }

    /// Up to `n` runs may start at one instant soon: get ready for them.
    fn reserve(&self, _n: usize) {}

    /// These jobs were just loaded (or changed): get ready to run them.
    fn prepare(&self, _jobs: Vec<PrepareJob>) {}
}

/// A job just loaded or changed, for [`Launcher::prepare`].
#[derive(Debug, Clone)]
pub struct PrepareJob {
    pub job_id: String,
    /// Its spec file (read again by whoever needs more than this).
    pub path: PathBuf,
    /// [`crate::jobs::plan_key`] of the spec as the scheduler read it:
    /// jobs with the same key plan alike.
    pub plan_key: [u8; 32],
}

/// Runs in progress, per job.
pub struct RunTracker {
    pub(super) per_job: Mutex<HashMap<String, u32>>,
    pub(super) total: tokio::sync::watch::Sender<usize>,
}

impl RunTracker {
    pub fn new() -> Arc<RunTracker> {
        Arc::new(RunTracker {
            per_job: Mutex::new(HashMap::new()),
            total: tokio::sync::watch::channel(0).0,
        })
    }

    /// Count a run of `job_id` until the guard is dropped.
    pub fn start(self: &Arc<Self>, job_id: &str) -> RunGuard {
        self.start_with(job_id, None)
    }

    pub(super) fn start_with(self: &Arc<Self>, job_id: &str, ticket: Option<Arc<Ticket>>) -> RunGuard {
        if let Ok(mut m) = self.per_job.lock() {
            *m.entry(job_id.to_string()).or_default() += 1;
        }
        self.total.send_modify(|n| *n += 1);
        RunGuard {
            tracker: self.clone(),
            job_id: job_id.to_string(),
            start: StartSignal(Arc::new(StartOnce {
                ticket,
                done: std::sync::atomic::AtomicBool::new(false),
            })),
        }
    }

    /// Runs of `job_id` in progress.
    pub fn running(&self, job_id: &str) -> u32 {
        self.per_job.lock().map(|m| m.get(job_id).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Runs in progress, all jobs.
    pub fn total(&self) -> usize {
        *self.total.borrow()
    }

    /// Completes when no run is in progress.
    pub async fn idle(&self) {
        let mut rx = self.total.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// A run in progress; dropping it ends the run for the tracker. The
/// launcher calls [`RunGuard::started`] once the run is on disk.
pub struct RunGuard {
    pub(super) tracker: Arc<RunTracker>,
    pub(super) job_id: String,
    pub(super) start: StartSignal,
}

impl RunGuard {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The run has its run directory and first receipt (or a `missed`
    /// record says why it never will).
    pub fn started(&self) {
        self.start.started();
    }

    /// A handle to call [`StartSignal::started`] from elsewhere (an event
    /// observer).
    pub fn start_signal(&self) -> StartSignal {
        self.start.clone()
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.tracker.per_job.lock()
            && let Some(n) = m.get_mut(&self.job_id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.job_id);
            }
        }
        self.tracker.total.send_modify(|n| *n = n.saturating_sub(1));
    }
}
