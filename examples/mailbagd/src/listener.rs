//! Listeners and the one accept loop every listener runs, mail and web
//! alike: a [`Role`] says what a listener serves, [`accept_loop`] takes each
//! client, applies the connection limits (refusing with the role's own
//! "too many connections" answer), does the TLS handshake of the implicit-TLS
//! roles, and hands a ready [`Connection`] to the role's [`Service`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::context::Context;
use crate::limits::{ConnectionClass, ConnectionPermit};
use crate::metrics::ListenerUp;
use crate::tls::MaybeTls;

/// How long the refusal of a connection over a limit may take to send.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Pending connections the kernel queues for a listener before `accept`
/// (the `listen(2)` backlog; tokio's own default).
const LISTEN_BACKLOG: i32 = 1024;

/// After a failed `accept` (EMFILE and friends), wait this long instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a listening socket on `addr`. IPv6 sockets are IPv6-only
/// (`IPV6_V6ONLY`), whatever the system default (`net.ipv6.bindv6only`), so
/// that `0.0.0.0:110` and `[::]:110` can both be listed: without it the
/// second bind fails with "address in use" on Linux. `SO_REUSEADDR` lets a
/// restarted server bind while old connections are in `TIME_WAIT`.
///
/// # Errors
///
/// The I/O error of creating, binding or listening.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// A stream whose writes have a deadline, for code that writes through
/// `AsyncWrite` itself (hyper, for the web page): a write, flush or shutdown
/// that stays pending for `limit` (`[limits] write_timeout`) without any
/// progress fails with [`io::ErrorKind::TimedOut`] (logged), and the
/// connection is closed. Reads pass through unchanged.
#[derive(Debug)]
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner` with the write deadline `limit`.
    pub fn new(inner: S, limit: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            limit,
            timer: None,
        }
    }

    /// A finished write (or error) stops the clock; a pending one starts it
    /// (once) and fails when it runs out.
    fn check<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.timer = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            self.timer = None;
            warn!(timeout = ?limit, "write timed out: the client is not reading; closing");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("write timed out after {limit:?}"),
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

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
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::Pop3,
        Role::Pop3Tls,
        Role::Smtp,
        Role::Submission,
        Role::SubmissionTls,
        Role::Web,
        Role::WebTls,
    ];

    /// The role of a well-known port: 110 POP3, 995 POP3 over TLS, 25
    /// SMTP, 587 submission, 465 submission over TLS, 443 the web page over
    /// HTTPS.
    pub fn for_well_known_port(port: u16) -> Option<Role> {
        match port {
            110 => Some(Role::Pop3),
            995 => Some(Role::Pop3Tls),
            25 => Some(Role::Smtp),
            587 => Some(Role::Submission),
            465 => Some(Role::SubmissionTls),
            443 => Some(Role::WebTls),
            _ => None,
        }
    }

    /// Short name used in logs, in the announcement `mailbagd: listening
    /// ROLE ADDR`, and as a socket's `FileDescriptorName=` under socket
    /// activation.
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

    /// Which connection limit of `[limits] max_connections` the role counts against.
    pub fn class(self) -> ConnectionClass {
        match self {
            Role::Pop3 | Role::Pop3Tls => ConnectionClass::Pop3,
            Role::Smtp => ConnectionClass::Smtp,
            Role::Submission | Role::SubmissionTls => ConnectionClass::Submission,
            Role::Web | Role::WebTls => ConnectionClass::Web,
        }
    }

    /// Is this a web page listener?
    pub fn is_web(self) -> bool {
        matches!(self, Role::Web | Role::WebTls)
    }

    /// Is this a POP3 listener?
    pub fn is_pop3(self) -> bool {
        matches!(self, Role::Pop3 | Role::Pop3Tls)
    }

    /// Is this a submission listener (every transaction needs an authorized client)?
    pub fn is_submission(self) -> bool {
        matches!(self, Role::Submission | Role::SubmissionTls)
    }

    /// What a client refused by a connection limit is sent before the close,
    /// in the role's protocol; `None` when nothing can be said (implicit
    /// TLS: the handshake has not happened).
    fn refusal(self, hostname: &str) -> Option<Vec<u8>> {
        if self.implicit_tls() {
            return None;
        }
        Some(match self {
            Role::Pop3 | Role::Pop3Tls => {
                b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n".to_vec()
            }
            Role::Web | Role::WebTls => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 10\r\nConnection: close\r\n\r\n".to_vec(),
            _ => format!("421 4.7.0 {hostname} Too many connections, try again later\r\n")
                .into_bytes(),
        })
    }
}

/// One accepted client connection, handed to a [`Service`].
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

