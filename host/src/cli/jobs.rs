//! `lily jobs …`

use super::{EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, EXIT_PARTIAL, Global, exit_code, render, root};
use clap::Subcommand;
use lily::error::{ErrorCode, LilyError};
use lily::jobs::{Cancel, Lily, RunOptions};
use lily::policy::Policy;
use lily::runs::{self, RunStatus};
use lily::spec::{self, TriggerType};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List jobs: id, title, trigger (next fire for cron jobs), last run
    List,
    /// Validate specs without running (spec, target, bindings, policy, compile)
    Validate {
        /// Spec files; default: every spec in the jobs directory
        files: Vec<PathBuf>,
    },
    /// Run a job once
    Run {
        id: String,
        /// Wait for a free slot when max_parallel_runs is reached instead of refusing
        #[arg(long)]
        wait: bool,
        /// Run as the cron run of this scheduled time (RFC 3339), e.g. when another scheduler (a Kubernetes CronJob) fired it
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339, conflicts_with = "scheduled_from_env")]
        scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
        /// Take the scheduled time from the Kubernetes Job name in $LILY_K8S_JOB_NAME (`<cronjob>-<unix minute>`, as `lily export k8s` sets it); a name without one runs as a manual run
        #[arg(long)]
        scheduled_from_env: bool,
        /// Run store to publish to / read from: s3://bucket/prefix, file:///path (default: `store:` of .lily/config.yaml, else the local .lily/runs/ only)
        #[arg(long, value_name = "URL", env = "LILY_STORE")]
        store: Option<String>,
    },
    /// Show the plan of a job (graph, grants, limits) without running it
    Plan { id: String },
    /// Show the last events of the latest (or given) run
    Tail {
        id: String,
        /// A run of this job: a run id, a unique prefix of it or of its suffix, or `latest`; default: the latest run
        #[arg(long)]
        run: Option<String>,
        /// Number of events (after the filters)
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        /// Follow the run until its terminal event, then exit with its status; with no run yet, wait for the next one
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only events of this type (repeatable), e.g. `--type step_finished --type job_failed`
        #[arg(long = "type", value_name = "EVENT_TYPE")]
        types: Vec<String>,
        /// Only events of this step: a node id (`map:security.v1`) or its runnable (`security.v1`)
        #[arg(long, value_name = "NODE")]
        step: Option<String>,
        /// Run store to publish to / read from: s3://bucket/prefix, file:///path (default: `store:` of .lily/config.yaml, else the local .lily/runs/ only)
        #[arg(long, value_name = "URL", env = "LILY_STORE")]
        store: Option<String>,
    },
    /// Run history of a job, newest first
    Runs {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs with this status
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new([
            "succeeded", "partial", "failed", "denied", "cancelled", "interrupted", "running", "missed", "skipped_overlap", "duplicate_skipped",
        ]))]
        status: Option<String>,
        /// Run store to publish to / read from: s3://bucket/prefix, file:///path (default: `store:` of .lily/config.yaml, else the local .lily/runs/ only)
        #[arg(long, value_name = "URL", env = "LILY_STORE")]
        store: Option<String>,
    },
    /// Render a run's receipt
    Show {
        /// A run id, a unique prefix of it or of its suffix, `latest`, or `<job>/<any of these>`
        run_id: String,
        /// Draw the run's steps as bars on a time axis instead (start offset, duration, outcome)
        #[arg(long)]
        timeline: bool,
        /// Run store to publish to / read from: s3://bucket/prefix, file:///path (default: `store:` of .lily/config.yaml, else the local .lily/runs/ only)
        #[arg(long, value_name = "URL", env = "LILY_STORE")]
        store: Option<String>,
    },
    /// The next fire times of a cron job, in UTC and in the job's time zone
    Next {
        id: String,
        /// How many fire times (default 5; with --until: all in the window, at most 10000)
        #[arg(long, short = 'n', value_parser = clap::value_parser!(u32).range(1..=super::schedule::MAX_PREVIEW as i64))]
        count: Option<u32>,
        /// Start here (inclusive) instead of now: a date (midnight in the job's time zone) or an RFC 3339 time
        #[arg(long, value_name = "DATE|RFC3339", value_parser = super::schedule::parse_when)]
        from: Option<super::schedule::When>,
        /// End here (exclusive): a date (midnight in the job's time zone) or an RFC 3339 time
        #[arg(long, value_name = "DATE|RFC3339", value_parser = super::schedule::parse_when)]
        until: Option<super::schedule::When>,
    },
    /// Pause a cron job: no fires until `resume` (persisted; a running scheduler picks it up within seconds)
    Pause { id: String },
    /// Resume a paused cron job, counting from now (paused times are not caught up)
    Resume { id: String },
    /// Disable a cron job until `enable` (persisted; no next fire is shown)
    Disable { id: String },
    /// Enable a disabled cron job, counting from now
    Enable { id: String },
    /// Scheduler status: is `serve` running (pid, since), per cron job state, next fire, last run
    Status,
    /// Run the cron scheduler of this root in the foreground (SIGINT / SIGTERM stop it)
    Serve {
        /// On SIGINT / SIGTERM, how long running runs may take to finish before they are cancelled
        #[arg(long, default_value_t = 30)]
        grace_seconds: u64,
        /// Run store every fire claims its scheduled time in and publishes to: s3://bucket/prefix, file:///path (default: `store:` of .lily/config.yaml, else none)
        #[arg(long, value_name = "URL", env = "LILY_STORE")]
        store: Option<String>,
    },
    /// Remove old run directories of a job (or of every job) by --keep-last / --older-than, else by the configured retention
    Prune {
        /// A job id; default: every job with runs
        id: Option<String>,
        /// Keep the newest N run directories of each job
        #[arg(long)]
        keep_last: Option<usize>,
        /// Keep runs started less than DUR ago (30d, 12h, 90m, 45s)
        #[arg(long, value_parser = clap::value_parser!(lily::util::Age))]
        older_than: Option<lily::util::Age>,
        /// List what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Cancel a running run (of `jobs run`, `jobs serve` or `mcp serve`); waits until it stopped
    Cancel {
        run_id: String,
        /// How long to wait for the run to stop
        #[arg(long, default_value_t = 30)]
        timeout_seconds: u64,
    },
    /// Re-run a recorded run exactly (same spec snapshot, components, seeds, clock reads)
    Replay {
        /// A run id, a unique prefix of it or of its suffix, `latest`, or `<job>/<any of these>`
        run_id: String,
        /// Compare payload and artifacts with the original (sha256 each); exit 20 when they differ
        #[arg(long)]
        verify: bool,
        /// Replay even if a component's digest changed since the original (recorded as drift)
        #[arg(long)]
        allow_drift: bool,
        /// Run store to publish to / read from: s3://bucket/prefix, file:///path (default: `store:` of .lily/config.yaml, else the local .lily/runs/ only)
        #[arg(long, value_name = "URL", env = "LILY_STORE")]
        store: Option<String>,
    },
}

