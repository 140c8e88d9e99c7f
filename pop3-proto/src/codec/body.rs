//! The multi-line body codec (RFC 1939 section 3): [`BodyEncoder`]
//! (dot-stuffing, bare LF to CRLF, the `.` terminator) and [`BodyDecoder`]
//! stream a body chunk by chunk; [`normalize_crlf`] and [`crlf_len`] give
//! the body and size a client sees.
//!
//! The encoder's search for line ends that need work is in [`scan`], its
//! block line mode for bare-LF text (AVX-512 or AVX2) in [`lines`].

use alloc::vec::Vec;

use alloc::borrow::Cow;

use memchr::memchr;

mod lines;
mod scan;
mod simd;
mod sink;

use scan::{CLEAN_STREAK, SCAN_BLOCK, next_dirty_block, next_lf};
use simd::Simd;
use sink::{FnSink, Insert, Sink, VecSink};

/// The multi-line terminator `.CRLF`.
pub const TERMINATOR: &[u8] = b".\r\n";

/// What the body encoder wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProgress {
    /// Feed more of the message (or call [`BodyEncoder::finish`] at its end).
    Continue,
    /// A TOP limit was reached: the rest of the message is not needed; call
    /// [`BodyEncoder::finish`].
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    Whole,
    Top {
        in_header: bool,
        remaining: u32,
        line_len: u64,
        done: bool,
    },
}

/// Streaming encoder of a multi-line body (RFC 1939 section 3): stuffs a `.`
/// before every line that starts with `.`, turns bare LF into CRLF, adds a
/// CRLF if the message does not end with one, then the `.CRLF` terminator.
///
/// It keeps its state across chunks, so a line end or a leading dot split
/// between two chunks is handled. Two output styles give the same bytes:
/// [`BodyEncoder::encode_chunk`] appends to a `Vec<u8>` (copying runs of
/// octets and stopping only where it must insert one), and
/// [`BodyEncoder::encode_segments`] hands out borrowed runs of the input and
/// short static inserts, for a zero-copy `write_vectored` from the caller's
/// read buffer.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::codec::BodyEncoder;
///
/// let mut enc = BodyEncoder::new();
/// let mut out = Vec::new();
/// enc.encode_chunk(b"Subject: hi\n\n.hidden\r", &mut out);
/// enc.encode_chunk(b"\nlast line", &mut out);
/// enc.finish(&mut out);
/// assert_eq!(out, b"Subject: hi\r\n\r\n..hidden\r\nlast line\r\n.\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    line_start: bool,
    prev_cr: bool,
    limit: Limit,
}

impl Default for BodyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyEncoder {
    /// An encoder for a whole message (RETR).
    pub fn new() -> Self {
        Self {
            line_start: true,
            prev_cr: false,
            limit: Limit::Whole,
        }
    }

    /// An encoder for `TOP msg lines`: the header, the blank line, then at
    /// most `lines` body lines.
    ///
    /// ```
    /// use mailbag_pop3_proto::codec::{BodyEncoder, BodyProgress};
    ///
    /// let mut enc = BodyEncoder::top(1);
    /// let mut out = Vec::new();
    /// let p = enc.encode_chunk(b"A: b\r\n\r\none\r\ntwo\r\n", &mut out);
    /// assert_eq!(p, BodyProgress::Done);
    /// enc.finish(&mut out);
    /// assert_eq!(out, b"A: b\r\n\r\none\r\n.\r\n");
    /// ```
    pub fn top(lines: u32) -> Self {
        Self {
            line_start: true,
            prev_cr: false,
            limit: Limit::Top {
                in_header: true,
                remaining: lines,
                line_len: 0,
                done: false,
            },
        }
    }

    /// Encodes the next chunk of the message into `out`.
    ///
    /// This copies every octet; [`BodyEncoder::encode_segments`] gives the
    /// same bytes without copying them.
    pub fn encode_chunk(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> BodyProgress {
        // Inserted octets are rare in CRLF text and one per line otherwise.
        out.reserve(chunk.len() + chunk.len() / 32 + 8);
        Simd::run(
            #[inline(always)]
            move |simd| self.encode_into(chunk, &mut VecSink(out), simd),
        )
    }

    /// Encodes the next chunk of the message as a sequence of segments
    /// without copying it: `segment` is called, in order, with runs of
    /// `chunk` itself and with the short static inserts the wire format
    /// needs (`"\r\n"` for a bare LF, `"."` for dot-stuffing, `"\r\n."`
    /// for both, or the two one after the other). Their concatenation is
    /// exactly what
    /// [`BodyEncoder::encode_chunk`] appends for the same input, whatever
    /// the chunking; segments are never empty.
    ///
    /// Because the segments borrow from `chunk` (or are `'static`), a server
    /// can collect them, for example as [`std::io::IoSlice`]s for
    /// `write_vectored`, and send them straight from its read buffer. The
    /// encoder's own work is then only the scan for line ends that need
    /// work, which for a CRLF message is a fast vectorised check.
    ///
    /// The two styles can be mixed on one encoder, chunk by chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::IoSlice;
    /// use mailbag_pop3_proto::codec::BodyEncoder;
    ///
    /// let chunk = b"Subject: hi\n\n.hidden\r\nlast line";
    /// let mut enc = BodyEncoder::new();
    /// let mut iov: Vec<IoSlice<'_>> = Vec::new();
    /// enc.encode_segments(chunk, |seg| iov.push(IoSlice::new(seg)));
    /// enc.finish_segments(|seg| iov.push(IoSlice::new(seg)));
    /// // `iov` is ready for `write_vectored`; here we just join it.
    /// let wire: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
    /// assert_eq!(wire, b"Subject: hi\r\n\r\n..hidden\r\nlast line\r\n.\r\n");
    /// // The clean stretches are borrowed, not copied.
    /// assert_eq!(iov[0].as_ptr(), chunk.as_ptr());
    /// ```
    pub fn encode_segments<'a, F>(&mut self, chunk: &'a [u8], segment: F) -> BodyProgress
    where
        F: FnMut(&'a [u8]),
    {
        Simd::run(
            #[inline(always)]
            move |simd| self.encode_into(chunk, &mut FnSink(segment), simd),
        )
    }

    /// Ends the body: CRLF if the last line was not terminated, then `.CRLF`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.finish_into(&mut VecSink(out));
    }

