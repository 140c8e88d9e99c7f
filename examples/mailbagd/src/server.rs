//! The wiring of a server: [`Server::bind`] opens the [`Context`] (mail
//! store, relay queue, TLS material) and binds every configured listener (so
//! that a port that is taken is reported before anything runs);
//! [`Server::run`] starts the services — one [`accept_loop`] per listener
//! with the role's service, the Postfix policy service on
//! `[pop_before_smtp] policy_listen` (pop-before-smtp's server over the same
//! relay table), the retention sweeper, the outbound engine — and
//! serves until the shutdown future completes: then the listeners close, idle
//! connections are told to go away, in-flight work (a delivery being stored, a
//! POP3 QUIT being committed, a relay attempt) is given
//! `limits.shutdown_timeout` to finish, and `run` returns.

use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use mailbag_pop_before_smtp::server::PolicyServerOptions;

use crate::config::Config;
use crate::context::{Context, ContextError};
use crate::listener::{Role, ServeFn, Service, accept_loop};
use crate::outbound::mx::Resolve;
use crate::outbound::{Outbound, OutboundError};
use crate::privileges::Dropped;
use crate::reload::Reloader;
use crate::service_manager::Notifier;
use crate::tls::load_acceptor;
use crate::web::Web;
use crate::{pop3, smtp};
use tokio::signal::unix::SignalKind;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({role}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The role of the listener.
        role: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The mail store, the queue, the TLS material or another part of the
    /// context could not be set up.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The outbound engine could not start (e.g. another mailbagd delivers this queue).
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// The sockets passed by socket activation are unusable, or one has a
    /// name that is no role.
    #[error("socket activation: {0}")]
    Activation(String),
    /// `[server] user` could not be taken on: the server does not serve.
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
}

/// A server with every listener bound.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<Context>,
    outbound: Outbound,
    listeners: Vec<(Role, TcpListener)>,
    /// Postfix policy delegation (`[pop_before_smtp] policy_listen`).
    policy: Vec<TcpListener>,
    /// `/metrics` and `/health` (`[metrics] listen`).
    metrics: Vec<TcpListener>,
    reloader: Arc<Reloader>,
}

/// The name the policy listeners are announced with (and a passed socket's
/// `FileDescriptorName=`).
const POLICY_ROLE: &str = "policy";

/// The name the metrics listeners are announced with.
const METRICS_ROLE: &str = "metrics";

/// The listeners of each kind.
type Bound = (Vec<(Role, TcpListener)>, Vec<TcpListener>, Vec<TcpListener>);

/// Binds every configured address, replacing port 0 by the port bound.
fn bind_configured(config: &mut Config) -> Result<Bound, StartError> {
    let mut listeners = Vec::new();
    let web_role = if config.web.tls {
        Role::WebTls
    } else {
        Role::Web
    };
    let lists = [
        (Role::Pop3, &mut config.pop3.listen),
        (Role::Pop3Tls, &mut config.pop3.tls_listen),
        (Role::Smtp, &mut config.smtp.listen),
        (Role::Submission, &mut config.smtp.submission_listen),
        (Role::SubmissionTls, &mut config.smtp.tls_listen),
        (web_role, &mut config.web.listen),
    ];
    for (role, addrs) in lists {
        for addr in addrs.iter_mut() {
            listeners.push((role, bind_one(addr, role.name())?));
        }
    }
    let mut policy = Vec::new();
    for addr in config.pop_before_smtp.policy_listen.iter_mut() {
        policy.push(bind_one(addr, POLICY_ROLE)?);
    }
    let mut metrics = Vec::new();
    for addr in config.metrics.listen.iter_mut() {
        metrics.push(bind_one(addr, METRICS_ROLE)?);
    }
    Ok((listeners, policy, metrics))
}

/// Binds `addr`; port 0 becomes the port bound: what the server tells
/// clients (the help page, autoconfiguration) is where it listens.
fn bind_one(addr: &mut SocketAddr, role: &'static str) -> Result<TcpListener, StartError> {
    let l = crate::listener::bind(*addr).map_err(|source| StartError::Bind {
        addr: *addr,
        role,
        source,
    })?;
    if let Ok(bound) = l.local_addr() {
        *addr = bound;
    }
    Ok(l)
}

