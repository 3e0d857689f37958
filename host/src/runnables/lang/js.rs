//! JavaScript runnables: `lily runnables new --lang js` (the SDK of
//! `guests/sdk-js` with its WIT vendored in `lily-guest/`, a node:test test)
//! and `lily runnables build` of a `package.json` project: bundle the entry
//! with rolldown (the `lily:*` / `wasi:*` imports stay external), then
//! `componentize-js` against the SDK's WIT. The toolchain is the pinned one
//! in a tools directory (not a dependency of every project):
//! `$LILY_JS_TOOLS`, else `${LILY_TOOLS_DIR:-~/.cache/lily-tools}/jco-1.35.0`,
//! else the project's own `node_modules`.

use super::Built;
use crate::error::LilyError;
use crate::runnables::BuildOptions;
use crate::runnables::scaffold::{RUNNABLE_WIT, ScaffoldError, ScaffoldKind, render, template_vars, tool_error};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The jco release the toolchain is pinned to (its tools directory name).
pub const JCO_VERSION: &str = "1.35.0";
/// The componentize-js release jco 1.35.0 depends on (`^0.22.0`).
pub const COMPONENTIZE_JS_VERSION: &str = "0.22.0";
/// The preview2-shim componentize-js 0.22.0 imports when it runs (it lists
/// it only as a dev dependency, so a plain install leaves it out).
pub const PREVIEW2_SHIM_VERSION: &str = "0.25.0";
/// Names the JS tools directory when it is not the default.
pub const JS_TOOLS_ENV: &str = "LILY_JS_TOOLS";

pub(in crate::runnables) const SDK_FILES: &[(&str, &str)] = &[
    ("lily-guest/package.json", include_str!("../../../../guests/sdk-js/package.json")),
    ("lily-guest/src/index.js", include_str!("../../../../guests/sdk-js/src/index.js")),
    ("lily-guest/src/host.js", include_str!("../../../../guests/sdk-js/src/host.js")),
    ("lily-guest/src/council.js", include_str!("../../../../guests/sdk-js/src/council.js")),
    ("lily-guest/src/workspace.js", include_str!("../../../../guests/sdk-js/src/workspace.js")),
    ("lily-guest/src/http.js", include_str!("../../../../guests/sdk-js/src/http.js")),
    ("lily-guest/wit/js.wit", include_str!("../../../../guests/sdk-js/wit/js.wit")),
    ("lily-guest/wit/deps/cli.wit", include_str!("../../../../guests/sdk-js/wit/deps/cli.wit")),
    ("lily-guest/wit/deps/clocks.wit", include_str!("../../../../guests/sdk-js/wit/deps/clocks.wit")),
    (
        "lily-guest/wit/deps/filesystem.wit",
        include_str!("../../../../guests/sdk-js/wit/deps/filesystem.wit"),
    ),
    ("lily-guest/wit/deps/io.wit", include_str!("../../../../guests/sdk-js/wit/deps/io.wit")),
    ("lily-guest/wit/deps/http.wit", include_str!("../../../../guests/sdk-js/wit/deps/http.wit")),
    ("lily-guest/wit/deps/random.wit", include_str!("../../../../guests/sdk-js/wit/deps/random.wit")),
    (
        "lily-guest/wit/deps/sockets.wit",
        include_str!("../../../../guests/sdk-js/wit/deps/sockets.wit"),
    ),
];
const T_PACKAGE: &str = include_str!("../../../assets/scaffold/js/package.json.tmpl");
const T_GITIGNORE: &str = include_str!("../../../assets/scaffold/js/gitignore.tmpl");
const T_README: &str = include_str!("../../../assets/scaffold/js/README.md.tmpl");
const T_COMPONENT_SPECIALIST: &str = include_str!("../../../assets/scaffold/js/component-specialist.js.tmpl");
const T_COMPONENT_SYNTHESIZER: &str = include_str!("../../../assets/scaffold/js/component-synthesizer.js.tmpl");
const T_SPECIALIST: &str = include_str!("../../../assets/scaffold/js/specialist.js.tmpl");
const T_SYNTHESIZER: &str = include_str!("../../../assets/scaffold/js/synthesizer.js.tmpl");
const T_TEST_SPECIALIST: &str = include_str!("../../../assets/scaffold/js/test-specialist.js.tmpl");
const T_TEST_SYNTHESIZER: &str = include_str!("../../../assets/scaffold/js/test-synthesizer.js.tmpl");

