//! Where relay authorizations live: the small interface a server's POP3 and
//! SMTP sides (and the policy server) use, so that one host's table in
//! memory ([`SharedRelayTable`]) and a table several hosts share (a
//! key-value store with expiring keys, e.g. Redis, implemented where the
//! runtime lives) are used the same way.
//!
//! A shared store keeps one key per authorized address, named by
//! [`shared_key`] (the address normalised as the table normalises it, an
//! IPv6 address cut to the configured prefix), whose value is the user name
//! and which expires after [`RelayOptions::window`]: a later login from the
//! address overwrites it, which refreshes the window, as the table does.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use crate::policy::{Decision, PolicyRequest};
use crate::shared::SharedRelayTable;
use crate::table::{RelayOptions, normalize_ip};

/// Relay authorizations, in memory or shared.
pub trait RelayStore {
    /// Why the store could not answer (a shared store that is down). The
    /// caller must fail closed: no relay without a proof.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Records a successful login of `user` from `ip` at `now`.
    fn record_login(
        &self,
        ip: IpAddr,
        user: &str,
        now: Instant,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether `ip` may relay at `now`.
    fn is_authorized(
        &self,
        ip: IpAddr,
        now: Instant,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Decides a Postfix policy request ([`crate::policy`]) by its
    /// `client_address`: [`Decision::AuthorizedAddress`] (or, from a store
    /// that knows the entry, [`Decision::Authorized`]),
    /// [`Decision::NotAuthorized`] or [`Decision::NoClientAddress`]. A caller
    /// that gets an error answers [`Decision::Unavailable`]'s action.
    fn decide(
        &self,
        request: &PolicyRequest<'_>,
        now: Instant,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send
    where
        Self: Sync,
    {
        let ip = request.client_address();
        async move {
            let Some(ip) = ip else {
                return Ok(Decision::NoClientAddress);
            };
            Ok(if self.is_authorized(ip, now).await? {
                Decision::AuthorizedAddress(ip)
            } else {
                Decision::NotAuthorized(ip)
            })
        }
    }
}

impl RelayStore for SharedRelayTable {
    type Error = Infallible;

    fn record_login(
        &self,
        ip: IpAddr,
        user: &str,
        now: Instant,
    ) -> impl Future<Output = Result<(), Infallible>> + Send {
        SharedRelayTable::record_login(self, ip, user, now);
        std::future::ready(Ok(()))
    }

    fn is_authorized(
        &self,
        ip: IpAddr,
        now: Instant,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        std::future::ready(Ok(SharedRelayTable::is_authorized(self, ip, now)))
    }

    /// The table's own decision, which names the POP3 user.
    fn decide(
        &self,
        request: &PolicyRequest<'_>,
        now: Instant,
    ) -> impl Future<Output = Result<Decision, Infallible>> + Send {
        std::future::ready(Ok(SharedRelayTable::decide(self, request, now)))
    }
}

/// The key of `ip` in a shared store: `prefix` then the address as the
/// table keys it (IPv4-mapped IPv6 as IPv4, IPv6 cut to
/// [`RelayOptions::ipv6_prefix`]), so that every host finds a login any of
/// them recorded.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::{Ipv6PrefixLen, RelayOptions, store::shared_key};
///
/// let opts = RelayOptions::default();
/// assert_eq!(shared_key("mailbag:relay:", "::ffff:192.0.2.7".parse()?, &opts), "mailbag:relay:192.0.2.7");
/// let opts = opts.with_ipv6_prefix(Ipv6PrefixLen::new(64)?);
/// assert_eq!(shared_key("r:", "2001:db8::1:2:3:4".parse()?, &opts), "r:2001:db8::");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn shared_key(prefix: &str, ip: IpAddr, options: &RelayOptions) -> String {
    let ip = match normalize_ip(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(options.ipv6_prefix.mask(v6))),
        v4 => v4,
    };
    format!("{prefix}{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_table_is_a_store() {
        let t = SharedRelayTable::new(RelayOptions::default());
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(RelayStore::is_authorized(&t, ip, now).await, Ok(false));
        RelayStore::record_login(&t, ip, "joe", now).await.unwrap();
        assert_eq!(RelayStore::is_authorized(&t, ip, now).await, Ok(true));
        let later = now + RelayOptions::default().window;
        assert_eq!(RelayStore::is_authorized(&t, ip, later).await, Ok(false));
        let req = PolicyRequest::new()
            .with("client_address", "192.0.2.1")
            .unwrap();
        match RelayStore::decide(&t, &req, now).await {
            Ok(Decision::Authorized(e)) => assert_eq!(e.user(), "joe"),
            other => panic!("{other:?}"),
        }
    }

    /// A store that keeps only addresses, as a shared one does; or is down.
    struct Addresses(Option<Vec<IpAddr>>);

    #[derive(Debug, thiserror::Error)]
    #[error("down")]
    struct Down;

    impl RelayStore for Addresses {
        type Error = Down;
        async fn record_login(&self, _: IpAddr, _: &str, _: Instant) -> Result<(), Down> {
            Err(Down)
        }
        async fn is_authorized(&self, ip: IpAddr, _: Instant) -> Result<bool, Down> {
            self.0.as_ref().map(|v| v.contains(&ip)).ok_or(Down)
        }
    }

    #[tokio::test]
    async fn the_default_decision_asks_is_authorized() {
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let store = Addresses(Some(vec![ip]));
        let req = |a: &'static str| PolicyRequest::new().with("client_address", a).unwrap();
        let d = store.decide(&req("192.0.2.1"), now).await.unwrap();
        assert_eq!(d, Decision::AuthorizedAddress(ip));
        assert_eq!(d.action(), crate::policy::PolicyAction::Ok);
        let d = store.decide(&req("192.0.2.2"), now).await.unwrap();
        assert_eq!(d.action(), crate::policy::PolicyAction::Dunno);
        let d = store.decide(&PolicyRequest::new(), now).await.unwrap();
        assert_eq!(d, Decision::NoClientAddress);
        assert!(
            Addresses(None)
                .decide(&req("192.0.2.1"), now)
                .await
                .is_err()
        );
    }
}
