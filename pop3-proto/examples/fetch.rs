//! Fetches a POP3 mailbox into a Maildir, leaving the mail on the server and
//! skipping the messages fetched before (by their UIDL), as `mpop --keep` and
//! `fetchmail --keep` do.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p mailbag-pop3-proto --example fetch -- 127.0.0.1:1110 joe ./Maildir
//! ```
//!
//! The sans-IO [`ClientSession`] speaks POP3; this file only moves octets
//! between it and a blocking `TcpStream` (plain TCP: use it on loopback or
//! inside a TLS tunnel), and writes the files: each message is written to
//! `tmp/`, fsynced and renamed into `new/` with LF line ends, then its UID is
//! appended to `<maildir>/.fetched-uids-<user>@<server>`. A failure part way
//! leaves every message fetched so far in place and recorded, so the next run
//! goes on where this one stopped.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};

/// Read and write timeout of the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The session over a blocking socket.
struct Connection {
    stream: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl Connection {
    fn open(server: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect(server)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Connection {
            stream,
            session: ClientSession::new(ClientOptions::default()),
            buf: vec![0; 64 * 1024],
        })
    }

    /// The next event: writes what the session has to send, reads when it
    /// needs more.
    fn next(&mut self) -> io::Result<ClientEvent> {
        loop {
            // Events first: taking one can release queued commands into the
            // output (nothing is sent before the greeting, nor before the
            // previous reply without PIPELINING).
            if let Some(e) = self.session.next_event() {
                return Ok(e);
            }
            let out = self.session.take_output();
            if !out.is_empty() {
                self.stream.write_all(&out)?;
                continue;
            }
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                self.session.connection_closed();
            } else {
                self.session.feed(&self.buf[..n]);
            }
        }
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// A `-ERR` (or anything but the wanted event) as an error.
fn refused(what: &str, e: ClientEvent) -> io::Error {
    match e {
        ClientEvent::Error { code, text, .. } => match code {
            Some(c) => fail(what, format!("{c:?} {text}")),
            None => fail(what, text),
        },
        other => fail(what, format!("unexpected {other:?}")),
    }
}

/// This host's name for Maildir file names.
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['/', ':'], "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Writes one message into `maildir` (tmp, fsync, rename into new).
struct MaildirWriter {
    tmp: PathBuf,
    new: PathBuf,
    file: File,
    /// A CR at the end of the last chunk, held until we know whether LF follows.
    held_cr: bool,
}

impl MaildirWriter {
    fn create(maildir: &Path, n: u32) -> io::Result<MaildirWriter> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{n}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            hostname()
        );
        let tmp = maildir.join("tmp").join(&name);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(MaildirWriter {
            new: maildir.join("new").join(&name),
            tmp,
            file,
            held_cr: false,
        })
    }

    /// Appends a chunk, CRLF turned into LF (the Maildir convention).
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(chunk.len() + 1);
        let mut bytes = chunk.iter().copied().peekable();
        if self.held_cr {
            self.held_cr = false;
            if bytes.peek() != Some(&b'\n') {
                out.push(b'\r');
            }
        }
        while let Some(b) = bytes.next() {
            match (b, bytes.peek()) {
                (b'\r', Some(b'\n')) => {}
                (b'\r', None) => self.held_cr = true,
                _ => out.push(b),
            }
        }
        self.file.write_all(&out)
    }

    fn commit(mut self) -> io::Result<()> {
        if self.held_cr {
            self.file.write_all(b"\r")?;
        }
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.new)
    }
}

fn fetch(server: &str, user: &str, password: &str, maildir: &Path) -> io::Result<(usize, usize)> {
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(maildir.join(sub))?;
    }
    // The login name may hold `/` (`joe/Spam`): not a path.
    let clean = |s: &str| s.replace(['/', '\\', '\0'], "_");
    let state = maildir.join(format!(".fetched-uids-{}@{}", clean(user), clean(server)));
    let mut seen: HashSet<String> = match File::open(&state) {
        Ok(f) => BufReader::new(f).lines().collect::<io::Result<_>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => return Err(e),
    };
    let mut record = OpenOptions::new().create(true).append(true).open(&state)?;

    let mut c = Connection::open(server)?;
    match c.next()? {
        ClientEvent::Greeting { .. } => {}
        e => return Err(refused("greeting", e)),
    }
    c.session
        .login_user_pass(user, password)
        .map_err(|e| fail("login", e))?;
    match c.next()? {
        ClientEvent::LoggedIn => {}
        e => return Err(refused("login", e)),
    }
    c.session.uidl(None).map_err(|e| fail("UIDL", e))?;
    let listing = match c.next()? {
        ClientEvent::Uidl(entries) => entries,
        e => return Err(refused("UIDL (needed to skip what was fetched)", e)),
    };
    let mut fetched = 0;
    for entry in &listing {
        let uid = entry.uid.as_str().to_owned();
        if seen.contains(&uid) {
            continue;
        }
        let n = entry.number.get();
        c.session.retr(n).map_err(|e| fail("RETR", e))?;
        match c.next()? {
            ClientEvent::MessageStart { .. } => {}
            e => return Err(refused(&format!("RETR {n}"), e)),
        }
        let mut file = MaildirWriter::create(maildir, n)?;
        loop {
            match c.next()? {
                ClientEvent::BodyChunk(chunk) => file.write(&chunk)?,
                ClientEvent::MessageEnd { .. } => break,
                e => return Err(refused(&format!("RETR {n}"), e)),
            }
        }
        file.commit()?;
        writeln!(record, "{uid}")?;
        record.sync_all()?;
        seen.insert(uid);
        fetched += 1;
    }
    c.session.quit().map_err(|e| fail("QUIT", e))?;
    // The QUIT answer (an `-ERR` too: the messages are saved already).
    while !matches!(c.next()?, ClientEvent::Closed) {}
    Ok((fetched, listing.len()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, user, maildir] = args.as_slice() else {
        eprintln!("usage: POP3_PASSWORD=... fetch HOST:PORT USER MAILDIR");
        return ExitCode::from(2);
    };
    let Ok(password) = std::env::var("POP3_PASSWORD") else {
        eprintln!("fetch: set POP3_PASSWORD (a password on the command line shows in `ps`)");
        return ExitCode::from(2);
    };
    match fetch(server, user, &password, Path::new(maildir)) {
        Ok((fetched, total)) => {
            println!(
                "fetched {fetched} new message(s) of {total} into {maildir}; all left on the server"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fetch: {e}");
            ExitCode::FAILURE
        }
    }
}
