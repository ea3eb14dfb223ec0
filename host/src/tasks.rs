//! Background loops that must not stop silently: [`supervise`] runs one, and if it panics, logs
//! the panic, counts it and starts it again (after a pause that grows while it keeps failing). A
//! loop that returns has ended on purpose (shutdown) and is not restarted.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// The first and longest pause before restarting a loop that panicked.
const RESTART_MIN: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(30);

/// Runs `start()`'s loop as a task, restarting it whenever it panics. Aborting the returned handle
/// stops the loop too.
pub fn supervise<F, Fut>(name: &'static str, mut start: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = RESTART_MIN;
        loop {
            // Aborted with the supervisor: dropping a JoinHandle would leave the loop running.
            let mut run = AbortOnDrop(tokio::spawn(start()));
            let ended = (&mut run.0).await;
            match ended {
                Err(error) if error.is_panic() => {
                    let panic = error.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".to_owned());
                    tracing::error!(
                        task = name,
                        %message,
                        "a background loop panicked; restarting it in {pause:?}"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RESTART_MAX);
                }
                // Returned (shutdown), or cancelled with the runtime.
                _ => return,
            }
        }
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_loop_that_panics_is_started_again_and_one_that_returns_is_not() {
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        let supervisor = supervise("test loop", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run < 2 {
                    panic!("run {run} fails");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor ends once the loop returns")
            .expect("the supervisor itself does not panic");
        assert_eq!(starts.load(Ordering::SeqCst), 3, "two restarts, then done");
    }
}
