//! A message spool for SMTP DATA: kept in memory up to a limit, then spilled
//! to an unnamed-in-practice temporary file (removed on drop), so a large
//! message never has to sit in memory. The spool is read back (possibly
//! several times: scoring, then one copy per recipient) before it is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Default in-memory part of a spool before it spills to disk (256 KiB).
pub const DEFAULT_SPOOL_MEMORY: usize = 256 * 1024;

static COUNTER: AtomicU64 = AtomicU64::new(0);

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
/// drop(s);
/// assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
/// ```
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    memory_limit: usize,
    mem: Vec<u8>,
    file: Option<(File, PathBuf)>,
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
            fs::create_dir_all(&self.dir)?;
            let name = format!(
                "spool.{}.{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = self.dir.join(name);
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(&self.mem)?;
            self.file = Some((f, path));
        }
        match &mut self.file {
            Some((f, _)) => f.write_all(chunk)?,
            None => self.mem.extend_from_slice(chunk),
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Reads the whole message from the start.
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + Send + '_>> {
        match &mut self.file {
            Some((f, _)) => {
                f.flush()?;
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
        if let Some((_, p)) = self.file.take() {
            let _ = fs::remove_file(p);
        }
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
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        s.write(b"again").unwrap();
        assert_eq!(read_all(&mut s), b"again");
    }
}
