//! Issue 3 — jobs, as users drive them through the `lily` binary: spec
//! validation and discovery, what a run leaves on disk, crashes, retries and
//! timeouts, policy, parallel runs, and the inspection commands.

use crate::harness::{Env, event_types, events, receipt, step_job, wait_until};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ECHO_INPUT: &str = "{ hello: world }";

fn echo_job(id: &str) -> String {
    step_job(id, "echo.v1", ECHO_INPUT, "", "{ timeout_seconds: 30 }")
}

fn sha256_file(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

fn rfc3339(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    assert!(s.ends_with('Z'), "not UTC: {s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Nothing under `.lily/runs/` at all.
fn assert_no_runs(env: &Env) {
    let entries: Vec<PathBuf> = std::fs::read_dir(env.runs_dir())
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "spec-level errors must write nothing, found {entries:?}");
}

// ---------------------------------------------------------------- specs

#[test]
fn validate_reports_every_spec_with_its_own_code() {
    let env = Env::new();
    let good = env.write_job("good", &echo_job("good"));
    let unknown = env.write_job(
        "unknown",
        &echo_job("unknown").replace("runtime: { timeout_seconds: 30 }", "runtime:\n  timeout_seconds: 30\n  retries: 3"),
    );
    let cron = env.write_job("cron", &echo_job("cron").replace("  type: manual", "  type: cron\n  cron: \"0 9 * * *\""));
    let target = env.write_job("target", &echo_job("target").replace("id: step.v1", "id: nope.v1"));
    let bindings = env.write_job("bindings", &echo_job("bindings").replace("  runnable: echo.v1\n", "  runable: echo.v1\n"));

    let out = env.lily(&["jobs", "validate", "--json"]);
    out.expect_code(10);
    let results = out.json();
    let by_file = |p: &Path| -> Value {
        results
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["file"].as_str() == Some(p.to_str().expect("utf8")))
            .cloned()
            .unwrap_or_else(|| panic!("{} not in {results}", p.display()))
    };
    // demo and review (from init) and good are fine.
    assert_eq!(results.as_array().expect("array").len(), 7, "{results}");
    assert_eq!(by_file(&good)["ok"], true);
    for (file, code) in [
        (&unknown, "job_invalid_spec"),
        (&cron, "job_trigger_invalid"),
        (&target, "job_target_unresolved"),
        (&bindings, "job_bindings_invalid"),
    ] {
        let r = by_file(file);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["code"], code, "{r}");
    }

    // Human output: one line per file, the error code under each invalid one.
    let text = env.lily(&["jobs", "validate"]);
    text.expect_code(10);
    assert!(text.stdout.contains(&format!("ok      {}", good.display())), "{}", text.stdout);
    assert!(
        text.stdout.contains(&format!("invalid {}\n  error[job_trigger_invalid]: ", cron.display())),
        "{}",
        text.stdout
    );

    // One good file validates alone; validation never creates a run.
    env.lily(&["jobs", "validate", good.to_str().expect("utf8")]).expect_code(0);
    assert_no_runs(&env);
}

#[test]
fn spec_level_errors_exit_with_their_code_and_write_nothing() {
    let env = Env::new();
    let good = echo_job("bad");
    let cases: Vec<(String, &str, &str)> = vec![
        (good.replace("title: Step bad", "title: Step bad\nowner: me"), "job_invalid_spec", "owner"),
        (good.replace("  kind: blueprint", "  kind: script"), "job_invalid_spec", "target.kind"),
        (
            good.replace("{ timeout_seconds: 30 }", "{ timeout_seconds: 0 }"),
            "job_invalid_spec",
            "timeout_seconds",
        ),
        (good.replace("{ timeout_seconds: 30 }", "{ retry_max: 11 }"), "job_invalid_spec", "retry_max"),
        (good.replace("id: bad", "id: \"../bad\""), "job_invalid_spec", "id"),
        ("id: bad\ntitle: [unclosed\n".to_string(), "job_invalid_spec", "bad.job.yaml"),
        ("# nothing here\n".to_string(), "job_invalid_spec", "empty"),
        (good.replace("title: Step bad", "title: &t Step bad"), "job_invalid_spec", "anchors"),
        (
            good.replace("  type: manual", "  type: manual\n  cron: \"* * * * *\""),
            "job_trigger_invalid",
            "manual",
        ),
        (
            good.replace("  type: manual", "  type: cron\n  cron: \"61 * * * *\"\n  timezone: UTC"),
            "job_trigger_invalid",
            "61",
        ),
        (
            good.replace("  type: manual", "  type: cron\n  cron: \"0 9 * * *\"\n  timezone: Mars/Olympus"),
            "job_trigger_invalid",
            "Mars/Olympus",
        ),
    ];
    for (yaml, code, needle) in cases {
        let path = env.write_job("bad", &yaml);
        let out = env.lily(&["jobs", "run", "bad"]);
        assert_eq!(out.code, 10, "{code} for:\n{yaml}\nstderr: {}", out.stderr);
        let line = first_line(&out.stderr);
        assert!(line.starts_with(&format!("error[{code}]: {}: ", path.display())), "{line}");
        assert!(line.contains(needle), "{needle:?} not in {line}");
        assert_no_runs(&env);
    }
}

