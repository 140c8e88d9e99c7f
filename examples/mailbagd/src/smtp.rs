//! The SMTP connection driver: a tokio read/write loop around `smtp-proto`'s
//! [`ServerSession`], for the port-25 role and the submission roles.
//!
//! - Port-25 role: each `RCPT TO` goes through [`relay::decide`]: local users
//!   (and postmaster) from anyone, other destinations only from a client
//!   address authorized by a recent POP3 login, else `554 5.7.1`.
//! - Submission roles: `MAIL FROM` from a client address that is not
//!   authorized gets `530 5.7.0`.
//! - DATA is spooled (memory, then a temporary file), then delivered by
//!   [`delivery::deliver`] in a blocking task; `250` is sent only after every
//!   copy is durably stored, and a failure gets a `451`/`452`/`552`: a local
//!   fault is always a `4xx`, only a verdict about the message a `5xx`.
//! - While the data or queue file system has less free space than
//!   `[limits] min_free_space`, MAIL, RCPT and DATA get `452 4.3.1`.
//! - STARTTLS when a certificate is configured; implicit TLS on `tls_listen`.
//! - On shutdown an idle client gets `421`; a message being received is
//!   finished and stored first.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mailbag_smtp_proto::address::{ForwardPath, ReversePath};
use mailbag_smtp_proto::data::BareLfPolicy;
use mailbag_smtp_proto::date::DateTime;
use mailbag_smtp_proto::driver::{
    self,
    server::{Answer, Ending, ServeOptions, ServerHandler},
};
use mailbag_smtp_proto::line_endings::LineEndings;
use mailbag_smtp_proto::session::{
    Event, HelloKind, Refusal, RefusedCommand, ServerConfig, ServerSession,
};
use mailbag_smtp_proto::submission;
use mailbag_smtp_proto::trace;
use mailbag_smtp_proto::types::{Body, HeloName, MailParams};
use mailbag_spam_tag::spamd::{ScanOutcome, SpamdClient, SpamdError};
use tracing::{debug, info, warn};

use crate::context::{Context, Live};
use crate::delivery::{self, DeliveryError, Scan};
use crate::envelope::{Envelope, LocalRecipient, Recipient};
use crate::listener::Connection;
use crate::relay::{self, Destination, Verdict};
use crate::replies;
use crate::spool::{DEFAULT_SPOOL_MEMORY, SPOOL_DIR, Spool};
use crate::tls::MaybeTls;

/// Read buffer per connection (octets).
const READ_BUFFER: usize = 4096;

fn session_error(e: &str) -> io::Error {
    io::Error::other(format!("SMTP session: {e}"))
}

/// The open transaction.
#[derive(Debug)]
struct Txn {
    from: ReversePath<'static>,
    mail: MailParams<'static>,
    local: Vec<LocalRecipient>,
    remote: Vec<Recipient>,
    accepted: usize,
    last_rcpt: Option<ForwardPath<'static>>,
    spool_failed: bool,
    /// Bare CR and bare LF in the content become CRLF (DATA and BDAT alike), unless
    /// the body is `BODY=BINARYMIME`.
    line_ends: LineEndings,
    /// The client is one of ours (a recent POP3 login from its address): found at
    /// MAIL on the submission port, or at a RCPT that relays.
    customer: bool,
}

impl Txn {
    /// Spools a chunk of content with its line ends normalized.
    fn spool(&mut self, spool: &mut Spool, chunk: &[u8]) {
        if self.spool_failed {
            return;
        }
        let result = if self.mail.body == Some(Body::BinaryMime) {
            spool.write(chunk)
        } else {
            self.line_ends.feed(chunk, |run| spool.write(run))
        };
        if let Err(e) = result {
            warn!(error = %e, "spool write failed");
            self.spool_failed = true;
        }
    }

    /// The end of the content: a CR held back from the last chunk.
    fn finish_spool(&mut self, spool: &mut Spool) {
        if self.spool_failed {
            return;
        }
        if let Err(e) = self.line_ends.finish(|run| spool.write(run)) {
            warn!(error = %e, "spool write failed");
            self.spool_failed = true;
        }
    }
}

