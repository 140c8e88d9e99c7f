//! The line framer: splits a byte stream into lines with `memchr`, under a
//! length limit, and throws away an over-long line without losing sync.
//! Also the RFC 2449 line-length limits.

use alloc::vec::Vec;

use memchr::memchr;

/// Longest command line a server must accept, CRLF included (RFC 2449 section 4).
pub const MAX_COMMAND_LINE: usize = 255;
/// Longest first line of a response, CRLF included (RFC 2449 section 4).
pub const MAX_RESPONSE_LINE: usize = 512;
/// Default longest SASL continuation line, CRLF included (4 KiB covers
/// PLAIN/LOGIN and most token mechanisms; Dovecot's input buffer is 2 KiB).
pub const DEFAULT_MAX_SASL_LINE: usize = 4096;

/// A line the [`LineFramer`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The line was longer than the limit; it has been thrown away up to and
    /// including its line end.
    #[error("line longer than {max} octets")]
    TooLong {
        /// The limit in force, line end included.
        max: usize,
    },
}

/// Splits a byte stream into lines.
///
/// Lines end with LF; a CR before the LF is removed too (bare LF is accepted
/// from clients, as Dovecot does). A line longer than the limit (line end
/// included) is never buffered whole: the framer drops its bytes as they
/// arrive and reports one [`FrameError::TooLong`] when its end is seen, then
/// continues with the next line.
///
/// Its `Debug` shows how much is buffered, not what: the lines of a POP3
/// session hold passwords (`PASS`, SASL responses).
#[derive(Default, Clone)]
pub struct LineFramer {
    buf: Vec<u8>,
    start: usize,
    discarding: bool,
    too_long_pending: Option<usize>,
    discard_limit: usize,
}

impl core::fmt::Debug for LineFramer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LineFramer")
            .field("buffered_len", &self.buffered_len())
            .field("discarding", &self.discarding)
            .finish_non_exhaustive()
    }
}

impl LineFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        let mut data = data;
        if self.discarding {
            match memchr(b'\n', data) {
                None => return,
                Some(nl) => {
                    self.discarding = false;
                    self.too_long_pending = Some(self.discard_limit);
                    data = data.get(nl + 1..).unwrap_or_default();
                }
            }
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete line (without its line end), an error for a
    /// line that exceeded `max_len` octets (line end included), or `None` when
    /// more input is needed.
    pub fn next_line(&mut self, max_len: usize) -> Option<Result<&[u8], FrameError>> {
        if let Some(max) = self.too_long_pending.take() {
            return Some(Err(FrameError::TooLong { max }));
        }
        let pending = self.buf.get(self.start..).unwrap_or_default();
        match memchr(b'\n', pending) {
            Some(nl) => {
                let begin = self.start;
                self.start += nl + 1;
                if nl + 1 > max_len {
                    return Some(Err(FrameError::TooLong { max: max_len }));
                }
                let mut line = self.buf.get(begin..begin + nl).unwrap_or_default();
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                Some(Ok(line))
            }
            None => {
                if pending.len() >= max_len {
                    // No line end within the limit: drop what we hold and
                    // skip input up to the next LF.
                    self.buf.clear();
                    self.start = 0;
                    self.discarding = true;
                    self.discard_limit = max_len;
                }
                None
            }
        }
    }

    /// Throws away everything buffered (used after STLS so that no plaintext
    /// injected before the TLS handshake is ever read).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.discarding = false;
        self.too_long_pending = None;
    }

    /// The buffered octets not yet returned as lines, for a reader that
    /// switches from lines to a raw multi-line body (a client after the `+OK`
    /// of RETR hands them to a body decoder, then calls [`LineFramer::consume`]).
    ///
    /// ```
    /// use mailbag_pop3_proto::codec::{LineFramer, MAX_RESPONSE_LINE};
    ///
    /// let mut f = LineFramer::new();
    /// f.push(b"+OK 5 octets\r\nHello\r\n.\r\n+OK");
    /// assert_eq!(f.next_line(MAX_RESPONSE_LINE), Some(Ok(&b"+OK 5 octets"[..])));
    /// assert_eq!(f.pending(), b"Hello\r\n.\r\n+OK");
    /// f.consume(10);
    /// assert_eq!(f.next_line(MAX_RESPONSE_LINE), None);
    /// assert_eq!(f.pending(), b"+OK");
    /// ```
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Drops the first `n` pending octets (at most all of them) after they
    /// were read raw through [`LineFramer::pending`].
    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.buf.len());
    }

    /// Number of buffered octets not yet returned as lines.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether a complete line (or a pending error) is waiting.
    pub fn has_line(&self) -> bool {
        self.too_long_pending.is_some()
            || memchr(b'\n', self.buf.get(self.start..).unwrap_or_default()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn framer_limits_and_resync() {
        let mut f = LineFramer::new();
        let long = vec![b'a'; 300];
        f.push(b"NOOP\r\n");
        f.push(&long);
        f.push(&long);
        assert_eq!(f.next_line(255), Some(Ok(&b"NOOP"[..])));
        assert_eq!(f.next_line(255), None);
        assert!(f.buffered_len() < 255);
        f.push(b"aaa\r\nSTAT\r\n");
        assert_eq!(
            f.next_line(255),
            Some(Err(FrameError::TooLong { max: 255 }))
        );
        assert_eq!(f.next_line(255), Some(Ok(&b"STAT"[..])));
        assert_eq!(f.next_line(255), None);
        // Exactly 255 octets with CRLF is accepted, 256 is not.
        let mut ok = vec![b'x'; 253];
        ok.extend_from_slice(b"\r\n");
        f.push(&ok);
        assert_eq!(f.next_line(255).map(|r| r.map(<[u8]>::len)), Some(Ok(253)));
        let mut bad = vec![b'x'; 254];
        bad.extend_from_slice(b"\r\n");
        f.push(&bad);
        assert_eq!(
            f.next_line(255),
            Some(Err(FrameError::TooLong { max: 255 }))
        );
        f.push(b"bare lf\n");
        assert_eq!(f.next_line(255), Some(Ok(&b"bare lf"[..])));
    }

    #[test]
    fn framer_clear_drops_everything() {
        let mut f = LineFramer::new();
        f.push(b"CAPA\r\nUSER x\r\n");
        assert!(f.has_line());
        f.clear();
        assert_eq!(f.next_line(255), None);
        assert_eq!(f.buffered_len(), 0);
    }
}
