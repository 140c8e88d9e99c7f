//! Streaming DATA receiver: dot-unstuffing and strict end-of-data detection.
//!
//! The receiver takes the bytes that follow the 354 reply, in chunks of any size, and yields
//! the unstuffed message body as slices of the input (zero copy). Rules (RFC 5321 sections
//! 4.1.1.4, 4.5.2 and 2.3.8):
//!
//! - Only `CRLF "." CRLF` ends the data. `\n.\n`, `\r.\r`, `\n.\r\n`, `\r\n.\n`, `\r.\r\n`... do
//!   not (SMTP smuggling, CVE-2023-51764 and friends). The very first line counts as
//!   following a CRLF: `.\r\n` right after DATA is an empty message.
//! - A line starting with `.` loses that dot (`..x` becomes `.x`, also on the first line).
//! - A bare LF (an LF not preceded by CR) inside the data is handled by [`BareLfPolicy`]:
//!   rejected (the message fails, the rest is read and discarded up to the real end) or
//!   normalised to CRLF. A bare CR is ordinary data.
//! - The size limit ([`DataOptions::max_size`]) counts body octets after unstuffing and is
//!   enforced while streaming: once exceeded, the rest is discarded and the outcome is an error.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::data::{DataOptions, DataReceiver};
//!
//! let mut rx = DataReceiver::new(DataOptions::default());
//! let mut body = Vec::new();
//! let (used, end) = rx.receive_into(b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n", &mut body);
//! assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
//! assert_eq!(end, Some(Ok(21)));
//! assert_eq!(used, 25); // QUIT is left for the command parser
//! ```

use crate::codec::find_lf;
use alloc::vec::Vec;

/// What to do with an LF that is not preceded by CR inside the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BareLfPolicy {
    /// Fail the message (the session answers 550 5.6.0) and discard it. Default.
    #[default]
    Reject,
    /// Store the bare LF as CRLF; the line after it is still unstuffed, but can never end the
    /// data (only a real `CRLF.CRLF` can).
    Normalize,
    /// Keep a bare LF as it is, as ordinary data inside the line (what most MTAs did before
    /// 2024). The data still ends only at a real `CRLF.CRLF`, so this is not open to
    /// smuggling, but the stored message may hold bare LFs. Fastest: it only looks at `LF.`.
    Accept,
}

/// Options of a [`DataReceiver`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataOptions {
    /// Largest accepted body in octets (after unstuffing); `0` = unlimited.
    /// Default `10_240_000` (Postfix's `message_size_limit`).
    pub max_size: u64,
    /// Bare LF handling. Default [`BareLfPolicy::Reject`].
    pub bare_lf: BareLfPolicy,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            max_size: 10_240_000,
            bare_lf: BareLfPolicy::Reject,
        }
    }
}

/// Why a message failed while it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The body exceeded the size limit (552 5.3.4).
    #[error("message exceeds the size limit")]
    TooBig,
    /// A bare LF with [`BareLfPolicy::Reject`] (550 5.6.0).
    #[error("bare LF in message data")]
    BareLf,
}

impl DataError {
    /// The reply a server sends for it (the session sends this one):
    /// `552 5.3.4` or `550 5.6.0`.
    ///
    /// ```
    /// use mailbag_smtp_proto::data::DataError;
    /// assert_eq!(DataError::TooBig.reply().code().get(), 552);
    /// assert_eq!(DataError::BareLf.reply().enhanced().unwrap().to_string(), "5.6.0");
    /// ```
    pub fn reply(self) -> crate::types::Reply<'static> {
        use crate::types::{EnhancedStatusCode as Esc, Reply};
        match self {
            DataError::TooBig => {
                Reply::fixed(552, Esc::c(5, 3, 4), "Message size exceeds fixed limit")
            }
            DataError::BareLf => Reply::fixed(
                550,
                Esc::c(5, 6, 0),
                "Bare LF in message data is not allowed",
            ),
        }
    }
}

