//! `lily init` and `lily demo`.

use super::jobs::internal;
use super::{Global, render};
use crate::error::{ErrorCode, LilyError};
use crate::jobs::{Lily, RunOptions};
use crate::policy::STARTER_POLICY;
use crate::workspace::Root;
use std::path::{Path, PathBuf};

/// Files `lily init` writes, relative to the root (never overwritten).
pub const INIT_FILES: &[(&str, &str)] = &[
    (".lily/policy.yaml", STARTER_POLICY),
    (".lily/jobs/demo.job.yaml", include_str!("../../assets/example/demo.job.yaml")),
    (".lily/examples/workspace/README.md", include_str!("../../assets/example/workspace/README.md")),
    (
        ".lily/examples/workspace/config/settings.py",
        include_str!("../../assets/example/workspace/config/settings.py"),
    ),
    (
        ".lily/examples/workspace/deploy/aws.cfg",
        include_str!("../../assets/example/workspace/deploy/aws.cfg"),
    ),
    (".lily/examples/workspace/src/app.py", include_str!("../../assets/example/workspace/src/app.py")),
    (
        ".lily/examples/workspace/docs/architecture.md",
        include_str!("../../assets/example/workspace/docs/architecture.md"),
    ),
    (".lily/examples/workspace/.env", include_str!("../../assets/example/workspace/.env")),
];

const DIRS: &[&str] = &[".lily/jobs", ".lily/runs", ".lily/state", ".lily/cache", ".lily/runnables"];

/// Create `.lily/` under `dir`; returns the files created (existing ones are kept).
pub fn init_at(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for d in DIRS {
        std::fs::create_dir_all(dir.join(d))?;
    }
    for (rel, text) in INIT_FILES {
        let p = dir.join(rel);
        if p.exists() {
            continue;
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::util::atomic_write(&p, text.as_bytes())?;
        created.push(p);
    }
    Ok(created)
}

fn target_dir(g: &Global) -> Result<PathBuf, LilyError> {
    match &g.root {
        Some(r) => Ok(r.clone()),
        None => std::env::current_dir().map_err(|e| LilyError::new(ErrorCode::JobNotFound, format!("cannot read the working directory: {e}"))),
    }
}

pub fn init(g: &Global) -> Result<i32, LilyError> {
    let dir = target_dir(g)?;
    let created = init_at(&dir).map_err(|e| LilyError::new(ErrorCode::JobInvalidSpec, format!("cannot initialise {}: {e}", dir.display())))?;
    if g.json {
        render::json(&serde_json::json!({"root": dir, "created": created}));
    } else if created.is_empty() {
        outln!("{} is already initialised (nothing overwritten)", dir.join(".lily").display());
    } else {
        outln!("initialised {}", dir.join(".lily").display());
        for c in &created {
            outln!("  created {}", c.strip_prefix(&dir).unwrap_or(c).display());
        }
        outln!("\nnext: `lily jobs list`, then `lily jobs run demo`");
    }
    Ok(0)
}

pub async fn demo(g: &Global) -> Result<i32, LilyError> {
    let dir = target_dir(g)?;
    init_at(&dir).map_err(|e| LilyError::new(ErrorCode::JobInvalidSpec, format!("cannot initialise {}: {e}", dir.display())))?;
    let root = Root::at(dir.canonicalize().unwrap_or(dir), g.jobs_dir.as_deref())?;
    let lily = Lily::open(root).map_err(internal)?;
    let res = lily.run_job("demo", RunOptions::default()).await?;
    if g.json {
        render::json(&serde_json::json!({"run_dir": res.run_dir, "receipt": res.receipt}));
    } else {
        out!("{}", res.summary);
        outln!("\nrun directory: {}", res.run_dir.display());
        outln!("report:        {}", res.run_dir.join("report.md").display());
    }
    Ok(super::jobs::status_exit(&res.receipt))
}
