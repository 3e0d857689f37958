//! Sandbox benchmark (issue 2): for every built-in runnable, cold compile
//! vs cached load from the on-disk compile cache; instantiate + run latency
//! of `echo.v1`; and batches of runs, sequential and on all cores.
//!
//! A plain program that prints markdown tables:
//! `cargo bench -p lily --profile dev --bench sandbox`
//! (`just bench` runs every benchmark). Figures go to docs/performance.md.

mod common;
use common::*;
use lily::sandbox::{BUILTIN_IDS, Loaded, Sandbox, SandboxOptions, StepRequest, builtin_bytes};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cold compiles per component (each is hundreds of milliseconds).
const COMPILE_REPS: usize = 3;
/// Cached loads per component, each on a fresh `Sandbox`.
const LOAD_REPS: usize = 15;
/// Timed sequential echo runs for the latency percentiles.
const LATENCY_RUNS: usize = 2_000;
const WARMUP_RUNS: usize = 100;
/// Batch sizes, and how often each batch is repeated (median reported).
const BATCHES: &[(usize, usize)] = &[(1, 200), (10, 50), (100, 10), (1_000, 10)];

/// Set in the child run that repeats the measurements with the on-demand
/// allocator (`LILY_SANDBOX_POOLING=0`).
const CHILD_ENV: &str = "LILY_BENCH_ON_DEMAND_CHILD";

