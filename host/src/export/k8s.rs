//! `lily export k8s`: the jobs of a root as Kubernetes objects — one
//! `batch/v1` CronJob per cron job, a Job template per manual job, a
//! ConfigMap with the specs, policy and config, a Dockerfile for the image
//! and a `kustomization.yaml` — so a cluster's CronJob controller can be
//! the scheduler. What Kubernetes cannot express is refused by name (or
//! warned about), never silently changed. See `docs/kubernetes.md`.

use crate::error::{ErrorCode, LilyError};
use crate::spec::{self, Catchup, JobSpec, TriggerType};
use crate::triggers::state::{self, Activity, StateStore};
use crate::workspace::Root;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Kubernetes caps CronJob names at 52 characters (the Job name appends
/// `-<11 digits>`, and a name is at most 63).
pub const MAX_NAME: usize = 52;

/// Where the root lives in the image's pods.
pub const POD_ROOT: &str = "/lily";

/// Memory a `lily` process needs besides its guests (the binary, wasmtime,
/// the compile cache mapping).
const BASE_MEMORY_MB: u64 = 64;

/// Options of `lily export k8s`.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    pub image: String,
    pub namespace: Option<String>,
    /// The run store pods write to (`--store`); `None`: an `emptyDir` per pod
    /// (runs do not outlive the pod — say so).
    pub store: Option<String>,
}

/// What the pods mount besides the specs.
#[derive(Debug, Clone, Copy)]
struct Mounts {
    policy: bool,
    config: bool,
}

/// The generated files (relative path → text) and the warnings.
#[derive(Debug, Clone, Serialize)]
pub struct K8sExport {
    pub files: BTreeMap<String, String>,
    pub warnings: Vec<String>,
    /// Job id → the generated object name.
    pub names: BTreeMap<String, String>,
}

/// A DNS-1123 label from a job id: lower case, `[a-z0-9-]`, starting and
/// ending with an alphanumeric; `None` when nothing usable is left or it is
/// longer than [`MAX_NAME`] (Kubernetes would refuse or truncate it).
pub fn dns_name(id: &str) -> Result<String, String> {
    let mut out = String::new();
    for ch in id.chars() {
        let c = ch.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    let name = format!("lily-{out}");
    if out.is_empty() {
        return Err(format!("job id {id:?} has no letters or digits to name a Kubernetes object after"));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "job id {id:?} gives the name {name:?} ({} characters); Kubernetes CronJob names are at most {MAX_NAME}: shorten the id",
            name.len()
        ));
    }
    Ok(name)
}

/// A crontab Kubernetes' controller accepts with the same meaning: five
/// fields or a macro; no seconds field, no `L` / `W` / `#`, no `TZ=` prefix.
pub fn k8s_schedule(expr: &str) -> Result<String, String> {
    let e = expr.trim();
    if e.starts_with('@') {
        return Ok(e.to_string());
    }
    let fields: Vec<&str> = e.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "cron {e:?} has {} fields; a Kubernetes CronJob schedule has 5 (minute hour day month weekday) — second-level schedules cannot be expressed",
            fields.len()
        ));
    }
    if let Some(f) = fields.iter().find(|f| f.contains(['L', 'W', '#'])) {
        return Err(format!(
            "cron {e:?}: the field {f:?} uses L, W or #, which the Kubernetes controller does not support"
        ));
    }
    Ok(fields.join(" "))
}

/// The scheduled time a CronJob's Job stands for: the controller names each
/// Job `<cronjob>-<scheduled unix time in minutes>`. `None` for any other
/// name (a Job made by hand with `kubectl create job --from=cronjob/…`).
pub fn scheduled_time_of_job_name(name: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, minutes) = name.rsplit_once('-')?;
    // Minutes since 1970 have 8 digits until the year 2160; a short or long
    // number is someone's suffix, not a scheduled minute.
    if !(7..=9).contains(&minutes.len()) || !minutes.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let m: i64 = minutes.parse().ok()?;
    chrono::DateTime::from_timestamp(m.checked_mul(60)?, 0)
}

