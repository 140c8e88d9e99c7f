//! A small tokio policy server for Postfix `check_policy_service` (cargo feature
//! `policy-server`).
//!
//! This is runtime glue around the sans-IO [`policy`](crate::policy) module: it reads
//! bytes, feeds a [`PolicyDecoder`], asks a [`RelayStore`] (the
//! [`SharedRelayTable`](crate::SharedRelayTable) in memory, or a table several hosts share) for each
//! request, and writes the replies. A store that cannot answer gets
//! [`Decision::Unavailable`]'s `DEFER_IF_REJECT`: never `OK`. Connections are persistent (any number of requests);
//! a malformed request gets no answer: the server logs it and closes the connection,
//! as the protocol asks (Postfix then retries on a new connection, and in the end
//! applies `smtpd_policy_service_default_action`).
//!
//! Logs go through `tracing`: `info` for each authorized client (with the POP3 user,
//! for abuse tracing), `debug` for other decisions, `warn` for malformed requests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::policy::{Decision, PolicyDecoder, PolicyError, PolicyLimits};
use crate::store::RelayStore;

/// Default [`PolicyServerOptions::idle_timeout`]: 330 seconds, a little more than
/// Postfix's `smtpd_policy_service_max_idle` (300 s), so that Postfix closes idle
/// connections first.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(330);
/// Default [`PolicyServerOptions::write_timeout`]: 30 seconds.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`PolicyServerOptions::max_connections`]: 256.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Size of each socket read.
const READ_CHUNK: usize = 4096;

/// Options of the policy server.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mailbag_pop_before_smtp::server::PolicyServerOptions;
///
/// let options = PolicyServerOptions::default().with_idle_timeout(Duration::from_secs(60));
/// assert_eq!(options.max_connections, 256);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyServerOptions {
    /// Parser limits. Default [`PolicyLimits::default`].
    pub limits: PolicyLimits,
    /// How long a connection may stay silent (between or within requests) before
    /// the server closes it. Default [`DEFAULT_IDLE_TIMEOUT`] (330 s).
    pub idle_timeout: Duration,
    /// How long writing the replies may take. Default [`DEFAULT_WRITE_TIMEOUT`] (30 s).
    pub write_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen queue.
    /// Default [`DEFAULT_MAX_CONNECTIONS`] (256). Postfix opens one per `smtpd`
    /// process.
    pub max_connections: usize,
}

