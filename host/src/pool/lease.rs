//! The lease: one job's hold on one page. Dropping it hands the page back.

use std::sync::Arc;

use tokio::time::Instant;

use super::{PoolInner, PooledPage};
use crate::browser::BrowserSession;
use crate::page::{Page, PageHandle};

/// A leased page. Dropping it returns the page to the pool (reset in the background) or closes it.
#[derive(Debug)]
pub struct Lease {
    pub(super) page: Option<PooledPage>,
    pub(super) session: Arc<BrowserSession>,
    pub(super) pool: Arc<PoolInner>,
    pub(super) discard: Option<&'static str>,
}

impl Lease {
    fn pooled(&self) -> &PooledPage {
        // Present from construction until Drop.
        self.page
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease used after drop"))
    }

    /// The page.
    pub fn handle(&self) -> &PageHandle {
        &self.pooled().handle
    }

    /// The page, for operations under `deadline`.
    pub fn page(&self, deadline: Instant) -> Page<'_> {
        Page::new(self.handle(), deadline)
    }

    /// Is the page on a fresh `about:blank` document, with nothing of an earlier job in it?
    pub fn is_pristine(&self) -> bool {
        self.handle().is_pristine()
    }

    /// Close the page instead of reusing it (the job timed out, a script hung, the page misbehaved).
    pub fn discard(&mut self, reason: &'static str) {
        self.discard = Some(reason);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(page) = self.page.take() else {
            return;
        };
        self.pool.mark_returning(&page);
        let pool = self.pool.clone();
        let session = self.session.clone();
        let discard = self.discard;
        // On the server's runtime: a lease can be dropped on the plugin workers.
        self.pool
            .runtime
            .spawn(pool.recycle(page, session, discard));
    }
}
