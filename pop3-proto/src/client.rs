//! Sans-IO POP3 client session: the mirror image of
//! [`ServerSession`](crate::session::ServerSession).
//!
//! [`ClientSession`] is a deterministic state machine. The caller owns the
//! socket: it queues commands ([`ClientSession::stat`],
//! [`ClientSession::retr`], [`ClientSession::login_user_pass`], ...), writes
//! [`ClientSession::output`] to the socket, feeds what the server sends with
//! [`ClientSession::feed`], and pulls [`ClientEvent`]s with
//! [`ClientSession::next_event`] until it returns `None`.
//!
//! Every line the server sends is framed first by the crate's
//! [`LineFramer`] under a named limit ([`ClientOptions`]), then read with the
//! crate's parsers ([`parse_response_lossy`], [`parse_capability`],
//! [`parse_list_entry`], [`parse_uidl_entry`], [`parse_stat`]); commands are
//! written with [`Encode`]; RETR and TOP bodies are streamed through
//! [`BodyDecoder`] as [`ClientEvent::BodyChunk`]s of at most
//! [`ClientOptions::max_body_chunk`] octets, never held whole.
//!
//! # Ordering and pipelining
//!
//! Commands are sent in the order they were queued, and every reply is
//! matched to the oldest command still waiting for one. When the server has
//! advertised `PIPELINING` in its CAPA answer (and
//! [`ClientOptions::pipelining`] is on), queued commands go out together
//! (RFC 2449 section 6.6); otherwise one at a time, the next one when the
//! reply to the previous one is complete. `STLS` and `AUTH` always go out
//! alone: nothing is sent after them until their exchange is over. Nothing
//! is sent before the greeting.
//!
//! # Events
//!
//! Each queued command gives exactly one result: its event
//! ([`ClientEvent::Stat`], [`ClientEvent::List`], a `MessageStart`, chunks
//! and `MessageEnd`, ...) or [`ClientEvent::Error`] for a `-ERR` answer, with
//! its response code (`[IN-USE]`, `[AUTH]`, `[SYS/TEMP]`, ...). A login
//! (USER and PASS, APOP, AUTH) gives one [`ClientEvent::LoggedIn`] or one
//! `Error` (when USER is refused, the PASS is not sent, or its answer is not
//! reported when it was already pipelined). A reply the client cannot read,
//! or one over a limit, gives [`ClientEvent::ProtocolError`] and the session
//! closes ([`ClientEvent::Closed`]): a POP3 stream cannot be resynchronised.
//!
//! # STLS
//!
//! A login queued behind `STLS` is sent only over TLS: if the server
//! refuses STLS, the queued logins are dropped, each with an
//! [`ClientEvent::Error`] ("Not sent: STLS was refused."), and the rest of
//! the queue goes on.
//!
//! After [`ClientEvent::TlsReady`] ([`ClientSession::awaiting_tls`] is true),
//! write out all pending output, run the TLS handshake, then call
//! [`ClientSession::tls_established`]. Plaintext that arrived after the
//! `+OK` is discarded (RFC 2595 section 4), and the capabilities are
//! forgotten: ask for them again with [`ClientSession::capa`].
//!
//! # Examples
//!
//! A pipelined session (the RFC 2449 and RFC 1939 examples, abridged):
//!
//! ```
//! use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
//!
//! let mut c = ClientSession::new(ClientOptions::default());
//! c.capa()?;
//! c.feed(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
//! assert!(matches!(c.next_event(), Some(ClientEvent::Greeting { .. })));
//! assert_eq!(c.take_output(), b"CAPA\r\n");
//! c.feed(b"+OK Capability list follows\r\nTOP\r\nUSER\r\nPIPELINING\r\n.\r\n");
//! assert!(matches!(c.next_event(), Some(ClientEvent::Capabilities(_))));
//!
//! c.login_apop("mrose", "tanstaaf")?;
//! c.stat()?;
//! c.retr(1)?;
//! c.quit()?;
//! assert_eq!(
//!     c.take_output(),
//!     b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nSTAT\r\nRETR 1\r\nQUIT\r\n"
//! );
//! c.feed(b"+OK mrose's maildrop has 1 message (12 octets)\r\n+OK 1 12\r\n");
//! c.feed(b"+OK 12 octets\r\n..dot\r\nline\r\n.\r\n+OK dewey POP3 server signing off\r\n");
//! let mut events = Vec::new();
//! while let Some(e) = c.next_event() {
//!     events.push(e);
//! }
//! assert_eq!(events[0], ClientEvent::LoggedIn);
//! assert_eq!(events[1], ClientEvent::Stat { count: 1, size: 12 });
//! assert!(matches!(events[2], ClientEvent::MessageStart { .. }));
//! assert_eq!(events[3], ClientEvent::BodyChunk(b".dot\r\nline\r\n".to_vec()));
//! assert!(matches!(events[4], ClientEvent::MessageEnd { .. }));
//! assert_eq!(events[5], ClientEvent::Closed);
//! assert!(c.is_closed());
//! # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
//! ```

use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use alloc::collections::VecDeque;
use core::fmt;

use crate::codec::{
    BodyDecoder, DEFAULT_MAX_SASL_LINE, DecodeStatus, Encode, FrameError, LineFramer,
    MAX_COMMAND_LINE, MAX_RESPONSE_LINE, parse_capability, parse_list_entry, parse_response_lossy,
    parse_stat, parse_uidl_entry,
};
use crate::types::{
    ApopDigest, Capability, Command, ListEntry, Mechanism, MessageNumber, Password, Response,
    ResponseCode, SaslResponse, Secret, StatusResponse, UidlEntry, UserName, ValidationError,
};

/// Default [`ClientOptions::max_listing_entries`]: 65 536 lines of a LIST
/// or UIDL listing.
pub const DEFAULT_MAX_LISTING_ENTRIES: usize = 65_536;
/// Default [`ClientOptions::max_capabilities`]: 256 lines of a CAPA listing.
pub const DEFAULT_MAX_CAPABILITIES: usize = 256;
/// Default [`ClientOptions::max_body_chunk`]: 16 KiB per
/// [`ClientEvent::BodyChunk`].
pub const DEFAULT_MAX_BODY_CHUNK: usize = 16 * 1024;
/// Default [`ClientOptions::max_buffered_input`]: 128 KiB of server bytes
/// fed but not yet turned into events.
pub const DEFAULT_MAX_BUFFERED_INPUT: usize = 128 * 1024;

