//! The tokio drivers (feature `tokio`): the client driver against the server
//! driver over in-memory streams, each run to its ending (QUIT, autologout,
//! shutdown, a client that stops reading, a silent server, STLS).

use std::io;
use std::time::Duration;

use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
use mailbag_pop3_proto::codec::{BodyProgress, crlf_len, normalize_crlf};
use mailbag_pop3_proto::driver::client::{Client, ClientIoOptions};
use mailbag_pop3_proto::driver::server::{Ending, Exchange, ServeOptions, ServerHandler, serve};
use mailbag_pop3_proto::session::{
    AuthFailure, Credentials, Event, MaildropFailure, MessageInfo, ServerConfig, ServerSession,
};
use mailbag_pop3_proto::types::{ResponseCode, Uid};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

const MESSAGES: [&[u8]; 2] = [
    b"Subject: one\r\n\r\nHello\r\n.dot line\r\n",
    b"Subject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
];

/// A stream that records whether it went through the (stand-in) TLS
/// handshake.
#[derive(Debug)]
struct Stream {
    inner: DuplexStream,
    tls: bool,
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn pair(buffer: usize) -> (Stream, Stream) {
    let (a, b) = tokio::io::duplex(buffer);
    (
        Stream {
            inner: a,
            tls: false,
        },
        Stream {
            inner: b,
            tls: false,
        },
    )
}

/// One user (joe, password "pw") with [`MESSAGES`]; records what QUIT
/// committed. `busy`: the maildrop is locked by another session.
#[derive(Default)]
struct Mailbox {
    busy: bool,
    committed: Option<Vec<usize>>,
    tls_handshakes: usize,
    /// Messages instead of [`MESSAGES`], when not empty.
    messages: Vec<Vec<u8>>,
}

impl Mailbox {
    fn message(&self, index: usize) -> &[u8] {
        match self.messages.get(index) {
            Some(m) => m,
            None => MESSAGES[index],
        }
    }

    fn count(&self) -> usize {
        if self.messages.is_empty() {
            MESSAGES.len()
        } else {
            self.messages.len()
        }
    }
}

impl ServerHandler<Stream> for Mailbox {
    async fn handle(&mut self, event: Event, ex: &mut Exchange<'_, Stream>) -> io::Result<()> {
        match event {
            Event::Login(req) => {
                let ok = matches!(&req.credentials, Credentials::Password(p)
                    if req.user.as_str() == "joe" && p.expose() == b"pw");
                let s = ex.session();
                if ok {
                    s.accept_login()
                } else {
                    s.reject_login(AuthFailure::Credentials)
                }
            }
            Event::OpenMaildrop { .. } if self.busy => {
                ex.session().maildrop_failed(MaildropFailure::InUse)
            }
            Event::OpenMaildrop { .. } => {
                let listing = (0..self.count())
                    .map(|i| {
                        let uid = Uid::try_from(format!("uid-{i}")).unwrap();
                        MessageInfo::new(crlf_len(self.message(i)), uid)
                    })
                    .collect();
                ex.session().maildrop_opened(listing)
            }
            Event::Retrieve(req) => {
                let message = self.message(req.index).to_vec();
                // Two chunks, to go through the streaming path.
                let (a, b) = message.split_at(message.len() / 2);
                if ex.send_message_chunk(a, false).await? == BodyProgress::Continue {
                    ex.send_message_chunk(b, true).await?;
                }
                return Ok(());
            }
            Event::Commit { deleted } => {
                self.committed = Some(deleted.iter().map(|m| m.index()).collect());
                ex.session().commit_done(Ok(()))
            }
            other => panic!("unexpected {other:?}"),
        }
        .map_err(io::Error::other)
    }

    async fn start_tls(&mut self, mut stream: Stream) -> io::Result<Stream> {
        self.tls_handshakes += 1;
        stream.tls = true;
        Ok(stream)
    }
}

fn server_config() -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.tls_available = true;
    cfg
}

