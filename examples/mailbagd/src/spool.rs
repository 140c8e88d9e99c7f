//! A message spool for SMTP DATA: kept in memory up to a limit per message
//! and while all spools together stay within a shared budget
//! ([`SpoolMemory`], `[limits] spool_memory`), then spilled
//! to an unnamed temporary file (`tempfile::tempfile_in`: `O_TMPFILE` on
//! Linux, else unlinked at once, mode `0600`), so a large message never has
//! to sit in memory and no spool file outlives its process, however it
//! ends (SIGKILL, power loss). The spool is read back (possibly several
//! times: scoring, then one copy per recipient) before it is dropped.
//!
//! [`remove_stale`] removes the named `spool.<pid>.<n>` files that earlier
//! versions of the server left behind when killed during DATA.

use std::borrow::Cow;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Default in-memory part of a spool before it spills to disk (256 KiB).
pub const DEFAULT_SPOOL_MEMORY: usize = 256 * 1024;

/// Octets gathered before one write to the spill file (64 KiB): a message
/// made of many short pieces (each bare line end is rewritten, each
/// dot-stuffed line is its own piece) costs a system call per 64 KiB, not
/// per piece.
pub const SPOOL_WRITE_BUFFER: usize = 64 * 1024;

/// What a spool keeps allocated in memory after a message, for the next one
/// on the same connection (16 KiB: a typical message fits without growing).
pub const SPOOL_KEPT_MEMORY: usize = 16 * 1024;

/// The memory all spools of a server may hold together (`[limits]
/// spool_memory`): a spool whose growth would pass it spills to disk at
/// once. Without it, connections stalled in DATA with a few hundred KiB sent
/// each (one octet per idle timeout keeps them open) held 330 KiB each: a
/// gigabyte for 3,000.
#[derive(Debug)]
pub struct SpoolMemory {
    limit: usize,
    used: AtomicUsize,
}

