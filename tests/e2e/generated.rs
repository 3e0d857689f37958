//! What is generated from Lily's own definitions (#15 item 18): shell
//! completions and man pages from the clap command tree, JSON Schemas from
//! the types that parse specs, policy, config and receipts, and the
//! `# yaml-language-server: $schema=…` lines `lily init` writes.

use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn yaml(text: &str) -> Value {
    let v: Value = serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
    // An all-comments document (the starter config) is the defaults.
    if v.is_null() { serde_json::json!({}) } else { v }
}

fn schema(env: &Env, kind: &str) -> jsonschema::Validator {
    let out = env.lily(&["schema", kind]);
    out.expect_code(0);
    let s: Value = out.json();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::new(&s).unwrap_or_else(|e| panic!("lily schema {kind} does not compile: {e}"))
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

fn assert_valid(v: &jsonschema::Validator, what: &str, doc: &Value) {
    let errs = errors(v, doc);
    assert!(errs.is_empty(), "{what} does not validate:\n{}", errs.join("\n"));
}

#[test]
fn completions_come_from_the_command_tree_and_bash_accepts_them() {
    let env = Env::new();
    let bash = env.lily(&["completions", "bash"]);
    bash.expect_code(0);
    assert!(bash.stdout.contains("jobs") && bash.stdout.contains("--json"), "{}", bash.stdout);
    assert!(
        bash.stdout.contains("timeline") && bash.stdout.contains("schema"),
        "new subcommands and flags are in it"
    );
    let script = env.root.join("lily.bash");
    std::fs::write(&script, &bash.stdout).expect("write");
    let check = Command::new("bash").arg("-n").arg(&script).output().expect("bash -n");
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    for shell in ["zsh", "fish"] {
        let out = env.lily(&["completions", shell]);
        out.expect_code(0);
        assert!(out.stdout.contains("jobs") && out.stdout.contains("json"), "{shell}: {}", out.stdout);
        if has(shell) {
            let f = env.root.join(format!("lily.{shell}"));
            std::fs::write(&f, &out.stdout).expect("write");
            let check = Command::new(shell).arg("-n").arg(&f).output().expect("shell -n");
            assert!(check.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&check.stderr));
        } else {
            println!("note: {shell} is not installed; its script's syntax is not checked");
        }
    }
    env.lily(&["completions", "tcsh"]).expect_code(2);
    let j = env.lily(&["--json", "completions", "bash"]);
    assert_eq!(j.json()["shell"], "bash");
    assert_eq!(j.json()["script"].as_str(), Some(bash.stdout.as_str()));
}

#[test]
fn the_man_page_has_a_title_and_the_subcommands_and_man_renders_it() {
    let env = Env::new();
    let out = env.lily(&["man"]);
    out.expect_code(0);
    assert!(out.stdout.contains(".TH lily 1"), "{}", &out.stdout[..out.stdout.len().min(400)]);
    for sub in ["jobs", "policy", "runnables", "completions", "man", "schema"] {
        assert!(out.stdout.contains(sub), "{sub} is not in the man page");
    }
    let page = env.root.join("lily.1");
    std::fs::write(&page, &out.stdout).expect("write");
    if has("man") {
        let r = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man -l");
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success(), "man -l: {}", String::from_utf8_lossy(&r.stderr));
        assert!(text.contains("SUBCOMMANDS") || text.contains("jobs"), "{text}");
        assert!(!text.contains(".TH"), "roff left unrendered: {text}");
    } else {
        println!("note: man is not installed; the page is not rendered");
    }
    // --out DIR: one page per command (DIR is created).
    let dir = env.root.join("share/man/man1");
    let j = env.lily(&["--json", "man", "--out", &dir.display().to_string()]);
    j.expect_code(0);
    let written = j.json()["written"].as_array().expect("written").len();
    for name in ["lily.1", "lily-jobs.1", "lily-jobs-run.1", "lily-jobs-show.1", "lily-schema.1"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), written);
    assert!(std::fs::read_to_string(dir.join("lily-jobs-show.1")).expect("page").contains("timeline"));
}

/// Every full job spec in `examples/`, in `docs/` (YAML blocks with `id:`
/// and `target:` at the top) and written by `lily init`.
fn example_specs(env: &Env) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let add_dir = |dir: &Path, out: &mut Vec<(String, String)>| {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("entry").path();
            if p.to_string_lossy().ends_with(".job.yaml") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).expect("read")));
            }
        }
    };
    add_dir(&repo().join("examples/jobs"), &mut out);
    add_dir(&env.jobs_dir(), &mut out);
    for (name, block) in doc_yaml_blocks() {
        let top = |k: &str| block.lines().any(|l| l.starts_with(&format!("{k}:")));
        if top("id") && top("target") {
            out.push((name, block));
        }
    }
    out
}

/// The YAML code blocks of `docs/*.md`, named `file:line`.
fn doc_yaml_blocks() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read doc");
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut block {
                None if line.trim_start() == "```yaml" => block = Some((i + 1, String::new())),
                Some((start, b)) if line.trim_start() == "```" => {
                    out.push((format!("{}:{}", f.display(), start), std::mem::take(b)));
                    block = None;
                }
                Some((_, b)) => {
                    b.push_str(line);
                    b.push('\n');
                }
                None => {}
            }
        }
    }
    out
}

