//! The options of a job and of the page operations, as plain data: what a request body (or a plugin,
//! through the WIT `page` resource) says it wants. Every struct rejects unknown fields, so a typo is
//! a 400 naming the field instead of a silently ignored option.
//!
//! Range checks live in the `validate` methods. They run where options come from outside, once
//! each: when the API (or `pagewright render`) builds a job, and when a plugin hands the host a WIT
//! record. The page operations take options already checked.
//!
//! Each type also describes itself for the OpenAPI document (`utoipa::ToSchema`), so the document
//! is what the parser takes.

// utoipa's derive writes `Option<T>` fields' `T` qualified by this module in what it generates,
// which the workspace's `unused_qualifications` lint then reports against the fields.
#![allow(unused_qualifications)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

use crate::egress::Upstream;

/// An option out of its range, with a message that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOption(pub String);

/// When a navigation counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
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
    /// At most 2 network connections for 500 ms (`networkAlmostIdle`): for pages that keep a
    /// connection open (analytics beacons, long polling) and so never go idle.
    #[serde(alias = "network_almost_idle")]
    NetworkAlmostIdle,
}

/// How to navigate and what to wait for before the output is taken.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
    /// When a wait runs out of time, render what has loaded and say so (`x-pagewright-warnings`)
    /// instead of failing. The waits then end early enough to leave time for the output.
    #[serde(default)]
    pub best_attempt: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
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

/// When a page that loaded is a failure all the same ([`crate::job::Job::fail_on`]). Each is off
/// unless given.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailOn {
    /// Statuses of the target's document that fail the job (409) instead of rendering the error
    /// page: codes and ranges, `[404, "5xx", "400-403"]`.
    #[serde(default)]
    pub status: Vec<StatusRange>,
    /// Statuses of any subresource (a script, an image, a frame, a fetch) that fail the job.
    #[serde(default)]
    pub resource_status: Vec<StatusRange>,
    /// An exception the page's scripts throw and do not catch fails the job.
    #[serde(default)]
    pub console_exception: bool,
}

impl FailOn {
    pub fn is_empty(&self) -> bool {
        self.status.is_empty() && self.resource_status.is_empty() && !self.console_exception
    }
}

/// HTTP statuses from `low` to `high`, both in: `404`, `"404"`, `"4xx"` or `"500-504"`. Written
/// as `"low-high"`, so a stored job reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn contains(self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }

    /// Any of `ranges` holds `status`.
    pub fn any(ranges: &[Self], status: u16) -> bool {
        ranges.iter().any(|range| range.contains(status))
    }

    fn parse(text: &str) -> Option<Self> {
        let code = |text: &str| {
            text.trim()
                .parse::<u16>()
                .ok()
                .filter(|code| (100..=599).contains(code))
        };
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            let class = class
                .parse::<u16>()
                .ok()
                .filter(|class| (1..=5).contains(class))?;
            return Some(Self {
                low: class * 100,
                high: class * 100 + 99,
            });
        }
        match text.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (code(low)?, code(high)?);
                (low <= high).then_some(Self { low, high })
            }
            None => code(text).map(|code| Self {
                low: code,
                high: code,
            }),
        }
    }
}

impl utoipa::PartialSchema for StatusRange {
    fn schema() -> RefOr<Schema> {
        one_of(
            "An HTTP status (100-599), a class such as \"4xx\", or a range such as \"500-504\".",
            [
                ObjectBuilder::new().schema_type(Type::Integer).into(),
                string_like(&["404", "4xx", "500-504"]),
            ],
        )
    }
}

impl utoipa::ToSchema for StatusRange {}

impl Serialize for StatusRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}-{}", self.low, self.high))
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Code(code) => code.to_string(),
            Raw::Text(text) => text,
        };
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not an HTTP status (100-599), a class such as \"4xx\" or a range \
                 such as \"500-504\""
            ))
        })
    }
}

