//! Builds the built-in plugins (`plugins/*`) from source as WebAssembly components
//! (`components.rs`) and embeds them in the binary (`$OUT_DIR/builtins.rs`), so `pagewright serve`
//! needs no files beside it. The test guests are not built here: they are the `pagewright-test-guests`
//! crate's (`tests/guests`), which only the tests and the bench depend on.

mod components;

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let host_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = host_dir
        .parent()
        .expect("the host crate lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    components::rerun_if_changed(&workspace, &["plugins", "plugin-sdk", "wit", "Cargo.lock"]);

    let builtins = components::crates_in(&workspace.join("plugins"));
    let packages: Vec<String> = builtins
        .iter()
        .map(|name| format!("pagewright-plugin-{name}"))
        .collect();
    let built = components::build(&workspace, &out_dir, &packages);

    let mut source = String::from(
        "/// The built-in plugins, built from `plugins/` by `host/build/main.rs`: (name, component bytes).\n",
    );
    source.push_str("pub(crate) const BUILTINS: &[(&str, &[u8])] = &[\n");
    for (name, path) in builtins.iter().zip(&built) {
        source.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    source.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), source).expect("writing builtins.rs");
}