    /// Ends the body like [`BodyEncoder::finish`], as segments (`"\r\n"` if
    /// the last line was not terminated, then [`TERMINATOR`]).
    ///
    /// ```
    /// use mailbag_pop3_proto::codec::BodyEncoder;
    ///
    /// let mut enc = BodyEncoder::new();
    /// let mut segs = Vec::new();
    /// enc.encode_segments(b"no line end", |s| segs.push(s));
    /// enc.finish_segments(|s| segs.push(s));
    /// assert_eq!(segs, [&b"no line end"[..], b"\r\n", b".\r\n"]);
    /// ```
    pub fn finish_segments<F>(&mut self, segment: F)
    where
        F: FnMut(&'static [u8]),
    {
        self.finish_into(&mut FnSink(segment));
    }

    fn finish_into<'a, S: Sink<'a>>(&mut self, sink: &mut S) {
        if !self.line_start {
            sink.insert(Insert::Crlf);
            self.line_start = true;
            self.prev_cr = false;
        }
        sink.insert(Insert::Terminator);
    }

    // This, `encode_top` and `emit` are inlined into `Simd::run`'s AVX-512 or
    // AVX2 function, so that the block loops they call are compiled for it.
    #[cfg_attr(all(target_arch = "x86_64", feature = "simd"), inline(always))]
    fn encode_into<'a, S: Sink<'a>>(
        &mut self,
        chunk: &'a [u8],
        sink: &mut S,
        simd: Simd,
    ) -> BodyProgress {
        match self.limit {
            Limit::Whole => {
                self.emit(chunk, sink, simd);
                BodyProgress::Continue
            }
            Limit::Top { .. } => self.encode_top(chunk, sink, simd),
        }
    }

    #[cfg_attr(all(target_arch = "x86_64", feature = "simd"), inline(always))]
    fn encode_top<'a, S: Sink<'a>>(
        &mut self,
        chunk: &'a [u8],
        sink: &mut S,
        simd: Simd,
    ) -> BodyProgress {
        let mut pos = 0;
        while pos < chunk.len() {
            let Limit::Top {
                in_header,
                remaining,
                line_len,
                done,
            } = &mut self.limit
            else {
                return BodyProgress::Continue;
            };
            if *done {
                return BodyProgress::Done;
            }
            if !*in_header && *remaining == 0 {
                *done = true;
                return BodyProgress::Done;
            }
            let rest = chunk.get(pos..).unwrap_or_default();
            let Some(nl) = memchr(b'\n', rest) else {
                *line_len += rest.len() as u64;
                self.emit(rest, sink, simd);
                return BodyProgress::Continue;
            };
            let cr_before = if nl == 0 {
                self.prev_cr
            } else {
                rest.get(nl - 1) == Some(&b'\r')
            };
            let len = *line_len + nl as u64;
            let blank = len == 0 || (len == 1 && cr_before);
            if *in_header {
                if blank {
                    *in_header = false;
                }
            } else {
                *remaining = remaining.saturating_sub(1);
            }
            *line_len = 0;
            if !*in_header && *remaining == 0 {
                *done = true;
            }
            let line = rest.get(..=nl).unwrap_or_default();
            self.emit(line, sink, simd);
            pos += nl + 1;
        }
        match self.limit {
            Limit::Top { done: true, .. } => BodyProgress::Done,
            Limit::Top {
                in_header: false,
                remaining: 0,
                ..
            } => BodyProgress::Done,
            _ => BodyProgress::Continue,
        }
    }

    /// Encodes `chunk` (dot-stuffing, LF to CRLF) into `sink` as runs of the
    /// input and inserts.
    ///
    /// Block mode: [`next_dirty_block`] skips [`SCAN_BLOCK`]-octet blocks
    /// whose line ends need nothing with a branch-free check that compiles
    /// to SIMD compares. In a block that needs work, its line ends are
    /// handled one by one; if one of them was a bare LF the encoder stays in
    /// line mode, as a bare-LF message needs work on every line. Line mode
    /// runs 64-octet blocks with AVX-512 or AVX2 ([`lines`]; to the end of
    /// the chunk, except AVX-512's copy path, which stops after four blocks
    /// in a row needed nothing, about [`CLEAN_STREAK`] line ends); otherwise
    /// it finds every line end with [`next_lf`] until [`CLEAN_STREAK`] line
    /// ends in a row needed nothing.
    #[cfg_attr(all(target_arch = "x86_64", feature = "simd"), inline(always))]
    fn emit<'a, S: Sink<'a>>(&mut self, chunk: &'a [u8], sink: &mut S, simd: Simd) {
        let Some(&last) = chunk.last() else {
            return;
        };
        if self.line_start && chunk.first() == Some(&b'.') {
            sink.insert(Insert::Dot);
        }
        let prev_cr = self.prev_cr;
        let mut run = 0;
        if chunk.first() == Some(&b'\n') {
            line_end(chunk, prev_cr, 0, &mut run, sink);
        }
        let mut pos = 1;
        loop {
            let (at, dirty) = next_dirty_block(chunk, pos);
            pos = at;
            if !dirty {
                break;
            }
            let block = chunk.get(pos..pos + SCAN_BLOCK).unwrap_or_default();
            let mut bare = false;
            for rel in memchr::memchr_iter(b'\n', block) {
                bare |= line_end(chunk, prev_cr, pos + rel, &mut run, sink) == LineEnd::Bare;
            }
            pos += SCAN_BLOCK;
            if bare {
                // Line mode: block by block where the CPU allows.
                let fast = match sink.vec() {
                    Some(out) => {
                        out.extend_from_slice(chunk.get(run..pos).unwrap_or_default());
                        run = pos;
                        let at = lines::copy_lines(simd, chunk, pos, out);
                        run = at.unwrap_or(run);
                        at
                    }
                    None => lines::segment_lines(simd, chunk, pos, &mut run, sink),
                };
                if let Some(at) = fast {
                    pos = at;
                    continue;
                }
                // Line mode, one line end at a time.
                let mut streak = 0;
                let mut resume = None;
                let mut from = pos;
                while let Some(nl) = next_lf(chunk, from) {
                    from = nl + 1;
                    if line_end(chunk, prev_cr, nl, &mut run, sink) == LineEnd::Clean {
                        streak += 1;
                        if streak >= CLEAN_STREAK {
                            resume = Some(nl + 1);
                            break;
                        }
                    } else {
                        streak = 0;
                    }
                }
                match resume {
                    Some(at) => pos = at,
                    None => {
                        // Every remaining line end has been handled.
                        pos = chunk.len();
                        break;
                    }
                }
            }
        }
        // The last octets, too few for a block (and its context).
        let tail = chunk.get(pos..).unwrap_or_default();
        for rel in memchr::memchr_iter(b'\n', tail) {
            line_end(chunk, prev_cr, pos + rel, &mut run, sink);
        }
        sink.run(chunk.get(run..).unwrap_or_default());
        self.line_start = last == b'\n';
        self.prev_cr = last == b'\r';
    }
}

/// What a line end needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    /// CRLF, next line not starting with `.`: nothing.
    Clean,
    /// CRLF before a `.`: a stuffed dot.
    Dot,
    /// A bare LF: replaced by CRLF (and a stuffed dot if `.` follows).
    Bare,
}

