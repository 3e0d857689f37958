//! A new Lily root: the starter policy, the example job and the example
//! workspace (`lily init`, `lily demo`), never overwriting a file.

use crate::policy::STARTER_POLICY;
use std::path::{Path, PathBuf};

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
    for (rel, text) in INIT_FILES {
        let p = dir.join(rel);
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