fn main() {
    let child = std::env::var_os(CHILD_ENV).is_some();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if !child {
        println!("# sandbox benchmark (issue 2)\n");
        print_machine(cores);
    }
    let load_start = loadavg();

    let tmp = tempfile::tempdir().expect("temp dir");
    let cache_dir = tmp.path().join("cache");

    // Engine + linker + epoch ticker: paid once per process.
    let mut setup = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = Sandbox::new(SandboxOptions::default()).expect("sandbox");
        setup.push(t.elapsed());
        drop(s);
    }
    setup.sort();
    println!("Sandbox::new (engine + linker + epoch thread), median of 5: {}\n", fmt(setup[2]));

    compile_table(&rt, &cache_dir);
    let (sandbox, echo) = rt.block_on(async {
        let sandbox = Arc::new(
            Sandbox::new(SandboxOptions {
                cache_dir: Some(cache_dir.clone()),
            })
            .expect("sandbox"),
        );
        let echo = sandbox.load(builtin_bytes("echo.v1").expect("echo.v1 is built in")).await.expect("load echo");
        (sandbox, echo)
    });
    latency_table(&rt, &sandbox, &echo);
    batch_table(&rt, &sandbox, &echo, cores);

    println!("peak RSS (VmHWM) of this process: {}", proc_status("VmHWM").unwrap_or_else(|| "n/a".into()));
    println!("load average: start {load_start}, end {}", loadavg());
    if !child {
        // The same measurements with the on-demand allocator, in a fresh
        // process (the allocator is chosen when the engine is built).
        println!("\n# The same with the on-demand allocator (`LILY_SANDBOX_POOLING=0`), for comparison\n");
        let exe = std::env::current_exe().expect("current exe");
        let out = std::process::Command::new(exe)
            .env("LILY_SANDBOX_POOLING", "0")
            .env(CHILD_ENV, "1")
            .output()
            .expect("run the on-demand child");
        assert!(out.status.success(), "on-demand child failed: {}", String::from_utf8_lossy(&out.stderr));
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Compile vs cached load, per built-in.
fn compile_table(rt: &tokio::runtime::Runtime, cache_dir: &Path) {
    // Fill the on-disk cache with one Sandbox, then time loads on fresh ones.
    rt.block_on(async {
        let filler = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache_dir.to_path_buf()),
        })
        .expect("sandbox");
        for (id, _) in BUILTIN_IDS {
            filler.load(builtin_bytes(id).expect("built-in bytes")).await.expect("load built-in");
        }
    });
    println!("## Compile vs cached load (per component)\n");
    println!(
        "cold = `Sandbox::compile_uncached` (Cranelift), median of {COMPILE_REPS}; cached = `Sandbox::load` on a fresh `Sandbox` whose on-disk cache is warm, \
         median of {LOAD_REPS} (min in brackets). The breakdown columns time the pieces of a cached load separately: sha256 of the component bytes \
         (the cache key), checking the entry (`stat` + its `.ok` record; the full sha256 of the entry, which a load did before, is shown \
         for comparison and is paid now only when the entry's identity changed), `Component::deserialize_file` (mmap, what a load does) and \
         `Component::deserialize` of the bytes read (the copy a load did before); `link+describe` is the rest of `load` \
         (instantiate_pre, a fresh instance calling `describe`, compiling the two JSON schemas).\n"
    );
    let headers = [
        "runnable",
        "wasm",
        "cwasm",
        "cold compile",
        "load incl. describe",
        "digest",
        "check entry",
        "(was: read+sha256)",
        "deserialize_file",
        "(was: read+deserialize)",
        "link+describe",
        "target ≤ 2 ms",
    ];
    let mut rows = Vec::new();
    for (id, _) in BUILTIN_IDS {
        let bytes = builtin_bytes(id).expect("built-in bytes");
        let compiler = Sandbox::new(SandboxOptions::default()).expect("sandbox");
        let mut cold: Vec<Duration> = (0..COMPILE_REPS)
            .map(|_| {
                let t = Instant::now();
                compiler.compile_uncached(bytes).expect("compile");
                t.elapsed()
            })
            .collect();
        cold.sort();
        let serialized = compiler.engine().expect("engine").precompile_component(bytes).expect("precompile");
        drop(compiler);

        let entry = cache_entry(cache_dir, &Sandbox::digest(bytes)).expect("the cache holds an entry for every built-in");
        let mut load = Vec::new();
        let mut digest = Vec::new();
        let mut read = Vec::new();
        let mut check = Vec::new();
        let mut deser = Vec::new();
        let mut deser_copy = Vec::new();
        for _ in 0..LOAD_REPS {
            let fresh = Sandbox::new(SandboxOptions {
                cache_dir: Some(cache_dir.to_path_buf()),
            })
            .expect("sandbox");
            let t = Instant::now();
            let loaded = rt.block_on(fresh.load(bytes)).expect("cached load");
            load.push(t.elapsed());
            assert_eq!(&loaded.descriptor.id, id);
            drop(loaded);
            drop(fresh);

            let t = Instant::now();
            std::hint::black_box(Sandbox::digest(bytes));
            digest.push(t.elapsed());

            let t = Instant::now();
            let data = std::fs::read(&entry).expect("read cache entry");
            std::hint::black_box(sha2::Sha256::digest(&data));
            read.push(t.elapsed());

            let t = Instant::now();
            std::hint::black_box(std::fs::symlink_metadata(&entry).expect("stat"));
            std::hint::black_box(std::fs::read_to_string(format!("{}.ok", entry.display())).expect("record"));
            check.push(t.elapsed());

            let engine_holder = Sandbox::new(SandboxOptions::default()).expect("sandbox");
            let t = Instant::now();
            deserialize_file(engine_holder.engine().expect("engine"), &entry);
            deser.push(t.elapsed());

            let t = Instant::now();
            let data = std::fs::read(&entry).expect("read cache entry");
            deserialize(engine_holder.engine().expect("engine"), &data);
            deser_copy.push(t.elapsed());
        }
        let _ = &serialized;
        for v in [&mut load, &mut digest, &mut read, &mut check, &mut deser, &mut deser_copy] {
            v.sort();
        }
        let med = |v: &[Duration]| v[v.len() / 2];
        let rest = med(&load).saturating_sub(med(&digest) + med(&check) + med(&deser));
        let entry_len = std::fs::metadata(&entry).map(|m| m.len()).unwrap_or(0);
        rows.push(vec![
            id.to_string(),
            kib(bytes.len() as u64),
            kib(entry_len),
            fmt(med(&cold)),
            format!("{} ({})", fmt(med(&load)), fmt(load[0])),
            fmt(med(&digest)),
            fmt(med(&check)),
            fmt(med(&read)),
            format!("{} ({})", fmt(med(&deser)), fmt(deser[0])),
            fmt(med(&deser_copy)),
            fmt(rest),
            met(med(&load) <= Duration::from_millis(2)),
        ]);
    }
    table(&headers, &rows);
}

/// `Component::deserialize_file` (mmap) of a cache entry.
#[allow(unsafe_code)]
fn deserialize_file(engine: &wasmtime::Engine, entry: &Path) {
    // SAFETY: the entry was serialized by an engine with this very
    // configuration in this process and is not modified while mapped.
    let c = unsafe { wasmtime::component::Component::deserialize_file(engine, entry) }.expect("deserialize_file");
    std::hint::black_box(c);
}

/// `Component::deserialize` alone, on a given engine.
#[allow(unsafe_code)]
fn deserialize(engine: &wasmtime::Engine, serialized: &[u8]) {
    // SAFETY: `serialized` is what `Engine::precompile_component` produced in
    // this very process, from an engine with the same configuration (every
    // `Sandbox` builds its engine from the same `Config`).
    let c = unsafe { wasmtime::component::Component::deserialize(engine, serialized) }.expect("deserialize");
    std::hint::black_box(c);
}

/// The cache entry of a component digest (`<hex>-<engine key>.cwasm2`).
fn cache_entry(dir: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(hex) && n.ends_with(".cwasm2"))
    })
}

