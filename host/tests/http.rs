//! Outbound HTTP (`wasi:http`) end to end at the library level: the
//! `http-caller.v1` test guest in the real sandbox against scripted servers
//! on 127.0.0.1 started by each test — allow-list, caps, tape and replay —
//! and through a job (policy grant, events with the line to add, ceilings).

#[path = "../../tests/support/http_server.rs"]
mod http_server;
use http_server::*;
#[path = "../../tests/support/fake_llm.rs"]
mod fake_llm;

use lily::sandbox::http::HttpLimits;
use lily::sandbox::{ClockTape, Grants, Limits, Sandbox, SandboxOptions, StepReport, StepRequest, TapedCall};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn guest() -> Vec<u8> {
    let p = PathBuf::from(env!("LILY_GUESTS_DIR")).join("http_caller.wasm");
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

struct World {
    sb: Arc<Sandbox>,
    rt: tokio::runtime::Runtime,
    loaded: Arc<lily::sandbox::Loaded>,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let sb = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sandbox"));
        let loaded = rt.block_on(sb.load(&guest())).expect("load http-caller");
        World { sb, rt, loaded }
    }

    fn run_with(&self, allow: &[String], http: HttpLimits, requests: Value, replay: Option<ClockTape>) -> StepReport {
        self.rt.block_on(self.sb.run(
            &self.loaded,
            StepRequest {
                input: json!({"requests": requests}),
                grants: Grants {
                    http: allow.to_vec(),
                    ..Grants::default()
                },
                limits: Limits {
                    deadline: Duration::from_secs(20),
                    http,
                    ..Limits::default()
                },
                seeds: None,
                replay_tape: replay,
                models: None,
            },
        ))
    }

    fn run(&self, allow: &[String], requests: Value) -> StepReport {
        self.run_with(allow, HttpLimits::default(), requests, None)
    }
}

fn results(r: &StepReport) -> Vec<Value> {
    match &r.outcome {
        Ok(env) => env.payload["results"].as_array().cloned().unwrap_or_default(),
        Err(c) => panic!("step failed: {}", c.message()),
    }
}

fn http_calls(r: &StepReport) -> Vec<lily::sandbox::http::HttpCall> {
    r.tape
        .calls
        .iter()
        .filter_map(|c| match c {
            TapedCall::Http(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn get(url: &str) -> Value {
    json!({"url": url})
}

#[test]
fn a_granted_get_and_post_reach_the_server_and_are_taped_with_credentials_scrubbed() {
    let server = TestServer::start(|r| match r.target.as_str() {
        "/v1/status" => answer(200, "all good"),
        _ => answer(201, &format!("got {} bytes", r.body.len())),
    });
    let w = World::new();
    let allow = vec![server.url("/v1/")];
    let r = w.run(
        &allow,
        json!([
            get(&server.url("/v1/status")),
            {"method": "POST", "url": server.url("/v1/items?x=1"), "body": "{\"a\":1}",
             "headers": [["content-type", "application/json"], ["authorization", "Bearer guest-secret-123"]]},
        ]),
    );
    let res = results(&r);
    assert_eq!(res[0]["status"], 200, "{res:?}");
    assert_eq!(res[0]["body"], "all good");
    assert_eq!(res[1]["status"], 201);
    assert_eq!(res[1]["body"], "got 7 bytes");
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[1].method.as_str(), seen[1].target.as_str()), ("POST", "/v1/items?x=1"));
    assert_eq!(seen[1].body, b"{\"a\":1}");
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer guest-secret-123"),
        "the guest's own header is sent"
    );
    assert_eq!(seen[1].header("host"), Some(format!("127.0.0.1:{}", server.port).as_str()));
    // Both are on the tape: method, URL, body hash, response; the
    // credential header scrubbed.
    let calls = http_calls(&r);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].call_id, "http-1");
    assert_eq!(calls[1].request.method, "POST");
    assert_eq!(calls[1].request.body_bytes, 7);
    assert_eq!(calls[1].outcome.as_ref().expect("response").status, 201);
    let tape = serde_json::to_string(&r.tape).expect("tape");
    assert!(!tape.contains("guest-secret-123"), "credentials are scrubbed from the tape: {tape}");
    assert!(tape.contains("<scrubbed>"));
    assert!(r.denied_http.is_empty());
}

