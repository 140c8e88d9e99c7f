//! The POP3 connection driver: a tokio read/write loop around
//! `pop3-proto`'s [`ServerSession`], with the `mailstore` maildrop (called
//! through `spawn_blocking`) and the relay table.
//!
//! - Logins are checked against the configured users (clear-text or
//!   SHA-crypt passwords). The login name is resolved by
//!   [`crate::login_name`]: `joe`, `JOE` and `joe@example.test` open joe's
//!   INBOX, `joe/Spam` (`[pop3] spam_login_suffix`) joe's Spam folder, with
//!   a lock of its own. A login that reaches the TRANSACTION state (maildrop
//!   locked and listed) records the client address in the relay table
//!   (POP-before-SMTP) for the mailbox, whichever folder it opened; a failed
//!   one records nothing.
//! - Every login goes through the server's one login limiter
//!   ([`crate::login_limiter`], shared with the web page): a failed login is
//!   answered with `-ERR [AUTH] Authentication failed.` after
//!   `pop3.auth_failure_delay` times the failures counted for the client
//!   address or user name; a locked-out address or user name gets the same
//!   answer after the longest delay, without the password being checked
//!   (the right password too).
//! - A second concurrent login of the same user gets `-ERR [IN-USE]`.
//! - Deletions are applied only on QUIT; a dropped connection, a timeout
//!   or a shutdown releases the maildrop without changing it.
//! - STLS runs the TLS handshake with the configured certificate.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use mailbag_mailstore::{Error as StoreError, Folder, Maildrop, MessageReader, UserName};
use mailbag_pop3_proto::codec::BodyProgress;
use mailbag_pop3_proto::driver::{
    self,
    server::{Ending, Exchange, ServeOptions, ServerHandler},
};
use mailbag_pop3_proto::session::{
    AuthFailure, CommitFailure, Credentials, Event, LoginRequest, MaildropFailure, MessageInfo,
    ServerConfig, ServerSession,
};
use mailbag_pop3_proto::types::{Expire, Uid};
use tracing::{Instrument, debug, info, warn};

use crate::config::Config;
use crate::context::{Context, Live};
use crate::listener::Connection;
use crate::lock_keeper::LockKeeper;
use crate::login_limiter::failure_delay;
use crate::login_name;
use crate::maildrop_lease::{HeldLease, LeaseError};
use crate::tls::MaybeTls;

/// Read buffer per connection (octets).
const READ_BUFFER: usize = 4096;
/// Message octets read from the store per blocking call while streaming RETR/TOP.
const RETRIEVE_CHUNK: usize = 64 * 1024;
/// Messages up to this size (the POP3 size) are read on the connection's
/// task instead of the blocking pool (see `Event::Retrieve` in `handle`).
const INLINE_READ_MAX: u64 = 64 * 1024;
/// Up to this many segments per chunk, RETR/TOP sends the message straight
/// from the read buffer with one vectored write
/// ([`ServeOptions::max_write_segments`]). The store already turns bare LF
/// into CRLF, so a chunk is one segment plus two per line that starts with a
/// dot.
const MAX_WRITE_SEGMENTS: usize = 256;

/// The Spam folder's `EXPIRE`: the whole days of `[spam] spam_retention`
/// (RFC 2449 6.7 promises at least that many).
fn spam_expire(config: &crate::config::Config) -> Expire {
    let days = config.spam.spam_retention.as_secs() / (24 * 60 * 60);
    Expire::Days(u32::try_from(days).unwrap_or(u32::MAX))
}

fn session_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("POP3 session: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))
}