/// What serves the connections of a listener: the POP3 driver, the SMTP
/// driver, the web page.
pub trait Service: Send + Sync + 'static {
    /// Serves one connection until it closes.
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, io::Result<()>>;
}

/// A [`Service`] made of an async function over the context (the POP3 and SMTP
/// drivers: `ServeFn::new(ctx, pop3::serve)`).
pub struct ServeFn<F> {
    ctx: Arc<Context>,
    serve: F,
}

impl<F> ServeFn<F> {
    /// The service that runs `serve(ctx, connection)` for each connection.
    pub fn new(ctx: Arc<Context>, serve: F) -> Self {
        ServeFn { ctx, serve }
    }
}

impl<F> std::fmt::Debug for ServeFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeFn").finish_non_exhaustive()
    }
}

impl<F, Fut> Service for ServeFn<F>
where
    F: Fn(Arc<Context>, Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, io::Result<()>> {
        Box::pin((self.serve)(Arc::clone(&self.ctx), conn))
    }
}

/// Accepts clients on `listener` until the server shuts down, each served by
/// `service` in a task of `tracker` (so that shutdown can wait for them).
/// `up` counts the listener for `/health` while the loop runs: the caller
/// makes it before spawning the loop, so that `/health` is right as soon as
/// the server says it listens.
pub async fn accept_loop(
    ctx: Arc<Context>,
    role: Role,
    listener: TcpListener,
    tracker: TaskTracker,
    service: Arc<dyn Service>,
    up: ListenerUp,
) {
    let _up = up;
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            // An IPv4 client on a dual-stack socket (`[::]` with
            // `BindIPv6Only=both`) is its IPv4 address everywhere: limits,
            // the relay table, logs and `Received:`.
            Ok((tcp, peer)) => (tcp, SocketAddr::new(peer.ip().to_canonical(), peer.port())),
            Err(e) => {
                warn!(role = role.name(), error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let id = ctx.next_connection_id();
        let span = info_span!("conn", id, role = role.name(), peer = %peer, client = tracing::field::Empty);
        // A closed tracker (shutdown) still runs the task; it just is not waited for.
        tracker.spawn(
            admit(Arc::clone(&ctx), role, tcp, peer, id, Arc::clone(&service)).instrument(span),
        );
    }
    debug!(role = role.name(), "listener closed");
}

/// Limits and implicit TLS, then the service.
async fn admit(
    ctx: Arc<Context>,
    role: Role,
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    service: Arc<dyn Service>,
) {
    let _ = tcp.set_nodelay(true);
    let _open = ctx.metrics.connection(role.name());
    // Behind a trusted balancer the PROXY header names the client; before TLS.
    let mut tcp = tcp;
    let proxy = ctx.config().proxy.clone();
    let peer = if proxy.is_trusted(peer.ip()) {
        match crate::proxy::read_header(&mut tcp, proxy.header_timeout).await {
            Ok(header) => match header.source() {
                Some(client) => {
                    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
                    tracing::Span::current().record("client", tracing::field::display(client));
                    client
                }
                // A health check (LOCAL): the balancer itself, never authorized to relay.
                None => {
                    if let mailbag_pop_before_smtp::proxy_header::ProxyHeader::Proxied {
                        source,
                        ..
                    } = header
                    {
                        info!(%source, "PROXY header names a source no client has: the balancer's address is kept");
                    }
                    peer
                }
            },
            Err(e) => {
                info!(error = %e, "trusted connection without a valid PROXY header: closed");
                return;
            }
        }
    } else {
        peer
    };
    let permit = match ctx.acquire_connection(role.class(), peer.ip()) {
        Ok(p) => p,
        Err(e) => {
            info!(reason = %e, "connection refused");
            ctx.metrics.connection_refused(
                role.name(),
                match e {
                    crate::limits::LimitExceeded::PerAddress => "per_address",
                    _ => "total",
                },
            );
            if let Some(line) = role.refusal(ctx.config().hostname.as_str()) {
                let mut tcp = tcp;
                let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
                    let _ = tcp.write_all(&line).await;
                    let _ = tcp.shutdown().await;
                })
                .await;
            }
            return;
        }
    };
    info!("connected");
    let mut stream = MaybeTls::Plain(tcp);
    if role.implicit_tls() {
        let live = ctx.live();
        let Some(acceptor) = live.tls.as_ref() else {
            // Not reached: a reload that would remove `[tls]` under a running TLS
            // listener is refused. Said, in case.
            warn!("implicit-TLS connection without a TLS configuration: closed");
            return;
        };
        stream = match stream
            .upgrade(
                acceptor,
                live.config.limits.tls_handshake_timeout,
                &ctx.shutdown,
            )
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
    match service.serve(conn).await {
        Ok(()) => info!("closed"),
        Err(e) => info!(error = %e, "closed with error"),
    }
}
