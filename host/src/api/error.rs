//! The one error type of the HTTP API: every failure becomes a status code and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`. Messages say what the caller can act on; internal
//! details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::egress::Refusal;
use crate::exec::ExecError;
use crate::job::options::InvalidOption;
use crate::jobs::{JobError, JobFailure};
use crate::page::{FailRule, PageError};
use crate::plugin::{GuestErrorKind, PluginError, Usage};
use crate::pool::PoolError;
use crate::sched::SchedError;
use crate::store::StoreError;
use crate::url_policy::UrlError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Whole seconds for `Retry-After` on a 429 or 503; one when not said.
    retry_after: Option<u64>,
    /// What the job's plugin calls cost before it failed, for the same headers a success has.
    usage: Option<Usage>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: bounded(message.into()),
            retry_after: None,
            usage: None,
        }
    }

    /// Says when to try again (rounded up to whole seconds, as `Retry-After` has them).
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        self
    }

    /// The same error, its message preceded by where it happened (`pages[2]: ...`).
    pub fn within(mut self, place: &str) -> Self {
        self.message = format!("{place}: {}", self.message);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

/// Every code an error response can carry, with its status and what it means: the OpenAPI
/// document's list (`openapi.rs`). A response with a code not listed here fails the tests (a debug
/// assertion where errors become responses), so the list stays whole.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_input",
        400,
        "The request body, its options or a plugin's params are wrong; the message names the field.",
    ),
    (
        "invalid_request",
        400,
        "The body's shape is wrong: a field that does not belong there, or one that is missing.",
    ),
    (
        "invalid_webhook",
        400,
        "`webhook` is not an http or https URL, or is not allowed.",
    ),
    (
        "invalid_name",
        400,
        "A plugin name is not 1-64 of a-z, 0-9, `-` and `_` (with `@version` where one may be).",
    ),
    (
        "invalid_url",
        400,
        "The URL does not parse, has no host or is too long.",
    ),
    (
        "url_not_allowed",
        400,
        "The URL's scheme or destination is not allowed (egress rules, private networks).",
    ),
    (
        "invalid_manifest",
        400,
        "The plugin manifest header is not valid.",
    ),
    (
        "invalid_upload",
        400,
        "The upload is not a component, or is empty.",
    ),
    (
        "plugin_role_missing",
        400,
        "The plugin does not have the role the request needs (extractor, page-script, scorer).",
    ),
    (
        "unauthorized",
        401,
        "A token is needed: the render or tenant token, or the admin token for the registry.",
    ),
    (
        "uploads_disabled",
        403,
        "The server has no admin token, so its plugin registry is read-only.",
    ),
    (
        "plugin_protected",
        403,
        "Built-in plugins cannot be replaced or deleted.",
    ),
    (
        "tenant_not_allowed",
        403,
        "The token's tenant may not act for the tenant named.",
    ),
    (
        "class_not_allowed",
        403,
        "The tenant may not use that priority class.",
    ),
    ("not_found", 404, "No such endpoint."),
    (
        "job_not_found",
        404,
        "No such job, batch or crawl (or it was forgotten).",
    ),
    (
        "plugin_not_found",
        404,
        "No plugin of that name or version.",
    ),
    (
        "method_not_allowed",
        405,
        "The endpoint does not take that method.",
    ),
    (
        "render_timeout",
        408,
        "The job's time budget ran out (a plugin past it is named).",
    ),
    (
        "plugin_timeout",
        408,
        "A plugin call ran past its manifest's time limit.",
    ),
    (
        "version_exists",
        409,
        "That plugin version exists with other contents.",
    ),
    ("job_not_finished", 409, "The job has no result yet."),
    (
        "fail_on_status",
        409,
        "The page's status matched the request's `fail_on.status`.",
    ),
    (
        "fail_on_resource_status",
        409,
        "A subresource's status matched `fail_on.resource_status`.",
    ),
    (
        "fail_on_console_exception",
        409,
        "The page threw an uncaught exception and `fail_on.console_exception` is set.",
    ),
    ("job_cancelled", 410, "The job was cancelled."),
    (
        "result_evicted",
        410,
        "The job's result was forgotten (past its retention).",
    ),
    (
        "payload_too_large",
        413,
        "The request body is larger than the server takes.",
    ),
    (
        "plugin_too_large",
        413,
        "The plugin component is larger than the server takes.",
    ),
    (
        "output_too_large",
        413,
        "The output is larger than the server's limit.",
    ),
    (
        "plugin_output_too_large",
        413,
        "A plugin's output is larger than its limit.",
    ),
    (
        "element_not_found",
        422,
        "An element the request or plugin needs is not on the page.",
    ),
    (
        "script_error",
        422,
        "A script the request or plugin ran on the page threw.",
    ),
    (
        "invalid_plugin",
        422,
        "The uploaded component cannot be a plugin; the message says why.",
    ),
    (
        "invalid_limits",
        422,
        "The manifest asks for limits above the server's.",
    ),
    (
        "plugin_failed",
        422,
        "The plugin returned its own error (`failed`), or threw an exception its guard caught.",
    ),
    (
        "plugin_trapped",
        422,
        "The plugin trapped (a panic or an uncaught exception); the message quotes what it printed.",
    ),
    ("plugin_out_of_fuel", 422, "The plugin used all its fuel."),
    (
        "plugin_memory_limit",
        422,
        "The plugin wanted more memory than its limit.",
    ),
    (
        "robots_disallowed",
        422,
        "robots.txt disallows the crawl's start page.",
    ),
    (
        "queue_full",
        429,
        "The queue (or the tenant's share of it) is full; retry after `Retry-After`.",
    ),
    (
        "rate_limited",
        429,
        "The tenant's request rate is spent; retry after `Retry-After`.",
    ),
    (
        "too_many_in_flight",
        429,
        "The tenant has as many requests in flight as it may.",
    ),
    (
        "internal_error",
        500,
        "A fault of the server's; it is logged.",
    ),
    (
        "invalid_job",
        500,
        "A stored job could not be read back (a job's document, result or webhook).",
    ),
    ("storage_failed", 500, "Storing the job or plugin failed."),
    (
        "merge_failed",
        500,
        "The PDFs rendered but could not be merged.",
    ),
    (
        "browser_error",
        502,
        "Chromium answered a page operation with an error.",
    ),
    (
        "navigation_failed",
        502,
        "Loading the page failed: DNS, a refused connection, TLS, a download.",
    ),
    (
        "page_crashed",
        502,
        "The page's renderer crashed; the page was replaced.",
    ),
    (
        "browser_unavailable",
        503,
        "No browser is up (it is restarting); retry after `Retry-After`.",
    ),
    ("no_capacity", 503, "No page could be leased in time."),
    (
        "queue_timeout",
        503,
        "The job waited in the queue longer than its `queue_timeout_ms`.",
    ),
    (
        "memory_low",
        503,
        "The machine is low on memory; retry shortly or elsewhere.",
    ),
    ("shutting_down", 503, "The server is stopping."),
    (
        "too_many_connections",
        503,
        "The server has as many connections open as it takes (--max-connections).",
    ),
    ("store_unavailable", 503, "The job store cannot be reached."),
    (
        "navigation_timeout",
        504,
        "The page did not load within the time budget.",
    ),
];

