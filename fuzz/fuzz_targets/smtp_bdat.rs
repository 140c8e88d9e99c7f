//! BDAT receiver: exactly `size` octets are delivered, whatever the read sizes.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::bdat::{BdatReceiver, BdatStep};

#[derive(Debug, Arbitrary)]
struct Input {
    size: u16,
    last: bool,
    discard: bool,
    data: Vec<u8>,
    reads: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let size = u64::from(input.size);
    let mut rx = if input.discard {
        BdatReceiver::discard(size, input.last)
    } else {
        BdatReceiver::new(size, input.last)
    };
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut ended = false;
    loop {
        let n = usize::from(input.reads.get(i).copied().unwrap_or(64));
        i += 1;
        let end = (pos + n).min(input.data.len());
        let chunk = &input.data[pos..end];
        let (used, step) = rx.step(chunk);
        assert!(used <= chunk.len());
        pos += used;
        match step {
            BdatStep::Body(b) => {
                assert!(!input.discard);
                out.extend_from_slice(b);
            }
            BdatStep::NeedMore => {
                if pos >= input.data.len() {
                    break;
                }
            }
            BdatStep::ChunkEnd { last } => {
                assert_eq!(last, input.last);
                ended = true;
                break;
            }
        }
        if i > 100_000 {
            panic!("no progress");
        }
    }
    let expect = input.data.len().min(usize::from(input.size));
    assert_eq!(pos, expect);
    if !input.discard {
        assert_eq!(out, &input.data[..expect]);
    }
    if ended {
        assert_eq!(pos, usize::from(input.size));
    }
});
