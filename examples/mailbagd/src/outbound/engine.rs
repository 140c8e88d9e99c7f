//! The engine: scans the queue, routes and delivers each due message, records
//! every outcome, and has the bounces made (see the module docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Seek};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbag_mailstore::queue::{
    BodyType, DeliveryLock, Envelope, Outcome as QOutcome, QueueError, QueueId, RecipientState,
    ReportState, Ret as QRet, Retry,
};
use mailbag_smtp_proto::address::{ForwardPath, parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{Outcome, Recipient, Stage, Status, Timeouts, Transaction};
use mailbag_smtp_proto::types::{
    Body, EnhancedStatusCode, Envid, HeloName, Notify, Orcpt, Reply, ReplyCode, Ret, XText,
};
use tokio::sync::{Notify as Wake, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::bounce;
use super::mx::{self, HickoryResolver, Resolve, Route, RouteError};
use super::seven_bit_body::{SevenBitBody, seven_bit_body};
use super::transport::{self, AttemptError, Job, TransportOptions};
use crate::clock::unix_now;
use crate::config::Config;
use crate::context::Context;

/// Most recipients per transaction (RFC 5321 section 4.5.3.1.8: servers take at least 100).
pub const MAX_RECIPIENTS_PER_TRANSACTION: usize = 100;

/// When a message whose recipients are all settled still owes a DSN that could not be
/// made, the next try comes after this many seconds: 300 (5 minutes).
pub const REPORT_RETRY: u64 = 300;

/// The outbound delivery engine. It is handed the signal the SMTP side raises when it
/// queues a message ([`Context::queued`]), and reaches nothing else of the server but
/// the [`Context`] that [`Outbound::run`] is given.
#[derive(Debug)]
pub struct Outbound {
    lock: Arc<DeliveryLock>,
    resolver: Arc<dyn Resolve>,
    transport: TransportOptions,
    global: Arc<Semaphore>,
    /// Passes that hold their message's lock at once (`relay.max_connections`):
    /// each lock is an open file, and a backlog (a next hop that is slow or
    /// comes back after an outage) must not hold one per waiting message.
    passes: Arc<Semaphore>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    in_flight: Mutex<HashSet<QueueId>>,
    /// Envelopes whose last pass recorded outcomes (a next hop's 250, a DSN made)
    /// that could not be written to the queue (a full disk, a permission error):
    /// kept until a pass writes them, so that what was done is not done again
    /// while the queue cannot be written. At most one per queued message.
    unsaved: Mutex<HashMap<QueueId, Envelope>>,
    wake: Arc<Wake>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The queue's delivery lock is held (another mailbagd delivers this queue).
    #[error("relay queue: {0}")]
    Queue(#[from] QueueError),
    /// `relay.helo_name` is not usable.
    #[error("relay.helo_name is not a valid EHLO name")]
    HeloName,
}

impl Outbound {
    /// Takes the delivery lock of the queue in `ctx.state` and prepares the engine.
    ///
    /// # Errors
    ///
    /// [`OutboundError`] if `relay.helo_name` is unusable.
    pub fn new(
        config: &Config,
        lock: DeliveryLock,
        wake: Arc<Wake>,
    ) -> Result<Outbound, OutboundError> {
        let resolver: Arc<dyn Resolve> = match HickoryResolver::new(config.relay.dns_server) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                warn!(error = %e, "no DNS: MX delivery will be deferred until DNS works");
                Arc::new(mx::NoDns(e))
            }
        };
        Outbound::with_resolver(config, lock, wake, resolver)
    }

    /// Like [`Outbound::new`] with a given resolver (tests).
    ///
    /// # Errors
    ///
    /// [`OutboundError::HeloName`].
    pub fn with_resolver(
        config: &Config,
        lock: DeliveryLock,
        wake: Arc<Wake>,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Outbound, OutboundError> {
        let helo = HeloName::try_from(config.relay.helo_name.as_str())
            .map_err(|_| OutboundError::HeloName)?
            .into_owned();
        let mut transport = TransportOptions::new(helo);
        transport.connect_timeout = config.relay.connect_timeout;
        if let Some(t) = config.relay.command_timeout {
            let mut all = Timeouts::RFC5321;
            all.greeting = t;
            all.command = t;
            all.mail = t;
            all.rcpt = t;
            all.data_init = t;
            all.data_block = t;
            all.data_termination = t;
            transport.timeouts = all;
        }
        if !config.relay.starttls {
            transport.tls = None;
        }
        Ok(Outbound {
            lock: Arc::new(lock),
            resolver,
            transport,
            global: Arc::new(Semaphore::new(config.relay.max_connections)),
            passes: Arc::new(Semaphore::new(config.relay.max_connections)),
            per_destination: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            unsaved: Mutex::new(HashMap::new()),
            wake,
        })
    }

    /// Keeps `env`, which a pass could not write, for the next pass of its
    /// message; said once (a warning), not again on each pass that still
    /// cannot write it (`again`: a probe counted 107 lines in 21 s).
    fn keep_unsaved(&self, env: Envelope, again: bool) {
        if again {
            debug!(queue_id = %env.id, "outcomes still kept in memory: the queue cannot be written");
        } else {
            warn!(
                queue_id = %env.id,
                "outcomes kept in memory until the queue can be written: no new attempt before then"
            );
        }
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(env.id.clone(), env);
    }

    /// The envelope an earlier pass of `id` could not write, if any.
    fn take_unsaved(&self, id: &QueueId) -> Option<Envelope> {
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
    }

    fn destination_semaphore(&self, key: &str, limit: usize) -> Arc<Semaphore> {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            // Forget idle destinations so the map stays bounded.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(
            map.entry(key.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(limit))),
        )
    }
}

