//! The Spam digest: every `[spam] digest_interval` (default 7 days), a user
//! whose spam goes to the Spam folder gets a message in the INBOX listing
//! the spam that arrived since the last digest (received, sender, subject,
//! score, the date it will be deleted) with a signed release link per
//! message ([`crate::release_link`]), as text and HTML.
//!
//! - Only when spam arrived since the last digest; never for users whose
//!   spam stays in the INBOX.
//! - The digest goes straight into the INBOX: never scanned, tagged or filed
//!   in Spam.
//! - The time of the last digest is kept in `<data_dir>/<user>/mailbag-digest`
//!   (written to a temporary file, fsynced, renamed), so a restart sends no
//!   second digest for the same spam. A user seen for the first time starts
//!   counting then.
//! - `mailbagd digest --now [USER]` sends one at once ([`send_digest`] with
//!   `force`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template as _;
use mailbag_mailstore::{Folder, Uid};
use mailbag_smtp_proto::date::DateTime;
use tracing::{info, warn};

use crate::clock::{humanize, unix_seconds as unix};
use crate::config::{SpamFolder, User};
use crate::context::Context;
use crate::release_link::ReleaseLink;
use crate::web::spam::{SpamEntry, format_time, list_page};

/// The state file in each user's directory.
pub const STATE_FILE: &str = "mailbag-digest";

/// What [`send_digest`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A digest of this many messages is in the INBOX.
    Sent(usize),
    /// No spam arrived since the last digest.
    NothingNew,
    /// The interval has not passed yet (or the user was seen for the first
    /// time: counting starts now).
    NotDue,
    /// The user's spam goes to the INBOX: no digest.
    SpamInInbox,
}

/// Why a digest could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The mail store failed.
    #[error("mail store: {0}")]
    Store(#[from] mailbag_mailstore::Error),
    /// The state file could not be read or written.
    #[error("{path}: {source}")]
    State {
        /// The state file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A template failed.
    #[error("template: {0}")]
    Template(#[from] askama::Error),
}

/// One line of the digest.
#[derive(Debug)]
struct Row {
    received: String,
    from: String,
    subject: String,
    score: String,
    deleted_at: String,
    link: String,
}

/// What both parts of the digest show.
#[derive(Debug)]
struct Digest<'a> {
    user: &'a str,
    count: usize,
    since: String,
    retention: String,
    rows: Vec<Row>,
    base: String,
    spam_login: String,
    hostname: &'a str,
}

#[derive(askama::Template)]
#[template(path = "digest.txt")]
struct TextPart<'a> {
    d: &'a Digest<'a>,
}

#[derive(askama::Template)]
#[template(path = "digest.html")]
struct HtmlPart<'a> {
    d: &'a Digest<'a>,
}

fn state_path(ctx: &Context, user: &User) -> PathBuf {
    ctx.config
        .data_dir
        .join(user.name.as_str())
        .join(STATE_FILE)
}

