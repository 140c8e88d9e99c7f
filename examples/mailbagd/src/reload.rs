//! Live reload: SIGHUP (`systemctl reload`) re-reads the configuration file,
//! the passwd-file and the TLS certificate and key, and the passwd-file is
//! also re-read by itself when its modification time, size, inode or status
//! change time changes (the last for `chmod`/`chown`, which can fix a
//! reload that failed for want of permission)
//! (looked at every `[userdb] check_interval`), so that `mailbagd user add`
//! takes effect without a signal.
//!
//! A reload builds a whole new [`Live`] and swaps it in: sessions that have
//! begun keep the one they took (an SMTP transaction is delivered with the
//! users its recipients were checked against), new ones get the new one. A
//! POP3 login checks the password against the users of the moment.
//!
//! A reload that fails (a syntax error, an unreadable file, a bad
//! certificate) keeps the running state and logs one error; a bad
//! passwd-file line is skipped and logged with its line number, as at
//! start-up (`--check` refuses it). Keys the running server cannot change
//! ([`Config::restart_keys`]: listen addresses, `data_dir`, the relay queue,
//! the limiters' sizes) keep their running values and are logged as
//! "needs restart".
//!
//! A passwd-file rewritten in place (not renamed over) could be read half
//! written, and the users of its missing half refused as unknown (`550`)
//! until the next check. So a change is read only once the file has looked
//! the same at two checks in a row, and a read during which the file
//! changed is not used (it is read again at the next checks); a SIGHUP reads
//! at once but is held to the second rule too.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::context::{Context, ContextError, Live};

/// Why a reload kept the running state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The configuration (or the passwd-file) could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key, or the tag template, is unusable.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The new configuration has no `[tls]`, but listeners the server keeps until a
    /// restart need it (`tls_listen`, `web.tls`): applied, they would accept
    /// connections and close each at once, silently (a probe's "turn TLS off" edit).
    #[error(
        "[tls] is removed, but the running {keys} need it until a restart: refused, \
         the running configuration is kept (restart to turn TLS off)"
    )]
    TlsStillNeeded {
        /// The keys that need it, e.g. `pop3.tls_listen, web.tls`.
        keys: String,
    },
    /// The passwd-file changed while it was read: what was read may be half
    /// a file. It is read again once it holds still.
    #[error("the passwd-file changed while it was read; it is read again once it holds still")]
    ChangedWhileRead,
    /// The passwd-file had users and now has none, and is empty or holds
    /// only lines that are no user (its `[[users]]` are still there): a file
    /// cut short or garbled would otherwise lock out every user it had, with
    /// no more than an `INFO` line (a probe's). A file of comments and blank
    /// lines alone is a removal on purpose, and applies.
    #[error(
        "{path} has no users now (it had {had}) and is {what}: refused, as a file cut short or garbled \
         would lock them all out; to remove every user, leave a comment line in it"
    )]
    PasswdFileEmptied {
        /// The passwd-file.
        path: String,
        /// Its users in the running configuration.
        had: usize,
        /// `"empty"` or `"only bad lines"`.
        what: &'static str,
    },
}

/// What a reload that succeeded did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Users now configured.
    pub users: usize,
    /// Bad passwd-file lines left out, each with its line number.
    pub skipped: Vec<String>,
    /// Keys whose new value needs a restart (the running value is kept).
    pub needs_restart: Vec<&'static str>,
    /// Users whose relay authorizations no longer hold: removed, their
    /// password changed, or logins turned off (`nologin`).
    pub revoked: Vec<String>,
    /// When the new users took effect: logins before it are the ones
    /// revoked.
    pub taken_effect: std::time::Instant,
}

/// What identifies a version of the passwd-file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
    dev: u64,
    /// Status change time: `chmod`/`chown` change it and nothing else here.
    changed: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            ino: m.ino(),
            dev: m.dev(),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// What the watcher knows of the passwd-file.
