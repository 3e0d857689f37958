//! The runbook's error-code and exit-status tables, row by row: each row's
//! cause is produced for real and must give that code and that status.
//! Rows whose cause needs a long-running setup are covered where that setup
//! lives (named next to the row below).

use crate::harness::{Env, Out, council_job, event_types, receipt, step_job};

/// `lily --json <args>`: the error object on stdout (for a run that got a
/// run directory: its receipt's `error`), with `code`.
fn json_error(env: &Env, args: &[&str]) -> (Out, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = env.lily(&all);
    let v = out.json();
    let e = if v.get("receipt").is_some() { v["receipt"]["error"].clone() } else { v };
    (out, e)
}

fn demo_like(id: &str, bindings_extra: &str) -> String {
    council_job(
        id,
        &["security.v1", "operations.v1"],
        "default.v1",
        "deterministic",
        "{ topic: t, context: [c] }",
        bindings_extra,
        "{ retry_max: 2, retry_backoff_seconds: 1 }",
    )
}

#[test]
fn job_not_found_is_exit_10() {
    let env = Env::new();
    let (out, v) = json_error(&env, &["jobs", "run", "nope"]);
    out.expect_code(10);
    assert_eq!(v["code"], "job_not_found");
}

#[test]
fn job_invalid_spec_is_exit_10() {
    let env = Env::new();
    env.write_job(
        "bad",
        "id: bad\ntitle: x\ntarget: { kind: blueprint, id: step.v1 }\nbogus: 1\ntrigger: { type: manual }\n",
    );
    let (out, v) = json_error(&env, &["jobs", "run", "bad"]);
    out.expect_code(10);
    assert_eq!(v["code"], "job_invalid_spec", "{v}");
}

#[test]
fn job_trigger_invalid_is_exit_10() {
    let env = Env::new();
    let spec = step_job("tz", "echo.v1", "{ n: 1 }", "", "{}").replace(
        "trigger:\n  type: manual\n",
        "trigger:\n  type: cron\n  cron: \"0 9 * * *\"\n  timezone: Mars/Olympus\n",
    );
    env.write_job("tz", &spec);
    let (out, v) = json_error(&env, &["jobs", "run", "tz"]);
    out.expect_code(10);
    assert_eq!(v["code"], "job_trigger_invalid", "{v}");
}

#[test]
fn an_unknown_blueprint_is_job_target_unresolved_exit_11() {
    let env = Env::new();
    env.write_job(
        "nobp",
        &step_job("nobp", "echo.v1", "{ n: 1 }", "", "{}").replace("id: step.v1", "id: nothing.v9"),
    );
    let out = env.lily(&["jobs", "run", "nobp"]);
    out.expect_code(11);
    assert!(out.stderr.contains("error[job_target_unresolved]"), "{}", out.stderr);
}

#[test]
fn an_unknown_runnable_is_job_target_unresolved_exit_11_and_never_retried() {
    let env = Env::new();
    env.write_job(
        "ghost",
        &demo_like("ghost", "").replace("[security.v1, operations.v1]", "[security.v1, ghost.v1]"),
    );
    let validate = env.lily(&["--json", "jobs", "validate"]).json();
    let row = validate
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["file"].as_str().is_some_and(|f| f.ends_with("ghost.job.yaml"))))
        .cloned()
        .expect("ghost row");
    assert_eq!(row["code"], "job_target_unresolved", "{row}");
    let out = env.lily(&["jobs", "run", "ghost"]);
    out.expect_code(11);
    let run = env.only_run("ghost");
    let r = receipt(&run);
    assert_eq!(r["error"]["code"], "job_target_unresolved");
    assert_eq!(r["attempts"].as_array().map(Vec::len), Some(0), "retry_max 2, yet no retry: {}", r["attempts"]);
    assert!(!event_types(&run).iter().any(|t| t == "job_attempt_failed" || t == "job_attempt_started"));
}

