//! Sans-IO SMTP client session (the sending side of RFC 5321).
//!
//! [`ClientSession`] is a deterministic state machine, the mirror image of
//! [`ServerSession`](crate::session::ServerSession). The caller owns the socket and the clock:
//! it feeds the server's bytes with [`ClientSession::feed`], pulls [`ClientEvent`]s with
//! [`ClientSession::next_event`] until it returns `None`, answers the events that ask for
//! something (start a transaction, stream the body, upgrade to TLS, quit), and writes
//! [`ClientSession::output`] to the socket.
//!
//! The session drives: greeting → `EHLO` (`HELO` if the server refuses EHLO with a 5xx) →
//! capabilities → `STARTTLS` when offered and wanted ([`TlsPolicy`]) → `EHLO` again →
//! [`ClientEvent::Ready`]. For each [`Transaction`]: `MAIL FROM` with `SIZE`, `BODY=8BITMIME`,
//! `SMTPUTF8`, `RET` and `ENVID` only when the server offers the extension, one `RCPT TO`
//! per recipient with `NOTIFY`/`ORCPT` only when `DSN` is offered, then `DATA` unless no
//! recipient was accepted. With `PIPELINING` offered, `MAIL`, every `RCPT` and `DATA` go out
//! in one batch and the replies are matched in order (RFC 2920 section 3.1); without it, one
//! command at a time. The body is streamed by the caller through a dot-stuffer
//! ([`crate::data::Stuffer`]). The final reply settles the accepted recipients, and
//! [`ClientEvent::TransactionComplete`] reports one [`Outcome`] per recipient. After a failed
//! transaction the session sends `RSET` before the next one; [`ClientSession::quit`] ends the
//! session with `QUIT`.
//!
//! Timeouts are the caller's: [`ClientSession::timeout`] says how long to wait for the reply
//! the session expects now, with the values RFC 5321 section 4.5.3.2 recommends
//! ([`Timeouts`]); when it passes, call [`ClientSession::timed_out`].
//!
//! # Examples
//!
//! A pipelined transaction against a scripted server:
//!
//! ```
//! use mailbag_smtp_proto::client::{ClientOptions, ClientSession, ClientEvent, Status, Transaction};
//! use mailbag_smtp_proto::types::{ForwardPath, HeloName, ReversePath};
//! use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
//!
//! let helo = HeloName::try_from("relay.example.org")?;
//! let mut client = ClientSession::new(helo, ClientOptions::default());
//! let (from, _) = parse_reverse_path(b"<alice@example.org>")?;
//! let (to, _) = parse_forward_path(b"<bob@example.net>")?;
//! let txn = Transaction::new(from).recipient(to);
//!
//! client.feed(b"220 mx.example.net ESMTP\r\n");
//! assert_eq!(client.next_event(), None); // waits for the EHLO reply
//! assert_eq!(client.take_output(), b"EHLO relay.example.org\r\n");
//! client.feed(b"250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
//! assert_eq!(client.next_event(), Some(ClientEvent::Ready));
//! client.send_mail(&txn)?;
//! assert_eq!(
//!     client.take_output(),
//!     b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n"
//! );
//! client.feed(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n");
//! assert!(matches!(client.next_event(), Some(ClientEvent::RecipientReply { index: 0, .. })));
//! assert_eq!(client.next_event(), Some(ClientEvent::SendBody));
//! client.send_body(b"Subject: hi\r\n\r\n.hello\r\n")?;
//! client.end_body()?;
//! assert_eq!(client.take_output(), b"Subject: hi\r\n\r\n..hello\r\n.\r\n");
//! client.feed(b"250 2.0.0 queued as 42\r\n");
//! let Some(ClientEvent::TransactionComplete(result)) = client.next_event() else { panic!() };
//! assert_eq!(result.recipients[0].status(), Status::Accepted);
//! assert_eq!(client.next_event(), Some(ClientEvent::Ready));
//! client.quit();
//! assert_eq!(client.take_output(), b"QUIT\r\n");
//! client.feed(b"221 bye\r\n");
//! assert_eq!(client.next_event(), Some(ClientEvent::Closed { error: None }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::vec;
use alloc::vec::Vec;

use alloc::borrow::Cow;
use alloc::collections::VecDeque;
use core::time::Duration;
#[cfg(feature = "std")]
use std::time::Instant;

use crate::codec::{ReplyOptions, ReplyParser};
use crate::data::{MAX_TEXT_LINE, Stuffer};
use crate::types::{
    Body, Capability, Command, EhloReply, EnhancedStatusCode as Esc, ForwardPath, HeloName,
    MailParams, RcptParams, Reply, ReplyCode, ReversePath,
};

/// Timeouts recommended by RFC 5321 section 4.5.3.2, as values: the session does not
/// measure time, the caller does ([`ClientSession::timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Initial 220 greeting. Default 5 minutes (section 4.5.3.2.1).
    pub greeting: Duration,
    /// EHLO/HELO, STARTTLS, RSET and QUIT replies (the RFC names none; like MAIL).
    /// Default 5 minutes.
    pub command: Duration,
    /// MAIL reply. Default 5 minutes (section 4.5.3.2.2).
    pub mail: Duration,
    /// RCPT reply. Default 5 minutes (section 4.5.3.2.3).
    pub rcpt: Duration,
    /// DATA initiation (the 354). Default 2 minutes (section 4.5.3.2.4).
    pub data_init: Duration,
    /// Each write of body data (a TCP send) while streaming. Default 3 minutes
    /// (section 4.5.3.2.5).
    pub data_block: Duration,
    /// The reply to the final `.` (DATA termination). Default 10 minutes (section 4.5.3.2.6).
    pub data_termination: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::RFC5321
    }
}

impl Timeouts {
    /// The values of RFC 5321 section 4.5.3.2.
    pub const RFC5321: Timeouts = Timeouts {
        greeting: Duration::from_secs(300),
        command: Duration::from_secs(300),
        mail: Duration::from_secs(300),
        rcpt: Duration::from_secs(300),
        data_init: Duration::from_secs(120),
        data_block: Duration::from_secs(180),
        data_termination: Duration::from_secs(600),
    };
}

/// When to use STARTTLS (RFC 3207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// Never send STARTTLS.
    Disabled,
    /// Send STARTTLS when the server offers it; continue in plaintext if it is not offered
    /// or refused (opportunistic TLS, RFC 7435). The default.
    #[default]
    Opportunistic,
    /// Fail the session (temporary failure, `4.7.10`) unless TLS is established.
    Required,
}

