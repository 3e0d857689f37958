//! `lily init` and `lily demo`.

use super::jobs::internal;
use super::{Global, render};
use lily::error::{ErrorCode, LilyError};
use lily::init::init_at;
use lily::jobs::{Lily, RunOptions};
use lily::workspace::Root;
use std::path::PathBuf;

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