/// Client settings. Every field has a documented default
/// ([`ClientOptions::default`]); the struct is `#[non_exhaustive]`, so
/// start from the default and change fields.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::client::ClientOptions;
///
/// let mut options = ClientOptions::default();
/// options.pipelining = false;
/// assert_eq!(options.max_line, 512);
/// assert_eq!(options.max_listing_entries, 65_536);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Send queued commands together when the server advertises
    /// `PIPELINING`. Default: `true`.
    pub pipelining: bool,
    /// Send the SASL initial response with `AUTH` (RFC 5034 section 4) when
    /// the server's CAPA lists the mechanism under `SASL` and the command
    /// fits in 255 octets. Default: `true`.
    pub sasl_initial_response: bool,
    /// The connection is already TLS (port 995): [`ClientSession::stls`] is
    /// refused and [`ClientSession::is_tls`] is true. Default: `false`.
    pub implicit_tls: bool,
    /// Longest line of a reply (status line, CAPA/LIST/UIDL listing line),
    /// line end included. Default: 512 ([`MAX_RESPONSE_LINE`], RFC 2449
    /// section 4).
    pub max_line: usize,
    /// Longest SASL challenge line during `AUTH`, line end included.
    /// Default: 4096 ([`DEFAULT_MAX_SASL_LINE`]).
    pub max_sasl_line: usize,
    /// Most lines of a LIST or UIDL listing. Default: 65 536
    /// ([`DEFAULT_MAX_LISTING_ENTRIES`]).
    pub max_listing_entries: usize,
    /// Most lines of a CAPA listing. Default: 256
    /// ([`DEFAULT_MAX_CAPABILITIES`]).
    pub max_capabilities: usize,
    /// Most octets of one [`ClientEvent::BodyChunk`]. Default: 16 KiB
    /// ([`DEFAULT_MAX_BODY_CHUNK`]).
    pub max_body_chunk: usize,
    /// Most server octets held between [`ClientSession::feed`] and
    /// [`ClientSession::next_event`]; feeding more is a
    /// [`ProtocolError::InputOverflow`]. Call `next_event` until `None`
    /// after each `feed` and feed at most `max_buffered_input - max_line`
    /// octets at a time. Default: 128 KiB ([`DEFAULT_MAX_BUFFERED_INPUT`]).
    pub max_buffered_input: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            pipelining: true,
            sasl_initial_response: true,
            implicit_tls: false,
            max_line: MAX_RESPONSE_LINE,
            max_sasl_line: DEFAULT_MAX_SASL_LINE,
            max_listing_entries: DEFAULT_MAX_LISTING_ENTRIES,
            max_capabilities: DEFAULT_MAX_CAPABILITIES,
            max_body_chunk: DEFAULT_MAX_BODY_CHUNK,
            max_buffered_input: DEFAULT_MAX_BUFFERED_INPUT,
        }
    }
}

/// Which command a reply (or an [`ClientEvent::Error`]) belongs to.
///
/// ```
/// use mailbag_pop3_proto::client::CommandKind;
///
/// assert_eq!(CommandKind::Retr.as_str(), "RETR");
/// assert_eq!(CommandKind::Greeting.as_str(), "greeting");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandKind {
    /// Not a command: the server's greeting.
    Greeting,
    /// `CAPA`
    Capa,
    /// `STLS`
    Stls,
    /// `USER`
    User,
    /// `PASS`
    Pass,
    /// `APOP`
    Apop,
    /// `AUTH`
    Auth,
    /// `STAT`
    Stat,
    /// `LIST`
    List,
    /// `UIDL`
    Uidl,
    /// `RETR`
    Retr,
    /// `TOP`
    Top,
    /// `DELE`
    Dele,
    /// `RSET`
    Rset,
    /// `NOOP`
    Noop,
    /// `QUIT`
    Quit,
}

impl CommandKind {
    /// The command keyword, or `"greeting"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Greeting => "greeting",
            CommandKind::Capa => "CAPA",
            CommandKind::Stls => "STLS",
            CommandKind::User => "USER",
            CommandKind::Pass => "PASS",
            CommandKind::Apop => "APOP",
            CommandKind::Auth => "AUTH",
            CommandKind::Stat => "STAT",
            CommandKind::List => "LIST",
            CommandKind::Uidl => "UIDL",
            CommandKind::Retr => "RETR",
            CommandKind::Top => "TOP",
            CommandKind::Dele => "DELE",
            CommandKind::Rset => "RSET",
            CommandKind::Noop => "NOOP",
            CommandKind::Quit => "QUIT",
        }
    }
}

/// A reply the client could not accept. The session closes after it.
///
/// ```
/// use mailbag_pop3_proto::client::ProtocolError;
///
/// assert_eq!(ProtocolError::LineTooLong { max: 512 }.to_string(), "reply line longer than 512 octets");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reply line over [`ClientOptions::max_line`] (or
    /// [`ClientOptions::max_sasl_line`] during AUTH).
    #[error("reply line longer than {max} octets")]
    LineTooLong {
        /// The limit, line end included.
        max: usize,
    },
    /// A listing with more lines than [`ClientOptions::max_listing_entries`]
    /// or [`ClientOptions::max_capabilities`].
    #[error("listing longer than {max} lines")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// More than [`ClientOptions::max_buffered_input`] octets fed without
    /// reading events.
    #[error("more than {max} octets of input buffered")]
    InputOverflow {
        /// The limit.
        max: usize,
    },
    /// A reply that does not parse (not `+OK`/`-ERR`, a bad STAT, LIST or
    /// UIDL line).
    #[error("malformed reply to {}", command.as_str())]
    Malformed {
        /// The command the reply belongs to.
        command: CommandKind,
    },
    /// Data when no reply was expected, or a SASL challenge outside AUTH.
    #[error("unexpected data from the server")]
    Unexpected,
    /// The connection ended before the session did
    /// ([`ClientSession::connection_closed`]).
    #[error("the connection closed unexpectedly")]
    ConnectionClosed,
}