#[test]
fn unknown_key_message_names_the_file_the_line_and_the_key() {
    let env = Env::new();
    let yaml = "id: uk\ntitle: Unknown key\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {}\nbindings:\n  runnable: echo.v1\ntrigger:\n  type: manual\nruntime:\n  timeout_seconds: 5\n  retries: 3\noutput: {}\n";
    let path = env.write_job("uk", yaml);
    for args in [vec!["jobs", "run", "uk"], vec!["jobs", "validate"]] {
        let out = env.lily(&args);
        out.expect_code(10);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains(&format!("error[job_invalid_spec]: {}: ", path.display())), "{all}");
        assert!(all.contains("unknown field `retries`"), "{all}");
        assert!(all.contains("line 13"), "{all}");
    }
    assert_no_runs(&env);
}

#[test]
fn duplicate_ids_are_listed_and_running_them_names_both_files() {
    let env = Env::new();
    let a = env.write_job("a", &echo_job("dup"));
    let b = env.write_job("b", &echo_job("dup"));
    let list = env.lily(&["jobs", "list", "--json"]);
    list.expect_code(0);
    let dups: Vec<Value> = list.json().as_array().expect("array").iter().filter(|j| j["id"] == "dup").cloned().collect();
    assert_eq!(dups.len(), 2, "{dups:?}");
    assert!(dups.iter().all(|d| d["duplicate_id"] == true), "{dups:?}");
    let text = env.lily(&["jobs", "list"]);
    assert_eq!(text.stdout.matches("duplicate id").count(), 2, "{}", text.stdout);
    assert!(text.stdout.contains(&a.display().to_string()) && text.stdout.contains(&b.display().to_string()));

    let out = env.lily(&["jobs", "run", "dup"]);
    out.expect_code(10);
    let line = first_line(&out.stderr);
    assert!(line.starts_with("error[job_invalid_spec]: "), "{line}");
    assert!(line.contains(&a.display().to_string()) && line.contains(&b.display().to_string()), "{line}");
    assert_no_runs(&env);

    // Validation refuses what running refuses, for both files.
    let v = env.lily(&["jobs", "validate", "--json"]);
    v.expect_code(10);
    let rows = v.json();
    for p in [&a, &b] {
        let row = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["file"].as_str() == p.to_str())
            .cloned()
            .expect("row");
        assert_eq!(row["code"], "job_invalid_spec", "{row}");
        assert!(row["message"].as_str().unwrap_or("").contains("is declared by 2 files"), "{row}");
    }
}

#[test]
fn job_not_found_names_the_searched_path_in_text_and_json() {
    let env = Env::new();
    let out = env.lily(&["jobs", "run", "nope"]);
    out.expect_code(10);
    let line = first_line(&out.stderr);
    assert!(line.starts_with("error[job_not_found]: "), "{line}");
    assert!(line.contains(&env.jobs_dir().display().to_string()), "{line}");
    assert!(out.stderr.contains("hint: "), "{}", out.stderr);

    let json = env.lily(&["jobs", "run", "nope", "--json"]);
    json.expect_code(10);
    let v = json.json();
    assert_eq!(v["code"], "job_not_found");
    assert!(v["message"].as_str().expect("message").contains(&env.jobs_dir().display().to_string()));
    assert_no_runs(&env);
}

#[test]
fn jobs_dir_comes_from_the_flag_the_env_or_the_config() {
    let env = Env::new();
    let elsewhere = env.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("far.job.yaml"), echo_job("far")).expect("write");

    // Default discovery does not see it, and says where it looked.
    let out = env.lily(&["jobs", "run", "far"]);
    out.expect_code(10);
    assert!(out.stderr.contains(&env.jobs_dir().display().to_string()), "{}", out.stderr);

    env.lily(&["jobs", "run", "far", "--jobs-dir", "elsewhere"]).expect_code(0);
    let via_env = env.cmd().args(["jobs", "run", "far"]).env("LILY_JOBS_DIR", &elsewhere).output().expect("spawn");
    assert_eq!(via_env.status.code(), Some(0), "{}", String::from_utf8_lossy(&via_env.stderr));

    std::fs::write(env.lily_dir().join("config.yaml"), "jobs_path: elsewhere\n").expect("config");
    env.lily(&["jobs", "run", "far"]).expect_code(0);
    let list = env.lily(&["jobs", "list", "--json"]).json();
    let ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, vec!["far"], "config jobs_path replaces .lily/jobs");
    // The flag still wins over the config.
    let out = env.lily(&["jobs", "run", "far", "--jobs-dir", ".lily/jobs"]);
    out.expect_code(10);
    assert_eq!(env.run_dirs("far").len(), 3);
}

// ---------------------------------------------------------------- what a run leaves

