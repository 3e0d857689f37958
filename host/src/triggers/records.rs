//! Records of scheduled times that did not run: a run directory under
//! `.lily/runs/<job>/` whose receipt has status `missed` or
//! `skipped_overlap`, the cron trigger (`scheduled_for` in UTC and local
//! time) and an `events.jsonl` with one `job_missed` / `job_skipped_overlap`
//! event, so `lily jobs runs` shows them next to real runs.

use crate::runs::EventSink;
use crate::runs::{EventLog, Receipt, RunDir, RunStatus, TargetRecord, TriggerRecord};
use crate::util::rfc3339;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// One scheduled time that did not run.
#[derive(Debug, Clone)]
pub struct Record {
    pub job_id: String,
    /// `missed` or `skipped_overlap`.
    pub status: RunStatus,
    pub scheduled_for: DateTime<Utc>,
    pub scheduled_for_local: String,
    pub timezone: String,
    /// The `job_missed` reason (`scheduler_not_running`, …) or `overlap`.
    pub reason: String,
    /// Extra fields for the event and the receipt payload (folded counts,
    /// deadline, …).
    pub details: Value,
    pub spec_sha256: String,
    pub spec_path: String,
    /// `{kind, id, requirement}` of the job's target.
    pub target: TargetRecord,
}

impl Record {
    /// The event type of the record.
    pub fn event_type(&self) -> &'static str {
        match self.status {
            RunStatus::SkippedOverlap => "job_skipped_overlap",
            RunStatus::DuplicateSkipped => "job_duplicate_skipped",
            _ => "job_missed",
        }
    }
}

/// The `trigger` of a cron run's receipt.
pub fn cron_trigger(scheduled_for: DateTime<Utc>, local: &str, timezone: &str) -> TriggerRecord {
    TriggerRecord::Cron {
        scheduled_for: rfc3339(scheduled_for),
        scheduled_for_local: local.to_string(),
        timezone: timezone.to_string(),
    }
}

/// Write the record as a run directory; returns its path.
pub fn write_record(runs_dir: &Path, r: &Record) -> std::io::Result<PathBuf> {
    let run = RunDir::create(runs_dir, &r.job_id)?;
    let trigger = cron_trigger(r.scheduled_for, &r.scheduled_for_local, &r.timezone);
    let mut fields = json!({
        "job_id": r.job_id,
        "scheduled_for": rfc3339(r.scheduled_for),
        "scheduled_for_local": r.scheduled_for_local,
        "timezone": r.timezone,
        "reason": r.reason,
    });
    if let (Value::Object(f), Value::Object(d)) = (&mut fields, &r.details) {
        for (k, v) in d {
            f.insert(k.clone(), v.clone());
        }
    }
    let events = EventLog::create(&run.path, &run.run_id, None)?;
    events.emit(r.event_type(), fields.clone());
    let mut receipt = Receipt::start(&r.job_id, &run.run_id, trigger, &r.spec_sha256, &r.spec_path);
    receipt.status = r.status;
    receipt.target = r.target.clone();
    receipt.payload = fields;
    receipt.ended_at = Some(receipt.started_at.clone());
    run.commit_receipt(&mut receipt, &events)?;
    let _ = crate::runs::append_index(runs_dir, &receipt);
    Ok(run.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs;

    #[test]
    fn records_show_in_the_run_history() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runs = tmp.path().join("runs");
        let at: DateTime<Utc> = "2026-03-08T07:00:00Z".parse().expect("instant");
        let record = Record {
            job_id: "nightly".into(),
            status: RunStatus::Missed,
            scheduled_for: at,
            scheduled_for_local: "2026-03-08T03:00:00-04:00".into(),
            timezone: "America/New_York".into(),
            reason: "scheduler_not_running".into(),
            details: json!({"catchup": "latest"}),
            spec_sha256: "sha256:x".into(),
            spec_path: "nightly.job.yaml".into(),
            target: TargetRecord {
                kind: "blueprint".into(),
                id: "council.v1".into(),
                ..Default::default()
            },
        };
        let dir = write_record(&runs, &record).expect("write");
        let overlap = Record {
            status: RunStatus::SkippedOverlap,
            reason: "overlap".into(),
            ..record.clone()
        };
        write_record(&runs, &overlap).expect("write");

        let listed = runs::list_runs(&runs, "nightly", 10, None);
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|r| r.trigger == "cron" && r.ended_at.is_some()));
        let statuses: Vec<RunStatus> = listed.iter().map(|r| r.status).collect();
        assert!(statuses.contains(&RunStatus::Missed) && statuses.contains(&RunStatus::SkippedOverlap));

        let receipt = runs::read_receipt(&dir).expect("receipt");
        assert_eq!(receipt.status, RunStatus::Missed);
        assert_eq!(
            receipt.trigger,
            TriggerRecord::Cron {
                scheduled_for: "2026-03-08T07:00:00.000Z".into(),
                scheduled_for_local: "2026-03-08T03:00:00-04:00".into(),
                timezone: "America/New_York".into(),
            }
        );
        let events = runs::read_events(&dir);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "job_missed");
        assert_eq!(events[0]["reason"], "scheduler_not_running");
        assert_eq!(events[0]["catchup"], "latest");
    }
}
