//! The host side of the WIT `page` resource: each method converts its WIT arguments into the host's
//! option types, checks them, runs the [`crate::page`] operation on the job's leased page, and turns a
//! [`PageError`] into the guest-visible `error` (remembering the original, see
//! [`PluginState::last_page_error`]).
//!
//! A store holds at most one page, so the resource carries nothing: a handle only proves the plugin
//! was given the page. Calls without a page (init scripts, scorers, the bench's page-less extractor)
//! have no handle to call with, and a page-less extractor's handle answers every operation with
//! invalid-input.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::Resource;

use super::bindings::pagewright::plugin::page as wit;
use super::bindings::pagewright::plugin::types::{self, Error as WitError};
use super::state::PluginState;
use crate::job::options::{
    self, Clip, Cookie, Geolocation, GotoOptions, ImageFormat, Length, Margins, MediaType,
    PageOptions, PaperFormat, PdfMetadata, PdfOptions, SameSite, ScreenshotOptions, Viewport,
    WaitUntil,
};
use crate::page::{ElementState, Navigation, Page, PageError, ScrollTarget};

/// The `page` resource's host type; see the module docs.
#[derive(Debug)]
pub struct PageResource;

type Op<T> = wasmtime::Result<Result<T, WitError>>;

/// Distinct attribute names one `query` may ask for: far more than any extraction reads, few enough
/// that elements x names stays proportional to what Chromium sends.
const MAX_QUERY_ATTRIBUTES: usize = 64;

impl types::Host for PluginState {}
impl wit::Host for PluginState {}

