//! Waiting for a condition in a test, never for a fixed time. Shared by the integration tests and
//! the host's own tests (both include this file).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Calls `probe` until it returns `Some`, and returns what it returned; panics naming `what` if
/// that does not happen within `timeout`. Between probes it waits 5 ms at first, doubling up to
/// 100 ms: conditions that hold at once cost nothing, slow ones are not polled in a hot loop.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not so within {timeout:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