pub async fn run(g: &Global, cmd: JobsCmd) -> Result<i32, LilyError> {
    let root = root(g)?;
    match cmd {
        JobsCmd::List => list(g, &root),
        JobsCmd::Validate { files } => validate(g, root, files).await,
        JobsCmd::Run {
            id,
            wait,
            scheduled_for,
            scheduled_from_env,
            store,
        } => {
            let store = open_store(&root, store)?;
            let at = scheduled_for.or_else(|| {
                scheduled_from_env
                    .then(|| std::env::var("LILY_K8S_JOB_NAME").ok())
                    .flatten()
                    .and_then(|n| lily::export::k8s::scheduled_time_of_job_name(&n))
            });
            run_job(g, root, &id, wait, at, store.as_ref()).await
        }
        JobsCmd::Plan { id } => plan(g, root, &id).await,
        JobsCmd::Tail {
            id,
            run,
            n,
            follow,
            types,
            step,
            store,
        } => {
            let filter = EventFilter { types, step };
            let root = match open_store(&root, store)? {
                Some(_) if follow => {
                    return Err(LilyError::new(
                        ErrorCode::JobInvalidSpec,
                        "--follow reads a run as it is written; readers of a run store see finished runs only (and dead ones as interrupted)",
                    )
                    .with_hint(format!(
                        "follow the run on the machine that runs it, or drop --follow to see the latest finished run of {id}"
                    )));
                }
                Some(st) => mirrored(&root, &st, Some(&id))?,
                None => root,
            };
            tail(g, &root, &id, run.as_deref(), n, follow, &filter).await
        }
        JobsCmd::Runs { id, limit, status, store } => {
            let root = match open_store(&root, store)? {
                Some(st) => mirrored(&root, &st, Some(&id))?,
                None => root,
            };
            runs(g, &root, &id, limit, status.as_deref())
        }
        JobsCmd::Show { run_id, timeline, store } => {
            let root = match open_store(&root, store)? {
                Some(st) => mirrored(&root, &st, job_of_ref(&run_id))?,
                None => root,
            };
            show(g, &root, &run_id, timeline)
        }
        JobsCmd::Next { id, count, from, until } => super::schedule::next(g, &root, &id, count, from, until),
        JobsCmd::Pause { id } => super::schedule::set_state(g, &root, &id, super::schedule::StateCmd::Pause),
        JobsCmd::Resume { id } => super::schedule::set_state(g, &root, &id, super::schedule::StateCmd::Resume),
        JobsCmd::Disable { id } => super::schedule::set_state(g, &root, &id, super::schedule::StateCmd::Disable),
        JobsCmd::Enable { id } => super::schedule::set_state(g, &root, &id, super::schedule::StateCmd::Enable),
        JobsCmd::Status => super::schedule::status(g, &root),
        JobsCmd::Serve { grace_seconds, store } => {
            let store = open_store(&root, store)?;
            super::schedule::serve(g, root, grace_seconds, store).await
        }
        JobsCmd::Prune {
            id,
            keep_last,
            older_than,
            dry_run,
        } => super::runctl::prune(g, &root, id.as_deref(), keep_last, older_than, dry_run),
        JobsCmd::Cancel { run_id, timeout_seconds } => super::runctl::cancel(g, &root, &run_id, timeout_seconds).await,
        JobsCmd::Replay {
            run_id,
            verify,
            allow_drift,
            store,
        } => {
            let store = open_store(&root, store)?;
            let root = match &store {
                Some(st) => mirrored(&root, st, job_of_ref(&run_id))?,
                None => root,
            };
            replay(g, root, &run_id, verify, allow_drift, store.as_ref()).await
        }
    }
}

/// The run store of a command: `--store` / `$LILY_STORE`, else `store:` of
/// `.lily/config.yaml`, else none (the local `.lily/runs/` only).
fn open_store(root: &lily::workspace::Root, flag: Option<String>) -> Result<Option<runs::store::RunStore>, LilyError> {
    let Some(url) = flag.or_else(|| root.config.store.clone()) else {
        return Ok(None);
    };
    let url =
        lily::config::StoreUrl::parse(&url).map_err(|m| LilyError::new(ErrorCode::JobInvalidSpec, m).with_hint("see docs/kubernetes.md#the-run-store"))?;
    runs::store::RunStore::open(&url).map(Some)
}