#[test]
fn a_run_leaves_a_complete_receipt_events_and_matching_artifacts() {
    let env = Env::new();
    let out = env.lily(&["jobs", "run", "demo", "--json"]);
    out.expect_code(0);
    let printed = out.json();
    let run = env.only_run("demo");
    assert_eq!(PathBuf::from(printed["run_dir"].as_str().expect("run_dir")), run);
    let r = receipt(&run);
    assert_eq!(printed["receipt"]["run_id"], r["run_id"]);

    assert_eq!(r["job_id"], "demo");
    assert_eq!(r["run_id"].as_str(), run.file_name().and_then(|n| n.to_str()));
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["lily_version"], env!("CARGO_PKG_VERSION"));
    let (started, ended) = (rfc3339(&r["started_at"]), rfc3339(&r["ended_at"]));
    assert!(ended >= started);
    assert_eq!(r["trigger"]["type"], "manual");
    assert_eq!(r["target"]["kind"], "blueprint");
    assert_eq!(r["target"]["id"], "council.v1");
    assert_eq!(r["target"]["version"], "1.0.0", "the resolved version, not the requirement");
    assert_eq!(r["target"]["input"]["topic"], "example payments service readiness");
    assert!(r["error"].is_null());
    assert_eq!(r["spec_sha256"], sha256_file(&env.jobs_dir().join("demo.job.yaml")));

    // Artifacts: exactly the ones asked for plus the summary, each matching its file.
    let names: Vec<&str> = r["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, vec!["report.md", "evidence.json", "summary.md"]);
    for a in r["artifacts"].as_array().expect("artifacts") {
        let file = run.join(a["name"].as_str().expect("name"));
        assert_eq!(a["sha256"], sha256_file(&file), "{a}");
        assert_eq!(a["bytes"].as_u64(), Some(std::fs::metadata(&file).expect("stat").len()));
        assert!(!a["media_type"].as_str().unwrap_or("").is_empty());
    }

    // Attempts, policy, components.
    let attempts = r["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], "succeeded");
    assert_eq!(attempts[0]["n"], 1);
    let decisions = r["policy"]["decisions"].as_array().expect("decisions");
    assert!(decisions.iter().any(|d| d["subject"] == "runtime.timeout_seconds"), "{decisions:?}");
    assert!(
        decisions.iter().any(|d| d["subject"].as_str().unwrap_or("").starts_with("security.v1: fs")),
        "{decisions:?}"
    );
    assert_eq!(r["policy"]["limits"]["deadline"], 120_000);
    assert_eq!(r["policy"]["grants"]["map:security.v1"]["dirs"][0]["guest"], "/workspace");
    assert_eq!(r["policy"]["grants"]["map:security.v1"]["dirs"][0]["perms"], "ro");
    let listed = env.lily(&["runnables", "list", "--json"]).json();
    let digest_of = |id: &str| {
        listed
            .as_array()
            .expect("list")
            .iter()
            .find(|x| x["id"] == id)
            .map(|x| x["digest"].clone())
            .expect("listed")
    };
    let comps = r["components"].as_array().expect("components");
    let nodes: Vec<&str> = comps.iter().filter_map(|c| c["node"].as_str()).collect();
    assert_eq!(nodes, vec!["map:security.v1", "map:operations.v1", "reduce:default.v1"]);
    for c in comps {
        assert_eq!(c["digest"], digest_of(c["runnable"].as_str().expect("runnable")), "{c}");
        assert_eq!(c["version"], "1.0.0");
    }

    // Events: the lifecycle in order, seq strictly increasing from 1.
    let evs = events(&run);
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=evs.len() as u64).collect::<Vec<_>>());
    for e in &evs {
        assert_eq!(e["run_id"], r["run_id"]);
        rfc3339(&e["ts"]);
    }
    let types = event_types(&run);
    let pos = |t: &str| types.iter().position(|x| x == t).unwrap_or_else(|| panic!("no {t} in {types:?}"));
    assert_eq!(types.first().map(String::as_str), Some("job_started"));
    assert_eq!(types.last().map(String::as_str), Some("job_completed"));
    assert!(pos("job_started") < pos("job_attempt_started"));
    assert!(pos("job_attempt_started") < pos("step_started"));
    assert!(pos("job_attempt_succeeded") < pos("job_completed"));
    assert_eq!(types.iter().filter(|t| *t == "step_started").count(), 3);
    assert_eq!(types.iter().filter(|t| *t == "step_finished").count(), 3);
    for node in nodes {
        let at = |t: &str| {
            evs.iter()
                .position(|e| e["type"] == t && e["node"] == node)
                .unwrap_or_else(|| panic!("{t} of {node}"))
        };
        assert!(at("step_started") < at("step_finished"));
        assert!(at("step_finished") < pos("job_attempt_succeeded"));
    }
}

