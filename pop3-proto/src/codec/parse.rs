//! The line parsers: [`parse_command`], [`parse_response`],
//! [`parse_sasl_response`], [`parse_capability`], [`parse_list_entry`] and
//! [`parse_uidl_entry`] read one complete line (without its line end) with
//! `nom` in complete mode. Their output borrows from the line.

use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag, take_while1};
use nom::combinator::{all_consuming, opt, rest};
use nom::sequence::preceded;

use crate::types::{
    ApopDigest, Atom, Capability, Command, Expire, LangArg, Language, ListEntry, Mechanism,
    MessageNumber, OtherCapability, Password, Response, SaslResponse, Secret, Status,
    StatusResponse, Text, Uid, UidlEntry, UserName, ValidationError, response_code_prefix,
};

/// Why a line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line was empty.
    #[error("empty line")]
    Empty,
    /// The keyword is not a POP3 command.
    #[error("unknown command")]
    UnknownCommand,
    /// A known command with the wrong number or form of arguments.
    #[error("invalid arguments for {keyword}")]
    InvalidArguments {
        /// The command keyword.
        keyword: &'static str,
    },
    /// A message number was 0, not a number, or too large.
    #[error("invalid message number")]
    InvalidNumber,
    /// Bytes that are not UTF-8 where text was expected.
    #[error("not UTF-8")]
    NotUtf8,
    /// Invalid base64 in SASL data.
    #[error("invalid base64")]
    InvalidBase64,
    /// An argument failed validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A response line that is neither `+OK`, `-ERR` nor a `+` continuation,
    /// or a malformed listing line.
    #[error("malformed response")]
    MalformedResponse,
}

fn keyword(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(|b: u8| b.is_ascii_alphanumeric() || b == b'-').parse(i)
}

/// Keyword, then either nothing or one SP and the rest of the line.
/// A command keyword and the raw text after its separating space.
type KeywordArgs<'a> = (&'a [u8], Option<&'a [u8]>);

fn command_line(i: &[u8]) -> IResult<&[u8], KeywordArgs<'_>> {
    all_consuming((keyword, opt(preceded(tag(&b" "[..]), rest)))).parse(i)
}

/// A decimal number of at most 20 digits that fits in a `u64` (no sign, no
/// spaces).
fn decimal_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

fn decimal_u32(s: &str) -> Option<u32> {
    u32::try_from(decimal_u64(s)?).ok()
}

/// A count of lines (TOP): any run of digits (RFC 1939 sets no bound, and
/// RFC 2449 allows 40-character arguments); a count above `u32::MAX` asks
/// for more lines than any message has, which `u32::MAX` does too.
fn line_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(decimal_u32(s).unwrap_or(u32::MAX))
}

fn msg_number(s: &str) -> Result<MessageNumber, ParseError> {
    decimal_u32(s)
        .and_then(MessageNumber::new)
        .ok_or(ParseError::InvalidNumber)
}

/// The words of `s` separated by runs of spaces (byte-level split: a space
/// is always a character boundary in UTF-8).
fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut pos = 0;
    core::iter::from_fn(move || {
        let b = s.as_bytes();
        while b.get(pos) == Some(&b' ') {
            pos += 1;
        }
        if pos >= b.len() {
            return None;
        }
        let start = pos;
        while b.get(pos).is_some_and(|&c| c != b' ') {
            pos += 1;
        }
        s.get(start..pos)
    })
}

fn decode_b64(s: &str) -> Result<Vec<u8>, ParseError> {
    B64.decode(s).map_err(|_| ParseError::InvalidBase64)
}

