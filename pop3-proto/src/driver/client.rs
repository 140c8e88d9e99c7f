//! The client-side driver: runs a [`ClientSession`] over a tokio stream.

use std::future::Future;
use std::io;
use std::time::Duration;
use std::vec::Vec;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::write_within;
use crate::client::{ClientEvent, ClientSession};

/// How a [`Client`] reads and writes. `#[non_exhaustive]`: start from
/// [`ClientIoOptions::default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIoOptions {
    /// Octets read from the stream per call. Default 4096.
    pub read_buffer: usize,
    /// How long to wait for the server's next octets while a reply is
    /// expected before the connection is given up. Default 10 minutes, the
    /// server's own autologout timer (RFC 1939 section 3).
    pub read_timeout: Duration,
    /// How long one write may stay blocked. Default 60 s.
    pub write_timeout: Duration,
}

impl Default for ClientIoOptions {
    fn default() -> Self {
        ClientIoOptions {
            read_buffer: 4096,
            read_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// A POP3 client connection: a [`ClientSession`] and the stream it runs
/// over. Queue commands on [`Client::session`], then pull results with
/// [`Client::next_event`], which writes what was queued and reads what it
/// needs.
///
/// # Examples
///
/// Against an in-memory server that answers a scripted exchange:
///
/// ```
/// use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
/// use mailbag_pop3_proto::driver::client::{Client, ClientIoOptions};
/// use tokio::io::AsyncWriteExt;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (stream, mut server) = tokio::io::duplex(4096);
/// server
///     .write_all(b"+OK ready\r\n+OK\r\n+OK logged in\r\n+OK 1 5\r\n+OK bye\r\n")
///     .await?;
/// let mut client = Client::new(stream, ClientSession::new(ClientOptions::default()), ClientIoOptions::default());
/// client.session().login_user_pass("joe", "secret")?;
/// client.session().stat()?;
/// client.session().quit()?;
/// assert!(matches!(client.next_event().await?, Some(ClientEvent::Greeting { .. })));
/// assert_eq!(client.next_event().await?, Some(ClientEvent::LoggedIn));
/// assert_eq!(client.next_event().await?, Some(ClientEvent::Stat { count: 1, size: 5 }));
/// assert_eq!(client.next_event().await?, Some(ClientEvent::Closed));
/// assert_eq!(client.next_event().await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Client<S> {
    stream: Option<S>,
    session: ClientSession,
    options: ClientIoOptions,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client for a connection whose greeting has not been read yet.
    pub fn new(stream: S, session: ClientSession, options: ClientIoOptions) -> Self {
        let buf = std::vec![0u8; options.read_buffer.max(1)];
        Client {
            stream: Some(stream),
            session,
            options,
            buf,
        }
    }

    /// The session: queue commands on it, read its state.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// The next event: writes every queued command, then reads until the
    /// session has an event. `Ok(None)` once the session is closed and every
    /// event was taken. After [`ClientEvent::TlsReady`], call
    /// [`start_tls`](Self::start_tls) before asking again.
    ///
    /// # Errors
    ///
    /// A read or write failure, [`io::ErrorKind::TimedOut`] when the server
    /// is silent for [`ClientIoOptions::read_timeout`] or a write blocks for
    /// [`ClientIoOptions::write_timeout`], [`io::ErrorKind::Other`] when a
    /// TLS handshake is due. The session is then closed
    /// ([`ClientSession::connection_closed`]), and its events (an error for
    /// each command without an answer, then `Closed`) are still delivered.
    pub async fn next_event(&mut self) -> io::Result<Option<ClientEvent>> {
        loop {
            if let Some(event) = self.session.next_event() {
                return Ok(Some(event));
            }
            if self.session.is_closed() {
                return Ok(None);
            }
            if self.session.awaiting_tls() {
                return Err(io::Error::other(
                    "POP3 client: STLS accepted; call start_tls",
                ));
            }
            if let Err(e) = self.exchange().await {
                self.session.connection_closed();
                return Err(e);
            }
        }
    }

    /// Writes the pending output, then reads once.
    async fn exchange(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::other("POP3 client: the TLS handshake failed"));
        };
        let out = self.session.output();
        if !out.is_empty() {
            let n = out.len();
            write_within(self.options.write_timeout, stream.write_all(out)).await?;
            self.session.consume_output(n);
            write_within(self.options.write_timeout, stream.flush()).await?;
        }
        let read = tokio::time::timeout(self.options.read_timeout, stream.read(&mut self.buf))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    std::format!("no answer within {:?}", self.options.read_timeout),
                )
            })??;
        if read == 0 {
            self.session.connection_closed();
        } else {
            self.session.feed(self.buf.get(..read).unwrap_or_default());
        }
        Ok(())
    }

    /// After [`ClientEvent::TlsReady`]: writes what is pending, runs
    /// `handshake` on the stream (the client side of TLS; the stream it
    /// returns carries TLS, so `S` is typically an enum such as
    /// `tokio_util::either::Either` of the plain and the TLS stream), and
    /// tells the session ([`ClientSession::tls_established`]).
    ///
    /// # Errors
    ///
    /// The handshake's error (the connection is then gone and the session
    /// closed), or [`io::ErrorKind::Other`] when no STLS was accepted.
    pub async fn start_tls<F, Fut>(&mut self, handshake: F) -> io::Result<()>
    where
        F: FnOnce(S) -> Fut,
        Fut: Future<Output = io::Result<S>>,
    {
        if !self.session.awaiting_tls() {
            return Err(io::Error::other("POP3 client: no STLS was accepted"));
        }
        let Some(mut stream) = self.stream.take() else {
            return Err(io::Error::other("POP3 client: the TLS handshake failed"));
        };
        let out = self.session.output();
        let n = out.len();
        write_within(self.options.write_timeout, stream.write_all(out)).await?;
        self.session.consume_output(n);
        match handshake(stream).await {
            Ok(tls) => {
                self.stream = Some(tls);
                self.session.tls_established().map_err(io::Error::other)
            }
            Err(e) => {
                self.session.connection_closed();
                Err(e)
            }
        }
    }

    /// The stream and the session, for the caller to go on by hand.
    pub fn into_parts(self) -> (Option<S>, ClientSession) {
        (self.stream, self.session)
    }
}
