//! `lily export k8s`: golden manifests for a representative set of jobs,
//! strict validation against the real Kubernetes schemas (offline, with
//! `kubernetes-validate`), a cross-check with `kubectl create cronjob
//! --dry-run=client`, refusals by name, and `jobs run --scheduled-for` /
//! `--scheduled-from-env` as a CronJob's pod runs it.

use crate::harness::{Env, receipt, step_job};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cron(id: &str, cron: &str, tz: &str, runtime: &str) -> String {
    step_job(id, "echo.v1", "{ n: 1 }", "", runtime).replace(
        "trigger:\n  type: manual\n",
        &format!("trigger:\n  type: cron\n  cron: \"{cron}\"\n  timezone: {tz}\n"),
    )
}

/// A root with the jobs the golden files show: a daily job in New York with
/// retries and a memory cap, a paused one, one with parallel runs, and a
/// manual one (plus the `demo` and `review` jobs `lily init` writes).
fn representative() -> Env {
    let env = Env::new();
    env.write_job(
        "nightly",
        &cron(
            "nightly",
            "30 2 * * *",
            "America/New_York",
            "{ timeout_seconds: 120, retry_max: 2, retry_backoff_seconds: 5, memory_mb: 128, max_parallelism: 2 }",
        ),
    );
    env.write_job("weekly", &cron("weekly.report", "0 9 * * 1", "Europe/Berlin", "{}"));
    env.write_job("wide", &cron("wide", "*/15 * * * *", "UTC", "{ max_parallel_runs: 3 }"));
    env.write_job("adhoc", &step_job("adhoc", "echo.v1", "{ n: 2 }", "", "{ timeout_seconds: 30 }"));
    env.lily(&["jobs", "pause", "weekly.report"]).expect_code(0);
    env
}

fn export(env: &Env) -> (PathBuf, serde_json::Value) {
    let out = env.root.join("k8s");
    let o = env.lily(&[
        "--json",
        "export",
        "k8s",
        "--image",
        "ghcr.io/example/lily:0.1.0",
        "--namespace",
        "jobs",
        "--out",
        &out.display().to_string(),
    ]);
    o.expect_code(0);
    (out, o.json())
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/k8s")
}

#[test]
fn the_export_matches_the_golden_files() {
    let env = representative();
    let (out, report) = export(&env);
    let files: Vec<String> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        files,
        [
            "Dockerfile",
            "README.md",
            "configmap.yaml",
            "cronjobs/lily-nightly.yaml",
            "cronjobs/lily-weekly-report.yaml",
            "cronjobs/lily-wide.yaml",
            "jobs/lily-adhoc.yaml",
            "jobs/lily-demo.yaml",
            "jobs/lily-review.yaml",
            "kustomization.yaml"
        ]
    );
    let update = std::env::var_os("LILY_UPDATE_GOLDEN").is_some();
    // The ConfigMap holds this root's files (its temp path differs per run);
    // everything else is compared byte for byte.
    for f in files.iter().filter(|f| *f != "configmap.yaml") {
        let got = std::fs::read_to_string(out.join(f)).expect("generated");
        let golden = golden_dir().join(f);
        if update {
            std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
            std::fs::write(&golden, &got).expect("write golden");
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e} (LILY_UPDATE_GOLDEN=1 writes it)", golden.display()));
        assert_eq!(got, want, "{f} differs from {}", golden.display());
    }
    let cm = std::fs::read_to_string(out.join("configmap.yaml")).expect("configmap");
    assert!(
        cm.contains("name: lily-jobs") && cm.contains("nightly.job.yaml: |") && cm.contains("policy.yaml: |"),
        "{cm}"
    );
    // Named warnings, never silent changes.
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("wide: max_parallel_runs 3 has no CronJob equivalent"), "{warnings}");
    assert!(warnings.contains("demo: binds the directory \\\".lily/examples/workspace\\\""), "{warnings}");
    assert!(warnings.contains("no --store"), "{warnings}");
}

