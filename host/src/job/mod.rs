//! job: what one render job is, as plain values. The API (or `pagewright render`) builds a [`Job`]
//! from a request; it then goes down the job's path unchanged: the scheduler reads its tenant,
//! class and budgets, the executor its target, options and output, the plugin host its plugins.
//! What it produced comes back as [`Produced`]. Nothing here does I/O or uses the rest of the
//! crate.
//!
//! `options.rs` holds the page and output options, with their range checks.

pub mod options;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use options::{
    AuthScheme, FailOn, GotoOptions, InvalidOption, PageOptions, PdfOptions, ProxyOption,
    ScreenshotOptions,
};

/// The isolation key of jobs that do not name one.
pub const DEFAULT_ISOLATION_KEY: &str = "default";

/// What ends the isolation key of a job with its own proxy, before the proxy's id.
const PROXY_ROUTE: &str = "#via-";

/// The id of the proxy (an [`Upstream::id`](crate::egress::Upstream::id)) the contexts of an
/// isolation key go through, if the key's jobs named one.
pub fn proxy_route(isolation_key: &str) -> Option<&str> {
    isolation_key.rsplit_once(PROXY_ROUTE).map(|(_, id)| id)
}

/// The tenant of jobs that do not name one.
pub const DEFAULT_TENANT: &str = "default";

/// A checked job, ready to be queued. It serializes (as JSON) for the store: an async job is kept
/// there until a host runs it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// Unique within the server's life ([`next_id`]); plugin log lines carry it. A job read back
    /// from the store gets a new one.
    #[serde(skip, default = "next_id")]
    pub id: u64,
    pub target: Target,
    pub goto: GotoOptions,
    pub page: PageOptions,
    /// When a page that loaded fails the job all the same.
    #[serde(default)]
    pub fail_on: FailOn,
    /// For an `html` target: the URL its document is served at (from memory), and the files
    /// served beside it. Without it the document is written into `about:blank`.
    #[serde(default)]
    pub html_base: Option<HtmlBase>,
    /// Page-script plugins: their init scripts go in before navigation, their after-load hooks run
    /// before the output, in this order.
    pub scripts: Vec<PluginCall>,
    pub output: Output,
    /// Who the job is for: tenants take turns for run slots.
    pub tenant: Arc<str>,
    /// The tenant whose isolation keys the job's key is one of, where tenants are authenticated
    /// (`--tokens-file`): another tenant naming the same key gets another context.
    #[serde(default)]
    pub key_scope: Option<Arc<str>>,
    pub class: Class,
    /// Moves the job within its class: -50..=50.
    pub number: i8,
    /// The run budget. It starts when the job leaves the queue.
    pub timeout: Duration,
    /// How long the job may wait in the queue for a run slot.
    pub queue_timeout: Duration,
    /// When the request arrived: the queue budget and a scorer's view of the job's age start here.
    /// A job read back from the store sets it from its stored submission time.
    #[serde(skip, default = "Instant::now")]
    pub received_at: Instant,
    /// A page of a crawl: the executor also collects the page's links, and the jobs layer follows
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crawl: Option<CrawlPage>,
    /// The W3C `traceparent` of the request that stored the job, so its run (later, maybe on
    /// another host) continues the caller's trace; none for a job run at once, which runs inside
    /// the request's span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Where a crawl's page is: its crawl (a batch) and how many links from the start it was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrawlPage {
    pub batch: String,
    pub depth: u32,
}

impl Job {
    /// A hot job of the default tenant for `target`, producing `output` with default page options.
    pub fn new(target: Target, output: Output, timeout: Duration, queue_timeout: Duration) -> Self {
        Self {
            id: next_id(),
            target,
            goto: GotoOptions::default(),
            page: PageOptions::default(),
            fail_on: FailOn::default(),
            html_base: None,
            scripts: Vec::new(),
            output,
            tenant: Arc::from(DEFAULT_TENANT),
            key_scope: None,
            class: Class::Hot,
            number: 0,
            timeout,
            queue_timeout,
            received_at: Instant::now(),
            crawl: None,
            traceparent: None,
        }
    }

