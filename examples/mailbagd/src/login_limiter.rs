//! The one login limiter of every service (POP3 USER/PASS and SASL, the web
//! page): failed logins counted per client address and per user name, with
//! a growing delay per failure and a lock-out after too many.
//!
//! Sans-IO: the caller passes the time. Two kinds of record:
//!
//! - the **client address**: IPv4 as is (an IPv4-mapped IPv6 address counts
//!   as its IPv4 address), IPv6 by its /64 prefix (one subscriber's
//!   prefix), so hopping addresses inside a prefix gains nothing;
//! - the **user name**, lower-cased (kept as a keyed hash, so a long name
//!   costs no memory), whether the user exists or not, so guessing one
//!   user's password from many addresses is limited too.
//!
//! Every attempt counts as a failure of both records *before* the password
//! is checked ([`LoginLimiter::attempt`]), so parallel guesses cannot slip
//! through before a failure is recorded; a success
//! ([`LoginLimiter::succeeded`]) clears the record of that user, and takes
//! back from the address's record only the failure its own attempt was
//! counted as: logging in to one's own mailbox between guesses does not wipe
//! the guesses made at other users from that address. When a record reaches `failures_before_lockout`, it is locked
//! for `lockout`: every attempt under it is refused, even with the right
//! password. A record is forgotten `lockout` after its last failure (or when
//! its lock-out ends). At most `max_entries` records are kept; to make room,
//! forgotten ones go first, then the one whose last failure is oldest.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::address_key;

/// Limits of the login limiter (`[login]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginLimitOptions {
    /// Failed logins of one address or one user name before it is locked
    /// out (default 5).
    pub failures_before_lockout: u32,
    /// How long a lock-out lasts, and how long a failure is remembered
    /// (default 15 minutes).
    pub lockout: Duration,
    /// Records (addresses and user names) kept at once (default 100000).
    pub max_entries: usize,
}

