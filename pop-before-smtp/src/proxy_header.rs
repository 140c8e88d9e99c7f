//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and
//! 2), both directions, sans-IO: a TCP load balancer puts it before the
//! client's first byte to say whose connection it relays. Behind a balancer
//! the header's source address is the client address POP-before-SMTP must
//! record and check; the balancer's own address must never be.
//!
//! [`parse`] frames and parses a header at the start of a buffer (returning
//! `Ok(None)` while it is incomplete, and how many bytes it took, so the
//! caller reads exactly those and no protocol byte after them);
//! [`ProxyHeader::to_v1`] and [`ProxyHeader::to_v2`] make one.
//!
//! # Examples
//!
//! ```
//! use mailbag_pop_before_smtp::proxy_header::{parse, ProxyHeader, ProxyLimits};
//!
//! let wire = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 110\r\nUSER joe\r\n";
//! let (header, used) = parse(wire, &ProxyLimits::default())?.expect("complete");
//! assert_eq!(header.source().map(|a| a.to_string()).as_deref(), Some("192.0.2.7:40000"));
//! assert_eq!(&wire[used..], b"USER joe\r\n");
//! // The same header in version 2, and back.
//! let v2 = header.to_v2();
//! assert_eq!(parse(&v2, &ProxyLimits::default())?, Some((header, v2.len())));
//! // Incomplete: read more.
//! assert_eq!(parse(b"PROXY TCP4 192.0", &ProxyLimits::default())?, None);
//! # Ok::<(), mailbag_pop_before_smtp::proxy_header::ProxyHeaderError>(())
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The twelve bytes that start a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header, CRLF included (the specification's 107).
pub const V1_MAX_LEN: usize = 107;

/// The default of [`ProxyLimits::max_v2_len`].
pub const DEFAULT_MAX_V2_LEN: usize = 1024;

/// Limits of [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyLimits {
    /// Longest version 2 header accepted, the 16 fixed bytes, the addresses
    /// and the TLVs together (default [`DEFAULT_MAX_V2_LEN`], 1024; HAProxy
    /// sends 28 to a few hundred bytes).
    pub max_v2_len: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_v2_len: DEFAULT_MAX_V2_LEN,
        }
    }
}

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A relayed TCP connection from `source` to `destination`.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the balancer's).
        destination: SocketAddr,
    },
    /// No client address: the balancer's own connection (version 2
    /// `LOCAL`, a health check), `PROXY UNKNOWN`, or an address family that
    /// is not TCP over IPv4 or IPv6 (the receiver uses the real connection's
    /// addresses, as the specification says).
    Unknown,
}

/// Why a header is refused (the connection should be closed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The bytes start neither `PROXY ` nor the version 2 signature.
    #[error("no PROXY protocol header")]
    NotProxy,
    /// A version 1 line longer than [`V1_MAX_LEN`], or a version 2 header
    /// longer than [`ProxyLimits::max_v2_len`].
    #[error("PROXY header too long")]
    TooLong,
    /// A malformed header.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

impl ProxyHeader {
    /// The client address, when the header names one that a TCP client can
    /// have: not for [`ProxyHeader::Unknown`], and not for a source no
    /// connection comes from (unspecified `0.0.0.0` or `::`, "this network"
    /// `0.0.0.0/8`, the reserved `240.0.0.0/4` with broadcast
    /// `255.255.255.255`, multicast), which names nobody; the receiver then
    /// uses the real connection's addresses, as for `Unknown`. (Such a
    /// source, taken as a client, would make one address for all who claim
    /// it: a login under it would authorize them all.)
    ///
    /// ```
    /// use mailbag_pop_before_smtp::proxy_header::ProxyHeader;
    ///
    /// let header = |source: &str| ProxyHeader::Proxied {
    ///     source: source.parse().unwrap(),
    ///     destination: "192.0.2.1:110".parse().unwrap(),
    /// };
    /// assert!(header("198.51.100.7:4000").source().is_some());
    /// for nobody in ["0.0.0.0:4000", "[::]:4000", "255.255.255.255:4000", "224.0.0.1:4000", "[ff02::1]:4000", "0.1.2.3:4000", "240.0.0.1:4000"] {
    ///     assert_eq!(header(nobody).source(), None, "{nobody}");
    /// }
    /// ```
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Proxied { source, .. } => {
                let ip = source.ip().to_canonical();
                let nobody = ip.is_unspecified()
                    || ip.is_multicast()
                    || match ip {
                        // "This network" (0/8) and the reserved 240/4, broadcast
                        // included (RFC 1122 3.2.1.3, RFC 1112 4).
                        core::net::IpAddr::V4(v4) => v4.octets()[0] == 0 || v4.octets()[0] >= 240,
                        core::net::IpAddr::V6(_) => false,
                    };
                (!nobody).then_some(*source)
            }
            ProxyHeader::Unknown => None,
        }
    }

    /// The version 1 (text) form. Addresses of different families cannot be
    /// written in version 1: such a header becomes `PROXY UNKNOWN`.
    pub fn to_v1(&self) -> Vec<u8> {
        match self {
            ProxyHeader::Proxied {
                source,
                destination,
            } if source.is_ipv4() == destination.is_ipv4() => {
                let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                format!(
                    "PROXY {family} {} {} {} {}\r\n",
                    source.ip(),
                    destination.ip(),
                    source.port(),
                    destination.port()
                )
                .into_bytes()
            }
            _ => b"PROXY UNKNOWN\r\n".to_vec(),
        }
    }

    /// The version 2 (binary) form, without TLVs: `PROXY` over `STREAM`
    /// (`LOCAL` for [`ProxyHeader::Unknown`]). An IPv4 address paired with
    /// an IPv6 one is written as its IPv4-mapped IPv6 address.
    pub fn to_v2(&self) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        match self {
            ProxyHeader::Unknown => {
                out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            }
            ProxyHeader::Proxied {
                source,
                destination,
            } => match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                    out.extend_from_slice(&source.port().to_be_bytes());
                    out.extend_from_slice(&destination.port().to_be_bytes());
                }
                (s, d) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V4(a) => a.to_ipv6_mapped(),
                        IpAddr::V6(a) => a,
                    };
                    out.extend_from_slice(&[0x21, 0x21, 0, 36]);
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                    out.extend_from_slice(&source.port().to_be_bytes());
                    out.extend_from_slice(&destination.port().to_be_bytes());
                }
            },
        }
        out
    }
}

