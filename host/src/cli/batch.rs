//! `pagewright render --urls FILE --out DIR`: a list of pages rendered side by side, each through the
//! executor as an API request would be (the same output names, options and checks), with a progress
//! bar on stderr, failures retried, and a summary at the end. Any page that still failed makes the
//! command fail, after the others are done.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::{ApiError, AppState, job_for_output};
use crate::job::Produced;
use crate::{Services, Settings, start_services};

/// The flags of `pagewright render` that render a list.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Render every URL in this file, one per line (`-`: standard input); blank lines and lines
    /// starting with `#` are skipped.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["screenshot", "pdf", "html", "full_page", "viewport"]
    )]
    pub urls: Option<PathBuf>,

    /// With --urls: the folder each page's file is written to (created if missing), named after
    /// its line: `0001-example.com-path.png`.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// With --urls: what to make of each page, as `POST /v1/jobs` names it: screenshot, pdf,
    /// content, markdown, scrape, links, or an extractor loaded with --plugin.
    #[arg(long, default_value = "screenshot")]
    pub output: String,

    /// With --urls: the rest of each page's request, as the API takes it (JSON): `options`,
    /// `params`, `goto`, `page`, `timeout_ms`, ... For example
    /// `{"options": {"full_page": true}, "page": {"viewport": {"width": 390, "height": 844}}}`.
    #[arg(long, value_name = "JSON")]
    pub request: Option<String>,

    /// With --urls: pages rendered at once (each a page of the browser's).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,

    /// With --urls: how many more times a page that failed for a reason that may pass (a
    /// navigation error, a timeout, a crash: not a bad URL or bad options) is tried.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,

    /// With --urls: an extractor to load from a file, as `NAME=PATH` (repeatable), for --output.
    #[arg(long = "plugin", value_name = "NAME=PATH", value_parser = super::parts::parse_plugin_file)]
    pub plugins: Vec<(String, PathBuf)>,
}

/// The pause before a retry, times the attempts made.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// One line's outcome.
struct Done {
    line: usize,
    url: String,
    attempts: u32,
    result: Result<PathBuf, ApiError>,
}

pub(super) async fn run(
    args: &BatchArgs,
    list: &Path,
    mut settings: Settings,
    timeout: Duration,
) -> anyhow::Result<()> {
    let urls = read_list(list)?;
    if urls.is_empty() {
        anyhow::bail!("{} has no URLs", list.display());
    }
    let extra = match &args.request {
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|error| anyhow::anyhow!("--request is not JSON: {error}"))?;
            if !value.is_object() || value.get("url").is_some() || value.get("html").is_some() {
                anyhow::bail!("--request must be a JSON object without `url` or `html`");
            }
            value
        }
        None => serde_json::json!({}),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {} failed", args.out.display()))?;

    let concurrency = args.concurrency as usize;
    settings.pool.max_pages = concurrency;
    settings.sched.slots = concurrency;
    settings.sched.min_slots = concurrency;
    settings.sched.start_slots = concurrency;
    settings.api.job_timeout = timeout;
    settings.api.max_job_timeout = settings.api.max_job_timeout.max(timeout);
    settings.plugins.files = args.plugins.clone();
    let services = start_services(settings).await?;
    let outcome = render_all(&services, args, &extra, urls).await;
    services.close().await;
    outcome
}

/// The URLs of `list` with their line numbers.
fn read_list(list: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let reader: Box<dyn BufRead> = if list == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(list)
            .with_context(|| format!("reading {} failed", list.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut urls = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {} failed", list.display()))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            urls.push((index + 1, line.to_owned()));
        }
    }
    Ok(urls)
}

