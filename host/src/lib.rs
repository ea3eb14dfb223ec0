//! pagewright: a render platform over a shared headless Chromium.
//!
//! A job's path runs down through the layers once (`docs/architecture.md` draws it): [`api`] parses
//! a request into a [`job::Job`] and hands it to the [`exec`]utor (or, for async jobs, to [`jobs`],
//! which hands it to the executor); the executor waits for a run slot from the [`sched`]uler, places
//! the job on a NUMA node's shard (`shard`), leases a page from the shard's pool (`pool`), drives the
//! page through its operations (`page`) and runs the job's [`plugin`]s on the shard's plugin
//! workers, in the Chromium that the shard's browser supervisor (`browser`) keeps alive. Below them
//! all are plain values ([`job`], [`topology`], the URL policy) and the metrics.
//!
//! This file wires the parts together: [`Settings`] (each part's own, built by [`cli`] from the
//! command line), [`start_services`] and [`serve`]. `host/layers.txt` is the order of the layers; a
//! test fails on any import that points up.

pub mod api;
mod browser;
pub mod cli;
pub mod egress;
pub mod exec;
pub mod job;
pub mod jobs;
pub mod metrics;
mod page;
mod pdf;
pub mod plugin;
mod pool;
pub mod sched;
mod secret;
mod shard;
pub mod store;
mod sys;
mod tasks;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod topology;
mod url_policy;

pub use browser::{BrowserSettings, CHROMIUM_FLAGS};
pub use jobs::install_tls_provider;
pub use page::{Navigation, PageError};
pub use pool::{PoolError, PoolSettings};
pub use secret::Secret;
pub use sys::raise_open_files_limit;
pub use url_policy::{UrlError, UrlPolicy};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use api::{ApiSettings, AppState};
use egress::{EgressProxy, EgressRules};
use exec::Executor;
use jobs::{Jobs, JobsSettings};
use metrics::Metrics;
use plugin::{PluginHost, PluginSettings, ScorerPlugin, ScorerSetting};
use sched::{SchedSettings, Scheduler};
use shard::Shards;
use store::{Store, StoreSettings};
use topology::Topology;

/// Every part's settings, checked; `cli` builds them from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub api: ApiSettings,
    pub browser: BrowserSettings,
    pub pool: PoolSettings,
    pub plugins: PluginSettings,
    pub sched: SchedSettings,
    pub jobs: JobsSettings,
    /// Where async jobs and their results are kept.
    pub store: StoreSettings,
    /// What pages and webhooks may connect to (enforced by the egress proxy).
    pub egress: Arc<EgressRules>,
    /// The proxy pages go on through (`--proxy`), unless a job names its own.
    pub proxy: Option<egress::Upstream>,
    /// A shard per node.
    pub topology: Topology,
    /// The scorer plugin to start with (`name` or `name@version`).
    pub scorer: Option<String>,
    /// On a shutdown signal, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// As long as a job's default budget: the jobs under way finish.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

    /// Settings for one job at a time on one page, each with `timeout` in all (`pagewright render`):
    /// one browser wherever the kernel runs it, no data directory and a store in memory, first
    /// come first served.
    pub fn one_page(browser: BrowserSettings, timeout: Duration) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api: ApiSettings::default(),
            browser,
            pool: PoolSettings {
                max_pages: 1,
                idle_timeout: timeout,
                page_reuse_limit: u32::MAX,
                context_reuse_limit: u32::MAX,
                lease_timeout: timeout,
            },
            plugins: PluginSettings::default(),
            sched: SchedSettings {
                slots: 1,
                min_slots: 1,
                start_slots: 1,
                adaptive: false,
                fifo: true,
                ..SchedSettings::for_cores(1)
            },
            jobs: JobsSettings::default(),
            store: StoreSettings::in_memory(),
            egress: Arc::default(),
            proxy: None,
            topology: Topology::single_node(),
            scorer: None,
            shutdown_grace: Duration::ZERO,
        }
    }
}

