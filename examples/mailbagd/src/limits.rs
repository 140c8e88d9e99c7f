//! Connection limits: simultaneous connections per listener role (or over
//! all listeners) and per client address. A [`ConnectionPermit`] is held for
//! the life of a connection and gives its slot back when dropped.
//!
//! Client addresses are counted per host: an IPv4 address as itself (an
//! IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address by its /64
//! prefix, since one host (one customer, one attacker) owns a whole /64 and
//! picks its interface identifiers freely.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// `limits.max_connections` reached (over all listeners, or for the
    /// listener's role when the limit is given per role).
    #[error("too many connections")]
    Total,
    /// `limits.max_connections_per_ip` reached for this address (IPv6: /64).
    #[error("too many connections from this address")]
    PerAddress,
}

/// The listener roles that have their own connection limit: the TLS and
/// plain listeners of a service share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionClass {
    /// POP3, plain and implicit TLS.
    Pop3,
    /// SMTP on the port-25 role.
    Smtp,
    /// Submission, plain and implicit TLS.
    Submission,
    /// The self-service web page.
    Web,
}

impl ConnectionClass {
    fn index(self) -> usize {
        match self {
            ConnectionClass::Pop3 => 0,
            ConnectionClass::Smtp => 1,
            ConnectionClass::Submission => 2,
            ConnectionClass::Web => 3,
        }
    }
}

/// Every [`ConnectionClass`], in the order of [`ConnectionClass::index`].
const CLASSES: [ConnectionClass; 4] = [
    ConnectionClass::Pop3,
    ConnectionClass::Smtp,
    ConnectionClass::Submission,
    ConnectionClass::Web,
];

/// Simultaneous connections allowed per [`ConnectionClass`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerRole {
    /// POP3 listeners (`pop3`).
    pub pop3: usize,
    /// Port-25 SMTP listeners (`smtp`).
    pub smtp: usize,
    /// Submission listeners (`submission`).
    pub submission: usize,
    /// Web page listeners (`web`).
    pub web: usize,
}

impl PerRole {
    /// The limits when `[limits] max_connections` is absent: 5,000 each for
    /// POP3 and port-25 SMTP, the roles an ISP's customers and peers crowd,
    /// and 500 each for submission and the web page. An idle connection
    /// costs about 8 KiB, so all 11,000 fit in under 100 MiB; at start-up
    /// the defaults are lowered to fit the open-file limit
    /// ([`MaxConnections::fit`]).
    pub const DEFAULT: PerRole = PerRole {
        pop3: 5_000,
        smtp: 5_000,
        submission: 500,
        web: 500,
    };

    /// The limits per role.
    pub fn new(pop3: usize, smtp: usize, submission: usize, web: usize) -> PerRole {
        PerRole {
            pop3,
            smtp,
            submission,
            web,
        }
    }

    fn get(&self, class: ConnectionClass) -> usize {
        match class {
            ConnectionClass::Pop3 => self.pop3,
            ConnectionClass::Smtp => self.smtp,
            ConnectionClass::Submission => self.submission,
            ConnectionClass::Web => self.web,
        }
    }

    fn get_mut(&mut self, class: ConnectionClass) -> &mut usize {
        match class {
            ConnectionClass::Pop3 => &mut self.pop3,
            ConnectionClass::Smtp => &mut self.smtp,
            ConnectionClass::Submission => &mut self.submission,
            ConnectionClass::Web => &mut self.web,
        }
    }
}

impl Default for PerRole {
    fn default() -> Self {
        PerRole::DEFAULT
    }
}

/// The roles whose connection limit the configuration left at its default
/// ([`PerRole::DEFAULT`]): only these are lowered to fit the open-file
/// limit, a value the administrator wrote is kept as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultedRoles(u8);

impl DefaultedRoles {
    /// No role defaulted (every limit written in the configuration).
    pub const NONE: DefaultedRoles = DefaultedRoles(0);
    /// Every role defaulted (`[limits] max_connections` absent).
    pub const ALL: DefaultedRoles = DefaultedRoles(0b1111);

    /// These roles and `class`.
    pub fn with(self, class: ConnectionClass) -> DefaultedRoles {
        DefaultedRoles(self.0 | 1 << class.index())
    }

    /// Whether `class` is among these roles.
    pub fn contains(self, class: ConnectionClass) -> bool {
        self.0 & 1 << class.index() != 0
    }
}

