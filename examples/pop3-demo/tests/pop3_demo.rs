//! Drives the `pop3-demo` example with real clients: curl (`pop3://`),
//! Python's poplib and mpop. Each test starts its own server on a free loopback port
//! and stops it on exit (also on failure). Every child process and socket has
//! a timeout.
//!
//! A missing client binary skips the test, unless `CI=true`, where it fails.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// The demo server; killed on drop.
struct Demo {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn start_demo() -> Demo {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_pop3-demo"))
        .args(["--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pop3-demo");
    let demo = Demo { child, addr };
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pop3-demo did not start listening on {addr}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    demo
}

/// Whether `tool` can run; if not, skip (or fail under CI=true).
fn have(tool: &str, version_arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required for this test under CI=true but cannot be run");
        }
        eprintln!("skipping: {tool} not found");
    }
    ok
}

struct Output {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs a command with a timeout, killing it if it takes too long.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} timed out");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

fn curl(demo: &Demo, args: &[&str], path: &str) -> Output {
    let url = format!("pop3://joe:secret@{}/{path}", demo.addr);
    run(Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .arg(url))
}

fn ok_text(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, o.stderr);
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

#[test]
fn curl_list_retr_uidl_top_dele() {
    if !have("curl", "--version") {
        return;
    }
    let demo = start_demo();

    // LIST: sizes are exact CRLF octets (message 3 is stored with bare LF).
    let list = ok_text(&curl(&demo, &[], ""));
    assert_eq!(list, "1 172\r\n2 179\r\n3 200\r\n");

    // RETR 2: the stuffed dots are removed again by curl.
    let m2 = ok_text(&curl(&demo, &[], "2"));
    assert!(
        m2.contains("\r\n.signature follows\r\n.\r\n..two dots\r\n"),
        "{m2:?}"
    );
    assert_eq!(m2.len(), 179);

    // RETR 3: bare LF became CRLF, and a final CRLF was added.
    let m3 = ok_text(&curl(&demo, &[], "3"));
    assert!(
        m3.starts_with("From: Carol <carol@example.test>\r\n"),
        "{m3:?}"
    );
    assert!(
        m3.ends_with("line ends.\r\nThe server sends CRLF.\r\n"),
        "{m3:?}"
    );
    assert!(!m3.replace("\r\n", "").contains('\n'));
    assert_eq!(m3.len(), 200);

    // UIDL (multi-line custom command).
    let uidl = ok_text(&curl(&demo, &["-X", "UIDL"], ""));
    assert_eq!(
        uidl,
        "1 mailbag-demo-1\r\n2 mailbag-demo-2\r\n3 mailbag-demo-3\r\n"
    );

    // TOP 1 0: header and the blank line only.
    let top = ok_text(&curl(&demo, &["-X", "TOP 1 0"], ""));
    assert!(top.starts_with("From: Alice"), "{top:?}");
    assert!(
        top.ends_with("Message-ID: <demo-1@example.test>\r\n\r\n"),
        "{top:?}"
    );
    assert!(!top.contains("Hello Joe"));

    // DELE 3 (single-line: -I), then curl's QUIT on disconnect commits it
    // (curl -v does not print that last exchange; the next LIST proves it).
    let dele = curl(&demo, &["-v", "-I", "-X", "DELE 3"], "");
    assert!(dele.status.success(), "{}", dele.stderr);
    assert!(
        dele.stderr.contains("+OK Marked to be deleted."),
        "{}",
        dele.stderr
    );
    assert_eq!(ok_text(&curl(&demo, &[], "")), "1 172\r\n2 179\r\n");

    // Wrong password: curl's login-denied exit code 67.
    let url = format!("pop3://joe:wrong@{}/", demo.addr);
    let bad = run(Command::new("curl").args(["-s", "--max-time", "10", &url]));
    assert_eq!(bad.status.code(), Some(67), "{}", bad.stderr);

    // SASL LOGIN works too.
    let login = ok_text(&curl(&demo, &["--login-options", "AUTH=LOGIN"], ""));
    assert_eq!(login, "1 172\r\n2 179\r\n");
}

const POPLIB_SCRIPT: &str = r#"
import poplib, socket, sys, time
port = int(sys.argv[1])

def connect():
    return poplib.POP3("127.0.0.1", port, timeout=10)

p = connect()
assert p.getwelcome().startswith(b"+OK Mailbag pop3-demo ready. <"), p.getwelcome()
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps and "USER" in caps and "PIPELINING" in caps, caps
assert p.user("joe").startswith(b"+OK")
assert p.pass_("secret") == b"+OK Logged in."
assert p.stat() == (3, 551), p.stat()
resp, listing, _ = p.list()
assert listing == [b"1 172", b"2 179", b"3 200"], listing
resp, lines, octets = p.retr(2)
assert resp == b"+OK 179 octets", resp
assert lines[-4:] == [b"The next line starts with a dot:", b".signature follows", b".", b"..two dots"], lines
assert octets == 179, octets
resp, lines, octets = p.retr(3)
assert lines[-1] == b"The server sends CRLF.", lines
resp, lines, _ = p.top(1, 1)
assert lines[-1] == b"Hello Joe,", lines
assert b"this maildrop lives in memory." not in lines
resp, uids, _ = p.uidl()
assert uids == [b"1 mailbag-demo-1", b"2 mailbag-demo-2", b"3 mailbag-demo-3"], uids
assert p.uidl(2) == b"+OK 2 mailbag-demo-2"
assert p.dele(1).startswith(b"+OK")
assert p.stat() == (2, 379), p.stat()
try:
    p.retr(1)
    raise SystemExit("RETR of a deleted message succeeded")
