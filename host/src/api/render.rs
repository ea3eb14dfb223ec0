//! `POST /v1/screenshot`, `/v1/pdf`, `/v1/content`, `/v1/scrape` and `/v1/run/{plugin}`: the request
//! bodies, their validation, and the responses.
//!
//! Every endpoint becomes a [`RenderJob`] whose output is an extractor plugin: the built-in
//! `screenshot`, `pdf`, `content` and `scrape` for the named endpoints, any extractor for `/v1/run`.
//! The named endpoints still parse their options with the host's types first, so a typo is a 400
//! before any browser work, and then hand the plugin the checked options as its params.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::{ApiError, AppState, url_policy};
use crate::page::options::{
    ContentOptions, GotoOptions, PageOptions, PdfOptions, ScreenshotOptions,
};
use crate::plugin::PluginCall;
use crate::render::{NativeOutput, Output, RenderError, RenderJob, Rendered, RenderedBody, Target};
use crate::sched::{Admission, Class, Queued};

/// What every render request has: the page to load, how to load it, and the time budget.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest<O> {
    /// The page to render; exactly one of `url` and `html`.
    pub url: Option<String>,
    /// An HTML document to render instead of a URL.
    pub html: Option<String>,
    #[serde(default)]
    pub goto: GotoOptions,
    #[serde(default)]
    pub page: PageOptions,
    /// The endpoint's options (for `/v1/run`, the plugin's params).
    #[serde(default, alias = "params")]
    pub options: O,
    /// Page-script plugins to apply, in order.
    #[serde(default)]
    pub scripts: Vec<ScriptRef>,
    /// The whole job's time budget in milliseconds (server default and maximum apply). It starts
    /// when the job leaves the queue.
    pub timeout_ms: Option<u64>,
    /// Who the job is for: tenants take turns for run slots. Default `default`.
    pub tenant: Option<String>,
    #[serde(default)]
    pub priority: PriorityRequest,
    /// How long the job may wait for a run slot, in milliseconds (server default and maximum apply).
    pub queue_timeout_ms: Option<u64>,
}

/// `{"class": "urgent" | "hot" | "cold", "number": -50..=50}`, both optional (hot, 0).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    pub class: Option<Class>,
    #[serde(default)]
    pub number: i8,
}

/// A job ready for the scheduler: what it will run, how it is queued, and its run-time budget,
/// which starts when it leaves the queue.
pub struct QueuedJob {
    pub job: RenderJob,
    pub admission: Admission,
    pub run_timeout: Duration,
}

/// A page-script plugin and its params: `"name"` or `{"plugin": "name", "params": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ScriptRef {
    Name(String),
    WithParams(ScriptWithParams),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptWithParams {
    pub plugin: String,
    #[serde(default)]
    pub params: serde_json::Value,
}

/// The raw request body, with a too-large body answered as a JSON 413 like every other error.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the request body is larger than this server accepts (--max-body-bytes)",
                    )
                } else {
                    ApiError::bad_request("invalid_request", rejection.body_text())
                }
            })
    }
}

/// Parses a body as JSON whatever its content type (curl's `-d` says form-urlencoded), with serde's
/// message, which names an unknown or mistyped field and where it is.
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("invalid_request", format!("invalid request body: {error}"))
    })
}

