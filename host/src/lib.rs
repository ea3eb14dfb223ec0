//! pagewright: a render platform over a shared headless Chromium.
//!
//! A request's path: [`api`] parses and checks it and builds a [`render::RenderJob`]; [`sched`] queues
//! it until a run slot is free; [`shard`] places it on a NUMA node's shard, whose [`render`] leases a
//! page from the shard's [`pool`], which opens pages in the Chromium that the shard's [`browser`]
//! supervisor keeps alive; the job drives the page through [`page`]'s operations (and [`plugin`]s on
//! the shard's plugin workers) and the output goes back. See `docs/architecture.md`.

pub mod api;
pub mod browser;
pub mod config;
pub mod metrics;
pub mod page;
pub mod plugin;
pub mod pool;
pub mod render;
pub mod sched;
pub mod shard;
mod sys;

pub use sys::raise_open_files_limit;

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;

use api::AppState;
use browser::BrowserSupervisor;
use config::Settings;
use metrics::Metrics;
use plugin::PluginHost;
use pool::PagePool;
use render::Renderer;

/// Makes rustls's ring provider the process's crypto provider (once; later calls do nothing).
/// reqwest is built without a provider of its own, so every HTTPS client needs this first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts the plugin host (compiling the built-in plugins), the shards (a browser supervisor and a
/// pool each) and the scheduler; the browsers launch in the background.
pub fn start_services(settings: Settings) -> anyhow::Result<AppState> {
    let metrics = Metrics::new();
    let plugins = PluginHost::new(settings.plugins.clone(), metrics.clone())
        .context("starting the plugin host failed")?;
    let shards = start_shards(&settings, &plugins, &metrics);
    let scheduler = sched::Scheduler::new(
        settings.sched.clone(),
        metrics.clone(),
        Some(plugins.clone()),
    );
    scheduler.start_upkeep({
        let shards = shards.clone();
        move |demand| shards.set_warm_targets(demand)
    });
    let jobs = sched::Jobs::new(settings.jobs.clone());
    let webhooks = sched::Webhooks::new(
        jobs.clone(),
        settings.webhook_secret.as_ref().map(config::Token::expose),
        metrics.clone(),
    );
    if let Some(name) = &settings.scorer {
        plugins
            .get(name)
            .and_then(|scorer| scheduler.set_scorer(Some(scorer)))
            .with_context(|| format!("--scorer {name} is not usable"))?;
    }
    Ok(AppState {
        scheduler,
        jobs,
        webhooks,
        settings,
        shards,
        plugins,
        metrics,
    })
}

/// A browser, pool and renderer per node of the topology, each browser pinned to its node; the
/// browsers launch in the background.
fn start_shards(settings: &Settings, plugins: &PluginHost, metrics: &Metrics) -> shard::Shards {
    let topology = settings.topology.clone();
    let total_cpus = topology.cpus();
    let shards = topology
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let browser = BrowserSupervisor::start(
                config::BrowserSettings {
                    node: Some(node.clone()),
                    ..settings.browser.clone()
                },
                metrics.clone(),
            );
            let pool = PagePool::new(
                index,
                browser.clone(),
                settings.pool.share(node.cpus.len(), total_cpus),
                metrics.clone(),
            );
            let renderer = Renderer::new(pool.clone(), plugins.clone(), metrics.clone(), index);
            shard::Shard::new(index, node.clone(), browser, pool, renderer)
        })
        .collect();
    shard::Shards::new(topology, shards, metrics.clone())
}

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting, gives in-flight
/// requests the grace period to finish, and closes the pool and the browser.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.settings.shutdown_grace;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // `into_make_service`: each connection gets a clone of the router's `Arc`. Serving the
    // `Router` itself rebuilds every route per connection (axum's `with_state(())` on a shared
    // router deep-copies it), ~220 KB per connection, measured with heaptrack: 2.8 GB for 12,800
    // clients waiting on synchronous renders.
    let server = axum::serve(listener, api::app(state.clone()).into_make_service())
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future();
    tokio::pin!(server);
    let served = tokio::select! {
        served = &mut server => Some(served),
        () = shutdown => None,
    };
    let served = match served {
        Some(served) => served,
        None => {
            tracing::info!(?grace, "shutting down: finishing in-flight requests");
            stop_tx.send_replace(true);
            match tokio::time::timeout(grace, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!("grace period over; abandoning the requests still running");
                    Ok(())
                }
            }
        }
    };
    state.shards.close().await;
    // Requests the grace period abandoned may still hold the plugin host; the data directory is
    // released now regardless, so a server started next can have it.
    state.plugins.close().await;
    served.context("serving HTTP failed")
}

/// Connections the kernel queues for `accept`: a burst of thousands of clients connecting at once
/// (a flood of jobs) would otherwise overflow the default of 1024 and wait for SYN retries, seconds
/// each. The kernel caps it at `net.core.somaxconn` (4096 on Debian 12).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` with [`LISTEN_BACKLOG`].
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `pagewright serve`: bind, start, serve until SIGINT or SIGTERM.
pub async fn run_server(settings: Settings) -> anyhow::Result<()> {
    match raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    let listener =
        bind(settings.listen).with_context(|| format!("binding {} failed", settings.listen))?;
    tracing::info!(address = %listener.local_addr()?, "pagewright is listening");
    let state = start_services(settings)?;
    serve(state, listener, shutdown_signal()).await
}

