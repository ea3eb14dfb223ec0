//! How a lease finds a page: an idle page of its key, else one of its key on its way back, else a
//! new one while under the cap, else a new one in place of the coldest idle page, else a wait for a
//! page to come back (`Notify`, never a sleep loop).

use std::sync::Arc;

use tokio::time::Instant;

use super::{PoolError, PoolInner, PooledPage, policy};
use crate::browser::BrowserSession;

/// What a lease does when no idle page of its key is there.
enum Decision {
    Open,
    Replace(Box<PooledPage>),
    Wait,
    WaitForReturn,
}

impl PoolInner {
    /// An idle page of `key`, else a new one (after evicting the coldest idle page if at the cap).
    pub(super) async fn take_page(
        self: &Arc<Self>,
        session: &Arc<BrowserSession>,
        key: &str,
    ) -> Result<PooledPage, PoolError> {
        loop {
            let notified = self.page_returned.notified();
            let decision = {
                let mut state = self.lock();
                if state.closed {
                    return Err(PoolError::Closed);
                }
                if state.generation != session.generation {
                    return Err(PoolError::Relaunched);
                }
                if let Some(index) = state.idle.iter().rposition(|idle| idle.page.key == key) {
                    let mut page = state.idle.remove(index).page;
                    page.history.record(Instant::now());
                    state.leased += 1;
                    self.publish(&state);
                    self.metrics.pages_reused.inc();
                    return Ok(page);
                }
                let returning = state.returning.get(key).copied().unwrap_or(0);
                if returning > state.waiting.get(key).copied().unwrap_or(0) {
                    // A page of this key is on its way back: wait for it instead of opening one.
                    *state.waiting.entry(key.to_owned()).or_default() += 1;
                    Decision::WaitForReturn
                } else if state.live < self.settings.max_pages {
                    state.live += 1;
                    state.leased += 1;
                    self.publish(&state);
                    Decision::Open
                } else if let Some(index) = policy::coldest(
                    state.idle.iter().map(|idle| &idle.page.history),
                    Instant::now(),
                    policy::HALF_LIFE,
                ) {
                    // Take the victim's place: `live` stays the same.
                    let victim = state.idle.remove(index).page;
                    state.leased += 1;
                    self.forget_locked(&mut state, &victim);
                    state.live += 1;
                    self.publish(&state);
                    Decision::Replace(Box::new(victim))
                } else {
                    Decision::Wait
                }
            };
            match decision {
                Decision::Open => {}
                Decision::Replace(victim) => {
                    self.metrics.evicted("lru");
                    self.runtime
                        .spawn(async move { victim.handle.close().await });
                }
                Decision::Wait => {
                    // Every page is leased or being reset: wait for one to come back.
                    notified.await;
                    continue;
                }
                Decision::WaitForReturn => {
                    // Released on every way out, a cancelled lease (deadline, dropped request)
                    // included: a count left behind would make later leases open pages needlessly.
                    let _waiting = WaitingForReturn {
                        pool: self,
                        key,
                        generation: session.generation,
                    };
                    notified.await;
                    continue;
                }
            }
            return self.open_page_detached(session, key).await;
        }
    }

    /// Opens a page for a lease that has already counted it (`live`, `leased`), in a task of its own:
    /// if the lease is cancelled half-way (its deadline, a client gone), the task still finishes, and the
    /// page goes idle instead of leaking the counts or leaving an untracked tab in Chromium.
    async fn open_page_detached(
        self: &Arc<Self>,
        session: &Arc<BrowserSession>,
        key: &str,
    ) -> Result<PooledPage, PoolError> {
        let (deliver, receiver) = tokio::sync::oneshot::channel();
        let mut delivery = PageDelivery {
            receiver,
            pool: self.clone(),
        };
        let pool = self.clone();
        let session = session.clone();
        let key = key.to_owned();
        self.runtime.spawn(async move {
            match pool.open_page(&session, &key).await {
                Ok(page) => {
                    if let Err(Ok(page)) = deliver.send(Ok(page)) {
                        // Nobody is waiting any more: the new page becomes an idle one.
                        pool.mark_returning(&page);
                        pool.finish_return(page, Ok(()), Instant::now()).await;
                    }
                }
                Err(error) => {
                    {
                        let mut state = pool.lock();
                        if state.generation == session.generation {
                            state.live -= 1;
                            state.leased -= 1;
                            pool.publish(&state);
                        }
                    }
                    pool.page_returned.notify_waiters();
                    let _ = deliver.send(Err(error));
                }
            }
        });
        (&mut delivery.receiver)
            .await
            .unwrap_or(Err(PoolError::Closed))
    }
}

/// The waiting end of [`PoolInner::open_page_detached`]. A lease dropped just as its page arrived
/// would drop the page inside the channel; this hands such a page to the pool as an idle one instead.
struct PageDelivery {
    receiver: tokio::sync::oneshot::Receiver<Result<PooledPage, PoolError>>,
    pool: Arc<PoolInner>,
}

impl Drop for PageDelivery {
    fn drop(&mut self) {
        // After `close`, a page is either here already or the sender gets it back (and returns it).
        self.receiver.close();
        if let Ok(Ok(page)) = self.receiver.try_recv() {
            self.pool.mark_returning(&page);
            let pool = self.pool.clone();
            self.pool.runtime.spawn(async move {
                pool.finish_return(page, Ok(()), Instant::now()).await;
            });
        }
    }
}

/// A lease's claim on a page of its key that is on its way back; given up when dropped.
struct WaitingForReturn<'a> {
    pool: &'a PoolInner,
    key: &'a str,
    generation: u64,
}

impl Drop for WaitingForReturn<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        if state.generation == self.generation
            && let Some(waiting) = state.waiting.get_mut(self.key)
        {
            *waiting = waiting.saturating_sub(1);
        }
    }
}
