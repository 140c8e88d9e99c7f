//! `mailbagd queue list`: what an administrator sees of the relay queue.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use mailbag_mailstore::queue::{
    NewEnvelope, Notify, Outcome, Queue, QueueOptions, Recipient, RecipientState,
};

mod common;
use common::{Out, run};

const USERS: &str = "[[users]]\nname = \"joe\"\npassword = \"secret\"\n";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        format!(
            "data_dir = \"{}\"\n[relay]\nqueue_dir = \"{}\"\n{USERS}",
            dir.join("data").display(),
            dir.join("q").display()
        ),
    )
    .unwrap();
    p
}

fn list(config: &Path, extra: &[&str]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailbagd"));
    c.args(["queue", "list", "--config", config.to_str().unwrap()])
        .args(extra)
        .current_dir(config.parent().unwrap());
    run(&mut c)
}

fn fill(dir: &Path) -> Queue {
    let q = Queue::open(dir.join("q"), QueueOptions::default()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut env = NewEnvelope::new("ann@example.org", now - 7200);
    env.client_ip = Some("192.0.2.7".parse().unwrap());
    let mut joe = Recipient::new("joe@example.net");
    joe.notify = Some(Notify::NEVER);
    env.recipients = vec![joe, Recipient::new("kim@example.com")];
    let mut w = q.enqueue(&env).unwrap();
    w.write_all(b"Subject: hi\r\n\r\nhello\r\n").unwrap();
    let id = w.commit().unwrap();

    let lock = q.lock_delivery().unwrap();
    let mut e = q.envelope(&id).unwrap();
    e.attempts = 2;
    e.next_attempt = now + 1200;
    e.recipients[0].state = RecipientState::Delivered(Outcome {
        at: now - 3600,
        host: Some("mx.example.net".into()),
        reply: "250 2.0.0 queued as 4711".into(),
    });
    e.recipients[1].state = RecipientState::Pending {
        last: Some(Outcome {
            at: now - 600,
            host: Some("mx.example.com".into()),
            reply: "451 4.7.1 greylisted\nplease retry".into(),
        }),
    };
    lock.update(&e).unwrap();

    let mut bounce = NewEnvelope::new("", now - 60);
    bounce.recipients.push(Recipient::new("ann@example.org"));
    let mut w = q.enqueue(&bounce).unwrap();
    w.write_all(b"x\r\n").unwrap();
    let bad = w.commit().unwrap();
    let path = dir.join("q/msg").join(format!("{bad}.env"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("size 3", "size three")).unwrap();
    q
}

#[test]
fn empty_or_missing_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let out = list(&cfg, &[]);
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("The queue is empty"), "{}", out.stdout);
    assert!(
        !dir.path().join("q").exists(),
        "listing does not create the queue"
    );
    let out = list(&cfg, &["--json"]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout, "{\"messages\":[],\"corrupt\":[]}\n");
}

#[test]
fn lists_messages_recipients_attempts_and_errors_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let q = fill(dir.path());
    // The running server would hold the delivery lock: listing needs none.
    let _lock = q.lock_delivery().unwrap();

    let out = list(&cfg, &[]);
    assert!(out.ok(), "{out:?}");
    let s = &out.stdout;
    for want in [
        "22 octets  from <ann@example.org>",
        "(2h ago) from client 192.0.2.7",
        "attempts 2, next attempt ",
        "<joe@example.net>  delivered  ",
        "mx.example.net: 250 2.0.0 queued as 4711",
        "<kim@example.com>  pending  last error ",
        // The reply's line break is shown escaped: one line per recipient.
        "mx.example.com: 451 4.7.1 greylisted\\nplease retry\n",
        "CORRUPT: envelope line 7: invalid number",
        "-- 1 message(s), 1 recipient(s) pending, 1 unreadable",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }

    assert!(s.contains("(in 20m)") || s.contains("(in 19m"), "{s}");

    let out = list(&cfg, &["--json"]);
    assert!(out.ok(), "{out:?}");
    let j = &out.stdout;
    for want in [
        "\"sender\":\"ann@example.org\"",
        "\"size\":22",
        "\"attempts\":2",
        "{\"address\":\"joe@example.net\",\"state\":\"delivered\"",
        "\"reply\":\"451 4.7.1 greylisted\\u000aplease retry\"",
        "\"error\":\"envelope line 7: invalid number\",\"quarantined\":false",
    ] {
        assert!(j.contains(want), "missing {want:?} in:\n{j}");
    }
    assert_eq!(j.lines().count(), 1);
}

#[test]
fn bad_config_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("[relay]\nqueue_dirr = \"x\"\n{USERS}")).unwrap();
    let out = list(&p, &[]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("queue_dirr"), "{out:?}");
}

/// A loopback SMTP sink (Python, one thread per connection): accepts every
/// message and appends it to `file`; stops after 120 s by itself and is
/// killed when dropped.
struct Sink(std::process::Child);

