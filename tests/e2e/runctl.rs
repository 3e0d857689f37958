//! Issue 15 items 16 and 17 through the real binary: `lily jobs prune`
//! (flags, configured `retention:`, dry run, links), `lily jobs cancel` of a
//! `lily jobs run` process, and `lily runnables remove`. (Cancelling a run
//! of `lily jobs serve` is in `scheduler.rs`.)

use crate::harness::{Env, event_types, receipt, step_job, wait_until};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn run_ids(env: &Env, job: &str) -> Vec<String> {
    env.run_dirs(job)
        .iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn prune_by_flags_by_configured_retention_and_never_through_links() {
    let env = Env::new();
    env.write_job("quick", &step_job("quick", "echo.v1", "{ x: 1 }", "", "{}"));
    for _ in 0..4 {
        env.lily(&["jobs", "run", "quick"]).expect_code(0);
    }
    let all = run_ids(&env, "quick");
    assert_eq!(all.len(), 4);
    // A link named like a run, pointing outside `.lily/runs/`.
    let outside = env.root.join("outside");
    std::fs::create_dir_all(&outside).expect("dir");
    std::fs::write(outside.join("precious.txt"), b"mine").expect("write");
    let link = "20000101T000000.000Z-0badf00d";
    std::os::unix::fs::symlink(&outside, env.runs_dir().join("quick").join(link)).expect("symlink");

    // Nothing configured, no flags: nothing goes, and it says so.
    let out = env.lily(&["jobs", "prune"]);
    out.expect_code(0);
    assert!(out.stdout.contains("no retention configured"), "{}", out.stdout);
    assert_eq!(run_ids(&env, "quick").len(), 5, "4 runs and the link");
    // A bad duration is a usage error.
    env.lily(&["jobs", "prune", "quick", "--older-than", "soon"]).expect_code(2);
    env.lily(&["jobs", "prune", "nosuchjob", "--keep-last", "1"]).expect_code(10);

    // Dry run: lists the two oldest runs and the link, removes nothing.
    let v = env
        .lily(&["--json", "jobs", "prune", "quick", "--keep-last", "2", "--dry-run"])
        .expect_code(0)
        .json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["pruned"], 3, "{v}");
    assert!(v["bytes_freed"].as_u64().is_some_and(|b| b > 0), "{v}");
    assert_eq!(run_ids(&env, "quick").len(), 5);
    assert!(std::fs::symlink_metadata(env.runs_dir().join("quick").join(link)).is_ok());

    let out = env.lily(&["jobs", "prune", "quick", "--keep-last", "2"]);
    out.expect_code(0);
    assert!(out.stdout.contains("quick: removed 3 run(s), "), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("removed quick {link} symlink")), "{}", out.stdout);
    let left = run_ids(&env, "quick");
    assert_eq!(left, all[2..].to_vec(), "the newest two stay");
    assert_eq!(std::fs::read(outside.join("precious.txt")).expect("the link's target is untouched"), b"mine");
    // The listing agrees (the index does not resurrect pruned runs).
    let listed = env.lily(&["--json", "jobs", "runs", "quick"]).expect_code(0).json();
    assert_eq!(listed.as_array().expect("runs").len(), 2);

    // A default in .lily/config.yaml, overridden by the spec's own retention.
    std::fs::write(env.lily_dir().join("config.yaml"), "retention: {keep_last: 1}\n").expect("config");
    let out = env.lily(&["jobs", "prune", "--dry-run"]);
    out.expect_code(0);
    assert!(out.stdout.contains("quick: would remove 1 run(s)"), "{}", out.stdout);
    let spec = step_job("quick", "echo.v1", "{ x: 1 }", "", "{}") + "retention: {keep_last: 3, older_than: 30d}\n";
    env.write_job("quick", &spec);
    env.lily(&["jobs", "validate"]).expect_code(0);
    let v = env.lily(&["--json", "jobs", "prune"]).expect_code(0).json();
    assert_eq!(v["pruned"], 0, "the spec keeps 3 and everything younger than 30 days: {v}");
    assert_eq!(v["jobs"][0]["retention"]["older_than"], "30d");
    // A bad retention is a spec error.
    env.write_job(
        "quick",
        &(step_job("quick", "echo.v1", "{ x: 1 }", "", "{}") + "retention: {older_than: 3 weeks}\n"),
    );
    let out = env.lily(&["jobs", "validate"]);
    out.expect_code(10);
}

