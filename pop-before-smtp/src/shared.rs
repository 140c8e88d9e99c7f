//! A thread-safe handle on one [`RelayTable`], for a server whose POP3 and SMTP
//! listeners run in one process.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::policy::{Decision, PolicyRequest};
use crate::table::{RecordOutcome, RelayEntry, RelayOptions, RelayTable};

/// A cloneable, thread-safe handle on one [`RelayTable`] (`Arc<RwLock<_>>`).
///
/// Clone it into the POP3 listener (which calls [`record_login`](Self::record_login)
/// after each successful authentication) and into the SMTP listener or the policy
/// server (which call [`is_authorized`](Self::is_authorized) or
/// [`decide`](Self::decide)). Lookups take a shared lock and run in parallel; logins
/// take the exclusive lock for a few hundred nanoseconds. No method blocks on I/O
/// while holding the lock, and the table's code never panics, so a poisoned lock
/// (a panic elsewhere while holding it) is recovered rather than propagated.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use std::time::Instant;
/// use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
///
/// let table = SharedRelayTable::new(RelayOptions::default());
/// let pop3_side = table.clone();
/// let smtp_side = table.clone();
/// let client: IpAddr = "203.0.113.5".parse()?;
///
/// std::thread::spawn(move || pop3_side.record_login(client, "joe", Instant::now()))
///     .join()
///     .unwrap();
/// assert!(smtp_side.is_authorized(client, Instant::now()));
/// assert_eq!(smtp_side.lookup(client, Instant::now()).unwrap().user(), "joe");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Default)]
pub struct SharedRelayTable {
    inner: Arc<RwLock<RelayTable>>,
}

impl fmt::Debug for SharedRelayTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRelayTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl From<RelayTable> for SharedRelayTable {
    fn from(table: RelayTable) -> Self {
        Self {
            inner: Arc::new(RwLock::new(table)),
        }
    }
}

impl SharedRelayTable {
    /// A handle on a new, empty table with `options`.
    pub fn new(options: RelayOptions) -> Self {
        RelayTable::new(options).into()
    }

    fn read(&self) -> RwLockReadGuard<'_, RelayTable> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, RelayTable> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`RelayTable::record_login`]: call it only after a successful login.
    pub fn record_login(&self, ip: IpAddr, user: &str, now: Instant) -> RecordOutcome {
        self.write().record_login(ip, user, now)
    }

    /// See [`RelayTable::is_authorized`].
    pub fn is_authorized(&self, ip: IpAddr, now: Instant) -> bool {
        self.read().is_authorized(ip, now)
    }

    /// See [`RelayTable::lookup`]; returns a copy of the entry.
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Option<RelayEntry> {
        self.read().lookup(ip, now).cloned()
    }

    /// See [`RelayTable::remove`].
    pub fn remove(&self, ip: IpAddr) -> Option<RelayEntry> {
        self.write().remove(ip)
    }

    /// See [`RelayTable::revoke_user`].
    pub fn revoke_user(&self, user: &str, logged_in_before: Instant) -> usize {
        self.write().revoke_user(user, logged_in_before)
    }

    /// See [`RelayTable::purge_expired`].
    pub fn purge_expired(&self, now: Instant) -> usize {
        self.write().purge_expired(now)
    }

    /// See [`RelayTable::len`].
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// See [`RelayTable::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// See [`RelayTable::decide`].
    pub fn decide(&self, request: &PolicyRequest<'_>, now: Instant) -> Decision {
        self.read().decide(request, now)
    }

    /// Runs `f` with shared access to the table (e.g. to list the active entries).
    pub fn with_table<R>(&self, f: impl FnOnce(&RelayTable) -> R) -> R {
        f(&self.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::num::NonZeroUsize;
    use std::time::Duration;

    #[test]
    fn clones_share_one_table() {
        let a = SharedRelayTable::default();
        let b = a.clone();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        a.record_login(ip, "joe", t0);
        assert!(b.is_authorized(ip, t0));
        assert_eq!(b.len(), 1);
        assert_eq!(b.remove(ip).unwrap().user(), "joe");
        assert!(a.is_empty());
        assert!(format!("{a:?}").contains("len: 0"));
    }

    #[test]
    fn concurrent_logins_and_lookups_stay_bounded() {
        let opts = RelayOptions::default().with_max_entries(NonZeroUsize::new(500).unwrap());
        let table = SharedRelayTable::new(opts);
        let t0 = Instant::now();
        let writers: Vec<_> = (0..4u32)
            .map(|w| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000u32 {
                        let ip = IpAddr::V4(Ipv4Addr::from((w << 24) | i));
                        table.record_login(ip, "flood", t0 + Duration::from_micros(u64::from(i)));
                    }
                })
            })
            .collect();
        let reader = {
            let table = table.clone();
            std::thread::spawn(move || {
                let mut hits = 0u32;
                for i in 0..20_000u32 {
                    if table.is_authorized(IpAddr::V4(Ipv4Addr::from(i)), t0) {
                        hits += 1;
                    }
                    assert!(table.len() <= 500);
                }
                hits
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        assert_eq!(table.len(), 500);
        assert_eq!(table.with_table(|t| t.active(t0).count()), 500);
    }

    #[test]
    fn poisoned_lock_is_recovered() {
        let table = SharedRelayTable::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        table.record_login(ip, "joe", t0);
        let clone = table.clone();
        let _ = std::thread::spawn(move || {
            let _guard = clone.inner.write();
            panic!("poison the lock");
        })
        .join();
        assert!(table.is_authorized(ip, t0));
        assert_eq!(table.purge_expired(t0 + Duration::from_secs(3600)), 1);
    }
}
