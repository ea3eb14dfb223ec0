//! Waits `params.ms` milliseconds in the host (`wait-for-timeout`) and answers `slept`: a plugin that
//! is blocked in a page operation, which must hold no CPU slot while it waits.

use pagewright_sdk::{Error, Extractor, Output, Page};
use serde::Deserialize;

struct Sleeper;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    ms: u32,
}

impl Extractor for Sleeper {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        page.wait_for_timeout(params.ms)?;
        Ok(Output::text("slept"))
    }
}

pagewright_sdk::plugin!(Sleeper: extractor);
