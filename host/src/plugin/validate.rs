//! The checks a component passes before it becomes a plugin, each failing with a message that names
//! what is wrong: the binary's header, the interfaces it imports, and the `pagewright:plugin` interfaces
//! it exports.

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre};

use super::exports::{Exports, PACKAGE, VERSIONS};
use super::state::PluginState;

/// `\0asm`, then the version and layer of a component (`0d 00 01 00`) or a core module (`01 00 00 00`).
const MAGIC: &[u8; 4] = b"\0asm";
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Interfaces a plugin may import, without their `@version`: the host's own, and WASI 0.2 but HTTP.
/// The filesystem and sockets are there because toolchains import them whole, but a plugin's context
/// opens no directory and refuses every socket (`engine::linker`): it reaches the web only through
/// its page.
const ALLOWED_IMPORTS: &[&str] = &[
    "pagewright:plugin/types",
    "pagewright:plugin/log",
    "pagewright:plugin/page",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// Refuses anything but a binary component before the compiler sees it, with a hint for the usual
/// mistake (a core module from `cargo build --target wasm32-unknown-unknown` or a C compiler).
pub(super) fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(format!(
            "it is not a WebAssembly binary ({} bytes, not starting with `\\0asm`)",
            bytes.len()
        ));
    }
    let version = &bytes[4..8];
    if version == CORE_MODULE_VERSION {
        return Err(
            "it is a core WebAssembly module, not a component: make a component of it \
                    (`jco new --wasi-reactor` or `wasm-tools component new`), or build for \
                    wasm32-wasip2"
                .into(),
        );
    }
    if version != COMPONENT_VERSION {
        return Err(format!(
            "it is a WebAssembly binary of an unknown version or layer ({version:02x?})"
        ));
    }
    Ok(())
}

/// Every interface the component imports must be in [`ALLOWED_IMPORTS`]; the first that is not is
/// named, with what to do about it. Returns the imports.
pub(super) fn check_imports(engine: &Engine, component: &Component) -> Result<Vec<String>, String> {
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    check_import_names(&imports)?;
    Ok(imports)
}

/// [`check_imports`] on the binary, before it is compiled: reading the component's own import
/// section takes milliseconds, compiling it seconds (about 15 for a JavaScript plugin), and a
/// component that imports what it may not is refused either way. A binary that does not parse
/// here is left for the compiler to describe.
pub(super) fn check_imports_before_compiling(bytes: &[u8]) -> Result<(), String> {
    let mut imports = Vec::new();
    // Each component or module starts with its version and ends with its end: the outermost
    // component's imports are the host's to satisfy; nested ones are satisfied inside it.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let Ok(import) = import else {
                        return Ok(());
                    };
                    imports.push(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    check_import_names(&imports)
}

fn check_import_names(imports: &[String]) -> Result<(), String> {
    for import in imports {
        let interface = import.split('@').next().unwrap_or(import);
        if !ALLOWED_IMPORTS.contains(&interface) {
            return Err(format!(
                "it imports `{import}`, which plugins may not use: {}. A plugin may import \
                 pagewright:plugin/{{types,log,page}}, and WASI 0.2's io, clocks, random, cli, \
                 filesystem and sockets (with no directory and no network)",
                why_not(interface)
            ));
        }
    }
    Ok(())
}

/// Why an interface is refused, and the usual way to stop importing it.
fn why_not(interface: &str) -> &'static str {
    if interface.starts_with("wasi:http/") {
        "plugins make no HTTP requests of their own; navigate the page instead (componentize-js: \
         build with `-d http -d fetch-event`)"
    } else if interface.starts_with("pagewright:plugin/") {
        "this server implements pagewright:plugin@0.2.0 and @0.1.0 (types, log, page)"
    } else {
        "this server does not provide it"
    }
}

/// Which roles the component exports, and in which WIT version. An export in the `pagewright:plugin`
/// package must be one of the three role interfaces of a version this server serves, with that
/// version's types; a component must export at least one, all in the same version.
pub(super) fn check_exports(
    engine: &Engine,
    component: &Component,
    pre: &InstancePre<PluginState>,
) -> Result<Exports, String> {
    let mut versions: Vec<&str> = Vec::new();
    for (export, _) in component.component_type().exports(engine) {
        let Some((interface, version)) = export
            .strip_prefix(PACKAGE)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| rest.split_once('@').unwrap_or((rest, "")))
        else {
            // Other exports (a toolchain's own `init`, say) are not the host's business.
            continue;
        };
        let served = VERSIONS.iter().find(|served| **served == version);
        let error = match served {
            None => format!(
                "this server speaks {PACKAGE}@{} , not version `{version}`",
                VERSIONS.join(" and ")
            ),
            Some(_) if !["extractor", "page-script", "scorer"].contains(&interface) => {
                "it is not a role (extractor, page-script, scorer)".into()
            }
            Some(served) => {
                if !versions.contains(served) {
                    versions.push(served);
                }
                continue;
            }
        };
        return Err(format!(
            "its export `{export}` does not match the WIT: {error}"
        ));
    }
    let version = match versions[..] {
        [version] => version,
        [] => {
            return Err(format!(
                "it exports none of the roles of {PACKAGE}@{} (extractor, page-script, scorer)",
                VERSIONS.join(" or ")
            ));
        }
        _ => {
            return Err(format!(
                "it exports roles of {PACKAGE}@{}: build it against one version",
                versions.join(" and @")
            ));
        }
    };
    Exports::find(pre, version).map_err(|(role, error)| {
        format!("its export `{PACKAGE}/{role}@{version}` does not match the WIT: {error}")
    })
}
