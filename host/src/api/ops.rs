//! Operational endpoints: `/health` for load balancers, `/v1/status` for people, `/metrics` for
//! Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::tenants::Caller;
use super::{ApiError, AppState};
use crate::sys::Memory;

/// 200 while a browser is connected (one shard's is enough: placement sends jobs around the
/// others while they relaunch), 503 otherwise.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Whether a browser is up (open to all)",
    responses(
        (status = 200, description = "`{status, shards, shards_up}`", body = serde_json::Value),
    )
)]
pub async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let up = state.executor.shards().up();
    if up > 0 {
        Ok(Json(
            json!({ "status": "ok", "shards": state.executor.shards().len(), "shards_up": up }),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "browser_unavailable",
            "no shard's browser is connected",
        ))
    }
}

/// For load balancers: 200 while the server takes work, 503 (route elsewhere) when its queue is
/// 90% full, its browser is down or the machine is low on memory; the body has the figures (and
/// the reasons) either way.
#[utoipa::path(
    get,
    path = "/v1/pressure",
    tag = "operations",
    summary = "Whether the server takes work now, and why not (open to all)",
    responses(
        (status = 200, description = "Accepting: the queue, memory and browser figures", body = serde_json::Value),
        (status = 503, description = "Not accepting, with `reasons`", body = serde_json::Value),
    )
)]
pub async fn pressure(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let queue = state.executor.scheduler().status();
    let shards_up = state.executor.shards().up();
    let browser_up = shards_up > 0;
    let memory = Memory::now();
    let mut reasons = Vec::new();
    if !browser_up {
        reasons.push("browser_down");
    }
    if queue.queued * 10 >= queue.queue_capacity * 9 {
        reasons.push("queue_full");
    }
    if memory.is_low() {
        reasons.push("memory_low");
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "accepting": status == StatusCode::OK,
        "reasons": reasons,
        "queue": queue,
        "browser": if browser_up { "connected" } else { "down" },
        "shards": state.executor.shards().len(),
        "shards_up": shards_up,
        "pool": state.executor.shards().pool_status(),
        "memory": {
            "host_rss_bytes": memory.host_rss,
            "available_bytes": memory.available,
            "total_bytes": memory.total,
            "plugin_bytes": state.plugins().usage_now().memory_bytes,
        },
    });
    (status, Json(body))
}

/// Isolation keys `/v1/status` lists under `prewarm`.
const STATUS_KEYS: usize = 20;

#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    summary = "The server's state: browsers, pool, queue, plugins",
    responses(
        (status = 200, description = "The figures", body = serde_json::Value),
    )
)]
pub async fn status(State(state): State<AppState>, caller: Caller) -> Json<serde_json::Value> {
    let shards = state.executor.shards().status();
    let mut status = json!({
        "version": env!("CARGO_PKG_VERSION"),
        // Where the shards run: the NUMA nodes, their CPUs and memory.
        "topology": state.executor.shards().topology(),
        "browsers": {
            "connected": state.executor.shards().up(),
            "restarts": shards.iter().map(|shard| shard.browser.restarts).sum::<u64>(),
        },
        // Every shard's pool added up; each shard's own is under `shards`.
        "pool": state.executor.shards().pool_status(),
        "shards": shards,
        "scheduler": state.executor.scheduler().status(),
        // The keys jobs are arriving for, busiest first, and the pages kept warm for each.
        "prewarm": state.executor.scheduler().demand().into_iter().take(STATUS_KEYS).collect::<Vec<_>>(),
        "jobs": match state.jobs.status().await {
            Ok(jobs) => json!(jobs),
            Err(error) => json!({ "error": error.to_string() }),
        },
        "plugin_host": state.plugins().usage_now(),
        // The latest version of each; `/v1/plugins` has the details.
        "plugins": state.plugins().catalog().iter().filter_map(|versions| versions.last()).map(|plugin| json!({
            "name": plugin.name(),
            "version": plugin.version().to_string(),
            "source": plugin.source(),
            "roles": plugin.roles().names(),
        })).collect::<Vec<_>>(),
    });
    if !caller.sees_every_tenant() {
        // Isolation keys are what a job needs to use a context's cookies: only the admin token
        // sees them.
        status["prewarm"] = json!("shown to the admin token only");
    }
    Json(status)
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (open to all)",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