#[derive(Debug)]
struct Watch {
    /// The version last read (`None` inside: the file was missing), or
    /// `None`: read it again (the last read saw it change).
    read: Option<Option<FileStamp>>,
    /// The version the last check saw.
    seen: Option<FileStamp>,
}

impl Watch {
    /// One check that found the file at `now`: whether to read it. A new
    /// version is read only when the check before saw the same one: a file
    /// being written looks different at each check.
    fn check(&mut self, now: Option<FileStamp>) -> bool {
        let settled = now == self.seen;
        self.seen = now;
        if self.read == Some(now) || !settled {
            return false;
        }
        // A failing reload of this version is logged once, not every check.
        self.read = Some(now);
        true
    }
}

/// Runs `read`, and gives what it read only if the file at `path` (when
/// there is one) is still at `before` afterwards.
fn read_while_still<T>(
    path: Option<&Path>,
    before: Option<FileStamp>,
    read: impl FnOnce() -> T,
) -> Option<T> {
    let got = read();
    match path {
        Some(p) if FileStamp::of(p) != before => None,
        _ => Some(got),
    }
}

/// Reloads one server's [`Context`]: remembers the restart-only keys it
/// started with and the passwd-file version last read.
#[derive(Debug)]
pub struct Reloader {
    started: Vec<(&'static str, String)>,
    watch: Mutex<Watch>,
}

impl Reloader {
    /// A reloader for a server started with `config` as loaded (before
    /// port 0 was replaced by the port bound): the values of
    /// [`Config::restart_keys`] a reload compares with.
    pub fn new(config: &Config) -> Reloader {
        let stamp = config.userdb.passwd_file.as_deref().and_then(FileStamp::of);
        Reloader {
            started: config.restart_keys(),
            watch: Mutex::new(Watch {
                read: Some(stamp),
                seen: stamp,
            }),
        }
    }

    /// Reloads now: reads the configuration again ([`Config::reload`]),
    /// makes a new [`Live`] and puts it in `ctx`. Reads files: call it off
    /// the reactor. Counted in `ctx.metrics`, but for
    /// [`ReloadError::ChangedWhileRead`] (the read is done again).
    ///
    /// # Errors
    ///
    /// [`ReloadError`]: nothing changed.
    pub fn reload(&self, ctx: &Context) -> Result<ReloadReport, ReloadError> {
        let result = self.try_reload(ctx);
        // A read that saw the file change is done again: no outcome yet.
        if !matches!(result, Err(ReloadError::ChangedWhileRead)) {
            ctx.metrics.reload(result.is_ok());
        }
        result
    }

    fn try_reload(&self, ctx: &Context) -> Result<ReloadReport, ReloadError> {
        let running = ctx.config();
        // Stamped before reading, so that a change made while reading is
        // seen by the next check.
        let path = running.userdb.passwd_file.as_deref();
        let stamp = path.and_then(FileStamp::of);
        let Some(loaded) = read_while_still(path, stamp, || running.reload()) else {
            self.watch().read = None;
            return Err(ReloadError::ChangedWhileRead);
        };
        let (mut config, skipped) = loaded?;
        let from_file = |c: &Config| {
            c.users
                .iter()
                .filter(|u| u.passwd_file_line.is_some())
                .count()
        };
        let had = from_file(&running);
        if let Some(p) = config.userdb.passwd_file.as_deref()
            && had > 0
            && from_file(&config) == 0
        {
            let empty = std::fs::metadata(p).is_ok_and(|m| m.len() == 0);
            if empty || !skipped.is_empty() {
                return Err(ReloadError::PasswdFileEmptied {
                    path: p.display().to_string(),
                    had,
                    what: if empty { "empty" } else { "only bad lines" },
                });
            }
        }
        let new_keys = config.restart_keys();
        let needs_restart: Vec<&'static str> = new_keys
            .iter()
            .zip(&self.started)
            .filter(|((_, new), (_, old))| new != old)
            .map(|((key, _), _)| *key)
            .collect();
        config.keep_restart_keys(&running);
        if config.tls.is_none() {
            let keys = config.keys_needing_tls();
            if !keys.is_empty() {
                return Err(ReloadError::TlsStillNeeded {
                    keys: keys.join(", "),
                });
            }
        }
        let users = config.users.len();
        // POP-before-SMTP authorizations made by logins that the new users
        // would refuse: a compromised account removed, or its password reset,
        // stops relaying now, not a window later.
        let revoked: Vec<String> = running
            .users
            .iter()
            .filter(|old| {
                config.user(old.name.as_str()).is_none_or(|new| {
                    new.name != old.name
                        || new.credential.stamp() != old.credential.stamp()
                        || (new.nologin && !old.nologin)
                })
            })
            .map(|old| old.name.as_str().to_owned())
            .collect();
        // The passwd-file the new configuration names (it may have changed).
        let new_stamp = match config.userdb.passwd_file.as_deref() {
            p if p == path => stamp,
            Some(p) => FileStamp::of(p),
            None => None,
        };
        let live = Live::new(config)?;
        ctx.replace_live(live);
        let taken_effect = std::time::Instant::now();
        self.watch().read = Some(new_stamp);
        Ok(ReloadReport {
            users,
            skipped,
            needs_restart,
            revoked,
            taken_effect,
        })
    }

