//! [`EgressRules`]: which hosts and addresses a page's or a webhook's connection may reach. Host
//! names are checked as written; addresses as resolved, and a connection goes only to an address
//! that passed (`proxy.rs`), so a name that resolves to a public address once and to an internal
//! one the next time never gets through.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

/// How long resolving a host may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection may not be made.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("`{host}` is on this server's egress deny list")]
    DeniedHost { host: String },
    #[error("`{host}` is not on this server's egress allow list")]
    HostNotAllowed { host: String },
    #[error("`{host}` resolves to {address}, in a network this server's egress policy denies")]
    DeniedNetwork { host: String, address: IpAddr },
    #[error(
        "`{host}` resolves to {address}, an internal address, and this server denies private networks"
    )]
    Internal { host: String, address: IpAddr },
    #[error("{address} is the egress proxy itself")]
    Protected { address: SocketAddr },
    #[error("resolving `{host}` failed: {reason}")]
    Resolve {
        host: String,
        #[source]
        reason: std::io::Error,
    },
}

/// A host name or a pattern of names: `example.com` (that name) or `*.example.com` (any name
/// under it). Compared without case and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Self, String> {
        let normal = pattern.trim_end_matches('.').to_ascii_lowercase();
        let name = normal.strip_prefix("*.").unwrap_or(&normal);
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':')
            });
        if valid {
            Ok(Self(normal))
        } else {
            Err(format!(
                "`{pattern}` is not a host name or `*.domain` pattern"
            ))
        }
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.')),
            None => host == self.0,
        }
    }
}

/// The server's egress policy; the default lets everything through.
#[derive(Debug, Clone, Default)]
pub struct EgressRules {
    /// Refuse loopback, private, link-local and other internal addresses (`is_internal`).
    pub deny_private_networks: bool,
    /// When not empty, only these hosts.
    pub allow_hosts: Vec<HostPattern>,
    pub deny_hosts: Vec<HostPattern>,
    /// Reachable even when private networks are denied (an internal site the service is for).
    pub allow_networks: Vec<IpNet>,
    pub deny_networks: Vec<IpNet>,
}

impl EgressRules {
    /// Can an address rule refuse anything? (Else only host names matter.)
    pub fn checks_addresses(&self) -> bool {
        self.deny_private_networks || !self.deny_networks.is_empty()
    }

    /// Does the policy let `host` through by name? (Its addresses are checked once resolved.)
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if self.deny_hosts.iter().any(|pattern| pattern.matches(bare)) {
            return Err(Refusal::DeniedHost {
                host: bare.to_owned(),
            });
        }
        if !self.allow_hosts.is_empty()
            && !self.allow_hosts.iter().any(|pattern| pattern.matches(bare))
        {
            return Err(Refusal::HostNotAllowed {
                host: bare.to_owned(),
            });
        }
        Ok(())
    }

    /// May a connection for `host` go to `address`?
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), Refusal> {
        let address = canonical(address);
        if self.deny_networks.iter().any(|net| net.contains(&address)) {
            return Err(Refusal::DeniedNetwork {
                host: host.to_owned(),
                address,
            });
        }
        if self.allow_networks.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        if self.deny_private_networks && is_internal(address) {
            return Err(Refusal::Internal {
                host: host.to_owned(),
                address,
            });
        }
        Ok(())
    }

    /// The addresses a connection to `host:port` may use: resolved once, each checked. A name with
    /// any refused address is refused whole (a resolver that mixes answers is not to be trusted).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        self.check_host(host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(address) => vec![SocketAddr::new(address, port)],
            Err(_) => {
                let resolve = |reason| Refusal::Resolve {
                    host: bare.to_owned(),
                    reason,
                };
                // A resolver that does not answer must not hold a page's request past any budget.
                tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((bare, port)))
                    .await
                    .map_err(|_| {
                        resolve(std::io::Error::other(format!(
                            "no answer within {DNS_TIMEOUT:?}"
                        )))
                    })?
                    .map_err(resolve)?
                    .collect()
            }
        };
        for address in &addresses {
            self.check_address(bare, address.ip())?;
        }
        if addresses.is_empty() {
            return Err(Refusal::Resolve {
                host: bare.to_owned(),
                reason: std::io::Error::other("no addresses"),
            });
        }
        Ok(addresses)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so one rule covers both spellings.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// Loopback, private, link-local, shared (CGNAT), unspecified, broadcast, multicast and documentation
/// ranges, for IPv4 and IPv6 (including IPv4-mapped IPv6).
pub fn is_internal(address: IpAddr) -> bool {
    match canonical(address) {
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
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
        }
    }
}

/// Is `address` this machine itself (loopback, or the unspecified address, which connects here)?
pub(super) fn is_this_machine(address: IpAddr) -> bool {
    let address = canonical(address);
    address.is_loopback() || address.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EgressRules {
        EgressRules {
            deny_private_networks: true,
            allow_hosts: Vec::new(),
            deny_hosts: vec!["*.blocked.test".parse().expect("pattern")],
            allow_networks: vec!["10.9.0.0/16".parse().expect("network")],
            deny_networks: vec!["93.184.216.0/24".parse().expect("network")],
        }
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
            "::ffff:127.0.0.1",
        ] {
            let address: IpAddr = internal.parse().expect("an address");
            assert!(is_internal(address), "{internal}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            let address: IpAddr = public.parse().expect("an address");
            assert!(!is_internal(address), "{public}");
        }
    }

    #[test]
    fn lists_and_networks() {
        let rules = rules();
        assert!(rules.check_host("a.blocked.test").is_err());
        assert!(rules.check_host("A.Blocked.Test.").is_err());
        assert!(
            rules.check_host("blocked.test").is_ok(),
            "only names under it"
        );
        assert!(rules.check_host("example.com").is_ok());
        let check = |address: &str| rules.check_address("h", address.parse().expect("address"));
        assert!(check("127.0.0.1").is_err());
        assert!(check("::ffff:127.0.0.1").is_err());
        assert!(
            check("10.9.3.4").is_ok(),
            "allowed network beats the private switch"
        );
        assert!(check("10.8.3.4").is_err());
        assert!(check("93.184.216.34").is_err(), "denied network");
        assert!(check("8.8.8.8").is_ok());
        let only = EgressRules {
            allow_hosts: vec!["example.com".parse().expect("pattern")],
            ..EgressRules::default()
        };
        assert!(only.check_host("example.com").is_ok());
        assert!(only.check_host("other.com").is_err());
        assert!("bad pattern!".parse::<HostPattern>().is_err());
    }

    #[tokio::test]
    async fn names_are_checked_by_every_address_they_resolve_to() {
        let rules = rules();
        assert!(matches!(
            rules.resolve("localhost", 80).await,
            Err(Refusal::Internal { .. })
        ));
        assert!(rules.resolve("[::1]", 80).await.is_err());
        assert!(
            EgressRules::default()
                .resolve("localhost", 80)
                .await
                .is_ok()
        );
    }
}
