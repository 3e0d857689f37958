//! Durable scheduler state under `.lily/state/`.
//!
//! * `scheduler/jobs.json` — per cron job: `state` (`active` / `paused` /
//!   `disabled`), `last_scheduled_for` (the last scheduled time that fired)
//!   and `cursor` (every scheduled time up to it is decided: fired, missed or
//!   skipped). Written atomically ([`crate::util::atomic_write`]) and only
//!   under the lock file `scheduler/jobs.lock`, by the daemon (cursors) and
//!   by `lily jobs pause|resume|disable|enable` (states); each reads the file
//!   again under the lock before writing, so neither loses the other's
//!   change. One file for all jobs, because every write is fsynced: one
//!   write per firing instant, however many jobs share it.
//! * `scheduler.lock` — held (`File::try_lock`) by the one `lily jobs serve`
//!   of the root for its whole life; `scheduler.json` beside it says who
//!   (pid, start time). The lock, not the sidecar, says whether a scheduler
//!   runs: a sidecar left by a killed daemon is ignored.

pub use crate::util::Stamp;
use crate::util::atomic_write;
use crate::workspace::Root;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory of the scheduler state, under `.lily/state/`.
pub const SCHEDULER_DIR: &str = "scheduler";
/// The per-job state file, in [`SCHEDULER_DIR`].
pub const STATE_FILE: &str = "jobs.json";
/// Lock taken around every read-modify-write of [`STATE_FILE`].
pub const STATE_LOCK: &str = "jobs.lock";
/// The one-scheduler-per-root lock, under `.lily/state/`.
pub const DAEMON_LOCK: &str = "scheduler.lock";
/// Who holds [`DAEMON_LOCK`], under `.lily/state/`.
pub const DAEMON_INFO: &str = "scheduler.json";

/// Whether the scheduler fires a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Fires on schedule.
    #[default]
    Active,
    /// Held for a while (`lily jobs pause`): no fires, no records, until
    /// `resume`, which counts from the resume instant.
    Paused,
    /// Switched off (`lily jobs disable`): no fires, no records, no next fire
    /// shown, until `enable`, which counts from the enable instant.
    Disabled,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Paused => "paused",
            Activity::Disabled => "disabled",
        }
    }
}

/// The durable state of one cron job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub state: Activity,
    /// The last scheduled time a run was started for (recorded before the
    /// run starts, so a crash never makes it fire twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_for: Option<DateTime<Utc>>,
    /// Every scheduled time at or before this instant is decided.
    pub cursor: DateTime<Utc>,
    /// `"<cron> @ <timezone>"` the cursor belongs to.
    #[serde(default)]
    pub schedule: String,
    /// When `state` last changed by command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
    /// When a running scheduler saw the job's spec disappear (removed or
    /// invalid); times after it are not missed times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unloaded_at: Option<DateTime<Utc>>,
    /// Decisions whose run has not yet been seen to start or whose records
    /// are not yet written. A scheduler that starts finds them here after a
    /// crash and writes what is missing (once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingDecision>,
}

/// A decision of [`crate::triggers::plan::decide`], by its inputs (it is a
/// pure function of them, so the same run and records can be derived again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDecision {
    /// The cursor before the decision.
    pub after: DateTime<Utc>,
    /// The instant of the decision.
    pub at: DateTime<Utc>,
    pub serving_since: DateTime<Utc>,
    pub busy: bool,
    /// The schedule fingerprint it was made with.
    pub schedule: String,
}

impl JobState {
    /// A job seen for the first time at `now`: nothing before `now` is due.
    pub fn new(now: DateTime<Utc>, schedule: String) -> JobState {
        JobState {
            state: Activity::Active,
            last_scheduled_for: None,
            cursor: now,
            schedule,
            changed_at: None,
            unloaded_at: None,
            pending: Vec::new(),
        }
    }
}

/// The content of [`STATE_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerState {
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobState>,
}

fn one() -> u32 {
    1
}

