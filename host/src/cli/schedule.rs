//! `lily jobs next | pause | resume | disable | enable | status | serve`:
//! the cron side of the CLI. Parsing and rendering only; the scheduler
//! lives in [`lily::triggers`].

use super::{EXIT_NOT_RUNNING, EXIT_OK, Global, render};
use chrono::{SecondsFormat, TimeDelta, Utc};
use lily::error::{ErrorCode, LilyError};
use lily::runs;
use lily::spec;
use lily::triggers::plan::JobPlan;
use lily::triggers::scheduler::{self, Observer, SchedulerEvent, ServeOptions};
use lily::triggers::state::{self, Activity, StateStore};
use lily::util::rfc3339;
use lily::workspace::Root;
use serde_json::{Value, json};
use std::sync::Arc;

/// A state command.
#[derive(Debug, Clone, Copy)]
pub enum StateCmd {
    Pause,
    Resume,
    Disable,
    Enable,
}

impl StateCmd {
    fn target(self) -> Activity {
        match self {
            StateCmd::Pause => Activity::Paused,
            StateCmd::Disable => Activity::Disabled,
            StateCmd::Resume | StateCmd::Enable => Activity::Active,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            StateCmd::Pause => "paused",
            StateCmd::Resume => "resumed",
            StateCmd::Disable => "disabled",
            StateCmd::Enable => "enabled",
        }
    }

    fn name(self) -> &'static str {
        match self {
            StateCmd::Pause => "pause",
            StateCmd::Resume => "resume",
            StateCmd::Disable => "disable",
            StateCmd::Enable => "enable",
        }
    }
}

/// The spec and plan of a cron job; `job_trigger_invalid` for a manual one.
fn cron_job(root: &Root, id: &str, what: &str) -> Result<JobPlan, LilyError> {
    let f = spec::find(&root.jobs_dir, id)?;
    let s = f.spec?;
    JobPlan::from_spec(&s).ok_or_else(|| {
        LilyError::new(
            ErrorCode::JobTriggerInvalid,
            format!("job {id:?} has a manual trigger ({}); {what}", f.path.display()),
        )
        .with_hint(format!(
            "give it `trigger: {{ type: cron, cron: \"0 9 * * 1-5\", timezone: Europe/Berlin }}`, or run it by hand with `lily jobs run {id}`"
        ))
    })
}

fn secs(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn state_error(root: &Root, e: std::io::Error) -> LilyError {
    LilyError::new(
        ErrorCode::JobExecutionFailed,
        format!("cannot update the scheduler state under {}: {e}", root.state_dir().display()),
    )
}

fn job_state(root: &Root, id: &str) -> Option<state::JobState> {
    state::read_state(&StateStore::new(root).path()).ok()?.jobs.get(id).cloned()
}

/// Most fire times `jobs next` lists.
pub const MAX_PREVIEW: usize = 10_000;

/// A `--from` / `--until` value: a date (midnight in the job's zone) or an
/// instant.
#[derive(Debug, Clone, Copy)]
pub enum When {
    Date(chrono::NaiveDate),
    At(chrono::DateTime<Utc>),
}

/// Parse `YYYY-MM-DD` or RFC 3339.
pub fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(When::Date(d));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| When::At(t.with_timezone(&Utc)))
        .map_err(|_| format!("{s:?} is neither a date (2027-03-14) nor an RFC 3339 time (2027-03-14T02:00:00-04:00)"))
}

impl When {
    /// The instant: a date is the first instant of that day in `tz`
    /// (midnight, or the end of a gap that swallows midnight).
    fn instant(self, tz: chrono_tz::Tz) -> chrono::DateTime<Utc> {
        use chrono::TimeZone;
        match self {
            When::At(t) => t,
            When::Date(d) => {
                let mut wall = d.and_time(chrono::NaiveTime::MIN);
                for _ in 0..(26 * 60) {
                    if let Some(t) = tz.from_local_datetime(&wall).earliest() {
                        return t.with_timezone(&Utc);
                    }
                    wall += TimeDelta::minutes(1);
                }
                wall.and_utc()
            }
        }
    }
}

