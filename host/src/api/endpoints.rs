//! `POST /v1/screenshot`, `/v1/pdf`, `/v1/content`, `/v1/markdown`, `/v1/scrape` and
//! `/v1/run/{plugin}`: the body becomes a job (`request.rs`), the executor runs it now (or the
//! response cache answers it, `cache.rs`), and the output goes back with the page's final URL and
//! status and what the plugins cost as headers.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use std::time::Duration;

use axum::body::Bytes;

use super::cache::{CacheRequest, CachedResponse, ResponseCache};
use super::request::{Endpoint, RenderBody, job_for};
use super::tenants::Caller;
use super::{ApiError, AppState, PathParam};
use crate::exec::Rendered;
use crate::plugin::Usage;

/// A render endpoint's job, run now; or, for a request that asks for the cache, answered from a
/// stored response or an identical request's render where there is one (`cache.rs`).
async fn render(
    state: &AppState,
    caller: &Caller,
    endpoint: Endpoint<'_>,
    mut body: serde_json::Value,
) -> Result<Response, ApiError> {
    let cache = take_cache(&mut body)?;
    let job = job_for(state, caller, endpoint, body).await?;
    state.admit_by_memory()?;
    caller.take_rate()?;
    let _in_flight = caller.enter()?;
    let Some(ttl) = cache else {
        let (headers, body) = response_parts(state.executor.run(job).await?);
        return Ok((headers, body).into_response());
    };
    let key = ResponseCache::key(&job);
    let executor = state.executor.clone();
    let render = async move {
        let (headers, body) = response_parts(executor.run(job).await?);
        Ok(CachedResponse { headers, body })
    };
    let (cached, outcome) = state.cache.respond(key, ttl, render).await?;
    let mut headers = cached.headers.clone();
    outcome.mark(&mut headers);
    Ok((headers, cached.body.clone()).into_response())
}

/// The request's `cache` field, taken out of the body (a job does not carry it).
fn take_cache(body: &mut serde_json::Value) -> Result<Option<Duration>, ApiError> {
    let Some(cache) = body
        .as_object_mut()
        .and_then(|fields| fields.remove("cache"))
    else {
        return Ok(None);
    };
    let cache: CacheRequest = serde_json::from_value(cache).map_err(|error| {
        ApiError::bad_request("invalid_request", format!("invalid cache: {error}"))
    })?;
    cache.ttl().map(Some)
}

#[utoipa::path(
    post,
    path = "/v1/screenshot",
    tag = "render",
    summary = "A screenshot of the page",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    request_body = crate::api::request::RenderRequest<crate::job::options::ScreenshotOptions>,
    responses(
        (status = 200, description = "The image", content((Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"))),
    )
)]
pub async fn screenshot(
    State(state): State<AppState>,
    caller: Caller,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Screenshot, body).await
}

#[utoipa::path(
    post,
    path = "/v1/pdf",
    tag = "render",
    summary = "The page printed to PDF",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    request_body = crate::api::request::RenderRequest<crate::job::options::PdfOptions>,
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>),
    )
)]
pub async fn pdf(
    State(state): State<AppState>,
    caller: Caller,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Pdf, body).await
}

#[utoipa::path(
    post,
    path = "/v1/content",
    tag = "render",
    summary = "The page's HTML after it loaded",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    request_body = crate::api::request::RenderRequest<crate::job::options::ContentOptions>,
    responses(
        (status = 200, description = "`{url, status, html}`", body = serde_json::Value),
    )
)]
pub async fn content(
    State(state): State<AppState>,
    caller: Caller,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Content, body).await
}

/// `POST /v1/debug`: what the page did while it loaded, as JSON: its console messages, the
/// exceptions its scripts did not catch, and a HAR log of its requests (`options`: `{"bodies":
/// true, "max_body_bytes": N}`).
#[utoipa::path(
    post,
    path = "/v1/debug",
    tag = "render",
    summary = "What the page did: requests (HAR), console, errors",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    request_body = crate::api::request::RenderRequest<crate::job::options::DebugOptions>,
    responses(
        (status = 200, description = "The page's record, with a HAR log", body = serde_json::Value),
    )
)]
pub async fn debug(
    State(state): State<AppState>,
    caller: Caller,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Debug, body).await
}

