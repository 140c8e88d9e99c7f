//! The [`Context`]: what every service of the server shares — the
//! configuration, the TLS acceptor, the mail store, the POP-before-SMTP relay
//! table, the relay queue, the spam settings and scorer client, the connection
//! limits, the login limiter (POP3 and the web page count failed logins
//! together) and the shutdown signal.
//!
//! It knows no service: the listeners, the protocol drivers, the web page,
//! the sweeper and the outbound engine each take an `Arc<Context>` and use
//! what they need; nothing here calls back into them. The outbound engine is
//! woken through [`Context::queued`], a signal it was handed at start-up.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mailbag_mailstore::{Error as StoreError, MaildirOptions, MaildirStore, Mailstore};
use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
use mailbag_spam_tag::Template;
use mailbag_spam_tag::spamd::{SpamdClient, SpamdOptions};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use mailbag_mailstore::queue::{Queue, QueueError, QueueOptions};

use crate::config::Config;
use crate::disk_space;
use crate::limits::{ConnectionClass, ConnectionLimiter, ConnectionPermit, LimitExceeded};
use crate::login_limiter::{LoginLimitOptions, LoginLimiter};
use crate::maildrop_lease::MaildropLeases;
use crate::metrics::Metrics;
use crate::redis_conn::RedisConn;
use crate::relay_store::{RedisRelay, RelayBackend};
use crate::shared_login_limiter::{AttemptToken, SharedLoginLimiter};
use crate::signing_key::SigningKey;
use crate::spool::{SPOOL_DIR, remove_stale};
use crate::tls::{TlsError, load_acceptor};
use crate::user_settings::SettingsStore;

/// Headroom over `smtp.max_message_size` for the header fields the server
/// adds on delivery (`Return-Path`, `Received`, `X-Spam-*`).
pub const ADDED_HEADERS_ALLOWANCE: u64 = 64 * 1024;

