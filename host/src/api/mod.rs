//! api: the HTTP surface (axum). Parses requests strictly, applies the URL policy, turns a request into
//! a [`RenderJob`](crate::render::RenderJob), and maps every outcome to a response; errors go through
//! [`ApiError`] so they all have the same JSON shape.
//!
//! [`app`] builds the router from shared state, so tests drive it with `oneshot` or a real socket alike.

mod auth;
mod error;
mod jobs;
mod ops;
mod plugins;
mod render;
mod scheduler;
pub mod url_policy;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

pub use error::ApiError;
pub use plugins::{MANIFEST_HEADER, PathParam, PluginEntry};

use crate::config::Settings;
use crate::metrics::{EndpointLabels, Metrics, RequestLabels};
use crate::plugin::PluginHost;

/// Everything a handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Settings,
    /// A browser, pool and renderer per NUMA node.
    pub shards: crate::shard::Shards,
    pub plugins: PluginHost,
    pub scheduler: crate::sched::Scheduler,
    pub jobs: crate::sched::Jobs,
    pub webhooks: crate::sched::Webhooks,
    pub metrics: Metrics,
}

/// The router with every route, the body limit and the metrics middleware.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/screenshot", post(render::screenshot))
        .route("/v1/pdf", post(render::pdf))
        .route("/v1/content", post(render::content))
        .route("/v1/scrape", post(render::scrape))
        .route("/v1/run/{plugin}", post(render::run_plugin))
        .route("/v1/jobs", post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .route("/v1/jobs/{id}/result", get(jobs::result_of))
        .route("/v1/plugins", get(plugins::list))
        .route(
            "/v1/plugins/{name}",
            get(plugins::describe)
                .put(plugins::upload)
                .delete(plugins::delete),
        )
        .route("/health", get(ops::health))
        .route("/v1/pressure", get(ops::pressure))
        .route("/v1/scheduler", get(scheduler::show))
        .route(
            "/v1/scheduler/scorer",
            put(scheduler::set_scorer).delete(scheduler::clear_scorer),
        )
        .route("/v1/status", get(ops::status))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::render_access,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

/// Counts every request by route and status, and times it.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_seconds
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
