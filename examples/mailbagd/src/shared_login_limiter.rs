//! The login limiter's failure counts shared by every host (`[cluster]
//! redis`): the same two records as [`crate::login_limiter`] (the client
//! address, IPv6 by its /64, and the lower-cased user name), kept in Redis so
//! that a password guesser whom a balancer spreads over N hosts gets
//! `failures_before_lockout` tries in all, not N times that.
//!
//! A record is one counter, `mailbag:login:addr:<address>` or
//! `mailbag:login:user:<SHA-256 of the name, 32 hex digits>` (a long name
//! costs Redis nothing more). An attempt is one Lua script (`ATTEMPT`): if
//! either counter has reached `failures_before_lockout` the attempt is
//! refused with the larger time left of the two (the lock-out); otherwise
//! both are incremented and given `lockout` to live, so that a record is
//! forgotten `lockout` after its last failure and a lock-out lasts `lockout`
//! from the failure that reached the limit. A success (`SUCCEEDED`)
//! deletes the user name's counter and takes one from the address's, as the
//! host's own limiter does.
//!
//! Each host keeps counting in its own limiter too: while Redis cannot
//! answer, logins are limited per host as they are without `[cluster]`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::address_key;
use crate::login_limiter::LoginLimitOptions;
use crate::redis_conn::{RedisConn, RedisError};

/// The prefix of every login-limiter key in Redis.
pub const LOGIN_KEY_PREFIX: &str = "mailbag:login:";

/// `KEYS`: the address's and the user name's counters; `ARGV[1]`:
/// `failures_before_lockout`, `ARGV[2]`: `lockout` in milliseconds. Returns
/// `{0, ms left}` when locked out, else `{failures, 0}` (the larger count,
/// this attempt included).
const ATTEMPT: &str = r#"
local limit = tonumber(ARGV[1])
local locked = -1
for i = 1, 2 do
  local c = tonumber(redis.call("GET", KEYS[i]) or "0")
  if c >= limit then
    local left = redis.call("PTTL", KEYS[i])
    if left < 0 then left = tonumber(ARGV[2]) end
    if left > locked then locked = left end
  end
end
if locked >= 0 then return {0, locked} end
local most = 0
for i = 1, 2 do
  local c = redis.call("INCR", KEYS[i])
  redis.call("PEXPIRE", KEYS[i], ARGV[2])
  if c > most then most = c end
end
return {most, 0}
"#;

/// `KEYS`: the address's and the user name's counters. Deletes the user
/// name's and takes one failure from the address's.
const SUCCEEDED: &str = r#"
redis.call("DEL", KEYS[2])
local c = tonumber(redis.call("GET", KEYS[1]) or "0")
if c <= 1 then
  redis.call("DEL", KEYS[1])
else
  redis.call("DECR", KEYS[1])
end
return 0
"#;

/// Failed logins per client address and per user name, counted in one Redis
/// for every host that names it.
#[derive(Debug)]
pub struct SharedLoginLimiter {
    redis: Arc<RedisConn>,
    options: LoginLimitOptions,
}

impl SharedLoginLimiter {
    /// Counts in `redis` under `options` (`max_entries` is not used: Redis
    /// forgets each record `lockout` after its last failure).
    pub fn new(redis: Arc<RedisConn>, options: LoginLimitOptions) -> SharedLoginLimiter {
        SharedLoginLimiter { redis, options }
    }

    /// The two keys of an attempt of `user` from `ip`.
    pub fn keys(ip: IpAddr, user: &str) -> [String; 2] {
        use sha2::Digest;
        let name: String = user.chars().flat_map(char::to_lowercase).collect();
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        [
            format!("{LOGIN_KEY_PREFIX}addr:{}", address_key(ip)),
            format!("{LOGIN_KEY_PREFIX}user:{hex}"),
        ]
    }

    /// An attempt of `user` from `ip`, counted as a failure of both records
    /// on every host until [`SharedLoginLimiter::succeeded`]:
    /// `Ok(Ok(failures))` (the larger count, this attempt included), or
    /// `Ok(Err(retry_after))` when the address or the user name is locked
    /// out (the password must then not be checked).
    ///
    /// # Errors
    ///
    /// Redis could not be asked (the caller's own limiter still counts).
    pub async fn attempt(
        &self,
        ip: IpAddr,
        user: &str,
    ) -> Result<Result<u32, Duration>, RedisError> {
        let lockout = u64::try_from(self.options.lockout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ATTEMPT)
            .arg(2)
            .arg(&Self::keys(ip, user))
            .arg(self.options.failures_before_lockout.max(1))
            .arg(lockout);
        let (failures, locked_ms): (u64, u64) = self.redis.run(&cmd).await?;
        Ok(if failures == 0 {
            Err(Duration::from_millis(locked_ms))
        } else {
            Ok(u32::try_from(failures).unwrap_or(u32::MAX))
        })
    }

    /// The attempt of `user` from `ip` had the right password: the user
    /// name's record is cleared and the address's loses the failure this
    /// attempt was counted as.
    ///
    /// # Errors
    ///
    /// Redis could not be asked (the records then expire with `lockout`).
    pub async fn succeeded(&self, ip: IpAddr, user: &str) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SUCCEEDED).arg(2).arg(&Self::keys(ip, user));
        self.redis.run::<u64>(&cmd).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_and_the_ipv6_subscriber_prefix() {
        let a = SharedLoginLimiter::keys("2001:db8::1".parse().unwrap(), "Joe");
        let b = SharedLoginLimiter::keys("2001:db8::ffff".parse().unwrap(), "jOE");
        assert_eq!(a, b);
        assert_eq!(a[0], "mailbag:login:addr:2001:db8::");
        assert!(a[1].starts_with("mailbag:login:user:") && a[1].len() == 19 + 32);
        let c = SharedLoginLimiter::keys("::ffff:192.0.2.1".parse().unwrap(), "ann");
        assert_eq!(c[0], "mailbag:login:addr:192.0.2.1");
        assert_ne!(c[1], a[1]);
    }
}
