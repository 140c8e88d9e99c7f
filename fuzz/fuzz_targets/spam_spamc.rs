//! The SPAMC/1.5 codec: request and response parsers never panic, and whatever they
//! accept re-encodes to bytes that parse to the same value (scores are normalised to one
//! decimal by the first encoding, so the second round must be exact).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_spam_tag::spamc::{
    Response, ResponseReader, SpamcLimits, encode_request_head, encode_response_head,
    parse_request_head, parse_symbols,
};

fn read(wire: &[u8], chunk: usize) -> Option<Response> {
    let mut r = ResponseReader::new(SpamcLimits::default());
    for c in wire.chunks(chunk.max(1)) {
        r.feed(c).ok()?;
    }
    r.finish().ok()
}

fn encode(resp: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response_head(&resp.head, &mut out);
    out.extend_from_slice(&resp.body);
    out
}

fuzz_target!(|data: &[u8]| {
    let [chunk, rest @ ..] = data else { return };
    let limits = SpamcLimits::default();

    // Requests.
    if let Ok(Some((head, used))) = parse_request_head(rest, &limits) {
        assert!(used <= rest.len());
        let mut wire = Vec::new();
        encode_request_head(&head, &mut wire);
        let (again, n) = parse_request_head(&wire, &limits).unwrap().unwrap();
        assert_eq!(again, head);
        assert_eq!(n, wire.len());
    }

    // Responses, fed in chunks.
    let whole = read(rest, rest.len());
    let chunked = read(rest, usize::from(*chunk));
    assert_eq!(whole, chunked, "chunking changed the result");
    if let Some(resp) = whole {
        let _ = parse_symbols(&resp.body);
        // A bare head followed by bytes cannot be re-encoded (the bytes would read as
        // headers); spamd never sends that.
        if resp.head.is_bare() && !resp.body.is_empty() {
            return;
        }
        let e1 = encode(&resp);
        let p2 = read(&e1, e1.len()).expect("re-encoded response parses");
        let e2 = encode(&p2);
        assert_eq!(e1, e2);
        let p3 = read(&e2, e2.len()).unwrap();
        assert_eq!(p2, p3);
    }
});
