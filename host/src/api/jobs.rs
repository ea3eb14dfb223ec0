//! Async jobs: `POST /v1/jobs` (202 with the job's id and `Location`), `GET /v1/jobs/{id}` (state,
//! timings, result or error), `GET /v1/jobs/{id}/result` (the output itself, as the synchronous
//! endpoint would have answered it) and `DELETE /v1/jobs/{id}` (cancel a queued or running job, or
//! forget a finished one).
//!
//! A job's body is any render endpoint's body plus `plugin` and an optional `webhook` URL that gets
//! the job's document when it ends. Its `queue_timeout_ms` may be up to a day (default
//! `--job-queue-timeout-ms`, an hour): it waits in the store. `plugin` is `screenshot` or `pdf` (with those endpoints' checked
//! `options`), or any extractor plugin, run as `/v1/run/{plugin}` runs it (`content` and `scrape`
//! included). The job is checked as its endpoint would check it and written to the store (or
//! refused with 429 when the store's queue is full) before the 202; `jobs/` runs it from there, on
//! this host or another.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::endpoints::output_headers;
use super::request::{Endpoint, RenderBody, fields_of, job_for};
use super::tenants::Caller;
use super::{ApiError, ApiSettings, AppState, IncomingTrace, PathParam};
use crate::job::{Job, Target};
use crate::jobs::{JobError, Outcome, Submission};
use crate::telemetry;

#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    summary = "Store a render to run later; follow it at `Location`",
    request_body(content = serde_json::Value, description = "A render request as the endpoints take it, plus `plugin` (screenshot, pdf, content, markdown, scrape, or an extractor's name), and optionally `webhook` (an http(s) URL the finished job's document is posted to, signed) and `queue_timeout_ms` (up to a day)"),
    responses(
        (status = 202, description = "The job's document; `Location` is where to follow it", body = serde_json::Value),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Extension(trace): Extension<IncomingTrace>,
    RenderBody(request): RenderBody,
) -> Result<Response, ApiError> {
    let (job, submission) = async_job(&state, &caller, &trace, request).await?;
    state.admit_by_memory()?;
    caller.take_rate()?;
    let record = state.jobs.submit(job, submission).await?;
    Ok(accepted(
        &format!("/v1/jobs/{}", record.id),
        record.document(),
    ))
}

/// A 202 for what was stored to run later (a job, a batch, a crawl): where to follow it, and its
/// document as it stands.
pub(super) fn accepted(location: &str, document: Value) -> Response {
    (
        StatusCode::ACCEPTED,
        [(
            header::LOCATION,
            HeaderValue::from_str(location).expect("hex ids are valid header values"),
        )],
        Json(document),
    )
        .into_response()
}

/// The body's `webhook`, taken out of it and checked as a page's URL would be: where the end of a
/// job, a batch or a crawl is posted.
pub(super) async fn take_webhook(
    state: &AppState,
    fields: &mut serde_json::Map<String, Value>,
) -> Result<Option<String>, ApiError> {
    match fields.remove("webhook") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(url)) => state
            .settings
            .url_policy
            .check(&url)
            .await
            .map(|url| Some(url.to_string()))
            .map_err(|error| ApiError::bad_request("invalid_webhook", error.to_string())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_webhook",
            "`webhook` must be an http or https URL",
        )),
    }
}

