//! The retention sweeper: removes Spam saved more than `spam.spam_retention`
//! ago (by the time it was saved into the folder, never its Date header),
//! once at start-up and then every `spam.sweep_interval`; and what deliveries
//! interrupted by a crash left in each user's `tmp/` directories (older than
//! 36 hours), which a POP3 login also removes, for users who never log in.

use std::sync::Arc;
use std::time::SystemTime;

use mailbag_mailstore::{Folder, Mailstore, UserName};
use tracing::{debug, info, warn};

use crate::context::Context;

/// One sweep over `users`: removes their Spam saved before
/// `now - retention`. A failure for one user is logged and the others are
/// still swept. Returns how many messages were removed.
pub fn sweep_once(
    store: &dyn Mailstore,
    users: &[UserName],
    retention: std::time::Duration,
    now: SystemTime,
) -> usize {
    let cutoff = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = 0;
    for name in users {
        match store.remove_interrupted_deliveries(name) {
            Ok(0) | Err(mailbag_mailstore::Error::UnknownUser(_)) => {}
            Ok(n) => {
                info!(user = %name, files = n, "removed files of interrupted deliveries from tmp/")
            }
            Err(e) => warn!(user = %name, error = %e, "cleaning tmp/ failed for user"),
        }
        match store.expunge_older_than(name, Folder::Spam, cutoff) {
            Ok(n) => removed += n,
            // Removed (or replaced by a bare directory) since the users were
            // listed: nothing to sweep, nothing wrong.
            Err(mailbag_mailstore::Error::UnknownUser(_)) => {
                debug!(user = %name, "no Maildir any more: not swept");
            }
            Err(e) => warn!(user = %name, error = %e, "retention sweep failed for user"),
        }
    }
    removed
}

/// Runs the sweeper until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let retention = ctx.config().spam.spam_retention;
    let mut interval = tokio::time::interval(ctx.config().spam.sweep_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let c = Arc::clone(&ctx);
        let result = tokio::task::spawn_blocking(move || {
            let config = c.config();
            let users: Vec<UserName> = c
                .users_with_maildir(&config)
                .map(|u| u.name.clone())
                .collect();
            sweep_once(c.store.as_ref(), &users, retention, SystemTime::now())
        })
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => {
                ctx.metrics.retention_deleted(n as u64);
                info!(removed = n, "retention sweep removed old Spam");
            }
            Err(e) => warn!(error = %e, "retention sweep task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbag_mailstore::{MaildirOptions, MaildirStore};
    use std::fs::File;
    use std::time::Duration;

    fn backdate(path: &std::path::Path, to: SystemTime) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(to).unwrap();
    }

    #[test]
    fn removes_old_spam_keeps_recent_and_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = MaildirStore::new(dir.path(), MaildirOptions::default()).unwrap();
        let joe = UserName::new("joe").unwrap();
        store.create_user(&joe).unwrap();
        for folder in [Folder::Spam, Folder::Spam, Folder::Inbox] {
            let mut d = store.begin_delivery(&joe, folder).unwrap();
            d.write_chunk(b"Subject: x\r\n\r\ny\r\n").unwrap();
            d.commit().unwrap();
        }
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let mut ages = [8 * day, 6 * day].into_iter();
        for e in std::fs::read_dir(dir.path().join("joe/.Spam/new")).unwrap() {
            backdate(&e.unwrap().path(), now - ages.next().unwrap());
        }
        for e in std::fs::read_dir(dir.path().join("joe/new")).unwrap() {
            backdate(&e.unwrap().path(), now - 30 * day);
        }
        // What interrupted deliveries left: a 10-day-old file in each tmp/
        // goes, a fresh one stays (a probe found .Spam/tmp never cleaned for
        // a user who never logged in).
        for (tmp, age) in [
            ("joe/tmp", 10 * day),
            ("joe/.Spam/tmp", 10 * day),
            ("joe/.Spam/tmp", day / 24),
        ] {
            let p = dir.path().join(tmp).join(format!("left.{}", age.as_secs()));
            std::fs::write(&p, "half a message").unwrap();
            backdate(&p, now - age);
        }
        let users = vec![UserName::new("nobody").unwrap(), joe.clone()];
        assert_eq!(sweep_once(&store, &users, 7 * day, now), 1);
        let count = |d: &str| std::fs::read_dir(dir.path().join(d)).unwrap().count();
        assert_eq!(count("joe/tmp"), 0);
        assert_eq!(count("joe/.Spam/tmp"), 1);
        assert_eq!(store.list(&joe, Folder::Spam).unwrap().len(), 1);
        assert_eq!(store.list(&joe, Folder::Inbox).unwrap().len(), 1);
        assert_eq!(sweep_once(&store, &users, 7 * day, now), 0);
    }
}
