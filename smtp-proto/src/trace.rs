//! Trace header fields a server adds on delivery (RFC 5321 section 4.4): `Return-Path:`
//! ([`return_path`]) and `Received:` ([`Received`]).
//!
//! The values come from the client (the EHLO name, the envelope addresses) and are not
//! trusted: whatever could break the header (CR, LF and other controls, and the characters
//! that end a comment or the field's token list) is removed, so a client cannot inject a
//! header field. The date is passed in ([`DateTime`]); nothing here reads a clock.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::date::DateTime;
//! use mailbag_smtp_proto::trace::{protocol, return_path, Received};
//!
//! let date = DateTime::new(1_795_800_600, 0)?;
//! let mut head = return_path("a@b.example");
//! head.push_str(
//!     &Received::new("client.example.org", "127.0.0.2".parse()?, "mail.example.test", date)
//!         .by_comment("mailbagd")
//!         .with(protocol(true, false, false, false))
//!         .id(7)
//!         .recipient("joe@example.test")
//!         .to_header(),
//! );
//! assert_eq!(
//!     head,
//!     "Return-Path: <a@b.example>\r\n\
//!      Received: from client.example.org ([127.0.0.2])\r\n\
//!      \tby mail.example.test (mailbagd) with ESMTP id 7\r\n\
//!      \tfor <joe@example.test>; Fri, 27 Nov 2026 17:30:00 +0000\r\n"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;

use core::fmt;
use core::net::IpAddr;

use crate::date::DateTime;

/// Longest single item (EHLO name, host, id, recipient) kept, in characters.
const MAX_ITEM: usize = 255;

/// Keeps the characters that are safe in a `Received:` token or comment: ASCII graphic
/// characters except `(`, `)`, `\\` and `;` (and, with `utf8`, non-ASCII characters other
/// than controls and spaces), at most [`MAX_ITEM`] of them. An odd number of `"` is
/// dropped too: an unbalanced quote would open a quoted string that runs over the rest of
/// the field (its `;` and date) for a reader of the header; balanced quotes stay (a quoted
/// local part in the `for` clause).
fn sanitize(s: &str, utf8: bool) -> String {
    let kept: String = s
        .chars()
        .filter(|&c| {
            (c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\' | ';'))
                || (utf8 && !c.is_ascii() && !c.is_control() && !c.is_whitespace())
        })
        .take(MAX_ITEM)
        .collect();
    if kept.matches('"').count() % 2 == 1 {
        kept.replace('"', "")
    } else {
        kept
    }
}

/// The EHLO name as the `from` clause gives it: an ASCII name as sent (sanitized); a name
/// with U-labels (RFC 6531 lets EHLO carry them) as sent in a transaction that used
/// SMTPUTF8 (`with UTF8SMTP`...: RFC 6531 section 3.7.3 allows U-labels there), otherwise
/// as its A-labels (lower case and Punycode, RFC 3492: `été.example` is
/// `xn--t-9fab.example`), so that the header of a message without SMTPUTF8 stays ASCII and
/// still names the client's domain. A name that cannot be a host name gives an empty string
/// (written `unknown`).
fn helo_name(helo: &str, utf8: bool) -> String {
    if helo.is_ascii() {
        return sanitize(helo, false);
    }
    if utf8 {
        return sanitize(helo, true);
    }
    crate::a_label::to_a_labels(helo).unwrap_or_default()
}

/// The RFC 3848 `with` protocol name of a session: `SMTP` after HELO, `ESMTP` after EHLO,
/// `LMTP` after LHLO, with `S` appended under TLS and `A` once authenticated (`ESMTPSA`,
/// `LMTPA`, ...; RFC 3848 defines no suffixes for plain `SMTP`).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::trace::protocol;
///
/// // protocol(esmtp, tls, authenticated, lmtp)
/// assert_eq!(protocol(false, false, false, false), "SMTP");
/// assert_eq!(protocol(true, false, false, false), "ESMTP");
/// assert_eq!(protocol(true, true, false, false), "ESMTPS");
/// assert_eq!(protocol(true, true, true, false), "ESMTPSA");
/// assert_eq!(protocol(true, false, true, false), "ESMTPA");
/// assert_eq!(protocol(false, true, false, true), "LMTPS");
/// ```
pub fn protocol(esmtp: bool, tls: bool, authenticated: bool, lmtp: bool) -> &'static str {
    match (lmtp, esmtp, tls, authenticated) {
        (true, _, false, false) => "LMTP",
        (true, _, false, true) => "LMTPA",
        (true, _, true, false) => "LMTPS",
        (true, _, true, true) => "LMTPSA",
        (false, false, _, _) => "SMTP",
        (false, true, false, false) => "ESMTP",
        (false, true, false, true) => "ESMTPA",
        (false, true, true, false) => "ESMTPS",
        (false, true, true, true) => "ESMTPSA",
    }
}

