//! The POP3 maildrop lock across hosts (`[cluster] redis`): before a host
//! opens a user's maildrop it takes a lease in Redis, `SET
//! mailbag:lock:<user>/<folder> <token> NX PXAT <now + lock_lease>`; a second
//! session on any host finds it taken (`-ERR [IN-USE]`). The holder renews
//! it every third of the lease while the session lives and deletes it at the
//! end, both only while the value is still its own token (a Lua script
//! compares and acts in one step). A host killed with SIGKILL renews nothing:
//! its users' leases expire within one lease. The local `flock` of the
//! maildrop is still taken under the lease.
//!
//! A `SET` that got no answer (Redis stalled) may still be run when Redis
//! resumes, after its session has gone on under the lock file alone and
//! perhaps ended: a lease nobody holds. Its expiry is a time (`PXAT`), not
//! a length, so it ends when it would have ended had it been run at once,
//! and until then the host that sent it keeps trying to delete it with its
//! token ([`MaildropLeases::acquire`]). This needs Redis 6.2 or later, and
//! the hosts' clocks to agree with Redis's within a fraction of the lease.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailbag_mailstore::{Folder, UserName};
use tracing::{debug, warn};

use crate::redis_conn::{RedisConn, RedisError};

/// The prefix of every lease key.
pub const LOCK_KEY_PREFIX: &str = "mailbag:lock:";

/// Renews (PEXPIRE) only while the key holds our token.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// Deletes only while the key holds our token.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";

/// Why no lease was taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another session (on this host or another) holds it.
    #[error("maildrop in use on some host")]
    InUse,
    /// Redis could not be asked: `-ERR [SYS/TEMP]`.
    #[error(transparent)]
    Unavailable(#[from] RedisError),
    /// The OS gave no random token.
    #[error("no random lease token: {0}")]
    Token(String),
}

/// Takes maildrop leases in one Redis.
#[derive(Debug)]
pub struct MaildropLeases {
    redis: Arc<RedisConn>,
    lease: Duration,
}

impl MaildropLeases {
    /// Leases of `lease` length in `redis`.
    pub fn new(redis: Arc<RedisConn>, lease: Duration) -> MaildropLeases {
        MaildropLeases { redis, lease }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Takes the lease of `user`'s `folder` maildrop and keeps renewing it
    /// until the returned [`HeldLease`] is dropped. When Redis does not
    /// answer, the lease may still be taken later (when Redis runs the
    /// command it had not answered): a task then deletes it, asking every
    /// sixth of the lease until it is deleted or would have expired.
    ///
    /// # Errors
    ///
    /// [`LeaseError::InUse`] or [`LeaseError::Unavailable`].
    pub async fn acquire(
        self: &Arc<Self>,
        user: &UserName,
        folder: Folder,
    ) -> Result<HeldLease, LeaseError> {
        let key = format!("{LOCK_KEY_PREFIX}{}/{}", user.as_str(), folder.name());
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| LeaseError::Token(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires = unix_millis().saturating_add(self.millis());
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&token).arg("NX").arg("PXAT").arg(expires);
        let taken: Option<String> = match self.redis.run(&set).await {
            Ok(taken) => taken,
            Err(e) => {
                // A SET never sent (Redis known down) cannot be run later.
                if !matches!(e, RedisError::Down(_)) {
                    tokio::spawn(withdraw(Arc::clone(self), key, token, expires));
                }
                return Err(e.into());
            }
        };
        if taken.is_none() {
            return Err(LeaseError::InUse);
        }
        let renewer = tokio::spawn(renew(Arc::clone(self), key.clone(), token.clone()));
        Ok(HeldLease {
            leases: Arc::clone(self),
            key,
            token,
            renewer,
        })
    }
}

/// Milliseconds since the Unix epoch.
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Deletes a lease whose `SET` got no answer, in case Redis runs it later:
/// every sixth of the lease until a delete finds it, or until `expires`
/// (Unix milliseconds), when Redis drops it anyway.
async fn withdraw(leases: Arc<MaildropLeases>, key: String, token: String, expires: u64) {
    let every = leases.lease / 6;
    while unix_millis() < expires {
        tokio::time::sleep(every).await;
        if let Ok(1) = leases.redis.run::<i64>(&release_cmd(&key, &token)).await {
            warn!(
                key,
                "a maildrop lease Redis took after its session gave up on it was deleted"
            );
            return;
        }
    }
}

/// Renews every third of the lease until aborted.
async fn renew(leases: Arc<MaildropLeases>, key: String, token: String) {
    let every = leases.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW)
            .arg(1)
            .arg(&key)
            .arg(&token)
            .arg(leases.millis());
        match leases.redis.run::<i64>(&cmd).await {
            Ok(1) => debug!(key, "maildrop lease renewed"),
            Ok(_) => warn!(
                key,
                "maildrop lease lost (expired and taken, or Redis restarted)"
            ),
            Err(e) => warn!(key, error = %e, "maildrop lease not renewed"),
        }
    }
}

/// A lease held for one POP3 session; renewed until dropped, then released.
#[derive(Debug)]
pub struct HeldLease {
    leases: Arc<MaildropLeases>,
    key: String,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    /// Releases the lease now and waits for Redis to confirm, so that the
    /// client's next session (which may follow at once, on any host) finds
    /// the maildrop free. If Redis cannot be asked the lease expires by
    /// itself.
    pub async fn release(mut self) {
        self.renewer.abort();
        let key = std::mem::take(&mut self.key);
        let token = std::mem::take(&mut self.token);
        release(&self.leases, &key, &token).await;
    }
}

/// The compare-and-`DEL` of `key` while it holds `token`.
fn release_cmd(key: &str, token: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(RELEASE).arg(1).arg(key).arg(token);
    cmd
}

async fn release(leases: &MaildropLeases, key: &str, token: &str) {
    if let Err(e) = leases.redis.run::<i64>(&release_cmd(key, token)).await {
        warn!(key, error = %e, "maildrop lease not released: it expires by itself");
    }
}

impl Drop for HeldLease {
    /// Without [`HeldLease::release`] (a session that ended abruptly): the
    /// lease is released off the session's path.
    fn drop(&mut self) {
        self.renewer.abort();
        if self.key.is_empty() {
            return; // released already
        }
        let (leases, key, token) = (
            Arc::clone(&self.leases),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        tokio::spawn(async move { release(&leases, &key, &token).await });
    }
}
