//! systemd socket activation and notification, without systemd: systemd's
//! own `systemd-socket-activate` binds the sockets, names them
//! (`--fdname`) and starts mailbagd on the first connection with
//! `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`, as systemd does for a
//! `.socket` unit. mailbagd serves POP3 and SMTP on the passed sockets
//! (binding none of their configured addresses), binds the configured web
//! page itself, since no socket was passed for it (with a warning), and
//! tells the test's
//! `NOTIFY_SOCKET` `READY=1`, `WATCHDOG=1`, `RELOADING=1` and `STOPPING=1`.
//! Under `CI=true` a missing systemd-socket-activate or python3 fails the
//! tests.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, require};

/// Kills and reaps the launched server however the test ends.
struct Launched(Child);

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let cfg = dir.join("mailbag.toml");
    // The configured POP3 and SMTP addresses are never bound under socket
    // activation (sockets are passed for them); the web page gets none, so
    // mailbagd binds its configured address.
    std::fs::write(
        &cfg,
        format!(
            r#"hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = {data:?}
[pop3]
listen = ["127.0.0.1:1"]
[smtp]
listen = ["127.0.0.1:2"]
submission_listen = []
[relay]
queue_dir = {queue:?}
[web]
listen = ["127.0.0.1:0"]
[[users]]
name = "joe"
password = "secret"
"#,
            queue = data.join("queue"),
        ),
    )
    .unwrap();
    cfg
}

/// Connects once systemd-socket-activate listens (it binds after it starts).
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("systemd-socket-activate does not listen on {port}: {e}"),
        }
    }
}

/// The next notification, within 10 seconds.
fn next_notification(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn wait_for(sock: &UnixDatagram, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = next_notification(sock);
        if n.contains(what) {
            return n;
        }
        assert!(Instant::now() < deadline, "no {what:?} notification");
    }
}

#[test]
fn passed_sockets_serve_pop3_and_smtp_and_systemd_is_notified() {
    if !require("systemd-socket-activate") || !require("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The ports are picked, then bound by the launcher: another process may
    // take one in between. Connect only once the launcher says it listens on
    // both (its "Listening on" lines); otherwise start again on new ports.
    let log_path = dir.path().join("mailbagd.log");
    let mut attempt = 0;
    let (pop3, smtp, child) = loop {
        attempt += 1;
        let (pop3, smtp) = (free_port(), free_port());
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("systemd-socket-activate")
            .arg(format!("--listen=127.0.0.1:{pop3}"))
            .arg(format!("--listen=127.0.0.1:{smtp}"))
            .arg("--fdname=pop3:smtp")
            .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
            .arg("--setenv=WATCHDOG_USEC=400000")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_mailbagd"))
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("systemd-socket-activate");
        let mut child = Launched(child);
        let listening = |port: u16| format!("Listening on 127.0.0.1:{port} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        let up = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains(&listening(pop3)) && text.contains(&listening(smtp)) {
                break true;
            }
            if child.0.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if up {
            break (pop3, smtp, child);
        }
        assert!(
            attempt < 3,
            "systemd-socket-activate did not listen: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    };
    let mut child = child;
    let stdout = child.0.stdout.take().unwrap();
    // systemd-socket-activate listens at once and starts mailbagd on the
    // first connection (as a .socket unit does): this one.
    let first = connect(pop3);
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut greeting = String::new();
    let read = BufReader::new(&first).read_line(&mut greeting);
    assert!(
        read.is_ok() && greeting.starts_with("+OK"),
        "{read:?} {greeting:?}\n{}",
        std::fs::read_to_string(dir.path().join("mailbagd.log")).unwrap_or_default()
    );
    let ready = wait_for(&notify, "READY=1");
    assert!(ready.contains("READY=1"));

    // What it announces: the passed sockets, and the web page it bound.
    let mut announced = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while announced.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("announced only {announced:?}: {e}"));
        if let Some(rest) = line.strip_prefix("mailbagd: listening ") {
            announced.push(rest.to_owned());
        }
    }
    announced.sort();
    assert_eq!(
        announced[1..],
        [
            format!("pop3 127.0.0.1:{pop3}"),
            format!("smtp 127.0.0.1:{smtp}")
        ]
    );
    let web: u16 = announced[0]
        .strip_prefix("http 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{announced:?}"));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("no socket was passed for this configured listener")
            && log.contains("web.listen"),
        "{log}"
    );
    let mut page = connect(web);
    std::io::Write::write_all(&mut page, b"GET /login HTTP/1.0\r\n\r\n").unwrap();
    let mut status = String::new();
    BufReader::new(&page).read_line(&mut status).unwrap();
    assert!(
        status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200"),
        "{status}"
    );

    // A POP3 login and an SMTP delivery on the passed sockets.
    let script = r#"
import poplib, smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[2]), timeout=20)
s.sendmail('a@example.org', ['joe@example.test'], b'Subject: hi\r\n\r\nthrough a passed socket\r\n')
s.quit()
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.user('joe'); p.pass_('secret')
print(p.stat()[0]); p.quit()
"#;
    let out = common::python(script, &[&pop3.to_string(), &smtp.to_string()]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.trim(), "1");

    // The watchdog is fed (every half WATCHDOG_USEC), a reload is announced,
    // and so is the end.
    wait_for(&notify, "WATCHDOG=1");
    wait_for(&notify, "WATCHDOG=1");
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let reloading = wait_for(&notify, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    wait_for(&notify, "READY=1");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(&notify, "STOPPING=1");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_passed_socket_with_an_unknown_name_stops_start_up() {
    if !require("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let port = free_port();
    let child = Command::new("systemd-socket-activate")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--fdname=imap")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_mailbagd"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    let mut child = Launched(child);
    let _first = connect(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "mailbagd kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("\"imap\"") && err.contains("FileDescriptorName"),
        "{err}"
    );
}
