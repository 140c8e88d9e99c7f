//! The spam settings page.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::app::{App, blocking, humanize};
use super::extract::{Auth, AuthForm, CsrfField};
use super::pages::SettingsPage;
use super::responses::{internal_error, message, render};
use crate::client_settings::tag_example;
use crate::config::SpamFolder;
use crate::user_settings::Overrides;

#[derive(Deserialize, Default)]
pub(super) struct SavedQuery {
    saved: Option<String>,
}

pub(super) async fn settings_page(
    State(web): State<App>,
    auth: Auth,
    Query(q): Query<SavedQuery>,
) -> Response {
    let config = web.ctx.config();
    let Some(user) = config.user(&auth.user) else {
        return internal_error(Some(auth.nav("settings")));
    };
    let settings = Arc::clone(&web.ctx.settings);
    let u = user.clone();
    let Some(effective) = blocking(move || settings.effective(&u)).await else {
        return internal_error(Some(auth.nav("settings")));
    };
    let example = tag_example(&web.ctx.config());
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
            retention: humanize(web.ctx.config().spam.spam_retention),
        },
    )
}

#[derive(Deserialize, Default)]
pub(super) struct SettingsForm {
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

pub(super) async fn settings_post(
    State(web): State<App>,
    AuthForm { auth, form: f }: AuthForm<SettingsForm>,
) -> Response {
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
    let settings = Arc::clone(&web.ctx.settings);
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

impl CsrfField for SettingsForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_values() {
        assert_eq!(on_off(Some("on")), Some(true));
        assert_eq!(on_off(Some("off")), Some(false));
        assert_eq!(on_off(Some("ON")), None);
        assert_eq!(on_off(None), None);
    }
}