impl Sink {
    fn start(port: u16, file: &Path) -> Sink {
        let script = r#"
import socket, sys, threading, time
port, path = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', port)); srv.listen(16); srv.settimeout(1)
def serve(c):
    f = c.makefile('rb')
    c.sendall(b'220 sink\r\n')
    while True:
        line = f.readline()
        if not line: return
        cmd = line[:4].upper()
        if cmd == b'DATA':
            c.sendall(b'354 go\r\n'); data = b''
            while True:
                l = f.readline()
                if l in (b'.\r\n', b''): break
                data += l
            open(path, 'ab').write(data + b'--END--\n'); c.sendall(b'250 ok\r\n')
        elif cmd == b'QUIT':
            c.sendall(b'221 bye\r\n'); c.close(); return
        else:
            c.sendall(b'250 ok\r\n')
end = time.time() + 120
while time.time() < end:
    try: c, _ = srv.accept()
    except socket.timeout: continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
        let child = Command::new("python3")
            .args(["-c", script, &port.to_string(), file.to_str().unwrap()])
            .spawn()
            .unwrap();
        assert!(common::wait_until(
            std::time::Duration::from_secs(10),
            || { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() }
        ));
        Sink(child)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin(server: &common::Server, args: &[&str]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailbagd"));
    c.args(["queue"])
        .args(args)
        .arg("--config")
        .arg(server.config_path());
    run(&mut c)
}

/// The queue ids `queue list --json` shows, oldest first.
fn ids(server: &common::Server) -> Vec<String> {
    let out = admin(server, &["list", "--json"]);
    assert!(out.ok(), "{out:?}");
    out.stdout
        .split("{\"id\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect()
}

#[test]
fn hold_release_flush_and_delete_while_the_server_runs() {
    if !common::require("python3") {
        return;
    }
    let sink_port = common::free_port();
    let server = common::Server::start_with(
        common::Options {
            relay: format!("smarthost = \"127.0.0.1:{sink_port}\"\nscan_interval = \"300ms\"\n"),
            ..common::Options::default()
        },
        |_| {},
    );
    // Relay is authorized by a POP3 login; the smarthost is down: both stay queued.
    assert!(common::py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
    for subject in ["first", "second"] {
        let msg = common::message("kim@example.com", subject, "to relay");
        let sent = common::py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "joe@example.test",
            "kim@example.com",
            &msg,
        );
        assert_eq!(sent, "SENT");
    }
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || {
            admin(&server, &["list"])
                .stdout
                .matches("attempts 1")
                .count()
                == 2
        }),
        "{}",
        admin(&server, &["list"]).stdout
    );
    let queued = ids(&server);
    let [first, second] = [queued[0].as_str(), queued[1].as_str()];

    let show = admin(&server, &["show", first]);
    assert!(show.ok(), "{show:?}");
    assert!(
        show.stdout.contains("Subject: first\n")
            && show.stdout.contains("<kim@example.com>  pending"),
        "{}",
        show.stdout
    );
    assert!(
        !show.stdout.contains("to relay"),
        "the body is shown only with --body"
    );
    assert!(
        admin(&server, &["show", first, "--body"])
            .stdout
            .contains("to relay")
    );

    let hold = admin(&server, &["hold", first]);
    assert_eq!(hold.stdout, format!("{first}: on hold\n"), "{hold:?}");
    let delete = admin(&server, &["delete", second]);
    assert_eq!(
        delete.stdout,
        format!("{second}: deleted (no DSN sent)\n"),
        "{delete:?}"
    );
    assert_eq!(ids(&server), [first]);
    let missing = admin(&server, &["release", second]);
    assert!(
        !missing.ok()
            && missing
                .stderr
                .contains(&format!("no queued message {second}")),
        "{missing:?}"
    );
    let bad = admin(&server, &["hold", "nonsense"]);
    assert!(
        !bad.ok() && bad.stderr.contains("is not a queue id"),
        "{bad:?}"
    );

    // The smarthost is up and the queue flushed: a held message stays.
    let received = server.dir.path().join("sink.txt");
    let _sink = Sink::start(sink_port, &received);
    let flush = admin(&server, &["flush"]);
    assert!(flush.ok(), "{flush:?}");
    assert!(
        flush.stdout.contains("0 message(s) due now"),
        "{}",
        flush.stdout
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!received.exists(), "a held message was attempted");
    assert!(
        admin(&server, &["list"])
            .stdout
            .contains("on hold (mailbagd queue release")
    );

    // Released: attempted at the next scan, delivered once, gone from the queue.
    let release = admin(&server, &["release", first]);
    assert_eq!(
        release.stdout,
        format!("{first}: released, due now\n"),
        "{release:?}"
    );
    assert!(
        common::wait_until(std::time::Duration::from_secs(15), || ids(&server)
            .is_empty()),
        "{}",
        server.log()
    );
    let text = std::fs::read_to_string(&received).unwrap();
    assert_eq!(text.matches("--END--").count(), 1, "{text}");
    assert!(text.contains("Subject: first"));
}
