//! Logging in and out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::app::{App, Web, blocking, humanize, lock, log_name};
use super::cookies::{cookie, with_cookies};
use super::extract::{AuthForm, CsrfField, form};
use super::pages::LoginPage;
use super::responses::{forbidden, internal_error, message, render};
use super::session::set_cookie;
use crate::clock::unix_now;
use crate::constant_time::constant_time_eq;
use crate::login_limiter::failure_delay;
use crate::login_name;

#[derive(Deserialize, Default)]
pub(super) struct LoginForm {
    csrf: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

/// The login cookie's token if this server issued it and it has not
/// expired (it lives as long as the cookie, `session_idle_timeout`).
fn valid_login_token<'a>(web: &Web, headers: &'a HeaderMap) -> Option<&'a str> {
    let key = web.login_key.as_ref()?;
    let max_age = web.ctx.config().web.session_idle_timeout;
    cookie(headers, web.login_cookie()).filter(|t| key.verify(t, unix_now(), max_age))
}

/// The login page. The login form's CSRF token is the login cookie's when
/// the browser sent one this server issued (so that two open login tabs
/// both work), else a fresh one.
fn login_response(
    web: &Web,
    headers: &HeaderMap,
    status: StatusCode,
    user: &str,
    error: Option<String>,
) -> Response {
    let token = match (valid_login_token(web, headers), &web.login_key) {
        (Some(t), _) => t.to_owned(),
        (None, Some(key)) => match key.issue(unix_now()) {
            Ok(t) => t,
            Err(_) => return internal_error(None),
        },
        (None, None) => return internal_error(None),
    };
    let page = LoginPage {
        nav: None,
        csrf: token.clone(),
        user: user.to_owned(),
        error,
    };
    let c = set_cookie(
        web.login_cookie(),
        &token,
        Some(web.ctx.config().web.session_idle_timeout),
        web.secure,
    );
    with_cookies(render(status, page), &[c])
}

pub(super) async fn login_page(State(web): State<App>, headers: HeaderMap) -> Response {
    // The same check as every page's: a session whose user is gone or whose
    // password changed shows the login form (not a redirect back and forth).
    if super::extract::session_auth(&web, &headers).is_some() {
        return Redirect::to("/settings").into_response();
    }
    login_response(&web, &headers, StatusCode::OK, "", None)
}

pub(super) async fn login_post(
    State(web): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    // CSRF: the form's token must be the pre-session cookie's, and one this
    // server issued (a client cannot make one up).
    let csrf_ok = match (valid_login_token(&web, &headers), f.csrf.as_deref()) {
        (Some(c), Some(t)) => constant_time_eq(c.as_bytes(), t.as_bytes()),
        _ => false,
    };
    if !csrf_ok {
        info!(%peer, "web: login form refused (missing or wrong CSRF token)");
        return forbidden(None);
    }
    let user = f.user.unwrap_or_default();
    let password = f.password.unwrap_or_default();
    // The one login limiter of every service: POP3 failures count here too,
    // against the mailbox however its name was typed.
    let key = login_name::limiter_key(&web.ctx.config(), &user);
    let counted = web.ctx.login_attempt(peer.ip(), &key).await;
    let attempt = match counted {
        Ok(attempt) => attempt,
        Err(after) => {
            info!(user = %log_name(&user), %peer, "web: login refused: locked out");
            return too_many(after);
        }
    };
    let ctx = Arc::clone(&web.ctx);
    let typed = user.clone();
    // The address form and the Spam suffix name the same mailbox here
    // (the page shows both folders). The session keeps the stamp of the
    // credential the password was checked against, of the same configuration.
    let checked = blocking(move || {
        login_name::check(&ctx.config(), &typed, password.as_bytes(), peer.ip())
            .map(|l| (l.user.name.as_str().to_owned(), l.user.credential.stamp()))
    })
    .await;
    let found = match checked {
        Some(Ok(found)) => Ok(found),
        Some(Err(refusal)) => Err(refusal.as_str()),
        None => Err("the password check did not finish"),
    };
    web.ctx.metrics.login("web", found.is_ok());
    let (mailbox, stamp) = match found {
        Ok(found) => found,
        Err(why) => {
            info!(user = %log_name(&user), %peer, reason = why, "web: login failed");
            let delay = failure_delay(web.ctx.config().web.login_failure_delay, attempt.failures);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            return login_response(
                &web,
                &headers,
                StatusCode::UNAUTHORIZED,
                &user,
                Some("Wrong mailbox name or password.".to_owned()),
            );
        }
    };
    web.ctx.login_succeeded(peer.ip(), &key, attempt).await;
    let created = {
        let mut sessions = lock(&web.sessions);
        // The session this browser had (another user's on a shared computer,
        // or its own) ends: a login always starts from a new one alone.
        if let Some(old) = cookie(&headers, web.session_cookie()) {
            sessions.remove(old);
        }
        sessions.create(&mailbox, stamp, Instant::now())
    };
    let (id, _csrf) = match created {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "web: no random token");
            return internal_error(None);
        }
    };
    info!(user = %mailbox, %peer, "web: logged in");
    let cookies = [
        set_cookie(
            web.session_cookie(),
            id.as_str(),
            Some(web.ctx.config().web.session_lifetime),
            web.secure,
        ),
        set_cookie(web.login_cookie(), "", None, web.secure),
    ];
    with_cookies(Redirect::to("/settings").into_response(), &cookies)
}

/// `429 Too Many Requests` with `Retry-After` for a locked-out client.
fn too_many(after: Duration) -> Response {
    let mut r = message(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "Too many login attempts",
        format!(
            "There were too many failed logins from your address or for this mailbox. Please wait {} and try again.",
            humanize(Duration::from_secs(
                after.as_secs().max(1).div_ceil(60) * 60
            ))
        ),
        "/login",
        "Back to the login page",
    );
    if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[derive(Deserialize, Default)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn logout(
    State(web): State<App>,
    headers: HeaderMap,
    AuthForm { auth, .. }: AuthForm<CsrfForm>,
) -> Response {
    if let Some(id) = cookie(&headers, web.session_cookie()) {
        lock(&web.sessions).remove(id);
    }
    info!(user = %auth.user, "web: logged out");
    with_cookies(
        Redirect::to("/login").into_response(),
        &[set_cookie(web.session_cookie(), "", None, web.secure)],
    )
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}
