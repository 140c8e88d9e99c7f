//! One Redis connection for what several hosts share (`[cluster] redis`):
//! made on first use, made again after any failed command (so that
//! everything resumes by itself when Redis is back), every command bounded
//! by `[cluster] redis_timeout`. A command that finds the connection dropped
//! (Redis restarted since the last command) is sent once more on a new
//! one: it never reached the Redis that runs now.
//!
//! After a failure, commands fail at once ([`RedisError::Down`]) for one
//! `redis_timeout`; then the next command tries again. Without that, the
//! commands of every POP3 login and relay check waited in line for the
//! connection, each attempt taking up to `redis_timeout`: with Redis
//! stopped, the tenth of ten logins at once was answered after 11 s and the
//! thirtieth of thirty after 49 s (a cluster probe).

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Redis refused the command or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within `[cluster] redis_timeout`.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
    /// Not tried: a command failed less than `redis_timeout` ago.
    #[error("redis: not tried, a command failed less than {0:?} ago")]
    Down(Duration),
}

/// Told the outcome of every command (`true`: answered): the server's metrics.
pub type Observer = Box<dyn Fn(bool) + Send + Sync>;

/// A lazily made, self-repairing connection to one Redis.
pub struct RedisConn {
    client: redis::Client,
    conn: Mutex<Slot>,
    timeout: Duration,
    observer: Option<Observer>,
}

/// The connection (with the number it was made under), or when the last one
/// failed.
#[derive(Default)]
struct Slot {
    conn: Option<(ConnectionManager, u64)>,
    made: u64,
    failed_at: Option<Instant>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    /// A connection to the Redis at `url` (`redis://HOST:PORT/DB`), made
    /// on first use.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisConn, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisConn {
            client,
            conn: Mutex::new(Slot::default()),
            timeout,
            observer: None,
        })
    }

    /// Has `observer` told the outcome of every command [`RedisConn::run`]
    /// runs (once per command, after its retry).
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> RedisConn {
        self.observer = Some(observer);
        self
    }

    /// The connection, its number, and whether it was made just now.
    async fn connection(&self) -> Result<(ConnectionManager, u64, bool), RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some((c, number)) = slot.conn.as_ref() {
            return Ok((c.clone(), *number, false));
        }
        if slot.failed_at.is_some_and(|at| at.elapsed() < self.timeout) {
            return Err(RedisError::Down(self.timeout));
        }
        // One attempt at a time; the commands waiting meanwhile see its
        // outcome (a failure: they fail at once).
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let made = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RedisError::Timeout(self.timeout))
        .and_then(|r| r.map_err(RedisError::from));
        match made {
            Ok(c) => {
                let number = slot.made.wrapping_add(1);
                *slot = Slot {
                    conn: Some((c.clone(), number)),
                    made: number,
                    failed_at: None,
                };
                Ok((c, number, true))
            }
            Err(e) => {
                slot.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Runs one command.
    ///
    /// # Errors
    ///
    /// [`RedisError`]: no connection, a refusal, or no answer in time (at
    /// most twice `[cluster] redis_timeout` when the connection was found
    /// dropped).
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let result = self.run_once_more_if_dropped(cmd).await;
        if let Some(observe) = &self.observer {
            observe(result.is_ok());
        }
        result
    }

    async fn run_once_more_if_dropped<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let (c, number, fresh) = self.connection().await?;
        match self.run_on(c, number, cmd).await {
            Err(RedisError::Redis(e)) if !fresh && e.is_connection_dropped() => {
                let (c, number, _) = self.connection().await?;
                self.run_on(c, number, cmd).await
            }
            result => result,
        }
    }

    async fn run_on<T: redis::FromRedisValue>(
        &self,
        mut c: ConnectionManager,
        number: u64,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let result = tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))
            .and_then(|r| r.map_err(RedisError::from));
        if let Err(e) = &result {
            // A fresh connection for the next command: a manager that failed
            // while Redis was down may still hold that failure when it is back.
            // Redis counts as down after no answer or a failed connection, not
            // after a dropped one (a restart: the command is sent once more)
            // or a refusal of the command.
            let down = match e {
                RedisError::Timeout(_) => true,
                RedisError::Redis(e) => {
                    !e.is_connection_dropped()
                        && (e.is_io_error() || e.is_timeout() || e.is_connection_refusal())
                }
                RedisError::Down(_) => false,
            };
            // Only the connection that failed: another command may have made
            // a good one since.
            let mut slot = self.conn.lock().await;
            if slot.conn.as_ref().is_some_and(|(_, n)| *n == number) {
                slot.conn = None;
                slot.failed_at = down.then(Instant::now);
            }
        }
        result
    }
}
