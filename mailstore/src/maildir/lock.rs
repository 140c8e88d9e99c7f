//! OS file locks (`flock` on Unix through `std::fs::File::try_lock`).
//!
//! The kernel drops such a lock when its holder dies, however it dies, so a
//! lock left by a crashed or killed process is recovered by the next opener
//! without guessing from pids or ages. The pid written into the lock file is
//! only informational (for an administrator).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::Error;

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    fn open(path: &Path) -> Result<File, Error> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(super::FILE_MODE)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))
    }

    /// Takes the lock or fails at once with [`Error::InUse`]; writes our pid.
    pub(crate) fn try_exclusive(path: &Path) -> Result<Self, Error> {
        let mut file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::InUse),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        // Informational only; failure to record the pid does not matter.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(FileLock { _file: file })
    }

    /// Waits for the lock (short critical sections: index updates).
    pub(crate) fn exclusive(path: &Path) -> Result<Self, Error> {
        let file = Self::open(path)?;
        file.lock().map_err(|e| Error::io("lock", path, e))?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_same_process_is_refused_until_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = FileLock::try_exclusive(&p).unwrap();
        assert!(matches!(FileLock::try_exclusive(&p), Err(Error::InUse)));
        let pid = std::fs::read_to_string(&p).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(a);
        let _b = FileLock::try_exclusive(&p).unwrap();
    }
}
