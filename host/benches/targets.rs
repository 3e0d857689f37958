//! Issue 19's targets, every row of its table, each measured in this run and
//! printed next to its target:
//!
//! 1. `lily jobs run demo` (warm compile cache), whole process: p50, its
//!    ratio to `lily --version` timed interleaved in the same run, and the
//!    child's peak RSS (`wait4`'s `ru_maxrss`);
//! 2. a cached load of each built-in component, incl. its descriptor;
//! 3. `lily jobs run` of one `step.v1` job with 1 vs 1,000 specs in the jobs
//!    directory (interleaved);
//! 4. the scheduler's memory per loaded cron job at 10,000 jobs, and the
//!    cost of planning every newly loaded cron job once (what the executor
//!    launcher's `prepare` does to report "cannot run as it stands");
//! 5. `council.v1` with 1,000 specialists at `max_parallelism` 2;
//! 6. `lily jobs runs <id>` over 100,000 stored runs, default limit.
//!
//! `cargo bench -p lily --locked --profile dev --bench targets` (part of
//! `just bench`); `just bench-release` for the release profile the targets
//! are for. `LILY_BIN` times another `lily` binary; `LILY_BENCH_ROWS`
//! (comma-separated: `demo`, `loads`, `specs`, `sched`, `council`, `runs`)
//! runs only those rows. Figures go to docs/performance.md.

mod common;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use lily::blueprints::{ExecCtx, Graph, Node, Prepared, Role, Settings, council};
use lily::runs::{EventLog, EventSink};
use lily::sandbox::{BUILTIN_IDS, Grants, Limits, Loaded, Sandbox, SandboxOptions, builtin_bytes};
use lily::spec::cron::CronSchedule;
use lily::triggers::scheduler::{Fire, Launcher, PrepareJob, RunGuard, RunTracker, Scheduler, SchedulerOptions};
use lily::workspace::Root;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interleaved process pairs per comparison.
const PROCESS_RUNS: usize = 21;
const LOAD_REPS: usize = 15;
const FILLER_SPECS: usize = 999;
const CRON_JOBS: usize = 10_000;
const SPECIALISTS: usize = 1_000;
const COUNCIL_REPS: usize = 3;
const STORED_RUNS: usize = 100_000;

/// The system allocator, counting the bytes allocated and not yet freed (the
/// scheduler row's live-heap figure, which does not depend on how the
/// allocator returns freed memory to the system as VmRSS does).
struct LiveBytes;

static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to the system allocator unchanged; only a
// counter is updated besides.
unsafe impl std::alloc::GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` of this allocator with `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: LiveBytes = LiveBytes;

