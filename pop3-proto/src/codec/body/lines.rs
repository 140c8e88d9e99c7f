//! Line mode for text with bare LF line ends, block by block, with AVX-512
//! (feature `avx512`, chosen at run time through `pulp`'s `V4` token; without
//! the feature or the instructions these return `None` and the encoder finds
//! the line ends one by one).
//!
//! Such a message needs an insert on every line, so finding its line ends
//! one at a time costs a dependent search per line. Here each 64-octet block
//! is classified with three compares (LF, CR, `.`) into the places that need
//! an insert: a CR before a bare LF, a second `.` before a `.` that starts a
//! line. Then:
//!
//! * [`copy_lines`] builds the output of two blocks at a time in registers
//!   (each block's insert blended in from the same block loaded one octet
//!   earlier) and appends it with one constant-size copy, so the output's
//!   length is updated once per 128 octets of input rather than once per
//!   run and insert. Blocks with more inserts than fit that scheme (a dot
//!   line, short lines) take a slower path, one block at a time.
//! * [`segment_lines`] hands out the runs between the inserts and the
//!   inserts themselves, taking the places from the block masks.
//!
//! Both must be called inside [`Simd::run`], so that the block loops are
//! compiled into the caller for AVX-512 with the caller's output in
//! registers. Both start where the caller's line scan stopped, and return
//! where it resumes: near the end of the chunk, or, for the copy path, once
//! about `CLEAN_STREAK` line ends in a row (counted in whole blocks) needed
//! nothing, which is CRLF text again (the segment path goes on: a block
//! without inserts costs it about what it costs the scan). A LF at the
//! octet before the start has been handled by the caller, including a `.`
//! after it; a `.` after the last LF these handle is stuffed here.

use alloc::vec::Vec;

use super::simd::Simd;
use super::sink::Sink;

/// Encodes `chunk` from `pos` into `out` (the caller has appended
/// everything before `pos`) and returns where the caller resumes; `None`, with nothing
/// written, without the block path. `pos` must be at least 1.
#[inline(always)]
pub(super) fn copy_lines(simd: Simd, chunk: &[u8], pos: usize, out: &mut Vec<u8>) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if let Some(v4) = simd.v4() {
        return Some(v4::copy(v4, chunk, pos, out));
    }
    let _ = (simd, chunk, pos, out);
    None
}

/// Encodes `chunk` from `pos` as segments into `sink`, `*run` being the
/// start of the pending run, and returns where the caller resumes (with `*run`
/// updated); `None`, with nothing handed out, without the block path. `pos`
/// must be at least 1.
#[inline(always)]
pub(super) fn segment_lines<'a, S: Sink<'a>>(
    simd: Simd,
    chunk: &'a [u8],
    pos: usize,
    run: &mut usize,
    sink: &mut S,
) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if let Some(v4) = simd.v4() {
        return Some(v4::segments(v4, chunk, pos, run, sink));
    }
    let _ = (simd, chunk, pos, run, sink);
    None
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
mod v4 {
    use alloc::vec::Vec;
    use core::arch::x86_64::__m512i;

    use pulp::x86::V4;

    use crate::codec::body::scan::CLEAN_STREAK;
    use crate::codec::body::sink::{Insert, Sink};

    /// Octets classified at once.
    const BLOCK: usize = 64;

    /// Whether the octet before the next block is CR, and whether it is LF
    /// (whose following `.` is then still to be stuffed), as bit 0.
    #[derive(Clone, Copy)]
    struct Carry {
        cr: u64,
        lf: u64,
    }

    impl Carry {
        /// At `pos`: the octet before is known, and a `.` after it, if it
        /// is a LF, was handled by the caller.
        fn at(chunk: &[u8], pos: usize) -> Self {
            let cr = pos
                .checked_sub(1)
                .and_then(|p| chunk.get(p))
                .is_some_and(|&b| b == b'\r');
            Self {
                cr: u64::from(cr),
                lf: 0,
            }
        }
    }

    /// One block's masks, bit `k` for octet `k`.
    struct Masks {
        /// LFs.
        lf: u64,
        /// LFs not preceded by CR: a CR goes before each.
        bare: u64,
        /// Every octet that gets an insert before it: `bare`, and `.`s that
        /// start a line (a second `.` goes before each).
        ins: u64,
    }

    /// What one or two blocks held.
    struct Worked {
        /// Their LF masks (their line ends are counted only when nothing
        /// was inserted).
        lf: [u64; 2],
        /// The octets inserted.
        inserts: usize,
    }

    /// `N` octets of `chunk` from `back` octets before `at`, by reference
    /// (returning them by value would make the compiler copy them through
    /// the stack).
    #[inline(always)]
    fn window<const N: usize>(chunk: &[u8], at: usize, back: usize) -> Option<&[u8; N]> {
        let from = at.checked_sub(back)?;
        chunk.get(from..from.checked_add(N)?)?.try_into().ok()
    }

