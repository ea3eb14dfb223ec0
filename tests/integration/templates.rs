//! `pagewright plugin new NAME --lang L`, for each language: the folder it writes is built with its
//! own `build.sh` (with the toolchains `plugins/examples/build.sh tools` installs, as a user would
//! have them), passes `pagewright plugin check`, uploads, and runs on a page. What it prints reaches
//! the server's log under its name; in JavaScript and Python, an exception comes back as a `failed`
//! error carrying the exception's own message.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_json::{Value, json};

use crate::harness::{ServerProcess, built_component, error_message};

const ADMIN: &str = "templates-admin-token-0123456789";

/// A folder `pagewright plugin new` wrote, in a temp dir of its own.
struct Project {
    _dir: tempfile::TempDir,
    path: PathBuf,
    language: &'static str,
}

impl Project {
    async fn new(name: &str, language: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let argv = [
            "pagewright",
            "plugin",
            "new",
            name,
            "--lang",
            language,
            "--dir",
            dir.path().to_str().expect("utf-8 path"),
        ];
        let cli = pagewright::cli::Cli::try_parse_from(argv).expect("parses");
        pagewright::cli::run(cli).await.expect("plugin new");
        let path = dir.path().join(name);
        assert!(path.join("wit/plugin.wit").is_file());
        assert!(path.join("README.md").is_file());
        Self {
            _dir: dir,
            path,
            language,
        }
    }

    /// A copy of the project, in a sibling folder, with `line` inserted before the first line of
    /// `file` that starts with `before`.
    fn variant(&self, folder: &str, file: &str, before: &str, line: &str) -> PathBuf {
        let copy = self.path.with_file_name(folder);
        let copied = Command::new("cp")
            .arg("-r")
            .arg(&self.path)
            .arg(&copy)
            .status()
            .expect("cp runs");
        assert!(copied.success());
        let source = std::fs::read_to_string(copy.join(file)).expect("the source");
        let at = source
            .find(before)
            .unwrap_or_else(|| panic!("`{before}` in {file}"));
        let changed = format!("{}{line}\n{}", &source[..at], &source[at..]);
        std::fs::write(copy.join(file), changed).expect("writing the variant");
        copy
    }

    /// Runs `folder/build.sh` and returns the component's bytes.
    fn build(&self, folder: &Path) -> Vec<u8> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = Command::new(folder.join("build.sh"));
        build
            .env("PATH", tool_path(self.language))
            .env("CC", "clang-14");
        // The Rust template builds with cargo as a user's would: a plain release build, into a
        // target folder kept between runs.
        for inherited in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CLIPPY_ARGS",
            "CARGO_BUILD_TARGET",
        ] {
            build.env_remove(inherited);
        }
        build.env("CARGO_TARGET_DIR", workspace.join("target/templates"));
        built_component(&mut build, &format!("the {} template", self.language))
    }
}

/// PATH with the toolchains for `language` in front (installed once under target/).
fn tool_path(language: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/build.sh");
    // Rust's toolchain is the one the tests run with.
    let tools: &[&str] = if language == "rust" { &[] } else { &[language] };
    let output = Command::new(&script)
        .arg("tools")
        .args(tools)
        .output()
        .expect("build.sh tools runs");
    assert!(
        output.status.success(),
        "installing the {language} toolchain failed (tests/setup.sh installs its system parts):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dirs = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    format!("{dirs}:{}", std::env::var("PATH").unwrap_or_default())
}

/// `pagewright plugin check` on the component, as a user would before uploading it.
async fn check(name: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&file, bytes).expect("writing the component");
    let argv = [
        "pagewright",
        "plugin",
        "check",
        file.to_str().expect("utf-8"),
    ];
    let cli = pagewright::cli::Cli::try_parse_from(argv).expect("parses");
    pagewright::cli::run(cli)
        .await
        .expect("the component passes `plugin check`");
}

