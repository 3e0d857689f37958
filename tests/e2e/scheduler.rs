//! Issue 6 — the cron scheduler through the real binary: `lily jobs serve`
//! firing real runs on a per-second schedule and stopping cleanly on
//! SIGTERM, one scheduler per root, `jobs next`, and `jobs pause` / `resume`
//! picked up by a running scheduler. (DST, missed-run, overlap and restart
//! scenarios run against a simulated clock in `host/src/triggers/`.)

use crate::harness::{Env, council_job, event_types, events, receipt, step_job, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A cheap council job on a cron schedule.
fn cron_job(id: &str, cron: &str, tz: &str) -> String {
    council_job(
        id,
        &["security.v1", "operations.v1"],
        "default.v1",
        "deterministic",
        "{ topic: cron tick }",
        "",
        "{ timeout_seconds: 60 }",
    )
    .replace(
        "trigger:\n  type: manual\n",
        &format!("trigger:\n  type: cron\n  cron: \"{cron}\"\n  timezone: {tz}\n"),
    )
}

/// A `lily jobs serve` child, killed if the test fails before stopping it.
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn start(env: &Env, name: &str) -> Serve {
        Serve::start_with_grace(env, name, 20)
    }

    fn start_with_grace(env: &Env, name: &str, grace_seconds: u64) -> Serve {
        let log = env.root.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = env
            .cmd()
            .args(["jobs", "serve", "--grace-seconds", &grace_seconds.to_string()])
            .env("LILY_LOG", "info")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn lily jobs serve");
        Serve { child: Some(child), log }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("child")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("child");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(start.elapsed() < limit, "lily jobs serve did not exit within {limit:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Receipts of a job's run directories (those that have one yet).
fn receipts(env: &Env, job: &str) -> Vec<(PathBuf, Value)> {
    env.run_dirs(job)
        .into_iter()
        .filter_map(|d| {
            let text = std::fs::read_to_string(d.join("run_receipt.json")).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            Some((d, v))
        })
        .collect()
}

/// Real runs (not missed / skipped records) of a job that reached a status.
fn real_runs(env: &Env, job: &str, status: Option<&str>) -> usize {
    receipts(env, job)
        .iter()
        .filter(|(_, r)| !matches!(r["status"].as_str(), Some("missed" | "skipped_overlap")))
        .filter(|(_, r)| status.is_none_or(|s| r["status"] == s))
        .count()
}

/// `jobs status --json`: exit 0 while a scheduler serves the root, 3 when none does.
fn status_json(env: &Env) -> Value {
    let out = env.lily(&["jobs", "status", "--json"]);
    let v = out.json();
    let expected = if v["scheduler"]["running"] == true { 0 } else { 3 };
    out.expect_code(expected);
    v
}

#[test]
fn status_is_a_health_check_and_list_shows_pause_and_disable() {
    let env = Env::new();
    env.write_job("nightly", &cron_job("nightly", "0 9 * * *", "Europe/Berlin"));
    let out = env.lily(&["jobs", "status"]);
    out.expect_code(3);
    assert!(out.stdout.contains("scheduler: not running"), "{}", out.stdout);
    env.lily(&["jobs", "disable", "nightly"]).expect_code(0);
    let list = env.lily(&["jobs", "list", "--json"]).json();
    let job = list.as_array().expect("list").iter().find(|j| j["id"] == "nightly").expect("nightly").clone();
    assert_eq!(job["state"], "disabled", "{job}");
    assert!(job["next_fire"].is_null(), "a disabled job has no next fire: {job}");
    env.lily(&["jobs", "enable", "nightly"]).expect_code(0);
    env.lily(&["jobs", "pause", "nightly"]).expect_code(0);
    let text = env.lily(&["jobs", "list"]).stdout;
    assert!(text.contains(", paused (would be next "), "{text}");
}

fn wait_for_scheduler(env: &Env, serve: &Serve) {
    wait_until(Duration::from_secs(60), "the scheduler to take the root's lock", || {
        let s = status_json(env);
        s["scheduler"]["running"] == true && s["scheduler"]["pid"] == serve.pid()
    });
}

#[test]
fn serve_fires_real_runs_every_second_and_stops_cleanly_on_sigterm() {
    let env = Env::new();
    env.write_job("tick", &cron_job("tick", "*/1 * * * * *", "UTC"));
    let mut serve = Serve::start(&env, "serve");
    wait_until(Duration::from_secs(90), "two succeeded cron runs", || {
        real_runs(&env, "tick", Some("succeeded")) >= 2
    });
    let s = status_json(&env);
    assert_eq!(s["scheduler"]["pid"], serve.pid());
    assert!(s["scheduler"]["since"].as_str().is_some_and(|t| t.ends_with('Z')), "{s}");

    serve.signal("-TERM");
    let status = serve.wait(Duration::from_secs(60));
    let log = serve.log();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("fired tick for "), "{log}");
    assert!(log.contains("stopped ("), "{log}");

    // Every run directory is complete: a final receipt and events.
    let all = receipts(&env, "tick");
    assert_eq!(all.len(), env.run_dirs("tick").len(), "a run directory without a receipt");
    let mut scheduled = Vec::new();
    for (dir, r) in &all {
        let st = r["status"].as_str().unwrap_or("");
        assert!(
            matches!(st, "succeeded" | "cancelled" | "missed" | "skipped_overlap"),
            "{}: status {st}",
            dir.display()
        );
        assert!(r["ended_at"].as_str().is_some(), "{}: no ended_at", dir.display());
        let t = &r["trigger"];
        assert_eq!(t["type"], "cron", "{}", dir.display());
        assert_eq!(t["timezone"], "UTC");
        let at = t["scheduled_for"].as_str().expect("scheduled_for");
        assert!(at.ends_with(".000Z"), "a per-second time in UTC: {at}");
        assert!(t["scheduled_for_local"].as_str().is_some_and(|l| l.ends_with("+00:00")), "{t}");
        scheduled.push(at.to_string());
        let types: Vec<String> = events(dir).iter().map(|e| e["type"].as_str().unwrap_or("").to_string()).collect();
        match st {
            "missed" => assert_eq!(types, ["job_missed"]),
            "skipped_overlap" => assert_eq!(types, ["job_skipped_overlap"]),
            _ => {
                assert_eq!(types.first().map(String::as_str), Some("job_started"), "{types:?}");
                assert!(types.iter().any(|t| t == "job_completed" || t == "job_cancelled"), "{types:?}");
            }
        }
    }
    // Never two runs (or records) for the same scheduled time.
    let n = scheduled.len();
    scheduled.sort();
    scheduled.dedup();
    assert_eq!(scheduled.len(), n, "a scheduled time appears twice");

    // The lock is released, the state remembers the last fire.
    let s = status_json(&env);
    assert_eq!(s["scheduler"]["running"], false, "{s}");
    let tick = &s["jobs"][0];
    assert_eq!(tick["id"], "tick");
    assert_eq!(tick["state"], "active");
    assert!(tick["last_scheduled_for"].as_str().is_some(), "{tick}");
    let runs = env.lily(&["jobs", "runs", "tick"]);
    runs.expect_code(0);
    assert!(runs.stdout.contains("succeeded") && runs.stdout.contains("cron"), "{}", runs.stdout);
}

#[test]
fn a_second_serve_exits_non_zero_naming_the_owner() {
    let env = Env::new();
    env.write_job("hourly", &cron_job("hourly", "0 * * * *", "Europe/Berlin"));
    let mut first = Serve::start(&env, "first");
    wait_for_scheduler(&env, &first);

    let mut second = Serve::start(&env, "second");
    let status = second.wait(Duration::from_secs(30));
    let log = second.log();
    assert!(!status.success(), "the second scheduler must not run; log:\n{log}");
    assert!(log.contains("already serving"), "{log}");
    assert!(log.contains(&format!("pid {}", first.pid())), "the owner's pid is named: {log}");

    // The first one is unaffected and still owns the root.
    assert_eq!(status_json(&env)["scheduler"]["pid"], first.pid());
    first.signal("-INT");
    assert!(first.wait(Duration::from_secs(60)).success(), "{}", first.log());
    // And once it is gone, a new one may start.
    let mut third = Serve::start(&env, "third");
    wait_for_scheduler(&env, &third);
    third.signal("-TERM");
    assert!(third.wait(Duration::from_secs(60)).success(), "{}", third.log());
}

#[test]
fn next_lists_fire_times_in_utc_and_local_time() {
    let env = Env::new();
    env.write_job("nightly", &cron_job("nightly", "30 2 * * *", "America/New_York"));
    let out = env.lily(&["jobs", "next", "nightly", "--count", "3", "--json"]);
    out.expect_code(0);
    let v = out.json();
    assert_eq!(v["job_id"], "nightly");
    assert_eq!(v["cron"], "30 2 * * *");
    assert_eq!(v["timezone"], "America/New_York");
    assert_eq!(v["state"], "active");
    let fires = v["fires"].as_array().expect("fires");
    assert_eq!(fires.len(), 3);
    let mut previous: Option<chrono::DateTime<chrono::Utc>> = None;
    for f in fires {
        let utc: chrono::DateTime<chrono::Utc> = f["utc"].as_str().expect("utc").parse().expect("RFC 3339");
        assert!(f["utc"].as_str().is_some_and(|u| u.ends_with('Z')), "{f}");
        let local = f["local"].as_str().expect("local");
        // 02:30, or 03:00 on a spring-forward day; EST or EDT.
        assert!(local.contains("T02:30:00-0") || local.contains("T03:00:00-04:00"), "{local}");
        assert!(local.ends_with("-04:00") || local.ends_with("-05:00"), "{local}");
        let parsed = chrono::DateTime::parse_from_rfc3339(local).expect("local is RFC 3339");
        assert_eq!(parsed.with_timezone(&chrono::Utc), utc, "local and UTC are the same instant");
        assert!(previous.is_none_or(|p| p < utc), "increasing");
        assert!(utc > chrono::Utc::now(), "in the future");
        previous = Some(utc);
    }

    let text = env.lily(&["jobs", "next", "nightly"]);
    text.expect_code(0);
    assert!(text.stdout.contains("UTC") && text.stdout.contains("LOCAL"), "{}", text.stdout);
    assert_eq!(
        text.stdout.lines().filter(|l| l.contains("2:30:00") || l.contains("03:00:00-04:00")).count(),
        5,
        "{}",
        text.stdout
    );

    // The demo job `lily init` wrote is manual.
    let manual = env.lily(&["jobs", "next", "demo"]);
    manual.expect_code(10);
    assert!(manual.stderr.contains("job_trigger_invalid"), "{}", manual.stderr);
    let manual = env.lily(&["jobs", "next", "demo", "--json"]);
    manual.expect_code(10);
    assert_eq!(manual.json()["code"], "job_trigger_invalid");
    for cmd in ["pause", "resume", "disable", "enable"] {
        let out = env.lily(&["jobs", cmd, "demo", "--json"]);
        out.expect_code(10);
        assert_eq!(out.json()["code"], "job_trigger_invalid", "{cmd}");
    }
    let missing = env.lily(&["jobs", "next", "nope"]);
    missing.expect_code(10);
    assert!(missing.stderr.contains("job_not_found"), "{}", missing.stderr);
}

#[test]
fn pause_through_the_cli_is_picked_up_by_a_running_scheduler() {
    let env = Env::new();
    env.write_job("tick", &cron_job("tick", "* * * * * *", "UTC"));
    let mut serve = Serve::start(&env, "serve");
    wait_until(Duration::from_secs(90), "a first cron run", || real_runs(&env, "tick", Some("succeeded")) >= 1);

    let out = env.lily(&["jobs", "pause", "tick"]);
    out.expect_code(0);
    assert!(out.stdout.contains("paused tick (was active)"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("pid {}", serve.pid())), "{}", out.stdout);
    // Picked up within the rescan (2 s); a run already started may finish.
    std::thread::sleep(Duration::from_secs(4));
    let paused_at = env.run_dirs("tick").len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.run_dirs("tick").len(), paused_at, "nothing runs or is recorded while paused");
    let s = status_json(&env);
    assert_eq!(s["jobs"][0]["state"], "paused", "{s}");
    let again = env.lily(&["jobs", "pause", "tick", "--json"]);
    again.expect_code(0);
    assert_eq!(again.json()["changed"], false);

    // A spec added while serving is picked up too.
    env.write_job("tock", &cron_job("tock", "* * * * * *", "Europe/Berlin"));
    wait_until(Duration::from_secs(30), "the new job to run", || real_runs(&env, "tock", None) >= 1);

    let out = env.lily(&["jobs", "resume", "tick", "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["state"], "active");
    wait_until(Duration::from_secs(30), "tick to run again", || env.run_dirs("tick").len() > paused_at);
    // The paused seconds were not caught up or recorded as missed.
    let missed = receipts(&env, "tick").iter().filter(|(_, r)| r["status"] == "missed").count();
    assert_eq!(missed, 0);

    serve.signal("-TERM");
    let status = serve.wait(Duration::from_secs(60));
    let log = serve.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("tick is now paused"), "{log}");
    assert!(log.contains("tick is now active"), "{log}");
    assert!(log.contains("loaded tock"), "{log}");
    for job in ["tick", "tock"] {
        for (dir, r) in receipts(&env, job) {
            assert_ne!(r["status"], "running", "{}", dir.display());
            let _ = receipt(&dir);
        }
    }
    assert!(
        !Path::new(&env.lily_dir().join("state/scheduler.json")).exists(),
        "the sidecar is removed on exit"
    );
}

#[test]
fn a_run_still_going_after_the_grace_period_is_cancelled_and_overlaps_are_recorded() {
    let env = Env::new();
    env.install("probe");
    let spec = step_job("slow", "probe.v1", "{ op: sleep, ms: 60000 }", "", "{ timeout_seconds: 120 }").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"* * * * * *\"\n  timezone: UTC\n",
    );
    env.write_job("slow", &spec);
    let mut serve = Serve::start_with_grace(&env, "serve", 1);
    wait_until(Duration::from_secs(60), "the first run's step to start", || {
        env.run_dirs("slow").iter().any(|d| event_types(d).iter().any(|t| t == "step_started"))
    });
    // The next seconds find it still running: skipped, with a record each.
    wait_until(Duration::from_secs(30), "two skipped_overlap records", || {
        receipts(&env, "slow").iter().filter(|(_, r)| r["status"] == "skipped_overlap").count() >= 2
    });
    serve.signal("-TERM");
    let status = serve.wait(Duration::from_secs(60));
    let log = serve.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("cancelling 1 run(s)"), "{log}");
    let all = receipts(&env, "slow");
    let runs: Vec<&(PathBuf, Value)> = all.iter().filter(|(_, r)| r["status"] != "skipped_overlap").collect();
    assert_eq!(runs.len(), 1, "one run, the rest skipped: {all:?}");
    let (dir, r) = runs[0];
    assert_eq!(r["status"], "cancelled", "{r}");
    assert!(r["ended_at"].as_str().is_some());
    assert!(event_types(dir).iter().any(|t| t == "job_cancelled"), "{:?}", event_types(dir));
    for (dir, r) in all.iter().filter(|(_, r)| r["status"] == "skipped_overlap") {
        assert_eq!(event_types(dir), ["job_skipped_overlap"]);
        assert_eq!(r["trigger"]["type"], "cron");
        assert!(r["ended_at"].as_str().is_some());
    }
    let listed = env.lily(&["jobs", "runs", "slow", "--status", "skipped_overlap", "--json"]);
    listed.expect_code(0);
    assert!(listed.json().as_array().is_some_and(|a| a.len() >= 2), "{}", listed.stdout);
}

