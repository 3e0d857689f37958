//! A run directory: created with a unique run id, locked for the life of
//! the run, receipts written atomically (the final one durably).

use super::events::EventLog;
use super::{ArtifactRecord, RECEIPT, RUN_LOCK, Receipt, WRITER_LOCK};
use chrono::Utc;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A new run id: UTC start time (sortable) plus 8 random hex digits, so two
/// processes starting in the same millisecond still differ. Within one
/// process ids strictly increase — a run created later sorts later even in
/// the same millisecond (the time part moves on by a millisecond instead) —
/// which the scheduler's crash recovery relies on when it reads a job's runs
/// newest first.
pub fn new_run_id() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_MS: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_millis();
    let ms = match LAST_MS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))) {
        Ok(last) | Err(last) => now.max(last + 1),
    };
    let at = chrono::DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(Utc::now);
    format!("{}-{}", at.format("%Y%m%dT%H%M%S%.3fZ"), crate::util::random_hex(4))
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
        let job_dir = super::prepare_job_dir(runs_dir, job_id)?;
        for _ in 0..16 {
            let run_id = new_run_id();
            let path = job_dir.join(&run_id);
            // Its line in the job's index first (see `runs::index`).
            match super::index::note_new_run_dir(&job_dir, &run_id, || crate::util::create_dir_private(&path)) {
                Ok(()) => {
                    let lock = crate::util::private_open_options()
                        .create(true)
                        .write(true)
                        .truncate(true)
                        .open(path.join(RUN_LOCK))?;
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
    /// file of the run directory (artifacts, summary, events, spec snapshot),
    /// the job's index (which holds the run's line, so a committed run is
    /// always listed: `runs::index`) and the job directory (which holds the
    /// run directory's entry) are fsynced — concurrently, so the disk can
    /// batch them; then, under the
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
            let index = job_dir.join(super::INDEX);
            if index.exists() {
                targets.push(index);
            }
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

    /// Write one of the host's own files of the run (spec snapshot, clock
    /// tapes) atomically; durable at [`RunDir::commit_receipt`].
    pub fn write_record(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        crate::util::write_atomic(&self.path.join(name), bytes, crate::util::Durability::Rename)
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