/// Why the context could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The Maildir root or a user's Maildir could not be created.
    #[error("mail store at {path}: {source}")]
    Store {
        /// The data directory.
        path: String,
        /// The store error.
        source: StoreError,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The data directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The relay queue could not be opened.
    #[error("relay queue at {path}: {source}")]
    Queue {
        /// The queue directory.
        path: String,
        /// The queue error.
        source: QueueError,
    },
    /// The Subject tag template is invalid.
    #[error("spam.tag_template: {0}")]
    Template(String),
    /// The key of the release links cannot be read or made.
    #[error("web.secret_file {path}: {source}")]
    SecretFile {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `[cluster] redis` is unusable.
    #[error("cluster.redis: {0}")]
    Cluster(String),
}

/// What a reload replaces as one: the configuration (with its users) and
/// what is made from it. A session takes one at its start ([`Context::live`])
/// and keeps it to its end, so that a reload never changes the rules in the
/// middle of a transaction.
#[derive(Clone)]
#[non_exhaustive]
pub struct Live {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<TlsAcceptor>,
    /// The Subject tag template (`spam.tag_template`).
    pub template: Template,
    /// spamd client when `spam.spamd` is configured (else the built-in scorer).
    pub spamd: Option<SpamdClient>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .field("spamd", &self.spamd)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Makes what the configuration names: loads the TLS certificate and
    /// key, checks the tag template, sets up the spamd client.
    ///
    /// # Errors
    ///
    /// [`ContextError::Tls`] or [`ContextError::Template`].
    pub fn new(config: Config) -> Result<Live, ContextError> {
        let tls = match &config.tls {
            Some(t) => Some(load_acceptor(&t.cert_file, &t.key_file)?),
            None => None,
        };
        Live::with_tls(config, tls)
    }

    /// Like [`Live::new`] with the TLS acceptor already made (loaded before
    /// the server gave up root).
    ///
    /// # Errors
    ///
    /// [`ContextError::Template`].
    pub fn with_tls(config: Config, tls: Option<TlsAcceptor>) -> Result<Live, ContextError> {
        let template = Template::new(&config.spam.tag_template)
            .map_err(|e| ContextError::Template(e.to_string()))?;
        let spamd = config.spam.spamd.map(|addr| {
            let mut opts = SpamdOptions::default();
            opts.addr = addr;
            opts.max_message_size = config.spam.max_scan_size;
            SpamdClient::new(opts)
        });
        Ok(Live {
            config: Arc::new(config),
            tls,
            template,
            spamd,
        })
    }
}

/// Everything the services of one server share.
pub struct Context {
    /// The configuration and what is made from it, replaced whole by a reload.
    live: Arc<RwLock<Arc<Live>>>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown's `limits.shutdown_timeout` has passed:
    /// a delivery that has not begun to commit its copies then stores
    /// nothing (the delivery checks it before its commit), so that no message is stored
    /// whose `250` the client will never get.
    pub abandon: CancellationToken,
    /// Pauses asking spamd after it failed several times in a row.
    pub spamd_breaker: crate::spamd_breaker::SpamdBreaker,
    /// The memory all SMTP spools may hold together (`[limits] spool_memory`).
    pub spool_memory: Arc<crate::spool::SpoolMemory>,
    /// The deliveries running now (SMTP DATA's blocking part): shutdown
    /// waits for them, so that one that committed can still answer.
    pub deliveries: tokio_util::task::TaskTracker,
    /// The Maildir store.
    pub store: Arc<dyn Mailstore>,
    /// Client addresses that logged in over POP3 recently, in this
    /// process (the Postfix policy listener answers from it).
    pub relay: SharedRelayTable,
    /// Where POP3 records logins and SMTP checks relay: [`Context::relay`],
    /// or Redis with `[cluster] redis`.
    pub relay_store: RelayBackend,
    /// POP3 maildrop leases in Redis (`[cluster] redis`), across hosts.
    pub leases: Option<Arc<MaildropLeases>>,
    /// Durable queue of mail accepted for relay (`mailbag_mailstore::queue`).
    pub queue: Queue,
    /// Signalled when a message was queued for relay: the outbound engine,
    /// handed a clone of it, scans the queue at once.
    pub queued: Arc<Notify>,
    /// Per-user overrides of the spam settings (the web page writes them,
    /// delivery reads them).
    pub settings: Arc<SettingsStore>,
    /// Failed logins per client address and per user name, shared by POP3
    /// and the web page (`[login]`).
    pub logins: LoginLimiter,
    /// The same counts in Redis for every host (`[cluster] redis`): see
    /// [`Context::login_attempt`].
    pub shared_logins: Option<SharedLoginLimiter>,
    /// Signs the Spam digest's release links (`web.secret_file`).
    pub link_key: SigningKey,
    /// The counters and gauges of `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This process's mark in `Received:` ids (`id <connection>.<mark>`,
    /// [`instance_mark`]): connection ids start at 1 in every process, and
    /// the mark keeps the ids of a restart or of another host from repeating
    /// earlier ones. Logged at start-up.
    pub instance: String,
    limiter: ConnectionLimiter,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("live", &self.live())
            .field("store", &self.store)
            .field("relay", &self.relay)
            .field("queue", &self.queue)
            .field("limiter", &self.limiter)
            .field("logins", &self.logins.len())
            .finish_non_exhaustive()
    }
}

/// A login attempt [`Context::login_attempt`] counted as a failure, to be
/// handed to [`Context::login_succeeded`] if the password is right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The failures counted, this one included (the larger count of the
    /// address's and the name's): the delay of a failure grows with it.
    pub failures: u32,
    /// Counted in Redis (`[cluster] redis`), not in this host's limiter.
    in_redis: bool,
    /// Its token in Redis (`[cluster] redis`), also when Redis did not answer:
    /// the attempt may still run there.
    token: Option<AttemptToken>,
}

impl Context {
    /// Loads the TLS material, opens the Maildir root (creating every
    /// configured user's Maildir) and the relay queue.
    ///
    /// # Errors
    ///
    /// [`ContextError`] naming what could not be set up.
    pub fn open(config: Config) -> Result<Context, ContextError> {
        let tls = match &config.tls {
            Some(t) => Some(load_acceptor(&t.cert_file, &t.key_file)?),
            None => None,
        };
        Context::open_with_tls(config, tls)
    }

