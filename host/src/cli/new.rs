//! `pagewright plugin new NAME --lang rust|js|python|c`: a folder with a working extractor in that
//! language, its build script, and the WIT it is built against (`pagewright:plugin@0.2.0`). Each
//! template builds, checks and runs as written (`tests/integration/templates.rs`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

/// The WIT every template is built against, written into the new folder as `wit/plugin.wit`.
const WIT: &str = include_str!("../../../wit/plugin@0.2.0/plugin.wit");
const README: &str = include_str!("templates/README.md");

/// The SDK this binary was built with, for the Rust template's path dependency, when it is still
/// there (a binary built from a checkout, on the machine it was built on).
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    Rust,
    Js,
    Python,
    C,
}

impl Language {
    fn title(self) -> &'static str {
        match self {
            Self::Rust => "Rust",
            Self::Js => "JavaScript",
            Self::Python => "Python",
            Self::C => "C",
        }
    }

    /// The template's files: (path in the new folder, text with `{{...}}` placeholders).
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Rust => &[
                (
                    "Cargo.toml",
                    include_str!("templates/rust/Cargo.toml.template"),
                ),
                ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
                ("build.sh", include_str!("templates/rust/build.sh")),
                (".gitignore", include_str!("templates/rust/.gitignore")),
            ],
            Self::Js => &[
                ("plugin.js", include_str!("templates/js/plugin.js")),
                ("package.json", include_str!("templates/js/package.json")),
                ("build.sh", include_str!("templates/js/build.sh")),
                (".gitignore", include_str!("templates/js/.gitignore")),
            ],
            Self::Python => &[
                ("app.py", include_str!("templates/python/app.py")),
                (
                    "requirements.txt",
                    include_str!("templates/python/requirements.txt"),
                ),
                ("build.sh", include_str!("templates/python/build.sh")),
                (".gitignore", include_str!("templates/python/.gitignore")),
            ],
            Self::C => &[
                ("plugin.c", include_str!("templates/c/plugin.c")),
                ("build.sh", include_str!("templates/c/build.sh")),
                (".gitignore", include_str!("templates/c/.gitignore")),
            ],
        }
    }
}

/// Flags of `pagewright plugin new`.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// The plugin's name (1-64 of a-z, 0-9, `-` and `_`): the folder's, the component's and the
    /// name to upload it as.
    pub name: String,

    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: Language,

    /// Where to create the folder `NAME`. Default: the current directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,

    /// Rust only: the pagewright SDK (`plugin-sdk` in a pagewright checkout). Default: the one this
    /// binary was built from, if it is still there.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

pub(super) fn create(args: &NewArgs) -> anyhow::Result<()> {
    crate::plugin::check_name(&args.name)
        .map_err(|reason| anyhow::anyhow!("`{}` cannot be a plugin's name: {reason}", args.name))?;
    if crate::plugin::is_builtin(&args.name) {
        anyhow::bail!(
            "`{}` is a built-in plugin's name: a server would refuse an upload of it; choose another",
            args.name
        );
    }
    let folder = args.dir.join(&args.name);
    if folder.exists() {
        anyhow::bail!(
            "{} exists already: choose another name or --dir",
            folder.display()
        );
    }
    let sdk = match args.lang {
        Language::Rust => sdk_path(args.sdk.as_deref())?,
        _ => String::new(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{crate}}", &args.name.replace('-', "_"))
            .replace("{{sdk}}", &sdk)
            .replace("{{language}}", args.lang.title())
    };
    let mut files: Vec<(&str, String)> = args
        .lang
        .files()
        .iter()
        .map(|(path, text)| (*path, fill(text)))
        .collect();
    files.push(("wit/plugin.wit", WIT.to_owned()));
    files.push(("README.md", fill(README)));
    for (path, text) in &files {
        write(&folder.join(path), text)?;
    }
    println!(
        "created {} (a {} extractor); next:\n  cd {}\n  ./build.sh\n  pagewright plugin check {}.wasm",
        folder.display(),
        args.lang.title(),
        folder.display(),
        args.name
    );
    Ok(())
}

fn sdk_path(given: Option<&Path>) -> anyhow::Result<String> {
    let path = given.unwrap_or(Path::new(BUILT_WITH_SDK));
    let path = path
        .canonicalize()
        .ok()
        .filter(|path| path.join("Cargo.toml").is_file());
    let Some(path) = path else {
        anyhow::bail!(
            "the Rust template needs pagewright's SDK: give --sdk with the `plugin-sdk` folder of a \
             pagewright checkout{}",
            given.map_or(String::new(), |given| format!(
                " ({} is not one)",
                given.display()
            ))
        );
    };
    Ok(path.display().to_string())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {} failed", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {} failed", path.display()))?;
    if path.extension().is_some_and(|extension| extension == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable failed", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_server_would_refuse_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let new = |name: &str| NewArgs {
            name: name.into(),
            lang: Language::Js,
            dir: dir.path().to_owned(),
            sdk: None,
        };
        let error = create(&new("markdown"))
            .expect_err("a built-in's name")
            .to_string();
        assert!(error.contains("built-in"), "{error}");
        let error = create(&new("Bad Name"))
            .expect_err("not a plugin name")
            .to_string();
        assert!(error.contains("cannot be a plugin's name"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
        create(&new("fine")).expect("a good name");
        let error = create(&new("fine")).expect_err("exists").to_string();
        assert!(error.contains("exists already"), "{error}");
    }
}
