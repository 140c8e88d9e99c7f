//! Framer + parsers on arbitrary bytes: no panic, and whatever parses
//! re-encodes and re-parses to the same value (commands, responses,
//! capabilities, listing lines, SASL responses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_pop3_proto::codec::{
    Encode, LineFramer, MAX_COMMAND_LINE, MAX_RESPONSE_LINE, parse_capability, parse_command,
    parse_list_entry, parse_response, parse_sasl_response, parse_uidl_entry,
};

fn strip(v: &[u8]) -> &[u8] {
    v.strip_suffix(b"\r\n").expect("encoders end with CRLF")
}

fn check(line: &[u8]) {
    if let Ok(c) = parse_command(line) {
        let wire = c.to_bytes();
        assert_eq!(
            parse_command(strip(&wire)).as_ref(),
            Ok(&c),
            "command {line:?}"
        );
    }
    if let Ok(r) = parse_response(line) {
        let wire = r.to_bytes();
        assert_eq!(
            parse_response(strip(&wire)).as_ref(),
            Ok(&r),
            "response {line:?}"
        );
    }
    if let Ok(c) = parse_capability(line) {
        let wire = c.to_bytes();
        assert_eq!(
            parse_capability(strip(&wire)).as_ref(),
            Ok(&c),
            "capability {line:?}"
        );
    }
    if let Ok(e) = parse_list_entry(line) {
        assert_eq!(parse_list_entry(strip(&e.to_bytes())), Ok(e));
    }
    if let Ok(e) = parse_uidl_entry(line) {
        let wire = e.to_bytes();
        assert_eq!(parse_uidl_entry(strip(&wire)).as_ref(), Ok(&e));
    }
    if let Ok(s) = parse_sasl_response(line) {
        let wire = s.to_bytes();
        assert_eq!(parse_sasl_response(strip(&wire)).as_ref(), Ok(&s));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size so that framing is exercised with
    // split input.
    let (step, data) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let mut framer = LineFramer::new();
    let limit = if step % 2 == 0 {
        MAX_COMMAND_LINE
    } else {
        MAX_RESPONSE_LINE
    };
    for chunk in data.chunks(step) {
        framer.push(chunk);
        assert!(framer.buffered_len() <= limit + step);
        while let Some(r) = framer.next_line(limit) {
            if let Ok(line) = r {
                assert!(line.len() < limit);
                check(line);
            }
        }
    }
    // Also the whole input as one line.
    check(data);
});
