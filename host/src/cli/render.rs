//! `pagewright render URL --screenshot out.png [--pdf out.pdf] [--html out.html]`: one page to files,
//! without the HTTP server. The same services start (with a pool of one page and one render at a
//! time), each output is a job for the executor through the built-in plugins, and they shut down.
//! `pagewright render --urls FILE --out DIR` renders a list instead (`batch.rs`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::BrowserArgs;
use super::batch::{self, BatchArgs};
use crate::job::options::{ImageFormat, PdfOptions, ScreenshotOptions, Viewport};
use crate::job::{Job, Output, PluginCall, Produced, Target};
use crate::plugin::Role;
use crate::{Settings, start_services};

/// Flags of `pagewright render`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The page to render (http or https); or give --urls.
    #[arg(required_unless_present = "urls", conflicts_with = "urls")]
    pub url: Option<String>,

    /// Write a PNG screenshot of the viewport here (`.jpg`/`.jpeg` and `.webp` pick those formats).
    #[arg(long, required_unless_present_any = ["pdf", "html", "urls"])]
    pub screenshot: Option<PathBuf>,

    /// Capture the whole scrollable page instead of the viewport.
    #[arg(long, requires = "screenshot")]
    pub full_page: bool,

    /// Write a PDF here.
    #[arg(long)]
    pub pdf: Option<PathBuf>,

    /// Write the rendered HTML here.
    #[arg(long)]
    pub html: Option<PathBuf>,

    /// Viewport as WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    pub viewport: (u32, u32),

    /// Time budget of each output's job, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,

    #[command(flatten)]
    pub batch: BatchArgs,

    #[command(flatten)]
    pub browser: BrowserArgs,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (width, height) = text
        .split_once('x')
        .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT"))?;
    let number = |part: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("`{text}` is not WIDTHxHEIGHT"))
    };
    Ok((number(width)?, number(height)?))
}

pub(super) async fn run(args: RenderArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let settings = Settings::one_page(args.browser.settings()?, timeout);
    let (url, list) = (args.url.as_deref(), args.batch.urls.as_deref());
    let url = match (url, list) {
        (_, Some(list)) => return batch::run(&args.batch, list, settings, timeout).await,
        (Some(url), None) => url,
        (None, None) => anyhow::bail!("give a URL or --urls FILE"),
    };
    if !args.batch.plugins.is_empty() || args.batch.request.is_some() {
        anyhow::bail!("--plugin and --request go with --urls");
    }
    let url = settings
        .api
        .url_policy
        .check(url)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let services = start_services(settings).await?;
    let result = render_outputs(&services, &args, url.as_str(), timeout).await;
    services.close().await;
    result
}

/// Each output the flags ask for, as a job through the executor, written to its file.
async fn render_outputs(
    services: &crate::Services,
    args: &RenderArgs,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    // The same built-in plugins the API's endpoints use.
    let builtin = |name: &str, params: serde_json::Value| -> anyhow::Result<Output> {
        Ok(Output::Plugin(PluginCall {
            plugin: services.plugins.find(name, Role::Extractor)?,
            params: params.to_string(),
        }))
    };
    let mut outputs = Vec::new();
    if let Some(path) = &args.screenshot {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("jpg" | "jpeg") => ImageFormat::Jpeg,
            Some("webp") => ImageFormat::Webp,
            _ => ImageFormat::Png,
        };
        let options = ScreenshotOptions {
            format,
            full_page: args.full_page,
            ..ScreenshotOptions::default()
        };
        outputs.push((path, builtin("screenshot", serde_json::to_value(options)?)?));
    }
    if let Some(path) = &args.pdf {
        let options = serde_json::to_value(PdfOptions::default())?;
        outputs.push((path, builtin("pdf", options)?));
    }
    if let Some(path) = &args.html {
        outputs.push((
            path,
            builtin("content", serde_json::json!({ "html": true }))?,
        ));
    }
    for (path, output) in outputs {
        let mut job = Job::new(Target::Url(url.to_owned()), output, timeout, timeout);
        job.page.viewport = Some(Viewport {
            width: args.viewport.0,
            height: args.viewport.1,
            ..Viewport::default()
        });
        job.validate()?;
        let rendered = services
            .executor
            .run(job)
            .await
            .map_err(|error| anyhow::anyhow!("rendering {url} failed: {error}"))?;
        let status = rendered.navigation.status;
        let bytes = match rendered.produced {
            // The content plugin's `{"url", "status", "html"}`: the file gets the HTML.
            Produced::Json(json) => serde_json::from_str::<serde_json::Value>(&json)?["html"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            produced => produced.into_bytes(),
        };
        std::fs::write(path, &bytes)
            .map_err(|error| anyhow::anyhow!("writing {} failed: {error}", path.display()))?;
        println!(
            "{} ({} bytes, page status {status})",
            path.display(),
            bytes.len(),
        );
    }
    Ok(())
}