/// Generate the export for every valid job of the root.
pub fn export(root: &Root, opts: &K8sOptions) -> Result<K8sExport, LilyError> {
    let files = spec::discover(&root.jobs_dir);
    let declared = spec::declared_ids_of(&files);
    let st = state::read_state(&StateStore::new(root).path()).unwrap_or_default();
    let mut out = K8sExport {
        files: BTreeMap::new(),
        warnings: Vec::new(),
        names: BTreeMap::new(),
    };
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    let mut root_cm = serde_json::Map::new();
    if let Some(p) = read(root.policy_path()) {
        root_cm.insert("policy.yaml".into(), Value::from(p));
    }
    if let Some(c) = read(root.lily_dir().join("config.yaml")) {
        root_cm.insert("config.yaml".into(), Value::from(c));
    }
    let mounts = Mounts {
        policy: root_cm.contains_key("policy.yaml"),
        config: root_cm.contains_key("config.yaml"),
    };
    let mut problems = Vec::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut specs_cm = serde_json::Map::new();
    let mut resources = vec!["configmap.yaml".to_string()];
    for f in &files {
        let file_name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let s = match &f.spec {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {}", f.path.display(), e.message));
                continue;
            }
        };
        if declared.get(&s.id).is_some_and(|p| p.len() > 1) {
            problems.push(format!("job id {:?} is declared by several files", s.id));
            continue;
        }
        let name = match dns_name(&s.id) {
            Ok(n) => n,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if let Some(other) = by_name.insert(name.clone(), s.id.clone()) {
            problems.push(format!("job ids {other:?} and {:?} both become the Kubernetes name {name:?}; rename one", s.id));
            continue;
        }
        specs_cm.insert(file_name.clone(), Value::from(f.raw.clone().unwrap_or_default()));
        if let Some(ws) = s.bindings.get("workspace").and_then(Value::as_str) {
            out.warnings.push(format!(
                "{}: binds the directory {ws:?}; the pod has it only if the image or a volume you add provides it at {POD_ROOT}/{ws} (else the run fails job_bindings_invalid)",
                s.id
            ));
        }
        let activity = st.jobs.get(&s.id).map(|j| j.state).unwrap_or_default();
        let doc = match s.trigger.kind {
            TriggerType::Cron => match cron_job(s, &name, activity, opts, mounts, &mut out.warnings) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{}: {e}", s.id));
                    continue;
                }
            },
            TriggerType::Manual => manual_job(s, &name, opts, mounts),
        };
        let path = match s.trigger.kind {
            TriggerType::Cron => format!("cronjobs/{name}.yaml"),
            TriggerType::Manual => format!("jobs/{name}.yaml"),
        };
        if s.trigger.kind == TriggerType::Cron {
            resources.push(path.clone());
        }
        out.files.insert(path, yaml(&doc)?);
        out.names.insert(s.id.clone(), name);
    }
    if !problems.is_empty() {
        return Err(
            LilyError::new(ErrorCode::JobInvalidSpec, format!("cannot export to Kubernetes:\n  {}", problems.join("\n  ")))
                .with_hint("fix or remove the jobs named above; `lily jobs validate` checks the specs")
                .with_details(json!({"problems": problems})),
        );
    }
    let cm = [config_map("lily-jobs", specs_cm, opts), config_map("lily-root", root_cm, opts)];
    let cm_text = cm.iter().map(yaml).collect::<Result<Vec<_>, _>>()?.join("---\n");
    out.files.insert("configmap.yaml".into(), cm_text);
    let mut kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    if let Some(ns) = &opts.namespace {
        kustomization["namespace"] = Value::from(ns.clone());
    }
    out.files.insert("kustomization.yaml".into(), yaml(&kustomization)?);
    out.files.insert("Dockerfile".into(), DOCKERFILE.to_string());
    out.files.insert("README.md".into(), readme(&out.names, files_manual(&files), opts));
    if let Some(u) = &opts.store {
        crate::config::StoreUrl::parse(u).map_err(|m| LilyError::new(ErrorCode::JobInvalidSpec, m).with_hint("see docs/kubernetes.md#the-run-store"))?;
    }
    if opts.store.is_none() {
        out.warnings.push(
            "no --store: each pod keeps its runs in an emptyDir that is gone with the pod, and nothing stops a second pod \
             for the same scheduled time (a DST fall-back hour fires twice on Kubernetes, kubernetes#121594)"
                .into(),
        );
    }
    Ok(out)
}