/// Client configuration. Every field has a documented default ([`ClientOptions::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Use PIPELINING when the server offers it. Default `true`.
    pub pipelining: bool,
    /// STARTTLS policy. Default [`TlsPolicy::Opportunistic`].
    pub tls: TlsPolicy,
    /// The connection is already TLS (port 465): no STARTTLS. Default `false`.
    pub implicit_tls: bool,
    /// Limits of the reply parser: line length 512, 256 lines by default.
    pub reply: ReplyOptions,
    /// Most replies buffered from the server, in octets, while the session waits for the
    /// caller; a server sending more is a protocol error. Default 65536.
    pub max_buffered: usize,
    /// Timeouts the session reports. Default [`Timeouts::RFC5321`].
    pub timeouts: Timeouts,
    /// Body lines longer than this many octets (CRLF not counted) are folded
    /// at their last space or tab within it, else broken by inserting CRLF and
    /// a space ([`Stuffer::with_max_line`], like Postfix's
    /// `smtp_line_length_limit`): RFC 5321 section 4.5.3.1.6 lets no
    /// line pass 998, and a strict next hop refuses the message. `None` sends
    /// lines as they are. Default `Some(`[`MAX_TEXT_LINE`]`)`.
    pub max_line_len: Option<usize>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            pipelining: true,
            tls: TlsPolicy::Opportunistic,
            implicit_tls: false,
            reply: ReplyOptions::default(),
            max_buffered: 65536,
            timeouts: Timeouts::RFC5321,
            max_line_len: Some(MAX_TEXT_LINE),
        }
    }
}

/// Misuse of the session API by the caller (not a protocol failure, which is an [`Outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The call does not fit the session's state (e.g. `send_mail` before [`ClientEvent::Ready`],
    /// `send_body` before [`ClientEvent::SendBody`]).
    #[error("the SMTP client session is not in a state for this call")]
    WrongState,
    /// A transaction without recipients.
    #[error("a transaction needs at least one recipient")]
    NoRecipients,
}

/// How a recipient (or a session) fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Accepted by the server (2xx).
    Accepted,
    /// Temporary failure (4xx, timeout, connection lost, protocol error): try again later.
    Temporary,
    /// Permanent failure (5xx): do not try again with this message.
    Permanent,
}

/// The protocol step a reply or failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Connection and 220 greeting.
    Greeting,
    /// EHLO or HELO.
    Hello,
    /// STARTTLS.
    StartTls,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command (before the body).
    Data,
    /// The reply after the final `.` of the body.
    DataEnd,
    /// RSET or QUIT.
    Closing,
}

/// A reply that settles (or explains) the fate of a recipient or a session, with where it
/// came from. Local failures (timeouts, lost connections, SIZE exceeded, ...) carry a reply
/// the session made up, and [`Outcome::is_remote`] is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    status: Status,
    stage: Stage,
    reply: Reply<'static>,
    remote: bool,
}

impl Outcome {
    /// Classifies a server reply: 2xx/3xx accepted, 5xx permanent, anything else temporary.
    fn remote(stage: Stage, reply: Reply<'static>) -> Outcome {
        let status = match reply.code().class() {
            2 | 3 => Status::Accepted,
            5 => Status::Permanent,
            _ => Status::Temporary,
        };
        Outcome {
            status,
            stage,
            reply,
            remote: true,
        }
    }

    /// A server reply that means failure whatever its code (e.g. a 250 where 354 was due).
    fn remote_failure(stage: Stage, reply: Reply<'static>) -> Outcome {
        let mut o = Outcome::remote(stage, reply);
        if o.status == Status::Accepted {
            o.status = Status::Temporary;
        }
        o
    }

    fn local(stage: Stage, code: u16, esc: Esc, text: &'static str) -> Outcome {
        let reply = Reply::fixed(code, esc, text);
        Outcome {
            status: if code >= 500 {
                Status::Permanent
            } else {
                Status::Temporary
            },
            stage,
            reply,
            remote: false,
        }
    }

    /// Accepted, temporary or permanent.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The step the reply answered.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The server's reply, or the session's own for a local failure.
    pub fn reply(&self) -> &Reply<'static> {
        &self.reply
    }

    /// Whether the reply came from the server.
    pub fn is_remote(&self) -> bool {
        self.remote
    }
}

/// One recipient of a [`Transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recipient<'a> {
    /// The forward-path.
    pub to: ForwardPath<'a>,
    /// `NOTIFY` and `ORCPT` are sent only when the server offers DSN; others never.
    pub params: RcptParams<'a>,
}

impl<'a> Recipient<'a> {
    /// A recipient without parameters.
    pub fn new(to: ForwardPath<'a>) -> Self {
        Recipient {
            to,
            params: RcptParams::default(),
        }
    }
}

/// A mail transaction to send: the envelope and the wanted parameters.
///
/// Parameters are sent only when the server offers the extension: `SIZE` with SIZE,
/// `BODY=8BITMIME` with 8BITMIME (`7BIT` is the default and not sent; `BINARYMIME` never:
/// the client does not use BDAT; an 8-bit body to a server without 8BITMIME is sent as it
/// is, without conversion),
/// `SMTPUTF8` with SMTPUTF8, `RET`/`ENVID` with DSN. `AUTH=`, `REQUIRETLS`, `MT-PRIORITY`,
/// `BY`, `HOLD*` and unknown parameters are never sent. If the message needs SMTPUTF8
/// (the parameter is set or an address is not ASCII) and the server does not offer it, or
/// the SIZE exceeds the server's announced maximum, every recipient fails permanently
/// without a command being sent (`5.6.7`, `5.3.4`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transaction<'a> {
    /// The reverse-path (`<>` for bounces).
    pub from: ReversePath<'a>,
    /// Wanted MAIL parameters.
    pub params: MailParams<'a>,
    /// The recipients, in order; outcomes are reported by index into this list.
    pub recipients: Vec<Recipient<'a>>,
}

impl<'a> Transaction<'a> {
    /// A transaction without recipients or parameters.
    pub fn new(from: ReversePath<'a>) -> Self {
        Transaction {
            from,
            params: MailParams::default(),
            recipients: Vec::new(),
        }
    }

    /// Adds a recipient without parameters.
    #[must_use]
    pub fn recipient(mut self, to: ForwardPath<'a>) -> Self {
        self.recipients.push(Recipient::new(to));
        self
    }

    fn needs_smtputf8(&self) -> bool {
        self.params.smtputf8
            || !self.from.is_ascii()
            || self.recipients.iter().any(|r| !r.to.is_ascii())
    }
}

