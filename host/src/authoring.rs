//! Authoring runnables: `lily runnables new` scaffolds a guest crate, and
//! `lily runnables build` builds it into a component and checks it against
//! the Run Contract the way `install` and the jobs will.
//!
//! A scaffolded crate lives outside this repository, so it cannot depend on
//! `guests/sdk` by path: the SDK sources and `wit/runnable.wit` are embedded
//! in the `lily` binary and written into the new crate as a vendored
//! `lily-guest/` path crate (its WIT in `lily-guest/wit/`, not in the
//! crate's own `wit/`, so `cargo component` does not generate a second set
//! of bindings). The crate depends only on crates.io crates and builds with
//! both `cargo build --release --target wasm32-wasip2` and
//! `cargo component build --release`.

use crate::error::{ErrorCode, LilyError};
use crate::sandbox::{Descriptor, LoadError, LoadErrorKind, RunnableKind, Sandbox, host_provides};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Run Contract R0 as this build of `lily` speaks it.
pub const RUNNABLE_WIT: &str = include_str!("../../wit/runnable.wit");
const SDK_LIB: &str = include_str!("../../guests/sdk/src/lib.rs");
const SDK_COUNCIL: &str = include_str!("../../guests/sdk/src/council.rs");
const SDK_WORKSPACE: &str = include_str!("../../guests/sdk/src/workspace.rs");
const T_CARGO: &str = include_str!("../assets/scaffold/Cargo.toml.tmpl");
const T_SDK_CARGO: &str = include_str!("../assets/scaffold/sdk-Cargo.toml.tmpl");
const T_GITIGNORE: &str = include_str!("../assets/scaffold/gitignore.tmpl");
const T_README: &str = include_str!("../assets/scaffold/README.md.tmpl");
const T_SPECIALIST: &str = include_str!("../assets/scaffold/specialist.rs.tmpl");
const T_SYNTHESIZER: &str = include_str!("../assets/scaffold/synthesizer.rs.tmpl");

/// The SDK's `generate!` path in this repository, and in the vendored copy.
const SDK_WIT_PATH: &str = r#"path: "../../wit","#;
const VENDORED_WIT_PATH: &str = r#"path: "wit","#;

/// Where a plain `cargo build` puts components.
pub const TARGET_WASIP2: &str = "wasm32-wasip2";
/// Where `cargo component` builds the core module it adapts.
pub const TARGET_WASIP1: &str = "wasm32-wasip1";

/// Names `lily runnables new` refuses: they clash with the SDK or with
/// crates every Rust program links.
const RESERVED_NAMES: &[&str] = &[
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
    /// Files written, relative to `dir`.
    pub files: Vec<String>,
}

/// Tooling failures (no crate, cargo failed, missing target): the component
/// could not be produced at all.
fn tool_error(message: impl Into<String>) -> LilyError {
    LilyError::new(ErrorCode::BlueprintCompileFailed, message)
}

/// Check a crate name for `lily runnables new`: a lower-case letter, then
/// lower-case letters, digits, `-` or `_`, at most 50 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 50
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
        && !name.ends_with(['-', '_']);
    if !ok {
        return Err(format!(
            "{name:?} is not a usable crate name: start with a lower-case letter, then lower-case letters, digits, '-' or '_' (at most 50), e.g. my-check"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{name:?} is reserved (it clashes with the SDK or a standard crate); choose another name"
        ));
    }
    Ok(())
}

/// The runnable id a scaffold named `name` describes itself with.
pub fn scaffold_id(name: &str) -> String {
    format!("{name}.v1")
}

/// `my-check` → `MyCheck`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    match s.find("{{") {
        Some(at) => Err(format!("scaffold template left a placeholder unfilled: {}", &s[at..(at + 24).min(s.len())])),
        None => Ok(s),
    }
}

