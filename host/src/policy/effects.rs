//! Confinement of effect targets to the Lily root.

/// Why `path` (already checked by [`crate::paths::check_relative_file`]) is a target Lily
/// never writes for a runnable, whatever the policy says: Lily's own state
/// under `.lily/` (policy, config, jobs, runnables, cache, state, runs) —
/// except `.lily/out/`, the runnables' output area — and any `.git/`.
/// Compared case-insensitively, so a case-folding file system cannot be used
/// to reach the same files under another spelling.
pub fn protected_target(path: &str) -> Option<String> {
    let parts: Vec<String> = path.split(['/', '\\']).map(str::to_ascii_lowercase).collect();
    if parts.first().is_some_and(|p| p == ".lily") && parts.get(1).is_none_or(|p| p != "out" || parts.len() == 2) {
        return Some(format!(
            "{path:?} is Lily's own state (under .lily/, outside .lily/out/); runnables can never write it"
        ));
    }
    if parts.iter().any(|p| p == ".git") {
        return Some(format!("{path:?} is inside a .git directory; runnables can never write it"));
    }
    None
}

/// An effect target walked from the root one component at a time without
/// following any symbolic link.
pub struct Walked {
    /// The directory that holds the target, when it exists (or was created).
    pub parent: Option<cap_std::fs::Dir>,
    /// The target's file name in `parent`.
    pub name: String,
    /// Identity (`device:inode`) of the root and of each existing directory
    /// on the way, `/`-separated: what "the resolved parent" was.
    pub identity: String,
    /// Whether the target itself exists (as a regular file).
    pub exists: bool,
}

fn identity_of(md: &cap_std::fs::Metadata) -> String {
    #[cfg(unix)]
    {
        use cap_std::fs::MetadataExt;
        format!("{}:{}", md.dev(), md.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        String::from("?")
    }
}

/// Walk `rel` under `root`: every existing component must be a real
/// directory (the last one a regular file or absent) — a symbolic link
/// anywhere is refused, so a target can never be redirected, whatever its
/// glob matched. With `create`, missing directories are made on the way.
/// Each opened directory is checked to be the one that was inspected (same
/// device and inode), so a swap between the check and the open is caught.
pub(super) fn walk_target(root: &std::path::Path, rel: &str, create: bool) -> Result<Walked, String> {
    crate::paths::check_relative_file(rel).map_err(|e| e.to_string())?;
    let mut dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|e| format!("cannot open the root: {e}"))?;
    let mut identity = vec![identity_of(&dir.dir_metadata().map_err(|e| e.to_string())?)];
    let parts: Vec<&str> = rel.split(['/', '\\']).collect();
    let (name, parents) = parts.split_last().ok_or("empty effect path")?;
    let mut so_far = String::new();
    for p in parents {
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(p);
        let md = match dir.symlink_metadata(p) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                // Another writer may create it at the same moment: fine, it
                // is inspected below like any existing entry.
                match dir.create_dir(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("{so_far}: {e}")),
                }
                dir.symlink_metadata(p).map_err(|e| format!("{so_far}: {e}"))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Walked {
                    parent: None,
                    name: name.to_string(),
                    identity: identity.join("/"),
                    exists: false,
                });
            }
            Err(e) => return Err(format!("{so_far}: {e}")),
        };
        if md.file_type().is_symlink() {
            return Err(format!("{so_far} is a symbolic link; effect targets never follow links"));
        }
        if !md.is_dir() {
            return Err(format!("{so_far} is not a directory"));
        }
        let sub = dir.open_dir(p).map_err(|e| format!("{so_far}: {e}"))?;
        let opened = sub.dir_metadata().map_err(|e| format!("{so_far}: {e}"))?;
        if identity_of(&opened) != identity_of(&md) {
            return Err(format!("{so_far} changed while it was being opened"));
        }
        identity.push(identity_of(&opened));
        dir = sub;
    }
    let exists = match dir.symlink_metadata(name) {
        Ok(md) if md.file_type().is_symlink() => return Err(format!("{rel} is a symbolic link; effect targets never follow links")),
        Ok(md) if md.is_dir() => return Err(format!("{rel} is a directory")),
        Ok(md) if !md.is_file() => return Err(format!("{rel} is not a regular file")),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(format!("{rel}: {e}")),
    };
    Ok(Walked {
        parent: Some(dir),
        name: name.to_string(),
        identity: identity.join("/"),
        exists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lily_state_and_git_are_protected_except_the_output_area() {
        for p in [
            ".lily/policy.yaml",
            ".lily/config.yaml",
            ".lily/jobs/x.job.yaml",
            ".LILY/policy.yaml",
            ".lily/out",
            ".lily/runnables/a/1/component.wasm",
            "src/.git/config",
            ".git/hooks/pre-commit",
        ] {
            assert!(protected_target(p).is_some(), "{p}");
        }
        for p in [".lily/out/report.md", ".lily/out/x/y.md", "notes/release.md", "lily/policy.yaml", ".lilyx/a"] {
            assert!(protected_target(p).is_none(), "{p}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_anywhere_on_the_way_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        std::fs::create_dir_all(root.join(".lily/out/x")).expect("mkdir");
        std::fs::create_dir_all(root.join("notes")).expect("mkdir");
        std::os::unix::fs::symlink("../..", root.join(".lily/out/x/up")).expect("link");
        std::os::unix::fs::symlink("notes", root.join("alias")).expect("link");
        std::os::unix::fs::symlink("/etc/passwd", root.join("notes/passwd")).expect("link");
        for rel in [".lily/out/x/up/policy.yaml", "alias/a.md", "notes/passwd"] {
            let e = walk_target(root, rel, true).err().unwrap_or_else(|| panic!("{rel} must be refused"));
            assert!(e.contains("symbolic link"), "{rel}: {e}");
        }
        let w = walk_target(root, "notes/new/a.md", false).expect("walk");
        assert!(w.parent.is_none() && !w.exists);
        let w = walk_target(root, "notes/new/a.md", true).expect("walk");
        assert!(w.parent.is_some() && !w.exists && root.join("notes/new").is_dir());
    }
}
