//! The self-service web page: each user logs in with their mailbox name and
//! password, changes their spam settings and reviews their Spam folder.
//!
//! Built on axum (routing, forms) served by hyper over the server's own
//! accept loop (connection limits, TLS with the `[tls]` certificate, graceful
//! shutdown), with askama templates checked at compile time. Plain
//! server-rendered HTML and one small stylesheet: no JavaScript.
//!
//! | route | what |
//! |---|---|
//! | `GET /login`, `POST /login` | log in (same credential check as POP3: [`Config::authenticate`](crate::config::Config::authenticate)) |
//! | `POST /logout` | log out |
//! | `GET /settings`, `POST /settings` | SPAM Scanning, Subject Prefixing, Deliver Spam to which folder? |
//! | `GET /spam?page=N` | the Spam folder, newest first, paged |
//! | `POST /spam/release`, `POST /spam/delete` | release one message to the INBOX (tag removed), delete one |
//! | `GET /spam/delete-all`, `POST /spam/delete-all` | confirm, then delete all |
//! | `GET /style.css` | the stylesheet |
//!
//! Security:
//! - **Login**: unknown user and wrong password get the same page, status
//!   and delay (`web.login_failure_delay`, after the same hash work);
//!   attempts are limited per client address ([`ratelimit`]), then `429`.
//! - **Session**: a 128-bit id from the OS RNG in an `HttpOnly;
//!   SameSite=Strict; Path=/` cookie (`Secure` under TLS), idle and
//!   absolute expiry, a bounded server-side table ([`session`]).
//! - **CSRF**: every form carries a token (per session; the login form's
//!   is a pre-session cookie, double-submitted); a POST without the right
//!   token gets `403`.
//! - **Isolation**: message ids from forms are looked up only in the
//!   logged-in user's Spam folder: another user's id is `404`.
//! - **Headers**: `Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; ...`,
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: no-referrer`, `Cache-Control: no-store` on pages;
//!   under TLS also `Strict-Transport-Security: max-age=31536000`.
//! - **Hostile requests**: request line + header fields bounded by
//!   `web.max_request_head` (`431`/`414`; more than 100 fields `431`),
//!   bodies by `web.max_request_body` (`413`); `web.request_timeout` bounds
//!   the header, an idle keep-alive connection and the whole request (a body
//!   that stalls gets `408` and the connection is closed); an HTTP/1.1
//!   request without exactly one `Host` gets `400`; a method a route lacks
//!   gets `405`; unreadable forms `403`; bad message ids `404`.
//! - Every action is logged with the user name, never the password.

mod pages;
pub mod ratelimit;
pub mod session;
pub mod spam;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, middleware};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mailbag_mailstore::{Error as StoreError, Folder, Uid, UserName};
use mailbag_spam_tag::{Score, TagValues, Template as TagTemplate};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::SpamFolder;
use crate::server::{Role, Shared};
use crate::tls::MaybeTls;
use crate::user_settings::Overrides;
use pages::{ConfirmPage, LoginPage, MessagePage, Nav, Row, SettingsPage, SpamFolderPage};
use ratelimit::{LoginLimiter, RateLimitOptions};
use session::{
    LOGIN_COOKIE, SESSION_COOKIE, SessionOptions, SessionTable, Token, cookie_value, set_cookie,
};

/// The stylesheet served at `/style.css`.
pub const STYLESHEET: &str = include_str!("../../static/style.css");

/// The web page's state: sessions and the login limiter, over the server's
/// shared state (configuration, mail store, settings store).
#[derive(Debug)]
pub struct Web {
    shared: Arc<Shared>,
    sessions: Mutex<SessionTable>,
    limiter: Mutex<LoginLimiter>,
    secure: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Web {
    /// The web state for a server (limits from `[web]`).
    pub fn new(shared: Arc<Shared>) -> Web {
        let w = &shared.config.web;
        let so = SessionOptions {
            idle_timeout: w.session_idle_timeout,
            lifetime: w.session_lifetime,
            max_sessions: w.max_sessions,
        };
        let ro = RateLimitOptions {
            max_attempts: w.login_attempts_per_ip,
            window: w.login_window,
            max_entries: w.max_tracked_addresses,
        };
        let secure = w.tls && shared.tls.is_some();
        Web {
            sessions: Mutex::new(SessionTable::new(so)),
            limiter: Mutex::new(LoginLimiter::new(ro)),
            secure,
            shared,
        }
    }
}

type App = Arc<Web>;

/// The router of the web page (serve it with [`accept_loop`], or call it
/// directly as a tower service).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use mailbag_examples::{config::Config, server::Server, web::{Web, router}};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let config = Config::from_toml_str(&format!(
///     "data_dir = {:?}\n[pop3]\nlisten = []\n[smtp]\nlisten = []\nsubmission_listen = []\n\
///      [web]\nlisten = []\n[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
///     dir.path().join("data")
/// ))?;
/// let server = Server::bind(config).await?;
/// let app = router(Arc::new(Web::new(Arc::clone(server.shared()))));
///
/// let login = app.clone().oneshot(Request::get("/login").body(Body::empty())?).await?;
/// assert_eq!(login.status(), StatusCode::OK);
/// assert_eq!(login.headers()["x-frame-options"], "DENY");
/// // Not logged in: the settings page sends you to the login.
/// let settings = app.oneshot(Request::get("/settings").body(Body::empty())?).await?;
/// assert_eq!(settings.status(), StatusCode::SEE_OTHER);
/// assert_eq!(settings.headers()["location"], "/login");
/// # Ok(()) }
/// ```
pub fn router(web: App) -> Router {
    let body_limit = web.shared.config.web.max_request_body;
    Router::new()
        .route("/", get(|| async { Redirect::to("/settings") }))
        .route("/login", get(login_page).post(login_post))
        .route("/logout", post(logout))
        .route("/settings", get(settings_page).post(settings_post))
        .route("/spam", get(spam_page))
        .route("/spam/release", post(spam_release))
        .route("/spam/delete", post(spam_delete))
        .route(
            "/spam/delete-all",
            get(delete_all_page).post(delete_all_post),
        )
        .route("/style.css", get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::map_response_with_state(
            Arc::clone(&web),
            security_headers,
        ))
        .with_state(web)
}

