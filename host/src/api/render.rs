//! `POST /v1/screenshot`, `/v1/pdf`, `/v1/content`, `/v1/scrape` and `/v1/run/{plugin}`: the request
//! bodies, their validation, and the responses.
//!
//! Every endpoint becomes a [`RenderJob`] whose output is an extractor plugin: the built-in
//! `screenshot`, `pdf`, `content` and `scrape` for the named endpoints, any extractor for `/v1/run`.
//! The named endpoints still parse their options with the host's types first, so a typo is a 400
//! before any browser work, and then hand the plugin the checked options as its params.

use std::time::Duration;

use axum::Json;
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
use crate::render::{NativeOutput, Output, RenderJob, Rendered, RenderedBody, Target};

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
    /// The whole job's time budget in milliseconds (server default and maximum apply).
    pub timeout_ms: Option<u64>,
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
pub struct Body(Bytes);

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
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
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
) -> Result<RenderJob, ApiError> {
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
    let timeout = match request.timeout_ms {
        Some(0) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "timeout_ms must be positive",
            ));
        }
        Some(ms) if Duration::from_millis(ms) > state.settings.max_job_timeout => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "timeout_ms {ms} is above this server's maximum of {}",
                    state.settings.max_job_timeout.as_millis()
                ),
            ));
        }
        Some(ms) => Duration::from_millis(ms),
        None => state.settings.job_timeout,
    };
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
        id: state.renderer.next_job_id(),
        target,
        goto: request.goto,
        page: request.page,
        scripts,
        output: output(request.options)?,
        deadline: Instant::now() + timeout,
    };
    job.validate()?;
    Ok(job)
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

async fn run(state: &AppState, job: RenderJob) -> Result<Rendered, ApiError> {
    let started = Instant::now();
    let rendered = state.renderer.render(&job).await?;
    tracing::debug!(job = job.id, elapsed = ?started.elapsed(), url = %rendered.navigation.url, "rendered");
    Ok(rendered)
}

pub async fn screenshot(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: RenderRequest<ScreenshotOptions> = parse(&body)?;
    let job = job(&state, request, |options| {
        options.validate()?;
        builtin(&state, "screenshot", options, NativeOutput::Screenshot)
    })
    .await?;
    Ok(response(run(&state, job).await?))
}

pub async fn pdf(State(state): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let request: RenderRequest<PdfOptions> = parse(&body)?;
    let job = job(&state, request, |options| {
        options.validate()?;
        builtin(&state, "pdf", options, NativeOutput::Pdf)
    })
    .await?;
    Ok(response(run(&state, job).await?))
}

pub async fn content(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: RenderRequest<ContentOptions> = parse(&body)?;
    let job = job(&state, request, |options| {
        builtin(&state, "content", options, NativeOutput::Content)
    })
    .await?;
    let rendered = run(&state, job).await?;
    if let RenderedBody::Html(html) = rendered.body {
        // The native path: the same JSON the plugin returns.
        return Ok(Json(serde_json::json!({
            "url": rendered.navigation.url,
            "status": rendered.navigation.status,
            "html": html,
        }))
        .into_response());
    }
    Ok(response(rendered))
}

pub async fn scrape(State(state): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let request: RenderRequest<serde_json::Value> = parse(&body)?;
    let job = job(&state, request, |params| {
        Ok(Output::Plugin(plugin_call(&state, "scrape", &params)?))
    })
    .await?;
    Ok(response(run(&state, job).await?))
}

/// `POST /v1/run/{plugin}`: any extractor, with `params` (or `options`) as its params.
pub async fn run_plugin(
    State(state): State<AppState>,
    super::PathParam(plugin): super::PathParam,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: RenderRequest<serde_json::Value> = parse(&body)?;
    let job = job(&state, request, |params| {
        Ok(Output::Plugin(plugin_call(&state, &plugin, &params)?))
    })
    .await?;
    Ok(response(run(&state, job).await?))
}

/// The output with its content type, the page's final URL and HTTP status, and the plugins' cost.
fn response(rendered: Rendered) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-pagewright-page-status",
        HeaderValue::from(rendered.navigation.status),
    );
    if let Ok(url) = HeaderValue::from_str(&rendered.navigation.url) {
        headers.insert("x-pagewright-page-url", url);
    }
    if let Some(usage) = rendered.usage {
        headers.insert("x-pagewright-plugin-fuel", HeaderValue::from(usage.fuel));
        headers.insert(
            "x-pagewright-plugin-ms",
            HeaderValue::from_str(&format!("{:.3}", usage.wall.as_secs_f64() * 1000.0))
                .unwrap_or(HeaderValue::from_static("0")),
        );
    }
    let (content_type, body) = match rendered.body {
        RenderedBody::Bytes {
            content_type,
            bytes,
        } => (
            // A plugin names its own content type; one that is not a valid header value is not served.
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
        RenderedBody::Html(html) => (
            HeaderValue::from_static("text/html; charset=utf-8"),
            html.into_bytes(),
        ),
    };
    headers.insert(header::CONTENT_TYPE, content_type);
    (headers, body).into_response()
}
