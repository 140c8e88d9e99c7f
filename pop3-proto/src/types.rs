//! POP3 protocol values: commands, responses, response codes, capabilities,
//! message numbers, unique ids and secrets.
//!
//! Every type here holds only values that can be put on the wire: the
//! validated newtypes have private fields and are built with `TryFrom` (or a
//! checked constructor), so an encoder can never emit a CR, LF or NUL that
//! the caller smuggled in. Types that borrow from a parsed line carry a
//! lifetime and offer `into_owned()`.

use alloc::string::String;
use alloc::vec::Vec;

use alloc::borrow::Cow;
use core::fmt;
use core::num::NonZeroU32;

/// A value that failed validation (returned by the `TryFrom` impls and checked
/// constructors of this module).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct ValidationError {
    what: &'static str,
    why: &'static str,
}

impl ValidationError {
    pub(crate) const fn new(what: &'static str, why: &'static str) -> Self {
        Self { what, why }
    }

    /// The kind of value that was rejected, e.g. `"unique id"`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Why it was rejected, e.g. `"longer than 70 octets"`.
    pub fn why(&self) -> &'static str {
        self.why
    }
}

/// A secret (password, SASL data) whose `Debug` output is redacted.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::Secret;
///
/// let s = Secret::new("hunter2".to_string());
/// assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Gives access to the secret value. Use it only where the secret is needed.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A message number: 1-based, fixed for the whole session (RFC 1939 section 4).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::MessageNumber;
///
/// let n = MessageNumber::try_from(3).unwrap();
/// assert_eq!(n.get(), 3);
/// assert_eq!(n.index(), 2);
/// assert!(MessageNumber::try_from(0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageNumber(NonZeroU32);

impl MessageNumber {
    /// Message number `n`, or `None` for 0.
    pub const fn new(n: u32) -> Option<Self> {
        match NonZeroU32::new(n) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The number of the message at 0-based position `index` in the maildrop
    /// listing, or `None` if it does not fit in a `u32`.
    pub fn from_index(index: usize) -> Option<Self> {
        let n = u32::try_from(index.checked_add(1)?).ok()?;
        Self::new(n)
    }

    /// The number as an integer (at least 1).
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The 0-based position in the maildrop listing.
    pub fn index(self) -> usize {
        // u32 always fits in usize on the 32- and 64-bit targets we support.
        (self.0.get() - 1) as usize
    }
}

impl TryFrom<u32> for MessageNumber {
    type Error = ValidationError;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Self::new(n).ok_or(ValidationError::new("message number", "must be at least 1"))
    }
}

impl fmt::Display for MessageNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! cow_newtype_common {
    ($name:ident) => {
        impl<'a> $name<'a> {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Converts into a value that owns its data.
            pub fn into_owned(self) -> $name<'static> {
                $name(Cow::Owned(self.0.into_owned()))
            }
        }

        impl<'a> TryFrom<&'a str> for $name<'a> {
            type Error = ValidationError;
            fn try_from(s: &'a str) -> Result<Self, Self::Error> {
                Self::validate(s)?;
                Ok(Self(Cow::Borrowed(s)))
            }
        }

        impl TryFrom<String> for $name<'static> {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::validate(&s)?;
                Ok(Self(Cow::Owned(s)))
            }
        }

        impl<'a> TryFrom<Cow<'a, str>> for $name<'a> {
            type Error = ValidationError;
            fn try_from(s: Cow<'a, str>) -> Result<Self, Self::Error> {
                Self::validate(&s)?;
                Ok(Self(s))
            }
        }

        impl AsRef<str> for $name<'_> {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

macro_rules! cow_newtype_display {
    ($name:ident) => {
        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// The longest unique id RFC 1939 section 7 allows, in octets.
pub const MAX_UID_LEN: usize = 70;

/// A unique-id listing value (UIDL): 1 to 70 characters in 0x21..=0x7E
/// (RFC 1939 section 7).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::Uid;
///
/// let uid = Uid::try_from("whqtswO00WBw418f9t5JxYwZ").unwrap();
/// assert_eq!(uid.as_str(), "whqtswO00WBw418f9t5JxYwZ");
/// assert!(Uid::try_from("has space").is_err());
/// assert!(Uid::try_from("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid<'a>(Cow<'a, str>);

impl Uid<'_> {
    fn validate(s: &str) -> Result<(), ValidationError> {
        const W: &str = "unique id";
        if s.is_empty() {
            return Err(ValidationError::new(W, "empty"));
        }
        if s.len() > MAX_UID_LEN {
            return Err(ValidationError::new(W, "longer than 70 octets"));
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ValidationError::new(W, "octet outside 0x21..=0x7E"));
        }
        Ok(())
    }
}
cow_newtype_common!(Uid);
cow_newtype_common!(UserName);
cow_newtype_common!(Mechanism);
cow_newtype_common!(Language);
cow_newtype_common!(Text);
cow_newtype_common!(OtherCode);
cow_newtype_common!(Atom);
cow_newtype_display!(Uid);
cow_newtype_display!(UserName);
cow_newtype_display!(Mechanism);
cow_newtype_display!(Language);
cow_newtype_display!(Text);
cow_newtype_display!(OtherCode);
cow_newtype_display!(Atom);

