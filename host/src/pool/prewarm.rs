//! Pre-warming: pages kept ready for the isolation keys jobs are arriving for.
//!
//! Once a second the scheduler hands the pool a target per key: the key's expected jobs in flight
//! (its arrival rate times its mean render time, at least one page for a key that is arriving at
//! all). The pool's maintenance tick then
//! - spares up to the target of a key's idle pages from the idle timeout, so a key with a job every
//!   20 seconds still finds a warm page (a new tab costs ~60 ms and a new context tens more);
//! - opens pages for a key that has fewer than its target, at most [`OPENED_PER_TICK`] a tick and
//!   only while the pool is below [`HEADROOM`] of its cap, so warming never crowds out the pages
//!   jobs are using or competes much with running renders. A page being warmed counts as on its
//!   way back, so a job of that key arriving meanwhile waits for it instead of opening its own.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, PoisonError};

use tokio::time::Instant;

use super::{PagePool, PoolInner};
use crate::browser::BrowserSession;

/// Pages opened ahead of demand per maintenance tick, over every key.
pub(super) const OPENED_PER_TICK: usize = 2;
/// Pages are opened ahead only while fewer than this share of `--max-pages` are alive.
pub(super) const HEADROOM: f64 = 0.75;

impl PagePool {
    /// Pages to keep warm per isolation key from now on (keys not named get none).
    pub fn set_warm_targets(&self, targets: HashMap<String, usize>) {
        *self
            .inner
            .warm_targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = targets;
    }
}

impl PoolInner {
    pub(super) fn warm_targets(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.warm_targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens pages for keys below their warm target, within the limits of the module docs.
    pub(super) fn prewarm(self: &Arc<Self>, session: &Arc<BrowserSession>) {
        let targets = self.warm_targets().clone();
        if targets.is_empty() {
            return;
        }
        let mut opening = Vec::new();
        {
            let mut state = self.lock();
            if state.closed || state.generation != session.generation {
                return;
            }
            let room = (self.settings.max_pages as f64 * HEADROOM) as usize;
            let mut pages_of: HashMap<&str, usize> = HashMap::new();
            for context in state.contexts.values() {
                *pages_of.entry(context.key.as_str()).or_default() += context.pages;
            }
            let mut wanted: Vec<(String, usize)> = targets
                .iter()
                .filter_map(|(key, &target)| {
                    // Pages being opened ahead are on their way back, and in no context until the
                    // context is there: count whichever is more, so none is opened twice.
                    let in_contexts = pages_of.get(key.as_str()).copied().unwrap_or(0);
                    let have = in_contexts.max(state.returning.get(key).copied().unwrap_or(0));
                    (have < target).then(|| (key.clone(), target - have))
                })
                .collect();
            // The keys furthest below their target first.
            wanted.sort_by_key(|(_, missing)| std::cmp::Reverse(*missing));
            for (key, missing) in wanted {
                for _ in 0..missing {
                    if opening.len() >= OPENED_PER_TICK || state.live >= room {
                        break;
                    }
                    state.live += 1;
                    *state.returning.entry(key.clone()).or_default() += 1;
                    opening.push(key.clone());
                }
            }
            self.publish(&state);
        }
        for key in opening {
            let (pool, session) = (self.clone(), session.clone());
            self.runtime.spawn(async move {
                match pool.open_page(&session, &key).await {
                    Ok(page) => {
                        pool.metrics.pages_prewarmed.inc();
                        pool.finish_return(page, Ok(()), Instant::now()).await;
                    }
                    Err(error) => {
                        tracing::debug!(%error, key, "opening a page ahead of demand failed");
                        {
                            let mut state = pool.lock();
                            if state.generation == session.generation {
                                state.live -= 1;
                                if let Some(returning) = state.returning.get_mut(&key) {
                                    *returning = returning.saturating_sub(1);
                                }
                                pool.publish(&state);
                            }
                        }
                        pool.page_returned.notify_waiters();
                    }
                }
            });
        }
    }
}
