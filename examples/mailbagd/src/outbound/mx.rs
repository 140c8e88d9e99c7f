//! Where outbound mail goes: the smarthost, or the MX hosts of the recipient's domain
//! (RFC 5321 section 5.1), with the implicit MX (the domain's own A/AAAA records), null MX
//! (RFC 7505) and address literals.
//!
//! DNS is behind the small [`Resolve`] trait so that the routing rules are tested with a
//! fake resolver; [`HickoryResolver`] is the real one.
//!
//! # Examples
//!
//! ```
//! use std::net::IpAddr;
//! use mailbagd::outbound::mx::{route_domain, FakeResolver};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut dns = FakeResolver::default();
//! dns.add_mx("example.net", &[(10, "mx1.example.net"), (20, "mx2.example.net")]);
//! dns.add_ip("mx1.example.net", "192.0.2.1");
//! dns.add_ip("mx2.example.net", "192.0.2.2");
//! let route = route_domain("example.net", &dns, 25, 7).await.unwrap();
//! let names: Vec<&str> = route.hops.iter().map(|h| h.name.as_str()).collect();
//! assert_eq!(names, ["mx1.example.net", "mx2.example.net"]);
//! assert_eq!(route.hops[0].addrs[0].ip(), "192.0.2.1".parse::<IpAddr>().unwrap());
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;

/// A boxed future (the trait is object safe without an async-trait crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A DNS lookup failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("domain does not exist")]
    NotFound,
    /// The name exists but has no record of this type.
    #[error("no records of this type")]
    NoRecords,
    /// Server failure, timeout, network error: try later.
    #[error("DNS lookup failed: {0}")]
    Temporary(String),
}

/// The lookups routing needs.
pub trait Resolve: Send + Sync + fmt::Debug {
    /// MX records of `domain`: `(preference, exchange)`, exchange without a trailing dot,
    /// `"."` for the null MX.
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<(u16, String)>, DnsError>>;
    /// A and AAAA records of `host`.
    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>>;
}

/// One host to try, with its addresses (tried in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Host name (or the address literal) for logs, TLS SNI and the DSN `Remote-MTA`.
    pub name: String,
    /// Addresses with the port.
    pub addrs: Vec<SocketAddr>,
}

/// The hosts to try for a destination, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// MX hosts by preference (random order among equal preference), or the single
    /// smarthost / implicit MX / literal.
    pub hops: Vec<Hop>,
}

/// Why there is no route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Never deliverable: bounce with this enhanced status (e.g. 5.1.10 for null MX).
    #[error("{status} {text}")]
    Permanent {
        /// Enhanced status code, e.g. `5.1.2`.
        status: &'static str,
        /// Explanation.
        text: String,
    },
    /// Try later.
    #[error("{text}")]
    Temporary {
        /// Explanation.
        text: String,
    },
}

