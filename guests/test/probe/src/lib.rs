//! `probe.v1`: a test runnable whose input picks one operation, many of them
//! hostile. Used by the sandbox, policy and hostile-runnable tests.
//!
//! Input: `{"op": "<name>", ...}`. Output payload: `{"ok": bool, ...}`.
use lily_guest::{Descriptor, Envelope, Guest, Kind, Level, RunError, RunStatus, emit, error, propose_publish, propose_send, propose_write};
use serde_json::{Value, json};

struct Probe;

fn ok(payload: Value) -> Result<Envelope, RunError> {
    Ok(Envelope {
        status: RunStatus::Ok,
        artifacts: vec![],
        approvals_requested: vec![],
        references: vec![],
        payload: payload.to_string(),
    })
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

#[inline(never)]
fn recurse(n: u64, acc: &mut [u64; 64]) -> u64 {
    acc[(n % 64) as usize] = n;
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1, acc) + acc[3]
}

impl Guest for Probe {
    fn describe() -> Descriptor {
        Descriptor {
            id: "probe.v1".into(),
            version: "1.0.0".into(),
            summary: "Test runnable: does one (possibly hostile) thing chosen by its input".into(),
            kind: Kind::Generic,
            input_schema: r#"{"type":"object","required":["op"],"properties":{"op":{"type":"string"}}}"#.into(),
            output_schema: r#"{"type":"object","required":["ok"],"properties":{"ok":{"type":"boolean"}}}"#.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let v: Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", e.to_string()))?;
        match s(&v, "op") {
            "read" => match std::fs::read_to_string(s(&v, "path")) {
                Ok(c) => ok(json!({"ok": true, "content": c})),
                Err(e) => ok(json!({"ok": false, "error": e.to_string()})),
            },
            "write" => match std::fs::write(s(&v, "path"), s(&v, "content")) {
                Ok(()) => ok(json!({"ok": true})),
                Err(e) => ok(json!({"ok": false, "error": e.to_string()})),
            },
            "list" => match std::fs::read_dir(s(&v, "path")) {
                Ok(rd) => {
                    let mut names: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                    names.sort();
                    ok(json!({"ok": true, "entries": names}))
                }
                Err(e) => ok(json!({"ok": false, "error": e.to_string()})),
            },
            // Opens every file under `dirs` (in order, sorted names) `passes`
            // times and reads one byte of each: the host's read recording
            // must stay within its file count and byte budget.
            "open_many" => {
                use std::io::Read;
                let passes = v.get("passes").and_then(Value::as_u64).unwrap_or(1);
                let dirs: Vec<String> = v["dirs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect();
                let mut opened = 0u64;
                for _ in 0..passes {
                    for dir in &dirs {
                        let Ok(rd) = std::fs::read_dir(dir) else { continue };
                        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
                        names.sort();
                        for p in names {
                            if let Ok(mut f) = std::fs::File::open(&p) {
                                let _ = f.read(&mut [0u8; 1]);
                                opened += 1;
                            }
                        }
                    }
                }
                ok(json!({"ok": true, "opened": opened}))
            }
            "env" => ok(json!({"ok": true, "value": std::env::var(s(&v, "name")).ok()})),
            "env_all" => ok(json!({"ok": true, "names": std::env::vars().map(|(k, _)| k).collect::<Vec<_>>()})),
            "connect" => match std::net::TcpStream::connect(s(&v, "addr")) {
                Ok(_) => ok(json!({"ok": true})),
                Err(e) => ok(json!({"ok": false, "error": e.to_string()})),
            },
            "resolve" => {
                use std::net::ToSocketAddrs;
                match (s(&v, "host"), 80).to_socket_addrs() {
                    Ok(_) => ok(json!({"ok": true})),
                    Err(e) => ok(json!({"ok": false, "error": e.to_string()})),
                }
            }
            "clock_random" => {
                use std::hash::BuildHasher;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let t0 = std::time::Instant::now();
                let spin: u64 = (0..10_000u64).fold(0, |a, b| std::hint::black_box(a ^ b));
                let elapsed = t0.elapsed().as_nanos() as u64;
                let rand = std::collections::hash_map::RandomState::new().hash_one(spin);
                ok(json!({"ok": true, "now_ns": now, "elapsed_ns": elapsed, "random": rand}))
            }
            "fail_once" => {
                // Fails (retryable) the first time, succeeds once the marker
                // file exists in the read-write grant at `dir`.
                let marker = format!("{}/fail_once.marker", s(&v, "dir"));
                if std::fs::metadata(&marker).is_ok() {
                    ok(json!({"ok": true, "attempt": "second"}))
                } else {
                    std::fs::write(&marker, b"1").map_err(|e| error("state_unwritable", e.to_string()))?;
                    Err(RunError {
                        code: "transient".into(),
                        message: "first attempt fails on purpose".into(),
                        retryable: true,
                    })
                }
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(v.get("ms").and_then(Value::as_u64).unwrap_or(60_000)));
                ok(json!({"ok": true}))
            }
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "recurse" => {
                let mut acc = [0u64; 64];
                ok(json!({"ok": true, "n": recurse(0, &mut acc)}))
            }
            "panic" => panic!("{}", s(&v, "message")),
            "fail" => Err(RunError {
                code: s(&v, "code").to_string(),
                message: s(&v, "message").to_string(),
                retryable: v.get("retryable").and_then(Value::as_bool).unwrap_or(false),
            }),
            "bad_output" => ok(json!({"nope": 1})),
            "invalid_json" => Ok(Envelope {
                status: RunStatus::Ok,
                artifacts: vec![],
                approvals_requested: vec![],
                references: vec![],
                payload: "not json {".into(),
            }),
            "huge_payload" => {
                let n = v.get("bytes").and_then(Value::as_u64).unwrap_or(64 << 20) as usize;
                ok(json!({"ok": true, "blob": "x".repeat(n)}))
            }
            "events" => {
                let n = v.get("count").and_then(Value::as_u64).unwrap_or(1_000_000);
                for i in 0..n {
                    emit(Level::Info, "flood", &json!({"i": i}));
                }
                ok(json!({"ok": true}))
            }
            "print" => {
                let n = v.get("bytes").and_then(Value::as_u64).unwrap_or(1024) as usize;
                print!("{}", "o".repeat(n));
                eprint!("{}", s(&v, "stderr"));
                ok(json!({"ok": true}))
            }
            "propose_write" => proposed(propose_write(s(&v, "path"), s(&v, "content").as_bytes(), "probe proposal")),
            "propose_send" => proposed(propose_send(s(&v, "channel"), s(&v, "message"), "probe proposal")),
            "propose_publish" => proposed(propose_publish(s(&v, "artifact"), s(&v, "to"), "probe proposal")),
            other => Err(error("invalid_input", format!("unknown op {other:?}"))),
        }
    }
}

/// The envelope of a proposal: its id in `approvals_requested`, or the refusal.
fn proposed(r: Result<String, String>) -> Result<Envelope, RunError> {
    match r {
        Ok(id) => Ok(Envelope {
            status: RunStatus::Ok,
            artifacts: vec![],
            approvals_requested: vec![id.clone()],
            references: vec![],
            payload: json!({"ok": true, "request": id}).to_string(),
        }),
        Err(e) => ok(json!({"ok": false, "error": e})),
    }
}

lily_guest::export_runnable!(Probe);
