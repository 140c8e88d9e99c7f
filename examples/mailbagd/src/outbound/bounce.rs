//! Bounces: RFC 3464 delivery status notifications (built with `smtp-proto`'s `dsn`
//! module) for recipients that failed permanently or expired, and "delayed" warnings.
//!
//! - Never for the null sender `<>` (a bounce of a bounce), and only for recipients whose
//!   `NOTIFY` asks for it (absent `NOTIFY` means `FAILURE,DELAY`; `NEVER` means none).
//! - A "delayed" DSN is sent once per recipient, when the message has waited
//!   `relay.delay_warning` (default 4 hours) and is still pending.
//! - `NOTIFY=SUCCESS`: a "relayed" DSN when the next hop accepted the recipient without
//!   offering DSN (a next hop that offers it got NOTIFY and reports itself), a
//!   "delivered" one for a local recipient whose copy was stored.
//! - `RET=HDRS` returns the header section, `RET=FULL` or no `RET` the whole message up to
//!   10 MiB (then the header section).
//! - A local sender gets it in the INBOX through the local delivery path; anyone else gets it
//!   through the relay queue with the null sender, except an address of a local domain that
//!   is no user here, which gets none (the queue would send it out again).

use std::io::{self, Cursor, Read};
use std::sync::Arc;

use mailbag_mailstore::queue::{
    BodyType, DeliveryLock, Envelope, NewEnvelope, Outcome as QOutcome,
    Recipient as QueueRecipient, RecipientState, Ret as QRet,
};
use mailbag_smtp_proto::address::{ForwardPath, Host, parse_forward_path};
use mailbag_smtp_proto::date::DateTime;
use mailbag_smtp_proto::dsn::{
    Action, DEFAULT_FULL_RETURN_LIMIT, DiagnosticType, DsnBuilder, OriginalContent,
    RecipientReport, header_section_len,
};
use mailbag_smtp_proto::types::Ret;
use tracing::{debug, info, warn};

use crate::clock::unix_now;
use crate::context::Context;
use crate::read_chunks::each_chunk;
use crate::relay::{self, Destination, Verdict};

/// The diagnostic type of the texts this server makes itself (RFC 3464 section 2.3.6: an
/// `X-` name, as Postfix writes `X-Postfix`); a remote server's reply is `smtp`.
pub const LOCAL_DIAGNOSTIC_TYPE: &str = "X-Mailbagd";

/// Most octets read to find the header section for `RET=HDRS`.
const MAX_HEADER_READ: u64 = 1024 * 1024;

/// Random bits in a DSN's MIME boundary: 128, so that nobody can guess it and embed
/// it in a message to forge the parts of a "Mail Delivery System" report.
pub const BOUNDARY_RANDOM_BITS: usize = 128;

/// A fresh MIME boundary: `=_mailbag_dsn_` and [`BOUNDARY_RANDOM_BITS`] bits from the
/// OS random number generator in hex.
///
/// # Errors
///
/// The OS RNG failed (the DSN stays owed and is tried again).
pub fn mime_boundary() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; BOUNDARY_RANDOM_BITS / 8];
    getrandom::fill(&mut bytes)?;
    let mut b = String::from("=_mailbag_dsn_");
    for x in bytes {
        b.push_str(&format!("{x:02x}"));
    }
    Ok(b)
}

/// The kind of report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The recipients failed (permanently, or the message expired).
    Failed,
    /// The recipients are still pending after `relay.delay_warning`; retries go on until
    /// the given unix time.
    Delayed {
        /// When the message expires.
        until: u64,
    },
    /// The recipients were accepted by a next hop that does not offer DSN, and NOTIFY
    /// asked for SUCCESS (RFC 3461 section 4.1: a "relayed" report).
    Relayed,
    /// The recipients are local and their copies stored, and NOTIFY asked for SUCCESS
    /// (a "delivered" report).
    Delivered,
}

/// What became of a report ([`send_report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The DSN is durable: fsynced into the local sender's INBOX, or committed to the
    /// relay queue (from `<>`).
    Durable,
    /// None is wanted: the sender is `<>`, or no recipient's `NOTIFY` asks for it.
    NotWanted,
    /// It could not be made (logged); the caller keeps it owed and tries again.
    Failed,
}

