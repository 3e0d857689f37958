//! Python runnables end to end, with the real binary and the real
//! componentize-py (0.25.1; `.ci/run` installs it with tests/python/setup.sh):
//! `lily runnables new --lang python` → native unittest → `lily runnables
//! build` → install → a council job → findings in `report.md`; the
//! built-in Python example `licence.v1` in a council next to the Rust
//! built-ins; a Python exception → `guest_error` with its message; and a
//! hostile Python guest refused like the Rust ones.
//!
//! componentize-py takes ~50 s per component, so each component is built
//! once per test run (a `OnceLock`) and shared. Without componentize-py the
//! tests print SKIPPED; under `CI=true` they fail.

use crate::harness::{Env, LILY, Out, council_job, events};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The componentize-py executable: `LILY_COMPONENTIZE_PY`, the venv
/// tests/python/setup.sh makes, or PATH. `None` (after saying SKIPPED)
/// when there is none; a failure under CI.
pub(crate) fn componentize_py() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let tools = std::env::var_os("LILY_TOOLS_DIR")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lily-tools")));
            let mut cands: Vec<PathBuf> = Vec::new();
            if let Some(p) = std::env::var_os("LILY_COMPONENTIZE_PY").filter(|p| !p.is_empty()) {
                cands.push(p.into());
            }
            if let Some(t) = tools {
                cands.push(t.join("componentize-py-0.25.1/bin/componentize-py"));
            }
            cands.push("componentize-py".into());
            let found = cands.into_iter().find(|c| {
                Command::new(c)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("0.25.1"))
            });
            assert!(
                found.is_some() || std::env::var_os("CI").is_none(),
                "CI must have componentize-py 0.25.1 (.ci/run installs it with tests/python/setup.sh)"
            );
            found
        })
        .clone()
}

/// Held while a test compiles a Python component (componentize-py, or the
/// ~30 s Cranelift compile of `install`): on 2 cores, several at once
/// can exceed the host's compile budget.
pub(crate) static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {what}: componentize-py 0.25.1 is not installed (bash tests/python/setup.sh)"
    );
}

fn out(o: std::process::Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `lily <args>` in `env`, with componentize-py named.
fn lily(env: &Env, tool: &Path, args: &[&str]) -> Out {
    out(env.cmd().env("LILY_COMPONENTIZE_PY", tool).args(args).output().expect("spawn lily"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "__pycache__" || name == "build" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(name));
        } else {
            std::fs::copy(&p, to.join(name)).expect("copy");
        }
    }
}

