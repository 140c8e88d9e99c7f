//! Envelopes and their text format (documented on [`Envelope`]).

use std::net::IpAddr;

use super::id::parse_canonical_u64;
use super::{EnvelopeError, QueueId};

/// The first line of every envelope file (format version 2; version 1 was
/// the single-file spool of the example server).
pub const ENVELOPE_MAGIC: &str = "mailbag-queue 2";

/// The DSN `RET` parameter (RFC 3461 section 4.3): what a bounce should return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: only the header section.
    Hdrs,
}

/// The `BODY` parameter of `MAIL FROM` (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// No `BODY` or `BODY=7BIT`.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (only relayable to a server offering BINARYMIME and CHUNKING).
    BinaryMime,
}

/// The DSN `NOTIFY` parameter of one recipient (RFC 3461 section 4.1).
/// All three `false` is `NOTIFY=NEVER` ([`Notify::NEVER`]).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::Notify;
///
/// let n = Notify { success: false, failure: true, delay: true };
/// assert!(!n.is_never());
/// assert!(Notify::NEVER.is_never());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `SUCCESS`: report successful delivery.
    pub success: bool,
    /// `FAILURE`: report failure.
    pub failure: bool,
    /// `DELAY`: report delays.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// Whether this is `NOTIFY=NEVER`.
    pub fn is_never(&self) -> bool {
        *self == Notify::NEVER
    }
}

/// The result of one delivery attempt for one recipient.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// When (unix seconds).
    pub at: u64,
    /// The remote MTA that answered; `None` when the result is local
    /// (connection refused, DNS failure, null MX, expiry, a copy stored by
    /// this server, ...).
    pub host: Option<String>,
    /// The remote reply (e.g. `550 5.1.1 no such user`; lines of a
    /// multi-line reply joined with `\n`) or a local error text.
    pub reply: String,
}

/// Where delivery to one recipient stands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecipientState {
    /// Not delivered yet; `last` is the last temporary failure, if any.
    Pending {
        /// The last attempt's result.
        last: Option<Outcome>,
    },
    /// Accepted by the next hop.
    Delivered(Outcome),
    /// Failed permanently (5xx, null MX, expiry, ...).
    Failed(Outcome),
}

impl RecipientState {
    /// Whether the recipient still waits for delivery.
    pub fn is_pending(&self) -> bool {
        matches!(self, RecipientState::Pending { .. })
    }

    /// The last outcome, whatever the state.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            RecipientState::Pending { last } => last.as_ref(),
            RecipientState::Delivered(o) | RecipientState::Failed(o) => Some(o),
        }
    }
}

/// Whether the DSN that a settled recipient's final state calls for (a failure
/// report for [`RecipientState::Failed`]; for [`RecipientState::Delivered`] with
/// `NOTIFY=SUCCESS`, a "relayed" report when the next hop did not take over DSN
/// duty, or a "delivered" one when the copy was stored locally) has been made
/// durable. Written as the recipient's
/// optional `report` line.
///
/// The engine records a failure together with [`ReportState::Owed`] in one
/// envelope update, makes the DSN durable, and only then writes
/// [`ReportState::Done`]; a message is removed only when every recipient is
/// settled and nothing is owed ([`Envelope::is_complete`]). A crash in between
/// sends the DSN again on restart (at least once, never lost).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::{Outcome, Recipient, RecipientState, ReportState};
///
/// let mut r = Recipient::new("joe@example.net");
/// assert_eq!(r.report, ReportState::Unrecorded);
/// r.state = RecipientState::Failed(Outcome { at: 5, host: None, reply: "550 5.1.1 no".into() });
/// r.report = ReportState::Owed;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReportState {
    /// No `report` line: a pending recipient, or an envelope written before the
    /// line existed. For such an old envelope a failed recipient counts as owed
    /// only when its failure was recorded in a pass that never completed (see
    /// [`Envelope::report_owed`]); a delivered one never does.
    #[default]
    Unrecorded,
    /// `report owed`: a DSN is due and not yet durable.
    Owed,
    /// `report done`: the DSN is durable (delivered locally or queued), or none
    /// was wanted (`NOTIFY`, null sender).
    Done,
}

/// One recipient of a queued message.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::{Notify, Recipient};
///
/// let mut r = Recipient::new("joe@example.net");
/// assert!(r.wants_failure_dsn() && r.wants_delay_dsn() && !r.wants_success_dsn());
/// r.notify = Some(Notify::NEVER);
/// assert!(!r.wants_failure_dsn());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Recipient {
    /// The forward path without angle brackets.
    pub address: String,
    /// The DSN `ORCPT` parameter as received: `addr-type;xtext`.
    pub orcpt: Option<String>,
    /// The DSN `NOTIFY` parameter; `None` when not given.
    pub notify: Option<Notify>,
    /// Delivery state.
    pub state: RecipientState,
    /// Whether a "delayed" DSN has been sent for this recipient.
    pub delay_notified: bool,
    /// Whether the DSN for the final state is made ([`ReportState`]).
    pub report: ReportState,
}

