//! Dot-lock files, safe on NFS, as Dovecot's dotlocks: a lock is a file
//! created with `O_CREAT | O_EXCL` (atomic on every local file system and
//! on NFSv3 and later) that holds a token naming its holder. The holder of
//! a long lock refreshes the file's modification time; a lock file older
//! than the stale timeout belongs to a holder that died (or a host that was
//! cut off) and is removed by the next taker. Unlike `flock`, nothing
//! depends on a lock manager between the hosts that share a Maildir; what
//! it asks of them is clocks that agree within a fraction of the stale
//! timeout.
//!
//! Removing a stale lock rereads its token first and removes it only if it
//! is still the stale one, so a lock that was just taken anew is left alone
//! (a window of one `read` and one `unlink` remains, as in Dovecot).
//!
//! A holder that dies on the same machine need not wait out the stale
//! timeout: the holder also keeps an `flock` on its lock file (taken before
//! it writes its token), and its token names the kernel it runs on (Linux's
//! boot id). A taker that finds a fresh lock of its own kernel whose `flock`
//! it can take knows that the holder's file is closed, so the holder is gone,
//! and takes the lock over at once (a probe: every user in a POP3 session
//! when the server was killed got `-ERR [IN-USE]` for a minute after the
//! restart). Locks of another kernel (another host, or this one before a
//! reboot) wait for the stale timeout as before: an `flock` says nothing
//! across hosts whose file system does not share locks. No process ids are
//! compared, so pid namespaces do not matter.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::keep_alive::Refresh;

/// Distinguishes the locks one process takes.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A held dot-lock; removed on drop if it is still ours.
#[derive(Debug)]
pub(crate) struct DotLock {
    path: PathBuf,
    token: String,
    file: File,
}

/// What was found at the lock path.
enum Holder {
    /// Someone holds it and refreshed it within the stale timeout.
    Live,
    /// Not refreshed within the stale timeout: removed, try again.
    Removed,
}

impl DotLock {
    /// Takes the lock or fails at once with [`Error::InUse`].
    ///
    /// `host` goes into the token, for an administrator who finds the file.
    pub(crate) fn try_take(path: &Path, stale: Duration, host: &str) -> Result<DotLock, Error> {
        // Twice: once more after removing a stale lock.
        for _ in 0..2 {
            match Self::create(path, host)? {
                Some(lock) => return Ok(lock),
                None => match Self::inspect(path, stale)? {
                    Holder::Live => return Err(Error::InUse),
                    Holder::Removed => continue,
                },
            }
        }
        Err(Error::InUse)
    }

    /// Waits for the lock (short critical sections: index updates), polling
    /// every few milliseconds; a holder that died leaves a lock that turns
    /// stale after `stale`, so the wait is bounded by about `stale`. After
    /// twice that, [`Error::InUse`].
    pub(crate) fn take(path: &Path, stale: Duration, host: &str) -> Result<DotLock, Error> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match Self::try_take(path, stale, host) {
                Err(Error::InUse) if start.elapsed() < stale * 2 => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Creates the lock file; `None` when it exists.
    fn create(path: &Path, host: &str) -> Result<Option<DotLock>, Error> {
        let mut file = match super::private_file().create_new(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(Error::io("create lock file", path, e)),
        };
        // Held while the file is open, taken before the token is written: a
        // token that names this kernel promises it (see the module docs).
        let kernel = match file.try_lock() {
            Ok(()) => boot_id().unwrap_or(NO_KERNEL),
            Err(_) => NO_KERNEL,
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!(
            "{} {host} {nanos} {} {kernel}\n",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = file.write_all(token.as_bytes()) {
            let _ = fs::remove_file(path);
            return Err(Error::io("write lock file", path, e));
        }
        Ok(Some(DotLock {
            path: path.to_owned(),
            token,
            file,
        }))
    }

    /// Looks at a lock file that exists; removes it when stale.
    fn inspect(path: &Path, stale: Duration) -> Result<Holder, Error> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            // Released meanwhile.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Holder::Removed),
            Err(e) => return Err(Error::io("stat lock file", path, e)),
        };
        if !meta.is_file() {
            return Err(Error::io(
                "lock",
                path,
                io::Error::other("the lock path is not a regular file"),
            ));
        }
        let modified = meta.modified().map_err(|e| Error::io("stat", path, e))?;
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO);
        let before = read_token(path)?;
        if age <= stale && !holder_is_gone(path, before.as_deref()) {
            return Ok(Holder::Live);
        }
        // Still the same stale holder (not one that took it meanwhile)?
        let still = fs::symlink_metadata(path)
            .ok()
            .and_then(|m| m.modified().ok())
            .is_some_and(|m| m == modified);
        if still && read_token(path)? == before {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove stale lock file", path, e)),
            }
        }
        Ok(Holder::Removed)
    }

    /// Whether the file at our path still holds our token.
    fn is_ours(&self) -> bool {
        read_token(&self.path).is_ok_and(|t| t.as_deref() == Some(self.token.as_str()))
    }
}

