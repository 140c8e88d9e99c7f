//! Sans-IO SMTP (and LMTP) server session.
//!
//! The caller owns the socket and the clock. It feeds received bytes with
//! [`ServerSession::feed`], pulls [`Event`]s with [`ServerSession::next_event`] until it
//! returns `None`, answers the events that need an answer, and writes
//! [`ServerSession::output`] to the socket (then [`ServerSession::consume_output`]).
//!
//! `next_event` returns `None` when the input is used up **or** when the session waits for
//! the application's answer to the previous event ([`ServerSession::accept`],
//! [`ServerSession::reject`], [`ServerSession::respond`], [`ServerSession::auth_challenge`]).
//! Replies produced while pipelined input is pending are batched in the output buffer; write
//! the output whenever `next_event` returns `None` (RFC 2920: flush when the input runs dry).
//!
//! Events that need an answer: [`Event::Hello`], [`Event::MailFrom`], [`Event::RcptTo`],
//! [`Event::DataStart`], [`Event::MessageComplete`], [`Event::StartTls`], [`Event::Auth`],
//! [`Event::AuthResponse`], [`Event::Vrfy`], [`Event::Expn`]. The others are information.
//!
//! The session itself answers what needs no application decision: 500/501/502/503/504/555,
//! NOOP, HELP, RSET, QUIT, the recipient limit (452 4.5.3), the SIZE limit (552 5.3.4), DATA
//! after every RCPT failed (554), BDAT chunk acknowledgements, unadvertised commands and
//! parameters.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
//!
//! let mut config = ServerConfig::default();
//! config.hostname = "mx.example.org".into();
//! let mut s = ServerSession::new(config).expect("valid config");
//! assert!(s.output().starts_with(b"220 mx.example.org"));
//! let n = s.output().len();
//! s.consume_output(n);
//!
//! s.feed(b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
//! let mut body = Vec::new();
//! loop {
//!     let Some(event) = s.next_event() else {
//!         if s.output().ends_with(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n") {
//!             s.feed(b"Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n");
//!             continue;
//!         }
//!         break;
//!     };
//!     match event {
//!         Event::BodyChunk(chunk) => body.extend_from_slice(chunk),
//!         Event::Quit => {}
//!         _ => s.accept(), // store the message durably before accepting MessageComplete
//!     }
//! }
//! assert_eq!(body, b"Subject: hi\r\n\r\nHello\r\n");
//! assert!(s.output().ends_with(b"250 2.0.0 Message accepted\r\n221 2.0.0 Bye\r\n"));
//! assert!(s.is_closed());
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use alloc::borrow::Cow;
use core::time::Duration;
#[cfg(feature = "std")]
use std::time::Instant;

mod refusal;

use refusal::Refusals;
pub use refusal::{MAX_PENDING_REFUSALS, Refusal, RefusedCommand};

use crate::bdat::{BdatReceiver, BdatStep};
use crate::codec::{
    CommandError, DEFAULT_COMMAND_LINE_LIMIT, DEFAULT_SASL_LINE_LIMIT, Frame, LineFramer,
    parse_auth_response, parse_command,
};
use crate::data::{BareLfPolicy, DataError, DataOptions, DataReceiver, DataStep};
use crate::types::{
    AuthResponse, Body, Capability, Command, EhloReply, EnhancedStatusCode as Esc, ForwardPath,
    HeloName, Host, MailParams, Mechanism, RcptParams, Reply, ReplyCode, ReversePath, Secret, Text,
};

/// Session configuration. All fields have documented defaults ([`ServerConfig::default`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Host name in the greeting and the EHLO reply: a domain or an address literal
    /// (RFC 5321 section 4.1.2, checked with [`Host::try_from`]). Default `"localhost"`.
    pub hostname: String,
    /// Text after the host name in the 220 greeting, without control characters. Default
    /// `"ESMTP Mailbag"`
    /// (`"LMTP Mailbag"` is used in LMTP mode when left at the default).
    pub greeting: String,
    /// Largest message in octets, advertised with SIZE and enforced while streaming;
    /// `0` = unlimited. Default `10_240_000`.
    pub max_message_size: u64,
    /// Recipients accepted per transaction; more get `452 4.5.3`; nonzero (RFC 5321
    /// section 4.5.3.1.8 asks for at least 100). Default `100`.
    pub max_recipients: usize,
    /// Command line limit in octets, CRLF included; at least 512 (RFC 5321 section
    /// 4.5.3.1.4). Default `512`. The extensions advertised raise it
    /// ([`ServerConfig::command_line_limit`]).
    pub max_command_line: usize,
    /// SASL (AUTH continuation) line limit in octets; at least 512. Default `12288`
    /// (RFC 4954 section 4).
    pub max_sasl_line: usize,
    /// How long to wait for the next command or data block: the server timeout of
    /// RFC 5321 section 4.5.3.2.7 (which asks for at least 5 minutes); nonzero. Default
    /// 5 minutes. For a command it runs from the last reply: input that completes no
    /// command line does not restart it. Inside a message body every read does.
    /// At most [`MAX_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// After this many erroneous commands the session answers 421 and closes; nonzero.
    /// Default `20`.
    pub max_bad_commands: u32,
    /// After this many refused `AUTH` exchanges the session answers 421 and
    /// closes (a password guesser gets few tries per connection, as POP3's
    /// `max_auth_failures`); nonzero. Default `3`.
    pub max_auth_failures: u32,
    /// Advertise and honour PIPELINING. Default `true`.
    pub pipelining: bool,
    /// Advertise 8BITMIME (accept `BODY=8BITMIME`). Default `true`.
    pub eight_bit_mime: bool,
    /// Advertise SMTPUTF8 (needs `eight_bit_mime`). Default `true`.
    pub smtputf8: bool,
    /// Advertise SIZE. Default `true`.
    pub size: bool,
    /// Advertise ENHANCEDSTATUSCODES and put them on replies. Default `true`.
    pub enhanced_status_codes: bool,
    /// Advertise CHUNKING (BDAT). Default `true`.
    pub chunking: bool,
    /// Advertise BINARYMIME (needs `chunking`). Default `false`.
    pub binarymime: bool,
    /// Advertise DSN (accept RET, ENVID, NOTIFY, ORCPT). Default `false` (advertising it
    /// obliges the server to send RFC 3464 reports).
    pub dsn: bool,
    /// STARTTLS is available (the caller can do the handshake). Default `false`.
    pub starttls: bool,
    /// AUTH mechanisms offered; empty = AUTH off (not advertised, `AUTH` gets 502).
    /// Default empty.
    pub auth_mechanisms: Vec<Mechanism<'static>>,
    /// Offer AUTH only under TLS (before TLS, `AUTH` gets `530 5.7.0`). Default `true`.
    pub auth_requires_tls: bool,
    /// Advertise REQUIRETLS once TLS is active. Default `false`.
    pub requiretls: bool,
    /// LMTP mode (RFC 2033): LHLO instead of HELO/EHLO, one reply per recipient after data.
    /// Default `false`.
    pub lmtp: bool,
    /// Bare LF inside DATA. Default [`BareLfPolicy::Reject`].
    pub bare_lf: BareLfPolicy,
    /// The connection is TLS from the start (port 465). Default `false`.
    pub implicit_tls: bool,
    /// Text of the 221 reply to QUIT, without control characters. Default `"Bye"`.
    pub quit_text: String,
    /// A command line that is an HTTP request line or header field
    /// ([`is_http_line`](crate::http_request::is_http_line): a web page's
    /// request aimed at this port, whose body could carry SMTP commands sent
    /// from the browser's address) is answered `421 4.7.0` and the session
    /// closes, before any command of the body runs. Default `true`.
    pub close_on_http: bool,
}