/// Replace what legitimately differs between two runs (ids, times).
fn masked(text: &str, r: &Value) -> String {
    let mut t = text.to_string();
    for k in ["run_id", "started_at", "ended_at"] {
        if let Some(v) = r[k].as_str() {
            t = t.replace(v, &format!("<{k}>"));
        }
    }
    t
}

#[test]
fn summary_and_report_are_identical_across_runs_apart_from_ids_and_times() {
    let env = Env::new();
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    let runs = env.run_dirs("demo");
    assert_eq!(runs.len(), 2);
    let read = |run: &PathBuf, name: &str| std::fs::read_to_string(run.join(name)).expect("read");
    let (r0, r1) = (receipt(&runs[0]), receipt(&runs[1]));
    assert_ne!(r0["run_id"], r1["run_id"]);
    let (s0, s1) = (masked(&read(&runs[0], "summary.md"), &r0), masked(&read(&runs[1], "summary.md"), &r1));
    assert_eq!(s0, s1);
    assert!(s0.contains("<run_id>") && s0.contains("<started_at>"), "masking found the ids: {s0}");
    assert!(s0.contains("Council reviewed 'example payments service readiness' with 2 specialists;"), "{s0}");
    assert_eq!(read(&runs[0], "report.md"), read(&runs[1], "report.md"));
    assert_eq!(read(&runs[0], "evidence.json"), read(&runs[1], "evidence.json"));
}

#[test]
fn summary_format_json_and_artifact_filtering() {
    let env = Env::new();
    let demo = std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("demo");
    let spec = demo
        .replace("id: demo", "id: jsonsum")
        .replace("summary_format: markdown", "summary_format: json")
        .replace("artifacts: [report.md, evidence.json]", "artifacts: [evidence.json]");
    env.write_job("jsonsum", &spec);
    env.lily(&["jobs", "run", "jsonsum"]).expect_code(0);
    let run = env.only_run("jsonsum");
    assert!(!run.join("summary.md").exists());
    assert!(!run.join("report.md").exists(), "report.md was not asked for");
    assert!(run.join("evidence.json").exists());
    let r = receipt(&run);
    let names: Vec<&str> = r["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, vec!["evidence.json", "summary.json"]);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).expect("summary.json")).expect("summary.json is JSON");
    assert_eq!(s["job_id"], "jsonsum");
    assert_eq!(s["run_id"], r["run_id"]);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["summary"], r["payload"]["summary"]);
    assert_eq!(s["ranked_findings"], r["payload"]["ranked_findings"]);
}

// ---------------------------------------------------------------- crashes

#[test]
fn a_killed_run_reads_as_interrupted_and_the_next_run_works() {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "sleeper",
        &step_job("sleeper", "probe.v1", "{ op: sleep, ms: 120000 }", "", "{ timeout_seconds: 300 }"),
    );
    let mut child = env.cmd().args(["jobs", "run", "sleeper"]).spawn().expect("spawn");
    wait_until(Duration::from_secs(60), "step_started of the sleeper", || {
        env.run_dirs("sleeper")
            .first()
            .is_some_and(|r| event_types(r).iter().any(|t| t == "step_started"))
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let run = env.only_run("sleeper");
    let run_id = run.file_name().and_then(|n| n.to_str()).expect("run id").to_string();
    // The receipt on disk is the one written at start: complete JSON.
    let r = receipt(&run);
    assert_eq!(r["status"], "running");
    assert_eq!(r["run_id"], run_id.as_str());
    // A torn atomic write left behind must never count as an artifact.
    std::fs::write(run.join(".tmp-torn.partial"), b"half").expect("plant temp");

    let runs = env.lily(&["jobs", "runs", "sleeper", "--json"]);
    runs.expect_code(0);
    assert_eq!(runs.json()[0]["status"], "interrupted");
    let text = env.lily(&["jobs", "runs", "sleeper"]);
    assert!(text.stdout.contains("interrupted"), "{}", text.stdout);
    let show = env.lily(&["jobs", "show", &run_id]);
    show.expect_code(0);
    assert!(first_line(&show.stdout).ends_with(": interrupted"), "{}", show.stdout);
    assert!(!show.stdout.contains(".tmp-"), "{}", show.stdout);
    let shown = env.lily(&["jobs", "show", &run_id, "--json"]).json();
    assert_eq!(shown["status"], "interrupted");
    assert!(
        shown["artifacts"]
            .as_array()
            .expect("artifacts")
            .iter()
            .all(|a| !a["name"].as_str().unwrap_or("").starts_with(".tmp-"))
    );
    let list = env.lily(&["jobs", "list", "--json"]).json();
    let row = list
        .as_array()
        .expect("list")
        .iter()
        .find(|j| j["id"] == "sleeper")
        .cloned()
        .expect("sleeper listed");
    assert_eq!(row["last_run"]["status"], "interrupted");
    // Following a dead run ends instead of waiting forever.
    let start = Instant::now();
    let tail = env.lily(&["jobs", "tail", "sleeper", "-f"]);
    assert!(start.elapsed() < Duration::from_secs(30), "tail -f on a dead run must end");
    assert_ne!(tail.code, 0, "{tail:?}");
    assert!(tail.stderr.contains("interrupted"), "{}", tail.stderr);

    // The slot and the run lock died with the process: the next run works.
    env.write_job(
        "sleeper",
        &step_job("sleeper", "probe.v1", "{ op: sleep, ms: 1 }", "", "{ timeout_seconds: 300 }"),
    );
    env.lily(&["jobs", "run", "sleeper"]).expect_code(0);
    let runs = env.lily(&["jobs", "runs", "sleeper", "--json"]).json();
    let statuses: Vec<&str> = runs.as_array().expect("runs").iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, vec!["succeeded", "interrupted"]);
}

