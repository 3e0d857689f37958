//! The run store: `.lily/runs/<job_id>/<run_id>/` with `run_receipt.json`
//! (atomic), `events.jsonl` (append-only, one write per event),
//! `summary.md`, the spec snapshot and target artifacts.
//!
//! **One writer per run, across processes.** The run's events file and
//! receipt are written only under the run's writer lock (`.writer.lock`,
//! an exclusive `flock`): by the run itself ([`EventLog`], [`RunDir`]) and by
//! an operator deciding one of its approvals from another process
//! ([`record_operator_decision`]). Whoever holds the lock first reads what
//! others appended since its last write, so `seq` is one counter per run,
//! and an operator's decision recorded while the run is still going is
//! merged into every receipt the run writes afterwards instead of being
//! overwritten by it.

use crate::blueprints::EventSink;
use crate::util::rfc3339;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const RECEIPT: &str = "run_receipt.json";
pub const EVENTS: &str = "events.jsonl";
pub const SUMMARY_MD: &str = "summary.md";
pub const SUMMARY_JSON: &str = "summary.json";
pub const SPEC_SNAPSHOT: &str = "job_spec.yaml";
pub const RUN_LOCK: &str = ".run.lock";
/// The cross-process writer lock of a run's events and receipt.
pub const WRITER_LOCK: &str = ".writer.lock";
/// Clock reads per step (what replay feeds back).
pub const TAPES: &str = "clock_tapes.json";

/// Terminal and non-terminal run states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Denied,
    Cancelled,
    /// The process died (no terminal event, no live owner). Derived, never written.
    Interrupted,
    /// A scheduled time that did not run (daemon down, outside the deadline).
    Missed,
    /// A scheduled time skipped because the job was still running.
    SkippedOverlap,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Denied => "denied",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Missed => "missed",
            RunStatus::SkippedOverlap => "skipped_overlap",
        }
    }
}

/// One attempt of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub status: String,
    pub started_at: String,
    pub ended_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub retryable: bool,
    pub will_retry: bool,
}

/// A file of the run directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub media_type: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The error of a failed run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub cause: Value,
    /// `seq` of the event where the first error code appeared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_seq: Option<u64>,
}

/// `run_receipt.json`: the source of truth of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub lily_version: String,
    pub job_id: String,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub trigger: Value,
    pub target: Value,
    pub artifacts: Vec<ArtifactRecord>,
    pub approvals_requested: Vec<Value>,
    pub references: Vec<String>,
    pub payload: Value,
    pub attempts: Vec<Attempt>,
    pub policy: Value,
    pub components: Vec<Value>,
    #[serde(default)]
    pub steps: Vec<Value>,
    pub spec_sha256: String,
    #[serde(default)]
    pub spec_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<crate::sandbox::Seeds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// Components that differed from the replayed run (`--allow-drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Value>,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReceiptError>,
}

impl Receipt {
    /// A receipt for a run that just started.
    pub fn start(job_id: &str, run_id: &str, trigger: Value, spec_sha256: &str, spec_path: &str) -> Receipt {
        Receipt {
            lily_version: crate::VERSION.into(),
            job_id: job_id.into(),
            run_id: run_id.into(),
            status: RunStatus::Running,
            started_at: rfc3339(Utc::now()),
            ended_at: None,
            trigger,
            target: Value::Null,
            artifacts: Vec::new(),
            approvals_requested: Vec::new(),
            references: Vec::new(),
            payload: Value::Null,
            attempts: Vec::new(),
            policy: json!({}),
            components: Vec::new(),
            steps: Vec::new(),
            spec_sha256: spec_sha256.into(),
            spec_path: spec_path.into(),
            seeds: None,
            replay_of: None,
            drift: Vec::new(),
            pid: std::process::id(),
            error: None,
        }
    }
}

/// A new run id: UTC start time (sortable) plus 8 random hex digits, so two
/// processes starting in the same millisecond still differ.
pub fn new_run_id() -> String {
    format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), crate::util::random_hex(4))
}