/// The result of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionResult {
    /// One outcome per recipient, in the order of [`Transaction::recipients`]: the RCPT
    /// reply for refused recipients, the final reply (or the failure that ended the
    /// transaction) for the others.
    pub recipients: Vec<Outcome>,
    /// The outcome of the message as a whole: the final reply after the body, or the reply
    /// (or local failure) that ended the transaction early.
    pub message: Outcome,
}

/// What the caller must know or do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The session is ready for a transaction: call [`ClientSession::send_mail`] or
    /// [`ClientSession::quit`]. Comes after the greeting and EHLO, and after each transaction.
    Ready,
    /// The server accepted STARTTLS: write the output, do the TLS handshake on the
    /// connection, then call [`ClientSession::tls_established`] (or drop the connection if
    /// the handshake fails).
    StartTls,
    /// The reply to the RCPT of recipient `index`. A failure settles the recipient; an
    /// acceptance is settled by the final reply.
    RecipientReply {
        /// Index into [`Transaction::recipients`].
        index: usize,
        /// The reply, classified.
        outcome: Outcome,
    },
    /// The server said 354: stream the body with [`ClientSession::send_body`] and end it
    /// with [`ClientSession::end_body`].
    SendBody,
    /// The transaction is over; the recipients' fate is settled (accepted, or failed).
    TransactionComplete(TransactionResult),
    /// The session is over: write what is left of the output, then close the connection.
    /// `error` is `None` after a clean QUIT.
    Closed {
        /// Why the session failed, if it did.
        error: Option<Outcome>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Idle,
    Txn,
    Body,
    DataEnd,
    Rset,
    Quit,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
}

#[derive(Debug)]
struct Txn {
    results: Vec<Option<Outcome>>,
    accepted: Vec<usize>,
    mail_failed: Option<Outcome>,
    last_failure: Option<Outcome>,
    /// Commands not sent yet (without pipelining), with the reply each expects.
    unsent: VecDeque<(Expect, Vec<u8>)>,
    /// Replies due, in order.
    expect: VecDeque<Expect>,
    /// A 354 came although no recipient was accepted: an empty body was sent to end it.
    empty_data: bool,
}

/// The SMTP client state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct ClientSession {
    helo: HeloName<'static>,
    opts: ClientOptions,
    parser: ReplyParser,
    inbuf: Vec<u8>,
    in_pos: usize,
    out: Vec<u8>,
    state: State,
    events: VecDeque<ClientEvent>,
    capabilities: Vec<Capability<'static>>,
    esmtp: bool,
    tls: bool,
    tls_tried: bool,
    txn: Option<Txn>,
    stuffer: Stuffer,
    quit_requested: bool,
    greeting: Option<Reply<'static>>,
    error: Option<Outcome>,
    replies: u64,
}

const E_TIMEOUT: Esc = Esc::c(4, 4, 2);
const E_PROTOCOL: Esc = Esc::c(4, 5, 0);
const E_TLS: Esc = Esc::c(4, 7, 10);

impl ClientSession {
    /// A session that waits for the server's greeting. `helo` is this host's name for EHLO.
    pub fn new(helo: HeloName<'static>, options: ClientOptions) -> Self {
        let parser = ReplyParser::new(options.reply.clone());
        let tls = options.implicit_tls;
        ClientSession {
            helo,
            opts: options,
            parser,
            inbuf: Vec::with_capacity(1024),
            in_pos: 0,
            out: Vec::with_capacity(512),
            state: State::Greeting,
            replies: 0,
            events: VecDeque::new(),
            capabilities: Vec::new(),
            esmtp: false,
            tls,
            tls_tried: false,
            txn: None,
            stuffer: Stuffer::new(),
            quit_requested: false,
            greeting: None,
            error: None,
        }
    }