/// The longest user name accepted, in octets.
pub const MAX_USER_NAME_LEN: usize = 255;

fn is_ctl(c: char) -> bool {
    c.is_control()
}

/// A user name (USER, APOP, or decoded from SASL): 1 to 255 octets of UTF-8
/// with no space and no control character.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::UserName;
///
/// assert!(UserName::try_from("joe@example.test").is_ok());
/// assert!(UserName::try_from("jo e").is_err());
/// assert!(UserName::try_from("joe\r\nQUIT").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName<'a>(Cow<'a, str>);

impl UserName<'_> {
    fn validate(s: &str) -> Result<(), ValidationError> {
        const W: &str = "user name";
        if s.is_empty() {
            return Err(ValidationError::new(W, "empty"));
        }
        if s.len() > MAX_USER_NAME_LEN {
            return Err(ValidationError::new(W, "longer than 255 octets"));
        }
        if s.chars().any(|c| c == ' ' || is_ctl(c)) {
            return Err(ValidationError::new(
                W,
                "contains a space or control character",
            ));
        }
        Ok(())
    }
}

/// A password (PASS, or decoded from SASL). It may contain spaces (RFC 1939
/// section 7 lets the server take the rest of the line) and TABs (password
/// tools take them, and SASL PLAIN forbids only NUL), but no other control
/// character. `Debug` is redacted.
///
/// A password is octets, not text: RFC 1939 gives the argument no charset,
/// and clients set up for a legacy charset send theirs (Latin-1, for
/// one). Octets that are not UTF-8 are kept as sent; [`Password::as_str`]
/// tells whether they are UTF-8. Only their ASCII control octets are
/// refused (in text that is UTF-8, every control character).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::Password;
///
/// let p = Password::try_from("correct horse battery staple").unwrap();
/// assert_eq!(p.expose(), b"correct horse battery staple");
/// assert_eq!(p.as_str(), Some("correct horse battery staple"));
/// assert_eq!(format!("{p:?}"), "Password(<redacted>)");
/// assert!(Password::try_from("a\tb").is_ok());
/// assert!(Password::try_from("a\nb").is_err());
/// assert!(Password::try_from("a\0b").is_err());
/// // "grün" as a Latin-1 client sends it.
/// let latin1 = Password::try_from(&b"gr\xfcn"[..]).unwrap();
/// assert_eq!(latin1.expose(), b"gr\xfcn");
/// assert_eq!(latin1.as_str(), None);
/// assert!(Password::try_from(&b"\xfc\r"[..]).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Password<'a>(Cow<'a, [u8]>);

impl Password<'_> {
    fn validate(b: &[u8]) -> Result<(), ValidationError> {
        let bad = match core::str::from_utf8(b) {
            Ok(s) => s.chars().any(|c| is_ctl(c) && c != '\t'),
            Err(_) => b.iter().any(|&c| c.is_ascii_control() && c != b'\t'),
        };
        if bad {
            return Err(ValidationError::new(
                "password",
                "contains a control character",
            ));
        }
        Ok(())
    }

    /// The password octets. Use them only to check the password.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The password as text, if its octets are UTF-8. Use it only to check
    /// the password.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.0).ok()
    }

    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> Password<'static> {
        Password(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a [u8]> for Password<'a> {
    type Error = ValidationError;
    fn try_from(b: &'a [u8]) -> Result<Self, Self::Error> {
        Self::validate(b)?;
        Ok(Self(Cow::Borrowed(b)))
    }
}

impl TryFrom<Vec<u8>> for Password<'static> {
    type Error = ValidationError;
    fn try_from(b: Vec<u8>) -> Result<Self, Self::Error> {
        Self::validate(&b)?;
        Ok(Self(Cow::Owned(b)))
    }
}

