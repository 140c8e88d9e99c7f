//! tokio drivers (feature `tokio`): the sans-IO sessions run over any
//! `AsyncRead + AsyncWrite` stream.
//!
//! - [`server::serve`] runs a [`ServerSession`](crate::session::ServerSession)
//!   and hands each event to the application's
//!   [`ServerHandler`](server::ServerHandler), which returns its
//!   [`Answer`](server::Answer): reads, pipelined commands answered in
//!   order, the idle timeout, a write deadline, STARTTLS through the
//!   handler's handshake, and a graceful shutdown that never cuts a message
//!   in transfer.
//! - [`client::Client`] runs a [`ClientSession`](crate::client::ClientSession):
//!   the reply timeouts of RFC 5321 section 4.5.3.2, body streaming from any
//!   `AsyncRead`, STARTTLS through a handshake callback.
//!
//! A stream that may turn into TLS (STARTTLS) is one type before and after
//! the handshake: an enum of the plain and the TLS stream, such as
//! `tokio_util::either::Either`. The drivers add no protocol rule of their
//! own: every reply comes from the sessions.

pub mod client;
pub mod server;

/// The shutdown signal [`server::serve`] takes, re-exported so that an embedder
/// needs no `tokio-util` dependency of its own (nor to keep its version in step).
pub use tokio_util::sync::CancellationToken;

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes `bytes` and flushes (a TLS stream may hold records back until
/// flushed), each step with the deadline `limit`: past it the write fails
/// with [`io::ErrorKind::TimedOut`], as a peer that stopped reading would
/// otherwise hold the connection forever.
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    if !bytes.is_empty() {
        within(limit, stream.write_all(bytes)).await?;
        within(limit, stream.flush()).await?;
    }
    Ok(())
}

/// What both sessions have to send: their output buffer.
trait Output {
    fn output(&self) -> &[u8];
    fn consume_output(&mut self, n: usize);
}

impl Output for crate::session::ServerSession {
    fn output(&self) -> &[u8] {
        self.output()
    }
    fn consume_output(&mut self, n: usize) {
        self.consume_output(n);
    }
}

impl Output for crate::client::ClientSession {
    fn output(&self) -> &[u8] {
        self.output()
    }
    fn consume_output(&mut self, n: usize) {
        self.consume_output(n);
    }
}

/// Writes a session's pending output ([`send`]) and consumes it.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut impl Output,
    limit: Duration,
) -> io::Result<()> {
    let n = session.output().len();
    send(stream, session.output(), limit).await?;
    session.consume_output(n);
    Ok(())
}

/// Runs one write step with the deadline `limit`.
async fn within<T>(limit: Duration, step: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            std::format!("write timed out after {limit:?}: the peer is not reading"),
        ))
    })
}
