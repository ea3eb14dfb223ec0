//! [`Upstream`]: another HTTP proxy the egress proxy hands connections on to (the server's
//! `--proxy`, or a job's `page.proxy`), with the credentials it wants. Chromium never sees them: it
//! talks to a listener of the egress proxy (one per upstream, `proxy.rs`), which authenticates to the
//! upstream itself. HTTPS and WebSockets go through the upstream's `CONNECT`; plain `http://`
//! requests are sent to it in absolute form, as proxies take them.

use std::fmt;

use base64::Engine as _;
use hyper::header::HeaderValue;

/// An upstream HTTP proxy.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// `Basic ...`, if the proxy wants credentials.
    authorization: Option<String>,
}

impl Upstream {
    /// `server` is `http://host:port` (the port defaults to 80); credentials come apart or in the
    /// URL (`http://user:pass@host:port`).
    pub fn parse(
        server: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, String> {
        let url = url::Url::parse(server).map_err(|error| {
            format!("`{server}` is not a proxy URL such as http://host:3128: {error}")
        })?;
        if url.scheme() != "http" {
            return Err(format!(
                "`{server}`: only http:// proxies are supported (HTTPS sites go through them with \
                 CONNECT), not {}://",
                url.scheme()
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{server}`: a proxy URL has no path, query or fragment"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{server}` names no host"))?
            .to_owned();
        let in_url_user = (!url.username().is_empty()).then(|| decoded(url.username()));
        let in_url_password = url.password().map(decoded);
        let username = username.map(str::to_owned).or(in_url_user);
        let password = password.map(str::to_owned).or(in_url_password);
        let authorization = match (username, password) {
            (None, None) => None,
            (username, password) => {
                let pair = format!(
                    "{}:{}",
                    username.unwrap_or_default(),
                    password.unwrap_or_default()
                );
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(80),
            authorization,
        })
    }

    /// The `Proxy-Authorization` value for this proxy, if it has credentials.
    pub(super) fn authorization(&self) -> Option<HeaderValue> {
        self.authorization
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
    }

    /// A short name for this proxy and its credentials, the same on every host: what a browser
    /// context for it is keyed by.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!(
            "{}\n{}\n{}",
            self.host,
            self.port,
            self.authorization.as_deref().unwrap_or_default()
        ));
        digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Credentials stay out of logs and debug output.
impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Upstream({}:{}{})",
            self.host,
            self.port,
            if self.authorization.is_some() {
                " with credentials"
            } else {
                ""
            }
        )
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// A URL's user or password without its `%XX` escapes.
fn decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_parse_with_their_credentials_apart_or_in_the_url() {
        let plain = Upstream::parse("http://proxy.example:3128", None, None).expect("valid");
        assert_eq!((plain.host.as_str(), plain.port), ("proxy.example", 3128));
        assert!(plain.authorization().is_none());
        let apart =
            Upstream::parse("http://proxy.example:3128", Some("ann"), Some("p@ss")).expect("valid");
        let inline =
            Upstream::parse("http://ann:p%40ss@proxy.example:3128", None, None).expect("valid");
        assert_eq!(apart, inline);
        assert_eq!(
            apart.authorization().expect("credentials"),
            "Basic YW5uOnBAc3M="
        );
        assert_ne!(plain.id(), apart.id(), "credentials make another context");
        assert!(
            !format!("{apart:?}").contains("p@ss"),
            "no password in debug output"
        );
        assert_eq!(
            Upstream::parse("http://proxy.example", None, None)
                .expect("valid")
                .port,
            80
        );
    }

    #[test]
    fn other_schemes_and_paths_are_refused() {
        for bad in [
            "socks5://proxy.example:1080",
            "https://proxy.example",
            "http://proxy.example/path",
            "proxy.example:3128",
        ] {
            assert!(Upstream::parse(bad, None, None).is_err(), "{bad}");
        }
    }
}
