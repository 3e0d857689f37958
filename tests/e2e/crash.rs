//! Crash safety (issue 8), driving the real `lily` binary: `kill -9` of
//! `lily jobs run` at random points, runs killed at each step of creating
//! their record, 20 concurrent runs of one job and of 20 jobs, and a run
//! store that cannot be written (no permission, or a file size limit as a
//! stand-in for a full disk).
//!
//! After every crash: every `run_receipt.json` on disk parses, no temp file
//! is listed as an artifact, every run directory is listed by `lily jobs
//! runs` (a killed run as `interrupted`), and the next run works.

use crate::harness::{Env, LILY, receipt, step_job};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A small xorshift generator; the seed is printed so a failure can be
/// replayed with `LILY_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("LILY_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
        eprintln!("crash test seed: LILY_CRASH_SEED={seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with(".tmp-") || name.ends_with(".partial") || name.contains(".lily-tmp-")
}

/// `lily --json jobs runs <job>`: run id → status.
fn listed_runs(env: &Env, job: &str) -> Vec<(String, String)> {
    let v = env.lily(&["--json", "jobs", "runs", job, "--limit", "100000"]).expect_code(0).json();
    v.as_array()
        .expect("runs list")
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().expect("run_id").to_string(),
                r["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// What a crash may leave, checked for every run directory of `job`.
/// Returns the number of temp files left behind (allowed, never listed).
fn check_store(env: &Env, job: &str) -> usize {
    check_store_allowing(env, job, &["succeeded", "interrupted"])
}

fn check_store_allowing(env: &Env, job: &str, allowed: &[&str]) -> usize {
    let dirs = env.run_dirs(job);
    let listed = listed_runs(env, job);
    let listed_ids: BTreeSet<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    let mut temps = 0;
    for dir in &dirs {
        let id = dir.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            listed_ids.contains(id.as_str()),
            "run directory {id} is not listed by `lily jobs runs`: record lost"
        );
        for entry in std::fs::read_dir(dir).expect("run dir") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                temps += 1;
            }
        }
        if dir.join("run_receipt.json").exists() {
            let r = receipt(dir);
            for a in r["artifacts"].as_array().expect("artifacts") {
                let name = a["name"].as_str().expect("name");
                assert!(!is_temp_name(name), "{id}: a temp file is listed as an artifact: {name}");
                if r["status"] == "succeeded" {
                    let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{id}: artifact {name}: {e}"));
                    assert_eq!(a["bytes"].as_u64(), Some(bytes.len() as u64), "{id}: {name}");
                    assert_eq!(a["sha256"].as_str(), Some(lily::util::sha256(&bytes).as_str()), "{id}: {name}");
                }
            }
        }
        // Events: whole lines only, seq strictly increasing.
        let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
        let mut last = 0;
        for line in text.lines() {
            let ev: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{id}: torn event line ({e}): {line}"));
            let seq = ev["seq"].as_u64().expect("seq");
            assert!(seq > last, "{id}: seq {seq} after {last}");
            last = seq;
        }
    }
    assert_eq!(listed.len(), dirs.len(), "every run directory listed once: {listed:?}");
    for (id, status) in &listed {
        assert!(
            allowed.contains(&status.as_str()),
            "{id}: a dead run must read as one of {allowed:?}, not {status}"
        );
    }
    temps
}