#[test]
fn requests_outside_the_allow_list_are_refused_without_a_connection_and_recorded() {
    let granted = TestServer::start(|_| answer(200, "granted"));
    let other = TestServer::start(|_| answer(200, "must not be reached"));
    let w = World::new();
    let allow = vec![granted.url("/v1")];
    let denied_urls = [
        other.url("/v1/x"),                                          // another port
        format!("https://127.0.0.1:{}/v1/x", granted.port),          // another scheme
        granted.url("/v2/x"),                                        // a path outside the prefix
        granted.url("/v1x"),                                         // not on a segment boundary
        granted.url("/v1/../admin"),                                 // climbs out of the prefix
        granted.url("/v1/%2e%2e/admin"),                             // … encoded
        format!("http://localhost:{}/v1/x", granted.port),           // another host name
        "http://169.254.169.254/latest/meta-data/?token=t0p".into(), // the metadata service
        format!("http://user:pw@127.0.0.1:{}/v1/x", granted.port),   // credentials in the URL
    ];
    let r = w.run(&allow, Value::Array(denied_urls.iter().map(|u| get(u)).collect()));
    let res = results(&r);
    for (u, v) in denied_urls.iter().zip(&res) {
        assert_eq!(v["error"], "HTTP-request-denied", "{u}: {v}");
    }
    assert_eq!(granted.connections(), 0, "nothing reached the granted server");
    assert_eq!(other.connections(), 0, "nothing reached the other server");
    // Every refusal is recorded, without query string or credentials, with
    // the origin to grant.
    assert_eq!(r.denied_http.len(), denied_urls.len(), "{:?}", r.denied_http);
    let recorded = serde_json::to_string(&r.denied_http).expect("json");
    assert!(!recorded.contains("t0p") && !recorded.contains("pw@"), "{recorded}");
    let meta = r.denied_http.iter().find(|d| d.url.contains("169.254")).expect("metadata refusal");
    assert_eq!(meta.url, "http://169.254.169.254/latest/meta-data/");
    assert_eq!(meta.grant.as_deref(), Some("http://169.254.169.254"));
    // And they are on the tape (a replay refuses them the same way).
    assert!(
        http_calls(&r)
            .iter()
            .all(|c| c.outcome.as_ref().is_err_and(|f| f.code == "HTTP-request-denied"))
    );

    // With no grant at all, the same: refused, recorded, nothing sent.
    let r = w.run(&[], json!([get(&granted.url("/v1/x"))]));
    assert_eq!(results(&r)[0]["error"], "HTTP-request-denied");
    assert!(r.denied_http[0].reason.contains("no http grant"), "{:?}", r.denied_http);
    assert_eq!(granted.connections(), 0);
}

