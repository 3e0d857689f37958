//! `lily policy allow`: merge grants into `.lily/policy.yaml` in place.
//!
//! The YAML library does not keep comments, so the file is edited as text
//! for the common block layouts (a `runnables:` map at column 0, entries
//! `"id":` one level in, `fs:`/`env:`/`network:`/`http:` lists in block or
//! one-line flow style): only lines are inserted (or a one-line flow list is
//! extended), so every comment and every other line stays as it was. The
//! edited text must parse, with the real policy parser, to exactly the
//! policy plus the new grants; when it does not (another layout, e.g. an
//! entry written as a one-line `{…}` map), the file is re-serialised from
//! the parsed policy instead and [`AllowOutcome::comments_dropped`] says so.

use super::{FsGrant, Policy, RunnableGrants, mode_str, normalize};
use crate::error::{ErrorCode, LilyError};
use crate::sandbox::Perms;
use crate::workspace::Root;
use serde::Serialize;

/// The grants to add to one runnable's entry.
#[derive(Debug, Clone, Default)]
pub struct AllowRequest {
    /// A runnable id or glob, as the `runnables:` key.
    pub runnable: String,
    pub fs: Vec<(String, Perms)>,
    pub env: Vec<String>,
    pub network: Vec<String>,
    pub http: Vec<String>,
}

/// What `allow` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct AllowOutcome {
    pub path: String,
    pub runnable: String,
    /// Grants added, e.g. `fs data (ro)`, `env TOKEN`.
    pub added: Vec<String>,
    /// Grants asked that the policy already gives: (grant, the rule giving it).
    pub already: Vec<(String, String)>,
    /// The file was re-serialised from the parsed policy: its comments and
    /// layout are gone.
    pub comments_dropped: bool,
    /// The file was written (false on a dry run or when nothing changed).
    pub written: bool,
    #[serde(skip)]
    pub old_text: String,
    #[serde(skip)]
    pub new_text: String,
}

fn policy_edit_error(msg: impl Into<String>) -> LilyError {
    LilyError::new(ErrorCode::JobPolicyDenied, msg.into())
}

