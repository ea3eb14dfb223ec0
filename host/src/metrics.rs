//! Prometheus metrics: one registry per server instance (no global recorder, so tests that start
//! several servers in one process keep their figures apart), rendered as text at `GET /metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub shard: u64,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacementLabels {
    pub shard: u64,
    /// Why the job went there: `warm`, `home` or `least_loaded`.
    pub placement: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BandLabels {
    pub band: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabels {
    pub plugin: String,
    pub outcome: &'static str,
}

/// Every metric the server exports. Cheap to clone: the handles share their values.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Finished HTTP requests by endpoint and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by endpoint.
    pub request_seconds: Family<EndpointLabels, Histogram>,
    /// Browser relaunches after the browser died.
    pub browser_restarts: Counter,
    /// Connections the egress proxy refused (a page's request or a webhook to a denied address).
    pub egress_refused: Counter,
    /// Pages in the pool by state (`idle`, `active`).
    pub pool_pages: Family<StateLabels, Gauge>,
    /// Browser contexts (isolation keys) alive, by shard.
    pub pool_contexts: Family<ShardLabels, Gauge>,
    /// Pages opened.
    pub pages_created: Counter,
    /// Leases served by an idle page instead of a new one.
    pub pages_reused: Counter,
    /// Pages opened ahead of demand for a key the scheduler expects jobs for.
    pub pages_prewarmed: Counter,
    /// Pages closed, by why (`idle`, `lru`, `reuse_limit`, `crashed`, `failed`, `browser_died`).
    pub pages_evicted: Family<ReasonLabels, Counter>,
    /// Jobs retried once because the browser died under them.
    pub jobs_retried: Counter,
    /// Plugin calls by plugin and outcome (`ok`, `error`, `trapped`, `out_of_fuel`, `timeout`,
    /// `memory_limit`, `output_too_large`, `busy`).
    pub plugin_calls: Family<PluginCallLabels, Counter>,
    /// Fuel plugins consumed, by plugin.
    pub plugin_fuel: Family<PluginLabels, Counter>,
    /// Jobs waiting for a run slot, by the band they were queued in (`urgent`, `hot`, `cold`).
    pub sched_queued: Family<BandLabels, Gauge>,
    /// Jobs holding a run slot.
    pub sched_running: Gauge,
    /// Run slots there are now (the adaptive concurrency limit).
    pub sched_limit: Gauge,
    /// Time from admission to a run slot, by band, for the jobs that got one.
    pub sched_wait_seconds: Family<BandLabels, Histogram>,
    /// Time jobs held their run slot.
    pub sched_run_seconds: Histogram,
    /// Jobs refused or ended by the scheduler, by why (`queue_full`, `queue_timeout`).
    pub sched_rejections: Family<ReasonLabels, Counter>,
    /// Scorer plugin calls that failed, so the job got the built-in score.
    pub sched_scorer_failures: Counter,
    /// CPU slots given up at a fuel yield to a waiting job of equal or higher priority.
    pub sched_preemptions: Counter,
    /// Jobs placed on a shard, by shard and why there.
    pub placements: Family<PlacementLabels, Counter>,
    /// Async jobs' webhook deliveries, by outcome (`delivered`, `failed`).
    pub webhook_deliveries: Family<ReasonLabels, Counter>,
    /// Async jobs queued in the store (the farm's, with PostgreSQL), by band: what an autoscaler
    /// reads.
    pub jobs_queued: Family<BandLabels, Gauge>,
    /// Async jobs this host claimed from the store.
    pub jobs_claimed: Counter,
    /// How long a claim took, from the store's answer.
    pub jobs_claim_seconds: Histogram,
    /// Runs whose lease was lost: their host stopped renewing it (it died, or the store was out of
    /// reach), and the job went back to the queue.
    pub jobs_leases_lost: Counter,
    /// Render requests that asked for the cache, by how they were answered (`hit`, `miss`,
    /// `coalesced`).
    pub cache_lookups: Family<ReasonLabels, Counter>,
    /// Bytes of responses the cache holds.
    pub cache_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pagewright");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "Finished HTTP requests", requests.clone());
        // Buckets from 5 ms to ~40 s: a content call takes ~2 ms, a cold navigation tens of seconds.
        let request_seconds = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.005, 2.0, 14,
            ))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            request_seconds.clone(),
        );
        let browser_restarts = Counter::default();
        registry.register(
            "browser_restarts",
            "Browser relaunches after the browser died",
            browser_restarts.clone(),
        );
        let egress_refused = Counter::default();
        registry.register(
            "egress_refused",
            "Connections the egress proxy refused under the server's egress rules",
            egress_refused.clone(),
        );
        let pool_pages = Family::<StateLabels, Gauge>::default();
        registry.register(
            "pool_pages",
            "Pages in the pool by shard and state",
            pool_pages.clone(),
        );
        let pool_contexts = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "pool_contexts",
            "Browser contexts (isolation keys) alive, by shard",
            pool_contexts.clone(),
        );
        let pages_created = Counter::default();
        registry.register("pool_pages_created", "Pages opened", pages_created.clone());
        let pages_reused = Counter::default();
        registry.register(
            "pool_pages_reused",
            "Leases served by an idle page",
            pages_reused.clone(),
        );
        let pages_prewarmed = Counter::default();
        registry.register(
            "pool_pages_prewarmed",
            "Pages opened ahead of demand for an isolation key",
            pages_prewarmed.clone(),
        );
        let pages_evicted = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "pool_evictions",
            "Pages closed, by reason",
            pages_evicted.clone(),
        );
        let jobs_retried = Counter::default();
        registry.register(
            "jobs_retried",
            "Jobs retried because the browser died under them",
            jobs_retried.clone(),
        );
        let plugin_calls = Family::<PluginCallLabels, Counter>::default();
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin and outcome",
            plugin_calls.clone(),
        );
        let plugin_fuel = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_fuel_consumed",
            "Fuel consumed by plugins",
            plugin_fuel.clone(),
        );
        let sched_queued = Family::<BandLabels, Gauge>::default();
        registry.register(
            "sched_queued",
            "Jobs waiting for a run slot, by band",
            sched_queued.clone(),
        );
        let sched_running = Gauge::default();
        registry.register(
            "sched_running",
            "Jobs holding a run slot",
            sched_running.clone(),
        );
        let sched_limit = Gauge::default();
        registry.register(
            "sched_slots",
            "Run slots there are now (the adaptive concurrency limit)",
            sched_limit.clone(),
        );
        // 1 ms to ~65 s: most jobs wait nothing, a flood's tail waits for the queue deadline.
        let latency = || {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 17,
            ))
        };
        let sched_wait_seconds = Family::<BandLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "sched_wait_seconds",
            "Time from admission to a run slot, by band",
            sched_wait_seconds.clone(),
        );
        let sched_run_seconds = latency();
        registry.register(
            "sched_run_seconds",
            "Time jobs held their run slot",
            sched_run_seconds.clone(),
        );
        let sched_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sched_rejections",
            "Jobs refused or ended by the scheduler, by reason",
            sched_rejections.clone(),
        );
        let sched_scorer_failures = Counter::default();
        registry.register(
            "sched_scorer_failures",
            "Scorer plugin calls that failed (the job got the built-in score)",
            sched_scorer_failures.clone(),
        );
        let sched_preemptions = Counter::default();
        registry.register(
            "sched_preemptions",
            "Plugin CPU slots given up at a fuel yield to a waiting job of equal or higher priority",
            sched_preemptions.clone(),
        );
        let placements = Family::<PlacementLabels, Counter>::default();
        registry.register(
            "placements",
            "Jobs placed on a shard, by shard and why there (warm page, home shard, least loaded)",
            placements.clone(),
        );
        let webhook_deliveries = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Async jobs' webhook deliveries, by outcome",
            webhook_deliveries.clone(),
        );
        let jobs_queued = Family::<BandLabels, Gauge>::default();
        registry.register(
            "jobs_queued",
            "Async jobs queued in the store, by band (the farm's queue with PostgreSQL)",
            jobs_queued.clone(),
        );
        let jobs_claimed = Counter::default();
        registry.register(
            "jobs_claimed",
            "Async jobs this host claimed from the store",
            jobs_claimed.clone(),
        );
        // From 0.5 ms (an embedded store) to ~1 s (a store far away or overloaded).
        let jobs_claim_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 12),
        );
        registry.register(
            "jobs_claim_seconds",
            "How long claiming async jobs from the store took",
            jobs_claim_seconds.clone(),
        );
        let jobs_leases_lost = Counter::default();
        registry.register(
            "jobs_leases_lost",
            "Runs of async jobs whose lease expired (their host stopped renewing it); the jobs went back to the queue",
            jobs_leases_lost.clone(),
        );
        let cache_lookups = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Render requests that asked for the response cache, by how they were answered (hit, miss, coalesced)",
            cache_lookups.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes of responses the response cache holds",
            cache_bytes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            request_seconds,
            browser_restarts,
            egress_refused,
            pool_pages,
            pool_contexts,
            pages_created,
            pages_reused,
            pages_prewarmed,
            pages_evicted,
            jobs_retried,
            plugin_calls,
            plugin_fuel,
            sched_queued,
            sched_running,
            sched_limit,
            sched_wait_seconds,
            sched_run_seconds,
            sched_rejections,
            sched_scorer_failures,
            sched_preemptions,
            placements,
            webhook_deliveries,
            jobs_queued,
            jobs_claimed,
            jobs_claim_seconds,
            jobs_leases_lost,
            cache_lookups,
            cache_bytes,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn evicted(&self, reason: &'static str) {
        self.pages_evicted
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