/// Parses one command line (without its line end). Keywords are
/// case-insensitive; arguments are separated by spaces (runs of spaces are
/// tolerated) except for `PASS`, whose argument is the rest of the line.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::codec::{parse_command, ParseError};
/// use mailbag_pop3_proto::types::Command;
///
/// match parse_command(b"PASS my secret").unwrap() {
///     Command::Pass(p) => assert_eq!(p.expose(), b"my secret"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(parse_command(b"RETR 0"), Err(ParseError::InvalidNumber));
/// assert_eq!(parse_command(b"XYZZY"), Err(ParseError::UnknownCommand));
/// ```
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (_, (kw, args)) = command_line(line).map_err(|_| ParseError::UnknownCommand)?;
    let kw = match kw.len() {
        3 | 4 => {
            let mut k = [0u8; 4];
            for (d, s) in k.iter_mut().zip(kw) {
                *d = s.to_ascii_uppercase();
            }
            k
        }
        _ => return Err(ParseError::UnknownCommand),
    };
    let kw: &[u8] = if kw[3] == 0 { &kw[..3] } else { &kw[..] };
    let raw_args = args.unwrap_or_default();
    let bad = |keyword: &'static str| ParseError::InvalidArguments { keyword };
    if kw == b"PASS" {
        // The rest of the line, as octets: a password has no charset.
        if raw_args.is_empty() && line.len() == 4 {
            return Err(bad("PASS"));
        }
        return Ok(Command::Pass(Password::try_from(raw_args)?));
    }
    let args = core::str::from_utf8(raw_args).map_err(|_| ParseError::NotUtf8)?;
    let mut w = words(args);
    let (a1, a2, a3) = (w.next(), w.next(), w.next());
    let none = |cmd: Command<'static>, keyword| {
        if a1.is_none() {
            Ok(cmd)
        } else {
            Err(bad(keyword))
        }
    };
    match kw {
        b"USER" => match (a1, a2) {
            (Some(name), None) => Ok(Command::User(UserName::try_from(name)?)),
            _ => Err(bad("USER")),
        },
        b"APOP" => match (a1, a2, a3) {
            (Some(name), Some(digest), None) => Ok(Command::Apop {
                name: UserName::try_from(name)?,
                digest: ApopDigest::try_from(digest)?,
            }),
            _ => Err(bad("APOP")),
        },
        b"STAT" => none(Command::Stat, "STAT"),
        b"NOOP" => none(Command::Noop, "NOOP"),
        b"RSET" => none(Command::Rset, "RSET"),
        b"QUIT" => none(Command::Quit, "QUIT"),
        b"CAPA" => none(Command::Capa, "CAPA"),
        b"STLS" => none(Command::Stls, "STLS"),
        b"UTF8" => none(Command::Utf8, "UTF8"),
        b"LIST" | b"UIDL" => {
            let n = match (a1, a2) {
                (None, _) => None,
                (Some(n), None) => Some(msg_number(n)?),
                _ => return Err(bad(if kw == b"LIST" { "LIST" } else { "UIDL" })),
            };
            Ok(if kw == b"LIST" {
                Command::List(n)
            } else {
                Command::Uidl(n)
            })
        }
        b"RETR" | b"DELE" => match (a1, a2) {
            (Some(n), None) => {
                let n = msg_number(n)?;
                Ok(if kw == b"RETR" {
                    Command::Retr(n)
                } else {
                    Command::Dele(n)
                })
            }
            _ => Err(bad(if kw == b"RETR" { "RETR" } else { "DELE" })),
        },
        b"TOP" => match (a1, a2, a3) {
            (Some(n), Some(lines), None) => Ok(Command::Top {
                msg: msg_number(n)?,
                // A bad line count is not a bad message number.
                lines: line_count(lines).ok_or_else(|| bad("TOP"))?,
            }),
            _ => Err(bad("TOP")),
        },
        b"AUTH" => match (a1, a2, a3) {
            (None, _, _) => Ok(Command::AuthList),
            (Some(mech), ir, None) => Ok(Command::Auth {
                mechanism: Mechanism::parse_any_case(mech)?,
                initial_response: match ir {
                    None => None,
                    Some("=") => Some(Secret::new(Vec::new())),
                    Some(data) => Some(Secret::new(decode_b64(data)?)),
                },
            }),
            _ => Err(bad("AUTH")),
        },
        b"LANG" => match (a1, a2) {
            (None, _) => Ok(Command::Lang(None)),
            (Some("*"), None) => Ok(Command::Lang(Some(LangArg::Wildcard))),
            (Some(tag), None) => Ok(Command::Lang(Some(LangArg::Tag(Language::try_from(tag)?)))),
            _ => Err(bad("LANG")),
        },
        _ => Err(ParseError::UnknownCommand),
    }
}

