//! The run store: `.lily/runs/<job_id>/<run_id>/` with `run_receipt.json`
//! (atomic), `events.jsonl` (append-only, one write per event),
//! `summary.md`, the spec snapshot and target artifacts.
//!
//! **One writer per run, across processes.** The run's events file and
//! receipt are written only under the run's writer lock (`.writer.lock`,
//! an exclusive `flock`): by the run itself ([`EventLog`], [`RunDir`]) and by
//! an operator deciding one of its approvals from another process
//! ([`record_operator_decision`]). Whoever holds the lock first reads what
//! others appended since its last write, so `seq` is one counter per run,
//! and an operator's decision recorded while the run is still going is
//! merged into every receipt the run writes afterwards instead of being
//! overwritten by it.

mod dir;
mod events;
mod receipt;

pub use dir::{RunDir, new_run_id};
pub use events::{EventLog, EventSink, Writer, record_operator_decision};
pub use receipt::{
    ApprovalRecord, ApprovalState, ArtifactRecord, Attempt, AttemptStatus, ComponentRecord, Decision, DriftRecord, PolicyRecord, Receipt, ReceiptError,
    RunStatus, StepRecord, TargetRecord, TriggerRecord, Verdict, Verification, WorkspaceChange,
};

use crate::util::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RECEIPT: &str = "run_receipt.json";
pub const EVENTS: &str = "events.jsonl";
pub const SUMMARY_MD: &str = "summary.md";
pub const SUMMARY_JSON: &str = "summary.json";
pub const SPEC_SNAPSHOT: &str = "job_spec.yaml";
pub const RUN_LOCK: &str = ".run.lock";
/// The cross-process writer lock of a run's events and receipt.
pub const WRITER_LOCK: &str = ".writer.lock";
/// Clock reads per step (what replay feeds back).
pub const TAPES: &str = "clock_tapes.json";

/// Create a job's run directory (`runs/<job>/`) if it is missing.
pub fn prepare_job_dir(runs_dir: &Path, job_id: &str) -> std::io::Result<PathBuf> {
    let dir = runs_dir.join(job_id);
    crate::util::ensure_dir(&dir)?;
    Ok(dir)
}

/// A run as listed from disk.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub job_id: String,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub trigger: String,
    pub error_code: Option<String>,
    pub replay_of: Option<String>,
    /// For cron runs and missed / skipped records: the scheduled time (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    /// A replay run with `--verify`: whether it was identical to its original.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_identical: Option<bool>,
    pub path: PathBuf,
}

/// Read a receipt, deriving `interrupted` for a dead `running` run, and for
/// a dead run whose process was killed before its first receipt was written.
pub fn read_receipt(run_dir: &Path) -> Option<Receipt> {
    let parsed = std::fs::read(run_dir.join(RECEIPT))
        .ok()
        .and_then(|text| serde_json::from_slice::<Receipt>(&text).ok());
    let Some(mut r) = parsed else {
        return orphan_receipt(run_dir);
    };
    if r.status == RunStatus::Running && !owner_alive(run_dir) {
        r.status = RunStatus::Interrupted;
    }
    Some(r)
}

/// A run directory without a readable receipt (`kill -9` between creating
/// the directory and writing the first receipt): `interrupted` once no
/// process holds its lock — or, with no lock file yet, once the directory is
/// older than a starting run could be. `None` while it may still be starting.
fn orphan_receipt(run_dir: &Path) -> Option<Receipt> {
    let run_id = run_dir.file_name()?.to_str()?;
    let job_id = run_dir.parent()?.file_name()?.to_str()?;
    let started = chrono::NaiveDateTime::parse_from_str(run_id.split_once('Z')?.0, "%Y%m%dT%H%M%S%.3f")
        .ok()?
        .and_utc();
    if run_dir.join(RUN_LOCK).exists() {
        if owner_alive(run_dir) {
            return None;
        }
    } else {
        let age = std::fs::metadata(run_dir).and_then(|m| m.modified()).ok()?.elapsed().unwrap_or_default();
        if age < std::time::Duration::from_secs(10) {
            return None;
        }
    }
    let mut r = Receipt::start(job_id, run_id, TriggerRecord::Unknown, "", "");
    r.status = RunStatus::Interrupted;
    r.started_at = rfc3339(started);
    r.pid = 0;
    r.error = Some(ReceiptError {
        code: crate::error::ErrorCode::JobExecutionFailed,
        message: "the run was interrupted before its first receipt was written".into(),
        cause: json!({"kind": "interrupted"}),
        first_event_seq: None,
    });
    Some(r)
}

