//! smtp-proto::dsn: the DSN parser on arbitrary bytes (never panics), and a
//! build → parse round trip for reports derived from the same bytes; the text values a
//! server reads and writes around DSNs (dates, xtext, enhanced codes in reply text, trace
//! fields) on the same input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::date::DateTime;
use mailbag_smtp_proto::dsn::{
    Action, DsnBuilder, OriginalContent, RecipientReport, parse_delivery_status,
    parse_status_fields,
};
use mailbag_smtp_proto::trace::{Received, return_path};
use mailbag_smtp_proto::types::{EnhancedStatusCode, XText};

fuzz_target!(|data: &[u8]| {
    let _ = parse_delivery_status(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_status_fields(text);
    if let Ok(d) = text.parse::<DateTime>() {
        assert_eq!(d.to_string().parse::<DateTime>(), Ok(d));
    }
    if let Ok(x) = XText::parse(text) {
        assert_eq!(
            XText::parse(&x.to_wire()).map(|y| y.as_str() == x.as_str()),
            Ok(true)
        );
    }
    if let Some((e, end)) = EnhancedStatusCode::find_in(text) {
        assert!(text.is_char_boundary(end));
        assert_eq!(
            text[..end]
                .trim_start()
                .rsplit([' ', '-'])
                .next()
                .map(str::parse),
            Some(Ok(e))
        );
    }
    let _ = Action::Failed.status_from_reply(text);
    let received = Received::new(
        text,
        [192, 0, 2, 1].into(),
        text,
        DateTime::new(0, 0).unwrap(),
    )
    .recipient(text)
    .id(text)
    .to_header();
    assert_eq!(received.matches('\n').count(), 3);
    assert_eq!(received.matches('\r').count(), 3);
    assert_eq!(return_path(text).matches('\n').count(), 1);

    // Use the input as the diagnostic text and the ORCPT of a report.
    let date = DateTime::new(u64::from(data.len() as u32) * 1_000_003, 0).unwrap();
    let mut b = DsnBuilder::new(
        "mx.example.net",
        "MAILER-DAEMON@mx.example.net",
        "a@example.org",
        date,
        "=_fuzz_boundary_7c1",
        "<1@mx.example.net>",
    );
    let status = EnhancedStatusCode::new(5, 1, 1).unwrap();
    let report = RecipientReport::new(text, Action::Failed, status)
        .diagnostic(text)
        .original_recipient_xtext(text)
        .last_attempt(date);
    b.recipient(report.clone());
    // The US-ASCII delivery-status part shows a non-ASCII diagnostic with
    // `?`s; RFC 6533's global one keeps it.
    let mut ascii = report.clone();
    ascii.diagnostic = ascii.diagnostic.map(|d| {
        d.chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect()
    });
    for (utf8, expected) in [(false, ascii), (true, report)] {
        b.smtputf8(utf8);
        if let Ok(parts) = b.build(OriginalContent::Headers, false) {
            let mut msg = parts.prefix.clone();
            msg.extend_from_slice(&parts.suffix);
            let parsed = parse_delivery_status(&msg).expect("own DSN parses");
            if !text.is_empty() {
                assert_eq!(parsed.recipients, vec![expected]);
            }
        }
    }
});
