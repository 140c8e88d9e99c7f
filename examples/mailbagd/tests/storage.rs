//! Mail is never lost to a local fault (issue 14): Maildirs made by other
//! tools, local failures answered with 4xx, a full disk, spool files, and
//! file permissions. Real clients (Python's smtplib and poplib, a raw
//! socket for the dialogues smtplib cannot hold open) against a spawned
//! `mailbagd`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{Options, Server, message, py_pop_login, py_send};

/// A line-oriented raw SMTP client.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn connect(server: &Server) -> Raw {
        let s = TcpStream::connect(server.addrs["smtp"]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Raw {
            r: BufReader::new(s),
            w,
        };
        assert!(c.reply().starts_with("220"));
        assert!(c.smtp("EHLO client.example.org").starts_with("250"));
        c
    }
    /// Reads an SMTP reply (all continuation lines); returns the last line.
    fn reply(&mut self) -> String {
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).unwrap();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }
    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
        self.w.write_all(b"\r\n").unwrap();
    }
    fn smtp(&mut self, s: &str) -> String {
        self.send(s);
        self.reply()
    }
}

/// Removes a Maildir the server may still be touching (its start-up
/// retention sweep completes missing folders), retrying until it is gone.
fn remove_maildir(dir: &Path) {
    for _ in 0..50 {
        if fs::remove_dir_all(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot remove {}", dir.display());
}

fn send_to(server: &Server, to: &str, subject: &str) -> String {
    py_send(
        server,
        "smtp",
        "127.0.0.1",
        "sender@example.org",
        to,
        &message(to, subject, "hello"),
    )
}

/// A Maildir made by an administrator's `mkdir`, or by another delivery
/// agent that made only `.Spam/`: completed at start-up, and on delivery
/// for one made while the server runs; the mail is accepted and retrieved.
#[test]
fn maildirs_made_with_mkdir_accept_mail_and_serve_pop3() {
    let server = Server::start_with(Options::default(), |data| {
        fs::create_dir(data.join("joe")).unwrap();
        fs::create_dir_all(data.join("ann/.Spam")).unwrap();
    });
    assert!(server.data.join("ann/.Spam/maildirfolder").is_file());
    // Made while the server runs: completed by the delivery.
    let bob = server.data.join("bob");
    remove_maildir(&bob);
    fs::create_dir(&bob).unwrap();
    for (user, subject) in [("joe", "to joe"), ("ann", "to ann"), ("bob", "to bob")] {
        let to = format!("{user}@example.test");
        let v = send_to(&server, &to, subject);
        assert_eq!(v, "SENT", "{user}: {v}\n{}", server.log());
        let pass = if user == "bob" { "bobpw" } else { "secret" };
        let stat = py_pop_login(&server, "127.0.0.1", user, pass);
        assert!(
            stat.starts_with("OK 1 "),
            "{user}: {stat}\n{}",
            server.log()
        );
        let texts = server.message_texts(user, "");
        assert!(
            texts[0].contains(&format!("Subject: {subject}")),
            "{texts:?}"
        );
    }
    assert!(
        !server.log().contains("retention sweep failed"),
        "{}",
        server.log()
    );
}

/// A message another program named with a wrong `,W=` (the CRLF size it
/// claims is 50, the bare-LF file makes 51): the first session lists what the
/// name says and RETR sends the real octets; after that RETR and QUIT, the
/// next session lists the octets RETR sends (RFC 1939 section 5). poplib is
/// the client.
#[test]
fn a_wrong_size_in_a_file_name_is_corrected_after_one_retr() {
    if !common::require("python3") {
        return;
    }
    let server = Server::start_with(Options::default(), |data| {
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(data.join("joe").join(sub)).unwrap();
        }
        let body = "From: a@b\nSubject: barelf\n\nline1\nline2\nline3\n";
        fs::write(data.join("joe/new/1.M1P1.e,S=45,W=50"), body).unwrap();
    });
    let script = r#"
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
p.user('joe'); p.pass_('secret')
listed = p.list(1).split()[2].decode()
resp, lines, octets = p.retr(1)
sent = sum(len(l) + 2 for l in lines)
p.quit()
print(listed, sent)
"#;
    let port = server.port("pop3").to_string();
    let run = || {
        let out = common::python(script, &["127.0.0.1", &port]);
        assert!(out.ok(), "{out:?}");
        out.stdout.trim().to_owned()
    };
    assert_eq!(run(), "50 51");
    assert_eq!(run(), "51 51", "{}", server.log());
}

/// A local fault is never a 5xx: a configured user's Maildir replaced by a
/// regular file (a path component that is a file — root ignores modes, so
/// this is the fault a test running as root can inject) gets `451 4.3.0`
/// after DATA, and nothing is stored for anyone.
#[test]
fn a_local_fault_is_answered_451_and_stores_nothing() {
    let server = Server::start();
    let joe = server.data.join("joe");
    remove_maildir(&joe);
    fs::write(&joe, b"not a Maildir").unwrap();
    let mut c = Raw::connect(&server);
    assert!(c.smtp("MAIL FROM:<sender@example.org>").starts_with("250"));
    assert!(c.smtp("RCPT TO:<ann@example.test>").starts_with("250"));
    assert!(c.smtp("RCPT TO:<joe@example.test>").starts_with("250"));
    assert!(c.smtp("DATA").starts_with("354"));
    c.send("Subject: broken\r\n\r\nbody\r\n.");
    let r = c.reply();
    c.smtp("QUIT");
    assert!(r.starts_with("451 4.3.0"), "{r}\n{}", server.log());
    assert!(server.messages("ann", "").is_empty(), "stored behind a 4xx");
    assert_eq!(fs::read(&joe).unwrap(), b"not a Maildir");
}

/// Below `[limits] min_free_space`, SMTP refuses new mail with `452 4.3.1`
/// (a real client sees it at MAIL FROM), while POP3 still logs in and
/// deletes.
#[test]
fn low_free_space_refuses_mail_with_452_and_pop3_still_works() {
    let opts = Options {
        limits: "min_free_space = \"1000000TiB\"\n".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |data| {
        // Mail delivered earlier (by another tool), to be deleted to make room.
        let new = data.join("joe/new");
        fs::create_dir_all(&new).unwrap();
        fs::write(new.join("1700000000.M1P1.other"), b"Subject: old\n\nold\n").unwrap();
    });
    let v = send_to(&server, "joe@example.test", "no room");
    assert!(
        v.starts_with("MAIL-REFUSED 452 4.3.1"),
        "{v}\n{}",
        server.log()
    );
    let mut c = Raw::connect(&server);
    assert!(c.smtp("RCPT TO:<joe@example.test>").starts_with("503"));
    c.smtp("QUIT");
    let port = server.port("pop3").to_string();
    let out = common::python(
        r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.user('joe'); p.pass_('secret')
print(p.stat()[0]); p.dele(1); p.quit()
"#,
        &[&port],
    );
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert_eq!(out.stdout.trim(), "1");
    assert!(server.messages("joe", "").is_empty());
}

/// Spool files never outlive their transaction: a named spool file left by
/// an earlier version killed during DATA is removed at start-up, and a
/// message larger than the in-memory spool is spilled to a file without a
/// name, so `.spool/` stays empty during and after DATA.
#[test]
fn spool_files_never_outlive_their_transaction() {
    let server = Server::start_with(Options::default(), |data| {
        let spool = data.join(".spool");
        fs::create_dir_all(&spool).unwrap();
        fs::write(spool.join("spool.4242.0"), b"half a message").unwrap();
    });
    let spool = server.data.join(".spool");
    let entries = |p: &Path| -> Vec<PathBuf> {
        fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    assert!(entries(&spool).is_empty(), "{:?}", entries(&spool));
    let mut c = Raw::connect(&server);
    assert!(c.smtp("MAIL FROM:<sender@example.org>").starts_with("250"));
    assert!(c.smtp("RCPT TO:<joe@example.test>").starts_with("250"));
    assert!(c.smtp("DATA").starts_with("354"));
    c.send("Subject: big\r\n");
    let line = "x".repeat(998);
    for _ in 0..400 {
        c.send(&line); // 400 KB: over the 256 KiB in-memory spool
    }
    // The server has read (and spilled) it: still nothing to see.
    std::thread::sleep(Duration::from_millis(500));
    assert!(entries(&spool).is_empty(), "{:?}", entries(&spool));
    let r = c.smtp(".");
    assert!(r.starts_with("250"), "{r}\n{}", server.log());
    c.smtp("QUIT");
    assert!(entries(&spool).is_empty(), "{:?}", entries(&spool));
    assert_eq!(server.messages("joe", "").len(), 1);
}

/// Every file and directory under `dir` (not `dir` itself) with its mode bits.
fn modes(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let meta = fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            modes(&p, out);
        }
    }
}

