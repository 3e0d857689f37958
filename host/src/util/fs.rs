//! Files: atomic writes with an explicit [`Durability`], directories, and
//! the [`Stamp`] that tells one version of a file from the next.

use std::io::Write;
use std::path::Path;

/// Write `data` to `path` atomically and durably: a temp file in the same
/// directory, fsync, rename over the target, fsync the directory. Readers
/// see the old file or the new one, never a prefix.
pub fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic(path, data, Durability::Full)
}

/// How much of a write must survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Atomic rename only: after a crash the old file or the new one (or
    /// none) — for progress records a later durable write supersedes.
    Rename,
    /// The file's data is fsynced before the rename; the directory entry is
    /// made durable by a later [`sync_dir`] (a run's final commit point).
    Data,
    /// Data fsynced, renamed, and the directory fsynced.
    Full,
}

/// Atomic write (temp file in the same directory + rename) with the given
/// durability. Readers never see a prefix.
pub fn write_atomic(path: &Path, data: &[u8], durability: Durability) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // tempfile creates its files 0600: the rule of [`PRIVATE_FILE_MODE`].
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").suffix(".partial").tempfile_in(dir)?;
    tmp.write_all(data)?;
    if durability != Durability::Rename {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Full {
        sync_dir(dir);
    }
    Ok(())
}

/// The one file-mode rule (docs/security.md#file-modes): everything Lily
/// creates for itself under `.lily/` is owner-only — files 0600 (the temp
/// files of [`write_atomic`] are created 0600, and so are the files of
/// [`private_open_options`]), directories 0700 ([`ensure_dir`],
/// [`create_dir_private`]).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// See [`PRIVATE_FILE_MODE`].
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// `create_dir_all` (new directories 0700), but a `stat` first:
/// `create_dir_all` always tries `mkdir`, which takes the parent
/// directory's lock even when the directory exists, so many runs starting
/// at once would queue on it (and on any disk I/O its holder waits for).
pub fn ensure_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, PRIVATE_DIR_MODE);
    b.create(path)
}

/// `create_dir` (one level; fails when it exists), mode 0700.
pub fn create_dir_private(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, PRIVATE_DIR_MODE);
    b.create(path)
}

/// `OpenOptions` whose newly created file is mode 0600 (locks, append-only
/// logs); set create / append / write on it as usual.
pub fn private_open_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, PRIVATE_FILE_MODE);
    o
}

/// fsync a directory so a rename in it survives a crash (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What identifies one version of a file on disk (length, mtime, inode):
/// take it *before* reading the file, so a change during the read shows up
/// as a different stamp next time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }

    pub fn of_path(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
    }
}

/// What identifies one version of a file: length, modification and change
/// times (ns), inode and device. The change time is set by the kernel on
/// every write, rename or `utimes` and cannot be set back (short of root
/// setting the clock back), so an unchanged identity means unchanged bytes.
/// Kept by the spec scan index and beside installed runnables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub len: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    pub fn of(m: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            len: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    #[cfg(not(unix))]
    pub fn of(m: &std::fs::Metadata) -> FileIdentity {
        let ns = |t: std::io::Result<std::time::SystemTime>| {
            t.ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(-1)
        };
        FileIdentity {
            len: m.len(),
            mtime_ns: ns(m.modified()),
            ctime_ns: ns(m.modified()),
            ino: 0,
            dev: 0,
        }
    }
}

impl FileIdentity {
    /// The later of the modification and change times (ns since the epoch).
    pub fn changed_ns(&self) -> i64 {
        self.ctime_ns.max(self.mtime_ns)
    }

    /// The identity of `path` if it is a regular file (never through a
    /// symlink).
    pub fn of_regular_file(path: &Path) -> Option<FileIdentity> {
        let m = std::fs::symlink_metadata(path).ok()?;
        m.file_type().is_file().then(|| FileIdentity::of(&m))
    }
}
