//! `pop3-demo`: a POP3 server for a fixed in-memory maildrop, built on
//! `mailbag-pop3-proto`'s sans-IO [`ServerSession`], driven over tokio by the
//! crate's own driver (`driver::server::serve`, feature `tokio`): this file
//! holds only the demo's policy, one [`ServerHandler`].
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

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mailbag_pop3_proto::codec::{BodyProgress, crlf_len};
use mailbag_pop3_proto::driver::{
    self,
    server::{Exchange, ServeOptions, ServerHandler},
};
use mailbag_pop3_proto::session::{
    AuthFailure, CommitFailure, Event, MaildropFailure, MessageInfo, ServerConfig, ServerSession,
};
use mailbag_pop3_proto::types::Uid;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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

/// One connection's side of the protocol: answers the session's events
/// against the shared store. [`driver::server::serve`] (pop3-proto's tokio
/// driver) does the reading, writing, pipelining and autologout.
struct Demo {
    store: Arc<Mutex<Store>>,
    /// Whether this connection holds the maildrop lock.
    holds_lock: bool,
    /// The listing of this session: message numbers are fixed at login.
    snapshot: Vec<(Uid<'static>, Arc<[u8]>)>,
}

/// Releases the maildrop lock when a connection ends, however it ends
/// (a dropped connection never reaches UPDATE: nothing is removed).
impl Drop for Demo {
    fn drop(&mut self) {
        if self.holds_lock {
            if let Ok(mut s) = self.store.lock() {
                s.locked = false;
            }
        }
    }
}

impl ServerHandler<TcpStream> for Demo {
    async fn handle(&mut self, event: Event, ex: &mut Exchange<'_, TcpStream>) -> io::Result<()> {
        let answered = match event {
            Event::Login(req) => {
                if req.user.as_str() == USER && req.check_secret(PASSWORD) {
                    ex.session().accept_login()
                } else {
                    ex.session().reject_login(AuthFailure::Credentials)
                }
            }
            Event::OpenMaildrop { .. } => {
                let mut s = self
                    .store
                    .lock()
                    .map_err(|_| io::Error::other("maildrop lock poisoned"))?;
                if s.locked {
                    drop(s);
                    ex.session().maildrop_failed(MaildropFailure::InUse)
                } else {
                    s.locked = true;
                    self.holds_lock = true;
                    self.snapshot = s.messages.clone();
                    drop(s);
                    let listing = self
                        .snapshot
                        .iter()
                        .map(|(uid, body)| MessageInfo::new(crlf_len(body), uid.clone()))
                        .collect();
                    ex.session().maildrop_opened(listing)
                }
            }
            Event::Retrieve(req) => match self.snapshot.get(req.index) {
                Some((_, body)) => {
                    let body = body.clone();
                    let mut chunks = body.chunks(4096).peekable();
                    // Written as it goes: a large message is never held twice.
                    while let Some(chunk) = chunks.next() {
                        let last = chunks.peek().is_none();
                        if ex.send_message_chunk(chunk, last).await? == BodyProgress::Done {
                            break;
                        }
                    }
                    if body.is_empty() {
                        ex.send_message_chunk(&[], true).await?;
                    }
                    Ok(())
                }
                None => ex.session().message_failed(),
            },
            Event::Commit { deleted } => {
                let result = match self.store.lock() {
                    Ok(mut s) => {
                        for number in &deleted {
                            if let Some((uid, _)) = self.snapshot.get(number.index()) {
                                s.messages.retain(|(u, _)| u != uid);
                            }
                        }
                        s.locked = false;
                        self.holds_lock = false;
                        Ok(())
                    }
                    Err(_) => Err(CommitFailure),
                };
                ex.session().commit_done(result)
            }
            // No TLS in this demo (STLS is never offered), and future event
            // kinds are not handled: end the connection.
            _ => return Err(io::Error::other("unsupported event")),
        };
        answered.map_err(io::Error::other)
    }
}

async fn serve(stream: TcpStream, store: Arc<Mutex<Store>>, n: u64) -> io::Result<()> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut config = ServerConfig::default();
    config.greeting = "Mailbag pop3-demo ready.".into();
    config.apop_timestamp = Some(format!("<{}.{n}.{secs}@localhost>", std::process::id()));
    config.implementation = Some("Mailbag pop3-demo".into());
    let session =
        ServerSession::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut demo = Demo {
        store,
        holds_lock: false,
        snapshot: Vec::new(),
    };
    // No shutdown in this demo: a token that is never cancelled.
    let never = CancellationToken::new();
    driver::server::serve(stream, session, &mut demo, &ServeOptions::default(), &never).await?;
    Ok(())
}