/// One step of a [`DataReceiver`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum DataStep<'a> {
    /// Body octets (a slice of the input, or a static CRLF/CR).
    Body(&'a [u8]),
    /// The input is used up; feed more.
    NeedMore,
    /// The message just failed; the rest is discarded until the end of data. Reported once.
    Aborted(DataError),
    /// `CRLF.CRLF` seen: the data is complete. `Ok(size)` or the error reported earlier.
    End(Result<u64, DataError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// After a real CRLF (or at the very start): a `.` here may end the data.
    LineStart,
    /// After a normalised bare LF: a leading `.` is unstuffed but cannot end the data.
    BareLineStart,
    /// Inside a line; `cr` = the previous octet was CR.
    Mid { cr: bool },
    /// Seen `CRLF.`.
    Dot,
    /// Seen `CRLF.CR`.
    DotCr,
    /// Ended.
    Done,
}

/// The streaming DATA receiver (also the discard receiver: see [`DataReceiver::discard`]).
#[derive(Debug, Clone)]
pub struct DataReceiver {
    options: DataOptions,
    st: St,
    size: u64,
    error: Option<DataError>,
    discard: bool,
}

const CRLF: &[u8] = b"\r\n";

/// Largest body slice reported at once.
const MAX_SPAN: usize = 16 * 1024;

/// Octets per block of the branch-free block scanners.
const BLOCK: usize = 128;

/// Whether a block holds no octet that stops the bare-LF scanner ([`BareLfPolicy::Reject`]
/// and [`BareLfPolicy::Normalize`]): an LF that is not after CR (bare), or that is before
/// `.` (a possible end of data or a stuffed dot). `prev` and `next` are the block's octets
/// shifted by one. The whole block is tested without an early exit (OR-accumulated), so
/// that LLVM vectorises it even for the x86-64 baseline (SSE2: three loads, three compares
/// and three logic operations per 16 octets).
#[inline(always)]
fn block_clean(prev: &[u8; BLOCK], cur: &[u8; BLOCK], next: &[u8; BLOCK]) -> bool {
    let mut acc = 0u8;
    for j in 0..BLOCK {
        acc |= u8::from(cur[j] == b'\n') & (u8::from(prev[j] != b'\r') | u8::from(next[j] == b'.'));
    }
    acc == 0
}

/// The end of the run of clean blocks of `h` that starts at `start` (`start >= 1`): every
/// LF in `h[start .. end]` is ordinary data (see [`block_clean`]), and `end < h.len()`.
#[inline(always)]
fn clean_blocks(h: &[u8], start: usize) -> usize {
    let mut i = start;
    // The window is the block with one octet before and one after it.
    while let Some(w) = h.get(i.wrapping_sub(1)..i + BLOCK + 1) {
        let (Some(p), Some(c), Some(x)) = (w.get(..BLOCK), w.get(1..=BLOCK), w.get(2..)) else {
            break;
        };
        let (Ok(p), Ok(c), Ok(x)) = (p.try_into(), c.try_into(), x.try_into()) else {
            break;
        };
        if !block_clean(p, c, x) {
            break;
        }
        i += BLOCK;
    }
    i
}

/// [`clean_blocks`], compiled for AVX-512 (feature `avx512`) or AVX2 when the CPU has it.
#[inline]
fn clean_blocks_dispatch(h: &[u8], start: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if let Some(v4) = pulp::x86::V4::try_new() {
        return v4.vectorize(
            #[inline(always)]
            || clean_blocks(h, start),
        );
    }
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    if let Some(v3) = pulp::x86::V3::try_new() {
        return v3.vectorize(
            #[inline(always)]
            || clean_blocks(h, start),
        );
    }
    clean_blocks(h, start)
}

/// First LF in `h` that is bare (not after CR), followed by `.`, or last in `h`.
/// `cr`: whether the octet before `h` was CR.
fn find_interesting(h: &[u8], cr: bool) -> Option<usize> {
    let n = h.len();
    match h.first() {
        None => return None,
        Some(b'\n') if !cr || n == 1 || h.get(1) == Some(&b'.') => return Some(0),
        _ => {}
    }
    // The run of clean blocks ends at a block that holds the LF sought, or
    // fewer than a block and two octets before the end: either way the LFs
    // left to look at are within about one block, a line or two, found with
    // the short-line LF search (a `memchr` call costs more to set up than
    // such a search).
    let mut at = clean_blocks_dispatch(h, 1);
    while let Some(off) = h.get(at..).and_then(find_lf) {
        let i = at + off;
        if h.get(i.wrapping_sub(1)) != Some(&b'\r') || matches!(h.get(i + 1), None | Some(b'.')) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// The `LF "."` searcher, built once per process: `memmem::find_iter` would build one (about
/// 300 instructions) on every call, that is at every stop of the scanner.
#[cfg(feature = "std")]
fn lf_dot_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(b"\n."))
}

/// Without `std` (no `OnceLock`) the searcher is built at each call.
#[cfg(not(feature = "std"))]
fn lf_dot_finder() -> memchr::memmem::Finder<'static> {
    memchr::memmem::Finder::new(b"\n.")
}

/// For [`BareLfPolicy::Accept`]: the first `CRLF.`, or a final LF (CR before it or not),
/// found with memchr's SIMD `memmem` (AVX2 when the CPU has it, chosen at run time).
fn find_crlf_dot(h: &[u8], cr: bool) -> Option<usize> {
    for p in lf_dot_finder().find_iter(h) {
        let prev_cr = match p.checked_sub(1) {
            None => cr,
            Some(q) => h.get(q) == Some(&b'\r'),
        };
        if prev_cr {
            return Some(p);
        }
    }
    match h.last() {
        Some(b'\n') => Some(h.len() - 1),
        _ => None,
    }
}

/// Result of a scan: return to the caller, or continue at an offset.
enum Scan<'a> {
    Ret(usize, DataStep<'a>),
    Cont(usize),
}

impl<'a> Scan<'a> {
    fn with(used: usize, step: Option<DataStep<'a>>) -> Self {
        match step {
            Some(s) => Scan::Ret(used, s),
            None => Scan::Cont(used),
        }
    }
}
const CR: &[u8] = b"\r";

impl DataReceiver {
    /// A receiver for one message.
    pub fn new(options: DataOptions) -> Self {
        DataReceiver {
            options,
            st: St::LineStart,
            size: 0,
            error: None,
            discard: false,
        }
    }

    /// A receiver that reads a message up to its end and throws it away (for DATA that was
    /// answered 354 but must not be delivered). It never reports body or errors.
    pub fn discard() -> Self {
        DataReceiver {
            options: DataOptions {
                max_size: 0,
                bare_lf: BareLfPolicy::Accept,
            },
            st: St::LineStart,
            size: 0,
            error: None,
            discard: true,
        }
    }

    /// Body octets produced so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The error that failed the message, if any. After an error the body reported so far
    /// must be dropped (how much of it was reported depends on the input chunking).
    pub fn error(&self) -> Option<DataError> {
        self.error
    }

