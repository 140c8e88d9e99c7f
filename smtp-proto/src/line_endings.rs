//! Line-ending normalization of message content: every bare CR and every bare LF
//! becomes CRLF, streaming, chunk by chunk.
//!
//! RFC 5321 section 2.3.8 allows CR and LF in mail only as the pair CRLF. A bare CR or
//! bare LF that a server stores or relays unchanged is read differently by the next
//! hop, which is what SMTP smuggling exploits (`line1\r.\r\nMAIL FROM:…` ends the data
//! at a receiver that takes a bare CR as a line end). The DATA receiver
//! ([`crate::data::DataReceiver`]) already applies the bare-LF policy to the
//! end-of-data search; [`LineEndings`] gives the same treatment to the content itself,
//! for DATA and for BDAT chunks alike (BDAT content is not dot-stuffed, so it reaches the
//! server unchanged), so that what is stored or relayed holds only CRLF line ends.
//!
//! The normalizer is zero-copy: it hands the caller runs of the input and the two
//! octets `\r\n` where a line end is rewritten. A CR at the end of a chunk is held until
//! the next one shows whether an LF follows.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::line_endings::LineEndings;
//!
//! let mut norm = LineEndings::new();
//! let mut out = Vec::new();
//! let mut sink = |run: &[u8]| -> Result<(), std::convert::Infallible> {
//!     out.extend_from_slice(run);
//!     Ok(())
//! };
//! norm.feed(b"line1\r.\r\nMAIL FROM:<x>\r", &mut sink)?;
//! norm.feed(b"\nbare\nend", &mut sink)?;
//! norm.finish(&mut sink)?;
//! assert_eq!(out, b"line1\r\n.\r\nMAIL FROM:<x>\r\nbare\r\nend");
//! assert_eq!(norm.bare_line_ends(), 2);
//! # Ok::<(), std::convert::Infallible>(())
//! ```

/// The line end every bare CR and bare LF becomes.
const CRLF: &[u8] = b"\r\n";

/// A streaming normalizer of line ends (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineEndings {
    /// The previous chunk ended with a CR that is not yet emitted.
    pending_cr: bool,
    /// Bare CRs and bare LFs seen so far.
    bare: u64,
}

impl LineEndings {
    /// A normalizer at the start of a message.
    pub fn new() -> Self {
        LineEndings::default()
    }

    /// How many bare CRs and bare LFs were rewritten so far (a policy that refuses
    /// such messages checks it after [`LineEndings::finish`]).
    pub fn bare_line_ends(&self) -> u64 {
        self.bare
    }

    /// Normalizes the next chunk of content, handing `emit` the output in order: runs
    /// of `input` and `\r\n` for each bare line end. A final CR is held back until the
    /// next call or [`LineEndings::finish`].
    ///
    /// # Errors
    ///
    /// The first error `emit` returns; the normalizer is then in an unspecified state
    /// for this message.
    pub fn feed<E>(
        &mut self,
        input: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        if self.pending_cr {
            self.pending_cr = false;
            match input.first() {
                None => {
                    self.pending_cr = true;
                    return Ok(());
                }
                Some(b'\n') => {
                    emit(CRLF)?;
                    start = 1;
                }
                Some(_) => {
                    self.bare += 1;
                    emit(CRLF)?;
                }
            }
        }
        let mut at = start;
        while let Some(found) = input
            .get(at..)
            .and_then(|rest| memchr::memchr2(b'\r', b'\n', rest))
        {
            let i = at + found;
            if input.get(i) == Some(&b'\r') {
                match input.get(i + 1) {
                    // A proper CRLF: keep it in the run.
                    Some(b'\n') => {
                        at = i + 2;
                        continue;
                    }
                    // Bare CR: the run up to it, then CRLF.
                    Some(_) => {
                        emit_run(input, start, i, &mut emit)?;
                        emit(CRLF)?;
                        self.bare += 1;
                        start = i + 1;
                        at = start;
                    }
                    // CR at the end of the chunk: hold it.
                    None => {
                        emit_run(input, start, i, &mut emit)?;
                        self.pending_cr = true;
                        return Ok(());
                    }
                }
            } else {
                // Bare LF (an LF after a CR was consumed with it above).
                emit_run(input, start, i, &mut emit)?;
                emit(CRLF)?;
                self.bare += 1;
                start = i + 1;
                at = start;
            }
        }
        emit_run(input, start, input.len(), &mut emit)
    }

