//! The options of a job and of the page operations, as plain data: what a request body (or a plugin,
//! through the WIT `page` resource) says it wants. Every struct rejects unknown fields, so a typo is
//! a 400 naming the field instead of a silently ignored option.
//!
//! Range checks live in the `validate` methods. They run where options come from outside, once
//! each: when the API (or `pagewright render`) builds a job, and when a plugin hands the host a WIT
//! record. The page operations take options already checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An option out of its range, with a message that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOption(pub String);

/// When a navigation counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitUntil {
    /// The `load` event: the document and its subresources are in.
    #[default]
    Load,
    /// `DOMContentLoaded`: the document is parsed; images may still be loading.
    #[serde(alias = "dom_content_loaded")]
    DomContentLoaded,
    /// No network connections for 500 ms (Chromium's `networkIdle` lifecycle event).
    #[serde(alias = "network_idle")]
    NetworkIdle,
}

/// How to navigate and what to wait for before the output is taken.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GotoOptions {
    #[serde(default)]
    pub wait_until: WaitUntil,
    /// Navigation time budget in milliseconds; the job's own budget still applies.
    pub timeout_ms: Option<u64>,
    /// `Referer` header of the navigation.
    pub referrer: Option<String>,
    /// After navigating, wait until an element matching this CSS selector exists (or is visible,
    /// or is gone).
    pub wait_for_selector: Option<WaitForSelector>,
    /// Then wait until this JavaScript expression is truthy in the page.
    pub wait_for_function: Option<WaitForFunction>,
    /// Then wait this many milliseconds more (for animations, late scripts).
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForSelector {
    pub selector: String,
    /// Also wait until it has a non-empty box and is not `visibility: hidden`.
    #[serde(default)]
    pub visible: bool,
    /// Wait instead until no element matching it is visible (a spinner gone, an overlay closed).
    #[serde(default)]
    pub hidden: bool,
    pub timeout_ms: Option<u64>,
}

/// `goto.wait_for_function`: an expression evaluated in the page every `polling_ms` until it is
/// truthy (a promise counts by what it resolves to).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForFunction {
    pub expression: String,
    /// Milliseconds between evaluations (10-10000, default 100).
    pub polling_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

/// The longest fixed wait (`goto.wait_ms`): the longest a job may run.
pub const MAX_WAIT_MS: u64 = 120_000;
/// The longest `wait_for_function` expression.
const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

impl GotoOptions {
    /// Refuses waits that cannot mean anything, before any browser work.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if let Some(wait) = &self.wait_for_selector {
            if wait.selector.trim().is_empty() {
                return Err(InvalidOption(
                    "goto.wait_for_selector.selector may not be empty".into(),
                ));
            }
            if wait.visible && wait.hidden {
                return Err(InvalidOption(
                    "goto.wait_for_selector: `visible` and `hidden` exclude each other".into(),
                ));
            }
        }
        if let Some(function) = &self.wait_for_function {
            if function.expression.trim().is_empty()
                || function.expression.len() > MAX_EXPRESSION_BYTES
            {
                return Err(InvalidOption(format!(
                    "goto.wait_for_function.expression must be 1 to {MAX_EXPRESSION_BYTES} bytes of JavaScript"
                )));
            }
            if function
                .polling_ms
                .is_some_and(|ms| !(10..=10_000).contains(&ms))
            {
                return Err(InvalidOption(
                    "goto.wait_for_function.polling_ms must be 10-10000".into(),
                ));
            }
        }
        if self.wait_ms.is_some_and(|ms| ms > MAX_WAIT_MS) {
            return Err(InvalidOption(format!(
                "goto.wait_ms must be at most {MAX_WAIT_MS}"
            )));
        }
        Ok(())
    }
}