/// The POP3 user whose recent login lets `ip` relay, or `None`: it may
/// not. `Err` when the shared table cannot be read (the caller answers
/// `451 4.3.0`, never relays). A login of a user who is no longer
/// configured, or may no longer log in (`nologin`), authorizes nothing,
/// whatever the table still says (its revocation may be waiting for Redis,
/// or no host was up to see the user go).
async fn authorizing_user(ctx: &Context, ip: IpAddr) -> Result<Option<String>, ()> {
    // A balancer's own address is never a client's (`[proxy] trusted_networks`).
    let config = ctx.config();
    if config.proxy.is_trusted(ip) {
        return Ok(None);
    }
    let user = ctx.relay_store.authorizing_user(ip).await.map_err(|e| {
        warn!(error = %e, "relay check failed: refusing relay for now");
    })?;
    Ok(user.filter(|name| {
        let may = config.user(name).is_some_and(|u| !u.nologin);
        if !may {
            info!(pop3_user = %name, "relay refused: the user who logged in from this address may no longer log in");
        }
        may
    }))
}

/// Scores the spooled message with spamd (fail-open: `Scan::Done(None)` when
/// spamd is down or the message is over its scan limit).
async fn spamd_scan(
    ctx: &Context,
    live: &Live,
    client: &SpamdClient,
    spool: &mut Spool,
    env: &Envelope,
) -> Scan {
    let max = client.options().max_message_size;
    if spool.len() > max as u64 {
        info!(
            size = spool.len(),
            max_scan_size = max,
            "message not scanned: larger than [spam] max_scan_size"
        );
        return Scan::Done(None);
    }
    let breaker = &ctx.spamd_breaker;
    if !breaker.allows(Instant::now()) {
        info!("message not scanned: spamd paused after failing (fail-open)");
        return Scan::Done(None);
    }
    let spam = &live.config.spam;
    let record = |ok: bool| {
        let pause = breaker.record(
            ok,
            Instant::now(),
            spam.spamd_failures_before_pause,
            spam.spamd_pause,
        );
        if let Some(pause) = pause {
            warn!(
                failures = spam.spamd_failures_before_pause,
                ?pause,
                "spamd failed repeatedly: not asked for a while, mail delivered unscanned meanwhile"
            );
        }
    };
    // As it will be stored: under this server's trace fields.
    let Ok(received) =
        delivery::received_field(&live.config, &ctx.instance, env, SystemTime::now())
    else {
        return Scan::Done(None);
    };
    let head = delivery::stored_head(env, &received);
    let mut message = Vec::with_capacity(head.len() + usize::try_from(spool.len()).unwrap_or(0));
    message.extend_from_slice(head.as_bytes());
    let read = spool
        .reader()
        .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut message));
    if let Err(e) = read {
        warn!(error = %e, "spool read for spamd failed");
        return Scan::Done(None);
    }
    match client.scan(&message).await {
        Ok(ScanOutcome::Scored { verdict, .. }) => {
            record(true);
            Scan::Done(Some(verdict))
        }
        Ok(ScanOutcome::Unscanned { reason }) => {
            warn!(error = %reason, "message not scanned by spamd (fail-open)");
            if !matches!(reason, SpamdError::TooLarge { .. }) {
                record(false);
            }
            Scan::Done(None)
        }
        Ok(_) => Scan::Done(None),
        Err(e) => {
            warn!(error = %e, "spamd failed: delivering unscanned");
            record(false);
            Scan::Done(None)
        }
    }
}