fn live_bytes() -> isize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `LILY_BENCH_ROWS` (unset: every row) selects `row`.
fn wanted(row: &str) -> bool {
    std::env::var("LILY_BENCH_ROWS").map(|v| v.split(',').any(|r| r.trim() == row)).unwrap_or(true)
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# issue 19 targets\n");
    print_machine(cores);
    let load_start = loadavg();
    let bin = lily_bin();
    println!("binary: {}\n", bin.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rows: Vec<Vec<String>> = Vec::new();

    let demo_root = init_root(&bin, &tmp.path().join("demo"));
    if wanted("demo") || wanted("runs") {
        lily_at(&bin, &demo_root, &["jobs", "run", "demo"]).expect("warm-up run of demo");
    }
    if wanted("demo") {
        rows.extend(demo_rows(&bin, &demo_root));
    }
    if wanted("loads") {
        rows.push(cached_loads(&rt, tmp.path()));
    }
    if wanted("specs") {
        rows.push(many_specs(&bin, tmp.path()));
    }
    if wanted("sched") {
        rows.extend(rt.block_on(scheduler_memory(tmp.path())));
    }
    if wanted("council") {
        rows.push(council_row(&rt, tmp.path()));
    }
    if wanted("runs") {
        rows.push(stored_runs(&bin, &demo_root, tmp.path()));
    }

    println!("## Targets of issue 19 (this run)\n");
    table(&["figure", "target", "measured", "status"], &rows);
    println!("\nload average: start {load_start}, end {}", loadavg());
}

/// `lily jobs run demo` alternated with `lily --version`: p50 and peak RSS.
fn demo_rows(bin: &Path, demo_root: &Path) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    // `--version` and the demo run alternate, so load moves both alike.
    let (mut v, mut v_rss, mut d, mut d_rss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PROCESS_RUNS {
        let (t, rss) = timed_process(bin, demo_root, &["--version"]);
        v.push(t);
        v_rss.push(rss);
        let (t, rss) = timed_process(bin, demo_root, &["jobs", "run", "demo"]);
        d.push(t);
        d_rss.push(rss);
    }
    for s in [&mut v, &mut d] {
        s.sort();
    }
    d_rss.sort();
    v_rss.sort();
    let version_rss = v_rss[v_rss.len() / 2];
    let (v50, d50) = (pct(&v, 50.0), pct(&d, 50.0));
    rows.push(vec![
        "`lily jobs run demo`, warm cache, whole process p50".into(),
        "≤ 10 ms".into(),
        format!(
            "{} (p90 {}); `lily --version` {} in the same run: ratio {:.1}×",
            fmt(d50),
            fmt(pct(&d, 90.0)),
            fmt(v50),
            d50.as_secs_f64() / v50.as_secs_f64()
        ),
        met(d50 <= Duration::from_millis(10)),
    ]);
    let rss50 = d_rss[d_rss.len() / 2];
    rows.push(vec![
        "same, peak RSS (child's `ru_maxrss`)".into(),
        "≤ 20 MiB".into(),
        format!(
            "median {} (max {}); `lily --version` {}",
            mib(rss50),
            mib(d_rss[d_rss.len() - 1]),
            mib(version_rss)
        ),
        met(rss50 <= 20 * 1024),
    ]);

    rows
}

/// Cached load of every built-in on a fresh `Sandbox` whose on-disk cache is
/// warm (the in-memory map empty), incl. the descriptor.
fn cached_loads(rt: &tokio::runtime::Runtime, dir: &Path) -> Vec<String> {
    let cache_dir = dir.join("cache");
    let filler = Sandbox::new(SandboxOptions {
        cache_dir: Some(cache_dir.clone()),
    })
    .expect("sandbox");
    for (id, _) in BUILTIN_IDS {
        rt.block_on(filler.load(builtin_bytes(id).expect("built-in"))).expect("fill cache");
    }
    drop(filler);
    let mut parts = Vec::new();
    let mut worst = Duration::ZERO;
    for (id, _) in BUILTIN_IDS {
        let bytes = builtin_bytes(id).expect("built-in");
        let mut v: Vec<Duration> = (0..LOAD_REPS)
            .map(|_| {
                let fresh = Sandbox::new(SandboxOptions {
                    cache_dir: Some(cache_dir.clone()),
                })
                .expect("sandbox");
                let t = Instant::now();
                let loaded = rt.block_on(fresh.load(bytes)).expect("cached load");
                let e = t.elapsed();
                assert_eq!(&loaded.descriptor.id, id);
                e
            })
            .collect();
        v.sort();
        let m = pct(&v, 50.0);
        worst = worst.max(m);
        parts.push(format!("{id} {}", fmt(m)));
    }
    vec![
        "cached load of one built-in component, incl. its descriptor (median of 15 each)".into(),
        "≤ 0.3 ms".into(),
        parts.join(", "),
        met(worst <= Duration::from_micros(300)),
    ]
}

const ECHO_SPEC: &str = "id: echo-step\ntitle: Echo one input\ntarget:\n  kind: blueprint\n  id: step.v1\n  input:\n    message: hello\n\
bindings:\n  runnable: echo.v1\ntrigger:\n  type: manual\nruntime:\n  timeout_seconds: 10\noutput:\n  summary_format: json\n";

/// `lily jobs run echo-step` with the `init` specs + 1 vs + 1,000 more.
fn many_specs(bin: &Path, dir: &Path) -> Vec<String> {
    let one = init_root(bin, &dir.join("one-spec"));
    let many = init_root(bin, &dir.join("many-specs"));
    for root in [&one, &many] {
        std::fs::write(root.join(".lily/jobs/echo-step.job.yaml"), ECHO_SPEC).expect("spec");
    }
    for i in 0..FILLER_SPECS {
        let id = format!("filler-{i:04}");
        std::fs::write(
            many.join(format!(".lily/jobs/{id}.job.yaml")),
            ECHO_SPEC.replace("id: echo-step", &format!("id: {id}")),
        )
        .expect("filler spec");
    }
    let specs = |r: &Path| std::fs::read_dir(r.join(".lily/jobs")).map(|d| d.count()).unwrap_or(0);
    let (n1, n2) = (specs(&one), specs(&many));
    let args = ["jobs", "run", "echo-step"];
    lily_at(bin, &one, &args).expect("warm-up");
    lily_at(bin, &many, &args).expect("warm-up");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..PROCESS_RUNS {
        a.push(timed_process(bin, &one, &args).0);
        b.push(timed_process(bin, &many, &args).0);
    }
    a.sort();
    b.sort();
    let (a50, b50) = (pct(&a, 50.0), pct(&b, 50.0));
    let gap = b50.saturating_sub(a50);
    vec![
        format!("`lily jobs run` with 1,000 specs in the jobs dir ({n2} files vs {n1}), whole process p50"),
        "within 2 ms of the 1-spec figure".into(),
        format!(
            "{} vs {} ({}{:.2} ms, ratio {:.2}×)",
            fmt(b50),
            fmt(a50),
            if b50 >= a50 { "+" } else { "−" },
            (b50.as_secs_f64() - a50.as_secs_f64()).abs() * 1e3,
            b50.as_secs_f64() / a50.as_secs_f64()
        ),
        met(gap <= Duration::from_millis(2)),
    ]
}

/// Counts launches (a job whose first fire is > 5 min away never fires here).
#[derive(Default)]
struct Counting(std::sync::Mutex<usize>);

impl Launcher for Counting {
    fn launch(&self, _fire: Fire, _guard: RunGuard) {
        if let Ok(mut n) = self.0.lock() {
            *n += 1;
        }
    }
}

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Los_Angeles",
];

