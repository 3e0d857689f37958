//! Python runnables: `lily runnables new --lang python` (the SDK of
//! `guests/sdk-python` and the Run Contract WIT vendored, a unittest test)
//! and `lily runnables build` of a `pyproject.toml` / `app.py` project
//! with componentize-py.

use super::{Built, find_tool};
use crate::error::LilyError;
use crate::runnables::BuildOptions;
use crate::runnables::scaffold::{RUNNABLE_WIT, ScaffoldError, ScaffoldKind, render, template_vars, tool_error};
use std::path::Path;
use std::process::{Command, Stdio};

/// The componentize-py release the SDK is written against.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// Names the componentize-py executable when it is not on PATH.
pub const COMPONENTIZE_PY_ENV: &str = "LILY_COMPONENTIZE_PY";

/// The worlds a Python project builds against (vendored as `wit/python.wit`
/// next to the Run Contract): `python-runnable` imports no `llm`, because
/// componentize-py imports every interface of its world and the host runs a
/// component importing `llm` only where policy grants models.
pub(in crate::runnables) const PYTHON_WIT: &str = include_str!("../../../../guests/sdk-python/wit/python.wit");
const WORLD: &str = "python-runnable";
const WORLD_LLM: &str = "python-llm";
const WORLD_HTTP: &str = "python-http";
const WORLD_LLM_HTTP: &str = "python-llm-http";

/// The WASI 0.2.12 WIT the `python-http` worlds refer to (`wit/deps/`; the
/// Rust SDK's `wit-http/deps`, as wasmtime-wasi-http 48 ships it).
pub(in crate::runnables) const WIT_DEPS: &[(&str, &str)] = &[
    ("wit/deps/cli.wit", include_str!("../../../../guests/sdk/wit-http/deps/cli.wit")),
    ("wit/deps/clocks.wit", include_str!("../../../../guests/sdk/wit-http/deps/clocks.wit")),
    ("wit/deps/filesystem.wit", include_str!("../../../../guests/sdk/wit-http/deps/filesystem.wit")),
    ("wit/deps/http.wit", include_str!("../../../../guests/sdk/wit-http/deps/http.wit")),
    ("wit/deps/io.wit", include_str!("../../../../guests/sdk/wit-http/deps/io.wit")),
    ("wit/deps/random.wit", include_str!("../../../../guests/sdk/wit-http/deps/random.wit")),
    ("wit/deps/sockets.wit", include_str!("../../../../guests/sdk/wit-http/deps/sockets.wit")),
];

pub(in crate::runnables) const SDK_FILES: &[(&str, &str)] = &[
    ("lily_guest/__init__.py", include_str!("../../../../guests/sdk-python/lily_guest/__init__.py")),
    ("lily_guest/council.py", include_str!("../../../../guests/sdk-python/lily_guest/council.py")),
    ("lily_guest/runtime.py", include_str!("../../../../guests/sdk-python/lily_guest/runtime.py")),
    ("lily_guest/http.py", include_str!("../../../../guests/sdk-python/lily_guest/http.py")),
];
const T_PYPROJECT: &str = include_str!("../../../assets/scaffold/python/pyproject.toml.tmpl");
const T_SPECIALIST: &str = include_str!("../../../assets/scaffold/python/specialist.py.tmpl");
const T_SYNTHESIZER: &str = include_str!("../../../assets/scaffold/python/synthesizer.py.tmpl");
const T_TEST_SPECIALIST: &str = include_str!("../../../assets/scaffold/python/test_specialist.py.tmpl");
const T_TEST_SYNTHESIZER: &str = include_str!("../../../assets/scaffold/python/test_synthesizer.py.tmpl");
const T_GITIGNORE: &str = include_str!("../../../assets/scaffold/python/gitignore.tmpl");
const T_README: &str = include_str!("../../../assets/scaffold/python/README.md.tmpl");

/// The install command a missing componentize-py error names.
pub fn install_command() -> String {
    format!("pip install componentize-py=={COMPONENTIZE_PY_VERSION}")
}

