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
mod index;
mod receipt;
mod retention;
pub mod store;

pub mod timeline;

pub use dir::{RunDir, new_run_id};
pub use events::{EventLog, EventSink, Writer, record_operator_decision};
pub use index::{INDEX, append_index, list_runs, note_new_run_dir};
pub use receipt::{
    ApprovalRecord, ApprovalState, ArtifactRecord, Attempt, AttemptStatus, ComponentRecord, Decision, DriftRecord, PolicyRecord, RECEIPT_VERSION, Receipt,
    ReceiptError, RunStatus, RunnerRecord, StepRecord, TargetRecord, TriggerRecord, Verdict, Verification, WorkspaceChange,
};
pub use retention::{Protected, PruneReport, Pruned, prune_job, run_id_started};

use crate::error::{ErrorCode, LilyError};
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

/// A cancel request for a run (`lily jobs cancel`): the run's executor
/// polls for it (a run under `lily jobs serve` is a task of the scheduler,
/// not a process of its own, so a signal cannot address it).
pub const CANCEL_REQUEST: &str = ".cancel-request";

/// How often a run looks for [`CANCEL_REQUEST`].
pub const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Ask the run in `run_dir` to cancel (atomic; who and when, as JSON).
pub fn request_cancel(run_dir: &Path, by: &str) -> std::io::Result<()> {
    let body = json!({"requested_at": rfc3339(chrono::Utc::now()), "by": by, "pid": std::process::id()});
    crate::util::write_atomic(&run_dir.join(CANCEL_REQUEST), body.to_string().as_bytes(), crate::util::Durability::Rename)
}

/// Whether someone asked the run in `run_dir` to cancel.
pub fn cancel_requested(run_dir: &Path) -> bool {
    run_dir.join(CANCEL_REQUEST).exists()
}

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
    /// A collapsed `missed` record: how many scheduled times it stands for
    /// (from `scheduled_for` to `missed_through`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed_through: Option<String>,
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
        missed_count: r.payload.get("missed_count").and_then(Value::as_u64),
        missed_through: r.payload.get("missed_through").and_then(Value::as_str).map(str::to_string),
        path,
    }
}

/// Every component digest some run under `runs_dir` recorded (what
/// `lily runnables prune` keeps). Reads every receipt.
pub fn recorded_digests(runs_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(runs_dir) else { return out };
    for job in rd.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let job_id = job.file_name().to_string_lossy().into_owned();
        for dir in run_dirs(runs_dir, &job_id) {
            if let Some(r) = read_receipt(&dir) {
                out.extend(r.components.into_iter().map(|c| c.digest));
            }
        }
    }
    out
}

/// Run directories of a job, newest first (names sort by start time).
pub fn run_dirs(runs_dir: &Path, job_id: &str) -> Vec<PathBuf> {
    let job_dir = runs_dir.join(job_id);
    run_names(&job_dir).into_iter().map(|n| job_dir.join(n)).collect()
}

/// The names of the run directories in `job_dir`, newest first. Sorted as
/// names (byte order, the order of the paths) rather than as `PathBuf`s,
/// whose comparison walks components: 100,000 runs sort in a few ms.
fn run_names(job_dir: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = std::fs::read_dir(job_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable_by(|a, b| b.as_encoded_bytes().cmp(a.as_encoded_bytes()));
    v
}

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
            RunStatus::Missed | RunStatus::SkippedOverlap | RunStatus::DuplicateSkipped | RunStatus::Running => {}
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

/// A run found by [`resolve_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRun {
    pub job_id: String,
    pub run_id: String,
    pub dir: PathBuf,
}