/// Parses the header at the start of `input`: `Ok(Some((header, used)))`
/// with the number of bytes it takes, `Ok(None)` when `input` is a
/// proper prefix of a header (read more; nothing read yet is one too), an
/// error when it cannot become one. Never reads past the header. Never
/// panics.
///
/// ```
/// use mailbag_pop_before_smtp::proxy_header::{parse, ProxyLimits};
///
/// let limits = ProxyLimits::default();
/// assert_eq!(parse(b"", &limits), Ok(None));
/// assert_eq!(parse(b"PROXY TCP4 192.0.2.7", &limits), Ok(None));
/// let (header, used) = parse(b"PROXY TCP4 192.0.2.7 192.0.2.1 4000 25\r\nEHLO", &limits)
///     .unwrap()
///     .unwrap();
/// assert_eq!(header.source(), Some("192.0.2.7:4000".parse().unwrap()));
/// assert_eq!(used, 40);
/// assert!(parse(b"EHLO x\r\n", &limits).is_err());
/// ```
///
/// # Errors
///
/// [`ProxyHeaderError`].
pub fn parse(
    input: &[u8],
    limits: &ProxyLimits,
) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    if input.is_empty() {
        return Ok(None);
    }
    let sig = &V2_SIGNATURE[..input.len().min(V2_SIGNATURE.len())];
    if input.starts_with(sig) && !input.is_empty() {
        return parse_v2(input, limits);
    }
    let v1 = &b"PROXY "[..input.len().min(6)];
    if input.starts_with(v1) && !input.is_empty() {
        return parse_v1(input);
    }
    Err(ProxyHeaderError::NotProxy)
}

fn parse_v2(
    input: &[u8],
    limits: &ProxyLimits,
) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let Some(fixed) = input.get(..16) else {
        return Ok(None);
    };
    let (ver_cmd, fam) = (fixed[12], fixed[13]);
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let total = 16 + len;
    if total > limits.max_v2_len {
        return Err(ProxyHeaderError::TooLong);
    }
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed(
            "version 2 header with another version",
        ));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyHeaderError::Malformed("unknown command")),
    };
    let Some(body) = input.get(16..total) else {
        return Ok(None);
    };
    if local {
        return Ok(Some((ProxyHeader::Unknown, total)));
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let header = match fam {
        // TCP over IPv4.
        0x11 => {
            let a = body
                .get(..12)
                .ok_or(ProxyHeaderError::Malformed("IPv4 addresses cut short"))?;
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(&a[0..4]), port(&a[8..10])),
                destination: SocketAddr::new(ip(&a[4..8]), port(&a[10..12])),
            }
        }
        // TCP over IPv6.
        0x21 => {
            let a = body
                .get(..36)
                .ok_or(ProxyHeaderError::Malformed("IPv6 addresses cut short"))?;
            let ip = |b: &[u8]| {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(&a[0..16]), port(&a[32..34])),
                destination: SocketAddr::new(ip(&a[16..32]), port(&a[34..36])),
            }
        }
        // UNSPEC, UDP, UNIX: no TCP client address; use the real connection's.
        f if f >> 4 <= 3 && f & 0x0f <= 2 => ProxyHeader::Unknown,
        _ => return Err(ProxyHeaderError::Malformed("unknown address family")),
    };
    Ok(Some((header, total)))
}

