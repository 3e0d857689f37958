//! Jobs benchmark (issue 3): whole-process wall time of `lily jobs run` for a
//! two-specialist council with a warm compile cache, and `lily jobs runs`
//! over 10,000 stored runs.
//!
//! A plain program that prints markdown tables:
//! `cargo bench -p lily --profile dev --bench jobs`
//! (`just bench` runs every benchmark). Cargo builds the `lily` binary of the
//! same profile for a benchmark target (`CARGO_BIN_EXE_lily`); set
//! `LILY_BIN` to time another build. Figures go to docs/performance.md.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Timed `lily jobs run` processes (after one warm-up run).
const JOB_RUNS: usize = 30;
/// Stored runs generated for the history listing.
const HISTORY: usize = 10_000;
const LIST_REPS_SMALL: usize = 20;
const LIST_REPS_ALL: usize = 10;

const JOB_SPEC: &str = r#"# Benchmark job: the two built-in specialists and the deterministic
# synthesizer, no workspace.
id: bench
title: Two-specialist council without a workspace (benchmark)
target:
  kind: blueprint
  id: council.v1
  version: "^1"
  input:
    topic: payments service readiness
    context:
      - A small web service that is about to go to production.
bindings:
  specialists: [security.v1, operations.v1]
  synthesizer: default.v1
  synth_strategy: deterministic
  max_findings: 8
trigger:
  type: manual
runtime:
  timeout_seconds: 60
  retry_max: 0
output:
  summary_format: markdown
"#;

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# jobs benchmark (issue 3)\n");
    print_machine(cores);
    let load_start = loadavg();
    let bin = lily_bin();
    println!("binary: {}\n", bin.display());

    let tmp = tempfile::tempdir().expect("temp dir");
    let root = setup_root(&bin, tmp.path());
    // The same job with its root on tmpfs, where fsync costs nothing: the
    // difference is the price of durable (fsynced) run files.
    let shm = Path::new("/dev/shm");
    let tmpfs = shm.is_dir().then(|| tempfile::tempdir_in(shm).expect("temp dir on /dev/shm"));
    let tmpfs_root = tmpfs.as_ref().map(|t| setup_root(&bin, t.path()));

    run_table(&bin, &root, tmpfs_root.as_deref());
    list_table(&bin, &root);
    println!("load average: start {load_start}, end {}", loadavg());
}

/// `lily init`, the job spec, and one warm-up run that fills the on-disk
/// compile cache (`.lily/cache/`).
fn setup_root(bin: &Path, dir: &Path) -> PathBuf {
    let root = dir.canonicalize().expect("canonical temp dir");
    lily_at(bin, &root, &["init"]).expect("lily init");
    std::fs::write(root.join(".lily/jobs/bench.job.yaml"), JOB_SPEC).expect("write job spec");
    let t = Instant::now();
    lily_at(bin, &root, &["jobs", "run", "bench"]).expect("warm-up run");
    let cached = std::fs::read_dir(root.join(".lily/cache")).map(|d| d.count()).unwrap_or(0);
    println!(
        "root {}: warm-up run (cold compile cache) {}; cache entries: {cached}",
        root.display(),
        fmt(t.elapsed())
    );
    root
}

