//! Where the body encoder's output goes: runs borrowed from the input and
//! short inserts, appended to a `Vec` ([`VecSink`]) or handed to a closure
//! ([`FnSink`]).

use alloc::vec::Vec;

/// An octet sequence the encoder adds to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Insert {
    /// Replaces a bare LF.
    Crlf,
    /// Stuffed before a line's leading `.`.
    Dot,
    /// Replaces a bare LF followed by a `.`.
    CrlfDot,
    /// Ends the body (`.CRLF`, the crate's `TERMINATOR`).
    Terminator,
}

impl Insert {
    /// The octets of the insert.
    pub(super) fn bytes(self) -> &'static [u8] {
        match self {
            Insert::Crlf => b"\r\n",
            Insert::Dot => b".",
            Insert::CrlfDot => b"\r\n.",
            Insert::Terminator => b".\r\n",
        }
    }
}

/// Where the encoder's output goes: runs borrowed from the input, and inserts.
pub(super) trait Sink<'a> {
    /// Appends a run of the input (possibly empty).
    fn run(&mut self, run: &'a [u8]);
    /// Appends an insert.
    fn insert(&mut self, ins: Insert);
    /// The output `Vec` when the sink copies into one, so that the encoder
    /// can write whole blocks into it; `None` for a segment sink.
    fn vec(&mut self) -> Option<&mut Vec<u8>>;
}

/// Appends to a `Vec`; inserts are written with constant lengths, so no
/// `memcpy` call.
pub(super) struct VecSink<'o>(pub(super) &'o mut Vec<u8>);

impl<'a> Sink<'a> for VecSink<'_> {
    #[inline]
    fn run(&mut self, run: &'a [u8]) {
        self.0.extend_from_slice(run);
    }

    #[inline]
    fn insert(&mut self, ins: Insert) {
        match ins {
            Insert::Crlf => self.0.extend_from_slice(b"\r\n"),
            Insert::Dot => self.0.push(b'.'),
            Insert::CrlfDot => self.0.extend_from_slice(b"\r\n."),
            Insert::Terminator => self.0.extend_from_slice(b".\r\n"),
        }
    }

    #[inline]
    fn vec(&mut self) -> Option<&mut Vec<u8>> {
        Some(self.0)
    }
}

/// Hands every non-empty segment to a closure.
pub(super) struct FnSink<F>(pub(super) F);

impl<'a, F: FnMut(&'a [u8])> Sink<'a> for FnSink<F> {
    #[inline]
    fn run(&mut self, run: &'a [u8]) {
        if !run.is_empty() {
            (self.0)(run);
        }
    }

    #[inline]
    fn insert(&mut self, ins: Insert) {
        (self.0)(ins.bytes());
    }

    #[inline]
    fn vec(&mut self) -> Option<&mut Vec<u8>> {
        None
    }
}
