//! The object-store run store (`--store URL`, `store:` in
//! `.lily/config.yaml`, `$LILY_STORE`): `s3://bucket/prefix`
//! (S3-compatible), `file:///path` and `memory://` (tests).
//!
//! A run still executes into the local spool (`.lily/runs/<job>/<run>/`,
//! written by [`super::RunDir`] / [`super::EventLog`], the one writer of a
//! run). When it has finished — its final receipt committed locally — the
//! run is **published**: every file of the run directory is uploaded under
//! `<prefix>/runs/<job_id>/<run_id>/<name>`, and the receipt is uploaded
//! **last**, so a run directory in the store without `run_receipt.json` is
//! never read as a run (the receipt object is the single commit point).
//! While it goes, [`LiveUpload`] (driven by the thread renewing the run's
//! lease) uploads the event log's new lines as numbered create-only
//! segments, so a reader of a run that died sees its events up to the
//! last upload.
//!
//! Reading (`lily jobs runs|show|tail|replay --store URL`) mirrors the
//! job's committed runs from the store into a local cache directory and
//! reads them there with the same code as the local store.
//!
//! Credentials come only from the standard AWS environment
//! (`AmazonS3Builder::from_env`: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`, …) and are
//! never part of a URL Lily shows, an object it writes, or an error.

use crate::config::StoreUrl;
use crate::error::{ErrorCode, LilyError};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files of a run directory that are never published: locks, temp files,
/// cancel requests (local coordination only).
fn publishable(name: &str) -> bool {
    !name.starts_with('.')
}

/// The lease object of a run in progress (see [`RunStore::renew_lease`]).
pub const LEASE: &str = "lease.json";

/// How long a lease lasts without renewal: `$LILY_STORE_LEASE_SECONDS`
/// (2..=3600), default 60.
pub fn lease_seconds() -> u64 {
    std::env::var("LILY_STORE_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| (2..=3600).contains(s))
        .unwrap_or(60)
}

/// Largest object Lily reads back from a store (a receipt, an events file,
/// an artifact): bounded so a hostile store cannot exhaust memory.
pub const MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;

/// The folder of a run's event segments in the store:
/// `runs/<job_id>/<run_id>/events/<seq>.jsonl` (see [`LiveUpload`]).
pub const SEGMENTS: &str = "events";

/// The folder of a run's spool snapshots while it goes:
/// `runs/<job_id>/<run_id>/live/{run_receipt.json,job_spec.yaml}` — the
/// local `running` receipt and the spec snapshot, so a reader of a run
/// that died knows its target, trigger, components and seeds (and can
/// replay it). Never read as the run's receipt: only an `interrupted`
/// receipt is derived from it, once the lease expired.
pub const LIVE: &str = "live";

/// Largest event segment (bytes): a segment holds whole lines, except a
/// single line longer than this, which is cut.
pub const SEGMENT_MAX_BYTES: u64 = 1 << 20;

/// Most event segments of one run: the writer stops uploading segments
/// after this many (the rest reaches the store with the finished run's
/// `events.jsonl`), and a reader reassembles at most this many.
pub const MAX_SEGMENTS: u64 = 256;

/// How often a running run's new events are uploaded as a segment:
/// `$LILY_STORE_SEGMENT_SECONDS` (1..=600), default 5 — and never less
/// often than every third of the lease ([`lease_seconds`]).
pub fn segment_seconds() -> u64 {
    let want = std::env::var("LILY_STORE_SEGMENT_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| (1..=600).contains(s))
        .unwrap_or(5);
    want.min((lease_seconds() / 3).max(1))
}

fn segment_key_name(seq: u64) -> String {
    format!("{SEGMENTS}/{seq:06}.jsonl")
}

/// A segment's sequence number from its object name (`000042.jsonl`).
fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".jsonl")?;
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Uploads a running run's progress while it goes (called off the step
/// path, by the thread that renews the run's lease): the bytes the event
/// log gained since the last call as numbered **create-only** segments
/// `runs/<job>/<run>/events/<seq>.jsonl` (whole lines, at most
/// [`SEGMENT_MAX_BYTES`] each, at most [`MAX_SEGMENTS`] per run), and the
/// spool's `running` receipt and spec snapshot under `live/` when they
/// changed. A reader of a run that died (lease expired, no receipt)
/// reassembles the segments: it sees the events up to the last upload.
pub struct LiveUpload {
    store: RunStore,
    job_id: String,
    run_id: String,
    dir: std::path::PathBuf,
    /// Bytes of `events.jsonl` already in segments.
    offset: u64,
    /// The next segment's number.
    seq: u64,
    /// (length, modified) of each `live/` file as last uploaded.
    live: std::collections::BTreeMap<&'static str, (u64, std::time::SystemTime)>,
}

impl LiveUpload {
    pub fn new(store: RunStore, job_id: &str, run_id: &str, run_dir: &Path) -> LiveUpload {
        LiveUpload {
            store,
            job_id: job_id.to_string(),
            run_id: run_id.to_string(),
            dir: run_dir.to_path_buf(),
            offset: 0,
            seq: 0,
            live: Default::default(),
        }
    }

    /// Segments uploaded so far.
    pub fn segments(&self) -> u64 {
        self.seq
    }

    /// Upload what is new; returns how many segments were written.
    pub fn sync(&mut self) -> Result<u64, LilyError> {
        self.sync_live()?;
        let before = self.seq;
        while self.seq < MAX_SEGMENTS {
            let Some(chunk) = self.next_chunk()? else { break };
            let key = self.store.key(&format!("runs/{}/{}/{}", self.job_id, self.run_id, segment_key_name(self.seq)));
            let n = self.store.put_create_or_size(key, chunk)?;
            self.offset += n;
            self.seq += 1;
        }
        Ok(self.seq - before)
    }

    /// The next segment's bytes: whole lines from `offset`, at most
    /// [`SEGMENT_MAX_BYTES`] (a longer single line is cut). `None`: nothing
    /// complete to upload yet.
    fn next_chunk(&self) -> Result<Option<Vec<u8>>, LilyError> {
        use std::io::{Read, Seek};
        let path = self.dir.join(super::EVENTS);
        let Ok(mut f) = std::fs::File::open(&path) else { return Ok(None) };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= self.offset {
            return Ok(None);
        }
        let want = (len - self.offset).min(SEGMENT_MAX_BYTES);
        let mut buf = vec![0u8; want as usize];
        f.seek(std::io::SeekFrom::Start(self.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| store_error(&self.store.url, "cannot read the event log", e))?;
        match buf.iter().rposition(|b| *b == b'\n') {
            Some(i) => buf.truncate(i + 1),
            // A partial last line: wait for its end, unless one line fills a segment.
            None if want < SEGMENT_MAX_BYTES => return Ok(None),
            None => {}
        }
        Ok(Some(buf))
    }

    fn sync_live(&mut self) -> Result<(), LilyError> {
        for name in [super::RECEIPT, super::SPEC_SNAPSHOT] {
            let path = self.dir.join(name);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let stamp = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if meta.len() > MAX_OBJECT_BYTES || self.live.get(name) == Some(&stamp) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let key = self.store.key(&format!("runs/{}/{}/{LIVE}/{name}", self.job_id, self.run_id));
            let store = self.store.store.clone();
            let url = self.store.url.clone();
            block_on(async move {
                store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .map(|_| ())
                    .map_err(|e| store_error(&url, &format!("cannot upload live/{name}"), e))
            })?;
            self.live.insert(name, stamp);
        }
        Ok(())
    }
}

/// An opened run store.
#[derive(Clone)]
pub struct RunStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: StoreUrl,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunStore({})", self.url)
    }
}