/// How the page is set up before it navigates.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageOptions {
    /// 1280x720 at scale 1 unless given (or set by `device`).
    pub viewport: Option<Viewport>,
    /// A named device: its viewport, scale, mobile and touch emulation and user agent in one word.
    /// `viewport` and `user_agent`, when given too, win over the preset's.
    pub device: Option<Device>,
    /// Extra HTTP headers, sent to the origins `headers_scope` names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Which requests get `headers`: the target's origin only (`"target"`, the default, so that an
    /// `Authorization` header never reaches a third party), every request (`"all"`), or a list of
    /// origins (`["https://api.example.com"]`).
    #[serde(default)]
    pub headers_scope: HeadersScope,
    /// HTTP basic authentication, sent to the target's origin only.
    pub authenticate: Option<Credentials>,
    /// An HTTP proxy the page's requests go through instead of the server's `--proxy`. Jobs with
    /// the same key and proxy share a browser context; another proxy is another context.
    pub proxy: Option<ProxyOption>,
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
    /// An IANA time zone for the page's clock (`"Europe/Paris"`).
    pub timezone: Option<String>,
    /// A BCP 47 locale for the page's `Intl`, `navigator.language` and `Accept-Language`
    /// (`"fr-FR"`).
    pub locale: Option<String>,
    /// The position `navigator.geolocation` reports; the target's origin is allowed to ask.
    pub geolocation: Option<Geolocation>,
    /// Emulate a touch screen (`ontouchstart`, `pointer: coarse`). Devices turn it on.
    pub touch: Option<bool>,
    /// Scripts added to the page without a plugin: before its own scripts, or once it has loaded.
    #[serde(default)]
    pub add_scripts: Vec<AddedScript>,
    /// Style sheets added once the page has loaded (before the output is taken).
    #[serde(default)]
    pub add_styles: Vec<AddedStyle>,
    /// Scroll to the bottom in steps and back before the output, so that lazily loaded content
    /// (images, infinite lists) is in: `true`, or `{"step_px", "delay_ms", "max_px"}`.
    #[serde(default, deserialize_with = "scroll_option")]
    pub scroll: Option<Scroll>,
}

fn yes() -> bool {
    true
}

impl Default for PageOptions {
    fn default() -> Self {
        Self {
            viewport: None,
            device: None,
            headers: BTreeMap::new(),
            headers_scope: HeadersScope::default(),
            authenticate: None,
            proxy: None,
            user_agent: None,
            cookies: Vec::new(),
            media: None,
            media_features: BTreeMap::new(),
            javascript: true,
            block: BlockOptions::default(),
            isolation_key: None,
            fresh_session: false,
            ignore_https_errors: false,
            timezone: None,
            locale: None,
            geolocation: None,
            touch: None,
            add_scripts: Vec::new(),
            add_styles: Vec::new(),
            scroll: None,
        }
    }
}

impl PageOptions {
    /// The viewport in force: the one given, else the device's, else 1280x720.
    pub fn viewport(&self) -> Viewport {
        self.viewport
            .or_else(|| self.device.map(|device| device.preset().viewport))
            .unwrap_or_default()
    }

    /// The user agent in force: the one given, else the device's, else Chromium's own.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent
            .as_deref()
            .or_else(|| self.device.and_then(|device| device.preset().user_agent))
    }

    /// Is touch emulated: as asked, else as the device has it.
    pub fn touch(&self) -> bool {
        self.touch
            .unwrap_or_else(|| self.device.is_some_and(|device| device.preset().touch))
    }
}

/// A named device ([`PageOptions::device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// An iPhone 15: 393x852 at 3x, Safari's user agent.
    Iphone,
    /// A Pixel 8: 412x915 at 2.625x, Chrome for Android's user agent.
    Android,
    /// An iPad Air: 820x1180 at 2x, Safari's user agent.
    Ipad,
    /// A laptop: 1366x768 at 1x.
    Laptop,
    /// A desktop: 1920x1080 at 1x.
    Desktop,
}

/// What a [`Device`] stands for.
#[derive(Debug, Clone, Copy)]
pub struct DevicePreset {
    pub viewport: Viewport,
    pub touch: bool,
    pub user_agent: Option<&'static str>,
}

impl Device {
    pub fn preset(self) -> DevicePreset {
        let viewport = |width, height, device_scale_factor, mobile| Viewport {
            width,
            height,
            device_scale_factor,
            mobile,
        };
        match self {
            Self::Iphone => DevicePreset {
                viewport: viewport(393, 852, 3.0, true),
                touch: true,
                user_agent: Some(
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                     (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                ),
            },
            Self::Android => DevicePreset {
                viewport: viewport(412, 915, 2.625, true),
                touch: true,
                user_agent: Some(
                    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like \
                     Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                ),
            },
            Self::Ipad => DevicePreset {
                viewport: viewport(820, 1180, 2.0, true),
                touch: true,
                user_agent: Some(
                    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, \
                     like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                ),
            },
            Self::Laptop => DevicePreset {
                viewport: viewport(1366, 768, 1.0, false),
                touch: false,
                user_agent: None,
            },
            Self::Desktop => DevicePreset {
                viewport: viewport(1920, 1080, 1.0, false),
                touch: false,
                user_agent: None,
            },
        }
    }
}

/// Which requests get a page's extra headers ([`PageOptions::headers_scope`]). Written as the
/// request writes it, so a stored job reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HeadersScope {
    /// The origin of the URL the job names (or of its `base_url`).
    #[default]
    Target,
    /// Every request the page makes, to any site.
    All,
    /// These origins (`scheme://host[:port]`).
    Origins(Vec<String>),
}

