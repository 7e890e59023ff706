//! The nested cargo build of guest crates, for build scripts: `tenken-bundled` builds what
//! ships, `tenken-test-artifacts` the test fixtures, both through [`build`].
//!
//! Why a nested cargo (the pattern of wasmtime's `test-programs` artifacts crate): a plain
//! `cargo build` / `cargo test` of the host must produce the plugins it needs, on a fresh
//! machine, with no extra step. The guests get their own target dir inside the calling build
//! script's OUT_DIR so the outer build's lock is never contended.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// Builds the guest crates `plugins/<name>` (package `tenken-<name>`) for wasm32-wasip2 and
/// copies each component to `OUT_DIR/plugins/tenken_<name>.wasm`; returns (name, path) in
/// the order given. Call from a build script only (reads its environment, prints its
/// `rerun-if-changed` lines, panics on failure with cargo's output above).
pub fn build(names: &[&str]) -> Vec<(String, PathBuf)> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for watched in ["plugins", "wit", "host/model", "host/master", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    ensure_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out_dir.join("wasm-target");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Small, fast guests: no debug info (names stay for backtraces), one codegen unit.
        .args(["--config", "profile.release.debug=false"])
        .args(["--config", "profile.release.strip=\"debuginfo\""])
        .args(["--config", "profile.release.codegen-units=1"]);
    for p in names {
        cmd.arg("-p").arg(format!("tenken-{p}"));
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("could not run cargo to build the wasm plugins");
    if !status.success() {
        panic!("building the wasm plugins failed (see the cargo output above)");
    }

    let built = target_dir.join(TARGET).join("release");
    let plugins_out = out_dir.join("plugins");
    std::fs::create_dir_all(&plugins_out).unwrap();
    names.iter().map(|p| (p.to_string(), copy_artifact(&built, &plugins_out, p))).collect()
}

fn copy_artifact(built: &Path, out: &Path, name: &str) -> PathBuf {
    let file = format!("tenken_{}.wasm", name.replace('-', "_"));
    let src = built.join(&file);
    let dst = out.join(&file);
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("missing {}: {e}", src.display()));
    dst
}

/// Installs the wasm32-wasip2 standard library with rustup when it is missing, so a fresh
/// machine needs nothing but the Rust toolchain.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot {
        if Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists() {
            return;
        }
    }
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed: install it and rebuild"),
    }
}
