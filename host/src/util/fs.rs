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

/// `create_dir_all`, but a `stat` first: `create_dir_all` always tries
/// `mkdir`, which takes the parent directory's lock even when the directory
/// exists, so many runs starting at once would queue on it (and on any
/// disk I/O its holder waits for).
pub fn ensure_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() { Ok(()) } else { std::fs::create_dir_all(path) }
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