except poplib.error_proto:
    pass

# While this session holds the maildrop, another login gets [IN-USE].
q = connect()
q.user("joe")
try:
    q.pass_("secret")
    raise SystemExit("second session got the maildrop")
except poplib.error_proto as e:
    assert b"[IN-USE]" in e.args[0], e
q.quit()

assert p.rset().startswith(b"+OK")
assert p.stat() == (3, 551)
p.dele(3)
assert p.quit() == b"+OK Logging out, messages deleted."

# Second session: message 3 is gone; drop the connection after DELE 1.
p = connect()
p.user("joe"); p.pass_("secret")
assert p.stat() == (2, 351), p.stat()
p.dele(1)
p.sock.shutdown(socket.SHUT_RDWR)
p.sock.close()

# Third session (APOP): the dropped session deleted nothing. Its lock is
# released once the server has read the end of its connection, which may
# come after this login: retry [IN-USE] for up to 5 s, as a client would.
for attempt in range(250):
    p = connect()
    try:
        assert p.apop("joe", "secret").startswith(b"+OK")
        break
    except poplib.error_proto as e:
        assert b"[IN-USE]" in e.args[0] and attempt < 249, e
        p.quit()
        time.sleep(0.02)
assert p.stat() == (2, 351), p.stat()
p.noop()
p.quit()

# Wrong password.
p = connect()
p.user("joe")
try:
    p.pass_("wrong")
    raise SystemExit("wrong password accepted")
except poplib.error_proto as e:
    assert e.args[0] == b"-ERR [AUTH] Authentication failed.", e
p.quit()
print("poplib OK")
"#;

#[test]
fn python_poplib_session() {
    if !have("python3", "--version") {
        return;
    }
    let demo = start_demo();
    let port = demo.addr.port().to_string();
    let o = run(Command::new("python3").args(["-c", POPLIB_SCRIPT, &port]));
    assert!(
        o.status.success(),
        "poplib script failed: {}\n{}",
        o.stderr,
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "poplib OK");
}

#[test]
fn port_in_use_gives_a_clear_message() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let o = run(Command::new(env!("CARGO_BIN_EXE_pop3-demo")).args(["--listen", &addr]));
    assert!(!o.status.success());
    assert!(o.stderr.contains("already in use"), "{}", o.stderr);
    assert!(o.stderr.contains(&addr), "{}", o.stderr);
}

/// A scratch directory removed on drop.
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn mpop_fetches_into_maildir_and_deletes() {
    if !have("mpop", "--version") {
        return;
    }
    let demo = start_demo();
    let dir = ScratchDir(std::env::temp_dir().join(format!(
        "pop3-demo-mpop-{}-{}",
        std::process::id(),
        demo.addr.port()
    )));
    let md = dir.0.join("md");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).expect("create maildir");
    }
    let port = format!("--port={}", demo.addr.port());
    let uidls = format!("--uidls-file={}", dir.0.join("uidls").display());
    let mpop = |extra: &[&str]| {
        run(Command::new("mpop")
            .args(["-C", "/dev/null", "--host=127.0.0.1", &port, "--tls=off"])
            .args(["--user=joe", "--passwordeval=echo secret", &uidls])
            .args(extra))
    };
    // Download everything and delete it on the server (DELE + QUIT).
    let delivery = format!("--delivery=maildir,{}", md.display());
    let o = mpop(&["--auth=user", &delivery, "--keep=off", "--only-new=off"]);
    assert!(o.status.success(), "mpop failed: {}", o.stderr);
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(md.join("new"))
        .expect("read maildir")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read message"))
        .collect();
    bodies.sort();
    assert_eq!(bodies.len(), 3);
    let all = String::from_utf8(bodies.concat()).expect("utf-8");
    // mpop stores LF line ends; the dot lines arrive unstuffed.
    assert!(
        all.contains("\n.signature follows\n.\n..two dots\n"),
        "{all}"
    );
    assert!(
        all.contains("with bare LF line ends.\nThe server sends CRLF.\n"),
        "{all}"
    );
    // A second session (SASL PLAIN) sees an empty maildrop.
    let o = mpop(&["--auth=plain", "--delivery=mbox,/dev/null", "--status-only"]);
    assert!(o.status.success(), "mpop failed: {}", o.stderr);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no messages"), "{text}");
}
