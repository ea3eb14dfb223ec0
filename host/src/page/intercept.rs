//! Requests the page makes, stopped in the browser before they leave it (CDP's `Fetch` domain): the
//! ones a job blocks fail there, an uploaded document and its files are answered from memory, and
//! the ones to the origins its headers are scoped to go on with those headers added. Only requests that match a pattern stop, so a job that blocks nothing and
//! scopes no headers costs nothing here, and one with scoped headers pays a round trip only for the
//! requests to those origins.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chromiumoxide::Binary;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventRequestPaused, FailRequestParams, FulfillRequestParams,
    HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{self, ErrorReason};
use futures::StreamExt;

use super::setup::cdp_resource_type;
use super::{Page, PageError};
use crate::job::HtmlBase;
use crate::job::options::BlockOptions;

/// What the page's requests go through, until the reset.
#[derive(Debug, Clone, Default)]
pub(super) struct Interception {
    pub block: BlockOptions,
    /// Headers added to the requests to `header_origins` (`scheme://host[:port]`).
    pub headers: BTreeMap<String, String>,
    pub header_origins: Vec<String>,
    pub served: Option<Served>,
}

/// An `html` job's document and files, answered from memory at their URLs.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// By URL (without fragment or query): content type and bytes.
    files: HashMap<String, (String, Arc<[u8]>)>,
    /// An origin all of whose requests are answered from here (a 404 for what is not): the made-up
    /// origin of an upload, which must never reach the network.
    closed_origin: Option<String>,
}

impl Served {
    /// The document at `base.url`, and each asset at its path relative to it.
    pub fn new(base: &HtmlBase, html: &str) -> Result<Self, PageError> {
        let document = url::Url::parse(&base.url)
            .map_err(|error| PageError::InvalidInput(format!("base_url: {error}")))?;
        let mut files = HashMap::new();
        files.insert(
            plain_url(document.as_str()),
            (
                "text/html; charset=utf-8".to_owned(),
                Arc::from(html.as_bytes()),
            ),
        );
        for asset in &base.assets {
            let url = document.join(&asset.path).map_err(|error| {
                PageError::InvalidInput(format!("assets: `{}`: {error}", asset.path))
            })?;
            files.insert(
                plain_url(url.as_str()),
                (asset.content_type.clone(), Arc::from(asset.data.as_slice())),
            );
        }
        Ok(Self {
            files,
            closed_origin: base
                .is_upload_origin()
                .then(|| document.origin().ascii_serialization()),
        })
    }

    /// The file for `url`, if it is one of ours.
    fn file(&self, url: &str) -> Option<&(String, Arc<[u8]>)> {
        self.files.get(&plain_url(url))
    }

    /// Is `url` on the closed origin?
    fn closes(&self, url: &str) -> bool {
        self.closed_origin.as_ref().is_some_and(|origin| {
            url::Url::parse(url).is_ok_and(|url| url.origin().ascii_serialization() == *origin)
        })
    }
}

/// A URL without its fragment and query: how served files are looked up.
fn plain_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_fragment(None);
            parsed.set_query(None);
            parsed.into()
        }
        Err(_) => url.to_owned(),
    }
}

impl Interception {
    /// The requests Chromium stops for us: everything a block names, and every URL of a header
    /// origin.
    fn patterns(&self) -> Vec<RequestPattern> {
        let pattern = |url: String, kind: Option<network::ResourceType>| RequestPattern {
            url_pattern: Some(url),
            resource_type: kind,
            request_stage: Some(RequestStage::Request),
        };
        let mut patterns: Vec<RequestPattern> = self
            .block
            .resource_types
            .iter()
            .map(|&kind| pattern("*".into(), Some(cdp_resource_type(kind))))
            .collect();
        patterns.extend(
            self.block
                .url_patterns
                .iter()
                .map(|url| pattern(url.clone(), None)),
        );
        if let Some(served) = &self.served {
            patterns.extend(
                served
                    .files
                    .keys()
                    .map(|url| pattern(format!("{}*", escape_pattern(url)), None)),
            );
            patterns.extend(
                served
                    .closed_origin
                    .iter()
                    .map(|origin| pattern(format!("{}/*", escape_pattern(origin)), None)),
            );
        }
        if !self.headers.is_empty() {
            patterns.extend(
                self.header_origins
                    .iter()
                    .map(|origin| pattern(format!("{}/*", escape_pattern(origin)), None)),
            );
        }
        patterns
    }

    /// Does the job block this request?
    fn blocks(&self, kind: &network::ResourceType, url: &str) -> bool {
        self.block
            .resource_types
            .iter()
            .any(|&blocked| cdp_resource_type(blocked) == *kind)
            || self
                .block
                .url_patterns
                .iter()
                .any(|pattern| wildcard_match(pattern, url))
    }

