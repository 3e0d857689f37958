//! JavaScript runnable benchmark (issue 18): the example specialist
//! `pins.v1` (guests/js/pins, componentize-js 0.22.0): cold compile,
//! cached load from the on-disk compile cache, instantiate + run.
//!
//! The component is built by the tests (`tests/e2e/js.rs` writes
//! `$CARGO_TARGET_TMPDIR/js-guests/pins.wasm`) or named by
//! `LILY_BENCH_JS_COMPONENT`; without it the bench says so and exits 0.
//! `cargo bench -p lily --profile dev --bench js`. Figures go to docs/performance.md.

mod common;
use common::*;
use lily::sandbox::{Sandbox, SandboxOptions, StepRequest};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LOAD_REPS: usize = 9;
const RUNS: usize = 200;
const WARMUP: usize = 10;

fn main() {
    let path = std::env::var_os("LILY_BENCH_JS_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("js-guests/pins.wasm"));
    let Ok(bytes) = std::fs::read(&path) else {
        println!(
            "SKIPPED js bench: no component at {} (run `cargo test -p lily --test e2e -- js::` with the JS toolchain, or set LILY_BENCH_JS_COMPONENT)",
            path.display()
        );
        return;
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# JavaScript runnable benchmark (issue 18)\n");
    print_machine(cores);
    println!("component: {} ({:.1} MB)\n", path.display(), bytes.len() as f64 / 1e6);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");

    let compiler = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let t = Instant::now();
    compiler.compile_uncached(&bytes).expect("compile");
    let cold = t.elapsed();
    let cwasm = compiler.engine().precompile_component(&bytes).expect("precompile").len();
    drop(compiler);

    // Fill the cache, then time loads on fresh sandboxes.
    rt.block_on(async {
        let s = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache.clone()),
        })
        .expect("sandbox");
        s.load(&bytes).await.expect("load");
    });
    let mut loads: Vec<Duration> = (0..LOAD_REPS)
        .map(|_| {
            rt.block_on(async {
                let s = Sandbox::new(SandboxOptions {
                    cache_dir: Some(cache.clone()),
                })
                .expect("sandbox");
                let t = Instant::now();
                s.load(&bytes).await.expect("load");
                t.elapsed()
            })
        })
        .collect();
    loads.sort();

    let runs = rt.block_on(async {
        let s = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache.clone()),
        })
        .expect("sandbox");
        let loaded = s.load(&bytes).await.expect("load");
        let req = || StepRequest {
            input: serde_json::json!({"topic": "bench"}),
            ..Default::default()
        };
        for _ in 0..WARMUP {
            let r = s.run(&loaded, req()).await;
            assert!(r.outcome.is_ok(), "pins.v1 failed: {:?}", r.outcome.err());
        }
        let mut v = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = s.run(&loaded, req()).await;
            v.push(t.elapsed());
            assert!(r.outcome.is_ok(), "pins.v1 failed: {:?}", r.outcome.err());
        }
        v.sort();
        v
    });
    table(
        &[
            "component",
            "wasm",
            "cwasm",
            "cold compile",
            "cached load p50 (min)",
            "instantiate + run p50",
            "p90",
            "max",
        ],
        &[vec![
            "pins.v1 (JS)".into(),
            format!("{:.1} MB", bytes.len() as f64 / 1e6),
            format!("{:.1} MB", cwasm as f64 / 1e6),
            fmt(cold),
            format!("{} ({})", fmt(loads[LOAD_REPS / 2]), fmt(loads[0])),
            fmt(pct(&runs, 50.0)),
            fmt(pct(&runs, 90.0)),
            fmt(runs[runs.len() - 1]),
        ]],
    );
    println!("\npeak RSS (VmHWM): {}; load average: {}", vmhwm(), loadavg());
}

fn vmhwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l["VmHWM:".len()..].trim().to_string()))
        .unwrap_or_else(|| "n/a".into())
}