#[test]
fn kill_9_at_random_points_never_loses_or_corrupts_a_record() {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "victim",
        &step_job("victim", "probe.v1", "{ op: sleep, ms: 150 }", "", "{ timeout_seconds: 60 }"),
    );
    // Warm the compile cache: kill points then spread over the whole run.
    env.lily(&["jobs", "run", "victim"]).expect_code(0);
    let iterations: u64 = std::env::var("LILY_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let mut rng = Rng::from_env();
    let (mut killed, mut finished, mut temps) = (0, 0, 0);
    for i in 0..iterations {
        let delay = Duration::from_millis(rng.below(301));
        let mut child = env
            .cmd()
            .args(["jobs", "run", "victim"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        // `Child::kill` is SIGKILL on Unix: no handler, no cleanup.
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if status.success() {
            finished += 1;
        } else {
            killed += 1;
        }
        temps = check_store(&env, "victim");
        eprintln!("iteration {i}: killed after {delay:?}, exit {status}");
    }
    let no_receipt = env.run_dirs("victim").iter().filter(|d| !d.join("run_receipt.json").exists()).count();
    eprintln!("{killed} killed ({no_receipt} before their first receipt), {finished} finished first, {temps} temp files left (none listed)");
    let runs = listed_runs(&env, "victim");
    let interrupted = runs.iter().filter(|(_, s)| s == "interrupted").count();
    let run_dirs = env.run_dirs("victim").len();
    assert!(interrupted <= killed, "{runs:?}");
    assert_eq!(run_dirs, runs.len());
    // The next run works.
    let out = env.lily(&["--json", "jobs", "run", "victim"]);
    out.expect_code(0);
    check_store(&env, "victim");
    assert_eq!(listed_runs(&env, "victim")[0].1, "succeeded");
}

/// Leave a run directory as a process killed at each step of creating its
/// record would: the directory only, plus the lock, plus the spec snapshot
/// and a half-written receipt temp file, plus a `running` receipt.
#[test]
fn a_run_killed_while_creating_its_record_reads_as_interrupted() {
    let env = Env::new();
    env.write_job("j", &step_job("j", "echo.v1", "{ x: 1 }", "", "{}"));
    env.lily(&["jobs", "run", "j"]).expect_code(0);
    let job_dir = env.runs_dir().join("j");
    let template = env.run_dirs("j").remove(0);
    let running = {
        let mut r = receipt(&template);
        r["status"] = Value::from("running");
        r.as_object_mut().expect("obj").remove("ended_at");
        r
    };
    let old = chrono::Utc::now() - chrono::Duration::minutes(5);
    let stages: [(&str, fn(&Path, &Value)); 4] = [
        ("dir only", |_d, _r| {}),
        ("lock", |d, _r| {
            std::fs::write(d.join(".run.lock"), b"").expect("lock");
        }),
        ("lock, spec snapshot, temp receipt", |d, _r| {
            std::fs::write(d.join(".run.lock"), b"").expect("lock");
            std::fs::write(d.join("job_spec.yaml"), b"id: j\n").expect("spec");
            std::fs::write(d.join(".tmp-AbCdEf.partial"), b"{\"lily_version\": \"0.1").expect("temp");
        }),
        ("running receipt", |d, r| {
            std::fs::write(d.join(".run.lock"), b"").expect("lock");
            std::fs::write(d.join("events.jsonl"), b"").expect("events");
            std::fs::write(d.join("run_receipt.json"), serde_json::to_vec_pretty(r).expect("json")).expect("receipt");
        }),
    ];
    let mut ids = Vec::new();
    for (i, (what, make)) in stages.iter().enumerate() {
        let id = format!("{}-dead{i:04}", (old + chrono::Duration::seconds(i as i64)).format("%Y%m%dT%H%M%S%.3fZ"));
        let dir = job_dir.join(&id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut r = running.clone();
        r["run_id"] = Value::from(id.clone());
        make(&dir, &r);
        // As old as a run killed minutes ago (a directory younger than a
        // few seconds without a lock may still be starting).
        let past = std::time::SystemTime::now() - Duration::from_secs(300);
        std::fs::File::open(&dir).and_then(|f| f.set_modified(past)).expect("set mtime");
        ids.push((id, *what));
    }
    check_store(&env, "j");
    let listed = listed_runs(&env, "j");
    for (id, what) in &ids {
        let status = listed.iter().find(|(x, _)| x == id).map(|(_, s)| s.as_str());
        assert_eq!(status, Some("interrupted"), "{what}: {listed:?}");
        let shown = env.lily(&["--json", "jobs", "show", id]);
        shown.expect_code(0);
        let v = shown.json();
        assert_eq!(v["status"], "interrupted", "{what}");
        for a in v["artifacts"].as_array().expect("artifacts") {
            assert!(!is_temp_name(a["name"].as_str().expect("name")), "{what}");
        }
    }
    env.lily(&["jobs", "run", "j"]).expect_code(0);
    assert_eq!(listed_runs(&env, "j")[0].1, "succeeded");
}

/// Every run directory complete: a succeeded receipt whose artifacts match
/// the files, one `job_started` and one terminal event, seq 1..n.
fn assert_complete(dir: &Path) {
    let r = receipt(dir);
    assert_eq!(r["status"], "succeeded", "{}: {:?}", dir.display(), r["error"]);
    assert!(r["ended_at"].is_string());
    assert_eq!(r["run_id"].as_str(), dir.file_name().and_then(|n| n.to_str()));
    let names: Vec<&str> = r["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert!(names.contains(&"summary.md") && names.contains(&"result.json"), "{names:?}");
    let events = crate::harness::events(dir);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types.iter().filter(|t| **t == "job_started").count(), 1);
    assert_eq!(types.iter().filter(|t| lily::runs::is_terminal_event(t)).count(), 1, "{types:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

fn spawn_runs(env: &Env, jobs: &[String]) -> Vec<(String, std::process::Output)> {
    let children: Vec<(String, std::process::Child)> = jobs
        .iter()
        .map(|j| {
            let c = env
                .cmd()
                .args(["--json", "jobs", "run", j])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            (j.clone(), c)
        })
        .collect();
    children.into_iter().map(|(j, c)| (j, c.wait_with_output().expect("wait"))).collect()
}

#[test]
fn twenty_concurrent_runs_of_one_job_and_of_twenty_jobs_are_complete_and_distinct() {
    let env = Env::new();
    env.write_job("many", &step_job("many", "echo.v1", "{ n: 1 }", "", "{ max_parallel_runs: 20 }"));
    let jobs: Vec<String> = (0..20).map(|i| format!("j{i:02}")).collect();
    for j in &jobs {
        env.write_job(j, &step_job(j, "echo.v1", &format!("{{ job: {j} }}"), "", "{}"));
    }
    env.lily(&["jobs", "run", "many"]).expect_code(0);
    let t = Instant::now();
    let same = spawn_runs(&env, &vec!["many".to_string(); 20]);
    for (j, out) in &same {
        assert!(out.status.success(), "{j}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dirs = env.run_dirs("many");
    assert_eq!(dirs.len(), 21, "20 concurrent runs plus the first");
    let ids: BTreeSet<PathBuf> = dirs.iter().cloned().collect();
    assert_eq!(ids.len(), 21, "distinct run directories");
    for d in &dirs {
        assert_complete(d);
    }
    let different = spawn_runs(&env, &jobs);
    for (j, out) in &different {
        assert!(out.status.success(), "{j}: {}", String::from_utf8_lossy(&out.stderr));
        let dir = env.only_run(j);
        assert_complete(&dir);
        assert_eq!(receipt(&dir)["payload"]["result"]["job"], j.as_str());
    }
    eprintln!("40 concurrent runs in {:?}", t.elapsed());
    check_store(&env, "many");
}

/// Whether this process can write into a directory whose mode forbids it
/// (true for root, where permissions are not enforced).
fn permissions_enforced(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let probe = dir.join(".probe");
    let enforced = std::fs::write(&probe, b"x").is_err();
    let _ = std::fs::remove_file(&probe);
    enforced
}

#[test]
fn an_unwritable_run_store_is_a_clear_error_and_no_receipt_claims_success() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.write_job("ro", &step_job("ro", "echo.v1", "{ x: 1 }", "", "{}"));
    let job_runs = env.runs_dir().join("ro");
    std::fs::create_dir_all(&job_runs).expect("mkdir");
    // A read-only `.lily/runs/<job>` (chmod 555). As root permissions are
    // not enforced: then `.lily/runs/<job>` is a file where the directory
    // should be, which fails the same way (the run directory cannot be
    // created).
    let method = if permissions_enforced(&job_runs) {
        "chmod 555"
    } else {
        std::fs::set_permissions(&job_runs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::remove_dir(&job_runs).expect("rmdir");
        std::fs::write(&job_runs, b"not a directory").expect("file");
        "a file in place of the directory (root: permissions not enforced)"
    };
    eprintln!("unwritable run store simulated with: {method}");
    let out = env.lily(&["jobs", "run", "ro"]);
    assert_eq!(out.code, lily::ErrorCode::JobExecutionFailed.exit_status(), "job_execution_failed: {out:?}");
    assert!(
        out.stderr.contains("job_execution_failed") && out.stderr.contains("cannot create a run directory"),
        "{}",
        out.stderr
    );
    if job_runs.is_dir() {
        assert!(env.run_dirs("ro").is_empty(), "nothing written");
        std::fs::set_permissions(&job_runs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    } else {
        std::fs::remove_file(&job_runs).expect("rm");
    }
    env.lily(&["jobs", "run", "ro"]).expect_code(0);

    // A disk that fills up mid-run: a file size limit (RLIMIT_FSIZE, with
    // SIGXFSZ ignored so writes fail with EFBIG) lets the first receipt be
    // written and fails the 1 MB result artifact.
    env.install("probe");
    env.write_job("full", &step_job("full", "probe.v1", "{ op: huge_payload, bytes: 1000000 }", "", "{}"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f 400; exec \"{LILY}\" jobs run full"))
        .current_dir(&env.root)
        .env("LILY_ROOT", &env.root)
        .env_remove("LILY_JOBS_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let stderr = String::from_utf8_lossy(&status.stderr).into_owned();
    assert_eq!(status.status.code(), Some(lily::ErrorCode::JobExecutionFailed.exit_status()), "{stderr}");
    assert!(stderr.contains("job_execution_failed") && stderr.contains("cannot write"), "{stderr}");
    let dir = env.only_run("full");
    let r = receipt(&dir);
    assert_ne!(r["status"], "succeeded", "no receipt claims success");
    for a in r["artifacts"].as_array().expect("artifacts") {
        assert!(!is_temp_name(a["name"].as_str().expect("name")));
    }
    assert_eq!(listed_runs(&env, "full")[0].1, "interrupted", "the failed write leaves an interrupted run");
    check_store(&env, "full");
    env.lily(&["jobs", "run", "full"]).expect_code(0);
    assert_eq!(listed_runs(&env, "full")[0].1, "succeeded");
}

/// `lily jobs serve` killed with SIGKILL at random points around per-second
/// fire times, three times, then restarted: every scheduled time has exactly
/// one record (a run, or a `missed` record for the downtime), none has two,
/// and the record of a run killed with the scheduler reads `interrupted`.
#[test]
fn kill_9_of_the_scheduler_around_fire_times_neither_doubles_nor_loses_a_run() {
    let env = Env::new();
    let spec = step_job("tick", "echo.v1", "{ t: 1 }", "", "{ timeout_seconds: 30 }").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"*/1 * * * * *\"\n  timezone: UTC\n",
    );
    env.write_job("tick", &spec);
    let mut rng = Rng::from_env();
    let succeeded = |env: &Env| listed_runs(env, "tick").iter().filter(|(_, s)| s == "succeeded").count();
    let serve = |env: &Env| {
        env.cmd()
            .args(["jobs", "serve", "--grace-seconds", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn lily jobs serve")
    };
    let statuses = ["succeeded", "interrupted", "missed", "skipped_overlap", "cancelled"];
    for round in 0..3 {
        let before = succeeded(&env);
        let mut child = serve(&env);
        crate::harness::wait_until(Duration::from_secs(60), "a cron run", || succeeded(&env) > before);
        let delay = Duration::from_millis(rng.below(1000));
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        check_store_allowing(&env, "tick", &statuses);
        let down = Duration::from_millis(500 + rng.below(1500));
        eprintln!("round {round}: killed {delay:?} after a run, down for {down:?}");
        std::thread::sleep(down);
    }
    let before = succeeded(&env);
    let mut child = serve(&env);
    crate::harness::wait_until(Duration::from_secs(60), "a cron run after the restarts", || succeeded(&env) > before + 1);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let _ = child.wait();
    check_store_allowing(&env, "tick", &statuses);

    let mut times = Vec::new();
    let mut without_receipt = 0;
    for dir in env.run_dirs("tick") {
        if !dir.join("run_receipt.json").exists() {
            without_receipt += 1;
            continue;
        }
        let r = receipt(&dir);
        let at = r["trigger"]["scheduled_for"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {}", dir.display(), r["trigger"]));
        let first = chrono::DateTime::parse_from_rfc3339(at).expect("rfc3339").timestamp();
        // A collapsed `missed` record stands for every second up to `missed_through`.
        let last = r["payload"]["missed_through"]
            .as_str()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("rfc3339").timestamp())
            .unwrap_or(first);
        times.extend(first..=last);
    }
    let n = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), n, "a scheduled time has two records: {times:?}");
    let gaps: i64 = times.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert!(
        gaps <= without_receipt,
        "{gaps} scheduled second(s) have no record (only {without_receipt} run(s) died before their first receipt): {times:?}"
    );
    eprintln!(
        "{} scheduled times, all recorded once; {without_receipt} killed before their first receipt",
        times.len()
    );
}
