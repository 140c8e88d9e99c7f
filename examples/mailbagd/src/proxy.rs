//! Behind a TCP load balancer (`[proxy] trusted_networks`): a connection
//! from a trusted address must start with a PROXY protocol header (version 1
//! or 2, parsed by pop-before-smtp's [`proxy_header`]), and the client
//! address it carries is the client address for everything — limits, relay
//! authorization, logs, `Received:`. The header is read with `peek` and
//! consumed to its last byte only, so the protocol's first byte is never
//! taken; it comes before a TLS handshake.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use mailbag_pop_before_smtp::proxy_header::{self, ProxyHeader, ProxyHeaderError, ProxyLimits};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The default of `[proxy] header_timeout`: a trusted connection that has
/// not sent a whole header by then is closed.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one
/// address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether the network is every address (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or network"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => Some(l)
                .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
                .filter(|l| *l == "0" || !l.starts_with('0'))
                .and_then(|l| l.parse::<u8>().ok())
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Why a trusted connection is closed before it is served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No whole header within the timeout.
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    /// The connection closed before the header ended.
    #[error("connection closed before the PROXY header ended")]
    Closed,
    /// Not a valid header.
    #[error(transparent)]
    Header(#[from] ProxyHeaderError),
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

fn closed(e: io::Error) -> ProxyError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ProxyError::Closed
    } else {
        ProxyError::Io(e)
    }
}

/// Reads the PROXY header at the start of `stream` within `timeout`,
/// consuming exactly its bytes.
///
/// # Errors
///
/// [`ProxyError`]: close the connection.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyError> {
    let limits = ProxyLimits::default();
    let read = async {
        // Exactly the header's bytes: version 2 says its length after 16
        // bytes; version 1 ends at its LF (at most 107 bytes, read one by one).
        let mut buf = vec![0u8; 16];
        stream.read_exact(&mut buf[..1]).await.map_err(closed)?;
        if buf[0] == proxy_header::V2_SIGNATURE[0] {
            stream.read_exact(&mut buf[1..16]).await.map_err(closed)?;
            let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if proxy_header::parse(&buf, &limits)?.is_none() && 16 + len <= limits.max_v2_len {
                buf.resize(16 + len, 0);
                stream.read_exact(&mut buf[16..]).await.map_err(closed)?;
            }
        } else {
            buf.truncate(1);
            while buf.last() != Some(&b'\n') && buf.len() < proxy_header::V1_MAX_LEN {
                let mut b = [0u8; 1];
                stream.read_exact(&mut b).await.map_err(closed)?;
                buf.push(b[0]);
            }
        }
        match proxy_header::parse(&buf, &limits)? {
            Some((header, used)) if used == buf.len() => Ok(header),
            // Cannot be: the bytes read end where a header would.
            _ => Err(ProxyHeaderError::Malformed("incomplete").into()),
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0.0/08", "x/8", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_header_is_consumed_to_its_last_byte_only() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            // Split over two writes, the protocol's first bytes right after it.
            c.write_all(b"PROXY TCP4 192.0.2.7 ").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.write_all(b"127.0.0.1 4000 110\r\nUSER joe\r\n")
                .await
                .unwrap();
            c
        });
        let (mut s, _) = l.accept().await.unwrap();
        let h = read_header(&mut s, Duration::from_secs(5)).await.unwrap();
        assert_eq!(h.source(), Some("192.0.2.7:4000".parse().unwrap()));
        let mut rest = [0u8; 10];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"USER joe\r\n");
        let _c = client.await.unwrap();

        // Silence past the timeout, and no header at all.
        let c2 = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let e = read_header(&mut s, Duration::from_millis(100)).await;
        assert!(matches!(e, Err(ProxyError::Timeout(_))), "{e:?}");
        drop(c2);
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        c3.write_all(b"EHLO x\r\n").await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        drop(c3); // "EHLO x\r\n" then EOF: not a header
        let e = read_header(&mut s, Duration::from_secs(5)).await;
        assert!(
            matches!(e, Err(ProxyError::Closed | ProxyError::Header(_))),
            "{e:?}"
        );
    }
}
