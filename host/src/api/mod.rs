//! api: the HTTP surface (axum), and the only part of the host that knows HTTP. A render request is
//! parsed strictly and checked against the URL policy (`request.rs`), becomes a [`Job`], and goes to
//! the executor (`endpoints.rs`) or, for `/v1/jobs`, to the async jobs (`jobs.rs`); the outcome
//! becomes a response. Errors go through [`ApiError`] so they all have the same JSON shape.
//!
//! [`app`] builds the router from shared state, so tests drive it with `oneshot` or a real socket alike.
//!
//! [`Job`]: crate::job::Job

mod auth;
mod batches;
mod cache;
mod crawls;
mod endpoints;
mod error;
mod jobs;
mod merge;
mod openapi;
mod ops;
mod pages;
mod plugins;
mod request;
mod scheduler;
mod server;
mod tenants;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, describe_failure};
pub use plugins::{MANIFEST_HEADER, PathParam, PluginEntry};
pub use server::{ConnectionLimits, serve};
pub use tenants::Tenants;

use crate::exec::Executor;
use crate::jobs::Jobs;
use crate::metrics::{EndpointLabels, Metrics, RequestLabels};
use crate::plugin::PluginHost;
use crate::secret::Secret;
use crate::telemetry;
use crate::url_policy::UrlPolicy;
use cache::ResponseCache;

/// What the API decides: a job's default and largest budgets, the body limit, the URL policy, how
/// the built-in endpoints produce their output, and the tokens.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Time budget of a job that does not ask for one.
    pub job_timeout: Duration,
    /// Largest time (and queue-wait) budget a request may ask for.
    pub max_job_timeout: Duration,
    /// Queue-wait budget of a job that does not ask for one.
    pub queue_timeout: Duration,
    /// Queue-wait budget of an async job that does not ask for one: it waits in the store, where
    /// waiting costs no memory and nobody holds a connection open for it.
    pub async_queue_timeout: Duration,
    /// Largest request body, inline HTML included.
    pub max_body_bytes: usize,
    pub url_policy: UrlPolicy,
    /// Serve the built-in endpoints with the host's page operations instead of the built-in plugins.
    pub native_builtins: bool,
    /// Needed to change plugins and the scorer; without one, the registry is read-only.
    pub admin_token: Option<Secret>,
    /// Needed for every `/v1/` request, if set.
    pub render_token: Option<Secret>,
    /// Tokens that each stand for a tenant, with its classes and limits (`--tokens-file`).
    pub tenants: Option<Arc<Tenants>>,
    /// How many connections, and how long a client may take to send a request's headers.
    pub connections: ConnectionLimits,
    /// Bytes of responses the response cache may hold (0: identical requests still share renders,
    /// none is stored).
    pub cache_max_bytes: usize,
}

impl ApiSettings {
    /// Thirty seconds: what most render APIs give a page, and enough for a heavy one.
    pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);
    /// Two minutes: long enough for huge PDFs, short enough that a stuck client frees its slot.
    pub const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(120);
    /// As long as the run budget: a job waiting longer would be answered too late to matter.
    pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
    /// An hour: a backlog of hundreds of thousands of async jobs drains at Chromium's pace.
    pub const ASYNC_QUEUE_TIMEOUT: Duration = Duration::from_secs(3600);
    /// The longest an async job may ask to wait: a day.
    pub const MAX_ASYNC_QUEUE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
    /// 10 MiB holds any hand-written page; larger documents should be served and rendered by URL.
    pub const MAX_BODY_BYTES: usize = 10 << 20;
    /// 256 MiB: a thousand full-page screenshots, or a hundred thousand small JSON results.
    pub const CACHE_MAX_BYTES: usize = 256 << 20;
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            job_timeout: Self::JOB_TIMEOUT,
            max_job_timeout: Self::MAX_JOB_TIMEOUT,
            queue_timeout: Self::QUEUE_TIMEOUT,
            async_queue_timeout: Self::ASYNC_QUEUE_TIMEOUT,
            max_body_bytes: Self::MAX_BODY_BYTES,
            url_policy: UrlPolicy::default(),
            native_builtins: false,
            admin_token: None,
            render_token: None,
            tenants: None,
            connections: ConnectionLimits::default(),
            cache_max_bytes: Self::CACHE_MAX_BYTES,
        }
    }
}