/// What the session reports. See the module documentation for which events
/// a command gives.
///
/// ```
/// use mailbag_pop3_proto::client::{ClientEvent, CommandKind};
/// use mailbag_pop3_proto::types::ResponseCode;
///
/// let e = ClientEvent::Error {
///     command: CommandKind::Pass,
///     code: Some(ResponseCode::Auth),
///     text: "Authentication failed.".into(),
/// };
/// assert!(matches!(e, ClientEvent::Error { code: Some(ResponseCode::Auth), .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server's `+OK` greeting.
    Greeting {
        /// The response code, if any.
        code: Option<ResponseCode<'static>>,
        /// The greeting text.
        text: String,
        /// The APOP timestamp (`<...@...>`, brackets included), if present.
        apop_timestamp: Option<String>,
    },
    /// The CAPA listing (also kept: [`ClientSession::capabilities`]).
    /// Lines that do not parse as a capability are left out.
    Capabilities(Vec<Capability<'static>>),
    /// STLS was accepted: write out all pending output, run the TLS
    /// handshake, then call [`ClientSession::tls_established`].
    TlsReady,
    /// USER/PASS, APOP or AUTH succeeded: the session is in the
    /// TRANSACTION state.
    LoggedIn,
    /// The STAT answer.
    Stat {
        /// Number of messages.
        count: u32,
        /// Size of the maildrop in octets.
        size: u64,
    },
    /// The LIST answer: every message, or the one asked for.
    List(Vec<ListEntry>),
    /// The UIDL answer: every message, or the one asked for.
    Uidl(Vec<UidlEntry<'static>>),
    /// RETR or TOP was accepted; [`ClientEvent::BodyChunk`]s follow, then
    /// [`ClientEvent::MessageEnd`].
    MessageStart {
        /// The message.
        number: MessageNumber,
    },
    /// Part of the message, dot-unstuffed, line ends as sent. Chunk
    /// boundaries depend on how the input was split.
    BodyChunk(Vec<u8>),
    /// The end of the message (the `.` line).
    MessageEnd {
        /// The message.
        number: MessageNumber,
    },
    /// DELE succeeded.
    Deleted {
        /// The message.
        number: MessageNumber,
    },
    /// RSET succeeded.
    Reset,
    /// NOOP succeeded.
    Noop,
    /// The server answered `-ERR` (to a `-ERR` greeting: it refuses the
    /// connection, and [`ClientEvent::Closed`] follows).
    Error {
        /// The command refused.
        command: CommandKind,
        /// The response code (`[AUTH]`, `[IN-USE]`, `[SYS/TEMP]`, ...).
        code: Option<ResponseCode<'static>>,
        /// The text after the status and code.
        text: String,
    },
    /// The server sent something the client cannot accept;
    /// [`ClientEvent::Closed`] follows.
    ProtocolError(ProtocolError),
    /// The session is over (QUIT answered, greeting refused, or a protocol
    /// error): close the connection.
    Closed,
}

/// A call the session refuses (misuse, not a server failure).
///
/// ```
/// use mailbag_pop3_proto::client::{ClientError, ClientOptions, ClientSession};
///
/// let mut c = ClientSession::new(ClientOptions::default());
/// assert!(matches!(c.retr(0), Err(ClientError::Invalid(_))));
/// c.quit().unwrap();
/// assert_eq!(c.noop(), Err(ClientError::Closed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The session is closed, or QUIT is already queued.
    #[error("the POP3 client session is closed")]
    Closed,
    /// The call does not fit the session's state (a second login, STLS
    /// over TLS or after login, `tls_established` while not awaiting TLS,
    /// APOP without a greeting timestamp).
    #[error("the POP3 client session is not in a state for this call")]
    WrongState,
    /// An argument that cannot be sent (message number 0, a user name with
    /// a space, a password with a control character).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// The error for an argument that makes its command line longer than a server
/// must take (RFC 2449 section 4: 255 octets, CRLF included).
fn too_long(what: &'static str) -> ValidationError {
    ValidationError::new(what, "makes the command line longer than 255 octets")
}

/// Refuses a command whose line a server need not take ([`MAX_COMMAND_LINE`]).
fn fits_command_line(cmd: &Command<'_>, what: &'static str) -> Result<(), ValidationError> {
    if cmd.to_bytes().len() > MAX_COMMAND_LINE {
        return Err(too_long(what));
    }
    Ok(())
}

/// A SASL mechanism the client runs itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sasl {
    Plain,
    Login,
}

/// Credentials kept until a SASL exchange ends (redacted in `Debug`).
#[derive(Debug)]
struct SaslCreds {
    authzid: Option<String>,
    user: String,
    secret: Secret<String>,
}

/// A command not yet sent.
#[derive(Debug)]
enum Queued {
    /// Built when queued.
    Ready(Command<'static>, Pending),
    /// The digest needs the greeting's timestamp.
    Apop {
        user: UserName<'static>,
        secret: Secret<String>,
    },
    /// The initial response depends on the capabilities.
    Auth { mech: Sasl, creds: SaslCreds },
}

impl Queued {
    fn is_barrier(&self) -> bool {
        matches!(self, Queued::Auth { .. } | Queued::Ready(_, Pending::Stls))
    }
}

/// A command sent and waiting for its reply.
#[derive(Debug)]
enum Pending {
    Greeting,
    Capa,
    Stls,
    User,
    /// `silent`: the USER before it was refused; its answer is not reported.
    Pass {
        silent: bool,
    },
    Apop,
    /// `step`: challenges answered so far (the initial response counts).
    Auth {
        mech: Sasl,
        step: u8,
        creds: SaslCreds,
    },
    Stat,
    List(Option<MessageNumber>),
    Uidl(Option<MessageNumber>),
    Retr(MessageNumber),
    Top(MessageNumber),
    Dele(MessageNumber),
    Rset,
    Noop,
    Quit,
}

impl Pending {
    fn kind(&self) -> CommandKind {
        match self {
            Pending::Greeting => CommandKind::Greeting,
            Pending::Capa => CommandKind::Capa,
            Pending::Stls => CommandKind::Stls,
            Pending::User => CommandKind::User,
            Pending::Pass { .. } => CommandKind::Pass,
            Pending::Apop => CommandKind::Apop,
            Pending::Auth { .. } => CommandKind::Auth,
            Pending::Stat => CommandKind::Stat,
            Pending::List(_) => CommandKind::List,
            Pending::Uidl(_) => CommandKind::Uidl,
            Pending::Retr(_) => CommandKind::Retr,
            Pending::Top(_) => CommandKind::Top,
            Pending::Dele(_) => CommandKind::Dele,
            Pending::Rset => CommandKind::Rset,
            Pending::Noop => CommandKind::Noop,
            Pending::Quit => CommandKind::Quit,
        }
    }

    /// Nothing is sent after it until its reply is complete.
    fn is_barrier(&self) -> bool {
        matches!(
            self,
            Pending::Greeting | Pending::Stls | Pending::Auth { .. } | Pending::Quit
        )
    }
}

/// What the next input is.
#[derive(Debug)]
enum Reading {
    /// The first line of a reply.
    Status,
    /// Lines of a CAPA listing.
    Capa(Vec<Capability<'static>>),
    /// Lines of a LIST listing.
    List(Vec<ListEntry>),
    /// Lines of a UIDL listing.
    Uidl(Vec<UidlEntry<'static>>),
    /// A RETR or TOP body.
    Body(BodyDecoder, MessageNumber),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    AwaitingTls,
    Closed,
}

/// The POP3 client state machine. See the [module documentation](self).
///
/// `Debug` shows the state, never the output buffer (it may hold a
/// password) nor buffered input.
///
/// # Examples
///
/// USER/PASS against a server without PIPELINING: one command at a time.
///
/// ```
/// use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
///
/// let mut c = ClientSession::new(ClientOptions::default());
/// c.login_user_pass("joe", "secret")?;
/// c.list(None)?;
/// assert!(c.output().is_empty()); // nothing before the greeting
/// c.feed(b"+OK ready\r\n");
/// assert!(matches!(c.next_event(), Some(ClientEvent::Greeting { .. })));
/// assert_eq!(c.take_output(), b"USER joe\r\n");
/// c.feed(b"+OK\r\n");
/// assert_eq!(c.next_event(), None);
/// assert_eq!(c.take_output(), b"PASS secret\r\n");
/// c.feed(b"+OK Logged in.\r\n");
/// assert_eq!(c.next_event(), Some(ClientEvent::LoggedIn));
/// assert_eq!(c.take_output(), b"LIST\r\n");
/// c.feed(b"+OK 1 messages\r\n1 120\r\n.\r\n");
/// let Some(ClientEvent::List(list)) = c.next_event() else { panic!() };
/// assert_eq!((list[0].number.get(), list[0].size), (1, 120));
/// assert!(format!("{c:?}").find("secret").is_none());
/// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
/// ```
pub struct ClientSession {
    options: ClientOptions,
    framer: LineFramer,
    reading: Reading,
    in_flight: VecDeque<Pending>,
    queued: VecDeque<Queued>,
    events: VecDeque<ClientEvent>,
    output: Vec<u8>,
    phase: Phase,
    capabilities: Vec<Capability<'static>>,
    apop_timestamp: Option<String>,
    greeted: bool,
    logged_in: bool,
    login_queued: bool,
    quit_queued: bool,
    tls: bool,
}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase)
            .field(
                "in_flight",
                &self.in_flight.iter().map(Pending::kind).collect::<Vec<_>>(),
            )
            .field("queued", &self.queued.len())
            .field("events", &self.events.len())
            .field("output_len", &self.output.len())
            .field("input_len", &self.framer.buffered_len())
            .field("capabilities", &self.capabilities)
            .field("logged_in", &self.logged_in)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn number(n: u32) -> Result<MessageNumber, ClientError> {
    Ok(MessageNumber::try_from(n)?)
}

fn owned_text(s: &StatusResponse<'_>) -> String {
    s.text().to_string()
}

impl ClientSession {
    /// A session waiting for the server's greeting.
    ///
    /// ```
    /// use mailbag_pop3_proto::client::{ClientOptions, ClientSession};
    ///
    /// let c = ClientSession::new(ClientOptions::default());
    /// assert!(!c.is_closed() && !c.is_logged_in() && !c.is_tls());
    /// ```
    pub fn new(options: ClientOptions) -> Self {
        let tls = options.implicit_tls;
        Self {
            options,
            framer: LineFramer::new(),
            reading: Reading::Status,
            in_flight: VecDeque::from([Pending::Greeting]),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            output: Vec::new(),
            phase: Phase::Open,
            capabilities: Vec::new(),
            apop_timestamp: None,
            greeted: false,
            logged_in: false,
            login_queued: false,
            quit_queued: false,
            tls,
        }
    }