#[test]
fn what_kubernetes_cannot_express_is_refused_by_name() {
    let env = Env::new();
    env.write_job("secs", &cron("secs", "*/5 * * * * *", "UTC", "{}"));
    env.write_job(
        "skip",
        &cron("skip", "0 9 * * *", "UTC", "{}").replace("  timezone: UTC\n", "  timezone: UTC\n  catchup: skip\n"),
    );
    env.write_job("a", &cron("a.b", "0 9 * * *", "UTC", "{}"));
    env.write_job("b", &cron("a_b", "0 9 * * *", "UTC", "{}"));
    env.write_job("long", &cron(&"x".repeat(48), "0 9 * * *", "UTC", "{}"));
    let out = env.lily(&["export", "k8s", "--image", "i", "--out", &env.root.join("k8s").display().to_string()]);
    out.expect_code(10);
    for needle in [
        "secs: cron \"*/5 * * * * *\" has 6 fields; a Kubernetes CronJob schedule has 5",
        "skip: trigger.catchup: skip cannot be expressed",
        "both become the Kubernetes name \"lily-a-b\"",
        "Kubernetes CronJob names are at most 52",
    ] {
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.stderr);
    }
    assert!(!env.root.join("k8s").exists(), "nothing is written when the export is refused");
}

/// `kubernetes-validate`: `LILY_K8S_VALIDATE`, else on PATH; in CI it must exist.
fn validator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LILY_K8S_VALIDATE") {
        return Some(PathBuf::from(p));
    }
    let found = Command::new("kubernetes-validate").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must install kubernetes-validate (.ci/run)");
        println!("SKIPPED strict schema validation: kubernetes-validate is not installed (pip install kubernetes-validate)");
    }
    found.then(|| PathBuf::from("kubernetes-validate"))
}

#[test]
fn the_manifests_pass_strict_validation_against_the_kubernetes_1_30_schemas() {
    let Some(tool) = validator() else { return };
    let env = representative();
    let (out, _) = export(&env);
    // Job templates use `generateName` (each `kubectl create -f` names its
    // own Job); the validator wants a `name`, so it gets a copy with one.
    let mut files = vec![out.join("configmap.yaml")];
    for dir in ["cronjobs", "jobs"] {
        for e in std::fs::read_dir(out.join(dir)).expect("dir").filter_map(Result::ok) {
            let p = e.path();
            let text = std::fs::read_to_string(&p).expect("read");
            if text.contains("generateName:") {
                let copy = out.join(format!("{}.named.yaml", e.file_name().to_string_lossy()));
                std::fs::write(&copy, text.replace("generateName: ", "name: ")).expect("copy");
                files.push(copy);
            } else {
                files.push(p);
            }
        }
    }
    let o = Command::new(&tool)
        .args(["--strict", "-k", "1.30.0"])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "kubernetes-validate failed:\n{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len() + 1,
        "every object validated (two ConfigMaps):\n{text}"
    );
}

#[test]
fn kubectl_agrees_on_the_fields_it_generates() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        println!("SKIPPED the kubectl cross-check: kubectl is not installed");
        return;
    }
    let env = representative();
    let (out, _) = export(&env);
    let ours: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(out.join("cronjobs/lily-nightly.yaml")).expect("read")).expect("yaml");
    let o = Command::new("kubectl")
        .args([
            "create",
            "cronjob",
            "lily-nightly",
            "--image=ghcr.io/example/lily:0.1.0",
            "--schedule=30 2 * * *",
            "--dry-run=client",
            "-o",
            "json",
        ])
        .output()
        .expect("kubectl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    for ptr in [
        "/apiVersion",
        "/kind",
        "/metadata/name",
        "/spec/schedule",
        "/spec/jobTemplate/spec/template/spec/containers/0/image",
    ] {
        assert_eq!(ours.pointer(ptr), theirs.pointer(ptr), "{ptr}");
    }
    // kubectl's default restart policy retries in place; ours leaves retries to Lily.
    assert_eq!(
        ours.pointer("/spec/jobTemplate/spec/template/spec/restartPolicy"),
        Some(&serde_json::json!("Never"))
    );
    assert_eq!(ours.pointer("/spec/jobTemplate/spec/backoffLimit"), Some(&serde_json::json!(0)));
}