impl Outbound {
    /// Runs the engine until the server shuts down (`ctx.shutdown`): scans the queue,
    /// starts a delivery task per due message (tracked by `tracker`, so shutdown waits
    /// for deliveries in progress).
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>, tracker: TaskTracker) {
        run(self, ctx, tracker).await;
    }
}

async fn run(engine: Arc<Outbound>, ctx: Arc<Context>, tracker: TaskTracker) {
    let shutdown = ctx.shutdown.clone();
    info!(
        smarthost = ?ctx.config().relay.smarthost,
        "outbound delivery engine started"
    );
    let mut startup = true;
    loop {
        let lock = Arc::clone(&engine.lock);
        let now = unix_now();
        let first = std::mem::take(&mut startup);
        let scan = tokio::task::spawn_blocking(move || scan_queue(&lock, now, first)).await;
        match scan {
            Ok(Ok(work)) => {
                for (id, deliver) in work {
                    let fresh = engine
                        .in_flight
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id.clone());
                    if !fresh {
                        continue;
                    }
                    let span = info_span!("outbound", queue_id = %id);
                    let sh = Arc::clone(&ctx);
                    let e = Arc::clone(&engine);
                    tracker.spawn(
                        async move {
                            deliver_message(&sh, &e, &id, deliver).await;
                            e.in_flight
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .remove(&id);
                        }
                        .instrument(span),
                    );
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot scan the relay queue"),
            Err(e) => warn!(error = %e, "queue scan task failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(ctx.config().relay.scan_interval) => {}
            _ = engine.wake.notified() => {
                // Let a burst of new messages settle into one scan.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    info!("outbound delivery engine stopped");
}

/// What to do now: every due message (deliver), and at start-up also every message that
/// owes a DSN although it is not due (reports only).
fn scan_queue(
    lock: &DeliveryLock,
    now: u64,
    startup: bool,
) -> Result<Vec<(QueueId, bool)>, QueueError> {
    let due = lock.due(now)?;
    let mut work: Vec<(QueueId, bool)> = Vec::with_capacity(due.len());
    if startup {
        for env in lock.queue().list()?.messages {
            if env.next_attempt > now && !env.held && !env.reports_owed().is_empty() {
                info!(queue_id = %env.id, "DSN owed from before the start: making it now");
                work.push((env.id, false));
            }
        }
    }
    work.extend(due.into_iter().map(|id| (id, true)));
    Ok(work)
}

/// The reply text stored in the queue and logged: `"550 5.1.1 text"` (lines joined).
pub fn reply_text(o: &Outcome) -> String {
    let r = o.reply();
    let mut s = r.code().get().to_string();
    if let Some(e) = r.enhanced() {
        s.push(' ');
        s.push_str(&e.to_string());
    }
    let text = r.lines().join(" / ");
    if !text.is_empty() {
        s.push(' ');
        s.push_str(&text);
    }
    s
}

/// The MAIL parameters for a queued message.
fn transaction_for(
    env: &Envelope,
    recipients: &[(usize, ForwardPath<'static>)],
) -> Option<Transaction<'static>> {
    let from = if env.reverse_path.is_empty() {
        mailbag_smtp_proto::address::ReversePath::Null
    } else {
        parse_reverse_path(format!("<{}>", env.reverse_path).as_bytes())
            .ok()?
            .0
            .into_owned()
    };
    let mut t = Transaction::new(from);
    t.params.size = Some(env.size);
    t.params.body = match env.body {
        BodyType::EightBitMime => Some(Body::EightBitMime),
        BodyType::BinaryMime => Some(Body::BinaryMime),
        _ => None,
    };
    t.params.smtputf8 = env.smtputf8;
    t.params.ret = env.ret.map(|r| match r {
        QRet::Hdrs => Ret::Headers,
        _ => Ret::Full,
    });
    // Taken from a client's ENVID, so within its 100 characters.
    t.params.envid = env
        .envid
        .clone()
        .and_then(|e| Envid::new(XText::new(e)).ok());
    for (i, to) in recipients {
        let mut r = Recipient::new(to.clone());
        if let Some(q) = env.recipients.get(*i) {
            r.params.notify = q
                .notify
                .map(|n| Notify::new(n.success, n.failure, n.delay).unwrap_or(Notify::NEVER));
            r.params.orcpt = q.orcpt.as_deref().and_then(|o| {
                let (kind, value) = o.split_once(';')?;
                Orcpt::new(kind.to_string(), XText::parse(value).ok()?.into_owned()).ok()
            });
        }
        t.recipients.push(r);
    }
    Some(t)
}

/// The envelope of one attempt and its queue file, shared by the destinations tried at
/// the same time: every outcome is written to the queue in the order it was recorded.
struct Shared<'e> {
    /// `outbound_attempts` per result.
    metrics: Arc<crate::metrics::Metrics>,
    lock: Arc<DeliveryLock>,
    env: tokio::sync::Mutex<&'e mut Envelope>,
}

/// Records one destination's outcomes in the shared envelope and the queue.
struct Ledger<'s, 'e> {
    shared: &'s Shared<'e>,
    /// Transaction → recipient index → envelope recipient index.
    map: Vec<Vec<usize>>,
    host: String,
    /// Recipients accepted by the next hop during the current connection.
    delivered_now: Vec<usize>,
}

impl<'s, 'e> Ledger<'s, 'e> {
    fn new(shared: &'s Shared<'e>) -> Self {
        Ledger {
            shared,
            map: Vec::new(),
            host: String::new(),
            delivered_now: Vec::new(),
        }
    }

    async fn record(&mut self, i: usize, o: &Outcome) -> io::Result<()> {
        // Held until the queue is written, so that updates reach it in order.
        let mut env = self.shared.env.lock().await;
        let Some(r) = env.recipients.get_mut(i) else {
            return Ok(());
        };
        if !r.state.is_pending() {
            return Ok(()); // settled already (a RCPT failure reported again at the end)
        }
        let text = reply_text(o);
        info!(
            rcpt = %r.address,
            host = %self.host,
            reply = %text,
            status = ?o.status(),
            "delivery attempt"
        );
        let q = QOutcome {
            at: unix_now(),
            host: o.is_remote().then(|| self.host.clone()),
            reply: text,
        };
        // A settled recipient and the report it owes are written in one update. A
        // "relayed" report is owed until the connection ends offering DSN (the next hop
        // then reports itself).
        self.shared.metrics.outbound_attempt(match o.status() {
            Status::Accepted => "delivered",
            Status::Permanent => "failed",
            Status::Temporary => "deferred",
        });
        (r.state, r.report) = match o.status() {
            Status::Accepted => {
                self.delivered_now.push(i);
                let report = if r.wants_success_dsn() {
                    ReportState::Owed
                } else {
                    ReportState::Done
                };
                (RecipientState::Delivered(q), report)
            }
            Status::Permanent => (RecipientState::Failed(q), ReportState::Owed),
            Status::Temporary => (
                RecipientState::Pending { last: Some(q) },
                ReportState::Unrecorded,
            ),
        };
        let snapshot = (**env).clone();
        let lock = Arc::clone(&self.shared.lock);
        tokio::task::spawn_blocking(move || lock.update(&snapshot))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)
    }
}

struct MessageJob<'a, 's, 'e> {
    ledger: &'a mut Ledger<'s, 'e>,
    id: QueueId,
}

impl Job for MessageJob<'_, '_, '_> {
    async fn body(&mut self, eight_bit: bool) -> io::Result<tokio::fs::File> {
        let lock = Arc::clone(&self.ledger.shared.lock);
        let id = self.id.clone();
        let host = self.ledger.host.clone();
        let file = tokio::task::spawn_blocking(move || {
            let (mut file, _) = lock.body(&id).map_err(io::Error::other)?;
            match seven_bit_body(&mut file, lock.queue().tmp_dir(), eight_bit)? {
                SevenBitBody::AsItIs { eight_bit_left } => {
                    if eight_bit_left {
                        info!(queue_id = %id, %host, "8-bit octets that cannot be converted sent to a next hop without 8BITMIME");
                    }
                    file.rewind()?;
                    Ok(file)
                }
                SevenBitBody::Converted {
                    file,
                    eight_bit_left,
                } => {
                    if eight_bit {
                        info!(queue_id = %id, %host, "parts with lines over 998 octets converted to quoted-printable");
                    } else {
                        info!(queue_id = %id, %host, eight_bit_left, "8-bit parts converted to quoted-printable for a next hop without 8BITMIME");
                    }
                    Ok::<_, io::Error>(file)
                }
            }
        })
        .await
        .map_err(io::Error::other)??;
        Ok(tokio::fs::File::from_std(file))
    }

    async fn settle(&mut self, txn: usize, rcpt: usize, outcome: &Outcome) -> io::Result<()> {
        let Some(&i) = self.ledger.map.get(txn).and_then(|m| m.get(rcpt)) else {
            return Ok(());
        };
        self.ledger.record(i, outcome).await
    }
}

/// A locally found failure: `esc` like `"5.1.10"` decides temporary (4) or permanent (5).
fn local_outcome(esc: &str, text: &str) -> Outcome {
    let mut it = esc.split('.').map(|p| p.parse::<u16>().ok());
    let (class, subject, detail) = match (
        it.next().flatten(),
        it.next().flatten(),
        it.next().flatten(),
    ) {
        (Some(c @ (4 | 5)), Some(s), Some(d)) => (c, s, d),
        _ => (4, 0, 0),
    };
    let code = if class == 5 {
        ReplyCode::MAILBOX_UNAVAILABLE
    } else {
        ReplyCode::LOCAL_ERROR
    };
    let class = u8::try_from(class).unwrap_or(4);
    let reply = EnhancedStatusCode::new(class, subject, detail)
        .ok()
        .and_then(|e| Reply::new(code, Some(e), text.to_string()).ok());
    match reply {
        Some(r) => Outcome::local_reply(Stage::Rcpt, r),
        None => Outcome::temporary(Stage::Rcpt, "local failure"),
    }
}

/// Makes the DSNs that `env` owes ([`Envelope::reports_owed`]) durable and records them as
/// done (the envelope is written when anything changed). A DSN that cannot be made stays
/// owed. Returns `false` when the queue could not be updated.
async fn settle_reports(ctx: &Arc<Context>, engine: &Arc<Outbound>, env: &mut Envelope) -> bool {
    let owed = env.reports_owed();
    if owed.is_empty() {
        return true;
    }
    let (mut failed, mut delivered, mut relayed) = (Vec::new(), Vec::new(), Vec::new());
    for i in owed {
        match env.recipients.get(i).map(|r| &r.state) {
            Some(RecipientState::Failed(_)) => failed.push(i),
            // Stored here (no remote host): a "delivered" report.
            Some(RecipientState::Delivered(o)) if o.host.is_none() => delivered.push(i),
            Some(_) => relayed.push(i),
            None => {}
        }
    }
    let mut changed = false;
    for (which, kind) in [
        (failed, bounce::Report::Failed),
        (delivered, bounce::Report::Delivered),
        (relayed, bounce::Report::Relayed),
    ] {
        if which.is_empty() {
            continue;
        }
        match bounce::send_report(ctx, &engine.lock, env, &which, kind).await {
            bounce::Sent::Durable | bounce::Sent::NotWanted => {
                for i in which {
                    if let Some(r) = env.recipients.get_mut(i) {
                        r.report = ReportState::Done;
                        changed = true;
                    }
                }
            }
            bounce::Sent::Failed => {}
        }
    }
    if !changed {
        return true;
    }
    match write_envelope(engine, env).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "queue update after a DSN failed (kept in memory: the DSN is made again only after a restart)");
            false
        }
    }
}

