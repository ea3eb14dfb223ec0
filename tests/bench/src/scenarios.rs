//! The `pool` benchmark's four ways to render, and the table they print.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use tokio::net::TcpListener;

use crate::memory;

/// The page every scenario renders: small, styled, with a few elements, served from loopback.
const PAGE: &str = r#"<!doctype html><html><head><title>bench</title><style>
body { font-family: sans-serif; margin: 40px; background: linear-gradient(#fff, #eef); }
.card { display: inline-block; width: 200px; height: 120px; margin: 10px; border-radius: 8px;
        background: #fff; box-shadow: 0 2px 6px rgba(0,0,0,.2); padding: 12px; }
</style></head><body><h1>pagewright benchmark page</h1>
<div class="card">One</div><div class="card">Two</div><div class="card">Three</div>
<div class="card">Four</div><div class="card">Five</div><div class="card">Six</div>
<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.</p>
</body></html>"#;

/// The longest a single render may take before it counts as failed.
const RENDER_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(crate) struct Measured {
    scenario: &'static str,
    concurrency: usize,
    renders: usize,
    pub(crate) failures: usize,
    seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    chromium_mb: f64,
    host_mb: f64,
}

impl Measured {
    pub(crate) fn per_second(&self) -> f64 {
        self.renders as f64 / self.seconds
    }
}

pub async fn pool_bench(
    duration: Duration,
    naive_duration: Duration,
    levels: &[usize],
    servers: &[PathBuf],
    pagewright_only: bool,
) -> anyhow::Result<()> {
    let site = serve_page().await?;
    let url = format!("http://{site}/");
    let chrome = pagewright::cli::BrowserArgs {
        chrome: std::env::var_os("CHROME").map(PathBuf::from),
        browser_launch_timeout_ms: 20_000,
        no_chromium_sandbox: false,
        chromium_user: None,
    }
    .settings()?
    .executable;
    println!(
        "machine: {} cores; page: {url}; {}s per level",
        cores(),
        duration.as_secs()
    );

    let mut results = Vec::new();
    let server = PagewrightServer::start(&[]).await?;
    for &level in levels {
        results.push(server.measure(&url, level, duration).await);
        print_last(&results);
    }
    drop(server);
    // Other builds of pagewright, measured the same way in the same sitting (before and after a
    // change on the job path).
    for program in servers {
        let server = PagewrightServer::start_program(Some(program), &[]).await?;
        for &level in levels {
            results.push(
                server
                    .measure_as("pagewright HTTP API (--server)", &url, level, duration)
                    .await,
            );
            print_last(&results);
        }
        drop(server);
    }
    if pagewright_only {
        print_table(&results);
        return Ok(());
    }
    for &level in levels {
        results.push(raw_loop(&chrome, &url, level, duration).await?);
        print_last(&results);
    }
    for &level in levels {
        results.push(tab_per_render(&chrome, &url, level, duration).await?);
        print_last(&results);
    }
    for &level in levels {
        results.push(browser_per_render(&chrome, &url, level, naive_duration).await);
        print_last(&results);
    }
    print_table(&results);
    Ok(())
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

pub(crate) async fn serve_page() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(address)
}

/// Runs `concurrency` workers calling `render` until `duration` is over; collects latencies.
async fn drive<F, Fut>(
    concurrency: usize,
    duration: Duration,
    render: F,
) -> (usize, usize, Vec<Duration>, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let render = Arc::new(render);
    // Warm-up: one render per worker, not counted.
    let warm: Vec<_> = (0..concurrency)
        .map(|worker| {
            let render = render.clone();
            tokio::spawn(async move { tokio::time::timeout(RENDER_LIMIT, render(worker)).await })
        })
        .collect();
    for task in warm {
        let _ = task.await;
    }
    let started = Instant::now();
    let end = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let render = render.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0;
                let mut last_success = None;
                while Instant::now() < end {
                    let began = Instant::now();
                    // A render that never finishes (a browser launch that hangs under 16-fold
                    // oversubscription, seen) counts as a failure instead of stalling the bench.
                    let result = tokio::time::timeout(RENDER_LIMIT, render(worker))
                        .await
                        .unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("no result within {RENDER_LIMIT:?}"))
                        });
                    match result {
                        Ok(()) => {
                            latencies.push(began.elapsed());
                            last_success = Some(Instant::now());
                        }
                        Err(error) => {
                            failures += 1;
                            if failures <= 3 {
                                eprintln!("render failed: {error:#}");
                            }
                        }
                    }
                }
                (latencies, failures, last_success)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut last_success = end;
    for worker in workers {
        if let Ok((mut worker_latencies, worker_failures, worker_last)) = worker.await {
            latencies.append(&mut worker_latencies);
            failures += worker_failures;
            last_success = last_success.max(worker_last.unwrap_or(end));
        }
    }
    // Throughput over the window, stretched to the last successful render: a render that hangs until
    // the render limit and then fails must not dilute the others' rate.
    let seconds = last_success.duration_since(started).as_secs_f64();
    (latencies.len(), failures, latencies, seconds)
}

