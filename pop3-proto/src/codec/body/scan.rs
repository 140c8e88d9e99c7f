//! The body encoder's search for line ends that need work: a block scan
//! that compiles to SIMD compares (also built for AVX2 and chosen at run time
//! through `pulp` with the feature `simd`, and for AVX-512 with the feature
//! `avx512`), and a LF search tuned for short lines.

use memchr::memchr;

/// The position of the first LF in `hay` at or after `from`.
///
/// Line mode without the block line mode (no AVX2, feature `simd` off, or
/// not x86-64) calls this once per line, so it is tuned for
/// short distances:
/// a branch-free "any LF" check over 32 octets (SIMD compares), then a
/// SWAR search of the 8-octet words of the block that has one. Measured
/// about twice as fast per line as `memchr` on ~72-octet lines, whose
/// per-call set-up dominates at that distance.
#[inline(always)]
pub(super) fn next_lf(hay: &[u8], from: usize) -> Option<usize> {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const LFS: u64 = 0x0A0A_0A0A_0A0A_0A0A;
    let rest = hay.get(from..)?;
    let mut base = from;
    let mut blocks = rest.chunks_exact(32);
    for block in &mut blocks {
        let Ok(block) = <&[u8; 32]>::try_from(block) else {
            break;
        };
        let mut any = false;
        for &b in block {
            any |= b == b'\n';
        }
        if any {
            for (k, word) in block.chunks_exact(8).enumerate() {
                let x = u64::from_le_bytes(word.try_into().ok()?) ^ LFS;
                // High bit set exactly in the octets of `x` that are zero
                // (no carries between octets).
                let zero = !(((x & LOW7) + LOW7) | x | LOW7);
                if zero != 0 {
                    return Some(base + k * 8 + (zero.trailing_zeros() / 8) as usize);
                }
            }
        }
        base += 32;
    }
    memchr(b'\n', blocks.remainder()).map(|i| base + i)
}

/// Octets checked at once by [`block_needs_work`].
pub(super) const SCAN_BLOCK: usize = 128;

/// Line ends in a row that needed no work before the encoder goes back from
/// line mode to block mode.
pub(super) const CLEAN_STREAK: u32 = 4;

/// The first block `[b, b + SCAN_BLOCK)` with `b = pos + k * SCAN_BLOCK`
/// that holds a line end needing work, as `(b, true)`; or, if none does,
/// `(b, false)` for the first block that is not followed by a whole block
/// plus one octet of context (`chunk[b - 1]` and `chunk[b + SCAN_BLOCK]`
/// are read as context). `pos` must be at least 1.
///
/// Compiled for AVX-512 (feature `avx512`) or AVX2 when the CPU has it
/// (chosen at run time by `pulp`, whose `V4` and `V3` tokens check the CPU
/// and run [`scan_blocks`] inlined into a function built for those
/// instructions); otherwise for the target's baseline (SSE2 on x86-64).
#[inline(never)]
pub(super) fn next_dirty_block(chunk: &[u8], pos: usize) -> (usize, bool) {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if let Some(v4) = pulp::x86::V4::try_new() {
        return v4.vectorize(
            #[inline(always)]
            || scan_blocks(chunk, pos),
        );
    }
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    if let Some(v3) = pulp::x86::V3::try_new() {
        return v3.vectorize(
            #[inline(always)]
            || scan_blocks(chunk, pos),
        );
    }
    scan_blocks(chunk, pos)
}

/// The loop of [`next_dirty_block`] for whatever instruction set the caller
/// was compiled for (straight SIMD code: about 27 instructions per 128
/// octets with AVX2, twice that with SSE2).
#[inline(always)]
fn scan_blocks(chunk: &[u8], pos: usize) -> (usize, bool) {
    let end = chunk.len().saturating_sub(1);
    let (Some(prev), Some(cur), Some(next)) = (
        pos.checked_sub(1)
            .and_then(|s| chunk.get(s..end.saturating_sub(1))),
        chunk.get(pos..end),
        chunk.get(pos + 1..end + 1),
    ) else {
        return (pos, false);
    };
    let blocks = prev
        .chunks_exact(SCAN_BLOCK)
        .zip(cur.chunks_exact(SCAN_BLOCK))
        .zip(next.chunks_exact(SCAN_BLOCK));
    let mut b = pos;
    for ((p, c), n) in blocks {
        let (Ok(p), Ok(c), Ok(n)) = (p.try_into(), c.try_into(), n.try_into()) else {
            break;
        };
        if block_needs_work(p, c, n) {
            return (b, true);
        }
        b += SCAN_BLOCK;
    }
    (b, false)
}

/// Whether the block `cur` holds a LF that is not preceded by CR or that is
/// followed by `.` (`prev` and `next` are the same block shifted by one
/// octet either way). Written without branches (the OR of every position's
/// verdict) so that it compiles to SIMD compares.
#[inline(always)]
fn block_needs_work(
    prev: &[u8; SCAN_BLOCK],
    cur: &[u8; SCAN_BLOCK],
    next: &[u8; SCAN_BLOCK],
) -> bool {
    let mut acc = false;
    for i in 0..SCAN_BLOCK {
        acc |= (cur[i] == b'\n') & ((prev[i] != b'\r') | (next[i] == b'.'));
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use proptest::prelude::*;

    /// The run-time dispatched block scan (AVX-512 or AVX2 when this CPU has
    /// it), the AVX2 build and the baseline build of the same loop stop at
    /// the same block, for a stop octet at every offset of a few blocks and
    /// every start.
    #[test]
    fn dispatched_scan_equals_baseline_scan() {
        for at in 0..(3 * SCAN_BLOCK + 8) {
            for form in [&b"\n"[..], b"\r\n.", b"x\n", b"\r"] {
                let mut h = b"ab\r\n".repeat(SCAN_BLOCK);
                h.splice(at..at, form.iter().copied());
                for start in [1, 2, 3, 5, 64, SCAN_BLOCK + 1] {
                    assert_eq!(
                        next_dirty_block(&h, start),
                        scan_blocks(&h, start),
                        "{at} {form:?} {start}"
                    );
                    // The AVX2 build, which the dispatch passes over when the
                    // CPU also has AVX-512.
                    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
                    if let Some(v3) = pulp::x86::V3::try_new() {
                        assert_eq!(
                            v3.vectorize(|| scan_blocks(&h, start)),
                            scan_blocks(&h, start),
                            "{at} {form:?} {start}"
                        );
                    }
                }
            }
        }
    }
    proptest::proptest! {
        /// The line-mode LF search agrees with `memchr` (octets near LF in
        /// value, like 0x0B and 0x8A, must not give false hits).
        #[test]
        fn next_lf_matches_memchr(
            hay in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(0x0B), Just(0x8A), Just(0x09), Just(0x00), Just(0xFF), Just(b'x')],
                0..300,
            ),
            sparse in 0u8..4,
            from in 0usize..320,
        ) {
            // Make LFs rarer for some cases, so that long searches happen.
            let hay: Vec<u8> = hay
                .iter()
                .enumerate()
                .map(|(i, &b)| if b == b'\n' && i % 8 < usize::from(sparse) * 2 { b'y' } else { b })
                .collect();
            let want = hay.get(from..).and_then(|r| memchr(b'\n', r)).map(|i| from + i);
            proptest::prop_assert_eq!(next_lf(&hay, from), want);
        }
    }
}