/// Is `ip` an address relayed mail must not be sent to unless the admin allows it:
/// loopback, unspecified, or link-local (IPv4-mapped IPv6 addresses count as their
/// IPv4 address)?
pub fn is_internal(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The route without the addresses [`is_internal`] refuses (`[relay]
/// allow_internal_next_hops = false`, the default): DNS or an address literal must not
/// send relayed mail back into this host or its link. A hop left without addresses is
/// dropped; no hop left is a permanent failure (`5.4.4`).
///
/// # Errors
///
/// [`RouteError::Permanent`] when every address of every hop is internal.
pub fn without_internal_hops(route: Route) -> Result<Route, RouteError> {
    let hops: Vec<Hop> = route
        .hops
        .into_iter()
        .filter_map(|mut hop| {
            hop.addrs.retain(|a| !is_internal(a.ip()));
            (!hop.addrs.is_empty()).then_some(hop)
        })
        .collect();
    if hops.is_empty() {
        return Err(RouteError::Permanent {
            status: "5.4.4",
            text: "every next hop is a loopback, unspecified or link-local address".into(),
        });
    }
    Ok(Route { hops })
}

/// Parses an address literal as `final_domain()` gives it: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
pub fn parse_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    if let Some(v6) = inner
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
        .and_then(|_| inner.get(5..))
    {
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A small deterministic generator for shuffling equal preferences (xorshift64*).
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Sorts MX records by preference and shuffles each group of equal preference with `seed`
/// (RFC 5321 section 5.1: random order among equal preferences spreads the load).
pub fn order_mx(mut records: Vec<(u16, String)>, seed: u64) -> Vec<String> {
    records.sort_by_key(|r| r.0);
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let pref = records[i].0;
        let end = records[i..]
            .iter()
            .position(|r| r.0 != pref)
            .map_or(records.len(), |p| i + p);
        let group = &mut records[i..end];
        for k in (1..group.len()).rev() {
            let j = usize::try_from(next_random(&mut state) % (k as u64 + 1)).unwrap_or(0);
            group.swap(k, j);
        }
        out.extend(group.iter().map(|r| r.1.clone()));
        i = end;
    }
    out
}

async fn hop(resolver: &dyn Resolve, name: &str, port: u16) -> Result<Hop, DnsError> {
    let ips = resolver.ips(name).await?;
    if ips.is_empty() {
        return Err(DnsError::NoRecords);
    }
    Ok(Hop {
        name: name.to_string(),
        addrs: ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
    })
}

/// The route to a recipient domain (already normalised: lower case, no trailing dot, or an
/// address literal). `seed` randomises equal MX preferences.
///
/// - `[literal]`: that address.
/// - MX records: the exchanges by preference; a single MX `.` is the null MX (RFC 7505):
///   permanent `5.1.10`. Exchanges whose address lookup fails are skipped; if none is left,
///   a temporary failure.
/// - No MX record (the name exists): the implicit MX, the domain's own A/AAAA records
///   (RFC 5321 section 5.1); none either: permanent `5.1.2`.
/// - NXDOMAIN: permanent `5.1.2`. DNS server failure: temporary.
///
/// # Errors
///
/// A [`RouteError`] as listed.
pub async fn route_domain(
    domain: &str,
    resolver: &dyn Resolve,
    port: u16,
    seed: u64,
) -> Result<Route, RouteError> {
    if domain.starts_with('[') {
        return match parse_literal(domain) {
            Some(ip) => Ok(Route {
                hops: vec![Hop {
                    name: domain.to_string(),
                    addrs: vec![SocketAddr::new(ip, port)],
                }],
            }),
            None => Err(RouteError::Permanent {
                status: "5.1.2",
                text: format!("unusable address literal {domain}"),
            }),
        };
    }
    let temp = |e: String| RouteError::Temporary { text: e };
    match resolver.mx(domain).await {
        Ok(records) if !records.is_empty() => {
            if records.len() == 1 && records.iter().all(|r| r.1 == "." || r.1.is_empty()) {
                return Err(RouteError::Permanent {
                    status: "5.1.10",
                    text: format!("{domain} does not accept mail (null MX, RFC 7505)"),
                });
            }
            let names: Vec<String> = order_mx(
                records
                    .into_iter()
                    .filter(|r| r.1 != "." && !r.1.is_empty())
                    .collect(),
                seed,
            );
            let mut hops = Vec::with_capacity(names.len());
            let mut last = None;
            for n in names {
                match hop(resolver, &n, port).await {
                    Ok(h) => hops.push(h),
                    Err(e) => {
                        tracing::debug!(mx = %n, error = %e, "MX host has no usable address");
                        last = Some(e);
                    }
                }
            }
            if hops.is_empty() {
                return Err(temp(format!(
                    "no MX host of {domain} could be resolved ({})",
                    last.map_or_else(|| "no address".to_string(), |e| e.to_string())
                )));
            }
            Ok(Route { hops })
        }
        Ok(_) | Err(DnsError::NoRecords) => match hop(resolver, domain, port).await {
            Ok(h) => Ok(Route { hops: vec![h] }),
            Err(DnsError::NotFound | DnsError::NoRecords) => Err(RouteError::Permanent {
                status: "5.1.2",
                text: format!("{domain} has no MX and no address record"),
            }),
            Err(DnsError::Temporary(e)) => Err(temp(e)),
        },
        Err(DnsError::NotFound) => Err(RouteError::Permanent {
            status: "5.1.2",
            text: format!("domain {domain} does not exist"),
        }),
        Err(DnsError::Temporary(e)) => Err(temp(e)),
    }
}

/// The route to the smarthost `host:port` (a host name or an IP address; `[v6]:port` for
/// IPv6). No MX lookup; a failed address lookup is temporary.
///
/// # Errors
///
/// [`RouteError::Temporary`] when the name cannot be resolved now.
pub async fn route_smarthost(
    host: &str,
    port: u16,
    resolver: &dyn Resolve,
) -> Result<Route, RouteError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Route {
            hops: vec![Hop {
                name: host.to_string(),
                addrs: vec![SocketAddr::new(ip, port)],
            }],
        });
    }
    match hop(resolver, host, port).await {
        Ok(h) => Ok(Route { hops: vec![h] }),
        Err(e) => Err(RouteError::Temporary {
            text: format!("smarthost {host}: {e}"),
        }),
    }
}

