//! Sans-IO SMTP: codec, addresses, DATA/BDAT receivers, a server and a client session.
//!
//! `mailbag-smtp-proto` implements RFC 5321 SMTP with the extensions a mail server meets in
//! practice (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING/BDAT,
//! BINARYMIME, DSN, STARTTLS, AUTH, REQUIRETLS, LMTP) without doing any I/O: bytes go in,
//! events and bytes come out, and time is passed in by the caller.
//!
//! # Layers
//!
//! - [`types`]: commands, parameters, replies, EHLO capabilities, [`types::Secret`]
//!   (redacted in `Debug`). Borrowed from the input (`Cow`), with `into_owned()`.
//! - [`address`]: a grammar-driven parser of reverse- and forward-paths that keeps the raw
//!   octets and exposes what a relay decision needs (final domain, routing operators,
//!   postmaster).
//! - [`codec`]: the line framer (memchr, per-mode limits), the command parser and encoder,
//!   the reply parser and encoder. Every value round-trips.
//! - [`data`] and [`bdat`]: streaming receivers for message bodies (dot-unstuffing, strict
//!   `CRLF.CRLF`, bare-LF policy, size limit, discard variants).
//! - [`session`]: the server state machine ([`session::ServerSession`]).
//! - [`client`]: the client state machine ([`client::ClientSession`]): EHLO/HELO,
//!   STARTTLS, PIPELINING, extension-aware MAIL/RCPT parameters, streamed DATA, one outcome
//!   per recipient, the RFC 5321 timeouts as values.
//! - [`dsn`]: RFC 3464 delivery status notifications: a builder that streams the
//!   returned original, and a parser of the per-recipient fields.
//! - [`date`]: the RFC 5322 date-time ([`date::DateTime`]) used by DSNs and trace fields,
//!   with the civil date parts for display.
//! - [`trace`]: the `Received:` and `Return-Path:` trace fields a delivering server adds
//!   (RFC 5321 section 4.4), safe against header injection from the client's values, and
//!   the count of `Received:` fields for loop detection (section 6.3).
//! - [`line_endings`]: bare CR and bare LF in message content turned into CRLF, streaming,
//!   for DATA and BDAT alike (what is stored or relayed then holds only CRLF).
//! - `tokio_codec` (feature `tokio-codec`): `tokio_util::codec` adapters.
//!
//! # Example: driving the server session
//!
//! ```
//! use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
//! use mailbag_smtp_proto::types::{EnhancedStatusCode, Reply, ReplyCode};
//!
//! let mut config = ServerConfig::default();
//! config.hostname = "mx.example.org".into();
//! let mut session = ServerSession::new(config).expect("valid config");
//! let mut wire = session.take_output(); // the 220 greeting
//!
//! // A pipelined client: replies are batched until the input runs dry.
//! session.feed(b"EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n\
//!                RCPT TO:<user@mx.example.org>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\n");
//! let mut body = Vec::new();
//! let mut input: &[&[u8]] = &[b"Hi\r\n.\r\n", b"QUIT\r\n"];
//! loop {
//!     match session.next_event() {
//!         Some(Event::RcptTo { to, .. }) => {
//!             // The relay decision: only the local domain without routing tricks.
//!             let local = to.final_domain().as_deref() == Some("mx.example.org")
//!                 && !to.has_routing_operator();
//!             if local {
//!                 session.accept();
//!             } else {
//!                 let esc = EnhancedStatusCode::new(5, 7, 1).unwrap();
//!                 session.reject(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, Some(esc), "Relay access denied").unwrap());
//!             }
//!         }
//!         Some(Event::BodyChunk(chunk)) => body.extend_from_slice(chunk),
//!         Some(Event::MessageComplete { .. }) => session.accept(), // after durable storage
//!         Some(Event::Quit) => {}
//!         Some(_) => session.accept(),
//!         None => {
//!             wire.extend_from_slice(&session.take_output()); // write to the socket
//!             let Some((next, rest)) = input.split_first() else { break };
//!             session.feed(next);
//!             input = rest;
//!         }
//!     }
//! }
//! let wire = String::from_utf8(wire).unwrap();
//! assert!(wire.contains("250 2.1.5 Recipient OK\r\n550 5.7.1 Relay access denied\r\n354 "));
//! assert!(wire.ends_with("250 2.0.0 Message accepted\r\n221 2.0.0 Bye\r\n"));
//! assert_eq!(body, b"Hi\r\n");
//! assert!(session.is_closed());
//! ```
//!
//! # Limits
//!
//! Every limit is a field of an options struct with a documented default: command line 512
//! octets and SASL line 12288 ([`session::ServerConfig`], [`codec::LineFramer`]), message
//! size 10 240 000 octets, 100 recipients, 5 minute idle timeout, 20 bad commands,
//! reply line 512 octets and 256 lines ([`codec::ReplyOptions`]); address limits are the
//! RFC's (local part 64, domain 255, path 256 octets).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![no_std]
// The core needs only `alloc`; `std` (a default feature) adds the clock-based
// helpers and the runtime glue. Tests use std freely.
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;
#[cfg(test)]
mod test_prelude;

mod a_label;
pub mod address;
pub mod bdat;
pub mod client;
pub mod codec;
pub mod data;
pub mod date;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod driver;
pub mod dsn;
pub mod http_request;
pub mod line_endings;
pub mod session;
pub mod seven_bit;
pub mod submission;
#[cfg(feature = "tokio-codec")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-codec")))]
pub mod tokio_codec;
pub mod trace;
pub mod types;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
