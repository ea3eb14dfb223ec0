//! `POST /v1/screenshot`, `/v1/pdf` and `/v1/content`: the request body, its validation, and the
//! response.

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
use crate::render::{Output, RenderJob, Rendered, RenderedBody, Target};

/// The body of every render endpoint; `O` is the endpoint's output options.
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
    #[serde(default)]
    pub options: O,
    /// The whole job's time budget in milliseconds (server default and maximum apply).
    pub timeout_ms: Option<u64>,
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

async fn job<O>(
    state: &AppState,
    body: &Bytes,
    output: impl FnOnce(O) -> Output,
) -> Result<RenderJob, ApiError>
where
    O: DeserializeOwned + Default,
{
    let request: RenderRequest<O> = parse(body)?;
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
    let job = RenderJob {
        target,
        goto: request.goto,
        page: request.page,
        output: output(request.options),
        deadline: Instant::now() + timeout,
    };
    job.validate()?;
    Ok(job)
}

async fn run(state: &AppState, job: RenderJob) -> Result<Rendered, ApiError> {
    let started = Instant::now();
    let rendered = state.renderer.render(&job).await?;
    tracing::debug!(elapsed = ?started.elapsed(), url = %rendered.navigation.url, "rendered");
    Ok(rendered)
}

pub async fn screenshot(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let job = job::<ScreenshotOptions>(&state, &body, Output::Screenshot).await?;
    Ok(bytes_response(run(&state, job).await?))
}

pub async fn pdf(State(state): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let job = job::<PdfOptions>(&state, &body, Output::Pdf).await?;
    Ok(bytes_response(run(&state, job).await?))
}

pub async fn content(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let job = job::<ContentOptions>(&state, &body, Output::Content).await?;
    let rendered = run(&state, job).await?;
    let html = match rendered.body {
        RenderedBody::Html(html) => html,
        RenderedBody::Bytes { .. } => String::new(),
    };
    Ok(Json(serde_json::json!({
        "url": rendered.navigation.url,
        "status": rendered.navigation.status,
        "html": html,
    }))
    .into_response())
}

/// Image or PDF bytes, with the page's final URL and HTTP status in headers.
fn bytes_response(rendered: Rendered) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-pagewright-page-status",
        HeaderValue::from(rendered.navigation.status),
    );
    if let Ok(url) = HeaderValue::from_str(&rendered.navigation.url) {
        headers.insert("x-pagewright-page-url", url);
    }
    match rendered.body {
        RenderedBody::Bytes {
            content_type,
            bytes,
        } => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            (headers, bytes).into_response()
        }
        RenderedBody::Html(html) => (headers, html).into_response(),
    }
}