impl PluginState {
    /// Runs `operation` on the job's page and records a failure for [`PluginState::last_page_error`].
    async fn on_page<T>(
        &mut self,
        operation: impl AsyncFnOnce(&Page<'_>) -> Result<T, PageError>,
    ) -> Result<T, WitError> {
        let Some(context) = self.page.as_ref() else {
            return Err(WitError::InvalidInput(
                "this call has no page to operate on".into(),
            ));
        };
        let page = context.lease.page(context.deadline);
        let result = operation(&page).await;
        result.map_err(|error| {
            if let Some(context) = self.page.as_mut() {
                if error.spoils_page() {
                    // Whatever the plugin does with the error (it may catch it and carry on), a
                    // page that timed out or failed in the browser is not handed to the next job.
                    context.lease.discard("failed");
                }
                if matches!(error, PageError::Timeout { .. }) && Instant::now() >= context.deadline
                {
                    self.page_ran_out_of_job_time = true;
                }
            }
            let visible = guest_error(&error);
            self.last_page_error = Some((message(&visible).to_owned(), error));
            visible
        })
    }

    /// A navigation (`goto`, `set-content`): checks the options, runs it, and remembers where the page
    /// went for `navigation()` and the response headers.
    async fn navigate(
        &mut self,
        options: wit::GotoOptions,
        navigation: impl AsyncFnOnce(&Page<'_>, &GotoOptions) -> Result<Navigation, PageError>,
    ) -> Result<wit::Navigation, WitError> {
        let options = goto_options(options)?;
        let navigated = self
            .on_page(async |page| navigation(page, &options).await)
            .await?;
        if let Some(context) = self.page.as_mut() {
            context.navigation = navigated.clone();
        }
        Ok(to_wit_navigation(&navigated))
    }
}

impl wit::HostPage for PluginState {
    async fn navigation(
        &mut self,
        _: Resource<PageResource>,
    ) -> wasmtime::Result<Option<wit::Navigation>> {
        Ok(self
            .page
            .as_ref()
            .map(|context| to_wit_navigation(&context.navigation)))
    }

    async fn goto(
        &mut self,
        _: Resource<PageResource>,
        url: String,
        options: wit::GotoOptions,
    ) -> Op<wit::Navigation> {
        // The plugin's navigations obey the same URL policy as the request's.
        let url = match self.url_policy.check(&url).await {
            Ok(url) => url.to_string(),
            Err(error) => return Ok(Err(WitError::InvalidInput(error.to_string()))),
        };
        Ok(self
            .navigate(options, async |page, options| {
                page.goto(&url, options).await
            })
            .await)
    }

    async fn set_content(
        &mut self,
        _: Resource<PageResource>,
        html: String,
        options: wit::GotoOptions,
    ) -> Op<wit::Navigation> {
        Ok(self
            .navigate(options, async |page, options| {
                page.set_html(&html, options).await
            })
            .await)
    }

    async fn wait_for_selector(
        &mut self,
        _: Resource<PageResource>,
        selector: String,
        state: wit::ElementState,
        timeout_ms: Option<u32>,
    ) -> Op<()> {
        let state = element_state(state);
        Ok(self
            .on_page(async |page| {
                page.wait_for_selector(&selector, state, timeout_ms.map(u64::from))
                    .await
            })
            .await)
    }

    async fn wait_for_function(
        &mut self,
        _: Resource<PageResource>,
        wait: wit::FunctionWait,
    ) -> Op<()> {
        let wait = options::WaitForFunction {
            expression: wait.expression,
            polling_ms: wait.polling_ms.map(u64::from),
            timeout_ms: wait.timeout_ms.map(u64::from),
        };
        let checked = GotoOptions {
            wait_for_function: Some(wait),
            ..GotoOptions::default()
        };
        if let Err(error) = checked.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        let Some(wait) = checked.wait_for_function else {
            unreachable!("set above");
        };
        Ok(self
            .on_page(async |page| {
                page.wait_for_function(&wait.expression, wait.polling_ms, wait.timeout_ms)
                    .await
            })
            .await)
    }

    async fn wait_for_timeout(&mut self, _: Resource<PageResource>, ms: u32) -> Op<()> {
        let Some(deadline) = self.page.as_ref().map(|context| context.deadline) else {
            return Ok(Err(WitError::InvalidInput("this call has no page".into())));
        };
        let until = Instant::now() + Duration::from_millis(u64::from(ms));
        if until > deadline {
            // Fail now rather than sleep through the rest of the job's budget.
            return Ok(Err(WitError::Timeout(format!(
                "waiting {ms} ms would pass the job's deadline"
            ))));
        }
        tokio::time::sleep_until(until).await;
        Ok(Ok(()))
    }

    async fn evaluate(&mut self, _: Resource<PageResource>, expression: String) -> Op<String> {
        Ok(self
            .on_page(async |page| page.evaluate(&expression).await)
            .await
            .map(|value| value.to_string()))
    }

    async fn content(&mut self, _: Resource<PageResource>) -> Op<String> {
        Ok(self.on_page(async |page| page.content().await).await)
    }

    async fn query(
        &mut self,
        _: Resource<PageResource>,
        selector: String,
        attributes: Vec<String>,
    ) -> Op<Vec<wit::Element>> {
        // Each name once: the answer is elements x names, and repeated names would multiply it in
        // the host without growing Chromium's reply.
        let mut unique: Vec<String> = Vec::with_capacity(attributes.len());
        for name in attributes {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        if unique.len() > MAX_QUERY_ATTRIBUTES {
            return Ok(Err(WitError::InvalidInput(format!(
                "ask for at most {MAX_QUERY_ATTRIBUTES} attributes, not {}",
                unique.len()
            ))));
        }
        let elements = self
            .on_page(async |page| page.query(&selector, &unique).await)
            .await;
        Ok(elements.map(|elements| {
            elements
                .into_iter()
                .map(|mut element| wit::Element {
                    tag_name: element.tag,
                    text: element.text,
                    // In the order asked for, as the WIT promises.
                    attributes: unique
                        .iter()
                        .map(|name| (name.clone(), element.attributes.remove(name).flatten()))
                        .collect(),
                })
                .collect()
        }))
    }

    async fn count(&mut self, _: Resource<PageResource>, selector: String) -> Op<u32> {
        Ok(self.on_page(async |page| page.count(&selector).await).await)
    }

    async fn click(&mut self, _: Resource<PageResource>, selector: String) -> Op<()> {
        Ok(self.on_page(async |page| page.click(&selector).await).await)
    }

    async fn type_text(
        &mut self,
        _: Resource<PageResource>,
        selector: String,
        text: String,
    ) -> Op<()> {
        Ok(self
            .on_page(async |page| page.type_text(&selector, &text).await)
            .await)
    }

    async fn scroll(&mut self, _: Resource<PageResource>, target: wit::ScrollTarget) -> Op<()> {
        if let wit::ScrollTarget::By(by) = &target
            && !(by.x.is_finite() && by.y.is_finite())
        {
            return Ok(Err(WitError::InvalidInput(
                "scroll by finite numbers".into(),
            )));
        }
        let target = match target {
            wit::ScrollTarget::By(by) => ScrollTarget::By { x: by.x, y: by.y },
            wit::ScrollTarget::Bottom => ScrollTarget::Bottom,
            wit::ScrollTarget::Selector(selector) => ScrollTarget::Selector(selector),
        };
        Ok(self.on_page(async |page| page.scroll(&target).await).await)
    }

    async fn set_viewport(&mut self, _: Resource<PageResource>, viewport: wit::Viewport) -> Op<()> {
        let viewport = Viewport {
            width: viewport.width,
            height: viewport.height,
            device_scale_factor: viewport.device_scale_factor,
            mobile: viewport.mobile,
        };
        if let Err(error) = viewport.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.set_viewport(&viewport).await)
            .await)
    }

    async fn set_extra_headers(
        &mut self,
        _: Resource<PageResource>,
        headers: Vec<(String, String)>,
    ) -> Op<()> {
        let headers: BTreeMap<String, String> = headers.into_iter().collect();
        if let Err(error) = options::check_headers(&headers) {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.set_extra_headers(&headers).await)
            .await)
    }

