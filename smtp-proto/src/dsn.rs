//! Delivery status notifications (RFC 3464): a sans-IO builder for bounce,
//! delay and success reports, and a parser for their per-recipient fields.
//!
//! A DSN is a `multipart/report; report-type=delivery-status` message
//! (RFC 6522; `global-delivery-status` for SMTPUTF8 mail, RFC 6533) with three parts: a human-readable explanation, the
//! machine-readable `message/delivery-status` fields, and the original
//! message (`message/rfc822`) or only its header section
//! (`text/rfc822-headers`), as the sender's `RET` parameter asks
//! (RFC 3461 section 4.3). It carries `Auto-Submitted: auto-replied`
//! (RFC 3834) and goes to the original envelope sender with the null
//! reverse path `<>`; never make one for a null sender.
//!
//! The original can be large, so the builder does not take it: it returns
//! the bytes that come before it ([`DsnParts::prefix`]) and after it
//! ([`DsnParts::suffix`]), and the caller streams the original (or the
//! first [`header_section_len`] octets of it) in between.
//!
//! Nothing here reads a clock or a random number generator: dates
//! ([`DateTime`]) and the MIME boundary are passed in.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::dsn::{
//!     parse_delivery_status, Action, DsnBuilder, OriginalContent, RecipientReport,
//! };
//! use mailbag_smtp_proto::date::DateTime;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let original = b"From: ann@example.org\r\nSubject: lunch\r\n\r\nAt noon?\r\n";
//! let now = DateTime::new(1_700_000_000, 60)?;
//! let mut dsn = DsnBuilder::new(
//!     "mx.example.net",                 // reporting MTA
//!     "MAILER-DAEMON@mx.example.net",   // From
//!     "ann@example.org",                // To: the original envelope sender
//!     now,
//!     "=_mailbag_001700000000.1.1_x7",  // boundary, unique per message
//!     "<001700000000.1.1.dsn@mx.example.net>",
//! );
//! dsn.envid("QQ314159").arrival_date(now);
//! dsn.recipient(
//!     RecipientReport::new("joe@example.com", Action::Failed, "5.1.1".parse()?)
//!         .original_recipient_xtext("rfc822;joe@example.com")
//!         .remote_mta("mx.example.com")
//!         .diagnostic("550 5.1.1 <joe@example.com>: no such user")
//!         .last_attempt(now),
//! );
//! let parts = dsn.build(OriginalContent::Headers, false)?;
//!
//! // Write prefix, the original's header section, suffix.
//! let mut message = parts.prefix.clone();
//! let headers = mailbag_smtp_proto::dsn::header_section_len(original).unwrap_or(original.len());
//! message.extend_from_slice(&original[..headers]);
//! message.extend_from_slice(&parts.suffix);
//! let text = String::from_utf8(message.clone())?;
//! assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
//! assert!(text.contains("\r\nAuto-Submitted: auto-replied\r\n"));
//! assert!(text.contains("\r\nContent-Type: text/rfc822-headers\r\n"));
//! assert!(!text.contains("At noon?"));
//!
//! // A client (or a test) reads the machine-readable part back.
//! let status = parse_delivery_status(&message)?;
//! assert_eq!(status.reporting_mta.as_deref(), Some("mx.example.net"));
//! let r = &status.recipients[0];
//! assert_eq!((r.final_recipient.as_str(), r.action), ("joe@example.com", Action::Failed));
//! assert_eq!(r.status.to_string(), "5.1.1");
//! assert_eq!(r.diagnostic.as_deref(), Some("550 5.1.1 <joe@example.com>: no such user"));
//! # Ok(()) }
//! ```

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use core::fmt;
use core::str::FromStr;

use crate::date::DateTime;
use crate::types::{EnhancedStatusCode, Ret, XText};

/// Folding target for generated header and status lines (RFC 5322 section 2.1.1).
const FOLD_AT: usize = 78;
/// Hard line-length limit (RFC 5322: 998 octets plus CRLF).
const MAX_LINE: usize = 998;
/// Longest diagnostic text kept (longer text is cut at a character boundary).
pub const MAX_DIAGNOSTIC_LEN: usize = 2000;
/// Default [`OriginalContent::choose`] limit for returning a whole message: 10 MiB.
pub const DEFAULT_FULL_RETURN_LIMIT: u64 = 10 * 1024 * 1024;

/// Why a DSN could not be built or parsed.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::date::DateTime;
/// use mailbag_smtp_proto::dsn::{DsnBuilder, DsnError, OriginalContent};
///
/// let date = DateTime::new(0, 0).unwrap();
/// let b = DsnBuilder::new("mx", "MAILER-DAEMON@mx", "a@b", date, "b1", "<m@mx>");
/// assert_eq!(b.build(OriginalContent::None, false), Err(DsnError::NoRecipients));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsnError {
    /// A report needs at least one recipient.
    #[error("a DSN needs at least one recipient")]
    NoRecipients,
    /// A header value with control characters or empty where it must not be.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// The boundary is not 1-70 RFC 2046 `bchars` (not ending in a space).
    #[error("invalid MIME boundary")]
    InvalidBoundary,
    /// The boundary occurs in the generated text; choose another one.
    #[error("the MIME boundary occurs in the generated parts")]
    BoundaryCollision,
    /// The status class does not fit the action (failed: 5, delayed: 4,
    /// delivered/relayed/expanded: 2).
    #[error("status class {status} does not fit action {action}")]
    StatusMismatch {
        /// The action.
        action: Action,
        /// The status.
        status: EnhancedStatusCode,
    },
    /// A word too long to fold into a 998-octet line.
    #[error("a value is too long to fold into a header line")]
    LineTooLong,
    /// The input is not a DSN this parser understands.
    #[error("not a parsable delivery status notification: {0}")]
    Parse(&'static str),
}

// ------------------------------------------------------------------ actions

/// The `Action` of a per-recipient report (RFC 3464 section 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Could not be delivered (status 5.x.x).
    Failed,
    /// Not delivered yet; retries go on (status 4.x.x).
    Delayed,
    /// Delivered to the recipient's mailbox (2.x.x).
    Delivered,
    /// Handed to a system that does not issue DSNs (2.x.x).
    Relayed,
    /// Delivered and forwarded to several addresses (2.x.x).
    Expanded,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }

    /// The status class that fits the action (RFC 3464 section 2.3.4): 5 for
    /// [`Action::Failed`], 4 for [`Action::Delayed`], 2 for the others.
    pub fn status_class(self) -> u8 {
        match self {
            Action::Failed => 5,
            Action::Delayed => 4,
            _ => 2,
        }
    }

    /// The `Status` for a report with this action from the reply text that caused it
    /// (`"550 5.1.1 ..."`, or a stored `"5.4.7 ..."`): the enhanced code found by
    /// [`EnhancedStatusCode::find_in`], moved to [`Action::status_class`] (a `4.4.1` from a
    /// temporary reply becomes `5.4.1` in a failure report); `class.0.0` when the text
    /// has none (RFC 3463 section 3.1: "other or undefined status").
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::dsn::Action;
    ///
    /// let st = |a: Action, s: &str| a.status_from_reply(s).to_string();
    /// assert_eq!(st(Action::Failed, "550 5.1.1 no such user"), "5.1.1");
    /// assert_eq!(st(Action::Failed, "451 4.4.1 connection refused"), "5.4.1");
    /// assert_eq!(st(Action::Failed, "554 no enhanced code"), "5.0.0");
    /// assert_eq!(st(Action::Delayed, "connection refused"), "4.0.0");
    /// assert_eq!(st(Action::Relayed, "250 2.1.5 ok"), "2.1.5");
    /// ```
    pub fn status_from_reply(self, reply: &str) -> EnhancedStatusCode {
        let class = self.status_class();
        let (subject, detail) =
            EnhancedStatusCode::find_in(reply).map_or((0, 0), |(e, _)| (e.subject(), e.detail()));
        EnhancedStatusCode::new(class, subject, detail)
            .unwrap_or_else(|_| EnhancedStatusCode::c(class, 0, 0))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Action::Failed,
            Action::Delayed,
            Action::Delivered,
            Action::Relayed,
            Action::Expanded,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or(DsnError::Parse("unknown action"))
    }
}

