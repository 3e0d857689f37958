//! JavaScript runnables (issue 18, JS half), end to end with the real
//! binary: the JS SDK (`guests/sdk-js`) and two JS projects — the example
//! specialist `pins.v1` (`guests/js/pins`) and the test-only
//! `js-hostile.v1` (`guests/js/hostile`, one attack per topic word) — built
//! with the pinned componentize-js (`tests/js/setup.sh`) *once per test run*
//! (a `OnceLock` shared by every test here), installed, and run in
//! `council.v1` jobs next to the Rust built-ins. Without the toolchain the
//! tests print SKIPPED; under `CI=true` they fail (`.ci/run` installs it).

use crate::harness::{Env, LILY, council_job, events, receipt};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// The pinned JS tools directory (`LILY_JS_TOOLS`, else setup.sh's default).
pub fn js_tools() -> Option<PathBuf> {
    let dir = match std::env::var_os("LILY_JS_TOOLS") {
        Some(d) => PathBuf::from(d),
        None => {
            let base = std::env::var_os("LILY_TOOLS_DIR")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lily-tools")))?;
            base.join("jco-1.35.0")
        }
    };
    let found = dir.join("node_modules/.bin/componentize-js").is_file() && node_ok();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI must have the JS toolchain (.ci/run runs tests/js/setup.sh)"
    );
    found.then_some(dir)
}

fn node_ok() -> bool {
    Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

fn skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}

/// Built components, by project name (`pins`, `hostile`).
pub struct JsGuests {
    pub pins: PathBuf,
    pub hostile: PathBuf,
}

