//! smtp-proto::dsn: the DSN parser on arbitrary bytes (never panics), and a
//! build → parse round trip for reports derived from the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::dsn::{
    Action, DsnBuilder, OriginalContent, RecipientReport, parse_delivery_status,
    parse_status_fields,
};
use mailbag_smtp_proto::date::DateTime;
use mailbag_smtp_proto::types::EnhancedStatusCode;

fuzz_target!(|data: &[u8]| {
    let _ = parse_delivery_status(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_status_fields(text);
    let _ = text.parse::<DateTime>();

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
    if let Ok(parts) = b.build(OriginalContent::Headers, false) {
        let mut msg = parts.prefix.clone();
        msg.extend_from_slice(&parts.suffix);
        let parsed = parse_delivery_status(&msg).expect("own DSN parses");
        if !text.is_empty() {
            assert_eq!(parsed.recipients, vec![report]);
        }
    }
});