/// An open run directory: holds the run lock for the life of the run.
pub struct RunDir {
    pub path: PathBuf,
    pub run_id: String,
    pub job_id: String,
    _lock: File,
}

impl RunDir {
    /// Create `.lily/runs/<job_id>/<run_id>/` and take its lock.
    pub fn create(runs_dir: &Path, job_id: &str) -> std::io::Result<RunDir> {
        let job_dir = runs_dir.join(job_id);
        crate::util::ensure_dir(&job_dir)?;
        for _ in 0..16 {
            let run_id = new_run_id();
            let path = job_dir.join(&run_id);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let lock = File::create(path.join(RUN_LOCK))?;
                    lock.try_lock().map_err(|e| std::io::Error::other(format!("run lock: {e:?}")))?;
                    return Ok(RunDir {
                        path,
                        run_id,
                        job_id: job_id.into(),
                        _lock: lock,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("could not allocate a unique run id"))
    }

    /// A progress receipt (`running`, plan recorded): atomic, not fsynced —
    /// the final receipt is the durable commit point. Written under the
    /// run's writer lock, with operators' decisions merged in.
    pub fn write_receipt(&self, r: &mut Receipt, events: &EventLog) -> std::io::Result<()> {
        events.locked(|w| {
            w.merge_decisions(r);
            let mut bytes = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            crate::util::write_atomic(&self.path.join(RECEIPT), &bytes, crate::util::Durability::Rename)
        })?
    }

    /// The final receipt: the run's single durable commit point. First every
    /// file of the run directory (artifacts, summary, events, spec snapshot)
    /// and the job directory (which holds the run directory's entry) are
    /// fsynced — concurrently, so the disk can batch them; then, under the
    /// run's writer lock (operators' decisions merged in), the receipt is
    /// written, fsynced and renamed into place; then the run directory is
    /// fsynced so every rename in it is durable. Three sequential flushes
    /// instead of one per file.
    pub fn commit_receipt(&self, r: &mut Receipt, events: &EventLog) -> std::io::Result<()> {
        let mut targets: Vec<PathBuf> = std::fs::read_dir(&self.path)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n != RECEIPT && n != RUN_LOCK && n != WRITER_LOCK && !n.to_string_lossy().starts_with(".tmp-"))
            })
            .collect();
        if let Some(job_dir) = self.path.parent() {
            targets.push(job_dir.to_path_buf());
        }
        let failed: Vec<std::io::Error> = std::thread::scope(|s| {
            let handles: Vec<_> = targets.iter().map(|p| s.spawn(move || File::open(p).and_then(|f| f.sync_all()))).collect();
            handles.into_iter().filter_map(|h| h.join().ok().and_then(|r| r.err())).collect()
        });
        if let Some(e) = failed.into_iter().next() {
            return Err(e);
        }
        events.locked(|w| {
            w.merge_decisions(r);
            let mut bytes = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            crate::util::write_atomic(&self.path.join(RECEIPT), &bytes, crate::util::Durability::Data)
        })??;
        crate::util::sync_dir(&self.path);
        Ok(())
    }

    /// Write an artifact atomically (temp file + rename); it becomes durable
    /// at [`RunDir::commit_receipt`]. Returns its record.
    pub fn write_file(&self, name: &str, media_type: &str, bytes: &[u8]) -> std::io::Result<ArtifactRecord> {
        crate::util::write_atomic(&self.path.join(name), bytes, crate::util::Durability::Rename)?;
        Ok(ArtifactRecord {
            name: name.into(),
            media_type: media_type.into(),
            bytes: bytes.len() as u64,
            sha256: crate::util::sha256(bytes),
        })
    }
}

type Observer = Box<dyn Fn(&str, &Value) + Send + Sync>;

/// The writer side of a run's shared files, valid while its lock is held.
pub struct Writer {
    events: File,
    lock: File,
    run_id: String,
    /// Last `seq` in the file.
    seq: u64,
    /// Length of the events file as of our last read or write.
    len: u64,
    first_error_seq: Option<u64>,
    /// Operators' approval decisions seen in the events file (id → state).
    decisions: BTreeMap<String, String>,
}