/// The most characters of an error message kept: what a page's script threw, or a plugin printed,
/// may be megabytes, and it goes into responses, job records and webhooks.
const MAX_MESSAGE_CHARS: usize = 4096;

fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!(
            "{}… (cut at {MAX_MESSAGE_CHARS} characters)",
            &message[..cut]
        ),
        None => message,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug_assert!(
            ERROR_CODES
                .iter()
                .any(|(code, status, _)| *code == self.code && *status == self.status.as_u16()),
            "error code `{}` with status {} is not in ERROR_CODES",
            self.code,
            self.status
        );
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pagewright\""),
            );
        }
        if let Some(usage) = self.usage {
            let headers = response.headers_mut();
            headers.insert("x-pagewright-plugin-fuel", HeaderValue::from(usage.fuel));
            if let Ok(ms) = HeaderValue::from_str(&format!("{:.3}", usage.wall_ms())) {
                headers.insert("x-pagewright-plugin-ms", ms);
            }
        }
        // Unless said otherwise: the queue drains at the render rate, so a second frees dozens of
        // places; the browser relaunches in well under a second; a pool slot frees within a render.
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.unwrap_or(1).max(1)),
            );
        }
        response
    }
}

/// A failed async job's error, kept as the synchronous endpoint would have answered it.
pub fn describe_failure(error: ExecError) -> JobFailure {
    let error = ApiError::from(error);
    JobFailure {
        status: error.status.as_u16(),
        code: error.code.to_owned(),
        message: error.message,
    }
}