/// Merge `req` into the root's policy file (created when missing), after
/// validating the result; writes atomically unless `dry_run`.
pub fn allow(root: &Root, req: &AllowRequest, dry_run: bool) -> Result<AllowOutcome, LilyError> {
    let path = root.policy_path();
    let old_text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "version: 1\n".to_string(),
        Err(e) => return Err(policy_edit_error(format!("{}: {e}", path.display()))),
    };
    let current = Policy::parse(&path, &old_text, Some(root))?;
    if req.runnable.is_empty() {
        return Err(policy_edit_error("the runnable id is empty"));
    }
    let mut add = RunnableGrants::default();
    let mut added = Vec::new();
    let mut already = Vec::new();
    for (p, m) in &req.fs {
        let p = normalize(p);
        let what = format!("fs {p} ({})", mode_str(*m));
        if let Some(by) = current.allows_dir(&req.runnable, &p, *m) {
            already.push((what, by));
        } else if !add.fs.iter().any(|f| f.path == p && f.mode == *m) {
            add.fs.push(FsGrant { path: p, mode: *m });
            added.push(what);
        }
    }
    let entries = current.entries_for(&req.runnable);
    let given = |list: fn(&RunnableGrants) -> &Vec<String>, v: &str| {
        entries
            .iter()
            .find(|(_, g)| list(g).iter().any(|x| x == v))
            .map(|(p, _)| format!("runnables.{p:?}"))
    };
    for (kind, asked, list, out) in [
        (
            "env",
            &req.env,
            (|g: &RunnableGrants| &g.env) as fn(&RunnableGrants) -> &Vec<String>,
            &mut add.env,
        ),
        ("network", &req.network, |g: &RunnableGrants| &g.network, &mut add.network),
        ("http", &req.http, |g: &RunnableGrants| &g.http, &mut add.http),
    ] {
        for v in asked {
            let what = format!("{kind} {v}");
            if let Some(by) = given(list, v) {
                already.push((what, format!("{by}.{kind}")));
            } else if !out.contains(v) {
                out.push(v.clone());
                added.push(what);
            }
        }
    }
    let mut outcome = AllowOutcome {
        path: path.display().to_string(),
        runnable: req.runnable.clone(),
        added,
        already,
        comments_dropped: false,
        written: false,
        new_text: old_text.clone(),
        old_text,
    };
    if outcome.added.is_empty() {
        return Ok(outcome);
    }
    let mut expected = current.file.clone();
    {
        let e = expected.runnables.entry(req.runnable.clone()).or_default();
        e.fs.extend(add.fs.iter().cloned());
        e.env.extend(add.env.iter().cloned());
        e.network.extend(add.network.iter().cloned());
        e.http.extend(add.http.iter().cloned());
    }
    // Validate the merged policy with the real parser (paths, host:port, URLs).
    let reserialised = serde_norway::to_string(&expected).map_err(|e| policy_edit_error(format!("cannot write the policy: {e}")))?;
    Policy::parse(&path, &reserialised, Some(root)).map_err(|e| {
        let mut e = e;
        e.message = format!(
            "not allowed for {}: {}",
            req.runnable,
            e.message.replacen("invalid policy: ", "the grant would make the policy invalid: ", 1)
        );
        e.hint = Some(format!(
            "nothing was written; fix the value (docs/security.md#keys lists every key and its rule), then run `lily policy allow {} …` again",
            req.runnable
        ));
        e
    })?;
    let want = serde_json::to_value(&expected).ok();
    let textual = edit_text(&outcome.old_text, &req.runnable, &add)
        .filter(|t| Policy::parse(&path, t, Some(root)).is_ok_and(|p| serde_json::to_value(&p.file).ok() == want));
    match textual {
        Some(t) => outcome.new_text = t,
        None => {
            outcome.new_text = format!("# Rewritten by `lily policy allow` from the parsed policy (its comments could not be kept).\n{reserialised}");
            outcome.comments_dropped = true;
        }
    }
    if !dry_run {
        crate::util::atomic_write(&path, outcome.new_text.as_bytes()).map_err(|e| policy_edit_error(format!("cannot write {}: {e}", path.display())))?;
        outcome.written = true;
    }
    Ok(outcome)
}

/// A YAML scalar for `s`: plain when that is unambiguous, else a
/// double-quoted (JSON) string.
pub fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !s.starts_with('-')
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~")
        && s.parse::<f64>().is_err();
    if plain { s.to_string() } else { serde_json::to_string(s).unwrap_or_default() }
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// Blank, or a comment line.
fn is_filler(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#')
}

/// `key: rest` at the start of `t` (already unindented): the key (quotes
/// removed) and what follows the colon, trimmed.
fn split_key(t: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(q) = t.strip_prefix('"') {
        let end = q.find('"')?;
        if q[..end].contains('\\') {
            return None;
        }
        (q[..end].to_string(), &q[end + 1..])
    } else if let Some(q) = t.strip_prefix('\'') {
        let end = q.find('\'')?;
        (q[..end].to_string(), &q[end + 1..])
    } else {
        let end = t.find(':')?;
        (t[..end].trim_end().to_string(), &t[end..])
    };
    let rest = rest.trim_start().strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((key, rest.trim()))
}

/// Empty, or only a comment.
fn opens_block(rest: &str) -> bool {
    rest.is_empty() || rest.starts_with('#')
}

/// The last content line (not blank, not a comment) of the block that
/// starts after `start` and ends before the first content line indented
/// `<= indent`; `start` when the block is empty.
fn block_end(lines: &[String], start: usize, indent: usize) -> usize {
    let mut last = start;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if is_filler(l) {
            continue;
        }
        if indent_of(l) <= indent {
            break;
        }
        last = i;
    }
    last
}

/// The first content line after `start` inside its block (indented more
/// than `indent`).
fn first_child(lines: &[String], start: usize, indent: usize) -> Option<usize> {
    lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| !is_filler(l))
        .filter(|(_, l)| indent_of(l) > indent)
        .map(|(i, _)| i)
}