#[test]
fn a_cron_job_that_cannot_run_is_reported_at_load_with_its_reason_and_shown_failing_in_status() {
    let env = Env::new();
    // Asks for an env var the policy does not grant: every fire is denied.
    let spec = step_job("denied", "echo.v1", "{ n: 1 }", "  env: [HOME]\n", "{}").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"*/1 * * * * *\"\n  timezone: UTC\n",
    );
    env.write_job("denied", &spec);
    let mut serve = Serve::start(&env, "serve");
    wait_until(Duration::from_secs(90), "two denied cron runs", || {
        receipts(&env, "denied").iter().filter(|(_, r)| r["status"] == "denied").count() >= 2
    });
    let out = env.lily(&["jobs", "status"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("denied: failing since ") && out.stdout.contains("time(s) in a row: job_policy_denied — "),
        "{}",
        out.stdout
    );
    let s = status_json(&env);
    let job = s["jobs"].as_array().expect("jobs").iter().find(|j| j["id"] == "denied").expect("job").clone();
    assert!(job["failing"]["count"].as_u64().is_some_and(|n| n >= 2), "{job}");
    assert_eq!(job["failing"]["error_code"], "job_policy_denied");
    serve.signal("-TERM");
    serve.wait(Duration::from_secs(60));
    let log = serve.log();
    // At load, before any fire: the reason, once.
    assert!(
        log.contains("warning: denied cannot run as it stands (every fire will fail until its spec or the policy changes): error[job_policy_denied]"),
        "{log}"
    );
    // Every finished run says why.
    assert!(log.contains(") denied: error[job_policy_denied]: "), "{log}");
}