fn store_error(url: &StoreUrl, what: &str, e: impl std::fmt::Display) -> LilyError {
    LilyError::new(ErrorCode::JobExecutionFailed, format!("run store {url}: {what}: {e}"))
}

/// Run a store future to completion on a small runtime of its own, on a
/// thread of its own — callable from sync code and from inside a tokio
/// runtime alike (object_store is async; the run store's callers are not).
fn block_on<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime")
                .block_on(fut)
        })
        .join()
        .expect("run store thread")
    })
}

impl RunStore {
    /// Open a store. `memory://` is a fresh in-process store.
    pub fn open(url: &StoreUrl) -> Result<RunStore, LilyError> {
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match url {
            StoreUrl::Memory => (Arc::new(object_store::memory::InMemory::new()), String::new()),
            StoreUrl::File(p) => {
                crate::util::ensure_dir(p).map_err(|e| store_error(url, "cannot create the directory", e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(p).map_err(|e| store_error(url, "cannot open", e))?;
                (Arc::new(fs), String::new())
            }
            StoreUrl::S3 { bucket, prefix } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                // A plain-http endpoint (a local S3 API such as MinIO or moto)
                // is what the operator configured; allow it.
                let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_default();
                if endpoint.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                let s3 = b.build().map_err(|e| store_error(url, "cannot configure S3", e))?;
                (Arc::new(s3), prefix.clone())
            }
        };
        Ok(RunStore {
            store,
            prefix,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    fn key(&self, rest: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rest)
        } else {
            ObjPath::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// Publish a finished local run directory: every file, the receipt last.
    pub fn publish_run(&self, run_dir: &Path, job_id: &str, run_id: &str) -> Result<(), LilyError> {
        let mut names: Vec<String> = std::fs::read_dir(run_dir)
            .map_err(|e| store_error(&self.url, "cannot read the run directory", e))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| publishable(n) && n != super::RECEIPT)
            .collect();
        names.sort();
        names.push(super::RECEIPT.to_string());
        let store = self.store.clone();
        let url = self.url.clone();
        let keys: Vec<(String, ObjPath)> = names.iter().map(|n| (n.clone(), self.key(&format!("runs/{job_id}/{run_id}/{n}")))).collect();
        block_on(async move {
            for (name, key) in keys {
                let bytes = std::fs::read(run_dir.join(&name)).map_err(|e| store_error(&url, &format!("cannot read {name}"), e))?;
                store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .map_err(|e| store_error(&url, &format!("cannot upload {name}"), e))?;
            }
            Ok(())
        })
    }

    /// Create `key` **create-only**; if it exists already (an earlier
    /// attempt whose answer was lost), its size instead. Returns the size
    /// of the object now in the store.
    fn put_create_or_size(&self, key: ObjPath, bytes: Vec<u8>) -> Result<u64, LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let n = bytes.len() as u64;
        block_on(async move {
            let opts = object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(&key, PutPayload::from(bytes), opts).await {
                Ok(_) => Ok(n),
                Err(object_store::Error::AlreadyExists { .. }) => store
                    .head(&key)
                    .await
                    .map(|m| m.size)
                    .map_err(|e| store_error(&url, &format!("cannot read {key}"), e)),
                Err(e) => Err(store_error(&url, &format!("cannot upload {key}"), e)),
            }
        })
    }

    /// Job ids with runs in the store.
    pub fn jobs(&self) -> Result<Vec<String>, LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let base = self.key("runs");
        block_on(async move {
            let l = store
                .list_with_delimiter(Some(&base))
                .await
                .map_err(|e| store_error(&url, "cannot list jobs", e))?;
            Ok(l.common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .filter(|j| crate::paths::valid_id(j))
                .collect())
        })
    }

    /// Mirror the committed runs of a job (those whose receipt object
    /// exists) into `runs_dir/<job_id>/<run_id>/`. Objects already mirrored
    /// with the same size are not fetched again. Returns how many runs.
    pub fn mirror_job(&self, job_id: &str, runs_dir: &Path) -> Result<usize, LilyError> {
        if !crate::paths::valid_id(job_id) {
            return Ok(0);
        }
        let store = self.store.clone();
        let url = self.url.clone();
        let base = self.key(&format!("runs/{job_id}"));
        let job_dir = runs_dir.join(job_id);
        block_on(async move {
            let objects: Vec<object_store::ObjectMeta> = store
                .list(Some(&base))
                .try_collect()
                .await
                .map_err(|e| store_error(&url, "cannot list runs", e))?;
            // run id -> [(name, key, size)]
            let mut runs: std::collections::BTreeMap<String, Vec<(String, ObjPath, u64)>> = Default::default();
            // run id -> the run's event segments and live snapshots: [(dir, name, key, size)]
            let mut below: std::collections::BTreeMap<String, Vec<(String, String, ObjPath, u64)>> = Default::default();
            let depth = base.parts().count();
            for o in objects {
                let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_string()).collect();
                let n = parts.len();
                if n == depth + 3 && valid_run_id(&parts[n - 3]) && [SEGMENTS, LIVE].contains(&parts[n - 2].as_str()) {
                    below
                        .entry(parts[n - 3].clone())
                        .or_default()
                        .push((parts[n - 2].clone(), parts[n - 1].clone(), o.location.clone(), o.size));
                    continue;
                }
                // Otherwise only `<base>/<run_id>/<name>`: one level below the job.
                if n != depth + 2 {
                    continue;
                }
                let (run_id, name) = (parts[n - 2].as_str(), parts[n - 1].as_str());
                if !valid_run_id(run_id) || !publishable(name) || name.contains('/') {
                    continue;
                }
                runs.entry(run_id.to_string()).or_default().push((name.to_string(), o.location.clone(), o.size));
            }
            let mut count = 0;
            for (run_id, files) in runs {
                let dir = job_dir.join(&run_id);
                if !files.iter().any(|(n, _, _)| n == super::RECEIPT) {
                    // Not committed. With an expired lease its process died:
                    // the mirror gets an `interrupted` receipt (derived, never
                    // written to the store). Otherwise it is still going (or
                    // still publishing) and not listed.
                    let Some((_, key, _)) = files.iter().find(|(n, _, _)| n == LEASE) else {
                        continue;
                    };
                    let lease: serde_json::Value = match store.get(key).await {
                        Ok(r) => r.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default(),
                        Err(_) => continue,
                    };
                    let expired = lease["expires_at"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t < chrono::Utc::now());
                    if !expired {
                        continue;
                    }
                    mirror_dir(&job_dir, &run_id).map_err(|e| store_error(&url, "cannot create the cache", e))?;
                    let extra = below.remove(&run_id).unwrap_or_default();
                    let (segments, events_bytes) = mirror_segments(&*store, &url, &extra, &dir).await?;
                    // The spool's `running` receipt (target, trigger,
                    // components, seeds) when it reached the store, and the
                    // spec snapshot: what the run was.
                    let mut live_receipt = None;
                    for (sub, name, key, size) in &extra {
                        if sub != LIVE || *size > MAX_OBJECT_BYTES || ![super::RECEIPT, super::SPEC_SNAPSHOT].contains(&name.as_str()) {
                            continue;
                        }
                        let Ok(bytes) = fetch(&*store, &url, key).await else { continue };
                        if name == super::RECEIPT {
                            live_receipt = serde_json::from_slice::<super::Receipt>(&bytes)
                                .ok()
                                .filter(|r| r.run_id == run_id && r.job_id == job_id_of(&job_dir));
                        } else {
                            crate::util::write_atomic(&dir.join(name), &bytes, crate::util::Durability::Rename)
                                .map_err(|e| store_error(&url, "cannot write the cache", e))?;
                        }
                    }
                    let mut r = match live_receipt {
                        Some(r) => r,
                        None => {
                            let mut r = super::Receipt::start(job_id_of(&job_dir), &run_id, super::TriggerRecord::Unknown, "", "");
                            r.started_at = lease["started_at"].as_str().unwrap_or(&r.started_at).to_string();
                            r
                        }
                    };
                    r.status = super::RunStatus::Interrupted;
                    r.pid = 0;
                    r.error = Some(super::ReceiptError {
                        code: ErrorCode::JobExecutionFailed,
                        message: format!(
                            "the run's lease expired at {} without a receipt: its process died; the store holds its events up to its last upload ({segments} segment(s), {events_bytes} bytes)",
                            lease["expires_at"].as_str().unwrap_or("?")
                        ),
                        cause: serde_json::json!({"kind": "interrupted", "lease": lease, "segments": segments, "events_bytes": events_bytes}),
                        first_event_seq: None,
                    });
                    let mut bytes = serde_json::to_vec_pretty(&r).map_err(|e| store_error(&url, "receipt", e))?;
                    bytes.push(b'\n');
                    crate::util::write_atomic(&dir.join(super::RECEIPT), &bytes, crate::util::Durability::Rename)
                        .map_err(|e| store_error(&url, "cannot write the cache", e))?;
                    count += 1;
                    continue;
                }
                mirror_dir(&job_dir, &run_id).map_err(|e| store_error(&url, "cannot create the cache", e))?;
                for (name, key, size) in files {
                    if size > MAX_OBJECT_BYTES {
                        return Err(store_error(&url, &format!("{key} is {size} bytes"), format!("more than {MAX_OBJECT_BYTES}")));
                    }
                    let local = dir.join(&name);
                    if name != super::RECEIPT && std::fs::metadata(&local).is_ok_and(|m| m.len() == size) {
                        continue;
                    }
                    let bytes = store
                        .get(&key)
                        .await
                        .map_err(|e| store_error(&url, &format!("cannot read {key}"), e))?
                        .bytes()
                        .await
                        .map_err(|e| store_error(&url, &format!("cannot read {key}"), e))?;
                    crate::util::write_atomic(&local, &bytes, crate::util::Durability::Rename).map_err(|e| store_error(&url, "cannot write the cache", e))?;
                }
                count += 1;
            }
            Ok(count)
        })
    }

