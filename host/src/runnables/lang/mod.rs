//! The languages a runnable can be written in. Rust is the original route
//! (`scaffold.rs`, `build.rs`); every other language has one file here with
//! the same two entry points:
//!
//! - `scaffold_files(name, kind)` — the files `lily runnables new --lang L`
//!   writes (the SDK and the Run Contract WIT vendored, a native unit test);
//! - `compile(opts, dir)` — drive the language's component toolchain
//!   (blocking) and name the component it produced. A missing toolchain is a
//!   [`tool_error`] whose hint is the exact command that installs it.
//!
//! `lily runnables build` finds the language with [`Lang::detect`] and then
//! runs the same contract check for every language.

use super::scaffold::{ScaffoldError, ScaffoldKind, tool_error};
use super::{BuildOptions, BuildTool};
use crate::error::LilyError;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub(super) mod js;
pub(super) mod python;

/// The language of a runnable's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    /// A Rust crate (`Cargo.toml`), built with cargo or cargo-component
    #[default]
    Rust,
    /// A Python project (`pyproject.toml` or `app.py`), built with componentize-py
    Python,
    /// A JavaScript project (`package.json`), built with jco componentize
    Js,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The build tool `lily runnables build` uses for this language when
    /// `--with` is not given.
    pub fn default_tool(self) -> BuildTool {
        match self {
            Lang::Rust => BuildTool::Cargo,
            Lang::Python => BuildTool::ComponentizePy,
            Lang::Js => BuildTool::Jco,
        }
    }

    /// The language of the project in `dir`, by its manifest: `Cargo.toml`
    /// → Rust, `pyproject.toml` or `app.py` → Python, `package.json` → JS.
    pub fn detect(dir: &Path) -> Option<Lang> {
        if dir.join("Cargo.toml").is_file() {
            Some(Lang::Rust)
        } else if dir.join("pyproject.toml").is_file() || dir.join("app.py").is_file() {
            Some(Lang::Python)
        } else if dir.join("package.json").is_file() {
            Some(Lang::Js)
        } else {
            None
        }
    }
}

/// A component a language's toolchain produced.
#[derive(Debug, Clone)]
pub(super) struct Built {
    /// The project's name (crate, pyproject or package name).
    pub name: String,
    /// The project directory, canonical.
    pub dir: PathBuf,
    /// The component file.
    pub wasm: PathBuf,
    /// The build command as a user would type it.
    pub command: String,
    /// The target the component was built for.
    pub target: String,
}

/// The files of a new project in `lang` (Rust: see [`super::scaffold_files`]).
pub(super) fn scaffold_files(lang: Lang, name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    match lang {
        Lang::Rust => super::scaffold::rust_scaffold_files(name, kind),
        Lang::Python => python::scaffold_files(name, kind),
        Lang::Js => js::scaffold_files(name, kind),
    }
}

/// Build the project at `dir` (canonical) in `lang` with `tool` (blocking).
pub(super) fn compile(lang: Lang, tool: BuildTool, opts: &BuildOptions, dir: &Path) -> Result<Built, LilyError> {
    if tool.lang() != lang {
        return Err(tool_error(format!(
            "{} is a {} project; `--with {}` builds {} projects",
            dir.display(),
            lang.as_str(),
            tool.as_str(),
            tool.lang().as_str()
        ))
        .with_hint(format!(
            "leave out `--with` (a {} project builds with {})",
            lang.as_str(),
            lang.default_tool().as_str()
        )));
    }
    match lang {
        Lang::Rust => super::build::rust_compile(tool, opts, dir),
        Lang::Python => python::compile(opts, dir),
        Lang::Js => js::compile(opts, dir),
    }
}

/// Find a tool: the executable named by the environment variable `env`
/// when set, else `name` on PATH. `None` when neither runs `--version`.
pub(super) fn find_tool(env: &str, name: &str) -> Option<PathBuf> {
    let cand = std::env::var_os(env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name));
    let ok = std::process::Command::new(&cand)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(cand)
}
