//! The pool's manager, in deadpool's terms: creating a page (in its key's context), recycling one a
//! job handed back (reuse it after a reset, or close it, and why), and discarding one. The CDP work
//! is the page's own (`page::PageHandle`); this decides and keeps the books.

use std::sync::Arc;

use tokio::time::Instant;

use super::{IdlePage, PoolError, PoolInner, PooledPage};
use crate::browser::BrowserSession;
use crate::page::PageHandle;
use crate::pool::policy::AccessHistory;

impl PoolInner {
    /// Creates a page in the current context of `key`, creating the context if needed.
    pub(super) async fn open_page(
        &self,
        session: &Arc<BrowserSession>,
        key: &str,
    ) -> Result<PooledPage, PoolError> {
        let context = self.context_for(session, key).await?;
        let handle = match PageHandle::open(session, &context).await {
            Ok(handle) => handle,
            Err(error) => {
                self.context_page_closed(session.generation, context.inner());
                return Err(PoolError::CreatePage(error));
            }
        };
        let mut history = AccessHistory::default();
        history.record(Instant::now());
        let mut state = self.lock();
        if state.generation == session.generation {
            state
                .crash_flags
                .insert(handle.target_id().to_owned(), handle.crash_signal());
        }
        drop(state);
        self.metrics.pages_created.inc();
        Ok(PooledPage {
            handle,
            key: key.to_owned(),
            context: context.inner().clone(),
            generation: session.generation,
            uses: 0,
            history,
        })
    }

    /// Recycles a page a job handed back: reset and idle again, or closed with the reason why. Runs
    /// in the background after a lease ends.
    pub(super) async fn recycle(
        self: Arc<Self>,
        mut page: PooledPage,
        session: Arc<BrowserSession>,
        discard: Option<&'static str>,
    ) {
        page.uses += 1;
        page.handle.mark_used();
        let reason = if !session.is_alive() {
            Some("browser_died")
        } else if page.handle.crashed() {
            Some("crashed")
        } else if discard.is_some() {
            discard
        } else if page.handle.cut_off() {
            Some("cancelled")
        } else if page.handle.spoiled() {
            Some("spoiled")
        } else if page.uses >= self.settings.page_reuse_limit {
            Some("reuse_limit")
        } else {
            self.count_context_job(&page)
        };
        let outcome = match reason {
            Some(reason) => Err(reason),
            None => page.handle.reset().await.map_err(|error| {
                tracing::warn!(%error, "resetting a page failed; closing it");
                "reset_failed"
            }),
        };
        self.finish_return(page, outcome, Instant::now()).await;
    }

    /// Ends a page's way back from a job or from parking: idle again (idle since `since`), or
    /// discarded (closed) for `reason`. Wakes the leases waiting for a page.
    pub(super) async fn finish_return(
        &self,
        page: PooledPage,
        outcome: Result<(), &'static str>,
        since: Instant,
    ) {
        let discard = {
            let mut state = self.lock();
            let current = state.generation == page.generation;
            if current && let Some(returning) = state.returning.get_mut(&page.key) {
                *returning = returning.saturating_sub(1);
            }
            let discard = match outcome {
                Ok(()) if current && !state.closed => {
                    state.idle.push(IdlePage { page, since });
                    None
                }
                Ok(()) => {
                    self.forget_locked(&mut state, &page);
                    Some((page, if current { "shutdown" } else { "browser_died" }))
                }
                Err(reason) => {
                    self.forget_locked(&mut state, &page);
                    Some((page, reason))
                }
            };
            self.publish(&state);
            discard
        };
        self.page_returned.notify_waiters();
        if let Some((page, reason)) = discard {
            self.metrics.evicted(reason);
            page.handle.close().await;
        }
    }
}
