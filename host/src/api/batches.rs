//! Batches: `POST /v1/batches` (202 with the batch's id and `Location`), `GET /v1/batches/{id}`
//! (progress, and each page's job, state and result link, `?offset=&limit=` for a window) and
//! `DELETE /v1/batches/{id}` (cancel the pages not yet finished).
//!
//! A batch's body is an async job's body (`POST /v1/jobs`) with `urls` in place of `url` or `html`:
//! every page gets the same plugin and options, and is a job of its own (`/v1/jobs/{id}`, and its
//! result at `/v1/jobs/{id}/result`). `webhook` is the batch's: it gets the batch's document once
//! every page has finished.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::jobs::{accepted, async_job, owned, take_webhook};
use super::request::{RequestBody, fields_of, parse};
use super::tenants::Caller;
use super::{ApiError, AppState, IncomingTrace, PathParam};
use crate::jobs::{BatchSubmission, MAX_BATCH_PAGES};

/// Pages a batch's document lists unless asked for another window.
const DEFAULT_WINDOW: i64 = 1000;

#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "jobs",
    summary = "Many URLs, each an async job, followed as one",
    request_body(content = serde_json::Value, description = "`urls` (1 to 10000) and an async job's body without `url`: every page gets the same output and options; `webhook` is the batch's"),
    responses(
        (status = 202, description = "The batch's document; `Location` is where to follow it", body = serde_json::Value),
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
    for field in ["url", "html", "base_url", "assets"] {
        if fields.contains_key(field) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("a batch takes `urls`, not `{field}`"),
            ));
        }
    }
    let urls: Vec<String> = match fields.remove("urls") {
        Some(Value::Array(urls)) if (1..=MAX_BATCH_PAGES).contains(&urls.len()) => urls
            .into_iter()
            .enumerate()
            .map(|(index, url)| match url {
                Value::String(url) => Ok(url),
                _ => Err(ApiError::bad_request(
                    "invalid_request",
                    format!("urls[{index}] is not a string"),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("`urls` must be a list of 1 to {MAX_BATCH_PAGES} URLs"),
            ));
        }
    };
    // The batch's webhook, checked as a job's is; the pages have none of their own.
    let webhook = take_webhook(&state, fields).await?;
    let plugin = fields
        .get("plugin")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut pages = Vec::with_capacity(urls.len());
    for (index, url) in urls.into_iter().enumerate() {
        let mut page = request.clone();
        page["url"] = Value::String(url);
        let page = async_job(&state, &caller, &trace, page)
            .await
            .map_err(|error| error.within(&format!("urls[{index}]")))?;
        pages.push(page);
    }
    state.admit_by_memory()?;
    caller.take_rate()?;
    let tenant = pages
        .first()
        .map(|(job, _)| job.tenant.to_string())
        .unwrap_or_default();
    let record = state
        .jobs
        .submit_batch(
            pages,
            BatchSubmission {
                tenant,
                plugin,
                webhook,
            },
        )
        .await?;
    Ok(accepted(
        &format!("/v1/batches/{}", record.row.id),
        record.document(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default)]
    offset: i64,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "jobs",
    summary = "A batch's (or crawl's) state, progress, and its pages",
    params(("id" = String, Path, description = "The id `POST` answered with"), ("offset" = Option<u64>, Query, description = "The first item shown"), ("limit" = Option<u64>, Query, description = "How many items are shown")),
    responses(
        (status = 200, description = "`{id, state, progress, items: [{index, url, state, job, result | error}]}`", body = serde_json::Value),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
    window: Result<Query<Window>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(window) = window
        .map_err(|rejection| ApiError::bad_request("invalid_request", rejection.body_text()))?;
    let limit = window.limit.unwrap_or(DEFAULT_WINDOW);
    if window.offset < 0 || !(1..=MAX_BATCH_PAGES as i64).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("offset must be 0 or more and limit 1 to {MAX_BATCH_PAGES}"),
        ));
    }
    let record = state.jobs.batch(&id, window.offset, limit).await?;
    owned(&caller, &id, &record.row.tenant)?;
    Ok(Json(record.document()))
}

#[utoipa::path(
    delete,
    path = "/v1/batches/{id}",
    tag = "jobs",
    summary = "Cancel what has not finished of a batch or crawl",
    params(("id" = String, Path, description = "The id `POST` answered with")),
    responses(
        (status = 200, description = "The batch's document", body = serde_json::Value),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    let record = state.jobs.batch(&id, 0, 1).await?;
    owned(&caller, &id, &record.row.tenant)?;
    let record = state.jobs.cancel_batch(&id).await?;
    Ok(Json(record.document()))
}
