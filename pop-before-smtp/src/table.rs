//! The sans-IO relay authorization table.
//!
//! A [`RelayTable`] remembers which client addresses logged in successfully by POP3
//! recently, and answers whether an SMTP client from such an address may relay.
//! It never reads a clock: every call takes the current time as a
//! [`std::time::Instant`] supplied by the caller (a monotonic clock, so that wall-clock
//! jumps neither extend nor cut short an authorization). Tests inject time by adding
//! [`Duration`]s to one base `Instant`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Default authorization window: 30 minutes after the last successful login
/// (the default of DRAC, the Perl pop-before-smtp daemon and gowhoson).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Default bound on the number of entries in a table: 100,000.
///
/// With user names of typical length an entry costs about 150 to 200 bytes, so a
/// full table with default options stays around 20 MB.
pub const DEFAULT_MAX_ENTRIES: NonZeroUsize = match NonZeroUsize::new(100_000) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Default bound on the stored user name: 255 bytes (the POP3 command line limit of
/// RFC 2449 section 4 leaves no room for a longer `USER` argument).
pub const DEFAULT_MAX_USER_LEN: usize = 255;

/// The IPv6 prefix length that makes one table entry match: `1..=128`.
///
/// The default, [`Ipv6PrefixLen::FULL`] (128), matches the full address, which is the
/// safe choice: a `/64` authorizes every host of the client's LAN, like NAT does for
/// IPv4. A shorter prefix helps clients whose privacy addresses (RFC 8981) rotate
/// between the POP3 login and the SMTP submission.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::Ipv6PrefixLen;
///
/// let p = Ipv6PrefixLen::new(64)?;
/// assert_eq!(p.get(), 64);
/// assert!(Ipv6PrefixLen::new(0).is_err());
/// assert!(Ipv6PrefixLen::try_from(129).is_err());
/// assert_eq!(Ipv6PrefixLen::default(), Ipv6PrefixLen::FULL);
/// # Ok::<(), mailbag_pop_before_smtp::InvalidPrefixLen>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6PrefixLen(u8);

impl Ipv6PrefixLen {
    /// The full 128-bit address (the default).
    pub const FULL: Self = Self(128);

    /// A prefix length of `len` bits; `len` must be `1..=128` (a `/0` would authorize
    /// the whole IPv6 Internet).
    pub const fn new(len: u8) -> Result<Self, InvalidPrefixLen> {
        if len >= 1 && len <= 128 {
            Ok(Self(len))
        } else {
            Err(InvalidPrefixLen(len))
        }
    }

    /// The prefix length in bits.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The address with every bit after the prefix cleared.
    pub(crate) fn mask(self, addr: Ipv6Addr) -> u128 {
        let bits = u128::from(addr);
        // 1 <= self.0 <= 128, so the shift amount is 0..=127.
        let keep = u128::MAX << (128 - u32::from(self.0));
        bits & keep
    }
}

impl Default for Ipv6PrefixLen {
    fn default() -> Self {
        Self::FULL
    }
}

impl TryFrom<u8> for Ipv6PrefixLen {
    type Error = InvalidPrefixLen;

    fn try_from(len: u8) -> Result<Self, Self::Error> {
        Self::new(len)
    }
}

impl fmt::Display for Ipv6PrefixLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

/// An IPv6 prefix length outside `1..=128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("IPv6 prefix length must be 1 to 128, got {0}")]
pub struct InvalidPrefixLen(u8);

impl InvalidPrefixLen {
    /// The rejected value.
    pub fn value(self) -> u8 {
        self.0
    }
}

/// Options of a [`RelayTable`].
///
/// # Examples
///
/// ```
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use mailbag_pop_before_smtp::{Ipv6PrefixLen, RelayOptions};
///
/// let options = RelayOptions::default()
///     .with_window(Duration::from_secs(20 * 60))
///     .with_max_entries(NonZeroUsize::new(10_000).unwrap())
///     .with_ipv6_prefix(Ipv6PrefixLen::new(64)?);
/// assert_eq!(options.window, Duration::from_secs(1200));
/// assert_eq!(options.max_user_len, 255);
/// # Ok::<(), mailbag_pop_before_smtp::InvalidPrefixLen>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// How long after its last successful login an address stays authorized.
    /// Default [`DEFAULT_WINDOW`] (30 minutes). A zero window authorizes nobody.
    pub window: Duration,
    /// The most entries the table holds; see [`RelayTable::record_login`] for the
    /// eviction rule. Default [`DEFAULT_MAX_ENTRIES`] (100,000).
    pub max_entries: NonZeroUsize,
    /// How many leading bits of an IPv6 address an entry covers. Default
    /// [`Ipv6PrefixLen::FULL`] (the full address). IPv4 addresses, including
    /// IPv4-mapped IPv6 addresses, always match exactly.
    pub ipv6_prefix: Ipv6PrefixLen,
    /// The longest user name kept with an entry, in bytes; longer names are cut at a
    /// character boundary. Default [`DEFAULT_MAX_USER_LEN`] (255).
    pub max_user_len: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            max_entries: DEFAULT_MAX_ENTRIES,
            ipv6_prefix: Ipv6PrefixLen::FULL,
            max_user_len: DEFAULT_MAX_USER_LEN,
        }
    }
}

