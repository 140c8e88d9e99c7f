//! Harness of the web page tests: `mailbagd` in-process (its own tokio
//! runtime on a thread) on free loopback ports, a small HTTP/1.1 client
//! over raw TCP that keeps cookies like a browser, and raw SMTP and POP3
//! clients. Every socket has a timeout.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use mailbagd::config::Config;
use mailbagd::listener::Role;
use mailbagd::server::Server;

pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// `$6$` hash of "secret" (`openssl passwd -6 -salt saltsalt secret`).
pub const SECRET_HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

/// A `mailbagd` running in this process; shut down on drop.
pub struct WebServer {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub addrs: HashMap<Role, SocketAddr>,
    /// The running server's context (to call its services directly).
    pub ctx: std::sync::Arc<mailbagd::context::Context>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The config: users joe (`secret`, spam to Spam) and ann (`secret` as a
/// SHA-crypt hash, spam to Spam), every listener on a free port, `web_extra`
/// appended to `[web]`, `tls` a `[tls]` section or empty.
pub fn config_text(data: &std::path::Path, web_extra: &str, tls: &str) -> String {
    format!(
        r#"hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = {data:?}
[pop3]
listen = ["127.0.0.1:0"]
auth_failure_delay = "0s"
[smtp]
listen = ["127.0.0.1:0"]
submission_listen = []
{tls}
[relay]
queue_dir = {queue:?}
[limits]
shutdown_timeout = "5s"
[web]
listen = ["127.0.0.1:0"]
{web_extra}
[[users]]
name = "joe"
password = "secret"
spam_folder = "Spam"
[[users]]
name = "ann"
password_hash = "{SECRET_HASH}"
spam_folder = "Spam"
"#,
        queue = data.join("queue"),
    )
}

impl WebServer {
    pub fn start(web_extra: &str) -> WebServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        WebServer::start_in(dir, data, web_extra, "")
    }

    /// Starts on an existing data directory (a restart).
    pub fn start_in(
        dir: tempfile::TempDir,
        data: PathBuf,
        web_extra: &str,
        tls: &str,
    ) -> WebServer {
        let config =
            Config::from_toml_str(&config_text(&data, web_extra, tls)).expect("test config");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let server = match Server::bind(config).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = addr_tx.send(Ok((
                    server.local_addrs(),
                    std::sync::Arc::clone(server.context()),
                )));
                server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (addrs, ctx) = match addr_rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok((a, ctx))) => (a.into_iter().collect(), ctx),
            Ok(Err(e)) => panic!("mailbagd did not start: {e}"),
            Err(e) => panic!("mailbagd did not start: {e}"),
        };
        WebServer {
            dir,
            data,
            addrs,
            ctx,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn web(&self) -> SocketAddr {
        self.addrs
            .get(&Role::Web)
            .or_else(|| self.addrs.get(&Role::WebTls))
            .copied()
            .expect("web listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web())
    }

    pub fn smtp(&self) -> SocketAddr {
        self.addrs[&Role::Smtp]
    }

    pub fn pop3(&self) -> SocketAddr {
        self.addrs[&Role::Pop3]
    }

    /// Stops the server and returns its directories (for a restart).
    pub fn stop(mut self) -> (tempfile::TempDir, PathBuf) {
        self.shutdown();
        let dir = tempfile::tempdir().expect("tempdir");
        let old = std::mem::replace(&mut self.dir, dir);
        (old, self.data.clone())
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Message texts in a user's folder (`""` INBOX, `".Spam"`).
    pub fn files(&self, user: &str, folder: &str) -> Vec<String> {
        let base = self.data.join(user).join(folder);
        let mut v = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(base.join(sub)) {
                for e in rd.flatten() {
                    v.push(
                        String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default())
                            .into_owned(),
                    );
                }
            }
        }
        v
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------
// HTTP.

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The whole `Set-Cookie` value for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> Option<String> {
        let marker = "name=\"csrf\" value=\"";
        let i = self.body.find(marker)? + marker.len();
        let rest = &self.body[i..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    out
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One request over a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&str>,
) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect web");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some(f) = form {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{f}",
            f.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A cookie-keeping client, like a browser without JavaScript.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub cookies: HashMap<String, String>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        let mut v: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        v.sort();
        v.join("; ")
    }

    fn remember(&mut self, r: &HttpResponse) {
        for c in r.all("set-cookie") {
            let first = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }

    pub fn get(&mut self, path: &str) -> HttpResponse {
        let r = http(self.addr, "GET", path, &self.cookie_header(), None);
        self.remember(&r);
        r
    }

    pub fn post(&mut self, path: &str, form: &str) -> HttpResponse {
        let r = http(self.addr, "POST", path, &self.cookie_header(), Some(form));
        self.remember(&r);
        r
    }

    /// Logs in through the login form; returns the POST's response.
    pub fn login(&mut self, user: &str, password: &str) -> HttpResponse {
        let page = self.get("/login");
        assert_eq!(page.status, 200, "{page:?}");
        let csrf = page.csrf().expect("login csrf");
        self.post(
            "/login",
            &format!("csrf={csrf}&user={}&password={}", enc(user), enc(password)),
        )
    }

    /// The session's CSRF token, from the settings page.
    pub fn csrf(&mut self) -> String {
        let page = self.get("/settings");
        assert_eq!(page.status, 200, "{page:?}");
        page.csrf().expect("csrf on settings page")
    }
}

// ---------------------------------------------------------------------------
// SMTP and POP3.

struct Line {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Line {
    fn connect(addr: SocketAddr) -> Line {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let w = s.try_clone().unwrap();
        Line {
            r: BufReader::new(s),
            w,
        }
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read line");
        l
    }
    fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }
    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
        self.w.write_all(b"\r\n").unwrap();
    }
}

/// Sends one message over SMTP (port-25 role) and returns the reply to DATA's end.
pub fn smtp_send(addr: SocketAddr, to: &str, subject: &str, body: &str) -> String {
    let mut c = Line::connect(addr);
    assert!(c.reply().starts_with("220"));
    for (cmd, code) in [
        ("EHLO client.example.org".to_owned(), "250"),
        ("MAIL FROM:<sender@example.org>".to_owned(), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_owned(), "354"),
    ] {
        c.send(&cmd);
        let r = c.reply();
        assert!(r.starts_with(code), "{cmd}: {r}");
    }
    c.send(&format!(
        "From: Sender <sender@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n."
    ));
    let r = c.reply();
    c.send("QUIT");
    let _ = c.reply();
    r
}

/// Retrieves every message of the user's INBOX over POP3 (nothing deleted).
pub fn pop3_fetch_all(addr: SocketAddr, user: &str, pass: &str) -> Vec<String> {
    let mut c = Line::connect(addr);
    assert!(c.line().starts_with("+OK"));
    c.send(&format!("USER {user}"));
    assert!(c.line().starts_with("+OK"));
    c.send(&format!("PASS {pass}"));
    let r = c.line();
    assert!(r.starts_with("+OK"), "PASS: {r}");
    c.send("STAT");
    let stat = c.line();
    let n: usize = stat
        .split(' ')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("STAT: {stat}"));
    let mut out = Vec::new();
    for i in 1..=n {
        c.send(&format!("RETR {i}"));
        assert!(c.line().starts_with("+OK"));
        let mut msg = String::new();
        loop {
            let l = c.line();
            if l == ".\r\n" {
                break;
            }
            msg.push_str(l.strip_prefix('.').unwrap_or(&l));
        }
        out.push(msg);
    }
    c.send("QUIT");
    let _ = c.line();
    out
}

/// The `Subject:` of a message text.
pub fn subject(msg: &str) -> String {
    msg.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim_end()
        .to_owned()
}