/// What a pass holds before it takes its message's lock.
struct PassPermits {
    /// The destinations' connection permits ([`Outbound::destination_semaphore`]), by
    /// destination key: waited for before the lock, so that messages waiting for a busy
    /// destination hold no open file.
    destinations: BTreeMap<String, OwnedSemaphorePermit>,
    /// One of [`Outbound::passes`].
    _pass: OwnedSemaphorePermit,
}

/// Waits, holding no descriptor, for what a pass needs before it locks its message: the
/// connection permit of every destination of the pending recipients (read from the
/// envelope as it is now, without the lock; taken in the order of their keys, so that two
/// messages never wait for each other), then a pass. `None`: the message is gone, or the
/// engine stops.
async fn before_the_lock(
    ctx: &Arc<Context>,
    engine: &Arc<Outbound>,
    id: &QueueId,
    deliver: bool,
) -> Option<PassPermits> {
    let mut destinations = BTreeMap::new();
    if deliver {
        let lock = Arc::clone(&engine.lock);
        let qid = id.clone();
        match tokio::task::spawn_blocking(move || lock.envelope(&qid)).await {
            // Chosen by a scan that read the envelope before the last pass wrote its
            // next attempt: nothing to connect for (checked again under the lock).
            Ok(Ok(env)) if env.next_attempt > unix_now() => {}
            Ok(Ok(env)) => {
                let config = ctx.config();
                let keys: BTreeSet<String> = env
                    .pending()
                    .filter_map(|(_, r)| destination(&config, &r.address).map(|(k, _)| k))
                    .collect();
                for key in keys {
                    let sem = engine.destination_semaphore(&key, config.relay.concurrency);
                    let permit = sem.acquire_owned().await.ok()?;
                    destinations.insert(key, permit);
                }
            }
            Ok(Err(QueueError::NotFound(_))) => return None,
            // Unreadable: the read under the lock says why (a corrupt entry is moved aside).
            _ => {}
        }
    }
    let pass = Arc::clone(&engine.passes).acquire_owned().await.ok()?;
    Some(PassPermits {
        destinations,
        _pass: pass,
    })
}

