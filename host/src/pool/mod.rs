//! pool: reusable Chromium pages, leased one job at a time.
//!
//! A page moves through three states: **Active** (leased to a job), **Idle** (reset, waiting for the next
//! job of its isolation key) and **Evicted** (closed). A lease takes, in order: an idle page of the same
//! isolation key (the most recently used, it is the warmest); a new page while fewer than `max_pages`
//! live; a new page in place of the coldest idle page of any key ([`policy`]: LRU-K with time decay).
//! Running renders are capped separately by a semaphore (`max_concurrent_renders`): Chromium on two
//! cores saturates at 4-8 concurrent renders and more only adds latency.
//!
//! Isolation keys never share pages. Each key has a browser context (cookies, storage, cache) shared by
//! its pages; contexts are never created per job (~22 MB and tens of ms each). Pages and contexts are
//! recycled after a number of jobs, pages closed after an idle timeout.
//!
//! Returning a page happens in [`Lease`]'s `Drop`: a background task resets it ([`reset`]) and puts it
//! back idle, or closes it if the job asked for that (a timeout, a hung script), the renderer crashed, an
//! operation was cancelled half-way, the page was left unable to navigate soon, or it reached its reuse
//! limit. Everything that belonged to a dead browser is forgotten when the
//! pool first sees the browser's next generation.
//!
//! Files: this one holds the pool's state and the lease/return machinery; `lease.rs` the [`Lease`]
//! handle; `contexts.rs` browser contexts per key; `policy.rs` the eviction order; `reset.rs` what is
//! undone between jobs; `maintenance.rs` the background tick (idle eviction, parking) and crash
//! listener; `prewarm.rs` the pages kept warm for the keys the scheduler expects jobs for.

mod contexts;
mod lease;
mod maintenance;
mod policy;
mod prewarm;
mod reset;

use contexts::ContextEntry;
pub use lease::Lease;
use maintenance::{maintain, watch_crashes};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, CreateTargetParams};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::browser::{BrowserError, BrowserSession, BrowserSupervisor};
use crate::config::PoolSettings;
use crate::metrics::{Metrics, ShardLabels, StateLabels};
use policy::AccessHistory;

/// Why a page could not be leased, by step.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no render slot or page became free within {0:?}")]
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

/// The isolation key of jobs that do not name one.
pub const DEFAULT_ISOLATION_KEY: &str = "default";

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
    /// One permit per render that may run at once.
    render_slots: Arc<Semaphore>,
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
    /// Crash flags of every open page, by target id, set by the crash listener.
    crash_flags: HashMap<String, Arc<AtomicBool>>,
    closed: bool,
}

#[derive(Debug)]
struct IdlePage {
    page: PooledPage,
    since: Instant,
}

/// A page owned by the pool, with what the pool tracks about it.
#[derive(Debug)]
pub(crate) struct PooledPage {
    pub cdp: chromiumoxide::Page,
    pub key: String,
    context: String,
    generation: u64,
    uses: u32,
    history: AccessHistory,
    crashed: Arc<AtomicBool>,
    /// On a fresh `about:blank` document: newly opened, or parked after idling. A used page keeps the
    /// last job's document until it is parked, which costs a navigation that the next job (which
    /// navigates anyway) would make redundant.
    pristine: bool,
    /// What jobs changed on the page since its last reset, so the reset undoes exactly that.
    pub(crate) changes: Mutex<PageChanges>,
    /// Page operations running now. Above zero when the lease comes back means an operation was
    /// cancelled half-way (client gone, deadline): the page's state is unknown, so it is closed.
    pub(crate) in_operation: AtomicUsize,
    /// Set by a page operation that left the page unable to serve another job soon (a navigation
    /// abandoned before chromiumoxide let go of it): the pool closes it.
    pub(crate) spoiled: AtomicBool,
}

/// Page state that jobs change and reset undoes. Page operations record here what they set.
#[derive(Debug, Default)]
pub(crate) struct PageChanges {
    /// Script ids added with `Page.addScriptToEvaluateOnNewDocument`.
    pub init_scripts: Vec<String>,
    /// The task failing blocked requests while request blocking is on.
    pub request_blocker: Option<tokio::task::AbortHandle>,
    pub headers: bool,
    pub user_agent: bool,
    pub media: bool,
    pub javascript_disabled: bool,
    /// The viewport in force. Not undone: every job sets its own, and setting the one already in force
    /// again is skipped, since a metrics override relayouts the page.
    pub viewport: Option<crate::page::options::Viewport>,
}

