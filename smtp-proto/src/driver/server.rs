//! The server-side driver: runs a [`ServerSession`] over a tokio stream and
//! hands each [`Event`] to the application's [`ServerHandler`].

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};
use std::vec::Vec;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{flush, within};
use crate::session::{Event, Refusal, ServerSession};
use crate::types::Reply;

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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            read_buffer: 4096,
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// How a connection served by [`serve`] ended (an I/O failure is the `Err`
/// of `serve` instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The session closed itself: QUIT, too many bad commands, a `421`.
    Closed,
    /// The client closed the connection.
    ClientClosed,
    /// The client sent no complete command for `ServerConfig::idle_timeout`
    /// after the last reply (or, inside a message, nothing at all for that
    /// long): answered `421 4.4.2`.
    TimedOut,
    /// The shutdown token was cancelled: answered `421` between messages (a
    /// message in transfer is received and answered first).
    Shutdown,
}

/// The application's answer to an [`Event`], applied to the session by the
/// driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// [`ServerSession::accept`]: the event's default positive reply.
    Accept,
    /// [`ServerSession::reject`] with this `4xx` or `5xx` reply.
    Reject(Reply<'static>),
    /// [`ServerSession::auth_challenge`]: a `334` with these octets (base64
    /// encoded by the session), for [`Event::Auth`] and [`Event::AuthResponse`].
    Challenge(Vec<u8>),
    /// [`ServerSession::respond_lmtp`]: one reply per accepted recipient, for
    /// [`Event::MessageComplete`] in LMTP.
    Lmtp(Vec<Reply<'static>>),
    /// Nothing: for the events that only inform (`BodyChunk`, `Reset`,
    /// `MessageAborted`, `AuthCancelled`, `Quit`).
    None,
}

/// The application's side of an SMTP connection: answers each [`Event`], and
/// runs the TLS handshake of STARTTLS.
pub trait ServerHandler<S>: Send {
    /// Decides `event`. The event borrows the session's input, so the answer
    /// is returned, not written: the driver applies it once this future is
    /// done. [`Event::MessageComplete`] is answered after the message is
    /// stored durably: the `250` goes out only then. An `Err` ends the
    /// connection without a reply.
    fn handle(&mut self, event: Event<'_>) -> impl Future<Output = io::Result<Answer>> + Send;

    /// Told of each command the session refused on its own, without an event
    /// ([`ServerSession::take_refusals`]: a syntax error, a command out of
    /// sequence, the recipient or size limit), after the events of each read
    /// are answered, oldest first: for logs and metrics, which would
    /// otherwise see only the handler's own rejections. The default ignores
    /// them.
    fn refused(&mut self, refusal: Refusal) {
        let _ = refusal;
    }

    /// Runs the server side of the TLS handshake on `stream` after STARTTLS
    /// was accepted, and returns the stream that carries TLS (a type such as
    /// an enum of plain and TLS streams lets both be the same `S`). Only
    /// called when the session offered STARTTLS (`ServerConfig::starttls`);
    /// the default refuses.
    fn start_tls(&mut self, stream: S) -> impl Future<Output = io::Result<S>> + Send {
        drop(stream);
        async {
            Err(io::Error::other(
                "STARTTLS accepted without a TLS handshake",
            ))
        }
    }
}

/// When the session has no deadline of its own between reads (it always has
/// one while it waits for the client), the driver waits this long.
const NO_DEADLINE_WAIT: Duration = Duration::from_secs(300);

/// Serves one SMTP connection until it ends: writes the greeting, reads
/// commands and message data, hands each event to `handler` and applies its
/// [`Answer`], writes the replies (the pipelined ones together), runs the
/// STARTTLS handshake through [`ServerHandler::start_tls`], applies the
/// session's idle timeout, and closes with `421` when `shutdown` is
/// cancelled: at once between messages, after the answer to a message in
/// transfer. The stream is shut down at the end.
///
/// # Errors
///
/// A read or write failure, a write blocked for
/// [`ServeOptions::write_timeout`], or the handler's own error.
///
/// # Examples
///
/// A handler that takes mail for one address, driven over an in-memory
/// stream:
///
/// ```
/// use std::io;
/// use mailbag_smtp_proto::address::ForwardPath;
/// use mailbag_smtp_proto::driver::server::{serve, Answer, Ending, ServeOptions, ServerHandler};
/// use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
/// use mailbag_smtp_proto::types::{EnhancedStatusCode, Reply, ReplyCode};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use mailbag_smtp_proto::driver::CancellationToken;
///
/// #[derive(Default)]
/// struct Inbox(Vec<u8>);
///
/// impl<S: Send> ServerHandler<S> for Inbox {
///     async fn handle(&mut self, event: Event<'_>) -> io::Result<Answer> {
///         Ok(match event {
///             Event::RcptTo { to: ForwardPath::Path(p), .. }
///                 if p.mailbox().to_string() != "bob@example.net" =>
///             {
///                 let code = ReplyCode::try_from(550).map_err(io::Error::other)?;
///                 let status = EnhancedStatusCode::new(5, 1, 1).map_err(io::Error::other)?;
///                 Answer::Reject(Reply::new(code, Some(status), "No such user").map_err(io::Error::other)?)
///             }
///             Event::BodyChunk(octets) => {
///                 self.0.extend_from_slice(octets);
///                 Answer::None
///             }
///             Event::Reset | Event::MessageAborted(_) | Event::Quit => Answer::None,
///             _ => Answer::Accept,
///         })
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (server_end, mut client) = tokio::io::duplex(4096);
/// let mut cfg = ServerConfig::default();
/// cfg.hostname = "mx.example.net".into();
/// let session = ServerSession::new(cfg).unwrap();
/// let server = tokio::spawn(async move {
///     let mut inbox = Inbox::default();
///     let ending = serve(server_end, session, &mut inbox, &ServeOptions::default(), &CancellationToken::new()).await;
///     (ending.unwrap(), inbox.0)
/// });
/// client
///     .write_all(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<eve@example.net>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
///     .await?;
/// client.write_all(b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n").await?;
/// let mut transcript = String::new();
/// client.read_to_string(&mut transcript).await?;
/// assert!(transcript.contains("550 5.1.1 No such user\r\n"), "{transcript}");
/// assert!(transcript.ends_with("221 2.0.0 Bye\r\n"), "{transcript}");
/// let (ending, body) = server.await.unwrap();
/// assert_eq!(ending, Ending::Closed);
/// assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
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
        let lost = || io::Error::other("SMTP driver: stream lost in a TLS handshake");
        let wt = options.write_timeout;
        let full = options.read_buffer.max(1);
        let mut buf = std::vec![0u8; full.min(INITIAL_READ_BUFFER)];
        let mut last_activity = now();
        // Between an accepted DATA (or first BDAT) and the message's end, a
        // shutdown waits: the message is received and answered first.
        let mut in_data = false;
        loop {
            let mut completed = false;
            while let Some(event) = session.next_event() {
                let data_start = matches!(event, Event::DataStart);
                if matches!(
                    event,
                    Event::MessageComplete { .. } | Event::MessageAborted(_)
                ) {
                    in_data = false;
                    completed |= matches!(event, Event::MessageComplete { .. });
                }
                // Boxed for the event's length only: inline, the handler's future (as
                // large as its largest event's state) would be part of every
                // connection's task for its whole life, idle ones included (2.5 KiB
                // more per idle connection in mailbagd, measured).
                match alloc::boxed::Box::pin(handler.handle(event)).await? {
                    Answer::Accept => {
                        session.accept();
                        in_data |= data_start;
                    }
                    Answer::Reject(reply) => session.reject(reply),
                    Answer::Challenge(data) => session.auth_challenge(&data),
                    Answer::Lmtp(replies) => session.respond_lmtp(&replies),
                    Answer::None => {}
                }
            }
            for refusal in session.take_refusals() {
                handler.refused(refusal);
            }
            if completed && shutdown.is_cancelled() {
                session.shutdown();
            }
            let stream = stream_slot.as_mut().ok_or_else(lost)?;
            let replied = !session.output().is_empty();
            flush(stream, session, wt).await?;
            if session.is_closed() {
                return Ok(Ending::Closed);
            }
            if replied {
                // The wait for the next command starts at the last reply:
                // input that completes no command line (a line sent an
                // octet at a time) does not restart it.
                last_activity = now();
            }
            if session.awaiting_tls() {
                let plain = stream_slot.take().ok_or_else(lost)?;
                stream_slot = Some(alloc::boxed::Box::pin(handler.start_tls(plain)).await?);
                session.tls_established();
                last_activity = now();
                continue;
            }
            let deadline = session
                .deadline(last_activity)
                .unwrap_or_else(|| now() + NO_DEADLINE_WAIT);
            let read = tokio::select! {
                () = shutdown.cancelled(), if !in_data => {
                    session.shutdown();
                    flush(stream, session, wt).await?;
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
            if in_data {
                // Inside a message each read is progress (RFC 5321 section
                // 4.5.3.2.5's data block timeout).
                last_activity = now();
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
        let _ = within(options.write_timeout, s.shutdown()).await;
    }
    result
}