/// The interfaces a JS runnable may import, kept external by the bundler.
const EXTERNALS: &[&str] = &[
    "lily:runnable/events@0.1.1",
    "lily:runnable/effects@0.1.1",
    "lily:runnable/llm@0.1.1",
    "lily:runnable/types@0.1.1",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:http/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:cli/environment@0.2.12",
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/ip-name-lookup@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
];

/// The command that installs the pinned toolchain into the default tools directory.
pub fn install_command() -> String {
    format!(
        "npm install --prefix ~/.cache/lily-tools/jco-{JCO_VERSION} @bytecodealliance/jco@{JCO_VERSION} @bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION} @bytecodealliance/preview2-shim@{PREVIEW2_SHIM_VERSION}"
    )
}

pub(in crate::runnables) fn scaffold_files(name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    let vars = template_vars(name, kind);
    let (component, logic, test) = match kind {
        ScaffoldKind::Specialist => (T_COMPONENT_SPECIALIST, T_SPECIALIST, T_TEST_SPECIALIST),
        ScaffoldKind::Synthesizer => (T_COMPONENT_SYNTHESIZER, T_SYNTHESIZER, T_TEST_SYNTHESIZER),
    };
    let mut files = vec![
        ("package.json".into(), render(T_PACKAGE, &vars)?),
        (".gitignore".into(), render(T_GITIGNORE, &vars)?),
        ("README.md".into(), render(T_README, &vars)?),
        ("component.js".into(), render(component, &vars)?),
        (format!("src/{name}.js"), render(logic, &vars)?),
        (format!("test/{name}.test.js"), render(test, &vars)?),
        ("lily-guest/wit/runnable.wit".into(), RUNNABLE_WIT.to_string()),
    ];
    files.extend(SDK_FILES.iter().map(|(p, t)| (p.to_string(), t.to_string())));
    Ok(files)
}

/// The tools directory holding `node_modules/.bin/{rolldown,componentize-js}`
/// and the preview2-shim componentize-js needs to run.
fn tools_dir(project: &Path) -> Option<PathBuf> {
    let has = |d: &Path| {
        d.join("node_modules/.bin/componentize-js").is_file()
            && d.join("node_modules/.bin/rolldown").is_file()
            && d.join("node_modules/@bytecodealliance/preview2-shim/package.json").is_file()
    };
    if let Some(d) = std::env::var_os(JS_TOOLS_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d)).filter(|d| has(d));
    }
    let base = std::env::var_os("LILY_TOOLS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lily-tools")));
    if let Some(d) = base.map(|b| b.join(format!("jco-{JCO_VERSION}")))
        && has(&d)
    {
        return Some(d);
    }
    Some(project.to_path_buf()).filter(|d| has(d))
}

fn node_runs() -> bool {
    Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What `package.json` says: name and the `lily` settings.
struct Manifest {
    name: String,
    entry: String,
    wit: String,
    world: String,
}

fn manifest(dir: &Path) -> Result<Manifest, LilyError> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(|e| tool_error(format!("cannot read {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| tool_error(format!("{} is not JSON: {e}", path.display())))?;
    let lily = v.get("lily").cloned().unwrap_or_default();
    let field = |k: &str| lily.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into()));
    let flag = |k: &str| lily.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
    let default_world = match (flag("llm"), flag("http")) {
        (false, false) => "js-runnable",
        (true, false) => "js-llm",
        (false, true) => "js-http",
        (true, true) => "js-llm-http",
    };
    let wit = field("wit").unwrap_or_else(|| {
        if dir.join("lily-guest/wit").is_dir() {
            "lily-guest/wit"
        } else {
            "node_modules/lily-guest/wit"
        }
        .to_string()
    });
    let m = Manifest {
        name,
        entry: field("entry").unwrap_or_else(|| "component.js".into()),
        wit,
        world: field("world").unwrap_or_else(|| default_world.into()),
    };
    // Paths stay inside the project (they are joined to it and handed to tools).
    for (what, p) in [("lily.entry", &m.entry), ("lily.wit", &m.wit)] {
        let rel = Path::new(p);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(tool_error(format!("{}: {what} must be a path inside the project, got {p:?}", path.display())));
        }
    }
    if !m.world.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || m.world.is_empty() {
        return Err(tool_error(format!(
            "{}: lily.world must be a WIT world name, got {:?}",
            path.display(),
            m.world
        )));
    }
    Ok(m)
}