async fn security_headers(State(web): State<App>, mut res: Response) -> Response {
    let h = res.headers_mut();
    if web.secure {
        // Served over TLS: browsers that saw the page once keep to HTTPS.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            warn!(error = %e, "web: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

fn message(
    status: StatusCode,
    nav: Option<Nav>,
    title: &'static str,
    text: impl Into<String>,
    link: &'static str,
    link_text: &'static str,
) -> Response {
    render(
        status,
        MessagePage {
            nav,
            title,
            text: text.into(),
            link,
            link_text,
        },
    )
}

fn internal_error(nav: Option<Nav>) -> Response {
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        nav,
        "Something went wrong",
        "The server could not do that just now. Please try again later.",
        "/settings",
        "Back to your settings",
    )
}

fn forbidden(nav: Option<Nav>) -> Response {
    message(
        StatusCode::FORBIDDEN,
        nav,
        "Form not accepted",
        "The form was not accepted: its security token is missing or out of date. \
         Please reload the page and try again.",
        "/login",
        "Back",
    )
}

fn not_found_page(nav: Option<Nav>) -> Response {
    message(
        StatusCode::NOT_FOUND,
        nav,
        "Not found",
        "There is no such page or message in your mailbox.",
        "/spam",
        "Back to your Spam folder",
    )
}

async fn not_found() -> Response {
    not_found_page(None)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, name))
}

fn with_cookies(mut res: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(error = %e, "web: blocking task failed");
            None
        }
    }
}

