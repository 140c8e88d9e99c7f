//! Keeps a POP3 session's maildrop lock file fresh: the Maildir's lock is a
//! dot-lock that another host takes over when it is left unrefreshed for
//! `[cluster] lock_lease` (a host that died), so while a session holds the
//! maildrop a task refreshes it through mailstore's
//! [`LockKeepAlive`] every third of that.

use std::time::Duration;

use mailbag_mailstore::LockKeepAlive;
use tokio::task::JoinHandle;
use tracing::{error, warn};

/// The refreshing task of one session; stopped when dropped.
#[derive(Debug)]
pub struct LockKeeper {
    task: JoinHandle<()>,
}

impl LockKeeper {
    /// Refreshes `keep` every [`LockKeepAlive::every`] until dropped (or
    /// until the maildrop is released). `user` names the maildrop in logs.
    pub fn start(keep: LockKeepAlive, user: String) -> LockKeeper {
        let task = tokio::spawn(async move {
            let every = keep.every().max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                let k = keep.clone();
                match tokio::task::spawn_blocking(move || k.refresh()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => return, // released
                    Ok(Err(e)) => {
                        error!(user, error = %e, "maildrop lock lost: another session may have taken over this maildrop");
                        return;
                    }
                    Err(e) => warn!(user, error = %e, "maildrop lock not refreshed"),
                }
            }
        });
        LockKeeper { task }
    }
}

impl Drop for LockKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