/// `lily jobs next <id> [--from W] [--until W] [--count N]`.
pub fn next(g: &Global, root: &Root, id: &str, count: Option<u32>, from: Option<When>, until: Option<When>) -> Result<i32, LilyError> {
    let plan = cron_job(root, id, "only cron jobs have fire times")?;
    let tz_zone = plan.schedule.timezone();
    let start = from.map(|w| w.instant(tz_zone)).unwrap_or_else(Utc::now);
    let end = until.map(|w| w.instant(tz_zone));
    let cap = match (count, end) {
        (Some(n), _) => n as usize,
        (None, Some(_)) => MAX_PREVIEW,
        (None, None) => 5,
    };
    let (fires, cut) = plan.schedule.preview(start, end, cap);
    // Only a window's list is cut by the output cap; `--count` is what was asked.
    let capped = cut && count.is_none();
    let activity = job_state(root, id).map(|s| s.state).unwrap_or_default();
    let tz = tz_zone.name();
    if g.json {
        render::json(&json!({
            "job_id": id,
            "cron": plan.schedule.expr(),
            "timezone": tz,
            "state": activity,
            "from": secs(start),
            "after": secs(start),
            "until": end.map(secs),
            "fires": fires,
            "truncated": capped,
        }));
        return Ok(EXIT_OK);
    }
    let window = match end {
        Some(e) => format!("from {} until {}", secs(start), secs(e)),
        None => format!("from {}", secs(start)),
    };
    if fires.is_empty() {
        outln!("no fire times of {id} {window} (cron {:?}, {tz})", plan.schedule.expr());
    } else {
        outln!("{} fire time(s) of {id} {window} (cron {:?}, {tz}):", fires.len(), plan.schedule.expr());
        let rows: Vec<Vec<String>> = fires
            .iter()
            .map(|f| vec![secs(f.fire.utc), f.fire.local.clone(), f.note.clone().unwrap_or_default()])
            .collect();
        render::table(&["UTC", "LOCAL", "DST"], &rows);
    }
    if capped {
        outln!("stopped at {MAX_PREVIEW} fire times; narrow the window (--from / --until) to see the rest");
    }
    match activity {
        Activity::Active => {}
        Activity::Paused => outln!("note: {id} is paused; these times fire only after `lily jobs resume {id}`"),
        Activity::Disabled => outln!("note: {id} is disabled; these times fire only after `lily jobs enable {id}`"),
    }
    Ok(EXIT_OK)
}

/// `lily jobs pause | resume | disable | enable <id>`.
pub fn set_state(g: &Global, root: &Root, id: &str, cmd: StateCmd) -> Result<i32, LilyError> {
    let plan = cron_job(root, id, &format!("only cron jobs can be told to {}", cmd.name()))?;
    let t = state::set_activity(root, id, &plan.fingerprint(), cmd.target(), Utc::now()).map_err(|e| state_error(root, e))?;
    let daemon = state::daemon_status(root);
    let pid = daemon.as_ref().and_then(|d| d.as_ref().map(|i| i.pid));
    if g.json {
        render::json(&json!({
            "job_id": id,
            "state": t.state,
            "previous": t.previous,
            "changed": t.changed,
            "scheduler": {"running": daemon.is_some(), "pid": pid},
        }));
        return Ok(EXIT_OK);
    }
    if t.changed {
        outln!("{} {id} (was {})", cmd.verb(), t.previous.as_str());
    } else {
        outln!("{id} is already {}", t.state.as_str());
    }
    match (daemon.is_some(), pid) {
        (true, Some(pid)) => outln!(
            "the running scheduler (pid {pid}) picks this up within {} s",
            scheduler::RESCAN_EVERY.num_seconds()
        ),
        (true, None) => outln!("the running scheduler picks this up within {} s", scheduler::RESCAN_EVERY.num_seconds()),
        (false, _) => outln!("no scheduler is serving this root; `lily jobs serve` will honour it"),
    }
    Ok(EXIT_OK)
}

