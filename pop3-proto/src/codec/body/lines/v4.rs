//! The copy path of the block line mode with AVX-512: the output of two
//! blocks at a time built in registers (each block's insert blended in from
//! the same block loaded one octet earlier) and appended with one
//! constant-size copy, so the output's length is updated once per 128
//! octets of input rather than once per run and insert. Blocks with more
//! inserts than fit that scheme (a dot line, short lines) take a slower
//! path, one block at a time.
//!
//! Its masks ([`Inserts`]) come from four compares of each block and of the
//! same block loaded one octet earlier, two of them masked by the others,
//! so that they stay in mask registers; the segment path classifies with
//! [`Classify`] like AVX2's, three compares and the masks combined in
//! general registers.

use alloc::vec::Vec;
use core::arch::x86_64::__m512i;

use pulp::x86::V4;

use super::blocks::{BLOCK, Carry, Classify, Masks, load, window};

/// Blocks in a row without an insert (256 octets, about the scan's
/// [`CLEAN_STREAK`] CRLF line ends of typical length) after which the copy
/// path returns to block mode. The count goes by what each step wrote, a
/// pair or a block: a step with an insert sets it back to 0, so the return
/// comes after four or five blocks; a step with no LF at all (inside a long
/// line) leaves it as it is; a pair with a LF in either block counts both.
/// Counted in blocks rather than line ends, so that the LF masks are only
/// tested, never counted: counting each pair's line ends measured 45.5-46.3
/// µs per MiB of bare-LF text against 44.1-44.5 counting every insert-free
/// block (one scratch program, interleaved). That cheaper count left line
/// mode inside every bare-LF line longer than about 320 octets, and such
/// lines then took 67-71 µs per MiB instead of 43-45.
///
/// [`CLEAN_STREAK`]: crate::codec::body::scan::CLEAN_STREAK
const CLEAN_BLOCKS: usize = 4;

/// What one or two blocks held.
struct Worked {
    /// The blocks written: 1 or 2.
    blocks: usize,
    /// Their LFs (only whether there are any is read).
    lf: u64,
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

/// One block's inserts, from compares of the block and of the same block
/// loaded one octet earlier, so that no mask is carried from block to
/// block and the masks can stay in mask registers (moving three masks per
/// block to general registers, as [`Classify`] does for the segment path,
/// kept the copy path's stores from overlapping its compares: 47-49 against
/// 27-29 µs per MiB in a scratch loop that stores each block's output).
#[derive(Clone, Copy)]
struct Inserts {
    /// LFs (a step without any leaves the [`CLEAN_BLOCKS`] count as it is).
    lf: u64,
    /// Bare LFs: a CR goes before each.
    bare: u64,
    /// `.`s that start a line: a second `.` goes before each.
    dots: u64,
}

impl Inserts {
    /// The inserts of `cur`, `prev` being the same octets one earlier;
    /// a `.` in a lane of `skip` is not stuffed (the caller handled it).
    #[inline(always)]
    fn new(v4: V4, cur: &[u8; BLOCK], prev: &[u8; BLOCK], skip: u64) -> Self {
        let (cur, prev): (__m512i, __m512i) = (pulp::cast(*cur), pulp::cast(*prev));
        let bw = v4.avx512bw;
        let set = |b: u8| v4.avx512f._mm512_set1_epi8(b as i8);
        let lf = bw._mm512_cmpeq_epi8_mask(cur, set(b'\n'));
        let bare = bw._mm512_mask_cmpneq_epi8_mask(lf, prev, set(b'\r'));
        let dot = bw._mm512_cmpeq_epi8_mask(cur, set(b'.')) & !skip;
        let dots = bw._mm512_mask_cmpeq_epi8_mask(dot, prev, set(b'\n'));
        Self { lf, bare, dots }
    }

    /// Every lane that gets an insert before it.
    #[inline(always)]
    fn all(self) -> u64 {
        self.bare | self.dots
    }