fn cron_spec(id: &str, cron: &str, tz: &str) -> String {
    format!(
        "id: {id}\ntitle: Benchmark job {id}\ntarget:\n  kind: blueprint\n  id: council.v1\n  version: \"^1\"\n  input:\n    topic: nightly review\n\
         bindings:\n  specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  synth_strategy: deterministic\n\
         trigger:\n  type: cron\n  cron: \"{cron}\"\n  timezone: {tz}\nruntime:\n  timeout_seconds: 60\noutput:\n  summary_format: markdown\n"
    )
}

/// A varied schedule whose first fire is at least `clear` away (as in the
/// scheduler benchmark).
fn schedule_for(i: usize, now: DateTime<Utc>, clear: TimeDelta) -> (String, &'static str) {
    let tz = ZONES[i % ZONES.len()];
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
    loop {
        let (m, h, d) = (x % 60, (x / 60) % 24, 1 + (x / 1440) % 28);
        let expr = match i % 5 {
            0 => format!("{m} {h} * * *"),
            1 => format!("{m} {h} * * 1-5"),
            2 => format!("{m} {h},{} * * *", (h + 12) % 24),
            3 => format!("{m} {h} {d} * *"),
            _ => format!("{m} {h} * * 0"),
        };
        let s = CronSchedule::parse(&expr, tz).expect("valid");
        if s.next_after(now).is_some_and(|t| t - now > clear) {
            return (expr, tz);
        }
        x += 7;
    }
}

