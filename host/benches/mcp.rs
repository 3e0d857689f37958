//! MCP benchmark (issue 21): `tools/call` round trip of the two-specialist
//! demo council through `lily mcp serve` over stdio with a warm compile
//! cache, minus the run itself (its receipt's start → end), and the
//! server's resident memory idle and after the calls.
//!
//! `cargo bench -p lily --profile dev --bench mcp` (`just bench` runs every
//! benchmark). The client is a minimal JSON-RPC writer/reader here (the
//! e2e tests use the official Python SDK); figures go to
//! docs/performance.md.

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ms_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map(|t| t.timestamp_millis()).unwrap_or(0)
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# mcp benchmark (issue 21)\n");
    print_machine(cores);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canon");
    lily::init::init_at(&root).expect("init");
    let config = std::fs::read_to_string(root.join(".lily/config.yaml")).expect("config");
    std::fs::write(
        root.join(".lily/config.yaml"),
        format!("{config}\nmcp:\n  expose:\n    jobs: [demo]\n  max_calls_per_session: 1000\n"),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lily"))
        .args(["mcp", "serve"])
        .env("LILY_ROOT", &root)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lily mcp serve");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut next_id = 0u64;
    let send = |stdin: &mut std::process::ChildStdin, msg: Value| {
        writeln!(stdin, "{msg}").expect("write");
        stdin.flush().expect("flush");
    };
    let mut request = |stdin: &mut std::process::ChildStdin, method: &str, params: Value| -> Value {
        next_id += 1;
        send(stdin, json!({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).expect("read") > 0, "the server closed stdout");
            let v: Value = serde_json::from_str(&line).expect("json line");
            if v["id"] == json!(next_id) {
                return v;
            }
        }
    };
    let t = Instant::now();
    let init = request(
        &mut stdin,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
    );
    let init_time = t.elapsed();
    assert!(init["result"]["serverInfo"]["name"] == "lily", "{init}");
    // `notifications/initialized` has no id and no answer.
    writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).expect("write");
    let idle = rss_kib(pid);
    let call = json!({"name": "demo", "arguments": {"topic": "payments readiness"}});
    const WARM: usize = 5;
    const N: usize = 100;
    let (mut round, mut beyond) = (Vec::new(), Vec::new());
    for i in 0..WARM + N {
        let t = Instant::now();
        let r = request(&mut stdin, "tools/call", call.clone());
        let took = t.elapsed();
        let s = &r["result"]["structuredContent"];
        assert_eq!(s["status"], "succeeded", "{r}");
        if i >= WARM {
            let dir = root.join(".lily/runs/demo").join(s["run_id"].as_str().expect("run id"));
            let receipt: Value = serde_json::from_slice(&std::fs::read(dir.join("run_receipt.json")).expect("receipt")).expect("json");
            let run_ms = ms_of(receipt["ended_at"].as_str().unwrap_or("")) - ms_of(receipt["started_at"].as_str().unwrap_or(""));
            round.push(took);
            beyond.push(took.saturating_sub(Duration::from_millis(run_ms.max(0) as u64)));
        }
    }
    let after = rss_kib(pid);
    drop(stdin);
    let _ = child.wait();
    round.sort();
    beyond.sort();
    println!("## `tools/call demo` over stdio (two-specialist council, warm cache), {N} calls after {WARM} warm-up\n");
    table(
        &["", "p50", "p99", "target"],
        &[
            vec!["round trip".into(), fmt(pct(&round, 50.0)), fmt(pct(&round, 99.0)), "—".into()],
            vec![
                "beyond the run (round trip − receipt start→end, ms resolution)".into(),
                fmt(pct(&beyond, 50.0)),
                fmt(pct(&beyond, 99.0)),
                format!("≤ 15 ms: {}", met(pct(&beyond, 99.0) <= Duration::from_millis(15))),
            ],
        ],
    );
    println!(
        "\ninitialize: {}; server RSS idle after initialize: {:.1} MiB; after {} calls: {:.1} MiB",
        fmt(init_time),
        idle as f64 / 1024.0,
        WARM + N,
        after as f64 / 1024.0
    );
    println!("load average at the end: {}", loadavg());
}
