//! A render request's body, parsed strictly, and the [`Job`] it becomes: every render endpoint and
//! `/v1/jobs` build their job here ([`job_for`]).
//!
//! Every endpoint's job has an extractor plugin as its output: the built-in `screenshot`, `pdf`,
//! `content` and `scrape` for the named endpoints, any extractor for `/v1/run`. The named endpoints
//! parse their options with the host's types first, so a typo is a 400 before any browser work, and
//! then hand the plugin the checked options as its params. With `--native-builtins`, the host's own
//! page operations produce them instead.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::tenants::Caller;
use super::{ApiError, AppState};
use crate::job::options::{
    ContentOptions, DebugOptions, FailOn, GotoOptions, PageOptions, PdfOptions, ScreenshotOptions,
};
use crate::job::{
    Asset, Class, HtmlBase, Job, NativeOutput, Output, PluginCall, Target, UPLOAD_ORIGIN,
};
use crate::plugin::{Role, Source};

/// What every render request has: the page to load, how to load it, and the time budget.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest<O> {
    /// The page to render; exactly one of `url` and `html`.
    pub url: Option<String>,
    /// An HTML document to render instead of a URL.
    pub html: Option<String>,
    /// With `html`: the URL the document is served at (its links resolve against it, and it has
    /// that origin's cookies), instead of `about:blank`.
    pub base_url: Option<String>,
    /// With `html`: files served beside the document, at their paths relative to `base_url`
    /// (`http://pagewright.invalid/` when none is given).
    #[serde(default)]
    pub assets: Vec<AssetRequest>,
    #[serde(default)]
    pub goto: GotoOptions,
    #[serde(default)]
    pub page: PageOptions,
    /// When a page that loaded fails the job all the same (its status, a subresource's, an
    /// uncaught exception).
    #[serde(default)]
    pub fail_on: FailOn,
    /// The endpoint's options (for `/v1/run`, the plugin's params).
    #[serde(default, alias = "params")]
    pub options: O,
    /// Page-script plugins to apply, in order.
    #[serde(default)]
    pub scripts: Vec<ScriptRef>,
    /// The whole job's time budget in milliseconds (server default and maximum apply). It starts
    /// when the job leaves the queue.
    pub timeout_ms: Option<u64>,
    /// Who the job is for: tenants take turns for run slots. Default `default`.
    pub tenant: Option<String>,
    #[serde(default)]
    pub priority: PriorityRequest,
    /// How long the job may wait for a run slot, in milliseconds (server default and maximum apply).
    pub queue_timeout_ms: Option<u64>,
}

/// A file served beside an `html` job's document: its text `content`, or its bytes as `base64`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetRequest {
    pub path: String,
    /// Guessed from the path's extension when not given.
    pub content_type: Option<String>,
    pub content: Option<String>,
    pub base64: Option<String>,
}

/// The most files a request may serve beside its document.
const MAX_ASSETS: usize = 1000;