pub(crate) fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
fn measured(
    scenario: &'static str,
    concurrency: usize,
    (renders, failures, mut latencies, seconds): (usize, usize, Vec<Duration>, f64),
    chromium_bytes: u64,
    host_bytes: u64,
) -> Measured {
    latencies.sort_unstable();
    Measured {
        scenario,
        concurrency,
        renders,
        failures,
        seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        chromium_mb: chromium_bytes as f64 / 1e6,
        host_mb: host_bytes as f64 / 1e6,
    }
}

/// pagewright as users run it: its own process, the HTTP API, default settings (plus `args`).
pub(crate) struct PagewrightServer {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
    /// Each server's own data directory: one server per directory.
    _data_dir: tempfile::TempDir,
}

impl PagewrightServer {
    pub(crate) async fn start(args: &[&str]) -> anyhow::Result<Self> {
        Self::start_program(None, args).await
    }

    /// `program serve` (another build of pagewright, for a before-and-after measurement), or this
    /// bench's own server when `None`.
    pub(crate) async fn start_program(
        program: Option<&std::path::Path>,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let data_dir = tempfile::tempdir()?;
        let program = match program {
            Some(program) => program.to_owned(),
            None => std::env::current_exe()?,
        };
        let child = tokio::process::Command::new(&program)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the pagewright server {}", program.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(format!("{base}/health")).send().await
                && response.status().is_success()
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "pagewright did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            base,
            client,
            _data_dir: data_dir,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL), as a crash or an OOM kill would.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the server as an operator would (SIGTERM), and waits for it to exit.
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    async fn measure(&self, url: &str, concurrency: usize, duration: Duration) -> Measured {
        self.measure_as("pagewright HTTP API", url, concurrency, duration)
            .await
    }

    /// Screenshots of `url` from `concurrency` clients for `duration`, labelled `scenario`.
    pub(crate) async fn measure_as(
        &self,
        scenario: &'static str,
        url: &str,
        concurrency: usize,
        duration: Duration,
    ) -> Measured {
        let client = self.client.clone();
        let endpoint = format!("{}/v1/screenshot", self.base);
        let body = serde_json::json!({ "url": url });
        let run = drive(concurrency, duration, move |_| {
            let request = client.post(&endpoint).json(&body);
            async move {
                let response = request.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let png = response.bytes().await?;
                anyhow::ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
                Ok(())
            }
        })
        .await;
        let pid = self.child.id().unwrap_or_default();
        measured(
            scenario,
            concurrency,
            run,
            memory::chromium_pss_under(pid),
            memory::pss(pid),
        )
    }
}

/// A browser launched by chromiumoxide with pagewright's flags (so only the approach differs).
/// chromiumoxide starts it as this process's user, so as root it runs without Chromium's sandbox
/// (which refuses root), where pagewright runs it sandboxed as `nobody`.
async fn launch(
    chrome: &std::path::Path,
) -> anyhow::Result<(Browser, tokio::task::JoinHandle<()>, tempfile::TempDir)> {
    use std::os::unix::fs::MetadataExt;
    let profile = tempfile::tempdir()?;
    let root = std::fs::metadata("/proc/self")?.uid() == 0;
    let config = BrowserConfig::builder()
        .chrome_executable(chrome)
        .disable_default_args()
        // chromiumoxide adds the leading dashes itself.
        .args(
            pagewright::CHROMIUM_FLAGS
                .iter()
                .map(|flag| flag.trim_start_matches("--"))
                .chain(root.then_some("no-sandbox")),
        )
        .user_data_dir(profile.path())
        .viewport(Viewport {
            width: 1280,
            height: 720,
            ..Viewport::default()
        })
        .build()
        .map_err(anyhow::Error::msg)?;
    let (browser, mut handler) = Browser::launch(config).await?;
    let task = tokio::spawn(async move { while handler.next().await.is_some() {} });
    Ok((browser, task, profile))
}

/// Closes a browser launched by [`launch`] and waits for its process.
async fn close(mut browser: Browser, handler: tokio::task::JoinHandle<()>) {
    let _ = browser.close().await;
    let _ = browser.wait().await;
    handler.abort();
}

/// Figures of a scenario whose Chromium runs under this process.
fn measured_here(
    scenario: &'static str,
    concurrency: usize,
    run: (usize, usize, Vec<Duration>, f64),
) -> Measured {
    let me = std::process::id();
    measured(
        scenario,
        concurrency,
        run,
        memory::chromium_pss_under(me),
        memory::pss(me),
    )
}

fn png() -> ScreenshotParams {
    ScreenshotParams::builder()
        .format(CaptureScreenshotFormat::Png)
        .build()
}

/// The limit: pre-opened pages, goto + screenshot in a loop, nothing else.
async fn raw_loop(
    chrome: &std::path::Path,
    url: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let (browser, handler, _profile) = launch(chrome).await?;
    let mut pages = Vec::new();
    for _ in 0..concurrency {
        pages.push(browser.new_page("about:blank").await?);
    }
    let pages = Arc::new(pages);
    let url = url.to_owned();
    let run = drive(concurrency, duration, {
        let pages = pages.clone();
        move |worker| {
            let page = pages[worker].clone();
            let url = url.clone();
            async move {
                page.goto(url).await?;
                let png = page.screenshot(png()).await?;
                anyhow::ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
                Ok(())
            }
        }
    })
    .await;
    let result = measured_here("raw chromiumoxide loop", concurrency, run);
    close(browser, handler).await;
    Ok(result)
}