    /// Claim a scheduled time of a job: create
    /// `claims/<job_id>/scheduled/<slot>.json` **create-only** (S3:
    /// `If-None-Match: *`; file: `O_EXCL` link; memory: a locked map), so
    /// of any number of claimants exactly one wins. `slot` is the local
    /// wall-clock time in the job's zone (`2027-11-07T01:30:00`): both
    /// passes of a DST fall-back hour map to the same key. A loser gets the
    /// winner's claim body.
    pub fn claim_scheduled(&self, job_id: &str, slot: &str, body: &serde_json::Value) -> Result<Claim, LilyError> {
        if !crate::paths::valid_id(job_id) || slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit() || b"-T:".contains(&b)) {
            return Err(store_error(&self.url, "claim", format!("bad claim key {job_id}/{slot}")));
        }
        let key = self.key(&format!("claims/{job_id}/scheduled/{slot}.json"));
        self.create_only(key, body)
    }

    /// Create `key` only if it does not exist. The body carries a fresh
    /// `claim_token`, so a create whose answer was lost is still won: the
    /// client retries a create-only PUT on a 5xx or a dropped connection
    /// (object_store does), and when the first try had landed the retry
    /// finds the object — ours, by its token — and reads `AlreadyExists`.
    /// Without the token the only claimant of a scheduled time would
    /// think it lost (no run at all), or fail to take a free run slot
    /// (`job_busy`).
    fn create_only(&self, key: ObjPath, body: &serde_json::Value) -> Result<Claim, LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let token = crate::util::random_hex(16);
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            o.insert(CLAIM_TOKEN.into(), serde_json::Value::String(token.clone()));
        }
        let mut bytes = serde_json::to_vec_pretty(&body).map_err(|e| store_error(&url, "claim", e))?;
        bytes.push(b'\n');
        block_on(async move {
            let opts = object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(&key, PutPayload::from(bytes), opts).await {
                Ok(_) => Ok(Claim::Won),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let by = match store.get(&key).await {
                        Ok(r) => r
                            .bytes()
                            .await
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(serde_json::Value::Null),
                        Err(_) => serde_json::Value::Null,
                    };
                    if by[CLAIM_TOKEN].as_str() == Some(token.as_str()) {
                        return Ok(Claim::Won);
                    }
                    Ok(Claim::Taken { by })
                }
                Err(e) => Err(store_error(&url, &format!("cannot create the claim {key}"), e)),
            }
        })
    }

    /// Write (or renew) the lease of a run in progress:
    /// `runs/<job_id>/<run_id>/lease.json` with `expires_at`. The holder
    /// renews it every [`lease_seconds`]` / 3`; a run directory in the store
    /// with an expired lease and no receipt reads `interrupted` (its
    /// process died before it could publish). Only the run's own process
    /// writes its lease, so a plain put suffices.
    pub fn renew_lease(&self, job_id: &str, run_id: &str, body: &serde_json::Value) -> Result<(), LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let key = self.key(&format!("runs/{job_id}/{run_id}/{LEASE}"));
        let bytes = serde_json::to_vec(body).map_err(|e| store_error(&url, "lease", e))?;
        block_on(async move {
            store
                .put(&key, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| store_error(&url, "cannot renew the lease", e))
        })
    }

    /// Take one of a job's `slots` run slots across processes (its
    /// `max_parallel_runs`). A slot is a series of generations
    /// `claims/<job>/slots/<n>/<generation>.json`, each created
    /// **create-only**: a free slot (no generation yet) is taken by creating
    /// generation 0; a slot whose latest generation expired (its holder
    /// stopped renewing) or was released is taken by creating the next
    /// generation — of any number of takers exactly one wins. Only the
    /// holder of a generation writes it (renewal, release), and a holder
    /// that sees the next generation has lost the slot. `None`: every slot
    /// is held.
    pub fn acquire_slot(&self, job_id: &str, slots: u32, body: &serde_json::Value) -> Result<Option<SlotLease>, LilyError> {
        if !crate::paths::valid_id(job_id) {
            return Err(store_error(&self.url, "slot", format!("bad job id {job_id}")));
        }
        for n in 0..slots {
            let dir = self.key(&format!("claims/{job_id}/slots/{n}"));
            let store = self.store.clone();
            let url = self.url.clone();
            let latest: Option<(u64, serde_json::Value, Vec<(u64, ObjPath)>)> = block_on(async move {
                let objects: Vec<object_store::ObjectMeta> = store
                    .list(Some(&dir))
                    .try_collect()
                    .await
                    .map_err(|e| store_error(&url, "cannot list slots", e))?;
                let mut gens: Vec<(u64, ObjPath)> = objects
                    .iter()
                    .filter_map(|o| {
                        o.location
                            .filename()?
                            .strip_suffix(".json")?
                            .parse::<u64>()
                            .ok()
                            .map(|g| (g, o.location.clone()))
                    })
                    .collect();
                gens.sort_by_key(|(g, _)| *g);
                let Some((g, key)) = gens.last().cloned() else {
                    return Ok::<_, LilyError>(None);
                };
                let body = match store.get(&key).await {
                    Ok(r) => r.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
                Ok(Some((g, body, gens)))
            })?;
            let mut old = Vec::new();
            let generation = match latest {
                None => 0,
                Some((g, b, gens)) => {
                    old = gens;
                    let free = b["released"] == true
                        || b["expires_at"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .is_none_or(|t| t < chrono::Utc::now());
                    if !free {
                        continue;
                    }
                    g + 1
                }
            };
            let lease = SlotLease {
                job_id: job_id.to_string(),
                slot: n,
                generation,
            };
            if self.create_only(self.slot_key(&lease, generation), body)? == Claim::Won {
                self.prune_generations(old, generation);
                return Ok(Some(lease));
            }
        }
        Ok(None)
    }

    /// Best effort, after creating generation `g` of a slot: delete its
    /// generations `<= g - 2`, oldest first (generation `g - 1` stays: its
    /// holder finds `g` and knows it lost the slot). A holder of a pruned
    /// generation sees it lost too: [`RunStore::renew_slot`] checks the
    /// next generation, then its own, and the next one is deleted after its
    /// own, so it never writes its pruned generation back.
    fn prune_generations(&self, gens: Vec<(u64, ObjPath)>, g: u64) {
        let doomed: Vec<ObjPath> = gens.into_iter().filter(|(n, _)| n + 2 <= g).map(|(_, k)| k).collect();
        if doomed.is_empty() {
            return;
        }
        let store = self.store.clone();
        block_on(async move {
            for key in doomed {
                if let Err(e) = store.delete(&key).await {
                    tracing::debug!(error = %e, "cannot prune an old slot generation");
                    return;
                }
            }
        });
    }

    fn slot_key(&self, l: &SlotLease, generation: u64) -> ObjPath {
        self.key(&format!("claims/{}/slots/{}/{generation:020}.json", l.job_id, l.slot))
    }

    /// Renew (or, with `released: true` in `body`, release) a held slot.
    /// `false`: the slot was taken over (the next generation exists) — the
    /// lease is lost and nothing was written.
    pub fn renew_slot(&self, l: &SlotLease, body: &serde_json::Value) -> Result<bool, LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let next = self.slot_key(l, l.generation + 1);
        let own = self.slot_key(l, l.generation);
        let bytes = serde_json::to_vec(body).map_err(|e| store_error(&url, "slot", e))?;
        block_on(async move {
            match store.head(&next).await {
                Ok(_) => return Ok(false),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(&url, "cannot check the slot", e)),
            }
            // Pruned (two generations newer exist): lost as well.
            match store.head(&own).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(store_error(&url, "cannot check the slot", e)),
            }
            store
                .put(&own, PutPayload::from(bytes))
                .await
                .map(|_| true)
                .map_err(|e| store_error(&url, "cannot renew the slot", e))
        })
    }

    /// Every object key under the store's prefix (tests: scan for secrets).
    pub fn all_keys(&self) -> Result<Vec<String>, LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let base = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        block_on(async move {
            let objects: Vec<object_store::ObjectMeta> = store.list(base.as_ref()).try_collect().await.map_err(|e| store_error(&url, "cannot list", e))?;
            Ok(objects.into_iter().map(|o| o.location.to_string()).collect())
        })
    }

    /// One object's bytes (tests).
    pub fn get_bytes(&self, key: &str) -> Result<Vec<u8>, LilyError> {
        let store = self.store.clone();
        let url = self.url.clone();
        let key = ObjPath::from(key);
        block_on(async move {
            let r = store.get(&key).await.map_err(|e| store_error(&url, "cannot read", e))?;
            Ok(r.bytes().await.map_err(|e| store_error(&url, "cannot read", e))?.to_vec())
        })
    }
}

