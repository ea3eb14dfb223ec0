//! The web pages the server serves itself: `/playground`, a form over the API for trying renders,
//! plugins and async jobs from a browser. One HTML file with its CSS and JavaScript inline, built
//! into the binary: nothing is fetched from elsewhere, so it works offline and behind firewalls.
//!
//! The pages hold no data: they are open to anyone, like `/health`, and the API they call asks for
//! the tokens it always does (the page has fields for them).

use axum::http::header;
use axum::response::IntoResponse;

const PLAYGROUND: &str = include_str!("playground.html");

/// What a browser may do with the page: its own inline code and the API on this origin only, and
/// results shown from `blob:` URLs (images, PDFs).
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' blob: data:; \
    frame-src blob:; object-src blob:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /playground`.
pub async fn playground() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PLAYGROUND,
    )
}
