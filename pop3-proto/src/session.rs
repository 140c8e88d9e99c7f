//! The server session: a deterministic sans-IO POP3 state machine
//! (RFC 1939 AUTHORIZATION, TRANSACTION and UPDATE states, plus CAPA, STLS,
//! SASL PLAIN/LOGIN, APOP, UTF8 and LANG).
//!
//! The caller owns the socket and the clock:
//!
//! 1. write [`ServerSession::output`] (the greeting is there from the start)
//!    and call [`ServerSession::consume_output`] with what was written;
//! 2. [`ServerSession::feed`] received bytes;
//! 3. call [`ServerSession::next_event`] until it returns `None`, answering
//!    every [`Event`] with the matching method (an event must be answered
//!    before the session reads the next command, so pipelined commands are
//!    answered in order);
//! 4. write the output; close the connection when [`ServerSession::is_closed`].
//!
//! See the crate documentation for a complete example.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use alloc::collections::VecDeque;
use core::time::Duration;
#[cfg(feature = "std")]
use std::time::Instant;

use crate::codec::{
    BodyEncoder, BodyProgress, DEFAULT_MAX_SASL_LINE, Encode, FrameError, LineFramer,
    MAX_COMMAND_LINE, MAX_RESPONSE_LINE, ParseError, parse_command, parse_sasl_response, push_num,
};
use crate::types::{
    ApopDigest, Capability, Command, Expire, LangArg, ListEntry, Mechanism, MessageNumber,
    Password, SaslResponse, StatusResponse, Text, Uid, UidlEntry, UserName, ValidationError,
};

/// A SASL mechanism the session can run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): authorization id, user name and password in one message.
    Plain,
    /// LOGIN: user name and password as two challenges.
    Login,
}

impl SaslMechanism {
    /// The mechanism name.
    pub fn mechanism(self) -> Mechanism<'static> {
        match self {
            SaslMechanism::Plain => Mechanism::PLAIN,
            SaslMechanism::Login => Mechanism::LOGIN,
        }
    }

    fn from_mechanism(m: &Mechanism<'_>) -> Option<Self> {
        match m.as_str() {
            "PLAIN" => Some(SaslMechanism::Plain),
            "LOGIN" => Some(SaslMechanism::Login),
            _ => None,
        }
    }
}

/// Server session settings. Every limit has a documented default
/// ([`ServerConfig::default`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mailbag_pop3_proto::session::ServerConfig;
///
/// let mut config = ServerConfig::default();
/// config.greeting = "pop.example.test ready.".into();
/// config.tls_available = true;
/// config.require_tls_for_login = true;
/// config.idle_timeout = Duration::from_secs(15 * 60);
/// assert_eq!(config.max_command_line, 255);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Text of the greeting after `+OK`. Default: `"Mailbag POP3 ready."`.
    /// [`ServerSession::new`] refuses a greeting with a control character, one that
    /// starts like a response code (`[IN-USE] ...`), and one that makes the greeting
    /// line, APOP timestamp and CRLF included, longer than 512 octets.
    pub greeting: String,
    /// APOP: the unique timestamp for this connection's greeting, in
    /// msg-id form with brackets (`<pid.clock@host>`); it must differ for
    /// every connection. `None` (the default) disables APOP.
    pub apop_timestamp: Option<String>,
    /// TLS can be started with STLS (STLS is advertised). Default: `false`.
    pub tls_available: bool,
    /// The connection is already protected by TLS: implicit TLS, as on port
    /// 995 (RFC 8314). STLS is then neither offered nor accepted, and
    /// [`ServerSession::is_tls`] is true from the start. Default: `false`.
    pub implicit_tls: bool,
    /// Refuse USER/PASS and the plaintext SASL mechanisms until TLS is active
    /// (RFC 2595 section 2.3); they are also left out of CAPA. Default: `false`.
    pub require_tls_for_login: bool,
    /// SASL mechanisms offered (in this order). Default: `[Plain, Login]`.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// The `IMPLEMENTATION` capability text; `None` (default) leaves it out.
    pub implementation: Option<String>,
    /// The `EXPIRE` capability; `None` (default) leaves it out.
    pub expire: Option<Expire>,
    /// Whether `EXPIRE` varies by maildrop (RFC 2449 section 6.7): before
    /// login CAPA lists [`expire`](Self::expire) with `USER`, after login
    /// the value given to [`ServerSession::set_maildrop_expire`] (else
    /// `expire`). Default: `false`.
    pub expire_per_user: bool,
    /// The `LOGIN-DELAY` capability in seconds; `None` (default) leaves it out.
    /// Enforcing it is the application's job (reject with
    /// [`AuthFailure::LoginDelay`]).
    pub login_delay: Option<u32>,
    /// Offer the RFC 6856 `UTF8` command. Default: `false`.
    pub utf8: bool,
    /// Offer the RFC 6856 `LANG` command (English only). Default: `false`.
    pub lang: bool,
    /// Longest command line in octets, CRLF included. Default: 255
    /// ([`MAX_COMMAND_LINE`], the RFC 2449 minimum).
    pub max_command_line: usize,
    /// Longest SASL continuation line in octets, CRLF included.
    /// Default: 4096 ([`DEFAULT_MAX_SASL_LINE`]).
    pub max_sasl_line: usize,
    /// Idle timeout: RFC 1939's autologout timer (section 3 asks for at
    /// least 10 minutes), reported by [`ServerSession::deadline`]. It runs
    /// from the last command answered: input that completes no command line
    /// does not restart it. Default: 10 minutes.
    /// At most [`MAX_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Invalid commands in a row (unknown, bad syntax, wrong state, too long)
    /// after which the session answers `-ERR Too many invalid commands.` and
    /// closes. Default: 10.
    pub max_bad_commands: u32,
    /// Failed logins after which the session closes. Default: 3.
    pub max_auth_failures: u32,
    /// While more than this many octets of output wait to be written,
    /// [`ServerSession::next_event`] reads no further command (backpressure
    /// against clients that pipeline without reading). Default: 64 KiB.
    pub max_pending_output: usize,
    /// [`ServerSession::wants_input`] turns false while more than this many
    /// octets of unread input are buffered. Default: 64 KiB.
    pub max_pending_input: usize,
    /// A command line that is an HTTP request line
    /// ([`is_http_request_line`](crate::http_request::is_http_request_line):
    /// a web page's request aimed at this port) is answered `-ERR` and the
    /// session closes, before any later line runs. Default: `true`.
    pub close_on_http: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            greeting: "Mailbag POP3 ready.".into(),
            apop_timestamp: None,
            tls_available: false,
            implicit_tls: false,
            require_tls_for_login: false,
            sasl_mechanisms: vec![SaslMechanism::Plain, SaslMechanism::Login],
            implementation: None,
            expire: None,
            login_delay: None,
            expire_per_user: false,
            utf8: false,
            lang: false,
            max_command_line: MAX_COMMAND_LINE,
            max_sasl_line: DEFAULT_MAX_SASL_LINE,
            idle_timeout: Duration::from_secs(600),
            max_bad_commands: 10,
            max_auth_failures: 3,
            max_pending_output: 64 * 1024,
            max_pending_input: 64 * 1024,
            close_on_http: true,
        }
    }
}

/// The longest [`ServerConfig::idle_timeout`]: a week. "Never" is this
/// long, and every deadline it gives is a time `Instant` can hold.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A configuration the session refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A text field holds a control character (it would break the protocol).
    #[error("{field}: {source}")]
    InvalidText {
        /// The field.
        field: &'static str,
        /// What is wrong.
        source: ValidationError,
    },
    /// The APOP timestamp is not of the form `<...@...>` without spaces.
    #[error("apop_timestamp must look like <unique@host> without spaces")]
    InvalidApopTimestamp,
    /// A line limit is below the RFC 2449 minimum of 255 octets.
    #[error("max_command_line and max_sasl_line must be at least 255")]
    LineLimitTooSmall,
    /// `idle_timeout` is longer than [`MAX_IDLE_TIMEOUT`]: its deadline
    /// might not be a time the clock can hold.
    #[error("idle_timeout must be at most {max:?}")]
    IdleTimeoutTooLong {
        /// The longest allowed.
        max: Duration,
    },
    /// A limit that must be nonzero is zero (`idle_timeout`, `max_bad_commands`,
    /// `max_auth_failures`, `max_pending_output`), or `max_pending_input` cannot hold
    /// one command or SASL line: the session would stop answering.
    #[error("{0} is too small: the session would stop answering")]
    LimitTooSmall(&'static str),
}

/// How a client logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginMechanism {
    /// USER then PASS.
    UserPass,
    /// APOP.
    Apop,
    /// AUTH PLAIN.
    SaslPlain,
    /// AUTH LOGIN.
    SaslLogin,
}

/// The credentials of a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// A plaintext password (USER/PASS, SASL PLAIN or LOGIN).
    Password(Password<'static>),
    /// An APOP digest, with the timestamp of this session's greeting.
    Apop {
        /// The digest the client sent.
        digest: ApopDigest,
        /// The greeting timestamp, brackets included.
        timestamp: String,
    },
}

/// A login attempt the application must check ([`Event::Login`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginRequest {
    /// The user name (the SASL authentication identity).
    pub user: UserName<'static>,
    /// The SASL authorization identity, when the client asked for a
    /// different one (PLAIN only). Refuse the login unless the user may act
    /// as this identity.
    pub authzid: Option<String>,
    /// Password or APOP digest.
    pub credentials: Credentials,
    /// The command used.
    pub mechanism: LoginMechanism,
}