#[test]
fn cancel_a_run_of_another_process() {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "slow",
        &step_job("slow", "probe.v1", "{ op: sleep, ms: 60000 }", "", "{ timeout_seconds: 120 }"),
    );
    let child = env
        .cmd()
        .args(["jobs", "run", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "the step to start", || {
        env.run_dirs("slow").first().is_some_and(|d| event_types(d).iter().any(|t| t == "step_started"))
    });
    let run = env.only_run("slow");
    let run_id = run.file_name().expect("name").to_string_lossy().into_owned();
    let t = Instant::now();
    let v = env.lily(&["--json", "jobs", "cancel", &run_id]).expect_code(0).json();
    assert_eq!(v["status"], "cancelled", "{v}");
    assert!(t.elapsed() < Duration::from_secs(20));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let r = receipt(&run);
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["error"]["message"], "run cancelled (lily jobs cancel)");
    assert!(event_types(&run).iter().any(|t| t == "job_cancelled"));
    // A finished run cannot be cancelled: its own code and exit status.
    let out = env.lily(&["jobs", "cancel", &run_id]);
    out.expect_code(16);
    assert!(
        out.stderr.contains("error[run_not_active]") && out.stderr.contains("ended cancelled"),
        "{}",
        out.stderr
    );
    env.lily(&["jobs", "cancel", "20000101T000000.000Z-00000000"]).expect_code(10);
    // A run whose process died (still `running` on disk): stale, nothing to signal.
    let stale = env.runs_dir().join("slow").join("20000101T000000.000Z-0000dead");
    std::fs::create_dir_all(&stale).expect("dir");
    let mut rec = r.clone();
    rec["run_id"] = "20000101T000000.000Z-0000dead".into();
    rec["status"] = "running".into();
    rec["pid"] = 999_999_999u64.into();
    std::fs::write(stale.join("run_receipt.json"), serde_json::to_vec(&rec).expect("json")).expect("write");
    std::fs::write(stale.join(".run.lock"), b"").expect("lock");
    let v = env.lily(&["--json", "jobs", "cancel", "20000101T000000.000Z-0000dead"]).expect_code(0).json();
    assert_eq!(v["status"], "interrupted", "{v}");
    assert_eq!(v["stale"], true);
}

#[test]
fn remove_a_runnable_refused_while_a_job_uses_it() {
    let env = Env::new();
    env.install("probe");
    env.write_job("uses", &step_job("uses", "probe.v1", "{ op: sleep, ms: 1 }", "", "{}"));
    let out = env.lily(&["runnables", "remove", "probe.v1"]);
    out.expect_code(17);
    assert!(
        out.stderr.contains("error[runnable_in_use]") && out.stderr.contains("uses (") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    let v = env.lily(&["--json", "runnables", "remove", "probe.v1"]).expect_code(17).json();
    assert_eq!(v["details"]["jobs"][0], "uses");
    // Built-ins never; unknown ids are not found.
    let out = env.lily(&["runnables", "remove", "echo.v1", "--force"]);
    out.expect_code(17);
    assert!(out.stderr.contains("built-in"), "{}", out.stderr);
    env.lily(&["runnables", "remove", "nope.v1"]).expect_code(10);
    env.lily(&["runnables", "remove", "probe.v1@9.9.9", "--force"]).expect_code(10);
    // --force removes it; the job then cannot resolve it.
    let v = env.lily(&["--json", "runnables", "remove", "probe.v1", "--force"]).expect_code(0).json();
    assert_eq!(v["removed"][0]["id"], "probe.v1");
    let listed = env.lily(&["--json", "runnables", "list"]).expect_code(0).stdout.clone();
    assert!(!listed.contains("\"probe.v1\""), "{listed}");
    env.lily(&["jobs", "run", "uses"]).expect_code(11);
    // Without a referencing job it goes without --force.
    env.install("probe");
    std::fs::remove_file(env.jobs_dir().join("uses.job.yaml")).expect("rm");
    env.lily(&["runnables", "remove", "probe.v1"]).expect_code(0);
}

#[test]
fn prune_keeps_a_run_whose_approval_is_still_pending() {
    let env = Env::new();
    env.install("probe");
    let prop = step_job(
        "prop",
        "probe.v1",
        "{ op: propose_write, path: notes/todo.md, content: \"- ship it\" }",
        "",
        "{}",
    );
    env.write_job("prop", &prop);
    let r = env.lily(&["--json", "jobs", "run", "prop"]).expect_code(0).json();
    let id = r["receipt"]["approvals_requested"][0]["id"].as_str().expect("id").to_string();
    env.lily(&["jobs", "run", "prop"]).expect_code(0);
    let v = env.lily(&["--json", "jobs", "prune", "prop", "--keep-last", "0"]).expect_code(0).json();
    let protected = &v["jobs"][0]["protected"];
    assert_eq!(protected.as_array().map(Vec::len), Some(2), "{v}");
    assert!(protected[0]["reason"].as_str().is_some_and(|s| s.contains("is still open")), "{v}");
    assert_eq!(v["pruned"], 0);
    // Once decided, the run can go (the other one's approval is still pending).
    env.lily(&["approvals", "deny", &id]).expect_code(0);
    let v = env.lily(&["--json", "jobs", "prune", "prop", "--keep-last", "0"]).expect_code(0).json();
    assert_eq!(v["pruned"], 1, "{v}");
    assert_eq!(v["jobs"][0]["pruned"][0]["run_id"], r["receipt"]["run_id"]);
    let kept = run_ids(&env, "prop");
    assert_eq!(kept.len(), 1);
    // The job's index no longer lists the pruned run: its lines (the kept
    // run's open and summary lines) all name the kept run.
    let index = std::fs::read_to_string(env.runs_dir().join("prop").join("index.jsonl")).expect("index");
    assert!(!index.contains(r["receipt"]["run_id"].as_str().expect("run id")), "{index}");
    let lines: Vec<&str> = index.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains(&kept[0])), "{index}");
}
