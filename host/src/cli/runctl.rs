//! `lily jobs prune` and `lily jobs cancel`: retention and cancelling a
//! run in progress (the work is in `lily::runs` / `lily::jobs`).

use super::{EXIT_INTERNAL, EXIT_OK, Global, render};
use lily::error::{ErrorCode, LilyError};
use lily::runs::{self, RunStatus, TriggerRecord};
use lily::util::{Age, Retention};
use lily::workspace::Root;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// `1.2 MiB`-style sizes for people (JSON has the exact bytes).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The job ids with a run directory under `.lily/runs/` (real directories only).
fn job_dirs(runs_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(runs_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| lily::paths::valid_id(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `lily jobs prune [<job_id>] [--keep-last N] [--older-than DUR] [--dry-run]`.
pub fn prune(g: &Global, root: &Root, job: Option<&str>, keep_last: Option<usize>, older_than: Option<Age>, dry_run: bool) -> Result<i32, LilyError> {
    let flags = Retention { keep_last, older_than };
    let runs_dir = root.runs_dir();
    let specs = lily::spec::discover(&root.jobs_dir);
    let spec_of = |id: &str| specs.iter().filter_map(|f| f.spec.as_ref().ok()).find(|s| s.id == id);
    let jobs: Vec<String> = match job {
        Some(j) => {
            if spec_of(j).is_none() && !runs_dir.join(j).is_dir() {
                return Err(LilyError::new(
                    ErrorCode::JobNotFound,
                    format!("no job {j:?}: no spec and no runs under {}", runs_dir.display()),
                ));
            }
            vec![j.to_string()]
        }
        None => job_dirs(&runs_dir),
    };
    let mut reports = Vec::new();
    let mut unconfigured = Vec::new();
    for id in &jobs {
        let rule = if flags.is_set() {
            flags
        } else {
            match lily::jobs::retention::configured(root, spec_of(id)) {
                Some(r) => r,
                None => {
                    unconfigured.push(id.clone());
                    continue;
                }
            }
        };
        let rep = lily::jobs::retention::prune(root, id, &rule, dry_run)
            .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot prune the runs of {id}: {e}")))?;
        reports.push(rep);
    }
    let pruned: usize = reports.iter().map(|r| r.pruned.len()).sum();
    let bytes: u64 = reports.iter().map(|r| r.bytes_freed).sum();
    let errors: usize = reports.iter().map(|r| r.errors.len()).sum();
    if g.json {
        render::json(&json!({
            "dry_run": dry_run,
            "jobs": reports,
            "pruned": pruned,
            "bytes_freed": bytes,
            "no_retention_configured": unconfigured,
        }));
    } else {
        if jobs.is_empty() {
            outln!("no runs under {}: nothing pruned", runs_dir.display());
        } else if reports.is_empty() {
            outln!("no retention configured (retention: in the job spec or .lily/config.yaml) and no --keep-last / --older-than: nothing pruned");
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        for r in &reports {
            for p in &r.pruned {
                let status = p.status.map(|s| s.as_str()).unwrap_or("symlink");
                outln!("  {verb} {} {} {status} {}", r.job_id, p.run_id, human_bytes(p.bytes));
            }
            for k in &r.protected {
                outln!("  kept {} {}: {}", r.job_id, k.run_id, k.reason);
            }
            for e in &r.errors {
                errln!("  error {}: {e}", r.job_id);
            }
            outln!(
                "{}: {verb} {} run(s), {} freed; {} kept{}",
                r.job_id,
                r.pruned.len(),
                human_bytes(r.bytes_freed),
                r.kept + r.protected.len(),
                if r.protected.is_empty() {
                    String::new()
                } else {
                    format!(" ({} protected)", r.protected.len())
                }
            );
        }
        if !reports.is_empty() && !unconfigured.is_empty() {
            outln!("no retention configured for: {}", unconfigured.join(", "));
        }
        if reports.len() > 1 {
            outln!("total: {verb} {pruned} run(s), {} freed", human_bytes(bytes));
        }
    }
    Ok(if errors > 0 { EXIT_INTERNAL } else { EXIT_OK })
}

/// The pid of the process that has `run_dir`'s run lock open, if `pid` is
/// that process: its open files include the lock (so a reused pid is never
/// signalled). Linux only (`/proc`); elsewhere `false`.
fn holds_run_lock(pid: u32, run_dir: &Path) -> bool {
    let Ok(lock) = std::fs::canonicalize(run_dir.join(runs::RUN_LOCK)) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok()).any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == lock))
}

/// Send SIGTERM to `pid` (checked by the caller to hold the run's lock).
#[allow(unsafe_code)]
fn sigterm(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// How long `jobs cancel` gives the run to see the request before it also
/// sends SIGTERM to a `lily jobs run` / `replay` process.
const SIGNAL_AFTER: Duration = Duration::from_secs(2);

/// `lily jobs cancel <run_id> [--timeout S]`.
pub async fn cancel(g: &Global, root: &Root, run_id: &str, timeout: u64) -> Result<i32, LilyError> {
    // Any run reference (`latest`, a unique prefix, `<job>/…`), like every
    // command that takes a run.
    let dir = runs::resolve_run(&root.runs_dir(), run_id, None)?.dir;
    let r = runs::read_receipt(&dir).ok_or_else(|| LilyError::new(ErrorCode::JobExecutionFailed, format!("{}: receipt unreadable", dir.display())))?;
    match r.status {
        RunStatus::Running => {}
        RunStatus::Interrupted => {
            // Its process is gone: it already reads back as interrupted (no
            // lock held), the way every crashed run does; nothing to stop.
            if g.json {
                render::json(&json!({"run_id": r.run_id, "job_id": r.job_id, "status": "interrupted", "cancelled": false, "stale": true}));
            } else {
                outln!(
                    "run {} of {} was interrupted: its process (pid {}) is gone; nothing to cancel",
                    r.run_id,
                    r.job_id,
                    r.pid
                );
            }
            return Ok(EXIT_OK);
        }
        other => {
            return Err(LilyError::new(
                ErrorCode::RunNotActive,
                format!("run {} of {} is not running: it ended {}", r.run_id, r.job_id, other.as_str()),
            )
            .with_hint(format!("`lily jobs runs {}` lists its runs; only a running run can be cancelled", r.job_id)));
        }
    }
    runs::request_cancel(&dir, "lily jobs cancel").map_err(|e| {
        LilyError::new(
            ErrorCode::JobExecutionFailed,
            format!("cannot write the cancel request in {}: {e}", dir.display()),
        )
    })?;
    // A run of `lily jobs run` / `replay` is its own process, with a SIGTERM
    // handler that cancels it; a run of `jobs serve` or `mcp serve` is a task
    // of that server and only sees the request (a signal would stop the server).
    let own_process = matches!(r.trigger, TriggerRecord::Manual | TriggerRecord::Replay { .. });
    let started = Instant::now();
    let mut signalled = false;
    let ended = loop {
        if !runs::owner_alive(&dir) {
            break runs::read_receipt(&dir);
        }
        if own_process && !signalled && started.elapsed() >= SIGNAL_AFTER && r.pid != 0 && holds_run_lock(r.pid, &dir) {
            signalled = sigterm(r.pid);
        }
        if started.elapsed() >= Duration::from_secs(timeout) {
            return Err(LilyError::new(
                ErrorCode::JobExecutionFailed,
                format!("run {} did not stop within {timeout} s; the cancel request stays in its directory", r.run_id),
            )
            .with_hint(format!("`lily jobs tail {} --run {} -f` follows it", r.job_id, r.run_id)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = ended.as_ref().map(|e| e.status).unwrap_or(RunStatus::Interrupted);
    if !matches!(status, RunStatus::Cancelled | RunStatus::Interrupted) {
        return Err(LilyError::new(
            ErrorCode::RunNotActive,
            format!("run {} ended {} before the cancel took effect", r.run_id, status.as_str()),
        ));
    }
    if g.json {
        render::json(&json!({"run_id": r.run_id, "job_id": r.job_id, "status": status, "cancelled": status == RunStatus::Cancelled, "signalled": signalled}));
    } else if status == RunStatus::Cancelled {
        outln!("cancelled run {} of {}", r.run_id, r.job_id);
    } else {
        outln!(
            "run {} of {} stopped: its process died before the cancel took effect (interrupted)",
            r.run_id,
            r.job_id
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_process_holding_the_run_lock_is_recognised() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = lily::runs::RunDir::create(tmp.path(), "j").expect("run");
        // This process holds the lock of the run it created …
        assert!(holds_run_lock(std::process::id(), &run.path));
        // … no other pid (a reused pid would not have the lock open).
        assert!(!holds_run_lock(1, &run.path));
        assert!(!holds_run_lock(u32::MAX, &run.path));
        let other = tmp.path().join("j").join("20000101T000000.000Z-00000000");
        std::fs::create_dir_all(&other).expect("dir");
        std::fs::write(other.join(runs::RUN_LOCK), b"").expect("lock file");
        assert!(!holds_run_lock(std::process::id(), &other));
    }
}