/// Build the in-repo Python project `rel` (the SDK and WIT vendored next to
/// it, as `runnables new` does) with `lily runnables build` once per test
/// run; the component's path.
fn built(rel: &'static str, cell: &'static OnceLock<PathBuf>) -> Option<PathBuf> {
    let tool = componentize_py()?;
    Some(
        cell.get_or_init(|| {
            let _heavy = heavy();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-components").join(rel.replace('/', "_"));
            let _ = std::fs::remove_dir_all(&dir);
            copy_dir(&Path::new(REPO).join(rel), &dir);
            copy_dir(&Path::new(REPO).join("guests/sdk-python/lily_guest"), &dir.join("lily_guest"));
            std::fs::create_dir_all(dir.join("wit")).expect("wit");
            std::fs::copy(Path::new(REPO).join("wit/runnable.wit"), dir.join("wit/runnable.wit")).expect("wit");
            std::fs::copy(Path::new(REPO).join("guests/sdk-python/wit/python.wit"), dir.join("wit/python.wit")).expect("wit");
            copy_dir(&Path::new(REPO).join("guests/sdk/wit-http/deps"), &dir.join("wit/deps"));
            let o = out(Command::new(LILY)
                .args(["--json", "runnables", "build"])
                .arg(&dir)
                .env("LILY_COMPONENTIZE_PY", &tool)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("spawn lily"));
            assert_eq!(o.code, 0, "building {rel} failed\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
            let v = o.json();
            assert_eq!((v["ok"].as_bool(), v["lang"].as_str()), (Some(true), Some("python")), "{v:#}");
            PathBuf::from(v["component"].as_str().expect("component"))
        })
        .clone(),
    )
}

/// The built-in Python example `licence.v1` (examples/python/licence).
pub(crate) fn licence_component() -> Option<PathBuf> {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    built("examples/python/licence", &CELL)
}

fn hostile_component() -> Option<PathBuf> {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    built("tests/python/hostile", &CELL)
}

const WORKSPACE_BINDING: &str = "  workspace: .lily/examples/workspace\n";
const RUNTIME: &str = "{ timeout_seconds: 120 }";

/// Grant the example workspace (read-only) to `id` — and no model: a
/// component built against `python-runnable` does not import `llm`.
fn grant_workspace(env: &Env, id: &str) {
    env.add_policy_runnables(&format!("  \"{id}\":\n    fs:\n      - path: .lily/examples/workspace\n        mode: ro\n"));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn python_scaffold_tests_natively_builds_installs_and_reports_in_a_council() {
    let Some(tool) = componentize_py() else { return skip("python_scaffold_…") };
    let env = Env::new();
    let created = lily(&env, &tool, &["--json", "runnables", "new", "py-check", "--lang", "python"])
        .expect_code(0)
        .json();
    assert_eq!((created["id"].as_str(), created["lang"].as_str()), (Some("py-check.v1"), Some("python")));
    let dir = env.root.join("py-check");
    for f in [
        "app.py",
        "test_app.py",
        "pyproject.toml",
        "lily_guest/__init__.py",
        "wit/runnable.wit",
        "wit/python.wit",
    ] {
        assert!(dir.join(f).is_file(), "{f} was scaffolded");
    }
    // Its native test passes without WebAssembly.
    let t = out(Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("python3"));
    assert_eq!(t.code, 0, "{t:?}");
    assert!(
        t.stderr.contains("test_finds_todos_in_the_workspace") && t.stderr.contains("\nOK"),
        "{}",
        t.stderr
    );

    let heavy = heavy();
    let b = lily(&env, &tool, &["--json", "runnables", "build", "py-check"]).expect_code(0).json();
    assert_eq!((b["ok"].as_bool(), b["tool"].as_str()), (Some(true), Some("componentize-py")), "{b:#}");
    assert_eq!(b["check"]["descriptor"]["id"], "py-check.v1");
    // Built against `python-runnable`: the host imports are events and
    // effects (and types), never `llm`, so no model grant is needed.
    let imports: Vec<&str> = b["check"]["imports"].as_array().expect("imports").iter().filter_map(|i| i.as_str()).collect();
    assert!(imports.iter().any(|i| i.starts_with("lily:runnable/events")), "{imports:?}");
    assert!(!imports.iter().any(|i| i.starts_with("lily:runnable/llm")), "{imports:?}");
    let component = b["component"].as_str().expect("component").to_string();
    assert!(component.ends_with("py-check/build/py-check.wasm"), "{component}");
    lily(&env, &tool, &["runnables", "install", &component]).expect_code(0);
    drop(heavy);

    grant_workspace(&env, "py-check.v1");
    env.write_job(
        "review",
        &council_job(
            "review",
            &["security.v1", "py-check.v1"],
            "default.v1",
            "deterministic",
            "{ topic: release readiness }",
            WORKSPACE_BINDING,
            RUNTIME,
        ),
    );
    lily(&env, &tool, &["jobs", "run", "review"]).expect_code(0);
    let run = env.only_run("review");
    let report = read(&run.join("report.md"));
    assert!(report.contains("### py-check.v1 (ok)") && report.contains("TODO left in"), "{report}");
    let ev = events(&run);
    assert!(
        ev.iter()
            .any(|e| e["type"] == "guest_event" && e["kind"] == "todos_counted" && e["node"] == "map:py-check.v1"),
        "{ev:#?}"
    );
}

#[test]
fn a_missing_componentize_py_is_a_clear_error_with_the_install_command() {
    let env = Env::new();
    let tool = PathBuf::from("/nonexistent/componentize-py");
    lily(&env, &tool, &["runnables", "new", "py-missing", "--lang", "python"]).expect_code(0);
    let o = lily(&env, &tool, &["runnables", "build", "py-missing"]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(
        o.stderr.contains("error[blueprint_compile_failed]") && o.stderr.contains("componentize-py is not installed"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("pip install componentize-py==0.25.1"), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked") && !o.stderr.contains("Traceback"), "{}", o.stderr);
    // JavaScript is detected by package.json (its route is the js branch's).
    let js = env.root.join("js-proj");
    std::fs::create_dir_all(&js).expect("mkdir");
    std::fs::write(js.join("package.json"), "{}").expect("write");
    let o = lily(&env, &tool, &["--json", "runnables", "build", "js-proj", "--with", "componentize-py"]);
    assert_eq!(o.code, 14, "{o:?}");
    assert!(o.stdout.contains("is a js project") || o.stderr.contains("is a js project"), "{o:?}");
}

#[test]
fn licence_v1_in_python_reviews_next_to_the_rust_builtins() {
    let Some(tool) = componentize_py() else { return skip("licence_v1_…") };
    let Some(component) = licence_component() else { return };
    let env = Env::new();
    let heavy = heavy();
    lily(&env, &tool, &["runnables", "install", &component.display().to_string()]).expect_code(0);
    drop(heavy);
    // A workspace with a missing and two conflicting headers.
    let ws = env.root.join(".lily/examples/workspace");
    std::fs::write(ws.join("mit.py"), "# SPDX-License-Identifier: MIT\nx = 1\n").expect("write");
    std::fs::write(ws.join("gpl.py"), "# SPDX-License-Identifier: GPL-3.0-only\nx = 2\n").expect("write");
    grant_workspace(&env, "licence.v1");
    env.write_job(
        "licences",
        &council_job(
            "licences",
            &["security.v1", "operations.v1", "licence.v1"],
            "default.v1",
            "deterministic",
            "{ topic: licensing }",
            WORKSPACE_BINDING,
            RUNTIME,
        ),
    );
    lily(&env, &tool, &["jobs", "run", "licences"]).expect_code(0);
    let run = env.only_run("licences");
    let report = read(&run.join("report.md"));
    assert!(report.contains("### licence.v1 (ok)"), "{report}");
    assert!(report.contains("Conflicting licence headers: GPL-3.0-only, MIT"), "{report}");
    assert!(
        report.contains("source file(s) without a licence header") && report.contains("`src/app.py:1`"),
        "{report}"
    );
    assert!(report.contains("### security.v1 (ok)") && report.contains("### operations.v1 (ok)"), "{report}");
}

/// A council of security.v1 and the hostile Python guest doing `op`.
fn hostile(env: &Env, tool: &Path, op: &str, arg: &str, runtime: &str) -> (PathBuf, Value) {
    // One job per attack run (an op may run twice, with other runtime caps).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("py-{}-{n}", op.replace('_', "-"));
    let input = format!("{{ topic: attack, context: [{op}, {arg:?}] }}");
    env.write_job(
        &id,
        &council_job(
            &id,
            &["security.v1", "hostile-py.v1"],
            "default.v1",
            "deterministic",
            &input,
            WORKSPACE_BINDING,
            runtime,
        ),
    );
    let o = lily(env, tool, &["--json", "jobs", "run", &id]);
    assert!(o.code == 0 || o.code == 4, "{o:?}");
    let run = env.only_run(&id);
    let r: Value = serde_json::from_str(&read(&run.join("run_receipt.json"))).expect("receipt");
    (run, r)
}

fn hostile_report(r: &Value) -> Value {
    crate::harness::report_of(r, "hostile-py.v1")
}

fn step_outcome(run: &Path) -> String {
    events(run)
        .iter()
        .find(|e| e["type"] == "step_finished" && e["node"] == "map:hostile-py.v1")
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_string())
        .expect("the hostile step finished")
}

#[test]
fn python_guests_are_contained_like_rust_ones() {
    let Some(tool) = componentize_py() else {
        return skip("python_guests_are_contained_…");
    };
    let Some(component) = hostile_component() else { return };
    let env = Env::new();
    let heavy = heavy();
    lily(&env, &tool, &["runnables", "install", &component.display().to_string()]).expect_code(0);
    drop(heavy);
    // hostile-py.v1 is built against `python-llm-http` (its pyproject.toml):
    // its grant names a model and one HTTP origin + path prefix too.
    let server = crate::http_server::TestServer::start(|seen| {
        let mut a = crate::http_server::answer(200, &format!("{} {}", seen.method, String::from_utf8_lossy(&seen.body)));
        a.headers.push(("x-test".into(), "seen".into()));
        a
    });
    env.add_policy_runnables(&format!(
        "  \"hostile-py.v1\":\n    fs:\n      - path: .lily/examples/workspace\n        mode: ro\n    llm: {{models: [reviewer], max_calls: 1, max_input_tokens: 1000, max_output_tokens: 1000}}\n    http: [\"{}\"]\n",
        server.url("/ok")
    ));
    let observed = |op: &str, arg: &str| {
        let (_, r) = hostile(&env, &tool, op, arg, RUNTIME);
        hostile_report(&r)["findings"][0]["recommendation"].as_str().expect("observed").to_string()
    };
    assert_eq!(observed("llm_models", ""), "models: reviewer");
    // HTTP: the granted prefix answers (GET, and a JSON POST with its body);
    // another path on the same origin is refused by the host, unsent.
    assert_eq!(observed("http", &server.url("/ok/get")), "status 200: GET  (seen)");
    assert_eq!(observed("http", &server.url("/ok/post")), "status 200: POST {\"from\": \"hostile-py\"} (seen)");
    assert_eq!(observed("http", &server.url("/elsewhere")), "refused: HTTP-request-denied");
    let paths: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(paths, ["/ok/get", "/ok/post"], "the refused request never reached the server");
    let secret = env.root.join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-PY").expect("secret");

    // fs escape: the file outside the grant cannot be read.
    let (_, r) = hostile(&env, &tool, "fs_escape", &secret.display().to_string(), RUNTIME);
    let h = hostile_report(&r);
    assert_eq!(h["status"], "ok", "{h:#}");
    let seen = h["findings"][0]["recommendation"].as_str().expect("observed").to_string();
    assert!(seen.starts_with("refused: "), "{seen}");
    assert!(!r.to_string().contains("TOP-SECRET-PY"), "{r:#}");

    // env: the host's environment is not visible.
    let (_, r) = hostile(&env, &tool, "env", "", RUNTIME);
    let seen = hostile_report(&r)["findings"][0]["recommendation"].as_str().expect("observed").to_string();
    assert!(!seen.contains("LILY_ROOT") && !seen.contains("PATH") && !seen.contains("HOME"), "{seen}");

    // sockets: no network.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let (_, r) = hostile(&env, &tool, "socket", &port, RUNTIME);
    let seen = hostile_report(&r)["findings"][0]["recommendation"].as_str().expect("observed").to_string();
    assert!(seen.starts_with("refused: "), "{seen}");
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_err(), "nothing connected");

    // an exception: guest_error with its message, the traceback in the event log.
    let (run, r) = hostile(&env, &tool, "raise", "on purpose", RUNTIME);
    let h = hostile_report(&r);
    assert_eq!(h["status"], "error");
    let notes = h["notes"].as_str().expect("notes");
    assert!(
        notes.starts_with("guest_error: ") && notes.contains("python_exception") && notes.contains("ValueError: python guest broke on purpose"),
        "{notes}"
    );
    assert_eq!(step_outcome(&run), "guest_error");
    let ev = events(&run);
    let tb = ev
        .iter()
        .find(|e| e["type"] == "guest_event" && e["kind"] == "python_exception")
        .unwrap_or_else(|| panic!("no python_exception event: {ev:#?}"));
    let tb = tb["fields"]["traceback"].as_str().expect("traceback");
    assert!(tb.contains("ValueError") && tb.len() <= 2000, "{tb}");

    // an infinite loop: fuel, then (no fuel cap) the deadline.
    let (run, r) = hostile(&env, &tool, "loop", "", "{ timeout_seconds: 60, fuel: 20000000000 }");
    assert_eq!(hostile_report(&r)["status"], "error");
    assert_eq!(step_outcome(&run), "out_of_fuel");
    let (run, _) = hostile(&env, &tool, "loop", "", "{ timeout_seconds: 5 }");
    assert_eq!(step_outcome(&run), "deadline_exceeded");

    // memory growth: the memory limit (or Python's MemoryError, a guest error).
    let (run, r) = hostile(&env, &tool, "memory", "", "{ timeout_seconds: 60, memory_mb: 128 }");
    assert_eq!(hostile_report(&r)["status"], "error");
    let o = step_outcome(&run);
    assert!(o == "memory_limit" || o == "guest_error", "{o}");
    let _ = json!(null);
}
