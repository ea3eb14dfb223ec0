//! What a page does on its own that no job may wait on, answered the moment Chromium reports it.
//!
//! - Dialogs: `alert`, `confirm` and `prompt` block the page's scripts (and every `Runtime.evaluate`
//!   behind them) until someone answers, and a `beforeunload` that asks to stay holds a navigation.
//!   A task per page answers each at once (dismissing the first three, leaving the page on
//!   `beforeunload`) and records what the page said for the job's metadata.
//! - Crashes: Chromium reports a renderer that died (out of memory, killed) for the whole browser
//!   (`browser::BrowserSession::watch_crashes`); the pool raises the page's [`CrashSignal`], and every
//!   page operation waits on it beside its own work, so a crash ends the job at once instead of at
//!   its deadline.

use std::sync::{Arc, Mutex, PoisonError};

use chromiumoxide::cdp::browser_protocol::page::{
    DialogType, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Raised when the page's renderer crashes; see the module docs.
#[derive(Debug)]
pub struct CrashSignal(watch::Sender<bool>);

impl CrashSignal {
    pub(super) fn new() -> Self {
        Self(watch::Sender::new(false))
    }

    pub fn raise(&self) {
        self.0.send_replace(true);
    }

    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal is raised (at once if it already is).
    pub async fn raised(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives as long as `self`, so this only ends by the signal.
        let _ = receiver.wait_for(|raised| *raised).await;
    }
}

/// A dialog a page opened, as the job's metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dialog {
    /// `alert`, `confirm`, `prompt` or `beforeunload`.
    pub kind: &'static str,
    /// What the page said, cut to [`MESSAGE_LIMIT`] characters.
    pub message: String,
}

/// Dialogs recorded per job, and the characters kept of each message: a page that opens dialogs in a
/// loop must not grow a job's record without bound.
const DIALOG_LIMIT: usize = 20;
const MESSAGE_LIMIT: usize = 500;

/// The dialogs a page opened since they were last taken.
#[derive(Debug, Default)]
pub(super) struct DialogLog(Mutex<Vec<Dialog>>);

impl DialogLog {
    fn record(&self, dialog: Dialog) {
        let mut dialogs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if dialogs.len() < DIALOG_LIMIT {
            dialogs.push(dialog);
        }
    }

    pub(super) fn take(&self) -> Vec<Dialog> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Starts answering the page's dialogs as they open; the task ends with the page's event stream,
/// and its owner aborts it when the page is dropped.
pub(super) async fn answer_dialogs(
    cdp: &chromiumoxide::Page,
    log: Arc<DialogLog>,
) -> Result<JoinHandle<()>, chromiumoxide::error::CdpError> {
    // Subscribed before any job uses the page, so no dialog opens unheard.
    let mut opening = cdp.event_listener::<EventJavascriptDialogOpening>().await?;
    let cdp = cdp.clone();
    Ok(tokio::spawn(async move {
        while let Some(event) = opening.next().await {
            let (kind, accept) = match event.r#type {
                DialogType::Alert => ("alert", false),
                DialogType::Confirm => ("confirm", false),
                DialogType::Prompt => ("prompt", false),
                // Accepting lets the navigation that asked go on.
                DialogType::Beforeunload => ("beforeunload", true),
            };
            let answer = cdp.execute(HandleJavaScriptDialogParams::new(accept));
            if let Err(error) = answer.await {
                tracing::debug!(%error, kind, "answering a page's dialog failed");
            }
            log.record(Dialog {
                kind,
                message: event.message.chars().take(MESSAGE_LIMIT).collect(),
            });
        }
    }))
}
