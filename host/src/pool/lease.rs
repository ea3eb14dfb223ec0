//! The lease: one job's hold on one page and one render slot. Dropping it hands the page back.

use super::{PoolInner, PooledPage};
use crate::browser::BrowserSession;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::OwnedSemaphorePermit;

/// A leased page. Dropping it returns the page to the pool (reset in the background) or closes it.
#[derive(Debug)]
pub struct Lease {
    pub(super) page: Option<PooledPage>,
    pub(super) session: Arc<BrowserSession>,
    pub(super) pool: Arc<PoolInner>,
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) discard: Option<&'static str>,
    pub(super) pristine: bool,
}

impl Lease {
    /// Is the page on a fresh `about:blank` document, with nothing of an earlier job in it?
    pub fn is_pristine(&self) -> bool {
        self.pristine
    }

    pub(crate) fn page(&self) -> &PooledPage {
        // Present from construction until Drop.
        self.page
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease used after drop"))
    }

    /// The chromiumoxide page, for host tools and tests that need a CDP call the page operations do not
    /// offer.
    pub fn cdp(&self) -> &chromiumoxide::Page {
        &self.page().cdp
    }

    /// The browser this page lives in.
    pub fn session(&self) -> &Arc<BrowserSession> {
        &self.session
    }

    /// The isolation key this page belongs to.
    pub fn key(&self) -> &str {
        &self.page().key
    }

    /// Has the page's renderer crashed during this lease?
    pub fn crashed(&self) -> bool {
        self.page().crashed.load(Ordering::Relaxed)
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
        // The render slot frees now: the reset below is cheap CDP work that should not hold back the
        // next job.
        drop(self.permit.take());
        self.pool.mark_returning(&page);
        let pool = self.pool.clone();
        let session = self.session.clone();
        let discard = self.discard;
        // On the server's runtime: a lease can be dropped on the plugin workers.
        self.pool
            .runtime
            .spawn(pool.give_back(page, session, discard));
    }
}
