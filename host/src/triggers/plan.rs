//! The scheduler's decisions, with no I/O: given a job's schedule, the last
//! scheduled time already decided (the *cursor*), the current instant and
//! whether the job is busy, which time fires, which are recorded as missed
//! and which is skipped because the job is still running.
//!
//! # Rules
//!
//! The times *due* are the schedule's fire times in `(cursor, now]`. Only the
//! latest of them (the *candidate*) can run; every earlier one is a missed
//! time (one run per scheduled time at most, never a burst of catch-up
//! runs). The candidate:
//!
//! 1. runs when it is on time: no more than [`ON_TIME_SLACK`] (2 s) late —
//!    the scheduler's own wake-up lag never makes a time missed, whatever
//!    the catch-up policy or deadline;
//! 2. otherwise, with `catchup: latest`, runs when it is no more than
//!    `starting_deadline_seconds` late, and is missed after that;
//! 3. otherwise, with `catchup: skip`, is missed;
//! 4. when it would run but the job already has `max_parallel_runs` runs in
//!    progress, is skipped with a `job_skipped_overlap` record instead.
//!
//! After a decision the cursor moves to the latest due time, so each
//! scheduled time is decided exactly once.
//!
//! The missed times of one decision get one record: a single time its own,
//! two or more (an outage) one collapsed record with their count and the
//! first and last of them ("56 missed between … and …") — never one record
//! per time.

use crate::spec::Catchup;
use crate::spec::cron::CronSchedule;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::VecDeque;

/// How late a scheduled time may be and still count as on time.
pub const ON_TIME_SLACK: TimeDelta = TimeDelta::seconds(2);

/// At most this many due times are enumerated one by one per decision (a
/// per-second schedule after a year of downtime has 31 million); past it the
/// newest times are found by searching back from `now` and the count is a
/// lower bound.
pub const DUE_SCAN_BUDGET: u64 = 20_000;

/// What the scheduler needs to know about a cron job to decide for it. The
/// compiled schedule is shared (`Arc`): the scheduler compiles it when it
/// needs it and keeps only a bounded number compiled (croner's compiled form
/// is ~5 KiB per expression).
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub id: String,
    pub schedule: std::sync::Arc<CronSchedule>,
    pub catchup: Catchup,
    pub starting_deadline: TimeDelta,
    pub max_parallel_runs: u32,
}

impl JobPlan {
    /// The plan of a validated cron job spec; `None` for a manual job.
    pub fn from_spec(spec: &crate::spec::JobSpec) -> Option<JobPlan> {
        let schedule = std::sync::Arc::new(spec.schedule()?);
        Some(JobPlan {
            id: spec.id.clone(),
            schedule,
            catchup: spec.trigger.catchup,
            starting_deadline: i64::try_from(spec.trigger.starting_deadline_seconds)
                .ok()
                .and_then(TimeDelta::try_seconds)
                .unwrap_or(TimeDelta::MAX),
            max_parallel_runs: spec.runtime.max_parallel_runs,
        })
    }

    /// `"<expr> @ <timezone>"`: when it changes, the cursor restarts at the
    /// instant of the change (times of the old schedule are not missed times
    /// of the new one).
    pub fn fingerprint(&self) -> String {
        format!("{} @ {}", self.schedule.expr(), self.schedule.timezone().name())
    }
}

/// Why a scheduled time did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// It passed while no scheduler was running, and a later time was due.
    SchedulerNotRunning,
    /// It passed while the scheduler was running but late (suspend, overload)
    /// and a later time was due.
    Superseded,
    /// The latest due time, later than `starting_deadline_seconds`.
    PastStartingDeadline,
    /// The latest due time, late, and the job says `catchup: skip`.
    CatchupSkip,
}

impl MissReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::SchedulerNotRunning => "scheduler_not_running",
            MissReason::Superseded => "superseded",
            MissReason::PastStartingDeadline => "past_starting_deadline",
            MissReason::CatchupSkip => "catchup_skip",
        }
    }
}

