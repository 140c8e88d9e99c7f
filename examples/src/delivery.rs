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
//! every copy is written first (into its Maildir's `tmp/`, or the queue's body
//! file), and only when all are written are they committed (moved into place,
//! the queue's copy last), so a copy that cannot be written (broken or
//! unwritable Maildir, full disk, size) makes the whole message fail with
//! nothing stored, and the client's retry duplicates nothing. Known gap: a
//! failure in the commit step itself (quota checked at commit, fsync, rename)
//! after another copy was committed still answers 4xx, and the retry
//! duplicates that copy.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::SystemTime;

use mailbag_mailstore::queue::{
    BodyType, NewEnvelope, Notify as QueueNotify, QueueError, Recipient as QueueRecipient,
    Ret as QueueRet,
};
use mailbag_mailstore::{Error as StoreError, Folder as StoreFolder, UserName as StoreUser};
use mailbag_spam_tag::{
    BuiltinScorer, Folder as SpamFolderChoice, HeaderRewriter, RewriteOptions, Score, UserSettings,
    Verdict, decide,
};
use tracing::info;

use crate::config::{Config, SpamFolder, User};
use crate::spool::Spool;
use crate::state::State;
use crate::trace_headers::{ReceivedInfo, return_path};

/// Octets read from the spool per step.
const COPY_CHUNK: usize = 64 * 1024;

/// The envelope of a message to deliver.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Connection id (for `Received:` and logs).
    pub id: u64,
    /// Client address.
    pub client: IpAddr,
    /// EHLO/HELO argument.
    pub helo: String,
    /// `SMTP`, `ESMTP`, `ESMTPS`, ...
    pub with: &'static str,
    /// Reverse path without angle brackets (empty for `<>`).
    pub from: String,
    /// Local users (configured names), each once.
    pub local: Vec<String>,
    /// Remote recipients (relayed through the queue) with their DSN parameters.
    pub remote: Vec<RemoteRecipient>,
    /// DSN and body parameters of `MAIL FROM` (for the relay queue).
    pub mail: MailParameters,
    /// The single recipient for `Received: ... for <...>`, if there is one.
    pub for_rcpt: Option<String>,
}

/// A relayed recipient as the queue keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRecipient {
    /// `local@domain`, without angle brackets.
    pub address: String,
    /// `NOTIFY=` (RFC 3461): `(success, failure, delay)`, all false for `NEVER`;
    /// `None` when not given.
    pub notify: Option<(bool, bool, bool)>,
    /// `ORCPT=` as received: `addr-type;xtext`.
    pub orcpt: Option<String>,
}

/// The `MAIL FROM` parameters the relay queue keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParameters {
    /// `RET=HDRS` (true) or `RET=FULL` (false); `None` when not given.
    pub ret_headers: Option<bool>,
    /// `ENVID=`, xtext-decoded.
    pub envid: Option<String>,
    /// `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

/// Why a delivery failed: the SMTP reply to send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Try again later (`451`/`452`).
    #[error("{code} {status} {text}")]
    Temporary {
        /// Reply code.
        code: u16,
        /// Enhanced status.
        status: &'static str,
        /// Reply text.
        text: String,
    },
    /// Give up (`552`/`554`).
    #[error("{code} {status} {text}")]
    Permanent {
        /// Reply code.
        code: u16,
        /// Enhanced status.
        status: &'static str,
        /// Reply text.
        text: String,
    },
}

impl DeliveryError {
    fn from_store(e: &StoreError) -> DeliveryError {
        match e {
            StoreError::MessageTooLarge { .. } => DeliveryError::Permanent {
                code: 552,
                status: "5.3.4",
                text: "Message too big for system".into(),
            },
            StoreError::QuotaExceeded { .. } if e.is_temporary() => DeliveryError::Temporary {
                code: 452,
                status: "4.2.2",
                text: "Mailbox full".into(),
            },
            StoreError::QuotaExceeded { .. } => DeliveryError::Permanent {
                code: 552,
                status: "5.2.2",
                text: "Mailbox full".into(),
            },
            _ if e.is_temporary() => temp("Local delivery failed, try again later"),
            _ => DeliveryError::Permanent {
                code: 554,
                status: "5.3.0",
                text: "Local delivery failed".into(),
            },
        }
    }
}

