//! `pagewright plugin check FILE` (an upload's checks, offline, with a report), `pagewright plugin
//! run FILE --url URL` (an extractor on one real page, without a server, as a server would run it),
//! and `pagewright plugin upload FILE --name N` (`PUT /v1/plugins/N` with the file and its manifest,
//! then a report of what the server registered, or its error).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::BrowserArgs;
pub use super::new::NewArgs;
use crate::api::MANIFEST_HEADER;
use crate::job::{Job, Output, PluginCall, Produced, Target};
use crate::jobs::install_tls_provider;
use crate::plugin::{Manifest, Role};
use crate::{Settings, start_services};

/// `pagewright plugin ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PluginCommand {
    /// Check a component as the server would load it: prints its roles, imports, size and compile
    /// time, or why it cannot be a plugin.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Run an extractor component on one page, here, with a browser of its own and no server:
    /// prints its output, and its log lines on stderr.
    Run(RunArgs),
    /// Upload a component to a running server as a new version of plugin NAME.
    Upload(UploadArgs),
    /// Create a folder with a working extractor in Rust, JavaScript, Python or C, ready to build.
    New(NewArgs),
}

/// Flags of `pagewright plugin run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,

    /// The page to run it on (http or https).
    #[arg(long, required_unless_present = "html", conflicts_with = "html")]
    pub url: Option<String>,

    /// An HTML document to run it on instead of a URL.
    #[arg(long)]
    pub html: Option<String>,

    /// The plugin's params (JSON), as a request's `params`.
    #[arg(long, default_value = "{}")]
    pub params: String,

    /// The job's time budget, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,

    #[command(flatten)]
    pub browser: BrowserArgs,
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
    let compiling = slow_step(
        format!("compiling {} ({})", file.display(), megabytes(bytes.len())),
        bytes.len(),
    );
    let checked = crate::plugin::check_component(&name, &bytes)
        .await
        .with_context(|| format!("checking {} failed", file.display()));
    compiling.finish_and_clear();
    let checked = checked?;
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

pub(super) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let file = args
        .file
        .canonicalize()
        .with_context(|| format!("reading {} failed", args.file.display()))?;
    // Named after the file, as far as a plugin name allows: the log lines and errors name it.
    let name: String = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let name = match crate::plugin::check_name(&name) {
        // The built-ins are loaded too: a file named like one runs under a name of its own.
        Ok(()) if crate::plugin::is_builtin(&name) => format!("{name}-local"),
        Ok(()) => name,
        Err(_) => "plugin".into(),
    };
    let params: serde_json::Value = serde_json::from_str(&args.params)
        .map_err(|error| anyhow::anyhow!("--params is not JSON: {error}"))?;
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let mut settings = Settings::one_page(args.browser.settings()?, timeout);
    let target = match (&args.url, &args.html) {
        (Some(url), _) => Target::Url(
            settings
                .api
                .url_policy
                .check(url)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?
                .to_string(),
        ),
        (None, Some(html)) => Target::Html(html.clone()),
        (None, None) => anyhow::bail!("give --url or --html"),
    };
    settings.plugins.files = vec![(name.clone(), file.clone())];
    let size = std::fs::metadata(&file).map_or(0, |metadata| metadata.len() as usize);
    let starting = slow_step(
        format!(
            "compiling {} ({}) and starting a browser",
            file.display(),
            megabytes(size)
        ),
        size,
    );
    let services = start_services(settings)
        .await
        .with_context(|| format!("loading {} failed", file.display()));
    starting.finish_and_clear();
    let services = services?;
    let result = run_once(&services, &name, target, params, timeout).await;
    services.close().await;
    result
}

/// The extractor as a job through the executor, as `POST /v1/run/{name}` runs it.
async fn run_once(
    services: &crate::Services,
    name: &str,
    target: Target,
    params: serde_json::Value,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let output = Output::Plugin(PluginCall {
        plugin: services.plugins.find(name, Role::Extractor)?,
        params: params.to_string(),
    });
    let job = Job::new(target, output, timeout, timeout);
    job.validate()?;
    let started = std::time::Instant::now();
    let rendered = services.executor.run(job).await.map_err(|error| {
        // As the API would answer it: the code says which kind of failure it was.
        let error = crate::api::ApiError::from(error);
        anyhow::anyhow!(
            "running `{name}` failed ({} {}): {}",
            error.status.as_u16(),
            error.code,
            error.message
        )
    })?;
    let usage = rendered.usage.unwrap_or_default();
    eprintln!(
        "`{name}` ran in {:.0} ms (plugin {:.1} ms, {} fuel), page status {}",
        started.elapsed().as_secs_f64() * 1000.0,
        usage.wall.as_secs_f64() * 1000.0,
        usage.fuel,
        rendered.navigation.status
    );
    use std::io::Write;
    // JSON and text end with a line break for the terminal; bytes (an image) go out as they are.
    let end_line = !matches!(rendered.produced, Produced::Bytes { .. });
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&rendered.produced.into_bytes())?;
    if end_line {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

/// A spinner with the time so far on stderr, while a step that can take a while runs: compiling a
/// JavaScript or Python component (12-19 MB) takes 10-30 s. Not on a terminal, a large component's
/// step is said once instead.
fn slow_step(message: String, bytes: usize) -> indicatif::ProgressBar {
    let spinner = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    if spinner.is_hidden() {
        if bytes > 1_000_000 {
            eprintln!("{message}: a component this large takes 10-30 s");
        }
    } else {
        spinner.set_message(message);
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    spinner
}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
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
    let waiting = slow_step(
        format!(
            "uploading {} ({}); the server checks and compiles it before it answers",
            args.file.display(),
            megabytes(bytes.len())
        ),
        bytes.len(),
    );
    let response = reqwest::Client::new()
        .put(&url)
        .bearer_auth(token)
        .header(MANIFEST_HEADER, manifest.to_string())
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .timeout(std::time::Duration::from_secs(args.timeout_secs))
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("uploading to {url} failed"));
    waiting.finish_and_clear();
    let response = response?;
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
