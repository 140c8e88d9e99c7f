//! Integration-test harness: starts `mailbagd` on free loopback ports with a
//! generated config in a temp dir, and runs real clients with timeouts.
//!
//! Client binaries: when one is missing the test prints a skip notice and
//! returns, except under `CI=true`, where it fails.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a client command may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `$6$` hash of "secret" (`openssl passwd -6 -salt saltsalt secret`).
pub const SECRET_HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// True when running under CI (missing tools fail instead of skipping).
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Is `tool` installed? If not: panic under CI=true, else print a skip
/// notice and return false (the caller returns).
pub fn require(tool: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    if in_ci() {
        panic!("required client `{tool}` is not installed (CI=true): install it (see .ci/run)");
    }
    eprintln!("SKIP: `{tool}` is not installed; skipping this test (it fails under CI=true)");
    false
}

/// Output of a finished client command.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs a command with stdin from `input`, killing it after `timeout`.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Out {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    cmd.stdout(fs::File::create(&out_path).expect("create out"));
    cmd.stderr(fs::File::create(&err_path).expect("create err"));
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(data) = input {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(data);
        }
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} timed out after {timeout:?}; stdout: {}; stderr: {}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned(),
    }
}

/// Runs a command without stdin, killing it after [`CLIENT_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Out {
    run_with_input(cmd, None, CLIENT_TIMEOUT)
}

/// Runs a Python 3 script (`python3 -c`), with `args` as `sys.argv[1:]`.
pub fn python(script: &str, args: &[&str]) -> Out {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).args(args);
    run(&mut c)
}

/// Per-test server options.
#[derive(Clone, Debug)]
pub struct Options {
    pub window: String,
    pub tls: bool,
    pub require_tls_for_login: bool,
    /// Extra TOML appended to the `[limits]` table.
    pub limits: String,
    pub spam_retention: String,
    pub sweep_interval: String,
    pub smtp_idle: String,
    /// Extra TOML lines for the `[smtp]` table.
    pub smtp: String,
    pub pop3_idle: String,
    /// Extra TOML lines for the `[pop3]` table.
    pub pop3: String,
    /// `spam.spamd` address, if any.
    pub spamd: Option<String>,
    /// Extra TOML lines for the `[spam]` table.
    pub spam: String,
    /// TOML lines for the `[relay]` table (besides `queue_dir`). The default sends
    /// relayed mail to a closed loopback port, so it stays queued.
    pub relay: String,
    /// TOML lines for the `[userdb]` table (e.g. `passwd_file = "…"`).
    pub userdb: String,
    /// Extra TOML lines for the `[pop_before_smtp]` table; a `policy_listen`
    /// among them adds the "policy" role to what start-up waits for.
    pub pop_before_smtp: String,
    /// Whole TOML tables (`[metrics]`, `[server]`) placed before the users; a
    /// `[metrics]` table adds the "metrics" role to what start-up waits for.
    pub tables: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: "30m".into(),
            tls: false,
            require_tls_for_login: false,
            limits: String::new(),
            spam_retention: "7d".into(),
            sweep_interval: "1h".into(),
            smtp_idle: "5m".into(),
            smtp: String::new(),
            pop3_idle: "10m".into(),
            pop3: String::new(),
            spamd: None,
            spam: String::new(),
            relay: "smarthost = \"127.0.0.1:1\"\n".into(),
            userdb: String::new(),
            pop_before_smtp: String::new(),
            tables: String::new(),
        }
    }
}

