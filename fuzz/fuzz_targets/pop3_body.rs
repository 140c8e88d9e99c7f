//! Body encoder/decoder pair: decode(encode(body)) == body with CRLF
//! normalisation, whatever the chunking on either side; TOP output is a
//! line-aligned prefix and does not depend on chunking; the zero-copy
//! segment API gives the same bytes as the copying one.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mailbag_pop3_proto::codec::{
    BodyDecoder, BodyEncoder, BodyProgress, DecodeStatus, normalize_crlf,
};

#[derive(Debug, Arbitrary)]
struct Input {
    body: Vec<u8>,
    enc_cuts: Vec<u8>,
    dec_cuts: Vec<u8>,
    top: Option<u8>,
    seg_cuts: Vec<u8>,
    copy_mask: u8,
}

fn chunks<'a>(data: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut v = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let c = cuts.get(i).map_or(rest.len(), |c| usize::from(*c).max(1));
        let (a, b) = rest.split_at(c.min(rest.len()));
        v.push(a);
        rest = b;
        i += 1;
    }
    v
}

fn encode(body: &[u8], cuts: &[u8], top: Option<u32>) -> Vec<u8> {
    let mut enc = match top {
        None => BodyEncoder::new(),
        Some(n) => BodyEncoder::top(n),
    };
    let mut wire = Vec::new();
    for c in chunks(body, cuts) {
        if enc.encode_chunk(c, &mut wire) == BodyProgress::Done {
            break;
        }
    }
    enc.finish(&mut wire);
    wire
}

/// The same through `encode_segments` (chunk `i` copied instead when
/// `copy_mask` bit `i % 8` is set, to mix both styles on one encoder).
fn encode_segments(body: &[u8], cuts: &[u8], top: Option<u32>, copy_mask: u8) -> Vec<u8> {
    let mut enc = match top {
        None => BodyEncoder::new(),
        Some(n) => BodyEncoder::top(n),
    };
    let mut wire = Vec::new();
    for (i, c) in chunks(body, cuts).into_iter().enumerate() {
        let p = if copy_mask & (1 << (i % 8)) != 0 {
            enc.encode_chunk(c, &mut wire)
        } else {
            enc.encode_segments(c, |s| {
                assert!(!s.is_empty(), "empty segment");
                wire.extend_from_slice(s);
            })
        };
        if p == BodyProgress::Done {
            break;
        }
    }
    enc.finish_segments(|s| wire.extend_from_slice(s));
    wire
}

fn decode(wire: &[u8], cuts: &[u8]) -> Vec<u8> {
    let mut dec = BodyDecoder::new();
    let mut out = Vec::new();
    let mut used = 0;
    for c in chunks(wire, cuts) {
        match dec.decode(c, &mut out) {
            DecodeStatus::Done { consumed } => {
                assert_eq!(used + consumed, wire.len(), "terminator before the end");
                return out;
            }
            DecodeStatus::NeedMore => used += c.len(),
        }
    }
    panic!("no terminator in {wire:?}");
}

fuzz_target!(|input: Input| {
    let norm = normalize_crlf(&input.body);
    let wire = encode(&input.body, &input.enc_cuts, None);
    assert_eq!(
        wire,
        encode(&input.body, &[], None),
        "chunking changed the encoding"
    );
    assert_eq!(
        wire,
        encode_segments(&input.body, &input.seg_cuts, None, input.copy_mask),
        "segments differ from the copying encoder"
    );
    assert_eq!(decode(&wire, &input.dec_cuts), norm.as_ref());
    if let Some(n) = input.top {
        let n = u32::from(n % 8);
        let wire = encode(&input.body, &input.enc_cuts, Some(n));
        assert_eq!(
            wire,
            encode(&input.body, &[], Some(n)),
            "chunking changed TOP"
        );
        assert_eq!(
            wire,
            encode_segments(&input.body, &input.seg_cuts, Some(n), input.copy_mask),
            "TOP segments differ"
        );
        let out = decode(&wire, &input.dec_cuts);
        assert!(norm.starts_with(&out), "TOP output is not a prefix");
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
    }
});