    /// Ends the message: a CR held back from the last chunk is a bare CR and becomes
    /// CRLF. The normalizer is then ready for the next message (its count kept until
    /// [`LineEndings::reset`]).
    ///
    /// # Errors
    ///
    /// The error `emit` returns.
    pub fn finish<E>(&mut self, mut emit: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if core::mem::take(&mut self.pending_cr) {
            self.bare += 1;
            emit(CRLF)?;
        }
        Ok(())
    }

    /// Forgets everything: a new message starts.
    pub fn reset(&mut self) {
        *self = LineEndings::default();
    }
}

fn emit_run<E>(
    input: &[u8],
    from: usize,
    to: usize,
    emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    match input.get(from..to) {
        Some(run) if !run.is_empty() => emit(run),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use proptest::prelude::*;

    fn normalize_chunks(chunks: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut n = LineEndings::new();
        let mut out = Vec::new();
        for c in chunks {
            n.feed(c, |r| {
                out.extend_from_slice(r);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        n.finish(|r| {
            out.extend_from_slice(r);
            Ok::<(), ()>(())
        })
        .unwrap();
        (out, n.bare_line_ends())
    }

    /// The reference: one pass over the whole input.
    fn reference(input: &[u8]) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut bare = 0;
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match (b, input.get(i + 1)) {
                (b'\r', Some(b'\n')) => {
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                (b'\r' | b'\n', _) => {
                    out.extend_from_slice(b"\r\n");
                    bare += 1;
                }
                _ => out.push(b),
            }
            i += 1;
        }
        (out, bare)
    }

    #[test]
    fn smuggling_forms_are_normalized() {
        let (out, bare) = normalize_chunks(&[b"a\r.\r\nMAIL FROM:<x>\r\n"]);
        assert_eq!(out, b"a\r\n.\r\nMAIL FROM:<x>\r\n");
        assert_eq!(bare, 1);
        let (out, bare) = normalize_chunks(&[b"a\n.\nb\r\n"]);
        assert_eq!(out, b"a\r\n.\r\nb\r\n");
        assert_eq!(bare, 2);
        // A bare LF, then a bare CR.
        let (out, bare) = normalize_chunks(&[b"a\n\r.\r\n"]);
        assert_eq!(out, b"a\r\n\r\n.\r\n");
        assert_eq!(bare, 2);
    }

    #[test]
    fn clean_content_is_passed_through_in_one_run() {
        let mut runs = 0;
        let mut n = LineEndings::new();
        n.feed(b"Subject: x\r\n\r\nbody\r\n", |_| {
            runs += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(runs, 1);
        assert_eq!(n.bare_line_ends(), 0);
    }

    #[test]
    fn a_cr_split_from_its_lf_is_one_line_end() {
        assert_eq!(normalize_chunks(&[b"a\r", b"\nb"]), (b"a\r\nb".to_vec(), 0));
        assert_eq!(
            normalize_chunks(&[b"a\r", b"", b"\nb"]),
            (b"a\r\nb".to_vec(), 0)
        );
        assert_eq!(normalize_chunks(&[b"a\r", b"b"]), (b"a\r\nb".to_vec(), 1));
        assert_eq!(normalize_chunks(&[b"a\r"]), (b"a\r\n".to_vec(), 1));
    }

    #[test]
    fn sink_errors_stop_the_feed() {
        let mut n = LineEndings::new();
        assert_eq!(n.feed(b"a\nb", |_| Err("full")), Err("full"));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_reference_output(
            input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&input[last..c]);
                last = c;
            }
            chunks.push(&input[last..]);
            let (out, bare) = normalize_chunks(&chunks);
            prop_assert_eq!((out.clone(), bare), reference(&input));
            // Only CRLF line ends remain.
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' {
                    prop_assert_eq!(out.get(i + 1), Some(&b'\n'));
                }
                if b == b'\n' {
                    prop_assert!(i > 0 && out[i - 1] == b'\r');
                }
            }
        }
    }
}