/// Every run directory under `runs_dir` (of `job` only, when given), as
/// (job id, run id, directory).
fn all_runs(runs_dir: &Path, job: Option<&str>) -> Vec<ResolvedRun> {
    let jobs: Vec<String> = match job {
        Some(j) => vec![j.to_string()],
        None => std::fs::read_dir(runs_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut out = Vec::new();
    for j in jobs {
        for dir in run_dirs(runs_dir, &j) {
            if let Some(run_id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) {
                out.push(ResolvedRun {
                    job_id: j.clone(),
                    run_id,
                    dir,
                });
            }
        }
    }
    out
}

/// The one place a run reference given by an operator becomes a run
/// directory. `reference` is
///
/// * `latest` — the newest run (by run id, which sorts by start time) of any
///   job, or of `job` when given;
/// * `<job>/latest` or `<job>/<ref>` — narrowed to that job;
/// * a full run id, or a unique prefix of a run id or of its random suffix
///   (`20261122T0721`, `f239a1d2` for `20261122T072124.590Z-f239a1d2`).
///
/// No match is `job_not_found`; an ambiguous prefix is `job_not_found` too,
/// listing the candidates (newest first) in the hint and in `details`.
pub fn resolve_run(runs_dir: &Path, reference: &str, job: Option<&str>) -> Result<ResolvedRun, LilyError> {
    let (job, reference) = match reference.split_once('/') {
        Some((j, r)) if job.is_none_or(|given| given == j) => (Some(j), r),
        Some((j, _)) => {
            return Err(LilyError::new(
                ErrorCode::JobNotFound,
                format!("run {reference:?} names job {j:?}, but --job is {:?}", job.unwrap_or_default()),
            ));
        }
        None => (job, reference),
    };
    let bad = |r: &str| r.is_empty() || r.contains('/') || r.contains('\\') || r.contains("..");
    if bad(reference) || job.is_some_and(bad) {
        return Err(LilyError::new(ErrorCode::JobNotFound, format!("{reference:?} is not a run id")).with_hint(RUN_REF_HINT));
    }
    let where_ = || match job {
        Some(j) => format!("of job {j} under {}", runs_dir.display()),
        None => format!("under {}", runs_dir.display()),
    };
    let mut runs = all_runs(runs_dir, job);
    // Newest first, across jobs.
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id).then_with(|| a.job_id.cmp(&b.job_id)));
    if reference == "latest" {
        return runs.into_iter().next().ok_or_else(|| {
            let e = LilyError::new(ErrorCode::JobNotFound, format!("no runs {}", where_()));
            match job {
                Some(j) => e.with_hint(format!("start one with `lily jobs run {j}`")),
                None => e.with_hint("start one with `lily jobs run <id>`"),
            }
        });
    }
    // An exact id wins over prefixes (ids are unique; the same id under two
    // jobs would be a copied directory: the first job in name order).
    if let Some(exact) = runs.iter().find(|r| r.run_id == reference) {
        return Ok(exact.clone());
    }
    let matches: Vec<ResolvedRun> = runs
        .into_iter()
        .filter(|r| r.run_id.starts_with(reference) || r.run_id.split_once('-').is_some_and(|(_, suffix)| suffix.starts_with(reference)))
        .collect();
    match matches.len() {
        0 => Err(LilyError::new(ErrorCode::JobNotFound, format!("no run {reference} {}", where_())).with_hint(RUN_REF_HINT)),
        1 => Ok(matches.into_iter().next().expect("one match")),
        n => {
            const SHOWN: usize = 10;
            let mut hint: Vec<String> = matches.iter().take(SHOWN).map(|r| format!("{}/{}", r.job_id, r.run_id)).collect();
            if n > SHOWN {
                hint.push(format!("… and {} more", n - SHOWN));
            }
            Err(
                LilyError::new(ErrorCode::JobNotFound, format!("run id prefix {reference:?} is ambiguous: {n} runs match"))
                    .with_hint(format!("give more of the id; candidates:\n{}", hint.join("\n")))
                    .with_details(json!({"candidates": matches.iter().map(|r| json!({"job_id": r.job_id, "run_id": r.run_id})).collect::<Vec<_>>()})),
            )
        }
    }
}

