//! Issue 15 item 20 — small things: a missing `--jobs-dir`, stray `*.yaml`
//! files, `summary_format: json` on stdout, the imports column of
//! `runnables list`, the findings count of the summary, file modes.

use crate::harness::{Env, step_job};
use std::path::Path;

#[test]
fn a_missing_jobs_dir_is_job_not_found_with_a_hint() {
    let env = Env::new();
    let out = env.lily(&["--jobs-dir", "no/such/dir", "jobs", "list"]);
    out.expect_code(10);
    assert!(out.stderr.contains("error[job_not_found]: the jobs directory "), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist") && out.stderr.contains("hint: "), "{}", out.stderr);
    let j = env.lily(&["--json", "--jobs-dir", "no/such/dir", "jobs", "validate"]);
    j.expect_code(10);
    let v = j.json();
    assert_eq!(v["code"], "job_not_found", "{v}");
    assert!(v["hint"].as_str().is_some_and(|h| h.contains(".lily/jobs")), "{v}");
    // An existing (empty) directory still lists nothing, successfully.
    std::fs::create_dir_all(env.root.join("empty")).expect("mkdir");
    env.lily(&["--jobs-dir", "empty", "jobs", "list"]).expect_code(0);
}

#[test]
fn a_yaml_file_that_is_not_a_job_spec_gets_a_warning() {
    let env = Env::new();
    std::fs::write(env.jobs_dir().join("nightly.yaml"), "id: nightly\n").expect("write");
    std::fs::write(env.jobs_dir().join("notes.txt"), "not yaml\n").expect("write");
    for cmd in ["list", "validate"] {
        let out = env.lily(&["jobs", cmd]);
        out.expect_code(0);
        assert!(
            out.stderr.contains("warning: ") && out.stderr.contains("nightly.yaml is not a job spec") && out.stderr.contains("nightly.job.yaml"),
            "{cmd}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("notes.txt"), "{}", out.stderr);
        let j = env.lily(&["--json", "jobs", cmd]);
        let rows = j.json();
        let w: Vec<_> = rows.as_array().expect("rows").iter().filter(|r| r["warning"].is_string()).collect();
        assert_eq!(w.len(), 1, "{cmd}: {rows}");
        assert!(w[0]["file"].as_str().is_some_and(|f| f.ends_with("nightly.yaml")), "{rows}");
    }
}

#[test]
fn summary_format_json_keeps_stdout_one_json_document() {
    let env = Env::new();
    let job = step_job("js", "echo.v1", "{ hello: world }", "", "{}").replace("output: {}", "output: { summary_format: json }");
    env.write_job("js", &job);
    let out = env.lily(&["jobs", "run", "js"]);
    out.expect_code(0);
    let v = out.json();
    assert_eq!(v["job_id"], "js", "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert!(out.stderr.contains("run directory: "), "{}", out.stderr);
}

#[test]
fn runnables_list_prints_every_import_in_full_when_not_on_a_terminal() {
    let env = Env::new();
    let out = env.lily(&["runnables", "list"]);
    out.expect_code(0);
    let echo = out.stdout.lines().find(|l| l.starts_with("echo.v1 ")).expect("echo row").to_string();
    assert!(echo.contains("wasi:cli/environment wasi:cli/exit"), "{echo}");
    assert!(!echo.contains('{'), "not grouped: {echo}");
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with(' ')).count(), 0, "not wrapped:\n{}", out.stdout);
}

#[test]
fn the_summary_says_how_many_findings_max_findings_cut() {
    let env = Env::new();
    let demo = std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("demo");
    env.write_job("cut", &demo.replace("id: demo", "id: cut").replace("max_findings: 8", "max_findings: 1"));
    let out = env.lily(&["jobs", "run", "cut"]);
    out.expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(" shown (max_findings 1)."))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let total: usize = line.split(' ').next().and_then(|n| n.parse().ok()).expect("a count");
    assert!(total > 1 && line == format!("{total} findings, 1 shown (max_findings 1)."), "{line}");
}

fn walk(p: &Path, out: &mut Vec<(String, bool, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(p).expect("stat");
    if md.file_type().is_symlink() {
        return;
    }
    out.push((p.display().to_string(), md.is_dir(), md.permissions().mode() & 0o777));
    if md.is_dir() {
        for e in std::fs::read_dir(p).expect("read_dir") {
            walk(&e.expect("entry").path(), out);
        }
    }
}

#[test]
fn everything_lily_creates_under_dot_lily_is_owner_only() {
    let env = Env::new();
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    env.install("probe");
    env.lily(&["policy", "allow", "probe.v1", "--env", "HOME"]).expect_code(0);
    let mut all = Vec::new();
    walk(&env.lily_dir(), &mut all);
    assert!(all.iter().any(|(p, _, _)| p.ends_with("run_receipt.json")), "a run was walked: {all:?}");
    assert!(all.iter().any(|(p, _, _)| p.ends_with("component.wasm")), "an installed runnable was walked");
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, dir, mode)| *mode != if *dir { 0o700 } else { 0o600 })
        .map(|(p, dir, mode)| format!("{p} ({}) {mode:o}", if *dir { "dir" } else { "file" }))
        .collect();
    assert!(wrong.is_empty(), "not owner-only:\n{}", wrong.join("\n"));
}