/// Serves one POP3 connection until it closes, with pop3-proto's tokio
/// driver ([`driver::server::serve`]) and this module's `Pop3Handler`.
pub async fn serve(ctx: Arc<Context>, conn: Connection) -> io::Result<()> {
    // The session keeps what it began with to its end (a reload is for later ones).
    let live = ctx.live();
    let config = &*live.config;
    let mut cfg = ServerConfig::default();
    cfg.greeting = format!("{} Mailbag POP3 ready.", config.hostname);
    cfg.implicit_tls = conn.stream.is_tls();
    cfg.tls_available = live.tls.is_some() && !cfg.implicit_tls;
    cfg.require_tls_for_login = config.pop3.require_tls_for_login;
    cfg.idle_timeout = config.pop3.idle_timeout;
    cfg.max_bad_commands = config.pop3.max_errors;
    let suffix = &config.pop3.spam_login_suffix;
    // EXPIRE (RFC 2449 6.7): the INBOX keeps mail until the client deletes
    // it; the Spam folder, a maildrop of its own, is emptied of what is
    // older than `[spam] spam_retention`. Before login CAPA lists the
    // shorter with USER, after login the maildrop's own.
    cfg.expire = Some(Expire::Never);
    if !suffix.is_empty() {
        // CAPA tells the user how to reach the Spam folder (RFC 2449 6.9:
        // free text).
        cfg.implementation = Some(format!("Mailbag; Spam folder: log in as <mailbox>{suffix}"));
        cfg.expire = Some(spam_expire(config));
        cfg.expire_per_user = true;
    }
    let session = ServerSession::new(cfg).map_err(session_error)?;
    let mut options = ServeOptions::default();
    options.read_buffer = READ_BUFFER;
    options.write_timeout = config.limits.write_timeout;
    options.max_write_segments = MAX_WRITE_SEGMENTS;
    let mut handler = Pop3Handler {
        ctx: Arc::clone(&ctx),
        live: Arc::clone(&live),
        peer: conn.peer,
        maildrop: None,
        mailbox: None,
        lease: None,
        keeper: None,
    };
    let ended =
        driver::server::serve(conn.stream, session, &mut handler, &options, &ctx.shutdown).await;
    match &ended {
        Ok(Ending::TimedOut) => info!("autologout"),
        Ok(Ending::ClientClosed) => debug!("client closed the connection"),
        Ok(Ending::Shutdown) => debug!("closed for shutdown"),
        _ => {}
    }
    if let Some(md) = handler.maildrop.take() {
        // Releasing the lock without commit changes nothing.
        let _ = blocking(move || drop(md)).await;
        debug!("maildrop released without update");
    }
    // The lease across hosts goes after the local lock.
    drop(handler.keeper.take());
    drop(handler.lease.take());
    ended.map(|_| ())
}

/// Tries of recording a login in a shared table that failed, and the wait
/// before the first retry (doubled each time: 1, 2, 4, 8 s).
const RECORD_RETRIES: u32 = 4;
const RECORD_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Records the login for POP-before-SMTP. A shared table (`[cluster]
/// redis`) that cannot be written does not fail the login: the record is
/// retried in the background and each failure logged.
async fn record_login(ctx: &Arc<Context>, ip: std::net::IpAddr, user: &str, credential: u64) {
    let logged_in = std::time::Instant::now();
    if !still_valid(ctx, user, credential) {
        return;
    }
    let Err(e) = ctx.relay_store.record_login(ip, user, logged_in).await else {
        keep_or_take_back(ctx, ip, user, credential).await;
        return;
    };
    warn!(user = %user, client = %ip, error = %e, "cannot record the login for relay: retrying");
    let (ctx, user) = (Arc::clone(ctx), user.to_owned());
    // In the connection's span (its id and client) after it has ended, so
    // that support can tell whose relaying waits on the retry.
    let retry = async move {
        let mut wait = RECORD_RETRY_WAIT;
        for _ in 0..RECORD_RETRIES {
            tokio::time::sleep(wait).await;
            if logged_in.elapsed() >= ctx.config().pop_before_smtp.window {
                info!(user = %user, client = %ip, "login not recorded for relay: its window is over");
                return;
            }
            if !still_valid(&ctx, &user, credential) {
                info!(user = %user, client = %ip, "login not recorded for relay: the user was removed or changed since");
                return;
            }
            match ctx.relay_store.record_login(ip, &user, logged_in).await {
                Ok(()) => {
                    if keep_or_take_back(&ctx, ip, &user, credential).await {
                        info!(user = %user, client = %ip, "login recorded for relay after a retry");
                    }
                    return;
                }
                Err(e) => {
                    warn!(user = %user, client = %ip, error = %e, "cannot record the login for relay");
                }
            }
            wait *= 2;
        }
        warn!(user = %user, client = %ip, "login not recorded in the shared table: the client relays through this host only (for its window), or everywhere once it logs in again");
    };
    tokio::spawn(retry.instrument(tracing::Span::current()));
}

