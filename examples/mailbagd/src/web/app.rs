//! The web page's state ([`Web`]: sessions over the server's [`Context`],
//! whose login limiter POP3 shares) and the small helpers every handler uses.

use std::sync::{Arc, Mutex, MutexGuard};

use tracing::warn;

use super::login_token::LoginTokenKey;
use super::session::{
    LOGIN_COOKIE, SECURE_LOGIN_COOKIE, SECURE_SESSION_COOKIE, SESSION_COOKIE, SessionOptions,
    SessionTable,
};
use crate::context::Context;

/// The web page's state: sessions, over the server's context
/// (configuration, mail store, settings store, login limiter).
#[derive(Debug)]
pub struct Web {
    pub(super) ctx: Arc<Context>,
    pub(super) sessions: Mutex<SessionTable>,
    pub(super) secure: bool,
    /// The key of the login form's tokens (`None` if the OS random number
    /// generator failed: the login page then answers `500`).
    pub(super) login_key: Option<LoginTokenKey>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Web {
    /// The web state for a server (limits from `[web]`).
    pub fn new(ctx: Arc<Context>) -> Web {
        let w = &ctx.config().web;
        let so = SessionOptions {
            idle_timeout: w.session_idle_timeout,
            lifetime: w.session_lifetime,
            max_sessions: w.max_sessions,
            max_sessions_per_user: w.max_sessions_per_user,
        };
        let secure = w.tls && ctx.tls().is_some();
        let login_key = match LoginTokenKey::random() {
            Ok(k) => Some(k),
            Err(e) => {
                warn!(error = %e, "web: no key for login tokens");
                None
            }
        };
        Web {
            login_key,
            sessions: Mutex::new(SessionTable::new(so)),
            secure,
            ctx,
        }
    }
}

impl Web {
    /// The session cookie's name: `__Host-` prefixed under TLS.
    pub(super) fn session_cookie(&self) -> &'static str {
        if self.secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The login token cookie's name: `__Host-` prefixed under TLS.
    pub(super) fn login_cookie(&self) -> &'static str {
        if self.secure {
            SECURE_LOGIN_COOKIE
        } else {
            LOGIN_COOKIE
        }
    }
}

pub(super) type App = Arc<Web>;

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(error = %e, "web: blocking task failed");
            None
        }
    }
}

/// A user name safe for a log line (length-limited, no control characters).
pub(super) fn log_name(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub(super) use crate::clock::humanize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_are_tamed() {
        assert_eq!(log_name("jo\ne"), "jo?e");
        assert_eq!(log_name(&"x".repeat(100)).len(), 64);
    }
}
