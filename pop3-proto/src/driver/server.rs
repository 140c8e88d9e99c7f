//! The server-side driver: runs a [`ServerSession`] over a tokio stream and
//! hands each [`Event`] to the application's [`ServerHandler`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};
use std::vec::Vec;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::write_within;
use crate::codec::BodyProgress;
use crate::session::{Event, ServerSession};

/// Now on tokio's clock (the one the timers sleep on, paused in tests), as
/// the `std` instant the session's deadlines take.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The read buffer a connection starts with, in octets: enough for any
/// command line, small for the thousands of connections that mostly wait;
/// it grows to [`ServeOptions::read_buffer`] when a read fills it.
pub const INITIAL_READ_BUFFER: usize = 512;

/// How [`serve`] reads and writes. `#[non_exhaustive]`: start from
/// [`ServeOptions::default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Most octets read from the stream per call. Default 4096. The
    /// buffer starts at [`INITIAL_READ_BUFFER`] octets (or this, if
    /// smaller), which is what an idle connection holds, and grows to this
    /// size the first time a read fills it.
    pub read_buffer: usize,
    /// How long one write may stay blocked, because the client stopped
    /// reading, before the connection is given up with
    /// [`io::ErrorKind::TimedOut`]. Default 60 s.
    pub write_timeout: Duration,
    /// Up to this many segments per message chunk,
    /// [`Exchange::send_message_chunk`] sends the chunk straight from the
    /// caller's buffer with one vectored write (one segment, plus two per line
    /// that starts with a dot); above it (a chunk of mostly dot lines) one
    /// copy into a buffer is cheaper than a long `writev` of tiny pieces,
    /// and the rest of the message is encoded by copying. Default 256.
    pub max_write_segments: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            read_buffer: 4096,
            write_timeout: Duration::from_secs(60),
            max_write_segments: 256,
        }
    }
}

/// How a connection served by [`serve`] ended (an I/O failure is the `Err`
/// of `serve` instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The session closed itself: QUIT (with its UPDATE), too many bad
    /// commands or failed logins.
    Closed,
    /// The client closed the connection; nothing was committed.
    ClientClosed,
    /// The autologout timer ran out (RFC 1939 section 3); nothing was
    /// committed.
    TimedOut,
    /// The shutdown token was cancelled: the client was told
    /// `-ERR [SYS/TEMP]` and nothing was committed.
    Shutdown,
}

/// The application's side of a POP3 connection: answers each [`Event`] on
/// the session, and runs the TLS handshake of STLS.
pub trait ServerHandler<S>: Send {
    /// Answers `event` through [`Exchange::session`] (`accept_login`,
    /// `maildrop_opened`, `commit_done`, ...); an [`Event::Retrieve`] is
    /// answered by sending the message with
    /// [`Exchange::send_message_chunk`] (or `message_failed`). Never called
    /// with [`Event::StartTls`]: the driver calls
    /// [`start_tls`](Self::start_tls). An `Err` ends the connection.
    fn handle(
        &mut self,
        event: Event,
        exchange: &mut Exchange<'_, S>,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Runs the server side of the TLS handshake on `stream` after STLS was
    /// accepted, and returns the stream that carries TLS (a type such as an
    /// enum of plain and TLS streams lets both be the same `S`). Only called
    /// when the session offered STLS (`ServerConfig::tls_available`); the
    /// default refuses.
    fn start_tls(&mut self, stream: S) -> impl Future<Output = io::Result<S>> + Send {
        drop(stream);
        async { Err(io::Error::other("STLS accepted without a TLS handshake")) }
    }
}

/// What a [`ServerHandler`] answers an event with: the session, and the
/// stream for the message a RETR or TOP sends.
#[derive(Debug)]
pub struct Exchange<'a, S> {
    session: &'a mut ServerSession,
    stream: &'a mut S,
    options: &'a ServeOptions,
    /// A chunk of this event's message was copied (bare LF, or too many
    /// segments): the rest of the message is copied too.
    copy_chunks: bool,
}