/// One missed scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub at: DateTime<Utc>,
    pub reason: MissReason,
}

/// Two or more missed times of one decision, collapsed into one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedMisses {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// How many times are folded (a lower bound when `exact` is false).
    pub count: u64,
    pub exact: bool,
    /// Why the first of them was missed (`scheduler_not_running` for an outage).
    pub reason: MissReason,
    /// Why the last of them was missed (the latest due time can be missed
    /// for its own reason: `past_starting_deadline`, `catchup_skip`).
    pub last_reason: MissReason,
}

/// What to do for one job at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Start a run for this scheduled time.
    pub fire: Option<DateTime<Utc>>,
    /// This scheduled time is skipped: the job is still running.
    pub skipped_overlap: Option<DateTime<Utc>>,
    /// A single missed time (its own record). Empty when none or when the
    /// missed times are `folded`.
    pub missed: Vec<Miss>,
    /// Two or more missed times, collapsed into one record.
    pub folded: Option<FoldedMisses>,
    /// The new cursor: every scheduled time up to it is decided.
    pub cursor: DateTime<Utc>,
}

impl Decision {
    /// Every missed time, folded ones included.
    pub fn missed_count(&self) -> u64 {
        self.missed.len() as u64 + self.folded.as_ref().map(|f| f.count).unwrap_or(0)
    }

    /// The newest missed time and why it was missed.
    pub fn newest_miss(&self) -> Option<Miss> {
        match &self.folded {
            Some(f) => Some(Miss {
                at: f.last,
                reason: f.last_reason,
            }),
            None => self.missed.last().cloned(),
        }
    }
}

/// The due times of a schedule in `(after, now]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// How many (a lower bound when `exact` is false).
    pub count: u64,
    pub exact: bool,
    /// The newest ones, oldest first (at most `keep`).
    pub newest: Vec<DateTime<Utc>>,
    /// The first due time.
    pub first: Option<DateTime<Utc>>,
    /// The newest due time not in `newest` (the end of the folded range).
    pub last_dropped: Option<DateTime<Utc>>,
}

/// Enumerate the due times in `(after, now]`, keeping the newest `keep`.
pub fn due_times(schedule: &CronSchedule, after: DateTime<Utc>, now: DateTime<Utc>, keep: usize, budget: u64) -> Due {
    const CHUNK: usize = 4096;
    let keep = keep.max(1);
    let mut due = Due {
        count: 0,
        exact: true,
        newest: Vec::new(),
        first: None,
        last_dropped: None,
    };
    if after >= now {
        return due;
    }
    let mut ring: VecDeque<DateTime<Utc>> = VecDeque::with_capacity(keep.min(1024) + 1);
    let mut from = after;
    loop {
        let batch = schedule.fires_between(from, now, CHUNK);
        let full = batch.len() == CHUNK;
        for t in batch {
            due.count += 1;
            due.first.get_or_insert(t);
            ring.push_back(t);
            if ring.len() > keep {
                due.last_dropped = ring.pop_front();
            }
            from = t;
        }
        if !full {
            break;
        }
        if due.count >= budget {
            // Too many to walk: find the newest ones by searching back from now.
            due.exact = false;
            for t in newest_before(schedule, from, now, keep) {
                ring.push_back(t);
                if ring.len() > keep {
                    due.last_dropped = ring.pop_front();
                }
            }
            break;
        }
    }
    due.newest = ring.into_iter().collect();
    due
}

/// The newest `keep` fire times in `(after, now]`, searching windows of
/// growing size back from `now`.
fn newest_before(schedule: &CronSchedule, after: DateTime<Utc>, now: DateTime<Utc>, keep: usize) -> Vec<DateTime<Utc>> {
    let windows = [
        TimeDelta::minutes(5),
        TimeDelta::hours(1),
        TimeDelta::days(1),
        TimeDelta::days(31),
        TimeDelta::days(366),
        TimeDelta::days(366 * 10),
    ];
    let mut best = Vec::new();
    for w in windows {
        let lo = (now - w).max(after);
        let inner = due_times(schedule, lo, now, keep, DUE_SCAN_BUDGET);
        best = inner.newest;
        if best.len() >= keep || lo == after {
            break;
        }
    }
    best
}

