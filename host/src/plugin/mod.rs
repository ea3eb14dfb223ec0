//! plugin: the WebAssembly plugin host. It owns the wasmtime [`Engine`](wasmtime::Engine) (component
//! model, fuel, epoch interruption, pooling allocator), the one `Linker` with the host side of
//! `wit/plugin@0.1.0`, the loaded plugins (each compiled once into an `InstancePre`), and the plugin
//! workers: a small runtime of its own, at a lower OS priority, so a plugin that spins cannot starve the
//! HTTP server, the CDP handler or Chromium.
//!
//! One invocation: a permit from the instance semaphore (sized like the pool of instance slots), a fresh
//! `Store` with a fuel budget, a fuel yield interval (so plugins time-slice on the workers), an epoch
//! deadline (wall time), a memory limit and the job's deadline around it all; the `page` resource
//! forwards to [`crate::page`] on the job's leased page. Traps, fuel, deadlines, memory and output size
//! each end as their own [`PluginError`].
//!
//! - `engine.rs`: engine and linker set-up, the epoch ticker;
//! - `registry.rs`: [`Plugin`] (a compiled component and its roles) and the built-ins;
//! - `invoke.rs`: one call into a plugin, from store set-up to the classified result;
//! - `state.rs`: what a store holds (WASI context, resource table, limits, the job's page, logs);
//! - `page_resource.rs` and `log.rs`: the host side of the WIT interfaces;
//! - `workers.rs`: the plugin worker runtime.

mod artifact;
mod bindings;
mod engine;
mod error;
mod invoke;
mod log;
mod manifest;
mod page_resource;
mod registry;
mod state;
mod store;
mod uploads;
mod validate;
mod workers;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::PluginSettings;
use crate::metrics::Metrics;
use crate::page::Navigation;
use crate::pool::Lease;
use crate::sched::{CpuStatus, Priority};

pub use error::{GuestErrorKind, PluginError};
pub use manifest::{Limits, LimitsView, MAX_DESCRIPTION_BYTES, Manifest, RequestedLimits};
pub use registry::{Metadata, Plugin, PluginInfo, Role, Roles, Source, sha256_hex};
pub use uploads::Uploaded;

use invoke::{Call, Returned};
use state::PageContext;

/// The test guests (`tests/guests/*`) built by `host/build.rs`, as `NAME.wasm`: for the integration
/// tests and the bench, not for production use.
#[doc(hidden)]
pub const TEST_GUESTS_DIR: &str = env!("PAGEWRIGHT_TEST_GUESTS_DIR");

/// What an extractor produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Json(String),
    Text(String),
    Bytes { content_type: String, data: Vec<u8> },
}