fn run_tool(opts: &BuildOptions, dir: &Path, tool: &Path, args: &[String], command: &str) -> Result<(), LilyError> {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| tool_error(format!("cannot run {}: {e}", tool.display())))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.trim().is_empty() {
            (opts.progress)(stdout.trim_end());
        }
        return Err(tool_error(format!(
            "`{command}` failed in {} ({}); its messages are above",
            dir.display(),
            out.status
        )));
    }
    Ok(())
}

pub(in crate::runnables) fn compile(opts: &BuildOptions, dir: &Path) -> Result<Built, LilyError> {
    let m = manifest(dir)?;
    if !dir.join(&m.entry).is_file() {
        return Err(
            tool_error(format!("{} has no {} (the module that exports describe/run)", dir.display(), m.entry))
                .with_hint("scaffold with `lily runnables new <name> --lang js`, or set \"lily\": {\"entry\": \"<file>\"} in package.json"),
        );
    }
    if !dir.join(&m.wit).join("runnable.wit").is_file() {
        return Err(tool_error(format!("{} has no {}/runnable.wit (the Run Contract)", dir.display(), m.wit))
            .with_hint("vendor the SDK (`lily runnables new <name> --lang js` writes lily-guest/), or `npm install` a project that depends on lily-guest"));
    }
    if !node_runs() {
        return Err(tool_error("node is not installed (JavaScript runnables are built with Node 20 or newer)")
            .with_hint("install Node.js 20+ (e.g. `apt-get install nodejs npm`), then the toolchain: ".to_string() + &install_command()));
    }
    let tools = tools_dir(dir).ok_or_else(|| {
        tool_error(format!(
            "the JavaScript component toolchain (jco {JCO_VERSION} with componentize-js {COMPONENTIZE_JS_VERSION}) is not installed"
        ))
        .with_hint(format!(
            "install it with `{}`, or set {JS_TOOLS_ENV} to a directory holding it",
            install_command()
        ))
    })?;
    let bin = tools.join("node_modules/.bin");
    let file = format!("{}.wasm", m.name.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'), "_"));
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir).map_err(|e| tool_error(format!("cannot create {}: {e}", out_dir.display())))?;
    let wasm = out_dir.join(&file);

    let bundle_args: Vec<String> = vec![
        m.entry.clone(),
        "--format".into(),
        "esm".into(),
        "--file".into(),
        "build/bundle.js".into(),
        "--logLevel".into(),
        "warn".into(),
        "--external".into(),
        EXTERNALS.join(","),
    ];
    let bundle_cmd = format!("rolldown {} --format esm --file build/bundle.js", m.entry);
    (opts.progress)(&format!("bundling {} with `{bundle_cmd}`", m.name));
    run_tool(opts, dir, &bin.join("rolldown"), &bundle_args, &bundle_cmd)?;

    let args: Vec<String> = ["--wit", &m.wit, "-n", &m.world, "-d", "http", "fetch-event", "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("build/{file}"), "build/bundle.js".into()])
        .collect();
    let command = format!("componentize-js {}", args.join(" "));
    (opts.progress)(&format!("building {} with `{command}` (about 30 s)", m.name));
    run_tool(opts, dir, &bin.join("componentize-js"), &args, &command)?;
    if !wasm.is_file() {
        return Err(tool_error(format!("the build succeeded but {} does not exist", wasm.display())));
    }
    Ok(Built {
        name: m.name,
        dir: dir.to_path_buf(),
        wasm,
        command,
        target: crate::runnables::TARGET_WASIP2.to_string(),
    })
}
