//! The block line mode with AVX2: each 64-octet block classified as two
//! 32-octet vectors (three compares and three mask moves each); the copy
//! path appends each run and insert (AVX-512's two-block builder needs mask
//! registers: built from AVX2 blends it measured slower than these appends).

use alloc::vec::Vec;
use core::arch::x86_64::__m256i;

use pulp::x86::V3;

use super::blocks::{BLOCK, Carry, Classify, Masks};
use super::segments::segments;
use crate::codec::body::sink::VecSink;

impl Classify for V3 {
    /// Three compares and three mask moves per 32-octet half.
    #[inline(always)]
    fn classify(self, block: &[u8; BLOCK], carry: &mut Carry) -> Masks {
        let [lo, hi]: [__m256i; 2] = pulp::cast(*block);
        let eq = |b: u8| {
            let c = self.avx._mm256_set1_epi8(b as i8);
            let m = |v| {
                self.avx2
                    ._mm256_movemask_epi8(self.avx2._mm256_cmpeq_epi8(v, c))
            };
            u64::from(m(lo) as u32) | (u64::from(m(hi) as u32) << 32)
        };
        Masks::new(eq(b'\n'), eq(b'\r'), eq(b'.'), carry)
    }
}

/// The copy loop of [`super::copy_lines`] with AVX2: the segment loop into
/// the output, then the run it left pending. It goes on to the last whole
/// block: a copy loop that left for block mode after [`CLEAN_STREAK`]
/// clean line ends, as AVX-512's did then (it now counts clean blocks),
/// measured 1 % faster on a message of 20 bare-LF header lines and a CRLF
/// body (34.8-35.2 against 35.1-35.4 µs per MiB, both in one program,
/// interleaved) and 3 % slower on bare-LF text (72.1-72.7 against
/// 69.7-70.6).
///
/// [`CLEAN_STREAK`]: crate::codec::body::scan::CLEAN_STREAK
#[inline(always)]
pub(super) fn copy(v3: V3, chunk: &[u8], pos: usize, out: &mut Vec<u8>) -> usize {
    let mut run = pos;
    let at = segments(v3, chunk, pos, &mut run, &mut VecSink(out));
    out.extend_from_slice(chunk.get(run..at).unwrap_or_default());
    at
}