/// The running parts of a server.
#[derive(Debug, Clone)]
pub struct Services {
    pub executor: Executor,
    pub plugins: PluginHost,
    pub jobs: Jobs,
    pub metrics: Metrics,
    pub store: Store,
    shards: Shards,
    settings: Arc<Settings>,
    /// Set while memory is low (`watch_memory`): renders and submissions get a 503.
    memory_low: Arc<AtomicBool>,
}

impl Services {
    /// The state the HTTP API serves from.
    pub fn app_state(&self) -> AppState {
        AppState::new(
            self.settings.api.clone(),
            self.executor.clone(),
            self.jobs.clone(),
            self.metrics.clone(),
            self.memory_low.clone(),
        )
    }

    /// Stops the async jobs (those still running are queued again), closes every page and
    /// browser, then releases the data directory (so a server started next can have it), whatever
    /// jobs may still hold the plugin host, and closes the store.
    pub async fn close(&self) {
        self.jobs.shutdown(Duration::ZERO).await;
        self.shards.close().await;
        self.plugins.close().await;
        self.store.close().await;
    }
}

/// Opens the store, starts the plugin host (compiling the built-in plugins), the shards (a browser
/// supervisor and a pool each), the scheduler, the executor and the async jobs; the browsers launch
/// in the background.
pub async fn start_services(settings: Settings) -> anyhow::Result<Services> {
    if let Some(dir) = &settings.plugins.data_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {} failed", dir.display()))?;
    }
    // First: a store that cannot be opened stops the server before anything else starts.
    let store = Store::open(&settings.store).await?;
    let metrics = Metrics::new();
    // Every connection pages and webhooks make leaves through it.
    let egress = EgressProxy::start(
        settings.egress.clone(),
        metrics.clone(),
        settings.proxy.clone(),
    )
    .await
    .context("starting the egress proxy failed")?;
    let plugins = PluginHost::new(settings.plugins.clone(), metrics.clone())
        .context("starting the plugin host failed")?;
    let browser = BrowserSettings {
        egress: Some(egress.clone()),
        ..settings.browser.clone()
    };
    let shards = Shards::start(
        settings.topology.clone(),
        &browser,
        &settings.pool,
        settings.sched.slots,
        &metrics,
    );
    let scheduler = Scheduler::new(settings.sched.clone(), metrics.clone());
    scheduler.start_upkeep({
        let shards = shards.clone();
        move |demand| {
            shards.set_warm_targets(demand.iter().map(|key| (key.key.as_str(), key.warm_pages)))
        }
    });
    plugins
        .share_registry(store.clone())
        .await
        .context("loading the shared plugin registry failed")?;
    if let Some(name) = &settings.scorer {
        let scorer = ScorerPlugin::new(&plugins, name)
            .with_context(|| format!("--scorer {name} is not usable"))?;
        scheduler.set_scorer(Some(Arc::new(scorer)));
    }
    follow_shared_scorer(&plugins, &scheduler, settings.scorer.clone());
    let executor = Executor::new(scheduler, shards.clone(), plugins.clone(), metrics.clone());
    let jobs = Jobs::start(
        JobsSettings {
            egress_proxy: Some(egress.direct_url()),
            ..settings.jobs.clone()
        },
        store.clone(),
        executor.clone(),
        api::describe_failure,
        metrics.clone(),
    )
    .await
    .context("starting the async jobs failed")?;
    let memory_low = Arc::new(AtomicBool::new(false));
    watch_memory(Arc::downgrade(&memory_low));
    Ok(Services {
        executor,
        plugins,
        jobs,
        metrics,
        store,
        shards,
        settings: Arc::new(settings),
        memory_low,
    })
}