impl SpoolMemory {
    /// A budget of `limit` octets.
    pub fn new(limit: usize) -> Arc<SpoolMemory> {
        Arc::new(SpoolMemory {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Octets the spools hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` octets of the budget, if that many are left.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    /// Gives `n` octets back.
    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

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
/// let budget = mailbagd::spool::SpoolMemory::new(1 << 20);
/// let mut s = Spool::new(dir.path(), 4, budget);
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
    budget: Arc<SpoolMemory>,
    /// Octets of `budget` this spool holds: the capacity of `mem` and
    /// `pending`.
    held: usize,
    mem: Vec<u8>,
    file: Option<File>,
    /// Written octets not yet in `file` (at most [`SPOOL_WRITE_BUFFER`]).
    pending: Vec<u8>,
    len: u64,
}

impl Spool {
    /// An empty spool that spills into `dir` after `memory_limit` octets, or
    /// earlier when `budget` has no room for it to grow.
    pub fn new(dir: &Path, memory_limit: usize, budget: Arc<SpoolMemory>) -> Spool {
        Spool {
            dir: dir.to_owned(),
            memory_limit,
            budget,
            held: 0,
            mem: Vec::new(),
            file: None,
            pending: Vec::new(),
            len: 0,
        }
    }

    /// Makes room for `extra` more octets in `buf` (at most `cap` in all),
    /// growing by doubling, with the growth taken from the budget first.
    /// `false`: over `cap`, or no budget left; nothing changed.
    fn grow(&mut self, which: Buf, extra: usize, cap: usize) -> bool {
        let (len, before) = {
            let buf = self.buf(which);
            (buf.len(), buf.capacity())
        };
        let need = len + extra;
        if need <= before {
            return true;
        }
        if need > cap {
            return false;
        }
        let new_cap = (before * 2).clamp(need, cap);
        let more = new_cap - before;
        if !self.budget.take(more) {
            return false;
        }
        self.held += more;
        let buf = self.buf(which);
        buf.reserve_exact(new_cap - len);
        // The allocator may give more than asked: count what is there.
        let extra_given = buf.capacity().saturating_sub(new_cap);
        if extra_given > 0 && self.budget.take(extra_given) {
            self.held += extra_given;
        }
        true
    }

    fn buf(&mut self, which: Buf) -> &mut Vec<u8> {
        match which {
            Buf::Mem => &mut self.mem,
            Buf::Pending => &mut self.pending,
        }
    }

    /// Frees what this spool holds beyond `keep` octets of `mem`'s
    /// capacity, and gives it back to the budget.
    fn release(&mut self, keep: usize) {
        self.mem.clear();
        self.mem.shrink_to(keep);
        self.pending.clear();
        self.pending.shrink_to(0);
        let now = self.mem.capacity() + self.pending.capacity();
        if now < self.held {
            self.budget.give(self.held - now);
            self.held = now;
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

    /// The first `n` octets (at most), for header inspection: read back
    /// from the file when the spool has spilled.
    ///
    /// # Errors
    ///
    /// The spill file could not be read.
    pub fn head(&mut self, n: usize) -> io::Result<Cow<'_, [u8]>> {
        if self.file.is_none() {
            return Ok(Cow::Borrowed(
                self.mem.get(..n.min(self.mem.len())).unwrap_or_default(),
            ));
        }
        let mut out = Vec::with_capacity(n.min(usize::try_from(self.len).unwrap_or(n)));
        self.reader()?.take(n as u64).read_to_end(&mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Appends a chunk: in memory while the message fits the memory limit
    /// and the budget has room, else to the spill file (then the memory is
    /// given back).
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.file.is_none() && !self.grow(Buf::Mem, chunk.len(), self.memory_limit) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let mut f = tempfile::tempfile_in(&self.dir)?;
            f.write_all(&self.mem)?;
            self.file = Some(f);
            self.release(0);
        }
        if self.file.is_none() {
            self.mem.extend_from_slice(chunk);
            self.len += chunk.len() as u64;
            return Ok(());
        }
        if self.pending.len() + chunk.len() > SPOOL_WRITE_BUFFER {
            self.flush_pending()?;
        }
        if chunk.len() < SPOOL_WRITE_BUFFER
            && self.grow(Buf::Pending, chunk.len(), SPOOL_WRITE_BUFFER)
        {
            self.pending.extend_from_slice(chunk);
        } else {
            // Large, or no budget for the buffer: straight to the file.
            self.flush_pending()?;
            if let Some(f) = &mut self.file {
                f.write_all(chunk)?;
            }
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Writes the gathered octets to the spill file.
    fn flush_pending(&mut self) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            f.write_all(&self.pending)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Reads the whole message from the start.
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + Send + '_>> {
        self.flush_pending()?;
        match &mut self.file {
            Some(f) => {
                f.seek(SeekFrom::Start(0))?;
                Ok(Box::new(f.take(self.len)))
            }
            None => Ok(Box::new(Cursor::new(&self.mem[..]))),
        }
    }

    /// Empties the spool for the next message (keeping
    /// [`SPOOL_KEPT_MEMORY`] of memory).
    pub fn clear(&mut self) {
        self.release(SPOOL_KEPT_MEMORY);
        self.file = None;
        self.len = 0;
    }
}

/// One of a spool's two buffers.
#[derive(Clone, Copy)]
enum Buf {
    Mem,
    Pending,
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Gives all of it back.
        self.release(0);
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
        let mut s = Spool::new(dir.path(), 100, SpoolMemory::new(1 << 20));
        s.write(b"abc").unwrap();
        s.write(b"def").unwrap();
        assert_eq!(read_all(&mut s), b"abcdef");
        assert_eq!(read_all(&mut s), b"abcdef");
        assert_eq!(&*s.head(2).unwrap(), b"ab");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn spills_and_rereads_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(dir.path(), 10, SpoolMemory::new(1 << 20));
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
        let mut s = Spool::new(dir.path(), 10, SpoolMemory::new(1 << 20));
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

    /// A probe held 3,000 connections in DATA with 300 KB sent each: a
    /// gigabyte of spools in memory. The shared budget bounds them: a spool
    /// that would pass it spills at once and gives its memory back; every
    /// octet is back when the spools are gone.
    #[test]
    fn spools_share_one_memory_budget() {
        let dir = tempfile::tempdir().unwrap();
        let budget = SpoolMemory::new(4096);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut a = Spool::new(dir.path(), 1 << 20, Arc::clone(&budget));
        let mut b = Spool::new(dir.path(), 1 << 20, Arc::clone(&budget));
        for c in data.chunks(100) {
            a.write(c).unwrap();
        }
        assert!(a.file.is_none(), "a fits: in memory");
        assert!(budget.used() >= 3000 && budget.used() <= 4096);
        for c in data.chunks(100) {
            b.write(c).unwrap();
            assert!(budget.used() <= 4096, "{}", budget.used());
        }
        assert!(b.file.is_some(), "b did not fit: spilled");
        assert_eq!(read_all(&mut a), data);
        assert_eq!(read_all(&mut b), data);
        // The header is read back from the file.
        assert_eq!(&*b.head(10).unwrap(), &data[..10]);
        assert_eq!(b.head(10_000).unwrap().len(), 3000);
        a.clear();
        assert!(budget.used() <= 4096);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    /// Past its own limit a spool spills and keeps in memory only the write
    /// buffer (no copy of what it had before).
    #[test]
    fn a_spilled_spool_gives_its_memory_back() {
        let dir = tempfile::tempdir().unwrap();
        let budget = SpoolMemory::new(1 << 30);
        let mut s = Spool::new(dir.path(), 256 * 1024, Arc::clone(&budget));
        let line = [b'x'; 1000];
        for _ in 0..250 {
            s.write(&line).unwrap();
        }
        assert!(s.file.is_none());
        assert!(budget.used() >= 250_000);
        for _ in 0..300 {
            s.write(&line).unwrap();
        }
        assert!(s.file.is_some());
        assert!(budget.used() <= SPOOL_WRITE_BUFFER, "{}", budget.used());
        assert_eq!(s.len(), 550_000);
        s.clear();
        assert_eq!(budget.used(), 0, "nothing kept from a spilled message");
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