    /// Adds bytes received from the server. Ignored once closed and while the TLS handshake
    /// is pending (plaintext after the 220 to STARTTLS is discarded, RFC 3207 section 4.2).
    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.state, State::Closed | State::TlsHandshake) {
            return;
        }
        if self.in_pos > 0 {
            self.inbuf.drain(..self.in_pos);
            self.in_pos = 0;
        }
        // While the session waits for the caller nothing is parsed: a server
        // sending more than `max_buffered` meanwhile is a protocol error, not
        // a buffer that grows without end.
        if matches!(self.state, State::Idle | State::Body)
            && self.inbuf.len().saturating_add(data.len()) > self.opts.max_buffered
        {
            self.fail(Outcome::local(
                self.stage(),
                451,
                E_PROTOCOL,
                "Server sent too much unasked",
            ));
            return;
        }
        self.inbuf.extend_from_slice(data);
    }

    /// Whether the session can take more input now (not closed, buffer below
    /// [`ClientOptions::max_buffered`]). Read from the socket only while this is true.
    pub fn wants_input(&self) -> bool {
        !matches!(self.state, State::Closed | State::TlsHandshake)
            && self.inbuf.len() - self.in_pos < self.opts.max_buffered
    }

    /// The next event, or `None` when more input is needed or the caller must act
    /// (after [`ClientEvent::Ready`] or [`ClientEvent::SendBody`]).
    pub fn next_event(&mut self) -> Option<ClientEvent> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if matches!(
                self.state,
                State::Closed | State::Idle | State::Body | State::TlsHandshake
            ) {
                return None;
            }
            // Only the first `max_buffered` octets are parsed, so that what lies
            // beyond (read in the same chunk or not) cannot change the outcome.
            let avail = self.inbuf.get(self.in_pos..).unwrap_or_default();
            let window = avail.get(..self.opts.max_buffered).unwrap_or(avail);
            match self.parser.parse(window) {
                Ok(None) => {
                    if window.len() >= self.opts.max_buffered {
                        self.fail(Outcome::local(
                            self.stage(),
                            451,
                            E_PROTOCOL,
                            "Reply too long",
                        ));
                        continue;
                    }
                    return None;
                }
                Ok(Some((reply, n))) => {
                    let reply = reply.into_owned();
                    self.in_pos += n;
                    self.replies = self.replies.wrapping_add(1);
                    self.on_reply(reply);
                }
                Err(_) => {
                    self.fail(Outcome::local(
                        self.stage(),
                        451,
                        E_PROTOCOL,
                        "Malformed reply from server",
                    ));
                }
            }
        }
    }

    /// Output to write to the server.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Marks `n` octets of the output as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.out.len());
        self.out.drain(..n);
    }

    /// Takes all pending output.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// The server's capabilities from the last EHLO reply (empty after HELO).
    pub fn capabilities(&self) -> &[Capability<'static>] {
        &self.capabilities
    }

    /// Whether the server offers `cap` (compared by kind; `SIZE`'s number is ignored).
    pub fn offers(&self, cap: &Capability<'_>) -> bool {
        self.capabilities
            .iter()
            .any(|c| core::mem::discriminant(c) == core::mem::discriminant(cap))
    }

    /// Whether the session fell back to HELO (no extensions).
    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    /// Whether TLS is active (after [`ClientSession::tls_established`] or implicit TLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The server's 220 greeting, once received.
    pub fn greeting(&self) -> Option<&Reply<'static>> {
        self.greeting.as_ref()
    }

    /// How many complete replies the session has parsed. A driver restarts the clock
    /// of [`ClientSession::timeout`] when this changes or when it writes, and only then.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::client::{ClientOptions, ClientSession};
    /// use mailbag_smtp_proto::types::HeloName;
    ///
    /// let mut s = ClientSession::new(HeloName::try_from("me.example")?, ClientOptions::default());
    /// s.feed(b"220 mx ES");
    /// assert_eq!(s.next_event(), None);
    /// assert_eq!(s.replies_received(), 0); // part of a reply: the clock runs on
    /// s.feed(b"MTP\r\n");
    /// while s.next_event().is_some() {}
    /// assert_eq!(s.replies_received(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replies_received(&self) -> u64 {
        self.replies
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the session failed, once it has.
    pub fn error(&self) -> Option<&Outcome> {
        self.error.as_ref()
    }

    /// How long to wait for the server now, or `None` when the session waits for the caller
    /// (or is closed). While streaming the body this is the per-write data block timeout.
    ///
    /// It is the time the whole reply may take, counted from when the session began
    /// to wait for it (the command written, or the reply before it complete: see
    /// [`ClientSession::replies_received`]), not from the last octet read: a server that
    /// sends its reply an octet at a time does not hold the client beyond it (a probe's
    /// next hop held an attempt for 12 minutes so with an 8-second timeout).
    pub fn timeout(&self) -> Option<Duration> {
        let t = &self.opts.timeouts;
        Some(match self.state {
            State::Greeting => t.greeting,
            State::Ehlo | State::Helo | State::StartTls | State::Rset | State::Quit => t.command,
            State::Txn => match self.txn.as_ref().and_then(|x| x.expect.front()) {
                Some(Expect::Mail) => t.mail,
                Some(Expect::Rcpt(_)) => t.rcpt,
                Some(Expect::Data) | None => t.data_init,
            },
            State::Body => t.data_block,
            State::DataEnd => t.data_termination,
            State::Idle | State::TlsHandshake | State::Closed => return None,
        })
    }

    /// The deadline for the server's next reply, given `since`: when the session began to
    /// wait for it (the last write, or the last complete reply).
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn deadline(&self, since: Instant) -> Option<Instant> {
        self.timeout().and_then(|d| since.checked_add(d))
    }

    /// The deadline passed: the session fails with a temporary `4.4.2` failure (any
    /// transaction in progress reports its unsettled recipients as temporary failures).
    pub fn timed_out(&mut self) {
        if self.state != State::Closed {
            self.fail(Outcome::local(
                self.stage(),
                451,
                E_TIMEOUT,
                "Timeout waiting for the server",
            ));
        }
    }

    /// The connection closed or broke (read returned 0, or an I/O error). After `QUIT` was
    /// sent this is a clean end; otherwise a temporary `4.4.2` failure.
    pub fn connection_closed(&mut self) {
        match self.state {
            State::Closed => {}
            State::Quit => self.close(None),
            _ => self.fail(Outcome::local(
                self.stage(),
                451,
                E_TIMEOUT,
                "Connection lost",
            )),
        }
    }

    /// After [`ClientEvent::StartTls`]: the TLS handshake succeeded. The session forgets the
    /// capabilities and any buffered plaintext and sends EHLO again.
    pub fn tls_established(&mut self) {
        if self.state != State::TlsHandshake {
            return;
        }
        self.tls = true;
        self.inbuf.clear();
        self.in_pos = 0;
        self.capabilities.clear();
        self.send_ehlo();
    }

    /// Starts a transaction (after [`ClientEvent::Ready`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::WrongState`] if the session is not ready, [`ClientError::NoRecipients`]
    /// for an empty recipient list.
    pub fn send_mail(&mut self, txn: &Transaction<'_>) -> Result<(), ClientError> {
        if self.state != State::Idle || self.quit_requested {
            return Err(ClientError::WrongState);
        }
        if txn.recipients.is_empty() {
            return Err(ClientError::NoRecipients);
        }
        let n = txn.recipients.len();
        if txn.needs_smtputf8() && !self.offers(&Capability::SmtpUtf8) {
            let o = Outcome::local(
                Stage::Mail,
                553,
                Esc::c(5, 6, 7),
                "The server does not support SMTPUTF8, needed by this message",
            );
            self.complete_locally(n, o);
            return Ok(());
        }
        let max = self.capabilities.iter().find_map(|c| match c {
            Capability::Size(Some(m)) if *m > 0 => Some(*m),
            _ => None,
        });
        if let (Some(max), Some(size)) = (max, txn.params.size)
            && size > max
        {
            let o = Outcome::local(
                Stage::Mail,
                552,
                Esc::c(5, 3, 4),
                "Message size exceeds the server's fixed maximum",
            );
            self.complete_locally(n, o);
            return Ok(());
        }

        let dsn = self.offers(&Capability::Dsn);
        let params = MailParams {
            size: txn
                .params
                .size
                .filter(|_| self.offers(&Capability::Size(None))),
            body: txn
                .params
                .body
                .filter(|b| *b == Body::EightBitMime && self.offers(&Capability::EightBitMime)),
            smtputf8: txn.needs_smtputf8(),
            ret: txn.params.ret.filter(|_| dsn),
            envid: txn.params.envid.clone().filter(|_| dsn),
            ..MailParams::default()
        };
        let mut cmds = VecDeque::with_capacity(n + 2);
        let mut line = Vec::with_capacity(64);
        Command::Mail {
            from: txn.from.clone(),
            params,
        }
        .encode(&mut line);
        cmds.push_back((Expect::Mail, line));
        for (i, r) in txn.recipients.iter().enumerate() {
            let mut line = Vec::with_capacity(64);
            let params = if dsn {
                RcptParams {
                    notify: r.params.notify,
                    orcpt: r.params.orcpt.clone(),
                    unknown: Vec::new(),
                }
            } else {
                RcptParams::default()
            };
            Command::Rcpt {
                to: r.to.clone(),
                params,
            }
            .encode(&mut line);
            cmds.push_back((Expect::Rcpt(i), line));
        }
        cmds.push_back((Expect::Data, b"DATA\r\n".to_vec()));
        let mut t = Txn {
            results: vec![None; n],
            accepted: Vec::with_capacity(n),
            mail_failed: None,
            last_failure: None,
            unsent: cmds,
            expect: VecDeque::new(),
            empty_data: false,
        };
        if self.pipelining() {
            while let Some((e, line)) = t.unsent.pop_front() {
                self.out.extend_from_slice(&line);
                t.expect.push_back(e);
            }
        } else if let Some((e, line)) = t.unsent.pop_front() {
            self.out.extend_from_slice(&line);
            t.expect.push_back(e);
        }
        self.txn = Some(t);
        self.state = State::Txn;
        Ok(())
    }

    /// Streams a piece of the body (after [`ClientEvent::SendBody`]); it is dot-stuffed into the
    /// output. Write the output to the socket between pieces to bound memory.
    ///
    /// # Errors
    ///
    /// [`ClientError::WrongState`] outside the body phase.
    pub fn send_body(&mut self, chunk: &[u8]) -> Result<(), ClientError> {
        if self.state != State::Body {
            return Err(ClientError::WrongState);
        }
        self.stuffer.chunk(chunk, &mut self.out);
        Ok(())
    }

    /// Ends the body (adds the final CRLF if missing and `.CRLF`); the session then waits
    /// for the final reply.
    ///
    /// # Errors
    ///
    /// [`ClientError::WrongState`] outside the body phase.
    pub fn end_body(&mut self) -> Result<(), ClientError> {
        if self.state != State::Body {
            return Err(ClientError::WrongState);
        }
        self.stuffer.finish(&mut self.out);
        self.state = State::DataEnd;
        Ok(())
    }

    /// Ends the session with QUIT: at once when ready, otherwise after the current
    /// transaction (instead of the next [`ClientEvent::Ready`]). Before the greeting or EHLO
    /// completed, QUIT is sent when the server's reply comes.
    pub fn quit(&mut self) {
        match self.state {
            State::Idle => self.send_quit(),
            State::Closed | State::Quit => {}
            _ => self.quit_requested = true,
        }
    }

    // ------------------------------------------------------------ internals

    fn pipelining(&self) -> bool {
        self.opts.pipelining && self.offers(&Capability::Pipelining)
    }

    fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::Ehlo | State::Helo => Stage::Hello,
            State::StartTls | State::TlsHandshake => Stage::StartTls,
            State::Txn => match self.txn.as_ref().and_then(|t| t.expect.front()) {
                Some(Expect::Mail) => Stage::Mail,
                Some(Expect::Rcpt(_)) => Stage::Rcpt,
                Some(Expect::Data) | None => Stage::Data,
            },
            State::Body | State::DataEnd => Stage::DataEnd,
            State::Idle | State::Rset | State::Quit | State::Closed => Stage::Closing,
        }
    }

    fn send_ehlo(&mut self) {
        Command::Ehlo(self.helo.clone()).encode(&mut self.out);
        self.state = State::Ehlo;
    }

    fn send_quit(&mut self) {
        self.out.extend_from_slice(b"QUIT\r\n");
        self.state = State::Quit;
    }

    fn close(&mut self, error: Option<Outcome>) {
        self.state = State::Closed;
        self.txn = None;
        self.error.clone_from(&error);
        self.events.push_back(ClientEvent::Closed { error });
    }

    /// The session cannot go on: settle an open transaction as failed with `why`, close.
    fn fail(&mut self, why: Outcome) {
        if let Some(t) = self.txn.take() {
            let message = t.mail_failed.clone().unwrap_or_else(|| why.clone());
            let recipients = t
                .results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| message.clone()))
                .collect();
            self.events
                .push_back(ClientEvent::TransactionComplete(TransactionResult {
                    recipients,
                    message,
                }));
        }
        self.close(Some(why));
    }

    /// A server failure outside a transaction: QUIT politely unless it is closing (421).
    fn fail_remote(&mut self, why: Outcome) {
        if why.reply().code() != ReplyCode::NOT_AVAILABLE {
            self.out.extend_from_slice(b"QUIT\r\n");
        }
        self.fail(why);
    }

    fn complete_locally(&mut self, n: usize, o: Outcome) {
        self.events
            .push_back(ClientEvent::TransactionComplete(TransactionResult {
                recipients: vec![o.clone(); n],
                message: o,
            }));
        self.ready();
    }

    /// Between transactions: QUIT if asked, else tell the caller.
    fn ready(&mut self) {
        if self.quit_requested {
            self.send_quit();
        } else {
            self.state = State::Idle;
            self.events.push_back(ClientEvent::Ready);
        }
    }

    fn after_hello(&mut self) {
        if self.opts.tls == TlsPolicy::Required && !self.tls {
            let o = Outcome::local(Stage::StartTls, 451, E_TLS, "TLS required but unavailable");
            self.fail_remote(o);
        } else if self.quit_requested {
            self.send_quit();
        } else {
            self.ready();
        }
    }

    fn on_reply(&mut self, reply: Reply<'static>) {
        let code = reply.code().get();
        match self.state {
            State::Greeting => {
                if code == 220 {
                    self.greeting = Some(reply);
                    if self.quit_requested {
                        self.send_quit();
                    } else {
                        self.send_ehlo();
                    }
                } else {
                    self.fail_remote(Outcome::remote_failure(Stage::Greeting, reply));
                }
            }
            State::Ehlo => {
                if code == 250 {
                    self.esmtp = true;
                    self.capabilities = EhloReply::from_reply(&reply)
                        .map(|e| {
                            e.capabilities
                                .into_iter()
                                .map(Capability::into_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    let want_tls = self.opts.tls != TlsPolicy::Disabled
                        && !self.tls
                        && !self.tls_tried
                        && self.offers(&Capability::StartTls)
                        && !self.quit_requested;
                    if want_tls {
                        self.tls_tried = true;
                        self.out.extend_from_slice(b"STARTTLS\r\n");
                        self.state = State::StartTls;
                    } else {
                        self.after_hello();
                    }
                } else if reply.code().class() == 5 && code != 554 {
                    // RFC 5321 section 3.2: fall back to HELO.
                    self.esmtp = false;
                    self.capabilities.clear();
                    Command::Helo(self.helo.clone()).encode(&mut self.out);
                    self.state = State::Helo;
                } else {
                    self.fail_remote(Outcome::remote_failure(Stage::Hello, reply));
                }
            }
            State::Helo => {
                if code == 250 {
                    self.after_hello();
                } else {
                    self.fail_remote(Outcome::remote_failure(Stage::Hello, reply));
                }
            }
            State::StartTls => {
                if code == 220 {
                    // Anything after the 220 is plaintext injection: dropped.
                    self.inbuf.clear();
                    self.in_pos = 0;
                    self.state = State::TlsHandshake;
                    self.events.push_back(ClientEvent::StartTls);
                } else if code == 421 {
                    self.fail(Outcome::remote_failure(Stage::StartTls, reply));
                } else {
                    self.after_hello();
                }
            }
            State::Txn => self.on_txn_reply(reply),
            State::DataEnd => {
                let Some(t) = self.txn.take() else {
                    return self.ready();
                };
                let closing = code == 421;
                let outcome = if t.empty_data {
                    Outcome::remote_failure(Stage::DataEnd, reply)
                } else {
                    Outcome::remote(Stage::DataEnd, reply)
                };
                let next = if closing {
                    After::Close(outcome.clone())
                } else {
                    After::Ready
                };
                self.finish_txn(t, outcome, next);
            }
            State::Rset => {
                if reply.code().class() == 2 {
                    self.ready();
                } else {
                    self.fail_remote(Outcome::remote_failure(Stage::Closing, reply));
                }
            }
            State::Quit => self.close(None),
            State::Idle | State::Body | State::TlsHandshake | State::Closed => {}
        }
    }

    fn on_txn_reply(&mut self, reply: Reply<'static>) {
        let Some(mut t) = self.txn.take() else {
            return self.ready();
        };
        let Some(expect) = t.expect.pop_front() else {
            self.txn = Some(t);
            return;
        };
        let positive = reply.code().class() == 2;
        let closing = reply.code() == ReplyCode::NOT_AVAILABLE;
        match expect {
            Expect::Mail => {
                if !positive {
                    let o = Outcome::remote_failure(Stage::Mail, reply);
                    t.mail_failed = Some(o.clone());
                    t.last_failure = Some(o);
                    if t.expect.is_empty() || closing {
                        // Not pipelined (nothing else sent): end here.
                        let why = t.last_failure.clone();
                        return self.end_failed_txn(t, closing, why);
                    }
                }
            }
            Expect::Rcpt(i) => {
                if t.mail_failed.is_none() {
                    let o = if positive {
                        t.accepted.push(i);
                        Outcome::remote(Stage::Rcpt, reply)
                    } else {
                        Outcome::remote_failure(Stage::Rcpt, reply)
                    };
                    if o.status != Status::Accepted {
                        t.last_failure = Some(o.clone());
                        if let Some(slot) = t.results.get_mut(i) {
                            *slot = Some(o.clone());
                        }
                    }
                    self.events.push_back(ClientEvent::RecipientReply {
                        index: i,
                        outcome: o,
                    });
                }
                if closing {
                    let why = t.last_failure.clone();
                    return self.end_failed_txn(t, true, why);
                }
            }
            Expect::Data => {
                if reply.code() == ReplyCode::START_DATA {
                    if t.accepted.is_empty() {
                        // A server that says 354 with no valid recipient (RFC 2920
                        // section 3.1): send an empty message to get out of DATA.
                        self.out.extend_from_slice(b".\r\n");
                        t.empty_data = true;
                        self.txn = Some(t);
                        self.state = State::DataEnd;
                    } else {
                        self.txn = Some(t);
                        self.stuffer = match self.opts.max_line_len {
                            Some(max) => Stuffer::with_max_line(max),
                            None => Stuffer::new(),
                        };
                        self.state = State::Body;
                        self.events.push_back(ClientEvent::SendBody);
                    }
                    return;
                }
                let o = Outcome::remote_failure(Stage::Data, reply);
                let why = if t.mail_failed.is_some() || t.accepted.is_empty() {
                    t.last_failure.clone()
                } else {
                    Some(o)
                };
                return self.end_failed_txn(t, closing, why);
            }
        }
        // Without pipelining, send the next command, or stop early.
        if t.expect.is_empty() {
            let next = t.unsent.front().map(|(e, _)| *e);
            let stop = match next {
                _ if t.mail_failed.is_some() => true,
                Some(Expect::Data) => t.accepted.is_empty(),
                None => true,
                _ => false,
            };
            if stop {
                let why = t.last_failure.clone();
                return self.end_failed_txn(t, false, why);
            }
            if let Some((e, line)) = t.unsent.pop_front() {
                self.out.extend_from_slice(&line);
                t.expect.push_back(e);
            }
        }
        self.txn = Some(t);
    }

    /// Ends a transaction that failed before the body: settle, then RSET (or close on 421).
    fn end_failed_txn(&mut self, t: Txn, closing: bool, why: Option<Outcome>) {
        let why = why
            .unwrap_or_else(|| Outcome::local(Stage::Data, 451, E_PROTOCOL, "Transaction failed"));
        let next = if closing {
            After::Close(why.clone())
        } else {
            After::Rset
        };
        self.finish_txn(t, why, next);
    }

    /// Reports the transaction: `message` settles every recipient not settled yet.
    fn finish_txn(&mut self, t: Txn, message: Outcome, next: After) {
        let message = t.mail_failed.clone().unwrap_or(message);
        let recipients: Vec<Outcome> = t
            .results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| message.clone()))
            .collect();
        self.events
            .push_back(ClientEvent::TransactionComplete(TransactionResult {
                recipients,
                message,
            }));
        match next {
            After::Close(why) => self.close(Some(why)),
            After::Rset if self.quit_requested => self.send_quit(),
            After::Rset => {
                self.out.extend_from_slice(b"RSET\r\n");
                self.state = State::Rset;
            }
            After::Ready => self.ready(),
        }
    }
}

