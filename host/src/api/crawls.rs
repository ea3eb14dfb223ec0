//! Crawls: `POST /v1/crawls` (202 with the crawl's id and `Location`); `GET /v1/crawls/{id}` and
//! `DELETE /v1/crawls/{id}` answer as a batch's (`batches.rs`), as a crawl is a batch that grows.
//!
//! A crawl's body is an async job's body (`POST /v1/jobs`) for its start page (`url`), plus `crawl`,
//! the rules of which links to follow ([`CrawlOptions`]), and `webhook`, the crawl's: it gets the
//! crawl's document once no page is queued or running. Every page gets the request's plugin and
//! options, and is a job of its own whose result is ready as soon as it finishes.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde_json::Value;

use super::batches::{self, Window};
use super::jobs::{accepted, async_job, take_webhook};
use super::request::{RequestBody, fields_of, parse};
use super::tenants::Caller;
use super::{ApiError, AppState, IncomingTrace, PathParam};
use crate::job::Target;
use crate::job::options::CrawlOptions;
use crate::jobs::CrawlSubmission;

#[utoipa::path(
    post,
    path = "/v1/crawls",
    tag = "jobs",
    summary = "Crawl a site from a URL: a batch that grows as links are followed",
    request_body(content = serde_json::Value, description = "`url` (the start), an async job's body (the output for every page), and `crawl`: see `CrawlOptions`"),
    responses(
        (status = 202, description = "The crawl's document (as a batch's); `Location` is where to follow it", body = serde_json::Value),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Extension(trace): Extension<IncomingTrace>,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    let mut request: Value = parse(&body)?;
    let fields = fields_of(&mut request)?;
    for field in ["html", "base_url", "assets", "urls"] {
        if fields.contains_key(field) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("a crawl starts at `url`, and takes no `{field}`"),
            ));
        }
    }
    let rules: CrawlOptions = match fields.remove("crawl") {
        None => serde_json::from_value(serde_json::json!({})).expect("the defaults"),
        Some(rules) => serde_path_to_error::deserialize(rules).map_err(|error| {
            ApiError::bad_request(
                "invalid_request",
                format!(
                    "invalid request body at `crawl.{}`: {}",
                    error.path(),
                    error.inner()
                ),
            )
        })?,
    };
    rules.validate()?;
    let webhook = take_webhook(&state, fields).await?;
    let plugin = fields
        .get("plugin")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (job, submission) = async_job(&state, &caller, &trace, request).await?;
    if !matches!(job.target, Target::Url(_)) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give `url`: the page the crawl starts at",
        ));
    }
    state.admit_by_memory()?;
    caller.take_rate()?;
    let crawl = CrawlSubmission {
        tenant: job.tenant.to_string(),
        plugin,
        webhook,
        rules,
    };
    let record = state.jobs.submit_crawl((job, submission), crawl).await?;
    Ok(accepted(
        &format!("/v1/crawls/{}", record.row.id),
        record.document(),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/crawls/{id}",
    tag = "jobs",
    summary = "A crawl's state, progress, and the pages found so far (as a batch's)",
    params(
        ("id" = String, Path, description = "The id `POST` answered with"),
        ("offset" = Option<u64>, Query, description = "The first item shown"),
        ("limit" = Option<u64>, Query, description = "How many items are shown"),
    ),
    responses(
        (status = 200, description = "`{id, state, progress, items: [...]}`", body = serde_json::Value),
    )
)]
pub async fn show(
    state: State<AppState>,
    caller: Caller,
    id: PathParam,
    window: Result<Query<Window>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    batches::show(state, caller, id, window).await
}

#[utoipa::path(
    delete,
    path = "/v1/crawls/{id}",
    tag = "jobs",
    summary = "Stop a crawl: cancel what has not finished",
    params(("id" = String, Path, description = "The id `POST` answered with")),
    responses(
        (status = 200, description = "The crawl's document", body = serde_json::Value),
    )
)]
pub async fn cancel(
    state: State<AppState>,
    caller: Caller,
    id: PathParam,
) -> Result<Json<Value>, ApiError> {
    batches::cancel(state, caller, id).await
}
