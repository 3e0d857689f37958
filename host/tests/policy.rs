//! Capability policy and approval gates, through the library: limits, grant
//! kinds, hints, effect decisions, approve / deny / expiry / races, and
//! traversal attempts.

use lily::ErrorCode;
use lily::jobs::{Lily, RunOptions};
use lily::policy::approvals::{self, State};
use lily::policy::{EffectMode, Policy};
use lily::runs::{self, RunStatus};
use lily::spec;
use lily::workspace::Root;
use std::path::{Path, PathBuf};

/// A receipt record as JSON (the receipt's contract is its JSON shape).
#[allow(dead_code)]
fn json<T: serde::Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).expect("serialize")
}

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"))).expect("test guest built")
}

struct Env {
    _tmp: tempfile::TempDir,
    lily: Lily,
    rt: tokio::runtime::Runtime,
}

fn env(policy: &str) -> Env {
    let tmp = tempfile::tempdir().expect("tmp");
    lily::init::init_at(tmp.path()).expect("init");
    std::fs::write(tmp.path().join(".lily/policy.yaml"), policy).expect("policy");
    let root = Root::at(tmp.path().canonicalize().expect("canon"), None).expect("root");
    let lily = Lily::open(root).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    rt.block_on(lily.runnables.install(&lily.sandbox, &guest("probe"), None, false))
        .expect("install probe");
    Env { _tmp: tmp, lily, rt }
}

const BASE: &str = "version: 1\n";

fn probe_job(e: &Env, id: &str, input: &str, bindings_extra: &str, runtime: &str) {
    let text = format!(
        "id: {id}\ntitle: {id}\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {input}\nbindings: {{ runnable: probe.v1{bindings_extra} }}\ntrigger: {{ type: manual }}\nruntime: {runtime}\noutput: {{}}\n"
    );
    std::fs::write(e.lily.root.jobs_dir.join(format!("{id}.job.yaml")), text).expect("write job");
}

fn run(e: &Env, id: &str) -> lily::jobs::RunResult {
    e.rt.block_on(e.lily.run_job(id, RunOptions::default())).expect("run")
}

fn spec_with_runtime(runtime: &str) -> spec::JobSpec {
    let text = format!(
        "id: j\ntitle: j\ntarget: {{ kind: blueprint, id: step.v1, input: {{}} }}\nbindings: {{ runnable: probe.v1 }}\ntrigger: {{ type: manual }}\nruntime: {runtime}\noutput: {{}}\n"
    );
    spec::parse(Path::new("j.job.yaml"), &text).expect("spec")
}

