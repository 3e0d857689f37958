//! `events.jsonl` and the run's one writer: every append and every receipt
//! write of a run happens under its writer lock, across processes.

use super::{ApprovalState, EVENTS, RECEIPT, Receipt, WRITER_LOCK};
use crate::util::rfc3339;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Sink for run events (implemented by the run's [`EventLog`]).
pub trait EventSink: Send + Sync {
    fn emit(&self, kind: &str, fields: Value);
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
    decisions: BTreeMap<String, ApprovalState>,
}

impl Writer {
    fn open(dir: &Path, run_id: &str) -> std::io::Result<Writer> {
        let events = crate::util::private_open_options()
            .create(true)
            .append(true)
            .read(true)
            .open(dir.join(EVENTS))?;
        let lock = crate::util::private_open_options()
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
            if let Some(state) = self.decisions.get(&a.id) {
                a.state = *state;
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
fn operator_decision(ev: &Value) -> Option<ApprovalState> {
    if ev["by"] != "operator" || !ev["approval_id"].is_string() {
        return None;
    }
    if let Some(s) = ev.get("state").and_then(|s| serde_json::from_value::<ApprovalState>(s.clone()).ok()) {
        return Some(s);
    }
    match ev["type"].as_str()? {
        "approval_applied" => Some(ApprovalState::Applied),
        "approval_denied" => Some(ApprovalState::Denied),
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
pub fn record_operator_decision(run_dir: &Path, run_id: &str, approval_id: &str, kind: &str, state: ApprovalState) -> std::io::Result<()> {
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