/// `<job>/<run>` → the job; a bare run reference → every job.
fn job_of_ref(run_ref: &str) -> Option<&str> {
    run_ref.split_once('/').map(|(j, _)| j)
}

/// A root that reads (and, for replay, writes) runs in the local mirror of
/// `store`, after mirroring the committed runs of `job` (or of every job).
fn mirrored(root: &lily::workspace::Root, store: &runs::store::RunStore, job: Option<&str>) -> Result<lily::workspace::Root, LilyError> {
    let key = lily::util::sha256(store.url().to_string().as_bytes());
    let key = key.trim_start_matches("sha256:");
    let dir = root.cache_dir().join("store").join(&key[..16.min(key.len())]).join("runs");
    let jobs = match job {
        Some(j) => vec![j.to_string()],
        None => store.jobs()?,
    };
    for j in jobs {
        store.mirror_job(&j, &dir)?;
    }
    let mut r = root.clone();
    r.runs_dir_override = Some(dir);
    Ok(r)
}

/// Claim `at` for the job in the store; `Some(exit)` when another process
/// holds the claim (a `duplicate_skipped` record was written and
/// published), `None` when this process won and runs.
fn claim_or_skip(
    g: &Global,
    lily: &Lily,
    s: &spec::JobSpec,
    st: &runs::store::RunStore,
    at: chrono::DateTime<chrono::Utc>,
    local: &str,
    zone: &str,
) -> Result<Option<i32>, LilyError> {
    let file = lily.load_spec(&s.id)?;
    let Some(dup) = lily::triggers::store::claim_or_record(st, &lily.root.runs_dir(), &file, at, local, zone)? else {
        return Ok(None);
    };
    errln!("published run {} to {}", dup.receipt.run_id, st.url());
    if g.json {
        render::json(&json!({"run_dir": dup.run_dir, "receipt": dup.receipt}));
    } else {
        outln!(
            "{} at {local} ({} {zone}) was already claimed in {}: recorded duplicate_skipped, not run again",
            s.id,
            dup.slot,
            st.url()
        );
    }
    Ok(Some(EXIT_OK))
}

/// Publish a finished run to the store (receipt last); a failure is
/// reported, and the run stays in the local spool.
fn publish(store: Option<&runs::store::RunStore>, run_dir: &std::path::Path, r: &runs::Receipt) -> Result<(), LilyError> {
    let Some(st) = store else { return Ok(()) };
    st.publish_run(run_dir, &r.job_id, &r.run_id)?;
    errln!("published run {} to {}", r.run_id, st.url());
    Ok(())
}

