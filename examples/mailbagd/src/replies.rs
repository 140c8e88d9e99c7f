//! The SMTP replies of mailbagd's own policy: refusals of recipients and
//! messages, local errors. They are smtp-proto [`Reply`] values from the start,
//! and stay so until the session writes them: nothing in the server passes
//! a reply around as a code, a status string and a text.

use std::borrow::Cow;

use mailbag_smtp_proto::address::ForwardPath;
use mailbag_smtp_proto::types::{EnhancedStatusCode, Reply, ReplyCode};

/// The longest text of one of mailbagd's replies, in octets: with the code and
/// the longest enhanced code it fits smtp-proto's [`Reply::MAX_LINE_LEN`].
pub const MAX_REPLY_TEXT: usize = Reply::MAX_LINE_LEN - "550 5.999.999 \r\n".len();

/// A reply with an enhanced status code (RFC 3463). Control characters in
/// `text` (which may quote a client's address) are dropped; a text longer than
/// [`MAX_REPLY_TEXT`] is cut there; an enhanced code whose class differs from
/// the reply code's is left out.
pub fn reply(
    code: ReplyCode,
    (class, subject, detail): (u8, u16, u16),
    text: impl Into<Cow<'static, str>>,
) -> Reply<'static> {
    let text: Cow<'static, str> = text.into();
    let text = if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().filter(|c| !c.is_control()).collect())
    } else {
        text
    };
    let enhanced = EnhancedStatusCode::new(class, subject, detail)
        .ok()
        .filter(|e| e.class() == code.class());
    // A text too long for one reply line is cut to `MAX_REPLY_TEXT` octets. Only a
    // text that looks like an enhanced code, given without one, can still be
    // refused (control characters are gone, the class matches, the length fits):
    // the reply then carries the code alone, which is always valid.
    let text = if text.len() > MAX_REPLY_TEXT {
        let mut end = MAX_REPLY_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(text[..end].to_owned())
    } else {
        text
    };
    #[allow(clippy::expect_used)]
    Reply::new(code, enhanced, text)
        .or_else(|_| Reply::new(code, enhanced, ""))
        .expect("a reply without control characters and with an empty text is valid")
}

/// How a path is shown in a reply text and in logs: as the client sent it,
/// in angle brackets.
pub fn shown(rcpt: &ForwardPath<'_>) -> String {
    let mut v = Vec::new();
    rcpt.encode(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

/// `554 5.7.1 <rcpt>: Relay access denied`: a remote recipient from a client
/// that is not authorized (no recent POP3 login).
pub fn relay_denied(rcpt: &ForwardPath<'_>) -> Reply<'static> {
    reply(
        ReplyCode::TRANSACTION_FAILED,
        (5, 7, 1),
        format!("{}: Relay access denied", shown(rcpt)),
    )
}

/// `550 5.1.1 <rcpt>: Recipient address rejected: User unknown`.
pub fn unknown_user(rcpt: &ForwardPath<'_>) -> Reply<'static> {
    reply(
        ReplyCode::MAILBOX_UNAVAILABLE,
        (5, 1, 1),
        format!("{}: Recipient address rejected: User unknown", shown(rcpt)),
    )
}

/// `530 5.7.0`: submission from a client that is not authorized.
pub fn submission_needs_login() -> Reply<'static> {
    reply(
        ReplyCode::AUTH_REQUIRED,
        (5, 7, 0),
        "Authentication required: check your mail (POP3) before sending",
    )
}

/// `502 5.5.1 AUTH not available`: SMTP AUTH is off (POP-before-SMTP authorizes).
pub fn auth_not_available() -> Reply<'static> {
    reply(ReplyCode::NOT_IMPLEMENTED, (5, 5, 1), "AUTH not available")
}

/// `421 4.3.2 Server shutting down, try again later`: a message whose
/// delivery the shutdown cut off (nothing was stored).
pub fn shutting_down() -> Reply<'static> {
    reply(
        ReplyCode::NOT_AVAILABLE,
        (4, 3, 2),
        "Server shutting down, try again later",
    )
}

/// `451 4.3.0 Local error in processing, try again later`.
pub fn local_error() -> Reply<'static> {
    reply(
        ReplyCode::LOCAL_ERROR,
        (4, 3, 0),
        "Local error in processing, try again later",
    )
}

/// `451 4.3.0 Relay authorization unavailable, try again later`: the shared
/// POP-before-SMTP table (`[cluster] redis`) cannot be read; no relay
/// without a proof.
pub fn relay_check_unavailable() -> Reply<'static> {
    reply(
        ReplyCode::LOCAL_ERROR,
        (4, 3, 0),
        "Relay authorization unavailable, try again later",
    )
}