impl<'a> TryFrom<&'a str> for Password<'a> {
    type Error = ValidationError;
    fn try_from(s: &'a str) -> Result<Self, Self::Error> {
        Self::try_from(s.as_bytes())
    }
}

impl TryFrom<String> for Password<'static> {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::try_from(s.into_bytes())
    }
}

impl fmt::Debug for Password<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An APOP digest: 32 hexadecimal digits, stored in lower case
/// (RFC 1939 section 7).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::ApopDigest;
///
/// // The example of RFC 1939 section 7.
/// let d = ApopDigest::compute("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf");
/// assert_eq!(d.as_str(), "c4c9334bac560ecc979e58001b3e22fb");
/// assert_eq!(ApopDigest::try_from("C4C9334BAC560ECC979E58001B3E22FB").unwrap(), d);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApopDigest([u8; 32]);

impl ApopDigest {
    /// Computes the digest of `timestamp` (with its angle brackets) followed by
    /// the shared secret.
    pub fn compute(timestamp: &str, secret: &str) -> Self {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update(timestamp.as_bytes());
        h.update(secret.as_bytes());
        let sum = h.finalize();
        let mut out = [0u8; 32];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in out.chunks_exact_mut(2).zip(sum.iter()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(out)
    }

    /// Whether this digest matches `timestamp` and `secret` (constant-time compare).
    pub fn verify(&self, timestamp: &str, secret: &str) -> bool {
        let expected = Self::compute(timestamp, secret);
        expected
            .0
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The digest as 32 lower-case hexadecimal digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl TryFrom<&str> for ApopDigest {
    type Error = ValidationError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let b = s.as_bytes();
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| ValidationError::new("APOP digest", "not 32 characters"))?;
        if !arr.iter().all(u8::is_ascii_hexdigit) {
            return Err(ValidationError::new("APOP digest", "not hexadecimal"));
        }
        Ok(Self(arr.map(|c| c.to_ascii_lowercase())))
    }
}

/// Redacted: with the greeting's timestamp a digest is a dictionary attack
/// away from the password.
impl fmt::Debug for ApopDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApopDigest(<redacted>)")
    }
}

/// The longest SASL mechanism name (RFC 4422 section 3.1), in octets.
pub const MAX_MECHANISM_LEN: usize = 20;

/// A SASL mechanism name: 1 to 20 characters of `A-Z 0-9 - _`, stored in
/// upper case (names are case-insensitive).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::Mechanism;
///
/// let m = Mechanism::try_from("SCRAM-SHA-256").unwrap();
/// assert_eq!(m.as_str(), "SCRAM-SHA-256");
/// assert_eq!(Mechanism::parse_any_case("plain").unwrap(), Mechanism::PLAIN);
/// assert!(Mechanism::try_from("plain").is_err()); // use parse_any_case
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mechanism<'a>(Cow<'a, str>);

impl<'a> Mechanism<'a> {
    /// SASL PLAIN (RFC 4616).
    pub const PLAIN: Mechanism<'static> = Mechanism(Cow::Borrowed("PLAIN"));
    /// SASL LOGIN (draft-murchison-sasl-login).
    pub const LOGIN: Mechanism<'static> = Mechanism(Cow::Borrowed("LOGIN"));

    fn validate(s: &str) -> Result<(), ValidationError> {
        const W: &str = "SASL mechanism";
        if s.is_empty() || s.len() > MAX_MECHANISM_LEN {
            return Err(ValidationError::new(W, "not 1 to 20 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ValidationError::new(W, "character outside A-Z 0-9 - _"));
        }
        Ok(())
    }

    /// Accepts a name in any case and normalises it to upper case (borrowing
    /// when it already is).
    pub fn parse_any_case(s: &'a str) -> Result<Self, ValidationError> {
        if s.bytes().any(|b| b.is_ascii_lowercase()) {
            Mechanism::try_from(s.to_ascii_uppercase())
        } else {
            Mechanism::try_from(s)
        }
    }
}

/// A language tag for the LANG command (RFC 6856 section 3): 1 to 64
/// characters of ASCII letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Language<'a>(Cow<'a, str>);

impl Language<'_> {
    fn validate(s: &str) -> Result<(), ValidationError> {
        if s.is_empty() || s.len() > 64 {
            return Err(ValidationError::new(
                "language tag",
                "not 1 to 64 characters",
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ValidationError::new(
                "language tag",
                "character outside A-Z a-z 0-9 -",
            ));
        }
        Ok(())
    }
}

/// Free text of a response line or of a capability: UTF-8 without control
/// characters. It may be empty.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::Text;
///
/// assert!(Text::try_from("Logged in.").is_ok());
/// assert!(Text::try_from("two\r\nlines").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    fn validate(s: &str) -> Result<(), ValidationError> {
        if s.chars().any(is_ctl) {
            return Err(ValidationError::new("text", "contains a control character"));
        }
        Ok(())
    }

