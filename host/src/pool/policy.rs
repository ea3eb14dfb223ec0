//! Which idle page to evict: LRU-K (K = 2) with exponential time decay.
//!
//! Each page remembers its last two uses. Its *heat* is the sum, over those uses, of `0.5^(age /
//! half-life)`. A page used once scores at most 1, a page used twice recently up to 2, so one burst does
//! not make a page hot (plain LRU would keep it over a page in steady use); and since every term decays,
//! a page that was busy long ago cools below one used once just now. The coldest idle page is the victim;
//! equal heat falls back to least recently used.
//!
//! Pure functions over timestamps so the policy is tested without a browser.

use std::time::Duration;

use tokio::time::Instant;

/// How many past uses count (the K of LRU-K).
const K: usize = 2;

/// How fast a use stops counting. 30 s: a page used every few seconds stays hot, one untouched for a
/// minute is worth a quarter of a fresh use.
pub(crate) const HALF_LIFE: Duration = Duration::from_secs(30);

/// The last `K` times a page was leased, most recent first.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessHistory {
    uses: [Option<Instant>; K],
}

impl AccessHistory {
    pub fn record(&mut self, now: Instant) {
        self.uses.rotate_right(1);
        self.uses[0] = Some(now);
    }

    pub fn last_use(&self) -> Option<Instant> {
        self.uses[0]
    }

    /// Sum of the decayed weights of the last `K` uses; 0 for a page never used.
    pub fn heat(&self, now: Instant, half_life: Duration) -> f64 {
        self.uses
            .iter()
            .flatten()
            .map(|&used| {
                let age = now.saturating_duration_since(used).as_secs_f64();
                0.5f64.powf(age / half_life.as_secs_f64())
            })
            .sum()
    }
}

/// Index of the coldest candidate: lowest heat, then least recently used.
pub(crate) fn coldest<'a>(
    candidates: impl IntoIterator<Item = &'a AccessHistory>,
    now: Instant,
    half_life: Duration,
) -> Option<usize> {
    candidates
        .into_iter()
        .enumerate()
        .map(|(index, history)| (index, history.heat(now, half_life), history.last_use()))
        .min_by(|(_, heat_a, used_a), (_, heat_b, used_b)| {
            heat_a.total_cmp(heat_b).then_with(|| used_a.cmp(used_b))
        })
        .map(|(index, _, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(now: Instant, ages_secs: &[u64]) -> AccessHistory {
        let mut history = AccessHistory::default();
        // Oldest first, so the last recorded is the most recent.
        let mut ages = ages_secs.to_vec();
        ages.sort_unstable_by(|a, b| b.cmp(a));
        for age in ages {
            history.record(now - Duration::from_secs(age));
        }
        history
    }

    #[test]
    fn one_use_burst_is_colder_than_steady_use() {
        let now = Instant::now() + Duration::from_secs(1000);
        let burst = history(now, &[0]); // used once, just now
        let steady = history(now, &[2, 5]); // used twice, recently
        assert!(burst.heat(now, HALF_LIFE) < steady.heat(now, HALF_LIFE));
        assert_eq!(coldest([&steady, &burst], now, HALF_LIFE), Some(1));
    }

    #[test]
    fn old_heat_decays_below_a_fresh_use() {
        let now = Instant::now() + Duration::from_secs(1000);
        let long_ago = history(now, &[120, 125]); // busy two minutes ago
        let fresh = history(now, &[1]);
        assert!(long_ago.heat(now, HALF_LIFE) < fresh.heat(now, HALF_LIFE));
        assert_eq!(coldest([&fresh, &long_ago], now, HALF_LIFE), Some(1));
    }

    #[test]
    fn only_the_last_k_uses_count() {
        let now = Instant::now() + Duration::from_secs(1000);
        let many = history(now, &[1, 2, 3, 4, 5, 6]);
        let two = history(now, &[1, 2]);
        let difference = (many.heat(now, HALF_LIFE) - two.heat(now, HALF_LIFE)).abs();
        assert!(difference < 1e-9, "uses beyond K must not add heat");
    }

    #[test]
    fn never_used_pages_go_first_and_ties_fall_back_to_lru() {
        let now = Instant::now() + Duration::from_secs(1000);
        let unused = AccessHistory::default();
        let used = history(now, &[50]);
        assert_eq!(coldest([&used, &unused], now, HALF_LIFE), Some(1));

        // Same heat (ages rounded away), different recency: the least recently used goes.
        let half_life = Duration::from_secs(1_000_000);
        let older = history(now, &[40]);
        let newer = history(now, &[10]);
        assert_eq!(coldest([&newer, &older], now, half_life), Some(1));
    }

    #[test]
    fn no_candidates_no_victim() {
        assert_eq!(coldest([], Instant::now(), HALF_LIFE), None);
    }
}