/// Parses a client's answer to a SASL challenge: `*` cancels, an empty line
/// (or `=`) is empty data, anything else is base64.
///
/// ```
/// use mailbag_pop3_proto::codec::parse_sasl_response;
/// use mailbag_pop3_proto::types::SaslResponse;
///
/// assert_eq!(parse_sasl_response(b"*").unwrap(), SaslResponse::Cancel);
/// match parse_sasl_response(b"am9l").unwrap() {
///     SaslResponse::Data(d) => assert_eq!(d.expose(), b"joe"),
///     _ => unreachable!(),
/// }
/// ```
pub fn parse_sasl_response(line: &[u8]) -> Result<SaslResponse, ParseError> {
    match line {
        b"*" => Ok(SaslResponse::Cancel),
        b"" | b"=" => Ok(SaslResponse::Data(Secret::new(Vec::new()))),
        _ => {
            let s = core::str::from_utf8(line).map_err(|_| ParseError::InvalidBase64)?;
            Ok(SaslResponse::Data(Secret::new(decode_b64(s)?)))
        }
    }
}

/// Parses the first line of a server reply (without its line end): a status
/// line (`+OK`/`-ERR`, optional `[CODE]`, text) or a SASL continuation (`+ data`).
///
/// ```
/// use mailbag_pop3_proto::codec::parse_response;
/// use mailbag_pop3_proto::types::{Response, ResponseCode};
///
/// match parse_response(b"-ERR [IN-USE] Mailbox locked").unwrap() {
///     Response::Status(s) => {
///         assert!(!s.is_ok());
///         assert_eq!(s.code(), Some(&ResponseCode::InUse));
///         assert_eq!(s.text(), "Mailbox locked");
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn parse_response(line: &[u8]) -> Result<Response<'_>, ParseError> {
    let (status, after) = if let Some(r) = strip_prefix_ci(line, b"+OK") {
        (Status::Ok, r)
    } else if let Some(r) = strip_prefix_ci(line, b"-ERR") {
        (Status::Err, r)
    } else if let Some(r) = line.strip_prefix(b"+") {
        let data = r.strip_prefix(b" ").unwrap_or(r);
        let s = core::str::from_utf8(data).map_err(|_| ParseError::InvalidBase64)?;
        return Ok(Response::Challenge(Secret::new(decode_b64(s)?)));
    } else {
        return Err(ParseError::MalformedResponse);
    };
    let text = match after {
        b"" => "",
        _ => {
            let t = after
                .strip_prefix(b" ")
                .ok_or(ParseError::MalformedResponse)?;
            core::str::from_utf8(t).map_err(|_| ParseError::NotUtf8)?
        }
    };
    let (code, text) = match response_code_prefix(text) {
        Some((code, t)) => (Some(code), t),
        None => (None, text),
    };
    Ok(Response::Status(StatusResponse::from_parts(
        status,
        code,
        Text::try_from(text)?,
    )))
}

/// [`parse_response`] as a client reads server replies: a status line whose
/// text is not UTF-8 or holds control characters (a Latin-1 greeting, a TAB
/// in an error) is still a `+OK` or `-ERR`, its text with each such octet
/// or character turned into `?`; only lines that are no status line at all
/// fail.
///
/// ```
/// use mailbag_pop3_proto::codec::{parse_response, parse_response_lossy};
/// use mailbag_pop3_proto::types::Response;
///
/// let greeting = b"+OK Willkommen, M\xfcller";
/// assert!(parse_response(greeting).is_err());
/// match parse_response_lossy(greeting).unwrap() {
///     Response::Status(s) => assert_eq!((s.is_ok(), s.text()), (true, "Willkommen, M?ller")),
///     other => panic!("{other:?}"),
/// }
/// match parse_response_lossy(b"-ERR [AUTH] bad\tpassword").unwrap() {
///     Response::Status(s) => assert_eq!((s.is_ok(), s.text()), (false, "bad?password")),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn parse_response_lossy(line: &[u8]) -> Result<Response<'static>, ParseError> {
    match parse_response(line) {
        Ok(r) => Ok(r.into_owned()),
        Err(ParseError::NotUtf8 | ParseError::Invalid(_))
            if strip_prefix_ci(line, b"+OK").is_some()
                || strip_prefix_ci(line, b"-ERR").is_some() =>
        {
            let mut repaired = String::with_capacity(line.len());
            for chunk in line.utf8_chunks() {
                repaired.extend(
                    chunk
                        .valid()
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c }),
                );
                repaired.extend(core::iter::repeat_n('?', chunk.invalid().len()));
            }
            parse_response(repaired.as_bytes()).map(Response::into_owned)
        }
        Err(e) => Err(e),
    }
}