impl Default for SchedulerState {
    fn default() -> Self {
        SchedulerState {
            version: one(),
            jobs: BTreeMap::new(),
        }
    }
}

impl SchedulerState {
    /// Take in what another process wrote: `state` and `changed_at` come from
    /// disk (commands own them), cursors and `last_scheduled_for` only ever
    /// move forward, everything else (`pending`, `schedule`, `unloaded_at`)
    /// stays as the caller knows it. Returns the ids whose state or cursor
    /// changed.
    pub fn merge_from_disk(&mut self, disk: SchedulerState) -> Vec<String> {
        let mut changed = Vec::new();
        for (id, d) in disk.jobs {
            match self.jobs.get_mut(&id) {
                Some(m) => {
                    let before = (m.state, m.cursor);
                    m.state = d.state;
                    m.changed_at = d.changed_at;
                    m.cursor = m.cursor.max(d.cursor);
                    m.last_scheduled_for = m.last_scheduled_for.max(d.last_scheduled_for);
                    if m.schedule.is_empty() {
                        m.schedule = d.schedule;
                    }
                    if before != (m.state, m.cursor) {
                        changed.push(id);
                    }
                }
                None => {
                    self.jobs.insert(id.clone(), d);
                    changed.push(id);
                }
            }
        }
        changed
    }
}

/// The lock around a read-modify-write of [`STATE_FILE`]; released on drop.
pub struct StateLock {
    _file: File,
}

/// Reads and writes [`STATE_FILE`].
pub struct StateStore {
    dir: PathBuf,
    /// The version of the file this store last read or wrote.
    seen: Option<Stamp>,
}

impl StateStore {
    pub fn new(root: &Root) -> StateStore {
        StateStore {
            dir: root.state_dir().join(SCHEDULER_DIR),
            seen: None,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Take the state lock (blocking; holders keep it for milliseconds).
    pub fn lock(&self) -> io::Result<StateLock> {
        crate::util::ensure_dir(&self.dir)?;
        let file = crate::util::private_open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(STATE_LOCK))?;
        file.lock()?;
        Ok(StateLock { _file: file })
    }

    /// The state on disk (empty when there is no file yet). An unreadable
    /// file is an error: starting afresh would forget paused jobs.
    pub fn read(&mut self) -> io::Result<SchedulerState> {
        let path = self.path();
        let stamp = Stamp::of_path(&path);
        let state = read_state(&path)?;
        self.seen = stamp;
        Ok(state)
    }

    /// Whether the file differs from the version this store last read or wrote.
    pub fn changed_on_disk(&self) -> bool {
        Stamp::of_path(&self.path()) != self.seen
    }

    /// Write the state atomically (the caller holds the lock).
    pub fn write(&mut self, _lock: &StateLock, state: &SchedulerState) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let path = self.path();
        atomic_write(&path, &bytes)?;
        self.seen = Stamp::of_path(&path);
        Ok(())
    }

    /// Lock, read, change, write: what the commands use.
    pub fn update<T>(&mut self, f: impl FnOnce(&mut SchedulerState) -> T) -> io::Result<T> {
        let lock = self.lock()?;
        let mut state = self.read()?;
        let out = f(&mut state);
        self.write(&lock, &state)?;
        Ok(out)
    }
}

/// What [`set_activity`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub previous: Activity,
    pub state: Activity,
    pub changed: bool,
}

/// Set a job's state (`lily jobs pause|resume|disable|enable`), under the
/// state lock. Becoming active moves the cursor to `now`: the times that
/// passed while the job was paused or disabled are neither run nor recorded.
/// `schedule` is the job's current fingerprint, used when the job has no
/// state yet.
pub fn set_activity(root: &Root, job_id: &str, schedule: &str, to: Activity, now: DateTime<Utc>) -> io::Result<Transition> {
    StateStore::new(root).update(|s| {
        let st = s.jobs.entry(job_id.to_string()).or_insert_with(|| JobState::new(now, schedule.to_string()));
        let previous = st.state;
        if previous != to {
            st.state = to;
            st.changed_at = Some(now);
            if to == Activity::Active {
                st.cursor = st.cursor.max(now);
            }
        }
        Transition {
            previous,
            state: to,
            changed: previous != to,
        }
    })
}

