//! Where this server keeps POP-before-SMTP authorizations: pop-before-smtp's
//! table in memory (the default), or Redis shared by several hosts
//! (`[cluster] redis`), both through pop-before-smtp's
//! [`RelayStore`] interface.
//!
//! On Redis a login is `SET <key> <user> PX <window>` (a later login
//! overwrites it, which refreshes the window) and a relay check is
//! `EXISTS <key>`, the key named by
//! [`shared_key`]. Each command
//! has `[cluster] redis_timeout`; a Redis that is down or slow is an error
//! the caller turns into "no relay" (`451 4.3.0`), never into a relay. The
//! connection is made on first use and re-made by redis-rs's connection
//! manager after Redis comes back.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mailbag_pop_before_smtp::store::{RelayStore, shared_key};
use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// The prefix of every relay key in Redis.
pub const REDIS_KEY_PREFIX: &str = "mailbag:relay:";

/// Why the shared table could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayStoreError {
    /// Redis refused the command or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within `[cluster] redis_timeout`.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// The POP-before-SMTP table on Redis.
pub struct RedisRelay {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    options: RelayOptions,
    timeout: Duration,
}

impl std::fmt::Debug for RedisRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRelay")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRelay {
    /// A table on the Redis at `url` (`redis://HOST:PORT/DB`); connects on
    /// first use.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL.
    pub fn new(url: &str, options: RelayOptions, timeout: Duration) -> Result<RedisRelay, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisRelay {
            client,
            conn: Mutex::new(None),
            options,
            timeout,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, RelayStoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RelayStoreError::Timeout(self.timeout))??;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, RelayStoreError> {
        let mut c = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| RelayStoreError::Timeout(self.timeout))
            .and_then(|r| r.map_err(RelayStoreError::from));
        if result.is_err() {
            // A fresh connection for the next command: a manager that failed
            // while Redis was down may still hold that failure when it is back.
            *self.conn.lock().await = None;
        }
        result
    }
}

impl RelayStore for RedisRelay {
    type Error = RelayStoreError;

    fn record_login(
        &self,
        ip: IpAddr,
        user: &str,
        _now: Instant,
    ) -> impl Future<Output = Result<(), RelayStoreError>> + Send {
        let key = shared_key(REDIS_KEY_PREFIX, ip, &self.options);
        let window = u64::try_from(self.options.window.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(user).arg("PX").arg(window.max(1));
        async move { self.run::<()>(cmd).await }
    }

    fn is_authorized(
        &self,
        ip: IpAddr,
        _now: Instant,
    ) -> impl Future<Output = Result<bool, RelayStoreError>> + Send {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(shared_key(REDIS_KEY_PREFIX, ip, &self.options));
        async move { Ok(self.run::<u64>(cmd).await? > 0) }
    }
}

/// The table this server uses.
#[derive(Debug)]
pub enum RelayBackend {
    /// This process's memory (one host).
    Memory(SharedRelayTable),
    /// Redis, shared by every host that names it.
    Redis(Box<RedisRelay>),
}

impl RelayBackend {
    /// Records a successful login.
    ///
    /// # Errors
    ///
    /// The shared table could not be written.
    pub async fn record_login(&self, ip: IpAddr, user: &str) -> Result<(), RelayStoreError> {
        let now = Instant::now();
        match self {
            RelayBackend::Memory(t) => {
                t.record_login(ip, user, now);
                Ok(())
            }
            RelayBackend::Redis(r) => RelayStore::record_login(&**r, ip, user, now).await,
        }
    }

    /// Whether `ip` may relay now.
    ///
    /// # Errors
    ///
    /// The shared table could not be read: the caller must not relay.
    pub async fn is_authorized(&self, ip: IpAddr) -> Result<bool, RelayStoreError> {
        let now = Instant::now();
        match self {
            RelayBackend::Memory(t) => Ok(t.is_authorized(ip, now)),
            RelayBackend::Redis(r) => RelayStore::is_authorized(&**r, ip, now).await,
        }
    }
}
