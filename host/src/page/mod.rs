//! page: the operations a job performs on a leased page, as a Rust API. The WIT `page` resource of the
//! plugin host exposes exactly these.
//!
//! Every operation runs under the job's deadline ([`Page::deadline`]): a CDP call that does not answer
//! in time ends with [`PageError::Timeout`] naming the step, instead of hanging on a page that spins in
//! `while(true){}` or a renderer that crashed. Errors say which operation failed and whether the cause
//! was the input, the page, or the browser.

pub mod options;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::dom::Rgba;
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDefaultBackgroundColorOverrideParams, SetDeviceMetricsOverrideParams,
    SetEmulatedMediaParams, SetScriptExecutionDisabledParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, EventRequestPaused, FailRequestParams, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{
    self, ClearBrowserCookiesParams, CookieParam, CookieSameSite, ErrorReason, EventLoadingFailed,
    EventRequestWillBeSent, EventResponseReceived, Headers, SetCookiesParams,
    SetExtraHttpHeadersParams, TimeSinceEpoch,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, CaptureScreenshotParams,
    EventLifecycleEvent, GetLayoutMetricsParams, NavigateParams, PrintToPdfParams,
    SetDocumentContentParams, Viewport as ClipRect,
};
use chromiumoxide::cdp::browser_protocol::storage::ClearDataForOriginParams;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::pool::Lease;
use options::{
    BlockOptions, Cookie, GotoOptions, ImageFormat, MAX_PIXELS, MediaType, PageOptions, PdfOptions,
    ResourceType, SameSite, ScreenshotOptions, Viewport, WaitUntil,
};

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
        let busy = &self.lease.page().in_operation;
        busy.store(true, std::sync::atomic::Ordering::Relaxed);
        let result = operation.await;
        busy.store(false, std::sync::atomic::Ordering::Relaxed);
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

    /// Applies everything in `options` that must be in place before navigating. `target_url` is where
    /// cookies without `url` or `domain` go.
    pub async fn apply(
        &self,
        options: &PageOptions,
        target_url: Option<&str>,
    ) -> Result<(), PageError> {
        let deadline = self.deadline;
        self.set_viewport(&options.viewport).await?;
        if !options.headers.is_empty() {
            self.set_extra_headers(&options.headers).await?;
        }
        if let Some(user_agent) = &options.user_agent {
            self.set_user_agent(user_agent).await?;
        }
        if options.media.is_some() || !options.media_features.is_empty() {
            self.emulate_media(options.media, &options.media_features)
                .await?;
        }
        if !options.javascript {
            self.set_javascript_enabled(false).await?;
        }
        if !options.block.is_empty() {
            self.block_requests(&options.block).await?;
        }
        if options.fresh_session {
            self.step(
                "clear cookies",
                deadline,
                self.cdp().execute(ClearBrowserCookiesParams::default()),
            )
            .await?;
            if let Some(origin) = target_url.and_then(|url| url::Url::parse(url).ok()) {
                let origin = origin.origin().ascii_serialization();
                self.step(
                    "clear storage",
                    deadline,
                    self.cdp()
                        .execute(ClearDataForOriginParams::new(origin, "all")),
                )
                .await?;
            }
        }
        if !options.cookies.is_empty() {
            self.set_cookies(&options.cookies, target_url).await?;
        }
        Ok(())
    }

    /// Navigates to `url` and waits as `options` says.
    pub async fn goto(&self, url: &str, options: &GotoOptions) -> Result<Navigation, PageError> {
        let deadline = self.sub_deadline(options.timeout_ms);
        let cdp = self.cdp();
        let mut lifecycle = self
            .step(
                "listen for lifecycle events",
                deadline,
                cdp.event_listener::<EventLifecycleEvent>(),
            )
            .await?;
        let mut responses = self
            .step(
                "listen for responses",
                deadline,
                cdp.event_listener::<EventResponseReceived>(),
            )
            .await?;
        let mut failures = self
            .step(
                "listen for failed loads",
                deadline,
                cdp.event_listener::<EventLoadingFailed>(),
            )
            .await?;
        let mut requests = self
            .step(
                "listen for requests",
                deadline,
                cdp.event_listener::<EventRequestWillBeSent>(),
            )
            .await?;
        let main_frame = self
            .step("find the main frame", deadline, cdp.mainframe())
            .await?
            .ok_or(PageError::Navigation {
                url: url.to_owned(),
                reason: "the page has no main frame".into(),
            })?;
        let mut params = NavigateParams::new(url);
        params.referrer = options.referrer.clone();
        // chromiumoxide resolves `Page.navigate` once the main frame has loaded; the lifecycle events
        // below are what tell DOMContentLoaded and network idle apart.
        let navigate = cdp.execute(params);
        tokio::pin!(navigate);

        let target = match options.wait_until {
            WaitUntil::Load => "load",
            WaitUntil::DomContentLoaded => "DOMContentLoaded",
            WaitUntil::NetworkIdle => "networkIdle",
        };
        let mut navigated = false;
        let mut loader: Option<String> = None;
        let mut seen: HashSet<String> = HashSet::new();
        let mut document: Option<Navigation> = None;
        let mut document_request: Option<String> = None;
        let wait = async {
            loop {
                // A failed navigation loads Chromium's error page, which fires lifecycle events of its
                // own; only the navigate result (which carries `errorText`) or a real document response
                // tells it from a success.
                let done = match options.wait_until {
                    WaitUntil::Load => navigated,
                    WaitUntil::DomContentLoaded => {
                        navigated || (seen.contains(target) && document.is_some())
                    }
                    WaitUntil::NetworkIdle => navigated && seen.contains(target),
                };
                if done {
                    return Ok(());
                }
                tokio::select! {
                    result = &mut navigate, if !navigated => {
                        let result = match result {
                            Ok(response) => response.result,
                            Err(source) => return Err(self.classify("navigation", source).await),
                        };
                        // An HTTP error status with an empty body comes back as this "error", but the
                        // server did answer: that is a page with its status, not a failed navigation.
                        if let Some(reason) = result.error_text
                            && reason != "net::ERR_HTTP_RESPONSE_CODE_FAILURE"
                        {
                            return Err(PageError::Navigation { url: url.to_owned(), reason });
                        }
                        navigated = true;
                        loader.get_or_insert_with(|| result.loader_id.map(|id| id.inner().clone()).unwrap_or_default());
                    }
                    Some(event) = lifecycle.next() => {
                        if event.frame_id != main_frame {
                            continue;
                        }
                        // `init` opens a new document: everything after it with its loader id is ours.
                        if event.name == "init" {
                            loader = Some(event.loader_id.inner().clone());
                            seen.clear();
                        } else if loader.as_deref() == Some(event.loader_id.inner().as_str()) {
                            seen.insert(event.name.clone());
                        }
                    }
                    Some(event) = responses.next() => {
                        if event.r#type == network::ResourceType::Document
                            && event.frame_id.as_ref() == Some(&main_frame)
                        {
                            // 204 and 205 leave the old document in place: nothing will load.
                            if matches!(event.response.status, 204 | 205) {
                                return Err(PageError::Navigation {
                                    url: url.to_owned(),
                                    reason: format!(
                                        "the server answered {} without a document: there is nothing to render",
                                        event.response.status
                                    ),
                                });
                            }
                            document_request = Some(event.request_id.inner().clone());
                            document = Some(Navigation {
                                url: event.response.url.clone(),
                                status: u16::try_from(event.response.status).unwrap_or(0),
                            });
                        }
                    }
                    Some(event) = requests.next() => {
                        if event.r#type == Some(network::ResourceType::Document)
                            && event.frame_id.as_ref() == Some(&main_frame)
                        {
                            document_request = Some(event.request_id.inner().clone());
                        }
                    }
                    // The document's own request failing after its response (a download, which the
                    // browser aborts) never commits a document: chromiumoxide would wait 30 s.
                    Some(event) = failures.next() => {
                        // (An HTTP error with an empty body "fails" the same way; it is a page.)
                        if document_request.as_deref() == Some(event.request_id.inner().as_str())
                            && event.error_text != "net::ERR_HTTP_RESPONSE_CODE_FAILURE"
                        {
                            let reason = if event.error_text == "net::ERR_ABORTED" {
                                "net::ERR_ABORTED (the response is a download, not a page)".to_owned()
                            } else {
                                event.error_text.clone()
                            };
                            return Err(PageError::Navigation { url: url.to_owned(), reason });
                        }
                    }
                    // Both event streams ended after the navigation answered: the page's target (or
                    // the whole browser) is gone.
                    else => return Err(self.classify("navigation", CdpError::NoResponse).await),
                }
            }
        };
        let waited = self
            .in_operation(tokio::time::timeout_at(deadline, wait))
            .await;
        if !navigated && matches!(waited, Ok(Err(PageError::Navigation { .. }))) {
            // chromiumoxide still waits for this navigation to load (up to 30 s) and queues the
            // page's next navigation behind it: this page cannot serve another job for now.
            self.lease
                .page()
                .spoiled
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        match waited {
            Ok(result) => result?,
            Err(_) if self.lease.crashed() => return Err(PageError::Crashed),
            Err(_) => return Err(PageError::Timeout { step: "navigation" }),
        }
        // Responses can trail the lifecycle event by a message; take what is already queued.
        while let Some(Some(event)) = responses.now_or_never_ready() {
            if event.r#type == network::ResourceType::Document
                && event.frame_id.as_ref() == Some(&main_frame)
            {
                document = Some(Navigation {
                    url: event.response.url.clone(),
                    status: u16::try_from(event.response.status).unwrap_or(0),
                });
            }
        }
        let navigation = match document {
            Some(navigation) => navigation,
            // No response event (served from cache, or a non-HTTP URL): read the URL from the page.
            None => Navigation {
                url: self
                    .evaluate("location.href")
                    .await?
                    .as_str()
                    .unwrap_or(url)
                    .to_owned(),
                status: 200,
            },
        };
        if let Some(wait) = &options.wait_for_selector {
            self.wait_for_selector(&wait.selector, wait.visible, wait.timeout_ms)
                .await?;
        }
        Ok(navigation)
    }

    /// Loads inline HTML into the page (no network fetch for the document itself) and waits as
    /// `options` says. Relative URLs in it resolve against `about:blank`; use `<base href>` for others.
    pub async fn set_html(
        &self,
        html: &str,
        options: &GotoOptions,
    ) -> Result<Navigation, PageError> {
        let deadline = self.sub_deadline(options.timeout_ms);
        if !self.lease.is_pristine() {
            // Writing a document into a used page would keep the last job's window and its globals.
            self.step(
                "clear the page",
                deadline,
                self.cdp().execute(NavigateParams::new("about:blank")),
            )
            .await?;
        }
        let frame = self
            .step("find the main frame", deadline, self.cdp().mainframe())
            .await?
            .ok_or_else(|| PageError::Navigation {
                url: "about:blank".into(),
                reason: "the page has no main frame".into(),
            })?;
        self.step(
            "set document content",
            deadline,
            self.cdp()
                .execute(SetDocumentContentParams::new(frame, html)),
        )
        .await?;
        if options.wait_until != WaitUntil::DomContentLoaded {
            // `load` of the written document: its images, styles and fonts are in.
            let script = "document.readyState === 'complete' ? true : new Promise(resolve => \
                          addEventListener('load', () => resolve(true), { once: true }))";
            self.evaluate_until(script, deadline, "wait for load")
                .await?;
        }
        if let Some(wait) = &options.wait_for_selector {
            self.wait_for_selector(&wait.selector, wait.visible, wait.timeout_ms)
                .await?;
        }
        Ok(Navigation {
            url: "about:blank".into(),
            status: 200,
        })
    }

    /// Waits until an element matches `selector` (and is visible, if asked), watching DOM mutations in
    /// the page rather than polling from here.
    pub async fn wait_for_selector(
        &self,
        selector: &str,
        visible: bool,
        timeout_ms: Option<u64>,
    ) -> Result<(), PageError> {
        let deadline = self.sub_deadline(timeout_ms);
        let script = format!(
            r#"(() => {{
                const selector = {selector}, visible = {visible};
                const found = () => {{
                    const element = document.querySelector(selector);
                    if (!element) return false;
                    if (!visible) return true;
                    const box = element.getBoundingClientRect();
                    return box.width > 0 && box.height > 0 && getComputedStyle(element).visibility !== 'hidden';
                }};
                if (found()) return true;
                return new Promise(resolve => {{
                    const observer = new MutationObserver(() => {{
                        if (found()) {{ observer.disconnect(); resolve(true); }}
                    }});
                    observer.observe(document, {{ childList: true, subtree: true, attributes: true }});
                }});
            }})()"#,
            selector = json_string(selector),
        );
        self.evaluate_until(&script, deadline, "wait for selector")
            .await
            .map(|_| ())
            .map_err(|error| selector_error(error, selector))
    }

    /// Evaluates a JavaScript expression in the page; promises are awaited; the result comes back as
    /// JSON (`null` for `undefined` and values JSON cannot hold).
    pub async fn evaluate(&self, expression: &str) -> Result<Value, PageError> {
        self.evaluate_until(expression, self.deadline, "evaluate")
            .await
    }

    async fn evaluate_until(
        &self,
        expression: &str,
        deadline: Instant,
        step: &'static str,
    ) -> Result<Value, PageError> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .return_by_value(true)
            .await_promise(true)
            .build()
            .map_err(PageError::InvalidInput)?;
        let returned = self
            .step(step, deadline, self.cdp().execute(params))
            .await?
            .result;
        if let Some(details) = returned.exception_details {
            let message = details
                .exception
                .and_then(|exception| exception.description)
                .unwrap_or(details.text);
            return Err(PageError::Script(message));
        }
        Ok(returned.result.value.unwrap_or(Value::Null))
    }

    /// The page's HTML as it is now (after scripts ran), with doctype.
    pub async fn content(&self) -> Result<String, PageError> {
        let script = "(document.doctype ? new XMLSerializer().serializeToString(document.doctype) : '') \
                      + document.documentElement.outerHTML";
        let html = self.evaluate(script).await?;
        Ok(html.as_str().unwrap_or_default().to_owned())
    }

    /// Text and the named attributes of every element matching `selector`, in document order.
    pub async fn query(
        &self,
        selector: &str,
        attributes: &[String],
    ) -> Result<Vec<QueriedElement>, PageError> {
        let script = format!(
            "Array.from(document.querySelectorAll({selector}), element => ({{ \
                text: element.innerText ?? element.textContent ?? '', \
                attributes: Object.fromEntries({attributes}.map(name => [name, element.getAttribute(name)])) \
             }}))",
            selector = json_string(selector),
            attributes = serde_json::to_string(attributes).unwrap_or_else(|_| "[]".into()),
        );
        let value = self
            .evaluate(&script)
            .await
            .map_err(|error| selector_error(error, selector))?;
        serde_json::from_value(value).map_err(|error| PageError::Script(error.to_string()))
    }

    /// Clicks the centre of the first element matching `selector`, scrolling it into view first.
    pub async fn click(&self, selector: &str) -> Result<(), PageError> {
        let element = self.find(selector).await?;
        self.step("click", self.deadline, element.click()).await?;
        Ok(())
    }

    /// Focuses the first element matching `selector` and types `text` into it, key by key.
    pub async fn type_text(&self, selector: &str, text: &str) -> Result<(), PageError> {
        let element = self.find(selector).await?;
        self.step("focus", self.deadline, element.focus()).await?;
        self.step("type", self.deadline, element.type_str(text))
            .await?;
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<chromiumoxide::Element, PageError> {
        // An invalid selector and a missing element both fail `find_element`; ask the page which.
        let count = self
            .evaluate(&format!(
                "document.querySelectorAll({}).length",
                json_string(selector)
            ))
            .await
            .map_err(|error| selector_error(error, selector))?;
        if count.as_u64() == Some(0) {
            return Err(PageError::NotFound(selector.to_owned()));
        }
        self.step(
            "find element",
            self.deadline,
            self.cdp().find_element(selector),
        )
        .await
    }

    pub async fn scroll(&self, target: &ScrollTarget) -> Result<(), PageError> {
        let script = match target {
            ScrollTarget::By { x, y } => format!("window.scrollBy({x}, {y})"),
            ScrollTarget::Bottom => {
                "window.scrollTo(0, document.scrollingElement.scrollHeight)".to_owned()
            }
            ScrollTarget::Selector(selector) => format!(
                "(() => {{ const element = document.querySelector({s}); \
                   if (!element) return false; element.scrollIntoView(); return true; }})()",
                s = json_string(selector)
            ),
        };
        let found = self.evaluate(&script).await?;
        if let ScrollTarget::Selector(selector) = target
            && found == Value::Bool(false)
        {
            return Err(PageError::NotFound(selector.clone()));
        }
        Ok(())
    }

    pub async fn set_viewport(&self, viewport: &Viewport) -> Result<(), PageError> {
        viewport.validate()?;
        if self.lease.page().changes().viewport == Some(*viewport) {
            // Already in force (the last job used the same one): an override relayouts the page.
            return Ok(());
        }
        let params = SetDeviceMetricsOverrideParams::new(
            i64::from(viewport.width),
            i64::from(viewport.height),
            viewport.device_scale_factor,
            viewport.mobile,
        );
        self.step("set viewport", self.deadline, self.cdp().execute(params))
            .await?;
        self.lease.page().changes().viewport = Some(*viewport);
        Ok(())
    }

    pub async fn set_extra_headers(
        &self,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), PageError> {
        let params = SetExtraHttpHeadersParams::new(Headers::new(serde_json::json!(headers)));
        self.lease.page().changes().headers = true;
        self.step("set headers", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    pub async fn set_user_agent(&self, user_agent: &str) -> Result<(), PageError> {
        if user_agent.is_empty() {
            return Err(PageError::InvalidInput("user_agent cannot be empty".into()));
        }
        let params = SetUserAgentOverrideParams::new(user_agent);
        self.lease.page().changes().user_agent = true;
        self.step("set user agent", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    /// Sets cookies in the page's browser context. Cookies without `url` or `domain` go to
    /// `default_url`.
    pub async fn set_cookies(
        &self,
        cookies: &[Cookie],
        default_url: Option<&str>,
    ) -> Result<(), PageError> {
        let cookies = cookies
            .iter()
            .map(|cookie| {
                let url = cookie.url.clone().or_else(|| {
                    cookie.domain.is_none().then(|| default_url.map(str::to_owned)).flatten()
                });
                if url.is_none() && cookie.domain.is_none() {
                    return Err(PageError::InvalidInput(format!(
                        "cookie `{}` needs a url or a domain (inline HTML has no URL to default to)",
                        cookie.name
                    )));
                }
                Ok(CookieParam {
                    name: cookie.name.clone(),
                    value: cookie.value.clone(),
                    url,
                    domain: cookie.domain.clone(),
                    path: cookie.path.clone(),
                    secure: Some(cookie.secure),
                    http_only: Some(cookie.http_only),
                    same_site: cookie.same_site.map(|same_site| match same_site {
                        SameSite::Strict => CookieSameSite::Strict,
                        SameSite::Lax => CookieSameSite::Lax,
                        SameSite::None => CookieSameSite::None,
                    }),
                    expires: cookie.expires.map(TimeSinceEpoch::new),
                    ..CookieParam::new(cookie.name.clone(), cookie.value.clone())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.step(
            "set cookies",
            self.deadline,
            self.cdp().execute(SetCookiesParams::new(cookies)),
        )
        .await?;
        Ok(())
    }

    /// The cookies the page's current URL would send.
    pub async fn cookies(&self) -> Result<Vec<Cookie>, PageError> {
        let cookies = self
            .step("get cookies", self.deadline, self.cdp().get_cookies())
            .await?;
        Ok(cookies
            .into_iter()
            .map(|cookie| Cookie {
                name: cookie.name,
                value: cookie.value,
                url: None,
                domain: Some(cookie.domain),
                path: Some(cookie.path),
                secure: cookie.secure,
                http_only: cookie.http_only,
                same_site: cookie.same_site.map(|same_site| match same_site {
                    CookieSameSite::Strict => SameSite::Strict,
                    CookieSameSite::Lax => SameSite::Lax,
                    CookieSameSite::None => SameSite::None,
                }),
                expires: (cookie.expires > 0.0).then_some(cookie.expires),
            })
            .collect())
    }

    pub async fn emulate_media(
        &self,
        media: Option<MediaType>,
        features: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), PageError> {
        let params = SetEmulatedMediaParams::builder()
            .media(match media {
                Some(MediaType::Screen) => "screen",
                Some(MediaType::Print) => "print",
                None => "",
            })
            .features(
                features
                    .iter()
                    .map(|(name, value)| MediaFeature::new(name.clone(), value.clone()))
                    .collect::<Vec<_>>(),
            )
            .build();
        self.lease.page().changes().media = true;
        self.step("emulate media", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    pub async fn set_javascript_enabled(&self, enabled: bool) -> Result<(), PageError> {
        let params = SetScriptExecutionDisabledParams::new(!enabled);
        self.lease.page().changes().javascript_disabled |= !enabled;
        self.step(
            "toggle JavaScript",
            self.deadline,
            self.cdp().execute(params),
        )
        .await?;
        Ok(())
    }

    /// Fails matching requests before they leave the browser, until the page is reset.
    pub async fn block_requests(&self, block: &BlockOptions) -> Result<(), PageError> {
        let mut patterns: Vec<RequestPattern> = block
            .resource_types
            .iter()
            .map(|&kind| RequestPattern {
                url_pattern: Some("*".into()),
                resource_type: Some(cdp_resource_type(kind)),
                request_stage: Some(RequestStage::Request),
            })
            .collect();
        patterns.extend(block.url_patterns.iter().map(|pattern| RequestPattern {
            url_pattern: Some(pattern.clone()),
            resource_type: None,
            request_stage: Some(RequestStage::Request),
        }));
        // Listen before enabling, so no paused request is missed.
        let mut paused = self
            .step(
                "listen for requests",
                self.deadline,
                self.cdp().event_listener::<EventRequestPaused>(),
            )
            .await?;
        let cdp = self.cdp().clone();
        let blocker = tokio::spawn(async move {
            while let Some(event) = paused.next().await {
                let fail =
                    FailRequestParams::new(event.request_id.clone(), ErrorReason::BlockedByClient);
                let _ = cdp.execute(fail).await;
            }
        });
        let previous = self
            .lease
            .page()
            .changes()
            .request_blocker
            .replace(blocker.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        let enable = fetch::EnableParams::builder().patterns(patterns).build();
        self.step(
            "enable request blocking",
            self.deadline,
            self.cdp().execute(enable),
        )
        .await?;
        Ok(())
    }

    /// Runs `source` in every document of this page before the document's own scripts, until reset.
    pub async fn add_init_script(&self, source: &str) -> Result<(), PageError> {
        let params = AddScriptToEvaluateOnNewDocumentParams::new(source);
        let identifier = self
            .step("inject script", self.deadline, self.cdp().execute(params))
            .await?
            .result
            .identifier;
        self.lease
            .page()
            .changes()
            .init_scripts
            .push(identifier.inner().clone());
        Ok(())
    }

    /// Captures the viewport, the full page, a clip rectangle or one element.
    pub async fn screenshot(&self, options: &ScreenshotOptions) -> Result<Vec<u8>, PageError> {
        options.validate()?;
        let clip = if options.full_page {
            let metrics = self
                .step(
                    "measure the page",
                    self.deadline,
                    self.cdp().execute(GetLayoutMetricsParams::default()),
                )
                .await?
                .result;
            let size = metrics.css_content_size;
            Some(self.checked_clip(0.0, 0.0, size.width, size.height)?)
        } else if let Some(clip) = options.clip {
            Some(self.checked_clip(clip.x, clip.y, clip.width, clip.height)?)
        } else if let Some(selector) = &options.selector {
            let script = format!(
                "(() => {{ const element = document.querySelector({s}); if (!element) return null; \
                   const box = element.getBoundingClientRect(); \
                   return [box.left + scrollX, box.top + scrollY, box.width, box.height]; }})()",
                s = json_string(selector)
            );
            let value = self
                .evaluate(&script)
                .await
                .map_err(|error| selector_error(error, selector))?;
            let rect: Option<[f64; 4]> = serde_json::from_value(value).unwrap_or(None);
            let [x, y, width, height] =
                rect.ok_or_else(|| PageError::NotFound(selector.clone()))?;
            if width < 1.0 || height < 1.0 {
                return Err(PageError::InvalidInput(format!(
                    "`{selector}` has an empty box"
                )));
            }
            Some(self.checked_clip(x, y, width, height)?)
        } else {
            None
        };
        let transparent = options.omit_background && options.format != ImageFormat::Jpeg;
        if transparent {
            let params = SetDefaultBackgroundColorOverrideParams::builder()
                .color(Rgba {
                    r: 0,
                    g: 0,
                    b: 0,
                    a: Some(0.0),
                })
                .build();
            self.step(
                "clear the background",
                self.deadline,
                self.cdp().execute(params),
            )
            .await?;
        }
        let params = CaptureScreenshotParams {
            format: Some(match options.format {
                ImageFormat::Png => CaptureScreenshotFormat::Png,
                ImageFormat::Jpeg => CaptureScreenshotFormat::Jpeg,
                ImageFormat::Webp => CaptureScreenshotFormat::Webp,
            }),
            quality: options.quality.map(i64::from),
            // Capturing beyond the viewport with a clip leaves no device-metrics override behind,
            // unlike resizing the viewport to the page (which chromiumoxide's full-page mode does).
            capture_beyond_viewport: Some(clip.is_some()),
            clip,
            from_surface: Some(true),
            optimize_for_speed: None,
        };
        let captured = self
            .step(
                "capture screenshot",
                self.deadline,
                self.cdp().execute(params),
            )
            .await;
        if transparent {
            let reset = SetDefaultBackgroundColorOverrideParams::default();
            self.step(
                "restore the background",
                self.deadline,
                self.cdp().execute(reset),
            )
            .await?;
        }
        decode_base64(captured?.result.data.as_ref(), "screenshot")
    }

    fn checked_clip(&self, x: f64, y: f64, width: f64, height: f64) -> Result<ClipRect, PageError> {
        let max = f64::from(MAX_PIXELS);
        if width > max || height > max {
            return Err(PageError::TooLarge(format!(
                "the area to capture is {width:.0}x{height:.0} CSS pixels; Chromium captures at most \
                 {MAX_PIXELS} on a side: use a clip, or a PDF for long pages"
            )));
        }
        Ok(ClipRect {
            x,
            y,
            width: width.max(1.0),
            height: height.max(1.0),
            scale: 1.0,
        })
    }

    /// Prints the page to PDF.
    pub async fn pdf(&self, options: &PdfOptions) -> Result<Vec<u8>, PageError> {
        options.validate()?;
        let (width, height) = options.paper_inches();
        let margin = |length: Option<options::Length>| length.map(options::Length::inches);
        let with_header_footer =
            options.header_template.is_some() || options.footer_template.is_some();
        let params = PrintToPdfParams {
            landscape: Some(options.landscape),
            display_header_footer: Some(with_header_footer),
            print_background: Some(options.print_background),
            scale: options.scale,
            paper_width: Some(width),
            paper_height: Some(height),
            margin_top: margin(options.margin.top),
            margin_bottom: margin(options.margin.bottom),
            margin_left: margin(options.margin.left),
            margin_right: margin(options.margin.right),
            page_ranges: options.page_ranges.clone(),
            // Chromium prints its own default header when one template is missing; an empty span
            // keeps the side that was not asked for blank.
            header_template: with_header_footer.then(|| {
                options
                    .header_template
                    .clone()
                    .unwrap_or_else(|| "<span></span>".into())
            }),
            footer_template: with_header_footer.then(|| {
                options
                    .footer_template
                    .clone()
                    .unwrap_or_else(|| "<span></span>".into())
            }),
            prefer_css_page_size: Some(options.prefer_css_page_size),
            ..PrintToPdfParams::default()
        };
        let printed = self
            .step("print to PDF", self.deadline, self.cdp().execute(params))
            .await;
        let printed = match printed {
            Err(PageError::Cdp {
                source: CdpError::Chrome(error),
                ..
            }) if error.message.contains("range") || error.message.contains("Page range") => {
                return Err(PageError::InvalidInput(format!(
                    "page_ranges: {}",
                    error.message
                )));
            }
            other => other?,
        };
        decode_base64(printed.result.data.as_ref(), "PDF")
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

fn cdp_resource_type(kind: ResourceType) -> network::ResourceType {
    use network::ResourceType as Cdp;
    match kind {
        ResourceType::Document => Cdp::Document,
        ResourceType::Stylesheet => Cdp::Stylesheet,
        ResourceType::Image => Cdp::Image,
        ResourceType::Media => Cdp::Media,
        ResourceType::Font => Cdp::Font,
        ResourceType::Script => Cdp::Script,
        ResourceType::Xhr => Cdp::Xhr,
        ResourceType::Fetch => Cdp::Fetch,
        ResourceType::Websocket => Cdp::WebSocket,
        ResourceType::Manifest => Cdp::Manifest,
        ResourceType::Other => Cdp::Other,
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

fn decode_base64(data: &str, what: &str) -> Result<Vec<u8>, PageError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|error| PageError::Cdp {
            step: "decode the output",
            source: CdpError::ChromeMessage(format!(
                "Chromium returned an undecodable {what}: {error}"
            )),
        })
}

/// Polls a stream once without waiting.
trait NowOrNever: futures::Stream + Unpin {
    fn now_or_never_ready(&mut self) -> Option<Option<Self::Item>> {
        futures::FutureExt::now_or_never(self.next())
    }
}

impl<S: futures::Stream + Unpin> NowOrNever for S {}