    /// The empty text.
    pub const EMPTY: Text<'static> = Text(Cow::Borrowed(""));

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An extension response code not known to this crate, e.g. `XFOO/BAR`:
/// 1 to 64 characters in 0x21..=0x7E except `[` and `]`, not one of the
/// codes [`ResponseCode`] names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtherCode<'a>(Cow<'a, str>);

impl OtherCode<'_> {
    fn validate(s: &str) -> Result<(), ValidationError> {
        const W: &str = "response code";
        if s.is_empty() || s.len() > 64 {
            return Err(ValidationError::new(W, "not 1 to 64 characters"));
        }
        if !s
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'[' && b != b']')
        {
            return Err(ValidationError::new(
                W,
                "character outside 0x21..=0x7E or a bracket",
            ));
        }
        if ResponseCode::known(s).is_some() {
            return Err(ValidationError::new(W, "a known code: use its variant"));
        }
        Ok(())
    }
}

/// An RFC 2449 / 3206 / 6856 response code, the bracketed word after
/// `+OK`/`-ERR` (advertised with the `RESP-CODES` capability).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode<'a> {
    /// `[IN-USE]`: authenticated, but the maildrop is locked (RFC 2449 section 8.1.1).
    InUse,
    /// `[LOGIN-DELAY]`: logging in too soon after the last login (RFC 2449 section 8.1.2).
    LoginDelay,
    /// `[SYS/TEMP]`: temporary system problem (RFC 3206 section 4).
    SysTemp,
    /// `[SYS/PERM]`: permanent system problem (RFC 3206 section 4).
    SysPerm,
    /// `[AUTH]`: the credentials are wrong (RFC 3206 section 5).
    Auth,
    /// `[UTF8]`: the message needs UTF-8 mode (RFC 6856 section 5).
    Utf8,
    /// Any other code.
    Other(OtherCode<'a>),
}

impl<'a> ResponseCode<'a> {
    pub(crate) fn known(s: &str) -> Option<ResponseCode<'static>> {
        Some(match s.to_ascii_uppercase().as_str() {
            "IN-USE" => ResponseCode::InUse,
            "LOGIN-DELAY" => ResponseCode::LoginDelay,
            "SYS/TEMP" => ResponseCode::SysTemp,
            "SYS/PERM" => ResponseCode::SysPerm,
            "AUTH" => ResponseCode::Auth,
            "UTF8" => ResponseCode::Utf8,
            _ => return None,
        })
    }

    /// Reads a code (the text between the brackets), case-insensitively for
    /// the known codes.
    pub fn parse(s: &'a str) -> Result<Self, ValidationError> {
        match Self::known(s) {
            Some(c) => Ok(c),
            None => Ok(ResponseCode::Other(OtherCode::try_from(s)?)),
        }
    }

    /// The code as written on the wire, without brackets.
    pub fn as_str(&self) -> &str {
        match self {
            ResponseCode::InUse => "IN-USE",
            ResponseCode::LoginDelay => "LOGIN-DELAY",
            ResponseCode::SysTemp => "SYS/TEMP",
            ResponseCode::SysPerm => "SYS/PERM",
            ResponseCode::Auth => "AUTH",
            ResponseCode::Utf8 => "UTF8",
            ResponseCode::Other(o) => o.as_str(),
        }
    }

    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> ResponseCode<'static> {
        match self {
            ResponseCode::InUse => ResponseCode::InUse,
            ResponseCode::LoginDelay => ResponseCode::LoginDelay,
            ResponseCode::SysTemp => ResponseCode::SysTemp,
            ResponseCode::SysPerm => ResponseCode::SysPerm,
            ResponseCode::Auth => ResponseCode::Auth,
            ResponseCode::Utf8 => ResponseCode::Utf8,
            ResponseCode::Other(o) => ResponseCode::Other(o.into_owned()),
        }
    }
}

/// If `text` starts with a response code (`[CODE]` followed by the end or a
/// space), returns the code and the text after it.
pub(crate) fn response_code_prefix(text: &str) -> Option<(ResponseCode<'_>, &str)> {
    let inner_and_rest = text.strip_prefix('[')?;
    let close = inner_and_rest.find(']')?;
    let code = ResponseCode::parse(inner_and_rest.get(..close)?).ok()?;
    let after = inner_and_rest.get(close + 1..)?;
    if after.is_empty() {
        Some((code, after))
    } else {
        Some((code, after.strip_prefix(' ')?))
    }
}