impl From<ExecError> for ApiError {
    fn from(error: ExecError) -> Self {
        match error {
            ExecError::Queue(error) => error.into(),
            ExecError::Page(error) => error.into(),
            ExecError::Pool(error) => error.into(),
            ExecError::Plugin { error, usage } => Self {
                usage,
                ..error.into()
            },
        }
    }
}

impl From<UrlError> for ApiError {
    fn from(error: UrlError) -> Self {
        let message = error.to_string();
        match error {
            UrlError::Invalid { .. } | UrlError::NoHost(_) | UrlError::TooLong(_) => {
                Self::bad_request("invalid_url", message)
            }
            UrlError::Egress(Refusal::Resolve { .. }) => {
                Self::new(StatusCode::BAD_GATEWAY, "navigation_failed", message)
            }
            UrlError::Scheme(_) | UrlError::Egress(_) => {
                Self::bad_request("url_not_allowed", message)
            }
        }
    }
}

impl From<InvalidOption> for ApiError {
    fn from(error: InvalidOption) -> Self {
        Self::bad_request("invalid_input", error.0)
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        let message = error.to_string();
        match error {
            JobError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "job_not_found", message),
            JobError::QueueFull { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
            }
            JobError::ShuttingDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            JobError::Invalid(_) => Self::bad_request("invalid_input", message),
            JobError::RobotsDisallowed(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "robots_disallowed",
                message,
            ),
            JobError::Store(error) => {
                // The cause is logged here; the client learns which step failed, not the
                // database's own words.
                tracing::warn!(error = %error, "the store failed");
                let message = match error {
                    StoreError::Query { step, .. } => {
                        format!("the job store failed to {step}; retry later")
                    }
                    _ => "the job store is unavailable; retry later".to_owned(),
                };
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    message,
                )
            }
        }
    }
}

/// A store that failed: 503, naming the step that failed. The cause is logged here; the client
/// learns which step failed, not the database's own words.
fn store_unavailable(error: &StoreError) -> ApiError {
    tracing::warn!(%error, "the store failed");
    let message = match error {
        StoreError::Query { step, .. } => format!("the store failed to {step}; retry later"),
        _ => "the store is unavailable; retry later".to_owned(),
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        message,
    )
}

impl From<SchedError> for ApiError {
    fn from(error: SchedError) -> Self {
        let message = error.to_string();
        match error {
            SchedError::QueueFull { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
            }
            SchedError::QueueTimeout { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "queue_timeout", message)
            }
        }
    }
}