/// A user name safe for a log line (length-limited, no control characters).
fn log_name(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs % 86_400 == 0 && secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs % 3600 == 0 && secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs % 60 == 0 && secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

// ---------------------------------------------------------------------------
// The logged-in user.

/// A request from a logged-in user (the session cookie names a live session).
#[derive(Debug, Clone)]
struct Auth {
    user: String,
    csrf: Token,
}

impl Auth {
    fn nav(&self, page: &'static str) -> Nav {
        Nav {
            user: self.user.clone(),
            csrf: self.csrf.as_str().to_owned(),
            page,
        }
    }

    /// Checks a form's CSRF token.
    fn check(&self, token: Option<&str>) -> Result<(), Box<Response>> {
        match token {
            Some(t) if self.csrf.matches(t) => Ok(()),
            _ => {
                info!(user = %self.user, "web: form refused (missing or wrong CSRF token)");
                Err(Box::new(forbidden(Some(self.nav("")))))
            }
        }
    }

    fn store_user(&self) -> Option<UserName> {
        UserName::new(self.user.as_str()).ok()
    }
}

impl FromRequestParts<App> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &App) -> Result<Self, Self::Rejection> {
        let found = cookie(&parts.headers, SESSION_COOKIE).and_then(|id| {
            lock(&web.sessions).get(id, Instant::now()).map(|s| Auth {
                user: s.user.clone(),
                csrf: s.csrf.clone(),
            })
        });
        match found {
            // The user may have been removed from the config since login.
            Some(a) if web.shared.config.user(&a.user).is_some() => Ok(a),
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
fn form<T>(f: Result<Form<T>, FormRejection>) -> Result<T, Box<Response>> {
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

// ---------------------------------------------------------------------------
// Login and logout.

#[derive(Deserialize, Default)]
struct LoginForm {
    csrf: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

/// The login page. The login form's CSRF token is the `mailbag_login`
/// cookie's when the browser sent a valid one (so that two open login tabs
/// both work), else a fresh one.
fn login_response(
    web: &Web,
    headers: &HeaderMap,
    status: StatusCode,
    user: &str,
    error: Option<String>,
) -> Response {
    let token = match cookie(headers, LOGIN_COOKIE).and_then(Token::parse) {
        Some(t) => t,
        None => match Token::random() {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "web: no random token");
                return internal_error(None);
            }
        },
    };
    let page = LoginPage {
        nav: None,
        csrf: token.as_str().to_owned(),
        user: user.to_owned(),
        error,
    };
    let c = set_cookie(
        LOGIN_COOKIE,
        token.as_str(),
        Some(web.shared.config.web.session_idle_timeout),
        web.secure,
    );
    with_cookies(render(status, page), &[c])
}

async fn login_page(State(web): State<App>, headers: HeaderMap) -> Response {
    let logged_in = cookie(&headers, SESSION_COOKIE)
        .is_some_and(|id| lock(&web.sessions).get(id, Instant::now()).is_some());
    if logged_in {
        return Redirect::to("/settings").into_response();
    }
    login_response(&web, &headers, StatusCode::OK, "", None)
}

async fn login_post(
    State(web): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    // CSRF: the form's token must be the pre-session cookie's.
    let csrf_ok = match (cookie(&headers, LOGIN_COOKIE), f.csrf.as_deref()) {
        (Some(c), Some(t)) => Token::parse(c).is_some_and(|c| c.matches(t)),
        _ => false,
    };
    if !csrf_ok {
        info!(%peer, "web: login form refused (missing or wrong CSRF token)");
        return forbidden(None);
    }
    let retry = lock(&web.limiter).attempt(peer.ip(), Instant::now());
    if let Err(after) = retry {
        info!(%peer, "web: login refused: too many attempts from this address");
        let mut r = message(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            "Too many login attempts",
            format!(
                "There were too many login attempts from your address. Please wait {} and try again.",
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
        return r;
    }
    let user = f.user.unwrap_or_default();
    let password = f.password.unwrap_or_default();
    let shared = Arc::clone(&web.shared);
    let name = user.clone();
    let ok = blocking(move || {
        shared
            .config
            .authenticate(&name, password.as_bytes())
            .is_some()
    })
    .await
    .unwrap_or(false);
    if !ok {
        info!(user = %log_name(&user), %peer, "web: login failed");
        let delay = web.shared.config.web.login_failure_delay;
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
    let created = lock(&web.sessions).create(&user, Instant::now());
    let (id, _csrf) = match created {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "web: no random token");
            return internal_error(None);
        }
    };
    info!(user = %user, %peer, "web: logged in");
    let cookies = [
        set_cookie(
            SESSION_COOKIE,
            id.as_str(),
            Some(web.shared.config.web.session_lifetime),
            web.secure,
        ),
        set_cookie(LOGIN_COOKIE, "", None, web.secure),
    ];
    with_cookies(Redirect::to("/settings").into_response(), &cookies)
}

#[derive(Deserialize, Default)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(web): State<App>,
    auth: Auth,
    headers: HeaderMap,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = auth.check(f.csrf.as_deref()) {
        return *r;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        lock(&web.sessions).remove(id);
    }
    info!(user = %auth.user, "web: logged out");
    with_cookies(
        Redirect::to("/login").into_response(),
        &[set_cookie(SESSION_COOKIE, "", None, web.secure)],
    )
}

// ---------------------------------------------------------------------------
// Settings.

#[derive(Deserialize, Default)]
struct SavedQuery {
    saved: Option<String>,
}

async fn settings_page(
    State(web): State<App>,
    auth: Auth,
    Query(q): Query<SavedQuery>,
) -> Response {
    let Some(user) = web.shared.config.user(&auth.user) else {
        return internal_error(Some(auth.nav("settings")));
    };
    let settings = Arc::clone(&web.shared.state.settings);
    let u = user.clone();
    let Some(effective) = blocking(move || settings.effective(&u)).await else {
        return internal_error(Some(auth.nav("settings")));
    };
    let example = web.shared.state.template.render(&TagValues::new(
        Score::from_tenths(73),
        Score::saturating(web.shared.config.spam.threshold),
        &[],
    ));
    render(
        StatusCode::OK,
        SettingsPage {
            nav: Some(auth.nav("settings")),
            csrf: auth.csrf.as_str().to_owned(),
            saved: q.saved.is_some(),
            spam_scanning: effective.spam_scanning,
            subject_prefix: effective.subject_prefix,
            folder_inbox: effective.spam_folder == SpamFolder::Inbox,
            tag_example: example,
            retention: humanize(web.shared.config.spam.spam_retention),
        },
    )
}

#[derive(Deserialize, Default)]
struct SettingsForm {
    csrf: Option<String>,
    spam_scanning: Option<String>,
    subject_prefix: Option<String>,
    spam_folder: Option<String>,
}

fn on_off(v: Option<&str>) -> Option<bool> {
    match v? {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

async fn settings_post(
    State(web): State<App>,
    auth: Auth,
    f: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = auth.check(f.csrf.as_deref()) {
        return *r;
    }
    let folder = match f.spam_folder.as_deref() {
        Some("INBOX") => Some(SpamFolder::Inbox),
        Some("Spam") => Some(SpamFolder::Spam),
        _ => None,
    };
    let (Some(scanning), Some(prefix), Some(folder)) = (
        on_off(f.spam_scanning.as_deref()),
        on_off(f.subject_prefix.as_deref()),
        folder,
    ) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(auth.nav("settings")),
            "Settings not saved",
            "Please choose a value for every setting.",
            "/settings",
            "Back to your settings",
        );
    };
    let overrides = Overrides::all(scanning, prefix, folder);
    let settings = Arc::clone(&web.shared.state.settings);
    let name = auth.user.clone();
    match blocking(move || settings.save(&name, &overrides)).await {
        Some(Ok(())) => {
            info!(
                user = %auth.user,
                spam_scanning = scanning,
                subject_prefix = prefix,
                spam_folder = ?folder,
                "web: settings saved"
            );
            Redirect::to("/settings?saved=1").into_response()
        }
        Some(Err(e)) => {
            warn!(user = %auth.user, error = %e, "web: settings not saved");
            internal_error(Some(auth.nav("settings")))
        }
        None => internal_error(Some(auth.nav("settings"))),
    }
}

// ---------------------------------------------------------------------------
// The Spam folder.

#[derive(Deserialize, Default)]
struct SpamQuery {
    page: Option<String>,
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "released" => Some("The message was released to your INBOX."),
        "deleted" => Some("The message was deleted."),
        "emptied" => Some("Your Spam folder was emptied."),
        _ => None,
    }
}

async fn spam_page(State(web): State<App>, auth: Auth, Query(q): Query<SpamQuery>) -> Response {
    let Some(user) = auth.store_user() else {
        return internal_error(Some(auth.nav("spam")));
    };
    let page = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1);
    let cfg = &web.shared.config;
    let (page_size, retention, max_header) = (
        cfg.web.page_size,
        cfg.spam.spam_retention,
        cfg.web.max_header_read,
    );
    let store = Arc::clone(&web.shared.state.store);
    let template: TagTemplate = web.shared.state.template.clone();
    let listed = blocking(move || {
        spam::list_page(
            store.as_ref(),
            &user,
            &template,
            page,
            page_size,
            retention,
            max_header,
        )
    })
    .await;
    let listing = match listed {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            warn!(user = %auth.user, error = %e, "web: cannot list Spam");
            return internal_error(Some(auth.nav("spam")));
        }
        None => return internal_error(Some(auth.nav("spam"))),
    };
    info!(user = %auth.user, page = listing.page, total = listing.total, "web: Spam folder viewed");
    let entries = listing
        .entries
        .into_iter()
        .map(|e| Row {
            uid: e.uid,
            received: spam::format_time(e.received),
            from: e.header.from,
            subject: e.header.subject,
            score: e.header.score.unwrap_or_else(|| "–".to_owned()),
            deleted_at: spam::format_time(e.deleted_at),
        })
        .collect();
    render(
        StatusCode::OK,
        SpamFolderPage {
            nav: Some(auth.nav("spam")),
            csrf: auth.csrf.as_str().to_owned(),
            notice: notice(q.done.as_deref()),
            entries,
            total: listing.total,
            page: listing.page,
            pages: listing.pages,
            retention: humanize(retention),
        },
    )
}

