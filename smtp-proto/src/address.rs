//! SMTP addresses: reverse-path and forward-path (RFC 5321 section 4.1.2, RFC 6531).
//!
//! The parser follows the grammar of RFC 5321 section 4.1.2 (extended for UTF-8 by
//! RFC 6531 section 3.3): `Path = "<" [ A-d-l ":" ] Mailbox ">"`. Every piece keeps the bytes
//! exactly as they were received (borrowed when possible), so that encoding a parsed path gives
//! back the same octets. Invalid UTF-8 is an error, never replaced by U+FFFD.
//!
//! Length limits are counted in octets: local part 64, domain 255, path 256 (with the angle
//! brackets), RFC 5321 section 4.5.3.1.
//!
//! # Relay decisions
//!
//! [`Path::final_domain`] gives the normalised destination domain (lower-case, trailing dot
//! stripped, address literals in canonical form; the source route ignored), and
//! [`LocalPart::has_routing_operator`] tells whether the local part hides another routing
//! (`%`, `!` or `@`, e.g. `"user@other"@local` or `user%other@local`).
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::address::{parse_forward_path, ForwardPath};
//!
//! let (path, rest) = parse_forward_path(b"<@relay.example:User%evil.example@Local.Example.>")?;
//! assert!(rest.is_empty());
//! let ForwardPath::Path(path) = path else { panic!("not a path") };
//! assert_eq!(path.final_domain(), "local.example");
//! assert!(path.mailbox().local_part().has_routing_operator());
//! # Ok::<(), mailbag_smtp_proto::address::AddressError>(())
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use alloc::borrow::Cow;
use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while1},
    combinator::{opt, recognize},
    multi::{many0_count, separated_list1},
    sequence::{delimited, preceded, terminated},
};

/// Maximum length of a local part in octets (RFC 5321 section 4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Maximum length of a domain in octets (RFC 5321 section 4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Maximum length of a path in octets, angle brackets included (RFC 5321 section 4.5.3.1.3).
pub const MAX_PATH_LEN: usize = 256;

/// Why an address could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The path does not start with `<`.
    #[error("address must be enclosed in angle brackets")]
    MissingOpenBracket,
    /// No `>` closes the path.
    #[error("unbalanced angle brackets in address")]
    Unbalanced,
    /// A quoted string is not closed.
    #[error("unbalanced quotes in local part")]
    UnbalancedQuote,
    /// The local part is not a dot-string or quoted string.
    #[error("invalid local part")]
    LocalPart,
    /// The domain is not a valid domain name.
    #[error("invalid domain")]
    Domain,
    /// The address literal (`[...]`) is invalid.
    #[error("invalid address literal")]
    AddressLiteral,
    /// The source route (`@a,@b:`) is invalid.
    #[error("invalid source route")]
    SourceRoute,
    /// The mailbox has no `@domain` part (only `<postmaster>` may omit it).
    #[error("missing domain in address")]
    MissingDomain,
    /// `<>` where a forward-path is required.
    #[error("null path not allowed here")]
    NullNotAllowed,
    /// The local part is longer than 64 octets.
    #[error("local part longer than 64 octets")]
    LocalPartTooLong,
    /// The domain is longer than 255 octets.
    #[error("domain longer than 255 octets")]
    DomainTooLong,
    /// The path is longer than 256 octets.
    #[error("path longer than 256 octets")]
    PathTooLong,
    /// The address contains bytes that are not valid UTF-8.
    #[error("address is not valid UTF-8")]
    InvalidUtf8,
    /// The address contains non-ASCII characters but UTF-8 was not allowed (no SMTPUTF8).
    #[error("non-ASCII address without SMTPUTF8")]
    NonAscii,
}

const fn atext_slow(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        )
        || b >= 0x80
}

const fn qtext_slow(b: u8) -> bool {
    matches!(b, 32..=33 | 35..=91 | 93..=126) || b >= 0x80
}

const fn ldh_slow(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b == b'-'
}

const fn dcontent_slow(b: u8) -> bool {
    matches!(b, 33..=90 | 94..=126)
}

/// 256-entry class tables (bit 0 atext, 1 qtext, 2 ldh, 3 dcontent, 4 ASCII atext or dot,
/// 5 ASCII letter, digit, hyphen or dot, 6 ASCII atext, 7 ASCII letter, digit or hyphen).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = (atext_slow(b) as u8)
            | ((qtext_slow(b) as u8) << 1)
            | ((ldh_slow(b) as u8) << 2)
            | ((dcontent_slow(b) as u8) << 3)
            | (((b < 0x80 && (atext_slow(b) || b == b'.')) as u8) << 4)
            | (((b.is_ascii_alphanumeric() || b == b'-' || b == b'.') as u8) << 5)
            | (((b < 0x80 && atext_slow(b)) as u8) << 6)
            | (((b.is_ascii_alphanumeric() || b == b'-') as u8) << 7);
        i += 1;
    }
    t
};

fn is_atext(b: u8) -> bool {
    CLASS[usize::from(b)] & 1 != 0
}

fn is_qtext(b: u8) -> bool {
    CLASS[usize::from(b)] & 2 != 0
}

fn is_ldh(b: u8) -> bool {
    CLASS[usize::from(b)] & 4 != 0
}

fn is_dcontent(b: u8) -> bool {
    CLASS[usize::from(b)] & 8 != 0
}

fn to_str(b: &[u8]) -> Result<&str, AddressError> {
    core::str::from_utf8(b).map_err(|_| AddressError::InvalidUtf8)
}

/// Input validated as UTF-8 once; pieces found by the byte grammar are mapped back to `str`.
#[derive(Clone, Copy)]
pub(crate) struct Src<'a> {
    bytes: &'a [u8],
    text: &'a str,
}

