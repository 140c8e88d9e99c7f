//! Policy delegation requests: attributes and the request they make up.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// The value of the `request` attribute that Postfix sends for SMTP access policy
/// delegation, the only kind of request this crate serves.
pub const SMTPD_ACCESS_POLICY: &str = "smtpd_access_policy";

/// An attribute name or value that the protocol cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// A name must be 1 or more printable ASCII characters (`!` to `~`) other than `=`.
    #[error("invalid attribute name: names are printable ASCII without '=' or space")]
    InvalidName,
    /// A value must not contain NUL or LF.
    #[error("invalid attribute value: values must not contain NUL or LF")]
    InvalidValue,
}

/// Whether `name` is a valid attribute name: 1 or more bytes of `!`..=`~` except `=`.
///
/// The protocol only excludes `=`, NUL and LF from names; every name Postfix sends is
/// lowercase ASCII with `_`, and this stricter rule keeps names printable in logs.
pub(crate) fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b'=')
}

/// Whether `value` is a valid attribute value: no NUL, no LF.
pub(crate) fn valid_value(value: &[u8]) -> bool {
    memchr::memchr2(0, b'\n', value).is_none()
}

/// One `name=value` attribute of a policy request.
///
/// Values are raw bytes (Postfix passes through what the SMTP client sent, which is
/// not always UTF-8); [`value_str`](Self::value_str) gives the UTF-8 view.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::{Attribute, AttributeError};
///
/// let a = Attribute::new("client_address", "192.0.2.1")?;
/// assert_eq!(a.name(), "client_address");
/// assert_eq!(a.value(), b"192.0.2.1");
/// assert_eq!(Attribute::new("bad=name", "x").unwrap_err(), AttributeError::InvalidName);
/// assert_eq!(Attribute::new("x", "a\nb").unwrap_err(), AttributeError::InvalidValue);
/// # Ok::<(), AttributeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Attribute<'a> {
    name: Cow<'a, str>,
    value: Cow<'a, [u8]>,
}

impl fmt::Debug for Attribute<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value.escape_ascii())
    }
}

/// Conversion into attribute value bytes (`&str`, `String`, `&[u8]`, `Vec<u8>`, ...).
pub trait IntoValue<'a> {
    /// The value bytes.
    fn into_value(self) -> Cow<'a, [u8]>;
}

impl<'a> IntoValue<'a> for &'a str {
    fn into_value(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl<'a> IntoValue<'a> for String {
    fn into_value(self) -> Cow<'a, [u8]> {
        Cow::Owned(self.into_bytes())
    }
}

impl<'a> IntoValue<'a> for &'a [u8] {
    fn into_value(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<'a, const N: usize> IntoValue<'a> for &'a [u8; N] {
    fn into_value(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<'a> IntoValue<'a> for Vec<u8> {
    fn into_value(self) -> Cow<'a, [u8]> {
        Cow::Owned(self)
    }
}

impl<'a> IntoValue<'a> for Cow<'a, [u8]> {
    fn into_value(self) -> Cow<'a, [u8]> {
        self
    }
}

impl<'a> Attribute<'a> {
    /// An attribute, validated (see [`AttributeError`]).
    pub fn new(
        name: impl Into<Cow<'a, str>>,
        value: impl IntoValue<'a>,
    ) -> Result<Self, AttributeError> {
        let name = name.into();
        let value = value.into_value();
        if !valid_name(name.as_bytes()) {
            return Err(AttributeError::InvalidName);
        }
        if !valid_value(&value) {
            return Err(AttributeError::InvalidValue);
        }
        Ok(Self { name, value })
    }

    /// Built by the parser from already validated parts.
    pub(crate) fn from_parts(name: &'a str, value: &'a [u8]) -> Self {
        Self {
            name: Cow::Borrowed(name),
            value: Cow::Borrowed(value),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// A copy that borrows nothing.
    pub fn into_owned(self) -> Attribute<'static> {
        Attribute {
            name: Cow::Owned(self.name.into_owned()),
            value: Cow::Owned(self.value.into_owned()),
        }
    }

    /// Appends `name=value\n`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(&self.value);
        out.push(b'\n');
    }
}

/// The SMTP protocol stage at which Postfix asks (`protocol_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolState {
    /// `CONNECT` (smtpd_client_restrictions).
    Connect,
    /// `EHLO`.
    Ehlo,
    /// `HELO`.
    Helo,
    /// `MAIL`.
    Mail,
    /// `RCPT` (smtpd_relay_restrictions and smtpd_recipient_restrictions).
    Rcpt,
    /// `DATA` (also sent for BDAT).
    Data,
    /// `END-OF-MESSAGE`.
    EndOfMessage,
    /// `VRFY`.
    Vrfy,
    /// `ETRN`.
    Etrn,
}

