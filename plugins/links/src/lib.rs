//! Built-in `links`: the links of the page as absolute http(s) URLs with their text, in document order,
//! without duplicates: `{"url", "links": [{"url", "text"}]}`.
//!
//! Params: `selector` (default `a[href]`), `same_origin` (default false: keep links to other sites).

use pagewright_sdk::{Error, Extractor, Output, Page};
use serde::{Deserialize, Serialize};

struct Links;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    selector: String,
    same_origin: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            selector: "a[href]".into(),
            same_origin: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Link {
    url: String,
    text: String,
}

#[derive(Serialize)]
struct Report {
    url: Option<String>,
    links: Vec<Link>,
}

impl Extractor for Links {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        // `element.href` is already resolved against the document's base URL; the URL parser drops
        // fragments so `#top` and the page itself count once.
        let script = format!(
            "(() => {{ \
               const seen = new Set(); const links = []; \
               for (const element of document.querySelectorAll({selector})) {{ \
                 let url; try {{ url = new URL(element.href); }} catch {{ continue; }} \
                 if (url.protocol !== 'http:' && url.protocol !== 'https:') continue; \
                 if ({same_origin} && url.origin !== location.origin) continue; \
                 url.hash = ''; \
                 if (seen.has(url.href)) continue; seen.add(url.href); \
                 links.push({{ url: url.href, text: (element.innerText ?? element.textContent ?? '').trim() }}); \
               }} \
               return links; }})()",
            selector = serde_json::to_string(&params.selector).map_err(Error::failed)?,
            same_origin = params.same_origin,
        );
        let links: Vec<Link> = page.evaluate(&script)?;
        Output::json(&Report {
            url: page.navigation().map(|navigation| navigation.url),
            links,
        })
    }
}

pagewright_sdk::plugin!(Links: extractor);