// ---------------------------------------------------------------- retries and timeouts

fn with_probe_state(env: &Env) {
    env.install("probe");
    std::fs::create_dir_all(env.root.join("state/probe")).expect("state dir");
    env.add_policy_runnables("  \"probe.v1\":\n    fs:\n      - path: state/probe\n        mode: rw\n");
}

const FAIL_ONCE: &str = "{ op: fail_once, dir: /state }";

#[test]
fn a_retryable_failure_is_retried_exactly_once_with_retry_max_1() {
    let env = Env::new();
    with_probe_state(&env);
    env.write_job(
        "flaky",
        &step_job(
            "flaky",
            "probe.v1",
            FAIL_ONCE,
            "  state_dir: state/probe\n",
            "{ retry_max: 1, retry_backoff_seconds: 0 }",
        ),
    );
    env.lily(&["jobs", "run", "flaky"]).expect_code(0);
    let run = env.only_run("flaky");
    let r = receipt(&run);
    assert_eq!(r["status"], "succeeded");
    let attempts = r["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["status"], "failed");
    assert_eq!(attempts[0]["retryable"], true);
    assert_eq!(attempts[0]["will_retry"], true);
    assert_eq!(attempts[0]["error_code"], "job_execution_failed");
    assert_eq!(attempts[1]["status"], "succeeded");
    assert_eq!(r["payload"]["result"]["attempt"], "second");
    let types = event_types(&run);
    assert_eq!(types.iter().filter(|t| *t == "job_attempt_started").count(), 2);
    assert_eq!(types.iter().filter(|t| *t == "job_attempt_failed").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "job_attempt_succeeded").count(), 1);
}

#[test]
fn without_retries_the_same_failure_fails_the_run_after_one_attempt() {
    let env = Env::new();
    with_probe_state(&env);
    env.write_job(
        "flaky",
        &step_job("flaky", "probe.v1", FAIL_ONCE, "  state_dir: state/probe\n", "{ retry_max: 0 }"),
    );
    let out = env.lily(&["jobs", "run", "flaky"]);
    out.expect_code(13);
    assert!(out.stderr.contains("error[job_execution_failed]: "), "{}", out.stderr);
    let r = receipt(&env.only_run("flaky"));
    assert_eq!(r["status"], "failed");
    assert_eq!(r["attempts"].as_array().expect("attempts").len(), 1);
    assert_eq!(r["attempts"][0]["will_retry"], false);
    assert_eq!(r["error"]["code"], "job_execution_failed");
    assert_eq!(r["error"]["cause"]["code"], "blueprint_execution_failed");
    assert_eq!(r["error"]["cause"]["detail"]["kind"], "guest_error");
    assert_eq!(r["error"]["cause"]["detail"]["code"], "transient");
}

fn assert_timed_out_twice(op: &str) {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "stuck",
        &step_job(
            "stuck",
            "probe.v1",
            &format!("{{ op: {op}, ms: 600000 }}"),
            "",
            "{ timeout_seconds: 1, retry_max: 1, retry_backoff_seconds: 0 }",
        ),
    );
    let start = Instant::now();
    let out = env.lily(&["jobs", "run", "stuck"]);
    // Generous bound: two 1 s attempts, not the guest's 10 minutes.
    assert!(start.elapsed() < Duration::from_secs(60), "the guest was not stopped: {:?}", start.elapsed());
    out.expect_code(13);
    let run = env.only_run("stuck");
    let r = receipt(&run);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "job_execution_failed");
    let attempts = r["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["will_retry"], true);
    assert_eq!(attempts[1]["will_retry"], false);
    let finished: Vec<Value> = events(&run).into_iter().filter(|e| e["type"] == "step_finished").collect();
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert!(finished.iter().all(|e| e["outcome"] == "deadline_exceeded"), "{finished:?}");
}

#[test]
fn a_cpu_bound_guest_is_stopped_at_the_timeout_and_retried() {
    assert_timed_out_twice("loop");
}

#[test]
fn a_sleeping_guest_is_stopped_at_the_timeout_and_retried() {
    assert_timed_out_twice("sleep");
}

// ---------------------------------------------------------------- policy