/// Serves one SMTP connection until it closes, with smtp-proto's tokio
/// driver ([`driver::server::serve`]) and this module's `SmtpHandler`.
pub async fn serve(ctx: Arc<Context>, conn: Connection) -> io::Result<()> {
    // The session keeps what it began with to its end (a reload is for later ones).
    let live = ctx.live();
    let config = &*live.config;
    let mut cfg = ServerConfig::default();
    cfg.hostname = config.hostname.to_string();
    cfg.greeting = "ESMTP Mailbag".into();
    cfg.max_message_size = config.smtp.max_message_size;
    cfg.max_recipients = config.smtp.max_recipients;
    cfg.max_bad_commands = config.smtp.max_errors;
    cfg.idle_timeout = config.smtp.idle_timeout;
    cfg.implicit_tls = conn.stream.is_tls();
    cfg.starttls = live.tls.is_some() && !cfg.implicit_tls;
    cfg.auth_mechanisms = Vec::new(); // AUTH off: POP-before-SMTP authorizes
    cfg.bare_lf = config.smtp.bare_line_endings;
    // DSN (RFC 3461): NOTIFY, ORCPT, RET and ENVID are kept in the relay queue and honoured
    // by the bounces of the outbound engine.
    cfg.dsn = true;
    let session = ServerSession::new(cfg).map_err(|e| session_error(&e.to_string()))?;
    let mut options = ServeOptions::default();
    options.read_buffer = READ_BUFFER;
    options.write_timeout = config.limits.write_timeout;
    let mut handler = SmtpHandler {
        ctx: Arc::clone(&ctx),
        live: Arc::clone(&live),
        id: conn.id,
        ip: conn.peer.ip(),
        submission: conn.role.is_submission(),
        tls: conn.stream.is_tls(),
        helo: None,
        esmtp: false,
        txn: None,
        messages: 0,
        spool: Some(Spool::new(
            &config.data_dir.join(SPOOL_DIR),
            DEFAULT_SPOOL_MEMORY,
            Arc::clone(&ctx.spool_memory),
        )),
    };
    let ended =
        driver::server::serve(conn.stream, session, &mut handler, &options, &ctx.shutdown).await?;
    match ended {
        Ending::TimedOut => info!("idle timeout"),
        Ending::ClientClosed => debug!("client closed the connection"),
        Ending::Shutdown => debug!("closed for shutdown"),
        _ => {}
    }
    Ok(())
}

/// What a connection holds between events.
struct SmtpHandler {
    ctx: Arc<Context>,
    /// The configuration the session began with.
    live: Arc<Live>,
    /// The connection's id (`Received:` and logs).
    id: u64,
    ip: IpAddr,
    /// A submission role: every transaction needs an authorized client.
    submission: bool,
    /// TLS is active (implicit, or after STARTTLS).
    tls: bool,
    helo: Option<HeloName<'static>>,
    esmtp: bool,
    txn: Option<Txn>,
    /// Messages whose data ended in this connection.
    messages: u32,
    /// `None` only while a delivery holds it.
    spool: Option<Spool>,
}

/// A reply's enhanced status code as the metrics label it (`""` when none).
fn status(r: &mailbag_smtp_proto::types::Reply<'_>) -> String {
    r.enhanced().map(|e| e.to_string()).unwrap_or_default()
}

impl ServerHandler<MaybeTls> for SmtpHandler {
    async fn handle(&mut self, event: Event<'_>) -> io::Result<Answer> {
        let stage = match &event {
            Event::MailFrom { .. } => Some("mail"),
            Event::RcptTo { .. } => Some("rcpt"),
            Event::DataStart => Some("data"),
            Event::MessageComplete { .. } => None,
            _ => Some("other"),
        };
        let answer = self.event(event).await?;
        let metrics = &self.ctx.metrics;
        match (&answer, stage) {
            (Answer::Reject(r), Some(stage)) => {
                metrics.smtp_refusal(stage, r.code().get(), &status(r));
            }
            (Answer::Reject(r), None) => metrics.smtp_message(r.code().get(), &status(r)),
            (Answer::Accept, None) => metrics.smtp_message(250, "2.0.0"),
            _ => {}
        }
        Ok(answer)
    }

    fn refused(&mut self, refusal: Refusal) {
        let stage = match refusal.command {
            // Counted as a message, with its reply (`Event::MessageAborted`).
            RefusedCommand::Message => return,
            RefusedCommand::Mail => "mail",
            RefusedCommand::Rcpt => "rcpt",
            RefusedCommand::Data => "data",
            _ => "other",
        };
        let r = &refusal.reply;
        self.ctx
            .metrics
            .smtp_refusal(stage, r.code().get(), &status(r));
    }

