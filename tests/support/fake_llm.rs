//! A scripted OpenAI-compatible provider on 127.0.0.1 for tests: each
//! request gets the reply a script or a function chooses, and every request
//! (head and JSON body) is kept. Shared by `host/tests/llm.rs` and the
//! end-to-end tests (`#[path]`-included by both).
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API key the tests hand the host (in `LILY_TEST_LLM_KEY`); it must
/// never appear in anything Lily writes.
pub const KEY: &str = "sk-test-4f1d2c9a7be3";

/// One scripted answer of the fake provider.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

pub fn ok_reply(text: &str, input_tokens: u32, output_tokens: u32) -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: json!({
            "id": "x", "object": "chat.completion", "model": "fake-model-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
        })
        .to_string(),
        delay: Duration::ZERO,
    }
}

pub fn status_reply(status: u16, headers: &[(&str, &str)]) -> Reply {
    Reply {
        status,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: json!({"error": {"message": format!("scripted {status}")}}).to_string(),
        delay: Duration::ZERO,
    }
}

/// A provider that answers each request with the next scripted reply (the
/// last one repeats) and keeps every request it saw (headers and body).
pub struct FakeProvider {
    pub port: u16,
    seen: Arc<Mutex<Vec<(String, Value, std::time::Instant)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeProvider {
    pub fn start(script: Vec<Reply>) -> FakeProvider {
        FakeProvider::start_with(move |_, n| script[n.min(script.len() - 1)].clone())
    }

    /// Answer with `answer(request body, request number)`.
    pub fn start_with(answer: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static) -> FakeProvider {
        let answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                s.set_nonblocking(false).ok();
                let i = n;
                n += 1;
                let (seen, answer) = (seen2.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head, body) = loop {
                        let Ok(k) = s.read(&mut chunk) else { return };
                        if k == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..k]);
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..at]).to_string();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            while buf.len() < at + 4 + len {
                                let Ok(k) = s.read(&mut chunk) else { return };
                                if k == 0 {
                                    break;
                                }
                                buf.extend_from_slice(&chunk[..k]);
                            }
                            break (head, buf[at + 4..].to_vec());
                        }
                    };
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let reply = answer(&body, i);
                    seen.lock().expect("seen").push((head, body, std::time::Instant::now()));
                    std::thread::sleep(reply.delay);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&reply.body);
                    let _ = s.write_all(out.as_bytes());
                });
            }
        });
        FakeProvider { port, seen, stop }
    }

    pub fn requests(&self) -> Vec<(String, Value, std::time::Instant)> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The provider as both built-in LLM runnables expect it: a review with one
/// grounded and one invented finding, and a synthesis naming `synth_source`.
pub fn council_provider(synth_source: &'static str, cite: (&'static str, usize, &'static str)) -> FakeProvider {
    FakeProvider::start_with(move |body, _| {
        let system = body["messages"][0]["content"].as_str().unwrap_or("");
        let answer = if system.contains("You review a code workspace") {
            json!({"findings": [
                {"title": "API key in source", "recommendation": "Load it from the environment.", "confidence": 0.8,
                 "evidence": [{"path": cite.0, "line": cite.1, "quote": cite.2}]},
                {"title": "Invented problem", "recommendation": "None.", "confidence": 0.9,
                 "evidence": [{"path": "src/ghost.py", "line": 7, "quote": "eval(input())"}]}
            ]})
        } else {
            json!({"summary": "One secret is committed; move it out of the code.", "ranked_findings": [
                {"title": "API key in source", "recommendation": "Load it from the environment.", "confidence": 0.8,
                 "source_specialist": synth_source, "evidence": [format!("{}:{}", cite.0, cite.1)]}
            ]})
        };
        ok_reply(&answer.to_string(), 100, 20)
    })
}

/// Files under `dir` (links not followed) whose bytes contain `needle`:
/// where a secret must never be found.
pub fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                hits.push(p);
            }
        }
    }
    hits
}

/// Set the test process's secrets (`LILY_TEST_LLM_KEY` = [`KEY`],
/// `LILY_TEST_HOOK_TOKEN` = [`HOOK_TOKEN`]) once, before anything reads the
/// environment.
pub fn set_test_secrets() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this before it starts a runtime, a
        // sandbox or a server; the first caller sets the variables while
        // the others wait on `ONCE`, so no thread reads the environment
        // concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("LILY_TEST_LLM_KEY", KEY);
            std::env::set_var("LILY_TEST_HOOK_TOKEN", HOOK_TOKEN);
        }
    });
}

/// The webhook token the delivery tests put in the environment.
pub const HOOK_TOKEN: &str = "hook-token-93f1e0c2d7";

/// A new Lily root (`lily init`) with `.lily/config.yaml` and
/// `.lily/policy.yaml` replaced and `jobs` (`(id, spec text)`) written.
pub fn init_root(config: &str, policy: &str, jobs: &[(&str, String)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    lily::init::init_at(tmp.path()).expect("init");
    let dir = tmp.path().canonicalize().expect("canon");
    std::fs::write(dir.join(".lily/config.yaml"), config).expect("config");
    std::fs::write(dir.join(".lily/policy.yaml"), policy).expect("policy");
    for (id, spec) in jobs {
        std::fs::write(dir.join(format!(".lily/jobs/{id}.job.yaml")), spec).expect("job");
    }
    (tmp, dir)
}