/// An `html` job's base and assets, checked: paths relative and plain, each asset exactly one of
/// `content` and `base64`.
async fn html_base(
    state: &AppState,
    base_url: Option<String>,
    assets: Vec<AssetRequest>,
) -> Result<Option<HtmlBase>, ApiError> {
    if base_url.is_none() && assets.is_empty() {
        return Ok(None);
    }
    let invalid = |message: String| ApiError::bad_request("invalid_input", message);
    if assets.len() > MAX_ASSETS {
        return Err(invalid(format!("at most {MAX_ASSETS} assets")));
    }
    let url = match base_url {
        Some(url) => String::from(state.settings.url_policy.check(&url).await?),
        None => format!("{UPLOAD_ORIGIN}/"),
    };
    let assets = assets
        .into_iter()
        .enumerate()
        .map(|(index, asset)| {
            let field = format!("assets[{index}]");
            let path_ok = (1..=512).contains(&asset.path.len())
                && !asset.path.starts_with('/')
                && !asset.path.contains("://")
                && asset
                    .path
                    .split('/')
                    .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
                && !asset.path.chars().any(|c| c.is_control() || c == '?' || c == '#');
            if !path_ok {
                return Err(invalid(format!(
                    "{field}.path `{}` must be a relative path such as `css/site.css` (no `..`,                      `?` or `#`)",
                    asset.path.escape_debug()
                )));
            }
            let data = match (asset.content, asset.base64) {
                (Some(content), None) => content.into_bytes(),
                (None, Some(encoded)) => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|error| invalid(format!("{field}.base64: {error}")))?
                }
                _ => {
                    return Err(invalid(format!(
                        "{field} needs exactly one of `content` and `base64`"
                    )));
                }
            };
            let content_type = asset.content_type.unwrap_or_else(|| {
                mime_guess::from_path(&asset.path)
                    .first_or_octet_stream()
                    .to_string()
            });
            if HeaderValue::from_str(&content_type).is_err() {
                return Err(invalid(format!(
                    "{field}.content_type is not a header value"
                )));
            }
            Ok(Asset {
                path: asset.path,
                content_type,
                data,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(HtmlBase { url, assets }))
}

/// `{"class": "urgent" | "hot" | "cold", "number": -50..=50}`, both optional (hot, 0).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    pub class: Option<Class>,
    #[serde(default)]
    pub number: i8,
}

/// A page-script plugin and its params: `"name"` or `{"plugin": "name", "params": {...}}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ScriptRef {
    Name(String),
    WithParams(ScriptWithParams),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptWithParams {
    pub plugin: String,
    #[serde(default)]
    pub params: serde_json::Value,
}

/// The raw request body, with a too-large body answered as a JSON 413 like every other error.
pub struct RequestBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(RequestBody)
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

/// A render request's body as JSON: the body itself, or, for a `multipart/form-data` upload (as
/// Gotenberg takes them), the JSON of its `request` field with its `index.html` file as `html` and
/// its other files as `assets`.
pub struct RenderBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for RenderBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let boundary = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| multer::parse_boundary(value).ok());
        let RequestBody(body) = RequestBody::from_request(request, state).await?;
        match boundary {
            Some(boundary) => multipart(body, boundary).await.map(RenderBody),
            None => parse(&body).map(RenderBody),
        }
    }
}

/// The JSON request a multipart upload stands for.
async fn multipart(body: Bytes, boundary: String) -> Result<serde_json::Value, ApiError> {
    use base64::Engine as _;
    let invalid = |message: String| ApiError::bad_request("invalid_request", message);
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut request = serde_json::json!({});
    let mut html = None;
    let mut assets = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|error| invalid(format!("invalid multipart body: {error}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(ToString::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|error| invalid(format!("invalid multipart body: {error}")))?;
        match file_name {
            None if name == "request" => {
                request = parse(&data)?;
                if !request.is_object() {
                    return Err(invalid("the `request` field must be a JSON object".into()));
                }
            }
            None => {
                return Err(invalid(format!(
                    "unknown form field `{}`: send options as JSON in a `request` field, and                      files with a file name",
                    name.escape_debug()
                )));
            }
            Some(file_name) if file_name == "index.html" => {
                html = Some(
                    String::from_utf8(data.to_vec())
                        .map_err(|_| invalid("index.html must be UTF-8".into()))?,
                );
            }
            Some(file_name) => assets.push(serde_json::json!({
                "path": file_name,
                "content_type": content_type.filter(|kind| kind != "application/octet-stream"),
                "base64": base64::engine::general_purpose::STANDARD.encode(&data),
            })),
        }
    }
    let html =
        html.ok_or_else(|| invalid("a multipart upload needs an `index.html` file".into()))?;
    for field in ["url", "html", "assets"] {
        if request.get(field).is_some() {
            return Err(invalid(format!(
                "`{field}` comes from the upload's files, not its `request` field"
            )));
        }
    }
    request["html"] = serde_json::Value::String(html);
    request["assets"] = serde_json::Value::Array(assets);
    Ok(request)
}

/// Parses a body as JSON whatever its content type (curl's `-d` says form-urlencoded), with serde's
/// message, which names an unknown or mistyped field and where it is.
pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request body is empty; send a JSON object",
        ));
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut reader).map_err(body_error)?;
    reader.end().map_err(|error| {
        ApiError::bad_request("invalid_request", format!("invalid request body: {error}"))
    })?;
    Ok(parsed)
}