fn list(g: &Global, root: &lily::workspace::Root) -> Result<i32, LilyError> {
    let files = spec::discover(&root.jobs_dir);
    let declared = spec::declared_ids_of(&files);
    let now = chrono::Utc::now();
    // Pause / disable live in the scheduler's state, not in the spec.
    let sched = lily::triggers::state::read_state(&lily::triggers::state::StateStore::new(root).path()).unwrap_or_default();
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for f in &files {
        let path = f.path.display().to_string();
        match &f.spec {
            Ok(s) => {
                let js = sched.jobs.get(&s.id);
                let activity = js.map(|j| j.state).unwrap_or_default();
                let (trigger, next, state) = match s.trigger.kind {
                    TriggerType::Manual => ("manual".to_string(), None, None),
                    TriggerType::Cron => {
                        use lily::triggers::state::Activity;
                        let after = js.map(|j| j.cursor.max(now)).unwrap_or(now);
                        let next = match activity {
                            Activity::Disabled => None,
                            _ => s.schedule().and_then(|sch| sch.next_after(after)).map(|t| sch_fire(s, t)),
                        };
                        let mut t = format!("cron {:?} {}", s.trigger.cron.as_deref().unwrap_or(""), s.effective_timezone().unwrap_or(""));
                        if activity != Activity::Active {
                            t.push_str(&format!(", {}", activity.as_str()));
                        }
                        (t, next, Some(activity))
                    }
                };
                let last = runs::list_runs(&root.runs_dir(), &s.id, 1, None).into_iter().next();
                let dup = declared.get(&s.id).is_some_and(|p| p.len() > 1);
                rows.push(vec![
                    s.id.clone(),
                    s.title.clone(),
                    match (&next, state) {
                        (Some(n), Some(lily::triggers::state::Activity::Paused)) => format!("{trigger} (would be next {n})"),
                        (Some(n), _) => format!("{trigger} (next {n})"),
                        (None, _) => trigger.clone(),
                    },
                    last.as_ref()
                        .map(|l| format!("{} {}", l.status.as_str(), l.run_id))
                        .unwrap_or_else(|| "-".into()),
                    if dup { format!("duplicate id ({path})") } else { String::new() },
                ]);
                out.push(json!({"id": s.id, "title": s.title, "file": path, "trigger": trigger, "state": state, "next_fire": next, "last_run": last, "duplicate_id": dup}));
            }
            Err(e) => {
                rows.push(vec![
                    f.id_hint(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("error[{}]: {}", e.code, e.message),
                ]);
                out.push(json!({"file": path, "error": {"code": e.code.as_str(), "message": e.message}}));
            }
        }
    }
    for p in spec::stray_yaml(&root.jobs_dir) {
        let w = spec::stray_yaml_warning(&p);
        errln!("warning: {w}");
        out.push(json!({"file": p.display().to_string(), "warning": w}));
    }
    if g.json {
        render::json(&out);
    } else if rows.is_empty() {
        outln!("no job specs in {}", root.jobs_dir.display());
    } else {
        render::table(&["ID", "TITLE", "TRIGGER", "LAST RUN", "DIAGNOSTICS"], &rows);
    }
    Ok(EXIT_OK)
}

fn sch_fire(s: &spec::JobSpec, t: chrono::DateTime<chrono::Utc>) -> String {
    match s.schedule() {
        Some(sch) => sch.fire_time(t).local,
        None => lily::util::rfc3339(t),
    }
}

async fn validate(g: &Global, root: lily::workspace::Root, files: Vec<PathBuf>) -> Result<i32, LilyError> {
    let specs = if files.is_empty() {
        spec::discover(&root.jobs_dir)
    } else {
        files.iter().map(|f| spec::load_file(f)).collect()
    };
    // Ids declared by more than one spec of the jobs directory: `jobs run`
    // refuses them, so validation must too.
    let declared = spec::declared_ids_of(&spec::discover(&root.jobs_dir));
    let jobs_dir = root.jobs_dir.clone();
    let lily = Lily::open(root).map_err(internal)?;
    let policy = Policy::load(&lily.root);
    let mut results = Vec::new();
    let mut bad = 0;
    for f in specs {
        let res = match (&f.spec, &policy) {
            (Err(e), _) => Err(e.clone()),
            (Ok(s), _) if declared.get(&s.id).is_some_and(|p| p.len() > 1) => Err(spec::duplicate_id_error(&s.id, &declared[&s.id])),
            (Ok(_), Err(e)) => Err(e.clone()),
            (Ok(s), Ok(p)) => lily.plan(s, p).await.map(|_| ()).map_err(|pe| pe.error),
        };
        let path = f.path.display().to_string();
        match res {
            Ok(()) => {
                if !g.json {
                    outln!("ok      {path}");
                }
                results.push(json!({"file": path, "ok": true}));
            }
            Err(e) => {
                bad += 1;
                if !g.json {
                    outln!("invalid {path}\n  error[{}]: {}", e.code, e.message);
                    if let Some(h) = &e.hint {
                        outln!("  hint: {}", h.replace('\n', "\n        "));
                    }
                }
                results.push(json!({"file": path, "ok": false, "code": e.code.as_str(), "message": e.message}));
            }
        }
    }
    if files.is_empty() {
        for p in spec::stray_yaml(&jobs_dir) {
            let w = spec::stray_yaml_warning(&p);
            errln!("warning: {w}");
            results.push(json!({"file": p.display().to_string(), "skipped": true, "warning": w}));
        }
    }
    if g.json {
        render::json(&results);
    }
    // Any invalid file: exit 10 (invalid spec); each file's own code is in the output.
    Ok(if bad == 0 { EXIT_OK } else { exit_code(ErrorCode::JobInvalidSpec) })
}

fn parse_rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2027-03-14T09:00:00Z"))
}