/// Milliseconds since the Unix epoch (0 before it).
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time of the last digest in milliseconds (`None`: never).
fn read_state(ctx: &Context, user: &User) -> Result<Option<u64>, DigestError> {
    let path = state_path(ctx, user);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("last_ms = "))
            .and_then(|v| v.trim().parse().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DigestError::State {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write_state(ctx: &Context, user: &User, last: u64) -> Result<(), DigestError> {
    let path = state_path(ctx, user);
    let err = |source| DigestError::State {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(
            format!("# last Spam digest (milliseconds since 1970)\nlast_ms = {last}\n").as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(err)
}

/// Sends `user` a digest of the spam saved after the last one, if one is
/// due at `now` (always with `force`). Blocking (file system).
///
/// # Errors
///
/// [`DigestError`]; nothing was delivered and the state is unchanged.
pub fn send_digest(
    ctx: &Context,
    user: &User,
    now: SystemTime,
    force: bool,
) -> Result<Outcome, DigestError> {
    if ctx.settings.effective(user).spam_folder != SpamFolder::Spam {
        return Ok(Outcome::SpamInInbox);
    }
    let last = read_state(ctx, user)?;
    let interval = ctx.config.spam.digest_interval;
    if !force {
        let Some(interval) = interval else {
            return Ok(Outcome::NotDue);
        };
        match last {
            None => {
                write_state(ctx, user, millis(now))?;
                return Ok(Outcome::NotDue);
            }
            Some(l) if millis(now) < l.saturating_add(millis(UNIX_EPOCH + interval)) => {
                return Ok(Outcome::NotDue);
            }
            Some(_) => {}
        }
    }
    // Saved after the last digest and up to `now` (spam saved while this one
    // is made is in the next one).
    let since = last.unwrap_or(0);
    let retention = ctx.config.spam.spam_retention;
    let web = &ctx.config.web;
    let page = list_page(
        ctx.store.as_ref(),
        &user.name,
        &ctx.template,
        1,
        usize::MAX,
        retention,
        web.max_header_read,
    )?;
    let mut entries: Vec<SpamEntry> = page
        .entries
        .into_iter()
        .filter(|e| millis(e.received) > since && e.received <= now)
        .collect();
    entries.reverse();
    if entries.is_empty() {
        return Ok(Outcome::NothingNew);
    }
    let hostname = ctx.config.hostname.as_str();
    let base = web.link_base(hostname);
    let rows: Vec<Row> = entries
        .iter()
        .filter_map(|e| {
            let link = ReleaseLink {
                user: user.name.clone(),
                uid: Uid::new(e.uid.clone()).ok()?,
                expires: unix(e.deleted_at),
            };
            Some(Row {
                received: format_time(e.received),
                from: e.header.from.clone(),
                subject: e.header.subject.clone(),
                score: e.header.score.map_or("–".to_owned(), |s| s.to_string()),
                deleted_at: format_time(e.deleted_at),
                link: format!("{base}/release?{}", link.query(&ctx.link_key)),
            })
        })
        .collect();
    let since_text = match last {
        Some(l) if l > 0 => format_time(UNIX_EPOCH + Duration::from_millis(l)),
        _ => "you opened your mailbox".to_owned(),
    };
    let suffix = &ctx.config.pop3.spam_login_suffix;
    let spam_login = if suffix.is_empty() {
        String::new()
    } else {
        format!("{}{suffix}", user.name.as_str())
    };
    let d = Digest {
        user: user.name.as_str(),
        count: rows.len(),
        since: since_text,
        retention: humanize(retention),
        rows,
        base,
        spam_login,
        hostname,
    };
    let text = TextPart { d: &d }.render()?;
    let html = HtmlPart { d: &d }.render()?;
    let message = compose(ctx, user, now, d.count, &text, &html);
    ctx.store
        .deliver(&user.name, Folder::Inbox, &mut message.as_bytes())?;
    write_state(ctx, user, millis(now))?;
    Ok(Outcome::Sent(d.count))
}

/// The digest message: multipart/alternative, text then HTML, CRLF.
fn compose(
    ctx: &Context,
    user: &User,
    now: SystemTime,
    count: usize,
    text: &str,
    html: &str,
) -> String {
    let hostname = ctx.config.hostname.as_str();
    let domain = ctx
        .config
        .local_domains
        .first()
        .map_or(hostname, |d| d.as_str());
    let date = DateTime::from_system_time(now, 0)
        .map(|d| d.to_string())
        .unwrap_or_default();
    let t = unix(now);
    let boundary = format!("=_mailbag_digest_{t}_{count}");
    let crlf = |s: &str| s.replace("\r\n", "\n").replace('\n', "\r\n");
    format!(
        "From: Mailbag <postmaster@{hostname}>\r\n\
         To: <{user}@{domain}>\r\n\
         Subject: Spam digest: {count} message{s} in your Spam folder\r\n\
         Date: {date}\r\n\
         Message-ID: <digest.{t}.{user}@{hostname}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {text}\r\n\
         --{boundary}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {html}\r\n\
         --{boundary}--\r\n",
        user = user.name.as_str(),
        s = if count == 1 { "" } else { "s" },
        text = crlf(text),
        html = crlf(html),
    )
}

/// Sends the digests that are due, every `min(digest_interval,
/// sweep_interval)`, until the server shuts down.
pub async fn run(ctx: Arc<Context>) {
    let Some(interval) = ctx.config.spam.digest_interval else {
        return;
    };
    let tick = interval.min(ctx.config.spam.sweep_interval);
    loop {
        let c = Arc::clone(&ctx);
        let pass = tokio::task::spawn_blocking(move || {
            for user in &c.config.users {
                match send_digest(&c, user, SystemTime::now(), false) {
                    Ok(Outcome::Sent(n)) => {
                        info!(user = %user.name, messages = n, "Spam digest sent")
                    }
                    Ok(_) => {}
                    Err(e) => warn!(user = %user.name, error = %e, "Spam digest failed"),
                }
            }
        });
        if let Err(e) = pass.await {
            warn!(error = %e, "Spam digest pass failed");
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