const RUN_REF_HINT: &str = "give a run id, a unique prefix of it or of its suffix, `latest` or `<job>/latest`; `lily jobs runs <job>` lists run ids";

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
        "job_completed" | "job_failed" | "job_cancelled" | "job_denied" | "job_missed" | "job_skipped_overlap" | "job_duplicate_skipped"
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

    /// The listing parses only the index lines of the runs it shows; what
    /// it shows is what parsing every line showed: last line of a run wins,
    /// a line in another field order is still used, a corrupt line or a run
    /// missing from the index is read from its receipt, a line of a run
    /// that no longer exists is ignored.
    #[test]
    fn listing_reads_index_lines_lazily_with_the_same_result() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut ids = Vec::new();
        for i in 0..5 {
            let dir = RunDir::create(tmp.path(), "job").expect("create");
            let log = EventLog::create(&dir.path, &dir.run_id, None).expect("log");
            let mut r = Receipt::start("job", &dir.run_id, TriggerRecord::Manual, "sha256:x", "p");
            r.status = if i == 1 { RunStatus::Failed } else { RunStatus::Succeeded };
            r.ended_at = Some(r.started_at.clone());
            dir.commit_receipt(&mut r, &log).expect("commit");
            if i != 4 {
                append_index(tmp.path(), &r).expect("index");
            }
            ids.push(dir.run_id.clone());
        }
        let index = tmp.path().join("job").join(INDEX);
        let text = std::fs::read_to_string(&index).expect("index");
        // The summary lines (the index also has each run's open line).
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("\"status\"")).collect();
        // Run 0: a later line (in another field order) says denied; it wins.
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(lines[0]).expect("line");
        v.insert("status".into(), json!("denied"));
        let run_id = v.remove("run_id").expect("run_id");
        v.insert("run_id".into(), run_id);
        let reordered = serde_json::to_string(&v).expect("line");
        assert!(!reordered.starts_with("{\"run_id\""), "{reordered}");
        // Run 2: its only line is corrupt. A run that does not exist has a line.
        let corrupt = lines[2].replace("\"status\"", "\"status");
        let ghost = lines[3].replace(&ids[3], "20000101T000000.000Z-00000000");
        let new = [lines[0], lines[1], &corrupt, lines[3], &reordered, &ghost].join("\n") + "\n";
        std::fs::write(&index, new).expect("write index");

        let listed = list_runs(tmp.path(), "job", 100, None);
        let got: Vec<(String, RunStatus)> = listed.iter().map(|s| (s.run_id.clone(), s.status)).collect();
        let want = vec![
            (ids[4].clone(), RunStatus::Succeeded),
            (ids[3].clone(), RunStatus::Succeeded),
            (ids[2].clone(), RunStatus::Succeeded),
            (ids[1].clone(), RunStatus::Failed),
            (ids[0].clone(), RunStatus::Denied),
        ];
        assert_eq!(got, want);
        assert!(listed.iter().all(|s| s.path == tmp.path().join("job").join(&s.run_id)));
        // The limit and the status filter.
        assert_eq!(list_runs(tmp.path(), "job", 2, None).len(), 2);
        let failed = list_runs(tmp.path(), "job", 100, Some(RunStatus::Failed));
        assert_eq!(failed.iter().map(|s| s.run_id.clone()).collect::<Vec<_>>(), vec![ids[1].clone()]);
        assert_eq!(
            run_dirs(tmp.path(), "job"),
            ids.iter().rev().map(|i| tmp.path().join("job").join(i)).collect::<Vec<_>>()
        );
    }

    /// A run as the executor leaves it: committed, its summary appended
    /// unless `summary` is false (a crash between the receipt and the line).
    fn committed(runs: &Path, job: &str, status: RunStatus, summary: bool) -> String {
        let dir = RunDir::create(runs, job).expect("create");
        let log = EventLog::create(&dir.path, &dir.run_id, None).expect("log");
        let mut r = Receipt::start(job, &dir.run_id, TriggerRecord::Manual, "sha256:x", "p");
        r.status = status;
        r.ended_at = Some(r.started_at.clone());
        dir.commit_receipt(&mut r, &log).expect("commit");
        if summary {
            append_index(runs, &r).expect("index");
        }
        dir.run_id.clone()
    }

    /// Listing from the end of a complete index gives what listing the
    /// directory gives: every committed run (with or without its summary
    /// line), running ones, newest first; pruned directories skipped; the
    /// limit and the status filter reading further back when needed.
    #[test]
    fn a_complete_index_lists_from_its_end_and_never_misses_a_committed_run() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runs = tmp.path();
        let mut ids = Vec::new();
        // Enough runs that the index spans several 64 KiB chunks.
        for i in 0..320 {
            let status = if i % 7 == 0 { RunStatus::Failed } else { RunStatus::Succeeded };
            ids.push(committed(runs, "job", status, i % 5 != 3));
        }
        let index = runs.join("job").join(INDEX);
        assert!(std::fs::metadata(&index).expect("index").len() > 64 * 1024, "more than one chunk");
        let by_listing = |limit, status| {
            let got: Vec<(String, RunStatus)> = list_runs(runs, "job", limit, status).into_iter().map(|s| (s.run_id, s.status)).collect();
            got
        };
        // First listing: the index is not complete yet (no header): the
        // directory is listed, and the index rebuilt.
        let all = by_listing(1000, None);
        assert_eq!(
            all.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
            ids.iter().rev().cloned().collect::<Vec<_>>()
        );
        assert!(std::fs::read_to_string(&index).expect("index").starts_with("{\"lily_index\":2}\n"));
        assert_eq!(by_listing(1000, None), all, "the same from the complete index");

        // New runs after the rebuild: committed without a summary line,
        // one still running (no final receipt), one with its line.
        let unsummarised = committed(runs, "job", RunStatus::Succeeded, false);
        let running = RunDir::create(runs, "job").expect("create");
        let log = EventLog::create(&running.path, &running.run_id, None).expect("log");
        let mut r = Receipt::start("job", &running.run_id, TriggerRecord::Manual, "sha256:x", "p");
        running.write_receipt(&mut r, &log).expect("progress");
        let last = committed(runs, "job", RunStatus::Failed, true);
        let top = by_listing(3, None);
        assert_eq!(
            top,
            vec![
                (last.clone(), RunStatus::Failed),
                (running.run_id.clone(), RunStatus::Running),
                (unsummarised.clone(), RunStatus::Succeeded)
            ]
        );
        // A pruned run is skipped, and the limit still filled from further back.
        std::fs::remove_dir_all(runs.join("job").join(&last)).expect("rm");
        let top = by_listing(3, None);
        assert_eq!(top[0].0, running.run_id);
        assert_eq!(top[2].0, ids[319]);
        // The status filter reads back as far as it has to.
        let failed = by_listing(1000, Some(RunStatus::Failed));
        let want: Vec<String> = ids.iter().enumerate().rev().filter(|(i, _)| i % 7 == 0).map(|(_, id)| id.clone()).collect();
        assert_eq!(failed.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), want);
        // Everything, compared with a listing of the directory (index deleted:
        // rebuilt from the directories).
        let complete = by_listing(100_000, None);
        std::fs::remove_file(&index).expect("rm index");
        assert_eq!(by_listing(100_000, None), complete);
        assert_eq!(by_listing(100_000, None), complete);
        drop(running);
        // A summary line written by an older lily (no `"v":2`): the
        // directory is listed instead (the index may be missing runs).
        let mut f = std::fs::OpenOptions::new().append(true).open(&index).expect("open");
        let old = format!(
            "{{\"run_id\":\"{}\",\"status\":\"denied\",\"started_at\":\"x\",\"ended_at\":null,\"trigger\":\"manual\",\"error_code\":null,\"replay_of\":null}}\n",
            ids[0]
        );
        f.write_all(old.as_bytes()).expect("append");
        let after = by_listing(100_000, None);
        assert_eq!(after.len(), complete.len());
        assert_eq!(after.last().map(|(_, s)| *s), Some(RunStatus::Denied));
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

    #[test]
    fn run_references_resolve_by_latest_prefix_and_suffix() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runs = tmp.path();
        for (job, id) in [
            ("a", "20261122T072124.590Z-f239a1d2"),
            ("a", "20261122T072130.000Z-e3f5f236"),
            ("b", "20261122T072125.000Z-e3aa0000"),
        ] {
            std::fs::create_dir_all(runs.join(job).join(id)).expect("mkdir");
        }
        let id = |r: Result<ResolvedRun, LilyError>| r.map(|r| format!("{}/{}", r.job_id, r.run_id));
        assert_eq!(id(resolve_run(runs, "latest", None)).expect("latest"), "a/20261122T072130.000Z-e3f5f236");
        assert_eq!(id(resolve_run(runs, "b/latest", None)).expect("b/latest"), "b/20261122T072125.000Z-e3aa0000");
        assert_eq!(id(resolve_run(runs, "latest", Some("b"))).expect("--job b"), "b/20261122T072125.000Z-e3aa0000");
        assert_eq!(id(resolve_run(runs, "f239", None)).expect("suffix"), "a/20261122T072124.590Z-f239a1d2");
        assert_eq!(
            id(resolve_run(runs, "20261122T072125", None)).expect("prefix"),
            "b/20261122T072125.000Z-e3aa0000"
        );
        assert_eq!(
            id(resolve_run(runs, "20261122T072124.590Z-f239a1d2", None)).expect("exact"),
            "a/20261122T072124.590Z-f239a1d2"
        );
        let amb = resolve_run(runs, "e3", None).expect_err("ambiguous");
        assert_eq!(amb.code, ErrorCode::JobNotFound);
        assert!(amb.message.contains("ambiguous: 2 runs match"), "{}", amb.message);
        let hint = amb.hint.expect("hint");
        assert!(hint.contains("a/20261122T072130.000Z-e3f5f236\nb/20261122T072125.000Z-e3aa0000"), "{hint}");
        assert_eq!(amb.details["candidates"].as_array().map(Vec::len), Some(2));
        // Narrowed to one job, the same prefix is unique.
        assert_eq!(id(resolve_run(runs, "a/e3", None)).expect("a/e3"), "a/20261122T072130.000Z-e3f5f236");
        assert_eq!(resolve_run(runs, "nope", None).expect_err("none").code, ErrorCode::JobNotFound);
        assert!(resolve_run(runs, "../a", None).is_err());
        assert!(resolve_run(runs, "a/latest", Some("b")).is_err(), "conflicting job");
        assert!(
            resolve_run(runs, "latest", Some("c"))
                .expect_err("no runs")
                .message
                .contains("no runs of job c")
        );
    }
}