/// The vendored SDK's `lib.rs`: the repository's, with `generate!` pointed
/// at the crate's own `wit/` directory.
pub fn vendored_sdk_lib() -> Result<String, String> {
    if !SDK_LIB.contains(SDK_WIT_PATH) {
        return Err(format!(
            "the embedded guest SDK no longer contains `{SDK_WIT_PATH}`; update lily's authoring module"
        ));
    }
    let header = format!(
        "// Vendored from the Lily guest SDK by `lily runnables new` (lily {}). Do not\n// edit: scaffold a new crate with a newer `lily` to update it.\n\n",
        crate::VERSION
    );
    Ok(header + &SDK_LIB.replacen(SDK_WIT_PATH, VENDORED_WIT_PATH, 1))
}

/// The files of a new crate: (path relative to the crate directory, contents).
pub fn scaffold_files(name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, String> {
    check_name(name)?;
    let id = scaffold_id(name);
    let ty = type_name(name);
    let vars: [(&str, &str); 5] = [
        ("name", name),
        ("id", &id),
        ("type", &ty),
        ("kind", kind.as_str()),
        ("lily_version", crate::VERSION),
    ];
    let lib = match kind {
        ScaffoldKind::Specialist => T_SPECIALIST,
        ScaffoldKind::Synthesizer => T_SYNTHESIZER,
    };
    Ok(vec![
        ("Cargo.toml".into(), render(T_CARGO, &vars)?),
        (".gitignore".into(), render(T_GITIGNORE, &vars)?),
        ("README.md".into(), render(T_README, &vars)?),
        ("src/lib.rs".into(), render(lib, &vars)?),
        ("lily-guest/Cargo.toml".into(), render(T_SDK_CARGO, &vars)?),
        ("lily-guest/wit/runnable.wit".into(), RUNNABLE_WIT.to_string()),
        ("lily-guest/src/lib.rs".into(), vendored_sdk_lib()?),
        ("lily-guest/src/council.rs".into(), SDK_COUNCIL.to_string()),
        ("lily-guest/src/workspace.rs".into(), SDK_WORKSPACE.to_string()),
    ])
}

/// Write a new crate `parent/name` of the given kind. Refuses a name that
/// is not a usable crate name and a directory that exists and is not empty.
pub fn scaffold(parent: &Path, name: &str, kind: ScaffoldKind) -> Result<Scaffold, LilyError> {
    let files = scaffold_files(name, kind).map_err(tool_error)?;
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
        files: written,
    })
}

/// How `lily runnables build` builds the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildTool {
    /// `cargo build --release --target wasm32-wasip2` (a component straight away)
    #[default]
    Cargo,
    /// `cargo component build --release` (wasm32-wasip1, adapted into a component)
    CargoComponent,
}

impl BuildTool {
    /// The Rust target the tool compiles for.
    pub fn target(self) -> &'static str {
        match self {
            BuildTool::Cargo => TARGET_WASIP2,
            BuildTool::CargoComponent => TARGET_WASIP1,
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            BuildTool::Cargo => &["build", "--release", "--target", TARGET_WASIP2],
            BuildTool::CargoComponent => &["component", "build", "--release"],
        }
    }

    /// The command as a user would type it.
    pub fn command_line(self) -> String {
        format!("cargo {}", self.args().join(" "))
    }
}

/// What to build and where to copy the result.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The crate directory (holding `Cargo.toml`).
    pub path: PathBuf,
    pub tool: BuildTool,
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

/// One way a component breaks the Run Contract, in plain words.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `component`, `exports`, `imports`, `describe`, `descriptor` or `schema`.
    pub area: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// The contract check of one component: what it says about itself, what it
/// imports, and what keeps the host from accepting it.
#[derive(Debug, Clone, Serialize)]
pub struct ContractCheck {
    pub ok: bool,
    pub digest: String,
    pub bytes: usize,
    pub descriptor: Option<Descriptor>,
    /// Interfaces it imports (the capabilities it could ask for).
    pub imports: Vec<String>,
    pub problems: Vec<Problem>,
    /// Things that do not stop the host but are probably not what you meant.
    pub warnings: Vec<String>,
}

/// The result of `lily runnables build`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Built and passes the contract check.
    pub ok: bool,
    pub crate_name: String,
    pub crate_dir: PathBuf,
    pub tool: BuildTool,
    pub command: String,
    pub target: String,
    /// The component cargo produced.
    pub component: PathBuf,
    /// Where it was copied (`--out`), when it passed.
    pub copied_to: Option<PathBuf>,
    pub check: ContractCheck,
}

