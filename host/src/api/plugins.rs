//! The plugin registry: `PUT /v1/plugins/{name}` (the component as the body, an optional manifest
//! in the `x-pagewright-manifest` header), `GET /v1/plugins`, `GET /v1/plugins/{name}` (or
//! `{name}@{version}`), `DELETE /v1/plugins/{name}` (or one version).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;

use super::auth::Admin;
use super::{ApiError, AppState};
use crate::plugin::{Manifest, Plugin, PluginError, PluginInfo, Source};

/// The one path parameter of a route (a plugin's name or `name@version`), with a malformed one (not
/// UTF-8 once percent-decoded) answered as JSON like every other error.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|rejection| ApiError::bad_request("invalid_name", rejection.body_text()))
    }
}

/// The header that carries an upload's manifest (JSON).
pub const MANIFEST_HEADER: &str = "x-pagewright-manifest";

/// A plugin name and its versions, as `GET /v1/plugins` lists them.
#[derive(Debug, Serialize)]
pub struct PluginEntry {
    pub name: String,
    pub source: Source,
    pub latest: String,
    pub versions: Vec<PluginInfo>,
}

impl PluginEntry {
    fn of(versions: &[Arc<Plugin>]) -> Option<Self> {
        let latest = versions.last()?;
        Some(Self {
            name: latest.name().to_owned(),
            source: latest.source(),
            latest: latest.version().to_string(),
            versions: versions.iter().map(|plugin| plugin.info()).collect(),
        })
    }
}

#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    summary = "Every plugin: built-in and uploaded, with their versions",
    responses(
        (status = 200, description = "`{plugins: [...]}`", body = serde_json::Value),
    )
)]
pub async fn list(State(state): State<AppState>) -> Json<serde_json::Value> {
    let plugins: Vec<PluginEntry> = state
        .plugins()
        .catalog()
        .iter()
        .filter_map(|versions| PluginEntry::of(versions))
        .collect();
    Json(serde_json::json!({ "plugins": plugins }))
}

/// `name`: the plugin with every version; `name@version`: that version.
#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    summary = "One plugin, or one version of it (`name@version`)",
    params(("name" = String, Path, description = "A plugin's name, or `name@version`")),
    responses(
        (status = 200, description = "The plugin and its versions, or the version", body = serde_json::Value),
    )
)]
pub async fn describe(
    State(state): State<AppState>,
    PathParam(reference): PathParam,
) -> Result<Response, ApiError> {
    if reference.contains('@') {
        return Ok(Json(state.plugins().get(&reference)?.info()).into_response());
    }
    let versions = state.plugins().versions(&reference);
    let entry = PluginEntry::of(&versions).ok_or(PluginError::NotFound(reference))?;
    Ok(Json(entry).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    summary = "Upload a component as a new version (admin token)",
    params(("name" = String, Path, description = "The plugin's name"), ("x-pagewright-manifest" = Option<String>, Header, description = "The manifest, JSON: see `Manifest`")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "The version registered", body = serde_json::Value),
        (status = 200, description = "The same bytes were there already", body = serde_json::Value),
    )
)]
pub async fn upload(
    _: Admin,
    State(state): State<AppState>,
    PathParam(name): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::plugin::check_name(&name)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let manifest = manifest(&headers)?;
    let component =
        read_component(&headers, body, state.plugins().settings().max_upload_bytes).await?;
    let uploaded = state.plugins().upload(&name, manifest, component).await?;
    let info = uploaded.plugin.info();
    let location = format!("/v1/plugins/{}@{}", info.name, info.version);
    let status = if uploaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(info)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    summary = "Delete a plugin, or one version (admin token)",
    params(("name" = String, Path, description = "A plugin's name, or `name@version`")),
    responses(
        (status = 200, description = "What was deleted", body = serde_json::Value),
    )
)]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    PathParam(reference): PathParam,
) -> Result<Json<serde_json::Value>, ApiError> {
    let deleted = state.plugins().delete(&reference).await?;
    Ok(Json(
        serde_json::json!({ "deleted": { "name": deleted.name, "versions": deleted.versions } }),
    ))
}

/// The manifest header, if any, parsed strictly.
fn manifest(headers: &HeaderMap) -> Result<Manifest, ApiError> {
    let Some(value) = headers.get(MANIFEST_HEADER) else {
        return Ok(Manifest::default());
    };
    let invalid = |message: String| ApiError::bad_request("invalid_manifest", message);
    let text = value
        .to_str()
        .map_err(|_| invalid(format!("the {MANIFEST_HEADER} header is not ASCII JSON")))?;
    let manifest: Manifest = serde_json::from_str(text).map_err(|error| {
        invalid(format!(
            "the {MANIFEST_HEADER} header is not a valid manifest: {error}"
        ))
    })?;
    manifest.check().map_err(invalid)?;
    Ok(manifest)
}

/// The body, up to `max_bytes`: a declared length above it is refused before reading anything, and
/// a body that turns out longer is refused as soon as it passes the cap.
async fn read_component(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "plugin_too_large",
            format!(
                "the component is larger than this server accepts ({} MiB, --plugin-max-upload-mib)",
                max_bytes >> 20
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(error) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("reading the request body failed: {error}"),
            ));
        }
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request body is empty; send the component (.wasm) as the body",
        ));
    }
    Ok(bytes)
}