impl<S: AsyncWrite + Unpin + Send> Exchange<'_, S> {
    /// The session, to answer the event.
    pub fn session(&mut self) -> &mut ServerSession {
        self.session
    }

    /// Sends one chunk of the message an [`Event::Retrieve`] asked for: the
    /// session's pending output (the status line before the first chunk),
    /// then the chunk dot-stuffed without copying it when it needs few
    /// changes ([`ServerSession::message_segments`] and one vectored write).
    /// A message stored with bare LF line ends needs a change on every line,
    /// so a chunk whose first line end is a bare LF is encoded by copying
    /// instead ([`ServerSession::message_chunk`]), and so is every chunk of
    /// the message after one that was copied or that had more than
    /// [`ServeOptions::max_write_segments`] segments.
    /// After the last chunk (`last`, or TOP has its lines:
    /// [`BodyProgress::Done`]) the message is ended
    /// ([`ServerSession::message_end`]) and the terminator goes out in the
    /// same write: one write per small message. Stop calling it once it
    /// returned `Done` or was called with `last`.
    ///
    /// # Errors
    ///
    /// The write's error, [`io::ErrorKind::TimedOut`] after
    /// [`ServeOptions::write_timeout`], or [`io::ErrorKind::Other`] when the
    /// session is not retrieving a message.
    pub async fn send_message_chunk(
        &mut self,
        chunk: &[u8],
        last: bool,
    ) -> io::Result<BodyProgress> {
        let session = &mut *self.session;
        let mut segments: Vec<&[u8]> = Vec::new();
        // A message stored with bare LF (a Maildir written by Dovecot, say)
        // needs two segments per line: it is copied by the encoder instead,
        // which is much faster than collecting and joining the segments.
        self.copy_chunks |= first_line_end_is_bare(chunk);
        let progress = if self.copy_chunks {
            session.message_chunk(chunk)
        } else {
            session.message_segments(chunk, |seg| segments.push(seg))
        }
        .map_err(io::Error::other)?;
        // Output written so far goes before the segments; what message_end
        // adds (the terminator) after them.
        let before = session.output().len();
        if last || progress == BodyProgress::Done {
            session.message_end().map_err(io::Error::other)?;
        }
        let joined;
        if segments.len() > self.options.max_write_segments {
            joined = segments.concat();
            segments = std::vec![&joined];
            self.copy_chunks = true;
        }
        let output = session.output();
        let (head, tail) = output.split_at(before.min(output.len()));
        let pending = output.len();
        let mut slices: Vec<IoSlice<'_>> = core::iter::once(head)
            .chain(segments.iter().copied())
            .chain(core::iter::once(tail))
            .filter(|s| !s.is_empty())
            .map(IoSlice::new)
            .collect();
        let mut bufs = &mut slices[..];
        let limit = self.options.write_timeout;
        while !bufs.is_empty() {
            let n = write_within(limit, self.stream.write_vectored(bufs)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        write_within(limit, self.stream.flush()).await?;
        session.consume_output(pending);
        Ok(progress)
    }
}

/// Whether the first line end in `chunk` is a LF without a CR before it
/// (a LF first in the chunk counts: the octet before it is not known here).
/// Used as the sign of a message stored with bare LF line ends.
fn first_line_end_is_bare(chunk: &[u8]) -> bool {
    memchr::memchr(b'\n', chunk).is_some_and(|i| i == 0 || chunk.get(i - 1) != Some(&b'\r'))
}

/// Writes the session's output within `limit`.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut ServerSession,
    limit: Duration,
) -> io::Result<()> {
    let n = session.output().len();
    if n > 0 {
        write_within(limit, stream.write_all(session.output())).await?;
        session.consume_output(n);
        // A TLS stream may hold records back until flushed.
        write_within(limit, stream.flush()).await?;
    }
    Ok(())
}