impl<'a> Src<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, AddressError> {
        Ok(Src {
            bytes,
            text: to_str(bytes)?,
        })
    }

    pub(crate) fn of_str(text: &'a str) -> Self {
        Src {
            bytes: text.as_bytes(),
            text,
        }
    }

    fn sub(self, piece: &'a [u8]) -> Result<&'a str, AddressError> {
        let off = (piece.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
        let end = off
            .checked_add(piece.len())
            .ok_or(AddressError::InvalidUtf8)?;
        self.text.get(off..end).ok_or(AddressError::InvalidUtf8)
    }
}

// ---------------------------------------------------------------- nom grammar

fn atom(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(is_atext)(i)
}

fn dot_string(i: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize((atom, many0_count(preceded(tag(&b"."[..]), atom)))).parse(i)
}

fn quoted_pair(i: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize((
        tag(&b"\\"[..]),
        take_while_m_n_one(|b: u8| (32..=126).contains(&b)),
    ))
    .parse(i)
}

fn take_while_m_n_one(pred: impl Fn(u8) -> bool) -> impl Fn(&[u8]) -> IResult<&[u8], &[u8]> {
    move |i: &[u8]| match i.first() {
        Some(&b) if pred(b) => Ok((&i[1..], &i[..1])),
        _ => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::TakeWhileMN,
        ))),
    }
}

fn quoted_string(i: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize(delimited(
        tag(&b"\""[..]),
        many0_count(alt((take_while1(is_qtext), quoted_pair))),
        tag(&b"\""[..]),
    ))
    .parse(i)
}

fn local_part(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((dot_string, quoted_string)).parse(i)
}

fn sub_domain(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, label) = take_while1(is_ldh)(i)?;
    // Let-dig [Ldh-str]: no leading or trailing hyphen.
    if label.first() == Some(&b'-') || label.last() == Some(&b'-') || label.len() > 63 {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok((rest, label))
}

/// A domain, with one trailing dot tolerated (it is stripped by normalisation).
fn domain(i: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize((
        sub_domain,
        many0_count(preceded(tag(&b"."[..]), sub_domain)),
        opt(tag(&b"."[..])),
    ))
    .parse(i)
}

fn address_literal(i: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize(delimited(
        tag(&b"["[..]),
        take_while1(|b: u8| is_dcontent(b)),
        tag(&b"]"[..]),
    ))
    .parse(i)
}

fn at_domain(i: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(tag(&b"@"[..]), domain).parse(i)
}

fn source_route(i: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(
        recognize(separated_list1(tag(&b","[..]), at_domain)),
        tag(&b":"[..]),
    )
    .parse(i)
}

/// The pieces of a parsed `<...>`, before validation.
struct RawPath<'a> {
    route: Option<&'a [u8]>,
    local: &'a [u8],
    host: Option<&'a [u8]>,
}

fn raw_path(i: &[u8]) -> IResult<&[u8], RawPath<'_>> {
    let (i, _) = tag(&b"<"[..])(i)?;
    let (i, route) = opt(source_route).parse(i)?;
    let (i, local) = local_part(i)?;
    let (i, host) = opt(preceded(tag(&b"@"[..]), alt((address_literal, domain)))).parse(i)?;
    let (i, _) = tag(&b">"[..])(i)?;
    Ok((i, RawPath { route, local, host }))
}

/// Classifies a failed path parse precisely (the cold path).
fn diagnose(input: &[u8]) -> AddressError {
    if input.first() != Some(&b'<') {
        return AddressError::MissingOpenBracket;
    }
    let body = &input[1..];
    // Walk like the grammar: quotes protect `>`.
    let mut in_quote = false;
    let mut escaped = false;
    let mut close = None;
    for (n, &b) in body.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == b'>' {
            close = Some(n);
            break;
        } else if b == b'<' {
            break;
        }
    }
    if in_quote {
        return AddressError::UnbalancedQuote;
    }
    let Some(close) = close else {
        return AddressError::Unbalanced;
    };
    let inner = &body[..close];
    let (inner, route_ok) = match inner.first() {
        Some(b'@') => match source_route(inner) {
            Ok((rest, _)) => (rest, true),
            Err(_) => return AddressError::SourceRoute,
        },
        _ => (inner, true),
    };
    debug_assert!(route_ok);
    match local_part(inner) {
        Ok((rest, _)) => match rest.split_first() {
            None => AddressError::MissingDomain,
            Some((b'@', host)) => {
                if host.first() == Some(&b'[') {
                    AddressError::AddressLiteral
                } else {
                    AddressError::Domain
                }
            }
            Some(_) => AddressError::LocalPart,
        },
        Err(_) => AddressError::LocalPart,
    }
}

// ---------------------------------------------------------------- types

/// A validated domain name, as received (case and a possible trailing dot preserved).
///
/// Labels are letters, digits and hyphens (no leading or trailing hyphen, at most 63 octets);
/// with SMTPUTF8, UTF-8 labels (U-labels) are allowed too. At most 255 octets.
///
/// `Domain::try_from(&str)` is the validating constructor, with the same RFC 5321 grammar
/// the address parser uses: use it to check a configured host or domain name. It accepts
/// one trailing dot (a fully qualified name) and UTF-8 labels; add [`Domain::is_ascii`]
/// where only ASCII will do, and compare [`Domain::normalized`] forms. For a name that may
/// also be an address literal (`[192.0.2.1]`), use [`Host::try_from`].
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::address::Domain;
///
/// let d = Domain::try_from("Mail.Example.ORG.")?;
/// assert_eq!(d.as_str(), "Mail.Example.ORG.");
/// assert_eq!(d.normalized(), "mail.example.org");
/// assert!(Domain::try_from("bad_domain.example").is_err());
/// assert!(Domain::try_from("-bad.example").is_err());
/// assert!(Domain::try_from("localhost").is_ok());
/// // A config check that also wants ASCII only:
/// let ok = |s: &str| Domain::try_from(s).is_ok_and(|d| d.is_ascii());
/// assert!(ok("mx.example.org") && !ok("bücher.example") && !ok("a..b"));
/// # Ok::<(), mailbag_smtp_proto::address::AddressError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Domain<'a>(Cow<'a, str>);