/// Issue 15 items 16/17: under `jobs serve` a run is a task of the
/// scheduler: `jobs cancel` cancels that run only (the scheduler keeps
/// serving and fires the next time), and a job's `retention:` is applied
/// after each of its runs.
#[test]
fn cancel_stops_one_run_of_the_scheduler_and_retention_prunes_after_runs() {
    let env = Env::new();
    env.install("probe");
    let slow = step_job("slow", "probe.v1", "{ op: sleep, ms: 60000 }", "", "{ timeout_seconds: 120 }").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"*/2 * * * * *\"\n  timezone: UTC\n  catchup: skip\n",
    );
    env.write_job("slow", &slow);
    let tick = step_job("tick", "echo.v1", "{ n: 1 }", "", "{}").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"* * * * * *\"\n  timezone: UTC\n",
    ) + "retention: {keep_last: 2}\n";
    env.write_job("tick", &tick);
    let mut serve = Serve::start(&env, "serve");
    let running = || {
        receipts(&env, "slow")
            .into_iter()
            .find(|(d, r)| r["status"] == "running" && event_types(d).iter().any(|t| t == "step_started"))
    };
    wait_until(Duration::from_secs(60), "a slow run's step to start", || running().is_some());
    let (dir, _) = running().expect("running");
    let run_id = dir.file_name().expect("name").to_string_lossy().into_owned();
    let v = env.lily(&["--json", "jobs", "cancel", &run_id]).expect_code(0).json();
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["signalled"], false, "a scheduler's run is never signalled");
    let r = receipt(&dir);
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["error"]["message"], "run cancelled (lily jobs cancel)");
    // The scheduler is still serving, and starts the next slow run.
    wait_until(Duration::from_secs(30), "the next slow run", || running().is_some_and(|(d, _)| d != dir));
    assert!(serve.child.as_mut().expect("child").try_wait().expect("try_wait").is_none(), "{}", serve.log());
    // tick ran several times but keeps at most 2 (+1 in progress) run directories.
    wait_until(Duration::from_secs(30), "tick to have run 4 times", || {
        serve.log().matches("of tick (").count() >= 4
    });
    let kept = real_runs(&env, "tick", None);
    assert!(kept <= 3, "retention keeps 2 (and one may be running): {kept}\n{}", serve.log());
    serve.signal("-TERM");
    assert!(serve.wait(Duration::from_secs(60)).success(), "{}", serve.log());
}

