//! The logged-in user ([`Auth`]: the session cookie names a live session)
//! and [`AuthForm`]: the form of a logged-in user with its CSRF token checked,
//! the one extractor every action handler takes.

use std::time::Instant;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use mailbag_mailstore::UserName;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use super::app::{App, lock};
use super::cookies::cookie;
use super::pages::Nav;
use super::responses::{forbidden, message};
use super::session::Token;

/// A request from a logged-in user (the session cookie names a live session).
#[derive(Debug, Clone)]
pub(super) struct Auth {
    /// The logged-in mailbox name.
    pub(super) user: String,
    /// The session's CSRF token.
    pub(super) csrf: Token,
}

impl Auth {
    pub(super) fn nav(&self, page: &'static str) -> Nav {
        Nav {
            user: self.user.clone(),
            csrf: self.csrf.as_str().to_owned(),
            page,
        }
    }

    /// Checks a form's CSRF token.
    pub(super) fn check(&self, token: Option<&str>) -> Result<(), Box<Response>> {
        match token {
            Some(t) if self.csrf.matches(t) => Ok(()),
            _ => {
                info!(user = %self.user, "web: form refused (missing or wrong CSRF token)");
                Err(Box::new(forbidden(Some(self.nav("")))))
            }
        }
    }

    pub(super) fn store_user(&self) -> Option<UserName> {
        UserName::new(self.user.as_str()).ok()
    }
}

/// The live session of the request's cookie: one that has not expired, of a
/// user still configured, whose password has not changed since the login
/// (perhaps because it leaked). Anything else is no session; a session whose
/// user is gone or whose password changed is ended for good (the same
/// password set again later does not bring it back).
pub(super) fn session_auth(web: &App, headers: &axum::http::HeaderMap) -> Option<Auth> {
    let id = cookie(headers, web.session_cookie())?;
    let (auth, stamp) = lock(&web.sessions).get(id, Instant::now()).map(|s| {
        let auth = Auth {
            user: s.user.clone(),
            csrf: s.csrf.clone(),
        };
        (auth, s.credential)
    })?;
    let current = web
        .ctx
        .config()
        .user(&auth.user)
        .is_some_and(|u| u.credential.stamp() == stamp);
    if !current {
        lock(&web.sessions).remove(id);
        return None;
    }
    Some(auth)
}

impl FromRequestParts<App> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &App) -> Result<Self, Self::Rejection> {
        match session_auth(web, &parts.headers) {
            Some(a) => Ok(a),
            _ if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(Redirect::to("/login").into_response())
            }
            _ => Err(message(
                StatusCode::FORBIDDEN,
                None,
                "Please log in",
                "Your session has ended. Please log in again.",
                "/login",
                "Log in",
            )),
        }
    }
}

/// The form body, or the response for a refused one (`413` when too
/// large, else `403`: a form we cannot read carries no valid CSRF token).
pub(super) fn form<T>(f: Result<Form<T>, FormRejection>) -> Result<T, Box<Response>> {
    match f {
        Ok(Form(t)) => Ok(t),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Box::new(message(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            "Form too large",
            "The form was too large.",
            "/settings",
            "Back",
        ))),
        Err(e) => {
            debug!(error = %e, "web: unreadable form");
            Err(Box::new(forbidden(None)))
        }
    }
}

/// A form that carries a CSRF token field.
pub(super) trait CsrfField {
    /// The form's `csrf` field.
    fn csrf(&self) -> Option<&str>;
}

/// The form of a logged-in user whose CSRF token matched: a request that is
/// not logged in is sent to the login page (`GET`) or refused (`403`); an
/// unreadable form is `403` (`413` when too large); a missing or wrong token
/// is `403`.
#[derive(Debug)]
pub(super) struct AuthForm<T> {
    /// The user.
    pub(super) auth: Auth,
    /// The form.
    pub(super) form: T,
}

impl<T> FromRequest<App> for AuthForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, web: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let auth = Auth::from_request_parts(&mut parts, web).await?;
        let f = Form::<T>::from_request(Request::from_parts(parts, body), web).await;
        let form = form(f).map_err(|r| *r)?;
        auth.check(form.csrf()).map_err(|r| *r)?;
        Ok(AuthForm { auth, form })
    }
}