    /// The pages the job may run on: jobs of one key share a browser context, jobs of different
    /// keys never share anything. A job with its own proxy gets a context of that proxy's
    /// (`#via-ID`, [`proxy_route`]). A job that accepts certificates that do not verify gets its key's
    /// insecure twin: Chromium reuses a context's open connections, and one it made while errors
    /// were ignored must never carry a job that verifies. (`#` is not allowed in a caller's key.)
    pub fn isolation_key(&self) -> Cow<'_, str> {
        let key = self
            .page
            .isolation_key
            .as_deref()
            .unwrap_or(DEFAULT_ISOLATION_KEY);
        // A tenant's keys are its own (`~` is not allowed in a caller's key either).
        let key = match &self.key_scope {
            Some(tenant) => Cow::Owned(format!("{tenant}~{key}")),
            None => Cow::Borrowed(key),
        };
        let key = if self.page.ignore_https_errors {
            Cow::Owned(format!("{key}#insecure"))
        } else {
            key
        };
        // Chromium keeps the credentials it answered a challenge with in the context's auth cache:
        // jobs that give none (or others) must not ride on them.
        let key = match &self.page.authenticate {
            Some(credentials) if credentials.scheme == AuthScheme::Digest => {
                Cow::Owned(format!("{key}#auth-{}", credentials.id()))
            }
            _ => key,
        };
        // Chromium sets a context's proxy when it creates it: another proxy is another context.
        match self.page.proxy.as_ref().map(ProxyOption::upstream) {
            Some(Ok(upstream)) => Cow::Owned(format!("{key}{PROXY_ROUTE}{}", upstream.id())),
            _ => key,
        }
    }

    /// The page's URL, `about:blank` for inline HTML or no page: what a scorer and the statistics
    /// see.
    pub fn url(&self) -> &str {
        match &self.target {
            Target::Url(url) => url,
            Target::Html(_) | Target::NoPage => "about:blank",
        }
    }

    /// When the job must have left the queue.
    pub fn queue_deadline(&self) -> Instant {
        self.received_at + self.queue_timeout
    }

    /// The extractor's name, if a plugin produces the output.
    pub fn extractor(&self) -> Option<&str> {
        match &self.output {
            Output::Plugin(call) => Some(&call.plugin.name),
            Output::Native(_) => None,
        }
    }

    /// Checks the options' ranges, so a bad one is refused before any browser work.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        self.page.validate()?;
        self.goto.validate()?;
        if !matches!(self.target, Target::Url(_)) && self.html_base.is_none() {
            // Inline HTML has no origin of its own for target-scoped credentials to go to.
            if !self.page.headers.is_empty()
                && self.page.headers_scope == options::HeadersScope::Target
            {
                return Err(InvalidOption(
                    "page.headers go to the target's origin, and inline `html` has none: give \
                     a `base_url`, or set page.headers_scope to \"all\" or a list of origins"
                        .into(),
                ));
            }
            if self.page.authenticate.is_some() {
                return Err(InvalidOption(
                    "page.authenticate sends credentials to the target's origin, and inline \
                     `html` has none"
                        .into(),
                ));
            }
        }
        if matches!(self.target, Target::NoPage) {
            if !matches!(self.output, Output::Plugin(_)) {
                return Err(InvalidOption(
                    "only an extractor plugin runs without a page".into(),
                ));
            }
            if !self.scripts.is_empty() {
                return Err(InvalidOption(
                    "page scripts need a page: give `url` or `html`".into(),
                ));
            }
        }
        match &self.output {
            Output::Plugin(_) | Output::Native(NativeOutput::Content) => Ok(()),
            Output::Native(NativeOutput::Debug(options)) => options.validate(),
            Output::Native(NativeOutput::Screenshot(options)) => options.validate(),
            Output::Native(NativeOutput::Pdf(options)) => options.validate(),
        }
    }
}

/// A fresh job id, unique in this process.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The origin an uploaded document is served at when the request names none: `.invalid` is never
/// a real host, and every request to it is answered from the upload (a file it lacks is a 404).
pub const UPLOAD_ORIGIN: &str = "http://pagewright.invalid";

/// Where an `html` job's document is served, and what is served beside it ([`Job::html_base`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HtmlBase {
    /// The document's URL: its relative links resolve against it, and it has that origin's
    /// cookies and storage.
    pub url: String,
    /// Files served at their paths relative to `url`, from memory.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

impl HtmlBase {
    /// Is this the made-up origin of an upload, all of whose requests are answered from memory?
    pub fn is_upload_origin(&self) -> bool {
        self.url.starts_with(UPLOAD_ORIGIN)
    }
}

/// A file served beside an `html` job's document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Asset {
    /// Relative to the document's URL: `style.css`, `img/logo.png`.
    pub path: String,
    pub content_type: String,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// Bytes as a base64 string in a stored job, not a JSON array of numbers.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What to load into the page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// A URL that passed the URL policy.
    Url(String),
    /// An HTML document, written into the page without a network fetch.
    Html(String),
    /// No page at all: an extractor plugin that computes from its params alone runs without one
    /// (its page calls fail), and Chromium is not involved.
    NoPage,
}

/// What to produce once the page is ready.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// An extractor plugin's output.
    Plugin(PluginCall),
    /// One of the host's own page operations (`--native-builtins`, and the benchmarks' baseline).
    Native(NativeOutput),
}

