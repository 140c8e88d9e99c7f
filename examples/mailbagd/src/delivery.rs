//! The delivery pipeline run after DATA: spam scoring (`spam-tag`'s built-in
//! scorer, streaming), per-user routing and header rewrite, durable
//! delivery into each local user's INBOX or Spam (`mailstore`), and the
//! durable relay queue for remote recipients.
//!
//! It is blocking (file system work): the SMTP driver runs it through
//! `spawn_blocking` and answers `250` only when [`deliver`] returned `Ok`,
//! that is once every copy is fsynced.
//!
//! Several copies (local users, and the relay queue for remote recipients):
//! every copy is written first (into its Maildir's `tmp/`, fsynced and closed
//! there: `Delivery::seal`, so that a message for many local users holds no
//! descriptor per user; or the queue's body file), and only when all are
//! written (the queue's copy flushed, fsynced and its envelope written:
//! `QueueWriter::seal`) are they committed (moved into place, the queue's copy
//! last), so a
//! copy that cannot be written (broken or unwritable Maildir, full disk, a
//! failed fsync, size) makes the whole message fail with nothing stored, and
//! the client's retry duplicates nothing.
//!
//! Quota: RCPT already refused a mailbox that is full or that an announced
//! `SIZE=` would take over ([`room_for`]). After DATA, before anything is
//! committed, every sealed copy is checked against its user's quota with its
//! real size: a copy that would take its mailbox over is dropped, the other
//! recipients get the message (`250`), and the sender gets a bounce for that
//! recipient (`5.2.2`, "Mailbox full"), made by the relay queue, where the
//! message is queued with that recipient failed. One SMTP reply cannot refuse
//! one recipient after DATA; answering `452` for all would hold back the
//! others' copies until the full mailbox made room, and lose them when the
//! sender gives up. Only when every recipient is in that case is the reply
//! `452 4.2.2`, with nothing stored. A copy judged spam is dropped without a
//! bounce: spam's sender is most likely forged, and the bounce would be
//! backscatter.
//!
//! Known gap: a failure in the commit step itself (a concurrent delivery
//! that filled the mailbox between the check and the commit, a rename, the
//! directory's fsync) after another copy was committed still answers 4xx,
//! and the retry duplicates that copy.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use mailbag_mailstore::queue::{Outcome, QueueError, RecipientState, ReportState};
use mailbag_mailstore::{Delivery, Error as StoreError, Folder as StoreFolder, UserName};
use mailbag_smtp_proto::address::ReversePath;
use mailbag_smtp_proto::date::DateTime;
use mailbag_smtp_proto::trace::{Received, received_count, return_path};
use mailbag_smtp_proto::types::Reply;
use mailbag_spam_tag::{
    BuiltinScorer, Decision, Folder as SpamFolderChoice, HeaderAction, HeaderRewriter,
    RewriteOptions, Score, UserSettings, Verdict, decide,
};
use tracing::info;

use crate::clock::unix_seconds;
use crate::config::{Config, SpamFolder, User};
use crate::context::{Context, Live};
use crate::envelope::{Envelope, LocalRecipient, Recipient, forward_address, message_number};
use crate::read_chunks::each_chunk;
use crate::replies;
use crate::spool::Spool;

/// Octets read from the spool per step.
const COPY_CHUNK: usize = 64 * 1024;

/// The outcome recorded for a local recipient whose `NOTIFY=SUCCESS` asks for a
/// "delivered" DSN: its `Diagnostic-Code` (`X-Mailbagd;`) and status (`2.0.0`).
pub const LOCAL_DELIVERY_REPLY: &str = "250 2.0.0 delivered to the mailbox";

/// How much of the start of a message is searched for `Received:` fields, and
/// for the fields a submission may lack (the spool's in-memory part holds at
/// least this much).
pub const MAX_HEADER_INSPECTED: usize = 256 * 1024;

