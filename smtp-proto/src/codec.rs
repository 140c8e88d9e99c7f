//! Framing, parsing and encoding of commands and replies.
//!
//! - [`LineFramer`] finds lines with `memchr` and enforces a per-mode length limit (commands
//!   [`DEFAULT_COMMAND_LINE_LIMIT`] = 512 octets, SASL lines [`DEFAULT_SASL_LINE_LIMIT`] =
//!   12288 octets). An over-long line is discarded up to its end, so the stream stays in sync.
//! - [`parse_command`] parses one complete command line; [`Command::encode`] writes one.
//! - [`ReplyParser`] parses complete (possibly multi-line) replies for a client;
//!   [`Reply::encode`] writes one.
//!
//! Every value round-trips: `parse(encode(x)) == x`.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::codec::{parse_command, Frame, LineFramer};
//! use mailbag_smtp_proto::types::Command;
//!
//! let input = b"MAIL FROM:<a@example.org> SIZE=100\r\nRCPT TO:<b@example.org>\r\n";
//! let mut framer = LineFramer::new(512);
//! let Frame::Line { line, consumed } = framer.frame(input) else { panic!() };
//! let Command::Mail { params, .. } = parse_command(&input[line])? else { panic!() };
//! assert_eq!(params.size, Some(100));
//! assert_eq!(consumed, 36);
//! # Ok::<(), mailbag_smtp_proto::codec::CommandError>(())
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use alloc::borrow::Cow;
use core::ops::Range;

use crate::address::{AddressError, ForwardPath, forward_path_in, path_fast, reverse_path_in};
use crate::types::{
    AuthResponse, Body, By, ByMode, Command, EnhancedStatusCode as Esc, Envid, HeloName, Hold,
    HoldUntil, MAIL_KEYWORDS, MailParams, Mechanism, MtPriority, Notify, Orcpt, Param,
    RCPT_KEYWORDS, RcptParams, Reply, ReplyCode, Ret, Secret, Text, XText, known_keyword, push_u64,
};

/// Default command line limit in octets, CRLF included (RFC 5321 section 4.5.3.1.4).
pub const DEFAULT_COMMAND_LINE_LIMIT: usize = 512;
/// Default SASL line limit in octets (RFC 4954 section 4).
pub const DEFAULT_SASL_LINE_LIMIT: usize = 12288;
/// Default reply line limit in octets, CRLF included (RFC 5321 section 4.5.3.1.5).
pub const DEFAULT_REPLY_LINE_LIMIT: usize = 512;
/// Default maximum number of lines in one reply.
pub const DEFAULT_REPLY_MAX_LINES: usize = 256;

// ---------------------------------------------------------------- framer

/// What [`LineFramer::frame`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Frame {
    /// A complete line: `line` is its range in the buffer, without the CRLF (or bare LF);
    /// `consumed` octets (line and terminator) are done.
    Line {
        /// The line content, terminator excluded.
        line: Range<usize>,
        /// Octets to drop from the front of the buffer.
        consumed: usize,
    },
    /// An over-long line ended: it was discarded (`consumed` octets); answer it with an error.
    TooLong {
        /// Octets to drop from the front of the buffer.
        consumed: usize,
    },
    /// No complete line yet; `consumed` octets of an over-long line were discarded (drop them).
    Incomplete {
        /// Octets to drop from the front of the buffer.
        consumed: usize,
    },
}

/// Finds lines with `memchr`, enforcing a length limit (terminator included).
///
/// A line longer than the limit is discarded up to and including its LF, so that no byte of
/// it is ever taken as a command; [`Frame::TooLong`] is reported when its end is seen.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_len: usize,
    discarding: bool,
}

impl LineFramer {
    /// A framer with the given limit in octets (CRLF included; at least 3).
    pub fn new(max_len: usize) -> Self {
        LineFramer {
            max_len: max_len.max(3),
            discarding: false,
        }
    }

    /// Changes the limit (e.g. when entering SASL mode).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len.max(3);
    }

    /// The current limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets a partly discarded line (after STARTTLS).
    pub fn reset(&mut self) {
        self.discarding = false;
    }

    /// Whether an over-long line is being discarded: the next octets are the
    /// rest of it, not the start of a line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Looks for the next line at the start of `buf`.
    #[inline]
    pub fn frame(&mut self, buf: &[u8]) -> Frame {
        if self.discarding {
            return match memchr::memchr(b'\n', buf) {
                Some(p) => {
                    self.discarding = false;
                    Frame::TooLong { consumed: p + 1 }
                }
                None => Frame::Incomplete {
                    consumed: buf.len(),
                },
            };
        }
        let window = &buf[..buf.len().min(self.max_len)];
        match find_lf(window) {
            Some(p) => {
                let end = if p > 0 && buf[p - 1] == b'\r' {
                    p - 1
                } else {
                    p
                };
                Frame::Line {
                    line: 0..end,
                    consumed: p + 1,
                }
            }
            None if buf.len() >= self.max_len => {
                self.discarding = true;
                match self.frame(&buf[self.max_len..]) {
                    Frame::TooLong { consumed } => Frame::TooLong {
                        consumed: consumed + self.max_len,
                    },
                    Frame::Incomplete { .. } | Frame::Line { .. } => Frame::Incomplete {
                        consumed: buf.len(),
                    },
                }
            }
            None => Frame::Incomplete { consumed: 0 },
        }
    }
}

/// Octets [`find_lf`] searches itself before it hands over to `memchr`.
const SHORT_LINE: usize = 128;

/// The first LF in `h`, tuned for short lines. Each 16-octet chunk is tested with an
/// OR-reduction of "is LF" (one SSE2 compare and `pmovmskb`), then the hit is located in its
/// 8-octet half with the SWAR zero-octet test. For the short lines of SMTP commands (40 to
/// 100 octets) this is about half the instructions of a `memchr` call (dispatch, alignment,
/// set-up); past [`SHORT_LINE`] octets `memchr` (AVX2 when available) takes over.
#[inline]
pub(crate) fn find_lf(h: &[u8]) -> Option<usize> {
    let mut done = 0;
    for chunk in h.chunks_exact(16).take(SHORT_LINE / 16) {
        if chunk.iter().fold(false, |a, &c| a | (c == b'\n')) {
            let (lo, hi) = chunk.split_at(8);
            return Some(done + lf_in_word(lo).or_else(|| lf_in_word(hi).map(|p| p + 8))?);
        }
        done += 16;
    }
    let tail = h.get(done..)?;
    if done == SHORT_LINE {
        return memchr::memchr(b'\n', tail).map(|p| done + p);
    }
    tail.iter().position(|&c| c == b'\n').map(|p| done + p)
}

/// The first LF in an 8-octet word: the classic "has a zero octet" test on `word ^ LFs`;
/// the lowest flagged octet is always a real zero (false positives only appear above a real
/// zero, through the borrow).
#[inline(always)]
fn lf_in_word(word: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const LFS: u64 = u64::from_le_bytes([b'\n'; 8]);
    let x = u64::from_le_bytes(word.try_into().ok()?) ^ LFS;
    let t = x.wrapping_sub(ONES) & !x & HIGH;
    (t != 0).then(|| (t.trailing_zeros() / 8) as usize)
}

// ---------------------------------------------------------------- command errors