impl Writer {
    fn open(dir: &Path, run_id: &str) -> std::io::Result<Writer> {
        let events = std::fs::OpenOptions::new().create(true).append(true).read(true).open(dir.join(EVENTS))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(WRITER_LOCK))?;
        Ok(Writer {
            events,
            lock,
            run_id: run_id.into(),
            seq: 0,
            len: 0,
            first_error_seq: None,
            decisions: BTreeMap::new(),
        })
    }

    /// Take the lock and catch up with what other writers appended.
    fn acquire(&mut self) -> std::io::Result<()> {
        self.lock.lock().map_err(|e| std::io::Error::other(format!("run writer lock: {e:?}")))?;
        if let Err(e) = self.catch_up() {
            let _ = self.lock.unlock();
            return Err(e);
        }
        Ok(())
    }

    fn release(&mut self) {
        let _ = self.lock.unlock();
    }

    /// Read the lines appended since our last look: the highest `seq`, the
    /// first error, and operators' decisions.
    fn catch_up(&mut self) -> std::io::Result<()> {
        let now = self.events.metadata()?.len();
        if now <= self.len {
            return Ok(());
        }
        let mut buf = vec![0u8; (now - self.len) as usize];
        read_exact_at(&self.events, &mut buf, self.len)?;
        for line in buf.split(|b| *b == b'\n') {
            let Ok(ev) = serde_json::from_slice::<Value>(line) else { continue };
            if let Some(seq) = ev["seq"].as_u64() {
                self.seq = self.seq.max(seq);
                if ev.get("error_code").is_some() && self.first_error_seq.is_none() {
                    self.first_error_seq = Some(seq);
                }
            }
            if let Some(state) = operator_decision(&ev) {
                self.decisions.insert(ev["approval_id"].as_str().unwrap_or_default().to_string(), state);
            }
        }
        self.len = now;
        Ok(())
    }

    /// Append one event (the lock is held); returns its `seq`.
    fn append(&mut self, kind: &str, fields: &Value) -> std::io::Result<u64> {
        let seq = self.seq + 1;
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), Value::from(rfc3339(Utc::now())));
        obj.insert("run_id".into(), Value::from(self.run_id.clone()));
        obj.insert("seq".into(), Value::from(seq));
        obj.insert("type".into(), Value::from(kind));
        if let Value::Object(m) = fields {
            for (k, v) in m {
                if !matches!(k.as_str(), "ts" | "run_id" | "seq" | "type") {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
        if obj.contains_key("error_code") && self.first_error_seq.is_none() {
            self.first_error_seq = Some(seq);
        }
        if let Some(state) = operator_decision(&Value::Object(obj.clone())) {
            self.decisions.insert(obj["approval_id"].as_str().unwrap_or_default().to_string(), state);
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        self.events.write_all(line.as_bytes())?;
        self.seq = seq;
        self.len += line.len() as u64;
        Ok(seq)
    }

    /// Put operators' decisions into the receipt's approval list.
    pub fn merge_decisions(&self, r: &mut Receipt) {
        for a in &mut r.approvals_requested {
            if let Some(state) = a["id"].as_str().and_then(|id| self.decisions.get(id)) {
                a["state"] = Value::from(state.clone());
            }
        }
    }
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

#[cfg(not(unix))]
fn read_exact_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    let mut f = f.try_clone()?;
    f.seek(std::io::SeekFrom::Start(at))?;
    f.read_exact(buf)
}

/// The state an operator's decision event sets (`approval_applied` /
/// `approval_denied` … with `by: operator`).
fn operator_decision(ev: &Value) -> Option<String> {
    if ev["by"] != "operator" || !ev["approval_id"].is_string() {
        return None;
    }
    if let Some(s) = ev["state"].as_str() {
        return Some(s.to_string());
    }
    match ev["type"].as_str()? {
        "approval_applied" => Some("applied".into()),
        "approval_denied" => Some("denied".into()),
        _ => None,
    }
}

/// `events.jsonl`: one JSON object per line, written with one `write` each
/// under the run's writer lock (so lines never interleave, across
/// processes too), `seq` strictly increasing across every writer.
pub struct EventLog {
    writer: Mutex<Writer>,
    observer: Option<Observer>,
}

impl EventLog {
    pub fn create(dir: &Path, run_id: &str, observer: Option<Observer>) -> std::io::Result<EventLog> {
        Ok(EventLog {
            writer: Mutex::new(Writer::open(dir, run_id)?),
            observer,
        })
    }

    /// `seq` of the first event carrying an `error_code`.
    pub fn first_error_seq(&self) -> Option<u64> {
        self.writer.lock().ok().and_then(|w| w.first_error_seq)
    }

    /// Run `f` holding the run's writer lock, after catching up with other
    /// writers.
    pub fn locked<T>(&self, f: impl FnOnce(&mut Writer) -> T) -> std::io::Result<T> {
        let mut w = self.writer.lock().map_err(|_| std::io::Error::other("event log poisoned"))?;
        w.acquire()?;
        let out = f(&mut w);
        w.release();
        Ok(out)
    }
}

impl EventSink for EventLog {
    fn emit(&self, kind: &str, fields: Value) {
        if let Err(e) = self.locked(|w| w.append(kind, &fields)).and_then(|r| r) {
            tracing::warn!(error = %e, kind, "could not append an event");
        }
        // Outside the lock: an observer may take its time (or write itself).
        if let Some(o) = &self.observer {
            o(kind, &fields);
        }
    }
}

/// Record an operator's decision on one of a run's approval requests, from
/// any process: under the run's writer lock, append the event (next `seq`)
/// and update the state in the receipt if one is written. A run still going
/// merges the decision into every receipt it writes later.
pub fn record_operator_decision(run_dir: &Path, run_id: &str, approval_id: &str, kind: &str, state: &str) -> std::io::Result<()> {
    if !run_dir.join(EVENTS).exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: no such run", run_dir.display())));
    }
    let log = EventLog::create(run_dir, run_id, None)?;
    log.locked(|w| -> std::io::Result<()> {
        w.append(kind, &json!({"approval_id": approval_id, "by": "operator", "state": state}))?;
        let path = run_dir.join(RECEIPT);
        let Ok(text) = std::fs::read(&path) else { return Ok(()) };
        let mut r: Receipt = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        w.merge_decisions(&mut r);
        let mut bytes = serde_json::to_vec_pretty(&r).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        crate::util::write_atomic(&path, &bytes, crate::util::Durability::Data)
    })?
}

/// A run as listed from disk.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub job_id: String,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub trigger: String,
    pub error_code: Option<String>,
    pub replay_of: Option<String>,
    /// For cron runs and missed / skipped records: the scheduled time (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    pub path: PathBuf,
}

