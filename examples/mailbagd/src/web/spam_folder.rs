//! The Spam folder pages: the listing, release, delete, delete all.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbag_mailstore::{Error as StoreError, Folder, Uid, UserName};
use mailbag_spam_tag::Template as TagTemplate;
use serde::Deserialize;
use tracing::{info, warn};

use super::app::{App, blocking, humanize};
use super::extract::{Auth, AuthForm, CsrfField};
use super::pages::{ConfirmPage, Row, SpamFolderPage};
use super::responses::{internal_error, message, not_found_page, render, spam_in_use};
use super::spam;

#[derive(Deserialize, Default)]
pub(super) struct SpamQuery {
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

pub(super) async fn spam_page(
    State(web): State<App>,
    auth: Auth,
    Query(q): Query<SpamQuery>,
) -> Response {
    let Some(user) = auth.store_user() else {
        return internal_error(Some(auth.nav("spam")));
    };
    let page = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1);
    let cfg = &web.ctx.config();
    let (page_size, retention, max_header) = (
        cfg.web.page_size,
        cfg.spam.spam_retention,
        cfg.web.max_header_read,
    );
    let store = Arc::clone(&web.ctx.store);
    let template: TagTemplate = web.ctx.template().clone();
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
            score: e
                .header
                .score
                .map_or_else(|| "–".to_owned(), |s| s.to_string()),
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
pub(super) struct MessageForm {
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

pub(super) async fn spam_release(
    State(web): State<App>,
    AuthForm { auth, form: f }: AuthForm<MessageForm>,
) -> Response {
    let (user, uid) = match form_uid(&auth, f.uid.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let store = Arc::clone(&web.ctx.store);
    let template = web.ctx.template().clone();
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
        Some(Err(spam::ReleaseError::InUse)) => {
            info!(user = %auth.user, uid = %uid, "web: release refused: Spam folder open in a POP3 session");
            spam_in_use(Some(auth.nav("spam")))
        }
        Some(Err(e)) => {
            warn!(user = %auth.user, uid = %uid, error = %e, "web: release failed");
            internal_error(Some(auth.nav("spam")))
        }
        None => internal_error(Some(auth.nav("spam"))),
    }
}

pub(super) async fn spam_delete(
    State(web): State<App>,
    AuthForm { auth, form: f }: AuthForm<MessageForm>,
) -> Response {
    let (user, uid) = match form_uid(&auth, f.uid.as_deref()) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let store = Arc::clone(&web.ctx.store);
    let id = uid.clone();
    let result = blocking(move || {
        spam::with_spam_held(store.as_ref(), &user, || {
            store.delete(&user, Folder::Spam, &id)
        })
        .and_then(|r| r)
    })
    .await;
    match result {
        Some(Ok(())) => {
            info!(user = %auth.user, uid = %uid, "web: deleted from Spam");
            back_to(f.page.as_deref(), "deleted")
        }
        Some(Err(StoreError::NoSuchMessage)) => {
            info!(user = %auth.user, uid = %uid, "web: delete refused: no such message in the user's Spam");
            not_found_page(Some(auth.nav("spam")))
        }
        Some(Err(StoreError::InUse)) => {
            info!(user = %auth.user, uid = %uid, "web: delete refused: Spam folder open in a POP3 session");
            spam_in_use(Some(auth.nav("spam")))
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

pub(super) async fn delete_all_page(State(web): State<App>, auth: Auth) -> Response {
    let Some(user) = auth.store_user() else {
        return internal_error(Some(auth.nav("spam")));
    };
    let store = Arc::clone(&web.ctx.store);
    let now = SystemTime::now();
    match blocking(move || spam::list_spam(store.as_ref(), &user)).await {
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
pub(super) struct DeleteAllForm {
    csrf: Option<String>,
    upto: Option<String>,
}

pub(super) async fn delete_all_post(
    State(web): State<App>,
    AuthForm { auth, form: f }: AuthForm<DeleteAllForm>,
) -> Response {
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
    let store = Arc::clone(&web.ctx.store);
    let result = blocking(move || {
        spam::with_spam_held(store.as_ref(), &user, || {
            store.expunge_older_than(&user, Folder::Spam, cutoff)
        })
        .and_then(|r| r)
    })
    .await;
    match result {
        Some(Ok(n)) => {
            info!(user = %auth.user, deleted = n, "web: deleted all Spam");
            Redirect::to("/spam?done=emptied").into_response()
        }
        Some(Err(StoreError::InUse)) => {
            info!(user = %auth.user, "web: delete all refused: Spam folder open in a POP3 session");
            spam_in_use(Some(auth.nav("spam")))
        }
        Some(Err(e)) => {
            warn!(user = %auth.user, error = %e, "web: delete all failed");
            internal_error(Some(auth.nav("spam")))
        }
        None => internal_error(Some(auth.nav("spam"))),
    }
}

impl CsrfField for DeleteAllForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl CsrfField for MessageForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}