impl Recipient {
    /// A pending recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Self {
        Recipient {
            address: address.into(),
            orcpt: None,
            notify: None,
            state: RecipientState::Pending { last: None },
            delay_notified: false,
            report: ReportState::Unrecorded,
        }
    }

    /// Whether a failure DSN is wanted (RFC 3461: also when `NOTIFY` is absent).
    pub fn wants_failure_dsn(&self) -> bool {
        self.notify.is_none_or(|n| n.failure)
    }

    /// Whether a delay DSN is wanted (RFC 3461 section 4.1: an absent `NOTIFY`
    /// is treated as `FAILURE,DELAY`).
    pub fn wants_delay_dsn(&self) -> bool {
        self.notify.is_none_or(|n| n.delay)
    }

    /// Whether a success DSN is wanted (only with `NOTIFY=SUCCESS`).
    pub fn wants_success_dsn(&self) -> bool {
        self.notify.is_some_and(|n| n.success)
    }
}

/// The envelope of a message to enqueue; see [`Queue::enqueue`](super::Queue::enqueue).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::{NewEnvelope, Recipient, Ret};
///
/// let mut env = NewEnvelope::new("ann@example.org", 1_700_000_000);
/// env.ret = Some(Ret::Hdrs);
/// env.client_ip = Some("192.0.2.7".parse().unwrap());
/// env.recipients.push(Recipient::new("joe@example.net"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewEnvelope {
    /// The reverse path without angle brackets; `""` is the null sender `<>`.
    pub reverse_path: String,
    /// The DSN `ENVID` (RFC 3461 section 4.4), xtext-decoded.
    pub envid: Option<String>,
    /// The DSN `RET` parameter.
    pub ret: Option<Ret>,
    /// The submitting client's address.
    pub client_ip: Option<IpAddr>,
    /// Arrival time, unix seconds.
    pub arrival: u64,
    /// The `BODY` parameter.
    pub body: BodyType,
    /// Whether `MAIL FROM` carried `SMTPUTF8`.
    pub smtputf8: bool,
    /// The recipients (at least one).
    pub recipients: Vec<Recipient>,
}

impl NewEnvelope {
    /// An envelope with no recipients yet and no optional parameters.
    pub fn new(reverse_path: impl Into<String>, arrival: u64) -> Self {
        NewEnvelope {
            reverse_path: reverse_path.into(),
            envid: None,
            ret: None,
            client_ip: None,
            arrival,
            body: BodyType::SevenBit,
            smtputf8: false,
            recipients: Vec::new(),
        }
    }
}