fn spawn_server(
    stream: Stream,
    cfg: ServerConfig,
    mut handler: Mailbox,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<(io::Result<Ending>, Mailbox)> {
    tokio::spawn(async move {
        let session = ServerSession::new(cfg).unwrap();
        let ending = serve(stream, session, &mut handler, &options, &shutdown).await;
        (ending, handler)
    })
}

/// A server with a 30 s idle timeout, otherwise as usual.
fn idle_30s_server(s: Stream) -> tokio::task::JoinHandle<(io::Result<Ending>, Mailbox)> {
    let mut cfg = server_config();
    cfg.idle_timeout = Duration::from_secs(30);
    spawn_server(
        s,
        cfg,
        Mailbox::default(),
        ServeOptions::default(),
        CancellationToken::new(),
    )
}

/// The usual server: [`server_config`], joe's [`Mailbox`], default options.
fn default_server(stream: Stream) -> tokio::task::JoinHandle<(io::Result<Ending>, Mailbox)> {
    spawn_server(
        stream,
        server_config(),
        Mailbox::default(),
        ServeOptions::default(),
        CancellationToken::new(),
    )
}

fn new_client(stream: Stream) -> Client<Stream> {
    Client::new(
        stream,
        ClientSession::new(ClientOptions::default()),
        ClientIoOptions::default(),
    )
}

async fn events(client: &mut Client<Stream>) -> Vec<ClientEvent> {
    let mut all = Vec::new();
    while let Some(e) = client.next_event().await.expect("no I/O error") {
        all.push(e);
    }
    all
}

fn collect_body(events: &[ClientEvent]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for e in events {
        match e {
            ClientEvent::MessageStart { .. } => bodies.push(Vec::new()),
            ClientEvent::BodyChunk(c) => bodies.last_mut().unwrap().extend_from_slice(c),
            _ => {}
        }
    }
    bodies
}

#[tokio::test]
async fn a_whole_session_through_both_drivers() {
    let (c, s) = pair(64); // small buffers: many partial reads and writes
    let server = default_server(s);
    let mut client = new_client(c);
    client.session().capa().unwrap();
    client.session().login_user_pass("joe", "wrong").unwrap();
    let mut all = Vec::new();
    while !matches!(all.last(), Some(ClientEvent::Error { .. })) {
        all.push(client.next_event().await.unwrap().expect("an event"));
    }
    let session = client.session();
    session.login_user_pass("joe", "pw").unwrap();
    session.stat().unwrap();
    session.uidl(None).unwrap();
    session.retr(1).unwrap();
    session.top(2, 1).unwrap();
    session.dele(1).unwrap();
    session.quit().unwrap();
    all.extend(events(&mut client).await);
    assert!(matches!(all[0], ClientEvent::Greeting { .. }), "{all:?}");
    assert!(
        matches!(&all[1], ClientEvent::Capabilities(c) if !c.is_empty()),
        "{all:?}"
    );
    assert!(
        matches!(
            &all[2],
            ClientEvent::Error {
                code: Some(ResponseCode::Auth),
                ..
            }
        ),
        "{all:?}"
    );
    assert_eq!(all[3], ClientEvent::LoggedIn);
    assert_eq!(
        all[4],
        ClientEvent::Stat {
            count: 2,
            size: (MESSAGES[0].len() + MESSAGES[1].len()) as u64
        }
    );
    assert!(
        matches!(&all[5], ClientEvent::Uidl(l) if l.len() == 2),
        "{all:?}"
    );
    let bodies = collect_body(&all);
    assert_eq!(bodies[0], MESSAGES[0], "dot-stuffed and unstuffed again");
    assert_eq!(bodies[1], b"Subject: two\r\n\r\nline 1\r\n", "TOP 2 1");
    assert_eq!(all.last(), Some(&ClientEvent::Closed));
    let (ending, handler) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(handler.committed, Some(vec![0]), "DELE 1 committed at QUIT");
}

#[tokio::test]
async fn pipelined_commands_are_answered_before_the_next_read() {
    let (c, s) = pair(1 << 16);
    let server = default_server(s);
    let mut raw = c;
    // The whole session in one write; the server answers it all.
    raw.write_all(b"USER joe\r\nPASS pw\r\nRETR 1\r\nRETR 2\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut transcript = Vec::new();
    raw.read_to_end(&mut transcript).await.unwrap();
    let text = String::from_utf8(transcript).unwrap();
    assert!(text.contains("Hello\r\n..dot line\r\n.\r\n"), "{text}");
    assert!(text.contains("line 3\r\n.\r\n+OK"), "{text}");
    let (ending, handler) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(handler.committed, Some(vec![]));
}

#[tokio::test]
async fn stls_runs_the_handlers_handshake_and_the_clients() {
    let (c, s) = pair(4096);
    let server = default_server(s);
    let mut client = new_client(c);
    client.session().stls().unwrap();
    client.session().login_user_pass("joe", "pw").unwrap();
    assert!(matches!(
        client.next_event().await.unwrap(),
        Some(ClientEvent::Greeting { .. })
    ));
    assert_eq!(
        client.next_event().await.unwrap(),
        Some(ClientEvent::TlsReady)
    );
    // Asking again before the handshake is a usage error, not a hang.
    assert!(client.next_event().await.is_err());
    let mut handshakes = 0;
    client
        .start_tls(|mut s: Stream| {
            handshakes += 1;
            s.tls = true;
            async move { Ok(s) }
        })
        .await
        .unwrap();
    assert_eq!(handshakes, 1);
    assert!(client.session().is_tls());
    assert_eq!(
        client.next_event().await.unwrap(),
        Some(ClientEvent::LoggedIn)
    );
    client.session().quit().unwrap();
    assert_eq!(
        client.next_event().await.unwrap(),
        Some(ClientEvent::Closed)
    );
    let (ending, handler) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(handler.tls_handshakes, 1);
}

#[tokio::test]
async fn a_locked_maildrop_is_reported_with_its_code() {
    let (c, s) = pair(4096);
    let handler = Mailbox {
        busy: true,
        ..Mailbox::default()
    };
    let server = spawn_server(
        s,
        server_config(),
        handler,
        ServeOptions::default(),
        CancellationToken::new(),
    );
    let mut client = new_client(c);
    client.session().login_user_pass("joe", "pw").unwrap();
    client.session().quit().unwrap();
    let all = events(&mut client).await;
    assert!(
        all.iter().any(|e| matches!(
            e,
            ClientEvent::Error {
                code: Some(ResponseCode::InUse),
                ..
            }
        )),
        "{all:?}"
    );
    let (ending, handler) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(handler.committed, None, "no maildrop, nothing committed");
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_logged_out_and_nothing_is_committed() {
    let (c, s) = pair(4096);
    let server = idle_30s_server(s);
    let mut client = new_client(c);
    client.session().login_user_pass("joe", "pw").unwrap();
    client.session().dele(1).unwrap();
    let all = [
        client.next_event().await.unwrap(),
        client.next_event().await.unwrap(),
        client.next_event().await.unwrap(),
    ];
    assert_eq!(all[1], Some(ClientEvent::LoggedIn));
    assert!(
        matches!(all[2], Some(ClientEvent::Deleted { .. })),
        "{all:?}"
    );
    // Nothing queued: the client waits, and the server's autologout ends it.
    let rest = events(&mut client).await;
    assert_eq!(rest.last(), Some(&ClientEvent::Closed), "{rest:?}");
    let (ending, handler) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::TimedOut);
    assert_eq!(handler.committed, None, "DELE without QUIT removes nothing");
}

/// Sends `prefix`, then a command line one octet every 10 s (idle timeout 30
/// s), and returns the transcript, the seconds from the last reply to the
/// server's end, and how the server ended.
async fn drip_after(prefix: &[u8]) -> (String, u64, Ending, Mailbox) {
    let (c, s) = pair(4096);
    let server = idle_30s_server(s);
    let server = tokio::spawn(async move {
        let r = server.await.unwrap();
        (r, tokio::time::Instant::now())
    });
    let mut c = c.inner;
    c.write_all(prefix).await.unwrap();
    let mut transcript = Vec::new();
    let replies = prefix.iter().filter(|&&b| b == b'\n').count() + 1;
    while transcript.iter().filter(|&&b| b == b'\n').count() < replies {
        let mut b = [0u8; 512];
        let n = c.read(&mut b).await.unwrap();
        assert_ne!(n, 0, "{:?}", String::from_utf8_lossy(&transcript));
        transcript.extend_from_slice(&b[..n]);
    }
    let replied = tokio::time::Instant::now();
    // "NOOP" and never a line end: at most twenty octets, one every 10 s.
    for b in b"NOOPXXXXXXXXXXXXXXXX" {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if c.write_all(&[*b]).await.is_err() {
            break;
        }
    }
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    transcript.extend_from_slice(&rest);
    let ((ending, handler), at) = server.await.unwrap();
    let ended = at.duration_since(replied);
    (
        String::from_utf8(transcript).unwrap(),
        ended.as_secs(),
        ending.unwrap(),
        handler,
    )
}

#[tokio::test(start_paused = true)]
async fn a_command_sent_an_octet_at_a_time_does_not_hold_off_autologout() {
    // Before and after login (a maildrop lock held): the timer runs from
    // the last reply, whatever octets come without a line end.
    for prefix in [&b""[..], b"USER joe\r\nPASS pw\r\nDELE 1\r\n"] {
        let (transcript, secs, ending, handler) = drip_after(prefix).await;
        assert!(
            transcript.ends_with("-ERR Disconnected for inactivity.\r\n"),
            "{transcript}"
        );
        assert_eq!(ending, Ending::TimedOut);
        assert_eq!(secs, 30, "{transcript}");
        assert_eq!(handler.committed, None, "nothing removed");
    }
}

#[tokio::test]
async fn shutdown_answers_sys_temp_and_commits_nothing() {
    let (mut c, s) = pair(4096);
    let token = CancellationToken::new();
    let server = spawn_server(
        s,
        server_config(),
        Mailbox::default(),
        ServeOptions::default(),
        token.clone(),
    );
    c.inner
        .write_all(b"USER joe\r\nPASS pw\r\nDELE 1\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("Marked to be deleted.\r\n") {
        let mut buf = [0u8; 256];
        let n = c.inner.read(&mut buf).await.unwrap();
        assert!(n > 0, "{seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    token.cancel();
    let mut rest = String::new();
    c.inner.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "-ERR [SYS/TEMP] Server shutting down.\r\n");
    let (ending, handler) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Shutdown);
    assert_eq!(handler.committed, None, "DELE without QUIT removes nothing");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_given_up_after_the_write_timeout() {
    let (mut c, s) = pair(64);
    let mut options = ServeOptions::default();
    options.write_timeout = Duration::from_secs(5);
    let server = spawn_server(
        s,
        server_config(),
        Mailbox::default(),
        options,
        CancellationToken::new(),
    );
    // Many RETRs, never read: the 64-octet pipe fills.
    let mut commands = b"USER joe\r\nPASS pw\r\n".to_vec();
    for _ in 0..50 {
        commands.extend_from_slice(b"RETR 2\r\n");
    }
    // The write itself fails once the server gave up (a broken pipe).
    let _ = c.inner.write_all(&commands).await;
    let (ending, _) = server.await.unwrap();
    let e = ending.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(e.to_string().contains("write timed out"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_the_client_out() {
    let (c, _server_end) = pair(4096);
    let mut io_options = ClientIoOptions::default();
    io_options.read_timeout = Duration::from_secs(10);
    let mut client = Client::new(c, ClientSession::new(ClientOptions::default()), io_options);
    client.session().stat().unwrap();
    let e = client.next_event().await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // No greeting came, so the STAT was never sent: the session reports
    // the lost connection, then the end.
    let rest = events(&mut client).await;
    assert_eq!(rest.last(), Some(&ClientEvent::Closed), "{rest:?}");
    assert!(client.session().is_closed());
}

/// A message stored with bare LF line ends is encoded by copying (its first
/// line end is bare), and so is the rest of a CRLF message after a chunk
/// with more segments than `max_write_segments`: both arrive exactly as
/// stored, normalised to CRLF, dots unstuffed, through the client driver.
#[tokio::test]
async fn bare_lf_and_many_segment_messages_arrive_intact() {
    let mut bare = b"Subject: bare\n\n".to_vec();
    for k in 0..400 {
        bare.extend_from_slice(if k % 7 == 3 {
            b".dotted\n"
        } else {
            b"a line of some text\n"
        });
    }
    bare.extend_from_slice(b"no line end");
    let mut dotty = b"Subject: dots\r\n\r\n".to_vec();
    for k in 0..60 {
        dotty.extend_from_slice(if k % 2 == 0 { b".d\r\n" } else { b"plain\r\n" });
    }
    dotty.extend_from_slice(&b"later line\n".repeat(30));
    let handler = Mailbox {
        messages: vec![bare.clone(), dotty.clone()],
        ..Mailbox::default()
    };
    let mut options = ServeOptions::default();
    options.max_write_segments = 8;
    let (c, s) = pair(1 << 12);
    let server = spawn_server(
        s,
        server_config(),
        handler,
        options,
        CancellationToken::new(),
    );
    let mut client = new_client(c);
    let session = client.session();
    session.login_user_pass("joe", "pw").unwrap();
    session.retr(1).unwrap();
    session.retr(2).unwrap();
    session.quit().unwrap();
    let all = events(&mut client).await;
    let bodies = collect_body(&all);
    assert_eq!(bodies.len(), 2, "{all:?}");
    assert_eq!(bodies[0], normalize_crlf(&bare).as_ref());
    assert_eq!(bodies[1], normalize_crlf(&dotty).as_ref());
    let (ending, _) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
}

/// A handler whose futures hold 64 KiB across an await.
struct Heavy;

impl ServerHandler<DuplexStream> for Heavy {
    async fn handle(
        &mut self,
        _event: Event,
        _exchange: &mut Exchange<'_, DuplexStream>,
    ) -> io::Result<()> {
        let big = [7u8; 64 * 1024];
        tokio::task::yield_now().await;
        std::hint::black_box(&big);
        Ok(())
    }
}

/// The handler's future is not part of `serve`'s: a connection's task (what
/// every idle connection holds for its whole life) stays small however large
/// the handler's state grows during an event (inline, mailbagd's handler
/// costs 2 KiB more per idle connection).
#[test]
fn a_large_handler_future_is_not_held_by_the_connection() {
    let (server_io, _client_io) = tokio::io::duplex(1024);
    let session = ServerSession::new(ServerConfig::default()).unwrap();
    let mut handler = Heavy;
    let options = ServeOptions::default();
    let shutdown = CancellationToken::new();
    let fut = serve(server_io, session, &mut handler, &options, &shutdown);
    let size = std::mem::size_of_val(&fut);
    assert!(size < 8 * 1024, "serve's future is {size} octets");
}
