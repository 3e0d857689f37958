//! Confinement of effect targets to the Lily root.

/// Check that an effect target is a plain relative path that cannot leave
/// the root lexically: no absolute path, no `..`, no empty or odd parts.
/// (Symlinks are checked again at apply time, with cap-std.)
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 1024 {
        return Err("effect path must be 1-1024 bytes".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') {
        return Err(format!("effect path {path:?} is absolute; targets must be relative to the Lily root"));
    }
    for part in path.split(['/', '\\']) {
        if part == ".." {
            return Err(format!("effect path {path:?} contains '..'; targets must stay inside the Lily root"));
        }
        if part.is_empty() || part == "." || part.contains('\0') {
            return Err(format!("effect path {path:?} has an empty, '.' or NUL component"));
        }
    }
    Ok(())
}