fn strip_prefix_ci<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| line.get(prefix.len()..))
        .flatten()
}

/// Parses one line of a CAPA listing (RFC 2449 section 5). Tags are
/// case-insensitive; extra words after a tag that takes none are ignored.
pub fn parse_capability(line: &[u8]) -> Result<Capability<'_>, ParseError> {
    let s = core::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let mut w = words(s);
    let name = w.next().ok_or(ParseError::Empty)?;
    let upper = name.to_ascii_uppercase();
    let flag_user = |w: Option<&str>| -> Result<bool, ParseError> {
        match w {
            None => Ok(false),
            Some(u) if u.eq_ignore_ascii_case("USER") => Ok(true),
            Some(_) => Err(ParseError::MalformedResponse),
        }
    };
    Ok(match upper.as_str() {
        "TOP" => Capability::Top,
        "USER" => Capability::User,
        "RESP-CODES" => Capability::RespCodes,
        "PIPELINING" => Capability::Pipelining,
        "UIDL" => Capability::Uidl,
        "STLS" => Capability::Stls,
        "AUTH-RESP-CODE" => Capability::AuthRespCode,
        "LANG" => Capability::Lang,
        "SASL" => Capability::Sasl(
            w.map(Mechanism::parse_any_case)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        "LOGIN-DELAY" => {
            let seconds = w
                .next()
                .and_then(decimal_u32)
                .ok_or(ParseError::MalformedResponse)?;
            Capability::LoginDelay {
                seconds,
                per_user: flag_user(w.next())?,
            }
        }
        "EXPIRE" => {
            let policy = match w.next() {
                Some(n) if n.eq_ignore_ascii_case("NEVER") => Expire::Never,
                Some(n) => Expire::Days(decimal_u32(n).ok_or(ParseError::MalformedResponse)?),
                None => return Err(ParseError::MalformedResponse),
            };
            Capability::Expire {
                policy,
                per_user: flag_user(w.next())?,
            }
        }
        "UTF8" => Capability::Utf8 {
            user: flag_user(w.next())?,
        },
        "IMPLEMENTATION" => {
            // The text is everything after the tag and one space.
            let text = s
                .trim_start_matches(' ')
                .get(name.len()..)
                .and_then(|t| t.strip_prefix(' '))
                .unwrap_or("");
            Capability::Implementation(Text::try_from(text)?)
        }
        _ => Capability::Other(OtherCapability::new(
            Atom::try_from(name)?,
            w.map(Atom::try_from).collect::<Result<Vec<_>, _>>()?,
        )?),
    })
}

/// Parses `msg size` (a LIST listing line or the text of a single LIST answer).
pub fn parse_list_entry(line: &[u8]) -> Result<ListEntry, ParseError> {
    let s = core::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let mut w = s.split(' ');
    match (w.next(), w.next()) {
        (Some(n), Some(size)) => Ok(ListEntry {
            number: msg_number(n)?,
            size: decimal_u64(size).ok_or(ParseError::InvalidNumber)?,
        }),
        _ => Err(ParseError::MalformedResponse),
    }
}

