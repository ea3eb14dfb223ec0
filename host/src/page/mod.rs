//! page: one Chromium page and the operations a job performs on it, as a Rust API. The WIT `page`
//! resource of the plugin host exposes exactly these.
//!
//! [`PageHandle`] is the page itself: opened in a window of its own in a browser context, it keeps
//! the record of what jobs changed on it (`changes.rs`) and undoes exactly that in its reset
//! (`reset.rs`), and it knows whether it crashed, was cut off mid-operation, or was left unable to
//! serve soon; the pool reads those to decide between reusing and closing it. [`Page`] is a handle
//! with a job's deadline: every operation runs under it ([`Page::deadline`]), so a CDP call that does
//! not answer in time ends with [`PageError::Timeout`] naming the step, instead of hanging on a page
//! that spins in `while(true){}` or a renderer that crashed. Errors say which operation failed and
//! whether the cause was the input, the page, or the browser.
//!
//! The operations live by concern: `setup.rs` (what is set before navigating), `navigate.rs` (loading a
//! URL or inline HTML, waiting for elements), `dom.rs` (evaluating, reading and driving the document) and
//! `capture.rs` (screenshots and PDF). They take options already checked (`job::options`). What the
//! page does on its own (dialogs, a crashing renderer) is answered in `events.rs`.

mod additions;
mod capture;
mod changes;
mod dom;
mod events;
mod intercept;
mod navigate;
mod record;
mod reset;
mod setup;
mod watch;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, CreateTargetParams};
use chromiumoxide::cdp::js_protocol::runtime::ExceptionDetails;
use chromiumoxide::error::CdpError;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::browser::BrowserSession;
use crate::job::options::InvalidOption;
use changes::Changes;
use events::DialogLog;
pub use events::{CrashSignal, Dialog};
pub use intercept::Served;
pub use navigate::ElementState;
pub use record::Recorder;
pub use watch::FailRule;

/// What went wrong in a page operation.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{step} did not finish within the time budget")]
    Timeout { step: &'static str },
    #[error("navigating to {url} failed: {reason}")]
    Navigation { url: String, reason: String },
    #[error("no element matches `{0}`")]
    NotFound(String),
    #[error("the page's script threw: {0}")]
    Script(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the page's renderer crashed")]
    Crashed,
    /// The page loaded, and the job's `fail_on` policy makes what it saw a failure.
    #[error("{message} ({})", rule.field())]
    FailedOn { rule: FailRule, message: String },
    #[error("the browser died during {step}")]
    BrowserGone { step: &'static str },
    #[error("{step} failed: {source}")]
    Cdp {
        step: &'static str,
        #[source]
        source: CdpError,
    },
}

impl From<InvalidOption> for PageError {
    fn from(error: InvalidOption) -> Self {
        Self::InvalidInput(error.0)
    }
}

impl PageError {
    /// Did the page misbehave in a way that makes it unfit for reuse?
    pub fn spoils_page(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Crashed | Self::BrowserGone { .. } | Self::Cdp { .. }
        )
    }
}

/// The result of a navigation.
#[derive(Debug, Clone, Serialize)]
pub struct Navigation {
    /// The URL of the document after redirects.
    pub url: String,
    /// HTTP status of the main document; 200 for inline HTML.
    pub status: u16,
    /// What did not go as asked but did not fail the job (a wait that ran out of time under
    /// `goto.best_attempt`), for the caller to read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Navigation {
    pub fn new(url: impl Into<String>, status: u16) -> Self {
        Self {
            url: url.into(),
            status,
            warnings: Vec::new(),
        }
    }
}

/// One element found by [`Page::query`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueriedElement {
    /// The tag name, lower case.
    pub tag: String,
    /// `innerText` (what a reader sees), falling back to `textContent`.
    pub text: String,
    /// The requested attributes; `null` where the element lacks one.
    pub attributes: std::collections::BTreeMap<String, Option<String>>,
}

/// Where [`Page::scroll`] scrolls to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrollTarget {
    /// By this many CSS pixels.
    By { x: f64, y: f64 },
    /// To the bottom of the document (lazy-loading pages).
    Bottom,
    /// Until the first element matching this selector is in view.
    Selector(String),
}

/// The time a `best_attempt` job keeps for its output when a wait would use up its budget.
const OUTPUT_RESERVE: Duration = Duration::from_secs(2);

