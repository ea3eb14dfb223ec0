//! Putting a page back the way a new job expects it: nothing of the previous job may leak into the next
//! except what its isolation key shares on purpose (cookies and storage of the browser context).
//!
//! The document itself stays until the page is parked (see [`park`]): the next job navigates anyway,
//! and a navigation to `about:blank` in between would cost as much as the job's own (measured).
//!
//! Each step undoes one kind of page option unconditionally: a CDP round trip costs well under a
//! millisecond, and undoing what was never set is cheaper than a bug where a flag leaks between jobs.

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::emulation::SetUserAgentOverrideParams;
use chromiumoxide::cdp::browser_protocol::emulation::{
    ClearDeviceMetricsOverrideParams, MediaFeature, SetEmulatedMediaParams,
    SetScriptExecutionDisabledParams,
};
use chromiumoxide::cdp::browser_protocol::fetch;
use chromiumoxide::cdp::browser_protocol::network::{Headers, SetExtraHttpHeadersParams};
use chromiumoxide::cdp::browser_protocol::page::{
    NavigateParams, RemoveScriptToEvaluateOnNewDocumentParams, StopLoadingParams,
};
use chromiumoxide::cdp::js_protocol::runtime::TerminateExecutionParams;

use super::PooledPage;

/// A reset that takes longer than this means the page is unhealthy: it is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ResetError {
    #[error("page reset step `{step}` failed: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: chromiumoxide::error::CdpError,
    },
    #[error("page reset took longer than {RESET_TIMEOUT:?}")]
    Timeout,
}

pub(crate) async fn reset(page: &PooledPage) -> Result<(), ResetError> {
    tokio::time::timeout(RESET_TIMEOUT, reset_steps(page))
        .await
        .map_err(|_| ResetError::Timeout)?
}

async fn reset_steps(page: &PooledPage) -> Result<(), ResetError> {
    let cdp = &page.cdp;
    let step = |step: &'static str| move |source| ResetError::Step { step, source };
    // Stop whatever the last job left running: a script still spinning, then a load in flight.
    cdp.execute(TerminateExecutionParams::default())
        .await
        .map_err(step("terminate scripts"))?;
    cdp.execute(StopLoadingParams::default())
        .await
        .map_err(step("stop loading"))?;
    let scripts = std::mem::take(
        &mut *page
            .init_scripts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for identifier in scripts {
        cdp.execute(RemoveScriptToEvaluateOnNewDocumentParams::new(identifier))
            .await
            .map_err(step("remove injected script"))?;
    }
    if let Some(blocker) = page
        .request_blocker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        blocker.abort();
    }
    cdp.execute(fetch::DisableParams::default())
        .await
        .map_err(step("stop request blocking"))?;
    cdp.execute(SetExtraHttpHeadersParams::new(Headers::new(
        serde_json::json!({}),
    )))
    .await
    .map_err(step("clear extra headers"))?;
    cdp.execute(SetScriptExecutionDisabledParams::new(false))
        .await
        .map_err(step("enable JavaScript"))?;
    // An empty user agent removes the override (Chromium treats "" as "no override").
    cdp.execute(SetUserAgentOverrideParams::new(""))
        .await
        .map_err(step("clear user agent"))?;
    cdp.execute(
        SetEmulatedMediaParams::builder()
            .media("")
            .features(Vec::<MediaFeature>::new())
            .build(),
    )
    .await
    .map_err(step("clear emulated media"))?;
    cdp.execute(ClearDeviceMetricsOverrideParams::default())
        .await
        .map_err(step("clear viewport"))?;
    Ok(())
}

/// Moves an idle page off its last document onto `about:blank`: the document's timers and sockets
/// stop and its memory goes.
pub(crate) async fn park(page: &PooledPage) -> Result<(), ResetError> {
    tokio::time::timeout(
        RESET_TIMEOUT,
        page.cdp.execute(NavigateParams::new("about:blank")),
    )
    .await
    .map_err(|_| ResetError::Timeout)?
    .map_err(|source| ResetError::Step {
        step: "navigate to about:blank",
        source,
    })?;
    Ok(())
}