impl Output {
    pub fn len(&self) -> usize {
        match self {
            Self::Json(text) | Self::Text(text) => text.len(),
            Self::Bytes { content_type, data } => content_type.len() + data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What plugin calls cost a job: fuel (about one unit per WebAssembly instruction) and wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub fuel: u64,
    pub wall: Duration,
}

impl Usage {
    /// Adds another call's cost to this one.
    pub fn add(&mut self, other: Usage) {
        self.fuel += other.fuel;
        self.wall += other.wall;
    }
}

/// The job a plugin call belongs to: its id (in the plugin's log lines), its deadline, and its
/// priority for the CPU slots plugin code runs in.
#[derive(Debug, Clone, Copy)]
pub struct JobContext {
    pub id: u64,
    pub deadline: Instant,
    pub priority: Priority,
    /// The shard the job runs on: its plugin code runs on that shard's workers.
    pub shard: usize,
}

impl JobContext {
    /// A job of the default priority (hot): for calls made outside the scheduler.
    pub fn new(id: u64, deadline: Instant) -> Self {
        Self {
            id,
            deadline,
            priority: Priority::DEFAULT,
            shard: 0,
        }
    }
}

/// A plugin and the params the request gave it (JSON text).
#[derive(Debug, Clone)]
pub struct PluginCall {
    pub plugin: Arc<Plugin>,
    pub params: String,
}

/// The result of [`PluginHost::run_on_page`]: the lease back (unless the worker task was lost), the
/// extractor's output or the first failure, and what the calls cost.
#[derive(Debug)]
pub struct PageRun {
    pub lease: Option<Lease>,
    /// Where the page ended up: the host's navigation, or the plugins' latest.
    pub navigation: Option<Navigation>,
    pub result: Result<Output, PluginError>,
    pub usage: Usage,
}

/// Checks a plugin name: 1-64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter or
/// digit, so it is safe in a URL path and a file name.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        })
        && name
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plugin name: use 1-64 of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// What `pagewright plugin check` found: a component the server would load.
#[derive(Debug)]
pub struct Checked {
    pub roles: Roles,
    pub imports: Vec<String>,
    pub size: usize,
    pub compile_time: Duration,
}

/// Checks `bytes` as the server checks an upload under `name` (compile, imports and exports against
/// the linker, roles, one instantiation), with the default settings and no other plugin loaded.
pub async fn check_component(name: &str, bytes: &[u8]) -> Result<Checked, PluginError> {
    let settings = crate::config::PluginArgs::default()
        .validate(false)
        .map_err(|error| PluginError::Engine(error.to_string()))?;
    let host = PluginHost::without_plugins(settings, Metrics::new())?;
    let started = std::time::Instant::now();
    let component =
        registry::compile(&host.inner.engine, bytes).map_err(|reason| PluginError::Invalid {
            name: name.to_owned(),
            reason,
        })?;
    let compile_time = started.elapsed();
    let metadata = Metadata::new(name, semver::Version::new(0, 0, 0), bytes);
    let plugin = Arc::new(Plugin::new(
        &host.inner.engine,
        &host.inner.linker,
        &component,
        metadata,
        Source::File,
        Limits::server(&host.inner.settings),
    )?);
    host.verify(&plugin).await?;
    Ok(Checked {
        roles: plugin.roles(),
        imports: plugin.imports().to_vec(),
        size: bytes.len(),
        compile_time,
    })
}

/// Instances and linear memory held by plugin calls at one moment.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HostUsage {
    pub instances: usize,
    pub max_instances: usize,
    pub memory_bytes: usize,
    pub max_memory_bytes: usize,
    /// Components compiled since start; the others were loaded compiled from the data directory.
    pub compilations: u64,
    /// The CPU slots plugin code runs in, one per plugin worker.
    pub cpu: CpuStatus,
}

/// The plugin host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<state::PluginState>,
    plugins: RwLock<registry::Registry>,
    /// The data directory, where uploads and compiled code are kept; `None` for one-off commands.
    store: Option<store::Store>,
    /// Held while the registry and the data directory change (an upload's commit, a delete), so they
    /// change together and in one order.
    changes: tokio::sync::Mutex<()>,
    /// One compilation at a time: a large component keeps a core busy for seconds.
    compiles: Semaphore,
    /// Components compiled since start (the rest came compiled from the data directory).
    compilations: std::sync::atomic::AtomicU64,
    settings: PluginSettings,
    /// One permit per instance slot of the pooling allocator, so an instantiation never finds the pool
    /// exhausted: callers queue here instead, under their job's deadline.
    instances: Arc<Semaphore>,
    /// Linear memory all instances together may hold.
    memory_budget: Arc<state::MemoryBudget>,
    /// A group of workers per shard; plugin code runs only in one of a group's CPU slots, taken in
    /// priority order (one per worker thread).
    groups: Vec<workers::WorkerGroup>,
    metrics: Metrics,
}

impl HostInner {
    /// The workers of `shard` (the last group for a shard beyond them, which a host built with
    /// fewer groups than the server has shards would otherwise panic on).
    fn group(&self, shard: usize) -> &workers::WorkerGroup {
        &self.groups[shard.min(self.groups.len() - 1)]
    }
}

/// A group of workers per node of `settings.worker_nodes`, `settings.workers` threads shared among
/// them by CPUs (at least one each); one unpinned group without nodes.
fn worker_groups(
    settings: &PluginSettings,
    metrics: &Metrics,
) -> Result<Vec<workers::WorkerGroup>, PluginError> {
    if settings.worker_nodes.is_empty() {
        return Ok(vec![workers::WorkerGroup::start(
            0,
            settings.workers,
            None,
            metrics.clone(),
        )?]);
    }
    let cpus: usize = settings
        .worker_nodes
        .iter()
        .map(|node| node.cpus.len())
        .sum();
    settings
        .worker_nodes
        .iter()
        .enumerate()
        .map(|(shard, node)| {
            let threads =
                crate::shard::topology::share_by_cpus(settings.workers, node.cpus.len(), cpus);
            workers::WorkerGroup::start(shard, threads, Some(node), metrics.clone())
        })
        .collect()
}

