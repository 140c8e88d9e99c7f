//! Postfix SMTP access policy delegation (`check_policy_service`), sans-IO.
//!
//! Postfix sends a request of `name=value` lines, each ended by LF, and an empty
//! line; the policy server answers `action=<access(5) action>` and an empty line.
//! The connection is persistent: several requests follow each other. When a request
//! is malformed the server must send nothing, log, and close the connection.
//!
//! This module has both directions, so that every type round-trips:
//! - requests: [`parse_request`] (zero-copy), [`PolicyDecoder`] (streaming, owned
//!   output), [`PolicyRequest::encode`];
//! - responses: [`PolicyAction::encode_response`], [`parse_response`];
//! - the decision: [`RelayTable::decide`] answers [`PolicyAction::Ok`] when the
//!   request's `client_address` is authorized in the table, [`PolicyAction::Dunno`]
//!   otherwise.
//!
//! Place the check **before** `reject_unauth_destination`, for example
//! `smtpd_relay_restrictions = permit_mynetworks, check_policy_service
//! inet:127.0.0.1:10040, reject_unauth_destination`. This is safe only because the
//! server answers `OK` solely for authorized clients and `DUNNO` for everyone else.
//!
//! # Examples
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::Instant;
//! use mailbag_pop_before_smtp::RelayTable;
//! use mailbag_pop_before_smtp::policy::{PolicyDecoder, PolicyLimits};
//!
//! let mut table = RelayTable::default();
//! let now = Instant::now();
//! table.record_login("192.0.2.1".parse::<IpAddr>()?, "joe", now);
//!
//! let mut decoder = PolicyDecoder::new(PolicyLimits::default());
//! decoder.feed(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\n");
//! decoder.feed(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.2\n\n");
//! let mut replies = Vec::new();
//! while let Some(request) = decoder.decode()? {
//!     table.decide(&request, now).action().encode_response(&mut replies);
//! }
//! assert_eq!(replies, b"action=OK\n\naction=DUNNO\n\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod action;
mod codec;
mod request;

use std::net::IpAddr;
use std::time::Instant;

pub use action::{ActionError, ActionText, OtherAction, PolicyAction, ReplyCode};
pub use codec::{
    DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_REQUEST_SIZE, PolicyDecoder,
    PolicyError, PolicyLimits, parse_request, parse_response,
};
pub use request::{
    Attribute, AttributeError, IntoValue, PolicyRequest, ProtocolState, SMTPD_ACCESS_POLICY,
};

use crate::table::{RelayEntry, RelayTable};

/// The outcome of [`RelayTable::decide`], with what a log line needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The client address is authorized by this entry (it names the POP3 user).
    Authorized(RelayEntry),
    /// The client address is authorized by a store that keeps only the
    /// proof, not the entry (a table shared by several hosts,
    /// the store module's `RelayStore::decide`).
    AuthorizedAddress(IpAddr),
    /// The client address is not (or no longer) authorized.
    NotAuthorized(IpAddr),
    /// The request has no usable `client_address`.
    NoClientAddress,
    /// The table could not be read (a shared store that is down): never
    /// `OK`, and never a permanent refusal either.
    Unavailable,
}

/// The text of [`Decision::Unavailable`]'s action.
pub const UNAVAILABLE_TEXT: &str = "4.3.0 Relay authorization temporarily unavailable";

impl Decision {
    /// The action to send: [`PolicyAction::Ok`] when authorized;
    /// [`PolicyAction::DeferIfReject`] with [`UNAVAILABLE_TEXT`] when the
    /// table could not be read (Postfix then answers 450 where it would have
    /// refused, a relay attempt, and accepts what it accepts anyway, mail for
    /// its own domains); else [`PolicyAction::Dunno`].
    ///
    /// ```
    /// use mailbag_pop_before_smtp::policy::{Decision, PolicyAction};
    ///
    /// let a = Decision::Unavailable.action();
    /// assert_eq!(a.to_string(), "DEFER_IF_REJECT 4.3.0 Relay authorization temporarily unavailable");
    /// assert_eq!(Decision::AuthorizedAddress("192.0.2.1".parse()?).action(), PolicyAction::Ok);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn action(&self) -> PolicyAction<'static> {
        match self {
            Self::Authorized(_) | Self::AuthorizedAddress(_) => PolicyAction::Ok,
            Self::NotAuthorized(_) | Self::NoClientAddress => PolicyAction::Dunno,
            Self::Unavailable => {
                PolicyAction::DeferIfReject(ActionText::new(UNAVAILABLE_TEXT).ok())
            }
        }
    }

    /// Whether the client is authorized.
    pub fn is_authorized(&self) -> bool {
        matches!(self, Self::Authorized(_) | Self::AuthorizedAddress(_))
    }
}