impl utoipa::PartialSchema for HeadersScope {
    fn schema() -> RefOr<Schema> {
        one_of(
            "\"target\" (the job's origin), \"all\", or a list of origins (`scheme://host[:port]`).",
            [
                string_like(&["target", "all"]),
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .into(),
            ],
        )
    }
}

impl utoipa::ToSchema for HeadersScope {}

impl Serialize for HeadersScope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Target => serializer.serialize_str("target"),
            Self::All => serializer.serialize_str("all"),
            Self::Origins(origins) => origins.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for HeadersScope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Origins(Vec<String>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Word(word) if word == "target" => Ok(Self::Target),
            Raw::Word(word) if word == "all" => Ok(Self::All),
            Raw::Word(word) => Err(serde::de::Error::custom(format!(
                "headers_scope `{word}` is not \"target\", \"all\" or a list of origins"
            ))),
            Raw::Origins(origins) => Ok(Self::Origins(origins)),
        }
    }
}

/// A user name and password ([`PageOptions::authenticate`]).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub scheme: AuthScheme,
}

impl Credentials {
    /// A short name for these credentials (a hash, not the password): what their context is keyed
    /// by.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\n{}", self.username, self.password));
        digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// How [`Credentials`] reach the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// Sent with every request to the target's origin, before any challenge.
    #[default]
    Basic,
    /// Given to Chromium with the navigation, which answers the target's challenge itself:
    /// digest (or basic) authentication, for the target's origin only.
    Digest,
}

/// `page.proxy`: `{"server": "http://host:port", "username", "password"}`.
#[derive(Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyOption {
    pub server: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl ProxyOption {
    pub fn upstream(&self) -> Result<Upstream, InvalidOption> {
        Upstream::parse(
            &self.server,
            self.username.as_deref(),
            self.password.as_deref(),
        )
        .map_err(|reason| InvalidOption(format!("page.proxy.server: {reason}")))
    }
}

/// The password stays out of logs.
impl std::fmt::Debug for ProxyOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyOption")
            .field(
                "server",
                &self.upstream().map(|upstream| upstream.to_string()).ok(),
            )
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A crawl's rules (`POST /v1/crawls`, `crawl`): which links its pages follow.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrawlOptions {
    /// Links followed from the start page, at most (0: the start page, and the sitemap's pages).
    #[serde(default = "CrawlOptions::default_depth")]
    pub max_depth: u32,
    /// Pages in all, the start page included.
    #[serde(default = "CrawlOptions::default_pages")]
    pub max_pages: u32,
    /// Regular expressions; a URL must match one of them (when there are any) ...
    #[serde(default)]
    pub include: Vec<String>,
    /// ... and none of these.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Only links to the start page's origin (the default).
    #[serde(default = "yes")]
    pub same_origin: bool,
    /// Also take the pages the start origin's sitemap lists (`/sitemap.xml`, and the sitemaps its
    /// robots.txt names).
    #[serde(default)]
    pub sitemap: bool,
    /// Skip what the sites' robots.txt disallow for pagewright (the default).
    #[serde(default = "yes")]
    pub robots: bool,
}

impl CrawlOptions {
    pub const MAX_DEPTH: u32 = 10;
    pub const MAX_PAGES: u32 = 10_000;
    const MAX_PATTERNS: usize = 32;

    fn default_depth() -> u32 {
        1
    }

    fn default_pages() -> u32 {
        100
    }