impl PooledPage {
    pub(crate) fn changes(&self) -> MutexGuard<'_, PageChanges> {
        // Nothing holding this lock can panic half-way through an update.
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
    pub running_renders: usize,
    pub max_concurrent_renders: usize,
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
            running_renders: sum.running_renders + status.running_renders,
            max_concurrent_renders: sum.max_concurrent_renders + status.max_concurrent_renders,
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
            render_slots: Arc::new(Semaphore::new(settings.max_concurrent_renders)),
            settings,
            metrics,
            state: Mutex::new(PoolState::default()),
            context_creation: tokio::sync::Mutex::new(()),
            page_returned: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
            warm_targets: Mutex::new(HashMap::new()),
            shard,
        });
        inner.runtime.spawn(maintain(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// Leases a page of `key`, waiting for a render slot and a browser until `deadline` at the latest.
    pub async fn lease(&self, key: &str, deadline: Instant) -> Result<Lease, PoolError> {
        let inner = &self.inner;
        let asked = Instant::now();
        let slot_deadline = deadline.min(Instant::now() + inner.settings.lease_timeout);
        let permit = match tokio::time::timeout_at(
            slot_deadline,
            inner.render_slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(PoolError::Closed),
            Err(_) => return Err(PoolError::Timeout(asked.elapsed())),
        };
        // A browser that dies while this lease waits for a page sends it round again, to the next one.
        let (session, mut page) = loop {
            let session = inner.browser.ready(deadline).await?;
            inner.adopt(&session);
            match tokio::time::timeout_at(deadline, inner.take_page(&session, key)).await {
                Ok(Ok(page)) => break (session, page),
                Ok(Err(PoolError::Relaunched)) => continue,
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(PoolError::Timeout(asked.elapsed())),
            }
        };
        let pristine = std::mem::replace(&mut page.pristine, false);
        Ok(Lease {
            page: Some(page),
            pristine,
            session,
            pool: self.inner.clone(),
            permit: Some(permit),
            discard: None,
        })
    }

    /// Whether an idle page of `key` is waiting: a job of that key placed here would find it warm.
    pub fn has_idle_page(&self, key: &str) -> bool {
        self.inner
            .lock()
            .idle
            .iter()
            .any(|idle| idle.page.key == key)
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
            running_renders: settings.max_concurrent_renders
                - self.inner.render_slots.available_permits(),
            max_concurrent_renders: settings.max_concurrent_renders,
            contexts: state.contexts.len(),
            warm_pages_wanted: self.inner.warm_targets().values().sum(),
            idle_timeout_ms: settings.idle_timeout.as_millis() as u64,
            page_reuse_limit: settings.page_reuse_limit,
            context_reuse_limit: settings.context_reuse_limit,
        }
    }

    /// Stops leasing, lets pages on their way back finish their reset (for up to the cleanup timeout),
    /// and closes every idle page. Pages still leased close when their leases end.
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
        let _ = tokio::time::timeout(CDP_CLEANUP_TIMEOUT, settled).await;
        let idle = {
            let mut state = self.inner.lock();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        self.inner.render_slots.close();
        // Leases waiting for a page see `closed` and give up.
        self.inner.page_returned.notify_waiters();
        let session = self.inner.browser.current();
        let closing = idle.iter().map(|entry| {
            self.inner.forget(&entry.page, "shutdown");
            let session = session.clone();
            async move {
                if let Some(session) = session {
                    close_target(&session, &entry.page).await;
                }
            }
        });
        futures::future::join_all(closing).await;
    }
}

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
        self.runtime
            .spawn(watch_crashes(Arc::downgrade(self), session.clone()));
    }

    /// An idle page of `key`, else a new one (after evicting the coldest idle page if at the cap).
    async fn take_page(
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
                    Decision::Replace(victim)
                } else {
                    Decision::Wait
                }
            };
            match decision {
                Decision::Open => {}
                Decision::Replace(victim) => {
                    self.metrics.evicted("lru");
                    let session = session.clone();
                    self.runtime
                        .spawn(async move { close_target(&session, &victim).await });
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
            session: session.clone(),
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
                        pool.finish_return(page, &session, Ok(()), Instant::now())
                            .await;
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

    /// Moves a leased page's counts to "on its way back", ahead of [`Self::finish_return`].
    fn mark_returning(&self, page: &PooledPage) {
        let mut state = self.lock();
        if state.generation == page.generation {
            state.leased = state.leased.saturating_sub(1);
            *state.returning.entry(page.key.clone()).or_default() += 1;
            self.publish(&state);
        }
    }

    /// Opens a page in the current context of `key`, creating the context if needed.
    async fn open_page(
        &self,
        session: &Arc<BrowserSession>,
        key: &str,
    ) -> Result<PooledPage, PoolError> {
        let context = self.context_for(session, key).await?;
        // A window of its own: Chromium captures a screenshot from the page's next compositor
        // frame, and a page that is not its window's active tab may not produce one soon. As tabs
        // of one window per context, 7% of captures took 0.4-2 s with 8 clients over 8 keys, one
        // in a few hundred hung until the job's deadline, and on a quiet server 4-5% took ~500 ms.
        // With a window per page: none over 400 ms in the same run (0 of 626, against 45 of 624).
        // Activating the page before each capture (`Page.bringToFront`) also ended the stalls but
        // cost a fifth of the throughput with 16 pages in one window, each activation hiding the
        // page active before (measured).
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .new_window(true)
            .build()
            .map_err(|error| {
                PoolError::CreatePage(chromiumoxide::error::CdpError::ChromeMessage(error))
            })?;
        let cdp = match session.cdp().new_page(params).await {
            Ok(page) => page,
            Err(error) => {
                self.context_page_closed(session.generation, context.inner());
                return Err(PoolError::CreatePage(error));
            }
        };
        let crashed = Arc::new(AtomicBool::new(false));
        let mut history = AccessHistory::default();
        history.record(Instant::now());
        let mut state = self.lock();
        if state.generation == session.generation {
            state
                .crash_flags
                .insert(cdp.target_id().inner().clone(), crashed.clone());
        }
        drop(state);
        self.metrics.pages_created.inc();
        Ok(PooledPage {
            cdp,
            key: key.to_owned(),
            context: context.inner().clone(),
            generation: session.generation,
            uses: 0,
            history,
            crashed,
            pristine: true,
            changes: Mutex::new(PageChanges::default()),
            in_operation: AtomicUsize::new(0),
            spoiled: AtomicBool::new(false),
        })
    }

    /// Bookkeeping for a page that leaves the pool (closed or lost). Caller holds the lock.
    fn forget_locked(&self, state: &mut PoolState, page: &PooledPage) {
        if page.generation != state.generation {
            return;
        }
        state.live -= 1;
        state.crash_flags.remove(page.cdp.target_id().inner());
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

    /// Puts a reset page back, or closes it. Runs in the background after a lease ends.
    async fn give_back(
        self: Arc<Self>,
        mut page: PooledPage,
        session: Arc<BrowserSession>,
        discard: Option<&'static str>,
    ) {
        page.uses += 1;
        let reason = if !session.is_alive() {
            Some("browser_died")
        } else if page.crashed.load(Ordering::Relaxed) {
            Some("crashed")
        } else if discard.is_some() {
            discard
        } else if page.in_operation.load(Ordering::Relaxed) > 0 {
            Some("cancelled")
        } else if page.spoiled.load(Ordering::Relaxed) {
            Some("spoiled")
        } else if page.uses >= self.settings.page_reuse_limit {
            Some("reuse_limit")
        } else {
            self.count_context_job(&page)
        };
        let outcome = match reason {
            Some(reason) => Err(reason),
            None => reset::reset(&page).await.map_err(|error| {
                tracing::warn!(%error, "resetting a page failed; closing it");
                "reset_failed"
            }),
        };
        self.finish_return(page, &session, outcome, Instant::now())
            .await;
    }

    /// Ends a page's way back from a job or from parking: idle again (idle since `since`), or closed
    /// for `reason`. Wakes the leases waiting for a page.
    async fn finish_return(
        &self,
        page: PooledPage,
        session: &BrowserSession,
        outcome: Result<(), &'static str>,
        since: Instant,
    ) {
        let close = {
            let mut state = self.lock();
            let current = state.generation == page.generation;
            if current && let Some(returning) = state.returning.get_mut(&page.key) {
                *returning = returning.saturating_sub(1);
            }
            let close = match outcome {
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
            close
        };
        self.page_returned.notify_waiters();
        if let Some((page, reason)) = close {
            self.metrics.evicted(reason);
            if session.is_alive() {
                close_target(session, &page).await;
            }
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

/// The waiting end of [`PoolInner::open_page_detached`]. A lease dropped just as its page arrived
/// would drop the page inside the channel; this hands such a page to the pool as an idle one instead.
struct PageDelivery {
    receiver: tokio::sync::oneshot::Receiver<Result<PooledPage, PoolError>>,
    pool: Arc<PoolInner>,
    session: Arc<BrowserSession>,
}

impl Drop for PageDelivery {
    fn drop(&mut self) {
        // After `close`, a page is either here already or the sender gets it back (and returns it).
        self.receiver.close();
        if let Ok(Ok(page)) = self.receiver.try_recv() {
            self.pool.mark_returning(&page);
            let pool = self.pool.clone();
            let session = self.session.clone();
            self.pool.runtime.spawn(async move {
                pool.finish_return(page, &session, Ok(()), Instant::now())
                    .await;
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

/// What a lease does when no idle page of its key is there.
enum Decision {
    Open,
    Replace(PooledPage),
    Wait,
    WaitForReturn,
}

/// Upper bound for closing a page or context: a hung renderer must not hold up the pool.
const CDP_CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes a page through the browser target, which still answers when the page's own session does not
/// (a page spinning in JavaScript after a navigation was sent to it; measured).
async fn close_target(session: &BrowserSession, page: &PooledPage) {
    let close = session
        .cdp()
        .execute(CloseTargetParams::new(page.cdp.target_id().clone()));
    if tokio::time::timeout(CDP_CLEANUP_TIMEOUT, close)
        .await
        .is_err()
    {
        tracing::warn!(target = ?page.cdp.target_id(), "closing a page timed out");
    }
}
