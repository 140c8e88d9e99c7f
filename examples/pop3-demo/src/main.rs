//! `pop3-demo`: a POP3 server for a fixed in-memory maildrop, built on
//! `mailbag-pop3-proto`'s sans-IO [`ServerSession`] with tokio doing the I/O.
//!
//! ```text
//! cargo run -p pop3-demo -- --listen 127.0.0.1:1110
//! curl pop3://joe:secret@127.0.0.1:1110/        # LIST
//! curl pop3://joe:secret@127.0.0.1:1110/2       # RETR 2
//! ```
//!
//! User `joe`, password `secret` (USER/PASS, APOP, SASL PLAIN and LOGIN).
//! Three messages: a plain one, one with lines starting with `.`, one with
//! bare-LF line ends. DELE + QUIT really removes messages for the lifetime of
//! the process; a dropped connection removes nothing. One session at a time
//! may hold the maildrop (`-ERR [IN-USE]` otherwise).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mailbag_pop3_proto::codec::crlf_len;
use mailbag_pop3_proto::session::{
    AuthFailure, CommitFailure, Event, MaildropFailure, MessageInfo, ServerConfig, ServerSession,
};
use mailbag_pop3_proto::types::Uid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const DEFAULT_LISTEN: &str = "127.0.0.1:1110";
const USER: &str = "joe";
const PASSWORD: &str = "secret";

const MESSAGES: [(&str, &[u8]); 3] = [
    (
        "mailbag-demo-1",
        b"From: Alice <alice@example.test>\r\n\
To: Joe <joe@example.test>\r\n\
Subject: Welcome to Mailbag\r\n\
Message-ID: <demo-1@example.test>\r\n\
\r\n\
Hello Joe,\r\n\
this maildrop lives in memory.\r\n",
    ),
    (
        "mailbag-demo-2",
        b"From: Bob <bob@example.test>\r\n\
To: Joe <joe@example.test>\r\n\
Subject: Dots\r\n\
Message-ID: <demo-2@example.test>\r\n\
\r\n\
The next line starts with a dot:\r\n\
.signature follows\r\n\
.\r\n\
..two dots\r\n",
    ),
    (
        "mailbag-demo-3",
        b"From: Carol <carol@example.test>\n\
To: Joe <joe@example.test>\n\
Subject: Bare LF line ends\n\
Message-ID: <demo-3@example.test>\n\
\n\
This message was stored with bare LF line ends.\n\
The server sends CRLF.",
    ),
];

/// The maildrop shared by all connections.
struct Store {
    messages: Vec<(Uid<'static>, Arc<[u8]>)>,
    locked: bool,
}

fn usage() -> String {
    format!(
        "usage: pop3-demo [--listen ADDR]\n\n\
         Serves a fixed in-memory maildrop over POP3 (user {USER}, password {PASSWORD}).\n\
         --listen ADDR   address to listen on (default {DEFAULT_LISTEN})\n"
    )
}

fn parse_args() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = DEFAULT_LISTEN.to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" | "-l" => {
                listen = args
                    .next()
                    .ok_or("--listen needs an address, e.g. 127.0.0.1:1110")?
            }
            s if s.starts_with("--listen=") => listen = s["--listen=".len()..].to_string(),
            "--help" | "-h" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n\n{}", usage())),
        }
    }
    listen
        .parse()
        .map_err(|e| format!("invalid --listen address {listen:?}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "pop3-demo: cannot listen on {addr}: the port is already in use \
                 (another server running?). Pick another one with --listen ADDR."
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("pop3-demo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    println!("pop3-demo listening on {local} (user {USER}, password {PASSWORD})");
    let store = Arc::new(Mutex::new(Store {
        messages: MESSAGES
            .iter()
            .filter_map(|(uid, body)| {
                Uid::try_from(uid.to_string())
                    .ok()
                    .map(|u| (u, Arc::<[u8]>::from(*body)))
            })
            .collect(),
        locked: false,
    }));
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("pop3-demo: accept failed: {e}");
                continue;
            }
        };
        let store = store.clone();
        let n = counter.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = serve(stream, store, n).await {
                eprintln!("pop3-demo: connection from {peer}: {e}");
            }
        });
    }
}

