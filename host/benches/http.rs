//! Outbound HTTP benchmark (issue 17): what one granted `wasi:http` request
//! from a guest costs over the same request made by the host directly, to a
//! keep-alive server on 127.0.0.1 that answers at once.
//!
//! `cargo bench -p lily --profile dev --bench http` (`just bench` runs every
//! benchmark). Figures go to docs/performance.md.

mod common;
use common::*;
use lily::sandbox::{Grants, Limits, Sandbox, SandboxOptions, StepRequest};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A keep-alive HTTP/1.1 server (a thread per connection) answering every
/// request with a 2-byte body.
fn serve() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                s.set_nodelay(true).ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let at = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at;
                        }
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    buf.drain(..at + 4);
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn requests(url: &str, n: usize) -> Value {
    json!({"requests": (0..n).map(|_| json!({"url": url})).collect::<Vec<_>>()})
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# http benchmark (issue 17)\n");
    print_machine(cores);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sb = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sandbox"));
    let bytes = std::fs::read(PathBuf::from(env!("LILY_GUESTS_DIR")).join("http_caller.wasm")).expect("http-caller built");
    let loaded = rt.block_on(sb.load(&bytes)).expect("load");
    let port = serve();
    let url = format!("http://127.0.0.1:{port}/status");
    let allow = vec![format!("http://127.0.0.1:{port}")];
    let step_on = |input: Value, replay: Option<lily::sandbox::ClockTape>| {
        let req = StepRequest {
            input,
            grants: Grants {
                http: allow.clone(),
                ..Grants::default()
            },
            limits: Limits {
                deadline: Duration::from_secs(60),
                http: lily::sandbox::http::HttpLimits {
                    max_requests: 10_000,
                    ..Default::default()
                },
                ..Limits::default()
            },
            seeds: None,
            replay_tape: replay,
            models: None,
        };
        let (sb, loaded) = (sb.clone(), loaded.clone());
        async move {
            let r = sb.run(&loaded, req).await;
            assert!(r.outcome.is_ok(), "{:?}", r.outcome.err());
            r
        }
    };
    let step = |input: Value| step_on(input, None);

    // The host's own request: a keep-alive client like the one guest
    // requests go through (no proxy, no redirects).
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    const REPS: usize = 400;
    let direct = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..REPS + 20 {
            let t = Instant::now();
            let r = client.get(&url).send().await.expect("send");
            let b = r.bytes().await.expect("body");
            assert_eq!(&b[..], b"ok");
            if i >= 20 {
                v.push(t.elapsed());
            }
        }
        v
    });
    let direct = sorted(direct);

    // 1. Per request, from one step making many: (step with N − step with
    // none) / N — the guest's request building, the host's checks, tape
    // record and response hand-back included.
    const N: usize = 400;
    let mut per_request = Vec::new();
    for _ in 0..7 {
        let t0 = Instant::now();
        rt.block_on(step(requests(&url, 0)));
        let base = t0.elapsed();
        let t1 = Instant::now();
        let r = rt.block_on(step(requests(&url, N)));
        let with = t1.elapsed();
        assert_eq!(r.tape.calls.len(), N);
        per_request.push(with.saturating_sub(base) / N as u32);
    }
    let per_request = sorted(per_request);

    // 2. Distribution as the guest sees it: each request timed inside the
    // guest (build the request, the host's checks and send, the tape record,
    // read the whole response back), 400 per step.
    let timed = |r: lily::sandbox::StepReport, into: &mut Vec<Duration>| {
        let p = r.outcome.expect("ok").payload;
        for v in p["results"].as_array().expect("results") {
            assert_eq!(v["ok"], true);
            into.push(Duration::from_micros(v["elapsed_us"].as_u64().expect("elapsed")));
        }
    };
    let (mut in_guest, mut replayed) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let mut input = requests(&url, N);
        input["timings"] = json!(true);
        let r = rt.block_on(step(input.clone()));
        let tape = r.tape.clone();
        timed(r, &mut in_guest);
        // The same requests served from the tape: the sandbox's own share
        // (wasi:http plumbing, checks, tape), no network at all. (Timed from
        // outside: in a replay the guest's clock reads come from the tape.)
        let t0 = Instant::now();
        rt.block_on(step(requests(&url, 0)));
        let base = t0.elapsed();
        let t1 = Instant::now();
        rt.block_on(step_on(input, Some(tape)));
        replayed.push(t1.elapsed().saturating_sub(base) / N as u32);
    }
    let (in_guest, replayed) = (sorted(in_guest), sorted(replayed));

    // 3. Steps of one request against steps of none,
    // alternating; the step-of-none median is taken off each.
    let (mut one, mut none) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        let t = Instant::now();
        rt.block_on(step(requests(&url, 0)));
        none.push(t.elapsed());
        let t = Instant::now();
        rt.block_on(step(requests(&url, 1)));
        one.push(t.elapsed());
    }
    let none = sorted(none);
    let base = pct(&none, 50.0);
    let one: Vec<Duration> = sorted(one.into_iter().map(|d| d.saturating_sub(base)).collect());

    println!("## One granted request, guest vs host (keep-alive server on 127.0.0.1)\n");
    table(
        &["", "samples", "p50", "p99"],
        &[
            vec![
                "host directly (reqwest)".into(),
                direct.len().to_string(),
                fmt(pct(&direct, 50.0)),
                fmt(pct(&direct, 99.0)),
            ],
            vec![
                "guest, one request per step (step − empty step p50)".into(),
                one.len().to_string(),
                fmt(pct(&one, 50.0)),
                fmt(pct(&one, 99.0)),
            ],
            vec![
                "guest, timed inside the guest (3 steps × 400)".into(),
                in_guest.len().to_string(),
                fmt(pct(&in_guest, 50.0)),
                fmt(pct(&in_guest, 99.0)),
            ],
            vec![
                "guest, replayed from the tape (no network), per request in a step of 400".into(),
                replayed.len().to_string(),
                fmt(pct(&replayed, 50.0)),
                fmt(pct(&replayed, 99.0)),
            ],
            vec![
                format!("guest, {N} requests in one step (per request)"),
                per_request.len().to_string(),
                fmt(pct(&per_request, 50.0)),
                fmt(per_request[per_request.len() - 1]),
            ],
        ],
    );
    let overhead50 = pct(&per_request, 50.0).saturating_sub(pct(&direct, 50.0));
    let g50 = pct(&in_guest, 50.0).saturating_sub(pct(&direct, 50.0));
    let g99 = pct(&in_guest, 99.0).saturating_sub(pct(&direct, 99.0));
    let overhead_one50 = pct(&one, 50.0).saturating_sub(pct(&direct, 50.0));
    let overhead_one99 = pct(&one, 99.0).saturating_sub(pct(&direct, 99.0));
    println!();
    table(
        &["sandbox overhead", "value", "target ≤ 0.5 ms"],
        &[
            vec!["p50, timed inside the guest".into(), fmt(g50), met(g50 <= Duration::from_micros(500))],
            vec!["p99, timed inside the guest".into(), fmt(g99), met(g99 <= Duration::from_micros(500))],
            vec![
                "p50, per request in a step of many".into(),
                fmt(overhead50),
                met(overhead50 <= Duration::from_micros(500)),
            ],
            vec![
                "p50, one request per step".into(),
                fmt(overhead_one50),
                met(overhead_one50 <= Duration::from_micros(500)),
            ],
            vec![
                "p99, one request per step".into(),
                fmt(overhead_one99),
                met(overhead_one99 <= Duration::from_micros(500)),
            ],
        ],
    );
    println!("\nempty step (instantiate + run, no request): p50 {}", fmt(base));
    println!("load average at the end: {}", loadavg());
}