/// The system's (or a given) DNS resolver, through hickory-resolver.
#[derive(Debug)]
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// Uses `/etc/resolv.conf`, or `server` (UDP and TCP on that address) when given.
    ///
    /// # Errors
    ///
    /// When the system configuration cannot be read.
    pub fn new(server: Option<SocketAddr>) -> Result<HickoryResolver, String> {
        let provider = TokioConnectionProvider::default();
        let inner = match server {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    provider,
                )
                .build()
            }
            None => TokioResolver::builder(provider)
                .map_err(|e| format!("DNS configuration: {e}"))?
                .build(),
        };
        Ok(HickoryResolver { inner })
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn map_err(e: &hickory_resolver::ResolveError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NotFound
    } else if e.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Temporary(e.to_string())
    }
}

impl Resolve for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<(u16, String)>, DnsError>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .mx_lookup(fqdn(domain))
                .await
                .map_err(|e| map_err(&e))?;
            Ok(lookup
                .iter()
                .map(|mx| {
                    let x = mx.exchange();
                    let name = if x.is_root() {
                        ".".to_string()
                    } else {
                        x.to_ascii().trim_end_matches('.').to_ascii_lowercase()
                    };
                    (mx.preference(), name)
                })
                .collect())
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .lookup_ip(fqdn(host))
                .await
                .map_err(|e| map_err(&e))?;
            Ok(lookup.iter().collect())
        })
    }
}

/// A resolver for hosts without DNS configuration: every lookup fails temporarily
/// (mail waits in the queue; a smarthost given by IP address still works).
#[derive(Debug, Default, Clone)]
pub struct NoDns(pub String);

impl Resolve for NoDns {
    fn mx<'a>(&'a self, _domain: &'a str) -> BoxFuture<'a, Result<Vec<(u16, String)>, DnsError>> {
        let e = DnsError::Temporary(self.0.clone());
        Box::pin(async move { Err(e) })
    }

    fn ips<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        let e = DnsError::Temporary(self.0.clone());
        Box::pin(async move { Err(e) })
    }
}

/// An in-memory resolver for tests and examples.
#[derive(Debug, Default, Clone)]
pub struct FakeResolver {
    mx: HashMap<String, Result<Vec<(u16, String)>, DnsError>>,
    ips: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
}

impl FakeResolver {
    /// Sets the MX records of `domain`.
    pub fn add_mx(&mut self, domain: &str, records: &[(u16, &str)]) {
        self.mx.insert(
            domain.to_string(),
            Ok(records.iter().map(|(p, n)| (*p, n.to_string())).collect()),
        );
    }

    /// Makes the MX lookup of `domain` fail with `e`.
    pub fn fail_mx(&mut self, domain: &str, e: DnsError) {
        self.mx.insert(domain.to_string(), Err(e));
    }

    /// Adds an address of `host` (a bad address is added as `0.0.0.0`: test helper).
    pub fn add_ip(&mut self, host: &str, ip: &str) {
        let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Ok(v) = self
            .ips
            .entry(host.to_string())
            .or_insert_with(|| Ok(Vec::new()))
        {
            v.push(ip);
        }
    }