impl LoginRequest {
    /// Whether the credentials match the user's `secret`: a constant-time
    /// comparison for a password, the digest check for APOP.
    ///
    /// ```
    /// use mailbag_pop3_proto::session::{Event, ServerConfig, ServerSession};
    ///
    /// let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    /// s.feed(b"USER joe\r\nPASS secret\r\n");
    /// let Some(Event::Login(req)) = s.next_event() else { unreachable!() };
    /// assert!(req.check_secret("secret"));
    /// assert!(!req.check_secret("Secret"));
    /// ```
    pub fn check_secret(&self, secret: &str) -> bool {
        match &self.credentials {
            Credentials::Password(p) => {
                let (a, b) = (p.expose(), secret.as_bytes());
                a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
            }
            Credentials::Apop { digest, timestamp } => digest.verify(timestamp, secret),
        }
    }
}

/// Why a login was refused ([`ServerSession::reject_login`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthFailure {
    /// Wrong user name or password: `-ERR [AUTH] Authentication failed.`
    Credentials,
    /// Too soon after the last login: `-ERR [LOGIN-DELAY] ...`
    LoginDelay,
    /// The maildrop is in use: `-ERR [IN-USE] ...`
    InUse,
    /// Temporary failure (auth backend down): `-ERR [SYS/TEMP] ...`
    Temporary,
    /// Permanent failure (account disabled): `-ERR [SYS/PERM] ...`
    Permanent,
}

/// Why the maildrop could not be opened ([`ServerSession::maildrop_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MaildropFailure {
    /// Locked by another session: `-ERR [IN-USE] ...`
    InUse,
    /// Temporary problem: `-ERR [SYS/TEMP] ...`
    Temporary,
    /// Permanent problem: `-ERR [SYS/PERM] ...`
    Permanent,
}

/// The deletions could not all be committed ([`ServerSession::commit_done`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("some deleted messages were not removed")]
pub struct CommitFailure;

/// One message of the maildrop listing given to
/// [`ServerSession::maildrop_opened`]; its message number is its position + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageInfo {
    /// Exact size in octets with CRLF line ends (see [`crate::codec::crlf_len`]).
    pub size: u64,
    /// The unique id (UIDL).
    pub uid: Uid<'static>,
}

impl MessageInfo {
    /// A listing entry.
    pub fn new(size: u64, uid: Uid<'static>) -> Self {
        Self { size, uid }
    }
}

/// What to send of a message ([`Event::Retrieve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetrieveRequest {
    /// The message number.
    pub number: MessageNumber,
    /// The 0-based position in the listing given to
    /// [`ServerSession::maildrop_opened`].
    pub index: usize,
    /// `None` for RETR (the whole message); `Some(n)` for `TOP msg n`: the
    /// session stops after the header and `n` body lines.
    pub top_lines: Option<u32>,
}

/// Something the application must act on. Each has exactly one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Check these credentials; answer with [`ServerSession::accept_login`]
    /// or [`ServerSession::reject_login`].
    Login(LoginRequest),
    /// The login was accepted: lock and list the user's maildrop; answer with
    /// [`ServerSession::maildrop_opened`] or [`ServerSession::maildrop_failed`].
    OpenMaildrop {
        /// The user whose maildrop to open.
        user: UserName<'static>,
    },
    /// Stream a message: [`ServerSession::message_chunk`] or
    /// [`ServerSession::message_segments`] (as often as needed), then
    /// [`ServerSession::message_end`]; or
    /// [`ServerSession::message_failed`].
    Retrieve(RetrieveRequest),
    /// QUIT in TRANSACTION: enter UPDATE, remove these messages, release the
    /// maildrop; answer with [`ServerSession::commit_done`]. The list may be
    /// empty.
    Commit {
        /// Messages marked with DELE, in increasing order.
        deleted: Vec<MessageNumber>,
    },
    /// STLS was accepted: write out all pending output, run the TLS
    /// handshake, then call [`ServerSession::tls_established`]. Bytes fed
    /// before that are discarded.
    StartTls,
}

/// An answer method was called when the session was not waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{method} called, but the session is not waiting for it")]
pub struct UsageError {
    method: &'static str,
}

/// The RFC 1939 state of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Before login.
    Authorization,
    /// Logged in, maildrop open.
    Transaction,
    /// QUIT received after login; deletions are being committed.
    Update,
    /// The session is over.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sasl {
    PlainData,
    LoginUser,
    LoginPass,
}

#[derive(Debug)]
enum Waiting {
    Login(UserName<'static>),
    Maildrop,
    Retrieve {
        encoder: BodyEncoder,
        status: Option<Vec<u8>>,
        done: bool,
    },
    Commit {
        any_deleted: bool,
    },
    Tls,
}

/// The POP3 server state machine.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::session::{Event, MessageInfo, ServerConfig, ServerSession};
/// use mailbag_pop3_proto::types::Uid;
///
/// let mut s = ServerSession::new(ServerConfig::default()).unwrap();
/// assert_eq!(s.take_output(), b"+OK Mailbag POP3 ready.\r\n");
/// s.feed(b"USER joe\r\nPASS secret\r\nSTAT\r\n");
/// match s.next_event() {
///     Some(Event::Login(req)) if req.check_secret("secret") => s.accept_login().unwrap(),
///     other => panic!("{other:?}"),
/// }
/// assert!(matches!(s.next_event(), Some(Event::OpenMaildrop { .. })));
/// s.maildrop_opened(vec![MessageInfo::new(120, Uid::try_from("a1".to_string()).unwrap())]).unwrap();
/// assert_eq!(s.next_event(), None);
/// assert_eq!(s.take_output(), b"+OK\r\n+OK Logged in.\r\n+OK 1 120\r\n");
/// ```
///
/// Its `Debug` leaves out what the client sent (passwords): it shows the
/// state, the counters and how much input and output wait.
pub struct ServerSession {
    config: ServerConfig,
    state: State,
    framer: LineFramer,
    out: Vec<u8>,
    out_start: usize,
    events: VecDeque<Event>,
    waiting: Option<Waiting>,
    pending_user: Option<UserName<'static>>,
    sasl: Option<Sasl>,
    sasl_user: Option<UserName<'static>>,
    tls: bool,
    utf8_mode: bool,
    bad_commands: u32,
    auth_failures: u32,
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    live_count: u64,
    live_size: u64,
    maildrop_expire: Option<Expire>,
    scratch: Vec<u8>,
}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession")
            .field("state", &self.state)
            .field("waiting", &self.waiting)
            .field("events", &self.events)
            .field("pending_user", &self.pending_user)
            .field("sasl_user", &self.sasl_user)
            .field("tls", &self.tls)
            .field("utf8_mode", &self.utf8_mode)
            .field("bad_commands", &self.bad_commands)
            .field("auth_failures", &self.auth_failures)
            .field("messages", &self.messages.len())
            .field("input_len", &self.framer.buffered_len())
            .field("output_len", &(self.out.len() - self.out_start))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const ERR_WRONG_STATE: &[u8] = b"-ERR Command not allowed in this state.\r\n";
const ERR_UNKNOWN: &[u8] = b"-ERR Unknown command.\r\n";
const ERR_PLAINTEXT: &[u8] =
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";
const AUTH_FAILED: &[u8] = b"-ERR [AUTH] Authentication failed.\r\n";

impl ServerSession {
    /// Starts a session; the greeting is ready in [`ServerSession::output`].
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        let text = |field, s: &str| {
            Text::try_from(s)
                .map(|_| ())
                .map_err(|source| ConfigError::InvalidText { field, source })
        };
        text("greeting", &config.greeting)?;
        // `+OK [IN-USE] hi` would read back as a response code.
        StatusResponse::ok(config.greeting.as_str()).map_err(|source| {
            ConfigError::InvalidText {
                field: "greeting",
                source,
            }
        })?;
        if let Some(i) = &config.implementation {
            text("implementation", i)?;
            if i.is_empty() {
                return Err(ConfigError::InvalidText {
                    field: "implementation",
                    source: ValidationError::new("implementation", "is empty"),
                });
            }
        }
        if let Some(ts) = &config.apop_timestamp {
            let ok = ts.len() >= 3
                && ts.starts_with('<')
                && ts.ends_with('>')
                && ts.contains('@')
                && ts.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if !ok {
                return Err(ConfigError::InvalidApopTimestamp);
            }
        }
        let greeting_line = "+OK ".len()
            + config.greeting.len()
            + config.apop_timestamp.as_ref().map_or(0, |t| 1 + t.len())
            + 2;
        if greeting_line > MAX_RESPONSE_LINE {
            return Err(ConfigError::InvalidText {
                field: "greeting",
                source: ValidationError::new(
                    "greeting",
                    "with the APOP timestamp, longer than a 512-octet response line",
                ),
            });
        }
        if config.max_command_line < MAX_COMMAND_LINE || config.max_sasl_line < MAX_COMMAND_LINE {
            return Err(ConfigError::LineLimitTooSmall);
        }
        if config.idle_timeout > MAX_IDLE_TIMEOUT {
            return Err(ConfigError::IdleTimeoutTooLong {
                max: MAX_IDLE_TIMEOUT,
            });
        }
        for (field, zero) in [
            ("idle_timeout", config.idle_timeout.is_zero()),
            ("max_bad_commands", config.max_bad_commands == 0),
            ("max_auth_failures", config.max_auth_failures == 0),
            ("max_pending_output", config.max_pending_output == 0),
            (
                "max_pending_input",
                config.max_pending_input < config.max_command_line.max(config.max_sasl_line),
            ),
        ] {
            if zero {
                return Err(ConfigError::LimitTooSmall(field));
            }
        }
        let mut s = Self {
            tls: config.implicit_tls,
            config,
            state: State::Authorization,
            framer: LineFramer::new(),
            out: Vec::with_capacity(512),
            out_start: 0,
            events: VecDeque::new(),
            waiting: None,
            pending_user: None,
            sasl: None,
            sasl_user: None,
            utf8_mode: false,
            bad_commands: 0,
            auth_failures: 0,
            messages: Vec::new(),
            deleted: Vec::new(),
            live_count: 0,
            live_size: 0,
            maildrop_expire: None,
            scratch: Vec::new(),
        };
        s.out.extend_from_slice(b"+OK ");
        s.out.extend_from_slice(s.config.greeting.as_bytes());
        if let Some(ts) = &s.config.apop_timestamp {
            s.out.push(b' ');
            s.out.extend_from_slice(ts.as_bytes());
        }
        s.out.extend_from_slice(b"\r\n");
        Ok(s)
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The RFC 1939 state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether TLS is active on this connection (configured, or established
    /// after STLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether STLS was answered `+OK` and the caller must do the TLS
    /// handshake now (then call [`ServerSession::tls_established`]); input
    /// is ignored meanwhile.
    pub fn awaiting_tls(&self) -> bool {
        matches!(self.waiting, Some(Waiting::Tls))
    }

    /// Whether the session is over: write the remaining output, then close
    /// the connection.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the caller should read more input now: false when closed,
    /// during the TLS handshake, or while more than
    /// [`ServerConfig::max_pending_input`] octets of input are unread.
    pub fn wants_input(&self) -> bool {
        !self.is_closed()
            && !self.awaiting_tls()
            && self.framer.buffered_len() <= self.config.max_pending_input
    }

    /// How long the session may stay without a command before autologout
    /// ([`ServerConfig::idle_timeout`]); `None` once closed. The clock-free
    /// form of [`deadline`](Self::deadline), for callers without `std`.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (!self.is_closed()).then_some(self.config.idle_timeout)
    }

