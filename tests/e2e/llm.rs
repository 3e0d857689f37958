//! Model calls through the CLI: the example `review` job that `lily init`
//! writes, against a scripted provider on 127.0.0.1, with the key in the
//! environment of `lily` only.

use crate::fake_llm::{KEY, council_provider, files_holding};
use crate::harness::*;

/// The grounded citation the scripted review makes into the example workspace.
const CITE: (&str, usize, &str) = ("src/app.py", 5, "# TODO: validate the amount");

fn configure(env: &Env, port: u16) {
    std::fs::write(
        env.lily_dir().join("config.yaml"),
        format!(
            "llm:\n  providers:\n    fake: {{kind: openai, base_url: \"http://127.0.0.1:{port}/v1\", api_key_env: LILY_TEST_LLM_KEY, timeout_seconds: 2, max_retries: 0}}\n  models:\n    reviewer: {{provider: fake, model: fake-model-1}}\n"
        ),
    )
    .expect("config");
}

fn lily_with_key(env: &Env, args: &[&str]) -> Out {
    let o = env.cmd().env("LILY_TEST_LLM_KEY", KEY).args(args).output().expect("spawn lily");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(KEY), "lily printed the key");
    out
}

#[test]
fn the_review_job_calls_the_model_shows_its_calls_replays_offline_and_never_writes_the_key() {
    let env = Env::new();
    let fake = council_provider("llm-review.v1", CITE);
    configure(&env, fake.port);

    let check = lily_with_key(&env, &["llm", "check"]);
    check.expect_code(0);
    assert!(
        check.stdout.contains("✓ reviewer answered") && check.stdout.contains("fake-model-1"),
        "{}",
        check.stdout
    );

    let explain = lily_with_key(&env, &["policy", "explain", "review"]);
    explain.expect_code(0);
    assert!(explain.stdout.contains("llm reviewer (per run under \"llm-*\": 20 calls"), "{}", explain.stdout);

    let run = lily_with_key(&env, &["jobs", "run", "review"]);
    run.expect_code(0);
    assert!(run.stdout.contains("One secret is committed"), "the model's summary: {}", run.stdout);
    let dir = env.only_run("review");
    let r = receipt(&dir);
    assert_eq!(r["llm"]["calls"], 2, "{}", r["llm"]);
    let show = lily_with_key(&env, &["jobs", "show", r["run_id"].as_str().expect("id")]);
    assert!(show.stdout.contains("model calls: 2 (200 input, 40 output tokens)"), "{}", show.stdout);
    assert!(show.stdout.contains("map:llm-review.v1 1 calls"), "{}", show.stdout);
    assert!(files_holding(&env.root, KEY).is_empty(), "the key was written under the root");

    drop(fake);
    let replay = lily_with_key(&env, &["jobs", "replay", r["run_id"].as_str().expect("id"), "--verify"]);
    replay.expect_code(0);
    let check = lily_with_key(&env, &["llm", "check"]);
    check.expect_code(13);
    assert!(
        check.stdout.contains("✗ reviewer") && check.stdout.contains("provider error connect"),
        "{}",
        check.stdout
    );
}

#[test]
fn without_a_configured_model_the_review_job_falls_back_and_says_why() {
    let env = Env::new();
    let run = env.lily(&["jobs", "run", "review"]);
    run.expect_code(4);
    assert!(run.stdout.starts_with("# review — partial"), "{}", run.stdout);
    assert!(
        run.stdout.contains("[fallback: llm_synth_failed") && run.stdout.contains("is not a model alias in .lily/config.yaml"),
        "{}",
        run.stdout
    );
    let models = env.lily(&["llm", "models"]);
    assert!(models.stdout.contains("no model aliases"), "{}", models.stdout);
}

#[test]
fn the_commands_of_docs_llm_md_run_in_order() {
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/llm.md")).expect("docs/llm.md");
    let blocks: Vec<String> = crate::authoring::fenced_blocks(&doc)
        .into_iter()
        .filter(|(_, info, _)| info == "sh")
        .map(|(_, _, body)| body)
        .collect();
    assert!(blocks.len() >= 2, "the first-run blocks are there");
    let fake = council_provider("llm-review.v1", CITE);
    let script = format!("set -euo pipefail\n{}", blocks.concat()).replace("127.0.0.1:8099", &format!("127.0.0.1:{}", fake.port));
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().canonicalize().expect("canon");
    let (bin, work) = (base.join("bin"), base.join("work"));
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&work).expect("work");
    #[cfg(unix)]
    std::os::unix::fs::symlink(LILY, bin.join("lily")).expect("link lily");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env_remove("LILY_ROOT")
        .env_remove("LILY_JOBS_DIR")
        .env_remove("LILY_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash");
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "a command of docs/llm.md failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("✓ reviewer answered"), "{stdout}");
    assert!(stdout.contains("model calls: 2"), "{stdout}");
    assert!(stdout.contains("identical"), "the replay verified: {stdout}");
}
