//! The RFC 2047 decoder and the header summary on arbitrary input: no panic, the output
//! stays within its bound, a bounded decode is a prefix of the whole one when that fits,
//! and the summary's fields are free of control characters and cut to size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_spam_tag::rfc2047::{decode, decode_to};
use mailbag_spam_tag::{Summary, SummaryOptions};

fuzz_target!(|data: &[u8]| {
    let [bound, rest @ ..] = data else {
        return;
    };
    let max_len = usize::from(*bound);
    let out = decode(rest, max_len);
    assert!(out.len() <= max_len, "output over the bound");
    let mut whole = String::new();
    assert!(decode_to(rest, usize::MAX, &mut whole));
    if whole.len() <= max_len {
        assert_eq!(out, whole, "the bound changed a short output");
    }

    let mut opts = SummaryOptions::default();
    opts.max_chars = usize::from(*bound % 64);
    let s = Summary::parse_with(rest, &opts);
    for field in [&s.from, &s.subject] {
        assert!(!field.chars().any(char::is_control));
        assert!(field.chars().count() <= opts.max_chars + 1);
    }
});
