//! tokio drivers (feature `tokio`): the sans-IO sessions run over any
//! `AsyncRead + AsyncWrite` stream.
//!
//! - [`server::serve`] runs a [`ServerSession`](crate::session::ServerSession)
//!   and hands each event to the application's
//!   [`ServerHandler`](server::ServerHandler): reads, pipelined commands
//!   answered in order, the autologout timer, a write deadline, STLS through
//!   the handler's handshake, and a graceful shutdown.
//! - [`client::Client`] runs a [`ClientSession`](crate::client::ClientSession):
//!   queue commands, await events; STLS through a handshake callback.
//!
//! A stream that may turn into TLS (STLS) is one type before and after the
//! handshake: an enum of the plain and the TLS stream, such as
//! `tokio_util::either::Either`. The drivers add no protocol rule of their
//! own: every answer comes from the sessions.

pub mod client;
pub mod server;

/// The shutdown signal [`server::serve`] takes, re-exported so that an embedder
/// needs no `tokio-util` dependency of its own (nor to keep its version in step).
pub use tokio_util::sync::CancellationToken;

use std::future::Future;
use std::io;
use std::time::Duration;

/// Runs one write with the deadline `limit`: past it the write fails with
/// [`io::ErrorKind::TimedOut`] (a peer that stopped reading would otherwise
/// hold the connection forever).
async fn write_within<T>(
    limit: Duration,
    write: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            std::format!("write timed out after {limit:?}: the peer is not reading"),
        )),
    }
}
