//! `lily jobs serve`: the cron scheduler of one root.
//!
//! [`Scheduler`] is the synchronous core: [`Scheduler::tick`] takes the
//! current instant, notices spec and state changes (a cheap mtime scan every
//! [`RESCAN_EVERY`]), decides what is due with [`super::plan::decide`],
//! records the decisions in the durable state *before* starting anything,
//! starts the runs through a [`Launcher`], queues the missed / overlap
//! records and returns the instant it wants to be woken at. [`run_loop`]
//! sleeps on a [`Clock`] until then — no polling when idle beyond the rescan
//! — and handles shutdown: stop firing, wait for the running runs up to the
//! grace period, then cancel them. [`serve`] wires the real pieces together:
//! the root's scheduler lock, the system clock and the executor.
//!
//! Guarantees:
//! * at most one run per (job, scheduled time), across crashes and restarts:
//!   the cursor and `last_scheduled_for` are written (fsynced) before the run
//!   starts, so a restarted scheduler never decides that time again;
//! * every due time that does not run gets exactly one `missed` or
//!   `skipped_overlap` record. Records are written by a background thread
//!   right after the runs start; each decision stays in the state's
//!   `pending` list until its records are on disk and its run has its first
//!   receipt. A scheduler that starts after a crash derives the pending
//!   decisions again (they are pure functions of their inputs), writes the
//!   records that are missing, and a `missed` record (`scheduler_stopped`)
//!   for a run that was decided but never got a run directory. A run the
//!   executor refuses to start (its spec became invalid) gets a `missed`
//!   record (`not_started`). The one gap: a process killed after creating a
//!   run directory and before its first receipt leaves that directory
//!   without a receipt (it is not listed);
//! * pause / resume / disable / enable written by the commands under the
//!   state lock are seen at the next rescan, and always before a fire (the
//!   state file is checked under the lock at every firing instant).

use super::clock::{Clock, SystemClock};
use super::plan::{self, Decision, JobPlan};
use super::pool::RunPool;
use super::records::{self, Record};
use super::state::{self, Activity, DaemonLockError, JobState, PendingDecision, SchedulerState, Stamp, StateStore};
use crate::error::{ErrorCode, LilyError};
use crate::jobs::{Cancel, Lily, RunOptions, TriggerInfo};
use crate::runs::RunStatus;
use crate::spec::{self, SpecFile};
use crate::util::rfc3339;
use crate::workspace::Root;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{error, info, warn};

/// How often spec files and the state file are checked for changes.
pub const RESCAN_EVERY: TimeDelta = TimeDelta::seconds(2);

/// A full scan (one `stat` per spec file) runs at most once per this many
/// times its own duration, so that it stays under 0.5 % of a core however
/// many specs there are (see [`Scheduler::tick`]).
pub const FULL_SCAN_COST_FACTOR: u32 = 200;

/// How long cancelled runs get to write their receipts at shutdown.
pub const CANCEL_WAIT: TimeDelta = TimeDelta::seconds(10);

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
    pub target: Value,
    /// The parsed spec file the scheduler holds, used for the run when the
    /// file on disk still has the same stamp (else the run reads it again).
    pub prepared: Option<PreparedSpec>,
}

/// A spec file as parsed by the scheduler, and the stamp the file had
/// before it was read.
#[derive(Debug, Clone)]
pub struct PreparedSpec {
    pub stamp: Stamp,
    pub file: Arc<SpecFile>,
}

impl Fire {
    /// The spec file as it is now: the prepared one while the file is
    /// unchanged (one `stat`), else read and parsed again.
    pub fn spec_now(&self) -> SpecFile {
        match &self.prepared {
            Some(p) if Stamp::of_path(&self.spec_path) == Some(p.stamp) => (*p.file).clone(),
            _ => spec::load_file(&self.spec_path),
        }
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
    job_id: String,
    at: DateTime<Utc>,
    remaining: std::sync::atomic::AtomicUsize,
}

impl Ticket {
    fn new(job_id: &str, at: DateTime<Utc>, parts: usize) -> Arc<Ticket> {
        Arc::new(Ticket {
            job_id: job_id.to_string(),
            at,
            remaining: std::sync::atomic::AtomicUsize::new(parts),
        })
    }

    fn part_done(&self) {
        let _ = self
            .remaining
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1));
    }

    fn is_done(&self) -> bool {
        self.remaining.load(std::sync::atomic::Ordering::SeqCst) == 0
    }
}

/// Tells the scheduler a run has started (its run directory and first
/// receipt exist) or will never start (a `missed` record says why). Cloneable;
/// only the first call counts.
#[derive(Clone)]
pub struct StartSignal(Arc<StartOnce>);

struct StartOnce {
    ticket: Option<Arc<Ticket>>,
    done: std::sync::atomic::AtomicBool,
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
    fn prepare(&self, _job_ids: Vec<String>) {}
}

/// Runs in progress, per job.
pub struct RunTracker {
    per_job: Mutex<HashMap<String, u32>>,
    total: tokio::sync::watch::Sender<usize>,
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