#[test]
fn a_redirect_is_a_response_and_following_it_outside_the_list_is_refused() {
    let outside = TestServer::start(|_| answer(200, "stolen"));
    let to = outside.url("/steal");
    let server = TestServer::start(move |_| redirect(&to));
    let w = World::new();
    let allow = vec![server.url("/")];
    let r = w.run(&allow, json!([get(&server.url("/go")), {"url": server.url("/go"), "follow": true}]));
    let res = results(&r);
    assert_eq!(res[0]["status"], 302, "the host follows no redirect itself: {res:?}");
    assert_eq!(res[1]["error"], "HTTP-request-denied", "{res:?}");
    assert_eq!(outside.connections(), 0);
    assert_eq!(r.denied_http.len(), 1);
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

#[test]
fn a_huge_response_is_cut_at_the_cap_without_host_memory_growth() {
    let server = TestServer::start(|_| Answer {
        status: 200,
        huge: Some(2 << 30),
        ..Answer::default()
    });
    let w = World::new();
    let before = rss_bytes();
    let limits = HttpLimits {
        max_response_bytes: 1 << 20,
        ..HttpLimits::default()
    };
    let started = Instant::now();
    let r = w.run_with(&[server.url("/")], limits, json!([get(&server.url("/big"))]), None);
    let res = results(&r);
    assert_eq!(res[0]["error"], "HTTP-response-body-size", "{res:?}");
    assert!(res[0]["message"].as_str().unwrap_or("").contains("1048576"), "the guest sees the cap: {res:?}");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 256 << 20, "the host grew by {grown} bytes for a 2 GiB response");
    assert!(started.elapsed() < Duration::from_secs(10), "the read stopped at the cap");
    let c = &http_calls(&r)[0];
    let f = c.outcome.as_ref().expect_err("the body was over the cap");
    assert_eq!(f.code, "HTTP-response-body-size");
    assert!(f.message.contains("cut after"), "{f:?}");
}

#[test]
fn request_bodies_and_counts_over_the_caps_are_refused_before_sending() {
    let server = TestServer::start(|_| answer(200, "ok"));
    let w = World::new();
    let limits = HttpLimits {
        max_requests: 2,
        max_request_bytes: 1 << 20,
        ..HttpLimits::default()
    };
    let big = json!({"method": "POST", "url": server.url("/up"), "body": "x", "body_repeat": (1 << 20) + 1});
    let r = w.run_with(&[server.url("/")], limits, json!([big, get(&server.url("/a")), get(&server.url("/b"))]), None);
    let res = results(&r);
    assert_eq!(res[0]["error"], "HTTP-request-body-size", "{res:?}");
    assert_eq!(res[1]["status"], 200);
    assert!(res[2]["message"].as_str().unwrap_or("").contains("at most 2 requests"), "{res:?}");
    let seen: Vec<String> = server.requests().iter().map(|s| s.target.clone()).collect();
    assert_eq!(seen, vec!["/a".to_string()], "only the request within the caps was sent");
}

