//! Issue 15 item 12 — `lily policy explain` as a full table, a denial that
//! lists every refusal at once, and `lily policy allow`.

use crate::harness::{Env, step_job};
use serde_json::Value;

/// A job that asks a directory, two env vars and more time than the
/// starter policy allows.
fn greedy(env: &Env) {
    env.write_tree("data", &[("hello.txt", b"hi\n")]);
    env.write_job(
        "greedy",
        &step_job(
            "greedy",
            "echo.v1",
            "{ n: 1 }",
            "  workspace: data\n  env: [LILY_T_A, LILY_T_B]\n",
            "{ timeout_seconds: 7200 }",
        ),
    );
}

fn policy_text(env: &Env) -> String {
    std::fs::read_to_string(env.lily_dir().join("policy.yaml")).expect("policy")
}

#[test]
fn a_denial_names_every_refusal_and_explain_shows_every_row() {
    let env = Env::new();
    greedy(&env);
    let out = env.lily(&["jobs", "run", "greedy"]);
    out.expect_code(12);
    for want in [
        "the policy refuses 4 things",
        "runtime.timeout_seconds = 7200 exceeds the policy ceiling limits.timeout_seconds = 3600",
        "policy does not allow echo.v1 ro access to \"data\"",
        "policy does not allow env var LILY_T_A for echo.v1",
        "policy does not allow env var LILY_T_B for echo.v1",
        "      - path: data",
        "env: [LILY_T_A, LILY_T_B]",
        "raise limits.timeout_seconds",
    ] {
        assert!(out.stderr.contains(want), "{want:?} not in {}", out.stderr);
    }

    let text = env.lily(&["policy", "explain", "greedy"]);
    text.expect_code(12);
    assert!(text.stdout.contains("(4 refused)"), "{}", text.stdout);
    assert!(text.stdout.contains("ASKED") && text.stdout.contains("VERDICT"), "{}", text.stdout);
    let v = env.lily(&["--json", "policy", "explain", "greedy"]);
    v.expect_code(12);
    let v = v.json();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["error"]["code"], "job_policy_denied");
    let rows = v["rows"].as_array().expect("rows");
    let find = |kind: &str, asked: &str| -> Value {
        rows.iter()
            .find(|r| r["kind"] == kind && r["asked"].as_str().is_some_and(|a| a.starts_with(asked)))
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {asked} row in {rows:?}"))
    };
    assert_eq!(find("runtime", "timeout_seconds")["verdict"], "denied");
    assert_eq!(find("runtime", "retry_max")["verdict"], "allowed");
    assert_eq!(find("fs", "data (ro)")["verdict"], "missing");
    assert_eq!(find("env", "LILY_T_A")["verdict"], "missing");
    assert_eq!(find("env", "LILY_T_B")["verdict"], "missing");
    for kind in ["network", "http", "llm"] {
        assert_eq!(find(kind, "-")["verdict"], "none", "{kind}");
    }
    assert_eq!(v["error"]["details"]["refused"].as_array().map(Vec::len), Some(4));
}