/// Handles the LF at `chunk[nl]`: flushes the pending run (from `*run`) and
/// writes the insert it needs, if any. `prev_cr` is whether the octet before
/// the chunk was CR. A `.` at the start of the next chunk is handled there.
#[inline(always)]
fn line_end<'a, S: Sink<'a>>(
    chunk: &'a [u8],
    prev_cr: bool,
    nl: usize,
    run: &mut usize,
    sink: &mut S,
) -> LineEnd {
    let cr_before = match nl.checked_sub(1) {
        None => prev_cr,
        Some(i) => chunk.get(i) == Some(&b'\r'),
    };
    let dot_after = chunk.get(nl + 1) == Some(&b'.');
    match (cr_before, dot_after) {
        (true, false) => LineEnd::Clean,
        (true, true) => {
            sink.run(chunk.get(*run..=nl).unwrap_or_default());
            *run = nl + 1;
            sink.insert(Insert::Dot);
            LineEnd::Dot
        }
        (false, dot) => {
            sink.run(chunk.get(*run..nl).unwrap_or_default());
            *run = nl + 1;
            sink.insert(if dot { Insert::CrlfDot } else { Insert::Crlf });
            LineEnd::Bare
        }
    }
}

/// What the body decoder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeStatus {
    /// All input was consumed; the terminator has not been seen yet.
    NeedMore,
    /// The terminator was seen; `consumed` octets of the input were used
    /// (the rest belongs to the next response).
    Done {
        /// Octets of this input consumed, terminator included.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    LineStart,
    Middle,
    Dot,
    DotCr,
    Done,
}

/// Streaming decoder of a multi-line body (client side): removes the stuffed
/// dots and stops at the `.CRLF` terminator (a bare `.LF` is accepted too).
/// Line ends are passed through unchanged.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::codec::{BodyDecoder, DecodeStatus};
///
/// let mut dec = BodyDecoder::new();
/// let mut out = Vec::new();
/// assert_eq!(dec.decode(b"..dot\r\nx\r\n.", &mut out), DecodeStatus::NeedMore);
/// assert_eq!(dec.decode(b"\r\n+OK next", &mut out), DecodeStatus::Done { consumed: 2 });
/// assert_eq!(out, b".dot\r\nx\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: DecState,
}