/// What follows the end of a transaction.
#[derive(Debug)]
enum After {
    Ready,
    Rset,
    Close(Outcome),
}

impl Outcome {
    /// Builds an outcome from a server reply, classified by its code (2xx/3xx accepted,
    /// 4xx temporary, 5xx permanent). For the caller's own bookkeeping, e.g. a reply seen
    /// outside a session.
    pub fn from_reply(stage: Stage, reply: Reply<'_>) -> Outcome {
        Outcome::remote(stage, reply.into_owned())
    }

    /// A failure found by the caller (DNS, routing, a refused connection) as an outcome
    /// with `reply`; the status follows the reply code, [`Outcome::is_remote`] is false.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::client::{Outcome, Stage, Status};
    /// use mailbag_smtp_proto::types::{EnhancedStatusCode, Reply, ReplyCode};
    ///
    /// let esc = EnhancedStatusCode::new(5, 1, 10)?;
    /// let reply = Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, Some(esc), "null MX")?;
    /// let o = Outcome::local_reply(Stage::Greeting, reply);
    /// assert_eq!(o.status(), Status::Permanent);
    /// assert!(!o.is_remote());
    /// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
    /// ```
    pub fn local_reply(stage: Stage, reply: Reply<'_>) -> Outcome {
        let mut o = Outcome::remote_failure(stage, reply.into_owned());
        o.remote = false;
        o
    }

