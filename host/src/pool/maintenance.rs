//! The pool's background work: a once-a-second tick that closes idle pages past the idle timeout
//! (sparing the pages kept warm), parks used pages on `about:blank`, disposes of empty contexts and
//! opens pages ahead of demand (`prewarm.rs`).

use super::{IdlePage, PoolInner};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How long a used page idles before it is parked on about:blank.
const PARK_AFTER: Duration = Duration::from_secs(1);

impl PoolInner {
    /// Closes idle pages past the idle timeout and disposes of contexts that have no pages left and are
    /// retired or idle.
    async fn evict_idle(&self) {
        let Some(session) = self.browser.current() else {
            return;
        };
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        let mut spared = self.warm_targets().clone();
        let (expired, parking, contexts) = {
            let mut state = self.lock();
            if state.generation != session.generation {
                return;
            }
            let mut idle = std::mem::take(&mut state.idle);
            // Most recently returned first: a key's warmest pages are the ones kept warm.
            idle.sort_by_key(|idle| std::cmp::Reverse(idle.since));
            let (expired, mut kept): (Vec<_>, Vec<_>) = idle.into_iter().partition(|idle| {
                // A key the scheduler expects jobs for keeps up to its target of idle pages past
                // the timeout; its recent pages count against the target first.
                let warm = match spared.get_mut(&idle.page.key) {
                    Some(left) if *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                };
                !warm && now.duration_since(idle.since) >= timeout
            });
            // Leases take the last matching idle page: keep the most recent last.
            kept.reverse();
            // Pages idle for a moment and still holding their last document get parked on
            // about:blank: its scripts and timers stop and its memory goes, at the cost of a navigation
            // that was not worth paying while jobs kept coming.
            let (to_park, kept): (Vec<_>, Vec<_>) = kept.into_iter().partition(|idle| {
                !idle.page.handle.is_pristine() && now.duration_since(idle.since) >= PARK_AFTER
            });
            state.idle = kept;
            for idle in &to_park {
                *state.returning.entry(idle.page.key.clone()).or_default() += 1;
            }
            for idle in &expired {
                self.forget_locked(&mut state, &idle.page);
            }
            let empty: Vec<String> = state
                .contexts
                .iter()
                .filter(|(_, c)| {
                    c.pages == 0 && (c.retired || now.duration_since(c.last_used) >= timeout)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let mut contexts = Vec::new();
            for id in empty {
                if let Some(context) = state.contexts.remove(&id) {
                    if state.current_context.get(&context.key) == Some(&id) {
                        state.current_context.remove(&context.key);
                    }
                    contexts.push(context.id);
                }
            }
            self.publish(&state);
            (expired, to_park, contexts)
        };
        for idle in expired {
            self.metrics.evicted("idle");
            idle.page.handle.close().await;
        }
        for IdlePage { page, since } in parking {
            let outcome = page.handle.park().await.map_err(|error| {
                tracing::warn!(%error, "parking an idle page failed; closing it");
                "reset_failed"
            });
            self.finish_return(page, outcome, since).await;
        }
        for id in contexts {
            session.dispose_context(id).await;
        }
    }

    /// The once-a-second upkeep: idle eviction and parking, then pages opened ahead of demand.
    async fn upkeep(self: &Arc<Self>) {
        self.evict_idle().await;
        if let Some(session) = self.browser.current() {
            self.prewarm(&session);
        }
    }
}

/// Idle eviction once a second until the pool goes away. A tick, not a wait on a resource: the pool's
/// waits are all on `Notify` and the semaphore.
pub(super) async fn maintain(pool: Weak<PoolInner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.upkeep().await;
    }
}