impl Default for BodyDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: DecState::LineStart,
        }
    }

    /// Whether the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == DecState::Done
    }

    /// Decodes `input`, appending body bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> DecodeStatus {
        let mut pos = 0;
        if self.state == DecState::Done {
            return DecodeStatus::Done { consumed: 0 };
        }
        while let Some(&b) = input.get(pos) {
            match self.state {
                DecState::LineStart => {
                    if b == b'.' {
                        self.state = DecState::Dot;
                        pos += 1;
                    } else {
                        self.state = DecState::Middle;
                    }
                }
                DecState::Dot => match b {
                    b'\r' => {
                        self.state = DecState::DotCr;
                        pos += 1;
                    }
                    b'\n' => {
                        self.state = DecState::Done;
                        return DecodeStatus::Done { consumed: pos + 1 };
                    }
                    _ => self.state = DecState::Middle,
                },
                DecState::DotCr => {
                    if b == b'\n' {
                        self.state = DecState::Done;
                        return DecodeStatus::Done { consumed: pos + 1 };
                    }
                    out.push(b'\r');
                    self.state = DecState::Middle;
                }
                DecState::Middle => {
                    let rest = input.get(pos..).unwrap_or_default();
                    match memchr(b'\n', rest) {
                        Some(nl) => {
                            out.extend_from_slice(rest.get(..=nl).unwrap_or_default());
                            pos += nl + 1;
                            self.state = DecState::LineStart;
                        }
                        None => {
                            out.extend_from_slice(rest);
                            pos = input.len();
                        }
                    }
                }
                DecState::Done => return DecodeStatus::Done { consumed: pos },
            }
        }
        DecodeStatus::NeedMore
    }
}

/// The message with bare LF turned into CRLF and a final CRLF added if it
/// does not end with one: exactly what [`BodyDecoder`] returns for what
/// [`BodyEncoder`] sent.
///
/// ```
/// use mailbag_pop3_proto::codec::normalize_crlf;
///
/// assert_eq!(&*normalize_crlf(b"a\nb"), b"a\r\nb\r\n");
/// assert!(normalize_crlf(b"").is_empty());
/// ```
pub fn normalize_crlf(body: &[u8]) -> Cow<'_, [u8]> {
    if crlf_len(body) == body.len() as u64 {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 2);
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

