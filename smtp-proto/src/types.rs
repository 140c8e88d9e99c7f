//! SMTP value types: commands, MAIL/RCPT parameters, replies, EHLO capabilities, secrets.
//!
//! Address types live in [`crate::address`] and are re-exported here. All types borrow from the
//! parsed input where possible (`Cow`) and offer `into_owned()`.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use alloc::borrow::Cow;
use core::fmt;

pub use crate::address::{
    AddressLiteral, Domain, ForwardPath, Host, LiteralKind, LocalPart, Mailbox, Path, ReversePath,
    SourceRoute,
};

/// Error building a value from parts that violate its invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A reply code outside 200..=599.
    #[error("reply code must be 200..=599")]
    ReplyCode,
    /// An enhanced status code with a bad class or number.
    #[error("enhanced status code must be [245].0-999.0-999")]
    EnhancedCode,
    /// The enhanced status code class differs from the reply code class.
    #[error("enhanced status class does not match the reply code")]
    ClassMismatch,
    /// Reply text with CR, LF or other control characters (HT is text).
    #[error("reply text must not contain control characters")]
    ReplyText,
    /// The first reply line would be read back as an enhanced status code.
    #[error("reply text looks like an enhanced status code")]
    AmbiguousText,
    /// MT-PRIORITY outside -9..=9.
    #[error("MT-PRIORITY must be -9..=9")]
    Priority,
    /// An ESMTP keyword or value that is not allowed.
    #[error("invalid ESMTP keyword or value")]
    Keyword,
    /// A SASL mechanism name that is not allowed.
    #[error("invalid SASL mechanism name")]
    Mechanism,
    /// Secret text that is not base64.
    #[error("SASL data must be base64")]
    Base64,
    /// A HELO/EHLO/VRFY/HELP/NOOP argument with spaces or control characters.
    #[error("invalid command argument")]
    Argument,
    /// Text that is not xtext (RFC 3461 section 4), or decodes to something that is not
    /// UTF-8.
    #[error("invalid xtext")]
    XText,
    /// An `ENVID` longer than RFC 3461's 100 characters (section 4.4).
    #[error("ENVID must be at most 100 characters")]
    Envid,
    /// A `BY=` time over 9 digits, or `R` mode with a time that is not
    /// positive (RFC 2852 section 4).
    #[error("invalid BY= value")]
    By,
    /// A `HOLDUNTIL=` value that is not an RFC 3339 date-time of at most 40
    /// characters.
    #[error("invalid HOLDUNTIL= value")]
    HoldUntil,
    /// An `ORCPT` address that is empty or longer than RFC 3461's 500 characters
    /// (section 4.2).
    #[error("ORCPT address must be 1 to 500 characters")]
    Orcpt,
    /// A reply line longer than RFC 5321's 512 octets, CRLF included (section 4.5.3.1.5).
    #[error("reply line must be at most 512 octets")]
    ReplyTooLong,
}

// ---------------------------------------------------------------- secrets

/// SASL data (base64 text as sent on the wire). Its `Debug` output is redacted.
///
/// An empty secret is the empty initial response, sent as `=` (RFC 4954 section 4).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::types::Secret;
///
/// let s = Secret::try_from("AHVzZXIAcGFzcw==")?;
/// assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
/// assert_eq!(s.decode().unwrap(), b"\0user\0pass");
/// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<'a>(Cow<'a, str>);

impl<'a> Secret<'a> {
    pub(crate) fn from_wire(s: &'a [u8]) -> Option<Self> {
        if s == b"=" {
            return Some(Secret(Cow::Borrowed("")));
        }
        if s.is_empty() || !s.iter().all(|&b| is_base64_char(b)) {
            return None;
        }
        core::str::from_utf8(s)
            .ok()
            .map(|s| Secret(Cow::Borrowed(s)))
    }

    /// Encodes raw bytes as a secret.
    pub fn from_bytes(data: &[u8]) -> Secret<'static> {
        use base64::Engine;
        Secret(Cow::Owned(
            base64::engine::general_purpose::STANDARD.encode(data),
        ))
    }

    /// The base64 text (empty for an empty response). Handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Decodes the base64 text.
    ///
    /// # Errors
    ///
    /// [`ValueError::Base64`] when the text is not valid base64.
    pub fn decode(&self) -> Result<Vec<u8>, ValueError> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(self.0.as_bytes())
            .map_err(|_| ValueError::Base64)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        if self.0.is_empty() {
            out.push(b'=');
        } else {
            out.extend_from_slice(self.0.as_bytes());
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Secret<'static> {
        Secret(Cow::Owned(self.0.into_owned()))
    }
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

impl<'a> TryFrom<&'a str> for Secret<'a> {
    type Error = ValueError;

    fn try_from(s: &'a str) -> Result<Self, ValueError> {
        if s.is_empty() {
            return Ok(Secret(Cow::Borrowed("")));
        }
        Secret::from_wire(s.as_bytes()).ok_or(ValueError::Base64)
    }
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// ---------------------------------------------------------------- small newtypes

/// A SASL mechanism name (RFC 4422: 1-20 of `A-Z 0-9 - _`, compared case-insensitively).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::types::Mechanism;
///
/// let m = Mechanism::try_from("plain")?;
/// assert_eq!(m, Mechanism::PLAIN);
/// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
/// ```
#[derive(Clone, Eq)]
pub struct Mechanism<'a>(Cow<'a, str>);

impl Mechanism<'static> {
    /// `PLAIN` (RFC 4616).
    pub const PLAIN: Mechanism<'static> = Mechanism(Cow::Borrowed("PLAIN"));
    /// `LOGIN` (draft, widely deployed).
    pub const LOGIN: Mechanism<'static> = Mechanism(Cow::Borrowed("LOGIN"));
    /// `CRAM-MD5` (RFC 2195).
    pub const CRAM_MD5: Mechanism<'static> = Mechanism(Cow::Borrowed("CRAM-MD5"));
    /// `XOAUTH2`.
    pub const XOAUTH2: Mechanism<'static> = Mechanism(Cow::Borrowed("XOAUTH2"));
    /// `OAUTHBEARER` (RFC 7628).
    pub const OAUTHBEARER: Mechanism<'static> = Mechanism(Cow::Borrowed("OAUTHBEARER"));
}

impl<'a> Mechanism<'a> {
    pub(crate) fn from_wire(b: &'a [u8]) -> Option<Self> {
        if b.is_empty()
            || b.len() > 20
            || !b
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return None;
        }
        core::str::from_utf8(b)
            .ok()
            .map(|s| Mechanism(Cow::Borrowed(s)))
    }

    /// The name as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Mechanism<'static> {
        Mechanism(Cow::Owned(self.0.into_owned()))
    }
}

impl PartialEq for Mechanism<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl<'a> TryFrom<&'a str> for Mechanism<'a> {
    type Error = ValueError;

    fn try_from(s: &'a str) -> Result<Self, ValueError> {
        Mechanism::from_wire(s.as_bytes()).ok_or(ValueError::Mechanism)
    }
}

impl fmt::Debug for Mechanism<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mechanism({:?})", self.0)
    }
}

/// A command argument token (HELO name, VRFY string, HELP topic...): printable, no spaces
/// (VRFY/EXPN/NOOP/HELP strings may hold inner spaces), no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    pub(crate) fn from_wire(b: &'a [u8]) -> Option<Self> {
        if b.is_empty() || b.iter().any(|&c| c < 0x20 || c == 0x7f) {
            return None;
        }
        core::str::from_utf8(b).ok().map(|s| Text(Cow::Borrowed(s)))
    }

    /// The text as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Text<'static> {
        Text(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a str> for Text<'a> {
    type Error = ValueError;

    fn try_from(s: &'a str) -> Result<Self, ValueError> {
        let t = Text::from_wire(s.as_bytes()).ok_or(ValueError::Argument)?;
        if s.starts_with(' ') || s.ends_with(' ') {
            return Err(ValueError::Argument);
        }
        Ok(t)
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({:?})", self.0)
    }
}

/// The name a client gives in HELO, EHLO or LHLO: one token of printable characters.
///
/// Real clients send names that are not valid domains (NetBIOS names with `_`); the session
/// accepts them, and [`HeloName::host`] tells whether it is a valid domain or address literal.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeloName<'a>(Cow<'a, str>);

impl<'a> HeloName<'a> {
    pub(crate) fn from_wire(b: &'a [u8]) -> Option<Self> {
        if !crate::address::is_helo_token(b) {
            return None;
        }
        core::str::from_utf8(b)
            .ok()
            .map(|s| HeloName(Cow::Borrowed(s)))
    }