/// A status indicator: `+OK` or `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `+OK`
    Ok,
    /// `-ERR`
    Err,
}

/// A single status line: `+OK`/`-ERR`, an optional response code, and text.
///
/// The constructor refuses a value that would read back differently: with no
/// code, a text that starts like a response code (`[AUTH] ...`).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::types::{ResponseCode, StatusResponse};
///
/// let r = StatusResponse::err(Some(ResponseCode::Auth), "Authentication failed.").unwrap();
/// assert_eq!(r.to_string(), "-ERR [AUTH] Authentication failed.");
/// assert!(StatusResponse::ok("[AUTH] sneaky").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusResponse<'a> {
    status: Status,
    code: Option<ResponseCode<'a>>,
    text: Text<'a>,
}

impl<'a> StatusResponse<'a> {
    /// Builds a status line; see the type's documentation for what is refused.
    pub fn new(
        status: Status,
        code: Option<ResponseCode<'a>>,
        text: impl Into<Cow<'a, str>>,
    ) -> Result<Self, ValidationError> {
        let text = Text::try_from(text.into())?;
        if code.is_none() && response_code_prefix(text.as_str()).is_some() {
            return Err(ValidationError::new(
                "status text",
                "starts like a response code but no code was given",
            ));
        }
        Ok(Self { status, code, text })
    }

    /// `+OK text` with no code.
    pub fn ok(text: impl Into<Cow<'a, str>>) -> Result<Self, ValidationError> {
        Self::new(Status::Ok, None, text)
    }

    /// `-ERR [code] text`.
    pub fn err(
        code: Option<ResponseCode<'a>>,
        text: impl Into<Cow<'a, str>>,
    ) -> Result<Self, ValidationError> {
        Self::new(Status::Err, code, text)
    }

    pub(crate) fn from_parts(
        status: Status,
        code: Option<ResponseCode<'a>>,
        text: Text<'a>,
    ) -> Self {
        Self { status, code, text }
    }

    /// `+OK` or `-ERR`.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether this is `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The response code, if any.
    pub fn code(&self) -> Option<&ResponseCode<'a>> {
        self.code.as_ref()
    }

    /// The text after the status (and code).
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// The APOP timestamp of a greeting (RFC 1939 section 7): the last
    /// `<...@...>` word in the text, brackets included.
    ///
    /// ```
    /// use mailbag_pop3_proto::types::StatusResponse;
    ///
    /// let g = StatusResponse::ok("POP3 server ready <1896.697170952@dbc.mtview.ca.us>").unwrap();
    /// assert_eq!(g.apop_timestamp(), Some("<1896.697170952@dbc.mtview.ca.us>"));
    /// ```
    pub fn apop_timestamp(&self) -> Option<&str> {
        let t = self.text.as_str();
        let end = t.rfind('>')?;
        let start = t[..end].rfind('<')?;
        let ts = &t[start..=end];
        (ts.contains('@') && !ts.contains(' ')).then_some(ts)
    }

    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> StatusResponse<'static> {
        StatusResponse {
            status: self.status,
            code: self.code.map(ResponseCode::into_owned),
            text: self.text.into_owned(),
        }
    }
}

/// Anything a server sends as the first line of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response<'a> {
    /// `+OK ...` or `-ERR ...` (the greeting is one too).
    Status(StatusResponse<'a>),
    /// A SASL challenge `+ <base64>` (RFC 5034 section 4); holds the decoded data.
    Challenge(Secret<Vec<u8>>),
}

impl Response<'_> {
    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> Response<'static> {
        match self {
            Response::Status(s) => Response::Status(s.into_owned()),
            Response::Challenge(c) => Response::Challenge(c),
        }
    }
}

/// The argument of `LANG` (RFC 6856 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LangArg<'a> {
    /// A language tag.
    Tag(Language<'a>),
    /// `*`: the client's default choice.
    Wildcard,
}

