//! The plugin workers: a multi-threaded tokio runtime of their own whose threads run at a lower OS
//! priority than the server's. Plugins time-slice among themselves by fuel; against everything else
//! (the HTTP server, the CDP handler, Chromium's processes) the kernel gives way to the normal-priority
//! threads, so a flood of spinning plugins slows plugins, not page work.

use std::future::Future;

use tokio::runtime::Runtime;

use super::PluginError;

#[derive(Debug)]
pub(super) struct Workers {
    runtime: Option<Runtime>,
}

impl Workers {
    pub fn start(threads: usize) -> Result<Self, PluginError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("pagewright-plugin")
            .on_thread_start(crate::sys::lower_thread_priority)
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