#[test]
fn each_limit_allowed_at_the_ceiling_and_denied_above_it() {
    let p = Policy::parse(
        Path::new("policy.yaml"),
        "version: 1\nlimits: { timeout_seconds: 60, retry_max: 2, max_parallelism: 4, max_parallel_runs: 3, fuel: 1000000, memory_mb: 128 }\n",
        None,
    )
    .expect("policy");
    for (cap, ok, bad) in [
        ("timeout_seconds", "60", "61"),
        ("retry_max", "2", "3"),
        ("max_parallelism", "4", "5"),
        ("max_parallel_runs", "3", "4"),
        ("fuel", "1000000", "1000001"),
        ("memory_mb", "128", "129"),
    ] {
        let with = |v: &str| {
            let mut base = std::collections::BTreeMap::from([
                ("timeout_seconds", "60"),
                ("retry_max", "2"),
                ("max_parallelism", "4"),
                ("max_parallel_runs", "3"),
                ("fuel", "1000000"),
                ("memory_mb", "128"),
            ]);
            base.insert(cap, v);
            format!("{{ {} }}", base.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
        };
        p.check_runtime(&spec_with_runtime(&with(ok)))
            .unwrap_or_else(|e| panic!("{cap}={ok} allowed: {e}"));
        let runtime = with(bad);
        let e = p.check_runtime(&spec_with_runtime(&runtime)).expect_err("denied");
        assert_eq!(e.code, ErrorCode::JobPolicyDenied);
        assert!(e.message.contains(cap) && e.message.contains(bad), "names cap and asked value: {}", e.message);
        assert!(e.message.contains(ok), "names the ceiling: {}", e.message);
    }
}

#[test]
fn a_denied_workspace_gets_a_hint_with_the_policy_lines_to_add_and_an_auditable_receipt() {
    let e = env(BASE);
    std::fs::create_dir_all(e.lily.root.path.join("data")).expect("mkdir");
    probe_job(&e, "ws", "{ op: list, path: /workspace }", ", workspace: data", "{}");
    let r = run(&e, "ws");
    assert_eq!(r.receipt.status, RunStatus::Denied);
    let err = r.receipt.error.as_ref().expect("error");
    assert_eq!(err.code, "job_policy_denied");
    let hint = err.cause["hint"].as_str().expect("hint");
    assert!(
        hint.contains("runnables:\n  \"probe.v1\":\n    fs:\n      - path: data\n        mode: ro"),
        "{hint}"
    );
    let events = runs::read_events(&r.run_dir);
    assert!(events.iter().any(|ev| ev["type"] == "policy_denied" && ev["error_code"] == "job_policy_denied"));
    // Adding exactly the hinted lines makes it pass.
    std::fs::write(
        e.lily.root.policy_path(),
        format!("version: 1\n{}\n", &hint[hint.find("runnables:").expect("lines")..]),
    )
    .expect("policy");
    let r = run(&e, "ws");
    assert_eq!(r.receipt.status, RunStatus::Succeeded, "{:?}", r.receipt.error);
    let grants = &json(&r.receipt.policy)["grants"]["step:probe.v1"];
    assert_eq!(grants["dirs"][0]["perms"], "ro");
}

#[test]
fn fs_grants_ro_and_rw_are_enforced() {
    let e = env("version: 1\nrunnables:\n  \"probe.v1\":\n    fs:\n      - { path: state, mode: rw }\n      - { path: docs, mode: ro }\n");
    for d in ["state", "docs"] {
        std::fs::create_dir_all(e.lily.root.path.join(d)).expect("mkdir");
    }
    // rw grant: writable.
    probe_job(&e, "w", "{ op: write, path: /state/x.txt, content: hi }", ", state_dir: state", "{}");
    let r = run(&e, "w");
    assert_eq!(r.receipt.payload["result"]["ok"], true, "{:?}", r.receipt);
    assert_eq!(std::fs::read_to_string(e.lily.root.path.join("state/x.txt")).expect("written"), "hi");
    // A ro grant cannot be bound as state_dir (rw): denied.
    probe_job(&e, "w2", "{ op: write, path: /state/x.txt, content: hi }", ", state_dir: docs", "{}");
    let r = run(&e, "w2");
    assert_eq!(r.receipt.status, RunStatus::Denied);
    // ro grant as workspace: readable, not writable.
    probe_job(&e, "r", "{ op: write, path: /workspace/y.txt, content: hi }", ", workspace: docs", "{}");
    let r = run(&e, "r");
    assert_eq!(r.receipt.payload["result"]["ok"], false);
    assert!(!e.lily.root.path.join("docs/y.txt").exists());
}

#[test]
fn env_grants_pass_names_and_never_record_values() {
    let secret = "s3cr3t-value-that-must-not-leak";
    // SAFETY: tests in this binary do not read LILY_TEST_SECRET concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("LILY_TEST_SECRET", secret)
    };
    let e = env("version: 1\nrunnables:\n  \"probe.v1\":\n    env: [LILY_TEST_SECRET]\n");
    probe_job(&e, "env", "{ op: env_all }", ", env: [LILY_TEST_SECRET]", "{}");
    let r = run(&e, "env");
    assert_eq!(r.receipt.payload["result"]["names"], serde_json::json!(["LILY_TEST_SECRET"]));
    for f in ["run_receipt.json", "events.jsonl", "summary.md"] {
        let text = std::fs::read_to_string(r.run_dir.join(f)).expect("read");
        assert!(!text.contains(secret), "{f} leaks the env value");
    }
    // Not in policy: denied.
    probe_job(&e, "env2", "{ op: env_all }", ", env: [HOME]", "{}");
    let r = run(&e, "env2");
    assert_eq!(r.receipt.status, RunStatus::Denied);
    assert!(
        r.receipt.error.as_ref().expect("err").cause["hint"]
            .as_str()
            .expect("hint")
            .contains("env: [HOME]")
    );
}