    /// Whether `CRLF.CRLF` has been seen.
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// Processes input; returns the octets used and what happened. Call again with the rest
    /// of the input until it returns [`DataStep::NeedMore`] or [`DataStep::End`].
    pub fn step<'a>(&mut self, input: &'a [u8]) -> (usize, DataStep<'a>) {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.st {
                St::Done => return (pos, DataStep::End(self.outcome())),
                St::LineStart | St::BareLineStart => {
                    let Some(&b) = rest.first() else {
                        return (pos, DataStep::NeedMore);
                    };
                    if b == b'.' {
                        pos += 1;
                        self.st = if self.st == St::LineStart {
                            St::Dot
                        } else {
                            St::Mid { cr: false }
                        };
                    } else {
                        self.st = St::Mid { cr: false };
                    }
                }
                St::Dot => {
                    let Some(&b) = rest.first() else {
                        return (pos, DataStep::NeedMore);
                    };
                    if b == b'\r' {
                        pos += 1;
                        self.st = St::DotCr;
                    } else {
                        self.st = St::Mid { cr: false };
                    }
                }
                St::DotCr => {
                    let Some(&b) = rest.first() else {
                        return (pos, DataStep::NeedMore);
                    };
                    if b == b'\n' {
                        self.st = St::Done;
                        return (pos + 1, DataStep::End(self.outcome()));
                    }
                    // `CRLF.CR x`: the CR was content.
                    self.st = St::Mid { cr: true };
                    if let Some(s) = self.emit(CR) {
                        return (pos, s);
                    }
                }
                St::Mid { cr } => {
                    if rest.is_empty() {
                        return (pos, DataStep::NeedMore);
                    }
                    match self.scan(input, pos, cr) {
                        Scan::Ret(n, s) => return (n, s),
                        Scan::Cont(n) => pos = n,
                    }
                }
            }
        }
    }

    /// Scans from `start`; stops at the first event. Ordinary `CRLF` line ends are skipped
    /// by a block scanner; only bare LFs, `CRLF.` and an LF at the end of the input stop it.
    /// Spans are capped at [`MAX_SPAN`] octets so that a copying caller copies cache-hot data.
    fn scan<'a>(&mut self, input: &'a [u8], start: usize, cr: bool) -> Scan<'a> {
        let full = &input[start..];
        let rest = &full[..full.len().min(MAX_SPAN)];
        let capped = rest.len() < full.len();
        let found = if self.options.bare_lf == BareLfPolicy::Accept {
            find_crlf_dot(rest, cr)
        } else {
            find_interesting(rest, cr)
        };
        let Some(lf) = found else {
            let cr = rest.last() == Some(&b'\r');
            self.st = St::Mid { cr };
            let s = self.emit_slice(rest);
            return Scan::with(start + rest.len(), s);
        };
        let prev_cr = if lf == 0 { cr } else { rest[lf - 1] == b'\r' };
        if !prev_cr && self.options.bare_lf == BareLfPolicy::Accept {
            // Only reached for a bare LF that is the last octet: it is ordinary data.
            self.st = St::Mid { cr: false };
            let s = self.emit_slice(&rest[..=lf]);
            return Scan::with(start + lf + 1, s);
        }
        if !prev_cr {
            // Bare LF. First report the body before it (so that results do not depend
            // on how the input was chunked).
            if lf > 0 && self.error.is_none() && !self.discard {
                self.st = St::Mid { cr: false };
                let s = self.emit_slice(&rest[..lf]);
                return Scan::with(start + lf, s);
            }
            if self.options.bare_lf == BareLfPolicy::Reject {
                let abort = self.fail(DataError::BareLf);
                self.st = St::Mid { cr: false };
                return Scan::with(start + lf + 1, abort);
            }
            // Normalise: the LF becomes CRLF.
            self.st = St::BareLineStart;
            let s = self.emit(CRLF);
            return Scan::with(start + lf + 1, s);
        }
        // Real CRLF: a line start follows.
        let next = lf + 1;
        match full.get(next) {
            Some(b'.') => {
                self.st = St::Dot;
                let s = self.emit_slice(&rest[..next]);
                Scan::with(start + next + 1, s)
            }
            Some(_) => {
                // Only at the cap: an ordinary line end.
                debug_assert!(capped);
                self.st = St::Mid { cr: false };
                let s = self.emit_slice(&rest[..next]);
                Scan::with(start + next, s)
            }
            None => {
                self.st = St::LineStart;
                let s = self.emit_slice(rest);
                Scan::with(start + rest.len(), s)
            }
        }
    }

    fn emit_slice<'a>(&mut self, body: &'a [u8]) -> Option<DataStep<'a>> {
        if body.is_empty() {
            return None;
        }
        self.emit(body)
    }

    /// Accounts for body octets; `None` when nothing is to be reported (discarding).
    fn emit<'a>(&mut self, body: &'a [u8]) -> Option<DataStep<'a>> {
        if self.discard || self.error.is_some() {
            return None;
        }
        let size = self.size.saturating_add(body.len() as u64);
        if self.options.max_size != 0 && size > self.options.max_size {
            return self.fail(DataError::TooBig);
        }
        self.size = size;
        Some(DataStep::Body(body))
    }

    fn fail<'a>(&mut self, e: DataError) -> Option<DataStep<'a>> {
        if self.discard || self.error.is_some() {
            return None;
        }
        self.error = Some(e);
        Some(DataStep::Aborted(e))
    }

    fn outcome(&self) -> Result<u64, DataError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.size),
        }
    }

    /// Convenience: processes `input`, appending the body to `out`.
    ///
    /// Returns the octets used and, once the end was seen, the outcome (`Ok(size)` or the
    /// error). Octets after the end are not used.
    pub fn receive_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> (usize, Option<Result<u64, DataError>>) {
        let mut pos = 0;
        loop {
            let (n, s) = self.step(input.get(pos..).unwrap_or_default());
            pos += n;
            match s {
                DataStep::Body(b) => out.extend_from_slice(b),
                DataStep::Aborted(_) => {}
                DataStep::NeedMore => return (pos, None),
                DataStep::End(r) => return (pos, Some(r)),
            }
        }
    }
}