/// A mirrored run's directory, created with its line in the mirror's run
/// index (as every run directory is: `runs::index`) when it is new.
fn mirror_dir(job_dir: &Path, run_id: &str) -> std::io::Result<PathBuf> {
    let dir = job_dir.join(run_id);
    if !dir.is_dir() {
        crate::util::ensure_dir(job_dir)?;
        super::note_new_run_dir(job_dir, run_id, || crate::util::ensure_dir(&dir))?;
    }
    Ok(dir)
}

fn job_id_of(job_dir: &Path) -> &str {
    job_dir.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// A run slot held in the store (see [`RunStore::acquire_slot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLease {
    pub job_id: String,
    pub slot: u32,
    pub generation: u64,
}

/// The field of a create-only object that says which create made it.
const CLAIM_TOKEN: &str = "claim_token";

/// The outcome of a create-only claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This process created the claim object.
    Won,
    /// Another process had: its claim body (`null` if unreadable).
    Taken { by: serde_json::Value },
}

/// One object's bytes.
async fn fetch(store: &dyn ObjectStore, url: &StoreUrl, key: &ObjPath) -> Result<bytes::Bytes, LilyError> {
    store
        .get(key)
        .await
        .map_err(|e| store_error(url, &format!("cannot read {key}"), e))?
        .bytes()
        .await
        .map_err(|e| store_error(url, &format!("cannot read {key}"), e))
}