pub(in crate::runnables) fn scaffold_files(name: &str, kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    let vars = template_vars(name, kind);
    let (app, test) = match kind {
        ScaffoldKind::Specialist => (T_SPECIALIST, T_TEST_SPECIALIST),
        ScaffoldKind::Synthesizer => (T_SYNTHESIZER, T_TEST_SYNTHESIZER),
    };
    let mut files = vec![
        ("pyproject.toml".into(), render(T_PYPROJECT, &vars)?),
        (".gitignore".into(), render(T_GITIGNORE, &vars)?),
        ("README.md".into(), render(T_README, &vars)?),
        ("app.py".into(), render(app, &vars)?),
        ("test_app.py".into(), render(test, &vars)?),
        ("wit/runnable.wit".into(), RUNNABLE_WIT.to_string()),
        ("wit/python.wit".into(), PYTHON_WIT.to_string()),
    ];
    files.extend(SDK_FILES.iter().chain(WIT_DEPS).map(|(p, t)| (p.to_string(), t.to_string())));
    Ok(files)
}

/// The string or boolean value of `key` in `[section]` of `pyproject.toml`
/// (a line-level reader: `key = "text"`, `key = 'text'`, `key = true`).
fn pyproject_value(dir: &Path, section: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("pyproject.toml")).ok()?;
    let header = format!("[{section}]");
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            if k.trim() != key {
                continue;
            }
            let v = v.split(" #").next().unwrap_or("").trim().trim_matches('"').trim_matches('\'');
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

/// A `true` / `false` flag under `[tool.lily]` (absent: false).
fn flag(dir: &Path, key: &str) -> Result<bool, LilyError> {
    match pyproject_value(dir, "tool.lily", key).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(tool_error(format!("pyproject.toml: [tool.lily] {key} must be true or false, got {other:?}"))),
    }
}

/// The world to build against, from `llm` / `http` under `[tool.lily]`:
/// `python-runnable`, `python-llm`, `python-http` or `python-llm-http`;
/// `runnable` (which imports `llm`) for a project scaffolded before
/// `wit/python.wit` existed.
fn world(dir: &Path) -> Result<&'static str, LilyError> {
    let (llm, http) = (flag(dir, "llm")?, flag(dir, "http")?);
    if !dir.join("wit/python.wit").is_file() {
        if http {
            return Err(tool_error("pyproject.toml asks for http, but wit/python.wit is missing")
                .with_hint("copy wit/python.wit and wit/deps/ from a `lily runnables new <name> --lang python` project"));
        }
        return Ok("runnable");
    }
    if http && !dir.join("wit/deps/http.wit").is_file() {
        return Err(tool_error("pyproject.toml asks for http, but wit/deps/http.wit (the WASI HTTP WIT) is missing")
            .with_hint("copy wit/deps/ from a `lily runnables new <name> --lang python` project"));
    }
    Ok(match (llm, http) {
        (false, false) => WORLD,
        (true, false) => WORLD_LLM,
        (false, true) => WORLD_HTTP,
        (true, true) => WORLD_LLM_HTTP,
    })
}