/// `lily jobs status`.
pub fn status(g: &Global, root: &Root) -> Result<i32, LilyError> {
    let now = Utc::now();
    let daemon = state::daemon_status(root);
    let state_path = StateStore::new(root).path();
    let (st, state_problem) = match state::read_state(&state_path) {
        Ok(s) => (s, None),
        Err(e) => (state::SchedulerState::default(), Some(e.to_string())),
    };
    let mut jobs = Vec::new();
    let mut rows = Vec::new();
    let mut invalid = Vec::new();
    let mut failing_lines = Vec::new();
    for f in spec::discover(&root.jobs_dir) {
        let s = match &f.spec {
            Ok(s) => s,
            Err(e) => {
                invalid.push(json!({"file": f.path, "code": e.code.as_str(), "message": e.message}));
                continue;
            }
        };
        let Some(plan) = JobPlan::from_spec(s) else { continue };
        let js = st.jobs.get(&s.id);
        let activity = js.map(|j| j.state).unwrap_or_default();
        let after = js.map(|j| j.cursor.max(now)).unwrap_or(now);
        let next = match activity {
            Activity::Disabled => None,
            _ => plan.schedule.next_after(after).map(|t| plan.schedule.fire_time(t)),
        };
        let last_scheduled = js.and_then(|j| j.last_scheduled_for);
        let last_run = runs::list_runs(&root.runs_dir(), &s.id, 1, None).into_iter().next();
        let failing = runs::failing_streak(&root.runs_dir(), &s.id);
        rows.push(vec![
            s.id.clone(),
            format!("{} @ {}", plan.schedule.expr(), plan.schedule.timezone().name()),
            activity.as_str().to_string(),
            match (&next, activity) {
                (Some(n), Activity::Paused) => format!("({}, paused)", secs(n.utc)),
                (Some(n), _) => format!("{} ({})", secs(n.utc), n.local),
                (None, _) => "-".into(),
            },
            last_scheduled.map(secs).unwrap_or_else(|| "-".into()),
            last_run
                .as_ref()
                .map(|r| format!("{} {}", r.status.as_str(), r.run_id))
                .unwrap_or_else(|| "-".into()),
        ]);
        jobs.push(json!({
            "id": s.id,
            "cron": plan.schedule.expr(),
            "timezone": plan.schedule.timezone().name(),
            "state": activity,
            "next_fire": next,
            "last_scheduled_for": last_scheduled.map(secs),
            "last_run": last_run,
            "failing": failing,
            "file": f.path,
        }));
        if let Some(fl) = &failing {
            failing_lines.push(format!(
                "{}: failing since {}, {}{} time(s) in a row: {}{}",
                s.id,
                fl.since,
                if fl.capped { "at least " } else { "" },
                fl.count,
                fl.error_code.as_deref().unwrap_or("no error code"),
                fl.message.as_ref().map(|m| format!(" — {m}")).unwrap_or_default()
            ));
        }
    }
    let scheduler = match &daemon {
        Some(Some(i)) => json!({"running": true, "pid": i.pid, "since": rfc3339(i.started_at), "root": i.root}),
        Some(None) => json!({"running": true, "pid": null, "since": null}),
        None => json!({"running": false}),
    };
    // A health check: 0 only while a scheduler serves this root.
    let exit = if daemon.is_some() { EXIT_OK } else { EXIT_NOT_RUNNING };
    if g.json {
        render::json(&json!({
            "scheduler": scheduler,
            "state_file": state_path,
            "state_error": state_problem,
            "jobs": jobs,
            "invalid": invalid,
        }));
        return Ok(exit);
    }
    match &daemon {
        Some(Some(i)) => outln!("scheduler: running (pid {}, since {})", i.pid, rfc3339(i.started_at)),
        Some(None) => outln!("scheduler: running (pid unknown)"),
        None => outln!("scheduler: not running (start one with `lily jobs serve`); no cron job fires until one does"),
    }
    if let Some(e) = &state_problem {
        outln!("warning: {e}");
    }
    outln!();
    if rows.is_empty() {
        outln!("no cron jobs in {}", root.jobs_dir.display());
    } else {
        render::table(&["JOB", "SCHEDULE", "STATE", "NEXT FIRE", "LAST SCHEDULED", "LAST RUN"], &rows);
    }
    if !failing_lines.is_empty() {
        outln!();
        for l in &failing_lines {
            outln!("{l}");
        }
    }
    for i in &invalid {
        outln!(
            "invalid {}\n  error[{}]: {}",
            i["file"].as_str().unwrap_or(""),
            i["code"].as_str().unwrap_or(""),
            i["message"].as_str().unwrap_or("")
        );
    }
    Ok(exit)
}

/// `lily jobs serve [--grace-seconds N]`.
pub async fn serve(g: &Global, root: Root, grace_seconds: u64, store: Option<lily::runs::store::RunStore>) -> Result<i32, LilyError> {
    // Handlers first: a signal from now on stops the scheduler cleanly.
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    count_signals(tx)?;
    let json_out = g.json;
    let observer: Observer = Arc::new(move |e: &SchedulerEvent| render_event(e, json_out));
    let grace = i64::try_from(grace_seconds).ok().and_then(TimeDelta::try_seconds).unwrap_or(TimeDelta::MAX);
    scheduler::serve(
        root,
        ServeOptions {
            grace,
            observer: Some(observer),
            store,
        },
        rx,
    )
    .await?;
    Ok(EXIT_OK)
}