/// A running `mailbagd`; killed (SIGKILL) and reaped on drop, also when the
/// test panics, so that no server outlives its test.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub addrs: HashMap<String, SocketAddr>,
    pub cert_pem: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
    cfg: PathBuf,
    tls: bool,
    roles: Vec<String>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default(), |_| {})
    }

    /// Starts the server; `before` runs after the data dir exists and before
    /// the process starts (to seed Maildirs).
    pub fn start_with(opts: Options, before: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("data dir");
        let mut tls = String::new();
        let mut cert_pem = None;
        if opts.tls {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])
            .expect("rcgen");
            let c = dir.path().join("cert.pem");
            let k = dir.path().join("key.pem");
            fs::write(&c, ck.cert.pem()).expect("write cert");
            fs::write(&k, ck.key_pair.serialize_pem()).expect("write key");
            tls = format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", c, k);
            cert_pem = Some(c);
        }
        let tls_listen = if opts.tls { "[\"127.0.0.1:0\"]" } else { "[]" };
        let config = format!(
            r#"hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = {data:?}
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = {tls_listen}
require_tls_for_login = {rtl}
idle_timeout = "{pop3_idle}"
auth_failure_delay = "100ms"
{pop3_extra}
[smtp]
listen = ["127.0.0.1:0"]
submission_listen = ["127.0.0.1:0"]
tls_listen = {tls_listen}
max_message_size = 1048576
idle_timeout = "{smtp_idle}"
{smtp_extra}
{tls}
[pop_before_smtp]
window = "{window}"
{pbs}
[spam]
threshold = 5.0
spam_retention = "{retention}"
sweep_interval = "{sweep}"
{spamd}
[relay]
queue_dir = {queue:?}
{relay}
[web]
listen = ["127.0.0.1:0"]
login_failure_delay = "0s"
[limits]
shutdown_timeout = "5s"
{limits}
[userdb]
{userdb}
{tables}
[[users]]
name = "joe"
password = "secret"
spam_folder = "Spam"
[[users]]
name = "ann"
password_hash = "{hash}"
spam_folder = "INBOX"
[[users]]
name = "bob"
password = "bobpw"
spam_scanning = false
"#,
            data = data,
            rtl = opts.require_tls_for_login,
            window = opts.window,
            retention = opts.spam_retention,
            sweep = opts.sweep_interval,
            queue = data.join("queue"),
            relay = opts.relay,
            limits = opts.limits,
            userdb = opts.userdb,
            pbs = opts.pop_before_smtp,
            tables = opts.tables,
            hash = SECRET_HASH,
            pop3_idle = opts.pop3_idle,
            pop3_extra = opts.pop3,
            smtp_idle = opts.smtp_idle,
            smtp_extra = opts.smtp,
            spamd = opts
                .spamd
                .as_ref()
                .map(|a| format!("spamd = \"{a}\""))
                .into_iter()
                .chain(std::iter::once(opts.spam.clone()))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let cfg_path = dir.path().join("mailbag.toml");
        fs::write(&cfg_path, config).expect("write config");
        before(&data);
        let mut roles = vec!["pop3", "smtp", "submission", "http"];
        if opts.pop_before_smtp.contains("policy_listen") {
            roles.push("policy");
        }
        if opts.tables.contains("[metrics]") {
            roles.push("metrics");
        }
        if opts.tls {
            roles.extend(["pop3s", "submissions"]);
        }
        let roles = roles.into_iter().map(str::to_owned).collect();
        Server::spawn(dir, data, cfg_path, cert_pem, opts.tls, roles)
    }

    /// Starts the server on a configuration file of the caller's (in `dir`,
    /// which the server owns from now on) and waits until every role of
    /// `roles` ("pop3", "pop3s", "smtp", "submission", "submissions", "http",
    /// "https") announced a listener.
    pub fn start_config(
        dir: tempfile::TempDir,
        data: PathBuf,
        cfg: PathBuf,
        roles: &[&str],
    ) -> Server {
        let roles = roles.iter().map(|r| (*r).to_owned()).collect();
        Server::spawn(dir, data, cfg, None, false, roles)
    }

    fn spawn(
        dir: tempfile::TempDir,
        data: PathBuf,
        cfg: PathBuf,
        cert_pem: Option<PathBuf>,
        tls: bool,
        roles: Vec<String>,
    ) -> Server {
        // Each run appends to its own log file (a restart keeps the earlier log).
        let mut n = 0;
        let log = loop {
            let name = if n == 0 {
                "mailbagd.log".to_owned()
            } else {
                format!("mailbagd.{n}.log")
            };
            let p = dir.path().join(name);
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailbagd"))
            .arg("--config")
            .arg(&cfg)
            .arg("--log")
            .arg("debug")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn mailbagd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on stdout.
                    continue;
                }
            }
        });
        let expected = roles.clone();
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut server = Server {
            dir,
            data,
            addrs: HashMap::new(),
            cert_pem,
            child: Some(child),
            log,
            cfg,
            tls,
            roles,
        };
        while !expected.iter().all(|r| addrs.contains_key(r)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("mailbagd: listening ") {
                        let mut it = rest.split(' ');
                        if let (Some(role), Some(addr)) = (it.next(), it.next()) {
                            let mut a: SocketAddr = addr.parse().expect("listen addr");
                            if a.ip().is_unspecified() {
                                a.set_ip([127, 0, 0, 1].into());
                            }
                            addrs.insert(role.to_owned(), a);
                        }
                    }
                }
                Err(_) => panic!("mailbagd did not start; log:\n{}", server.log()),
            }
        }
        // The ports accept connections.
        for a in addrs.values() {
            TcpStream::connect_timeout(a, Duration::from_secs(5)).expect("port accepts");
        }
        server.addrs = addrs;
        server
    }

    pub fn port(&self, role: &str) -> u16 {
        self.addrs[role].port()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The configuration file the server runs on.
    pub fn config_path(&self) -> &Path {
        &self.cfg
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGHUP (reload) without waiting.
    pub fn signal_hup(&self) {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -HUP {pid}");
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_term();
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mailbagd did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Files (message paths) in a user's folder: `""` = INBOX, `".Spam"`.
    pub fn messages(&self, user: &str, folder: &str) -> Vec<PathBuf> {
        let base = self.data.join(user).join(folder);
        let mut v = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = fs::read_dir(base.join(sub)) {
                for e in rd.flatten() {
                    v.push(e.path());
                }
            }
        }
        v.sort();
        v
    }

    /// Contents of every message in a folder.
    pub fn message_texts(&self, user: &str, folder: &str) -> Vec<String> {
        self.messages(user, folder)
            .iter()
            .map(|p| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned())
            .collect()
    }

    /// Messages in the relay queue, each as `client IP\nfrom <sender>\nto <rcpt>...\n\n`
    /// followed by the body as it will be relayed.
    pub fn queued(&self) -> Vec<String> {
        use mailbag_mailstore::queue::{Queue, QueueOptions};
        let Ok(q) = Queue::open(self.data.join("queue"), QueueOptions::default()) else {
            return Vec::new();
        };
        let Ok(listing) = q.list() else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for env in listing.messages {
            let mut s = format!(
                "client {}\nfrom <{}>\n",
                env.client_ip.map(|i| i.to_string()).unwrap_or_default(),
                env.reverse_path
            );
            for r in &env.recipients {
                s.push_str(&format!("to <{}>\n", r.address));
            }
            s.push('\n');
            if let Ok((mut f, _)) = q.body(&env.id) {
                let _ = f.read_to_string(&mut s);
            }
            v.push(s);
        }
        v
    }

    /// Kills the server with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data and config (after [`Server::kill9`] or
    /// [`Server::terminate`]); listening ports are new.
    pub fn restart(mut self) -> Server {
        self.kill9();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let data = self.data.clone();
        let cfg = self.cfg.clone();
        let cert = self.cert_pem.clone();
        let tls = self.tls;
        let roles = self.roles.clone();
        drop(self);
        Server::spawn(dir, data, cfg, cert, tls, roles)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A small RFC 5322 message (CRLF).
pub fn message(to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: sender@example.org\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@example.org>\r\n\r\n{body}\r\n",
        subject.len() + body.len()
    )
}

/// Python helper preamble: smtplib/poplib with timeouts.
pub const PY_SMTP_SEND: &str = r#"
import smtplib, sys
host, port, src, mail_from, rcpt, path = sys.argv[1:7]
msg = open(path, 'rb').read()
try:
    with smtplib.SMTP(host, int(port), local_hostname='client.example.org', timeout=20,
                      source_address=(src, 0)) as s:
        s.sendmail(mail_from, [rcpt], msg)
    print('SENT')
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print('RCPT-REFUSED', code, text.decode())
except smtplib.SMTPSenderRefused as e:
    print('MAIL-REFUSED', e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPResponseException as e:
    print('REFUSED', e.smtp_code, e.smtp_error.decode())
"#;

/// Sends one message with Python's smtplib from source address `src`;
/// returns the script's verdict line (`SENT`, `RCPT-REFUSED 554 ...`, ...).
pub fn py_send(
    server: &Server,
    role: &str,
    src: &str,
    from: &str,
    rcpt: &str,
    msg: &str,
) -> String {
    let path = server.dir.path().join(format!("msg-{}.eml", rand_suffix()));
    fs::write(&path, msg).expect("write message");
    let port = server.port(role).to_string();
    let out = python(
        PY_SMTP_SEND,
        &[
            "127.0.0.1",
            &port,
            src,
            from,
            rcpt,
            path.to_str().expect("utf8"),
        ],
    );
    assert!(out.ok(), "python smtplib failed: {out:?}");
    out.stdout.trim().to_owned()
}

/// A library crate's example binary built by `cargo test --workspace`
/// (`target/debug/examples/<name>`, next to this test's `deps/`); `None`
/// (skip) when it was not built, which fails under `CI=true`.
pub fn built_example(name: &str) -> Option<PathBuf> {
    let p = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("examples").join(name)))
        .filter(|p| p.is_file());
    if p.is_none() {
        assert!(
            !in_ci(),
            "the {name} example is not built: run cargo test --workspace"
        );
        eprintln!("SKIP: the {name} example is not built (cargo test --workspace builds it)");
    }
    p
}

/// Sends one message to the local address `to` over SMTP (port-25 role,
/// from 127.0.0.1) and asserts it was accepted.
pub fn deliver_local(server: &Server, to: &str, subject: &str, body: &str) {
    let v = py_send(
        server,
        "smtp",
        "127.0.0.1",
        "sender@example.org",
        to,
        &message(to, subject, body),
    );
    assert_eq!(v, "SENT", "delivery to {to} failed\n{}", server.log());
}

/// An `mpop` command for `user` on the server's plain POP3 port (USER/PASS,
/// no configuration file); the caller adds the delivery and mode options.
pub fn mpop(server: &Server, user: &str, password: &str) -> Command {
    let mut c = Command::new("mpop");
    c.args([
        "-C",
        "/dev/null",
        "--host=127.0.0.1",
        "--tls=off",
        "--auth=user",
    ])
    .arg(format!("--port={}", server.port("pop3")))
    .arg(format!("--user={user}"))
    .arg(format!("--passwordeval=echo {password}"));
    c
}

/// Connects poplib from `src` and runs `login` (Python statements on `p`,
/// `user`, `pw`); returns `OK <count> <size>` or `ERR <reply>`.
pub fn py_pop(server: &Server, src: &str, user: &str, pass: &str, login: &str) -> String {
    py_pop_port(server.port("pop3"), src, user, pass, login)
}

/// A POP3 USER/PASS login with poplib from `src` to any loopback port (a
/// load balancer in front of the server); like [`py_pop_login`].
pub fn py_pop_login_port(port: u16, src: &str, user: &str, pass: &str) -> String {
    py_pop_port(port, src, user, pass, "p.user(user); p.pass_(pw)")
}

fn py_pop_port(port: u16, src: &str, user: &str, pass: &str, login: &str) -> String {
    let port = port.to_string();
    let script = format!(
        r#"
import base64, poplib, socket, sys
host, port, src, user, pw = sys.argv[1:6]
class P(poplib.POP3):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(src, 0))
p = P(host, int(port), timeout=20)
try:
    {login}
    n, size = p.stat()
    print('OK', n, size)
    p.quit()
except poplib.error_proto as e:
    print('ERR', e.args[0].decode())
"#
    );
    let out = python(&script, &["127.0.0.1", &port, src, user, pass]);
    assert!(out.ok(), "python poplib failed: {out:?}");
    out.stdout.trim().to_owned()
}

