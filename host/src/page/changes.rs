//! [`Changes`]: what jobs set on a page since its last reset. Each setting operation records itself
//! here as it runs, so the reset undoes exactly what was changed: a plain job costs two CDP calls
//! to reset, not ten.

use crate::job::options::Viewport;

#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Script ids added with `Page.addScriptToEvaluateOnNewDocument`.
    pub init_scripts: Vec<String>,
    /// The task failing blocked requests while request blocking is on.
    pub request_blocker: Option<tokio::task::AbortHandle>,
    pub headers: bool,
    pub user_agent: bool,
    pub media: bool,
    pub javascript_disabled: bool,
    pub certificate_errors_ignored: bool,
    /// The viewport in force. Not undone: every job sets its own, and setting the one already in
    /// force again is skipped, since a metrics override relayouts the page.
    pub viewport: Option<Viewport>,
}
