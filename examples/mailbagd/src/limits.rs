//! Connection limits: total simultaneous connections and connections per
//! client address. A [`ConnectionPermit`] is held for the life of a
//! connection and gives its slot back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// `limits.max_connections` reached.
    #[error("too many connections")]
    Total,
    /// `limits.max_connections_per_ip` reached for this address.
    #[error("too many connections from this address")]
    PerAddress,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Shared connection counter (cheap to clone).
///
/// # Examples
///
/// ```
/// use mailbagd::limits::{ConnectionLimiter, LimitExceeded};
/// let l = ConnectionLimiter::new(3, 2);
/// let ip = "127.0.0.2".parse().unwrap();
/// let a = l.try_acquire(ip).unwrap();
/// let _b = l.try_acquire(ip).unwrap();
/// assert_eq!(l.try_acquire(ip).unwrap_err(), LimitExceeded::PerAddress);
/// drop(a);
/// assert!(l.try_acquire(ip).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl ConnectionLimiter {
    /// A limiter admitting `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimiter {
            max_total,
            max_per_ip,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Admits a connection from `ip`, or says which limit is reached.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionPermit, LimitExceeded> {
        let ip = normalise(ip);
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.total >= self.max_total {
            return Err(LimitExceeded::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(LimitExceeded::PerAddress);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnectionPermit {
            ip,
            counts: Arc::clone(&self.counts),
        })
    }

    /// Connections currently admitted.
    pub fn active(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_limit() {
        let l = ConnectionLimiter::new(2, 10);
        let a = l.try_acquire("127.0.0.1".parse().unwrap()).unwrap();
        let _b = l.try_acquire("127.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            l.try_acquire("127.0.0.3".parse().unwrap()).unwrap_err(),
            LimitExceeded::Total
        );
        assert_eq!(l.active(), 2);
        drop(a);
        assert_eq!(l.active(), 1);
        assert!(l.try_acquire("127.0.0.3".parse().unwrap()).is_ok());
    }

    #[test]
    fn per_ip_limit_counts_mapped_v6_as_v4() {
        let l = ConnectionLimiter::new(10, 1);
        let _a = l.try_acquire("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            l.try_acquire("::ffff:10.0.0.1".parse().unwrap())
                .unwrap_err(),
            LimitExceeded::PerAddress
        );
        assert!(l.try_acquire("10.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn map_does_not_grow_after_release() {
        let l = ConnectionLimiter::new(10, 10);
        for i in 0..100u8 {
            let p = l.try_acquire(IpAddr::from([10, 0, 0, i])).unwrap();
            drop(p);
        }
        assert_eq!(l.active(), 0);
        assert!(l.counts.lock().unwrap().per_ip.is_empty());
    }
}
