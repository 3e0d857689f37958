//! Operator experience: errors with a location and a suggestion, `jobs next`
//! previews, run references (`latest`, prefixes), `jobs run` announcing its
//! run, `jobs show` of missed records, `jobs tail -f` waiting and filters.

use crate::harness::{Env, council_job, step_job, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn echo(id: &str) -> String {
    step_job(id, "echo.v1", "{ hello: world }", "", "{ timeout_seconds: 30 }")
}

fn cron(id: &str, expr: &str, tz: &str) -> String {
    council_job(id, &["security.v1", "operations.v1"], "default.v1", "deterministic", "{ topic: t }", "", "{}")
        .replace("  type: manual", &format!("  type: cron\n  cron: \"{expr}\"\n  timezone: {tz}"))
}

/// The 1-based line of the first line of `path` containing `needle`.
fn line_of(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .expect("read spec")
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()))
        + 1
}

#[test]
fn spec_and_bindings_errors_name_file_line_and_key_and_suggest_a_fix() {
    let env = Env::new();
    // A misspelt binding: located at its line, the hint names the right one.
    let typo = council_job(
        "typo",
        &["security.v1", "operations.v1"],
        "default.v1",
        "deterministic",
        "{ topic: t }",
        "",
        "{}",
    )
    .replace("synthesizer:", "synthesiser:");
    let p = env.write_job("typo", &typo);
    let line = line_of(&p, "synthesiser:");
    for args in [vec!["jobs", "validate"], vec!["jobs", "run", "typo"]] {
        let out = env.lily(&args);
        out.expect_code(if args[1] == "run" { 11 } else { 10 });
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains(&format!(
                "error[job_bindings_invalid]: {}:{line}: council.v1 bindings: unknown field `synthesiser`",
                p.display()
            )),
            "{all}"
        );
        assert!(all.contains("hint: did you mean `synthesizer`?"), "{all}");
    }
    let v = env.lily(&["--json", "jobs", "run", "typo"]).json();
    assert_eq!(
        v["receipt"]["error"]["cause"]["hint"],
        "did you mean `synthesizer`? (`lily blueprints show council.v1` lists the bindings)"
    );
    std::fs::remove_file(&p).expect("rm");

    // A time zone in the wrong case.
    let p = env.write_job("zone", &cron("zone", "0 9 * * *", "europe/berlin"));
    let out = env.lily(&["jobs", "validate", &p.display().to_string()]);
    out.expect_code(10);
    assert!(
        out.stdout.contains(&format!(
            "error[job_trigger_invalid]: {}:{}: trigger.timezone: unknown IANA time zone 'europe/berlin'",
            p.display(),
            line_of(&p, "timezone:")
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("hint: did you mean Europe/Berlin?"), "{}", out.stdout);
    // A misspelt macro.
    std::fs::write(&p, cron("zone", "@dialy", "Europe/Berlin")).expect("write");
    let out = env.lily(&["jobs", "run", "zone"]);
    out.expect_code(10);
    assert!(
        out.stderr.contains(&format!(
            "error[job_trigger_invalid]: {}:{}: trigger.cron: invalid cron expression '@dialy'",
            p.display(),
            line_of(&p, "cron:")
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: did you mean @daily?"), "{}", out.stderr);
    // A field rule: the line of the key.
    std::fs::write(&p, echo("zone").replace("timeout_seconds: 30", "timeout_seconds: 0")).expect("write");
    let out = env.lily(&["jobs", "run", "zone"]);
    out.expect_code(10);
    assert!(
        out.stderr.contains(&format!(
            "error[job_invalid_spec]: {}:{}: runtime.timeout_seconds must be 1-86400, got 0",
            p.display(),
            line_of(&p, "runtime:")
        )),
        "{}",
        out.stderr
    );
    // An unknown top-level field gets a suggestion too.
    std::fs::write(&p, echo("zone").replace("title:", "titel:")).expect("write");
    let out = env.lily(&["jobs", "run", "zone"]);
    out.expect_code(10);
    assert!(out.stderr.contains("unknown field `titel`") && out.stderr.contains("line 2"), "{}", out.stderr);
    assert!(out.stderr.contains("hint: did you mean `title`?"), "{}", out.stderr);
    std::fs::remove_file(&p).expect("rm");

    // A mistyped job id.
    env.write_job("svc-review", &echo("svc-review"));
    let out = env.lily(&["jobs", "run", "svc-revew"]);
    out.expect_code(10);
    assert!(out.stderr.contains("error[job_not_found]: no job with id \"svc-revew\""), "{}", out.stderr);
    assert!(out.stderr.contains("hint: did you mean svc-review?"), "{}", out.stderr);
    let far = env.lily(&["jobs", "run", "zzzzzzzz"]);
    assert!(!far.stderr.contains("did you mean"), "no suggestion when nothing is close: {}", far.stderr);

    // An unknown blueprint id: at target.id.
    let p = env.write_job("bp", &echo("bp").replace("id: step.v1", "id: stp.v1"));
    let out = env.lily(&["jobs", "run", "bp"]);
    out.expect_code(11);
    assert!(
        out.stderr.contains(&format!(
            "error[job_target_unresolved]: {}:{}: no blueprint \"stp.v1\"",
            p.display(),
            line_of(&p, "id: stp.v1")
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: did you mean `step.v1`?"), "{}", out.stderr);
    std::fs::remove_file(&p).expect("rm");

    // An unknown runnable: at the binding that names it.
    let p = env.write_job("rn", &echo("rn").replace("runnable: echo.v1", "runnable: ecko.v1"));
    let out = env.lily(&["jobs", "validate", &p.display().to_string()]);
    out.expect_code(10);
    assert!(
        out.stdout.contains(&format!(
            "{}:{}: unresolved runnable ids: ecko.v1",
            p.display(),
            line_of(&p, "runnable: ecko.v1")
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("hint: did you mean `echo.v1` for `ecko.v1`?"), "{}", out.stdout);
}

#[test]
fn next_previews_a_window_with_dst_marks() {
    let env = Env::new();
    env.write_job("ny", &cron("ny", "30 1,2 * * *", "America/New_York"));
    let out = env.lily(&["jobs", "next", "ny", "--from", "2027-03-14", "--until", "2027-03-15"]);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "2 fire time(s) of ny from 2027-03-14T05:00:00Z until 2027-03-15T04:00:00Z (cron \"30 1,2 * * *\", America/New_York):",
            "UTC                   LOCAL                      DST",
            "2027-03-14T06:30:00Z  2027-03-14T01:30:00-05:00",
            "2027-03-14T07:00:00Z  2027-03-14T03:00:00-04:00  02:30 does not exist on 2027-03-14; runs at 03:00 EDT",
        ]
    );
    let out = env.lily(&["jobs", "next", "ny", "--from", "2027-11-07T00:00:00-04:00", "-n", "2"]);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().skip(2).map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "2027-11-07T05:30:00Z  2027-11-07T01:30:00-04:00  first of two 01:30s; runs once",
            "2027-11-07T07:30:00Z  2027-11-07T02:30:00-05:00",
        ]
    );
    // Berlin, --json: the marks are fields.
    env.write_job("be", &cron("be", "30 2 * * *", "Europe/Berlin"));
    let v = env.lily(&["--json", "jobs", "next", "be", "--from", "2027-03-28", "--count", "1"]).json();
    assert_eq!(v["from"], "2027-03-27T23:00:00Z");
    assert_eq!(v["fires"][0]["local"], "2027-03-28T03:00:00+02:00");
    assert_eq!(
        v["fires"][0]["dst"],
        serde_json::json!({"kind": "moved", "date": "2027-03-28", "nominal": ["02:30"]})
    );
    assert_eq!(v["fires"][0]["note"], "02:30 does not exist on 2027-03-28; runs at 03:00 CEST");
    // A window lists every fire time in it, capped with a message.
    env.write_job("sec", &cron("sec", "* * * * * *", "UTC"));
    let out = env.lily(&["jobs", "next", "sec", "--from", "2027-01-01", "--until", "2027-01-02"]);
    out.expect_code(0);
    assert!(out.stdout.starts_with("10000 fire time(s) of sec"), "{}", &out.stdout[..200]);
    assert!(out.stdout.contains("stopped at 10000 fire times; narrow the window"), "cap message");
    let v = env
        .lily(&["--json", "jobs", "next", "sec", "--from", "2027-01-01", "--until", "2027-01-01T00:01:00Z"])
        .json();
    assert_eq!(v["fires"].as_array().map(Vec::len), Some(60));
    assert_eq!(v["truncated"], false);
    // A bad --from is a usage error.
    env.lily(&["jobs", "next", "ny", "--from", "next tuesday"]).expect_code(2);
}

fn run_id_of(dir: &std::path::Path) -> String {
    dir.file_name().and_then(|n| n.to_str()).expect("run id").to_string()
}

#[test]
fn run_references_take_latest_prefixes_and_job_narrowing_everywhere() {
    let env = Env::new();
    env.write_job("a", &echo("a"));
    env.write_job("b", &echo("b"));
    env.lily(&["jobs", "run", "a"]).expect_code(0);
    env.lily(&["jobs", "run", "b"]).expect_code(0);
    env.lily(&["jobs", "run", "a"]).expect_code(0);
    let a = env.run_dirs("a");
    let (a1, a2) = (run_id_of(&a[0]), run_id_of(&a[1]));
    let b1 = run_id_of(&env.only_run("b"));

    let show = |r: &str| env.lily(&["--json", "jobs", "show", r]);
    assert_eq!(show("latest").expect_code(0).json()["run_id"], a2.as_str());
    assert_eq!(show("b/latest").expect_code(0).json()["run_id"], b1.as_str());
    let suffix = a1.split_once('-').expect("suffix").1;
    assert_eq!(show(suffix).expect_code(0).json()["run_id"], a1.as_str());
    assert_eq!(show(&a1[..a1.len() - 2]).expect_code(0).json()["run_id"], a1.as_str());
    // Every run of this test shares the date: an ambiguous prefix lists the candidates.
    let amb = env.lily(&["jobs", "show", &a1[..8]]);
    amb.expect_code(10);
    assert!(
        amb.stderr.contains(&format!("run id prefix \"{}\" is ambiguous: 3 runs match", &a1[..8])),
        "{}",
        amb.stderr
    );
    for id in [format!("a/{a2}"), format!("b/{b1}"), format!("a/{a1}")] {
        assert!(amb.stderr.contains(&id), "{id} listed: {}", amb.stderr);
    }
    let amb = env.lily(&["--json", "jobs", "show", &a1[..8]]).json();
    assert_eq!(amb["details"]["candidates"].as_array().map(Vec::len), Some(3));
    env.lily(&["jobs", "show", "nothing-like-it"]).expect_code(10);

    // tail --run narrows to the job.
    let tail = env.lily(&["--json", "jobs", "tail", "a", "--run", suffix, "-n", "1"]);
    tail.expect_code(0);
    assert_eq!(serde_json::from_str::<Value>(tail.stdout.trim()).expect("event")["run_id"], a1.as_str());
    let tail = env.lily(&["--json", "jobs", "tail", "a", "--run", "latest", "-n", "1"]);
    assert_eq!(serde_json::from_str::<Value>(tail.stdout.trim()).expect("event")["run_id"], a2.as_str());
    env.lily(&["jobs", "tail", "a", "--run", &b1]).expect_code(10);

    // replay takes the same references.
    let r = env.lily(&["--json", "jobs", "replay", "b/latest", "--verify"]);
    r.expect_code(0);
    assert_eq!(r.json()["replay_of"], b1.as_str());
}

#[test]
fn jobs_run_announces_its_run_on_stderr_when_it_starts() {
    let env = Env::new();
    env.install("probe");
    env.write_job("nap", &step_job("nap", "probe.v1", "{ op: sleep, ms: 4000 }", "", "{ timeout_seconds: 60 }"));
    let mut child = env
        .cmd()
        .args(["--json", "jobs", "run", "nap"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    // Printed while the run is still going.
    assert!(child.try_wait().expect("try_wait").is_none(), "the run has not finished yet");
    let run = env.only_run("nap");
    let id = run_id_of(&run);
    assert_eq!(
        line.trim_end(),
        format!("run {id} started: {} (follow: lily jobs tail nap --run {id} -f)", run.display())
    );
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    // stdout stays one JSON document.
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["receipt"]["run_id"], id.as_str());
}

#[test]
fn show_of_a_missed_record_gives_its_reason_and_lateness() {
    let env = Env::new();
    env.write_job("nightly", &cron("nightly", "30 2 * * *", "America/New_York"));
    let record = lily::triggers::records::Record {
        job_id: "nightly".into(),
        status: lily::runs::RunStatus::Missed,
        scheduled_for: "2027-03-14T07:00:00Z".parse().expect("instant"),
        scheduled_for_local: "2027-03-14T03:00:00-04:00".into(),
        timezone: "America/New_York".into(),
        reason: "past_starting_deadline".into(),
        details: serde_json::json!({"catchup": "latest", "starting_deadline_seconds": 300, "late_by_seconds": 912}),
        spec_sha256: "sha256:x".into(),
        spec_path: "nightly.job.yaml".into(),
        target: Default::default(),
    };
    lily::triggers::records::write_record(&env.runs_dir(), &record).expect("record");
    let out = env.lily(&["jobs", "show", "nightly/latest"]);
    out.expect_code(0);
    assert!(out.stdout.contains(": missed\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("  reason    past_starting_deadline — the latest due time was later than starting_deadline_seconds\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  late by   912 s (when the scheduler decided, starting deadline 300 s, catchup latest)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn tail_follow_waits_for_the_next_run_and_exits_with_its_status() {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "later",
        &step_job(
            "later",
            "probe.v1",
            "{ op: fail, code: boom, message: on purpose }",
            "",
            "{ timeout_seconds: 60 }",
        ),
    );
    // Not a job: no waiting.
    env.lily(&["jobs", "tail", "nope", "-f"]).expect_code(10);
    let mut tail = env
        .cmd()
        .args(["jobs", "tail", "later", "-f", "--type", "step_finished", "--type", "job_failed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let mut stderr = BufReader::new(tail.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read");
    assert_eq!(line.trim_end(), "waiting for a run of later…");
    std::thread::sleep(Duration::from_millis(300));
    assert!(tail.try_wait().expect("try_wait").is_none(), "tail waits");
    let run = env.lily(&["jobs", "run", "later"]);
    let start = Instant::now();
    let mut status = None;
    wait_until(Duration::from_secs(60), "tail -f to exit", || {
        status = tail.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(start.elapsed() < Duration::from_secs(60));
    // The run's status: job_execution_failed is exit 13, for the run and the tail.
    assert_eq!(run.code, 13, "{run:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(13));
    let out = tail.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let types: Vec<&str> = stdout.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(types, ["step_finished", "job_failed"], "{stdout}");
}

#[test]
fn tail_filters_by_type_and_step() {
    let env = Env::new();
    env.write_job(
        "council",
        &council_job(
            "council",
            &["security.v1", "operations.v1"],
            "default.v1",
            "deterministic",
            "{ topic: t }",
            "",
            "{}",
        ),
    );
    env.lily(&["jobs", "run", "council"]).expect_code(0);
    let events = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["--json", "jobs", "tail", "council", "-n", "1000"];
        all.extend_from_slice(args);
        let out = env.lily(&all);
        out.expect_code(0);
        out.stdout.lines().map(|l| serde_json::from_str(l).expect("event")).collect()
    };
    let every = events(&[]);
    let step = events(&["--step", "security.v1"]);
    assert!(!step.is_empty());
    assert!(step.iter().all(|e| e["node"] == "map:security.v1"), "{step:?}");
    assert_eq!(step.len(), every.iter().filter(|e| e["node"] == "map:security.v1").count());
    assert_eq!(events(&["--step", "map:security.v1"]), step);
    let finished = events(&["--type", "step_finished"]);
    assert_eq!(finished.len(), 3, "two specialists and the synthesizer: {finished:?}");
    let both = events(&["--type", "step_finished", "--step", "reduce:default.v1"]);
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["type"], "step_finished");
    assert!(events(&["--type", "no_such_event"]).is_empty());
}