impl<'a> Domain<'a> {
    fn from_wire(src: Src<'a>, b: &'a [u8]) -> Result<Self, AddressError> {
        if b.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::DomainTooLong);
        }
        Ok(Domain(Cow::Borrowed(src.sub(b)?)))
    }

    /// The domain as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Lower-cased, without a trailing dot: the form to compare with local domains.
    pub fn normalized(&self) -> Cow<'_, str> {
        let s = self.0.strip_suffix('.').unwrap_or(&self.0);
        if s.chars().any(char::is_uppercase) {
            Cow::Owned(s.to_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    }

    /// Whether the domain is pure ASCII.
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Domain<'static> {
        Domain(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a str> for Domain<'a> {
    type Error = AddressError;

    fn try_from(s: &'a str) -> Result<Self, AddressError> {
        match domain(s.as_bytes()) {
            Ok((&[], d)) => Domain::from_wire(Src::of_str(s), d),
            _ => Err(AddressError::Domain),
        }
    }
}

impl fmt::Debug for Domain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({:?})", self.0)
    }
}

impl fmt::Display for Domain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an address literal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LiteralKind {
    /// `[192.0.2.1]`.
    Ipv4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`.
    Ipv6(Ipv6Addr),
    /// `[tag:content]`, a general address literal (RFC 5321 section 4.1.3).
    General,
}

/// An address literal such as `[192.0.2.1]` or `[IPv6:2001:db8::1]`, as received.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::address::{AddressLiteral, LiteralKind};
///
/// let lit = AddressLiteral::try_from("[IPv6:2001:DB8:0::1]")?;
/// assert_eq!(lit.kind(), LiteralKind::Ipv6("2001:db8::1".parse().unwrap()));
/// assert_eq!(lit.normalized(), "[ipv6:2001:db8::1]");
/// # Ok::<(), mailbag_smtp_proto::address::AddressError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AddressLiteral<'a> {
    raw: Cow<'a, str>,
    kind: LiteralKind,
}

impl<'a> AddressLiteral<'a> {
    fn from_wire(src: Src<'a>, b: &'a [u8]) -> Result<Self, AddressError> {
        let raw = src.sub(b)?;
        let inner = raw
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or(AddressError::AddressLiteral)?;
        let kind = if inner.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            LiteralKind::Ipv4(inner.parse().map_err(|_| AddressError::AddressLiteral)?)
        } else if inner.len() > 5 && inner.as_bytes()[..5].eq_ignore_ascii_case(b"IPv6:") {
            LiteralKind::Ipv6(
                inner[5..]
                    .parse()
                    .map_err(|_| AddressError::AddressLiteral)?,
            )
        } else {
            // General-address-literal: Standardized-tag ":" 1*dcontent.
            let (tag_part, content) = inner.split_once(':').ok_or(AddressError::AddressLiteral)?;
            let b = tag_part.as_bytes();
            if b.is_empty()
                || content.is_empty()
                || !b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                || b.first() == Some(&b'-')
                || b.last() == Some(&b'-')
            {
                return Err(AddressError::AddressLiteral);
            }
            LiteralKind::General
        };
        if raw.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::DomainTooLong);
        }
        Ok(AddressLiteral {
            raw: Cow::Borrowed(raw),
            kind,
        })
    }

    /// The literal as received, brackets included.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The parsed content.
    pub fn kind(&self) -> LiteralKind {
        self.kind
    }

    /// Canonical form: `[a.b.c.d]`, `[ipv6:<compressed>]`, or the general literal lower-cased.
    pub fn normalized(&self) -> Cow<'_, str> {
        match self.kind {
            LiteralKind::Ipv4(a) => Cow::Owned(format!("[{a}]")),
            LiteralKind::Ipv6(a) => Cow::Owned(format!("[ipv6:{a}]")),
            LiteralKind::General => Cow::Owned(self.raw.to_ascii_lowercase()),
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> AddressLiteral<'static> {
        AddressLiteral {
            raw: Cow::Owned(self.raw.into_owned()),
            kind: self.kind,
        }
    }
}

impl<'a> TryFrom<&'a str> for AddressLiteral<'a> {
    type Error = AddressError;

    fn try_from(s: &'a str) -> Result<Self, AddressError> {
        match address_literal(s.as_bytes()) {
            Ok((&[], l)) => AddressLiteral::from_wire(Src::of_str(s), l),
            _ => Err(AddressError::AddressLiteral),
        }
    }
}

impl fmt::Debug for AddressLiteral<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AddressLiteral({:?})", self.raw)
    }
}

/// The part after `@`: a domain or an address literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A domain name.
    Domain(Domain<'a>),
    /// An address literal.
    Literal(AddressLiteral<'a>),
}

impl<'a> Host<'a> {
    fn from_wire(src: Src<'a>, b: &'a [u8]) -> Result<Self, AddressError> {
        if b.first() == Some(&b'[') {
            AddressLiteral::from_wire(src, b).map(Host::Literal)
        } else {
            Domain::from_wire(src, b).map(Host::Domain)
        }
    }

    /// The host as received.
    pub fn as_str(&self) -> &str {
        match self {
            Host::Domain(d) => d.as_str(),
            Host::Literal(l) => l.as_str(),
        }
    }

    /// Normalised form (see [`Domain::normalized`], [`AddressLiteral::normalized`]).
    pub fn normalized(&self) -> Cow<'_, str> {
        match self {
            Host::Domain(d) => d.normalized(),
            Host::Literal(l) => l.normalized(),
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Host<'static> {
        match self {
            Host::Domain(d) => Host::Domain(d.into_owned()),
            Host::Literal(l) => Host::Literal(l.into_owned()),
        }
    }
}

impl<'a> TryFrom<&'a str> for Host<'a> {
    type Error = AddressError;

    fn try_from(s: &'a str) -> Result<Self, AddressError> {
        if s.starts_with('[') {
            AddressLiteral::try_from(s).map(Host::Literal)
        } else {
            Domain::try_from(s).map(Host::Domain)
        }
    }
}

/// A local part, as received: a dot-string (`john.doe`) or a quoted string (`"john doe"`).
///
/// Equality compares the wire form; use [`LocalPart::content`] to compare the meaning (all
/// quoted forms of a local part are equivalent, RFC 5321 section 4.1.2).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::address::LocalPart;
///
/// let lp = LocalPart::try_from(r#""john\"doe@x""#)?;
/// assert!(lp.is_quoted());
/// assert_eq!(lp.content(), "john\"doe@x");
/// assert!(lp.has_routing_operator());
/// # Ok::<(), mailbag_smtp_proto::address::AddressError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LocalPart<'a>(Cow<'a, str>);

impl<'a> LocalPart<'a> {
    fn from_wire(src: Src<'a>, b: &'a [u8]) -> Result<Self, AddressError> {
        if b.len() > MAX_LOCAL_PART_LEN {
            return Err(AddressError::LocalPartTooLong);
        }
        Ok(LocalPart(Cow::Borrowed(src.sub(b)?)))
    }

    /// The local part as received (quotes and backslashes included).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.0.starts_with('"')
    }

    /// The meaning: quotes removed and quoted pairs resolved.
    pub fn content(&self) -> Cow<'_, str> {
        let Some(inner) = self.0.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
            return Cow::Borrowed(&self.0);
        };
        if !inner.contains('\\') {
            return Cow::Borrowed(inner);
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// Whether the content holds a routing operator: `%`, `!` or `@` (percent hack, bang path,
    /// quoted `@`). A relay must not forward such an address for an unauthorised client.
    pub fn has_routing_operator(&self) -> bool {
        self.0.bytes().any(|b| matches!(b, b'%' | b'!' | b'@'))
    }

    /// Whether the content is `postmaster` (case-insensitive).
    pub fn is_postmaster(&self) -> bool {
        self.content().eq_ignore_ascii_case("postmaster")
    }

    /// Whether the local part is pure ASCII.
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> LocalPart<'static> {
        LocalPart(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a str> for LocalPart<'a> {
    type Error = AddressError;

    fn try_from(s: &'a str) -> Result<Self, AddressError> {
        match local_part(s.as_bytes()) {
            Ok((&[], l)) => LocalPart::from_wire(Src::of_str(s), l),
            _ => Err(AddressError::LocalPart),
        }
    }
}

impl fmt::Debug for LocalPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalPart({:?})", self.0)
    }
}

/// A mailbox: `local-part@host`.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::address::Mailbox;
///
/// let m = Mailbox::try_from("Postmaster@[192.0.2.1]")?;
/// assert!(m.is_postmaster());
/// assert_eq!(m.host().normalized(), "[192.0.2.1]");
/// assert_eq!(m.to_string(), "Postmaster@[192.0.2.1]");
/// # Ok::<(), mailbag_smtp_proto::address::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox<'a> {
    local: LocalPart<'a>,
    host: Host<'a>,
}

impl<'a> Mailbox<'a> {
    /// Builds a mailbox from validated pieces.
    pub fn new(local: LocalPart<'a>, host: Host<'a>) -> Self {
        Mailbox { local, host }
    }

    /// The local part.
    pub fn local_part(&self) -> &LocalPart<'a> {
        &self.local
    }

    /// The domain or address literal.
    pub fn host(&self) -> &Host<'a> {
        &self.host
    }

    /// Whether the local part is `postmaster` (any case; the domain is not checked).
    pub fn is_postmaster(&self) -> bool {
        self.local.is_postmaster()
    }

    /// Whether the whole mailbox is ASCII.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.host.as_str().is_ascii()
    }

    /// Length in octets of `local@host`.
    pub fn len(&self) -> usize {
        self.local.as_str().len() + 1 + self.host.as_str().len()
    }

    /// Always false: a mailbox has at least `x@y`. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Mailbox<'static> {
        Mailbox {
            local: self.local.into_owned(),
            host: self.host.into_owned(),
        }
    }
}

impl<'a> TryFrom<&'a str> for Mailbox<'a> {
    type Error = AddressError;

    fn try_from(s: &'a str) -> Result<Self, AddressError> {
        let b = s.as_bytes();
        let (rest, local) = local_part(b).map_err(|_| AddressError::LocalPart)?;
        let Some((b'@', host)) = rest.split_first() else {
            return Err(AddressError::MissingDomain);
        };
        let host = match alt((address_literal, domain)).parse(host) {
            Ok((&[], h)) => h,
            _ if host.first() == Some(&b'[') => return Err(AddressError::AddressLiteral),
            _ => return Err(AddressError::Domain),
        };
        let src = Src::of_str(s);
        Ok(Mailbox {
            local: LocalPart::from_wire(src, local)?,
            host: Host::from_wire(src, host)?,
        })
    }
}

impl fmt::Display for Mailbox<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local.as_str(), self.host.as_str())
    }
}

/// A source route `@a,@b` (RFC 5321 section 4.1.2 `A-d-l`), kept but to be ignored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SourceRoute<'a>(Cow<'a, str>);

impl SourceRoute<'_> {
    /// The route as received, without the final `:`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domains of the route, in order.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').map(|d| d.trim_start_matches('@'))
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> SourceRoute<'static> {
        SourceRoute(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Debug for SourceRoute<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceRoute({:?})", self.0)
    }
}

/// A non-null path: `<[@route:]mailbox>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path<'a> {
    route: Option<SourceRoute<'a>>,
    mailbox: Mailbox<'a>,
}

