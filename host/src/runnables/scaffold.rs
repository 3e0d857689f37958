//! `lily runnables new`: a guest crate with the SDK and the Run Contract WIT
//! vendored (see the module docs of [`super`]).

use super::lang::Lang;
use crate::error::{ErrorCode, LilyError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Run Contract R0 as this build of `lily` speaks it.
pub const RUNNABLE_WIT: &str = include_str!("../../../wit/runnable.wit");
pub(super) const SDK_LIB: &str = include_str!("../../../guests/sdk/src/lib.rs");
pub(super) const SDK_COUNCIL: &str = include_str!("../../../guests/sdk/src/council.rs");
pub(super) const SDK_WORKSPACE: &str = include_str!("../../../guests/sdk/src/workspace.rs");
pub(super) const SDK_LLM: &str = include_str!("../../../guests/sdk/src/llm.rs");
pub(super) const SDK_HTTP: &str = include_str!("../../../guests/sdk/src/http.rs");
/// The WASI 0.2.12 WIT the SDK's `http` module is generated from.
pub(super) const SDK_HTTP_WIT: &[(&str, &str)] = &[
    ("world.wit", include_str!("../../../guests/sdk/wit-http/world.wit")),
    ("deps/cli.wit", include_str!("../../../guests/sdk/wit-http/deps/cli.wit")),
    ("deps/clocks.wit", include_str!("../../../guests/sdk/wit-http/deps/clocks.wit")),
    ("deps/filesystem.wit", include_str!("../../../guests/sdk/wit-http/deps/filesystem.wit")),
    ("deps/http.wit", include_str!("../../../guests/sdk/wit-http/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../guests/sdk/wit-http/deps/io.wit")),
    ("deps/random.wit", include_str!("../../../guests/sdk/wit-http/deps/random.wit")),
    ("deps/sockets.wit", include_str!("../../../guests/sdk/wit-http/deps/sockets.wit")),
];
pub(super) const CONTRACT_LIB: &str = include_str!("../../../contract/src/lib.rs");
pub(super) const CONTRACT_COUNCIL: &str = include_str!("../../../contract/src/council.rs");
pub(super) const T_CONTRACT_CARGO: &str = include_str!("../../assets/scaffold/contract-Cargo.toml.tmpl");
pub(super) const T_CARGO: &str = include_str!("../../assets/scaffold/Cargo.toml.tmpl");
pub(super) const T_SDK_CARGO: &str = include_str!("../../assets/scaffold/sdk-Cargo.toml.tmpl");
pub(super) const T_GITIGNORE: &str = include_str!("../../assets/scaffold/gitignore.tmpl");
pub(super) const T_README: &str = include_str!("../../assets/scaffold/README.md.tmpl");
pub(super) const T_SPECIALIST: &str = include_str!("../../assets/scaffold/specialist.rs.tmpl");
pub(super) const T_SYNTHESIZER: &str = include_str!("../../assets/scaffold/synthesizer.rs.tmpl");

/// The SDK's `generate!` path in this repository, and in the vendored copy.
pub(super) const SDK_WIT_PATH: &str = r#"path: "../../wit","#;
pub(super) const VENDORED_WIT_PATH: &str = r#"path: "wit","#;

/// Where a plain `cargo build` puts components.
pub const TARGET_WASIP2: &str = "wasm32-wasip2";
/// Where `cargo component` builds the core module it adapts.
pub const TARGET_WASIP1: &str = "wasm32-wasip1";

/// Names `lily runnables new` refuses: they clash with the SDK or with
/// crates every Rust program links.
pub(super) const RESERVED_NAMES: &[&str] = &[
    "lily-guest",
    "lily_guest",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "self",
    "crate",
    "super",
];

/// What `lily runnables new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaffoldKind {
    /// Reviews a topic (and a granted read-only workspace) and returns findings
    Specialist,
    /// Ranks the specialists' findings into the council output
    Synthesizer,
}

impl ScaffoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaffoldKind::Specialist => "specialist",
            ScaffoldKind::Synthesizer => "synthesizer",
        }
    }
}

/// A crate written by [`scaffold`].
#[derive(Debug, Clone, Serialize)]
pub struct Scaffold {
    pub dir: PathBuf,
    pub crate_name: String,
    /// The runnable id the crate describes itself with (`<name>.v1`).
    pub id: String,
    pub kind: ScaffoldKind,
    pub lang: Lang,
    /// Files written, relative to `dir`.
    pub files: Vec<String>,
}

/// Tooling failures (no crate, cargo failed, missing target): the component
/// could not be produced at all.
pub(super) fn tool_error(message: impl Into<String>) -> LilyError {
    LilyError::new(ErrorCode::BlueprintCompileFailed, message)
}

/// Why `lily runnables new` cannot write a crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0:?} is not a usable crate name: start with a lower-case letter, then lower-case letters, digits, '-' or '_' (at most 50), e.g. my-check")]
    BadName(String),
    #[error("{0:?} is reserved (it clashes with the SDK or a standard crate); choose another name")]
    Reserved(String),
    /// The embedded templates or SDK no longer fit together (a bug of this build).
    #[error("{0}")]
    Template(String),
    /// The language has no scaffold in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// Check a crate name for `lily runnables new`: a lower-case letter, then
