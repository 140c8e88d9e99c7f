//! Sessions and CSRF tokens: random tokens from the OS, a bounded
//! server-side session table with idle and absolute expiry, cookie
//! headers, and constant-time token comparison.
//!
//! The table is sans-IO: the caller passes the time (`Instant`) and the
//! random bytes come from [`Token::random`] (the OS RNG through `getrandom`).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::constant_time::constant_time_eq;

/// Octets of randomness in a session id or CSRF token (128 bits).
pub const TOKEN_BYTES: usize = 16;

/// The session cookie's name over plain HTTP.
pub const SESSION_COOKIE: &str = "mailbag_session";
/// The cookie holding the login form's CSRF token (before a session
/// exists), over plain HTTP.
pub const LOGIN_COOKIE: &str = "mailbag_login";
/// The session cookie's name under TLS: the `__Host-` prefix makes the
/// browser keep it only with `Secure`, `Path=/` and no `Domain`, so a sibling
/// subdomain cannot set or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-mailbag_session";
/// The login token cookie's name under TLS (`__Host-`, see
/// [`SECURE_SESSION_COOKIE`]): no sibling subdomain can plant a login token.
pub const SECURE_LOGIN_COOKIE: &str = "__Host-mailbag_login";

/// A random 128-bit token, written as 32 lower-case hex digits: session ids
/// and CSRF tokens. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

/// The OS random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RngError(String);

impl RngError {
    pub(super) fn new(message: String) -> RngError {
        RngError(message)
    }
}

impl Token {
    /// A fresh token from the OS random number generator.
    pub fn random() -> Result<Token, RngError> {
        let mut b = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut b).map_err(|e| RngError(e.to_string()))?;
        Ok(Token::from_bytes(b))
    }

    /// The token made of these bytes (tests).
    pub fn from_bytes(b: [u8; TOKEN_BYTES]) -> Token {
        let mut s = String::with_capacity(TOKEN_BYTES * 2);
        for x in b {
            s.push(char::from(HEX[usize::from(x >> 4)]));
            s.push(char::from(HEX[usize::from(x & 15)]));
        }
        Token(s)
    }

    /// Accepts a token as sent back by a client: exactly 32 lower-case hex digits.
    pub fn parse(s: &str) -> Option<Token> {
        (s.len() == TOKEN_BYTES * 2 && s.bytes().all(|b| HEX.contains(&b)))
            .then(|| Token(s.to_owned()))
    }

    /// The hex form (for a cookie or a hidden form field).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares with a value sent by the client, in constant time.
    pub fn matches(&self, other: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), other.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Limits of the session table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionOptions {
    /// A session unused for this long ends (default 30 minutes).
    pub idle_timeout: Duration,
    /// A session ends this long after login (default 12 hours).
    pub lifetime: Duration,
    /// Most sessions at once; the one idle longest is dropped to make room
    /// (default 10000).
    pub max_sessions: usize,
    /// Most sessions of one user at once; that user's idle-longest is
    /// dropped to make room, so one account cannot push everyone else's
    /// sessions out of the table (default 20).
    pub max_sessions_per_user: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_timeout: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
            max_sessions_per_user: 20,
        }
    }
}

/// One logged-in user's session.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Session {
    /// The configured user name.
    pub user: String,
    /// The user's [`Credential::stamp`](crate::credentials::Credential::stamp)
    /// at login: when the user's password has changed since, the session
    /// is over.
    pub credential: u64,
    /// The CSRF token of every form of this session.
    pub csrf: Token,
    /// Login time.
    pub created: Instant,
    /// Last request.
    pub last_seen: Instant,
}

/// The server-side session table, bounded in size.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use mailbagd::web::session::{SessionOptions, SessionTable, Token};
///
/// let mut table = SessionTable::new(SessionOptions::default());
/// let t0 = Instant::now();
/// let (id, csrf) = table.create("joe", 7, t0).unwrap();
/// let s = table.get(id.as_str(), t0 + Duration::from_secs(60)).unwrap();
/// assert_eq!((s.user.as_str(), &s.csrf), ("joe", &csrf));
/// // Idle for 31 minutes: gone.
/// assert!(table.get(id.as_str(), t0 + Duration::from_secs(60 + 31 * 60)).is_none());
/// assert!(table.get(Token::random().unwrap().as_str(), t0).is_none());
/// ```
#[derive(Debug)]
pub struct SessionTable {
    options: SessionOptions,
    sessions: HashMap<Token, Session>,
}