    /// The options in force.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// assert_eq!(c.options().max_line, 512);
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Hands over bytes received from the server; read the events with
    /// [`ClientSession::next_event`]. Ignored once the session is closed
    /// and while awaiting the TLS handshake. More than
    /// [`ClientOptions::max_buffered_input`] octets waiting is a
    /// [`ProtocolError::InputOverflow`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.noop()?;
    /// assert_eq!(c.take_output(), b"NOOP\r\n");
    /// c.feed(b"+O");
    /// assert_eq!(c.next_event(), None); // a partial line
    /// c.feed(b"K\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::Noop));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn feed(&mut self, data: &[u8]) {
        if self.phase != Phase::Open || data.is_empty() {
            return;
        }
        let max = self.options.max_buffered_input;
        if self.framer.buffered_len().saturating_add(data.len()) > max {
            self.fail(ProtocolError::InputOverflow { max });
            return;
        }
        self.framer.push(data);
    }

    /// Whether the session can take more input now: open, not awaiting TLS,
    /// and less than [`ClientOptions::max_line`] octets waiting (call
    /// [`ClientSession::next_event`] until `None` to get there).
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// assert!(c.wants_input());
    /// c.feed(&[b'a'; 600]); // no line end yet: dropped past the limit
    /// assert_eq!(c.next_event(), None);
    /// assert!(c.wants_input());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn wants_input(&self) -> bool {
        self.phase == Phase::Open && self.framer.buffered_len() < self.options.max_line
    }

    /// Octets fed and not yet turned into events; never more than
    /// [`ClientOptions::max_buffered_input`].
    ///
    /// ```
    /// use mailbag_pop3_proto::client::{ClientOptions, ClientSession};
    ///
    /// let mut c = ClientSession::new(ClientOptions::default());
    /// c.feed(b"+OK ready\r\n+OK");
    /// assert_eq!(c.buffered_input(), 14);
    /// c.next_event();
    /// assert_eq!(c.buffered_input(), 3);
    /// ```
    pub fn buffered_input(&self) -> usize {
        self.framer.buffered_len()
    }