// ------------------------------------------------------------------ recipients

/// The per-recipient fields of a DSN (RFC 3464 section 2.3), built with
/// [`RecipientReport::new`] and the setters, or returned by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecipientReport {
    /// The recipient address (`Final-Recipient`), without angle brackets.
    pub final_recipient: String,
    /// The `Original-Recipient` field value, `addr-type;address` (from ORCPT).
    pub original_recipient: Option<String>,
    /// What happened.
    pub action: Action,
    /// The status code; its class fits the action.
    pub status: EnhancedStatusCode,
    /// The MTA that answered (`Remote-MTA: dns; host`).
    pub remote_mta: Option<String>,
    /// The diagnostic text (`Diagnostic-Code: <type>; ...`), whitespace-normalised:
    /// for [`DiagnosticType::Smtp`] the reply of the remote MTA.
    pub diagnostic: Option<String>,
    /// What kind of text [`RecipientReport::diagnostic`] is (the field's
    /// diagnostic-type): an SMTP reply unless set otherwise.
    pub diagnostic_type: DiagnosticType,
    /// When the last attempt was made.
    pub last_attempt: Option<DateTime>,
    /// For delayed reports: until when retries go on.
    pub will_retry_until: Option<DateTime>,
}

/// The diagnostic-type of a `Diagnostic-Code` field (RFC 3464 section
/// 2.3.6): what kind of text follows the `;`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DiagnosticType {
    /// `smtp`: a reply an SMTP server sent (the default).
    #[default]
    Smtp,
    /// Another type, such as an MTA's own `X-Postfix` for the texts it
    /// makes itself (a connection that failed, a message that expired).
    /// When building, the name must be an atom (RFC 5322 `atext` only);
    /// the parser keeps it as written.
    Other(String),
}

impl DiagnosticType {
    /// The name as written in the field: `smtp`, or the other type's name.
    pub fn as_str(&self) -> &str {
        match self {
            DiagnosticType::Smtp => "smtp",
            DiagnosticType::Other(name) => name,
        }
    }
}

/// Longest word kept whole in a diagnostic text; longer runs are split
/// with a space so that every folded line stays far below 998 octets.
const MAX_WORD: usize = 400;

/// Control characters (also CR/LF/TAB) become spaces, runs of spaces one
/// space, no space at either end, words longer than 400 octets are split,
/// at most [`MAX_DIAGNOSTIC_LEN`] octets (cut at a character boundary).
fn normalize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_DIAGNOSTIC_LEN));
    let words = s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty());
    'outer: for word in words {
        let mut run = 0;
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if run + c.len_utf8() > MAX_WORD {
                out.push(' ');
                run = 0;
            }
            if out.len() + c.len_utf8() > MAX_DIAGNOSTIC_LEN {
                break 'outer;
            }
            out.push(c);
            run += c.len_utf8();
        }
    }
    out.trim_end().to_owned()
}

impl RecipientReport {
    /// A report for `final_recipient` (the address we tried, without angle brackets).
    pub fn new(
        final_recipient: impl Into<String>,
        action: Action,
        status: EnhancedStatusCode,
    ) -> Self {
        RecipientReport {
            final_recipient: final_recipient.into(),
            original_recipient: None,
            action,
            status,
            remote_mta: None,
            diagnostic: None,
            diagnostic_type: DiagnosticType::Smtp,
            last_attempt: None,
            will_retry_until: None,
        }
    }

    /// Sets `Original-Recipient` from an ORCPT parameter as received
    /// (`addr-type;xtext`): the xtext is decoded when the result is
    /// printable ASCII, and kept encoded otherwise (RFC 3461 section 4.2,
    /// RFC 3464 section 2.3.1). A value without `;` or with a bad addr-type
    /// is ignored (the field is optional).
    pub fn original_recipient_xtext(mut self, orcpt: &str) -> Self {
        self.original_recipient = decode_orcpt(orcpt);
        self
    }

    /// Sets `Remote-MTA` (a host name or address literal).
    pub fn remote_mta(mut self, host: impl Into<String>) -> Self {
        self.remote_mta = Some(host.into());
        self
    }

    /// Sets `Diagnostic-Code: smtp; <reply>`; line breaks of a multi-line
    /// reply and runs of white space become single spaces.
    pub fn diagnostic(mut self, reply: &str) -> Self {
        let t = normalize_text(reply);
        self.diagnostic = (!t.is_empty()).then_some(t);
        self.diagnostic_type = DiagnosticType::Smtp;
        self
    }

    /// Sets `Diagnostic-Code: <kind>; <text>` for a text that is not an
    /// SMTP reply, normalised as [`RecipientReport::diagnostic`] does: for
    /// example `X-Postfix; connect to mx.example.com: Connection refused`.
    /// The human-readable part then shows the text alone, not as what an
    /// MTA said.
    ///
    /// ```
    /// use mailbag_smtp_proto::dsn::{Action, DiagnosticType, RecipientReport};
    ///
    /// let r = RecipientReport::new("joe@example.com", Action::Failed, "5.4.7".parse().unwrap())
    ///     .typed_diagnostic(DiagnosticType::Other("X-Example".into()), "retry time exceeded");
    /// assert_eq!(r.diagnostic_type.as_str(), "X-Example");
    /// ```
    pub fn typed_diagnostic(mut self, kind: DiagnosticType, text: &str) -> Self {
        self = self.diagnostic(text);
        self.diagnostic_type = kind;
        self
    }

    /// Sets `Last-Attempt-Date`.
    pub fn last_attempt(mut self, date: DateTime) -> Self {
        self.last_attempt = Some(date);
        self
    }

    /// Sets `Will-Retry-Until`: only for [`Action::Delayed`] (RFC 3464 section
    /// 2.3.9); [`DsnBuilder::build`] refuses it with another action.
    pub fn will_retry_until(mut self, date: DateTime) -> Self {
        self.will_retry_until = Some(date);
        self
    }
}

fn is_atom_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
}

fn decode_orcpt(orcpt: &str) -> Option<String> {
    let (ty, x) = orcpt.split_once(';')?;
    if !is_atom_text(ty) {
        return None;
    }
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
    match XText::from_wire(x.as_bytes()) {
        Some(d) if printable(d.as_str()) => Some(format!("{ty};{}", d.as_str())),
        _ if printable(x) => Some(format!("{ty};{x}")),
        _ => None,
    }
}

/// `Final-Recipient` value: `rfc822; addr` for printable ASCII, else
/// `utf-8; ` with RFC 6533 `\x{HEX}` escapes (7-bit clean either way).
fn encode_final_recipient(addr: &str) -> String {
    if !addr.is_empty() && addr.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return format!("rfc822; {addr}");
    }
    let mut out = String::from("utf-8; ");
    for c in addr.chars() {
        if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

fn decode_final_recipient(v: &str) -> Option<String> {
    let (ty, addr) = v.split_once(';')?;
    let addr = addr.trim();
    if !ty.trim().eq_ignore_ascii_case("utf-8") {
        return Some(addr.to_owned());
    }
    let mut out = String::with_capacity(addr.len());
    let mut rest = addr;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(rest.get(..i)?);
        let after = rest.get(i + 3..)?;
        let end = after.find('}')?;
        let hex = after.get(..end)?;
        if hex.is_empty() || hex.len() > 6 {
            return None;
        }
        let code = u32::from_str_radix(hex, 16).ok()?;
        out.push(char::from_u32(code)?);
        rest = after.get(end + 1..)?;
    }
    out.push_str(rest);
    Some(out)
}

// ------------------------------------------------------------------ builder

/// What of the original message a DSN returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginalContent {
    /// Nothing: a two-part report.
    None,
    /// The header section only (`text/rfc822-headers`; `message/global-headers` for SMTPUTF8).
    Headers,
    /// The whole message (`message/rfc822`; `message/global` for SMTPUTF8).
    Full,
}

