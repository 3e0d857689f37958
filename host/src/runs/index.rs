//! The per-job run index, `.lily/runs/<job>/index.jsonl`: how `lily jobs
//! runs` lists the newest runs of a job without reading its directory.
//!
//! # Lines
//!
//! * `{"lily_index":2}` — the first line of an index that has a line for
//!   every run directory of its job (a *complete* index). Only
//!   [`repair`] writes it, after listing the directory.
//! * `{"run_id":"<id>","open":2}` — written by [`note_new_run_dir`] before
//!   the run directory is created, under the index lock, so every run
//!   directory Lily creates has one, in creation order.
//! * `{"run_id":"<id>","status":…,"v":2}` — a run's summary, appended after
//!   its final receipt ([`append_index`]): a cache of the receipt, last line
//!   of a run wins. A run without one (running, killed, or its process
//!   stopped between the receipt and this line) is read from its receipt,
//!   which stays the source of truth.
//!
//! Every line is written with a newline before and after it (one `write`,
//! `O_APPEND`), so a torn tail left by a crash never swallows the next
//! line; blank and unparsable lines are skipped.
//!
//! # Why a committed run is never missing from a listing
//!
//! A listing trusts the index only when it is complete (its first line is
//! the header); otherwise it lists the directory, as before, and repairs the
//! index. In a complete index:
//!
//! 1. a run directory is created only after its open line is appended, under
//!    the index lock (shared), and rewriters of the index ([`repair`],
//!    retention's compaction) hold the same lock exclusively, so no rewrite
//!    drops an open line whose directory is about to appear;
//! 2. a run's final receipt is its commit point, and
//!    [`super::RunDir::commit_receipt`] fsyncs the index file and the job
//!    directory (with the run's other files) before it writes the receipt:
//!    once a receipt is durable, so is the run's open line — a crash can
//!    lose a summary line (the receipt is read instead), never the open line
//!    of a committed run;
//! 3. the listing reads the index from its end until it has seen the open
//!    lines of `limit` runs, and shows, newest run id first, the runs with
//!    any line after the oldest of those (runs whose open line is further
//!    back were created earlier); when some of them are gone (pruned) or
//!    filtered out, it reads further back. A run directory that vanished is
//!    skipped (one `stat` per shown run).
//!
//! What a complete index does not see: run directories made by something
//! other than this code — copied in by hand, or created by an older `lily`
//! (which writes summary lines without `"v":2`; a listing that meets such a
//! line lists the directory instead). Deleting `index.jsonl` makes the next
//! listing rebuild it from the directory.

use super::*;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};

/// Per-job index of runs (see the module docs).
pub const INDEX: &str = "index.jsonl";
/// The lock file of a job's index: shared to append, exclusive to rewrite.
const INDEX_LOCK: &str = ".index.lock";
/// The first line of a complete index.
const HEADER: &str = "{\"lily_index\":2}";
const ID_HEAD: &str = "{\"run_id\":\"";
const OPEN_TAIL: &str = "\",\"open\":2}";
const SUMMARY_TAIL: &str = ",\"v\":2}";
/// How much of the index's end is read at a time.
const CHUNK: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IndexEntry {
    pub(super) run_id: String,
    status: RunStatus,
    started_at: String,
    ended_at: Option<String>,
    trigger: String,
    error_code: Option<String>,
    replay_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified_identical: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    missed_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    missed_through: Option<String>,
    /// 2 when written by a `lily` that keeps the index complete.
    #[serde(default)]
    v: u32,
}

impl IndexEntry {
    fn summary(self, job_id: &str, path: PathBuf) -> RunSummary {
        RunSummary {
            job_id: job_id.to_string(),
            run_id: self.run_id,
            status: self.status,
            started_at: self.started_at,
            ended_at: self.ended_at,
            trigger: self.trigger,
            error_code: self.error_code,
            replay_of: self.replay_of,
            scheduled_for: self.scheduled_for,
            verified_identical: self.verified_identical,
            missed_count: self.missed_count,
            missed_through: self.missed_through,
            path,
        }
    }
}

/// Take the job's index lock (shared to append, exclusive to rewrite).
fn lock(job_dir: &Path, exclusive: bool) -> std::io::Result<File> {
    let f = crate::util::private_open_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(job_dir.join(INDEX_LOCK))?;
    if exclusive {
        f.lock()?
    } else {
        f.lock_shared()?
    }
    Ok(f)
}

/// Append one line (a newline before and after it, one `write`).
fn append_line(job_dir: &Path, line: &str) -> std::io::Result<()> {
    let mut f = crate::util::private_open_options().create(true).append(true).open(job_dir.join(INDEX))?;
    f.write_all(format!("\n{line}\n").as_bytes())
}

fn open_line(run_id: &str) -> String {
    format!("{ID_HEAD}{run_id}{OPEN_TAIL}")
}

/// Record a new run directory in its job's index, then create it with
/// `create` — both under the index lock, so that a rewrite of the index
/// never runs between the two (see the module docs). An error from either
/// is returned; a line whose directory was never created is skipped by
/// listings and dropped by the next rewrite.
pub fn note_new_run_dir(job_dir: &Path, run_id: &str, create: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let _lock = lock(job_dir, false)?;
    append_line(job_dir, &open_line(run_id))?;
    create()
}

