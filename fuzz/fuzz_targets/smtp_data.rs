//! DATA receiver: unstuff(stuff(body)) == body with random read sizes (no bare CR or LF
//! ever sent), and arbitrary input
//! gives the same result whole or chunked.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::data::{BareLfPolicy, DataOptions, DataReceiver, stuff};

#[derive(Debug, Arbitrary)]
struct Input {
    body: Vec<u8>,
    reads: Vec<u8>,
    policy: u8,
    raw: bool,
}

fn receive(
    wire: &[u8],
    reads: &[u8],
    opts: &DataOptions,
) -> (
    Vec<u8>,
    usize,
    Option<Result<u64, mailbag_smtp_proto::data::DataError>>,
) {
    let mut rx = DataReceiver::new(opts.clone());
    let mut out = Vec::new();
    let mut buffered = Vec::new();
    let mut pos = 0;
    let mut used_total = 0;
    let mut i = 0;
    while pos < wire.len() {
        let n = usize::from(reads.get(i).copied().unwrap_or(255)).max(1);
        i += 1;
        let end = (pos + n).min(wire.len());
        buffered.extend_from_slice(&wire[pos..end]);
        pos = end;
        let (used, e) = rx.receive_into(&buffered, &mut out);
        buffered.drain(..used);
        used_total += used;
        if e.is_some() {
            return (out, used_total, e);
        }
    }
    (out, used_total, None)
}

fuzz_target!(|input: Input| {
    let mut opts = DataOptions::default();
    opts.max_size = 0;
    opts.bare_lf = match input.policy % 3 {
        0 => BareLfPolicy::Reject,
        1 => BareLfPolicy::Normalize,
        _ => BareLfPolicy::Accept,
    };
    if input.raw {
        // Arbitrary bytes: chunked and whole runs agree.
        let whole = receive(&input.body, &[255; 0], &opts);
        let mut rx = DataReceiver::new(opts.clone());
        let mut out = Vec::new();
        let (n, e) = rx.receive_into(&input.body, &mut out);
        assert_eq!((out, n, e), whole.clone());
        assert_eq!(receive(&input.body, &input.reads, &opts), whole);
        return;
    }
    // The body as it is: no bare CR or LF goes out (RFC 5321 section 2.3.8), and the
    // data ends where the stuffer ended it.
    let mut wire = Vec::new();
    stuff(&input.body, &mut wire);
    let bare = wire.iter().enumerate().any(|(i, &c)| match c {
        b'\r' => wire.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || wire[i - 1] != b'\r',
        _ => false,
    });
    assert!(!bare);
    let len = wire.len();
    wire.extend_from_slice(b"QUIT\r\n");
    let (_, used, end) = receive(&wire, &input.reads, &opts);
    assert_eq!(used, len);
    assert!(matches!(end, Some(Ok(_))));
    // Canonical CRLF body (CRs dropped, every LF becomes CRLF), then stuffed:
    // received back exactly.
    let mut body = Vec::new();
    for line in input.body.split(|&b| b == b'\n') {
        body.extend(line.iter().filter(|&&b| b != b'\r'));
        body.extend_from_slice(b"\r\n");
    }
    let mut wire = Vec::new();
    stuff(&body, &mut wire);
    let len = wire.len();
    wire.extend_from_slice(b"QUIT\r\n");
    let (out, used, end) = receive(&wire, &input.reads, &opts);
    assert_eq!(used, len);
    assert_eq!(end, Some(Ok(body.len() as u64)));
    assert_eq!(out, body);
});
