//! Starting cron runs through the executor: one pool thread per run, runs
//! of one instant started together ([`Batch`]), and the start barrier fed by
//! the executor's typed `on_started` callback.

use super::*;

/// Called with each fire right before [`Lily::run_job`] is invoked for it
/// (instrumentation).
pub type InvokeHook = Arc<dyn Fn(&Fire) + Send + Sync>;

/// Starts runs through [`Lily::run_job`], each on a thread of its own from a
/// [`RunPool`] (a run's file writes and guest code then never hold up the
/// scheduler or each other), with the cron trigger and a shared cancellation
/// signal. Runs due at the same instant start as a [`Batch`].
pub struct ExecutorLauncher {
    pub(super) lily: Arc<Lily>,
    pub(super) cancel: Cancel,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) observer: Option<Observer>,
    pub(super) on_invoke: Option<InvokeHook>,
    pub(super) pool: RunPool,
    /// The run store every fire claims its scheduled time in, takes a run
    /// slot of, and publishes to (`lily jobs serve` with a store).
    pub(super) store: Option<crate::runs::store::RunStore>,
}

/// How long a run of a batch waits, after its `job_started`, for the other
/// runs of the batch to start.
pub const START_BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The runs of one instant: the threads wait until all of them exist, and
/// each run, once started (`job_started` written), waits until every other
/// one has started too (or ended before starting), up to
/// [`START_BARRIER_WAIT`]. Starting a run is a few file writes; running it
/// is guest code: letting every run of the instant start before any of them
/// takes the CPU for its guests keeps the last start close to the scheduled
/// time.
pub(super) struct Batch {
    pub(super) state: Mutex<BatchState>,
    pub(super) cv: std::sync::Condvar,
    /// Whether started runs wait for the others (not when there are more
    /// runs than threads: the last ones could only start when others end).
    pub(super) wait_for_all: bool,
}

pub(super) struct BatchState {
    pub(super) open: bool,
    pub(super) not_started: usize,
}

impl Batch {
    pub(super) fn new(n: usize) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(BatchState { open: false, not_started: n }),
            cv: std::sync::Condvar::new(),
            wait_for_all: n <= crate::triggers::pool::MAX_THREADS,
        })
    }

    pub(super) fn open(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.open = true;
        }
        self.cv.notify_all();
    }

    pub(super) fn wait_open(&self) {
        if let Ok(g) = self.state.lock() {
            drop(self.cv.wait_while(g, |s| !s.open));
        }
    }

    /// This run started (`wait`: then wait for the others) or ended without starting.
    pub(super) fn started(&self, wait: bool) {
        let Ok(mut g) = self.state.lock() else { return };
        g.not_started = g.not_started.saturating_sub(1);
        if g.not_started == 0 {
            self.cv.notify_all();
        } else if wait && self.wait_for_all {
            drop(self.cv.wait_timeout_while(g, START_BARRIER_WAIT, |s| s.not_started > 0));
        }
    }
}

/// One run's place in a [`Batch`].
pub(super) struct BatchSeat {
    pub(super) batch: Arc<Batch>,
    pub(super) counted: std::sync::atomic::AtomicBool,
}

impl BatchSeat {
    pub(super) fn started(&self, wait: bool) {
        if !self.counted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.batch.started(wait);
        }
    }
}

impl Drop for BatchSeat {
    fn drop(&mut self) {
        self.started(false);
    }
}

impl ExecutorLauncher {
    /// Must be called inside a tokio runtime (runs are driven by it).
    pub fn new(lily: Arc<Lily>, cancel: Cancel, observer: Option<Observer>) -> ExecutorLauncher {
        ExecutorLauncher {
            lily,
            cancel,
            handle: tokio::runtime::Handle::current(),
            observer,
            on_invoke: None,
            pool: RunPool::new(),
            store: None,
        }
    }

    /// Claim, hold slots and publish in `store` (see [`crate::triggers::store`]).
    pub fn with_store(mut self, store: Option<crate::runs::store::RunStore>) -> ExecutorLauncher {
        self.store = store;
        self
    }

    /// Call `hook` right before each run is handed to the executor.
    pub fn on_invoke(mut self, hook: InvokeHook) -> ExecutorLauncher {
        self.on_invoke = Some(hook);
        self
    }

