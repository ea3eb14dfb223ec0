//! The engine and linker, created once at start-up, and the epoch ticker that gives plugins a wall
//! clock.

use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::PluginError;
use super::PluginSettings;
use super::bindings;
use super::state::PluginState;

/// How often the epoch advances. A plugin's wall-time limit is checked at this granularity; 10 ms is
/// below anything a user would notice and costs one atomic increment per tick.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Fuel between yields to the plugin workers' scheduler: the time slice. 100k units is about 50-100 µs
/// of guest code here, so with hundreds of plugins spinning at once a woken task (a plugin whose page
/// operation just answered) waits milliseconds, not seconds, for its turn; each yield costs ~1 µs.
pub(super) const FUEL_YIELD_INTERVAL: u64 = 100_000;

/// Core instances, memories and tables per component instance the pool makes room for. A Rust
/// component has 1 memory and about 4 core instances (the module plus wit-component's shims and
/// adapters); componentize-js output has 3, QuickJS's 11, and componentize-py's with `--stub-wasi` 38
/// (one stub per WASI interface; measured), so leave headroom. This sizes bookkeeping, not memory.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 8;

/// Memory, table and stack bytes a freed instance slot keeps resident, so the next call in that slot
/// does not fault its pages back in. With `PAGEMAP_SCAN` (Linux 6.7+) only the pages the call touched
/// are reset. Measured on a no-op Rust extractor: instantiate + call + drop went from 27 µs (the
/// default, `madvise` of everything) to 13 µs; without the scan, `memset` of 1 MiB made it 33 µs.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

pub(super) fn engine(settings: &PluginSettings) -> Result<Engine, PluginError> {
    let mut pooling = PoolingAllocationConfig::new();
    let instances = settings.max_instances;
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances * MEMORIES_PER_COMPONENT)
        .total_tables(instances * TABLES_PER_COMPONENT)
        .total_stacks(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(settings.max_memory_bytes)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .cranelift_opt_level(OptLevel::Speed)
        // Compile on the calling thread only: uploads compile on a low-priority thread of their
        // own, and Cranelift's parallel compiler would spread the work over threads at normal
        // priority, competing with Chromium. Compiled code is kept, so this is paid once.
        .parallel_compilation(false)
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(|source| PluginError::Engine(source.to_string()))
}

/// The one linker: the host side of `pagewright:plugin`, and all of WASI 0.2 with nothing behind it
/// but the log. Toolchains import WASI whole (componentize-py the sockets, componentize-js with its
/// stdio the filesystem), so a plugin's powers are set by the context, not by what it may import:
/// stdout and stderr go to the log, stdin is empty, the environment and arguments are empty, no
/// directory is opened (so no file can be), and TCP, UDP and name lookup are refused
/// (`WasiCtx::builder`'s defaults). Clocks and random are real.
pub(super) fn linker(engine: &Engine) -> Result<Linker<PluginState>, PluginError> {
    let mut linker = Linker::new(engine);
    let link = |linker: &mut Linker<PluginState>| -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        bindings::Host_::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
        bindings::v0_1::Host_::add_to_linker::<PluginState, HasSelf<PluginState>>(
            linker,
            |state| state,
        )?;
        Ok(())
    };
    link(&mut linker).map_err(|source| PluginError::Engine(source.to_string()))?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, holding only a weak
/// reference, so the thread ends with the engine.
pub(super) fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("pagewright-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        // Without the ticker, fuel and the job's deadline still bound every plugin.
        tracing::error!(%error, "could not start the epoch ticker thread");
    }
}
