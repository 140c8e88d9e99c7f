//! Reading and setting cookies on axum requests and responses (the cookie
//! syntax itself is in [`super::session`]).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use super::session::cookie_value;

pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, name))
}

pub(super) fn with_cookies(mut res: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}
