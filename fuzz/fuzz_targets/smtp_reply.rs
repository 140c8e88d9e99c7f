//! Reply parser on arbitrary input; every parsed reply round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::codec::ReplyParser;
use mailbag_smtp_proto::types::EhloReply;

fuzz_target!(|data: &[u8]| {
    let parser = ReplyParser::default();
    let mut rest = data;
    while let Ok(Some((reply, used))) = parser.parse(rest) {
        assert!(used > 0 && used <= rest.len());
        let mut wire = Vec::new();
        reply.encode(&mut wire);
        let (again, n) = parser
            .parse(&wire)
            .ok()
            .flatten()
            .expect("encoded reply must parse");
        assert_eq!(n, wire.len());
        assert_eq!(again, reply);
        if let Some(ehlo) = EhloReply::from_reply(&reply) {
            let r = ehlo
                .to_reply()
                .expect("a parsed reply's text has no control character");
            let mut w = Vec::new();
            r.encode(&mut w);
            let (back, _) = parser
                .parse(&w)
                .ok()
                .flatten()
                .expect("EHLO reply must parse");
            assert_eq!(EhloReply::from_reply(&back), Some(ehlo));
        }
        rest = &rest[used..];
    }
});
