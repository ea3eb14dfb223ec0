//! Does nothing: `extract` returns an empty text. The bench measures instantiate + call + drop with it.

use pagewright_sdk::{Error, Extractor, Output, Page};

struct Noop;

impl Extractor for Noop {
    type Params = serde_json::Value;

    fn extract(_page: Page<'_>, _params: serde_json::Value) -> Result<Output, Error> {
        Ok(Output::text(""))
    }
}

pagewright_sdk::plugin!(Noop: extractor);
