//! The naming rules every layer shares, in one place: ids of jobs and
//! runnables, and root-relative paths.

/// `[a-z0-9][a-z0-9._-]{0,63}`: job and runnable ids (no path can escape).
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

/// Why a path is not a root-relative path Lily accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{0:?} is absolute; paths are relative to the root")]
    Absolute(String),
    #[error("{0:?} contains '..'; paths must stay inside the root")]
    ParentDir(String),
    #[error("{0:?} contains NUL")]
    Nul(String),
    /// An effect target that is empty or longer than 1024 bytes.
    #[error("effect path must be 1-1024 bytes")]
    FileLength,
    #[error("effect path {0:?} has an empty or '.' component")]
    EmptyComponent(String),
    /// [`check_relative`]'s reason, for an effect target.
    #[error("effect path {0}")]
    File(Box<PathError>),
}

/// Why `p` is not a root-relative path that stays inside the root
/// lexically: absolute (`/…`, `\…`, a drive or scheme with `:`), or a `..`
/// component. An empty path or `.` is the root itself.
pub fn check_relative(p: &str) -> Result<(), PathError> {
    if p.starts_with('/') || p.starts_with('\\') || std::path::Path::new(p).is_absolute() || p.contains(':') {
        return Err(PathError::Absolute(p.into()));
    }
    if p.split(['/', '\\']).any(|c| c == "..") {
        return Err(PathError::ParentDir(p.into()));
    }
    if p.contains('\0') {
        return Err(PathError::Nul(p.into()));
    }
    Ok(())
}

/// [`check_relative`] for a file a runnable names (an effect target):
/// 1–1024 bytes, and no empty, `.` or NUL component either.
pub fn check_relative_file(p: &str) -> Result<(), PathError> {
    if p.is_empty() || p.len() > 1024 {
        return Err(PathError::FileLength);
    }
    check_relative(p).map_err(|e| PathError::File(Box::new(e)))?;
    if p.split(['/', '\\']).any(|c| c.is_empty() || c == ".") {
        return Err(PathError::EmptyComponent(p.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("a.b-c_1") && valid_id("0") && !valid_id("") && !valid_id("A") && !valid_id("../x") && !valid_id(&"a".repeat(65)));
    }

    #[test]
    fn relative_paths() {
        for ok in ["", ".", "ws", "a/b", ".lily/out/x"] {
            assert!(check_relative(ok).is_ok(), "{ok}");
        }
        for bad in ["/etc", "\\x", "C:/x", "a/../..", "..", "a\\..\\b", "a\0b"] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        assert!(check_relative_file("notes/a.md").is_ok());
        for bad in ["", "a//b", "./a", "a/./b", "../x", "/x", "a/"] {
            assert!(check_relative_file(bad).is_err(), "{bad:?}");
        }
    }
}
