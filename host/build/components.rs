//! Building Rust crates of this workspace into WebAssembly components, for the build scripts of the
//! host (the built-in plugins) and of the test guests (`tests/guests`). Both include this file.
//!
//! Each crate is a plain library (an `rlib`), so `cargo build --workspace` and `cargo clippy` treat it
//! like any other. The component comes from `cargo rustc --crate-type cdylib --target wasm32-wasip2`:
//! a native `cdylib` of a crate with component exports does not link (the exports' names hold `:`
//! and `@`, which the native linker's version script refuses).
//!
//! The nested cargo builds into a target directory of its own (the outer build holds the lock on the
//! normal one), `target/wasm-guests`, which outlives build-script hashes and keeps the builds
//! incremental.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

pub const TARGET: &str = "wasm32-wasip2";

/// The crate folders directly under `dir`, sorted.
pub fn crates_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Builds each package of `packages` as a component, in release mode whatever the outer build is,
/// and returns the path of each component, in order.
pub fn build(workspace: &Path, out_dir: &Path, packages: &[String]) -> Vec<PathBuf> {
    let target_dir = guest_target_dir(out_dir);
    for package in packages {
        let mut cargo = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(workspace)
            .args(["rustc", "--release", "--lib", "--crate-type", "cdylib"])
            .args(["--target", TARGET, "-p", package, "--target-dir"])
            .arg(&target_dir);
        // Plain release builds: no wrapper (clippy runs the outer build through one), no host
        // flags, and no debug info (it would make the components 20x larger).
        for inherited in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CLIPPY_ARGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
        ] {
            cargo.env_remove(inherited);
        }
        cargo
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true");
        let output = cargo
            .output()
            .unwrap_or_else(|error| panic!("running cargo to build {package}: {error}"));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let hint = if stderr.contains("target may not be installed")
                || stderr.contains("can't find crate for `core`")
            {
                format!("\n\nThe {TARGET} target is missing: run `rustup target add {TARGET}`.")
            } else {
                String::new()
            };
            panic!("building {package} (cargo rustc --target {TARGET}) failed:\n{stderr}{hint}");
        }
    }
    let built = target_dir.join(TARGET).join("release");
    packages
        .iter()
        .map(|package| {
            let path = built.join(format!("{}.wasm", package.replace('-', "_")));
            assert!(
                path.exists(),
                "the build of {package} did not produce {}",
                path.display()
            );
            path
        })
        .collect()
}

/// Asks cargo to run the build script again when anything under these paths of `workspace` changes.
pub fn rerun_if_changed(workspace: &Path, watched: &[&str]) {
    for path in watched {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
}

/// `target/wasm-guests` beside the outer build's profile folders: `$OUT_DIR` is
/// `target/[triple/]profile/build/PACKAGE-HASH/out`.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is target/PROFILE/build/PACKAGE/out");
    profile_dir
        .parent()
        .unwrap_or(profile_dir)
        .join("wasm-guests")
}
