//! {{name}}: a pagewright extractor. Returns the page's title and how many elements match
//! `params.selector` (default `h1`), with the first one's text.

use pagewright_sdk::{Error, Extractor, Output, Page, log};
use serde::{Deserialize, Serialize};

struct Plugin;

/// The request's `params`. Unknown fields are refused with a 400 naming them, before `extract` runs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    selector: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            selector: "h1".into(),
        }
    }
}

#[derive(Serialize)]
struct Found {
    title: String,
    selector: String,
    count: u32,
    first: Option<String>,
}

impl Extractor for Plugin {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        // `log::info` and `println!` both reach the server's log, under the plugin's name.
        log::info(format!("counting {}", params.selector));
        // Page errors (a bad selector, a timeout) pass on with `?`: the caller gets the host's answer.
        let title: String = page.evaluate("document.title")?;
        let count = page.count(&params.selector)?;
        let first = page
            .query(&params.selector, &[])?
            .into_iter()
            .next()
            .map(|element| element.text);
        // A panic becomes a `plugin_trapped` error (422) that quotes its message.
        Output::json(&Found {
            title,
            selector: params.selector,
            count,
            first,
        })
    }
}

pagewright_sdk::plugin!(Plugin: extractor);