    /// A temporary local failure with `text` (e.g. "connection refused"), `451 4.4.1`.
    pub fn temporary(stage: Stage, text: impl Into<Cow<'static, str>>) -> Outcome {
        let esc = Esc::c(4, 4, 1);
        let reply = Reply::new(ReplyCode::LOCAL_ERROR, Some(esc), text)
            .unwrap_or_else(|_| Reply::fixed(451, esc, "Temporary failure"));
        Outcome {
            status: Status::Temporary,
            stage,
            reply,
            remote: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{parse_forward_path, parse_reverse_path};
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    fn client(opts: ClientOptions) -> ClientSession {
        ClientSession::new(HeloName::try_from("client.example").expect("valid"), opts)
    }

    fn txn(to: &[&str]) -> Transaction<'static> {
        let (from, _) = parse_reverse_path(b"<a@example.org>").expect("valid");
        let mut t = Transaction::new(from.into_owned());
        for r in to {
            let (p, _) = parse_forward_path(r.as_bytes()).expect("valid");
            t = t.recipient(p.into_owned());
        }
        t
    }

    fn drain(c: &mut ClientSession) -> Vec<ClientEvent> {
        std::iter::from_fn(|| c.next_event()).collect()
    }

    fn ready(c: &mut ClientSession, ehlo: &[u8]) {
        c.feed(b"220 mx ESMTP\r\n");
        assert!(drain(c).is_empty());
        assert_eq!(c.take_output(), b"EHLO client.example\r\n");
        c.feed(ehlo);
        assert_eq!(drain(c), [ClientEvent::Ready]);
    }

    #[test]
    fn helo_fallback_on_502() {
        let mut c = client(ClientOptions::default());
        c.feed(b"220 old\r\n");
        assert!(drain(&mut c).is_empty());
        c.take_output();
        c.feed(b"502 what\r\n");
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.take_output(), b"HELO client.example\r\n");
        c.feed(b"250 hi\r\n");
        assert_eq!(drain(&mut c), [ClientEvent::Ready]);
        assert!(!c.is_esmtp());
        // No extensions: parameters are dropped, commands go one at a time.
        let mut t = txn(&["<b@x.example>", "<c@x.example>"]);
        t.params.size = Some(10);
        t.params.body = Some(Body::EightBitMime);
        c.send_mail(&t).unwrap();
        assert_eq!(c.take_output(), b"MAIL FROM:<a@example.org>\r\n");
        c.feed(b"250 ok\r\n");
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.take_output(), b"RCPT TO:<b@x.example>\r\n");
        assert_eq!(c.timeout(), Some(Duration::from_secs(300)));
    }

    #[test]
    fn greeting_554_fails_permanently_and_quits() {
        let mut c = client(ClientOptions::default());
        c.feed(b"554 go away\r\n");
        let ev = drain(&mut c);
        let [ClientEvent::Closed { error: Some(o) }] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(o.status(), Status::Permanent);
        assert_eq!(o.stage(), Stage::Greeting);
        assert!(o.is_remote());
        assert_eq!(c.take_output(), b"QUIT\r\n");
        assert!(c.is_closed());
    }

    /// A reply longer than `max_buffered` is "too long" whatever follows it and
    /// however it is read: a malformed line past the limit, fed in the same chunk,
    /// used to turn it into "malformed" (found by the `smtp_client_session` fuzz
    /// target).
    #[test]
    fn overlong_reply_fails_the_same_whatever_the_chunking() {
        let opts = ClientOptions {
            max_buffered: 64,
            ..ClientOptions::default()
        };
        let mut input = b"220-mx.example greets you\r\n".repeat(4);
        input.extend_from_slice(b"x20 malformed\r\n220 end\r\n");
        let mut whole = client(opts.clone());
        whole.feed(&input);
        let whole_events = drain(&mut whole);
        let mut bytewise = client(opts);
        let mut bytewise_events = Vec::new();
        for b in &input {
            bytewise.feed(std::slice::from_ref(b));
            bytewise_events.extend(drain(&mut bytewise));
        }
        assert_eq!(whole_events, bytewise_events);
        let [ClientEvent::Closed { error: Some(o) }] = whole_events.as_slice() else {
            panic!("{whole_events:?}")
        };
        assert_eq!(o.reply().lines(), ["Reply too long"]);
        assert_eq!(o.status(), Status::Temporary);
    }

    #[test]
    fn malformed_reply_is_a_temporary_failure() {
        let mut c = client(ClientOptions::default());
        c.feed(b"hello\r\n");
        let ev = drain(&mut c);
        let [ClientEvent::Closed { error: Some(o) }] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(o.status(), Status::Temporary);
        assert!(!o.is_remote());
    }

    #[test]
    fn local_size_and_smtputf8_checks() {
        let mut c = client(ClientOptions::default());
        ready(&mut c, b"250-mx\r\n250 SIZE 100\r\n");
        let mut t = txn(&["<b@x.example>"]);
        t.params.size = Some(101);
        c.send_mail(&t).unwrap();
        let ev = drain(&mut c);
        let Some(ClientEvent::TransactionComplete(r)) = ev.first() else {
            panic!("{ev:?}")
        };
        assert_eq!(r.recipients[0].status(), Status::Permanent);
        assert_eq!(r.message.reply().enhanced(), Esc::new(5, 3, 4).ok());
        assert_eq!(ev.get(1), Some(&ClientEvent::Ready));
        assert!(c.output().is_empty());

        let t = txn(&["<bü@x.example>"]);
        c.send_mail(&t).unwrap();
        let ev = drain(&mut c);
        let Some(ClientEvent::TransactionComplete(r)) = ev.first() else {
            panic!("{ev:?}")
        };
        assert_eq!(r.message.reply().enhanced(), Esc::new(5, 6, 7).ok());
        assert!(c.output().is_empty());
    }

    #[test]
    fn api_misuse_is_an_error() {
        let mut c = client(ClientOptions::default());
        assert_eq!(c.send_mail(&txn(&["<b@x>"])), Err(ClientError::WrongState));
        assert_eq!(c.send_body(b"x"), Err(ClientError::WrongState));
        assert_eq!(c.end_body(), Err(ClientError::WrongState));
        ready(&mut c, b"250 mx\r\n");
        assert_eq!(c.send_mail(&txn(&[])), Err(ClientError::NoRecipients));
    }

    #[test]
    fn timeouts_follow_the_state() {
        let mut c = client(ClientOptions::default());
        assert_eq!(c.timeout(), Some(Duration::from_secs(300)));
        #[cfg(feature = "std")]
        {
            let t0 = Instant::now();
            assert_eq!(c.deadline(t0), t0.checked_add(Duration::from_secs(300)));
        }
        ready(&mut c, b"250-mx\r\n250 PIPELINING\r\n");
        assert_eq!(c.timeout(), None);
        c.send_mail(&txn(&["<b@x>"])).unwrap();
        assert_eq!(c.timeout(), Some(Timeouts::RFC5321.mail));
        c.feed(b"250 ok\r\n");
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.timeout(), Some(Timeouts::RFC5321.rcpt));
        c.feed(b"250 ok\r\n");
        drain(&mut c);
        assert_eq!(c.timeout(), Some(Duration::from_secs(120)));
        c.feed(b"354 go\r\n");
        assert_eq!(drain(&mut c), [ClientEvent::SendBody]);
        assert_eq!(c.timeout(), Some(Duration::from_secs(180)));
        c.end_body().unwrap();
        assert_eq!(c.timeout(), Some(Duration::from_secs(600)));
        c.timed_out();
        let ev = drain(&mut c);
        let [
            ClientEvent::TransactionComplete(r),
            ClientEvent::Closed { error: Some(e) },
        ] = ev.as_slice()
        else {
            panic!("{ev:?}")
        };
        assert_eq!(r.recipients[0].status(), Status::Temporary);
        assert_eq!(e.stage(), Stage::DataEnd);
        assert_eq!(c.timeout(), None);
    }

    #[test]
    fn starttls_discards_plaintext_and_says_ehlo_again() {
        let mut c = client(ClientOptions::default());
        c.feed(b"220 mx\r\n");
        drain(&mut c);
        c.take_output();
        c.feed(b"250-mx\r\n250 STARTTLS\r\n");
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.take_output(), b"STARTTLS\r\n");
        c.feed(b"220 go\r\n250 injected\r\n");
        assert_eq!(drain(&mut c), [ClientEvent::StartTls]);
        c.feed(b"250 more injected\r\n");
        c.tls_established();
        assert!(c.is_tls());
        assert_eq!(c.take_output(), b"EHLO client.example\r\n");
        c.feed(b"250-mx\r\n250 STARTTLS\r\n");
        assert_eq!(drain(&mut c), [ClientEvent::Ready]);
        assert!(c.take_output().is_empty());
    }

    #[test]
    fn starttls_refused_continues_unless_required() {
        let mut c = client(ClientOptions::default());
        ready_tls_refused(&mut c);
        assert_eq!(drain(&mut c), [ClientEvent::Ready]);

        let mut c = client(ClientOptions {
            tls: TlsPolicy::Required,
            ..ClientOptions::default()
        });
        ready_tls_refused(&mut c);
        let ev = drain(&mut c);
        assert!(
            matches!(ev.as_slice(), [ClientEvent::Closed { error: Some(o) }] if o.status() == Status::Temporary),
            "{ev:?}"
        );
        assert_eq!(c.take_output(), b"QUIT\r\n");
    }

    fn ready_tls_refused(c: &mut ClientSession) {
        c.feed(b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n");
        assert!(drain(c).is_empty());
        assert_eq!(c.take_output(), b"EHLO client.example\r\nSTARTTLS\r\n");
        c.feed(b"454 4.7.0 TLS not available\r\n");
    }

    #[test]
    fn connection_lost_settles_open_transaction() {
        let mut c = client(ClientOptions::default());
        ready(&mut c, b"250-mx\r\n250 PIPELINING\r\n");
        c.send_mail(&txn(&["<b@x>", "<c@x>"])).unwrap();
        c.feed(b"250 ok\r\n550 no\r\n");
        let ev = drain(&mut c);
        assert_eq!(ev.len(), 1, "{ev:?}");
        c.connection_closed();
        let ev = drain(&mut c);
        let [
            ClientEvent::TransactionComplete(r),
            ClientEvent::Closed { .. },
        ] = ev.as_slice()
        else {
            panic!("{ev:?}")
        };
        assert_eq!(r.recipients[0].status(), Status::Permanent);
        assert_eq!(r.recipients[1].status(), Status::Temporary);
    }

    #[test]
    fn quit_requested_mid_transaction_replaces_ready() {
        let mut c = client(ClientOptions::default());
        ready(&mut c, b"250 mx\r\n");
        c.send_mail(&txn(&["<b@x>"])).unwrap();
        c.take_output();
        c.quit();
        c.feed(b"550 no such sender\r\n");
        let ev = drain(&mut c);
        assert!(
            matches!(ev.as_slice(), [ClientEvent::TransactionComplete(_)]),
            "{ev:?}"
        );
        assert_eq!(c.take_output(), b"QUIT\r\n");
        c.connection_closed();
        assert_eq!(drain(&mut c), [ClientEvent::Closed { error: None }]);
    }

    #[test]
    fn server_421_mid_transaction_closes() {
        let mut c = client(ClientOptions::default());
        ready(&mut c, b"250 mx\r\n");
        c.send_mail(&txn(&["<b@x>"])).unwrap();
        c.take_output();
        c.feed(b"421 4.3.2 shutting down\r\n");
        let ev = drain(&mut c);
        let [
            ClientEvent::TransactionComplete(r),
            ClientEvent::Closed { error: Some(e) },
        ] = ev.as_slice()
        else {
            panic!("{ev:?}")
        };
        assert_eq!(r.recipients[0].status(), Status::Temporary);
        assert_eq!(e.reply().code(), ReplyCode::NOT_AVAILABLE);
        assert!(c.take_output().is_empty());
    }
}