/// `[limits] max_connections`: one pool over all listeners (a plain
/// integer, the older form) or a limit per role (a table), so that a flood on
/// one port cannot lock users out of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaxConnections {
    /// At most this many over all listeners together.
    Shared(usize),
    /// Each role its own limit.
    PerRole(PerRole),
}

impl Default for MaxConnections {
    fn default() -> Self {
        MaxConnections::PerRole(PerRole::default())
    }
}

impl MaxConnections {
    /// The most connections over all listeners together.
    ///
    /// ```
    /// use mailbagd::limits::{MaxConnections, PerRole};
    /// assert_eq!(MaxConnections::Shared(300).total(), 300);
    /// assert_eq!(MaxConnections::PerRole(PerRole::new(1, 2, 3, 4)).total(), 10);
    /// ```
    pub fn total(&self) -> usize {
        match self {
            MaxConnections::Shared(n) => *n,
            MaxConnections::PerRole(p) => p
                .pop3
                .saturating_add(p.smtp)
                .saturating_add(p.submission)
                .saturating_add(p.web),
        }
    }

    /// These limits with the `defaulted` roles lowered, in proportion to
    /// their defaults, until the total is at most `capacity`; each keeps at
    /// least one connection. Limits the configuration wrote (every role not
    /// in `defaulted`, and a plain integer) stay as they are, even when
    /// they alone pass `capacity`.
    ///
    /// ```
    /// use mailbagd::limits::{ConnectionClass, DefaultedRoles, MaxConnections, PerRole};
    /// let all = MaxConnections::default();
    /// // Room for 11,000: nothing changes.
    /// assert_eq!(all.fit(DefaultedRoles::ALL, 11_000), all);
    /// // Room for 2,200: each default at a fifth.
    /// assert_eq!(
    ///     all.fit(DefaultedRoles::ALL, 2_200),
    ///     MaxConnections::PerRole(PerRole::new(1_000, 1_000, 100, 100))
    /// );
    /// // `smtp = 1000` written, the rest defaulted: the rest share 1,200.
    /// let given = MaxConnections::PerRole(PerRole::new(5_000, 1_000, 500, 500));
    /// let defaulted = DefaultedRoles::NONE
    ///     .with(ConnectionClass::Pop3)
    ///     .with(ConnectionClass::Submission)
    ///     .with(ConnectionClass::Web);
    /// assert_eq!(
    ///     given.fit(defaulted, 2_200),
    ///     MaxConnections::PerRole(PerRole::new(1_000, 1_000, 100, 100))
    /// );
    /// ```
    pub fn fit(self, defaulted: DefaultedRoles, capacity: usize) -> MaxConnections {
        let MaxConnections::PerRole(mut p) = self else {
            return self;
        };
        if self.total() <= capacity {
            return self;
        }
        let (mut fixed, mut scaled) = (0usize, 0usize);
        for c in CLASSES {
            if defaulted.contains(c) {
                scaled = scaled.saturating_add(p.get(c));
            } else {
                fixed = fixed.saturating_add(p.get(c));
            }
        }
        if scaled == 0 {
            return self;
        }
        let room = capacity.saturating_sub(fixed);
        let mut sum = 0usize;
        for c in CLASSES {
            if defaulted.contains(c) {
                let n = p.get_mut(c);
                // `room < scaled` here, so the quotient is below `*n`; u128
                // keeps the product exact.
                *n = ((*n as u128 * room as u128 / scaled as u128) as usize).max(1);
                sum = sum.saturating_add(*n);
            }
        }
        // Raising a share of 0 to 1 can pass `room`: take the excess from
        // the largest shares.
        while sum > room {
            let Some(largest) = CLASSES
                .into_iter()
                .filter(|c| defaulted.contains(*c) && p.get(*c) > 1)
                .max_by_key(|c| p.get(*c))
            else {
                break;
            };
            *p.get_mut(largest) -= 1;
            sum -= 1;
        }
        MaxConnections::PerRole(p)
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_class: [usize; 4],
    per_ip: HashMap<IpAddr, usize>,
}

/// Shared connection counter (cheap to clone).
///
/// # Examples
///
/// ```
/// use mailbagd::limits::{ConnectionClass, ConnectionLimiter, LimitExceeded};
/// let l = ConnectionLimiter::new(3, 2);
/// let ip = "127.0.0.2".parse().unwrap();
/// let a = l.try_acquire(ConnectionClass::Pop3, ip).unwrap();
/// let _b = l.try_acquire(ConnectionClass::Smtp, ip).unwrap();
/// assert_eq!(
///     l.try_acquire(ConnectionClass::Pop3, ip).unwrap_err(),
///     LimitExceeded::PerAddress
/// );
/// drop(a);
/// assert!(l.try_acquire(ConnectionClass::Pop3, ip).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    max: MaxConnections,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    class: ConnectionClass,
    key: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

/// The key a client address is counted under: IPv4-mapped IPv6 addresses as
/// their IPv4 address, other IPv6 addresses as their /64 prefix.
///
/// ```
/// use mailbagd::limits::address_key;
/// let k = |s: &str| address_key(s.parse().unwrap()).to_string();
/// assert_eq!(k("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
/// assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
/// assert_eq!(k("192.0.2.7"), "192.0.2.7");
/// ```
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

impl ConnectionLimiter {
    /// A limiter admitting `max_total` connections over every role,
    /// `max_per_ip` from one address (IPv6: one /64).
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimiter::with_max(MaxConnections::Shared(max_total), max_per_ip)
    }

