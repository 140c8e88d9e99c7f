//! A sans-IO codec for SpamAssassin's spamc/spamd protocol (`SPAMC/1.5`), both directions:
//! request heads (encode for a client, parse for a server), response heads (parse for a
//! client, encode for a server), and a [`ResponseReader`] that assembles a response from
//! the bytes read off a connection.
//!
//! # Wire format (as captured from spamd 4.0.1)
//!
//! ```text
//! C: CHECK SPAMC/1.5\r\n
//! C: User: joe\r\n
//! C: Content-length: 390\r\n
//! C: \r\n
//! C: <390 message bytes>
//! S: SPAMD/1.1 0 EX_OK\r\n
//! S: Spam: True ; 1000.0 / 5.0\r\n
//! S: \r\n
//! S: <close>
//! ```
//!
//! Lines end in CRLF (spamd refuses bare LF). The status code is a sysexits value
//! (0 = `EX_OK`); error and `PONG` replies are a status line alone. `SYMBOLS`, `REPORT`,
//! `PROCESS` and `HEADERS` replies carry `Content-length` and a body. spamd serves one
//! request per connection.
//!
//! # Framing and limits
//!
//! Each line is found with `memchr`, bounded by [`SpamcLimits::max_line`], then parsed
//! whole (nom, complete mode). Header names match case-insensitively; unknown headers
//! are skipped (at most [`SpamcLimits::max_headers`] lines); a repeated `Content-length`,
//! `User` or `Spam` header is an error.

use std::borrow::Cow;
use std::fmt;

use nom::Parser;
use nom::bytes::complete::{tag, take_while_m_n, take_while1};
use nom::character::complete::{char as nchar, space0, space1};
use nom::combinator::{all_consuming, map_res, opt, rest};

use crate::score::{RuleName, Score, Verdict};

/// Limits of the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpamcLimits {
    /// Longest line (without CRLF). Default: 1024 bytes.
    pub max_line: usize,
    /// Most header lines in a head. Default: 32.
    pub max_headers: usize,
    /// Largest body a [`ResponseReader`] accepts (a `PROCESS` reply is the whole rewritten
    /// message). Default: 64 MiB.
    pub max_body: u64,
}

impl SpamcLimits {
    /// The most a reply's head (status line and header lines, CRLFs
    /// included) can take; saturating, so that "no limit" (`usize::MAX`)
    /// works.
    fn max_head_len(&self) -> usize {
        self.max_headers
            .saturating_add(1)
            .saturating_mul(self.max_line.saturating_add(2))
    }
}

impl Default for SpamcLimits {
    fn default() -> Self {
        SpamcLimits {
            max_line: 1024,
            max_headers: 32,
            max_body: 64 * 1024 * 1024,
        }
    }
}

/// Errors of the codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpamcError {
    /// A line longer than [`SpamcLimits::max_line`].
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// A line that does not parse.
    #[error("bad {0} line")]
    BadLine(&'static str),
    /// More than [`SpamcLimits::max_headers`] header lines.
    #[error("more than {max} header lines")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A header that may appear once appeared twice.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// A body larger than [`SpamcLimits::max_body`].
    #[error("body larger than {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: u64,
    },
    /// The connection ended before the response was complete.
    #[error("response truncated")]
    Truncated,
    /// Bytes after the announced `Content-length`.
    #[error("data after the announced content length")]
    TrailingData,
    /// A `SYMBOLS` body that is not a comma-separated list of rule names.
    #[error("bad SYMBOLS body")]
    BadSymbols,
}

/// The request verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `CHECK`: verdict only.
    Check,
    /// `SYMBOLS`: verdict and the names of the rules that fired.
    Symbols,
    /// `REPORT`: verdict and a text report.
    Report,
    /// `REPORT_IFSPAM`: verdict and a report for spam only.
    ReportIfSpam,
    /// `PROCESS`: verdict and the rewritten message.
    Process,
    /// `HEADERS`: verdict and the rewritten header block.
    Headers,
    /// `PING`: liveness check, answered with `PONG`.
    Ping,
    /// `SKIP`: close without processing.
    Skip,
}

impl Verb {
    const ALL: [Verb; 8] = [
        Verb::Check,
        Verb::Symbols,
        Verb::Report,
        Verb::ReportIfSpam,
        Verb::Process,
        Verb::Headers,
        Verb::Ping,
        Verb::Skip,
    ];