/// Mail, UID lists, locks, settings, spool and queue files are private to
/// the server's account: files `0600`, directories `0700`.
#[test]
fn mail_and_queue_files_are_private() {
    let server = Server::start();
    assert_eq!(send_to(&server, "joe@example.test", "local"), "SENT");
    assert_eq!(send_to(&server, "ann@example.test", "local"), "SENT");
    // A POP3 login (UID list, lock) authorizes relaying: a queue file.
    assert!(py_pop_login(&server, "127.0.0.1", "ann", "secret").starts_with("OK 1"));
    let v = send_to(&server, "someone@elsewhere.example", "relayed");
    assert_eq!(v, "SENT", "{}", server.log());
    assert_eq!(server.queued().len(), 1);
    let mut all = Vec::new();
    modes(&server.data, &mut all);
    let names: Vec<String> = all.iter().map(|(p, _)| p.display().to_string()).collect();
    for want in ["mailbag-uidlist", "queue/msg", "/new/", ".spool"] {
        assert!(names.iter().any(|n| n.contains(want)), "{want}: {names:?}");
    }
    for (p, mode) in all {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
    }
}

/// A tmpfs mounted for a test; unmounted (lazily: the server may still
/// hold it) when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A server whose relay queue is on a tmpfs; the tmpfs goes first (fields
/// drop in order), so that the server's directory can then be removed.
struct QueueOnTmpfs {
    _queue: Tmpfs,
    server: Server,
}