/// lower-case letters, digits, `-` or `_`, at most 50 characters.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 50
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
        && !name.ends_with(['-', '_']);
    if !ok {
        return Err(ScaffoldError::BadName(name.into()));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ScaffoldError::Reserved(name.into()));
    }
    Ok(())
}

/// The runnable id a scaffold named `name` describes itself with.
pub fn scaffold_id(name: &str) -> String {
    format!("{name}.v1")
}

/// `my-check` → `MyCheck`.
pub(super) fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The placeholders every scaffold template (any language) may use.
pub(super) type Vars = [(&'static str, String); 5];

/// `{{name}}`, `{{id}}`, `{{type}}`, `{{kind}}` and `{{lily_version}}` for a scaffold.
pub(super) fn template_vars(name: &str, kind: ScaffoldKind) -> Vars {
    [
        ("name", name.to_string()),
        ("id", scaffold_id(name)),
        ("type", type_name(name)),
        ("kind", kind.as_str().to_string()),
        ("lily_version", crate::VERSION.to_string()),
    ]
}

pub(super) fn render(template: &str, vars: &Vars) -> Result<String, ScaffoldError> {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    match s.find("{{") {
        Some(at) => Err(ScaffoldError::Template(format!(
            "scaffold template left a placeholder unfilled: {}",
            s[at..].chars().take(24).collect::<String>()
        ))),
        None => Ok(s),
    }
}

/// The vendored SDK's `lib.rs`: the repository's, with `generate!` pointed
/// at the crate's own `wit/` directory.
pub fn vendored_sdk_lib() -> Result<String, ScaffoldError> {
    if !SDK_LIB.contains(SDK_WIT_PATH) {
        return Err(ScaffoldError::Template(format!(
            "the embedded guest SDK no longer contains `{SDK_WIT_PATH}`; update lily's authoring module"
        )));
    }
    let header = format!(
        "// Vendored from the Lily guest SDK by `lily runnables new` (lily {}). Do not\n// edit: scaffold a new crate with a newer `lily` to update it.\n\n",
        crate::VERSION
    );
    Ok(header + &SDK_LIB.replacen(SDK_WIT_PATH, VENDORED_WIT_PATH, 1))
}

/// The files of a new Rust crate: (path relative to the crate directory, contents).
pub fn scaffold_files(name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    rust_scaffold_files(name, kind)
}

/// The files of a new project in `lang`: (path relative to its directory, contents).
pub fn scaffold_files_in(lang: Lang, name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    check_name(name)?;
    super::lang::scaffold_files(lang, name, kind)
}

pub(super) fn rust_scaffold_files(name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    check_name(name)?;
    let vars = template_vars(name, kind);
    let lib = match kind {
        ScaffoldKind::Specialist => T_SPECIALIST,
        ScaffoldKind::Synthesizer => T_SYNTHESIZER,
    };
    let mut files = vec![
        ("Cargo.toml".into(), render(T_CARGO, &vars)?),
        (".gitignore".into(), render(T_GITIGNORE, &vars)?),
        ("README.md".into(), render(T_README, &vars)?),
        ("src/lib.rs".into(), render(lib, &vars)?),
        ("lily-guest/Cargo.toml".into(), render(T_SDK_CARGO, &vars)?),
        ("lily-guest/wit/runnable.wit".into(), RUNNABLE_WIT.to_string()),
        ("lily-guest/src/lib.rs".into(), vendored_sdk_lib()?),
        ("lily-guest/src/council.rs".into(), SDK_COUNCIL.to_string()),
        ("lily-guest/src/workspace.rs".into(), SDK_WORKSPACE.to_string()),
        ("lily-guest/src/llm.rs".into(), SDK_LLM.to_string()),
        ("lily-guest/src/http.rs".into(), SDK_HTTP.to_string()),
        ("lily-guest/contract/Cargo.toml".into(), render(T_CONTRACT_CARGO, &vars)?),
        ("lily-guest/contract/src/lib.rs".into(), CONTRACT_LIB.to_string()),
        ("lily-guest/contract/src/council.rs".into(), CONTRACT_COUNCIL.to_string()),
    ];
    files.extend(SDK_HTTP_WIT.iter().map(|(p, text)| (format!("lily-guest/wit-http/{p}"), text.to_string())));
    Ok(files)
}

/// Write a new project `parent/name` of the given kind in `lang`. Refuses a
/// name that is not a usable crate name and a directory that exists and is
/// not empty.
pub fn scaffold(parent: &Path, name: &str, kind: ScaffoldKind, lang: Lang) -> Result<Scaffold, LilyError> {
    let files = scaffold_files_in(lang, name, kind).map_err(|e| tool_error(e.to_string()))?;
    let dir = parent.join(name);
    if dir.exists() {
        let empty = std::fs::read_dir(&dir).map(|mut rd| rd.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(tool_error(format!("{} already exists and is not empty; nothing was written", dir.display()))
                .with_hint("choose another name, or remove the directory first"));
        }
    }
    let mut written = Vec::new();
    for (rel, text) in &files {
        let p = dir.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| tool_error(format!("cannot create {}: {e}", d.display())))?;
        }
        std::fs::write(&p, text).map_err(|e| tool_error(format!("cannot write {}: {e}", p.display())))?;
        written.push(rel.clone());
    }
    Ok(Scaffold {
        dir,
        crate_name: name.to_string(),
        id: scaffold_id(name),
        kind,
        lang,
        files: written,
    })
}
