//! Checking a message's POP3 size while it is read: the size a folder scan
//! took from the file name's `,W=` or from the index is believed without
//! reading the file, and another program may have written a wrong `,W=` or
//! changed the file since. A whole read that finds another size records it,
//! and the maildrop's commit writes it into the index, so that from the next
//! session on LIST and STAT give the octets RETR sends (RFC 1939 section 5).

use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

use crate::CrlfCounter;

/// Sizes found by reads that differ from the indexed ones: `(base, size)`.
pub(super) type Corrections = Arc<Mutex<Vec<(String, u64)>>>;

/// A reader of one whole message file that counts its POP3 size and, at the
/// end, records it in `found` when it is not `expected`.
pub(super) struct SizeCheck<R> {
    inner: R,
    counter: CrlfCounter,
    expected: u64,
    base: String,
    found: Corrections,
    done: bool,
}

impl<R: BufRead> SizeCheck<R> {
    /// Checks the read of the message `base`, indexed with size `expected`.
    pub(super) fn new(inner: R, expected: u64, base: String, found: Corrections) -> Self {
        SizeCheck {
            inner,
            counter: CrlfCounter::new(),
            expected,
            base,
            found,
            done: false,
        }
    }

    /// The end of the file was reached: records a differing size once.
    fn end(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let size = self.counter.pop3_size();
        if size != self.expected {
            let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
            found.push((std::mem::take(&mut self.base), size));
        }
    }
}

impl<R: BufRead> Read for SizeCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.end();
        }
        self.counter.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

impl<R: BufRead> BufRead for SizeCheck<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.inner.fill_buf()?.is_empty() {
            self.end();
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            self.counter.update(buf.get(..amt).unwrap_or(buf));
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], expected: u64, by_lines: bool) -> Vec<(String, u64)> {
        let found = Corrections::default();
        let mut r = SizeCheck::new(data, expected, "b".into(), Arc::clone(&found));
        let mut out = Vec::new();
        if by_lines {
            while r.read_until(b'\n', &mut out).unwrap() > 0 {}
        } else {
            r.read_to_end(&mut out).unwrap();
        }
        assert_eq!(out, data);
        found.lock().map(|v| v.clone()).unwrap()
    }

    #[test]
    fn a_read_that_finds_another_size_records_it_once() {
        let msg = b"Subject: x\n\nline\n";
        for by_lines in [false, true] {
            assert!(read_all(msg, 20, by_lines).is_empty());
            assert_eq!(read_all(msg, 19, by_lines), [("b".to_string(), 20)]);
            assert_eq!(read_all(b"no end", 0, by_lines), [("b".to_string(), 8)]);
        }
    }

    #[test]
    fn a_read_stopped_early_records_nothing() {
        let found = Corrections::default();
        let mut r = SizeCheck::new(&b"a\nb\n"[..], 99, "b".into(), Arc::clone(&found));
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).unwrap();
        drop(r);
        assert!(found.lock().unwrap().is_empty());
    }
}