impl BuildReport {
    /// The error `lily runnables build` ends with when the check failed.
    pub fn contract_error(&self) -> Option<LilyError> {
        if self.ok {
            return None;
        }
        let n = self.check.problems.len();
        let first = self.check.problems.first();
        let mut e = LilyError::new(
            ErrorCode::BlueprintContractInvalid,
            format!(
                "{} breaks the Run Contract ({n} problem{}): {}",
                self.component.display(),
                if n == 1 { "" } else { "s" },
                first.map(|p| p.message.as_str()).unwrap_or("unknown problem")
            ),
        )
        .with_details(serde_json::to_value(self).unwrap_or(Value::Null));
        if let Some(p) = first {
            e = e.with_hint(p.hint.clone());
        }
        Some(e)
    }
}

/// A sample of what `council.v1` sends a specialist.
fn sample_specialist_inputs() -> [Value; 2] {
    [
        json!({"topic": "example topic", "context": ["a line of context"], "workspace": "/workspace"}),
        json!({"topic": "example topic", "context": [], "workspace": null}),
    ]
}

/// A sample of what `council.v1` sends a synthesizer.
fn sample_synth_input() -> Value {
    json!({
        "topic": "example topic",
        "max_findings": 8,
        "reports": [
            {"specialist": "a.v1", "status": "ok", "findings": [{"title": "t", "recommendation": "r", "confidence": 0.5, "evidence": ["x:1"]}], "notes": "n"},
            {"specialist": "b.v1", "status": "error", "findings": [], "notes": "trap"}
        ]
    })
}

/// Turn a sandbox load error into a problem with a fix, by its kind.
fn load_problem(e: &LoadError) -> (Problem, Vec<String>) {
    let p = |area: &'static str, hint: &str| Problem {
        area,
        message: e.message.clone(),
        hint: hint.to_string(),
    };
    let problem = match &e.kind {
        LoadErrorKind::MissingImports(missing) => {
            let problem = Problem {
                area: "imports",
                message: format!(
                    "it imports {}, which the Lily host does not provide, so no job could ever run it",
                    missing.join(", ")
                ),
                hint: "A runnable may import only WASI 0.2 interfaces (wasi:*) and lily:runnable/events and lily:runnable/effects. \
                       Remove the code or dependency that uses the other interfaces (check your WIT world's `import` lines)."
                    .into(),
            };
            return (problem, missing.clone());
        }
        LoadErrorKind::NotAComponent => p(
            "component",
            "Build with `cargo build --release --target wasm32-wasip2` or `cargo component build --release`; a core module (wasm32-unknown-unknown, or wasm32-wasip1 without cargo-component) is not a component.",
        ),
        LoadErrorKind::TooComplex => p(
            "component",
            "Keep components under the policy's limits.max_component_mb and functions nested less than 4,096 blocks deep (generated code is the usual cause).",
        ),
        LoadErrorKind::LinkFailed => p(
            "imports",
            "The component's imports do not match what the host links (WASI 0.2 and lily:runnable@0.1.0); rebuild it against the WIT in lily-guest/wit/.",
        ),
        LoadErrorKind::MissingExports => p(
            "exports",
            "Export `describe` and `run`: end src/lib.rs with lily_guest::export_specialist!(YourType) or export_synthesizer!(YourType) (or export_runnable! for a raw Guest).",
        ),
        LoadErrorKind::DescribeFailed => p(
            "describe",
            "`describe` must return at once: no panics, no loops, no file or clock access. With the SDK it only reads your ID, VERSION and SUMMARY constants.",
        ),
        LoadErrorKind::BadId => p(
            "descriptor",
            "Ids are lower-case letters, digits, '.', '_' and '-', start with a letter or digit and have at most 64 characters, e.g. my-check.v1 (the ID constant in src/lib.rs).",
        ),
        LoadErrorKind::BadVersion => p(
            "descriptor",
            "Use a semantic version such as 1.0.0 (a scaffolded crate takes VERSION from the version in Cargo.toml).",
        ),
        LoadErrorKind::BlankSummary => p("descriptor", "Set SUMMARY to one line that tells a person what the runnable does."),
        LoadErrorKind::BadSchema => p(
            "schema",
            "Return JSON Schema objects (draft 2020-12) as text, e.g. the SDK's specialist_input_schema() / specialist_output_schema(); at most 64 KiB, patterns without back-references or look-around.",
        ),
        LoadErrorKind::Internal => p("component", "Inspect it with `lily runnables inspect <file.wasm>`."),
    };
    (problem, Vec::new())
}

