//! The layering of `host/src`, enforced: data flows one way, and a module
//! may name (`crate::<module>`) only modules of a lower layer. A reverse
//! edge fails this test with the file and line that adds it.
//!
//! Layers, lowest first (see `docs/architecture.md`):
//!
//! 0. `error`, `util`, `text`, `paths` — rules and helpers every layer uses;
//!    `workspace` (the root's paths) uses `error` and `paths`.
//! 1. `sandbox` — the wasmtime sandbox: a leaf; grants and limits come in as
//!    plain data.
//! 2. `spec` (job specs and cron schedules), `runs` (the run store, its one
//!    writer), `runnables` (the catalogue, install, scaffold, build and the
//!    contract check).
//! 3. `policy` — grants, limits, effects, approvals.
//! 4. `blueprints` — recipes compiled to graphs.
//! 5. `jobs` (the run sequence), `init` (a new root's starter files).
//! 6. `triggers` — the cron scheduler.
//! 7. `cli` — parses and renders; compiled into the binary (`main.rs`), not
//!    the library, so it names the library as `lily::`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("util", 0),
    ("text", 0),
    ("paths", 0),
    ("config", 0),
    ("workspace", 0),
    ("sandbox", 1),
    ("llm", 2),
    ("spec", 2),
    ("runs", 2),
    ("runnables", 2),
    ("policy", 3),
    ("blueprints", 4),
    ("jobs", 5),
    ("init", 5),
    ("triggers", 6),
    ("mcp", 6),
    ("export", 6),
    ("cli", 7),
];

/// Same-layer edges that are allowed (everything else in one layer must
/// not depend on its neighbours).
const SAME_LAYER: &[(&str, &str)] = &[
    ("workspace", "error"),
    ("workspace", "paths"),
    ("workspace", "config"),
    ("config", "error"),
    ("config", "paths"),
    ("config", "util"),
];

fn layer(m: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `host/src` belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::<module>` a line names (also inside `use crate::{a, b::c}`).
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn no_module_names_a_module_of_a_higher_layer() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in &files {
        let Some(from) = module_of(&src, f) else { continue };
        if matches!(from.as_str(), "lib" | "main") {
            continue;
        }
        let from_layer = layer(&from).unwrap_or_else(|| panic!("{}: module {from:?} has no layer in this test; add it to LAYERS", f.display()));
        let text = std::fs::read_to_string(f).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for to in named_modules(code) {
                if to == from {
                    continue;
                }
                let Some(to_layer) = layer(&to) else { continue };
                *edges.entry((from.clone(), to.clone())).or_default() += 1;
                let same_ok = to_layer == from_layer && SAME_LAYER.contains(&(from.as_str(), to.as_str()));
                if to_layer > from_layer || (to_layer == from_layer && !same_ok) {
                    violations.push(format!(
                        "{}:{}: {from} (layer {from_layer}) names crate::{to} (layer {to_layer}): {}",
                        f.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "reverse or sideways edges:\n{}", violations.join("\n"));
    assert!(edges.len() > 10, "the scan found the crate's edges: {edges:?}");
}

#[test]
fn the_scanner_sees_grouped_and_nested_uses() {
    assert_eq!(named_modules("use crate::{jobs::store, policy};"), vec!["jobs", "policy"]);
    assert_eq!(named_modules("    let x = crate::sandbox::host::f(crate::util::g());"), vec!["sandbox", "util"]);
}