/// The size of the message in octets once normalised to CRLF line ends (the
/// size LIST and STAT must report, RFC 1939 section 11).
///
/// ```
/// use mailbag_pop3_proto::codec::crlf_len;
///
/// assert_eq!(crlf_len(b"a\nb\r\n"), 6);
/// ```
pub fn crlf_len(body: &[u8]) -> u64 {
    let mut extra = 0u64;
    for nl in memchr::memchr_iter(b'\n', body) {
        if nl == 0 || body.get(nl - 1) != Some(&b'\r') {
            extra += 1;
        }
    }
    let len = body.len() as u64 + extra;
    let ends_crlf = body.last() == Some(&b'\n');
    if body.is_empty() || ends_crlf {
        len
    } else {
        len + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use proptest::prelude::*;

    fn encode_all(chunks: &[&[u8]]) -> Vec<u8> {
        let mut e = BodyEncoder::new();
        let mut out = Vec::new();
        for c in chunks {
            e.encode_chunk(c, &mut out);
        }
        e.finish(&mut out);
        out
    }

    #[test]
    fn body_encoder_edge_cases() {
        assert_eq!(encode_all(&[]), b".\r\n");
        assert_eq!(encode_all(&[b"."]), b"..\r\n.\r\n");
        assert_eq!(
            encode_all(&[b"a\r", b"\n", b".", b"b"]),
            b"a\r\n..b\r\n.\r\n"
        );
        assert_eq!(encode_all(&[b"a\n", b".\n"]), b"a\r\n..\r\n.\r\n");
        assert_eq!(encode_all(&[b"\n\n"]), b"\r\n\r\n.\r\n");
        assert_eq!(encode_all(&[b"a\r"]), b"a\r\r\n.\r\n");
        assert_eq!(encode_all(&[b"x\r\n.\r\n"]), b"x\r\n..\r\n.\r\n");
    }

    #[test]
    fn top_encoder() {
        let msg = b"H: 1\nH2: 2\n\nb1\nb2\nb3\n";
        for (n, want) in [
            (0u32, &b"H: 1\r\nH2: 2\r\n\r\n.\r\n"[..]),
            (2, b"H: 1\r\nH2: 2\r\n\r\nb1\r\nb2\r\n.\r\n"),
            (10, b"H: 1\r\nH2: 2\r\n\r\nb1\r\nb2\r\nb3\r\n.\r\n"),
        ] {
            // Whole and byte by byte give the same result.
            for step in [msg.len(), 1] {
                let mut e = BodyEncoder::top(n);
                let mut out = Vec::new();
                for c in msg.chunks(step) {
                    if e.encode_chunk(c, &mut out) == BodyProgress::Done {
                        break;
                    }
                }
                e.finish(&mut out);
                assert_eq!(out, want, "n={n} step={step}");
            }
        }
        // No blank line: the whole header is sent.
        let mut e = BodyEncoder::top(0);
        let mut out = Vec::new();
        e.encode_chunk(b"H: 1", &mut out);
        e.finish(&mut out);
        assert_eq!(out, b"H: 1\r\n.\r\n");
    }

    #[test]
    fn decoder_roundtrip_and_leftover() {
        let body = b"a\n.b\n..c\r\n.\r\nend";
        let wire = encode_all(&[body]);
        let mut wire2 = wire.clone();
        wire2.extend_from_slice(b"+OK");
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.decode(&wire2, &mut out),
            DecodeStatus::Done {
                consumed: wire.len()
            }
        );
        assert_eq!(out, normalize_crlf(body).as_ref());
        assert!(d.is_done());
    }

    #[test]
    fn crlf_len_matches_normalize() {
        for b in [&b""[..], b"a", b"a\n", b"a\r", b"\r\n", b"\n\n", b"a\r\nb"] {
            assert_eq!(crlf_len(b), normalize_crlf(b).len() as u64, "{b:?}");
        }
    }

    /// Encodes with `encode_segments`, checking that every segment is
    /// non-empty and either borrowed from its chunk or one of the inserts.
    fn encode_segments_all(chunks: &[&[u8]], top: Option<u32>) -> Vec<u8> {
        let mut e = top.map_or_else(BodyEncoder::new, BodyEncoder::top);
        let mut out = Vec::new();
        for c in chunks {
            let range = c.as_ptr_range();
            let p = e.encode_segments(c, |s| {
                assert!(!s.is_empty(), "empty segment");
                let borrowed = range.contains(&s.as_ptr()) && s.as_ptr_range().end <= range.end;
                let insert = [&b"\r\n"[..], b".", b"\r\n."].contains(&s);
                assert!(borrowed || insert, "segment {s:?} is neither");
                out.extend_from_slice(s);
            });
            if p == BodyProgress::Done {
                break;
            }
        }
        e.finish_segments(|s| out.extend_from_slice(s));
        out
    }

    /// What a whole-message encoding must be: line ends normalised, every
    /// line starting with `.` stuffed, then the terminator.
    fn naive(body: &[u8]) -> Vec<u8> {
        let mut want = Vec::new();
        let mut at_start = true;
        for &b in normalize_crlf(body).iter() {
            if at_start && b == b'.' {
                want.push(b'.');
            }
            want.push(b);
            at_start = b == b'\n';
        }
        want.extend_from_slice(TERMINATOR);
        want
    }

    #[test]
    fn segments_edge_cases() {
        let cases: [&[&[u8]]; 10] = [
            &[],
            &[b"."],
            &[b"a\r", b"\n", b".", b"b"],
            &[b"a\n", b".\n"],
            &[b"\n\n"],
            &[b"a\r"],
            &[b"x\r\n.\r\n"],
            &[b"a\n.", b".b\r", b"\n.\n"],
            &[b"", b"\n", b"", b"."],
            &[b"\r", b"\r\n", b"\n", b".\r\n", b"."],
        ];
        for chunks in cases {
            let want = reference::encode(chunks);
            assert_eq!(encode_all(chunks), want, "{chunks:?}");
            assert_eq!(encode_segments_all(chunks, None), want, "{chunks:?}");
        }
        // A clean chunk is one borrowed segment.
        let mut e = BodyEncoder::new();
        let body = b"Subject: x\r\n\r\nbody\r\n".repeat(20);
        let mut segs = Vec::new();
        e.encode_segments(&body, |s| segs.push(s));
        assert_eq!(segs, [&body[..]]);
    }

    /// Every sequence of up to `max_len` of the octets that matter to the
    /// encoder (`a . CR LF`), the empty one included.
    fn patterns(max_len: u32) -> Vec<Vec<u8>> {
        let alphabet = [b'a', b'.', b'\r', b'\n'];
        let mut patterns: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=max_len {
            for mut n in 0..4usize.pow(len) {
                let mut p = Vec::new();
                for _ in 0..len {
                    p.push(alphabet[n % 4]);
                    n /= 4;
                }
                patterns.push(p);
            }
        }
        patterns
    }

    /// Every short pattern of the octets that matter, at every position
    /// around the block boundaries of a CRLF-clean message, whole
    /// and split at every point near the pattern, through both APIs,
    /// against the naive definition and the previous encoder.
    #[test]
    fn patterns_at_block_boundaries_and_chunk_splits() {
        let patterns = patterns(4);
        let filler = b"0123456789abcdefghijklmnopqrstuvwxyz.ABC\r\n".repeat(8);
        let b = SCAN_BLOCK;
        let places = [
            0,
            1,
            2,
            40,
            41,
            42,
            62,
            63,
            64,
            65,
            66,
            b - 1,
            b,
            b + 1,
            b + 2,
        ];
        for p in &patterns {
            for at in places
                .into_iter()
                .chain([2 * b - 1, 2 * b, 2 * b + 1, 2 * b + 2])
            {
                let mut body = filler.clone();
                body.splice(at..at, p.iter().copied());
                let want = naive(&body);
                assert_eq!(encode_all(&[&body]), want, "{p:?} at {at}");
                for cut in at.saturating_sub(1)..=(at + p.len() + 1).min(body.len()) {
                    let (a, b) = body.split_at(cut);
                    let got = encode_all(&[a, b]);
                    assert_eq!(got, want, "{p:?} at {at} cut {cut}");
                    assert_eq!(encode_segments_all(&[a, b], None), want);
                    assert_eq!(reference::encode(&[a, b]), want);
                }
            }
        }
    }
    fn chunked<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut v = Vec::new();
        let mut rest = body;
        for &c in cuts {
            let (a, b) = rest.split_at(c.min(rest.len()));
            v.push(a);
            rest = b;
        }
        v.push(rest);
        v
    }

    /// Bodies mixing long clean CRLF stretches (so that block mode runs)
    /// with bare LFs, lone CRs and dot lines.
    fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            4 => (1usize..150).prop_map(|n| {
                let mut v = b"x".repeat(n);
                v.extend_from_slice(b"\r\n");
                v
            }),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b".".to_vec()),
            1 => Just(b"\n.".to_vec()),
            1 => Just(b"\r\n.".to_vec()),
            1 => (1usize..100).prop_map(|n| b"y".repeat(n)),
        ];
        prop_oneof![
            proptest::collection::vec(token, 0..40).prop_map(|t| t.concat()),
            proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')],
                0..300
            ),
        ]
    }

    /// Bare-LF text with every pattern of up to two of the octets that matter
    /// at every position across the first blocks of line mode (which with
    /// AVX-512 runs 64-octet blocks in pairs from the end of the first
    /// 128-octet scan block), and every pattern of three at every third
    /// position, over fillers whose blocks hold one line end, several, or
    /// dot lines: both APIs, whole and split at the pattern, against the
    /// naive definition.
    #[test]
    fn bare_lf_patterns_across_line_mode_blocks() {
        let patterns = patterns(3);
        let mut long = b"x".repeat(69);
        long.push(b'\n');
        let fillers = [
            long.repeat(8),
            b"short\n".repeat(80),
            b".dot\nline\n\n".repeat(45),
        ];
        Simd::each_level(|level| {
            for filler in &fillers {
                for p in &patterns {
                    // Three-octet patterns at every third position (3 is prime
                    // to the fillers' periods, so they meet every offset in a line).
                    for at in (120..420).step_by(if p.len() == 3 { 3 } else { 1 }) {
                        let mut body = filler.clone();
                        body.splice(at..at, p.iter().copied());
                        let want = naive(&body);
                        let m = format!("{level}: {p:?} at {at}");
                        assert_eq!(encode_all(&[&body]), want, "{m}");
                        assert_eq!(encode_segments_all(&[&body], None), want, "{m}");
                        let (a, b) = body.split_at(at);
                        assert_eq!(encode_all(&[a, b]), want, "{m} split");
                        assert_eq!(encode_segments_all(&[a, b], None), want, "{m} split");
                    }
                }
            }
        });
    }

    /// The edges of the block line mode, each placed by construction (line
    /// mode starts at octet 129, after the first scan block, and takes
    /// 64-octet blocks, in pairs on AVX-512's copy path): that copy loop
    /// leaving for block mode after four blocks of clean CRLF lines (eight
    /// of them) with a `.` to stuff right after them; a lone bare LF in the
    /// last lane of a block (a pair's first) with a stuffed `.` in the first
    /// lane of the next; a lone insert in the first lane of the first block;
    /// a clean block and a LF in the last lane of the next, its `.` carried
    /// into the block (or pair) after. Both APIs, whole and split at every point near the edge,
    /// at every instruction level the CPU has.
    #[test]
    fn bare_lf_block_edges() {
        let mut line = b"x".repeat(69);
        line.push(b'\n');
        let tail = line.repeat(4);
        // `a\n` (the bare LF that starts line mode), `x`s up to the edge,
        // what is placed there, then ordinary lines.
        let case = |xs: usize, at_edge: &[u8]| {
            [
                b"a\n",
                &b"x".repeat(xs)[..],
                at_edge,
                &b"e".repeat(100),
                b"\n",
                &tail,
            ]
            .concat()
        };
        let clean = [
            &b"\r\n"[..],
            &[&b"y".repeat(30)[..], b"\r\n"].concat().repeat(8),
            b".dot\r\n",
        ]
        .concat();
        let two = [&b"\n"[..], &b"x".repeat(103), b"\n"].concat();
        let cases = [
            (case(125, &clean), 385),
            (case(190, b"\n."), 192),
            (case(127, b"\n"), 129),
            (case(254, b"\n."), 256),
            (case(150, &two), 256),
        ];
        Simd::each_level(|level| {
            for (body, edge) in &cases {
                let want = naive(body);
                assert_eq!(encode_all(&[body]), want, "{level}: edge {edge}");
                assert_eq!(
                    encode_segments_all(&[body], None),
                    want,
                    "{level}: edge {edge}"
                );
                for cut in edge - 3..=edge + 3 {
                    let (a, b) = body.split_at(cut);
                    let m = format!("{level}: edge {edge} cut {cut}");
                    assert_eq!(encode_all(&[a, b]), want, "{m}");
                    assert_eq!(encode_segments_all(&[a, b], None), want, "{m}");
                }
            }
        });
    }

    /// Bare-LF lines longer than four blocks, with dot lines among them:
    /// the output of both APIs, whole and in chunks, at every instruction
    /// level the CPU has. (That AVX-512's copy loop does not count their
    /// LF-free blocks as clean ones is a matter of speed, measured in the
    /// README, not of output.)
    #[test]
    fn bare_lf_lines_longer_than_four_blocks() {
        let mut body = b"Subject: long lines\n\n".to_vec();
        for (k, len) in (260..=700).step_by(37).enumerate() {
            if k % 3 == 1 {
                body.push(b'.');
            }
            body.extend(core::iter::repeat_n(b'a' + (k % 26) as u8, len));
            body.push(b'\n');
        }
        let want = naive(&body);
        Simd::each_level(|level| {
            assert_eq!(encode_all(&[&body]), want, "{level}");
            assert_eq!(encode_segments_all(&[&body], None), want, "{level}");
            for cut in (0..body.len()).step_by(97) {
                let (a, b) = body.split_at(cut);
                assert_eq!(encode_all(&[a, b]), want, "{level} cut {cut}");
                assert_eq!(
                    encode_segments_all(&[a, b], None),
                    want,
                    "{level} cut {cut}"
                );
            }
        });
    }

    /// Where the CPU has the block path, a bare-LF message runs through it,
    /// and only there: its segments show it, since the block path hands out
    /// the CRLF of a bare LF and the stuffed `.` after it as two inserts,
    /// where the line-by-line path hands out one (`"\r\n."`).
    #[test]
    fn bare_lf_message_takes_the_block_path_where_available() {
        let mut body = b"Subject: x\n\n".to_vec();
        for k in 0..40 {
            body.extend_from_slice(if k % 5 == 3 {
                b".dotted line\n"
            } else {
                b"a line of text that is long enough\n"
            });
        }
        let mut segs: Vec<&[u8]> = Vec::new();
        let mut e = BodyEncoder::new();
        e.encode_segments(&body, |s| segs.push(s));
        e.finish_segments(|s| segs.push(s));
        let joined = segs
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect::<Vec<u8>>();
        assert_eq!(joined, naive(&body));
        // (The first dot line falls in the scan block that starts line mode,
        // which hands out `"\r\n."` either way.)
        let split = segs.windows(2).any(|w| w[0] == b"\r\n" && w[1] == b".");
        assert_eq!(split, Simd::blocks_available(), "{segs:?}");
    }

    /// Bodies made mostly of bare-LF lines, with dot lines, blank lines,
    /// lone CRs and CRLF stretches (so that line mode starts, runs, stops
    /// and starts again).
    fn bare_lf_body_strategy() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            6 => (0usize..150).prop_map(|n| {
                let mut v = b"x".repeat(n);
                v.push(b'\n');
                v
            }),
            1 => (0usize..80).prop_map(|n| {
                let mut v = b".".to_vec();
                v.extend_from_slice(&b"d".repeat(n));
                v.push(b'\n');
                v
            }),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b".".to_vec()),
            1 => (1usize..5).prop_map(|n| b"crlf line\r\n".repeat(n)),
        ];
        proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
    }

    proptest::proptest! {
        /// The segment API and the copying API give the previous encoder's
        /// output, byte for byte, for any input and any (different)
        /// chunkings.
        #[test]
        fn new_encoders_match_previous_encoder(
            body in body_strategy(),
            cuts_a in proptest::collection::vec(0usize..200, 0..8),
            cuts_b in proptest::collection::vec(0usize..200, 0..8),
            cuts_c in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let want = reference::encode(&[&body]);
            proptest::prop_assert_eq!(&want, &naive(&body));
            proptest::prop_assert_eq!(&encode_all(&chunked(&body, &cuts_a)), &want);
            proptest::prop_assert_eq!(&encode_segments_all(&chunked(&body, &cuts_b), None), &want);
            proptest::prop_assert_eq!(&reference::encode(&chunked(&body, &cuts_c)), &want);
        }
        /// Bare-LF bodies through both APIs equal the naive definition and
        /// the previous encoder, for any chunking.
        #[test]
        fn bare_lf_bodies_match_naive(
            body in bare_lf_body_strategy(),
            cuts_a in proptest::collection::vec(0usize..700, 0..6),
            cuts_b in proptest::collection::vec(0usize..700, 0..6),
        ) {
            let want = naive(&body);
            proptest::prop_assert_eq!(&reference::encode(&[&body]), &want);
            let mut levels = Vec::new();
            Simd::each_level(|level| {
                let copied = encode_all(&chunked(&body, &cuts_a));
                let segments = encode_segments_all(&chunked(&body, &cuts_b), None);
                levels.push((level, copied, segments));
            });
            for (level, copied, segments) in levels {
                proptest::prop_assert_eq!(&copied, &want, "{}", level);
                proptest::prop_assert_eq!(&segments, &want, "{}", level);
            }
        }
        /// TOP gives the same output through both APIs, for any chunking.
        #[test]
        fn top_segments_match_copy(
            body in body_strategy(),
            lines in 0u32..6,
            cuts_a in proptest::collection::vec(0usize..200, 0..8),
            cuts_b in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let whole = {
                let mut e = BodyEncoder::top(lines);
                let mut out = Vec::new();
                e.encode_chunk(&body, &mut out);
                e.finish(&mut out);
                out
            };
            let mut e = BodyEncoder::top(lines);
            let mut out = Vec::new();
            for c in chunked(&body, &cuts_a) {
                if e.encode_chunk(c, &mut out) == BodyProgress::Done {
                    break;
                }
            }
            e.finish(&mut out);
            proptest::prop_assert_eq!(&out, &whole);
            proptest::prop_assert_eq!(&encode_segments_all(&chunked(&body, &cuts_b), Some(lines)), &whole);
        }
    }

    /// The body encoder as it was before the segment API and the faster
    /// scan (verbatim, whole-message mode): the oracle that the new code
    /// must match byte for byte.
    mod reference {
        use alloc::vec::Vec;

        pub(super) struct OldEncoder {
            pub(super) line_start: bool,
            pub(super) prev_cr: bool,
        }

        impl OldEncoder {
            pub(super) fn emit(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
                let Some(&last) = chunk.last() else {
                    return;
                };
                out.reserve(chunk.len() + 16);
                if self.line_start && chunk.first() == Some(&b'.') {
                    out.push(b'.');
                }
                let prev_cr = self.prev_cr;
                let mut run = 0;
                // Handles the LF at `nl`: inserts a CR before a bare LF and a dot
                // before a following `.`.
                // Returns whether anything had to be inserted.
                let handle = |nl: usize, run: &mut usize, out: &mut Vec<u8>| -> bool {
                    let mut worked = false;
                    let cr_before = if nl == 0 {
                        prev_cr
                    } else {
                        chunk.get(nl - 1) == Some(&b'\r')
                    };
                    if !cr_before {
                        out.extend_from_slice(chunk.get(*run..nl).unwrap_or_default());
                        out.extend_from_slice(b"\r\n");
                        *run = nl + 1;
                        worked = true;
                    }
                    if chunk.get(nl + 1) == Some(&b'.') {
                        out.extend_from_slice(chunk.get(*run..=nl).unwrap_or_default());
                        out.push(b'.');
                        *run = nl + 1;
                        worked = true;
                    }
                    worked
                };
                if chunk.first() == Some(&b'\n') {
                    handle(0, &mut run, out);
                }
                // Two modes. Block mode skips blocks [pos, pos + SCAN_BLOCK) (with
                // one octet of context on each side) that need no work. At a block
                // that does, line mode walks line ends one by one until
                // `CLEAN_STREAK` lines in a row needed nothing (a bare-LF message
                // stays in line mode; a CRLF message returns to block mode).
                let mut pos = 1;
                'outer: loop {
                    while let Some(window) = chunk
                        .get(pos - 1..pos + SCAN_BLOCK + 1)
                        .and_then(|w| <&[u8; SCAN_BLOCK + 2]>::try_from(w).ok())
                    {
                        if block_needs_work(window) {
                            let mut streak = 0;
                            let rest = chunk.get(pos..).unwrap_or_default();
                            for rel in memchr::memchr_iter(b'\n', rest) {
                                let nl = pos + rel;
                                if handle(nl, &mut run, out) {
                                    streak = 0;
                                } else {
                                    streak += 1;
                                    if streak >= CLEAN_STREAK {
                                        pos = nl + 1;
                                        continue 'outer;
                                    }
                                }
                            }
                            // Every remaining line end has been handled.
                            pos = chunk.len();
                            break 'outer;
                        }
                        pos += SCAN_BLOCK;
                    }
                    break;
                }
                let tail = chunk.get(pos..).unwrap_or_default();
                for nl in memchr::memchr_iter(b'\n', tail) {
                    handle(pos + nl, &mut run, out);
                }
                out.extend_from_slice(chunk.get(run..).unwrap_or_default());
                self.line_start = last == b'\n';
                self.prev_cr = last == b'\r';
            }
        }

        const SCAN_BLOCK: usize = 128;
        const CLEAN_STREAK: u32 = 4;

        /// Whether the middle [`SCAN_BLOCK`] octets of `w` hold a LF that is not
        /// preceded by CR or that is followed by `.` (`w[0]` and the last octet are
        /// context). Written without branches so that it compiles to SIMD compares.
        #[inline]
        fn block_needs_work(w: &[u8; SCAN_BLOCK + 2]) -> bool {
            let mut acc = 0u8;
            for i in 0..SCAN_BLOCK {
                let lf = u8::from(w[i + 1] == b'\n');
                let no_cr = u8::from(w[i] != b'\r');
                let dot = u8::from(w[i + 2] == b'.');
                acc |= lf & (no_cr | dot);
            }
            acc != 0
        }

        /// Encodes a whole message in the given chunks, terminator included.
        pub(super) fn encode(chunks: &[&[u8]]) -> Vec<u8> {
            let mut e = OldEncoder {
                line_start: true,
                prev_cr: false,
            };
            let mut out = Vec::new();
            for c in chunks {
                e.emit(c, &mut out);
            }
            if !e.line_start {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
            out
        }
    }
}