/// Upper bound for closing a page: a hung renderer must not hold up its caller.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One Chromium page and what is known about its state; see the module docs.
#[derive(Debug)]
pub struct PageHandle {
    cdp: chromiumoxide::Page,
    session: Arc<BrowserSession>,
    /// The browser context the page is in (its permissions are reset with the page's).
    context: BrowserContextId,
    /// What jobs changed since the last reset, so the reset undoes exactly that.
    changes: Mutex<Changes>,
    /// Resets so far: every few, the reset also collects the renderer's garbage.
    resets: AtomicU32,
    /// Operations running now. Above zero when no job uses the page means an operation was cut
    /// off half-way (client gone, deadline): the page's state is unknown.
    in_operation: AtomicUsize,
    /// Set by an operation that left the page unable to serve another job soon (a navigation
    /// abandoned before chromiumoxide let go of it).
    spoiled: AtomicBool,
    /// Raised when Chromium reports the page's renderer crashed.
    crash: Arc<CrashSignal>,
    /// Dialogs the page opened (and were answered) since the job's metadata took them.
    dialogs: Arc<DialogLog>,
    /// Answers the page's dialogs; aborted with the page.
    dialog_answerer: tokio::task::JoinHandle<()>,
    /// On a fresh `about:blank` document that no job has used: newly opened, or parked.
    pristine: AtomicBool,
}

impl PageHandle {
    /// Opens a page on `about:blank` in `context`. A window of its own, not a tab of the context's
    /// window: Chromium captures a screenshot from the page's next compositor frame, and a page that
    /// is not its window's active tab may not produce one soon. As tabs of one window per context, 7%
    /// of captures took 0.4-2 s with 8 clients over 8 keys, one in a few hundred hung until the job's
    /// deadline, and on a quiet server 4-5% took ~500 ms. With a window per page: none over 400 ms in
    /// the same run (0 of 626, against 45 of 624). Activating the page before each capture
    /// (`Page.bringToFront`) also ended the stalls but cost a fifth of the throughput with 16 pages in
    /// one window, each activation hiding the page active before (measured).
    pub async fn open(
        session: &Arc<BrowserSession>,
        context: &BrowserContextId,
    ) -> Result<Self, CdpError> {
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .new_window(true)
            .build()
            .map_err(CdpError::ChromeMessage)?;
        let cdp = session.cdp().new_page(params).await?;
        let dialogs = Arc::new(DialogLog::default());
        let dialog_answerer = events::answer_dialogs(&cdp, dialogs.clone()).await?;
        Ok(Self {
            cdp,
            session: session.clone(),
            context: context.clone(),
            changes: Mutex::new(Changes::default()),
            resets: AtomicU32::new(0),
            in_operation: AtomicUsize::new(0),
            spoiled: AtomicBool::new(false),
            crash: Arc::new(CrashSignal::new()),
            dialogs,
            dialog_answerer,
            pristine: AtomicBool::new(true),
        })
    }

    /// Chromium's id of the page (its target).
    pub fn target_id(&self) -> &str {
        self.cdp.target_id().inner()
    }

    /// The chromiumoxide page, for tests that need a CDP call no operation offers.
    #[cfg(test)]
    pub(crate) fn cdp(&self) -> &chromiumoxide::Page {
        &self.cdp
    }

    /// The signal [`PageHandle::crashed`] reads, for whoever hears of crashes by target id.
    pub fn crash_signal(&self) -> Arc<CrashSignal> {
        self.crash.clone()
    }

    /// Has the page's renderer crashed?
    pub fn crashed(&self) -> bool {
        self.crash.is_raised()
    }

    /// The dialogs the page opened since they were last taken (each answered at once).
    pub fn take_dialogs(&self) -> Vec<Dialog> {
        self.dialogs.take()
    }

    /// Was an operation cut off half-way? Only meaningful when no job uses the page.
    pub fn cut_off(&self) -> bool {
        self.in_operation.load(Ordering::Relaxed) > 0
    }

    /// Did an operation leave the page unable to serve another job soon?
    pub fn spoiled(&self) -> bool {
        self.spoiled.load(Ordering::Relaxed)
    }

    /// Is the page on a fresh `about:blank` document that no job has used?
    pub fn is_pristine(&self) -> bool {
        self.pristine.load(Ordering::Relaxed)
    }

    /// A job used the page: whatever it left in the document stays until the page is parked.
    pub fn mark_used(&self) {
        self.pristine.store(false, Ordering::Relaxed);
    }

    /// Closes the page through the browser target, which still answers when the page's own session
    /// does not (a page spinning in JavaScript after a navigation was sent to it; measured).
    pub async fn close(&self) {
        if !self.session.is_alive() {
            // Its process is gone, and the page with it.
            return;
        }
        let close = self
            .session
            .cdp()
            .execute(CloseTargetParams::new(self.cdp.target_id().clone()));
        if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
            tracing::warn!(target = ?self.cdp.target_id(), "closing a page timed out");
        }
    }

    fn changes(&self) -> MutexGuard<'_, Changes> {
        // Nothing holding this lock can panic half-way through an update.
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PageHandle {
    fn drop(&mut self) {
        self.dialog_answerer.abort();
    }
}