/// Issue 15 item 16: the seconds missed while the scheduler was down are ONE
/// `missed` record, and `jobs runs` / `jobs show` say how many and between when.
#[test]
fn an_outage_leaves_one_collapsed_missed_record_shown_by_runs_and_show() {
    let env = Env::new();
    let spec = step_job("tick", "echo.v1", "{ n: 1 }", "", "{}").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"* * * * * *\"\n  timezone: UTC\n",
    );
    env.write_job("tick", &spec);
    let mut serve = Serve::start(&env, "serve");
    wait_until(Duration::from_secs(60), "a run", || real_runs(&env, "tick", Some("succeeded")) >= 1);
    serve.signal("-TERM");
    assert!(serve.wait(Duration::from_secs(60)).success());
    std::thread::sleep(Duration::from_secs(4));
    let mut again = Serve::start(&env, "again");
    wait_until(Duration::from_secs(60), "the missed record", || {
        receipts(&env, "tick")
            .iter()
            .any(|(_, r)| r["status"] == "missed" && r["payload"]["reason"] == "scheduler_not_running")
    });
    again.signal("-TERM");
    assert!(again.wait(Duration::from_secs(60)).success());
    // (A loaded machine can make the scheduler late while serving:
    // `superseded` records are not the outage's.)
    let missed: Vec<(PathBuf, Value)> = receipts(&env, "tick")
        .into_iter()
        .filter(|(_, r)| r["status"] == "missed" && r["payload"]["reason"] == "scheduler_not_running")
        .collect();
    assert_eq!(missed.len(), 1, "one record for the outage: {missed:?}");
    let (dir, r) = &missed[0];
    let n = r["payload"]["missed_count"].as_u64().expect("missed_count");
    assert!(n >= 3, "{r}");
    let first = r["trigger"]["scheduled_for"].as_str().expect("first").to_string();
    let last = r["payload"]["missed_through"].as_str().expect("last").to_string();
    let runs = env.lily(&["jobs", "runs", "tick", "--status", "missed"]);
    runs.expect_code(0);
    assert!(runs.stdout.contains(&format!("{n} missed between {first} and {last}")), "{}", runs.stdout);
    let json = env.lily(&["--json", "jobs", "runs", "tick", "--status", "missed"]).expect_code(0).json();
    assert_eq!(json[0]["missed_count"], n);
    let run_id = dir.file_name().expect("name").to_string_lossy().into_owned();
    let show = env.lily(&["jobs", "show", &run_id]);
    show.expect_code(0);
    assert!(
        show.stdout
            .contains(&format!("missed    {n} scheduled times between {first} and {last} (scheduler_not_running)")),
        "{}",
        show.stdout
    );
}
