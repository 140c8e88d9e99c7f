//! Reading a message in chunks: the loop every copy and scan of a spooled,
//! stored or queued message runs.

use std::io::{self, Read};

/// Hands `f` what `reader` reads, at most `chunk` octets at a time, up to its
/// end. An interrupted read is tried again; any other read error ends the loop
/// with what `read_error` makes of it, and so does `f`'s first error.
///
/// # Errors
///
/// `read_error`'s for a read that failed, or `f`'s.
///
/// ```
/// use mailbagd::read_chunks::each_chunk;
///
/// let mut seen = Vec::new();
/// each_chunk(&mut &b"abcde"[..], 2, |e| e, |c| {
///     seen.push(c.to_vec());
///     Ok(())
/// })?;
/// assert_eq!(seen, [b"ab".to_vec(), b"cd".to_vec(), b"e".to_vec()]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn each_chunk<E>(
    reader: &mut (impl Read + ?Sized),
    chunk: usize,
    read_error: impl FnOnce(io::Error) -> E,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        f(buf.get(..n).unwrap_or_default())?;
    }
}