    /// The inserts in the lanes of `m` only, moved up `by` lanes.
    #[inline(always)]
    fn only(self, m: u64, by: u32) -> Self {
        Self {
            lf: self.lf,
            bare: (self.bare & m) << by,
            dots: (self.dots & m) << by,
        }
    }
}

/// The copy loop of [`super::copy_lines`] with AVX-512.
#[inline(always)]
pub(super) fn copy(v4: V4, chunk: &[u8], pos: usize, out: &mut Vec<u8>) -> usize {
    let mut i = pos;
    let mut clean = 0;
    // A `.` right at `pos` follows an octet the caller handled.
    let mut skip = 1u64;
    // The octet before the next pair, the pair, and the two after it.
    while let Some(w) = window::<{ 2 * BLOCK + 3 }>(chunk, i, 1) {
        // The first block's inserts, for all three paths.
        let k = first_inserts(v4, w, skip);
        // Not `Option::or_else`: its closures would be compiled apart,
        // without AVX-512.
        let worked = match pair(v4, w, k, out) {
            Some(w) => w,
            None => match several(v4, chunk, i, k, out) {
                Some(w) => w,
                None => match any_block(chunk, i, k, out) {
                    Some(w) => w,
                    None => break,
                },
            },
        };
        i += worked.blocks * BLOCK;
        skip = 0;
        if worked.inserts != 0 {
            clean = 0;
        } else if worked.lf != 0 {
            clean += worked.blocks;
        }
        if clean >= CLEAN_BLOCKS {
            break;
        }
    }
    // A `.` after the last LF handled here (not the caller's) is stuffed.
    if i > pos && chunk.get(i - 1) == Some(&b'\n') && chunk.get(i) == Some(&b'.') {
        out.push(b'.');
    }
    i
}

/// The inserts of the block `w[1..=64]` of a pair's window `w`, computed
/// once for [`pair`], [`several`] and [`any_block`].
#[inline(always)]
fn first_inserts(v4: V4, w: &[u8; 2 * BLOCK + 3], skip: u64) -> Inserts {
    let s1: &[u8; BLOCK] = w[..BLOCK].try_into().unwrap_or(&[0; BLOCK]);
    let b1: &[u8; BLOCK] = w[1..=BLOCK].try_into().unwrap_or(&[0; BLOCK]);
    Inserts::new(v4, b1, s1, skip)
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
fn pair(v4: V4, w: &[u8; 2 * BLOCK + 3], k1: Inserts, out: &mut Vec<u8>) -> Option<Worked> {
    let b1: &[u8; BLOCK] = w[1..=BLOCK].try_into().ok()?;
    let b2: &[u8; BLOCK] = w[BLOCK + 1..=2 * BLOCK].try_into().ok()?;
    let s1: &[u8; BLOCK] = w[..BLOCK].try_into().ok()?;
    let s2: &[u8; BLOCK] = w[BLOCK..2 * BLOCK].try_into().ok()?;
    let k2 = Inserts::new(v4, b2, s2, 0);
    let (x1, x2) = (k1.all(), k2.all());
    if (x1 & x1.wrapping_sub(1)) | (x2 & x2.wrapping_sub(1)) | ((x2 >> 63) & x1.min(1)) != 0 {
        return None;
    }
    let j1 = usize::from(x1 != 0);
    let j2 = usize::from(x2 != 0);
    let wa = insert_one(v4, pulp::cast(*b1), s1, k1);
    // The second block's output vector starts `j1` octets earlier.
    let vb: &[u8; BLOCK] = w[BLOCK + 1 - j1..=2 * BLOCK - j1].try_into().ok()?;
    let sb: &[u8; BLOCK] = w[BLOCK - j1..2 * BLOCK - j1].try_into().ok()?;
    let wb = insert_one(v4, pulp::cast(*vb), sb, k2.only(!0, j1 as u32));
    let t = j1 + j2;
    let mut a = [0u8; 2 * BLOCK + 2];
    a[..BLOCK].copy_from_slice(&pulp::cast::<__m512i, [u8; BLOCK]>(wa));
    a[BLOCK..2 * BLOCK].copy_from_slice(&pulp::cast::<__m512i, [u8; BLOCK]>(wb));
    a[2 * BLOCK..].copy_from_slice(w.get(2 * BLOCK + 1 - t..2 * BLOCK + 3 - t)?);
    out.extend_from_slice(&a);
    out.truncate(out.len() - 2 + t);
    Some(Worked {
        blocks: 2,
        lf: k1.lf | k2.lf,
        inserts: t,
    })
}

/// `v` with the insert of `k` (none if it has none; at most one) blended
/// in: the lanes after it come from `s`, the octets one further back, and
/// its own lane becomes CR (for a bare LF) or `.`.
#[inline(always)]
fn insert_one(v4: V4, v: __m512i, s: &[u8; BLOCK], k: Inserts) -> __m512i {
    let bw = v4.avx512bw;
    let set = |b: u8| v4.avx512f._mm512_set1_epi8(b as i8);
    let w = bw._mm512_mask_blend_epi8(k.all().wrapping_neg(), v, pulp::cast(*s));
    let w = bw._mm512_mask_mov_epi8(w, k.bare, set(b'\r'));
    bw._mm512_mask_mov_epi8(w, k.dots, set(b'.'))
}

/// The most inserts [`several`] builds in registers.
const SEVERAL: usize = 8;

/// One block from `i` with at most [`SEVERAL`] inserts, each landing
/// inside the output vector (the last at most at lane 63): the vector
/// built in registers like [`pair`]'s, the `j`-th insert (from 0) blended
/// in from the block loaded `j + 1` octets earlier, then appended with the
/// octets after it and cut to the real length. `None`, with nothing
/// written, for a block that does not fit.
#[inline(always)]
fn several(v4: V4, chunk: &[u8], i: usize, k: Inserts, out: &mut Vec<u8>) -> Option<Worked> {
    let ins = k.all();
    let n = ins.count_ones() as usize;
    let last = (u64::BITS - 1).saturating_sub(ins.leading_zeros()) as usize;
    if n > SEVERAL || last + n > BLOCK {
        return None;
    }
    // `SEVERAL` octets before the block, the block, and `SEVERAL` after it.
    let w: &[u8; BLOCK + 2 * SEVERAL] = window(chunk, i, SEVERAL)?;
    let block: &[u8; BLOCK] = w[SEVERAL..SEVERAL + BLOCK].try_into().ok()?;
    let mut v: __m512i = pulp::cast(*block);
    let mut x = ins;
    let mut j = 0;
    while x != 0 {
        let bit = x & x.wrapping_neg();
        let from = SEVERAL.checked_sub(j + 1)?;
        let s: &[u8; BLOCK] = w.get(from..from + BLOCK)?.try_into().ok()?;
        v = insert_one(v4, v, s, k.only(bit, j as u32));
        j += 1;
        x &= x - 1;
    }
    let mut a = [0u8; BLOCK + SEVERAL];
    a[..BLOCK].copy_from_slice(&pulp::cast::<__m512i, [u8; BLOCK]>(v));
    a[BLOCK..].copy_from_slice(w.get(BLOCK + SEVERAL - n..BLOCK + 2 * SEVERAL - n)?);
    out.extend_from_slice(&a);
    out.truncate(out.len() - SEVERAL + n);
    Some(Worked {
        blocks: 1,
        lf: k.lf,
        inserts: n,
    })
}

/// One block with any number of inserts (what [`several`] does not take),
/// `k` its inserts: each insert and the block's rest after it written over
/// the copy of the block in a stack buffer. Kept out of line (inlined into
/// the loop it slowed the common path: 13.3 against 15.3 GiB/s in the
/// bench), so it is compiled without AVX-512 and takes the masks from the
/// caller: computing them itself, each vector operation a call, it made
/// bodies of bare-LF lines of 8-68 octets take 156-157 µs per MiB against
/// 108.1-108.9 (when it also took blocks of three inserts).
#[inline(never)]
fn any_block(chunk: &[u8], i: usize, k: Inserts, out: &mut Vec<u8>) -> Option<Worked> {
    let block = load(chunk, i)?;
    let mut a = [0u8; 3 * BLOCK];
    a.get_mut(..BLOCK)?.copy_from_slice(block);
    let mut j = 0;
    let mut x = k.all();
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
    Some(Worked {
        blocks: 1,
        lf: k.lf,
        inserts: j,
    })
}