/// How often the memory admission looks at the machine's (or container's) memory: reading it per
/// request would cost every request a few system calls.
const MEMORY_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Keeps `low` saying whether memory is low, until the services are gone.
fn watch_memory(low: std::sync::Weak<AtomicBool>) {
    tasks::supervise("memory watch", move || {
        let low = low.clone();
        async move {
            let mut tick = tokio::time::interval(MEMORY_CHECK_EVERY);
            loop {
                tick.tick().await;
                let Some(low) = low.upgrade() else {
                    return;
                };
                let memory = tokio::task::spawn_blocking(sys::Memory::now)
                    .await
                    .unwrap_or(sys::Memory {
                        host_rss: None,
                        available: None,
                        total: None,
                    });
                let was_low = low.swap(memory.is_low(), Ordering::Relaxed);
                if was_low != memory.is_low() {
                    tracing::warn!(
                        low = memory.is_low(),
                        available = memory.available,
                        total = memory.total,
                        "memory admission changed: renders are {}",
                        if memory.is_low() {
                            "refused (503)"
                        } else {
                            "taken again"
                        }
                    );
                }
            }
        }
    });
}

/// Applies the scorer setting every host shares (set through the API on any host) to this host's
/// scheduler, now and whenever it changes; where it was never set, `--scorer` (`default`) stays.
fn follow_shared_scorer(plugins: &PluginHost, scheduler: &Scheduler, default: Option<String>) {
    let mut setting = plugins.shared_scorer();
    // Weak: the task ends with the plugin host.
    let (plugins, scheduler) = (plugins.downgrade(), scheduler.clone());
    tokio::spawn(async move {
        loop {
            let (_, current) = setting.borrow_and_update().clone();
            let Some(host) = plugins.upgrade() else {
                return;
            };
            let reference = match current {
                ScorerSetting::Unset => default.clone(),
                ScorerSetting::BuiltIn => None,
                ScorerSetting::Plugin(reference) => Some(reference),
            };
            let applied = match &reference {
                None => {
                    scheduler.set_scorer(None);
                    true
                }
                Some(reference) => match ScorerPlugin::new(&host, reference) {
                    Ok(scorer) => {
                        scheduler.set_scorer(Some(Arc::new(scorer)));
                        true
                    }
                    Err(error) => {
                        tracing::warn!(scorer = %reference, %error, "the shared scorer is not usable here yet; keeping the current one");
                        false
                    }
                },
            };
            drop(host);
            tokio::select! {
                changed = setting.changed() => if changed.is_err() { return },
                // Not usable yet: the registry may not have caught up with the upload.
                () = tokio::time::sleep(plugin::FOLLOW_POLL), if !applied => {}
            }
        }
    });
}

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting and claiming, gives
/// in-flight requests and running async jobs the grace period to finish (the async jobs left are
/// queued again for the next start or another host), and closes the pool and the browser.
pub async fn serve(
    services: Services,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = services.settings.shutdown_grace;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // Each connection gets a clone of the router, an `Arc`: ~220 KB per connection when axum
    // rebuilt the routes per connection (measured with heaptrack: 2.8 GB for 12,800 clients
    // waiting on synchronous renders).
    let server = api::serve(
        listener,
        api::app(services.app_state()),
        services.settings.api.connections,
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    );
    tokio::pin!(server);
    let stopping = tokio::select! {
        () = &mut server => false,
        () = shutdown => true,
    };
    if stopping {
        tracing::info!(
            ?grace,
            "shutting down: finishing in-flight requests and jobs"
        );
        stop_tx.send_replace(true);
        let requests = async {
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!("grace period over; abandoning the requests still running");
            }
        };
        tokio::join!(requests, services.jobs.shutdown(grace));
    }
    services.close().await;
    Ok(())
}

/// Connections the kernel queues for `accept`: a burst of thousands of clients connecting at once
/// (a flood of jobs) would otherwise overflow the default of 1024 and wait for SYN retries, seconds
/// each. The kernel caps it at `net.core.somaxconn` (4096 on Debian 12).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` with [`LISTEN_BACKLOG`].
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
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
    let services = start_services(settings).await?;
    serve(services, listener, shutdown_signal()).await
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