impl RelayOptions {
    /// Sets [`window`](Self::window).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets [`max_entries`](Self::max_entries).
    pub fn with_max_entries(mut self, max_entries: NonZeroUsize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Sets [`ipv6_prefix`](Self::ipv6_prefix).
    pub fn with_ipv6_prefix(mut self, prefix: Ipv6PrefixLen) -> Self {
        self.ipv6_prefix = prefix;
        self
    }

    /// Sets [`max_user_len`](Self::max_user_len).
    pub fn with_max_user_len(mut self, max_user_len: usize) -> Self {
        self.max_user_len = max_user_len;
        self
    }
}

/// Normalises a client address: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
/// dual-stack listener reports IPv4 clients) becomes the IPv4 address; anything else is
/// returned unchanged. IPv4-compatible addresses (`::a.b.c.d`, deprecated by RFC 4291)
/// are not mapped.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use mailbag_pop_before_smtp::normalize_ip;
///
/// let mapped: IpAddr = "::ffff:192.0.2.7".parse()?;
/// assert_eq!(normalize_ip(mapped), "192.0.2.7".parse::<IpAddr>()?);
/// let v6: IpAddr = "2001:db8::1".parse()?;
/// assert_eq!(normalize_ip(v6), v6);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(_) => ip,
    }
}

/// What an entry is keyed by: the IPv4 address, or the masked IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6(u128),
}

/// One authorized address: who logged in from it, and when.
///
/// The user name is kept for abuse tracing: log it with every relayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEntry {
    address: IpAddr,
    user: String,
    logged_in_at: Instant,
    expires_at: Option<Instant>,
}

impl RelayEntry {
    /// The (normalised) address of the most recent login. With an IPv6 prefix option
    /// shorter than 128, other addresses of the same prefix match this entry too.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The user of the most recent login (cut to [`RelayOptions::max_user_len`]).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// When the most recent login happened (as passed to [`RelayTable::record_login`]).
    pub fn logged_in_at(&self) -> Instant {
        self.logged_in_at
    }

    /// The first instant at which the entry no longer authorizes, or `None` if the
    /// window is too large for an `Instant` to represent (the entry then never expires).
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether the entry authorizes relaying at `now`.
    pub fn is_active(&self, now: Instant) -> bool {
        match self.expires_at {
            Some(t) => now < t,
            None => true,
        }
    }
}

/// What [`RelayTable::record_login`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordOutcome {
    /// A new entry was added.
    Inserted,
    /// An entry already existed for the address (or IPv6 prefix); its login time and
    /// user were updated, so its window starts again.
    Refreshed,
    /// A new entry was added and, the table being full of unexpired entries, this
    /// entry (the one with the oldest login) was evicted to make room.
    InsertedAfterEviction {
        /// The entry that was removed.
        evicted: RelayEntry,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    entry: RelayEntry,
    seq: u64,
}