/// Why a command line was refused. [`CommandError::reply`] gives the precise reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The line exceeded the limit (500 5.5.2).
    #[error("line too long")]
    LineTooLong,
    /// NUL, CR or another control character in the line (500 5.5.2).
    #[error("invalid character in command")]
    InvalidCharacter,
    /// Unknown verb (500 5.5.1).
    #[error("command unrecognized")]
    Unknown,
    /// A known verb this crate does not implement (ETRN, TURN, ...) (502 5.5.1).
    #[error("command not implemented")]
    NotImplemented,
    /// Bad arguments; the text is the usage (501 5.5.4).
    #[error("syntax: {0}")]
    Syntax(&'static str),
    /// Invalid reverse-path (501 5.1.7).
    #[error("invalid sender address: {0}")]
    Sender(AddressError),
    /// Invalid forward-path (501 5.1.3).
    #[error("invalid recipient address: {0}")]
    Recipient(AddressError),
    /// A non-ASCII address in a MAIL without SMTPUTF8 (550 5.6.7, RFC 6530
    /// section 7.1: "mailbox unavailable" at MAIL; RCPT's is 553).
    #[error("non-ASCII address requires SMTPUTF8")]
    NonAscii,
    /// A parameter with a bad value (501 5.5.4).
    #[error("invalid value for parameter {0}")]
    InvalidParam(&'static str),
    /// A parameter given twice (501 5.5.4).
    #[error("duplicate parameter {0}")]
    DuplicateParam(&'static str),
}

impl CommandError {
    /// The reply a server sends for this error.
    pub fn reply(&self) -> Reply<'static> {
        match self {
            CommandError::LineTooLong => Reply::fixed(500, Esc::c(5, 5, 2), "Line too long"),
            CommandError::InvalidCharacter => {
                Reply::fixed(500, Esc::c(5, 5, 2), "Invalid character in command")
            }
            CommandError::Unknown => {
                Reply::fixed(500, Esc::c(5, 5, 1), "Syntax error, command unrecognized")
            }
            CommandError::NotImplemented => {
                Reply::fixed(502, Esc::c(5, 5, 1), "Command not implemented")
            }
            CommandError::Syntax(usage) => Reply::unchecked(
                ReplyCode::PARAM_SYNTAX,
                Some(Esc::c(5, 5, 4)),
                vec![Cow::Owned(format!("Syntax: {usage}"))],
            ),
            CommandError::Sender(e) => Reply::unchecked(
                ReplyCode::PARAM_SYNTAX,
                Some(Esc::c(5, 1, 7)),
                vec![Cow::Owned(format!("Bad sender address syntax: {e}"))],
            ),
            CommandError::Recipient(e) => Reply::unchecked(
                ReplyCode::PARAM_SYNTAX,
                Some(Esc::c(5, 1, 3)),
                vec![Cow::Owned(format!("Bad recipient address syntax: {e}"))],
            ),
            CommandError::NonAscii => {
                Reply::fixed(550, Esc::c(5, 6, 7), "Non-ASCII address requires SMTPUTF8")
            }
            CommandError::InvalidParam(p) => Reply::unchecked(
                ReplyCode::PARAM_SYNTAX,
                Some(Esc::c(5, 5, 4)),
                vec![Cow::Owned(format!("Invalid value for parameter {p}"))],
            ),
            CommandError::DuplicateParam(p) => Reply::unchecked(
                ReplyCode::PARAM_SYNTAX,
                Some(Esc::c(5, 5, 4)),
                vec![Cow::Owned(format!("Parameter {p} given more than once"))],
            ),
        }
    }
}

// ---------------------------------------------------------------- command parser

const fn kw4(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes([s[0] | 0x20, s[1] | 0x20, s[2] | 0x20, s[3] | 0x20])
}

fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_end_sp(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|&&c| c == b' ').count();
    &b[..b.len() - n]
}

/// The text after the verb: `None` if nothing (or only spaces), error if no space separator.
fn args(rest: &[u8]) -> Result<Option<&[u8]>, CommandError> {
    if rest.is_empty() {
        return Ok(None);
    }
    let Some(r) = rest.strip_prefix(b" ") else {
        return Err(CommandError::Unknown);
    };
    let r = trim_end_sp(r);
    Ok(if r.is_empty() { None } else { Some(r) })
}

fn no_args(rest: &[u8], usage: &'static str) -> Result<(), CommandError> {
    match args(rest)? {
        None => Ok(()),
        Some(_) => Err(CommandError::Syntax(usage)),
    }
}

fn helo_arg<'a>(rest: &'a [u8], usage: &'static str) -> Result<HeloName<'a>, CommandError> {
    let a = args(rest)?.ok_or(CommandError::Syntax(usage))?;
    HeloName::from_wire(a).ok_or(CommandError::Syntax(usage))
}

fn text_arg(rest: &[u8]) -> Result<Option<Text<'_>>, CommandError> {
    match args(rest)? {
        None => Ok(None),
        Some(a) => Text::from_wire(a)
            .map(Some)
            .ok_or(CommandError::InvalidCharacter),
    }
}

fn target_arg<'a>(rest: &'a [u8], usage: &'static str) -> Result<(Text<'a>, bool), CommandError> {
    let a = args(rest)?.ok_or(CommandError::Syntax(usage))?;
    let (a, utf8) = match a.len().checked_sub(9) {
        Some(n) if n > 0 && eq_ic(&a[n..], b" SMTPUTF8") => (trim_end_sp(&a[..n]), true),
        _ => (a, false),
    };
    let t = Text::from_wire(a).ok_or(CommandError::Syntax(usage))?;
    Ok((t, utf8))
}

/// Splits `KEY[=VALUE]` parameters separated by spaces.
fn params(mut rest: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    core::iter::from_fn(move || {
        while let [b' ', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let (p, tail) = rest.split_at(end);
        rest = tail;
        Some(match memchr::memchr(b'=', p) {
            Some(eq) => (&p[..eq], Some(&p[eq + 1..])),
            None => (p, None),
        })
    })
}

fn parse_u64_saturating(v: &[u8], max_digits: usize) -> Option<u64> {
    if v.is_empty() || v.len() > max_digits || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        n = n.saturating_mul(10).saturating_add(u64::from(c - b'0'));
    }
    Some(n)
}

fn set<T>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(CommandError::DuplicateParam(name));
    }
    *slot = Some(v);
    Ok(())
}

fn set_flag(slot: &mut bool, name: &'static str) -> Result<(), CommandError> {
    if *slot {
        return Err(CommandError::DuplicateParam(name));
    }
    *slot = true;
    Ok(())
}