#[test]
fn network_is_denied_without_a_grant_and_the_attempt_is_an_event() {
    let e = env(BASE);
    probe_job(&e, "net", "{ op: connect, addr: \"127.0.0.1:9\" }", "", "{}");
    let r = run(&e, "net");
    assert_eq!(r.receipt.payload["result"]["ok"], false);
    let events = runs::read_events(&r.run_dir);
    let denied: Vec<_> = events.iter().filter(|ev| ev["type"] == "capability_denied").collect();
    assert_eq!(denied.len(), 1, "{events:?}");
    assert!(denied[0]["target"].as_str().expect("target").contains("127.0.0.1:9"));
    assert_eq!(denied[0]["capability"], "network");
    // Granted: the allow-list opens exactly that address.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::fs::write(
        e.lily.root.policy_path(),
        format!("version: 1\nrunnables:\n  \"probe.v1\":\n    network: [\"{addr}\"]\n"),
    )
    .expect("policy");
    probe_job(&e, "net2", &format!("{{ op: connect, addr: \"{addr}\" }}"), "", "{}");
    let r = run(&e, "net2");
    assert_eq!(r.receipt.payload["result"]["ok"], true, "{:?}", r.receipt.payload);
}

#[test]
fn effect_decisions_auto_approve_require_approval_and_deny() {
    let p = Policy::parse(
        Path::new("policy.yaml"),
        "version: 1\neffects:\n  write_file: { default: require_approval, auto_approve: [\".lily/out/**\"], deny: [\"secrets/**\"] }\n  send: { default: deny }\n",
        None,
    )
    .expect("policy");
    assert_eq!(p.decide_effect("write_file", ".lily/out/a.md").0, EffectMode::AutoApprove);
    assert_eq!(p.decide_effect("write_file", "src/a.rs").0, EffectMode::RequireApproval);
    assert_eq!(p.decide_effect("write_file", "secrets/key").0, EffectMode::Deny);
    assert_eq!(p.decide_effect("send", "ops-channel").0, EffectMode::Deny);
    assert_eq!(p.decide_effect("publish", "s3://x").0, EffectMode::RequireApproval);
}

fn propose(e: &Env, id: &str, path: &str, content: &str) -> lily::jobs::RunResult {
    probe_job(e, id, &format!("{{ op: propose_write, path: \"{path}\", content: \"{content}\" }}"), "", "{}");
    run(e, id)
}

#[test]
fn approve_writes_exactly_the_proposed_bytes_once_even_with_two_approvers() {
    let e = env(BASE);
    let r = propose(&e, "p", "notes/out.txt", "exact bytes");
    let req = &json(&r.receipt.approvals_requested[0]);
    assert_eq!(req["state"], "pending");
    let id = req["id"].as_str().expect("id").to_string();
    let target = e.lily.root.path.join("notes/out.txt");
    assert!(!target.exists(), "nothing written before approval");
    let root = e.lily.root.clone();
    let results: Vec<Result<approvals::Decided, approvals::ApprovalError>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(|| approvals::approve(&root, &id, false))).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one application: {results:?}");
    assert_eq!(std::fs::read_to_string(&target).expect("written"), "exact bytes");
    assert_eq!(approvals::load(&e.lily.root, &id).expect("req").state, State::Applied);
    let receipt = runs::read_receipt(&r.run_dir).expect("receipt");
    assert_eq!(json(&receipt.approvals_requested[0])["state"], "applied");
    assert!(runs::read_events(&r.run_dir).iter().any(|ev| ev["type"] == "approval_applied"));
}

#[test]
fn approve_refuses_a_changed_target_unless_forced() {
    let e = env(BASE);
    std::fs::create_dir_all(e.lily.root.path.join("notes")).expect("mkdir");
    std::fs::write(e.lily.root.path.join("notes/out.txt"), "v1").expect("w");
    let r = propose(&e, "p", "notes/out.txt", "v2");
    let id = json(&r.receipt.approvals_requested[0])["id"].as_str().expect("id").to_string();
    std::fs::write(e.lily.root.path.join("notes/out.txt"), "changed meanwhile").expect("w");
    let err = approvals::approve(&e.lily.root, &id, false).expect_err("refused").to_string();
    assert!(err.contains("changed since the proposal"), "{err}");
    approvals::approve(&e.lily.root, &id, true).expect("forced");
    assert_eq!(std::fs::read_to_string(e.lily.root.path.join("notes/out.txt")).expect("r"), "v2");
}