#[test]
fn a_pod_run_records_its_scheduled_time_and_where_it_ran() {
    let env = Env::new();
    env.write_job("nightly", &cron("nightly", "30 2 * * *", "America/New_York", "{}"));
    env.lily(&["jobs", "run", "nightly", "--scheduled-for", "2027-03-15T06:30:00Z"]).expect_code(0);
    let r = receipt(&env.only_run("nightly"));
    assert_eq!(r["trigger"]["type"], "cron");
    assert_eq!(r["trigger"]["scheduled_for"], "2027-03-15T06:30:00.000Z");
    assert_eq!(r["trigger"]["scheduled_for_local"], "2027-03-15T02:30:00-04:00", "{}", r["trigger"]);
    assert!(r["runner"]["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{}", r["runner"]);
    // As the CronJob's pod: the Job name carries the scheduled minute.
    let minute = chrono::DateTime::parse_from_rfc3339("2027-03-16T06:30:00Z").expect("t").timestamp() / 60;
    let o = env
        .cmd()
        .args(["jobs", "run", "nightly", "--scheduled-from-env"])
        .env("LILY_K8S_JOB_NAME", format!("lily-nightly-{minute}"))
        .env("LILY_POD_NAME", "lily-nightly-29xxxx-abcde")
        .env("LILY_NODE_NAME", "node-7")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let runs = env.run_dirs("nightly");
    let r = receipt(&runs[1]);
    assert_eq!(r["trigger"]["scheduled_for"], "2027-03-16T06:30:00.000Z");
    assert_eq!(r["runner"]["pod"], "lily-nightly-29xxxx-abcde");
    assert_eq!(r["runner"]["node"], "node-7");
    // A Job made by hand (no minute in its name) is a manual run.
    let o = env
        .cmd()
        .args(["jobs", "run", "nightly", "--scheduled-from-env"])
        .env("LILY_K8S_JOB_NAME", "lily-nightly-manual-abc")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(receipt(&env.run_dirs("nightly")[2])["trigger"]["type"], "manual");
    let bad = env.lily(&["jobs", "run", "nightly", "--scheduled-for", "tomorrow"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("not an RFC 3339 time"), "{}", bad.stderr);
}

/// The generated `Dockerfile` builds a `FROM scratch` image of a static
/// `lily`, and that image runs against a mounted root — where there is a
/// Docker daemon and a musl build of `lily` (`$LILY_MUSL_BIN`, else
/// `target/x86_64-unknown-linux-musl/release/lily`). Without either the
/// test says in its output that the image was **not built** (this machine
/// has the `docker` CLI but no daemon; CI neither) — docs/kubernetes.md
/// says the same.
#[test]
fn the_generated_dockerfile_builds_an_image_that_runs_against_a_mounted_root() {
    let not_built =
        |why: &str| println!("NOT BUILT: the image of the generated Dockerfile was not built or run: {why} (see docs/kubernetes.md, what was proven here)");
    match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Err(e) => return not_built(&format!("no docker CLI ({e})")),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            return not_built(&format!(
                "docker has no daemon here (`docker info`: {})",
                err.lines().last().unwrap_or("").trim()
            ));
        }
        Ok(_) => {}
    }
    let musl = std::env::var_os("LILY_MUSL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/x86_64-unknown-linux-musl/release/lily"));
    if !musl.is_file() {
        return not_built(&format!(
            "no static build of lily at {} (cargo build --release --locked -p lily --target x86_64-unknown-linux-musl, or set LILY_MUSL_BIN)",
            musl.display()
        ));
    }
    let env = representative();
    let (out, _) = export(&env);
    std::fs::copy(&musl, out.join("lily")).expect("copy the static lily");
    let tag = format!("lily-e2e-{}", std::process::id());
    let o = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(&out)
        .output()
        .expect("docker build");
    assert!(o.status.success(), "docker build: {}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("docker")
        .args(["run", "--rm", "--read-only", "--network", "none", "-v"])
        .arg(format!("{}:/lily:ro", env.root.display()))
        .args([&tag, "jobs", "list"])
        .output()
        .expect("docker run");
    let _ = Command::new("docker").args(["image", "rm", "-f", &tag]).output();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "docker run: {}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("nightly") && stdout.contains("weekly.report"), "{stdout}");
    println!("built and ran the image {tag} (jobs list against the mounted root)");
}
