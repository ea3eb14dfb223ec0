//! Async jobs: `POST /v1/jobs` (202 with the job's id and `Location`), `GET /v1/jobs/{id}` (state,
//! timings, result or error), `GET /v1/jobs/{id}/result` (the output itself, as the synchronous
//! endpoint would have answered it) and `DELETE /v1/jobs/{id}` (cancel a queued or running job, or
//! forget a finished one).
//!
//! A job's body is any render endpoint's body plus `plugin` and an optional `webhook` URL that gets
//! the job's document when it ends. `plugin` is `screenshot` or `pdf` (with those endpoints' checked
//! `options`), or any extractor plugin, run as `/v1/run/{plugin}` runs it (`content` and `scrape`
//! included). The job goes through the same scheduler as the synchronous
//! endpoints: it is admitted (or refused with 429) before the 202.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::render::{Body, Endpoint, Produced, job_for, output_headers, parse, run_queued};
use super::{ApiError, AppState, PathParam, url_policy};
use crate::render::Target;
use crate::sched::{JobError, JobFailure, JobResult, Outcome, Record, Submission};

/// JSON and text results up to this size are inlined in the job's document (and its webhook);
/// larger ones are fetched from `/v1/jobs/{id}/result`.
const INLINE_RESULT_BYTES: usize = 1 << 20;

pub async fn submit(State(state): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let mut request: Value = parse(&body)?;
    let Some(fields) = request.as_object_mut() else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request body must be a JSON object",
        ));
    };
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
    let webhook = match fields.remove("webhook") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(
            url_policy::check(&url, state.settings.deny_private_networks)
                .await
                .map_err(|error| ApiError::bad_request("invalid_webhook", error.message))?
                .to_string(),
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_webhook",
                "`webhook` must be an http or https URL",
            ));
        }
    };
    let queued = job_for(&state, Endpoint::for_job(&plugin), request).await?;
    let submission = Submission {
        plugin,
        tenant: queued.admission.tenant.clone(),
        class: queued.admission.class,
        number: queued.admission.number,
        url: match &queued.job.target {
            Target::Url(url) => Some(url.clone()),
            Target::Html(_) => None,
        },
        webhook,
    };
    let waiting = state.scheduler.enqueue(&queued.admission).await?;
    let id = state.jobs.submit(submission);
    let task = tokio::spawn({
        let (state, id) = (state.clone(), id.clone());
        async move {
            let rendered = run_queued(&state, queued, waiting, || state.jobs.started(&id)).await;
            let outcome = match rendered {
                Ok(rendered) => Outcome::Succeeded(result(rendered.into())),
                Err(error) => Outcome::Failed(JobFailure {
                    status: error.status.as_u16(),
                    code: error.code.to_owned(),
                    message: error.message,
                }),
            };
            if let Some(record) = state.jobs.finish(&id, outcome)
                && let Some(webhook) = &record.submission.webhook
            {
                let body = document(&record).to_string().into_bytes();
                state.webhooks.deliver(&id, webhook, body);
            }
        }
    });
    state.jobs.attach(&id, task.abort_handle());
    let record = state.jobs.get(&id)?;
    let location = format!("/v1/jobs/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(
            header::LOCATION,
            HeaderValue::from_str(&location).expect("hex ids are valid header values"),
        )],
        Json(document(&record)),
    )
        .into_response())
}

pub async fn show(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(document(&state.jobs.get(&id)?)))
}

/// The output of a succeeded job with the synchronous endpoint's headers; a failed job's error as
/// the synchronous endpoint would have answered it.
pub async fn result_of(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let record = state.jobs.get(&id)?;
    match record.outcome {
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_not_finished",
            format!(
                "job {id} is {}; its result is here once it has finished",
                state_name(&record)
            ),
        )),
        Some(Outcome::Succeeded(result)) => {
            let content_type = HeaderValue::from_str(&result.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let headers = output_headers(
                content_type,
                result.page_status,
                &result.page_url,
                result.plugin_fuel,
                result.plugin_ms,
            );
            Ok((headers, result.body).into_response())
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
pub async fn cancel(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(document(&state.jobs.cancel(&id)?)))
}

fn result(produced: Produced) -> JobResult {
    JobResult {
        content_type: produced
            .content_type
            .to_str()
            .unwrap_or("application/octet-stream")
            .to_owned(),
        body: Bytes::from(produced.body),
        page_status: produced.page_status,
        page_url: produced.page_url,
        plugin_fuel: produced.usage.map(|usage| usage.fuel),
        plugin_ms: produced
            .usage
            .map(|usage| usage.wall.as_secs_f64() * 1000.0),
    }
}

fn state_name(record: &Record) -> Value {
    serde_json::to_value(record.state).unwrap_or(Value::Null)
}

fn timestamp(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// A job as `GET /v1/jobs/{id}` and its webhook show it.
fn document(record: &Record) -> Value {
    let id = &record.id;
    let result = match &record.outcome {
        Some(Outcome::Succeeded(result)) => {
            let mut shown = json!({
                "content_type": result.content_type,
                "bytes": result.body.len(),
                "href": format!("/v1/jobs/{id}/result"),
                "page": { "status": result.page_status, "url": result.page_url },
                "plugin": { "fuel": result.plugin_fuel, "ms": result.plugin_ms },
            });
            if result.body.len() <= INLINE_RESULT_BYTES {
                if result.content_type.starts_with("application/json") {
                    if let Ok(value) = serde_json::from_slice::<Value>(&result.body) {
                        shown["json"] = value;
                    }
                } else if result.content_type.starts_with("text/")
                    && let Ok(text) = std::str::from_utf8(&result.body)
                {
                    shown["text"] = Value::String(text.to_owned());
                }
            }
            shown
        }
        Some(Outcome::Evicted {
            content_type,
            bytes,
        }) => json!({ "content_type": content_type, "bytes": bytes, "evicted": true }),
        _ => Value::Null,
    };
    let error = match &record.outcome {
        Some(Outcome::Failed(failure)) => json!(failure),
        _ => Value::Null,
    };
    json!({
        "id": &**id,
        "state": state_name(record),
        "plugin": record.submission.plugin,
        "tenant": &*record.submission.tenant,
        "priority": { "class": record.submission.class, "number": record.submission.number },
        "url": record.submission.url,
        "submitted_at": timestamp(record.submitted_at),
        "started_at": record.started.map(|(at, _)| timestamp(at)),
        "finished_at": record.finished.map(|(at, _)| timestamp(at)),
        "queued_ms": record.queued_ms(),
        "run_ms": record.run_ms(),
        "result": result,
        "error": error,
        "webhook": record.webhook,
    })
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        let message = error.to_string();
        match error {
            JobError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "job_not_found", message),
        }
    }
}
