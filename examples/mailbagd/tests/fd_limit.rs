//! The open-file limit: started (through util-linux's `prlimit`) with a soft
//! limit of 1,024 under a hard limit of 16,384, mailbagd raises its soft
//! limit to the hard one and says so; under a hard limit of 1,024 it lowers
//! the default connection limits to fit and a client past the lowered POP3
//! limit is refused while the others are served; limits the configuration
//! wrote that need more are kept and named in a warning, and the server
//! still serves, also with a stdout closed before it wrote its first line;
//! defaulted roles squeezed to a handful of connections by a written one are
//! a warning. A message for 60 local users is delivered under a limit of 48
//! descriptors. Under `CI=true` a missing `prlimit` fails the test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::require;

/// Kills and reaps the server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How the test treats the server's stdout.
#[derive(Clone, Copy, PartialEq)]
enum Stdout {
    /// Read until the POP3 "listening" line, then closed.
    ReadFirstLine,
    /// Closed before the server writes anything: every write to it fails.
    Closed,
}

/// The address the server's log says `role` listens on, waited for (10 s
/// at most: the log line can follow the stdout line the caller saw).
fn log_addr(log: &Path, role: &str) -> Option<std::net::SocketAddr> {
    let mut addr = None;
    common::wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        addr = text
            .split(&format!("role=\"{role}\" addr="))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        addr.is_some()
    });
    addr
}