impl std::fmt::Debug for HostInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostInner")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Builds the engine and linker, starts the workers and the epoch ticker, opens the data
    /// directory, and loads the built-in plugins, the `--plugin` files and the uploaded plugins.
    pub fn new(settings: PluginSettings, metrics: Metrics) -> Result<Self, PluginError> {
        let host = Self::without_plugins(settings, metrics)?;
        let builtin_version = semver::Version::parse(env!("CARGO_PKG_VERSION"))
            .expect("the crate version is semantic");
        for (name, bytes) in registry::BUILTINS {
            host.load_source(name, builtin_version.clone(), bytes, Source::Builtin)?;
        }
        for (name, path) in &host.inner.settings.files {
            if registry::is_builtin(name) {
                return Err(PluginError::Invalid {
                    name: name.clone(),
                    reason: "a built-in plugin has that name".into(),
                });
            }
            let bytes = std::fs::read(path).map_err(|error| PluginError::Invalid {
                name: name.clone(),
                reason: format!("reading {} failed: {error}", path.display()),
            })?;
            host.load(name, &bytes)?;
        }
        host.restore_uploads();
        Ok(host)
    }

    /// The engine, workers and data directory, with no plugin loaded.
    fn without_plugins(settings: PluginSettings, metrics: Metrics) -> Result<Self, PluginError> {
        let engine = engine::engine(&settings)?;
        let linker = engine::linker(&engine)?;
        engine::start_epoch_ticker(&engine);
        let store = match &settings.data_dir {
            Some(dir) => Some(store::Store::open(dir, &engine).map_err(|error| {
                PluginError::Storage(format!("opening the data directory failed: {error}"))
            })?),
            None => None,
        };
        let host = Self {
            inner: Arc::new(HostInner {
                instances: Arc::new(Semaphore::new(settings.max_instances as usize)),
                memory_budget: state::MemoryBudget::new(settings.max_total_memory_bytes),
                groups: worker_groups(&settings, &metrics)?,
                engine,
                linker,
                plugins: RwLock::new(registry::Registry::default()),
                store,
                changes: tokio::sync::Mutex::new(()),
                compiles: Semaphore::new(1),
                compilations: Default::default(),
                settings,
                metrics,
            }),
        };
        Ok(host)
    }

    /// Loads a component as a `--plugin` file would be: version 0.0.0, replacing any plugin of that
    /// name (for `--plugin` files, tests and the bench).
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        self.load_source(name, semver::Version::new(0, 0, 0), bytes, Source::File)
    }

    /// Compiles (or finds the compiled code of) `bytes`, checks the component and registers it.
    fn load_source(
        &self,
        name: &str,
        version: semver::Version,
        bytes: &[u8],
        source: Source,
    ) -> Result<Arc<Plugin>, PluginError> {
        let started = std::time::Instant::now();
        let metadata = Metadata::new(name, version, bytes);
        let component =
            self.component(&metadata.sha256, bytes)
                .map_err(|reason| PluginError::Invalid {
                    name: name.to_owned(),
                    reason,
                })?;
        let plugin = Arc::new(Plugin::new(
            &self.inner.engine,
            &self.inner.linker,
            &component,
            metadata,
            source,
            Limits::server(&self.inner.settings),
        )?);
        tracing::debug!(plugin = name, roles = %plugin.roles(), elapsed = ?started.elapsed(), "plugin loaded");
        let mut registry = self
            .inner
            .plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry.remove(name, None);
        registry.insert(plugin.clone());
        Ok(plugin)
    }

    /// Compiles `bytes` on this thread, counted in [`HostUsage::compilations`].
    fn compile(&self, bytes: &[u8]) -> Result<wasmtime::component::Component, String> {
        self.inner
            .compilations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        registry::compile(&self.inner.engine, bytes)
    }

    /// The compiled component for `bytes`: from the data directory if this engine compiled it
    /// before, else compiled now (on this thread) and kept there.
    fn component(
        &self,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<wasmtime::component::Component, String> {
        let store = self.inner.store.as_ref();
        if let Some(component) = store.and_then(|store| store.compiled(&self.inner.engine, sha256))
        {
            return Ok(component);
        }
        let component = self.compile(bytes)?;
        if let Some(store) = store
            && let Err(error) = store.save_compiled(sha256, &component)
        {
            tracing::warn!(%error, "keeping a compiled plugin failed; it will be compiled again");
        }
        Ok(component)
    }

    /// The plugin a request names: `name` (its latest version) or `name@version`.
    pub fn get(&self, reference: &str) -> Result<Arc<Plugin>, PluginError> {
        self.registry().get(reference)
    }

    /// The versions of `name`, oldest first (none if there is no such plugin).
    pub fn versions(&self, name: &str) -> Vec<Arc<Plugin>> {
        self.registry().versions(name)
    }

    /// Every plugin's versions (oldest first), by name.
    pub fn catalog(&self) -> Vec<Vec<Arc<Plugin>>> {
        self.registry().all()
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, registry::Registry> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.inner.settings
    }

    /// What plugin calls hold now, for `/v1/status`.
    pub fn usage_now(&self) -> HostUsage {
        let settings = &self.inner.settings;
        HostUsage {
            instances: settings.max_instances as usize - self.inner.instances.available_permits(),
            max_instances: settings.max_instances as usize,
            memory_bytes: self.inner.memory_budget.used(),
            max_memory_bytes: self.inner.memory_budget.total(),
            compilations: self
                .inner
                .compilations
                .load(std::sync::atomic::Ordering::Relaxed),
            cpu: CpuStatus::sum(self.inner.groups.iter().map(|group| group.cpu.status())),
        }
    }

    /// A page-script plugin's init scripts for `params`. Runs on the plugin workers, without a page.
    pub async fn init_scripts(
        &self,
        call: &PluginCall,
        job: JobContext,
    ) -> (Result<Vec<String>, PluginError>, Usage) {
        let call_ = Call::InitScripts(call.params.clone());
        self.without_page(&call.plugin, call_, job, |returned| match returned {
            Returned::Scripts(scripts) => Some(scripts),
            _ => None,
        })
        .await
    }

    /// Runs the page-script plugins' after-load hooks, then the extractor, on the leased page, in one
    /// task on the plugin workers. The first failure stops the run.
    pub async fn run_on_page(
        &self,
        lease: Lease,
        navigation: Navigation,
        job: JobContext,
        after_load: Vec<PluginCall>,
        extractor: PluginCall,
    ) -> PageRun {
        let inner = self.inner.clone();
        let run = self.inner.group(job.shard).workers.run(async move {
            let mut page = Some(PageContext::new(lease, job.deadline, navigation));
            let mut usage = Usage::default();
            let steps = after_load
                .into_iter()
                .map(|call| (call.plugin, Call::AfterLoad(call.params)))
                .chain(std::iter::once((
                    extractor.plugin,
                    Call::Extract(extractor.params),
                )));
            let mut result = Err(PluginError::WorkerLost);
            for (plugin, call) in steps {
                let invoked = invoke::invoke(&inner, &plugin, call, page.take(), job).await;
                usage.add(invoked.usage);
                page = invoked.page;
                result = invoked.result;
                if result.is_err() {
                    break;
                }
            }
            let result = result.and_then(|returned| match returned {
                Returned::Output(output) => Ok(output),
                _ => Err(PluginError::WorkerLost),
            });
            let (lease, navigation) = match page {
                Some(page) => (Some(page.lease), Some(page.navigation)),
                None => (None, None),
            };
            PageRun {
                lease,
                navigation,
                result,
                usage,
            }
        });
        run.await.unwrap_or(PageRun {
            lease: None,
            navigation: None,
            result: Err(PluginError::WorkerLost),
            usage: Usage::default(),
        })
    }

    /// Runs an extractor with no page behind its `page` resource (every page operation fails with
    /// invalid-input), on the plugin workers. For measuring invocation cost and testing plugins.
    pub async fn extract_without_page(
        &self,
        plugin: &Arc<Plugin>,
        params: &str,
        job: JobContext,
    ) -> (Result<Output, PluginError>, Usage) {
        let call = Call::Extract(params.to_owned());
        self.without_page(plugin, call, job, |returned| match returned {
            Returned::Output(output) => Some(output),
            _ => None,
        })
        .await
    }

    /// A scorer plugin's score for `job_info`, on the plugin workers.
    pub async fn score(
        &self,
        plugin: &Arc<Plugin>,
        job_info: JobInfo,
        job: JobContext,
    ) -> (Result<f64, PluginError>, Usage) {
        self.without_page(
            plugin,
            Call::Score(job_info),
            job,
            |returned| match returned {
                Returned::Score(score) => Some(score),
                _ => None,
            },
        )
        .await
    }

    /// Instantiates `plugin` once under its limits, on the plugin workers, and checks every exported
    /// role's functions against the WIT's types, calling none of them: a component whose exports
    /// have the wrong types, or that traps or runs away while starting, is refused here instead of
    /// failing its first job.
    pub(super) async fn verify(&self, plugin: &Arc<Plugin>) -> Result<(), PluginError> {
        let job = JobContext {
            id: 0,
            deadline: Instant::now() + plugin.limits().timeout,
            priority: Priority::BACKGROUND,
            shard: 0,
        };
        let (result, _) = self
            .without_page(plugin, Call::Verify, job, |returned| {
                matches!(returned, Returned::Done).then_some(())
            })
            .await;
        result.map_err(|error| match error {
            // The server's state, not the plugin's fault: let the caller retry.
            PluginError::Busy
            | PluginError::ServerMemory { .. }
            | PluginError::Engine(_)
            | PluginError::Workers(_)
            | PluginError::WorkerLost => error,
            PluginError::Trapped { message, .. } => PluginError::Invalid {
                name: plugin.name().to_owned(),
                reason: message,
            },
            error => PluginError::Invalid {
                name: plugin.name().to_owned(),
                reason: format!("starting it failed: {error}"),
            },
        })
    }

    /// One call without a page, on the plugin workers; `pick` takes the call's kind of result.
    async fn without_page<T: Send + 'static>(
        &self,
        plugin: &Arc<Plugin>,
        call: Call,
        job: JobContext,
        pick: fn(Returned) -> Option<T>,
    ) -> (Result<T, PluginError>, Usage) {
        let inner = self.inner.clone();
        let plugin = plugin.clone();
        let run = self.inner.group(job.shard).workers.run(async move {
            let invoked = invoke::invoke(&inner, &plugin, call, None, job).await;
            let result = invoked
                .result
                .and_then(|returned| pick(returned).ok_or(PluginError::WorkerLost));
            (result, invoked.usage)
        });
        run.await
            .unwrap_or((Err(PluginError::WorkerLost), Usage::default()))
    }
}