/// Everything a handler needs. Cheap to clone (axum clones it for every request).
#[derive(Debug, Clone)]
pub struct AppState {
    settings: Arc<ApiSettings>,
    executor: Executor,
    jobs: Jobs,
    metrics: Metrics,
    /// Set while the machine (or container) is low on memory; see [`AppState::admit_by_memory`].
    memory_low: Arc<AtomicBool>,
    /// Responses of render requests that ask for caching, and their renders in flight.
    cache: ResponseCache,
}

impl AppState {
    pub fn new(
        settings: ApiSettings,
        executor: Executor,
        jobs: Jobs,
        metrics: Metrics,
        memory_low: Arc<AtomicBool>,
    ) -> Self {
        Self {
            cache: ResponseCache::new(settings.cache_max_bytes, metrics.clone()),
            settings: Arc::new(settings),
            executor,
            jobs,
            metrics,
            memory_low,
        }
    }

    /// A 503 while memory is low: a render taken on now could get Chromium (or the server) killed
    /// by the kernel, losing every job on it, where refusing one loses nothing.
    fn admit_by_memory(&self) -> Result<(), ApiError> {
        if self.memory_low.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "memory_low",
                "this machine has less than 5% of its memory available; retry shortly or elsewhere \
                 (GET /v1/pressure shows the figures)",
            )
            .retry_after(Duration::from_secs(5)));
        }
        Ok(())
    }

    /// The plugin host, for embedders and the bench that call plugins directly.
    pub fn plugins(&self) -> &PluginHost {
        self.executor.plugins()
    }
}

/// The job a request body asks of `output` (a built-in output, or an extractor plugin's name),
/// checked as `POST /v1/jobs` checks its `plugin` and body, for an open caller: what `pagewright
/// render --urls` runs for each line.
pub async fn job_for_output(
    state: &AppState,
    output: &str,
    body: serde_json::Value,
) -> Result<crate::job::Job, ApiError> {
    let endpoint = request::Endpoint::for_job(output);
    request::job_for(state, &tenants::Caller::Open, endpoint, body).await
}

/// The router with every route, the body limit and the metrics middleware. The API's routes are
/// built from their handlers' OpenAPI descriptions (`routes!`), so each one is in `/openapi.json`.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    let (api, document) = api_routes();
    api.route("/playground", get(pages::playground))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
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
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// Every route of the API, and the OpenAPI document describing them.
fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut document) = documented_routes().split_for_parts();
    openapi::add_shared_responses(&mut document);
    (routes, document)
}

/// Every route of the API, with its OpenAPI description.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(endpoints::screenshot))
        .routes(routes!(endpoints::pdf))
        .routes(routes!(merge::pdf_merge))
        .routes(routes!(endpoints::content))
        .routes(routes!(endpoints::scrape))
        .routes(routes!(endpoints::markdown))
        .routes(routes!(endpoints::debug))
        .routes(routes!(endpoints::run_plugin))
        .routes(routes!(jobs::submit))
        .routes(routes!(batches::submit))
        .routes(routes!(crawls::submit))
        .routes(routes!(batches::show, batches::cancel))
        .routes(routes!(crawls::show, crawls::cancel))
        .routes(routes!(jobs::show, jobs::cancel))
        .routes(routes!(jobs::result_of))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::describe, plugins::upload, plugins::delete))
        .routes(routes!(ops::health))
        .routes(routes!(ops::pressure))
        .routes(routes!(scheduler::show))
        .routes(routes!(scheduler::set_scorer, scheduler::clear_scorer))
        .routes(routes!(ops::status))
        .routes(routes!(ops::metrics))
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

/// The route a request matched (`/v1/jobs/{id}`), or `unmatched`: what metrics and spans are named
/// by, never the raw path, which the caller chooses.
fn route_of(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned())
}

/// The W3C `traceparent` a request came with, for an async job to keep (`jobs.rs`).
#[derive(Debug, Clone)]
pub(super) struct IncomingTrace(Option<String>);

impl IncomingTrace {
    pub(super) fn traceparent(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Runs every request in a server span named after its route (`POST /v1/screenshot`), continuing
/// the trace of the request's `traceparent`; the jobs it runs are its children.
async fn trace_request(mut request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let traceparent = request
        .headers()
        .get(telemetry::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    telemetry::continue_trace(&span, traceparent.as_deref());
    request.extensions_mut().insert(IncomingTrace(traceparent));
    let response = next.run(request).instrument(span.clone()).await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// Counts every request by route and status, and times it.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = route_of(&request);
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