/// Builds and validates the job for `request`, with `output` made from the request's options.
async fn job<O>(
    state: &AppState,
    request: RenderRequest<O>,
    output: impl FnOnce(O) -> Result<Output, ApiError>,
) -> Result<QueuedJob, ApiError> {
    let target = match (request.url, request.html) {
        (Some(url), None) => Target::Url(
            url_policy::check(&url, state.settings.deny_private_networks)
                .await?
                .into(),
        ),
        (None, Some(html)) => Target::Html(html),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give either `url` or `html`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give `url` or `html`",
            ));
        }
    };
    let timeout = budget(
        state,
        "timeout_ms",
        request.timeout_ms,
        state.settings.job_timeout,
    )?;
    let queue_timeout = budget(
        state,
        "queue_timeout_ms",
        request.queue_timeout_ms,
        state.settings.queue_timeout,
    )?;
    let mut admission = admission(request.tenant, request.priority, queue_timeout)?;
    let scripts = request
        .scripts
        .into_iter()
        .map(|script| {
            let (name, params) = match script {
                ScriptRef::Name(name) => (name, serde_json::Value::Null),
                ScriptRef::WithParams(script) => (script.plugin, script.params),
            };
            plugin_call(state, &name, &params)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let job = RenderJob {
        id: crate::render::next_job_id(),
        target,
        goto: request.goto,
        page: request.page,
        scripts,
        output: output(request.options)?,
        deadline: Instant::now() + timeout,
        priority: crate::sched::Priority::DEFAULT,
    };
    job.validate()?;
    admission.url = match &job.target {
        Target::Url(url) => url.clone(),
        Target::Html(_) => "about:blank".into(),
    };
    admission.origin = crate::sched::origin_of(&admission.url);
    if let Some(key) = &job.page.isolation_key {
        admission.isolation_key = key.as_str().into();
    }
    admission.plugin = match &job.output {
        Output::Plugin(call) => Some(call.plugin.name().to_owned()),
        Output::Native(_) => None,
    };
    Ok(QueuedJob {
        job,
        admission,
        run_timeout: timeout,
    })
}

/// A time budget from the request (positive, at most `--max-job-timeout-ms`) or the default.
fn budget(
    state: &AppState,
    field: &str,
    requested: Option<u64>,
    default: Duration,
) -> Result<Duration, ApiError> {
    let max = state.settings.max_job_timeout;
    match requested {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request(
            "invalid_request",
            format!("{field} must be positive"),
        )),
        Some(ms) if Duration::from_millis(ms) > max => Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "{field} {ms} is above this server's maximum of {}",
                max.as_millis()
            ),
        )),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// The job's place in the scheduler: its tenant (1-64 of letters, digits, `.`, `_`, `-`), class and
/// number (-50..=50), and its queue deadline.
fn admission(
    tenant: Option<String>,
    priority: PriorityRequest,
    queue_timeout: Duration,
) -> Result<Admission, ApiError> {
    let tenant = tenant.unwrap_or_else(|| "default".to_owned());
    let tenant_ok = (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if !tenant_ok {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`tenant` must be 1-64 of letters, digits, `.`, `_` and `-`",
        ));
    }
    if !(-50..=50).contains(&priority.number) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("priority.number {} is outside -50..=50", priority.number),
        ));
    }
    Ok(Admission {
        tenant: tenant.into(),
        class: priority.class.unwrap_or(Class::Hot),
        number: priority.number,
        ..Admission::new("", Instant::now() + queue_timeout)
    })
}

/// The registered plugin `name` with `params` as its JSON params.
fn plugin_call(
    state: &AppState,
    name: &str,
    params: &impl serde::Serialize,
) -> Result<PluginCall, ApiError> {
    let mut params = serde_json::to_string(params).map_err(|error| {
        ApiError::bad_request("invalid_request", format!("invalid params: {error}"))
    })?;
    if params == "null" {
        // No params given: the plugin sees an empty object, so its error names a missing field.
        params = "{}".to_owned();
    }
    Ok(PluginCall {
        plugin: state.plugins.get(name)?,
        params,
    })
}

/// A built-in endpoint's output: the named built-in plugin, or the native operation with
/// `--native-builtins`.
fn builtin<O: serde::Serialize>(
    state: &AppState,
    plugin: &str,
    options: O,
    native: impl FnOnce(O) -> NativeOutput,
) -> Result<Output, ApiError> {
    if state.settings.native_builtins {
        Ok(Output::Native(native(options)))
    } else {
        Ok(Output::Plugin(plugin_call(state, plugin, &options)?))
    }
}