fn files_manual(files: &[spec::SpecFile]) -> Vec<String> {
    files
        .iter()
        .filter_map(|f| f.spec.as_ref().ok())
        .filter(|s| s.trigger.kind == TriggerType::Manual)
        .filter_map(|s| dns_name(&s.id).ok())
        .collect()
}

fn yaml(v: &Value) -> Result<String, LilyError> {
    serde_norway::to_string(v).map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot render YAML: {e}")))
}

fn labels(s: &JobSpec) -> Value {
    json!({
        "app.kubernetes.io/name": "lily",
        "app.kubernetes.io/component": "job",
        "app.kubernetes.io/part-of": "lily",
        "app.kubernetes.io/managed-by": "lily-export",
        "lily.dev/job-id": dns_name(&s.id).unwrap_or_default().trim_start_matches("lily-"),
    })
}

fn metadata(name: &str, s: Option<&JobSpec>, opts: &K8sOptions) -> Value {
    let mut m = json!({"name": name});
    if let Some(ns) = &opts.namespace {
        m["namespace"] = Value::from(ns.clone());
    }
    if let Some(s) = s {
        m["labels"] = labels(s);
        m["annotations"] = json!({"lily.dev/job-id": s.id, "lily.dev/title": s.title});
    }
    m
}

fn config_map(name: &str, data: serde_json::Map<String, Value>, opts: &K8sOptions) -> Value {
    let mut m = metadata(name, None, opts);
    m["labels"] = json!({"app.kubernetes.io/name": "lily", "app.kubernetes.io/managed-by": "lily-export"});
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": data})
}

/// Seconds a run may take in all: every attempt's timeout plus the backoff
/// waits between them (doubling, at most 300 s each), plus a minute to start
/// and write the receipt.
fn active_deadline(s: &JobSpec) -> u64 {
    let attempts = u64::from(s.runtime.retry_max) + 1;
    let mut backoff = 0u64;
    let mut wait = s.runtime.retry_backoff_seconds;
    for _ in 1..attempts {
        backoff = backoff.saturating_add(wait.min(300));
        wait = wait.saturating_mul(2);
    }
    s.runtime.timeout_seconds.saturating_mul(attempts).saturating_add(backoff).saturating_add(60)
}