/// Why a delivery failed: the SMTP reply to send (4xx: try again later; 5xx: a
/// verdict about the message itself).
#[derive(Debug, thiserror::Error)]
#[error("{}", reply_text(.0))]
pub struct DeliveryError(pub Reply<'static>);

fn reply_text(r: &Reply<'_>) -> String {
    let mut v = Vec::new();
    r.encode(&mut v);
    String::from_utf8_lossy(&v).trim_end().to_owned()
}

impl DeliveryError {
    /// Is the failure temporary (a 4xx reply)?
    pub fn is_temporary(&self) -> bool {
        self.0.code().class() == 4
    }

    /// The reply for a store error: only a verdict about the message is
    /// permanent (too big, a full mailbox when the store says so); every
    /// other failure is a local fault (I/O, permissions, a full disk, a
    /// broken Maildir) and gets `451 4.3.0`, so the client keeps the message
    /// and retries.
    fn from_store(e: &StoreError) -> DeliveryError {
        DeliveryError(match e {
            StoreError::MessageTooLarge { .. } => replies::too_big(),
            StoreError::QuotaExceeded { .. } => replies::mailbox_full(e.is_temporary()),
            _ => {
                tracing::warn!(error = %e, "local delivery");
                replies::delivery_deferred()
            }
        })
    }
}

fn temp() -> DeliveryError {
    DeliveryError(replies::local_error())
}

fn queue_error(e: &QueueError) -> DeliveryError {
    match e {
        QueueError::TooLarge { .. } => DeliveryError(replies::too_big()),
        _ => {
            tracing::warn!(error = %e, "relay queue");
            temp()
        }
    }
}

fn io_temp(what: &str, e: &io::Error) -> DeliveryError {
    tracing::warn!(error = %e, "{what}");
    temp()
}

/// Whether `user` has room for a message of `size` octets (`0`: no `SIZE=`
/// was announced), asked at RCPT: a mailbox at or over its quota, or one
/// the announced size would take over it, refuses its own copy
/// ([`replies::mailbox_full`]) while the other recipients still get theirs.
/// Any other store error is left to the delivery after DATA, which answers
/// it. Blocking (it reads the user's folders).
pub fn room_for(ctx: &Context, user: &UserName, size: u64) -> Result<(), DeliveryError> {
    match ctx.store.check_quota(user, size) {
        Err(e @ StoreError::QuotaExceeded { .. }) => {
            info!(user = %user, size, "recipient refused: mailbox full");
            Err(DeliveryError::from_store(&e))
        }
        Err(e) => {
            tracing::debug!(user = %user, error = %e, "quota not checked at RCPT");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Where each copy went.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The score, when the message was scanned.
    pub score: Option<f64>,
    /// `(user, folder name)` per local copy.
    pub local: Vec<(UserName, &'static str)>,
    /// Whether a relay queue file was written.
    pub queued: bool,
}

/// The spam-tag settings of `user`: the config file's values with the
/// user's overrides from the web page, looked up at each delivery (the
/// settings store is written through by the page), so a change applies to
/// the next message without a restart.
fn settings_for(ctx: &Context, config: &Config, user: &User) -> UserSettings {
    let effective = ctx.settings.effective(user);
    let mut s = UserSettings::default();
    s.scanning = effective.spam_scanning;
    s.subject_prefix = effective.subject_prefix;
    s.spam_folder = match effective.spam_folder {
        SpamFolder::Spam => SpamFolderChoice::Spam,
        SpamFolder::Inbox => SpamFolderChoice::Inbox,
    };
    s.threshold = Score::saturating(config.spam.threshold);
    s
}

/// Whether any of the local recipients `local` (configured user names) has
/// spam scanning on (config file value or web page override): the SMTP
/// driver asks spamd only then. `config` is the one the session began with.
pub fn any_scanning<'a>(
    ctx: &Context,
    config: &Config,
    local: impl IntoIterator<Item = &'a UserName>,
) -> bool {
    local
        .into_iter()
        .filter_map(|name| config.user(name.as_str()))
        .any(|u| ctx.settings.effective(u).spam_scanning)
}

fn for_each_chunk(
    spool: &mut Spool,
    f: impl FnMut(&[u8]) -> Result<(), DeliveryError>,
) -> Result<(), DeliveryError> {
    let mut reader = spool.reader().map_err(|e| io_temp("spool read", &e))?;
    each_chunk(&mut reader, COPY_CHUNK, |e| io_temp("spool read", &e), f)
}

/// Scores the message as it will be stored, `head` (this server's fields,
/// [`stored_head`]) above the spooled content, as spamd gets it: a customer's
/// message without `Date:` is stored with the one the server adds, and is not
/// scored as missing it (a probe found such a message filed as spam).
fn scan(head: &str, spool: &mut Spool) -> Result<Verdict, DeliveryError> {
    let scorer = BuiltinScorer::default();
    let mut scan = scorer.scan();
    scan.feed(head.as_bytes());
    for_each_chunk(spool, |c| {
        scan.feed(c);
        Ok(())
    })?;
    Ok(scan.finish())
}

/// Where the spam verdict comes from.
#[derive(Debug)]
pub enum Scan {
    /// Score with `spam-tag`'s built-in scorer while delivering.
    Builtin,
    /// Already scored (by spamd); `None`: not scanned (spamd unavailable
    /// under the fail-open policy, or message over its size limit).
    Done(Option<Verdict>),
}

/// This server's `Received:` field (RFC 5321 4.4) for a message received
/// with `env` at `now` (its id `<connection id>.<instance>`, or
/// `<connection id>-<n>.<instance>` for the connection's `n`th message, the
/// instance being [`Context::instance`]): above each stored copy (under `Return-Path:`) and
/// each queued one. spamd gets both above the message too, so that it
/// scores what will be stored: the client's address, its HELO name and the
/// sender (network and SPF tests; without them SpamAssassin saw
/// `NO_RECEIVED`).
///
/// # Errors
///
/// `now` out of the range of a date (a local fault: `451`).
pub fn received_field(
    config: &Config,
    instance: &str,
    env: &Envelope,
    now: SystemTime,
) -> Result<String, DeliveryError> {
    let for_rcpt = env.for_rcpt.as_ref().map(forward_address);
    let date = DateTime::from_system_time(now, 0).map_err(|_| temp())?;
    let mut received = Received::new(
        env.helo.as_ref().map_or("", |h| h.as_str()),
        env.client,
        config.hostname.as_str(),
        date,
    )
    .by_comment("mailbagd")
    .with(env.with)
    .id(format_args!(
        "{}.{instance}",
        message_number(env.id, env.message)
    ));
    if let Some(r) = &for_rcpt {
        received = received.recipient(r);
    }
    Ok(received.to_header())
}

/// What each stored copy of a message received with `env` starts with:
/// `Return-Path:`, then this server's `received` field
/// ([`received_field`]), then the fields it adds to a customer's message
/// ([`Envelope::added_fields`]). spamd scores the message under it too.
pub fn stored_head(env: &Envelope, received: &str) -> String {
    format!(
        "{}{received}{}",
        return_path(&env.sender()),
        env.added_fields
    )
}

/// Delivers a spooled message to every recipient of `env`, durably.
/// `Ok` means every copy is stored (the caller may answer `250`). `live` is
/// what the SMTP session began with (its recipients were checked against
/// it), so that a reload in the middle of a transaction drops no recipient.
pub fn deliver(
    ctx: &Context,
    live: &Live,
    spool: &mut Spool,
    env: &Envelope,
    scan_source: Scan,
) -> Result<Report, DeliveryError> {
    let config = &*live.config;
    let head = spool
        .head(MAX_HEADER_INSPECTED)
        .map_err(|e| io_temp("spool read", &e))?;
    let hops = received_count(&head);
    if hops > config.smtp.max_received_headers {
        info!(
            received = hops,
            max = config.smtp.max_received_headers,
            "mail loop: too many Received: fields"
        );
        return Err(DeliveryError(replies::mail_loop()));
    }
    let now = SystemTime::now();
    let received = received_field(config, &ctx.instance, env, now)?;
    let head = stored_head(env, &received);
    let mut report = Report::default();

    let users: Vec<(&LocalRecipient, &User, UserSettings)> = env
        .local
        .iter()
        .filter_map(|l| config.user(l.user.as_str()).map(|u| (l, u)))
        .map(|(l, u)| (l, u, settings_for(ctx, config, u)))
        .collect();
    let verdict = if users.iter().any(|(_, _, s)| s.scanning) {
        match scan_source {
            Scan::Builtin => Some(scan(&head, spool)?),
            Scan::Done(v) => v,
        }
    } else {
        None
    };
    report.score = verdict.as_ref().map(|v| v.score().value());

    // Two phases, so that a copy failing for one user does not leave the others stored
    // behind a 4xx (the client's retry would duplicate them): first every local copy is
    // written to its Maildir tmp/ and sealed (fsynced and closed; nothing visible yet; a
    // failure here drops them all and nothing is stored), then all are committed. A
    // failure inside the commit phase (quota, rename, directory fsync) after an earlier
    // commit still answers 4xx: see the module docs.
    let mut prepared = Vec::with_capacity(users.len());
    for (local, user, settings) in users {
        let decision = decide(&settings, verdict.as_ref());
        let folder = match decision.folder {
            SpamFolderChoice::Inbox => StoreFolder::Inbox,
            _ => StoreFolder::Spam,
        };
        let mut d = ctx
            .store
            .begin_delivery(&user.name, folder)
            .map_err(|e| DeliveryError::from_store(&e))?;
        d.write_chunk(head.as_bytes())
            .map_err(|e| DeliveryError::from_store(&e))?;
        let mut opts = RewriteOptions::default();
        opts.template = live.template.clone();
        opts.max_header_bytes = config.smtp.max_header_size;
        let judged = Judged::of(&decision);
        let mut rw = HeaderRewriter::new(decision.action, opts);
        let mut out = Vec::with_capacity(COPY_CHUNK + 1024);
        for_each_chunk(spool, |c| {
            out.clear();
            rw.feed(c, &mut out)
                .map_err(|_| DeliveryError(replies::header_too_large()))?;
            d.write_chunk(&out)
                .map_err(|e| DeliveryError::from_store(&e))
        })?;
        out.clear();
        rw.finish(&mut out)
            .map_err(|_| DeliveryError(replies::header_too_large()))?;
        d.write_chunk(&out)
            .map_err(|e| DeliveryError::from_store(&e))?;
        // Written, fsynced and closed now: a message for 100 local recipients
        // does not hold 100 descriptors (and write buffers) until the commits.
        d.seal().map_err(|e| DeliveryError::from_store(&e))?;
        prepared.push((local, user, judged, d));
    }

    // A copy this message would take over its user's quota (no `SIZE=` was announced,
    // or the header added here tipped it) cannot be refused alone any more: unless
    // every recipient is in that case, the others get the message and the sender a
    // bounce for it, made from the relay queue (the user's copy is dropped).
    let (prepared, over_quota) = over_quota(ctx, prepared);
    if let Some((_, _, e)) = over_quota.first()
        && prepared.is_empty()
        && env.remote.is_empty()
    {
        return Err(DeliveryError::from_store(e));
    }
    // Spam is not bounced: its sender is most likely forged, and the bounce would be
    // backscatter to an innocent address.
    let over_quota: Vec<&LocalRecipient> = over_quota
        .into_iter()
        .filter_map(|(local, judged, _)| {
            if judged == Judged::Spam {
                info!(user = %local.user, "over quota after DATA, judged spam: dropped without a bounce");
                None
            } else {
                Some(local)
            }
        })
        .collect();

    // RFC 3461 section 4.1: `NOTIFY=SUCCESS` asks for a "delivered" DSN once the copy is
    // in the mailbox. The recipient goes into the relay queue's copy as delivered with
    // its report owed, so that the report is made at least once, as failures are (the
    // copy is only committed if every local copy was). Not for the null sender (RFC 3461
    // section 6.2), nor for a copy judged spam (backscatter, as above).
    // Every RCPT that named the user counts (`postmaster` and the user's own address).
    let success_reports: Vec<&Recipient> = if matches!(env.from, ReversePath::Null) {
        Vec::new()
    } else {
        prepared
            .iter()
            .filter(|(_, _, judged, _)| *judged != Judged::Spam)
            .flat_map(|(local, ..)| local.rcpts())
            .filter(|r| r.params.notify.is_some_and(|n| n.success()))
            .collect()
    };

    // The relay queue's copy is written in the first phase too, and committed last.
    let mut queued = None;
    if !env.remote.is_empty() || !over_quota.is_empty() || !success_reports.is_empty() {
        let mut qenv = env.to_queue(unix_seconds(now));
        for rcpt in &success_reports {
            let mut r = rcpt.to_queue();
            r.state = RecipientState::Delivered(Outcome {
                at: unix_seconds(now),
                host: None,
                reply: LOCAL_DELIVERY_REPLY.to_owned(),
            });
            r.report = ReportState::Owed;
            qenv.recipients.push(r);
        }
        let bounce = replies::mailbox_full(false);
        for local in &over_quota {
            info!(user = %local.user, "over quota after DATA: the sender gets a bounce");
            for rcpt in local.rcpts() {
                let mut r = rcpt.to_queue();
                r.state = RecipientState::Failed(Outcome {
                    at: unix_seconds(now),
                    host: None,
                    reply: reply_text(&bounce),
                });
                r.report = ReportState::Owed;
                qenv.recipients.push(r);
            }
        }
        // RFC 6531 section 3.2: SMTPUTF8 goes on only when the message needs it, so
        // that a next hop without it takes an ASCII message the client flagged anyway
        // rather than bouncing it (a probe's bounce). Only a message that is ASCII
        // throughout counts as not needing it: UTF-8 in a MIME part's header, or 8-bit
        // octets the client sent under SMTPUTF8 without BODY=8BITMIME, keep it.
        if qenv.smtputf8 {
            let mut ascii = qenv.reverse_path.is_ascii()
                && qenv.recipients.iter().all(|r| r.address.is_ascii())
                && received.is_ascii();
            if ascii {
                for_each_chunk(spool, |c| {
                    ascii &= c.is_ascii();
                    Ok(())
                })?;
            }
            if ascii {
                info!("SMTPUTF8 not needed by the message: relayed without it");
                qenv.smtputf8 = false;
            }
        }
        let mut w = ctx.queue.enqueue(&qenv).map_err(|e| queue_error(&e))?;
        w.write_all(received.as_bytes())
            .and_then(|()| w.write_all(env.added_fields.as_bytes()))
            .map_err(|e| io_temp("queue write", &e))?;
        for_each_chunk(spool, |c| {
            w.write_all(c).map_err(|e| io_temp("queue write", &e))
        })?;
        // Flushed, fsynced and its envelope written before any local copy is
        // committed: a full queue disk fails the message with nothing stored
        // (a probe found joe's copy stored behind each 451 when the body's
        // last buffered write failed at the queue's commit).
        w.seal().map_err(|e| queue_error(&e))?;
        queued = Some(w);
    }

    // The server gave up waiting for this connection at shutdown: its client will not
    // get the 250, so nothing may be stored (its retry would make a duplicate).
    if ctx.abandon.is_cancelled() {
        info!("shutdown timeout passed before the copies were committed: nothing stored");
        return Err(DeliveryError(replies::shutting_down()));
    }
    for (_, user, judged, d) in prepared {
        let receipt = d.commit().map_err(|e| DeliveryError::from_store(&e))?;
        let verdict = judged.label();
        info!(user = %user.name, folder = %receipt.folder, size = receipt.size, verdict = verdict.unwrap_or("not asked"), "delivered");
        ctx.metrics.delivered(receipt.folder.name());
        if let Some(verdict) = verdict {
            ctx.metrics.spam_verdict(verdict);
        }
        report
            .local
            .push((user.name.clone(), receipt.folder.name()));
    }
    if let Some(w) = queued {
        let id = w.commit().map_err(|e| queue_error(&e))?;
        info!(
            recipients = env.remote.len(),
            bounced = over_quota.len(),
            delivered_reports = success_reports.len(),
            queue_id = %id,
            "queued for relay"
        );
        report.queued = true;
    }
    Ok(report)
}

/// A sealed local copy: its recipient, its user, the spam verdict, the copy.
type Prepared<'e> = (&'e LocalRecipient, &'e User, Judged, Box<dyn Delivery>);

/// A copy that would take its user over quota: its recipient, the spam
/// verdict, the store's error.
type OverQuota<'e> = (&'e LocalRecipient, Judged, StoreError);

/// What scanning made of one user's copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judged {
    Spam,
    Ham,
    /// The user has scanning on, but the message has no score (spamd down, slow
    /// or paused, or the message over `max_scan_size`): delivered unscanned.
    Unscanned,
    /// The user has scanning off.
    NotAsked,
}

impl Judged {
    fn of(d: &Decision) -> Judged {
        match (d.is_spam, &d.action) {
            (Some(true), _) => Judged::Spam,
            (Some(false), _) => Judged::Ham,
            (None, HeaderAction::Unscanned) => Judged::Unscanned,
            (None, _) => Judged::NotAsked,
        }
    }

    /// The `verdict` label of `spam_verdicts_total`; none when not asked.
    fn label(self) -> Option<&'static str> {
        match self {
            Judged::Spam => Some("spam"),
            Judged::Ham => Some("ham"),
            Judged::Unscanned => Some("unscanned"),
            Judged::NotAsked => None,
        }
    }
}

