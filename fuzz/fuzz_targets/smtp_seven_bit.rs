//! 7-bit conversion (RFC 6152 section 3) and long-line conversion: any input, any
//! chunking and any limits give no panic, the same output whatever the chunking, and a
//! 7-bit result whenever the plan promises one; a message needing no conversion passes
//! through unchanged.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::seven_bit::{MimeScan, SevenBitOptions};

#[derive(Debug, Arbitrary)]
struct Input {
    max_header_section: u16,
    max_depth: u8,
    max_line: u16,
    data: Vec<u8>,
    cuts: Vec<u16>,
}

fn run(
    options: SevenBitOptions,
    data: &[u8],
    cuts: &[usize],
    lines_only: bool,
) -> (bool, bool, Vec<u8>) {
    let mut scan = MimeScan::new(options);
    let mut last = 0;
    for &c in cuts {
        scan.feed(&data[last..c]);
        last = c;
    }
    scan.feed(&data[last..]);
    let plan = scan.finish();
    let (needs, mut conv) = if lines_only {
        (plan.has_long_lines(), plan.line_converter())
    } else {
        (plan.needs_conversion(), plan.converter())
    };
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts {
        conv.feed(&data[last..c], &mut out);
        last = c;
    }
    conv.feed(&data[last..], &mut out);
    conv.finish(&mut out);
    (needs, plan.is_seven_bit_after(), out)
}

fuzz_target!(|input: Input| {
    let mut options = SevenBitOptions::default();
    options.max_header_section = usize::from(input.max_header_section);
    options.max_depth = usize::from(input.max_depth);
    // Lines shorter than the limit, so that chunking cannot move a piece's edge.
    options.max_line = usize::from(input.max_line).max(input.data.len() + 1);
    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&c| usize::from(c) % (input.data.len() + 1))
        .collect();
    cuts.sort_unstable();
    let (needs, seven_bit, out) = run(options, &input.data, &cuts, false);
    let (_, _, whole) = run(options, &input.data, &[], false);
    assert_eq!(out, whole);
    if seven_bit {
        assert!(out.is_ascii());
    }
    if !needs {
        assert_eq!(out, input.data);
    }
    // Long lines only (a next hop with 8BITMIME): unchanged when none.
    let (needs, _, out) = run(options, &input.data, &cuts, true);
    if !needs {
        assert_eq!(out, input.data);
    }
    // Small pieces of long lines: no panic, and still 7-bit when promised.
    options.max_line = usize::from(input.max_line % 64);
    let (_, seven_bit, out) = run(options, &input.data, &cuts, false);
    if seven_bit {
        assert!(out.is_ascii());
    }
});
