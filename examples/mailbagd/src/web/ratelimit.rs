//! Login attempts per client address: a fixed window per address, bounded
//! in size, sans-IO (the caller passes the time).
//!
//! Every attempt counts (a success too), so that parallel guesses cannot
//! slip through before a failure is recorded. IPv4-mapped IPv6 addresses
//! count as IPv4, and IPv6 addresses count per /64 (one subscriber's
//! prefix), so hopping addresses inside a prefix gains nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits of the login rate limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitOptions {
    /// Attempts allowed per address within `window` (default 10).
    pub max_attempts: u32,
    /// The window, starting at an address's first attempt (default 15 minutes).
    pub window: Duration,
    /// Addresses remembered at once; the oldest window is forgotten to make
    /// room (default 100000).
    pub max_entries: usize,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        RateLimitOptions {
            max_attempts: 10,
            window: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

/// The limiter.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use mailbagd::web::ratelimit::{LoginLimiter, RateLimitOptions};
///
/// let mut opts = RateLimitOptions::default();
/// opts.max_attempts = 2;
/// let mut l = LoginLimiter::new(opts);
/// let (ip, t0) = ("192.0.2.1".parse().unwrap(), Instant::now());
/// assert!(l.attempt(ip, t0).is_ok());
/// assert!(l.attempt(ip, t0).is_ok());
/// let retry_after = l.attempt(ip, t0).unwrap_err();
/// assert_eq!(retry_after, Duration::from_secs(15 * 60));
/// assert!(l.attempt(ip, t0 + retry_after).is_ok());
/// ```
#[derive(Debug)]
pub struct LoginLimiter {
    options: RateLimitOptions,
    windows: HashMap<IpAddr, Window>,
}

/// The key an address is counted under: IPv4 as is (IPv4-mapped IPv6 as
/// IPv4), IPv6 by its /64 prefix.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl LoginLimiter {
    /// An empty limiter.
    pub fn new(options: RateLimitOptions) -> LoginLimiter {
        LoginLimiter {
            options,
            windows: HashMap::new(),
        }
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Counts a login attempt from `ip`: `Err(retry_after)` when the
    /// address has used up its attempts in the current window.
    pub fn attempt(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = limit_key(ip);
        let window = self.options.window;
        if let Some(w) = self.windows.get_mut(&key) {
            let age = now.saturating_duration_since(w.start);
            if age >= window {
                *w = Window {
                    start: now,
                    count: 1,
                };
                return Ok(());
            }
            if w.count >= self.options.max_attempts {
                return Err(window - age);
            }
            w.count += 1;
            return Ok(());
        }
        if self.windows.len() >= self.options.max_entries {
            self.windows
                .retain(|_, w| now.saturating_duration_since(w.start) < window);
        }
        while self.windows.len() >= self.options.max_entries.max(1) {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.windows.remove(&k);
                }
                None => break,
            }
        }
        self.windows.insert(
            key,
            Window {
                start: now,
                count: 1,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: u32, entries: usize) -> LoginLimiter {
        LoginLimiter::new(RateLimitOptions {
            max_attempts: max,
            window: Duration::from_secs(100),
            max_entries: entries,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limit_per_address_with_retry_after() {
        let mut l = limiter(3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.attempt(ip("192.0.2.1"), t0).is_ok());
        }
        assert_eq!(
            l.attempt(ip("192.0.2.1"), t0 + Duration::from_secs(40)),
            Err(Duration::from_secs(60))
        );
        // Another address is not affected.
        assert!(l.attempt(ip("192.0.2.2"), t0).is_ok());
        // The window ends: a fresh count.
        assert!(
            l.attempt(ip("192.0.2.1"), t0 + Duration::from_secs(100))
                .is_ok()
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let mut l = limiter(2, 10);
        let t0 = Instant::now();
        assert!(l.attempt(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.attempt(ip("2001:db8:1:2::ffff"), t0).is_ok());
        assert!(l.attempt(ip("2001:db8:1:2:abcd::9"), t0).is_err());
        assert!(l.attempt(ip("2001:db8:1:3::1"), t0).is_ok());
        assert!(l.attempt(ip("::ffff:192.0.2.7"), t0).is_ok());
        assert!(l.attempt(ip("192.0.2.7"), t0).is_ok());
        assert!(l.attempt(ip("192.0.2.7"), t0).is_err());
    }

    #[test]
    fn bounded_forgets_expired_then_oldest() {
        let mut l = limiter(1, 2);
        let t0 = Instant::now();
        assert!(l.attempt(ip("192.0.2.1"), t0).is_ok());
        assert!(
            l.attempt(ip("192.0.2.2"), t0 + Duration::from_secs(10))
                .is_ok()
        );
        assert!(
            l.attempt(ip("192.0.2.3"), t0 + Duration::from_secs(20))
                .is_ok()
        );
        assert_eq!(l.len(), 2);
        // .1 was the oldest and was forgotten; .2 is still limited.
        let now = t0 + Duration::from_secs(30);
        assert!(l.attempt(ip("192.0.2.2"), now).is_err());
        // Expired windows go first.
        let later = t0 + Duration::from_secs(500);
        assert!(l.attempt(ip("192.0.2.9"), later).is_ok());
        assert_eq!(l.len(), 1);
    }
}
