//! What a run started by a scheduler does with a run store
//! ([`crate::runs::store`]), shared by `lily jobs run --store` (one run,
//! fired by another scheduler such as a Kubernetes CronJob) and `lily jobs
//! serve` with a store (every fire of the root's cron jobs):
//!
//! * [`claim_or_record`] — claim the scheduled time (its local wall-clock
//!   slot) create-only; a second claimant writes and publishes a
//!   `duplicate_skipped` record instead of running;
//! * [`SlotHold`] — one of the job's `max_parallel_runs` run slots in the
//!   store, renewed on a thread of its own, released at the end;
//! * [`RunLease`] — the run's lease and its event segments
//!   ([`crate::runs::store::LiveUpload`]) while it goes, stopped and joined
//!   before the run is published (receipt last).

use crate::error::{ErrorCode, LilyError};
use crate::runs::store::{Claim, LiveUpload, RunStore, SlotLease};
use crate::runs::{Receipt, RunStatus, RunnerRecord, TargetRecord};
use crate::spec::SpecFile;
use crate::util::rfc3339;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::warn;

/// The store slot of a scheduled time: its local wall-clock time in the
/// job's zone, without offset (both passes of a fall-back hour share it).
pub fn wall_clock_slot(at: DateTime<Utc>, zone: &str) -> String {
    let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
    at.with_timezone(&tz).naive_local().format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A `duplicate_skipped` record written (and published) because another
/// process had claimed the scheduled time.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub run_dir: PathBuf,
    pub receipt: Receipt,
    /// The wall-clock slot (`2027-11-07T01:30:00`).
    pub slot: String,
}

/// Claim the scheduled time `at` of `file`'s job in the store. `Ok(None)`:
/// this process won and runs it. `Ok(Some(_))`: another process holds the
/// claim; a `duplicate_skipped` record (the winner's claim in
/// `payload.claimed_by`) was written under `runs_dir` and published.
pub fn claim_or_record(st: &RunStore, runs_dir: &Path, file: &SpecFile, at: DateTime<Utc>, local: &str, zone: &str) -> Result<Option<Duplicate>, LilyError> {
    let s = file.spec.as_ref().map_err(Clone::clone)?;
    let slot = wall_clock_slot(at, zone);
    let body = json!({
        "job_id": s.id,
        "slot": slot,
        "scheduled_for": rfc3339(at),
        "scheduled_for_local": local,
        "timezone": zone,
        "claimed_at": rfc3339(Utc::now()),
        "runner": RunnerRecord::current(),
        "pid": std::process::id(),
    });
    let by = match st.claim_scheduled(&s.id, &slot, &body)? {
        Claim::Won => return Ok(None),
        Claim::Taken { by } => by,
    };
    let when = Scheduled { at, local, zone };
    let (dir, receipt) = publish_record(
        st,
        runs_dir,
        file,
        &when,
        RunStatus::DuplicateSkipped,
        "duplicate",
        json!({"slot": slot, "claimed_by": by}),
    )?;
    Ok(Some(Duplicate { run_dir: dir, receipt, slot }))
}

/// A scheduled time this process claimed but could not run (every run slot
/// held in the store: `job_busy`): a `missed` record (reason
/// `not_started`, the error's code and message) written under `runs_dir`
/// and published, so the store says why the time has no run — the claim
/// stays taken, so no other process runs it either.
pub fn record_not_started(
    st: &RunStore,
    runs_dir: &Path,
    file: &SpecFile,
    at: DateTime<Utc>,
    local: &str,
    zone: &str,
    error: &LilyError,
) -> Result<PathBuf, LilyError> {
    let when = Scheduled { at, local, zone };
    let details = json!({"error_code": error.code.as_str(), "message": error.message});
    let (dir, _) = publish_record(st, runs_dir, file, &when, RunStatus::Missed, super::scheduler::MISSED_NOT_STARTED, details)?;
    Ok(dir)
}