#[test]
fn every_example_and_documented_spec_validates_against_the_job_schema() {
    let env = Env::new();
    let job = schema(&env, "job");
    let specs = example_specs(&env);
    let names: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
    assert!(specs.len() >= 8, "examples (3), init (2), docs (3+): {names:?}");
    for (name, text) in &specs {
        assert_valid(&job, name, &yaml(text));
    }
    // The deliberately broken example is broken in meaning, not in shape:
    // it validates, and the parser's own checks refuse it.
    let broken = std::fs::read_to_string(repo().join("examples/invalid/broken.job.yaml")).expect("broken");
    assert_valid(&job, "examples/invalid/broken.job.yaml", &yaml(&broken));
    // Documented config and policy files validate too.
    let (config, policy) = (schema(&env, "config"), schema(&env, "policy"));
    let mut seen = 0;
    for (name, block) in doc_yaml_blocks() {
        if block.starts_with("# .lily/config.yaml") {
            assert_valid(&config, &name, &yaml(&block));
            seen += 1;
        } else if block.lines().any(|l| l.starts_with("version:")) {
            assert_valid(&policy, &name, &yaml(&block));
            seen += 1;
        }
    }
    assert!(seen >= 3, "{seen} documented config/policy files");
}

#[test]
fn the_files_lily_init_writes_validate_and_point_at_their_schema() {
    let env = Env::new();
    for (file, kind) in [
        (".lily/policy.yaml", "policy"),
        (".lily/config.yaml", "config"),
        (".lily/jobs/demo.job.yaml", "job"),
        (".lily/jobs/review.job.yaml", "job"),
    ] {
        let p = env.root.join(file);
        let text = std::fs::read_to_string(&p).expect("read");
        assert_valid(&schema(&env, kind), file, &yaml(&text));
        let first = text.lines().next().unwrap_or("");
        let rel = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{file}: first line {first:?}"));
        // What an editor resolves, relative to the file, is the schema `lily schema` prints.
        let target = p.parent().expect("dir").join(rel);
        let written = std::fs::read_to_string(&target).unwrap_or_else(|e| panic!("{file} → {}: {e}", target.display()));
        assert_eq!(written, env.lily(&["schema", kind]).stdout, "{file}");
    }
    assert!(env.lily_dir().join("schemas/receipt.schema.json").is_file());
    // init never overwrites: an edited schema file stays as it is.
    let job_schema = env.lily_dir().join("schemas/job.schema.json");
    std::fs::write(&job_schema, "{}\n").expect("edit");
    env.lily(&["init"]).expect_code(0);
    assert_eq!(std::fs::read_to_string(&job_schema).expect("read"), "{}\n");
}

#[test]
fn the_job_schema_rejects_unknown_keys_and_wrong_types_like_the_parser() {
    let env = Env::new();
    let job = schema(&env, "job");
    let demo = std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("demo");
    let cases = [
        ("unknown top-level key", format!("{demo}colour: red\n")),
        ("unknown nested key", demo.replace("runtime:\n", "runtime:\n  timeout: 5\n")),
        ("wrong type", demo.replace("timeout_seconds: 120", "timeout_seconds: soon")),
        ("unknown trigger type", demo.replace("type: manual", "type: hourly")),
        ("missing required key", demo.replace("title: Demo council over the example workspace\n", "")),
    ];
    for (what, text) in &cases {
        assert_ne!(text, &demo, "{what}: the edit did not apply");
        assert!(!errors(&job, &yaml(text)).is_empty(), "{what}: the schema accepts it");
        // The parser refuses the same documents.
        let f = env.root.join("bad.job.yaml");
        std::fs::write(&f, text).expect("write");
        env.lily(&["jobs", "validate", &f.display().to_string()]).expect_code(10);
    }
}

#[test]
fn a_real_receipt_validates_and_carries_receipt_version_1() {
    let env = Env::new();
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    let r = receipt(&env.only_run("demo"));
    assert_eq!(r["receipt_version"], 1);
    let v = schema(&env, "receipt");
    assert_valid(&v, "the demo run's receipt", &r);
    // A verified replay's receipt (trigger, verify, reads) validates too.
    let run_id = r["run_id"].as_str().expect("run_id").to_string();
    env.lily(&["jobs", "replay", &run_id, "--verify"]).expect_code(0);
    let replay = env
        .run_dirs("demo")
        .into_iter()
        .map(|d| receipt(&d))
        .find(|x| x["replay_of"] == run_id.as_str())
        .expect("replay");
    assert!(replay["verify"].is_object(), "{replay}");
    assert_valid(&v, "a verified replay's receipt", &replay);
    // Receipts written before receipt_version still validate.
    for name in ["receipt-0.1.0-demo.json", "receipt-0.1.0-approvals.json", "receipt-0.1.0-failed.json"] {
        let p = repo().join("host/tests/data").join(name);
        let old: Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("json");
        assert!(old.get("receipt_version").is_none());
        assert_valid(&v, name, &old);
    }
    let mut bad = r.clone();
    bad["status"] = Value::from("sort-of");
    assert!(!errors(&v, &bad).is_empty(), "an unknown status validates");
}