/// The `with` name of a transaction that used SMTPUTF8 (RFC 6531 section 3.7.3):
/// `UTF8` before the [`protocol`] name of its session (`UTF8SMTP` for `ESMTP`,
/// `UTF8SMTPS`, `UTF8SMTPA`, `UTF8SMTPSA`, `UTF8LMTP`, ...). A name without a
/// UTF-8 form (`SMTP`: SMTPUTF8 needs EHLO) comes back unchanged.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::trace::{protocol, utf8_protocol};
///
/// assert_eq!(utf8_protocol(protocol(true, false, false, false)), "UTF8SMTP");
/// assert_eq!(utf8_protocol(protocol(true, true, true, false)), "UTF8SMTPSA");
/// assert_eq!(utf8_protocol(protocol(false, true, false, true)), "UTF8LMTPS");
/// assert_eq!(utf8_protocol("SMTP"), "SMTP");
/// ```
pub fn utf8_protocol(protocol: &'static str) -> &'static str {
    match protocol {
        "ESMTP" => "UTF8SMTP",
        "ESMTPA" => "UTF8SMTPA",
        "ESMTPS" => "UTF8SMTPS",
        "ESMTPSA" => "UTF8SMTPSA",
        "LMTP" => "UTF8LMTP",
        "LMTPA" => "UTF8LMTPA",
        "LMTPS" => "UTF8LMTPS",
        "LMTPSA" => "UTF8LMTPSA",
        other => other,
    }
}

/// A `Received:` trace header field (RFC 5321 section 4.4, RFC 5322 section 3.6.7):
///
/// ```text
/// Received: from HELO (client [ip])
///         by host (comment) with ESMTP id X
///         for <rcpt>; date
/// ```
///
/// Built with [`Received::new`] and the setters; [`Received::to_header`] (or `Display`)
/// gives the folded field ending in CRLF. Every value is sanitized (see the
/// [module docs](self)); an empty EHLO name is written `unknown`. IPv6 clients are written
/// as `[IPv6:...]` (RFC 5321 section 4.1.3).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::date::DateTime;
/// use mailbag_smtp_proto::trace::Received;
///
/// let date = DateTime::new(0, 0)?;
/// // An EHLO name trying to inject a header field.
/// let h = Received::new("evil\r\nX-Spam-Flag: NO", "2001:db8::1".parse()?, "mx", date)
///     .client_name("host.example")
///     .to_header();
/// assert_eq!(
///     h,
///     "Received: from evilX-Spam-Flag:NO (host.example [IPv6:2001:db8::1])\r\n\
///      \tby mx with ESMTP;\r\n\
///      \tThu, 1 Jan 1970 00:00:00 +0000\r\n"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    helo: &'a str,
    client_ip: IpAddr,
    client_name: Option<&'a str>,
    by: &'a str,
    by_comment: Option<&'a str>,
    with: &'a str,
    id: Option<String>,
    recipient: Option<&'a str>,
    date: DateTime,
}