/// Is the process that owns this run still holding its lock?
pub fn owner_alive(run_dir: &Path) -> bool {
    match File::open(run_dir.join(RUN_LOCK)) {
        Ok(f) => match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

fn summarize(r: &Receipt, path: PathBuf) -> RunSummary {
    RunSummary {
        job_id: r.job_id.clone(),
        run_id: r.run_id.clone(),
        status: r.status,
        started_at: r.started_at.clone(),
        ended_at: r.ended_at.clone(),
        trigger: r.trigger.kind().to_string(),
        error_code: r.error.as_ref().map(|e| e.code.as_str().to_string()),
        replay_of: r.replay_of.clone(),
        scheduled_for: r.trigger.scheduled_for().map(str::to_string),
        verified_identical: r.verify.as_ref().map(|v| v.identical),
        path,
    }
}

/// Run directories of a job, newest first (names sort by start time).
pub fn run_dirs(runs_dir: &Path, job_id: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(runs_dir.join(job_id))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.reverse();
    v
}

/// Per-job index of finished runs (`.lily/runs/<job>/index.jsonl`): one
/// line per run, appended after its final receipt. A cache for listing —
/// the receipts stay the source of truth, and a run missing from the index
/// (still running, killed, or older) is read from its receipt.
pub const INDEX: &str = "index.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    run_id: String,
    status: RunStatus,
    started_at: String,
    ended_at: Option<String>,
    trigger: String,
    error_code: Option<String>,
    replay_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified_identical: Option<bool>,
}

/// Append a finished run to its job's index (one `write`, O_APPEND).
pub fn append_index(runs_dir: &Path, r: &Receipt) -> std::io::Result<()> {
    let s = summarize(r, PathBuf::new());
    let entry = IndexEntry {
        run_id: s.run_id,
        status: s.status,
        started_at: s.started_at,
        ended_at: s.ended_at,
        trigger: s.trigger,
        error_code: s.error_code,
        replay_of: s.replay_of,
        scheduled_for: s.scheduled_for,
        verified_identical: s.verified_identical,
    };
    let mut line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut f = crate::util::private_open_options()
        .create(true)
        .append(true)
        .open(runs_dir.join(&r.job_id).join(INDEX))?;
    f.write_all(line.as_bytes())
}

fn read_index(runs_dir: &Path, job_id: &str) -> std::collections::HashMap<String, IndexEntry> {
    let Ok(text) = std::fs::read_to_string(runs_dir.join(job_id).join(INDEX)) else {
        return Default::default();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<IndexEntry>(l).ok())
        .map(|e| (e.run_id.clone(), e))
        .collect()
}

/// History of a job, newest first: finished runs from the index, the rest
/// from their receipts.
/// Runs read at most by [`failing_streak`].
pub const STREAK_SCAN: usize = 1000;

/// A job whose latest runs all failed: how many in a row, since when, and
/// the newest one's error.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailingStreak {
    pub count: usize,
    /// `true` when the scan stopped at [`STREAK_SCAN`] runs, all failing.
    pub capped: bool,
    /// When the oldest failing run of the streak started.
    pub since: String,
    pub error_code: Option<String>,
    pub message: Option<String>,
}

/// The failing streak of a job: its newest runs that `failed` or were
/// `denied`, up to the newest run that did anything else (`missed` /
/// `skipped_overlap` records and runs in progress neither count nor end
/// it). `None` when the newest finished run did not fail.
pub fn failing_streak(runs_dir: &Path, job_id: &str) -> Option<FailingStreak> {
    let mut streak: Option<FailingStreak> = None;
    let mut ended = false;
    let listed = list_runs(runs_dir, job_id, STREAK_SCAN, None);
    let scanned = listed.len();
    for r in listed {
        match r.status {
            RunStatus::Failed | RunStatus::Denied => match &mut streak {
                None => {
                    let message = read_receipt(&r.path).and_then(|rc| rc.error.map(|e| e.message));
                    streak = Some(FailingStreak {
                        count: 1,
                        capped: false,
                        since: r.started_at.clone(),
                        error_code: r.error_code.clone(),
                        message,
                    })
                }
                Some(s) => {
                    s.count += 1;
                    s.since = r.started_at.clone();
                }
            },
            RunStatus::Missed | RunStatus::SkippedOverlap | RunStatus::Running => {}
            _ => {
                ended = true;
                break;
            }
        }
    }
    if let Some(s) = &mut streak {
        s.capped = !ended && scanned >= STREAK_SCAN;
    }
    streak
}