fn temp(text: &str) -> DeliveryError {
    DeliveryError::Temporary {
        code: 451,
        status: "4.3.0",
        text: text.into(),
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn queue_error(e: &QueueError) -> DeliveryError {
    match e {
        QueueError::TooLarge { .. } => DeliveryError::Permanent {
            code: 552,
            status: "5.3.4",
            text: "Message too big for system".into(),
        },
        _ => {
            tracing::warn!(error = %e, "relay queue");
            temp("Local error in processing, try again later")
        }
    }
}

fn io_temp(what: &str, e: &io::Error) -> DeliveryError {
    tracing::warn!(error = %e, "{what}");
    temp("Local error in processing, try again later")
}

/// Where each copy went.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The score, when the message was scanned.
    pub score: Option<f64>,
    /// `(user, folder name)` per local copy.
    pub local: Vec<(String, &'static str)>,
    /// Whether a relay queue file was written.
    pub queued: bool,
}

/// The spam-tag settings of `user`: the config file's values with the
/// user's overrides from the web page, looked up at each delivery (the
/// settings store is written through by the page), so a change applies to
/// the next message without a restart.
fn settings_for(config: &Config, state: &State, user: &User) -> UserSettings {
    let effective = state.settings.effective(user);
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
/// driver asks spamd only then.
pub fn any_scanning(config: &Config, state: &State, local: &[String]) -> bool {
    local
        .iter()
        .filter_map(|name| config.user(name))
        .any(|u| state.settings.effective(u).spam_scanning)
}

fn for_each_chunk(
    spool: &mut Spool,
    mut f: impl FnMut(&[u8]) -> Result<(), DeliveryError>,
) -> Result<(), DeliveryError> {
    let mut reader = spool.reader().map_err(|e| io_temp("spool read", &e))?;
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_temp("spool read", &e)),
        };
        f(buf.get(..n).unwrap_or_default())?;
    }
}