async fn upload(server: &ServerProcess, name: &str, bytes: Vec<u8>) {
    let response = server
        .client
        .put(format!("{}/v1/plugins/{name}", server.base))
        .bearer_auth(ADMIN)
        .body(bytes)
        .send()
        .await
        .expect("upload is answered");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

/// A server with JSON logs (to find the plugin's lines by their fields), in a temp dir.
async fn server(dir: &Path) -> ServerProcess {
    let data = dir.join("data");
    ServerProcess::start(
        &[
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--admin-token",
            ADMIN,
            "--log-format",
            "json",
        ],
        &dir.join("server.log"),
    )
    .await
}

/// The template's extractor on a page, its params, its refusal of unknown params, and its printed
/// line in the server's log under its name.
async fn runs_as_written(server: &ServerProcess, name: &str) {
    let path = format!("/v1/run/{name}");
    let page = "<title>T</title><h1>A</h1><h1>B</h1><p>para</p>";
    let response = server.post(&path, json!({ "html": page })).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert!(response.headers().contains_key("x-pagewright-plugin-fuel"));
    let output: Value = response.json().await.expect("JSON output");
    assert_eq!(
        output,
        json!({ "title": "T", "selector": "h1", "count": 2, "first": "A" }),
        "{name}"
    );
    let response = server
        .post(
            &path,
            json!({ "html": page, "params": { "selector": "p" } }),
        )
        .await;
    let output: Value = response.json().await.expect("JSON output");
    assert_eq!(
        output,
        json!({ "title": "T", "selector": "p", "count": 1, "first": "para" }),
        "{name} with params"
    );
    let response = server
        .post(&path, json!({ "html": page, "params": { "nope": 1 } }))
        .await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(
        message.contains("nope") || message.contains("selector"),
        "{name}: {message}"
    );

    // A page operation's error passes on with the host's answer for it.
    let response = server
        .post(
            &path,
            json!({ "html": page, "params": { "selector": "h1[" } }),
        )
        .await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(message.contains("h1["), "{name}: {message}");

    let printed = server.log().lines().any(|line| {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        line["fields"]["plugin"] == name && line["fields"]["message"] == "counting p"
    });
    assert!(
        printed,
        "{name}'s printed line is in the log:\n{}",
        server.log()
    );
}

/// A variant that throws on `{"selector": "boom"}`: a 422 `plugin_failed` with its own message.
async fn an_exception_is_its_own_message(server: &ServerProcess, name: &str, expected: &[&str]) {
    let response = server
        .post(
            &format!("/v1/run/{name}"),
            json!({ "html": "<h1>x</h1>", "params": { "selector": "boom" } }),
        )
        .await;
    let message = error_message(response, 422, "plugin_failed").await;
    for part in expected {
        assert!(message.contains(part), "{name}: `{part}` in {message}");
    }
}

#[tokio::test]
async fn the_rust_template_builds_checks_and_runs() {
    let project = Project::new("t-rust", "rust").await;
    let bytes = project.build(&project.path);
    check("t-rust", &bytes).await;
    let server = server(project.path.parent().expect("parent")).await;
    upload(&server, "t-rust", bytes).await;
    runs_as_written(&server, "t-rust").await;
}

#[tokio::test]
async fn the_c_template_builds_checks_and_runs() {
    let project = Project::new("t-c", "c").await;
    let bytes = project.build(&project.path);
    check("t-c", &bytes).await;
    let server = server(project.path.parent().expect("parent")).await;
    upload(&server, "t-c", bytes).await;
    runs_as_written(&server, "t-c").await;
}

#[tokio::test]
async fn the_javascript_template_builds_checks_runs_and_reports_exceptions() {
    let project = Project::new("t-js", "js").await;
    let bytes = project.build(&project.path);
    let throwing = project.variant(
        "t-js-throwing",
        "plugin.js",
        "  const title = JSON.parse",
        r#"  if (selector === "boom") null.foo();"#,
    );
    let throwing = project.build(&throwing);
    check("t-js", &bytes).await;
    let server = server(project.path.parent().expect("parent")).await;
    upload(&server, "t-js", bytes).await;
    upload(&server, "t-js-throwing", throwing).await;
    runs_as_written(&server, "t-js").await;
    an_exception_is_its_own_message(
        &server,
        "t-js-throwing",
        &["TypeError", "\"foo\" of null", "plugin.js:"],
    )
    .await;
}

#[tokio::test]
async fn the_python_template_builds_checks_runs_and_reports_exceptions() {
    let project = Project::new("t-python", "python").await;
    let bytes = project.build(&project.path);
    let throwing = project.variant(
        "t-python-throwing",
        "app.py",
        "    title = json.loads",
        r#"    if selector == "boom": raise ValueError("boom went the plugin")"#,
    );
    let throwing = project.build(&throwing);
    check("t-python", &bytes).await;
    let server = server(project.path.parent().expect("parent")).await;
    upload(&server, "t-python", bytes).await;
    upload(&server, "t-python-throwing", throwing).await;
    runs_as_written(&server, "t-python").await;
    an_exception_is_its_own_message(
        &server,
        "t-python-throwing",
        &["ValueError: boom went the plugin", "Traceback", "app.py"],
    )
    .await;
}