    /// The verb as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Check => "CHECK",
            Verb::Symbols => "SYMBOLS",
            Verb::Report => "REPORT",
            Verb::ReportIfSpam => "REPORT_IFSPAM",
            Verb::Process => "PROCESS",
            Verb::Headers => "HEADERS",
            Verb::Ping => "PING",
            Verb::Skip => "SKIP",
        }
    }

    /// Whether the request carries a message body.
    pub fn has_body(self) -> bool {
        !matches!(self, Verb::Ping | Verb::Skip)
    }

    fn from_bytes(b: &[u8]) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str().as_bytes() == b)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol version `major.minor` (`SPAMC/1.5`, `SPAMD/1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// The major number.
    pub major: u8,
    /// The minor number.
    pub minor: u8,
}

impl Version {
    /// `1.5`, what spamc sends and spamd answers `PONG` with.
    pub const V1_5: Version = Version { major: 1, minor: 5 };
    /// `1.1`, what spamd answers normal requests with.
    pub const V1_1: Version = Version { major: 1, minor: 1 };
    /// `1.0`, what spamd answers errors with.
    pub const V1_0: Version = Version { major: 1, minor: 0 };
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A spamd user name (`User:` header): 1 to 255 bytes of printable ASCII without spaces.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::spamc::UserName;
///
/// assert!(UserName::new("joe@example.org").is_ok());
/// assert!(UserName::new("bad name").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName<'a>(Cow<'a, str>);

/// The error for an invalid [`UserName`] or [`StatusText`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0}")]
pub struct InvalidValue(&'static str);

fn valid_user(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= 255 && b.iter().all(|&c| (0x21..=0x7e).contains(&c))
}

impl<'a> UserName<'a> {
    /// Validates a user name.
    pub fn new(name: impl Into<Cow<'a, str>>) -> Result<UserName<'a>, InvalidValue> {
        let name = name.into();
        if valid_user(name.as_bytes()) {
            Ok(UserName(name))
        } else {
            Err(InvalidValue("user name"))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An owned copy.
    pub fn into_owned(self) -> UserName<'static> {
        UserName(Cow::Owned(self.0.into_owned()))
    }
}

/// The text of a status line (`EX_OK`, `PONG`, `Bad header line: ...`): no control
/// characters, at most 512 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusText<'a>(Cow<'a, str>);

impl<'a> StatusText<'a> {
    /// The longest status text, in bytes.
    pub const MAX_LEN: usize = 512;

    /// Validates a status text.
    pub fn new(text: impl Into<Cow<'a, str>>) -> Result<StatusText<'a>, InvalidValue> {
        let text = text.into();
        if text.len() <= Self::MAX_LEN && !text.chars().any(char::is_control) {
            Ok(StatusText(text))
        } else {
            Err(InvalidValue("status text"))
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An owned copy.
    pub fn into_owned(self) -> StatusText<'static> {
        StatusText(Cow::Owned(self.0.into_owned()))
    }

    /// A lossy conversion of wire bytes: invalid UTF-8 and control characters become `?`,
    /// the text is cut at [`StatusText::MAX_LEN`] bytes.
    fn lossy(bytes: &'a [u8]) -> StatusText<'a> {
        let mut text = String::from_utf8_lossy(bytes);
        if text.chars().any(|c| c.is_control() || c == '\u{fffd}') {
            text = Cow::Owned(
                text.chars()
                    .map(|c| {
                        if c.is_control() || c == '\u{fffd}' {
                            '?'
                        } else {
                            c
                        }
                    })
                    .collect(),
            );
        }
        if text.len() > Self::MAX_LEN {
            let mut cut = Self::MAX_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = Cow::Owned(text[..cut].to_owned());
        }
        StatusText(text)
    }
}

/// A sysexits status code (0 = `EX_OK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u8);

impl StatusCode {
    /// 0, success.
    pub const EX_OK: StatusCode = StatusCode(0);
    /// 69, service unavailable (e.g. `TELL` not enabled).
    pub const EX_UNAVAILABLE: StatusCode = StatusCode(69);
    /// 76, protocol error (bad request line or header).
    pub const EX_PROTOCOL: StatusCode = StatusCode(76);

