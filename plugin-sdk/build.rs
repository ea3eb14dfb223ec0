//! Writes the `plugin!` macro's binding generator with the absolute path of the WIT package, so a plugin
//! crate anywhere on disk generates its export glue from the same `wit/` the host binds to.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let wit = manifest_dir.join("../wit/plugin@0.2.0");
    let wit = fs::canonicalize(&wit)
        .unwrap_or_else(|error| panic!("finding the WIT package at {}: {error}", wit.display()));
    println!("cargo:rerun-if-changed={}", wit.display());
    let wit = wit.to_str().expect("the WIT path is UTF-8");

    let generator = format!(
        r#"/// Generates the export glue of one role world in the plugin's crate. `$world` is the WIT world.
#[doc(hidden)]
#[macro_export]
macro_rules! __generate_role {{
    ($world:tt) => {{
        $crate::__private::wit_bindgen::generate!({{
            path: {wit:?},
            world: $world,
            runtime_path: "::pagewright_sdk::__private::wit_bindgen::rt",
            with: {{
                "pagewright:plugin/types@0.2.0": ::pagewright_sdk::__private::bindings::pagewright::plugin::types,
                "pagewright:plugin/log@0.2.0": ::pagewright_sdk::__private::bindings::pagewright::plugin::log,
                "pagewright:plugin/page@0.2.0": ::pagewright_sdk::__private::bindings::pagewright::plugin::page,
            }},
        }});
    }};
}}
"#
    );
    let out =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("generate_role.rs");
    fs::write(&out, generator).unwrap_or_else(|error| panic!("writing {}: {error}", out.display()));
}
