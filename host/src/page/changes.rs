//! [`Changes`]: what jobs set on a page since its last reset. Each setting operation records itself
//! here as it runs, so the reset undoes exactly what was changed: a plain job costs two CDP calls
//! to reset, not ten.

use crate::job::options::Viewport;

#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Script ids added with `Page.addScriptToEvaluateOnNewDocument`.
    pub init_scripts: Vec<String>,
    /// The task answering stopped requests while interception is on (`intercept.rs`).
    pub interceptor: Option<tokio::task::AbortHandle>,
    pub headers: bool,
    /// The user agent or `Accept-Language` is overridden.
    pub user_agent: bool,
    pub locale: bool,
    pub timezone: bool,
    /// A position is emulated and the context let origins ask for it.
    pub geolocation: bool,
    pub touch: bool,
    pub media: bool,
    pub javascript_disabled: bool,
    pub certificate_errors_ignored: bool,
    /// The viewport in force. Not undone: every job sets its own, and setting the one already in
    /// force again is skipped, since a metrics override relayouts the page.
    pub viewport: Option<Viewport>,
}