/// Whether `user` is still configured with the credential their password
/// was checked against (`credential`, [`crate::credentials::Credential::stamp`])
/// and may log in: a reload since may have removed them, changed their
/// password or barred them, and then their login authorizes nothing.
fn still_valid(ctx: &Context, user: &str, credential: u64) -> bool {
    ctx.config()
        .user(user)
        .is_some_and(|u| u.credential.stamp() == credential && !u.nologin)
}

/// After a login was recorded for relay: whether it stands. When the user
/// changed meanwhile (the reload's revocation may have run before the
/// record landed) it is taken back at once.
async fn keep_or_take_back(
    ctx: &Context,
    ip: std::net::IpAddr,
    user: &str,
    credential: u64,
) -> bool {
    if still_valid(ctx, user, credential) {
        return true;
    }
    info!(user = %user, client = %ip, "login taken back from relay: the user was removed or changed since");
    if let Err(e) = ctx
        .relay_store
        .revoke_users(&[user.to_owned()], std::time::Instant::now())
        .await
    {
        warn!(user = %user, client = %ip, error = %e, "cannot take the login back: it expires with its window");
    }
    false
}

/// What a connection holds between events: the maildrop a login locked,
/// and the mailbox and folder it resolved to.
struct Pop3Handler {
    ctx: Arc<Context>,
    /// The configuration (and users) the session began with.
    live: Arc<Live>,
    peer: SocketAddr,
    maildrop: Option<Box<dyn Maildrop>>,
    mailbox: Option<Mailbox>,
    /// The maildrop's lease across hosts (`[cluster] redis`), held to the
    /// end of the session (released after the maildrop).
    lease: Option<HeldLease>,
    /// Keeps the maildrop's lock file fresh while the session holds it.
    keeper: Option<LockKeeper>,
}

impl ServerHandler<MaybeTls> for Pop3Handler {
    async fn handle(&mut self, event: Event, ex: &mut Exchange<'_, MaybeTls>) -> io::Result<()> {
        handle_event(self, event, ex).await
    }

    async fn start_tls(&mut self, stream: MaybeTls) -> io::Result<MaybeTls> {
        let acceptor = self
            .live
            .tls
            .as_ref()
            .ok_or_else(|| session_error("STLS without TLS config"))?;
        let tls = stream
            .upgrade(
                acceptor,
                self.live.config.limits.tls_handshake_timeout,
                &self.ctx.shutdown,
            )
            .await?;
        debug!("STLS: TLS established");
        Ok(tls)
    }
}

/// The mailbox and folder a login opened.
struct Mailbox {
    user: UserName,
    folder: Folder,
    /// The user's credential when the password was checked
    /// ([`crate::credentials::Credential::stamp`]).
    credential: u64,
}

