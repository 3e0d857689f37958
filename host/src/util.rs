//! Small shared helpers: durable atomic writes, ids, time formatting.

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

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        // Fall back to time + pid; ids stay unique enough for a single host.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = t ^ (u128::from(std::process::id()) << 64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (mixed >> ((i % 16) * 8)) as u8;
        }
    }
    hex::encode(buf)
}

/// A random u64.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    let _ = getrandom::fill(&mut buf);
    u64::from_le_bytes(buf)
}

/// Flow collections (`[` / `{`) deeper than this are refused before a YAML
/// document reaches the parser: the parser's own depth limit comes only after
/// scanning, which takes time quadratic in the depth (seconds for 100 KB).
pub const MAX_YAML_DEPTH: usize = 128;

/// Whether `text` nests flow collections more than `max` deep, counting `[`
/// and `{` outside quotes and comments (quotes are tracked per line).
pub fn yaml_nesting_exceeds(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    for line in text.lines() {
        let (mut in_single, mut in_double, mut prev) = (false, false, ' ');
        for c in line.chars() {
            match c {
                '#' if !in_single && !in_double && prev.is_whitespace() => break,
                '\'' if !in_double => in_single = !in_single,
                '"' if !in_single => in_double = !in_double,
                '[' | '{' if !in_single && !in_double => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                ']' | '}' if !in_single && !in_double => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    false
}

/// RFC 3339 UTC with millisecond precision.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
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
