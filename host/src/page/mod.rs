//! page: the operations a job performs on a leased page, as a Rust API. The WIT `page` resource of the
//! plugin host exposes exactly these.
//!
//! Every operation runs under the job's deadline ([`Page::deadline`]): a CDP call that does not answer
//! in time ends with [`PageError::Timeout`] naming the step, instead of hanging on a page that spins in
//! `while(true){}` or a renderer that crashed. Errors say which operation failed and whether the cause
//! was the input, the page, or the browser.
//!
//! The operations live by concern: `setup.rs` (what is set before navigating), `navigate.rs` (loading a
//! URL or inline HTML, waiting for elements), `dom.rs` (evaluating, reading and driving the document) and
//! `capture.rs` (screenshots and PDF). This file holds the error type, the `Page` handle, and the
//! machinery every operation goes through: deadlines, error classification, cancellation marks.

mod capture;
mod dom;
mod navigate;
pub mod options;
mod setup;

use std::future::Future;
use std::time::Duration;

use chromiumoxide::error::CdpError;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::pool::Lease;

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
    #[error("the browser died during {step}")]
    BrowserGone { step: &'static str },
    #[error("{step} failed: {source}")]
    Cdp {
        step: &'static str,
        #[source]
        source: CdpError,
    },
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
}

/// One element found by [`Page::query`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueriedElement {
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

/// A leased page together with the deadline of the job using it.
#[derive(Debug)]
pub struct Page<'a> {
    lease: &'a Lease,
    deadline: Instant,
}

impl<'a> Page<'a> {
    pub fn new(lease: &'a Lease, deadline: Instant) -> Self {
        Self { lease, deadline }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn cdp(&self) -> &chromiumoxide::Page {
        &self.lease.page().cdp
    }

    /// Runs one CDP step under `deadline`, naming the step in any error.
    async fn step<T>(
        &self,
        step: &'static str,
        deadline: Instant,
        future: impl Future<Output = Result<T, CdpError>>,
    ) -> Result<T, PageError> {
        self.in_operation(async {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(source)) => Err(self.classify(step, source).await),
                Err(_) if self.lease.crashed() => Err(PageError::Crashed),
                Err(_) => Err(PageError::Timeout { step }),
            }
        })
        .await
    }

    /// Runs `operation` with the page marked busy. If the future is dropped half-way (the client went
    /// away, an outer deadline), the mark stays, and the pool closes the page instead of reusing a page
    /// in an unknown state.
    async fn in_operation<T>(&self, operation: impl Future<Output = T>) -> T {
        let running = &self.lease.page().in_operation;
        running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = operation.await;
        running.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
        let died = self.lease.session().died();
        if tokio::time::timeout(grace, died).await.is_ok() {
            PageError::BrowserGone { step }
        } else if self.lease.crashed() {
            PageError::Crashed
        } else {
            PageError::Cdp { step, source }
        }
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