    /// Whether the passwd-file of the running configuration is to be read
    /// again: it changed (modification time, size, inode or status change
    /// time) since it was last read, or that read saw it change, and the
    /// check before this one saw it as it is now. Calls `stat`; call it
    /// every `[userdb] check_interval`.
    pub fn passwd_file_changed(&self, ctx: &Context) -> bool {
        let config = ctx.config();
        let Some(path) = config.userdb.passwd_file.as_deref() else {
            return false;
        };
        let now = FileStamp::of(path);
        self.watch().check(now)
    }

    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reloads off the reactor and logs the outcome: one line for a success,
/// one warning per skipped line and per key that needs a restart, one error
/// for a failure. `why` says what asked for it (`SIGHUP`, `passwd-file
/// changed`).
pub async fn reload_and_log(ctx: &Arc<Context>, reloader: &Arc<Reloader>, why: &'static str) {
    let (c, r) = (Arc::clone(ctx), Arc::clone(reloader));
    let result = tokio::task::spawn_blocking(move || r.reload(&c)).await;
    match result {
        Ok(Ok(report)) => {
            for line in &report.skipped {
                error!("{line}");
            }
            for key in &report.needs_restart {
                warn!(
                    key,
                    "changed in the configuration: needs restart (the running value is kept)"
                );
            }
            info!(
                reason = why,
                users = report.users,
                skipped_lines = report.skipped.len(),
                "configuration reloaded"
            );
            if !report.revoked.is_empty() {
                let ctx = Arc::clone(ctx);
                tokio::spawn(async move {
                    revoke_relay(&ctx, &report.revoked, report.taken_effect).await;
                });
            }
        }
        Ok(Err(e @ ReloadError::ChangedWhileRead)) => {
            warn!(reason = why, "{e}");
        }
        Ok(Err(e)) => {
            // One line: a TOML error's own lines (its caret diagram) joined.
            let e = e.to_string();
            let e = e
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" | ");
            error!(reason = why, error = %e, "reload failed: keeping the running configuration");
        }
        Err(e) => {
            error!(reason = why, error = %e, "reload task failed: keeping the running configuration");
        }
    }
}

/// Revokes the POP-before-SMTP authorizations that logins of `users` made
/// before `taken_effect`, trying again after 1, 2, 4 and then every
/// [`REVOKE_RETRY_MAX`] while the table cannot be written, until it is or the
/// window of those logins has passed (then there is nothing left to
/// revoke). Meanwhile the SMTP side refuses relay for a removed user anyway.
async fn revoke_relay(ctx: &Context, users: &[String], taken_effect: std::time::Instant) {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match ctx.relay_store.revoke_users(users, taken_effect).await {
            Ok(n) => {
                info!(
                    users = users.join(","),
                    addresses = n,
                    "relay authorizations revoked: the users were removed or their password or login changed"
                );
                return;
            }
            Err(e) => {
                if taken_effect.elapsed() >= ctx.config().pop_before_smtp.window {
                    warn!(users = users.join(","), error = %e, "relay authorizations not revoked: their window is over anyway");
                    return;
                }
                warn!(users = users.join(","), error = %e, "cannot revoke relay authorizations yet: retrying");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(REVOKE_RETRY_MAX);
    }
}

/// The longest wait between two tries of a revocation that Redis could not
/// take: soon after Redis is back, it is done.
pub const REVOKE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs until shutdown: reloads on each SIGHUP (`hangups`), and when the
/// passwd-file changed, looked at every `[userdb] check_interval`.
pub async fn run(
    ctx: Arc<Context>,
    reloader: Arc<Reloader>,
    mut hangups: Option<tokio::signal::unix::Signal>,
    notify: crate::service_manager::Notifier,
) {
    loop {
        let interval = ctx.config().userdb.check_interval;
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            Some(()) = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                notify.reloading();
                reload_and_log(&ctx, &reloader, "SIGHUP").await;
                notify.ready();
            }
            () = tokio::time::sleep(interval) => {
                let (c, r) = (Arc::clone(&ctx), Arc::clone(&reloader));
                let changed = tokio::task::spawn_blocking(move || r.passwd_file_changed(&c))
                    .await
                    .unwrap_or(false);
                if changed {
                    reload_and_log(&ctx, &reloader, "passwd-file changed").await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64) -> Option<FileStamp> {
        Some(FileStamp {
            modified: None,
            len,
            ino: 1,
            dev: 1,
            changed: (0, 0),
        })
    }

    /// A file rewritten in place is read once two checks saw the same
    /// version, not while it changes from check to check.
    #[test]
    fn a_changed_file_is_read_once_it_holds_still() {
        let mut w = Watch {
            read: Some(stamp(10)),
            seen: stamp(10),
        };
        assert!(!w.check(stamp(10)), "unchanged");
        assert!(!w.check(stamp(3)), "first sight of a change");
        assert!(!w.check(stamp(7)), "still changing");
        assert!(!w.check(stamp(12)), "first sight of the last version");
        assert!(w.check(stamp(12)), "held still");
        assert!(!w.check(stamp(12)), "read already");
        // Gone: read once (the failure is logged once), then not again.
        assert!(!w.check(None));
        assert!(w.check(None));
        assert!(!w.check(None));
        // Back as it was before: a new version.
        assert!(!w.check(stamp(12)));
        assert!(w.check(stamp(12)));
    }

    /// A read that saw the file change is done again at the next check,
    /// though the file holds still from then on.
    #[test]
    fn a_read_that_saw_a_change_is_done_again() {
        let mut w = Watch {
            read: None,
            seen: stamp(12),
        };
        assert!(w.check(stamp(12)));
        assert!(!w.check(stamp(12)));
    }

    #[test]
    fn a_read_during_which_the_file_changed_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "joe:{PLAIN}x\n").unwrap();
        let before = FileStamp::of(&path);
        assert_eq!(read_while_still(Some(&path), before, || 1), Some(1));
        assert_eq!(read_while_still(None, None, || 2), Some(2));
        let torn = read_while_still(Some(&path), before, || {
            std::fs::write(&path, "joe:{PLAIN}x\nann:{PLAIN}y\n").unwrap();
            3
        });
        assert_eq!(torn, None);
    }

    /// A probe fixed a passwd-file that a reload could not read with
    /// `chown`; the server never looked again, since only the owner changed.
    #[test]
    fn an_owner_or_mode_change_is_a_new_version() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "joe:{PLAIN}x\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = FileStamp::of(&path).unwrap();
        // ctime has nanoseconds on the file systems tests run on; make sure it moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let after = FileStamp::of(&path).unwrap();
        assert_eq!(
            (before.modified, before.len, before.ino),
            (after.modified, after.len, after.ino)
        );
        assert_ne!(before, after);
    }
}
