//! Listener setup, the accept loops, connection limits, and graceful shutdown.
//!
//! [`Server::bind`] binds every configured listener (so that a port that is
//! taken is reported before anything runs) and [`Server::run`] serves until
//! the shutdown future completes: then the listeners close, idle
//! connections are told to go away, in-flight work (a delivery being
//! stored, a POP3 QUIT being committed) is given `limits.shutdown_timeout`
//! to finish, and `run` returns.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mailbag_spam_tag::spamd::{SpamdClient, SpamdOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::limits::{ConnectionLimiter, ConnectionPermit};
use crate::outbound::{Outbound, OutboundError};
use crate::state::{State, StateError};
use crate::tls::{MaybeTls, TlsError, load_acceptor};

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// POP3 on a plain port (port-110 role), STLS when TLS is configured.
    Pop3,
    /// POP3 in implicit TLS (port-995 role).
    Pop3Tls,
    /// SMTP, port-25 role: local mail from anyone, relay after POP3 login.
    Smtp,
    /// Submission (port-587 role): every transaction needs an authorized client.
    Submission,
    /// Submission in implicit TLS (port-465 role).
    SubmissionTls,
    /// The self-service web page over plain HTTP (`[web] listen`).
    Web,
    /// The self-service web page over HTTPS (`[web] listen` with `tls = true`).
    WebTls,
}

impl Role {
    /// Short name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Pop3 => "pop3",
            Role::Pop3Tls => "pop3s",
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::SubmissionTls => "submissions",
            Role::Web => "http",
            Role::WebTls => "https",
        }
    }

    /// Is the TLS handshake done right after accept?
    pub fn implicit_tls(self) -> bool {
        matches!(self, Role::Pop3Tls | Role::SubmissionTls | Role::WebTls)
    }

    /// Is this a web page listener?
    pub fn is_web(self) -> bool {
        matches!(self, Role::Web | Role::WebTls)
    }

    /// Is this a POP3 listener?
    pub fn is_pop3(self) -> bool {
        matches!(self, Role::Pop3 | Role::Pop3Tls)
    }

    /// The line sent before closing a connection refused by a limit.
    fn refusal(self, hostname: &str) -> String {
        if self.is_pop3() {
            "-ERR [SYS/TEMP] Too many connections, try again later.\r\n".to_owned()
        } else {
            format!("421 4.7.0 {hostname} Too many connections, try again later\r\n")
        }
    }
}

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
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The mail store or another component could not be set up.
    #[error(transparent)]
    State(#[from] StateError),
    /// The outbound engine could not start (e.g. another mailbagd delivers this queue).
    #[error(transparent)]
    Outbound(#[from] OutboundError),
}

/// One accepted client connection, handed to a protocol driver.
#[derive(Debug)]
pub struct Connection {
    /// Connection id used in every log line of this connection.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's role.
    pub role: Role,
    /// The stream (already in TLS for implicit-TLS roles).
    pub stream: MaybeTls,
    _permit: ConnectionPermit,
}

/// Everything the connection drivers share.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<TlsAcceptor>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Mail store, relay table, spam scorer.
    pub state: State,
    /// spamd client when `spam.spamd` is configured (else the built-in scorer).
    pub spamd: Option<SpamdClient>,
    /// The outbound delivery engine (holds the relay queue's delivery lock).
    pub outbound: Option<Arc<Outbound>>,
    limiter: ConnectionLimiter,
    next_id: AtomicU64,
}

impl Shared {
    /// Takes a connection slot for a client (the `[limits]` connection
    /// limits, shared by every listener).
    pub(crate) fn acquire_connection(
        &self,
        ip: std::net::IpAddr,
    ) -> Result<ConnectionPermit, crate::limits::LimitExceeded> {
        self.limiter.try_acquire(ip)
    }

    /// The next connection id (for log lines).
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .field("state", &self.state)
            .field("spamd", &self.spamd)
            .field("outbound", &self.outbound.is_some())
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// A server with every listener bound.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(Role, TcpListener)>,
}

