//! Builds the guests workspace (`guests/`) for `wasm32-wasip2` and embeds the
//! built-in runnables in the `lily` binary. Test guests are not embedded;
//! their directory is exported to tests as `LILY_GUESTS_DIR`.
//!
//! Modelled on wasmtime's `test-programs` artifacts build script: one nested
//! `cargo build` with its own target dir, so it never contends with the
//! outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    let guests = root.join("guests");
    let wit = root.join("wit");
    for p in ["sdk", "builtin", "test", "hostile", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", guests.join(p).display());
    }
    println!("cargo:rerun-if-changed={}", wit.display());
    println!("cargo:rerun-if-changed={}", root.join("contract").display());
    println!("cargo:rerun-if-env-changed=LILY_SKIP_TARGET_INSTALL");

    pack_relative_relocations();
    ensure_target();

    let target_dir = guests.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--workspace")
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    if std::env::var_os("CI").is_some() && guests.join("Cargo.lock").exists() {
        cmd.arg("--locked");
    }
    // Do not leak the outer build's configuration into the guest build.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_PKG_")
            || [
                "CARGO_ENCODED_RUSTFLAGS",
                "RUSTFLAGS",
                "CARGO_TARGET_DIR",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_PRIMARY_PACKAGE",
                "RUSTC_WORKSPACE_WRAPPER",
                "TARGET",
                "HOST",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "OUT_DIR",
                "NUM_JOBS",
            ]
            .contains(&k.as_str())
        {
            cmd.env_remove(&k);
        }
    }
    let status = cmd.status().expect("failed to run cargo for the guests workspace");
    if !status.success() {
        panic!("building the guests workspace ({}) for {TARGET} failed", guests.display());
    }

    let wasm_dir = target_dir.join(TARGET).join("release");
    let mut builtins = Vec::new();
    for entry in sorted_dirs(&guests.join("builtin")) {
        let crate_name = entry.file_name().expect("name").to_string_lossy().replace('-', "_");
        let wasm = wasm_dir.join(format!("{crate_name}.wasm"));
        assert!(wasm.exists(), "expected guest artifact {}", wasm.display());
        builtins.push((crate_name, wasm));
    }
    let mut src = String::from("/// Built-in runnables embedded at build time: (crate name, component bytes).\npub const BUILTINS: &[(&str, &[u8])] = &[\n");
    for (name, wasm) in &builtins {
        src.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", wasm.display().to_string()));
    }
    src.push_str("];\n");
    // Their digests, computed here from the same files (a load of a
    // built-in does not hash it again; a unit test checks they agree).
    src.push_str("/// `sha256:<hex>` of each built-in, by crate name (computed by build.rs).\npub const BUILTIN_DIGESTS: &[(&str, &str)] = &[\n");
    for (name, wasm) in &builtins {
        use sha2::Digest;
        let bytes = std::fs::read(wasm).expect("read guest artifact");
        src.push_str(&format!("    ({name:?}, \"sha256:{}\"),\n", hex::encode(sha2::Sha256::digest(&bytes))));
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("builtin_guests.rs");
    std::fs::write(&out, src).expect("write builtin_guests.rs");
    println!("cargo:rustc-env=LILY_GUESTS_DIR={}", wasm_dir.display());
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    v.sort();
    v
}

/// Make sure the `wasm32-wasip2` standard library is installed: add it with
/// rustup when it is missing, or fail with the exact command to run.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |s: &Option<PathBuf>| s.as_ref().is_some_and(|s| s.join("lib/rustlib").join(TARGET).exists());
    if installed(&sysroot) {
        return;
    }
    let hint = format!("the Rust target {TARGET} is missing: install it with `rustup target add {TARGET}`");
    if std::env::var_os("LILY_SKIP_TARGET_INSTALL").is_some() {
        panic!("{hint}");
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok || !installed(&sysroot) {
        panic!("{hint} (automatic install failed)");
    }
}

/// Link the `lily` binary with packed relative relocations (`DT_RELR`,
/// `-z pack-relative-relocs`) on Linux with glibc: the position-independent
/// binary keeps its ~100,000 relative relocations (address-space layout
/// randomisation stays), but as a bitmap of a few KiB instead of a 2.4 MB
/// `RELA` table the dynamic loader reads at every start (glibc ≥ 2.36,
/// GNU ld ≥ 2.38 or lld; GNU ld before 2.38 ignores an unknown `-z`
/// keyword with a warning). A binary so linked needs `GLIBC_ABI_DT_RELR`,
/// so an older glibc refuses to start it rather than misrun it — `lily`
/// is built where it runs (`cargo install`, the README). `LILY_NO_RELR=1`
/// links without it. Only the binaries' link changes: no dependency is
/// rebuilt.
fn pack_relative_relocations() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("LILY_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=LILY_NO_RELR");
}