/// A configuration [`ServerSession::new`] or [`ServerSession::with_greeting`] refuses.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::session::{ConfigError, ServerConfig, ServerSession};
///
/// let mut config = ServerConfig::default();
/// config.hostname = "mx_1.example".into();
/// assert_eq!(ServerSession::new(config).err(), Some(ConfigError::InvalidHostname));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `hostname` is neither a domain nor an address literal (RFC 5321 section 4.1.2).
    #[error("hostname must be a domain or an address literal")]
    InvalidHostname,
    /// A text field (`greeting`, `quit_text`) holds CR, LF or another control character,
    /// which would break the reply.
    #[error("{field} must not contain control characters")]
    InvalidText {
        /// The field.
        field: &'static str,
    },
    /// A line limit is below the RFC 5321 minimum of 512 octets (section 4.5.3.1.4).
    #[error("{field} must be at least 512 octets")]
    LineLimitTooSmall {
        /// The field: `max_command_line` or `max_sasl_line`.
        field: &'static str,
    },
    /// `idle_timeout` is longer than [`MAX_IDLE_TIMEOUT`]: its deadline
    /// might not be a time the clock can hold.
    #[error("idle_timeout must be at most {max:?}")]
    IdleTimeoutTooLong {
        /// The longest allowed.
        max: Duration,
    },
    /// A limit that must be nonzero is zero: `max_recipients`, `idle_timeout`,
    /// `max_bad_commands` or `max_auth_failures`.
    #[error("{field} must not be zero")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// The greeting given to [`ServerSession::with_greeting`] is not a 220, 421 or 554
    /// reply (RFC 5321 sections 3.1 and 4.2).
    #[error("the greeting must be a 220, 421 or 554 reply")]
    InvalidGreeting,
}

impl ServerConfig {
    /// The longest command line accepted, CRLF included: `max_command_line`
    /// plus what the parameters of the advertised extensions may add
    /// ([`MAIL_PARAMS_LINE_ALLOWANCE`], and [`DSN_LINE_ALLOWANCE`] with
    /// `dsn`), so that a command within the RFC 5321 limit plus its extension
    /// parameters is never refused as too long.
    ///
    /// ```
    /// use mailbag_smtp_proto::session::ServerConfig;
    ///
    /// let mut c = ServerConfig::default();
    /// assert_eq!(c.command_line_limit(), 512 + 64);
    /// c.dsn = true;
    /// assert_eq!(c.command_line_limit(), 512 + 64 + 500);
    /// ```
    pub fn command_line_limit(&self) -> usize {
        let dsn = if self.dsn { DSN_LINE_ALLOWANCE } else { 0 };
        self.max_command_line
            .saturating_add(MAIL_PARAMS_LINE_ALLOWANCE)
            .saturating_add(dsn)
    }

    /// Checks the configuration as [`ServerSession::new`] does.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::session::{ConfigError, ServerConfig};
    ///
    /// let mut config = ServerConfig::default();
    /// assert_eq!(config.validate(), Ok(()));
    /// config.max_command_line = 100;
    /// assert_eq!(
    ///     config.validate(),
    ///     Err(ConfigError::LineLimitTooSmall { field: "max_command_line" })
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if Host::try_from(self.hostname.as_str()).is_err() {
            return Err(ConfigError::InvalidHostname);
        }
        for (field, text) in [("greeting", &self.greeting), ("quit_text", &self.quit_text)] {
            if text.chars().any(char::is_control) {
                return Err(ConfigError::InvalidText { field });
            }
        }
        for (field, limit) in [
            ("max_command_line", self.max_command_line),
            ("max_sasl_line", self.max_sasl_line),
        ] {
            if limit < MIN_COMMAND_LINE {
                return Err(ConfigError::LineLimitTooSmall { field });
            }
        }
        if self.idle_timeout > MAX_IDLE_TIMEOUT {
            return Err(ConfigError::IdleTimeoutTooLong {
                max: MAX_IDLE_TIMEOUT,
            });
        }
        let zero = [
            ("max_recipients", self.max_recipients == 0),
            ("idle_timeout", self.idle_timeout.is_zero()),
            ("max_bad_commands", self.max_bad_commands == 0),
            ("max_auth_failures", self.max_auth_failures == 0),
        ];
        if let Some((field, _)) = zero.into_iter().find(|(_, z)| *z) {
            return Err(ConfigError::Zero { field });
        }
        Ok(())
    }
}

/// The longest [`ServerConfig::idle_timeout`]: a week. "Never" is this
/// long, and every deadline it gives is a time `Instant` can hold.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// In a message body, how much unread input [`ServerSession::wants_input`]
/// lets wait before it asks the caller to hand out what the session has
/// (64 KiB): the batch a driver reads, not a limit on the message.
pub const DATA_INPUT_BATCH: usize = 64 * 1024;

/// The smallest command line a server must accept (RFC 5321 section 4.5.3.1.4).
const MIN_COMMAND_LINE: usize = 512;

/// What DSN adds to a command line: RFC 3461 section 4 lengthens `RCPT` by 500
/// octets for `NOTIFY` and `ORCPT` (and `MAIL` by 100 for `RET` and `ENVID`).
pub const DSN_LINE_ALLOWANCE: usize = 500;

/// What the other `MAIL` parameters add to a command line: `SIZE=` 26 octets
/// (RFC 1870 section 3), `BODY=BINARYMIME` 16, ` SMTPUTF8` 9, with room to spare.
pub const MAIL_PARAMS_LINE_ALLOWANCE: usize = 64;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: "localhost".into(),
            greeting: "ESMTP Mailbag".into(),
            max_message_size: 10_240_000,
            max_recipients: 100,
            max_command_line: DEFAULT_COMMAND_LINE_LIMIT,
            max_sasl_line: DEFAULT_SASL_LINE_LIMIT,
            idle_timeout: Duration::from_secs(300),
            max_bad_commands: 20,
            max_auth_failures: 3,
            pipelining: true,
            eight_bit_mime: true,
            smtputf8: true,
            size: true,
            enhanced_status_codes: true,
            chunking: true,
            binarymime: false,
            dsn: false,
            starttls: false,
            auth_mechanisms: Vec::new(),
            auth_requires_tls: true,
            requiretls: false,
            lmtp: false,
            bare_lf: BareLfPolicy::Reject,
            implicit_tls: false,
            quit_text: "Bye".into(),
            close_on_http: true,
        }
    }
}

/// Which greeting command the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloKind {
    /// `HELO` (plain SMTP: no extensions).
    Helo,
    /// `EHLO`.
    Ehlo,
    /// `LHLO` (LMTP).
    Lhlo,
}

/// Something the application must know or decide. Borrowed from the session's input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// HELO/EHLO/LHLO. Answer: accept (sends the EHLO capabilities and resets any open
    /// transaction, RFC 5321 section 4.1.4) or reject (the state stays as it was).
    Hello {
        /// The command used.
        kind: HelloKind,
        /// The client's name.
        name: HeloName<'a>,
    },
    /// MAIL FROM, after sequence, parameter and SIZE checks. Answer.
    MailFrom {
        /// The reverse-path.
        from: ReversePath<'a>,
        /// Parameters (all advertised and known).
        params: MailParams<'a>,
    },
    /// RCPT TO, after sequence, limit and parameter checks. Answer (relay decisions here).
    RcptTo {
        /// The forward-path.
        to: ForwardPath<'a>,
        /// Parameters.
        params: RcptParams<'a>,
    },
    /// DATA or the first BDAT with at least one accepted recipient. Answer: accept (354 for
    /// DATA) or reject (a rejected BDAT chunk is read and discarded before the reply).
    DataStart,
    /// Unstuffed body octets (information).
    BodyChunk(&'a [u8]),
    /// The message failed while streaming (size or bare LF): drop what was received. The
    /// session answers at the end of the data (information).
    MessageAborted(DataError),
    /// The message is complete. Store it durably, then accept (250) or reject. In LMTP mode
    /// use [`ServerSession::respond_lmtp`] for per-recipient replies.
    MessageComplete {
        /// Body size in octets.
        size: u64,
    },
    /// RSET: the transaction is gone (information; the session answered 250).
    Reset,
    /// STARTTLS. Accept (220), write the output, do the handshake, then call
    /// [`ServerSession::tls_established`]. Or reject (e.g. 454).
    StartTls,
    /// AUTH with a supported mechanism. Answer with [`ServerSession::auth_challenge`],
    /// accept (235) or reject (535).
    Auth {
        /// The mechanism.
        mechanism: Mechanism<'a>,
        /// The initial response, if given (empty for `=`).
        initial_response: Option<Secret<'a>>,
    },
    /// A client line answering a 334 challenge. Answer like [`Event::Auth`].
    AuthResponse(Secret<'a>),
    /// The client cancelled AUTH with `*`; the session answered 501 (information).
    AuthCancelled,
    /// VRFY. Accept gives `252 2.1.5` (cannot verify, will try).
    Vrfy {
        /// The string to verify.
        target: Text<'a>,
        /// SMTPUTF8 parameter given.
        smtputf8: bool,
    },
    /// EXPN. Accept gives `252 2.0.0 Cannot EXPN list, ...`.
    Expn {
        /// The list.
        target: Text<'a>,
        /// SMTPUTF8 parameter given.
        smtputf8: bool,
    },
    /// QUIT: the session answered 221 and is closed (information).
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Hello(HelloKind),
    Mail { smtputf8: bool, binary: bool },
    Rcpt,
    DataStart,
    BdatStart { size: u64, last: bool },
    MessageComplete,
    StartTls,
    Auth,
    Vrfy,
    Expn,
}

#[derive(Debug, Clone, Copy, Default)]
struct Txn {
    smtputf8: bool,
    binary: bool,
    rcpt_ok: usize,
    rcpt_tried: usize,
    bdat_size: u64,
    bdat: bool,
}

#[derive(Debug)]
enum Mode {
    Command,
    Sasl,
    Data(DataReceiver),
    Bdat {
        rx: BdatReceiver,
        /// Reply to send after a discarded chunk.
        deferred: Option<Reply<'static>>,
        size: u64,
    },
    TlsPending,
}

/// The server session state machine. See the [module documentation](self).
///
/// Its `Debug` shows how much input waits, not what: it may hold an `AUTH`
/// line or a SASL response.
pub struct ServerSession {
    inbuf: Vec<u8>,
    st: State,
}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession")
            .field(
                "input_len",
                &(self.inbuf.len() - self.st.in_pos.min(self.inbuf.len())),
            )
            .field("st", &self.st)
            .finish()
    }
}