/// The destination a recipient's mail goes to (connections to it are counted together):
/// `"smarthost"` when there is one, else the address's domain; with the address parsed.
/// `None`: the address does not parse.
fn destination(config: &Config, address: &str) -> Option<(String, ForwardPath<'static>)> {
    match parse_forward_path(format!("<{address}>").as_bytes()) {
        Ok((fp, [])) => {
            let key = match (&config.relay.smarthost, fp.final_domain()) {
                (Some(_), _) => String::from("smarthost"),
                (None, Some(d)) => d.into_owned(),
                (None, None) => config.hostname.to_string(),
            };
            Some((key, fp.into_owned()))
        }
        _ => None,
    }
}

/// One pass over one message: the DSNs still owed first; then, when `deliver` (the
/// message is due), one delivery attempt to every pending recipient, retry scheduling,
/// the new DSNs; and removal once complete.
async fn deliver_message(ctx: &Arc<Context>, engine: &Arc<Outbound>, id: &QueueId, deliver: bool) {
    let Some(permits) = before_the_lock(ctx, engine, id, deliver).await else {
        return;
    };
    let lock = Arc::clone(&engine.lock);
    let qid = id.clone();
    // The message's own lock, held to the end of the pass: an administrator's
    // `mailbagd queue hold|release|flush|delete` waits for it, and a message
    // such a command holds now is left for the next scan.
    let read = tokio::task::spawn_blocking(move || {
        let message = lock.queue().try_lock_message(&qid)?;
        let env = message.envelope()?;
        // A body missing or cut short (a probe's truncated file was relayed as
        // if whole) is a corrupt entry, moved aside below.
        lock.queue().verify_body(&env)?;
        Ok::<_, QueueError>((message, env))
    })
    .await;
    let (_message, mut env) = match read {
        Ok(Err(QueueError::Locked)) => {
            debug!("locked by an administrator's command: left for the next scan");
            return;
        }
        Ok(Ok((_, e))) if e.held => {
            debug!("on hold: not attempted");
            return;
        }
        Ok(Ok(x)) => x,
        Ok(Err(QueueError::NotFound(_))) => {
            // Deleted by an administrator: what was kept of it goes too.
            engine.take_unsaved(id);
            return;
        }
        Ok(Err(e @ QueueError::Corrupt { .. })) => {
            engine.take_unsaved(id);
            warn!(error = %e, "corrupt queue entry: moved to corrupt/ for the administrator");
            let lock = Arc::clone(&engine.lock);
            let qid = id.clone();
            let _ = tokio::task::spawn_blocking(move || lock.quarantine(&qid)).await;
            return;
        }
        Ok(Err(e)) => {
            warn!(error = %e, "cannot read queue entry");
            return;
        }
        Err(e) => {
            warn!(error = %e, "queue read task failed");
            return;
        }
    };
    // What an earlier pass did but could not write stands: it is written first, and
    // until it is, nothing is attempted (a next hop's 250 that was not recorded would
    // otherwise send the message again on every scan while the disk is full).
    if let Some(kept) = engine.take_unsaved(id) {
        env = unsaved_over(kept, env);
        if let Err(e) = write_envelope(engine, &env).await {
            debug!(error = %e, "the queue still cannot be written");
            engine.keep_unsaved(env, true);
            return;
        }
        info!("outcomes kept in memory written to the queue");
    }
    // A scan reads the envelopes without their locks: one that read this one before
    // the last pass wrote its next attempt took it for due (a re-probe saw 4 % of the
    // failed attempts tried again 0.1 s later). Due is what the envelope says now.
    let deliver = deliver && env.next_attempt <= unix_now();
    // Reports owed from an earlier pass (a crash or a failed DSN) come first.
    if !settle_reports(ctx, engine, &mut env).await {
        engine.keep_unsaved(env, false);
        return;
    }
    if deliver && !env.is_finished() && !attempt(ctx, engine, id, &mut env, &permits).await {
        engine.keep_unsaved(env, false);
        return;
    }
    // Then the reports of this pass, and removal or the next pass.
    let now = unix_now();
    if !settle_reports(ctx, engine, &mut env).await {
        engine.keep_unsaved(env, false);
        return;
    }
    let mut complete = env.is_complete();
    if !complete && env.is_finished() {
        give_up_old_reports(ctx, &mut env, now);
        complete = env.is_complete();
        // Only DSNs are left to make: try again soon.
        env.next_attempt = now.saturating_add(REPORT_RETRY);
    }
    let lock = Arc::clone(&engine.lock);
    let qid = id.clone();
    let snapshot = env.clone();
    let r = tokio::task::spawn_blocking(move || {
        if complete {
            lock.remove(&qid)
        } else {
            lock.update(&snapshot)
        }
    })
    .await;
    match r {
        Ok(Ok(())) if complete => info!("message done: removed from the queue"),
        Ok(Ok(())) => debug!("message stays queued"),
        Ok(Err(e)) => {
            warn!(error = %e, "queue update failed");
            engine.keep_unsaved(env, false);
        }
        Err(e) => {
            warn!(error = %e, "queue task failed");
            engine.keep_unsaved(env, false);
        }
    }
}

