//! The scheduler against a simulated clock: every scenario drives
//! [`Scheduler::tick`] (or [`run_loop`] on a [`SimClock`]) with chosen
//! instants, a fake launcher and a real temporary root, so the durable state
//! and the records are the real ones.

use super::*;
use crate::runs;
use crate::triggers::clock::SimClock;
use crate::triggers::state::{Transition, read_state, set_activity};
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("RFC 3339 instant")
}

struct TestRoot {
    _tmp: tempfile::TempDir,
    root: Root,
}

/// A root on tmpfs when there is one: the scenarios write hundreds of
/// fsynced files, which is the disk's time, not the scheduler's.
fn test_root() -> TestRoot {
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tmp")
    } else {
        tempfile::tempdir().expect("tmp")
    };
    for d in [".lily/jobs", ".lily/runs", ".lily/state"] {
        std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
    }
    let root = Root::at(tmp.path().to_path_buf(), None).expect("root");
    TestRoot { _tmp: tmp, root }
}

fn spec_text(id: &str, cron: &str, tz: &str, trigger_extra: &str, runtime: &str) -> String {
    format!(
        "id: {id}\ntitle: {id}\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {{ topic: t }}\n\
         bindings: {{ specialists: [security.v1, operations.v1], synthesizer: default.v1 }}\n\
         trigger: {{ type: cron, cron: \"{cron}\", timezone: {tz}{trigger_extra} }}\nruntime: {{ {runtime} }}\noutput: {{}}\n"
    )
}

fn write_spec(r: &TestRoot, id: &str, cron: &str, tz: &str, trigger_extra: &str, runtime: &str) {
    std::fs::write(r.root.jobs_dir.join(format!("{id}.job.yaml")), spec_text(id, cron, tz, trigger_extra, runtime)).expect("write spec");
}

/// Records fires and starts each run the way the executor does (a run
/// directory with a receipt, then [`RunGuard::started`]) unless
/// `crash_before_start` is set; holds the runs open while `hold` is set;
/// checks that the fire was in the durable state before the run started.
#[derive(Default)]
struct FakeLauncher {
    fires: Mutex<Vec<Fire>>,
    held: Mutex<Vec<RunGuard>>,
    hold: AtomicBool,
    crash_before_start: AtomicBool,
    runs_dir: PathBuf,
    state_path: Mutex<Option<PathBuf>>,
    recorded_before_start: AtomicBool,
    prepared: Mutex<Vec<Vec<String>>>,
}

impl FakeLauncher {
    fn new(r: &TestRoot) -> Arc<FakeLauncher> {
        let l = FakeLauncher {
            runs_dir: r.root.runs_dir(),
            ..FakeLauncher::default()
        };
        l.recorded_before_start.store(true, Ordering::SeqCst);
        *l.state_path.lock().expect("lock") = Some(StateStore::new(&r.root).path());
        Arc::new(l)
    }

    fn fired(&self) -> Vec<(String, DateTime<Utc>)> {
        self.fires.lock().expect("lock").iter().map(|f| (f.job_id.clone(), f.scheduled_for)).collect()
    }

    fn fired_for(&self, job: &str) -> Vec<DateTime<Utc>> {
        self.fired().into_iter().filter(|(j, _)| j == job).map(|(_, t)| t).collect()
    }

    fn locals_for(&self, job: &str) -> Vec<String> {
        self.fires
            .lock()
            .expect("lock")
            .iter()
            .filter(|f| f.job_id == job)
            .map(|f| f.local.clone())
            .collect()
    }

    fn finish_all(&self) {
        self.held.lock().expect("lock").clear();
    }
}

impl Launcher for FakeLauncher {
    fn launch(&self, fire: Fire, guard: RunGuard) {
        if let Some(path) = self.state_path.lock().expect("lock").as_ref() {
            let st = read_state(path).expect("state readable");
            let job = st.jobs.get(&fire.job_id);
            if job.and_then(|j| j.last_scheduled_for) != Some(fire.scheduled_for) || job.map(|j| j.cursor) != Some(fire.scheduled_for) {
                self.recorded_before_start.store(false, Ordering::SeqCst);
            }
        }
        if !self.crash_before_start.load(Ordering::SeqCst) {
            let run = runs::RunDir::create(&self.runs_dir, &fire.job_id).expect("run dir");
            let trigger = records::cron_trigger(fire.scheduled_for, &fire.local, &fire.timezone);
            let mut receipt = runs::Receipt::start(&fire.job_id, &run.run_id, trigger, &fire.spec_sha256, "");
            receipt.status = RunStatus::Succeeded;
            let events = runs::EventLog::create(&run.path, &run.run_id, None).expect("events");
            run.write_receipt(&mut receipt, &events).expect("receipt");
            guard.started();
        }
        self.fires.lock().expect("lock").push(fire);
        if self.hold.load(Ordering::SeqCst) {
            self.held.lock().expect("lock").push(guard);
        }
    }

    fn prepare(&self, jobs: Vec<PrepareJob>) {
        self.prepared.lock().expect("lock").push(jobs.into_iter().map(|j| j.job_id).collect());
    }
}

fn options(rescan_every: TimeDelta) -> SchedulerOptions {
    SchedulerOptions {
        rescan_every,
        observer: None,
        probe_slots: false,
    }
}

fn scheduler(r: &TestRoot, launcher: &Arc<FakeLauncher>, now: DateTime<Utc>, rescan_every: TimeDelta) -> Scheduler {
    Scheduler::new(r.root.clone(), options(rescan_every), launcher.clone(), RunTracker::new(), now).expect("scheduler")
}