impl OriginalContent {
    /// The choice this crate recommends: `RET=HDRS` → headers; `RET=FULL` or
    /// no `RET` → the full message for failures when it is at most
    /// `full_limit` octets (e.g. [`DEFAULT_FULL_RETURN_LIMIT`]), else the
    /// headers; delay and success reports always return only the headers
    /// (the message is still on its way, and RFC 3461 section 4.3 leaves it
    /// to the MTA).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::dsn::{Action, OriginalContent, DEFAULT_FULL_RETURN_LIMIT};
    /// use mailbag_smtp_proto::types::Ret;
    ///
    /// let lim = DEFAULT_FULL_RETURN_LIMIT;
    /// assert_eq!(OriginalContent::choose(None, Action::Failed, 5000, lim), OriginalContent::Full);
    /// assert_eq!(OriginalContent::choose(Some(Ret::Headers), Action::Failed, 5000, lim), OriginalContent::Headers);
    /// assert_eq!(OriginalContent::choose(Some(Ret::Full), Action::Delayed, 5000, lim), OriginalContent::Headers);
    /// ```
    pub fn choose(ret: Option<Ret>, action: Action, size: u64, full_limit: u64) -> Self {
        match (ret, action) {
            (Some(Ret::Headers), _) => OriginalContent::Headers,
            (_, Action::Failed) if size <= full_limit => OriginalContent::Full,
            _ => OriginalContent::Headers,
        }
    }
}

/// The bytes around the original message; see [`DsnBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DsnParts {
    /// Everything before the returned content.
    pub prefix: Vec<u8>,
    /// Everything after it (empty for [`OriginalContent::None`]).
    pub suffix: Vec<u8>,
    /// Whether the DSN needs `BODY=8BITMIME` (the returned content is 8-bit).
    pub eight_bit: bool,
    /// Whether the DSN needs `SMTPUTF8` (non-ASCII header values).
    pub smtputf8: bool,
}

/// Builds one DSN; see the [module documentation](self) for an example.
#[derive(Debug, Clone)]
pub struct DsnBuilder {
    reporting_mta: String,
    from: String,
    to: String,
    date: DateTime,
    boundary: String,
    message_id: String,
    envid: Option<String>,
    arrival_date: Option<DateTime>,
    utf8: bool,
    recipients: Vec<RecipientReport>,
}

fn check_value(v: &str, what: &'static str) -> Result<(), DsnError> {
    if v.is_empty() || v.chars().any(|c| c.is_control()) {
        return Err(DsnError::InvalidValue(what));
    }
    Ok(())
}

fn check_boundary(b: &str) -> Result<(), DsnError> {
    let ok = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if b.is_empty() || b.len() > 70 || b.ends_with(' ') || !b.bytes().all(ok) {
        return Err(DsnError::InvalidBoundary);
    }
    Ok(())
}

