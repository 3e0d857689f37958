//! Python runnable benchmark (issue 18): for the Python example specialist
//! `licence.v1` (componentize-py 0.25.1, ~18 MB): cold compile, cached load
//! from the on-disk compile cache (`Component::deserialize_file`, mmap), and
//! instantiate + run latency.
//!
//! The component is built by the e2e tests (tests/e2e/python.rs) into the
//! target's tmp dir; set `LILY_PY_COMPONENT` to use another one. Without it
//! the bench says SKIPPED and exits 0.
//! `cargo bench -p lily --locked --profile dev --bench python`.

mod common;
use common::*;
use lily::sandbox::{Sandbox, SandboxOptions, StepRequest};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LOAD_REPS: usize = 9;
const RUNS: usize = 30;

fn main() {
    let path = std::env::var_os("LILY_PY_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-components/examples_python_licence/build/licence.wasm"));
    let Ok(bytes) = std::fs::read(&path) else {
        println!(
            "SKIPPED the Python benchmark: {} is not built (run `cargo test -p lily --locked --test e2e -- python` with componentize-py 0.25.1, or set LILY_PY_COMPONENT)",
            path.display()
        );
        return;
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# Python runnable benchmark (issue 18)\n");
    print_machine(cores);
    let load_start = loadavg();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache_dir = tmp.path().join("cache");

    let compiler = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let t = Instant::now();
    compiler.compile_uncached(&bytes).expect("compile");
    let cold = t.elapsed();
    drop(compiler);

    // Fill the cache, then time loads on fresh sandboxes.
    rt.block_on(async {
        let filler = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache_dir.clone()),
        })
        .expect("sandbox");
        filler.load(&bytes).await.expect("load");
    });
    let mut loads = Vec::new();
    for _ in 0..LOAD_REPS {
        let fresh = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache_dir.clone()),
        })
        .expect("sandbox");
        let t = Instant::now();
        let l = rt.block_on(fresh.load(&bytes)).expect("cached load");
        loads.push(t.elapsed());
        assert_eq!(l.descriptor.id, "licence.v1");
    }
    loads.sort();

    let sandbox = Sandbox::new(SandboxOptions {
        cache_dir: Some(cache_dir.clone()),
    })
    .expect("sandbox");
    let loaded = rt.block_on(sandbox.load(&bytes)).expect("load");
    let req = || StepRequest {
        input: serde_json::json!({"topic": "licensing", "context": []}),
        ..Default::default()
    };
    let mut runs: Vec<Duration> = rt.block_on(async {
        let r = sandbox.run(&loaded, req()).await;
        assert!(r.outcome.is_ok(), "licence.v1 failed: {:?}", r.outcome.err());
        let mut v = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = sandbox.run(&loaded, req()).await;
            v.push(t.elapsed());
            assert!(r.outcome.is_ok(), "licence.v1 failed: {:?}", r.outcome.err());
        }
        v
    });
    runs.sort();
    println!("component: {} ({})\n", path.display(), kib(bytes.len() as u64));
    table(
        &["cold compile", "cached load p50 (min)", "target ≤ 20 ms", "instantiate + run p50", "p90", "max"],
        &[vec![
            fmt(cold),
            format!("{} ({})", fmt(loads[loads.len() / 2]), fmt(loads[0])),
            met(loads[loads.len() / 2] <= Duration::from_millis(20)),
            fmt(pct(&runs, 50.0)),
            fmt(pct(&runs, 90.0)),
            fmt(runs[runs.len() - 1]),
        ]],
    );
    println!(
        "\ncached load = `Sandbox::load` on a fresh `Sandbox` with a warm on-disk cache, median of {LOAD_REPS}; run = `Sandbox::run` without a workspace, {RUNS} runs after one warm-up."
    );
    println!("load average: start {load_start}, end {}", loadavg());
}

fn kib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}