/// The outcome of a login attempt.
enum Verdict {
    /// The password is right: this mailbox and folder.
    Accepted(Mailbox),
    /// Wrong, or refused: answered after this delay; why, for the log.
    Refused(std::time::Duration, &'static str),
}

/// Every login (USER/PASS, SASL PLAIN and LOGIN) through the login limiter
/// (this host's, and with `[cluster] redis` every host's:
/// [`Context::login_attempt`]), then the credential check.
async fn login(
    ctx: &Arc<Context>,
    peer: std::net::IpAddr,
    req: LoginRequest,
) -> io::Result<Verdict> {
    let config = ctx.config();
    let base = config.pop3.auth_failure_delay;
    let key = login_name::limiter_key(&config, req.user.as_str());
    let attempt = match ctx.login_attempt(peer, &key).await {
        Err(retry_after) => {
            info!(user = %req.user.as_str(), retry_after = ?retry_after, "login refused: locked out");
            let most = ctx.logins.options().failures_before_lockout;
            return Ok(Verdict::Refused(failure_delay(base, most), "locked out"));
        }
        Ok(attempt) => attempt,
    };
    // SHA-crypt verification costs milliseconds of CPU: off the reactor.
    let checked = blocking(move || check_login(&config, &req, peer)).await?;
    Ok(match checked {
        Ok(mailbox) => {
            ctx.login_succeeded(peer, &key, attempt).await;
            Verdict::Accepted(mailbox)
        }
        Err(why) => Verdict::Refused(failure_delay(base, attempt.failures), why),
    })
}

/// The credential check of a POP3 login: the mailbox, or why not (for the
/// log: the client hears the same for every reason).
fn check_login(
    config: &Config,
    req: &LoginRequest,
    peer: std::net::IpAddr,
) -> Result<Mailbox, &'static str> {
    let Credentials::Password(password) = &req.credentials else {
        return Err("APOP is not offered");
    };
    // The one credential check of every service (same work for unknown users).
    let login = login_name::check(config, req.user.as_str(), password.expose(), peer)
        .map_err(login_name::Refusal::as_str)?;
    // SASL: an authorization identity must name the same mailbox and folder.
    if let Some(authz) = &req.authzid {
        let same = login_name::resolve(config, authz)
            .is_some_and(|a| a.user.name == login.user.name && a.folder == login.folder);
        if !same {
            return Err("the SASL authorization identity names another mailbox");
        }
    }
    Ok(Mailbox {
        user: login.user.name.clone(),
        folder: login.folder,
        credential: login.user.credential.stamp(),
    })
}