    /// The name as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a valid domain or address literal, if it is one.
    pub fn host(&self) -> Option<Host<'_>> {
        Host::try_from(self.0.as_ref()).ok()
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> HeloName<'static> {
        HeloName(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a str> for HeloName<'a> {
    type Error = ValueError;

    fn try_from(s: &'a str) -> Result<Self, ValueError> {
        HeloName::from_wire(s.as_bytes()).ok_or(ValueError::Argument)
    }
}

impl fmt::Debug for HeloName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeloName({:?})", self.0)
    }
}

/// An xtext value (RFC 3461 section 4), stored decoded: the `ENVID`, `ORCPT` and `AUTH=`
/// parameters, and DSN `Original-Recipient` fields.
///
/// On the wire `+`, `=`, and characters outside `!`..`~` are written `+XX`.
///
/// - Decoding: [`XText::parse`] (or `str::parse`) reads the wire form; [`XText::as_str`]
///   is the decoded value.
/// - Encoding: [`XText::new`] wraps a decoded value; [`XText::to_wire`] or
///   [`XText::encode`] write the wire form.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::types::XText;
///
/// let x = XText::new("a+b=c");
/// let mut wire = Vec::new();
/// x.encode(&mut wire);
/// assert_eq!(wire, b"a+2Bb+3Dc");
/// assert_eq!(x.to_wire(), "a+2Bb+3Dc");
///
/// // Decoding, e.g. a stored ORCPT value.
/// assert_eq!(XText::parse("rfc822;joe+2Bx@example.com")?.as_str(), "rfc822;joe+x@example.com");
/// assert!(XText::parse("bad+2").is_err());
/// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct XText<'a>(Cow<'a, str>);

impl<'a> XText<'a> {
    /// Wraps a decoded value (any string can be encoded).
    pub fn new(s: impl Into<Cow<'a, str>>) -> Self {
        XText(s.into())
    }

    pub(crate) fn from_wire(b: &'a [u8]) -> Option<Self> {
        if b.is_empty() {
            return None;
        }
        if !b.contains(&b'+') {
            if !b.iter().all(|&c| (33..=126).contains(&c) && c != b'=') {
                return None;
            }
            return core::str::from_utf8(b)
                .ok()
                .map(|s| XText(Cow::Borrowed(s)));
        }
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'+' {
                let hex = b.get(i + 1..i + 3)?;
                let v = hex_val(hex[0])? << 4 | hex_val(hex[1])?;
                out.push(v);
                i += 3;
            } else if (33..=126).contains(&c) && c != b'=' {
                out.push(c);
                i += 1;
            } else {
                return None;
            }
        }
        String::from_utf8(out).ok().map(|s| XText(Cow::Owned(s)))
    }

    /// Decodes the wire form (RFC 3461 section 4: `xchar`s and `+XX`; lower-case hex digits
    /// are accepted too). Borrows `wire` when it holds no `+XX`.
    ///
    /// # Errors
    ///
    /// [`ValueError::XText`] for empty text, characters outside `!`..`~`, a bare `=`, a `+`
    /// not followed by two hex digits, or a value that does not decode to UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::types::{ValueError, XText};
    ///
    /// assert_eq!(XText::parse("a+2Bb+3Dc")?.as_str(), "a+b=c");
    /// assert_eq!(XText::parse("plain")?.as_str(), "plain");
    /// assert_eq!(XText::parse("bad+zz"), Err(ValueError::XText));
    /// assert_eq!(XText::parse("a b"), Err(ValueError::XText));
    /// # Ok::<(), ValueError>(())
    /// ```
    pub fn parse(wire: &'a str) -> Result<Self, ValueError> {
        XText::from_wire(wire.as_bytes()).ok_or(ValueError::XText)
    }

    /// The decoded value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The wire form (what [`XText::encode`] appends), as a string.
    pub fn to_wire(&self) -> String {
        let mut out = Vec::with_capacity(self.0.len());
        self.encode(&mut out);
        // The encoding is printable ASCII.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the xtext encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for &c in self.0.as_bytes() {
            if (33..=126).contains(&c) && c != b'+' && c != b'=' {
                out.push(c);
            } else {
                out.push(b'+');
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> XText<'static> {
        XText(Cow::Owned(self.0.into_owned()))
    }
}

impl core::str::FromStr for XText<'static> {
    type Err = ValueError;

    /// [`XText::parse`] into an owned value.
    fn from_str(wire: &str) -> Result<Self, ValueError> {
        XText::parse(wire).map(XText::into_owned)
    }
}

impl fmt::Debug for XText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XText({:?})", self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------- parameters

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME`.
    EightBitMime,
    /// `BINARYMIME` (BDAT only).
    BinaryMime,
}

impl Body {
    /// The keyword value.
    pub fn as_str(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// `RET=` (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `FULL`: return the whole message.
    Full,
    /// `HDRS`: return the headers only.
    Headers,
}

/// `BY=` (RFC 2852): deliver-by time and mode.
///
/// ```
/// use mailbag_smtp_proto::types::{By, ByMode};
///
/// let by = By::new(3600, ByMode::Return, true).unwrap();
/// assert_eq!((by.seconds(), by.mode(), by.trace()), (3600, ByMode::Return, true));
/// assert!(By::new(-60, ByMode::Notify, false).is_ok());
/// assert!(By::new(0, ByMode::Return, false).is_err()); // R needs a time to come
/// assert!(By::new(1_000_000_000, ByMode::Notify, false).is_err()); // over 9 digits
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct By {
    seconds: i64,
    mode: ByMode,
    trace: bool,
}

impl By {
    /// The largest `BY=` time: 9 digits.
    pub const MAX_SECONDS: i64 = 999_999_999;

    /// A deliver-by time: at most [`Self::MAX_SECONDS`] either way, and
    /// positive for [`ByMode::Return`] (RFC 2852 section 4).
    ///
    /// # Errors
    ///
    /// [`ValueError::By`].
    pub fn new(seconds: i64, mode: ByMode, trace: bool) -> Result<By, ValueError> {
        let fits = (-Self::MAX_SECONDS..=Self::MAX_SECONDS).contains(&seconds);
        if !fits || (mode == ByMode::Return && seconds <= 0) {
            return Err(ValueError::By);
        }
        Ok(By {
            seconds,
            mode,
            trace,
        })
    }

    /// Seconds (may be negative or zero for `N` mode).
    pub fn seconds(self) -> i64 {
        self.seconds
    }

    /// `R` (return) or `N` (notify).
    pub fn mode(self) -> ByMode {
        self.mode
    }

    /// `T`: trace requested.
    pub fn trace(self) -> bool {
        self.trace
    }
}

/// Mode of `BY=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByMode {
    /// `R`: return the message if not delivered in time.
    Return,
    /// `N`: notify if not delivered in time.
    Notify,
}

/// `HOLDFOR=` / `HOLDUNTIL=` (RFC 4865, future release).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hold<'a> {
    /// `HOLDFOR=<seconds>`.
    For(u64),
    /// `HOLDUNTIL=<RFC 3339 date-time>` (kept as text).
    Until(HoldUntil<'a>),
}

/// The value of `HOLDUNTIL=` (RFC 4865): an RFC 3339 date-time, at most 40
/// characters of letters, digits, `-`, `+`, `:` and `.`, kept as text.
///
/// ```
/// use mailbag_smtp_proto::types::HoldUntil;
///
/// assert!(HoldUntil::try_from("2026-12-24T08:00:00Z").is_ok());
/// assert!(HoldUntil::try_from("2026-12-24T08:00:00+01:00").is_ok());
/// assert!(HoldUntil::try_from("x\r\nRSET").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HoldUntil<'a>(Cow<'a, str>);

impl HoldUntil<'_> {
    /// The date-time as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> HoldUntil<'static> {
        HoldUntil(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a str> for HoldUntil<'a> {
    type Error = ValueError;

    fn try_from(s: &'a str) -> Result<Self, ValueError> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b':' | b'.'));
        if ok {
            Ok(HoldUntil(Cow::Borrowed(s)))
        } else {
            Err(ValueError::HoldUntil)
        }
    }
}

/// The value of `ENVID=` (RFC 3461 section 4.4): xtext of at most 100
/// characters once decoded.
///
/// ```
/// use mailbag_smtp_proto::types::{Envid, XText};
///
/// assert_eq!(Envid::new(XText::new("QQ314159")).unwrap().as_str(), "QQ314159");
/// assert!(Envid::new(XText::new("x".repeat(101))).is_err());
/// assert!(Envid::new(XText::new("")).is_err()); // `ENVID=` has no empty form
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envid<'a>(XText<'a>);