impl Refresh for DotLock {
    fn refresh(&self) -> Result<(), Error> {
        if !self.is_ours() {
            return Err(Error::io(
                "refresh lock",
                &self.path,
                io::Error::other("the lock was removed as stale or taken by another holder"),
            ));
        }
        self.file
            .set_modified(SystemTime::now())
            .map_err(|e| Error::io("refresh lock", &self.path, e))
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if self.is_ours() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Written in a token instead of a kernel's boot id: no `flock` to look at.
const NO_KERNEL: &str = "-";

/// This kernel's boot id (Linux), read once; `None` where there is none.
fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        })
        .as_deref()
}

/// Whether the holder of the lock at `path` (its token `token`) is gone
/// although the lock is fresh: the token names this kernel, and the
/// holder's `flock` on the file can be taken (its file is closed).
fn holder_is_gone(path: &Path, token: Option<&str>) -> bool {
    let Some(kernel) = token.and_then(|t| t.split_whitespace().nth(4)) else {
        return false;
    };
    if boot_id() != Some(kernel) {
        return false;
    }
    // Opened for writing: NFS clients emulate `flock` with POSIX locks, and
    // an exclusive one needs a descriptor open for writing.
    File::options()
        .read(true)
        .write(true)
        .open(path)
        .is_ok_and(|f| f.try_lock().is_ok())
}

/// The token in a lock file; `None` when the file is gone.
fn read_token(path: &Path) -> Result<Option<String>, Error> {
    match fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read lock file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn age(path: &Path, by: Duration) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn a_second_taker_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = DotLock::try_take(&p, MINUTE, "h").unwrap();
        assert!(matches!(
            DotLock::try_take(&p, MINUTE, "h"),
            Err(Error::InUse)
        ));
        let token = fs::read_to_string(&p).unwrap();
        assert!(token.starts_with(&format!("{} h ", std::process::id())));
        drop(a);
        assert!(!p.exists(), "released on drop");
        let _b = DotLock::try_take(&p, MINUTE, "h").unwrap();
    }

    /// A fresh lock whose holder is gone on this kernel (its token names the
    /// kernel, nobody holds its `flock`: the holder's file was closed when
    /// it died) is taken at once; one of another kernel, or one whose token
    /// names none, waits for the stale timeout; a live holder keeps it.
    #[test]
    fn a_fresh_lock_of_a_holder_gone_on_this_kernel_is_taken_at_once() {
        let Some(kernel) = boot_id() else {
            return; // not Linux: nothing to look at
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        fs::write(&p, format!("99999 h 1 0 {kernel}\n")).unwrap();
        let taken = DotLock::try_take(&p, MINUTE, "h").unwrap();
        assert!(
            fs::read_to_string(&p)
                .unwrap()
                .ends_with(&format!(" {kernel}\n"))
        );
        // Its holder lives (this process, the file open): not taken.
        assert!(matches!(
            DotLock::try_take(&p, MINUTE, "h"),
            Err(Error::InUse)
        ));
        drop(taken);
        for other in [
            "99999 h 1 0 another-kernel\n",
            "99999 h 1 0\n",
            "99999 h 1 0 -\n",
        ] {
            fs::write(&p, other).unwrap();
            assert!(
                matches!(DotLock::try_take(&p, MINUTE, "h"), Err(Error::InUse)),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_stale_lock_is_taken_over_and_its_old_holder_neither_refreshes_nor_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let old = DotLock::try_take(&p, MINUTE, "a").unwrap();
        age(&p, MINUTE * 2);
        let new = DotLock::try_take(&p, MINUTE, "b").unwrap();
        assert!(
            old.refresh().is_err(),
            "the old holder learns it lost the lock"
        );
        drop(old);
        assert!(p.exists(), "the old holder leaves the new lock alone");
        assert!(matches!(
            DotLock::try_take(&p, MINUTE, "c"),
            Err(Error::InUse)
        ));
        drop(new);
        assert!(!p.exists());
    }

    #[test]
    fn refresh_keeps_a_lock_from_turning_stale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = DotLock::try_take(&p, MINUTE, "a").unwrap();
        age(&p, MINUTE * 2);
        a.refresh().unwrap();
        assert!(matches!(
            DotLock::try_take(&p, MINUTE, "b"),
            Err(Error::InUse)
        ));
    }

    #[test]
    fn a_lock_file_left_by_another_tool_turns_stale_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        fs::write(&p, "12345\n").unwrap();
        assert!(matches!(
            DotLock::try_take(&p, MINUTE, "a"),
            Err(Error::InUse)
        ));
        age(&p, MINUTE * 2);
        let _a = DotLock::try_take(&p, MINUTE, "a").unwrap();
    }

    #[test]
    fn take_waits_for_a_holder_that_dies_then_breaks_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        // A holder that died (its file is left): the waiter takes it once stale.
        fs::write(&p, "1 dead 0 0\n").unwrap();
        let stale = Duration::from_millis(300);
        let start = Instant::now();
        let _a = DotLock::take(&p, stale, "a").unwrap();
        assert!(start.elapsed() >= stale - Duration::from_millis(50));
    }

    #[test]
    fn a_directory_in_the_way_is_an_io_error_not_a_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        fs::create_dir(&p).unwrap();
        assert!(matches!(
            DotLock::try_take(&p, MINUTE, "a"),
            Err(Error::Io { .. })
        ));
        assert!(matches!(
            DotLock::take(&p, MINUTE, "a"),
            Err(Error::Io { .. })
        ));
    }
}
