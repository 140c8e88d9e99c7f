//! Where this server keeps POP-before-SMTP authorizations: pop-before-smtp's
//! table in memory (the default), or Redis shared by several hosts
//! (`[cluster] redis`), both through pop-before-smtp's
//! [`RelayStore`] interface, which POP3, SMTP and the Postfix policy
//! listener (`[pop_before_smtp] policy_listen`) use alike.
//!
//! On Redis a login is `SET <key> <user> PX <window>` (a later login
//! overwrites it, which refreshes the window) and a relay check is
//! `GET <key>` (the user, for the logs) or `EXISTS <key>`, the key named by
//! [`shared_key`]. Each command
//! has `[cluster] redis_timeout`; a Redis that is down or slow is an error
//! the caller turns into "no relay" (`451 4.3.0`), never into a relay, but
//! for a login this host made and could not write to Redis yet
//! ([`RedisRelay`] keeps those in memory for their window). The
//! connection is made on first use and re-made by redis-rs's connection
//! manager after Redis comes back.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use mailbag_pop_before_smtp::policy::{Decision, PolicyRequest};
use mailbag_pop_before_smtp::store::{RelayStore, shared_key};
use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};

use crate::redis_conn::{RedisConn, RedisError};

/// The prefix of every relay key in Redis.
pub const REDIS_KEY_PREFIX: &str = "mailbag:relay:";

/// Why the shared table could not answer.
pub type RelayStoreError = RedisError;

/// The POP-before-SMTP table on Redis.
///
/// A login this host could not write to Redis (down, or not answering) is
/// kept in this host's memory until it is written (the POP3 side retries) or
/// its window ends: this host's relay checks find it there, so a customer
/// whose login got `+OK` during a Redis outage relays through this host
/// rather than getting a permanent `554` (other hosts see it once written).
#[derive(Debug)]
pub struct RedisRelay {
    redis: Arc<RedisConn>,
    options: RelayOptions,
    unrecorded: SharedRelayTable,
}

impl RedisRelay {
    /// A table on `redis`, keyed as `options` normalise addresses.
    pub fn new(redis: Arc<RedisConn>, options: RelayOptions) -> RedisRelay {
        RedisRelay {
            redis,
            unrecorded: SharedRelayTable::new(options.clone()),
            options,
        }
    }

    /// The user of a login from `ip` this host made but could not write to
    /// Redis, while its window lasts.
    fn unrecorded_user(&self, ip: IpAddr) -> Option<String> {
        self.unrecorded
            .lookup(ip, Instant::now())
            .map(|e| e.user().to_owned())
    }

    /// Asks Redis `PING` (at start-up: `redis_up` and the log then tell at
    /// once whether it answers, not at the first login).
    ///
    /// # Errors
    ///
    /// No connection, a refusal, or no answer in time.
    pub async fn ping(&self) -> Result<(), RelayStoreError> {
        self.redis
            .run::<String>(&redis::cmd("PING"))
            .await
            .map(drop)
    }

    /// Asks Redis `PING` every `interval` (`[cluster] ping_interval`) until
    /// `shutdown`, so that `redis_up` follows Redis when no client uses it
    /// (an outage in a quiet hour, a return before the first login), and
    /// every host shows the same.
    pub async fn watch(
        &self,
        interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    let _ = self.ping().await;
                }
            }
        }
    }
}

impl RelayStore for RedisRelay {
    type Error = RelayStoreError;

    fn record_login(
        &self,
        ip: IpAddr,
        user: &str,
        now: Instant,
    ) -> impl Future<Output = Result<(), RelayStoreError>> + Send {
        // The window runs from the login (`now`), also for a record retried
        // after Redis came back: what is left of it.
        let left = self.options.window.saturating_sub(now.elapsed());
        let key = shared_key(REDIS_KEY_PREFIX, ip, &self.options);
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(user).arg("PX").arg(left_ms.max(1));
        let user = user.to_owned();
        async move {
            if left.is_zero() {
                return Ok(()); // over already: nothing to record
            }
            match self.redis.run::<()>(&cmd).await {
                Ok(()) => {
                    self.unrecorded.remove(ip);
                    Ok(())
                }
                Err(e) => {
                    self.unrecorded.record_login(ip, &user, now);
                    Err(e)
                }
            }
        }
    }

    fn is_authorized(
        &self,
        ip: IpAddr,
        _now: Instant,
    ) -> impl Future<Output = Result<bool, RelayStoreError>> + Send {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(shared_key(REDIS_KEY_PREFIX, ip, &self.options));
        async move {
            match self.redis.run::<u64>(&cmd).await {
                Ok(n) if n > 0 => Ok(true),
                Ok(_) => Ok(self.unrecorded_user(ip).is_some()),
                Err(_) if self.unrecorded_user(ip).is_some() => Ok(true),
                Err(e) => Err(e),
            }
        }
    }
}

/// The table this server uses (POP3, SMTP and the policy listener); clones
/// share it.
#[derive(Clone, Debug)]
pub enum RelayBackend {
    /// This process's memory (one host).
    Memory(SharedRelayTable),
    /// Redis, shared by every host that names it.
    Redis(Arc<RedisRelay>),
}

impl RelayStore for RelayBackend {
    type Error = RelayStoreError;