#[test]
fn job_bindings_invalid_is_exit_11() {
    let env = Env::new();
    env.write_job("bind", &demo_like("bind", "  synthesiser: default.v1\n"));
    let (out, v) = json_error(&env, &["jobs", "run", "bind"]);
    out.expect_code(11);
    assert_eq!(v["code"], "job_bindings_invalid", "{v}");
}

#[test]
fn a_missing_workspace_directory_is_job_bindings_invalid_not_a_policy_denial() {
    let env = Env::new();
    env.write_job("nows", &demo_like("nows", "  workspace: no/such/dir\n"));
    let out = env.lily(&["jobs", "run", "nows"]);
    out.expect_code(11);
    assert!(
        out.stderr
            .contains("error[job_bindings_invalid]: directory \"no/such/dir\" bound for security.v1 does not exist"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("os error"), "{}", out.stderr);
    let v = env.lily(&["--json", "jobs", "validate"]).json();
    let row = v
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["file"].as_str().is_some_and(|f| f.ends_with("nows.job.yaml"))))
        .cloned()
        .expect("row");
    assert_eq!(row["code"], "job_bindings_invalid", "{row}");
}

#[test]
fn job_policy_denied_is_exit_12() {
    let env = Env::new();
    env.write_job("env", &step_job("env", "echo.v1", "{ n: 1 }", "  env: [HOME]\n", "{}"));
    let (out, v) = json_error(&env, &["jobs", "run", "env"]);
    out.expect_code(12);
    assert_eq!(v["code"], "job_policy_denied", "{v}");
}

#[test]
fn job_execution_failed_is_exit_13() {
    let env = Env::new();
    env.install("probe");
    env.write_job("boom", &step_job("boom", "probe.v1", "{ op: panic, message: boom }", "", "{}"));
    let (out, v) = json_error(&env, &["jobs", "run", "boom"]);
    out.expect_code(13);
    assert_eq!(v["code"], "job_execution_failed", "{v}");
}

#[test]
fn blueprint_codes_returned_directly_are_exit_14() {
    let env = Env::new();
    let (out, v) = json_error(&env, &["blueprints", "show", "nothing.v9"]);
    out.expect_code(14);
    assert_eq!(v["code"], "blueprint_not_found", "{v}");
    let junk = env.root.join("junk.wasm");
    std::fs::write(&junk, b"not a component").expect("write");
    let (out, v) = json_error(&env, &["runnables", "inspect", &junk.display().to_string()]);
    out.expect_code(14);
    assert_eq!(v["code"], "blueprint_contract_invalid", "{v}");
}

// job_busy (exit 15): tests/e2e/jobs.rs
// `the_parallel_run_cap_refuses_a_second_run_unless_asked_to_wait` (it needs
// a run holding the slot). Exit 4 (partial): council.rs `contained`; exit
// 130: crash.rs; exit 20: replay.rs; exit 3: cli.rs (jobs status).
// run_not_active (exit 16) and runnable_in_use (exit 17): runctl.rs
// `cancel_a_run_of_another_process` (it needs a run to end first) and
// `remove_a_runnable_refused_while_a_job_uses_it`.

#[test]
fn usage_errors_are_exit_2_and_json_under_json() {
    let env = Env::new();
    let plain = env.lily(&["jobs", "runs", "demo", "--status", "bogus"]);
    plain.expect_code(2);
    assert!(plain.stderr.contains("invalid value 'bogus'"), "{}", plain.stderr);
    for args in [
        &["--json", "jobs", "runs", "demo", "--status", "bogus"][..],
        &["--json", "jobs", "frobnicate"][..],
        &["jobs", "run", "--json"][..],
        &["--json", "runnables", "new", "My_Check"][..],
    ] {
        let out = env.lily(args);
        out.expect_code(2);
        let v = out.json();
        assert_eq!(v["code"], "usage_error", "{args:?}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty() && !m.starts_with("error:")), "{v}");
    }
    // --help and --version stay plain text, exit 0.
    let help = env.lily(&["--json", "jobs", "--help"]);
    help.expect_code(0);
    assert!(help.stdout.contains("Usage:"), "{}", help.stdout);
}
