//! Returns 100 MB of bytes: more than the host's output cap, within its memory limit.

use pagewright_sdk::{Error, Extractor, Output, Page};

struct HugeOutput;

impl Extractor for HugeOutput {
    type Params = serde_json::Value;

    fn extract(_page: Page<'_>, _params: serde_json::Value) -> Result<Output, Error> {
        Ok(Output::bytes(
            "application/octet-stream",
            vec![b'x'; 100 * 1000 * 1000],
        ))
    }
}

pagewright_sdk::plugin!(HugeOutput: extractor);