/// Append a finished run's summary to its job's index.
pub fn append_index(runs_dir: &Path, r: &Receipt) -> std::io::Result<()> {
    let job_dir = runs_dir.join(&r.job_id);
    let line = serde_json::to_string(&entry_of(r)).map_err(std::io::Error::other)?;
    let _lock = lock(&job_dir, false)?;
    append_line(&job_dir, &line)
}

fn entry_of(r: &Receipt) -> IndexEntry {
    let s = summarize(r, PathBuf::new());
    IndexEntry {
        run_id: s.run_id,
        status: s.status,
        started_at: s.started_at,
        ended_at: s.ended_at,
        trigger: s.trigger,
        error_code: s.error_code,
        replay_of: s.replay_of,
        scheduled_for: s.scheduled_for,
        verified_identical: s.verified_identical,
        missed_count: s.missed_count,
        missed_through: s.missed_through,
        v: 2,
    }
}

/// What one index line is.
enum Line<'a> {
    Header,
    Open(&'a str),
    /// A summary line: its run id, and whether a complete-index writer wrote it.
    Summary(std::borrow::Cow<'a, str>, bool),
    Other,
}

fn classify(line: &str) -> Line<'_> {
    if line == HEADER {
        return Line::Header;
    }
    let quick = line
        .strip_prefix(ID_HEAD)
        .and_then(|rest| rest.split_once('"'))
        .map(|(id, _)| id)
        .filter(|id| !id.contains('\\'));
    if let Some(id) = quick {
        if line.len() == ID_HEAD.len() + id.len() + OPEN_TAIL.len() && line.ends_with(OPEN_TAIL) {
            return Line::Open(id);
        }
        return Line::Summary(std::borrow::Cow::Borrowed(id), line.ends_with(SUMMARY_TAIL));
    }
    match serde_json::from_str::<IndexEntry>(line) {
        Ok(e) => Line::Summary(std::borrow::Cow::Owned(e.run_id), e.v == 2),
        Err(_) => Line::Other,
    }
}

/// A job's runs, newest first (by run id, which sorts by start time): at
/// most `limit`, only those with `status` when given. From the end of a
/// complete index when there is one (the cost does not grow with the
/// number of runs); otherwise from the directory listing, after which the
/// index is repaired. See the module docs for why no committed run is left
/// out.
pub fn list_runs(runs_dir: &Path, job_id: &str, limit: usize, status: Option<RunStatus>) -> Vec<RunSummary> {
    let job_dir = runs_dir.join(job_id);
    if limit == 0 {
        return Vec::new();
    }
    if let Some(listed) = from_tail(&job_dir, job_id, limit, status) {
        return listed;
    }
    let listed = from_listing(&job_dir, job_id, limit, status);
    if job_dir.is_dir()
        && let Err(e) = repair(&job_dir)
    {
        tracing::debug!(job = %job_id, error = %e, "could not rebuild the run index");
    }
    listed
}

/// The summary of one run: its newest index line when that is a summary
/// (and its directory still exists), else its receipt.
fn resolve(job_dir: &Path, job_id: &str, run_id: &str, summary_line: Option<&str>) -> Option<RunSummary> {
    let dir = job_dir.join(run_id);
    if let Some(line) = summary_line
        && let Ok(e) = serde_json::from_str::<IndexEntry>(line)
        && e.run_id == run_id
    {
        return dir.is_dir().then(|| e.summary(job_id, dir));
    }
    let r = read_receipt(&dir)?;
    Some(summarize(&r, dir))
}

/// The listing from the end of a complete index; `None` when the index is
/// missing, not complete, or has a line an older `lily` wrote.
fn from_tail(job_dir: &Path, job_id: &str, limit: usize, status: Option<RunStatus>) -> Option<Vec<RunSummary>> {
    let mut f = File::open(job_dir.join(INDEX)).ok()?;
    let mut head = [0u8; 64];
    let n = f.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok().map(|h| h.trim_start_matches('\n'));
    if !first.is_some_and(|h| h.starts_with(HEADER) && h[HEADER.len()..].starts_with('\n')) {
        return None;
    }
    let size = f.seek(SeekFrom::End(0)).ok()?;
    let mut pos = size;
    // The newest line of each run seen so far (`None`: an open line).
    let mut newest: HashMap<String, Option<String>> = HashMap::new();
    let mut opened: HashSet<String> = HashSet::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut at_start = false;
    let mut want = limit;
    loop {
        let from = pos.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (pos - from) as usize];
        f.seek(SeekFrom::Start(from)).ok()?;
        f.read_exact(&mut buf).ok()?;
        buf.extend_from_slice(&carry);
        pos = from;
        // Everything before the first newline may be part of a line that
        // starts in the previous chunk (unless this is the file's start).
        let split = if pos == 0 {
            0
        } else {
            buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len())
        };
        carry = buf[..split].to_vec();
        let text = String::from_utf8_lossy(&buf[split..]);
        for line in text.split('\n').rev() {
            match classify(line) {
                Line::Header => at_start = true,
                Line::Open(id) => {
                    newest.entry(id.to_string()).or_insert(None);
                    opened.insert(id.to_string());
                }
                Line::Summary(id, current) => {
                    if !current {
                        return None;
                    }
                    newest.entry(id.into_owned()).or_insert_with(|| Some(line.to_string()));
                }
                Line::Other => {}
            }
            if at_start {
                break;
            }
        }
        at_start |= pos == 0;
        if opened.len() < want && !at_start {
            continue;
        }
        // Runs created before the oldest open line seen may have a larger id
        // than a run seen only by its summary line: only ids from that
        // oldest one up are sure to be complete.
        let floor = if at_start { None } else { opened.iter().min().cloned() };
        let mut ids: Vec<&String> = newest.keys().filter(|id| floor.as_ref().is_none_or(|f| *id >= f)).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            if id.contains('/') || id.contains("..") || id.is_empty() {
                continue;
            }
            let Some(s) = resolve(job_dir, job_id, id, newest.get(id).and_then(|l| l.as_deref())) else {
                continue;
            };
            if status.is_some_and(|st| st != s.status) {
                continue;
            }
            out.push(s);
        }
        if out.len() >= limit || at_start {
            return Some(out);
        }
        want = want.saturating_mul(2);
    }
}