impl<'a> Path<'a> {
    /// A path without a source route; [`AddressError::PathTooLong`] when
    /// `<mailbox>` is longer than RFC 5321's 256 octets (section 4.5.3.1.3),
    /// which a peer would refuse.
    ///
    /// ```
    /// use mailbag_smtp_proto::address::{AddressError, Mailbox, Path};
    ///
    /// let short = Mailbox::try_from("joe@example.org")?;
    /// assert_eq!(Path::new(short)?.mailbox().to_string(), "joe@example.org");
    /// let domain = format!("{}.example", vec!["d".repeat(60); 3].join("."));
    /// let text = format!("{}@{domain}", "j".repeat(64));
    /// let long = Mailbox::try_from(text.as_str())?;
    /// assert_eq!(Path::new(long).unwrap_err(), AddressError::PathTooLong);
    /// # Ok::<(), AddressError>(())
    /// ```
    pub fn new(mailbox: Mailbox<'a>) -> Result<Self, AddressError> {
        if mailbox.len() + 2 > MAX_PATH_LEN {
            return Err(AddressError::PathTooLong);
        }
        Ok(Path {
            route: None,
            mailbox,
        })
    }

    /// The mailbox.
    pub fn mailbox(&self) -> &Mailbox<'a> {
        &self.mailbox
    }

    /// The source route, if the client sent one (it should be ignored, RFC 5321 section 4.1.1.3).
    pub fn source_route(&self) -> Option<&SourceRoute<'a>> {
        self.route.as_ref()
    }

    /// The normalised final destination domain (the source route is ignored).
    pub fn final_domain(&self) -> Cow<'_, str> {
        self.mailbox.host.normalized()
    }

    /// Whether the local part holds `%`, `!` or `@`.
    pub fn has_routing_operator(&self) -> bool {
        self.mailbox.local.has_routing_operator()
    }

    /// Whether every octet is ASCII.
    pub fn is_ascii(&self) -> bool {
        self.mailbox.is_ascii() && self.route.as_ref().is_none_or(|r| r.0.is_ascii())
    }

    /// Appends the wire form (`<...>`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(b'<');
        if let Some(r) = &self.route {
            out.extend_from_slice(r.0.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(self.mailbox.local.as_str().as_bytes());
        out.push(b'@');
        out.extend_from_slice(self.mailbox.host.as_str().as_bytes());
        out.push(b'>');
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Path<'static> {
        Path {
            route: self.route.map(SourceRoute::into_owned),
            mailbox: self.mailbox.into_owned(),
        }
    }
}