async fn handle_event(
    h: &mut Pop3Handler,
    event: Event,
    ex: &mut Exchange<'_, MaybeTls>,
) -> io::Result<()> {
    let ctx = &h.ctx;
    let peer = &h.peer;
    let (maildrop, mailbox, lease) = (&mut h.maildrop, &mut h.mailbox, &mut h.lease);
    let keeper = &mut h.keeper;
    match event {
        Event::Login(req) => {
            let user = req.user.as_str().to_owned();
            let mechanism = req.mechanism;
            // The users as of now, not as of the connection's start: a password
            // changed or a user removed since is honoured at once.
            let verdict = login(ctx, peer.ip(), req).await?;
            match verdict {
                Verdict::Refused(delay, why) => {
                    // A login with the right password counts when its
                    // maildrop opens (or is found in use).
                    ctx.metrics.login("pop3", false);
                    info!(user = %user, mechanism = ?mechanism, reason = why, "login failed");
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    ex.session()
                        .reject_login(AuthFailure::Credentials)
                        .map_err(session_error)?;
                }
                Verdict::Accepted(m) => {
                    *mailbox = Some(m);
                    ex.session().accept_login().map_err(session_error)?;
                }
            }
        }
        Event::OpenMaildrop { .. } => {
            // The mailbox the login resolved to (the session's name is the
            // one typed: `JOE@example.test/Spam`).
            let Some(Mailbox {
                user,
                folder,
                credential,
            }) = mailbox.as_ref()
            else {
                return Err(session_error("maildrop without a login"));
            };
            let (user, folder) = (user.clone(), *folder);
            // Across hosts first: a lease in Redis, then the local lock.
            if let Some(leases) = &ctx.leases {
                match leases.acquire(&user, folder).await {
                    Ok(l) => *lease = Some(l),
                    Err(LeaseError::InUse) => {
                        ctx.metrics.login_result("pop3", "in_use");
                        info!(user = %user, %folder, "maildrop in use (lease held on some host)");
                        ex.session()
                            .maildrop_failed(MaildropFailure::InUse)
                            .map_err(session_error)?;
                        return Ok(());
                    }
                    // Redis down: the maildrop's lock file, which every host
                    // takes as well, still keeps the session alone.
                    Err(e) => {
                        warn!(user = %user, %folder, error = %e, "no maildrop lease in Redis: the lock file alone guards this session");
                    }
                }
            }
            let store = Arc::clone(&ctx.store);
            let u = user.clone();
            let opened = blocking(move || store.open_folder_maildrop(&u, folder)).await?;
            match opened {
                Ok(md) => {
                    if let Some(e) = md.index_error() {
                        // Served anyway (a full disk must not lock users out of
                        // deleting mail): new messages have provisional UIDs,
                        // or an unreadable index was replaced (new UIDs).
                        warn!(user = %user, %folder, error = %e, "UID index problem, maildrop served anyway");
                    }
                    let mut listing = Vec::with_capacity(md.entries().len());
                    for e in md.entries() {
                        let uid =
                            Uid::try_from(e.uid.as_str().to_owned()).map_err(session_error)?;
                        listing.push(MessageInfo::new(e.size, uid));
                    }
                    let count = listing.len();
                    let session = ex.session();
                    session.set_maildrop_expire(if folder == Folder::Spam {
                        spam_expire(&ctx.config())
                    } else {
                        Expire::Never
                    });
                    session.maildrop_opened(listing).map_err(session_error)?;
                    if let Some(keep) = md.lock_keep_alive() {
                        *keeper = Some(LockKeeper::start(keep, user.as_str().to_owned()));
                    }
                    *maildrop = Some(md);
                    // A balancer's own address (a login without a PROXY client) authorizes nothing.
                    if !ctx.config().proxy.is_trusted(peer.ip()) {
                        record_login(ctx, peer.ip(), user.as_str(), *credential).await;
                    }
                    ctx.metrics.login("pop3", true);
                    info!(user = %user, %folder, messages = count, "logged in");
                }
                Err(StoreError::InUse) => {
                    release(lease).await;
                    ctx.metrics.login_result("pop3", "in_use");
                    info!(user = %user, %folder, "maildrop in use");
                    ex.session()
                        .maildrop_failed(MaildropFailure::InUse)
                        .map_err(session_error)?;
                }
                Err(e) => {
                    release(lease).await;
                    ctx.metrics.login_result("pop3", "error");
                    warn!(user = %user, %folder, error = %e, "cannot open maildrop");
                    ex.session()
                        .maildrop_failed(MaildropFailure::Temporary)
                        .map_err(session_error)?;
                }
            }
        }
        Event::Retrieve(req) => {
            let Some(md) = maildrop.take() else {
                ex.session().message_failed().map_err(session_error)?;
                return Ok(());
            };
            let n = req.index + 1;
            let top = req.top_lines;
            let open_and_read = move |mut md: Box<dyn Maildrop>| {
                let r = match top {
                    None => md.read_message(n),
                    Some(lines) => md.read_top(n, u64::from(lines)),
                };
                let first = r.map(read_chunk);
                (md, first)
            };
            // A message of up to INLINE_READ_MAX octets is opened and read
            // right here: a read from the page cache costs a few
            // microseconds, a hand-off to the blocking pool two thread
            // wake-ups, which dominated a RETR of a 10 KB message. Larger
            // ones (and their later chunks) take one blocking call per chunk.
            let small = md
                .entries()
                .get(req.index)
                .is_some_and(|e| e.size <= INLINE_READ_MAX);
            let (md, first) = if small {
                open_and_read(md)
            } else {
                blocking(move || open_and_read(md)).await?
            };
            *maildrop = Some(md);
            let mut step = match first {
                Ok(step) => step,
                Err(e) => {
                    warn!(message = n, error = %e, "cannot read message");
                    ex.session().message_failed().map_err(session_error)?;
                    return Ok(());
                }
            };
            loop {
                let (reader, chunk, eof) = step;
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(message = n, error = %e, "read failed while sending");
                        ex.session().message_failed().map_err(session_error)?;
                        break;
                    }
                };
                if ex.send_message_chunk(&chunk, eof).await? == BodyProgress::Done || eof {
                    break;
                }
                step = blocking(move || read_chunk(reader)).await?;
            }
        }
        Event::Commit { deleted } => {
            let Some(md) = maildrop.take() else {
                ex.session().commit_done(Ok(())).map_err(session_error)?;
                return Ok(());
            };
            let numbers: Vec<usize> = deleted.iter().map(|m| m.index() + 1).collect();
            let result = blocking(move || {
                let mut md = md;
                for n in &numbers {
                    md.mark_deleted(*n)?;
                }
                md.commit()
            })
            .await?;
            // The maildrop is free on this host; free it across hosts before
            // the client hears +OK and perhaps logs in again at once.
            *keeper = None;
            release(lease).await;
            match result {
                Ok(summary) => {
                    info!(deleted = summary.deleted, "update committed");
                    ex.session().commit_done(Ok(())).map_err(session_error)?;
                }
                Err(e) => {
                    warn!(error = %e, "update failed");
                    ex.session()
                        .commit_done(Err(CommitFailure))
                        .map_err(session_error)?;
                }
            }
        }
        other => {
            warn!(event = ?other, "unexpected POP3 event");
            return Err(session_error("unexpected event"));
        }
    }
    Ok(())
}

