//! A user's quota usage, counted from the Maildir and remembered while none
//! of its message directories changed.
//!
//! The `maildirsize` file ([`super::maildirsize`]) keeps a running total;
//! the Maildir is counted only when that file is missing, stale or broken,
//! and before a delivery is refused for its total. Counting means reading
//! every name in `new/` and `cur/` of both folders: work that grows with the
//! mailbox. Adding, removing or renaming a file changes its directory's
//! modification time, and Maildir files are never rewritten in place, so
//! while the directories' times (and inode numbers) are the ones seen when
//! the count was made, the count still holds, whichever program or host
//! changed the Maildir. Checking that costs one `stat` per directory: a
//! full mailbox that keeps being sent mail is counted once, not at each
//! refusal.
//!
//! Directory times have a coarse resolution (a clock tick on Linux, a
//! second on some NFS servers): a second change in the same tick as the one
//! a count saw would leave the time as it was. So a count is remembered only
//! when every directory has been unchanged for [`SETTLE`]; a mailbox
//! receiving mail right now is counted each time.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::{Error, UserName};

/// Users whose usage is remembered at most; the cache starts over when it
/// is full (each entry is about a hundred octets).
pub(crate) const MAX_CACHED_USERS: usize = 65_536;

/// How long every directory must have been unchanged before a count is
/// remembered: more than the coarsest directory time resolution expected
/// (one second), so that no later change can leave a time as it was.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// Stored octets and messages of a user's Maildir.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Stored octets (from `,S=` or the file's size).
    pub(crate) octets: u64,
    /// Message files.
    pub(crate) messages: u64,
}

/// What a directory looked like: modification time and inode number, or
/// `None` when it does not exist.
type DirStamp = Option<(SystemTime, u64)>;

/// The usage of each user counted last, with the stamps of the directories
/// it was counted from.
pub(crate) struct UsageCache {
    entries: Mutex<HashMap<UserName, (Vec<DirStamp>, Usage)>>,
    /// [`SETTLE`], shorter in tests.
    settle: Duration,
    /// Counts made (cache misses), for tests.
    counts: AtomicU64,
}

impl Default for UsageCache {
    fn default() -> Self {
        Self::with_settle(SETTLE)
    }
}

fn stamp(dir: &PathBuf) -> Result<DirStamp, io::Error> {
    match fs::metadata(dir) {
        Ok(m) => Ok(Some((m.modified()?, m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl UsageCache {
    /// A cache that remembers counts of directories unchanged for `settle`.
    pub(crate) fn with_settle(settle: Duration) -> Self {
        UsageCache {
            entries: Mutex::new(HashMap::new()),
            settle,
            counts: AtomicU64::new(0),
        }
    }

    /// The usage of `user`, whose message directories are `dirs`: the one
    /// remembered if none of them changed since, else `count()`'s, which is
    /// then remembered. The directories are looked at before counting, so
    /// a change during the count makes the next call count again.
    pub(crate) fn usage(
        &self,
        user: &UserName,
        dirs: &[PathBuf],
        count: impl FnOnce() -> Result<Usage, Error>,
    ) -> Result<Usage, Error> {
        let now = SystemTime::now();
        let settled = |s: &DirStamp| {
            s.is_none_or(|(t, _)| t.checked_add(self.settle).is_some_and(|t| t <= now))
        };
        let stamps: Option<Vec<DirStamp>> = dirs
            .iter()
            .map(|d| stamp(d).ok())
            .collect::<Option<Vec<_>>>()
            .filter(|s| s.iter().all(settled));
        if let Some(stamps) = &stamps {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((seen, total)) = entries.get(user)
                && seen == stamps
            {
                return Ok(*total);
            }
        }
        self.counts.fetch_add(1, Ordering::Relaxed);
        let total = count()?;
        if let Some(stamps) = stamps {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= MAX_CACHED_USERS && !entries.contains_key(user) {
                entries.clear();
            }
            entries.insert(user.clone(), (stamps, total));
        }
        Ok(total)
    }

    /// How many times [`usage`](Self::usage) counted.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> u64 {
        self.counts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u64) -> Usage {
        Usage {
            octets: n,
            messages: n,
        }
    }

    /// Sets `dir`'s modification time to `secs` after the epoch: what a
    /// change at that time leaves (the test does not wait for clock ticks).
    fn at(dir: &PathBuf, secs: u64) {
        let f = fs::File::open(dir).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn remembered_until_a_directory_changes() {
        let t = tempfile::tempdir().unwrap();
        let dirs = [t.path().join("new"), t.path().join("cur")];
        fs::create_dir(&dirs[0]).unwrap();
        at(&dirs[0], 1000);
        let cache = UsageCache::default();
        let joe = UserName::new("joe").unwrap();
        let files = |d: &PathBuf| fs::read_dir(d).map_or(0, |r| r.count() as u64);
        let count = || Ok(u(dirs.iter().map(files).sum()));
        assert_eq!(cache.usage(&joe, &dirs, count).unwrap(), u(0));
        assert_eq!(cache.usage(&joe, &dirs, count).unwrap(), u(0));
        assert_eq!(cache.counts(), 1, "the second call is remembered");
        // A file added (by anyone), and a directory made, are seen.
        fs::write(dirs[0].join("a"), b"x").unwrap();
        at(&dirs[0], 1001);
        assert_eq!(cache.usage(&joe, &dirs, count).unwrap(), u(1));
        fs::create_dir(&dirs[1]).unwrap();
        fs::write(dirs[1].join("b"), b"x").unwrap();
        at(&dirs[1], 1001);
        assert_eq!(cache.usage(&joe, &dirs, count).unwrap(), u(2));
        assert_eq!(cache.usage(&joe, &dirs, count).unwrap(), u(2));
        assert_eq!(cache.counts(), 3);
        // A rename inside a directory, and a removal, are seen too.
        fs::rename(dirs[1].join("b"), dirs[1].join("c")).unwrap();
        at(&dirs[1], 1002);
        assert_eq!(cache.usage(&joe, &dirs, || Ok(u(7))).unwrap(), u(7));
        fs::remove_file(dirs[0].join("a")).unwrap();
        at(&dirs[0], 1003);
        assert_eq!(cache.usage(&joe, &dirs, count).unwrap(), u(1));
        // Another user is counted on their own.
        let ann = UserName::new("ann").unwrap();
        assert_eq!(cache.usage(&ann, &dirs, || Ok(u(5))).unwrap(), u(5));
        assert_eq!(cache.usage(&joe, &dirs, || Ok(u(9))).unwrap(), u(1));
        assert_eq!(cache.counts(), 6);
    }

    #[test]
    fn directories_changed_within_the_settle_time_are_counted_each_time() {
        let t = tempfile::tempdir().unwrap();
        let dirs = [t.path().join("new")];
        fs::create_dir(&dirs[0]).unwrap();
        let cache = UsageCache::default();
        let joe = UserName::new("joe").unwrap();
        assert_eq!(cache.usage(&joe, &dirs, || Ok(u(1))).unwrap(), u(1));
        assert_eq!(cache.usage(&joe, &dirs, || Ok(u(2))).unwrap(), u(2));
        assert_eq!(cache.counts(), 2);
        // Missing directories are settled: nothing can change them unseen.
        let gone = [t.path().join("gone")];
        assert_eq!(cache.usage(&joe, &gone, || Ok(u(3))).unwrap(), u(3));
        assert_eq!(cache.usage(&joe, &gone, || Ok(u(4))).unwrap(), u(3));
    }
}
