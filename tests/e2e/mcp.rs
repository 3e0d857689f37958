//! `lily mcp serve` driven by a real MCP client nobody here wrote: the
//! official Python SDK (`mcp`, pinned in `tests/mcp/requirements.txt`)
//! through `tests/mcp/drive.py`. The client's Python comes from
//! `LILY_MCP_PYTHON` (set by `.ci/run`) or `tests/mcp/setup.sh`; when
//! neither works (no Python, no PyPI) the tests say SKIPPED and pass.

use crate::harness::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that has the MCP SDK, or `None` (the test is skipped).
fn python() -> Option<String> {
    static PY: OnceLock<Option<String>> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("LILY_MCP_PYTHON") {
            return Some(p);
        }
        let out = std::process::Command::new("bash").arg(repo().join("tests/mcp/setup.sh")).output().ok()?;
        if !out.status.success() {
            eprintln!("tests/mcp/setup.sh failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        String::from_utf8_lossy(&out.stdout).lines().last().map(str::to_string)
    })
    .clone()
}

macro_rules! python_or_skip {
    ($name:literal) => {
        match python() {
            Some(p) => p,
            None => {
                eprintln!(concat!(
                    "SKIPPED ",
                    $name,
                    ": no Python with the MCP SDK (tests/mcp/setup.sh needs python3 and PyPI)"
                ));
                return;
            }
        }
    };
}

/// A root exposing `demo`, `echo.v1` and `probe.v1` (installed), with
/// extra `mcp:` keys.
fn mcp_env(extra: &str) -> Env {
    let env = Env::new();
    env.install("probe");
    let config = std::fs::read_to_string(env.lily_dir().join("config.yaml")).expect("config");
    std::fs::write(
        env.lily_dir().join("config.yaml"),
        format!("{config}\nmcp:\n  expose:\n    jobs: [demo]\n    runnables: [echo.v1, probe.v1]\n{extra}"),
    )
    .expect("config");
    env
}

