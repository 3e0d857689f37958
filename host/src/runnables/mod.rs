//! Runnables: the catalogue (built-ins and `.lily/runnables/`) and install
//! (`catalogue.rs`), and authoring — `lily runnables new` scaffolds a guest
//! crate (`scaffold.rs`), `lily runnables build` builds it (`build.rs`) and
//! checks it against the Run Contract the way `install` and the jobs will
//! (`contract.rs`).
//!
//! A scaffolded crate lives outside this repository, so it cannot depend on
//! `guests/sdk` by path: the SDK sources and `wit/runnable.wit` are embedded
//! in the `lily` binary and written into the new crate as a vendored
//! `lily-guest/` path crate (its WIT in `lily-guest/wit/`, not in the
//! crate's own `wit/`, so `cargo component` does not generate a second set
//! of bindings). The crate depends only on crates.io crates and builds with
//! both `cargo build --release --target wasm32-wasip2` and
//! `cargo component build --release`.

mod build;
mod catalogue;
mod contract;
mod lang;
mod scaffold;

pub use build::*;
pub use catalogue::*;
pub use contract::*;
pub use lang::Lang;
pub use scaffold::*;

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::contract::*;
    use super::scaffold::*;
    use super::*;
    use crate::error::ErrorCode;
    use crate::sandbox::SandboxOptions;
    use crate::sandbox::{Sandbox, host_provides};
    use std::path::{Path, PathBuf};

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

    /// The text of one scaffolded file (a test fails if it is missing).
    fn file_text<'a>(files: &'a [(String, String)], path: &str) -> &'a str {
        files
            .iter()
            .find(|(r, _)| r == path)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("{path} missing"))
    }

    #[test]
    fn scaffold_files_are_complete_and_filled_in() {
        for kind in [ScaffoldKind::Specialist, ScaffoldKind::Synthesizer] {
            let files = scaffold_files("my-check", kind).expect("files");
            for (rel, text) in files.iter().filter(|(r, _)| !r.starts_with("lily-guest/")) {
                assert!(!text.contains("{{"), "{rel} has an unfilled placeholder");
            }
            let get = |p: &str| file_text(&files, p);
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
            // Every source and WIT file of the repository's SDK is vendored
            // (a module the scaffold forgot would not build).
            let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/sdk");
            for sub in ["src", "wit-http", "wit-http/deps"] {
                for e in std::fs::read_dir(sdk.join(sub)).expect("sdk dir").flatten() {
                    if e.path().is_file() {
                        let rel = format!("lily-guest/{sub}/{}", e.file_name().to_string_lossy());
                        let want = std::fs::read_to_string(e.path()).expect("read");
                        if rel != "lily-guest/src/lib.rs" {
                            assert_eq!(get(&rel), want, "{rel} differs from the repository's SDK");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn vendored_sdk_uses_the_same_dependencies_as_the_repository_sdk() {
        // The scaffold must build with the versions the built-ins are proven with.
        let guests = include_str!("../../../guests/Cargo.toml");
        let wit_bindgen = guests.lines().find(|l| l.starts_with("wit-bindgen")).expect("wit-bindgen in guests/Cargo.toml");
        let version = wit_bindgen.split('"').nth(1).expect("a version");
        assert!(T_SDK_CARGO.contains(&format!("wit-bindgen = {{ version = \"{version}\"")), "{wit_bindgen}");
        assert!(SDK_LIB.contains("default_bindings_module: \"::lily_guest::bindings\""));
        assert!(T_SDK_CARGO.contains("name = \"lily-guest\""));
    }

    #[test]
    fn scaffold_refuses_a_non_empty_directory_and_bad_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = scaffold(tmp.path(), "my-check", ScaffoldKind::Specialist, Lang::Rust).expect("scaffold");
        assert!(s.dir.join("src/lib.rs").is_file() && s.dir.join("lily-guest/wit/runnable.wit").is_file());
        let e = scaffold(tmp.path(), "my-check", ScaffoldKind::Synthesizer, Lang::Rust).expect_err("exists");
        assert!(e.message.contains("already exists"), "{}", e.message);
        let e = scaffold(tmp.path(), "Bad Name", ScaffoldKind::Specialist, Lang::Rust).expect_err("bad name");
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
            tool: None,
            out: None,
            progress: quiet,
        };
        let e = compile(&opts).expect_err("no crate");
        assert_eq!(e.code, ErrorCode::BlueprintCompileFailed);
        assert!(e.message.contains("has no Cargo.toml, pyproject.toml, app.py or package.json"), "{}", e.message);
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("lily runnables new")));
        let opts = BuildOptions {
            path: tmp.path().join("missing"),
            ..opts
        };
        assert!(compile(&opts).is_err());
    }

    #[test]
    fn python_scaffold_vendors_the_sdk_and_the_wit() {
        for kind in [ScaffoldKind::Specialist, ScaffoldKind::Synthesizer] {
            let files = scaffold_files_in(Lang::Python, "my-check", kind).expect("files");
            let get = |p: &str| file_text(&files, p);
            assert!(get("app.py").contains("class MyCheck(lily.") && get("app.py").contains("WitWorld = lily.export(MyCheck)"));
            assert!(get("app.py").contains("id = \"my-check.v1\""));
            assert!(get("test_app.py").contains("from app import MyCheck"));
            assert_eq!(get("wit/runnable.wit"), RUNNABLE_WIT);
            assert_eq!(get("wit/python.wit"), lang::python::PYTHON_WIT);
            for (rel, text) in files.iter().filter(|(r, _)| !r.starts_with("lily_guest/") && !r.starts_with("wit/")) {
                assert!(!text.contains("{{"), "{rel} has an unfilled placeholder");
            }
            // Every module of the repository's Python SDK is vendored.
            let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/sdk-python/lily_guest");
            for e in std::fs::read_dir(&sdk).expect("sdk dir").flatten() {
                if e.path().extension().is_some_and(|x| x == "py") {
                    let rel = format!("lily_guest/{}", e.file_name().to_string_lossy());
                    assert_eq!(get(&rel), std::fs::read_to_string(e.path()).expect("read"), "{rel}");
                }
            }
        }
        assert_eq!(Lang::detect(Path::new(env!("CARGO_MANIFEST_DIR"))), Some(Lang::Rust));
        let js = scaffold_files_in(Lang::Js, "my-check", ScaffoldKind::Specialist).expect("js scaffold");
        assert!(js.iter().any(|(rel, _)| rel == "package.json"), "a JS project");
    }

    #[test]
    fn the_python_sdk_declares_the_rust_contracts_schemas() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/sdk-python");
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import lily_guest as l; print(l.specialist_input_schema()); print(l.specialist_output_schema()); print(l.synth_input_schema()); print(l.council_output_schema())")
            .env("PYTHONPATH", &sdk)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output();
        let Ok(out) = out else {
            assert!(std::env::var_os("CI").is_none(), "CI must have python3");
            eprintln!("SKIPPED the Python SDK schema check: no python3");
            return;
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        use lily_contract::council as c;
        assert_eq!(
            lines,
            vec![
                c::specialist_input_schema().as_str(),
                c::specialist_output_schema().as_str(),
                c::synth_input_schema().as_str(),
                c::council_output_schema().as_str()
            ]
        );
    }

    #[test]
    fn a_python_project_is_detected_and_refuses_a_rust_tool() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = scaffold(tmp.path(), "py-x", ScaffoldKind::Specialist, Lang::Python).expect("scaffold");
        assert_eq!(Lang::detect(&s.dir), Some(Lang::Python));
        let opts = BuildOptions {
            path: s.dir.clone(),
            tool: Some(BuildTool::Cargo),
            out: None,
            progress: quiet,
        };
        let e = compile(&opts).expect_err("wrong tool");
        assert!(e.message.contains("is a python project"), "{}", e.message);
        assert!(super::lang::find_tool("LILY_NO_SUCH_TOOL_VAR", "/nonexistent/componentize-py").is_none());
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
