//! `lily jobs run`'s live display on a TTY (and nothing anywhere else), and
//! `lily jobs show --timeline` (#15 item 15).

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};

const NODES: [&str; 3] = ["map:security.v1", "map:operations.v1", "reduce:default.v1"];

/// No display in `text`; `stderr_only`: it holds nothing else that names
/// the steps either (a `--json` stdout does, in the receipt).
fn has_script() -> bool {
    Command::new("sh").args(["-c", "command -v script"]).output().is_ok_and(|o| o.status.success())
}

/// `lily <args>` with a pseudo-terminal for stdin, stdout and stderr
/// (`script`); what the terminal got, and the exit status.
fn on_tty(env: &Env, args: &str) -> (String, i32) {
    let o = Command::new("script")
        .args(["-qec", &format!("'{LILY}' {args}"), "/dev/null"])
        .current_dir(&env.root)
        .env("LILY_ROOT", &env.root)
        .env_remove("LILY_LOG")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    (String::from_utf8_lossy(&o.stdout).into_owned(), o.status.code().unwrap_or(-1))
}

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

    if !has_script() {
        println!("note: `script` is not installed; the TTY display is covered by the unit tests of cli/progress.rs only");
        return;
    }
    let (tty, code) = on_tty(&env, "jobs run demo");
    assert_eq!(code, 0, "{tty}");
    for n in NODES {
        assert!(tty.contains(&format!("✓ {n} ")), "no finished line for {n}:\n{tty}");
    }
    assert!(tty.contains('\x1b'), "no live (redrawn) display:\n{tty}");
    // The summary still follows on stdout, on a line of its own.
    assert!(tty.contains("\n# demo — succeeded"), "{tty}");
    let (tty_json, code) = on_tty(&env, "--json jobs run demo");
    assert_eq!(code, 0, "{tty_json}");
    assert_no_progress("a --json run on a TTY", &tty_json, false);
    // `script` merges stderr into what it records: the one stderr line is
    // the run's start announcement (its id and directory); the rest is
    // stdout, one JSON document.
    let merged = tty_json.replace("\r\n", "\n");
    let (announce, doc) = merged.split_once("\n{").map(|(a, d)| (a.to_string(), format!("{{{d}"))).unwrap_or_default();
    assert!(
        announce.starts_with("run ") && announce.contains(" started: ") && !announce.contains('\n'),
        "{merged}"
    );
    let out: Value = serde_json::from_str(&doc).expect("stdout stays pure JSON on a TTY");
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

#[test]
fn a_failed_step_is_a_cross_on_the_tty_and_a_shaded_bar_on_the_timeline() {
    let env = Env::new();
    env.install("bad_specialist");
    let specialists = ["security.v1", "bad-specialist.v1", "operations.v1"];
    let input = "{ topic: \"hostile\", context: [\"mode:trap\"] }";
    env.write_job(
        "bad",
        &council_job("bad", &specialists, "default.v1", "deterministic", input, "", "{ timeout_seconds: 30 }"),
    );
    if has_script() {
        let (tty, code) = on_tty(&env, "jobs run bad");
        assert_eq!(code, 4, "partial:\n{tty}");
        assert!(tty.contains("✗ map:bad-specialist.v1 trap after "), "{tty}");
        assert!(tty.contains("✓ map:security.v1 "), "{tty}");
    } else {
        println!("note: `script` is not installed; the TTY display is not checked");
        env.lily(&["jobs", "run", "bad"]).expect_code(4);
    }
    let run = env.only_run("bad");
    let run_id = run.file_name().expect("name").to_string_lossy().into_owned();
    let out = env.lily(&["jobs", "show", &run_id, "--timeline"]);
    out.expect_code(0);
    let bad = out
        .stdout
        .lines()
        .find(|l| l.starts_with("map:bad-specialist.v1"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(bad.contains('▒') && !bad.contains('█') && bad.ends_with(" trap"), "{bad}");
}