    async fn start_tls(&mut self, stream: MaybeTls) -> io::Result<MaybeTls> {
        let acceptor = self
            .live
            .tls
            .as_ref()
            .ok_or_else(|| session_error("STARTTLS without TLS config"))?;
        let tls = stream
            .upgrade(
                acceptor,
                self.live.config.limits.tls_handshake_timeout,
                &self.ctx.shutdown,
            )
            .await?;
        debug!("STARTTLS: TLS established");
        self.tls = true;
        Ok(tls)
    }
}

impl SmtpHandler {
    /// The `Date:` and `Message-ID:` fields a message from one of our customers
    /// lacks (RFC 6409 section 8: a submission agent may add them; a probe's
    /// message from curl had neither, and its spam score grew by both), for the
    /// message just spooled as this connection's `self.messages`th. `customer`:
    /// already known to be one; else, only when a field is missing, the relay
    /// table is asked about the client. Empty for anyone else's mail: a relay
    /// adds nothing but trace fields.
    async fn submission_fields(&mut self, customer: bool) -> String {
        let Some(spool) = self.spool.as_mut() else {
            return String::new();
        };
        let whole = spool.len() <= delivery::MAX_HEADER_INSPECTED as u64;
        let missing = match spool.head(delivery::MAX_HEADER_INSPECTED) {
            // A message that is all header (no empty line): its header section
            // is all of it.
            Ok(head) => submission::missing_fields(&head).or_else(|| {
                whole.then(|| submission::missing_fields(&[&head[..], b"\r\n\r\n"].concat()))?
            }),
            Err(_) => None,
        };
        let Some(missing) = missing.filter(|m| m.any()) else {
            return String::new();
        };
        if !customer && !matches!(authorizing_user(&self.ctx, self.ip).await, Ok(Some(_))) {
            return String::new();
        }
        let mut fields = String::new();
        if missing.date
            && let Ok(now) = DateTime::from_system_time(SystemTime::now(), 0)
        {
            fields.push_str(&submission::date_field(&now));
        }
        if missing.message_id {
            let mut random = [0u8; 8];
            let random = match getrandom::fill(&mut random) {
                Ok(()) => random
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                Err(_) => String::from("0"),
            };
            // The same connection and message numbers as the `Received:` id.
            let number = crate::envelope::message_number(self.id, self.messages);
            let left = format!("{random}.{number}.{}", self.ctx.instance);
            if let Ok(f) = submission::message_id_field(&left, self.live.config.hostname.as_str()) {
                fields.push_str(&f);
            }
        }
        info!(
            date = missing.date,
            message_id = missing.message_id,
            "submission: missing fields added"
        );
        fields
    }

