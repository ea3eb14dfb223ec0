//! Builds the built-in plugins (`plugins/*`) and the test guests (`tests/guests/*`) from source as
//! WebAssembly components, with a nested `cargo build --target wasm32-wasip2` into a target directory
//! of their own (the outer build holds the lock on the normal one).
//!
//! The built-ins are embedded in the binary (`$OUT_DIR/builtins.rs`), so `pagewright serve` needs no
//! files beside it; the test guests are copied to `$OUT_DIR/guests/NAME.wasm` for the integration
//! tests and the bench.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let host_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = host_dir
        .parent()
        .expect("the host crate lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["plugins", "tests/guests", "plugin-sdk", "wit", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let builtins = crates_in(&workspace.join("plugins"));
    let guests = crates_in(&workspace.join("tests/guests"));
    let packages = builtins
        .iter()
        .map(|name| format!("pagewright-plugin-{name}"))
        .chain(guests.iter().map(|name| format!("pagewright-guest-{name}")));

    let target_dir = guest_target_dir(&out_dir);
    let mut cargo = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for package in packages {
        cargo.args(["-p", &package]);
    }
    // The guests are built as plain release builds whatever the outer build is: no wrapper (clippy runs
    // the outer build through one), no host flags, and no debug info (it would make them 20x larger).
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
        .unwrap_or_else(|error| panic!("running cargo to build the plugins: {error}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!("\n\nThe {TARGET} target is missing: run `rustup target add {TARGET}`.")
        } else {
            String::new()
        };
        panic!("building the plugins (cargo build --target {TARGET}) failed:\n{stderr}{hint}");
    }

    let built = target_dir.join(TARGET).join("release");
    let component =
        |prefix: &str, name: &str| built.join(format!("{prefix}_{}.wasm", name.replace('-', "_")));
    let mut source = String::from(
        "/// The built-in plugins, built from `plugins/` by `host/build.rs`: (name, component bytes).\n",
    );
    source.push_str("pub(crate) const BUILTINS: &[(&str, &[u8])] = &[\n");
    for name in &builtins {
        let path = component("pagewright_plugin", name);
        assert!(
            path.exists(),
            "the plugin build did not produce {}",
            path.display()
        );
        source.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    source.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), source).expect("writing builtins.rs");

    let guests_dir = out_dir.join("guests");
    fs::create_dir_all(&guests_dir).expect("creating the guests folder");
    for name in &guests {
        let from = component("pagewright_guest", name);
        fs::copy(&from, guests_dir.join(format!("{name}.wasm")))
            .unwrap_or_else(|error| panic!("copying {}: {error}", from.display()));
    }
    println!(
        "cargo:rustc-env=PAGEWRIGHT_TEST_GUESTS_DIR={}",
        guests_dir.display()
    );
}

/// The crate folders directly under `dir`, sorted.
fn crates_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// `target/wasm-guests` beside the outer build's profile folders: `$OUT_DIR` is
/// `target/[triple/]profile/build/pagewright-HASH/out`, and a folder that outlives build-script hashes
/// keeps the guest builds incremental.
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
