//! `pagewright plugin check FILE` (an upload's checks, offline, with a report) and `pagewright plugin
//! upload FILE --name N` (`PUT /v1/plugins/N` with the file and its manifest, then a report of what
//! the server registered, or its error).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::MANIFEST_HEADER;
use crate::jobs::install_tls_provider;
use crate::plugin::Manifest;

/// `pagewright plugin ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PluginCommand {
    /// Check a component as the server would load it: prints its roles, imports, size and compile
    /// time, or why it cannot be a plugin.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Upload a component to a running server as a new version of plugin NAME.
    Upload(UploadArgs),
}

/// Flags of `pagewright plugin upload`.
#[derive(Debug, Clone, Args)]
pub struct UploadArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,

    /// The plugin's name: 1-64 of a-z, 0-9, `-` and `_`.
    #[arg(long)]
    pub name: String,

    /// The server's base URL.
    #[arg(
        long,
        env = "PAGEWRIGHT_SERVER",
        default_value = "http://127.0.0.1:3000"
    )]
    pub server: String,

    /// The server's admin token (its `--admin-token`).
    #[arg(long, env = "PAGEWRIGHT_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A manifest file (JSON: version, description, roles, limits).
    #[arg(long)]
    pub manifest: Option<PathBuf>,

    /// The version to upload as (overrides the manifest's). Default: the latest's patch + 1.
    #[arg(long = "version")]
    pub plugin_version: Option<String>,

    /// How long to wait for the server, which compiles the component before answering, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

pub(super) async fn check(file: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("reading {} failed", file.display()))?;
    let name = file
        .file_stem()
        .map_or_else(|| "plugin".into(), |stem| stem.to_string_lossy());
    let checked = crate::plugin::check_component(&name, &bytes)
        .await
        .with_context(|| format!("checking {} failed", file.display()))?;
    println!("{}: a pagewright plugin", file.display());
    println!("  roles:    {}", checked.roles);
    println!("  size:     {} bytes", checked.size);
    println!(
        "  compiled: {:.0} ms",
        checked.compile_time.as_secs_f64() * 1000.0
    );
    println!("  imports:");
    for import in &checked.imports {
        println!("    {import}");
    }
    Ok(())
}

pub(super) async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading {} failed", args.file.display()))?;
    let Some(token) = &args.token else {
        anyhow::bail!(
            "uploads need the server's admin token: give --token or set PAGEWRIGHT_ADMIN_TOKEN \
             (the token the server was started with, its --admin-token)"
        );
    };
    let mut manifest = match &args.manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {} failed", path.display()))?;
            // Checked here as the server checks it, so a typo names the file, not a header.
            let checked: Manifest = serde_json::from_str(&text)
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            checked
                .check()
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => serde_json::json!({}),
    };
    if let Some(version) = &args.plugin_version {
        manifest["version"] = serde_json::Value::String(version.clone());
    }
    let url = format!(
        "{}/v1/plugins/{}",
        args.server.trim_end_matches('/'),
        args.name
    );
    install_tls_provider();
    let response = reqwest::Client::new()
        .put(&url)
        .bearer_auth(token)
        .header(MANIFEST_HEADER, manifest.to_string())
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .timeout(std::time::Duration::from_secs(args.timeout_secs))
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("uploading to {url} failed"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("the server's answer ({status}) is not JSON"))?;
    if !status.is_success() {
        let error = &body["error"];
        anyhow::bail!(
            "the server refused the upload ({status}, {}): {}",
            error["code"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or("no message")
        );
    }
    let text = |key: &str| body[key].as_str().unwrap_or("?").to_owned();
    let roles: Vec<&str> = body["roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(|role| role.as_str()).collect())
        .unwrap_or_default();
    let what = if status == reqwest::StatusCode::CREATED {
        "uploaded"
    } else {
        "already there, unchanged:"
    };
    println!("{what} {}@{}", text("name"), text("version"));
    println!("  roles:  {}", roles.join(", "));
    println!("  size:   {} bytes", body["size"]);
    println!("  sha256: {}", text("sha256"));
    println!("  limits: {}", body["limits"]);
    Ok(())
}
