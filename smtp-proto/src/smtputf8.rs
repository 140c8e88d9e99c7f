//! Whether a message needs SMTPUTF8 (RFC 6531). A client asked for it should
//! still leave it out when neither the envelope nor the message needs it
//! (RFC 6531 section 3.2: it "SHOULD NOT supply the SMTPUTF8 parameter"), so
//! that a next hop without the extension takes the message rather than
//! bouncing it: mail clients set the flag on ASCII mail too. The envelope
//! needs it when an address is not ASCII; the message when its header is not
//! (RFC 6532 allows UTF-8 there only with SMTPUTF8; an 8-bit body is
//! 8BITMIME's business).

/// Whether the header of `message` (its start, up to the first empty line)
/// holds an octet outside ASCII: `Some(true)` if so, `Some(false)` if the
/// header is ASCII, `None` when `message` ends before the header does and
/// `complete` is false (only the start of a longer message was given).
/// A header with a bare LF ending it (`\n\n`) ends there too.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::smtputf8::header_needs_smtputf8;
///
/// assert_eq!(header_needs_smtputf8(b"Subject: hi\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n", true), Some(false));
/// assert_eq!(header_needs_smtputf8(b"Subject: d\xc3\xa9j\xc3\xa0\r\n\r\nhi\r\n", true), Some(true));
/// assert_eq!(header_needs_smtputf8(b"Subject: still the hea", false), None);
/// assert_eq!(header_needs_smtputf8(b"Subject: no body", true), Some(false));
/// ```
pub fn header_needs_smtputf8(message: &[u8], complete: bool) -> Option<bool> {
    let end = header_end(message);
    if end.is_none() && !complete {
        return None;
    }
    let header = &message[..end.unwrap_or(message.len())];
    Some(!header.is_ascii())
}

/// Where the header ends: the offset of the empty line that ends it.
fn header_end(message: &[u8]) -> Option<usize> {
    if message.starts_with(b"\r\n") || message.starts_with(b"\n") {
        return Some(0);
    }
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &message[from..]) {
        let lf = from + i;
        let next = &message[lf + 1..];
        if next.starts_with(b"\r\n") || next.starts_with(b"\n") {
            return Some(lf + 1);
        }
        from = lf + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_does_not_count_and_the_header_end_is_found() {
        let cases: [(&[u8], bool, Option<bool>); 7] = [
            (b"A: b\r\n\r\n\xff", true, Some(false)),
            (b"A: b\n\n\xff", true, Some(false)),
            (b"A: \xe2\x82\xac\r\n\r\n", true, Some(true)),
            (b"\r\nA: \xff", true, Some(false)),
            (b"A: b\r\nB: c\r\n", false, None),
            (b"A: b\r\nB: \xff", false, None),
            (b"", true, Some(false)),
        ];
        for (m, complete, want) in cases {
            assert_eq!(
                header_needs_smtputf8(m, complete),
                want,
                "{:?}",
                core::str::from_utf8(m)
            );
        }
    }
}