/// The argument of `MAIL FROM:`: the null path `<>` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath<'a> {
    /// `<>`: bounces and notifications.
    Null,
    /// A path.
    Path(Path<'a>),
}

impl ReversePath<'_> {
    /// Whether this is `<>`.
    pub fn is_null(&self) -> bool {
        matches!(self, ReversePath::Null)
    }

    /// Whether every octet is ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Path(p) => p.is_ascii(),
        }
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ReversePath::Null => out.extend_from_slice(b"<>"),
            ReversePath::Path(p) => p.encode(out),
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> ReversePath<'static> {
        match self {
            ReversePath::Null => ReversePath::Null,
            ReversePath::Path(p) => ReversePath::Path(p.into_owned()),
        }
    }
}

/// The bare `<Postmaster>` of `RCPT TO:` (RFC 5321 section 4.1.1.3): the
/// word `postmaster` in the letter case it was written in, nothing else.
///
/// ```
/// use mailbag_smtp_proto::address::{AddressError, ForwardPath, Postmaster};
///
/// let p = ForwardPath::Postmaster(Postmaster::try_from("PostMaster")?);
/// let mut out = Vec::new();
/// p.encode(&mut out);
/// assert_eq!(out, b"<PostMaster>");
/// assert_eq!(Postmaster::default().as_str(), "Postmaster");
/// assert_eq!(
///     Postmaster::try_from("postmaster>\r\nRCPT TO:<x@evil.example"),
///     Err(AddressError::MissingDomain)
/// );
/// # Ok::<(), AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postmaster<'a>(Cow<'a, str>);

impl Postmaster<'_> {
    /// The spelling, e.g. `Postmaster`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Postmaster<'static> {
        Postmaster(Cow::Owned(self.0.into_owned()))
    }
}

impl Default for Postmaster<'_> {
    /// `Postmaster`, as RFC 5321 writes it.
    fn default() -> Self {
        Postmaster(Cow::Borrowed("Postmaster"))
    }
}

impl<'a> TryFrom<&'a str> for Postmaster<'a> {
    type Error = AddressError;

    /// `postmaster` in any letter case; anything else lacks the `@domain`
    /// only the postmaster may omit ([`AddressError::MissingDomain`]).
    fn try_from(s: &'a str) -> Result<Self, AddressError> {
        if s.eq_ignore_ascii_case("postmaster") {
            Ok(Postmaster(Cow::Borrowed(s)))
        } else {
            Err(AddressError::MissingDomain)
        }
    }
}