/// Reassemble a dead run's event segments into `dir/events.jsonl`: the
/// segments numbered 0, 1, 2, … up to the first gap, at most
/// [`MAX_SEGMENTS`] of at most [`SEGMENT_MAX_BYTES`] each and
/// [`MAX_OBJECT_BYTES`] in all. A mirror already of that length is kept.
/// Returns (segments, bytes).
async fn mirror_segments(store: &dyn ObjectStore, url: &StoreUrl, objects: &[(String, String, ObjPath, u64)], dir: &Path) -> Result<(u64, u64), LilyError> {
    let mut segs: Vec<(u64, &ObjPath, u64)> = objects
        .iter()
        .filter(|(sub, ..)| sub == SEGMENTS)
        .filter_map(|(_, name, key, size)| segment_seq(name).map(|n| (n, key, *size)))
        .collect();
    segs.sort_by_key(|(n, ..)| *n);
    let mut take = Vec::new();
    let mut total = 0u64;
    for (i, (n, key, size)) in segs.into_iter().enumerate() {
        if n != i as u64 || n >= MAX_SEGMENTS || size > SEGMENT_MAX_BYTES || total + size > MAX_OBJECT_BYTES {
            break;
        }
        total += size;
        take.push(key);
    }
    let local = dir.join(super::EVENTS);
    if take.is_empty() || std::fs::metadata(&local).is_ok_and(|m| m.len() == total) {
        return Ok((take.len() as u64, total));
    }
    let mut all = Vec::with_capacity(total as usize);
    for key in &take {
        let b = fetch(store, url, key).await?;
        if all.len() as u64 + b.len() as u64 > MAX_OBJECT_BYTES {
            break;
        }
        all.extend_from_slice(&b);
    }
    crate::util::write_atomic(&local, &all, crate::util::Durability::Rename).map_err(|e| store_error(url, "cannot write the cache", e))?;
    Ok((take.len() as u64, all.len() as u64))
}

