//! Deterministic walk of a read-only workspace grant (e.g. `/workspace`).

use crate::{Finding, SpecialistInput, SpecialistOutput};
use std::path::{Path, PathBuf};

/// What a workspace-scanning specialist accumulates over one [`walk`].
pub trait Scanner: Default {
    /// Look at one file.
    fn visit(&mut self, entry: &Entry<'_>);
    /// The findings of everything visited.
    fn findings(self) -> Vec<Finding>;
}

/// The review of a scanning specialist: without a workspace grant, the one
/// reference finding `reference(topic)` (notes `deterministic-default`);
/// with one, a fresh `S` over a [`walk`] of it (notes: the walk's stats).
pub fn scan_or_reference<S: Scanner>(input: &SpecialistInput, reference: impl FnOnce(&str) -> Finding) -> SpecialistOutput {
    let Some(ws) = &input.workspace else {
        return SpecialistOutput {
            findings: vec![reference(&input.topic)],
            notes: "deterministic-default".into(),
        };
    };
    let mut scan = S::default();
    let stats = walk(Path::new(ws), |e| scan.visit(e));
    SpecialistOutput {
        findings: scan.findings(),
        notes: stats.describe(),
    }
}

/// Files larger than this are not read (their size is still reported).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Directories never descended into.
pub const SKIP_DIRS: &[&str] = &[".git", "target", "node_modules", ".lily", ".hg", ".svn"];

/// One file met during the walk.
pub struct Entry<'a> {
    /// Path relative to the workspace root, `/`-separated.
    pub rel: &'a str,
    pub size: u64,
    /// Read and valid UTF-8 text, when the file is small enough and not binary.
    pub text: Option<&'a str>,
    /// Contains a NUL byte in its first 8 KiB (or is not UTF-8).
    pub binary: bool,
    /// Larger than [`MAX_FILE_BYTES`]: not read.
    pub oversized: bool,
}

/// Visit every regular file under `root` in sorted order (depth first).
/// Symlinks are not followed. Unreadable entries are skipped and counted.
pub fn walk(root: &Path, mut visit: impl FnMut(&Entry<'_>)) -> WalkStats {
    let mut stats = WalkStats::default();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            stats.unreadable += 1;
            continue;
        };
        let mut entries: Vec<(String, std::fs::FileType, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.file_type().ok()?, e.path())))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subdirs = Vec::new();
        for (name, ft, path) in entries {
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            if ft.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) {
                    subdirs.push((path, rel));
                }
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            stats.files += 1;
            if size > MAX_FILE_BYTES {
                stats.skipped_large += 1;
                visit(&Entry {
                    rel: &rel,
                    size,
                    text: None,
                    binary: false,
                    oversized: true,
                });
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                stats.unreadable += 1;
                continue;
            };
            stats.bytes += bytes.len() as u64;
            let head = &bytes[..bytes.len().min(8192)];
            let text = if head.contains(&0) { None } else { std::str::from_utf8(&bytes).ok() };
            if text.is_none() {
                stats.skipped_binary += 1;
            }
            visit(&Entry {
                rel: &rel,
                size,
                text,
                binary: text.is_none(),
                oversized: false,
            });
        }
        // Reverse so the stack pops directories in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    stats
}

/// Counters of a walk, for the specialist's notes.
#[derive(Debug, Default, Clone, Copy)]
pub struct WalkStats {
    pub files: u64,
    pub bytes: u64,
    pub skipped_large: u64,
    pub skipped_binary: u64,
    pub unreadable: u64,
}

impl WalkStats {
    pub fn describe(&self) -> String {
        format!(
            "workspace-analysis: {} files, {} bytes scanned; {} over {} bytes and {} binary skipped",
            self.files, self.bytes, self.skipped_large, MAX_FILE_BYTES, self.skipped_binary
        )
    }
}