/// A child `key:` line at exactly `indent` within the block of `start`.
fn find_key(lines: &[String], start: usize, indent: usize, parent: usize, key: &str) -> Option<usize> {
    let end = block_end(lines, start, parent);
    (start + 1..=end).find(|&i| {
        let l = &lines[i];
        !is_filler(l) && indent_of(l) == indent && split_key(l.trim_start()).is_some_and(|(k, _)| k == key)
    })
}

fn list_items(kind: &str, add: &RunnableGrants) -> Vec<String> {
    match kind {
        "fs" => add
            .fs
            .iter()
            .map(|f| format!("{{path: {}, mode: {}}}", yaml_scalar(&f.path), mode_str(f.mode)))
            .collect(),
        "env" => add.env.iter().map(|v| yaml_scalar(v)).collect(),
        "network" => add.network.iter().map(|v| serde_json::to_string(v).unwrap_or_default()).collect(),
        _ => add.http.iter().map(|v| serde_json::to_string(v).unwrap_or_default()).collect(),
    }
}

/// Block-style lines of one list under `key` (items at `indent + 2`).
fn block_list(kind: &str, add: &RunnableGrants, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let mut out = vec![format!("{pad}{kind}:")];
    out.extend(block_items(kind, add, indent + 2));
    out
}

/// Block-style items of one list, the dash at `indent`.
fn block_items(kind: &str, add: &RunnableGrants, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    if kind == "fs" {
        add.fs
            .iter()
            .flat_map(|f| [format!("{pad}- path: {}", yaml_scalar(&f.path)), format!("{pad}  mode: {}", mode_str(f.mode))])
            .collect()
    } else {
        list_items(kind, add).into_iter().map(|v| format!("{pad}- {v}")).collect()
    }
}

fn kinds(add: &RunnableGrants) -> Vec<&'static str> {
    [
        ("fs", !add.fs.is_empty()),
        ("env", !add.env.is_empty()),
        ("network", !add.network.is_empty()),
        ("http", !add.http.is_empty()),
    ]
    .into_iter()
    .filter_map(|(k, some)| some.then_some(k))
    .collect()
}

/// The text edit; `None` when the layout is not one it handles.
fn edit_text(text: &str, runnable: &str, add: &RunnableGrants) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.iter().any(|l| l.contains('\t') || l.trim() == "---" || l.trim() == "...") {
        return None;
    }
    let key_line = format!("\"{runnable}\":");
    let top = lines
        .iter()
        .position(|l| indent_of(l) == 0 && split_key(l).is_some_and(|(k, _)| k == "runnables"));
    let Some(top) = top else {
        // No `runnables:` map: append one.
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        lines.push("runnables:".into());
        lines.push(format!("  {key_line}"));
        for k in kinds(add) {
            lines.extend(block_list(k, add, 4));
        }
        return Some(lines.join("\n") + "\n");
    };
    if !opens_block(split_key(&lines[top])?.1) {
        return None;
    }
    let child = first_child(&lines, top, 0).map(|i| indent_of(&lines[i])).unwrap_or(2);
    let entry = find_key(&lines, top, child, 0, runnable);
    let Some(entry) = entry else {
        // A new entry at the end of the map.
        let at = block_end(&lines, top, 0);
        let mut new = vec![format!("{}{key_line}", " ".repeat(child))];
        for k in kinds(add) {
            new.extend(block_list(k, add, child + 2));
        }
        lines.splice(at + 1..at + 1, new);
        return Some(lines.join("\n") + "\n");
    };
    if !opens_block(split_key(lines[entry].trim_start())?.1) {
        return None;
    }
    let grand = first_child(&lines, entry, child).map(|i| indent_of(&lines[i])).unwrap_or(child + 2);
    for k in kinds(add) {
        match find_key(&lines, entry, grand, child, k) {
            None => {
                let at = block_end(&lines, entry, child);
                lines.splice(at + 1..at + 1, block_list(k, add, grand));
            }
            Some(i) => {
                let rest = split_key(lines[i].trim_start())?.1.to_string();
                if opens_block(&rest) {
                    // Block list: items at the indent of its first item
                    // (which may equal the key's).
                    let first = lines.iter().enumerate().skip(i + 1).find(|(_, l)| !is_filler(l)).map(|(j, l)| (j, l.clone()));
                    let dash = match first {
                        Some((_, l)) if l.trim_start().starts_with("- ") && indent_of(&l) >= grand => indent_of(&l),
                        _ => return None,
                    };
                    let mut at = i;
                    for (j, l) in lines.iter().enumerate().skip(i + 1) {
                        if is_filler(l) {
                            continue;
                        }
                        let d = indent_of(l);
                        if d < dash || (d == dash && !l.trim_start().starts_with("- ")) {
                            break;
                        }
                        at = j;
                    }
                    lines.splice(at + 1..at + 1, block_items(k, add, dash));
                } else if rest.starts_with('[') && rest.ends_with(']') && !rest.contains('#') {
                    let inner = rest[1..rest.len() - 1].trim();
                    if inner.contains('[') || inner.contains(']') {
                        return None;
                    }
                    let items = list_items(k, add).join(", ");
                    let list = if inner.is_empty() {
                        format!("[{items}]")
                    } else {
                        format!("[{inner}, {items}]")
                    };
                    lines[i] = format!("{}{k}: {list}", " ".repeat(grand));
                } else {
                    return None;
                }
            }
        }
    }
    Some(lines.join("\n") + "\n")
}

