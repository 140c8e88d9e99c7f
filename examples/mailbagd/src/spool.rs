//! A message spool for SMTP DATA: kept in memory up to a limit, then spilled
//! to an unnamed temporary file (`tempfile::tempfile_in`: `O_TMPFILE` on
//! Linux, else unlinked at once, mode `0600`), so a large message never has
//! to sit in memory and no spool file outlives its process, however it
//! ends (SIGKILL, power loss). The spool is read back (possibly several
//! times: scoring, then one copy per recipient) before it is dropped.
//!
//! [`remove_stale`] removes the named `spool.<pid>.<n>` files that earlier
//! versions of the server left behind when killed during DATA.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Default in-memory part of a spool before it spills to disk (256 KiB).
pub const DEFAULT_SPOOL_MEMORY: usize = 256 * 1024;

/// Octets gathered before one write to the spill file (64 KiB): a message
/// made of many short pieces (each bare line end is rewritten, each
/// dot-stuffed line is its own piece) costs a system call per 64 KiB, not
/// per piece.
pub const SPOOL_WRITE_BUFFER: usize = 64 * 1024;

/// The spool directory's name under the data directory.
pub const SPOOL_DIR: &str = ".spool";

/// Prefix of the named spool files of earlier versions.
const STALE_PREFIX: &str = "spool.";

/// Creates the spool directory (`0700`) if missing, and removes the named
/// spool files earlier versions left there (`spool.<pid>.<n>`: nothing
/// else reads them). Returns how many were removed.
///
/// # Errors
///
/// The directory cannot be created or read.
pub fn remove_stale(dir: &Path) -> io::Result<usize> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut removed = 0;
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        let stale = ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(STALE_PREFIX));
        if stale
            && ent.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(ent.path()).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A spooled message.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use mailbagd::spool::Spool;
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut s = Spool::new(dir.path(), 4);
/// s.write(b"Subject: x\r\n\r\nbody\r\n").unwrap(); // spills to a file
/// let mut text = String::new();
/// s.reader().unwrap().read_to_string(&mut text).unwrap();
/// assert_eq!(text, "Subject: x\r\n\r\nbody\r\n");
/// assert_eq!(s.len(), 20);
/// // The spilled file has no name: nothing to see, nothing to leave behind.
/// assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
/// ```
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    memory_limit: usize,
    mem: Vec<u8>,
    file: Option<File>,
    /// Written octets not yet in `file` (at most [`SPOOL_WRITE_BUFFER`]).
    pending: Vec<u8>,
    len: u64,
}

impl Spool {
    /// An empty spool that spills into `dir` after `memory_limit` octets.
    pub fn new(dir: &Path, memory_limit: usize) -> Spool {
        Spool {
            dir: dir.to_owned(),
            memory_limit,
            mem: Vec::new(),
            file: None,
            pending: Vec::new(),
            len: 0,
        }
    }

    /// Octets written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Nothing written yet?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` octets (at most), for header inspection.
    pub fn head(&self, n: usize) -> &[u8] {
        self.mem.get(..n.min(self.mem.len())).unwrap_or_default()
    }

    /// Appends a chunk (spilling to disk past the memory limit).
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.mem.len() + chunk.len() > self.memory_limit {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let mut f = tempfile::tempfile_in(&self.dir)?;
            f.write_all(&self.mem)?;
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => {
                if self.pending.len() + chunk.len() > SPOOL_WRITE_BUFFER {
                    f.write_all(&self.pending)?;
                    self.pending.clear();
                }
                if chunk.len() >= SPOOL_WRITE_BUFFER {
                    f.write_all(chunk)?;
                } else {
                    self.pending.extend_from_slice(chunk);
                }
            }
            None => self.mem.extend_from_slice(chunk),
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Reads the whole message from the start.
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + Send + '_>> {
        match &mut self.file {
            Some(f) => {
                f.write_all(&self.pending)?;
                self.pending.clear();
                f.seek(SeekFrom::Start(0))?;
                Ok(Box::new(f.take(self.len)))
            }
            None => Ok(Box::new(Cursor::new(&self.mem[..]))),
        }
    }

    /// Empties the spool for the next message.
    pub fn clear(&mut self) {
        self.mem.clear();
        self.mem.shrink_to(64 * 1024);
        self.pending.clear();
        self.pending.shrink_to(SPOOL_WRITE_BUFFER);
        self.file = None;
        self.len = 0;
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(s: &mut Spool) -> Vec<u8> {
        let mut v = Vec::new();
        s.reader().unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn memory_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(dir.path(), 100);
        s.write(b"abc").unwrap();
        s.write(b"def").unwrap();
        assert_eq!(read_all(&mut s), b"abcdef");
        assert_eq!(read_all(&mut s), b"abcdef");
        assert_eq!(s.head(2), b"ab");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn spills_and_rereads_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(dir.path(), 10);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for c in data.chunks(333) {
            s.write(c).unwrap();
        }
        assert_eq!(s.len(), 10_000);
        assert_eq!(read_all(&mut s), data);
        assert_eq!(read_all(&mut s), data);
        // Unnamed: never visible in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        s.write(b"again").unwrap();
        assert_eq!(read_all(&mut s), b"again");
    }

    /// Short pieces after the spill go to the file in 64 KiB writes, not one by one
    /// (a message of bare line ends took a system call per line end: about 100 times
    /// the CPU of the same message with CRLF).
    #[test]
    fn short_pieces_are_gathered_before_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(dir.path(), 10);
        s.write(b"0123456789abcdef").unwrap(); // spills; gathered
        let on_disk = |s: &Spool| s.file.as_ref().unwrap().metadata().unwrap().len();
        assert_eq!(on_disk(&s), 0);
        let mut expected = b"0123456789abcdef".to_vec();
        for _ in 0..(SPOOL_WRITE_BUFFER - 16) / 3 {
            s.write(b"a\r\n").unwrap();
            expected.extend_from_slice(b"a\r\n");
        }
        assert_eq!(expected.len(), SPOOL_WRITE_BUFFER);
        assert_eq!(on_disk(&s), 0, "nothing written yet");
        s.write(b"xyz").unwrap(); // past the buffer: one write of all before it
        expected.extend_from_slice(b"xyz");
        assert_eq!(on_disk(&s), SPOOL_WRITE_BUFFER as u64);
        assert_eq!(read_all(&mut s), expected);
        assert_eq!(s.len(), expected.len() as u64);
    }

    #[test]
    fn stale_named_spool_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join(".spool");
        assert_eq!(remove_stale(&spool).unwrap(), 0);
        fs::write(spool.join("spool.123.4"), b"half a message").unwrap();
        fs::write(spool.join("other"), b"kept").unwrap();
        assert_eq!(remove_stale(&spool).unwrap(), 1);
        assert_eq!(fs::read_dir(&spool).unwrap().count(), 1);
    }
}