impl<'a> Envid<'a> {
    /// The longest envelope id, in characters.
    pub const MAX_LEN: usize = 100;

    /// An envelope id of 1 to [`Self::MAX_LEN`] characters (an ESMTP parameter's value
    /// is never empty, RFC 5321 section 4.1.2).
    ///
    /// # Errors
    ///
    /// [`ValueError::Envid`].
    pub fn new(x: XText<'a>) -> Result<Self, ValueError> {
        if !x.as_str().is_empty() && x.as_str().chars().count() <= Self::MAX_LEN {
            Ok(Envid(x))
        } else {
            Err(ValueError::Envid)
        }
    }

    /// The decoded id.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id as xtext.
    pub fn xtext(&self) -> &XText<'a> {
        &self.0
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Envid<'static> {
        Envid(self.0.into_owned())
    }
}

/// `MT-PRIORITY=` (RFC 6710): -9..=9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MtPriority(i8);

impl MtPriority {
    /// The value.
    pub fn get(self) -> i8 {
        self.0
    }
}

impl TryFrom<i8> for MtPriority {
    type Error = ValueError;

    fn try_from(v: i8) -> Result<Self, ValueError> {
        if (-9..=9).contains(&v) {
            Ok(MtPriority(v))
        } else {
            Err(ValueError::Priority)
        }
    }
}

/// `NOTIFY=` (RFC 3461): `NEVER` or a non-empty set of SUCCESS, FAILURE, DELAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Notify(u8);

impl Notify {
    /// `NEVER`.
    pub const NEVER: Notify = Notify(0);
    const SUCCESS: u8 = 1;
    const FAILURE: u8 = 2;
    const DELAY: u8 = 4;

    /// A set of conditions; `None` if all are false (use [`Notify::NEVER`]).
    pub fn new(success: bool, failure: bool, delay: bool) -> Option<Notify> {
        let v = (u8::from(success) * Self::SUCCESS)
            | (u8::from(failure) * Self::FAILURE)
            | (u8::from(delay) * Self::DELAY);
        (v != 0).then_some(Notify(v))
    }

    /// Whether this is `NEVER`.
    pub fn is_never(self) -> bool {
        self.0 == 0
    }
    /// SUCCESS requested.
    pub fn success(self) -> bool {
        self.0 & Self::SUCCESS != 0
    }
    /// FAILURE requested.
    pub fn failure(self) -> bool {
        self.0 & Self::FAILURE != 0
    }
    /// DELAY requested.
    pub fn delay(self) -> bool {
        self.0 & Self::DELAY != 0
    }
}

/// `ORCPT=addr-type;xtext` (RFC 3461 section 4.2). Built with [`Orcpt::new`], which
/// checks the address type, or by the parser: an ORCPT can hold nothing that would
/// break the command it is written into.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::types::{Orcpt, XText};
///
/// let o = Orcpt::new("rfc822", XText::new("Joe@Example.test")).unwrap();
/// assert_eq!((o.addr_type(), o.address().as_str()), ("rfc822", "Joe@Example.test"));
/// assert!(Orcpt::new("rfc822;x\r\nRCPT TO:<a@b>", XText::new("x")).is_err());
/// assert!(Orcpt::new("rfc822", XText::new("")).is_err());
/// assert!(Orcpt::new("rfc822", XText::new("x".repeat(501))).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt<'a> {
    addr_type: Cow<'a, str>,
    address: XText<'a>,
}

impl<'a> Orcpt<'a> {
    /// The longest original recipient address, decoded, in octets (RFC 3461 section 4.2).
    pub const MAX_ADDRESS_LEN: usize = 500;

    /// An ORCPT of `address` (xtext-decoded; it is encoded when written) with the
    /// address type `addr_type` (`rfc822`, `utf-8`, ...: letters, digits and `-`).
    ///
    /// # Errors
    ///
    /// [`ValueError::Keyword`] for any other address type, [`ValueError::Orcpt`] for an
    /// address that is empty or longer than [`Self::MAX_ADDRESS_LEN`] octets (what the
    /// parser takes).
    pub fn new(addr_type: impl Into<Cow<'a, str>>, address: XText<'a>) -> Result<Self, ValueError> {
        let addr_type = addr_type.into();
        if !is_addr_type(addr_type.as_bytes()) {
            return Err(ValueError::Keyword);
        }
        if address.as_str().is_empty() || address.as_str().len() > Self::MAX_ADDRESS_LEN {
            return Err(ValueError::Orcpt);
        }
        Ok(Orcpt { addr_type, address })
    }

    /// Built from parts the parser checked.
    pub(crate) fn from_checked(addr_type: Cow<'a, str>, address: XText<'a>) -> Self {
        debug_assert!(is_addr_type(addr_type.as_bytes()));
        Orcpt { addr_type, address }
    }

    /// The address type, e.g. `rfc822`.
    pub fn addr_type(&self) -> &str {
        &self.addr_type
    }

    /// The original recipient, xtext-decoded.
    pub fn address(&self) -> &XText<'a> {
        &self.address
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Orcpt<'static> {
        Orcpt {
            addr_type: Cow::Owned(self.addr_type.into_owned()),
            address: self.address.into_owned(),
        }
    }
}

/// An ORCPT address type: one or more letters, digits or `-` (an atom in practice:
/// `rfc822`, `utf-8`, `x-...`).
pub(crate) fn is_addr_type(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

/// The MAIL parameters the parser gives a field of [`MailParams`].
pub(crate) const MAIL_KEYWORDS: [&str; 11] = [
    "SIZE",
    "BODY",
    "SMTPUTF8",
    "RET",
    "ENVID",
    "AUTH",
    "REQUIRETLS",
    "MT-PRIORITY",
    "BY",
    "HOLDFOR",
    "HOLDUNTIL",
];

/// The RCPT parameters the parser gives a field of [`RcptParams`].
pub(crate) const RCPT_KEYWORDS: [&str; 2] = ["NOTIFY", "ORCPT"];

/// The MAIL or RCPT keyword `k` is, in any case, as these lists write it.
pub(crate) fn known_keyword(k: &[u8]) -> Option<&'static str> {
    MAIL_KEYWORDS
        .iter()
        .chain(RCPT_KEYWORDS.iter())
        .find(|m| m.as_bytes().eq_ignore_ascii_case(k))
        .copied()
}

/// A parameter this crate does not know, kept so the server can answer 555.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param<'a> {
    keyword: Cow<'a, str>,
    value: Option<Cow<'a, str>>,
}

impl<'a> Param<'a> {
    /// Builds a parameter; the keyword is `ALPHA/DIGIT *(ALPHA/DIGIT/"-")`, the value
    /// printable ASCII without `=` or space. A keyword this crate knows (`SIZE`,
    /// `NOTIFY`, ...) is refused: it has its own field in [`MailParams`] or
    /// [`RcptParams`], which is where the parser puts it.
    ///
    /// ```
    /// use mailbag_smtp_proto::types::Param;
    ///
    /// assert!(Param::new("X-TRACE", Some("1")).is_ok());
    /// assert!(Param::new("size", Some("1")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ValueError::Keyword`] if either part is invalid, or the keyword is a known one.
    pub fn new(keyword: &'a str, value: Option<&'a str>) -> Result<Self, ValueError> {
        if known_keyword(keyword.as_bytes()).is_some() {
            return Err(ValueError::Keyword);
        }
        Param::from_wire(keyword.as_bytes(), value.map(str::as_bytes)).ok_or(ValueError::Keyword)
    }

    pub(crate) fn from_wire(k: &'a [u8], v: Option<&'a [u8]>) -> Option<Self> {
        if !is_esmtp_keyword(k) {
            return None;
        }
        let value = match v {
            Some(v) => {
                if v.is_empty() || !v.iter().all(|&c| (33..=126).contains(&c) && c != b'=') {
                    return None;
                }
                Some(Cow::Borrowed(core::str::from_utf8(v).ok()?))
            }
            None => None,
        };
        Some(Param {
            keyword: Cow::Borrowed(core::str::from_utf8(k).ok()?),
            value,
        })
    }

    /// The keyword as received.
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// The value, if any.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Param<'static> {
        Param {
            keyword: Cow::Owned(self.keyword.into_owned()),
            value: self.value.map(|v| Cow::Owned(v.into_owned())),
        }
    }
}