impl SessionTable {
    /// An empty table.
    pub fn new(options: SessionOptions) -> SessionTable {
        SessionTable {
            options,
            sessions: HashMap::new(),
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) >= self.options.idle_timeout
            || now.saturating_duration_since(s.created) >= self.options.lifetime
    }

    /// Logs `user` in, whose credential's stamp is `credential`: a new
    /// session with a fresh id and CSRF token.
    pub fn create(
        &mut self,
        user: &str,
        credential: u64,
        now: Instant,
    ) -> Result<(Token, Token), RngError> {
        let id = Token::random()?;
        let csrf = Token::random()?;
        self.insert(id.clone(), csrf.clone(), user, credential, now);
        Ok((id, csrf))
    }

    /// Removes the session idle longest among those `which` picks; `false`
    /// when there is none.
    fn drop_idle_longest(&mut self, which: impl Fn(&Session) -> bool) -> bool {
        let oldest = self
            .sessions
            .iter()
            .filter(|(_, s)| which(s))
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.sessions.remove(&k).is_some())
    }

    /// Inserts a session with the given tokens (tests use fixed ones).
    pub fn insert(&mut self, id: Token, csrf: Token, user: &str, credential: u64, now: Instant) {
        // The user's own oldest first, so that one account cannot fill the table.
        let per_user = self.options.max_sessions_per_user.max(1);
        while self.sessions.values().filter(|s| s.user == user).count() >= per_user {
            if !self.drop_idle_longest(|s| s.user == user) {
                break;
            }
        }
        if self.sessions.len() >= self.options.max_sessions {
            self.purge(now);
        }
        while self.sessions.len() >= self.options.max_sessions.max(1) {
            if !self.drop_idle_longest(|_| true) {
                break;
            }
        }
        self.sessions.insert(
            id,
            Session {
                user: user.to_owned(),
                credential,
                csrf,
                created: now,
                last_seen: now,
            },
        );
    }

    /// The live session with this id (from the cookie), marked as used
    /// now; an expired one is removed.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&Session> {
        let key = Token::parse(id)?;
        let expired = self.expired(self.sessions.get(&key)?, now);
        if expired {
            self.sessions.remove(&key);
            return None;
        }
        let s = self.sessions.get_mut(&key)?;
        s.last_seen = now;
        Some(s)
    }

    /// Ends a session (logout). Returns the user name if it existed.
    pub fn remove(&mut self, id: &str) -> Option<String> {
        let key = Token::parse(id)?;
        self.sessions.remove(&key).map(|s| s.user)
    }

    /// Removes every expired session.
    pub fn purge(&mut self, now: Instant) {
        let opts = self.options;
        self.sessions.retain(|_, s| {
            now.saturating_duration_since(s.last_seen) < opts.idle_timeout
                && now.saturating_duration_since(s.created) < opts.lifetime
        });
    }
}

