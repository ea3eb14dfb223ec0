//! [`Statistics`]: what the scheduler has seen recently, per origin and per isolation key.
//!
//! - **Per origin** (scheme, host, port): jobs finished, their mean render time and failure rate,
//!   as moving averages over about the last [`WINDOW_JOBS`] jobs. Scorer plugins get them in
//!   `job-info.origin-stats`, and the queue uses the mean as the job's predicted cost: tenants take
//!   turns by predicted render time, not by job count.
//! - **Per isolation key**: the arrival rate (decaying with a half-life of [`RATE_HALF_LIFE`]) and
//!   the mean render time. Their product is the key's expected number of jobs in flight (Little's
//!   law), rounded up: how many pages the pool keeps warm for a key arriving at least once in 30 s.
//!
//! Both tables are LRU-bounded, so a crawl over a million origins costs a fixed amount of memory; an
//! entry untouched for [`FORGET_AFTER`] is dropped as stale.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

/// The moving averages weigh the latest job by 1/WINDOW_JOBS: they follow about the last 20 jobs.
pub const WINDOW_JOBS: f64 = 20.0;
/// Arrival rates halve for every this long without arrivals.
pub const RATE_HALF_LIFE: Duration = Duration::from_secs(10);
/// Entries not seen for this long are dropped.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Origins and keys tracked at most; beyond, the least recently seen go.
const MAX_ORIGINS: usize = 10_000;
const MAX_KEYS: usize = 4_096;
/// The cost predicted for a job of an origin never seen: about a small page's render here.
pub const DEFAULT_COST_MS: f64 = 100.0;
/// A key's pages kept warm at most, whatever its demand: the pool's cap is shared by every key.
pub const MAX_WARM_PAGES_PER_KEY: usize = 8;
/// A key arriving less often than once in 30 s gets no warm page: a page idle that long is better
/// given back (it costs ~2-10 MB), and a new one costs ~60 ms.
const MIN_RATE: f64 = 1.0 / 30.0;

/// One origin's figures, as scorers see them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OriginFigures {
    pub jobs: u64,
    pub mean_render_ms: f64,
    pub failure_rate: f64,
}

/// One isolation key's demand, for pre-warming.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyDemand {
    pub key: String,
    pub arrivals_per_s: f64,
    pub mean_render_ms: f64,
    /// Pages the pool keeps warm for the key.
    pub warm_pages: usize,
}

#[derive(Debug)]
struct Origin {
    jobs: u64,
    mean_ms: f64,
    failure_rate: f64,
    seen: Instant,
}

#[derive(Debug)]
struct Key {
    /// Arrivals, decayed to `rate_at`.
    arrivals: f64,
    rate_at: Instant,
    mean_ms: Option<f64>,
    seen: Instant,
}

impl Key {
    /// Arrivals per second at `now`: the decayed count over the half-life's mean lifetime.
    fn rate(&self, now: Instant) -> f64 {
        decayed(self.arrivals, now.saturating_duration_since(self.rate_at))
            / (RATE_HALF_LIFE.as_secs_f64() / std::f64::consts::LN_2)
    }
}

fn decayed(value: f64, age: Duration) -> f64 {
    value * 0.5f64.powf(age.as_secs_f64() / RATE_HALF_LIFE.as_secs_f64())
}

/// A moving average with weight `1 / WINDOW_JOBS` for the newest value, starting at the first.
fn average(mean: f64, jobs: u64, value: f64) -> f64 {
    if jobs == 0 {
        value
    } else {
        mean + (value - mean) / WINDOW_JOBS.min(jobs as f64 + 1.0)
    }
}

#[derive(Debug)]
pub struct Statistics {
    state: Mutex<Tables>,
}

#[derive(Debug)]
struct Tables {
    origins: LruCache<String, Origin>,
    keys: LruCache<String, Key>,
    /// Over every origin: the cost predicted for an origin not seen yet.
    overall_ms: Option<f64>,
}

impl Default for Statistics {
    fn default() -> Self {
        Self {
            state: Mutex::new(Tables {
                origins: LruCache::new(NonZeroUsize::new(MAX_ORIGINS).expect("non-zero")),
                keys: LruCache::new(NonZeroUsize::new(MAX_KEYS).expect("non-zero")),
                overall_ms: None,
            }),
        }
    }
}

impl Statistics {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A job for `key` arrived.
    pub fn arrived(&self, key: &str, now: Instant) {
        let mut tables = self.lock();
        if let Some(entry) = tables.keys.get_mut(key) {
            entry.arrivals =
                decayed(entry.arrivals, now.saturating_duration_since(entry.rate_at)) + 1.0;
            entry.rate_at = now;
            entry.seen = now;
        } else {
            tables.keys.put(
                key.to_owned(),
                Key {
                    arrivals: 1.0,
                    rate_at: now,
                    mean_ms: None,
                    seen: now,
                },
            );
        }
    }