fn vm_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// 10,000 cron jobs loaded by a `Scheduler`: VmRSS growth per job. Then the
/// plan of every one of them, as the executor launcher's `prepare` does
/// once per newly loaded job (`Lily::plan` with the current policy).
async fn scheduler_memory(dir: &Path) -> Vec<Vec<String>> {
    let root_dir = dir.join("sched");
    for d in [".lily/jobs", ".lily/runs", ".lily/state"] {
        std::fs::create_dir_all(root_dir.join(d)).expect("mkdir");
    }
    let root_dir = root_dir.canonicalize().expect("canonical");
    let root = Root::at(root_dir, None).expect("root");
    let now = Utc::now();
    for i in 0..CRON_JOBS {
        let (expr, tz) = schedule_for(i, now, TimeDelta::minutes(5));
        let id = format!("job-{i:05}");
        std::fs::write(root.jobs_dir.join(format!("{id}.job.yaml")), cron_spec(&id, &expr, tz)).expect("write");
    }
    let before = vm_rss_kib();
    let heap_before = live_bytes();
    let t = Instant::now();
    let sched = Scheduler::new(
        root.clone(),
        SchedulerOptions::default(),
        Arc::new(Counting::default()),
        RunTracker::new(),
        Utc::now(),
    )
    .expect("scheduler");
    let load = t.elapsed();
    let after = vm_rss_kib();
    let heap = (live_bytes() - heap_before) as f64 / CRON_JOBS as f64 / 1024.0;
    assert_eq!(sched.loaded(), CRON_JOBS);
    let per_job = (after - before) as f64 / CRON_JOBS as f64;
    let mem_row = vec![
        "scheduler memory per loaded cron job (10,000 jobs: VmRSS growth; live heap)".into(),
        "≤ 2 KiB".into(),
        format!(
            "{per_job:.1} KiB ({:.1} → {:.1} MiB); live heap {heap:.2} KiB per job; load {}",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            fmt(load)
        ),
        met(per_job <= 2.0 && heap <= 2.0),
    ];
    drop(sched);

    // The launcher's check of every newly loaded job (one pool thread):
    // `refusals` where the library has it, else (before it) every job planned.
    let lily = lily::jobs::Lily::open(root.clone()).expect("open");
    let jobs: Vec<_> = (0..CRON_JOBS)
        .map(|i| {
            let id = format!("job-{i:05}");
            let path = root.jobs_dir.join(format!("{id}.job.yaml"));
            let spec = lily::spec::load_file(&path).spec.expect("valid spec");
            PrepareJob {
                job_id: id,
                path,
                plan_key: lily::jobs::plan_key(&spec),
            }
        })
        .collect();
    // One plan first, so that neither figure includes compiling the three
    // components into the fresh root's cache.
    let policy = lily.policy().expect("policy");
    let first = lily::spec::load_file(&jobs[0].path).spec.expect("valid spec");
    lily.plan(&first, &policy).await.map_err(|e| e.error.message).expect("plans");
    // What the launcher did before: every job planned.
    let t = Instant::now();
    for j in &jobs {
        let spec = lily::spec::load_file(&j.path).spec.expect("valid spec");
        let _ = lily.plan(&spec, &policy).await;
    }
    let plan_each = t.elapsed();
    let t = Instant::now();
    let refused = lily::triggers::scheduler::refusals(&lily, jobs).await.len();
    let plan_all = t.elapsed();
    let plan_row = vec![
        format!("(not in the issue) planning every newly loaded cron job once, 10,000 jobs ({refused} refused)"),
        "bounded".into(),
        format!(
            "{} in all, {} per job, on one pool thread (`refusals`: each distinct plan key once); planning every job: {} ({} per job)",
            fmt(plan_all),
            fmt(plan_all / CRON_JOBS as u32),
            fmt(plan_each),
            fmt(plan_each / CRON_JOBS as u32)
        ),
        String::new(),
    ];
    vec![mem_row, plan_row]
}

/// `council.v1` with 1,000 copies of `security.v1` (graph built by hand, as
/// in the council benchmark) and `default.v1`, `max_parallelism` 2.
fn council_row(rt: &tokio::runtime::Runtime, dir: &Path) -> Vec<String> {
    let sandbox = Arc::new(
        Sandbox::new(SandboxOptions {
            cache_dir: Some(dir.join("cache")),
        })
        .expect("sandbox"),
    );
    let (security, synth) = rt.block_on(async {
        let s = sandbox.load(builtin_bytes("security.v1").expect("built-in")).await.expect("load");
        let d = sandbox.load(builtin_bytes("default.v1").expect("built-in")).await.expect("load");
        (s, d)
    });
    let prepared = Arc::new(prepared(SPECIALISTS, &security, &synth));
    let input = json!({"topic": "payments service readiness", "context": ["benchmark council"]});
    let mut walls: Vec<Duration> = (0..COUNCIL_REPS)
        .map(|_| {
            let run_dir = tempfile::tempdir_in(dir).expect("run dir");
            let events = Arc::new(EventLog::create(run_dir.path(), "bench-run", None).expect("event log"));
            let ctx = Arc::new(ExecCtx::new(
                sandbox.clone(),
                events as Arc<dyn EventSink>,
                Limits::default(),
                2,
                Instant::now() + Duration::from_secs(600),
            ));
            let t = Instant::now();
            let out = rt
                .block_on(council::execute(&prepared, &input, &ctx))
                .unwrap_or_else(|f| panic!("council failed: {} ({})", f.message, f.cause));
            let wall = t.elapsed();
            let ok = out.payload["participating_specialists"].as_array().map(Vec::len).unwrap_or(0);
            assert_eq!(ok, SPECIALISTS, "every specialist took part");
            wall
        })
        .collect();
    walls.sort();
    let m = walls[walls.len() / 2];
    vec![
        "`council.v1` with 1,000 specialists, `max_parallelism` 2 (in process)".into(),
        "≤ 100 ms".into(),
        format!("median of {COUNCIL_REPS}: {} (min {})", fmt(m), fmt(walls[0])),
        met(m <= Duration::from_millis(100)),
    ]
}