    /// The autologout deadline ([`ServerConfig::idle_timeout`] after
    /// `last_activity`, the time the last command was answered, on the
    /// caller's clock); `None` once closed.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mailbag_pop3_proto::session::{ServerConfig, ServerSession};
    ///
    /// let s = ServerSession::new(ServerConfig::default()).unwrap();
    /// let now = Instant::now();
    /// assert_eq!(s.deadline(now), Some(now + Duration::from_secs(600)));
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn deadline(&self, last_activity: Instant) -> Option<Instant> {
        if self.is_closed() {
            None
        } else {
            last_activity.checked_add(self.config.idle_timeout)
        }
    }

    /// The autologout deadline passed: writes a farewell and closes the
    /// session without entering UPDATE (no message is removed).
    pub fn timed_out(&mut self) {
        if !self.is_closed() {
            self.write(b"-ERR Disconnected for inactivity.\r\n");
            self.close();
        }
    }

    /// The server is shutting down: answers `-ERR [SYS/TEMP] Server shutting
    /// down.` (RFC 3206: a temporary condition, try again later) and closes
    /// without entering UPDATE (no message is removed). Call it between
    /// events, while the session waits for input.
    ///
    /// ```
    /// use mailbag_pop3_proto::session::{ServerConfig, ServerSession};
    ///
    /// let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    /// s.take_output();
    /// s.shutdown();
    /// assert_eq!(s.take_output(), b"-ERR [SYS/TEMP] Server shutting down.\r\n");
    /// assert!(s.is_closed());
    /// ```
    pub fn shutdown(&mut self) {
        if !self.is_closed() {
            self.write(b"-ERR [SYS/TEMP] Server shutting down.\r\n");
            self.close();
        }
    }

