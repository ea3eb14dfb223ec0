//! [`Page`]: the page a job runs on, with typed, Rust-shaped wrappers over the WIT `page` resource.

use serde::de::DeserializeOwned;

use crate::__private::bindings::pagewright::plugin::page as wit;
use crate::types::{
    Cookie, Element, ElementState, Error, FunctionWait, Geolocation, GotoOptions, MediaType,
    Navigation, PdfOptions, ScreenshotOptions, ScrollBy, ScrollTarget, Viewport,
};

/// The page leased to the job, borrowed for the length of one plugin call.
///
/// Every operation runs in the host under the job's deadline and returns [`Error::Timeout`] when the
/// deadline passes; errors carry the host's message.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    page: &'a wit::Page,
}

impl<'a> Page<'a> {
    pub(crate) fn new(page: &'a wit::Page) -> Self {
        Self { page }
    }

    /// The navigation the host made before calling the plugin, or the plugin's latest; `None` if the
    /// page has not navigated in this job.
    pub fn navigation(&self) -> Option<Navigation> {
        self.page.navigation()
    }

    /// Loads `url` and waits for its `load` event.
    pub fn goto(&self, url: &str) -> Result<Navigation, Error> {
        self.goto_with(url, &GotoOptions::default())
    }

    /// Loads `url`, waiting as `options` say.
    pub fn goto_with(&self, url: &str, options: &GotoOptions) -> Result<Navigation, Error> {
        self.page.goto(url, options)
    }

    /// Replaces the document with `html`.
    pub fn set_content(&self, html: &str) -> Result<Navigation, Error> {
        self.page.set_content(html, &GotoOptions::default())
    }

    /// Waits until an element matches `selector`.
    pub fn wait_for_selector(&self, selector: &str) -> Result<(), Error> {
        self.page
            .wait_for_selector(selector, ElementState::Attached, None)
    }

    /// Waits until an element matching `selector` is visible, for at most `timeout_ms` (within the
    /// job's deadline).
    pub fn wait_for_visible(&self, selector: &str, timeout_ms: Option<u32>) -> Result<(), Error> {
        self.page
            .wait_for_selector(selector, ElementState::Visible, timeout_ms)
    }

    /// Waits until no element matching `selector` is visible (a spinner gone, an overlay closed).
    pub fn wait_for_hidden(&self, selector: &str, timeout_ms: Option<u32>) -> Result<(), Error> {
        self.page
            .wait_for_selector(selector, ElementState::Hidden, timeout_ms)
    }

    /// Waits until the JavaScript `expression` is truthy in the page, checking every 100 ms.
    pub fn wait_for_function(
        &self,
        expression: &str,
        timeout_ms: Option<u32>,
    ) -> Result<(), Error> {
        self.page.wait_for_function(&FunctionWait {
            expression: expression.to_owned(),
            polling_ms: None,
            timeout_ms,
        })
    }

    /// Waits `ms` milliseconds. Waiting costs no fuel; spinning does.
    pub fn wait_for_timeout(&self, ms: u32) -> Result<(), Error> {
        self.page.wait_for_timeout(ms)
    }

    /// Evaluates a JavaScript expression (a promise is awaited) and parses its value.
    pub fn evaluate<T: DeserializeOwned>(&self, expression: &str) -> Result<T, Error> {
        let json = self.evaluate_json(expression)?;
        serde_json::from_str(&json).map_err(|error| {
            Error::failed(format!(
                "the value of `{expression}` has an unexpected shape: {error}"
            ))
        })
    }

    /// Evaluates a JavaScript expression and returns its value as JSON text.
    pub fn evaluate_json(&self, expression: &str) -> Result<String, Error> {
        self.page.evaluate(expression)
    }

    /// The document's HTML as it is now, doctype included.
    pub fn content(&self) -> Result<String, Error> {
        self.page.content()
    }

    /// The text a reader sees in the document body.
    pub fn text(&self) -> Result<String, Error> {
        self.evaluate("document.body ? document.body.innerText : ''")
    }

