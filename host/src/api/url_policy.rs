//! Which URLs a job may render. Only `http` and `https` (inline HTML goes in the `html` field):
//! `file:` would read the server's disk, `chrome:` and `devtools:` reach browser internals, and
//! `javascript:`/`data:` are code or documents better sent as `html`.
//!
//! With `deny_private_networks`, the host must resolve to public addresses only. This checks the URL
//! as given; redirects the page follows later are not re-checked (run pagewright in a network namespace
//! or behind an egress proxy where that matters).

use std::net::IpAddr;

use url::Url;

use super::error::ApiError;

/// How long resolving a host for the private-network check may take.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn check(raw: &str, deny_private_networks: bool) -> Result<Url, ApiError> {
    let url = Url::parse(raw).map_err(|error| {
        ApiError::bad_request(
            "invalid_url",
            format!("`{raw}` is not a valid URL: {error}"),
        )
    })?;
    match url.scheme() {
        "http" | "https" => {}
        scheme => {
            return Err(ApiError::bad_request(
                "url_not_allowed",
                format!(
                    "the `{scheme}:` scheme is not allowed: use http or https, or send the document as `html`"
                ),
            ));
        }
    }
    let Some(host) = url.host_str() else {
        return Err(ApiError::bad_request(
            "invalid_url",
            format!("`{raw}` has no host"),
        ));
    };
    if deny_private_networks {
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
            .map_err(|error| {
                ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "navigation_failed",
                    format!("resolving `{host}` failed: {error}"),
                )
            })?
            .map(|address| address.ip())
            .collect();
        if let Some(address) = addresses.iter().find(|address| is_internal(**address)) {
            return Err(ApiError::bad_request(
                "url_not_allowed",
                format!(
                    "`{host}` resolves to {address}, an internal address, and this server denies private networks"
                ),
            ));
        }
    }
    Ok(url)
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

    #[tokio::test]
    async fn only_http_and_https_pass() {
        for allowed in ["http://127.0.0.1:8080/a", "https://example.com/"] {
            assert!(check(allowed, false).await.is_ok(), "{allowed}");
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
            let error = check(refused, false).await.expect_err(refused);
            assert_eq!(
                error.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn private_networks_are_refused_when_asked() {
        assert!(check("http://127.0.0.1/", true).await.is_err());
        assert!(check("http://[::1]/", true).await.is_err());
        assert!(check("http://localhost/", true).await.is_err());
        assert!(check("http://10.1.2.3/", true).await.is_err());
        assert!(
            check("http://169.254.169.254/latest/meta-data", true)
                .await
                .is_err()
        );
        assert!(check("http://127.0.0.1/", false).await.is_ok());
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