/// The value of cookie `name` in a `Cookie:` request header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// A `Set-Cookie:` value: HttpOnly, SameSite=Strict, Path=/, `Secure` when
/// served over TLS; `max_age` `None` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> String {
    let age = max_age.map(|d| d.as_secs()).unwrap_or(0);
    let value = if max_age.is_some() { value } else { "" };
    let mut c = format!("{name}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max: usize) -> SessionOptions {
        SessionOptions {
            idle_timeout: Duration::from_secs(60),
            lifetime: Duration::from_secs(600),
            max_sessions: max,
            max_sessions_per_user: 3,
        }
    }

    /// The web probe logged one account in 21 times and pushed another
    /// user's session out of a 20-session table.
    #[test]
    fn one_user_cannot_push_the_others_out() {
        let mut t = SessionTable::new(opts(10));
        let t0 = Instant::now();
        t.insert(tok(1), tok(101), "ann", 1, t0);
        for n in 0..20u8 {
            t.insert(
                tok(10 + n),
                tok(110 + n),
                "joe",
                1,
                t0 + Duration::from_secs(u64::from(n) + 1),
            );
        }
        assert!(
            t.get(tok(1).as_str(), t0 + Duration::from_secs(30))
                .is_some(),
            "ann's session stays"
        );
        assert_eq!(t.len(), 4, "ann's and joe's newest three");
        assert!(
            t.get(tok(29).as_str(), t0 + Duration::from_secs(30))
                .is_some()
        );
        assert!(
            t.get(tok(16).as_str(), t0 + Duration::from_secs(30))
                .is_none()
        );
    }

    fn tok(n: u8) -> Token {
        Token::from_bytes([n; TOKEN_BYTES])
    }

    #[test]
    fn random_tokens_are_128_bit_hex_and_distinct() {
        let a = Token::random().unwrap();
        let b = Token::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(Token::parse(a.as_str()).is_some());
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
    }

    #[test]
    fn parse_accepts_only_the_exact_form() {
        assert!(Token::parse(&"a".repeat(32)).is_some());
        for bad in [
            "",
            &"a".repeat(31),
            &"a".repeat(33),
            &"A".repeat(32),
            &"g".repeat(32),
        ] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn csrf_comparison() {
        let t = tok(7);
        assert!(t.matches(t.as_str()));
        assert!(!t.matches(tok(8).as_str()));
        assert!(!t.matches(""));
        assert!(!t.matches(&t.as_str()[..31]));
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let mut t = SessionTable::new(opts(10));
        let t0 = Instant::now();
        t.insert(tok(1), tok(2), "joe", 0, t0);
        // Used every 50 s: stays alive past the idle timeout...
        for i in 1..=11 {
            assert!(
                t.get(tok(1).as_str(), t0 + Duration::from_secs(50 * i))
                    .is_some(),
                "{i}"
            );
        }
        // ...but not past the lifetime.
        assert!(
            t.get(tok(1).as_str(), t0 + Duration::from_secs(600))
                .is_none()
        );
        assert!(t.is_empty());

        t.insert(tok(3), tok(4), "ann", 0, t0);
        assert!(
            t.get(tok(3).as_str(), t0 + Duration::from_secs(60))
                .is_none()
        );
    }

    #[test]
    fn table_is_bounded_and_drops_the_longest_idle() {
        let mut t = SessionTable::new(opts(3));
        let t0 = Instant::now();
        for i in 0..3u8 {
            t.insert(
                tok(i),
                tok(100 + i),
                "u",
                0,
                t0 + Duration::from_secs(u64::from(i)),
            );
        }
        // Session 0 is used again, so session 1 is the longest idle.
        assert!(
            t.get(tok(0).as_str(), t0 + Duration::from_secs(5))
                .is_some()
        );
        t.insert(tok(9), tok(109), "v", 0, t0 + Duration::from_secs(6));
        assert_eq!(t.len(), 3);
        let now = t0 + Duration::from_secs(7);
        assert!(t.get(tok(1).as_str(), now).is_none());
        for kept in [0, 2, 9] {
            assert!(t.get(tok(kept).as_str(), now).is_some(), "{kept}");
        }
        // Expired sessions are purged first.
        t.insert(tok(20), tok(120), "w", 0, t0 + Duration::from_secs(500));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn logout_removes() {
        let mut t = SessionTable::new(opts(3));
        let now = Instant::now();
        let (id, _) = t.create("joe", 0, now).unwrap();
        assert_eq!(t.remove(id.as_str()).as_deref(), Some("joe"));
        assert!(t.get(id.as_str(), now).is_none());
        assert!(t.remove(id.as_str()).is_none());
        assert!(t.remove("junk").is_none());
    }

    proptest::proptest! {
        #[test]
        fn tokens_round_trip(bytes: [u8; TOKEN_BYTES]) {
            let t = Token::from_bytes(bytes);
            let parsed = Token::parse(t.as_str());
            proptest::prop_assert_eq!(parsed.as_ref(), Some(&t));
            proptest::prop_assert!(t.matches(t.as_str()));
        }

        #[test]
        fn cookie_parsing_never_panics(h in "\\PC{0,100}") {
            let _ = cookie_value(&h, SESSION_COOKIE);
        }

        #[test]
        fn table_never_exceeds_its_bound(ops in proptest::collection::vec((0u8..20, 0u64..200), 1..60)) {
            let mut t = SessionTable::new(opts(5));
            let t0 = Instant::now();
            for (id, at) in ops {
                t.insert(tok(id), tok(id.wrapping_add(100)), "u", 0, t0 + Duration::from_secs(at));
                proptest::prop_assert!(t.len() <= 5);
            }
        }
    }

    #[test]
    fn cookies() {
        let h = "a=1; mailbag_session=abc ; other=\"x\"";
        assert_eq!(cookie_value(h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(h, "other"), Some("x"));
        assert_eq!(cookie_value(h, "mailbag"), None);
        let c = set_cookie(SESSION_COOKIE, "v", Some(Duration::from_secs(60)), true);
        assert_eq!(
            c,
            "mailbag_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let c = set_cookie(SESSION_COOKIE, "v", None, false);
        assert_eq!(
            c,
            "mailbag_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }
}