/// Logs in over POP3 (USER/PASS) with poplib from `src` and returns
/// `OK <count> <size>` or the error.
pub fn py_pop_login(server: &Server, src: &str, user: &str, pass: &str) -> String {
    py_pop(server, src, user, pass, "p.user(user); p.pass_(pw)")
}

/// Logs in over POP3 with AUTH PLAIN (RFC 5034, initial response) from
/// `src`; like [`py_pop_login`].
pub fn py_pop_auth_plain(server: &Server, src: &str, user: &str, pass: &str) -> String {
    py_pop(
        server,
        src,
        user,
        pass,
        "p._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\\0' + user.encode() + b'\\0' + pw.encode()).decode())",
    )
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until `cond` holds (polling), up to `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// The shared peer scripts (`shared/peers/`), if present next to the workspace.
pub fn peers_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers");
    p.is_dir().then_some(p)
}

/// A free loopback TCP port (bound and released).
///
/// Never the same port twice in one test binary: the tests of a binary run
/// at once, and the kernel may hand a port just released to the next test.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Speaks SMTP step by step from source address `src` to the `role` listener: sends
/// each step as given (raw octets: bare CR and LF go out unchanged) and reads one
/// complete reply after it. Returns every reply, one per step, greeting first.
pub fn raw_smtp(server: &Server, role: &str, src: &str, steps: &[&[u8]]) -> Vec<String> {
    raw_smtp_port(server, server.port(role), src, steps)
}

/// [`raw_smtp`] to any loopback port (a load balancer in front of the server).
pub fn raw_smtp_port(server: &Server, port: u16, src: &str, steps: &[&[u8]]) -> Vec<String> {
    let path = server.dir.path().join(format!("steps-{}", rand_suffix()));
    let mut file = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            file.extend_from_slice(STEP_MARK);
        }
        file.extend_from_slice(step);
    }
    fs::write(&path, file).expect("write steps");
    let port = port.to_string();
    let script = r#"
import socket, sys, re
host, port, src, path = sys.argv[1:5]
steps = open(path, 'rb').read().split(b'\n--STEP--\n')
s = socket.create_connection((host, int(port)), 20, source_address=(src, 0))
buf = b''
def reply():
    global buf
    while True:
        lines = buf.split(b'\r\n')
        for i, l in enumerate(lines[:-1]):
            if re.match(rb'^\d{3}( |$)', l):
                out = b'\r\n'.join(lines[:i + 1])
                buf = b'\r\n'.join(lines[i + 1:])
                return out.decode('utf-8', 'replace')
        b = s.recv(65536)
        if not b:
            r = buf.decode('utf-8', 'replace'); buf = b''
            return r or 'EOF'
        buf += b
print(reply().replace('\r\n', ' | '))
for st in steps:
    s.sendall(st)
    print(reply().replace('\r\n', ' | '))
"#;
    let out = python(
        script,
        &["127.0.0.1", &port, src, path.to_str().expect("utf8")],
    );
    assert!(out.ok(), "raw SMTP client failed: {out:?}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// The reply to `RCPT TO:<rcpt>` after EHLO and a MAIL FROM, from `src`
/// to a loopback `port` (the server's or a balancer's).
pub fn rcpt_reply(server: &Server, port: u16, src: &str, rcpt: &str) -> String {
    rcpt_arg_reply(server, port, src, &format!("<{rcpt}>"))
}

/// The 39 forms of the relay battery, each the whole argument of `RCPT TO:`
/// for the test configuration (local domain `example.test`, host name
/// `mail.example.test`, users joe and ann, the server on 127.0.0.1): the
/// classic relay-tester tricks (`%` hack, bang paths, quoted local parts,
/// source routes, domain literals, trailing dots, case, nested `@`), local
/// users' names at foreign domains, and malformed paths. From a client that
/// has not logged in over POP3, each must get a 5xx reply: a relay refusal,
/// an unknown local user or a syntax error — never 250, never a 4xx that
/// invites a retry.
pub const RELAY_BATTERY: [&str; 39] = [
    "<victim@elsewhere.example>",
    "victim@elsewhere.example",
    "<victim@ELSEWHERE.EXAMPLE>",
    "<victim@elsewhere.example.>",
    "<victim%elsewhere.example@example.test>",
    "<victim%elsewhere.example@mail.example.test>",
    "<victim%elsewhere.example@[127.0.0.1]>",
    "<victim%elsewhere.example>",
    "<joe%elsewhere.example@example.test>",
    "<elsewhere.example!victim@example.test>",
    "<elsewhere.example!victim@[127.0.0.1]>",
    "<elsewhere.example!victim>",
    "<\"victim@elsewhere.example\"@example.test>",
    "<\"victim@elsewhere.example\"@[127.0.0.1]>",
    "<\"victim@elsewhere.example\">",
    "<\"victim%elsewhere.example\"@elsewhere.example>",
    "<\"victim\"@elsewhere.example>",
    "<@example.test:victim@elsewhere.example>",
    "<@mail.example.test:victim@elsewhere.example>",
    "<@[127.0.0.1]:victim@elsewhere.example>",
    "<@example.test,@mail.example.test:victim@elsewhere.example>",
    "<victim@elsewhere.example@example.test>",
    "<victim@example.test@elsewhere.example>",
    "<victim@example.test.elsewhere.example>",
    "<victim@sub.example.test>",
    "<victim@[127.0.0.1]>",
    "<victim@[127.0.0.2]>",
    "<victim@[192.0.2.1]>",
    "<victim@[IPv6:::1]>",
    "<victim@[IPv6:::ffff:127.0.0.1]>",
    "<victim@localhost>",
    "<victim@2130706433>",
    "<postmaster@elsewhere.example>",
    "<joe@elsewhere.example>",
    "<joe@example.test@elsewhere.example>",
    "<victim@elsewhere.example> NOTIFY=NEVER",
    "<victim@elsewhere.example%example.test>",
    "<victim\\@elsewhere.example@example.test>",
    "<victim@xn--bcher-kva.example>",
];

/// The reply to `RCPT TO:{arg}` (after EHLO and MAIL FROM) from `src` to `port`.
pub fn rcpt_arg_reply(server: &Server, port: u16, src: &str, arg: &str) -> String {
    let rcpt = format!("RCPT TO:{arg}\r\n");
    let r = raw_smtp_port(
        server,
        port,
        src,
        &[
            b"EHLO client.example.org\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            rcpt.as_bytes(),
            b"QUIT\r\n",
        ],
    );
    r[3].clone()
}

/// RCPT TO a remote address through SMTP on `port` (a Postfix) from `src`:
/// the reply, code and text.
pub fn postfix_relay_attempt(port: u16, src: &str) -> String {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(timeout=20, source_address=(sys.argv[2], 0))
s.connect('127.0.0.1', int(sys.argv[1]))
s.ehlo('client.example.org')
s.mail('someone@example.org')
code, text = s.rcpt('friend@elsewhere.example')
print(code, text.decode())
s.quit()
"#;
    let out = python(script, &[&port.to_string(), src]);
    assert!(out.ok(), "{out:?}");
    out.stdout.trim().to_owned()
}

/// Separates the steps of [`raw_smtp`] in its step file.
const STEP_MARK: &[u8] = b"\n--STEP--\n";

/// A private Dovecot POP3 peer (`shared/peers/dovecot-start.sh`: users joe
/// and ann, password `secret`) serving the Maildirs under a root
/// (`ROOT/joe/{cur,new,tmp}`); stopped when dropped.
pub struct Dovecot {
    pub port: u16,
    state: tempfile::TempDir,
}

impl Dovecot {
    /// Starts Dovecot on a free loopback port for the Maildirs under `root`.
    pub fn start(root: &Path) -> Dovecot {
        let peers = peers_dir().expect("shared/peers next to the workspace");
        let dovecot = Dovecot {
            port: free_port(),
            state: tempfile::tempdir().expect("state dir"),
        };
        let started = run(Command::new("bash")
            .arg(peers.join("dovecot-start.sh"))
            .arg(dovecot.port.to_string())
            .arg(root)
            .env("PEERS_STATE_DIR", dovecot.state.path()));
        assert!(started.ok(), "{started:?}");
        dovecot
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(peers) = peers_dir() {
            let _ = Command::new("bash")
                .arg(peers.join("dovecot-stop.sh"))
                .arg(self.port.to_string())
                .env("PEERS_STATE_DIR", self.state.path())
                .status();
        }
    }
}

/// A private Postfix peer (`shared/peers/postfix-start.sh PORT ROOT`, with
/// the given environment: `PEER_POSTFIX_EXTRA`, `PEER_DOMAIN`, ...) on a free
/// loopback port; stopped when dropped (also when the start fails half-way).
pub struct Postfix {
    pub port: u16,
    /// Holds `postfix-PORT.dir`, naming the instance's directory.
    pub state: tempfile::TempDir,
}

impl Postfix {
    /// A Postfix that asks mailbagd's policy listener at `policy` before it
    /// refuses relay (only loopback .1 is its own network).
    pub fn asking(root: &Path, policy: std::net::SocketAddr) -> Postfix {
        let postfix = Postfix::start(root, &[]);
        postfix.configure(&[
            ("mynetworks", "127.0.0.1/32".into()),
            (
                "smtpd_relay_restrictions",
                format!("check_policy_service inet:{policy}, reject_unauth_destination"),
            ),
        ]);
        postfix
    }

    /// The instance's directory (`etc/`, `maillog`, the queue).
    pub fn dir(&self) -> PathBuf {
        let record = self.state.path().join(format!("postfix-{}.dir", self.port));
        PathBuf::from(fs::read_to_string(record).expect("postfix-PORT.dir").trim())
    }

    /// Sets `main.cf` parameters in place (`postconf -e`) and reloads.
    ///
    /// A parameter the peer script already sets must be changed this way, not
    /// appended through `PEER_POSTFIX_EXTRA`: a repeated parameter makes every
    /// Postfix program warn at start-up, and postlogd, sending its own warning
    /// to its own socket after the others' warnings have filled that socket's
    /// queue (`net.unix.max_dgram_qlen`, 10 here), blocks for good; Postfix then
    /// stops answering (seen as a 20 s reply timeout).
    pub fn configure(&self, settings: &[(&str, String)]) {
        let mut cmd = Command::new("postconf");
        cmd.arg("-c").arg(self.dir().join("etc")).arg("-e");
        for (name, value) in settings {
            cmd.arg(format!("{name} = {value}"));
        }
        let out = run(&mut cmd);
        assert!(out.ok(), "postconf -e: {out:?}");
        self.reload();
    }

    /// `postfix reload`, returning once the master has re-read its
    /// configuration (its "reload" line in the log) and the smtpd processes of
    /// the old configuration have had time to exit.
    pub fn reload(&self) {
        let log = self.dir().join("maillog");
        let reloads = || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("reload -- version")
                .count()
        };
        let before = reloads();
        let out = run(Command::new("postfix")
            .arg("-c")
            .arg(self.dir().join("etc"))
            .arg("reload"));
        assert!(out.ok(), "postfix reload: {out:?}");
        assert!(
            wait_until(Duration::from_secs(10), || reloads() > before),
            "Postfix did not log its reload"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Whether a reply is Postfix's relay refusal.
    pub fn relay_denied(reply: &str) -> bool {
        reply.starts_with("554 5.7.1") && reply.contains("Relay access denied")
    }

    pub fn start(root: &Path, env: &[(&str, String)]) -> Postfix {
        let peers = peers_dir().expect("shared/peers next to the workspace");
        let postfix = Postfix {
            port: free_port(),
            state: tempfile::tempdir().expect("state dir"),
        };
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
            .arg("bash")
            .arg(peers.join("postfix-start.sh"))
            .arg(postfix.port.to_string())
            .arg(root)
            .env("PEERS_STATE_DIR", postfix.state.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = run(&mut cmd);
        assert!(started.ok(), "postfix-start.sh failed: {started:?}");
        postfix
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Some(peers) = peers_dir() {
            let _ = Command::new("timeout")
                .arg("30")
                .arg("bash")
                .arg(peers.join("postfix-stop.sh"))
                .arg(self.port.to_string())
                .env("PEERS_STATE_DIR", self.state.path())
                .status();
        }
    }
}

/// A private HAProxy (`shared/peers/haproxy-start.sh`, `mode tcp`, round
/// robin, PROXY protocol `version` "1" or "2") on a free port in front of the
/// loopback `backends`; stopped when dropped.
pub struct Balancer {
    pub port: u16,
    state: PathBuf,
    peers: PathBuf,
}

impl Balancer {
    pub fn start(server: &Server, backends: &[u16], version: &str) -> Balancer {
        let peers = peers_dir().expect("shared/peers");
        let port = free_port();
        let state = server.dir.path().join(format!("peers-{port}"));
        let out = run(Command::new("bash")
            .arg(peers.join("haproxy-start.sh"))
            .arg(port.to_string())
            .args(backends.iter().map(|b| format!("127.0.0.1:{b}")))
            .env("PEERS_STATE_DIR", &state)
            .env("PROXY_VERSION", version));
        assert!(out.ok(), "haproxy-start.sh: {out:?}");
        Balancer { port, state, peers }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.peers.join("haproxy-stop.sh"))
            .arg(self.port.to_string())
            .env("PEERS_STATE_DIR", &self.state)
            .status();
    }
}
