//! The tokio drivers (feature `tokio`): the client driver against the server
//! driver over in-memory streams, each run to its ending (QUIT, STARTTLS,
//! idle timeout, shutdown between and during messages, a silent server, a
//! connection lost in a transaction).

use std::io;
use std::time::Duration;

use mailbag_smtp_proto::address::{ForwardPath, parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{
    ClientEvent, ClientOptions, ClientSession, Outcome, Status, TlsPolicy, Transaction,
};
use mailbag_smtp_proto::driver::client::{Client, ClientIoOptions};
use mailbag_smtp_proto::driver::server::{Answer, Ending, ServeOptions, ServerHandler, serve};
use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::{EnhancedStatusCode, HeloName, Reply, ReplyCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// Plain before STARTTLS, "TLS" after (a stand-in handshake that only
/// changes the variant).
type Stream = Either<DuplexStream, DuplexStream>;

/// Takes mail for bob@example.net only; keeps the bodies it accepted.
#[derive(Default)]
struct Inbox {
    body: Vec<u8>,
    messages: Vec<Vec<u8>>,
    tls: bool,
    /// Cancelled when a message's data starts (a shutdown during DATA).
    cancel_at_data: Option<CancellationToken>,
}

impl ServerHandler<Stream> for Inbox {
    async fn handle(&mut self, event: Event<'_>) -> io::Result<Answer> {
        Ok(match event {
            Event::RcptTo {
                to: ForwardPath::Path(p),
                ..
            } if p.mailbox().to_string() != "bob@example.net" => {
                let code = ReplyCode::try_from(550).unwrap();
                let status = EnhancedStatusCode::new(5, 1, 1).unwrap();
                Answer::Reject(Reply::new(code, Some(status), "No such user").unwrap())
            }
            Event::DataStart => {
                if let Some(t) = &self.cancel_at_data {
                    t.cancel();
                }
                Answer::Accept
            }
            Event::BodyChunk(octets) => {
                self.body.extend_from_slice(octets);
                Answer::None
            }
            Event::MessageComplete { .. } => {
                // The 250 goes out only after this returns: the message is "stored".
                tokio::task::yield_now().await;
                self.messages.push(std::mem::take(&mut self.body));
                Answer::Accept
            }
            Event::Reset | Event::MessageAborted(_) | Event::Quit => Answer::None,
            _ => Answer::Accept,
        })
    }

    async fn start_tls(&mut self, stream: Stream) -> io::Result<Stream> {
        self.tls = true;
        match stream {
            Either::Left(s) => Ok(Either::Right(s)),
            Either::Right(_) => Err(io::Error::other("TLS twice")),
        }
    }
}

fn server_config(starttls: bool) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.hostname = "mx.example.net".into();
    cfg.starttls = starttls;
    cfg
}

fn spawn_server(
    stream: DuplexStream,
    cfg: ServerConfig,
    mut inbox: Inbox,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<(io::Result<Ending>, Inbox)> {
    tokio::spawn(async move {
        let session = ServerSession::new(cfg).unwrap();
        let ending = serve(
            Either::Left(stream),
            session,
            &mut inbox,
            &options,
            &shutdown,
        )
        .await;
        (ending, inbox)
    })
}

/// A server with a 30 s idle timeout, otherwise as usual.
fn idle_30s_server(s: DuplexStream) -> tokio::task::JoinHandle<(io::Result<Ending>, Inbox)> {
    let mut cfg = server_config(false);
    cfg.idle_timeout = Duration::from_secs(30);
    spawn_server(
        s,
        cfg,
        Inbox::default(),
        ServeOptions::default(),
        CancellationToken::new(),
    )
}

/// The usual server: no STARTTLS, an empty [`Inbox`], default options.
fn default_server(stream: DuplexStream) -> tokio::task::JoinHandle<(io::Result<Ending>, Inbox)> {
    spawn_server(
        stream,
        server_config(false),
        Inbox::default(),
        ServeOptions::default(),
        CancellationToken::new(),
    )
}

fn client(stream: DuplexStream, tls: TlsPolicy) -> Client<Stream> {
    let mut options = ClientOptions::default();
    options.tls = tls;
    client_with(stream, options)
}

fn client_with(stream: DuplexStream, options: ClientOptions) -> Client<Stream> {
    let session = ClientSession::new(HeloName::try_from("client.example").unwrap(), options);
    Client::new(Either::Left(stream), session, ClientIoOptions::default())
}

/// The outcome of `event`, which must be a close with an error.
fn closed_with_error(event: Option<ClientEvent>) -> Outcome {
    let Some(ClientEvent::Closed {
        error: Some(outcome),
    }) = event
    else {
        panic!("{event:?}")
    };
    outcome
}

fn transaction() -> Transaction<'static> {
    let (from, _) = parse_reverse_path(b"<alice@example.org>").unwrap();
    let (eve, _) = parse_forward_path(b"<eve@example.net>").unwrap();
    let (bob, _) = parse_forward_path(b"<bob@example.net>").unwrap();
    Transaction::new(from).recipient(eve).recipient(bob)
}

const BODY: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\n..two\r\nend\r\n";

/// Runs one transaction (and QUIT) through `client`; returns the statuses
/// of its two recipients and the session's last event.
async fn one_transaction(client: &mut Client<Stream>) -> (Vec<Status>, ClientEvent) {
    let mut statuses = Vec::new();
    let mut sent = false;
    loop {
        let event = client.next_event().await.expect("an event before the end");
        match event {
            ClientEvent::Ready if !sent => {
                sent = true;
                client.session().send_mail(&transaction()).unwrap();
            }
            ClientEvent::Ready => client.session().quit(),
            ClientEvent::StartTls => client
                .start_tls(|s: Stream| async move {
                    match s {
                        Either::Left(s) => Ok(Either::Right(s)),
                        Either::Right(_) => Err(io::Error::other("TLS twice")),
                    }
                })
                .await
                .unwrap(),
            ClientEvent::SendBody => client.send_body(BODY).await.unwrap(),
            ClientEvent::TransactionComplete(r) => {
                statuses = r.recipients.iter().map(|o| o.status()).collect();
            }
            e @ ClientEvent::Closed { .. } => return (statuses, e),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_transaction_through_both_drivers() {
    let (c, s) = tokio::io::duplex(64); // small buffers: many partial reads and writes
    let server = default_server(s);
    let mut client = client(c, TlsPolicy::Disabled);
    let (statuses, last) = one_transaction(&mut client).await;
    assert_eq!(statuses, [Status::Permanent, Status::Accepted]);
    assert_eq!(last, ClientEvent::Closed { error: None });
    assert_eq!(client.next_event().await, None);
    client.close().await;
    let (ending, inbox) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(inbox.messages, [BODY.to_vec()], "stuffed, then unstuffed");
}

#[tokio::test]
async fn starttls_goes_through_the_handlers_handshake_and_the_clients() {
    let (c, s) = tokio::io::duplex(4096);
    let server = spawn_server(
        s,
        server_config(true),
        Inbox::default(),
        ServeOptions::default(),
        CancellationToken::new(),
    );
    let mut client = client(c, TlsPolicy::Required);
    let (statuses, last) = one_transaction(&mut client).await;
    assert_eq!(statuses, [Status::Permanent, Status::Accepted]);
    assert_eq!(last, ClientEvent::Closed { error: None });
    assert!(client.session().is_tls());
    let (ending, inbox) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert!(inbox.tls);
    assert_eq!(inbox.messages.len(), 1);
}

#[tokio::test]
async fn pipelined_commands_get_their_replies_in_order() {
    let (mut c, s) = tokio::io::duplex(1 << 16);
    let server = default_server(s);
    c.write_all(
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<eve@example.net>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n\
          hi\r\n.\r\nQUIT\r\n",
    )
    .await
    .unwrap();
    let mut transcript = String::new();
    c.read_to_string(&mut transcript).await.unwrap();
    let codes: Vec<&str> = transcript
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["220", "250", "250", "550", "250", "354", "250", "221"],
        "{transcript}"
    );
    let (ending, inbox) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(inbox.messages, [b"hi\r\n".to_vec()]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_gets_421_after_the_idle_timeout() {
    let (mut c, s) = tokio::io::duplex(4096);
    let server = idle_30s_server(s);
    c.write_all(b"EHLO c\r\n").await.unwrap();
    let mut transcript = String::new();
    c.read_to_string(&mut transcript).await.unwrap();
    assert!(
        transcript.ends_with("421 4.4.2 Timeout, closing connection\r\n"),
        "{transcript}"
    );
    let (ending, _) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::TimedOut);
}

/// Runs a server with a 30 s idle timeout, sends `prefix` and waits for its
/// replies (`replies` lines after the greeting), then sends `drip` one
/// octet every `every` seconds. Returns the transcript, the seconds from
/// the last reply read to the server's end, how it ended and the inbox.
async fn drip_after(
    prefix: &[u8],
    replies: usize,
    drip: &[u8],
    every: u64,
) -> (String, u64, Ending, Inbox) {
    let (mut c, s) = tokio::io::duplex(4096);
    let server = idle_30s_server(s);
    let server = tokio::spawn(async move {
        let r = server.await.unwrap();
        (r, tokio::time::Instant::now())
    });
    c.write_all(prefix).await.unwrap();
    let mut transcript = Vec::new();
    while transcript.iter().filter(|&&b| b == b'\n').count() < replies + 1 {
        let mut b = [0u8; 512];
        let n = c.read(&mut b).await.unwrap();
        assert_ne!(n, 0, "{:?}", String::from_utf8_lossy(&transcript));
        transcript.extend_from_slice(&b[..n]);
    }
    let replied = tokio::time::Instant::now();
    for b in drip {
        tokio::time::sleep(Duration::from_secs(every)).await;
        if c.write_all(&[*b]).await.is_err() {
            break;
        }
    }
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    transcript.extend_from_slice(&rest);
    let ((ending, inbox), at) = server.await.unwrap();
    (
        String::from_utf8(transcript).unwrap(),
        at.duration_since(replied).as_secs(),
        ending.unwrap(),
        inbox,
    )
}

#[tokio::test(start_paused = true)]
async fn a_command_sent_an_octet_at_a_time_does_not_hold_off_the_timeout() {
    // Before EHLO and inside a transaction: the wait for a command runs
    // from the last reply, whatever octets come without a line end.
    let cases: [(&[u8], usize); 2] = [(b"", 0), (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n", 2)];
    for (prefix, replies) in cases {
        let (transcript, secs, ending, inbox) =
            drip_after(prefix, replies, b"NOOPXXXXXXXXXXXXXXXX", 10).await;
        assert!(
            transcript.ends_with("421 4.4.2 Timeout, closing connection\r\n"),
            "{transcript}"
        );
        assert_eq!((ending, secs), (Ending::TimedOut, 30), "{transcript}");
        assert!(inbox.messages.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_message_body_is_progress_and_a_silent_one_times_out() {
    let prefix = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n";
    // 15 body octets, one every 10 s: 150 s, each read inside the message
    // restarting the 30 s timer; then the wait for a command runs from the
    // 250.
    let (transcript, secs, ending, inbox) =
        drip_after(prefix, 4, b"slow\r\nbody\r\n.\r\n", 10).await;
    assert!(
        transcript
            .ends_with("250 2.0.0 Message accepted\r\n421 4.4.2 Timeout, closing connection\r\n"),
        "{transcript}"
    );
    assert_eq!((ending, secs), (Ending::TimedOut, 180));
    assert_eq!(inbox.messages, [b"slow\r\nbody\r\n".to_vec()]);
    // A body that stops for longer than the timeout is given up.
    let (transcript, secs, ending, inbox) = drip_after(prefix, 4, b"", 0).await;
    assert!(
        transcript.ends_with("421 4.4.2 Timeout, closing connection\r\n"),
        "{transcript}"
    );
    assert_eq!((ending, secs), (Ending::TimedOut, 30));
    assert!(inbox.messages.is_empty());
}

#[tokio::test]
async fn shutdown_between_messages_answers_421_at_once() {
    let (mut c, s) = tokio::io::duplex(4096);
    let token = CancellationToken::new();
    let server = spawn_server(
        s,
        server_config(false),
        Inbox::default(),
        ServeOptions::default(),
        token.clone(),
    );
    c.write_all(b"EHLO c\r\n").await.unwrap();
    let mut greeting = [0u8; 16];
    let _ = c.read(&mut greeting).await.unwrap();
    token.cancel();
    let mut transcript = String::new();
    c.read_to_string(&mut transcript).await.unwrap();
    assert!(
        transcript.ends_with("421 4.3.2 Service shutting down, closing connection\r\n"),
        "{transcript}"
    );
    let (ending, _) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Shutdown);
}

#[tokio::test]
async fn shutdown_during_data_finishes_the_message_first() {
    let (c, s) = tokio::io::duplex(4096);
    let token = CancellationToken::new();
    let inbox = Inbox {
        cancel_at_data: Some(token.clone()),
        ..Inbox::default()
    };
    let server = spawn_server(
        s,
        server_config(false),
        inbox,
        ServeOptions::default(),
        token,
    );
    let mut client = client(c, TlsPolicy::Disabled);
    let (statuses, last) = one_transaction(&mut client).await;
    // The message in transfer was received and accepted; the 421 that
    // follows closes the idle session.
    assert_eq!(statuses, [Status::Permanent, Status::Accepted]);
    assert!(matches!(last, ClientEvent::Closed { .. }), "{last:?}");
    let (ending, inbox) = server.await.unwrap();
    assert_eq!(ending.unwrap(), Ending::Closed);
    assert_eq!(inbox.messages, [BODY.to_vec()]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_closes_the_client_with_a_temporary_error() {
    let (c, _server_end) = tokio::io::duplex(4096);
    let mut client = client(c, TlsPolicy::Disabled);
    let outcome = closed_with_error(client.next_event().await);
    assert_eq!(outcome.status(), Status::Temporary);
    assert_eq!(client.next_event().await, None);
}

/// A reply must come whole within its timeout: a server that sends its greeting an
/// octet a second (a multi-line one that never ends) does not restart the clock.
#[tokio::test(start_paused = true)]
async fn a_reply_sent_an_octet_at_a_time_times_out_as_a_whole() {
    let (c, mut server_end) = tokio::io::duplex(4096);
    let mut options = ClientOptions::default();
    options.timeouts.greeting = Duration::from_secs(30);
    let mut client = client_with(c, options);
    let drip = tokio::spawn(async move {
        for b in b"220-mx.example never ends\r\n".iter().cycle().take(600) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if server_end.write_all(&[*b]).await.is_err() {
                break;
            }
        }
    });
    let start = tokio::time::Instant::now();
    let outcome = closed_with_error(client.next_event().await);
    assert_eq!(outcome.status(), Status::Temporary);
    assert!(format!("{outcome:?}").contains("Timeout"), "{outcome:?}");
    assert_eq!(start.elapsed().as_secs(), 30);
    drop(client);
    drip.await.unwrap();
}

#[tokio::test]
async fn a_connection_lost_in_a_transaction_settles_it_as_temporary() {
    let (c, mut s) = tokio::io::duplex(4096);
    let mut client = client(c, TlsPolicy::Disabled);
    let peer = tokio::spawn(async move {
        s.write_all(b"220 mx ESMTP\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf).await.unwrap(); // EHLO
        s.write_all(b"250 mx\r\n").await.unwrap();
        let _ = s.read(&mut buf).await.unwrap(); // MAIL
        drop(s); // gone
    });
    assert_eq!(client.next_event().await, Some(ClientEvent::Ready));
    client.session().send_mail(&transaction()).unwrap();
    let mut events = Vec::new();
    while let Some(e) = client.next_event().await {
        events.push(e);
    }
    peer.await.unwrap();
    let Some(ClientEvent::TransactionComplete(r)) = events
        .iter()
        .find(|e| matches!(e, ClientEvent::TransactionComplete(_)))
    else {
        panic!("{events:?}")
    };
    assert!(
        r.recipients.iter().all(|o| o.status() == Status::Temporary),
        "{r:?}"
    );
    assert!(
        matches!(events.last(), Some(ClientEvent::Closed { error: Some(_) })),
        "{events:?}"
    );
}

/// A handler whose futures hold 64 KiB across an await.
struct Heavy;

impl ServerHandler<DuplexStream> for Heavy {
    async fn handle(&mut self, _event: Event<'_>) -> io::Result<Answer> {
        let big = [7u8; 64 * 1024];
        tokio::task::yield_now().await;
        Ok(if std::hint::black_box(&big)[0] == 7 {
            Answer::Accept
        } else {
            Answer::None
        })
    }
}

/// The handler's future is not part of `serve`'s: a connection's task (what
/// every idle connection holds for its whole life) stays small however large
/// the handler's state grows during an event (inline, mailbagd's handlers
/// cost 2.5 KiB more per idle connection).
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