    pub fn validate(&self) -> Result<(), InvalidOption> {
        if self.max_depth > Self::MAX_DEPTH {
            return Err(InvalidOption(format!(
                "crawl.max_depth must be at most {}, got {}",
                Self::MAX_DEPTH,
                self.max_depth
            )));
        }
        if !(1..=Self::MAX_PAGES).contains(&self.max_pages) {
            return Err(InvalidOption(format!(
                "crawl.max_pages must be 1 to {}, got {}",
                Self::MAX_PAGES,
                self.max_pages
            )));
        }
        if self.include.len() + self.exclude.len() > Self::MAX_PATTERNS {
            return Err(InvalidOption(format!(
                "crawl.include and crawl.exclude take {} patterns at most",
                Self::MAX_PATTERNS
            )));
        }
        self.patterns().map(|_| ())
    }

    /// The include and exclude patterns, compiled.
    pub fn patterns(&self) -> Result<(Vec<regex::Regex>, Vec<regex::Regex>), InvalidOption> {
        let compile = |field: &str, patterns: &[String]| {
            patterns
                .iter()
                .enumerate()
                .map(|(index, pattern)| {
                    regex::RegexBuilder::new(pattern)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|error| {
                            InvalidOption(format!(
                                "crawl.{field}[{index}] is not a regular expression: {error}"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok((
            compile("include", &self.include)?,
            compile("exclude", &self.exclude)?,
        ))
    }
}

/// A position ([`PageOptions::geolocation`]).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Geolocation {
    pub latitude: f64,
    pub longitude: f64,
    /// Metres; 10 when not given.
    pub accuracy: Option<f64>,
}

/// A script added to the page ([`PageOptions::add_scripts`]): its source or its URL.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddedScript {
    pub content: Option<String>,
    pub url: Option<String>,
    /// `"load"` (the default): once the page has loaded, before the output. `"start"`: in every
    /// document before the page's own scripts (content only: a URL cannot load that early).
    #[serde(default)]
    pub at: ScriptTime,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScriptTime {
    Start,
    #[default]
    Load,
}

/// A style sheet added to the page ([`PageOptions::add_styles`]): its CSS or its URL.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddedStyle {
    pub content: Option<String>,
    pub url: Option<String>,
}

/// How [`PageOptions::scroll`] goes through the page.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scroll {
    /// Pixels per step; the viewport's height when not given.
    pub step_px: Option<u32>,
    /// Pause after each step, for what it triggers to load (default 100).
    #[serde(default = "scroll_delay")]
    pub delay_ms: u32,
    /// Stop this far down, for pages that never end (default 20000).
    #[serde(default = "scroll_max")]
    pub max_px: u32,
}

fn scroll_delay() -> u32 {
    100
}

fn scroll_max() -> u32 {
    20_000
}

impl Default for Scroll {
    fn default() -> Self {
        Self {
            step_px: None,
            delay_ms: scroll_delay(),
            max_px: scroll_max(),
        }
    }
}

/// `scroll`: `true` (the defaults), `false`, or the options.
fn scroll_option<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Scroll>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Bool(on) => Ok(on.then(Scroll::default)),
        serde_json::Value::Null => Ok(None),
        options => serde_json::from_value(options)
            .map(Some)
            .map_err(serde::de::Error::custom),
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
        self.viewport().validate()?;
        check_headers(&self.headers)?;
        if let HeadersScope::Origins(origins) = &self.headers_scope {
            for origin in origins {
                check_origin(origin)?;
            }
        }
        if let Some(credentials) = &self.authenticate {
            if credentials.username.contains(':') {
                return Err(InvalidOption(
                    "page.authenticate.username cannot contain `:` (HTTP basic authentication \
                     separates the name from the password with it)"
                        .into(),
                ));
            }
            if self
                .headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case("authorization"))
            {
                return Err(InvalidOption(
                    "give page.authenticate or an Authorization header in page.headers, not both"
                        .into(),
                ));
            }
        }
        if let Some(user_agent) = &self.user_agent {
            check_user_agent(user_agent)?;
        }
        if let Some(proxy) = &self.proxy {
            proxy.upstream()?;
        }
        check_media_features(&self.media_features)?;
        if let Some(timezone) = &self.timezone
            && (timezone.is_empty()
                || timezone.len() > 64
                || !timezone
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"/_-+".contains(&byte)))
        {
            return Err(InvalidOption(format!(
                "page.timezone `{}` is not an IANA time zone name such as `Europe/Paris`",
                shown(timezone).escape_debug()
            )));
        }
        if let Some(locale) = &self.locale
            && (locale.is_empty()
                || locale.len() > 35
                || !locale
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'))
        {
            return Err(InvalidOption(format!(
                "page.locale `{}` is not a BCP 47 locale such as `fr-FR`",
                shown(locale).escape_debug()
            )));
        }
        if let Some(position) = &self.geolocation
            && !((-90.0..=90.0).contains(&position.latitude)
                && (-180.0..=180.0).contains(&position.longitude)
                && position
                    .accuracy
                    .is_none_or(|accuracy| accuracy.is_finite() && accuracy >= 0.0))
        {
            return Err(InvalidOption(
                "page.geolocation: latitude must be -90 to 90, longitude -180 to 180, accuracy \
                 a number of metres of at least 0"
                    .into(),
            ));
        }
        if self.add_scripts.len() + self.add_styles.len() > MAX_ADDED {
            return Err(InvalidOption(format!(
                "page.add_scripts and page.add_styles hold at most {MAX_ADDED} entries together"
            )));
        }
        for (index, script) in self.add_scripts.iter().enumerate() {
            let field = format!("page.add_scripts[{index}]");
            check_added(&field, script.content.as_deref(), script.url.as_deref())?;
            if script.at == ScriptTime::Start && script.url.is_some() {
                return Err(InvalidOption(format!(
                    "{field}: a script by `url` can only be added once the page has loaded \
                     (`\"at\": \"load\"`); give its `content` to run it before the page's own \
                     scripts"
                )));
            }
        }
        for (index, style) in self.add_styles.iter().enumerate() {
            check_added(
                &format!("page.add_styles[{index}]"),
                style.content.as_deref(),
                style.url.as_deref(),
            )?;
        }
        if let Some(scroll) = &self.scroll
            && (scroll
                .step_px
                .is_some_and(|step| !(50..=MAX_PIXELS).contains(&step))
                || scroll.delay_ms > 5_000
                || !(1..=200_000).contains(&scroll.max_px))
        {
            return Err(InvalidOption(format!(
                "page.scroll: step_px must be 50-{MAX_PIXELS}, delay_ms at most 5000 and max_px \
                 1-200000"
            )));
        }
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

/// The most scripts and style sheets a job may add, and the largest one.
const MAX_ADDED: usize = 32;
const MAX_ADDED_BYTES: usize = 1024 * 1024;

/// An added script or style sheet: exactly one of `content` and an http(s) `url`.
fn check_added(field: &str, content: Option<&str>, url: Option<&str>) -> Result<(), InvalidOption> {
    match (content, url) {
        (Some(content), None) if content.len() <= MAX_ADDED_BYTES => Ok(()),
        (Some(_), None) => Err(InvalidOption(format!(
            "{field}.content is larger than {MAX_ADDED_BYTES} bytes"
        ))),
        (None, Some(url)) => match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
            _ => Err(InvalidOption(format!(
                "{field}.url `{}` is not an http or https URL",
                shown(url).escape_debug()
            ))),
        },
        _ => Err(InvalidOption(format!(
            "{field} needs exactly one of `content` and `url`"
        ))),
    }
}

/// An origin as a browser spells it: `scheme://host[:port]`, nothing after.
fn check_origin(origin: &str) -> Result<(), InvalidOption> {
    let refused = || {
        InvalidOption(format!(
            "page.headers_scope: `{}` is not an origin such as `https://api.example.com`",
            shown(origin).escape_debug()
        ))
    };
    let parsed = url::Url::parse(origin).map_err(|_| refused())?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.origin().ascii_serialization() != origin.trim_end_matches('/')
    {
        return Err(refused());
    }
    Ok(())
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

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Screen,
    Print,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
    /// Image pixels per CSS pixel, 0.1-4, whatever the viewport's `device_scale_factor` (by default
    /// the image has the viewport's).
    pub scale: Option<f64>,
    /// For `clip` and `selector`: capture what lies outside the viewport as laid out (the default).
    /// `false` scrolls a `selector` into view first and captures it as it is seen there, fixed
    /// headers and all.
    pub capture_beyond_viewport: Option<bool>,
    /// Faster PNG encoding for a larger file.
    #[serde(default)]
    pub optimize_for_speed: bool,
}

impl ScreenshotOptions {
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if let Some(scale) = self.scale
            && !(0.1..=4.0).contains(&scale)
        {
            return Err(InvalidOption(format!(
                "scale must be between 0.1 and 4, got {scale}"
            )));
        }
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// PDF output.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
    /// A document outline (bookmarks) from the page's headings; implies `tagged`.
    #[serde(default)]
    pub outline: bool,
    /// A tagged (accessible) PDF, with the document's structure.
    #[serde(default)]
    pub tagged: bool,
    /// No white page background where the page sets none.
    #[serde(default)]
    pub omit_background: bool,
    /// The document information; Chromium's title (the page's) and dates stay where not given.
    pub metadata: Option<Box<PdfMetadata>>,
}

/// `pdf.metadata`: what PDF readers show in a document's properties.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PdfMetadata {
    pub title: Option<String>,
    pub author: Option<String>,
    pub subject: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The application that made the original (Chromium's name by default).
    pub creator: Option<String>,
    /// RFC 3339, such as `"2026-12-05T10:00:00Z"`.
    pub creation_date: Option<String>,
    pub modification_date: Option<String>,
}

impl PdfMetadata {
    /// Longest text field: a title or keyword list far beyond any reader's display.
    const MAX_FIELD: usize = 4096;

