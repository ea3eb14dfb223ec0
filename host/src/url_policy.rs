//! Which URLs a job may render. Only `http` and `https` (inline HTML goes in the `html` field):
//! `file:` would read the server's disk, `chrome:` and `devtools:` reach browser internals, and
//! `javascript:`/`data:` are code or documents better sent as `html`.
//!
//! The host must also pass the server's egress rules ([`EgressRules`]: the private-network switch,
//! allowed and denied hosts and networks). This is the early check, before any browser work, so a
//! refused URL is a 400 naming the reason; everything the page fetches afterwards (redirects,
//! subresources, frames) is held by the egress proxy (`egress`), under the same rules. The API
//! checks a request's URL and webhook, the plugin host a plugin's own navigations, all with the
//! same [`UrlPolicy`].

use std::sync::Arc;

use url::Url;

use crate::egress::{EgressRules, Refusal};

/// Why a URL may not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`{url}` is not a valid URL: {reason}")]
    Invalid {
        url: String,
        reason: url::ParseError,
    },
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("the URL has {0} characters; at most {MAX_URL_CHARS} are taken")]
    TooLong(usize),
    #[error("the `{0}:` scheme is not allowed: use http or https, or send the document as `html`")]
    Scheme(String),
    #[error(transparent)]
    Egress(Refusal),
}

/// The longest URL taken (in bytes): browsers and servers cap theirs at 8-64 KiB, and a URL goes
/// into job records, headers and webhooks.
pub const MAX_URL_CHARS: usize = 32 * 1024;

/// The server's rule for URLs. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    pub rules: Arc<EgressRules>,
}

impl UrlPolicy {
    /// `raw`, parsed, if the policy allows rendering it.
    pub async fn check(&self, raw: &str) -> Result<Url, UrlError> {
        if raw.len() > MAX_URL_CHARS {
            return Err(UrlError::TooLong(raw.len()));
        }
        let url = Url::parse(raw).map_err(|reason| UrlError::Invalid {
            url: raw.to_owned(),
            reason,
        })?;
        match url.scheme() {
            "http" | "https" => {}
            scheme => return Err(UrlError::Scheme(scheme.to_owned())),
        }
        let Some(host) = url.host_str() else {
            return Err(UrlError::NoHost(raw.to_owned()));
        };
        self.rules.check_host(host).map_err(UrlError::Egress)?;
        // Resolved here only when an address rule could refuse it (the proxy resolves anyway).
        if self.rules.checks_addresses() {
            let port = url.port_or_known_default().unwrap_or(80);
            self.rules
                .resolve(host, port)
                .await
                .map_err(UrlError::Egress)?;
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> UrlPolicy {
        UrlPolicy::default()
    }

    fn closed() -> UrlPolicy {
        UrlPolicy {
            rules: Arc::new(EgressRules {
                deny_private_networks: true,
                ..EgressRules::default()
            }),
        }
    }

    #[tokio::test]
    async fn only_http_and_https_pass() {
        for allowed in ["http://127.0.0.1:8080/a", "https://example.com/"] {
            assert!(open().check(allowed).await.is_ok(), "{allowed}");
        }
        for refused in [
            "file:///etc/passwd",
            "chrome://settings",
            "javascript:alert(1)",
            "data:text/html,hi",
            "devtools://devtools/bundled/inspector.html",
            "ftp://example.com/",
            "not a url",
        ] {
            let error = open().check(refused).await.expect_err(refused);
            assert!(
                matches!(error, UrlError::Invalid { .. } | UrlError::Scheme(_)),
                "{refused}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn private_networks_are_refused_when_asked() {
        assert!(closed().check("http://127.0.0.1/").await.is_err());
        assert!(closed().check("http://[::1]/").await.is_err());
        assert!(closed().check("http://localhost/").await.is_err());
        assert!(closed().check("http://10.1.2.3/").await.is_err());
        assert!(
            closed()
                .check("http://169.254.169.254/latest/meta-data")
                .await
                .is_err()
        );
        assert!(open().check("http://127.0.0.1/").await.is_ok());
    }
}