/// The pod template: the image's `lily` running one job, the root from the
/// ConfigMaps, writable state in `emptyDir`s, non-root, read-only root
/// filesystem, no service account token, memory from the job's cap.
fn pod_spec(s: &JobSpec, args: Vec<Value>, opts: &K8sOptions, m: Mounts) -> Value {
    let parallel = s.runtime.max_parallelism.unwrap_or(2).max(1) as u64;
    let guest_mb = s.runtime.memory_mb.unwrap_or(64);
    let limit_mb = BASE_MEMORY_MB + guest_mb.saturating_mul(parallel);
    let mut env = vec![
        json!({"name": "LILY_ROOT", "value": POD_ROOT}),
        json!({"name": "NO_COLOR", "value": "1"}),
        json!({"name": "LILY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "LILY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
        json!({"name": "LILY_K8S_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}}),
    ];
    if let Some(store) = &opts.store {
        env.push(json!({"name": "LILY_STORE", "value": store}));
    }
    let mut mounts = vec![json!({"name": "jobs", "mountPath": format!("{POD_ROOT}/.lily/jobs"), "readOnly": true})];
    for (present, file) in [(m.policy, "policy.yaml"), (m.config, "config.yaml")] {
        if present {
            mounts.push(json!({"name": "root", "mountPath": format!("{POD_ROOT}/.lily/{file}"), "subPath": file, "readOnly": true}));
        }
    }
    mounts.extend([
        json!({"name": "runs", "mountPath": format!("{POD_ROOT}/.lily/runs")}),
        json!({"name": "state", "mountPath": format!("{POD_ROOT}/.lily/state")}),
        json!({"name": "cache", "mountPath": format!("{POD_ROOT}/.lily/cache")}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ]);
    json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "lily",
            "image": opts.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "env": env,
            "resources": {
                "requests": {"cpu": "250m", "memory": format!("{limit_mb}Mi")},
                "limits": {"memory": format!("{limit_mb}Mi")},
            },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": mounts,
        }],
        "volumes": [
            {"name": "jobs", "configMap": {"name": "lily-jobs"}},
            {"name": "root", "configMap": {"name": "lily-root"}},
            {"name": "runs", "emptyDir": {}},
            {"name": "state", "emptyDir": {}},
            {"name": "cache", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    })
}

/// The Job spec of one run: Lily's own retries (`backoffLimit: 0`), the
/// run's whole deadline.
fn job_spec(s: &JobSpec, args: Vec<Value>, opts: &K8sOptions, m: Mounts) -> Value {
    json!({
        // Lily retries inside the pod (it knows which failures are worth a
        // retry and records every attempt in one receipt); Kubernetes must
        // not multiply that by starting new pods.
        "backoffLimit": 0,
        "activeDeadlineSeconds": active_deadline(s),
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {"labels": labels(s)},
            "spec": pod_spec(s, args, opts, m),
        },
    })
}

fn cron_job(s: &JobSpec, name: &str, activity: Activity, opts: &K8sOptions, m: Mounts, warnings: &mut Vec<String>) -> Result<Value, String> {
    let expr = s.trigger.cron.as_deref().unwrap_or_default();
    let schedule = k8s_schedule(expr)?;
    let zone = s.effective_timezone().unwrap_or("UTC");
    if s.trigger.catchup != Catchup::Latest {
        return Err(
            "trigger.catchup: skip cannot be expressed: a CronJob starts a missed time that is still within startingDeadlineSeconds \
             (use catchup: latest, the Kubernetes behaviour)"
                .into(),
        );
    }
    if !zone.contains('/') && zone != "UTC" {
        warnings.push(format!(
            "{}: time zone {zone:?} is not an Area/Location name; the cluster's Go tz database may not know it (then the controller creates nothing: UnknownTimeZone)",
            s.id
        ));
    }
    if s.trigger.starting_deadline_seconds < 10 {
        warnings.push(format!(
            "{}: starting_deadline_seconds {} is below the CronJob controller's 10 s sync period; Kubernetes may miss every time",
            s.id, s.trigger.starting_deadline_seconds
        ));
    }
    let concurrency = if s.runtime.max_parallel_runs <= 1 { "Forbid" } else { "Allow" };
    if s.runtime.max_parallel_runs > 1 {
        warnings.push(format!(
            "{}: max_parallel_runs {} has no CronJob equivalent (Allow | Forbid | Replace): exported as Allow; Lily's cap holds across pods only with a shared --store",
            s.id, s.runtime.max_parallel_runs
        ));
    }
    let args = vec![
        Value::from("jobs"),
        Value::from("run"),
        Value::from(s.id.clone()),
        Value::from("--scheduled-from-env"),
    ];
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(name, Some(s), opts),
        "spec": {
            "schedule": schedule,
            "timeZone": zone,
            "concurrencyPolicy": concurrency,
            "startingDeadlineSeconds": s.trigger.starting_deadline_seconds,
            "suspend": activity != Activity::Active,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels(s)},
                "spec": job_spec(s, args, opts, m),
            },
        },
    }))
}

fn manual_job(s: &JobSpec, name: &str, opts: &K8sOptions, m: Mounts) -> Value {
    let mut meta = metadata(name, Some(s), opts);
    // `kubectl create -f` gives each run its own name.
    meta.as_object_mut().map(|m| m.remove("name"));
    meta["generateName"] = Value::from(format!("{name}-"));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": job_spec(s, vec![Value::from("jobs"), Value::from("run"), Value::from(s.id.clone())], opts, m),
    })
}

