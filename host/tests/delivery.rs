//! Delivered effects: an approved `send` / `publish` reaches the destination
//! the operator configured — exactly once, never before approval, never on
//! deny, expiry or replay — and its state says what really happened.

#[path = "../../tests/support/fake_llm.rs"]
mod fake_llm;
use fake_llm::{FakeProvider, HOOK_TOKEN as TOKEN, Reply, files_holding, init_root, set_test_secrets, status_reply};

use lily::jobs::{Lily, RunOptions};
use lily::policy::approvals::{self, State};
use lily::workspace::Root;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"))).expect("test guest built")
}

fn ok_hook() -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: "{}".into(),
        delay: Duration::ZERO,
    }
}

struct World {
    _tmp: tempfile::TempDir,
    lily: Lily,
    rt: tokio::runtime::Runtime,
}

/// A root whose config has a webhook `hook` (port `port`, token from the
/// environment) and a directory `reports`, whose policy asks for approval
/// of every send and publish (auto-approving sends to `auto-hook`), with
/// `probe.v1` installed and a job `ask` running it with `input`.
fn world(port: u16, input: Value) -> World {
    set_test_secrets();
    let (tmp, dir) = init_root(
        &format!(
            "destinations:\n  hook: {{kind: webhook, url: \"http://127.0.0.1:{port}/hook\", headers_from_env: {{Authorization: LILY_TEST_HOOK_TOKEN}}, timeout_seconds: 2, max_attempts: 3}}\n  auto-hook: {{kind: webhook, url: \"http://127.0.0.1:{port}/auto\", max_attempts: 1}}\n  reports: {{kind: directory, path: out/reports}}\n"
        ),
        "version: 1\nrunnables: {}\neffects:\n  write_file: {default: require_approval}\n  publish: {default: require_approval}\n  send: {default: require_approval, auto_approve: [auto-hook]}\n",
        &[(
            "ask",
            format!(
                "id: ask\ntitle: ask\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {input}\nbindings: {{ runnable: probe.v1 }}\ntrigger: {{ type: manual }}\nruntime: {{ timeout_seconds: 30 }}\noutput: {{}}\n"
            ),
        )],
    );
    let lily = Lily::open(Root::at(dir, None).expect("root")).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(lily.runnables.install(&lily.sandbox, &guest("probe"), None, false))
        .expect("install probe");
    World { _tmp: tmp, lily, rt }
}

fn run(w: &World) -> lily::jobs::RunResult {
    let r = w.rt.block_on(w.lily.run_job("ask", RunOptions::default())).expect("run");
    assert_eq!(r.receipt.status, lily::runs::RunStatus::Succeeded, "{:?}", r.receipt.error);
    r
}

fn only_request(r: &lily::jobs::RunResult) -> String {
    assert_eq!(r.receipt.approvals_requested.len(), 1, "{:?}", r.receipt.approvals_requested);
    r.receipt.approvals_requested[0].id.clone()
}

fn hook_posts(fake: &FakeProvider) -> Vec<(String, Value)> {
    fake.requests()
        .into_iter()
        .filter(|(h, _, _)| h.starts_with("POST /hook"))
        .map(|(h, b, _)| (h, b))
        .collect()
}