/// Read a state file without a store (status). Missing → empty.
pub fn read_state(path: &Path) -> io::Result<SchedulerState> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a valid scheduler state file: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SchedulerState::default()),
        Err(e) => Err(e),
    }
}

/// Who runs the scheduler of a root ([`DAEMON_INFO`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub root: PathBuf,
    pub lily_version: String,
}

/// The held one-scheduler-per-root lock. Dropping it removes the sidecar
/// and releases the lock.
pub struct DaemonLock {
    file: Option<File>,
    info_path: PathBuf,
    pub info: DaemonInfo,
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info_path);
        if let Some(f) = self.file.take() {
            let _ = f.unlock();
        }
    }
}

/// Why [`acquire_daemon_lock`] failed.
#[derive(Debug)]
pub enum DaemonLockError {
    /// Another scheduler holds the lock; its sidecar, when readable.
    Held(Option<DaemonInfo>),
    Io(io::Error),
}

/// Take the scheduler lock of `root` and write the sidecar.
pub fn acquire_daemon_lock(root: &Root, started_at: DateTime<Utc>) -> Result<DaemonLock, DaemonLockError> {
    let dir = root.state_dir();
    crate::util::ensure_dir(&dir).map_err(DaemonLockError::Io)?;
    let file = crate::util::private_open_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(DAEMON_LOCK))
        .map_err(DaemonLockError::Io)?;
    // A status probe may hold the lock for a few microseconds: retry briefly.
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if attempts < 3 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
            Err(TryLockError::WouldBlock) => return Err(DaemonLockError::Held(read_daemon_info_patiently(root))),
            Err(TryLockError::Error(e)) => return Err(DaemonLockError::Io(e)),
        }
    }
    let info = DaemonInfo {
        pid: std::process::id(),
        started_at,
        root: root.path.clone(),
        lily_version: crate::VERSION.to_string(),
    };
    let info_path = dir.join(DAEMON_INFO);
    let bytes = serde_json::to_vec_pretty(&info).map_err(|e| DaemonLockError::Io(io::Error::other(e)))?;
    atomic_write(&info_path, &bytes).map_err(DaemonLockError::Io)?;
    Ok(DaemonLock {
        file: Some(file),
        info_path,
        info,
    })
}