/// Why the runnable's declared schema rejects `sample` (budgeted like every
/// check of a guest-declared schema), or `None` if it accepts it.
fn schema_rejects(schema: &Value, sample: &Value) -> Option<String> {
    let v = crate::sandbox::schema::GuestSchema::compile(schema).ok()?;
    match v.check(sample, None, 3) {
        Ok(Ok(())) => None,
        Ok(Err(errors)) => Some(errors),
        Err(e) => Some(e.to_string()),
    }
}

/// Check a component against the Run Contract: it must be a component the
/// sandbox can link (imports), export `describe` / `run`, describe itself
/// validly, declare JSON Schema objects, and accept what the council sends
/// a runnable of its kind.
pub async fn check_component(sandbox: &Sandbox, bytes: &[u8]) -> ContractCheck {
    let mut check = ContractCheck {
        ok: false,
        digest: Sandbox::digest(bytes),
        bytes: bytes.len(),
        descriptor: None,
        imports: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let loaded = match sandbox.load(bytes).await {
        Ok(l) => l,
        Err(e) => {
            let (problem, missing) = load_problem(&e);
            check.imports = missing;
            check.problems.push(problem);
            return check;
        }
    };
    let d = loaded.descriptor.clone();
    check.imports = loaded.imports.clone();
    for i in check.imports.iter().filter(|i| !host_provides(i)) {
        check.problems.push(Problem {
            area: "imports",
            message: format!("it imports {i}, which the Lily host does not provide"),
            hint: "A runnable may import only WASI 0.2 interfaces and lily:runnable/events and lily:runnable/effects.".into(),
        });
    }
    for (what, schema) in [("input", &d.input_schema), ("output", &d.output_schema)] {
        if schema.is_boolean() {
            check.warnings.push(format!(
                "the {what} schema is the boolean schema `{schema}`; an object schema tells callers what to send and lets the host check it"
            ));
        }
    }
    match d.kind {
        RunnableKind::Specialist => {
            for sample in sample_specialist_inputs() {
                if let Some(why) = schema_rejects(&d.input_schema, &sample) {
                    check.problems.push(Problem {
                        area: "schema",
                        message: format!("its input schema rejects what a council sends every specialist ({sample}): {why}"),
                        hint: "Accept {topic, context, workspace}: the SDK's specialist_input_schema() does.".into(),
                    });
                    break;
                }
            }
        }
        RunnableKind::Synthesizer | RunnableKind::Llm => {
            let sample = sample_synth_input();
            if let Some(why) = schema_rejects(&d.input_schema, &sample) {
                check.problems.push(Problem {
                    area: "schema",
                    message: format!("its input schema rejects what a council sends its synthesizer: {why}"),
                    hint: "Accept {topic, max_findings, reports}: the SDK's synth_input_schema() does.".into(),
                });
            }
        }
        RunnableKind::Generic => check
            .warnings
            .push("its kind is generic: council.v1 binds only specialists and synthesizers (step.v1 runs any kind)".into()),
    }
    check.descriptor = Some(d);
    check.ok = check.problems.is_empty();
    check
}

/// The crate `cargo metadata` describes at `manifest`.
struct CrateInfo {
    name: String,
    lib_name: String,
    target_dir: PathBuf,
}

fn cargo_metadata(dir: &Path, manifest: &Path) -> Result<CrateInfo, LilyError> {
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

fn target_installed(target: &str, dir: &Path) -> Result<bool, LilyError> {
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

/// Build the crate at `opts.path` (blocking): returns the crate and the
/// path of the component.
fn compile(opts: &BuildOptions) -> Result<(CrateInfo, PathBuf, PathBuf), LilyError> {
    let dir = opts
        .path
        .canonicalize()
        .map_err(|e| tool_error(format!("{}: {e}", opts.path.display())).with_hint("pass the directory of the runnable's crate"))?;
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(tool_error(format!("{} has no Cargo.toml", dir.display()))
            .with_hint("run `lily runnables build` in a runnable's crate, pass its directory, or create one with `lily runnables new <name>`"));
    }
    let info = cargo_metadata(&dir, &manifest)?;
    let target = opts.tool.target();
    ensure_target(target, &dir, opts.progress)?;
    if opts.tool == BuildTool::CargoComponent {
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
    (opts.progress)(&format!("building {} with `{}`", info.name, opts.tool.command_line()));
    // cargo reports progress on stderr; anything on its stdout goes there
    // too, so `--json` output stays one JSON document.
    let out = Command::new("cargo")
        .args(opts.tool.args())
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
            opts.tool.command_line(),
            dir.display(),
            out.status
        )));
    }
    let wasm = info.target_dir.join(target).join("release").join(format!("{}.wasm", info.lib_name));
    if !wasm.is_file() {
        return Err(tool_error(format!("the build succeeded but {} does not exist", wasm.display())));
    }
    Ok((info, dir, wasm))
}

