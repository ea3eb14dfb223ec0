//! The response cache and request coalescing of the render endpoints, for requests that ask for
//! them (`"cache": {"ttl_ms": N}`; off otherwise).
//!
//! A request is known by what it renders: its job's target, options, output and plugins, and who
//! asks (tenant and isolation key), never its budgets or priority. A response stored less than the
//! asking request's `ttl_ms` ago answers it from memory, and requests that arrive while the same
//! one is rendering wait for that render instead of starting their own. The render runs in a task
//! of its own, so a first caller that hangs up costs the others nothing. Errors are shared with the
//! requests that waited, never stored. Stored responses are kept within a byte budget
//! (`--cache-max-mib`), least recently used out first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::ApiError;
use crate::job::Job;
use crate::metrics::{Metrics, ReasonLabels};

/// `cache` in a render request.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRequest {
    /// The oldest stored response this request takes, in milliseconds (1 to a day).
    pub ttl_ms: u64,
}

impl CacheRequest {
    pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

    pub fn ttl(&self) -> Result<Duration, ApiError> {
        let ttl = Duration::from_millis(self.ttl_ms);
        if ttl.is_zero() || ttl > Self::MAX_TTL {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "cache.ttl_ms must be 1-{}, got {}",
                    Self::MAX_TTL.as_millis(),
                    self.ttl_ms
                ),
            ));
        }
        Ok(ttl)
    }
}

/// A response as the endpoint sends it: headers and body.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl CachedResponse {
    fn bytes(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum::<usize>()
    }
}

/// How a cached request was answered, for `x-pagewright-cache` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// From a stored response, this old.
    Hit(Duration),
    /// By a render of its own.
    Miss,
    /// By the render of an identical request that was already running.
    Coalesced,
}

impl CacheOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Hit(_) => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
        }
    }

    /// `x-pagewright-cache` (and `age`, for a hit) on `headers`.
    pub fn mark(self, headers: &mut HeaderMap) {
        headers.insert("x-pagewright-cache", HeaderValue::from_static(self.label()));
        if let Self::Hit(age) = self {
            headers.insert("age", HeaderValue::from(age.as_secs()));
        }
    }
}

/// An error shared by the requests that waited for one render.
#[derive(Debug, Clone)]
struct SharedError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

type Shared = Option<Result<Arc<CachedResponse>, SharedError>>;

/// What a request is known by: a SHA-256 of what it renders and who asks.
type Key = [u8; 32];

/// The cache and the renders in flight. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_bytes: usize,
    stored: Mutex<Stored>,
    /// Renders running for a cached request, by key: the others wait on their channel.
    in_flight: Mutex<HashMap<Key, watch::Receiver<Shared>>>,
    metrics: Metrics,
}

#[derive(Debug)]
struct Stored {
    entries: lru::LruCache<Key, (Instant, Arc<CachedResponse>)>,
    bytes: usize,
}