/// Serves one POP3 connection until it ends: writes the greeting, reads
/// commands, hands each event to `handler`, writes the answers, runs the
/// STLS handshake through [`ServerHandler::start_tls`], applies the
/// session's autologout timer (restarted by each command answered, not by
/// input that completes no command), and answers `-ERR [SYS/TEMP]` when
/// `shutdown` is cancelled while the client is idle. Commands a client
/// pipelined are answered before the next read. The stream is shut down at
/// the end.
///
/// The handler keeps what it opened (a locked maildrop): when `serve`
/// returns without [`Ending::Closed`] after a QUIT, release it unchanged.
///
/// # Errors
///
/// A read or write failure, a write blocked for
/// [`ServeOptions::write_timeout`], or the handler's own error.
///
/// # Examples
///
/// A handler with one user and an empty maildrop, driven over an in-memory
/// stream:
///
/// ```
/// use std::io;
/// use mailbag_pop3_proto::driver::server::{serve, Ending, Exchange, ServerHandler, ServeOptions};
/// use mailbag_pop3_proto::session::{AuthFailure, Credentials, Event, ServerConfig, ServerSession};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use mailbag_pop3_proto::driver::CancellationToken;
///
/// struct OneUser;
///
/// impl<S: tokio::io::AsyncWrite + Unpin + Send> ServerHandler<S> for OneUser {
///     async fn handle(&mut self, event: Event, ex: &mut Exchange<'_, S>) -> io::Result<()> {
///         let s = ex.session();
///         let r = match event {
///             Event::Login(req) => match &req.credentials {
///                 Credentials::Password(p) if req.user.as_str() == "joe" && p.expose() == b"pw" => {
///                     s.accept_login()
///                 }
///                 _ => s.reject_login(AuthFailure::Credentials),
///             },
///             Event::OpenMaildrop { .. } => s.maildrop_opened(Vec::new()),
///             Event::Commit { .. } => s.commit_done(Ok(())),
///             _ => s.message_failed(),
///         };
///         r.map_err(io::Error::other)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (server_end, mut client) = tokio::io::duplex(4096);
/// let session = ServerSession::new(ServerConfig::default()).unwrap();
/// let server = tokio::spawn(async move {
///     serve(server_end, session, &mut OneUser, &ServeOptions::default(), &CancellationToken::new()).await
/// });
/// client.write_all(b"USER joe\r\nPASS pw\r\nSTAT\r\nQUIT\r\n").await.unwrap();
/// let mut transcript = String::new();
/// client.read_to_string(&mut transcript).await.unwrap();
/// assert!(transcript.contains("+OK 0 0\r\n"), "{transcript}");
/// assert_eq!(server.await.unwrap().unwrap(), Ending::Closed);
/// # });
/// ```
pub async fn serve<S, H>(
    stream: S,
    mut session: ServerSession,
    handler: &mut H,
    options: &ServeOptions,
    shutdown: &CancellationToken,
) -> io::Result<Ending>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: ServerHandler<S>,
{
    let mut stream_slot = Some(stream);
    let session = &mut session;
    let result: io::Result<Ending> = async {
        let lost = || io::Error::other("POP3 driver: stream lost in a TLS handshake");
        let wt = options.write_timeout;
        let full = options.read_buffer.max(1);
        let mut buf = std::vec![0u8; full.min(INITIAL_READ_BUFFER)];
        let mut last_activity = now();
        loop {
            // Commands already buffered in the session come before any read:
            // `next_event` stops while more than `max_pending_output` octets wait
            // to be written (a large UIDL or LIST, answered inside the session
            // without an event), so after a flush that wrote something the loop
            // asks again, and reads only when there was nothing to answer and
            // nothing to write.
            let mut answered = false;
            while let Some(event) = session.next_event() {
                answered = true;
                let stream = stream_slot.as_mut().ok_or_else(lost)?;
                if !matches!(event, Event::StartTls) {
                    let mut exchange = Exchange {
                        session: &mut *session,
                        stream,
                        options,
                        copy_chunks: false,
                    };
                    // Boxed for the event's length only: inline, the handler's future
                    // (as large as its largest event's state) would be part of every
                    // connection's task for its whole life, idle ones included (2 KiB
                    // more per idle connection in mailbagd, measured).
                    std::boxed::Box::pin(handler.handle(event, &mut exchange)).await?;
                }
                if session.awaiting_tls() {
                    flush(stream, session, wt).await?;
                    let plain = stream_slot.take().ok_or_else(lost)?;
                    stream_slot = Some(std::boxed::Box::pin(handler.start_tls(plain)).await?);
                    session.tls_established().map_err(io::Error::other)?;
                    last_activity = now();
                }
            }
            let stream = stream_slot.as_mut().ok_or_else(lost)?;
            let wrote = !session.output().is_empty();
            flush(stream, session, wt).await?;
            if session.is_closed() {
                return Ok(Ending::Closed);
            }
            if answered || wrote {
                // RFC 1939's autologout timer restarts with each command
                // answered, not with each read: input that completes no
                // command line (a line sent an octet at a time) does not
                // keep the session, or its maildrop lock, alive.
                last_activity = now();
                continue;
            }
            let deadline = session.deadline(last_activity).unwrap_or_else(now);
            let read = tokio::select! {
                () = shutdown.cancelled() => {
                    session.shutdown();
                    let _ = flush(stream, session, wt).await;
                    return Ok(Ending::Shutdown);
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    session.timed_out();
                    flush(stream, session, wt).await?;
                    return Ok(Ending::TimedOut);
                }
                r = stream.read(&mut buf) => r?,
            };
            if read == 0 {
                return Ok(Ending::ClientClosed);
            }
            session.feed(buf.get(..read).unwrap_or_default());
            if read == buf.len() && buf.len() < full {
                // More was waiting: read in larger steps from now on.
                buf.resize(full, 0);
            }
        }
    }
    .await;
    if let Some(mut s) = stream_slot {
        let _ = write_within(options.write_timeout, s.shutdown()).await;
    }
    result
}
