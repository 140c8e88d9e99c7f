//! Connections: listeners of the shipped configuration (IPv4 and IPv6 on one
//! port), per-role connection limits, pipelined POP3 after large responses,
//! write timeouts.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{Options, Server};

/// Has this machine an IPv6 loopback? (Under CI=true it must.)
fn ipv6_loopback() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            assert!(
                !common::in_ci(),
                "no IPv6 loopback (CI=true needs one): {e}"
            );
            eprintln!("SKIP (IPv6 part): no IPv6 loopback on this machine: {e}");
            false
        }
    }
}

/// A port free on every address of both families (bound and released).
fn free_dual_port(v6: bool) -> u16 {
    let addr = if v6 { "[::]:0" } else { "0.0.0.0:0" };
    // On Linux a `[::]` socket without IPV6_V6ONLY holds the IPv4 port too.
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

const PY_POP_TLS: &str = r#"
import poplib, ssl, sys
host, port, user, pw, mode = sys.argv[1:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == 'stls':
    p = poplib.POP3(host, int(port), timeout=20)
    p.stls(ctx)
else:
    p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=20)
try:
    p.user(user); p.pass_(pw)
    n, size = p.stat()
    print('OK', n, size)
    p.quit()
except poplib.error_proto as e:
    print('ERR', e.args[0].decode())
"#;

fn pop_tls_login(host: &str, port: u16, mode: &str) -> String {
    let out = common::python(
        PY_POP_TLS,
        &[host, &port.to_string(), "alice", "secret", mode],
    );
    assert!(out.ok(), "python poplib failed: {out:?}");
    out.stdout.trim().to_owned()
}

/// The shipped `mailbag-production.toml` runs: it lists `0.0.0.0:P` and
/// `[::]:P` for every service, which only binds when the IPv6 listener is
/// IPv6-only. Ports, directories and TLS files are replaced by temporary
/// ones; the rest of the file is used as shipped.
#[test]
fn shipped_production_config_serves_over_ipv4_and_ipv6() {
    if !common::require("python3") {
        return;
    }
    let v6 = ipv6_loopback();
    let shipped =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("mailbag-production.toml"))
            .expect("read mailbag-production.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    fs::write(&cert, ck.cert.pem()).expect("write cert");
    fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");

    let mut text = shipped.clone();
    let mut replace = |from: &str, to: &str| {
        assert!(
            text.contains(from),
            "the shipped config no longer has {from:?}"
        );
        text = text.replace(from, to);
    };
    replace("/var/lib/mailbag/mail", &data.display().to_string());
    replace(
        "/var/spool/mailbag/queue",
        &dir.path().join("queue").display().to_string(),
    );
    replace("/etc/mailbag/fullchain.pem", &cert.display().to_string());
    replace("/etc/mailbag/privkey.pem", &key.display().to_string());
    let mut ports = std::collections::HashMap::new();
    for p in [110u16, 995, 25, 587, 465, 443] {
        let free = free_dual_port(v6);
        replace(
            &format!("\"0.0.0.0:{p}\", \"[::]:{p}\""),
            &if v6 {
                format!("\"0.0.0.0:{free}\", \"[::]:{free}\"")
            } else {
                format!("\"0.0.0.0:{free}\"")
            },
        );
        ports.insert(p, free);
    }
    let cfg = dir.path().join("mailbag.toml");
    fs::write(&cfg, text).expect("write config");
    let server = Server::start_config(
        dir,
        data,
        cfg,
        &[
            "pop3",
            "pop3s",
            "smtp",
            "submission",
            "submissions",
            "https",
        ],
    );
    let mut hosts = vec!["127.0.0.1"];
    if v6 {
        hosts.push("::1");
    }
    for host in hosts {
        for (port, mode) in [(ports[&110], "stls"), (ports[&995], "implicit")] {
            let got = pop_tls_login(host, port, mode);
            assert_eq!(
                got,
                "OK 0 0",
                "POP3 ({mode}) login over {host}; log:\n{}",
                server.log()
            );
        }
    }
}

/// Writes `count` small messages straight into `user`'s Maildir `new/`.
fn seed_maildir(data: &Path, user: &str, count: usize) {
    let base = data.join(user);
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(base.join(sub)).expect("maildir");
    }
    for i in 0..count {
        let name = format!("1700000000.M{i}P1.seed.example.test");
        fs::write(
            base.join("new").join(name),
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n"),
        )
        .expect("seed message");
    }
}