impl<'a> Received<'a> {
    /// A field for a message from a client that said `EHLO helo` from `client_ip`,
    /// received by `by` (this server's host name) at `date`; `with ESMTP` unless
    /// [`Received::with`] says otherwise.
    pub fn new(helo: &'a str, client_ip: IpAddr, by: &'a str, date: DateTime) -> Self {
        Received {
            helo,
            client_ip,
            client_name: None,
            by,
            by_comment: None,
            with: "ESMTP",
            id: None,
            recipient: None,
            date,
        }
    }

    /// The client's host name as this server found it (e.g. a verified reverse DNS
    /// name), written before the address: `(name [ip])`.
    pub fn client_name(mut self, name: &'a str) -> Self {
        self.client_name = Some(name);
        self
    }

    /// A comment after this server's name, e.g. the software: `by host (comment)`.
    pub fn by_comment(mut self, comment: &'a str) -> Self {
        self.by_comment = Some(comment);
        self
    }

    /// The protocol (RFC 3848: `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPSA`, `LMTP`, ...; see
    /// [`protocol`]).
    pub fn with(mut self, protocol: &'a str) -> Self {
        self.with = protocol;
        self
    }

    /// The id of the message or session in this server's logs: `id X`.
    pub fn id(mut self, id: impl fmt::Display) -> Self {
        self.id = Some(id.to_string());
        self
    }

    /// The recipient, when the message has exactly one (`for <rcpt>`; naming one of
    /// several would disclose it to the others). With or without angle brackets;
    /// non-ASCII (SMTPUTF8) addresses are kept.
    pub fn recipient(mut self, rcpt: &'a str) -> Self {
        self.recipient = Some(rcpt);
        self
    }

    /// The folded header field, ending in CRLF.
    pub fn to_header(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Received<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let helo = helo_name(self.helo, self.with.starts_with("UTF8"));
        let helo = if helo.is_empty() { "unknown" } else { &helo };
        f.write_str("Received: from ")?;
        f.write_str(helo)?;
        f.write_str(" (")?;
        if let Some(name) = self.client_name.map(|n| sanitize(n, false)) {
            if !name.is_empty() {
                write!(f, "{name} ")?;
            }
        }
        match self.client_ip {
            IpAddr::V4(ip) => write!(f, "[{ip}])")?,
            IpAddr::V6(ip) => write!(f, "[IPv6:{ip}])")?,
        }
        write!(f, "\r\n\tby {}", sanitize(self.by, false))?;
        if let Some(c) = self.by_comment.map(|c| sanitize(c, false)) {
            if !c.is_empty() {
                write!(f, " ({c})")?;
            }
        }
        let with = sanitize(self.with, false);
        if !with.is_empty() {
            write!(f, " with {with}")?;
        }
        if let Some(id) = self.id.as_deref().map(|i| sanitize(i, false)) {
            if !id.is_empty() {
                write!(f, " id {id}")?;
            }
        }
        let rcpt = self.recipient.map(|r| {
            let r = r.trim();
            let r = r
                .strip_prefix('<')
                .and_then(|r| r.strip_suffix('>'))
                .unwrap_or(r);
            sanitize(r, true)
        });
        match rcpt {
            Some(r) => write!(f, "\r\n\tfor <{r}>; {}\r\n", self.date),
            None => write!(f, ";\r\n\t{}\r\n", self.date),
        }
    }
}

/// The `Return-Path:` field a delivering server adds (RFC 5321 section 4.4): the
/// envelope sender in angle brackets, `<>` for the null reverse path; ends in CRLF.
/// `sender` may be given with or without the brackets; control characters are removed.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::trace::return_path;
///
/// assert_eq!(return_path("a@b.example"), "Return-Path: <a@b.example>\r\n");
/// assert_eq!(return_path("<a@b.example>"), "Return-Path: <a@b.example>\r\n");
/// assert_eq!(return_path(""), "Return-Path: <>\r\n");
/// assert_eq!(return_path("a@b\r\nX: y"), "Return-Path: <a@bX: y>\r\n");
/// ```
pub fn return_path(sender: &str) -> String {
    let s = sender.trim();
    let s = s
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or(s);
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    format!("Return-Path: <{s}>\r\n")
}