#[test]
fn a_send_reaches_the_webhook_exactly_once_after_approve_and_never_before_or_twice() {
    let fake = FakeProvider::start(vec![ok_hook()]);
    let w = world(
        fake.port,
        json!({"op": "propose_send", "channel": "hook", "message": "{\"text\": \"deploy done\"}"}),
    );
    let r = run(&w);
    let id = only_request(&r);
    assert_eq!(approvals::load(&w.lily.root, &id).expect("request").state, State::Pending);
    assert!(hook_posts(&fake).is_empty(), "nothing is sent before approval");

    // Two approvers at once: one delivery.
    let root = w.lily.root.clone();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(|| approvals::approve(&root, &id, false))).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.as_ref().is_ok_and(|d| d.state == State::Delivered)).count(),
        1,
        "{results:?}"
    );
    let posts = hook_posts(&fake);
    assert_eq!(posts.len(), 1, "exactly one delivery");
    let head = posts[0].0.to_ascii_lowercase();
    assert!(head.contains(&format!("idempotency-key: {id}")), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        head.contains(&format!("authorization: {TOKEN}").to_ascii_lowercase()),
        "the header comes from the environment"
    );
    assert_eq!(posts[0].1, json!({"text": "deploy done"}), "the proposed bytes, as they were");

    let req = approvals::load(&w.lily.root, &id).expect("request");
    assert_eq!(req.state, State::Delivered);
    let d = req.delivery.expect("delivery record");
    assert_eq!((d.status, d.attempts, d.error.as_deref()), (Some(200), 1, None));
    assert!(approvals::approve(&w.lily.root, &id, false).is_err(), "a second approve is refused");
    assert!(approvals::retry(&w.lily.root, &id).is_err(), "a retry after delivery is refused");
    assert_eq!(hook_posts(&fake).len(), 1);
    // The receipt of the run follows the request.
    let receipt: Value = serde_json::from_slice(&std::fs::read(r.run_dir.join("run_receipt.json")).expect("receipt")).expect("json");
    assert_eq!(receipt["approvals_requested"][0]["state"], "delivered");
    assert!(files_holding(&w.lily.root.path, TOKEN).is_empty(), "the token was written under the root");
}

#[test]
fn deny_expiry_and_replay_never_deliver() {
    let fake = FakeProvider::start(vec![ok_hook()]);
    let w = world(fake.port, json!({"op": "propose_send", "channel": "hook", "message": "hello"}));
    let first = run(&w);
    let id = only_request(&first);
    approvals::deny(&w.lily.root, &id, Some("no")).expect("deny");
    assert!(approvals::approve(&w.lily.root, &id, false).is_err());
    // A second request outlives its TTL (its expiry moved into the past, as
    // time would): it reads as expired, approving it is refused, nothing is sent.
    let second = only_request(&run(&w));
    let file = w.lily.root.state_dir().join("approvals").join(format!("{second}.json"));
    let mut req: Value = serde_json::from_slice(&std::fs::read(&file).expect("request")).expect("json");
    req["expires_at"] = json!("2000-01-01T00:00:00.000Z");
    std::fs::write(&file, serde_json::to_vec(&req).expect("json")).expect("write");
    assert_eq!(approvals::load(&w.lily.root, &second).expect("load").state, State::Expired);
    let e = approvals::approve(&w.lily.root, &second, false).expect_err("an expired request cannot be approved");
    assert!(e.to_string().contains("expired"), "{e}");
    // A replay proposes again, and delivers nothing by itself.
    let (rep, _) =
        w.rt.block_on(lily::jobs::replay::replay(
            &w.lily,
            &first.receipt.run_id,
            Default::default(),
            Default::default(),
        ))
        .expect("replay");
    assert_eq!(rep.receipt.approvals_requested[0].state, State::Pending);
    assert!(hook_posts(&fake).is_empty(), "deny and replay send nothing");
}