/// The relay authorization table: client address → last successful login.
///
/// - **Recording**: call [`record_login`](Self::record_login) after every
///   *successful* POP3 authentication, never for a failed one: the table trusts its
///   caller and has no notion of failure. A second login from the same address
///   refreshes the entry (the window restarts from the new login).
/// - **Matching**: IPv4-mapped IPv6 addresses are normalised to IPv4 (see
///   [`normalize_ip`]); IPv4 matches exactly; IPv6 matches on the configured prefix
///   ([`RelayOptions::ipv6_prefix`], full address by default).
/// - **Expiry**: an entry authorizes while `now < logged_in_at + window`. Expired
///   entries are ignored by lookups at once and dropped lazily, with no background
///   thread: by [`record_login`](Self::record_login) (which first drops every expired
///   entry) and by [`purge_expired`](Self::purge_expired).
/// - **Bound and eviction rule**: the table never holds more than
///   [`RelayOptions::max_entries`] entries. When a new address must be added to a full
///   table, expired entries are dropped first; if none is expired, the entry with the
///   oldest login (least recently logged in, hence the first to expire) is evicted.
///   Refreshing an existing entry never evicts.
/// - **Time**: every method takes `now` as a monotonic [`Instant`] from the caller.
///   If calls arrive with slightly out-of-order instants (threads racing), a refresh
///   never moves a login time backwards.
///
/// Costs: lookups are one hash-map probe; a login is `O(log n)` plus the expired
/// entries it drops (each entry is dropped once, so that is amortised `O(log n)`).
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use std::time::{Duration, Instant};
/// use mailbag_pop_before_smtp::{RelayOptions, RelayTable};
///
/// let mut table = RelayTable::new(RelayOptions::default());
/// let t0 = Instant::now();
/// let client: IpAddr = "192.0.2.10".parse()?;
///
/// table.record_login(client, "joe", t0);
/// assert!(table.is_authorized(client, t0 + Duration::from_secs(60)));
/// assert_eq!(table.lookup(client, t0).map(|e| e.user()), Some("joe"));
/// // 30 minutes after the login, the authorization has expired.
/// assert!(!table.is_authorized(client, t0 + Duration::from_secs(30 * 60)));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone)]
pub struct RelayTable {
    options: RelayOptions,
    entries: HashMap<Key, Slot>,
    /// Entries ordered by login time (ties broken by insertion sequence).
    order: BTreeMap<(Instant, u64), Key>,
    next_seq: u64,
}

impl fmt::Debug for RelayTable {
    /// Shows the options and the size, not the (possibly 100,000) entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayTable")
            .field("options", &self.options)
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Default for RelayTable {
    fn default() -> Self {
        Self::new(RelayOptions::default())
    }
}

impl RelayTable {
    /// An empty table with `options`.
    pub fn new(options: RelayOptions) -> Self {
        Self {
            options,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The options the table was made with.
    pub fn options(&self) -> &RelayOptions {
        &self.options
    }

    /// The number of entries held, including expired entries not yet dropped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(&self, ip: IpAddr) -> Key {
        match normalize_ip(ip) {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => Key::V6(self.options.ipv6_prefix.mask(v6)),
        }
    }

    fn truncated_user(&self, user: &str) -> String {
        let max = self.options.max_user_len;
        if user.len() <= max {
            return user.to_owned();
        }
        let mut end = max;
        while !user.is_char_boundary(end) {
            end -= 1;
        }
        user.get(..end).unwrap_or_default().to_owned()
    }

    /// Records a successful login by `user` from `ip` at `now`, and returns what was
    /// done. Call it only once the user has authenticated: the table has no notion of
    /// a failed login and authorizes every address it records.
    ///
    /// Expired entries are dropped first. A new address added to a full table evicts
    /// the entry with the oldest login (see the type documentation).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use std::time::{Duration, Instant};
    /// use mailbag_pop_before_smtp::{RecordOutcome, RelayTable};
    ///
    /// let mut table = RelayTable::default();
    /// let t0 = Instant::now();
    /// let ip: IpAddr = "198.51.100.4".parse()?;
    /// assert_eq!(table.record_login(ip, "ann", t0), RecordOutcome::Inserted);
    /// let later = t0 + Duration::from_secs(25 * 60);
    /// assert_eq!(table.record_login(ip, "ann", later), RecordOutcome::Refreshed);
    /// // The window now runs from the second login.
    /// assert!(table.is_authorized(ip, later + Duration::from_secs(25 * 60)));
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn record_login(&mut self, ip: IpAddr, user: &str, now: Instant) -> RecordOutcome {
        self.purge_expired(now);
        let key = self.key(ip);
        let user = self.truncated_user(user);
        let address = normalize_ip(ip);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);

        if let Some(slot) = self.entries.get_mut(&key) {
            self.order.remove(&(slot.entry.logged_in_at, slot.seq));
            // An older login reported late (another thread's) changes nothing: the
            // entry keeps the user of its newest login with that login's time.
            let newer = now >= slot.entry.logged_in_at;
            let logged_in_at = slot.entry.logged_in_at.max(now);
            slot.entry = RelayEntry {
                address,
                user: if newer { user } else { slot.entry.user.clone() },
                logged_in_at,
                expires_at: logged_in_at.checked_add(self.options.window),
            };
            slot.seq = seq;
            self.order.insert((logged_in_at, seq), key);
            return RecordOutcome::Refreshed;
        }

        let mut evicted = None;
        if self.entries.len() >= self.options.max_entries.get() {
            if let Some((_, oldest)) = self.order.pop_first() {
                evicted = self.entries.remove(&oldest).map(|slot| slot.entry);
            }
        }
        let entry = RelayEntry {
            address,
            user,
            logged_in_at: now,
            expires_at: now.checked_add(self.options.window),
        };
        self.order.insert((now, seq), key);
        self.entries.insert(key, Slot { entry, seq });
        match evicted {
            Some(evicted) => RecordOutcome::InsertedAfterEviction { evicted },
            None => RecordOutcome::Inserted,
        }
    }

