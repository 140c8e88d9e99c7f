//! The routes of the web page.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{get, post};

use super::app::App;
use super::autoconfig;
use super::help::help_page;
use super::login::{login_page, login_post, logout};
use super::release::{release_page, release_post};
use super::responses::{not_found, security_headers, stylesheet};
use super::settings::{settings_page, settings_post};
use super::spam_folder::{delete_all_page, delete_all_post, spam_delete, spam_page, spam_release};

/// The router of the web page (the server serves it on its web listeners, see [`crate::listener`]; or call it
/// directly as a tower service).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use mailbagd::{config::Config, server::Server, web::{Web, router}};
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
/// let app = router(Arc::new(Web::new(Arc::clone(server.context()))));
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
    let body_limit = web.ctx.config().web.max_request_body;
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
        .route("/help", get(help_page))
        .route("/release", get(release_page).post(release_post))
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(autoconfig::thunderbird),
        )
        .route("/mail/config-v1.1.xml", get(autoconfig::thunderbird))
        .route("/autodiscover/autodiscover.xml", post(autoconfig::outlook))
        .route("/Autodiscover/Autodiscover.xml", post(autoconfig::outlook))
        .route("/AutoDiscover/AutoDiscover.xml", post(autoconfig::outlook))
        .route("/mobileconfig", get(autoconfig::apple))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        // A body declared larger than the limit is refused before any of it is read
        // (and before hyper would send `100 Continue`): the connection is not held
        // until the request timeout.
        .layer(middleware::from_fn(
            move |req: axum::extract::Request, next: middleware::Next| async move {
                let declared = req
                    .headers()
                    .get(axum::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|n| n > body_limit as u64) {
                    return super::responses::plain_error(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "Request body too large\n",
                    );
                }
                next.run(req).await
            },
        ))
        .layer(middleware::map_response_with_state(
            Arc::clone(&web),
            security_headers,
        ))
        .with_state(web)
}