/// A scheduled instant as a record names it.
struct Scheduled<'a> {
    at: DateTime<Utc>,
    local: &'a str,
    zone: &'a str,
}

/// Write a record of `status` for a scheduled time of `file`'s job under
/// `runs_dir` and publish it to the store.
fn publish_record(
    st: &RunStore,
    runs_dir: &Path,
    file: &SpecFile,
    when: &Scheduled<'_>,
    status: RunStatus,
    reason: &str,
    details: Value,
) -> Result<(PathBuf, crate::runs::Receipt), LilyError> {
    let s = file.spec.as_ref().map_err(Clone::clone)?;
    let what = status.as_str();
    let record = super::records::Record {
        job_id: s.id.clone(),
        status,
        scheduled_for: when.at,
        scheduled_for_local: when.local.to_string(),
        timezone: when.zone.to_string(),
        reason: reason.to_string(),
        details,
        spec_sha256: file.sha256.clone().unwrap_or_default(),
        spec_path: file.path.display().to_string(),
        target: TargetRecord {
            kind: s.target.kind.clone(),
            id: s.target.id.clone(),
            requirement: s.target.version.clone(),
            ..Default::default()
        },
    };
    let dir = super::records::write_record(runs_dir, &record)
        .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot write the {what} record: {e}")))?;
    let receipt = crate::runs::read_receipt(&dir).ok_or_else(|| LilyError::new(ErrorCode::JobExecutionFailed, format!("{what} record unreadable")))?;
    st.publish_run(&dir, &receipt.job_id, &receipt.run_id)?;
    Ok((dir, receipt))
}

/// The body of a run slot's generation: holder, expiry, or released.
pub fn slot_body(job: &str, released: bool) -> Value {
    let ttl = crate::runs::store::lease_seconds();
    json!({
        "job_id": job,
        "expires_at": rfc3339(Utc::now() + chrono::Duration::seconds(ttl as i64)),
        "released": released,
        "runner": RunnerRecord::current(),
        "pid": std::process::id(),
    })
}

/// The `job_busy` error of a job whose run slots are all held in the store.
pub fn busy_error(st: &RunStore, job: &str, slots: u32) -> LilyError {
    LilyError::new(
        ErrorCode::JobBusy,
        format!("{job}: all {slots} run slot(s) (max_parallel_runs) are held in the run store {}", st.url()),
    )
}

/// A run slot held in the store, renewed every third of the lease on a
/// thread of its own until [`SlotHold::release`] (or drop). A holder that
/// finds its slot taken over (it failed to renew for a whole lease) calls
/// `on_lost` once and stops renewing.
pub struct SlotHold {
    st: RunStore,
    lease: SlotLease,
    on: Arc<AtomicBool>,
}

impl SlotHold {
    pub fn start(st: RunStore, lease: SlotLease, on_lost: impl FnOnce() + Send + 'static) -> SlotHold {
        let on = Arc::new(AtomicBool::new(true));
        let ttl = crate::runs::store::lease_seconds();
        let (st2, lease2, on2) = (st.clone(), lease.clone(), on.clone());
        let _ = std::thread::Builder::new().name("lily-slot".into()).spawn(move || {
            let step = std::time::Duration::from_millis(ttl * 1000 / 3);
            let tick = std::time::Duration::from_millis(100);
            let mut last = std::time::Instant::now();
            while on2.load(Ordering::SeqCst) {
                std::thread::sleep(tick);
                if last.elapsed() < step || !on2.load(Ordering::SeqCst) {
                    continue;
                }
                match st2.renew_slot(&lease2, &slot_body(&lease2.job_id, false)) {
                    Ok(true) => last = std::time::Instant::now(),
                    Ok(false) => {
                        warn!(job = %lease2.job_id, slot = lease2.slot, "the run's slot was taken over in the store: cancelling the run");
                        on_lost();
                        return;
                    }
                    Err(e) => warn!(error = %e.message, "cannot renew the run's slot"),
                }
            }
        });
        SlotHold { st, lease, on }
    }