pub fn list_runs(runs_dir: &Path, job_id: &str, limit: usize, status: Option<RunStatus>) -> Vec<RunSummary> {
    let mut index = read_index(runs_dir, job_id);
    let mut out = Vec::new();
    for dir in run_dirs(runs_dir, job_id) {
        if out.len() >= limit {
            break;
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let summary = match index.remove(&name) {
            Some(e) => RunSummary {
                job_id: job_id.to_string(),
                run_id: e.run_id,
                status: e.status,
                started_at: e.started_at,
                ended_at: e.ended_at,
                trigger: e.trigger,
                error_code: e.error_code,
                replay_of: e.replay_of,
                scheduled_for: e.scheduled_for,
                verified_identical: e.verified_identical,
                path: dir,
            },
            None => {
                let Some(r) = read_receipt(&dir) else { continue };
                summarize(&r, dir)
            }
        };
        if status.is_some_and(|s| s != summary.status) {
            continue;
        }
        out.push(summary);
    }
    out
}

/// Find a run directory by run id (any job).
pub fn find_run(runs_dir: &Path, run_id: &str) -> Option<PathBuf> {
    if run_id.is_empty() || run_id.contains('/') || run_id.contains("..") {
        return None;
    }
    let rd = std::fs::read_dir(runs_dir).ok()?;
    let mut jobs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    jobs.sort();
    jobs.into_iter().map(|j| j.join(run_id)).find(|p| p.is_dir())
}

/// All events of a run (unparseable lines are skipped).
pub fn read_events(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join(EVENTS))
        .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// Is this a terminal event type?
pub fn is_terminal_event(kind: &str) -> bool {
    matches!(
        kind,
        "job_completed" | "job_failed" | "job_cancelled" | "job_denied" | "job_missed" | "job_skipped_overlap"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_sort_by_time() {
        let ids: Vec<String> = (0..1000).map(|_| new_run_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "created later sorts later, even within one millisecond");
    }

    #[test]
    fn dead_running_run_reads_as_interrupted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = RunDir::create(tmp.path(), "job").expect("create");
        let mut r = Receipt::start("job", &dir.run_id, TriggerRecord::Manual, "sha256:x", "p");
        let log = EventLog::create(&dir.path, &dir.run_id, None).expect("log");
        dir.write_receipt(&mut r, &log).expect("write");
        assert_eq!(read_receipt(&dir.path).expect("read").status, RunStatus::Running);
        let path = dir.path.clone();
        drop(dir);
        assert_eq!(read_receipt(&path).expect("read").status, RunStatus::Interrupted);
    }

    #[test]
    fn every_writer_of_a_run_shares_one_seq_and_decisions_survive_the_runs_own_receipts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = RunDir::create(tmp.path(), "job").expect("create");
        let log = EventLog::create(&dir.path, &dir.run_id, None).expect("log");
        let mut r = Receipt::start("job", &dir.run_id, TriggerRecord::Manual, "sha256:x", "p");
        let request = |id: &str| ApprovalRecord {
            id: id.into(),
            kind: "write_file".into(),
            target: "notes/a.md".into(),
            state: ApprovalState::Pending,
            sha256: "sha256:x".into(),
            bytes: 1,
            runnable: "r.v1".into(),
            reason: "test".into(),
        };
        r.approvals_requested = vec![request("apr-1"), request("apr-2")];
        log.emit("job_started", json!({}));
        dir.write_receipt(&mut r, &log).expect("progress");
        // An operator (another writer) decides while the run is going …
        record_operator_decision(&dir.path, &dir.run_id, "apr-2", "approval_applied", ApprovalState::Applied).expect("decide");
        log.emit("job_completed", json!({}));
        // … and the run's own receipts keep the decision.
        dir.commit_receipt(&mut r, &log).expect("commit");
        let on_disk = read_receipt(&dir.path).expect("receipt");
        assert_eq!(on_disk.approvals_requested[0].state, ApprovalState::Pending);
        assert_eq!(on_disk.approvals_requested[1].state, ApprovalState::Applied);
        let seqs: Vec<u64> = read_events(&dir.path).iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        // After the run, decisions go into the committed receipt.
        record_operator_decision(&dir.path, &dir.run_id, "apr-1", "approval_denied", ApprovalState::Denied).expect("decide");
        let on_disk = read_receipt(&dir.path).expect("receipt");
        assert_eq!(on_disk.approvals_requested[0].state, ApprovalState::Denied);
        assert_eq!(read_events(&dir.path).last().expect("event")["seq"], 4);
    }

    #[test]
    fn events_have_increasing_seq_and_first_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = EventLog::create(tmp.path(), "r1", None).expect("log");
        log.emit("a", json!({}));
        log.emit("b", json!({"error_code": "x"}));
        log.emit("c", json!({"error_code": "y"}));
        assert_eq!(log.first_error_seq(), Some(2));
        let ev = read_events(tmp.path());
        assert_eq!(ev.iter().map(|e| e["seq"].as_u64().expect("seq")).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
