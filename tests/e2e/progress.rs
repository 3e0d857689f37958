//! `lily jobs run`'s live display on a TTY (and nothing anywhere else), and
//! `lily jobs show --timeline` (#15 item 15).

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};

const NODES: [&str; 3] = ["map:security.v1", "map:operations.v1", "reduce:default.v1"];

/// No display in `text`; `stderr_only`: it holds nothing else that names
/// the steps either (a `--json` stdout does, in the receipt).
fn assert_no_progress(what: &str, text: &str, stderr_only: bool) {
    assert!(!text.contains('\x1b'), "{what}: ANSI escapes:\n{text}");
    assert!(
        !text.contains('✓') && !text.contains('✗') && !text.contains('⠁'),
        "{what}: progress lines:\n{text}"
    );
    for n in NODES.iter().filter(|_| stderr_only) {
        assert!(!text.contains(n), "{what}: a step line for {n}:\n{text}");
    }
}

#[test]
fn a_run_shows_live_progress_on_a_tty_and_nothing_on_a_pipe_or_with_json() {
    let env = Env::new();
    let plain = env.lily(&["jobs", "run", "demo"]);
    plain.expect_code(0);
    assert_no_progress("stderr of a piped run", &plain.stderr, true);
    let json = env.lily(&["--json", "jobs", "run", "demo"]);
    json.expect_code(0);
    assert_no_progress("stderr of a --json run", &json.stderr, true);
    assert_eq!(json.json()["receipt"]["status"], "succeeded");

    let has_script = Command::new("sh").args(["-c", "command -v script"]).output().is_ok_and(|o| o.status.success());
    if !has_script {
        println!("note: `script` is not installed; the TTY display is covered by the unit tests of cli/progress.rs only");
        return;
    }
    // `script` gives lily a pseudo-terminal for stdin, stdout and stderr.
    let on_tty = |args: &str| {
        let o = Command::new("script")
            .args(["-qec", &format!("'{LILY}' {args}"), "/dev/null"])
            .current_dir(&env.root)
            .env("LILY_ROOT", &env.root)
            .env_remove("LILY_LOG")
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
            .expect("script");
        assert!(o.status.success(), "script {args}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let tty = on_tty("jobs run demo");
    for n in NODES {
        assert!(tty.contains(&format!("✓ {n} ")), "no finished line for {n}:\n{tty}");
    }
    assert!(tty.contains('\x1b'), "no live (redrawn) display:\n{tty}");
    // The summary still follows on stdout, on a line of its own.
    assert!(tty.contains("\n# demo — succeeded"), "{tty}");
    let tty_json = on_tty("--json jobs run demo");
    assert_no_progress("a --json run on a TTY", &tty_json, false);
    let out: Value = serde_json::from_str(&tty_json.replace("\r\n", "\n")).expect("stdout stays pure JSON on a TTY");
    assert_eq!(out["receipt"]["status"], "succeeded");
}

#[test]
fn the_timeline_of_a_demo_run_draws_every_step_and_its_json_matches_the_receipt() {
    let env = Env::new();
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    let run = env.only_run("demo");
    let run_id = run.file_name().expect("name").to_string_lossy().into_owned();
    let r = receipt(&run);

    let out = env.lily(&["jobs", "show", &run_id, "--timeline"]);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("run {run_id}: 3 steps in ")), "{}", out.stdout);
    for n in NODES {
        let line = lines
            .iter()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("no bar for {n}:\n{}", out.stdout));
        assert!(line.contains('█') && line.ends_with(" ok"), "{line}");
    }
    // Not a terminal: 80 columns.
    for l in &lines {
        assert!(l.chars().count() <= 80, "wider than 80: {l:?}");
    }

    let j = env.lily(&["--json", "jobs", "show", &run_id, "--timeline"]).json();
    assert_eq!(j["run_id"], run_id.as_str());
    let total = j["total_ms"].as_u64().expect("total_ms");
    let steps = j["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), r["steps"].as_array().expect("receipt steps").len());
    for s in steps {
        let node = s["node"].as_str().expect("node");
        let rec = r["steps"].as_array().into_iter().flatten().find(|x| x["node"] == node).expect("in the receipt");
        assert_eq!(s["duration_ms"], rec["duration_ms"], "{node}");
        assert_eq!(s["outcome"], "ok");
        let start = s["start_ms"].as_u64().expect("start_ms");
        assert!(start + s["duration_ms"].as_u64().expect("duration") <= total, "{s}");
    }
    // The synthesis starts after both specialists started.
    let start_of = |n: &str| steps.iter().find(|s| s["node"] == n).and_then(|s| s["start_ms"].as_u64()).expect("step");
    assert!(start_of("reduce:default.v1") >= start_of("map:security.v1"));

    env.lily(&["jobs", "show", "20000101T000000.000Z-00000000", "--timeline"]).expect_code(10);
}
