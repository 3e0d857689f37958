//! CLI surface not covered elsewhere: --version/--help, `runnables inspect`,
//! Ctrl-C cancellation, `tail -f` of an active run, the approvals commands,
//! `policy check`.

use crate::harness::{Env, LILY, event_types, guest_path, receipt, step_job, wait_until};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn version_and_help() {
    let out = Command::new(LILY).arg("--version").output().expect("spawn");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lily "));
    let out = Command::new(LILY).arg("--help").output().expect("spawn");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for cmd in ["init", "jobs", "blueprints", "runnables", "policy", "approvals"] {
        assert!(text.contains(cmd), "--help lists {cmd}:\n{text}");
    }
}

#[test]
fn runnables_inspect_builtin_file_and_garbage() {
    let env = Env::new();
    let v = env.lily(&["--json", "runnables", "inspect", "security.v1"]).expect_code(0).json();
    assert_eq!(v["descriptor"]["id"], "security.v1");
    assert_eq!(v["descriptor"]["kind"], "specialist");
    assert!(v["digest"].as_str().expect("digest").starts_with("sha256:"));
    assert!(
        v["imports"]
            .as_array()
            .expect("imports")
            .iter()
            .any(|i| i.as_str().expect("s").starts_with("wasi:"))
    );
    let probe = guest_path("probe").display().to_string();
    let v = env.lily(&["--json", "runnables", "inspect", &probe]).expect_code(0).json();
    assert_eq!(v["descriptor"]["id"], "probe.v1");
    let human = env.lily(&["runnables", "inspect", &probe]).expect_code(0).stdout.clone();
    assert!(
        human.contains("probe.v1") && human.contains("digest: sha256:") && human.contains("imports"),
        "{human}"
    );
    let garbage = env.root.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").expect("write");
    let out = env.lily(&["runnables", "inspect", &garbage.display().to_string()]);
    assert_eq!(out.code, 14, "{out:?}");
    assert!(out.stderr.contains("error[blueprint_contract_invalid]"), "{}", out.stderr);
}

fn sleeper(env: &Env, id: &str, ms: u64) {
    env.install("probe");
    env.write_job(
        id,
        &step_job(id, "probe.v1", &format!("{{ op: sleep, ms: {ms} }}"), "", "{ timeout_seconds: 120 }"),
    );
}