#[derive(Debug)]
struct State {
    cfg: ServerConfig,
    in_pos: usize,
    out: Vec<u8>,
    framer: LineFramer,
    mode: Mode,
    pending: Option<Pending>,
    helo: Option<HelloKind>,
    tls: bool,
    authenticated: bool,
    txn: Option<Txn>,
    bad_commands: u32,
    auth_failures: u32,
    closed: bool,
    refusing: bool,
    /// The over-long line being discarded began with the BDAT keyword.
    overlong_bdat: bool,
    /// The command being answered, for [`Refusal`]s.
    command: RefusedCommand,
    /// An application's answer is being written (not the session's own).
    answering: bool,
    /// The session's own refusals, not taken yet.
    refusals: Refusals,
}

const fn r(code: u16, esc: (u8, u16, u16), text: &'static str) -> (u16, Esc, &'static str) {
    (code, Esc::c(esc.0, esc.1, esc.2), text)
}

const NEED_HELO: (u16, Esc, &str) = r(503, (5, 5, 1), "Send HELO/EHLO first");
const NEED_MAIL: (u16, Esc, &str) = r(503, (5, 5, 1), "Need MAIL command");
const NEED_RCPT: (u16, Esc, &str) = r(503, (5, 5, 1), "Need RCPT command");
const NESTED_MAIL: (u16, Esc, &str) = r(503, (5, 5, 1), "Nested MAIL command");
const NO_VALID_RCPT: (u16, Esc, &str) = r(554, (5, 5, 1), "no valid recipients given");
const TOO_MANY_RCPT: (u16, Esc, &str) = r(452, (4, 5, 3), "Too many recipients");
const TOO_BIG: (u16, Esc, &str) = r(552, (5, 3, 4), "Message size exceeds fixed limit");
const PARAM_UNKNOWN: (u16, Esc, &str) = r(555, (5, 5, 4), "Unsupported parameter");
const NOT_IMPL: (u16, Esc, &str) = r(502, (5, 5, 1), "Command not implemented");
const OK: (u16, Esc, &str) = r(250, (2, 0, 0), "OK");
/// An over-long SASL response line (RFC 4954 section 4); a command line's is
/// 500 5.5.2 ([`CommandError::LineTooLong`]: RFC 3463 has no code of its own).
const SASL_LINE_TOO_LONG: (u16, Esc, &str) =
    r(500, (5, 5, 6), "Authentication Exchange line is too long");
