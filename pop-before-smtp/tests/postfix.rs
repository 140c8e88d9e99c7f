//! The policy server against a real Postfix (`check_policy_service`).
//!
//! Starts a private Postfix with `../../shared/peers/postfix-start.sh` whose relay
//! restrictions consult this crate's policy server, then speaks SMTP to it from two
//! loopback source addresses: 127.0.0.2 (authorized in the table) may relay,
//! 127.0.0.3 may not; both may send to a local recipient.
//!
//! Skips (with a message) when Postfix or the peer scripts are missing, unless the
//! environment variable `CI` is `true`, in which case it fails.

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailbag_pop_before_smtp::server::{PolicyServerOptions, serve};
use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

const STEP: Duration = Duration::from_secs(20);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
}

/// Returns `false` (after printing why) when the test cannot run here; panics
/// instead under CI.
fn prerequisites() -> bool {
    let script = peers_dir().join("postfix-start.sh");
    let postfix = ["/usr/sbin/postfix", "/usr/bin/postfix"]
        .iter()
        .any(|p| Path::new(p).exists());
    let missing = if !script.exists() {
        Some(format!("{} not found", script.display()))
    } else if !postfix {
        Some("postfix is not installed".to_owned())
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the Postfix test cannot run: {why}")
        }
        Some(why) => {
            eprintln!("skipping the Postfix policy test: {why}");
            false
        }
    }
}

/// Runs `cmd` with a deadline; kills it if it overruns. Returns (success, output).
fn run_bounded(mut cmd: Command, deadline: Duration) -> (bool, String) {
    let out_file = tempfile::NamedTempFile::new().expect("temp file");
    let err = out_file.reopen().expect("reopen");
    let out = out_file.reopen().expect("reopen");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn bash");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(out_file.path()).unwrap_or_default();
    (status.is_some_and(|s| s.success()), text)
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Stops the private Postfix when dropped, also when the test fails.
struct PostfixGuard {
    port: u16,
    state_dir: PathBuf,
}

impl Drop for PostfixGuard {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(peers_dir().join("postfix-stop.sh"))
            .arg(self.port.to_string())
            .env("PEERS_STATE_DIR", &self.state_dir);
        let (ok, out) = run_bounded(cmd, Duration::from_secs(30));
        if !ok {
            eprintln!("postfix-stop.sh failed: {out}");
        }
    }
}