fn drive(py: &str, env: &Env, args: &[&str]) -> Value {
    let out = std::process::Command::new(py)
        .arg(repo().join("tests/mcp/drive.py"))
        .args(["--server", LILY, "--root"])
        .arg(&env.root)
        .args(["--timeout", "60"])
        .args(args)
        .env("LILY_ROOT", &env.root)
        .output()
        .expect("run drive.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("drive.py printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn tools_are_what_the_config_exposes_and_a_council_call_is_a_recorded_run() {
    let py = python_or_skip!("tools_are_what_the_config_exposes_and_a_council_call_is_a_recorded_run");
    let env = mcp_env("");
    let list = drive(&py, &env, &["list"]);
    let names: Vec<&str> = list["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["demo", "echo.v1", "probe.v1", "list_runs", "get_run", "get_artifact"], "{list}");
    assert!(!names.contains(&"review"), "a job that is not exposed is not a tool");
    let demo = &list["tools"][0];
    assert_eq!(demo["inputSchema"]["required"], json!(["topic"]), "the council's input schema: {demo}");
    assert!(demo["outputSchema"]["required"].as_array().is_some_and(|r| r.contains(&json!("run_id"))));
    assert_eq!(list["tools"][2]["inputSchema"]["required"], json!(["op"]), "the runnable's own schema");

    // The client validates structuredContent against outputSchema itself.
    let r = drive(&py, &env, &["call", "demo", r#"{"topic": "payments readiness", "context": ["a web service"]}"#]);
    assert_eq!(r["isError"], false, "{r}");
    let s = &r["structuredContent"];
    assert_eq!(s["status"], "succeeded");
    assert!(s["ranked_findings"].as_array().is_some_and(|f| !f.is_empty()), "{s}");
    assert!(
        r["progress"].as_array().is_some_and(|p| p.len() == 3),
        "one progress notification per step: {r}"
    );
    let run = env.only_run("demo");
    let receipt = receipt(&run);
    assert_eq!(receipt["run_id"], s["run_id"]);
    assert_eq!(receipt["trigger"]["type"], "mcp");
    assert_eq!(receipt["trigger"]["tool"], "demo");
    assert!(
        receipt["trigger"]["client"].as_str().is_some_and(|c| c.starts_with("mcp")),
        "{}",
        receipt["trigger"]
    );
    assert_eq!(receipt["target"]["input"]["topic"], "payments readiness", "the agent's input ran");
    let sha = lily::util::sha256(&std::fs::read(run.join("run_receipt.json")).expect("receipt"));
    assert_eq!(s["receipt_sha256"], sha);
    // It replays like any run.
    env.lily(&["jobs", "replay", s["run_id"].as_str().expect("id"), "--verify"]).expect_code(0);

    // Input that breaks the schema: a clean tool error and no run.
    let bad = drive(&py, &env, &["call", "demo", r#"{"subject": "x"}"#]);
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(bad["content"][0]["text"].as_str().unwrap_or("").contains("input schema"), "{bad}");
    let bad = drive(&py, &env, &["call", "probe.v1", r#"{"nope": 1}"#]);
    assert_eq!(bad["isError"], true, "{bad}");
    assert_eq!(env.run_dirs("demo").len(), 2, "the replay is the only other run of demo");
    assert!(env.run_dirs("mcp.probe.v1").is_empty(), "no run for input the schema refuses");

    // The read-only helpers see the run.
    let runs = drive(&py, &env, &["call", "list_runs", r#"{"job": "demo"}"#]);
    assert_eq!(runs["structuredContent"]["runs"].as_array().map(Vec::len), Some(2), "{runs}");
    let art = drive(
        &py,
        &env,
        &["call", "get_artifact", &json!({"run_id": s["run_id"], "name": "report.md"}).to_string()],
    );
    assert!(art["content"][0]["text"].as_str().unwrap_or("").contains("payments readiness"), "{art}");
    let outside = drive(
        &py,
        &env,
        &[
            "call",
            "get_artifact",
            &json!({"run_id": s["run_id"], "name": "../../../policy.yaml"}).to_string(),
        ],
    );
    assert_eq!(outside["isError"], true, "{outside}");
}

#[test]
fn a_hostile_runnable_is_contained_and_the_server_answers_the_next_call() {
    let py = python_or_skip!("a_hostile_runnable_is_contained_and_the_server_answers_the_next_call");
    let env = mcp_env("");
    let seq = json!([
        {"tool": "probe.v1", "arguments": {"op": "alloc"}},
        {"tool": "probe.v1", "arguments": {"op": "panic", "message": "\u{1b}[31mred\u{202e}"}},
        {"tool": "echo.v1", "arguments": {"after": "hostile"}},
    ]);
    let r = drive(&py, &env, &["sequence", &seq.to_string()]);
    let res = r["results"].as_array().expect("results");
    assert_eq!(res[0]["isError"], true, "{r}");
    assert_eq!(res[0]["structuredContent"]["status"], "failed");
    assert_eq!(res[1]["isError"], true);
    let text = res[1]["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "control characters reach the agent: {text:?}"
    );
    assert_eq!(res[2]["isError"], false, "{r}");
    assert_eq!(res[2]["structuredContent"]["payload"]["result"]["after"], "hostile");
    let failed = receipt(&env.run_dirs("mcp.probe.v1")[0]);
    assert_eq!(failed["steps"][0]["outcome"], "memory_limit", "{failed}");
}

#[test]
fn the_session_budget_ends_in_a_tool_error_and_cancellation_cancels_the_run() {
    let py = python_or_skip!("the_session_budget_ends_in_a_tool_error_and_cancellation_cancels_the_run");
    let env = mcp_env("  max_calls_per_session: 2\n");
    let call = json!({"tool": "echo.v1", "arguments": {"n": 1}});
    let r = drive(&py, &env, &["sequence", &json!([call, call, call]).to_string()]);
    let res = r["results"].as_array().expect("results");
    assert_eq!((res[0]["isError"].clone(), res[1]["isError"].clone()), (json!(false), json!(false)), "{r}");
    assert_eq!(res[2]["isError"], true);
    assert!(
        res[2]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("session budget exhausted: 2 tool calls"),
        "{r}"
    );
    assert_eq!(env.run_dirs("mcp.echo.v1").len(), 2, "the refused call made no run");

    // A client cancellation cancels the run, as Ctrl-C does.
    let c = drive(&py, &env, &["cancel", "probe.v1", r#"{"op": "sleep", "ms": 30000}"#, "1.5"]);
    assert_eq!(c["cancelled"], true, "{c}");
    assert!(c["tools_after"].as_u64().is_some_and(|n| n == 6), "the server still answers: {c}");
    wait_until(std::time::Duration::from_secs(10), "the cancelled run's receipt", || {
        env.run_dirs("mcp.probe.v1").first().is_some_and(|d| receipt(d)["status"] == "cancelled")
    });
}

#[test]
fn twenty_concurrent_calls_all_run() {
    let py = python_or_skip!("twenty_concurrent_calls_all_run");
    let env = mcp_env("");
    let r = drive(&py, &env, &["calls", "echo.v1", r#"{"k": "v"}"#, "20"]);
    let res = r["results"].as_array().expect("results");
    assert_eq!(res.len(), 20, "{r}");
    assert!(
        res.iter().all(|x| x["isError"] == false && x["structuredContent"]["status"] == "succeeded"),
        "{r}"
    );
    let mut ids: Vec<String> = res
        .iter()
        .filter_map(|x| x["structuredContent"]["run_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "twenty distinct runs");
    assert_eq!(env.run_dirs("mcp.echo.v1").len(), 20);
}

#[test]
fn serve_refuses_a_config_that_exposes_nothing_or_an_unknown_job() {
    let env = Env::new();
    let out = env.lily(&["mcp", "serve"]);
    assert_eq!(out.code, 10, "{out:?}");
    assert!(out.stderr.contains("nothing is exposed"), "{}", out.stderr);
    let config = std::fs::read_to_string(env.lily_dir().join("config.yaml")).expect("config");
    std::fs::write(
        env.lily_dir().join("config.yaml"),
        format!("{config}\nmcp:\n  expose:\n    jobs: [no-such-job]\n"),
    )
    .expect("config");
    let out = env.lily(&["mcp", "serve"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no-such-job"), "{}", out.stderr);
    // A session budget above the policy's ceiling is refused before serving.
    std::fs::write(
        env.lily_dir().join("config.yaml"),
        format!("{config}\nmcp:\n  expose:\n    jobs: [demo]\n  max_calls_per_session: 50000\n"),
    )
    .expect("config");
    let out = env.lily(&["mcp", "serve"]);
    assert_eq!(out.code, 12, "{out:?}");
    assert!(
        out.stderr.contains("exceeds the policy ceiling limits.mcp_max_calls_per_session = 10000"),
        "{}",
        out.stderr
    );
}

#[test]
fn streamable_http_needs_the_bearer_token_and_refuses_remote_binds() {
    let py = python_or_skip!("streamable_http_needs_the_bearer_token_and_refuses_remote_binds");
    let env = mcp_env("");
    // Not loopback without --allow-remote: refused before anything listens.
    let out = env.lily(&["mcp", "serve", "--http", "0.0.0.0:0"]);
    assert_eq!(out.code, 12, "{out:?}");
    assert!(out.stderr.contains("not a loopback address"), "{}", out.stderr);

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let token = "test-token-5c1e9a27b04d";
    let mut server = env
        .cmd()
        .args(["mcp", "serve", "--http", &format!("127.0.0.1:{port}")])
        .env("LILY_MCP_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(std::time::Duration::from_secs(20), "the server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/mcp");
    let r = drive(&py, &env, &["--http", &url, "--token", token, "call", "echo.v1", r#"{"over": "http"}"#]);
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["payload"]["result"]["over"], "http");
    assert_eq!(receipt(&env.only_run("mcp.echo.v1"))["trigger"]["type"], "mcp");
    // Without the token, or with another one: no session, no run.
    for bad in [None, Some("test-token-00000000000000")] {
        let mut args = vec!["--http", url.as_str()];
        if let Some(t) = bad {
            args.extend(["--token", t]);
        }
        args.extend(["call", "echo.v1", "{}"]);
        let r = drive(&py, &env, &args);
        assert!(r.get("error").is_some() || r["isError"] == true, "{r}");
    }
    assert_eq!(env.run_dirs("mcp.echo.v1").len(), 1, "refused requests made no run");
    // A flood of idle unauthenticated connections (more than the 256 the
    // server serves at once) neither ends the server nor holds it: beyond
    // the cap they are closed, and idle ones time out after 5 s.
    let idle: Vec<std::net::TcpStream> = (0..300).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(idle.len() >= 256, "{} connections", idle.len());
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(server.try_wait().expect("status").is_none(), "the server ended under the flood");
    let r = drive(&py, &env, &["--http", &url, "--token", token, "call", "echo.v1", r#"{"after": "flood"}"#]);
    assert_eq!(r["isError"], false, "{r}");
    drop(idle);
    let _ = server.kill();
    let _ = server.wait();
    let mut err = String::new();
    use std::io::Read;
    let _ = server.stderr.take().map(|mut e| e.read_to_string(&mut err));
    assert!(err.contains(&format!("serving http://127.0.0.1:{port}/mcp")) && !err.contains(token), "{err}");
}

#[test]
fn a_per_call_model_token_cap_lowers_the_run_s_budget_below_the_grant() {
    let py = python_or_skip!("a_per_call_model_token_cap_lowers_the_run_s_budget_below_the_grant");
    crate::fake_llm::set_test_secrets();
    let fake = crate::fake_llm::FakeProvider::start(vec![crate::fake_llm::ok_reply("fine", 3, 2)]);
    let env = Env::new();
    env.install("llm_caller");
    std::fs::write(
        env.lily_dir().join("config.yaml"),
        format!(
            "llm:\n  providers:\n    fake: {{kind: openai, base_url: \"http://127.0.0.1:{}/v1\", api_key_env: LILY_TEST_LLM_KEY, timeout_seconds: 2, max_retries: 0}}\n  models:\n    reviewer: {{provider: fake, model: fake-model-1}}\nmcp:\n  expose:\n    runnables: [llm-caller.v1]\n  max_llm_tokens_per_call: 200\n",
            fake.port
        ),
    )
    .expect("config");
    env.add_policy_runnables("  \"llm-caller.v1\":\n    llm: {models: [reviewer], max_calls: 4, max_input_tokens: 10000, max_output_tokens: 1000}\n");
    let calls = json!({"calls": [
        {"model": "reviewer", "user": "hi", "max_output_tokens": 8},
        {"model": "reviewer", "user": "again", "max_output_tokens": 500},
    ]});
    let r = drive(&py, &env, &["call", "llm-caller.v1", &calls.to_string()]);
    assert_eq!(r["isError"], false, "{r}");
    let results = &r["structuredContent"]["payload"]["result"]["results"];
    assert_eq!(results[0]["ok"]["text"], "fine", "{r}");
    assert!(
        results[1]["error"].as_str().unwrap_or("").contains("budget"),
        "200 output tokens per call (the grant has 1000): 500 more is refused: {r}"
    );
    assert_eq!(fake.requests().len(), 1, "the refused call was not sent");
    let snapshot = std::fs::read_to_string(env.only_run("mcp.llm-caller.v1").join("job_spec.yaml")).unwrap_or_default();
    assert!(
        snapshot.contains("max_output_tokens: 200"),
        "the run's spec records the lowered budget: {snapshot}"
    );
}

#[test]
fn the_mcp_inspector_cli_lists_and_calls_the_tools() {
    let inspector = std::env::var("LILY_MCP_INSPECTOR").ok().or_else(|| {
        let out = std::process::Command::new("bash")
            .arg(repo().join("tests/mcp/setup-inspector.sh"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string())
    });
    let Some(inspector) = inspector.filter(|p| std::path::Path::new(p).exists()) else {
        eprintln!("SKIPPED the_mcp_inspector_cli_lists_and_calls_the_tools: no MCP Inspector (tests/mcp/setup-inspector.sh needs npm)");
        return;
    };
    let env = mcp_env("");
    let run = |args: &[&str]| -> Value {
        let out = std::process::Command::new(&inspector)
            .arg("--cli")
            .arg("-e")
            .arg(format!("LILY_ROOT={}", env.root.display()))
            .args([LILY, "mcp", "serve"])
            .args(args)
            .output()
            .expect("run the inspector");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("inspector output ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    };
    let list = run(&["--method", "tools/list"]);
    let names: Vec<&str> = list["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"demo") && names.contains(&"echo.v1"), "{list}");
    let call = run(&["--method", "tools/call", "--tool-name", "demo", "--tool-arg", "topic=inspected"]);
    assert_eq!(call["structuredContent"]["status"], "succeeded", "{call}");
    assert_eq!(receipt(&env.only_run("demo"))["target"]["input"]["topic"], "inspected");
}

#[test]
fn concurrent_calls_cannot_spend_more_than_the_session_s_time_and_links_and_huge_arguments_are_refused() {
    let py = python_or_skip!("concurrent_calls_cannot_spend_more_than_the_session_s_time_and_links_and_huge_arguments_are_refused");
    let env = mcp_env("  max_seconds_per_session: 4\n  max_seconds_per_call: 3\n");
    // Three calls at once that would each sleep 10 s: the first holds 3 s,
    // the second the 1 s left, the third is refused; together ≤ 4 s.
    let t = std::time::Instant::now();
    let r = drive(&py, &env, &["calls", "probe.v1", r#"{"op": "sleep", "ms": 10000}"#, "3"]);
    let res = r["results"].as_array().expect("results");
    assert_eq!(res.iter().filter(|x| x["isError"] == true).count(), 3, "{r}");
    let refused = res.iter().filter(|x| x["structuredContent"].is_null()).count();
    assert_eq!(refused, 1, "one call found no time left: {r}");
    assert!(t.elapsed() < std::time::Duration::from_secs(15), "took {:?}", t.elapsed());
    let spent: i64 = env
        .run_dirs("mcp.probe.v1")
        .iter()
        .map(|d| {
            let rc = receipt(d);
            let ms = |k: &str| {
                chrono::DateTime::parse_from_rfc3339(rc[k].as_str().unwrap_or(""))
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0)
            };
            ms("ended_at") - ms("started_at")
        })
        .sum();
    assert!(spent <= 5_000, "the runs took {spent} ms of a 4 s session budget");

    // get_artifact never follows a run directory planted as a link.
    let env = mcp_env("");
    std::fs::create_dir_all(env.runs_dir().join("mcp.echo.v1")).expect("job dir");
    std::os::unix::fs::symlink("/etc", env.runs_dir().join("mcp.echo.v1/20260101T000000.000Z-deadbeef")).expect("plant link");
    let a = drive(
        &py,
        &env,
        &["call", "get_artifact", r#"{"run_id": "20260101T000000.000Z-deadbeef", "name": "passwd"}"#],
    );
    assert_eq!(a["isError"], true, "{a}");
    assert!(!a.to_string().contains("root:"), "{a}");
    let dot = drive(&py, &env, &["call", "get_run", r#"{"run_id": "."}"#]);
    assert_eq!(dot["isError"], true, "{dot}");

    // Arguments over the cap are refused before any parsing into a spec.
    let big = env.root.join("big-arguments.json");
    std::fs::write(&big, json!({"op": "print", "text": "x".repeat(600 << 10)}).to_string()).expect("write");
    let b = drive(&py, &env, &["call", "probe.v1", &format!("@{}", big.display())]);
    assert_eq!(b["isError"], true, "{}", &b.to_string()[..200.min(b.to_string().len())]);
    assert!(b["content"][0]["text"].as_str().unwrap_or("").contains("at most 524288"), "{}", b["content"]);
    assert!(env.run_dirs("mcp.probe.v1").is_empty());
}
