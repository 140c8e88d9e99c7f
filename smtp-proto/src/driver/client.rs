//! The client-side driver: runs a [`ClientSession`] over a tokio stream.

use std::future::Future;
use std::io;
use std::time::Duration;
use std::vec::Vec;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{flush, within};
use crate::client::{ClientEvent, ClientSession};

/// How a [`Client`] reads and writes. The reply timeouts are the session's
/// (`ClientOptions::timeouts`, RFC 5321 section 4.5.3.2). `#[non_exhaustive]`:
/// start from [`ClientIoOptions::default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIoOptions {
    /// Octets read from the stream per call. Default 4096.
    pub read_buffer: usize,
    /// Octets of message body read from the caller's reader per step of
    /// [`Client::send_body`]. Default 64 KiB.
    pub body_chunk: usize,
    /// How long one write may stay blocked. Default 3 minutes, RFC 5321's
    /// data block timeout.
    pub write_timeout: Duration,
}

impl Default for ClientIoOptions {
    fn default() -> Self {
        ClientIoOptions {
            read_buffer: 4096,
            body_chunk: 64 * 1024,
            write_timeout: Duration::from_secs(180),
        }
    }
}

/// An SMTP client connection: a [`ClientSession`] and the stream it runs
/// over. Pull [`ClientEvent`]s with [`Client::next_event`] and answer them on
/// [`Client::session`] (`send_mail`, `quit`), with [`Client::send_body`]
/// ([`ClientEvent::SendBody`]) and [`Client::start_tls`] ([`ClientEvent::StartTls`]).
/// A failed read or write, or a reply that does not come in time, closes
/// the session with a temporary outcome, reported by its events; the
/// driver's own methods fail only where the caller must know at once.
///
/// # Examples
///
/// Against a scripted server over an in-memory stream:
///
/// ```
/// use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
/// use mailbag_smtp_proto::client::{ClientOptions, ClientSession, ClientEvent, Status, Transaction};
/// use mailbag_smtp_proto::driver::client::{Client, ClientIoOptions};
/// use mailbag_smtp_proto::types::HeloName;
/// use tokio::io::AsyncWriteExt;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (stream, mut server) = tokio::io::duplex(4096);
/// server
///     .write_all(b"220 mx ESMTP\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n")
///     .await?;
/// let session = ClientSession::new(HeloName::try_from("me.example")?, ClientOptions::default());
/// let mut client = Client::new(stream, session, ClientIoOptions::default());
/// let (from, _) = parse_reverse_path(b"<a@me.example>")?;
/// let (to, _) = parse_forward_path(b"<b@mx.example>")?;
/// assert_eq!(client.next_event().await, Some(ClientEvent::Ready));
/// client.session().send_mail(&Transaction::new(from).recipient(to))?;
/// assert!(matches!(client.next_event().await, Some(ClientEvent::RecipientReply { .. })));
/// assert_eq!(client.next_event().await, Some(ClientEvent::SendBody));
/// client.send_body(&b"Subject: hi\r\n\r\n.dot\r\n"[..]).await?;
/// let Some(ClientEvent::TransactionComplete(result)) = client.next_event().await else { panic!() };
/// assert_eq!(result.recipients[0].status(), Status::Accepted);
/// assert_eq!(client.next_event().await, Some(ClientEvent::Ready)); // the next transaction, or QUIT
/// client.session().quit();
/// assert_eq!(client.next_event().await, Some(ClientEvent::Closed { error: None }));
/// assert_eq!(client.next_event().await, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Client<S> {
    stream: Option<S>,
    session: ClientSession,
    options: ClientIoOptions,
    buf: Vec<u8>,
    /// The reply count ([`ClientSession::replies_received`]) the current
    /// deadline was set at, and the deadline.
    clock: Option<(u64, tokio::time::Instant)>,
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
            clock: None,
        }
    }

    /// The session: start transactions, quit, read its state.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// The next event: writes what the session has to send, then reads
    /// (within the session's timeout for the reply it expects,
    /// [`ClientSession::timeout`]) until the session has an event. `None`
    /// when the session waits for the caller (after [`ClientEvent::Ready`]: a
    /// transaction or QUIT; after [`ClientEvent::StartTls`]: the handshake) or is
    /// closed and every event was taken.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        loop {
            if let Some(event) = self.session.next_event() {
                return Some(event);
            }
            let Some(stream) = self.stream.as_mut() else {
                if self.session.is_closed() {
                    return None;
                }
                self.session.connection_closed();
                continue;
            };
            let wrote = !self.session.output().is_empty();
            if flush(stream, &mut self.session, self.options.write_timeout)
                .await
                .is_err()
            {
                self.session.connection_closed();
                continue;
            }
            // No timeout: the session waits for the caller, not the server.
            let wait = self.session.timeout()?;
            // The whole reply within the timeout: its clock starts when the command is
            // written or the reply before it is complete, not at each octet read.
            let count = self.session.replies_received();
            let deadline = match self.clock {
                Some((c, d)) if c == count && !wrote => d,
                _ => {
                    let d = tokio::time::Instant::now() + wait;
                    self.clock = Some((count, d));
                    d
                }
            };
            match tokio::time::timeout_at(deadline, stream.read(&mut self.buf)).await {
                Err(_) => self.session.timed_out(),
                Ok(Ok(0) | Err(_)) => self.session.connection_closed(),
                Ok(Ok(n)) => self.session.feed(self.buf.get(..n).unwrap_or_default()),
            }
        }
    }

    /// Answers [`ClientEvent::SendBody`]: streams the message from `body` (its
    /// octets as they are; the session dot-stuffs them and ends the data),
    /// in chunks of [`ClientIoOptions::body_chunk`].
    ///
    /// # Errors
    ///
    /// A read of `body` or a write that failed or timed out (the session is
    /// then closed: [`ClientSession::connection_closed`]), or
    /// [`io::ErrorKind::Other`] when the session does not expect a body.
    pub async fn send_body(&mut self, mut body: impl AsyncRead + Unpin) -> io::Result<()> {
        let r = self.stream_body(&mut body).await;
        if r.is_err() && !self.session.is_closed() {
            self.session.connection_closed();
        }
        r
    }

    async fn stream_body(&mut self, body: &mut (impl AsyncRead + Unpin)) -> io::Result<()> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("SMTP client: no connection"))?;
        let wt = self.options.write_timeout;
        let mut chunk = std::vec![0u8; self.options.body_chunk.max(1)];
        loop {
            let n = body.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            self.session
                .send_body(chunk.get(..n).unwrap_or_default())
                .map_err(io::Error::other)?;
            flush(stream, &mut self.session, wt).await?;
        }
        self.session.end_body().map_err(io::Error::other)?;
        flush(stream, &mut self.session, wt).await
    }

    /// Answers [`ClientEvent::StartTls`]: runs `handshake` on the stream (the
    /// client side of TLS; the stream it returns carries TLS, so `S` is
    /// typically an enum such as `tokio_util::either::Either` of the plain
    /// and the TLS stream), then tells the session
    /// ([`ClientSession::tls_established`]), which sends EHLO again.
    ///
    /// # Errors
    ///
    /// The handshake's error; the connection is then gone and the session
    /// closed ([`ClientSession::connection_closed`]).
    pub async fn start_tls<F, Fut>(&mut self, handshake: F) -> io::Result<()>
    where
        F: FnOnce(S) -> Fut,
        Fut: Future<Output = io::Result<S>>,
    {
        let Some(mut stream) = self.stream.take() else {
            return Err(io::Error::other("SMTP client: no connection"));
        };
        let result = match flush(&mut stream, &mut self.session, self.options.write_timeout).await {
            Ok(()) => handshake(stream).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(tls) => {
                self.stream = Some(tls);
                self.session.tls_established();
                Ok(())
            }
            Err(e) => {
                self.session.connection_closed();
                Err(e)
            }
        }
    }

    /// Writes what the session still has to send (the QUIT after the last
    /// event) and shuts the stream down.
    pub async fn close(mut self) {
        if let Some(mut stream) = self.stream.take() {
            let wt = self.options.write_timeout;
            let _ = flush(&mut stream, &mut self.session, wt).await;
            let _ = within(wt, stream.shutdown()).await;
        }
    }
}