/// One browser, a new tab per render, closed afterwards.
async fn tab_per_render(
    chrome: &std::path::Path,
    url: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let (browser, handler, _profile) = launch(chrome).await?;
    let browser = Arc::new(browser);
    let url = url.to_owned();
    let run = drive(concurrency, duration, {
        let browser = browser.clone();
        move |_| {
            let browser = browser.clone();
            let url = url.clone();
            async move {
                let page = browser.new_page("about:blank").await?;
                page.goto(url).await?;
                let png = page.screenshot(png()).await?;
                page.close().await?;
                anyhow::ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
                Ok(())
            }
        }
    })
    .await;
    let result = measured_here("new tab per render", concurrency, run);
    match Arc::try_unwrap(browser) {
        Ok(browser) => close(browser, handler).await,
        Err(_) => handler.abort(),
    }
    Ok(result)
}

/// A new browser process per render: launch, render, close.
async fn browser_per_render(
    chrome: &std::path::Path,
    url: &str,
    concurrency: usize,
    duration: Duration,
) -> Measured {
    let chrome = chrome.to_owned();
    let url = url.to_owned();
    let peak_chromium = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let peak = peak_chromium.clone();
    let run = drive(concurrency, duration, move |_| {
        let chrome = chrome.clone();
        let url = url.clone();
        let peak = peak.clone();
        async move {
            let (browser, handler, _profile) = launch(&chrome).await?;
            let page = browser.new_page("about:blank").await?;
            page.goto(url).await?;
            let png = page.screenshot(png()).await?;
            peak.fetch_max(
                memory::chromium_pss_under(std::process::id()),
                std::sync::atomic::Ordering::Relaxed,
            );
            close(browser, handler).await;
            anyhow::ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
            Ok(())
        }
    })
    .await;
    let chromium = peak_chromium.load(std::sync::atomic::Ordering::Relaxed);
    measured(
        "new browser per render",
        concurrency,
        run,
        chromium,
        memory::pss(std::process::id()),
    )
}

fn print_last(results: &[Measured]) {
    if let Some(m) = results.last() {
        eprintln!(
            "{:<24} c={:<3} {:>7.2} renders/s  p50 {:>7.1} ms  p99 {:>7.1} ms  failures {}  chromium {:>7.1} MB  host {:>6.1} MB",
            m.scenario,
            m.concurrency,
            m.per_second(),
            m.p50_ms,
            m.p99_ms,
            m.failures,
            m.chromium_mb,
            m.host_mb
        );
    }
}

fn print_table(results: &[Measured]) {
    println!();
    println!(
        "| approach | concurrency | renders/s | p50 ms | p99 ms | failures | Chromium PSS MB | host PSS MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in results {
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            m.scenario,
            m.concurrency,
            m.per_second(),
            m.p50_ms,
            m.p99_ms,
            m.failures,
            m.chromium_mb,
            m.host_mb
        );
    }
    let best = |scenario: &str| {
        results
            .iter()
            .filter(|m| m.scenario == scenario)
            .map(Measured::per_second)
            .fold(0.0, f64::max)
    };
    let pagewright = best("pagewright HTTP API");
    println!();
    println!("Saturation (best renders/s over the concurrency levels) and ratios:");
    for (baseline, target) in [
        ("raw chromiumoxide loop", ">= 0.9x"),
        ("new browser per render", ">= 10x"),
        ("new tab per render", "> 1x"),
    ] {
        let base = best(baseline);
        println!(
            "- pagewright {pagewright:.2}/s vs {baseline} {base:.2}/s: {:.2}x (target {target})",
            pagewright / base
        );
    }
    println!(
        "Memory is host and Chromium PSS after each level; for the browser-per-render row, Chromium's peak."
    );
    println!(
        "Raw, tab and browser rows' host figure is the bench process (load generator included)."
    );
}

/// A pagewright server in this process (so a bench can reach its plugin host directly), on a loopback
/// port and its own data directory.
pub(crate) struct InProcessServer {
    pub(crate) services: pagewright::Services,
    pub(crate) base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl InProcessServer {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let data_dir_arg = data_dir.path().to_str().context("a UTF-8 temporary path")?;
        let argv = [
            "pagewright",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir_arg,
        ];
        let settings = pagewright::cli::serve_settings(argv)?;
        let listener = TcpListener::bind(settings.listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let services = pagewright::start_services(settings).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(pagewright::serve(services.clone(), listener, async {
            let _ = stopped.await;
        }));
        // Up once every shard's browser is: `/health` says so.
        let health = format!("{base}/health");
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(&health).await
                && let Ok(body) = response.json::<serde_json::Value>().await
                && body["status"] == "ok"
                && body["shards_up"] == body["shards"]
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the browsers did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            services,
            base,
            stop,
            task,
            _data_dir: data_dir,
        })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
