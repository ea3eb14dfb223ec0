//! pool: reusable Chromium pages, leased one job at a time.
//!
//! A page moves through three states: **Active** (leased to a job), **Idle** (reset, waiting for the next
//! job of its isolation key) and **Evicted** (closed). A lease takes, in order: an idle page of the same
//! isolation key (the most recently used, it is the warmest); a new page while fewer than `max_pages`
//! live; a new page in place of the coldest idle page of any key ([`policy`]: LRU-K with time decay).
//! The pool bounds pages, not renders: how many jobs run at once is the scheduler's run slots and each
//! shard's share of them.
//!
//! Isolation keys never share pages. Each key has a browser context (cookies, storage, cache) shared by
//! its pages; contexts are never created per job (~22 MB and tens of ms each). Pages and contexts are
//! recycled after a number of jobs, pages closed after an idle timeout.
//!
//! The pool keeps the books and makes no CDP call itself: the page (`page::PageHandle`) opens,
//! resets, parks and closes itself, and the browser session creates and disposes of contexts and
//! reports crashes. Its shape is deadpool's: a manager (`manager.rs`) that creates, recycles and
//! discards pages, and a [`Lease`] that hands its page back when dropped, where a background task
//! resets it and puts it back idle, or closes it if the job asked for that (a timeout, a hung script),
//! the renderer crashed, an operation was cut off half-way, the page was left unable to navigate soon,
//! or it reached its reuse limit. Everything that belonged to a dead browser is forgotten when the
//! pool first sees the browser's next generation.
//!
//! Files: this one holds the pool's state and its public face; `leasing.rs` how a lease finds a page;
//! `manager.rs` creating, recycling and discarding pages; `lease.rs` the [`Lease`] handle;
//! `contexts.rs` browser contexts per key; `policy.rs` the eviction order; `maintenance.rs` the
//! background tick (idle eviction, parking); `prewarm.rs` the pages kept warm for the keys the
//! scheduler expects jobs for.

mod contexts;
mod lease;
mod leasing;
mod maintenance;
mod manager;
mod policy;
mod prewarm;

#[cfg(test)]
mod tests;

use contexts::ContextEntry;
pub use lease::Lease;
use maintenance::maintain;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::browser::{BrowserError, BrowserSession, BrowserSupervisor};
use crate::metrics::{Metrics, ShardLabels, StateLabels};
use crate::page::{CrashSignal, PageHandle};
use policy::AccessHistory;

/// Page pool sizing and recycling.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most pages alive at once (idle and leased).
    pub max_pages: usize,
    /// How long a page may sit idle before it is closed.
    pub idle_timeout: Duration,
    /// Jobs one page serves before it is closed and replaced.
    pub page_reuse_limit: u32,
    /// Jobs one browser context (one isolation key) serves before it is retired and replaced.
    pub context_reuse_limit: u32,
    /// How long a lease may wait for a page before it fails.
    pub lease_timeout: Duration,
}

impl PoolSettings {
    /// 15 s: long enough that a key with a job every few seconds keeps its page, short enough that
    /// a burst's pages do not sit on memory for long.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
    /// Long-lived pages accumulate memory and slow down (measured: ~3 MB a job without the reset's
    /// garbage collections), so they are replaced after this many jobs.
    pub const PAGE_REUSE_LIMIT: u32 = 200;
    /// A context's cache and storage grow with every job of its key.
    pub const CONTEXT_REUSE_LIMIT: u32 = 5_000;
    /// As long as a job's default budget: a lease that waits longer has no time left to render.
    pub const LEASE_TIMEOUT: Duration = Duration::from_secs(30);

    /// One page per 128 MiB of memory, between 8 and 512: a page costs ~10.5 MB PSS (measured), plus
    /// headroom for heavy real-world pages.
    pub fn default_max_pages(memory_bytes: u64) -> usize {
        (memory_bytes / (128 << 20)).clamp(8, 512) as usize
    }

    /// A shard's pool: its share of the pages by CPUs, `cpus` of `total_cpus`, rounded down (their
    /// sum is what memory was sized for), and never fewer than the `renders` it may run.
    pub fn share(&self, cpus: usize, total_cpus: usize, renders: usize) -> Self {
        Self {
            max_pages: (self.max_pages * cpus / total_cpus.max(1)).max(renders),
            ..self.clone()
        }
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_pages: Self::default_max_pages(crate::sys::total_memory_bytes()),
            idle_timeout: Self::IDLE_TIMEOUT,
            page_reuse_limit: Self::PAGE_REUSE_LIMIT,
            context_reuse_limit: Self::CONTEXT_REUSE_LIMIT,
            lease_timeout: Self::LEASE_TIMEOUT,
        }
    }
}