fn echo_request() -> StepRequest {
    StepRequest {
        input: serde_json::json!({"message": "hello from the sandbox bench", "n": 42, "tags": ["a", "b"]}),
        ..Default::default()
    }
}

/// Instantiate + run of `echo.v1`, one run at a time.
fn latency_table(rt: &tokio::runtime::Runtime, sandbox: &Sandbox, echo: &Loaded) {
    let samples = rt.block_on(async {
        for _ in 0..WARMUP_RUNS {
            let r = sandbox.run(echo, echo_request()).await;
            assert!(r.outcome.is_ok(), "echo failed: {:?}", r.outcome.err());
        }
        let mut v = Vec::with_capacity(LATENCY_RUNS);
        for _ in 0..LATENCY_RUNS {
            let req = echo_request();
            let t = Instant::now();
            let r = sandbox.run(echo, req).await;
            v.push(t.elapsed());
            assert!(r.outcome.is_ok(), "echo failed: {:?}", r.outcome.err());
        }
        v
    });
    let mut s = samples.clone();
    s.sort();
    let mean = s.iter().sum::<Duration>() / s.len() as u32;
    println!("\n## Instantiate + run `echo.v1` (`Sandbox::run`, in process)\n");
    println!(
        "{LATENCY_RUNS} sequential runs after {WARMUP_RUNS} warm-up runs; each is a fresh `Store` + WASI context + instance, the call, \
         input/output schema validation and the report.\n"
    );
    table(
        &["runs", "p50", "p90", "p99", "max", "mean", "target p50 ≤ 100 µs"],
        &[vec![
            LATENCY_RUNS.to_string(),
            fmt(pct(&s, 50.0)),
            fmt(pct(&s, 90.0)),
            fmt(pct(&s, 99.0)),
            fmt(s[s.len() - 1]),
            fmt(mean),
            met(pct(&s, 50.0) <= Duration::from_micros(100)),
        ]],
    );
}

/// Batches of `echo.v1` runs: sequential on one task vs one task per run on
/// a multi-thread runtime with a worker per core.
fn batch_table(rt: &tokio::runtime::Runtime, sandbox: &Arc<Sandbox>, echo: &Arc<Loaded>, cores: usize) {
    println!("\n## Batches of `echo.v1` runs: sequential vs all cores\n");
    println!(
        "sequential = one task awaiting each run in turn; parallel = one tokio task per run (`JoinSet`) on a multi-thread runtime with \
         {cores} workers. Wall = median over the repetitions; per run = wall / runs. `cores busy` = CPU time of all threads of this \
         process / wall time over the parallel batches of 1,000 runs (at most {cores}; less means the other cores were busy elsewhere; \
         tokio workers that spin while looking for work count as busy; ±5 %: a running thread's CPU time is only updated at ticks).\n"
    );
    let mut rows = Vec::new();
    for &(n, reps) in BATCHES {
        let mut seq = Vec::new();
        let mut par = Vec::new();
        let (mut par_cpu, mut par_wall) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..reps {
            let t = Instant::now();
            rt.block_on(async {
                for _ in 0..n {
                    let r = sandbox.run(echo, echo_request()).await;
                    assert!(r.outcome.is_ok());
                }
            });
            seq.push(t.elapsed());

            let cpu = process_cpu();
            let t = Instant::now();
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..n {
                    let sandbox = sandbox.clone();
                    let echo = echo.clone();
                    set.spawn(async move { sandbox.run(&echo, echo_request()).await.outcome.is_ok() });
                }
                while let Some(ok) = set.join_next().await {
                    assert!(ok.expect("task"), "echo failed");
                }
            });
            par.push(t.elapsed());
            par_wall += t.elapsed();
            par_cpu += process_cpu().saturating_sub(cpu);
        }
        seq.sort();
        par.sort();
        let (s, p) = (seq[seq.len() / 2], par[par.len() / 2]);
        rows.push(vec![
            n.to_string(),
            reps.to_string(),
            fmt(s),
            fmt(s / n as u32),
            fmt(p),
            fmt(p / n as u32),
            format!("{:.2}×", s.as_secs_f64() / p.as_secs_f64()),
            format!("{:.0}", n as f64 / p.as_secs_f64()),
            if n >= 1_000 {
                format!("{:.2}", par_cpu.as_secs_f64() / par_wall.as_secs_f64())
            } else {
                "n/a".into()
            },
        ]);
    }
    table(
        &[
            "runs",
            "reps",
            "sequential wall",
            "seq per run",
            "parallel wall",
            "par per run",
            "speed-up",
            "runs/s (parallel)",
            "cores busy",
        ],
        &rows,
    );
    println!();
}

// ---- helpers (each bench is its own crate, so they are repeated) ----

fn proc_status(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} MiB", kb as f64 / 1024.0))
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}