    async fn set_user_agent(&mut self, _: Resource<PageResource>, user_agent: String) -> Op<()> {
        if let Err(error) = options::check_user_agent(&user_agent) {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.set_user_agent(&user_agent).await)
            .await)
    }

    async fn set_timezone(&mut self, _: Resource<PageResource>, timezone: String) -> Op<()> {
        let checked = PageOptions {
            timezone: Some(timezone.clone()),
            ..PageOptions::default()
        };
        if let Err(error) = checked.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.set_timezone(&timezone).await)
            .await)
    }

    async fn set_locale(&mut self, _: Resource<PageResource>, locale: String) -> Op<()> {
        let checked = PageOptions {
            locale: Some(locale.clone()),
            ..PageOptions::default()
        };
        if let Err(error) = checked.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.emulate_locale(&locale).await)
            .await)
    }

    async fn set_geolocation(
        &mut self,
        _: Resource<PageResource>,
        position: wit::Geolocation,
    ) -> Op<()> {
        let position = Geolocation {
            latitude: position.latitude,
            longitude: position.longitude,
            accuracy: position.accuracy,
        };
        let checked = PageOptions {
            geolocation: Some(position),
            ..PageOptions::default()
        };
        if let Err(error) = checked.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        // The page's own origin may ask for it (every origin, on inline HTML).
        let origin = self.page.as_ref().and_then(|context| {
            url::Url::parse(&context.navigation.url)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .map(|url| url.origin().ascii_serialization())
        });
        Ok(self
            .on_page(async |page| page.set_geolocation(&position, origin.as_deref()).await)
            .await)
    }

    async fn set_touch(&mut self, _: Resource<PageResource>, enabled: bool) -> Op<()> {
        Ok(self
            .on_page(async |page| page.set_touch(enabled).await)
            .await)
    }

    async fn cookies(&mut self, _: Resource<PageResource>) -> Op<Vec<wit::Cookie>> {
        let cookies = self.on_page(async |page| page.cookies().await).await;
        Ok(cookies.map(|cookies| cookies.into_iter().map(to_wit_cookie).collect()))
    }

    async fn set_cookies(
        &mut self,
        _: Resource<PageResource>,
        cookies: Vec<wit::Cookie>,
    ) -> Op<()> {
        let cookies: Vec<Cookie> = match cookies.into_iter().map(from_wit_cookie).collect() {
            Ok(cookies) => cookies,
            Err(error) => return Ok(Err(error)),
        };
        let current = self
            .page
            .as_ref()
            .map(|context| context.navigation.url.clone());
        Ok(self
            .on_page(async |page| page.set_cookies(&cookies, current.as_deref()).await)
            .await)
    }

    async fn emulate_media(
        &mut self,
        _: Resource<PageResource>,
        media: Option<wit::MediaType>,
        features: Vec<(String, String)>,
    ) -> Op<()> {
        let media = media.map(|media| match media {
            wit::MediaType::Screen => MediaType::Screen,
            wit::MediaType::Print => MediaType::Print,
        });
        let features: BTreeMap<String, String> = features.into_iter().collect();
        if let Err(error) = options::check_media_features(&features) {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.emulate_media(media, &features).await)
            .await)
    }

    async fn screenshot(
        &mut self,
        _: Resource<PageResource>,
        options: wit::ScreenshotOptions,
    ) -> Op<Vec<u8>> {
        let options = ScreenshotOptions {
            format: match options.format {
                wit::ImageFormat::Png => ImageFormat::Png,
                wit::ImageFormat::Jpeg => ImageFormat::Jpeg,
                wit::ImageFormat::Webp => ImageFormat::Webp,
            },
            quality: options.quality,
            full_page: options.full_page,
            clip: options.clip.map(|clip| Clip {
                x: clip.x,
                y: clip.y,
                width: clip.width,
                height: clip.height,
            }),
            selector: options.selector,
            omit_background: options.omit_background,
            scale: options.scale,
            capture_beyond_viewport: options.capture_beyond_viewport,
            optimize_for_speed: options.optimize_for_speed,
        };
        if let Err(error) = options.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self
            .on_page(async |page| page.screenshot(&options).await)
            .await)
    }

    async fn pdf(&mut self, _: Resource<PageResource>, options: wit::PdfOptions) -> Op<Vec<u8>> {
        let options = PdfOptions {
            paper: options.paper.map(paper_format),
            width: options.width.map(Length::from_inches),
            height: options.height.map(Length::from_inches),
            landscape: options.landscape,
            print_background: options.print_background,
            scale: options.scale,
            margin: Margins {
                top: options.margin.top.map(Length::from_inches),
                right: options.margin.right.map(Length::from_inches),
                bottom: options.margin.bottom.map(Length::from_inches),
                left: options.margin.left.map(Length::from_inches),
            },
            page_ranges: options.page_ranges,
            header_template: options.header_template,
            footer_template: options.footer_template,
            prefer_css_page_size: options.prefer_css_page_size,
            outline: options.outline,
            tagged: options.tagged,
            omit_background: options.omit_background,
            metadata: options.metadata.map(|metadata| {
                Box::new(PdfMetadata {
                    title: metadata.title,
                    author: metadata.author,
                    subject: metadata.subject,
                    keywords: metadata.keywords,
                    creator: metadata.creator,
                    creation_date: metadata.creation_date,
                    modification_date: metadata.modification_date,
                })
            }),
        };
        if let Err(error) = options.validate() {
            return Ok(Err(WitError::InvalidInput(error.to_string())));
        }
        Ok(self.on_page(async |page| page.pdf(&options).await).await)
    }

    async fn drop(&mut self, page: Resource<PageResource>) -> wasmtime::Result<()> {
        self.table.delete(page)?;
        Ok(())
    }
}