async fn run_job(
    g: &Global,
    root: lily::workspace::Root,
    id: &str,
    wait: bool,
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    store: Option<&runs::store::RunStore>,
) -> Result<i32, LilyError> {
    let lily = Lily::open(root).map_err(internal)?;
    // A run another scheduler fired for a scheduled time is recorded as that
    // cron run (its local time in the job's zone).
    let trigger = match scheduled_for {
        None => lily::jobs::TriggerInfo::Manual,
        Some(at) => {
            let s = lily.load_spec(id)?.spec?;
            let zone = s.effective_timezone().unwrap_or("UTC").to_string();
            let local = s.schedule().map(|sch| sch.fire_time(at).local).unwrap_or_else(|| lily::util::rfc3339(at));
            // With a run store, the scheduled time is claimed first: a
            // second claimant (a duplicate Job, the second pass of a DST
            // fall-back hour) records `duplicate_skipped` and exits 0.
            if let Some(st) = store
                && let Some(done) = claim_or_skip(g, &lily, &s, st, at, &local, &zone)?
            {
                return Ok(done);
            }
            lily::jobs::TriggerInfo::Cron {
                scheduled_for: at,
                local,
                timezone: zone,
            }
        }
    };
    let cancel = Cancel::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            cancel.cancel();
        });
    }
    // With a store, `max_parallel_runs` holds across every process sharing
    // it: a run slot with an expiring lease, renewed while the run goes.
    let slot = match store {
        Some(st) => {
            let n = lily.load_spec(id)?.spec?.runtime.max_parallel_runs;
            let lease = loop {
                match st.acquire_slot(id, n, &lily::triggers::store::slot_body(id, false))? {
                    Some(l) => break l,
                    None if wait && !cancel.is_cancelled() => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                    None => {
                        let e = lily::triggers::store::busy_error(st, id, n);
                        // A scheduled time claimed but not run: the store says why.
                        if let lily::jobs::TriggerInfo::Cron {
                            scheduled_for,
                            local,
                            timezone,
                        } = &trigger
                        {
                            let file = lily.load_spec(id)?;
                            let dir = lily::triggers::store::record_not_started(st, &lily.root.runs_dir(), &file, *scheduled_for, local, timezone, &e)?;
                            errln!("recorded the scheduled time as missed (job_busy) in {}: {}", st.url(), dir.display());
                        }
                        return Err(e.with_hint(format!(
                            "wait for a run to finish, or `lily jobs run {id} --wait`; a dead holder's slot frees when its lease expires"
                        )));
                    }
                }
            };
            let lost = cancel.clone();
            Some(lily::triggers::store::SlotHold::start(st.clone(), lease, move || lost.cancel()))
        }
        None => None,
    };
    // The live display: only on a terminal, never with --json.
    let progress = (std::io::stderr().is_terminal() && !g.json).then(|| std::sync::Arc::new(super::progress::Progress::stderr()));
    let observer: Option<Box<dyn Fn(&str, &Value) + Send + Sync>> = progress.clone().map(|p| {
        let observe: Box<dyn Fn(&str, &Value) + Send + Sync> = Box::new(move |kind: &str, f: &Value| p.observe(kind, f));
        observe
    });
    // Where the run is, as soon as it exists, so another terminal can follow it.
    let job = id.to_string();
    // With a store: the run's lease and its event segments, until the run
    // has finished, so a pod killed mid-run reads `interrupted` in the store
    // with its events up to the last upload.
    let lease_store = store.cloned();
    let lease: std::sync::Arc<std::sync::Mutex<Option<lily::triggers::store::RunLease>>> = Default::default();
    let lease_slot = lease.clone();
    let on_started: lily::jobs::OnStarted = Box::new(move |run_id: &str, dir: &std::path::Path| {
        errln!("run {run_id} started: {} (follow: lily jobs tail {job} --run {run_id} -f)", dir.display());
        if let Some(st) = lease_store {
            let l = lily::triggers::store::RunLease::start(st, &job, run_id, dir);
            *lease_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
        }
    });
    let res = lily
        .run_job(
            id,
            RunOptions {
                trigger,
                wait,
                cancel,
                observer,
                on_started: Some(on_started),
                ..RunOptions::default()
            },
        )
        .await;
    if let Some(p) = &progress {
        p.finish();
    }
    // An upload in flight ends before the run is published (receipt last).
    let held = lease.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(l) = held {
        l.finish();
    }
    if let Some(h) = slot {
        h.release();
    }
    let res = res?;
    publish(store, &res.run_dir, &res.receipt)?;
    if g.json {
        render::json(&json!({"run_dir": res.run_dir, "receipt": res.receipt}));
    } else {
        out!("{}", res.summary);
        if res.receipt.artifacts.iter().any(|a| a.name == lily::runs::SUMMARY_JSON) {
            // `summary_format: json`: stdout stays one JSON document.
            errln!("run directory: {}", res.run_dir.display());
        } else {
            outln!("\nrun directory: {}", res.run_dir.display());
        }
        if let Some(e) = &res.receipt.error {
            errln!("error[{}]: {}", e.code, e.message);
            if let Some(h) = e.cause.get("hint").and_then(Value::as_str) {
                errln!("  hint: {}", h.replace('\n', "\n        "));
            }
        }
    }
    Ok(status_exit(&res.receipt))
}