/// A POP3 command (client to server).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::codec::{parse_command, Encode};
/// use mailbag_pop3_proto::types::{Command, MessageNumber};
///
/// let cmd = parse_command(b"top 1 10").unwrap();
/// assert_eq!(cmd, Command::Top { msg: MessageNumber::new(1).unwrap(), lines: 10 });
/// assert_eq!(cmd.to_bytes(), b"TOP 1 10\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `USER name`
    User(UserName<'a>),
    /// `PASS string` (the rest of the line; may contain spaces)
    Pass(Password<'a>),
    /// `APOP name digest`
    Apop {
        /// The mailbox name.
        name: UserName<'a>,
        /// MD5 of the greeting timestamp and the shared secret.
        digest: ApopDigest,
    },
    /// `STAT`
    Stat,
    /// `LIST [msg]`
    List(Option<MessageNumber>),
    /// `RETR msg`
    Retr(MessageNumber),
    /// `DELE msg`
    Dele(MessageNumber),
    /// `NOOP`
    Noop,
    /// `RSET`
    Rset,
    /// `QUIT`
    Quit,
    /// `TOP msg n`
    Top {
        /// The message.
        msg: MessageNumber,
        /// Number of body lines after the header and blank line.
        lines: u32,
    },
    /// `UIDL [msg]`
    Uidl(Option<MessageNumber>),
    /// `CAPA` (RFC 2449)
    Capa,
    /// `STLS` (RFC 2595)
    Stls,
    /// `AUTH mechanism [initial-response]` (RFC 5034)
    Auth {
        /// The SASL mechanism.
        mechanism: Mechanism<'a>,
        /// The decoded initial response; `Some(empty)` is sent as `=`.
        initial_response: Option<Secret<Vec<u8>>>,
    },
    /// Bare `AUTH`: asks for the mechanism list (a widespread pre-RFC 5034 form).
    AuthList,
    /// `UTF8` (RFC 6856 section 2)
    Utf8,
    /// `LANG [tag|*]` (RFC 6856 section 3)
    Lang(Option<LangArg<'a>>),
}

impl Command<'_> {
    /// The command keyword in upper case, e.g. `"RETR"`.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Auth { .. } | Command::AuthList => "AUTH",
            Command::Utf8 => "UTF8",
            Command::Lang(_) => "LANG",
        }
    }

    /// Whether a successful (`+OK`) answer to this command is multi-line
    /// (ended by `.CRLF`), which a client needs to know to read it.
    ///
    /// ```
    /// use mailbag_pop3_proto::types::{Command, MessageNumber};
    ///
    /// assert!(Command::List(None).expects_multiline());
    /// assert!(!Command::List(MessageNumber::new(1)).expects_multiline());
    /// ```
    pub fn expects_multiline(&self) -> bool {
        matches!(
            self,
            Command::List(None)
                | Command::Uidl(None)
                | Command::Retr(_)
                | Command::Top { .. }
                | Command::Capa
                | Command::AuthList
                | Command::Lang(None)
        )
    }

    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> Command<'static> {
        match self {
            Command::User(u) => Command::User(u.into_owned()),
            Command::Pass(p) => Command::Pass(p.into_owned()),
            Command::Apop { name, digest } => Command::Apop {
                name: name.into_owned(),
                digest,
            },
            Command::Stat => Command::Stat,
            Command::List(n) => Command::List(n),
            Command::Retr(n) => Command::Retr(n),
            Command::Dele(n) => Command::Dele(n),
            Command::Noop => Command::Noop,
            Command::Rset => Command::Rset,
            Command::Quit => Command::Quit,
            Command::Top { msg, lines } => Command::Top { msg, lines },
            Command::Uidl(n) => Command::Uidl(n),
            Command::Capa => Command::Capa,
            Command::Stls => Command::Stls,
            Command::Auth {
                mechanism,
                initial_response,
            } => Command::Auth {
                mechanism: mechanism.into_owned(),
                initial_response,
            },
            Command::AuthList => Command::AuthList,
            Command::Utf8 => Command::Utf8,
            Command::Lang(l) => Command::Lang(l.map(|l| match l {
                LangArg::Tag(t) => LangArg::Tag(t.into_owned()),
                LangArg::Wildcard => LangArg::Wildcard,
            })),
        }
    }
}

/// A client's answer to a SASL challenge (RFC 5034 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// Response data (decoded from base64; sent as an empty line when empty).
    Data(Secret<Vec<u8>>),
    /// `*`: the client cancels the exchange.
    Cancel,
}

/// A word of an unknown capability: 1 to 64 characters in 0x21..=0x7E.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Atom<'a>(Cow<'a, str>);

impl Atom<'_> {
    fn validate(s: &str) -> Result<(), ValidationError> {
        if s.is_empty() || s.len() > 64 {
            return Err(ValidationError::new(
                "capability word",
                "not 1 to 64 characters",
            ));
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ValidationError::new(
                "capability word",
                "octet outside 0x21..=0x7E",
            ));
        }
        Ok(())
    }
}