    /// Like [`Context::open`] with the TLS acceptor already loaded (the
    /// server loads it before it gives up root).
    ///
    /// # Errors
    ///
    /// [`ContextError`] naming what could not be set up.
    pub fn open_with_tls(
        config: Config,
        tls: Option<TlsAcceptor>,
    ) -> Result<Context, ContextError> {
        // Private: it holds everyone's mail (an existing directory keeps its mode).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|source| ContextError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
        let mut opts = MaildirOptions::default();
        opts.max_message_size = config
            .smtp
            .max_message_size
            .saturating_add(ADDED_HEADERS_ALLOWANCE);
        opts.hostname = Some(config.hostname.to_string());
        // Over quota is "452 4.2.2": the sender retries once the user made room.
        opts.quota_tempfail = true;
        // A passwd-file user's Maildir is made on first use (a delivery, a
        // login, the web page), as Dovecot does: with 100,000 users, making
        // every one at start-up would take minutes.
        opts.auto_create_users = true;
        // A host that dies frees its maildrop lock files within one lease.
        opts.maildrop_lock_stale = config.cluster.lock_lease;
        opts.quota_file_recount_size = config.limits.quota_file_recount_size;
        opts.uidl_format = config.pop3.uidl_format;
        let data_dir = config.data_dir.clone();
        let settings = Arc::new(SettingsStore::new(&config.data_dir));
        // Made here so that the store's quota lookup reads the users as of
        // each delivery (a reload changes `quota=` without a restart).
        let live = Arc::new(RwLock::new(Arc::new(Live::with_tls(config, tls)?)));
        let users = Arc::clone(&live);
        let quota = move |name: &mailbag_mailstore::UserName| {
            let live = Arc::clone(&users.read().unwrap_or_else(|e| e.into_inner()));
            let config = &live.config;
            config.user_quota(name.as_str())
        };
        let store = MaildirStore::with_quota_lookup(&data_dir, opts, Arc::new(quota)).map_err(
            |source| ContextError::Store {
                path: data_dir.display().to_string(),
                source,
            },
        )?;
        let current = Arc::clone(&live.read().unwrap_or_else(|e| e.into_inner()));
        let config: &Config = &current.config;
        let store_err = |source| ContextError::Store {
            path: config.data_dir.display().to_string(),
            source,
        };
        for u in config.users.iter().filter(|u| u.passwd_file_line.is_none()) {
            match store.create_user(&u.name) {
                Ok(()) => {}
                // Made by someone else (`mkdir`, another delivery agent): complete
                // it now. A Maildir that cannot be completed must not keep the
                // others from being served: its deliveries get 451 until repaired.
                Err(StoreError::UserExists(_)) => match store.repair_user(&u.name) {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(user = %u.name, "the user's Maildir path is not a directory: deliveries get 451 until it is repaired");
                    }
                    Err(e) => {
                        warn!(user = %u.name, error = %e, "Maildir incomplete and cannot be completed: deliveries get 451 until it is repaired");
                    }
                },
                Err(e) => return Err(store_err(e)),
            }
        }
        let spool_dir = config.data_dir.join(SPOOL_DIR);
        match remove_stale(&spool_dir) {
            Ok(0) => {}
            Ok(n) => info!(removed = n, dir = %spool_dir.display(), "removed stale spool files"),
            Err(e) => warn!(dir = %spool_dir.display(), error = %e, "spool directory"),
        }
        let mut qopts = QueueOptions::default();
        qopts.max_message_size = config
            .smtp
            .max_message_size
            .saturating_add(ADDED_HEADERS_ALLOWANCE);
        qopts.max_recipients = qopts.max_recipients.max(config.smtp.max_recipients);
        let queue =
            Queue::open(&config.relay.queue_dir, qopts).map_err(|source| ContextError::Queue {
                path: config.relay.queue_dir.display().to_string(),
                source,
            })?;
        let metrics = Arc::new(match &config.cluster.redis {
            Some(_) => Metrics::new().with_redis(),
            None => Metrics::new(),
        });
        let max =
            NonZeroUsize::new(config.pop_before_smtp.max_entries).unwrap_or(NonZeroUsize::MIN);
        let relay = SharedRelayTable::new(
            RelayOptions::default()
                .with_window(config.pop_before_smtp.window)
                .with_max_entries(max),
        );
        if let Some(path) = config.relay_table_file() {
            match crate::relay_table_file::restore(
                &relay,
                &path,
                config.pop_before_smtp.window,
                std::time::Instant::now(),
                std::time::SystemTime::now(),
                |user, saved| {
                    config.user(user).is_some_and(|u| {
                        !u.nologin && saved.is_none_or(|f| f == u.credential.fingerprint())
                    })
                },
            ) {
                Ok(0) => {}
                Ok(n) => tracing::info!(logins = n, "POP-before-SMTP logins kept over the restart"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the POP-before-SMTP logins of before the restart")
                }
            }
        }
        let login_opts = LoginLimitOptions {
            failures_before_lockout: config.login.failures_before_lockout,
            lockout: config.login.lockout,
            max_entries: config.login.max_tracked,
        };
        let (relay_store, leases, shared_logins) = match &config.cluster.redis {
            None => (RelayBackend::Memory(relay.clone()), None, None),
            Some(url) => {
                let opts = RelayOptions::default()
                    .with_window(config.pop_before_smtp.window)
                    .with_max_entries(max);
                let counted = Arc::clone(&metrics);
                let redis = Arc::new(
                    RedisConn::new(url, config.cluster.redis_timeout)
                        .map_err(ContextError::Cluster)?
                        .with_observer(Box::new(move |ok| counted.redis_command(ok))),
                );
                (
                    RelayBackend::Redis(Arc::new(RedisRelay::new(Arc::clone(&redis), opts))),
                    Some(Arc::new(MaildropLeases::new(
                        Arc::clone(&redis),
                        config.cluster.lock_lease,
                    ))),
                    Some(SharedLoginLimiter::new(redis, login_opts)),
                )
            }
        };
        let link_key = SigningKey::load_or_create(&config.web.secret_file).map_err(|source| {
            ContextError::SecretFile {
                path: config.web.secret_file.display().to_string(),
                source,
            }
        })?;
        let limiter = ConnectionLimiter::with_max(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        Ok(Context {
            metrics,
            link_key,
            logins: LoginLimiter::new(login_opts),
            shared_logins,
            settings,
            store: Arc::new(store),
            relay,
            relay_store,
            leases,
            queue,
            queued: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            abandon: CancellationToken::new(),
            spamd_breaker: crate::spamd_breaker::SpamdBreaker::new(),
            spool_memory: crate::spool::SpoolMemory::new(
                usize::try_from(config.limits.spool_memory).unwrap_or(usize::MAX),
            ),
            deliveries: tokio_util::task::TaskTracker::new(),
            limiter,
            next_id: AtomicU64::new(1),
            instance: instance_mark(std::time::SystemTime::now(), std::process::id()),
            live,
        })
    }

