//! Model-call benchmark (issue 16): the host's overhead per `llm.complete`
//! call against a provider that answers a canned reply at once, and 8
//! concurrent steps against a provider that takes 200 ms per call (do the
//! calls really run in parallel?).
//!
//! `cargo bench -p lily --profile dev --bench llm` (`just bench` runs every
//! benchmark). Figures go to docs/performance.md.

mod common;
use common::*;
use lily::config::Config;
use lily::llm::{LlmService, RunModels};
use lily::sandbox::{Grants, Limits, LlmBudget, LlmGrant, Sandbox, SandboxOptions, StepRequest};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A keep-alive HTTP/1.1 server (a thread per connection) answering every
/// request with one canned chat completion after `delay`.
fn serve(delay: Duration) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = json!({"model": "bench", "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 10, "completion_tokens": 1}})
    .to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let reply = reply.clone();
            std::thread::spawn(move || {
                s.set_nodelay(true).ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: headers, then content-length bytes of body.
                    let (at, len) = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                                .unwrap_or(0);
                            break (at, len);
                        }
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    while buf.len() < at + 4 + len {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    buf.drain(..at + 4 + len);
                    std::thread::sleep(delay);
                    if s.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn models(port: u16) -> RunModels {
    let text = format!(
        "llm:\n  providers:\n    p: {{kind: openai, base_url: \"http://127.0.0.1:{port}/v1\", timeout_seconds: 30}}\n  models:\n    m: {{provider: p, model: bench}}\n"
    );
    let config = Config::parse(Path::new("bench.yaml"), &text).expect("config");
    RunModels::new(Arc::new(LlmService::new(&config.llm)))
}

fn grant() -> LlmGrant {
    LlmGrant {
        models: vec!["m".into()],
        budget: LlmBudget {
            max_calls: u32::MAX,
            max_input_tokens: u64::MAX / 4,
            max_output_tokens: u64::MAX / 4,
        },
        rule: "bench".into(),
    }
}

fn request(calls: usize) -> Value {
    json!({"calls": (0..calls).map(|i| json!({"model": "m", "user": format!("call {i}"), "max_output_tokens": 4})).collect::<Vec<_>>()})
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# llm benchmark (issue 16)\n");
    print_machine(cores);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sb = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sandbox"));
    let bytes = std::fs::read(PathBuf::from(env!("LILY_GUESTS_DIR")).join("llm_caller.wasm")).expect("llm-caller built");
    let loaded = rt.block_on(sb.load(&bytes)).expect("load");
    let g = grant();
    let step = |run: &RunModels, input: Value| {
        let req = StepRequest {
            input,
            grants: Grants {
                llm: Some(g.clone()),
                ..Grants::default()
            },
            limits: Limits {
                deadline: Duration::from_secs(60),
                ..Limits::default()
            },
            seeds: None,
            replay_tape: None,
            models: Some(run.for_step(&g)),
        };
        let (sb, loaded) = (sb.clone(), loaded.clone());
        async move {
            let r = sb.run(&loaded, req).await;
            assert!(r.outcome.is_ok(), "{:?}", r.outcome.err());
            r
        }
    };

    // 1. Overhead per call: a step with N calls minus a step with none.
    let port = serve(Duration::ZERO);
    let run = models(port);
    const N: usize = 200;
    let mut per_call = Vec::new();
    for _ in 0..7 {
        let t0 = Instant::now();
        rt.block_on(step(&run, request(0)));
        let base = t0.elapsed();
        let t1 = Instant::now();
        let r = rt.block_on(step(&run, request(N)));
        let with = t1.elapsed();
        assert_eq!(r.tape.calls.len(), N);
        per_call.push(with.saturating_sub(base) / N as u32);
    }
    per_call.sort();
    println!("## Host overhead per call (canned reply on 127.0.0.1, keep-alive)\n");
    table(
        &["calls per step", "reps", "p50 per call", "min", "max", "target p50 ≤ 1 ms"],
        &[vec![
            N.to_string(),
            per_call.len().to_string(),
            fmt(pct(&per_call, 50.0)),
            fmt(per_call[0]),
            fmt(per_call[per_call.len() - 1]),
            met(pct(&per_call, 50.0) <= Duration::from_millis(1)),
        ]],
    );
    println!(
        "\nEach call: request checks, the tape record, budget reserve / settle, the HTTP round trip (the server's own time is a canned write), the reply parse.\n"
    );

    // 2. 8 steps at once against a 200 ms provider, at parallelism 8, 4, 2, 1.
    let port = serve(Duration::from_millis(200));
    let run = Arc::new(models(port));
    println!("## 8 concurrent steps, one call each, provider takes 200 ms\n");
    let mut rows = Vec::new();
    for par in [8usize, 4, 2, 1] {
        let sem = Arc::new(tokio::sync::Semaphore::new(par));
        let t = Instant::now();
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let (sem, fut) = (sem.clone(), step(&run, request(1)));
                set.spawn(async move {
                    let _p = sem.acquire_owned().await;
                    fut.await
                });
            }
            while set.join_next().await.is_some() {}
        });
        let took = t.elapsed();
        let ideal = Duration::from_millis(200) * 8usize.div_ceil(par) as u32;
        rows.push(vec![par.to_string(), fmt(took), fmt(ideal), fmt(took.saturating_sub(ideal))]);
    }
    table(&["parallelism", "wall", "ceil(8/p) × 200 ms", "overhead"], &rows);
    println!("\nload average at the end: {}", loadavg());
}
