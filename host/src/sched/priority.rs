//! [`Priority`]: a running job's standing, from its band and score when it left the queue. The plugin
//! host's CPU slots order the plugin calls waiting for the CPU by it.

use std::cmp::Ordering;

/// A job's standing when it competes for the CPU: its band (0 urgent, 1 hot, 2 cold) when it left
/// the queue, after aging, and its score within the band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priority {
    pub band: u8,
    pub score: f64,
}

impl Priority {
    /// Scorer calls: they run in the admission path of every job and have a tiny budget.
    pub const ADMISSION: Self = Self {
        band: 0,
        score: f64::MAX,
    };
    /// A hot job with the default number: calls made outside the scheduler (tests, the bench).
    pub const DEFAULT: Self = Self {
        band: 1,
        score: 100.0,
    };
    /// Upload checks: never ahead of a job.
    pub const BACKGROUND: Self = Self {
        band: 2,
        score: f64::MIN,
    };

    /// `Greater` when `self` goes first.
    pub fn rank(&self, other: &Self) -> Ordering {
        other
            .band
            .cmp(&self.band)
            .then(self.score.total_cmp(&other.score))
    }
}