impl Default for LoginLimitOptions {
    fn default() -> Self {
        LoginLimitOptions {
            failures_before_lockout: 5,
            lockout: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

/// What a record is kept under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    User(u64),
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Record {
    /// Whether the record no longer matters at `now`.
    fn forgotten(&self, now: Instant, lockout: Duration) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now.saturating_duration_since(self.last) >= lockout,
        }
    }
}

/// The delay before answering a failed login: `base` times the number of
/// failures counted (growing by `base` with each failure).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mailbagd::login_limiter::failure_delay;
/// assert_eq!(failure_delay(Duration::from_secs(1), 3), Duration::from_secs(3));
/// ```
pub fn failure_delay(base: Duration, failures: u32) -> Duration {
    base.saturating_mul(failures.max(1))
}

/// The limiter, shared by every service (it locks internally).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use mailbagd::login_limiter::{LoginLimitOptions, LoginLimiter};
///
/// let mut opts = LoginLimitOptions::default();
/// opts.failures_before_lockout = 2;
/// let l = LoginLimiter::new(opts);
/// let (ip, t0) = ("192.0.2.1".parse().unwrap(), Instant::now());
/// assert_eq!(l.attempt(ip, "joe", t0), Ok(1)); // wrong password
/// assert_eq!(l.attempt(ip, "joe", t0), Ok(2)); // wrong again: locked out now
/// let retry_after = l.attempt(ip, "joe", t0).unwrap_err();
/// assert_eq!(retry_after, Duration::from_secs(15 * 60));
/// assert_eq!(l.attempt(ip, "joe", t0 + retry_after), Ok(1));
/// l.succeeded(ip, "joe"); // the right password: the records are cleared
/// ```
#[derive(Debug)]
pub struct LoginLimiter {
    options: LoginLimitOptions,
    hasher: std::collections::hash_map::RandomState,
    records: Mutex<HashMap<Key, Record>>,
}

impl LoginLimiter {
    /// An empty limiter.
    pub fn new(options: LoginLimitOptions) -> LoginLimiter {
        LoginLimiter {
            options,
            hasher: std::collections::hash_map::RandomState::new(),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// The limits.
    pub fn options(&self) -> &LoginLimitOptions {
        &self.options
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Key, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn user_key(&self, user: &str) -> Key {
        let mut h = self.hasher.build_hasher();
        for c in user.chars().flat_map(char::to_lowercase) {
            h.write_u32(u32::from(c));
        }
        Key::User(h.finish())
    }

    fn keys(&self, ip: IpAddr, user: &str) -> [Key; 2] {
        [Key::Address(address_key(ip)), self.user_key(user)]
    }

    /// Records kept (addresses and user names).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    /// A login attempt of `user` from `ip`, counted as a failure until
    /// [`LoginLimiter::succeeded`] says otherwise: `Ok(failures)` (the
    /// larger count of the two records, this attempt included; the delay of
    /// a failure is [`failure_delay`] of it), or `Err(retry_after)` when the
    /// address or the user name is locked out (the password must then not be
    /// checked, and the answer is a failure).
    pub fn attempt(&self, ip: IpAddr, user: &str, now: Instant) -> Result<u32, Duration> {
        let keys = self.keys(ip, user);
        let opts = self.options;
        let mut table = self.table();
        let mut locked = None::<Duration>;
        for k in &keys {
            if let Some(r) = table.get(k) {
                if r.forgotten(now, opts.lockout) {
                    table.remove(k);
                } else if let Some(until) = r.locked_until {
                    let left = until.saturating_duration_since(now);
                    locked = Some(locked.map_or(left, |l| l.max(left)));
                }
            }
        }
        if let Some(left) = locked {
            return Err(left);
        }
        let mut most = 0;
        for k in keys {
            if !table.contains_key(&k) {
                make_room(&mut table, opts, now);
            }
            let r = table.entry(k).or_insert(Record {
                failures: 0,
                last: now,
                locked_until: None,
            });
            r.failures = r.failures.saturating_add(1);
            r.last = now;
            if r.failures >= opts.failures_before_lockout {
                r.locked_until = Some(now + opts.lockout);
            }
            most = most.max(r.failures);
        }
        Ok(most)
    }

    /// The attempt of `user` from `ip` had the right password: the user's
    /// record is cleared, and the address's loses the one failure this
    /// attempt was counted as (with the lock-out that failure began, if it
    /// did); the address's other failures stay.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let [address, user] = self.keys(ip, user);
        let threshold = self.options.failures_before_lockout;
        let mut table = self.table();
        table.remove(&user);
        if let Some(r) = table.get_mut(&address) {
            r.failures = r.failures.saturating_sub(1);
            if r.failures < threshold {
                r.locked_until = None;
            }
            if r.failures == 0 {
                table.remove(&address);
            }
        }
    }
}

fn make_room(table: &mut HashMap<Key, Record>, opts: LoginLimitOptions, now: Instant) {
    if table.len() < opts.max_entries {
        return;
    }
    table.retain(|_, r| !r.forgotten(now, opts.lockout));
    while table.len() >= opts.max_entries.max(1) {
        let oldest = table.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                table.remove(&k);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_failures: u32, entries: usize) -> LoginLimiter {
        LoginLimiter::new(LoginLimitOptions {
            failures_before_lockout: max_failures,
            lockout: Duration::from_secs(100),
            max_entries: entries,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn delays_grow_with_each_failure() {
        let l = limiter(5, 10);
        let t0 = Instant::now();
        let base = Duration::from_millis(500);
        let delays: Vec<Duration> = (0..5)
            .map(|i| {
                failure_delay(
                    base,
                    l.attempt(ip("192.0.2.1"), "joe", t0 + secs(i)).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 1500, 2000, 2500].map(Duration::from_millis)
        );
        assert_eq!(failure_delay(base, 0), base);
    }

    #[test]
    fn lockout_after_n_failures_even_for_the_right_password_and_expiry() {
        let l = limiter(3, 10);
        let t0 = Instant::now();
        for i in 1..=3 {
            assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(i));
        }
        // Locked: the attempt is refused before any password check.
        assert_eq!(
            l.attempt(ip("192.0.2.1"), "joe", t0 + secs(40)),
            Err(secs(60))
        );
        // The same address with another user name: locked too.
        assert!(l.attempt(ip("192.0.2.1"), "ann", t0 + secs(40)).is_err());
        // The same user from another address: locked too.
        assert!(l.attempt(ip("192.0.2.2"), "JOE", t0 + secs(40)).is_err());
        // Another user from another address is not affected.
        assert_eq!(l.attempt(ip("192.0.2.3"), "bob", t0 + secs(40)), Ok(1));
        // The lock-out ends: a fresh count.
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0 + secs(100)), Ok(1));
    }

    #[test]
    fn failures_are_forgotten_after_the_lockout_time() {
        let l = limiter(3, 10);
        let t0 = Instant::now();
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(1));
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0 + secs(50)), Ok(2));
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0 + secs(150)), Ok(1));
    }

    #[test]
    fn a_user_is_counted_across_addresses_case_insensitively() {
        let l = limiter(3, 100);
        let t0 = Instant::now();
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(1));
        assert_eq!(l.attempt(ip("198.51.100.7"), "Joe", t0), Ok(2));
        assert_eq!(l.attempt(ip("2001:db8::1"), "JOE", t0), Ok(3));
        // joe is locked out from every address, even a new one.
        assert!(l.attempt(ip("203.0.113.9"), "joe", t0).is_err());
        // Other users from those addresses are not (each address has one failure).
        assert_eq!(l.attempt(ip("198.51.100.7"), "ann", t0), Ok(2));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = limiter(2, 100);
        let t0 = Instant::now();
        assert_eq!(l.attempt(ip("2001:db8:1:2::1"), "a", t0), Ok(1));
        assert_eq!(l.attempt(ip("2001:db8:1:2::ffff"), "b", t0), Ok(2));
        assert!(l.attempt(ip("2001:db8:1:2:abcd::9"), "c", t0).is_err());
        assert_eq!(l.attempt(ip("2001:db8:1:3::1"), "d", t0), Ok(1));
        assert_eq!(l.attempt(ip("::ffff:192.0.2.7"), "e", t0), Ok(1));
        assert_eq!(l.attempt(ip("192.0.2.7"), "f", t0), Ok(2));
        assert!(l.attempt(ip("192.0.2.7"), "g", t0).is_err());
    }

    #[test]
    fn success_clears_the_user_record_and_its_own_attempt_only() {
        let l = limiter(3, 10);
        let t0 = Instant::now();
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(1));
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(2));
        // The third attempt has the right password: it reached the lock-out
        // count, and takes back only itself.
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(3));
        l.succeeded(ip("192.0.2.1"), "Joe");
        assert_eq!(l.len(), 1, "the address keeps its two failures");
        assert_eq!(l.attempt(ip("192.0.2.1"), "joe", t0), Ok(3));
        l.succeeded(ip("192.0.2.1"), "joe");
        // A clean address is forgotten at a success.
        let l = limiter(3, 10);
        assert_eq!(l.attempt(ip("192.0.2.2"), "ann", t0), Ok(1));
        l.succeeded(ip("192.0.2.2"), "ann");
        assert!(l.is_empty());
    }

    /// The web probe's spraying: guesses at other users, each run followed by a
    /// login to the attacker's own mailbox. The address locks all the same.
    #[test]
    fn logging_in_to_ones_own_mailbox_does_not_wipe_guesses_at_others() {
        let l = limiter(5, 100);
        let t0 = Instant::now();
        let me = ip("192.0.2.103");
        let mut refused = None;
        'spray: for (n, victim) in ["dave", "eve", "nosuch1", "nosuch2"]
            .into_iter()
            .enumerate()
        {
            for _ in 0..4 {
                if l.attempt(me, victim, t0).is_err() {
                    refused = Some(n);
                    break 'spray;
                }
            }
            if l.attempt(me, "ann", t0).is_err() {
                refused = Some(n);
                break;
            }
            l.succeeded(me, "ann");
        }
        assert_eq!(refused, Some(1), "locked during the second victim");
    }

    #[test]
    fn bounded_forgets_stale_then_oldest() {
        let l = limiter(2, 4);
        let t0 = Instant::now();
        // Each attempt makes an address and a user record.
        assert_eq!(l.attempt(ip("192.0.2.1"), "a", t0), Ok(1));
        assert_eq!(l.attempt(ip("192.0.2.2"), "b", t0 + secs(10)), Ok(1));
        assert_eq!(l.len(), 4);
        assert_eq!(l.attempt(ip("192.0.2.3"), "c", t0 + secs(20)), Ok(1));
        assert_eq!(l.len(), 4);
        // .1 and a were the oldest and were forgotten; .2 still counts.
        let now = t0 + secs(30);
        assert_eq!(l.attempt(ip("192.0.2.2"), "x", now), Ok(2));
        assert_eq!(l.len(), 4);
        // Stale records go first.
        assert_eq!(l.attempt(ip("192.0.2.9"), "z", t0 + secs(500)), Ok(1));
        assert_eq!(l.len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn never_exceeds_its_bound(ops in proptest::collection::vec((0u8..50, 0u8..50, 0u64..300), 1..100)) {
            let l = limiter(3, 7);
            let t0 = Instant::now();
            for (a, u, at) in ops {
                let _ = l.attempt(IpAddr::from([192, 0, 2, a]), &format!("u{u}"), t0 + secs(at));
                proptest::prop_assert!(l.len() <= 7);
            }
        }
    }
}
