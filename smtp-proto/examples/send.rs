//! Sends one message through a submission server, with STARTTLS.
//!
//! ```text
//! cargo run -p mailbag-smtp-proto --example send -- \
//!     --cafile ca.pem 127.0.0.1:587 alice@example.org bob@example.net message.eml
//! ```
//!
//! The sans-IO [`ClientSession`] speaks SMTP (EHLO, STARTTLS, MAIL/RCPT/DATA
//! pipelined when offered, dot-stuffing, one outcome per recipient); this file
//! only moves octets between it and a blocking `TcpStream`, and runs the TLS
//! handshake with rustls when the session asks for it.
//!
//! Options: `--cafile PEM` trusts these certificates (this example has no
//! system root store); with it STARTTLS is **required** (the session fails
//! with `4.7.10` rather than send in plaintext), without it the message goes
//! in plaintext. `--helo NAME` (default `localhost`). The message file is
//! sent as it is (CRLF or LF line ends both work). No SMTP AUTH: it is for
//! servers that authorize by address, such as mailbagd after a POP3 login.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{
    ClientEvent, ClientOptions, ClientSession, Outcome, Status, TlsPolicy, Transaction,
};
use mailbag_smtp_proto::types::HeloName;
use rustls::pki_types::ServerName;

/// Read and write timeout of the connection (the session's own per-reply
/// timeouts are longer; this bounds a dead peer).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The connection, before and after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// Only while the handshake runs.
    Gone,
}

impl Stream {
    fn io(&mut self) -> io::Result<&mut dyn ReadWrite> {
        match self {
            Stream::Plain(s) => Ok(s),
            Stream::Tls(s) => Ok(s.as_mut()),
            Stream::Gone => Err(io::Error::other("connection lost in the TLS handshake")),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn describe(o: &Outcome) -> String {
    let r = o.reply();
    let lines: Vec<&str> = r.lines().iter().map(|l| l.as_ref()).collect();
    match r.enhanced() {
        Some(e) => format!("{} {e} {}", r.code(), lines.join(" / ")),
        None => format!("{} {}", r.code(), lines.join(" / ")),
    }
}

struct Args {
    server: String,
    from: String,
    to: String,
    message: PathBuf,
    cafile: Option<PathBuf>,
    helo: String,
}

fn parse_args() -> Result<Args, String> {
    let mut cafile = None;
    let mut helo = "localhost".to_owned();
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cafile" => cafile = Some(PathBuf::from(it.next().ok_or("--cafile needs a file")?)),
            "--helo" => helo = it.next().ok_or("--helo needs a name")?,
            _ => rest.push(a),
        }
    }
    let [server, from, to, message] = <[String; 4]>::try_from(rest)
        .map_err(|_| "usage: send [--cafile PEM] [--helo NAME] HOST:PORT FROM TO MESSAGE_FILE")?;
    Ok(Args {
        server,
        from,
        to,
        message: PathBuf::from(message),
        cafile,
        helo,
    })
}

fn tls_config(cafile: &PathBuf) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(cafile).map_err(|e| format!("{}: {e}", cafile.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", cafile.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", cafile.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn send(args: &Args) -> Result<String, String> {
    let (from_path, to_path) = (format!("<{}>", args.from), format!("<{}>", args.to));
    let (from, _) = parse_reverse_path(from_path.as_bytes())
        .map_err(|e| format!("sender {}: {e}", args.from))?;
    let (to, _) = parse_forward_path(to_path.as_bytes())
        .map_err(|e| format!("recipient {}: {e}", args.to))?;
    let body =
        std::fs::read(&args.message).map_err(|e| format!("{}: {e}", args.message.display()))?;
    let tls = args.cafile.as_ref().map(tls_config).transpose()?;
    let host = args
        .server
        .rsplit_once(':')
        .map_or(args.server.as_str(), |(h, _)| h)
        .trim_matches(['[', ']']);
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;

    let mut options = ClientOptions::default();
    options.tls = if tls.is_some() {
        TlsPolicy::Required
    } else {
        TlsPolicy::Disabled
    };
    let helo = HeloName::try_from(args.helo.as_str()).map_err(|e| format!("--helo: {e}"))?;
    let mut session = ClientSession::new(helo.into_owned(), options);
    let tcp = TcpStream::connect(&args.server).map_err(|e| format!("{}: {e}", args.server))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut stream = Stream::Plain(tcp);
    let txn = Transaction::new(from).recipient(to);
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = false;
    let mut result = None;
    let io_err = |e: io::Error| e.to_string();
    loop {
        let out = session.take_output();
        if !out.is_empty() {
            let s = stream.io().map_err(io_err)?;
            s.write_all(&out).map_err(io_err)?;
            s.flush().map_err(io_err)?;
        }
        match session.next_event() {
            Some(ClientEvent::Ready) if !sent => {
                sent = true;
                session.send_mail(&txn).map_err(|e| e.to_string())?;
            }
            Some(ClientEvent::Ready) => session.quit(),
            Some(ClientEvent::StartTls) => {
                let config = tls.clone().ok_or("STARTTLS without --cafile")?;
                let Stream::Plain(tcp) = std::mem::replace(&mut stream, Stream::Gone) else {
                    return Err("STARTTLS twice".to_owned());
                };
                let conn = rustls::ClientConnection::new(config, server_name.clone())
                    .map_err(|e| e.to_string())?;
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // Drive the handshake to its end before the session speaks again.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                }
                stream = Stream::Tls(Box::new(tls));
                session.tls_established();
            }
            Some(ClientEvent::SendBody) => {
                session.send_body(&body).map_err(|e| e.to_string())?;
                session.end_body().map_err(|e| e.to_string())?;
            }
            Some(ClientEvent::RecipientReply { .. }) => {}
            Some(ClientEvent::TransactionComplete(r)) => result = Some(r),
            Some(ClientEvent::Closed { error }) => {
                if let Some(e) = error {
                    return Err(format!("session failed: {}", describe(&e)));
                }
                break;
            }
            Some(_) => {}
            // Taking events can queue commands: write them before waiting.
            None if !session.output().is_empty() => {}
            None => {
                let n = stream
                    .io()
                    .map_err(io_err)?
                    .read(&mut buf)
                    .map_err(io_err)?;
                if n == 0 {
                    session.connection_closed();
                } else {
                    session.feed(&buf[..n]);
                }
            }
        }
    }
    let r = result.ok_or("the session ended before the message was sent")?;
    let tls_note = if session.is_tls() { " over TLS" } else { "" };
    let outcome = r.recipients.first().ok_or("no recipient outcome")?;
    match outcome.status() {
        Status::Accepted => Ok(format!("sent{tls_note}: {}", describe(&r.message))),
        _ => Err(format!("refused{tls_note}: {}", describe(outcome))),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match send(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("send: {e}");
            ExitCode::FAILURE
        }
    }
}