/// The fields of a request body that must be a JSON object.
pub(super) fn fields_of(
    request: &mut serde_json::Value,
) -> Result<&mut serde_json::Map<String, serde_json::Value>, ApiError> {
    request.as_object_mut().ok_or_else(|| {
        ApiError::bad_request("invalid_request", "the request body must be a JSON object")
    })
}

/// A body that does not fit the request's type, naming the field where it went wrong (serde's own
/// message names unknown fields, not the place of a mistyped one).
pub(super) fn body_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> ApiError {
    let path = error.path().to_string();
    let message = if path == "." {
        format!("invalid request body: {}", error.inner())
    } else {
        format!("invalid request body at `{path}`: {}", error.inner())
    };
    ApiError::bad_request("invalid_request", message)
}

/// Whether a request may leave out both `url` and `html`: an uploaded (or `--plugin`) extractor
/// may run without a page; the built-ins render one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageNeeded {
    Always,
    Optional,
}

/// Builds and validates the job for `request`, with `output` made from the request's options.
async fn job<O>(
    state: &AppState,
    caller: &Caller,
    request: RenderRequest<O>,
    page: PageNeeded,
    output: impl FnOnce(O) -> Result<Output, ApiError>,
) -> Result<Job, ApiError> {
    let settings = &state.settings;
    if request.html.is_none() && (request.base_url.is_some() || !request.assets.is_empty()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`base_url` and `assets` go with `html`",
        ));
    }
    let html_base = html_base(state, request.base_url, request.assets).await?;
    let target = match (request.url, request.html) {
        (Some(url), None) => Target::Url(settings.url_policy.check(&url).await?.into()),
        (None, Some(html)) => Target::Html(html),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give either `url` or `html`, not both",
            ));
        }
        (None, None) if page == PageNeeded::Optional => Target::NoPage,
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give `url` or `html`",
            ));
        }
    };
    if let Some(proxy) = &request.page.proxy {
        // A job's proxy is a destination like any other: the egress rules must allow it (the
        // listener checks again when it connects).
        let upstream = proxy.upstream()?;
        settings
            .url_policy
            .check(&upstream.to_string())
            .await
            .map_err(|error| ApiError::from(error).within("page.proxy"))?;
    }
    let timeout = budget(
        state,
        "timeout_ms",
        request.timeout_ms,
        settings.job_timeout,
    )?;
    let queue_timeout = budget(
        state,
        "queue_timeout_ms",
        request.queue_timeout_ms,
        settings.queue_timeout,
    )?;
    let tenant = caller.tenant(request.tenant)?;
    let class = request.priority.class.unwrap_or(Class::Hot);
    caller.check_class(class)?;
    if !(-50..=50).contains(&request.priority.number) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "priority.number {} is outside -50..=50",
                request.priority.number
            ),
        ));
    }
    let scripts = request
        .scripts
        .into_iter()
        .map(|script| {
            let (name, params) = match script {
                ScriptRef::Name(name) => (name, serde_json::Value::Null),
                ScriptRef::WithParams(script) => (script.plugin, script.params),
            };
            plugin_call(state, &name, Role::PageScript, &params)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut job = Job::new(target, output(request.options)?, timeout, queue_timeout);
    job.goto = request.goto;
    job.page = request.page;
    job.fail_on = request.fail_on;
    job.html_base = html_base;
    job.scripts = scripts;
    job.tenant = tenant;
    job.key_scope = caller.key_scope();
    job.class = class;
    job.number = request.priority.number;
    job.validate()?;
    Ok(job)
}

/// A time budget from the request (positive, at most `--max-job-timeout-ms`) or the default.
fn budget(
    state: &AppState,
    field: &str,
    requested: Option<u64>,
    default: Duration,
) -> Result<Duration, ApiError> {
    let max = state.settings.max_job_timeout;
    match requested {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request(
            "invalid_request",
            format!("{field} must be positive"),
        )),
        Some(ms) if Duration::from_millis(ms) > max => Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "{field} {ms} is above this server's maximum of {}",
                max.as_millis()
            ),
        )),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// Refuses a tenant name that is not 1-64 of letters, digits, `.`, `_`, `-`.