    fn start_with(self: &Arc<Self>, job_id: &str, ticket: Option<Arc<Ticket>>) -> RunGuard {
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
    tracker: Arc<RunTracker>,
    job_id: String,
    start: StartSignal,
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

/// Tunables of a [`Scheduler`].
#[derive(Clone)]
pub struct SchedulerOptions {
    /// How often spec files and the state file are checked for changes.
    pub rescan_every: TimeDelta,
    pub observer: Option<Observer>,
    /// Also count runs of other processes (their slot locks under
    /// `.lily/state/locks/`) when checking `max_parallel_runs`.
    pub probe_slots: bool,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            rescan_every: RESCAN_EVERY,
            observer: None,
            probe_slots: true,
        }
    }
}

/// A loaded cron job.
struct Entry {
    spec: Arc<CronSpec>,
    /// The first scheduled time after the cursor.
    next: Option<DateTime<Utc>>,
}

/// What one spec file holds, as last read.
enum Parsed {
    Cron(Arc<CronSpec>),
    Manual(String),
    Invalid,
}

/// What the scheduler keeps of a cron job's spec: its plan, and the parsed
/// file a run starts from while the file is unchanged ([`Fire::spec_now`]).
struct CronSpec {
    plan: JobPlan,
    target: Value,
    prepared: PreparedSpec,
}

impl CronSpec {
    fn path(&self) -> &Path {
        &self.prepared.file.path
    }

    fn spec_sha256(&self) -> String {
        self.prepared.file.sha256.clone().unwrap_or_default()
    }
}

struct CachedSpec {
    path: PathBuf,
    stamp: Stamp,
    parsed: Parsed,
}

/// The scheduler core (see the module docs).
pub struct Scheduler {
    root: Root,
    opts: SchedulerOptions,
    launcher: Arc<dyn Launcher>,
    tracker: Arc<RunTracker>,
    store: StateStore,
    state: SchedulerState,
    /// Spec files by file name.
    specs: HashMap<OsString, CachedSpec>,
    jobs: BTreeMap<String, Entry>,
    duplicates: BTreeMap<String, Vec<PathBuf>>,
    serving_since: DateTime<Utc>,
    next_scan: DateTime<Utc>,
    records: RecordWriter,
    fired: u64,
    /// The job table was built at least once.
    built: bool,
    /// The jobs directory's mtime at the last full scan.
    dir_modified: Option<std::time::SystemTime>,
    /// When every spec file's stamp is checked next.
    next_full_scan: DateTime<Utc>,
    /// How long the last full scan took (the `stat` pass, not the parsing).
    last_scan: Option<std::time::Duration>,
    /// Decisions in the state's `pending` lists, with what is left of them.
    tickets: Vec<Arc<Ticket>>,
}

