//! A scorer that never returns: the scheduler must stop it at its small fuel budget, fall back to
//! the built-in score and count the failure, without holding up admission.

use pagewright_sdk::{JobInfo, Scorer};

struct SpinScorer;

impl Scorer for SpinScorer {
    fn score(_job: JobInfo) -> f64 {
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

pagewright_sdk::plugin!(SpinScorer: scorer);