    /// Whether this is `EX_OK`.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The sysexits name (`EX_OK`, `EX_USAGE`, ... `EX_TIMEOUT`), if known.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 16] = [
            "EX_USAGE",
            "EX_DATAERR",
            "EX_NOINPUT",
            "EX_NOUSER",
            "EX_NOHOST",
            "EX_UNAVAILABLE",
            "EX_SOFTWARE",
            "EX_OSERR",
            "EX_OSFILE",
            "EX_CANTCREAT",
            "EX_IOERR",
            "EX_TEMPFAIL",
            "EX_PROTOCOL",
            "EX_NOPERM",
            "EX_CONFIG",
            "EX_TIMEOUT",
        ];
        match self.0 {
            0 => Some("EX_OK"),
            n @ 64..=79 => NAMES.get(usize::from(n - 64)).copied(),
            _ => None,
        }
    }
}

/// How the `Spam:` header spells the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpamWord {
    /// `True`/`False` (every verb but `REPORT_IFSPAM`).
    TrueFalse,
    /// `Yes`/`No` (`REPORT_IFSPAM`).
    YesNo,
}

/// The `Spam: True ; 7.3 / 5.0` header. Scores travel with one decimal (`%2.1f`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpamResult {
    /// Whether spamd judged the message spam (against its own threshold).
    pub is_spam: bool,
    /// How the verdict was spelled.
    pub word: SpamWord,
    /// The score.
    pub score: Score,
    /// spamd's threshold (`required_score`).
    pub threshold: Score,
}

/// A request head: the request line and headers, up to the empty line.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::spamc::{encode_request_head, parse_request_head, RequestHead, SpamcLimits, UserName, Verb};
///
/// let head = RequestHead::new(Verb::Check, Some(UserName::new("joe").unwrap()), Some(390));
/// let mut wire = Vec::new();
/// encode_request_head(&head, &mut wire);
/// assert_eq!(wire, b"CHECK SPAMC/1.5\r\nUser: joe\r\nContent-length: 390\r\n\r\n");
/// let (parsed, used) = parse_request_head(&wire, &SpamcLimits::default()).unwrap().unwrap();
/// assert_eq!((parsed, used), (head, wire.len()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The verb.
    pub verb: Verb,
    /// The protocol version (`SPAMC/x.y`).
    pub version: Version,
    /// The user whose preferences spamd should use.
    pub user: Option<UserName<'a>>,
    /// The body length (required by spamd for verbs with a body).
    pub content_length: Option<u64>,
}

impl<'a> RequestHead<'a> {
    /// A `SPAMC/1.5` request head.
    pub fn new(verb: Verb, user: Option<UserName<'a>>, content_length: Option<u64>) -> Self {
        RequestHead {
            verb,
            version: Version::V1_5,
            user,
            content_length,
        }
    }

    /// An owned copy.
    pub fn into_owned(self) -> RequestHead<'static> {
        RequestHead {
            verb: self.verb,
            version: self.version,
            user: self.user.map(UserName::into_owned),
            content_length: self.content_length,
        }
    }
}

/// A response head: the status line and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHead<'a> {
    /// The protocol version (`SPAMD/x.y`).
    pub version: Version,
    /// The status code.
    pub code: StatusCode,
    /// The status text.
    pub text: StatusText<'a>,
    /// The body length.
    pub content_length: Option<u64>,
    /// The verdict header.
    pub spam: Option<SpamResult>,
}

impl ResponseHead<'_> {
    /// An owned copy.
    pub fn into_owned(self) -> ResponseHead<'static> {
        ResponseHead {
            version: self.version,
            code: self.code,
            text: self.text.into_owned(),
            content_length: self.content_length,
            spam: self.spam,
        }
    }

    /// Whether the head has no header lines (error and `PONG` replies: the status line
    /// alone is sent, without an empty line).
    pub fn is_bare(&self) -> bool {
        self.content_length.is_none() && self.spam.is_none()
    }
}