/// Releases the session's lease across hosts, if it holds one, and waits
/// for Redis to confirm (before the client's next command can follow).
async fn release(lease: &mut Option<HeldLease>) {
    if let Some(l) = lease.take() {
        l.release().await;
    }
}

/// Reads up to [`RETRIEVE_CHUNK`] octets; the flag tells whether the end
/// of the message was reached.
fn read_chunk(mut reader: MessageReader) -> (MessageReader, io::Result<Vec<u8>>, bool) {
    // `read_to_end` into reserved capacity: no zeroing of the buffer.
    let mut chunk = Vec::with_capacity(RETRIEVE_CHUNK);
    let r = (&mut reader)
        .take(RETRIEVE_CHUNK as u64)
        .read_to_end(&mut chunk);
    let eof = chunk.len() < RETRIEVE_CHUNK;
    (reader, r.map(|_| chunk), eof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::context::Live;

    fn config(dir: &std::path::Path, joe_password: &str) -> Config {
        Config::from_toml_str(&format!(
            "data_dir = {:?}\n[[users]]\nname = \"joe\"\npassword = \"{joe_password}\"\n",
            dir.join("data")
        ))
        .unwrap()
    }

    /// A login whose user changed between the password check and the relay
    /// record (a reload meanwhile) is not recorded, and one recorded just
    /// before the change is taken back: the reload's revocation may have run
    /// before either landed (a review found a retried record undoing a
    /// revocation).
    #[tokio::test]
    async fn a_login_of_a_user_changed_since_authorizes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Arc::new(Context::open(config(dir.path(), "old")).unwrap());
        let checked = ctx.config().user("joe").unwrap().credential.stamp();
        let (a, b, c): (std::net::IpAddr, std::net::IpAddr, std::net::IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        record_login(&ctx, a, "joe", checked).await;
        assert_eq!(
            ctx.relay_store
                .authorizing_user(a)
                .await
                .unwrap()
                .as_deref(),
            Some("joe")
        );
        // The password changes (a reload).
        ctx.replace_live(Live::new(config(dir.path(), "new")).unwrap());
        record_login(&ctx, b, "joe", checked).await;
        assert_eq!(ctx.relay_store.authorizing_user(b).await.unwrap(), None);
        // Recorded by a login checked before the change: taken back.
        ctx.relay_store
            .record_login(c, "joe", std::time::Instant::now())
            .await
            .unwrap();
        assert!(!keep_or_take_back(&ctx, c, "joe", checked).await);
        assert_eq!(ctx.relay_store.authorizing_user(c).await.unwrap(), None);
        // A login with the new password stands.
        let now_valid = ctx.config().user("joe").unwrap().credential.stamp();
        record_login(&ctx, b, "joe", now_valid).await;
        assert_eq!(
            ctx.relay_store
                .authorizing_user(b)
                .await
                .unwrap()
                .as_deref(),
            Some("joe")
        );
    }
}
