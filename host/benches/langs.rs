//! Python and JavaScript runnables (issue 18), in process: for the Python
//! example `licence.v1` (componentize-py 0.25.1, ~18 MB) and the JS example
//! `pins.v1` (componentize-js 0.22.0, ~14 MB): cold compile, cached load on a
//! fresh `Sandbox` from a warm on-disk compile cache
//! (`Component::deserialize_file`, mmap; target ≤ 20 ms for the Python
//! component), and instantiate + run p50.
//!
//! The components are the ones the e2e tests build
//! (`$CARGO_TARGET_TMPDIR/python-components/…/licence.wasm`,
//! `$CARGO_TARGET_TMPDIR/js-guests/pins.wasm`), or `LILY_BENCH_PY_COMPONENT`
//! / `LILY_BENCH_JS_COMPONENT`; a missing one is a SKIPPED row.
//! `cargo bench -p lily --locked --profile dev --bench langs`. Whole-process
//! councils mixing the languages are in `benches/polyglot.rs`.

mod common;
use common::*;
use lily::sandbox::{Sandbox, SandboxOptions, StepRequest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LOAD_REPS: usize = 9;
const RUNS: usize = 50;
const WARMUP: usize = 5;

struct Guest {
    name: &'static str,
    env: &'static str,
    default: &'static str,
    how: &'static str,
}

const GUESTS: [Guest; 2] = [
    Guest {
        name: "licence.v1 (Python)",
        env: "LILY_BENCH_PY_COMPONENT",
        default: "python-components/examples_python_licence/build/licence.wasm",
        how: "`cargo test -p lily --test e2e -- python::` with componentize-py 0.25.1",
    },
    Guest {
        name: "pins.v1 (JS)",
        env: "LILY_BENCH_JS_COMPONENT",
        default: "js-guests/pins.wasm",
        how: "`cargo test -p lily --test e2e -- js::` with the JS toolchain",
    },
];

fn sandbox(cache: &Path) -> Sandbox {
    Sandbox::new(SandboxOptions {
        cache_dir: Some(cache.to_path_buf()),
    })
    .expect("sandbox")
}

/// One table row for the component `bytes`.
fn measure(rt: &tokio::runtime::Runtime, name: &str, bytes: &[u8], cache: &Path) -> Vec<String> {
    let compiler = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let t = Instant::now();
    compiler.compile_uncached(bytes).expect("compile");
    let cold = t.elapsed();
    let cwasm = compiler.engine().expect("engine").precompile_component(bytes).expect("precompile").len();
    drop(compiler);
    // Fill the cache, then time loads on fresh sandboxes (nothing in memory).
    rt.block_on(sandbox(cache).load(bytes)).expect("load");
    let mut loads: Vec<Duration> = (0..LOAD_REPS)
        .map(|_| {
            let s = sandbox(cache);
            let t = Instant::now();
            rt.block_on(s.load(bytes)).expect("load");
            t.elapsed()
        })
        .collect();
    loads.sort();
    let runs = rt.block_on(async {
        let s = sandbox(cache);
        let loaded = s.load(bytes).await.expect("load");
        let req = || StepRequest {
            input: serde_json::json!({"topic": "bench"}),
            ..Default::default()
        };
        let mut v = Vec::with_capacity(RUNS);
        for i in 0..WARMUP + RUNS {
            let t = Instant::now();
            let r = s.run(&loaded, req()).await;
            assert!(r.outcome.is_ok(), "{name} failed: {:?}", r.outcome.err());
            if i >= WARMUP {
                v.push(t.elapsed());
            }
        }
        v.sort();
        v
    });
    vec![
        name.to_string(),
        format!("{:.1} MB", bytes.len() as f64 / 1e6),
        format!("{:.1} MB", cwasm as f64 / 1e6),
        fmt(cold),
        format!("{} ({})", fmt(loads[LOAD_REPS / 2]), fmt(loads[0])),
        fmt(pct(&runs, 50.0)),
        fmt(pct(&runs, 90.0)),
        fmt(runs[runs.len() - 1]),
    ]
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# Python and JavaScript runnables (issue 18)\n");
    print_machine(cores);
    let load_start = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    for (i, g) in GUESTS.iter().enumerate() {
        let path = std::env::var_os(g.env)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(g.default));
        match std::fs::read(&path) {
            Ok(bytes) => rows.push(measure(&rt, g.name, &bytes, &tmp.path().join(format!("cache-{i}")))),
            Err(_) => println!("SKIPPED {}: no component at {} (run {}, or set {})", g.name, path.display(), g.how, g.env),
        }
    }
    if rows.is_empty() {
        return;
    }
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
        &rows,
    );
    println!("\ncached load: median of {LOAD_REPS} loads on fresh sandboxes; run: {RUNS} runs after {WARMUP} warm-ups, no workspace");
    println!("load average: start {load_start}, end {}", loadavg());
}