    pub(super) fn task(&self, fire: Fire, guard: RunGuard, batch: Option<Arc<Batch>>) -> Box<dyn FnOnce() + Send + 'static> {
        let shared = Shared {
            lily: self.lily.clone(),
            cancel: self.cancel.clone(),
            handle: self.handle.clone(),
            observer: self.observer.clone(),
            on_invoke: self.on_invoke.clone(),
            store: self.store.clone(),
        };
        Box::new(move || {
            let seat = batch.map(|batch| {
                batch.wait_open();
                Arc::new(BatchSeat {
                    batch,
                    counted: std::sync::atomic::AtomicBool::new(false),
                })
            });
            shared.run_fire(fire, guard, seat);
        })
    }
}

impl Launcher for ExecutorLauncher {
    fn launch(&self, fire: Fire, guard: RunGuard) {
        self.pool.run_all(vec![self.task(fire, guard, None)]);
    }

    /// Several runs at one instant start as a [`Batch`].
    fn launch_all(&self, fires: Vec<(Fire, RunGuard)>) {
        if fires.len() == 1 {
            for (fire, guard) in fires {
                self.launch(fire, guard);
            }
            return;
        }
        let batch = Batch::new(fires.len());
        let tasks = fires.into_iter().map(|(fire, guard)| self.task(fire, guard, Some(batch.clone()))).collect();
        self.pool.run_all(tasks);
        batch.open();
    }

    fn reserve(&self, n: usize) {
        self.pool.reserve(n);
    }

    /// Create the jobs' run directories (`runs/<job>/`) now, on a pool
    /// thread, so that a job's first run does not: 100 first runs at one
    /// instant would all create their directory in `runs/` at once, one at
    /// a time under its lock. Then check each job as `lily jobs validate`
    /// does (plan without running: target, bindings, policy, runnables): a
    /// job that cannot run as it stands is reported now
    /// ([`SchedulerEvent::JobCannotRun`]), not only by a failed run at every
    /// fire.
    ///
    /// Planning reads only the spec's target, bindings, runtime and output
    /// ([`crate::jobs::plan_key`]), so within one batch (one policy, one
    /// state of the installed runnables) a key that planned once without a
    /// refusal is not planned again: 10,000 jobs with one target and one set
    /// of bindings plan once. A refused job is planned on its own (its
    /// message names its own file and line). The spec is read again here,
    /// on the pool thread, and its key recomputed from what was read.
    fn prepare(&self, jobs: Vec<PrepareJob>) {
        let (lily, handle, observer) = (self.lily.clone(), self.handle.clone(), self.observer.clone());
        self.pool.run_all(vec![Box::new(move || {
            let runs = lily.root.runs_dir();
            for j in &jobs {
                if let Err(e) = crate::runs::prepare_job_dir(&runs, &j.job_id) {
                    warn!(job = %j.job_id, error = %e, "cannot create the job's run directory");
                }
            }
            for (job_id, e) in handle.block_on(refusals(&lily, jobs)) {
                info!(job = %job_id, code = %e.code, error = %e.message, "cron job cannot run as it stands");
                if let Some(o) = &observer {
                    o(&SchedulerEvent::JobCannotRun {
                        job_id,
                        code: e.code,
                        message: e.message,
                        hint: e.hint,
                    });
                }
            }
        })]);
    }
}

/// The jobs of `jobs` that cannot run as they stand, each with its refusal
/// (what [`Launcher::prepare`] of the [`ExecutorLauncher`] reports): every
/// job's spec read again and planned with the current policy, each distinct
/// [`crate::jobs::plan_key`] once unless refused.
pub async fn refusals(lily: &Lily, jobs: Vec<PrepareJob>) -> Vec<(String, LilyError)> {
    let policy = lily.policy();
    let mut planned_ok: HashSet<[u8; 32]> = HashSet::new();
    let mut out = Vec::new();
    for j in jobs {
        if planned_ok.contains(&j.plan_key) {
            continue;
        }
        let file = spec::load_file(&j.path);
        let Ok(spec) = &file.spec else { continue };
        if spec.id != j.job_id {
            continue;
        }
        let key = crate::jobs::plan_key(spec);
        if planned_ok.contains(&key) {
            continue;
        }
        let refused = match &policy {
            Err(e) => Some(e.clone()),
            Ok(policy) => lily.plan(spec, policy).await.err().map(|pe| pe.error),
        };
        match refused {
            None => {
                planned_ok.insert(key);
            }
            Some(e) => out.push((j.job_id, e)),
        }
    }
    out
}