    async fn event(&mut self, event: Event<'_>) -> io::Result<Answer> {
        let ctx = &self.ctx;
        let config = &*self.live.config;
        Ok(match event {
            Event::Hello { kind, name } => {
                debug!(helo = %name.as_str(), "hello");
                self.helo = Some(name.into_owned());
                self.esmtp = kind != HelloKind::Helo;
                self.txn = None;
                Answer::Accept
            }
            Event::MailFrom { from, params } => {
                if self.submission {
                    match authorizing_user(ctx, self.ip).await {
                        Ok(Some(user)) => {
                            debug!(pop3_user = %user, "submission authorized");
                        }
                        Ok(None) => {
                            info!(
                                "submission refused: client not authorized (no recent POP3 login)"
                            );
                            return Ok(Answer::Reject(replies::submission_needs_login()));
                        }
                        Err(()) => return Ok(Answer::Reject(replies::relay_check_unavailable())),
                    }
                }
                if ctx.storage_low() {
                    return Ok(Answer::Reject(replies::insufficient_storage()));
                }
                debug!(from = ?from, "mail from");
                self.txn = Some(Txn {
                    from: from.into_owned(),
                    mail: params.into_owned(),
                    local: Vec::new(),
                    remote: Vec::new(),
                    accepted: 0,
                    last_rcpt: None,
                    spool_failed: false,
                    line_ends: LineEndings::new(),
                    customer: self.submission,
                });
                if let Some(s) = self.spool.as_mut() {
                    s.clear();
                }
                Answer::Accept
            }
            Event::RcptTo { to, params } => {
                if ctx.storage_low() {
                    return Ok(Answer::Reject(replies::insufficient_storage()));
                }
                // Local mail needs no relay check (and no Redis); only a
                // recipient that would be relayed asks the table.
                let mut relay_user = None;
                let verdict = match relay::decide(config, &to, false) {
                    Verdict::Accept(d) => Verdict::Accept(d),
                    refused => match relay::decide(config, &to, true) {
                        Verdict::Accept(Destination::Remote) => {
                            match authorizing_user(ctx, self.ip).await {
                                Ok(Some(user)) => {
                                    relay_user = Some(user);
                                    Verdict::Accept(Destination::Remote)
                                }
                                Ok(None) => refused,
                                Err(()) => {
                                    return Ok(Answer::Reject(replies::relay_check_unavailable()));
                                }
                            }
                        }
                        _ => refused,
                    },
                };
                match verdict {
                    Verdict::Accept(dest) => {
                        // Only a user with a quota costs a look at the
                        // Maildir (and a blocking task).
                        if let Destination::Local(u) = &dest
                            && config.user_quota(u.as_str()).is_some()
                        {
                            let size = self.txn.as_ref().and_then(|t| t.mail.size).unwrap_or(0);
                            let (sh, u) = (Arc::clone(ctx), u.clone());
                            let room = tokio::task::spawn_blocking(move || {
                                delivery::room_for(&sh, &u, size)
                            })
                            .await
                            .map_err(|e| io::Error::other(format!("quota task: {e}")))?;
                            if let Err(e) = room {
                                return Ok(Answer::Reject(e.0));
                            }
                        }
                        if let Some(t) = self.txn.as_mut() {
                            match dest {
                                Destination::Local(u) => {
                                    debug!(rcpt = %replies::shown(&to), user = %u, "local recipient");
                                    let rcpt = Recipient {
                                        path: to.clone().into_owned(),
                                        params: params.into_owned(),
                                    };
                                    match t.local.iter_mut().find(|l| l.user == u) {
                                        Some(l) => l.add(rcpt),
                                        None => t.local.push(LocalRecipient::new(u, rcpt)),
                                    }
                                }
                                Destination::Remote => {
                                    info!(
                                        rcpt = %replies::shown(&to),
                                        pop3_user = relay_user.as_deref().unwrap_or(""),
                                        "relay recipient accepted (POP-before-SMTP)"
                                    );
                                    t.customer = true;
                                    t.remote.push(Recipient {
                                        path: to.clone().into_owned(),
                                        params: params.into_owned(),
                                    });
                                }
                            }
                            t.accepted += 1;
                            t.last_rcpt = Some(to.into_owned());
                        }
                        Answer::Accept
                    }
                    Verdict::Reject(reply) => {
                        info!(rcpt = %replies::shown(&to), code = reply.code().get(), "recipient refused");
                        Answer::Reject(reply)
                    }
                }
            }
            Event::DataStart => {
                if ctx.storage_low() {
                    return Ok(Answer::Reject(replies::insufficient_storage()));
                }
                Answer::Accept
            }
            Event::BodyChunk(chunk) => {
                if let (Some(t), Some(s)) = (self.txn.as_mut(), self.spool.as_mut()) {
                    t.spool(s, chunk);
                }
                Answer::None
            }
            Event::MessageAborted(e) => {
                info!(error = %e, "message aborted");
                // The session answers it itself; counted as that reply.
                let r = e.reply();
                self.ctx.metrics.smtp_message(r.code().get(), &status(&r));
                if let Some(s) = self.spool.as_mut() {
                    s.clear();
                }
                Answer::None
            }
            Event::MessageComplete { size } => self.message_complete(size).await?,
            Event::Reset => {
                self.txn = None;
                if let Some(s) = self.spool.as_mut() {
                    s.clear();
                }
                Answer::None
            }
            Event::StartTls | Event::Vrfy { .. } | Event::Expn { .. } => Answer::Accept,
            Event::Auth { .. } | Event::AuthResponse(_) => {
                Answer::Reject(replies::auth_not_available())
            }
            _ => Answer::None,
        })
    }