/// What a request asks for: a named endpoint's output, or an extractor plugin's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Endpoint<'a> {
    Screenshot,
    Pdf,
    Content,
    /// `/v1/scrape` (the `scrape` plugin) and `/v1/run/{plugin}`.
    Plugin(&'a str),
}

impl<'a> Endpoint<'a> {
    /// An async job's `plugin`: `screenshot` and `pdf` get their endpoints' checked options, any
    /// other name (the built-in `content` and `scrape` included) is run as `/v1/run/{plugin}` runs it.
    pub fn for_job(plugin: &'a str) -> Self {
        match plugin {
            "screenshot" => Self::Screenshot,
            "pdf" => Self::Pdf,
            plugin => Self::Plugin(plugin),
        }
    }
}

/// The job for `endpoint` from a request body. The named endpoints parse their options with the
/// host's types first, so a typo is a 400 before any browser work; a plugin gets `params` (or
/// `options`) as its params.
pub(super) async fn job_for(
    state: &AppState,
    endpoint: Endpoint<'_>,
    body: serde_json::Value,
) -> Result<QueuedJob, ApiError> {
    fn request<O: DeserializeOwned + Default>(
        body: serde_json::Value,
    ) -> Result<RenderRequest<O>, ApiError> {
        serde_json::from_value(body).map_err(|error| {
            ApiError::bad_request("invalid_request", format!("invalid request body: {error}"))
        })
    }
    match endpoint {
        Endpoint::Screenshot => {
            job(state, request::<ScreenshotOptions>(body)?, |options| {
                options.validate()?;
                builtin(state, "screenshot", options, NativeOutput::Screenshot)
            })
            .await
        }
        Endpoint::Pdf => {
            job(state, request::<PdfOptions>(body)?, |options| {
                options.validate()?;
                builtin(state, "pdf", options, NativeOutput::Pdf)
            })
            .await
        }
        Endpoint::Content => {
            job(state, request::<ContentOptions>(body)?, |options| {
                builtin(state, "content", options, NativeOutput::Content)
            })
            .await
        }
        Endpoint::Plugin(plugin) => {
            job(state, request::<serde_json::Value>(body)?, |params| {
                Ok(Output::Plugin(plugin_call(state, plugin, &params)?))
            })
            .await
        }
    }
}

/// Waits for a run slot in the scheduler's order, then renders with the run budget starting now.
async fn run(state: &AppState, queued: QueuedJob) -> Result<Rendered, ApiError> {
    let waiting = state.scheduler.enqueue(&queued.admission).await?;
    run_queued(state, queued, waiting, || {}).await
}

/// Waits for the run slot of a job already in the queue, calls `started` when it has one, then
/// renders with the run budget starting now, and feeds the outcome to the scheduler's statistics.
pub(super) async fn run_queued(
    state: &AppState,
    queued: QueuedJob,
    waiting: Queued,
    started: impl FnOnce(),
) -> Result<Rendered, ApiError> {
    let QueuedJob {
        mut job,
        admission,
        run_timeout,
    } = queued;
    let slot = waiting.slot().await?;
    started();
    let began = Instant::now();
    job.deadline = began + run_timeout;
    job.priority = slot.priority();
    // Placed only now that it may run, on the shard best placed for it at this moment.
    let placed = state.shards.place(
        &admission.isolation_key,
        state.scheduler.statistics().predicted_ms(&admission.origin),
        state.scheduler.limit(),
    );
    // Boxed: a job waiting in the queue then holds a pointer, not the render's whole state, which
    // matters with thousands of jobs waiting.
    let rendered = Box::pin(placed.shard().renderer.render(&job)).await;
    let origin_failed = rendered.as_ref().is_err_and(RenderError::origin_failed);
    state
        .scheduler
        .finished(&admission, began.elapsed(), origin_failed);
    let placed_on = placed.shard().index;
    drop(placed);
    drop(slot);
    let rendered = rendered?;
    tracing::debug!(
        job = job.id,
        shard = placed_on,
        queued_ms = crate::render::millis(began - admission.received_at),
        ran_ms = crate::render::millis(began.elapsed()),
        url = %rendered.navigation.url,
        "rendered"
    );
    Ok(rendered)
}

