//! On-disk cache of compiled components, keyed by the component digest and
//! the engine's precompile compatibility hash.
//!
//! An entry is `<hex>-<engine key>.cwasm2`: exactly what
//! `Component::serialize` produced, so a load maps it
//! (`Component::deserialize_file`, no copy) instead of reading it. Beside it,
//! `<entry>.ok` records the sha256 of the entry and the identity of the file
//! it was checked on: device, inode, length, mtime and ctime. A load trusts
//! an entry without hashing it again only when the file is a regular file
//! (not a symlink) owned by this user, not writable by group or others, in a
//! directory with the same properties, and its identity is the recorded one.
//! Any write to the file through the filesystem changes its ctime (which no
//! unprivileged process can set back) and a replacement changes its inode,
//! so a changed entry is hashed in full before use; one that does not match
//! its recorded sha256, or that wasmtime refuses, is treated as absent and
//! rewritten. What this does not catch, and a full hash on every load would:
//! corruption below the filesystem that leaves its metadata alone (bit rot
//! on a disk without checksums). The argument is in `docs/sandbox.md`.
//!
//! `<entry>.describe.json` keeps what the component's `describe` returned
//! (the descriptor and its two schemas, as text), so a cached load links the
//! component without instantiating it; the schemas are parsed, compiled and
//! checked again on every load, exactly as a fresh `describe` result is.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// The identity of a file as the `.ok` record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    /// The identity of `path`, if it is a regular file owned by this user
    /// and writable by nobody else (`None` otherwise: not trusted).
    #[cfg(unix)]
    fn of_private_file(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok()?;
        if !m.file_type().is_file() || !owned_private(&m) {
            return None;
        }
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of_private_file(_path: &Path) -> Option<FileId> {
        None
    }

    fn line(&self, sha256: &str) -> String {
        format!("{} {} {} {} {} {sha256}\n", self.dev, self.ino, self.len, self.mtime_ns, self.ctime_ns)
    }

    fn parse(line: &str) -> Option<(FileId, String)> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dev, ino, len, m, c, sum] = f.as_slice() else { return None };
        Some((
            FileId {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
                len: len.parse().ok()?,
                mtime_ns: m.parse().ok()?,
                ctime_ns: c.parse().ok()?,
            },
            (*sum).to_string(),
        ))
    }
}

/// Owned by this user and not writable by group or others.
#[cfg(unix)]
fn owned_private(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let me = unsafe { libc::geteuid() };
    m.uid() == me && m.mode() & 0o022 == 0
}

fn sha256_file(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(hex::encode(h.finalize()))
}

/// What a component's `describe` returned, kept beside its cache entry
/// (`<entry>.describe.json`) so a cached load need not instantiate it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawDescriptor {
    pub id: String,
    pub version: String,
    pub summary: String,
    pub kind: String,
    pub input_schema: String,
    pub output_schema: String,
}

/// A kept descriptor larger than this is not read (the schemas a
/// `describe` may return are bounded far below it).
const MAX_DESCRIPTOR_FILE: u64 = 4 << 20;

impl CompileCache {
    fn descriptor_path(&self, digest: &str) -> PathBuf {
        let mut p = self.path(digest).into_os_string();
        p.push(".describe.json");
        PathBuf::from(p)
    }

    /// The descriptor kept for `digest`, if its file is private to this user
    /// (like the entry) and parses; else `None` (describe runs again).
    pub fn load_descriptor(&self, digest: &str) -> Option<RawDescriptor> {
        let path = self.descriptor_path(digest);
        let id = FileId::of_private_file(&path)?;
        if !self.dir_is_private() || id.len > MAX_DESCRIPTOR_FILE {
            return None;
        }
        serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
    }

    /// Keep what `describe` returned for `digest` (best effort).
    pub fn store_descriptor(&self, digest: &str, d: &RawDescriptor) {
        if create_private_dir(&self.dir).is_err() {
            return;
        }
        if let Ok(text) = serde_json::to_vec(d)
            && let Err(e) = crate::util::atomic_write(&self.descriptor_path(digest), &text)
        {
            tracing::debug!(error = %e, "could not write the kept descriptor");
        }
    }

    pub fn new(dir: PathBuf, engine: &Engine) -> CompileCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("{hex}-{}.cwasm2", self.engine_key))
    }

    fn record_path(entry: &Path) -> PathBuf {
        let mut p = entry.as_os_str().to_owned();
        p.push(".ok");
        PathBuf::from(p)
    }

    /// Whether the cache directory is a private directory of this user. The
    /// directory may be a symlink (an operator's shared cache): it is
    /// resolved, and what it resolves to is what is checked.
    fn dir_is_private(&self) -> bool {
        #[cfg(unix)]
        {
            std::fs::canonicalize(&self.dir)
                .and_then(std::fs::symlink_metadata)
                .is_ok_and(|m| m.file_type().is_dir() && owned_private(&m))
        }
        #[cfg(not(unix))]
        {
            false
        }
    }

    /// Say once per process that the directory is not used.
    fn warn_not_private(&self) {
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(dir = %self.dir.display(), "compile cache directory is not private to this user (owned by another user, or writable by group or others); not using it");
        }
    }

    /// Whether the entry at `path` is the one that was checked: its identity
    /// matches its record, or (changed since, or never recorded) its full
    /// sha256 matches the recorded one, which is then recorded again.
    fn verified(&self, path: &Path) -> bool {
        if !self.dir_is_private() {
            self.warn_not_private();
            return false;
        }
        let Some(id) = FileId::of_private_file(path) else { return false };
        let record = Self::record_path(path);
        let Some((recorded, sum)) = std::fs::read_to_string(&record).ok().as_deref().and_then(FileId::parse) else {
            return false;
        };
        if recorded == id {
            return true;
        }
        // The file changed since it was checked: hash it in full.
        if sha256_file(path).as_deref() == Some(sum.as_str()) {
            let _ = crate::util::atomic_write(&record, id.line(&sum).as_bytes());
            return true;
        }
        tracing::warn!(path = %path.display(), "compile cache entry is corrupt; recompiling");
        false
    }

    /// Load a cached compiled component, or `None` (absent, corrupt, stale).
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !self.verified(&path) {
            return None;
        }
        // SAFETY: `Component::deserialize_file` trusts the file to be the
        // output of `Component::serialize` from a compatible engine and not
        // to change while it is mapped. The entry is a regular file owned by
        // this user in a directory only this user can write, it is the file
        // whose sha256 was recorded when it was written (or it was hashed
        // again just now), its name carries the engine compatibility hash,
        // and Lily replaces entries by rename (a new inode), never in place,
        // so a mapped entry is never rewritten under the mapping.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(engine, &path) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compile cache entry refused by wasmtime; recompiling");
                None
            }
        }
    }

    /// Store a compiled component (best effort: a cache that cannot be
    /// written only costs time). The entry first, then its record.
    pub fn store(&self, digest: &str, component: &Component) {
        let Ok(body) = component.serialize() else { return };
        if create_private_dir(&self.dir).is_err() {
            return;
        }
        let path = self.path(digest);
        if let Err(e) = crate::util::atomic_write(&path, &body) {
            tracing::debug!(error = %e, "could not write compile cache entry");
            return;
        }
        let sum = hex::encode(Sha256::digest(&body));
        if let Some(id) = FileId::of_private_file(&path)
            && let Err(e) = crate::util::atomic_write(&Self::record_path(&path), id.line(&sum).as_bytes())
        {
            tracing::debug!(error = %e, "could not write compile cache record");
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}