    /// The unexpired entry that authorizes `ip` at `now`, if any (for logs: it names
    /// the user who logged in).
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Option<&RelayEntry> {
        self.entries
            .get(&self.key(ip))
            .map(|slot| &slot.entry)
            .filter(|entry| entry.is_active(now))
    }

    /// Whether a client at `ip` may relay at `now`.
    pub fn is_authorized(&self, ip: IpAddr, now: Instant) -> bool {
        self.lookup(ip, now).is_some()
    }

    /// Removes the entry matching `ip` (expired or not), e.g. to revoke an account's
    /// relay right at once. Returns the removed entry.
    pub fn remove(&mut self, ip: IpAddr) -> Option<RelayEntry> {
        let slot = self.entries.remove(&self.key(ip))?;
        self.order.remove(&(slot.entry.logged_in_at, slot.seq));
        Some(slot.entry)
    }

    /// Removes every entry a login of `user` made before `logged_in_before`
    /// (the user was deleted, or their password changed at that time: the
    /// logins made with the old one authorize no more, one made since with
    /// the new one does) and returns how many were removed. `user` is
    /// compared as [`record_login`](Self::record_login) stored it (cut to
    /// [`RelayOptions::max_user_len`]).
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use std::time::{Duration, Instant};
    /// use mailbag_pop_before_smtp::RelayTable;
    ///
    /// let mut table = RelayTable::default();
    /// let t0 = Instant::now();
    /// let (a, b, c): (IpAddr, IpAddr, IpAddr) =
    ///     ("192.0.2.1".parse()?, "192.0.2.2".parse()?, "192.0.2.3".parse()?);
    /// table.record_login(a, "joe", t0);
    /// table.record_login(b, "ann", t0);
    /// let changed = t0 + Duration::from_secs(5); // joe's password changed
    /// table.record_login(c, "joe", changed + Duration::from_secs(1));
    /// assert_eq!(table.revoke_user("joe", changed), 1);
    /// let now = changed + Duration::from_secs(2);
    /// assert!(!table.is_authorized(a, now));
    /// assert!(table.is_authorized(b, now) && table.is_authorized(c, now));
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn revoke_user(&mut self, user: &str, logged_in_before: Instant) -> usize {
        let user = self.truncated_user(user);
        let before = self.entries.len();
        let order = &mut self.order;
        self.entries.retain(|_, slot| {
            let keep = slot.entry.user != user || slot.entry.logged_in_at >= logged_in_before;
            if !keep {
                order.remove(&(slot.entry.logged_in_at, slot.seq));
            }
            keep
        });
        before - self.entries.len()
    }