/// How the page is set up before it navigates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PageOptions {
    #[serde(default)]
    pub viewport: Viewport,
    /// Extra HTTP headers sent with every request of the page.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub user_agent: Option<String>,
    /// Cookies set before navigating; without `url` or `domain` they apply to the target URL.
    #[serde(default)]
    pub cookies: Vec<Cookie>,
    /// CSS media type to emulate.
    pub media: Option<MediaType>,
    /// CSS media features to emulate, e.g. `{"prefers-color-scheme": "dark"}`.
    #[serde(default)]
    pub media_features: BTreeMap<String, String>,
    /// Run the page's JavaScript.
    #[serde(default = "yes")]
    pub javascript: bool,
    /// Requests to fail before they leave the browser.
    #[serde(default)]
    pub block: BlockOptions,
    /// Jobs with the same key share a browser context (cookies, storage, cache); jobs with different
    /// keys never share anything. Defaults to one shared key.
    pub isolation_key: Option<String>,
    /// Clear the key's cookies and the target origin's storage before navigating.
    #[serde(default)]
    pub fresh_session: bool,
    /// Load pages whose TLS certificate does not verify (self-signed, expired, another name).
    /// Off: such a navigation fails, as a browser would refuse it.
    #[serde(default)]
    pub ignore_https_errors: bool,
}

fn yes() -> bool {
    true
}

impl Default for PageOptions {
    fn default() -> Self {
        Self {
            viewport: Viewport::default(),
            headers: BTreeMap::new(),
            user_agent: None,
            cookies: Vec::new(),
            media: None,
            media_features: BTreeMap::new(),
            javascript: true,
            block: BlockOptions::default(),
            isolation_key: None,
            fresh_session: false,
            ignore_https_errors: false,
        }
    }
}

/// Most extra headers a page may send, and their sizes (nginx's and Node's limits are 8 KiB a line).
const MAX_HEADERS: usize = 64;
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 8 * 1024;
/// The longest user agent: real ones are under 300 characters.
const MAX_USER_AGENT: usize = 1024;
/// The longest isolation key: keys are names, not data.
const MAX_ISOLATION_KEY: usize = 128;
/// The media features Chromium's `Emulation.setEmulatedMedia` emulates; it ignores any other name
/// without a word, so an unknown one is refused here instead.
const MEDIA_FEATURES: [&str; 7] = [
    "color-gamut",
    "forced-colors",
    "prefers-color-scheme",
    "prefers-contrast",
    "prefers-reduced-data",
    "prefers-reduced-motion",
    "prefers-reduced-transparency",
];

impl PageOptions {
    /// Checks what the page will be set up with, so that a value Chromium would refuse or
    /// misread (a header with a line break, an unknown media feature) is a 400 naming the field,
    /// not a failed job and a spoiled page.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        self.viewport.validate()?;
        check_headers(&self.headers)?;
        if let Some(user_agent) = &self.user_agent {
            check_user_agent(user_agent)?;
        }
        check_media_features(&self.media_features)?;
        if let Some(key) = &self.isolation_key
            && (key.is_empty()
                || key.len() > MAX_ISOLATION_KEY
                || !key
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:@/".contains(&byte)))
        {
            return Err(InvalidOption(format!(
                "page.isolation_key must be 1-{MAX_ISOLATION_KEY} of letters, digits and -_.:@/ \
                 (got {} characters)",
                key.chars().count()
            )));
        }
        Ok(())
    }
}

/// Extra headers a page may send: names that are HTTP tokens, values without line breaks, within
/// their sizes. For the request's `page.headers` and a plugin's `set-extra-headers` alike.
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), InvalidOption> {
    if headers.len() > MAX_HEADERS {
        return Err(InvalidOption(format!(
            "page.headers has {} headers; at most {MAX_HEADERS}",
            headers.len()
        )));
    }
    for (name, value) in headers {
        if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(is_token_byte) {
            return Err(InvalidOption(format!(
                "page.headers: `{}` is not a header name (1-{MAX_HEADER_NAME} of letters, digits \
                 and !#$%&'*+-.^_`|~)",
                shown(name).escape_debug()
            )));
        }
        check_header_value(&format!("page.headers.{name}"), value, MAX_HEADER_VALUE)?;
    }
    Ok(())
}

/// A user agent: a header value of at most [`MAX_USER_AGENT`] bytes.
pub fn check_user_agent(user_agent: &str) -> Result<(), InvalidOption> {
    check_header_value("page.user_agent", user_agent, MAX_USER_AGENT)
}