impl Default for PolicyServerOptions {
    fn default() -> Self {
        Self {
            limits: PolicyLimits::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl PolicyServerOptions {
    /// Sets [`limits`](Self::limits).
    pub fn with_limits(mut self, limits: PolicyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`write_timeout`](Self::write_timeout).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
}

/// Why a connection ended other than by the client closing it between requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A malformed or over-limit request: nothing was answered.
    #[error("malformed policy request: {0}")]
    Protocol(#[from] PolicyError),
    /// The client closed the connection in the middle of a request.
    #[error("connection closed in the middle of a request")]
    UnexpectedEof,
    /// The client stayed silent longer than the idle timeout.
    #[error("idle timeout")]
    IdleTimeout,
    /// Writing the replies took longer than the write timeout.
    #[error("write timeout")]
    WriteTimeout,
    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Serves one policy connection until the client closes it (`Ok(())`) or an error
/// ends it. On a malformed request nothing is written for it (replies to the valid
/// requests before it are written first) and the error is returned: drop the stream
/// to close the connection.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use mailbag_pop_before_smtp::SharedRelayTable;
/// use mailbag_pop_before_smtp::server::{serve_connection, PolicyServerOptions};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let table = SharedRelayTable::default();
/// table.record_login("192.0.2.1".parse()?, "joe", Instant::now());
/// let (mut postfix, server_side) = tokio::io::duplex(4096);
/// let server = tokio::spawn({
///     let table = table.clone();
///     async move { serve_connection(server_side, &table, &PolicyServerOptions::default()).await }
/// });
/// postfix.write_all(b"request=smtpd_access_policy\nclient_address=192.0.2.1\n\n").await?;
/// let mut reply = [0u8; 11];
/// postfix.read_exact(&mut reply).await?;
/// assert_eq!(&reply, b"action=OK\n\n");
/// drop(postfix);
/// assert!(server.await?.is_ok());
/// # Ok(())
/// # }
/// ```
pub async fn serve_connection<S, T>(
    mut stream: S,
    table: &T,
    options: &PolicyServerOptions,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: RelayStore + Sync,
{
    let mut decoder = PolicyDecoder::new(options.limits);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut replies = Vec::new();
    loop {
        let n = tokio::time::timeout(options.idle_timeout, stream.read(&mut chunk))
            .await
            .map_err(|_| ServerError::IdleTimeout)??;
        if n == 0 {
            return if decoder.buffered() == 0 {
                Ok(())
            } else {
                Err(ServerError::UnexpectedEof)
            };
        }
        decoder.feed(chunk.get(..n).unwrap_or_default());
        let mut failure = None;
        loop {
            match decoder.decode() {
                Ok(Some(request)) => {
                    let decision = match table.decide(&request, Instant::now()).await {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(error = %e, "pop-before-smtp: relay table unavailable");
                            Decision::Unavailable
                        }
                    };
                    log_decision(&request, &decision);
                    decision.action().encode_response(&mut replies);
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !replies.is_empty() {
            tokio::time::timeout(options.write_timeout, stream.write_all(&replies))
                .await
                .map_err(|_| ServerError::WriteTimeout)??;
            replies.clear();
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
}

fn log_decision(request: &crate::policy::PolicyRequest<'_>, decision: &Decision) {
    let state = request.protocol_state().map_or("?", |s| s.as_str());
    let recipient = request.recipient().unwrap_or("");
    match decision {
        Decision::Authorized(entry) => tracing::info!(
            client = %entry.address(),
            user = entry.user(),
            state,
            recipient,
            "pop-before-smtp: OK (authorized by POP3 login)"
        ),
        Decision::AuthorizedAddress(ip) => tracing::info!(
            client = %ip,
            state,
            recipient,
            "pop-before-smtp: OK (authorized by POP3 login)"
        ),
        Decision::NotAuthorized(ip) => {
            tracing::debug!(client = %ip, state, recipient, "pop-before-smtp: DUNNO")
        }
        Decision::NoClientAddress => {
            tracing::debug!(state, "pop-before-smtp: DUNNO (no client_address)")
        }
        Decision::Unavailable => {
            tracing::info!(
                state,
                recipient,
                "pop-before-smtp: DEFER_IF_REJECT (table unavailable)"
            )
        }
    }
}

/// Accepts policy connections on `listener` and serves each in its own task, until
/// `shutdown` completes; then stops accepting (connections in progress finish on
/// their own). Accept errors (e.g. too many open files) are logged and retried after
/// 100 ms.
///
/// # Examples
///
/// ```no_run
/// use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
/// use mailbag_pop_before_smtp::server::{serve_until, PolicyServerOptions};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let table = SharedRelayTable::new(RelayOptions::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:10040").await?;
/// serve_until(listener, table, PolicyServerOptions::default(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve_until<T>(
    listener: TcpListener,
    table: T,
    options: PolicyServerOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    T: RelayStore + Clone + Send + Sync + 'static,
{
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return Ok(()),
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return Ok(()),
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let table = table.clone();
                let options = Arc::clone(&options);
                tokio::spawn(async move {
                    run_connection(stream, peer, &table, &options).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// [`serve_until`] without a shutdown signal: serves forever (or until the task is
/// dropped).
pub async fn serve<T>(
    listener: TcpListener,
    table: T,
    options: PolicyServerOptions,
) -> io::Result<()>
where
    T: RelayStore + Clone + Send + Sync + 'static,
{
    serve_until(listener, table, options, std::future::pending()).await
}

async fn run_connection<T: RelayStore + Sync>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    table: &T,
    options: &PolicyServerOptions,
) {
    tracing::debug!(%peer, "policy connection opened");
    match serve_connection(stream, table, options).await {
        Ok(()) => tracing::debug!(%peer, "policy connection closed by the client"),
        Err(ServerError::Protocol(e)) => {
            tracing::warn!(%peer, error = %e, "malformed policy request: disconnecting")
        }
        Err(e) => tracing::info!(%peer, error = %e, "policy connection ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedRelayTable;
    use tokio::io::duplex;

    fn table() -> SharedRelayTable {
        let t = SharedRelayTable::default();
        t.record_login("127.0.0.2".parse().unwrap(), "joe", Instant::now());
        t
    }

    async fn run(input: &[u8], options: PolicyServerOptions) -> (Vec<u8>, Result<(), ServerError>) {
        let (mut client, server) = duplex(1 << 16);
        let table = table();
        let task = tokio::spawn(async move { serve_connection(server, &table, &options).await });
        // The server may close its end before reading everything (that is the point
        // of some tests), so write errors are expected here.
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        (out, task.await.unwrap())
    }

    #[tokio::test]
    async fn several_requests_on_one_connection() {
        let input = b"request=smtpd_access_policy\nclient_address=127.0.0.2\n\n\
request=smtpd_access_policy\nclient_address=127.0.0.3\n\n\
request=smtpd_access_policy\nclient_address=::ffff:127.0.0.2\n\n";
        let (out, result) = run(input, PolicyServerOptions::default()).await;
        assert_eq!(out, b"action=OK\n\naction=DUNNO\n\naction=OK\n\n");
        assert!(result.is_ok());
    }

    /// A shared table that is down.
    #[derive(Clone)]
    struct Down;

    #[derive(Debug, thiserror::Error)]
    #[error("store down")]
    struct DownError;

    impl RelayStore for Down {
        type Error = DownError;
        async fn record_login(
            &self,
            _: std::net::IpAddr,
            _: &str,
            _: Instant,
        ) -> Result<(), DownError> {
            Err(DownError)
        }
        async fn is_authorized(&self, _: std::net::IpAddr, _: Instant) -> Result<bool, DownError> {
            Err(DownError)
        }
    }

    #[tokio::test]
    async fn a_store_that_is_down_defers_and_never_permits() {
        let (mut client, server) = duplex(1 << 16);
        let task = tokio::spawn(async move {
            serve_connection(server, &Down, &PolicyServerOptions::default()).await
        });
        client
            .write_all(b"request=smtpd_access_policy\nclient_address=127.0.0.2\n\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(
            out,
            b"action=DEFER_IF_REJECT 4.3.0 Relay authorization temporarily unavailable\n\n"
        );
        assert!(task.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn malformed_request_gets_nothing_and_disconnects() {
        let input = b"request=smtpd_access_policy\nclient_address=127.0.0.2\n\n\
request=smtpd_access_policy\nthis is not an attribute\n\n\
request=smtpd_access_policy\nclient_address=127.0.0.2\n\n";
        let (out, result) = run(input, PolicyServerOptions::default()).await;
        // Only the first request is answered.
        assert_eq!(out, b"action=OK\n\n");
        assert!(matches!(
            result,
            Err(ServerError::Protocol(PolicyError::BadAttribute { line: 2 }))
        ));
    }

    #[tokio::test]
    async fn oversized_request_disconnects() {
        let options = PolicyServerOptions::default()
            .with_limits(PolicyLimits::default().with_max_line_len(64));
        let mut input = b"request=smtpd_access_policy\nhelo_name=".to_vec();
        input.extend(std::iter::repeat_n(b'h', 100_000));
        let (out, result) = run(&input, options).await;
        assert!(out.is_empty());
        assert!(matches!(
            result,
            Err(ServerError::Protocol(PolicyError::LineTooLong {
                limit: 64
            }))
        ));
    }

    #[tokio::test]
    async fn eof_mid_request_is_reported() {
        let (out, result) = run(
            b"request=smtpd_access_policy\n",
            PolicyServerOptions::default(),
        )
        .await;
        assert!(out.is_empty());
        assert!(matches!(result, Err(ServerError::UnexpectedEof)));
    }

    #[tokio::test]
    async fn idle_connection_times_out() {
        let (_client, server) = duplex(1024);
        let table = table();
        let options = PolicyServerOptions::default().with_idle_timeout(Duration::from_millis(50));
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            serve_connection(server, &table, &options),
        )
        .await
        .unwrap();
        assert!(matches!(result, Err(ServerError::IdleTimeout)));
    }

    #[tokio::test]
    async fn tcp_server_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            table(),
            PolicyServerOptions::default().with_max_connections(2),
            async {
                let _ = rx.await;
            },
        ));
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"request=smtpd_access_policy\nclient_address=127.0.0.2\n\n")
                .await
                .unwrap();
            conns.push(c);
        }
        // Two are served at once; the third waits until one closes.
        let mut reply = [0u8; 11];
        for c in conns.iter_mut().take(2) {
            tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut reply))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&reply, b"action=OK\n\n");
        }
        drop(conns.remove(0));
        let mut third = conns.pop().unwrap();
        tokio::time::timeout(Duration::from_secs(10), third.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&reply, b"action=OK\n\n");
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