/// A page together with the deadline of the job using it.
#[derive(Debug)]
pub struct Page<'a> {
    handle: &'a PageHandle,
    deadline: Instant,
}

impl<'a> Page<'a> {
    pub fn new(handle: &'a PageHandle, deadline: Instant) -> Self {
        Self { handle, deadline }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn cdp(&self) -> &chromiumoxide::Page {
        &self.handle.cdp
    }

    /// Runs one CDP step under `deadline`, naming the step in any error.
    async fn step<T>(
        &self,
        step: &'static str,
        deadline: Instant,
        future: impl Future<Output = Result<T, CdpError>>,
    ) -> Result<T, PageError> {
        self.in_operation(async {
            match self
                .until_crash(tokio::time::timeout_at(deadline, future))
                .await
            {
                Some(Ok(Ok(value))) => Ok(value),
                Some(Ok(Err(source))) => Err(self.classify(step, source).await),
                Some(Err(_)) if self.handle.crashed() => Err(PageError::Crashed),
                Some(Err(_)) => Err(PageError::Timeout { step }),
                None => Err(PageError::Crashed),
            }
        })
        .await
    }

    /// `future`'s output, or `None` as soon as the page's renderer crashes: a crashed page answers
    /// nothing, and waiting on it would last until the deadline.
    async fn until_crash<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            output = future => Some(output),
            () = self.handle.crash.raised() => None,
        }
    }

    /// Runs `operation` with the page marked busy. If the future is dropped half-way (the client went
    /// away, an outer deadline), the mark stays ([`PageHandle::cut_off`]), and the pool closes the
    /// page instead of reusing a page in an unknown state.
    async fn in_operation<T>(&self, operation: impl Future<Output = T>) -> T {
        let running = &self.handle.in_operation;
        running.fetch_add(1, Ordering::Relaxed);
        let result = operation.await;
        running.fetch_sub(1, Ordering::Relaxed);
        result
    }

    async fn classify(&self, step: &'static str, source: CdpError) -> PageError {
        // chromiumoxide gives up on any command after 30 s, whatever the job's budget.
        if matches!(source, CdpError::Timeout) {
            return PageError::Timeout { step };
        }
        // When the browser dies, a pending call can fail a moment before the supervisor has noticed:
        // give it that moment (never past the deadline), so a dead browser is reported as one and the
        // job retried.
        let grace =
            Duration::from_millis(500).min(self.deadline.saturating_duration_since(Instant::now()));
        let died = self.handle.session.died();
        if tokio::time::timeout(grace, died).await.is_ok() {
            PageError::BrowserGone { step }
        } else if self.handle.crashed() {
            PageError::Crashed
        } else {
            PageError::Cdp { step, source }
        }
    }

    /// The deadline of a wait: [`Page::sub_deadline`], and under `best_attempt` early enough to
    /// leave the output its time: the last fifth of what is left, at most [`OUTPUT_RESERVE`].
    fn wait_deadline(&self, timeout_ms: Option<u64>, best_attempt: bool) -> Instant {
        let deadline = self.sub_deadline(timeout_ms);
        if !best_attempt {
            return deadline;
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        deadline.min(self.deadline - OUTPUT_RESERVE.min(left / 5))
    }

    /// `timeout_ms` from now, but never past the job's deadline.
    fn sub_deadline(&self, timeout_ms: Option<u64>) -> Instant {
        match timeout_ms {
            Some(ms) => self
                .deadline
                .min(Instant::now() + Duration::from_millis(ms)),
            None => self.deadline,
        }
    }
}

/// What a thrown exception says: its description (the message and the stack), or Chromium's
/// summary when it has none.
fn exception_message(details: &ExceptionDetails) -> String {
    details
        .exception
        .as_ref()
        .and_then(|exception| exception.description.clone())
        .unwrap_or_else(|| details.text.clone())
}

/// Now, in the milliseconds since the epoch that console and exception events carry: where a
/// listener starts, so that what the previous job's document did before it is left out.
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1000.0)
}

/// A string as a JavaScript literal (JSON is valid JavaScript), so user input never becomes code.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// An invalid CSS selector throws a `SyntaxError` in the page: that is the caller's input at fault.
fn selector_error(error: PageError, selector: &str) -> PageError {
    match error {
        PageError::Script(message)
            if message.contains("SyntaxError") || message.contains("not a valid selector") =>
        {
            PageError::InvalidInput(format!("`{selector}` is not a valid CSS selector"))
        }
        other => other,
    }
}

/// Polls a stream once without waiting.
trait NowOrNever: futures::Stream + Unpin {
    fn now_or_never_ready(&mut self) -> Option<Option<Self::Item>> {
        futures::FutureExt::now_or_never(self.next())
    }
}

impl<S: futures::Stream + Unpin> NowOrNever for S {}