pub use bindings::pagewright::plugin::types::{JobInfo, OriginStats, PriorityClass};

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin host with the default settings, adjusted by `adjust`.
    fn host_with(adjust: impl FnOnce(&mut PluginSettings)) -> PluginHost {
        let mut settings = crate::config::PluginArgs::default()
            .validate(false)
            .expect("default settings");
        adjust(&mut settings);
        PluginHost::new(settings, Metrics::new()).expect("the plugin host starts")
    }

    fn guest(host: &PluginHost, name: &str) -> Arc<Plugin> {
        let path = std::path::Path::new(TEST_GUESTS_DIR).join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).expect("the guest was built");
        host.load(name, &bytes).expect("the guest loads")
    }

    fn job() -> JobContext {
        JobContext::new(1, Instant::now() + Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_loop_runs_out_of_fuel_having_used_all_of_it() {
        let host = host_with(|settings| settings.fuel = 100_000_000);
        let spin = guest(&host, "spin");
        let (result, usage) = host.extract_without_page(&spin, "{}", job()).await;
        assert!(
            matches!(result, Err(PluginError::OutOfFuel { .. })),
            "{result:?}"
        );
        assert_eq!(usage.fuel, 100_000_000);
    }

    #[tokio::test]
    async fn the_epoch_deadline_stops_a_loop_with_fuel_to_spare() {
        let host = host_with(|settings| {
            settings.fuel = u64::MAX / 2;
            settings.timeout = Duration::from_millis(200);
        });
        let spin = guest(&host, "spin");
        let started = std::time::Instant::now();
        let (result, _) = host.extract_without_page(&spin, "{}", job()).await;
        assert!(
            matches!(result, Err(PluginError::Timeout { .. })),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn memory_and_output_limits_are_their_own_errors() {
        let host = host_with(|settings| {
            settings.max_memory_bytes = 16 << 20;
        });
        let bomb = guest(&host, "memory-bomb");
        let (result, _) = host.extract_without_page(&bomb, "{}", job()).await;
        assert!(
            matches!(result, Err(PluginError::MemoryLimit { .. })),
            "{result:?}"
        );

        let host = host_with(|_| {});
        let huge = guest(&host, "huge-output");
        let (result, _) = host.extract_without_page(&huge, "{}", job()).await;
        assert!(
            matches!(
                result,
                Err(PluginError::OutputTooLarge {
                    size: 100_000_024,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_servers_memory_budget_bounds_every_plugin_together() {
        let host = host_with(|settings| {
            settings.max_total_memory_bytes = 24 << 20;
        });
        let bomb = guest(&host, "memory-bomb");
        let (result, _) = host.extract_without_page(&bomb, "{}", job()).await;
        assert!(
            matches!(result, Err(PluginError::ServerMemory { .. })),
            "{result:?}"
        );
        // What the bomb held went back with its store.
        assert_eq!(host.inner.memory_budget.used(), 0);
        let noop = guest(&host, "noop");
        let (result, _) = host.extract_without_page(&noop, "{}", job()).await;
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_trap_quotes_what_the_plugin_printed() {
        let host = host_with(|_| {});
        let trap = guest(&host, "trap");
        let (result, _) = host.extract_without_page(&trap, "{}", job()).await;
        let Err(PluginError::Trapped { message, .. }) = result else {
            panic!("expected a trap, got {result:?}");
        };
        assert!(message.contains("unreachable"), "{message}");
        assert!(message.contains("this plugin always panics"), "{message}");
        assert!(!message.contains("RUST_BACKTRACE"), "{message}");
    }

    #[tokio::test]
    async fn calls_wait_for_a_free_instance_within_their_deadline() {
        let host = host_with(|settings| {
            settings.max_instances = 1;
            settings.timeout = Duration::from_millis(1_500);
            settings.fuel = u64::MAX / 2;
        });
        let spin = guest(&host, "spin");
        let noop = guest(&host, "noop");
        let spinning = tokio::spawn({
            let host = host.clone();
            async move { host.extract_without_page(&spin, "{}", job()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let short = JobContext::new(2, Instant::now() + Duration::from_millis(300));
        let (result, _) = host.extract_without_page(&noop, "{}", short).await;
        assert!(matches!(result, Err(PluginError::Busy)), "{result:?}");
        // Once the loop's deadline frees the instance, the next call gets it.
        let (result, _) = host.extract_without_page(&noop, "{}", job()).await;
        assert_eq!(result.expect("noop runs"), Output::Text(String::new()));
        let (spun, _) = spinning.await.expect("the spinning task");
        assert!(matches!(spun, Err(PluginError::Timeout { .. })), "{spun:?}");
    }

    /// Runs a spinning plugin at `spinning` priority on a host with one CPU slot, then a no-op at
    /// `priority`; the no-op must finish while the loop still runs.
    async fn a_call_gets_the_cpu_from_a_spinning_one(spinning: Priority, priority: Priority) {
        let host = host_with(|settings| {
            settings.workers = 1;
            settings.worker_nodes.clear();
            settings.fuel = u64::MAX / 2;
            settings.timeout = Duration::from_secs(20);
        });
        let spin = guest(&host, "spin");
        let noop = guest(&host, "noop");
        let spinning_call = tokio::spawn({
            let host = host.clone();
            let job = JobContext {
                priority: spinning,
                ..job()
            };
            async move { host.extract_without_page(&spin, "{}", job).await }
        });
        while host.usage_now().cpu.busy == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let job = JobContext { priority, ..job() };
        let (result, _) = host.extract_without_page(&noop, "{}", job).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(!spinning_call.is_finished(), "the loop is still running");
        assert!(host.usage_now().cpu.preemptions >= 1);
        spinning_call.abort();
    }

    #[tokio::test]
    async fn a_spinning_plugin_gives_its_cpu_slot_to_a_higher_priority_call() {
        let cold = Priority {
            band: 2,
            score: 0.0,
        };
        a_call_gets_the_cpu_from_a_spinning_one(cold, Priority::DEFAULT).await;
    }

    #[tokio::test]
    async fn plugins_of_equal_priority_take_turns_on_the_cpu() {
        a_call_gets_the_cpu_from_a_spinning_one(Priority::DEFAULT, Priority::DEFAULT).await;
    }

    #[test]
    fn components_that_cannot_be_plugins_are_refused_at_load() {
        let host = host_with(|_| {});
        let refused = |bytes: &[u8]| match host.load("bad", bytes) {
            Err(PluginError::Invalid { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let wat = |text: &str| wat::parse_str(text).expect("valid WAT");
        assert!(refused(b"garbage").contains("not a WebAssembly binary"));
        assert!(refused(b"(component)").contains("not a WebAssembly binary"));
        assert!(refused(&wat("(module)")).contains("core WebAssembly module"));
        assert!(refused(&wat("(component)")).contains("exports none of the roles"));
        let filesystem = refused(&wat(
            r#"(component (import "wasi:filesystem/types@0.2.6" (instance (export "open" (func)))))"#,
        ));
        assert!(
            filesystem.contains("`wasi:filesystem/types@0.2.6`")
                && filesystem.contains("no filesystem"),
            "{filesystem}"
        );
        let unknown = refused(&wat(
            r#"(component (import "acme:spy/send@1.0.0" (instance)))"#,
        ));
        assert!(unknown.contains("`acme:spy/send@1.0.0`"), "{unknown}");
        let no_such_role = refused(&wat(r#"(component
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $x (export "extract" (func $f)))
                 (export "pagewright:plugin/extractor@9.0.0" (instance $x)))"#));
        assert!(
            no_such_role.contains("export `pagewright:plugin/extractor@9.0.0` does not match")
                && no_such_role.contains("not version `9.0.0`"),
            "{no_such_role}"
        );
        assert!(host.get("bad").is_err(), "nothing was registered");
    }

    #[tokio::test]
    async fn verifying_a_plugin_checks_its_exports_types_and_start() {
        let host = host_with(|_| {});
        // `extract` exported with the name the WIT gives it, but no parameters and no result.
        let wrong_type = wat::parse_str(
            r#"(component
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $x (export "extract" (func $f)))
                 (export "pagewright:plugin/extractor@0.1.0" (instance $x)))"#,
        )
        .expect("valid WAT");
        let plugin = host.load("wrong-type", &wrong_type).expect("its names fit");
        let error = host.verify(&plugin).await.expect_err("its types do not");
        let message = error.to_string();
        assert!(
            message.contains("export `pagewright:plugin/extractor@0.1.0`")
                && message.contains("type"),
            "{message}"
        );
        let noop = guest(&host, "noop");
        host.verify(&noop).await.expect("a good plugin verifies");
    }

    mod fuzz {
        //! Upload validation over random and mutated bytes: every input is refused or accepted,
        //! none panics or hangs. Bounded by the case counts, so it runs in CI.
        use super::*;
        use proptest::prelude::*;

        fn host() -> &'static PluginHost {
            static HOST: std::sync::OnceLock<PluginHost> = std::sync::OnceLock::new();
            HOST.get_or_init(|| host_with(|_| {}))
        }

        fn noop() -> &'static [u8] {
            static NOOP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            NOOP.get_or_init(|| {
                std::fs::read(std::path::Path::new(TEST_GUESTS_DIR).join("noop.wasm"))
                    .expect("the noop guest was built")
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                prop_assert!(host().load("fuzz", &bytes).is_err());
            }

            #[test]
            fn a_component_with_a_header_and_random_sections_is_refused(
                body in proptest::collection::vec(any::<u8>(), 0..4096),
            ) {
                let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
                bytes.extend(body);
                prop_assert!(host().load("fuzz", &bytes).is_err());
            }

            #[test]
            fn mutated_components_are_refused_or_loaded(
                flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                keep in 0.5f64..=1.0,
            ) {
                let mut bytes = noop().to_vec();
                for (index, value) in flips {
                    let at = index.index(bytes.len());
                    bytes[at] = value;
                }
                bytes.truncate((bytes.len() as f64 * keep) as usize);
                // Either answer is fine; a panic or a hang is the failure.
                let _ = host().load("fuzz", &bytes);
            }
        }
    }

    #[test]
    fn plugin_names_are_safe_in_paths() {
        for good in ["links", "my-plugin_2", "0day"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "UPPER",
            "-dash",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
