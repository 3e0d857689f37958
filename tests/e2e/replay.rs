//! `lily jobs replay`: what a replay checks before it compares outputs (the
//! workspace files the run read), where the verification is recorded, and
//! that an earlier run stays replayable after `runnables install --force`.

use crate::harness::{Env, events, guest_path, receipt, step_job};

#[test]
fn a_changed_workspace_file_is_named_before_the_outputs_are_compared() {
    let env = Env::new();
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    let original = env.only_run("demo");
    let r = receipt(&original);
    // Every step recorded what it read through its grant.
    let reads: Vec<&serde_json::Value> = r["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["reads"].as_array().into_iter().flatten())
        .collect();
    let app = reads
        .iter()
        .find(|x| x["path"] == "/workspace/src/app.py")
        .unwrap_or_else(|| panic!("src/app.py was read: {reads:?}"));
    let before = std::fs::read(env.lily_dir().join("examples/workspace/src/app.py")).expect("app.py");
    assert_eq!(app["size"], before.len());
    let want = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&before)));
    assert_eq!(app["sha256"], want.as_str());

    // Unchanged: identical, recorded in the replay's receipt and events.
    let run_id = r["run_id"].as_str().expect("id").to_string();
    let same = env.lily(&["jobs", "replay", &run_id, "--verify"]);
    same.expect_code(0);
    assert!(same.stdout.contains("workspace        unchanged"), "{}", same.stdout);
    let runs = env.run_dirs("demo");
    let rep = receipt(&runs[1]);
    assert_eq!(rep["verify"]["identical"], true, "{}", rep["verify"]);
    assert!(events(&runs[1]).iter().any(|e| e["type"] == "replay_verified" && e["identical"] == true));

    // Edit a file the run read: the replay names it first, with both hashes.
    std::fs::write(env.lily_dir().join("examples/workspace/src/app.py"), b"print('changed')\n").expect("edit");
    let differs = env.lily(&["jobs", "replay", &run_id, "--verify"]);
    differs.expect_code(20);
    assert!(
        differs.stdout.contains(&format!(
            "verify: differs (first difference: workspace changed: /workspace/src/app.py ({want} → sha256:"
        )),
        "{}",
        differs.stdout
    );
    let runs = env.run_dirs("demo");
    let rep = receipt(&runs[2]);
    assert_eq!(rep["verify"]["identical"], false);
    assert_eq!(rep["verify"]["workspace_changes"][0]["path"], "/workspace/src/app.py", "{}", rep["verify"]);
    assert_eq!(rep["verify"]["workspace_changes"][0]["original"], want.as_str());
    // `jobs runs` says which replay differed; `jobs show` too.
    let listing = env.lily(&["jobs", "runs", "demo"]);
    listing.expect_code(0);
    assert!(
        listing.stdout.contains(&format!("replay of {run_id} (verified: DIFFERS)")),
        "{}",
        listing.stdout
    );
    assert!(
        listing.stdout.contains(&format!("replay of {run_id} (verified: identical)")),
        "{}",
        listing.stdout
    );
    let rep_id = rep["run_id"].as_str().expect("id");
    let show = env.lily(&["jobs", "show", rep_id]);
    assert!(show.stdout.contains("verified  DIFFERS from"), "{}", show.stdout);
}

/// A copy of a component with a custom section appended: a different
/// digest, the same behaviour.
fn rebuilt(bytes: &[u8]) -> Vec<u8> {
    let name = b"lily-test-rebuild";
    let payload = b"2";
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_run_stays_replayable_after_install_force_replaces_its_component() {
    let env = Env::new();
    env.install("probe");
    env.write_job("p", &step_job("p", "probe.v1", "{ op: sleep, ms: 1 }", "", "{}"));
    env.lily(&["jobs", "run", "p"]).expect_code(0);
    let first = receipt(&env.only_run("p"));
    let digest = first["components"][0]["digest"].as_str().expect("digest").to_string();

    let newer = env.root.join("probe-rebuilt.wasm");
    std::fs::write(&newer, rebuilt(&std::fs::read(guest_path("probe")).expect("probe"))).expect("write");
    let refused = env.lily(&["runnables", "install", &newer.display().to_string()]);
    assert_ne!(refused.code, 0, "same id+version, new digest: refused without --force");
    env.lily(&["runnables", "install", "--force", &newer.display().to_string()]).expect_code(0);
    let listed = env.lily(&["--json", "runnables", "list"]).stdout;
    assert!(!listed.contains(&digest), "the current probe.v1 is the rebuilt one");

    // Both are kept by content…
    let objects = env.lily_dir().join("runnables/.objects");
    let kept: Vec<String> = std::fs::read_dir(&objects)
        .expect("objects dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.contains(&format!("{}.wasm", digest.trim_start_matches("sha256:"))), "{kept:?}");

    // …so the replay runs the recorded digest: no drift, identical.
    let run_id = first["run_id"].as_str().expect("id");
    let out = env.lily(&["jobs", "replay", run_id, "--verify"]);
    out.expect_code(0);
    let runs = env.run_dirs("p");
    let rep = receipt(&runs[1]);
    assert_eq!(rep["components"][0]["digest"], digest.as_str(), "{}", rep["components"]);
    assert!(rep.get("drift").is_none(), "{rep}");

    // A kept object that was tampered with is not used: then it is drift.
    let obj = objects.join(format!("{}.wasm", digest.trim_start_matches("sha256:")));
    let mut bytes = std::fs::read(&obj).expect("object");
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&obj, bytes).expect("tamper");
    let out = env.lily(&["jobs", "replay", run_id]);
    out.expect_code(11);
    assert!(out.stderr.contains("replay refused: components changed"), "{}", out.stderr);
}
