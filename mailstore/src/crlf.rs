//! Line-ending arithmetic and the streaming message reader.
//!
//! Messages are stored with the line endings they arrived with (a Maildir
//! written by an MTA usually holds bare LF). POP3 talks CRLF, so sizes are
//! counted and messages read with every bare LF turned into CRLF.

use std::fmt;
use std::io::{self, BufRead, Read};

/// Counts stored octets and CRLF octets of a message fed in chunks.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::CrlfCounter;
///
/// let mut c = CrlfCounter::new();
/// c.update(b"Subject: hi\n\nbody\r");
/// c.update(b"\nlast line\n");
/// assert_eq!(c.stored(), 29);
/// assert_eq!(c.crlf(), 32); // three bare LFs gain a CR
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrlfCounter {
    stored: u64,
    crlf: u64,
    prev_cr: bool,
    last_lf: bool,
}

impl CrlfCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts for the next chunk of the message.
    pub fn update(&mut self, chunk: &[u8]) {
        let len = chunk.len() as u64;
        self.stored += len;
        self.crlf += len;
        let mut prev_cr = self.prev_cr;
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', chunk) {
            let before = if i == 0 {
                prev_cr
            } else {
                chunk.get(i - 1) == Some(&b'\r')
            };
            if !before {
                self.crlf += 1;
            }
            start = i + 1;
            prev_cr = false;
        }
        if let Some(&last) = chunk.last() {
            self.last_lf = last == b'\n';
            prev_cr = if start == chunk.len() {
                false
            } else {
                last == b'\r'
            };
        }
        self.prev_cr = prev_cr;
    }

    /// Octets fed so far.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Octets fed so far with every bare LF counted as CRLF (what
    /// [`MessageReader`] yields for the whole message).
    pub fn crlf(&self) -> u64 {
        self.crlf
    }

    /// The size POP3 reports for the message (LIST, STAT; RFC 1939 section
    /// 11): [`CrlfCounter::crlf`] plus the CRLF a server sends after an
    /// unterminated last line, so that it equals the octets a client counts.
    ///
    /// ```
    /// use mailbag_mailstore::CrlfCounter;
    ///
    /// let mut c = CrlfCounter::new();
    /// c.update(b"Subject: hi\n\nno line end");
    /// assert_eq!((c.crlf(), c.pop3_size()), (26, 28));
    /// ```
    pub fn pop3_size(&self) -> u64 {
        pop3_size(self.crlf, self.last_lf)
    }
}

/// The POP3 size of a message of `crlf` octets with CRLF line ends:
/// two more when it has any and its last one is not a LF (the CRLF a server
/// sends after an unterminated last line).
fn pop3_size(crlf: u64, ends_with_lf: bool) -> u64 {
    if crlf == 0 || ends_with_lf {
        crlf
    } else {
        crlf + 2
    }
}

