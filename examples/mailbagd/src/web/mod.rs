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
//! | `GET /release?u=&m=&e=&t=`, `POST /release` | a Spam digest's signed release link: a confirmation page, then the release (no login) |
//! | `GET /help` | the email client settings, from the running configuration (no login) |
//! | `GET /.well-known/autoconfig/mail/config-v1.1.xml`, `GET /mail/config-v1.1.xml`, `POST /autodiscover/autodiscover.xml`, `GET /mobileconfig` | client autoconfiguration: Thunderbird, Outlook, Apple (module `autoconfig`) |
//!
//! Security:
//! - **Login**: unknown user and wrong password get the same page, status
//!   and delay (`web.login_failure_delay` times the failures counted, after
//!   the same hash work); failed logins are counted per client address and
//!   per user name by the server's one login limiter, shared with POP3
//!   ([`crate::login_limiter`]); a locked-out address or user gets `429`.
//! - **Session**: a 128-bit id from the OS RNG in an `HttpOnly;
//!   SameSite=Strict; Path=/` cookie (`Secure` under TLS), idle and
//!   absolute expiry, a bounded server-side table ([`session`]).
//! - **CSRF**: every form carries a token (per session; the login form's
//!   is a pre-session cookie, double-submitted, and bound to the server: an
//!   HMAC of its issue time under a key made at start-up, [`login_token`]);
//!   a POST without the right token gets `403`. Under TLS the cookies are
//!   named `__Host-…` (Secure, `Path=/`, no `Domain`): a sibling subdomain
//!   cannot plant them.
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

mod app;
mod autoconfig;
mod cookies;
mod extract;
mod help;
mod login;
pub mod login_token;
mod pages;
mod release;
mod responses;
mod routes;
mod serve;
pub mod session;
mod settings;
pub mod spam;
mod spam_folder;

pub use app::Web;
pub use responses::STYLESHEET;
pub use routes::router;
