//! The copy path of the block line mode with AVX-512: the output of two
//! blocks at a time built in registers (each block's insert blended in from
//! the same block loaded one octet earlier) and appended with one
//! constant-size copy, so the output's length is updated once per 128
//! octets of input rather than once per run and insert. Blocks with more
//! inserts than fit that scheme (a dot line, short lines) take a slower
//! path, one block at a time.

use alloc::vec::Vec;
use core::arch::x86_64::__m512i;

use pulp::x86::V4;

use super::blocks::{BLOCK, Carry, Classify, Masks, load, window};
use crate::codec::body::scan::CLEAN_STREAK;

/// What one or two blocks held.
struct Worked {
    /// Their LF masks (their line ends are counted only when nothing
    /// was inserted).
    lf: [u64; 2],
    /// The octets inserted.
    inserts: usize,
}

impl Classify for V4 {
    /// Three compares into mask registers.
    #[inline(always)]
    fn classify(self, block: &[u8; BLOCK], carry: &mut Carry) -> Masks {
        let v: __m512i = pulp::cast(*block);
        let eq = |b: u8| {
            self.avx512bw
                ._mm512_cmpeq_epi8_mask(v, self.avx512f._mm512_set1_epi8(b as i8))
        };
        Masks::new(eq(b'\n'), eq(b'\r'), eq(b'.'), carry)
    }
}

/// The copy loop of [`super::copy_lines`] with AVX-512.
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
fn pair(v4: V4, w: &[u8; 2 * BLOCK + 3], carry: &mut Carry, out: &mut Vec<u8>) -> Option<Worked> {
    let b1: &[u8; BLOCK] = w[1..=BLOCK].try_into().ok()?;
    let b2: &[u8; BLOCK] = w[BLOCK + 1..=2 * BLOCK].try_into().ok()?;
    let mut next = *carry;
    let k1 = v4.classify(b1, &mut next);
    let k2 = v4.classify(b2, &mut next);
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
fn single(v4: V4, chunk: &[u8], i: usize, carry: &mut Carry, out: &mut Vec<u8>) -> Option<Worked> {
    // The two octets before the block, the block, and the two after it.
    let w: &[u8; BLOCK + 4] = window(chunk, i, 2)?;
    let block: &[u8; BLOCK] = w[2..BLOCK + 2].try_into().ok()?;
    let mut next = *carry;
    let k = v4.classify(block, &mut next);
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
    let k = v4.classify(block, &mut next);
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
