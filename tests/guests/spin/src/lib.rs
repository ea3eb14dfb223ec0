//! Loops forever without calling the host: only fuel or the epoch deadline stops it.

use pagewright_sdk::{Error, Extractor, Output, Page};

struct Spin;

impl Extractor for Spin {
    type Params = serde_json::Value;

    fn extract(_page: Page<'_>, _params: serde_json::Value) -> Result<Output, Error> {
        let mut counter: u64 = 0;
        loop {
            // `black_box` keeps the optimiser from proving the loop has no effect.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

pagewright_sdk::plugin!(Spin: extractor);