/// Sets `main.cf` parameters of the instance in `dir` in place (`postconf -e`)
/// and reloads it, returning once the master has logged its reload and the
/// smtpd processes of the old configuration have had time to exit.
///
/// Parameters the peer script already sets must be changed this way, not
/// appended through `PEER_POSTFIX_EXTRA`: a repeated parameter makes every Postfix
/// program warn at start-up, and postlogd, sending its own warning to its own
/// socket after the others' warnings have filled that socket's queue
/// (`net.unix.max_dgram_qlen`, 10 here), blocks for good; Postfix then stops
/// answering (seen as a 20 s reply timeout).
fn configure(dir: &Path, settings: &[(&str, &str)]) {
    let mut cmd = Command::new("postconf");
    cmd.arg("-c").arg(dir.join("etc")).arg("-e");
    for (name, value) in settings {
        cmd.arg(format!("{name} = {value}"));
    }
    let (ok, out) = run_bounded(cmd, Duration::from_secs(30));
    assert!(ok, "postconf -e failed:\n{out}");
    let log = dir.join("maillog");
    let reloads = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("reload -- version")
            .count()
    };
    let before = reloads();
    let mut cmd = Command::new("postfix");
    cmd.arg("-c").arg(dir.join("etc")).arg("reload");
    let (ok, out) = run_bounded(cmd, Duration::from_secs(30));
    assert!(ok, "postfix reload failed:\n{out}");
    let start = Instant::now();
    while reloads() == before {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Postfix did not log its reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// Reads one SMTP reply (possibly multi-line) and returns its code and last line.
async fn reply(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> (u16, String) {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(STEP, reader.read_line(&mut line))
            .await
            .expect("SMTP reply timed out")
            .expect("SMTP read");
        assert!(n > 0, "Postfix closed the connection; so far: {all}");
        all.push_str(&line);
        let bytes = line.as_bytes();
        if bytes.len() < 4 || bytes[3] != b'-' {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return (code, line.trim_end().to_owned());
        }
    }
}

/// Speaks SMTP from `source` to Postfix and returns the replies to
/// `RCPT TO:<someone@elsewhere.example>` and `RCPT TO:<joe@example.test>`.
async fn relay_attempt(source: IpAddr, postfix: SocketAddr) -> ((u16, String), (u16, String)) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    let stream = tokio::time::timeout(STEP, socket.connect(postfix))
        .await
        .expect("connect timed out")
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut send = async |line: &str| {
        tokio::time::timeout(STEP, write.write_all(format!("{line}\r\n").as_bytes()))
            .await
            .expect("write timed out")
            .expect("write");
    };
    assert_eq!(reply(&mut reader).await.0, 220);
    send("EHLO client.test").await;
    assert_eq!(reply(&mut reader).await.0, 250);
    send("MAIL FROM:<sender@client.test>").await;
    assert_eq!(reply(&mut reader).await.0, 250);
    send("RCPT TO:<someone@elsewhere.example>").await;
    let remote = reply(&mut reader).await;
    send("RCPT TO:<joe@example.test>").await;
    let local = reply(&mut reader).await;
    send("QUIT").await;
    let _ = reply(&mut reader).await;
    (remote, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_relays_only_for_authorized_clients() {
    if !prerequisites() {
        return;
    }
    // The policy server, with 127.0.0.2 authorized.
    let table = SharedRelayTable::new(RelayOptions::default());
    let authorized: IpAddr = "127.0.0.2".parse().unwrap();
    let unauthorized: IpAddr = "127.0.0.3".parse().unwrap();
    table.record_login(authorized, "joe", Instant::now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let policy_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(
        listener,
        table.clone(),
        PolicyServerOptions::default(),
    ));

    // A private Postfix that consults it. Its default transport is `error` (nothing
    // leaves the peer), which Postfix would also refuse at RCPT as an unlisted
    // recipient: turn that check off so that the relay decision alone shows.
    let state = tempfile::tempdir().unwrap();
    let maildirs = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    // Parameters the peer script does not set go in PEER_POSTFIX_EXTRA; those it
    // sets are changed in place afterwards (see `configure`).
    let extra = "smtpd_policy_service_timeout = 10s\n\
                 smtpd_reject_unlisted_recipient = no";
    let mut cmd = Command::new("bash");
    cmd.arg(peers_dir().join("postfix-start.sh"))
        .arg(smtp_port.to_string())
        .arg(maildirs.path())
        .env("PEERS_STATE_DIR", state.path())
        .env("PEER_POSTFIX_EXTRA", extra);
    let (started, output) =
        tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(60)))
            .await
            .unwrap();
    let _guard = PostfixGuard {
        port: smtp_port,
        state_dir: state.path().to_owned(),
    };
    assert!(started, "postfix-start.sh failed:\n{output}");
    let relay = format!(
        "permit_mynetworks, check_policy_service inet:127.0.0.1:{policy_port}, \
         reject_unauth_destination"
    );
    let dir = PathBuf::from(
        std::fs::read_to_string(state.path().join(format!("postfix-{smtp_port}.dir")))
            .expect("postfix-PORT.dir")
            .trim(),
    );
    tokio::task::spawn_blocking(move || {
        configure(
            &dir,
            &[
                ("mynetworks", "127.0.0.1/32"),
                ("smtpd_relay_restrictions", &relay),
            ],
        )
    })
    .await
    .unwrap();
    let postfix = SocketAddr::from(([127, 0, 0, 1], smtp_port));

    let (remote, local) = relay_attempt(authorized, postfix).await;
    assert_eq!(remote.0, 250, "authorized client must relay: {}", remote.1);
    assert_eq!(local.0, 250, "local recipient: {}", local.1);

    let (remote, local) = relay_attempt(unauthorized, postfix).await;
    assert_eq!(
        remote.0, 554,
        "unauthorized client must not relay: {}",
        remote.1
    );
    assert!(
        remote.1.contains("Relay access denied"),
        "unexpected text: {}",
        remote.1
    );
    assert_eq!(local.0, 250, "local recipient: {}", local.1);

    // Revoking the entry takes effect at once, on Postfix's open policy connection.
    table.remove(authorized);
    let (remote, _) = relay_attempt(authorized, postfix).await;
    assert_eq!(remote.0, 554, "revoked client must not relay: {}", remote.1);

    server.abort();
}