/// Writes a request head, ending with the empty line; the body (exactly
/// `content_length` bytes) follows.
pub fn encode_request_head(head: &RequestHead<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(head.verb.as_str().as_bytes());
    out.extend_from_slice(format!(" SPAMC/{}\r\n", head.version).as_bytes());
    if let Some(u) = &head.user {
        out.extend_from_slice(b"User: ");
        out.extend_from_slice(u.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = head.content_length {
        out.extend_from_slice(format!("Content-length: {n}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a response head. A bare head (no headers) is the status line alone, as spamd
/// sends it; otherwise the headers and the empty line follow, then the body.
pub fn encode_response_head(head: &ResponseHead<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("SPAMD/{} {}", head.version, head.code.0).as_bytes());
    if !head.text.as_str().is_empty() {
        out.push(b' ');
        out.extend_from_slice(head.text.as_str().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if head.is_bare() {
        return;
    }
    if let Some(n) = head.content_length {
        out.extend_from_slice(format!("Content-length: {n}\r\n").as_bytes());
    }
    if let Some(s) = &head.spam {
        let word = match (s.word, s.is_spam) {
            (SpamWord::TrueFalse, true) => "True",
            (SpamWord::TrueFalse, false) => "False",
            (SpamWord::YesNo, true) => "Yes",
            (SpamWord::YesNo, false) => "No",
        };
        out.extend_from_slice(
            format!("Spam: {word} ; {} / {}\r\n", s.score, s.threshold).as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
}

/// The next CRLF line of `input` from `pos`: `Ok(None)` when incomplete.
fn next_line<'a>(
    input: &'a [u8],
    pos: usize,
    limits: &SpamcLimits,
) -> Result<Option<(&'a [u8], usize)>, SpamcError> {
    let rest = input.get(pos..).unwrap_or_default();
    match memchr::memchr(b'\n', rest) {
        Some(i) => {
            if i > limits.max_line.saturating_add(1) {
                return Err(SpamcError::LineTooLong {
                    max: limits.max_line,
                });
            }
            match rest[..i].strip_suffix(b"\r") {
                Some(line) => Ok(Some((line, pos + i + 1))),
                None => Err(SpamcError::BadLine("LF-terminated")),
            }
        }
        None if rest.len() > limits.max_line.saturating_add(1) => Err(SpamcError::LineTooLong {
            max: limits.max_line,
        }),
        None => Ok(None),
    }
}

type PResult<'a, T> = nom::IResult<&'a [u8], T>;

fn small_u8(i: &[u8]) -> PResult<'_, u8> {
    map_res(
        take_while_m_n(1, 3, |c: u8| c.is_ascii_digit()),
        |d: &[u8]| {
            std::str::from_utf8(d)
                .map_err(|_| ())
                .and_then(|s| s.parse::<u8>().map_err(|_| ()))
        },
    )
    .parse(i)
}

fn version(i: &[u8]) -> PResult<'_, Version> {
    let (i, (major, _, minor)) = (small_u8, nchar('.'), small_u8).parse(i)?;
    Ok((i, Version { major, minor }))
}

fn request_line(line: &[u8]) -> Result<(Verb, Version), SpamcError> {
    let verb = map_res(
        take_while1(|c: u8| c.is_ascii_uppercase() || c == b'_'),
        |v: &[u8]| Verb::from_bytes(v).ok_or(()),
    );
    all_consuming((verb, space1, tag(&b"SPAMC/"[..]), version))
        .parse(line)
        .map(|(_, (verb, _, _, v))| (verb, v))
        .map_err(|_| SpamcError::BadLine("request"))
}

fn status_line(line: &[u8]) -> Result<(Version, StatusCode, StatusText<'_>), SpamcError> {
    let parsed: PResult<'_, _> = (
        tag(&b"SPAMD/"[..]),
        version,
        space1,
        small_u8,
        opt((nchar(' '), rest)),
    )
        .parse(line);
    match parsed {
        Ok((_, (_, v, _, code, text))) => {
            let text = text.map_or(&b""[..], |(_, t)| t);
            Ok((v, StatusCode(code), StatusText::lossy(text)))
        }
        Err(_) => Err(SpamcError::BadLine("status")),
    }
}

/// `name: value`, name of letters, digits, `-` and `_`.
fn header_line(line: &[u8]) -> Result<(&[u8], &[u8]), SpamcError> {
    let name = take_while1(|c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    (name, nchar(':'), space0, rest)
        .parse(line)
        .map(|(_, (n, _, _, v))| (n, v.trim_ascii_end()))
        .map_err(|_: nom::Err<nom::error::Error<&[u8]>>| SpamcError::BadLine("header"))
}

fn content_length(v: &[u8]) -> Result<u64, SpamcError> {
    let bad = SpamcError::BadLine("Content-length");
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(bad)
}

fn spam_value(v: &[u8]) -> Result<SpamResult, SpamcError> {
    let word = take_while1(|c: u8| c.is_ascii_alphabetic());
    let num = |i| {
        map_res(
            take_while1(|c: u8| c.is_ascii_digit() || c == b'.' || c == b'-'),
            |n: &[u8]| {
                std::str::from_utf8(n)
                    .map_err(|_| ())
                    .and_then(|s| s.parse::<Score>().map_err(|_| ()))
            },
        )
        .parse(i)
    };
    let parsed: PResult<'_, _> = all_consuming((
        word,
        space0,
        nchar(';'),
        space0,
        num,
        space0,
        nchar('/'),
        space0,
        num,
    ))
    .parse(v);
    let (_, (w, _, _, _, score, _, _, _, threshold)) =
        parsed.map_err(|_| SpamcError::BadLine("Spam"))?;
    let (is_spam, word) = match w.to_ascii_lowercase().as_slice() {
        b"true" => (true, SpamWord::TrueFalse),
        b"false" => (false, SpamWord::TrueFalse),
        b"yes" => (true, SpamWord::YesNo),
        b"no" => (false, SpamWord::YesNo),
        _ => return Err(SpamcError::BadLine("Spam")),
    };
    Ok(SpamResult {
        is_spam,
        word,
        score,
        threshold,
    })
}

/// Parses a request head from the start of `input`: `Ok(None)` when the empty line has
/// not arrived yet; otherwise the head and the bytes it used (the body follows).
pub fn parse_request_head<'a>(
    input: &'a [u8],
    limits: &SpamcLimits,
) -> Result<Option<(RequestHead<'a>, usize)>, SpamcError> {
    let Some((line, mut pos)) = next_line(input, 0, limits)? else {
        return Ok(None);
    };
    let (verb, version) = request_line(line)?;
    let mut head = RequestHead {
        verb,
        version,
        user: None,
        content_length: None,
    };
    let mut count = 0;
    loop {
        let Some((line, next)) = next_line(input, pos, limits)? else {
            return Ok(None);
        };
        pos = next;
        if line.is_empty() {
            return Ok(Some((head, pos)));
        }
        count += 1;
        if count > limits.max_headers {
            return Err(SpamcError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let (name, value) = header_line(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            if head.content_length.is_some() {
                return Err(SpamcError::DuplicateHeader("Content-length"));
            }
            head.content_length = Some(content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"user") {
            if head.user.is_some() {
                return Err(SpamcError::DuplicateHeader("User"));
            }
            let user = std::str::from_utf8(value)
                .ok()
                .filter(|u| valid_user(u.as_bytes()))
                .ok_or(SpamcError::BadLine("User"))?;
            head.user = Some(UserName(Cow::Borrowed(user)));
        }
    }
}

/// Parses a response head from the start of `input`: `Ok(None)` when incomplete. With
/// `eof` set (the peer closed the connection), a status line alone is a complete head.
pub fn parse_response_head<'a>(
    input: &'a [u8],
    eof: bool,
    limits: &SpamcLimits,
) -> Result<Option<(ResponseHead<'a>, usize)>, SpamcError> {
    let Some((line, mut pos)) = next_line(input, 0, limits)? else {
        return if eof && !input.is_empty() {
            Err(SpamcError::Truncated)
        } else {
            Ok(None)
        };
    };
    let (version, code, text) = status_line(line)?;
    let mut head = ResponseHead {
        version,
        code,
        text,
        content_length: None,
        spam: None,
    };
    if eof && pos == input.len() {
        return Ok(Some((head, pos)));
    }
    let mut count = 0;
    loop {
        let Some((line, next)) = next_line(input, pos, limits)? else {
            return if eof {
                Err(SpamcError::Truncated)
            } else {
                Ok(None)
            };
        };
        pos = next;
        if line.is_empty() {
            return Ok(Some((head, pos)));
        }
        count += 1;
        if count > limits.max_headers {
            return Err(SpamcError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let (name, value) = header_line(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            if head.content_length.is_some() {
                return Err(SpamcError::DuplicateHeader("Content-length"));
            }
            head.content_length = Some(content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"spam") {
            if head.spam.is_some() {
                return Err(SpamcError::DuplicateHeader("Spam"));
            }
            head.spam = Some(spam_value(value)?);
        }
    }
}

/// Parses a `SYMBOLS` body: comma-separated rule names (spaces and a final line end are
/// tolerated; an empty body means no rule fired).
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::spamc::parse_symbols;
///
/// let rules = parse_symbols(b"GTUBE,NO_RECEIVED,NO_RELAYS").unwrap();
/// assert_eq!(rules.len(), 3);
/// assert_eq!(rules[0].as_str(), "GTUBE");
/// ```
pub fn parse_symbols(body: &[u8]) -> Result<Vec<RuleName>, SpamcError> {
    let body = body.trim_ascii();
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == b',')
        .map(|n| {
            let n = n.trim_ascii();
            std::str::from_utf8(n)
                .ok()
                .and_then(|s| RuleName::new(s).ok())
                .ok_or(SpamcError::BadSymbols)
        })
        .collect()
}

/// A complete response: head and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The head.
    pub head: ResponseHead<'static>,
    /// The body (empty for `CHECK`, `PING` and errors).
    pub body: Vec<u8>,
}

impl Response {
    /// For a successful `SYMBOLS` reply: the verdict (spamd's score and the rules).
    pub fn symbols_verdict(&self) -> Result<Option<Verdict>, SpamcError> {
        let Some(spam) = self.head.spam else {
            return Ok(None);
        };
        Ok(Some(Verdict::new(spam.score, parse_symbols(&self.body)?)))
    }
}

/// Assembles a response from the bytes read off the connection.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::spamc::{ResponseReader, SpamcLimits};
///
/// let mut r = ResponseReader::new(SpamcLimits::default());
/// r.feed(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n").unwrap();
/// assert!(!r.is_complete());
/// r.feed(b"GTUBE,NO_RECEIVED,NO_RELAYS").unwrap();
/// assert!(r.is_complete());
/// let resp = r.finish().unwrap();
/// let v = resp.symbols_verdict().unwrap().unwrap();
/// assert_eq!(v.score().to_string(), "1000.0");
/// assert_eq!(v.rules().len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct ResponseReader {
    limits: SpamcLimits,
    buf: Vec<u8>,
    head: Option<(ResponseHead<'static>, usize)>,
}

impl ResponseReader {
    /// A reader with the given limits.
    pub fn new(limits: SpamcLimits) -> ResponseReader {
        ResponseReader {
            limits,
            buf: Vec::new(),
            head: None,
        }
    }

    /// Adds bytes read from the connection.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), SpamcError> {
        self.buf.extend_from_slice(data);
        match &self.head {
            // The head can only complete with a new line end: no re-parse otherwise.
            None if memchr::memchr(b'\n', data).is_none() => {
                let max = self.limits.max_head_len();
                if self.buf.len() > max {
                    return Err(SpamcError::LineTooLong {
                        max: self.limits.max_line,
                    });
                }
            }
            None => {
                if let Some((head, used)) = parse_response_head(&self.buf, false, &self.limits)? {
                    self.check_body_size(head.content_length, used)?;
                    self.head = Some((head.into_owned(), used));
                } else {
                    let max = self.limits.max_head_len();
                    if self.buf.len() > max {
                        return Err(SpamcError::LineTooLong {
                            max: self.limits.max_line,
                        });
                    }
                }
            }
            Some((head, used)) => self.check_body_size(head.content_length, *used)?,
        }
        Ok(())
    }

    fn check_body_size(&self, announced: Option<u64>, used: usize) -> Result<(), SpamcError> {
        let have = (self.buf.len() - used) as u64;
        let max = self.limits.max_body;
        if announced.is_some_and(|n| n > max) || have > max {
            return Err(SpamcError::BodyTooLarge { max });
        }
        if announced.is_some_and(|n| have > n) {
            return Err(SpamcError::TrailingData);
        }
        Ok(())
    }

    /// Whether the response is complete without waiting for the connection to close (the
    /// head has arrived with a `Content-length` and all of the body).
    pub fn is_complete(&self) -> bool {
        match &self.head {
            Some((h, used)) => h
                .content_length
                .is_some_and(|n| (self.buf.len() - used) as u64 == n),
            None => false,
        }
    }

    /// Ends the response (the connection was closed, or [`is_complete`](Self::is_complete)).
    pub fn finish(self) -> Result<Response, SpamcError> {
        let (head, used) = match self.head {
            Some(h) => h,
            None => match parse_response_head(&self.buf, true, &self.limits)? {
                Some((h, used)) => (h.into_owned(), used),
                None => return Err(SpamcError::Truncated),
            },
        };
        let body = self.buf.get(used..).unwrap_or_default();
        if let Some(n) = head.content_length {
            if (body.len() as u64) < n {
                return Err(SpamcError::Truncated);
            }
        }
        Ok(Response {
            head,
            body: body.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(wire: &[u8]) -> Result<Response, SpamcError> {
        let mut r = ResponseReader::new(SpamcLimits::default());
        r.feed(wire)?;
        r.finish()
    }

    /// Limits a caller sets to "no limit" (`usize::MAX`) work: no overflow
    /// (it panicked in debug builds at the first feed; API review).
    #[test]
    fn limits_of_usize_max_mean_no_limit() {
        let limits = SpamcLimits {
            max_line: usize::MAX,
            max_headers: usize::MAX,
            ..SpamcLimits::default()
        };
        let mut r = ResponseReader::new(limits);
        r.feed(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0")
            .unwrap();
        r.feed(b"\r\n\r\n").unwrap();
        assert!(r.finish().unwrap().head.code.is_ok());
    }

    #[test]
    fn captured_check_reply() {
        let resp = read_all(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n").unwrap();
        assert_eq!(resp.head.version, Version::V1_1);
        assert!(resp.head.code.is_ok());
        assert_eq!(resp.head.text.as_str(), "EX_OK");
        let s = resp.head.spam.unwrap();
        assert!(s.is_spam);
        assert_eq!(s.score, Score::from_tenths(10_000));
        assert_eq!(s.threshold, Score::from_tenths(50));
        assert!(resp.body.is_empty());
        let ham = read_all(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 2.7 / 5.0\r\n\r\n").unwrap();
        assert!(!ham.head.spam.unwrap().is_spam);
    }

    #[test]
    fn captured_symbols_ifspam_pong_and_errors() {
        let r = read_all(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 34\r\nSpam: False ; 2.7 / 5.0\r\n\r\nMISSING_DATE,NO_RECEIVED,NO_RELAYS",
        )
        .unwrap();
        let v = r.symbols_verdict().unwrap().unwrap();
        assert_eq!(v.score().to_string(), "2.7");
        assert_eq!(v.rules()[0].as_str(), "MISSING_DATE");

        let r = read_all(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 2\r\nSpam: Yes ; 1000.0 / 5.0\r\n\r\nab",
        )
        .unwrap();
        assert_eq!(r.head.spam.unwrap().word, SpamWord::YesNo);

        let pong = read_all(b"SPAMD/1.5 0 PONG\r\n").unwrap();
        assert_eq!(pong.head.text.as_str(), "PONG");
        assert!(pong.head.is_bare());

        let err = read_all(
            b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, got 13 bytes)\r\n",
        )
        .unwrap();
        assert_eq!(err.head.code, StatusCode::EX_PROTOCOL);
        assert_eq!(err.head.code.name(), Some("EX_PROTOCOL"));
        let tell = read_all(
            b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled, set the --allow-tell switch.\r\n",
        )
        .unwrap();
        assert_eq!(tell.head.code.name(), Some("EX_UNAVAILABLE"));
    }

    #[test]
    fn request_transcripts() {
        let mut wire = Vec::new();
        encode_request_head(&RequestHead::new(Verb::Ping, None, None), &mut wire);
        assert_eq!(wire, b"PING SPAMC/1.5\r\n\r\n");
        wire.clear();
        let head = RequestHead::new(Verb::Symbols, None, Some(390));
        encode_request_head(&head, &mut wire);
        assert_eq!(wire, b"SYMBOLS SPAMC/1.5\r\nContent-length: 390\r\n\r\n");

        // spamc's own order (User first), lower-case names, unknown headers.
        let wire =
            b"CHECK SPAMC/1.2\r\nUser: root\r\ncontent-length: 798\r\nCompress: zlib\r\n\r\nBODY";
        let (h, used) = parse_request_head(wire, &SpamcLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.verb, Verb::Check);
        assert_eq!(h.version, Version { major: 1, minor: 2 });
        assert_eq!(h.user.unwrap().as_str(), "root");
        assert_eq!(h.content_length, Some(798));
        assert_eq!(&wire[used..], b"BODY");
    }

    #[test]
    fn request_errors_match_spamd() {
        let l = SpamcLimits::default();
        for bad in [
            &b"FOO SPAMC/1.5\r\n\r\n"[..],
            b"CHECK HTTP/1.0\r\n\r\n",
            b"check SPAMC/1.5\r\n\r\n",
            b"CHECK SPAMC/1.5\r\nno colon\r\n\r\n",
            b"CHECK SPAMC/1.5\r\nContent-length: x\r\n\r\n",
            b"CHECK SPAMC/1.5\r\nContent-length: 1\r\nContent-length: 1\r\n\r\n",
            b"CHECK SPAMC/1.5\r\nUser: a b\r\n\r\n",
            b"CHECK SPAMC/1.5\nContent-length: 1\n\n",
        ] {
            assert!(
                parse_request_head(bad, &l).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_request_head(b"CHECK SPAMC/1.5\r\nUs", &l), Ok(None));
        let max = b"CHECK SPAMC/1.5\r\nContent-length: 18446744073709551615\r\n\r\n";
        let (h, _) = parse_request_head(max, &l).unwrap().unwrap();
        assert_eq!(h.content_length, Some(u64::MAX));
        let over = b"CHECK SPAMC/1.5\r\nContent-length: 18446744073709551616\r\n\r\n";
        assert!(parse_request_head(over, &l).is_err());
        assert_eq!(parse_request_head(b"", &l), Ok(None));
    }

    #[test]
    fn limits() {
        let l = SpamcLimits {
            max_line: 20,
            max_headers: 2,
            max_body: 10,
        };
        assert_eq!(
            parse_request_head(&[b'A'; 30], &l),
            Err(SpamcError::LineTooLong { max: 20 })
        );
        assert_eq!(
            parse_request_head(b"CHECK SPAMC/1.5\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &l),
            Err(SpamcError::TooManyHeaders { max: 2 })
        );
        let mut r = ResponseReader::new(l.clone());
        assert_eq!(
            r.feed(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 11\r\n\r\n"),
            Err(SpamcError::BodyTooLarge { max: 10 })
        );
        let mut r = ResponseReader::new(SpamcLimits { max_line: 30, ..l });
        r.feed(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n\r\n")
            .unwrap();
        assert_eq!(
            r.feed(&[b'x'; 11]),
            Err(SpamcError::BodyTooLarge { max: 10 })
        );
    }

    #[test]
    fn truncated_and_trailing() {
        assert_eq!(read_all(b""), Err(SpamcError::Truncated));
        assert_eq!(read_all(b"SPAMD/1.1 0 EX"), Err(SpamcError::Truncated));
        assert_eq!(
            read_all(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n"),
            Err(SpamcError::Truncated)
        );
        assert_eq!(
            read_all(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\n\r\nabc"),
            Err(SpamcError::Truncated)
        );
        assert_eq!(
            read_all(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 1\r\n\r\nabc"),
            Err(SpamcError::TrailingData)
        );
        assert!(read_all(b"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1.0 / 5.0\r\n\r\n").is_err());
        assert!(read_all(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e3 / 5.0\r\n\r\n").is_err());
        assert!(read_all(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(read_all(b"SPAMD/1.1 999 X\r\n").is_err());
    }

    #[test]
    fn status_text_is_sanitised() {
        let r = read_all(b"SPAMD/1.0 76 Bad header line: \x01\xff\r\n").unwrap();
        assert_eq!(r.head.text.as_str(), "Bad header line: ??");
        assert!(StatusText::new("a\r\nb").is_err());
        assert!(UserName::new("").is_err());
    }

    #[test]
    fn symbols_body() {
        assert_eq!(parse_symbols(b"").unwrap(), vec![]);
        assert_eq!(parse_symbols(b"A, B\r\n").unwrap().len(), 2);
        assert_eq!(parse_symbols(b"A,,B"), Err(SpamcError::BadSymbols));
        assert_eq!(parse_symbols(b"A B"), Err(SpamcError::BadSymbols));
    }

    #[test]
    fn encode_response_transcripts() {
        let mut out = Vec::new();
        let head = ResponseHead {
            version: Version::V1_1,
            code: StatusCode::EX_OK,
            text: StatusText::new("EX_OK").unwrap(),
            content_length: Some(27),
            spam: Some(SpamResult {
                is_spam: true,
                word: SpamWord::TrueFalse,
                score: Score::from_tenths(10_000),
                threshold: Score::from_tenths(50),
            }),
        };
        encode_response_head(&head, &mut out);
        assert_eq!(
            out,
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
        );
        out.clear();
        let pong = ResponseHead {
            version: Version::V1_5,
            code: StatusCode::EX_OK,
            text: StatusText::new("PONG").unwrap(),
            content_length: None,
            spam: None,
        };
        encode_response_head(&pong, &mut out);
        assert_eq!(out, b"SPAMD/1.5 0 PONG\r\n");
    }
}