impl Scheduler {
    /// Load the state and every spec; `now` is when serving starts (times at
    /// or before it passed while no scheduler was running).
    pub fn new(root: Root, opts: SchedulerOptions, launcher: Arc<dyn Launcher>, tracker: Arc<RunTracker>, now: DateTime<Utc>) -> Result<Scheduler, LilyError> {
        let mut store = StateStore::new(&root);
        let state = store.read().map_err(|e| {
            LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot read the scheduler state: {e}")).with_hint(format!(
                "move {} aside to start afresh (paused and disabled jobs would become active, and missed times would not be recorded)",
                store.path().display()
            ))
        })?;
        let records = RecordWriter::start(root.runs_dir());
        let mut s = Scheduler {
            root,
            opts,
            launcher,
            tracker,
            store,
            state,
            specs: HashMap::new(),
            jobs: BTreeMap::new(),
            duplicates: BTreeMap::new(),
            serving_since: now,
            next_scan: now,
            records,
            fired: 0,
            built: false,
            dir_modified: None,
            next_full_scan: now,
            last_scan: None,
            tickets: Vec::new(),
        };
        s.rescan(now);
        s.recover();
        Ok(s)
    }

    pub fn tracker(&self) -> Arc<RunTracker> {
        self.tracker.clone()
    }

    /// How many cron jobs are loaded.
    pub fn loaded(&self) -> usize {
        self.jobs.len()
    }

    /// How many runs were started.
    pub fn fired(&self) -> u64 {
        self.fired
    }

    /// The next scheduled time of a loaded job (whatever its state).
    pub fn next_fire(&self, job_id: &str) -> Option<DateTime<Utc>> {
        self.jobs.get(job_id).and_then(|e| e.next)
    }

    /// The in-memory state of a job.
    pub fn job_state(&self, job_id: &str) -> Option<&JobState> {
        self.state.jobs.get(job_id)
    }

    /// Recompute every job's next scheduled time from its cursor (what a
    /// reload does; exposed for the benchmark).
    pub fn recompute_next(&mut self) {
        for (id, e) in self.jobs.iter_mut() {
            e.next = self.state.jobs.get(id).and_then(|st| e.spec.plan.schedule.next_after(st.cursor));
        }
    }

    /// How long the last full scan of the spec files took (one `stat` per
    /// file, no parsing), and when the next one is due.
    pub fn full_scan(&self) -> (Option<std::time::Duration>, DateTime<Utc>) {
        (self.last_scan, self.next_full_scan)
    }

    /// Wait until every queued missed / overlap record is written.
    pub fn flush_records(&self) {
        self.records.flush();
    }

    /// One pass: notice changes, decide, record, start. Returns when to be
    /// called next.
    ///
    /// Changes are looked for every `rescan_every` (2 s): the state file
    /// (pause, resume, …) and the jobs directory's mtime (specs added,
    /// removed, or replaced by rename, as editors and atomic writers do) each
    /// time; every spec file's own stamp (an edit in place) every
    /// `rescan_every` too, or every [`FULL_SCAN_COST_FACTOR`] times the
    /// duration of such a scan if that is longer (about 6 s for 10,000 specs
    /// in a debug build here).
    pub fn tick(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        if now >= self.next_scan {
            self.rescan(now);
            self.next_scan = now + self.opts.rescan_every;
        }
        let due: Vec<String> = self
            .jobs
            .iter()
            .filter(|(id, e)| e.next.is_some_and(|t| t <= now) && self.state.jobs.get(*id).is_some_and(|s| s.state == Activity::Active))
            .map(|(id, _)| id.clone())
            .collect();
        let mut retry = false;
        if !due.is_empty() {
            retry = !self.fire_due(now, &due);
        }
        let mut wake = self.next_scan;
        for (id, e) in &self.jobs {
            if let Some(t) = e.next
                && t < wake
                && self.state.jobs.get(id).is_some_and(|s| s.state == Activity::Active)
            {
                wake = t;
            }
        }
        if retry {
            wake = wake.max(now + TimeDelta::seconds(1));
        }
        wake.max(now + TimeDelta::milliseconds(1))
    }

    /// Decide for the due jobs under the state lock, write the state, then
    /// start runs and queue records. Returns false when the state could not
    /// be written (nothing was started).
    fn fire_due(&mut self, now: DateTime<Utc>, due: &[String]) -> bool {
        let lock = match self.store.lock() {
            Ok(l) => l,
            Err(e) => return self.state_write_failed(&format!("cannot lock the scheduler state: {e}")),
        };
        self.take_disk_changes();
        let mut decided: Vec<(String, Decision, Vec<Record>, Arc<Ticket>)> = Vec::new();
        let mut before: Vec<(String, JobState)> = Vec::new();
        for id in due {
            let (Some(entry), Some(st)) = (self.jobs.get(id), self.state.jobs.get(id)) else {
                continue;
            };
            if st.state != Activity::Active {
                continue;
            }
            let busy = self.is_busy(id, entry.spec.plan.max_parallel_runs);
            let Some(d) = plan::decide(&entry.spec.plan, st.cursor, now, self.serving_since, busy) else {
                continue;
            };
            let running = d.skipped_overlap.map(|_| self.tracker.running(id));
            let records = decision_records(entry, &d, now, running);
            let ticket = Ticket::new(id, now, records.len() + usize::from(d.fire.is_some()));
            let pending = PendingDecision {
                after: st.cursor,
                at: now,
                serving_since: self.serving_since,
                busy,
                schedule: entry.spec.plan.fingerprint(),
            };
            if let Some(st) = self.state.jobs.get_mut(id) {
                before.push((id.clone(), st.clone()));
                st.cursor = d.cursor;
                if let Some(f) = d.fire {
                    st.last_scheduled_for = Some(f);
                }
                st.pending.push(pending);
            }
            decided.push((id.clone(), d, records, ticket));
        }
        if decided.is_empty() {
            return true;
        }
        self.prune_confirmed();
        if let Err(e) = self.store.write(&lock, &self.state) {
            for (id, st) in before {
                self.state.jobs.insert(id, st);
            }
            return self.state_write_failed(&format!("cannot write {}: {e}", self.store.path().display()));
        }
        drop(lock);
        // Start every run first (all of them at once), then log, report and
        // queue the records.
        let mut batch = Vec::new();
        for (id, d, _, ticket) in &decided {
            if let (Some(t), Some(e)) = (d.fire, self.jobs.get(id)) {
                let fire = Fire {
                    job_id: id.clone(),
                    scheduled_for: t,
                    local: e.spec.plan.schedule.fire_time(t).local,
                    timezone: e.spec.plan.schedule.timezone().name().to_string(),
                    spec_path: e.spec.path().to_path_buf(),
                    spec_sha256: e.spec.spec_sha256(),
                    target: e.spec.target.clone(),
                    prepared: Some(e.spec.prepared.clone()),
                };
                let guard = self.tracker.start_with(id, Some(ticket.clone()));
                batch.push((fire, guard));
            }
        }
        let fired: Vec<(String, DateTime<Utc>, String)> = batch.iter().map(|(f, _)| (f.job_id.clone(), f.scheduled_for, f.local.clone())).collect();
        // Lateness of the scheduler itself: from the scheduled time to the
        // runs handed over (decided, recorded, threads ready).
        let handed_over = Utc::now();
        if !batch.is_empty() {
            self.launcher.launch_all(batch);
        }
        for (id, t, local) in fired {
            let late_ms = (handed_over - t).num_milliseconds();
            info!(job = %id, scheduled_for = %rfc3339(t), local = %local, late_ms, "cron fire");
            self.emit(&SchedulerEvent::Fired {
                job_id: id,
                scheduled_for: rfc3339(t),
                scheduled_for_local: local,
                late_ms,
            });
            self.fired += 1;
        }
        for (id, d, records, ticket) in decided {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.next = e.spec.plan.schedule.next_after(d.cursor);
            }
            if let Some(t) = d.skipped_overlap {
                let running = self.tracker.running(&id);
                let max_parallel_runs = self.jobs.get(&id).map(|e| e.spec.plan.max_parallel_runs).unwrap_or(0);
                warn!(job = %id, scheduled_for = %rfc3339(t), running, max_parallel_runs, "cron time skipped: the job is still running");
                self.emit(&SchedulerEvent::SkippedOverlap {
                    job_id: id.clone(),
                    scheduled_for: rfc3339(t),
                    running,
                    max_parallel_runs,
                });
            }
            if let Some(newest) = d.missed.last() {
                let count = d.missed_count();
                warn!(job = %id, scheduled_for = %rfc3339(newest.at), reason = newest.reason.as_str(), count, "cron time missed");
                self.emit(&SchedulerEvent::Missed {
                    job_id: id.clone(),
                    scheduled_for: rfc3339(newest.at),
                    reason: newest.reason.as_str().to_string(),
                    count,
                });
            }
            for r in records {
                self.records.write(r, Some(ticket.clone()));
            }
            self.tickets.push(ticket);
        }
        true
    }

    /// Drop the decisions that are done from the state's `pending` lists
    /// (in memory; written with the next state write). Whether any was.
    fn prune_confirmed(&mut self) -> bool {
        let mut changed = false;
        let state = &mut self.state;
        self.tickets.retain(|t| {
            if !t.is_done() {
                return true;
            }
            if let Some(st) = state.jobs.get_mut(&t.job_id) {
                let n = st.pending.len();
                st.pending.retain(|p| p.at != t.at);
                changed |= st.pending.len() != n;
            }
            false
        });
        changed
    }

    /// Write what is left to write: the queued records, and the state
    /// without the decisions that are done (at shutdown).
    pub fn checkpoint(&mut self) {
        self.records.flush();
        if self.prune_confirmed() {
            self.persist();
        }
    }

    /// After a crash: for every decision still pending in the state, derive
    /// its run and records again and write the records that are missing — a
    /// `scheduler_stopped` missed record for a run that never got a run
    /// directory. Nothing is started.
    fn recover(&mut self) {
        let mut changed = false;
        let runs_dir = self.root.runs_dir();
        let ids: Vec<String> = self
            .state
            .jobs
            .iter()
            .filter(|(_, st)| !st.pending.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(st) = self.state.jobs.get_mut(&id) else { continue };
            let pending = std::mem::take(&mut st.pending);
            changed = true;
            let Some(entry) = self.jobs.get(&id) else {
                warn!(job = %id, "decisions pending from a previous scheduler, but the job is not loaded; not recovered");
                continue;
            };
            let oldest = pending.iter().map(|p| p.after).min().unwrap_or(DateTime::<Utc>::MIN_UTC);
            let on_disk = recorded_since(&runs_dir, &id, oldest);
            let mut written = 0;
            for p in &pending {
                if p.schedule != entry.spec.plan.fingerprint() {
                    continue;
                }
                let Some(d) = plan::decide(&entry.spec.plan, p.after, p.at, p.serving_since, p.busy) else {
                    continue;
                };
                let mut records = decision_records(entry, &d, p.at, None);
                if let Some(t) = d.fire
                    && !on_disk.runs.contains(&t)
                    && on_disk.without_receipt == 0
                {
                    let mut r = record_for(entry, RunStatus::Missed, t, MISSED_SCHEDULER_STOPPED, json!({}));
                    r.details = json!({"message": "the scheduler stopped after deciding to run this time and before the run started"});
                    records.push(r);
                }
                for r in records {
                    if on_disk.records.contains(&(r.status.as_str(), r.scheduled_for)) {
                        continue;
                    }
                    match records::write_record(&runs_dir, &r) {
                        Ok(_) => written += 1,
                        Err(e) => error!(job = %id, error = %e, "cannot write a recovered record"),
                    }
                }
            }
            if written > 0 {
                warn!(job = %id, records = written, "wrote the records a stopped scheduler left unwritten");
            }
        }
        if changed {
            self.persist();
        }
    }

    fn state_write_failed(&self, message: &str) -> bool {
        error!(message, "scheduler state not written; nothing fires until it can be");
        self.emit(&SchedulerEvent::StateWriteFailed { message: message.to_string() });
        false
    }

    /// Does `job_id` already have `max` runs in progress (here, or in
    /// another process holding its slot locks)?
    fn is_busy(&self, job_id: &str, max: u32) -> bool {
        let here = self.tracker.running(job_id);
        if here >= max {
            return true;
        }
        self.opts.probe_slots && held_slots(&self.root, job_id, max) >= max
    }

    fn emit(&self, event: &SchedulerEvent) {
        if let Some(o) = &self.opts.observer {
            o(event);
        }
    }

    /// Merge what commands wrote to the state file (pause, resume, …).
    fn take_disk_changes(&mut self) {
        if !self.store.changed_on_disk() {
            return;
        }
        match self.store.read() {
            Ok(disk) => {
                let before: BTreeMap<String, Activity> = self.state.jobs.iter().map(|(k, v)| (k.clone(), v.state)).collect();
                for id in self.state.merge_from_disk(disk) {
                    let Some(st) = self.state.jobs.get(&id) else { continue };
                    if let Some(e) = self.jobs.get_mut(&id) {
                        e.next = e.spec.plan.schedule.next_after(st.cursor);
                    }
                    if before.get(&id) != Some(&st.state) {
                        info!(job = %id, state = st.state.as_str(), "job state changed");
                        let event = SchedulerEvent::StateChanged {
                            job_id: id.clone(),
                            state: st.state,
                        };
                        self.emit(&event);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read the scheduler state file; keeping the state in memory");
            }
        }
    }

    /// Check the spec files and the state file for changes; reload what
    /// changed.
    fn rescan(&mut self, now: DateTime<Utc>) {
        self.take_disk_changes();
        let dir = self.root.jobs_dir.clone();
        // Files added, removed or renamed into place (how editors, `mv` and
        // atomic writers replace a file) change the directory: look at every
        // file then. Files edited in place do not: look at every file every
        // `rescan_every`, or less often when that costs too much.
        let dir_modified = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        if self.built && dir_modified == self.dir_modified && now < self.next_full_scan {
            return;
        }
        let started = std::time::Instant::now();
        let listing = scan_spec_files(&dir);
        self.last_scan = Some(started.elapsed());
        let mut changed = false;
        let mut known = 0;
        for (name, stamp) in &listing {
            if let Some(c) = self.specs.get(name) {
                known += 1;
                if c.stamp == *stamp {
                    continue;
                }
            }
            changed = true;
            let path = dir.join(name);
            let parsed = self.parse_spec(spec::load_file(&path), *stamp);
            self.specs.insert(name.clone(), CachedSpec { path, stamp: *stamp, parsed });
        }
        if known < self.specs.len() {
            let present: HashSet<&OsString> = listing.iter().map(|(n, _)| n).collect();
            self.specs.retain(|name, _| present.contains(name));
            changed = true;
        }
        if changed || !self.built {
            self.built = true;
            self.rebuild(now);
        }
        let cost = self.last_scan.map(|d| d * FULL_SCAN_COST_FACTOR).unwrap_or_default();
        let cost = TimeDelta::from_std(cost).unwrap_or(TimeDelta::MAX);
        self.next_full_scan = now + self.opts.rescan_every.max(cost);
        self.dir_modified = dir_modified;
    }

    fn parse_spec(&self, f: SpecFile, stamp: Stamp) -> Parsed {
        match &f.spec {
            Err(e) => {
                warn!(path = %f.path.display(), code = %e.code, error = %e.message, "invalid job spec; the other jobs keep their schedules");
                self.emit(&SchedulerEvent::SpecInvalid {
                    path: f.path.clone(),
                    code: e.code,
                    message: e.message.clone(),
                });
                Parsed::Invalid
            }
            Ok(s) => match JobPlan::from_spec(s) {
                None => Parsed::Manual(s.id.clone()),
                Some(plan) => Parsed::Cron(Arc::new(CronSpec {
                    plan,
                    target: json!({"kind": s.target.kind, "id": s.target.id, "requirement": s.target.version}),
                    prepared: PreparedSpec { stamp, file: Arc::new(f) },
                })),
            },
        }
    }

    /// Rebuild the job table from the cached specs and reconcile the state.
    fn rebuild(&mut self, now: DateTime<Utc>) {
        let mut by_id: BTreeMap<String, Vec<&CachedSpec>> = BTreeMap::new();
        for c in self.specs.values() {
            match &c.parsed {
                Parsed::Cron(s) => by_id.entry(s.plan.id.clone()).or_default().push(c),
                Parsed::Manual(id) => by_id.entry(id.clone()).or_default().push(c),
                Parsed::Invalid => {}
            }
        }
        let mut duplicates = BTreeMap::new();
        let mut jobs = BTreeMap::new();
        let mut old = std::mem::take(&mut self.jobs);
        for (id, specs) in by_id {
            if specs.len() > 1 {
                let mut paths: Vec<PathBuf> = specs.iter().map(|c| c.path.clone()).collect();
                paths.sort();
                if self.duplicates.get(&id) != Some(&paths) {
                    warn!(job = %id, files = ?paths, "job id declared by several spec files; not scheduled");
                    self.emit(&SchedulerEvent::DuplicateId {
                        job_id: id.clone(),
                        paths: paths.clone(),
                    });
                }
                duplicates.insert(id, paths);
                continue;
            }
            let Parsed::Cron(s) = &specs[0].parsed else { continue };
            let previous = old.remove(&id);
            let same = previous.as_ref().is_some_and(|p| Arc::ptr_eq(&p.spec, s));
            jobs.insert(id, (Entry { spec: s.clone(), next: None }, same));
        }
        self.duplicates = duplicates;
        let mut dirty = false;
        for id in old.keys() {
            info!(job = %id, "cron job unloaded (spec removed, invalid, duplicated or no longer cron)");
            self.emit(&SchedulerEvent::JobUnloaded { job_id: id.clone() });
        }
        // Jobs in the state that are not scheduled now: times from now on
        // are not missed times if they come back.
        for (id, st) in self.state.jobs.iter_mut() {
            if !jobs.contains_key(id) && st.unloaded_at.is_none() {
                st.unloaded_at = Some(now);
                dirty = true;
            }
        }
        let mut table = BTreeMap::new();
        let mut loaded = Vec::new();
        for (id, (mut entry, same)) in jobs {
            let fp = entry.spec.plan.fingerprint();
            let st = match self.state.jobs.get_mut(&id) {
                None => {
                    dirty = true;
                    self.state.jobs.entry(id.clone()).or_insert_with(|| JobState::new(now, fp.clone()))
                }
                Some(st) => {
                    if st.schedule != fp {
                        if !st.schedule.is_empty() {
                            info!(job = %id, from = %st.schedule, to = %fp, "schedule changed; counting from now");
                            st.cursor = st.cursor.max(now);
                        }
                        st.schedule = fp.clone();
                        dirty = true;
                    }
                    if st.unloaded_at.take().is_some() {
                        st.cursor = st.cursor.max(now);
                        dirty = true;
                    }
                    st
                }
            };
            let schedule = &entry.spec.plan.schedule;
            entry.next = schedule.next_after(st.cursor);
            if !same {
                let next = schedule.next_after(now.max(st.cursor)).map(|t| schedule.fire_time(t));
                info!(job = %id, cron = schedule.expr(), timezone = schedule.timezone().name(), state = st.state.as_str(), "cron job loaded");
                let event = SchedulerEvent::JobLoaded {
                    job_id: id.clone(),
                    cron: schedule.expr().to_string(),
                    timezone: schedule.timezone().name().to_string(),
                    state: st.state,
                    next_fire: next.as_ref().map(|n| rfc3339(n.utc)),
                    next_fire_local: next.map(|n| n.local),
                };
                if let Some(o) = &self.opts.observer {
                    o(&event);
                }
            }
            if !same {
                loaded.push(id.clone());
            }
            table.insert(id, entry);
        }
        self.jobs = table;
        if !loaded.is_empty() {
            self.launcher.prepare(loaded);
        }
        if dirty {
            self.persist();
        }
        // Threads for the largest group of jobs sharing their next time.
        let mut groups: HashMap<DateTime<Utc>, usize> = HashMap::new();
        for (id, e) in &self.jobs {
            if let Some(t) = e.next
                && self.state.jobs.get(id).is_some_and(|s| s.state == Activity::Active)
            {
                *groups.entry(t).or_default() += 1;
            }
        }
        self.launcher.reserve(groups.values().copied().max().unwrap_or(0));
    }

    /// Write the in-memory state (merging what commands changed first).
    fn persist(&mut self) {
        let lock = match self.store.lock() {
            Ok(l) => l,
            Err(e) => {
                self.state_write_failed(&format!("cannot lock the scheduler state: {e}"));
                return;
            }
        };
        self.take_disk_changes();
        if let Err(e) = self.store.write(&lock, &self.state) {
            self.state_write_failed(&format!("cannot write {}: {e}", self.store.path().display()));
        }
    }
}

/// The records of a decision made at `now`, oldest time first (`running`:
/// the runs in progress for an overlap, when known).
fn decision_records(e: &Entry, d: &Decision, now: DateTime<Utc>, running: Option<u32>) -> Vec<Record> {
    let plan = &e.spec.plan;
    let mut out = Vec::new();
    let base = json!({
        "catchup": plan.catchup,
        "starting_deadline_seconds": plan.starting_deadline.num_seconds(),
    });
    if let Some(f) = &d.folded {
        let mut details = base.clone();
        details["late_by_seconds"] = json!((now - f.first).num_seconds());
        details["missed_count"] = json!(f.count);
        details["missed_count_exact"] = json!(f.exact);
        details["missed_through"] = json!(rfc3339(f.last));
        out.push(record_for(e, RunStatus::Missed, f.first, f.reason.as_str(), details));
    }
    for m in &d.missed {
        let mut details = base.clone();
        details["late_by_seconds"] = json!((now - m.at).num_seconds());
        out.push(record_for(e, RunStatus::Missed, m.at, m.reason.as_str(), details));
    }
    if let Some(t) = d.skipped_overlap {
        let mut details = json!({"max_parallel_runs": plan.max_parallel_runs});
        if let Some(n) = running {
            details["running"] = json!(n);
        }
        out.push(record_for(e, RunStatus::SkippedOverlap, t, "overlap", details));
    }
    out
}

/// What a job's run directories hold for times after `after`: runs and
/// records by scheduled time, and run directories without a receipt yet.
struct OnDisk {
    runs: HashSet<DateTime<Utc>>,
    records: HashSet<(&'static str, DateTime<Utc>)>,
    without_receipt: usize,
}

/// Newest run directories first, down to the first one scheduled at or
/// before `after` (run ids sort by creation, and a decision's run and
/// records are created after every earlier decision's).
fn recorded_since(runs_dir: &Path, job_id: &str, after: DateTime<Utc>) -> OnDisk {
    let mut out = OnDisk {
        runs: HashSet::new(),
        records: HashSet::new(),
        without_receipt: 0,
    };
    for dir in crate::runs::run_dirs(runs_dir, job_id) {
        let Some(r) = crate::runs::read_receipt(&dir) else {
            out.without_receipt += 1;
            continue;
        };
        let Some(t) = r
            .trigger
            .get("scheduled_for")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
        else {
            continue;
        };
        if t <= after {
            break;
        }
        match r.status {
            RunStatus::Missed | RunStatus::SkippedOverlap => {
                out.records.insert((r.status.as_str(), t));
            }
            _ => {
                out.runs.insert(t);
            }
        }
    }
    out
}

fn record_for(e: &Entry, status: RunStatus, at: DateTime<Utc>, reason: &str, details: Value) -> Record {
    let s = &e.spec;
    Record {
        job_id: s.plan.id.clone(),
        status,
        scheduled_for: at,
        scheduled_for_local: s.plan.schedule.fire_time(at).local,
        timezone: s.plan.schedule.timezone().name().to_string(),
        reason: reason.to_string(),
        details,
        spec_sha256: s.spec_sha256(),
        spec_path: s.path().display().to_string(),
        target: s.target.clone(),
    }
}

/// `*.job.yaml` / `*.job.yml` files of `dir` (what [`spec::discover`]
/// reads) by file name, with their stamps: one `getdents` pass and one
/// `fstatat` per entry (symlinks followed), no parsing.
fn scan_spec_files(dir: &Path) -> Vec<(OsString, Stamp)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let bytes = name.as_encoded_bytes();
            if !(bytes.ends_with(b".job.yaml") || bytes.ends_with(b".job.yml")) {
                return None;
            }
            let meta = match e.file_type() {
                Ok(t) if t.is_symlink() => std::fs::metadata(e.path()),
                _ => e.metadata(),
            };
            let meta = meta.ok().filter(|m| m.is_file())?;
            Some((name, Stamp::of(&meta)))
        })
        .collect()
}

