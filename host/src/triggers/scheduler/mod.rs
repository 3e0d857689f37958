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

mod events;
mod launcher;
mod recovery;
mod serve;
mod tickets;
mod tracker;
mod watch;
mod writer;

pub use events::*;
pub use launcher::*;
use recovery::*;
pub use serve::*;
pub use tickets::*;
pub use tracker::*;
use watch::*;
use writer::*;

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
    /// Compiled schedules of the jobs that needed one lately (bounded).
    schedules: Mutex<ScheduleCache>,
    /// One target record per distinct target of the loaded jobs.
    targets: Mutex<HashMap<(String, String, Option<String>), Arc<crate::runs::TargetRecord>>>,
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
            schedules: Mutex::new(ScheduleCache::default()),
            targets: Mutex::new(HashMap::new()),
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
        let mut cache = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        for (id, e) in self.jobs.iter_mut() {
            let schedule = cache.get(&e.spec.cron, e.spec.tz);
            e.next = self.state.jobs.get(id).zip(schedule).and_then(|(st, s)| s.next_after(st.cursor));
        }
    }

    /// The decision inputs of a loaded job, its schedule compiled (or taken
    /// from the bounded cache).
    fn plan_of(&self, spec: &CronSpec) -> Option<JobPlan> {
        let schedule = self.schedules.lock().ok()?.get(&spec.cron, spec.tz)?;
        Some(JobPlan {
            id: spec.id.clone(),
            schedule,
            catchup: spec.catchup,
            starting_deadline: spec.starting_deadline,
            max_parallel_runs: spec.max_parallel_runs,
        })
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
        let mut decided: Vec<(String, JobPlan, Decision, Vec<Record>, Arc<Ticket>)> = Vec::new();
        let mut before: Vec<(String, JobState)> = Vec::new();
        for id in due {
            let (Some(entry), Some(st)) = (self.jobs.get(id), self.state.jobs.get(id)) else {
                continue;
            };
            if st.state != Activity::Active {
                continue;
            }
            let Some(job) = self.plan_of(&entry.spec) else { continue };
            let busy = self.is_busy(id, job.max_parallel_runs);
            let Some(d) = plan::decide(&job, st.cursor, now, self.serving_since, busy) else {
                continue;
            };
            let running = d.skipped_overlap.map(|_| self.tracker.running(id));
            let records = decision_records(&entry.spec, &job, &d, now, running);
            let ticket = Ticket::new(id, now, records.len() + usize::from(d.fire.is_some()));
            let pending = PendingDecision {
                after: st.cursor,
                at: now,
                serving_since: self.serving_since,
                busy,
                schedule: job.fingerprint(),
            };
            if let Some(st) = self.state.jobs.get_mut(id) {
                before.push((id.clone(), st.clone()));
                st.cursor = d.cursor;
                if let Some(f) = d.fire {
                    st.last_scheduled_for = Some(f);
                }
                st.pending.push(pending);
            }
            decided.push((id.clone(), job, d, records, ticket));
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
        for (id, job, d, _, ticket) in &decided {
            if let (Some(t), Some(e)) = (d.fire, self.jobs.get(id)) {
                let fire = Fire {
                    job_id: id.clone(),
                    scheduled_for: t,
                    local: job.schedule.fire_time(t).local,
                    timezone: job.schedule.timezone().name().to_string(),
                    spec_path: e.spec.path().to_path_buf(),
                    spec_sha256: e.spec.spec_sha256(),
                    target: (*e.spec.target).clone(),
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
        for (id, job, d, records, ticket) in decided {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.next = job.schedule.next_after(d.cursor);
            }
            if let Some(t) = d.skipped_overlap {
                let running = self.tracker.running(&id);
                let max_parallel_runs = job.max_parallel_runs;
                info!(job = %id, scheduled_for = %rfc3339(t), running, max_parallel_runs, "cron time skipped: the job is still running");
                self.emit(&SchedulerEvent::SkippedOverlap {
                    job_id: id.clone(),
                    scheduled_for: rfc3339(t),
                    running,
                    max_parallel_runs,
                });
            }
            if let Some(newest) = d.newest_miss() {
                let count = d.missed_count();
                info!(job = %id, scheduled_for = %rfc3339(newest.at), reason = newest.reason.as_str(), count, "cron time missed");
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
        self.opts.probe_slots && crate::jobs::executor::held_slots(&self.root, job_id, max) >= max
    }

    fn emit(&self, event: &SchedulerEvent) {
        if let Some(o) = &self.opts.observer {
            o(event);
        }
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

#[cfg(test)]
mod tests;
