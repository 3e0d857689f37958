//! Whole-process `lily jobs run` of a council with one Rust (`security.v1`),
//! one Python (`licence.v1`, componentize-py) and one JavaScript (`pins.v1`,
//! componentize-js) specialist and the Rust synthesizer `default.v1`, over
//! the example workspace, warm compile cache (issue 18's benchmark; target
//! ≤ 100 ms warm with the release binary).
//!
//! The Python and JS components are the ones the e2e tests build
//! (`$CARGO_TARGET_TMPDIR/python-components/…/licence.wasm`,
//! `$CARGO_TARGET_TMPDIR/js-guests/pins.wasm`; or `LILY_BENCH_PY_COMPONENT`,
//! `LILY_BENCH_JS_COMPONENT`); without them the bench says SKIPPED and exits 0.
//! Each council run alternates with `lily --version` and an all-Rust council
//! (`security.v1` + `operations.v1`) in the same loop, so machine load moves
//! all three alike and the ratios stay comparable.
//!
//! `cargo bench -p lily --locked --bench polyglot` (release, the profile of
//! the target) or `--profile dev`. Figures go to docs/performance.md.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNS: usize = 15;

fn component(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(default))
}

fn council(id: &str, specialists: &[&str]) -> String {
    format!(
        "id: {id}\ntitle: Council {id}\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {{ topic: release readiness }}\n\
         bindings:\n  specialists: [{}]\n  synthesizer: default.v1\n  synth_strategy: deterministic\n  workspace: .lily/examples/workspace\n\
         trigger:\n  type: manual\nruntime: {{ timeout_seconds: 120 }}\noutput: {{}}\n",
        specialists.join(", ")
    )
}

fn install(bin: &Path, root: &Path, wasm: &Path) -> Duration {
    let t = Instant::now();
    lily_at(bin, root, &["runnables", "install", &wasm.display().to_string()]).expect("install");
    t.elapsed()
}

fn main() {
    let py = component("LILY_BENCH_PY_COMPONENT", "python-components/examples_python_licence/build/licence.wasm");
    let js = component("LILY_BENCH_JS_COMPONENT", "js-guests/pins.wasm");
    for (what, p, how) in [
        ("Python", &py, "`cargo test -p lily --test e2e -- python::` with componentize-py"),
        ("JS", &js, "`cargo test -p lily --test e2e -- js::` with the JS toolchain"),
    ] {
        if !p.is_file() {
            println!("SKIPPED polyglot bench: no {what} component at {} (run {how})", p.display());
            return;
        }
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# Polyglot council benchmark (issue 18)\n");
    print_machine(cores);
    let load_start = loadavg();
    let bin = lily_bin();
    println!("binary: {}\n", bin.display());
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = init_root(&bin, &tmp.path().join("root"));

    // Install compiles each component once into the root's cache (cold).
    let py_install = install(&bin, &root, &py);
    let js_install = install(&bin, &root, &js);
    let policy = root.join(".lily/policy.yaml");
    let text = std::fs::read_to_string(&policy).expect("policy");
    let grants: String = ["licence.v1", "pins.v1"]
        .iter()
        .map(|id| format!("  \"{id}\":\n    fs:\n      - path: .lily/examples/workspace\n        mode: ro\n"))
        .collect();
    std::fs::write(&policy, text.replacen("runnables:\n", &format!("runnables:\n{grants}"), 1)).expect("policy");
    let jobs = root.join(".lily/jobs");
    std::fs::write(jobs.join("poly.job.yaml"), council("poly", &["security.v1", "licence.v1", "pins.v1"])).expect("job");
    std::fs::write(jobs.join("rust.job.yaml"), council("rust", &["security.v1", "operations.v1"])).expect("job");
    for job in ["poly", "rust"] {
        lily_at(&bin, &root, &["jobs", "run", job]).unwrap_or_else(|e| panic!("warm-up run of {job}: {e}"));
    }

    let mut samples: [(Vec<Duration>, Vec<u64>); 3] = Default::default();
    let args: [&[&str]; 3] = [&["--version"], &["jobs", "run", "rust"], &["jobs", "run", "poly"]];
    for _ in 0..RUNS {
        for (s, a) in samples.iter_mut().zip(args) {
            let (t, rss) = timed_process(&bin, &root, a);
            s.0.push(t);
            s.1.push(rss);
        }
    }
    for (t, rss) in samples.iter_mut() {
        t.sort();
        rss.sort();
    }
    let v50 = pct(&samples[0].0, 50.0);
    let rows: Vec<Vec<String>> = [
        "`lily --version`",
        "council: security.v1 + operations.v1 (Rust)",
        "council: security.v1 (Rust) + licence.v1 (Python) + pins.v1 (JS)",
    ]
    .iter()
    .zip(&samples)
    .map(|(name, (t, rss))| {
        let p50 = pct(t, 50.0);
        vec![
            name.to_string(),
            fmt(p50),
            fmt(pct(t, 90.0)),
            fmt(t[0]),
            format!("{:.1}×", p50.as_secs_f64() / v50.as_secs_f64()),
            mib(rss[rss.len() / 2]),
        ]
    })
    .collect();
    println!("## Whole process, warm compile cache ({RUNS} runs each, alternated)\n");
    table(&["command", "p50", "p90", "min", "p50 / --version", "peak RSS (median)"], &rows);
    let poly50 = pct(&samples[2].0, 50.0);
    println!(
        "\npolyglot council p50 {} — target ≤ 100 ms warm (release binary): {}",
        fmt(poly50),
        met(poly50 <= Duration::from_millis(100))
    );
    println!(
        "first install (cold compile, whole process): licence.v1 {:.1} s, pins.v1 {:.1} s",
        py_install.as_secs_f64(),
        js_install.as_secs_f64()
    );
    println!("load average: start {load_start}, end {}", loadavg());
}
