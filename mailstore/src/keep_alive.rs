//! Keeping a maildrop's lock alive while its session lasts.
//!
//! A [`MaildirStore`](crate::MaildirStore) maildrop is locked with a lock
//! file that turns stale (and may be taken over by another host) when it is
//! not refreshed within
//! [`MaildirOptions::maildrop_lock_stale`](crate::MaildirOptions::maildrop_lock_stale).
//! The store has no timers of its own: the server that holds a maildrop gets
//! a [`LockKeepAlive`] from [`Maildrop::lock_keep_alive`](crate::Maildrop::lock_keep_alive)
//! and calls [`LockKeepAlive::refresh`] every [`LockKeepAlive::every`].

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::Error;

/// A lock that can be kept from turning stale.
pub(crate) trait Refresh: Send + Sync + fmt::Debug {
    /// Marks the lock as alive now; an error when it is no longer ours.
    fn refresh(&self) -> Result<(), Error>;
}

/// Refreshes one maildrop's lock; does not keep the lock itself (once the
/// maildrop is committed or dropped, [`LockKeepAlive::refresh`] does nothing).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::{MaildirOptions, MaildirStore, Mailstore, UserName};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let store = MaildirStore::new(root.path(), MaildirOptions::default())?;
/// let joe = UserName::new("joe")?;
/// store.create_user(&joe)?;
/// let md = store.open_maildrop(&joe)?;
/// let keep = md.lock_keep_alive().expect("a Maildir maildrop has a lock file");
/// assert_eq!(keep.every(), MaildirOptions::default().maildrop_lock_stale / 3);
/// assert!(keep.refresh()?); // the lock is held and now fresh
/// drop(md);
/// assert!(!keep.refresh()?); // released with the maildrop
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockKeepAlive {
    lock: Weak<dyn Refresh>,
    every: Duration,
}

impl fmt::Debug for LockKeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockKeepAlive")
            .field("every", &self.every)
            .field("held", &(self.lock.strong_count() > 0))
            .finish()
    }
}

impl LockKeepAlive {
    pub(crate) fn new(lock: &Arc<dyn Refresh>, every: Duration) -> LockKeepAlive {
        LockKeepAlive {
            lock: Arc::downgrade(lock),
            every,
        }
    }

    /// How often to call [`LockKeepAlive::refresh`]: a third of the time
    /// after which the lock turns stale.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Refreshes the lock: `Ok(true)` when it was held and is now fresh,
    /// `Ok(false)` when the maildrop was already released.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the lock file cannot be touched, or when it is no
    /// longer this maildrop's (it was left unrefreshed past its stale
    /// timeout and another session took it over).
    pub fn refresh(&self) -> Result<bool, Error> {
        match self.lock.upgrade() {
            Some(lock) => lock.refresh().map(|()| true),
            None => Ok(false),
        }
    }
}
