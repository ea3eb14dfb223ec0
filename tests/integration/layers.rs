//! The host's layers: every module of `host/src` is listed in `host/layers.txt` (highest first), and
//! each uses only the modules listed after it, so a job's path runs down the layers once and the
//! module graph has no cycle. A use is any `crate::NAME` in a module's files (comment lines and a
//! `#[cfg(test)] mod tests` block at the end of a file aside), `use crate::{a, b}` groups included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The host crate's folder.
fn host() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The declared order, highest first.
fn layers() -> Vec<String> {
    let text = std::fs::read_to_string(host().join("layers.txt")).expect("host/layers.txt");
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Each module of `host/src` (a top-level file or folder; `lib.rs` and `main.rs` are the wiring)
/// with its source files.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let src = host().join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("host/src") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("UTF-8 names")
            .to_owned();
        if path.is_dir() {
            modules.insert(name, rust_files(&path));
        } else if let Some(stem) = name.strip_suffix(".rs")
            && !matches!(stem, "lib" | "main")
        {
            modules.insert(stem.to_owned(), vec![path]);
        }
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a module folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

/// The modules `text` names as `crate::NAME`, with the line of each.
fn uses(text: &str) -> Vec<(String, usize)> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(tests) => &text[..tests],
        None => text,
    };
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                // `crate::{a, b::c}`: the first segment of each, up to the group's end.
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or_default())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or_default(),
                ],
            };
            found.extend(
                names
                    .into_iter()
                    .filter(|name| name.starts_with(|c: char| c.is_ascii_lowercase()))
                    .map(|name| (name.to_owned(), number + 1)),
            );
        }
    }
    found
}

#[test]
fn every_use_between_modules_points_down_the_layers() {
    let layers = layers();
    let modules = modules();
    let listed: BTreeSet<&String> = layers.iter().collect();
    let present: BTreeSet<&String> = modules.keys().collect();
    assert_eq!(
        listed, present,
        "host/layers.txt must list exactly the modules of host/src"
    );
    let rank = |name: &str| layers.iter().position(|layer| layer == name);
    let mut upward = Vec::new();
    for (module, files) in &modules {
        let own = rank(module).expect("listed");
        for file in files {
            let text = std::fs::read_to_string(file).expect("a source file");
            for (used, line) in uses(&text) {
                match rank(&used) {
                    Some(other) if other <= own && used != *module => upward.push(format!(
                        "{}:{line}: {module} uses {used}, which is not below it",
                        file.strip_prefix(host()).unwrap_or(file).display()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up the layers of host/layers.txt:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_sees_uses_in_paths_and_groups() {
    let text = "use crate::job::Job;\nuse crate::{api, exec::Executor};\n// crate::cli\nlet x = crate::sys::cores();\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n";
    let found: Vec<String> = uses(text).into_iter().map(|(name, _)| name).collect();
    assert_eq!(found, ["job", "api", "exec", "sys"]);
}