    /// Drops every entry that has expired at `now` and returns how many were dropped.
    /// Optional: [`record_login`](Self::record_login) does it anyway; a server may call
    /// it from a timer it already has to release memory sooner.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some((&(at, seq), &key)) = self.order.first_key_value() {
            let expired = match self.entries.get(&key) {
                Some(slot) => !slot.entry.is_active(now),
                // Cannot happen (the two maps are kept in step); drop the stray key.
                None => true,
            };
            if !expired {
                break;
            }
            self.order.remove(&(at, seq));
            self.entries.remove(&key);
            dropped += 1;
        }
        dropped
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// The entries that are active at `now`, oldest login first.
    pub fn active(&self, now: Instant) -> impl Iterator<Item = &RelayEntry> + '_ {
        self.order
            .values()
            .filter_map(|key| self.entries.get(key))
            .map(|slot| &slot.entry)
            .filter(move |entry| entry.is_active(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn mins(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    #[test]
    fn expiry_with_injected_clock() {
        let mut t = RelayTable::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(!t.is_authorized(a, t0));
        t.record_login(a, "joe", t0);
        assert!(t.is_authorized(a, t0));
        assert!(t.is_authorized(a, t0 + mins(30) - Duration::from_nanos(1)));
        assert!(!t.is_authorized(a, t0 + mins(30)));
        assert!(!t.is_authorized(a, t0 + mins(31)));
        // Expired but not yet dropped: still counted until purged.
        assert_eq!(t.len(), 1);
        assert_eq!(t.purge_expired(t0 + mins(31)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn custom_window() {
        let mut t = RelayTable::new(RelayOptions::default().with_window(mins(2)));
        let t0 = Instant::now();
        t.record_login(ip("192.0.2.1"), "joe", t0);
        assert!(t.is_authorized(ip("192.0.2.1"), t0 + Duration::from_secs(119)));
        assert!(!t.is_authorized(ip("192.0.2.1"), t0 + Duration::from_secs(120)));
    }

    #[test]
    fn zero_window_authorizes_nobody() {
        let mut t = RelayTable::new(RelayOptions::default().with_window(Duration::ZERO));
        let t0 = Instant::now();
        t.record_login(ip("192.0.2.1"), "joe", t0);
        assert!(!t.is_authorized(ip("192.0.2.1"), t0));
    }

    #[test]
    fn huge_window_never_expires_and_does_not_panic() {
        let mut t = RelayTable::new(RelayOptions::default().with_window(Duration::MAX));
        let t0 = Instant::now();
        t.record_login(ip("192.0.2.1"), "joe", t0);
        let e = t.lookup(ip("192.0.2.1"), t0 + mins(60 * 24 * 365)).unwrap();
        assert_eq!(e.expires_at(), None);
        assert_eq!(t.purge_expired(t0 + mins(1_000_000)), 0);
    }

    #[test]
    fn refresh_on_relogin() {
        let mut t = RelayTable::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(t.record_login(a, "joe", t0), RecordOutcome::Inserted);
        assert_eq!(
            t.record_login(a, "ann", t0 + mins(20)),
            RecordOutcome::Refreshed
        );
        assert_eq!(t.len(), 1);
        let e = t.lookup(a, t0 + mins(45)).unwrap();
        assert_eq!(e.user(), "ann");
        assert_eq!(e.logged_in_at(), t0 + mins(20));
        assert_eq!(e.expires_at(), Some(t0 + mins(50)));
        assert!(!t.is_authorized(a, t0 + mins(50)));
    }

    #[test]
    fn refresh_never_moves_login_backwards() {
        let mut t = RelayTable::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        t.record_login(a, "joe", t0 + mins(10));
        t.record_login(a, "joe", t0);
        assert_eq!(t.lookup(a, t0).unwrap().logged_in_at(), t0 + mins(10));
        assert!(t.is_authorized(a, t0 + mins(39)));
        // An older login of another user, reported late, does not take the entry over
        // (the library probe found ann named with joe's time).
        t.record_login(a, "ann", t0);
        assert_eq!(t.lookup(a, t0).unwrap().user(), "joe");
        t.record_login(a, "ann", t0 + mins(11));
        assert_eq!(t.lookup(a, t0).unwrap().user(), "ann");
    }

    #[test]
    fn refresh_moves_entry_to_the_back_of_the_eviction_order() {
        let opts = RelayOptions::default().with_max_entries(NonZeroUsize::new(2).unwrap());
        let mut t = RelayTable::new(opts);
        let t0 = Instant::now();
        t.record_login(ip("10.0.0.1"), "a", t0);
        t.record_login(ip("10.0.0.2"), "b", t0 + mins(1));
        t.record_login(ip("10.0.0.1"), "a", t0 + mins(2)); // refresh: no eviction
        assert_eq!(t.len(), 2);
        match t.record_login(ip("10.0.0.3"), "c", t0 + mins(3)) {
            RecordOutcome::InsertedAfterEviction { evicted } => {
                assert_eq!(evicted.address(), ip("10.0.0.2"));
                assert_eq!(evicted.user(), "b");
            }
            other => panic!("expected an eviction, got {other:?}"),
        }
        assert!(t.is_authorized(ip("10.0.0.1"), t0 + mins(3)));
        assert!(!t.is_authorized(ip("10.0.0.2"), t0 + mins(3)));
        assert!(t.is_authorized(ip("10.0.0.3"), t0 + mins(3)));
    }

    #[test]
    fn expired_entries_go_before_any_eviction() {
        let opts = RelayOptions::default().with_max_entries(NonZeroUsize::new(3).unwrap());
        let mut t = RelayTable::new(opts);
        let t0 = Instant::now();
        t.record_login(ip("10.0.0.1"), "a", t0);
        t.record_login(ip("10.0.0.2"), "b", t0 + mins(10));
        t.record_login(ip("10.0.0.3"), "c", t0 + mins(20));
        // At t0+35 the first entry has expired: it is dropped, nothing live is evicted.
        assert_eq!(
            t.record_login(ip("10.0.0.4"), "d", t0 + mins(35)),
            RecordOutcome::Inserted
        );
        assert_eq!(t.len(), 3);
        for a in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            assert!(t.is_authorized(ip(a), t0 + mins(35)), "{a}");
        }
    }

    #[test]
    fn flood_stays_bounded() {
        let bound = 1000;
        let opts = RelayOptions::default().with_max_entries(NonZeroUsize::new(bound).unwrap());
        let mut t = RelayTable::new(opts);
        let t0 = Instant::now();
        let mut evictions = 0;
        for i in 0..50_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            if let RecordOutcome::InsertedAfterEviction { .. } = t.record_login(a, "flood", now) {
                evictions += 1;
            }
            assert!(t.len() <= bound);
            assert_eq!(t.order.len(), t.entries.len());
        }
        assert_eq!(t.len(), bound);
        assert_eq!(evictions, 50_000 - bound);
        // The survivors are the most recent logins.
        let now = t0 + Duration::from_millis(50_000);
        assert!(t.is_authorized(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 49_999)), now));
        assert!(!t.is_authorized(IpAddr::V4(Ipv4Addr::from(0x0a00_0000)), now));
    }

    #[test]
    fn flood_of_ipv6_and_long_user_names_stays_bounded() {
        let bound = 64;
        let opts = RelayOptions::default()
            .with_max_entries(NonZeroUsize::new(bound).unwrap())
            .with_max_user_len(16);
        let mut t = RelayTable::new(opts);
        let t0 = Instant::now();
        let long = "x".repeat(10_000);
        for i in 0..10_000u128 {
            let a = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i));
            t.record_login(a, &long, t0);
            assert!(t.len() <= bound);
        }
        assert!(t.active(t0).all(|e| e.user().len() == 16));
    }