/// What every cron run of one launcher needs, moved into the run's task.
struct Shared {
    lily: Arc<Lily>,
    cancel: Cancel,
    handle: tokio::runtime::Handle,
    observer: Option<Observer>,
    on_invoke: Option<InvokeHook>,
    store: Option<crate::runs::store::RunStore>,
}

impl Shared {
    /// One cron run on the current (pool) thread.
    fn run_fire(self, fire: Fire, guard: RunGuard, seat: Option<Arc<BatchSeat>>) {
        let Shared {
            lily,
            cancel,
            handle,
            observer,
            on_invoke,
            store,
        } = self;
        let (observer, on_invoke) = (observer.as_ref(), on_invoke.as_ref());
        let start = guard.start_signal();
        let _guard = guard;
        let scheduled_for = rfc3339(fire.scheduled_for);
        // A run that cannot start leaves a `missed` record saying why (with
        // a store, published there too).
        let not_started = |code: ErrorCode, message: String| {
            info!(job = %fire.job_id, scheduled_for = %scheduled_for, code = %code, error = %message, "cron run did not start");
            match records::write_record(&lily.root.runs_dir(), &fire.not_started_record(code, &message)) {
                Ok(dir) => {
                    start.started();
                    if let (Some(st), Some(r)) = (&store, crate::runs::read_receipt(&dir)) {
                        publish(st, &dir, &r);
                    }
                }
                Err(e) => error!(job = %fire.job_id, error = %e, "cannot write the missed record"),
            }
            if let Some(o) = observer {
                o(&SchedulerEvent::RunNotStarted {
                    job_id: fire.job_id.clone(),
                    scheduled_for: scheduled_for.clone(),
                    code,
                    message,
                });
            }
        };
        // The spec as it is now (one file, not the whole directory; parsed
        // again only if it changed since the scheduler read it).
        let spec_file = fire.spec_now();
        match &spec_file.spec {
            Ok(s) if s.id == fire.job_id => {}
            Ok(s) => {
                return not_started(
                    ErrorCode::JobNotFound,
                    format!("{} now declares job {:?}, not {:?}", fire.spec_path.display(), s.id, fire.job_id),
                );
            }
            Err(e) => return not_started(e.code, e.message.clone()),
        }
        // With a store: the scheduled time is claimed (another scheduler
        // over the same store may have fired it: then a `duplicate_skipped`
        // record, not a run), then one of the job's run slots is taken.
        let mut slot = None;
        let mut cancel = cancel;
        if let (Some(st), Ok(s)) = (&store, &spec_file.spec) {
            match crate::triggers::store::claim_or_record(st, &lily.root.runs_dir(), &spec_file, fire.scheduled_for, &fire.local, &fire.timezone) {
                Err(e) => return not_started(e.code, e.message),
                Ok(Some(dup)) => {
                    start.started();
                    info!(job = %fire.job_id, run_id = %dup.receipt.run_id, scheduled_for = %scheduled_for, slot = %dup.slot, "scheduled time already claimed in the run store: recorded duplicate_skipped");
                    if let Some(o) = observer {
                        o(&SchedulerEvent::RunFinished {
                            job_id: fire.job_id.clone(),
                            run_id: dup.receipt.run_id.clone(),
                            status: dup.receipt.status,
                            scheduled_for: scheduled_for.clone(),
                            run_dir: dup.run_dir.clone(),
                            error: None,
                        });
                    }
                    return;
                }
                Ok(None) => {}
            }
            let n = s.runtime.max_parallel_runs;
            match st.acquire_slot(&fire.job_id, n, &crate::triggers::store::slot_body(&fire.job_id, false)) {
                Err(e) => return not_started(e.code, e.message),
                Ok(None) => {
                    let e = crate::triggers::store::busy_error(st, &fire.job_id, n);
                    return not_started(e.code, e.message);
                }
                Ok(Some(lease)) => {
                    // This run's own cancel: the scheduler's, or the slot lost.
                    let own = Cancel::new();
                    let (shared, fwd) = (cancel.clone(), own.clone());
                    handle.spawn(async move {
                        tokio::select! {
                            _ = shared.cancelled() => fwd.cancel(),
                            _ = fwd.cancelled() => {}
                        }
                    });
                    let lost = own.clone();
                    slot = Some((crate::triggers::store::SlotHold::start(st.clone(), lease, move || lost.cancel()), own.clone()));
                    cancel = own;
                }
            }
        }
        let lease: Arc<Mutex<Option<crate::triggers::store::RunLease>>> = Default::default();
        // Called by the executor once the run's first receipt and `job_started`
        // are on disk.
        let signal = start.clone();
        let (lease_store, lease_slot, lease_job) = (store.clone(), lease.clone(), fire.job_id.clone());
        let on_started: crate::jobs::OnStarted = Box::new(move |run_id, dir| {
            signal.started();
            if let Some(st) = lease_store {
                let l = crate::triggers::store::RunLease::start(st, &lease_job, run_id, dir);
                *lease_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
            }
            if let Some(seat) = &seat {
                seat.started(true);
            }
        });
        // The job's `retention:` (or the root's default), applied once the run ended.
        let retention = spec_file
            .spec
            .as_ref()
            .ok()
            .and_then(|s| crate::jobs::retention::configured(&lily.root, Some(s)));
        let opts = RunOptions {
            trigger: TriggerInfo::Cron {
                scheduled_for: fire.scheduled_for,
                local: fire.local.clone(),
                timezone: fire.timezone.clone(),
            },
            cancel,
            wait: false,
            on_started: Some(on_started),
            spec_override: Some(spec_file),
            ..RunOptions::default()
        };
        if let Some(hook) = on_invoke {
            hook(&fire);
        }
        let ran = handle.block_on(lily.run_job(&fire.job_id, opts));
        // Nothing of the run is written to the store after this (receipt last).
        let held = lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(l) = held {
            l.finish();
        }
        if let Some((hold, own)) = slot {
            hold.release();
            own.cancel(); // ends the forwarding task; the run is over
        }
        match ran {
            Ok(res) => {
                start.started();
                if let Some(st) = &store {
                    publish(st, &res.run_dir, &res.receipt);
                }
                let r = &res.receipt;
                let error = r.error.as_ref().map(|e| RunError {
                    code: e.code,
                    message: e.message.clone(),
                });
                match &error {
                    Some(e) => {
                        info!(job = %fire.job_id, run_id = %r.run_id, status = r.status.as_str(), scheduled_for = %scheduled_for, code = %e.code, error = %e.message, "cron run finished")
                    }
                    None => info!(job = %fire.job_id, run_id = %r.run_id, status = r.status.as_str(), scheduled_for = %scheduled_for, "cron run finished"),
                }
                if let Some(o) = observer {
                    o(&SchedulerEvent::RunFinished {
                        job_id: fire.job_id.clone(),
                        run_id: r.run_id.clone(),
                        status: r.status,
                        scheduled_for: scheduled_for.clone(),
                        run_dir: res.run_dir.clone(),
                        error,
                    });
                }
                if let Some(rule) = retention {
                    match crate::jobs::retention::prune(&lily.root, &fire.job_id, &rule, false) {
                        Ok(rep) if !rep.pruned.is_empty() || !rep.errors.is_empty() => {
                            info!(job = %fire.job_id, pruned = rep.pruned.len(), bytes_freed = rep.bytes_freed, errors = rep.errors.len(), "retention applied")
                        }
                        Ok(_) => {}
                        Err(e) => warn!(job = %fire.job_id, error = %e, "cannot apply the job's retention"),
                    }
                }
            }
            Err(e) => not_started(e.code, e.message),
        }
    }
}

/// Publish a finished run (or record) to the store; a failure is logged
/// and the run stays in the local spool.
fn publish(st: &crate::runs::store::RunStore, dir: &Path, r: &crate::runs::Receipt) {
    match st.publish_run(dir, &r.job_id, &r.run_id) {
        Ok(()) => info!(job = %r.job_id, run_id = %r.run_id, store = %st.url(), "published the run to the store"),
        Err(e) => warn!(job = %r.job_id, run_id = %r.run_id, error = %e.message, "cannot publish the run to the store"),
    }
}