    /// The block at `at`.
    #[inline(always)]
    fn load(chunk: &[u8], at: usize) -> Option<&[u8; BLOCK]> {
        window(chunk, at, 0)
    }

    #[inline(always)]
    fn classify(v4: V4, block: &[u8; BLOCK], carry: &mut Carry) -> Masks {
        let v: __m512i = pulp::cast(*block);
        let eq = |b: u8| {
            v4.avx512bw
                ._mm512_cmpeq_epi8_mask(v, v4.avx512f._mm512_set1_epi8(b as i8))
        };
        let (lf, cr, dot) = (eq(b'\n'), eq(b'\r'), eq(b'.'));
        let bare = lf & !((cr << 1) | carry.cr);
        let ins = bare | (dot & ((lf << 1) | carry.lf));
        carry.cr = cr >> 63;
        carry.lf = lf >> 63;
        Masks { lf, bare, ins }
    }

    /// The copy loop of [`super::copy_lines`].
    #[inline(always)]
    pub(super) fn copy(v4: V4, chunk: &[u8], pos: usize, out: &mut Vec<u8>) -> usize {
        let mut carry = Carry::at(chunk, pos);
        let mut i = pos;
        let mut streak = 0u32;
        // The octet before the next pair, the pair, and the two after it.
        while let Some(w) = window::<{ 2 * BLOCK + 3 }>(chunk, i, 1) {
            let worked = match pair(v4, w, &mut carry, out) {
                Some(w) => {
                    i += 2 * BLOCK;
                    w
                }
                None => {
                    let one = single(v4, chunk, i, &mut carry, out)
                        .or_else(|| any_block(v4, chunk, i, &mut carry, out));
                    let Some(w) = one else {
                        break;
                    };
                    i += BLOCK;
                    w
                }
            };
            streak = if worked.inserts == 0 {
                streak + worked.lf[0].count_ones() + worked.lf[1].count_ones()
            } else {
                0
            };
            if streak >= CLEAN_STREAK {
                break;
            }
        }
        if carry.lf != 0 && chunk.get(i) == Some(&b'.') {
            out.push(b'.');
        }
        i
    }

    /// Two blocks, `w[1..=128]` (`w` holding the octet before them and the
    /// two after them), with at most one insert each (and the second's
    /// not in its last lane when the first has one, else it would fall out
    /// of its output vector). Each block's output vector is the block
    /// loaded `j` octets earlier (`j` the inserts before it) with its insert
    /// blended in; both are appended with the two octets after them in one
    /// constant-size copy, then cut to the real length, so the output's
    /// length changes once per 128 octets. All reads come from the one
    /// window, so they need no bounds checks of their own. `None`, with
    /// nothing written, for blocks that do not fit.
    #[inline(always)]
    fn pair(
        v4: V4,
        w: &[u8; 2 * BLOCK + 3],
        carry: &mut Carry,
        out: &mut Vec<u8>,
    ) -> Option<Worked> {
        let b1: &[u8; BLOCK] = w[1..=BLOCK].try_into().ok()?;
        let b2: &[u8; BLOCK] = w[BLOCK + 1..=2 * BLOCK].try_into().ok()?;
        let mut next = *carry;
        let k1 = classify(v4, b1, &mut next);
        let k2 = classify(v4, b2, &mut next);
        let (x1, x2) = (k1.ins, k2.ins);
        let j1 = usize::from(x1 != 0);
        if (x1 & x1.wrapping_sub(1)) | (x2 & x2.wrapping_sub(1)) | ((x2 >> 63) & x1.min(1)) != 0 {
            return None;
        }
        let j2 = usize::from(x2 != 0);
        let s1: &[u8; BLOCK] = w[..BLOCK].try_into().ok()?;
        let wa = insert_one(v4, pulp::cast(*b1), s1, x1, k1.bare != 0);
        // The second block's output vector starts `j1` octets earlier.
        let vb: &[u8; BLOCK] = w[BLOCK + 1 - j1..=2 * BLOCK - j1].try_into().ok()?;
        let sb: &[u8; BLOCK] = w[BLOCK - j1..2 * BLOCK - j1].try_into().ok()?;
        let wb = insert_one(v4, pulp::cast(*vb), sb, x2 << j1, k2.bare != 0);
        let t = j1 + j2;
        let mut a = [0u8; 2 * BLOCK + 2];
        a[..BLOCK].copy_from_slice(&pulp::cast::<__m512i, [u8; BLOCK]>(wa));
        a[BLOCK..2 * BLOCK].copy_from_slice(&pulp::cast::<__m512i, [u8; BLOCK]>(wb));
        a[2 * BLOCK..].copy_from_slice(w.get(2 * BLOCK + 1 - t..2 * BLOCK + 3 - t)?);
        out.extend_from_slice(&a);
        out.truncate(out.len() - 2 + t);
        *carry = next;
        Some(Worked {
            lf: [k1.lf, k2.lf],
            inserts: t,
        })
    }