/// Media features Chromium emulates, each with a keyword value.
pub fn check_media_features(features: &BTreeMap<String, String>) -> Result<(), InvalidOption> {
    for (name, value) in features {
        if !MEDIA_FEATURES.contains(&name.as_str()) {
            return Err(InvalidOption(format!(
                "page.media_features: `{}` is not a media feature Chromium emulates; one of {}",
                shown(name).escape_debug(),
                MEDIA_FEATURES.join(", ")
            )));
        }
        if value.is_empty()
            || value.len() > 32
            || !value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        {
            return Err(InvalidOption(format!(
                "page.media_features.{name}: `{}` is not a media feature value (a keyword such as \
                 `dark` or `reduce`)",
                shown(value).escape_debug()
            )));
        }
    }
    Ok(())
}

/// An HTTP token character (RFC 9110's `tchar`): what a header name is made of.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A header value: visible characters, spaces and tabs, no line breaks or other controls (a CR or
/// LF would end the header line), at most `max` bytes.
fn check_header_value(field: &str, value: &str, max: usize) -> Result<(), InvalidOption> {
    if value.len() > max {
        return Err(InvalidOption(format!(
            "{field} is {} bytes; at most {max}",
            value.len()
        )));
    }
    if let Some(control) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(InvalidOption(format!(
            "{field} contains the control character {control:?}: header values cannot hold line \
             breaks or other controls"
        )));
    }
    Ok(())
}

/// At most the first 64 characters of a value, for an error message.
fn shown(value: &str) -> String {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push_str("...");
    }
    shown
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    #[serde(default = "one")]
    pub device_scale_factor: f64,
    #[serde(default)]
    pub mobile: bool,
}

fn one() -> f64 {
    1.0
}

impl Default for Viewport {
    /// 1280x720: the most common desktop viewport class, and what most render APIs default to.
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            device_scale_factor: 1.0,
            mobile: false,
        }
    }
}

/// Largest viewport side and screenshot side in CSS pixels: Chromium's compositor cannot capture
/// beyond 16384 px (a full-page capture of a longer page fails with "Unable to capture screenshot").
pub const MAX_PIXELS: u32 = 16_384;