/// The argument of `RCPT TO:`: `<postmaster>` without a domain, or a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath<'a> {
    /// `<Postmaster>` (any case, kept as received), RFC 5321 section 4.1.1.3.
    Postmaster(Postmaster<'a>),
    /// A path.
    Path(Path<'a>),
}

impl ForwardPath<'_> {
    /// Whether this names the postmaster: bare `<postmaster>` or `postmaster@<any domain>`.
    pub fn is_postmaster(&self) -> bool {
        match self {
            ForwardPath::Postmaster(_) => true,
            ForwardPath::Path(p) => p.mailbox.is_postmaster(),
        }
    }

    /// The normalised final domain; `None` for bare `<postmaster>` (which means this host).
    pub fn final_domain(&self) -> Option<Cow<'_, str>> {
        match self {
            ForwardPath::Postmaster(_) => None,
            ForwardPath::Path(p) => Some(p.final_domain()),
        }
    }

    /// Whether the local part holds `%`, `!` or `@`.
    pub fn has_routing_operator(&self) -> bool {
        match self {
            ForwardPath::Postmaster(_) => false,
            ForwardPath::Path(p) => p.has_routing_operator(),
        }
    }

    /// Whether every octet is ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ForwardPath::Postmaster(_) => true,
            ForwardPath::Path(p) => p.is_ascii(),
        }
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ForwardPath::Postmaster(s) => {
                out.push(b'<');
                out.extend_from_slice(s.as_str().as_bytes());
                out.push(b'>');
            }
            ForwardPath::Path(p) => p.encode(out),
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> ForwardPath<'static> {
        match self {
            ForwardPath::Postmaster(s) => ForwardPath::Postmaster(s.into_owned()),
            ForwardPath::Path(p) => ForwardPath::Path(p.into_owned()),
        }
    }
}

fn path_from_raw<'a>(
    input: &'a [u8],
    consumed: usize,
    raw: RawPath<'a>,
    valid: Option<Src<'a>>,
) -> Result<Path<'a>, AddressError> {
    if consumed > MAX_PATH_LEN {
        return Err(AddressError::PathTooLong);
    }
    let Some(host) = raw.host else {
        return Err(AddressError::MissingDomain);
    };
    let src = match valid {
        Some(v) => v,
        None => Src::new(&input[..consumed])?,
    };
    let route = match raw.route {
        Some(r) => Some(SourceRoute(Cow::Borrowed(src.sub(r)?))),
        None => None,
    };
    Ok(Path {
        route,
        mailbox: Mailbox {
            local: LocalPart::from_wire(src, raw.local)?,
            host: Host::from_wire(src, host)?,
        },
    })
}

/// Parses a reverse-path (`<>` or `<path>`) at the start of `input`; returns it and the rest.
///
/// UTF-8 is accepted (check [`ReversePath::is_ascii`] against SMTPUTF8).
///
/// # Errors
///
/// A precise [`AddressError`] for any violation of the grammar or the length limits.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::address::{parse_reverse_path, AddressError};
///
/// assert!(parse_reverse_path(b"<>")?.0.is_null());
/// assert_eq!(parse_reverse_path(b"<a@b").unwrap_err(), AddressError::Unbalanced);
/// # Ok::<(), AddressError>(())
/// ```
pub fn parse_reverse_path(input: &[u8]) -> Result<(ReversePath<'_>, &[u8]), AddressError> {
    reverse_path_in(input, None)
}

/// `valid`: the whole command line, already validated as UTF-8 (saves a second check).
pub(crate) fn reverse_path_in<'a>(
    input: &'a [u8],
    valid: Option<Src<'a>>,
) -> Result<(ReversePath<'a>, &'a [u8]), AddressError> {
    if let Some(rest) = input.strip_prefix(b"<>") {
        return Ok((ReversePath::Null, rest));
    }
    if let Some((p, rest)) = path_fast(input) {
        return Ok((ReversePath::Path(p), rest));
    }
    match raw_path_fast(input).map_or_else(|| raw_path(input), Ok) {
        Ok((rest, raw)) => {
            let consumed = input.len() - rest.len();
            Ok((
                ReversePath::Path(path_from_raw(input, consumed, raw, valid)?),
                rest,
            ))
        }
        Err(_) => Err(diagnose(input)),
    }
}

/// Parses a forward-path (`<postmaster>` or `<path>`) at the start of `input`.
///
/// # Errors
///
/// [`AddressError::NullNotAllowed`] for `<>`, and the grammar and length errors.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::address::parse_forward_path;
///
/// let (p, _) = parse_forward_path(b"<PostMaster>")?;
/// assert!(p.is_postmaster());
/// # Ok::<(), mailbag_smtp_proto::address::AddressError>(())
/// ```
pub fn parse_forward_path(input: &[u8]) -> Result<(ForwardPath<'_>, &[u8]), AddressError> {
    forward_path_in(input, None)
}

pub(crate) fn forward_path_in<'a>(
    input: &'a [u8],
    valid: Option<Src<'a>>,
) -> Result<(ForwardPath<'a>, &'a [u8]), AddressError> {
    if input.starts_with(b"<>") {
        return Err(AddressError::NullNotAllowed);
    }
    if let Some((p, rest)) = path_fast(input) {
        return Ok((ForwardPath::Path(p), rest));
    }
    match raw_path_fast(input).map_or_else(|| raw_path(input), Ok) {
        Ok((rest, raw)) => {
            let consumed = input.len() - rest.len();
            if raw.host.is_none()
                && raw.route.is_none()
                && raw.local.eq_ignore_ascii_case(b"postmaster")
            {
                return Ok((
                    ForwardPath::Postmaster(Postmaster(Cow::Borrowed(to_str(raw.local)?))),
                    rest,
                ));
            }
            Ok((
                ForwardPath::Path(path_from_raw(input, consumed, raw, valid)?),
                rest,
            ))
        }
        Err(_) => Err(diagnose(input)),
    }
}