    /// `v` with an insert at the lane of `bit` (none if `bit` is 0): the
    /// lanes after it come from `s`, the octets one further back, and the
    /// lane itself becomes CR (for a bare LF) or `.`.
    #[inline(always)]
    fn insert_one(v4: V4, v: __m512i, s: &[u8; BLOCK], bit: u64, cr: bool) -> __m512i {
        let c = if cr { b'\r' } else { b'.' };
        let w = v4
            .avx512bw
            ._mm512_mask_blend_epi8(!bit.wrapping_sub(1), v, pulp::cast(*s));
        v4.avx512bw._mm512_mask_set1_epi8(w, bit, c as i8)
    }

    /// One block from `i` with at most two inserts, the second not in its
    /// last lane (else it would fall out of the output vector): the vector
    /// built in registers like [`pair`]'s (the second insert blended in from
    /// the block loaded two octets earlier), then appended with the two
    /// octets after it and cut to the real length. `None`, with nothing
    /// written, for a block that does not fit.
    #[inline(always)]
    fn single(
        v4: V4,
        chunk: &[u8],
        i: usize,
        carry: &mut Carry,
        out: &mut Vec<u8>,
    ) -> Option<Worked> {
        // The two octets before the block, the block, and the two after it.
        let w: &[u8; BLOCK + 4] = window(chunk, i, 2)?;
        let block: &[u8; BLOCK] = w[2..BLOCK + 2].try_into().ok()?;
        let mut next = *carry;
        let k = classify(v4, block, &mut next);
        let first = k.ins & k.ins.wrapping_neg();
        let second = k.ins ^ first;
        if (second & second.wrapping_sub(1)) | (second >> 63) != 0 {
            return None;
        }
        let s1: &[u8; BLOCK] = w[1..=BLOCK].try_into().ok()?;
        let s2: &[u8; BLOCK] = w[..BLOCK].try_into().ok()?;
        let v = insert_one(v4, pulp::cast(*block), s1, first, k.bare & first != 0);
        let v = insert_one(v4, v, s2, second << 1, k.bare & second != 0);
        let n = k.ins.count_ones() as usize;
        let mut a = [0u8; BLOCK + 2];
        a[..BLOCK].copy_from_slice(&pulp::cast::<__m512i, [u8; BLOCK]>(v));
        a[BLOCK..].copy_from_slice(w.get(BLOCK + 2 - n..BLOCK + 4 - n)?);
        out.extend_from_slice(&a);
        out.truncate(out.len() - 2 + n);
        *carry = next;
        Some(Worked {
            lf: [k.lf, 0],
            inserts: n,
        })
    }

    /// One block with any number of inserts: each insert and the block's
    /// rest after it written over the copy of the block in a stack buffer.
    /// Kept out of line although, compiled on its own, it runs without
    /// AVX-512 (each vector operation a call): it is rare (dot lines, short
    /// lines), and inlined into the loop it slowed the common path (13.3
    /// against 15.3 GiB/s in the bench).
    #[inline(never)]
    fn any_block(
        v4: V4,
        chunk: &[u8],
        i: usize,
        carry: &mut Carry,
        out: &mut Vec<u8>,
    ) -> Option<Worked> {
        let mut next = *carry;
        let block = load(chunk, i)?;
        let k = classify(v4, block, &mut next);
        let mut a = [0u8; 3 * BLOCK];
        a.get_mut(..BLOCK)?.copy_from_slice(block);
        let mut j = 0;
        let mut x = k.ins;
        while x != 0 {
            let p = x.trailing_zeros() as usize;
            let mut w = *load(chunk, (i + p).checked_sub(1)?)?;
            w[0] = if k.bare & (1 << p) != 0 { b'\r' } else { b'.' };
            a.get_mut(p + j..p + j + BLOCK)?.copy_from_slice(&w);
            j += 1;
            x &= x - 1;
        }
        *a.get_mut(BLOCK - 1 + j)? = block[BLOCK - 1];
        out.extend_from_slice(a.get(..BLOCK + j)?);
        *carry = next;
        Some(Worked {
            lf: [k.lf, 0],
            inserts: j,
        })
    }

    /// The segment loop of [`super::segment_lines`].
    #[inline(always)]
    pub(super) fn segments<'a, S: Sink<'a>>(
        v4: V4,
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
            let k = classify(v4, block, &mut carry);
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
}