/// Exit status for a run's receipt.
pub fn status_exit(r: &runs::Receipt) -> i32 {
    match r.status {
        RunStatus::Succeeded => EXIT_OK,
        RunStatus::Partial => EXIT_PARTIAL,
        RunStatus::Cancelled => EXIT_CANCELLED,
        // A scheduled time that did not run is a record, not a failed run;
        // a run refused at the parallel-run cap carries `job_busy`.
        RunStatus::Running | RunStatus::Missed | RunStatus::DuplicateSkipped => EXIT_OK,
        RunStatus::SkippedOverlap if r.error.is_none() => EXIT_OK,
        _ => r.error.as_ref().map(|e| exit_code(e.code)).unwrap_or(EXIT_INTERNAL),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn plan(g: &Global, root: lily::workspace::Root, id: &str) -> Result<i32, LilyError> {
    let lily = Lily::open(root).map_err(internal)?;
    let f = lily.load_spec(id)?;
    let s = f.spec?;
    let policy = Policy::load(&lily.root)?;
    let p = lily.plan(&s, &policy).await.map_err(|pe| pe.error)?;
    let nodes: Vec<Value> = p
        .nodes()
        .map(|(n, l)| {
            json!({"id": n.id, "runnable": n.runnable, "role": n.role, "kind": l.descriptor.kind, "version": l.descriptor.version, "digest": l.digest,
                   "grants": p.prepared.grants.get(&n.id).map(|g| g.redacted())})
        })
        .collect();
    let out = json!({"job_id": s.id, "blueprint": {"id": p.blueprint.meta.id, "version": p.blueprint.meta.version.to_string()}, "nodes": nodes, "edges": p.prepared.graph.edges, "limits": p.limits, "decisions": p.decisions});
    if g.json {
        render::json(&out);
        return Ok(EXIT_OK);
    }
    outln!("job {} → blueprint {}@{}", s.id, p.blueprint.meta.id, p.blueprint.meta.version);
    outln!("\nnodes:");
    for n in &nodes {
        outln!(
            "  {}  ({} {}, {} {})",
            n["id"].as_str().unwrap_or(""),
            n["kind"].as_str().unwrap_or(""),
            n["version"].as_str().unwrap_or(""),
            n["role"].as_str().unwrap_or(""),
            n["digest"].as_str().unwrap_or("")
        );
        render::grants("      ", &n["grants"], false);
    }
    outln!("\nedges:");
    for (a, b) in &p.prepared.graph.edges {
        outln!("  {a} → {b}");
    }
    outln!(
        "\nlimits: memory {} MiB, fuel {}, deadline {} s, output ≤ {} bytes, ≤ {} events/step",
        p.limits.memory_bytes >> 20,
        p.limits.fuel.map(|f| f.to_string()).unwrap_or_else(|| "unmetered".into()),
        p.limits.deadline.as_secs(),
        p.limits.max_output_bytes,
        p.limits.max_events
    );
    outln!("\npolicy decisions:");
    for d in &p.decisions {
        outln!("  {} — {} ({})", d.subject, d.decision.as_str(), d.reason);
    }
    Ok(EXIT_OK)
}

fn pick_run(root: &lily::workspace::Root, id: &str, run: Option<&str>) -> Result<Option<PathBuf>, LilyError> {
    match run {
        Some(r) => runs::resolve_run(&root.runs_dir(), r, Some(id)).map(|r| Some(r.dir)),
        None => Ok(runs::run_dirs(&root.runs_dir(), id).into_iter().next()),
    }
}

/// `jobs tail --type … --step …`: which events are shown (terminal
/// detection always sees every event).
pub struct EventFilter {
    pub types: Vec<String>,
    pub step: Option<String>,
}

impl EventFilter {
    fn shows(&self, e: &Value) -> bool {
        let kind = e["type"].as_str().unwrap_or("");
        if !self.types.is_empty() && !self.types.iter().any(|t| t == kind) {
            return false;
        }
        match &self.step {
            None => true,
            Some(step) => e["node"]
                .as_str()
                .is_some_and(|n| n == step || n.split_once(':').is_some_and(|(_, runnable)| runnable == step)),
        }
    }
}

fn print_event(e: &Value, json_out: bool) {
    if json_out {
        outln!("{}", lily::text::json_line(e));
        return;
    }
    // Keys and values may come from a guest (its event kind and fields, its
    // stdout): each is one escaped field on this one line.
    let field = |s: &str| lily::text::terminal_field(s).into_owned();
    let mut rest = String::new();
    if let Value::Object(m) = e {
        for (k, v) in m {
            if matches!(k.as_str(), "ts" | "run_id" | "seq" | "type") {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rest.push_str(&format!(" {}={}", field(k), field(&v)));
        }
    }
    outln!(
        "{:>4} {} {}{}",
        e["seq"],
        field(e["ts"].as_str().unwrap_or("")),
        field(e["type"].as_str().unwrap_or("")),
        rest
    );
}

async fn tail(g: &Global, root: &lily::workspace::Root, id: &str, run: Option<&str>, n: usize, follow: bool, filter: &EventFilter) -> Result<i32, LilyError> {
    let poll = std::time::Duration::from_millis(100);
    let (dir, fresh) = match pick_run(root, id, run)? {
        Some(d) => (d, false),
        None if follow => {
            // No run yet: the job must exist, then wait for its next run.
            spec::find(&root.jobs_dir, id)?.spec?;
            errln!("waiting for a run of {id}…");
            let dir = loop {
                if let Some(d) = runs::run_dirs(&root.runs_dir(), id).into_iter().next() {
                    break d;
                }
                tokio::time::sleep(poll).await;
            };
            (dir, true)
        }
        None => {
            // A job that does not exist is an error; one that never ran too.
            spec::find(&root.jobs_dir, id)?;
            return Err(
                LilyError::new(ErrorCode::JobNotFound, format!("job {id} has no runs in {}", root.runs_dir().display())).with_hint(format!(
                    "start one with `lily jobs run {id}`, or wait for the next with `lily jobs tail {id} -f`"
                )),
            );
        }
    };
    let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if fresh && !g.json {
        errln!("following run {name}");
    }
    let events = runs::read_events(&dir);
    let shown: Vec<&Value> = events.iter().filter(|e| filter.shows(e)).collect();
    // A run that started while we waited is shown from its first event.
    let start = if fresh { 0 } else { shown.len().saturating_sub(n) };
    for e in &shown[start..] {
        print_event(e, g.json);
    }
    let mut seen = events.len();
    let mut terminal = events.iter().any(|e| runs::is_terminal_event(e["type"].as_str().unwrap_or("")));
    if follow {
        while !terminal {
            tokio::time::sleep(poll).await;
            let events = runs::read_events(&dir);
            for e in &events[seen.min(events.len())..] {
                if filter.shows(e) {
                    print_event(e, g.json);
                }
                if runs::is_terminal_event(e["type"].as_str().unwrap_or("")) {
                    terminal = true;
                }
            }
            seen = events.len();
            // Died without a terminal event? (`read_receipt` gives a run that
            // is still being created time to take its lock.)
            if !terminal && runs::read_receipt(&dir).is_some_and(|r| r.status == RunStatus::Interrupted) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let again = runs::read_events(&dir);
                if again.len() == seen {
                    if !g.json {
                        errln!("run {name} was interrupted (its process is gone)");
                    }
                    return Ok(EXIT_INTERNAL);
                }
            }
        }
        if let Some(r) = runs::read_receipt(&dir) {
            // The receipt is written right after the terminal event.
            for _ in 0..50 {
                if let Some(r2) = runs::read_receipt(&dir)
                    && r2.status != RunStatus::Running
                {
                    return Ok(status_exit(&r2));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            return Ok(status_exit(&r));
        }
    }
    Ok(EXIT_OK)
}

fn runs(g: &Global, root: &lily::workspace::Root, id: &str, limit: usize, status: Option<&str>) -> Result<i32, LilyError> {
    let status = match status {
        Some(s) => Some(serde_json::from_value::<RunStatus>(Value::from(s)).map_err(|_| {
            LilyError::new(ErrorCode::JobInvalidSpec, format!("unknown status {s:?}"))
                .with_hint("one of succeeded, partial, failed, denied, cancelled, interrupted, running, missed, skipped_overlap, duplicate_skipped")
        })?),
        None => None,
    };
    let runs = runs::list_runs(&root.runs_dir(), id, limit, status);
    if g.json {
        render::json(&runs);
        return Ok(EXIT_OK);
    }
    if runs.is_empty() {
        outln!("no runs of {id}");
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.status.as_str().into(),
                match &r.scheduled_for {
                    Some(t) => format!("{} {t}", r.trigger),
                    None => r.trigger.clone(),
                },
                r.started_at.clone(),
                r.error_code.clone().unwrap_or_default(),
                match (r.missed_count, &r.missed_through, &r.scheduled_for) {
                    (Some(n), Some(last), Some(first)) => Some(format!("{n} missed between {first} and {last}")),
                    _ => None,
                }
                .or_else(|| {
                    r.replay_of.as_ref().map(|o| match r.verified_identical {
                        Some(true) => format!("replay of {o} (verified: identical)"),
                        Some(false) => format!("replay of {o} (verified: DIFFERS)"),
                        None => format!("replay of {o}"),
                    })
                })
                .unwrap_or_default(),
            ]
        })
        .collect();
    render::table(&["RUN", "STATUS", "TRIGGER", "STARTED", "ERROR", "LINEAGE"], &rows);
    Ok(EXIT_OK)
}

fn show(g: &Global, root: &lily::workspace::Root, run_ref: &str, timeline: bool) -> Result<i32, LilyError> {
    let dir = runs::resolve_run(&root.runs_dir(), run_ref, None)?.dir;
    if timeline {
        return super::timeline::show(g, &dir);
    }
    let r = runs::read_receipt(&dir).ok_or_else(|| LilyError::new(ErrorCode::JobExecutionFailed, format!("{}: receipt unreadable", dir.display())))?;
    if g.json {
        render::json(&r);
        return Ok(EXIT_OK);
    }
    outln!("run {} of job {}: {}", r.run_id, r.job_id, r.status.as_str());
    outln!("  target    {} {} {}", r.target.kind, r.target.id, r.target.version.as_deref().unwrap_or(""));
    match r.trigger.scheduled_for() {
        Some(at) => outln!("  trigger   {} (scheduled for {at})", r.trigger.kind()),
        None => outln!("  trigger   {}", r.trigger.kind()),
    }
    if let Some(of) = &r.replay_of {
        outln!("  replay of {of}");
    }
    if let (Some(n), Some(last), Some(first)) = (
        r.payload.get("missed_count").and_then(Value::as_u64),
        r.payload.get("missed_through").and_then(Value::as_str),
        r.trigger.scheduled_for(),
    ) {
        let exact = if r.payload.get("missed_count_exact") == Some(&Value::Bool(false)) {
            "at least "
        } else {
            ""
        };
        let why = r.payload.get("reason").and_then(Value::as_str).unwrap_or("");
        outln!("  missed    {exact}{n} scheduled times between {first} and {last} ({why})");
        if let Some(lr) = r.payload.get("last_reason").and_then(Value::as_str) {
            outln!("            the last of them: {lr}");
        }
    }
    if let Some(v) = &r.verify {
        match &v.first_difference {
            None => outln!("  verified  identical to {}", r.replay_of.as_deref().unwrap_or("the original")),
            Some(d) => outln!(
                "  verified  DIFFERS from {} (first difference: {d})",
                r.replay_of.as_deref().unwrap_or("the original")
            ),
        }
    }
    outln!("  started   {}\n  ended     {}", r.started_at, r.ended_at.as_deref().unwrap_or("-"));
    if matches!(r.status, RunStatus::Missed | RunStatus::SkippedOverlap | RunStatus::DuplicateSkipped) {
        show_not_run(&r.payload);
    }
    outln!("  spec      {} ({})", r.spec_path, r.spec_sha256);
    outln!("  directory {}", dir.display());
    if let Some(e) = &r.error {
        outln!("\nfirst error: {} — {}", e.code, lily::text::terminal_field(&e.message));
        if let Some(seq) = e.first_event_seq {
            outln!(
                "  first appeared in events.jsonl at seq {seq} (`lily jobs tail {} --run {} -n 1000 | grep error_code`)",
                r.job_id,
                r.run_id
            );
        }
        if !e.cause.is_null() {
            outln!("  cause: {}", lily::text::json_line(&e.cause));
        }
    }
    outln!("\nattempts:");
    if r.attempts.is_empty() {
        outln!("  none (refused before any attempt)");
    }
    for a in &r.attempts {
        outln!(
            "  #{} {} {}{}",
            a.n,
            a.status.as_str(),
            a.error_code.map(|c| c.as_str()).unwrap_or(""),
            if a.will_retry { " (will retry)" } else { "" }
        );
    }
    if !r.components.is_empty() {
        outln!("\ncomponents:");
        for c in &r.components {
            outln!("  {} {} {}", c.node, c.version, c.digest);
        }
    }
    if let Some(t) = &r.llm {
        outln!("\nmodel calls: {} ({} input, {} output tokens)", t.calls, t.input_tokens, t.output_tokens);
        for s in &r.steps {
            if let Some(l) = &s.llm {
                outln!("  {} {} calls, {} input, {} output tokens", s.node, l.calls, l.input_tokens, l.output_tokens);
            }
        }
    }
    if let Some(t) = &r.http {
        outln!(
            "\nhttp requests: {} ({} denied; {} bytes sent, {} received)",
            t.requests,
            t.denied,
            t.request_bytes,
            t.response_bytes
        );
        for s in &r.steps {
            if let Some(h) = &s.http {
                outln!("  {} {} requests, {} denied", s.node, h.requests, h.denied);
            }
        }
    }
    if !r.artifacts.is_empty() {
        outln!("\nartifacts:");
        for a in &r.artifacts {
            outln!("  {} ({} bytes, {})", a.name, a.bytes, a.sha256);
        }
    }
    if !r.approvals_requested.is_empty() {
        outln!("\napprovals requested:");
        for a in &r.approvals_requested {
            outln!("  {} {} {} {}", a.id, a.kind, a.state.as_str(), lily::text::terminal_field(&a.target));
        }
    }
    if let Some(s) = r.payload.get("summary").and_then(Value::as_str) {
        outln!("\n{}", lily::text::terminal_field(s));
    }
    Ok(EXIT_OK)
}

/// The reason and lateness a `missed` / `skipped_overlap` record stores.
fn show_not_run(p: &Value) {
    let reason = p["reason"].as_str().unwrap_or("-");
    let why = match reason {
        "scheduler_not_running" => "the time passed while no `lily jobs serve` was running",
        "superseded" => "the scheduler was late and a later time was due (only the latest runs)",
        "past_starting_deadline" => "the latest due time was later than starting_deadline_seconds",
        "catchup_skip" => "the job says `catchup: skip` and the time was late",
        "overlap" => "the job still had max_parallel_runs runs in progress",
        _ => "",
    };
    let field = |s: &str| lily::text::terminal_field(s).into_owned();
    if why.is_empty() {
        outln!("  reason    {}", field(reason));
    } else {
        outln!("  reason    {} — {why}", field(reason));
    }
    if let Some(late) = p["late_by_seconds"].as_i64() {
        let deadline = p["starting_deadline_seconds"]
            .as_i64()
            .map(|d| format!(", starting deadline {d} s"))
            .unwrap_or_default();
        let catchup = p["catchup"].as_str().map(|c| format!(", catchup {}", field(c))).unwrap_or_default();
        outln!("  late by   {late} s (when the scheduler decided{deadline}{catchup})");
    }
    if let Some(count) = p["missed_count"].as_u64() {
        outln!("  missed    {count} time(s) through {}", field(p["missed_through"].as_str().unwrap_or("-")));
    }
    if let Some(max) = p["max_parallel_runs"].as_u64() {
        match p["running"].as_u64() {
            Some(n) => outln!("  running   {n} run(s) in progress (max_parallel_runs {max})"),
            None => outln!("  running   max_parallel_runs {max} reached"),
        }
    }
}

pub fn internal(e: anyhow::Error) -> LilyError {
    LilyError::new(ErrorCode::JobExecutionFailed, format!("internal error: {e:#}"))
}

/// Exit status of `jobs replay --verify` when the replay differs.
pub const EXIT_VERIFY_DIFFERS: i32 = 20;

async fn replay(
    g: &Global,
    root: lily::workspace::Root,
    run_id: &str,
    verify: bool,
    allow_drift: bool,
    store: Option<&runs::store::RunStore>,
) -> Result<i32, LilyError> {
    use lily::jobs::replay::{self, ReplayOptions};
    let resolved = runs::resolve_run(&root.runs_dir(), run_id, None)?;
    let run_id = resolved.run_id.as_str();
    let lily = Lily::open(root).map_err(internal)?;
    let (res, _original) = replay::replay_with(&lily, run_id, ReplayOptions { allow_drift }, verify, RunOptions::default()).await?;
    publish(store, &res.run_dir, &res.receipt)?;
    let verification = res.receipt.verify.clone();
    if g.json {
        render::json(&json!({"run_dir": res.run_dir, "receipt": res.receipt, "replay_of": run_id, "verify": verification}));
    } else {
        outln!(
            "replay {} of {} ({}): {}",
            res.receipt.run_id,
            run_id,
            res.receipt.job_id,
            res.receipt.status.as_str()
        );
        if !res.receipt.drift.is_empty() {
            outln!("drift accepted (--allow-drift):");
            for d in &res.receipt.drift {
                outln!("  {}: {} → {}", d.runnable, d.recorded, d.current.as_deref().unwrap_or("(missing)"));
            }
        }
        outln!("run directory: {}", res.run_dir.display());
        if let Some(v) = &verification {
            if v.workspace_changes.is_empty() {
                let n: usize = res.receipt.steps.iter().map(|s| s.reads.len()).sum();
                outln!("  workspace        unchanged ({n} file(s) read)");
            }
            for c in &v.workspace_changes {
                outln!("  workspace changed: {} [step {}]", c.describe(), c.node);
            }
            for c in &v.compared {
                outln!(
                    "  {:<16} {}",
                    c["name"].as_str().unwrap_or(""),
                    if c["identical"] == true { "identical" } else { "differs" }
                );
            }
            match &v.first_difference {
                None => outln!("verify: identical"),
                Some(d) => outln!("verify: differs (first difference: {d})"),
            }
        }
    }
    if verification.as_ref().is_some_and(|v| !v.identical) {
        return Ok(EXIT_VERIFY_DIFFERS);
    }
    Ok(status_exit(&res.receipt))
}