/// Read a receipt, deriving `interrupted` for a dead `running` run, and for
/// a dead run whose process was killed before its first receipt was written.
pub fn read_receipt(run_dir: &Path) -> Option<Receipt> {
    let parsed = std::fs::read(run_dir.join(RECEIPT))
        .ok()
        .and_then(|text| serde_json::from_slice::<Receipt>(&text).ok());
    let Some(mut r) = parsed else {
        return orphan_receipt(run_dir);
    };
    if r.status == RunStatus::Running && !owner_alive(run_dir) {
        r.status = RunStatus::Interrupted;
    }
    Some(r)
}

/// A run directory without a readable receipt (`kill -9` between creating
/// the directory and writing the first receipt): `interrupted` once no
/// process holds its lock — or, with no lock file yet, once the directory is
/// older than a starting run could be. `None` while it may still be starting.
fn orphan_receipt(run_dir: &Path) -> Option<Receipt> {
    let run_id = run_dir.file_name()?.to_str()?;
    let job_id = run_dir.parent()?.file_name()?.to_str()?;
    let started = chrono::NaiveDateTime::parse_from_str(run_id.split_once('Z')?.0, "%Y%m%dT%H%M%S%.3f")
        .ok()?
        .and_utc();
    if run_dir.join(RUN_LOCK).exists() {
        if owner_alive(run_dir) {
            return None;
        }
    } else {
        let age = std::fs::metadata(run_dir).and_then(|m| m.modified()).ok()?.elapsed().unwrap_or_default();
        if age < std::time::Duration::from_secs(10) {
            return None;
        }
    }
    let mut r = Receipt::start(job_id, run_id, json!({"type": "unknown"}), "", "");
    r.status = RunStatus::Interrupted;
    r.started_at = rfc3339(started);
    r.pid = 0;
    r.error = Some(ReceiptError {
        code: crate::error::ErrorCode::JobExecutionFailed.as_str().into(),
        message: "the run was interrupted before its first receipt was written".into(),
        cause: json!({"kind": "interrupted"}),
        first_event_seq: None,
    });
    Some(r)
}