    #[test]
    fn user_name_cut_at_char_boundary() {
        let t0 = Instant::now();
        let mut t = RelayTable::new(RelayOptions::default().with_max_user_len(4));
        t.record_login(ip("192.0.2.1"), "abcé", t0); // 'é' is 2 bytes: 5 bytes total
        assert_eq!(t.lookup(ip("192.0.2.1"), t0).unwrap().user(), "abc");
        let mut t = RelayTable::new(RelayOptions::default().with_max_user_len(0));
        t.record_login(ip("192.0.2.1"), "joe", t0);
        assert_eq!(t.lookup(ip("192.0.2.1"), t0).unwrap().user(), "");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_normalised() {
        let mut t = RelayTable::default();
        let t0 = Instant::now();
        t.record_login(ip("::ffff:192.0.2.9"), "joe", t0);
        assert!(t.is_authorized(ip("192.0.2.9"), t0));
        assert!(t.is_authorized(ip("::ffff:192.0.2.9"), t0));
        assert_eq!(
            t.lookup(ip("192.0.2.9"), t0).unwrap().address(),
            ip("192.0.2.9")
        );
        // And the other way round.
        t.record_login(ip("198.51.100.1"), "ann", t0);
        assert!(t.is_authorized(ip("::ffff:198.51.100.1"), t0));
        // IPv4-compatible (deprecated) addresses are not IPv4.
        assert!(!t.is_authorized(ip("::192.0.2.9"), t0));
        // A mapped address is never subject to the IPv6 prefix.
        let opts = RelayOptions::default().with_ipv6_prefix(Ipv6PrefixLen::new(64).unwrap());
        let mut t = RelayTable::new(opts);
        t.record_login(ip("::ffff:192.0.2.9"), "joe", t0);
        assert!(!t.is_authorized(ip("::ffff:192.0.2.10"), t0));
    }

    #[test]
    fn ipv6_full_address_by_default() {
        let mut t = RelayTable::default();
        let t0 = Instant::now();
        t.record_login(ip("2001:db8:1:2::10"), "joe", t0);
        assert!(t.is_authorized(ip("2001:db8:1:2::10"), t0));
        assert!(t.is_authorized(ip("2001:db8:1:2:0:0:0:10"), t0));
        assert!(!t.is_authorized(ip("2001:db8:1:2::11"), t0));
    }

    #[test]
    fn ipv6_prefix_option() {
        let opts = RelayOptions::default().with_ipv6_prefix(Ipv6PrefixLen::new(64).unwrap());
        let mut t = RelayTable::new(opts);
        let t0 = Instant::now();
        t.record_login(ip("2001:db8:1:2::10"), "joe", t0);
        assert!(t.is_authorized(ip("2001:db8:1:2:ffff:1:2:3"), t0));
        assert!(!t.is_authorized(ip("2001:db8:1:3::10"), t0));
        // Another address in the same /64 refreshes the same entry.
        assert_eq!(
            t.record_login(ip("2001:db8:1:2::99"), "ann", t0 + mins(1)),
            RecordOutcome::Refreshed
        );
        assert_eq!(t.len(), 1);
        let e = t.lookup(ip("2001:db8:1:2::1"), t0 + mins(1)).unwrap();
        assert_eq!((e.user(), e.address()), ("ann", ip("2001:db8:1:2::99")));
        // Removal by any address of the prefix.
        assert!(t.remove(ip("2001:db8:1:2::5")).is_some());
        assert!(t.is_empty());
    }

    #[test]
    fn prefix_masks() {
        let a: Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(Ipv6PrefixLen::FULL.mask(a), u128::MAX);
        assert_eq!(Ipv6PrefixLen::new(1).unwrap().mask(a), 1u128 << 127);
        assert_eq!(
            Ipv6PrefixLen::new(64).unwrap().mask(a),
            u128::from(u64::MAX) << 64
        );
        assert_eq!(Ipv6PrefixLen::new(0).unwrap_err().value(), 0);
        assert!(Ipv6PrefixLen::new(129).is_err());
        assert_eq!(Ipv6PrefixLen::new(48).unwrap().to_string(), "/48");
    }

    #[test]
    fn remove_and_clear() {
        let mut t = RelayTable::default();
        let t0 = Instant::now();
        t.record_login(ip("192.0.2.1"), "joe", t0);
        t.record_login(ip("192.0.2.2"), "ann", t0);
        assert_eq!(t.remove(ip("192.0.2.1")).unwrap().user(), "joe");
        assert!(t.remove(ip("192.0.2.1")).is_none());
        assert!(!t.is_authorized(ip("192.0.2.1"), t0));
        assert_eq!(t.active(t0).count(), 1);
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.active(t0).count(), 0);
    }