/// Reads until the server closes the connection (bounded by `limit`); panics
/// when the server goes quiet without closing.
fn read_to_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "server did not close within {limit:?}; got {} octets ending {:?}",
            got.len(),
            String::from_utf8_lossy(&got[got.len().saturating_sub(200)..])
        );
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "server went quiet without closing within {limit:?} after {} octets ending {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got[got.len().saturating_sub(200)..])
                )
            }
            Err(e) => panic!(
                "read failed ({e}) after {} octets ending {:?}",
                got.len(),
                String::from_utf8_lossy(&got[got.len().saturating_sub(200)..])
            ),
        }
    }
}

/// Splits a POP3 reply stream into replies: (status line, lines of the
/// multi-line body) given which replies are multi-line.
fn replies(raw: &[u8], multi: &[bool]) -> Vec<(String, usize)> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let mut out = Vec::new();
    for &m in multi {
        let Some(status) = lines.next() else { break };
        let mut n = 0;
        if m && status.starts_with("+OK") {
            for l in lines.by_ref() {
                if l == "." {
                    break;
                }
                n += 1;
            }
        }
        out.push((status.to_owned(), n));
    }
    out
}

const MESSAGES: usize = 3000;
const PIPELINE: &[u8] = b"USER joe\r\nPASS secret\r\nUIDL\r\nLIST\r\nQUIT\r\n";

fn check_pipeline(raw: &[u8]) {
    // Greeting, USER, PASS, UIDL (multi), LIST (multi), QUIT.
    let r = replies(raw, &[false, false, false, true, true, false]);
    assert_eq!(r.len(), 6, "replies: {r:?}");
    for (i, (status, _)) in r.iter().enumerate() {
        assert!(status.starts_with("+OK"), "reply {i}: {status:?} ({r:?})");
    }
    assert_eq!(r[3].1, MESSAGES, "UIDL lines");
    assert_eq!(r[4].1, MESSAGES, "LIST lines");
    assert!(r[5].0.contains("signing off") || r[5].0.starts_with("+OK"));
}

/// USER/PASS/UIDL/LIST/QUIT in one write against a large maildrop: every
/// command is answered, in order, and QUIT closes (no stall after the large
/// UIDL answer until the idle timeout).
#[test]
fn pipelined_pop3_after_large_response_is_answered() {
    let opts = Options {
        pop3_idle: "60s".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |d| seed_maildir(d, "joe", MESSAGES));
    let mut s = TcpStream::connect(server.addrs["pop3"]).expect("connect");
    s.write_all(PIPELINE).expect("write");
    let raw = read_to_close(&mut s, Duration::from_secs(20));
    check_pipeline(&raw);
}

/// Several large answers in a row (UIDL, UIDL, LIST: answered inside the
/// session, without events for the driver), then QUIT, in one write.
#[test]
fn pipelined_pop3_several_large_responses_are_answered() {
    let opts = Options {
        pop3_idle: "60s".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |d| seed_maildir(d, "joe", MESSAGES));
    let mut s = TcpStream::connect(server.addrs["pop3"]).expect("connect");
    s.write_all(b"USER joe\r\nPASS secret\r\nUIDL\r\nUIDL\r\nLIST\r\nQUIT\r\n")
        .expect("write");
    let raw = read_to_close(&mut s, Duration::from_secs(20));
    let r = replies(&raw, &[false, false, false, true, true, true, false]);
    assert_eq!(r.len(), 7, "replies: {r:?}");
    for (i, (status, _)) in r.iter().enumerate() {
        assert!(status.starts_with("+OK"), "reply {i}: {status:?} ({r:?})");
    }
    assert_eq!(
        r.iter().map(|x| x.1).collect::<Vec<_>>(),
        [0, 0, 0, MESSAGES, MESSAGES, MESSAGES, 0]
    );
}

/// The same pipeline written one octet per write.
#[test]
fn pipelined_pop3_one_octet_per_write_is_answered() {
    let opts = Options {
        pop3_idle: "60s".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |d| seed_maildir(d, "joe", MESSAGES));
    let mut s = TcpStream::connect(server.addrs["pop3"]).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    for b in PIPELINE {
        s.write_all(std::slice::from_ref(b)).expect("write");
    }
    let raw = read_to_close(&mut s, Duration::from_secs(20));
    check_pipeline(&raw);
}

/// A client with a small receive buffer (so that a server's writes block
/// soon when it does not read).
fn small_buffer_client(addr: std::net::SocketAddr) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    s.into()
}