/// Is the process that owns this run still holding its lock?
pub fn owner_alive(run_dir: &Path) -> bool {
    match File::open(run_dir.join(RUN_LOCK)) {
        Ok(f) => match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

fn summarize(r: &Receipt, path: PathBuf) -> RunSummary {
    RunSummary {
        job_id: r.job_id.clone(),
        run_id: r.run_id.clone(),
        status: r.status,
        started_at: r.started_at.clone(),
        ended_at: r.ended_at.clone(),
        trigger: r.trigger.get("type").and_then(Value::as_str).unwrap_or("manual").to_string(),
        error_code: r.error.as_ref().map(|e| e.code.clone()),
        replay_of: r.replay_of.clone(),
        scheduled_for: r.trigger.get("scheduled_for").and_then(Value::as_str).map(str::to_string),
        path,
    }
}

/// Run directories of a job, newest first (names sort by start time).
pub fn run_dirs(runs_dir: &Path, job_id: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(runs_dir.join(job_id))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.reverse();
    v
}

/// Per-job index of finished runs (`.lily/runs/<job>/index.jsonl`): one
/// line per run, appended after its final receipt. A cache for listing —
/// the receipts stay the source of truth, and a run missing from the index
/// (still running, killed, or older) is read from its receipt.
pub const INDEX: &str = "index.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    run_id: String,
    status: RunStatus,
    started_at: String,
    ended_at: Option<String>,
    trigger: String,
    error_code: Option<String>,
    replay_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<String>,
}

/// Append a finished run to its job's index (one `write`, O_APPEND).
pub fn append_index(runs_dir: &Path, r: &Receipt) -> std::io::Result<()> {
    let s = summarize(r, PathBuf::new());
    let entry = IndexEntry {
        run_id: s.run_id,
        status: s.status,
        started_at: s.started_at,
        ended_at: s.ended_at,
        trigger: s.trigger,
        error_code: s.error_code,
        replay_of: s.replay_of,
        scheduled_for: s.scheduled_for,
    };
    let mut line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(runs_dir.join(&r.job_id).join(INDEX))?;
    f.write_all(line.as_bytes())
}

fn read_index(runs_dir: &Path, job_id: &str) -> std::collections::HashMap<String, IndexEntry> {
    let Ok(text) = std::fs::read_to_string(runs_dir.join(job_id).join(INDEX)) else {
        return Default::default();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<IndexEntry>(l).ok())
        .map(|e| (e.run_id.clone(), e))
        .collect()
}

/// History of a job, newest first: finished runs from the index, the rest
/// from their receipts.
pub fn list_runs(runs_dir: &Path, job_id: &str, limit: usize, status: Option<RunStatus>) -> Vec<RunSummary> {
    let mut index = read_index(runs_dir, job_id);
    let mut out = Vec::new();
    for dir in run_dirs(runs_dir, job_id) {
        if out.len() >= limit {
            break;
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let summary = match index.remove(&name) {
            Some(e) => RunSummary {
                job_id: job_id.to_string(),
                run_id: e.run_id,
                status: e.status,
                started_at: e.started_at,
                ended_at: e.ended_at,
                trigger: e.trigger,
                error_code: e.error_code,
                replay_of: e.replay_of,
                scheduled_for: e.scheduled_for,
                path: dir,
            },
            None => {
                let Some(r) = read_receipt(&dir) else { continue };
                summarize(&r, dir)
            }
        };
        if status.is_some_and(|s| s != summary.status) {
            continue;
        }
        out.push(summary);
    }
    out
}

/// Find a run directory by run id (any job).
pub fn find_run(runs_dir: &Path, run_id: &str) -> Option<PathBuf> {
    if run_id.is_empty() || run_id.contains('/') || run_id.contains("..") {
        return None;
    }
    let rd = std::fs::read_dir(runs_dir).ok()?;
    let mut jobs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    jobs.sort();
    jobs.into_iter().map(|j| j.join(run_id)).find(|p| p.is_dir())
}

/// All events of a run (unparseable lines are skipped).
pub fn read_events(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join(EVENTS))
        .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// Is this a terminal event type?
pub fn is_terminal_event(kind: &str) -> bool {
    matches!(
        kind,
        "job_completed" | "job_failed" | "job_cancelled" | "job_denied" | "job_missed" | "job_skipped_overlap"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_sort_by_time() {
        let mut ids: Vec<String> = (0..1000).map(|_| new_run_id()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn dead_running_run_reads_as_interrupted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = RunDir::create(tmp.path(), "job").expect("create");
        let mut r = Receipt::start("job", &dir.run_id, json!({"type": "manual"}), "sha256:x", "p");
        let log = EventLog::create(&dir.path, &dir.run_id, None).expect("log");
        dir.write_receipt(&mut r, &log).expect("write");
        assert_eq!(read_receipt(&dir.path).expect("read").status, RunStatus::Running);
        let path = dir.path.clone();
        drop(dir);
        assert_eq!(read_receipt(&path).expect("read").status, RunStatus::Interrupted);
    }

    #[test]
    fn every_writer_of_a_run_shares_one_seq_and_decisions_survive_the_runs_own_receipts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = RunDir::create(tmp.path(), "job").expect("create");
        let log = EventLog::create(&dir.path, &dir.run_id, None).expect("log");
        let mut r = Receipt::start("job", &dir.run_id, json!({"type": "manual"}), "sha256:x", "p");
        r.approvals_requested = vec![json!({"id": "apr-1", "state": "pending"}), json!({"id": "apr-2", "state": "pending"})];
        log.emit("job_started", json!({}));
        dir.write_receipt(&mut r, &log).expect("progress");
        // An operator (another writer) decides while the run is going …
        record_operator_decision(&dir.path, &dir.run_id, "apr-2", "approval_applied", "applied").expect("decide");
        log.emit("job_completed", json!({}));
        // … and the run's own receipts keep the decision.
        dir.commit_receipt(&mut r, &log).expect("commit");
        let on_disk = read_receipt(&dir.path).expect("receipt");
        assert_eq!(on_disk.approvals_requested[0]["state"], "pending");
        assert_eq!(on_disk.approvals_requested[1]["state"], "applied");
        let seqs: Vec<u64> = read_events(&dir.path).iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        // After the run, decisions go into the committed receipt.
        record_operator_decision(&dir.path, &dir.run_id, "apr-1", "approval_denied", "denied").expect("decide");
        let on_disk = read_receipt(&dir.path).expect("receipt");
        assert_eq!(on_disk.approvals_requested[0]["state"], "denied");
        assert_eq!(read_events(&dir.path).last().expect("event")["seq"], 4);
    }

    #[test]
    fn events_have_increasing_seq_and_first_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = EventLog::create(tmp.path(), "r1", None).expect("log");
        log.emit("a", json!({}));
        log.emit("b", json!({"error_code": "x"}));
        log.emit("c", json!({"error_code": "y"}));
        assert_eq!(log.first_error_seq(), Some(2));
        let ev = read_events(tmp.path());
        assert_eq!(ev.iter().map(|e| e["seq"].as_u64().expect("seq")).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