fn time_runs(bin: &Path, root: &Path, args: &[&str]) -> Vec<Duration> {
    let mut v: Vec<Duration> = (0..JOB_RUNS)
        .map(|_| {
            let t = Instant::now();
            lily_at(bin, root, args).expect("lily");
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

/// `lily jobs run bench`, one process per run.
fn run_table(bin: &Path, root: &Path, tmpfs_root: Option<&Path>) {
    // The floor: a process that starts the runtime, parses arguments and exits.
    let floor = time_runs(bin, root, &["--version"]);
    let walls = time_runs(bin, root, &["jobs", "run", "bench"]);
    let tmpfs = tmpfs_root.map(|r| time_runs(bin, r, &["jobs", "run", "bench"]));
    println!("\n## `lily jobs run bench` (whole process, warm compile cache)\n");
    println!(
        "Two specialists (`security.v1`, `operations.v1`) + `default.v1`, no workspace; {JOB_RUNS} runs after one warm-up; stdout and stderr captured through pipes (not a terminal: no progress lines). \
         `lily --version` is the process floor (exec, dynamic loading, argument parsing, exit). The tmpfs row runs the same job with its \
         root on /dev/shm, where fsync is free: the gap to the disk row is the cost of durable run files.\n"
    );
    let row = |label: &str, v: &[Duration], target: bool| {
        vec![
            label.to_string(),
            v.len().to_string(),
            fmt(pct(v, 50.0)),
            fmt(pct(v, 90.0)),
            fmt(pct(v, 99.0)),
            fmt(v[v.len() - 1]),
            if target {
                met(pct(v, 50.0) <= Duration::from_millis(20))
            } else {
                String::new()
            },
        ]
    };
    let mut rows = vec![row("`lily jobs run bench` (root on disk)", &walls, true)];
    if let Some(t) = &tmpfs {
        rows.push(row("`lily jobs run bench` (root on tmpfs)", t, true));
    }
    rows.push(row("`lily --version`", &floor, false));
    table(&["command", "runs", "p50", "p90", "p99", "max", "target p50 ≤ 20 ms"], &rows);
    breakdown(root);
}

/// Where the time of the last run went, from its events (millisecond
/// timestamps) and its receipt.
fn breakdown(root: &Path) {
    let Some(last) = last_bench_run(root) else { return };
    let events: Vec<Value> = std::fs::read_to_string(last.join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ts = |kind: &str, first: bool| -> Option<chrono::DateTime<chrono::FixedOffset>> {
        let mut it = events.iter().filter(|e| e["type"] == kind);
        let e = if first { it.next() } else { it.next_back() }?;
        chrono::DateTime::parse_from_rfc3339(e["ts"].as_str()?).ok()
    };
    let ms = |a: Option<chrono::DateTime<chrono::FixedOffset>>, b: Option<chrono::DateTime<chrono::FixedOffset>>| match (a, b) {
        (Some(a), Some(b)) => format!("{} ms", (b - a).num_milliseconds()),
        _ => "n/a".into(),
    };
    let receipt: Value = serde_json::from_slice(&std::fs::read(last.join("run_receipt.json")).expect("receipt")).expect("receipt JSON");
    let steps: Vec<String> = receipt["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| format!("{} {} ms", s["node"].as_str().unwrap_or("?"), s["duration_ms"]))
                .collect()
        })
        .unwrap_or_default();
    let files = std::fs::read_dir(last).map(|d| d.count()).unwrap_or(0);
    println!(
        "\nlast run, from its events (ms resolution): job_started → first step_started {} (plan: policy, 3 cached loads); \
         first step_started → last step_finished {} (steps: {}); last step_finished → job_completed {}; \
         receipt started_at → ended_at {}. The run directory holds {files} files.\n",
        ms(ts("job_started", true), ts("step_started", true)),
        ms(ts("step_started", true), ts("step_finished", false)),
        steps.join(", "),
        ms(ts("step_finished", false), ts("job_completed", true)),
        ms(
            receipt["started_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()),
            receipt["ended_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()),
        ),
    );
}

/// `lily jobs runs` over generated history.
fn list_table(bin: &Path, root: &Path) {
    let t = Instant::now();
    generate_history(root);
    println!(
        "## `lily jobs runs hist` over {HISTORY} stored runs\n\n{HISTORY} run directories generated in {} from a real receipt, summary, \
         event log and spec snapshot of the runs above (run ids, times and statuses varied: 90 % succeeded, 8 % failed, 2 % denied). \
         Page cache warm (one untimed listing first).\n",
        fmt(t.elapsed())
    );
    let mut rows = Vec::new();
    for (label, args, reps, want) in [
        (
            "`lily jobs runs hist` (default `--limit 20`)",
            vec!["jobs", "runs", "hist"],
            LIST_REPS_SMALL,
            20,
        ),
        (
            "`lily jobs runs hist --limit 10000`",
            vec!["jobs", "runs", "hist", "--limit", "10000"],
            LIST_REPS_ALL,
            HISTORY,
        ),
        (
            "`lily jobs runs hist --limit 10000 --json`",
            vec!["jobs", "runs", "hist", "--limit", "10000", "--json"],
            LIST_REPS_ALL,
            HISTORY,
        ),
    ] {
        let out = lily_at(bin, root, &args).expect("list runs");
        let listed = if args.contains(&"--json") {
            serde_json::from_slice::<Vec<Value>>(&out).map(|v| v.len()).unwrap_or(0)
        } else {
            String::from_utf8_lossy(&out).lines().count().saturating_sub(1)
        };
        assert_eq!(listed, want, "{label} listed {listed} runs");
        let mut walls: Vec<Duration> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                lily_at(bin, root, &args).expect("list runs");
                t.elapsed()
            })
            .collect();
        walls.sort();
        rows.push(vec![
            label.to_string(),
            listed.to_string(),
            reps.to_string(),
            fmt(pct(&walls, 50.0)),
            fmt(pct(&walls, 90.0)),
            fmt(walls[walls.len() - 1]),
            met(pct(&walls, 50.0) <= Duration::from_millis(200)),
        ]);
    }
    table(&["command", "runs listed", "reps", "p50", "p90", "max", "target ≤ 200 ms"], &rows);
    in_process_listing(root);
}

/// The fields `lily jobs runs` shows; serde skips the rest of the receipt
/// without building values for it.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ReceiptHead {
    job_id: String,
    run_id: String,
    status: String,
    started_at: String,
    ended_at: Option<String>,
    trigger: TriggerHead,
    error: Option<ErrorHead>,
    replay_of: Option<String>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct TriggerHead {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ErrorHead {
    code: String,
}

/// Where the time of the 10,000-run listing goes, in this process (same
/// profile as the binary): directory scan, reading the receipts, parsing
/// them whole (what `list_runs` does) vs parsing only the listed fields.
fn in_process_listing(root: &Path) {
    let runs_dir = root.join(".lily/runs");
    let med = |f: &mut dyn FnMut() -> usize| -> (Duration, usize) {
        let mut v = Vec::new();
        let mut n = 0;
        for _ in 0..3 {
            let t = Instant::now();
            n = f();
            v.push(t.elapsed());
        }
        v.sort();
        (v[1], n)
    };
    let (scan, n_dirs) = med(&mut || lily::runs::run_dirs(&runs_dir, "hist").len());
    let dirs = lily::runs::run_dirs(&runs_dir, "hist");
    let (read, bytes) = med(&mut || {
        dirs.iter()
            .filter_map(|d| std::fs::read(d.join("run_receipt.json")).ok())
            .map(|b| b.len())
            .sum()
    });
    let (head, n_head) = med(&mut || {
        dirs.iter()
            .filter_map(|d| std::fs::read(d.join("run_receipt.json")).ok())
            .filter_map(|b| serde_json::from_slice::<ReceiptHead>(&b).ok())
            .count()
    });
    let (full, n_full) = med(&mut || lily::runs::list_runs(&runs_dir, "hist", HISTORY, None).len());
    assert_eq!((n_dirs, n_head, n_full), (HISTORY, HISTORY, HISTORY));
    println!(
        "\nIn process (median of 3, same profile), {HISTORY} runs, {:.1} MB of receipts: `run_dirs` (read_dir + stat + sort) {}; \
         reading every receipt {} (scan excluded, as below); reading + parsing only the listed fields {}; \
         `runs::list_runs` (reads + parses whole receipts into `Receipt`, checks the run lock of `running` ones) {}.\n",
        bytes as f64 / 1e6,
        fmt(scan),
        fmt(read),
        fmt(head),
        fmt(full),
    );
}

/// The newest run directory of job `bench` (run ids sort by start time).
fn last_bench_run(root: &Path) -> Option<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(root.join(".lily/runs/bench"))
        .expect("runs of bench")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    runs.pop()
}

/// `HISTORY` run directories of job `hist`, cloned from the last real run.
fn generate_history(root: &Path) {
    let src_dir = last_bench_run(root).expect("at least one real run");
    let receipt: Value = serde_json::from_slice(&std::fs::read(src_dir.join("run_receipt.json")).expect("receipt")).expect("receipt JSON");
    let extra: Vec<(String, Vec<u8>)> = std::fs::read_dir(&src_dir)
        .expect("run dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name != "run_receipt.json").then(|| Some((name, std::fs::read(e.path()).ok()?)))?
        })
        .collect();
    let old_id = receipt["run_id"].as_str().expect("run_id").to_string();
    let job_dir = root.join(".lily/runs/hist");
    let base = chrono::DateTime::parse_from_rfc3339("2025-01-06T08:00:00Z").expect("base time").to_utc();
    for i in 0..HISTORY {
        let started = base + chrono::Duration::seconds(i as i64 * 3_600);
        let run_id = format!("{}-{:08x}", started.format("%Y%m%dT%H%M%S%.3fZ"), (i as u32).wrapping_mul(2_654_435_761));
        let dir = job_dir.join(&run_id);
        std::fs::create_dir_all(&dir).expect("run dir");
        let mut r = receipt.clone();
        r["job_id"] = "hist".into();
        r["run_id"] = run_id.clone().into();
        r["started_at"] = started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into();
        r["ended_at"] = (started + chrono::Duration::milliseconds(40))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
        match i % 50 {
            0..=3 => {
                r["status"] = "failed".into();
                r["error"] = serde_json::json!({"code": "job_execution_failed", "message": "all 2 specialists failed", "cause": {"kind": "all_specialists_failed"}, "first_event_seq": 9});
            }
            4 => {
                r["status"] = "denied".into();
                r["error"] = serde_json::json!({"code": "job_policy_denied", "message": "parallel run cap reached", "cause": {}});
            }
            _ => {}
        }
        let mut bytes = serde_json::to_vec_pretty(&r).expect("receipt bytes");
        bytes.push(b'\n');
        std::fs::write(dir.join("run_receipt.json"), bytes).expect("write receipt");
        // What the executor does after a run's final receipt: append to the job's index.
        let typed: lily::runs::Receipt = serde_json::from_value(r.clone()).expect("typed receipt");
        lily::runs::append_index(&root.join(".lily/runs"), &typed).expect("index");
        for (name, data) in &extra {
            let data = if name == "events.jsonl" {
                String::from_utf8_lossy(data).replace(&old_id, &run_id).into_bytes()
            } else {
                data.clone()
            };
            std::fs::write(dir.join(name), data).expect("write run file");
        }
    }
    // Warm the page cache and check the listing once.
    lily_at(&lily_bin(), root, &["jobs", "runs", "hist", "--limit", "10000"]).expect("list runs");
}

// ---- helpers (each bench is its own crate, so they are repeated) ----
