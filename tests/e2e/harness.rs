//! Shared helpers for the end-to-end tests: a fresh Lily root per test (made
//! with the real `lily init`), the real `lily` binary, and readers for what a
//! run leaves on disk.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `lily` binary under test.
pub const LILY: &str = env!("CARGO_BIN_EXE_lily");

/// Directory of the test guests (`probe.wasm`, `bad_specialist.wasm`, …).
pub fn guest_path(name: &str) -> PathBuf {
    PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"))
}

/// What one `lily` invocation did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// stdout parsed as JSON (`--json` output).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    /// stderr without the line `lily jobs run` prints when its run starts
    /// (`run <id> started: <dir> …`).
    pub fn errors(&self) -> &str {
        match self.stderr.split_once('\n') {
            Some((first, rest)) if first.starts_with("run ") && first.contains(" started: ") => rest,
            _ => &self.stderr,
        }
    }

    /// Panic with the output unless the exit status is `code`.
    pub fn expect_code(&self, code: i32) -> &Out {
        assert_eq!(self.code, code, "exit status\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A temporary Lily root initialised with `lily init`.
pub struct Env {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Env {
    /// `lily init` in a fresh temp dir. The compile cache is shared between
    /// tests (content-addressed, written atomically) so each test does not
    /// recompile the same components.
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical tempdir");
        let env = Env { _tmp: tmp, root };
        env.lily(&["init"]).expect_code(0);
        env.share_cache();
        env
    }

    fn share_cache(&self) {
        let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lily-e2e-compile-cache");
        std::fs::create_dir_all(&shared).expect("shared cache dir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).expect("cache perms");
            let cache = self.lily_dir().join("cache");
            std::fs::remove_dir(&cache).expect("remove empty cache dir");
            std::os::unix::fs::symlink(&shared, &cache).expect("link shared cache");
        }
    }

    pub fn lily_dir(&self) -> PathBuf {
        self.root.join(".lily")
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.lily_dir().join("jobs")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.lily_dir().join("runs")
    }

    /// A `lily` command with `--root`-equivalent `LILY_ROOT`, run in the
    /// root, with no inherited Lily configuration.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(LILY);
        c.current_dir(&self.root)
            .env_remove("LILY_JOBS_DIR")
            .env_remove("LILY_LOG")
            .env_remove("LILY_STORE")
            .env("LILY_ROOT", &self.root)
            .stdin(Stdio::null());
        c
    }

    /// Run `lily <args>` to completion.
    pub fn lily(&self, args: &[&str]) -> Out {
        Out::from(self.cmd().args(args).output().expect("spawn lily"))
    }

    /// Write `.lily/jobs/<name>.job.yaml`.
    pub fn write_job(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.jobs_dir().join(format!("{name}.job.yaml"));
        std::fs::write(&p, yaml).expect("write job");
        p
    }

    /// Replace `.lily/policy.yaml`.
    pub fn write_policy(&self, yaml: &str) {
        std::fs::write(self.lily_dir().join("policy.yaml"), yaml).expect("write policy");
    }

    /// Append runnable entries to the starter policy's `runnables:` map
    /// (`entries` is YAML indented by two spaces, e.g. `  "probe.v1": …`).
    pub fn add_policy_runnables(&self, entries: &str) {
        let p = self.lily_dir().join("policy.yaml");
        let text = std::fs::read_to_string(&p).expect("read policy");
        let text = text.replacen("runnables:\n", &format!("runnables:\n{entries}"), 1);
        std::fs::write(&p, text).expect("write policy");
    }

    /// `lily runnables install <guest>.wasm`.
    pub fn install(&self, guest: &str) {
        let p = guest_path(guest);
        self.lily(&["runnables", "install", &p.display().to_string()]).expect_code(0);
    }

    /// Run directories of a job, oldest first.
    pub fn run_dirs(&self, job: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.runs_dir().join(job))
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The only run directory of a job.
    pub fn only_run(&self, job: &str) -> PathBuf {
        let runs = self.run_dirs(job);
        assert_eq!(runs.len(), 1, "expected exactly one run of {job}: {runs:?}");
        runs.into_iter().next().expect("one run")
    }

    /// Make a directory (relative to the root) with files `(relative path, contents)`.
    pub fn write_tree(&self, dir: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let base = self.root.join(dir);
        std::fs::create_dir_all(&base).expect("mkdir");
        for (rel, bytes) in files {
            let p = base.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, bytes).expect("write fixture");
        }
        base
    }
}

/// `run_receipt.json` of a run directory.
pub fn receipt(run: &Path) -> Value {
    let text = std::fs::read_to_string(run.join("run_receipt.json")).unwrap_or_else(|e| panic!("{}: {e}", run.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("receipt of {} is not JSON: {e}", run.display()))
}

/// One specialist's report in a council receipt (the test fails, showing
/// the receipt, if there is none).
pub fn report_of(receipt: &Value, specialist: &str) -> Value {
    receipt["payload"]["reports"]
        .as_array()
        .and_then(|reports| reports.iter().find(|x| x["specialist"] == specialist))
        .cloned()
        .unwrap_or_else(|| panic!("no report of {specialist} in {receipt:#}"))
}

/// Every line of `events.jsonl`, each parsed (a line that does not parse fails the test).
pub fn events(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}")))
        .collect()
}

/// Event types in order.
pub fn event_types(run: &Path) -> Vec<String> {
    events(run).iter().map(|e| e["type"].as_str().unwrap_or("").to_string()).collect()
}

/// Wait until `cond` holds (polling), or panic after `limit` with `what`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A council job spec.
pub fn council_job(id: &str, specialists: &[&str], synthesizer: &str, strategy: &str, input: &str, extra_bindings: &str, runtime: &str) -> String {
    format!(
        "id: {id}\ntitle: Council {id}\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {input}\nbindings:\n  specialists: [{}]\n  synthesizer: {synthesizer}\n  synth_strategy: {strategy}\n{extra_bindings}trigger:\n  type: manual\nruntime: {runtime}\noutput: {{}}\n",
        specialists.join(", ")
    )
}

/// A `step.v1` job spec running `runnable` with `input` (a YAML/JSON flow mapping).
pub fn step_job(id: &str, runnable: &str, input: &str, extra_bindings: &str, runtime: &str) -> String {
    format!(
        "id: {id}\ntitle: Step {id}\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {input}\nbindings:\n  runnable: {runnable}\n{extra_bindings}trigger:\n  type: manual\nruntime: {runtime}\noutput: {{}}\n"
    )
}
