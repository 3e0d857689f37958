//! Pruning a job's run directories (`lily jobs prune`, and the scheduler's
//! `retention:` after each run) — here, because the run store is the one
//! writer of `.lily/runs/`.
//!
//! Never removed: a run whose process is alive (its run lock is held — the
//! lock is taken, then the directory removed while holding it, so no run
//! can be going in it), a `running` receipt, a directory without a readable
//! receipt that may still be starting, and whatever the caller protects
//! (runs with a pending approval: their proposed bytes live in the run
//! directory). Nothing outside `.lily/runs/<job>/` is touched and no link is
//! followed: an entry that is a symlink is removed as a link, a run
//! directory is removed without following the links inside it.

use super::{RUN_LOCK, RunStatus, WRITER_LOCK};
use crate::util::Retention;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One run directory that goes (or would go, on a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub run_id: String,
    /// `None` for an entry that is a symlink.
    pub status: Option<RunStatus>,
    pub started_at: String,
    pub bytes: u64,
    /// The entry was a symlink (removed as a link).
    pub link: bool,
}

/// A run the rule would remove but that is kept, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Protected {
    pub run_id: String,
    pub reason: String,
}

/// What pruning one job did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub job_id: String,
    pub dry_run: bool,
    pub retention: Retention,
    pub pruned: Vec<Pruned>,
    pub protected: Vec<Protected>,
    pub kept: usize,
    pub bytes_freed: u64,
    /// Entries that could not be removed (`run_id: error`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The start time encoded in a run id (`YYYYMMDDTHHMMSS.mmmZ-…`).
pub fn run_id_started(run_id: &str) -> Option<DateTime<Utc>> {
    let t = run_id.split_once('Z')?.0;
    Some(chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%S%.3f").ok()?.and_utc())
}

/// Bytes of regular files under `p`, never following a link.
fn tree_bytes(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if md.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| tree_bytes(&e.path())).sum())
            .unwrap_or(0)
    } else if md.is_file() {
        md.len()
    } else {
        0
    }
}

/// Try to take a lock file of the run without blocking; `None` when
/// another process holds it. A missing lock file is created (so nobody can
/// take it after us while we remove the directory); a dry run creates
/// nothing (`Some(None)`: no lock file).
fn try_lock(dir: &Path, name: &str, create: bool) -> Option<Option<File>> {
    let f = match std::fs::OpenOptions::new().create(create).truncate(false).write(true).open(dir.join(name)) {
        Ok(f) => f,
        // A dry run creates nothing: no lock file, nobody holds it.
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Some(None),
        Err(_) => return None,
    };
    f.try_lock().ok()?;
    Some(Some(f))
}