/// Counts a whole message from a reader: its stored size and
/// [`CrlfCounter::pop3_size`].
pub(crate) fn count_reader(mut r: impl Read) -> io::Result<(u64, u64)> {
    let mut c = CrlfCounter::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        c.update(buf.get(..n).unwrap_or_default());
    }
    Ok((c.stored(), c.pop3_size()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Whole,
    Top { body_lines: u64 },
}

/// A message being read: streams the stored octets with bare LF turned into
/// CRLF, the whole message or (for POP3 `TOP`) only the header, the blank line
/// and the first n body lines. Nothing else is changed (no dot-stuffing: that
/// is the POP3 encoder's job), so the octets of a whole read add up to the
/// size in the listing.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use mailbag_mailstore::MessageReader;
///
/// let msg: &[u8] = b"Subject: hi\n\none\ntwo\n";
/// let mut out = Vec::new();
/// MessageReader::whole(msg).read_to_end(&mut out).unwrap();
/// assert_eq!(out, b"Subject: hi\r\n\r\none\r\ntwo\r\n");
///
/// let mut top = Vec::new();
/// MessageReader::top(msg, 1).read_to_end(&mut top).unwrap();
/// assert_eq!(top, b"Subject: hi\r\n\r\none\r\n");
/// ```
pub struct MessageReader {
    inner: Box<dyn BufRead + Send>,
    mode: Mode,
    in_header: bool,
    line_len: u64,
    prev_cr: bool,
    pending_lf: bool,
    done: bool,
    /// Octets yielded so far, and whether the last one was LF.
    yielded: u64,
    last_lf: bool,
    /// Called once with the POP3 size when a whole read reaches the end.
    on_end: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl fmt::Debug for MessageReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReader")
            .field("mode", &self.mode)
            .field("in_header", &self.in_header)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl MessageReader {
    /// Reads the whole message from `inner`.
    pub fn whole(inner: impl BufRead + Send + 'static) -> Self {
        Self::new(Box::new(inner), Mode::Whole)
    }

    /// Reads the header, the blank line after it and `body_lines` lines of the
    /// body (all of a message that has no blank line).
    pub fn top(inner: impl BufRead + Send + 'static, body_lines: u64) -> Self {
        Self::new(Box::new(inner), Mode::Top { body_lines })
    }

    fn new(inner: Box<dyn BufRead + Send>, mode: Mode) -> Self {
        MessageReader {
            inner,
            mode,
            in_header: true,
            line_len: 0,
            prev_cr: false,
            pending_lf: false,
            done: false,
            yielded: 0,
            last_lf: false,
            on_end: None,
        }
    }

    /// Calls `f` once with the message's POP3 size
    /// ([`CrlfCounter::pop3_size`], counted from what the read yields, so
    /// at no extra cost) when a whole read reaches the end of the message;
    /// never for `TOP` or a read that stops early.
    pub(crate) fn on_end(mut self, f: impl FnOnce(u64) + Send + 'static) -> Self {
        if self.mode == Mode::Whole {
            self.on_end = Some(Box::new(f));
        }
        self
    }

    /// Called after a line ending was emitted in full.
    fn end_of_line(&mut self) {
        let blank = self.line_len == 0 || (self.line_len == 1 && self.prev_cr);
        if let Mode::Top { body_lines } = &mut self.mode {
            if self.in_header {
                if blank {
                    self.in_header = false;
                    if *body_lines == 0 {
                        self.done = true;
                    }
                }
            } else {
                *body_lines = body_lines.saturating_sub(1);
                if *body_lines == 0 {
                    self.done = true;
                }
            }
        } else if blank {
            self.in_header = false;
        }
        self.line_len = 0;
        self.prev_cr = false;
    }
}

impl Read for MessageReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pending_lf {
                if let Some(slot) = out.get_mut(n) {
                    *slot = b'\n';
                }
                n += 1;
                self.pending_lf = false;
                self.end_of_line();
                continue;
            }
            if self.done {
                break;
            }
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if n > 0 => {
                    // Report the data we have; the error comes back next call.
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.done = true;
                break;
            }
            let room = out.len() - n;
            if self.mode == Mode::Whole {
                // Whole messages need no line counting: copy the longest
                // run in which every LF already has its CR (all of a CRLF
                // message's buffer) at once.
                let span = chunk.get(..room).unwrap_or(chunk);
                let prev_cr = self.prev_cr;
                let mut clean = span.len();
                for i in memchr::memchr_iter(b'\n', span) {
                    let before = match i.checked_sub(1) {
                        None => prev_cr,
                        Some(j) => span.get(j) == Some(&b'\r'),
                    };
                    if !before {
                        clean = i;
                        break;
                    }
                }
                if clean > 0 {
                    let (Some(src), Some(dst)) = (span.get(..clean), out.get_mut(n..n + clean))
                    else {
                        break;
                    };
                    dst.copy_from_slice(src);
                    self.prev_cr = src.last() == Some(&b'\r');
                    self.inner.consume(clean);
                    n += clean;
                    continue;
                }
            }
            let text_len = memchr::memchr(b'\n', chunk).unwrap_or(chunk.len());
            if text_len > 0 {
                let k = text_len.min(room);
                let (Some(src), Some(dst)) = (chunk.get(..k), out.get_mut(n..n + k)) else {
                    break;
                };
                dst.copy_from_slice(src);
                let last_cr = src.last() == Some(&b'\r');
                self.inner.consume(k);
                n += k;
                self.line_len += k as u64;
                self.prev_cr = last_cr;
                continue;
            }
            // chunk starts with '\n'
            self.inner.consume(1);
            if self.prev_cr {
                if let Some(slot) = out.get_mut(n) {
                    *slot = b'\n';
                }
                n += 1;
                self.end_of_line();
            } else {
                if let Some(slot) = out.get_mut(n) {
                    *slot = b'\r';
                }
                n += 1;
                self.pending_lf = true;
            }
        }
        self.yielded += n as u64;
        if let Some(&last) = out.get(..n).and_then(|o| o.last()) {
            self.last_lf = last == b'\n';
        }
        // Only a whole read has a hook, and it is done only at the end of input.
        if self.done
            && let Some(f) = self.on_end.take()
        {
            f(pop3_size(self.yielded, self.last_lf));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(mut r: MessageReader, buf_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; buf_size];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Reference implementation: naive byte loop.
    fn to_crlf(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = 0u8;
        for &b in msg {
            if b == b'\n' && prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            prev = b;
        }
        out
    }

    /// Reference TOP: split into CRLF lines.
    fn top_ref(msg: &[u8], n: u64) -> Vec<u8> {
        let crlf = to_crlf(msg);
        let mut out = Vec::new();
        let mut in_header = true;
        let mut left = n;
        let mut rest: &[u8] = &crlf;
        if !in_header && left == 0 {
            return out;
        }
        while !rest.is_empty() {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| p + 2)
                .unwrap_or(rest.len());
            let line = &rest[..end];
            out.extend_from_slice(line);
            rest = &rest[end..];
            if !line.ends_with(b"\r\n") {
                break;
            }
            if in_header {
                if line == b"\r\n" {
                    in_header = false;
                    if left == 0 {
                        break;
                    }
                }
            } else {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn converts_bare_lf_only() {
        let msg = b"a\nb\r\nc\rd\n\n";
        let out = read_all(MessageReader::whole(&msg[..]), 1);
        assert_eq!(out, b"a\r\nb\r\nc\rd\r\n\r\n");
    }

    #[test]
    fn top_zero_lines_is_header_and_blank_line() {
        let msg: &[u8] = b"A: 1\r\nB: 2\r\n\r\nbody1\r\nbody2\r\n";
        let out = read_all(MessageReader::top(msg, 0), 7);
        assert_eq!(out, b"A: 1\r\nB: 2\r\n\r\n");
        let out = read_all(MessageReader::top(msg, 5), 7);
        assert_eq!(out, msg);
    }

    #[test]
    fn top_without_blank_line_sends_everything() {
        let msg: &[u8] = b"A: 1\nB: 2";
        assert_eq!(read_all(MessageReader::top(msg, 0), 64), b"A: 1\r\nB: 2");
    }

    #[test]
    fn blank_line_with_lone_cr_counts() {
        // "\r\n" split across chunks by a 1-byte BufReader.
        let msg: &[u8] = b"A: 1\r\n\r\nx\r\ny\r\n";
        let r = std::io::BufReader::with_capacity(1, msg);
        assert_eq!(read_all(MessageReader::top(r, 1), 3), b"A: 1\r\n\r\nx\r\n");
    }

    #[test]
    fn counter_handles_cr_at_chunk_boundary() {
        let mut c = CrlfCounter::new();
        c.update(b"a\r");
        c.update(b"\nb\n");
        assert_eq!((c.stored(), c.crlf()), (5, 6));
        let mut c = CrlfCounter::new();
        c.update(b"\n");
        c.update(b"\n");
        assert_eq!((c.stored(), c.crlf()), (2, 4));
    }

    proptest! {
        #[test]
        fn whole_read_matches_reference_and_counter(
            msg in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()], 0..300),
            cap in 1usize..17, out_size in 1usize..9, split in 0usize..300,
        ) {
            let r = std::io::BufReader::with_capacity(cap, std::io::Cursor::new(msg.clone()));
            let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
            let at_end = std::sync::Arc::clone(&seen);
            let reader = MessageReader::whole(r).on_end(move |size| {
                *at_end.lock().unwrap() = Some(size);
            });
            let out = read_all(reader, out_size);
            prop_assert_eq!(&out, &to_crlf(&msg));
            let mut c = CrlfCounter::new();
            let split = split.min(msg.len());
            c.update(&msg[..split]);
            c.update(&msg[split..]);
            prop_assert_eq!(c.stored(), msg.len() as u64);
            prop_assert_eq!(c.crlf(), out.len() as u64);
            let added = if msg.is_empty() || msg.ends_with(b"\n") { 0 } else { 2 };
            prop_assert_eq!(c.pop3_size(), out.len() as u64 + added);
            // The size a whole read reports at its end is the counter's.
            prop_assert_eq!(*seen.lock().unwrap(), Some(c.pop3_size()));
            prop_assert_eq!(count_reader(&msg[..]).unwrap(), (msg.len() as u64, out.len() as u64 + added));
        }

        #[test]
        fn top_matches_reference(
            msg in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
            n in 0u64..6, cap in 1usize..9, out_size in 1usize..9,
        ) {
            let r = std::io::BufReader::with_capacity(cap, std::io::Cursor::new(msg.clone()));
            let out = read_all(MessageReader::top(r, n), out_size);
            prop_assert_eq!(out, top_ref(&msg, n));
        }
    }
}
