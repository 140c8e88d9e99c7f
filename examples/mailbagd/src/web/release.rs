//! `GET /release` and `POST /release`: the Spam digest's release links
//! ([`crate::release_link`]). No login: the signed link is the permission,
//! for one message of one user until that message would be deleted.
//! Opening the link shows what it releases and a button; only the POST of
//! that form releases (link previewers and mail scanners only GET).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use mailbag_mailstore::Uid;
use serde::Deserialize;
use tracing::{info, warn};

use super::app::{App, blocking};
use super::pages::ReleasePage;
use super::responses::{internal_error, message, render, spam_in_use};
use super::spam;
use crate::clock::unix_now;
use crate::release_link::ReleaseLink;

/// The fields of a release link (query of the GET, form of the POST).
#[derive(Deserialize, Debug, Default)]
pub(super) struct LinkFields {
    u: Option<String>,
    m: Option<String>,
    e: Option<u64>,
    t: Option<String>,
}

impl LinkFields {
    /// The link, when its signature and time hold and its user is still
    /// configured (a removed user's links end with the user, as sessions do).
    fn verify(&self, web: &App) -> Option<ReleaseLink> {
        let link = ReleaseLink::verify(
            &web.ctx.link_key,
            self.u.as_deref()?,
            self.m.as_deref()?,
            self.e?,
            self.t.as_deref()?,
            unix_now(),
        )?;
        web.ctx
            .config()
            .user(link.user.as_str())
            .is_some()
            .then_some(link)
    }
}

fn gone() -> Response {
    message(
        StatusCode::NOT_FOUND,
        None,
        "Link not valid",
        "This release link is not valid, has expired, or its message was already released or \
         deleted.",
        "/login",
        "Log in to see your Spam folder",
    )
}

pub(super) async fn release_page(State(web): State<App>, Query(f): Query<LinkFields>) -> Response {
    let Some(link) = f.verify(&web) else {
        return gone();
    };
    let ctx = Arc::clone(&web.ctx);
    let (user, uid) = (link.user.clone(), link.uid.clone());
    let entry = blocking(move || {
        spam::entry(
            ctx.store.as_ref(),
            &user,
            &uid,
            &ctx.template(),
            ctx.config().spam.spam_retention,
            ctx.config().web.max_header_read,
        )
    })
    .await;
    match entry {
        Some(Ok(Some(e))) => render(
            StatusCode::OK,
            ReleasePage {
                nav: None,
                from: e.header.from,
                subject: e.header.subject,
                received: spam::format_time(e.received),
                u: link.user.as_str().to_owned(),
                m: link.uid.as_str().to_owned(),
                e: link.expires,
                t: f.t.unwrap_or_default(),
            },
        ),
        Some(Ok(None)) => gone(),
        Some(Err(e)) => {
            warn!(user = %link.user, error = %e, "web: release link: cannot read the Spam folder");
            internal_error(None)
        }
        None => internal_error(None),
    }
}

pub(super) async fn release_post(State(web): State<App>, Form(f): Form<LinkFields>) -> Response {
    let Some(link) = f.verify(&web) else {
        info!("web: release link refused (not valid or expired)");
        return gone();
    };
    let ctx = Arc::clone(&web.ctx);
    let (user, uid): (_, Uid) = (link.user.clone(), link.uid.clone());
    let result =
        blocking(move || spam::release(ctx.store.as_ref(), &user, &uid, &ctx.template())).await;
    match result {
        Some(Ok(())) => {
            info!(user = %link.user, uid = %link.uid, "web: released from Spam by a digest link");
            message(
                StatusCode::OK,
                None,
                "Released",
                "The message is in your INBOX now, without the spam mark. Your mail program \
                 fetches it the next time it checks for mail.",
                "/login",
                "Log in to see your Spam folder",
            )
        }
        Some(Err(spam::ReleaseError::NotFound)) => gone(),
        Some(Err(spam::ReleaseError::InUse)) => {
            info!(user = %link.user, uid = %link.uid, "web: release by link refused: Spam folder open in a POP3 session");
            spam_in_use(None)
        }
        Some(Err(e)) => {
            warn!(user = %link.user, uid = %link.uid, error = %e, "web: release by link failed");
            internal_error(None)
        }
        None => internal_error(None),
    }
}
