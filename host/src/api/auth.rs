//! Bearer tokens: an admin token for changing the plugin registry, an optional render token for
//! the rest of `/v1/`, and optional tenant tokens (`--tokens-file`, `tenants.rs`), each standing
//! for one tenant. Without an admin token configured the registry is read-only (secure by
//! default); without a render token or tenant tokens the API is open to whoever can reach the
//! listen address. The middleware decides who a request is from ([`Caller`]) and hands that on.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::tenants::Caller;
use super::{ApiError, AppState};

/// A request that carries the admin token. Extracted before the body, so an unauthorised upload is
/// refused before any of it is read.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.settings.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "uploads_disabled",
                "changing plugins needs an admin token, and this server has none: start it with \
                 PAGEWRIGHT_ADMIN_TOKEN set (see the README)",
            ));
        };
        if carries(&parts.headers, expected.expose()) {
            Ok(Admin)
        } else {
            Err(unauthorized(
                "changing plugins needs `Authorization: Bearer <admin token>`",
            ))
        }
    }
}

/// Middleware: decides who the request is from. With a render token or tenant tokens configured,
/// every request outside `/health`, `/metrics`, `/v1/pressure` and the pages must carry one of them
/// (or the admin token).
pub async fn render_access(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    // What load balancers and monitoring poll, and the pages (which hold no data: the API they call
    // asks for tokens as always).
    let path = request.uri().path();
    let open = matches!(
        path,
        "/health" | "/metrics" | "/v1/pressure" | "/playground" | "/openapi.json" | "/docs"
    ) || path.starts_with("/docs/");
    let headers = request.headers();
    let token = bearer(headers);
    let caller = if settings
        .admin_token
        .as_ref()
        .is_some_and(|admin| carries(headers, admin.expose()))
    {
        Caller::Admin
    } else if let Some(grant) = settings
        .tenants
        .as_ref()
        .zip(token)
        .and_then(|(tenants, token)| tenants.find(token))
    {
        Caller::Tenant(grant)
    } else if settings
        .render_token
        .as_ref()
        .is_some_and(|render| carries(headers, render.expose()))
    {
        Caller::Shared
    } else if settings.render_token.is_some() || settings.tenants.is_some() {
        if !open {
            return Err(unauthorized(if settings.tenants.is_some() {
                "this server needs `Authorization: Bearer <token>`: a tenant's token from its \
                 tokens file (or the render or admin token)"
            } else {
                "this server needs `Authorization: Bearer <render token>`"
            }));
        }
        Caller::Shared
    } else if settings.admin_token.is_some() {
        Caller::Shared
    } else {
        Caller::Open
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// The request's `Authorization: Bearer` token.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Does the request's `Authorization: Bearer` token equal `expected`? Compared as SHA-256 digests
/// with every byte looked at, so the time taken says nothing about how much of a guess was right.
fn carries(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = bearer(headers) else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}