#[test]
fn deny_and_expiry_write_nothing() {
    let e = env(BASE);
    let r = propose(&e, "p", "notes/denied.txt", "x");
    let id = json(&r.receipt.approvals_requested[0])["id"].as_str().expect("id").to_string();
    approvals::deny(&e.lily.root, &id, Some("not today")).expect("deny");
    assert!(approvals::approve(&e.lily.root, &id, false).is_err(), "a denied request cannot be approved");
    assert!(!e.lily.root.path.join("notes/denied.txt").exists());

    let e = env("version: 1\neffects:\n  approval_ttl_seconds: 0\n");
    let r = propose(&e, "p", "notes/expired.txt", "x");
    let id = json(&r.receipt.approvals_requested[0])["id"].as_str().expect("id").to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(approvals::load(&e.lily.root, &id).expect("req").state, State::Expired);
    assert!(approvals::approve(&e.lily.root, &id, false).is_err());
    assert!(!e.lily.root.path.join("notes/expired.txt").exists());
}

#[test]
fn auto_approved_effects_apply_and_denied_ones_do_not() {
    let e = env("version: 1\neffects:\n  write_file: { default: deny, auto_approve: [\".lily/out/**\"] }\n");
    let r = propose(&e, "a", ".lily/out/report.txt", "auto");
    assert_eq!(json(&r.receipt.approvals_requested[0])["state"], "applied");
    assert_eq!(std::fs::read_to_string(e.lily.root.path.join(".lily/out/report.txt")).expect("r"), "auto");
    let r = propose(&e, "d", "elsewhere.txt", "no");
    assert_eq!(json(&r.receipt.approvals_requested[0])["state"], "denied");
    assert!(!e.lily.root.path.join("elsewhere.txt").exists());
}

#[test]
fn traversal_in_effect_paths_is_refused_before_anything_is_written() {
    let e = env("version: 1\neffects:\n  write_file: { default: auto_approve }\n");
    let outside = tempfile::tempdir().expect("outside");
    for (i, path) in ["../escape.txt", "/tmp/lily-abs-escape.txt", "a/../../escape.txt"].iter().enumerate() {
        let r = propose(&e, &format!("t{i}"), path, "x");
        assert_eq!(
            r.receipt.payload["result"]["ok"], false,
            "{path}: the host refuses to record it: {:?}",
            r.receipt.payload
        );
        assert!(r.receipt.approvals_requested.is_empty());
    }
    assert!(!Path::new("/tmp/lily-abs-escape.txt").exists());
    assert!(!e.lily.root.path.parent().expect("parent").join("escape.txt").exists());
    // A symlink inside the root that leads out: refused when proposed
    // (effect targets are walked without following links), never applied.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), e.lily.root.path.join("link")).expect("symlink");
        let r = propose(&e, "sym", "link/pwned.txt", "x");
        assert_eq!(
            json(&r.receipt.approvals_requested[0])["state"],
            "denied",
            "{:?}",
            r.receipt.approvals_requested
        );
        assert!(!outside.path().join("pwned.txt").exists());
    }
}

/// A long-lived `Lily` (the scheduler's) parses the policy once per
/// version of the file: every change — written, broken, fixed, removed —
/// is seen by the next run.
#[test]
fn the_policy_is_read_again_whenever_the_file_changes() {
    let e = env(BASE);
    let path = e.lily.root.policy_path();
    let first = e.lily.policy().expect("valid");
    assert!(
        std::sync::Arc::ptr_eq(&first, &e.lily.policy().expect("valid")),
        "unchanged file: the parsed copy"
    );
    assert!(first.file.runnables.is_empty());

    std::fs::write(&path, "version: 1\nrunnables:\n  \"probe.v1\":\n    env: [HOME]\n").expect("policy");
    let p = e.lily.policy().expect("valid");
    assert_eq!(p.file.runnables.len(), 1, "the edit is seen");

    std::fs::write(&path, "version: 1\nbogus: true\n").expect("policy");
    let err = e.lily.policy().expect_err("invalid");
    assert_eq!(err.code, ErrorCode::JobPolicyDenied);
    assert!(err.message.contains("bogus"), "{}", err.message);

    std::fs::remove_file(&path).expect("rm");
    let p = e.lily.policy().expect("defaults");
    assert!(p.source.is_none(), "no file: deny-everything defaults");
}
