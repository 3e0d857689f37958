//! Deterministic replay and lineage (`lily jobs replay`), through the library.

use lily::ErrorCode;
use lily::jobs::replay::{self, ReplayOptions};
use lily::jobs::{Lily, RunOptions};
use lily::runs::{self, RunStatus};
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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

struct Env {
    _tmp: tempfile::TempDir,
    lily: Lily,
    rt: tokio::runtime::Runtime,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tmp");
    lily::init::init_at(tmp.path()).expect("init");
    let root = Root::at(tmp.path().canonicalize().expect("canon"), None).expect("root");
    let lily = Lily::open(root).expect("open");
    let e = Env { _tmp: tmp, lily, rt: rt() };
    e.rt.block_on(e.lily.runnables.install(&e.lily.sandbox, &guest("probe"), None, false))
        .expect("install probe");
    e
}

fn write_job(e: &Env, id: &str, input: &str) {
    let text = format!(
        "id: {id}\ntitle: {id}\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {input}\nbindings: {{ runnable: probe.v1 }}\ntrigger: {{ type: manual }}\nruntime: {{ timeout_seconds: 30 }}\noutput: {{}}\n"
    );
    std::fs::write(e.lily.root.jobs_dir.join(format!("{id}.job.yaml")), text).expect("write job");
}

fn run(e: &Env, id: &str) -> lily::jobs::RunResult {
    e.rt.block_on(e.lily.run_job(id, RunOptions::default())).expect("run")
}

fn do_replay(e: &Env, run_id: &str, allow_drift: bool) -> Result<(lily::jobs::RunResult, runs::Receipt), lily::LilyError> {
    e.rt.block_on(replay::replay(&e.lily, run_id, ReplayOptions { allow_drift }, RunOptions::default()))
}

#[test]
fn council_replay_is_byte_identical_and_records_lineage() {
    let e = env();
    let orig = run(&e, "demo");
    assert_eq!(orig.receipt.status, RunStatus::Succeeded);
    let (rep, original) = do_replay(&e, &orig.receipt.run_id, false).expect("replay");
    assert_eq!(rep.receipt.replay_of.as_deref(), Some(orig.receipt.run_id.as_str()));
    assert_eq!(json(&rep.receipt.trigger)["type"], "replay");
    assert_ne!(rep.receipt.run_id, orig.receipt.run_id);
    assert_eq!(rep.receipt.payload, orig.receipt.payload);
    let read = |d: &Path, n: &str| std::fs::read(d.join(n)).expect("artifact");
    assert_eq!(read(&orig.run_dir, "report.md"), read(&rep.run_dir, "report.md"));
    assert_eq!(read(&orig.run_dir, "evidence.json"), read(&rep.run_dir, "evidence.json"));
    let v = replay::verify(&orig.run_dir, &original, &rep.run_dir, &rep.receipt);
    assert!(v.identical, "{v:?}");
    let events = runs::read_events(&rep.run_dir);
    assert_eq!(events[0]["type"], "job_started");
    assert_eq!(events[0]["replay_of"], orig.receipt.run_id.as_str());
    let runs = runs::list_runs(&e.lily.root.runs_dir(), "demo", 10, None);
    assert!(runs.iter().any(|r| r.replay_of.as_deref() == Some(orig.receipt.run_id.as_str())));
}

#[test]
fn a_guest_reading_clocks_and_randomness_replays_identically() {
    let e = env();
    write_job(&e, "clock", "{ op: clock_random }");
    let a = run(&e, "clock");
    let b = run(&e, "clock");
    assert_eq!(a.receipt.status, RunStatus::Succeeded, "{:?}", a.receipt.error);
    let (ra, rb) = (&a.receipt.payload["result"], &b.receipt.payload["result"]);
    assert!(ra["now_ns"].as_u64().expect("now") > 0);
    assert_ne!(ra, rb, "two normal runs see different clocks / randomness");
    let (rep, _) = do_replay(&e, &a.receipt.run_id, false).expect("replay");
    assert_eq!(rep.receipt.payload, a.receipt.payload, "replay observes the recorded clock reads and seed");
    assert_eq!(rep.receipt.seeds, a.receipt.seeds);
}