#[test]
fn a_slowloris_response_ends_at_the_request_timeout() {
    let server = TestServer::start(|_| Answer {
        status: 200,
        body: vec![b'z'; 200],
        drip: Some(Duration::from_millis(100)),
        ..Answer::default()
    });
    let w = World::new();
    let limits = HttpLimits {
        timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let started = Instant::now();
    let r = w.run_with(&[server.url("/")], limits, json!([get(&server.url("/slow"))]), None);
    let took = started.elapsed();
    let res = results(&r);
    assert_eq!(res[0]["error"], "HTTP-response-timeout", "{res:?}");
    assert!(took < Duration::from_secs(5), "the 20 s drip was cut at 1 s, took {took:?}");
}

#[test]
fn the_guest_cannot_set_host_or_inject_header_lines() {
    let server = TestServer::start(|_| answer(200, "ok"));
    let w = World::new();
    let r = w.run(
        &[server.url("/")],
        json!([
            {"url": server.url("/a"), "headers": [["host", "metadata.internal"]]},
            {"url": server.url("/b"), "headers": [["x-note", "a\r\nx-injected: 1"]]},
            {"url": server.url("/c"), "headers": [["bad header\r\nx-injected", "1"]]},
        ]),
    );
    let res = results(&r);
    for v in &res {
        assert_eq!(v["error"], "HTTP-request-header-invalid", "{res:?}");
    }
    assert!(server.requests().is_empty(), "none of them was sent");
}

#[test]
fn a_replay_with_the_server_stopped_is_identical_and_a_changed_request_is_a_miss() {
    let server = TestServer::start(|r| answer(200, &format!("answer for {}", r.target)));
    let w = World::new();
    let allow = vec![server.url("/")];
    let reqs = json!([get(&server.url("/one")), {"method": "POST", "url": server.url("/two"), "body": "b"}, get("http://10.1.2.3/denied")]);
    let first = w.run(&allow, reqs.clone());
    assert_eq!(results(&first)[1]["body"], "answer for /two");
    server.stop();
    drop(server);
    let again = w.run_with(&allow, HttpLimits::default(), reqs.clone(), Some(first.tape.clone()));
    assert_eq!(results(&again), results(&first), "served from the tape");
    assert!(again.replay_misses.is_empty(), "{:?}", again.replay_misses);
    let mut changed = reqs.clone();
    changed[1]["body"] = json!("different");
    let missed = w.run_with(&allow, HttpLimits::default(), changed, Some(first.tape.clone()));
    assert_eq!(missed.replay_misses.len(), 1, "{:?}", missed.replay_misses);
    assert!(missed.replay_misses[0].starts_with("http-2:"), "{:?}", missed.replay_misses);
    assert_eq!(results(&missed)[1]["error"], "internal-error");
}

/// A root where `http-caller.v1` is installed and a `step.v1` job `fetch`
/// makes `requests`.
fn job_root(policy: &str, runtime: &str, requests: Value) -> (tempfile::TempDir, lily::jobs::Lily, tokio::runtime::Runtime) {
    let job = format!(
        "id: fetch\ntitle: fetch\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {}\nbindings: {{ runnable: http-caller.v1 }}\ntrigger: {{ type: manual }}\nruntime: {{ timeout_seconds: 30{runtime} }}\noutput: {{}}\n",
        json!({"requests": requests})
    );
    let (tmp, dir) = fake_llm::init_root("{}\n", policy, &[("fetch", job)]);
    let root = lily::workspace::Root::at(dir, None).expect("root");
    let lily = lily::jobs::Lily::open(root).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(lily.runnables.install(&lily.sandbox, &guest(), None, false))
        .expect("install http-caller");
    (tmp, lily, rt)
}

#[test]
fn a_job_grants_http_from_policy_records_denials_with_the_line_to_add_and_replays_offline() {
    let server = TestServer::start(|_| answer(200, "{\"ok\":true}"));
    let policy = format!("version: 1\nrunnables:\n  \"http-caller.v1\":\n    http: [\"{}\"]\n", server.url("/api"));
    let (_tmp, lily, rt) = job_root(&policy, "", json!([get(&server.url("/api/x")), get("http://127.0.0.1:9/other?k=v")]));
    let run = rt.block_on(lily.run_job("fetch", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Succeeded, "{:?}", run.receipt.error);
    let totals = run.receipt.http.expect("the receipt counts the run's requests");
    assert_eq!((totals.requests, totals.denied, totals.response_bytes), (2, 1, 11));
    let decided = serde_json::to_string(&run.receipt.policy).expect("policy");
    assert!(decided.contains(&format!("http {}", server.url("/api"))), "{decided}");
    let events = std::fs::read_to_string(run.run_dir.join("events.jsonl")).expect("events");
    let denied: Vec<Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "capability_denied")
        .collect();
    assert_eq!(denied.len(), 1, "{events}");
    let d = &denied[0];
    assert_eq!(d["capability"], "http", "{d}");
    assert_eq!(d["target"], "http://127.0.0.1:9/other");
    assert_eq!(
        d["hint"],
        "to allow it, add \"http://127.0.0.1:9\" under runnables.\"http-caller.v1\".http in .lily/policy.yaml"
    );
    assert_eq!(events.matches("\"http_call\"").count(), 2);
    assert!(!events.contains("k=v"), "events show URLs without their query");

    drop(server);
    let (rep, original) = rt
        .block_on(lily::jobs::replay::replay(&lily, &run.receipt.run_id, Default::default(), Default::default()))
        .expect("replay");
    let v = lily::jobs::replay::verify(&run.run_dir, &original, &rep.run_dir, &rep.receipt);
    assert!(v.identical, "{v:?}");
}

#[test]
fn policy_refuses_bad_http_entries_and_runtime_http_above_the_ceiling() {
    let bad = "version: 1\nrunnables:\n  a:\n    http: [\"api.github.com\"]\n";
    let e = lily::policy::Policy::parse(std::path::Path::new("p.yaml"), bad, None).expect_err("a bad entry");
    assert!(e.message.contains("runnables.a.http") && e.message.contains("scheme://host"), "{}", e.message);
    let policy = "version: 1\nlimits:\n  http_max_response_bytes: 1000\nrunnables: {}\n";
    let (_tmp, lily, rt) = job_root(policy, ", http: {max_response_bytes: 5000}", json!([]));
    let run = rt
        .block_on(lily.run_job("fetch", lily::jobs::RunOptions::default()))
        .expect("a denied run is a run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Denied);
    let e = run.receipt.error.expect("the error");
    assert_eq!(e.code, lily::error::ErrorCode::JobPolicyDenied);
    assert!(
        e.message
            .contains("runtime.http.max_response_bytes = 5000 exceeds the policy ceiling limits.http_max_response_bytes = 1000"),
        "{}",
        e.message
    );
}

#[test]
fn the_tape_keeps_no_credentials_query_values_or_secret_headers_but_the_guest_gets_them() {
    let server = TestServer::start(|r| match r.target.as_str() {
        t if t.starts_with("/big-headers") => Answer {
            status: 200,
            headers: (0..40).map(|i| (format!("x-filler-{i}"), "f".repeat(4000))).collect(),
            ..Answer::default()
        },
        _ => Answer {
            status: 200,
            headers: vec![("set-cookie".into(), "session=srv-cookie-8d1f".into()), ("x-request-id".into(), "r-1".into())],
            body: b"ok".to_vec(),
            ..Answer::default()
        },
    });
    let w = World::new();
    let allow = vec![server.url("/")];
    let limits = HttpLimits {
        max_response_bytes: 64 << 10,
        ..HttpLimits::default()
    };
    let with_secrets = json!({"url": server.url("/a?access_token=q-secret-77&page=2"),
        "headers": [["api-key", "azure-secret-55"], ["private-token", "gl-secret-66"], ["x-trace", "visible"]]});
    let r = w.run_with(
        &allow,
        limits,
        json!([
            with_secrets.clone(),
            get(&format!("http://user:pw-secret-44@127.0.0.1:{}/b", server.port)),
            get(&server.url("/big-headers")),
        ]),
        None,
    );
    let res = results(&r);
    assert_eq!(res[0]["status"], 200, "{res:?}");
    assert_eq!(
        server.requests()[0].header("api-key"),
        Some("azure-secret-55"),
        "the guest's header is sent as is"
    );
    assert_eq!(res[1]["error"], "HTTP-request-denied");
    assert_eq!(
        res[2]["error"], "HTTP-response-header-section-size",
        "160 KB of headers against a 64 KiB response budget: {res:?}"
    );
    let tape = serde_json::to_string(&r.tape).expect("tape");
    for secret in ["q-secret-77", "azure-secret-55", "gl-secret-66", "pw-secret-44", "srv-cookie-8d1f"] {
        assert!(!tape.contains(secret), "{secret} is on the tape: {tape}");
    }
    assert!(tape.contains("visible") && tape.contains("query_sha256") && tape.contains("r-1"), "{tape}");
    let denied = serde_json::to_string(&r.denied_http).expect("json");
    assert!(!denied.contains("pw-secret-44"), "{denied}");
    // The replay answers with what the tape holds.
    let again = w.run_with(&allow, limits, json!([with_secrets]), Some(r.tape.clone()));
    assert!(
        again.replay_misses.is_empty(),
        "the same request matches its scrubbed record: {:?}",
        again.replay_misses
    );
}
