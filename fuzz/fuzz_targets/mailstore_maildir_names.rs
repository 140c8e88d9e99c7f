//! mailstore: everything it parses from disk (Maildir file names written by
//! other programs, its own and Dovecot's UID index files) and its CRLF
//! conversion of stored messages, on arbitrary bytes.
#![no_main]

use std::io::{Cursor, Read};

use libfuzzer_sys::fuzz_target;
use mailbag_mailstore::{CrlfCounter, MaildirName, MessageReader, fuzz_uidlist};

fuzz_target!(|data: &[u8]| {
    // Index files: never panic; what parses round-trips.
    fuzz_uidlist(data);

    // File names.
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(n) = MaildirName::parse(s)
    {
        assert!(s.starts_with(n.base()));
        assert!(!n.base().is_empty() && !n.base().contains(':'));
        if let Some(flags) = n.flags() {
            assert!(s.ends_with(flags));
        }
    }

    // Message reads: the whole read is exactly the counted CRLF size, every
    // LF is preceded by CR, and TOP is a prefix of the whole message.
    let mut counter = CrlfCounter::new();
    let split = data.len() / 2;
    counter.update(&data[..split]);
    counter.update(&data[split..]);
    let mut whole = Vec::new();
    MessageReader::whole(Cursor::new(data.to_vec()))
        .read_to_end(&mut whole)
        .unwrap();
    assert_eq!(whole.len() as u64, counter.crlf());
    assert_eq!(data.len() as u64, counter.stored());
    for (i, b) in whole.iter().enumerate() {
        if *b == b'\n' {
            assert!(i > 0 && whole[i - 1] == b'\r');
        }
    }
    let lines = u64::from(data.first().copied().unwrap_or(0) % 8);
    let mut top = Vec::new();
    MessageReader::top(Cursor::new(data.to_vec()), lines)
        .read_to_end(&mut top)
        .unwrap();
    assert!(whole.starts_with(&top));
});