/// Append a custom section: a different digest, the same behaviour.
fn with_custom_section(mut bytes: Vec<u8>) -> Vec<u8> {
    let name = b"lily-test";
    let payload = b"drift";
    let size = 1 + name.len() + payload.len();
    bytes.push(0);
    bytes.push(size as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn digest_drift_is_refused_unless_allowed_and_then_recorded() {
    let e = env();
    write_job(&e, "drift", "{ op: env, name: HOME }");
    let orig = run(&e, "drift");
    let old = json(&orig.receipt.components[0])["digest"].as_str().expect("digest").to_string();
    let changed = with_custom_section(guest("probe"));
    e.rt.block_on(e.lily.runnables.install(&e.lily.sandbox, &changed, None, true))
        .expect("reinstall with --force");
    // The recorded digest is kept by content: the replay runs it, no drift.
    let (kept, _) = do_replay(&e, &orig.receipt.run_id, false).expect("replay of the kept digest");
    assert!(kept.receipt.drift.is_empty());
    assert_eq!(json(&kept.receipt.components[0])["digest"], old.as_str());
    // Once that copy is gone (pruned), it is drift.
    let object = e
        .lily
        .root
        .runnables_dir()
        .join(".objects")
        .join(format!("{}.wasm", old.trim_start_matches("sha256:")));
    std::fs::remove_file(&object).expect("the old digest was kept");
    let err = do_replay(&e, &orig.receipt.run_id, false).expect_err("drift refused");
    assert_eq!(err.code, ErrorCode::JobTargetUnresolved);
    assert!(err.message.contains(&old), "names the old digest: {}", err.message);
    assert!(
        err.message.contains(&lily::sandbox::Sandbox::digest(&changed)),
        "names the new digest: {}",
        err.message
    );
    let (rep, _) = do_replay(&e, &orig.receipt.run_id, true).expect("allowed");
    assert_eq!(rep.receipt.drift.len(), 1);
    assert_eq!(json(&rep.receipt.drift[0])["recorded"], old.as_str());
    assert!(runs::read_events(&rep.run_dir).iter().any(|ev| ev["type"] == "component_drift"));
}

#[test]
fn a_replay_never_applies_effects() {
    let e = env();
    write_job(&e, "effect", "{ op: propose_write, path: .lily/out/note.txt, content: hello }");
    let orig = run(&e, "effect");
    assert_eq!(orig.receipt.status, RunStatus::Succeeded, "{:?}", orig.receipt.error);
    let target = e.lily.root.path.join(".lily/out/note.txt");
    assert_eq!(std::fs::read_to_string(&target).expect("auto-approved write applied"), "hello");
    assert_eq!(json(&orig.receipt.approvals_requested[0])["state"], "applied");
    std::fs::remove_file(&target).expect("rm");
    let (rep, _) = do_replay(&e, &orig.receipt.run_id, false).expect("replay");
    assert!(!target.exists(), "replay must not apply the effect");
    let req = &json(&rep.receipt.approvals_requested[0]);
    assert_eq!(req["state"], "pending", "the replay's proposal needs fresh approval: {req}");
}

#[test]
fn verify_detects_a_planted_difference() {
    let e = env();
    let orig = run(&e, "demo");
    let report = orig.run_dir.join("report.md");
    let mut text = std::fs::read_to_string(&report).expect("read");
    text.push_str("planted\n");
    std::fs::write(&report, text).expect("plant");
    let (rep, original) = do_replay(&e, &orig.receipt.run_id, false).expect("replay");
    let v = replay::verify(&orig.run_dir, &original, &rep.run_dir, &rep.receipt);
    assert!(!v.identical);
    assert_eq!(v.first_difference.as_deref(), Some("artifact report.md"));
}

#[test]
fn replaying_an_unknown_run_is_job_not_found() {
    let e = env();
    let err = do_replay(&e, "nope", false).expect_err("missing");
    assert_eq!(err.code, ErrorCode::JobNotFound);
}
