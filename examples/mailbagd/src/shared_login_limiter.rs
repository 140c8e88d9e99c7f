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
//! Each attempt carries a token ([`AttemptToken`]), recorded in Redis as
//! `mailbag:login:try:<token>` (`lockout` to live): `ATTEMPT` counts only if
//! the token is new, and `SUCCEEDED` takes back only an attempt that was
//! counted, once, and marks the token used either way. An attempt that Redis
//! did not answer in time may still run when Redis resumes (a stalled
//! server): the host then counted it itself, and after a success tells Redis
//! too, retrying in the background until Redis answers or `lockout` has
//! passed ([`SharedLoginLimiter::succeeded_in_background`]); whichever of
//! the two scripts runs first, the late attempt leaves no failure behind (a
//! cluster probe found logins with the right password counted as failures
//! after a stall, and an address locked out by them).
//!
//! While Redis cannot answer, logins are limited per host as they are
//! without `[cluster]`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::limits::address_key;
use crate::login_limiter::LoginLimitOptions;
use crate::redis_conn::{RedisConn, RedisError};

/// The prefix of every login-limiter key in Redis.
pub const LOGIN_KEY_PREFIX: &str = "mailbag:login:";

/// How often a success Redis did not take is sent again
/// ([`SharedLoginLimiter::succeeded_in_background`]).
pub const SUCCESS_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// `KEYS`: the address's and the user name's counters, the attempt's token;
/// `ARGV[1]`: `failures_before_lockout`, `ARGV[2]`: `lockout` in
/// milliseconds. Returns `{0, ms left}` (at least 1) when locked out,
/// `{0, 0}` when the token was used already (a success ran first: nothing
/// is counted), else `{failures, 0}` (the larger count, this attempt
/// included).
const ATTEMPT: &str = r#"
if not redis.call("SET", KEYS[3], "a", "NX", "PX", ARGV[2]) then return {0, 0} end
local limit = tonumber(ARGV[1])
local locked = -1
for i = 1, 2 do
  local c = tonumber(redis.call("GET", KEYS[i]) or "0")
  if c >= limit then
    local left = redis.call("PTTL", KEYS[i])
    if left < 1 then left = tonumber(ARGV[2]) end
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

/// `KEYS`: the address's and the user name's counters, the attempt's token;
/// `ARGV[1]`: `lockout` in milliseconds. Marks the token used; if the attempt
/// was counted and not yet taken back, deletes the user name's counter and
/// takes one failure from the address's.
const SUCCEEDED: &str = r#"
local state = redis.call("GET", KEYS[3])
redis.call("SET", KEYS[3], "s", "PX", ARGV[1])
if state ~= "a" then return 0 end
redis.call("DEL", KEYS[2])
local c = tonumber(redis.call("GET", KEYS[1]) or "0")
if c <= 1 then
  redis.call("DEL", KEYS[1])
else
  redis.call("DECR", KEYS[1])
end
return 0
"#;

/// One login attempt's mark in Redis (see the [module docs](self)):
/// unique across hosts (a random prefix per limiter and a count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptToken(String);

/// Failed logins per client address and per user name, counted in one Redis
/// for every host that names it.
#[derive(Debug)]
pub struct SharedLoginLimiter {
    redis: Arc<RedisConn>,
    options: LoginLimitOptions,
    token_prefix: u64,
    tokens: AtomicU64,
}

impl SharedLoginLimiter {
    /// Counts in `redis` under `options` (`max_entries` is not used: Redis
    /// forgets each record `lockout` after its last failure).
    pub fn new(redis: Arc<RedisConn>, options: LoginLimitOptions) -> SharedLoginLimiter {
        let mut prefix = [0u8; 8];
        if getrandom::fill(&mut prefix).is_err() {
            // The clock instead: unique enough across hosts' start-ups.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            prefix = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        SharedLoginLimiter {
            redis,
            options,
            token_prefix: u64::from_le_bytes(prefix),
            tokens: AtomicU64::new(0),
        }
    }