/// Dot-stuffs a body for sending with DATA and appends the terminating `.CRLF`.
///
/// A bare CR or bare LF in the body is sent as CRLF (RFC 5321 section 2.3.8); if the
/// body does not end with CRLF, one is added before the final dot. This is the inverse
/// of [`DataReceiver`]: `receive(stuff(body)) == body` for any body that ends in CRLF
/// (or is empty) and has no bare CR or LF. [`Stuffer`] does the same for a body given
/// in chunks.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::data::stuff;
///
/// let mut out = Vec::new();
/// stuff(b".hidden\r\nline\r\n", &mut out);
/// assert_eq!(out, b"..hidden\r\nline\r\n.\r\n");
/// // The smuggling form: its bare CRs become line ends, and the dot is stuffed.
/// out.clear();
/// stuff(b"a\r.\r\nMAIL FROM:<x@y>\r\n", &mut out);
/// assert_eq!(out, b"a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n");
/// ```
pub fn stuff(body: &[u8], out: &mut Vec<u8>) {
    let mut s = Stuffer::new();
    s.chunk(body, out);
    s.finish(out);
}

/// Streaming dot-stuffer for the client side of DATA: the body goes through
/// [`Stuffer::chunk`] in pieces of any size, then [`Stuffer::finish`] writes the end of data.
///
/// The output is the same as [`stuff`] on the concatenated body, whatever the chunking:
/// a bare CR or bare LF is sent as CRLF (RFC 5321 section 2.3.8: a client sends
/// them only as a line end, so `\r.\r\n` cannot end the data at a receiver that
/// takes a bare CR for a line end), a `.` at the start of a line is doubled, a
/// missing final CRLF is added, and `.CRLF` ends the data.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::data::Stuffer;
///
/// let mut s = Stuffer::new();
/// let mut out = Vec::new();
/// for piece in [&b"Subject: x\r\n\r\nline\r"[..], b"\n", b".dot\r\nend"] {
///     s.chunk(piece, &mut out);
/// }
/// s.finish(&mut out);
/// assert_eq!(out, b"Subject: x\r\n\r\nline\r\n..dot\r\nend\r\n.\r\n");
/// ```
///
/// [`Stuffer::with_max_line`] also breaks lines longer than a limit (RFC 5321
/// section 4.5.3.1.6: 998 octets and CRLF), as Postfix's
/// `smtp_line_length_limit` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuffer {
    /// The last two body octets seen (`tail[1]` the last); `None` before any octet.
    tail: [Option<u8>; 2],
    /// Break lines longer than this (octets, CRLF and stuffing dot not counted).
    max_line: Option<usize>,
    /// Octets of the current line so far (when `max_line` is set).
    line_len: usize,
    /// A CR that ended the last piece, not yet written: a line end, with the
    /// next piece's first octet if that is an LF, else made CRLF.
    held_cr: bool,
}

/// The longest text line RFC 5321 allows, without its CRLF (section
/// 4.5.3.1.6): what [`Stuffer::with_max_line`] is usually given.
pub const MAX_TEXT_LINE: usize = 998;

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer::new()
    }
}

impl Stuffer {
    /// A stuffer at the start of a body.
    pub fn new() -> Self {
        Stuffer {
            tail: [None, None],
            max_line: None,
            line_len: 0,
            held_cr: false,
        }
    }

    /// A stuffer that also breaks every line longer than `max` octets (at
    /// least 2; CRLF and a stuffing dot not counted). It folds at the last
    /// space or tab that keeps the line within `max` (CRLF before it, as RFC
    /// 5322 folds: unfolding gives the line back), and where the piece at hand
    /// has none, it inserts CRLF and a space, as Postfix does
    /// (`smtp_line_length_limit`): a header line so broken stays one folded
    /// field, and a body line keeps its text. The CR of a line's CRLF is never
    /// split from it (a CR that ends a piece waits for the next); a bare CR or
    /// LF is a line end, sent as CRLF.
    ///
    /// ```
    /// use mailbag_smtp_proto::data::Stuffer;
    ///
    /// let mut s = Stuffer::with_max_line(4);
    /// let mut out = Vec::new();
    /// for piece in [&b"Subject: abc\r\nab"[..], b"cd\r\n.abcdefg\r\n"] {
    ///     s.chunk(piece, &mut out);
    /// }
    /// s.finish(&mut out);
    /// assert_eq!(out, b"Subj\r\n ect\r\n :\r\n abc\r\nabcd\r\n..abc\r\n def\r\n g\r\n.\r\n");
    /// ```
    pub fn with_max_line(max: usize) -> Self {
        Stuffer {
            max_line: Some(max.max(2)),
            ..Stuffer::new()
        }
    }

    /// Appends the stuffed form of `body` (the next piece of the message) to `out`.
    ///
    /// Every bare CR and bare LF goes out as CRLF: an SMTP client must send them
    /// only as CRLF (RFC 5321 section 2.3.8), and a receiver that takes a bare CR
    /// or LF for a line end would otherwise see `\r.\r\n` as the end of the data
    /// (SMTP smuggling). A CR that ends the piece is held for the next, whose first
    /// octet tells whether it was a CRLF's.
    pub fn chunk(&mut self, body: &[u8], out: &mut Vec<u8>) {
        if body.is_empty() {
            return; // a held CR waits on
        }
        let mut b = body;
        if core::mem::take(&mut self.held_cr) {
            self.emit(b"\r\n", out);
            if b[0] == b'\n' {
                b = &b[1..]; // the held CR's LF
            }
        }
        if let Some((b'\r', rest)) = b.split_last() {
            self.held_cr = true;
            b = rest;
        }
        // No CR ends `b` now: a CR is bare unless an LF follows it, an LF unless a CR
        // is before it (an LF first in `b` follows a CR already written or none). The
        // runs between bare ones hold only CRLF line ends.
        let mut start = 0;
        for i in memchr::memchr2_iter(b'\r', b'\n', b) {
            let bare = match b[i] {
                b'\r' => b.get(i + 1) != Some(&b'\n'),
                _ => i == 0 || b[i - 1] != b'\r',
            };
            if bare {
                self.emit(&b[start..i], out);
                self.emit(b"\r\n", out);
                start = i + 1;
            }
        }
        self.emit(&b[start..], out);
    }

    /// Stuffs `piece` (CRLF line ends only), with the line limit when there is one.
    fn emit(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        match self.max_line {
            Some(max) => self.limited(piece, max, out),
            None => self.stuff(piece, out),
        }
    }