pub(crate) fn is_esmtp_keyword(k: &[u8]) -> bool {
    matches!(k.first(), Some(c) if c.is_ascii_alphanumeric())
        && k.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

/// MAIL FROM parameters. Absent parameters are `None`/`false`; each may appear once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MailParams<'a> {
    /// `SIZE=` (RFC 1870), saturated at `u64::MAX`.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152 / 3030).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461), xtext-decoded.
    pub envid: Option<Envid<'a>>,
    /// `AUTH=` (RFC 4954), xtext-decoded; `<>` is kept as the text `<>`. An empty
    /// value is written as `<>` (an ESMTP value is never empty), so it reads back as `<>`.
    pub auth: Option<XText<'a>>,
    /// `REQUIRETLS` (RFC 8689).
    pub requiretls: bool,
    /// `MT-PRIORITY=` (RFC 6710).
    pub mt_priority: Option<MtPriority>,
    /// `BY=` (RFC 2852).
    pub by: Option<By>,
    /// `HOLDFOR=` / `HOLDUNTIL=` (RFC 4865).
    pub hold: Option<Hold<'a>>,
    /// Parameters not known to this crate, in order.
    pub unknown: Vec<Param<'a>>,
}

impl MailParams<'_> {
    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> MailParams<'static> {
        MailParams {
            size: self.size,
            body: self.body,
            smtputf8: self.smtputf8,
            ret: self.ret,
            envid: self.envid.map(Envid::into_owned),
            auth: self.auth.map(XText::into_owned),
            requiretls: self.requiretls,
            mt_priority: self.mt_priority,
            by: self.by,
            hold: self.hold.map(|h| match h {
                Hold::For(s) => Hold::For(s),
                Hold::Until(t) => Hold::Until(t.into_owned()),
            }),
            unknown: self.unknown.into_iter().map(Param::into_owned).collect(),
        }
    }
}

/// RCPT TO parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RcptParams<'a> {
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT=` (RFC 3461).
    pub orcpt: Option<Orcpt<'a>>,
    /// Parameters not known to this crate, in order.
    pub unknown: Vec<Param<'a>>,
}

impl RcptParams<'_> {
    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> RcptParams<'static> {
        RcptParams {
            notify: self.notify,
            orcpt: self.orcpt.map(Orcpt::into_owned),
            unknown: self.unknown.into_iter().map(Param::into_owned).collect(),
        }
    }
}

// ---------------------------------------------------------------- commands

/// An SMTP or LMTP command (RFC 5321 section 4.1.1 and extensions).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::codec::parse_command;
/// use mailbag_smtp_proto::types::Command;
///
/// let cmd = parse_command(b"RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n")?;
/// let mut wire = Vec::new();
/// cmd.encode(&mut wire);
/// assert_eq!(wire, b"RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n");
/// assert!(matches!(cmd, Command::Rcpt { .. }));
/// # Ok::<(), mailbag_smtp_proto::codec::CommandError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `EHLO name`.
    Ehlo(HeloName<'a>),
    /// `HELO name`.
    Helo(HeloName<'a>),
    /// `LHLO name` (LMTP, RFC 2033).
    Lhlo(HeloName<'a>),
    /// `MAIL FROM:<reverse-path> [params]`.
    Mail {
        /// The sender.
        from: ReversePath<'a>,
        /// Parameters.
        params: MailParams<'a>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The recipient.
        to: ForwardPath<'a>,
        /// Parameters.
        params: RcptParams<'a>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// `LAST` given.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `VRFY string [SMTPUTF8]`.
    Vrfy {
        /// What to verify.
        target: Text<'a>,
        /// `SMTPUTF8` parameter (RFC 6531).
        smtputf8: bool,
    },
    /// `EXPN string [SMTPUTF8]`.
    Expn {
        /// The list to expand.
        target: Text<'a>,
        /// `SMTPUTF8` parameter (RFC 6531).
        smtputf8: bool,
    },
    /// `HELP [topic]`.
    Help(Option<Text<'a>>),
    /// `NOOP [string]`.
    Noop(Option<Text<'a>>),
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// SASL mechanism.
        mechanism: Mechanism<'a>,
        /// Initial response (empty = `=`).
        initial_response: Option<Secret<'a>>,
    },
}

impl Command<'_> {
    /// The command verb, upper case.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Vrfy { .. } => "VRFY",
            Command::Expn { .. } => "EXPN",
            Command::Help(_) => "HELP",
            Command::Noop(_) => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Command<'static> {
        match self {
            Command::Ehlo(h) => Command::Ehlo(h.into_owned()),
            Command::Helo(h) => Command::Helo(h.into_owned()),
            Command::Lhlo(h) => Command::Lhlo(h.into_owned()),
            Command::Mail { from, params } => Command::Mail {
                from: from.into_owned(),
                params: params.into_owned(),
            },
            Command::Rcpt { to, params } => Command::Rcpt {
                to: to.into_owned(),
                params: params.into_owned(),
            },
            Command::Data => Command::Data,
            Command::Bdat { size, last } => Command::Bdat { size, last },
            Command::Rset => Command::Rset,
            Command::Vrfy { target, smtputf8 } => Command::Vrfy {
                target: target.into_owned(),
                smtputf8,
            },
            Command::Expn { target, smtputf8 } => Command::Expn {
                target: target.into_owned(),
                smtputf8,
            },
            Command::Help(t) => Command::Help(t.map(Text::into_owned)),
            Command::Noop(t) => Command::Noop(t.map(Text::into_owned)),
            Command::Quit => Command::Quit,
            Command::StartTls => Command::StartTls,
            Command::Auth {
                mechanism,
                initial_response,
            } => Command::Auth {
                mechanism: mechanism.into_owned(),
                initial_response: initial_response.map(Secret::into_owned),
            },
        }
    }
}

/// A client line during an AUTH exchange (RFC 4954 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResponse<'a> {
    /// Base64 data (empty allowed).
    Data(Secret<'a>),
    /// `*`: the client cancels.
    Cancel,
}

// ---------------------------------------------------------------- replies

/// A reply code, 200..=599 (RFC 5321 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// 211 System status.
    pub const SYSTEM_STATUS: ReplyCode = ReplyCode(211);
    /// 214 Help message.
    pub const HELP: ReplyCode = ReplyCode(214);
    /// 220 Service ready.
    pub const READY: ReplyCode = ReplyCode(220);
    /// 221 Service closing transmission channel.
    pub const CLOSING: ReplyCode = ReplyCode(221);
    /// 235 Authentication succeeded.
    pub const AUTH_OK: ReplyCode = ReplyCode(235);
    /// 250 Requested mail action okay, completed.
    pub const OK: ReplyCode = ReplyCode(250);
    /// 252 Cannot VRFY user, but will accept message.
    pub const CANNOT_VRFY: ReplyCode = ReplyCode(252);
    /// 334 AUTH continuation.
    pub const AUTH_CONTINUE: ReplyCode = ReplyCode(334);
    /// 354 Start mail input.
    pub const START_DATA: ReplyCode = ReplyCode(354);
    /// 421 Service not available, closing transmission channel.
    pub const NOT_AVAILABLE: ReplyCode = ReplyCode(421);
    /// 450 Mailbox unavailable.
    pub const MAILBOX_BUSY: ReplyCode = ReplyCode(450);
    /// 451 Local error in processing.
    pub const LOCAL_ERROR: ReplyCode = ReplyCode(451);
    /// 452 Insufficient storage / too many recipients.
    pub const INSUFFICIENT_STORAGE: ReplyCode = ReplyCode(452);
    /// 454 TLS not available / temporary authentication failure.
    pub const TEMP_FAILURE: ReplyCode = ReplyCode(454);
    /// 500 Syntax error, command unrecognized.
    pub const SYNTAX_ERROR: ReplyCode = ReplyCode(500);
    /// 501 Syntax error in parameters or arguments.
    pub const PARAM_SYNTAX: ReplyCode = ReplyCode(501);
    /// 502 Command not implemented.
    pub const NOT_IMPLEMENTED: ReplyCode = ReplyCode(502);
    /// 503 Bad sequence of commands.
    pub const BAD_SEQUENCE: ReplyCode = ReplyCode(503);
    /// 504 Command parameter not implemented.
    pub const PARAM_NOT_IMPLEMENTED: ReplyCode = ReplyCode(504);
    /// 530 Authentication required.
    pub const AUTH_REQUIRED: ReplyCode = ReplyCode(530);
    /// 535 Authentication credentials invalid.
    pub const AUTH_FAILED: ReplyCode = ReplyCode(535);
    /// 550 Mailbox unavailable / policy rejection.
    pub const MAILBOX_UNAVAILABLE: ReplyCode = ReplyCode(550);
    /// 552 Exceeded storage allocation.
    pub const EXCEEDED_STORAGE: ReplyCode = ReplyCode(552);
    /// 553 Mailbox name not allowed.
    pub const NAME_NOT_ALLOWED: ReplyCode = ReplyCode(553);
    /// 554 Transaction failed.
    pub const TRANSACTION_FAILED: ReplyCode = ReplyCode(554);
    /// 555 MAIL/RCPT parameters not recognized.
    pub const PARAMS_NOT_RECOGNIZED: ReplyCode = ReplyCode(555);

    /// The numeric value.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The first digit (2, 3, 4 or 5).
    pub fn class(self) -> u8 {
        // 200..=599 / 100 always fits a u8.
        (self.0 / 100) as u8
    }

    /// Whether this is 2xx or 3xx.
    pub fn is_positive(self) -> bool {
        self.0 < 400
    }
}

impl TryFrom<u16> for ReplyCode {
    type Error = ValueError;

    fn try_from(v: u16) -> Result<Self, ValueError> {
        if (200..=599).contains(&v) {
            Ok(ReplyCode(v))
        } else {
            Err(ValueError::ReplyCode)
        }
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An enhanced status code `class.subject.detail` (RFC 3463), class 2, 4 or 5.
///
/// `Display` and `FromStr` use the text form (`5.7.1`); [`EnhancedStatusCode::find_in`]
/// finds one at the start of reply text.
///
/// The text form has one spelling: RFC 3463's `1*3digit` numbers are read without leading
/// zeros, so `5.1.01` is text, not a code. A parsed reply therefore re-encodes to the octets
/// it came from, where reading `5.1.01` as 5.1.1 would change the peer's text.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::types::EnhancedStatusCode;
///
/// let e = EnhancedStatusCode::new(5, 7, 1)?;
/// assert_eq!(e.to_string(), "5.7.1");
/// assert_eq!("5.7.1".parse::<EnhancedStatusCode>()?, e);
/// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatusCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedStatusCode {
    /// Builds a code.
    ///
    /// # Errors
    ///
    /// [`ValueError::EnhancedCode`] unless class is 2, 4 or 5 and the numbers are below 1000.
    pub fn new(class: u8, subject: u16, detail: u16) -> Result<Self, ValueError> {
        if !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return Err(ValueError::EnhancedCode);
        }
        Ok(EnhancedStatusCode {
            class,
            subject,
            detail,
        })
    }

    pub(crate) const fn c(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedStatusCode {
            class,
            subject,
            detail,
        }
    }

    /// Class digit.
    pub fn class(self) -> u8 {
        self.class
    }
    /// Subject number.
    pub fn subject(self) -> u16 {
        self.subject
    }
    /// Detail number.
    pub fn detail(self) -> u16 {
        self.detail
    }

    /// The same subject and detail in another class, e.g. a `4.4.1` from a temporary reply
    /// as `5.4.1` in a failure report (RFC 3464 section 2.3.4: the class must fit the
    /// action).
    ///
    /// # Errors
    ///
    /// [`ValueError::EnhancedCode`] unless `class` is 2, 4 or 5.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::types::EnhancedStatusCode;
    ///
    /// let e: EnhancedStatusCode = "4.4.1".parse()?;
    /// assert_eq!(e.with_class(5)?.to_string(), "5.4.1");
    /// assert!(e.with_class(3).is_err());
    /// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
    /// ```
    pub fn with_class(self, class: u8) -> Result<Self, ValueError> {
        EnhancedStatusCode::new(class, self.subject, self.detail)
    }

    /// Finds the enhanced status code that starts reply text (RFC 2034 section 4,
    /// RFC 3463): a reply line `"550 5.1.1 text"` or `"550-5.1.1 text"`, or text without
    /// the reply code as it is stored, logged or quoted in a DSN `Diagnostic-Code`
    /// (`"5.1.1 text"`). Leading whitespace is skipped; the code must end the text or be
    /// followed by whitespace. After a reply code, the code counts only when its class is
    /// the reply code's first digit (RFC 2034: they must agree).
    ///
    /// Returns the code and the byte offset just past it (the rest of the text follows).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::types::EnhancedStatusCode;
    ///
    /// let (e, end) = EnhancedStatusCode::find_in("550 5.1.1 no such user").unwrap();
    /// assert_eq!((e.to_string().as_str(), end), ("5.1.1", 9));
    /// assert_eq!(EnhancedStatusCode::find_in("5.1.10 null MX").unwrap().0.to_string(), "5.1.10");
    /// assert_eq!(EnhancedStatusCode::find_in("451-4.3.0 busy").unwrap().0.to_string(), "4.3.0");
    /// assert_eq!(EnhancedStatusCode::find_in("554 no enhanced code"), None);
    /// assert_eq!(EnhancedStatusCode::find_in("550 4.4.1 class mismatch"), None);
    /// assert_eq!(EnhancedStatusCode::find_in("5.1.1x"), None);
    /// ```
    pub fn find_in(text: &str) -> Option<(Self, usize)> {
        let start = text.len() - text.trim_start().len();
        let b = text.as_bytes().get(start..)?;
        let reply_class = match b {
            [c @ b'2'..=b'5', b'0'..=b'9', b'0'..=b'9', b' ' | b'-', ..] => Some(c - b'0'),
            _ => None,
        };
        let at = start + if reply_class.is_some() { 4 } else { 0 };
        let rest = text.as_bytes().get(at..)?;
        let token = rest
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(rest, |n| &rest[..n]);
        match EnhancedStatusCode::parse_prefix(token) {
            Some((e, n)) if n == token.len() && reply_class.is_none_or(|c| c == e.class) => {
                Some((e, at + n))
            }
            _ => None,
        }
    }

    pub(crate) fn parse_prefix(b: &[u8]) -> Option<(Self, usize)> {
        let class = match b.first()? {
            c @ (b'2' | b'4' | b'5') => c - b'0',
            _ => return None,
        };
        if b.get(1) != Some(&b'.') {
            return None;
        }
        let (subject, n1) = num3(&b[2..])?;
        let at = 2 + n1;
        if b.get(at) != Some(&b'.') {
            return None;
        }
        let (detail, n2) = num3(&b[at + 1..])?;
        let end = at + 1 + n2;
        match b.get(end) {
            None | Some(b' ') => Some((
                EnhancedStatusCode {
                    class,
                    subject,
                    detail,
                },
                end,
            )),
            _ => None,
        }
    }
}