impl ProtocolState {
    /// The protocol spelling (`"RCPT"`, `"END-OF-MESSAGE"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Ehlo => "EHLO",
            Self::Helo => "HELO",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
            Self::EndOfMessage => "END-OF-MESSAGE",
            Self::Vrfy => "VRFY",
            Self::Etrn => "ETRN",
        }
    }

    /// Parses the protocol spelling (ASCII case-insensitive).
    pub fn from_bytes(value: &[u8]) -> Option<Self> {
        const ALL: [ProtocolState; 9] = [
            ProtocolState::Connect,
            ProtocolState::Ehlo,
            ProtocolState::Helo,
            ProtocolState::Mail,
            ProtocolState::Rcpt,
            ProtocolState::Data,
            ProtocolState::EndOfMessage,
            ProtocolState::Vrfy,
            ProtocolState::Etrn,
        ];
        ALL.into_iter()
            .find(|s| s.as_str().as_bytes().eq_ignore_ascii_case(value))
    }
}

impl fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One SMTP access policy delegation request: the attributes Postfix sent, in order.
///
/// Invariant: the first `request` attribute is `request=smtpd_access_policy` (the
/// parser refuses anything else, and [`PolicyRequest::new`] starts with it). Unknown
/// attributes are kept (so that a request re-encodes as it came) but never consulted.
/// When a name occurs more than once, the accessors use the first occurrence.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use mailbag_pop_before_smtp::policy::{PolicyRequest, ProtocolState};
///
/// let request = PolicyRequest::new()
///     .with("protocol_state", "RCPT")?
///     .with("client_address", "192.0.2.1")?
///     .with("recipient", "someone@elsewhere.example")?;
/// assert_eq!(request.client_address(), Some("192.0.2.1".parse::<IpAddr>().unwrap()));
/// assert_eq!(request.protocol_state(), Some(ProtocolState::Rcpt));
/// assert_eq!(
///     request.to_bytes(),
///     b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\
///       recipient=someone@elsewhere.example\n\n"
/// );
/// # Ok::<(), mailbag_pop_before_smtp::policy::AttributeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRequest<'a> {
    attributes: Vec<Attribute<'a>>,
}

impl Default for PolicyRequest<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyRequest<'static> {
    /// A request holding only `request=smtpd_access_policy`.
    pub fn new() -> Self {
        Self {
            attributes: vec![Attribute::from_parts(
                "request",
                SMTPD_ACCESS_POLICY.as_bytes(),
            )],
        }
    }
}

impl<'a> PolicyRequest<'a> {
    /// Built by the parser, which has checked the invariant.
    pub(crate) fn from_attributes(attributes: Vec<Attribute<'a>>) -> Self {
        Self { attributes }
    }

    /// Appends an attribute. A second `request` attribute is kept but ignored.
    pub fn push(&mut self, attribute: Attribute<'a>) {
        self.attributes.push(attribute);
    }

    /// Appends a `name=value` attribute (builder style).
    pub fn with(
        mut self,
        name: impl Into<Cow<'a, str>>,
        value: impl IntoValue<'a>,
    ) -> Result<Self, AttributeError> {
        self.attributes.push(Attribute::new(name, value)?);
        Ok(self)
    }

    /// Every attribute, in order (including the leading `request`).
    pub fn attributes(&self) -> &[Attribute<'a>] {
        &self.attributes
    }