#[test]
fn policy_allow_keeps_comments_and_makes_a_denied_job_runnable() {
    let env = Env::new();
    greedy(&env);
    env.write_job(
        "greedy",
        &step_job("greedy", "echo.v1", "{ n: 1 }", "  workspace: data\n  env: [LILY_T_A, LILY_T_B]\n", "{}"),
    );
    env.lily(&["jobs", "run", "greedy"]).expect_code(12);
    let before = policy_text(&env);

    // A dry run shows the added lines and writes nothing.
    let dry = env.lily(&[
        "policy",
        "allow",
        "echo.v1",
        "--fs",
        "data:ro",
        "--env",
        "LILY_T_A",
        "--env",
        "LILY_T_B",
        "--dry-run",
    ]);
    dry.expect_code(0);
    assert!(dry.stdout.contains("+      - path: data\n"), "{}", dry.stdout);
    assert!(dry.stdout.contains(" # Lily capability policy."), "{}", dry.stdout);
    assert_eq!(policy_text(&env), before);

    let out = env.lily(&["policy", "allow", "echo.v1", "--fs", "data:ro", "--env", "LILY_T_A", "--env", "LILY_T_B"]);
    out.expect_code(0);
    assert!(out.stdout.contains("added to "), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "no warning: {}", out.stderr);
    let after = policy_text(&env);
    // Every line of the old file is kept, in order (comments, the other runnables).
    let mut rest = after.lines();
    for l in before.lines() {
        assert!(rest.any(|a| a == l), "{l:?} lost:\n{after}");
    }
    assert!(after.contains("# The model-backed built-ins") && after.contains("\"security.v1\":"), "{after}");
    env.lily(&["policy", "check"]).expect_code(0);
    env.lily(&["jobs", "run", "greedy"]).expect_code(0);

    // Idempotent: the same grant again is a no-op, and says so.
    let again = env.lily(&["policy", "allow", "echo.v1", "--env", "LILY_T_A", "--fs", "data/:ro"]);
    again.expect_code(0);
    assert!(again.stdout.contains("already granted: env LILY_T_A"), "{}", again.stdout);
    assert!(again.stdout.contains("already granted: fs data (ro)"), "{}", again.stdout);
    assert!(again.stdout.contains("no change"), "{}", again.stdout);
    assert_eq!(policy_text(&env), after);
    // A second grant merges into the same entry (no second key).
    env.lily(&["policy", "allow", "echo.v1", "--network", "example.com:443"]).expect_code(0);
    let v = env.lily(&["--json", "policy", "check"]).json();
    assert_eq!(v["policy"]["runnables"]["echo.v1"]["network"][0], "example.com:443", "{v}");
    assert_eq!(v["policy"]["runnables"]["echo.v1"]["env"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(policy_text(&env).matches("\"echo.v1\":").count(), 1);
}

#[test]
fn policy_allow_adds_the_runnables_map_when_there_is_none() {
    let env = Env::new();
    env.write_policy("# my policy\nversion: 1\n");
    env.lily(&["policy", "allow", "acme.v1", "--env", "TOKEN"]).expect_code(0);
    let text = policy_text(&env);
    assert!(text.starts_with("# my policy\nversion: 1\nrunnables:\n"), "{text}");
    let v = env.lily(&["--json", "policy", "check"]).json();
    assert_eq!(v["policy"]["runnables"]["acme.v1"]["env"][0], "TOKEN", "{v}");
}

#[test]
fn policy_allow_rewrites_a_layout_it_cannot_edit_and_says_comments_are_dropped() {
    let env = Env::new();
    env.write_policy("# keep me?\nversion: 1\nrunnables: {\"a.v1\": {env: [A]}}\n");
    let out = env.lily(&["policy", "allow", "a.v1", "--env", "B"]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("warning: ") && out.stderr.contains("comments are dropped"),
        "{}",
        out.stderr
    );
    let text = policy_text(&env);
    assert!(!text.contains("keep me"), "{text}");
    let v = env.lily(&["--json", "policy", "check"]).json();
    assert_eq!(v["policy"]["runnables"]["a.v1"]["env"], serde_json::json!(["A", "B"]), "{v}");
}

#[test]
fn policy_allow_refuses_bad_values_and_writes_nothing() {
    let env = Env::new();
    let before = policy_text(&env);
    let bad_mode = env.lily(&["--json", "policy", "allow", "x.v1", "--fs", "/etc:rx"]);
    bad_mode.expect_code(2);
    assert_eq!(bad_mode.json()["code"], "usage_error");
    for (flag, value) in [
        ("--fs", "/etc:ro"),
        ("--fs", "../up:ro"),
        ("--network", "*:443"),
        ("--env", "A=B"),
        ("--http", "ftp://x"),
    ] {
        let out = env.lily(&["--json", "policy", "allow", "x.v1", flag, value]);
        out.expect_code(12);
        let v = out.json();
        assert_eq!(v["code"], "job_policy_denied", "{flag} {value}: {v}");
        assert!(v["hint"].as_str().is_some_and(|h| h.contains("nothing was written")), "{v}");
    }
    // A read-write grant of Lily's own state is refused as well.
    env.lily(&["policy", "allow", "x.v1", "--fs", ".lily:rw"]).expect_code(12);
    assert_eq!(policy_text(&env), before);
}

#[test]
fn explain_refuses_what_planning_refuses_before_the_policy() {
    let env = Env::new();
    env.write_job("nodir", &step_job("nodir", "echo.v1", "{ n: 1 }", "  workspace: no-such-dir\n", "{}"));
    let plan = env.lily(&["--json", "jobs", "plan", "nodir"]);
    let explain = env.lily(&["--json", "policy", "explain", "nodir"]);
    assert_eq!(explain.code, plan.code, "{}\n{}", plan.stdout, explain.stdout);
    assert_eq!(explain.json()["code"], "job_bindings_invalid", "{}", explain.stdout);
}