fn scan(spool: &mut Spool) -> Result<Verdict, DeliveryError> {
    let scorer = BuiltinScorer::default();
    let mut scan = scorer.scan();
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

/// Delivers a spooled message to every recipient of `env`, durably.
/// `Ok` means every copy is stored (the caller may answer `250`).
pub fn deliver(
    config: &Config,
    state: &State,
    spool: &mut Spool,
    env: &Envelope,
    scan_source: Scan,
) -> Result<Report, DeliveryError> {
    let now = SystemTime::now();
    let received = ReceivedInfo {
        helo: &env.helo,
        client: env.client,
        by: &config.hostname,
        with: env.with,
        id: env.id,
        for_rcpt: env.for_rcpt.as_deref(),
        time: now,
    }
    .header();
    let mut report = Report::default();

    let users: Vec<(&User, UserSettings)> = env
        .local
        .iter()
        .filter_map(|name| config.user(name))
        .map(|u| (u, settings_for(config, state, u)))
        .collect();
    let verdict = if users.iter().any(|(_, s)| s.scanning) {
        match scan_source {
            Scan::Builtin => Some(scan(spool)?),
            Scan::Done(v) => v,
        }
    } else {
        None
    };
    report.score = verdict.as_ref().map(|v| v.score().value());

    // Two phases, so that a copy failing for one user does not leave the others stored
    // behind a 4xx (the client's retry would duplicate them): first every local copy is
    // written to its Maildir tmp/ (nothing visible yet; a failure here drops them all and
    // nothing is stored), then all are committed. A failure inside the commit phase
    // (quota, fsync, rename) after an earlier commit still answers 4xx: see the module
    // docs.
    let mut prepared = Vec::with_capacity(users.len());
    for (user, settings) in users {
        let decision = decide(&settings, verdict.as_ref());
        let folder = match decision.folder {
            SpamFolderChoice::Inbox => StoreFolder::Inbox,
            _ => StoreFolder::Spam,
        };
        let name = StoreUser::new(user.name.as_str()).map_err(|e| DeliveryError::from_store(&e))?;
        let mut d = state
            .store
            .begin_delivery(&name, folder)
            .map_err(|e| DeliveryError::from_store(&e))?;
        let mut head = return_path(&env.from);
        head.push_str(&received);
        d.write_chunk(head.as_bytes())
            .map_err(|e| DeliveryError::from_store(&e))?;
        let mut opts = RewriteOptions::default();
        opts.template = state.template.clone();
        let mut rw = HeaderRewriter::new(decision.action, opts);
        let mut out = Vec::with_capacity(COPY_CHUNK + 1024);
        for_each_chunk(spool, |c| {
            out.clear();
            rw.feed(c, &mut out).map_err(|_| DeliveryError::Permanent {
                code: 552,
                status: "5.3.4",
                text: "Message header too large".into(),
            })?;
            d.write_chunk(&out)
                .map_err(|e| DeliveryError::from_store(&e))
        })?;
        out.clear();
        rw.finish(&mut out).map_err(|_| DeliveryError::Permanent {
            code: 552,
            status: "5.3.4",
            text: "Message header too large".into(),
        })?;
        d.write_chunk(&out)
            .map_err(|e| DeliveryError::from_store(&e))?;
        prepared.push((user, decision.is_spam, d));
    }

    // The relay queue's copy is written in the first phase too, and committed last.
    let mut queued = None;
    if !env.remote.is_empty() {
        let mut qenv = NewEnvelope::new(env.from.clone(), unix_seconds(now));
        qenv.client_ip = Some(env.client);
        qenv.envid.clone_from(&env.mail.envid);
        qenv.ret = env
            .mail
            .ret_headers
            .map(|h| if h { QueueRet::Hdrs } else { QueueRet::Full });
        qenv.body = if env.mail.eight_bit {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        };
        qenv.smtputf8 = env.mail.smtputf8;
        for r in &env.remote {
            let mut q = QueueRecipient::new(r.address.clone());
            q.orcpt.clone_from(&r.orcpt);
            q.notify = r.notify.map(|(success, failure, delay)| QueueNotify {
                success,
                failure,
                delay,
            });
            qenv.recipients.push(q);
        }
        let mut w = state.queue.enqueue(&qenv).map_err(|e| queue_error(&e))?;
        w.write_all(received.as_bytes())
            .map_err(|e| io_temp("queue write", &e))?;
        for_each_chunk(spool, |c| {
            w.write_all(c).map_err(|e| io_temp("queue write", &e))
        })?;
        queued = Some(w);
    }

    for (user, is_spam, d) in prepared {
        let receipt = d.commit().map_err(|e| DeliveryError::from_store(&e))?;
        info!(user = %user.name, folder = %receipt.folder, size = receipt.size, spam = ?is_spam, "delivered");
        report
            .local
            .push((user.name.clone(), receipt.folder.name()));
    }
    if let Some(w) = queued {
        let id = w.commit().map_err(|e| queue_error(&e))?;
        info!(recipients = env.remote.len(), queue_id = %id, "queued for relay");
        report.queued = true;
    }
    Ok(report)
}

/// Delivers a message this server generated (a bounce) into `user`'s INBOX, durably and
/// unscanned: `Return-Path: <>`, then `message` as it reads.
pub fn deliver_report(
    state: &State,
    user: &str,
    message: &mut dyn Read,
) -> Result<(), DeliveryError> {
    let name = StoreUser::new(user).map_err(|e| DeliveryError::from_store(&e))?;
    let mut d = state
        .store
        .begin_delivery(&name, StoreFolder::Inbox)
        .map_err(|e| DeliveryError::from_store(&e))?;
    d.write_chunk(return_path("").as_bytes())
        .map_err(|e| DeliveryError::from_store(&e))?;
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let n = match message.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_temp("report read", &e)),
        };
        d.write_chunk(buf.get(..n).unwrap_or_default())
            .map_err(|e| DeliveryError::from_store(&e))?;
    }
    let receipt = d.commit().map_err(|e| DeliveryError::from_store(&e))?;
    info!(user = %user, size = receipt.size, "delivery report stored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let state = State::new(&config).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(any_scanning(&config, &state, &names(&["joe", "bob"])));
        assert!(!any_scanning(&config, &state, &names(&["bob"])));
        assert!(!any_scanning(&config, &state, &names(&["nobody"])));
        state
            .settings
            .save("joe", &Overrides::all(false, true, SpamFolder::Spam))
            .unwrap();
        state
            .settings
            .save("bob", &Overrides::all(true, true, SpamFolder::Inbox))
            .unwrap();
        assert!(!any_scanning(&config, &state, &names(&["joe"])));
        assert!(any_scanning(&config, &state, &names(&["bob"])));
        let bob = settings_for(&config, &state, config.user("bob").unwrap());
        assert!(bob.scanning);
        assert_eq!(bob.spam_folder, SpamFolderChoice::Inbox);
    }
}