/// `451 4.3.0 Local delivery failed, try again later`.
pub fn delivery_deferred() -> Reply<'static> {
    reply(
        ReplyCode::LOCAL_ERROR,
        (4, 3, 0),
        "Local delivery failed, try again later",
    )
}

/// `452 4.3.1 Insufficient system storage`: the data or queue file system
/// is below `[limits] min_free_space`.
pub fn insufficient_storage() -> Reply<'static> {
    reply(
        ReplyCode::INSUFFICIENT_STORAGE,
        (4, 3, 1),
        "Insufficient system storage",
    )
}

/// `552 5.3.4 Message size exceeds fixed limit`: the reply the session gives
/// a message over `SIZE` (a copy too large to store, after the added header
/// fields or rewritten line ends, gets the same words).
pub fn too_big() -> Reply<'static> {
    mailbag_smtp_proto::data::DataError::TooBig.reply()
}

/// `552 5.3.4 Message header too large`.
pub fn header_too_large() -> Reply<'static> {
    reply(
        ReplyCode::EXCEEDED_STORAGE,
        (5, 3, 4),
        "Message header too large",
    )
}

/// `550 5.6.0`: a bare CR or bare LF in the content under
/// `smtp.bare_line_endings = "reject"`.
pub fn bare_line_end() -> Reply<'static> {
    reply(
        ReplyCode::MAILBOX_UNAVAILABLE,
        (5, 6, 0),
        "Message contains a bare CR or bare LF; lines must end with CRLF",
    )
}

/// `554 5.4.6`: more `Received:` fields than `smtp.max_received_headers` (a mail loop).
pub fn mail_loop() -> Reply<'static> {
    reply(
        ReplyCode::TRANSACTION_FAILED,
        (5, 4, 6),
        "Too many Received: header fields: mail loop detected",
    )
}

/// `451 4.3.5`: the recipient's passwd-file line cannot be used now (a
/// local configuration fault; the sender retries).
pub fn account_unusable() -> Reply<'static> {
    reply(
        ReplyCode::LOCAL_ERROR,
        (4, 3, 5),
        "Mailbox temporarily unavailable: its account entry cannot be used",
    )
}

/// `452 4.2.2 Mailbox full` (temporary) or `552 5.2.2 Mailbox full`.
pub fn mailbox_full(temporary: bool) -> Reply<'static> {
    if temporary {
        reply(ReplyCode::INSUFFICIENT_STORAGE, (4, 2, 2), "Mailbox full")
    } else {
        reply(ReplyCode::EXCEEDED_STORAGE, (5, 2, 2), "Mailbox full")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbag_smtp_proto::address::parse_forward_path;

    fn wire(r: &Reply<'_>) -> String {
        let mut v = Vec::new();
        r.encode(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn replies_encode_as_sent_before() {
        let (rcpt, _) = parse_forward_path(b"<x@elsewhere.example>").unwrap();
        assert_eq!(
            wire(&relay_denied(&rcpt)),
            "554 5.7.1 <x@elsewhere.example>: Relay access denied\r\n"
        );
        assert_eq!(
            wire(&local_error()),
            "451 4.3.0 Local error in processing, try again later\r\n"
        );
        assert_eq!(wire(&mailbox_full(true)), "452 4.2.2 Mailbox full\r\n");
        assert_eq!(
            wire(&insufficient_storage()),
            "452 4.3.1 Insufficient system storage\r\n"
        );
        assert_eq!(wire(&mailbox_full(false)), "552 5.2.2 Mailbox full\r\n");
    }

    /// A text longer than one reply line is cut to fit, on a character boundary
    /// (smtp-proto refuses a reply line over 512 octets).
    #[test]
    fn a_long_text_is_cut_to_one_reply_line() {
        let long = format!("{}{}", "a".repeat(MAX_REPLY_TEXT - 1), "ü".repeat(20));
        let r = reply(ReplyCode::MAILBOX_UNAVAILABLE, (5, 999, 999), long);
        let w = wire(&r);
        assert_eq!(w.len(), Reply::MAX_LINE_LEN - 1, "{w}");
        assert!(w.starts_with("550 5.999.999 aaa"));
        assert!(w.ends_with("a\r\n"));
        let r = reply(ReplyCode::MAILBOX_UNAVAILABLE, (5, 1, 1), "b".repeat(2000));
        assert_eq!(r.lines()[0].len(), MAX_REPLY_TEXT);
    }

    #[test]
    fn control_characters_are_dropped_and_a_wrong_class_left_out() {
        let r = reply(ReplyCode::LOCAL_ERROR, (5, 1, 1), "a\r\nb\u{7}c");
        assert_eq!(wire(&r), "451 abc\r\n");
    }
}