    /// Feeds received bytes. Ignored once closed and while the session waits
    /// for the TLS handshake (plaintext sent after STLS is discarded).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.is_closed() || self.awaiting_tls() {
            return;
        }
        self.framer.push(bytes);
    }

    /// Output waiting to be written.
    pub fn output(&self) -> &[u8] {
        self.out.get(self.out_start..).unwrap_or_default()
    }

    /// Marks `n` octets of [`ServerSession::output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out_start = self.out_start.saturating_add(n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start >= 4096 && self.out_start >= self.out.len() / 2 {
            // Partial writes must not let the written prefix pile up.
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Takes all output waiting to be written.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut v = core::mem::take(&mut self.out);
        if self.out_start > 0 {
            v.drain(..self.out_start);
            self.out_start = 0;
        }
        v
    }

    /// The capabilities CAPA lists now (they follow the configuration and
    /// whether TLS is active; RFC 2449 section 5 has AUTHORIZATION
    /// capabilities listed in both states).
    pub fn capabilities(&self) -> Vec<Capability<'static>> {
        let mut caps = vec![
            Capability::Top,
            Capability::Uidl,
            Capability::RespCodes,
            Capability::Pipelining,
            Capability::AuthRespCode,
        ];
        if self.config.tls_available && !self.tls {
            caps.push(Capability::Stls);
        }
        if self.plaintext_allowed() {
            caps.push(Capability::User);
            let mechs = self.sasl_offered();
            if !mechs.is_empty() {
                caps.push(Capability::Sasl(mechs));
            }
        }
        if self.config.utf8 {
            caps.push(Capability::Utf8 { user: true });
        }
        if self.config.lang {
            caps.push(Capability::Lang);
        }
        let expire = match self.state {
            State::Authorization => self
                .config
                .expire
                .map(|policy| (policy, self.config.expire_per_user)),
            _ => self
                .maildrop_expire
                .or(self.config.expire)
                .map(|policy| (policy, false)),
        };
        if let Some((policy, per_user)) = expire {
            caps.push(Capability::Expire { policy, per_user });
        }
        if let Some(seconds) = self.config.login_delay {
            caps.push(Capability::LoginDelay {
                seconds,
                per_user: false,
            });
        }
        if let Some(imp) = &self.config.implementation {
            if let Ok(t) = Text::try_from(imp.clone()) {
                caps.push(Capability::Implementation(t));
            }
        }
        caps
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls || !self.config.require_tls_for_login
    }

    fn sasl_offered(&self) -> Vec<Mechanism<'static>> {
        let mut v: Vec<Mechanism<'static>> = Vec::new();
        for m in &self.config.sasl_mechanisms {
            let m = m.mechanism();
            if !v.contains(&m) {
                v.push(m);
            }
        }
        v
    }

    /// Returns the next thing the application must act on, or `None` when
    /// the session needs more input, waits for an answer, waits for output to
    /// drain, or is closed.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if self.waiting.is_some()
                || self.is_closed()
                || self.output().len() > self.config.max_pending_output
            {
                return None;
            }
            let limit = if self.sasl.is_some() {
                self.config.max_sasl_line
            } else {
                self.config.max_command_line
            };
            // Copy the line into a reused buffer so that handling it can
            // borrow the session mutably (no allocation per command).
            let mut line = core::mem::take(&mut self.scratch);
            line.clear();
            let framed = match self.framer.next_line(limit) {
                None => {
                    self.scratch = line;
                    return None;
                }
                Some(Ok(l)) => {
                    line.extend_from_slice(l);
                    Ok(())
                }
                Some(Err(e)) => Err(e),
            };
            match framed {
                Ok(()) => {
                    if self.sasl.is_some() {
                        self.on_sasl_line(&line);
                    } else {
                        self.on_command_line(&line);
                    }
                    self.scratch = line;
                }
                Err(FrameError::TooLong { .. }) => {
                    if self.sasl.take().is_some() {
                        self.sasl_user = None;
                        self.write(b"-ERR Authentication line too long.\r\n");
                        self.bad_command(None);
                    } else {
                        self.bad_command(Some(b"-ERR Command line too long.\r\n"));
                    }
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.waiting = None;
        self.sasl = None;
        self.events.clear();
        self.framer.clear();
    }

    /// Answers a bad command with `reply` (if any) unless the limit is
    /// reached, in which case the session closes.
    fn bad_command(&mut self, reply: Option<&[u8]>) {
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.config.max_bad_commands {
            self.write(b"-ERR Too many invalid commands.\r\n");
            self.close();
        } else if let Some(r) = reply {
            self.write(r);
        }
    }

    fn on_command_line(&mut self, line: &[u8]) {
        if self.config.close_on_http && crate::http_request::is_http_request_line(line) {
            self.write(b"-ERR HTTP request to a POP3 server: closing.\r\n");
            self.close();
            return;
        }
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                let reply: &[u8] = match e {
                    ParseError::Empty | ParseError::UnknownCommand => ERR_UNKNOWN,
                    ParseError::InvalidNumber => b"-ERR Invalid message number.\r\n",
                    ParseError::InvalidBase64 => b"-ERR Invalid base64 data.\r\n",
                    _ => b"-ERR Invalid arguments.\r\n",
                };
                // PASS only counts right after USER.
                self.pending_user = None;
                self.bad_command(Some(reply));
                return;
            }
        };
        let cmd = cmd.into_owned();
        if !matches!(cmd, Command::Pass(_)) {
            self.pending_user = None;
        }
        let ok = match self.state {
            State::Authorization => self.authorization(cmd),
            State::Transaction => self.transaction(cmd),
            State::Update | State::Closed => false,
        };
        if ok {
            self.bad_commands = 0;
        }
    }

    /// Handles a command in AUTHORIZATION; returns false for a bad command
    /// (already answered or counted).
    fn authorization(&mut self, cmd: Command<'static>) -> bool {
        match cmd {
            Command::Capa => self.write_capa(),
            Command::Quit => {
                self.write(b"+OK Logging out.\r\n");
                self.close();
            }
            Command::User(name) => {
                if !self.plaintext_allowed() {
                    self.write(ERR_PLAINTEXT);
                } else {
                    self.pending_user = Some(name);
                    self.write(b"+OK\r\n");
                }
            }
            Command::Pass(password) => match self.pending_user.take() {
                None => {
                    self.bad_command(Some(b"-ERR No username given.\r\n"));
                    return false;
                }
                // RFC 6856 section 2: after UTF8 the password is UTF-8.
                Some(_) if !self.charset_ok(&password) => {
                    self.auth_failed(b"-ERR [AUTH] The password is not UTF-8.\r\n");
                }
                Some(user) => self.login(LoginRequest {
                    user,
                    authzid: None,
                    credentials: Credentials::Password(password),
                    mechanism: LoginMechanism::UserPass,
                }),
            },
            Command::Apop { name, digest } => match self.config.apop_timestamp.clone() {
                None => self.write(b"-ERR APOP not available.\r\n"),
                Some(timestamp) => self.login(LoginRequest {
                    user: name,
                    authzid: None,
                    credentials: Credentials::Apop { digest, timestamp },
                    mechanism: LoginMechanism::Apop,
                }),
            },
            Command::AuthList => {
                self.write(b"+OK\r\n");
                if self.plaintext_allowed() {
                    for m in self.sasl_offered() {
                        self.write(m.as_str().as_bytes());
                        self.write(b"\r\n");
                    }
                }
                self.write(b".\r\n");
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => self.start_auth(&mechanism, initial_response.map(|s| s.into_inner())),
            Command::Stls => {
                if self.tls {
                    self.write(b"-ERR TLS already active.\r\n");
                } else if !self.config.tls_available {
                    self.write(b"-ERR TLS support isn't enabled.\r\n");
                } else if self.utf8_mode {
                    self.write(b"-ERR STLS not allowed after UTF8.\r\n");
                } else {
                    self.write(b"+OK Begin TLS negotiation now.\r\n");
                    self.framer.clear();
                    self.waiting = Some(Waiting::Tls);
                    self.events.push_back(Event::StartTls);
                }
            }
            Command::Utf8 => {
                if !self.config.utf8 {
                    self.bad_command(Some(ERR_UNKNOWN));
                    return false;
                }
                self.utf8_mode = true;
                self.write(b"+OK UTF8 enabled.\r\n");
            }
            Command::Lang(arg) => return self.lang(arg),
            _ => {
                self.bad_command(Some(ERR_WRONG_STATE));
                return false;
            }
        }
        true
    }

    fn lang(&mut self, arg: Option<LangArg<'static>>) -> bool {
        if !self.config.lang {
            self.bad_command(Some(ERR_UNKNOWN));
            return false;
        }
        match arg {
            None => self.write(b"+OK Language listing follows:\r\nen English\r\n.\r\n"),
            Some(LangArg::Wildcard) => self.write(b"+OK en Language is English.\r\n"),
            Some(LangArg::Tag(t)) if t.as_str().eq_ignore_ascii_case("en") => {
                self.write(b"+OK en Language is English.\r\n")
            }
            Some(LangArg::Tag(_)) => self.write(b"-ERR Unsupported language.\r\n"),
        }
        true
    }

    fn write_capa(&mut self) {
        self.write(b"+OK Capability list follows.\r\n");
        let mut buf = Vec::with_capacity(128);
        for c in self.capabilities() {
            c.encode(&mut buf);
        }
        self.write(&buf);
        self.write(b".\r\n");
    }

    fn login(&mut self, req: LoginRequest) {
        self.waiting = Some(Waiting::Login(req.user.clone()));
        self.events.push_back(Event::Login(req));
    }

    fn start_auth(&mut self, mechanism: &Mechanism<'_>, ir: Option<Vec<u8>>) {
        let offered = self.sasl_offered().iter().any(|m| m == mechanism);
        let Some(mech) = SaslMechanism::from_mechanism(mechanism).filter(|_| offered) else {
            self.write(b"-ERR Unsupported authentication mechanism.\r\n");
            return;
        };
        if !self.plaintext_allowed() {
            self.write(ERR_PLAINTEXT);
            return;
        }
        match (mech, ir) {
            (SaslMechanism::Plain, None) => {
                self.sasl = Some(Sasl::PlainData);
                self.write(b"+ \r\n");
            }
            (SaslMechanism::Plain, Some(data)) => self.finish_plain(&data),
            (SaslMechanism::Login, None) => {
                self.sasl = Some(Sasl::LoginUser);
                self.write(b"+ VXNlcm5hbWU6\r\n");
            }
            (SaslMechanism::Login, Some(user)) => self.login_user(&user),
        }
    }

    fn on_sasl_line(&mut self, line: &[u8]) {
        let Some(step) = self.sasl.take() else {
            return;
        };
        let data = match parse_sasl_response(line) {
            Ok(SaslResponse::Cancel) => {
                self.sasl_user = None;
                self.write(b"-ERR Authentication aborted by client.\r\n");
                return;
            }
            Ok(SaslResponse::Data(d)) => d.into_inner(),
            Err(_) => {
                self.sasl_user = None;
                self.bad_command(Some(b"-ERR Invalid base64 data in continued response.\r\n"));
                return;
            }
        };
        match step {
            Sasl::PlainData => self.finish_plain(&data),
            Sasl::LoginUser => self.login_user(&data),
            Sasl::LoginPass => match self.sasl_user.take() {
                Some(user) => match Password::try_from(data).ok().filter(|p| self.charset_ok(p)) {
                    Some(password) => self.login(LoginRequest {
                        user,
                        authzid: None,
                        credentials: Credentials::Password(password),
                        mechanism: LoginMechanism::SaslLogin,
                    }),
                    None => self.auth_failed(AUTH_FAILED),
                },
                None => self.auth_failed(AUTH_FAILED),
            },
        }
    }

    fn login_user(&mut self, data: &[u8]) {
        match core::str::from_utf8(data)
            .ok()
            .and_then(|u| UserName::try_from(u.to_string()).ok())
        {
            Some(user) => {
                self.sasl_user = Some(user);
                self.sasl = Some(Sasl::LoginPass);
                self.write(b"+ UGFzc3dvcmQ6\r\n");
            }
            None => self.auth_failed(AUTH_FAILED),
        }
    }

    fn finish_plain(&mut self, data: &[u8]) {
        let mut parts = data.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(passwd), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.auth_failed(AUTH_FAILED);
            return;
        };
        let parsed = (|| {
            let authzid = core::str::from_utf8(authzid).ok()?;
            let user = UserName::try_from(core::str::from_utf8(authcid).ok()?.to_string()).ok()?;
            let password = Password::try_from(passwd.to_vec())
                .ok()
                .filter(|p| self.charset_ok(p))?;
            if authzid.chars().any(char::is_control) {
                return None;
            }
            let authzid =
                (!authzid.is_empty() && authzid != user.as_str()).then(|| authzid.to_string());
            Some((user, password, authzid))
        })();
        match parsed {
            Some((user, password, authzid)) => self.login(LoginRequest {
                user,
                authzid,
                credentials: Credentials::Password(password),
                mechanism: LoginMechanism::SaslPlain,
            }),
            None => self.auth_failed(AUTH_FAILED),
        }
    }

    /// Whether a password's octets may be checked: any octets, except that
    /// after UTF8 they must be UTF-8 (RFC 6856 section 2).
    fn charset_ok(&self, password: &Password<'_>) -> bool {
        !self.utf8_mode || password.as_str().is_some()
    }

    fn auth_failed(&mut self, reply: &[u8]) {
        self.auth_failures = self.auth_failures.saturating_add(1);
        self.write(reply);
        if self.auth_failures >= self.config.max_auth_failures {
            self.write(b"-ERR Too many authentication failures.\r\n");
            self.close();
        }
    }

    fn message_reply(&self, n: MessageNumber) -> Result<usize, Vec<u8>> {
        let i = n.index();
        match self.deleted.get(i) {
            None => Err(format!("-ERR There's no message {n}.\r\n").into_bytes()),
            Some(true) => Err(format!("-ERR Message {n} is deleted.\r\n").into_bytes()),
            Some(false) => Ok(i),
        }
    }

    fn transaction(&mut self, cmd: Command<'static>) -> bool {
        match cmd {
            Command::Capa => self.write_capa(),
            Command::Noop => self.write(b"+OK\r\n"),
            Command::Stat => {
                self.out.extend_from_slice(b"+OK ");
                push_num(&mut self.out, self.live_count);
                self.out.push(b' ');
                push_num(&mut self.out, self.live_size);
                self.out.extend_from_slice(b"\r\n");
            }
            Command::List(None) => {
                let mut buf = format!(
                    "+OK {} messages ({} octets)\r\n",
                    self.live_count, self.live_size
                )
                .into_bytes();
                for (i, m) in self.messages.iter().enumerate() {
                    if self.deleted.get(i) == Some(&false) {
                        if let Some(number) = MessageNumber::from_index(i) {
                            ListEntry {
                                number,
                                size: m.size,
                            }
                            .encode(&mut buf);
                        }
                    }
                }
                buf.extend_from_slice(b".\r\n");
                self.write(&buf);
            }
            Command::List(Some(n)) => match self.message_reply(n) {
                Ok(i) => {
                    let size = self.messages.get(i).map_or(0, |m| m.size);
                    self.out.extend_from_slice(b"+OK ");
                    ListEntry { number: n, size }.encode(&mut self.out);
                }
                Err(e) => self.write(&e),
            },
            Command::Uidl(None) => {
                let mut buf = b"+OK\r\n".to_vec();
                for (i, m) in self.messages.iter().enumerate() {
                    if self.deleted.get(i) == Some(&false) {
                        if let Some(number) = MessageNumber::from_index(i) {
                            UidlEntry {
                                number,
                                uid: m.uid.clone(),
                            }
                            .encode(&mut buf);
                        }
                    }
                }
                buf.extend_from_slice(b".\r\n");
                self.write(&buf);
            }
            Command::Uidl(Some(n)) => match self.message_reply(n) {
                Ok(i) => {
                    if let Some(m) = self.messages.get(i) {
                        self.out.extend_from_slice(b"+OK ");
                        push_num(&mut self.out, u64::from(n.get()));
                        self.out.push(b' ');
                        self.out.extend_from_slice(m.uid.as_str().as_bytes());
                        self.out.extend_from_slice(b"\r\n");
                    }
                }
                Err(e) => self.write(&e),
            },
            Command::Dele(n) => match self.message_reply(n) {
                Ok(i) => {
                    if let Some(d) = self.deleted.get_mut(i) {
                        *d = true;
                    }
                    self.live_count = self.live_count.saturating_sub(1);
                    let size = self.messages.get(i).map_or(0, |m| m.size);
                    self.live_size = self.live_size.saturating_sub(size);
                    self.write(b"+OK Marked to be deleted.\r\n");
                }
                Err(e) => self.write(&e),
            },
            Command::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                self.recount();
                self.write(b"+OK\r\n");
            }
            Command::Retr(n) => self.retrieve(n, None),
            Command::Top { msg, lines } => self.retrieve(msg, Some(lines)),
            Command::Quit => {
                let deleted: Vec<MessageNumber> = self
                    .deleted
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| **d)
                    .filter_map(|(i, _)| MessageNumber::from_index(i))
                    .collect();
                self.state = State::Update;
                self.waiting = Some(Waiting::Commit {
                    any_deleted: !deleted.is_empty(),
                });
                self.events.push_back(Event::Commit { deleted });
            }
            Command::Lang(arg) => return self.lang(arg),
            Command::Utf8 if !self.config.utf8 => {
                self.bad_command(Some(ERR_UNKNOWN));
                return false;
            }
            _ => {
                self.bad_command(Some(ERR_WRONG_STATE));
                return false;
            }
        }
        true
    }

    fn retrieve(&mut self, n: MessageNumber, top_lines: Option<u32>) {
        match self.message_reply(n) {
            Ok(index) => {
                let size = self.messages.get(index).map_or(0, |m| m.size);
                let status = match top_lines {
                    None => {
                        let mut st = Vec::with_capacity(32);
                        st.extend_from_slice(b"+OK ");
                        push_num(&mut st, size);
                        st.extend_from_slice(b" octets\r\n");
                        st
                    }
                    Some(_) => b"+OK\r\n".to_vec(),
                };
                let encoder = match top_lines {
                    None => BodyEncoder::new(),
                    Some(l) => BodyEncoder::top(l),
                };
                self.waiting = Some(Waiting::Retrieve {
                    encoder,
                    status: Some(status),
                    done: false,
                });
                self.events.push_back(Event::Retrieve(RetrieveRequest {
                    number: n,
                    index,
                    top_lines,
                }));
            }
            Err(e) => self.write(&e),
        }
    }

    fn recount(&mut self) {
        self.live_count = 0;
        self.live_size = 0;
        for (m, d) in self.messages.iter().zip(&self.deleted) {
            if !d {
                self.live_count += 1;
                self.live_size = self.live_size.saturating_add(m.size);
            }
        }
    }

    fn unexpected(method: &'static str) -> UsageError {
        UsageError { method }
    }

    /// Answers [`Event::Login`]: the credentials are good. The session then
    /// asks for the maildrop ([`Event::OpenMaildrop`]).
    pub fn accept_login(&mut self) -> Result<(), UsageError> {
        match self.waiting.take() {
            Some(Waiting::Login(user)) => {
                self.waiting = Some(Waiting::Maildrop);
                self.events.push_back(Event::OpenMaildrop { user });
                Ok(())
            }
            other => {
                self.waiting = other;
                Err(Self::unexpected("accept_login"))
            }
        }
    }

    /// Answers [`Event::Login`]: refused. After
    /// [`ServerConfig::max_auth_failures`] failures the session closes.
    pub fn reject_login(&mut self, why: AuthFailure) -> Result<(), UsageError> {
        match self.waiting.take() {
            Some(Waiting::Login(_)) => {
                let reply: &[u8] = match why {
                    AuthFailure::Credentials => AUTH_FAILED,
                    AuthFailure::LoginDelay => b"-ERR [LOGIN-DELAY] Login delay in effect.\r\n",
                    AuthFailure::InUse => {
                        b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
                    }
                    AuthFailure::Temporary => {
                        b"-ERR [SYS/TEMP] Temporary authentication failure.\r\n"
                    }
                    AuthFailure::Permanent => b"-ERR [SYS/PERM] Authentication not possible.\r\n",
                };
                self.auth_failed(reply);
                Ok(())
            }
            other => {
                self.waiting = other;
                Err(Self::unexpected("reject_login"))
            }
        }
    }

    /// The `EXPIRE` of the maildrop this session opens or has open, listed
    /// by CAPA after login (with [`ServerConfig::expire_per_user`]; RFC 2449
    /// section 6.7): e.g. `NEVER` for one whose messages stay until deleted,
    /// `Days(7)` for one the site empties after a week.
    ///
    /// ```
    /// use mailbag_pop3_proto::session::{Event, ServerConfig, ServerSession};
    /// use mailbag_pop3_proto::types::{Capability, Expire};
    ///
    /// let mut config = ServerConfig::default();
    /// config.expire = Some(Expire::Days(7));
    /// config.expire_per_user = true;
    /// let mut s = ServerSession::new(config).unwrap();
    /// let expire = |s: &ServerSession| {
    ///     s.capabilities().into_iter().find(|c| matches!(c, Capability::Expire { .. }))
    /// };
    /// // Before login: the shortest of any maildrop, and `USER`.
    /// assert_eq!(expire(&s), Some(Capability::Expire { policy: Expire::Days(7), per_user: true }));
    /// s.feed(b"USER joe\r\nPASS secret\r\n");
    /// let Some(Event::Login(_)) = s.next_event() else { unreachable!() };
    /// s.accept_login().unwrap();
    /// let Some(Event::OpenMaildrop { .. }) = s.next_event() else { unreachable!() };
    /// s.set_maildrop_expire(Expire::Never);
    /// s.maildrop_opened(Vec::new()).unwrap();
    /// assert_eq!(expire(&s), Some(Capability::Expire { policy: Expire::Never, per_user: false }));
    /// ```
    pub fn set_maildrop_expire(&mut self, policy: Expire) {
        self.maildrop_expire = Some(policy);
    }

    /// Answers [`Event::OpenMaildrop`] with the listing; message numbers are
    /// positions + 1 and stay fixed for the session. Sends `+OK Logged in.`
    /// The session takes the listing as given: each size must be the octets
    /// RETR will send with CRLF line ends (LIST, STAT and the RETR status line
    /// say it), and the UIDs must be unique (RFC 1939 section 7). Neither is
    /// checked.
    pub fn maildrop_opened(&mut self, listing: Vec<MessageInfo>) -> Result<(), UsageError> {
        if !matches!(self.waiting, Some(Waiting::Maildrop)) {
            return Err(Self::unexpected("maildrop_opened"));
        }
        self.waiting = None;
        self.deleted = vec![false; listing.len()];
        self.messages = listing;
        self.recount();
        self.state = State::Transaction;
        self.write(b"+OK Logged in.\r\n");
        Ok(())
    }

    /// Answers [`Event::OpenMaildrop`]: the maildrop could not be opened; the
    /// session stays in AUTHORIZATION.
    pub fn maildrop_failed(&mut self, why: MaildropFailure) -> Result<(), UsageError> {
        if !matches!(self.waiting, Some(Waiting::Maildrop)) {
            return Err(Self::unexpected("maildrop_failed"));
        }
        self.waiting = None;
        self.write(match why {
            MaildropFailure::InUse => {
                b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
            }
            MaildropFailure::Temporary => b"-ERR [SYS/TEMP] Couldn't open mailbox.\r\n",
            MaildropFailure::Permanent => b"-ERR [SYS/PERM] Couldn't open mailbox.\r\n",
        });
        Ok(())
    }

    /// Answers [`Event::Retrieve`] with the next chunk of the raw message (any
    /// line ends; the session does dot-stuffing and CRLF). Returns
    /// [`BodyProgress::Done`] when TOP has all the lines it needs: the caller
    /// may stop reading and call [`ServerSession::message_end`].
    pub fn message_chunk(&mut self, chunk: &[u8]) -> Result<BodyProgress, UsageError> {
        self.retrieve_with("message_chunk", |encoder, out| {
            encoder.encode_chunk(chunk, out)
        })
    }

    /// Answers [`Event::Retrieve`] like [`ServerSession::message_chunk`], but
    /// without copying the message into the output: `segment` is called, in
    /// order, with runs borrowed from `chunk` and the short static inserts
    /// the wire format needs (see [`BodyEncoder::encode_segments`]).
    ///
    /// On the wire, everything in [`ServerSession::output`] after this call
    /// (on the first call: the `+OK` status line) comes **before** the
    /// segments: write the output, then the segments (for example with one
    /// `write_vectored`), before calling any other method. The two styles
    /// can be mixed chunk by chunk.
    ///
    /// ```
    /// use mailbag_pop3_proto::session::{Event, MessageInfo, ServerConfig, ServerSession};
    /// use mailbag_pop3_proto::types::Uid;
    ///
    /// let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    /// s.feed(b"USER joe\r\nPASS secret\r\n");
    /// let Some(Event::Login(_)) = s.next_event() else { panic!() };
    /// s.accept_login().unwrap();
    /// let Some(Event::OpenMaildrop { .. }) = s.next_event() else { panic!() };
    /// let uid = Uid::try_from("u1".to_string()).unwrap();
    /// s.maildrop_opened(vec![MessageInfo::new(13, uid)]).unwrap();
    /// s.take_output(); // greeting and login replies
    /// s.feed(b"RETR 1\r\n");
    /// let Some(Event::Retrieve(_)) = s.next_event() else { panic!() };
    /// let message = b"A: b\r\n\r\n.hi\r\n";
    /// let mut wire = Vec::new();
    /// let mut segments = Vec::new();
    /// s.message_segments(message, |seg| segments.push(seg)).unwrap();
    /// wire.extend_from_slice(&s.take_output()); // the status line first
    /// segments.iter().for_each(|seg| wire.extend_from_slice(seg));
    /// s.message_end().unwrap();
    /// wire.extend_from_slice(&s.take_output()); // the terminator
    /// assert_eq!(wire, b"+OK 13 octets\r\nA: b\r\n\r\n..hi\r\n.\r\n");
    /// // The message itself was not copied.
    /// assert_eq!(segments[0].as_ptr(), message.as_ptr());
    /// ```
    pub fn message_segments<'a, F>(
        &mut self,
        chunk: &'a [u8],
        segment: F,
    ) -> Result<BodyProgress, UsageError>
    where
        F: FnMut(&'a [u8]),
    {
        self.retrieve_with("message_segments", |encoder, _| {
            encoder.encode_segments(chunk, segment)
        })
    }

    /// The common part of [`ServerSession::message_chunk`] and
    /// [`ServerSession::message_segments`]: checks that a message is being
    /// retrieved (else a usage error naming `method`), writes the status line
    /// before the first chunk, and runs `encode` until TOP has its lines.
    fn retrieve_with(
        &mut self,
        method: &'static str,
        encode: impl FnOnce(&mut BodyEncoder, &mut Vec<u8>) -> BodyProgress,
    ) -> Result<BodyProgress, UsageError> {
        let Some(Waiting::Retrieve {
            encoder,
            status,
            done,
        }) = &mut self.waiting
        else {
            return Err(Self::unexpected(method));
        };
        if let Some(st) = status.take() {
            self.out.extend_from_slice(&st);
        }
        if *done {
            return Ok(BodyProgress::Done);
        }
        let p = encode(encoder, &mut self.out);
        if p == BodyProgress::Done {
            *done = true;
        }
        Ok(p)
    }

    /// Answers [`Event::Retrieve`]: the message is complete. Writes the
    /// terminator.
    pub fn message_end(&mut self) -> Result<(), UsageError> {
        match self.waiting.take() {
            Some(Waiting::Retrieve {
                mut encoder,
                status,
                ..
            }) => {
                if let Some(st) = status {
                    self.out.extend_from_slice(&st);
                }
                encoder.finish(&mut self.out);
                self.bad_commands = 0;
                Ok(())
            }
            other => {
                self.waiting = other;
                Err(Self::unexpected("message_end"))
            }
        }
    }

    /// Answers [`Event::Retrieve`]: the message could not be read. Before any
    /// chunk this is a `-ERR [SYS/TEMP]` answer and the session goes on;
    /// after a chunk the multi-line answer cannot be taken back, so the
    /// session closes (without UPDATE).
    pub fn message_failed(&mut self) -> Result<(), UsageError> {
        match self.waiting.take() {
            Some(Waiting::Retrieve { status, .. }) => {
                if status.is_some() {
                    self.write(b"-ERR [SYS/TEMP] Couldn't read the message.\r\n");
                } else {
                    self.close();
                }
                Ok(())
            }
            other => {
                self.waiting = other;
                Err(Self::unexpected("message_failed"))
            }
        }
    }

    /// Answers [`Event::Commit`]; the session answers QUIT and closes.
    pub fn commit_done(&mut self, result: Result<(), CommitFailure>) -> Result<(), UsageError> {
        match self.waiting.take() {
            Some(Waiting::Commit { any_deleted }) => {
                self.write(match (result, any_deleted) {
                    (Ok(()), true) => b"+OK Logging out, messages deleted.\r\n",
                    (Ok(()), false) => b"+OK Logging out.\r\n",
                    (Err(CommitFailure), _) => {
                        b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n"
                    }
                });
                self.close();
                Ok(())
            }
            other => {
                self.waiting = other;
                Err(Self::unexpected("commit_done"))
            }
        }
    }

    /// Answers [`Event::StartTls`]: the handshake succeeded. The session
    /// stays in AUTHORIZATION with a fresh input buffer; STLS is no longer
    /// offered and plaintext logins become available.
    pub fn tls_established(&mut self) -> Result<(), UsageError> {
        if !self.awaiting_tls() {
            return Err(Self::unexpected("tls_established"));
        }
        self.waiting = None;
        self.tls = true;
        self.framer.clear();
        self.pending_user = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    fn uid(s: &str) -> Uid<'static> {
        Uid::try_from(s.to_string()).unwrap()
    }

    fn logged_in(config: ServerConfig, sizes: &[u64]) -> ServerSession {
        let mut s = ServerSession::new(config).unwrap();
        s.feed(b"USER joe\r\nPASS secret\r\n");
        assert!(matches!(s.next_event(), Some(Event::Login(_))));
        s.accept_login().unwrap();
        assert!(matches!(s.next_event(), Some(Event::OpenMaildrop { .. })));
        let listing = sizes
            .iter()
            .enumerate()
            .map(|(i, &sz)| MessageInfo::new(sz, uid(&format!("uid{}", i + 1))))
            .collect();
        s.maildrop_opened(listing).unwrap();
        assert_eq!(s.next_event(), None);
        s.take_output();
        s
    }

    fn run(s: &mut ServerSession, input: &[u8]) -> String {
        s.feed(input);
        assert_eq!(s.next_event(), None);
        String::from_utf8(s.take_output()).unwrap()
    }

    #[test]
    fn dele_hides_and_rset_restores() {
        let mut s = logged_in(ServerConfig::default(), &[100, 200, 300]);
        assert_eq!(run(&mut s, b"DELE 2\r\n"), "+OK Marked to be deleted.\r\n");
        assert_eq!(run(&mut s, b"STAT\r\n"), "+OK 2 400\r\n");
        assert_eq!(
            run(&mut s, b"LIST\r\n"),
            "+OK 2 messages (400 octets)\r\n1 100\r\n3 300\r\n.\r\n"
        );
        assert_eq!(run(&mut s, b"UIDL\r\n"), "+OK\r\n1 uid1\r\n3 uid3\r\n.\r\n");
        assert_eq!(run(&mut s, b"LIST 2\r\n"), "-ERR Message 2 is deleted.\r\n");
        assert_eq!(run(&mut s, b"RETR 2\r\n"), "-ERR Message 2 is deleted.\r\n");
        assert_eq!(
            run(&mut s, b"TOP 2 0\r\n"),
            "-ERR Message 2 is deleted.\r\n"
        );
        assert_eq!(run(&mut s, b"DELE 2\r\n"), "-ERR Message 2 is deleted.\r\n");
        assert_eq!(run(&mut s, b"LIST 4\r\n"), "-ERR There's no message 4.\r\n");
        assert_eq!(run(&mut s, b"RSET\r\n"), "+OK\r\n");
        assert_eq!(run(&mut s, b"STAT\r\n"), "+OK 3 600\r\n");
        assert_eq!(run(&mut s, b"UIDL 2\r\n"), "+OK 2 uid2\r\n");
    }

    #[test]
    fn quit_commits_marked_messages() {
        let mut s = logged_in(ServerConfig::default(), &[1, 2, 3]);
        s.feed(b"DELE 3\r\nDELE 1\r\nQUIT\r\nNOOP\r\n");
        assert_eq!(
            s.next_event(),
            Some(Event::Commit {
                deleted: vec![
                    MessageNumber::new(1).unwrap(),
                    MessageNumber::new(3).unwrap()
                ]
            })
        );
        assert_eq!(s.state(), State::Update);
        assert_eq!(s.next_event(), None);
        s.commit_done(Ok(())).unwrap();
        assert!(s.is_closed());
        assert_eq!(s.next_event(), None);
        assert_eq!(
            s.take_output(),
            b"+OK Marked to be deleted.\r\n+OK Marked to be deleted.\r\n+OK Logging out, messages deleted.\r\n"
        );
    }

    #[test]
    fn commit_failure_reported() {
        let mut s = logged_in(ServerConfig::default(), &[1]);
        s.feed(b"QUIT\r\n");
        assert_eq!(s.next_event(), Some(Event::Commit { deleted: vec![] }));
        s.commit_done(Err(CommitFailure)).unwrap();
        assert_eq!(
            s.take_output(),
            b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n"
        );
    }

    #[test]
    fn dropped_connection_never_commits() {
        // A timeout (or simply dropping the session) never yields Commit.
        let mut s = logged_in(ServerConfig::default(), &[1]);
        s.feed(b"DELE 1\r\n");
        assert_eq!(s.next_event(), None);
        s.timed_out();
        assert!(s.is_closed());
        assert_eq!(s.next_event(), None);
        assert!(
            s.take_output()
                .ends_with(b"-ERR Disconnected for inactivity.\r\n")
        );
    }

    #[test]
    fn segments_and_chunks_give_the_same_wire() {
        let message: &[u8] = b"A: b\n\n.dot\r\nplain\r\nbare\n.x\nend";
        for top in [None, Some(1)] {
            let cmd: &[u8] = if top.is_some() {
                b"TOP 1 1\r\n"
            } else {
                b"RETR 1\r\n"
            };
            let mut copied = logged_in(ServerConfig::default(), &[40]);
            copied.feed(cmd);
            assert!(matches!(copied.next_event(), Some(Event::Retrieve(_))));
            for c in message.chunks(5) {
                copied.message_chunk(c).unwrap();
            }
            copied.message_end().unwrap();
            let want = copied.take_output();

            let mut s = logged_in(ServerConfig::default(), &[40]);
            s.feed(cmd);
            assert!(matches!(s.next_event(), Some(Event::Retrieve(_))));
            let mut wire = Vec::new();
            for (i, c) in message.chunks(5).enumerate() {
                let mut segs = Vec::new();
                // Mixed styles: every third chunk is copied.
                if i % 3 == 2 {
                    s.message_chunk(c).unwrap();
                } else {
                    s.message_segments(c, |seg| segs.push(seg)).unwrap();
                }
                wire.extend_from_slice(&s.take_output());
                segs.iter().for_each(|seg| wire.extend_from_slice(seg));
            }
            s.message_end().unwrap();
            wire.extend_from_slice(&s.take_output());
            assert_eq!(wire, want, "{top:?}");
            // Out of turn, it is a usage error like message_chunk.
            assert!(s.message_segments(b"x", |_| {}).is_err());
        }
    }

    #[test]
    fn retr_streams_with_stuffing_and_top_stops() {
        let mut s = logged_in(ServerConfig::default(), &[20]);
        s.feed(b"RETR 1\r\nTOP 1 1\r\n");
        let Some(Event::Retrieve(r)) = s.next_event() else {
            panic!()
        };
        assert_eq!(r.top_lines, None);
        assert_eq!(r.index, 0);
        assert_eq!(s.next_event(), None, "waits for the message");
        s.message_chunk(b"A: b\n\n.dot\n").unwrap();
        s.message_chunk(b"two\nthree").unwrap();
        s.message_end().unwrap();
        let Some(Event::Retrieve(r)) = s.next_event() else {
            panic!()
        };
        assert_eq!(r.top_lines, Some(1));
        assert_eq!(
            s.message_chunk(b"A: b\n\n.dot\n").unwrap(),
            BodyProgress::Done
        );
        assert_eq!(s.message_chunk(b"more").unwrap(), BodyProgress::Done);
        s.message_end().unwrap();
        assert_eq!(
            String::from_utf8(s.take_output()).unwrap(),
            "+OK 20 octets\r\nA: b\r\n\r\n..dot\r\ntwo\r\nthree\r\n.\r\n+OK\r\nA: b\r\n\r\n..dot\r\n.\r\n"
        );
    }

    #[test]
    fn retrieve_failure() {
        let mut s = logged_in(ServerConfig::default(), &[5, 5]);
        s.feed(b"RETR 1\r\n");
        assert!(matches!(s.next_event(), Some(Event::Retrieve(_))));
        s.message_failed().unwrap();
        assert_eq!(
            s.take_output(),
            b"-ERR [SYS/TEMP] Couldn't read the message.\r\n"
        );
        s.feed(b"RETR 2\r\n");
        assert!(matches!(s.next_event(), Some(Event::Retrieve(_))));
        s.message_chunk(b"x").unwrap();
        s.message_failed().unwrap();
        assert!(s.is_closed());
    }

    #[test]
    fn wrong_state_and_usage_errors() {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        s.take_output();
        assert_eq!(
            run(&mut s, b"STAT\r\nRETR 1\r\nNOOP\r\n"),
            "-ERR Command not allowed in this state.\r\n".repeat(3)
        );
        assert!(s.accept_login().is_err());
        assert!(s.message_chunk(b"x").is_err());
        assert!(s.commit_done(Ok(())).is_err());
        assert!(s.tls_established().is_err());
        assert_eq!(run(&mut s, b"PASS x\r\n"), "-ERR No username given.\r\n");
        let mut t = logged_in(ServerConfig::default(), &[]);
        assert_eq!(
            run(
                &mut t,
                b"USER joe\r\nSTLS\r\nAPOP a 0123456789abcdef0123456789abcdef\r\n"
            ),
            "-ERR Command not allowed in this state.\r\n".repeat(3)
        );
    }

    /// A web page's POST whose body is POP3 commands: the request line
    /// closes the session, so none of the body's logins runs (each wrong
    /// password would count against the customer's address). With
    /// `close_on_http` off, the USER line runs.
    #[test]
    fn an_http_request_closes_before_its_body_runs() {
        let request: &[u8] = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:110\r\n\r\n\
USER joe\r\nPASS guess\r\n";
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        s.take_output();
        assert_eq!(
            run(&mut s, request),
            "-ERR HTTP request to a POP3 server: closing.\r\n"
        );
        assert!(s.is_closed());
        let config = ServerConfig {
            close_on_http: false,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(config).unwrap();
        s.take_output();
        s.feed(request);
        assert!(matches!(s.next_event(), Some(Event::Login(_))));
        assert!(!s.is_closed());
    }

    #[test]
    fn bad_commands_close_after_limit() {
        let config = ServerConfig {
            max_bad_commands: 3,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(config).unwrap();
        s.take_output();
        assert_eq!(
            run(&mut s, b"FOO\r\nCAPA\r\nFOO\r\n")
                .matches("-ERR")
                .count(),
            2
        );
        assert!(!s.is_closed(), "a good command resets the count");
        let out = run(&mut s, b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
        assert!(
            out.ends_with("-ERR Too many invalid commands.\r\n"),
            "{out}"
        );
        assert!(s.is_closed());
    }

    #[test]
    fn auth_failures_close() {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        s.take_output();
        for i in 0..3 {
            s.feed(b"USER joe\r\nPASS bad\r\n");
            assert!(matches!(s.next_event(), Some(Event::Login(_))));
            s.reject_login(AuthFailure::Credentials).unwrap();
            assert_eq!(s.is_closed(), i == 2);
        }
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.ends_with(
            "-ERR [AUTH] Authentication failed.\r\n-ERR Too many authentication failures.\r\n"
        ));
    }

    #[test]
    fn sasl_plain_and_login() {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        s.take_output();
        // PLAIN with continuation.
        assert_eq!(run(&mut s, b"AUTH PLAIN\r\n"), "+ \r\n");
        s.feed(b"YWRtaW4Aam9lAHNlY3JldA==\r\n");
        let Some(Event::Login(req)) = s.next_event() else {
            panic!()
        };
        assert_eq!(req.user.as_str(), "joe");
        assert_eq!(req.authzid.as_deref(), Some("admin"));
        assert_eq!(req.mechanism, LoginMechanism::SaslPlain);
        assert!(req.check_secret("secret"));
        s.reject_login(AuthFailure::Credentials).unwrap();
        s.take_output();
        // LOGIN with continuation lines and a cancel.
        assert_eq!(run(&mut s, b"AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
        assert_eq!(
            run(&mut s, b"*\r\n"),
            "-ERR Authentication aborted by client.\r\n"
        );
        s.feed(b"AUTH LOGIN am9l\r\nc2VjcmV0\r\n");
        let Some(Event::Login(req)) = s.next_event() else {
            panic!()
        };
        assert_eq!(req.mechanism, LoginMechanism::SaslLogin);
        assert!(req.check_secret("secret"));
        s.accept_login().unwrap();
        assert!(matches!(s.next_event(), Some(Event::OpenMaildrop { .. })));
        s.maildrop_opened(vec![]).unwrap();
        assert_eq!(s.take_output(), b"+ UGFzc3dvcmQ6\r\n+OK Logged in.\r\n");
    }

    #[test]
    fn sasl_errors() {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        s.take_output();
        assert_eq!(
            run(&mut s, b"AUTH CRAM-MD5\r\n"),
            "-ERR Unsupported authentication mechanism.\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH PLAIN\r\n!!!\r\n"),
            "+ \r\n-ERR Invalid base64 data in continued response.\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH PLAIN =\r\n"),
            "-ERR [AUTH] Authentication failed.\r\n"
        );
        // SASL lines may be longer than command lines.
        let config = ServerConfig {
            max_auth_failures: 10,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(config).unwrap();
        s.take_output();
        let long = format!("AUTH PLAIN\r\n{}\r\n", "A".repeat(1000));
        assert_eq!(
            run(&mut s, long.as_bytes()),
            "+ \r\n-ERR [AUTH] Authentication failed.\r\n"
        );
        let too_long = format!("AUTH PLAIN\r\n{}\r\nCAPA\r\n", "A".repeat(5000));
        let out = run(&mut s, too_long.as_bytes());
        assert!(
            out.starts_with("+ \r\n-ERR Authentication line too long.\r\n+OK Capability"),
            "{out}"
        );
    }

    #[test]
    fn auth_list() {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        s.take_output();
        assert_eq!(run(&mut s, b"AUTH\r\n"), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
    }

    #[test]
    fn stls_discards_injected_plaintext() {
        let config = ServerConfig {
            tls_available: true,
            require_tls_for_login: true,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(config).unwrap();
        s.take_output();
        let capa = run(&mut s, b"CAPA\r\n");
        assert!(
            capa.contains("STLS\r\n") && !capa.contains("USER") && !capa.contains("SASL"),
            "{capa}"
        );
        assert!(run(&mut s, b"USER joe\r\n").starts_with("-ERR [AUTH] Plaintext"));
        assert!(run(&mut s, b"AUTH PLAIN\r\n").starts_with("-ERR [AUTH] Plaintext"));
        s.feed(b"STLS\r\nUSER evil\r\nPASS evil\r\n");
        assert_eq!(s.next_event(), Some(Event::StartTls));
        assert!(s.awaiting_tls());
        assert_eq!(s.next_event(), None);
        s.feed(b"QUIT\r\n");
        assert_eq!(s.take_output(), b"+OK Begin TLS negotiation now.\r\n");
        s.tls_established().unwrap();
        assert!(s.is_tls());
        assert_eq!(s.next_event(), None, "injected commands were discarded");
        assert_eq!(s.take_output(), b"");
        let capa = run(&mut s, b"CAPA\r\n");
        assert!(
            !capa.contains("STLS")
                && capa.contains("USER\r\n")
                && capa.contains("SASL PLAIN LOGIN"),
            "{capa}"
        );
        assert_eq!(run(&mut s, b"STLS\r\n"), "-ERR TLS already active.\r\n");
    }

    #[test]
    fn apop_login() {
        let config = ServerConfig {
            apop_timestamp: Some("<1896.697170952@dbc.mtview.ca.us>".into()),
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(config).unwrap();
        assert_eq!(
            s.take_output(),
            b"+OK Mailbag POP3 ready. <1896.697170952@dbc.mtview.ca.us>\r\n"
        );
        s.feed(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
        let Some(Event::Login(req)) = s.next_event() else {
            panic!()
        };
        assert_eq!(req.mechanism, LoginMechanism::Apop);
        assert!(req.check_secret("tanstaaf"));
        assert!(!req.check_secret("tanstaafl"));
        let bad = ServerConfig {
            apop_timestamp: Some("no brackets".into()),
            ..ServerConfig::default()
        };
        assert_eq!(
            ServerSession::new(bad).unwrap_err(),
            ConfigError::InvalidApopTimestamp
        );
    }

    #[test]
    fn config_validation() {
        // A greeting that would add a line, read back as a response code, or not fit
        // in a response line (with the APOP timestamp) is refused.
        for (greeting, ts) in [
            ("hi\r\n+OK fake".to_string(), None),
            ("[IN-USE] hi".to_string(), None),
            ("g".repeat(507), None),
            ("g".repeat(480), Some(format!("<{}@x>", "1".repeat(30)))),
        ] {
            let c = ServerConfig {
                greeting: greeting.clone(),
                apop_timestamp: ts,
                ..ServerConfig::default()
            };
            assert!(
                matches!(ServerSession::new(c), Err(ConfigError::InvalidText { .. })),
                "{greeting}"
            );
        }
        let c = ServerConfig {
            greeting: "g".repeat(506),
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(c).unwrap();
        assert_eq!(s.take_output().len(), 512);
        let c = ServerConfig {
            max_command_line: 100,
            ..ServerConfig::default()
        };
        assert_eq!(
            ServerSession::new(c).unwrap_err(),
            ConfigError::LineLimitTooSmall
        );
        // Limits that would make the session stop answering (the library probe's
        // zeros), as smtp-proto refuses its own.
        let zero = |f: fn(&mut ServerConfig)| {
            let mut c = ServerConfig::default();
            f(&mut c);
            ServerSession::new(c).unwrap_err()
        };
        assert_eq!(
            zero(|c| c.idle_timeout = Duration::ZERO),
            ConfigError::LimitTooSmall("idle_timeout")
        );
        // "Never" is a week: a longer timeout's deadline might overflow the
        // clock (Duration::MAX logged every client out at once).
        assert_eq!(
            zero(|c| c.idle_timeout = Duration::MAX),
            ConfigError::IdleTimeoutTooLong {
                max: MAX_IDLE_TIMEOUT
            }
        );
        let c = ServerConfig {
            idle_timeout: MAX_IDLE_TIMEOUT,
            ..ServerConfig::default()
        };
        assert!(ServerSession::new(c).is_ok());
        assert_eq!(
            zero(|c| c.max_bad_commands = 0),
            ConfigError::LimitTooSmall("max_bad_commands")
        );
        assert_eq!(
            zero(|c| c.max_auth_failures = 0),
            ConfigError::LimitTooSmall("max_auth_failures")
        );
        assert_eq!(
            zero(|c| c.max_pending_output = 0),
            ConfigError::LimitTooSmall("max_pending_output")
        );
        assert_eq!(
            zero(|c| c.max_pending_input = 1000),
            ConfigError::LimitTooSmall("max_pending_input")
        );
        assert!(matches!(
            zero(|c| c.implementation = Some(String::new())),
            ConfigError::InvalidText { .. }
        ));
    }

    #[test]
    fn capa_in_both_states_and_options() {
        let c = ServerConfig {
            utf8: true,
            lang: true,
            expire: Some(Expire::Never),
            login_delay: Some(900),
            implementation: Some("Mailbag test".into()),
            ..ServerConfig::default()
        };
        let s = ServerSession::new(c.clone()).unwrap();
        let before = s.capabilities();
        let t = logged_in(c, &[]);
        assert_eq!(before, t.capabilities());
        let mut text = Vec::new();
        for cap in &before {
            cap.encode(&mut text);
        }
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n\
             UTF8 USER\r\nLANG\r\nEXPIRE NEVER\r\nLOGIN-DELAY 900\r\nIMPLEMENTATION Mailbag test\r\n"
        );
    }

    #[test]
    fn utf8_and_lang() {
        let c = ServerConfig {
            utf8: true,
            lang: true,
            tls_available: true,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(c).unwrap();
        s.take_output();
        assert_eq!(run(&mut s, b"UTF8\r\n"), "+OK UTF8 enabled.\r\n");
        assert_eq!(
            run(&mut s, b"STLS\r\n"),
            "-ERR STLS not allowed after UTF8.\r\n"
        );
        assert_eq!(
            run(&mut s, b"LANG\r\n"),
            "+OK Language listing follows:\r\nen English\r\n.\r\n"
        );
        assert_eq!(
            run(&mut s, b"LANG fr\r\n"),
            "-ERR Unsupported language.\r\n"
        );
        assert_eq!(
            run(&mut s, b"LANG *\r\n"),
            "+OK en Language is English.\r\n"
        );
        let mut d = ServerSession::new(ServerConfig::default()).unwrap();
        d.take_output();
        assert_eq!(
            run(&mut d, b"UTF8\r\nLANG\r\n"),
            "-ERR Unknown command.\r\n".repeat(2)
        );
    }

    /// `Debug` of a session shows no password: not the `PASS` line just
    /// read (kept in the framer and the scratch line), not a SASL response,
    /// not an APOP digest.
    #[test]
    fn debug_output_holds_no_secret() {
        let c = ServerConfig {
            apop_timestamp: Some("<1.2@example.test>".into()),
            ..ServerConfig::default()
        };
        let inputs: [&[u8]; 3] = [
            b"USER joe\r\nPASS hunter2\r\n",
            b"AUTH PLAIN AGpvZQBodW50ZXIy\r\n",
            b"APOP joe c4c9334bac560ecc979e58001b3e22fb\r\n",
        ];
        for input in inputs {
            let mut s = ServerSession::new(c.clone()).unwrap();
            s.feed(input);
            s.feed(b"PASS hunter2");
            let event = s.next_event();
            assert!(matches!(event, Some(Event::Login(_))), "{event:?}");
            let shown = format!("{s:?} {event:?}");
            for secret in ["hunter2", "aHVudGVy", "AGpvZQBodW50ZXIy", "c4c9334b"] {
                // As text, and as the numbers a derived `Debug` of bytes shows.
                let numbers = format!("{:?}", secret.as_bytes());
                let numbers = &numbers[1..numbers.len() - 1];
                assert!(
                    !shown.contains(secret) && !shown.contains(numbers),
                    "{secret} in {shown}"
                );
            }
            assert!(shown.contains("input_len: 12"), "{shown}");
        }
    }

    #[test]
    fn passwords_are_octets_of_any_charset_until_utf8() {
        fn login_password(s: &mut ServerSession, input: &[u8]) -> Vec<u8> {
            s.feed(input);
            match s.next_event() {
                Some(Event::Login(LoginRequest {
                    credentials: Credentials::Password(p),
                    ..
                })) => p.expose().to_vec(),
                other => panic!("{other:?}"),
            }
        }
        let c = ServerConfig {
            utf8: true,
            max_auth_failures: 5,
            ..ServerConfig::default()
        };
        // "grün" from a client set up for Latin-1: by PASS, by SASL PLAIN
        // ("\0joe\0gr\xfcn") and by SASL LOGIN ("joe", then "gr\xfcn").
        let latin1: [&[u8]; 3] = [
            b"USER joe\r\nPASS gr\xfcn\r\n",
            b"AUTH PLAIN AGpvZQBncvxu\r\n",
            b"AUTH LOGIN\r\nam9l\r\nZ3L8bg==\r\n",
        ];
        for input in latin1 {
            let mut s = ServerSession::new(c.clone()).unwrap();
            s.take_output();
            assert_eq!(login_password(&mut s, input), b"gr\xfcn");
        }
        // After UTF8 the same octets are refused (RFC 6856 section 2), by
        // every command, and UTF-8 still logs in.
        let mut s = ServerSession::new(c).unwrap();
        s.take_output();
        assert_eq!(run(&mut s, b"UTF8\r\n"), "+OK UTF8 enabled.\r\n");
        let refused = [
            "+OK\r\n-ERR [AUTH] The password is not UTF-8.\r\n",
            "-ERR [AUTH] Authentication failed.\r\n",
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n-ERR [AUTH] Authentication failed.\r\n",
        ];
        for (input, reply) in latin1.into_iter().zip(refused) {
            assert_eq!(run(&mut s, input), reply);
        }
        assert_eq!(
            login_password(&mut s, b"USER joe\r\nPASS gr\xc3\xbcn\r\n"),
            "grün".as_bytes()
        );
    }

    #[test]
    fn backpressure_on_output() {
        let c = ServerConfig {
            max_pending_output: 10,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(c).unwrap();
        s.feed(b"CAPA\r\nCAPA\r\n");
        // The greeting (25 octets) is pending: nothing is processed.
        assert_eq!(s.next_event(), None);
        assert_eq!(s.take_output().len(), 25);
        assert_eq!(s.next_event(), None);
        let first = s.take_output();
        assert!(first.starts_with(b"+OK Capability") && first.ends_with(b".\r\n"));
        assert_eq!(s.next_event(), None);
        assert_eq!(s.take_output(), first);
    }

    #[test]
    fn partial_writes_do_not_accumulate() {
        let mut s = logged_in(ServerConfig::default(), &[1 << 20]);
        s.feed(b"RETR 1\r\n");
        assert!(matches!(s.next_event(), Some(Event::Retrieve(_))));
        let line = [b'x'; 1023];
        let mut chunk = line.to_vec();
        chunk.push(b'\n');
        for _ in 0..1024 {
            s.message_chunk(&chunk).unwrap();
            // The writer always leaves 100 octets behind.
            let n = s.output().len().saturating_sub(100);
            s.consume_output(n);
            assert!(s.out.len() < 16 * 1024, "buffer grew to {}", s.out.len());
        }
        s.message_end().unwrap();
        assert!(s.output().ends_with(b"\r\n.\r\n"));
    }

    #[test]
    fn output_consume_partial() {
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        let n = s.output().len();
        s.consume_output(4);
        assert_eq!(s.output(), b"Mailbag POP3 ready.\r\n");
        s.consume_output(n);
        assert!(s.output().is_empty());
    }
}