    /// A naive model of the documented rules: a list of (key, user, login time).
    #[derive(Default)]
    struct Model {
        entries: Vec<(IpAddr, String, u64)>,
    }

    const WINDOW: u64 = 100;
    const BOUND: usize = 5;

    impl Model {
        fn active(&self, ip: IpAddr, now: u64) -> Option<&(IpAddr, String, u64)> {
            self.entries
                .iter()
                .find(|e| e.0 == ip && now < e.2 + WINDOW)
        }
        fn record(&mut self, ip: IpAddr, user: &str, now: u64) {
            self.entries.retain(|e| now < e.2 + WINDOW);
            if let Some(e) = self.entries.iter_mut().find(|e| e.0 == ip) {
                e.1 = user.to_owned();
                e.2 = e.2.max(now);
                return;
            }
            if self.entries.len() >= BOUND {
                // Evict the oldest login (the test uses distinct login times).
                let oldest = (0..self.entries.len())
                    .min_by_key(|&i| self.entries[i].2)
                    .unwrap();
                self.entries.remove(oldest);
            }
            self.entries.push((ip, user.to_owned(), now));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Login(u8, u8),
        Check(u8),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 0u8..3).prop_map(|(a, u)| Op::Login(a, u)),
            (0u8..8).prop_map(Op::Check),
            (0u64..60).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// The table behaves like the naive model of its documented rules (with
        /// distinct login times, so that the eviction order is unambiguous).
        #[test]
        fn table_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let opts = RelayOptions::default()
                .with_window(Duration::from_secs(WINDOW))
                .with_max_entries(NonZeroUsize::new(BOUND).unwrap());
            let mut table = RelayTable::new(opts);
            let mut model = Model::default();
            let mut now = 0u64;
            let users = ["joe", "ann", "bob"];
            for op in ops {
                match op {
                    Op::Login(a, u) => {
                        now += 1; // distinct login times
                        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, a));
                        let user = users[usize::from(u)];
                        table.record_login(ip, user, t0 + Duration::from_secs(now));
                        model.record(ip, user, now);
                        prop_assert!(table.len() <= BOUND);
                    }
                    Op::Check(a) => {
                        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, a));
                        let got = table.lookup(ip, t0 + Duration::from_secs(now))
                            .map(|e| e.user().to_owned());
                        let want = model.active(ip, now).map(|e| e.1.clone());
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(d) => now += d,
                }
            }
        }

        /// Mapped and plain IPv4 addresses are the same key.
        #[test]
        fn mapped_equals_plain(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let t0 = Instant::now();
            let mut t = RelayTable::default();
            t.record_login(IpAddr::V6(v4.to_ipv6_mapped()), "joe", t0);
            prop_assert!(t.is_authorized(IpAddr::V4(v4), t0));
            prop_assert_eq!(t.remove(IpAddr::V4(v4)).map(|e| e.address()), Some(IpAddr::V4(v4)));
        }

        /// With a prefix of n bits, an address matches exactly when its first n bits
        /// equal those of the recorded address.
        #[test]
        fn prefix_matching(a in any::<u128>(), b in any::<u128>(), len in 1u8..=128) {
            let (a6, b6) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
            prop_assume!(a6.to_ipv4_mapped().is_none() && b6.to_ipv4_mapped().is_none());
            let opts = RelayOptions::default().with_ipv6_prefix(Ipv6PrefixLen::new(len).unwrap());
            let mut t = RelayTable::new(opts);
            let t0 = Instant::now();
            t.record_login(IpAddr::V6(a6), "joe", t0);
            let same = len == 128 && a == b
                || len < 128 && (a >> (128 - u32::from(len))) == (b >> (128 - u32::from(len)));
            prop_assert_eq!(t.is_authorized(IpAddr::V6(b6), t0), same);
        }
    }
}
