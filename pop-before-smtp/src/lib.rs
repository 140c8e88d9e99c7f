//! POP-before-SMTP relay authorization, sans-IO, with a Postfix policy delegation codec.
//!
//! POP-before-SMTP ("SMTP after POP") lets a client relay mail through the SMTP server
//! for a while after it has logged in successfully by POP3 from the same IP address.
//! This crate holds the parts that do not depend on any I/O:
//!
//! - [`RelayTable`]: address → last successful login (with the user name, for abuse
//!   tracing). Authorized for a window (default 30 minutes) after the last login,
//!   refreshed on every login; IPv4-mapped IPv6 addresses normalised to IPv4; IPv6
//!   matched on the full address or an optional prefix; bounded size with a
//!   documented eviction rule; expired entries dropped lazily, without a thread.
//!   Time is passed in by the caller as a monotonic [`std::time::Instant`].
//! - [`SharedRelayTable`]: a cloneable, thread-safe handle for a server whose POP3
//!   and SMTP listeners share one table in one process.
//! - [`policy`]: the Postfix SMTP access policy delegation protocol
//!   (`check_policy_service`), both directions, and the decision (`OK` for an
//!   authorized `client_address`, `DUNNO` otherwise), so that a real Postfix can use
//!   the table.
//! - [`store::RelayStore`]: the interface the table is used through, so that a
//!   store several hosts share (Redis, in the server) stands in for the in-memory
//!   table; [`store::shared_key`] names an address in such a store.
//! - [`proxy_header`]: the PROXY protocol header (versions 1 and 2) a TCP load
//!   balancer puts before the client's bytes: behind a balancer its source address,
//!   not the balancer's, is the address to record and check.
//! - `server` (cargo feature `policy-server`): a small tokio server for that protocol;
//!   `examples/policy_server.rs` runs it.
//!
//! The caller records **successful** logins only: the table has no notion of a failed
//! login, and every address recorded is authorized.
//!
//! # Example
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
//! use mailbag_pop_before_smtp::policy::{parse_request, PolicyAction, PolicyLimits};
//!
//! // One table, shared by the POP3 side and the SMTP (or policy) side.
//! let table = SharedRelayTable::new(RelayOptions::default().with_window(Duration::from_secs(20 * 60)));
//! let start = Instant::now();
//!
//! // POP3: the user "joe" authenticated from 192.0.2.10.
//! let client: IpAddr = "192.0.2.10".parse()?;
//! table.record_login(client, "joe", start);
//!
//! // SMTP, in process: may this client relay?
//! assert!(table.is_authorized(client, start + Duration::from_secs(60)));
//! assert!(!table.is_authorized("192.0.2.11".parse()?, start));
//!
//! // Postfix, through check_policy_service: one request, one reply.
//! let wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\n\n";
//! let (request, _) = parse_request(wire, &PolicyLimits::default())?.expect("complete");
//! let decision = table.decide(&request, start + Duration::from_secs(60));
//! assert_eq!(decision.action(), PolicyAction::Ok);
//! assert_eq!(decision.action().to_response(), b"action=OK\n\n");
//!
//! // 20 minutes after the login, the window has closed.
//! let late = table.decide(&request, start + Duration::from_secs(20 * 60));
//! assert_eq!(late.action().to_response(), b"action=DUNNO\n\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits
//!
//! Every limit is a field of an options struct with a documented default:
//! [`RelayOptions`] (window 30 min, 100,000 entries, IPv6 `/128`, user names 255 bytes),
//! [`policy::PolicyLimits`] (lines 4096 bytes, 128 attributes, requests 32 KiB) and,
//! with the `policy-server` feature, `server::PolicyServerOptions` (idle timeout 330 s,
//! write timeout 30 s, 256 connections).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod policy;
pub mod proxy_header;
#[cfg(feature = "policy-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy-server")))]
pub mod server;
mod shared;
pub mod store;
mod table;

pub use shared::SharedRelayTable;
pub use table::{
    DEFAULT_MAX_ENTRIES, DEFAULT_MAX_USER_LEN, DEFAULT_WINDOW, InvalidPrefixLen, Ipv6PrefixLen,
    RecordOutcome, RelayEntry, RelayOptions, RelayTable, normalize_ip,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