/// One to three digits, without leading zeros (see [`EnhancedStatusCode`]).
fn num3(b: &[u8]) -> Option<(u16, usize)> {
    let n = b.iter().take(4).take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 3 || (n > 1 && b[0] == b'0') {
        return None;
    }
    let mut v = 0u16;
    for &c in &b[..n] {
        v = v * 10 + u16::from(c - b'0');
    }
    Some((v, n))
}

impl fmt::Display for EnhancedStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl core::str::FromStr for EnhancedStatusCode {
    type Err = ValueError;

    /// Parses exactly `class.subject.detail` (e.g. `5.7.1`; surrounding whitespace is
    /// ignored): class 2, 4 or 5, one to three digits each without leading zeros.
    ///
    /// # Errors
    ///
    /// [`ValueError::EnhancedCode`] for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::types::{EnhancedStatusCode, ValueError};
    ///
    /// let e: EnhancedStatusCode = "5.7.1".parse()?;
    /// assert_eq!((e.class(), e.subject(), e.detail()), (5, 7, 1));
    /// assert_eq!(e.to_string(), "5.7.1");
    /// assert_eq!("3.0.0".parse::<EnhancedStatusCode>(), Err(ValueError::EnhancedCode));
    /// assert_eq!("5.1.1 text".parse::<EnhancedStatusCode>(), Err(ValueError::EnhancedCode));
    /// assert_eq!("5.1.01".parse::<EnhancedStatusCode>(), Err(ValueError::EnhancedCode));
    /// # Ok::<(), ValueError>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let b = s.trim().as_bytes();
        match EnhancedStatusCode::parse_prefix(b) {
            Some((code, end)) if end == b.len() => Ok(code),
            _ => Err(ValueError::EnhancedCode),
        }
    }
}

/// A reply: code, optional enhanced status code (repeated on every line on the wire), and one
/// or more text lines.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::types::{EnhancedStatusCode, Reply, ReplyCode};
///
/// let r = Reply::new(ReplyCode::OK, Some(EnhancedStatusCode::new(2, 1, 0)?), "Sender OK")?;
/// let mut wire = Vec::new();
/// r.encode(&mut wire);
/// assert_eq!(wire, b"250 2.1.0 Sender OK\r\n");
/// # Ok::<(), mailbag_smtp_proto::types::ValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    code: ReplyCode,
    enhanced: Option<EnhancedStatusCode>,
    lines: Vec<Cow<'a, str>>,
}