    pub fn validate(&self) -> Result<(), InvalidOption> {
        let texts = [&self.title, &self.author, &self.subject, &self.creator];
        let keywords = self.keywords.iter().map(String::len).sum::<usize>();
        if texts
            .iter()
            .flat_map(|text| text.as_deref())
            .any(|text| text.len() > Self::MAX_FIELD)
            || keywords > Self::MAX_FIELD
        {
            return Err(InvalidOption(format!(
                "metadata fields must be at most {} bytes each",
                Self::MAX_FIELD
            )));
        }
        for (field, date) in [
            ("creation_date", &self.creation_date),
            ("modification_date", &self.modification_date),
        ] {
            if let Some(date) = date {
                pdf_date(date).map_err(|reason| {
                    InvalidOption(format!("metadata.{field}: `{date}` {reason}"))
                })?;
            }
        }
        Ok(())
    }
}

/// A PDF date (`D:YYYYMMDDHHmmSSZ`) from an RFC 3339 date-time in UTC.
pub fn pdf_date(rfc3339: &str) -> Result<String, String> {
    let time = humantime::parse_rfc3339_weak(rfc3339)
        .map_err(|_| "is not an RFC 3339 date-time in UTC, such as 2026-12-05T10:00:00Z")?;
    let digits: String = humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    Ok(format!("D:{digits}Z"))
}

impl PdfOptions {
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if let Some(metadata) = &self.metadata {
            metadata.validate()?;
        }
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
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

impl utoipa::PartialSchema for Length {
    fn schema() -> RefOr<Schema> {
        one_of(
            "A number of inches, or a string with a unit: in, cm, mm or px.",
            [
                ObjectBuilder::new().schema_type(Type::Number).into(),
                string_like(&["1in", "2.5cm", "10mm", "96px"]),
            ],
        )
    }
}

impl utoipa::ToSchema for Length {}

/// The schema of a value a request may write in several forms.
fn one_of<const N: usize>(description: &str, forms: [Schema; N]) -> RefOr<Schema> {
    let mut schema = OneOfBuilder::new().description(Some(description));
    for form in forms {
        schema = schema.item(form);
    }
    Schema::OneOf(schema.build()).into()
}

/// A string, with examples of it.
fn string_like(examples: &[&str]) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .examples(examples.iter().map(|example| serde_json::json!(example)))
        .into()
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

/// The `debug` output: what the page did, as JSON with a HAR log of its requests.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebugOptions {
    /// Include response bodies (text, or base64 for binary ones), each cut at `max_body_bytes`.
    #[serde(default)]
    pub bodies: bool,
    /// The most of one body kept: 64 KiB unless given, at most 1 MiB.
    pub max_body_bytes: Option<usize>,
}

impl DebugOptions {
    const MAX_BODY_BYTES: usize = 1 << 20;

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
            .unwrap_or(64 << 10)
            .min(Self::MAX_BODY_BYTES)
    }

    /// The most of all bodies together: 8 MiB.
    pub fn max_total_body_bytes(&self) -> usize {
        8 << 20
    }

    pub fn validate(&self) -> Result<(), InvalidOption> {
        if self
            .max_body_bytes
            .is_some_and(|bytes| bytes == 0 || bytes > Self::MAX_BODY_BYTES)
        {
            return Err(InvalidOption(format!(
                "max_body_bytes must be 1-{}",
                Self::MAX_BODY_BYTES
            )));
        }
        Ok(())
    }
}

/// HTML output.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