fn readme(names: &BTreeMap<String, String>, manual: Vec<String>, opts: &K8sOptions) -> String {
    let ns = opts.namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_default();
    let mut s = String::from(
        "# Lily on Kubernetes (generated by `lily export k8s`)\n\n\
         Build the image from this directory's Dockerfile (it expects a static `lily` binary next to it),\n\
         push it, then apply everything:\n\n```\nkubectl apply -k .\n```\n\n## Jobs\n\n| job | object |\n| --- | --- |\n",
    );
    for (id, name) in names {
        s.push_str(&format!("| `{id}` | `{name}` |\n"));
    }
    s.push_str("\nRun a cron job now:\n\n```\n");
    for name in names.values().filter(|n| !manual.contains(n)) {
        s.push_str(&format!("kubectl create job{ns} --from=cronjob/{name} {name}-manual-$(date +%s)\n"));
    }
    s.push_str("```\n\nPause / resume one:\n\n```\n");
    for name in names.values().filter(|n| !manual.contains(n)) {
        s.push_str(&format!("kubectl patch cronjob{ns} {name} -p '{{\"spec\":{{\"suspend\":true}}}}'\n"));
    }
    s.push_str("```\n");
    if !manual.is_empty() {
        s.push_str("\nManual jobs are Job templates (not applied by the kustomization); start one with:\n\n```\n");
        for name in &manual {
            s.push_str(&format!("kubectl create{ns} -f jobs/{name}.yaml\n"));
        }
        s.push_str("```\n");
    }
    s.push_str("\nSee docs/kubernetes.md in the Lily repository for the field mapping and what is refused.\n");
    s
}

/// The image: the static `lily` binary on `scratch`, as a non-root user.
pub const DOCKERFILE: &str = "# The lily image for the generated CronJobs. Build a static binary first:\n\
#   rustup target add x86_64-unknown-linux-musl\n\
#   cargo build --release --locked -p lily --target x86_64-unknown-linux-musl\n\
#   cp target/x86_64-unknown-linux-musl/release/lily .\n\
# then: docker build -t <image> .\n\
FROM scratch\n\
COPY lily /lily-bin/lily\n\
USER 65532:65532\n\
WORKDIR /lily\n\
ENTRYPOINT [\"/lily-bin/lily\"]\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_safe_and_capped() {
        assert_eq!(dns_name("svc-review").as_deref(), Ok("lily-svc-review"));
        assert_eq!(dns_name("Nightly_Report.v2").as_deref(), Ok("lily-nightly-report-v2"));
        assert_eq!(dns_name("--a--b--").as_deref(), Ok("lily-a-b"));
        assert!(dns_name("___").is_err());
        let long = "x".repeat(48);
        assert!(dns_name(&long).expect_err("53 characters").contains("at most 52"));
        assert_eq!(dns_name(&"x".repeat(47)).map(|n| n.len()), Ok(52));
    }

    #[test]
    fn the_scheduled_minute_comes_from_the_job_name() {
        let t = scheduled_time_of_job_name("lily-nightly-29412345").expect("minute");
        assert_eq!(t.timestamp(), 29_412_345 * 60);
        assert_eq!(crate::util::rfc3339(t), "2025-12-03T05:45:00.000Z");
        assert_eq!(scheduled_time_of_job_name("lily-nightly-manual-1764668700"), None, "seconds, not minutes");
        assert_eq!(scheduled_time_of_job_name("lily-nightly"), None);
    }

    #[test]
    fn schedules_kubernetes_cannot_express_are_refused() {
        assert_eq!(k8s_schedule("0  9 * * 1-5").as_deref(), Ok("0 9 * * 1-5"));
        assert_eq!(k8s_schedule("@daily").as_deref(), Ok("@daily"));
        assert!(k8s_schedule("*/5 * * * * *").expect_err("seconds").contains("second-level"));
        assert!(k8s_schedule("0 9 L * *").expect_err("L").contains("L, W or #"));
    }
}
