//! plugin: the WebAssembly plugin host. It owns the wasmtime [`Engine`](wasmtime::Engine) (component
//! model, fuel, epoch interruption, pooling allocator), the one `Linker` with the host side of
//! `wit/plugin@0.2.0` (and of `0.1.0`, for plugins built against it), the loaded plugins (each compiled once into an `InstancePre`), the plugin
//! workers (a small runtime per shard, at a lower OS priority, so a plugin that spins cannot starve
//! the HTTP server, the CDP handler or Chromium) and the CPU slots plugin code runs in.
//!
//! One invocation: a permit from the instance semaphore (sized like the pool of instance slots), a fresh
//! `Store` with a fuel budget, a fuel yield interval (so plugins time-slice on the workers), an epoch
//! deadline (wall time), a memory limit and the job's deadline around it all; the `page` resource
//! forwards to [`crate::page`] on the job's leased page. Traps, fuel, deadlines, memory and output size
//! each end as their own [`PluginError`].
//!
//! - `settings.rs`: [`PluginSettings`], the limits and their defaults;
//! - `engine.rs`: engine and linker set-up, the epoch ticker;
//! - `registry.rs`: [`Plugin`] (a compiled component and its roles) and the built-ins;
//! - `calls.rs`: what the rest of the host calls: a job's plugins on its page, init scripts, scores;
//! - `invoke.rs`: one call into a plugin, from store set-up to the classified result;
//! - `state.rs`: what a store holds (WASI context, resource table, limits, the job's page, logs);
//! - `page_resource.rs` and `log.rs`: the host side of the WIT interfaces (`bindings.rs`, private);
//!   `v0_1.rs`: the same for plugins built against 0.1.0, converting and delegating; `exports.rs`:
//!   a plugin's roles in its version, and the calls into them;
//! - `cpu.rs`: the CPU slots, with cooperative preemption at fuel yields; `workers.rs`: the workers;
//! - `scorer.rs`: scorer plugins as the scheduler's [`Scorer`](crate::sched::Scorer);
//! - `uploads.rs`, `shared.rs`, `manifest.rs`, `validate.rs`: the registry of uploaded plugins,
//!   kept in the store every host shares and followed by each; `data_dir.rs`, `artifact.rs`: this
//!   host's compiled code; `check.rs`: `pagewright plugin check`.

mod artifact;
mod bindings;
mod calls;
mod check;
mod cpu;
mod data_dir;
mod engine;
mod error;
mod exports;
mod invoke;
mod log;
mod manifest;
mod page_resource;
mod registry;
mod scorer;
mod settings;
mod shared;
mod state;
mod uploads;
mod v0_1;
mod validate;
mod workers;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::job::PluginRef;
use crate::metrics::Metrics;
use crate::sched::Priority;

pub use calls::PageRun;
pub use check::{Checked, check_component};
pub use cpu::CpuStatus;
pub use error::{GuestErrorKind, PluginError};
pub use manifest::{Limits, LimitsView, MAX_DESCRIPTION_BYTES, Manifest, RequestedLimits};
pub use registry::{Metadata, Plugin, PluginInfo, Role, Roles, Source, is_builtin, sha256_hex};
pub use scorer::ScorerPlugin;
pub use settings::PluginSettings;
pub use shared::{FOLLOW_POLL, ScorerSetting};
pub use uploads::{Deleted, Uploaded};

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

    /// The wall time in milliseconds, as the `x-pagewright-plugin-ms` header and a job's document
    /// give it.
    pub fn wall_ms(&self) -> f64 {
        self.wall.as_secs_f64() * 1000.0
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
    /// The data directory, where compiled code is kept; `None` for one-off commands.
    data_dir: Option<data_dir::DataDir>,
    /// The registry of uploads every host shares; set once by [`PluginHost::share_registry`].
    store: std::sync::OnceLock<crate::store::Store>,
    /// Where this host stands with the store's registry.
    following: std::sync::Mutex<shared::Following>,
    /// The scorer setting every host follows, with its revision.
    scorer: tokio::sync::watch::Sender<(i64, ScorerSetting)>,
    /// Held while the registry changes (an upload's commit, a delete, following the store), so
    /// changes happen in one order.
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
            let threads = crate::topology::share_by_cpus(settings.workers, node.cpus.len(), cpus);
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

/// A [`PluginHost`] that does not keep it alive, for tasks that should end with it.
#[derive(Debug, Clone)]
pub struct WeakPluginHost {
    inner: std::sync::Weak<HostInner>,
}

impl WeakPluginHost {
    pub fn upgrade(&self) -> Option<PluginHost> {
        self.inner.upgrade().map(|inner| PluginHost { inner })
    }
}

impl PluginHost {
    pub fn downgrade(&self) -> WeakPluginHost {
        WeakPluginHost {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Builds the engine and linker, starts the workers and the epoch ticker, opens the data
    /// directory, and loads the built-in plugins and the `--plugin` files. The uploaded plugins
    /// come with the store ([`PluginHost::share_registry`]).
    pub fn new(settings: PluginSettings, metrics: Metrics) -> Result<Self, PluginError> {
        let host = Self::without_plugins(settings, metrics)?;
        let builtin_version = semver::Version::parse(env!("CARGO_PKG_VERSION"))
            .expect("the crate version is semantic");
        for (name, bytes) in registry::BUILTINS {
            host.load_source(name, builtin_version.clone(), bytes, Source::Builtin)?;
        }
        for (name, path) in &host.inner.settings.files {
            if is_builtin(name) {
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
        Ok(host)
    }

    /// The engine, workers and data directory, with no plugin loaded.
    fn without_plugins(settings: PluginSettings, metrics: Metrics) -> Result<Self, PluginError> {
        let engine = engine::engine(&settings)?;
        let linker = engine::linker(&engine)?;
        engine::start_epoch_ticker(&engine);
        let data_dir = match &settings.data_dir {
            Some(dir) => Some(data_dir::DataDir::open(dir, &engine).map_err(|error| {
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
                data_dir,
                store: std::sync::OnceLock::new(),
                following: std::sync::Mutex::new(shared::Following::default()),
                scorer: tokio::sync::watch::channel((0, ScorerSetting::Unset)).0,
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
        let data_dir = self.inner.data_dir.as_ref();
        if let Some(component) =
            data_dir.and_then(|data_dir| data_dir.compiled(&self.inner.engine, sha256))
        {
            return Ok(component);
        }
        let component = self.compile(bytes)?;
        if let Some(data_dir) = data_dir
            && let Err(error) = data_dir.save_compiled(sha256, &component)
        {
            tracing::warn!(%error, "keeping a compiled plugin failed; it will be compiled again");
        }
        Ok(component)
    }

    /// The plugin a request names: `name` (its latest version) or `name@version`.
    pub fn get(&self, reference: &str) -> Result<Arc<Plugin>, PluginError> {
        self.registry().get(reference)
    }

    /// The plugin `reference` names, which must play `role`, as a job names it: its exact version.
    pub fn find(&self, reference: &str, role: Role) -> Result<PluginRef, PluginError> {
        let plugin = self.get(reference)?;
        plugin.require(role)?;
        Ok(plugin.reference())
    }

    /// The plugin version a job names.
    pub fn resolve(&self, reference: &PluginRef) -> Result<Arc<Plugin>, PluginError> {
        self.registry()
            .get_version(&reference.name, &reference.version)
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

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, registry::Registry> {
        self.inner
            .plugins
            .write()
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
}