#[test]
fn ctrl_c_cancels_the_run_cleanly() {
    let env = Env::new();
    sleeper(&env, "slow", 60_000);
    let child = env
        .cmd()
        .args(["jobs", "run", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "the step to start", || {
        env.run_dirs("slow").first().is_some_and(|d| event_types(d).iter().any(|t| t == "step_started"))
    });
    let t = Instant::now();
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert!(t.elapsed() < Duration::from_secs(20), "the sleeping guest was stopped");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let run = env.only_run("slow");
    let r = receipt(&run);
    assert_eq!(r["status"], "cancelled");
    assert!(r["ended_at"].is_string());
    assert!(event_types(&run).iter().any(|t| t == "job_cancelled"));
    // The next run works.
    env.write_job("quick", &step_job("quick", "echo.v1", "{ x: 1 }", "", "{}"));
    env.lily(&["jobs", "run", "quick"]).expect_code(0);
}

#[test]
fn tail_follows_an_active_run_until_it_ends() {
    let env = Env::new();
    sleeper(&env, "nap", 1_500);
    let mut run = env
        .cmd()
        .args(["jobs", "run", "nap"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "the run to start", || {
        env.run_dirs("nap").first().is_some_and(|d| d.join("events.jsonl").exists())
    });
    let out = env.lily(&["jobs", "tail", "nap", "-f"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("job_started") && out.stdout.contains("job_completed"), "{}", out.stdout);
    assert!(run.wait().expect("wait").success());
    let json = env.lily(&["--json", "jobs", "tail", "nap", "-n", "2"]).expect_code(0).stdout.clone();
    let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["type"], "job_completed");
}

#[test]
fn approvals_list_show_approve_and_refuse_a_second_time() {
    let env = Env::new();
    env.install("probe");
    env.write_job(
        "prop",
        &step_job(
            "prop",
            "probe.v1",
            "{ op: propose_write, path: notes/todo.md, content: \"- ship it\" }",
            "",
            "{}",
        ),
    );
    let r = env.lily(&["--json", "jobs", "run", "prop"]).expect_code(0).json();
    let id = r["receipt"]["approvals_requested"][0]["id"].as_str().expect("id").to_string();
    let summary = std::fs::read_to_string(env.only_run("prop").join("summary.md")).expect("summary");
    assert!(
        summary.contains(&format!("lily approvals approve {id}")),
        "the summary says how to act:\n{summary}"
    );
    let list = env.lily(&["--json", "approvals", "list"]).expect_code(0).json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "pending");
    let show = env.lily(&["approvals", "show", &id]).expect_code(0).stdout.clone();
    assert!(show.contains("new file:") && show.contains("+- ship it"), "{show}");
    assert!(!env.root.join("notes/todo.md").exists());
    env.lily(&["approvals", "approve", &id]).expect_code(0);
    assert_eq!(std::fs::read_to_string(env.root.join("notes/todo.md")).expect("applied"), "- ship it");
    let again = env.lily(&["approvals", "approve", &id]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("not pending"), "{}", again.stderr);
    let missing = env.lily(&["approvals", "show", "apr-nope"]);
    assert_ne!(missing.code, 0);
}

#[test]
fn policy_check_reports_file_line_and_key() {
    let env = Env::new();
    env.lily(&["policy", "check"]).expect_code(0);
    env.write_policy("version: 1\nlimits:\n  timeout_seconds: 10\n  bogus_cap: 3\n");
    let out = env.lily(&["policy", "check"]);
    assert_eq!(out.code, 12, "{out:?}");
    assert!(
        out.stderr.contains("policy.yaml") && out.stderr.contains("bogus_cap") && out.stderr.contains("line 4"),
        "{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_while_waiting_for_a_slot_is_cancelled_not_denied() {
    let env = Env::new();
    sleeper(&env, "busy", 60_000);
    let mut first = env
        .cmd()
        .args(["jobs", "run", "busy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(60), "the first run's step to start", || {
        env.run_dirs("busy").first().is_some_and(|d| event_types(d).iter().any(|t| t == "step_started"))
    });
    // The second run waits for the one slot (max_parallel_runs defaults to 1).
    let second = env
        .cmd()
        .args(["jobs", "run", "busy", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(30), "the second run to be waiting", || env.run_dirs("busy").len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-TERM", &second.id().to_string()]).status().expect("kill").success());
    let out = second.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let waiting = env.run_dirs("busy").into_iter().max().expect("second run dir");
    let r = receipt(&waiting);
    assert_eq!(r["status"], "cancelled", "{r}");
    assert!(event_types(&waiting).iter().any(|t| t == "job_cancelled"));
    let _ = Command::new("kill").args(["-INT", &first.id().to_string()]).status();
    let _ = first.wait();
}

#[test]
fn init_writes_a_gitignore_that_keeps_runs_state_and_cache_out_of_git() {
    let env = Env::new();
    let ignore = std::fs::read_to_string(env.lily_dir().join(".gitignore")).expect(".lily/.gitignore");
    for d in ["/runs/", "/state/", "/cache/"] {
        assert!(ignore.lines().any(|l| l == d), "{d} missing: {ignore}");
    }
    // git agrees, when it is installed.
    let git = |args: &[&str]| std::process::Command::new("git").args(args).current_dir(&env.root).output();
    match git(&["init", "-q"]) {
        Ok(o) if o.status.success() => {
            env.lily(&["jobs", "run", "demo"]).expect_code(0);
            let o = git(&["status", "--porcelain", "--untracked-files=all"]).expect("git status");
            let listed = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(listed.contains(".lily/jobs/demo.job.yaml") && listed.contains(".lily/policy.yaml"), "{listed}");
            for hidden in [".lily/runs/", ".lily/state/", ".lily/cache/"] {
                assert!(!listed.contains(hidden), "{hidden} is not ignored:\n{listed}");
            }
        }
        _ => eprintln!("SKIPPED git check of .lily/.gitignore: git is not installed"),
    }
}

#[test]
fn log_lines_on_a_non_terminal_have_no_colour_codes() {
    let env = Env::new();
    // LILY_LOG=debug makes any command log; stderr is a pipe here.
    let out = env
        .cmd()
        .env("LILY_LOG", "debug")
        .env_remove("NO_COLOR")
        .args(["jobs", "run", "demo"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.is_empty(), "debug logging wrote nothing to stderr");
    assert!(!err.contains('\u{1b}'), "ANSI escape in non-terminal stderr: {err:?}");
}

#[test]
fn the_example_systemd_unit_verifies() {
    let Ok(v) = std::process::Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED the_example_systemd_unit_verifies: systemd-analyze is not installed");
        return;
    };
    assert!(v.status.success());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/lily-scheduler.service")).expect("unit");
    assert!(text.contains("Restart=on-failure") && text.contains("ExecStart=/usr/local/bin/lily jobs serve"));
    let env = Env::new();
    // Point it at this build and this root (the unit names /usr/local/bin and
    // /srv/lily, which do not exist here) and a user that does.
    let unit = text
        .replace("/usr/local/bin/lily", LILY)
        .replace("/srv/lily", &env.root.display().to_string())
        .replace("User=lily", "User=root");
    let path = env.root.join("lily-scheduler.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("verify");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
}

#[test]
fn policy_check_speaks_the_file_s_words_and_its_hint_does_not_point_at_itself() {
    let env = Env::new();
    let ok = env.lily(&["policy", "check"]);
    ok.expect_code(0);
    assert!(ok.stdout.contains("write_file require_approval"), "{}", ok.stdout);
    assert!(!ok.stdout.contains("RequireApproval"), "a Rust name leaked: {}", ok.stdout);
    env.write_policy("version: 1\nrunnables:\n  a: {fs: [{path: /etc, mode: ro}]}\n");
    let bad = env.lily(&["policy", "check"]);
    assert_ne!(bad.code, 0);
    assert!(
        !bad.stderr.contains("`lily policy check` validates"),
        "the hint sends the user to the command they ran: {}",
        bad.stderr
    );
    assert!(bad.stderr.contains("docs/security.md#keys"), "{}", bad.stderr);
    // A denial's hint says where the lines go, so appending it cannot make
    // a second `runnables:` key.
    env.write_policy("version: 1\nrunnables: {}\n");
    env.write_job("peek", &step_job("peek", "echo.v1", "{}", "  workspace: .lily/examples/workspace\n", "{}"));
    let denied = env.lily(&["jobs", "plan", "peek"]);
    assert!(denied.stderr.contains("under its existing `runnables` map"), "{}", denied.stderr);
}

#[test]
fn an_unknown_run_status_is_a_usage_error_and_help_lists_every_status() {
    let env = Env::new();
    let out = env.lily(&["jobs", "runs", "demo", "--status", "bogus"]);
    assert_eq!(out.code, 2, "a usage error, not a spec error: {out:?}");
    assert!(out.stderr.contains("skipped_overlap"), "{}", out.stderr);
    let help = env.lily(&["jobs", "runs", "--help"]);
    for s in [
        "succeeded",
        "partial",
        "failed",
        "denied",
        "cancelled",
        "interrupted",
        "running",
        "missed",
        "skipped_overlap",
    ] {
        assert!(help.stdout.contains(s), "{s} missing from --help: {}", help.stdout);
    }
    env.lily(&["jobs", "runs", "demo", "--status", "partial"]).expect_code(0);
}

#[test]
fn a_bad_crate_name_for_runnables_new_is_a_usage_error() {
    let env = Env::new();
    for bad in ["My_Check", "lily-guest", "9lives"] {
        let out = env.lily(&["runnables", "new", bad]);
        assert_eq!(out.code, 2, "{bad}: a usage error, not blueprint_compile_failed: {out:?}");
        assert!(!out.stderr.contains("blueprint_compile_failed"), "{}", out.stderr);
    }
    assert!(!env.root.join("My_Check").exists());
}