fn parse_mail_params(rest: &[u8]) -> Result<MailParams<'_>, CommandError> {
    let mut p = MailParams::default();
    if rest.is_empty() {
        return Ok(p);
    }
    for (k, v) in params(rest) {
        match (k.len(), v) {
            (4, Some(v)) if eq_ic(k, b"SIZE") => {
                let n = parse_u64_saturating(v, 20).ok_or(CommandError::InvalidParam("SIZE"))?;
                set(&mut p.size, n, "SIZE")?;
            }
            (4, Some(v)) if eq_ic(k, b"BODY") => {
                let b = if eq_ic(v, b"7BIT") {
                    Body::SevenBit
                } else if eq_ic(v, b"8BITMIME") {
                    Body::EightBitMime
                } else if eq_ic(v, b"BINARYMIME") {
                    Body::BinaryMime
                } else {
                    return Err(CommandError::InvalidParam("BODY"));
                };
                set(&mut p.body, b, "BODY")?;
            }
            (8, None) if eq_ic(k, b"SMTPUTF8") => set_flag(&mut p.smtputf8, "SMTPUTF8")?,
            (3, Some(v)) if eq_ic(k, b"RET") => {
                let r = if eq_ic(v, b"FULL") {
                    Ret::Full
                } else if eq_ic(v, b"HDRS") {
                    Ret::Headers
                } else {
                    return Err(CommandError::InvalidParam("RET"));
                };
                set(&mut p.ret, r, "RET")?;
            }
            (5, Some(v)) if eq_ic(k, b"ENVID") => {
                let x = XText::from_wire(v)
                    .and_then(|x| Envid::new(x).ok())
                    .ok_or(CommandError::InvalidParam("ENVID"))?;
                set(&mut p.envid, x, "ENVID")?;
            }
            (4, Some(v)) if eq_ic(k, b"AUTH") => {
                let x = XText::from_wire(v).ok_or(CommandError::InvalidParam("AUTH"))?;
                set(&mut p.auth, x, "AUTH")?;
            }
            (10, None) if eq_ic(k, b"REQUIRETLS") => set_flag(&mut p.requiretls, "REQUIRETLS")?,
            (11, Some(v)) if eq_ic(k, b"MT-PRIORITY") => {
                let n = core::str::from_utf8(v)
                    .ok()
                    .filter(|s| s.len() <= 2 && !s.starts_with('+'))
                    .and_then(|s| s.parse::<i8>().ok())
                    .and_then(|n| MtPriority::try_from(n).ok())
                    .ok_or(CommandError::InvalidParam("MT-PRIORITY"))?;
                set(&mut p.mt_priority, n, "MT-PRIORITY")?;
            }
            (2, Some(v)) if eq_ic(k, b"BY") => {
                let by = parse_by(v).ok_or(CommandError::InvalidParam("BY"))?;
                set(&mut p.by, by, "BY")?;
            }
            (7, Some(v)) if eq_ic(k, b"HOLDFOR") => {
                // RFC 4865 writes at most 9 digits; more are read (saturating) so that every
                // `Hold::For` value reads back as written: the server's maximum refuses it.
                let n = parse_u64_saturating(v, 20).ok_or(CommandError::InvalidParam("HOLDFOR"))?;
                set(&mut p.hold, Hold::For(n), "HOLDFOR/HOLDUNTIL")?;
            }
            (9, Some(v)) if eq_ic(k, b"HOLDUNTIL") => {
                let t = core::str::from_utf8(v)
                    .ok()
                    .and_then(|t| HoldUntil::try_from(t).ok())
                    .ok_or(CommandError::InvalidParam("HOLDUNTIL"))?;
                set(&mut p.hold, Hold::Until(t), "HOLDFOR/HOLDUNTIL")?;
            }
            _ => {
                let param = Param::from_wire(k, v).ok_or(CommandError::Syntax(MAIL_USAGE))?;
                if is_known_mail_keyword(k) {
                    // A known keyword with a missing or unexpected value.
                    return Err(CommandError::InvalidParam(known_name(k)));
                }
                p.unknown.push(param);
            }
        }
    }
    Ok(p)
}

fn is_known_mail_keyword(k: &[u8]) -> bool {
    MAIL_KEYWORDS.iter().any(|m| eq_ic(k, m.as_bytes()))
}

fn known_name(k: &[u8]) -> &'static str {
    known_keyword(k).unwrap_or("?")
}

fn parse_by(v: &[u8]) -> Option<By> {
    let semi = memchr::memchr(b';', v)?;
    let (num, mode) = (&v[..semi], &v[semi + 1..]);
    let (neg, digits) = match num.split_first()? {
        (b'-', d) => (true, d),
        (b'+', d) => (false, d),
        _ => (false, num),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        n = n * 10 + i64::from(c - b'0');
    }
    if neg {
        n = -n;
    }
    let (m, trace) = match mode {
        [m] => (*m, false),
        [m, t] if t.eq_ignore_ascii_case(&b'T') => (*m, true),
        _ => return None,
    };
    let mode = match m.to_ascii_uppercase() {
        b'R' => ByMode::Return,
        b'N' => ByMode::Notify,
        _ => return None,
    };
    if neg && n == 0 {
        return None;
    }
    By::new(n, mode, trace).ok()
}

fn parse_rcpt_params(rest: &[u8]) -> Result<RcptParams<'_>, CommandError> {
    let mut p = RcptParams::default();
    if rest.is_empty() {
        return Ok(p);
    }
    for (k, v) in params(rest) {
        match (k.len(), v) {
            (6, Some(v)) if eq_ic(k, b"NOTIFY") => {
                let n = parse_notify(v).ok_or(CommandError::InvalidParam("NOTIFY"))?;
                set(&mut p.notify, n, "NOTIFY")?;
            }
            (5, Some(v)) if eq_ic(k, b"ORCPT") => {
                let semi = memchr::memchr(b';', v).ok_or(CommandError::InvalidParam("ORCPT"))?;
                let (t, a) = (&v[..semi], &v[semi + 1..]);
                if !crate::types::is_addr_type(t) {
                    return Err(CommandError::InvalidParam("ORCPT"));
                }
                let address = XText::from_wire(a)
                    .filter(|x| x.as_str().len() <= Orcpt::MAX_ADDRESS_LEN)
                    .ok_or(CommandError::InvalidParam("ORCPT"))?;
                let addr_type = Cow::Borrowed(
                    core::str::from_utf8(t).map_err(|_| CommandError::InvalidParam("ORCPT"))?,
                );
                set(
                    &mut p.orcpt,
                    Orcpt::from_checked(addr_type, address),
                    "ORCPT",
                )?;
            }
            _ => {
                let param = Param::from_wire(k, v).ok_or(CommandError::Syntax(RCPT_USAGE))?;
                if RCPT_KEYWORDS.iter().any(|m| eq_ic(k, m.as_bytes())) {
                    return Err(CommandError::InvalidParam(known_name(k)));
                }
                p.unknown.push(param);
            }
        }
    }
    Ok(p)
}

fn parse_notify(v: &[u8]) -> Option<Notify> {
    if eq_ic(v, b"NEVER") {
        return Some(Notify::NEVER);
    }
    let (mut s, mut f, mut d) = (false, false, false);
    for item in v.split(|&c| c == b',') {
        let slot = if eq_ic(item, b"SUCCESS") {
            &mut s
        } else if eq_ic(item, b"FAILURE") {
            &mut f
        } else if eq_ic(item, b"DELAY") {
            &mut d
        } else {
            return None;
        };
        if *slot {
            return None;
        }
        *slot = true;
    }
    Notify::new(s, f, d)
}

const MAIL_USAGE: &str = "MAIL FROM:<address> [parameters]";
const RCPT_USAGE: &str = "RCPT TO:<address> [parameters]";

/// Skips `FROM:` / `TO:` (case-insensitive) and optional spaces after the colon.
///
/// `prefix` is letters then a colon: the letters are compared case-folded with `| 0x20`
/// (exact for letters), the colon exactly.
#[inline]
fn after_prefix<'a>(rest: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let r = rest.strip_prefix(b" ")?;
    let (word, mut r) = r.split_at_checked(prefix.len())?;
    let (colon, letters) = word.split_last()?;
    if *colon != b':'
        || letters
            .iter()
            .zip(prefix)
            .any(|(&c, &p)| c | 0x20 != p | 0x20)
    {
        return None;
    }
    while let [b' ', t @ ..] = r {
        r = t;
    }
    Some(r)
}

fn after_path<'a>(rest: &'a [u8], usage: &'static str) -> Result<&'a [u8], CommandError> {
    match rest.first() {
        None | Some(b' ') => Ok(rest),
        Some(_) => Err(CommandError::Syntax(usage)),
    }
}