    /// Makes the address lookup of `host` fail with `e`.
    pub fn fail_ip(&mut self, host: &str, e: DnsError) {
        self.ips.insert(host.to_string(), Err(e));
    }
}

impl Resolve for FakeResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<(u16, String)>, DnsError>> {
        // A name with addresses but no MX exists (NODATA); an unknown name is NXDOMAIN.
        let r = match self.mx.get(domain) {
            Some(r) => r.clone(),
            None if self.ips.contains_key(domain) => Err(DnsError::NoRecords),
            None => Err(DnsError::NotFound),
        };
        Box::pin(async move { r })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        let r = match self.ips.get(host) {
            Some(r) => r.clone(),
            None if self.mx.contains_key(host) => Err(DnsError::NoRecords),
            None => Err(DnsError::NotFound),
        };
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    fn names(r: &Route) -> Vec<&str> {
        r.hops.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn mx_hosts_in_preference_order() {
        let mut dns = FakeResolver::default();
        dns.add_mx(
            "example.net",
            &[
                (30, "c.example.net"),
                (10, "a.example.net"),
                (20, "b.example.net"),
            ],
        );
        for h in ["a", "b", "c"] {
            dns.add_ip(&format!("{h}.example.net"), "192.0.2.1");
        }
        let r = rt()
            .block_on(route_domain("example.net", &dns, 25, 1))
            .unwrap();
        assert_eq!(
            names(&r),
            ["a.example.net", "b.example.net", "c.example.net"]
        );
        assert_eq!(r.hops[0].addrs, ["192.0.2.1:25".parse().unwrap()]);
    }

    #[test]
    fn equal_preferences_are_shuffled_but_stay_after_better_ones() {
        let recs = |n: &[&str]| -> Vec<(u16, String)> {
            let mut v = vec![(5, "first".to_string())];
            v.extend(n.iter().map(|s| (10, s.to_string())));
            v.push((20, "last".to_string()));
            v
        };
        let mut orders = std::collections::HashSet::new();
        for seed in 0..64 {
            let o = order_mx(recs(&["x", "y", "z"]), seed);
            assert_eq!(o.first().map(String::as_str), Some("first"));
            assert_eq!(o.last().map(String::as_str), Some("last"));
            let mut mid = o[1..4].to_vec();
            orders.insert(mid.clone());
            mid.sort();
            assert_eq!(mid, ["x", "y", "z"]);
        }
        assert!(orders.len() > 1, "equal preferences never shuffled");
        // Deterministic for a given seed.
        assert_eq!(
            order_mx(recs(&["x", "y"]), 3),
            order_mx(recs(&["x", "y"]), 3)
        );
    }

    #[test]
    fn null_mx_is_permanent() {
        let mut dns = FakeResolver::default();
        dns.add_mx("nomail.example", &[(0, ".")]);
        let e = rt()
            .block_on(route_domain("nomail.example", &dns, 25, 0))
            .unwrap_err();
        assert!(
            matches!(
                e,
                RouteError::Permanent {
                    status: "5.1.10",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn no_mx_falls_back_to_address_records() {
        let mut dns = FakeResolver::default();
        dns.add_ip("plain.example", "192.0.2.7");
        dns.add_ip("plain.example", "2001:db8::7");
        let r = rt()
            .block_on(route_domain("plain.example", &dns, 2525, 0))
            .unwrap();
        assert_eq!(names(&r), ["plain.example"]);
        assert_eq!(
            r.hops[0].addrs,
            [
                "192.0.2.7:2525".parse().unwrap(),
                "[2001:db8::7]:2525".parse().unwrap()
            ]
        );
        // Neither MX nor address: permanent. NXDOMAIN: permanent. SERVFAIL: temporary.
        let mut dns = FakeResolver::default();
        dns.fail_mx("nothing.example", DnsError::NoRecords);
        dns.fail_ip("nothing.example", DnsError::NoRecords);
        let e = rt().block_on(route_domain("nothing.example", &dns, 25, 0));
        assert!(
            matches!(
                e,
                Err(RouteError::Permanent {
                    status: "5.1.2",
                    ..
                })
            ),
            "{e:?}"
        );
        let e = rt().block_on(route_domain("nx.example", &FakeResolver::default(), 25, 0));
        assert!(
            matches!(
                e,
                Err(RouteError::Permanent {
                    status: "5.1.2",
                    ..
                })
            ),
            "{e:?}"
        );
        let mut dns = FakeResolver::default();
        dns.fail_mx("flaky.example", DnsError::Temporary("SERVFAIL".into()));
        let e = rt().block_on(route_domain("flaky.example", &dns, 25, 0));
        assert!(matches!(e, Err(RouteError::Temporary { .. })), "{e:?}");
    }

    #[test]
    fn unresolvable_mx_hosts_are_skipped() {
        let mut dns = FakeResolver::default();
        dns.add_mx(
            "example.org",
            &[(10, "gone.example.org"), (20, "ok.example.org")],
        );
        dns.fail_ip("gone.example.org", DnsError::NotFound);
        dns.add_ip("ok.example.org", "192.0.2.9");
        let r = rt()
            .block_on(route_domain("example.org", &dns, 25, 0))
            .unwrap();
        assert_eq!(names(&r), ["ok.example.org"]);
        dns.fail_ip("ok.example.org", DnsError::Temporary("timeout".into()));
        let e = rt().block_on(route_domain("example.org", &dns, 25, 0));
        assert!(matches!(e, Err(RouteError::Temporary { .. })), "{e:?}");
    }

    #[test]
    fn address_literals_are_used_directly() {
        let dns = FakeResolver::default();
        let r = rt()
            .block_on(route_domain("[192.0.2.3]", &dns, 25, 0))
            .unwrap();
        assert_eq!(r.hops[0].addrs, ["192.0.2.3:25".parse().unwrap()]);
        let r = rt()
            .block_on(route_domain("[IPv6:2001:db8::1]", &dns, 25, 0))
            .unwrap();
        assert_eq!(r.hops[0].addrs, ["[2001:db8::1]:25".parse().unwrap()]);
        let e = rt().block_on(route_domain("[bogus]", &dns, 25, 0));
        assert!(matches!(e, Err(RouteError::Permanent { .. })));
    }

    #[test]
    fn smarthost_by_ip_or_name() {
        let mut dns = FakeResolver::default();
        let r = rt()
            .block_on(route_smarthost("127.0.0.1", 2525, &dns))
            .unwrap();
        assert_eq!(r.hops[0].addrs, ["127.0.0.1:2525".parse().unwrap()]);
        let r = rt().block_on(route_smarthost("[::1]", 25, &dns)).unwrap();
        assert_eq!(r.hops[0].addrs, ["[::1]:25".parse().unwrap()]);
        dns.add_ip("relay.isp.example", "192.0.2.25");
        let r = rt()
            .block_on(route_smarthost("relay.isp.example", 587, &dns))
            .unwrap();
        assert_eq!(r.hops[0].name, "relay.isp.example");
        let e = rt().block_on(route_smarthost("unknown.example", 25, &dns));
        assert!(matches!(e, Err(RouteError::Temporary { .. })));
    }

    #[test]
    fn internal_next_hops_are_refused() {
        for a in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "169.254.1.1",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["192.0.2.1", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.1"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
        let hop = |name: &str, addrs: &[&str]| Hop {
            name: name.into(),
            addrs: addrs
                .iter()
                .map(|a| SocketAddr::new(a.parse().unwrap(), 25))
                .collect(),
        };
        let route = Route {
            hops: vec![hop("a", &["127.0.0.1"]), hop("b", &["::1", "192.0.2.7"])],
        };
        assert_eq!(
            without_internal_hops(route),
            Ok(Route {
                hops: vec![hop("b", &["192.0.2.7"])]
            })
        );
        let all_internal = Route {
            hops: vec![hop("a", &["127.0.0.1"]), hop("c", &["fe80::2"])],
        };
        assert!(matches!(
            without_internal_hops(all_internal),
            Err(RouteError::Permanent {
                status: "5.4.4",
                ..
            })
        ));
    }
}
