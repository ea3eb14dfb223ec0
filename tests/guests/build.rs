//! Builds every guest crate in this folder (`pagewright-guest-<folder>`) as a WebAssembly component,
//! with the host's own recipe (`host/build/components.rs`), and tells the library where they are.

#[path = "../../host/build/components.rs"]
mod components;

use std::env;
use std::path::PathBuf;

fn main() {
    let here =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = here
        .ancestors()
        .nth(2)
        .expect("tests/guests lives two folders down the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    components::rerun_if_changed(
        &workspace,
        &["tests/guests", "plugin-sdk", "wit", "Cargo.lock"],
    );

    let guests = components::crates_in(&here);
    let packages: Vec<String> = guests
        .iter()
        .map(|name| format!("pagewright-guest-{name}"))
        .collect();
    let built = components::build(&workspace, &out_dir, &packages);

    let mut source = String::from(
        "/// Every guest: (name, path of its component).\nconst GUESTS: &[(&str, &str)] = &[\n",
    );
    for (name, path) in guests.iter().zip(&built) {
        source.push_str(&format!(
            "    ({name:?}, {:?}),\n",
            path.display().to_string()
        ));
    }
    source.push_str("];\n");
    std::fs::write(out_dir.join("guests.rs"), source).expect("writing guests.rs");
}
