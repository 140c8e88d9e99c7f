//! The server's counters and gauges, in the OpenMetrics text format
//! (`[metrics] listen`, `/metrics`), with the Prometheus project's
//! `prometheus-client`.
//!
//! Labels are roles (`pop3`, `smtp`, …), services, SMTP stages and reply
//! codes, results and folders: a fixed, small set. No user name and no
//! address is ever a label value.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

/// Labels of the refused-connection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    role: &'static str,
    reason: &'static str,
}

/// Labels of the login counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    service: &'static str,
    result: &'static str,
}

/// Labels of the SMTP message and refusal counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplyLabels {
    stage: &'static str,
    class: &'static str,
    status: String,
}

/// A single `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Labels of the delivery counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FolderLabels {
    folder: &'static str,
}

/// Labels of the spam verdict counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// Labels of the DSN counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DsnLabels {
    action: &'static str,
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections_open: Family<RoleLabels, Gauge>,
    connections: Family<RoleLabels, Counter>,
    connections_refused: Family<RefusedLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    smtp_refusals: Family<ReplyLabels, Counter>,
    messages: Family<ReplyLabels, Counter>,
    spam_verdicts: Family<VerdictLabels, Counter>,
    deliveries: Family<FolderLabels, Counter>,
    queue_messages: Gauge,
    queue_oldest_age: Gauge,
    outbound_attempts: Family<ResultLabels, Counter>,
    dsns: Family<DsnLabels, Counter>,
    dsns_given_up: Counter,
    retention_deletions: Counter,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: Gauge,
    listeners_up: Gauge,
    listeners_expected: AtomicI64,
    redis_commands: Family<ResultLabels, Counter>,
    redis_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The class of an SMTP reply code: `2xx`, `4xx` or `5xx`.