/// The guest-visible form of a page error. Browser internals stay in the host's log.
pub(super) fn guest_error(error: &PageError) -> WitError {
    let message = error.to_string();
    match error {
        PageError::InvalidInput(_) => WitError::InvalidInput(message),
        PageError::Timeout { .. } => WitError::Timeout(message),
        PageError::Navigation { .. } | PageError::FailedOn { .. } => WitError::Navigation(message),
        PageError::NotFound(_) => WitError::NotFound(message),
        PageError::Script(_) => WitError::Script(message),
        PageError::TooLarge(_) => WitError::TooLarge(message),
        PageError::Crashed | PageError::BrowserGone { .. } => WitError::Crashed(message),
        PageError::Cdp { step, .. } => {
            WitError::Failed(format!("the browser failed during {step}"))
        }
    }
}

/// The message of any case of the WIT error.
pub(super) fn message(error: &WitError) -> &str {
    match error {
        WitError::InvalidInput(message)
        | WitError::Timeout(message)
        | WitError::Navigation(message)
        | WitError::NotFound(message)
        | WitError::Script(message)
        | WitError::TooLarge(message)
        | WitError::Crashed(message)
        | WitError::Failed(message) => message,
    }
}

fn goto_options(options: wit::GotoOptions) -> Result<GotoOptions, WitError> {
    if options.timeout_ms == Some(0) {
        return Err(WitError::InvalidInput("timeout_ms must be positive".into()));
    }
    let options = GotoOptions {
        wait_until: match options.wait_until {
            wit::WaitUntil::Load => WaitUntil::Load,
            wit::WaitUntil::DomContentLoaded => WaitUntil::DomContentLoaded,
            wit::WaitUntil::NetworkIdle => WaitUntil::NetworkIdle,
            wit::WaitUntil::NetworkAlmostIdle => WaitUntil::NetworkAlmostIdle,
        },
        timeout_ms: options.timeout_ms.map(u64::from),
        referrer: options.referrer,
        wait_for_selector: options
            .wait_for_selector
            .map(|wait| options::WaitForSelector {
                selector: wait.selector,
                visible: wait.state == wit::ElementState::Visible,
                hidden: wait.state == wit::ElementState::Hidden,
                timeout_ms: wait.timeout_ms.map(u64::from),
            }),
        wait_for_function: options
            .wait_for_function
            .map(|wait| options::WaitForFunction {
                expression: wait.expression,
                polling_ms: wait.polling_ms.map(u64::from),
                timeout_ms: wait.timeout_ms.map(u64::from),
            }),
        wait_ms: options.wait_ms.map(u64::from),
        best_attempt: options.best_attempt,
    };
    options
        .validate()
        .map_err(|error| WitError::InvalidInput(error.to_string()))?;
    Ok(options)
}

