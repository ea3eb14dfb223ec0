//! Operational endpoints: `/health` for load balancers, `/v1/status` for people, `/metrics` for
//! Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::{ApiError, AppState};
use crate::browser::BrowserState;

/// 200 while a browser is connected, 503 otherwise.
pub async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.browser.current() {
        Some(_) => Ok(Json(json!({ "status": "ok" }))),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "browser_unavailable",
            "the browser is not connected",
        )),
    }
}

/// For load balancers: 200 while the server takes work, 503 (route elsewhere) when its queue is
/// 90% full or its browser is down; the body has the figures either way.
pub async fn pressure(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let queue = state.scheduler.status();
    let browser_up = state.browser.current().is_some();
    let queue_full = queue.queued * 10 >= queue.queue_capacity * 9;
    let status = if browser_up && !queue_full {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let pool = state.pool.status();
    let body = json!({
        "accepting": status == StatusCode::OK,
        "queue": queue,
        "browser": if browser_up { "connected" } else { "down" },
        "pool": pool,
        "plugin_memory_bytes": state.plugins.usage_now().memory_bytes,
    });
    (status, Json(body))
}

pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let browser = match state.browser.state() {
        BrowserState::Starting => json!({ "state": "starting" }),
        BrowserState::Ready(session) => json!({
            "state": if session.is_alive() { "connected" } else { "down" },
            "generation": session.generation,
            "pid": session.pid,
            "version": session.version,
        }),
        BrowserState::Down { reason } => json!({ "state": "down", "reason": reason }),
        BrowserState::Stopped => json!({ "state": "stopped" }),
    };
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "browser": { "restarts": state.browser.restarts(), "current": browser },
        "pool": state.pool.status(),
        "scheduler": state.scheduler.status(),
        "plugin_host": state.plugins.usage_now(),
        // The latest version of each; `/v1/plugins` has the details.
        "plugins": state.plugins.catalog().iter().filter_map(|versions| versions.last()).map(|plugin| json!({
            "name": plugin.name(),
            "version": plugin.version().to_string(),
            "source": plugin.source(),
            "roles": plugin.roles().names(),
        })).collect::<Vec<_>>(),
    }))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