/// Prune the run directories of `job_id` under `runs_dir` by `rule` at
/// `now`. `protect(run_id)` returns a reason to keep a run the rule would
/// remove. With `dry_run` nothing is removed (the report says what would
/// go). A rule that is not set prunes nothing.
pub fn prune_job(
    runs_dir: &Path,
    job_id: &str,
    rule: &Retention,
    now: DateTime<Utc>,
    dry_run: bool,
    protect: &dyn Fn(&str) -> Option<String>,
) -> std::io::Result<PruneReport> {
    let mut report = PruneReport {
        job_id: job_id.to_string(),
        dry_run,
        retention: *rule,
        pruned: Vec::new(),
        protected: Vec::new(),
        kept: 0,
        bytes_freed: 0,
        errors: Vec::new(),
    };
    if !crate::paths::valid_id(job_id) {
        return Err(std::io::Error::other(format!("invalid job id {job_id:?}")));
    }
    let job_dir = runs_dir.join(job_id);
    // The job directory itself must be a real directory inside runs/.
    match std::fs::symlink_metadata(&job_dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(std::io::Error::other(format!("{} is not a directory (not followed)", job_dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e),
    }
    // Run entries (directories or links) named like a run id, newest first.
    let mut entries: Vec<(String, PathBuf, bool)> = std::fs::read_dir(&job_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            run_id_started(&name)?;
            let ft = e.file_type().ok()?;
            (ft.is_dir() || ft.is_symlink()).then(|| (name, e.path(), ft.is_symlink()))
        })
        .collect();
    entries.sort_by(|a, b| b.0.cmp(&a.0));
    if !rule.is_set() {
        report.kept = entries.len();
        return Ok(report);
    }
    let cutoff = rule.older_than.and_then(|a| a.delta()).map(|d| now - d);
    for (i, (run_id, path, link)) in entries.into_iter().enumerate() {
        let started = run_id_started(&run_id).unwrap_or(now);
        let kept_by_count = rule.keep_last.is_some_and(|n| i < n);
        let kept_by_age = cutoff.is_some_and(|c| started >= c);
        if kept_by_count || kept_by_age {
            report.kept += 1;
            continue;
        }
        let mut keep = |reason: String| {
            report.protected.push(Protected {
                run_id: run_id.clone(),
                reason,
            })
        };
        if link {
            // A link is removed as a link; what it points at is never read.
            if !dry_run && let Err(e) = std::fs::remove_file(&path) {
                report.errors.push(format!("{run_id}: {e}"));
                continue;
            }
            report.pruned.push(Pruned {
                run_id,
                status: None,
                started_at: crate::util::rfc3339(started),
                bytes: 0,
                link: true,
            });
            continue;
        }
        // The run lock first: held means the run's process is alive.
        let Some(run_lock) = try_lock(&path, RUN_LOCK, !dry_run) else {
            keep("running (its process holds the run lock)".into());
            continue;
        };
        let Some(writer) = try_lock(&path, WRITER_LOCK, !dry_run) else {
            keep("its receipt or events are being written".into());
            continue;
        };
        let receipt = std::fs::read(path.join(super::RECEIPT))
            .ok()
            .and_then(|b| serde_json::from_slice::<super::Receipt>(&b).ok());
        let status = match &receipt {
            // Not running any more (we hold its lock): a crashed run reads
            // back as interrupted.
            Some(r) if r.status == RunStatus::Running => RunStatus::Interrupted,
            Some(r) => r.status,
            None => {
                let age = std::fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
                if age.is_none_or(|a| a < std::time::Duration::from_secs(60)) {
                    keep("no receipt yet (may still be starting)".into());
                    continue;
                }
                RunStatus::Interrupted
            }
        };
        if let Some(reason) = protect(&run_id) {
            keep(reason);
            continue;
        }
        let bytes = tree_bytes(&path);
        if !dry_run {
            // std's remove_dir_all removes links inside as links.
            let removed = std::fs::remove_dir_all(&path);
            drop((writer, run_lock));
            if let Err(e) = removed {
                report.errors.push(format!("{run_id}: {e}"));
                continue;
            }
        }
        report.bytes_freed += bytes;
        report.pruned.push(Pruned {
            run_id,
            status: Some(status),
            started_at: crate::util::rfc3339(started),
            bytes,
            link: false,
        });
    }
    if !dry_run && !report.pruned.is_empty() {
        super::index::compact(&job_dir);
        crate::util::sync_dir(&job_dir);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{EventLog, Receipt, RunDir, TriggerRecord};
    use crate::util::Age;

    /// A finished run of `job` whose id says it started `age` ago.
    fn finished(runs: &Path, job: &str, age: chrono::TimeDelta, status: RunStatus) -> String {
        let at = Utc::now() - age;
        let run_id = format!("{}-{}", at.format("%Y%m%dT%H%M%S%.3fZ"), crate::util::random_hex(4));
        let dir = runs.join(job).join(&run_id);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut r = Receipt::start(job, &run_id, TriggerRecord::Manual, "sha256:x", "p");
        r.status = status;
        r.ended_at = Some(r.started_at.clone());
        std::fs::write(dir.join(crate::runs::RECEIPT), serde_json::to_vec(&r).expect("json")).expect("receipt");
        std::fs::write(dir.join("report.md"), vec![b'x'; 1000]).expect("artifact");
        run_id
    }

    fn ids(v: &[Pruned]) -> Vec<&str> {
        v.iter().map(|p| p.run_id.as_str()).collect()
    }

    #[test]
    fn keep_last_and_older_than_keep_what_either_keeps() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runs = tmp.path();
        let day = chrono::TimeDelta::days(1);
        let old: Vec<String> = (0..4).map(|i| finished(runs, "j", day * (40 - i), RunStatus::Succeeded)).collect();
        let recent = finished(runs, "j", chrono::TimeDelta::hours(1), RunStatus::Failed);
        let none = |_: &str| None;
        let rule = |k: Option<usize>, o: Option<&str>| Retention {
            keep_last: k,
            older_than: o.map(|s| Age::parse(s).expect("age")),
        };
        // Nothing set: nothing goes.
        let rep = prune_job(runs, "j", &Retention::default(), Utc::now(), false, &none).expect("prune");
        assert!(rep.pruned.is_empty() && rep.kept == 5);
        // A dry run lists, removes nothing, creates nothing.
        let rep = prune_job(runs, "j", &rule(Some(2), None), Utc::now(), true, &none).expect("prune");
        assert_eq!(ids(&rep.pruned), [old[2].as_str(), old[1].as_str(), old[0].as_str()]);
        assert_eq!(rep.bytes_freed, 3 * rep.pruned[0].bytes);
        assert!(rep.pruned[0].bytes > 1000);
        assert!(runs.join("j").join(&old[0]).join("report.md").exists());
        assert!(!runs.join("j").join(&old[0]).join(RUN_LOCK).exists());
        // older_than 30d with keep_last 4: only what neither keeps goes.
        let rep = prune_job(runs, "j", &rule(Some(4), Some("30d")), Utc::now(), false, &none).expect("prune");
        assert_eq!(ids(&rep.pruned), [old[0].as_str()]);
        assert!(!runs.join("j").join(&old[0]).exists());
        let rep = prune_job(runs, "j", &rule(None, Some("30d")), Utc::now(), false, &none).expect("prune");
        assert_eq!(ids(&rep.pruned).len(), 3);
        assert_eq!(rep.kept, 1);
        assert!(runs.join("j").join(&recent).exists());
        assert_eq!(rep.pruned[0].status, Some(RunStatus::Succeeded));
    }

    #[test]
    fn live_runs_protected_runs_and_links_are_handled_safely() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runs = tmp.path().join("runs");
        let day = chrono::TimeDelta::days(1);
        // A run in progress (its lock held by this process) …
        let live = RunDir::create(&runs, "j").expect("create");
        let log = EventLog::create(&live.path, &live.run_id, None).expect("log");
        let mut r = Receipt::start("j", &live.run_id, TriggerRecord::Manual, "sha256:x", "p");
        live.write_receipt(&mut r, &log).expect("receipt");
        // … a crashed one (`running` on disk, no lock held) …
        let crashed = finished(&runs, "j", day * 3, RunStatus::Running);
        // … one with an open approval, and a link to a directory outside.
        let approved = finished(&runs, "j", day * 2, RunStatus::Succeeded);
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).expect("outside");
        std::fs::write(outside.join("precious"), b"keep me").expect("write");
        let link_name = format!("{}-deadbeef", (Utc::now() - day * 5).format("%Y%m%dT%H%M%S%.3fZ"));
        std::os::unix::fs::symlink(&outside, runs.join("j").join(&link_name)).expect("symlink");
        // A link inside a run directory is removed as a link too.
        std::os::unix::fs::symlink(&outside, runs.join("j").join(&crashed).join("evil")).expect("symlink");
        let protect = |id: &str| (id == approved).then(|| "approval apr-1 is still open".to_string());
        let rule = Retention {
            keep_last: Some(0),
            older_than: None,
        };
        let rep = prune_job(&runs, "j", &rule, Utc::now(), false, &protect).expect("prune");
        let gone = ids(&rep.pruned);
        assert_eq!(gone, [crashed.as_str(), link_name.as_str()], "{rep:?}");
        assert_eq!(rep.pruned[0].status, Some(RunStatus::Interrupted));
        assert!(rep.pruned[1].link);
        let kept: Vec<(&str, &str)> = rep.protected.iter().map(|p| (p.run_id.as_str(), p.reason.as_str())).collect();
        assert_eq!(
            kept,
            [
                (live.run_id.as_str(), "running (its process holds the run lock)"),
                (approved.as_str(), "approval apr-1 is still open")
            ]
        );
        assert!(live.path.join(crate::runs::RECEIPT).exists());
        assert_eq!(std::fs::read(outside.join("precious")).expect("target intact"), b"keep me");
        assert!(std::fs::symlink_metadata(runs.join("j").join(&link_name)).is_err());
        // Files that are not run entries (the index) stay.
        std::fs::write(runs.join("j").join(crate::runs::INDEX), b"").expect("index");
        prune_job(&runs, "j", &rule, Utc::now(), false, &protect).expect("prune");
        assert!(runs.join("j").join(crate::runs::INDEX).exists());
        // An invalid job id is refused, a job with no runs is empty.
        assert!(prune_job(&runs, "../x", &rule, Utc::now(), false, &protect).is_err());
        assert!(prune_job(&runs, "nope", &rule, Utc::now(), false, &protect).expect("empty").pruned.is_empty());
    }
}
