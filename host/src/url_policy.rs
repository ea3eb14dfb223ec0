//! Which URLs a job may render. Only `http` and `https` (inline HTML goes in the `html` field):
//! `file:` would read the server's disk, `chrome:` and `devtools:` reach browser internals, and
//! `javascript:`/`data:` are code or documents better sent as `html`.
//!
//! With `deny_private_networks`, the host must resolve to public addresses only. This checks the URL
//! as given; redirects the page follows later are not re-checked (run pagewright in a network namespace
//! or behind an egress proxy where that matters). The API checks a request's URL and webhook, the
//! plugin host a plugin's own navigations, all with the same [`UrlPolicy`].

use std::net::IpAddr;

use url::Url;

/// How long resolving a host for the private-network check may take.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    #[error("the `{0}:` scheme is not allowed: use http or https, or send the document as `html`")]
    Scheme(String),
    #[error("resolving `{host}` failed: {reason}")]
    Resolve {
        host: String,
        reason: std::io::Error,
    },
    #[error(
        "`{host}` resolves to {address}, an internal address, and this server denies private networks"
    )]
    Internal { host: String, address: IpAddr },
}

/// The server's rule for URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    /// Refuse hosts that resolve to loopback, private, link-local or otherwise internal addresses.
    pub deny_private_networks: bool,
}

impl UrlPolicy {
    /// `raw`, parsed, if the policy allows rendering it.
    pub async fn check(&self, raw: &str) -> Result<Url, UrlError> {
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
        if self.deny_private_networks {
            let port = url.port_or_known_default().unwrap_or(80);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            // A resolver that does not answer must not hold the request past any budget.
            let lookup = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)));
            let resolved = match lookup.await {
                Ok(resolved) => resolved,
                Err(_) => Err(std::io::Error::other(format!(
                    "no answer within {DNS_TIMEOUT:?}"
                ))),
            };
            let addresses: Vec<IpAddr> = resolved
                .map_err(|reason| UrlError::Resolve {
                    host: host.to_owned(),
                    reason,
                })?
                .map(|address| address.ip())
                .collect();
            if let Some(&address) = addresses.iter().find(|address| is_internal(**address)) {
                return Err(UrlError::Internal {
                    host: host.to_owned(),
                    address,
                });
            }
        }
        Ok(url)
    }
}

/// Loopback, private, link-local, shared (CGNAT), unspecified, broadcast, multicast and documentation
/// ranges, for IPv4 and IPv6 (including IPv4-mapped IPv6).
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10, carrier-grade NAT
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: UrlPolicy = UrlPolicy {
        deny_private_networks: false,
    };
    const CLOSED: UrlPolicy = UrlPolicy {
        deny_private_networks: true,
    };

    #[tokio::test]
    async fn only_http_and_https_pass() {
        for allowed in ["http://127.0.0.1:8080/a", "https://example.com/"] {
            assert!(OPEN.check(allowed).await.is_ok(), "{allowed}");
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
            let error = OPEN.check(refused).await.expect_err(refused);
            assert!(
                matches!(error, UrlError::Invalid { .. } | UrlError::Scheme(_)),
                "{refused}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn private_networks_are_refused_when_asked() {
        assert!(CLOSED.check("http://127.0.0.1/").await.is_err());
        assert!(CLOSED.check("http://[::1]/").await.is_err());
        assert!(CLOSED.check("http://localhost/").await.is_err());
        assert!(CLOSED.check("http://10.1.2.3/").await.is_err());
        assert!(
            CLOSED
                .check("http://169.254.169.254/latest/meta-data")
                .await
                .is_err()
        );
        assert!(OPEN.check("http://127.0.0.1/").await.is_ok());
    }

    #[test]
    fn internal_ranges() {
        for internal in [
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "::ffff:10.0.0.1",
            "fd00::1",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(
                is_internal(internal.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{internal}"
            );
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(
                !is_internal(public.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{public}"
            );
        }
    }
}
