//! What a message submission agent may add to a message from its own users (RFC 6409
//! section 8): a `Date:` field (8.2) and a `Message-ID:` field (8.3) when the message
//! has none. A minimal client (curl, a script, a device) often sends neither, and spam
//! filters count both as missing (SpamAssassin's `MISSING_DATE`, `MISSING_MID`). A
//! relay must not add them to other servers' mail: they are for submission only.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::date::DateTime;
//! use mailbag_smtp_proto::submission::{date_field, message_id_field, missing_fields};
//!
//! let missing = missing_fields(b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n").unwrap();
//! assert!(missing.date && missing.message_id);
//! let date = DateTime::new(1_700_000_000, 0).unwrap();
//! assert_eq!(date_field(&date), "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n");
//! assert_eq!(
//!     message_id_field("17-2.abc", "mail.example.org").unwrap(),
//!     "Message-ID: <17-2.abc@mail.example.org>\r\n"
//! );
//! // A header section not ended within what was read: nothing can be said.
//! assert!(missing_fields(b"From: a@example.org\r\nSubj").is_none());
//! ```

use alloc::format;
use alloc::string::String;

use crate::date::DateTime;
use crate::dsn::header_section_len;

/// Which of the fields a submission agent may add a message lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingFields {
    /// No `Date:` field (RFC 6409 section 8.2).
    pub date: bool,
    /// No `Message-ID:` field (RFC 6409 section 8.3).
    pub message_id: bool,
}

impl MissingFields {
    /// Whether either field is missing.
    pub fn any(&self) -> bool {
        self.date || self.message_id
    }
}

/// Which fields the header section at the start of `head` (the first octets of a
/// message, CRLF line ends) lacks; `None` when the header section does not end
/// within `head`.
pub fn missing_fields(head: &[u8]) -> Option<MissingFields> {
    let section = head.get(..header_section_len(head)?)?;
    let mut missing = MissingFields {
        date: true,
        message_id: true,
    };
    for line in section.split(|&b| b == b'\n') {
        if matches!(line.first(), Some(b' ' | b'\t') | None) {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"date") {
            missing.date = false;
        } else if name.eq_ignore_ascii_case(b"message-id") {
            missing.message_id = false;
        }
    }
    Some(missing)
}

/// A `Date:` field for `date`, with its line end.
pub fn date_field(date: &DateTime) -> String {
    format!("Date: {date}\r\n")
}

/// Why [`message_id_field`] made no field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageIdError {
    /// The left part is empty or not a dot-atom of RFC 5322 `atext`.
    #[error("the Message-ID's left part is not a dot-atom")]
    Left,
    /// The domain is neither a dot-atom of RFC 5322 `atext` nor a `[...]` literal.
    #[error("the Message-ID's domain is neither a dot-atom nor a literal")]
    Domain,
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// A `Message-ID:` field `<left@domain>` (RFC 5322 section 3.6.4: `left` unique to
/// this host, `domain` the host's name or `[address]`), with its line end.
///
/// # Errors
///
/// [`MessageIdError`] when a part does not fit RFC 5322's `msg-id`.
pub fn message_id_field(left: &str, domain: &str) -> Result<String, MessageIdError> {
    if !is_dot_atom(left) {
        return Err(MessageIdError::Left);
    }
    // RFC 5322 `no-fold-literal`: `[` dtext `]` (a host named by its address).
    let literal = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .is_some_and(|d| {
            d.bytes()
                .all(|b| b.is_ascii_graphic() && !b"[]\\".contains(&b))
        });
    if !is_dot_atom(domain) && !literal {
        return Err(MessageIdError::Domain);
    }
    Ok(format!("Message-ID: <{left}@{domain}>\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_whatever_their_case_and_folding() {
        let m = missing_fields(
            b"DATE : Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: x\r\n message-id: folded\r\n\r\n",
        )
        .unwrap();
        assert!(!m.date && m.message_id);
        let m = missing_fields(b"Message-Id: <a@b>\r\n\r\nDate: in the body\r\n").unwrap();
        assert!(m.date && !m.message_id);
        // No header section at all: both missing.
        assert!(missing_fields(b"\r\nbody\r\n").unwrap().any());
    }

    #[test]
    fn message_ids_are_dot_atoms() {
        assert_eq!(message_id_field("", "a.example"), Err(MessageIdError::Left));
        assert_eq!(
            message_id_field("a b", "a.example"),
            Err(MessageIdError::Left)
        );
        assert!(message_id_field("x", "[192.0.2.1]").is_ok());
        assert_eq!(message_id_field("x", "[a]b]"), Err(MessageIdError::Domain));
        assert_eq!(
            message_id_field("x", "a..example"),
            Err(MessageIdError::Domain)
        );
        assert!(message_id_field("1a2b.17-2.mxq", "mail.example.test").is_ok());
    }
}
