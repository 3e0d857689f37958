//! The Lily root: the nearest ancestor of the working directory that holds
//! `.lily/` (or `--root` / `LILY_ROOT`), and the paths inside it.

use crate::error::{ErrorCode, LilyError};
use std::path::{Path, PathBuf};

/// Paths of one Lily root.
#[derive(Debug, Clone)]
pub struct Root {
    /// The directory that contains `.lily/` (canonical).
    pub path: PathBuf,
    /// Where job specs are discovered.
    pub jobs_dir: PathBuf,
    /// `.lily/config.yaml`, checked when the root was opened.
    pub config: std::sync::Arc<crate::config::Config>,
    /// Read and write runs here instead of `.lily/runs/` (the local mirror
    /// of a run store, see `runs::store`).
    pub runs_dir_override: Option<PathBuf>,
}

impl Root {
    /// Find the root: explicit path, else the nearest ancestor of `cwd` with
    /// `.lily/`. `jobs_dir` overrides discovery (flag or `LILY_JOBS_DIR`).
    pub fn discover(explicit: Option<&Path>, cwd: &Path, jobs_dir: Option<&Path>) -> Result<Root, LilyError> {
        let path = match explicit {
            Some(p) => {
                let p = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
                if !p.join(".lily").is_dir() {
                    return Err(
                        LilyError::new(ErrorCode::JobNotFound, format!("{} has no .lily/ directory", p.display())).with_hint("run `lily init` there first")
                    );
                }
                p
            }
            None => cwd.ancestors().find(|a| a.join(".lily").is_dir()).map(Path::to_path_buf).ok_or_else(|| {
                LilyError::new(ErrorCode::JobNotFound, format!("no .lily/ directory in {} or any parent", cwd.display()))
                    .with_hint("run `lily init` to create one, or pass --root")
            })?,
        };
        let path = path.canonicalize().unwrap_or(path);
        let root = Root::at(path, jobs_dir)?;
        // A jobs directory named on the command line (or LILY_JOBS_DIR) must
        // exist: a typo would otherwise list "no job specs" and succeed.
        if let Some(d) = jobs_dir
            && !root.jobs_dir.is_dir()
        {
            return Err(LilyError::new(
                ErrorCode::JobNotFound,
                format!("the jobs directory {} (--jobs-dir {}) does not exist", root.jobs_dir.display(), d.display()),
            )
            .with_hint(format!(
                "check the path, or leave --jobs-dir (and LILY_JOBS_DIR) unset to use {}",
                root.config
                    .jobs_path
                    .as_ref()
                    .map(|p| root.path.join(p))
                    .unwrap_or_else(|| root.lily_dir().join("jobs"))
                    .display()
            )));
        }
        Ok(root)
    }

    /// A root at a known path (tests, `lily init`).
    pub fn at(path: PathBuf, jobs_dir: Option<&Path>) -> Result<Root, LilyError> {
        let config = crate::config::Config::load(&path)?;
        let jobs_dir = match jobs_dir {
            Some(d) => {
                if d.is_absolute() {
                    d.to_path_buf()
                } else {
                    std::env::current_dir().map(|c| c.join(d)).unwrap_or_else(|_| d.to_path_buf())
                }
            }
            None => match &config.jobs_path {
                Some(p) => path.join(p),
                None => path.join(".lily").join("jobs"),
            },
        };
        Ok(Root {
            path,
            jobs_dir,
            config: std::sync::Arc::new(config),
            runs_dir_override: None,
        })
    }

    pub fn lily_dir(&self) -> PathBuf {
        self.path.join(".lily")
    }
    pub fn runs_dir(&self) -> PathBuf {
        if let Some(p) = &self.runs_dir_override {
            return p.clone();
        }
        self.lily_dir().join("runs")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.lily_dir().join("state")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.lily_dir().join("cache")
    }
    pub fn runnables_dir(&self) -> PathBuf {
        self.lily_dir().join("runnables")
    }
    pub fn policy_path(&self) -> PathBuf {
        self.lily_dir().join("policy.yaml")
    }

    /// Resolve a path relative to the root and check that it stays inside it
    /// (after following symlinks). Returns the canonical path.
    pub fn confine(&self, rel: &str) -> Result<PathBuf, ConfineError> {
        crate::paths::check_relative(rel).map_err(|cause| ConfineError::Path {
            cause,
            root: self.path.clone(),
        })?;
        let full = self.path.join(rel);
        let canon = full.canonicalize().map_err(|source| ConfineError::Resolve { path: full.clone(), source })?;
        if !canon.starts_with(&self.path) {
            return Err(ConfineError::Outside {
                rel: rel.into(),
                resolved: canon,
            });
        }
        Ok(canon)
    }
}

/// Why [`Root::confine`] refused a path.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Lexically outside (absolute, `..`) the root shown.
    #[error("{cause} {}", root.display())]
    Path { cause: crate::paths::PathError, root: PathBuf },
    /// It does not exist or cannot be resolved.
    #[error("{}: {source}", path.display())]
    Resolve { path: PathBuf, source: std::io::Error },
    /// It resolves (through a symlink) outside the root.
    #[error("{rel:?} resolves to {} outside the root", resolved.display())]
    Outside { rel: String, resolved: PathBuf },
}