pub(super) fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    let tenant_ok = (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if !tenant_ok {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`tenant` must be 1-64 of letters, digits, `.`, `_` and `-`",
        ));
    }
    Ok(())
}

/// The registered plugin `name`, which must play `role`, with `params` as its JSON params.
fn plugin_call(
    state: &AppState,
    name: &str,
    role: Role,
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
        plugin: state.plugins().find(name, role)?,
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
        Ok(Output::Plugin(plugin_call(
            state,
            plugin,
            Role::Extractor,
            &options,
        )?))
    }
}

/// What a request asks for: a named endpoint's output, or an extractor plugin's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Endpoint<'a> {
    Screenshot,
    Pdf,
    Content,
    /// `/v1/debug`: the host's own record of what the page did.
    Debug,
    /// `/v1/scrape` (the `scrape` plugin) and `/v1/run/{plugin}`.
    Plugin(&'a str),
}

impl<'a> Endpoint<'a> {
    /// An async job's `plugin`: `screenshot` and `pdf` get their endpoints' checked options, any
    /// other name (the built-in `content` and `scrape` included) is run as `/v1/run/{plugin}` runs it.
    pub fn for_job(plugin: &'a str) -> Self {
        match plugin {
            "screenshot" => Self::Screenshot,
            "pdf" => Self::Pdf,
            plugin => Self::Plugin(plugin),
        }
    }
}

