//! `POST /v1/pdf/merge`: several pages printed with the same options and merged into one PDF, in
//! the order given. Each page is a job of its own, as if sent to `/v1/pdf` (so each is scheduled,
//! leased and reset like any other, and they render side by side); the merge and the document
//! information (`options.metadata`) come after.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::try_join_all;
use serde_json::Value;

use super::request::{Endpoint, RequestBody, fields_of, job_for, parse};
use super::tenants::Caller;
use super::{ApiError, AppState};
use crate::job::options::PdfMetadata;

/// The most pages one merge may print: each is a render, and one request should not hold the
/// browser for minutes.
pub const MAX_PAGES: usize = 100;

#[utoipa::path(
    post,
    path = "/v1/pdf/merge",
    tag = "render",
    summary = "Several pages rendered to PDF and merged into one, in order",
    request_body(content = serde_json::Value, description = "`pages` (1 to 100): each `{url}` or `{html, base_url?}`; the rest is a `/v1/pdf` body for every page; `options.metadata` is set on the merged document"),
    responses(
        (status = 200, description = "The merged PDF", content_type = "application/pdf", body = Vec<u8>),
    )
)]
pub async fn pdf_merge(
    State(state): State<AppState>,
    caller: Caller,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    let mut request: Value = parse(&body)?;
    let fields = fields_of(&mut request)?;
    for field in ["url", "html", "base_url", "assets", "cache"] {
        if fields.contains_key(field) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("`{field}` belongs in each of `pages`, not at the top of a merge"),
            ));
        }
    }
    let pages = match fields.remove("pages") {
        Some(Value::Array(pages)) if (1..=MAX_PAGES).contains(&pages.len()) => pages,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!(
                    "`pages` must be a list of 1 to {MAX_PAGES} pages, each {{\"url\": ...}} or \
                     {{\"html\": ...}}"
                ),
            ));
        }
    };
    // The document information is the merged document's, set once after the merge.
    let metadata = match fields
        .get_mut("options")
        .and_then(Value::as_object_mut)
        .and_then(|options| options.remove("metadata"))
    {
        Some(metadata) => Some(parse_metadata(metadata)?),
        None => None,
    };

    let mut jobs = Vec::with_capacity(pages.len());
    for (index, page) in pages.into_iter().enumerate() {
        let in_page = |error: ApiError| error.within(&format!("pages[{index}]"));
        let Value::Object(page) = page else {
            return Err(in_page(ApiError::bad_request(
                "invalid_input",
                "a page is an object: {\"url\": ...} or {\"html\": ...}",
            )));
        };
        if let Some(field) = page
            .keys()
            .find(|field| !["url", "html", "base_url"].contains(&field.as_str()))
        {
            return Err(in_page(ApiError::bad_request(
                "invalid_request",
                format!("unknown field `{field}`: a page takes url, html and base_url"),
            )));
        }
        let mut one = request.clone();
        if let Some(fields) = one.as_object_mut() {
            fields.extend(page);
        }
        jobs.push(
            job_for(&state, &caller, Endpoint::Pdf, one)
                .await
                .map_err(in_page)?,
        );
    }

    state.admit_by_memory()?;
    let mut in_flight = Vec::with_capacity(jobs.len());
    for _ in &jobs {
        caller.take_rate()?;
        in_flight.push(caller.enter()?);
    }
    let printed = try_join_all(jobs.into_iter().enumerate().map(|(index, job)| {
        let executor = state.executor.clone();
        async move {
            executor
                .run(job)
                .await
                .map(|rendered| rendered.produced.into_bytes())
                .map_err(|error| ApiError::from(error).within(&format!("pages[{index}]")))
        }
    }))
    .await?;
    drop(in_flight);

    let pages = printed.len();
    let merged = tokio::task::spawn_blocking(move || {
        let merged = crate::pdf::merge(&printed)?;
        match metadata {
            Some(metadata) => crate::pdf::set_metadata(&merged, &metadata),
            None => Ok(merged),
        }
    })
    .await
    .map_err(|error| merge_failed(&error))?
    .map_err(|error| merge_failed(&error))?;

    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    headers.insert("x-pagewright-pages", HeaderValue::from(pages));
    Ok((headers, merged).into_response())
}

/// The printed pages did not merge: Chromium's PDFs always should, so this is the server's fault.
fn merge_failed(error: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "merge_failed",
        format!("merging the printed pages failed: {error}"),
    )
}

fn parse_metadata(metadata: Value) -> Result<PdfMetadata, ApiError> {
    let metadata: PdfMetadata = serde_path_to_error::deserialize(metadata).map_err(|error| {
        ApiError::bad_request(
            "invalid_request",
            format!(
                "invalid request body at `options.metadata.{}`: {}",
                error.path(),
                error.inner()
            ),
        )
    })?;
    metadata.validate()?;
    Ok(metadata)
}