    /// [`Stuffer::chunk`] with a line limit, on a piece with CRLF line ends only.
    fn limited(&mut self, body: &[u8], max: usize, out: &mut Vec<u8>) {
        // Fast path: no line of this piece goes past `max`.
        let mut len = self.line_len;
        let mut fits = true;
        let mut last_lf = None;
        for lf in memchr::memchr_iter(b'\n', body) {
            let line = len + (lf - last_lf.map_or(0, |l| l + 1));
            // The line's CR is its end, not text.
            let text = line - usize::from(lf > 0 && body[lf - 1] == b'\r');
            if text > max {
                fits = false;
                break;
            }
            len = 0;
            last_lf = Some(lf);
        }
        let tail_len = body.len() - last_lf.map_or(0, |l| l + 1);
        if fits && len + tail_len <= max {
            self.line_len = len + tail_len;
            return self.stuff(body, out);
        }
        let mut rest = body;
        while !rest.is_empty() {
            let (text, lf) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], Some(&rest[i..=i])),
                None => (rest, None),
            };
            self.fold(text, max, lf.is_some(), out);
            if let Some(lf) = lf {
                self.stuff(lf, out);
                self.line_len = 0;
            }
            rest = &rest[text.len() + usize::from(lf.is_some())..];
        }
    }

    /// Appends `text` (no LF in it; `lf_follows`: an LF ends the line after
    /// it) of the current line, breaking it after `max` octets.
    fn fold(&mut self, text: &[u8], max: usize, lf_follows: bool, out: &mut Vec<u8>) {
        let mut start = 0;
        while start < text.len() {
            let room = max.saturating_sub(self.line_len);
            if text.len() - start <= room {
                self.stuff(&text[start..], out);
                self.line_len += text.len() - start;
                return;
            }
            // A fold at white space the line already has: CRLF goes in before it,
            // and unfolding (taking the CRLF out) gives the line back as it was (a
            // probe's `References:` field had message ids cut in two).
            let fold_at = text
                .get(start..=start + room)
                .and_then(|w| w.iter().rposition(|&b| b == b' ' || b == b'\t'))
                .map(|p| start + p)
                .filter(|&p| p > start || self.line_len > 0);
            if let Some(p) = fold_at {
                self.stuff(&text[start..p], out);
                out.extend_from_slice(b"\r\n");
                self.tail = [Some(b'\r'), Some(b'\n')];
                self.line_len = 0;
                start = p;
                continue;
            }
            // Not inside a UTF-8 character (SMTPUTF8 mail): back to its
            // first octet, unless that would leave nothing on this line.
            let mut cut = start + room;
            let mut back = 0;
            while back < 3 && cut > start + 1 && (text[cut] & 0xc0) == 0x80 {
                cut -= 1;
                back += 1;
            }
            if (text[cut] & 0xc0) == 0x80 {
                cut += back; // not a character after all: cut where the limit is
            }
            self.stuff(&text[start..cut], out);
            self.line_len += cut - start;
            if text[cut] == b'\r' && lf_follows && cut + 1 == text.len() {
                // The line's end: never the start of a continuation.
                self.stuff(&text[cut..=cut], out);
                self.line_len += 1;
                start = cut + 1;
            } else {
                out.extend_from_slice(b"\r\n ");
                self.tail = [Some(b'\n'), Some(b' ')];
                self.line_len = 1;
                start = cut;
            }
        }
    }

    /// Dot-stuffs `body` into `out`.
    fn stuff(&mut self, body: &[u8], out: &mut Vec<u8>) {
        let at_line_start = matches!(self.tail[1], None | Some(b'\n'));
        let mut start = 0;
        if at_line_start && body.first() == Some(&b'.') {
            out.push(b'.');
        }
        // Only LF followed by a dot needs work: search the pair (rare) rather than every LF.
        for lf in memchr::memmem::find_iter(body, b"\n.") {
            out.extend_from_slice(&body[start..=lf]);
            out.push(b'.');
            start = lf + 1;
        }
        out.extend_from_slice(&body[start..]);
        match body {
            [] => {}
            [only] => self.tail = [self.tail[1], Some(*only)],
            [.., a, b] => self.tail = [Some(*a), Some(*b)],
        }
    }

    /// Ends the body: adds CRLF if the body did not end with one, then `.CRLF`.
    /// The stuffer is then ready for a new body.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if core::mem::take(&mut self.held_cr) {
            // A CR at the very end: a line end like any other bare CR.
            self.emit(b"\r\n", out);
        }
        match self.tail {
            [_, None] | [Some(b'\r'), Some(b'\n')] => {}
            _ => out.extend_from_slice(b"\r\n"),
        }
        out.extend_from_slice(b".\r\n");
        *self = Stuffer {
            max_line: self.max_line,
            ..Stuffer::new()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    fn run(input: &[u8], opts: DataOptions) -> (Vec<u8>, usize, Option<Result<u64, DataError>>) {
        let mut rx = DataReceiver::new(opts);
        let mut out = Vec::new();
        let (n, r) = rx.receive_into(input, &mut out);
        (out, n, r)
    }

    fn strict() -> DataOptions {
        DataOptions::default()
    }

    fn normalize() -> DataOptions {
        DataOptions {
            bare_lf: BareLfPolicy::Normalize,
            ..DataOptions::default()
        }
    }

    /// A line is not broken inside a UTF-8 character (SMTPUTF8 mail): the
    /// break moves back to the character's first octet (a re-probe found
    /// `ü` cut in two), unless the line would keep nothing.
    #[test]
    fn line_limit_breaks_between_utf8_characters() {
        let fold = |max: usize, body: &str| {
            let mut s = Stuffer::with_max_line(max);
            let mut out = Vec::new();
            s.chunk(body.as_bytes(), &mut out);
            s.finish(&mut out);
            String::from_utf8(out).expect("whole characters")
        };
        assert_eq!(fold(4, "abcü\r\n"), "abc\r\n ü\r\n.\r\n");
        assert_eq!(fold(4, "a€x\r\n"), "a€\r\n x\r\n.\r\n");
        assert_eq!(fold(4, "ab€\r\n"), "ab\r\n €\r\n.\r\n");
        assert_eq!(fold(3, "aaaüüü\r\n"), "aaa\r\n ü\r\n ü\r\n ü\r\n.\r\n");
    }

    /// A long line with white space is folded at it, so that unfolding (taking
    /// out each inserted CRLF) gives the line back: a probe's `References:`
    /// field had message ids cut in two by `CRLF SP` at octet 998.
    #[test]
    fn line_limit_folds_at_white_space() {
        let ids: Vec<String> = (0..70)
            .map(|i| format!("<msgid.{i:04}.abcdefghij@host.example.org>"))
            .collect();
        let field = format!("References: {}\r\n", ids.join(" "));
        let mut s = Stuffer::with_max_line(MAX_TEXT_LINE);
        let mut out = Vec::new();
        s.chunk(field.as_bytes(), &mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let body = text.strip_suffix(".\r\n").unwrap();
        assert!(
            body.split("\r\n").all(|l| l.len() <= MAX_TEXT_LINE),
            "{text}"
        );
        assert!(body.matches("\r\n").count() > 1);
        // Unfolded: the field as it was.
        let unfolded = body.replace("\r\n ", " ");
        assert_eq!(unfolded, field);
        // A tab folds the same way; a line without white space is broken as before.
        let mut s = Stuffer::with_max_line(4);
        let mut out = Vec::new();
        s.chunk(b"ab\tcdefg\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"ab\r\n\tcde\r\n fg\r\n.\r\n");
    }

    #[test]
    fn empty_message_right_after_data() {
        assert_eq!(run(b".\r\nQUIT", strict()), (vec![], 3, Some(Ok(0))));
    }

    #[test]
    fn first_line_unstuffed() {
        assert_eq!(run(b"..x\r\n.\r\n", strict()).0, b".x\r\n");
    }

    #[test]
    fn smuggling_forms_do_not_end_data() {
        for form in [&b"a\n.\nb"[..], b"a\r.\rb", b"a\n.\r\nb", b"a\r.\r\nb"] {
            let mut input = form.to_vec();
            input.extend_from_slice(b"\r\n.\r\n");
            let (_, used, r) = run(&input, normalize());
            assert_eq!(used, input.len(), "{form:?}");
            assert!(r.is_some());
            let (_, used, r) = run(&input, strict());
            assert_eq!(used, input.len());
            let bare_lf = form.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r');
            if bare_lf {
                assert_eq!(r, Some(Err(DataError::BareLf)), "{form:?}");
            }
        }
        // `\r\n.\n` with the real end later.
        let (body, _, r) = run(b"a\r\n.\nb\r\n.\r\n", normalize());
        assert_eq!(r, Some(Ok(body.len() as u64)));
        assert_eq!(body, b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn bare_cr_is_data() {
        let (body, _, r) = run(b"a\rb\r\n.\r\n", strict());
        assert_eq!(body, b"a\rb\r\n");
        assert_eq!(r, Some(Ok(5)));
        let (body, _, _) = run(b".\rx\r\n.\r\n", strict());
        assert_eq!(body, b"\rx\r\n");
    }

    #[test]
    fn normalise_bare_lf() {
        let (body, _, r) = run(b"a\nb\n..c\r\n.\r\n", normalize());
        assert_eq!(body, b"a\r\nb\r\n.c\r\n");
        assert_eq!(r, Some(Ok(body.len() as u64)));
        // As Postfix's smtpd_forbid_bare_newline = normalize: a line ended by a
        // bare LF is unstuffed like any line, so a lone "." there (which ends
        // nothing) becomes an empty line; a bare CR is no line end, neither for
        // unstuffing nor here (`line_endings` turns it into CRLF later).
        let (body, _, _) = run(b"a\n.\nb\r..c\r.\rd\r\n.\r\n", normalize());
        assert_eq!(body, b"a\r\n\r\nb\r..c\r.\rd\r\n");
    }

    #[test]
    fn accept_keeps_bare_lf_and_still_ends_only_at_crlf_dot_crlf() {
        let opts = DataOptions {
            bare_lf: BareLfPolicy::Accept,
            ..DataOptions::default()
        };
        let (body, used, r) = run(b"a\n.\nb\n..c\r\n..d\r\n.\r\nX", opts.clone());
        assert_eq!(body, b"a\n.\nb\n..c\r\n.d\r\n");
        assert_eq!((used, r), (19, Some(Ok(15))));
        let (body, _, r) = run(b".\r\n", opts);
        assert_eq!((body, r), (vec![], Some(Ok(0))));
    }

    #[test]
    fn size_limit_while_streaming() {
        let opts = DataOptions {
            max_size: 4,
            ..DataOptions::default()
        };
        let mut rx = DataReceiver::new(opts);
        let (n, s) = rx.step(b"12345678\r\n");
        assert_eq!(s, DataStep::Aborted(DataError::TooBig));
        let (m, s) = rx.step(&b"12345678\r\n.\r\n"[n..]);
        assert_eq!(s, DataStep::End(Err(DataError::TooBig)));
        assert_eq!(n + m, 13);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"..a\r\nb\r\n..\r\n.x\r\n\r\n.\r\n";
        let (whole, used, r) = run(input, strict());
        let mut rx = DataReceiver::new(strict());
        let mut out = Vec::new();
        let mut end = None;
        for i in 0..input.len() {
            let (n, e) = rx.receive_into(&input[i..=i], &mut out);
            if e.is_some() {
                assert_eq!(i + 1, used);
                end = e;
                break;
            }
            assert_eq!(n, 1);
        }
        assert_eq!(out, whole);
        assert_eq!(end, r);
        assert_eq!(whole, b".a\r\nb\r\n.\r\nx\r\n\r\n");
    }

    #[test]
    fn bare_lf_result_does_not_depend_on_chunking() {
        // Found by the smtp_data fuzz target.
        let (whole, n, r) = run(b"\xff\n", strict());
        let mut rx = DataReceiver::new(strict());
        let mut out = Vec::new();
        let (a, _) = rx.receive_into(b"\xff", &mut out);
        let (b, r2) = rx.receive_into(b"\n", &mut out);
        assert_eq!((out, a + b, r2), (whole, n, r));
    }

    #[test]
    fn stuffer_chunking_matches_stuff() {
        let bodies: [&[u8]; 7] = [
            b"",
            b".",
            b"a\r\n.b\r\n..c\r\n",
            b".x\r\n.\r\n",
            b"no final newline",
            b"bare\n.lf\n",
            b"ends in cr\r",
        ];
        for body in bodies {
            let mut whole = Vec::new();
            stuff(body, &mut whole);
            for split in 0..=body.len() {
                for split2 in split..=body.len() {
                    let mut s = Stuffer::new();
                    let mut out = Vec::new();
                    s.chunk(&body[..split], &mut out);
                    s.chunk(&body[split..split2], &mut out);
                    s.chunk(&body[split2..], &mut out);
                    s.finish(&mut out);
                    assert_eq!(out, whole, "{body:?} split at {split}/{split2}");
                }
            }
        }
        let mut out = Vec::new();
        stuff(b"", &mut out);
        assert_eq!(out, b".\r\n");
        out.clear();
        stuff(b"x\r", &mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }

    /// No bare CR or LF goes out, whatever the chunking (RFC 5321 section 2.3.8; a
    /// review found `\r.\r\n` sent as it came, which a receiver that ends lines at a
    /// bare CR reads as the end of the data).
    #[test]
    fn bare_cr_and_lf_go_out_as_crlf() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"a\r.\r\nMAIL\r\n", b"a\r\n..\r\nMAIL\r\n.\r\n"),
            (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"\r\r\n\n\r", b"\r\n\r\n\r\n\r\n.\r\n"),
            (b"\n", b"\r\n.\r\n"),
            (b"\r", b"\r\n.\r\n"),
            (b"x\r\r.y", b"x\r\n\r\n..y\r\n.\r\n"),
            (b"ok\r\n.\r\n", b"ok\r\n..\r\n.\r\n"),
            (b"\n.", b"\r\n..\r\n.\r\n"),
        ];
        for (body, want) in cases {
            for max in [None, Some(3), Some(MAX_TEXT_LINE)] {
                for split in 0..=body.len() {
                    for split2 in split..=body.len() {
                        let mut s = max.map_or_else(Stuffer::new, Stuffer::with_max_line);
                        let mut out = Vec::new();
                        s.chunk(&body[..split], &mut out);
                        s.chunk(&body[split..split2], &mut out);
                        s.chunk(&body[split2..], &mut out);
                        s.finish(&mut out);
                        if max.is_some_and(|m| m < 4) {
                            // Folding may add CRLF SP; never a bare CR or LF.
                            let bare = out.iter().enumerate().any(|(i, &c)| match c {
                                b'\r' => out.get(i + 1) != Some(&b'\n'),
                                b'\n' => i == 0 || out[i - 1] != b'\r',
                                _ => false,
                            });
                            assert!(!bare, "{body:?} {split}/{split2}: {out:?}");
                        } else {
                            assert_eq!(out, want, "{body:?} {max:?} {split}/{split2}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn stuff_round_trip() {
        for body in [&b""[..], b".\r\n", b"a\r\n.\r\n..\r\n", b"x\r\n"] {
            let mut w = Vec::new();
            stuff(body, &mut w);
            assert_eq!(run(&w, strict()).0, body);
        }
    }

    /// The naive definition [`find_interesting`] implements.
    fn interesting_naive(h: &[u8], cr: bool) -> Option<usize> {
        (0..h.len()).find(|&i| {
            let prev_cr = if i == 0 { cr } else { h[i - 1] == b'\r' };
            h[i] == b'\n' && (!prev_cr || i + 1 == h.len() || h[i + 1] == b'.')
        })
    }

    /// The naive definition [`find_crlf_dot`] implements.
    fn crlf_dot_naive(h: &[u8], cr: bool) -> Option<usize> {
        (0..h.len()).find(|&i| {
            let prev_cr = if i == 0 { cr } else { h[i - 1] == b'\r' };
            h[i] == b'\n' && ((prev_cr && h.get(i + 1) == Some(&b'.')) || i + 1 == h.len())
        })
    }

    /// Events of a receiver fed one octet at a time: the block scanners never see a whole
    /// block, so this is the octet-by-octet general path.
    fn events_bytewise(input: &[u8], opts: &DataOptions) -> (Vec<u8>, usize, Vec<String>) {
        let mut rx = DataReceiver::new(opts.clone());
        let (mut body, mut events) = (Vec::new(), Vec::new());
        for (i, b) in input.iter().enumerate() {
            let mut rest = std::slice::from_ref(b);
            loop {
                let (n, s) = rx.step(rest);
                rest = &rest[n..];
                match s {
                    DataStep::Body(b) => body.extend_from_slice(b),
                    DataStep::NeedMore => break,
                    DataStep::Aborted(e) => events.push(format!("abort {e:?}")),
                    DataStep::End(r) => {
                        events.push(format!("end {r:?}"));
                        return (body, i + 1, events);
                    }
                }
            }
        }
        (body, input.len(), events)
    }

    /// Events of a receiver fed whole chunks through `step` (zero copy) or `receive_into`.
    fn events_chunked(
        input: &[u8],
        opts: &DataOptions,
        cuts: &[usize],
        copy: bool,
    ) -> (Vec<u8>, usize, Vec<String>) {
        let mut rx = DataReceiver::new(opts.clone());
        let (mut body, mut events) = (Vec::new(), Vec::new());
        let mut buffered = Vec::new();
        let mut used = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.extend([0, input.len()]);
        points.sort_unstable();
        points.dedup();
        for w in points.windows(2) {
            buffered.extend_from_slice(&input[w[0]..w[1]]);
            let mut pos = 0;
            let done = if copy {
                let (n, end) = rx.receive_into(&buffered, &mut body);
                pos = n;
                if rx.error().is_some() && !events.iter().any(|e: &String| e.starts_with("abort")) {
                    events.push(format!("abort {:?}", rx.error().unwrap()));
                }
                end.map(|r| events.push(format!("end {r:?}"))).is_some()
            } else {
                loop {
                    let (n, s) = rx.step(&buffered[pos..]);
                    pos += n;
                    match s {
                        DataStep::Body(b) => body.extend_from_slice(b),
                        DataStep::NeedMore => break false,
                        DataStep::Aborted(e) => events.push(format!("abort {e:?}")),
                        DataStep::End(r) => {
                            events.push(format!("end {r:?}"));
                            break true;
                        }
                    }
                }
            };
            buffered.drain(..pos);
            used += pos;
            if done {
                break;
            }
        }
        (body, used, events)
    }

    /// Message-like input: long lines (so that whole clean blocks occur), with some bare LFs,
    /// bare CRs, leading dots, smuggling forms and real ends.
    fn wire_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        // (kind, length) pairs turned into pieces: cheap to generate and shrink.
        proptest::collection::vec((0u8..16, 0usize..150), 0..40).prop_map(|pieces| {
            let mut w = Vec::new();
            for (kind, len) in pieces {
                match kind {
                    0..=7 => {
                        let text = b"ab cd.ef\rgh ij k";
                        w.extend((0..len).map(|i| text[(i * 5 + usize::from(kind)) % text.len()]));
                    }
                    8..=11 => w.extend_from_slice(b"\r\n"),
                    12 => w.extend_from_slice(b"\r\n."),
                    13 => w.push(b'\n'),
                    14 => w.extend_from_slice(b"\n."),
                    _ => w.extend_from_slice(match len % 3 {
                        0 => &b"\r\n.\r\n"[..],
                        1 => b"\r.\r",
                        _ => b"\n.\n",
                    }),
                }
            }
            w
        })
    }

    proptest::proptest! {
        /// The block scanner finds exactly what the naive definition finds.
        #[test]
        fn find_interesting_matches_naive(h in wire_strategy(), cr in proptest::bool::ANY) {
            proptest::prop_assert_eq!(find_interesting(&h, cr), interesting_naive(&h, cr));
            proptest::prop_assert_eq!(find_crlf_dot(&h, cr), crlf_dot_naive(&h, cr));
            for start in 1..h.len().min(BLOCK + 2) {
                proptest::prop_assert_eq!(clean_blocks_dispatch(&h, start), clean_blocks(&h, start));
            }
        }

        /// The fast paths (whole blocks, memmem) give the same body, events and octets used
        /// as the octet-by-octet path, for any chunking, policy and size limit, through both
        /// `step` and `receive_into`.
        #[test]
        fn fast_path_equals_bytewise(
            wire in wire_strategy(),
            cuts in proptest::collection::vec(0usize..10_000, 0..6),
            policy in proptest::prop_oneof![
                proptest::strategy::Just(BareLfPolicy::Reject),
                proptest::strategy::Just(BareLfPolicy::Normalize),
                proptest::strategy::Just(BareLfPolicy::Accept),
            ],
            max_size in proptest::prop_oneof![proptest::strategy::Just(0u64), 0u64..3000],
        ) {
            let opts = DataOptions { max_size, bare_lf: policy };
            let (body, used, events) = events_bytewise(&wire, &opts);
            for copy in [false, true] {
                let (b, u, e) = events_chunked(&wire, &opts, &cuts, copy);
                proptest::prop_assert_eq!(&e, &events);
                proptest::prop_assert_eq!(u, used);
                if !events.iter().any(|e| e.contains("TooBig")) {
                    // After a size failure the partial body is dropped (chunking-dependent).
                    proptest::prop_assert_eq!(&b, &body);
                }
            }
        }
    }

    #[test]
    fn blocks_with_a_stop_at_every_offset() {
        // A stop octet at every position of a long clean run, for both scanners.
        for at in 0..(3 * BLOCK + 20) {
            for form in [&b"\n"[..], b"\r\n.", b"x\n"] {
                let mut h = b"ab\r\n".repeat(BLOCK);
                h.splice(at..at, form.iter().copied());
                // The run-time dispatched build (AVX-512 or AVX2 here if the CPU has
                // it), the AVX2 build and the baseline build of the block loop agree.
                assert_eq!(
                    clean_blocks_dispatch(&h, 1),
                    clean_blocks(&h, 1),
                    "{at} {form:?}"
                );
                #[cfg(all(target_arch = "x86_64", feature = "simd"))]
                if let Some(v3) = pulp::x86::V3::try_new() {
                    assert_eq!(
                        v3.vectorize(|| clean_blocks(&h, 1)),
                        clean_blocks(&h, 1),
                        "{at} {form:?}"
                    );
                }
                for cr in [false, true] {
                    assert_eq!(
                        find_interesting(&h, cr),
                        interesting_naive(&h, cr),
                        "{at} {form:?}"
                    );
                    assert_eq!(
                        find_crlf_dot(&h, cr),
                        crlf_dot_naive(&h, cr),
                        "{at} {form:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn discard_reports_nothing() {
        let mut rx = DataReceiver::discard();
        let (n, s) = rx.step(b"lots\nof\r\ndata\r\n.\r\nNOOP");
        assert_eq!(s, DataStep::End(Ok(0)));
        assert_eq!(n, 18);
    }
}
