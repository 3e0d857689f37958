//! Helpers shared by the benchmark programs: machine description, load,
//! percentiles, formatting and Markdown tables.
#![allow(dead_code)]

use std::time::Duration;

pub fn print_machine(cores: usize) {
    println!(
        "machine: {cores} cores (available_parallelism), {} RAM, {}; profile: {}\n",
        proc_meminfo("MemTotal").unwrap_or_else(|| "? kB".into()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c
                .lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
            .unwrap_or_else(|| "unknown cpu".into()),
        if cfg!(debug_assertions) {
            "dev (lily at opt-level 0, dependencies at opt-level 2)"
        } else {
            "release/bench (opt-level 3)"
        },
    );
}

pub fn proc_meminfo(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub fn met(ok: bool) -> String {
    if ok { "met".into() } else { "**not met**".into() }
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}|", headers.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// CPU time of every thread of this process so far (ns resolution, from
/// `/proc/self/task/*/schedstat`; threads that already exited are not counted).
pub fn process_cpu() -> Duration {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns: u64 = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_nanos(ns)
}

/// The `lily` binary under test: `$LILY_BIN`, else the one cargo built for
/// this bench's profile.
pub fn lily_bin() -> std::path::PathBuf {
    std::env::var_os("LILY_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_lily")))
}

/// `lily --root <root> <args>` with no stdin and no root from the
/// environment.
pub fn lily_command(bin: &std::path::Path, root: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("LILY_ROOT")
        .env_remove("LILY_JOBS_DIR")
        .stdin(std::process::Stdio::null());
    c
}

/// `lily --root <root> <args>`; stdout on success, else stderr in the error.
pub fn lily_at(bin: &std::path::Path, root: &std::path::Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = lily_command(bin, root, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{args:?} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// `lily init` in a fresh directory; the canonical root.
pub fn init_root(bin: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("root dir");
    let root = dir.canonicalize().expect("canonical root");
    lily_at(bin, &root, &["init"]).expect("lily init");
    root
}

/// One `lily --root <root> <args>` child process: wall time and its peak
/// RSS in KiB (`wait4`'s `ru_maxrss`).
// The child is reaped by `wait4` (which `Child::wait` would not report).
#[allow(clippy::zombie_processes)]
pub fn timed_process(bin: &std::path::Path, root: &std::path::Path, args: &[&str]) -> (Duration, u64) {
    let t = std::time::Instant::now();
    let child = lily_command(bin, root, args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn lily");
    let (ok, maxrss) = wait4(child.id());
    let wall = t.elapsed();
    assert!(ok, "lily {args:?} failed");
    (wall, maxrss)
}

/// Reap `pid` with `wait4`: (exited with 0, `ru_maxrss` in KiB).
#[allow(unsafe_code)]
pub fn wait4(pid: u32) -> (bool, u64) {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data that `wait4` fills; all-zero is a
    // valid value of it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; `pid` is our own unreaped child
    // (the `Child` handle is dropped without waiting, which does not reap).
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(r, pid as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, ru.ru_maxrss.max(0) as u64)
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
