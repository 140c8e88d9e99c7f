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
use mailbag_smtp_proto::seven_bit::QuotedPrintable;
use tracing::{info, warn};

use crate::clock::{humanize, unix_seconds as unix};
use crate::config::{SpamFolder, User};
use crate::context::Context;
use crate::release_link::ReleaseLink;
use crate::web::spam::{SpamEntry, entries_where, format_time};

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
    /// The user's spam goes to the INBOX and their Spam folder holds
    /// nothing new: no digest. (Spam filed before they chose the INBOX is
    /// still listed, since the sweeper deletes it.)
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
    /// New messages not listed (over `[spam] digest_max_entries`).
    more: usize,
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
    ctx.config()
        .data_dir
        .join(user.name.as_str())
        .join(STATE_FILE)
}

/// Milliseconds since the Unix epoch (0 before it).
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How far back a digest looks before the last one: a message saved (its
/// file time) just before the last digest but moved into the folder after
/// it was listed is caught by the next one. Messages already sent are
/// skipped by UID.
const OVERLAP_MS: u64 = 10 * 60 * 1000;

/// What the state file keeps: the time of the last digest (ms) and the
/// messages listed that the next digest's look back could see again (those
/// saved within [`OVERLAP_MS`] of it, by any digest so far), each with the
/// time it was saved (ms): `sent = <uid>@<ms> …`.
#[derive(Debug, Default, PartialEq)]
struct State {
    last_ms: u64,
    sent: Vec<(String, u64)>,
}

impl State {
    /// Reads the file's text; a `sent` UID without `@<ms>` (written before
    /// the times were kept) counts as saved at `last_ms`.
    fn parse(text: &str) -> State {
        let mut state = State::default();
        let mut sent = "";
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("last_ms = ") {
                state.last_ms = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("sent = ") {
                sent = v;
            }
        }
        state.sent = sent
            .split_whitespace()
            .map(|w| match w.split_once('@') {
                Some((uid, ms)) => (uid.to_owned(), ms.parse().unwrap_or(state.last_ms)),
                None => (w.to_owned(), state.last_ms),
            })
            .collect();
        state
    }

    /// The state after a digest at `now_ms` that listed `listed`: the
    /// messages listed before that the next look back still reaches, and
    /// these.
    fn after(&self, now_ms: u64, listed: impl Iterator<Item = (String, u64)>) -> State {
        let reach = now_ms.saturating_sub(OVERLAP_MS);
        let mut sent: Vec<(String, u64)> = self
            .sent
            .iter()
            .filter(|(_, ms)| *ms > reach)
            .cloned()
            .collect();
        sent.extend(listed);
        State {
            last_ms: now_ms,
            sent,
        }
    }
}

fn read_state(ctx: &Context, user: &User) -> Result<Option<State>, DigestError> {
    let path = state_path(ctx, user);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(State::parse(&text))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DigestError::State {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write_state(ctx: &Context, user: &User, state: &State) -> Result<(), DigestError> {
    let path = state_path(ctx, user);
    let text = format!(
        "# last Spam digest (milliseconds since 1970) and the messages listed that\n\
         # the next one could see again (uid@saved)\n\
         last_ms = {}\nsent = {}\n",
        state.last_ms,
        state
            .sent
            .iter()
            .map(|(uid, ms)| format!("{uid}@{ms}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    crate::private_file::replace(&path, text.as_bytes()).map_err(|source| DigestError::State {
        path: path.display().to_string(),
        source,
    })
}

/// A part's text as quoted-printable (RFC 2045 section 6.7), CRLF line ends:
/// lines of any length reach the reader whole (soft line breaks), and no line
/// of a part can read as its boundary. Before, lines were folded at 900
/// octets, which cut HTML character references in two (a probe's subject of
/// 200 `<` showed a literal `&` and `#60;`).
fn quoted_printable(text: &str) -> String {
    let mut qp = QuotedPrintable::new();
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    let text = text.strip_suffix('\n').unwrap_or(text);
    for line in text.split('\n') {
        qp.encode(
            line.strip_suffix('\r').unwrap_or(line).as_bytes(),
            true,
            &mut out,
        );
    }
    // The encoder writes ASCII only.
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `user` a digest of the spam saved after the last one, if one is
/// due at `now` (always with `force`). Blocking (file system).
///
/// # Errors
///
/// [`DigestError`]. The state is written before the digest is delivered
/// (so a state that cannot be saved sends nothing, rather than the same
/// digest at every pass), and put back when the delivery fails.
pub fn send_digest(
    ctx: &Context,
    user: &User,
    now: SystemTime,
    force: bool,
) -> Result<Outcome, DigestError> {
    let to_inbox = ctx.settings.effective(user).spam_folder != SpamFolder::Spam;
    let last = read_state(ctx, user)?;
    // Most users keep spam in the INBOX: one who never had a digest state
    // (never had spam filed in Spam when a pass came) costs a pass nothing.
    if to_inbox && last.is_none() && !force {
        return Ok(Outcome::SpamInInbox);
    }
    let interval = ctx.config().spam.digest_interval;
    if !force {
        let Some(interval) = interval else {
            return Ok(Outcome::NotDue);
        };
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        match &last {
            None => {
                let first = State {
                    last_ms: millis(now),
                    sent: Vec::new(),
                };
                write_state(ctx, user, &first)?;
                return Ok(Outcome::NotDue);
            }
            Some(l) if millis(now) < l.last_ms.saturating_add(interval_ms) => {
                return Ok(Outcome::NotDue);
            }
            Some(_) => {}
        }
    }
    // Saved after the last digest (less the overlap) and up to `now`, not
    // listed by it (spam saved while this one is made is in the next one).
    let (since, sent_before) = match &last {
        Some(l) => (l.last_ms.saturating_sub(OVERLAP_MS), l.sent.as_slice()),
        None => (0, &[][..]),
    };
    let retention = ctx.config().spam.spam_retention;
    let web = &ctx.config().web;
    let entries: Vec<SpamEntry> = entries_where(
        ctx.store.as_ref(),
        &user.name,
        &ctx.template(),
        retention,
        web.max_header_read,
        |m| {
            millis(m.saved) > since
                && m.saved <= now
                && !sent_before.iter().any(|(u, _)| u == m.uid.as_str())
        },
    )?;
    if entries.is_empty() {
        return Ok(if to_inbox {
            Outcome::SpamInInbox
        } else {
            Outcome::NothingNew
        });
    }
    let config = ctx.config();
    let hostname = config.hostname.as_str();
    let base = web.link_base(hostname);
    let max = ctx.config().spam.digest_max_entries;
    let rows: Vec<Row> = entries
        .iter()
        .take(max)
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
    let since_text = match &last {
        Some(l) if l.last_ms > 0 => format_time(UNIX_EPOCH + Duration::from_millis(l.last_ms)),
        _ => "you opened your mailbox".to_owned(),
    };
    let suffix = &ctx.config().pop3.spam_login_suffix;
    let spam_login = if suffix.is_empty() {
        String::new()
    } else {
        format!("{}{suffix}", user.name.as_str())
    };
    let d = Digest {
        user: user.name.as_str(),
        count: entries.len(),
        more: entries.len().saturating_sub(rows.len()),
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
    let empty = State::default();
    let state = last.as_ref().unwrap_or(&empty).after(
        millis(now),
        entries.iter().map(|e| (e.uid.clone(), millis(e.received))),
    );
    write_state(ctx, user, &state)?;
    if let Err(e) = ctx
        .store
        .deliver(&user.name, Folder::Inbox, &mut message.as_bytes())
    {
        if let Some(old) = &last {
            let _ = write_state(ctx, user, old);
        } else {
            let _ = std::fs::remove_file(state_path(ctx, user));
        }
        return Err(e.into());
    }
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
    let config = ctx.config();
    let hostname = config.hostname.as_str();
    let domain = config
        .local_domains
        .first()
        .map_or(hostname, |d| d.as_str());
    let date = DateTime::from_system_time(now, 0)
        .map(|d| d.to_string())
        .unwrap_or_default();
    let t = unix(now);
    let boundary = format!("=_mailbag_digest_{t}_{count}");
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
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         {text}\
         --{boundary}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         {html}\
         --{boundary}--\r\n",
        user = user.name.as_str(),
        s = if count == 1 { "" } else { "s" },
        text = quoted_printable(text),
        html = quoted_printable(html),
    )
}

/// Sends the digests that are due, every `min(digest_interval,
/// sweep_interval)`, until the server shuts down.
pub async fn run(ctx: Arc<Context>) {
    let Some(interval) = ctx.config().spam.digest_interval else {
        return;
    };
    let tick = interval.min(ctx.config().spam.sweep_interval);
    loop {
        let c = Arc::clone(&ctx);
        let pass = tokio::task::spawn_blocking(move || {
            // A user without a Maildir has no spam to report.
            let config = c.config();
            for user in c.users_with_maildir(&config) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe: a third digest within the look back listed the first one's
    /// messages again (the state kept only the last digest's), and digests
    /// every 20 s alternated between the same messages for ever.
    #[test]
    fn a_message_listed_once_is_not_listed_again_while_the_look_back_reaches_it() {
        let t0 = 1_000_000_000;
        let s1 = State::default().after(t0, [("a".to_owned(), t0 - 1000)].into_iter());
        let s2 = s1.after(t0 + 20_000, [("b".to_owned(), t0 + 10_000)].into_iter());
        // The third digest looks back to t0 + 20 s - OVERLAP: a and b are
        // both within reach, and both still known as sent.
        let s3 = s2.after(t0 + 40_000, std::iter::empty());
        let uids: Vec<&str> = s3.sent.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(uids, ["a", "b"]);
        // Past the look back they are forgotten: the state does not grow.
        let later = s3.after(t0 + 10_000 + OVERLAP_MS + 1, std::iter::empty());
        assert!(later.sent.is_empty(), "{later:?}");
        // The file's form, and one written before times were kept.
        let text = format!("last_ms = {t0}\nsent = a@{} b\n", t0 - 1000);
        assert_eq!(
            State::parse(&text),
            State {
                last_ms: t0,
                sent: vec![("a".into(), t0 - 1000), ("b".into(), t0)],
            }
        );
    }

    /// Decodes quoted-printable (soft breaks out, `=XX` decoded), as a mail client does.
    fn decode_qp(qp: &str) -> String {
        let b = qp.replace("=\r\n", "");
        let b = b.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Parts are quoted-printable: lines of at most 76 octets that decode to the text
    /// as it was (an escaped subject of 200 `<` included), and none that reads as a
    /// boundary.
    #[test]
    fn parts_are_quoted_printable_and_decode_whole() {
        let escaped = "&#60;".repeat(200);
        let text = format!(
            "<td>{escaped}</td>\n--=_mailbag_digest_1_1\nshort\r\n{}\ncaf\u{e9} = ok \n",
            "x".repeat(2000)
        );
        let qp = quoted_printable(&text);
        assert!(qp.split("\r\n").all(|l| l.len() <= 76), "{qp}");
        assert!(!qp.split("\r\n").any(|l| l.starts_with("--")), "{qp}");
        assert!(!qp.replace("\r\n", "").contains('\n'));
        assert_eq!(
            decode_qp(&qp),
            text.replace("\r\n", "\n").replace('\n', "\r\n")
        );
        assert_eq!(quoted_printable("a b\n"), "a b\r\n");
    }
}