/// Parses one command line (with or without its CRLF).
///
/// Verbs are matched case-insensitively; parameters are validated and each may appear once.
/// Unknown MAIL/RCPT parameters are kept in `unknown` (the server answers 555).
///
/// # Errors
///
/// A [`CommandError`] whose [`CommandError::reply`] is the precise reply to send.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::codec::{parse_command, CommandError};
///
/// let err = parse_command(b"MAIL FROM:<>>>>>\r\n").unwrap_err();
/// assert_eq!(err, CommandError::Syntax("MAIL FROM:<address> [parameters]"));
/// assert_eq!(err.reply().code().get(), 501);
/// ```
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let line = strip_terminator(line);
    // Every accepted piece of the grammar excludes control characters, so the check for
    // them is only needed to choose the precise error (500 5.5.2).
    parse_line(line).map_err(|e| {
        if line.iter().any(|&c| c < 0x20 || c == 0x7f) {
            CommandError::InvalidCharacter
        } else {
            e
        }
    })
}

#[inline(always)]
fn parse_line(line: &[u8]) -> Result<Command<'_>, CommandError> {
    // No UTF-8 check of the whole line (`valid = None` below): the common `<local@domain>`
    // path is checked as ASCII by the address fast path, anything else is converted piece
    // by piece.
    // Most verbs have four letters: check that before a memchr call (costly on short lines).
    let verb_len = match line.get(4) {
        Some(b' ') if !line[..4].contains(&b' ') => 4,
        None if line.len() == 4 && !line.contains(&b' ') => 4,
        _ => memchr::memchr(b' ', line).unwrap_or(line.len()),
    };
    let (verb, rest) = line.split_at(verb_len);
    if verb.len() == 4 {
        let k = u32::from_le_bytes([
            verb[0] | 0x20,
            verb[1] | 0x20,
            verb[2] | 0x20,
            verb[3] | 0x20,
        ]);
        // `| 0x20` maps only an upper- and a lower-case letter onto a lower-case letter, so
        // for these all-letter keywords the folded comparison is exact (non-letters that
        // `| 0x20` maps together, like `@` and `` ` ``, never fold onto a letter).
        let cmd = match k {
            k if k == kw4(b"RCPT") => {
                let r = after_prefix(rest, b"TO:").ok_or(CommandError::Syntax(RCPT_USAGE))?;
                // The most common command of all: `RCPT TO:<local@domain>`, built in one go
                // (what `forward_path_in` and the parameter parser would give for it).
                if let Some((to, [])) = path_fast(r) {
                    return Ok(Command::Rcpt {
                        to: ForwardPath::Path(to),
                        params: RcptParams::default(),
                    });
                }
                let (to, r) = forward_path_in(r, None).map_err(|e| match e {
                    AddressError::MissingOpenBracket => CommandError::Syntax(RCPT_USAGE),
                    e => CommandError::Recipient(e),
                })?;
                let r = after_path(r, RCPT_USAGE)?;
                Command::Rcpt {
                    to,
                    params: parse_rcpt_params(r)?,
                }
            }
            k if k == kw4(b"MAIL") => {
                let r = after_prefix(rest, b"FROM:").ok_or(CommandError::Syntax(MAIL_USAGE))?;
                let (from, r) = reverse_path_in(r, None).map_err(|e| match e {
                    AddressError::MissingOpenBracket => CommandError::Syntax(MAIL_USAGE),
                    e => CommandError::Sender(e),
                })?;
                let r = after_path(r, MAIL_USAGE)?;
                let params = parse_mail_params(r)?;
                if !params.smtputf8 && !from.is_ascii() {
                    return Err(CommandError::NonAscii);
                }
                Command::Mail { from, params }
            }
            k if k == kw4(b"EHLO") => Command::Ehlo(helo_arg(rest, "EHLO domain")?),
            k if k == kw4(b"HELO") => Command::Helo(helo_arg(rest, "HELO domain")?),
            k if k == kw4(b"LHLO") => Command::Lhlo(helo_arg(rest, "LHLO domain")?),
            k if k == kw4(b"DATA") => {
                no_args(rest, "DATA")?;
                Command::Data
            }
            k if k == kw4(b"RSET") => {
                no_args(rest, "RSET")?;
                Command::Rset
            }
            k if k == kw4(b"QUIT") => {
                no_args(rest, "QUIT")?;
                Command::Quit
            }
            k if k == kw4(b"NOOP") => Command::Noop(text_arg(rest)?),
            k if k == kw4(b"HELP") => Command::Help(text_arg(rest)?),
            k if k == kw4(b"VRFY") => {
                let (target, smtputf8) = target_arg(rest, "VRFY string")?;
                Command::Vrfy { target, smtputf8 }
            }
            k if k == kw4(b"EXPN") => {
                let (target, smtputf8) = target_arg(rest, "EXPN string")?;
                Command::Expn { target, smtputf8 }
            }
            k if k == kw4(b"BDAT") => parse_bdat(rest)?,
            k if k == kw4(b"AUTH") => parse_auth(rest)?,
            _ if [
                &b"ETRN"[..],
                b"ATRN",
                b"TURN",
                b"SEND",
                b"SOML",
                b"SAML",
                b"BURL",
            ]
            .iter()
            .any(|v| eq_ic(verb, v)) =>
            {
                return Err(CommandError::NotImplemented);
            }
            _ => return Err(CommandError::Unknown),
        };
        return Ok(cmd);
    }
    if eq_ic(verb, b"STARTTLS") {
        no_args(rest, "STARTTLS")?;
        return Ok(Command::StartTls);
    }
    if eq_ic(verb, b"XCLIENT") || eq_ic(verb, b"XFORWARD") {
        return Err(CommandError::NotImplemented);
    }
    Err(CommandError::Unknown)
}

fn parse_bdat(rest: &[u8]) -> Result<Command<'static>, CommandError> {
    const USAGE: &str = "BDAT size [LAST]";
    let a = args(rest)?.ok_or(CommandError::Syntax(USAGE))?;
    let mut it = a.split(|&c| c == b' ').filter(|s| !s.is_empty());
    let size = it
        .next()
        .and_then(|s| parse_u64_saturating(s, 20))
        .ok_or(CommandError::Syntax(USAGE))?;
    let last = match it.next() {
        None => false,
        Some(l) if eq_ic(l, b"LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if it.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &[u8]) -> Result<Command<'_>, CommandError> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let a = args(rest)?.ok_or(CommandError::Syntax(USAGE))?;
    let (m, ir) = match memchr::memchr(b' ', a) {
        Some(p) => (&a[..p], Some(&a[p + 1..])),
        None => (a, None),
    };
    let mechanism = Mechanism::from_wire(m).ok_or(CommandError::Syntax(USAGE))?;
    let initial_response = match ir {
        None => None,
        Some(ir) => Some(Secret::from_wire(ir).ok_or(CommandError::InvalidParam("AUTH"))?),
    };
    Ok(Command::Auth {
        mechanism,
        initial_response,
    })
}

/// Parses a client line during an AUTH exchange: base64 data, `=`/empty, or `*` (cancel).
///
/// # Errors
///
/// [`CommandError::InvalidParam`] when the line is not base64.
pub fn parse_auth_response(line: &[u8]) -> Result<AuthResponse<'_>, CommandError> {
    let line = strip_terminator(line);
    match line {
        b"*" => Ok(AuthResponse::Cancel),
        b"" => Ok(AuthResponse::Data(
            Secret::from_wire(b"=").ok_or(CommandError::InvalidParam("AUTH"))?,
        )),
        l => Secret::from_wire(l)
            .map(AuthResponse::Data)
            .ok_or(CommandError::InvalidParam("AUTH")),
    }
}

impl AuthResponse<'_> {
    /// Appends the wire form with CRLF.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            AuthResponse::Cancel => out.push(b'*'),
            AuthResponse::Data(s) => s.encode(out),
        }
        out.extend_from_slice(b"\r\n");
    }
}

// ---------------------------------------------------------------- command encoder