fn element_state(state: wit::ElementState) -> ElementState {
    match state {
        wit::ElementState::Attached => ElementState::Attached,
        wit::ElementState::Visible => ElementState::Visible,
        wit::ElementState::Hidden => ElementState::Hidden,
    }
}

fn to_wit_navigation(navigation: &Navigation) -> wit::Navigation {
    wit::Navigation {
        url: navigation.url.clone(),
        status: navigation.status,
        warnings: navigation.warnings.clone(),
    }
}

fn paper_format(paper: wit::PaperFormat) -> PaperFormat {
    match paper {
        wit::PaperFormat::Letter => PaperFormat::Letter,
        wit::PaperFormat::Legal => PaperFormat::Legal,
        wit::PaperFormat::Tabloid => PaperFormat::Tabloid,
        wit::PaperFormat::Ledger => PaperFormat::Ledger,
        wit::PaperFormat::A0 => PaperFormat::A0,
        wit::PaperFormat::A1 => PaperFormat::A1,
        wit::PaperFormat::A2 => PaperFormat::A2,
        wit::PaperFormat::A3 => PaperFormat::A3,
        wit::PaperFormat::A4 => PaperFormat::A4,
        wit::PaperFormat::A5 => PaperFormat::A5,
        wit::PaperFormat::A6 => PaperFormat::A6,
    }
}

fn from_wit_cookie(cookie: wit::Cookie) -> Result<Cookie, WitError> {
    if cookie.name.is_empty() {
        return Err(WitError::InvalidInput("a cookie needs a name".into()));
    }
    if cookie.expires.is_some_and(|expires| !expires.is_finite()) {
        return Err(WitError::InvalidInput(format!(
            "cookie `{}`: expires must be a finite number",
            cookie.name
        )));
    }
    if let Some(url) = &cookie.url
        && url::Url::parse(url).is_err()
    {
        return Err(WitError::InvalidInput(format!(
            "cookie `{}`: `{url}` is not a valid URL",
            cookie.name
        )));
    }
    Ok(Cookie {
        name: cookie.name,
        value: cookie.value,
        url: cookie.url,
        domain: cookie.domain,
        path: cookie.path,
        secure: cookie.secure,
        http_only: cookie.http_only,
        same_site: cookie.same_site.map(|same_site| match same_site {
            wit::SameSite::Strict => SameSite::Strict,
            wit::SameSite::Lax => SameSite::Lax,
            wit::SameSite::None => SameSite::None,
        }),
        expires: cookie.expires,
    })
}

fn to_wit_cookie(cookie: Cookie) -> wit::Cookie {
    wit::Cookie {
        name: cookie.name,
        value: cookie.value,
        url: cookie.url,
        domain: cookie.domain,
        path: cookie.path,
        secure: cookie.secure,
        http_only: cookie.http_only,
        same_site: cookie.same_site.map(|same_site| match same_site {
            SameSite::Strict => wit::SameSite::Strict,
            SameSite::Lax => wit::SameSite::Lax,
            SameSite::None => wit::SameSite::None,
        }),
        expires: cookie.expires,
    }
}