/// The sidecar of a held lock; a scheduler that just took the lock writes
/// it a moment later, so wait a little for it.
fn read_daemon_info_patiently(root: &Root) -> Option<DaemonInfo> {
    for _ in 0..20 {
        if let Some(info) = read_daemon_info(root) {
            return Some(info);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

fn read_daemon_info(root: &Root) -> Option<DaemonInfo> {
    let bytes = std::fs::read(root.state_dir().join(DAEMON_INFO)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Is a scheduler serving `root`? `Some` when the lock is held, with the
/// sidecar's content when readable.
pub fn daemon_status(root: &Root) -> Option<Option<DaemonInfo>> {
    let file = File::options().write(true).open(root.state_dir().join(DAEMON_LOCK)).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_daemon_info_patiently(root)),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339 instant")
    }

    fn root() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join(".lily/jobs")).expect("mkdir");
        let root = Root::at(tmp.path().to_path_buf(), None).expect("root");
        (tmp, root)
    }

    #[test]
    fn state_round_trips_and_detects_outside_writes() {
        let (_tmp, root) = root();
        let mut daemon = StateStore::new(&root);
        assert_eq!(daemon.read().expect("read missing"), SchedulerState::default());
        let mut st = SchedulerState::default();
        st.jobs.insert("a".into(), JobState::new(utc("2026-01-01T00:00:00Z"), "* * * * * @ UTC".into()));
        let lock = daemon.lock().expect("lock");
        daemon.write(&lock, &st).expect("write");
        drop(lock);
        assert!(!daemon.changed_on_disk());
        assert_eq!(daemon.read().expect("read"), st);

        // A command pauses the job and moves the cursor.
        let mut cli = StateStore::new(&root);
        cli.update(|s| {
            let j = s.jobs.get_mut("a").expect("job");
            j.state = Activity::Paused;
            j.cursor = utc("2026-01-02T00:00:00Z");
        })
        .expect("update");
        assert!(daemon.changed_on_disk());
        let disk = daemon.read().expect("read");
        let mut mem = st.clone();
        mem.jobs.get_mut("a").expect("job").last_scheduled_for = Some(utc("2026-01-01T00:01:00Z"));
        let changed = mem.merge_from_disk(disk);
        assert_eq!(changed, vec!["a".to_string()]);
        let a = &mem.jobs["a"];
        assert_eq!(a.state, Activity::Paused);
        assert_eq!(a.cursor, utc("2026-01-02T00:00:00Z"));
        // What only the daemon knew is kept.
        assert_eq!(a.last_scheduled_for, Some(utc("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn merge_never_moves_a_cursor_back() {
        let mut mem = SchedulerState::default();
        mem.jobs.insert("a".into(), JobState::new(utc("2026-01-05T00:00:00Z"), "x".into()));
        let mut disk = SchedulerState::default();
        disk.jobs.insert("a".into(), JobState::new(utc("2026-01-01T00:00:00Z"), "x".into()));
        disk.jobs.insert("b".into(), JobState::new(utc("2026-01-01T00:00:00Z"), "y".into()));
        let changed = mem.merge_from_disk(disk);
        assert_eq!(changed, vec!["b".to_string()]);
        assert_eq!(mem.jobs["a"].cursor, utc("2026-01-05T00:00:00Z"));
    }

    #[test]
    fn an_unreadable_state_file_is_an_error_not_a_fresh_start() {
        let (_tmp, root) = root();
        let mut store = StateStore::new(&root);
        std::fs::create_dir_all(root.state_dir().join(SCHEDULER_DIR)).expect("mkdir");
        std::fs::write(store.path(), b"{not json").expect("write");
        let e = store.read().expect_err("corrupt");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("jobs.json"), "{e}");
    }

    #[test]
    fn one_daemon_lock_per_root() {
        let (_tmp, root) = root();
        assert_eq!(daemon_status(&root), None);
        let started = utc("2026-01-01T00:00:00Z");
        let lock = acquire_daemon_lock(&root, started).expect("first");
        match acquire_daemon_lock(&root, started) {
            Err(DaemonLockError::Held(Some(info))) => assert_eq!(info.pid, std::process::id()),
            other => panic!("expected Held, got {:?}", other.map(|l| l.info.clone())),
        }
        let status = daemon_status(&root).expect("running");
        assert_eq!(status.expect("info").started_at, started);
        drop(lock);
        assert_eq!(daemon_status(&root), None);
        assert!(!root.state_dir().join(DAEMON_INFO).exists());
        let again = acquire_daemon_lock(&root, started).expect("after release");
        drop(again);
    }

    #[test]
    fn a_stale_sidecar_does_not_mean_a_running_scheduler() {
        let (_tmp, root) = root();
        std::fs::create_dir_all(root.state_dir()).expect("mkdir");
        std::fs::write(root.state_dir().join(DAEMON_LOCK), b"").expect("lock file");
        std::fs::write(
            root.state_dir().join(DAEMON_INFO),
            br#"{"pid": 999999, "started_at": "2020-01-01T00:00:00Z", "root": "/x", "lily_version": "0"}"#,
        )
        .expect("sidecar");
        assert_eq!(daemon_status(&root), None);
        let lock = acquire_daemon_lock(&root, utc("2026-01-01T00:00:00Z")).expect("stale sidecar is ignored");
        assert_eq!(lock.info.pid, std::process::id());
    }
}