/// Parses the text of a STAT answer, `count size` (RFC 1939 section 5), into
/// the message count and the maildrop size in octets. Text after the two
/// numbers is ignored (RFC 1939 leaves it to the server).
///
/// ```
/// use mailbag_pop3_proto::codec::parse_stat;
///
/// assert_eq!(parse_stat(b"2 320"), Ok((2, 320)));
/// assert_eq!(parse_stat(b"0 0 empty"), Ok((0, 0)));
/// assert!(parse_stat(b"two 320").is_err());
/// ```
pub fn parse_stat(text: &[u8]) -> Result<(u32, u64), ParseError> {
    let s = core::str::from_utf8(text).map_err(|_| ParseError::NotUtf8)?;
    let mut w = s.split(' ');
    match (w.next(), w.next()) {
        (Some(n), Some(size)) => Ok((
            decimal_u32(n).ok_or(ParseError::InvalidNumber)?,
            decimal_u64(size).ok_or(ParseError::InvalidNumber)?,
        )),
        _ => Err(ParseError::MalformedResponse),
    }
}

/// Parses `msg uid` (a UIDL listing line or the text of a single UIDL answer).
pub fn parse_uidl_entry(line: &[u8]) -> Result<UidlEntry<'_>, ParseError> {
    let s = core::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let mut w = s.split(' ');
    match (w.next(), w.next(), w.next()) {
        (Some(n), Some(uid), None) => Ok(UidlEntry {
            number: msg_number(n)?,
            uid: Uid::try_from(uid)?,
        }),
        _ => Err(ParseError::MalformedResponse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::Encode;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use crate::types::ResponseCode;

    fn cmd(s: &str) -> Command<'_> {
        parse_command(s.as_bytes()).unwrap()
    }

    #[test]
    fn commands_case_insensitive() {
        assert_eq!(cmd("stat"), Command::Stat);
        assert_eq!(cmd("LiSt 2"), Command::List(MessageNumber::new(2)));
        assert_eq!(cmd("uidl"), Command::Uidl(None));
        assert_eq!(cmd("utf8"), Command::Utf8);
        assert_eq!(cmd("auth"), Command::AuthList);
    }

    #[test]
    fn wrong_argument_counts() {
        for l in [
            "STAT 1",
            "RETR",
            "RETR 1 2",
            "TOP 1",
            "DELE",
            "USER",
            "USER a b",
            "APOP a",
            "NOOP x",
            "AUTH PLAIN a b",
            "LIST 1 2",
        ] {
            assert!(parse_command(l.as_bytes()).is_err(), "{l}");
        }
        assert_eq!(
            parse_command(b"PASS"),
            Err(ParseError::InvalidArguments { keyword: "PASS" })
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            parse_command(b"RETR 99999999999"),
            Err(ParseError::InvalidNumber)
        );
        assert_eq!(parse_command(b"RETR -1"), Err(ParseError::InvalidNumber));
        assert_eq!(parse_command(b"RETR +1"), Err(ParseError::InvalidNumber));
        assert_eq!(
            cmd("RETR 4294967295"),
            Command::Retr(MessageNumber::new(u32::MAX).unwrap())
        );
        assert_eq!(parse_command(b"TOP 0 1"), Err(ParseError::InvalidNumber));
        for line in [&b"TOP 1 -1"[..], b"TOP 1 +1", b"TOP 1 x", b"TOP 1 1x"] {
            assert_eq!(
                parse_command(line),
                Err(ParseError::InvalidArguments { keyword: "TOP" })
            );
        }
        assert_eq!(
            cmd("TOP 1 0"),
            Command::Top {
                msg: MessageNumber::new(1).unwrap(),
                lines: 0
            }
        );
        // A line count past u32 (Dovecot takes up to u64) is the whole body.
        for count in ["4294967296", "99999999999999999999", &"9".repeat(40)] {
            assert_eq!(
                cmd(&format!("TOP 1 {count}")),
                Command::Top {
                    msg: MessageNumber::new(1).unwrap(),
                    lines: u32::MAX
                },
                "{count}"
            );
        }
    }

    #[test]
    fn bad_bytes() {
        assert!(parse_command(b"USER jo\0e").is_err());
        assert_eq!(parse_command(b"USER \xff"), Err(ParseError::NotUtf8));
        assert_eq!(
            parse_command(b"RE\xffTR 1"),
            Err(ParseError::UnknownCommand)
        );
        assert_eq!(parse_command(b""), Err(ParseError::Empty));
        assert_eq!(parse_command(b"RETR1"), Err(ParseError::UnknownCommand));
    }

    #[test]
    fn pass_keeps_spaces_and_empty() {
        match cmd("PASS  a b ") {
            Command::Pass(p) => assert_eq!(p.expose(), b" a b "),
            other => panic!("{other:?}"),
        }
        match cmd("PASS ") {
            Command::Pass(p) => assert_eq!(p.expose(), b""),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pass_takes_octets_of_any_charset() {
        // "grün" from a client set up for Latin-1.
        match parse_command(b"PASS gr\xfcn") {
            Ok(Command::Pass(p)) => assert_eq!(p.expose(), b"gr\xfcn"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_command(b"PASS gr\xfcn\x01"),
            Err(ParseError::Invalid(_))
        ));
        // Other commands' arguments stay UTF-8.
        assert_eq!(parse_command(b"USER gr\xfcn"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            cmd("AUTH PLAIN ="),
            Command::Auth {
                mechanism: Mechanism::PLAIN,
                initial_response: Some(Secret::new(vec![]))
            }
        );
        assert_eq!(
            cmd("auth plain AGpvZQBzZWNyZXQ="),
            Command::Auth {
                mechanism: Mechanism::PLAIN,
                initial_response: Some(Secret::new(b"\0joe\0secret".to_vec()))
            }
        );
        assert_eq!(
            parse_command(b"AUTH PLAIN AGpvZQBzZWNyZXQ"),
            Err(ParseError::InvalidBase64)
        );
        assert_eq!(
            cmd("AUTH PLAIN AGpvZQBzZWNyZXQ=").to_bytes(),
            b"AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n"
        );
        assert_eq!(cmd("AUTH LOGIN =").to_bytes(), b"AUTH LOGIN =\r\n");
    }
    #[test]
    fn responses() {
        let r = parse_response(b"+OK").unwrap();
        assert_eq!(r, Response::Status(StatusResponse::ok("").unwrap()));
        let r = parse_response(b"+ ").unwrap();
        assert_eq!(r, Response::Challenge(Secret::new(vec![])));
        let r = parse_response(b"+ VXNlcm5hbWU6").unwrap();
        assert_eq!(r, Response::Challenge(Secret::new(b"Username:".to_vec())));
        assert!(parse_response(b"+OKAY").is_err());
        assert!(parse_response(b"OK").is_err());
        let r = parse_response(b"-ERR [AUTH]x").unwrap();
        match r {
            Response::Status(s) => {
                assert_eq!(s.code(), None);
                assert_eq!(s.text(), "[AUTH]x");
            }
            _ => panic!(),
        }
        let r = parse_response(b"-ERR [SYS/TEMP]").unwrap();
        assert_eq!(
            r,
            Response::Status(StatusResponse::err(Some(ResponseCode::SysTemp), "").unwrap())
        );
    }

    #[test]
    fn capabilities() {
        let caps = [
            "TOP",
            "USER",
            "SASL PLAIN LOGIN",
            "RESP-CODES",
            "LOGIN-DELAY 900",
            "PIPELINING",
            "EXPIRE 60",
            "EXPIRE NEVER USER",
            "UIDL",
            "IMPLEMENTATION Shlemazle-Plotz-v302",
            "STLS",
            "AUTH-RESP-CODE",
            "UTF8 USER",
            "LANG",
            "X-FOO bar baz",
        ];
        for c in caps {
            let parsed = parse_capability(c.as_bytes()).unwrap();
            let mut want = c.as_bytes().to_vec();
            want.extend_from_slice(b"\r\n");
            assert_eq!(parsed.to_bytes(), want, "{c}");
        }
        assert!(parse_capability(b"LOGIN-DELAY x").is_err());
        assert!(parse_capability(b"").is_err());
    }

    #[test]
    fn listing_lines() {
        assert_eq!(
            parse_list_entry(b"1 120").unwrap(),
            ListEntry {
                number: MessageNumber::new(1).unwrap(),
                size: 120
            }
        );
        assert!(parse_list_entry(b"0 120").is_err());
        let u = parse_uidl_entry(b"2 QhdPYR:00WBw1Ph7x7").unwrap();
        assert_eq!(u.uid.as_str(), "QhdPYR:00WBw1Ph7x7");
        assert!(parse_uidl_entry(b"2 a b").is_err());
    }
}