/// Appends `name: value` folded at spaces to lines of at most 78 octets
/// where possible (never more than 998), with CRLF.
fn push_field(out: &mut String, name: &str, value: &str) -> Result<(), DsnError> {
    let mut line_len = name.len() + 1;
    out.push_str(name);
    out.push(':');
    for word in value.split(' ') {
        if line_len + 1 + word.len() > FOLD_AT && line_len > name.len() + 1 && !word.is_empty() {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
        if line_len > MAX_LINE {
            return Err(DsnError::LineTooLong);
        }
    }
    out.push_str("\r\n");
    Ok(())
}

impl DsnBuilder {
    /// Starts a DSN from the reporting MTA `reporting_mta` (its host name),
    /// with header `From: <from>` (e.g. `MAILER-DAEMON@host`) to `to` (the
    /// original envelope sender, without angle brackets), dated `date`, with
    /// the MIME `boundary` (1-70 characters of RFC 2046 `bchars`; make it
    /// unique, e.g. from the queue id and a random part, since it must not
    /// occur in the returned original) and the `Message-ID` value
    /// `message_id` (with angle brackets).
    pub fn new(
        reporting_mta: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        date: DateTime,
        boundary: impl Into<String>,
        message_id: impl Into<String>,
    ) -> Self {
        DsnBuilder {
            reporting_mta: reporting_mta.into(),
            from: from.into(),
            to: to.into(),
            date,
            boundary: boundary.into(),
            message_id: message_id.into(),
            envid: None,
            arrival_date: None,
            utf8: false,
            recipients: Vec::new(),
        }
    }

    /// Sets `Original-Envelope-Id` (the ENVID, xtext-decoded; written
    /// decoded when printable ASCII, xtext-encoded otherwise).
    pub fn envid(&mut self, envid: impl Into<String>) -> &mut Self {
        self.envid = Some(envid.into());
        self
    }

    /// Sets `Arrival-Date` (when the original arrived).
    pub fn arrival_date(&mut self, date: DateTime) -> &mut Self {
        self.arrival_date = Some(date);
        self
    }

    /// Uses the RFC 6533 types (`message/global-delivery-status`,
    /// `message/global`, `message/global-headers`, and `report-type=
    /// global-delivery-status`, RFC 6522 section 3: the second part's subtype)
    /// for an SMTPUTF8 original, whose returned content is then 8-bit
    /// ([`DsnParts::eight_bit`]): UTF-8 needs no `BODY=8BITMIME` from the
    /// original's client, but the DSN's own transfer does.
    pub fn smtputf8(&mut self, yes: bool) -> &mut Self {
        self.utf8 = yes;
        self
    }

    /// Adds a per-recipient report.
    pub fn recipient(&mut self, report: RecipientReport) -> &mut Self {
        self.recipients.push(report);
        self
    }

    fn subject(&self) -> &'static str {
        let has = |a: Action| self.recipients.iter().any(|r| r.action == a);
        if has(Action::Failed) {
            "Undelivered Mail Returned to Sender"
        } else if has(Action::Delayed) {
            "Delayed Mail (still being retried)"
        } else {
            "Successful Mail Delivery Report"
        }
    }

    fn human_text(&self, content: OriginalContent) -> Result<String, DsnError> {
        let mut t = String::new();
        t.push_str(&format!(
            "This is the mail delivery system at {}.\r\n\r\n",
            self.reporting_mta
        ));
        let has = |a: Action| self.recipients.iter().any(|r| r.action == a);
        if has(Action::Failed) {
            t.push_str("Your message could not be delivered to one or more recipients.\r\n");
        }
        if has(Action::Delayed) {
            t.push_str("Delivery of your message to one or more recipients is delayed;\r\n");
            t.push_str("the mail system keeps trying. You do not need to send it again.\r\n");
        }
        if has(Action::Delivered) || has(Action::Relayed) || has(Action::Expanded) {
            t.push_str("Your message was delivered to one or more recipients.\r\n");
        }
        t.push_str(match content {
            OriginalContent::Full => "The message is attached below.\r\n",
            OriginalContent::Headers => "The header section of the message is attached below.\r\n",
            OriginalContent::None => "",
        });
        for r in &self.recipients {
            t.push_str("\r\n");
            let mut line = format!(
                "<{}>: {} ({})",
                encode_final_recipient(&r.final_recipient)
                    .split_once("; ")
                    .map(|(_, a)| a.to_owned())
                    .unwrap_or_default(),
                r.action,
                r.status
            );
            if let Some(until) = r.will_retry_until {
                line.push_str(&format!(", retried until {until}"));
            }
            push_text_line(&mut t, &line)?;
            if let Some(d) = &r.diagnostic {
                if r.diagnostic_type == DiagnosticType::Smtp {
                    let host = r.remote_mta.as_deref().unwrap_or(&self.reporting_mta);
                    push_text_line(&mut t, &format!("    {host} said: {d}"))?;
                } else {
                    push_text_line(&mut t, &format!("    {d}"))?;
                }
            }
        }
        Ok(t)
    }

    /// Renders the DSN around the returned `content`: write
    /// [`DsnParts::prefix`], then the original (all of it for
    /// [`OriginalContent::Full`], its first [`header_section_len`] octets for
    /// [`OriginalContent::Headers`], nothing for [`OriginalContent::None`]),
    /// then [`DsnParts::suffix`]. `original_8bit`: the original has octets
    /// above 127 (e.g. it came with `BODY=8BITMIME`); the returned part is
    /// then labelled `Content-Transfer-Encoding: 8bit` and
    /// [`DsnParts::eight_bit`] is set. The original must use CRLF line ends.
    pub fn build(
        &self,
        content: OriginalContent,
        original_8bit: bool,
    ) -> Result<DsnParts, DsnError> {
        if self.recipients.is_empty() {
            return Err(DsnError::NoRecipients);
        }
        check_value(&self.reporting_mta, "reporting MTA")?;
        check_value(&self.from, "From")?;
        check_value(&self.to, "To")?;
        check_value(&self.message_id, "Message-ID")?;
        check_boundary(&self.boundary)?;
        for r in &self.recipients {
            if r.status.class() != r.action.status_class() {
                return Err(DsnError::StatusMismatch {
                    action: r.action,
                    status: r.status,
                });
            }
            if let Some(h) = &r.remote_mta {
                check_value(h, "Remote-MTA")?;
            }
            if !is_atom_text(r.diagnostic_type.as_str()) {
                return Err(DsnError::InvalidValue("diagnostic type"));
            }
            // RFC 3464 section 2.3.9: for a delayed report only.
            if r.will_retry_until.is_some() && r.action != Action::Delayed {
                return Err(DsnError::InvalidValue("Will-Retry-Until"));
            }
            if let Some(o) = &r.original_recipient {
                check_value(o, "Original-Recipient")?;
            }
        }
        // The returned part is labelled 8-bit when the original (or a global
        // DSN's) may hold such octets.
        let returned_8bit = (original_8bit || self.utf8) && content != OriginalContent::None;
        let b = &self.boundary;

        // The delivery-status part.
        let mut status = String::new();
        push_field(
            &mut status,
            "Reporting-MTA",
            &format!("dns; {}", self.reporting_mta),
        )?;
        if let Some(e) = &self.envid {
            let v = if !e.is_empty() && e.bytes().all(|c| (0x21..=0x7e).contains(&c)) {
                e.clone()
            } else {
                let mut w = Vec::new();
                XText::new(e.as_str()).encode(&mut w);
                String::from_utf8(w).map_err(|_| DsnError::InvalidValue("ENVID"))?
            };
            push_field(&mut status, "Original-Envelope-Id", &v)?;
        }
        if let Some(a) = self.arrival_date {
            push_field(&mut status, "Arrival-Date", &a.to_string())?;
        }
        for r in &self.recipients {
            status.push_str("\r\n");
            if let Some(o) = &r.original_recipient {
                push_field(&mut status, "Original-Recipient", o)?;
            }
            push_field(
                &mut status,
                "Final-Recipient",
                &encode_final_recipient(&r.final_recipient),
            )?;
            push_field(&mut status, "Action", r.action.as_str())?;
            push_field(&mut status, "Status", &r.status.to_string())?;
            if let Some(h) = &r.remote_mta {
                push_field(&mut status, "Remote-MTA", &format!("dns; {h}"))?;
            }
            if let Some(d) = &r.diagnostic {
                // RFC 3464's message/delivery-status is US-ASCII: a UTF-8 reply
                // keeps its characters only in RFC 6533's global type (and in
                // the human-readable part, which names its charset).
                let d: String = if self.utf8 {
                    d.clone()
                } else {
                    d.chars()
                        .map(|c| if c.is_ascii() { c } else { '?' })
                        .collect()
                };
                push_field(
                    &mut status,
                    "Diagnostic-Code",
                    &format!("{}; {d}", r.diagnostic_type.as_str()),
                )?;
            }
            if let Some(a) = r.last_attempt {
                push_field(&mut status, "Last-Attempt-Date", &a.to_string())?;
            }
            if let Some(u) = r.will_retry_until {
                push_field(&mut status, "Will-Retry-Until", &u.to_string())?;
            }
        }

        let human = self.human_text(content)?;
        let charset = if human.is_ascii() {
            "us-ascii"
        } else {
            "utf-8"
        };
        // A next hop's UTF-8 text in the notification (or a global report's UTF-8
        // fields) makes the body 8-bit: BODY=8BITMIME, not SMTPUTF8, which only
        // non-ASCII header fields and addresses call for (a probe's bounce to a
        // remote sender without SMTPUTF8 was refused, and lost, for a reply's "ü").
        let eight_bit = returned_8bit || !human.is_ascii() || !status.is_ascii();

        let mut head = String::new();
        push_field(&mut head, "Date", &self.date.to_string())?;
        push_field(
            &mut head,
            "From",
            &format!("Mail Delivery System <{}>", self.from),
        )?;
        push_field(&mut head, "To", &format!("<{}>", self.to))?;
        push_field(&mut head, "Subject", self.subject())?;
        push_field(&mut head, "Message-ID", &self.message_id)?;
        push_field(&mut head, "Auto-Submitted", "auto-replied")?;
        push_field(&mut head, "MIME-Version", "1.0")?;
        let report_subtype = if self.utf8 {
            "global-delivery-status"
        } else {
            "delivery-status"
        };
        let report_type = format!("message/{report_subtype}");
        push_field(
            &mut head,
            "Content-Type",
            &format!("multipart/report; report-type={report_subtype}; boundary=\"{b}\""),
        )?;
        if eight_bit {
            push_field(&mut head, "Content-Transfer-Encoding", "8bit")?;
        }

        // The boundary must not occur in anything we generate.
        let delimiter = format!("--{b}");
        if [&head, &human, &status]
            .iter()
            .any(|s| s.contains(&delimiter))
        {
            return Err(DsnError::BoundaryCollision);
        }

        let smtputf8 = !head.is_ascii() || !status.is_ascii();
        let mut p = head;
        p.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");
        p.push_str(&format!("--{b}\r\n"));
        p.push_str("Content-Description: Notification\r\n");
        p.push_str(&format!("Content-Type: text/plain; charset={charset}\r\n"));
        if charset != "us-ascii" {
            p.push_str("Content-Transfer-Encoding: 8bit\r\n");
        }
        p.push_str("\r\n");
        p.push_str(&human);
        p.push_str(&format!("\r\n--{b}\r\n"));
        p.push_str("Content-Description: Delivery report\r\n");
        p.push_str(&format!("Content-Type: {report_type}\r\n\r\n"));
        p.push_str(&status);
        let suffix = match content {
            OriginalContent::None => {
                p.push_str(&format!("\r\n--{b}--\r\n"));
                String::new()
            }
            OriginalContent::Headers | OriginalContent::Full => {
                let (what, ty) = match (content, self.utf8) {
                    (OriginalContent::Full, false) => ("Message", "message/rfc822"),
                    (OriginalContent::Full, true) => ("Message", "message/global"),
                    (_, false) => ("Message Headers", "text/rfc822-headers"),
                    (_, true) => ("Message Headers", "message/global-headers"),
                };
                // Named for what happened to it: a success report's copy is
                // no "Undelivered Message".
                let all = |a: Action| self.recipients.iter().all(|r| r.action == a);
                let state = if all(Action::Failed) {
                    "Undelivered "
                } else if all(Action::Delayed) {
                    "Delayed "
                } else {
                    ""
                };
                p.push_str(&format!("\r\n--{b}\r\n"));
                p.push_str(&format!("Content-Description: {state}{what}\r\n"));
                p.push_str(&format!("Content-Type: {ty}\r\n"));
                if returned_8bit {
                    p.push_str("Content-Transfer-Encoding: 8bit\r\n");
                }
                p.push_str("\r\n");
                format!("\r\n--{b}--\r\n")
            }
        };
        Ok(DsnParts {
            prefix: p.into_bytes(),
            suffix: suffix.into_bytes(),
            eight_bit,
            smtputf8,
        })
    }
}