    /// Text and the named attributes of every element matching `selector`, in document order.
    pub fn query(&self, selector: &str, attributes: &[&str]) -> Result<Vec<Element>, Error> {
        let attributes: Vec<String> = attributes.iter().map(|&name| name.to_owned()).collect();
        self.page.query(selector, &attributes)
    }

    /// How many elements match `selector`.
    pub fn count(&self, selector: &str) -> Result<u32, Error> {
        self.page.count(selector)
    }

    /// Clicks the first element matching `selector`.
    pub fn click(&self, selector: &str) -> Result<(), Error> {
        self.page.click(selector)
    }

    /// Focuses the first element matching `selector` and types `text` into it.
    pub fn type_text(&self, selector: &str, text: &str) -> Result<(), Error> {
        self.page.type_text(selector, text)
    }

    /// Scrolls by `x`, `y` CSS pixels.
    pub fn scroll_by(&self, x: f64, y: f64) -> Result<(), Error> {
        self.page.scroll(&ScrollTarget::By(ScrollBy { x, y }))
    }

    /// Scrolls to the bottom of the document, to make lazy-loading pages load.
    pub fn scroll_to_bottom(&self) -> Result<(), Error> {
        self.page.scroll(&ScrollTarget::Bottom)
    }

    /// Scrolls until the first element matching `selector` is in view.
    pub fn scroll_to(&self, selector: &str) -> Result<(), Error> {
        self.page
            .scroll(&ScrollTarget::Selector(selector.to_owned()))
    }

    /// Resizes the viewport.
    pub fn set_viewport(&self, viewport: Viewport) -> Result<(), Error> {
        self.page.set_viewport(viewport)
    }

    /// Headers sent with every request the page makes from now on.
    pub fn set_extra_headers<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Result<(), Error> {
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        self.page.set_extra_headers(&headers)
    }

    /// Overrides the `User-Agent` of the page's requests.
    pub fn set_user_agent(&self, user_agent: &str) -> Result<(), Error> {
        self.page.set_user_agent(user_agent)
    }

    /// The page's clock in an IANA time zone, such as `Europe/Paris`.
    pub fn set_timezone(&self, timezone: &str) -> Result<(), Error> {
        self.page.set_timezone(timezone)
    }

    /// A BCP 47 locale, such as `fr-FR`, for `Intl`, `navigator.language` and `Accept-Language`.
    /// Set it after [`Page::set_user_agent`], which resets the language.
    pub fn set_locale(&self, locale: &str) -> Result<(), Error> {
        self.page.set_locale(locale)
    }

    /// The position `navigator.geolocation` reports; the page's origin may ask for it.
    pub fn set_geolocation(&self, latitude: f64, longitude: f64) -> Result<(), Error> {
        self.page.set_geolocation(Geolocation {
            latitude,
            longitude,
            accuracy: None,
        })
    }

    /// Touch events and `pointer: coarse`, as on a phone.
    pub fn set_touch(&self, enabled: bool) -> Result<(), Error> {
        self.page.set_touch(enabled)
    }

    /// The cookies visible to the page.
    pub fn cookies(&self) -> Result<Vec<Cookie>, Error> {
        self.page.cookies()
    }

    /// Sets cookies; those without `url` or `domain` are set for the page's current URL.
    pub fn set_cookies(&self, cookies: &[Cookie]) -> Result<(), Error> {
        self.page.set_cookies(cookies)
    }

    /// Emulates a CSS media type and media features, such as `("prefers-color-scheme", "dark")`.
    pub fn emulate_media<'f>(
        &self,
        media: Option<MediaType>,
        features: impl IntoIterator<Item = (&'f str, &'f str)>,
    ) -> Result<(), Error> {
        let features: Vec<(String, String)> = features
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        self.page.emulate_media(media, &features)
    }

    /// A screenshot in the format `options` ask for.
    pub fn screenshot(&self, options: &ScreenshotOptions) -> Result<Vec<u8>, Error> {
        self.page.screenshot(options)
    }

    /// The page printed to PDF.
    pub fn pdf(&self, options: &PdfOptions) -> Result<Vec<u8>, Error> {
        self.page.pdf(options)
    }
}
