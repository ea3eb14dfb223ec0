//! The page's title and its first heading (`h1`, or the selector in `params.heading`), as JSON: the
//! same plugin as the JavaScript, Python and C examples in `plugins/examples/`, for the registry's
//! tests and the per-language benchmark.

use pagewright_sdk::{Error, Extractor, Output, Page, log};
use serde::Deserialize;
use serde_json::json;

struct Title;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "h1")]
    heading: String,
}

fn h1() -> String {
    "h1".into()
}

impl Extractor for Title {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        log::info(format!("looking for {}", params.heading));
        let title: String = page.evaluate("document.title")?;
        let heading = page
            .query(&params.heading, &[])?
            .into_iter()
            .next()
            .map(|element| element.text);
        Output::json(&json!({ "title": title, "heading": heading }))
    }
}

pagewright_sdk::plugin!(Title: extractor);