fn class(code: u16) -> &'static str {
    match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `mailbag_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mailbag");
        let m = Metrics {
            registry: Registry::default(),
            connections_open: Family::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            logins: Family::default(),
            smtp_refusals: Family::default(),
            messages: Family::default(),
            spam_verdicts: Family::default(),
            deliveries: Family::default(),
            queue_messages: Gauge::default(),
            queue_oldest_age: Gauge::default(),
            outbound_attempts: Family::default(),
            dsns: Family::default(),
            dsns_given_up: Counter::default(),
            retention_deletions: Counter::default(),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            listeners_up: Gauge::default(),
            listeners_expected: AtomicI64::new(0),
            redis_commands: Family::default(),
            redis_up: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "Client connections open, per listener role",
            m.connections_open.clone(),
        );
        r.register(
            "connections",
            "Client connections accepted, per listener role",
            m.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections turned away at a connection limit, per listener role and reason (total, per_address)",
            m.connections_refused.clone(),
        );
        r.register(
            "logins",
            "Logins per service (pop3, web) and result (ok, failed, in_use, error)",
            m.logins.clone(),
        );
        r.register(
            "smtp_refusals",
            "SMTP commands refused (by policy or by the protocol: syntax, sequence, limits), per stage (mail, rcpt, data, other), reply class and enhanced status",
            m.smtp_refusals.clone(),
        );
        r.register(
            "smtp_messages",
            "Messages at the end of DATA, per reply class and enhanced status (2xx: accepted)",
            m.messages.clone(),
        );
        r.register(
            "spam_verdicts",
            "Spam verdicts of delivered copies (spam, ham, unscanned)",
            m.spam_verdicts.clone(),
        );
        r.register(
            "local_deliveries",
            "Messages stored in a local Maildir, per folder",
            m.deliveries.clone(),
        );
        r.register(
            "relay_queue_messages",
            "Messages in the relay queue",
            m.queue_messages.clone(),
        );
        r.register(
            "relay_queue_oldest_age_seconds",
            "Age of the oldest message in the relay queue (0 when empty)",
            m.queue_oldest_age.clone(),
        );
        r.register(
            "outbound_attempts",
            "Relay delivery attempts per recipient, per result (delivered, deferred, failed)",
            m.outbound_attempts.clone(),
        );
        r.register(
            "dsns_sent",
            "Delivery status notifications made, per action (failed, delayed, relayed)",
            m.dsns.clone(),
        );
        r.register(
            "dsns_given_up",
            "DSNs given up because they could not be made within relay.max_queue_age",
            m.dsns_given_up.clone(),
        );
        r.register(
            "retention_deletions",
            "Spam folder messages deleted for age",
            m.retention_deletions.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads, per result (ok, failed)",
            m.reloads.clone(),
        );
        r.register(
            "last_reload_success",
            "1 when the last reload applied (or none was tried), 0 when it failed",
            m.last_reload_success.clone(),
        );
        r.register(
            "listeners_up",
            "Listeners accepting connections",
            m.listeners_up.clone(),
        );
        m.last_reload_success.set(1);
        Metrics { registry, ..m }
    }

    /// Registers the `[cluster] redis` metrics (`redis_commands`,
    /// `redis_up`): only a server that uses Redis has them, so that an alert
    /// on `redis_up == 0` does not fire on a single host.
    pub fn with_redis(mut self) -> Metrics {
        self.registry.register(
            "redis_commands",
            "Commands sent to the [cluster] Redis, per result (ok, failed: refused, no connection or no answer in time)",
            self.redis_commands.clone(),
        );
        self.registry.register(
            "redis_up",
            "1 when the last command to the [cluster] Redis was answered (one is sent at start-up), 0 when it failed",
            self.redis_up.clone(),
        );
        self
    }

    /// Counts a connection of `role` accepted; the gauge of open ones goes
    /// down when the returned guard is dropped.
    pub fn connection(&self, role: &'static str) -> OpenConnection {
        let labels = RoleLabels { role };
        self.connections.get_or_create(&labels).inc();
        let gauge = self.connections_open.get_or_create(&labels).clone();
        gauge.inc();
        OpenConnection { gauge }
    }

    /// Counts a connection of `role` turned away at a connection limit:
    /// `reason` is `total` or `per_address`.
    pub fn connection_refused(&self, role: &'static str, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusedLabels { role, reason })
            .inc();
    }

    /// Counts a login of `service` (`pop3`, `web`): `ok` or `failed`.
    pub fn login(&self, service: &'static str, ok: bool) {
        self.login_result(service, if ok { "ok" } else { "failed" });
    }

    /// Counts a login of `service` with `result`: `ok`, `failed` (the
    /// credentials), `in_use` (right credentials, the POP3 maildrop held by
    /// another session) or `error` (right credentials, the maildrop could
    /// not be opened).
    pub fn login_result(&self, service: &'static str, result: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { service, result })
            .inc();
    }

    /// Counts a refused SMTP command at `stage` (`mail`, `rcpt`, `data`,
    /// `other`) with its reply code and enhanced status (`""` when none):
    /// refused by mailbagd's policy or by the protocol session itself (a
    /// syntax error, a limit).
    pub fn smtp_refusal(&self, stage: &'static str, code: u16, status: &str) {
        self.smtp_refusals
            .get_or_create(&ReplyLabels {
                stage,
                class: class(code),
                status: status.to_owned(),
            })
            .inc();
    }

    /// Counts a message at the end of DATA with the reply it got.
    pub fn smtp_message(&self, code: u16, status: &str) {
        self.messages
            .get_or_create(&ReplyLabels {
                stage: "data",
                class: class(code),
                status: status.to_owned(),
            })
            .inc();
    }

    /// Counts a copy delivered to a user who has scanning on: `verdict` is
    /// `spam`, `ham`, or `unscanned` (no score: spamd failed or paused, or the
    /// message was over `max_scan_size`).
    pub fn spam_verdict(&self, verdict: &'static str) {
        self.spam_verdicts
            .get_or_create(&VerdictLabels { verdict })
            .inc();
    }

    /// Counts a message stored in `folder` (`INBOX`, `Spam`).
    pub fn delivered(&self, folder: &'static str) {
        self.deliveries
            .get_or_create(&FolderLabels { folder })
            .inc();
    }

    /// Sets the relay queue gauges.
    pub fn set_queue(&self, messages: usize, oldest_age_seconds: u64) {
        self.queue_messages
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
        self.queue_oldest_age
            .set(i64::try_from(oldest_age_seconds).unwrap_or(i64::MAX));
    }

    /// Counts one recipient's relay attempt (`delivered`, `deferred`, `failed`).
    pub fn outbound_attempt(&self, result: &'static str) {
        self.outbound_attempts
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a DSN made (`failed`, `delayed`, `relayed`).
    pub fn dsn_sent(&self, action: &'static str) {
        self.dsns.get_or_create(&DsnLabels { action }).inc();
    }

    /// Counts a DSN given up (it could not be made within `relay.max_queue_age`).
    pub fn dsn_given_up(&self) {
        self.dsns_given_up.inc();
    }

    /// Counts Spam folder messages deleted for age.
    pub fn retention_deleted(&self, n: u64) {
        self.retention_deletions.inc_by(n);
    }

    /// Counts a command to the `[cluster]` Redis.
    pub fn redis_command(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.redis_commands
            .get_or_create(&ResultLabels { result })
            .inc();
        self.redis_up.set(i64::from(ok));
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_reload_success.set(i64::from(ok));
    }

    /// Sets how many listeners the server has; [`Metrics::listener_up`]
    /// counts those accepting.
    pub fn expect_listeners(&self, n: usize) {
        self.listeners_expected
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// A listener started accepting; it counts until the guard is dropped.
    pub fn listener_up(&self) -> ListenerUp {
        let gauge = self.listeners_up.clone();
        gauge.inc();
        ListenerUp { gauge }
    }

    /// Whether every expected listener is accepting (`/health`).
    pub fn healthy(&self) -> bool {
        self.listeners_up.get() >= self.listeners_expected.load(Ordering::Relaxed)
    }

    /// The text exposition format (`/metrics`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// An open connection (the `connections_open` gauge counts it until dropped).
#[derive(Debug)]
pub struct OpenConnection {
    gauge: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A listener accepting (the `listeners_up` gauge counts it until dropped).
#[derive(Debug)]
pub struct ListenerUp {
    gauge: Gauge,
}

impl Drop for ListenerUp {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        assert!(
            !Metrics::new().encode().contains("redis"),
            "only with Redis"
        );
        let m = Metrics::new().with_redis();
        m.expect_listeners(1);
        assert!(!m.healthy());
        let up = m.listener_up();
        assert!(m.healthy());
        let c = m.connection("pop3");
        m.login("pop3", true);
        m.login("pop3", false);
        m.smtp_refusal("rcpt", 550, "5.7.1");
        m.reload(false);
        m.redis_command(true);
        m.redis_command(false);
        let text = m.encode();
        assert!(
            text.contains("mailbag_redis_commands_total{result=\"failed\"} 1")
                && text.contains("mailbag_redis_up 0"),
            "{text}"
        );
        assert!(
            text.contains("mailbag_connections_open{role=\"pop3\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailbag_logins_total{service=\"pop3\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "mailbag_smtp_refusals_total{stage=\"rcpt\",class=\"5xx\",status=\"5.7.1\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("mailbag_last_reload_success 0"), "{text}");
        drop(c);
        drop(up);
        assert!(!m.healthy());
        assert!(
            m.encode()
                .contains("mailbag_connections_open{role=\"pop3\"} 0")
        );
    }
}