fn encode_mail_params(p: &MailParams<'_>, out: &mut Vec<u8>) {
    if let Some(n) = p.size {
        out.extend_from_slice(b" SIZE=");
        push_u64(n, out);
    }
    if let Some(b) = p.body {
        out.extend_from_slice(b" BODY=");
        out.extend_from_slice(b.as_str().as_bytes());
    }
    if p.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    if let Some(r) = p.ret {
        out.extend_from_slice(match r {
            Ret::Full => b" RET=FULL",
            Ret::Headers => b" RET=HDRS",
        });
    }
    if let Some(e) = &p.envid {
        out.extend_from_slice(b" ENVID=");
        e.xtext().encode(out);
    }
    if let Some(a) = &p.auth {
        out.extend_from_slice(b" AUTH=");
        if a.as_str().is_empty() {
            // No empty ESMTP value exists; RFC 4954's "no identity" is `<>`.
            out.extend_from_slice(b"<>");
        } else {
            a.encode(out);
        }
    }
    if p.requiretls {
        out.extend_from_slice(b" REQUIRETLS");
    }
    if let Some(m) = p.mt_priority {
        out.extend_from_slice(b" MT-PRIORITY=");
        out.extend_from_slice(m.get().to_string().as_bytes());
    }
    if let Some(by) = p.by {
        out.extend_from_slice(b" BY=");
        out.extend_from_slice(by.seconds().to_string().as_bytes());
        out.push(b';');
        out.push(match by.mode() {
            ByMode::Return => b'R',
            ByMode::Notify => b'N',
        });
        if by.trace() {
            out.push(b'T');
        }
    }
    match &p.hold {
        Some(Hold::For(n)) => {
            out.extend_from_slice(b" HOLDFOR=");
            push_u64(*n, out);
        }
        Some(Hold::Until(t)) => {
            out.extend_from_slice(b" HOLDUNTIL=");
            out.extend_from_slice(t.as_str().as_bytes());
        }
        None => {}
    }
    encode_unknown(&p.unknown, out);
}

fn encode_unknown(params: &[Param<'_>], out: &mut Vec<u8>) {
    for u in params {
        out.push(b' ');
        out.extend_from_slice(u.keyword().as_bytes());
        if let Some(v) = u.value() {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    }
}

impl Command<'_> {
    /// Appends the wire form, CRLF included.
    ///
    /// Values built with the public constructors always encode to a line that
    /// [`parse_command`] reads back as the same value, with two exceptions that have
    /// no wire form of their own: a `VRFY`/`EXPN` target that itself ends in
    /// ` SMTPUTF8` without the `smtputf8` flag reads back with the flag set, and an
    /// empty `AUTH=` value is written as `<>`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.verb().as_bytes());
        match self {
            Command::Ehlo(h) | Command::Helo(h) | Command::Lhlo(h) => {
                out.push(b' ');
                out.extend_from_slice(h.as_str().as_bytes());
            }
            Command::Mail { from, params } => {
                out.extend_from_slice(b" FROM:");
                from.encode(out);
                encode_mail_params(params, out);
            }
            Command::Rcpt { to, params } => {
                out.extend_from_slice(b" TO:");
                to.encode(out);
                if let Some(n) = params.notify {
                    out.extend_from_slice(b" NOTIFY=");
                    if n.is_never() {
                        out.extend_from_slice(b"NEVER");
                    } else {
                        let mut first = true;
                        for (on, name) in [
                            (n.success(), &b"SUCCESS"[..]),
                            (n.failure(), b"FAILURE"),
                            (n.delay(), b"DELAY"),
                        ] {
                            if on {
                                if !first {
                                    out.push(b',');
                                }
                                first = false;
                                out.extend_from_slice(name);
                            }
                        }
                    }
                }
                if let Some(o) = &params.orcpt {
                    out.extend_from_slice(b" ORCPT=");
                    out.extend_from_slice(o.addr_type().as_bytes());
                    out.push(b';');
                    o.address().encode(out);
                }
                encode_unknown(&params.unknown, out);
            }
            Command::Bdat { size, last } => {
                out.push(b' ');
                push_u64(*size, out);
                if *last {
                    out.extend_from_slice(b" LAST");
                }
            }
            Command::Vrfy { target, smtputf8 } | Command::Expn { target, smtputf8 } => {
                out.push(b' ');
                out.extend_from_slice(target.as_str().as_bytes());
                if *smtputf8 {
                    out.extend_from_slice(b" SMTPUTF8");
                }
            }
            Command::Help(t) | Command::Noop(t) => {
                if let Some(t) = t {
                    out.push(b' ');
                    out.extend_from_slice(t.as_str().as_bytes());
                }
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                out.push(b' ');
                out.extend_from_slice(mechanism.as_str().as_bytes());
                if let Some(ir) = initial_response {
                    out.push(b' ');
                    ir.encode(out);
                }
            }
            Command::Data | Command::Rset | Command::Quit | Command::StartTls => {}
        }
        out.extend_from_slice(b"\r\n");
    }
}

// ---------------------------------------------------------------- reply parser

/// Why a reply could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than the limit.
    #[error("reply line too long")]
    LineTooLong,
    /// More lines than the limit.
    #[error("too many reply lines")]
    TooManyLines,
    /// A line not ending in CRLF.
    #[error("reply line not terminated by CRLF")]
    BareLf,
    /// A line not starting with a 2xx..5xx code followed by SP, `-` or the end.
    #[error("malformed reply line")]
    Malformed,
    /// Lines of one reply with different codes.
    #[error("reply code changed within a multi-line reply")]
    CodeMismatch,
    /// Text that is not UTF-8 or holds control characters (only with
    /// [`ReplyOptions::strict_text`]; by default such octets become `?`).
    #[error("invalid characters in reply text")]
    InvalidText,
}

/// Limits of the [`ReplyParser`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplyOptions {
    /// Longest line kept, CRLF included. Default [`DEFAULT_REPLY_LINE_LIMIT`] (512). A
    /// longer line is cut to it ([`ReplyOptions::truncate_long_lines`]) or refused.
    pub max_line_len: usize,
    /// Most lines in one reply. Default [`DEFAULT_REPLY_MAX_LINES`] (256).
    pub max_lines: usize,
    /// Refuse a reply whose text holds a control character other than HT, DEL,
    /// or octets that are not UTF-8 ([`ReplyError::InvalidText`]). Default
    /// `false`: each such octet (each character, for a control) becomes `?`, as
    /// Postfix shows them, and the reply keeps its code: the text only explains
    /// it, and a `550` with a stray octet must still be a permanent failure,
    /// not a malformed reply retried for days.
    pub strict_text: bool,
    /// A line longer than `max_line_len` keeps its code and continuation mark and has
    /// its text cut to fit, once its end has arrived (as Postfix's client does; how long
    /// the caller waits for that end is its own buffer limit, such as
    /// `ClientOptions::max_buffered` in the `client` module). Default `true`: a `250` with a
    /// long text after the final dot still says the message was taken, where refusing
    /// the reply would make the sender try again and deliver it twice. `false` refuses
    /// such a line ([`ReplyError::LineTooLong`]).
    pub truncate_long_lines: bool,
    /// Longest line that is cut rather than refused, CRLF included: a line whose end has
    /// not come within this many octets is [`ReplyError::LineTooLong`], so that a server
    /// sending endless text without a line end cannot make the caller buffer it all.
    /// Default [`DEFAULT_REPLY_CUT_LINE_LIMIT`] (65536).
    pub max_cut_line_len: usize,
}

/// Default [`ReplyOptions::max_cut_line_len`].
pub const DEFAULT_REPLY_CUT_LINE_LIMIT: usize = 65536;

