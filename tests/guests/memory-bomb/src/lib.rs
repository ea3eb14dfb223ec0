//! Allocates and touches memory in 1 MiB steps until the host's memory limit stops it.

use pagewright_sdk::{Error, Extractor, Output, Page};

struct MemoryBomb;

impl Extractor for MemoryBomb {
    type Params = serde_json::Value;

    fn extract(_page: Page<'_>, _params: serde_json::Value) -> Result<Output, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

pagewright_sdk::plugin!(MemoryBomb: extractor);