/// The envelope of a queued message, read with
/// [`Queue::envelope`](super::Queue::envelope) and written back with
/// [`DeliveryLock::update`](super::DeliveryLock::update).
///
/// # Text format
///
/// The envelope file is meant to be read by an administrator and parsed
/// strictly by the queue. One `key value` per line, fixed order, every line
/// ends with LF, recipient attributes indented by two spaces, an `end` line
/// last. A value is the rest of the line after the single space; in it `%`,
/// control characters (including CR and LF) and DEL are written as `%XX`, so
/// no value can start a new line or field. Addresses are shown in angle
/// brackets (`from <>` is the null sender). Optional lines: `client`,
/// `envid`, `ret`, and per recipient `orcpt`, `notify` (`never` or a
/// subset of `success,failure,delay` in that order), `delay-notified yes`,
/// `held yes` (after `next-attempt`: [`Envelope::held`]),
/// `report owed` or `report done` ([`ReportState`]; added compatibly to
/// format 2, so envelopes written without it still parse, as
/// [`ReportState::Unrecorded`]), and `at`/`host`/`reply` (the last outcome;
/// required for `delivered` and `failed`, `host` absent for a local outcome).
/// Numbers are canonical decimal.
///
/// ```text
/// mailbag-queue 2
/// id 001700000000.1.1
/// arrival 1700000000
/// client 192.0.2.7
/// from <ann@example.org>
/// envid QQ314159
/// ret hdrs
/// body 8bitmime
/// smtputf8 no
/// size 2048
/// attempts 1
/// next-attempt 1700000300
/// rcpt <joe@example.net>
///   orcpt rfc822;joe@example.net
///   notify failure,delay
///   state pending
///   at 1700000000
///   host mx.example.net
///   reply 451 4.7.1 greylisted, try again later
/// rcpt <kim@example.net>
///   report owed
///   state failed
///   at 1700000000
///   host mx.example.net
///   reply 550 5.1.1 no such user
/// end
/// ```
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::Envelope;
///
/// let text = "mailbag-queue 2\nid 000000000010.1.1\narrival 10\nfrom <>\nbody 7bit\n\
///             smtputf8 no\nsize 5\nattempts 0\nnext-attempt 10\nrcpt <joe@example.net>\n\
///             \x20 state pending\nend\n";
/// let env = Envelope::parse(text.as_bytes()).unwrap();
/// assert_eq!(env.reverse_path, ""); // the null sender
/// assert!(!env.is_finished());
/// assert_eq!(env.encode(), text.as_bytes());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// The message's id.
    pub id: QueueId,
    /// The reverse path without angle brackets; `""` is the null sender.
    pub reverse_path: String,
    /// The DSN `ENVID`, xtext-decoded.
    pub envid: Option<String>,
    /// The DSN `RET` parameter.
    pub ret: Option<Ret>,
    /// The submitting client's address.
    pub client_ip: Option<IpAddr>,
    /// Arrival time, unix seconds.
    pub arrival: u64,
    /// The `BODY` parameter.
    pub body: BodyType,
    /// Whether `MAIL FROM` carried `SMTPUTF8`.
    pub smtputf8: bool,
    /// Body size in octets (as stored, CRLF line ends).
    pub size: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (unix seconds).
    pub next_attempt: u64,
    /// Put on hold by an administrator (`mailbagd queue hold`): never
    /// attempted, no DSN made, until released. Written as the optional line
    /// `held yes` after `next-attempt` (added compatibly to format 2).
    pub held: bool,
    /// The recipients.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    pub(crate) fn from_new(id: QueueId, new: &NewEnvelope, size: u64) -> Self {
        Envelope {
            id,
            reverse_path: new.reverse_path.clone(),
            envid: new.envid.clone(),
            ret: new.ret,
            client_ip: new.client_ip,
            arrival: new.arrival,
            body: new.body,
            smtputf8: new.smtputf8,
            size,
            attempts: 0,
            next_attempt: new.arrival,
            held: false,
            recipients: new.recipients.clone(),
        }
    }

    /// Whether no recipient is pending any more (the message can be removed
    /// once the DSNs it calls for are made: see [`Envelope::is_complete`]).
    pub fn is_finished(&self) -> bool {
        !self.recipients.iter().any(|r| r.state.is_pending())
    }

    /// Whether recipient `i` is settled and its DSN is still owed: its
    /// [`Recipient::report`] is [`ReportState::Owed`], or it is
    /// [`ReportState::Unrecorded`] (an envelope written before the `report`
    /// line existed) on a failed recipient whose failure was recorded at or
    /// after `next_attempt`. That is the mark of an interrupted pass: the
    /// writer of those envelopes recorded a failure first and sent its DSN at
    /// the end of the pass, whose final update always moved `next_attempt`
    /// past every outcome of the pass (or removed the message). Failures of
    /// completed passes were reported then; treating them as owed would
    /// bounce them again. An unrecorded delivered recipient owes nothing (the
    /// old envelope does not say whether the next hop took over DSN duty).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_mailstore::queue::{Envelope, ReportState};
    ///
    /// let text = "mailbag-queue 2\nid 000000000010.1.1\narrival 10\nfrom <a@x>\nbody 7bit\n\
    ///             smtputf8 no\nsize 5\nattempts 0\nnext-attempt 10\nrcpt <joe@example.net>\n\
    ///             \x20 state failed\n  at 12\n  reply 550 5.1.1 unknown\nend\n";
    /// let mut env = Envelope::parse(text.as_bytes()).unwrap();
    /// assert_eq!(env.recipients[0].report, ReportState::Unrecorded);
    /// assert!(env.report_owed(0)); // failed during a pass that never ended
    /// assert!(!env.is_complete());
    /// env.recipients[0].report = ReportState::Done;
    /// assert!(env.is_complete());
    /// ```
    pub fn report_owed(&self, i: usize) -> bool {
        let Some(r) = self.recipients.get(i) else {
            return false;
        };
        match (&r.state, r.report) {
            (RecipientState::Pending { .. }, _) => false,
            (_, ReportState::Owed) => true,
            (_, ReportState::Done) => false,
            (RecipientState::Failed(o), ReportState::Unrecorded) => o.at >= self.next_attempt,
            (RecipientState::Delivered(_), ReportState::Unrecorded) => false,
        }
    }

    /// The indexes of the recipients whose DSN is owed ([`Envelope::report_owed`]).
    pub fn reports_owed(&self) -> Vec<usize> {
        (0..self.recipients.len())
            .filter(|&i| self.report_owed(i))
            .collect()
    }

    /// Whether the message can leave the queue: every recipient is settled
    /// ([`Envelope::is_finished`]) and no DSN is owed ([`Envelope::report_owed`]).
    pub fn is_complete(&self) -> bool {
        self.is_finished() && self.reports_owed().is_empty()
    }

    /// The pending recipients with their indexes into [`Envelope::recipients`].
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state.is_pending())
    }

    /// The envelope in its text format (see [`Envelope`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + 96 * self.recipients.len());
        let mut line = |k: &str, v: &str| {
            out.push_str(k);
            out.push(' ');
            escape_into(v, &mut out);
            out.push('\n');
        };
        line("mailbag-queue", "2");
        line("id", self.id.as_str());
        line("arrival", &self.arrival.to_string());
        if let Some(ip) = self.client_ip {
            line("client", &ip.to_string());
        }
        line("from", &format!("<{}>", self.reverse_path));
        if let Some(e) = &self.envid {
            line("envid", e);
        }
        if let Some(r) = self.ret {
            line(
                "ret",
                match r {
                    Ret::Full => "full",
                    Ret::Hdrs => "hdrs",
                },
            );
        }
        line(
            "body",
            match self.body {
                BodyType::SevenBit => "7bit",
                BodyType::EightBitMime => "8bitmime",
                BodyType::BinaryMime => "binarymime",
            },
        );
        line("smtputf8", yes_no(self.smtputf8));
        line("size", &self.size.to_string());
        line("attempts", &self.attempts.to_string());
        line("next-attempt", &self.next_attempt.to_string());
        if self.held {
            line("held", "yes");
        }
        for r in &self.recipients {
            line("rcpt", &format!("<{}>", r.address));
            if let Some(o) = &r.orcpt {
                line("  orcpt", o);
            }
            if let Some(n) = r.notify {
                line("  notify", &notify_text(n));
            }
            if r.delay_notified {
                line("  delay-notified", "yes");
            }
            match r.report {
                ReportState::Unrecorded => {}
                ReportState::Owed => line("  report", "owed"),
                ReportState::Done => line("  report", "done"),
            }
            let (state, outcome) = match &r.state {
                RecipientState::Pending { last } => ("pending", last.as_ref()),
                RecipientState::Delivered(o) => ("delivered", Some(o)),
                RecipientState::Failed(o) => ("failed", Some(o)),
            };
            line("  state", state);
            if let Some(o) = outcome {
                line("  at", &o.at.to_string());
                if let Some(h) = &o.host {
                    line("  host", h);
                }
                line("  reply", &o.reply);
            }
        }
        out.push_str("end\n");
        // `line` escapes the `<`/`>` wrapped values as a whole; brackets are
        // never escaped, so the parser strips exactly one of each.
        out.into_bytes()
    }

    /// Parses the text format strictly: fixed order, no unknown or repeated
    /// keys, canonical numbers, valid escapes and UTF-8, an `end` line and
    /// nothing after it. Never panics.
    pub fn parse(input: &[u8]) -> Result<Envelope, EnvelopeError> {
        let text = std::str::from_utf8(input).map_err(|_| EnvelopeError::new(0, "not UTF-8"))?;
        let mut p = Lines::new(text)?;
        if p.value("mailbag-queue")? != "2" {
            return Err(p.err("unsupported envelope version"));
        }
        let id = p.value("id")?;
        let id: QueueId = id.parse().map_err(|_| p.err("invalid queue id"))?;
        let arrival = p.number("arrival")?;
        let client_ip = match p.optional("client")? {
            Some(c) => {
                let ip: IpAddr = c.parse().map_err(|_| p.err("invalid client address"))?;
                if ip.to_string() != c {
                    return Err(p.err("client address not in canonical form"));
                }
                Some(ip)
            }
            None => None,
        };
        let reverse_path = p.bracketed("from")?;
        let envid = p.optional("envid")?;
        let ret = match p.optional("ret")?.as_deref() {
            None => None,
            Some("full") => Some(Ret::Full),
            Some("hdrs") => Some(Ret::Hdrs),
            Some(_) => return Err(p.err("ret must be full or hdrs")),
        };
        let body = match p.value("body")?.as_str() {
            "7bit" => BodyType::SevenBit,
            "8bitmime" => BodyType::EightBitMime,
            "binarymime" => BodyType::BinaryMime,
            _ => return Err(p.err("body must be 7bit, 8bitmime or binarymime")),
        };
        let smtputf8 = p.yes_no("smtputf8")?;
        let size = p.number("size")?;
        let attempts =
            u32::try_from(p.number("attempts")?).map_err(|_| p.err("attempts out of range"))?;
        let next_attempt = p.number("next-attempt")?;
        let held = match p.optional("held")?.as_deref() {
            None => false,
            Some("yes") => true,
            Some(_) => return Err(p.err("held must be yes (or absent)")),
        };
        let mut recipients = Vec::new();
        while p.peek_key() == Some("rcpt") {
            recipients.push(p.recipient()?);
        }
        p.end()?;
        Ok(Envelope {
            id,
            reverse_path,
            envid,
            ret,
            client_ip,
            arrival,
            body,
            smtputf8,
            size,
            attempts,
            next_attempt,
            held,
            recipients,
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn notify_text(n: Notify) -> String {
    if n.is_never() {
        return "never".into();
    }
    let mut parts = Vec::new();
    if n.success {
        parts.push("success");
    }
    if n.failure {
        parts.push("failure");
    }
    if n.delay {
        parts.push("delay");
    }
    parts.join(",")
}

fn parse_notify(s: &str) -> Option<Notify> {
    if s == "never" {
        return Some(Notify::NEVER);
    }
    let mut n = Notify::NEVER;
    let mut rank = 0;
    for part in s.split(',') {
        let r = match part {
            "success" => {
                n.success = true;
                1
            }
            "failure" => {
                n.failure = true;
                2
            }
            "delay" => {
                n.delay = true;
                3
            }
            _ => return None,
        };
        // Strictly increasing: canonical order, no repetition.
        if r <= rank {
            return None;
        }
        rank = r;
    }
    Some(n)
}

fn needs_escape(c: char) -> bool {
    c == '%' || c.is_ascii_control()
}

/// Appends `v` with `%`, controls and DEL written as `%XX`.
fn escape_into(v: &str, out: &mut String) {
    for c in v.chars() {
        if needs_escape(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// Reverses [`escape_into`]; only escapes that `escape_into` writes are
/// accepted (upper-case hex of a character that needs escaping).
fn unescape(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let h = chars.next()?;
            let l = chars.next()?;
            let hex = |d: char| match d {
                '0'..='9' => Some(d as u32 - '0' as u32),
                'A'..='F' => Some(d as u32 - 'A' as u32 + 10),
                _ => None,
            };
            let code = hex(h)? * 16 + hex(l)?;
            let ch = char::from_u32(code)?;
            if !needs_escape(ch) {
                return None;
            }
            out.push(ch);
        } else if needs_escape(c) {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// A strict cursor over the lines of an envelope file.
struct Lines<'a> {
    lines: Vec<&'a str>,
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Result<Self, EnvelopeError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(EnvelopeError::new(0, "truncated: no final line feed"));
        };
        Ok(Lines {
            lines: body.split('\n').collect(),
            pos: 0,
        })
    }

    /// An error at the current line (1-based).
    fn err(&self, reason: &'static str) -> EnvelopeError {
        EnvelopeError::new(self.pos.max(1), reason)
    }

    fn current(&self) -> Option<&'a str> {
        self.lines.get(self.pos).copied()
    }

    fn split(line: &'a str) -> (&'a str, Option<&'a str>) {
        let indent = if line.starts_with("  ") { 2 } else { 0 };
        let rest = line.get(indent..).unwrap_or("");
        match rest.find(' ') {
            Some(i) => (line.get(..indent + i).unwrap_or(""), rest.get(i + 1..)),
            None => (line, None),
        }
    }

    fn peek_key(&self) -> Option<&'a str> {
        self.current().map(|l| Self::split(l).0)
    }

    /// The value of an optional line with this key (consumed when present).
    fn optional(&mut self, key: &str) -> Result<Option<String>, EnvelopeError> {
        let Some(line) = self.current() else {
            return Ok(None);
        };
        let (k, v) = Self::split(line);
        if k != key {
            return Ok(None);
        }
        self.pos += 1;
        let v = v.ok_or_else(|| self.err("missing value"))?;
        unescape(v)
            .map(Some)
            .ok_or_else(|| self.err("invalid escape"))
    }

    fn value(&mut self, key: &str) -> Result<String, EnvelopeError> {
        match self.optional(key)? {
            Some(v) => Ok(v),
            None => {
                self.pos += 1;
                Err(self.err(if self.pos > self.lines.len() {
                    "truncated: expected line missing"
                } else {
                    "unexpected line"
                }))
            }
        }
    }

    fn number(&mut self, key: &str) -> Result<u64, EnvelopeError> {
        let v = self.value(key)?;
        parse_canonical_u64(&v).ok_or_else(|| self.err("invalid number"))
    }

    fn yes_no(&mut self, key: &str) -> Result<bool, EnvelopeError> {
        match self.value(key)?.as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(self.err("expected yes or no")),
        }
    }

    fn bracketed(&mut self, key: &str) -> Result<String, EnvelopeError> {
        let v = self.value(key)?;
        v.strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .map(str::to_owned)
            .ok_or_else(|| self.err("address must be in angle brackets"))
    }

    fn recipient(&mut self) -> Result<Recipient, EnvelopeError> {
        let address = self.bracketed("rcpt")?;
        let orcpt = self.optional("  orcpt")?;
        let notify = match self.optional("  notify")? {
            Some(n) => Some(parse_notify(&n).ok_or_else(|| self.err("invalid notify"))?),
            None => None,
        };
        let delay_notified = match self.optional("  delay-notified")?.as_deref() {
            None => false,
            Some("yes") => true,
            Some(_) => return Err(self.err("delay-notified must be yes when present")),
        };
        let report = match self.optional("  report")?.as_deref() {
            None => ReportState::Unrecorded,
            Some("owed") => ReportState::Owed,
            Some("done") => ReportState::Done,
            Some(_) => return Err(self.err("report must be owed or done")),
        };
        let state = self.value("  state")?;
        let kind = match state.as_str() {
            "pending" => 0,
            "delivered" => 1,
            "failed" => 2,
            _ => return Err(self.err("state must be pending, delivered or failed")),
        };
        let at = match self.optional("  at")? {
            Some(a) => Some(parse_canonical_u64(&a).ok_or_else(|| self.err("invalid number"))?),
            None => None,
        };
        let outcome = match at {
            Some(at) => {
                let host = self.optional("  host")?;
                let reply = self.value("  reply")?;
                Some(Outcome { at, host, reply })
            }
            None => None,
        };
        let state = match (kind, outcome) {
            (0, last) => RecipientState::Pending { last },
            (1, Some(o)) => RecipientState::Delivered(o),
            (_, Some(o)) => RecipientState::Failed(o),
            (_, None) => return Err(self.err("final state without at/reply")),
        };
        Ok(Recipient {
            address,
            orcpt,
            notify,
            state,
            delay_notified,
            report,
        })
    }

    fn end(&mut self) -> Result<(), EnvelopeError> {
        match self.current() {
            Some("end") if self.pos + 1 == self.lines.len() => Ok(()),
            Some("end") => {
                self.pos += 2;
                Err(self.err("data after end"))
            }
            Some(_) => {
                self.pos += 1;
                Err(self.err("unexpected line"))
            }
            None => Err(EnvelopeError::new(0, "truncated: no end line")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        let mut new = NewEnvelope::new("ann@example.org", 1_700_000_000);
        new.envid = Some("QQ314159".into());
        new.ret = Some(Ret::Hdrs);
        new.client_ip = Some("192.0.2.7".parse().unwrap());
        new.body = BodyType::EightBitMime;
        let mut joe = Recipient::new("joe@example.net");
        joe.orcpt = Some("rfc822;joe@example.net".into());
        joe.notify = Some(Notify {
            success: false,
            failure: true,
            delay: true,
        });
        joe.state = RecipientState::Pending {
            last: Some(Outcome {
                at: 1_700_000_000,
                host: Some("mx.example.net".into()),
                reply: "451 4.7.1 greylisted, try again later".into(),
            }),
        };
        new.recipients.push(joe);
        let mut kim = Recipient::new("kim@example.net");
        kim.report = ReportState::Owed;
        kim.state = RecipientState::Failed(Outcome {
            at: 1_700_000_000,
            host: Some("mx.example.net".into()),
            reply: "550 5.1.1 no such user".into(),
        });
        new.recipients.push(kim);
        let mut e = Envelope::from_new(QueueId::new(1_700_000_000, 1, 1), &new, 2048);
        e.attempts = 1;
        e.next_attempt = 1_700_000_300;
        e
    }

    const SAMPLE: &str = "mailbag-queue 2\nid 001700000000.1.1\narrival 1700000000\n\
        client 192.0.2.7\nfrom <ann@example.org>\nenvid QQ314159\nret hdrs\nbody 8bitmime\n\
        smtputf8 no\nsize 2048\nattempts 1\nnext-attempt 1700000300\nrcpt <joe@example.net>\n\
        \x20 orcpt rfc822;joe@example.net\n  notify failure,delay\n  state pending\n\
        \x20 at 1700000000\n  host mx.example.net\n  reply 451 4.7.1 greylisted, try again later\n\
        rcpt <kim@example.net>\n  report owed\n  state failed\n  at 1700000000\n\
        \x20 host mx.example.net\n  reply 550 5.1.1 no such user\nend\n";

    #[test]
    fn documented_example_byte_for_byte() {
        assert_eq!(String::from_utf8(sample().encode()).unwrap(), SAMPLE);
        assert_eq!(Envelope::parse(SAMPLE.as_bytes()).unwrap(), sample());
    }

    /// An envelope as the engine wrote it before the `report` line existed: one
    /// failure recorded in a completed earlier pass (before `next-attempt`),
    /// one recorded by a pass that was killed (at or after it), one delivery.
    const OLD: &str = "mailbag-queue 2\nid 001700000000.1.1\narrival 1700000000\n\
        from <ann@example.org>\nbody 7bit\nsmtputf8 no\nsize 10\nattempts 1\n\
        next-attempt 1700000300\n\
        rcpt <early@example.net>\n  state failed\n  at 1700000001\n  reply 550 5.1.1 no\n\
        rcpt <late@example.net>\n  state failed\n  at 1700000300\n  reply 550 5.1.1 no\n\
        rcpt <ok@example.net>\n  notify success\n  state delivered\n  at 1700000300\n\
        \x20 reply 250 ok\n\
        rcpt <wait@example.net>\n  state pending\nend\n";

    #[test]
    fn envelopes_without_report_lines_still_parse() {
        let mut e = Envelope::parse(OLD.as_bytes()).unwrap();
        assert!(
            e.recipients
                .iter()
                .all(|r| r.report == ReportState::Unrecorded)
        );
        // Byte-for-byte: an unrecorded state writes no line.
        assert_eq!(e.encode(), OLD.as_bytes());
        // Only the failure of the interrupted pass is owed.
        assert_eq!(e.reports_owed(), vec![1]);
        assert!(!e.report_owed(9));
        e.recipients[3].state = RecipientState::Delivered(Outcome {
            at: 1_700_000_400,
            host: None,
            reply: "250 ok".into(),
        });
        assert!(e.is_finished() && !e.is_complete());
        // Explicit states override the legacy rule, both ways.
        e.recipients[1].report = ReportState::Done;
        e.recipients[0].report = ReportState::Owed;
        assert_eq!(e.reports_owed(), vec![0]);
        e.recipients[0].report = ReportState::Done;
        assert!(e.is_complete());
        // A pending recipient never owes a final report, whatever its line says.
        e.recipients[3].state = RecipientState::Pending { last: None };
        e.recipients[3].report = ReportState::Owed;
        assert!(!e.report_owed(3));
        assert_eq!(Envelope::parse(&e.encode()).unwrap(), e);
    }

    #[test]
    fn every_state_and_flag_round_trips() {
        let mut e = sample();
        let o = Outcome {
            at: 5,
            host: None,
            reply: "".into(),
        };
        let mut a = Recipient::new("");
        a.state = RecipientState::Delivered(o.clone());
        a.delay_notified = true;
        a.notify = Some(Notify::NEVER);
        let mut b = Recipient::new("b@x");
        b.state = RecipientState::Failed(Outcome {
            host: Some("h".into()),
            ..o
        });
        b.notify = Some(Notify {
            success: true,
            failure: true,
            delay: true,
        });
        e.recipients.push(a);
        e.recipients.push(b);
        e.reverse_path.clear();
        e.envid = None;
        e.ret = Some(Ret::Full);
        e.client_ip = Some("2001:db8::1".parse().unwrap());
        e.body = BodyType::BinaryMime;
        e.smtputf8 = true;
        let text = e.encode();
        assert_eq!(Envelope::parse(&text).unwrap(), e);
        assert!(!e.is_finished());
        assert_eq!(e.pending().map(|(i, _)| i).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn escaping_prevents_line_injection() {
        let mut e = sample();
        e.reverse_path = "evil>\nrcpt <victim@x>\n%41".into();
        e.recipients[0].state = RecipientState::Failed(Outcome {
            at: 1,
            host: Some("h\r\nend".into()),
            reply: "550 line one\nline two\u{7f}\u{0}".into(),
        });
        let text = e.encode();
        let s = String::from_utf8(text.clone()).unwrap();
        assert!(
            s.contains("from <evil>%0Arcpt <victim@x>%0A%2541>\n"),
            "{s}"
        );
        assert!(s.contains("  host h%0D%0Aend\n"), "{s}");
        assert!(s.contains("  reply 550 line one%0Aline two%7F%00\n"), "{s}");
        assert_eq!(s.lines().filter(|l| l.starts_with("rcpt")).count(), 2);
        assert_eq!(Envelope::parse(&text).unwrap(), e);
    }

    #[test]
    fn utf8_values_are_kept_readable() {
        let mut e = sample();
        e.reverse_path = "jösé@exämple.org".into();
        e.smtputf8 = true;
        let s = String::from_utf8(e.encode()).unwrap();
        assert!(s.contains("from <jösé@exämple.org>\n"));
        assert_eq!(Envelope::parse(s.as_bytes()).unwrap(), e);
    }

    fn parse_err(s: &str) -> EnvelopeError {
        Envelope::parse(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn corrupt_envelopes_are_reported_with_line() {
        let cases: &[(&str, &str, usize)] = &[
            ("mailbag-queue 2\n", "mailbag-queue 3\n", 1),
            ("arrival 1700000000\n", "arrival 01700000000\n", 3),
            ("arrival 1700000000\n", "arrival -1\n", 3),
            ("from <ann@example.org>\n", "from ann@example.org\n", 5),
            ("ret hdrs\n", "ret headers\n", 7),
            ("body 8bitmime\n", "body 8BITMIME\n", 8),
            ("smtputf8 no\n", "smtputf8 maybe\n", 9),
            ("attempts 1\n", "attempts 4294967296\n", 11),
            ("  notify failure,delay\n", "  notify delay,failure\n", 15),
            ("  notify failure,delay\n", "  notify failure,failure\n", 15),
            ("  state pending\n", "  state lost\n", 16),
            ("  host mx.example.net\n", "  host mx%0a\n", 18),
            ("  host mx.example.net\n", "  host mx%41\n", 18),
            ("  host mx.example.net\n", "  host mx%4\n", 18),
            ("  host mx.example.net\n", "  hosts mx\n", 18),
            ("client 192.0.2.7\n", "client 192.0.2.007\n", 4),
            ("client 192.0.2.7\n", "client ::ffff:0:1\n", 4),
            ("size 2048\n", "size 2048\nsize 2048\n", 11),
            ("end\n", "end\nend\n", 27),
            ("end\n", "bogus\nend\n", 26),
            ("  report owed\n", "  report sent\n", 21),
            ("  report owed\n", "  report owed\n  report owed\n", 22),
        ];
        for (from, to, line) in cases {
            assert!(SAMPLE.contains(from), "{from}");
            let e = parse_err(&SAMPLE.replacen(from, to, 1));
            assert_eq!(e.line, *line, "{to:?}: {e}");
        }
        assert_eq!(parse_err(SAMPLE.strip_suffix('\n').unwrap()).line, 0);
        assert_eq!(parse_err(&SAMPLE.replace("end\n", "")).line, 0);
        assert_eq!(parse_err("").line, 0);
        assert_eq!(parse_err("\n").line, 1);
        let mut bad = SAMPLE.as_bytes().to_vec();
        bad[30] = 0xff;
        assert_eq!(Envelope::parse(&bad).unwrap_err().reason, "not UTF-8");
        // Truncation anywhere is an error, never a shorter envelope.
        for cut in 0..SAMPLE.len() {
            assert!(Envelope::parse(&SAMPLE.as_bytes()[..cut]).is_err(), "{cut}");
        }
        // A final state needs its outcome.
        let s = SAMPLE
            .replace("  state pending\n", "  state delivered\n")
            .replace("  at 1700000000\n  host mx.example.net\n  reply 451 4.7.1 greylisted, try again later\n", "");
        assert_eq!(parse_err(&s).reason, "final state without at/reply");
    }

    pub(crate) fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9@.<> %;+=-]{0,20}",
            any::<String>().prop_map(|s| s.chars().take(30).collect()),
        ]
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        (any::<u64>(), proptest::option::of(arb_text()), arb_text())
            .prop_map(|(at, host, reply)| Outcome { at, host, reply })
    }

    fn arb_recipient() -> impl Strategy<Value = Recipient> {
        let state = prop_oneof![
            proptest::option::of(arb_outcome()).prop_map(|last| RecipientState::Pending { last }),
            arb_outcome().prop_map(RecipientState::Delivered),
            arb_outcome().prop_map(RecipientState::Failed),
        ];
        let notify = proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(success, failure, delay)| Notify {
                success,
                failure,
                delay,
            },
        ));
        (
            arb_text(),
            proptest::option::of(arb_text()),
            notify,
            state,
            any::<bool>(),
            prop_oneof![
                Just(ReportState::Unrecorded),
                Just(ReportState::Owed),
                Just(ReportState::Done)
            ],
        )
            .prop_map(|(address, orcpt, notify, state, delay_notified, report)| {
                Recipient {
                    address,
                    orcpt,
                    notify,
                    state,
                    delay_notified,
                    report,
                }
            })
    }

    pub(crate) fn arb_envelope() -> impl Strategy<Value = Envelope> {
        let ip = proptest::option::of(prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]);
        let ret = proptest::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Hdrs)]);
        let body = prop_oneof![
            Just(BodyType::SevenBit),
            Just(BodyType::EightBitMime),
            Just(BodyType::BinaryMime)
        ];
        (
            (any::<u64>(), any::<u64>(), any::<u64>()),
            arb_text(),
            proptest::option::of(arb_text()),
            ret,
            ip,
            body,
            any::<bool>(),
            (any::<u64>(), any::<u32>(), any::<u64>(), any::<bool>()),
            proptest::collection::vec(arb_recipient(), 0..4),
        )
            .prop_map(
                |(
                    (a, i, s),
                    reverse_path,
                    envid,
                    ret,
                    client_ip,
                    body,
                    smtputf8,
                    (size, attempts, next_attempt, held),
                    recipients,
                )| Envelope {
                    id: QueueId::new(a, i, s),
                    reverse_path,
                    envid,
                    ret,
                    client_ip,
                    arrival: a,
                    body,
                    smtputf8,
                    size,
                    attempts,
                    next_attempt,
                    held,
                    recipients,
                },
            )
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(e in arb_envelope()) {
            let text = e.encode();
            prop_assert_eq!(Envelope::parse(&text), Ok(e));
        }

        #[test]
        fn parse_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(e) = Envelope::parse(&bytes) {
                prop_assert_eq!(e.encode(), bytes);
            }
        }

        #[test]
        fn mutated_envelopes_never_panic(e in arb_envelope(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut text = e.encode();
            let i = pos % text.len();
            text[i] = byte;
            if let Ok(back) = Envelope::parse(&text) {
                prop_assert_eq!(back.encode(), text);
            }
        }
    }
}
