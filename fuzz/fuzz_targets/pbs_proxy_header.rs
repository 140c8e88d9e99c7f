//! The PROXY protocol header parser of mailbag-pop-before-smtp on arbitrary bytes: no
//! panic, never past the input, every parsed header re-encodes (v1 and v2) to bytes
//! that parse to the same client, and every proper prefix of a header asks for more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_pop_before_smtp::proxy_header::{ProxyHeader, ProxyLimits, parse};

fuzz_target!(|data: &[u8]| {
    let limits = ProxyLimits::default();
    let Ok(Some((header, used))) = parse(data, &limits) else {
        return;
    };
    assert!(used <= data.len());
    for cut in 0..used {
        assert_eq!(
            parse(&data[..cut], &limits),
            Ok(None),
            "prefix {cut} of {used}"
        );
    }
    let v2 = header.to_v2();
    let (again, n) = parse(&v2, &limits).expect("v2 parses").expect("complete");
    assert_eq!(n, v2.len());
    match header {
        ProxyHeader::Proxied {
            source,
            destination,
        } if source.is_ipv4() == destination.is_ipv4() => {
            assert_eq!(again, header);
            let v1 = header.to_v1();
            assert_eq!(parse(&v1, &limits), Ok(Some((header, v1.len()))));
        }
        ProxyHeader::Proxied { .. } => {
            assert_eq!(
                again.source().map(|s| s.port()),
                header.source().map(|s| s.port())
            );
        }
        ProxyHeader::Unknown => assert_eq!(again, ProxyHeader::Unknown),
    }
});