    /// Stop renewing and mark the slot released (best effort: a slot not
    /// released frees when its lease expires).
    pub fn release(self) {
        self.on.store(false, Ordering::SeqCst);
        if let Err(e) = self.st.renew_slot(&self.lease, &slot_body(&self.lease.job_id, true)) {
            warn!(error = %e.message, "cannot release the run's slot");
        }
    }
}

impl Drop for SlotHold {
    fn drop(&mut self) {
        self.on.store(false, Ordering::SeqCst);
    }
}

/// A run's lease in the store and its live uploads: written at once, then
/// on a thread of its own the lease is renewed every third of its length
/// and, every [`crate::runs::store::segment_seconds`], the event log's new
/// lines are uploaded as a segment (and the spool's `running` receipt and
/// spec snapshot under `live/`), so a reader of a run that died sees its
/// events up to the last upload. Failures are logged; the run goes on.
pub struct RunLease {
    on: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunLease {
    pub fn start(st: RunStore, job: &str, run_id: &str, run_dir: &Path) -> RunLease {
        let ttl = crate::runs::store::lease_seconds();
        let started = Utc::now();
        let mut live = LiveUpload::new(st.clone(), job, run_id, run_dir);
        let (job, run_id) = (job.to_string(), run_id.to_string());
        let renew = move || {
            let body = json!({
                "job_id": job,
                "run_id": run_id,
                "started_at": rfc3339(started),
                "expires_at": rfc3339(Utc::now() + chrono::Duration::seconds(ttl as i64)),
                "runner": RunnerRecord::current(),
                "pid": std::process::id(),
            });
            if let Err(e) = st.renew_lease(&job, &run_id, &body) {
                warn!(error = %e.message, "cannot renew the run's lease");
            }
        };
        renew();
        let on = Arc::new(AtomicBool::new(true));
        let on2 = on.clone();
        let thread = std::thread::Builder::new()
            .name("lily-lease".into())
            .spawn(move || {
                let step = std::time::Duration::from_millis(ttl * 1000 / 3);
                let every = std::time::Duration::from_secs(crate::runs::store::segment_seconds());
                let tick = std::time::Duration::from_millis(100);
                let mut renewed = std::time::Instant::now();
                let mut uploaded = std::time::Instant::now();
                let mut capped = false;
                while on2.load(Ordering::SeqCst) {
                    std::thread::sleep(tick);
                    if !on2.load(Ordering::SeqCst) {
                        break;
                    }
                    if uploaded.elapsed() >= every {
                        if let Err(e) = live.sync() {
                            warn!(error = %e.message, "cannot upload the run's events to the store");
                        }
                        if !capped && live.segments() >= crate::runs::store::MAX_SEGMENTS {
                            capped = true;
                            warn!(
                                "the run has {} event segments in the store: the rest is uploaded when it finishes",
                                crate::runs::store::MAX_SEGMENTS
                            );
                        }
                        uploaded = std::time::Instant::now();
                    }
                    if renewed.elapsed() >= step {
                        renew();
                        renewed = std::time::Instant::now();
                    }
                }
            })
            .ok();
        RunLease { on, thread }
    }

    /// Stop the thread and wait for it (an upload in flight ends first), so
    /// nothing of the run is written to the store after this returns.
    pub fn finish(mut self) {
        self.on.store(false, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.on.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_passes_of_a_fall_back_hour_share_one_wall_clock_slot() {
        let a = "2027-11-07T05:30:00Z".parse().expect("t");
        let b = "2027-11-07T06:30:00Z".parse().expect("t");
        assert_eq!(wall_clock_slot(a, "America/New_York"), "2027-11-07T01:30:00");
        assert_eq!(wall_clock_slot(b, "America/New_York"), "2027-11-07T01:30:00");
        assert_eq!(wall_clock_slot(b, "UTC"), "2027-11-07T06:30:00");
    }
}