#[test]
fn runtime_above_the_policy_ceiling_is_denied_with_a_receipt() {
    let env = Env::new();
    env.write_job("greedy", &step_job("greedy", "echo.v1", ECHO_INPUT, "", "{ timeout_seconds: 7200 }"));
    let out = env.lily(&["jobs", "run", "greedy"]);
    out.expect_code(12);
    assert!(out.stderr.contains("error[job_policy_denied]: "), "{}", out.stderr);
    assert!(out.stderr.contains("limits.timeout_seconds = 3600"), "{}", out.stderr);
    let run = env.only_run("greedy");
    let r = receipt(&run);
    assert_eq!(r["status"], "denied");
    assert_eq!(r["error"]["code"], "job_policy_denied");
    assert!(r["ended_at"].is_string());
    assert!(r["attempts"].as_array().expect("attempts").is_empty(), "nothing ran");
    let evs = events(&run);
    let denied = evs.iter().find(|e| e["type"] == "policy_denied").expect("policy_denied event");
    assert_eq!(denied["error_code"], "job_policy_denied");
    assert_eq!(r["error"]["first_event_seq"], denied["seq"]);
    assert!(!evs.iter().any(|e| e["type"] == "step_started"));
    let runs = env.lily(&["jobs", "runs", "greedy", "--status", "denied", "--json"]).json();
    assert_eq!(runs.as_array().expect("runs").len(), 1);
}

#[test]
fn a_workspace_the_policy_does_not_allow_is_denied_with_the_lines_to_add() {
    let env = Env::new();
    env.install("probe");
    env.write_tree("data", &[("hello.txt", b"hi\n")]);
    env.write_job(
        "reader",
        &step_job("reader", "probe.v1", "{ op: list, path: /workspace }", "  workspace: data\n", "{}"),
    );
    let out = env.lily(&["jobs", "run", "reader"]);
    out.expect_code(12);
    assert!(
        out.stderr
            .contains("error[job_policy_denied]: policy does not allow probe.v1 ro access to \"data\""),
        "{}",
        out.stderr
    );
    let r = receipt(&env.only_run("reader"));
    assert_eq!(r["status"], "denied");
    let hint = r["error"]["cause"]["hint"].as_str().expect("hint in the receipt").to_string();
    let policy_path = env.lily_dir().join("policy.yaml");
    assert!(hint.contains(&policy_path.display().to_string()), "{hint}");
    let lines = hint.split_once(":\n").map(|(_, l)| l.to_string()).expect("hint lists lines");
    assert_eq!(lines, "runnables:\n  \"probe.v1\":\n    fs:\n      - path: data\n        mode: ro");
    // The CLI shows the same lines.
    for l in lines.lines() {
        assert!(out.stderr.contains(l), "{l:?} not in {}", out.stderr);
    }
    // And they are exactly what it takes: add them, and the run is allowed.
    env.add_policy_runnables(&format!("{}\n", lines.strip_prefix("runnables:\n").expect("runnables")));
    let again = env.lily(&["jobs", "run", "reader", "--json"]);
    again.expect_code(0);
    assert_eq!(again.json()["receipt"]["payload"]["result"]["entries"], json!(["hello.txt"]));
}

// ---------------------------------------------------------------- parallel runs