/// Why a page could not be leased, by step.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no page became free within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Browser(#[from] BrowserError),
    #[error("creating a browser context failed: {0}")]
    CreateContext(#[source] chromiumoxide::error::CdpError),
    #[error("opening a page failed: {0}")]
    CreatePage(#[source] chromiumoxide::error::CdpError),
    #[error("the pool is closed")]
    Closed,
    /// The browser was relaunched while the lease waited; `lease` retries on the new one.
    #[error("the browser was relaunched")]
    Relaunched,
}

/// Handle to the page pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PagePool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    browser: BrowserSupervisor,
    settings: PoolSettings,
    metrics: Metrics,
    state: Mutex<PoolState>,
    /// Held while a browser context is created, so leases racing for a new key share one context
    /// instead of each creating their own (contexts are rare and cost ~22 MB each).
    context_creation: tokio::sync::Mutex<()>,
    /// Signalled when a page comes back, for leases waiting on the page cap.
    page_returned: Notify,
    /// The server's runtime. Pool work is spawned here, not on whatever runtime drops a lease: a lease
    /// returned from the plugin workers would otherwise be reset on their low-priority threads.
    runtime: tokio::runtime::Handle,
    /// Pages to keep warm per isolation key, from the scheduler's demand figures (`prewarm.rs`).
    warm_targets: Mutex<HashMap<String, usize>>,
    /// The shard this pool belongs to, for its metrics' labels.
    shard: usize,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Browser generation every entry below belongs to.
    generation: u64,
    idle: Vec<IdlePage>,
    /// Pages alive: idle, leased, being created or being reset.
    live: usize,
    leased: usize,
    contexts: HashMap<String, ContextEntry>,
    /// The context new pages of each isolation key go into.
    current_context: HashMap<String, String>,
    /// Pages of each isolation key that a finished job is handing back (being reset). A lease waits for
    /// one of these rather than opening a new page: a reset takes milliseconds, a new tab ~60 ms and
    /// ~10 MB.
    returning: HashMap<String, usize>,
    /// Leases waiting for a returning page, by key, so that each returning page is awaited by at most
    /// one lease and the rest open pages of their own.
    waiting: HashMap<String, usize>,
    /// Crash flags of every open page, by target id, set when the browser reports a crash.
    crash_flags: HashMap<String, Arc<CrashSignal>>,
    closed: bool,
}

#[derive(Debug)]
struct IdlePage {
    page: PooledPage,
    since: Instant,
}

/// A page owned by the pool, with what the pool tracks about it.
#[derive(Debug)]
struct PooledPage {
    handle: PageHandle,
    key: String,
    context: String,
    generation: u64,
    uses: u32,
    history: AccessHistory,
}

/// Figures for `/v1/status`.
#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub live_pages: usize,
    pub idle_pages: usize,
    pub leased_pages: usize,
    /// Pages on their way back to idle (being reset or parked).
    pub returning_pages: usize,
    pub max_pages: usize,
    pub contexts: usize,
    /// Pages the demand figures want kept warm, over every key.
    pub warm_pages_wanted: usize,
    pub idle_timeout_ms: u64,
    pub page_reuse_limit: u32,
    pub context_reuse_limit: u32,
}

impl PoolStatus {
    /// Several pools' figures added up (the shards' pools, which share their settings).
    pub fn total(statuses: impl IntoIterator<Item = Self>) -> Option<Self> {
        statuses.into_iter().reduce(|sum, status| Self {
            live_pages: sum.live_pages + status.live_pages,
            idle_pages: sum.idle_pages + status.idle_pages,
            leased_pages: sum.leased_pages + status.leased_pages,
            returning_pages: sum.returning_pages + status.returning_pages,
            max_pages: sum.max_pages + status.max_pages,
            contexts: sum.contexts + status.contexts,
            warm_pages_wanted: sum.warm_pages_wanted + status.warm_pages_wanted,
            ..sum
        })
    }
}

impl PagePool {
    /// Creates shard `shard`'s pool and its maintenance task (idle eviction), which stops when the
    /// pool is dropped.
    pub fn new(
        shard: usize,
        browser: BrowserSupervisor,
        settings: PoolSettings,
        metrics: Metrics,
    ) -> Self {
        let inner = Arc::new(PoolInner {
            browser,
            settings,
            metrics,
            state: Mutex::new(PoolState::default()),
            context_creation: tokio::sync::Mutex::new(()),
            page_returned: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
            warm_targets: Mutex::new(HashMap::new()),
            shard,
        });
        // Restarted if it panics: a pool that stopped closing idle pages would grow until the
        // machine runs out of memory.
        let weak = Arc::downgrade(&inner);
        crate::tasks::supervise("pool maintenance", move || maintain(weak.clone()));
        Self { inner }
    }

    /// Leases a page of `key`, waiting for a browser and a page until `deadline`, or the lease
    /// timeout if that comes first.
    pub async fn lease(&self, key: &str, deadline: Instant) -> Result<Lease, PoolError> {
        let inner = &self.inner;
        let asked = Instant::now();
        let deadline = deadline.min(asked + inner.settings.lease_timeout);
        // A browser that dies while this lease waits for a page sends it round again, to the next one.
        loop {
            let session = inner.browser.ready(deadline).await?;
            inner.adopt(&session);
            match tokio::time::timeout_at(deadline, inner.take_page(&session, key)).await {
                Ok(Ok(page)) => {
                    return Ok(Lease {
                        page: Some(page),
                        session,
                        pool: self.inner.clone(),
                        discard: None,
                    });
                }
                Ok(Err(PoolError::Relaunched)) => continue,
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(PoolError::Timeout(asked.elapsed())),
            }
        }
    }