/// The index's lines by run id, last line wins, without parsing them: a
/// listing parses only the lines of the runs it shows. A line starts with
/// `{"run_id":"<id>"` (the field order [`append_index`] writes); any other
/// line, or an id with an escape in it, is parsed here to find its id. A
/// line that does not parse is left out (its run is read from its receipt).
fn index_lines(text: &str) -> HashMap<std::borrow::Cow<'_, str>, &str> {
    let mut out = HashMap::new();
    for line in text.lines() {
        match classify(line) {
            Line::Summary(id, _) => {
                out.insert(id, line);
            }
            Line::Open(id) => {
                out.insert(std::borrow::Cow::Borrowed(id), line);
            }
            Line::Header | Line::Other => {}
        }
    }
    out
}

/// The listing from the job directory (every run directory named, sorted):
/// summaries from the index where it has them, the rest from receipts.
fn from_listing(job_dir: &Path, job_id: &str, limit: usize, status: Option<RunStatus>) -> Vec<RunSummary> {
    let text = std::fs::read_to_string(job_dir.join(INDEX)).unwrap_or_default();
    let mut index = index_lines(&text);
    let mut out = Vec::new();
    for name in run_names(job_dir) {
        if out.len() >= limit {
            break;
        }
        let Some(id) = name.to_str() else { continue };
        let line = index.remove(id);
        let Some(summary) = resolve(job_dir, job_id, id, line) else { continue };
        if status.is_some_and(|s| s != summary.status) {
            continue;
        }
        out.push(summary);
    }
    out
}

/// Rewrite the index complete: the header, then for every run directory
/// (oldest first) its open line and its newest summary line if it has one.
/// Under the exclusive index lock, so no run directory is created while the
/// directory is listed; written durably (a torn rewrite must not pass for a
/// complete index).
pub(super) fn repair(job_dir: &Path) -> std::io::Result<()> {
    let _lock = lock(job_dir, true)?;
    let text = std::fs::read_to_string(job_dir.join(INDEX)).unwrap_or_default();
    let lines = index_lines(&text);
    let mut names = run_names(job_dir);
    names.reverse();
    let mut out = String::with_capacity(text.len() + names.len() * 48 + HEADER.len() + 1);
    out.push_str(HEADER);
    out.push('\n');
    for name in names {
        let Some(id) = name.to_str() else { continue };
        out.push_str(&open_line(id));
        out.push('\n');
        if let Some(mut e) = lines
            .get(id)
            .and_then(|l| serde_json::from_str::<IndexEntry>(l).ok())
            .filter(|e| e.run_id == id)
        {
            e.v = 2;
            out.push_str(&serde_json::to_string(&e).map_err(std::io::Error::other)?);
            out.push('\n');
        }
    }
    crate::util::write_atomic(&job_dir.join(INDEX), out.as_bytes(), crate::util::Durability::Full)
}

/// Rewrite the index without the lines of runs whose directories are gone
/// (after pruning), keeping it complete if it was. Under the exclusive
/// index lock, so no line appended meanwhile is lost.
pub(super) fn compact(job_dir: &Path) {
    let Ok(_lock) = lock(job_dir, true) else { return };
    let path = job_dir.join(INDEX);
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let keep = match classify(line) {
            Line::Header => true,
            Line::Open(id) => valid_run_dir(job_dir, id),
            Line::Summary(id, _) => valid_run_dir(job_dir, &id),
            Line::Other => false,
        };
        if keep {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept.len() != text.len() {
        let _ = crate::util::write_atomic(&path, kept.as_bytes(), crate::util::Durability::Full);
    }
}

fn valid_run_dir(job_dir: &Path, id: &str) -> bool {
    !id.contains('/') && run_id_started(id).is_some() && job_dir.join(id).is_dir()
}
