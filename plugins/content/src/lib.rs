//! Built-in `content`: where the page ended up, and its HTML, its text, or both, as JSON:
//! `{"url", "status", "html"?, "text"?}`. HTML is the document as scripts left it, doctype included;
//! text is what a reader sees (`innerText` of the body).

use pagewright_sdk::{Error, Extractor, Output, Page};
use serde::{Deserialize, Serialize};

struct Content;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    html: bool,
    text: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            html: true,
            text: false,
        }
    }
}

#[derive(Serialize)]
struct Document {
    url: Option<String>,
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl Extractor for Content {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        if !params.html && !params.text {
            return Err(Error::invalid_input("ask for html, text or both"));
        }
        let navigation = page.navigation();
        Output::json(&Document {
            url: navigation.as_ref().map(|navigation| navigation.url.clone()),
            status: navigation.map(|navigation| navigation.status),
            html: params.html.then(|| page.content()).transpose()?,
            text: params.text.then(|| page.text()).transpose()?,
        })
    }
}

pagewright_sdk::plugin!(Content: extractor);