#[derive(Deserialize, Default)]
struct MessageForm {
    csrf: Option<String>,
    uid: Option<String>,
    page: Option<String>,
}

fn back_to(page: Option<&str>, done: &str) -> Response {
    let page = page.and_then(|p| p.parse::<usize>().ok()).unwrap_or(1);
    Redirect::to(&format!("/spam?page={page}&done={done}")).into_response()
}

/// The form's message id, valid in form; looked up later only in the
/// logged-in user's Spam folder.
fn form_uid(auth: &Auth, uid: Option<&str>) -> Result<(UserName, Uid), Box<Response>> {
    let user = auth
        .store_user()
        .ok_or_else(|| Box::new(internal_error(Some(auth.nav("spam")))))?;
    let uid = uid
        .and_then(|u| Uid::new(u).ok())
        .ok_or_else(|| Box::new(not_found_page(Some(auth.nav("spam")))))?;
    Ok((user, uid))
}

async fn spam_release(
    State(web): State<App>,
    auth: Auth,
    f: Result<Form<MessageForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = auth.check(f.csrf.as_deref()) {
        return *r;
    }
    let (user, uid) = match form_uid(&auth, f.uid.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let store = Arc::clone(&web.shared.state.store);
    let template = web.shared.state.template.clone();
    let id = uid.clone();
    let result = blocking(move || spam::release(store.as_ref(), &user, &id, &template)).await;
    match result {
        Some(Ok(())) => {
            info!(user = %auth.user, uid = %uid, "web: released from Spam to INBOX");
            back_to(f.page.as_deref(), "released")
        }
        Some(Err(spam::ReleaseError::NotFound)) => {
            info!(user = %auth.user, uid = %uid, "web: release refused: no such message in the user's Spam");
            not_found_page(Some(auth.nav("spam")))
        }
        Some(Err(e)) => {
            warn!(user = %auth.user, uid = %uid, error = %e, "web: release failed");
            internal_error(Some(auth.nav("spam")))
        }
        None => internal_error(Some(auth.nav("spam"))),
    }
}

async fn spam_delete(
    State(web): State<App>,
    auth: Auth,
    f: Result<Form<MessageForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = auth.check(f.csrf.as_deref()) {
        return *r;
    }
    let (user, uid) = match form_uid(&auth, f.uid.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let store = Arc::clone(&web.shared.state.store);
    let id = uid.clone();
    match blocking(move || store.delete(&user, Folder::Spam, &id)).await {
        Some(Ok(())) => {
            info!(user = %auth.user, uid = %uid, "web: deleted from Spam");
            back_to(f.page.as_deref(), "deleted")
        }
        Some(Err(StoreError::NoSuchMessage)) => {
            info!(user = %auth.user, uid = %uid, "web: delete refused: no such message in the user's Spam");
            not_found_page(Some(auth.nav("spam")))
        }
        Some(Err(e)) => {
            warn!(user = %auth.user, uid = %uid, error = %e, "web: delete failed");
            internal_error(Some(auth.nav("spam")))
        }
        None => internal_error(Some(auth.nav("spam"))),
    }
}

fn unix_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

async fn delete_all_page(State(web): State<App>, auth: Auth) -> Response {
    let Some(user) = auth.store_user() else {
        return internal_error(Some(auth.nav("spam")));
    };
    let store = Arc::clone(&web.shared.state.store);
    let now = SystemTime::now();
    match blocking(move || store.list(&user, Folder::Spam)).await {
        Some(Ok(list)) => render(
            StatusCode::OK,
            ConfirmPage {
                nav: Some(auth.nav("spam")),
                csrf: auth.csrf.as_str().to_owned(),
                total: list.len(),
                upto: unix_millis(now),
            },
        ),
        Some(Err(e)) => {
            warn!(user = %auth.user, error = %e, "web: cannot list Spam");
            internal_error(Some(auth.nav("spam")))
        }
        None => internal_error(Some(auth.nav("spam"))),
    }
}

#[derive(Deserialize, Default)]
struct DeleteAllForm {
    csrf: Option<String>,
    upto: Option<String>,
}

async fn delete_all_post(
    State(web): State<App>,
    auth: Auth,
    f: Result<Form<DeleteAllForm>, FormRejection>,
) -> Response {
    let f = match form(f) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = auth.check(f.csrf.as_deref()) {
        return *r;
    }
    let now = SystemTime::now();
    let upto = f
        .upto
        .as_deref()
        .and_then(|u| u.parse::<u64>().ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .filter(|t| *t <= now);
    let (Some(upto), Some(user)) = (upto, auth.store_user()) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(auth.nav("spam")),
            "Nothing deleted",
            "Please confirm on the Delete all page.",
            "/spam",
            "Back to your Spam folder",
        );
    };
    // Messages saved up to the moment the confirmation page was shown.
    let cutoff = upto + Duration::from_millis(1);
    let store = Arc::clone(&web.shared.state.store);
    match blocking(move || store.expunge_older_than(&user, Folder::Spam, cutoff)).await {
        Some(Ok(n)) => {
            info!(user = %auth.user, deleted = n, "web: deleted all Spam");
            Redirect::to("/spam?done=emptied").into_response()
        }
        Some(Err(e)) => {
            warn!(user = %auth.user, error = %e, "web: delete all failed");
            internal_error(Some(auth.nav("spam")))
        }
        None => internal_error(Some(auth.nav("spam"))),
    }
}

// ---------------------------------------------------------------------------
// Serving.

/// Accepts web connections until shutdown: each takes a slot of the
/// server's connection limits, does the TLS handshake for [`Role::WebTls`],
/// and is served by hyper (HTTP/1.1, keep-alive, `web.request_timeout` to
/// read a request header). On shutdown, open connections finish the
/// request in progress and close.
pub async fn accept_loop(web: App, role: Role, listener: TcpListener, tracker: TaskTracker) {
    let app = router(Arc::clone(&web));
    let shared = Arc::clone(&web.shared);
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(role = role.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = shared.next_connection_id();
        let span = info_span!("conn", id, role = role.name(), peer = %peer);
        tracker.spawn(
            serve_connection(Arc::clone(&shared), app.clone(), role, tcp, peer).instrument(span),
        );
    }
    debug!(role = role.name(), "listener closed");
}

async fn serve_connection(
    shared: Arc<Shared>,
    app: Router,
    role: Role,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let _permit = match shared.acquire_connection(peer.ip()) {
        Ok(p) => p,
        Err(e) => {
            info!(reason = %e, "connection refused");
            if !role.implicit_tls() {
                let mut tcp = tcp;
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 10\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = tcp.shutdown().await;
                })
                .await;
            }
            return;
        }
    };
    let mut stream = MaybeTls::Plain(tcp);
    if role.implicit_tls() {
        let Some(acceptor) = shared.tls.as_ref() else {
            return;
        };
        stream = match stream
            .upgrade(acceptor, shared.config.limits.tls_handshake_timeout)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
        };
    }
    let timeout = shared.config.web.request_timeout;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            if let Some(refused) = check_host(&req) {
                return Ok::<_, std::convert::Infallible>(refused);
            }
            // The whole request (body included) and its answer get
            // `request_timeout`: a client that announces a body and then
            // stops sending gets 408 and the connection is closed, instead
            // of holding a task forever (`header_read_timeout` only covers
            // the header).
            match tokio::time::timeout(timeout, app.oneshot(req)).await {
                Ok(r) => r,
                Err(_) => {
                    info!("web: request timed out");
                    Ok(plain_error(
                        StatusCode::REQUEST_TIMEOUT,
                        "Request timeout\n",
                    ))
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(shared.config.web.max_request_head.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(shared.config.limits.shutdown_timeout, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// A short plain-text error that also closes the connection.
fn plain_error(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a `Host` field, or with more
/// than one, gets `400` (HTTP/1.0 may omit it).
fn check_host<B>(req: &hyper::Request<B>) -> Option<Response> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let bad = hosts > 1 || (hosts == 0 && req.version() >= hyper::Version::HTTP_11);
    bad.then(|| plain_error(StatusCode::BAD_REQUEST, "Bad request: Host header\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_rules() {
        let req = |v, hosts: &[&str]| {
            let mut b = hyper::Request::get("/login").version(v);
            for h in hosts {
                b = b.header(header::HOST, *h);
            }
            b.body(()).unwrap()
        };
        let status = |r: &hyper::Request<()>| check_host(r).map(|r| r.status());
        assert_eq!(status(&req(hyper::Version::HTTP_11, &["a"])), None);
        assert_eq!(status(&req(hyper::Version::HTTP_10, &[])), None);
        assert_eq!(
            status(&req(hyper::Version::HTTP_11, &[])),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(&req(hyper::Version::HTTP_11, &["a", "b"])),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn humanized_durations() {
        assert_eq!(humanize(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(humanize(Duration::from_secs(86_400)), "1 day");
        assert_eq!(humanize(Duration::from_secs(7200)), "2 hours");
        assert_eq!(humanize(Duration::from_secs(900)), "15 minutes");
        assert_eq!(humanize(Duration::from_secs(61)), "61 seconds");
    }

    #[test]
    fn log_names_are_tamed() {
        assert_eq!(log_name("jo\ne"), "jo?e");
        assert_eq!(log_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn on_off_values() {
        assert_eq!(on_off(Some("on")), Some(true));
        assert_eq!(on_off(Some("off")), Some(false));
        assert_eq!(on_off(Some("ON")), None);
        assert_eq!(on_off(None), None);
    }
}
