//! The Postfix policy delegation codec of mailbag-pop-before-smtp on arbitrary bytes:
//! no panic, bounded buffering, and `parse(encode(x)) == x` for every parsed value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_pop_before_smtp::policy::{
    PolicyAction, PolicyDecoder, PolicyLimits, parse_request, parse_response,
};

fuzz_target!(|data: &[u8]| {
    // Small limits so that the fuzzer reaches them; the first byte picks the split
    // point used to feed the streaming decoder in two parts.
    let limits = PolicyLimits::default()
        .with_max_line_len(200)
        .with_max_attributes(16)
        .with_max_request_size(1024);
    let (split, input) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s), rest),
        None => (0, data),
    };

    // One-shot parser: a parsed request re-encodes to a request that parses equal.
    if let Ok(Some((request, used))) = parse_request(input, &limits) {
        assert!(used <= input.len());
        let wire = request.to_bytes();
        let (again, again_used) = parse_request(&wire, &limits)
            .expect("re-encoded request parses")
            .expect("re-encoded request is complete");
        assert_eq!(again, request);
        assert_eq!(again_used, wire.len());
    }

    // Response parser: same property for actions.
    if let Ok(Some((action, _))) = parse_response(input, &limits) {
        let wire = action.to_response();
        let (again, used) = parse_response(&wire, &PolicyLimits::default())
            .expect("re-encoded response parses")
            .expect("re-encoded response is complete");
        assert_eq!(again, action);
        assert_eq!(used, wire.len());
    }
    if let Ok(text) = std::str::from_utf8(input) {
        if let Ok(action) = PolicyAction::parse(text) {
            assert_eq!(PolicyAction::parse(&action.to_string()), Ok(action));
        }
    }

    // Streaming decoder, fed in two parts: never panics, never buffers more than what
    // was fed, always drains, and agrees with the one-shot parser on the first request.
    let cut = split.min(input.len());
    let mut decoder = PolicyDecoder::new(limits);
    let mut first = None;
    for part in [&input[..cut], &input[cut..]] {
        decoder.feed(part);
        for _ in 0..=input.len() {
            match decoder.decode() {
                Ok(None) => break,
                Ok(Some(r)) => {
                    let wire = r.to_bytes();
                    let (again, _) = parse_request(&wire, &limits)
                        .expect("decoded request re-parses")
                        .expect("complete");
                    assert_eq!(again, r);
                    first.get_or_insert(Ok(r.into_owned()));
                }
                Err(e) => {
                    first.get_or_insert(Err(e));
                }
            }
            assert!(decoder.buffered() <= input.len());
        }
    }
    if let Ok(Some((request, _))) = parse_request(input, &limits) {
        assert_eq!(first, Some(Ok(request.into_owned())));
    }
});
