//! The responses every page shares: rendering a template, the message
//! pages (error, forbidden, not found), the security headers added to every
//! response, the stylesheet, and the short plain errors of the connection
//! layer.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tracing::warn;

use super::app::App;
use super::pages::{MessagePage, Nav};

/// The stylesheet served at `/style.css`.
pub const STYLESHEET: &str = include_str!("../../static/style.css");

/// Adds the headers every response carries, `secure` when served over TLS.
pub(super) fn add_security_headers(h: &mut HeaderMap, secure: bool) {
    if secure {
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
}

pub(super) async fn security_headers(State(web): State<App>, mut res: Response) -> Response {
    add_security_headers(res.headers_mut(), web.secure);
    res
}

pub(super) fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            warn!(error = %e, "web: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

/// `409 Conflict`: the Spam folder is open in a POP3 session (a
/// `joe/Spam` login), which has it to itself until it ends; nothing changed.
pub(super) fn spam_in_use(nav: Option<Nav>) -> Response {
    message(
        StatusCode::CONFLICT,
        nav,
        "Spam folder in use",
        "A mail program is fetching your Spam folder right now (a login as yourname/Spam). \
         Nothing was changed. Please try again when it has finished, in a minute or so.",
        "/spam",
        "Back to your Spam folder",
    )
}

pub(super) fn message(
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

pub(super) fn internal_error(nav: Option<Nav>) -> Response {
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        nav,
        "Something went wrong",
        "The server could not do that just now. Please try again later.",
        "/settings",
        "Back to your settings",
    )
}

pub(super) fn forbidden(nav: Option<Nav>) -> Response {
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

pub(super) fn not_found_page(nav: Option<Nav>) -> Response {
    message(
        StatusCode::NOT_FOUND,
        nav,
        "Not found",
        "There is no such page or message in your mailbox.",
        "/spam",
        "Back to your Spam folder",
    )
}

pub(super) async fn not_found() -> Response {
    not_found_page(None)
}

pub(super) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A short plain-text error that also closes the connection. The connection
/// layer's errors, made before the router, get the security headers from the
/// caller ([`add_security_headers`]); those from inside the router get them
/// from its outermost layer.
pub(super) fn plain_error(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