/// Count SIGINT / SIGTERM into `tx` (the first stops firing, the second
/// cancels the running runs at once).
fn count_signals(tx: tokio::sync::watch::Sender<u32>) -> Result<(), LilyError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: std::io::Error| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot install the signal handlers: {e}"));
        let mut term = signal(SignalKind::terminate()).map_err(failed)?;
        let mut int = signal(SignalKind::interrupt()).map_err(failed)?;
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    s = term.recv() => s.is_some(),
                    s = int.recv() => s.is_some(),
                };
                if !got {
                    break;
                }
                tx.send_modify(|n| *n += 1);
            }
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                tx.send_modify(|n| *n += 1);
            }
        });
    }
    Ok(())
}

/// One line per scheduler event on stdout: JSON lines with `--json`, else
/// text. A closed stdout does not stop the scheduler (`println!` would
/// panic on it).
fn render_event(e: &SchedulerEvent, json_out: bool) {
    use std::io::Write;
    let ts = rfc3339(Utc::now());
    if json_out {
        let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("ts".into(), Value::from(ts));
        }
        let _ = writeln!(std::io::stdout(), "{}", lily::text::json_line(&v));
        return;
    }
    let line = match e {
        SchedulerEvent::Serving {
            root,
            pid,
            jobs,
            grace_seconds,
            store,
        } => format!(
            "serving {} (pid {pid}, {jobs} cron job(s), grace {grace_seconds} s{}); SIGINT / SIGTERM to stop",
            root.display(),
            store.as_ref().map(|u| format!(", run store {u}")).unwrap_or_default()
        ),
        SchedulerEvent::JobLoaded {
            job_id,
            cron,
            timezone,
            state,
            next_fire,
            next_fire_local,
        } => format!(
            "loaded {job_id}: cron {cron:?} {timezone}, {}, next {}",
            state.as_str(),
            match (next_fire, next_fire_local) {
                (Some(u), Some(l)) => format!("{u} ({l})"),
                _ => "-".into(),
            }
        ),
        SchedulerEvent::JobUnloaded { job_id } => format!("unloaded {job_id} (spec removed, invalid or no longer cron)"),
        SchedulerEvent::SpecInvalid { path, code, message } => format!("invalid spec {}: error[{code}]: {message}", path.display()),
        SchedulerEvent::DuplicateId { job_id, paths } => format!(
            "not scheduling {job_id}: declared by {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
        SchedulerEvent::StateChanged { job_id, state } => format!("{job_id} is now {}", state.as_str()),
        SchedulerEvent::Fired {
            job_id,
            scheduled_for,
            scheduled_for_local,
            late_ms,
        } => format!("fired {job_id} for {scheduled_for} ({scheduled_for_local}), {late_ms} ms after the scheduled time"),
        SchedulerEvent::RunFinished {
            job_id,
            run_id,
            status,
            scheduled_for,
            error,
            ..
        } => match error {
            Some(e) => format!(
                "run {run_id} of {job_id} ({scheduled_for}) {}: error[{}]: {}",
                status.as_str(),
                e.code,
                e.message
            ),
            None => format!("run {run_id} of {job_id} ({scheduled_for}) {}", status.as_str()),
        },
        SchedulerEvent::JobCannotRun { job_id, code, message, hint } => format!(
            "warning: {job_id} cannot run as it stands (every fire will fail until its spec or the policy changes): error[{code}]: {message}{}",
            hint.as_ref()
                .map(|h| format!("\n  hint: {}", h.replace('\n', "\n        ")))
                .unwrap_or_default()
        ),
        SchedulerEvent::RunNotStarted {
            job_id,
            scheduled_for,
            code,
            message,
        } => format!("run of {job_id} for {scheduled_for} did not start: error[{code}]: {message}"),
        SchedulerEvent::Missed {
            job_id,
            scheduled_for,
            reason,
            count,
        } => format!("missed {count} time(s) of {job_id}, the latest {scheduled_for} ({reason}); recorded as job_missed"),
        SchedulerEvent::SkippedOverlap {
            job_id,
            scheduled_for,
            running,
            max_parallel_runs,
        } => format!("skipped {job_id} for {scheduled_for}: {running} run(s) still in progress (max_parallel_runs {max_parallel_runs})"),
        SchedulerEvent::StateWriteFailed { message } => format!("error: {message}; nothing fires until the state can be written"),
        SchedulerEvent::ShuttingDown { running, grace_seconds } => {
            format!("stopping: no more fires; waiting up to {grace_seconds} s for {running} run(s) in progress")
        }
        SchedulerEvent::CancellingRuns { running } => format!("grace period over: cancelling {running} run(s)"),
        SchedulerEvent::Stopped { fired } => format!("stopped ({fired} run(s) started)"),
    };
    let _ = writeln!(std::io::stdout(), "{ts} {}", lily::text::terminal(&line));
}