/// `kept`, the envelope an earlier pass could not write, with what an
/// administrator may have changed on disk since (`disk`): `held`, and an earlier
/// `next_attempt` (`queue flush`). The recipients and attempts are the pass's.
fn unsaved_over(mut kept: Envelope, disk: Envelope) -> Envelope {
    kept.held = disk.held;
    kept.next_attempt = kept.next_attempt.min(disk.next_attempt);
    kept
}

/// Writes `env` to the queue.
async fn write_envelope(engine: &Arc<Outbound>, env: &Envelope) -> Result<(), String> {
    let lock = Arc::clone(&engine.lock);
    let snapshot = env.clone();
    match tokio::task::spawn_blocking(move || lock.update(&snapshot)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Gives up the DSNs `env` still owes for recipients settled at least
/// `relay.max_queue_age` ago (a local sender whose mailbox stays full, a
/// disk that stays full): each is logged and counted, and marked done, so
/// that the message can leave the queue. A bounce gets as long to be made as
/// a message gets to be delivered, as Postfix's `bounce_queue_lifetime`
/// defaults to its `maximal_queue_lifetime`.
fn give_up_old_reports(ctx: &Context, env: &mut Envelope, now: u64) {
    let max_age = ctx.config().relay.max_queue_age.as_secs();
    for i in env.reports_owed() {
        let Some(r) = env.recipients.get_mut(i) else {
            continue;
        };
        let settled = r.state.outcome().map_or(env.arrival, |o| o.at);
        if now.saturating_sub(settled) >= max_age {
            warn!(
                recipient = %r.address,
                sender = %env.reverse_path,
                "DSN given up: it could not be made within relay.max_queue_age"
            );
            ctx.metrics.dsn_given_up();
            r.report = ReportState::Done;
        }
    }
}

/// One delivery attempt to every pending recipient of `env`, recording every outcome
/// (and the reports it makes owed) as it comes; then the next attempt's time, expiry, and
/// the "delayed" warnings. `env` is written to the queue by the caller afterwards.
/// Returns `false` when the queue could not be updated (the pass stops there; what was
/// recorded stays, the message is due again at once).
async fn attempt(
    ctx: &Arc<Context>,
    engine: &Arc<Outbound>,
    id: &QueueId,
    env: &mut Envelope,
    permits: &PassPermits,
) -> bool {
    let config = &ctx.config();
    // Group pending recipients by destination.
    let mut groups: BTreeMap<String, Vec<(usize, ForwardPath<'static>)>> = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, r) in env.pending() {
        match destination(config, &r.address) {
            Some((key, fp)) => groups.entry(key).or_default().push((i, fp)),
            None => bad.push(i),
        }
    }
    let shared = Shared {
        metrics: Arc::clone(&ctx.metrics),
        lock: Arc::clone(&engine.lock),
        env: tokio::sync::Mutex::new(env),
    };
    let mut ledger = Ledger::new(&shared);
    for i in bad {
        let o = local_outcome("5.1.3", "bad recipient address syntax");
        if ledger.record(i, &o).await.is_err() {
            return false;
        }
    }
    // Every destination at the same time (each within its own and the global connection
    // limits): a next hop that is slow or does not answer holds up only its own
    // recipients.
    let tries = groups.into_iter().map(|(dest, rcpts)| {
        let held = permits.destinations.contains_key(&dest);
        try_destination(ctx, config, engine, id, &shared, (dest, held), rcpts)
    });
    let recorded = futures::future::join_all(tries).await;
    let env = shared.env.into_inner();
    if recorded.contains(&false) {
        return false;
    }

    // Schedule the next attempt, or give up.
    let now = unix_now();
    env.attempts = env.attempts.saturating_add(1);
    if !env.is_finished() {
        match config
            .relay
            .retry_schedule
            .next_attempt(env.arrival, env.attempts, now)
        {
            Retry::At(t) => env.next_attempt = t,
            _ => {
                for r in &mut env.recipients {
                    if let RecipientState::Pending { last } = &r.state {
                        let why = last
                            .as_ref()
                            .map_or("no attempt succeeded", |o| o.reply.as_str());
                        // mailbagd's own text (the last reply only quoted in it): no
                        // host, so the bounce's diagnostic is not typed `smtp`.
                        let q = QOutcome {
                            at: now,
                            host: None,
                            reply: format!("5.4.7 message expired in the queue; last error: {why}"),
                        };
                        info!(rcpt = %r.address, "message expired: giving up");
                        r.state = RecipientState::Failed(q);
                        r.report = ReportState::Owed;
                    }
                }
            }
        }
    }
    let schedule = &config.relay.retry_schedule;
    if !env.is_finished() && schedule.delay_warning_due(env.arrival, now) {
        let waiting: Vec<usize> = env.pending().map(|(i, _)| i).collect();
        let until = schedule.expires_at(env.arrival);
        let report = bounce::Report::Delayed { until };
        // Sent, or not wanted (the null sender, NOTIFY, a sender of a local
        // domain who is no user): either way not asked again on every pass.
        if bounce::send_report(ctx, &engine.lock, env, &waiting, report).await
            != bounce::Sent::Failed
        {
            for i in waiting {
                if let Some(r) = env.recipients.get_mut(i) {
                    r.delay_notified = true;
                }
            }
        }
    }
    true
}

/// One destination's part of an attempt ([`deliver_destination`]), then the DSNs it made
/// owed, at once: a bounce does not wait for a slower destination of the same message.
/// Returns `false` when the queue could not be updated.
async fn try_destination(
    ctx: &Arc<Context>,
    config: &Config,
    engine: &Arc<Outbound>,
    id: &QueueId,
    shared: &Shared<'_>,
    dest: (String, bool),
    rcpts: Vec<(usize, ForwardPath<'static>)>,
) -> bool {
    if !deliver_destination(config, engine, id, shared, dest, rcpts).await {
        return false;
    }
    let mut env = shared.env.lock().await;
    settle_reports(ctx, engine, &mut env).await
}

/// Routes one destination and delivers its recipients through the first next hop that
/// takes the connection, recording every outcome in `shared`. `dest`: the destination's
/// key, and whether the pass holds its connection permit ([`before_the_lock`]; not when
/// the configuration changed since, e.g. a smarthost set by a reload, and then its limit
/// is not counted for this pass). Returns `false` when the queue could not be updated.
async fn deliver_destination(
    config: &Config,
    engine: &Arc<Outbound>,
    id: &QueueId,
    shared: &Shared<'_>,
    (dest, held): (String, bool),
    rcpts: Vec<(usize, ForwardPath<'static>)>,
) -> bool {
    let mut ledger = Ledger::new(shared);
    let seed = unix_now() ^ u64::from(std::process::id()) ^ (rcpts.len() as u64) << 32;
    let route: Result<Route, RouteError> = match &config.relay.smarthost {
        Some(s) => mx::route_smarthost(&s.host, s.port, engine.resolver.as_ref()).await,
        None => {
            let route =
                mx::route_domain(&dest, engine.resolver.as_ref(), config.relay.mx_port, seed).await;
            if config.relay.allow_internal_next_hops {
                route
            } else {
                route.and_then(mx::without_internal_hops)
            }
        }
    };
    let route = match route {
        Ok(r) => r,
        Err(e) => {
            let (status, text) = match &e {
                RouteError::Permanent { status, text } => (*status, text.as_str()),
                RouteError::Temporary { text } => ("4.4.3", text.as_str()),
            };
            info!(destination = %dest, error = %e, "no route");
            ledger.host.clear();
            for (i, _) in &rcpts {
                if ledger
                    .record(*i, &local_outcome(status, text))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            return true;
        }
    };
    let built = {
        let env = shared.env.lock().await;
        build_transactions(&env, &rcpts, &mut ledger.map)
    };
    let Some(txn_list) = built else {
        for (i, _) in &rcpts {
            let o = local_outcome("5.1.7", "bad sender address syntax");
            if ledger.record(*i, &o).await.is_err() {
                return false;
            }
        }
        return true;
    };
    if !held {
        // Not waited for while holding a pass (two passes could then wait for each
        // other): this once, the destination's limit is not counted.
        debug!(destination = %dest, "destination not known before the lock: its limit not counted for this pass");
    }
    let Ok(_global_permit) = Arc::clone(&engine.global).acquire_owned().await else {
        return false;
    };
    let mut last_error: Option<AttemptError> = None;
    let mut done = false;
    'hops: for hop in &route.hops {
        for addr in &hop.addrs {
            ledger.host.clone_from(&hop.name);
            let mut job = MessageJob {
                ledger: &mut ledger,
                id: id.clone(),
            };
            let use_tls = engine.transport.tls.is_some();
            let mut r = transport::deliver(
                *addr,
                &hop.name,
                &engine.transport,
                use_tls,
                &txn_list,
                &mut job,
            )
            .await;
            if let Err(AttemptError::Tls { .. }) = &r {
                info!(host = %hop.name, %addr, "TLS handshake failed: retrying in plaintext once");
                r = transport::deliver(
                    *addr,
                    &hop.name,
                    &engine.transport,
                    false,
                    &txn_list,
                    &mut job,
                )
                .await;
            }
            let delivered = std::mem::take(&mut ledger.delivered_now);
            match r {
                Ok(end) => {
                    debug!(host = %hop.name, %addr, transactions = end.started, tls = end.tls, dsn = end.dsn, "connection done");
                    if end.dsn {
                        // The next hop got NOTIFY and reports itself: no "relayed"
                        // report from us (recorded with the next update).
                        let mut env = shared.env.lock().await;
                        for i in delivered {
                            if let Some(r) = env.recipients.get_mut(i) {
                                r.report = ReportState::Done;
                            }
                        }
                    }
                    done = true;
                    break 'hops;
                }
                Err(AttemptError::Queue(e)) => {
                    warn!(error = %e, "queue update failed: delivery of this message stopped");
                    return false;
                }
                Err(e) => {
                    info!(host = %hop.name, %addr, error = %e, "next hop not usable");
                    last_error = Some(e);
                }
            }
        }
    }
    ledger.map.clear();
    if !done {
        let o = last_error.map_or_else(
            || local_outcome("4.4.1", "no usable next hop"),
            |e| e.outcome(),
        );
        for (i, _) in &rcpts {
            // A 5xx greeting or EHLO from the last host tried: permanent.
            if ledger.record(*i, &o).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// Splits a group into transactions of at most [`MAX_RECIPIENTS_PER_TRANSACTION`]
/// recipients; `map` receives the envelope index of every recipient.
fn build_transactions(
    env: &Envelope,
    rcpts: &[(usize, ForwardPath<'static>)],
    map: &mut Vec<Vec<usize>>,
) -> Option<Vec<Transaction<'static>>> {
    map.clear();
    let mut out = Vec::new();
    for chunk in rcpts.chunks(MAX_RECIPIENTS_PER_TRANSACTION) {
        out.push(transaction_for(env, chunk)?);
        map.push(chunk.iter().map(|(i, _)| *i).collect());
    }
    Some(out)
}
