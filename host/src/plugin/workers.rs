//! The plugin workers: multi-threaded tokio runtimes of their own whose threads run at a lower OS
//! priority than the server's. Plugins time-slice among themselves by fuel; against everything else
//! (the HTTP server, the CDP handler, Chromium's processes) the kernel gives way to the normal-priority
//! threads, so a flood of spinning plugins slows plugins, not page work.
//!
//! There is one group of workers per shard ([`WorkerGroup`]): its threads are pinned to the shard's
//! CPUs and prefer its node's memory, next to the shard's Chromium, and its CPU slots are its own.

use std::future::Future;

use tokio::runtime::Runtime;
use tracing::Instrument;

use super::PluginError;
use super::cpu::CpuSlots;
use crate::topology::Node;

/// One shard's workers and the CPU slots their plugin code takes turns in (one per thread).
#[derive(Debug)]
pub(super) struct WorkerGroup {
    pub workers: Workers,
    pub cpu: CpuSlots,
}

impl WorkerGroup {
    /// `threads` workers for shard `shard`, pinned to `node` if given.
    pub fn start(
        shard: usize,
        threads: usize,
        node: Option<&Node>,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self, PluginError> {
        Ok(Self {
            workers: Workers::start(shard, threads, node)?,
            cpu: CpuSlots::new(threads, metrics),
        })
    }
}

#[derive(Debug)]
pub(super) struct Workers {
    runtime: Option<Runtime>,
}

impl Workers {
    fn start(shard: usize, threads: usize, node: Option<&Node>) -> Result<Self, PluginError> {
        let pinning = node.map(Node::pinning);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            // Within the 15 bytes a Linux thread name keeps, so `ps -L` and `/proc` show all of it.
            .thread_name(format!("pw-plugin-{shard}"))
            .on_thread_start(move || {
                crate::sys::lower_thread_priority();
                if let Some(pinning) = &pinning
                    && let Err(error) = pinning.apply_to_current_thread()
                {
                    tracing::warn!(%error, shard, "could not pin a plugin worker to its shard's CPUs");
                }
            })
            .enable_all()
            .build()
            .map_err(PluginError::Workers)?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `task` on the workers; `None` if it panicked. Dropping the returned future cancels the
    /// task (a client that went away, an outer deadline), which drops its store and hands the page back.
    pub fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        // In the caller's span, so the call's own span is the job's child.
        let task = task.instrument(tracing::Span::current());
        let handle = self
            .runtime
            .as_ref()
            .map(|runtime| AbortOnDrop(runtime.spawn(task)));
        async move {
            match handle {
                Some(mut handle) => match (&mut handle.0).await {
                    Ok(value) => Some(value),
                    Err(error) => {
                        if error.is_panic() {
                            tracing::error!(%error, "a plugin worker task panicked");
                        }
                        None
                    }
                },
                None => None,
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which is not allowed inside async code; the
        // tasks left are cancelled plugin calls.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