/// [`raw_path_fast`] turned into a [`Path`] directly: within the length limits, ASCII only
/// (so one UTF-8 conversion of the whole address, which cannot fail). `None`: the full
/// grammar decides (and reports any error precisely).
#[inline]
pub(crate) fn path_fast(input: &[u8]) -> Option<(Path<'_>, &[u8])> {
    let (rest, raw) = raw_path_fast(input)?;
    let host = raw.host?;
    let consumed = input.len() - rest.len();
    if consumed > MAX_PATH_LEN
        || raw.local.len() > MAX_LOCAL_PART_LEN
        || host.len() > MAX_DOMAIN_LEN
    {
        return None;
    }
    // `<` local `@` host `>`: the address is input[1 .. consumed - 1].
    let text = core::str::from_utf8(input.get(1..consumed - 1)?).ok()?;
    let (local, host) = (
        text.get(..raw.local.len())?,
        text.get(raw.local.len() + 1..)?,
    );
    Some((
        Path {
            route: None,
            mailbox: Mailbox {
                local: LocalPart(Cow::Borrowed(local)),
                host: Host::Domain(Domain(Cow::Borrowed(host))),
            },
        },
        rest,
    ))
}

/// The length of the leading run of `s` whose octets all have class `bit`; `None` when all
/// of `s` has it. Unrolled by four (one bounds check per four octets), with an early exit at
/// the first octet outside the class.
#[inline(always)]
fn class_run(s: &[u8], bit: u8) -> Option<usize> {
    let stop = |c: u8| CLASS[usize::from(c)] & bit == 0;
    let mut i = 0;
    while let Some(&[a, b, c, d]) = s.get(i..i + 4) {
        if stop(a) {
            return Some(i);
        }
        if stop(b) {
            return Some(i + 1);
        }
        if stop(c) {
            return Some(i + 2);
        }
        if stop(d) {
            return Some(i + 3);
        }
        i += 4;
    }
    let n = s.get(i..)?.iter().position(|&c| stop(c))?;
    Some(i + n)
}

/// Fast path for the common form `<dot-atom@domain>` (ASCII, no route, no quotes, no
/// literal). `None` means "use the full grammar" (which also reports errors precisely).
///
/// One pass over the local part and one over the domain, each checking its rules on the
/// way (no empty atom; labels of 1 to 63 octets without leading or trailing hyphen, one
/// trailing dot tolerated).
#[inline]
fn raw_path_fast(i: &[u8]) -> Option<(&[u8], RawPath<'_>)> {
    const ASCII_ATEXT: u8 = 1 << 6;
    const LET_DIG_HYP: u8 = 1 << 7;
    let body = i.strip_prefix(b"<")?;
    // Local part: dot-separated atoms of ASCII atext, each at least one octet.
    let mut rest = body;
    loop {
        let n = class_run(rest, ASCII_ATEXT)?;
        let (&sep, after) = rest[n..].split_first()?;
        if n == 0 {
            return None;
        }
        rest = after;
        match sep {
            b'.' => {}
            b'@' => break,
            _ => return None,
        }
    }
    let local = &body[..body.len() - rest.len() - 1];
    let host_part = rest;
    // Domain: dot-separated labels of ASCII letters, digits and hyphens, 1 to 63 octets,
    // no leading or trailing hyphen; one trailing dot tolerated; then '>'.
    loop {
        let n = class_run(rest, LET_DIG_HYP)?;
        let (label, tail) = rest.split_at(n);
        let (&first, &last) = (label.first()?, label.last()?);
        let (&sep, after) = tail.split_first()?;
        if first == b'-' || last == b'-' || n > 63 {
            return None;
        }
        rest = after;
        match sep {
            b'>' => break,
            b'.' => {
                if let [b'>', after @ ..] = rest {
                    rest = after;
                    break;
                }
            }
            _ => return None,
        }
    }
    let host = &host_part[..host_part.len() - rest.len() - 1];
    Some((
        rest,
        RawPath {
            route: None,
            local,
            host: Some(host),
        },
    ))
}