    /// A limiter with `max` (shared or per role) and `max_per_ip` from one
    /// address (IPv6: one /64).
    pub fn with_max(max: MaxConnections, max_per_ip: usize) -> Self {
        ConnectionLimiter {
            max,
            max_per_ip,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Admits a connection of `class` from `ip`, or says which limit is reached.
    pub fn try_acquire(
        &self,
        class: ConnectionClass,
        ip: IpAddr,
    ) -> Result<ConnectionPermit, LimitExceeded> {
        let key = address_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let full = match self.max {
            MaxConnections::Shared(n) => c.total >= n,
            MaxConnections::PerRole(r) => {
                c.per_class.get(class.index()).copied().unwrap_or(0) >= r.get(class)
            }
        };
        if full {
            return Err(LimitExceeded::Total);
        }
        let n = c.per_ip.entry(key).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(LimitExceeded::PerAddress);
        }
        *n += 1;
        c.total += 1;
        if let Some(k) = c.per_class.get_mut(class.index()) {
            *k += 1;
        }
        Ok(ConnectionPermit {
            class,
            key,
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
        if let Some(k) = c.per_class.get_mut(self.class.index()) {
            *k = k.saturating_sub(1);
        }
        if let Some(n) = c.per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POP3: ConnectionClass = ConnectionClass::Pop3;
    const SMTP: ConnectionClass = ConnectionClass::Smtp;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn total_limit() {
        let l = ConnectionLimiter::new(2, 10);
        let a = l.try_acquire(POP3, ip("127.0.0.1")).unwrap();
        let _b = l.try_acquire(SMTP, ip("127.0.0.2")).unwrap();
        assert_eq!(
            l.try_acquire(POP3, ip("127.0.0.3")).unwrap_err(),
            LimitExceeded::Total
        );
        assert_eq!(l.active(), 2);
        drop(a);
        assert_eq!(l.active(), 1);
        assert!(l.try_acquire(POP3, ip("127.0.0.3")).is_ok());
    }

    #[test]
    fn per_role_limits_are_independent() {
        let l = ConnectionLimiter::with_max(MaxConnections::PerRole(PerRole::new(1, 2, 1, 1)), 100);
        let _s1 = l.try_acquire(SMTP, ip("10.0.0.1")).unwrap();
        let s2 = l.try_acquire(SMTP, ip("10.0.0.2")).unwrap();
        assert_eq!(
            l.try_acquire(SMTP, ip("10.0.0.3")).unwrap_err(),
            LimitExceeded::Total
        );
        // SMTP is full; POP3, submission and web are not.
        let _p = l.try_acquire(POP3, ip("10.0.0.3")).unwrap();
        let _sub = l
            .try_acquire(ConnectionClass::Submission, ip("10.0.0.3"))
            .unwrap();
        let _w = l.try_acquire(ConnectionClass::Web, ip("10.0.0.3")).unwrap();
        assert_eq!(
            l.try_acquire(POP3, ip("10.0.0.4")).unwrap_err(),
            LimitExceeded::Total
        );
        drop(s2);
        assert!(l.try_acquire(SMTP, ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn per_ip_limit_counts_mapped_v6_as_v4() {
        let l = ConnectionLimiter::new(10, 1);
        let _a = l.try_acquire(POP3, ip("10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(POP3, ip("::ffff:10.0.0.1")).unwrap_err(),
            LimitExceeded::PerAddress
        );
        assert!(l.try_acquire(POP3, ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn per_ip_limit_counts_ipv6_per_64() {
        let l = ConnectionLimiter::new(100, 2);
        let _a = l.try_acquire(POP3, ip("2001:db8:0:1::1")).unwrap();
        let b = l
            .try_acquire(SMTP, ip("2001:db8:0:1:ffff:ffff:ffff:ffff"))
            .unwrap();
        // Same /64, another interface identifier: the same host.
        assert_eq!(
            l.try_acquire(POP3, ip("2001:db8:0:1:1234::9")).unwrap_err(),
            LimitExceeded::PerAddress
        );
        // The neighbouring /64 is another host.
        assert!(l.try_acquire(POP3, ip("2001:db8:0:2::1")).is_ok());
        assert!(l.try_acquire(POP3, ip("2001:db8:0:0:ffff::1")).is_ok());
        drop(b);
        assert!(l.try_acquire(POP3, ip("2001:db8:0:1:1234::9")).is_ok());
    }

    #[test]
    fn address_keys() {
        assert_eq!(address_key(ip("2001:db8::1:2:3:4")), ip("2001:db8:0:0::"));
        assert_eq!(address_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(address_key(ip("::1")), ip("::"));
        assert_eq!(address_key(ip("1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn map_does_not_grow_after_release() {
        let l = ConnectionLimiter::new(10, 10);
        for i in 0..100u8 {
            let p = l.try_acquire(POP3, IpAddr::from([10, 0, 0, i])).unwrap();
            drop(p);
        }
        assert_eq!(l.active(), 0);
        let c = l.counts.lock().unwrap();
        assert!(c.per_ip.is_empty());
        assert_eq!(c.per_class, [0; 4]);
    }

    #[test]
    fn fit_takes_the_minimum_of_one_from_the_largest_share() {
        let all = DefaultedRoles::ALL;
        let before = MaxConnections::PerRole(PerRole::new(10_000, 1, 1, 1));
        assert_eq!(
            before.fit(all, 4),
            MaxConnections::PerRole(PerRole::new(1, 1, 1, 1))
        );
        assert_eq!(
            before.fit(all, 10),
            MaxConnections::PerRole(PerRole::new(7, 1, 1, 1))
        );
        // No room at all: one each, the least a listener can serve.
        assert_eq!(
            before.fit(all, 0),
            MaxConnections::PerRole(PerRole::new(1, 1, 1, 1))
        );
    }

    proptest::proptest! {
        #[test]
        fn fit_lowers_only_defaulted_roles_and_fits_when_it_can(
            given in proptest::array::uniform4(proptest::prop_oneof![1usize..4, 1usize..20_000]),
            mask in 0u8..16,
            capacity in proptest::prop_oneof![0usize..16, 0usize..50_000],
        ) {
            let mut defaulted = DefaultedRoles::NONE;
            for (i, c) in CLASSES.iter().enumerate() {
                if mask & 1 << i != 0 {
                    defaulted = defaulted.with(*c);
                }
            }
            let before = PerRole::new(given[0], given[1], given[2], given[3]);
            let MaxConnections::PerRole(after) =
                MaxConnections::PerRole(before).fit(defaulted, capacity)
            else {
                panic!("a per-role limit stays per role");
            };
            let (mut fixed, mut lowered) = (0, 0);
            for c in CLASSES {
                if defaulted.contains(c) {
                    lowered += 1;
                    proptest::prop_assert!(after.get(c) >= 1);
                    proptest::prop_assert!(after.get(c) <= before.get(c));
                } else {
                    fixed += before.get(c);
                    proptest::prop_assert_eq!(after.get(c), before.get(c));
                }
            }
            let total = MaxConnections::PerRole(after).total();
            if fixed + lowered <= capacity {
                proptest::prop_assert!(total <= capacity);
            }
            if MaxConnections::PerRole(before).total() <= capacity {
                proptest::prop_assert_eq!(after, before);
            }
        }
    }
}