/// Whether `text` may be a reply line's text: RFC 5321's `textstring`
/// (HT and printable ASCII), and UTF-8 beyond ASCII (RFC 6531); no other
/// control character.
pub(crate) fn is_reply_text(text: &[u8]) -> bool {
    !text.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

impl<'a> Reply<'a> {
    /// A one-line reply.
    ///
    /// # Errors
    ///
    /// See [`Reply::multiline`].
    pub fn new(
        code: ReplyCode,
        enhanced: Option<EnhancedStatusCode>,
        text: impl Into<Cow<'a, str>>,
    ) -> Result<Self, ValueError> {
        Reply::multiline(code, enhanced, vec![text.into()])
    }

    /// The longest reply line, CRLF included (RFC 5321 section 4.5.3.1.5).
    pub const MAX_LINE_LEN: usize = 512;

    /// The length of the text's line on the wire, CRLF included.
    fn line_len(enhanced: Option<EnhancedStatusCode>, text: &str) -> usize {
        let digits = |n: u16| {
            if n >= 100 {
                3
            } else if n >= 10 {
                2
            } else {
                1
            }
        };
        let esc = enhanced.map_or(0, |e| 1 + 1 + 1 + digits(e.subject) + 1 + digits(e.detail));
        3 + 1 + esc + text.len() + 2
    }

    /// A reply of several lines (at least one; an empty vector gives one empty line).
    ///
    /// # Errors
    ///
    /// [`ValueError::ReplyTooLong`] for a line that would be longer than
    /// [`Reply::MAX_LINE_LEN`] on the wire (code, enhanced code and CRLF included),
    /// [`ValueError::ReplyText`] for control characters in the text (HT is
    /// text, as RFC 5321's `textstring` has it),
    /// [`ValueError::ClassMismatch`] if the enhanced class differs from the code class,
    /// [`ValueError::AmbiguousText`] if, without an enhanced code, the first line starts like one.
    pub fn multiline(
        code: ReplyCode,
        enhanced: Option<EnhancedStatusCode>,
        mut lines: Vec<Cow<'a, str>>,
    ) -> Result<Self, ValueError> {
        if lines.is_empty() {
            lines.push(Cow::Borrowed(""));
        }
        for l in &lines {
            if !is_reply_text(l.as_bytes()) {
                return Err(ValueError::ReplyText);
            }
            if Reply::line_len(enhanced, l) > Reply::MAX_LINE_LEN {
                return Err(ValueError::ReplyTooLong);
            }
        }
        match enhanced {
            Some(e) if e.class != code.class() => return Err(ValueError::ClassMismatch),
            None if lines
                .first()
                .and_then(|l| EnhancedStatusCode::parse_prefix(l.as_bytes()))
                .is_some_and(|(e, _)| e.class == code.class()) =>
            {
                return Err(ValueError::AmbiguousText);
            }
            _ => {}
        }
        Ok(Reply {
            code,
            enhanced,
            lines,
        })
    }

    pub(crate) fn fixed(
        code: u16,
        enhanced: EnhancedStatusCode,
        text: &'static str,
    ) -> Reply<'static> {
        Reply {
            code: ReplyCode(code),
            enhanced: Some(enhanced),
            lines: vec![Cow::Borrowed(text)],
        }
    }

    pub(crate) fn unchecked(
        code: ReplyCode,
        enhanced: Option<EnhancedStatusCode>,
        lines: Vec<Cow<'a, str>>,
    ) -> Self {
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The reply code.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn enhanced(&self) -> Option<EnhancedStatusCode> {
        self.enhanced
    }

    /// The text lines (without codes).
    pub fn lines(&self) -> &[Cow<'a, str>] {
        &self.lines
    }

    /// The same reply without its enhanced status code (for peers that did not get
    /// ENHANCEDSTATUSCODES advertised).
    pub fn without_enhanced(mut self) -> Self {
        if self.enhanced.take().is_some() {
            // Keep the invariant: the first line must not now look like an enhanced code.
            if let Some(first) = self.lines.first_mut()
                && EnhancedStatusCode::parse_prefix(first.as_bytes())
                    .is_some_and(|(e, _)| e.class == self.code.class())
            {
                *first = Cow::Owned(format!("- {first}"));
            }
        }
        self
    }

    /// Appends the wire form (`ddd-...` continuation lines, `ddd ...` last line, CRLF).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = self.lines.len();
        let mut code = [0u8; 3];
        let c = self.code.0;
        code[0] = b'0' + (c / 100) as u8;
        code[1] = b'0' + (c / 10 % 10) as u8;
        code[2] = b'0' + (c % 10) as u8;
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(&code);
            let last = i + 1 == n;
            match self.enhanced {
                Some(e) => {
                    out.push(if last { b' ' } else { b'-' });
                    write_esc(e, out);
                    if !line.is_empty() {
                        out.push(b' ');
                        out.extend_from_slice(line.as_bytes());
                    }
                }
                None => {
                    if last {
                        if !line.is_empty() {
                            out.push(b' ');
                            out.extend_from_slice(line.as_bytes());
                        }
                    } else {
                        out.push(b'-');
                        out.extend_from_slice(line.as_bytes());
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Reply<'static> {
        Reply {
            code: self.code,
            enhanced: self.enhanced,
            lines: self
                .lines
                .into_iter()
                .map(|l| Cow::Owned(l.into_owned()))
                .collect(),
        }
    }
}

fn write_esc(e: EnhancedStatusCode, out: &mut Vec<u8>) {
    out.push(b'0' + e.class);
    out.push(b'.');
    push_num(e.subject, out);
    out.push(b'.');
    push_num(e.detail, out);
}

pub(crate) fn push_num(v: u16, out: &mut Vec<u8>) {
    push_u64(u64::from(v), out);
}

pub(crate) fn push_u64(mut v: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

// ---------------------------------------------------------------- EHLO capabilities

/// One EHLO keyword line (RFC 5321 section 4.1.1.1 and the extension RFCs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability<'a> {
    /// `PIPELINING` (RFC 2920).
    Pipelining,
    /// `8BITMIME` (RFC 6152).
    EightBitMime,
    /// `SMTPUTF8` (RFC 6531).
    SmtpUtf8,
    /// `SIZE [n]` (RFC 1870); `None` = no number given.
    Size(Option<u64>),
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    EnhancedStatusCodes,
    /// `CHUNKING` (RFC 3030).
    Chunking,
    /// `BINARYMIME` (RFC 3030).
    BinaryMime,
    /// `DSN` (RFC 3461).
    Dsn,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mech...` (RFC 4954).
    Auth(Vec<Mechanism<'a>>),
    /// `REQUIRETLS` (RFC 8689).
    RequireTls,
    /// `VRFY`.
    Vrfy,
    /// `HELP`.
    Help,
    /// Any other keyword with its parameters.
    Other {
        /// The keyword.
        keyword: Cow<'a, str>,
        /// Parameters (space separated on the wire).
        params: Vec<Cow<'a, str>>,
    },
}

impl<'a> Capability<'a> {
    /// Renders the EHLO line text.
    pub fn to_text(&self) -> String {
        match self {
            Capability::Pipelining => "PIPELINING".into(),
            Capability::EightBitMime => "8BITMIME".into(),
            Capability::SmtpUtf8 => "SMTPUTF8".into(),
            Capability::Size(None) => "SIZE".into(),
            Capability::Size(Some(n)) => format!("SIZE {n}"),
            Capability::EnhancedStatusCodes => "ENHANCEDSTATUSCODES".into(),
            Capability::Chunking => "CHUNKING".into(),
            Capability::BinaryMime => "BINARYMIME".into(),
            Capability::Dsn => "DSN".into(),
            Capability::StartTls => "STARTTLS".into(),
            Capability::Auth(m) => {
                let mut s = String::from("AUTH");
                for m in m {
                    s.push(' ');
                    s.push_str(m.as_str());
                }
                s
            }
            Capability::RequireTls => "REQUIRETLS".into(),
            Capability::Vrfy => "VRFY".into(),
            Capability::Help => "HELP".into(),
            Capability::Other { keyword, params } => {
                let mut s = keyword.to_string();
                for p in params {
                    s.push(' ');
                    s.push_str(p);
                }
                s
            }
        }
    }

    /// Parses one EHLO line text (after the `250-`/`250 `).
    pub fn parse(line: &'a str) -> Option<Capability<'a>> {
        let mut parts = line.split(' ').filter(|s| !s.is_empty());
        let kw = parts.next()?;
        if !is_esmtp_keyword(kw.as_bytes()) {
            return None;
        }
        let up = kw.to_ascii_uppercase();
        let rest: Vec<&'a str> = parts.collect();
        let simple = |c: Capability<'a>| if rest.is_empty() { Some(c) } else { None };
        let cap = match up.as_str() {
            "PIPELINING" => simple(Capability::Pipelining),
            "8BITMIME" => simple(Capability::EightBitMime),
            "SMTPUTF8" => simple(Capability::SmtpUtf8),
            "ENHANCEDSTATUSCODES" => simple(Capability::EnhancedStatusCodes),
            "CHUNKING" => simple(Capability::Chunking),
            "BINARYMIME" => simple(Capability::BinaryMime),
            "DSN" => simple(Capability::Dsn),
            "STARTTLS" => simple(Capability::StartTls),
            "REQUIRETLS" => simple(Capability::RequireTls),
            "VRFY" => simple(Capability::Vrfy),
            "HELP" => simple(Capability::Help),
            "SIZE" => match rest.as_slice() {
                [] => Some(Capability::Size(None)),
                [n] if !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()) => {
                    Some(Capability::Size(Some(n.parse().unwrap_or(u64::MAX))))
                }
                _ => None,
            },
            "AUTH" => rest
                .iter()
                .map(|m| Mechanism::from_wire(m.as_bytes()))
                .collect::<Option<Vec<_>>>()
                .map(Capability::Auth),
            _ => None,
        };
        // Keywords are case-insensitive (RFC 5321 section 2.4) and the parameters are split on
        // any run of spaces, so `starttls` and `SIZE  10` are the known capabilities (their
        // output is the canonical `STARTTLS`, `SIZE 10`). A known keyword whose parameters do
        // not fit (`SIZE ten`) is kept as Other, as written.
        match cap {
            Some(c) => Some(c),
            None => Some(Capability::Other {
                keyword: Cow::Borrowed(kw),
                params: rest.into_iter().map(Cow::Borrowed).collect(),
            }),
        }
    }

    /// Converts into an owned value with a `'static` lifetime.
    pub fn into_owned(self) -> Capability<'static> {
        match self {
            Capability::Pipelining => Capability::Pipelining,
            Capability::EightBitMime => Capability::EightBitMime,
            Capability::SmtpUtf8 => Capability::SmtpUtf8,
            Capability::Size(n) => Capability::Size(n),
            Capability::EnhancedStatusCodes => Capability::EnhancedStatusCodes,
            Capability::Chunking => Capability::Chunking,
            Capability::BinaryMime => Capability::BinaryMime,
            Capability::Dsn => Capability::Dsn,
            Capability::StartTls => Capability::StartTls,
            Capability::Auth(m) => {
                Capability::Auth(m.into_iter().map(Mechanism::into_owned).collect())
            }
            Capability::RequireTls => Capability::RequireTls,
            Capability::Vrfy => Capability::Vrfy,
            Capability::Help => Capability::Help,
            Capability::Other { keyword, params } => Capability::Other {
                keyword: Cow::Owned(keyword.into_owned()),
                params: params
                    .into_iter()
                    .map(|p| Cow::Owned(p.into_owned()))
                    .collect(),
            },
        }
    }
}

/// A parsed EHLO reply: the server's name line and its capabilities.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::codec::ReplyParser;
/// use mailbag_smtp_proto::types::{Capability, EhloReply};
///
/// let wire = b"250-mx.example.org hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
/// let (reply, _) = ReplyParser::default().parse(wire)?.expect("complete");
/// let ehlo = EhloReply::from_reply(&reply).expect("250");
/// assert!(ehlo.capabilities.contains(&Capability::Size(Some(1000))));
/// # Ok::<(), mailbag_smtp_proto::codec::ReplyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EhloReply<'a> {
    /// The first line: server name and greeting text (trailing blanks removed).
    pub greeting: Cow<'a, str>,
    /// The capabilities, in order.
    pub capabilities: Vec<Capability<'a>>,
}

impl<'a> EhloReply<'a> {
    /// An EHLO reply of `greeting` (the first line: server name and text)
    /// and `capabilities`, in order.
    pub fn new(greeting: impl Into<Cow<'a, str>>, capabilities: Vec<Capability<'a>>) -> Self {
        EhloReply {
            greeting: greeting.into(),
            capabilities,
        }
    }

    /// Interprets a 250 reply; `None` for any other code.
    pub fn from_reply(reply: &'a Reply<'_>) -> Option<EhloReply<'a>> {
        if reply.code != ReplyCode::OK {
            return None;
        }
        let (first, rest) = reply.lines.split_first()?;
        // RFC 2034 excludes EHLO replies from enhanced status codes, so text on the first
        // line that merely looks like one (`250 2.0.0 mx.example`) belongs to the greeting.
        // Trailing blanks are not kept: a code-like greeting followed by a
        // blank (`250 2.0.0 `) parses as the code with empty text, so the
        // blank could not survive a round trip.
        let blank = |c: char| c == ' ' || c == '\t';
        let greeting = match reply.enhanced {
            None => Cow::Borrowed(first.as_ref().trim_end_matches(blank)),
            Some(code) if first.trim_end_matches(blank).is_empty() => Cow::Owned(code.to_string()),
            Some(code) => Cow::Owned(format!("{code} {}", first.trim_end_matches(blank))),
        };
        Some(EhloReply {
            greeting,
            capabilities: rest.iter().filter_map(|l| Capability::parse(l)).collect(),
        })
    }

    /// Builds the 250 reply (no enhanced code: RFC 2034 excludes EHLO replies).
    ///
    /// # Errors
    ///
    /// [`ValueError::ReplyText`] when the greeting or a capability's text
    /// holds a control character (a CR or LF would add reply lines),
    /// [`ValueError::ReplyTooLong`] when a line would be longer than
    /// [`Reply::MAX_LINE_LEN`].
    ///
    /// ```
    /// use mailbag_smtp_proto::types::{Capability, EhloReply, ValueError};
    ///
    /// let ehlo = EhloReply::new("mx.example.net", vec![Capability::Pipelining]);
    /// assert_eq!(ehlo.to_reply().unwrap().lines().len(), 2);
    /// let injected = EhloReply::new("mx.example.net\r\n250 AUTH PLAIN", vec![]);
    /// assert_eq!(injected.to_reply().unwrap_err(), ValueError::ReplyText);
    /// ```
    pub fn to_reply(&self) -> Result<Reply<'static>, ValueError> {
        let mut lines: Vec<Cow<'static, str>> = Vec::with_capacity(1 + self.capabilities.len());
        lines.push(Cow::Owned(self.greeting.to_string()));
        for c in &self.capabilities {
            lines.push(Cow::Owned(c.to_text()));
        }
        if lines.iter().any(|l| !is_reply_text(l.as_bytes())) {
            return Err(ValueError::ReplyText);
        }
        if lines
            .iter()
            .any(|l| Reply::line_len(None, l) > Reply::MAX_LINE_LEN)
        {
            return Err(ValueError::ReplyTooLong);
        }
        // Not `Reply::multiline`: a greeting that looks like an enhanced code
        // is the greeting here (RFC 2034 excludes EHLO replies).
        Ok(Reply::unchecked(ReplyCode::OK, None, lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn ehlo_greeting_that_looks_like_an_enhanced_code_round_trips() {
        use crate::codec::ReplyParser;
        let parser = ReplyParser::default();
        for wire in [
            &b"250 2.00.0 2.15.8\r\n"[..],
            b"250 2.1.5\r\n",
            // Found by the smtp_reply fuzz target: a lone line "2.252.053" was read as code
            // 2.252.53 once it stood alone in the re-encoded reply.
            b"250-2.252.053\r\n250\r\n",
            b"250-2.0.0\r\n250 \r\n",
            b"250-2.0.0 mx.example\r\n250 2.0.0 SIZE 10\r\n",
            // Found by the fuzz target in a CI run: a code-like first line with a
            // trailing blank ("2.142.0 ") lost the blank once it stood alone.
            b"250-2.142.0 \r\n250 4.142.5 24\r\n",
            b"250 mx.example \r\n",
        ] {
            let (reply, _) = parser.parse(wire).unwrap().unwrap();
            let ehlo = EhloReply::from_reply(&reply).unwrap();
            let mut w = Vec::new();
            ehlo.to_reply().unwrap().encode(&mut w);
            let (back, _) = parser.parse(&w).unwrap().unwrap();
            assert_eq!(EhloReply::from_reply(&back), Some(ehlo), "{wire:?}");
        }
        let (reply, _) = parser.parse(b"250 2.00.0 2.15.8\r\n").unwrap().unwrap();
        assert_eq!(reply.enhanced(), None, "leading zeros: text, not a code");
        assert_eq!(
            EhloReply::from_reply(&reply).unwrap().greeting,
            "2.00.0 2.15.8"
        );
        let (reply, _) = parser.parse(b"250 2.0.0 2.15.8\r\n").unwrap().unwrap();
        assert_eq!(
            EhloReply::from_reply(&reply).unwrap().greeting,
            "2.0.0 2.15.8"
        );
    }

    #[test]
    fn xtext_round_trip() {
        for s in ["", "plain", "a+b=c", "sp ace", "ü"] {
            let x = XText::new(s);
            let mut w = Vec::new();
            x.encode(&mut w);
            if s.is_empty() {
                assert!(XText::from_wire(&w).is_none());
                continue;
            }
            assert_eq!(XText::from_wire(&w).unwrap(), x, "{s}");
        }
        assert!(XText::from_wire(b"a+2").is_none());
        assert!(XText::from_wire(b"a=b").is_none());
        assert_eq!(XText::from_wire(b"+41").unwrap().as_str(), "A");
    }

    #[test]
    fn reply_validation() {
        assert_eq!(ReplyCode::try_from(199), Err(ValueError::ReplyCode));
        assert_eq!(ReplyCode::try_from(600), Err(ValueError::ReplyCode));
        let e = EnhancedStatusCode::new(5, 1, 1).unwrap();
        assert_eq!(
            Reply::new(ReplyCode::OK, Some(e), "x"),
            Err(ValueError::ClassMismatch)
        );
        assert_eq!(
            Reply::new(ReplyCode::OK, None, "a\r\nb"),
            Err(ValueError::ReplyText)
        );
        // RFC 5321 `textstring`: HT is text; ESC, DEL and NUL are not.
        assert!(Reply::new(ReplyCode::OK, None, "a\tb").is_ok());
        for bad in ["a\x1bb", "a\x7fb", "a\0b"] {
            assert_eq!(
                Reply::new(ReplyCode::OK, None, bad),
                Err(ValueError::ReplyText)
            );
        }
        assert_eq!(
            Reply::new(ReplyCode::OK, None, "2.0.0 x"),
            Err(ValueError::AmbiguousText)
        );
        assert!(Reply::new(ReplyCode::OK, None, "5.0.0 x").is_ok());
    }

    #[test]
    fn reply_encoding() {
        let r =
            Reply::multiline(ReplyCode::OK, None, vec!["a".into(), "".into(), "c".into()]).unwrap();
        let mut w = Vec::new();
        r.encode(&mut w);
        assert_eq!(w, b"250-a\r\n250-\r\n250 c\r\n");
        let r = Reply::new(ReplyCode::OK, None, "").unwrap();
        w.clear();
        r.encode(&mut w);
        assert_eq!(w, b"250\r\n");
    }

    #[test]
    fn notify_and_priority() {
        assert!(Notify::new(false, false, false).is_none());
        let n = Notify::new(true, false, true).unwrap();
        assert!(n.success() && !n.failure() && n.delay() && !n.is_never());
        assert!(MtPriority::try_from(10).is_err());
        assert_eq!(MtPriority::try_from(-9).unwrap().get(), -9);
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::try_from("c2VjcmV0").unwrap();
        assert!(!format!("{s:?}").contains("c2Vj"));
        assert!(Secret::try_from("not base64!").is_err());
    }

    #[test]
    fn capability_round_trip() {
        for t in [
            "PIPELINING",
            "SIZE 10240000",
            "SIZE",
            "AUTH PLAIN LOGIN",
            "X-FOO bar baz",
            "x-foo Bar",
            "SIZE ten",
            "PIPELINING now",
        ] {
            let c = Capability::parse(t).unwrap();
            assert_eq!(c.to_text(), t);
        }
        assert_eq!(Capability::parse("SIZE 5"), Some(Capability::Size(Some(5))));
        // Keywords are case-insensitive; spacing is not part of the value.
        assert_eq!(Capability::parse("starttls"), Some(Capability::StartTls));
        assert_eq!(
            Capability::parse("pipelining"),
            Some(Capability::Pipelining)
        );
        assert_eq!(
            Capability::parse(" Size  5"),
            Some(Capability::Size(Some(5)))
        );
        assert_eq!(
            Capability::parse("auth plain"),
            Some(Capability::Auth(vec![Mechanism::PLAIN]))
        );
        assert_eq!(Capability::parse(""), None);
    }

    #[test]
    fn xtext_decoding() {
        // The server's former `decode_xtext` cases.
        let d = |s: &str| XText::parse(s).ok().map(|x| x.as_str().to_owned());
        assert_eq!(d("a+2Bb+3Dc").as_deref(), Some("a+b=c"));
        assert_eq!(d("plain").as_deref(), Some("plain"));
        assert_eq!(d("bad+2"), None);
        assert_eq!(d("bad+zz"), None);
        // Not xtext: empty, a bare `=`, space, non-ASCII, bytes that are not UTF-8.
        for bad in ["", "a=b", "a b", "é", "+FF", "+C3"] {
            assert_eq!(XText::parse(bad), Err(ValueError::XText), "{bad:?}");
        }
        assert_eq!(d("+C3+A9").as_deref(), Some("é"));
        assert!(matches!(
            XText::parse("plain").map(|x| x.0),
            Ok(Cow::Borrowed(_))
        ));
        let owned: XText<'static> = "x+2By".parse().unwrap();
        assert_eq!(owned.as_str(), "x+y");
    }

    #[test]
    fn enhanced_code_in_text() {
        let find = |s: &str| EnhancedStatusCode::find_in(s).map(|(e, n)| (e.to_string(), n));
        assert_eq!(find("550 5.1.1 no such user"), Some(("5.1.1".into(), 9)));
        assert_eq!(find("550-5.1.1 no such user"), Some(("5.1.1".into(), 9)));
        assert_eq!(find("  5.1.10 null MX"), Some(("5.1.10".into(), 8)));
        assert_eq!(find("5.4.7\tmessage expired"), Some(("5.4.7".into(), 5)));
        assert_eq!(
            find("5.4.7 message expired; last error: 451 4.4.1 refused"),
            Some(("5.4.7".into(), 5))
        );
        assert_eq!(find("250 2.0.0"), Some(("2.0.0".into(), 9)));
        for none in [
            "",
            "554 no enhanced code",
            "550 4.4.1 mismatch",
            "550 5.1.1; no",
            "5.1",
            "5.1.1000",
            "3.1.1 x",
            "600 5.1.1",
            "550  5.1.1",
            "connection refused",
        ] {
            assert_eq!(find(none), None, "{none:?}");
        }
        assert_eq!(
            "5.1.1".parse::<EnhancedStatusCode>().map(|e| e.to_string()),
            Ok("5.1.1".into())
        );
        for bad in ["", "5.1", "5.1.1.1", "5.01234.1", "x.1.1", "6.0.0"] {
            assert_eq!(
                bad.parse::<EnhancedStatusCode>(),
                Err(ValueError::EnhancedCode),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn xtext_encode_parse_round_trip(s in "\\PC{1,40}") {
            let wire = XText::new(s.as_str()).to_wire();
            proptest::prop_assert!(wire.bytes().all(|b| (33..=126).contains(&b) && b != b'='));
            let back = XText::parse(&wire).unwrap();
            proptest::prop_assert_eq!(back.as_str(), s.as_str());
            proptest::prop_assert_eq!(back.to_wire(), wire);
        }

        #[test]
        fn xtext_parse_never_panics(s in "[ -~]{0,30}") {
            if let Ok(x) = XText::parse(&s) {
                // The canonical form decodes to the same value.
                let canon = x.to_wire();
                let again = XText::parse(&canon).unwrap();
                proptest::prop_assert_eq!(again.as_str(), x.as_str());
            }
        }

        #[test]
        fn enhanced_code_round_trip(c in proptest::sample::select(vec![2u8, 4, 5]), s in 0u16..1000, d in 0u16..1000, code in 200u16..600) {
            let e = EnhancedStatusCode::new(c, s, d).unwrap();
            proptest::prop_assert_eq!(e.to_string().parse::<EnhancedStatusCode>(), Ok(e));
            let line = format!("{code} {e} text");
            let found = EnhancedStatusCode::find_in(&line);
            if u16::from(c) == code / 100 {
                proptest::prop_assert_eq!(found, Some((e, 4 + e.to_string().len())));
            } else {
                proptest::prop_assert_eq!(found, None);
            }
        }
    }
}