/// `pagewright plugin check FILE`: the server's load-time checks, offline, with a report.
pub async fn run_plugin_check(file: &std::path::Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("reading {} failed", file.display()))?;
    let name = file
        .file_stem()
        .map_or_else(|| "plugin".into(), |stem| stem.to_string_lossy());
    let checked = plugin::check_component(&name, &bytes)
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

/// `pagewright plugin upload FILE --name N`: `PUT /v1/plugins/N` with the file and its manifest,
/// then a report of what the server registered, or its error.
pub async fn run_plugin_upload(args: config::UploadArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading {} failed", args.file.display()))?;
    let mut manifest = match &args.manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {} failed", path.display()))?;
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
        .bearer_auth(&args.token)
        .header(api::MANIFEST_HEADER, manifest.to_string())
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

/// `pagewright render`: one page to files, through the same pool and job path as the server.
pub async fn run_render(args: config::RenderArgs) -> anyhow::Result<()> {
    use page::options::{ImageFormat, PdfOptions, ScreenshotOptions, Viewport};
    use plugin::PluginCall;
    use render::{Output, RenderJob, RenderedBody, Target};

    let url = api::url_policy::check(&args.url, false)
        .await
        .map_err(|error| anyhow::anyhow!(error.message))?;
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let settings = Settings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        browser: args.browser.validate()?,
        // One job at a time on one page: the outputs are rendered one after the other.
        pool: config::PoolSettings {
            max_pages: 1,
            max_concurrent_renders: 1,
            min_concurrent_renders: 1,
            start_concurrent_renders: 1,
            fixed_concurrency: true,
            idle_timeout: timeout,
            page_reuse_limit: u32::MAX,
            context_reuse_limit: u32::MAX,
            lease_timeout: timeout,
        },
        plugins: config::PluginArgs::default().validate(false)?,
        native_builtins: false,
        job_timeout: timeout,
        max_job_timeout: timeout,
        max_body_bytes: 0,
        deny_private_networks: false,
        shutdown_grace: std::time::Duration::ZERO,
        admin_token: None,
        render_token: None,
        sched: sched::SchedSettings {
            queue_capacity: 16,
            slots: 1,
            min_slots: 1,
            start_slots: 1,
            adaptive: false,
            aging_step: timeout,
            fifo: true,
        },
        queue_timeout: timeout,
        scorer: None,
        jobs: sched::JobsSettings {
            result_ttl: timeout,
            max_result_bytes: 0,
            max_records: 0,
        },
        webhook_secret: None,
        // One browser for one page, wherever the kernel runs it.
        topology: shard::Topology::single_node(),
    };
    let state = start_services(settings)?;
    // The same built-in plugins the API's endpoints use.
    let plugin = |name: &str, params: serde_json::Value| -> anyhow::Result<Output> {
        Ok(Output::Plugin(PluginCall {
            plugin: state.plugins.get(name)?,
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
        outputs.push((path, plugin("screenshot", serde_json::to_value(options)?)?));
    }
    if let Some(path) = &args.pdf {
        outputs.push((
            path,
            plugin("pdf", serde_json::to_value(PdfOptions::default())?)?,
        ));
    }
    if let Some(path) = &args.html {
        outputs.push((
            path,
            plugin("content", serde_json::json!({ "html": true }))?,
        ));
    }
    let mut result = Ok(());
    for (path, output) in outputs {
        let mut job = RenderJob {
            id: render::next_job_id(),
            target: Target::Url(url.to_string()),
            goto: Default::default(),
            page: Default::default(),
            scripts: Vec::new(),
            output,
            deadline: tokio::time::Instant::now() + timeout,
            priority: sched::Priority::DEFAULT,
        };
        job.page.viewport = Viewport {
            width: args.viewport.0,
            height: args.viewport.1,
            ..Viewport::default()
        };
        let rendered = match state.shards[0].renderer.render(&job).await {
            Ok(rendered) => rendered,
            Err(error) => {
                result = Err(anyhow::anyhow!("rendering {url} failed: {error}"));
                break;
            }
        };
        let bytes = match rendered.body {
            RenderedBody::Bytes { bytes, .. } => bytes,
            RenderedBody::Html(html) | RenderedBody::Text(html) => html.into_bytes(),
            // The content plugin's `{"url", "status", "html"}`: the file gets the HTML.
            RenderedBody::Json(json) => serde_json::from_str::<serde_json::Value>(&json)?["html"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
        };
        if let Err(error) = std::fs::write(path, &bytes) {
            result = Err(anyhow::anyhow!(
                "writing {} failed: {error}",
                path.display()
            ));
            break;
        }
        println!(
            "{} ({} bytes, page status {})",
            path.display(),
            bytes.len(),
            rendered.navigation.status
        );
    }
    state.shards.close().await;
    result
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
}
