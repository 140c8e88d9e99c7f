//! The segment path of the block line mode, the same with AVX2 and AVX-512:
//! the runs between the inserts and the inserts, their places taken from
//! the block masks.

use super::blocks::{BLOCK, Carry, Classify, load};
use crate::codec::body::sink::{Insert, Sink};

/// The segment loop of [`super::segment_lines`]: the runs between the
/// inserts and the inserts, their places taken from the block masks.
#[inline(always)]
pub(super) fn segments<'a, C: Classify, S: Sink<'a>>(
    simd: C,
    chunk: &'a [u8],
    pos: usize,
    run: &mut usize,
    sink: &mut S,
) -> usize {
    let mut carry = Carry::at(chunk, pos);
    let mut r = *run;
    let mut i = pos;
    // No early return to block mode here: a block without inserts costs
    // this loop about what it costs the scan, and the fewer values the
    // loop keeps, the fewer it spills around the sink's calls.
    while let Some(block) = load(chunk, i) {
        let k = simd.classify(block, &mut carry);
        let mut x = k.ins;
        while x != 0 {
            let p = x.trailing_zeros() as usize;
            let at = i + p;
            if at > r {
                sink.run(chunk.get(r..at).unwrap_or_default());
            }
            if (k.bare >> p) & 1 != 0 {
                sink.insert(Insert::Crlf);
                r = at + 1;
            } else {
                sink.insert(Insert::Dot);
                r = at;
            }
            x &= x - 1;
        }
        i += BLOCK;
    }
    if carry.lf != 0 && chunk.get(i) == Some(&b'.') {
        sink.run(chunk.get(r..i).unwrap_or_default());
        sink.insert(Insert::Dot);
        r = i;
    }
    *run = r;
    i
}