/// A scheduler (re)started at `at` that has taken its first look (one tick).
fn serving_from(r: &TestRoot, launcher: &Arc<FakeLauncher>, at: &str) -> Scheduler {
    let mut s = scheduler(r, launcher, utc(at), RESCAN_EVERY);
    s.tick(utc(at));
    s
}

/// Drive the scheduler like a perfect clock: tick at every wake-up it asks
/// for, until the next one is after `until`. Returns the last tick instant.
fn run_until(s: &mut Scheduler, from: DateTime<Utc>, until: DateTime<Utc>) -> DateTime<Utc> {
    let mut now = from;
    for _ in 0..1_000_000 {
        let wake = s.tick(now);
        assert!(wake > now, "the wake-up {wake} is not after {now}");
        if wake > until {
            return now;
        }
        now = wake;
    }
    panic!("runaway scheduler");
}

/// (status, scheduled_for, reason) of every `missed` / `skipped_overlap`
/// record of a job, oldest time first.
fn records_of(r: &TestRoot, job: &str) -> Vec<(RunStatus, String, String)> {
    let mut out: Vec<(RunStatus, String, String)> = runs::list_runs(&r.root.runs_dir(), job, 100_000, None)
        .into_iter()
        .filter(|s| matches!(s.status, RunStatus::Missed | RunStatus::SkippedOverlap))
        .filter_map(|s| runs::read_receipt(&s.path))
        .map(|rc| {
            (
                rc.status,
                rc.trigger.scheduled_for().unwrap_or("").to_string(),
                rc.payload["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn ts(s: &str) -> String {
    rfc3339(utc(s))
}

#[test]
fn fires_every_time_once_and_records_it_before_starting() {
    let r = test_root();
    write_spec(&r, "every-minute", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    assert_eq!(s.next_fire("every-minute"), Some(utc("2026-05-01T10:01:00Z")));
    run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:05:30Z"));
    assert_eq!(
        l.fired_for("every-minute"),
        ["10:01", "10:02", "10:03", "10:04", "10:05"].map(|m| utc(&format!("2026-05-01T{m}:00Z")))
    );
    assert!(
        l.recorded_before_start.load(Ordering::SeqCst),
        "a run started before its fire was in the state file"
    );
    let st = read_state(&StateStore::new(&r.root).path()).expect("state");
    let job = &st.jobs["every-minute"];
    assert_eq!(job.last_scheduled_for, Some(utc("2026-05-01T10:05:00Z")));
    assert_eq!(job.state, Activity::Active);
    assert_eq!(job.schedule, "* * * * * @ UTC");
    s.flush_records();
    assert!(records_of(&r, "every-minute").is_empty());
}

#[test]
fn wakes_for_the_next_fire_or_the_rescan_whichever_is_first() {
    let r = test_root();
    write_spec(&r, "daily", "0 9 * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let now = utc("2026-05-01T08:59:59Z");
    let mut s = scheduler(&r, &l, now, RESCAN_EVERY);
    assert_eq!(s.tick(now), utc("2026-05-01T09:00:00Z"));
    let now = utc("2026-05-01T09:00:00.003Z");
    assert_eq!(s.tick(now), utc("2026-05-01T09:00:01Z"), "then the rescan, 2 s after the last");
    assert_eq!(l.fired_for("daily"), [utc("2026-05-01T09:00:00Z")]);
    // Without the rescan, the scheduler would sleep until tomorrow.
    let mut quiet = scheduler(&r, &l, now, TimeDelta::days(7));
    assert_eq!(quiet.tick(now), utc("2026-05-02T09:00:00Z"));
}

/// One window around a DST change: five jobs, a perfect clock.
fn dst_window(from: &str, to: &str) -> Arc<FakeLauncher> {
    let r = test_root();
    write_spec(&r, "ny-0230", "30 2 * * *", "America/New_York", "", "");
    write_spec(&r, "ny-0130", "30 1 * * *", "America/New_York", "", "");
    write_spec(&r, "ny-every-30", "*/30 * * * *", "America/New_York", "", "");
    write_spec(&r, "berlin-0230", "30 2 * * *", "Europe/Berlin", "", "");
    write_spec(&r, "berlin-every-30", "*/30 * * * *", "Europe/Berlin", "", "");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc(from), TimeDelta::days(30));
    run_until(&mut s, utc(from), utc(to));
    s.flush_records();
    for job in ["ny-0230", "ny-0130", "ny-every-30", "berlin-0230", "berlin-every-30"] {
        assert!(records_of(&r, job).is_empty(), "{job} has missed records");
        let fires = l.fired_for(job);
        assert!(fires.windows(2).all(|w| w[0] < w[1]), "{job}: {fires:?}");
    }
    // Interval schedules keep real spacing through every change.
    for job in ["ny-every-30", "berlin-every-30"] {
        let fires = l.fired_for(job);
        assert_eq!(fires.len(), 96, "{job}");
        assert!(fires.windows(2).all(|w| w[1] - w[0] == TimeDelta::minutes(30)), "{job}");
    }
    l
}

#[test]
fn dst_new_york_spring_forward() {
    let l = dst_window("2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z");
    assert_eq!(l.locals_for("ny-0230"), ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]);
    assert_eq!(l.locals_for("ny-0130"), ["2026-03-08T01:30:00-05:00", "2026-03-09T01:30:00-04:00"]);
    let every = l.locals_for("ny-every-30");
    assert!(!every.iter().any(|t| t.starts_with("2026-03-08T02:")), "{every:?}");
    assert!(every.contains(&"2026-03-08T01:30:00-05:00".to_string()) && every.contains(&"2026-03-08T03:00:00-04:00".to_string()));
}

#[test]
fn dst_new_york_fall_back() {
    let l = dst_window("2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z");
    assert_eq!(l.locals_for("ny-0130"), ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]);
    assert_eq!(l.locals_for("ny-0230"), ["2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"]);
    let every = l.locals_for("ny-every-30");
    for both in [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
    ] {
        assert!(every.contains(&both.to_string()), "{both} missing from {every:?}");
    }
}

#[test]
fn dst_berlin_spring_forward() {
    let l = dst_window("2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z");
    assert_eq!(l.locals_for("berlin-0230"), ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]);
    let every = l.locals_for("berlin-every-30");
    assert!(!every.iter().any(|t| t.starts_with("2026-03-29T02:")), "{every:?}");
}

#[test]
fn dst_berlin_autumn() {
    let l = dst_window("2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z");
    assert_eq!(l.locals_for("berlin-0230"), ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]);
    let every = l.locals_for("berlin-every-30");
    for both in [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ] {
        assert!(every.contains(&both.to_string()), "{both} missing from {every:?}");
    }
}

/// A scheduler that served from 10:00 to 10:12 (fires 10:05 and 10:10),
/// then went down.
fn served_then_down(r: &TestRoot, l: &Arc<FakeLauncher>) {
    let mut a = scheduler(r, l, utc("2026-05-01T10:00:00Z"), RESCAN_EVERY);
    run_until(&mut a, utc("2026-05-01T10:00:00Z"), utc("2026-05-01T10:12:00Z"));
    a.flush_records();
    assert_eq!(l.fired_for("five"), [utc("2026-05-01T10:05:00Z"), utc("2026-05-01T10:10:00Z")]);
}

#[test]
fn catchup_latest_within_the_deadline_runs_the_latest_and_records_the_others() {
    let r = test_root();
    write_spec(&r, "five", "*/5 * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    served_then_down(&r, &l);
    // Back at 10:27: 10:15 and 10:20 are missed, 10:25 (2 min late) runs.
    let b = serving_from(&r, &l, "2026-05-01T10:27:00Z");
    b.flush_records();
    assert_eq!(l.fired_for("five").last(), Some(&utc("2026-05-01T10:25:00Z")));
    // The two missed times: one collapsed record, from the first to the last.
    assert_eq!(
        records_of(&r, "five"),
        [(RunStatus::Missed, ts("2026-05-01T10:15:00Z"), "scheduler_not_running".to_string())]
    );
    assert_eq!(missed_counts(&r, "five"), [(2, ts("2026-05-01T10:20:00Z"))]);
    // The record is in the history `lily jobs runs` shows, as a cron run.
    let history = runs::list_runs(&r.root.runs_dir(), "five", 10, Some(RunStatus::Missed));
    assert_eq!(history.len(), 1);
    assert_eq!(runs::list_runs(&r.root.runs_dir(), "five", 10, None).len(), 4, "3 runs and 1 record");
    assert!(history.iter().all(|h| h.trigger == "cron" && h.ended_at.is_some()));
    assert_eq!(history[0].missed_count, Some(2));
    assert_eq!(history[0].missed_through.as_deref(), Some(ts("2026-05-01T10:20:00Z").as_str()));
    let events = runs::read_events(&history[0].path);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "job_missed");
    assert_eq!(events[0]["reason"], "scheduler_not_running");
    assert_eq!(events[0]["missed_count"], 2);
    assert_eq!(events[0]["scheduled_for_local"], "2026-05-01T10:15:00+00:00");
}

/// `(missed_count, missed_through)` of a job's collapsed `missed` records, oldest first.
fn missed_counts(r: &TestRoot, job: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(String, u64, String)> = runs::list_runs(&r.root.runs_dir(), job, 100_000, Some(RunStatus::Missed))
        .into_iter()
        .filter_map(|s| runs::read_receipt(&s.path))
        .filter_map(|rc| {
            let n = rc.payload["missed_count"].as_u64()?;
            let through = rc.payload["missed_through"].as_str()?.to_string();
            Some((rc.trigger.scheduled_for().unwrap_or("").to_string(), n, through))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, n, t)| (n, t)).collect()
}

#[test]
fn catchup_latest_beyond_the_deadline_runs_nothing_and_records_everything() {
    let r = test_root();
    write_spec(&r, "five", "*/5 * * * *", "UTC", ", starting_deadline_seconds: 120", "");
    let l = FakeLauncher::new(&r);
    served_then_down(&r, &l);
    let mut b = serving_from(&r, &l, "2026-05-01T10:33:00Z");
    b.flush_records();
    assert_eq!(l.fired_for("five").len(), 2, "no catch-up run");
    // 10:15 … 10:30 in one record; the last of them was past its deadline.
    assert_eq!(
        records_of(&r, "five"),
        [(RunStatus::Missed, ts("2026-05-01T10:15:00Z"), "scheduler_not_running".to_string())]
    );
    assert_eq!(missed_counts(&r, "five"), [(4, ts("2026-05-01T10:30:00Z"))]);
    let rec = &runs::list_runs(&r.root.runs_dir(), "five", 10, Some(RunStatus::Missed))[0];
    assert_eq!(runs::read_receipt(&rec.path).expect("receipt").payload["last_reason"], "past_starting_deadline");
    // And it carries on at the next time.
    run_until(&mut b, utc("2026-05-01T10:33:00Z"), utc("2026-05-01T10:35:00Z"));
    assert_eq!(l.fired_for("five").last(), Some(&utc("2026-05-01T10:35:00Z")));
}

#[test]
fn catchup_skip_records_the_missed_times_and_waits_for_the_next() {
    let r = test_root();
    write_spec(&r, "five", "*/5 * * * *", "UTC", ", catchup: skip", "");
    let l = FakeLauncher::new(&r);
    served_then_down(&r, &l);
    let mut b = scheduler(&r, &l, utc("2026-05-01T10:27:00Z"), RESCAN_EVERY);
    run_until(&mut b, utc("2026-05-01T10:27:00Z"), utc("2026-05-01T10:30:00Z"));
    b.flush_records();
    assert_eq!(
        l.fired_for("five"),
        [utc("2026-05-01T10:05:00Z"), utc("2026-05-01T10:10:00Z"), utc("2026-05-01T10:30:00Z")]
    );
    let reasons: Vec<String> = records_of(&r, "five").into_iter().map(|(_, _, why)| why).collect();
    assert_eq!(reasons, ["scheduler_not_running"]);
    assert_eq!(missed_counts(&r, "five"), [(3, ts("2026-05-01T10:25:00Z"))]);
}

#[test]
fn a_long_downtime_leaves_one_record_with_the_count_and_the_first_and_last_times() {
    let r = test_root();
    write_spec(&r, "minutely", "* * * * *", "UTC", ", catchup: skip", "");
    let l = FakeLauncher::new(&r);
    let a = serving_from(&r, &l, "2026-05-01T00:00:00Z");
    drop(a);
    let b = serving_from(&r, &l, "2026-05-03T00:00:30Z");
    b.flush_records();
    let runs = runs::list_runs(&r.root.runs_dir(), "minutely", 100_000, Some(RunStatus::Missed));
    // Two days of minutes, the latest (skipped) one included: ONE record.
    assert_eq!(runs.len(), 1, "one record for the whole outage");
    let rc = runs::read_receipt(&runs[0].path).expect("receipt");
    assert_eq!(rc.trigger.scheduled_for(), Some(ts("2026-05-01T00:01:00Z").as_str()));
    assert_eq!(rc.payload["missed_count"], 2 * 1440);
    assert_eq!(rc.payload["missed_count_exact"], true);
    assert_eq!(rc.payload["missed_through"], ts("2026-05-03T00:00:00Z"));
    assert_eq!(rc.payload["reason"], "scheduler_not_running");
    assert_eq!(rc.payload["last_reason"], "catchup_skip");
    assert_eq!(runs::read_events(&runs[0].path).len(), 1);
}

#[test]
fn overlap_skips_the_time_with_a_record_and_does_not_drift() {
    let r = test_root();
    write_spec(&r, "slow", "* * * * *", "UTC", "", "");
    write_spec(&r, "wide", "* * * * *", "UTC", "", "max_parallel_runs: 2");
    let l = FakeLauncher::new(&r);
    l.hold.store(true, Ordering::SeqCst);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    let tracker = s.tracker();
    s.tick(utc("2026-05-01T10:01:00Z"));
    assert_eq!(tracker.running("slow"), 1);
    s.tick(utc("2026-05-01T10:02:00Z"));
    s.tick(utc("2026-05-01T10:03:00Z"));
    assert_eq!(tracker.running("wide"), 2);
    l.finish_all();
    assert_eq!(tracker.total(), 0);
    s.tick(utc("2026-05-01T10:04:00Z"));
    s.flush_records();
    assert_eq!(l.fired_for("slow"), [utc("2026-05-01T10:01:00Z"), utc("2026-05-01T10:04:00Z")]);
    assert_eq!(
        records_of(&r, "slow"),
        [
            (RunStatus::SkippedOverlap, ts("2026-05-01T10:02:00Z"), "overlap".to_string()),
            (RunStatus::SkippedOverlap, ts("2026-05-01T10:03:00Z"), "overlap".to_string()),
        ]
    );
    assert_eq!(
        l.fired_for("wide"),
        [utc("2026-05-01T10:01:00Z"), utc("2026-05-01T10:02:00Z"), utc("2026-05-01T10:04:00Z")]
    );
    assert_eq!(
        records_of(&r, "wide"),
        [(RunStatus::SkippedOverlap, ts("2026-05-01T10:03:00Z"), "overlap".to_string())]
    );
    let skipped = runs::list_runs(&r.root.runs_dir(), "slow", 10, Some(RunStatus::SkippedOverlap));
    let events = runs::read_events(&skipped[0].path);
    assert_eq!(events[0]["type"], "job_skipped_overlap");
    assert_eq!(events[0]["max_parallel_runs"], 1);
}

#[test]
fn overlap_counts_runs_of_other_processes_through_their_slot_locks() {
    let r = test_root();
    write_spec(&r, "shared", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let mut opts = options(RESCAN_EVERY);
    opts.probe_slots = true;
    let mut s = Scheduler::new(r.root.clone(), opts, l.clone(), RunTracker::new(), utc("2026-05-01T10:00:30Z")).expect("scheduler");
    // A manual run in another process holds slot 0.
    let dir = r.root.state_dir().join("locks").join("shared");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let slot = File::create(dir.join("slot-0.lock")).expect("slot");
    slot.lock().expect("lock");
    s.tick(utc("2026-05-01T10:01:00Z"));
    drop(slot);
    s.tick(utc("2026-05-01T10:02:00Z"));
    s.flush_records();
    assert_eq!(l.fired_for("shared"), [utc("2026-05-01T10:02:00Z")]);
    assert_eq!(records_of(&r, "shared")[0].0, RunStatus::SkippedOverlap);
}

#[test]
fn pause_resume_disable_enable() {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let fp = "* * * * * @ UTC";
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    let mut now = run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:02:30Z"));
    assert_eq!(l.fired_for("tick").len(), 2);

    let t = set_activity(&r.root, "tick", fp, Activity::Paused, utc("2026-05-01T10:02:30Z")).expect("pause");
    assert_eq!(
        t,
        Transition {
            previous: Activity::Active,
            state: Activity::Paused,
            changed: true
        }
    );
    now = run_until(&mut s, now, utc("2026-05-01T10:05:30Z"));
    assert_eq!(s.job_state("tick").map(|j| j.state), Some(Activity::Paused));
    assert_eq!(l.fired_for("tick").len(), 2, "no fire while paused");

    set_activity(&r.root, "tick", fp, Activity::Active, utc("2026-05-01T10:05:30Z")).expect("resume");
    now = run_until(&mut s, now, utc("2026-05-01T10:06:30Z"));
    assert_eq!(l.fired_for("tick").last(), Some(&utc("2026-05-01T10:06:00Z")));
    assert_eq!(l.fired_for("tick").len(), 3, "the paused times are not caught up");

    set_activity(&r.root, "tick", fp, Activity::Disabled, utc("2026-05-01T10:06:30Z")).expect("disable");
    now = run_until(&mut s, now, utc("2026-05-01T10:08:30Z"));
    assert_eq!(l.fired_for("tick").len(), 3);
    set_activity(&r.root, "tick", fp, Activity::Active, utc("2026-05-01T10:08:30Z")).expect("enable");
    run_until(&mut s, now, utc("2026-05-01T10:09:30Z"));
    assert_eq!(l.fired_for("tick").last(), Some(&utc("2026-05-01T10:09:00Z")));
    assert_eq!(l.fired_for("tick").len(), 4);
    s.flush_records();
    assert!(records_of(&r, "tick").is_empty(), "paused and disabled times leave no records");
}

#[test]
fn a_pause_is_honoured_at_the_next_fire_even_before_the_rescan() {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), TimeDelta::hours(1));
    s.tick(utc("2026-05-01T10:01:00Z"));
    set_activity(&r.root, "tick", "* * * * * @ UTC", Activity::Paused, utc("2026-05-01T10:01:30Z")).expect("pause");
    s.tick(utc("2026-05-01T10:02:00Z"));
    assert_eq!(l.fired_for("tick"), [utc("2026-05-01T10:01:00Z")]);
}