#[test]
fn twenty_concurrent_runs_get_twenty_distinct_complete_run_dirs() {
    let env = Env::new();
    env.write_job("wide", &step_job("wide", "echo.v1", ECHO_INPUT, "", "{ max_parallel_runs: 20 }"));
    // Warm the compile cache so the 20 processes do not all compile echo.
    env.lily(&["runnables", "inspect", "echo.v1"]).expect_code(0);
    let children: Vec<std::process::Child> = (0..20)
        .map(|_| {
            env.cmd()
                .args(["jobs", "run", "wide"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let runs = env.run_dirs("wide");
    assert_eq!(runs.len(), 20);
    let mut ids = std::collections::BTreeSet::new();
    for run in &runs {
        let r = receipt(run);
        assert_eq!(r["status"], "succeeded", "{}", run.display());
        assert!(ids.insert(r["run_id"].as_str().expect("id").to_string()));
        assert!(run.join("summary.md").exists() && run.join("result.json").exists());
        let types = event_types(run);
        assert_eq!(types.first().map(String::as_str), Some("job_started"));
        assert_eq!(types.last().map(String::as_str), Some("job_completed"));
    }
}

#[test]
fn the_parallel_run_cap_refuses_a_second_run_unless_asked_to_wait() {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "single",
        &step_job("single", "probe.v1", "{ op: sleep, ms: 10000 }", "", "{ max_parallel_runs: 1 }"),
    );
    let first = env
        .cmd()
        .args(["jobs", "run", "single"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "the first run to start its step", || {
        env.run_dirs("single")
            .first()
            .is_some_and(|r| event_types(r).iter().any(|t| t == "step_started"))
    });
    let second = env.lily(&["jobs", "run", "single"]);
    // Busy (exit 15), not a policy denial: the run overlapped the first.
    second.expect_code(15);
    assert!(second.stderr.contains("error[job_busy]: parallel run cap reached"), "{}", second.stderr);
    let runs = env.run_dirs("single");
    assert_eq!(runs.len(), 2);
    let refused = receipt(&runs[1]);
    assert_eq!(refused["status"], "skipped_overlap");
    assert_eq!(refused["error"]["code"], "job_busy");
    assert_eq!(refused["error"]["cause"]["details"]["reason"], "parallel_run_cap");
    assert_eq!(event_types(&runs[1]).last().map(String::as_str), Some("job_skipped_overlap"));

    let waited = env.lily(&["jobs", "run", "single", "--wait"]);
    waited.expect_code(0);
    let first = first.wait_with_output().expect("first");
    assert_eq!(first.status.code(), Some(0));
    let runs = env.run_dirs("single");
    assert_eq!(runs.len(), 3);
    let (r0, r2) = (receipt(&runs[0]), receipt(&runs[2]));
    assert_eq!(r2["status"], "succeeded");
    // It said what it waited for: the slot and the run holding it.
    let waiting = events(&runs[2])
        .into_iter()
        .find(|e| e["type"] == "waiting_for_slot")
        .expect("waiting_for_slot");
    assert_eq!(waiting["max_parallel_runs"], 1);
    assert_eq!(waiting["held_by"], serde_json::json!([r0["run_id"]]), "{waiting}");
    // The waiting run only started its attempt once the first had ended.
    let attempt_started = events(&runs[2]).into_iter().find(|e| e["type"] == "job_attempt_started").expect("attempt");
    assert!(rfc3339(&attempt_started["ts"]) >= rfc3339(&r0["ended_at"]));
}

// ---------------------------------------------------------------- inspection commands

#[test]
fn list_run_tail_runs_and_show_work_as_documented() {
    let env = Env::new();
    env.install("probe");
    env.write_job("ok", &echo_job("ok"));
    env.write_job(
        "broken",
        &step_job("broken", "probe.v1", "{ op: fail, code: boom, message: broken on purpose }", "", "{}"),
    );

    // list before any run
    let list = env.lily(&["jobs", "list"]);
    list.expect_code(0);
    assert!(first_line(&list.stdout).starts_with("ID"), "{}", list.stdout);
    let row = list.stdout.lines().find(|l| l.starts_with("ok ")).expect("ok row");
    assert!(row.contains("Step ok") && row.contains("manual") && row.trim_end().ends_with('-'), "{row}");

    // run: summary and run directory on stdout
    let run = env.lily(&["jobs", "run", "ok"]);
    run.expect_code(0);
    assert!(run.stdout.starts_with("# ok — succeeded\n"), "{}", run.stdout);
    let ok_run = env.only_run("ok");
    assert!(run.stdout.contains(&format!("run directory: {}", ok_run.display())), "{}", run.stdout);
    let ok_id = ok_run.file_name().and_then(|n| n.to_str()).expect("id").to_string();
    let list = env.lily(&["jobs", "list", "--json"]).json();
    let row = list.as_array().expect("list").iter().find(|j| j["id"] == "ok").cloned().expect("ok");
    assert_eq!(row["last_run"]["status"], "succeeded");
    assert_eq!(row["last_run"]["run_id"], ok_id.as_str());
    assert_eq!(row["trigger"], "manual");

    // tail -n, --json, -f on a finished run
    let all = events(&ok_run);
    let tail = env.lily(&["jobs", "tail", "ok", "-n", "2"]);
    tail.expect_code(0);
    let lines: Vec<&str> = tail.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", tail.stdout);
    assert!(lines[1].contains("job_completed"), "{}", tail.stdout);
    assert!(lines[0].contains(all[all.len() - 2]["type"].as_str().expect("type")));
    let tail_json = env.lily(&["jobs", "tail", "ok", "-n", "3", "--json"]);
    let parsed: Vec<Value> = tail_json.stdout.lines().map(|l| serde_json::from_str(l).expect("event JSON")).collect();
    assert_eq!(parsed, all[all.len() - 3..].to_vec());
    env.lily(&["jobs", "tail", "ok", "-f"]).expect_code(0);

    for _ in 0..2 {
        env.lily(&["jobs", "run", "broken"]).expect_code(13);
    }
    env.lily(&["jobs", "tail", "broken", "-f"]).expect_code(13);
    env.write_job("broken", &step_job("broken", "probe.v1", "{ op: sleep, ms: 1 }", "", "{}"));
    env.lily(&["jobs", "run", "broken"]).expect_code(0);

    // runs: newest first, --limit, --status
    let runs = env.lily(&["jobs", "runs", "broken", "--json"]).json();
    let statuses: Vec<&str> = runs.as_array().expect("runs").iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, vec!["succeeded", "failed", "failed"]);
    let limited = env.lily(&["jobs", "runs", "broken", "--limit", "2", "--json"]).json();
    assert_eq!(limited.as_array().expect("runs").len(), 2);
    assert_eq!(limited[0]["status"], "succeeded");
    let failed = env.lily(&["jobs", "runs", "broken", "--status", "failed", "--json"]).json();
    assert_eq!(failed.as_array().expect("runs").len(), 2);
    assert!(failed.as_array().expect("runs").iter().all(|r| r["error_code"] == "job_execution_failed"));
    let text = env.lily(&["jobs", "runs", "broken", "--status", "failed"]);
    assert_eq!(text.stdout.lines().count(), 3, "header + 2 rows:\n{}", text.stdout);
    assert!(text.stdout.lines().skip(1).all(|l| l.contains("failed") && l.contains("job_execution_failed")));
    env.lily(&["jobs", "runs", "broken", "--status", "bogus"]).expect_code(2); // a usage error (clap lists the statuses)

    // show: a failed run names its first error code and the event seq where it appeared
    let failed_id = failed[0]["run_id"].as_str().expect("id").to_string();
    let failed_dir = env.runs_dir().join("broken").join(&failed_id);
    let first_err = events(&failed_dir)
        .into_iter()
        .find(|e| e.get("error_code").is_some())
        .expect("an event with error_code");
    let show = env.lily(&["jobs", "show", &failed_id]);
    show.expect_code(0);
    assert!(first_line(&show.stdout).ends_with(": failed"), "{}", show.stdout);
    assert!(show.stdout.contains("first error: job_execution_failed"), "{}", show.stdout);
    assert!(show.stdout.contains(&format!("at seq {}", first_err["seq"])), "{}", show.stdout);
    assert!(show.stdout.contains("boom"), "{}", show.stdout);
    assert!(show.stdout.contains("\n  trigger   manual\n"), "{}", show.stdout);
    let shown = env.lily(&["jobs", "show", &failed_id, "--json"]).json();
    assert_eq!(shown["error"]["code"], "job_execution_failed");
    assert_eq!(shown["error"]["first_event_seq"], first_err["seq"]);
    let missing = env.lily(&["jobs", "show", "20000101T000000.000Z-00000000"]);
    missing.expect_code(10);
    assert!(first_line(&missing.stderr).starts_with("error[job_not_found]: "), "{}", missing.stderr);

    // run --json prints the receipt
    let j = env.lily(&["jobs", "run", "ok", "--json"]);
    j.expect_code(0);
    assert_eq!(j.json()["receipt"]["status"], "succeeded");
}

#[test]
fn an_unset_parallelism_is_capped_by_the_policy_not_denied() {
    let env = Env::new();
    // A ceiling below any machine's default (its core count, at least 1 here
    // with 2 specialists to run): the job does not ask for parallelism, so it
    // must run, at most one step at a time.
    let policy = std::fs::read_to_string(env.lily_dir().join("policy.yaml")).expect("policy");
    env.write_policy(&policy.replace("max_parallelism: 16", "max_parallelism: 1"));
    let out = env.lily(&["jobs", "run", "demo"]);
    out.expect_code(0);
    let r = receipt(&env.only_run("demo"));
    let d = r["policy"]["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .find(|d| d["subject"] == "runtime.max_parallelism")
        .cloned()
        .expect("decision");
    assert_eq!(d["decision"], "allowed");
    assert_eq!(d["reason"], "1 <= 1");
    // Asking for more than the ceiling is still denied.
    let demo = std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("demo");
    env.write_job("demo", &demo.replace("  retry_max: 1\n", "  retry_max: 1\n  max_parallelism: 2\n"));
    let out = env.lily(&["jobs", "run", "demo"]);
    out.expect_code(12);
    assert!(
        out.stderr
            .contains("runtime.max_parallelism = 2 exceeds the policy ceiling limits.max_parallelism = 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_checks_the_input_and_the_artifacts_against_the_blueprint() {
    let env = Env::new();
    let demo = std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("demo");
    let input = env.write_job(
        "input",
        &demo
            .replace("id: demo", "id: input")
            .replace("    topic: example payments service readiness\n", "    subject: x\n"),
    );
    let artifacts = env.write_job(
        "artifacts",
        &demo.replace("id: demo", "id: artifacts").replace("[report.md, evidence.json]", "[reprot.md]"),
    );
    let out = env.lily(&["jobs", "validate", "--json"]);
    out.expect_code(10);
    let results = out.json();
    let of = |p: &Path| {
        results
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["file"].as_str() == p.to_str())
            .cloned()
            .expect("result")
    };
    let r = of(&input);
    assert_eq!(r["code"], "job_invalid_spec", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or("")
            .contains("target.input does not match council.v1's input schema"),
        "{r}"
    );
    let r = of(&artifacts);
    assert_eq!(r["code"], "job_invalid_spec", "{r}");
    assert!(r["message"].as_str().unwrap_or("").contains("output.artifacts lists \"reprot.md\""), "{r}");
    // `jobs run` refuses the same way, before any step.
    let run = env.lily(&["jobs", "run", "input"]);
    run.expect_code(10);
    assert!(run.stderr.contains("error[job_invalid_spec]: target.input"), "{}", run.stderr);
}