/// Validates that a string is a HELO/EHLO argument we can carry: a domain, an address literal,
/// or (leniently, as real clients send them) any token of printable characters.
pub(crate) fn is_helo_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| c > 0x20 && c != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    /// The cases the server's former `config::valid_domain` decided, through
    /// `Domain::try_from` (ASCII only, as that check was).
    #[test]
    fn domain_as_config_check() {
        let ok = |s: &str| Domain::try_from(s).is_ok_and(|d| d.is_ascii());
        let label63 = "a".repeat(63);
        for good in [
            "localhost",
            "mx.example.org",
            "a-b.example",
            "123.example",
            label63.as_str(),
        ] {
            assert!(ok(good), "{good:?}");
        }
        let label64 = "a".repeat(64);
        let long = ["a"; 129].join("."); // 257 octets
        for bad in [
            "",
            ".",
            ".example",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "a b",
            "bücher.example",
            label64.as_str(),
            long.as_str(),
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn null_and_simple() {
        assert_eq!(parse_reverse_path(b"<>").unwrap().0, ReversePath::Null);
        let (p, rest) = parse_reverse_path(b"<a@b.c> SIZE=1").unwrap();
        assert_eq!(rest, b" SIZE=1");
        let ReversePath::Path(p) = p else { panic!() };
        assert_eq!(p.mailbox().to_string(), "a@b.c");
    }

    #[test]
    fn extra_brackets_left_over() {
        let (p, rest) = parse_reverse_path(b"<>>>>").unwrap();
        assert!(p.is_null());
        assert_eq!(rest, b">>>");
    }

    #[test]
    fn quoted_gt_is_not_the_end() {
        let (p, rest) = parse_forward_path(br#"<"a>b"@c.d>"#).unwrap();
        assert!(rest.is_empty());
        let ForwardPath::Path(p) = p else { panic!() };
        assert_eq!(p.mailbox().local_part().content(), "a>b");
    }

    #[test]
    fn diagnostics() {
        assert_eq!(
            parse_forward_path(b"a@b").unwrap_err(),
            AddressError::MissingOpenBracket
        );
        assert_eq!(
            parse_forward_path(b"<\"a@b>").unwrap_err(),
            AddressError::UnbalancedQuote
        );
        assert_eq!(
            parse_forward_path(b"<a@b_c>").unwrap_err(),
            AddressError::Domain
        );
        assert_eq!(
            parse_forward_path(b"<a>").unwrap_err(),
            AddressError::MissingDomain
        );
        assert_eq!(
            parse_forward_path(b"<@a:b>").unwrap_err(),
            AddressError::MissingDomain
        );
        assert_eq!(
            parse_forward_path(b"<@:b@c>").unwrap_err(),
            AddressError::SourceRoute
        );
        assert_eq!(
            parse_forward_path(b"<a@[1.2.3]>").unwrap_err(),
            AddressError::AddressLiteral
        );
        assert_eq!(
            parse_forward_path(b"<a..b@c>").unwrap_err(),
            AddressError::LocalPart
        );
    }

    proptest::proptest! {
        /// The fast path accepts a subset of the grammar and splits it identically.
        #[test]
        fn fast_path_agrees_with_grammar(s in "<[a-z.+%@!\"-]{0,12}@[a-zA-Z0-9.-]{0,12}>[ a]{0,2}") {
            if let Some((rest, fast)) = raw_path_fast(s.as_bytes()) {
                let (rest2, full) = raw_path(s.as_bytes()).expect("grammar accepts fast-path input");
                proptest::prop_assert_eq!(rest, rest2);
                proptest::prop_assert_eq!(fast.local, full.local);
                proptest::prop_assert_eq!(fast.host, full.host);
                proptest::prop_assert!(full.route.is_none());
            }
        }
    }

    /// The grammar alone, without either fast path.
    fn grammar_path(s: &[u8]) -> Option<(Path<'_>, &[u8])> {
        let (rest, raw) = raw_path(s).ok()?;
        let consumed = s.len() - rest.len();
        Some((path_from_raw(s, consumed, raw, None).ok()?, rest))
    }

    #[test]
    fn path_fast_edge_cases_agree_with_grammar() {
        let long_label = format!("<a@{}.example>", "x".repeat(64));
        let max_label = format!("<a@{}.example>", "x".repeat(63));
        let long_local = format!("<{}@example>", "x".repeat(65));
        let cases: Vec<&[u8]> = vec![
            b"<a@b-.c>",
            b"<a@-b.c>",
            b"<a@b.-c>",
            b"<a@b..c>",
            b"<a@b.>",
            b"<a@b..>",
            b"<a@.b>",
            b"<a@b--c.d>",
            b"<a@b-c.d-e>",
            b"<.a@b>",
            b"<a.@b>",
            b"<a..b@c>",
            b"<a.b.c@d>",
            b"<@b>",
            b"<a@>",
            b"<a@b",
            b"<a@b> SIZE=1",
            long_label.as_bytes(),
            max_label.as_bytes(),
            long_local.as_bytes(),
        ];
        for c in cases {
            let grammar = grammar_path(c);
            if let Some(fast) = path_fast(c) {
                assert_eq!(
                    Some(&fast),
                    grammar.as_ref(),
                    "{:?}",
                    String::from_utf8_lossy(c)
                );
            }
            let public = parse_forward_path(c).ok().and_then(|(p, r)| match p {
                ForwardPath::Path(p) => Some((p, r)),
                ForwardPath::Postmaster(_) => None,
            });
            assert_eq!(public, grammar, "{:?}", String::from_utf8_lossy(c));
        }
    }

    proptest::proptest! {
        /// The direct fast path builds the same `Path` as the grammar.
        #[test]
        fn path_fast_agrees_with_grammar(
            s in "<[a-z.+%@!\"-]{0,12}@[a-zA-Z0-9.-]{0,70}>[ a]{0,2}",
        ) {
            if let Some(fast) = path_fast(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(fast), grammar_path(s.as_bytes()));
            }
        }
    }

    proptest::proptest! {
        /// The unrolled class scan agrees with a plain `position` for both classes.
        #[test]
        fn class_run_matches_position(
            s in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'a'),
                proptest::strategy::Just(b'-'),
                proptest::strategy::Just(b'+'),
                proptest::num::u8::ANY,
            ], 0..40),
        ) {
            for bit in [1u8 << 6, 1 << 7] {
                let naive = s.iter().position(|&c| CLASS[usize::from(c)] & bit == 0);
                proptest::prop_assert_eq!(class_run(&s, bit), naive);
            }
        }
    }

    #[test]
    fn normalisation() {
        let d = Domain::try_from("ExAmPle.COM.").unwrap();
        assert_eq!(d.normalized(), "example.com");
        let d = Domain::try_from("example.com").unwrap();
        assert!(matches!(d.normalized(), Cow::Borrowed(_)));
    }
}