/// A render endpoint's job, run now.
async fn endpoint(
    state: &AppState,
    endpoint: Endpoint<'_>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let job = job_for(state, endpoint, parse(body)?).await?;
    Ok(response(run(state, job).await?))
}

pub async fn screenshot(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    endpoint(&state, Endpoint::Screenshot, &body).await
}

pub async fn pdf(State(state): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    endpoint(&state, Endpoint::Pdf, &body).await
}

pub async fn content(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    endpoint(&state, Endpoint::Content, &body).await
}

pub async fn scrape(State(state): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    endpoint(&state, Endpoint::Plugin("scrape"), &body).await
}

/// `POST /v1/run/{plugin}`: any extractor, with `params` (or `options`) as its params.
pub async fn run_plugin(
    State(state): State<AppState>,
    super::PathParam(plugin): super::PathParam,
    Body(body): Body,
) -> Result<Response, ApiError> {
    endpoint(&state, Endpoint::Plugin(&plugin), &body).await
}

/// What a render produced, as the response carries it: the body and its content type, the page's
/// final URL and HTTP status, and what the plugins cost.
pub(super) struct Produced {
    pub content_type: HeaderValue,
    pub body: Vec<u8>,
    pub page_status: u16,
    pub page_url: String,
    pub usage: Option<crate::plugin::Usage>,
}

impl From<Rendered> for Produced {
    fn from(rendered: Rendered) -> Self {
        let navigation = rendered.navigation;
        let (content_type, body) = match rendered.body {
            RenderedBody::Bytes {
                content_type,
                bytes,
            } => (
                // A plugin names its own content type; one that is not a valid header value is
                // not served.
                HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                bytes,
            ),
            RenderedBody::Json(json) => (
                HeaderValue::from_static("application/json"),
                json.into_bytes(),
            ),
            RenderedBody::Text(text) => (
                HeaderValue::from_static("text/plain; charset=utf-8"),
                text.into_bytes(),
            ),
            // The native content path: the same JSON the content plugin returns.
            RenderedBody::Html(html) => (
                HeaderValue::from_static("application/json"),
                serde_json::json!({
                    "url": navigation.url,
                    "status": navigation.status,
                    "html": html,
                })
                .to_string()
                .into_bytes(),
            ),
        };
        Self {
            content_type,
            body,
            page_status: navigation.status,
            page_url: navigation.url,
            usage: rendered.usage,
        }
    }
}

/// The response headers for a produced output: the content type, the page's final URL and HTTP
/// status, and the plugins' cost.
pub(super) fn output_headers(
    content_type: HeaderValue,
    page_status: u16,
    page_url: &str,
    fuel: Option<u64>,
    plugin_ms: Option<f64>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert("x-pagewright-page-status", HeaderValue::from(page_status));
    if let Ok(url) = HeaderValue::from_str(page_url) {
        headers.insert("x-pagewright-page-url", url);
    }
    if let Some(fuel) = fuel {
        headers.insert("x-pagewright-plugin-fuel", HeaderValue::from(fuel));
    }
    if let Some(ms) = plugin_ms
        && let Ok(value) = HeaderValue::from_str(&format!("{ms:.3}"))
    {
        headers.insert("x-pagewright-plugin-ms", value);
    }
    headers
}

fn response(rendered: Rendered) -> Response {
    let produced = Produced::from(rendered);
    let headers = output_headers(
        produced.content_type,
        produced.page_status,
        &produced.page_url,
        produced.usage.map(|usage| usage.fuel),
        produced
            .usage
            .map(|usage| usage.wall.as_secs_f64() * 1000.0),
    );
    (headers, produced.body).into_response()
}