    /// The next event, or `None` when more input is needed.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.stat()?;
    /// c.feed(b"+OK 2 320\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::Stat { count: 2, size: 320 }));
    /// assert_eq!(c.next_event(), None);
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn next_event(&mut self) -> Option<ClientEvent> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.phase != Phase::Open || !self.step() {
                return None;
            }
        }
    }

    /// Bytes to write to the server.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.noop()?;
    /// assert_eq!(c.output(), b"NOOP\r\n");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Marks the first `n` octets of [`ClientSession::output`] as written.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.noop()?;
    /// c.consume_output(2); // a short write
    /// assert_eq!(c.output(), b"OP\r\n");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn consume_output(&mut self, n: usize) {
        self.output.drain(..n.min(self.output.len()));
    }

    /// Takes all pending output.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.rset()?;
    /// assert_eq!(c.take_output(), b"RSET\r\n");
    /// assert!(c.output().is_empty());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// The capabilities from the last CAPA answer (empty before one, and
    /// again after STLS).
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.capa()?;
    /// c.take_output();
    /// c.feed(b"+OK\r\nUIDL\r\nPIPELINING\r\n.\r\n");
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Capabilities(_))));
    /// assert_eq!(c.capabilities().len(), 2);
    /// assert!(c.is_pipelining());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn capabilities(&self) -> &[Capability<'static>] {
        &self.capabilities
    }

    /// The APOP timestamp of the greeting, if it had one.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// let mut c = ClientSession::new(ClientOptions::default());
    /// c.feed(b"+OK ready <1.2@host>\r\n");
    /// c.next_event();
    /// assert_eq!(c.apop_timestamp(), Some("<1.2@host>"));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn apop_timestamp(&self) -> Option<&str> {
        self.apop_timestamp.as_deref()
    }

    /// Whether queued commands are sent together (the server advertised
    /// `PIPELINING` and [`ClientOptions::pipelining`] is on).
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// assert!(!c.is_pipelining()); // no CAPA yet
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn is_pipelining(&self) -> bool {
        self.options.pipelining && self.capabilities.contains(&Capability::Pipelining)
    }

    /// Whether a login succeeded.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.login_user_pass("joe", "secret")?;
    /// c.feed(b"+OK\r\n+OK\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::LoggedIn));
    /// assert!(c.is_logged_in());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// Whether the connection is TLS (implicit, or after STLS).
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// let mut options = ClientOptions::default();
    /// options.implicit_tls = true;
    /// assert!(ClientSession::new(options).is_tls());
    /// assert!(!c.is_tls());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether STLS was accepted and the caller must now run the TLS
    /// handshake, then call [`ClientSession::tls_established`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.stls()?;
    /// c.feed(b"+OK\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::TlsReady));
    /// assert!(c.awaiting_tls());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn awaiting_tls(&self) -> bool {
        self.phase == Phase::AwaitingTls
    }

    /// Whether the session is over.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.quit()?;
    /// c.feed(b"+OK bye\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::Closed));
    /// assert!(c.is_closed());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether every queued command has been answered.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.noop()?;
    /// assert!(!c.is_idle());
    /// c.feed(b"+OK\r\n");
    /// c.next_event();
    /// assert!(c.is_idle());
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.queued.is_empty()
    }

    /// The TLS handshake after [`ClientEvent::TlsReady`] succeeded: queued
    /// commands are sent again, now over TLS. The capabilities are
    /// forgotten (RFC 2595 section 4); queue [`ClientSession::capa`] to
    /// learn them again.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.stls()?;
    /// c.feed(b"+OK\r\n");
    /// c.next_event();
    /// assert!(c.tls_established().is_ok());
    /// assert!(c.is_tls());
    /// assert!(c.tls_established().is_err()); // not awaiting TLS any more
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn tls_established(&mut self) -> Result<(), ClientError> {
        if self.phase != Phase::AwaitingTls {
            return Err(ClientError::WrongState);
        }
        self.phase = Phase::Open;
        self.tls = true;
        self.framer.clear();
        self.capabilities.clear();
        self.flush();
        Ok(())
    }

    /// The connection ended (EOF or a socket error). Call
    /// [`ClientSession::next_event`] until `None` first. Unless the session
    /// was closed or QUIT was being answered, a
    /// [`ProtocolError::ConnectionClosed`] is reported; then
    /// [`ClientEvent::Closed`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.retr(1)?;
    /// c.feed(b"+OK\r\npart of a mess");
    /// while c.next_event().is_some() {}
    /// c.connection_closed();
    /// assert!(matches!(c.next_event(), Some(ClientEvent::ProtocolError(_))));
    /// assert_eq!(c.next_event(), Some(ClientEvent::Closed));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn connection_closed(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        if matches!(self.in_flight.front(), Some(Pending::Quit)) {
            self.close();
        } else {
            self.fail(ProtocolError::ConnectionClosed);
        }
    }

    /// Queues `CAPA`; gives [`ClientEvent::Capabilities`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.capa()?;
    /// assert_eq!(c.take_output(), b"CAPA\r\n");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn capa(&mut self) -> Result<(), ClientError> {
        self.queue_cmd(Command::Capa, Pending::Capa)
    }

    /// Queues `STLS`; gives [`ClientEvent::TlsReady`]. Refused over TLS or
    /// after a login (or with one queued). Logins queued after it are sent
    /// only once TLS is established, never if STLS is refused.
    ///
    /// ```
    /// use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession, CommandKind};
    ///
    /// let mut c = ClientSession::new(ClientOptions::default());
    /// c.stls()?;
    /// c.login_user_pass("joe", "secret")?;
    /// c.feed(b"+OK ready\r\n");
    /// c.next_event();
    /// assert_eq!(c.take_output(), b"STLS\r\n");
    /// c.feed(b"+OK Begin TLS\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::TlsReady));
    /// // ... the TLS handshake on the socket ...
    /// c.tls_established()?;
    /// assert_eq!(c.take_output(), b"USER joe\r\n");
    ///
    /// // Refused: the login is not sent in plaintext.
    /// let mut c = ClientSession::new(ClientOptions::default());
    /// c.stls()?;
    /// c.login_user_pass("joe", "secret")?;
    /// c.feed(b"+OK ready\r\n-ERR no TLS here\r\n");
    /// c.next_event();
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Error { command: CommandKind::Stls, .. })));
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Error { command: CommandKind::User, .. })));
    /// assert_eq!(c.take_output(), b"STLS\r\n");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn stls(&mut self) -> Result<(), ClientError> {
        if self.tls || self.logged_in || self.login_queued {
            return Err(ClientError::WrongState);
        }
        self.queue_cmd(Command::Stls, Pending::Stls)
    }

    /// Queues `USER` and `PASS`; gives [`ClientEvent::LoggedIn`] or one
    /// [`ClientEvent::Error`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// use mailbag_pop3_proto::types::ResponseCode;
    ///
    /// c.login_user_pass("joe", "wrong")?;
    /// assert_eq!(c.take_output(), b"USER joe\r\n");
    /// c.feed(b"+OK\r\n");
    /// c.next_event();
    /// assert_eq!(c.take_output(), b"PASS wrong\r\n");
    /// c.feed(b"-ERR [AUTH] Authentication failed.\r\n");
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Error { code: Some(ResponseCode::Auth), .. })));
    /// assert!(c.login_user_pass("jo e", "x").is_err()); // a space in the user name
    /// assert!(c.login_user_pass("joe", "").is_err()); // no password
    /// assert!(c.login_user_pass(&"j".repeat(249), "x").is_err()); // `USER` over 255 octets
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn login_user_pass(&mut self, user: &str, secret: &str) -> Result<(), ClientError> {
        self.check_login()?;
        let user = UserName::try_from(user.to_string())?;
        // `PASS` takes a string (RFC 1939 section 7): an empty one is no password.
        if secret.is_empty() {
            return Err(crate::types::ValidationError::new("password", "is empty").into());
        }
        let pass = Password::try_from(secret.to_string())?;
        let (user, pass) = (Command::User(user), Command::Pass(pass));
        fits_command_line(&user, "user name")?;
        fits_command_line(&pass, "password")?;
        self.queued.push_back(Queued::Ready(user, Pending::User));
        self.queued
            .push_back(Queued::Ready(pass, Pending::Pass { silent: false }));
        self.login_queued = true;
        self.flush();
        Ok(())
    }

    /// Queues `APOP` with the MD5 digest of the greeting's timestamp and the
    /// secret ([`ApopDigest::compute`]). Refused when the greeting has come
    /// without a timestamp; if it has not come yet and has none, the login
    /// gives an [`ClientEvent::Error`] without sending anything.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// let mut c = ClientSession::new(ClientOptions::default());
    /// c.feed(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
    /// c.next_event();
    /// c.login_apop("mrose", "tanstaaf")?;
    /// assert_eq!(c.take_output(), b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn login_apop(&mut self, user: &str, secret: &str) -> Result<(), ClientError> {
        self.check_login()?;
        if self.greeted && self.apop_timestamp.is_none() {
            return Err(ClientError::WrongState);
        }
        let user = UserName::try_from(user.to_string())?;
        // `APOP name digest`: the digest is 32 hex digits.
        if "APOP ".len() + user.as_str().len() + 1 + 32 + 2 > MAX_COMMAND_LINE {
            return Err(too_long("user name").into());
        }
        self.queued.push_back(Queued::Apop {
            user,
            secret: Secret::new(secret.to_string()),
        });
        self.login_queued = true;
        self.flush();
        Ok(())
    }

    /// Queues `AUTH PLAIN` (RFC 4616); `authzid` is the identity to act as,
    /// if not the user's own. The credentials go in the initial response
    /// when [`ClientOptions::sasl_initial_response`] allows, else after the
    /// server's empty challenge.
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.login_sasl_plain(None, "joe", "secret")?;
    /// assert_eq!(c.take_output(), b"AUTH PLAIN\r\n"); // no CAPA: no initial response
    /// c.feed(b"+ \r\n");
    /// assert_eq!(c.next_event(), None);
    /// assert_eq!(c.take_output(), b"AGpvZQBzZWNyZXQ=\r\n");
    /// c.feed(b"+OK\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::LoggedIn));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn login_sasl_plain(
        &mut self,
        authzid: Option<&str>,
        user: &str,
        secret: &str,
    ) -> Result<(), ClientError> {
        self.queue_sasl(Sasl::Plain, authzid, user, secret)
    }

    /// Queues `AUTH LOGIN`: the user name and the password as answers to
    /// two challenges (the user name as the initial response when
    /// [`ClientOptions::sasl_initial_response`] allows).
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.login_sasl_login("joe", "secret")?;
    /// assert_eq!(c.take_output(), b"AUTH LOGIN\r\n");
    /// c.feed(b"+ VXNlcm5hbWU6\r\n");
    /// c.next_event();
    /// assert_eq!(c.take_output(), b"am9l\r\n");
    /// c.feed(b"+ UGFzc3dvcmQ6\r\n");
    /// c.next_event();
    /// assert_eq!(c.take_output(), b"c2VjcmV0\r\n");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn login_sasl_login(&mut self, user: &str, secret: &str) -> Result<(), ClientError> {
        self.queue_sasl(Sasl::Login, None, user, secret)
    }

    /// Queues `STAT`; gives [`ClientEvent::Stat`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.stat()?;
    /// assert_eq!(c.take_output(), b"STAT\r\n");
    /// c.feed(b"+OK 0 0\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::Stat { count: 0, size: 0 }));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn stat(&mut self) -> Result<(), ClientError> {
        self.queue_cmd(Command::Stat, Pending::Stat)
    }

    /// Queues `LIST` (`None`: every message); gives [`ClientEvent::List`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.list(Some(2))?;
    /// assert_eq!(c.take_output(), b"LIST 2\r\n");
    /// c.feed(b"+OK 2 200\r\n");
    /// let Some(ClientEvent::List(l)) = c.next_event() else { panic!() };
    /// assert_eq!((l[0].number.get(), l[0].size), (2, 200));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn list(&mut self, msg: Option<u32>) -> Result<(), ClientError> {
        let n = msg.map(number).transpose()?;
        self.queue_cmd(Command::List(n), Pending::List(n))
    }

    /// Queues `UIDL` (`None`: every message); gives [`ClientEvent::Uidl`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.uidl(None)?;
    /// assert_eq!(c.take_output(), b"UIDL\r\n");
    /// c.feed(b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n");
    /// let Some(ClientEvent::Uidl(u)) = c.next_event() else { panic!() };
    /// assert_eq!(u[1].uid.as_str(), "QhdPYR:00WBw1Ph7x7");
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn uidl(&mut self, msg: Option<u32>) -> Result<(), ClientError> {
        let n = msg.map(number).transpose()?;
        self.queue_cmd(Command::Uidl(n), Pending::Uidl(n))
    }

    /// Queues `RETR msg`; gives [`ClientEvent::MessageStart`], body chunks
    /// and [`ClientEvent::MessageEnd`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.retr(1)?;
    /// assert_eq!(c.take_output(), b"RETR 1\r\n");
    /// c.feed(b"+OK\r\nSubject: x\r\n\r\n..hi\r\n.\r\n");
    /// assert!(matches!(c.next_event(), Some(ClientEvent::MessageStart { .. })));
    /// assert_eq!(c.next_event(), Some(ClientEvent::BodyChunk(b"Subject: x\r\n\r\n.hi\r\n".to_vec())));
    /// assert!(matches!(c.next_event(), Some(ClientEvent::MessageEnd { .. })));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn retr(&mut self, msg: u32) -> Result<(), ClientError> {
        let n = number(msg)?;
        self.queue_cmd(Command::Retr(n), Pending::Retr(n))
    }

    /// Queues `TOP msg lines` (the header and `lines` body lines); gives
    /// the same events as [`ClientSession::retr`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.top(1, 0)?;
    /// assert_eq!(c.take_output(), b"TOP 1 0\r\n");
    /// assert!(c.top(0, 0).is_err()); // message numbers start at 1
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn top(&mut self, msg: u32, lines: u32) -> Result<(), ClientError> {
        let n = number(msg)?;
        self.queue_cmd(Command::Top { msg: n, lines }, Pending::Top(n))
    }

    /// Queues `DELE msg`; gives [`ClientEvent::Deleted`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.dele(3)?;
    /// assert_eq!(c.take_output(), b"DELE 3\r\n");
    /// c.feed(b"+OK message 3 deleted\r\n");
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Deleted { number }) if number.get() == 3));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn dele(&mut self, msg: u32) -> Result<(), ClientError> {
        let n = number(msg)?;
        self.queue_cmd(Command::Dele(n), Pending::Dele(n))
    }

    /// Queues `RSET`; gives [`ClientEvent::Reset`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.rset()?;
    /// c.feed(b"+OK\r\n");
    /// assert_eq!(c.next_event(), Some(ClientEvent::Reset));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn rset(&mut self) -> Result<(), ClientError> {
        self.queue_cmd(Command::Rset, Pending::Rset)
    }

    /// Queues `NOOP`; gives [`ClientEvent::Noop`].
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.noop()?;
    /// c.feed(b"-ERR [SYS/TEMP] busy\r\n");
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Error { .. })));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn noop(&mut self) -> Result<(), ClientError> {
        self.queue_cmd(Command::Noop, Pending::Noop)
    }

    /// Queues `QUIT` (the last command); gives [`ClientEvent::Closed`]
    /// (after an [`ClientEvent::Error`] if the server could not remove the
    /// deleted messages).
    ///
    /// ```
    /// # use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
    /// # let mut c = ClientSession::new(ClientOptions::default());
    /// # c.feed(b"+OK ready\r\n");
    /// # c.next_event();
    /// c.quit()?;
    /// assert!(c.noop().is_err()); // nothing after QUIT
    /// assert_eq!(c.take_output(), b"QUIT\r\n");
    /// c.feed(b"-ERR some deleted messages not removed\r\n");
    /// assert!(matches!(c.next_event(), Some(ClientEvent::Error { .. })));
    /// assert_eq!(c.next_event(), Some(ClientEvent::Closed));
    /// # Ok::<(), mailbag_pop3_proto::client::ClientError>(())
    /// ```
    pub fn quit(&mut self) -> Result<(), ClientError> {
        self.queue_cmd(Command::Quit, Pending::Quit)?;
        self.quit_queued = true;
        Ok(())
    }

    // ---- internals ----

    fn check_open(&self) -> Result<(), ClientError> {
        if self.phase == Phase::Closed || self.quit_queued {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_login(&self) -> Result<(), ClientError> {
        self.check_open()?;
        if self.logged_in || self.login_queued {
            Err(ClientError::WrongState)
        } else {
            Ok(())
        }
    }

    fn queue_cmd(&mut self, cmd: Command<'static>, pending: Pending) -> Result<(), ClientError> {
        self.check_open()?;
        self.queued.push_back(Queued::Ready(cmd, pending));
        self.flush();
        Ok(())
    }

    fn queue_sasl(
        &mut self,
        mech: Sasl,
        authzid: Option<&str>,
        user: &str,
        secret: &str,
    ) -> Result<(), ClientError> {
        self.check_login()?;
        // The user name must be one the protocol can carry.
        UserName::try_from(user)?;
        self.queued.push_back(Queued::Auth {
            mech,
            creds: SaslCreds {
                authzid: authzid.map(str::to_string),
                user: user.to_string(),
                secret: Secret::new(secret.to_string()),
            },
        });
        self.login_queued = true;
        self.flush();
        Ok(())
    }

    /// Sends what may be sent now.
    fn flush(&mut self) {
        while self.phase == Phase::Open {
            let Some(next) = self.queued.front() else {
                break;
            };
            if let Some(last) = self.in_flight.back()
                && (!self.is_pipelining() || last.is_barrier() || next.is_barrier())
            {
                break;
            }
            let Some(next) = self.queued.pop_front() else {
                break;
            };
            self.send(next);
        }
    }

    fn send(&mut self, q: Queued) {
        match q {
            Queued::Ready(cmd, pending) => {
                cmd.encode(&mut self.output);
                self.in_flight.push_back(pending);
            }
            Queued::Apop { user, secret } => match self.apop_timestamp.as_deref() {
                Some(ts) => {
                    let digest = ApopDigest::compute(ts, secret.expose());
                    Command::Apop { name: user, digest }.encode(&mut self.output);
                    self.in_flight.push_back(Pending::Apop);
                }
                None => {
                    self.login_queued = false;
                    self.events.push_back(ClientEvent::Error {
                        command: CommandKind::Apop,
                        code: None,
                        text: "The greeting has no APOP timestamp; APOP not sent.".into(),
                    });
                }
            },
            Queued::Auth { mech, creds } => {
                let mechanism = match mech {
                    Sasl::Plain => Mechanism::PLAIN,
                    Sasl::Login => Mechanism::LOGIN,
                };
                let advertised = self
                    .capabilities
                    .iter()
                    .any(|c| matches!(c, Capability::Sasl(m) if m.contains(&mechanism)));
                let mut step = 0;
                let mut cmd = Command::Auth {
                    mechanism: mechanism.clone(),
                    initial_response: None,
                };
                if self.options.sasl_initial_response && advertised {
                    let with_ir = Command::Auth {
                        mechanism,
                        initial_response: Some(Secret::new(sasl_data(mech, 0, &creds))),
                    };
                    // RFC 5034 section 4: the command must fit in 255 octets.
                    if with_ir.to_bytes().len() <= MAX_COMMAND_LINE {
                        cmd = with_ir;
                        step = 1;
                    }
                }
                cmd.encode(&mut self.output);
                self.in_flight
                    .push_back(Pending::Auth { mech, step, creds });
            }
        }
    }

    /// Reports a protocol error and closes.
    fn fail(&mut self, e: ProtocolError) {
        if self.phase == Phase::Closed {
            return;
        }
        self.events.push_back(ClientEvent::ProtocolError(e));
        self.close();
    }

    fn close(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.events.push_back(ClientEvent::Closed);
        self.framer.clear();
        self.queued.clear();
        self.in_flight.clear();
        self.reading = Reading::Status;
    }

    /// Reads one piece of input. Returns whether anything happened.
    fn step(&mut self) -> bool {
        match &mut self.reading {
            Reading::Body(decoder, n) => {
                let number = *n;
                let pending = self.framer.pending();
                if pending.is_empty() {
                    return false;
                }
                let take = pending.len().min(self.options.max_body_chunk.max(1));
                let mut chunk = Vec::new();
                let status = decoder.decode(pending.get(..take).unwrap_or_default(), &mut chunk);
                let used = match status {
                    DecodeStatus::NeedMore => take,
                    DecodeStatus::Done { consumed } => consumed,
                };
                self.framer.consume(used);
                if !chunk.is_empty() {
                    self.events.push_back(ClientEvent::BodyChunk(chunk));
                }
                if let DecodeStatus::Done { .. } = status {
                    self.events.push_back(ClientEvent::MessageEnd { number });
                    self.finish_reply();
                }
                true
            }
            Reading::Status => self.read_status(),
            Reading::Capa(_) | Reading::List(_) | Reading::Uidl(_) => self.read_listing_line(),
        }
    }

    /// The reply is complete: the next command may go.
    fn finish_reply(&mut self) {
        self.reading = Reading::Status;
        self.in_flight.pop_front();
        self.flush();
    }

    fn read_status(&mut self) -> bool {
        let limit = match self.in_flight.front() {
            Some(Pending::Auth { .. }) => self.options.max_sasl_line,
            _ => self.options.max_line,
        };
        let parsed = match self.framer.next_line(limit) {
            None => return false,
            Some(Err(FrameError::TooLong { max })) => Err(ProtocolError::LineTooLong { max }),
            Some(Ok(line)) => Ok(parse_response_lossy(line)),
        };
        let kind = match self.in_flight.front() {
            Some(p) => p.kind(),
            None => {
                self.fail(ProtocolError::Unexpected);
                return true;
            }
        };
        match parsed {
            Err(e) => self.fail(e),
            Ok(Err(_)) => self.fail(ProtocolError::Malformed { command: kind }),
            Ok(Ok(Response::Challenge(data))) => self.challenge(data),
            Ok(Ok(Response::Status(s))) => {
                if s.is_ok() {
                    self.ok_reply(s);
                } else {
                    self.err_reply(s);
                }
            }
        }
        true
    }

    fn challenge(&mut self, _data: Secret<Vec<u8>>) {
        let Some(Pending::Auth { mech, step, creds }) = self.in_flight.front_mut() else {
            self.fail(ProtocolError::Unexpected);
            return;
        };
        let answer = match (*mech, *step) {
            (Sasl::Plain, 0) | (Sasl::Login, 0 | 1) => {
                SaslResponse::Data(Secret::new(sasl_data(*mech, *step, creds)))
            }
            // A challenge the mechanism does not have: cancel; the server
            // must answer -ERR.
            (Sasl::Plain, 1) | (Sasl::Login, 2) => SaslResponse::Cancel,
            // Another challenge after the cancel.
            _ => {
                self.fail(ProtocolError::Unexpected);
                return;
            }
        };
        *step = step.saturating_add(1);
        answer.encode(&mut self.output);
    }

    fn ok_reply(&mut self, s: StatusResponse<'static>) {
        let Some(head) = self.in_flight.front() else {
            return;
        };
        let kind = head.kind();
        match head {
            Pending::Greeting => {
                self.greeted = true;
                self.apop_timestamp = s.apop_timestamp().map(str::to_string);
                self.events.push_back(ClientEvent::Greeting {
                    text: owned_text(&s),
                    apop_timestamp: self.apop_timestamp.clone(),
                    code: s.code().cloned(),
                });
            }
            Pending::Capa => {
                self.reading = Reading::Capa(Vec::new());
                return;
            }
            Pending::List(None) => {
                self.reading = Reading::List(Vec::new());
                return;
            }
            Pending::Uidl(None) => {
                self.reading = Reading::Uidl(Vec::new());
                return;
            }
            Pending::Retr(n) | Pending::Top(n) => {
                let number = *n;
                self.events.push_back(ClientEvent::MessageStart { number });
                self.reading = Reading::Body(BodyDecoder::new(), number);
                return;
            }
            Pending::Stls => {
                self.in_flight.pop_front();
                // RFC 2595 section 4: nothing received before the handshake
                // may be used afterwards.
                self.framer.clear();
                self.phase = Phase::AwaitingTls;
                self.events.push_back(ClientEvent::TlsReady);
                return;
            }
            Pending::User => {}
            Pending::Pass { silent: true } => {}
            Pending::Pass { silent: false } | Pending::Apop | Pending::Auth { .. } => {
                self.logged_in = true;
                self.events.push_back(ClientEvent::LoggedIn);
            }
            Pending::Stat => match parse_stat(s.text().as_bytes()) {
                Ok((count, size)) => self.events.push_back(ClientEvent::Stat { count, size }),
                Err(_) => return self.fail(ProtocolError::Malformed { command: kind }),
            },
            Pending::List(Some(_)) => match parse_list_entry(s.text().as_bytes()) {
                Ok(e) => self.events.push_back(ClientEvent::List(vec![e])),
                Err(_) => return self.fail(ProtocolError::Malformed { command: kind }),
            },
            Pending::Uidl(Some(_)) => match parse_uidl_entry(s.text().as_bytes()) {
                Ok(e) => self
                    .events
                    .push_back(ClientEvent::Uidl(vec![e.into_owned()])),
                Err(_) => return self.fail(ProtocolError::Malformed { command: kind }),
            },
            Pending::Dele(n) => {
                let number = *n;
                self.events.push_back(ClientEvent::Deleted { number });
            }
            Pending::Rset => self.events.push_back(ClientEvent::Reset),
            Pending::Noop => self.events.push_back(ClientEvent::Noop),
            Pending::Quit => {
                self.close();
                return;
            }
        }
        self.finish_reply();
    }

    fn err_reply(&mut self, s: StatusResponse<'static>) {
        let Some(head) = self.in_flight.pop_front() else {
            return;
        };
        let kind = head.kind();
        let error = ClientEvent::Error {
            command: kind,
            code: s.code().cloned(),
            text: owned_text(&s),
        };
        match head {
            Pending::Pass { silent: true } => {}
            Pending::User => {
                self.events.push_back(error);
                self.login_queued = false;
                // Never send (or report) the PASS of a refused USER.
                if let Some(Pending::Pass { silent }) = self.in_flight.front_mut() {
                    *silent = true;
                } else if let Some(Queued::Ready(_, Pending::Pass { .. })) = self.queued.front() {
                    self.queued.pop_front();
                }
            }
            Pending::Greeting | Pending::Quit => {
                self.events.push_back(error);
                self.close();
                return;
            }
            Pending::Stls => {
                self.events.push_back(error);
                self.drop_queued_logins();
            }
            Pending::Pass { silent: false } | Pending::Apop | Pending::Auth { .. } => {
                self.login_queued = false;
                self.events.push_back(error);
            }
            _ => self.events.push_back(error),
        }
        self.reading = Reading::Status;
        self.flush();
    }

    /// STLS was refused: a login queued behind it would go out in
    /// plaintext, so it is not sent; each one gives an
    /// [`ClientEvent::Error`] (RFC 2595 section 2.3's downgrade concern).
    fn drop_queued_logins(&mut self) {
        let mut kept = VecDeque::new();
        for q in core::mem::take(&mut self.queued) {
            let command = match &q {
                Queued::Ready(_, Pending::User) => Some(CommandKind::User),
                // Its USER was dropped (and reported) already.
                Queued::Ready(_, Pending::Pass { .. }) => None,
                Queued::Apop { .. } => Some(CommandKind::Apop),
                Queued::Auth { .. } => Some(CommandKind::Auth),
                Queued::Ready(..) => {
                    kept.push_back(q);
                    continue;
                }
            };
            if let Some(command) = command {
                self.events.push_back(ClientEvent::Error {
                    command,
                    code: None,
                    text: "Not sent: STLS was refused.".into(),
                });
            }
        }
        self.queued = kept;
        self.login_queued = false;
    }

    fn read_listing_line(&mut self) -> bool {
        let kind = self
            .in_flight
            .front()
            .map_or(CommandKind::List, Pending::kind);
        let line = match self.framer.next_line(self.options.max_line) {
            None => return false,
            Some(Err(FrameError::TooLong { max })) => {
                self.fail(ProtocolError::LineTooLong { max });
                return true;
            }
            Some(Ok(line)) => line,
        };
        if line == b"." {
            let event = match core::mem::replace(&mut self.reading, Reading::Status) {
                Reading::Capa(caps) => {
                    self.capabilities.clone_from(&caps);
                    ClientEvent::Capabilities(caps)
                }
                Reading::List(l) => ClientEvent::List(l),
                Reading::Uidl(u) => ClientEvent::Uidl(u),
                Reading::Status | Reading::Body(..) => return true,
            };
            self.events.push_back(event);
            self.finish_reply();
            return true;
        }
        // Listing lines are dot-stuffed like a body (RFC 1939 section 3).
        let line = line.strip_prefix(b".").unwrap_or(line);
        let (max_caps, max_entries) = (
            self.options.max_capabilities,
            self.options.max_listing_entries,
        );
        let result = match &mut self.reading {
            Reading::Capa(caps) => {
                if caps.len() >= max_caps {
                    Err(ProtocolError::TooManyEntries { max: max_caps })
                } else {
                    // A capability this crate cannot read is left out.
                    if let Ok(c) = parse_capability(line) {
                        caps.push(c.into_owned());
                    }
                    Ok(())
                }
            }
            Reading::List(list) => {
                if list.len() >= max_entries {
                    Err(ProtocolError::TooManyEntries { max: max_entries })
                } else {
                    parse_list_entry(line)
                        .map(|e| list.push(e))
                        .map_err(|_| ProtocolError::Malformed { command: kind })
                }
            }
            Reading::Uidl(list) => {
                if list.len() >= max_entries {
                    Err(ProtocolError::TooManyEntries { max: max_entries })
                } else {
                    parse_uidl_entry(line)
                        .map(|e| list.push(e.into_owned()))
                        .map_err(|_| ProtocolError::Malformed { command: kind })
                }
            }
            Reading::Status | Reading::Body(..) => Ok(()),
        };
        if let Err(e) = result {
            self.fail(e);
        }
        true
    }
}

/// The SASL message for `step` of the mechanism (step 0 is the initial
/// response or the answer to the first challenge).
fn sasl_data(mech: Sasl, step: u8, creds: &SaslCreds) -> Vec<u8> {
    match (mech, step) {
        (Sasl::Plain, _) => {
            let mut v = Vec::new();
            v.extend_from_slice(creds.authzid.as_deref().unwrap_or("").as_bytes());
            v.push(0);
            v.extend_from_slice(creds.user.as_bytes());
            v.push(0);
            v.extend_from_slice(creds.secret.expose().as_bytes());
            v
        }
        (Sasl::Login, 0) => creds.user.as_bytes().to_vec(),
        (Sasl::Login, _) => creds.secret.expose().as_bytes().to_vec(),
    }
}