/// The EXPIRE policy (RFC 2449 section 6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expire {
    /// `NEVER`: messages are kept until the client deletes them.
    Never,
    /// Messages are kept at least this many days (`0`: RETRieved messages may
    /// be deleted at the end of the session).
    Days(u32),
}

/// A capability tag of a CAPA listing (RFC 2449 section 6 and the IANA registry).
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::codec::{parse_capability, Encode};
/// use mailbag_pop3_proto::types::{Capability, Mechanism};
///
/// let c = parse_capability(b"SASL PLAIN LOGIN").unwrap();
/// assert_eq!(c, Capability::Sasl(vec![Mechanism::PLAIN, Mechanism::LOGIN]));
/// assert_eq!(c.to_bytes(), b"SASL PLAIN LOGIN\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability<'a> {
    /// `TOP`
    Top,
    /// `USER`
    User,
    /// `SASL mech...`
    Sasl(Vec<Mechanism<'a>>),
    /// `RESP-CODES`
    RespCodes,
    /// `LOGIN-DELAY seconds [USER]`
    LoginDelay {
        /// Minimum seconds between logins.
        seconds: u32,
        /// `USER`: the value varies per user (this is the maximum).
        per_user: bool,
    },
    /// `PIPELINING`
    Pipelining,
    /// `EXPIRE policy [USER]`
    Expire {
        /// The retention policy.
        policy: Expire,
        /// `USER`: the value varies per user.
        per_user: bool,
    },
    /// `UIDL`
    Uidl,
    /// `IMPLEMENTATION text`
    Implementation(Text<'a>),
    /// `STLS` (RFC 2595)
    Stls,
    /// `AUTH-RESP-CODE` (RFC 3206)
    AuthRespCode,
    /// `UTF8 [USER]` (RFC 6856)
    Utf8 {
        /// `USER`: UTF-8 user names and passwords are accepted.
        user: bool,
    },
    /// `LANG` (RFC 6856)
    Lang,
    /// A capability this crate does not know.
    Other(OtherCapability<'a>),
}

/// The tags [`Capability`] has a variant for (RFC 2449, 2595, 3206, 6856).
const KNOWN_CAPABILITIES: [&str; 13] = [
    "TOP",
    "USER",
    "SASL",
    "RESP-CODES",
    "LOGIN-DELAY",
    "PIPELINING",
    "EXPIRE",
    "UIDL",
    "IMPLEMENTATION",
    "STLS",
    "AUTH-RESP-CODE",
    "UTF8",
    "LANG",
];

/// Whether `name` is one of [`KNOWN_CAPABILITIES`], in any case.
pub(crate) fn is_known_capability(name: &str) -> bool {
    KNOWN_CAPABILITIES
        .iter()
        .any(|k| k.eq_ignore_ascii_case(name))
}

/// A capability tag this crate does not know, with its words. The tag is never
/// one of the tags [`Capability`] names, and never starts with `.`.
///
/// ```
/// use mailbag_pop3_proto::types::{Atom, OtherCapability};
///
/// let c = OtherCapability::new(Atom::try_from("XFOO").unwrap(), vec![]).unwrap();
/// assert_eq!(c.name().as_str(), "XFOO");
/// assert!(OtherCapability::new(Atom::try_from("top").unwrap(), vec![]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtherCapability<'a> {
    name: Atom<'a>,
    args: Vec<Atom<'a>>,
}

impl<'a> OtherCapability<'a> {
    /// Builds an unknown capability; refuses a known tag or one starting with `.`.
    pub fn new(name: Atom<'a>, args: Vec<Atom<'a>>) -> Result<Self, ValidationError> {
        if name.as_str().starts_with('.') {
            return Err(ValidationError::new("capability", "tag starts with '.'"));
        }
        if is_known_capability(name.as_str()) {
            return Err(ValidationError::new(
                "capability",
                "a known tag: use its variant",
            ));
        }
        Ok(Self { name, args })
    }

    /// The tag.
    pub fn name(&self) -> &Atom<'a> {
        &self.name
    }

    /// The words after the tag.
    pub fn args(&self) -> &[Atom<'a>] {
        &self.args
    }

    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> OtherCapability<'static> {
        OtherCapability {
            name: self.name.into_owned(),
            args: self.args.into_iter().map(Atom::into_owned).collect(),
        }
    }
}