impl Output {
    /// What it is called in logs and traces: the plugin (`screenshot@0.1.0`), or the native
    /// operation.
    pub fn name(&self) -> String {
        match self {
            Self::Plugin(call) => call.plugin.to_string(),
            Self::Native(NativeOutput::Screenshot(_)) => "native screenshot".into(),
            Self::Native(NativeOutput::Pdf(_)) => "native pdf".into(),
            Self::Native(NativeOutput::Content) => "native content".into(),
            Self::Native(NativeOutput::Debug(_)) => "native debug".into(),
        }
    }
}

/// The outputs the host produces without a plugin.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum NativeOutput {
    Screenshot(ScreenshotOptions),
    Pdf(PdfOptions),
    /// The HTML after scripts ran, as the `content` plugin returns it.
    Content,
    /// What the page did: console messages, uncaught exceptions, a HAR log of its requests.
    Debug(options::DebugOptions),
}

/// One version of a plugin, as a job names it. The API resolves a request's `name` to the latest
/// version when it builds the job, so a job runs the version that was current when it arrived.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginRef {
    pub name: Arc<str>,
    pub version: semver::Version,
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A plugin and the params the request gave it (JSON text).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PluginCall {
    pub plugin: PluginRef,
    pub params: String,
}

/// A job's priority class, as requests name it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Urgent,
    Hot,
    Cold,
}

impl Class {
    /// The built-in score of a job of this class with no number.
    pub fn base_score(self) -> f64 {
        match self {
            Self::Urgent => 200.0,
            Self::Hot => 100.0,
            Self::Cold => 0.0,
        }
    }
}

/// What a job produced: an extractor plugin's output, or a native operation's.
#[derive(Debug, Clone, PartialEq)]
pub enum Produced {
    Json(String),
    Text(String),
    Bytes { content_type: String, data: Vec<u8> },
}

impl Produced {
    /// The media type of the output: JSON, UTF-8 text, or what the plugin named, if it is one a
    /// response header can carry (else `application/octet-stream`).
    pub fn content_type(&self) -> &str {
        match self {
            Self::Json(_) => "application/json",
            Self::Text(_) => "text/plain; charset=utf-8",
            Self::Bytes { content_type, .. }
                if content_type
                    .bytes()
                    .all(|byte| byte == b'\t' || (0x20..0x7f).contains(&byte)) =>
            {
                content_type
            }
            Self::Bytes { .. } => "application/octet-stream",
        }
    }

    /// The output's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Json(text) | Self::Text(text) => text.into_bytes(),
            Self::Bytes { data, .. } => data,
        }
    }

    /// The bytes handed over, content type included: what the output caps count.
    pub fn len(&self) -> usize {
        match self {
            Self::Json(text) | Self::Text(text) => text.len(),
            Self::Bytes { content_type, data } => content_type.len() + data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An async job is stored as JSON and read back by whichever host claims it: every option must
    /// survive the trip.
    #[test]
    fn a_job_with_every_option_reads_back_as_it_was_written() {
        let request = serde_json::json!({
            "goto": { "wait_until": "networkalmostidle", "best_attempt": true, "wait_ms": 10,
                      "wait_for_function": { "expression": "true" } },
            "page": { "device": "iphone", "headers": { "x-a": "1" },
                      "headers_scope": ["https://api.example.com"],
                      "authenticate": { "username": "u", "password": "p" },
                      "timezone": "Europe/Paris", "locale": "fr-FR",
                      "geolocation": { "latitude": 1.5, "longitude": 2.5 }, "touch": true,
                      "add_scripts": [{ "content": "1", "at": "start" }, { "url": "https://a.example/x.js" }],
                      "add_styles": [{ "content": "p {}" }], "scroll": { "step_px": 500 } },
            "fail_on": { "status": [404, "5xx"], "resource_status": ["400-403"], "console_exception": true },
        });
        let mut job = Job::new(
            Target::Url("https://example.com/".into()),
            Output::Native(NativeOutput::Content),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        job.goto = serde_json::from_value(request["goto"].clone()).expect("goto");
        job.page = serde_json::from_value(request["page"].clone()).expect("page");
        job.fail_on = serde_json::from_value(request["fail_on"].clone()).expect("fail_on");
        job.validate().expect("valid");
        let written = serde_json::to_value(&job).expect("write");
        let read: Job = serde_json::from_value(written.clone()).expect("read back");
        assert_eq!(serde_json::to_value(&read).expect("write again"), written);
        assert_eq!(
            read.fail_on.status[1],
            options::StatusRange {
                low: 500,
                high: 599
            }
        );
        assert_eq!(
            read.page.headers_scope,
            options::HeadersScope::Origins(vec!["https://api.example.com".into()])
        );
    }
}