    /// The value of the first attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.name() == name)
            .map(Attribute::value)
    }

    /// The value of the first attribute called `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A non-empty UTF-8 value (the protocol sends unavailable values empty).
    fn available(&self, name: &str) -> Option<&str> {
        self.get_str(name).filter(|v| !v.is_empty())
    }

    /// `client_address`, parsed: `1.2.3.4` or an IPv6 address such as `1:2:3::4:5:6`
    /// (not normalised here; the table normalises IPv4-mapped addresses). `None` when
    /// absent or not an IP address (Postfix sends `unknown` for unknown clients).
    pub fn client_address(&self) -> Option<IpAddr> {
        let value = self.get_str("client_address")?;
        // Tolerate the bracketed and `IPv6:`-prefixed spellings as well.
        let trimmed = value.trim_start_matches('[').trim_end_matches(']');
        let trimmed = trimmed
            .strip_prefix("IPv6:")
            .or_else(|| trimmed.strip_prefix("ipv6:"))
            .unwrap_or(trimmed);
        trimmed.parse().ok()
    }

    /// `protocol_state`, if it is one of the documented states.
    pub fn protocol_state(&self) -> Option<ProtocolState> {
        self.get("protocol_state")
            .and_then(ProtocolState::from_bytes)
    }

    /// `sender` (the envelope sender; empty, hence `None`, for the null sender).
    pub fn sender(&self) -> Option<&str> {
        self.available("sender")
    }

    /// `recipient` (available at RCPT).
    pub fn recipient(&self) -> Option<&str> {
        self.available("recipient")
    }

    /// `client_name` (verified reverse name, or `unknown`).
    pub fn client_name(&self) -> Option<&str> {
        self.available("client_name")
    }

    /// `helo_name`.
    pub fn helo_name(&self) -> Option<&str> {
        self.available("helo_name")
    }

    /// `sasl_username` (when the client authenticated with SMTP AUTH).
    pub fn sasl_username(&self) -> Option<&str> {
        self.available("sasl_username")
    }

    /// `queue_id`.
    pub fn queue_id(&self) -> Option<&str> {
        self.available("queue_id")
    }

    /// `instance` (the same for every request about one message).
    pub fn instance(&self) -> Option<&str> {
        self.available("instance")
    }

    /// Appends the wire form: one `name=value\n` line per attribute, then `\n`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for attribute in &self.attributes {
            attribute.encode(out);
        }
        out.push(b'\n');
    }

    /// The wire form (see [`encode`](Self::encode)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// A copy that borrows nothing.
    pub fn into_owned(self) -> PolicyRequest<'static> {
        PolicyRequest {
            attributes: self
                .attributes
                .into_iter()
                .map(Attribute::into_owned)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_validation() {
        assert!(Attribute::new("a", "").is_ok());
        assert!(Attribute::new("a", &b"\xff\r\x01"[..]).is_ok());
        assert_eq!(
            Attribute::new("", "x").unwrap_err(),
            AttributeError::InvalidName
        );
        assert_eq!(
            Attribute::new("a b", "x").unwrap_err(),
            AttributeError::InvalidName
        );
        assert_eq!(
            Attribute::new("a\n", "x").unwrap_err(),
            AttributeError::InvalidName
        );
        assert_eq!(
            Attribute::new("a", &b"x\0"[..]).unwrap_err(),
            AttributeError::InvalidValue
        );
    }

    #[test]
    fn debug_escapes_value() {
        let a = Attribute::new("helo_name", &b"h\xffx"[..]).unwrap();
        assert_eq!(format!("{a:?}"), "helo_name=h\\xffx");
        assert_eq!(a.value_str(), None);
    }

    #[test]
    fn accessors_use_first_occurrence_and_treat_empty_as_unavailable() {
        let r = PolicyRequest::new()
            .with("sender", "")
            .unwrap()
            .with("client_address", "2001:db8::1")
            .unwrap()
            .with("client_address", "192.0.2.1")
            .unwrap()
            .with("protocol_state", "end-of-message")
            .unwrap();
        assert_eq!(r.sender(), None);
        assert_eq!(r.client_address(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(r.protocol_state(), Some(ProtocolState::EndOfMessage));
        assert_eq!(r.recipient(), None);
        assert_eq!(r.get("nope"), None);
    }

    #[test]
    fn client_address_spellings() {
        for (v, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("::ffff:192.0.2.1", Some("::ffff:192.0.2.1")),
            ("[2001:db8::2]", Some("2001:db8::2")),
            ("IPv6:2001:db8::3", Some("2001:db8::3")),
            ("unknown", None),
            ("", None),
            ("192.0.2.256", None),
        ] {
            let r = PolicyRequest::new().with("client_address", v).unwrap();
            assert_eq!(
                r.client_address(),
                want.map(|w| w.parse::<IpAddr>().unwrap()),
                "{v}"
            );
        }
    }

    #[test]
    fn protocol_states_round_trip() {
        for s in [
            ProtocolState::Connect,
            ProtocolState::Ehlo,
            ProtocolState::Helo,
            ProtocolState::Mail,
            ProtocolState::Rcpt,
            ProtocolState::Data,
            ProtocolState::EndOfMessage,
            ProtocolState::Vrfy,
            ProtocolState::Etrn,
        ] {
            assert_eq!(ProtocolState::from_bytes(s.as_str().as_bytes()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(ProtocolState::from_bytes(b"QUIT"), None);
    }

    #[test]
    fn into_owned_keeps_everything() {
        let buf = b"x".to_vec();
        let r = PolicyRequest::new().with("a", &buf[..]).unwrap();
        let owned: PolicyRequest<'static> = r.clone().into_owned();
        assert_eq!(owned, r);
    }
}
