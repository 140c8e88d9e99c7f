//! Policy delegation responses: the `action` a policy server returns.

use std::borrow::Cow;
use std::fmt;

/// A text that cannot be carried as (part of) an `action` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// Action text must be non-empty, start with a character other than space or tab,
    /// and contain no NUL, CR or LF.
    #[error("invalid action text: must be non-empty, not start with a blank, without NUL/CR/LF")]
    InvalidText,
    /// A reply code must be `400..=599`.
    #[error("invalid reply code: must be 4xx or 5xx")]
    InvalidCode,
    /// An [`OtherAction`] must not be spelled like one of the typed actions.
    #[error("the action is one of the typed actions, use its variant")]
    NotOther,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn valid_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => false,
        Some(&first) if is_blank(first) => false,
        Some(_) => memchr::memchr3(0, b'\r', b'\n', bytes).is_none(),
    }
}

/// Free text following an action keyword (e.g. the reply text of `REJECT text`).
///
/// Non-empty, not starting with a space or tab, without NUL, CR or LF: exactly what
/// the parser takes as "the text after the keyword", so every value round-trips.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::ActionText;
///
/// assert_eq!(ActionText::new("5.7.1 Relay access denied")?.as_str(), "5.7.1 Relay access denied");
/// assert!(ActionText::new("").is_err());
/// assert!(ActionText::new(" leading blank").is_err());
/// assert!(ActionText::new("two\r\nlines").is_err());
/// # Ok::<(), mailbag_pop_before_smtp::policy::ActionError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActionText<'a>(Cow<'a, str>);