    /// A job for `origin` and `key` ran for `render` and succeeded or failed.
    pub fn finished(&self, origin: &str, key: &str, render: Duration, ok: bool, now: Instant) {
        let ms = render.as_secs_f64() * 1000.0;
        let mut tables = self.lock();
        let entry = tables
            .origins
            .get_or_insert_mut(origin.to_owned(), || Origin {
                jobs: 0,
                mean_ms: ms,
                failure_rate: 0.0,
                seen: now,
            });
        entry.mean_ms = average(entry.mean_ms, entry.jobs, ms);
        entry.failure_rate = average(entry.failure_rate, entry.jobs, if ok { 0.0 } else { 1.0 });
        entry.jobs += 1;
        entry.seen = now;
        tables.overall_ms = Some(
            tables
                .overall_ms
                .map_or(ms, |mean| average(mean, 1_000, ms)),
        );
        if let Some(key) = tables.keys.get_mut(key) {
            key.mean_ms = Some(key.mean_ms.map_or(ms, |mean| average(mean, 1_000, ms)));
        }
    }

    /// What has been seen of `origin`, if anything.
    pub fn origin(&self, origin: &str) -> Option<OriginFigures> {
        self.lock().origins.peek(origin).map(|entry| OriginFigures {
            jobs: entry.jobs,
            mean_render_ms: entry.mean_ms,
            failure_rate: entry.failure_rate,
        })
    }

    /// The predicted render time of a job for `origin`, in milliseconds: the origin's mean, else
    /// the mean over every origin, else [`DEFAULT_COST_MS`].
    pub fn predicted_ms(&self, origin: &str) -> f64 {
        let tables = self.lock();
        tables
            .origins
            .peek(origin)
            .map(|entry| entry.mean_ms)
            .or(tables.overall_ms)
            .unwrap_or(DEFAULT_COST_MS)
    }

    /// Keys with demand, with the pages to keep warm for each (most demand first), after dropping
    /// entries not seen for [`FORGET_AFTER`].
    pub fn demand(&self, now: Instant) -> Vec<KeyDemand> {
        let mut tables = self.lock();
        forget_stale(&mut tables.origins, now, |entry| entry.seen);
        forget_stale(&mut tables.keys, now, |entry| entry.seen);
        let overall = tables.overall_ms.unwrap_or(DEFAULT_COST_MS);
        let mut demand: Vec<KeyDemand> = tables
            .keys
            .iter()
            .filter_map(|(key, entry)| {
                let rate = entry.rate(now);
                let mean_ms = entry.mean_ms.unwrap_or(overall);
                let in_flight = rate * mean_ms / 1000.0;
                (rate >= MIN_RATE).then(|| KeyDemand {
                    key: key.clone(),
                    arrivals_per_s: rate,
                    mean_render_ms: mean_ms,
                    warm_pages: (in_flight.ceil() as usize).clamp(1, MAX_WARM_PAGES_PER_KEY),
                })
            })
            .collect();
        demand.sort_by(|a, b| b.arrivals_per_s.total_cmp(&a.arrivals_per_s));
        demand
    }
}

/// Drops the least recently used entries while they are older than [`FORGET_AFTER`].
fn forget_stale<V>(table: &mut LruCache<String, V>, now: Instant, seen: impl Fn(&V) -> Instant) {
    while let Some((_, entry)) = table.peek_lru() {
        if now.saturating_duration_since(seen(entry)) < FORGET_AFTER {
            break;
        }
        table.pop_lru();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_keep_a_moving_mean_and_failure_rate() {
        let stats = Statistics::default();
        let now = Instant::now();
        assert_eq!(stats.origin("https://a.test"), None);
        assert_eq!(stats.predicted_ms("https://a.test"), DEFAULT_COST_MS);
        for _ in 0..40 {
            stats.finished("https://a.test", "k", Duration::from_millis(200), true, now);
        }
        stats.finished(
            "https://a.test",
            "k",
            Duration::from_millis(2200),
            false,
            now,
        );
        let figures = stats.origin("https://a.test").expect("seen");
        assert_eq!(figures.jobs, 41);
        // One slow failure moves the means by a twentieth of the difference.
        assert!((figures.mean_render_ms - 300.0).abs() < 1e-9, "{figures:?}");
        assert!((figures.failure_rate - 0.05).abs() < 1e-9, "{figures:?}");
        // An origin never seen is predicted from the others.
        assert!(stats.predicted_ms("https://b.test") > 200.0);
    }

    #[test]
    fn a_keys_demand_is_its_arrival_rate_times_its_render_time() {
        let stats = Statistics::default();
        let start = Instant::now();
        // 40 jobs a second for two minutes, each taking 100 ms: about four in flight.
        for i in 0..4_800u32 {
            let at = start + Duration::from_millis(u64::from(i) * 25);
            stats.arrived("busy", at);
            stats.finished(
                "https://a.test",
                "busy",
                Duration::from_millis(100),
                true,
                at,
            );
        }
        stats.arrived("rare", start);
        let now = start + Duration::from_secs(120);
        let demand = stats.demand(now);
        assert_eq!(
            demand.len(),
            1,
            "one arrival 2 min ago is no demand: {demand:?}"
        );
        assert_eq!(demand[0].key, "busy");
        assert!((demand[0].arrivals_per_s - 40.0).abs() < 2.0, "{demand:?}");
        assert_eq!(demand[0].warm_pages, 4);
        // Demand fades once arrivals stop, and stale entries are forgotten.
        assert!(stats.demand(now + Duration::from_secs(120)).is_empty());
        stats.demand(now + FORGET_AFTER);
        assert_eq!(stats.origin("https://a.test"), None);
    }
}