/// `lily runnables build`: build the crate, then check the component
/// against the Run Contract. `Err` when no component could be built; a
/// component that breaks the contract is an `Ok` report with `ok: false`
/// (see [`BuildReport::contract_error`]).
pub async fn build(sandbox: &Sandbox, opts: &BuildOptions) -> Result<BuildReport, LilyError> {
    let (info, dir, wasm) = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || compile(&opts))
            .await
            .map_err(|e| tool_error(format!("the build task failed: {e}")))??
    };
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
        crate_name: info.name,
        crate_dir: dir,
        tool: opts.tool,
        command: opts.tool.command_line(),
        target: opts.tool.target().to_string(),
        component: wasm,
        copied_to,
        check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxOptions;

    #[test]
    fn names_are_checked() {
        for ok in ["my-check", "a", "scan_2", "x1-y2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "My-Check", "1abc", "-x", "x-", "a b", "../x", "lily-guest", "std", &"a".repeat(51)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("my-check"), "MyCheck");
        assert_eq!(type_name("scan_2_deep"), "Scan2Deep");
        assert_eq!(scaffold_id("my-check"), "my-check.v1");
        assert!(crate::paths::valid_id(&scaffold_id(&"a".repeat(50))));
    }

    #[test]
    fn scaffold_files_are_complete_and_filled_in() {
        for kind in [ScaffoldKind::Specialist, ScaffoldKind::Synthesizer] {
            let files = scaffold_files("my-check", kind).expect("files");
            for (rel, text) in files.iter().filter(|(r, _)| !r.starts_with("lily-guest/")) {
                assert!(!text.contains("{{"), "{rel} has an unfilled placeholder");
            }
            let get = |p: &str| {
                files
                    .iter()
                    .find(|(r, _)| r == p)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or_else(|| panic!("{p} missing"))
            };
            assert!(get("Cargo.toml").contains("name = \"my-check\""));
            assert!(get("src/lib.rs").contains("\"my-check.v1\"") && get("src/lib.rs").contains("pub struct MyCheck;"));
            assert!(get("src/lib.rs").contains(if kind == ScaffoldKind::Specialist {
                "export_specialist!"
            } else {
                "export_synthesizer!"
            }));
            assert!(get("lily-guest/src/lib.rs").contains(VENDORED_WIT_PATH));
            assert!(!get("lily-guest/src/lib.rs").contains(SDK_WIT_PATH));
            assert_eq!(get("lily-guest/wit/runnable.wit"), RUNNABLE_WIT);
        }
    }

    #[test]
    fn vendored_sdk_uses_the_same_dependencies_as_the_repository_sdk() {
        // The scaffold must build with the versions the built-ins are proven with.
        let guests = include_str!("../../guests/Cargo.toml");
        let wit_bindgen = guests.lines().find(|l| l.starts_with("wit-bindgen")).expect("wit-bindgen in guests/Cargo.toml");
        let version = wit_bindgen.split('"').nth(1).expect("a version");
        assert!(T_SDK_CARGO.contains(&format!("wit-bindgen = {{ version = \"{version}\"")), "{wit_bindgen}");
        assert!(SDK_LIB.contains("default_bindings_module: \"::lily_guest::bindings\""));
        assert!(T_SDK_CARGO.contains("name = \"lily-guest\""));
    }

    #[test]
    fn scaffold_refuses_a_non_empty_directory_and_bad_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = scaffold(tmp.path(), "my-check", ScaffoldKind::Specialist).expect("scaffold");
        assert!(s.dir.join("src/lib.rs").is_file() && s.dir.join("lily-guest/wit/runnable.wit").is_file());
        let e = scaffold(tmp.path(), "my-check", ScaffoldKind::Synthesizer).expect_err("exists");
        assert!(e.message.contains("already exists"), "{}", e.message);
        let e = scaffold(tmp.path(), "Bad Name", ScaffoldKind::Specialist).expect_err("bad name");
        assert!(e.message.contains("crate name"), "{}", e.message);
        assert!(!tmp.path().join("Bad Name").exists());
    }

    #[test]
    fn a_missing_target_ends_with_the_exact_rustup_command() {
        let e = ensure_target("wasm32-no-such-target", Path::new("."), quiet).expect_err("no such target");
        assert_eq!(e.code, ErrorCode::BlueprintCompileFailed);
        assert!(e.message.contains("wasm32-no-such-target is not installed"), "{}", e.message);
        assert_eq!(
            e.hint.as_deref(),
            Some("install it with `rustup target add wasm32-no-such-target`, then run the build again")
        );
        assert!(
            ensure_target(TARGET_WASIP2, Path::new("."), quiet).is_ok(),
            "the build script installed wasm32-wasip2"
        );
    }

    #[test]
    fn building_a_directory_without_a_crate_says_so() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let opts = BuildOptions {
            path: tmp.path().to_path_buf(),
            tool: BuildTool::Cargo,
            out: None,
            progress: quiet,
        };
        let e = compile(&opts).err().expect("no crate");
        assert_eq!(e.code, ErrorCode::BlueprintCompileFailed);
        assert!(e.message.contains("has no Cargo.toml"), "{}", e.message);
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("lily runnables new")));
        let opts = BuildOptions {
            path: tmp.path().join("missing"),
            ..opts
        };
        assert!(compile(&opts).is_err());
    }

    fn guest(name: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn check(bytes: &[u8]) -> ContractCheck {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let sandbox = Sandbox::new(SandboxOptions::default()).expect("sandbox");
            check_component(&sandbox, bytes).await
        })
    }

    #[test]
    fn contract_check_accepts_the_builtins() {
        for name in ["security", "default_synth"] {
            let c = check(&guest(name));
            assert!(c.ok, "{name}: {:?}", c.problems);
            assert!(c.imports.iter().all(|i| host_provides(i)), "{:?}", c.imports);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        }
    }

    #[test]
    fn contract_check_explains_unknown_imports_bad_descriptors_and_garbage() {
        let c = check(&guest("hostile_import"));
        assert!(!c.ok);
        assert_eq!(c.problems[0].area, "imports");
        assert!(c.problems[0].message.contains("acme:evil/exfil"), "{}", c.problems[0].message);
        assert!(c.imports.iter().any(|i| i.starts_with("acme:evil/exfil")), "{:?}", c.imports);

        let c = check(&guest("bad_descriptor"));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].area, "descriptor");
        assert!(
            c.problems[0].message.contains("\"1.0\"") && c.problems[0].hint.contains("semantic version"),
            "{:?}",
            c.problems[0]
        );

        let c = check(b"\0asm\x01\0\0\0");
        assert_eq!(c.problems[0].area, "component");

        let c = check(&guest("echo"));
        assert!(c.ok, "{:?}", c.problems);
        assert!(c.warnings.iter().any(|w| w.contains("generic")), "{:?}", c.warnings);
    }
}
