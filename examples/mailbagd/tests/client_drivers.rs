//! pop3-proto's tokio client driver (`driver::client::Client`) against real
//! servers: Dovecot serving a Maildir made by hand (the whole session, with
//! its transcript asserted line by line), and mailbagd over STLS with
//! rustls. Under `CI=true` a missing Dovecot fails the test.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};
use mailbag_pop3_proto::driver::client::{Client, ClientIoOptions};
use mailbag_pop3_proto::types::Capability;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::either::Either;

mod common;
use common::{Dovecot, Options, Server, deliver_local, require};

/// What each side sent, chunk by chunk (`"C: "` or `"S: "`, octets).
type Chunks = Mutex<Vec<(&'static str, Vec<u8>)>>;

/// A stream that keeps what passes through it: the octets each side sent,
/// chunk by chunk, for a `C: ` / `S: ` transcript.
struct Recorder {
    inner: TcpStream,
    chunks: Arc<Chunks>,
}

impl Recorder {
    fn record(&self, side: &'static str, bytes: &[u8]) {
        let mut chunks = self.chunks.lock().unwrap();
        match chunks.last_mut() {
            Some((last, b)) if *last == side => b.extend_from_slice(bytes),
            _ => chunks.push((side, bytes.to_vec())),
        }
    }

    /// The transcript: one line per protocol line, each with its side.
    fn lines(chunks: &Chunks) -> Vec<String> {
        let chunks = chunks.lock().unwrap();
        let mut lines = Vec::new();
        for (side, bytes) in chunks.iter() {
            for line in String::from_utf8_lossy(bytes).split_terminator("\r\n") {
                lines.push(format!("{side}{line}"));
            }
        }
        lines
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = buf.filled()[before..].to_vec();
            self.record("S: ", &new);
        }
        r
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.record("C: ", &buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every event until the session waits for nothing.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>) -> Vec<ClientEvent> {
    let mut all = Vec::new();
    while let Some(e) = client.next_event().await.expect("no I/O error") {
        all.push(e);
    }
    all
}

/// The bodies of the RETR and TOP answers among `events`, in order.
fn bodies(events: &[ClientEvent]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in events {
        match e {
            ClientEvent::MessageStart { .. } => out.push(Vec::new()),
            ClientEvent::BodyChunk(c) => out.last_mut().unwrap().extend_from_slice(c),
            _ => {}
        }
    }
    out
}

const FIRST: &str = "From: ann@example.test\nSubject: first\n\nHello\n.leading dot\n..two dots\n";
const SECOND: &str = "From: ann@example.test\nSubject: second\n\nline 1\nline 2\n";

#[test]
fn the_async_client_reads_a_maildir_from_dovecot() {
    if !require("dovecot") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // A Maildir made with mkdir and plain files, as a user or a script would.
    let joe = root.path().join("joe");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(joe.join(d)).unwrap();
    }
    std::fs::write(joe.join("new/1700000001.M1P1.test"), FIRST).unwrap();
    std::fs::write(joe.join("new/1700000002.M2P1.test"), SECOND).unwrap();
    let dovecot = Dovecot::start(root.path());
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let events = runtime().block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", dovecot.port))
            .await
            .unwrap();
        let stream = Recorder {
            inner: tcp,
            chunks: Arc::clone(&chunks),
        };
        let mut client = Client::new(
            stream,
            ClientSession::new(ClientOptions::default()),
            ClientIoOptions::default(),
        );
        let s = client.session();
        s.capa().unwrap();
        s.login_user_pass("joe", "secret").unwrap();
        s.stat().unwrap();
        s.uidl(None).unwrap();
        s.retr(1).unwrap();
        s.retr(2).unwrap();
        s.top(1, 0).unwrap();
        s.quit().unwrap();
        drain(&mut client).await
    });
    let lines = Recorder::lines(&chunks);
    eprintln!("{}", lines.join("\n"));
    assert!(
        matches!(&events[0], ClientEvent::Greeting { text, .. } if text.contains("Dovecot")),
        "{events:?}"
    );
    let ClientEvent::Capabilities(caps) = &events[1] else {
        panic!("{events:?}")
    };
    assert!(caps.contains(&Capability::Uidl) && caps.contains(&Capability::Pipelining));
    assert_eq!(events[2], ClientEvent::LoggedIn);
    let size =
        (FIRST.len() + FIRST.matches('\n').count() + SECOND.len() + SECOND.matches('\n').count())
            as u64;
    assert_eq!(events[3], ClientEvent::Stat { count: 2, size });
    assert!(
        matches!(&events[4], ClientEvent::Uidl(u) if u.len() == 2),
        "{events:?}"
    );
    let crlf = |s: &str| s.replace('\n', "\r\n").into_bytes();
    assert_eq!(
        bodies(&events),
        [
            crlf(FIRST),
            crlf(SECOND),
            crlf("From: ann@example.test\nSubject: first\n\n")
        ]
    );
    assert_eq!(events.last(), Some(&ClientEvent::Closed));

    // The transcript: the greeting first; after CAPA announced PIPELINING the
    // client sent the rest together, in order; every answer matched.
    assert!(lines[0].starts_with("S: +OK Dovecot"), "{lines:?}");
    let sent: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("C: ")).collect();
    assert_eq!(
        sent,
        [
            "CAPA",
            "USER joe",
            "PASS secret",
            "STAT",
            "UIDL",
            "RETR 1",
            "RETR 2",
            "TOP 1 0",
            "QUIT"
        ]
    );
    assert!(
        lines.contains(&"S: ...two dots".to_owned()),
        "stuffed on the wire: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("S: +OK 2 ")),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().starts_with("S: +OK Logging out"),
        "{lines:?}"
    );
    // Nothing was deleted: Dovecot still has both messages.
    let left: usize = ["cur", "new"]
        .iter()
        .map(|d| std::fs::read_dir(joe.join(d)).unwrap().count())
        .sum();
    assert_eq!(left, 2);
}

#[test]
fn the_async_client_logs_in_to_mailbagd_over_stls() {
    let opts = Options {
        tls: true,
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    deliver_local(&server, "joe@example.test", "over tls", "secret body");
    let cert = std::fs::read(server.cert_pem.as_ref().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut cert.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let port = server.port("pop3");
    let events = runtime().block_on(async move {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut client = Client::new(
            Either::Left(tcp),
            ClientSession::new(ClientOptions::default()),
            ClientIoOptions::default(),
        );
        client.session().stls().unwrap();
        client.session().login_user_pass("joe", "secret").unwrap();
        client.session().retr(1).unwrap();
        client.session().quit().unwrap();
        let mut events = Vec::new();
        while let Some(e) = client.next_event().await.unwrap() {
            let ready = e == ClientEvent::TlsReady;
            events.push(e);
            if ready {
                let connector = connector.clone();
                client
                    .start_tls(|s| async move {
                        let Either::Left(tcp) = s else {
                            return Err(io::Error::other("TLS twice"));
                        };
                        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                        Ok(Either::Right(connector.connect(name, tcp).await?))
                    })
                    .await
                    .unwrap();
                assert!(client.session().is_tls());
            }
        }
        events
    });
    assert!(events.contains(&ClientEvent::TlsReady), "{events:?}");
    assert!(events.contains(&ClientEvent::LoggedIn), "{events:?}");
    let body = String::from_utf8(bodies(&events).concat()).unwrap();
    assert!(
        body.contains("Subject: over tls\r\n") && body.contains("secret body"),
        "{body}"
    );
    assert_eq!(events.last(), Some(&ClientEvent::Closed));
}
