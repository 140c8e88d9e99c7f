//! `GET /help`: the email client settings of this server, from the running
//! configuration ([`ClientSettings`]); no login needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::app::{App, humanize};
use super::pages::HelpPage;
use super::responses::render;
use crate::client_settings::ClientSettings;

pub(super) async fn help_page(State(web): State<App>) -> Response {
    let s = ClientSettings::from_config(&web.ctx.config());
    render(
        StatusCode::OK,
        HelpPage {
            nav: None,
            window: humanize(s.relay_window),
            retention: humanize(s.spam_retention),
            s,
        },
    )
}
