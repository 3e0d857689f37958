//! `lily runnables build`: cargo / cargo-component driving, the target
//! check, and the build report.

use super::lang::{self, Built, Lang};
use super::*;
use crate::error::LilyError;
use crate::sandbox::Sandbox;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
/// How `lily runnables build` builds the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildTool {
    /// `cargo build --release --target wasm32-wasip2` (a component straight away)
    #[default]
    Cargo,
    /// `cargo component build --release` (wasm32-wasip1, adapted into a component)
    CargoComponent,
    /// `componentize-py -d wit -w runnable componentize app` (a Python project)
    ComponentizePy,
    /// `jco componentize` (a JavaScript project)
    Jco,
}

impl BuildTool {
    /// The target the tool compiles for.
    pub fn target(self) -> &'static str {
        match self {
            BuildTool::CargoComponent => TARGET_WASIP1,
            BuildTool::Cargo | BuildTool::ComponentizePy | BuildTool::Jco => TARGET_WASIP2,
        }
    }

    /// The language the tool builds.
    pub fn lang(self) -> Lang {
        match self {
            BuildTool::Cargo | BuildTool::CargoComponent => Lang::Rust,
            BuildTool::ComponentizePy => Lang::Python,
            BuildTool::Jco => Lang::Js,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BuildTool::Cargo => "cargo",
            BuildTool::CargoComponent => "cargo-component",
            BuildTool::ComponentizePy => "componentize-py",
            BuildTool::Jco => "jco",
        }
    }

    fn cargo_args(self) -> &'static [&'static str] {
        match self {
            BuildTool::CargoComponent => &["component", "build", "--release"],
            _ => &["build", "--release", "--target", TARGET_WASIP2],
        }
    }

    /// The cargo command as a user would type it (Rust tools).
    pub fn command_line(self) -> String {
        format!("cargo {}", self.cargo_args().join(" "))
    }
}

/// What to build and where to copy the result.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The project directory (holding `Cargo.toml`, `pyproject.toml` /
    /// `app.py`, or `package.json`).
    pub path: PathBuf,
    /// `None`: the language's default ([`Lang::default_tool`]).
    pub tool: Option<BuildTool>,
    /// Copy the component here when it passes the contract check.
    pub out: Option<PathBuf>,
    /// Where progress lines go (the library never prints): what it runs,
    /// and anything the build tool wrote on stdout.
    pub progress: Progress,
}

/// A sink for progress lines of a build.
pub type Progress = fn(&str);

/// Progress that goes nowhere.
pub fn quiet(_: &str) {}

/// The crate `cargo metadata` describes at `manifest`.
pub(super) struct CrateInfo {
    name: String,
    lib_name: String,
    target_dir: PathBuf,
}

pub(super) fn cargo_metadata(dir: &Path, manifest: &Path) -> Result<CrateInfo, LilyError> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(manifest)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_error(format!("cannot run cargo: {e}")).with_hint("install Rust with rustup (https://rustup.rs)"))?;
    if !out.status.success() {
        return Err(tool_error(format!(
            "`cargo metadata` failed for {}: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| tool_error(format!("`cargo metadata` printed something that is not JSON: {e}")))?;
    let target_dir = v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| tool_error("`cargo metadata` did not name a target directory"))?;
    let pkg = v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().is_some_and(|m| Path::new(m) == manifest))
        .ok_or_else(|| {
            tool_error(format!("{} is a workspace without a package of its own", manifest.display()))
                .with_hint("pass the directory of the runnable's crate, e.g. `lily runnables build crates/my-check`")
        })?;
    let name = pkg["name"].as_str().unwrap_or_default().to_string();
    let lib = pkg["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["crate_types"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        .ok_or_else(|| {
            tool_error(format!("crate {name} has no cdylib library, so cargo builds no component from it"))
                .with_hint("add `[lib] crate-type = [\"cdylib\", \"rlib\"]` to its Cargo.toml")
        })?;
    let lib_name = lib["name"].as_str().unwrap_or(&name).replace('-', "_");
    Ok(CrateInfo { name, lib_name, target_dir })
}

pub(super) fn target_installed(target: &str, dir: &Path) -> Result<bool, LilyError> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_error(format!("cannot run rustc: {e}")).with_hint("install Rust with rustup (https://rustup.rs)"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(out.status.success() && sysroot.join("lib/rustlib").join(target).exists())
}

