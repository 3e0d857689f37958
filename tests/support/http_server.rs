//! A scripted HTTP/1.1 server on 127.0.0.1 for tests: each request gets
//! the response a function chooses (with optional delay, slow drip or a
//! huge streamed body), and every request and connection is counted.
//! `#[path]`-included by the tests that need it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait before the status line.
    pub delay: Duration,
    /// Send the body one byte per interval (a slowloris response).
    pub drip: Option<Duration>,
    /// Stream this many bytes of body instead of `body` (content-length set).
    pub huge: Option<u64>,
}

pub fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.as_bytes().to_vec(),
        ..Answer::default()
    }
}

pub fn redirect(to: &str) -> Answer {
    Answer {
        status: 302,
        headers: vec![("location".into(), to.into())],
        ..Answer::default()
    }
}

pub struct TestServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> TestServer {
        let handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, conns2, stop2) = (seen.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                conns2.fetch_add(1, Ordering::Relaxed);
                s.set_nonblocking(false).ok();
                let (seen, handler, stop) = (seen2.clone(), handler.clone(), stop2.clone());
                std::thread::spawn(move || {
                    let Some(req) = read_request(&mut s) else { return };
                    seen.lock().expect("seen").push(req.clone());
                    let a = handler(&req);
                    std::thread::sleep(a.delay);
                    let len = a.huge.unwrap_or(a.body.len() as u64);
                    let mut head = format!("HTTP/1.1 {} X\r\ncontent-length: {len}\r\nconnection: close\r\n", a.status);
                    for (k, v) in &a.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    if s.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    if let Some(n) = a.huge {
                        let chunk = vec![b'x'; 64 << 10];
                        let mut left = n;
                        while left > 0 && !stop.load(Ordering::Relaxed) {
                            let k = left.min(chunk.len() as u64) as usize;
                            if s.write_all(&chunk[..k]).is_err() {
                                return;
                            }
                            left -= k as u64;
                        }
                    } else if let Some(every) = a.drip {
                        for b in &a.body {
                            if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                                return;
                            }
                            std::thread::sleep(every);
                        }
                    } else {
                        let _ = s.write_all(&a.body);
                    }
                });
            }
        });
        TestServer { port, seen, connections, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_request(s: &mut std::net::TcpStream) -> Option<Seen> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_string();
            let mut lines = head.lines();
            let mut first = lines.next()?.split(' ');
            let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < at + 4 + len {
                let k = s.read(&mut chunk).ok()?;
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            return Some(Seen {
                method,
                target,
                headers,
                body: buf[at + 4..].to_vec(),
            });
        }
    }
}
