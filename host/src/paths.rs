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

/// Why `p` is not a root-relative path that stays inside the root
/// lexically: absolute (`/…`, `\…`, a drive or scheme with `:`), or a `..`
/// component. An empty path or `.` is the root itself.
pub fn check_relative(p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.starts_with('\\') || std::path::Path::new(p).is_absolute() || p.contains(':') {
        return Err(format!("{p:?} is absolute; paths are relative to the root"));
    }
    if p.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!("{p:?} contains '..'; paths must stay inside the root"));
    }
    if p.contains('\0') {
        return Err(format!("{p:?} contains NUL"));
    }
    Ok(())
}

/// [`check_relative`] for a file a runnable names (an effect target):
/// 1–1024 bytes, and no empty, `.` or NUL component either.
pub fn check_relative_file(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 1024 {
        return Err("effect path must be 1-1024 bytes".into());
    }
    check_relative(p).map_err(|e| format!("effect path {e}"))?;
    if p.split(['/', '\\']).any(|c| c.is_empty() || c == ".") {
        return Err(format!("effect path {p:?} has an empty or '.' component"));
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
