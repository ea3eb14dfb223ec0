//! Putting a page back the way a new job expects it: nothing of the previous job may leak into the next
//! except what its isolation key shares on purpose (cookies and storage of the browser context).
//!
//! Page operations record what they change ([`Changes`]); the reset undoes exactly that, so a plain
//! job costs two CDP calls to reset, not ten. The document itself stays until the page is parked (see
//! [`PageHandle::park`]): the next job navigates anyway, and a navigation to `about:blank` in between
//! cost as much as the job's own (measured: 0.49x the throughput of a raw chromiumoxide loop with it,
//! 1.1x without).

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::ResetPermissionsParams;
use chromiumoxide::cdp::browser_protocol::emulation::{
    ClearGeolocationOverrideParams, MediaFeature, SetEmulatedMediaParams, SetLocaleOverrideParams,
    SetScriptExecutionDisabledParams, SetTimezoneOverrideParams, SetTouchEmulationEnabledParams,
    SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::fetch;
use chromiumoxide::cdp::browser_protocol::network::{Headers, SetExtraHttpHeadersParams};
use chromiumoxide::cdp::browser_protocol::page::{
    NavigateParams, RemoveScriptToEvaluateOnNewDocumentParams, StopLoadingParams,
};
use chromiumoxide::cdp::browser_protocol::security::SetIgnoreCertificateErrorsParams;

use chromiumoxide::cdp::browser_protocol::log::ClearParams;
use chromiumoxide::cdp::js_protocol::heap_profiler::CollectGarbageParams;
use chromiumoxide::cdp::js_protocol::runtime::{
    DiscardConsoleEntriesParams, TerminateExecutionParams,
};

use std::sync::atomic::Ordering;

use super::PageHandle;
use super::changes::Changes;

/// Jobs between forced garbage collections of a page's renderer.
const COLLECT_GARBAGE_EVERY: u32 = 10;

/// A reset that takes longer than this means the page is unhealthy: it is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("page reset step `{step}` failed: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: chromiumoxide::error::CdpError,
    },
    #[error("page reset took longer than {RESET_TIMEOUT:?}")]
    Timeout,
}

impl PageHandle {
    /// Undoes what jobs changed on the page, so the next job finds it as a new one would. An error
    /// (or a reset slower than [`RESET_TIMEOUT`]) means the page is unhealthy: close it.
    pub async fn reset(&self) -> Result<(), ResetError> {
        tokio::time::timeout(RESET_TIMEOUT, self.reset_steps())
            .await
            .map_err(|_| ResetError::Timeout)?
    }

    async fn reset_steps(&self) -> Result<(), ResetError> {
        let cdp = &self.cdp;
        let step = |step: &'static str| move |source| ResetError::Step { step, source };
        let resets = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        // Take the record, keeping only what is never undone; a failed step closes the page anyway.
        let changes = {
            let mut changes = self.changes();
            let viewport = changes.viewport;
            std::mem::replace(
                &mut *changes,
                Changes {
                    viewport,
                    ..Changes::default()
                },
            )
        };
        // Dialogs the page opened after the job took its metadata are not the next job's.
        self.dialogs.take();
        // A script the page started after the job finished may be spinning; the next job's navigation
        // would hang behind it. Answered in milliseconds even then (measured). The console messages
        // the renderer keeps for DevTools (up to a thousand per page) go with the job. Sent together,
        // these cost one round trip, not three.
        let (terminated, discarded, cleared) = futures::join!(
            cdp.execute(TerminateExecutionParams::default()),
            cdp.execute(DiscardConsoleEntriesParams::default()),
            cdp.execute(ClearParams::default()),
        );
        terminated.map_err(step("terminate scripts"))?;
        discarded.map_err(step("discard console entries"))?;
        cleared.map_err(step("clear the page's log"))?;
        // Old documents of a page that navigates without running much JavaScript are only freed by a
        // garbage collection, which V8 then rarely starts: a page's renderer grew ~3 MB per job until its
        // reuse limit (measured). Collecting every few jobs keeps it flat.
        if resets.is_multiple_of(COLLECT_GARBAGE_EVERY) {
            cdp.execute(CollectGarbageParams::default())
                .await
                .map_err(step("collect garbage"))?;
        }
        // Subresources of a job that did not wait for `load` may still be coming in.
        cdp.execute(StopLoadingParams::default())
            .await
            .map_err(step("stop loading"))?;
        for identifier in changes.init_scripts {
            cdp.execute(RemoveScriptToEvaluateOnNewDocumentParams::new(identifier))
                .await
                .map_err(step("remove injected script"))?;
        }
        if let Some(interceptor) = changes.interceptor {
            interceptor.abort();
            cdp.execute(fetch::DisableParams::default())
                .await
                .map_err(step("stop intercepting requests"))?;
        }
        if changes.headers {
            cdp.execute(SetExtraHttpHeadersParams::new(Headers::new(
                serde_json::json!({}),
            )))
            .await
            .map_err(step("clear extra headers"))?;
        }
        if changes.certificate_errors_ignored {
            cdp.execute(SetIgnoreCertificateErrorsParams::new(false))
                .await
                .map_err(step("verify certificates again"))?;
        }
        if changes.javascript_disabled {
            cdp.execute(SetScriptExecutionDisabledParams::new(false))
                .await
                .map_err(step("enable JavaScript"))?;
        }
        if changes.user_agent {
            // An empty user agent removes the override (Chromium treats "" as "no override").
            cdp.execute(SetUserAgentOverrideParams::new(""))
                .await
                .map_err(step("clear user agent"))?;
        }
        if changes.locale {
            cdp.execute(SetLocaleOverrideParams::default())
                .await
                .map_err(step("clear locale"))?;
        }
        if changes.timezone {
            // An empty id removes the override.
            cdp.execute(SetTimezoneOverrideParams::new(""))
                .await
                .map_err(step("clear time zone"))?;
        }
        if changes.geolocation {
            cdp.execute(ClearGeolocationOverrideParams::default())
                .await
                .map_err(step("clear geolocation"))?;
            let permissions = ResetPermissionsParams::builder()
                .browser_context_id(self.context.clone())
                .build();
            self.session
                .cdp()
                .execute(permissions)
                .await
                .map_err(step("reset permissions"))?;
        }
        if changes.touch {
            cdp.execute(SetTouchEmulationEnabledParams::new(false))
                .await
                .map_err(step("stop emulating touch"))?;
        }
        if changes.media {
            let clear = SetEmulatedMediaParams::builder()
                .media("")
                .features(Vec::<MediaFeature>::new())
                .build();
            cdp.execute(clear)
                .await
                .map_err(step("clear emulated media"))?;
        }
        Ok(())
    }

    /// Moves an idle page off its last document onto `about:blank`: the document's timers and
    /// sockets stop and its memory goes. A parked page is pristine again.
    pub async fn park(&self) -> Result<(), ResetError> {
        tokio::time::timeout(
            RESET_TIMEOUT,
            self.cdp.execute(NavigateParams::new("about:blank")),
        )
        .await
        .map_err(|_| ResetError::Timeout)?
        .map_err(|source| ResetError::Step {
            step: "navigate to about:blank",
            source,
        })?;
        self.pristine.store(true, Ordering::Relaxed);
        Ok(())
    }
}
