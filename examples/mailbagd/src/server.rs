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
use std::io;
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
use crate::web::Web;
use crate::{pop3, smtp};

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
}

/// A server with every listener bound.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<Context>,
    outbound: Outbound,
    listeners: Vec<(Role, TcpListener)>,
    /// Postfix policy delegation (`[pop_before_smtp] policy_listen`).
    policy: Vec<TcpListener>,
}

/// The name the policy listeners are announced with.
const POLICY_ROLE: &str = "policy";

impl Server {
    /// Binds every listener, loads TLS material and opens the mail store. A
    /// listen address with port 0 is replaced in the context's configuration
    /// by the address bound.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Server::bind_with_resolver(config, None).await
    }

    /// Like [`Server::bind`], with the DNS resolver of the outbound engine given (tests:
    /// [`crate::outbound::mx::FakeResolver`]); `None` is the system's.
    pub async fn bind_with_resolver(
        mut config: Config,
        resolver: Option<Arc<dyn Resolve>>,
    ) -> Result<Server, StartError> {
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
                let l = crate::listener::bind(*addr).map_err(|source| StartError::Bind {
                    addr: *addr,
                    role: role.name(),
                    source,
                })?;
                // Port 0 becomes the port bound: what the server tells clients
                // (the help page, autoconfiguration) is where it listens.
                if let Ok(bound) = l.local_addr() {
                    *addr = bound;
                }
                listeners.push((role, l));
            }
        }
        let mut policy = Vec::new();
        for addr in config.pop_before_smtp.policy_listen.iter_mut() {
            let l = crate::listener::bind(*addr).map_err(|source| StartError::Bind {
                addr: *addr,
                role: POLICY_ROLE,
                source,
            })?;
            if let Ok(bound) = l.local_addr() {
                *addr = bound;
            }
            policy.push(l);
        }
        let ctx = Context::open(config)?;
        let config = &ctx.config;
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
        let policy_addrs = self.policy.iter().filter_map(|l| l.local_addr().ok());
        let announced = self
            .local_addrs()
            .into_iter()
            .map(|(role, addr)| (role.name(), addr))
            .chain(policy_addrs.map(|a| (POLICY_ROLE, a)));
        for (role, addr) in announced {
            info!(role, %addr, "listening");
            // Machine-readable, for scripts and tests (port 0 picks a free port).
            println!("mailbagd: listening {role} {addr}");
        }
        let ctx = &self.ctx;
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
            ));
        }
        // Postfix asks these over its own connections; the answers come from
        // the same relay table as mailbagd's SMTP (pop-before-smtp's server).
        for listener in self.policy {
            let shutdown = ctx.shutdown.clone().cancelled_owned();
            tokio::spawn(mailbag_pop_before_smtp::server::serve_until(
                listener,
                ctx.relay.clone(),
                PolicyServerOptions::default(),
                shutdown,
            ));
        }
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
        self.ctx.shutdown.cancel();
        tracker.close();
        outbound_tasks.close();
        let limit = self.ctx.config.limits.shutdown_timeout;
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