impl ResponseCache {
    /// A cache of at most `max_bytes` of responses (0: coalescing only, nothing stored).
    pub fn new(max_bytes: usize, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_bytes,
                stored: Mutex::new(Stored {
                    entries: lru::LruCache::unbounded(),
                    bytes: 0,
                }),
                in_flight: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// The key of `job`: what it renders and for whom, not when or how urgently.
    pub fn key(job: &Job) -> Key {
        let identity = serde_json::json!({
            "target": job.target,
            "goto": job.goto,
            "page": job.page,
            "fail_on": job.fail_on,
            "html_base": job.html_base,
            "scripts": job.scripts,
            "output": job.output,
            "tenant": job.tenant,
            "key_scope": job.key_scope,
        });
        Sha256::digest(identity.to_string().as_bytes()).into()
    }

    /// The response for `key`: stored less than `ttl` ago, or the result of the render of an
    /// identical request running now, or of `render`, run here (and stored) if neither.
    pub async fn respond<F>(
        &self,
        key: Key,
        ttl: Duration,
        render: F,
    ) -> Result<(Arc<CachedResponse>, CacheOutcome), ApiError>
    where
        F: Future<Output = Result<CachedResponse, ApiError>> + Send + 'static,
    {
        if let Some((age, response)) = self.lookup(&key, ttl) {
            self.count(CacheOutcome::Hit(age));
            return Ok((response, CacheOutcome::Hit(age)));
        }
        let (mut receiver, outcome) = {
            let mut in_flight = lock(&self.inner.in_flight);
            match in_flight.get(&key) {
                Some(receiver) => (receiver.clone(), CacheOutcome::Coalesced),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    in_flight.insert(key, receiver.clone());
                    let cache = self.clone();
                    // In the request's span: the render is its job, in its trace.
                    tokio::spawn(tracing::Instrument::in_current_span(async move {
                        let in_flight = InFlight {
                            cache: cache.clone(),
                            key,
                        };
                        let result = match render.await {
                            Ok(response) => {
                                let response = Arc::new(response);
                                cache.store(key, response.clone());
                                Ok(response)
                            }
                            Err(error) => Err(SharedError {
                                status: error.status,
                                code: error.code,
                                message: error.message,
                            }),
                        };
                        // Out of the map before the answer goes out: a request arriving after it
                        // finds the stored response, or renders anew after an error.
                        drop(in_flight);
                        let _ = sender.send(Some(result));
                    }));
                    (receiver, CacheOutcome::Miss)
                }
            }
        };
        self.count(outcome);
        let shared = receiver
            .wait_for(Option::is_some)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the shared render ended without an answer",
                )
            })?
            .clone();
        match shared {
            Some(Ok(response)) => Ok((response, outcome)),
            Some(Err(error)) => Err(ApiError::new(error.status, error.code, error.message)),
            None => unreachable!("waited for Some"),
        }
    }

    fn count(&self, outcome: CacheOutcome) {
        self.inner
            .metrics
            .cache_lookups
            .get_or_create(&ReasonLabels {
                reason: outcome.label(),
            })
            .inc();
    }

    fn lookup(&self, key: &Key, ttl: Duration) -> Option<(Duration, Arc<CachedResponse>)> {
        let mut stored = lock(&self.inner.stored);
        let (stored_at, response) = stored.entries.get(key)?;
        let age = stored_at.elapsed();
        (age <= ttl).then(|| (age, response.clone()))
    }

    /// Keeps `response`, dropping the least recently used ones to stay within the budget. One over
    /// an eighth of the budget is not kept: it would push out many others.
    fn store(&self, key: Key, response: Arc<CachedResponse>) {
        let bytes = response.bytes();
        let max = self.inner.max_bytes;
        if bytes > max / 8 {
            return;
        }
        let mut stored = lock(&self.inner.stored);
        if let Some((_, old)) = stored.entries.put(key, (Instant::now(), response)) {
            stored.bytes -= old.bytes();
        }
        stored.bytes += bytes;
        while stored.bytes > max {
            match stored.entries.pop_lru() {
                Some((_, (_, old))) => stored.bytes -= old.bytes(),
                None => break,
            }
        }
        self.inner
            .metrics
            .cache_bytes
            .set(i64::try_from(stored.bytes).unwrap_or(i64::MAX));
    }
}

/// A render in flight, taken out of the map when its task ends however it ends: a key left behind
/// by a task that panicked would make every later identical request wait on a render that is gone.
struct InFlight {
    cache: ResponseCache,
    key: Key,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.cache.inner.in_flight).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can panic half-way through an update.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(text: &str) -> CachedResponse {
        CachedResponse {
            headers: HeaderMap::new(),
            body: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    #[tokio::test]
    async fn a_render_that_panics_leaves_the_key_free_for_the_next_request() {
        let cache = ResponseCache::new(1 << 20, Metrics::new());
        let key = [7; 32];
        let ttl = Duration::from_secs(60);
        let panicked = cache
            .respond(key, ttl, async { panic!("a render that panics") })
            .await;
        assert_eq!(
            panicked.map(|_| ()).map_err(|error| error.code),
            Err("internal_error")
        );
        let (answer, outcome) = cache
            .respond(key, ttl, async { Ok(response("rendered")) })
            .await
            .expect("the next request renders");
        assert_eq!(
            (answer.body.as_ref(), outcome),
            (&b"rendered"[..], CacheOutcome::Miss)
        );
        let (_, outcome) = cache
            .respond(key, ttl, async { Ok(response("not asked")) })
            .await
            .expect("stored");
        assert!(matches!(outcome, CacheOutcome::Hit(_)));
    }

    #[tokio::test]
    async fn the_byte_budget_keeps_the_most_recently_used() {
        let cache = ResponseCache::new(800, Metrics::new());
        let ttl = Duration::from_secs(60);
        // Each is 100 bytes, an eighth of the budget: eight fit.
        for key in 0..10u8 {
            cache
                .respond([key; 32], ttl, async { Ok(response(&"x".repeat(100))) })
                .await
                .expect("rendered");
        }
        assert!(
            cache.lookup(&[0; 32], ttl).is_none(),
            "the oldest went first"
        );
        assert!(cache.lookup(&[9; 32], ttl).is_some());
        assert!(lock(&cache.inner.stored).bytes <= 800);
    }
}
