//! Line mode for text with bare LF line ends, block by block, with AVX-512
//! (feature `avx512`, `pulp`'s `V4` token) or AVX2 (feature `simd`, `V3`),
//! whichever [`Simd::run`] chose; without them these return `None` and the
//! encoder finds the line ends one by one.
//!
//! Such a message needs an insert on every line, so finding its line ends
//! one at a time costs a dependent search per line. Here each 64-octet block
//! is classified with three compares (LF, CR, `.`; `blocks::Classify`) into
//! the places that need an insert: a CR before a bare LF, a second `.` before
//! a `.` that starts a line. Then:
//!
//! * [`copy_lines`] with AVX-512 builds the output of two blocks at a time
//!   in registers (`lines/v4.rs`, which finds the same places with four
//!   compares against the block and the block one octet earlier, so that
//!   its masks stay in mask registers); with AVX2 it appends the runs and
//!   inserts (`lines/v3.rs`).
//! * [`segment_lines`] hands out the runs between the inserts and the
//!   inserts themselves, taking the places from the block masks
//!   (`lines/segments.rs`).
//!
//! Both must be called inside [`Simd::run`], so that the block loops are
//! compiled into the caller for those instructions with the caller's output
//! in registers. Both start where the caller's line scan stopped, and return
//! where it resumes: near the end of the chunk, or, for AVX-512's copy path,
//! once four blocks in a row needed nothing (256 octets, about
//! `CLEAN_STREAK` line ends; stretches without a LF not counted), which is
//! CRLF text again (the other loops go on: a block without inserts measured
//! about what it costs the scan). A LF at the octet before the start has
//! been handled by the caller, including a `.` after it; a `.` after the
//! last LF these handle is stuffed here.

#[cfg(all(target_arch = "x86_64", feature = "simd"))]
mod blocks;
#[cfg(all(target_arch = "x86_64", feature = "simd"))]
mod segments;
#[cfg(all(target_arch = "x86_64", feature = "simd"))]
mod v3;
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
mod v4;

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
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    if let Some(v3) = simd.v3() {
        return Some(v3::copy(v3, chunk, pos, out));
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
        return Some(segments::segments(v4, chunk, pos, run, sink));
    }
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    if let Some(v3) = simd.v3() {
        return Some(segments::segments(v3, chunk, pos, run, sink));
    }
    let _ = (simd, chunk, pos, run, sink);
    None
}