impl Viewport {
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if !(1..=MAX_PIXELS).contains(&self.width) || !(1..=MAX_PIXELS).contains(&self.height) {
            return Err(InvalidOption(format!(
                "viewport width and height must be between 1 and {MAX_PIXELS}, got {}x{}",
                self.width, self.height
            )));
        }
        if !(0.1..=4.0).contains(&self.device_scale_factor) {
            return Err(InvalidOption(format!(
                "viewport.device_scale_factor must be between 0.1 and 4, got {}",
                self.device_scale_factor
            )));
        }
        // What Chromium captures is device pixels: the CSS size times the scale.
        let device = |side: u32| (f64::from(side) * self.device_scale_factor).ceil();
        let max = f64::from(MAX_PIXELS);
        if device(self.width) > max || device(self.height) > max {
            return Err(InvalidOption(format!(
                "viewport {}x{} at device_scale_factor {} is {}x{} device pixels; Chromium renders \
                 at most {MAX_PIXELS} on a side",
                self.width,
                self.height,
                self.device_scale_factor,
                device(self.width),
                device(self.height)
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub url: Option<String>,
    pub domain: Option<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default)]
    pub http_only: bool,
    pub same_site: Option<SameSite>,
    /// Expiry as seconds since the Unix epoch; a session cookie when absent.
    pub expires: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Screen,
    Print,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockOptions {
    /// Resource types to block, e.g. `["image", "font", "media"]`.
    #[serde(default)]
    pub resource_types: Vec<ResourceType>,
    /// URL patterns to block; `*` matches any run of characters, e.g. `*://ads.example.com/*`.
    #[serde(default)]
    pub url_patterns: Vec<String>,
}

impl BlockOptions {
    pub fn is_empty(&self) -> bool {
        self.resource_types.is_empty() && self.url_patterns.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Document,
    Stylesheet,
    Image,
    Media,
    Font,
    Script,
    Xhr,
    Fetch,
    Websocket,
    Manifest,
    Other,
}

/// Screenshot output.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenshotOptions {
    #[serde(default)]
    pub format: ImageFormat,
    /// 0-100, for `jpeg` and `webp` only.
    pub quality: Option<u8>,
    /// The whole scrollable page instead of the viewport.
    #[serde(default)]
    pub full_page: bool,
    /// A rectangle of the page in CSS pixels.
    pub clip: Option<Clip>,
    /// The box of the first element matching this CSS selector.
    pub selector: Option<String>,
    /// Transparent instead of white where the page has no background (`png` and `webp`).
    #[serde(default)]
    pub omit_background: bool,
}

impl ScreenshotOptions {
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let targets = [self.full_page, self.clip.is_some(), self.selector.is_some()];
        if targets.iter().filter(|&&set| set).count() > 1 {
            return Err(InvalidOption(
                "choose at most one of full_page, clip and selector".into(),
            ));
        }
        match (self.format, self.quality) {
            (ImageFormat::Png, Some(_)) => Err(InvalidOption(
                "quality applies to jpeg and webp only".into(),
            )),
            (_, Some(quality)) if quality > 100 => Err(InvalidOption(format!(
                "quality must be 0-100, got {quality}"
            ))),
            _ => Ok(()),
        }?;
        if let Some(clip) = &self.clip
            && ![clip.x, clip.y, clip.width, clip.height]
                .iter()
                .all(|value| value.is_finite())
        {
            return Err(InvalidOption("clip values must be finite numbers".into()));
        }
        if let Some(clip) = &self.clip
            && (clip.width <= 0.0
                || clip.height <= 0.0
                || clip.width > f64::from(MAX_PIXELS)
                || clip.height > f64::from(MAX_PIXELS))
        {
            return Err(InvalidOption(format!(
                "clip width and height must be above 0 and at most {MAX_PIXELS}"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    #[default]
    Png,
    #[serde(alias = "jpg")]
    Jpeg,
    Webp,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// PDF output.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PdfOptions {
    /// A named paper size; `width`/`height` override it. Letter when neither is given.
    pub paper: Option<PaperFormat>,
    pub width: Option<Length>,
    pub height: Option<Length>,
    #[serde(default)]
    pub landscape: bool,
    /// Print background colours and images.
    #[serde(default)]
    pub print_background: bool,
    /// 0.1-2.
    pub scale: Option<f64>,
    #[serde(default)]
    pub margin: Margins,
    /// e.g. `"1-5, 8, 11-13"`.
    pub page_ranges: Option<String>,
    /// HTML template for the header, with `date`, `title`, `url`, `pageNumber`, `totalPages` classes.
    pub header_template: Option<String>,
    pub footer_template: Option<String>,
    /// Use the page's CSS `@page` size over `paper`/`width`/`height`.
    #[serde(default)]
    pub prefer_css_page_size: bool,
}

impl PdfOptions {
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if let Some(scale) = self.scale
            && !(0.1..=2.0).contains(&scale)
        {
            return Err(InvalidOption(format!(
                "scale must be between 0.1 and 2, got {scale}"
            )));
        }
        for length in [self.width, self.height].into_iter().flatten() {
            if !(length.inches() > 0.0 && length.inches() <= 200.0) {
                return Err(InvalidOption(
                    "paper width and height must be above 0 and at most 200 inches".into(),
                ));
            }
        }
        for margin in [
            self.margin.top,
            self.margin.right,
            self.margin.bottom,
            self.margin.left,
        ]
        .into_iter()
        .flatten()
        {
            if !(margin.inches() >= 0.0 && margin.inches().is_finite()) {
                return Err(InvalidOption(
                    "margins must be finite and not negative".into(),
                ));
            }
        }
        Ok(())
    }

    /// Paper width and height in inches, before `landscape` is applied (Chromium swaps them).
    pub fn paper_inches(&self) -> (f64, f64) {
        let (width, height) = self.paper.unwrap_or(PaperFormat::Letter).inches();
        (
            self.width.map_or(width, Length::inches),
            self.height.map_or(height, Length::inches),
        )
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaperFormat {
    Letter,
    Legal,
    Tabloid,
    Ledger,
    A0,
    A1,
    A2,
    A3,
    A4,
    A5,
    A6,
}

impl PaperFormat {
    /// Width and height in inches (the sizes Chromium's and Puppeteer's print dialogs use).
    pub fn inches(self) -> (f64, f64) {
        match self {
            Self::Letter => (8.5, 11.0),
            Self::Legal => (8.5, 14.0),
            Self::Tabloid => (11.0, 17.0),
            Self::Ledger => (17.0, 11.0),
            Self::A0 => (33.1, 46.8),
            Self::A1 => (23.4, 33.1),
            Self::A2 => (16.54, 23.4),
            Self::A3 => (11.7, 16.54),
            Self::A4 => (8.27, 11.7),
            Self::A5 => (5.83, 8.27),
            Self::A6 => (4.13, 5.83),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Margins {
    pub top: Option<Length>,
    pub right: Option<Length>,
    pub bottom: Option<Length>,
    pub left: Option<Length>,
}

/// A print length: a number of inches, or a string with a unit: `"1in"`, `"2.5cm"`, `"10mm"`, `"96px"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Length(f64);

impl Length {
    pub fn from_inches(inches: f64) -> Self {
        Self(inches)
    }

    pub fn inches(self) -> f64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.trim().parse().map_err(|_| {
            format!("`{text}` is not a length such as \"1in\", \"2cm\", \"10mm\" or \"96px\"")
        })?;
        let per_inch = match unit {
            "" | "in" => 1.0,
            "cm" => 2.54,
            "mm" => 25.4,
            "px" => 96.0,
            _ => {
                return Err(format!(
                    "unknown length unit `{unit}` (use in, cm, mm or px)"
                ));
            }
        };
        Ok(Self(value / per_inch))
    }
}

impl<'de> Deserialize<'de> for Length {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Inches(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Inches(inches) => Ok(Self(inches)),
            Raw::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// HTML output.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentOptions {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_with_units() {
        assert_eq!(Length::parse("1in"), Ok(Length(1.0)));
        assert_eq!(Length::parse("2.54cm"), Ok(Length(1.0)));
        assert_eq!(Length::parse("25.4 mm"), Ok(Length(1.0)));
        assert_eq!(Length::parse("96px"), Ok(Length(1.0)));
        assert!(Length::parse("3furlongs").is_err());
        assert!(Length::parse("wide").is_err());
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = serde_json::from_str::<ScreenshotOptions>(r#"{"fullpage": true}"#)
            .expect_err("unknown field must fail");
        assert!(error.to_string().contains("fullpage"), "{error}");
    }

    #[test]
    fn screenshot_targets_are_exclusive() {
        let options = ScreenshotOptions {
            full_page: true,
            selector: Some("h1".into()),
            ..ScreenshotOptions::default()
        };
        assert!(options.validate().is_err());
    }

    /// Page options from JSON, checked: the error's message, or `None` when they pass.
    fn refusal(json: serde_json::Value) -> Option<String> {
        let options: PageOptions = serde_json::from_value(json).expect("page options parse");
        options.validate().err().map(|error| error.0)
    }

    #[test]
    fn page_settings_chromium_would_refuse_or_misread_are_refused_naming_the_field() {
        use serde_json::json;
        assert_eq!(
            refusal(
                json!({ "headers": { "x-ok": "a\tb", "Accept-Language": "fr" },
                            "user_agent": "bot/1.0 (+https://example.com)",
                            "media_features": { "prefers-color-scheme": "dark" },
                            "isolation_key": "tenant-a:session/1" })
            ),
            None
        );
        let cases = [
            (
                json!({ "headers": { "x-a": "1\r\nx-b: 2" } }),
                "page.headers.x-a",
            ),
            (json!({ "headers": { "bad name": "1" } }), "page.headers"),
            (json!({ "headers": { "": "1" } }), "page.headers"),
            (json!({ "user_agent": "bot\nx-evil: 1" }), "page.user_agent"),
            (json!({ "user_agent": "x".repeat(2000) }), "page.user_agent"),
            (
                json!({ "media_features": { "prefers-colour-scheme": "dark" } }),
                "page.media_features",
            ),
            (
                json!({ "media_features": { "prefers-color-scheme": "dark; x" } }),
                "prefers-color-scheme",
            ),
            (
                json!({ "isolation_key": "k".repeat(100_000) }),
                "page.isolation_key",
            ),
            (json!({ "isolation_key": "" }), "page.isolation_key"),
            (json!({ "isolation_key": "a b" }), "page.isolation_key"),
            (
                json!({ "viewport": { "width": 16384, "height": 16384, "device_scale_factor": 4 } }),
                "device pixels",
            ),
        ];
        for (options, named) in cases {
            let message = refusal(options.clone()).unwrap_or_else(|| panic!("{options} passed"));
            assert!(message.contains(named), "{options}: {message}");
        }
        let many: BTreeMap<String, String> =
            (0..65).map(|n| (format!("x-{n}"), "1".into())).collect();
        assert!(check_headers(&many).is_err());
    }
}