    /// Takes a connection slot of `class` for a client (the `[limits]`
    /// connection limits: per role or over every listener, and per address).
    ///
    /// # Errors
    ///
    /// [`LimitExceeded`] when the role's (or the total) or the client's share
    /// is used up.
    pub fn acquire_connection(
        &self,
        class: ConnectionClass,
        ip: IpAddr,
    ) -> Result<ConnectionPermit, LimitExceeded> {
        self.limiter.try_acquire(class, ip)
    }

    /// A login attempt of `user` (the limiter's key of the name) from `ip`,
    /// counted as a failure until [`Context::login_succeeded`]: with
    /// `[cluster] redis` in the limiter every host shares
    /// ([`SharedLoginLimiter`]), which then decides alone; without it, or
    /// while Redis cannot answer, in this host's. `Ok` with the failures
    /// counted; `Err(retry_after)` when the address or the name is locked
    /// out (the password must then not be checked).
    ///
    /// Only one limiter counts an attempt: had this host counted the ones
    /// Redis answered too, its own count would lock a user out after a
    /// success on another host had cleared the shared one, and keep a
    /// lock-out going past `lockout` (a cluster probe found both).
    pub async fn login_attempt(
        &self,
        ip: IpAddr,
        user: &str,
    ) -> Result<LoginAttempt, std::time::Duration> {
        let mut token = None;
        if let Some(shared) = &self.shared_logins {
            let t = shared.token();
            match shared.attempt(ip, user, &t).await {
                Ok(verdict) => {
                    return verdict.map(|failures| LoginAttempt {
                        failures: failures.max(1),
                        in_redis: true,
                        token: Some(t),
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "login failures counted on this host only: Redis did not answer");
                    token = Some(t);
                }
            }
        }
        let failures = self.logins.attempt(ip, user, std::time::Instant::now())?;
        Ok(LoginAttempt {
            failures,
            in_redis: false,
            token,
        })
    }

    /// `attempt` of `user` from `ip` had the right password: the limiter
    /// that counted it clears the name's record and takes this attempt's
    /// failure back from the address's.
    ///
    /// An attempt Redis did not answer may still run there when it resumes:
    /// Redis is told of the success too, in the background until it answers
    /// ([`SharedLoginLimiter::succeeded_in_background`]), and so is it when
    /// it did not take the success of an attempt it counted.
    pub async fn login_succeeded(&self, ip: IpAddr, user: &str, attempt: LoginAttempt) {
        if !attempt.in_redis {
            self.logins.succeeded(ip, user);
        }
        let (Some(shared), Some(token)) = (&self.shared_logins, attempt.token) else {
            return;
        };
        if attempt.in_redis {
            match shared.succeeded(ip, user, &token).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "login success not taken by Redis: sent again in the background");
                }
            }
        }
        shared.succeeded_in_background(ip, user, token);
    }

    /// The configuration and what is made from it, as of now: a session
    /// takes it once and keeps it (a reload replaces it for later ones).
    pub fn live(&self) -> Arc<Live> {
        // A writer that panicked left a whole `Arc` behind: still usable.
        Arc::clone(&self.live.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The configuration as of now ([`Context::live`]).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.live().config)
    }

    /// The TLS acceptor as of now, when `[tls]` is configured.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.live().tls.clone()
    }

    /// The Subject tag template as of now.
    pub fn template(&self) -> Template {
        self.live().template.clone()
    }

    /// The spamd client as of now, when `spam.spamd` is configured.
    pub fn spamd(&self) -> Option<SpamdClient> {
        self.live().spamd.clone()
    }

    /// Replaces the configuration and what is made from it (a reload:
    /// SIGHUP). Sessions that have begun keep theirs.
    pub fn replace_live(&self, live: Live) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }

    /// The users of `config` who have a Maildir (a passwd-file user's is
    /// made on the first delivery or login): what the retention sweep and
    /// the Spam digest go through, so that 100,000 users without mail cost
    /// them one `stat` each, not a failed scan and a warning. Checks the
    /// disk: call it off the reactor.
    pub fn users_with_maildir<'a>(
        &'a self,
        config: &'a Config,
    ) -> impl Iterator<Item = &'a crate::config::User> + 'a {
        config
            .users
            .iter()
            .filter(|u| self.store.user_exists(&u.name).unwrap_or(false))
    }

    /// Whether the data or the queue file system has less free space than
    /// `[limits] min_free_space` (never when it is `0`). A file system whose
    /// free space cannot be read counts as low: the check fails safe.
    pub fn storage_low(&self) -> bool {
        let config = self.config();
        let min = config.limits.min_free_space;
        if min == 0 {
            return false;
        }
        [&config.data_dir, &config.relay.queue_dir]
            .into_iter()
            .any(|dir| match disk_space::available(dir) {
                Ok(free) if free >= min => false,
                Ok(free) => {
                    warn!(dir = %dir.display(), free, min_free_space = min, "free space below limits.min_free_space: refusing new mail");
                    true
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot read free space: refusing new mail");
                    true
                }
            })
    }

    /// The next connection id (for log lines and `Received:` ids).
    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A process's mark: its start time in milliseconds and its process id, in
/// base 36 (`mhx3k2a1-9ix`): unique over restarts (a new start time) and,
/// but for the same millisecond and pid, over hosts.
pub fn instance_mark(start: std::time::SystemTime, pid: u32) -> String {
    fn base36(mut n: u128) -> String {
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut out = Vec::new();
        loop {
            out.push(DIGITS[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).unwrap_or_default()
    }
    let ms = start
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{}-{}", base36(ms), base36(u128::from(pid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn instance_marks_differ_by_start_and_pid() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_500_000_123);
        let a = instance_mark(t, 4242);
        assert_eq!(a, "mxatprp7-39u");
        assert_ne!(a, instance_mark(t + Duration::from_millis(1), 4242));
        assert_ne!(a, instance_mark(t, 4243));
        assert_eq!(instance_mark(UNIX_EPOCH, 0), "0-0");
    }
}
