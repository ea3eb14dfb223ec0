//! Browser contexts, one per isolation key: created once (single-flight) and shared by the key's
//! pages, retired after `--context-reuse-limit` jobs, disposed of when empty.

use super::{PoolError, PoolInner, PooledPage};
use crate::browser::BrowserSession;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug)]
pub(super) struct ContextEntry {
    pub(super) id: BrowserContextId,
    pub(super) key: String,
    pub(super) jobs: u32,
    pub(super) pages: usize,
    /// Reached its reuse limit: no new pages, disposed when its last page closes.
    pub(super) retired: bool,
    pub(super) last_used: Instant,
}

impl PoolInner {
    /// The context new pages of `key` go into; counts the page against it.
    pub(super) async fn context_for(
        &self,
        session: &Arc<BrowserSession>,
        key: &str,
    ) -> Result<BrowserContextId, PoolError> {
        if let Some(id) = self.claim_context(key) {
            return Ok(id);
        }
        // One creation at a time; whoever waited finds the context the first one made.
        let _creating = self.context_creation.lock().await;
        if let Some(id) = self.claim_context(key) {
            return Ok(id);
        }
        let created = session
            .create_context(key)
            .await
            .map_err(PoolError::CreateContext)?;
        let mut state = self.lock();
        if state.generation == session.generation {
            state.contexts.insert(
                created.inner().clone(),
                ContextEntry {
                    id: created.clone(),
                    key: key.to_owned(),
                    jobs: 0,
                    pages: 1,
                    retired: false,
                    last_used: Instant::now(),
                },
            );
            state
                .current_context
                .insert(key.to_owned(), created.inner().clone());
            self.publish(&state);
        }
        Ok(created)
    }

    /// The current, unretired context of `key`, counting one more page against it.
    fn claim_context(&self, key: &str) -> Option<BrowserContextId> {
        let mut state = self.lock();
        let id = state.current_context.get(key)?.clone();
        let context = state.contexts.get_mut(&id)?;
        if context.retired {
            return None;
        }
        context.pages += 1;
        context.last_used = Instant::now();
        Some(context.id.clone())
    }

    pub(super) fn context_page_closed(&self, generation: u64, context: &str) {
        let mut state = self.lock();
        if state.generation == generation
            && let Some(entry) = state.contexts.get_mut(context)
        {
            entry.pages = entry.pages.saturating_sub(1);
        }
    }

    /// Counts a finished job against the page's context; a context at its reuse limit retires, and its
    /// pages leave with it.
    pub(super) fn count_context_job(&self, page: &PooledPage) -> Option<&'static str> {
        let mut state = self.lock();
        if state.generation != page.generation {
            return Some("browser_died");
        }
        let limit = self.settings.context_reuse_limit;
        let context = state.contexts.get_mut(&page.context)?;
        context.jobs += 1;
        context.last_used = Instant::now();
        if context.jobs >= limit {
            context.retired = true;
        }
        context.retired.then_some("context_retired")
    }
}
