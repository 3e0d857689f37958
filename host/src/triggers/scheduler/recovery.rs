//! Crash recovery: after a restart, derive the decisions that were pending
//! (pure functions of their inputs), compare with what the run directories
//! hold, and write what is missing.

use super::*;

impl Scheduler {
    /// After a crash: for every decision still pending in the state, derive
    /// its run and records again and write the records that are missing — a
    /// `scheduler_stopped` missed record for a run that never got a run
    /// directory. Nothing is started.
    pub(super) fn recover(&mut self) {
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
            let Some(job) = self.plan_of(&entry.spec) else { continue };
            for p in &pending {
                if p.schedule != job.fingerprint() {
                    continue;
                }
                let Some(d) = plan::decide(&job, p.after, p.at, p.serving_since, p.busy) else {
                    continue;
                };
                let mut records = decision_records(&entry.spec, &job, &d, p.at, None);
                if let Some(t) = d.fire
                    && !on_disk.runs.contains(&t)
                    && on_disk.without_receipt == 0
                {
                    let mut r = record_for(&entry.spec, &job, RunStatus::Missed, t, MISSED_SCHEDULER_STOPPED, json!({}));
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
}

/// The records of a decision made at `now`, oldest time first (`running`:
/// the runs in progress for an overlap, when known).
pub(super) fn decision_records(e: &CronSpec, plan: &JobPlan, d: &Decision, now: DateTime<Utc>, running: Option<u32>) -> Vec<Record> {
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
        if f.last_reason != f.reason {
            details["last_reason"] = json!(f.last_reason.as_str());
        }
        out.push(record_for(e, plan, RunStatus::Missed, f.first, f.reason.as_str(), details));
    }
    for m in &d.missed {
        let mut details = base.clone();
        details["late_by_seconds"] = json!((now - m.at).num_seconds());
        out.push(record_for(e, plan, RunStatus::Missed, m.at, m.reason.as_str(), details));
    }
    if let Some(t) = d.skipped_overlap {
        let mut details = json!({"max_parallel_runs": plan.max_parallel_runs});
        if let Some(n) = running {
            details["running"] = json!(n);
        }
        out.push(record_for(e, plan, RunStatus::SkippedOverlap, t, "overlap", details));
    }
    out
}

/// What a job's run directories hold for times after `after`: runs and
/// records by scheduled time, and run directories without a receipt yet.
pub(super) struct OnDisk {
    pub(super) runs: HashSet<DateTime<Utc>>,
    pub(super) records: HashSet<(&'static str, DateTime<Utc>)>,
    pub(super) without_receipt: usize,
}

/// Newest run directories first, down to the first one scheduled at or
/// before `after` (run ids sort by creation, and a decision's run and
/// records are created after every earlier decision's).
pub(super) fn recorded_since(runs_dir: &Path, job_id: &str, after: DateTime<Utc>) -> OnDisk {
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
        let Some(t) = r.trigger.scheduled_for().and_then(|s| s.parse::<DateTime<Utc>>().ok()) else {
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

pub(super) fn record_for(s: &CronSpec, plan: &JobPlan, status: RunStatus, at: DateTime<Utc>, reason: &str, details: Value) -> Record {
    Record {
        job_id: s.id.clone(),
        status,
        scheduled_for: at,
        scheduled_for_local: plan.schedule.fire_time(at).local,
        timezone: plan.schedule.timezone().name().to_string(),
        reason: reason.to_string(),
        details,
        spec_sha256: s.spec_sha256(),
        spec_path: s.path().display().to_string(),
        target: (*s.target).clone(),
    }
}
