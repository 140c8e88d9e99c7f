//! One Redis connection for what several hosts share (`[cluster] redis`):
//! made on first use, made again after any failed command (so that
//! everything resumes by itself when Redis is back), every command bounded
//! by `[cluster] redis_timeout`. A command that finds the connection dropped
//! (Redis restarted since the last command) is sent once more on a new
//! one: it never reached the Redis that runs now.

use std::time::Duration;

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
}

/// Told the outcome of every command (`true`: answered): the server's metrics.
pub type Observer = Box<dyn Fn(bool) + Send + Sync>;

/// A lazily made, self-repairing connection to one Redis.
pub struct RedisConn {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    observer: Option<Observer>,
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
            conn: Mutex::new(None),
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

    /// The connection, and whether it was made just now.
    async fn connection(&self) -> Result<(ConnectionManager, bool), RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok((c.clone(), false));
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
        .map_err(|_| RedisError::Timeout(self.timeout))??;
        *slot = Some(c.clone());
        Ok((c, true))
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
        let (c, fresh) = self.connection().await?;
        match self.run_on(c, cmd).await {
            Err(RedisError::Redis(e)) if !fresh && e.is_connection_dropped() => {
                let (c, _) = self.connection().await?;
                self.run_on(c, cmd).await
            }
            result => result,
        }
    }

    async fn run_on<T: redis::FromRedisValue>(
        &self,
        mut c: ConnectionManager,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let result = tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))
            .and_then(|r| r.map_err(RedisError::from));
        if result.is_err() {
            // A fresh connection for the next command: a manager that failed
            // while Redis was down may still hold that failure when it is back.
            *self.conn.lock().await = None;
        }
        result
    }
}
