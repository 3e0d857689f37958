//! A new Lily root: the starter policy, the example job and the example
//! workspace (`lily init`, `lily demo`), never overwriting a file.
//!
//! The JSON Schemas of specs, policy, config and receipts go to
//! `.lily/schemas/`, and every YAML file `lily init` writes starts with a
//! `# yaml-language-server: $schema=<relative path>` line pointing at its
//! schema, so an editor with the YAML language server validates it.

use crate::policy::STARTER_POLICY;
use crate::schemas::SchemaKind;
use std::path::{Path, PathBuf};

/// Where `lily init` writes the schemas, relative to the root.
pub const SCHEMAS_DIR: &str = ".lily/schemas";

/// Files `lily init` writes, relative to the root (never overwritten).
pub const INIT_FILES: &[(&str, &str)] = &[
    (".lily/policy.yaml", STARTER_POLICY),
    (".lily/.gitignore", include_str!("../assets/example/gitignore")),
    (".lily/config.yaml", include_str!("../assets/example/config.yaml")),
    (".lily/jobs/demo.job.yaml", include_str!("../assets/example/demo.job.yaml")),
    (".lily/jobs/review.job.yaml", include_str!("../assets/example/review.job.yaml")),
    (".lily/examples/workspace/README.md", include_str!("../assets/example/workspace/README.md")),
    (
        ".lily/examples/workspace/config/settings.py",
        include_str!("../assets/example/workspace/config/settings.py"),
    ),
    (
        ".lily/examples/workspace/deploy/aws.cfg",
        include_str!("../assets/example/workspace/deploy/aws.cfg"),
    ),
    (".lily/examples/workspace/src/app.py", include_str!("../assets/example/workspace/src/app.py")),
    (
        ".lily/examples/workspace/docs/architecture.md",
        include_str!("../assets/example/workspace/docs/architecture.md"),
    ),
    (".lily/examples/workspace/.env", include_str!("../assets/example/workspace/.env")),
];

const DIRS: &[&str] = &[".lily/jobs", ".lily/runs", ".lily/state", ".lily/cache", ".lily/runnables"];

/// Create `.lily/` under `dir`; returns the files created (existing ones are kept).
pub fn init_at(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for d in DIRS {
        crate::util::ensure_dir(&dir.join(d))?;
    }
    let schemas: Vec<(String, String)> = SchemaKind::ALL.iter().map(|k| (format!("{SCHEMAS_DIR}/{}", k.file_name()), k.text())).collect();
    let files = INIT_FILES
        .iter()
        .map(|(rel, text)| (rel.to_string(), with_schema_line(rel, text)))
        .chain(schemas);
    for (rel, text) in files {
        let p = dir.join(&rel);
        if p.exists() {
            continue;
        }
        if let Some(parent) = p.parent() {
            crate::util::ensure_dir(parent)?;
        }
        crate::util::atomic_write(&p, text.as_bytes())?;
        created.push(p);
    }
    Ok(created)
}

/// The schema of a file `lily init` writes (by its root-relative path).
pub fn schema_of(rel: &str) -> Option<SchemaKind> {
    match rel {
        ".lily/policy.yaml" => Some(SchemaKind::Policy),
        ".lily/config.yaml" => Some(SchemaKind::Config),
        r if r.starts_with(".lily/jobs/") && r.ends_with(".job.yaml") => Some(SchemaKind::Job),
        _ => None,
    }
}

/// The path of `rel`'s schema relative to `rel`'s directory, as the
/// `$schema=` comment gives it (`../schemas/job.schema.json` for a spec in
/// `.lily/jobs/`).
pub fn schema_ref(rel: &str, kind: SchemaKind) -> String {
    // Both paths are root-relative and start with `.lily/`: climb out of
    // the file's directory to `.lily/`, then down into `schemas/`.
    let depth = rel.split('/').count().saturating_sub(2);
    let up = "../".repeat(depth);
    format!("{up}schemas/{}", kind.file_name())
}

/// `text` with the `# yaml-language-server: $schema=…` line first when it
/// has a schema.
fn with_schema_line(rel: &str, text: &str) -> String {
    match schema_of(rel) {
        Some(kind) => format!("# yaml-language-server: $schema={}\n{text}", schema_ref(rel, kind)),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_comment_points_at_the_schema_from_the_files_directory() {
        assert_eq!(schema_ref(".lily/policy.yaml", SchemaKind::Policy), "schemas/policy.schema.json");
        assert_eq!(schema_ref(".lily/config.yaml", SchemaKind::Config), "schemas/config.schema.json");
        assert_eq!(schema_ref(".lily/jobs/demo.job.yaml", SchemaKind::Job), "../schemas/job.schema.json");
        let dir = tempfile::tempdir().expect("tempdir");
        init_at(dir.path()).expect("init");
        let mut seen = 0;
        for (rel, _) in INIT_FILES {
            let Some(kind) = schema_of(rel) else { continue };
            seen += 1;
            let p = dir.path().join(rel);
            let text = std::fs::read_to_string(&p).expect("read");
            let first = text.lines().next().unwrap_or("");
            let target = first
                .strip_prefix("# yaml-language-server: $schema=")
                .unwrap_or_else(|| panic!("{rel}: first line is {first:?}"));
            let schema = p.parent().expect("parent").join(target);
            let written = std::fs::read_to_string(&schema).unwrap_or_else(|e| panic!("{rel}: {} ({e})", schema.display()));
            assert_eq!(written, kind.text(), "{rel}");
        }
        assert_eq!(seen, 4, "policy, config and the two example jobs");
    }
}