/// How many `Received:` fields the header section of `message` holds. RFC 5321
/// section 6.3: a server counts them and refuses a message with too many (a mail loop;
/// `554 5.4.6`). Reads up to the first empty line, or all of `message` when it holds
/// none (a prefix of a message); folded continuation lines are not fields.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::trace::received_count;
///
/// let m = b"Received: from a\r\n\tby b; Thu, 1 Jan 1970 00:00:00 +0000\r\nRECEIVED : x\r\n\
///           Subject: Received: not a field\r\n\r\nReceived: in the body\r\n";
/// assert_eq!(received_count(m), 2);
/// assert_eq!(received_count(b""), 0);
/// ```
pub fn received_count(message: &[u8]) -> usize {
    let mut n = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(name) = line.get(..8) else {
            continue;
        };
        if name.eq_ignore_ascii_case(b"received")
            && line
                .get(8..)
                .is_some_and(|rest| rest.trim_ascii_start().first() == Some(&b':'))
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use proptest::prelude::*;

    #[test]
    fn received_fields_are_counted_in_the_header_only() {
        let mut m = Vec::new();
        for i in 0..51 {
            m.extend_from_slice(format!("Received: from h{i}\r\n\tby x\r\n").as_bytes());
        }
        assert_eq!(received_count(&m), 51);
        m.extend_from_slice(b"\r\nReceived: body\r\n");
        assert_eq!(received_count(&m), 51);
        assert_eq!(
            received_count(b"Received-SPF: pass\r\nReceivedx: 1\r\n\r\n"),
            0
        );
        assert_eq!(received_count(b"received:x\nReceived\t: y\n\n"), 2);
    }

    fn epoch() -> DateTime {
        DateTime::new(0, 0).unwrap()
    }

    /// The server's former `trace_headers::ReceivedInfo` doc example.
    #[test]
    fn server_example() {
        let r = Received::new(
            "client.example.org",
            "127.0.0.2".parse().unwrap(),
            "mail.example.test",
            DateTime::new(1_795_800_600, 0).unwrap(),
        )
        .by_comment("mailbagd")
        .with("ESMTP")
        .id(7_u64)
        .recipient("<joe@example.test>");
        assert_eq!(
            r.to_header(),
            "Received: from client.example.org ([127.0.0.2])\r\n\tby mail.example.test (mailbagd) with ESMTP id 7\r\n\tfor <joe@example.test>; Fri, 27 Nov 2026 17:30:00 +0000\r\n"
        );
    }

    /// The server's former `received_strips_injection` test.
    #[test]
    fn received_strips_injection() {
        let h = Received::new(
            "evil\r\nX-Spam-Flag: NO",
            "127.0.0.1".parse().unwrap(),
            "mx",
            epoch(),
        )
        .with("SMTP")
        .id(1)
        .to_header();
        assert_eq!(h.matches("\r\n").count(), 3, "{h}");
        assert!(h.starts_with("Received: from evilX-Spam-Flag:NO ([127.0.0.1])"));
        assert!(h.contains(" id 1;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"));
    }

    #[test]
    fn every_value_is_sanitized() {
        let h = Received::new("", "192.0.2.1".parse().unwrap(), "mx\r\n(x)", epoch())
            .client_name("a;b\\c")
            .by_comment("c)o(m\r\nment")
            .with("ES\nMTP ")
            .id("1 2;3")
            .recipient("<j\u{e9}\r\n;o(e)@x.example>")
            .to_header();
        assert_eq!(
            h,
            "Received: from unknown (abc [192.0.2.1])\r\n\tby mxx (comment) with ESMTP id 123\r\n\tfor <j\u{e9}oe@x.example>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        // Empty optional values leave their clause out.
        let h = Received::new("h", "192.0.2.1".parse().unwrap(), "mx", epoch())
            .client_name("()")
            .by_comment(";")
            .with("")
            .id("")
            .to_header();
        assert_eq!(
            h,
            "Received: from h ([192.0.2.1])\r\n\tby mx;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        // An unbalanced quote (an EHLO name `a"b(c)d\e`) is dropped; balanced ones stay.
        let h = Received::new("h", "192.0.2.1".parse().unwrap(), "mx", epoch())
            .client_name("a\"b(c)d\\e")
            .recipient("<\"j o\"@x.example>")
            .to_header();
        assert_eq!(
            h,
            "Received: from h (abcde [192.0.2.1])\r\n\tby mx with ESMTP\r\n\tfor <\"jo\"@x.example>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        let long = "a".repeat(1000);
        let h = Received::new(&long, "192.0.2.1".parse().unwrap(), "mx", epoch()).to_header();
        assert!(h.lines().all(|l| l.len() <= 998));
    }

    /// A probe's `EHLO été.example` was written `from t.example`: another
    /// domain. Now its A-label, or the name itself under SMTPUTF8.
    #[test]
    fn a_u_label_ehlo_name_stays_the_same_domain() {
        let from = |helo: &str, with: &str| {
            let h = Received::new(helo, "192.0.2.1".parse().unwrap(), "mx", epoch())
                .with(with)
                .to_header();
            h.strip_prefix("Received: from ")
                .and_then(|r| r.split(' ').next())
                .map(String::from)
                .unwrap_or_default()
        };
        assert_eq!(from("\u{e9}t\u{e9}.example", "ESMTP"), "xn--t-9fab.example");
        assert_eq!(from("gm\u{e4}il.com", "ESMTPS"), "xn--gmil-moa.com");
        assert_eq!(from("GM\u{c4}IL.com", "ESMTP"), "xn--gmil-moa.com");
        assert_eq!(
            from("\u{e9}t\u{e9}.example", "UTF8SMTP"),
            "\u{e9}t\u{e9}.example"
        );
        // Control characters are gone either way; a name IDNA refuses is unknown.
        assert_eq!(
            from("\u{e9}t\u{e9}\r\nX: y", "UTF8SMTP"),
            "\u{e9}t\u{e9}X:y"
        );
        assert_eq!(from("\u{e9}t\u{e9}\r\nX: y", "ESMTP"), "unknown");
        assert_eq!(from("client.example", "ESMTP"), "client.example");
    }

    #[test]
    fn return_paths() {
        assert_eq!(return_path("a@b.example"), "Return-Path: <a@b.example>\r\n");
        assert_eq!(return_path(""), "Return-Path: <>\r\n");
        assert_eq!(return_path("<>"), "Return-Path: <>\r\n");
        assert_eq!(
            return_path("\"a b\"@x.example"),
            "Return-Path: <\"a b\"@x.example>\r\n"
        );
    }

    proptest! {
        #[test]
        fn no_injection(helo in "\\PC*|[\\x00-\\x7f]{0,80}", rcpt in "[\\x00-\\x7f]{0,80}", sender in "[\\x00-\\x7f]{0,80}") {
            let h = Received::new(&helo, "192.0.2.1".parse().unwrap(), "mx", epoch())
                .recipient(&rcpt)
                .to_header();
            prop_assert_eq!(h.matches("\r\n").count(), 3);
            prop_assert_eq!(h.matches('\r').count(), 3);
            prop_assert_eq!(h.matches('\n').count(), 3);
            prop_assert_eq!(h.matches(';').count(), 1);
            let p = return_path(&sender);
            prop_assert_eq!(p.matches('\r').count(), 1);
            prop_assert_eq!(p.matches('\n').count(), 1);
        }
    }
}