/// How many of a job's `max` run slots are held (by any process).
pub fn held_slots(root: &Root, job_id: &str, max: u32) -> u32 {
    let dir = root.state_dir().join("locks").join(job_id);
    let mut held = 0;
    for i in 0..max {
        let Ok(f) = File::options().write(true).open(dir.join(format!("slot-{i}.lock"))) else {
            continue;
        };
        match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
            }
            Err(TryLockError::WouldBlock) => held += 1,
            Err(TryLockError::Error(_)) => {}
        }
    }
    held
}

enum WriterMsg {
    Write(Box<Record>, Option<Arc<Ticket>>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Writes missed / overlap records on a thread of its own, so a burst of
/// them (after downtime) never delays a fire.
struct RecordWriter {
    runs_dir: PathBuf,
    tx: Option<std::sync::mpsc::Sender<WriterMsg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Write a record; its ticket part is done only when it is on disk.
fn write_logged(runs_dir: &Path, r: &Record, ticket: Option<&Ticket>) {
    match records::write_record(runs_dir, r) {
        Ok(_) => {
            if let Some(t) = ticket {
                t.part_done();
            }
        }
        Err(e) => {
            error!(job = %r.job_id, scheduled_for = %rfc3339(r.scheduled_for), error = %e, "cannot write the {} record", r.status.as_str());
        }
    }
}

impl RecordWriter {
    fn start(runs_dir: PathBuf) -> RecordWriter {
        let (tx, rx) = std::sync::mpsc::channel::<WriterMsg>();
        let dir = runs_dir.clone();
        let thread = std::thread::Builder::new()
            .name("lily-records".into())
            .spawn(move || {
                for msg in rx {
                    match msg {
                        WriterMsg::Write(r, ticket) => write_logged(&dir, &r, ticket.as_deref()),
                        WriterMsg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .ok();
        let tx = thread.as_ref().map(|_| tx);
        RecordWriter { runs_dir, tx, thread }
    }

    fn write(&self, r: Record, ticket: Option<Arc<Ticket>>) {
        let unsent = match &self.tx {
            Some(tx) => match tx.send(WriterMsg::Write(Box::new(r), ticket)) {
                Ok(()) => None,
                Err(std::sync::mpsc::SendError(WriterMsg::Write(r, ticket))) => Some((*r, ticket)),
                Err(_) => None,
            },
            None => Some((r, ticket)),
        };
        // No writer thread: write in line.
        if let Some((r, ticket)) = unsent {
            write_logged(&self.runs_dir, &r, ticket.as_deref());
        }
    }

    fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if let Some(tx) = &self.tx
            && tx.send(WriterMsg::Flush(done)).is_ok()
        {
            let _ = wait.recv();
        }
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Called with each fire right before [`Lily::run_job`] is invoked for it
/// (instrumentation).
pub type InvokeHook = Arc<dyn Fn(&Fire) + Send + Sync>;

/// Starts runs through [`Lily::run_job`], each on a thread of its own from a
/// [`RunPool`] (a run's file writes and guest code then never hold up the
/// scheduler or each other), with the cron trigger and a shared cancellation
/// signal. Runs due at the same instant start as a [`Batch`].
pub struct ExecutorLauncher {
    lily: Arc<Lily>,
    cancel: Cancel,
    handle: tokio::runtime::Handle,
    observer: Option<Observer>,
    on_invoke: Option<InvokeHook>,
    pool: RunPool,
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
struct Batch {
    state: Mutex<BatchState>,
    cv: std::sync::Condvar,
    /// Whether started runs wait for the others (not when there are more
    /// runs than threads: the last ones could only start when others end).
    wait_for_all: bool,
}

struct BatchState {
    open: bool,
    not_started: usize,
}

impl Batch {
    fn new(n: usize) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(BatchState { open: false, not_started: n }),
            cv: std::sync::Condvar::new(),
            wait_for_all: n <= super::pool::MAX_THREADS,
        })
    }

    fn open(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.open = true;
        }
        self.cv.notify_all();
    }

    fn wait_open(&self) {
        if let Ok(g) = self.state.lock() {
            drop(self.cv.wait_while(g, |s| !s.open));
        }
    }

    /// This run started (`wait`: then wait for the others) or ended without starting.
    fn started(&self, wait: bool) {
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
struct BatchSeat {
    batch: Arc<Batch>,
    counted: std::sync::atomic::AtomicBool,
}

impl BatchSeat {
    fn started(&self, wait: bool) {
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
        }
    }

    /// Call `hook` right before each run is handed to the executor.
    pub fn on_invoke(mut self, hook: InvokeHook) -> ExecutorLauncher {
        self.on_invoke = Some(hook);
        self
    }

    fn task(&self, fire: Fire, guard: RunGuard, batch: Option<Arc<Batch>>) -> Box<dyn FnOnce() + Send + 'static> {
        let lily = self.lily.clone();
        let cancel = self.cancel.clone();
        let handle = self.handle.clone();
        let observer = self.observer.clone();
        let on_invoke = self.on_invoke.clone();
        Box::new(move || {
            let seat = batch.map(|batch| {
                batch.wait_open();
                Arc::new(BatchSeat {
                    batch,
                    counted: std::sync::atomic::AtomicBool::new(false),
                })
            });
            run_fire(&lily, fire, guard, cancel, &handle, observer.as_ref(), on_invoke.as_ref(), seat);
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
    /// a time under its lock.
    fn prepare(&self, job_ids: Vec<String>) {
        let runs = self.lily.root.runs_dir();
        self.pool.run_all(vec![Box::new(move || {
            for id in job_ids {
                if let Err(e) = crate::runs::prepare_job_dir(&runs, &id) {
                    warn!(job = %id, error = %e, "cannot create the job's run directory");
                }
            }
        })]);
    }
}

/// One cron run on the current (pool) thread.
#[allow(clippy::too_many_arguments)]
fn run_fire(
    lily: &Lily,
    fire: Fire,
    guard: RunGuard,
    cancel: Cancel,
    handle: &tokio::runtime::Handle,
    observer: Option<&Observer>,
    on_invoke: Option<&InvokeHook>,
    seat: Option<Arc<BatchSeat>>,
) {
    let start = guard.start_signal();
    let _guard = guard;
    let scheduled_for = rfc3339(fire.scheduled_for);
    // A run that cannot start leaves a `missed` record saying why.
    let not_started = |code: ErrorCode, message: String| {
        warn!(job = %fire.job_id, scheduled_for = %scheduled_for, code = %code, error = %message, "cron run did not start");
        match records::write_record(&lily.root.runs_dir(), &fire.not_started_record(code, &message)) {
            Ok(_) => start.started(),
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
    // `job_started` comes right after the run's first receipt is written.
    let signal = start.clone();
    let run_observer: Box<dyn Fn(&str, &Value) + Send + Sync> = Box::new(move |kind: &str, _: &Value| {
        if kind == "job_started" {
            signal.started();
            if let Some(seat) = &seat {
                seat.started(true);
            }
        }
    });
    let opts = RunOptions {
        trigger: TriggerInfo::Cron {
            scheduled_for: fire.scheduled_for,
            local: fire.local.clone(),
            timezone: fire.timezone.clone(),
        },
        cancel,
        wait: false,
        observer: Some(run_observer),
        spec_override: Some(spec_file),
        ..RunOptions::default()
    };
    if let Some(hook) = on_invoke {
        hook(&fire);
    }
    match handle.block_on(lily.run_job(&fire.job_id, opts)) {
        Ok(res) => {
            start.started();
            let r = &res.receipt;
            info!(job = %fire.job_id, run_id = %r.run_id, status = r.status.as_str(), scheduled_for = %scheduled_for, "cron run finished");
            if let Some(o) = observer {
                o(&SchedulerEvent::RunFinished {
                    job_id: fire.job_id.clone(),
                    run_id: r.run_id.clone(),
                    status: r.status,
                    scheduled_for: scheduled_for.clone(),
                    run_dir: res.run_dir.clone(),
                });
            }
        }
        Err(e) => not_started(e.code, e.message),
    }
}

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
    let launcher = Arc::new(ExecutorLauncher::new(Arc::new(lily), cancel.clone(), opts.observer.clone()));
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
    });
    let report = run_loop(&mut sched, &clock, shutdown, opts.grace, &cancel).await;
    drop(sched);
    drop(lock);
    Ok(report)
}

#[cfg(test)]
mod tests;