    /// Whether an idle page of `key` is waiting: a job of that key placed here would find it warm.
    pub fn has_idle_page(&self, key: &str) -> bool {
        self.inner
            .lock()
            .idle
            .iter()
            .any(|idle| idle.page.key == key)
    }

    /// Whether the idle page of `key` that a lease would take is parked (pristine).
    #[cfg(test)]
    fn idle_page_is_pristine(&self, key: &str) -> bool {
        self.inner
            .lock()
            .idle
            .iter()
            .rfind(|idle| idle.page.key == key)
            .is_some_and(|idle| idle.page.handle.is_pristine())
    }

    pub fn status(&self) -> PoolStatus {
        let state = self.inner.lock();
        let settings = &self.inner.settings;
        PoolStatus {
            live_pages: state.live,
            idle_pages: state.idle.len(),
            leased_pages: state.leased,
            returning_pages: state.returning.values().sum(),
            max_pages: settings.max_pages,
            contexts: state.contexts.len(),
            warm_pages_wanted: self.inner.warm_targets().values().sum(),
            idle_timeout_ms: settings.idle_timeout.as_millis() as u64,
            page_reuse_limit: settings.page_reuse_limit,
            context_reuse_limit: settings.context_reuse_limit,
        }
    }

    /// Stops leasing, lets pages on their way back finish their reset (for up to the reset's own
    /// time limit), and closes every idle page. Pages still leased close when their leases end.
    pub async fn close(&self) {
        let settled = async {
            loop {
                let notified = self.inner.page_returned.notified();
                if self.inner.lock().returning.values().sum::<usize>() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(SETTLE_AT_CLOSE, settled).await;
        let idle = {
            let mut state = self.inner.lock();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        // Leases waiting for a page see `closed` and give up.
        self.inner.page_returned.notify_waiters();
        let closing = idle.iter().map(|entry| {
            self.inner.forget(&entry.page, "shutdown");
            entry.page.handle.close()
        });
        futures::future::join_all(closing).await;
    }
}

/// How long closing waits for pages on their way back: a reset takes milliseconds, a hung one is
/// given up on after its own limit.
const SETTLE_AT_CLOSE: Duration = Duration::from_secs(5);

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // No code holding this lock can panic half-way through an update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything that belonged to an older browser, and starts listening for renderer crashes
    /// of this one. Pages of a dead browser need no closing: their process is gone.
    fn adopt(self: &Arc<Self>, session: &Arc<BrowserSession>) {
        let mut state = self.lock();
        // Only forward: a lease still holding an older session must not wipe a newer browser's state.
        if state.generation >= session.generation {
            return;
        }
        let dropped = state.idle.len();
        for _ in 0..dropped {
            self.metrics.evicted("browser_died");
        }
        let closed = state.closed;
        *state = PoolState {
            generation: session.generation,
            closed,
            ..PoolState::default()
        };
        self.publish(&state);
        drop(state);
        let (pool, session) = (Arc::downgrade(self), session.clone());
        self.runtime.spawn(async move {
            session
                .watch_crashes(|target| {
                    if let Some(pool) = pool.upgrade()
                        && let Some(flag) = pool.lock().crash_flags.get(target)
                    {
                        flag.raise();
                    }
                })
                .await;
        });
    }

    /// Bookkeeping for a page that leaves the pool (closed or lost). Caller holds the lock.
    fn forget_locked(&self, state: &mut PoolState, page: &PooledPage) {
        if page.generation != state.generation {
            return;
        }
        state.live -= 1;
        state.crash_flags.remove(page.handle.target_id());
        if let Some(context) = state.contexts.get_mut(&page.context) {
            context.pages = context.pages.saturating_sub(1);
        }
    }

    fn forget(&self, page: &PooledPage, reason: &'static str) {
        let mut state = self.lock();
        self.forget_locked(&mut state, page);
        self.publish(&state);
        drop(state);
        self.metrics.evicted(reason);
    }

    /// Moves a leased page's counts to "on its way back", ahead of [`Self::finish_return`].
    fn mark_returning(&self, page: &PooledPage) {
        let mut state = self.lock();
        if state.generation == page.generation {
            state.leased = state.leased.saturating_sub(1);
            *state.returning.entry(page.key.clone()).or_default() += 1;
            self.publish(&state);
        }
    }

    fn publish(&self, state: &PoolState) {
        let shard = self.shard as u64;
        let gauge = |state_label| {
            self.metrics.pool_pages.get_or_create(&StateLabels {
                shard,
                state: state_label,
            })
        };
        gauge("idle").set(state.idle.len() as i64);
        gauge("active").set(state.leased as i64);
        self.metrics
            .pool_contexts
            .get_or_create(&ShardLabels { shard })
            .set(state.contexts.len() as i64);
    }
}
