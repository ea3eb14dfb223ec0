//! Loading a page: navigation with its three wait conditions, inline HTML, and what a job waits for
//! once the document is in (an element present, visible or gone; an expression truthy; a delay).

use super::{Navigation, NowOrNever, Page, PageError, json_string, selector_error};
use crate::egress::EGRESS_HEADER;
use crate::job::options::{GotoOptions, WaitUntil};
use chromiumoxide::cdp::IntoEventKind;
use chromiumoxide::cdp::browser_protocol::network::{
    self, EventLoadingFailed, EventRequestWillBeSent, EventResponseReceived,
};
use chromiumoxide::cdp::browser_protocol::page::{
    EventLifecycleEvent, NavigateParams, SetDocumentContentParams,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::listeners::EventStream;
use futures::StreamExt;
use std::collections::HashSet;
use tokio::time::Instant;

impl Page<'_> {
    /// Navigates to `url` and waits as `options` says.
    pub async fn goto(&self, url: &str, options: &GotoOptions) -> Result<Navigation, PageError> {
        let deadline = self.wait_deadline(options.timeout_ms, options.best_attempt);
        let cdp = self.cdp();
        // Listen before navigating, so no event of this navigation is missed.
        let mut lifecycle = self
            .listen::<EventLifecycleEvent>("listen for lifecycle events", deadline)
            .await?;
        let mut responses = self
            .listen::<EventResponseReceived>("listen for responses", deadline)
            .await?;
        let mut failures = self
            .listen::<EventLoadingFailed>("listen for failed loads", deadline)
            .await?;
        let mut requests = self
            .listen::<EventRequestWillBeSent>("listen for requests", deadline)
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
            WaitUntil::NetworkAlmostIdle => "networkAlmostIdle",
        };
        let mut navigated = false;
        let mut loader: Option<String> = None;
        let mut seen: HashSet<String> = HashSet::new();
        let mut document: Option<Navigation> = None;
        let mut document_request: Option<String> = None;
        let expected_url = without_fragment(url);
        // A new document committed in the main frame (lifecycle `init`).
        let mut committed = false;
        // We stopped waiting for a navigation chromiumoxide still tracks.
        let mut abandoned = false;
        // The response to this navigation's document arrived (a real page, not an error page).
        let mut document_ok = false;
        // What the egress proxy said in place of the site, if it answered the document.
        let mut proxy_answer: Option<String> = None;
        let wait = async {
            loop {
                // A failed navigation loads Chromium's error page, which fires lifecycle events of its
                // own; only the navigate result (which carries `errorText`) or a real document response
                // tells it from a success.
                //
                // chromiumoxide's own result can also never come: a page that navigates itself to a
                // download confuses its load tracking. A lifecycle event of a document whose response
                // we saw is therefore enough too.
                let done = match options.wait_until {
                    WaitUntil::Load | WaitUntil::DomContentLoaded => {
                        navigated || (seen.contains(target) && document_ok)
                    }
                    WaitUntil::NetworkIdle | WaitUntil::NetworkAlmostIdle => {
                        seen.contains(target) && (navigated || document_ok)
                    }
                };
                if done {
                    return Ok(());
                }
                tokio::select! {
                    // In this order when several are ready: the events Chromium sent come out of
                    // separate queues, and a document's request must be known before its response
                    // or its failure is looked at (else a failure is missed and the job waits out
                    // its budget: seen with half of all downloads).
                    biased;
                    // The request of this navigation's document: for the URL asked for, in the main frame,
                    // before anything committed (a redirect keeps the request id). Requests a document
                    // makes later, or a previous job's document made, are not ours.
                    Some(event) = requests.next() => {
                        if document_request.is_none()
                            && !committed
                            && event.r#type == Some(network::ResourceType::Document)
                            && event.frame_id.as_ref() == Some(&main_frame)
                            && without_fragment(&event.request.url) == expected_url
                        {
                            document_request = Some(event.request_id.inner().clone());
                        }
                    }
                    Some(event) = lifecycle.next() => {
                        if event.frame_id != main_frame {
                            continue;
                        }
                        // `init` opens a new document: everything after it with its loader id is ours.
                        if event.name == "init" {
                            loader = Some(event.loader_id.inner().clone());
                            seen.clear();
                            committed = true;
                        } else if loader.as_deref() == Some(event.loader_id.inner().as_str()) {
                            seen.insert(event.name.clone());
                        }
                    }
                    Some(event) = responses.next() => {
                        if event.r#type == network::ResourceType::Document
                            && event.frame_id.as_ref() == Some(&main_frame)
                        {
                            // 204 and 205 leave the old document in place: nothing will load.
                            let ours = document_request.as_deref() == Some(event.request_id.inner().as_str());
                            if ours && !committed && matches!(event.response.status, 204 | 205) {
                                abandoned = true;
                                return Err(PageError::Navigation {
                                    url: url.to_owned(),
                                    reason: format!(
                                        "the server answered {} without a document: there is nothing to render",
                                        event.response.status
                                    ),
                                });
                            }
                            document_ok |= ours;
                            document = Some(Navigation::new(
                                event.response.url.clone(),
                                u16::try_from(event.response.status).unwrap_or(0),
                            ));
                            proxy_answer = egress_answer(&event.response);
                        }
                    }
                    // Our document's request failing before any document committed (a download, which
                    // the browser aborts) leaves nothing to wait for: chromiumoxide would wait 30 s.
                    // After a commit, a late failure (a truncated body) still leaves a page to render.
                    Some(event) = failures.next() => {
                        // (An HTTP error with an empty body "fails" the same way; it is a page.)
                        if !committed
                            && document_request.as_deref() == Some(event.request_id.inner().as_str())
                            && event.error_text != "net::ERR_HTTP_RESPONSE_CODE_FAILURE"
                        {
                            abandoned = true;
                            let reason = if event.error_text == "net::ERR_ABORTED" {
                                "net::ERR_ABORTED (the response is a download, not a page)".to_owned()
                            } else {
                                explained(&event.error_text)
                            };
                            return Err(PageError::Navigation { url: url.to_owned(), reason });
                        }
                    }
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
                            let reason = explained(&reason);
                            return Err(PageError::Navigation { url: url.to_owned(), reason });
                        }
                        navigated = true;
                        loader.get_or_insert_with(|| result.loader_id.map(|id| id.inner().clone()).unwrap_or_default());
                    }
                    // Both event streams ended after the navigation answered: the page's target (or
                    // the whole browser) is gone.
                    else => return Err(self.classify("navigation", CdpError::NoResponse).await),
                }
            }
        };
        let waited = self
            .in_operation(self.until_crash(tokio::time::timeout_at(deadline, wait)))
            .await
            .ok_or(PageError::Crashed)?;
        // Out of time, but a document is in and the job takes what there is.
        let best_attempt =
            waited.is_err() && options.best_attempt && committed && !self.handle.crashed();
        // chromiumoxide still waits for the load we stopped waiting for.
        abandoned |= best_attempt && !navigated;
        if matches!(waited, Ok(Ok(())))
            && !navigated
            && options.wait_until != WaitUntil::DomContentLoaded
        {
            // Done by the lifecycle events: chromiumoxide normally agrees a moment later. If it does
            // not, its navigation stays queued in front of the page's next one.
            let settled = tokio::time::timeout(NAVIGATION_SETTLE, &mut navigate).await;
            abandoned |= settled.is_err();
        }
        if abandoned {
            // chromiumoxide still waits for this navigation to load (up to 30 s) and queues the
            // page's next navigation behind it: this page cannot serve another job for now.
            self.handle
                .spoiled
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut warnings = Vec::new();
        match waited {
            Ok(result) => result?,
            Err(_) if best_attempt => warnings.push(format!(
                "goto.best_attempt: the page did not reach `{target}` in time; rendered what had \
                 loaded"
            )),
            Err(_) if self.handle.crashed() => return Err(PageError::Crashed),
            Err(_) => return Err(PageError::Timeout { step: "navigation" }),
        }
        // Responses can trail the lifecycle event by a message; take what is already queued.
        while let Some(Some(event)) = responses.now_or_never_ready() {
            if event.r#type == network::ResourceType::Document
                && event.frame_id.as_ref() == Some(&main_frame)
            {
                document = Some(Navigation::new(
                    event.response.url.clone(),
                    u16::try_from(event.response.status).unwrap_or(0),
                ));
                proxy_answer = egress_answer(&event.response);
            }
        }
        // The egress proxy answered for the site: the document (or a redirect it followed) was
        // refused by the server's egress rules, or its site could not be reached. Chromium shows
        // the proxy's answer as the page; it is not.
        if let Some(answer) = proxy_answer {
            let reason = match answer.split_once("; ") {
                Some(("refused", why)) => format!("the server's egress policy refused it: {why}"),
                Some((_, why)) => format!("the site could not be reached: {why}"),
                None => answer,
            };
            return Err(PageError::Navigation {
                url: url.to_owned(),
                reason,
            });
        }
        let mut navigation = match document {
            Some(navigation) => navigation,
            // No response event (served from cache, or a non-HTTP URL): read the URL from the page.
            None => Navigation::new(
                self.evaluate("location.href")
                    .await?
                    .as_str()
                    .unwrap_or(url),
                200,
            ),
        };
        navigation.warnings = warnings;
        self.wait_after_load(options, &mut navigation.warnings)
            .await?;
        Ok(navigation)
    }

    /// Loads inline HTML into the page (no network fetch for the document itself) and waits as
    /// `options` says. Relative URLs in it resolve against `about:blank`; use `<base href>` for others.
    pub async fn set_html(
        &self,
        html: &str,
        options: &GotoOptions,
    ) -> Result<Navigation, PageError> {
        let deadline = self.wait_deadline(options.timeout_ms, options.best_attempt);
        if !self.handle.is_pristine() {
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
        let mut navigation = Navigation::new("about:blank", 200);
        if options.wait_until != WaitUntil::DomContentLoaded {
            // `load` of the written document: its images, styles and fonts are in.
            let script = "document.readyState === 'complete' ? true : new Promise(resolve => \
                          addEventListener('load', () => resolve(true), { once: true }))";
            let loaded = self.evaluate_until(script, deadline, "wait for load").await;
            best_effort(loaded, options.best_attempt, &mut navigation.warnings)?;
        }
        self.wait_after_load(options, &mut navigation.warnings)
            .await?;
        Ok(navigation)
    }

    /// The waits `options` asks for once the document has loaded, in order: an element, an
    /// expression, a fixed delay. Under `best_attempt`, one that runs out of time adds to
    /// `warnings` instead of failing.
    async fn wait_after_load(
        &self,
        options: &GotoOptions,
        warnings: &mut Vec<String>,
    ) -> Result<(), PageError> {
        let best_attempt = options.best_attempt;
        if let Some(wait) = &options.wait_for_selector {
            let wanted = match (wait.visible, wait.hidden) {
                (_, true) => ElementState::Hidden,
                (true, false) => ElementState::Visible,
                (false, false) => ElementState::Attached,
            };
            let deadline = self.wait_deadline(wait.timeout_ms, best_attempt);
            let found = self
                .wait_for_element(&wait.selector, wanted, deadline)
                .await;
            best_effort(found, best_attempt, warnings)?;
        }
        if let Some(function) = &options.wait_for_function {
            let deadline = self.wait_deadline(function.timeout_ms, best_attempt);
            let truthy = self
                .poll_function(&function.expression, function.polling_ms, deadline)
                .await;
            best_effort(truthy, best_attempt, warnings)?;
        }
        if let Some(ms) = options.wait_ms {
            let asked = self.sub_deadline(Some(ms));
            let until = self.wait_deadline(Some(ms), best_attempt);
            tokio::time::sleep_until(until).await;
            if until < asked {
                let cut = PageError::Timeout {
                    step: "goto.wait_ms",
                };
                best_effort(Err::<(), _>(cut), best_attempt, warnings)?;
            }
        }
        Ok(())
    }

    /// Waits until `expression` is truthy in the page, evaluating it every `polling_ms` (100 by
    /// default) in the page itself.
    pub async fn wait_for_function(
        &self,
        expression: &str,
        polling_ms: Option<u64>,
        timeout_ms: Option<u64>,
    ) -> Result<(), PageError> {
        self.poll_function(expression, polling_ms, self.sub_deadline(timeout_ms))
            .await
    }

    async fn poll_function(
        &self,
        expression: &str,
        polling_ms: Option<u64>,
        deadline: Instant,
    ) -> Result<(), PageError> {
        // The expression is the caller's own JavaScript for their page: it is the point to run it.
        let script = format!(
            r#"new Promise((resolve, reject) => {{
                const check = () => {{
                    let value;
                    try {{ value = ({expression}
                    ); }} catch (error) {{ reject(error); return; }}
                    Promise.resolve(value).then(
                        value => value ? resolve(true) : setTimeout(check, {polling}),
                        reject);
                }};
                check();
            }})"#,
            polling = polling_ms.unwrap_or(100),
        );
        self.evaluate_until(&script, deadline, "wait for function")
            .await
            .map(|_| ())
    }

    /// Waits until an element matching `selector` is in `state`, watching DOM mutations in the page
    /// rather than polling from here.
    pub async fn wait_for_selector(
        &self,
        selector: &str,
        state: ElementState,
        timeout_ms: Option<u64>,
    ) -> Result<(), PageError> {
        self.wait_for_element(selector, state, self.sub_deadline(timeout_ms))
            .await
    }

    async fn wait_for_element(
        &self,
        selector: &str,
        wanted: ElementState,
        deadline: Instant,
    ) -> Result<(), PageError> {
        let (visible, hidden) = match wanted {
            ElementState::Attached => (false, false),
            ElementState::Visible => (true, false),
            ElementState::Hidden => (false, true),
        };
        let script = format!(
            r#"(() => {{
                const selector = {selector}, visible = {visible}, hidden = {hidden};
                const shown = element => {{
                    const box = element.getBoundingClientRect();
                    return box.width > 0 && box.height > 0 && getComputedStyle(element).visibility !== 'hidden';
                }};
                const found = () => {{
                    const element = document.querySelector(selector);
                    if (hidden) return !element || !shown(element);
                    if (!element) return false;
                    return !visible || shown(element);
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

    /// Subscribes to one kind of CDP event of this page.
    pub(super) async fn listen<T: IntoEventKind + Unpin>(
        &self,
        step: &'static str,
        deadline: Instant,
    ) -> Result<EventStream<T>, PageError> {
        self.step(step, deadline, self.cdp().event_listener::<T>())
            .await
    }
}

/// A wait's outcome under `best_attempt`: running out of time becomes a warning naming the wait,
/// anything else stands.
fn best_effort(
    waited: Result<impl Sized, PageError>,
    best_attempt: bool,
    warnings: &mut Vec<String>,
) -> Result<(), PageError> {
    match waited {
        Err(PageError::Timeout { step }) if best_attempt => {
            warnings.push(format!(
                "goto.best_attempt: `{step}` ran out of time; rendered what had loaded"
            ));
            Ok(())
        }
        Err(error) => Err(error),
        Ok(_) => Ok(()),
    }
}

/// Chromium's error text for a failed navigation, with what it means here where that is not
/// plain.
fn explained(error_text: &str) -> String {
    match error_text {
        "net::ERR_TUNNEL_CONNECTION_FAILED" => format!(
            "{error_text} (the egress proxy refused the connection under the server's egress \
             rules, or could not make it; its log says which)"
        ),
        "net::ERR_INVALID_AUTH_CREDENTIALS" => format!(
            "{error_text} (the site asks for HTTP authentication and got no credentials it \
             accepts: give page.authenticate, with \"scheme\": \"digest\" for a digest challenge)"
        ),
        _ => error_text.to_owned(),
    }
}

/// What [`Page::wait_for_selector`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementState {
    /// An element matches.
    Attached,
    /// An element matches and has a box that is not `visibility: hidden`.
    Visible,
    /// No matching element is visible.
    Hidden,
}

/// How long a navigation that is done by its lifecycle events may take to be done for chromiumoxide too
/// before the page is given up for reuse. Both come from the same event, so this is generous.
const NAVIGATION_SETTLE: std::time::Duration = std::time::Duration::from_millis(250);

/// The egress proxy's `refused; WHY` or `unreachable; WHY`, if it gave `response` in place of a
/// site.
fn egress_answer(response: &network::Response) -> Option<String> {
    response
        .headers
        .inner()
        .get(EGRESS_HEADER)
        .and_then(|value| value.as_str())
        .map(str::to_owned)
}

/// A URL as Chromium reports a request for it: parsed, and without its fragment.
fn without_fragment(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_fragment(None);
            parsed.into()
        }
        Err(_) => url.to_owned(),
    }
}