/// The relay queue's disk fills while a message for a local user and a
/// remote recipient is written: `451 4.3.0`, and the local user's copy is
/// not stored either, so the client's retry duplicates nothing (a probe
/// found joe's copy stored behind each `451`: the queue body's last write,
/// buffered, failed only when the queue copy was committed, after joe's).
/// Needs root to mount a 64 KiB tmpfs (skipped otherwise, but not under
/// `CI=true`, which runs as root).
#[test]
fn a_full_queue_disk_stores_nothing_behind_its_451() {
    if !common::require("python3") {
        return;
    }
    let mounted = std::cell::Cell::new(None::<PathBuf>);
    let server = Server::start_with(
        Options {
            limits: "min_free_space = \"0\"\n".into(),
            ..Options::default()
        },
        |data| {
            let queue = data.join("queue");
            fs::create_dir_all(&queue).unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(&queue)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                mounted.set(Some(queue));
            }
        },
    );
    let Some(queue) = mounted.take() else {
        assert!(!common::in_ci(), "mounting a tmpfs needs root, as CI runs");
        eprintln!("SKIP: cannot mount a tmpfs");
        return;
    };
    let t = QueueOnTmpfs {
        _queue: Tmpfs(queue),
        server,
    };
    let server = &t.server;
    assert!(py_pop_login(server, "127.0.0.2", "joe", "secret").starts_with("OK"));
    let big = "x".repeat(76);
    let body: String = (0..1000).map(|i| format!("{i:04} {big}\r\n")).collect();
    let msg = format!("Subject: too big for the queue disk\r\n\r\n{body}.\r\n");
    for _ in 0..2 {
        let r = common::raw_smtp_port(
            server,
            server.port("smtp"),
            "127.0.0.2",
            &[
                b"EHLO c\r\n",
                b"MAIL FROM:<joe@example.test>\r\n",
                b"RCPT TO:<joe@example.test>\r\n",
                b"RCPT TO:<t@remote.example>\r\n",
                b"DATA\r\n",
                msg.as_bytes(),
            ],
        );
        assert!(r[6].starts_with("451 4.3.0"), "{r:?}\n{}", server.log());
    }
    assert!(
        server.messages("joe", "").is_empty(),
        "stored behind a 451\n{}",
        server.log()
    );
    assert!(server.queued().is_empty());
}