/// A non-ASCII RCPT in a transaction without SMTPUTF8: 553 (RFC 6530 section
/// 7.1; MAIL's is 550, [`CommandError::NonAscii`]).
const RCPT_NON_ASCII: (u16, Esc, &str) = r(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8");

/// Whether `line` is a BDAT command (keyword in any case, then anything but a letter or
/// digit: a space, a TAB, the end), whatever its arguments and however long: a line that
/// may carry a chunk.
/// Whether `line`'s command word is `verb` (any letter case).
fn has_verb(line: &[u8], verb: &[u8]) -> bool {
    line.get(..verb.len())
        .is_some_and(|k| k.eq_ignore_ascii_case(verb))
        && !line.get(verb.len()).is_some_and(u8::is_ascii_alphanumeric)
}

fn is_bdat_line(line: &[u8]) -> bool {
    has_verb(line, b"BDAT")
}

fn fixed(t: (u16, Esc, &'static str)) -> Reply<'static> {
    Reply::fixed(t.0, t.1, t.2)
}

impl ServerSession {
    /// A new session; the 220 greeting is already in the output.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is not usable ([`ServerConfig::validate`]).
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let lmtp_default = config.lmtp && config.greeting == "ESMTP Mailbag";
        let text = format!(
            "{} {}",
            config.hostname,
            if lmtp_default {
                "LMTP Mailbag"
            } else {
                config.greeting.as_str()
            }
        );
        let greeting = Reply::new(ReplyCode::READY, None, text)
            .map_err(|_| ConfigError::InvalidText { field: "greeting" })?;
        Self::with_greeting(config, greeting)
    }

    /// A new session with a custom greeting: `220`, or `554` for "no service" (every
    /// command but QUIT is answered 503, RFC 5321 section 3.1), or `421`, which closes at
    /// once.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidGreeting`] for another reply code, or the configuration's
    /// [`ConfigError`] ([`ServerConfig::validate`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::session::{ConfigError, ServerConfig, ServerSession};
    /// use mailbag_smtp_proto::types::{Reply, ReplyCode};
    ///
    /// let busy = Reply::new(ReplyCode::NOT_AVAILABLE, None, "mx.example busy")?;
    /// let mut s = ServerSession::with_greeting(ServerConfig::default(), busy)?;
    /// assert_eq!(s.take_output(), b"421 mx.example busy\r\n");
    /// assert!(s.is_closed());
    ///
    /// let ok = Reply::new(ReplyCode::OK, None, "hello")?;
    /// assert_eq!(
    ///     ServerSession::with_greeting(ServerConfig::default(), ok).err(),
    ///     Some(ConfigError::InvalidGreeting)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_greeting(config: ServerConfig, greeting: Reply<'_>) -> Result<Self, ConfigError> {
        config.validate()?;
        if !matches!(greeting.code().get(), 220 | 421 | 554) {
            return Err(ConfigError::InvalidGreeting);
        }
        let framer = LineFramer::new(config.command_line_limit());
        let tls = config.implicit_tls;
        let mut st = State {
            cfg: config,
            in_pos: 0,
            out: Vec::with_capacity(512),
            framer,
            mode: Mode::Command,
            pending: None,
            helo: None,
            tls,
            authenticated: false,
            txn: None,
            bad_commands: 0,
            auth_failures: 0,
            closed: false,
            overlong_bdat: false,
            refusing: false,
            command: RefusedCommand::Other,
            answering: false,
            refusals: Refusals::default(),
        };
        greeting.encode(&mut st.out);
        match greeting.code().get() {
            554 => st.refusing = true,
            421 => st.closed = true,
            _ => {}
        }
        Ok(ServerSession {
            inbuf: Vec::new(), // grows with the first input: idle connections hold none
            st,
        })
    }

    /// Adds received bytes. Ignored once closed, and while STARTTLS is waiting for the
    /// handshake (plaintext after STARTTLS is discarded, CVE-2011-0411).
    ///
    /// To bound memory, read from the socket only while [`ServerSession::wants_input`].
    pub fn feed(&mut self, data: &[u8]) {
        if self.st.closed || matches!(self.st.mode, Mode::TlsPending) {
            return;
        }
        if self.st.in_pos > 0 {
            self.inbuf.drain(..self.st.in_pos);
            self.st.in_pos = 0;
        }
        self.inbuf.extend_from_slice(data);
    }

    /// Whether the session can use more input now: not closed, not waiting for an answer,
    /// and less than one command line (or [`DATA_INPUT_BATCH`] in a message body)
    /// buffered.
    pub fn wants_input(&self) -> bool {
        let buffered = self.inbuf.len() - self.st.in_pos;
        let limit = match self.st.mode {
            Mode::Command => self.st.cfg.command_line_limit(),
            Mode::Sasl => self.st.cfg.max_sasl_line,
            Mode::Data(_) | Mode::Bdat { .. } => DATA_INPUT_BATCH,
            Mode::TlsPending => return false,
        };
        !self.st.closed && self.st.pending.is_none() && buffered < limit
    }

    /// The next event, or `None` when more input is needed or an answer is awaited.
    #[must_use]
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        let ServerSession { inbuf, st } = self;
        st.next(inbuf)
    }

    /// Output to write to the client.
    pub fn output(&self) -> &[u8] {
        &self.st.out
    }

    /// Marks `n` octets of the output as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.st.out.len());
        self.st.out.drain(..n);
    }

    /// Takes all pending output.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.st.out)
    }

    /// Whether the connection should be closed once the output is written.
    pub fn is_closed(&self) -> bool {
        self.st.closed
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.st.tls
    }

    /// Whether an AUTH exchange succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.st.authenticated
    }

    /// Whether STARTTLS was accepted and the caller must now do the TLS handshake.
    pub fn awaiting_tls(&self) -> bool {
        matches!(self.st.mode, Mode::TlsPending)
    }

    /// Recipients accepted in the current transaction.
    pub fn accepted_recipients(&self) -> usize {
        self.st.txn.map_or(0, |t| t.rcpt_ok)
    }

    /// How long the session waits for the client from the last reply, or inside a message
    /// body from the last read ([`ServerConfig::idle_timeout`]). `None` while it waits for
    /// the application, for the TLS handshake, or is closed. The clock-free form of
    /// [`deadline`](Self::deadline).
    pub fn idle_timeout(&self) -> Option<Duration> {
        if self.st.closed || self.st.pending.is_some() || self.awaiting_tls() {
            return None;
        }
        Some(self.st.cfg.idle_timeout)
    }

    /// When the session gives up waiting for the client, given the time of the last reply
    /// (inside a message body, of the last read).
    /// `None` while it waits for the application, for the TLS handshake, or is closed.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        self.idle_timeout().and_then(|d| now.checked_add(d))
    }

    /// The deadline passed: answers `421 4.4.2` and closes.
    pub fn timed_out(&mut self) {
        if !self.st.closed {
            self.st
                .write(&fixed(r(421, (4, 4, 2), "Timeout, closing connection")));
            self.st.closed = true;
        }
    }

    /// Server shutdown: answers `421 4.3.2` and closes.
    pub fn shutdown(&mut self) {
        if !self.st.closed {
            self.st.write(&fixed(r(
                421,
                (4, 3, 2),
                "Service shutting down, closing connection",
            )));
            self.st.closed = true;
        }
    }

    /// The TLS handshake after STARTTLS (or a caller-initiated upgrade) succeeded: the
    /// session forgets the greeting, transaction and any buffered plaintext (RFC 3207
    /// section 4.2) and waits for a new EHLO.
    pub fn tls_established(&mut self) {
        self.inbuf.clear();
        let st = &mut self.st;
        st.in_pos = 0;
        st.tls = true;
        st.helo = None;
        st.txn = None;
        st.authenticated = false;
        st.pending = None;
        st.mode = Mode::Command;
        st.framer = LineFramer::new(st.cfg.command_line_limit());
    }

    /// Accepts the pending event with its default positive reply.
    pub fn accept(&mut self) {
        let Some(p) = self.st.pending else { return };
        let reply = match p {
            Pending::Hello(kind) => self.st.ehlo_reply(kind),
            Pending::Mail { .. } => fixed(r(250, (2, 1, 0), "Sender OK")),
            Pending::Rcpt => fixed(r(250, (2, 1, 5), "Recipient OK")),
            Pending::DataStart => Reply::unchecked(
                ReplyCode::START_DATA,
                None,
                vec![Cow::Borrowed("Start mail input; end with <CRLF>.<CRLF>")],
            ),
            Pending::BdatStart { .. } => fixed(OK),
            Pending::MessageComplete => fixed(r(250, (2, 0, 0), "Message accepted")),
            Pending::StartTls => fixed(r(220, (2, 0, 0), "Ready to start TLS")),
            Pending::Auth => fixed(r(235, (2, 7, 0), "Authentication successful")),
            Pending::Vrfy => fixed(r(
                252,
                (2, 0, 0),
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Pending::Expn => fixed(r(
                252,
                (2, 0, 0),
                "Cannot EXPN list, but will accept message and attempt delivery",
            )),
        };
        self.respond(reply);
    }

    /// Rejects the pending event with `reply` (a 4xx or 5xx reply).
    pub fn reject(&mut self, reply: Reply<'_>) {
        self.respond(reply);
    }

    /// Answers the pending event with `reply`: a 2xx/3xx reply has the effect of acceptance
    /// (e.g. `251` for RCPT), a 4xx/5xx reply the effect of rejection.
    pub fn respond(&mut self, reply: Reply<'_>) {
        self.st.answering = true;
        self.answer(reply);
        self.st.answering = false;
    }

    /// The commands the session refused on its own since the last call (a
    /// syntax error, a command out of sequence, the recipient or size limit,
    /// `DATA` after every `RCPT` failed), oldest first: an application's own
    /// rejections are not among them. At most [`MAX_PENDING_REFUSALS`] are
    /// kept between calls; the tokio driver (feature `tokio`) takes them after
    /// each read and hands them to its handler's `refused`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::session::{RefusedCommand, ServerConfig, ServerSession};
    ///
    /// let mut config = ServerConfig::default();
    /// config.hostname = "mx.example.org".into();
    /// config.max_recipients = 1;
    /// let mut s = ServerSession::new(config)?;
    /// s.feed(b"EHLO c\r\nMAIL FROM:<a@example.com> SIZE=99999999999\r\n");
    /// s.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
    /// s.feed(b"RCPT TO:<c@example.org>\r\nXYZZY\r\n");
    /// while let Some(_) = s.next_event() {
    ///     s.accept();
    /// }
    /// let refused: Vec<_> = s
    ///     .take_refusals()
    ///     .into_iter()
    ///     .map(|r| (r.command, r.reply.code().get()))
    ///     .collect();
    /// assert_eq!(
    ///     refused,
    ///     [(RefusedCommand::Mail, 552), (RefusedCommand::Rcpt, 452), (RefusedCommand::Other, 500)]
    /// );
    /// assert!(s.take_refusals().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        self.st.refusals.take()
    }

    fn answer(&mut self, reply: Reply<'_>) {
        let Some(p) = self.st.pending.take() else {
            return;
        };
        let ok = reply.code().is_positive();
        let closing = reply.code() == ReplyCode::NOT_AVAILABLE;
        let st = &mut self.st;
        match p {
            Pending::Hello(kind) => {
                if ok {
                    // A new EHLO is an implicit RSET; a refused one changes nothing.
                    st.helo = Some(kind);
                    st.txn = None;
                }
                st.write(&reply);
            }
            Pending::Mail { smtputf8, binary } => {
                if ok {
                    st.txn = Some(Txn {
                        smtputf8,
                        binary,
                        ..Txn::default()
                    });
                }
                st.write_counted(&reply, ok);
            }
            Pending::Rcpt => {
                if let Some(t) = &mut st.txn {
                    t.rcpt_tried += 1;
                    if ok {
                        t.rcpt_ok += 1;
                    }
                }
                st.write_counted(&reply, ok);
            }
            Pending::DataStart => {
                if ok {
                    st.mode = Mode::Data(DataReceiver::new(st.data_options()));
                }
                st.write(&reply);
            }
            Pending::BdatStart { size, last } => {
                if ok {
                    if let Some(t) = &mut st.txn {
                        t.bdat = true;
                    }
                    st.start_bdat(size, last);
                } else {
                    st.txn = None;
                    st.mode = Mode::Bdat {
                        rx: BdatReceiver::discard(size, last),
                        deferred: Some(reply.into_owned()),
                        size,
                    };
                }
            }
            Pending::MessageComplete => {
                let n = if st.cfg.lmtp {
                    st.txn.map_or(1, |t| t.rcpt_ok.max(1))
                } else {
                    1
                };
                for _ in 0..n {
                    st.write(&reply);
                }
                st.txn = None;
            }
            Pending::StartTls => {
                st.write(&reply);
                if ok {
                    st.mode = Mode::TlsPending;
                }
            }
            Pending::Auth => {
                if ok {
                    st.authenticated = true;
                }
                st.mode = Mode::Command;
                st.framer.set_max_len(st.cfg.command_line_limit());
                st.write(&reply);
                if !ok && reply.code().get() >= 500 {
                    st.auth_failures = st.auth_failures.saturating_add(1);
                    if st.auth_failures >= st.cfg.max_auth_failures {
                        st.close_421("Too many authentication failures, closing connection");
                    }
                }
            }
            Pending::Vrfy | Pending::Expn => st.write(&reply),
        }
        if closing {
            st.closed = true;
        }
    }

    /// LMTP: answers [`Event::MessageComplete`] with one reply per accepted recipient, in
    /// RCPT order. Missing replies are filled with `451 4.3.0`; extra ones are ignored.
    pub fn respond_lmtp(&mut self, replies: &[Reply<'_>]) {
        if self.st.pending != Some(Pending::MessageComplete) {
            return;
        }
        self.st.pending = None;
        let n = self.st.txn.map_or(0, |t| t.rcpt_ok);
        self.st.answering = true;
        for i in 0..n {
            match replies.get(i) {
                Some(r) => self.st.write(r),
                None => self
                    .st
                    .write(&fixed(r(451, (4, 3, 0), "Local error in processing"))),
            }
        }
        self.st.answering = false;
        self.st.txn = None;
    }

    /// Answers [`Event::Auth`] / [`Event::AuthResponse`] with a `334` challenge (`data` is
    /// base64-encoded by the session) and waits for the client's next line.
    pub fn auth_challenge(&mut self, data: &[u8]) {
        if self.st.pending != Some(Pending::Auth) {
            return;
        }
        self.st.pending = None;
        let text = Secret::from_bytes(data);
        let mut line = b"334 ".to_vec();
        line.extend_from_slice(text.expose().as_bytes());
        line.extend_from_slice(b"\r\n");
        self.st.out.extend_from_slice(&line);
        self.st.mode = Mode::Sasl;
        self.st.framer.set_max_len(self.st.cfg.max_sasl_line);
    }
}

impl State {
    fn data_options(&self) -> DataOptions {
        DataOptions {
            max_size: self.cfg.max_message_size,
            bare_lf: self.cfg.bare_lf,
        }
    }

    /// Writes a reply; a 4xx or 5xx one the session sends on its own (not an
    /// application's answer) is kept as a [`Refusal`].
    fn write(&mut self, reply: &Reply<'_>) {
        if !self.answering && reply.code().get() >= 400 {
            self.refusals.push(self.command, reply);
        }
        self.emit(reply);
    }

    /// Writes a reply, with its enhanced code only if they are offered.
    fn emit(&mut self, reply: &Reply<'_>) {
        if self.cfg.enhanced_status_codes || reply.enhanced().is_none() {
            reply.encode(&mut self.out);
        } else {
            reply.clone().without_enhanced().encode(&mut self.out);
        }
    }

    /// Writes a reply and counts errors; too many errors close the session with 421.
    fn write_counted(&mut self, reply: &Reply<'_>, ok: bool) {
        self.write(reply);
        if !ok && reply.code().get() >= 500 {
            self.count_error();
        }
    }

    fn error(&mut self, reply: &Reply<'_>) {
        self.write(reply);
        self.count_error();
    }

    /// A BDAT we cannot parse (or an over-long BDAT line) cannot be skipped: its size is
    /// unknown, so the chunk's octets would be read as commands. Closing is the only safe
    /// answer (Postfix answers 521 too).
    fn close_bdat_unparsable(&mut self) {
        self.write(&fixed(r(
            521,
            (5, 5, 4),
            "Syntax: BDAT size [LAST]; the chunk cannot be skipped, closing connection",
        )));
        self.closed = true;
    }

    fn count_error(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands >= self.cfg.max_bad_commands {
            self.close_421("Too many errors, closing connection");
        }
    }

    /// `421 4.7.0 <text>` and the end of the session (once).
    fn close_421(&mut self, text: &'static str) {
        if !self.closed {
            // The end of the session, not a refusal of a command.
            self.emit(&fixed(r(421, (4, 7, 0), text)));
            self.closed = true;
        }
    }

    fn write_quit(&mut self) {
        let text = Cow::Owned(self.cfg.quit_text.clone());
        self.write(&Reply::unchecked(
            ReplyCode::CLOSING,
            Some(Esc::c(2, 0, 0)),
            vec![text],
        ));
    }

    fn auth_offered(&self) -> bool {
        !self.cfg.auth_mechanisms.is_empty() && (self.tls || !self.cfg.auth_requires_tls)
    }

    fn capabilities(&self) -> Vec<Capability<'static>> {
        let c = &self.cfg;
        let mut caps = Vec::new();
        if c.pipelining {
            caps.push(Capability::Pipelining);
        }
        if c.size {
            caps.push(Capability::Size(Some(c.max_message_size)));
        }
        if c.eight_bit_mime {
            caps.push(Capability::EightBitMime);
            if c.smtputf8 {
                caps.push(Capability::SmtpUtf8);
            }
        }
        if c.enhanced_status_codes {
            caps.push(Capability::EnhancedStatusCodes);
        }
        if c.chunking {
            caps.push(Capability::Chunking);
            if c.binarymime {
                caps.push(Capability::BinaryMime);
            }
        }
        if c.dsn {
            caps.push(Capability::Dsn);
        }
        if c.starttls && !self.tls {
            caps.push(Capability::StartTls);
        }
        if self.auth_offered() {
            caps.push(Capability::Auth(c.auth_mechanisms.clone()));
        }
        if c.requiretls && self.tls {
            caps.push(Capability::RequireTls);
        }
        caps.push(Capability::Help);
        caps
    }

    fn ehlo_reply(&self, kind: HelloKind) -> Reply<'static> {
        if kind == HelloKind::Helo {
            return Reply::unchecked(
                ReplyCode::OK,
                None,
                vec![Cow::Owned(self.cfg.hostname.clone())],
            );
        }
        let ehlo = EhloReply {
            greeting: Cow::Borrowed(self.cfg.hostname.as_str()),
            capabilities: self.capabilities(),
        };
        // The host name is checked with the configuration and the
        // capabilities are made here: no control character in them.
        ehlo.to_reply().unwrap_or_else(|_| {
            Reply::unchecked(
                ReplyCode::OK,
                None,
                vec![Cow::Owned(self.cfg.hostname.clone())],
            )
        })
    }

    fn start_bdat(&mut self, size: u64, last: bool) {
        let total = self.txn.map_or(0, |t| t.bdat_size).saturating_add(size);
        if self.cfg.max_message_size != 0 && total > self.cfg.max_message_size {
            self.txn = None;
            self.mode = Mode::Bdat {
                rx: BdatReceiver::discard(size, last),
                deferred: Some(fixed(TOO_BIG)),
                size,
            };
            return;
        }
        if let Some(t) = &mut self.txn {
            t.bdat_size = total;
        }
        self.mode = Mode::Bdat {
            rx: BdatReceiver::new(size, last),
            deferred: None,
            size,
        };
    }

    fn discard_bdat(&mut self, size: u64, last: bool, reply: Reply<'static>) {
        self.mode = Mode::Bdat {
            rx: BdatReceiver::discard(size, last),
            deferred: Some(reply),
            size,
        };
    }

    fn next<'a>(&mut self, inbuf: &'a [u8]) -> Option<Event<'a>> {
        loop {
            if self.closed || self.pending.is_some() {
                return None;
            }
            let input = &inbuf[self.in_pos..];
            match &mut self.mode {
                Mode::TlsPending => {
                    self.in_pos = inbuf.len();
                    return None;
                }
                Mode::Data(rx) => {
                    let (n, step) = rx.step(input);
                    self.in_pos += n;
                    match step {
                        DataStep::Body(b) => return Some(Event::BodyChunk(b)),
                        DataStep::NeedMore => return None,
                        DataStep::Aborted(e) => return Some(Event::MessageAborted(e)),
                        DataStep::End(Ok(size)) => {
                            self.mode = Mode::Command;
                            self.pending = Some(Pending::MessageComplete);
                            return Some(Event::MessageComplete { size });
                        }
                        DataStep::End(Err(e)) => {
                            self.mode = Mode::Command;
                            self.command = RefusedCommand::Message;
                            let reply = e.reply();
                            // LMTP answers once per accepted recipient.
                            let n = if self.cfg.lmtp {
                                self.txn.map_or(1, |t| t.rcpt_ok.max(1))
                            } else {
                                1
                            };
                            self.txn = None;
                            for _ in 0..n {
                                self.write(&reply);
                            }
                        }
                    }
                }
                Mode::Bdat { rx, deferred, size } => {
                    let (n, step) = rx.step(input);
                    self.in_pos += n;
                    match step {
                        BdatStep::Body(b) => return Some(Event::BodyChunk(b)),
                        BdatStep::NeedMore => return None,
                        BdatStep::ChunkEnd { last } => {
                            let size = *size;
                            let deferred = deferred.take();
                            self.mode = Mode::Command;
                            match deferred {
                                Some(reply) => {
                                    let aborted = reply.code() == ReplyCode::EXCEEDED_STORAGE
                                        && self.txn.is_none();
                                    if aborted {
                                        self.command = RefusedCommand::Message;
                                    }
                                    self.write(&reply);
                                    if aborted {
                                        return Some(Event::MessageAborted(DataError::TooBig));
                                    }
                                }
                                None if last => {
                                    let total = self.txn.map_or(size, |t| t.bdat_size);
                                    self.pending = Some(Pending::MessageComplete);
                                    return Some(Event::MessageComplete { size: total });
                                }
                                None => {
                                    let text = format!("{size} octets received");
                                    self.write(&Reply::unchecked(
                                        ReplyCode::OK,
                                        Some(Esc::c(2, 0, 0)),
                                        vec![Cow::Owned(text)],
                                    ));
                                }
                            }
                        }
                    }
                }
                Mode::Command | Mode::Sasl => {
                    let sasl = matches!(self.mode, Mode::Sasl);
                    // The start of an over-long line is seen only in the call that begins
                    // discarding it: remember whether it was a BDAT.
                    let starts_bdat = !sasl && !self.framer.is_discarding() && is_bdat_line(input);
                    match self.framer.frame(input) {
                        Frame::Incomplete { consumed } => {
                            if consumed > 0 && starts_bdat {
                                self.overlong_bdat = true;
                            }
                            self.in_pos += consumed;
                            return None;
                        }
                        Frame::TooLong { consumed } => {
                            self.in_pos += consumed;
                            let bdat = core::mem::take(&mut self.overlong_bdat) || starts_bdat;
                            self.command = if bdat {
                                RefusedCommand::Data
                            } else {
                                RefusedCommand::Other
                            };
                            if sasl {
                                self.mode = Mode::Command;
                                self.framer.set_max_len(self.cfg.command_line_limit());
                            }
                            if bdat {
                                self.close_bdat_unparsable();
                                return None;
                            }
                            if sasl {
                                self.error(&fixed(SASL_LINE_TOO_LONG));
                            } else {
                                self.error(&CommandError::LineTooLong.reply());
                            }
                        }
                        Frame::Line { line, consumed } => {
                            let start = self.in_pos;
                            self.in_pos += consumed;
                            let line = &inbuf[start + line.start..start + line.end];
                            let ev = if sasl {
                                self.sasl_line(line)
                            } else {
                                self.command_line(line)
                            };
                            if ev.is_some() {
                                return ev;
                            }
                        }
                    }
                }
            }
        }
    }

    fn sasl_line<'a>(&mut self, line: &'a [u8]) -> Option<Event<'a>> {
        self.command = RefusedCommand::Other;
        self.mode = Mode::Command;
        self.framer.set_max_len(self.cfg.command_line_limit());
        match parse_auth_response(line) {
            Ok(AuthResponse::Data(s)) => {
                self.pending = Some(Pending::Auth);
                Some(Event::AuthResponse(s))
            }
            Ok(AuthResponse::Cancel) => {
                self.write(&fixed(r(501, (5, 7, 0), "Authentication cancelled")));
                Some(Event::AuthCancelled)
            }
            Err(_) => {
                self.error(&fixed(r(501, (5, 5, 2), "Invalid base64 data")));
                None
            }
        }
    }

    fn command_line<'a>(&mut self, line: &'a [u8]) -> Option<Event<'a>> {
        self.command = RefusedCommand::of_line(line);
        if self.cfg.close_on_http && crate::http_request::is_http_line(line) {
            self.close_421("Not an SMTP command (an HTTP request or a header field): closing");
            return None;
        }
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                // With AUTH off every AUTH line is the command that is not
                // implemented, whatever its arguments (`AUTH` alone too).
                if self.cfg.auth_mechanisms.is_empty() && !self.refusing && has_verb(line, b"AUTH")
                {
                    self.error(&fixed(NOT_IMPL));
                    return None;
                }
                if is_bdat_line(line) {
                    self.close_bdat_unparsable();
                } else if self.refusing {
                    self.error(&fixed(r(503, (5, 5, 1), "No service")));
                } else {
                    self.error(&e.reply());
                }
                return None;
            }
        };
        if self.refusing {
            if cmd == Command::Quit {
                self.write_quit();
                self.closed = true;
                return Some(Event::Quit);
            }
            if let Command::Bdat { size, last } = cmd {
                self.discard_bdat(size, last, fixed(r(503, (5, 5, 1), "No service")));
                return None;
            }
            self.error(&fixed(r(503, (5, 5, 1), "No service")));
            return None;
        }
        match cmd {
            Command::Ehlo(name) | Command::Helo(name) | Command::Lhlo(name) => {
                let kind = match line.get(..1) {
                    Some(b"E" | b"e") => HelloKind::Ehlo,
                    Some(b"H" | b"h") => HelloKind::Helo,
                    _ => HelloKind::Lhlo,
                };
                if self.cfg.lmtp != (kind == HelloKind::Lhlo) {
                    self.error(&fixed(r(
                        500,
                        (5, 5, 1),
                        "Syntax error, command unrecognized",
                    )));
                    return None;
                }
                self.pending = Some(Pending::Hello(kind));
                Some(Event::Hello { kind, name })
            }
            Command::Mail { from, params } => {
                if self.helo.is_none() {
                    self.error(&fixed(NEED_HELO));
                    return None;
                }
                if self.txn.is_some() {
                    self.error(&fixed(NESTED_MAIL));
                    return None;
                }
                if !self.mail_params_ok(&params) {
                    self.error(&fixed(PARAM_UNKNOWN));
                    return None;
                }
                if let Some(size) = params.size
                    && self.cfg.max_message_size != 0
                    && size > self.cfg.max_message_size
                {
                    self.error(&fixed(TOO_BIG));
                    return None;
                }
                self.pending = Some(Pending::Mail {
                    smtputf8: params.smtputf8,
                    binary: params.body == Some(Body::BinaryMime),
                });
                Some(Event::MailFrom { from, params })
            }
            Command::Rcpt { to, params } => {
                let Some(txn) = self.txn else {
                    self.error(&fixed(NEED_MAIL));
                    return None;
                };
                // NOTIFY and ORCPT only where DSN was advertised: in EHLO's reply.
                let dsn = self.cfg.dsn && self.helo != Some(HelloKind::Helo);
                if !params.unknown.is_empty()
                    || (!dsn && (params.notify.is_some() || params.orcpt.is_some()))
                {
                    self.error(&fixed(PARAM_UNKNOWN));
                    return None;
                }
                if !to.is_ascii() && !txn.smtputf8 {
                    self.error(&fixed(RCPT_NON_ASCII));
                    return None;
                }
                if txn.rcpt_ok >= self.cfg.max_recipients {
                    if let Some(t) = &mut self.txn {
                        t.rcpt_tried += 1;
                    }
                    self.write(&fixed(TOO_MANY_RCPT));
                    return None;
                }
                self.pending = Some(Pending::Rcpt);
                Some(Event::RcptTo { to, params })
            }
            Command::Data => {
                let Some(txn) = self.txn else {
                    self.error(&fixed(NEED_MAIL));
                    return None;
                };
                if txn.binary || txn.bdat {
                    self.error(&fixed(r(503, (5, 5, 1), "DATA not allowed here, use BDAT")));
                    return None;
                }
                if txn.rcpt_ok == 0 {
                    let e = if txn.rcpt_tried > 0 {
                        NO_VALID_RCPT
                    } else {
                        NEED_RCPT
                    };
                    self.error(&fixed(e));
                    return None;
                }
                self.pending = Some(Pending::DataStart);
                Some(Event::DataStart)
            }
            Command::Bdat { size, last } => {
                // CHUNKING exists only where EHLO's reply offered it: not
                // after HELO (RFC 3030 section 2; the chunk is read and dropped,
                // so that its octets are never taken as commands).
                if !self.cfg.chunking || self.helo == Some(HelloKind::Helo) {
                    self.discard_bdat(size, last, fixed(NOT_IMPL));
                    self.count_error();
                    return None;
                }
                let reply = match self.txn {
                    None => Some(fixed(NEED_MAIL)),
                    Some(t) if t.rcpt_ok == 0 && t.rcpt_tried > 0 => Some(fixed(NO_VALID_RCPT)),
                    Some(t) if t.rcpt_ok == 0 => Some(fixed(NEED_RCPT)),
                    Some(_) => None,
                };
                if let Some(reply) = reply {
                    self.discard_bdat(size, last, reply);
                    return None;
                }
                if self.txn.is_some_and(|t| t.bdat) {
                    self.start_bdat(size, last);
                    return None;
                }
                self.pending = Some(Pending::BdatStart { size, last });
                Some(Event::DataStart)
            }
            Command::Rset => {
                self.txn = None;
                self.write(&fixed(OK));
                Some(Event::Reset)
            }
            Command::Noop(_) => {
                self.write(&fixed(OK));
                None
            }
            Command::Help(_) => {
                self.write(&fixed(r(
                    214,
                    (2, 0, 0),
                    "See https://www.rfc-editor.org/rfc/rfc5321",
                )));
                None
            }
            Command::Vrfy { target, smtputf8 } => {
                self.pending = Some(Pending::Vrfy);
                Some(Event::Vrfy { target, smtputf8 })
            }
            Command::Expn { target, smtputf8 } => {
                self.pending = Some(Pending::Expn);
                Some(Event::Expn { target, smtputf8 })
            }
            Command::Quit => {
                self.write_quit();
                self.closed = true;
                Some(Event::Quit)
            }
            Command::StartTls => {
                // Also on an implicit-TLS connection (465), where STARTTLS
                // is not offered: the same answer as after a STARTTLS.
                if self.tls {
                    self.error(&fixed(r(503, (5, 5, 1), "TLS already active")));
                    return None;
                }
                if !self.cfg.starttls {
                    self.error(&fixed(NOT_IMPL));
                    return None;
                }
                self.pending = Some(Pending::StartTls);
                Some(Event::StartTls)
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                if self.cfg.auth_mechanisms.is_empty() {
                    self.error(&fixed(NOT_IMPL));
                    return None;
                }
                if !self.auth_offered() {
                    self.error(&fixed(r(
                        530,
                        (5, 7, 0),
                        "Must issue a STARTTLS command first",
                    )));
                    return None;
                }
                if self.helo.is_none() {
                    self.error(&fixed(NEED_HELO));
                    return None;
                }
                if self.authenticated {
                    self.error(&fixed(r(503, (5, 5, 1), "Already authenticated")));
                    return None;
                }
                if self.txn.is_some() {
                    self.error(&fixed(r(
                        503,
                        (5, 5, 1),
                        "AUTH not allowed during a transaction",
                    )));
                    return None;
                }
                if !self.cfg.auth_mechanisms.contains(&mechanism) {
                    self.error(&fixed(r(
                        504,
                        (5, 5, 4),
                        "Unrecognized authentication type",
                    )));
                    return None;
                }
                self.pending = Some(Pending::Auth);
                Some(Event::Auth {
                    mechanism,
                    initial_response,
                })
            }
        }
    }

    /// Whether every MAIL parameter is known and advertised.
    fn mail_params_ok(&self, p: &MailParams<'_>) -> bool {
        let c = &self.cfg;
        let esmtp = self.helo != Some(HelloKind::Helo);
        let any = p.size.is_some()
            || p.body.is_some()
            || p.smtputf8
            || p.ret.is_some()
            || p.envid.is_some()
            || p.auth.is_some()
            || p.requiretls
            || p.mt_priority.is_some()
            || p.by.is_some()
            || p.hold.is_some()
            || !p.unknown.is_empty();
        if !any {
            return true;
        }
        esmtp
            && p.unknown.is_empty()
            && (p.size.is_none() || c.size)
            && match p.body {
                None | Some(Body::SevenBit) => true,
                Some(Body::EightBitMime) => c.eight_bit_mime,
                Some(Body::BinaryMime) => c.binarymime && c.chunking,
            }
            && (!p.smtputf8 || (c.smtputf8 && c.eight_bit_mime))
            && (c.dsn || (p.ret.is_none() && p.envid.is_none()))
            && (p.auth.is_none() || self.auth_offered())
            && (!p.requiretls || (c.requiretls && self.tls))
            && p.mt_priority.is_none()
            && p.by.is_none()
            && p.hold.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    fn drive(s: &mut ServerSession) -> Vec<String> {
        let mut names = Vec::new();
        while let Some(ev) = s.next_event() {
            let name = format!("{ev:?}");
            let needs = !matches!(
                ev,
                Event::BodyChunk(_)
                    | Event::Reset
                    | Event::Quit
                    | Event::MessageAborted(_)
                    | Event::AuthCancelled
            );
            names.push(name);
            if needs {
                s.accept();
            }
        }
        names
    }

    fn session() -> ServerSession {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        let _ = s.take_output();
        s
    }

    /// The session's own refusals are kept for the application's logs and
    /// metrics (a probe's metric saw none of them); the application's own
    /// rejections and the 421 that ends a session are not among them.
    #[test]
    fn refusals_are_the_sessions_own() {
        let cfg = ServerConfig {
            max_message_size: 10,
            max_bad_commands: 3,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        s.feed(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
        while let Some(ev) = s.next_event() {
            if matches!(ev, Event::RcptTo { .. }) {
                s.reject(Reply::fixed(550, Esc::c(5, 1, 1), "no such user"));
            } else {
                s.accept();
            }
        }
        assert!(s.take_refusals().is_empty(), "the application's 550");
        s.feed(b"DATA\r\nRCPT TO:<c@example.org>\r\nDATA\r\n");
        s.feed(b"more than ten octets\r\n.\r\nBOGUS\r\nBOGUS\r\n");
        drive(&mut s);
        let got: Vec<_> = s
            .take_refusals()
            .into_iter()
            .map(|r| (r.command.as_str(), r.reply.code().get()))
            .collect();
        assert_eq!(got, [("data", 554), ("message", 552), ("other", 500)]);
        assert!(s.is_closed(), "the third error: 421");
        assert!(
            String::from_utf8_lossy(s.output())
                .ends_with("421 4.7.0 Too many errors, closing connection\r\n")
        );
        // Bounded when nobody takes them.
        let cfg = ServerConfig {
            max_bad_commands: 1000,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        for _ in 0..(MAX_PENDING_REFUSALS + 10) {
            s.feed(b"MAIL FROM:<a@example.com>\r\n");
            drive(&mut s);
            let _ = s.take_output();
        }
        assert!(!s.is_closed());
        let kept = s.take_refusals();
        assert_eq!(kept.len(), MAX_PENDING_REFUSALS);
        assert!(kept.iter().all(|r| r.command == RefusedCommand::Mail));
    }

    #[test]
    fn mail_before_helo_is_503() {
        let mut s = session();
        s.feed(b"MAIL FROM:<a@b.c>\r\n");
        assert!(drive(&mut s).is_empty());
        assert_eq!(s.take_output(), b"503 5.5.1 Send HELO/EHLO first\r\n");
    }

    #[test]
    fn vrfy_and_expn_accepted_say_which_they_cannot_do() {
        let mut s = session();
        s.feed(b"EHLO x\r\nVRFY joe\r\nEXPN staff\r\n");
        assert_eq!(drive(&mut s).len(), 3);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(
            out.ends_with(
                "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n\
                 252 2.0.0 Cannot EXPN list, but will accept message and attempt delivery\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn recipient_limit() {
        let cfg = ServerConfig {
            max_recipients: 2,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        let _ = s.take_output();
        s.feed(b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nRCPT TO:<a@c>\r\nRCPT TO:<a@d>\r\n");
        drive(&mut s);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(
            out.ends_with("250 2.1.5 Recipient OK\r\n452 4.5.3 Too many recipients\r\n"),
            "{out}"
        );
    }

    #[test]
    fn starttls_discards_plaintext() {
        let cfg = ServerConfig {
            starttls: true,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        let _ = s.take_output();
        s.feed(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n");
        let evs = drive(&mut s);
        assert_eq!(evs.len(), 2);
        assert!(s.awaiting_tls());
        s.feed(b"RCPT TO:<more@evil>\r\n");
        assert!(s.next_event().is_none());
        s.tls_established();
        s.feed(b"MAIL FROM:<a@b>\r\n");
        let _ = s.take_output();
        assert!(s.next_event().is_none());
        assert_eq!(s.take_output(), b"503 5.5.1 Send HELO/EHLO first\r\n");
        s.feed(b"EHLO x\r\n");
        drive(&mut s);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(!out.contains("STARTTLS"), "{out}");
    }

    /// STARTTLS where TLS is on: `503` after a STARTTLS and on an
    /// implicit-TLS connection alike (a probe found `502` on 465), whether
    /// or not STARTTLS is offered; `502` where there is no TLS at all.
    #[test]
    fn starttls_under_tls_is_503_and_without_it_502() {
        for starttls in [false, true] {
            let cfg = ServerConfig {
                starttls,
                implicit_tls: true,
                ..ServerConfig::default()
            };
            let mut s = ServerSession::new(cfg).unwrap();
            let _ = s.take_output();
            s.feed(b"EHLO x\r\n");
            drive(&mut s);
            let ehlo = String::from_utf8(s.take_output()).unwrap();
            assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
            s.feed(b"STARTTLS\r\n");
            assert!(s.next_event().is_none());
            assert_eq!(s.take_output(), b"503 5.5.1 TLS already active\r\n");
            assert!(!s.awaiting_tls());
        }
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        let _ = s.take_output();
        s.feed(b"EHLO x\r\nSTARTTLS\r\n");
        drive(&mut s);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(
            out.ends_with("502 5.5.1 Command not implemented\r\n"),
            "{out}"
        );
    }

    #[test]
    fn too_many_errors_close() {
        let cfg = ServerConfig {
            max_bad_commands: 3,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        let _ = s.take_output();
        s.feed(b"X\r\nY\r\nZ\r\nNOOP\r\n");
        drive(&mut s);
        assert!(s.is_closed());
        assert!(
            s.take_output()
                .ends_with(b"421 4.7.0 Too many errors, closing connection\r\n")
        );
    }

    /// With AUTH off, `AUTH` with or without a mechanism is not implemented
    /// (a probe found bare `AUTH` got 501 where `AUTH PLAIN` got 502).
    #[test]
    fn auth_off_is_502_whatever_the_arguments() {
        let mut s = session();
        s.feed(b"EHLO x\r\n");
        drive(&mut s);
        let _ = s.take_output();
        for line in [
            &b"AUTH\r\n"[..],
            b"AUTH PLAIN\r\n",
            b"auth login x\r\n",
            b"AUTH \r\n",
        ] {
            s.feed(line);
            drive(&mut s);
            assert_eq!(
                s.take_output(),
                b"502 5.5.1 Command not implemented\r\n",
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// A web page's POST whose body is SMTP commands (a probe relayed mail
    /// that way through a browser): the request line closes the session and
    /// no command of the body runs. With `close_on_http` off the lines are
    /// bad commands, and the body's commands run.
    #[test]
    fn an_http_request_closes_before_its_body_runs() {
        let request = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:2525\r\n\
Content-Type: text/plain\r\nContent-Length: 60\r\n\r\n\
EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n";
        let mut s = session();
        let _ = s.take_output();
        s.feed(request);
        assert!(drive(&mut s).is_empty());
        assert!(s.is_closed());
        assert_eq!(
            s.take_output(),
            b"421 4.7.0 Not an SMTP command (an HTTP request or a header field): closing\r\n"
        );
        // Also after a greeting, in the middle of a session.
        let mut s = session();
        s.feed(b"EHLO x\r\nGET /favicon.ico HTTP/1.1\r\nMAIL FROM:<>\r\n");
        assert_eq!(drive(&mut s).len(), 1);
        assert!(s.is_closed());
        let cfg = ServerConfig {
            close_on_http: false,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        s.feed(request);
        let events = drive(&mut s);
        assert!(!s.is_closed());
        assert_eq!(events.len(), 3, "{events:?}");
    }

    #[test]
    fn config_errors() {
        let check = |f: fn(&mut ServerConfig)| {
            let mut c = ServerConfig::default();
            f(&mut c);
            ServerSession::new(c).err()
        };
        assert_eq!(check(|_| {}), None);
        // Valid host names: a domain (with SMTPUTF8 U-labels), an address literal.
        assert_eq!(check(|c| c.hostname = "mx.example.org".into()), None);
        assert_eq!(check(|c| c.hostname = "[192.0.2.1]".into()), None);
        assert_eq!(check(|c| c.hostname = "[IPv6:2001:db8::1]".into()), None);
        for bad in [
            "",
            "mx example",
            "-mx.example",
            "mx..example",
            "mx.example\r\n",
            "192.0.2.1]",
        ] {
            assert_eq!(
                check_host(bad),
                Some(ConfigError::InvalidHostname),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(|c| c.greeting = "ESMTP\r\n250 injected".into()),
            Some(ConfigError::InvalidText { field: "greeting" })
        );
        assert_eq!(
            check(|c| c.quit_text = "Bye\x07".into()),
            Some(ConfigError::InvalidText { field: "quit_text" })
        );
        assert_eq!(
            check(|c| c.max_command_line = 511),
            Some(ConfigError::LineLimitTooSmall {
                field: "max_command_line"
            })
        );
        assert_eq!(check(|c| c.max_command_line = 512), None);
        assert_eq!(
            check(|c| c.max_sasl_line = 0),
            Some(ConfigError::LineLimitTooSmall {
                field: "max_sasl_line"
            })
        );
        assert_eq!(
            check(|c| c.max_recipients = 0),
            Some(ConfigError::Zero {
                field: "max_recipients"
            })
        );
        assert_eq!(
            check(|c| c.idle_timeout = Duration::ZERO),
            Some(ConfigError::Zero {
                field: "idle_timeout"
            })
        );
        // "Never" is a week: a longer timeout's deadline might overflow the
        // clock (Duration::MAX made the driver close every session after 300 s).
        assert_eq!(
            check(|c| c.idle_timeout = Duration::MAX),
            Some(ConfigError::IdleTimeoutTooLong {
                max: MAX_IDLE_TIMEOUT
            })
        );
        assert_eq!(check(|c| c.idle_timeout = MAX_IDLE_TIMEOUT), None);
        assert_eq!(
            check(|c| c.max_auth_failures = 0),
            Some(ConfigError::Zero {
                field: "max_auth_failures"
            })
        );
        assert_eq!(
            check(|c| c.max_bad_commands = 0),
            Some(ConfigError::Zero {
                field: "max_bad_commands"
            })
        );
        assert_eq!(check(|c| c.max_message_size = 0), None, "0 = unlimited");
        // with_greeting validates both.
        let hello = |code: u16| Reply::new(ReplyCode::try_from(code).unwrap(), None, "hi").unwrap();
        assert_eq!(
            ServerSession::with_greeting(ServerConfig::default(), hello(250)).err(),
            Some(ConfigError::InvalidGreeting)
        );
        for code in [220, 421, 554] {
            assert!(ServerSession::with_greeting(ServerConfig::default(), hello(code)).is_ok());
        }
        let c = ServerConfig {
            max_recipients: 0,
            ..ServerConfig::default()
        };
        assert_eq!(
            ServerSession::with_greeting(c, hello(220)).err(),
            Some(ConfigError::Zero {
                field: "max_recipients"
            })
        );
    }

    fn check_host(host: &str) -> Option<ConfigError> {
        let c = ServerConfig {
            hostname: host.into(),
            ..ServerConfig::default()
        };
        c.validate().err()
    }

    #[test]
    fn renamed_limits_apply() {
        let cfg = ServerConfig {
            idle_timeout: Duration::from_secs(7),
            ..ServerConfig::default()
        };
        let s = ServerSession::new(cfg).unwrap();
        assert_eq!(s.idle_timeout(), Some(Duration::from_secs(7)));
        #[cfg(feature = "std")]
        {
            let now = Instant::now();
            assert_eq!(s.deadline(now), Some(now + Duration::from_secs(7)));
        }
        let cfg = ServerConfig {
            max_command_line: 600,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(cfg).unwrap();
        let _ = s.take_output();
        let long = format!("NOOP {}\r\n", "x".repeat(580));
        s.feed(long.as_bytes());
        assert!(s.next_event().is_none());
        assert_eq!(s.take_output(), b"250 2.0.0 OK\r\n");
    }
}