/// `POST /v1/markdown`: the page as Markdown (the built-in `markdown` plugin; `options`:
/// `{"main_content": true}` for the main content only).
#[utoipa::path(
    post,
    path = "/v1/markdown",
    tag = "render",
    summary = "The page's main content as Markdown (the `markdown` plugin)",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    request_body = crate::api::request::RenderRequest<serde_json::Value>,
    responses(
        (status = 200, description = "Markdown", content_type = "text/markdown", body = String),
    )
)]
pub async fn markdown(
    State(state): State<AppState>,
    caller: Caller,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Plugin("markdown"), body).await
}

#[utoipa::path(
    post,
    path = "/v1/scrape",
    tag = "render",
    summary = "Fields scraped by CSS selector (the `scrape` plugin)",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    request_body = crate::api::request::RenderRequest<serde_json::Value>,
    responses(
        (status = 200, description = "The fields, as JSON", body = serde_json::Value),
    )
)]
pub async fn scrape(
    State(state): State<AppState>,
    caller: Caller,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Plugin("scrape"), body).await
}

/// `POST /v1/run/{plugin}`: any extractor, with `params` (or `options`) as its params.
#[utoipa::path(
    post,
    path = "/v1/run/{plugin}",
    tag = "render",
    summary = "An extractor plugin's output on the page",
    description = "The body is JSON (or multipart: a `request` part with the JSON and the HTML's files); exactly one of `url` and `html`. `cache: {ttl_ms}` answers identical requests from one render; `params` is another name for `options`.",
    params(("plugin" = String, Path, description = "A plugin's name, or `name@version`")),
    request_body = crate::api::request::RenderRequest<serde_json::Value>,
    responses(
        (status = 200, description = "What the plugin produced: JSON, text, or bytes with its content type", content((serde_json::Value = "application/json"), (String = "text/plain"), (Vec<u8> = "application/octet-stream"))),
    )
)]
pub async fn run_plugin(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(plugin): PathParam,
    RenderBody(body): RenderBody,
) -> Result<Response, ApiError> {
    render(&state, &caller, Endpoint::Plugin(&plugin), body).await
}

/// The response headers for an output: its content type, the page's final URL and HTTP status,
/// the dialogs it opened and what did not go as asked (JSON arrays, when there were any), and the
/// plugins' cost.
pub(super) fn output_headers(
    content_type: &str,
    page_status: u16,
    page_url: &str,
    page_dialogs: &str,
    page_warnings: &str,
    fuel: Option<u64>,
    plugin_ms: Option<f64>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert("x-pagewright-page-status", HeaderValue::from(page_status));
    if let Ok(url) = HeaderValue::from_str(page_url) {
        headers.insert("x-pagewright-page-url", url);
    }
    if page_dialogs != "[]"
        && let Ok(dialogs) = HeaderValue::from_str(&ascii_json(page_dialogs))
    {
        headers.insert("x-pagewright-page-dialogs", dialogs);
    }
    if page_warnings != "[]"
        && let Ok(warnings) = HeaderValue::from_str(&ascii_json(page_warnings))
    {
        headers.insert("x-pagewright-warnings", warnings);
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

/// JSON text with every character outside printable ASCII escaped (`\uXXXX`), as a header value
/// must be.
fn ascii_json(json: &str) -> String {
    let mut escaped = String::with_capacity(json.len());
    for character in json.chars() {
        if character.is_ascii() && !character.is_ascii_control() {
            escaped.push(character);
        } else {
            let mut units = [0; 2];
            for unit in character.encode_utf16(&mut units) {
                escaped.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    escaped
}

fn response_parts(rendered: Rendered) -> (HeaderMap, Bytes) {
    let usage = rendered.usage;
    let dialogs = serde_json::to_string(&rendered.dialogs).unwrap_or_else(|_| "[]".into());
    let warnings =
        serde_json::to_string(&rendered.navigation.warnings).unwrap_or_else(|_| "[]".into());
    let headers = output_headers(
        rendered.produced.content_type(),
        rendered.navigation.status,
        &rendered.navigation.url,
        &dialogs,
        &warnings,
        usage.map(|usage| usage.fuel),
        usage.as_ref().map(Usage::wall_ms),
    );
    (headers, Bytes::from(rendered.produced.into_bytes()))
}