fn write_timeout_options() -> Options {
    Options {
        limits: "write_timeout = \"2s\"\n".into(),
        pop3_idle: "10m".into(),
        smtp_idle: "10m".into(),
        ..Options::default()
    }
}

/// Waits (bounded) for the server's log line about a write timeout, then
/// checks that the connection was closed: reading it ends in EOF or a reset.
fn assert_closed_for_write_timeout(server: &Server, client: &mut TcpStream) {
    assert!(
        common::wait_until(Duration::from_secs(30), || server
            .log()
            .contains("write timed out")),
        "no write timeout within 30 s; log:\n{}",
        server.log()
    );
    // What the kernels still hold drains, then the connection ends.
    read_to_close(client, Duration::from_secs(20));
}

/// A POP3 client that pipelines many UIDLs over a large maildrop and never
/// reads is disconnected after `write_timeout` instead of holding the
/// connection (and megabytes of queued replies) forever.
#[test]
fn pop3_client_that_never_reads_is_disconnected_after_write_timeout() {
    let server = Server::start_with(write_timeout_options(), |d| {
        seed_maildir(d, "joe", MESSAGES)
    });
    let mut client = small_buffer_client(server.addrs["pop3"]);
    let mut commands = b"USER joe\r\nPASS secret\r\n".to_vec();
    for _ in 0..200 {
        commands.extend_from_slice(b"UIDL\r\n");
    }
    client.write_all(&commands).expect("write");
    assert_closed_for_write_timeout(&server, &mut client);
    // The maildrop was released: a new session logs in.
    let mut again = TcpStream::connect(server.addrs["pop3"]).expect("connect");
    again
        .write_all(b"USER joe\r\nPASS secret\r\nQUIT\r\n")
        .expect("write");
    let raw = read_to_close(&mut again, Duration::from_secs(20));
    let r = replies(&raw, &[false, false, false, false]);
    assert!(r.iter().all(|(s, _)| s.starts_with("+OK")), "{r:?}");
}

/// The same for SMTP: a client that sends NOOPs and never reads the replies.
#[test]
fn smtp_client_that_never_reads_is_disconnected_after_write_timeout() {
    let server = Server::start_with(write_timeout_options(), |_| {});
    let mut client = small_buffer_client(server.addrs["smtp"]);
    let mut writer = client.try_clone().expect("clone");
    // The writer blocks once the server stops reading; a write timeout ends it.
    writer
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    let feeder = std::thread::spawn(move || {
        let block = b"NOOP\r\n".repeat(1000);
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match writer.write(&block) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
    });
    assert_closed_for_write_timeout(&server, &mut client);
    feeder.join().expect("feeder");
}

/// The same for the web page: a client that pipelines requests and never
/// reads the answers (hyper has no write deadline of its own).
#[test]
fn web_client_that_never_reads_is_disconnected_after_write_timeout() {
    let server = Server::start_with(write_timeout_options(), |_| {});
    let mut client = small_buffer_client(server.addrs["http"]);
    let mut writer = client.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    let feeder = std::thread::spawn(move || {
        let block = b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(100);
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match writer.write(&block) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
    });
    assert_closed_for_write_timeout(&server, &mut client);
    feeder.join().expect("feeder");
}

/// `[pop3] max_errors` and `[smtp] max_errors` end a session after that many
/// erroneous commands (the libraries' fixed 10 and 20 before; a probe found
/// these limits neither documented nor configurable).
#[test]
fn sessions_end_after_max_errors() {
    let server = Server::start_with(
        Options {
            pop3: "max_errors = 2\n".into(),
            smtp: "max_errors = 2\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let talk = |role: &str, lines: &[u8]| -> String {
        let mut s = TcpStream::connect(server.addrs[role]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(lines).unwrap();
        String::from_utf8_lossy(&read_to_close(&mut s, Duration::from_secs(10))).into_owned()
    };
    let pop3 = talk("pop3", b"BOGUS\r\nBOGUS\r\nNOOP\r\n");
    let replies: Vec<&str> = pop3.lines().collect();
    assert_eq!(replies.len(), 3, "{pop3}");
    assert!(replies[2].starts_with("-ERR"), "{pop3}");
    let smtp = talk("smtp", b"EHLO x\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n");
    assert!(
        smtp.trim_end()
            .ends_with("421 4.7.0 Too many errors, closing connection"),
        "{smtp}"
    );
    assert!(
        !smtp.contains("250 2.0.0 OK"),
        "NOOP after the close: {smtp}"
    );
}