impl Capability<'_> {
    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> Capability<'static> {
        match self {
            Capability::Top => Capability::Top,
            Capability::User => Capability::User,
            Capability::Sasl(m) => {
                Capability::Sasl(m.into_iter().map(Mechanism::into_owned).collect())
            }
            Capability::RespCodes => Capability::RespCodes,
            Capability::LoginDelay { seconds, per_user } => {
                Capability::LoginDelay { seconds, per_user }
            }
            Capability::Pipelining => Capability::Pipelining,
            Capability::Expire { policy, per_user } => Capability::Expire { policy, per_user },
            Capability::Uidl => Capability::Uidl,
            Capability::Implementation(t) => Capability::Implementation(t.into_owned()),
            Capability::Stls => Capability::Stls,
            Capability::AuthRespCode => Capability::AuthRespCode,
            Capability::Utf8 { user } => Capability::Utf8 { user },
            Capability::Lang => Capability::Lang,
            Capability::Other(o) => Capability::Other(o.into_owned()),
        }
    }
}

/// One line of a multi-line LIST answer, or the text of a single LIST answer:
/// `msg size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListEntry {
    /// The message number.
    pub number: MessageNumber,
    /// The exact size in octets with CRLF line ends.
    pub size: u64,
}

/// One line of a multi-line UIDL answer, or the text of a single UIDL answer:
/// `msg uid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UidlEntry<'a> {
    /// The message number.
    pub number: MessageNumber,
    /// The unique id.
    pub uid: Uid<'a>,
}

impl UidlEntry<'_> {
    /// Converts into a value that owns its data.
    pub fn into_owned(self) -> UidlEntry<'static> {
        UidlEntry {
            number: self.number,
            uid: self.uid.into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn uid_limits() {
        assert!(Uid::try_from("a".repeat(70).as_str()).is_ok());
        assert!(Uid::try_from("a".repeat(71).as_str()).is_err());
        assert!(Uid::try_from("caf\u{e9}").is_err());
        assert!(Uid::try_from("!~").is_ok());
    }

    #[test]
    fn secrets_are_redacted() {
        let cmd = Command::Pass(Password::try_from("s3cr3t pass").unwrap());
        let dbg = format!("{cmd:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        let auth = Command::Auth {
            mechanism: Mechanism::PLAIN,
            initial_response: Some(Secret::new(b"\0joe\0s3cr3t".to_vec())),
        };
        assert!(!format!("{auth:?}").contains("s3cr3t"));
    }

    #[test]
    fn apop_rfc_example() {
        let d = ApopDigest::compute("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf");
        assert_eq!(d.as_str(), "c4c9334bac560ecc979e58001b3e22fb");
        assert!(d.verify("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"));
        assert!(!d.verify("<1896.697170952@dbc.mtview.ca.us>", "tanstaaF"));
        assert!(ApopDigest::try_from("c4c9334bac560ecc979e58001b3e22f").is_err());
        assert!(ApopDigest::try_from("g4c9334bac560ecc979e58001b3e22fb").is_err());
    }

    #[test]
    fn message_number_bounds() {
        assert_eq!(MessageNumber::from_index(0), MessageNumber::new(1));
        assert_eq!(
            MessageNumber::new(u32::MAX).map(MessageNumber::get),
            Some(u32::MAX)
        );
        assert!(MessageNumber::try_from(0).is_err());
    }

    #[test]
    fn response_code_known_and_other() {
        assert_eq!(ResponseCode::parse("in-use").unwrap(), ResponseCode::InUse);
        assert!(OtherCode::try_from("AUTH").is_err());
        assert!(OtherCode::try_from("X]").is_err());
        let o = ResponseCode::parse("XFOO/BAR").unwrap();
        assert_eq!(o.as_str(), "XFOO/BAR");
    }

    #[test]
    fn status_text_ambiguity_refused() {
        assert!(StatusResponse::ok("[IN-USE] x").is_err());
        assert!(StatusResponse::ok("[not a code x").is_ok());
        assert!(StatusResponse::err(Some(ResponseCode::Auth), "[IN-USE] x").is_ok());
    }

    #[test]
    fn greeting_timestamp() {
        let g = StatusResponse::ok("ready").unwrap();
        assert_eq!(g.apop_timestamp(), None);
        let g = StatusResponse::ok("ready <a b@c>").unwrap();
        assert_eq!(g.apop_timestamp(), None);
    }

    #[test]
    fn mechanism_case() {
        assert_eq!(
            Mechanism::parse_any_case("Login").unwrap(),
            Mechanism::LOGIN
        );
        assert!(Mechanism::parse_any_case("x y").is_err());
        assert!(Mechanism::try_from("A".repeat(21).as_str()).is_err());
    }
}