#[test]
fn a_503_then_200_is_retried_to_delivered_and_a_dead_endpoint_fails_until_retry_delivers() {
    let fake = FakeProvider::start(vec![status_reply(503, &[]), ok_hook()]);
    let w = world(fake.port, json!({"op": "propose_send", "channel": "hook", "message": "retry me"}));
    let id = only_request(&run(&w));
    let d = approvals::approve(&w.lily.root, &id, false).expect("approve");
    assert_eq!(d.state, State::Delivered, "{}", d.message);
    let rec = approvals::load(&w.lily.root, &id).expect("request").delivery.expect("record");
    assert_eq!((rec.attempts, rec.status), (2, Some(200)));
    assert_eq!(hook_posts(&fake).len(), 2);

    // A dead endpoint: delivery_failed (not applied, not pending); retry once it is back.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let w = world(dead, json!({"op": "propose_send", "channel": "hook", "message": "later"}));
    let id = only_request(&run(&w));
    let d = approvals::approve(&w.lily.root, &id, false).expect("approve records the failure");
    assert_eq!(d.state, State::DeliveryFailed, "{}", d.message);
    assert!(
        d.message.contains("could not be reached") && d.message.contains("approvals retry"),
        "{}",
        d.message
    );
    let rec = approvals::load(&w.lily.root, &id).expect("request").delivery.expect("record");
    assert_eq!(rec.attempts, 3, "max_attempts");
    // Point the destination at a live server and retry.
    let back = FakeProvider::start(vec![ok_hook()]);
    let cfg = w.lily.root.path.join(".lily/config.yaml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, text.replace(&format!("127.0.0.1:{dead}"), &format!("127.0.0.1:{}", back.port))).expect("config");
    let root = Root::at(w.lily.root.path.clone(), None).expect("reopen");
    let d = approvals::retry(&root, &id).expect("retry");
    assert_eq!(d.state, State::Delivered, "{}", d.message);
    assert_eq!(hook_posts(&back).len(), 1);
    assert!(approvals::retry(&root, &id).is_err(), "delivered once: a second retry is refused");
}

#[test]
fn a_publish_to_a_directory_writes_the_exact_bytes_and_an_unknown_destination_is_refused_at_proposal() {
    let fake = FakeProvider::start(vec![ok_hook()]);
    let w = world(fake.port, json!({"op": "propose_publish", "artifact": "result.json", "to": "reports"}));
    let r = run(&w);
    let id = only_request(&r);
    let d = approvals::approve(&w.lily.root, &id, false).expect("approve");
    assert_eq!(d.state, State::Delivered, "{}", d.message);
    let written = std::fs::read(w.lily.root.path.join("out/reports/result.json")).expect("published");
    assert_eq!(written, std::fs::read(r.run_dir.join("result.json")).expect("artifact"), "the exact bytes");
    let rec = approvals::load(&w.lily.root, &id).expect("request").delivery.expect("record");
    assert_eq!(rec.path.as_deref(), Some("out/reports/result.json"));

    let w = world(fake.port, json!({"op": "propose_send", "channel": "nowhere", "message": "x"}));
    let r = run(&w);
    let id = only_request(&r);
    let req = approvals::load(&w.lily.root, &id).expect("request");
    assert_eq!(req.state, State::Denied, "refused at proposal");
    assert!(req.decided_by.contains("unknown destination \"nowhere\""), "{}", req.decided_by);
}

#[test]
fn an_auto_approved_send_is_delivered_when_the_run_succeeds() {
    let fake = FakeProvider::start(vec![ok_hook()]);
    let w = world(fake.port, json!({"op": "propose_send", "channel": "auto-hook", "message": "auto"}));
    let r = run(&w);
    assert_eq!(r.receipt.approvals_requested[0].state, State::Delivered);
    assert_eq!(fake.requests().iter().filter(|(h, _, _)| h.starts_with("POST /auto")).count(), 1);
}

/// Hostile: a publish names a path instead of one of its run's artifacts,
/// to have the host read a file outside the run and deliver it. Refused to
/// the guest when proposed; nothing is read, recorded or delivered.
#[test]
fn a_publish_of_a_path_outside_the_run_is_refused_and_nothing_is_read() {
    let fake = FakeProvider::start(vec![ok_hook()]);
    for artifact in ["../../../policy.yaml", "../../../../.lily/policy.yaml", "/etc/hostname", "..", ".run.lock"] {
        let w = world(fake.port, json!({"op": "propose_publish", "artifact": artifact, "to": "reports"}));
        let r = run(&w);
        assert!(r.receipt.approvals_requested.is_empty(), "{artifact}: {:?}", r.receipt.approvals_requested);
        let p = &r.receipt.payload["result"];
        assert_eq!(p["ok"], false, "{artifact}: {p}");
        assert!(p["error"].as_str().unwrap_or("").contains("is not an artifact name"), "{artifact}: {p}");
        assert!(!w.lily.root.path.join("out/reports").exists(), "{artifact}: nothing delivered");
    }
}