    async fn record_login(
        &self,
        ip: IpAddr,
        user: &str,
        now: Instant,
    ) -> Result<(), RelayStoreError> {
        match self {
            RelayBackend::Memory(t) => {
                t.record_login(ip, user, now);
                Ok(())
            }
            RelayBackend::Redis(r) => RelayStore::record_login(&**r, ip, user, now).await,
        }
    }

    async fn is_authorized(&self, ip: IpAddr, now: Instant) -> Result<bool, RelayStoreError> {
        match self {
            RelayBackend::Memory(t) => Ok(t.is_authorized(ip, now)),
            RelayBackend::Redis(r) => RelayStore::is_authorized(&**r, ip, now).await,
        }
    }

    /// The memory table's decision names the POP3 user; Redis's names the
    /// address only.
    async fn decide(
        &self,
        request: &PolicyRequest<'_>,
        now: Instant,
    ) -> Result<Decision, RelayStoreError> {
        match self {
            RelayBackend::Memory(t) => Ok(t.decide(request, now)),
            RelayBackend::Redis(r) => RelayStore::decide(&**r, request, now).await,
        }
    }
}

impl RelayBackend {
    /// Records a successful login made at `logged_in` (its window runs from
    /// then, also when the record is retried later).
    ///
    /// # Errors
    ///
    /// The shared table could not be written.
    pub async fn record_login(
        &self,
        ip: IpAddr,
        user: &str,
        logged_in: Instant,
    ) -> Result<(), RelayStoreError> {
        RelayStore::record_login(self, ip, user, logged_in).await
    }

    /// The POP3 user whose login lets `ip` relay now (the latest login
    /// from it), or `None`: `ip` may not relay. For the logs of what was
    /// relayed (abuse handling): on Redis `GET <key>`.
    ///
    /// # Errors
    ///
    /// The shared table could not be read: the caller must not relay.
    pub async fn authorizing_user(&self, ip: IpAddr) -> Result<Option<String>, RelayStoreError> {
        match self {
            RelayBackend::Memory(t) => {
                Ok(t.lookup(ip, Instant::now()).map(|e| e.user().to_owned()))
            }
            RelayBackend::Redis(r) => {
                let mut cmd = redis::cmd("GET");
                cmd.arg(shared_key(REDIS_KEY_PREFIX, ip, &r.options));
                match r.redis.run::<Option<String>>(&cmd).await {
                    Ok(Some(user)) => Ok(Some(user)),
                    Ok(None) => Ok(r.unrecorded_user(ip)),
                    Err(e) => r.unrecorded_user(ip).map(Some).ok_or(e),
                }
            }
        }
    }

    /// Removes the relay authorizations that logins of `users` made before
    /// `logged_in_before` (the reload that found them removed, with a new
    /// password or barred; a login since, with the new password, stays):
    /// returns how many. On Redis the table's keys are read with `SCAN`,
    /// [`REVOKE_SCAN_BATCH`] at a time, and each batch's keys naming one of
    /// `users` and set before then (told by what is left of their window)
    /// are deleted by a short script: Redis is never held for the whole
    /// table. Every host of a cluster does so at its own reload; the second
    /// finds nothing.
    ///
    /// # Errors
    ///
    /// The shared table could not be read or written.
    pub async fn revoke_users(
        &self,
        users: &[String],
        logged_in_before: Instant,
    ) -> Result<usize, RelayStoreError> {
        match self {
            RelayBackend::Memory(t) => Ok(users
                .iter()
                .map(|u| t.revoke_user(u, logged_in_before))
                .sum()),
            RelayBackend::Redis(r) => {
                let mut revoked = 0;
                for u in users {
                    revoked += r.unrecorded.revoke_user(u, logged_in_before);
                }
                let mut cursor = "0".to_owned();
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(&cursor)
                        .arg("MATCH")
                        .arg(format!("{REDIS_KEY_PREFIX}*"))
                        .arg("COUNT")
                        .arg(REVOKE_SCAN_BATCH);
                    let (next, keys): (String, Vec<String>) = r.redis.run(&scan).await?;
                    if !keys.is_empty() {
                        // A key whose time left is above this was set after
                        // `logged_in_before` (its expiry is its login + window).
                        let keep_above =
                            r.options.window.saturating_sub(logged_in_before.elapsed());
                        let mut cmd = redis::cmd("EVAL");
                        cmd.arg(REVOKE_SCRIPT)
                            .arg(keys.len())
                            .arg(&keys)
                            .arg(u64::try_from(keep_above.as_millis()).unwrap_or(u64::MAX))
                            .arg(users);
                        revoked += r.redis.run::<usize>(&cmd).await?;
                    }
                    if next == "0" {
                        return Ok(revoked);
                    }
                    cursor = next;
                }
            }
        }
    }
}

/// How many relay keys one `SCAN` step of [`RelayBackend::revoke_users`]
/// asks for.
pub const REVOKE_SCAN_BATCH: usize = 1000;

/// Deletes those of `KEYS` whose value is one of `ARGV[2..]` and whose time
/// left is at most `ARGV[1]` milliseconds (set before the revocation);
/// returns how many.
const REVOKE_SCRIPT: &str = r#"
local keep_above = tonumber(ARGV[1])
local n = 0
for _, key in ipairs(KEYS) do
  local v = redis.call("GET", key)
  if v then
    for i = 2, #ARGV do
      if v == ARGV[i] then
        if redis.call("PTTL", key) <= keep_above then
          redis.call("DEL", key)
          n = n + 1
        end
        break
      end
    end
  end
end
return n
"#;