/// A run id as [`super::new_run_id`] makes them (no path tricks).
fn valid_run_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') && !s.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_mirror_round_trip_on_memory_and_file() {
        let tmp = tempfile::tempdir().expect("ok");
        let file_url = StoreUrl::parse(&format!("file://{}", tmp.path().join("store").display())).expect("ok");
        for url in [StoreUrl::Memory, file_url] {
            let s = RunStore::open(&url).expect("ok");
            let run = tmp.path().join("spool").join("j").join("20270101T000000.000Z-abcdef01");
            std::fs::create_dir_all(&run).expect("ok");
            std::fs::write(run.join(".run.lock"), b"").expect("ok");
            std::fs::write(run.join("events.jsonl"), b"{}\n").expect("ok");
            // Not committed yet: no receipt in the store, nothing mirrored.
            s.publish_run(&run, "j", "20270101T000000.000Z-abcdef01").expect_err("refused");
            std::fs::write(run.join(super::super::RECEIPT), b"{\"r\":1}").expect("ok");
            s.publish_run(&run, "j", "20270101T000000.000Z-abcdef01").expect("ok");
            let keys = s.all_keys().expect("ok");
            assert!(
                keys.iter().any(|k| k.ends_with("runs/j/20270101T000000.000Z-abcdef01/run_receipt.json")),
                "{keys:?}"
            );
            assert!(!keys.iter().any(|k| k.contains(".run.lock")), "{keys:?}");
            let cache = tmp.path().join(format!("cache-{}", url.scheme()));
            assert_eq!(s.mirror_job("j", &cache).expect("ok"), 1);
            assert_eq!(
                std::fs::read(cache.join("j/20270101T000000.000Z-abcdef01/run_receipt.json")).expect("ok"),
                b"{\"r\":1}"
            );
            assert_eq!(s.jobs().expect("ok"), vec!["j".to_string()]);
            std::fs::remove_dir_all(tmp.path().join("spool")).expect("ok");
        }
    }

    #[test]
    fn a_dead_runs_event_segments_are_reassembled_up_to_the_last_upload() {
        let tmp = tempfile::tempdir().expect("ok");
        let file_url = StoreUrl::parse(&format!("file://{}", tmp.path().join("store").display())).expect("ok");
        for url in [StoreUrl::Memory, file_url] {
            let s = RunStore::open(&url).expect("ok");
            let run_id = "20270101T000000.000Z-abcdef01";
            let run = tmp.path().join("spool").join("j").join(run_id);
            std::fs::create_dir_all(&run).expect("ok");
            let events = run.join(super::super::EVENTS);
            let mut running = super::super::Receipt::start("j", run_id, super::super::TriggerRecord::Manual, "", "");
            running.status = super::super::RunStatus::Running;
            std::fs::write(run.join(super::super::RECEIPT), serde_json::to_vec(&running).expect("ok")).expect("ok");
            std::fs::write(run.join(super::super::SPEC_SNAPSHOT), b"id: j\n").expect("ok");
            std::fs::write(&events, b"{\"seq\":1,\"type\":\"job_started\"}\n").expect("ok");
            let mut live = LiveUpload::new(s.clone(), "j", run_id, &run);
            assert_eq!(live.sync().expect("ok"), 1);
            assert_eq!(live.sync().expect("ok"), 0, "nothing new");
            // A partial last line waits for its end.
            let mut f = std::fs::OpenOptions::new().append(true).open(&events).expect("ok");
            std::io::Write::write_all(&mut f, b"{\"seq\":2,\"type\":\"step_started\"}\n{\"seq\":3,").expect("ok");
            assert_eq!(live.sync().expect("ok"), 1);
            // One line longer than a segment is cut into full segments.
            let long = vec![b'x'; SEGMENT_MAX_BYTES as usize + 10];
            std::io::Write::write_all(&mut f, &long).expect("ok");
            assert_eq!(live.sync().expect("ok"), 1, "one full segment; the 19 bytes left wait for the line's end");
            let keys = s.all_keys().expect("ok");
            for n in 0..3 {
                assert!(keys.iter().any(|k| k.ends_with(&format!("runs/j/{run_id}/events/{n:06}.jsonl"))), "{keys:?}");
            }
            assert!(keys.iter().any(|k| k.ends_with(&format!("runs/j/{run_id}/live/run_receipt.json"))), "{keys:?}");
            // Live lease: not listed. Expired: interrupted, with the events
            // of every segment, the live receipt's trigger and the spec.
            let lease = |at: &str| serde_json::json!({"job_id": "j", "run_id": run_id, "started_at": "2027-01-01T00:00:00Z", "expires_at": at});
            s.renew_lease("j", run_id, &lease("2999-01-01T00:00:00Z")).expect("ok");
            let cache = tmp.path().join(format!("cache-{}", url.scheme()));
            assert_eq!(s.mirror_job("j", &cache).expect("ok"), 0);
            s.renew_lease("j", run_id, &lease("2000-01-01T00:00:00Z")).expect("ok");
            assert_eq!(s.mirror_job("j", &cache).expect("ok"), 1);
            let dir = cache.join("j").join(run_id);
            let r = super::super::read_receipt(&dir).expect("receipt");
            assert_eq!(r.status, super::super::RunStatus::Interrupted);
            assert_eq!(r.trigger, super::super::TriggerRecord::Manual);
            assert!(r.error.as_ref().is_some_and(|e| e.message.contains("3 segment(s)")), "{:?}", r.error);
            let mirrored = std::fs::read(dir.join(super::super::EVENTS)).expect("ok");
            let spool = std::fs::read(&events).expect("ok");
            // Not yet uploaded: the last 19 bytes (`{"seq":3,` and the long
            // line's 9 + 1 MiB + 10 bytes, less the full segment's 1 MiB).
            assert_eq!(mirrored.len() as u64, spool.len() as u64 - 19);
            assert_eq!(&mirrored[..], &spool[..mirrored.len()]);
            assert_eq!(super::super::read_events(&dir).len(), 2, "the two whole events");
            assert_eq!(std::fs::read(dir.join(super::super::SPEC_SNAPSHOT)).expect("ok"), b"id: j\n");
            // A gap ends the reassembly: only the segments before it.
            let gap = s.key(&format!("runs/j/{run_id}/events/000001.jsonl"));
            let st = s.store.clone();
            block_on(async move { st.delete(&gap).await }).expect("ok");
            assert_eq!(s.mirror_job("j", &cache).expect("ok"), 1);
            assert_eq!(super::super::read_events(&dir).len(), 1);
            std::fs::remove_dir_all(tmp.path().join("spool")).expect("ok");
        }
    }

    #[test]
    fn a_scheduled_time_is_claimed_once_among_concurrent_claimants() {
        let tmp = tempfile::tempdir().expect("ok");
        let file_url = StoreUrl::parse(&format!("file://{}", tmp.path().display())).expect("ok");
        for url in [StoreUrl::Memory, file_url] {
            let s = RunStore::open(&url).expect("ok");
            let won: Vec<Claim> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..20)
                    .map(|i| {
                        let s = s.clone();
                        sc.spawn(move || s.claim_scheduled("nightly", "2027-11-07T01:30:00", &serde_json::json!({"who": i})).expect("ok"))
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().expect("ok")).collect()
            });
            assert_eq!(won.iter().filter(|c| **c == Claim::Won).count(), 1, "{url}: {won:?}");
            let Claim::Taken { by } = s
                .claim_scheduled("nightly", "2027-11-07T01:30:00", &serde_json::json!({"who": 99}))
                .expect("ok")
            else {
                panic!("claimed twice")
            };
            assert!(by["who"].as_u64().is_some_and(|w| w < 20), "{by}");
            assert_eq!(
                s.claim_scheduled("nightly", "2027-11-07T02:30:00", &serde_json::json!({})).expect("ok"),
                Claim::Won
            );
            assert!(s.claim_scheduled("../x", "2027", &serde_json::json!({})).is_err());
        }
    }

    #[test]
    fn run_slots_are_held_once_each_and_taken_over_only_when_expired() {
        let tmp = tempfile::tempdir().expect("ok");
        let file_url = StoreUrl::parse(&format!("file://{}", tmp.path().display())).expect("ok");
        let live = serde_json::json!({"expires_at": "2999-01-01T00:00:00Z"});
        let dead = serde_json::json!({"expires_at": "2000-01-01T00:00:00Z"});
        for url in [StoreUrl::Memory, file_url] {
            let s = RunStore::open(&url).expect("ok");
            // 10 concurrent takers of 2 slots: exactly 2 win.
            let got: Vec<Option<SlotLease>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..10).map(|_| sc.spawn(|| s.acquire_slot("wide", 2, &live).expect("ok"))).collect();
                hs.into_iter().map(|h| h.join().expect("ok")).collect()
            });
            let held: Vec<&SlotLease> = got.iter().flatten().collect();
            assert_eq!(held.len(), 2, "{url}: {got:?}");
            assert_ne!(held[0].slot, held[1].slot);
            assert_eq!(s.acquire_slot("wide", 2, &live).expect("ok"), None);
            // A holder whose lease expired loses its slot to the next generation.
            let a = held[0].clone();
            assert!(s.renew_slot(&a, &dead).expect("ok"));
            let b = s.acquire_slot("wide", 2, &live).expect("ok").expect("taken over");
            assert_eq!((b.slot, b.generation), (a.slot, a.generation + 1));
            assert!(!s.renew_slot(&a, &live).expect("ok"), "the old holder sees it lost the slot");
            // A released slot is free again.
            assert!(s.renew_slot(&b, &serde_json::json!({"released": true})).expect("ok"));
            let c = s.acquire_slot("wide", 2, &live).expect("ok").expect("free again");
            assert_eq!((c.slot, c.generation), (b.slot, b.generation + 1));
            // Generation 2 was created: generation 0 is pruned, 1 stays; the
            // holder of 0 sees it lost and does not write it back.
            let gens = |slot: u32| -> Vec<String> {
                let mut v: Vec<String> = s
                    .all_keys()
                    .expect("ok")
                    .into_iter()
                    .filter(|k| k.contains(&format!("claims/wide/slots/{slot}/")))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(gens(c.slot).len(), 2, "{:?}", gens(c.slot));
            assert!(gens(c.slot)[0].ends_with(&format!("{:020}.json", a.generation + 1)), "{:?}", gens(c.slot));
            assert!(!s.renew_slot(&a, &live).expect("ok"));
            assert_eq!(gens(c.slot).len(), 2, "the pruned generation stays gone");
            // Many takeovers later, a slot holds at most its last two generations.
            let mut held = c;
            for _ in 0..5 {
                assert!(s.renew_slot(&held, &serde_json::json!({"released": true})).expect("ok"));
                held = s.acquire_slot("wide", 2, &live).expect("ok").expect("free");
            }
            assert_eq!(held.generation, a.generation + 7);
            assert_eq!(gens(held.slot).len(), 2, "{:?}", gens(held.slot));
        }
    }

    /// A store whose create-only PUTs land but whose answer is lost, and
    /// whose client's retry then finds the object: what an S3 client that
    /// retries a create on a 5xx or a dropped connection sees.
    #[derive(Debug)]
    struct LostAnswers(object_store::memory::InMemory);

    impl std::fmt::Display for LostAnswers {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "LostAnswers")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for LostAnswers {
        async fn put_opts(&self, location: &ObjPath, payload: PutPayload, opts: object_store::PutOptions) -> object_store::Result<object_store::PutResult> {
            let create = opts.mode == object_store::PutMode::Create;
            let landed = self.0.put_opts(location, payload, opts).await?;
            if create {
                return Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "the retry found the object".into(),
                });
            }
            Ok(landed)
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjPath,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &ObjPath, options: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(location, options).await
        }
        async fn delete(&self, location: &ObjPath) -> object_store::Result<()> {
            self.0.delete(location).await
        }
        fn list(&self, prefix: Option<&ObjPath>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&ObjPath>) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy(&self, from: &ObjPath, to: &ObjPath) -> object_store::Result<()> {
            self.0.copy(from, to).await
        }
        async fn copy_if_not_exists(&self, from: &ObjPath, to: &ObjPath) -> object_store::Result<()> {
            self.0.copy_if_not_exists(from, to).await
        }
    }

    #[test]
    fn a_create_whose_answer_was_lost_is_still_won() {
        let s = RunStore {
            store: Arc::new(LostAnswers(object_store::memory::InMemory::new())),
            prefix: String::new(),
            url: StoreUrl::Memory,
        };
        // The only claimant of a scheduled time runs it…
        let body = serde_json::json!({"pid": 1});
        assert_eq!(s.claim_scheduled("nightly", "2027-03-15T01:30:00", &body).expect("ok"), Claim::Won);
        // …and a second claimant (same body, another create) loses.
        match s.claim_scheduled("nightly", "2027-03-15T01:30:00", &body).expect("ok") {
            Claim::Taken { by } => assert_eq!(by["pid"], 1, "{by}"),
            Claim::Won => panic!("two claimants won one scheduled time"),
        }
        // The only taker of a free run slot holds it; the next finds it held.
        let live = serde_json::json!({"expires_at": "2999-01-01T00:00:00Z"});
        let l = s.acquire_slot("nightly", 1, &live).expect("ok").expect("the free slot");
        assert_eq!((l.slot, l.generation), (0, 0));
        assert_eq!(s.acquire_slot("nightly", 1, &live).expect("ok"), None);
    }
}
