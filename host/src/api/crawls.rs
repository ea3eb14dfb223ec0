//! Crawls: `POST /v1/crawls` (202 with the crawl's id and `Location`); `GET /v1/crawls/{id}` and
//! `DELETE /v1/crawls/{id}` are a batch's (`batches.rs`), as a crawl is a batch that grows.
//!
//! A crawl's body is an async job's body (`POST /v1/jobs`) for its start page (`url`), plus `crawl`,
//! the rules of which links to follow ([`CrawlOptions`]), and `webhook`, the crawl's: it gets the
//! crawl's document once no page is queued or running. Every page gets the request's plugin and
//! options, and is a job of its own whose result is ready as soon as it finishes.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::jobs::{accepted, async_job, take_webhook};
use super::request::{fields_of, parse};
use super::tenants::Caller;
use super::{ApiError, AppState};
use crate::job::Target;
use crate::job::options::CrawlOptions;
use crate::jobs::CrawlSubmission;

pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
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
    let (job, submission) = async_job(&state, &caller, request).await?;
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
