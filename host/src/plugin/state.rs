//! What one store holds: the WASI context (stdout and stderr wired to the log), the resource table,
//! the memory limiter, and the job's page while a call that has one runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::cpu::CpuTurn;
use super::log::LogSink;
use crate::page::{Navigation, PageError};
use crate::pool::Lease;
use crate::url_policy::UrlPolicy;

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
    /// A page operation timed out at the job's deadline: if the call then stops at that deadline,
    /// the page took the job's time, not the plugin.
    pub page_ran_out_of_job_time: bool,
    /// The server's URL policy, which the plugin's `goto` obeys too.
    pub url_policy: UrlPolicy,
    /// The call's claim on a CPU slot: held while plugin code runs, given up while the call is
    /// blocked in the host (see [`CpuHook`] and `invoke::OffCpuWhenBlocked`).
    pub cpu: CpuTurn,
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
        memory_budget: Arc<MemoryBudget>,
        url_policy: UrlPolicy,
        page: Option<PageContext>,
        cpu: CpuTurn,
    ) -> Self {
        // No preopened directory and no network: the builder's defaults, said out loud because
        // the linker gives plugins WASI's filesystem and sockets interfaces.
        let wasi = WasiCtx::builder()
            .stdout(log.stdout())
            .stderr(log.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(max_memory_bytes, memory_budget),
            page,
            log,
            last_page_error: None,
            page_ran_out_of_job_time: false,
            url_policy,
            cpu,
        }
    }
}

/// Keeps plugin code inside a CPU slot: it takes one before the host enters the guest, gives it up
/// when the guest returns, and at every return from the host into the guest (after a host call, or
/// after a fuel yield, which wasmtime makes as a call into the host) takes one back if the call
/// blocked and gave it up, or hands it to a waiting job once the slice is used
/// ([`CpuTurn::at_yield`]).
pub(super) struct CpuHook;

#[async_trait::async_trait]
impl wasmtime::CallHookHandler<PluginState> for CpuHook {
    async fn handle_call_event(
        &self,
        mut store: wasmtime::StoreContextMut<'_, PluginState>,
        hook: wasmtime::CallHook,
    ) -> wasmtime::Result<()> {
        use wasmtime::CallHook;
        match hook {
            CallHook::CallingWasm => {
                let fuel = store.get_fuel()?;
                store.data_mut().cpu.hold(fuel).await;
            }
            CallHook::ReturningFromHost => {
                let fuel = store.get_fuel()?;
                store.data_mut().cpu.at_yield(fuel).await;
            }
            CallHook::ReturningFromWasm => store.data_mut().cpu.release(),
            CallHook::CallingHost => {}
        }
        Ok(())
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

/// The memory all plugin instances together may use (`--plugin-memory-total-mib`). Every store's
/// limiter draws from it and gives back what it drew when the store is dropped.
#[derive(Debug)]
pub(super) struct MemoryBudget {
    total: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            used: AtomicUsize::new(0),
        })
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes held by live stores now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.total)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Which memory rule refused a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemoryRefusal {
    /// The plugin's own limit, over all its memories.
    Plugin,
    /// The server's budget for all plugins, in use by others.
    Server,
}

/// The memory rules of one store: all of the plugin's linear memories together (a component may have
/// several) within `--plugin-memory-mib`, and within what is left of the server's budget. It remembers
/// refusing, so a plugin stopped by memory is told apart from one that trapped for another reason.
/// Tables follow `StoreLimits`.
#[derive(Debug)]
pub(super) struct MemoryLimiter {
    limits: wasmtime::StoreLimits,
    max_bytes: usize,
    /// Bytes of linear memory this store holds, drawn from `budget`.
    used: usize,
    budget: Arc<MemoryBudget>,
    pub refused: Option<MemoryRefusal>,
}

impl MemoryLimiter {
    fn new(max_bytes: usize, budget: Arc<MemoryBudget>) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new().build(),
            max_bytes,
            used: 0,
            budget,
            refused: None,
        }
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.give_back(self.used);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            // The module's own maximum: an ordinary failed `memory.grow`.
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        // A trap, not a failed `memory.grow`: the guest's allocator would abort anyway, and a trap
        // here names the cause.
        if self.used + more > self.max_bytes {
            self.refused = Some(MemoryRefusal::Plugin);
            wasmtime::bail!(
                "the plugin needs {} bytes of memory, above its limit of {}",
                self.used + more,
                self.max_bytes
            );
        }
        if !self.budget.take(more) {
            self.refused = Some(MemoryRefusal::Server);
            wasmtime::bail!(
                "the server's memory for plugins ({} bytes) is in use",
                self.budget.total()
            );
        }
        self.used += more;
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
