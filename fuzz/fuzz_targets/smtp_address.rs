//! Address parser on arbitrary input; every parsed path re-encodes to the same octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};

fuzz_target!(|data: &[u8]| {
    if let Ok((p, rest)) = parse_reverse_path(data) {
        let mut wire = Vec::new();
        p.encode(&mut wire);
        assert_eq!(&data[..data.len() - rest.len()], &wire[..]);
        assert_eq!(
            parse_reverse_path(&wire).map(|(p, _)| p).ok(),
            Some(p.clone())
        );
        assert!(wire.len() <= 256);
        let _ = p.is_ascii();
    }
    if let Ok((p, rest)) = parse_forward_path(data) {
        let mut wire = Vec::new();
        p.encode(&mut wire);
        assert_eq!(&data[..data.len() - rest.len()], &wire[..]);
        assert_eq!(
            parse_forward_path(&wire).map(|(p, _)| p).ok(),
            Some(p.clone())
        );
        let _ = (
            p.final_domain(),
            p.has_routing_operator(),
            p.is_postmaster(),
        );
    }
});
