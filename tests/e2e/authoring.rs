//! Authoring runnables, end to end with the real binary and real cargo:
//! `lily runnables new` → `lily runnables build` → `lily runnables install`
//! → a council job → findings in `report.md`, for a specialist and a
//! synthesizer; the `cargo component` route (skipped, saying so, where the
//! tool is not installed); install refusals; and every command of
//! `docs/guest-authoring.md`, so the guide cannot rot.
//!
//! Scaffolded crates build against crates.io (wit-bindgen, serde,
//! serde_json). They share one target directory under the outer build's
//! target dir so those compile once; each test uses its own crate name, so
//! parallel tests never overwrite each other's component.

use crate::harness::{Env, LILY, Out, council_job, events, guest_path, receipt};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Shared `CARGO_TARGET_DIR` of the scaffolded crates.
fn scaffold_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-tests")
}

fn out(o: Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `lily <args>` in the root, with the shared scaffold target dir.
fn lily(env: &Env, args: &[&str]) -> Out {
    out(env
        .cmd()
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .args(args)
        .output()
        .expect("spawn lily"))
}

/// `cargo <args>` in `dir`, with the shared scaffold target dir.
fn cargo(dir: &Path, args: &[&str]) -> Out {
    out(Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .stdin(Stdio::null())
        .output()
        .expect("spawn cargo"))
}

fn cargo_component_available() -> bool {
    let found = Command::new("cargo")
        .args(["component", "--version"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    // `.ci/run` installs it: in CI the route is always tested, never skipped.
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI must have cargo-component (.ci/run installs cargo-component 0.21.1)"
    );
    found
}

/// Say that something was skipped, past the test harness's output capture
/// (which only catches `print!` / `eprint!`), so it shows in CI logs.
fn skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn replace_in(p: &Path, from: &str, to: &str) {
    let text = read(p);
    assert!(text.contains(from), "{} does not contain {from:?}", p.display());
    std::fs::write(p, text.replacen(from, to, 1)).expect("write");
}

/// Grant the example workspace (read-only) to `id`.
fn grant_example_workspace(env: &Env, id: &str) {
    env.add_policy_runnables(&format!("  \"{id}\":\n    fs:\n      - path: .lily/examples/workspace\n        mode: ro\n"));
}

const WORKSPACE_BINDING: &str = "  workspace: .lily/examples/workspace\n";

/// `lily runnables build <name> --json` succeeded: the report.
fn build_ok(env: &Env, args: &[&str]) -> Value {
    let o = lily(env, args);
    assert_eq!(o.code, 0, "build failed\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    let v = o.json();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["check"]["ok"], true, "{v:#}");
    v
}

fn installed_entry(env: &Env, id: &str) -> Value {
    let list = lily(env, &["--json", "runnables", "list"]).expect_code(0).json();
    list.as_array()
        .expect("list")
        .iter()
        .find(|r| r["id"] == id && r["source"] == "installed")
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not listed as installed: {list:#}"))
}

#[test]
fn specialist_scaffold_builds_installs_and_reports_findings_in_a_council() {
    let env = Env::new();
    let created = lily(&env, &["--json", "runnables", "new", "e2e-check", "--kind", "specialist"])
        .expect_code(0)
        .json();
    assert_eq!(created["id"], "e2e-check.v1");
    let krate = env.root.join("e2e-check");
    for f in ["Cargo.toml", "src/lib.rs", "lily-guest/src/lib.rs", "lily-guest/wit/runnable.wit"] {
        assert!(krate.join(f).is_file(), "{f} was scaffolded");
    }
    // A second `new` over it is refused and changes nothing.
    let again = lily(&env, &["runnables", "new", "e2e-check"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    // Build with plain cargo and check the contract.
    let b = build_ok(&env, &["--json", "runnables", "build", "e2e-check"]);
    assert_eq!(b["target"], "wasm32-wasip2");
    assert!(
        b["component"].as_str().expect("component").ends_with("wasm32-wasip2/release/e2e_check.wasm"),
        "{b:#}"
    );
    let d = &b["check"]["descriptor"];
    assert_eq!(
        (d["id"].as_str(), d["kind"].as_str(), d["version"].as_str()),
        (Some("e2e-check.v1"), Some("specialist"), Some("0.1.0"))
    );
    let imports: Vec<&str> = b["check"]["imports"].as_array().expect("imports").iter().filter_map(Value::as_str).collect();
    assert!(imports.iter().all(|i| i.starts_with("wasi:") || i.starts_with("lily:runnable/")), "{imports:?}");
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:filesystem/preopens")),
        "it reads its workspace: {imports:?}"
    );
    let digest = b["check"]["digest"].as_str().expect("digest").to_string();

    // Install it; `list` shows it next to the built-ins.
    let component = b["component"].as_str().expect("component").to_string();
    let m = lily(&env, &["--json", "runnables", "install", &component]).expect_code(0).json();
    assert_eq!(
        (m["id"].as_str(), m["version"].as_str(), m["digest"].as_str()),
        (Some("e2e-check.v1"), Some("0.1.0"), Some(digest.as_str()))
    );
    assert!(env.lily_dir().join("runnables/e2e-check.v1/0.1.0/component.wasm").is_file());
    let entry = installed_entry(&env, "e2e-check.v1");
    assert_eq!(
        (entry["kind"].as_str(), entry["version"].as_str(), entry["digest"].as_str()),
        (Some("specialist"), Some("0.1.0"), Some(digest.as_str()))
    );
    assert!(!entry["imports"].as_array().expect("imports").is_empty());
    let table = lily(&env, &["runnables", "list"]).expect_code(0).stdout.clone();
    assert!(
        table.contains("security.v1") && table.contains("builtin") && table.contains("e2e-check.v1") && table.contains("installed"),
        "{table}"
    );

    // Use it in a council over a workspace the policy grants it.
    grant_example_workspace(&env, "e2e-check.v1");
    env.write_job(
        "review",
        &council_job(
            "review",
            &["security.v1", "e2e-check.v1"],
            "default.v1",
            "deterministic",
            "{ topic: release readiness }",
            WORKSPACE_BINDING,
            "{ timeout_seconds: 120 }",
        ),
    );
    lily(&env, &["jobs", "run", "review"]).expect_code(0);
    let run = env.only_run("review");
    let report = read(&run.join("report.md"));
    assert!(report.contains("| Unfinished work markers | e2e-check.v1 | 0.60 |"), "{report}");
    assert!(
        report.contains("### e2e-check.v1 (ok)") && report.contains("`src/app.py:5`") && report.contains("`config/settings.py:4`"),
        "{report}"
    );
    let ev = events(&run);
    let guest = ev
        .iter()
        .find(|e| e["type"] == "guest_event" && e["kind"] == "markers_counted")
        .unwrap_or_else(|| panic!("no markers_counted event: {ev:#?}"));
    assert_eq!(guest["node"], "map:e2e-check.v1");
    assert_eq!(guest["fields"]["markers"], 3);
    assert!(receipt(&run).to_string().contains(&digest), "the receipt records the installed digest");

    // Code that does not compile: the compiler's messages, then blueprint_compile_failed.
    let lib = krate.join("src/lib.rs");
    let source = read(&lib);
    std::fs::write(&lib, format!("{source}\nfn broken() -> u32 {{ \"not a number\" }}\n")).expect("write");
    let o = lily(&env, &["runnables", "build", "e2e-check"]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(
        o.stderr.contains("mismatched types") && o.stderr.contains("error[blueprint_compile_failed]"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("the compiler's messages are above"), "{}", o.stderr);
    std::fs::write(&lib, &source).expect("restore");

    // A broken descriptor: `build` explains it in plain words and fails with the contract code.
    replace_in(&lib, "const ID: &'static str = \"e2e-check.v1\";", "const ID: &'static str = \"E2E Check\";");
    let bad_out = env.root.join("bad.wasm");
    let o = lily(&env, &["runnables", "build", "e2e-check", "--out", &bad_out.display().to_string()]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(o.stderr.contains("error[blueprint_contract_invalid]"), "{}", o.stderr);
    assert!(
        o.stdout.contains("contract: 1 problem") && o.stdout.contains("problem (descriptor): descriptor id \"E2E Check\""),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("fix: Ids are lower-case letters"), "{}", o.stdout);
    assert!(!bad_out.exists(), "a component that fails the check is not copied");
    let j = lily(&env, &["--json", "runnables", "build", "e2e-check"]);
    assert_eq!(j.code, 14);
    let j = j.json();
    assert_eq!(j["code"], "blueprint_contract_invalid");
    assert_eq!(j["details"]["check"]["problems"][0]["area"], "descriptor");

    // Changed code under the same version: install refuses it until --force.
    replace_in(&lib, "\"E2E Check\"", "\"e2e-check.v1\"");
    replace_in(
        &lib,
        "Flags TODO and FIXME markers left in the workspace",
        "Flags TODO and FIXME markers (changed)",
    );
    let changed = env.root.join("changed.wasm");
    let changed_s = changed.display().to_string();
    let b2 = build_ok(&env, &["--json", "runnables", "build", "e2e-check", "--out", &changed_s]);
    assert_eq!(b2["copied_to"].as_str(), Some(changed_s.as_str()));
    assert!(changed.is_file());
    let new_digest = b2["check"]["digest"].as_str().expect("digest").to_string();
    assert_ne!(new_digest, digest);
    let refused = lily(&env, &["runnables", "install", &changed_s]);
    assert_eq!(refused.code, 14, "{refused:?}");
    assert!(
        refused.stderr.contains("already installed") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(installed_entry(&env, "e2e-check.v1")["digest"].as_str(), Some(digest.as_str()));
    lily(&env, &["runnables", "install", &changed_s, "--force"]).expect_code(0);
    assert_eq!(installed_entry(&env, "e2e-check.v1")["digest"].as_str(), Some(new_digest.as_str()));
}

#[test]
fn synthesizer_scaffold_tests_natively_and_ranks_a_council() {
    let env = Env::new();
    lily(&env, &["runnables", "new", "e2e-synth", "--kind", "synthesizer"]).expect_code(0);
    let krate = env.root.join("e2e-synth");
    let t = cargo(&krate, &["test"]);
    assert_eq!(t.code, 0, "cargo test failed\nstdout:\n{}\nstderr:\n{}", t.stdout, t.stderr);
    assert!(t.stdout.contains("test result: ok. 2 passed"), "{}", t.stdout);

    let out_file = env.root.join("e2e-synth.wasm").display().to_string();
    let b = build_ok(&env, &["--json", "runnables", "build", "e2e-synth", "--out", &out_file]);
    assert_eq!(b["check"]["descriptor"]["kind"], "synthesizer");
    lily(&env, &["runnables", "install", &out_file]).expect_code(0);
    assert_eq!(installed_entry(&env, "e2e-synth.v1")["kind"], "synthesizer");

    env.write_job(
        "ranked",
        &council_job(
            "ranked",
            &["security.v1", "operations.v1"],
            "e2e-synth.v1",
            "deterministic",
            "{ topic: release readiness }",
            WORKSPACE_BINDING,
            "{ timeout_seconds: 120 }",
        ),
    );
    let r = lily(&env, &["--json", "jobs", "run", "ranked"]).expect_code(0).json();
    assert_eq!(r["receipt"]["status"], "succeeded", "{r:#}");
    let run = env.only_run("ranked");
    let report = read(&run.join("report.md"));
    assert!(report.contains("with 2 specialists"), "{report}");
    // Every ranked row has a confidence of at least 0.50.
    let rows: Vec<&str> = report.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| #")).collect();
    assert!(!rows.is_empty(), "{report}");
    for row in rows {
        let conf: f64 = row.split('|').nth(4).expect("confidence cell").trim().parse().expect("a number");
        assert!(conf >= 0.5, "{row}");
    }
    assert!(
        events(&run)
            .iter()
            .any(|e| e["kind"] == "low_confidence_dropped" && e["node"] == "reduce:e2e-synth.v1")
    );
}

#[test]
fn cargo_component_route_produces_a_component_the_host_accepts() {
    if !cargo_component_available() {
        skip(
            "cargo_component_route_produces_a_component_the_host_accepts: `cargo component --version` failed, so the \
             cargo-component build route was not exercised (install it with `cargo install cargo-component --locked`); \
             the plain cargo route is tested by the other tests",
        );
        return;
    }
    let env = Env::new();
    lily(&env, &["runnables", "new", "cc-check"]).expect_code(0);
    let b = build_ok(&env, &["--json", "runnables", "build", "cc-check", "--with", "cargo-component"]);
    assert_eq!(b["command"], "cargo component build --release");
    assert!(
        b["component"].as_str().expect("component").ends_with("wasm32-wasip1/release/cc_check.wasm"),
        "{b:#}"
    );
    let component = b["component"].as_str().expect("component").to_string();
    lily(&env, &["runnables", "install", &component]).expect_code(0);
    grant_example_workspace(&env, "cc-check.v1");
    env.write_job(
        "cc",
        &council_job(
            "cc",
            &["security.v1", "cc-check.v1"],
            "default.v1",
            "deterministic",
            "{ topic: release readiness }",
            WORKSPACE_BINDING,
            "{ timeout_seconds: 120 }",
        ),
    );
    lily(&env, &["jobs", "run", "cc"]).expect_code(0);
    let report = read(&env.only_run("cc").join("report.md"));
    assert!(report.contains("| Unfinished work markers | cc-check.v1 | 0.60 |"), "{report}");
}

/// The bytes of `wasm` plus a custom section: a different component (digest)
/// that describes itself exactly the same.
fn with_custom_section(wasm: &[u8]) -> Vec<u8> {
    let name = b"lily-test";
    let payload = b"a different build";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128, < 128
    out.extend_from_slice(&section);
    out
}

#[test]
fn install_refuses_bad_descriptors_unknown_imports_and_id_clashes() {
    let env = Env::new();
    let installed = |id: &str| env.lily_dir().join("runnables").join(id).exists();
    let install = |p: &Path, extra: &[&str]| {
        let p = p.display().to_string();
        let mut args = vec!["runnables", "install", p.as_str()];
        args.extend_from_slice(extra);
        env.lily(&args)
    };

    // A descriptor whose version is not semver.
    let o = install(&guest_path("bad_descriptor"), &[]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(o.stderr.contains("error[blueprint_contract_invalid]"), "{}", o.stderr);
    assert!(o.stderr.contains("version \"1.0\" is not semver"), "{}", o.stderr);
    assert!(!installed("bad-descriptor.v1"));

    // An import the host does not provide, named in the refusal.
    let o = install(&guest_path("hostile_import"), &[]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(o.stderr.contains("does not provide") && o.stderr.contains("acme:evil/exfil"), "{}", o.stderr);
    assert!(!installed("hostile-import.v1"));

    // Not a component at all.
    let garbage = env.root.join("module.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0").expect("write");
    let o = install(&garbage, &[]);
    assert_eq!(o.code, 14);
    assert!(o.stderr.contains("not a valid WebAssembly component"), "{}", o.stderr);

    // Built-in ids, and --id that does not match the descriptor.
    let o = install(&guest_path("security"), &[]);
    assert_eq!(o.code, 14);
    assert!(o.stderr.contains("built-in"), "{}", o.stderr);
    let probe = guest_path("probe");
    let o = install(&probe, &["--id", "other.v1"]);
    assert_eq!(o.code, 14);
    assert!(o.stderr.contains("\"probe.v1\"") && o.stderr.contains("\"other.v1\""), "{}", o.stderr);
    assert!(!installed("probe.v1") && !installed("other.v1"));

    // Same id+version: the same bytes again are fine, different bytes need --force.
    install(&probe, &["--id", "probe.v1"]).expect_code(0);
    install(&probe, &[]).expect_code(0);
    let original = lily::util::sha256(&std::fs::read(&probe).expect("probe"));
    let other = env.root.join("probe-rebuilt.wasm");
    std::fs::write(&other, with_custom_section(&std::fs::read(&probe).expect("probe"))).expect("write");
    let o = install(&other, &[]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(
        o.stderr.contains("probe.v1@1.0.0 is already installed") && o.stderr.contains("--force"),
        "{}",
        o.stderr
    );
    let manifest = || -> Value { serde_json::from_str(&read(&env.lily_dir().join("runnables/probe.v1/1.0.0/manifest.json"))).expect("manifest") };
    assert_eq!(manifest()["digest"].as_str(), Some(original.as_str()));
    install(&other, &["--force"]).expect_code(0);
    assert_ne!(manifest()["digest"].as_str(), Some(original.as_str()));
    assert_eq!(installed_entry(&env, "probe.v1")["digest"], manifest()["digest"]);
}

/// A fenced block of the guide: (line of the opening fence, info string, body).
pub(crate) fn fenced_blocks(markdown: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        blocks.push((n + 1, info.trim().to_string(), body));
    }
    blocks
}

#[test]
fn guide_commands_run_in_order() {
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guest-authoring.md");
    let guide = read(&guide_path);
    let blocks = fenced_blocks(&guide);
    let with_cc = cargo_component_available();
    let js_tools = crate::js::js_tools();
    let py = crate::python::componentize_py();
    let mut script = String::from("set -euo pipefail\n");
    let mut ran = Vec::new();
    for (line, info, body) in &blocks {
        let run = match info.as_str() {
            "sh" => true,
            "sh cargo-component" => with_cc,
            "sh js" => js_tools.is_some(),
            "sh python" => py.is_some(),
            _ => false,
        };
        if info == "sh js" && js_tools.is_none() {
            skip(&format!("the guide's `sh js` block at line {line}: no JS toolchain (bash tests/js/setup.sh)"));
        }
        if info == "sh python" && py.is_none() {
            crate::python::skip(&format!("the guide's `sh python` block at line {line}"));
        }
        if info == "sh cargo-component" && !with_cc {
            skip(&format!(
                "the guide's `sh cargo-component` block at line {line}: `cargo component --version` failed (cargo-component is not installed)"
            ));
        }
        if run {
            script.push_str(&format!("echo '::: docs/guest-authoring.md block at line {line}' >&2\n{body}"));
            ran.push(body.clone());
        }
    }
    let all = ran.concat();
    assert!(ran.len() >= 6, "the guide has its sh blocks ({} found)", ran.len());
    for step in [
        "lily init",
        "lily runnables new my-check",
        "cargo test",
        "lily runnables build my-check",
        "lily runnables install",
        "policy.yaml",
        "lily jobs run",
    ] {
        assert!(all.contains(step), "the guide's commands include `{step}`");
    }

    // An empty directory, `lily` on PATH, no Lily configuration inherited.
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().canonicalize().expect("canonical");
    let bin = base.join("bin");
    let work = base.join("work");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&work).expect("work");
    #[cfg(unix)]
    std::os::unix::fs::symlink(LILY, bin.join("lily")).expect("link lily");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // The Python path compiles an 18 MB component: not next to the Python tests' compiles.
    let _heavy = py.as_ref().map(|_| crate::python::heavy());
    let mut bash = Command::new("bash");
    if let Some(py) = &py {
        bash.env("LILY_COMPONENTIZE_PY", py);
    }
    let o = out(bash
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .env("LILY_JS_TOOLS", js_tools.clone().unwrap_or_default())
        .env_remove("LILY_ROOT")
        .env_remove("LILY_JOBS_DIR")
        .env_remove("LILY_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("spawn bash"));
    assert_eq!(o.code, 0, "a command of the guide failed\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);

    // Where the guide ends: its specialist's findings in the council report.
    let runs: Vec<PathBuf> = std::fs::read_dir(work.join(".lily/runs/my-review"))
        .expect("the guide's job ran")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let report = read(&runs[0].join("report.md"));
    assert!(report.contains("| Unfinished work markers | my-check.v1 | 0.60 |"), "{report}");
    assert!(work.join(".lily/runnables/my-check.v1/0.1.0/manifest.json").is_file());
    if js_tools.is_some() {
        assert!(all.contains("lily runnables new my-js-check --lang js"), "the guide's JS path ran");
        let runs = std::fs::read_dir(work.join(".lily/runs/my-js-review"))
            .expect("the guide's JS job ran")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(runs, 1);
        assert!(work.join(".lily/runnables/my-js-check.v1/0.1.0/manifest.json").is_file());
    }

    // Each `rust <file>` excerpt is verbatim in that file of the scaffolded crate.
    let mut excerpts = 0;
    for (line, info, body) in &blocks {
        let file = info.strip_prefix("rust ").or_else(|| info.strip_prefix("python ").filter(|_| py.is_some()));
        if let Some(file) = file {
            let text = read(&work.join(file.trim()));
            assert!(
                text.contains(body.as_str()),
                "the excerpt at line {line} of the guide is not in {file} as scaffolded:\n{body}"
            );
            excerpts += 1;
        }
    }
    assert!(excerpts >= 1, "the guide shows the scaffolded code");
    if py.is_some() {
        // Where the Python path ends: its specialist's findings in the report.
        let run = std::fs::read_dir(work.join(".lily/runs/py-review"))
            .expect("the guide's Python job ran")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .expect("a py-review run");
        let report = read(&run.join("report.md"));
        assert!(report.contains("### my-licence.v1 (ok)") && report.contains("TODO left in"), "{report}");
        assert!(work.join(".lily/runnables/my-licence.v1/0.1.0/manifest.json").is_file());
    }
}