impl From<PageError> for ApiError {
    fn from(error: PageError) -> Self {
        let message = error.to_string();
        match error {
            PageError::InvalidInput(_) => Self::bad_request("invalid_input", message),
            PageError::Timeout { step: "navigation" } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "navigation_timeout", message)
            }
            PageError::Timeout { .. } => {
                Self::new(StatusCode::REQUEST_TIMEOUT, "render_timeout", message)
            }
            PageError::Navigation { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "navigation_failed", message)
            }
            PageError::NotFound(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "element_not_found",
                message,
            ),
            PageError::Script(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "script_error", message)
            }
            PageError::TooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "output_too_large", message)
            }
            PageError::Crashed => Self::new(StatusCode::BAD_GATEWAY, "page_crashed", message),
            // The page is there, and the caller said it must not be taken: a conflict with the
            // state the site is in, not a failure of ours.
            PageError::FailedOn { rule, .. } => Self::new(
                StatusCode::CONFLICT,
                match rule {
                    FailRule::Status => "fail_on_status",
                    FailRule::ResourceStatus => "fail_on_resource_status",
                    FailRule::ConsoleException => "fail_on_console_exception",
                },
                message,
            ),
            PageError::BrowserGone { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "browser_unavailable",
                message,
            ),
            PageError::Cdp { step, .. } => {
                tracing::error!(error = %message, "browser command failed");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "browser_error",
                    format!("the browser failed during {step}"),
                )
            }
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        let message = error.to_string();
        match error {
            PoolError::Timeout(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_capacity", message)
            }
            PoolError::Closed => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            PoolError::Browser(_) | PoolError::Relaunched => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "browser_unavailable",
                message,
            ),
            PoolError::CreateContext(_) | PoolError::CreatePage(_) => {
                tracing::error!(error = %message, "opening a page failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "browser_unavailable",
                    "the browser could not open a page",
                )
            }
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(error: PluginError) -> Self {
        let message = error.to_string();
        let status = |status, code| Self::new(status, code, message.clone());
        match error {
            PluginError::NotFound(_) => status(StatusCode::NOT_FOUND, "plugin_not_found"),
            PluginError::MissingRole { .. } => {
                status(StatusCode::BAD_REQUEST, "plugin_role_missing")
            }
            PluginError::Invalid { .. } => {
                status(StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin")
            }
            PluginError::Protected { .. } => status(StatusCode::FORBIDDEN, "plugin_protected"),
            PluginError::VersionExists { .. } => status(StatusCode::CONFLICT, "version_exists"),
            PluginError::BadUpload(_) => status(StatusCode::BAD_REQUEST, "invalid_upload"),
            PluginError::BadManifest(_) => status(StatusCode::BAD_REQUEST, "invalid_manifest"),
            PluginError::Limits(_) => status(StatusCode::UNPROCESSABLE_ENTITY, "invalid_limits"),
            PluginError::Closed => status(StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            PluginError::Store(error) => store_unavailable(&error),
            PluginError::Storage(_) | PluginError::NoStore => {
                tracing::error!(error = %message, "the plugin store failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_failed",
                    "the server could not store or remove the plugin; see the server log",
                )
            }
            PluginError::OutOfFuel { .. } => {
                status(StatusCode::UNPROCESSABLE_ENTITY, "plugin_out_of_fuel")
            }
            PluginError::Timeout { .. } => status(StatusCode::REQUEST_TIMEOUT, "plugin_timeout"),
            PluginError::MemoryLimit { .. } => {
                status(StatusCode::UNPROCESSABLE_ENTITY, "plugin_memory_limit")
            }
            PluginError::OutputTooLarge { .. } => {
                status(StatusCode::PAYLOAD_TOO_LARGE, "plugin_output_too_large")
            }
            PluginError::Trapped { .. } => {
                status(StatusCode::UNPROCESSABLE_ENTITY, "plugin_trapped")
            }
            // An error the plugin returned: the same codes as the host's own page errors.
            PluginError::Failed { kind, .. } => match kind {
                GuestErrorKind::InvalidInput => status(StatusCode::BAD_REQUEST, "invalid_input"),
                GuestErrorKind::Timeout => status(StatusCode::REQUEST_TIMEOUT, "render_timeout"),
                GuestErrorKind::Navigation => status(StatusCode::BAD_GATEWAY, "navigation_failed"),
                GuestErrorKind::NotFound => {
                    status(StatusCode::UNPROCESSABLE_ENTITY, "element_not_found")
                }
                GuestErrorKind::Script => status(StatusCode::UNPROCESSABLE_ENTITY, "script_error"),
                GuestErrorKind::TooLarge => {
                    status(StatusCode::PAYLOAD_TOO_LARGE, "output_too_large")
                }
                GuestErrorKind::Crashed => status(StatusCode::BAD_GATEWAY, "page_crashed"),
                GuestErrorKind::Failed => status(StatusCode::UNPROCESSABLE_ENTITY, "plugin_failed"),
            },
            // The page's own answer, said to have happened in the plugin.
            PluginError::Page { plugin, error } => {
                ApiError::from(error).within(&format!("in plugin `{plugin}`"))
            }
            PluginError::Busy | PluginError::ServerMemory { .. } => {
                status(StatusCode::SERVICE_UNAVAILABLE, "no_capacity")
            }
            PluginError::Engine(_) | PluginError::Workers(_) | PluginError::WorkerLost => {
                tracing::error!(error = %message, "the plugin host failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the plugin host failed; see the server log",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_to_a_bound() {
        let short = ApiError::new(StatusCode::BAD_GATEWAY, "x", "short");
        assert_eq!(short.message, "short");
        let huge = ApiError::new(StatusCode::BAD_GATEWAY, "x", "é".repeat(100_000));
        assert!(huge.message.chars().count() < MAX_MESSAGE_CHARS + 40);
        assert!(
            huge.message
                .ends_with(&format!("(cut at {MAX_MESSAGE_CHARS} characters)"))
        );
    }
}