/// Starts mailbagd under `prlimit --nofile=SOFT:HARD` with `extra` (TOML
/// lines in `[limits]`, or tables after it); returns it once it listens,
/// with its log file and its POP3 address.
fn start(
    dir: &Path,
    soft: u64,
    hard: u64,
    extra: &str,
    stdout: Stdout,
) -> (Running, std::path::PathBuf, std::net::SocketAddr) {
    let data = dir.join("data");
    let cfg = dir.join("mailbag.toml");
    std::fs::write(
        &cfg,
        format!(
            "hostname = \"mail.example.test\"\nlocal_domains = [\"example.test\"]\n\
             data_dir = {data:?}\n[pop3]\nlisten = [\"127.0.0.1:0\"]\n[smtp]\n\
             listen = [\"127.0.0.1:0\"]\nsubmission_listen = []\n[web]\nlisten = []\n\
             [limits]\nmax_connections_per_ip = 1000\n{extra}\n\
             [relay]\nqueue_dir = {queue:?}\n[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
            queue = data.join("queue"),
        ),
    )
    .unwrap();
    let log = dir.join(format!("mailbagd-{soft}-{hard}.log"));
    let child = Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_mailbagd"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit");
    let mut child = Running(child);
    let out = BufReader::new(child.0.stdout.take().unwrap());
    if stdout == Stdout::Closed {
        drop(out);
        // The address from the log line instead.
        let Some(addr) = log_addr(&log, "pop3") else {
            panic!(
                "mailbagd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        return (child, log, addr);
    }
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("mailbagd: listening pop3 ") {
            return (child, log, addr.parse().unwrap());
        }
    }
    panic!(
        "mailbagd did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// The soft open-file limit of a running process.
fn soft_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn log_has(log: &Path, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(what)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The first line a new POP3 connection to `addr` gets.
fn greeting(addr: std::net::SocketAddr) -> (std::net::TcpStream, String) {
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(&tcp).read_line(&mut line).unwrap();
    (tcp, line)
}

#[test]
fn the_soft_limit_is_raised_and_connection_limits_fit_it() {
    if !require("prlimit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, log, _) = start(dir.path(), 1024, 16384, "", Stdout::ReadFirstLine);
    assert_eq!(soft_limit(server.0.id()), 16384);
    assert!(log_has(&log, "open-file limit raised"), "{log:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("from=1024") && text.contains("to=16384"),
        "{text}"
    );
    // (16,384 - 20 outbound × 3 - 128 reserved) / 3 per connection = 5,398 of
    // the default 11,000.
    assert!(text.contains("default connection limits lowered"), "{text}");
    assert!(text.contains("pop3=2453 smtp=2453"), "{text}");
    drop(server);

    // Under a hard limit of 1,024 the defaults become 126, 126, 12 and 12:
    // the 127th POP3 client is refused, not left to an accept() that fails.
    let dir = tempfile::tempdir().unwrap();
    let (server, log, pop3) = start(dir.path(), 1024, 1024, "", Stdout::ReadFirstLine);
    assert_eq!(soft_limit(server.0.id()), 1024);
    assert!(
        log_has(&log, "default connection limits lowered"),
        "{log:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("limit=1024 pop3=126 smtp=126 submission=12 web=12"),
        "{text}"
    );
    assert!(!text.contains("open-file limit below"), "{text}");
    let mut held = Vec::new();
    for _ in 0..126 {
        let (tcp, line) = greeting(pop3);
        assert!(line.starts_with("+OK"), "{line}");
        held.push(tcp);
    }
    let (_, line) = greeting(pop3);
    assert!(
        line.starts_with("-ERR [SYS/TEMP] Too many connections"),
        "{line}"
    );
    drop(held);
    assert!(
        common::wait_until(Duration::from_secs(5), || greeting(pop3)
            .1
            .starts_with("+OK")),
        "a slot comes back when a client leaves"
    );
    drop(server);

    // Limits written in the configuration are kept: 1,000 connections need
    // 3,188 descriptors, which the limit does not have.
    let dir = tempfile::tempdir().unwrap();
    let (server, log, pop3) = start(
        dir.path(),
        1024,
        1024,
        "max_connections = 1000",
        Stdout::Closed,
    );
    assert!(log_has(&log, "open-file limit below what"), "{log:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("limit=1024 needed=3188"), "{text}");
    assert!(!text.contains("lowered"), "{text}");
    // Still serving, and alive although every write to its stdout failed.
    assert!(greeting(pop3).1.starts_with("+OK"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("ERROR") && !text.contains("panicked"),
        "{text}"
    );
    drop(server);

    // One role written (`pop3 = 900`), the others defaulted: they get what
    // is left, one connection each, and that is a warning, not a note.
    let dir = tempfile::tempdir().unwrap();
    let (server, log, _) = start(
        dir.path(),
        1024,
        1024,
        "max_connections = { pop3 = 900 }",
        Stdout::ReadFirstLine,
    );
    assert!(
        log_has(&log, "default connection limits lowered"),
        "{log:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("default connection limits lowered"))
        .unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("pop3=900 smtp=1 submission=1 web=1"),
        "{line}"
    );
    assert!(text.contains("open-file limit below what"), "{text}");
    drop(server);
}

/// A message for 60 local users under an open-file limit of 48 (the server
/// holds about 15 of its own): every copy is written, fsynced and closed
/// before the first is committed (`Delivery::seal`), so the transaction
/// holds three descriptors, not 60 more; smtplib gets `250` and every user
/// one message.
#[test]
fn a_message_for_many_local_users_needs_no_descriptor_per_user() {
    if !require("prlimit") || !require("python3") {
        return;
    }
    const USERS: usize = 60;
    let users: String = (1..=USERS)
        .map(|i| format!("[[users]]\nname = \"u{i}\"\npassword = \"pw\"\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (server, log, _) = start(dir.path(), 48, 48, &users, Stdout::ReadFirstLine);
    let smtp = log_addr(&log, "smtp").expect("smtp address in the log");
    let rcpts: Vec<String> = (1..=USERS).map(|i| format!("u{i}@example.test")).collect();
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
refused = s.sendmail('a@example.net', sys.argv[2].split(','),
    b'Subject: to many\r\n\r\nOne message, many local users.\r\n')
s.quit()
print('refused', len(refused))
"#;
    let out = common::python(script, &[&smtp.port().to_string(), &rcpts.join(",")]);
    assert!(
        out.ok() && out.stdout.contains("refused 0"),
        "{out:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for i in 1..=USERS {
        let new = dir.path().join(format!("data/u{i}/new"));
        let n = std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0);
        assert_eq!(n, 1, "u{i}");
    }
    drop(server);
}
