//! The serve loop: tick, sleep until the next wake-up, stop on a signal
//! (grace period, then cancel), and [`serve`], which wires the real pieces.

use super::*;

/// How [`run_loop`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServeReport {
    /// Runs started.
    pub fired: u64,
    /// Runs still in progress when the grace period ended (then cancelled).
    pub cancelled: usize,
    /// Runs still in progress after the cancel wait (their receipts will
    /// read `interrupted`).
    pub abandoned: usize,
}

/// Tick and sleep until `shutdown` counts a signal; then stop firing, wait
/// up to `grace` for the runs in progress, cancel what is left (a second
/// signal cancels at once) and wait up to [`CANCEL_WAIT`] for their receipts.
pub async fn run_loop(
    sched: &mut Scheduler,
    clock: &dyn Clock,
    mut shutdown: tokio::sync::watch::Receiver<u32>,
    grace: TimeDelta,
    cancel: &Cancel,
) -> ServeReport {
    loop {
        if *shutdown.borrow_and_update() > 0 {
            break;
        }
        let wake = sched.tick(clock.now());
        tokio::select! {
            _ = clock.sleep_until(wake) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    let tracker = sched.tracker();
    let running = tracker.total();
    info!(
        running,
        grace_seconds = grace.num_seconds(),
        "shutting down: no more fires; waiting for running runs"
    );
    sched.emit(&SchedulerEvent::ShuttingDown {
        running,
        grace_seconds: grace.num_seconds().max(0) as u64,
    });
    let mut report = ServeReport {
        fired: sched.fired(),
        ..ServeReport::default()
    };
    let deadline = clock.now() + grace;
    let finished = tokio::select! {
        _ = tracker.idle() => true,
        _ = clock.sleep_until(deadline) => false,
        _ = second_signal(&mut shutdown) => false,
    };
    if !finished {
        report.cancelled = tracker.total();
        warn!(running = report.cancelled, "grace period over: cancelling the running runs");
        sched.emit(&SchedulerEvent::CancellingRuns { running: report.cancelled });
        cancel.cancel();
        let deadline = clock.now() + CANCEL_WAIT;
        tokio::select! {
            _ = tracker.idle() => {}
            _ = clock.sleep_until(deadline) => {}
        }
        report.abandoned = tracker.total();
    }
    sched.checkpoint();
    sched.emit(&SchedulerEvent::Stopped { fired: report.fired });
    info!(fired = report.fired, "scheduler stopped");
    report
}

/// Completes on a second signal (never if the sender is gone).
async fn second_signal(shutdown: &mut tokio::sync::watch::Receiver<u32>) {
    if shutdown.wait_for(|n| *n >= 2).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Options of [`serve`].
#[derive(Clone)]
pub struct ServeOptions {
    pub grace: TimeDelta,
    pub observer: Option<Observer>,
    /// A run store: every fire claims its scheduled time there (so two
    /// schedulers over one store run each scheduled time once), takes one
    /// of the job's run slots, and publishes the run.
    pub store: Option<crate::runs::store::RunStore>,
}

/// `lily jobs serve`: take the root's scheduler lock, open the executor and
/// run the loop on the system clock until `shutdown` counts a signal.
pub async fn serve(root: Root, opts: ServeOptions, shutdown: tokio::sync::watch::Receiver<u32>) -> Result<ServeReport, LilyError> {
    let clock = SystemClock;
    let started = clock.now();
    let lock = state::acquire_daemon_lock(&root, started).map_err(|e| match e {
        DaemonLockError::Held(info) => {
            let who = match &info {
                Some(i) => format!("pid {}, since {}", i.pid, rfc3339(i.started_at)),
                None => "pid unknown".to_string(),
            };
            LilyError::new(
                ErrorCode::JobExecutionFailed,
                format!("another scheduler is already serving {} ({who})", root.path.display()),
            )
            .with_hint("one scheduler per root: stop the other one first (SIGTERM), or check it with `lily jobs status`")
            .with_details(json!({"reason": "scheduler_already_running", "owner": info}))
        }
        DaemonLockError::Io(e) => LilyError::new(
            ErrorCode::JobExecutionFailed,
            format!("cannot take the scheduler lock under {}: {e}", root.state_dir().display()),
        ),
    })?;
    let lily = Lily::open(root.clone()).map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot open the executor: {e:#}")))?;
    let cancel = Cancel::new();
    let launcher = Arc::new(ExecutorLauncher::new(Arc::new(lily), cancel.clone(), opts.observer.clone()).with_store(opts.store.clone()));
    let sched_opts = SchedulerOptions {
        observer: opts.observer.clone(),
        ..SchedulerOptions::default()
    };
    let mut sched = Scheduler::new(root.clone(), sched_opts, launcher, RunTracker::new(), started)?;
    info!(root = %root.path.display(), pid = std::process::id(), jobs = sched.loaded(), "scheduler serving");
    sched.emit(&SchedulerEvent::Serving {
        root: root.path.clone(),
        pid: std::process::id(),
        jobs: sched.loaded(),
        grace_seconds: opts.grace.num_seconds().max(0) as u64,
        store: opts.store.as_ref().map(|st| st.url().to_string()),
    });
    let report = run_loop(&mut sched, &clock, shutdown, opts.grace, &cancel).await;
    drop(sched);
    drop(lock);
    Ok(report)
}