fn parse_v1(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let Some(lf) = memchr::memchr(b'\n', &input[..input.len().min(V1_MAX_LEN)]) else {
        return if input.len() >= V1_MAX_LEN {
            Err(ProxyHeaderError::TooLong)
        } else {
            Ok(None)
        };
    };
    let used = lf + 1;
    let line = input[..lf]
        .strip_suffix(b"\r")
        .ok_or(ProxyHeaderError::Malformed("line does not end with CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed("not ASCII"))?;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let family = fields
        .next()
        .ok_or(ProxyHeaderError::Malformed("no family"))?;
    if family == "UNKNOWN" {
        // Anything may follow; the receiver ignores it.
        return Ok(Some((ProxyHeader::Unknown, used)));
    }
    let v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "family is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let mut next = || {
        fields
            .next()
            .ok_or(ProxyHeaderError::Malformed("missing field"))
    };
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyHeaderError::Malformed("extra field"));
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
        let ip = if v4 {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        } else {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        };
        ip.map_err(|_| ProxyHeaderError::Malformed("bad address"))
    };
    let port = |s: &str| -> Result<u16, ProxyHeaderError> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        canonical
            .then(|| s.parse().ok())
            .flatten()
            .ok_or(ProxyHeaderError::Malformed("bad port"))
    };
    Ok(Some((
        ProxyHeader::Proxied {
            source: SocketAddr::new(ip(src)?, port(sport)?),
            destination: SocketAddr::new(ip(dst)?, port(dport)?),
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> ProxyLimits {
        ProxyLimits::default()
    }

    #[test]
    fn the_specification_examples() {
        let (h, n) = parse(b"PROXY TCP6 2001:db8::1 ::1 65535 995\r\nrest", &lim())
            .unwrap()
            .unwrap();
        assert_eq!(n, 38);
        assert_eq!(h.source(), Some("[2001:db8::1]:65535".parse().unwrap()));
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", &lim()),
            Ok(Some((ProxyHeader::Unknown, 31)))
        );
        // What HAProxy's send-proxy-v2 writes for 127.0.0.2:5000 -> 127.0.0.1:110.
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 127, 0, 0, 2, 127, 0, 0, 1, 0x13, 0x88, 0, 110,
        ]);
        v2.extend_from_slice(b"+OK");
        let (h, n) = parse(&v2, &lim()).unwrap().unwrap();
        assert_eq!(
            (h.source(), n),
            (Some("127.0.0.2:5000".parse().unwrap()), 28)
        );
        // LOCAL (a health check) and TLVs after the addresses.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 3, 1, 2, 3]);
        assert_eq!(parse(&local, &lim()), Ok(Some((ProxyHeader::Unknown, 19))));
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 001.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad, &lim()), Err(ProxyHeaderError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"USER joe\r\n", &lim()),
            Err(ProxyHeaderError::NotProxy)
        );
        assert_eq!(parse(&[b'P'; 200], &lim()), Err(ProxyHeaderError::NotProxy));
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(parse(&long, &lim()), Err(ProxyHeaderError::TooLong));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0x10, 0]);
        assert_eq!(parse(&big, &lim()), Err(ProxyHeaderError::TooLong));
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0, 12]);
        assert!(matches!(
            parse(&v3, &lim()),
            Err(ProxyHeaderError::Malformed(_))
        ));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(
            parse(&short, &lim()),
            Err(ProxyHeaderError::Malformed(_))
        ));
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::new(IpAddr::from(a), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(a, p)| SocketAddr::new(IpAddr::from(a), p)),
        ]
    }

    proptest! {
        #[test]
        fn both_versions_round_trip(source in arb_addr(), destination in arb_addr(), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let h = ProxyHeader::Proxied { source, destination };
            let v2 = [h.to_v2(), tail.clone()].concat();
            let (back, used) = parse(&v2, &lim()).unwrap().unwrap();
            prop_assert_eq!(used, v2.len() - tail.len());
            let mapped = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) if source.is_ipv4() != destination.is_ipv4() => {
                    SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port())
                }
                _ => a,
            };
            prop_assert_eq!(back, ProxyHeader::Proxied { source: mapped(source), destination: mapped(destination) });
            let v1 = [h.to_v1(), tail.clone()].concat();
            let (back, used) = parse(&v1, &lim()).unwrap().unwrap();
            prop_assert_eq!(used, v1.len() - tail.len());
            if source.is_ipv4() == destination.is_ipv4() {
                prop_assert_eq!(back, h);
            } else {
                prop_assert_eq!(back, ProxyHeader::Unknown);
            }
            // Every proper prefix asks for more.
            for cut in 1..used {
                prop_assert_eq!(parse(&v1[..cut], &lim()), Ok(None));
            }
        }

        #[test]
        fn never_panics_and_never_reads_past_the_input(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some((_, used))) = parse(&bytes, &lim()) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
