//! Small files of the server's own that hold something private (a user's
//! Spam digest state, the POP-before-SMTP table kept over a restart),
//! replaced whole: written to a temporary file of this process and call
//! (mode `0600`), fsynced, renamed into place, and the directory fsynced, so
//! that a crash leaves the old file or the new one, never half of one.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces the file at `path` with `contents` (mode `0600`).
///
/// # Errors
///
/// A step failed; the temporary file is removed and `path` is as it was.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// mailbagd::private_file::replace(&path, b"one\n").unwrap();
/// mailbagd::private_file::replace(&path, b"two\n").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
/// assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
/// ```
pub fn replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    // A name of this process and call: the server and a command such as
    // `mailbagd digest --now` never share a temporary file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let write = || -> io::Result<()> {
        write_synced(&tmp, contents)?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Writes `contents` to a file of its own at `path` (made or truncated,
/// mode `0600`) and fsyncs it: the first half of [`replace`], for a caller
/// that links the file into place itself.
///
/// # Errors
///
/// The file could not be made, written or synced.
pub fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A directory where the file should be: an error, nothing left behind.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("sub")).unwrap();
        assert!(replace(&blocked, b"y").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