    /// The request's headers with the job's added, if it goes to one of the header origins.
    fn headers_for(&self, request: &network::Request) -> Option<Vec<HeaderEntry>> {
        if self.headers.is_empty() {
            return None;
        }
        let origin = url::Url::parse(&request.url)
            .ok()?
            .origin()
            .ascii_serialization();
        if !self.header_origins.contains(&origin) {
            return None;
        }
        let ours = |name: &str| {
            self.headers
                .keys()
                .any(|added| added.eq_ignore_ascii_case(name))
        };
        let mut entries: Vec<HeaderEntry> = request
            .headers
            .inner()
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| !ours(name))
            .filter_map(|(name, value)| Some(HeaderEntry::new(name, value.as_str()?)))
            .collect();
        entries.extend(
            self.headers
                .iter()
                .map(|(name, value)| HeaderEntry::new(name, value)),
        );
        Some(entries)
    }
}

impl Page<'_> {
    /// Stops the page's requests that `interception` concerns, and fails, or sends on with the
    /// scoped headers, each, until the page is reset.
    pub(super) async fn intercept(&self, interception: Interception) -> Result<(), PageError> {
        let patterns = interception.patterns();
        // Listen before enabling, so no paused request is missed.
        let mut paused = self
            .step(
                "listen for requests",
                self.deadline,
                self.cdp().event_listener::<EventRequestPaused>(),
            )
            .await?;
        let cdp = self.cdp().clone();
        let interceptor = tokio::spawn(async move {
            while let Some(event) = paused.next().await {
                let id = event.request_id.clone();
                // An answer can fail only when the page or its request is gone: nothing to do then.
                let url = &event.request.url;
                let served = interception.served.as_ref();
                if interception.blocks(&event.resource_type, url) {
                    let _ = cdp
                        .execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                        .await;
                } else if let Some((content_type, body)) =
                    served.and_then(|served| served.file(url))
                {
                    let _ = cdp.execute(fulfill(id, 200, content_type, body)).await;
                } else if served.is_some_and(|served| served.closes(url)) {
                    let _ = cdp
                        .execute(fulfill(id, 404, "text/plain", b"not in the upload"))
                        .await;
                } else {
                    let mut carry_on = ContinueRequestParams::new(id);
                    carry_on.headers = interception.headers_for(&event.request);
                    let _ = cdp.execute(carry_on).await;
                }
            }
        });
        let previous = self
            .handle
            .changes()
            .interceptor
            .replace(interceptor.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        let enable = fetch::EnableParams::builder().patterns(patterns).build();
        self.step(
            "intercept requests",
            self.deadline,
            self.cdp().execute(enable),
        )
        .await?;
        Ok(())
    }
}

/// An answer to a stopped request, made here.
fn fulfill(
    request: fetch::RequestId,
    status: i64,
    content_type: &str,
    body: &[u8],
) -> FulfillRequestParams {
    use base64::Engine as _;
    let mut answer = FulfillRequestParams::new(request, status);
    answer.response_headers = Some(vec![
        HeaderEntry::new("content-type", content_type),
        HeaderEntry::new("cache-control", "no-store"),
    ]);
    answer.body = Some(Binary::from(
        base64::engine::general_purpose::STANDARD.encode(body),
    ));
    answer
}

/// `text` with the characters a `Fetch` URL pattern treats as wildcards escaped.
fn escape_pattern(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Does `text` match a `Fetch` URL pattern: `*` any run of characters, `?` any one, `\` escaping
/// the next? The same test Chromium applied to stop the request, made again to tell which rule
/// stopped it.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut characters = pattern.chars();
    while let Some(character) = characters.next() {
        tokens.push(match character {
            '*' => Token::Any,
            '?' => Token::One,
            '\\' => Token::Char(characters.next().unwrap_or('\\')),
            other => Token::Char(other),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last `*`: linear in practice, quadratic at worst.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                p += 1;
                t += 1;
            }
            Some(Token::Char(expected)) if *expected == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_chromium_reads_them() {
        assert!(wildcard_match(
            "*://ads.example.com/*",
            "https://ads.example.com/x.js"
        ));
        assert!(!wildcard_match(
            "*://ads.example.com/*",
            "https://example.com/ads.example.com"
        ));
        assert!(wildcard_match("*.png", "http://a/b.png"));
        assert!(!wildcard_match("*.png", "http://a/b.png?x"));
        assert!(wildcard_match("http://a/?", "http://a/b"));
        assert!(wildcard_match("http://a/\\*", "http://a/*"));
        assert!(!wildcard_match("http://a/\\*", "http://a/b"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match(
            &format!("{}/*", escape_pattern("http://127.0.0.1:8080")),
            "http://127.0.0.1:8080/page"
        ));
        assert!(!wildcard_match(
            &format!("{}/*", escape_pattern("http://127.0.0.1:8080")),
            "http://127.0.0.1:80801/page"
        ));
    }
}