/// Make sure the Rust standard library for `target` is installed: add it
/// with rustup when it is missing, or fail with the exact command to run.
pub fn ensure_target(target: &str, dir: &Path, progress: Progress) -> Result<(), LilyError> {
    if target_installed(target, dir)? {
        return Ok(());
    }
    progress(&format!("the Rust target {target} is missing: running `rustup target add {target}`"));
    let why = match Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {
            if target_installed(target, dir)? {
                return Ok(());
            }
            "rustup reported success, but the target is still missing".to_string()
        }
        Ok(o) => String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("rustup failed").trim().to_string(),
        Err(e) => format!("cannot run rustup: {e}"),
    };
    Err(tool_error(format!(
        "the Rust target {target} is not installed and could not be added automatically ({why})"
    ))
    .with_hint(format!("install it with `rustup target add {target}`, then run the build again")))
}

/// Build the project at `opts.path` (blocking), in the language its
/// manifest says.
pub(super) fn compile(opts: &BuildOptions) -> Result<(Lang, BuildTool, Built), LilyError> {
    let dir = opts
        .path
        .canonicalize()
        .map_err(|e| tool_error(format!("{}: {e}", opts.path.display())).with_hint("pass the directory of the runnable's project"))?;
    let lang = Lang::detect(&dir).ok_or_else(|| {
        tool_error(format!("{} has no Cargo.toml, pyproject.toml, app.py or package.json", dir.display())).with_hint(
            "run `lily runnables build` in a runnable's project, pass its directory, or create one with `lily runnables new <name> [--lang rust|python|js]`",
        )
    })?;
    let tool = opts.tool.unwrap_or(lang.default_tool());
    let built = lang::compile(lang, tool, opts, &dir)?;
    Ok((lang, tool, built))
}

/// Build the Rust crate at `dir` with cargo or cargo-component (blocking).
pub(super) fn rust_compile(tool: BuildTool, opts: &BuildOptions, dir: &Path) -> Result<Built, LilyError> {
    let dir = dir.to_path_buf();
    let manifest = dir.join("Cargo.toml");
    let info = cargo_metadata(&dir, &manifest)?;
    let target = tool.target();
    ensure_target(target, &dir, opts.progress)?;
    if tool == BuildTool::CargoComponent {
        let found = Command::new("cargo")
            .args(["component", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(tool_error("cargo-component is not installed")
                .with_hint("install it with `cargo install cargo-component --locked` (about ten minutes), or build with plain cargo (the default)"));
        }
    }
    (opts.progress)(&format!("building {} with `{}`", info.name, tool.command_line()));
    // cargo reports progress on stderr; anything on its stdout goes there
    // too, so `--json` output stays one JSON document.
    let out = Command::new("cargo")
        .args(tool.cargo_args())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| tool_error(format!("cannot run cargo: {e}")))?;
    if !out.stdout.is_empty() {
        (opts.progress)(String::from_utf8_lossy(&out.stdout).trim_end());
    }
    if !out.status.success() {
        return Err(tool_error(format!(
            "`{}` failed in {} ({}); the compiler's messages are above",
            tool.command_line(),
            dir.display(),
            out.status
        )));
    }
    let wasm = info.target_dir.join(target).join("release").join(format!("{}.wasm", info.lib_name));
    if !wasm.is_file() {
        return Err(tool_error(format!("the build succeeded but {} does not exist", wasm.display())));
    }
    Ok(Built {
        name: info.name,
        dir,
        wasm,
        command: tool.command_line(),
        target: target.to_string(),
    })
}

/// `lily runnables build`: build the crate, then check the component
/// against the Run Contract. `Err` when no component could be built; a
/// component that breaks the contract is an `Ok` report with `ok: false`
/// (see [`BuildReport::contract_error`]).
pub async fn build(sandbox: &Sandbox, opts: &BuildOptions) -> Result<BuildReport, LilyError> {
    let (lang, tool, built) = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || compile(&opts))
            .await
            .map_err(|e| tool_error(format!("the build task failed: {e}")))??
    };
    let wasm = built.wasm.clone();
    let bytes = std::fs::read(&wasm).map_err(|e| tool_error(format!("{}: {e}", wasm.display())))?;
    let check = check_component(sandbox, &bytes).await;
    let mut copied_to = None;
    if check.ok
        && let Some(out) = &opts.out
    {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| tool_error(format!("cannot create {}: {e}", parent.display())))?;
        }
        crate::util::atomic_write(out, &bytes).map_err(|e| tool_error(format!("cannot write {}: {e}", out.display())))?;
        copied_to = Some(out.clone());
    }
    Ok(BuildReport {
        ok: check.ok,
        lang,
        crate_name: built.name,
        crate_dir: built.dir,
        tool,
        command: built.command,
        target: built.target,
        component: wasm,
        copied_to,
        check,
    })
}
