//! What one store holds: the WASI context (stdout and stderr wired to the log), the resource table,
//! the memory limiter, and the job's page while a call that has one runs.

use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::log::LogSink;
use crate::page::{Navigation, PageError};
use crate::pool::Lease;

/// The job's page, lent to one plugin call after another.
#[derive(Debug)]
pub(super) struct PageContext {
    pub lease: Lease,
    pub deadline: Instant,
    /// The latest navigation, the host's or the plugin's.
    pub navigation: Navigation,
}

impl PageContext {
    pub fn new(lease: Lease, deadline: Instant, navigation: Navigation) -> Self {
        Self {
            lease,
            deadline,
            navigation,
        }
    }
}

pub(super) struct PluginState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub page: Option<PageContext>,
    pub log: Arc<LogSink>,
    /// The last page operation error handed to the plugin, with the message the plugin saw: if the
    /// plugin passes it on, the host answers with the original error (its status, a browser-death
    /// retry) rather than a generic plugin error.
    pub last_page_error: Option<(String, PageError)>,
    /// The server's `--deny-private-networks`, which the plugin's own navigations obey too.
    pub deny_private_networks: bool,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("plugin", &self.log.plugin())
            .field("job", &self.log.job())
            .finish_non_exhaustive()
    }
}

impl PluginState {
    pub fn new(
        log: Arc<LogSink>,
        max_memory_bytes: usize,
        deny_private_networks: bool,
        page: Option<PageContext>,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(log.stdout())
            .stderr(log.stderr())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(max_memory_bytes),
            page,
            log,
            last_page_error: None,
            deny_private_networks,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `StoreLimits`' memory rule, remembering when it refused, so a plugin stopped by the memory limit is
/// told apart from one that trapped for another reason.
#[derive(Debug)]
pub(super) struct MemoryLimiter {
    limits: wasmtime::StoreLimits,
    max_bytes: usize,
    pub exceeded: bool,
}

impl MemoryLimiter {
    fn new(max_bytes: usize) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(max_bytes)
                .build(),
            max_bytes,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.exceeded = true;
            // A trap, not a failed `memory.grow`: the guest's allocator would abort anyway, and a trap
            // here names the cause.
            wasmtime::bail!(
                "the plugin needs {desired} bytes of memory, above its limit of {}",
                self.max_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}