    /// The end of a message: checks the line ends, scans, delivers every
    /// copy durably, and answers `250` only then.
    async fn message_complete(&mut self, size: u64) -> io::Result<Answer> {
        let ctx = &Arc::clone(&self.ctx);
        let Some(mut t) = self.txn.take() else {
            // The session only completes a message of an open transaction.
            return Ok(Answer::Reject(replies::local_error()));
        };
        if let Some(s) = self.spool.as_mut() {
            t.finish_spool(s);
        }
        if self.live.config.smtp.bare_line_endings == BareLfPolicy::Reject
            && t.line_ends.bare_line_ends() > 0
        {
            info!(
                bare = t.line_ends.bare_line_ends(),
                "message refused: bare CR or LF (smtp.bare_line_endings = reject)"
            );
            return Ok(Answer::Reject(replies::bare_line_end()));
        }
        let with = trace::protocol(self.esmtp, self.tls, false, false);
        let with = if t.mail.smtputf8 {
            trace::utf8_protocol(with)
        } else {
            with
        };
        let result = if t.spool_failed {
            Err(DeliveryError(replies::local_error()))
        } else {
            self.messages = self.messages.saturating_add(1);
            let added_fields = self.submission_fields(t.customer).await;
            let env = Envelope {
                id: self.id,
                message: self.messages,
                added_fields,
                client: self.ip,
                helo: self.helo.clone(),
                with,
                from: t.from,
                local: t.local,
                remote: t.remote,
                mail: t.mail,
                for_rcpt: if t.accepted == 1 { t.last_rcpt } else { None },
            };
            let sh = Arc::clone(ctx);
            let live = Arc::clone(&self.live);
            let mut sp = self
                .spool
                .take()
                .ok_or_else(|| session_error("spool lost"))?;
            let scan_source = match &live.spamd {
                // Only when a recipient wants it (per-user settings,
                // the web page's overrides included).
                Some(client) if delivery::any_scanning(ctx, &live.config, env.local_users()) => {
                    spamd_scan(ctx, &live, client, &mut sp, &env).await
                }
                _ => Scan::Builtin,
            };
            let (sp, r) = ctx
                .deliveries
                .spawn_blocking(move || {
                    let r = delivery::deliver(&sh, &live, &mut sp, &env, scan_source);
                    sp.clear();
                    (sp, r)
                })
                .await
                .map_err(|e| io::Error::other(format!("delivery task: {e}")))?;
            self.spool = Some(sp);
            r
        };
        Ok(match result {
            Ok(report) => {
                info!(size, score = ?report.score, local = ?report.local, queued = report.queued, "message accepted");
                if report.queued {
                    ctx.queued.notify_one();
                }
                Answer::Accept
            }
            Err(e) => {
                warn!(error = %e, "message not accepted");
                Answer::Reject(e.0)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A login still in the table authorizes nothing once its user is gone
    /// (its revocation may be waiting for Redis, or no host was up to see
    /// the user removed: a re-probe saw such a user relay for a minute).
    #[tokio::test]
    async fn a_removed_users_login_authorizes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml_str(&format!(
            "data_dir = {:?}\n[[users]]\nname = \"joe\"\npassword = \"x\"\n",
            dir.path().join("data")
        ))
        .unwrap();
        let ctx = Context::open(config).unwrap();
        let (joes, gones): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = std::time::Instant::now();
        ctx.relay_store
            .record_login(joes, "joe", now)
            .await
            .unwrap();
        ctx.relay_store
            .record_login(gones, "gone", now)
            .await
            .unwrap();
        assert_eq!(
            authorizing_user(&ctx, joes).await,
            Ok(Some("joe".to_owned()))
        );
        assert_eq!(authorizing_user(&ctx, gones).await, Ok(None));
    }
}