/// Takes the sockets socket activation passed (systemd's `LISTEN_FDS`),
/// each to the role its `FileDescriptorName=` names (`pop3`, `pop3s`,
/// `smtp`, `submission`, `submissions`, `http`, `https`, `policy`,
/// `metrics`); a socket with another name (systemd names them after their
/// unit: `mailbagd.socket`) by its port, when that is a role's well-known
/// one ([`Role::for_well_known_port`]). For a kind of listener with a passed
/// socket, the configured addresses are replaced by the passed ones: the unit
/// file decides where it listens. A kind that is configured but got no
/// socket (the web page on 443 with a unit that lists only the mail ports)
/// is bound from the configuration, with a warning, rather than silently
/// not served; when that bind fails (a port below 1024 without root), the
/// server does not start.
fn take_passed(
    config: &mut Config,
    passed: Vec<crate::service_manager::PassedListener>,
) -> Result<Bound, StartError> {
    let (mut listeners, mut policy, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    let configured = config.clone();
    config.pop3.listen.clear();
    config.pop3.tls_listen.clear();
    config.smtp.listen.clear();
    config.smtp.submission_listen.clear();
    config.smtp.tls_listen.clear();
    config.web.listen.clear();
    config.pop_before_smtp.policy_listen.clear();
    config.metrics.listen.clear();
    for p in passed {
        let addr = p
            .listener
            .local_addr()
            .map_err(|e| StartError::Activation(format!("socket {:?}: {e}", p.name)))?;
        let listener = TcpListener::from_std(p.listener)
            .map_err(|e| StartError::Activation(format!("socket {:?}: {e}", p.name)))?;
        let role = match p.name.as_str() {
            POLICY_ROLE => {
                config.pop_before_smtp.policy_listen.push(addr);
                policy.push(listener);
                continue;
            }
            METRICS_ROLE => {
                config.metrics.listen.push(addr);
                metrics.push(listener);
                continue;
            }
            name => Role::ALL
                .into_iter()
                .find(|r| r.name() == name)
                // The unit's own name (one .socket for every port): by port.
                .or_else(|| Role::for_well_known_port(addr.port()))
                .ok_or_else(|| {
                    StartError::Activation(format!(
                        "a passed socket on {addr} is named {name:?}, which is no role: give \
                         each socket FileDescriptorName= pop3, pop3s, smtp, submission, \
                         submissions, http, https, policy or metrics (or use the port of \
                         the role: 110, 995, 25, 587, 465)"
                    ))
                })?,
        };
        if role.implicit_tls() && config.tls.is_none() {
            return Err(StartError::Activation(format!(
                "socket {:?} is for implicit TLS, but [tls] is not configured",
                role.name()
            )));
        }
        match role {
            Role::Pop3 => config.pop3.listen.push(addr),
            Role::Pop3Tls => config.pop3.tls_listen.push(addr),
            Role::Smtp => config.smtp.listen.push(addr),
            Role::Submission => config.smtp.submission_listen.push(addr),
            Role::SubmissionTls => config.smtp.tls_listen.push(addr),
            Role::Web | Role::WebTls => {
                config.web.tls = role == Role::WebTls;
                config.web.listen.push(addr);
            }
        }
        listeners.push((role, listener));
    }
    bind_unpassed(
        config,
        &configured,
        &mut listeners,
        &mut policy,
        &mut metrics,
    )?;
    Ok((listeners, policy, metrics))
}

/// Under socket activation, binds the configured addresses of each kind of
/// listener that got no passed socket (see [`take_passed`]).
fn bind_unpassed(
    config: &mut Config,
    configured: &Config,
    listeners: &mut Vec<(Role, TcpListener)>,
    policy: &mut Vec<TcpListener>,
    metrics: &mut Vec<TcpListener>,
) -> Result<(), StartError> {
    let web_role = if configured.web.tls {
        Role::WebTls
    } else {
        Role::Web
    };
    let kinds = [
        (
            "pop3.listen",
            Some(Role::Pop3),
            &configured.pop3.listen,
            &mut config.pop3.listen,
        ),
        (
            "pop3.tls_listen",
            Some(Role::Pop3Tls),
            &configured.pop3.tls_listen,
            &mut config.pop3.tls_listen,
        ),
        (
            "smtp.listen",
            Some(Role::Smtp),
            &configured.smtp.listen,
            &mut config.smtp.listen,
        ),
        (
            "smtp.submission_listen",
            Some(Role::Submission),
            &configured.smtp.submission_listen,
            &mut config.smtp.submission_listen,
        ),
        (
            "smtp.tls_listen",
            Some(Role::SubmissionTls),
            &configured.smtp.tls_listen,
            &mut config.smtp.tls_listen,
        ),
        (
            "web.listen",
            Some(web_role),
            &configured.web.listen,
            &mut config.web.listen,
        ),
        (
            "pop_before_smtp.policy_listen",
            None,
            &configured.pop_before_smtp.policy_listen,
            &mut config.pop_before_smtp.policy_listen,
        ),
        (
            "metrics.listen",
            None,
            &configured.metrics.listen,
            &mut config.metrics.listen,
        ),
    ];
    for (key, role, wanted, now) in kinds {
        if !now.is_empty() || wanted.is_empty() {
            continue;
        }
        warn!(
            key,
            addresses = ?wanted,
            "socket activation: no socket was passed for this configured listener; mailbagd binds it (add it to the socket unit to have systemd bind it)"
        );
        if key == "web.listen" {
            config.web.tls = configured.web.tls;
        }
        for addr in wanted {
            let mut addr = *addr;
            match role {
                Some(role) => listeners.push((role, bind_one(&mut addr, role.name())?)),
                None if key == "metrics.listen" => metrics.push(bind_one(&mut addr, METRICS_ROLE)?),
                None => policy.push(bind_one(&mut addr, POLICY_ROLE)?),
            }
            now.push(addr);
        }
    }
    Ok(())
}

/// After root is given up: the files a reload reads again (the configuration,
/// the passwd-file) were read as root at start-up; one the server's user cannot
/// read would make every reload fail, so it is said now, as an error.
fn warn_unreadable_for_reload(config: &Config) {
    let files = [
        ("configuration file", config.path()),
        ("[userdb] passwd_file", config.userdb.passwd_file.as_deref()),
    ];
    for (what, path) in files {
        let Some(path) = path else { continue };
        if let Err(e) = std::fs::File::open(path) {
            tracing::error!(
                file = %path.display(),
                error = %e,
                "{what} is not readable by [server] user: every reload (SIGHUP, or the passwd-file changing) will fail until it is"
            );
        }
    }
}

impl Server {
    /// Binds every listener, loads TLS material and opens the mail store. A
    /// listen address with port 0 is replaced in the context's configuration
    /// by the address bound.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Server::bind_with_resolver(config, None).await
    }

    /// Like [`Server::bind`], with the DNS resolver of the outbound engine given (tests:
    /// [`crate::outbound::mx::FakeResolver`]); `None` is the system's.
    ///
    /// Started by systemd socket activation (`LISTEN_FDS` for this
    /// process), the passed sockets are the listeners and no address is
    /// bound. With `[server] user` the process gives up root after the
    /// listeners are bound and the TLS key is read, before the mail store is
    /// opened.
    pub async fn bind_with_resolver(
        mut config: Config,
        resolver: Option<Arc<dyn Resolve>>,
    ) -> Result<Server, StartError> {
        // What a reload compares with: the configuration as loaded.
        let reloader = Arc::new(Reloader::new(&config));
        let passed = crate::service_manager::passed_listeners()
            .map_err(|e| StartError::Activation(e.to_string()))?;
        let (listeners, policy, metrics) = match passed {
            Some(p) => {
                info!(
                    sockets = p.len(),
                    "socket activation: serving the passed sockets"
                );
                take_passed(&mut config, p)?
            }
            None => bind_configured(&mut config)?,
        };
        let tls = match &config.tls {
            Some(t) => Some(load_acceptor(&t.cert_file, &t.key_file).map_err(ContextError::Tls)?),
            None => None,
        };
        if let Some(user) = &config.server.user {
            match crate::privileges::drop_to(user, config.server.group.as_deref())? {
                Dropped::Changed { uid, gid } => info!(user, uid, gid, "gave up root"),
                Dropped::AlreadyThatUser => {}
                Dropped::NotRoot { uid } => {
                    warn!(
                        user,
                        uid, "not started as root: serving as the user who started it"
                    )
                }
            }
            warn_unreadable_for_reload(&config);
        } else if nix::unistd::geteuid().is_root() {
            // Every Maildir file would be root's, mode 0600: another server
            // on the same Maildirs (Dovecot as `mail`) could not read them.
            warn!(
                "running as root without [server] user: the mail files made are root's; \
                 set [server] user (e.g. \"mail\") to give up root after binding"
            );
        }
        let ctx = Context::open_with_tls(config, tls)?;
        let config = &ctx.config();
        let lock = ctx.queue.lock_delivery().map_err(OutboundError::Queue)?;
        let queued = Arc::clone(&ctx.queued);
        let outbound = match resolver {
            Some(r) => Outbound::with_resolver(config, lock, queued, r)?,
            None => Outbound::new(config, lock, queued)?,
        };
        Ok(Server {
            ctx: Arc::new(ctx),
            outbound,
            listeners,
            policy,
            metrics,
            reloader,
        })
    }

    /// The bound addresses with their roles (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(Role, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(r, l)| l.local_addr().ok().map(|a| (*r, a)))
            .collect()
    }

    /// The context the services share (for tests and embedding).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The reloader of this server (`SIGHUP`; tests and embedding).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    /// SIGHUP reloads ([`crate::reload`]); with `NOTIFY_SOCKET` set the
    /// service manager is told `READY=1` once every listener is up,
    /// `RELOADING=1` around a reload and `STOPPING=1` at shutdown, and gets
    /// `WATCHDOG=1` when `WATCHDOG_USEC` asks for it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let tracker = TaskTracker::new();
        let notifier = Notifier::from_env();
        for w in self.ctx.config().warnings() {
            warn!("{w}");
        }
        // Installed before the listeners are announced (as the shutdown
        // handler below), so that a SIGHUP sent on the announcement reloads.
        let hangups = match tokio::signal::unix::signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot handle SIGHUP: no reload on signal");
                None
            }
        };
        // Poll the shutdown future once before announcing the listeners, so
        // that a signal handler it installs (SIGTERM) is in place before a
        // script or test that waits for the announcement can send a signal.
        let mut shutdown = std::pin::pin!(shutdown);
        let shutdown_early = tokio::select! {
            biased;
            () = &mut shutdown => true,
            () = std::future::ready(()) => false,
        };
        let policy_addrs = self.policy.iter().filter_map(|l| l.local_addr().ok());
        let metrics_addrs = self.metrics.iter().filter_map(|l| l.local_addr().ok());
        let announced = self
            .local_addrs()
            .into_iter()
            .map(|(role, addr)| (role.name(), addr))
            .chain(policy_addrs.map(|a| (POLICY_ROLE, a)))
            .chain(metrics_addrs.map(|a| (METRICS_ROLE, a)));
        info!(
            instance = %self.ctx.instance,
            "started: Received: ids of this process end in .<instance>"
        );
        for (role, addr) in announced {
            info!(role, %addr, "listening");
            // Machine-readable, for scripts and tests (port 0 picks a free
            // port). A stdout nobody reads any more (a closed pipe) must not
            // stop the server, so a failed write is ignored (`println!` would
            // panic).
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "mailbagd: listening {role} {addr}").and_then(|()| out.flush());
        }
        let ctx = &self.ctx;
        ctx.metrics
            .expect_listeners(self.listeners.len() + self.policy.len());
        let pop3: Arc<dyn Service> = Arc::new(ServeFn::new(Arc::clone(ctx), pop3::serve));
        let smtp: Arc<dyn Service> = Arc::new(ServeFn::new(Arc::clone(ctx), smtp::serve));
        let web: Arc<dyn Service> = Arc::new(Web::new(Arc::clone(ctx)));
        for (role, listener) in self.listeners {
            let service = if role.is_web() {
                Arc::clone(&web)
            } else if role.is_pop3() {
                Arc::clone(&pop3)
            } else {
                Arc::clone(&smtp)
            };
            tokio::spawn(accept_loop(
                Arc::clone(ctx),
                role,
                listener,
                tracker.clone(),
                service,
                ctx.metrics.listener_up(),
            ));
        }
        // Postfix asks these over its own connections; the answers come from
        // the same relay table as mailbagd's SMTP, in memory or in Redis
        // (pop-before-smtp's server).
        for listener in self.policy {
            let shutdown = ctx.shutdown.clone().cancelled_owned();
            let up = ctx.metrics.listener_up();
            let relay = ctx.relay_store.clone();
            tokio::spawn(async move {
                let _up = up;
                if let Err(e) = mailbag_pop_before_smtp::server::serve_until(
                    listener,
                    relay,
                    PolicyServerOptions::default(),
                    shutdown,
                )
                .await
                {
                    warn!(error = %e, "policy listener failed");
                }
            });
        }
        for listener in self.metrics {
            tokio::spawn(crate::metrics_page::serve(Arc::clone(ctx), listener));
        }
        // One command to the cluster's Redis at once: `redis_up` and the log say
        // whether it answers from the start, not at the first login.
        if let crate::relay_store::RelayBackend::Redis(redis) = &ctx.relay_store {
            let redis = Arc::clone(redis);
            let shutdown = ctx.shutdown.clone();
            let ping_interval = ctx.config().cluster.ping_interval;
            tokio::spawn(async move {
                if let Err(e) = redis.ping().await {
                    warn!(error = %e, "[cluster] redis does not answer at start-up: relaying gets 451 until it does");
                }
                redis.watch(ping_interval, shutdown).await;
            });
        }
        tracker.spawn(crate::reload::run(
            Arc::clone(ctx),
            Arc::clone(&self.reloader),
            hangups,
            notifier.clone(),
        ));
        tokio::spawn(notifier.clone().run_watchdog(ctx.shutdown.clone()));
        notifier.ready();
        tracker.spawn(crate::sweeper::run(Arc::clone(ctx)));
        tracker.spawn(crate::digest::run(Arc::clone(ctx)));
        // The outbound engine: its own tracker so that shutdown lets deliveries in
        // progress finish (within limits.shutdown_timeout) but starts no new ones.
        let outbound_tasks = TaskTracker::new();
        tracker.spawn(Arc::new(self.outbound).run(Arc::clone(ctx), outbound_tasks.clone()));

        if !shutdown_early {
            shutdown.await;
        }
        info!("shutting down: no new connections, finishing in-flight work");
        notifier.stopping();
        self.ctx.shutdown.cancel();
        tracker.close();
        outbound_tasks.close();
        let limit = self.ctx.config().limits.shutdown_timeout;
        let all = async {
            tracker.wait().await;
            outbound_tasks.wait().await;
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            // A delivery not yet committing now stores nothing; one committing finishes,
            // and its connection gets limits.shutdown_reply_grace to send the 250 (else
            // the client would send the message again: a duplicate).
            self.ctx.abandon.cancel();
            self.ctx.deliveries.close();
            let committing = self.ctx.deliveries.len();
            if tokio::time::timeout(limit, self.ctx.deliveries.wait())
                .await
                .is_err()
            {
                warn!(
                    deliveries = self.ctx.deliveries.len(),
                    "deliveries still running after a second shutdown timeout"
                );
            } else if committing > 0 {
                let grace = self.ctx.config().limits.shutdown_reply_grace;
                let _ = tokio::time::timeout(grace, tracker.wait()).await;
            }
            warn!(
                remaining = tracker.len(),
                committing, "shutdown timeout reached; closing remaining connections"
            );
        } else {
            info!("shutdown complete");
        }
        // One host's POP-before-SMTP logins, for the next start (Redis keeps its own).
        let config = self.ctx.config();
        if let Some(path) = config.relay_table_file() {
            match crate::relay_table_file::save(
                &self.ctx.relay,
                &path,
                std::time::Instant::now(),
                std::time::SystemTime::now(),
                |user| config.user(user).map(|u| u.credential.fingerprint()),
            ) {
                Ok(n) => info!(logins = n, "POP-before-SMTP logins kept for the next start"),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot keep the POP-before-SMTP logins");
                }
            }
        }
    }
}