#[test]
fn a_restart_in_the_middle_of_a_window_fires_nothing_twice() {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    l.hold.store(true, Ordering::SeqCst);
    // Fires 10:01, then dies while the run is in progress.
    let mut a = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    a.tick(utc("2026-05-01T10:01:00Z"));
    drop(a);
    l.finish_all();
    // Restarts at once, in the middle of the window, and a bit later.
    for restart in ["2026-05-01T10:01:00Z", "2026-05-01T10:01:00.500Z", "2026-05-01T10:01:30Z"] {
        let mut b = scheduler(&r, &l, utc(restart), RESCAN_EVERY);
        b.tick(utc(restart));
        b.tick(utc("2026-05-01T10:01:45Z"));
    }
    let mut c = scheduler(&r, &l, utc("2026-05-01T10:01:50Z"), RESCAN_EVERY);
    run_until(&mut c, utc("2026-05-01T10:01:50Z"), utc("2026-05-01T10:02:30Z"));
    c.flush_records();
    assert_eq!(l.fired_for("tick"), [utc("2026-05-01T10:01:00Z"), utc("2026-05-01T10:02:00Z")]);
    assert!(records_of(&r, "tick").is_empty());
}

#[test]
fn a_restart_in_the_middle_of_a_catchup_repeats_neither_run_nor_records() {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let a = serving_from(&r, &l, "2026-05-01T10:00:30Z");
    drop(a);
    // Down until 10:03:10: catches up 10:03, records 10:01 and 10:02 (one record).
    let b = serving_from(&r, &l, "2026-05-01T10:03:10Z");
    b.flush_records();
    drop(b);
    let c = serving_from(&r, &l, "2026-05-01T10:03:40Z");
    c.flush_records();
    assert_eq!(l.fired_for("tick"), [utc("2026-05-01T10:03:00Z")]);
    assert_eq!(records_of(&r, "tick").len(), 1);
    assert_eq!(missed_counts(&r, "tick"), [(2, ts("2026-05-01T10:02:00Z"))]);
}