/// An async job's body made a job, checked as its endpoint would check it, and what its document
/// says of how it was asked for.
pub(super) async fn async_job(
    state: &AppState,
    caller: &Caller,
    trace: &IncomingTrace,
    mut request: Value,
) -> Result<(Job, Submission), ApiError> {
    let fields = fields_of(&mut request)?;
    let plugin = match fields.remove("plugin") {
        Some(Value::String(plugin)) => plugin,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`plugin` must be a string: screenshot, pdf, content, scrape or a plugin's name",
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give `plugin`: screenshot, pdf, content, scrape or a plugin's name",
            ));
        }
    };
    let webhook = take_webhook(state, fields).await?;
    // An async job waits in the store, with a budget of its own (up to a day).
    let queue_timeout = match fields.remove("queue_timeout_ms") {
        None | Some(Value::Null) => state.settings.async_queue_timeout,
        Some(value) => match value.as_u64() {
            Some(ms)
                if ms > 0 && Duration::from_millis(ms) <= ApiSettings::MAX_ASYNC_QUEUE_TIMEOUT =>
            {
                Duration::from_millis(ms)
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!(
                        "queue_timeout_ms must be a positive number of milliseconds, at most {} for an async job",
                        ApiSettings::MAX_ASYNC_QUEUE_TIMEOUT.as_millis()
                    ),
                ));
            }
        },
    };
    let mut job = job_for(state, caller, Endpoint::for_job(&plugin), request).await?;
    job.queue_timeout = queue_timeout;
    // It runs later, maybe elsewhere: its run continues this request's trace.
    job.traceparent = telemetry::traceparent_of(&tracing::Span::current(), trace.traceparent());
    let submission = Submission {
        plugin,
        tenant: job.tenant.clone(),
        class: job.class,
        number: job.number,
        url: match &job.target {
            Target::Url(url) => Some(url.clone()),
            Target::Html(_) | Target::NoPage => None,
        },
        webhook,
    };
    Ok((job, submission))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    summary = "A job's document: its state, and its result or error",
    params(("id" = String, Path, description = "The id `POST` answered with")),
    responses(
        (status = 200, description = "`{id, state, plugin, url, created_at, ..., result | error}`", body = serde_json::Value),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    let record = state.jobs.get(&id).await?;
    owned(&caller, &id, &record.submission.tenant)?;
    Ok(Json(record.document()))
}

/// Another tenant's job is, to this caller, a job that does not exist.
pub(super) fn owned(caller: &Caller, id: &str, tenant: &str) -> Result<(), ApiError> {
    if caller.owns(tenant) {
        Ok(())
    } else {
        Err(JobError::NotFound(id.to_owned()).into())
    }
}

/// The output of a succeeded job with the synchronous endpoint's headers; a failed job's error as
/// the synchronous endpoint would have answered it.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result",
    tag = "jobs",
    summary = "A finished job's output, as the render endpoint would have answered",
    params(("id" = String, Path, description = "The id `POST` answered with")),
    responses(
        (status = 200, description = "The output, with its content type", content((serde_json::Value = "application/json"), (String = "text/plain"), (Vec<u8> = "application/octet-stream"))),
    )
)]
pub async fn result_of(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let (record, body) = state.jobs.result(&id).await?;
    owned(&caller, &id, &record.submission.tenant)?;
    match record.outcome {
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_not_finished",
            format!(
                "job {id} is {}; its result is here once it has finished",
                record.state_name()
            ),
        )),
        Some(Outcome::Succeeded(result)) => {
            let headers = output_headers(
                &result.content_type,
                result.page_status,
                &result.page_url,
                &result.page_dialogs,
                &result.page_warnings,
                result.plugin_fuel,
                result.plugin_ms,
            );
            Ok((headers, body.unwrap_or_default()).into_response())
        }
        Some(Outcome::Evicted { bytes, .. }) => Err(ApiError::new(
            StatusCode::GONE,
            "result_evicted",
            format!(
                "job {id} succeeded, but its result ({bytes} bytes) was dropped to keep results within --job-results-max-mib"
            ),
        )),
        Some(Outcome::Cancelled) => Err(ApiError::new(
            StatusCode::GONE,
            "job_cancelled",
            format!("job {id} was cancelled"),
        )),
        Some(Outcome::Failed(failure)) => {
            let status =
                StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({ "error": { "code": failure.code, "message": failure.message } });
            Ok((status, Json(body)).into_response())
        }
    }
}

/// Cancels a queued or running job (it ends `cancelled`; a running job's plugin stops and its page
/// is reset), or forgets a finished one and its result.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    summary = "Cancel a job that has not finished",
    params(("id" = String, Path, description = "The id `POST` answered with")),
    responses(
        (status = 200, description = "The job's document", body = serde_json::Value),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    if let Caller::Tenant(_) = caller {
        owned(&caller, &id, &state.jobs.get(&id).await?.submission.tenant)?;
    }
    Ok(Json(state.jobs.cancel(&id).await?.document()))
}
