//! Sans-IO POP3: types, codec, server session and client session.
//!
//! This crate speaks POP3 (RFC 1939) with its extensions CAPA, RESP-CODES,
//! PIPELINING, EXPIRE, LOGIN-DELAY, IMPLEMENTATION (RFC 2449), STLS
//! (RFC 2595), SASL AUTH (RFC 5034), AUTH-RESP-CODE (RFC 3206) and UTF8/LANG
//! (RFC 6856) without doing any I/O: no sockets, no clocks, no threads. You
//! give it bytes and get events and bytes back, so it runs under tokio,
//! a blocking loop, or a fuzzer alike.
//!
//! # Layers
//!
//! Each module uses only the layers above it (no import loops):
//!
//! 1. [`types`]: commands, responses, response codes, capabilities,
//!    message numbers, unique ids, [`types::Secret`]. Validated newtypes: a
//!    value that could break the protocol (a CR in a user name, a
//!    71-character UID) cannot be built. Uses nothing else of the crate.
//! 2. [`codec`], whose four parts do not use one another:
//!    * `codec::parse` (nom parsers) and `codec::encode` ([`codec::Encode`]),
//!      for both directions (`parse(encode(x)) == x`); they use `types`;
//!    * `codec::framer` (the memchr line framer with limits) and
//!      `codec::body` (the streaming multi-line body encoder/decoder with its
//!      SIMD scan); they use no other module. The encoder can also hand out
//!      the body as borrowed segments
//!      ([`codec::BodyEncoder::encode_segments`]) for a zero-copy vectored
//!      write.
//!
//!    All of them are re-exported from [`codec`].
//! 3. [`session`]: the server state machine, on `types` and `codec`. It
//!    enforces RFC 1939 (fixed message numbers, DELE hidden until RSET,
//!    commit only at QUIT, commands refused in the wrong state, STLS
//!    discarding buffered plaintext) and asks the application, through
//!    [`session::Event`]s, to check logins, open the maildrop, stream
//!    messages and commit deletions.
//! 4. [`client`]: the client state machine, the mirror of [`session`], on
//!    `types` and `codec` only. It queues commands (sent in order,
//!    pipelined when the server advertises PIPELINING), matches replies in
//!    order, runs the greeting, CAPA, STLS, USER/PASS, APOP and SASL
//!    PLAIN/LOGIN, streams RETR/TOP bodies through [`codec::BodyDecoder`]
//!    as events, and bounds every buffered reply
//!    ([`client::ClientOptions`]).
//! 5. `tokio_codec` (feature `tokio-codec`):
//!    `tokio_util::codec::{Decoder, Encoder}` adapters, on `types` and
//!    `codec`.
//!
//! # Driving a server session
//!
//! ```
//! use mailbag_pop3_proto::session::{
//!     AuthFailure, Event, MessageInfo, ServerConfig, ServerSession,
//! };
//! use mailbag_pop3_proto::codec::crlf_len;
//! use mailbag_pop3_proto::types::Uid;
//!
//! // The application's maildrop: (uid, raw message with any line ends).
//! let maildrop: Vec<(&str, &[u8])> = vec![
//!     ("uid-1", b"Subject: one\n\nHello\n.signature\n"),
//!     ("uid-2", b"Subject: two\r\n\r\nBye\r\n"),
//! ];
//!
//! let mut session = ServerSession::new(ServerConfig::default()).unwrap();
//! let mut wire = session.take_output(); // the greeting
//!
//! // What the client sent, possibly pipelined and in any chunking.
//! session.feed(b"USER joe\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nDELE 2\r\nQUIT\r\n");
//!
//! while let Some(event) = session.next_event() {
//!     match event {
//!         Event::Login(req) => {
//!             if req.user.as_str() == "joe" && req.check_secret("secret") {
//!                 session.accept_login().unwrap();
//!             } else {
//!                 session.reject_login(AuthFailure::Credentials).unwrap();
//!             }
//!         }
//!         Event::OpenMaildrop { user: _ } => {
//!             // Lock the maildrop here; the listing fixes message numbers.
//!             let listing = maildrop
//!                 .iter()
//!                 .map(|(uid, msg)| {
//!                     MessageInfo::new(crlf_len(msg), Uid::try_from(uid.to_string()).unwrap())
//!                 })
//!                 .collect();
//!             session.maildrop_opened(listing).unwrap();
//!         }
//!         Event::Retrieve(req) => {
//!             // Stream the message in chunks of any size; the session
//!             // dot-stuffs, converts line ends and handles TOP.
//!             for chunk in maildrop[req.index].1.chunks(7) {
//!                 session.message_chunk(chunk).unwrap();
//!             }
//!             session.message_end().unwrap();
//!         }
//!         Event::Commit { deleted } => {
//!             assert_eq!(deleted.len(), 1); // remove them, release the lock
//!             session.commit_done(Ok(())).unwrap();
//!         }
//!         other => unreachable!("{other:?}"),
//!     }
//!     wire.extend_from_slice(&session.take_output()); // write to the socket
//! }
//! wire.extend_from_slice(&session.take_output());
//! assert!(session.is_closed());
//! assert_eq!(
//!     String::from_utf8(wire).unwrap(),
//!     "+OK Mailbag POP3 ready.\r\n\
//!      +OK\r\n\
//!      +OK Logged in.\r\n\
//!      +OK 2 56\r\n\
//!      +OK 35 octets\r\n\
//!      Subject: one\r\n\r\nHello\r\n..signature\r\n.\r\n\
//!      +OK Marked to be deleted.\r\n\
//!      +OK Logging out, messages deleted.\r\n"
//! );
//! ```
//!
//! # Limits
//!
//! All limits are fields of [`session::ServerConfig`] with documented
//! defaults: command line 255 octets, SASL line 4096 octets, idle timeout
//! (RFC 1939's autologout timer) 10 minutes, 10 invalid commands in a row,
//! 3 failed logins, 64 KiB of pending output and input.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![no_std]
// The core needs only `alloc`; `std` (a default feature) adds the clock-based
// helpers and the runtime glue. Tests use std freely.
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;
#[cfg(test)]
mod test_prelude;

pub mod client;
pub mod codec;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod driver;
pub mod http_request;
pub mod session;
#[cfg(feature = "tokio-codec")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-codec")))]
pub mod tokio_codec;
pub mod types;

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