#[test]
fn specs_added_edited_removed_and_invalid_while_serving() {
    let r = test_root();
    write_spec(&r, "a", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let events: Arc<Mutex<Vec<SchedulerEvent>>> = Arc::default();
    let sink = events.clone();
    let mut opts = options(RESCAN_EVERY);
    opts.observer = Some(Arc::new(move |e: &SchedulerEvent| sink.lock().expect("lock").push(e.clone())));
    let mut s = Scheduler::new(r.root.clone(), opts, l.clone(), RunTracker::new(), utc("2026-05-01T10:00:30Z")).expect("scheduler");
    let mut now = run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:01:10Z"));

    // Added, plus an invalid one: b runs, a keeps its schedule.
    write_spec(&r, "b", "* * * * *", "Europe/Berlin", "", "");
    std::fs::write(r.root.jobs_dir.join("c.job.yaml"), spec_text("c", "61 * * * *", "UTC", "", "")).expect("write");
    now = run_until(&mut s, now, utc("2026-05-01T10:02:10Z"));
    assert_eq!(l.fired_for("a").len(), 2);
    assert_eq!(l.fired_for("b"), [utc("2026-05-01T10:02:00Z")]);
    let invalid = events
        .lock()
        .expect("lock")
        .iter()
        .any(|e| matches!(e, SchedulerEvent::SpecInvalid { path, code: ErrorCode::JobTriggerInvalid, .. } if path.ends_with("c.job.yaml")));
    assert!(invalid, "the invalid spec is reported");

    // Edited: a becomes */5; no missed record for 10:03 and 10:04.
    write_spec(&r, "a", "*/5 * * * *", "UTC", "", "");
    now = run_until(&mut s, now, utc("2026-05-01T10:05:10Z"));
    assert_eq!(l.fired_for("a").last(), Some(&utc("2026-05-01T10:05:00Z")));
    assert_eq!(l.fired_for("a").len(), 3);

    // Removed, then back: nothing for the time it was gone.
    std::fs::remove_file(r.root.jobs_dir.join("b.job.yaml")).expect("rm");
    now = run_until(&mut s, now, utc("2026-05-01T10:07:10Z"));
    let b_before = l.fired_for("b").len();
    assert_eq!(b_before, 4, "b ran 10:02-10:05 only: {:?}", l.fired_for("b"));
    write_spec(&r, "b", "* * * * *", "Europe/Berlin", "", "");
    run_until(&mut s, now, utc("2026-05-01T10:08:10Z"));
    assert_eq!(l.fired_for("b").last(), Some(&utc("2026-05-01T10:08:00Z")));
    assert_eq!(l.fired_for("b").len(), b_before + 1);

    // The invalid one, fixed, is picked up too.
    write_spec(&r, "c", "0 * * * *", "UTC", "", "");
    run_until(&mut s, utc("2026-05-01T10:08:10Z"), utc("2026-05-01T11:00:10Z"));
    assert_eq!(l.fired_for("c"), [utc("2026-05-01T11:00:00Z")]);
    s.flush_records();
    for job in ["a", "b", "c"] {
        assert!(records_of(&r, job).is_empty(), "{job}: {:?}", records_of(&r, job));
    }
}

#[test]
fn a_job_id_declared_twice_is_not_scheduled() {
    let r = test_root();
    write_spec(&r, "dup", "* * * * *", "UTC", "", "");
    std::fs::write(r.root.jobs_dir.join("other.job.yaml"), spec_text("dup", "* * * * *", "UTC", "", "")).expect("write");
    write_spec(&r, "ok", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:02:30Z"));
    assert!(l.fired_for("dup").is_empty());
    assert_eq!(l.fired_for("ok").len(), 2);
    assert_eq!(s.loaded(), 1);
}

#[test]
fn manual_jobs_are_not_scheduled() {
    let r = test_root();
    let manual =
        spec_text("by-hand", "* * * * *", "UTC", "", "").replace("trigger: { type: cron, cron: \"* * * * *\", timezone: UTC }", "trigger: { type: manual }");
    std::fs::write(r.root.jobs_dir.join("by-hand.job.yaml"), manual).expect("write");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    assert_eq!(s.loaded(), 0);
    run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:02:30Z"));
    assert!(l.fired().is_empty());
}

#[test]
fn an_unreadable_state_file_stops_the_scheduler_from_starting() {
    let r = test_root();
    let path = StateStore::new(&r.root).path();
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, b"{").expect("write");
    let l = FakeLauncher::new(&r);
    let e = Scheduler::new(r.root.clone(), options(RESCAN_EVERY), l, RunTracker::new(), utc("2026-05-01T10:00:00Z"))
        .err()
        .expect("refused");
    assert_eq!(e.code, ErrorCode::JobExecutionFailed);
    assert!(e.hint.as_deref().unwrap_or("").contains("jobs.json"), "{e:?}");
}

/// Runs that end when cancelled, or after `run_for` of simulated time.
struct SimLauncher {
    clock: Arc<SimClock>,
    cancel: Cancel,
    run_for: Option<TimeDelta>,
    fires: Mutex<Vec<Fire>>,
    cancelled: Arc<Mutex<Vec<String>>>,
}

impl Launcher for SimLauncher {
    fn launch(&self, fire: Fire, guard: RunGuard) {
        let clock = self.clock.clone();
        let cancel = self.cancel.clone();
        let run_for = self.run_for;
        let cancelled = self.cancelled.clone();
        let job = fire.job_id.clone();
        let end = fire.scheduled_for + run_for.unwrap_or(TimeDelta::days(365));
        self.fires.lock().expect("lock").push(fire);
        tokio::spawn(async move {
            tokio::select! {
                _ = clock.sleep_until(end) => {}
                _ = cancel.cancelled() => cancelled.lock().expect("lock").push(job),
            }
            drop(guard);
        });
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

async fn shutdown_scenario(run_for: Option<TimeDelta>) -> (ServeReport, Vec<String>, usize) {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let clock = Arc::new(SimClock::new(utc("2026-05-01T10:00:30Z")));
    let cancel = Cancel::new();
    let cancelled: Arc<Mutex<Vec<String>>> = Arc::default();
    let launcher = Arc::new(SimLauncher {
        clock: clock.clone(),
        cancel: cancel.clone(),
        run_for,
        fires: Mutex::new(Vec::new()),
        cancelled: cancelled.clone(),
    });
    let mut s = Scheduler::new(r.root.clone(), options(RESCAN_EVERY), launcher.clone(), RunTracker::new(), clock.now()).expect("scheduler");
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let c = clock.clone();
    let loop_task = tokio::spawn(async move {
        let report = run_loop(&mut s, &*c, rx, TimeDelta::seconds(30), &cancel).await;
        (report, s)
    });
    settle().await;
    clock.set(utc("2026-05-01T10:01:00Z"));
    settle().await;
    assert_eq!(launcher.fires.lock().expect("lock").len(), 1, "fired at 10:01");
    let _ = tx.send(1);
    settle().await;
    // No more fires after the signal, even when a time passes.
    clock.set(utc("2026-05-01T10:01:20Z"));
    settle().await;
    clock.set(utc("2026-05-01T10:01:31Z"));
    settle().await;
    clock.set(utc("2026-05-01T10:02:00Z"));
    settle().await;
    let (report, s) = tokio::time::timeout(std::time::Duration::from_secs(10), loop_task)
        .await
        .expect("the loop ends")
        .expect("joined");
    let fires = launcher.fires.lock().expect("lock").len();
    drop(s);
    let cancelled = cancelled.lock().expect("lock").clone();
    (report, cancelled, fires)
}

#[tokio::test]
async fn shutdown_lets_runs_finish_within_the_grace_period() {
    let (report, cancelled, fires) = shutdown_scenario(Some(TimeDelta::seconds(20))).await;
    assert_eq!(fires, 1);
    assert!(cancelled.is_empty());
    assert_eq!(
        report,
        ServeReport {
            fired: 1,
            cancelled: 0,
            abandoned: 0
        }
    );
}

#[tokio::test]
async fn shutdown_cancels_runs_still_going_after_the_grace_period() {
    let (report, cancelled, fires) = shutdown_scenario(None).await;
    assert_eq!(fires, 1);
    assert_eq!(cancelled, ["tick"]);
    assert_eq!(
        report,
        ServeReport {
            fired: 1,
            cancelled: 1,
            abandoned: 0
        }
    );
}

#[test]
fn a_crash_between_the_decision_and_the_start_leaves_a_missed_record_not_a_second_run() {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    l.crash_before_start.store(true, Ordering::SeqCst);
    let mut a = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    a.tick(utc("2026-05-01T10:01:00Z"));
    drop(a); // killed: the fire is in the state, the run never started
    let st = read_state(&StateStore::new(&r.root).path()).expect("state");
    assert_eq!(st.jobs["tick"].pending.len(), 1, "the decision is pending");

    l.crash_before_start.store(false, Ordering::SeqCst);
    let mut b = scheduler(&r, &l, utc("2026-05-01T10:01:20Z"), RESCAN_EVERY);
    run_until(&mut b, utc("2026-05-01T10:01:20Z"), utc("2026-05-01T10:02:30Z"));
    b.checkpoint();
    assert_eq!(
        l.fired_for("tick"),
        [utc("2026-05-01T10:01:00Z"), utc("2026-05-01T10:02:00Z")],
        "10:01 is not fired again"
    );
    assert_eq!(
        records_of(&r, "tick"),
        [(RunStatus::Missed, ts("2026-05-01T10:01:00Z"), MISSED_SCHEDULER_STOPPED.to_string())]
    );
    let st = read_state(&StateStore::new(&r.root).path()).expect("state");
    assert!(st.jobs["tick"].pending.is_empty(), "{:?}", st.jobs["tick"].pending);

    // Another restart finds nothing left to do.
    let c = serving_from(&r, &l, "2026-05-01T10:02:40Z");
    c.flush_records();
    assert_eq!(records_of(&r, "tick").len(), 1);
    assert_eq!(l.fired_for("tick").len(), 2);
}

#[test]
fn records_lost_in_a_crash_are_written_on_restart_exactly_once() {
    let r = test_root();
    write_spec(&r, "five", "*/5 * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    served_then_down(&r, &l);
    // Back at 10:27: a record for 10:15-10:20, a run for 10:25 ...
    let b = serving_from(&r, &l, "2026-05-01T10:27:00Z");
    b.flush_records();
    drop(b);
    // ... but killed before the records reached the disk.
    for s in runs::list_runs(&r.root.runs_dir(), "five", 100, Some(RunStatus::Missed)) {
        std::fs::remove_dir_all(&s.path).expect("rm");
    }
    assert!(records_of(&r, "five").is_empty());
    let c = serving_from(&r, &l, "2026-05-01T10:28:00Z");
    c.flush_records();
    drop(c);
    let expected = [(RunStatus::Missed, ts("2026-05-01T10:15:00Z"), "scheduler_not_running".to_string())];
    assert_eq!(records_of(&r, "five"), expected);
    assert_eq!(missed_counts(&r, "five"), [(2, ts("2026-05-01T10:20:00Z"))]);
    assert_eq!(l.fired_for("five").last(), Some(&utc("2026-05-01T10:25:00Z")));
    assert_eq!(l.fired_for("five").len(), 3);
    // And a restart with everything on disk writes nothing more.
    let d = serving_from(&r, &l, "2026-05-01T10:29:00Z");
    d.flush_records();
    assert_eq!(records_of(&r, "five"), expected);
}

#[test]
fn jobs_are_prepared_once_when_loaded_and_again_when_changed() {
    let r = test_root();
    write_spec(&r, "a", "* * * * *", "UTC", "", "");
    write_spec(&r, "b", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    let now = run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:03:10Z"));
    assert_eq!(
        *l.prepared.lock().expect("lock"),
        [vec!["a".to_string(), "b".to_string()]],
        "once, not per rescan"
    );
    write_spec(&r, "b", "*/2 * * * *", "UTC", "", "");
    run_until(&mut s, now, utc("2026-05-01T10:05:10Z"));
    assert_eq!(l.prepared.lock().expect("lock").last(), Some(&vec!["b".to_string()]));
}

/// The spec a run starts from is the file as it is when the run starts
/// (the scheduler keeps no parsed copy): an edit made after the scheduler
/// read the file, even between two rescans right before the fire, is seen.
#[test]
fn a_fire_reads_the_spec_as_it_is_when_the_run_starts() {
    let r = test_root();
    write_spec(&r, "a", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let mut s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    run_until(&mut s, utc("2026-05-01T10:00:30Z"), utc("2026-05-01T10:01:10Z"));
    let fire = l.fires.lock().expect("lock")[0].clone();
    let now = fire.spec_now();
    assert_eq!(now.sha256.as_deref(), Some(fire.spec_sha256.as_str()), "the file the scheduler read");
    assert_eq!(now.spec.expect("valid").id, "a");

    // Edited after the scheduler read it: same length, new content.
    let edited = spec_text("a", "* * * * *", "UTC", "", "").replace("topic: t", "topic: u");
    assert_eq!(edited.len(), spec_text("a", "* * * * *", "UTC", "", "").len());
    let path = r.root.jobs_dir.join("a.job.yaml");
    let tmp = r.root.jobs_dir.join(".a.tmp");
    std::fs::write(&tmp, &edited).expect("write");
    std::fs::rename(&tmp, &path).expect("replace");
    let now = fire.spec_now();
    assert_ne!(now.sha256.as_deref(), Some(fire.spec_sha256.as_str()), "the edit is seen");
    assert_eq!(now.spec.expect("valid").target.input["topic"], "u");

    // Removed: the run reports the file, not a stale copy.
    std::fs::remove_file(&path).expect("rm");
    assert!(fire.spec_now().spec.is_err());
}

/// What the scheduler keeps per loaded job does not hold the parsed spec or
/// a compiled schedule: at most [`ScheduleCache::MAX`] schedules are
/// compiled at once however many jobs are loaded, and every job still gets
/// its next time and fires.
#[test]
fn compiled_schedules_stay_bounded_with_many_jobs() {
    let r = test_root();
    let n = ScheduleCache::MAX + 40;
    for i in 0..n {
        // Distinct expressions: minute i % 60 of hour (i / 60) % 24.
        write_spec(&r, &format!("j{i:03}"), &format!("{} {} * * *", i % 60, (i / 60) % 24), "Europe/Berlin", "", "");
    }
    let l = FakeLauncher::new(&r);
    let s = scheduler(&r, &l, utc("2026-05-01T10:00:30Z"), RESCAN_EVERY);
    assert_eq!(s.loaded(), n);
    assert!(s.schedules.lock().expect("lock").map_len() <= ScheduleCache::MAX);
    for i in 0..n {
        let next = s.next_fire(&format!("j{i:03}")).expect("a next time");
        let local = next.with_timezone(&chrono_tz::Europe::Berlin);
        use chrono::Timelike;
        assert_eq!((local.minute() as usize, local.hour() as usize), (i % 60, (i / 60) % 24));
    }
}

#[test]
fn a_run_the_executor_refuses_leaves_a_missed_record() {
    let r = test_root();
    let fire = Fire {
        job_id: "tick".into(),
        scheduled_for: utc("2026-05-01T10:01:00Z"),
        local: "2026-05-01T10:01:00+00:00".into(),
        timezone: "UTC".into(),
        spec_path: r.root.jobs_dir.join("tick.job.yaml"),
        spec_sha256: "sha256:x".into(),
        target: crate::runs::TargetRecord {
            kind: "blueprint".into(),
            id: "council.v1".into(),
            ..Default::default()
        },
    };
    let rec = fire.not_started_record(ErrorCode::JobInvalidSpec, "bad");
    records::write_record(&r.root.runs_dir(), &rec).expect("write");
    assert_eq!(
        records_of(&r, "tick"),
        [(RunStatus::Missed, ts("2026-05-01T10:01:00Z"), MISSED_NOT_STARTED.to_string())]
    );
}

#[tokio::test]
async fn a_clean_stop_leaves_nothing_pending() {
    let r = test_root();
    write_spec(&r, "tick", "* * * * *", "UTC", "", "");
    let l = FakeLauncher::new(&r);
    let clock = Arc::new(SimClock::new(utc("2026-05-01T10:00:30Z")));
    let mut s = scheduler(&r, &l, clock.now(), RESCAN_EVERY);
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let c = clock.clone();
    let task = tokio::spawn(async move {
        let report = run_loop(&mut s, &*c, rx, TimeDelta::seconds(5), &Cancel::new()).await;
        drop(s);
        report
    });
    settle().await;
    clock.set(utc("2026-05-01T10:01:00Z"));
    settle().await;
    let st = read_state(&StateStore::new(&r.root).path()).expect("state");
    assert_eq!(st.jobs["tick"].pending.len(), 1, "pending until the next state write");
    let _ = tx.send(1);
    let report = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("joined");
    assert_eq!(report.fired, 1);
    let st = read_state(&StateStore::new(&r.root).path()).expect("state");
    assert!(st.jobs["tick"].pending.is_empty());
}