/// A line of the human-readable part, folded like a header continuation.
fn push_text_line(out: &mut String, line: &str) -> Result<(), DsnError> {
    let mut field = String::new();
    // Reuse the header folder: a dummy one-character name, then drop it.
    push_field(&mut field, "x", line)?;
    out.push_str(field.get(3..).unwrap_or(""));
    Ok(())
}

/// The length of the header section at the start of `message`, up to and
/// including the CRLF that ends the last header field (the empty line
/// after it is not included): what a `text/rfc822-headers` part returns.
/// `None` when `message` has no empty line (read more of the message, or
/// treat it as all header).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::dsn::header_section_len;
///
/// assert_eq!(header_section_len(b"A: 1\r\nB: 2\r\n\r\nbody"), Some(12));
/// assert_eq!(header_section_len(b"\r\nbody"), Some(0));
/// assert_eq!(header_section_len(b"A: 1\r\n"), None);
/// ```
pub fn header_section_len(message: &[u8]) -> Option<usize> {
    if message.starts_with(b"\r\n") {
        return Some(0);
    }
    memchr::memmem::find(message, b"\r\n\r\n").map(|i| i + 2)
}

// ------------------------------------------------------------------ parser

/// The machine-readable content of a DSN, from [`parse_delivery_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStatus {
    /// `Reporting-MTA` (the name after `dns;`).
    pub reporting_mta: Option<String>,
    /// `Original-Envelope-Id`, as written.
    pub envid: Option<String>,
    /// `Arrival-Date`.
    pub arrival_date: Option<DateTime>,
    /// One report per recipient.
    pub recipients: Vec<RecipientReport>,
}

/// Splits a header-like block into unfolded `(name, value)` fields.
/// Lines end with CRLF or LF; a line starting with space or tab continues
/// the previous one.
fn fields(block: &str) -> Result<Vec<(&str, String)>, DsnError> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, v)) = out.last_mut() else {
                return Err(DsnError::Parse("continuation line without a field"));
            };
            v.push_str(line);
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(DsnError::Parse("line without a colon"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DsnError::Parse("bad field name"));
        }
        out.push((name, value.to_owned()));
    }
    for (_, v) in &mut out {
        let t = v.trim_matches([' ', '\t']);
        *v = t.to_owned();
    }
    Ok(out)
}

/// A `Diagnostic-Code` value's type and text; a value without a type
/// (no `;`, or a name that is no atom before it) is all text, of type
/// `smtp`.
fn split_diagnostic(v: &str) -> (DiagnosticType, &str) {
    match v.split_once(';') {
        Some((t, rest)) if t.trim().eq_ignore_ascii_case("smtp") => {
            (DiagnosticType::Smtp, rest.trim())
        }
        Some((t, rest)) if is_atom_text(t.trim()) => {
            (DiagnosticType::Other(t.trim().to_owned()), rest.trim())
        }
        _ => (DiagnosticType::Smtp, v),
    }
}

fn strip_type<'v>(v: &'v str, ty: &str) -> &'v str {
    match v.split_once(';') {
        Some((t, rest)) if t.trim().eq_ignore_ascii_case(ty) => rest.trim(),
        _ => v,
    }
}

/// Splits a block of `message/delivery-status` fields (the part's body)
/// into the per-message and per-recipient groups and parses them.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::dsn::{parse_status_fields, Action};
///
/// let s = parse_status_fields(
///     "Reporting-MTA: dns; mx.example.net\r\n\r\n\
///      Final-Recipient: rfc822; joe@example.com\r\nAction: delayed\r\nStatus: 4.4.1\r\n",
/// ).unwrap();
/// assert_eq!(s.recipients[0].action, Action::Delayed);
/// ```
pub fn parse_status_fields(body: &str) -> Result<DeliveryStatus, DsnError> {
    let normalized = body.replace("\r\n", "\n");
    let mut groups = normalized
        .split("\n\n")
        .map(|g| g.trim_matches('\n'))
        .filter(|g| !g.is_empty());
    let first = groups
        .next()
        .ok_or(DsnError::Parse("empty delivery-status part"))?;
    let mut status = DeliveryStatus {
        reporting_mta: None,
        envid: None,
        arrival_date: None,
        recipients: Vec::new(),
    };
    for (name, value) in fields(first)? {
        if name.eq_ignore_ascii_case("Reporting-MTA") {
            status.reporting_mta = Some(strip_type(&value, "dns").to_owned());
        } else if name.eq_ignore_ascii_case("Original-Envelope-Id") {
            status.envid = Some(value);
        } else if name.eq_ignore_ascii_case("Arrival-Date") {
            status.arrival_date = Some(value.parse().map_err(|_| DsnError::Parse("bad date"))?);
        }
    }
    for group in groups {
        let mut final_recipient = None;
        let mut action = None;
        let mut code = None;
        let mut r = RecipientReport::new("", Action::Failed, EnhancedStatusCode::c(5, 0, 0));
        for (name, value) in fields(group)? {
            let n = name.to_ascii_lowercase();
            match n.as_str() {
                "final-recipient" => {
                    final_recipient = Some(
                        decode_final_recipient(&value)
                            .ok_or(DsnError::Parse("bad Final-Recipient"))?,
                    );
                }
                "original-recipient" => r.original_recipient = Some(value),
                "action" => action = Some(value.parse::<Action>()?),
                "status" => {
                    // A comment may follow the code (RFC 3464 section 2.3.4).
                    let c = value.split([' ', '(']).next().unwrap_or("");
                    code = Some(c.parse().map_err(|_| DsnError::Parse("bad Status"))?);
                }
                "remote-mta" => r.remote_mta = Some(strip_type(&value, "dns").to_owned()),
                "diagnostic-code" => {
                    let (kind, text) = split_diagnostic(&value);
                    r.diagnostic = Some(text.to_owned());
                    r.diagnostic_type = kind;
                }
                "last-attempt-date" => {
                    r.last_attempt = Some(value.parse().map_err(|_| DsnError::Parse("bad date"))?)
                }
                "will-retry-until" => {
                    r.will_retry_until =
                        Some(value.parse().map_err(|_| DsnError::Parse("bad date"))?)
                }
                _ => {}
            }
        }
        r.final_recipient = final_recipient.ok_or(DsnError::Parse("no Final-Recipient"))?;
        r.action = action.ok_or(DsnError::Parse("no Action"))?;
        r.status = code.ok_or(DsnError::Parse("no Status"))?;
        status.recipients.push(r);
    }
    if status.recipients.is_empty() {
        return Err(DsnError::Parse("no per-recipient fields"));
    }
    Ok(status)
}

/// The value of parameter `param` in a `Content-Type` value (quoted or not).
fn content_type_param(ct: &str, param: &str) -> Option<String> {
    for part in ct.split(';').skip(1) {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(param) {
            let v = v.trim();
            return Some(
                v.strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_owned(),
            );
        }
    }
    None
}

fn split_head_body(msg: &str) -> (&str, &str) {
    if let Some(rest) = msg.strip_prefix("\r\n") {
        return ("", rest);
    }
    if let Some(i) = msg.find("\r\n\r\n") {
        return (
            msg.get(..i + 2).unwrap_or(""),
            msg.get(i + 4..).unwrap_or(""),
        );
    }
    match msg.find("\n\n") {
        Some(i) => (
            msg.get(..i + 1).unwrap_or(""),
            msg.get(i + 2..).unwrap_or(""),
        ),
        None => (msg, ""),
    }
}