/// The job for `endpoint` from a request body. The named endpoints parse their options with the
/// host's types first, so a typo is a 400 before any browser work; a plugin gets `params` (or
/// `options`) as its params.
pub(super) async fn job_for(
    state: &AppState,
    caller: &Caller,
    endpoint: Endpoint<'_>,
    body: serde_json::Value,
) -> Result<Job, ApiError> {
    fn request<O: DeserializeOwned + Default>(
        body: serde_json::Value,
    ) -> Result<RenderRequest<O>, ApiError> {
        serde_path_to_error::deserialize(body).map_err(body_error)
    }
    match endpoint {
        Endpoint::Screenshot => {
            job(
                state,
                caller,
                request::<ScreenshotOptions>(body)?,
                PageNeeded::Always,
                |options| {
                    options.validate()?;
                    builtin(state, "screenshot", options, NativeOutput::Screenshot)
                },
            )
            .await
        }
        Endpoint::Pdf => {
            job(
                state,
                caller,
                request::<PdfOptions>(body)?,
                PageNeeded::Always,
                |options| {
                    options.validate()?;
                    builtin(state, "pdf", options, NativeOutput::Pdf)
                },
            )
            .await
        }
        Endpoint::Debug => {
            job(
                state,
                caller,
                request::<DebugOptions>(body)?,
                PageNeeded::Always,
                |options| Ok(Output::Native(NativeOutput::Debug(options))),
            )
            .await
        }
        Endpoint::Content => {
            job(
                state,
                caller,
                request::<ContentOptions>(body)?,
                PageNeeded::Always,
                |options| {
                    builtin(state, "content", options, |ContentOptions {}| {
                        NativeOutput::Content
                    })
                },
            )
            .await
        }
        Endpoint::Plugin(plugin) => {
            // Only a plugin of the user's own computes from its params alone.
            let page = match state.plugins().get(plugin).map(|found| found.source()) {
                Ok(Source::Builtin) => PageNeeded::Always,
                _ => PageNeeded::Optional,
            };
            job(
                state,
                caller,
                request::<serde_json::Value>(body)?,
                page,
                |params| {
                    Ok(Output::Plugin(plugin_call(
                        state,
                        plugin,
                        Role::Extractor,
                        &params,
                    )?))
                },
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    //! A property test of the request parser: whatever body arrives, the checks that run before
    //! any browser work end in a job or in a JSON error, and never panic.

    use axum::response::IntoResponse;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::job::options::{PdfOptions, ScreenshotOptions};
    use crate::url_policy::UrlPolicy;

    /// Field names requests have, so that generated objects reach past "unknown field".
    const FIELDS: &[&str] = &[
        "url",
        "html",
        "goto",
        "page",
        "options",
        "params",
        "scripts",
        "timeout_ms",
        "tenant",
        "priority",
        "queue_timeout_ms",
        "viewport",
        "width",
        "height",
        "device_scale_factor",
        "mobile",
        "headers",
        "user_agent",
        "cookies",
        "name",
        "value",
        "domain",
        "media",
        "media_features",
        "javascript",
        "block",
        "isolation_key",
        "fresh_session",
        "ignore_https_errors",
        "wait_until",
        "wait_for_selector",
        "selector",
        "visible",
        "format",
        "quality",
        "full_page",
        "clip",
        "x",
        "y",
        "class",
        "number",
        "plugin",
        "landscape",
        "margin",
        "scale",
        "paper",
        "print_background",
        "resource_types",
        "url_patterns",
        "referrer",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                Just(i64::from(u32::MAX) + 1),
                Just(-1i64),
                Just(0i64),
                Just(16_385i64),
                Just(100_000i64),
            ]
            .prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            prop_oneof![
                Just("http://127.0.0.1:9/"),
                Just("https://example.com/a#b"),
                Just("file:///etc/passwd"),
                Just("javascript:alert(1)"),
                Just("png"),
                Just("load"),
                Just("urgent"),
                Just("a\r\nb"),
                Just("prefers-color-scheme"),
            ]
            .prop_map(|text| Value::String(text.to_owned())),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            4 => prop::sample::select(FIELDS).prop_map(str::to_owned),
                            1 => "[a-z_]{1,12}",
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// What the API checks of a request before it becomes a job, for one endpoint's options.
    async fn checked<O: DeserializeOwned + Default>(
        body: &[u8],
        validate: impl Fn(&O) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let request: RenderRequest<O> = parse(body)?;
        validate(&request.options)?;
        request.page.validate()?;
        if let Some(url) = &request.url {
            UrlPolicy::default().check(url).await?;
        }
        if let Some(tenant) = &request.tenant {
            check_tenant(tenant)?;
        }
        Ok(())
    }

    /// A refusal as the client sees it: a 4xx with `{"error": {"code", "message"}}`.
    fn assert_json_error(error: ApiError) {
        let status = error.status;
        assert!(status.is_client_error(), "{status} for {}", error.message);
        let response = error.into_response();
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .expect("the body");
        let body: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert!(
            body["error"]["code"]
                .as_str()
                .is_some_and(|code| !code.is_empty())
        );
        assert!(body["error"]["message"].is_string());
    }

    fn check_every_endpoint(body: &[u8]) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let results = [
                checked::<ScreenshotOptions>(body, |options| Ok(options.validate()?)).await,
                checked::<PdfOptions>(body, |options| Ok(options.validate()?)).await,
                checked::<Value>(body, |_| Ok(())).await,
            ];
            for result in results {
                if let Err(error) = result {
                    assert_json_error(error);
                }
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn any_json_body_is_a_job_or_a_json_error(body in json()) {
            check_every_endpoint(&serde_json::to_vec(&body).expect("JSON"));
        }

        #[test]
        fn any_bytes_are_a_job_or_a_json_error(body in prop::collection::vec(any::<u8>(), 0..256)) {
            check_every_endpoint(&body);
        }
    }
}