impl RelayTable {
    /// Decides a policy request: [`Decision::Authorized`] when its `client_address`
    /// is authorized at `now`, otherwise [`Decision::NotAuthorized`] or
    /// [`Decision::NoClientAddress`]. The protocol state and the other attributes do
    /// not matter: an authorized client is authorized at every stage.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use mailbag_pop_before_smtp::RelayTable;
    /// use mailbag_pop_before_smtp::policy::{PolicyAction, PolicyRequest};
    ///
    /// let now = Instant::now();
    /// let mut table = RelayTable::default();
    /// table.record_login("::ffff:192.0.2.1".parse()?, "joe", now);
    /// let request = PolicyRequest::new().with("client_address", "192.0.2.1")?;
    /// let decision = table.decide(&request, now);
    /// assert_eq!(decision.action(), PolicyAction::Ok);
    /// let unknown = PolicyRequest::new().with("client_address", "192.0.2.2")?;
    /// assert_eq!(table.decide(&unknown, now).action(), PolicyAction::Dunno);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide(&self, request: &PolicyRequest<'_>, now: Instant) -> Decision {
        let Some(ip) = request.client_address() else {
            return Decision::NoClientAddress;
        };
        match self.lookup(ip, now) {
            Some(entry) => Decision::Authorized(entry.clone()),
            None => Decision::NotAuthorized(ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn decision_follows_the_table() {
        let t0 = Instant::now();
        let mut table = RelayTable::default();
        table.record_login("192.0.2.1".parse().unwrap(), "joe", t0);
        table.record_login("2001:db8::1".parse().unwrap(), "ann", t0);
        let req = |addr: &str| {
            PolicyRequest::new()
                .with("protocol_state", "RCPT")
                .unwrap()
                .with("client_address", addr.to_owned())
                .unwrap()
        };
        match table.decide(&req("192.0.2.1"), t0) {
            Decision::Authorized(e) => assert_eq!(e.user(), "joe"),
            other => panic!("{other:?}"),
        }
        assert!(table.decide(&req("2001:db8::1"), t0).is_authorized());
        assert_eq!(
            table.decide(&req("192.0.2.3"), t0),
            Decision::NotAuthorized("192.0.2.3".parse().unwrap())
        );
        assert_eq!(table.decide(&req("unknown"), t0), Decision::NoClientAddress);
        assert_eq!(
            table.decide(&PolicyRequest::new(), t0),
            Decision::NoClientAddress
        );
        let later = t0 + Duration::from_secs(30 * 60);
        assert_eq!(
            table.decide(&req("192.0.2.1"), later).action(),
            PolicyAction::Dunno
        );
    }

    #[test]
    fn byte_for_byte_exchange() {
        let t0 = Instant::now();
        let mut table = RelayTable::default();
        table.record_login("127.0.0.2".parse().unwrap(), "joe", t0);
        let mut decoder = PolicyDecoder::new(PolicyLimits::default());
        decoder.feed(
            b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
client_address=127.0.0.2\nclient_name=localhost\nsender=a@b.example\n\
recipient=someone@elsewhere.example\n\n\
request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
client_address=127.0.0.3\nclient_name=localhost\n\n",
        );
        let mut out = Vec::new();
        while let Some(r) = decoder.decode().unwrap() {
            table.decide(&r, t0).action().encode_response(&mut out);
        }
        assert_eq!(out, b"action=OK\n\naction=DUNNO\n\n");
        let (first, used) = parse_response(&out, &PolicyLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(first, PolicyAction::Ok);
        let (second, _) = parse_response(&out[used..], &PolicyLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(second, PolicyAction::Dunno);
    }
}