async fn render_all(
    services: &Services,
    args: &BatchArgs,
    extra: &serde_json::Value,
    urls: Vec<(usize, String)>,
) -> anyhow::Result<()> {
    let state = services.app_state();
    // A bad --output or --request fails every page the same way: say so once, before any renders.
    // Checked on an empty document, so a bad URL in the list is only that line's failure.
    let mut probe = extra.clone();
    probe["html"] = serde_json::Value::String("<p></p>".into());
    if let Err(error) = job_for_output(&state, &args.output, probe).await
        && error.status.is_client_error()
    {
        anyhow::bail!(
            "--output {} with that --request: {}",
            args.output,
            error.message
        );
    }

    let total = urls.len();
    let progress = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} pages  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    // Wide enough for the last line's number, so the names sort as the list does.
    let last_line = urls.last().map_or(0, |(line, _)| *line);
    let width = last_line.to_string().len().max(4);
    let mut done: Vec<Done> = futures::stream::iter(urls)
        .map(|(line, url)| {
            let state = &state;
            let progress = &progress;
            async move {
                let done = render_one(services, state, args, extra, line, url, width).await;
                if let Err(error) = &done.result {
                    let line = format!("line {}: {}: {}", done.line, done.url, error.message);
                    // Without a terminal there is no bar to print above: a log gets the line.
                    if progress.is_hidden() {
                        eprintln!("{line}");
                    } else {
                        progress.println(line);
                    }
                }
                progress.inc(1);
                done
            }
        })
        .buffer_unordered(args.concurrency as usize)
        .collect()
        .await;
    progress.finish_and_clear();
    done.sort_by_key(|done| done.line);

    let failed: Vec<&Done> = done.iter().filter(|done| done.result.is_err()).collect();
    let retried = done.iter().filter(|done| done.attempts > 1).count();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{} of {total} pages rendered to {} in {elapsed:.1} s ({:.2} pages/s); {} failed; {retried} retried",
        total - failed.len(),
        args.out.display(),
        total as f64 / elapsed.max(f64::EPSILON),
        failed.len(),
    );
    for done in &failed {
        if let Err(error) = &done.result {
            eprintln!(
                "  line {}: {} ({} {}, after {} attempt{}): {}",
                done.line,
                done.url,
                error.status.as_u16(),
                error.code,
                done.attempts,
                if done.attempts == 1 { "" } else { "s" },
                error.message
            );
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} of {total} pages failed", failed.len())
    }
}

fn body(url: &str, extra: &serde_json::Value) -> serde_json::Value {
    let mut body = extra.clone();
    body["url"] = serde_json::Value::String(url.to_owned());
    body
}

/// One line: its job, tried again while it fails for a reason that may pass, then its file.
async fn render_one(
    services: &Services,
    state: &AppState,
    args: &BatchArgs,
    extra: &serde_json::Value,
    line: usize,
    url: String,
    width: usize,
) -> Done {
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        let rendered = match job_for_output(state, &args.output, body(&url, extra)).await {
            Ok(job) => services.executor.run(job).await.map_err(ApiError::from),
            Err(error) => Err(error),
        };
        match rendered {
            Ok(rendered) => {
                let path = args
                    .out
                    .join(file_name(line, width, &url, &rendered.produced));
                break std::fs::write(&path, rendered.produced.into_bytes())
                    .map(|()| path.clone())
                    .map_err(|error| {
                        let message = format!("writing {} failed: {error}", path.display());
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
                    });
            }
            Err(error) if attempts <= args.retries && may_pass(&error) => {
                // A moment for a busy server or a flaky site, longer each time.
                tokio::time::sleep(RETRY_PAUSE * attempts).await;
            }
            Err(error) => break Err(error),
        }
    };
    Done {
        line,
        url,
        attempts,
        result,
    }
}

/// Whether trying again may help: the page, the network or the browser failed, not the request.
fn may_pass(error: &ApiError) -> bool {
    error.status.is_server_error() || matches!(error.status.as_u16(), 408 | 429)
}

/// `0007-example.com-docs-intro.png`: the line number (so the files sort as the list does), then
/// the URL's host and path in safe characters, then the output's extension.
fn file_name(line: usize, width: usize, url: &str, produced: &Produced) -> String {
    let readable = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let mut slug: String = readable
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    slug = slug.trim_matches('-').chars().take(80).collect();
    let extension = match produced
        .content_type()
        .split(';')
        .next()
        .unwrap_or_default()
    {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "text/markdown" => "md",
        "text/html" => "html",
        "text/plain" => "txt",
        _ => "bin",
    };
    format!("{line:0width$}-{slug}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_as_the_list_and_say_what_they_hold() {
        let png = Produced::Bytes {
            content_type: "image/png".into(),
            data: Vec::new(),
        };
        assert_eq!(
            file_name(7, 4, "https://example.com/docs/intro?x=1#top", &png),
            "0007-example.com-docs-intro.png"
        );
        let markdown = Produced::Bytes {
            content_type: "text/markdown; charset=utf-8".into(),
            data: Vec::new(),
        };
        assert_eq!(
            file_name(12, 2, "http://127.0.0.1:8080/", &markdown),
            "12-127.0.0.1-8080.md"
        );
        assert_eq!(
            file_name(1, 4, "https://a.test", &Produced::Json("{}".into())),
            "0001-a.test.json"
        );
    }
}
