//! The web pages the server serves itself: `/playground`, a form over the API for trying renders,
//! plugins and async jobs from a browser. One HTML file with its CSS and JavaScript inline, built
//! into the binary: nothing is fetched from elsewhere, so it works offline and behind firewalls.
//!
//! The pages hold no data: they are open to anyone, like `/health`, and the API they call asks for
//! the tokens it always does (the page has fields for them).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine;
use sha2::{Digest, Sha256};

const PLAYGROUND: &str = include_str!("playground.html");

/// What a browser may do with the page: run its own script (by its hash, so nothing injected or
/// opened from a `blob:` on this origin can), call the API on this origin, and show results from
/// `blob:` URLs (images, PDFs).
static PAGE_POLICY: LazyLock<String> = LazyLock::new(|| {
    let script = PLAYGROUND
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' blob: data:; frame-src blob:; object-src blob:; \
         form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// `GET /playground`.
pub async fn playground() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PLAYGROUND,
    )
}