impl Server {
    /// Loads TLS material, opens the mail store and binds every listener.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Server::bind_with_resolver(config, None).await
    }

    /// Like [`Server::bind`], with the DNS resolver of the outbound engine given (tests:
    /// [`crate::outbound::mx::FakeResolver`]); `None` is the system's.
    pub async fn bind_with_resolver(
        config: Config,
        resolver: Option<Arc<dyn crate::outbound::mx::Resolve>>,
    ) -> Result<Server, StartError> {
        let tls = match &config.tls {
            Some(t) => Some(load_acceptor(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let state = State::new(&config)?;
        let lock = state
            .queue
            .lock_delivery()
            .map_err(|e| StartError::Outbound(OutboundError::Queue(e)))?;
        let outbound = Some(Arc::new(match resolver {
            Some(r) => Outbound::with_resolver(&config, lock, r)?,
            None => Outbound::new(&config, lock)?,
        }));
        let mut listeners = Vec::new();
        let web_role = if config.web.tls {
            Role::WebTls
        } else {
            Role::Web
        };
        let lists = [
            (Role::Pop3, &config.pop3.listen),
            (Role::Pop3Tls, &config.pop3.tls_listen),
            (Role::Smtp, &config.smtp.listen),
            (Role::Submission, &config.smtp.submission_listen),
            (Role::SubmissionTls, &config.smtp.tls_listen),
            (web_role, &config.web.listen),
        ];
        for (role, addrs) in lists {
            for addr in addrs {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: *addr,
                        role: role.name(),
                        source,
                    })?;
                listeners.push((role, l));
            }
        }
        let limiter = ConnectionLimiter::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let spamd = config.spam.spamd.map(|addr| {
            let mut opts = SpamdOptions::default();
            opts.addr = addr;
            SpamdClient::new(opts)
        });
        Ok(Server {
            shared: Arc::new(Shared {
                spamd,
                outbound,
                config,
                tls,
                shutdown: CancellationToken::new(),
                state,
                limiter,
                next_id: AtomicU64::new(1),
            }),
            listeners,
        })
    }

    /// The bound addresses with their roles (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(Role, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(r, l)| l.local_addr().ok().map(|a| (*r, a)))
            .collect()
    }

    /// Shared state (for tests and embedding).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let tracker = TaskTracker::new();
        // Poll the shutdown future once before announcing the listeners, so
        // that a signal handler it installs (SIGTERM) is in place before a
        // script or test that waits for the announcement can send a signal.
        let mut shutdown = std::pin::pin!(shutdown);
        let shutdown_early = tokio::select! {
            biased;
            () = &mut shutdown => true,
            () = std::future::ready(()) => false,
        };
        for (role, addr) in self.local_addrs() {
            info!(role = role.name(), %addr, "listening");
            // Machine-readable, for scripts and tests (port 0 picks a free port).
            println!("mailbagd: listening {} {addr}", role.name());
        }
        let web = Arc::new(crate::web::Web::new(Arc::clone(&self.shared)));
        for (role, listener) in self.listeners {
            let shared = Arc::clone(&self.shared);
            let t = tracker.clone();
            if role.is_web() {
                tokio::spawn(crate::web::accept_loop(Arc::clone(&web), role, listener, t));
            } else {
                tokio::spawn(accept_loop(shared, role, listener, t));
            }
        }
        tracker.spawn(crate::sweeper::run(Arc::clone(&self.shared)));
        // The outbound engine: its own tracker so that shutdown lets deliveries in
        // progress finish (within limits.shutdown_timeout) but starts no new ones.
        let outbound_tasks = TaskTracker::new();
        tracker.spawn(crate::outbound::run(
            Arc::clone(&self.shared),
            self.shared.shutdown.clone(),
            outbound_tasks.clone(),
        ));

        if !shutdown_early {
            shutdown.await;
        }
        info!("shutting down: no new connections, finishing in-flight work");
        self.shared.shutdown.cancel();
        tracker.close();
        outbound_tasks.close();
        let limit = self.shared.config.limits.shutdown_timeout;
        let all = async {
            tracker.wait().await;
            outbound_tasks.wait().await;
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!(
                remaining = tracker.len(),
                "shutdown timeout reached; closing remaining connections"
            );
        } else {
            info!("shutdown complete");
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, role: Role, listener: TcpListener, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                warn!(role = role.name(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("conn", id, role = role.name(), peer = %peer);
        // A closed tracker (shutdown) still runs the task; it just is not waited for.
        tracker.spawn(handle(Arc::clone(&shared), role, tcp, peer, id).instrument(span));
    }
    debug!(role = role.name(), "listener closed");
}

async fn handle(shared: Arc<Shared>, role: Role, tcp: TcpStream, peer: SocketAddr, id: u64) {
    let _ = tcp.set_nodelay(true);
    let permit = match shared.limiter.try_acquire(peer.ip()) {
        Ok(p) => p,
        Err(e) => {
            info!(reason = %e, "connection refused");
            let mut tcp = tcp;
            let line = role.refusal(&shared.config.hostname);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let _ = tcp.write_all(line.as_bytes()).await;
                let _ = tcp.shutdown().await;
            })
            .await;
            return;
        }
    };
    info!("connected");
    let mut stream = MaybeTls::Plain(tcp);
    if role.implicit_tls() {
        let Some(acceptor) = shared.tls.as_ref() else {
            return;
        };
        stream = match stream
            .upgrade(acceptor, shared.config.limits.tls_handshake_timeout)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                info!(error = %e, "TLS handshake failed");
                return;
            }
        };
    }
    let conn = Connection {
        id,
        peer,
        role,
        stream,
        _permit: permit,
    };
    let result = if role.is_pop3() {
        crate::pop3::serve(&shared, conn).await
    } else {
        crate::smtp::serve(&shared, conn).await
    };
    match result {
        Ok(()) => info!("closed"),
        Err(e) => info!(error = %e, "closed with error"),
    }
}