/// A line diff of two texts (`-`/`+`/` ` prefixed), for `--dry-run`.
pub fn line_diff(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() * b.len() > 4_000_000 {
        return b.iter().map(|l| format!("+{l}")).collect();
    }
    // Longest common subsequence, then walk it.
    let mut t = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            t[i][j] = if a[i] == b[j] { t[i + 1][j + 1] + 1 } else { t[i + 1][j].max(t[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || t[i][j + 1] >= t[i + 1][j]) {
            out.push(format!("+{}", b[j]));
            j += 1;
        } else {
            out.push(format!("-{}", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(fs: &[(&str, Perms)], env: &[&str]) -> RunnableGrants {
        RunnableGrants {
            fs: fs.iter().map(|(p, m)| FsGrant { path: p.to_string(), mode: *m }).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..RunnableGrants::default()
        }
    }

    #[test]
    fn merges_into_an_existing_entry_keeping_comments() {
        let text = "version: 1\n# top\nrunnables:\n  # first\n  \"a.v1\":\n    fs:\n      - path: x\n        mode: ro\n    env: [A]  \n  \"b.v1\":\n    env: [B]\n# effects next\neffects: {}\n";
        let t = edit_text(text, "a.v1", &grants(&[("data", Perms::ReadWrite)], &["C"])).expect("edited");
        assert_eq!(
            t,
            "version: 1\n# top\nrunnables:\n  # first\n  \"a.v1\":\n    fs:\n      - path: x\n        mode: ro\n      - path: data\n        mode: rw\n    env: [A, C]\n  \"b.v1\":\n    env: [B]\n# effects next\neffects: {}\n"
        );
    }

    #[test]
    fn adds_an_entry_or_the_map() {
        let text = "version: 1\nrunnables:\n  a:\n    env: [A]\n\n# trailing\n";
        let t = edit_text(text, "b.v1", &grants(&[], &["B"])).expect("edited");
        assert_eq!(
            t,
            "version: 1\nrunnables:\n  a:\n    env: [A]\n  \"b.v1\":\n    env:\n      - B\n\n# trailing\n"
        );
        let t = edit_text("version: 1 # v\n", "b.v1", &grants(&[("d", Perms::ReadOnly)], &[])).expect("edited");
        assert_eq!(t, "version: 1 # v\nrunnables:\n  \"b.v1\":\n    fs:\n      - path: d\n        mode: ro\n");
    }

    #[test]
    fn an_unhandled_layout_is_left_to_the_fallback() {
        assert!(edit_text("version: 1\nrunnables: {a: {env: [A]}}\n", "a", &grants(&[], &["B"])).is_none());
        assert!(edit_text("version: 1\nrunnables:\n  a: {env: [A]}\n", "a", &grants(&[], &["B"])).is_none());
    }

    #[test]
    fn diff_shows_inserted_lines() {
        assert_eq!(line_diff("a\nb\n", "a\nx\nb\n"), vec![" a", "+x", " b"]);
    }
}