    /// A token for the next attempt.
    pub fn token(&self) -> AttemptToken {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        AttemptToken(format!("{:016x}.{n:x}", self.token_prefix))
    }

    fn lockout_ms(&self) -> u64 {
        u64::try_from(self.options.lockout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The keys of an attempt: [`SharedLoginLimiter::keys`] and the token's.
    fn attempt_keys(ip: IpAddr, user: &str, token: &AttemptToken) -> [String; 3] {
        let [addr, name] = Self::keys(ip, user);
        [addr, name, format!("{LOGIN_KEY_PREFIX}try:{}", token.0)]
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

    /// An attempt of `user` from `ip` marked `token`, counted as a failure
    /// of both records on every host until [`SharedLoginLimiter::succeeded`]:
    /// `Ok(Ok(failures))` (the larger count, this attempt included; 0 when
    /// a success with this token ran first), or `Ok(Err(retry_after))` when
    /// the address or the user name is locked out (the password must then
    /// not be checked).
    ///
    /// # Errors
    ///
    /// Redis could not be asked (the caller's own limiter counts instead, and
    /// a success is told to Redis later:
    /// [`SharedLoginLimiter::succeeded_in_background`]).
    pub async fn attempt(
        &self,
        ip: IpAddr,
        user: &str,
        token: &AttemptToken,
    ) -> Result<Result<u32, Duration>, RedisError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ATTEMPT)
            .arg(3)
            .arg(&Self::attempt_keys(ip, user, token))
            .arg(self.options.failures_before_lockout.max(1))
            .arg(self.lockout_ms());
        let (failures, locked_ms): (u64, u64) = self.redis.run(&cmd).await?;
        Ok(if failures == 0 && locked_ms > 0 {
            Err(Duration::from_millis(locked_ms))
        } else {
            Ok(u32::try_from(failures).unwrap_or(u32::MAX))
        })
    }

    fn succeeded_cmd(&self, ip: IpAddr, user: &str, token: &AttemptToken) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SUCCEEDED)
            .arg(3)
            .arg(&Self::attempt_keys(ip, user, token))
            .arg(self.lockout_ms());
        cmd
    }

    /// The attempt of `user` from `ip` marked `token` had the right
    /// password: if Redis counted it, the user name's record is cleared and
    /// the address's loses the failure this attempt was counted as (once,
    /// however often this is sent), and the token is marked used so that the
    /// attempt, should it run only now, counts nothing.
    ///
    /// # Errors
    ///
    /// Redis could not be asked
    /// ([`SharedLoginLimiter::succeeded_in_background`] tries again).
    pub async fn succeeded(
        &self,
        ip: IpAddr,
        user: &str,
        token: &AttemptToken,
    ) -> Result<(), RedisError> {
        let cmd = self.succeeded_cmd(ip, user, token);
        self.redis.run::<u64>(&cmd).await.map(drop)
    }

    /// [`SharedLoginLimiter::succeeded`] in a task of its own, sent again
    /// every [`SUCCESS_RETRY_INTERVAL`] until Redis answers or `lockout` has
    /// passed (by then the attempt's records and token have expired). Needs
    /// a tokio runtime.
    pub fn succeeded_in_background(&self, ip: IpAddr, user: &str, token: AttemptToken) {
        let redis = Arc::clone(&self.redis);
        let cmd = self.succeeded_cmd(ip, user, &token);
        let give_up = Instant::now() + self.options.lockout;
        tokio::spawn(async move {
            loop {
                match redis.run::<u64>(&cmd).await {
                    Ok(_) => return,
                    Err(e) if Instant::now() + SUCCESS_RETRY_INTERVAL >= give_up => {
                        tracing::debug!(error = %e, "login success never told to Redis: its failures there expire with [login] lockout");
                        return;
                    }
                    Err(_) => tokio::time::sleep(SUCCESS_RETRY_INTERVAL).await,
                }
            }
        });
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