pub(in crate::runnables) fn compile(opts: &BuildOptions, dir: &Path) -> Result<Built, LilyError> {
    if !dir.join("app.py").is_file() {
        return Err(tool_error(format!("{} has no app.py (the module componentize-py exports)", dir.display()))
            .with_hint("define `WitWorld = lily_guest.export(MyRunnable)` in app.py, or scaffold with `lily runnables new <name> --lang python`"));
    }
    if !dir.join("wit/runnable.wit").is_file() {
        return Err(tool_error(format!("{} has no wit/runnable.wit (the Run Contract)", dir.display()))
            .with_hint("copy wit/runnable.wit from a `lily runnables new <name> --lang python` project"));
    }
    let tool = find_tool(COMPONENTIZE_PY_ENV, "componentize-py").ok_or_else(|| {
        tool_error("componentize-py is not installed (it builds Python runnables into components)").with_hint(format!(
            "install it with `{}` (a 17 MB wheel; in a venv if your Python is managed), or set {COMPONENTIZE_PY_ENV} to its path",
            install_command()
        ))
    })?;
    let world = world(dir)?;
    if world == "runnable" {
        (opts.progress)(
            "wit/python.wit is missing: building against `runnable`, which imports `llm` (the policy must grant this runnable a model); \
             copy wit/python.wit from a `lily runnables new <name> --lang python` project to build without it",
        );
    }
    let name =
        pyproject_value(dir, "project", "name").unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into()));
    let file = format!("{}.wasm", name.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'), "_"));
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir).map_err(|e| tool_error(format!("cannot create {}: {e}", out_dir.display())))?;
    let wasm = out_dir.join(&file);
    let args = ["-d", "wit", "-w", world, "componentize", "app", "-p", ".", "-o"];
    let command = format!("componentize-py {} build/{file}", args.join(" "));
    (opts.progress)(&format!("building {name} with `{command}` (about a minute)"));
    let out = Command::new(&tool)
        .args(args)
        .arg(&wasm)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| tool_error(format!("cannot run {}: {e}", tool.display())))?;
    if !out.stdout.is_empty() {
        (opts.progress)(String::from_utf8_lossy(&out.stdout).trim_end());
    }
    if !out.status.success() {
        return Err(tool_error(format!(
            "`{command}` failed in {} ({}); its messages are above",
            dir.display(),
            out.status
        )));
    }
    if !wasm.is_file() {
        return Err(tool_error(format!("the build succeeded but {} does not exist", wasm.display())));
    }
    Ok(Built {
        name,
        dir: dir.to_path_buf(),
        wasm,
        command,
        target: crate::runnables::TARGET_WASIP2.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_imports_llm_only_when_pyproject_asks_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("wit")).expect("wit");
        let pyproject = |extra: &str| {
            std::fs::write(d.join("pyproject.toml"), format!("[project]\nname = \"x\"\n{extra}")).expect("write");
        };
        // Before wit/python.wit: the Run Contract's own world.
        pyproject("");
        assert_eq!(world(d).expect("world"), "runnable");
        std::fs::write(d.join("wit/python.wit"), PYTHON_WIT).expect("write");
        assert_eq!(world(d).expect("world"), WORLD);
        pyproject("\n[tool.lily]\nllm = false\n");
        assert_eq!(world(d).expect("world"), WORLD);
        pyproject("\n[tool.lily]\nllm = true  # model-backed\n");
        assert_eq!(world(d).expect("world"), WORLD_LLM);
        // `llm` under another table is not Lily's.
        pyproject("\n[tool.other]\nllm = true\n");
        assert_eq!(world(d).expect("world"), WORLD);
        pyproject("\n[tool.lily]\nllm = \"yes\"\n");
        assert!(world(d).expect_err("refused").to_string().contains("llm must be true or false"));
        // http needs the WASI WIT in wit/deps/.
        pyproject("\n[tool.lily]\nhttp = true\n");
        assert!(world(d).expect_err("refused").to_string().contains("wit/deps/http.wit"));
        std::fs::create_dir_all(d.join("wit/deps")).expect("deps");
        std::fs::write(d.join("wit/deps/http.wit"), "").expect("write");
        assert_eq!(world(d).expect("world"), WORLD_HTTP);
        pyproject("\n[tool.lily]\nhttp = true\nllm = true\n");
        assert_eq!(world(d).expect("world"), WORLD_LLM_HTTP);
        assert_eq!(pyproject_value(d, "project", "name").as_deref(), Some("x"));
    }

    #[test]
    fn the_python_worlds_export_what_the_runnable_world_exports() {
        for w in [WORLD, WORLD_LLM, WORLD_HTTP, WORLD_LLM_HTTP] {
            assert!(PYTHON_WIT.contains(&format!("world {w} {{")), "{w}");
        }
        for export in [
            "export describe: func() -> descriptor;",
            "export run: func(input: string) -> result<envelope, run-error>;",
        ] {
            assert!(RUNNABLE_WIT.contains(export) && PYTHON_WIT.contains(export), "{export}");
        }
        assert_eq!(PYTHON_WIT.matches("import llm;").count(), 1, "only python-llm imports llm");
        assert_eq!(PYTHON_WIT.matches("import wasi:http/outgoing-handler@0.2.12;").count(), 2);
        // The WASI WIT the http worlds use is vendored whole.
        assert!(
            WIT_DEPS
                .iter()
                .any(|(p, t)| *p == "wit/deps/http.wit" && t.contains("package wasi:http@0.2.12;"))
        );
    }
}
