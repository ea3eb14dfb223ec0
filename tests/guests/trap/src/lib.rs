//! Panics, which a wasm32 guest turns into a trap: the host must answer with a plugin error and keep
//! serving.

use pagewright_sdk::{Error, Extractor, Output, Page};

struct Trap;

impl Extractor for Trap {
    type Params = serde_json::Value;

    fn extract(_page: Page<'_>, _params: serde_json::Value) -> Result<Output, Error> {
        panic!("this plugin always panics");
    }
}

pagewright_sdk::plugin!(Trap: extractor);