impl Default for ReplyOptions {
    fn default() -> Self {
        ReplyOptions {
            max_line_len: DEFAULT_REPLY_LINE_LIMIT,
            max_lines: DEFAULT_REPLY_MAX_LINES,
            strict_text: false,
            truncate_long_lines: true,
            max_cut_line_len: DEFAULT_REPLY_CUT_LINE_LIMIT,
        }
    }
}

/// `text` with every control character but HT, DEL and every octet that is
/// not UTF-8 turned into `?`: text [`crate::types::Reply`] can hold.
fn repaired_text(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c == '\t' || !(c.is_ascii_control()) {
                c
            } else {
                '?'
            });
        }
        out.extend(core::iter::repeat_n('?', chunk.invalid().len()));
    }
    out
}

/// Parses replies (the client side).
#[derive(Debug, Clone, Default)]
pub struct ReplyParser {
    options: ReplyOptions,
}

impl ReplyParser {
    /// A parser with the given limits.
    pub fn new(options: ReplyOptions) -> Self {
        ReplyParser { options }
    }

    /// Parses one complete reply at the start of `buf`.
    ///
    /// Returns `Ok(None)` when more input is needed, or the reply and the octets it used.
    /// The enhanced status code is recognised when every line carries the same one, of
    /// the reply's class (RFC 2034 section 4 repeats it on each line); it is then removed
    /// from every line. Otherwise the lines are kept as they are.
    ///
    /// # Errors
    ///
    /// A [`ReplyError`]; the connection is then out of sync and should be closed.
    pub fn parse<'a>(&self, buf: &'a [u8]) -> Result<Option<(Reply<'a>, usize)>, ReplyError> {
        let mut pos = 0;
        let mut code: Option<u16> = None;
        let mut lines: Vec<&'a [u8]> = Vec::new();
        loop {
            let rest = &buf[pos..];
            let max = self.options.max_line_len;
            let window = &rest[..rest.len().min(max)];
            let (lf, long) = match memchr::memchr(b'\n', window) {
                Some(lf) => (lf, false),
                None if rest.len() < max => return Ok(None),
                None if !self.options.truncate_long_lines => {
                    return Err(ReplyError::LineTooLong);
                }
                None => {
                    let far = rest.len().min(self.options.max_cut_line_len.max(max));
                    match memchr::memchr(b'\n', &rest[max..far]) {
                        Some(i) => (max + i, true),
                        None if far < rest.len() || far >= self.options.max_cut_line_len => {
                            return Err(ReplyError::LineTooLong);
                        }
                        None => return Ok(None),
                    }
                }
            };
            if lf == 0 || rest[lf - 1] != b'\r' {
                return Err(ReplyError::BareLf);
            }
            let line = if long {
                // Cut to the limit, but keep the code and its continuation mark, and
                // never inside a UTF-8 character (strict text would refuse the reply).
                let mut cut = max.saturating_sub(2).max(4).min(lf - 1);
                while cut > 4 && rest.get(cut).is_some_and(|b| b & 0xc0 == 0x80) {
                    cut -= 1;
                }
                &rest[..cut]
            } else {
                &rest[..lf - 1]
            };
            pos += lf + 1;
            if line.len() < 3
                || !line[..3].iter().all(u8::is_ascii_digit)
                || !(b'2'..=b'5').contains(&line[0])
            {
                return Err(ReplyError::Malformed);
            }
            let c = u16::from(line[0] - b'0') * 100
                + u16::from(line[1] - b'0') * 10
                + u16::from(line[2] - b'0');
            if code.is_some_and(|p| p != c) {
                return Err(ReplyError::CodeMismatch);
            }
            code = Some(c);
            let (more, text) = match line.get(3) {
                None => (false, &line[3..]),
                Some(b' ') => (false, &line[4..]),
                Some(b'-') => (true, &line[4..]),
                Some(_) => return Err(ReplyError::Malformed),
            };
            if self.options.strict_text
                && (!crate::types::is_reply_text(text) || core::str::from_utf8(text).is_err())
            {
                return Err(ReplyError::InvalidText);
            }
            lines.push(text);
            if lines.len() > self.options.max_lines {
                return Err(ReplyError::TooManyLines);
            }
            if !more {
                break;
            }
        }
        let code = ReplyCode::try_from(code.unwrap_or(0)).map_err(|_| ReplyError::Malformed)?;
        // RFC 2034 section 4: the code is repeated on every line. A reply where
        // only some lines carry it keeps its lines verbatim: taking the code from
        // the first line would add it to the others on encoding (a line of the
        // length limit would then be too long to parse back).
        let enhanced = lines
            .first()
            .and_then(|l| Esc::parse_prefix(l))
            .filter(|(e, _)| e.class() == code.class())
            .map(|(e, _)| e)
            .filter(|e| {
                lines
                    .iter()
                    .all(|l| Esc::parse_prefix(l).is_some_and(|(x, _)| x == *e))
            });
        let mut out = Vec::with_capacity(lines.len());
        for l in lines {
            let l = match enhanced.and_then(|e| Esc::parse_prefix(l).filter(|(x, _)| *x == e)) {
                Some((_, n)) => l.get(n + 1..).unwrap_or(b""),
                None => l,
            };
            out.push(match core::str::from_utf8(l) {
                Ok(s) if crate::types::is_reply_text(l) => Cow::Borrowed(s),
                _ => Cow::Owned(repaired_text(l)),
            });
        }
        Ok(Some((Reply::unchecked(code, enhanced, out), pos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    proptest::proptest! {
        /// The short-line LF search agrees with `memchr` on any input.
        #[test]
        fn find_lf_matches_memchr(
            h in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b'\r'),
                proptest::strategy::Just(0x8a_u8),
                proptest::strategy::Just(0x0b_u8),
                proptest::num::u8::ANY,
            ], 0..120),
            lf_free_prefix in 0usize..300,
        ) {
            proptest::prop_assert_eq!(find_lf(&h), memchr::memchr(b'\n', &h));
            // Also with a long LF-free start, so that the hit is in any chunk and half.
            let mut g: Vec<u8> = h.iter().take(lf_free_prefix).map(|&c| c | 0x40).collect();
            g.extend_from_slice(&h);
            proptest::prop_assert_eq!(find_lf(&g), memchr::memchr(b'\n', &g));
        }
    }

    /// `HOLDUNTIL=` takes an RFC 3339 date-time with a numeric offset too
    /// (RFC 4865; a review found `+01:00` refused), and nothing else.
    #[test]
    fn holduntil_takes_a_numeric_offset() {
        let mail = |v: &str| {
            parse_command(format!("MAIL FROM:<a@b.c> HOLDUNTIL={v}\r\n").as_bytes())
                .map(|c| c.into_owned())
        };
        for ok in [
            "2026-12-24T08:00:00Z",
            "2026-12-24T08:00:00+01:00",
            "2026-12-24T08:00:00.5-05:30",
        ] {
            match mail(ok) {
                Ok(Command::Mail { params, .. }) => {
                    assert!(matches!(params.hold, Some(Hold::Until(t)) if t.as_str() == ok));
                }
                other => panic!("{ok}: {other:?}"),
            }
        }
        for bad in ["2026/12/24", "a,b", &"1".repeat(41)] {
            assert_eq!(
                mail(bad),
                Err(CommandError::InvalidParam("HOLDUNTIL")),
                "{bad}"
            );
        }
    }

    /// RFC 5321 section 4.2: `textstring = 1*(%d09 / %d32-126)`. A reply
    /// with a TAB in its text is a reply (a Postfix or Exim peer may send
    /// one); other control characters are not text.
    #[test]
    fn tab_is_reply_text() {
        let p = ReplyParser::default();
        let wire_in = b"550 5.1.1 no such user\tTAB\r\n";
        let (r, n) = p.parse(wire_in).unwrap().unwrap();
        assert_eq!(n, wire_in.len());
        assert_eq!(r.code().get(), 550);
        assert_eq!(r.lines(), ["no such user\tTAB"]);
        let mut wire = Vec::new();
        r.encode(&mut wire);
        assert_eq!(wire, wire_in);
        // Other controls, DEL and octets that are not UTF-8 become `?` (the
        // reply keeps its code), or with `strict_text` refuse the reply.
        let strict = ReplyParser::new(ReplyOptions {
            strict_text: true,
            ..ReplyOptions::default()
        });
        for (bad, shown) in [
            (&b"550 5.1.1 a\x1bb\r\n"[..], "a?b"),
            (b"550 5.1.1 a\x7f\x01\r\n", "a??"),
            (b"550 5.1.1 a\x00\r\n", "a?"),
            (b"550 5.1.1 Empf\xe4nger\tweg\r\n", "Empf?nger\tweg"),
            (b"550 5.1.1 caf\xc3\xa9\r\n", "caf\u{e9}"),
        ] {
            let (r, n) = p.parse(bad).unwrap().unwrap();
            assert_eq!(
                (r.code().get(), r.lines()[0].as_ref(), n),
                (550, shown, bad.len())
            );
            assert_eq!(
                r.enhanced().map(|e| e.to_string()).as_deref(),
                Some("5.1.1")
            );
            let mut wire = Vec::new();
            r.encode(&mut wire);
            assert_eq!(p.parse(&wire).unwrap().unwrap().0, r);
            let strict_result = strict.parse(bad);
            if shown.contains('?') {
                assert!(
                    matches!(strict_result, Err(ReplyError::InvalidText)),
                    "{bad:?}"
                );
            } else {
                assert!(strict_result.is_ok());
            }
        }
    }

    /// The enhanced code counts only when every line carries it; a reply with a
    /// line at the length limit that lacks it re-encodes to something that parses
    /// (found by the `smtp_reply` fuzz target).
    #[test]
    fn enhanced_code_only_when_on_every_line() {
        let p = ReplyParser::default();
        let (r, _) = p
            .parse(b"550-5.1.1 first\r\n550 no code here\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.enhanced(), None);
        assert_eq!(r.lines(), ["5.1.1 first", "no code here"]);
        let (r, _) = p
            .parse(b"550-5.1.1 first\r\n550 5.1.1 second\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.enhanced().map(|e| e.to_string()),
            Some("5.1.1".to_owned())
        );
        assert_eq!(r.lines(), ["first", "second"]);
        let long = format!("444-4.4.4\r\n444 {}\r\n", "Y".repeat(506));
        let (r, n) = p.parse(long.as_bytes()).unwrap().unwrap();
        assert_eq!(n, long.len());
        let mut wire = Vec::new();
        r.encode(&mut wire);
        let (again, _) = p.parse(&wire).unwrap().unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn find_lf_every_position() {
        for len in (0..80).chain([127, 128, 129, 143, 144, 300]) {
            for at in 0..=len {
                let mut h = vec![b'x'; len];
                if at < len {
                    h[at] = b'\n';
                }
                // Octets around LF that the SWAR test must not confuse with it.
                if at + 1 < len {
                    h[at + 1] = 0x0b;
                }
                assert_eq!(find_lf(&h), memchr::memchr(b'\n', &h), "{len} {at}");
            }
        }
    }

    #[test]
    fn rcpt_fast_path_matches_general_route() {
        for addr in [
            &b"<a@b>"[..],
            b"<John.Doe@Example.ORG.>",
            b"<x+tag=1@mail-1.example.net>",
            b"<postmaster@example.org>",
            b"<PostMaster>",
            b"<@relay.example:a@b>",
            b"<\"a b\"@c>",
            b"<a@[192.0.2.1]>",
        ] {
            let mut line = b"RCPT TO:".to_vec();
            line.extend_from_slice(addr);
            let (to, rest) = crate::address::parse_forward_path(addr).expect("valid");
            assert!(rest.is_empty());
            let expected = Command::Rcpt {
                to,
                params: RcptParams::default(),
            };
            assert_eq!(parse_command(&line), Ok(expected), "{addr:?}");
        }
        // Not the fast path: parameters, a trailing space, a bad path.
        assert!(matches!(
            parse_command(b"RCPT TO:<a@b> NOTIFY=NEVER"),
            Ok(Command::Rcpt { params, .. }) if params.notify == Some(Notify::NEVER)
        ));
        assert!(matches!(
            parse_command(b"RCPT TO:<a@b> "),
            Ok(Command::Rcpt { .. })
        ));
        assert_eq!(
            parse_command(b"RCPT TO:<a@b>x"),
            Err(CommandError::Syntax(RCPT_USAGE))
        );
        assert_eq!(
            parse_command(b"RCPT TO:<>"),
            Err(CommandError::Recipient(AddressError::NullNotAllowed))
        );
    }

    #[test]
    fn framer_limits() {
        let mut f = LineFramer::new(8);
        assert_eq!(
            f.frame(b"NOOP\r\n"),
            Frame::Line {
                line: 0..4,
                consumed: 6
            }
        );
        assert_eq!(f.frame(b"NOOP"), Frame::Incomplete { consumed: 0 });
        assert_eq!(
            f.frame(b"123456\r\n"),
            Frame::Line {
                line: 0..6,
                consumed: 8
            }
        );
        assert_eq!(
            f.frame(b"1234567\r\nQUIT\r\n"),
            Frame::TooLong { consumed: 9 }
        );
        assert_eq!(f.frame(b"123456789"), Frame::Incomplete { consumed: 9 });
        assert_eq!(f.frame(b"abc"), Frame::Incomplete { consumed: 3 });
        assert_eq!(f.frame(b"c\nQUIT\r\n"), Frame::TooLong { consumed: 2 });
        assert_eq!(
            f.frame(b"QUIT\r\n"),
            Frame::Line {
                line: 0..4,
                consumed: 6
            }
        );
    }

    #[test]
    fn verbs_case_insensitive() {
        assert_eq!(parse_command(b"qUiT\r\n"), Ok(Command::Quit));
        assert_eq!(parse_command(b"StartTLS\r\n"), Ok(Command::StartTls));
        assert_eq!(
            parse_command(b"QUIT now\r\n"),
            Err(CommandError::Syntax("QUIT"))
        );
        assert_eq!(parse_command(b"QUITS\r\n"), Err(CommandError::Unknown));
        assert_eq!(
            parse_command(b"ETRN x\r\n"),
            Err(CommandError::NotImplemented)
        );
        assert_eq!(
            parse_command(b"NO\0P\r\n"),
            Err(CommandError::InvalidCharacter)
        );
    }

    #[test]
    fn reply_parse_enhanced() {
        let p = ReplyParser::default();
        let (r, n) = p
            .parse(b"250-2.1.0 a\r\n250 2.1.0 b\r\nX")
            .unwrap()
            .unwrap();
        assert_eq!(n, 26);
        assert_eq!(r.enhanced(), Some(Esc::c(2, 1, 0)));
        assert_eq!(r.lines(), ["a", "b"]);
        assert_eq!(
            p.parse(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::CodeMismatch)
        );
        assert_eq!(p.parse(b"250-a\r\n"), Ok(None));
        assert_eq!(p.parse(b"250 a\n"), Err(ReplyError::BareLf));
        assert_eq!(p.parse(b"199 a\r\n"), Err(ReplyError::Malformed));
    }

    /// A line over the limit keeps its code, its text cut to fit (a probe's
    /// next hop answered the final dot with a 600-octet `250` line and got
    /// the message again at every retry).
    #[test]
    fn long_reply_lines_are_cut_not_refused() {
        let p = ReplyParser::default();
        let long = format!("250 2.0.0 {}\r\n", "k".repeat(1500));
        assert_eq!(
            p.parse(&long.as_bytes()[..700]),
            Ok(None),
            "its end not here yet"
        );
        let (r, n) = p.parse(long.as_bytes()).unwrap().unwrap();
        assert_eq!(n, long.len());
        assert_eq!(r.code().get(), 250);
        assert_eq!(r.enhanced(), Some(Esc::c(2, 0, 0)));
        // 510 octets kept: "250 ", "2.0.0 " and the text.
        assert_eq!(r.lines()[0].len(), 510 - 4 - 6);
        // In a multi-line reply, with the lines after it kept.
        let multi = format!(
            "250-x.example\r\n250-{}\r\n250 SIZE 10\r\nX",
            "a".repeat(900)
        );
        let (r, n) = p.parse(multi.as_bytes()).unwrap().unwrap();
        assert_eq!(n, multi.len() - 1);
        assert_eq!(r.lines().len(), 3);
        assert_eq!(r.lines()[2], "SIZE 10");
        // No end within `max_cut_line_len`: refused, not buffered without end.
        let endless = format!("250 {}", "z".repeat(70_000));
        assert_eq!(p.parse(endless.as_bytes()), Err(ReplyError::LineTooLong));
        assert_eq!(p.parse(&endless.as_bytes()[..60_000]), Ok(None));
        // Never cut inside a UTF-8 character: strict text takes the cut line.
        let strict = ReplyParser::new(ReplyOptions {
            strict_text: true,
            ..ReplyOptions::default()
        });
        for pad in 0..4 {
            let utf8 = format!("250 {}{}\r\n", "a".repeat(pad), "\u{e9}".repeat(400));
            let (r, _) = strict.parse(utf8.as_bytes()).unwrap().unwrap();
            assert!(r.lines()[0].len() <= 506, "{pad}");
        }
        // A tiny limit still keeps the continuation mark: no desync.
        let tiny = ReplyParser::new(ReplyOptions {
            max_line_len: 5,
            ..ReplyOptions::default()
        });
        let (r, n) = tiny
            .parse(b"250-long first line\r\n250 end\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.lines().len(), n), (2, 30));
        // A bare LF at its end is still refused; so is the line when cutting is off.
        let bare = format!("250 {}\n", "a".repeat(600));
        assert_eq!(p.parse(bare.as_bytes()), Err(ReplyError::BareLf));
        let opts = ReplyOptions {
            truncate_long_lines: false,
            ..ReplyOptions::default()
        };
        assert_eq!(
            ReplyParser::new(opts).parse(long.as_bytes()),
            Err(ReplyError::LineTooLong)
        );
    }

    /// Values the public API lets a caller build encode to lines that read back as the
    /// same value (a review found each of these refused or changed on the way back).
    #[test]
    fn built_values_read_back_as_written() {
        use crate::types::ValueError;
        let round = |c: &Command<'_>| {
            let mut w = Vec::new();
            c.encode(&mut w);
            let line = w.strip_suffix(b"\r\n").unwrap().to_vec();
            let back = parse_command(&line).map(|c| c.into_owned());
            (w, back)
        };
        // BDAT sizes of 20 digits, HOLDFOR beyond RFC 4865's 9 digits.
        let bdat = Command::Bdat {
            size: u64::MAX,
            last: true,
        };
        assert_eq!(round(&bdat).1, Ok(bdat.clone()));
        let from = crate::address::parse_reverse_path(b"<a@example.test>")
            .unwrap()
            .0;
        let params = MailParams {
            hold: Some(Hold::For(1_000_000_000_000)),
            ..MailParams::default()
        };
        let mail = Command::Mail {
            from: from.clone(),
            params,
        };
        assert_eq!(round(&mail).1, Ok(mail.clone().into_owned()));
        // An ORCPT address of 500 octets is the parser's limit and the constructor's.
        let rp = RcptParams {
            orcpt: Some(Orcpt::new("rfc822", XText::new("x".repeat(500))).unwrap()),
            ..RcptParams::default()
        };
        let rcpt = Command::Rcpt {
            to: crate::address::parse_forward_path(b"<b@example.test>")
                .unwrap()
                .0,
            params: rp,
        };
        assert_eq!(round(&rcpt).1, Ok(rcpt.clone().into_owned()));
        assert_eq!(
            Orcpt::new("rfc822", XText::new("x".repeat(501))),
            Err(ValueError::Orcpt)
        );
        assert_eq!(Orcpt::new("rfc822", XText::new("")), Err(ValueError::Orcpt));
        assert_eq!(Envid::new(XText::new("")), Err(ValueError::Envid));
        // A known keyword is not an unknown parameter.
        assert_eq!(
            Param::new("NOTIFY", Some("NEVER")),
            Err(ValueError::Keyword)
        );
        assert_eq!(Param::new("Size", Some("1")), Err(ValueError::Keyword));
        assert!(Param::new("X-SIZE", Some("1")).is_ok());
        // The two documented exceptions.
        let params = MailParams {
            auth: Some(XText::new("")),
            ..MailParams::default()
        };
        let (w, back) = round(&Command::Mail { from, params });
        assert!(
            w.ends_with(b" AUTH=<>\r\n"),
            "{:?}",
            String::from_utf8_lossy(&w)
        );
        match back {
            Ok(Command::Mail { params, .. }) => {
                assert_eq!(params.auth.as_ref().map(XText::as_str), Some("<>"));
            }
            other => panic!("{other:?}"),
        }
        let vrfy = Command::Vrfy {
            target: Text::try_from("joe SMTPUTF8").unwrap(),
            smtputf8: false,
        };
        let (_, back) = round(&vrfy);
        assert_eq!(
            back,
            Ok(Command::Vrfy {
                target: Text::try_from("joe").unwrap(),
                smtputf8: true
            })
        );
        let vrfy = Command::Vrfy {
            target: Text::try_from("joe SMTPUTF8").unwrap(),
            smtputf8: true,
        };
        assert_eq!(round(&vrfy).1, Ok(vrfy.clone()));
    }

    /// A reply line fits RFC 5321's 512 octets or is refused; one that fits reads back
    /// whole (before, a 604-octet line was accepted and read back cut).
    #[test]
    fn reply_lines_are_at_most_512_octets() {
        use crate::types::{EhloReply, ValueError};
        let esc = Some(Esc::c(2, 0, 0));
        // "250 2.0.0 " is 10 octets, CRLF 2: 500 octets of text fill the line.
        let full = Reply::new(ReplyCode::OK, esc, "t".repeat(500)).unwrap();
        let mut w = Vec::new();
        full.encode(&mut w);
        assert_eq!(w.len(), 512);
        let (back, n) = ReplyParser::default().parse(&w).unwrap().unwrap();
        assert_eq!((back, n), (full, 512));
        assert_eq!(
            Reply::new(ReplyCode::OK, esc, "t".repeat(501)),
            Err(ValueError::ReplyTooLong)
        );
        assert_eq!(
            Reply::new(ReplyCode::OK, None, "t".repeat(507)),
            Err(ValueError::ReplyTooLong)
        );
        assert!(Reply::new(ReplyCode::OK, None, "t".repeat(506)).is_ok());
        let esc = Some(Esc::c(5, 100, 999));
        assert!(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, esc, "t".repeat(496)).is_ok());
        assert_eq!(
            Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, esc, "t".repeat(497)),
            Err(ValueError::ReplyTooLong)
        );
        let ehlo = EhloReply::new("x".repeat(507), vec![]);
        assert_eq!(ehlo.to_reply(), Err(ValueError::ReplyTooLong));
    }
}