/// Decide what happens for one active job at `now`. `cursor` is the last
/// scheduled time already decided, `serving_since` the instant the running
/// scheduler started (times at or before it passed while no scheduler was
/// running), `busy` whether the job already has `max_parallel_runs` runs in
/// progress. `None` when nothing is due.
pub fn decide(job: &JobPlan, cursor: DateTime<Utc>, now: DateTime<Utc>, serving_since: DateTime<Utc>, busy: bool) -> Option<Decision> {
    // The candidate and the time before it; every earlier one only counts.
    let due = due_times(&job.schedule, cursor, now, 2, DUE_SCAN_BUDGET);
    let (&candidate, before) = due.newest.split_last()?;
    let late = now - candidate;
    let runs = if late <= ON_TIME_SLACK {
        Ok(())
    } else {
        match job.catchup {
            Catchup::Latest if late <= job.starting_deadline => Ok(()),
            Catchup::Latest => Err(MissReason::PastStartingDeadline),
            Catchup::Skip => Err(MissReason::CatchupSkip),
        }
    };
    let earlier_reason = |t: DateTime<Utc>| {
        if t <= serving_since {
            MissReason::SchedulerNotRunning
        } else {
            MissReason::Superseded
        }
    };
    let mut decision = Decision {
        fire: None,
        skipped_overlap: None,
        missed: Vec::new(),
        folded: None,
        cursor: candidate,
    };
    let candidate_missed = match runs {
        Ok(()) if busy => {
            decision.skipped_overlap = Some(candidate);
            None
        }
        Ok(()) => {
            decision.fire = Some(candidate);
            None
        }
        Err(reason) => Some(Miss { at: candidate, reason }),
    };
    // Every time before the candidate was missed: `due.first` is the oldest,
    // `before` the newest of them.
    let earlier = due.count - 1;
    let last_earlier = before.last().map(|&at| Miss {
        at,
        reason: earlier_reason(at),
    });
    let total = earlier + u64::from(candidate_missed.is_some());
    match (total, due.first, candidate_missed.clone().or(last_earlier.clone())) {
        (0, _, _) | (_, None, _) | (_, _, None) => {}
        (1, _, _) => decision.missed = last_earlier.into_iter().chain(candidate_missed).collect(),
        (count, Some(first), Some(last)) => {
            decision.folded = Some(FoldedMisses {
                first,
                last: last.at,
                count,
                exact: due.exact,
                reason: earlier_reason(first),
                last_reason: last.reason,
            });
        }
    }
    Some(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339 instant")
    }

    fn job(expr: &str, tz: &str, catchup: Catchup, deadline_s: i64) -> JobPlan {
        JobPlan {
            id: "j".into(),
            schedule: std::sync::Arc::new(CronSchedule::parse(expr, tz).expect("valid schedule")),
            catchup,
            starting_deadline: TimeDelta::seconds(deadline_s),
            max_parallel_runs: 1,
        }
    }

    #[test]
    fn nothing_due_before_the_next_time() {
        let j = job("0 * * * *", "UTC", Catchup::Latest, 300);
        let cursor = utc("2026-05-01T10:00:00Z");
        assert_eq!(decide(&j, cursor, utc("2026-05-01T10:59:59Z"), cursor, false), None);
        // The cursor itself is never due again.
        assert_eq!(decide(&j, cursor, cursor, cursor, false), None);
        // A clock that went backwards decides nothing.
        assert_eq!(decide(&j, cursor, utc("2026-05-01T09:00:00Z"), cursor, false), None);
    }

    #[test]
    fn on_time_fires_once_and_moves_the_cursor() {
        let j = job("0 * * * *", "UTC", Catchup::Skip, 0);
        let cursor = utc("2026-05-01T10:00:00Z");
        let d = decide(&j, cursor, utc("2026-05-01T11:00:00.004Z"), cursor, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-05-01T11:00:00Z")));
        assert_eq!(d.cursor, utc("2026-05-01T11:00:00Z"));
        assert!(d.missed.is_empty() && d.folded.is_none() && d.skipped_overlap.is_none());
        // Deciding again from the new cursor: nothing.
        assert_eq!(decide(&j, d.cursor, utc("2026-05-01T11:00:01Z"), cursor, false), None);
        // The scheduler's own lag (under 2 s) is on time even with skip and deadline 0.
        let d = decide(&j, cursor, utc("2026-05-01T11:00:01.900Z"), cursor, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-05-01T11:00:00Z")));
    }

    #[test]
    fn catchup_latest_within_deadline_runs_the_latest_and_records_the_rest() {
        let j = job("*/10 * * * *", "UTC", Catchup::Latest, 300);
        let cursor = utc("2026-05-01T10:00:00Z");
        // Down from 10:00 to 10:34: 10:10, 10:20 missed, 10:30 runs (4 min late).
        let start = utc("2026-05-01T10:34:00Z");
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-05-01T10:30:00Z")));
        // The two missed times: one collapsed record.
        assert!(d.missed.is_empty());
        assert_eq!(
            d.folded,
            Some(FoldedMisses {
                first: utc("2026-05-01T10:10:00Z"),
                last: utc("2026-05-01T10:20:00Z"),
                count: 2,
                exact: true,
                reason: MissReason::SchedulerNotRunning,
                last_reason: MissReason::SchedulerNotRunning,
            })
        );
        assert_eq!(d.cursor, utc("2026-05-01T10:30:00Z"));
        assert_eq!(d.missed_count(), 2);
        // One missed time keeps a record of its own.
        let start = utc("2026-05-01T10:24:00Z");
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-05-01T10:20:00Z")));
        assert_eq!(
            d.missed,
            vec![Miss {
                at: utc("2026-05-01T10:10:00Z"),
                reason: MissReason::SchedulerNotRunning
            }]
        );
        assert!(d.folded.is_none());
    }

    #[test]
    fn catchup_latest_beyond_deadline_records_every_time() {
        let j = job("*/10 * * * *", "UTC", Catchup::Latest, 300);
        let cursor = utc("2026-05-01T10:00:00Z");
        let start = utc("2026-05-01T10:36:00Z"); // 10:30 is 6 min late > 5 min
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(d.fire, None);
        let f = d.folded.clone().expect("collapsed");
        assert_eq!((f.first, f.last, f.count), (utc("2026-05-01T10:10:00Z"), utc("2026-05-01T10:30:00Z"), 3));
        assert_eq!((f.reason, f.last_reason), (MissReason::SchedulerNotRunning, MissReason::PastStartingDeadline));
        assert_eq!(
            d.newest_miss(),
            Some(Miss {
                at: utc("2026-05-01T10:30:00Z"),
                reason: MissReason::PastStartingDeadline
            })
        );
        assert_eq!(d.cursor, utc("2026-05-01T10:30:00Z"));
        // Exactly at the deadline still runs.
        let start = utc("2026-05-01T10:35:00Z");
        assert_eq!(decide(&j, cursor, start, start, false).expect("due").fire, Some(utc("2026-05-01T10:30:00Z")));
    }

    #[test]
    fn catchup_skip_records_instead_of_running_late() {
        let j = job("*/10 * * * *", "UTC", Catchup::Skip, 300);
        let cursor = utc("2026-05-01T10:00:00Z");
        let start = utc("2026-05-01T10:31:00Z");
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(d.fire, None);
        let f = d.folded.expect("collapsed");
        assert_eq!(f.count, 3);
        assert_eq!((f.reason, f.last_reason), (MissReason::SchedulerNotRunning, MissReason::CatchupSkip));
    }

    #[test]
    fn late_while_serving_is_superseded_not_down() {
        let j = job("* * * * * *", "UTC", Catchup::Latest, 300);
        let since = utc("2026-05-01T10:00:00Z");
        // The scheduler stalled for 3 s: two superseded times and one run.
        let d = decide(&j, utc("2026-05-01T10:00:10Z"), utc("2026-05-01T10:00:13Z"), since, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-05-01T10:00:13Z")));
        let f = d.folded.expect("collapsed");
        assert_eq!((f.reason, f.last_reason, f.count), (MissReason::Superseded, MissReason::Superseded, 2));
    }

    #[test]
    fn overlap_skips_the_time_it_would_have_run() {
        let j = job("*/5 * * * *", "UTC", Catchup::Latest, 300);
        let cursor = utc("2026-05-01T10:00:00Z");
        let d = decide(&j, cursor, utc("2026-05-01T10:05:00Z"), cursor, true).expect("due");
        assert_eq!(d.fire, None);
        assert_eq!(d.skipped_overlap, Some(utc("2026-05-01T10:05:00Z")));
        assert_eq!(d.cursor, utc("2026-05-01T10:05:00Z"));
        // Caught up (within the deadline) but busy: still an overlap.
        let d = decide(&j, cursor, utc("2026-05-01T10:07:00Z"), utc("2026-05-01T10:06:00Z"), true).expect("due");
        assert_eq!(d.skipped_overlap, Some(utc("2026-05-01T10:05:00Z")));
        // A time that is missed anyway is recorded as missed, not as an overlap.
        let skip = job("*/5 * * * *", "UTC", Catchup::Skip, 300);
        let d = decide(&skip, cursor, utc("2026-05-01T10:05:30Z"), cursor, true).expect("due");
        assert_eq!(d.skipped_overlap.or(d.fire), None);
        assert_eq!(d.missed[0].reason, MissReason::CatchupSkip);
    }

    #[test]
    fn long_downtime_is_one_collapsed_record() {
        let j = job("* * * * *", "UTC", Catchup::Latest, 300);
        let cursor = utc("2026-05-01T00:00:00Z");
        let start = utc("2026-05-02T00:00:30Z"); // 1440 times due
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-05-02T00:00:00Z")));
        assert!(d.missed.is_empty());
        let folded = d.folded.clone().expect("folded");
        assert_eq!(folded.first, utc("2026-05-01T00:01:00Z"));
        assert_eq!(folded.last, utc("2026-05-01T23:59:00Z"));
        assert_eq!(folded.count, 1439);
        assert!(folded.exact);
        assert_eq!(d.missed_count(), 1439);
    }

    #[test]
    fn huge_downtime_is_bounded_and_still_finds_the_latest() {
        let j = job("* * * * * *", "UTC", Catchup::Latest, 300);
        let cursor = utc("2025-05-01T00:00:00Z");
        let start = utc("2026-05-01T00:00:00.500Z"); // 31.5 million seconds
        let t = std::time::Instant::now();
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
        assert_eq!(d.fire, Some(utc("2026-05-01T00:00:00Z")));
        assert_eq!(d.cursor, utc("2026-05-01T00:00:00Z"));
        let folded = d.folded.expect("folded");
        assert!(!folded.exact);
        assert!(folded.count >= DUE_SCAN_BUDGET - 1);
        assert_eq!(folded.first, utc("2025-05-01T00:00:01Z"));
        assert_eq!(folded.last, utc("2026-04-30T23:59:59Z"));
        assert!(d.missed.is_empty());
    }

    /// Walk a perfect scheduler (wake exactly at each next time) and collect
    /// the fire times with their local rendering.
    fn walk(j: &JobPlan, from: &str, to: &str) -> Vec<(DateTime<Utc>, String)> {
        let (mut cursor, to) = (utc(from), utc(to));
        let since = cursor;
        let mut out = Vec::new();
        while let Some(next) = j.schedule.next_after(cursor).filter(|t| *t <= to) {
            let d = decide(j, cursor, next, since, false).expect("due at its own time");
            assert!(d.missed.is_empty());
            let fire = d.fire.expect("fires");
            out.push((fire, j.schedule.fire_time(fire).local));
            cursor = d.cursor;
        }
        out
    }

    #[test]
    fn dst_fixed_times_through_the_decisions() {
        let ny_spring = walk(
            &job("30 2 * * *", "America/New_York", Catchup::Latest, 300),
            "2026-03-07T12:00:00Z",
            "2026-03-09T12:00:00Z",
        );
        let locals: Vec<&str> = ny_spring.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(locals, ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]);

        let ny_fall = walk(
            &job("30 1 * * *", "America/New_York", Catchup::Latest, 300),
            "2026-10-31T12:00:00Z",
            "2026-11-02T12:00:00Z",
        );
        let locals: Vec<&str> = ny_fall.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(locals, ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]);

        let berlin_spring = walk(
            &job("30 2 * * *", "Europe/Berlin", Catchup::Latest, 300),
            "2026-03-28T12:00:00Z",
            "2026-03-30T12:00:00Z",
        );
        let locals: Vec<&str> = berlin_spring.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(locals, ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]);

        let berlin_autumn = walk(
            &job("30 2 * * *", "Europe/Berlin", Catchup::Latest, 300),
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
        );
        let locals: Vec<&str> = berlin_autumn.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(locals, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]);
    }

    #[test]
    fn dst_intervals_through_the_decisions() {
        // New York fall back: 01:00-01:59 twice, */15 fires in both passes.
        let fires = walk(
            &job("*/15 * * * *", "America/New_York", Catchup::Latest, 300),
            "2026-11-01T04:59:00Z",
            "2026-11-01T07:00:00Z",
        );
        let locals: Vec<&str> = fires.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            locals,
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:15:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:45:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:15:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T01:45:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ]
        );
        // New York spring forward: no 02:xx wall times, real spacing kept.
        let fires = walk(
            &job("*/30 * * * *", "America/New_York", Catchup::Latest, 300),
            "2026-03-08T06:00:00Z",
            "2026-03-08T08:00:00Z",
        );
        let locals: Vec<&str> = fires.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            locals,
            [
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00",
                "2026-03-08T04:00:00-04:00"
            ]
        );
        // Berlin autumn: 02:00-02:59 twice.
        let fires = walk(
            &job("*/30 * * * *", "Europe/Berlin", Catchup::Latest, 300),
            "2026-10-24T23:59:00Z",
            "2026-10-25T02:00:00Z",
        );
        let locals: Vec<&str> = fires.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            locals,
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ]
        );
        // Berlin spring: 02:00-02:59 does not exist.
        let fires = walk(
            &job("*/30 * * * *", "Europe/Berlin", Catchup::Latest, 300),
            "2026-03-29T00:00:00Z",
            "2026-03-29T02:00:00Z",
        );
        let locals: Vec<&str> = fires.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            locals,
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T04:00:00+02:00"
            ]
        );
    }

    #[test]
    fn dst_catchup_across_the_gap_counts_real_times_only() {
        // Down across the New York spring gap with a 02:30 daily job: the
        // moved 03:00 EDT fire is the only due time, and it is caught up.
        let j = job("30 2 * * *", "America/New_York", Catchup::Latest, 600);
        let cursor = utc("2026-03-07T07:30:00Z");
        let start = utc("2026-03-08T07:05:00Z"); // 03:05 EDT
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(d.fire, Some(utc("2026-03-08T07:00:00Z")));
        assert!(d.missed.is_empty());
        // Down across the fall-back repeat with 01:30 daily: one time only.
        let j = job("30 1 * * *", "America/New_York", Catchup::Skip, 600);
        let cursor = utc("2026-10-31T05:30:00Z");
        let start = utc("2026-11-01T07:00:00Z");
        let d = decide(&j, cursor, start, start, false).expect("due");
        assert_eq!(
            d.missed,
            vec![Miss {
                at: utc("2026-11-01T05:30:00Z"),
                reason: MissReason::CatchupSkip
            }]
        );
    }
}