fn build(tools: &Path, project: &str, out: &Path) {
    let dir = repo().join("guests/js").join(project);
    if !dir.join("node_modules/lily-guest").exists() {
        // The example depends on the SDK by path (`file:../../sdk-js`): no registry.
        let o = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--offline"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("spawn npm");
        assert!(o.status.success(), "npm install in {}: {}", dir.display(), String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new(LILY)
        .args(["runnables", "build"])
        .arg(&dir)
        .arg("--out")
        .arg(out)
        .env("LILY_JS_TOOLS", tools)
        .stdin(Stdio::null())
        .output()
        .expect("spawn lily runnables build");
    assert!(
        o.status.success() && out.is_file(),
        "lily runnables build guests/js/{project} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Build every JS test component once per test run; `None` (SKIPPED) without the toolchain.
pub fn js_guests(what: &str) -> Option<&'static JsGuests> {
    static BUILT: OnceLock<Option<JsGuests>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let tools = js_tools()?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("js-guests");
        std::fs::create_dir_all(&dir).expect("js-guests dir");
        let g = JsGuests {
            pins: dir.join("pins.wasm"),
            hostile: dir.join("js-hostile.wasm"),
        };
        std::thread::scope(|s| {
            s.spawn(|| build(&tools, "pins", &g.pins));
            s.spawn(|| build(&tools, "hostile", &g.hostile));
        });
        // Fill the shared compile cache once, one component at a time: a
        // ~14 MB JS component takes ~25 s of CPU to compile (dev build), and
        // every test compiling it at once on a loaded machine could pass
        // the host's compile budget. Each test's install is then a cache hit.
        let warm = Env::new();
        install(&warm, &g.pins);
        install(&warm, &g.hostile);
        Some(g)
    });
    if built.is_none() {
        skip(&format!(
            "{what}: no JS toolchain (bash tests/js/setup.sh installs jco 1.35.0 + componentize-js 0.22.0)"
        ));
    }
    built.as_ref()
}

fn install(env: &Env, wasm: &Path) {
    env.lily(&["runnables", "install", &wasm.display().to_string()]).expect_code(0);
}

const WS_GRANT: &str = "    fs:\n      - path: ws\n        mode: ro\n";

fn grant(env: &Env, ids: &[&str]) {
    let entries: String = ids.iter().map(|id| format!("  \"{id}\":\n{WS_GRANT}")).collect();
    env.write_policy(&format!("version: 1\nrunnables:\n{entries}"));
}

fn run_council(env: &Env, job: &str, specialists: &[&str], topic: &str, timeout: u32) -> PathBuf {
    env.write_job(
        job,
        &council_job(
            job,
            specialists,
            "default.v1",
            "deterministic",
            &format!("{{ topic: \"{topic}\" }}"),
            "  workspace: ws\n",
            &format!("{{ timeout_seconds: {timeout} }}"),
        ),
    );
    let o = env
        .cmd()
        .env("LILY_JS_TEST_SECRET", "s3cr3t-from-the-host")
        .args(["jobs", "run", job])
        .output()
        .expect("spawn lily");
    // A council whose specialist failed still completes (and exits non-zero
    // as a partial run); the callers assert on the receipt and the report.
    assert!(o.status.code().is_some(), "jobs run {job} was killed: {}", String::from_utf8_lossy(&o.stderr));
    env.only_run(job)
}

fn step_finished(run: &Path, node: &str) -> Value {
    events(run)
        .into_iter()
        .find(|e| e["type"] == "step_finished" && e["node"] == node)
        .unwrap_or_else(|| panic!("no step_finished for {node}"))
}

fn report(run: &Path) -> String {
    std::fs::read_to_string(run.join("report.md")).expect("report.md")
}

fn workspace(env: &Env) {
    env.write_tree(
        "ws",
        &[
            (
                "web/package.json",
                br#"{"dependencies": {"left-pad": "^1.3.0", "lodash": "4.17.21"}, "devDependencies": {"mocha": "~10.0.0"}}"#,
            ),
            ("api/package.json", br#"{"dependencies": {"express": "4.19.2"}}"#),
            ("api/package-lock.json", b"{}"),
            ("src/app.py", b"AWS_KEY = 'AKIAIOSFODNN7EXAMPLE'\n"),
        ],
    );
}

#[test]
fn js_specialist_runs_in_a_council_next_to_a_rust_builtin() {
    let Some(g) = js_guests("js_specialist_runs_in_a_council_next_to_a_rust_builtin") else {
        return;
    };
    let env = Env::new();
    workspace(&env);
    install(&env, &g.pins);
    let list = env.lily(&["runnables", "list"]);
    assert!(list.stdout.contains("pins.v1"), "{}", list.stdout);
    grant(&env, &["security.v1", "pins.v1"]);
    let run = run_council(&env, "js-council", &["security.v1", "pins.v1"], "the web service", 120);
    assert_eq!(receipt(&run)["status"], "succeeded");
    let md = report(&run);
    assert!(md.contains("### pins.v1 (ok)"), "{md}");
    assert!(md.contains("Unpinned npm dependencies"), "{md}");
    assert!(md.contains("web/package.json: left-pad@^1.3.0"), "{md}");
    assert!(md.contains("web/package.json: mocha@~10.0.0"), "{md}");
    assert!(!md.contains("express"), "exact versions are pinned: {md}");
    assert!(md.contains("npm manifest without a lockfile"), "{md}");
    assert!(md.contains("### security.v1 (ok)"), "{md}");
    let ev = events(&run);
    let checked = ev.iter().find(|e| e["kind"] == "manifests_checked").expect("guest event");
    assert_eq!(checked["node"], "map:pins.v1");
    assert_eq!(checked["fields"]["manifests"], 2);
    assert_eq!(checked["fields"]["unpinned"], 2);
}

/// One council per attack: js-hostile.v1 next to security.v1, which still
/// reports; returns the run dir.
fn attack(g: &JsGuests, op: &str, timeout: u32) -> (Env, PathBuf) {
    let env = Env::new();
    workspace(&env);
    env.write_tree("outside", &[("secret.txt", b"TOP SECRET: outside every grant")]);
    install(&env, &g.hostile);
    grant(&env, &["security.v1", "js-hostile.v1"]);
    let run = run_council(&env, &format!("js-{op}"), &["security.v1", "js-hostile.v1"], &format!("{op} attack"), timeout);
    let md = report(&run);
    assert!(md.contains("### security.v1 (ok)"), "the other specialist still ran: {md}");
    assert!(!md.contains("TOP SECRET"), "{md}");
    assert!(!env.root.join("ws/planted.txt").exists());
    (env, run)
}

#[test]
fn a_thrown_js_error_is_a_guest_error_with_its_message_and_stack_tail() {
    let Some(g) = js_guests("a_thrown_js_error_is_a_guest_error_with_its_message_and_stack_tail") else {
        return;
    };
    let (_env, run) = attack(g, "throw", 60);
    let fin = step_finished(&run, "map:js-hostile.v1");
    assert_eq!(fin["outcome"], "guest_error", "{fin}");
    let cause = fin["cause"].as_str().expect("cause");
    assert!(cause.contains("guest_exception") && cause.contains("kaboom: the JS guest gave up"), "{cause}");
    let ev = events(&run);
    let exc = ev.iter().find(|e| e["kind"] == "guest_exception").expect("guest_exception event");
    let stack = exc["fields"]["stack"].as_str().expect("stack");
    assert!(stack.contains("review@"), "{stack}");
    assert!(stack.lines().count() <= 8 && stack.len() <= 2000, "capped: {stack}");
    assert!(report(&run).contains("### js-hostile.v1 (error)"));
}

#[test]
fn a_js_guest_cannot_read_or_write_outside_its_grant() {
    let Some(g) = js_guests("a_js_guest_cannot_read_or_write_outside_its_grant") else {
        return;
    };
    let (_env, run) = attack(g, "fs", 60);
    assert_eq!(step_finished(&run, "map:js-hostile.v1")["outcome"], "ok");
    let md = report(&run);
    assert!(md.contains("preopens: /workspace`"), "only the grant is preopened: {md}");
    for probe in [
        "/workspace ../outside/secret.txt: refused",
        "/workspace ../../../../etc/passwd: refused",
        "/workspace /etc/passwd: refused",
        "/workspace write: refused",
    ] {
        assert!(md.contains(probe), "{probe}: {md}");
    }
    assert!(!md.contains("ALLOWED"), "{md}");
}

#[test]
fn a_js_guest_sees_no_host_environment_and_no_network() {
    let Some(g) = js_guests("a_js_guest_sees_no_host_environment_and_no_network") else {
        return;
    };
    let (_env, run) = attack(g, "env", 60);
    let md = report(&run);
    assert!(md.contains("`env: `"), "no variables at all: {md}");
    assert!(!md.contains("s3cr3t-from-the-host"));
    let (_env, run) = attack(g, "socket", 60);
    let md = report(&run);
    assert!(md.contains("lookup: refused") && md.contains("tcp: refused"), "{md}");
    assert!(!md.contains("ALLOWED"), "{md}");
}

#[test]
fn a_js_infinite_loop_and_memory_growth_are_stopped() {
    let Some(g) = js_guests("a_js_infinite_loop_and_memory_growth_are_stopped") else {
        return;
    };
    let (_env, run) = attack(g, "loop", 4);
    let fin = step_finished(&run, "map:js-hostile.v1");
    assert!(matches!(fin["outcome"].as_str(), Some("deadline_exceeded" | "fuel_exhausted")), "{fin}");
    let (_env, run) = attack(g, "memory", 60);
    let fin = step_finished(&run, "map:js-hostile.v1");
    assert_eq!(fin["outcome"], "memory_limit", "{fin}");
}

#[test]
fn scaffold_build_install_and_run_a_js_specialist_in_a_council() {
    let Some(_) = js_guests("scaffold_build_install_and_run_a_js_specialist_in_a_council") else {
        return;
    };
    let tools = js_tools().expect("tools");
    let env = Env::new();
    env.write_tree(
        "ws",
        &[("src/app.py", b"x = 1\n# TODO: remove the debug flag\n"), ("notes.md", b"FIXME later\n")],
    );
    env.lily(&["runnables", "new", "todo-js", "--lang", "js"]).expect_code(0);
    let proj = env.root.join("todo-js");
    for f in [
        "package.json",
        "component.js",
        "src/todo-js.js",
        "test/todo-js.test.js",
        "lily-guest/src/index.js",
        "lily-guest/wit/runnable.wit",
        "lily-guest/wit/js.wit",
    ] {
        assert!(proj.join(f).is_file(), "scaffold wrote {f}");
    }
    // The native unit test exercises the logic without WebAssembly.
    let t = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&proj)
        .stdin(Stdio::null())
        .output()
        .expect("spawn node");
    assert!(
        t.status.success(),
        "node --test: {}{}",
        String::from_utf8_lossy(&t.stdout),
        String::from_utf8_lossy(&t.stderr)
    );
    let b = env
        .cmd()
        .env("LILY_JS_TOOLS", &tools)
        .args(["runnables", "build", "todo-js", "--out", "todo-js.wasm"])
        .output()
        .expect("spawn");
    assert!(b.status.success(), "build: {}", String::from_utf8_lossy(&b.stderr));
    install(&env, &env.root.join("todo-js.wasm"));
    grant(&env, &["security.v1", "todo-js.v1"]);
    let run = run_council(&env, "todo-js-review", &["security.v1", "todo-js.v1"], "the release", 120);
    assert_eq!(receipt(&run)["status"], "succeeded");
    let md = report(&run);
    assert!(md.contains("### todo-js.v1 (ok)"), "{md}");
    assert!(
        md.contains("Unfinished work markers") && md.contains("`src/app.py:2`") && md.contains("`notes.md:1`"),
        "{md}"
    );
}

#[test]
fn building_a_js_project_without_the_toolchain_names_the_install_command() {
    let env = Env::new();
    env.lily(&["runnables", "new", "no-tools", "--lang", "js"]).expect_code(0);
    let empty = tempfile::tempdir().expect("tempdir");
    let o = env
        .cmd()
        .env("LILY_JS_TOOLS", empty.path())
        .args(["runnables", "build", "no-tools"])
        .output()
        .expect("spawn");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("blueprint_compile_failed") || err.contains("toolchain"), "{err}");
    assert!(
        err.contains("npm install --prefix ~/.cache/lily-tools/jco-1.35.0 @bytecodealliance/jco@1.35.0 @bytecodealliance/componentize-js@0.22.0 @bytecodealliance/preview2-shim@0.25.0"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_js_guest_reaches_only_the_granted_http_origin() {
    let Some(g) = js_guests("a_js_guest_reaches_only_the_granted_http_origin") else {
        return;
    };
    let server = crate::http_server::TestServer::start(|seen| {
        let mut a = crate::http_server::answer(200, &format!("{} {}", seen.method, String::from_utf8_lossy(&seen.body)));
        a.headers.push(("x-test".into(), "seen".into()));
        a
    });
    let env = Env::new();
    workspace(&env);
    install(&env, &g.hostile);
    env.write_policy(&format!(
        "version: 1\nrunnables:\n  \"security.v1\":\n{WS_GRANT}  \"js-hostile.v1\":\n{WS_GRANT}    http: [\"{}\"]\n",
        server.url("/ok")
    ));
    let observed = |job: &str, url: &str| -> String {
        let run = run_council(&env, job, &["security.v1", "js-hostile.v1"], &format!("http {url}"), 60);
        let r = receipt(&run);
        let hostile = crate::harness::report_of(&r, "js-hostile.v1");
        hostile["findings"][0]["evidence"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{hostile:#}"))
            .to_string()
    };
    // The granted prefix answers (GET, and a JSON POST with its body);
    // another path of the same origin is refused by the host, unsent.
    assert_eq!(observed("js-http-get", &server.url("/ok/get")), "status 200: GET  (seen)");
    assert_eq!(
        observed("js-http-post", &server.url("/ok/post")),
        r#"status 200: POST {"from":"js-hostile"} (seen)"#
    );
    assert_eq!(observed("js-http-denied", &server.url("/elsewhere")), "refused: HTTP-request-denied");
    let paths: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(paths, ["/ok/get", "/ok/post"], "the refused request never reached the server");
}