fn prepared(n: usize, specialist: &Arc<Loaded>, synth: &Arc<Loaded>) -> Prepared {
    let synth_id = "reduce:default.v1".to_string();
    let mut nodes = Vec::with_capacity(n + 1);
    let mut edges = Vec::with_capacity(n);
    let mut loaded = BTreeMap::new();
    let mut grants = BTreeMap::new();
    for i in 0..n {
        let id = format!("map:security.v1#{i}");
        nodes.push(Node {
            id: id.clone(),
            runnable: "security.v1".into(),
            role: Role::Specialist,
            dirs: vec![],
            env: vec![],
        });
        edges.push((id.clone(), synth_id.clone()));
        loaded.insert(id.clone(), specialist.clone());
        grants.insert(id, Grants::default());
    }
    nodes.push(Node {
        id: synth_id.clone(),
        runnable: "default.v1".into(),
        role: Role::Synthesizer,
        dirs: vec![],
        env: vec![],
    });
    loaded.insert(synth_id.clone(), synth.clone());
    grants.insert(synth_id, Grants::default());
    let bindings = json!({"specialists": ["security.v1", "operations.v1"], "synthesizer": "default.v1", "synth_strategy": "deterministic", "max_findings": 8});
    Prepared {
        graph: Graph {
            blueprint: council::ID.into(),
            settings: Settings::Council(council::parse_bindings(&bindings).expect("bindings")),
            nodes,
            edges,
        },
        bindings,
        loaded,
        grants,
    }
}

/// 100,000 finished runs of job `hist`: a run directory with its receipt
/// (compact JSON, cloned from the demo's last real run) and its line in
/// `runs/hist/index.jsonl`, as the executor writes them. A default listing
/// reads the index and the directory names, and a receipt only for a run
/// missing from the index.
fn stored_runs(bin: &Path, demo_root: &Path, dir: &Path) -> Vec<String> {
    let root = init_root(bin, &dir.join("history"));
    let runs_dir = root.join(".lily/runs");
    let src = std::fs::read_dir(demo_root.join(".lily/runs/demo"))
        .expect("demo runs")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("run_receipt.json").is_file())
        .max()
        .expect("a demo run");
    let receipt: Value = serde_json::from_slice(&std::fs::read(src.join("run_receipt.json")).expect("receipt")).expect("receipt JSON");
    let t = Instant::now();
    let base = chrono::DateTime::parse_from_rfc3339("2020-01-06T08:00:00Z").expect("base").to_utc();
    for i in 0..STORED_RUNS {
        let started = base + chrono::Duration::seconds(i as i64 * 600);
        let run_id = format!("{}-{:08x}", started.format("%Y%m%dT%H%M%S%.3fZ"), (i as u32).wrapping_mul(2_654_435_761));
        let rdir = runs_dir.join("hist").join(&run_id);
        std::fs::create_dir_all(&rdir).expect("run dir");
        let mut r = receipt.clone();
        r["job_id"] = "hist".into();
        r["run_id"] = run_id.into();
        r["started_at"] = started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into();
        r["ended_at"] = (started + chrono::Duration::milliseconds(40))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
        if i % 10 == 0 {
            r["status"] = "failed".into();
            r["error"] = json!({"code": "job_execution_failed", "message": "all 2 specialists failed", "cause": {"kind": "all_specialists_failed"}, "first_event_seq": 9});
        }
        std::fs::write(rdir.join("run_receipt.json"), serde_json::to_vec(&r).expect("bytes")).expect("write receipt");
        let typed: lily::runs::Receipt = serde_json::from_value(r).expect("typed receipt");
        lily::runs::append_index(&runs_dir, &typed).expect("index");
    }
    let generated = t.elapsed();
    let args = ["jobs", "runs", "hist"];
    lily_at(bin, &root, &args).expect("warm the page cache");
    let (mut l, mut v) = (Vec::new(), Vec::new());
    for _ in 0..PROCESS_RUNS {
        l.push(timed_process(bin, &root, &args).0);
        v.push(timed_process(bin, &root, &["--version"]).0);
    }
    l.sort();
    v.sort();
    let (l50, v50) = (pct(&l, 50.0), pct(&v, 50.0));
    vec![
        "`lily jobs runs <id>` over 100,000 stored runs, default limit, whole process p50".into(),
        "≤ 50 ms".into(),
        format!(
            "{} (p90 {}); `lily --version` {} in the same run: ratio {:.1}× (store generated in {})",
            fmt(l50),
            fmt(pct(&l, 90.0)),
            fmt(v50),
            l50.as_secs_f64() / v50.as_secs_f64(),
            fmt(generated)
        ),
        met(l50 <= Duration::from_millis(50)),
    ]
}