impl fmt::Debug for ActionText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ActionText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> ActionText<'a> {
    /// Validated text.
    pub fn new(text: impl Into<Cow<'a, str>>) -> Result<Self, ActionError> {
        let text = text.into();
        if valid_text(&text) {
            Ok(Self(text))
        } else {
            Err(ActionError::InvalidText)
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A copy that borrows nothing.
    pub fn into_owned(self) -> ActionText<'static> {
        ActionText(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> TryFrom<&'a str> for ActionText<'a> {
    type Error = ActionError;

    fn try_from(text: &'a str) -> Result<Self, Self::Error> {
        Self::new(text)
    }
}

/// An SMTP reply code for a `4NN text` / `5NN text` action: `400..=599`.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::ReplyCode;
///
/// assert_eq!(ReplyCode::new(554)?.get(), 554);
/// assert!(ReplyCode::new(250).is_err());
/// # Ok::<(), mailbag_pop_before_smtp::policy::ActionError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// A 4xx or 5xx code.
    pub const fn new(code: u16) -> Result<Self, ActionError> {
        if code >= 400 && code <= 599 {
            Ok(Self(code))
        } else {
            Err(ActionError::InvalidCode)
        }
    }

    /// The numeric code.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for ReplyCode {
    type Error = ActionError;

    fn try_from(code: u16) -> Result<Self, Self::Error> {
        Self::new(code)
    }
}

/// An action value that is none of the typed actions: in Postfix, a restriction
/// name or a list of restrictions (`permit_mynetworks`, `reject_unauth_destination`,
/// a `smtpd_restriction_classes` name, ...).
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::{ActionError, OtherAction};
///
/// assert_eq!(OtherAction::new("permit_mynetworks")?.as_str(), "permit_mynetworks");
/// assert_eq!(OtherAction::new("ok").unwrap_err(), ActionError::NotOther);
/// # Ok::<(), ActionError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OtherAction<'a>(ActionText<'a>);

impl fmt::Debug for OtherAction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'a> OtherAction<'a> {
    /// Validated: a valid [`ActionText`] that the parser would not read as a typed
    /// action.
    pub fn new(text: impl Into<Cow<'a, str>>) -> Result<Self, ActionError> {
        let text = ActionText::new(text)?;
        match PolicyAction::classify(text.as_str()) {
            Kind::Other => Ok(Self(text)),
            _ => Err(ActionError::NotOther),
        }
    }

    /// The action text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// A copy that borrows nothing.
    pub fn into_owned(self) -> OtherAction<'static> {
        OtherAction(self.0.into_owned())
    }
}

/// The `action` of a policy delegation response (Postfix `access(5)` actions).
///
/// Parsing follows Postfix's `check_table_result`: the first word (up to a space or
/// tab) is the keyword, matched ASCII case-insensitively; the text after the blanks
/// that follow it is the argument. Forms that Postfix treats alike are normalised:
/// `OK`, `OK text`, `RELAY` and an all-digit value (a time stamp from an address-based
/// relay scheme) all parse as [`PolicyAction::Ok`]; `DUNNO text` as
/// [`PolicyAction::Dunno`]. A keyword that needs an argument (`FILTER`, `REDIRECT`,
/// `BCC`, `PREPEND`) without one, and a code without text, are [`PolicyAction::Other`].
/// Hence `parse(encode(action)) == action` for every value.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::{ActionText, PolicyAction, ReplyCode};
///
/// assert_eq!(PolicyAction::Ok.to_string(), "OK");
/// let reject = PolicyAction::Code {
///     code: ReplyCode::new(554)?,
///     text: ActionText::new("5.7.1 Relay access denied")?,
/// };
/// assert_eq!(reject.to_string(), "554 5.7.1 Relay access denied");
/// assert_eq!(PolicyAction::parse("554 5.7.1 Relay access denied")?, reject);
/// assert_eq!(PolicyAction::parse("dunno")?, PolicyAction::Dunno);
/// # Ok::<(), mailbag_pop_before_smtp::policy::ActionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyAction<'a> {
    /// `OK`: accept (this restriction list stops here). What the decision function
    /// answers for an authorized client.
    Ok,
    /// `DUNNO`: no opinion, Postfix goes on with the next restriction. What the
    /// decision function answers otherwise.
    Dunno,
    /// `REJECT [text]`: permanent rejection.
    Reject(Option<ActionText<'a>>),
    /// `DEFER [text]`: temporary rejection.
    Defer(Option<ActionText<'a>>),
    /// `DEFER_IF_REJECT [text]`.
    DeferIfReject(Option<ActionText<'a>>),
    /// `DEFER_IF_PERMIT [text]`.
    DeferIfPermit(Option<ActionText<'a>>),
    /// `4NN text` / `5NN text` (text may start with an enhanced status code).
    Code {
        /// The reply code.
        code: ReplyCode,
        /// The reply text.
        text: ActionText<'a>,
    },
    /// `HOLD [text]`: put the message on hold.
    Hold(Option<ActionText<'a>>),
    /// `DISCARD [text]`: accept and silently discard.
    Discard(Option<ActionText<'a>>),
    /// `FILTER transport:destination`.
    Filter(ActionText<'a>),
    /// `REDIRECT user@domain`.
    Redirect(ActionText<'a>),
    /// `BCC user@domain`.
    Bcc(ActionText<'a>),
    /// `PREPEND headername: headervalue`.
    Prepend(ActionText<'a>),
    /// `INFO [text]`: log and go on.
    Info(Option<ActionText<'a>>),
    /// `WARN [text]`: log a warning and go on.
    Warn(Option<ActionText<'a>>),
    /// Anything else: a restriction name or list.
    Other(OtherAction<'a>),
}

/// Keywords with an optional text argument.
#[derive(Clone, Copy)]
enum Optional {
    Reject,
    Defer,
    DeferIfReject,
    DeferIfPermit,
    Hold,
    Discard,
    Info,
    Warn,
}

/// Keywords that need a text argument.
#[derive(Clone, Copy)]
enum Required {
    Filter,
    Redirect,
    Bcc,
    Prepend,
}

/// The shape of an action value, before building the borrowed variant.
enum Kind {
    Ok,
    Dunno,
    Optional(Optional),
    Required(Required),
    Code(ReplyCode),
    Other,
}

const OPTIONAL: [(&str, Optional); 8] = [
    ("REJECT", Optional::Reject),
    ("DEFER", Optional::Defer),
    ("DEFER_IF_REJECT", Optional::DeferIfReject),
    ("DEFER_IF_PERMIT", Optional::DeferIfPermit),
    ("HOLD", Optional::Hold),
    ("DISCARD", Optional::Discard),
    ("INFO", Optional::Info),
    ("WARN", Optional::Warn),
];

const REQUIRED: [(&str, Required); 4] = [
    ("FILTER", Required::Filter),
    ("REDIRECT", Required::Redirect),
    ("BCC", Required::Bcc),
    ("PREPEND", Required::Prepend),
];

impl<'a> PolicyAction<'a> {
    /// Splits `value` into the keyword and the optional text after the blanks.
    fn split(value: &str) -> (&str, Option<&str>) {
        let end = value.find([' ', '\t']).unwrap_or(value.len());
        let (word, rest) = value.split_at(end);
        let rest = rest.trim_start_matches([' ', '\t']);
        (word, (!rest.is_empty()).then_some(rest))
    }

    /// Classifies a value in the order of Postfix's `check_table_result`.
    fn classify(value: &str) -> Kind {
        let (word, text) = Self::split(value);
        if word.eq_ignore_ascii_case("DUNNO") {
            return Kind::Dunno;
        }
        if let Some((_, k)) = OPTIONAL.iter().find(|(n, _)| word.eq_ignore_ascii_case(n)) {
            return Kind::Optional(*k);
        }
        if let Some((_, k)) = REQUIRED.iter().find(|(n, _)| word.eq_ignore_ascii_case(n)) {
            return if text.is_some() {
                Kind::Required(*k)
            } else {
                Kind::Other
            };
        }
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Kind::Ok;
        }
        if let ([c0 @ (b'4' | b'5'), c1, c2], Some(_)) = (word.as_bytes(), text) {
            if c1.is_ascii_digit() && c2.is_ascii_digit() {
                let code =
                    u16::from(c0 - b'0') * 100 + u16::from(c1 - b'0') * 10 + u16::from(c2 - b'0');
                if let Ok(code) = ReplyCode::new(code) {
                    return Kind::Code(code);
                }
            }
        }
        if word.eq_ignore_ascii_case("OK") || word.eq_ignore_ascii_case("RELAY") {
            return Kind::Ok;
        }
        Kind::Other
    }

    /// Parses an action value (the part after `action=`), borrowing from it.
    pub fn parse(value: &'a str) -> Result<Self, ActionError> {
        let whole = ActionText::new(value)?;
        let (_, text) = Self::split(value);
        // `text` is a suffix of a valid text and starts with a non-blank: valid.
        let text = text.map(|t| ActionText(Cow::Borrowed(t)));
        Ok(match (Self::classify(value), text) {
            (Kind::Ok, _) => PolicyAction::Ok,
            (Kind::Dunno, _) => PolicyAction::Dunno,
            (Kind::Optional(k), t) => match k {
                Optional::Reject => PolicyAction::Reject(t),
                Optional::Defer => PolicyAction::Defer(t),
                Optional::DeferIfReject => PolicyAction::DeferIfReject(t),
                Optional::DeferIfPermit => PolicyAction::DeferIfPermit(t),
                Optional::Hold => PolicyAction::Hold(t),
                Optional::Discard => PolicyAction::Discard(t),
                Optional::Info => PolicyAction::Info(t),
                Optional::Warn => PolicyAction::Warn(t),
            },
            (Kind::Required(k), Some(t)) => match k {
                Required::Filter => PolicyAction::Filter(t),
                Required::Redirect => PolicyAction::Redirect(t),
                Required::Bcc => PolicyAction::Bcc(t),
                Required::Prepend => PolicyAction::Prepend(t),
            },
            (Kind::Code(code), Some(text)) => PolicyAction::Code { code, text },
            (Kind::Other | Kind::Required(_) | Kind::Code(_), _) => {
                PolicyAction::Other(OtherAction(whole))
            }
        })
    }

    /// The keyword and argument, as written on the wire.
    fn parts(&self) -> (Cow<'static, str>, Option<&ActionText<'a>>) {
        let kw = |k: &'static str| Cow::Borrowed(k);
        match self {
            Self::Ok => (kw("OK"), None),
            Self::Dunno => (kw("DUNNO"), None),
            Self::Reject(t) => (kw("REJECT"), t.as_ref()),
            Self::Defer(t) => (kw("DEFER"), t.as_ref()),
            Self::DeferIfReject(t) => (kw("DEFER_IF_REJECT"), t.as_ref()),
            Self::DeferIfPermit(t) => (kw("DEFER_IF_PERMIT"), t.as_ref()),
            Self::Code { code, text } => (Cow::Owned(code.get().to_string()), Some(text)),
            Self::Hold(t) => (kw("HOLD"), t.as_ref()),
            Self::Discard(t) => (kw("DISCARD"), t.as_ref()),
            Self::Filter(t) => (kw("FILTER"), Some(t)),
            Self::Redirect(t) => (kw("REDIRECT"), Some(t)),
            Self::Bcc(t) => (kw("BCC"), Some(t)),
            Self::Prepend(t) => (kw("PREPEND"), Some(t)),
            Self::Info(t) => (kw("INFO"), t.as_ref()),
            Self::Warn(t) => (kw("WARN"), t.as_ref()),
            Self::Other(o) => (kw(""), Some(&o.0)),
        }
    }

    /// Appends the response: `action=<value>\n\n`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_pop_before_smtp::policy::PolicyAction;
    ///
    /// let mut out = Vec::new();
    /// PolicyAction::Dunno.encode_response(&mut out);
    /// assert_eq!(out, b"action=DUNNO\n\n");
    /// ```
    pub fn encode_response(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"action=");
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// The response bytes (see [`encode_response`](Self::encode_response)).
    pub fn to_response(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_response(&mut out);
        out
    }

    /// A copy that borrows nothing.
    pub fn into_owned(self) -> PolicyAction<'static> {
        let own = |t: Option<ActionText<'a>>| t.map(ActionText::into_owned);
        match self {
            Self::Ok => PolicyAction::Ok,
            Self::Dunno => PolicyAction::Dunno,
            Self::Reject(t) => PolicyAction::Reject(own(t)),
            Self::Defer(t) => PolicyAction::Defer(own(t)),
            Self::DeferIfReject(t) => PolicyAction::DeferIfReject(own(t)),
            Self::DeferIfPermit(t) => PolicyAction::DeferIfPermit(own(t)),
            Self::Code { code, text } => PolicyAction::Code {
                code,
                text: text.into_owned(),
            },
            Self::Hold(t) => PolicyAction::Hold(own(t)),
            Self::Discard(t) => PolicyAction::Discard(own(t)),
            Self::Filter(t) => PolicyAction::Filter(t.into_owned()),
            Self::Redirect(t) => PolicyAction::Redirect(t.into_owned()),
            Self::Bcc(t) => PolicyAction::Bcc(t.into_owned()),
            Self::Prepend(t) => PolicyAction::Prepend(t.into_owned()),
            Self::Info(t) => PolicyAction::Info(own(t)),
            Self::Warn(t) => PolicyAction::Warn(own(t)),
            Self::Other(o) => PolicyAction::Other(o.into_owned()),
        }
    }
}

impl fmt::Display for PolicyAction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            (kw, Some(text)) if kw.is_empty() => f.write_str(text.as_str()),
            (kw, Some(text)) => write!(f, "{kw} {text}"),
            (kw, None) => f.write_str(&kw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> ActionText<'_> {
        ActionText::new(s).unwrap()
    }

    #[test]
    fn parses_every_keyword() {
        let cases: Vec<(&str, PolicyAction<'_>)> = vec![
            ("OK", PolicyAction::Ok),
            ("ok", PolicyAction::Ok),
            ("OK whatever", PolicyAction::Ok),
            ("RELAY", PolicyAction::Ok),
            ("1712345678", PolicyAction::Ok),
            ("550", PolicyAction::Ok), // all digits: OK, as in Postfix
            ("DUNNO", PolicyAction::Dunno),
            ("Dunno ignored text", PolicyAction::Dunno),
            ("REJECT", PolicyAction::Reject(None)),
            ("REJECT  go away", PolicyAction::Reject(Some(t("go away")))),
            ("DEFER", PolicyAction::Defer(None)),
            (
                "DEFER\ttry later",
                PolicyAction::Defer(Some(t("try later"))),
            ),
            ("DEFER_IF_REJECT", PolicyAction::DeferIfReject(None)),
            (
                "DEFER_IF_PERMIT x",
                PolicyAction::DeferIfPermit(Some(t("x"))),
            ),
            (
                "554 5.7.1 Relay access denied",
                PolicyAction::Code {
                    code: ReplyCode::new(554).unwrap(),
                    text: t("5.7.1 Relay access denied"),
                },
            ),
            (
                "421 bye",
                PolicyAction::Code {
                    code: ReplyCode::new(421).unwrap(),
                    text: t("bye"),
                },
            ),
            ("HOLD", PolicyAction::Hold(None)),
            ("DISCARD spam", PolicyAction::Discard(Some(t("spam")))),
            (
                "FILTER smtp:[127.0.0.1]:10025",
                PolicyAction::Filter(t("smtp:[127.0.0.1]:10025")),
            ),
            (
                "REDIRECT a@b.example",
                PolicyAction::Redirect(t("a@b.example")),
            ),
            ("BCC a@b.example", PolicyAction::Bcc(t("a@b.example"))),
            (
                "PREPEND X-Relay: pop",
                PolicyAction::Prepend(t("X-Relay: pop")),
            ),
            ("INFO", PolicyAction::Info(None)),
            ("WARN careful", PolicyAction::Warn(Some(t("careful")))),
            (
                "permit_mynetworks",
                PolicyAction::Other(OtherAction::new("permit_mynetworks").unwrap()),
            ),
            (
                "FILTER",
                PolicyAction::Other(OtherAction::new("FILTER").unwrap()),
            ),
            (
                "250 ok",
                PolicyAction::Other(OtherAction::new("250 ok").unwrap()),
            ),
            (
                "550 ",
                PolicyAction::Other(OtherAction::new("550 ").unwrap()),
            ),
            (
                "5xx text",
                PolicyAction::Other(OtherAction::new("5xx text").unwrap()),
            ),
        ];
        for (value, want) in cases {
            let got = PolicyAction::parse(value).unwrap();
            assert_eq!(got, want, "{value:?}");
            assert_eq!(
                PolicyAction::parse(&got.to_string()).unwrap(),
                got,
                "{value:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_values() {
        for v in ["", " OK", "OK\r", "REJECT a\nb", "x\0"] {
            assert_eq!(
                PolicyAction::parse(v),
                Err(ActionError::InvalidText),
                "{v:?}"
            );
        }
    }

    #[test]
    fn other_refuses_typed_spellings() {
        for v in [
            "OK",
            "relay",
            "123",
            "dunno x",
            "REJECT",
            "450 later",
            "FILTER a:b",
        ] {
            assert_eq!(
                OtherAction::new(v).unwrap_err(),
                ActionError::NotOther,
                "{v}"
            );
        }
        assert!(OtherAction::new("check_client_access hash:/x").is_ok());
    }

    #[test]
    fn encodes_responses() {
        assert_eq!(PolicyAction::Ok.to_response(), b"action=OK\n\n");
        assert_eq!(PolicyAction::Dunno.to_response(), b"action=DUNNO\n\n");
        assert_eq!(
            PolicyAction::Reject(Some(t("5.7.1 no"))).to_response(),
            b"action=REJECT 5.7.1 no\n\n"
        );
        assert_eq!(PolicyAction::Hold(None).to_string(), "HOLD");
    }

    #[test]
    fn reply_code_bounds() {
        assert!(ReplyCode::new(399).is_err());
        assert!(ReplyCode::new(400).is_ok());
        assert!(ReplyCode::new(599).is_ok());
        assert!(ReplyCode::try_from(600).is_err());
    }

    fn text() -> impl Strategy<Value = String> {
        "[!-~][ -~\t]{0,20}".prop_map(|s| s)
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    fn action() -> impl Strategy<Value = PolicyAction<'static>> {
        let o = |t: Option<String>| t.map(|s| ActionText::new(s).unwrap());
        let r = |s: String| ActionText::new(s).unwrap();
        prop_oneof![
            Just(PolicyAction::Ok),
            Just(PolicyAction::Dunno),
            opt_text().prop_map(move |t| PolicyAction::Reject(o(t))),
            opt_text().prop_map(move |t| PolicyAction::Defer(o(t))),
            opt_text().prop_map(move |t| PolicyAction::DeferIfReject(o(t))),
            opt_text().prop_map(move |t| PolicyAction::DeferIfPermit(o(t))),
            (400u16..600, text()).prop_map(move |(c, t)| PolicyAction::Code {
                code: ReplyCode::new(c).unwrap(),
                text: r(t)
            }),
            opt_text().prop_map(move |t| PolicyAction::Hold(o(t))),
            opt_text().prop_map(move |t| PolicyAction::Discard(o(t))),
            text().prop_map(move |t| PolicyAction::Filter(r(t))),
            text().prop_map(move |t| PolicyAction::Redirect(r(t))),
            text().prop_map(move |t| PolicyAction::Bcc(r(t))),
            text().prop_map(move |t| PolicyAction::Prepend(r(t))),
            opt_text().prop_map(move |t| PolicyAction::Info(o(t))),
            opt_text().prop_map(move |t| PolicyAction::Warn(o(t))),
            text().prop_filter_map("typed", |t| OtherAction::new(t)
                .ok()
                .map(PolicyAction::Other)),
        ]
    }

    proptest! {
        #[test]
        fn action_round_trips(a in action()) {
            let s = a.to_string();
            prop_assert_eq!(PolicyAction::parse(&s).unwrap(), a);
        }

        #[test]
        fn parse_never_panics_and_round_trips(s in "[ -~\t\r\n\0]{0,30}") {
            if let Ok(a) = PolicyAction::parse(&s) {
                let again = a.to_string();
                prop_assert_eq!(PolicyAction::parse(&again).unwrap(), a);
            }
        }
    }
}
