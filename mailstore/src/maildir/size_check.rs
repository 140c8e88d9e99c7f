//! Checking a message's POP3 size while it is read: the size a folder scan
//! took from the file name's `,W=` or from the index is believed without
//! reading the file, and another program may have written a wrong `,W=` or
//! changed the file since. A whole read that finds another size records it
//! (the reader counts what it yields, [`crate::MessageReader`]), and the
//! maildrop's commit writes it into the index, so that from the next session
//! on LIST and STAT give the octets RETR sends (RFC 1939 section 5).

use std::sync::{Arc, Mutex};

/// Sizes found by reads that differ from the indexed ones: `(base, size)`.
pub(super) type Corrections = Arc<Mutex<Vec<(String, u64)>>>;

/// What a whole read of the message `base`, indexed with size `expected`,
/// calls at its end: records the size it found in `found` when it differs.
pub(super) fn check(expected: u64, base: String, found: Corrections) -> impl FnOnce(u64) + Send {
    move |size| {
        if size != expected {
            let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
            found.push((base, size));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::MessageReader;

    /// What a whole read of `data`, indexed at `expected`, records.
    fn read_all(data: &'static [u8], expected: u64, buf: usize) -> Vec<(String, u64)> {
        let found = Corrections::default();
        let mut r =
            MessageReader::whole(data).on_end(check(expected, "b".into(), Arc::clone(&found)));
        let mut chunk = vec![0u8; buf];
        while r.read(&mut chunk).unwrap() > 0 {}
        found.lock().map(|v| v.clone()).unwrap()
    }

    #[test]
    fn a_read_that_finds_another_size_records_it_once() {
        let msg = b"Subject: x\n\nline\n";
        for buf in [1, 3, 64] {
            assert!(read_all(msg, 20, buf).is_empty());
            assert_eq!(read_all(msg, 19, buf), [("b".to_string(), 20)]);
            assert_eq!(read_all(b"no end", 0, buf), [("b".to_string(), 8)]);
            assert_eq!(read_all(b"a\r\n", 0, buf), [("b".to_string(), 3)]);
            assert!(read_all(b"", 0, buf).is_empty());
        }
    }

    #[test]
    fn a_read_stopped_early_or_top_records_nothing() {
        let found = Corrections::default();
        let mut r =
            MessageReader::whole(&b"a\nb\n"[..]).on_end(check(99, "b".into(), Arc::clone(&found)));
        let mut first = [0u8; 2];
        r.read_exact(&mut first).unwrap();
        drop(r);
        let mut top = MessageReader::top(&b"a\n\nb\n"[..], 0).on_end(check(
            99,
            "b".into(),
            Arc::clone(&found),
        ));
        let mut out = Vec::new();
        top.read_to_end(&mut out).unwrap();
        assert!(found.lock().unwrap().is_empty());
    }
}