/// Releases the maildrop lock when a connection ends, however it ends.
struct LockGuard {
    store: Arc<Mutex<Store>>,
    held: bool,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.held {
            if let Ok(mut s) = self.store.lock() {
                s.locked = false;
            }
        }
    }
}

async fn serve(mut stream: TcpStream, store: Arc<Mutex<Store>>, n: u64) -> std::io::Result<()> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut config = ServerConfig::default();
    config.greeting = "Mailbag pop3-demo ready.".into();
    config.apop_timestamp = Some(format!("<{}.{n}.{secs}@localhost>", std::process::id()));
    config.implementation = Some("Mailbag pop3-demo".into());
    let mut session = ServerSession::new(config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut guard = LockGuard {
        store: store.clone(),
        held: false,
    };
    // The listing of this session: message numbers are fixed at login.
    let mut snapshot: Vec<(Uid<'static>, Arc<[u8]>)> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_input = Instant::now();
    loop {
        while let Some(event) = session.next_event() {
            let answered = match event {
                Event::Login(req) => {
                    if req.user.as_str() == USER && req.check_secret(PASSWORD) {
                        session.accept_login()
                    } else {
                        session.reject_login(AuthFailure::Credentials)
                    }
                }
                Event::OpenMaildrop { .. } => {
                    let mut s = store
                        .lock()
                        .map_err(|_| std::io::Error::other("maildrop lock poisoned"))?;
                    if s.locked {
                        drop(s);
                        session.maildrop_failed(MaildropFailure::InUse)
                    } else {
                        s.locked = true;
                        guard.held = true;
                        snapshot = s.messages.clone();
                        drop(s);
                        let listing = snapshot
                            .iter()
                            .map(|(uid, body)| MessageInfo::new(crlf_len(body), uid.clone()))
                            .collect();
                        session.maildrop_opened(listing)
                    }
                }
                Event::Retrieve(req) => match snapshot.get(req.index) {
                    Some((_, body)) => {
                        let body = body.clone();
                        let mut r = Ok(());
                        for chunk in body.chunks(4096) {
                            match session.message_chunk(chunk) {
                                Ok(mailbag_pop3_proto::codec::BodyProgress::Done) => break,
                                Ok(_) => {}
                                Err(e) => {
                                    r = Err(e);
                                    break;
                                }
                            }
                            // Write as we go so a large message is never
                            // held twice in memory.
                            write_output(&mut stream, &mut session).await?;
                        }
                        r.and_then(|()| session.message_end())
                    }
                    None => session.message_failed(),
                },
                Event::Commit { deleted } => {
                    let result = match store.lock() {
                        Ok(mut s) => {
                            for number in &deleted {
                                if let Some((uid, _)) = snapshot.get(number.index()) {
                                    s.messages.retain(|(u, _)| u != uid);
                                }
                            }
                            s.locked = false;
                            guard.held = false;
                            Ok(())
                        }
                        Err(_) => Err(CommitFailure),
                    };
                    session.commit_done(result)
                }
                // No TLS in this demo (STLS is never offered), and future
                // event kinds are not handled: end the connection.
                _ => {
                    return Err(std::io::Error::other("unsupported event"));
                }
            };
            answered.map_err(std::io::Error::other)?;
        }
        if !session.output().is_empty() {
            write_output(&mut stream, &mut session).await?;
            continue;
        }
        if session.is_closed() {
            stream.shutdown().await.ok();
            return Ok(());
        }
        let deadline = session
            .deadline(last_input.into_std())
            .map(Instant::from_std)
            .unwrap_or_else(Instant::now);
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => session.timed_out(),
            // Connection dropped: never UPDATE, the guard releases the lock.
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => {
                session.feed(buf.get(..n).unwrap_or_default());
                last_input = Instant::now();
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

async fn write_output(stream: &mut TcpStream, session: &mut ServerSession) -> std::io::Result<()> {
    let out = session.output();
    if !out.is_empty() {
        stream.write_all(out).await?;
        let n = out.len();
        session.consume_output(n);
    }
    Ok(())
}