/// Splits the sealed copies into those that fit their user's quota and the
/// recipients of those that would take it over, each with its spam verdict
/// and error (their copies dropped, so their `tmp/` files are removed). Any
/// other error of the check is left to the commit, which answers it.
fn over_quota<'e>(
    ctx: &Context,
    prepared: Vec<Prepared<'e>>,
) -> (Vec<Prepared<'e>>, Vec<OverQuota<'e>>) {
    let mut fit = Vec::with_capacity(prepared.len());
    let mut over = Vec::new();
    for p in prepared {
        match ctx.store.check_quota(&p.1.name, p.3.written()) {
            Err(e @ StoreError::QuotaExceeded { .. }) => over.push((p.0, p.2, e)),
            _ => fit.push(p),
        }
    }
    (fit, over)
}

/// Delivers a message this server generated (a bounce) into `user`'s INBOX, durably and
/// unscanned: `Return-Path: <>`, then `message` as it reads.
pub fn deliver_report(
    ctx: &Context,
    user: &UserName,
    message: &mut dyn Read,
) -> Result<(), DeliveryError> {
    let mut d = ctx
        .store
        .begin_delivery(user, StoreFolder::Inbox)
        .map_err(|e| DeliveryError::from_store(&e))?;
    d.write_chunk(return_path("").as_bytes())
        .map_err(|e| DeliveryError::from_store(&e))?;
    each_chunk(
        message,
        COPY_CHUNK,
        |e| io_temp("report read", &e),
        |c| d.write_chunk(c).map_err(|e| DeliveryError::from_store(&e)),
    )?;
    let receipt = d.commit().map_err(|e| DeliveryError::from_store(&e))?;
    info!(user = %user, size = receipt.size, "delivery report stored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::user_settings::Overrides;

    #[test]
    fn scanning_follows_the_web_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml_str(&format!(
            "data_dir = {:?}\n[[users]]\nname = \"joe\"\npassword = \"x\"\n\
             [[users]]\nname = \"bob\"\npassword = \"y\"\nspam_scanning = false\n",
            dir.path().join("data")
        ))
        .unwrap();
        let ctx = Context::open(config).unwrap();
        let names = |v: &[&str]| {
            v.iter()
                .map(|s| UserName::new(*s).unwrap())
                .collect::<Vec<_>>()
        };
        let config = ctx.config();
        assert!(any_scanning(&ctx, &config, &names(&["joe", "bob"])));
        assert!(!any_scanning(&ctx, &config, &names(&["bob"])));
        assert!(!any_scanning(&ctx, &config, &names(&["nobody"])));
        ctx.settings
            .save("joe", &Overrides::all(false, true, SpamFolder::Spam))
            .unwrap();
        ctx.settings
            .save("bob", &Overrides::all(true, true, SpamFolder::Inbox))
            .unwrap();
        assert!(!any_scanning(&ctx, &config, &names(&["joe"])));
        assert!(any_scanning(&ctx, &config, &names(&["bob"])));
        let bob = settings_for(&ctx, &config, config.user("bob").unwrap());
        assert!(bob.scanning);
        assert_eq!(bob.spam_folder, SpamFolderChoice::Inbox);
    }
}
