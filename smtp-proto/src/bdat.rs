//! BDAT chunk receiver (RFC 3030): exactly `size` octets, no dot-stuffing.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::bdat::{BdatReceiver, BdatStep};
//!
//! let mut rx = BdatReceiver::new(5, true);
//! let (used, step) = rx.step(b"helloQUIT\r\n");
//! assert_eq!((used, step), (5, BdatStep::Body(&b"hello"[..])));
//! assert_eq!(rx.step(b"QUIT\r\n"), (0, BdatStep::ChunkEnd { last: true }));
//! ```

/// One step of a [`BdatReceiver`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum BdatStep<'a> {
    /// Chunk octets (a slice of the input).
    Body(&'a [u8]),
    /// The input is used up; feed more.
    NeedMore,
    /// The chunk is complete; `last` = it was `BDAT n LAST`.
    ChunkEnd {
        /// Whether this was the last chunk.
        last: bool,
    },
}

/// Receives one BDAT chunk (also the discard variant: [`BdatReceiver::discard`]).
#[derive(Debug, Clone)]
pub struct BdatReceiver {
    remaining: u64,
    last: bool,
    discard: bool,
}

impl BdatReceiver {
    /// A receiver for a chunk of `size` octets.
    pub fn new(size: u64, last: bool) -> Self {
        BdatReceiver {
            remaining: size,
            last,
            discard: false,
        }
    }

    /// A receiver that consumes `size` octets and reports no body (a refused chunk must
    /// still be read, RFC 3030 section 2).
    pub fn discard(size: u64, last: bool) -> Self {
        BdatReceiver {
            remaining: size,
            last,
            discard: true,
        }
    }

    /// Octets still expected.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Processes input; returns the octets used and what happened.
    pub fn step<'a>(&mut self, input: &'a [u8]) -> (usize, BdatStep<'a>) {
        if self.remaining == 0 {
            return (0, BdatStep::ChunkEnd { last: self.last });
        }
        if input.is_empty() {
            return (0, BdatStep::NeedMore);
        }
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        self.remaining -= n as u64;
        if self.discard {
            if self.remaining == 0 {
                return (n, BdatStep::ChunkEnd { last: self.last });
            }
            return (n, BdatStep::NeedMore);
        }
        (n, BdatStep::Body(&input[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn chunked_input() {
        let mut rx = BdatReceiver::new(4, false);
        assert_eq!(rx.step(b"ab"), (2, BdatStep::Body(&b"ab"[..])));
        assert_eq!(rx.step(b""), (0, BdatStep::NeedMore));
        assert_eq!(rx.step(b"cdef"), (2, BdatStep::Body(&b"cd"[..])));
        assert_eq!(rx.step(b"ef"), (0, BdatStep::ChunkEnd { last: false }));
    }

    #[test]
    fn zero_size_chunk() {
        let mut rx = BdatReceiver::new(0, true);
        assert_eq!(rx.step(b"x"), (0, BdatStep::ChunkEnd { last: true }));
    }

    #[test]
    fn discard() {
        let mut rx = BdatReceiver::discard(3, false);
        assert_eq!(rx.step(b"ab"), (2, BdatStep::NeedMore));
        assert_eq!(rx.step(b"cd"), (1, BdatStep::ChunkEnd { last: false }));
    }
}