/// Parses a whole DSN message: finds the `multipart/report` boundary, the
/// `message/delivery-status` (or `message/global-delivery-status`) part, and
/// its fields. Good enough for tests and mail clients; not a general MIME parser.
pub fn parse_delivery_status(message: &[u8]) -> Result<DeliveryStatus, DsnError> {
    // The returned original may be 8-bit or not UTF-8: only the parts up to
    // the status part need to be text.
    let text = match core::str::from_utf8(message) {
        Ok(t) => t,
        Err(e) => core::str::from_utf8(message.get(..e.valid_up_to()).unwrap_or(b""))
            .map_err(|_| DsnError::Parse("not text"))?,
    };
    let (head, body) = split_head_body(text);
    let ct = fields(head)?
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
        .map(|(_, v)| v)
        .ok_or(DsnError::Parse("no Content-Type"))?;
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/report")
    {
        return Err(DsnError::Parse("not multipart/report"));
    }
    let boundary = content_type_param(&ct, "boundary").ok_or(DsnError::Parse("no boundary"))?;
    let delimiter = format!("--{boundary}");
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (phead, pbody) = split_head_body(part);
        let pct = fields(phead)?
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let ty = pct.split(';').next().unwrap_or("").trim();
        if ty == "message/delivery-status" || ty == "message/global-delivery-status" {
            return parse_status_fields(pbody);
        }
    }
    Err(DsnError::Parse("no delivery-status part"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use proptest::prelude::*;

    fn date(unix: u64) -> DateTime {
        DateTime::new(unix, 0).unwrap()
    }

    /// The builder of the sample reports, with no recipient yet.
    fn builder() -> DsnBuilder {
        DsnBuilder::new(
            "mx.example.net",
            "MAILER-DAEMON@mx.example.net",
            "ann@example.org",
            DateTime::new(1_700_000_000, 60).unwrap(),
            "=_boundary_1",
            "<dsn.1@mx.example.net>",
        )
    }

    fn sample() -> DsnBuilder {
        let mut b = builder();
        b.envid("QQ314159")
            .arrival_date(DateTime::new(1_699_990_000, 60).unwrap());
        b.recipient(
            RecipientReport::new("joe@example.com", Action::Failed, "5.1.1".parse().unwrap())
                .original_recipient_xtext("rfc822;joe+2Bx@example.com")
                .remote_mta("mx.example.com")
                .diagnostic("550 5.1.1 <joe+x@example.com>:\r\n550 5.1.1 no such user")
                .last_attempt(DateTime::new(1_700_000_000, 60).unwrap()),
        );
        b
    }

    /// Close to RFC 3464 appendix example 1 (a simple failure), byte for byte.
    const EXPECTED: &str = "Date: Tue, 14 Nov 2023 23:13:20 +0100\r\n\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
To: <ann@example.org>\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn.1@mx.example.net>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"=_boundary_1\"\r\n\
\r\n\
This is a MIME-encapsulated message.\r\n\
\r\n\
--=_boundary_1\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail delivery system at mx.example.net.\r\n\
\r\n\
Your message could not be delivered to one or more recipients.\r\n\
The header section of the message is attached below.\r\n\
\r\n\
<joe@example.com>: failed (5.1.1)\r\n\
\x20   mx.example.com said: 550 5.1.1 <joe+x@example.com>: 550 5.1.1 no such\r\n\
\x20user\r\n\
\r\n\
--=_boundary_1\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
Original-Envelope-Id: QQ314159\r\n\
Arrival-Date: Tue, 14 Nov 2023 20:26:40 +0100\r\n\
\r\n\
Original-Recipient: rfc822;joe+x@example.com\r\n\
Final-Recipient: rfc822; joe@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.example.com\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <joe+x@example.com>: 550 5.1.1 no such user\r\n\
Last-Attempt-Date: Tue, 14 Nov 2023 23:13:20 +0100\r\n\
\r\n\
--=_boundary_1\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n";

    #[test]
    fn failure_report_byte_for_byte() {
        let parts = sample().build(OriginalContent::Headers, false).unwrap();
        assert_eq!(String::from_utf8(parts.prefix.clone()).unwrap(), EXPECTED);
        assert_eq!(parts.suffix, b"\r\n--=_boundary_1--\r\n");
        assert!(!parts.eight_bit && !parts.smtputf8);
        for line in EXPECTED.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
        }
    }

    /// The returned copy is named for what happened to it: not
    /// "Undelivered" in a success report (a conformance probe found a
    /// "relayed" report's headers labelled so), "Delayed" in a delay warning.
    #[test]
    fn the_returned_part_is_named_for_the_action() {
        let description = |actions: &[Action], content| {
            let mut b = builder();
            for (i, a) in actions.iter().enumerate() {
                let status = if *a == Action::Delayed {
                    "4.4.1"
                } else {
                    "2.0.0"
                };
                let status = if *a == Action::Failed {
                    "5.1.1"
                } else {
                    status
                };
                b.recipient(RecipientReport::new(
                    format!("r{i}@example.com"),
                    *a,
                    status.parse().unwrap(),
                ));
            }
            let prefix = b.build(content, false).unwrap().prefix;
            let text = String::from_utf8(prefix).unwrap();
            text.rsplit("Content-Description: ")
                .next()
                .and_then(|r| r.split("\r\n").next())
                .unwrap()
                .to_owned()
        };
        let (full, headers) = (OriginalContent::Full, OriginalContent::Headers);
        assert_eq!(description(&[Action::Failed], full), "Undelivered Message");
        assert_eq!(
            description(&[Action::Delayed], headers),
            "Delayed Message Headers"
        );
        assert_eq!(description(&[Action::Relayed], headers), "Message Headers");
        assert_eq!(
            description(&[Action::Failed, Action::Delayed], full),
            "Message"
        );
    }

    /// A UTF-8 reply (RFC 6531 servers send them) is made ASCII in the
    /// US-ASCII message/delivery-status, and kept in the global type.
    #[test]
    fn a_utf8_diagnostic_is_ascii_in_the_delivery_status_part() {
        let report = |b: &mut DsnBuilder| {
            b.recipient(
                RecipientReport::new("eve@example.com", Action::Failed, "5.1.1".parse().unwrap())
                    .diagnostic("550 5.1.1 Empf\u{e4}nger unbekannt"),
            );
        };
        let mut plain = sample();
        report(&mut plain);
        let parts = plain.build(OriginalContent::None, false).unwrap();
        // The notification keeps the "ä" (UTF-8, 8bit): the body is 8-bit, but no
        // header needs SMTPUTF8 (a probe's bounce was refused for it, and lost).
        assert!(parts.eight_bit && !parts.smtputf8);
        let p = String::from_utf8(parts.prefix).unwrap();
        let head = &p[..p.find("\r\n\r\n").unwrap() + 2];
        assert!(
            head.contains("Content-Transfer-Encoding: 8bit\r\n"),
            "{head}"
        );
        assert!(p.contains("charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"));
        assert!(p.contains("said: 550 5.1.1 Empf\u{e4}nger unbekannt\r\n"));
        let status = &p[p.find("Reporting-MTA").unwrap()..];
        let status = &status[..status.find("--=_boundary_1").unwrap()];
        assert!(status.is_ascii(), "{status}");
        assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1 Empf?nger unbekannt\r\n"));
        let mut global = sample();
        global.smtputf8(true);
        report(&mut global);
        let parts = global.build(OriginalContent::None, false).unwrap();
        assert!(parts.eight_bit && parts.smtputf8);
        let p = String::from_utf8(parts.prefix).unwrap();
        assert!(p.contains("Diagnostic-Code: smtp; 550 5.1.1 Empf\u{e4}nger unbekannt\r\n"));
    }

    #[test]
    fn a_text_of_another_type_is_no_smtp_reply() {
        let mut b = sample();
        b.recipient(
            RecipientReport::new("eve@example.com", Action::Failed, "5.4.7".parse().unwrap())
                .typed_diagnostic(
                    DiagnosticType::Other("X-Mailbag".into()),
                    "retry  time\r\nexceeded",
                ),
        );
        let msg = b.build(OriginalContent::None, false).unwrap().prefix;
        let p = String::from_utf8(msg.clone()).unwrap();
        assert!(
            p.contains("Diagnostic-Code: X-Mailbag; retry time exceeded\r\n"),
            "{p}"
        );
        assert!(p.contains("\r\n    retry time exceeded\r\n"), "{p}");
        assert!(!p.contains("said: retry"), "{p}");
        let parsed = parse_delivery_status(&msg).unwrap();
        let eve = parsed
            .recipients
            .iter()
            .find(|r| r.final_recipient == "eve@example.com")
            .unwrap();
        assert_eq!(
            eve.diagnostic_type,
            DiagnosticType::Other("X-Mailbag".into())
        );
        assert_eq!(eve.diagnostic.as_deref(), Some("retry time exceeded"));

        // Will-Retry-Until belongs to delayed reports only.
        let mut early = sample();
        early.recipient(
            RecipientReport::new(
                "eve@example.com",
                Action::Delivered,
                "2.0.0".parse().unwrap(),
            )
            .will_retry_until(DateTime::new(0, 0).unwrap()),
        );
        assert_eq!(
            early.build(OriginalContent::None, false).unwrap_err(),
            DsnError::InvalidValue("Will-Retry-Until")
        );

        // The type is an atom, or the DSN is not built.
        let mut bad = sample();
        bad.recipient(
            RecipientReport::new("eve@example.com", Action::Failed, "5.4.7".parse().unwrap())
                .typed_diagnostic(DiagnosticType::Other("X Mailbag;".into()), "t"),
        );
        assert_eq!(
            bad.build(OriginalContent::None, false).unwrap_err(),
            DsnError::InvalidValue("diagnostic type")
        );
    }

    #[test]
    fn full_and_none_and_8bit_and_global() {
        let original = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes();
        let parts = sample().build(OriginalContent::Full, true).unwrap();
        let p = String::from_utf8(parts.prefix.clone()).unwrap();
        assert!(
            p.contains("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
        );
        assert!(p.contains("\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThis is a MIME"));
        assert!(parts.eight_bit);
        let mut msg = parts.prefix.clone();
        msg.extend_from_slice(original);
        msg.extend_from_slice(&parts.suffix);
        assert!(msg.ends_with(b"na\xc3\xafve\r\n\r\n--=_boundary_1--\r\n"));
        assert_eq!(parse_delivery_status(&msg).unwrap().recipients.len(), 1);

        let none = sample().build(OriginalContent::None, true).unwrap();
        assert!(none.suffix.is_empty() && !none.eight_bit);
        let p = String::from_utf8(none.prefix.clone()).unwrap();
        assert!(p.ends_with("\r\n--=_boundary_1--\r\n"));
        assert!(!p.contains("attached"));
        assert_eq!(
            parse_delivery_status(&none.prefix)
                .unwrap()
                .recipients
                .len(),
            1
        );

        let mut g = sample();
        g.smtputf8(true);
        let parts = g.build(OriginalContent::Headers, false).unwrap();
        // The original's UTF-8 is 8-bit however it came: the DSN is sent with
        // BODY=8BITMIME, and its report-type names the global subtype.
        assert!(parts.eight_bit);
        let p = String::from_utf8(parts.prefix).unwrap();
        assert!(p.contains("multipart/report; report-type=global-delivery-status;"));
        assert!(p.contains("Content-Type: message/global-delivery-status\r\n"));
        assert!(p.contains(
            "Content-Type: message/global-headers\r\nContent-Transfer-Encoding: 8bit\r\n"
        ));
        assert!(!g.build(OriginalContent::None, false).unwrap().eight_bit);
    }

    #[test]
    fn delayed_report_and_subjects() {
        let now = date(1_700_000_000);
        let mut b = DsnBuilder::new("mx", "MAILER-DAEMON@mx", "a@b", now, "xyz", "<1@mx>");
        b.recipient(
            RecipientReport::new("r@x", Action::Delayed, "4.4.1".parse().unwrap())
                .will_retry_until(date(1_700_432_000))
                .diagnostic("connection timed out"),
        );
        let parts = b.build(OriginalContent::Headers, false).unwrap();
        let p = String::from_utf8(parts.prefix).unwrap();
        assert!(p.contains("Subject: Delayed Mail (still being retried)\r\n"));
        assert!(p.contains("Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"));
        assert!(p.contains("retried until Sun, 19 Nov 2023"));
        assert!(p.contains("    mx said: connection timed out"));
        let s = parse_delivery_status(p.as_bytes()).unwrap();
        assert_eq!(s.recipients[0].will_retry_until, Some(date(1_700_432_000)));

        let mut ok = DsnBuilder::new("mx", "M@mx", "a@b", now, "xyz", "<1@mx>");
        ok.recipient(RecipientReport::new(
            "r@x",
            Action::Delivered,
            "2.0.0".parse().unwrap(),
        ));
        let p = String::from_utf8(ok.build(OriginalContent::None, false).unwrap().prefix).unwrap();
        assert!(p.contains("Subject: Successful Mail Delivery Report\r\n"));
    }

    #[test]
    fn validation_errors() {
        let now = date(0);
        let mk = |b: &str| {
            let mut d = DsnBuilder::new("mx", "M@mx", "a@b", now, b, "<1@mx>");
            d.recipient(RecipientReport::new(
                "r@x",
                Action::Failed,
                "5.0.0".parse().unwrap(),
            ));
            d
        };
        assert_eq!(
            mk("").build(OriginalContent::None, false),
            Err(DsnError::InvalidBoundary)
        );
        assert_eq!(
            mk("a b ").build(OriginalContent::None, false),
            Err(DsnError::InvalidBoundary)
        );
        assert_eq!(
            mk(&"x".repeat(71)).build(OriginalContent::None, false),
            Err(DsnError::InvalidBoundary)
        );
        assert_eq!(
            mk("a\"b").build(OriginalContent::None, false),
            Err(DsnError::InvalidBoundary)
        );
        // "--q1" occurs in the generated text: as a boundary it would collide.
        let mut d = mk("q1");
        d.recipients[0].remote_mta = Some("x--q1".into());
        assert_eq!(
            d.build(OriginalContent::None, false),
            Err(DsnError::BoundaryCollision)
        );
        assert!(mk("q1").build(OriginalContent::None, false).is_ok());
        let mut d = DsnBuilder::new("mx\r\nBcc: x", "M@mx", "a@b", now, "q1", "<1@mx>");
        d.recipient(RecipientReport::new(
            "r@x",
            Action::Failed,
            "5.0.0".parse().unwrap(),
        ));
        assert_eq!(
            d.build(OriginalContent::None, false),
            Err(DsnError::InvalidValue("reporting MTA"))
        );
        let mut d = DsnBuilder::new("mx", "M@mx", "a@b", now, "q1", "<1@mx>");
        d.recipient(RecipientReport::new(
            "r@x",
            Action::Delayed,
            "5.0.0".parse().unwrap(),
        ));
        assert!(matches!(
            d.build(OriginalContent::None, false),
            Err(DsnError::StatusMismatch { .. })
        ));
        let mut d = DsnBuilder::new("mx", "M@mx", "a@b", now, "q1", "<1@mx>");
        d.recipient(
            RecipientReport::new("r@x", Action::Failed, "5.0.0".parse().unwrap())
                .remote_mta("y".repeat(1500)),
        );
        assert_eq!(
            d.build(OriginalContent::None, false),
            Err(DsnError::LineTooLong)
        );
        // Long diagnostic words are split instead, and the text is bounded.
        let r = RecipientReport::new("r@x", Action::Failed, "5.0.0".parse().unwrap())
            .diagnostic(&format!("550 {}\r\n{}", "y".repeat(1500), "z".repeat(3000)));
        let diag = r.diagnostic.clone().unwrap();
        assert_eq!(diag.len(), MAX_DIAGNOSTIC_LEN);
        assert!(diag.split(' ').all(|w| w.len() <= 400));
        let mut d = DsnBuilder::new("mx", "M@mx", "a@b", now, "q1", "<1@mx>");
        d.recipient(r);
        assert!(d.build(OriginalContent::None, false).is_ok());
    }

    #[test]
    fn xtext_and_utf8_addresses() {
        assert_eq!(
            decode_orcpt("rfc822;a+2Bb+3Dc@x").as_deref(),
            Some("rfc822;a+b=c@x")
        );
        // Decoding to something unprintable keeps the xtext.
        assert_eq!(
            decode_orcpt("rfc822;a+20b@x").as_deref(),
            Some("rfc822;a+20b@x")
        );
        assert_eq!(
            decode_orcpt("utf-8;j+C3+B6e@x").as_deref(),
            Some("utf-8;j+C3+B6e@x")
        );
        assert_eq!(decode_orcpt("noaddrtype"), None);
        assert_eq!(decode_orcpt("bad type;x"), None);
        let enc = encode_final_recipient("jöe+1@exämple.org");
        assert_eq!(enc, "utf-8; j\\x{F6}e\\x{2B}1@ex\\x{E4}mple.org");
        assert_eq!(
            decode_final_recipient(&enc).as_deref(),
            Some("jöe+1@exämple.org")
        );
        assert_eq!(decode_final_recipient("utf-8; a\\x{110000}b"), None);
        assert_eq!(decode_final_recipient("utf-8; a\\x{41"), None);
        assert_eq!(encode_final_recipient("a b@x"), "utf-8; a\\x{20}b@x");
    }

    /// A bounce as Postfix writes it (comments in dates, a Postfix
    /// diagnostic type, extension fields, upper-case address type).
    #[test]
    fn parses_a_postfix_style_bounce() {
        let msg = "Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"4B1C81234.1700000000/mail.example.com\"\r\n\
\r\n\
This is a MIME-encapsulated message.\r\n\
\r\n\
--4B1C81234.1700000000/mail.example.com\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients.\r\n\
\r\n\
--4B1C81234.1700000000/mail.example.com\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mail.example.com\r\n\
X-Postfix-Queue-ID: 4B1C81234\r\n\
X-Postfix-Sender: rfc822; ann@example.org\r\n\
Arrival-Date: Tue, 14 Nov 2023 23:13:20 +0100 (CET)\r\n\
\r\n\
Final-Recipient: RFC822; joe@example.net\r\n\
Original-Recipient: rfc822;joe@example.net\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.example.net\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <joe@example.net>: Recipient address\r\n\
\x20   rejected: User unknown in local recipient table\r\n\
\r\n\
Final-Recipient: rfc822; kim@example.net\r\n\
Action: failed\r\n\
Status: 5.0.0 (permanent failure)\r\n\
Diagnostic-Code: X-Postfix; mail for example.net loops back to myself\r\n\
\r\n\
--4B1C81234.1700000000/mail.example.com\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Subject: hi\r\n\
\r\n\
--4B1C81234.1700000000/mail.example.com--\r\n";
        let s = parse_delivery_status(msg.as_bytes()).unwrap();
        assert_eq!(s.reporting_mta.as_deref(), Some("mail.example.com"));
        assert_eq!(s.arrival_date, DateTime::new(1_700_000_000, 60).ok());
        assert_eq!(s.recipients.len(), 2);
        let joe = &s.recipients[0];
        assert_eq!(joe.final_recipient, "joe@example.net");
        assert_eq!(
            joe.original_recipient.as_deref(),
            Some("rfc822;joe@example.net")
        );
        assert_eq!(joe.remote_mta.as_deref(), Some("mx.example.net"));
        assert_eq!(
            joe.diagnostic.as_deref(),
            Some(
                "550 5.1.1 <joe@example.net>: Recipient address    rejected: User unknown in local recipient table"
            )
        );
        let kim = &s.recipients[1];
        assert_eq!(kim.status.to_string(), "5.0.0");
        assert_eq!(
            kim.diagnostic.as_deref(),
            Some("mail for example.net loops back to myself")
        );
        assert_eq!(
            kim.diagnostic_type,
            DiagnosticType::Other("X-Postfix".into())
        );
        assert_eq!(joe.diagnostic_type, DiagnosticType::Smtp);
    }

    #[test]
    fn envid_is_written_decoded_or_as_xtext() {
        let mk = |envid: &str| {
            let mut b = DsnBuilder::new("mx", "M@mx", "a@b", date(0), "q1", "<1@mx>");
            b.envid(envid);
            b.recipient(RecipientReport::new(
                "r@x",
                Action::Failed,
                "5.0.0".parse().unwrap(),
            ));
            let parts = b.build(OriginalContent::None, false).unwrap();
            parse_delivery_status(&parts.prefix).unwrap().envid.unwrap()
        };
        assert_eq!(mk("QQ3+1=4"), "QQ3+1=4");
        assert_eq!(mk("a b+c\u{e9}"), "a+20b+2Bc+C3+A9");
    }

    #[test]
    fn parser_rejects_what_it_cannot_read() {
        for bad in [
            &b""[..],
            b"Content-Type: text/plain\r\n\r\nhi",
            b"Content-Type: multipart/report\r\n\r\n",
            b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nAction: failed\r\n--x--\r\n",
            b" folded: first\r\n",
        ] {
            assert!(parse_delivery_status(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[!-~]{1,12}( [!-~]{1,12}){0,12}"
    }

    fn arb_report() -> impl Strategy<Value = RecipientReport> {
        let action = prop_oneof![
            Just(Action::Failed),
            Just(Action::Delayed),
            Just(Action::Delivered),
            Just(Action::Relayed),
            Just(Action::Expanded),
        ];
        (
            "[a-z0-9.+=\\\\é]{1,10}@[a-z.ä]{1,10}",
            proptest::option::of("[!-~&&[^;]]{1,20}"),
            action,
            (0u16..1000, 0u16..1000),
            proptest::option::of("[a-z0-9.-]{1,20}"),
            proptest::option::of(arb_text()),
            proptest::option::of((0u64..DateTime::MAX_UNIX, -1439i16..1440)),
            proptest::option::of((0u64..DateTime::MAX_UNIX, -1439i16..1440)),
        )
            .prop_map(|(fr, orcpt, action, (s, d), mta, diag, last, until)| {
                let status = EnhancedStatusCode::new(action.status_class(), s, d).unwrap();
                let mut r = RecipientReport::new(fr, action, status);
                if let Some(o) = orcpt {
                    r = r.original_recipient_xtext(&format!("rfc822;{o}"));
                }
                if let Some(m) = mta {
                    r = r.remote_mta(m);
                }
                if let Some(d) = diag {
                    r = r.diagnostic(&d);
                }
                r.last_attempt = last.and_then(|(u, o)| DateTime::new(u, o).ok());
                // Will-Retry-Until belongs to delayed reports only.
                r.will_retry_until = until
                    .filter(|_| action == Action::Delayed)
                    .and_then(|(u, o)| DateTime::new(u, o).ok());
                r
            })
    }

    proptest! {
        #[test]
        fn build_parse_round_trip(
            reports in proptest::collection::vec(arb_report(), 1..4),
            envid in proptest::option::of("[!-~]{1,20}"),
            arrival in proptest::option::of(0u64..DateTime::MAX_UNIX),
            content in prop_oneof![Just(OriginalContent::None), Just(OriginalContent::Headers), Just(OriginalContent::Full)],
        ) {
            let mut b = DsnBuilder::new("mx.example.net", "MAILER-DAEMON@mx.example.net", "a@b",
                date(1_700_000_000), "=_pt_boundary_9f3", "<1@mx>");
            if let Some(e) = &envid { b.envid(e.clone()); }
            if let Some(a) = arrival { b.arrival_date(date(a)); }
            for r in &reports { b.recipient(r.clone()); }
            let parts = b.build(content, false).unwrap();
            let mut msg = parts.prefix.clone();
            msg.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n");
            msg.extend_from_slice(&parts.suffix);
            for line in msg.split(|c| *c == b'\n') {
                prop_assert!(line.len() <= MAX_LINE + 1);
            }
            let parsed = parse_delivery_status(&msg).unwrap();
            prop_assert_eq!(parsed.reporting_mta.as_deref(), Some("mx.example.net"));
            prop_assert_eq!(parsed.envid, envid);
            prop_assert_eq!(parsed.arrival_date, arrival.map(date));
            prop_assert_eq!(parsed.recipients, reports);
        }

        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_delivery_status(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = parse_status_fields(s);
                let _ = s.parse::<DateTime>();
            }
        }
    }
}