/// Builds and sends a DSN for recipients `which` (indexes into `env.recipients`) to the
/// sender, durably (see [`Sent`]).
pub async fn send_report(
    ctx: &Arc<Context>,
    lock: &Arc<DeliveryLock>,
    env: &Envelope,
    which: &[usize],
    report: Report,
) -> Sent {
    if env.reverse_path.is_empty() {
        info!("no bounce: the sender is <>");
        return Sent::NotWanted;
    }
    let wanted: Vec<usize> = which
        .iter()
        .copied()
        .filter(|i| {
            env.recipients.get(*i).is_some_and(|r| match report {
                Report::Failed => r.wants_failure_dsn(),
                Report::Delayed { .. } => r.wants_delay_dsn() && !r.delay_notified,
                Report::Relayed | Report::Delivered => r.wants_success_dsn(),
            })
        })
        .collect();
    if wanted.is_empty() {
        match report {
            Report::Failed => info!("no bounce: NOTIFY does not ask for failures"),
            Report::Delayed { .. } => debug!("no delay warning wanted"),
            Report::Relayed | Report::Delivered => {}
        }
        return Sent::NotWanted;
    }
    let action = match report {
        Report::Failed => Action::Failed,
        Report::Delayed { .. } => Action::Delayed,
        Report::Relayed => Action::Relayed,
        Report::Delivered => Action::Delivered,
    };
    let sh = Arc::clone(ctx);
    let lock = Arc::clone(lock);
    let env = env.clone();
    let result = tokio::task::spawn_blocking(move || {
        let config = &sh.config();
        // Where it goes: a local sender's INBOX; the relay queue for anyone
        // else; nowhere for an address of a local domain that is no user here
        // (the queue would only send it out again, to a smarthost or this
        // server's own MX).
        let route = parse_forward_path(format!("<{}>", env.reverse_path).as_bytes())
            .ok()
            .map(|(fp, _)| {
                let ours = match &fp {
                    ForwardPath::Postmaster(_) => true,
                    ForwardPath::Path(p) => {
                        matches!(p.mailbox().host(), Host::Domain(d) if config.is_local_domain(d))
                    }
                };
                (relay::decide(config, &fp, false), ours)
            });
        let local = match route {
            Some((Verdict::Accept(Destination::Local(u)), _)) => Some(u),
            Some((Verdict::Reject(r), true)) if r.code().get() >= 500 => {
                return Ok(None);
            }
            // A local user whose account cannot take mail now: owed, tried again.
            Some((Verdict::Reject(_), true)) => {
                return Err("the sender's local account cannot take mail now".to_owned());
            }
            _ => None,
        };
        let now = unix_now();
        let host = &config.hostname;
        let date = DateTime::new(now, 0).map_err(|_| "bad date")?;
        let mut b = DsnBuilder::new(
            host.as_str(),
            format!("MAILER-DAEMON@{host}"),
            env.reverse_path.as_str(),
            date,
            mime_boundary().map_err(|_| "no random boundary")?,
            format!("<{}.{now}.dsn@{host}>", env.id),
        );
        if let Some(e) = &env.envid {
            b.envid(e.as_str());
        }
        if let Ok(a) = DateTime::new(env.arrival, 0) {
            b.arrival_date(a);
        }
        b.smtputf8(env.smtputf8);
        for i in &wanted {
            let Some(r) = env.recipients.get(*i) else {
                continue;
            };
            let o = match (&r.state, report) {
                (RecipientState::Failed(o), Report::Failed) => o.clone(),
                (RecipientState::Delivered(o), Report::Relayed | Report::Delivered) => o.clone(),
                (RecipientState::Pending { last }, Report::Delayed { .. }) => {
                    last.clone().unwrap_or_else(|| QOutcome {
                        at: now,
                        host: None,
                        reply: "4.0.0 not yet delivered".into(),
                    })
                }
                _ => continue,
            };
            let status = action.status_from_reply(&o.reply);
            let mut rep = RecipientReport::new(r.address.as_str(), action, status);
            if let Report::Delayed { until } = report
                && let Ok(d) = DateTime::new(until, 0)
            {
                rep = rep.will_retry_until(d);
            }
            if let Some(orcpt) = &r.orcpt {
                rep = rep.original_recipient_xtext(orcpt);
            }
            // Only a remote host's reply is an `smtp` diagnostic; a text this server made
            // (no route, a refused connection, an expired message) has its own type.
            if let Some(h) = &o.host {
                rep = rep.remote_mta(h.as_str()).diagnostic(&o.reply);
            } else {
                rep = rep.typed_diagnostic(
                    DiagnosticType::Other(LOCAL_DIAGNOSTIC_TYPE.into()),
                    &o.reply,
                );
            }
            if let Ok(d) = DateTime::new(o.at, 0) {
                rep = rep.last_attempt(d);
            }
            b.recipient(rep);
        }
        let ret = env.ret.map(|r| match r {
            QRet::Hdrs => Ret::Headers,
            _ => Ret::Full,
        });
        let content = OriginalContent::choose(ret, action, env.size, DEFAULT_FULL_RETURN_LIMIT);
        let (mut file, len) = lock.body(&env.id).map_err(|e| e.to_string())?;
        // RET=HDRS: the header section, read once for the 8-bit test and the report.
        let head = match content {
            OriginalContent::Headers => {
                let mut head = Vec::new();
                (&mut file)
                    .take(MAX_HEADER_READ.min(len))
                    .read_to_end(&mut head)
                    .map_err(|e| e.to_string())?;
                let n = header_section_len(&head).unwrap_or(head.len());
                head.truncate(n);
                head
            }
            _ => Vec::new(),
        };
        // 8-bit as declared (BODY=8BITMIME), or as found: a client that sent 8-bit
        // octets without declaring them still gets its original back labelled
        // `8bit` and sent with BODY=8BITMIME (a probe's bounce was neither).
        let original_8bit = env.body != BodyType::SevenBit
            || match content {
                OriginalContent::None => false,
                OriginalContent::Headers => !head.is_ascii(),
                OriginalContent::Full => has_8bit(&lock, &env)?,
            };
        let parts = b
            .build(content, original_8bit)
            .map_err(|e| format!("DSN: {e}"))?;
        let original: Box<dyn Read + Send> = match content {
            OriginalContent::Full => Box::new(file.take(len)),
            OriginalContent::Headers => Box::new(Cursor::new(head)),
            OriginalContent::None => Box::new(io::empty()),
        };
        let mut message = Cursor::new(parts.prefix.clone())
            .chain(original)
            .chain(Cursor::new(parts.suffix.clone()));

        // Local sender: into the INBOX. Otherwise: through the queue, from <>.
        match local {
            Some(user) => {
                crate::delivery::deliver_report(&sh, &user, &mut message)
                    .map_err(|e| e.to_string())?;
                Ok::<Option<String>, String>(Some(format!("delivered locally to {user}")))
            }
            None => {
                let mut q = NewEnvelope::new(String::new(), now);
                q.body = if parts.eight_bit {
                    BodyType::EightBitMime
                } else {
                    BodyType::SevenBit
                };
                q.smtputf8 = parts.smtputf8;
                q.recipients
                    .push(QueueRecipient::new(env.reverse_path.clone()));
                let mut w = sh.queue.enqueue(&q).map_err(|e| e.to_string())?;
                io::copy(&mut message, &mut w).map_err(|e| e.to_string())?;
                let id = w.commit().map_err(|e| e.to_string())?;
                Ok(Some(format!("queued as {id}")))
            }
        }
    })
    .await;
    match result {
        Ok(Ok(None)) => {
            info!("no bounce: the sender is an address of a local domain that is no user");
            Sent::NotWanted
        }
        Ok(Ok(Some(how))) => {
            info!(recipients = which.len(), kind = ?report, %how, "DSN sent");
            ctx.metrics.dsn_sent(match report {
                Report::Failed => "failed",
                Report::Delayed { .. } => "delayed",
                Report::Relayed => "relayed",
                Report::Delivered => "delivered",
            });
            ctx.queued.notify_one();
            Sent::Durable
        }
        Ok(Err(e)) => {
            warn!(error = %e, kind = ?report, "DSN could not be sent: it stays owed and is tried again on the next pass");
            Sent::Failed
        }
        Err(e) => {
            warn!(error = %e, "DSN task failed");
            Sent::Failed
        }
    }
}

/// Whether a queued message's body holds an octet outside 7-bit ASCII.
fn has_8bit(lock: &DeliveryLock, env: &Envelope) -> Result<bool, String> {
    let (file, len) = lock.body(&env.id).map_err(|e| e.to_string())?;
    // The first 8-bit chunk ends the read (`Ok(true)` through the error side).
    let read = each_chunk(
        &mut file.take(len),
        64 * 1024,
        |e| Err(e.to_string()),
        |c| if c.is_ascii() { Ok(()) } else { Err(Ok(true)) },
    );
    match read {
        Ok(()) => Ok(false),
        Err(found_or_error) => found_or_error,
    }
}
