//! The outbound relay end to end: `mailbagd` accepts mail for relay from a client
//! authorized by a POP3 login, queues it, and delivers it to a sink SMTP server (written
//! here with tokio and smtp-proto's `ServerSession`) configured as the smarthost; retries,
//! bounces (DSNs in the local sender's INBOX), a SIGKILL between acceptance and delivery,
//! and a real Postfix as the smarthost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbag_smtp_proto::dsn::{Action, DiagnosticType, parse_delivery_status};
use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::{EnhancedStatusCode, Reply, ReplyCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{Options, Server, message, py_pop_login, py_send, raw_smtp, require, wait_until};

/// How the sink answers RCPT TO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Accept,
    /// `451 4.3.0` for the first `n` transactions, then accept.
    TempFirst(u32),
    /// `550 5.1.1` always.
    Reject,
}

/// STARTTLS behaviour of the sink.
#[derive(Clone)]
enum SinkTls {
    Off,
    /// Offer STARTTLS and do a real handshake.
    On(tokio_rustls::TlsAcceptor),
    /// Offer STARTTLS, say 220, then send garbage instead of a handshake.
    Broken,
}

#[derive(Debug, Default)]
struct Received {
    from: String,
    to: Vec<String>,
    body: Vec<u8>,
    tls: bool,
}

#[derive(Debug)]
struct SinkState {
    mode: Mode,
    /// Offer DSN (RFC 3461) in EHLO.
    dsn: bool,
    /// Offer SMTPUTF8 (RFC 6531) in EHLO.
    smtputf8: bool,
    /// Offer 8BITMIME (RFC 6152) in EHLO.
    eight_bit_mime: bool,
    /// Wait this long before accepting a message (to make deliveries overlap).
    delay: Duration,
    /// Connections open now, and the most at once.
    active: u32,
    max_active: u32,
    transactions: u32,
    messages: Vec<Received>,
}

/// A loopback SMTP sink; stops when dropped.
struct Sink {
    port: u16,
    state: Arc<Mutex<SinkState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(mode: Mode) -> Sink {
        Sink::start_tls(mode, SinkTls::Off)
    }

    fn start_tls(mode: Mode, tls: SinkTls) -> Sink {
        let state = Arc::new(Mutex::new(SinkState {
            mode,
            dsn: true,
            smtputf8: true,
            eight_bit_mime: true,
            delay: Duration::ZERO,
            active: 0,
            max_active: 0,
            transactions: 0,
            messages: Vec::new(),
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let st = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind sink");
                port_tx
                    .send(l.local_addr().expect("addr").port())
                    .expect("port");
                let mut stop_rx = stop_rx;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        r = l.accept() => {
                            let Ok((s, _)) = r else { continue };
                            let st = Arc::clone(&st);
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(30),
                                    serve(s, st, tls),
                                )
                                .await;
                            });
                        }
                    }
                }
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("sink port");
        Sink {
            port,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("lock").mode = mode;
    }

    fn count(&self) -> usize {
        self.state.lock().expect("lock").messages.len()
    }

    fn transactions(&self) -> u32 {
        self.state.lock().expect("lock").transactions
    }

    /// The recipients of each message received, sorted.
    fn recipients(&self) -> Vec<Vec<String>> {
        let state = self.state.lock().expect("lock");
        let mut got: Vec<Vec<String>> = state.messages.iter().map(|m| m.to.clone()).collect();
        got.sort();
        got
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(code: u16, esc: (u8, u16, u16), text: &'static str) -> Reply<'static> {
    Reply::new(
        ReplyCode::try_from(code).expect("code"),
        EnhancedStatusCode::new(esc.0, esc.1, esc.2).ok(),
        text,
    )
    .expect("reply")
}

async fn serve(s: tokio::net::TcpStream, st: Arc<Mutex<SinkState>>, tls: SinkTls) {
    {
        let mut g = st.lock().expect("lock");
        g.active += 1;
        g.max_active = g.max_active.max(g.active);
    }
    serve_inner(s, &st, tls).await;
    st.lock().expect("lock").active -= 1;
}

async fn serve_inner(mut s: tokio::net::TcpStream, st: &Arc<Mutex<SinkState>>, tls: SinkTls) {
    let mut cfg = ServerConfig::default();
    cfg.hostname = "sink.example".into();
    cfg.dsn = st.lock().expect("lock").dsn;
    cfg.smtputf8 = st.lock().expect("lock").smtputf8;
    cfg.eight_bit_mime = st.lock().expect("lock").eight_bit_mime;
    cfg.starttls = !matches!(tls, SinkTls::Off);
    let mut session = ServerSession::new(cfg).expect("sink config");
    if !talk(&mut s, &mut session, st).await {
        return;
    }
    // STARTTLS accepted.
    match tls {
        SinkTls::On(acceptor) => {
            let Ok(mut t) = acceptor.accept(s).await else {
                return;
            };
            session.tls_established();
            talk(&mut t, &mut session, st).await;
        }
        _ => {
            let _ = s.write_all(b"this is not a TLS handshake\r\n").await;
        }
    }
}

/// Runs the session until it closes (false) or waits for the TLS handshake (true).
async fn talk<S>(s: &mut S, session: &mut ServerSession, st: &Arc<Mutex<SinkState>>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 8192];
    let mut cur = Received::default();
    loop {
        while let Some(ev) = session.next_event() {
            match ev {
                Event::MailFrom { from, .. } => {
                    let mut w = Vec::new();
                    from.encode(&mut w);
                    cur = Received {
                        from: String::from_utf8_lossy(&w).into_owned(),
                        ..Received::default()
                    };
                    st.lock().expect("lock").transactions += 1;
                    session.accept();
                }
                Event::RcptTo { to, .. } => {
                    let (mode, n) = {
                        let g = st.lock().expect("lock");
                        (g.mode, g.transactions)
                    };
                    match mode {
                        Mode::Reject => {
                            session.reject(reply(550, (5, 1, 1), "no such user here"));
                        }
                        Mode::TempFirst(k) if n <= k => {
                            session.reject(reply(451, (4, 3, 0), "try again later"));
                        }
                        _ => {
                            let mut w = Vec::new();
                            to.encode(&mut w);
                            cur.to.push(String::from_utf8_lossy(&w).into_owned());
                            session.accept();
                        }
                    }
                }
                Event::BodyChunk(c) => cur.body.extend_from_slice(c),
                Event::MessageComplete { .. } => {
                    let delay = st.lock().expect("lock").delay;
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    cur.tls = session.is_tls();
                    st.lock()
                        .expect("lock")
                        .messages
                        .push(std::mem::take(&mut cur));
                    session.accept();
                }
                Event::Quit | Event::Reset | Event::MessageAborted(_) => {}
                _ => session.accept(),
            }
        }
        let out = session.take_output();
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return false;
        }
        if session.awaiting_tls() {
            return true;
        }
        if session.is_closed() {
            return false;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => session.feed(&buf[..n]),
        }
    }
}

fn relay_options(sink: &Sink, extra: &str) -> Options {
    Options {
        relay: format!(
            "smarthost = \"127.0.0.1:{}\"\nretry_schedule = \"1s\"\nscan_interval = \"1s\"\n\
             command_timeout = \"10s\"\nconnect_timeout = \"5s\"\n{extra}",
            sink.port
        ),
        ..Options::default()
    }
}

/// A sink answering as `mode` and a server relaying to it.
fn sink_and_server(mode: Mode) -> (Sink, Server) {
    let sink = Sink::start(mode);
    let server = Server::start_with(relay_options(&sink, ""), |_| {});
    (sink, server)
}

/// A sink answering as `mode`, a server relaying to it, and a POP3 login of
/// joe from 127.0.0.2, which may then relay.
fn authorized_relay(mode: Mode) -> (Sink, Server) {
    let (sink, server) = sink_and_server(mode);
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    (sink, server)
}

/// Logs in over POP3 from 127.0.0.2 and relays one message from joe to `rcpt`.
fn relay_one(server: &Server, rcpt: &str, subject: &str) {
    assert_eq!(py_pop_login(server, "127.0.0.2", "joe", "secret"), "OK 0 0");
    let msg = message(rcpt, subject, "relayed body\r\n.leading dot line");
    send_from_joe(server, rcpt, &msg);
}

/// Sends `msg` from joe to `rcpt` with smtplib from 127.0.0.2 (which may
/// relay after a POP3 login) on the port-25 role; the server must take it.
fn send_from_joe(server: &Server, rcpt: &str, msg: &str) {
    let v = py_send(server, "smtp", "127.0.0.2", "joe@example.test", rcpt, msg);
    assert_eq!(v, "SENT", "{}", server.log());
}

#[test]
fn relayed_mail_reaches_the_smarthost_intact() {
    if !require("python3") {
        return;
    }
    let (sink, server) = sink_and_server(Mode::Accept);
    relay_one(&server, "friend@elsewhere.example", "intact");
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1),
        "not delivered; log:\n{}",
        server.log()
    );
    {
        let g = sink.state.lock().expect("lock");
        let m = &g.messages[0];
        assert_eq!(m.from, "<joe@example.test>");
        assert_eq!(m.to, ["<friend@elsewhere.example>"]);
        let body = String::from_utf8_lossy(&m.body);
        assert!(
            body.starts_with("Received: from client.example.org"),
            "{body}"
        );
        assert!(body.contains("\r\nSubject: intact\r\n"), "{body}");
        // Dot-stuffing round trip: the leading dot survives exactly once.
        assert!(
            body.contains("relayed body\r\n.leading dot line\r\n"),
            "{body}"
        );
    }
    // Delivered means removed from the queue; the attempt is logged.
    assert!(wait_until(Duration::from_secs(10), || server
        .queued()
        .is_empty()));
    // No NOTIFY=SUCCESS: no report to the sender.
    assert!(server.message_texts("joe", "").is_empty());
    let log = server.log();
    assert!(log.contains("delivery attempt"), "{log}");
    assert!(log.contains("friend@elsewhere.example"), "{log}");
    assert_eq!(sink.count(), 1);
}

/// Bare CR and bare LF in relayed mail reach the next hop as CRLF (SMTP smuggling:
/// `line1\r.\r\nMAIL FROM:` must not reach a receiver that ends data at a bare CR).
#[test]
fn relayed_mail_has_only_crlf_line_ends_for_data_and_bdat() {
    if !require("python3") {
        return;
    }
    let (sink, server) = authorized_relay(Mode::Accept);
    let body = b"Subject: s\r\n\r\nline1\r.\r\nMAIL FROM:<evil@x.example>\r\nb\nc\r\n";
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    let mut bdat = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
    bdat.extend_from_slice(body);
    for last in [data, bdat] {
        let mut steps: Vec<&[u8]> = vec![
            b"EHLO client.example\r\n",
            b"MAIL FROM:<joe@example.test>\r\n",
            b"RCPT TO:<friend@elsewhere.example>\r\n",
        ];
        if last.starts_with(b"Subject") {
            steps.push(b"DATA\r\n");
        }
        steps.push(&last);
        let replies = raw_smtp(&server, "smtp", "127.0.0.2", &steps);
        assert!(
            replies.last().is_some_and(|r| r.starts_with("250")),
            "{replies:?}\n{}",
            server.log()
        );
    }
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 2),
        "not delivered; log:\n{}",
        server.log()
    );
    let g = sink.state.lock().expect("lock");
    for m in &g.messages {
        let b = &m.body;
        let clean = b.iter().enumerate().all(|(i, &c)| match c {
            b'\r' => b.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && b[i - 1] == b'\r',
            _ => true,
        });
        let text = String::from_utf8_lossy(b);
        assert!(clean, "bare line end relayed: {text:?}");
        assert!(
            text.ends_with("line1\r\n.\r\nMAIL FROM:<evil@x.example>\r\nb\r\nc\r\n"),
            "{text:?}"
        );
    }
}

/// A line longer than RFC 5321's 998 octets, accepted from a client, never goes to the
/// next hop as it is (a conformance probe's sink got a 5,000-octet line, which a strict
/// next hop refuses): in a part that can be re-encoded, the part becomes
/// quoted-printable, whose soft breaks take nothing from the text (a break by CRLF SP,
/// as Postfix's `smtp_line_length_limit`, puts a line end into it); elsewhere (a header
/// field) it is broken into lines of at most 998 by CRLF SP, a fold.
#[test]
fn relayed_lines_longer_than_998_octets_are_made_short() {
    if !require("python3") {
        return;
    }
    let (sink, server) = authorized_relay(Mode::Accept);
    let long: String = (0..5000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let msg = message("friend@elsewhere.example", "long line", &long);
    send_from_joe(&server, "friend@elsewhere.example", &msg);
    let msg = format!(
        "X-Long: {long}\r\n{}",
        message("friend@elsewhere.example", "long field", "short")
    );
    send_from_joe(&server, "friend@elsewhere.example", &msg);
    // A long field with spaces is folded at them: unfolded, it is as it was.
    let ids: Vec<String> = (0..70)
        .map(|i| format!("<id.{i:04}.abcdefghij@host.example.org>"))
        .collect();
    let references = format!("References: {}\r\n", ids.join(" "));
    let msg = format!(
        "{references}{}",
        message("friend@elsewhere.example", "references", "short")
    );
    send_from_joe(&server, "friend@elsewhere.example", &msg);
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 3),
        "not delivered; log:\n{}",
        server.log()
    );
    let g = sink.state.lock().expect("lock");
    let bodies: Vec<String> = g
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    for body in &bodies {
        for line in body.split("\r\n") {
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
    }
    let in_body = bodies
        .iter()
        .find(|b| b.contains("Subject: long line"))
        .unwrap();
    assert!(
        in_body.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{in_body}"
    );
    assert!(in_body.replace("=\r\n", "").contains(&long));
    let in_field = bodies
        .iter()
        .find(|b| b.contains("Subject: long field"))
        .unwrap();
    assert!(in_field.replace("\r\n ", "").contains(&long));
    assert!(!in_field.contains("quoted-printable"), "{in_field}");
    let folded = bodies
        .iter()
        .find(|b| b.contains("Subject: references"))
        .unwrap();
    assert!(folded.contains("\r\n <id."), "{folded}");
    assert!(
        folded.replace("\r\n ", " ").contains(&references),
        "{folded}"
    );
}

/// An address literal (or MX, A/AAAA record) that points at loopback is refused as a
/// next hop unless `[relay] allow_internal_next_hops = true`: the mail bounces with
/// 5.4.4 instead of being delivered into this host.
#[test]
fn internal_next_hops_are_refused_unless_allowed() {
    if !require("python3") {
        return;
    }
    for allowed in [false, true] {
        let sink = Sink::start(Mode::Accept);
        let opts = Options {
            relay: format!(
                "mx_port = {}\nretry_schedule = \"1s\"\nscan_interval = \"1s\"\n\
                 command_timeout = \"10s\"\nconnect_timeout = \"5s\"\n\
                 allow_internal_next_hops = {allowed}\n",
                sink.port
            ),
            ..Options::default()
        };
        let server = Server::start_with(opts, |_| {});
        relay_one(&server, "someone@[127.0.0.1]", "to a literal");
        if allowed {
            assert!(
                wait_until(Duration::from_secs(15), || sink.count() == 1),
                "not delivered; log:\n{}",
                server.log()
            );
            assert!(server.message_texts("joe", "").is_empty());
            continue;
        }
        assert!(
            wait_until(Duration::from_secs(15), || !server
                .message_texts("joe", "")
                .is_empty()),
            "no bounce; log:\n{}",
            server.log()
        );
        let texts = server.message_texts("joe", "");
        let status = parse_delivery_status(texts[0].as_bytes()).expect("a well-formed DSN");
        assert_eq!(status.recipients[0].status.to_string(), "5.4.4");
        // No remote server said anything: the text is this server's own, not an smtp reply.
        assert_eq!(
            status.recipients[0].diagnostic_type,
            DiagnosticType::Other("X-Mailbagd".into())
        );
        assert_eq!(status.recipients[0].remote_mta, None);
        assert!(
            texts[0].contains("Diagnostic-Code: X-Mailbagd; "),
            "{}",
            texts[0]
        );
        assert_eq!(sink.count(), 0);
    }
}

#[test]
fn temporary_failure_then_success_delivers_exactly_once() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::TempFirst(1));
    let server = Server::start_with(relay_options(&sink, ""), |_| {});
    relay_one(&server, "friend@elsewhere.example", "retry me");
    assert!(
        wait_until(Duration::from_secs(20), || sink.count() == 1),
        "not delivered after retry; log:\n{}",
        server.log()
    );
    assert!(sink.transactions() >= 2, "no retry happened");
    assert!(wait_until(Duration::from_secs(10), || server
        .queued()
        .is_empty()));
    // Give a wrongly scheduled extra attempt time to happen: it must not.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.count(), 1);
    assert!(server.log().contains("451 4.3.0 try again later"));
}

#[test]
fn permanent_failure_bounces_a_dsn_to_the_local_sender() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::Reject);
    let server = Server::start_with(relay_options(&sink, ""), |_| {});
    relay_one(&server, "nobody@elsewhere.example", "will bounce");
    assert!(
        wait_until(Duration::from_secs(15), || !server
            .message_texts("joe", "")
            .is_empty()),
        "no bounce in joe's INBOX; log:\n{}",
        server.log()
    );
    let texts = server.message_texts("joe", "");
    assert_eq!(texts.len(), 1);
    let dsn = &texts[0];
    assert!(dsn.starts_with("Return-Path: <>\r\n"), "{dsn}");
    assert!(
        dsn.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{dsn}"
    );
    assert!(dsn.contains("Auto-Submitted: auto-replied"), "{dsn}");
    // The MIME boundary carries 128 random bits (32 hex digits), nothing guessable.
    let boundary = dsn
        .split("boundary=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("boundary");
    let random = boundary.strip_prefix("=_mailbag_dsn_").expect("prefix");
    assert!(
        random.len() == 32 && random.bytes().all(|c| c.is_ascii_hexdigit()),
        "{boundary}"
    );
    // The original comes back (no RET: the full message).
    assert!(dsn.contains("Subject: will bounce"), "{dsn}");
    let status = parse_delivery_status(dsn.as_bytes()).expect("a well-formed DSN");
    assert_eq!(status.reporting_mta.as_deref(), Some("mail.example.test"));
    assert_eq!(status.recipients.len(), 1);
    let r = &status.recipients[0];
    assert_eq!(r.final_recipient, "nobody@elsewhere.example");
    assert_eq!(r.action, Action::Failed);
    assert_eq!(r.status.to_string(), "5.1.1");
    assert_eq!(r.diagnostic_type, DiagnosticType::Smtp);
    assert!(r.remote_mta.is_some(), "{r:?}");
    assert!(
        r.diagnostic
            .as_deref()
            .is_some_and(|d| d.contains("550 5.1.1 no such user here")),
        "{r:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || server
        .queued()
        .is_empty()));
    assert_eq!(sink.count(), 0);
}

/// What the server logs when it makes no bounce for a sender of a local
/// domain who is no user.
const NO_BOUNCE_FOR_NON_USER: &str =
    "no bounce: the sender is an address of a local domain that is no user";

/// Relays one message from 127.0.0.2 (logged in already) as
/// `nobody@example.test`, a local domain's non-user, to kim elsewhere.
fn relay_as_a_local_non_user(server: &Server) {
    let msg = message("kim@elsewhere.example", "forged local sender", "hi");
    let v = py_send(
        server,
        "smtp",
        "127.0.0.2",
        "nobody@example.test",
        "kim@elsewhere.example",
        &msg,
    );
    assert_eq!(v, "SENT", "{}", server.log());
}

/// A bounce for a sender at a local domain who is no user here is not
/// made: the relay queue would only send it out again, to the smarthost
/// (a conformance probe saw it leave for `RCPT TO:<nobody@example.test>`).
#[test]
fn no_bounce_leaves_for_an_unknown_sender_of_a_local_domain() {
    if !require("python3") {
        return;
    }
    let (_sink, server) = authorized_relay(Mode::Reject);
    relay_as_a_local_non_user(&server);
    assert!(
        wait_until(Duration::from_secs(15), || server
            .log()
            .contains(NO_BOUNCE_FOR_NON_USER)),
        "{}",
        server.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || server.queued().is_empty()),
        "{:?}",
        server.queued()
    );
    assert!(!server.log().contains("DSN sent"), "{}", server.log());
}

#[test]
fn notify_never_means_no_bounce() {
    if !require("python3") {
        return;
    }
    let (_sink, server) = authorized_relay(Mode::Reject);
    let script = r#"
import smtplib, sys
port = int(sys.argv[1])
msg = b"From: joe@example.test\r\nSubject: quiet\r\n\r\nhi\r\n"
with smtplib.SMTP('127.0.0.1', port, timeout=20, source_address=('127.0.0.2', 0)) as s:
    s.ehlo('client.example.org')
    s.sendmail('joe@example.test', ['nobody@elsewhere.example'], msg,
               mail_options=['RET=HDRS', 'ENVID=q1'], rcpt_options=['NOTIFY=NEVER'])
print('SENT')
"#;
    let port = server.port("smtp").to_string();
    let out = common::python(script, &[&port]);
    assert_eq!(out.stdout.trim(), "SENT", "{out:?}\n{}", server.log());
    assert!(
        wait_until(Duration::from_secs(15), || server.queued().is_empty()),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.message_texts("joe", "").is_empty());
    assert!(
        server
            .log()
            .contains("no bounce: NOTIFY does not ask for failures")
    );
}

#[test]
fn sigkill_between_acceptance_and_delivery_delivers_once_after_restart() {
    if !require("python3") {
        return;
    }
    // 4xx while the first process runs: the message stays queued.
    let sink = Sink::start(Mode::TempFirst(u32::MAX));
    let mut server = Server::start_with(relay_options(&sink, ""), |_| {});
    relay_one(&server, "friend@elsewhere.example", "survives a crash");
    assert!(wait_until(Duration::from_secs(15), || sink.transactions() >= 1));
    assert_eq!(server.queued().len(), 1);
    server.kill9();
    sink.set_mode(Mode::Accept);
    let server = server.restart();
    assert!(
        wait_until(Duration::from_secs(20), || sink.count() == 1),
        "not delivered after restart; log:\n{}",
        server.log()
    );
    assert!(wait_until(Duration::from_secs(10), || server
        .queued()
        .is_empty()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count(), 1);
    let g = sink.state.lock().expect("lock");
    assert!(String::from_utf8_lossy(&g.messages[0].body).contains("Subject: survives a crash"));
}

/// The queue cannot be written when the next hop's `250` arrives (the engine's own
/// `tmp/` directory is broken, as a full disk or a permission error would break it):
/// the message is not sent again on every scan (a probe counted 13 copies in 15 s);
/// once the queue can be written, the kept outcome is written and the message leaves
/// the queue, delivered once.
#[test]
fn an_acceptance_that_cannot_be_written_is_not_sent_again() {
    let sink = Sink::start(Mode::Accept);
    sink.state.lock().expect("lock").delay = Duration::from_secs(2);
    let server = Server::start_with(relay_options(&sink, ""), |data| {
        seed_queued(data, "kept", &["friend@elsewhere.example"], |_| {});
    });
    // While the sink holds the final dot, the server's instance directory (where an
    // envelope is written before it is renamed into place) becomes a file.
    assert!(
        wait_until(Duration::from_secs(15), || sink.transactions() >= 1),
        "{}",
        server.log()
    );
    let tmp = server.data.join("queue").join("tmp");
    let instance = std::fs::read_dir(&tmp)
        .expect("queue tmp")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("instance directory");
    let dir = tmp.join(instance.to_string());
    let aside = tmp.join("aside");
    std::fs::rename(&dir, &aside).expect("move aside");
    std::fs::write(&dir, b"not a directory").expect("break");
    assert!(
        wait_until(Duration::from_secs(15), || server
            .log()
            .contains("outcomes kept in memory until the queue can be written")),
        "{}",
        server.log()
    );
    // Four scans later, nothing more was sent, and the warning was said once.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sink.count(), 1, "{}", server.log());
    assert_eq!(
        server
            .log()
            .matches("outcomes kept in memory until the queue can be written")
            .count(),
        1,
        "{}",
        server.log()
    );
    // Repaired: the kept outcome is written and the message leaves the queue.
    std::fs::remove_file(&dir).expect("rm");
    std::fs::rename(&aside, &dir).expect("move back");
    assert!(
        wait_until(Duration::from_secs(15), || server.queued().is_empty()),
        "{}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains("outcomes kept in memory written to the queue")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count(), 1, "{}", server.log());
}

#[test]
fn postfix_as_smarthost_receives_relayed_mail() {
    let peers = common::peers_dir();
    let have = peers.is_some() && require("postfix") && require("python3");
    if !have {
        assert!(
            !common::in_ci(),
            "CI=true: shared/peers or postfix missing for the Postfix smarthost test"
        );
        eprintln!("SKIP: shared/peers or postfix missing");
        return;
    }
    let maildir = tempfile::tempdir().expect("tempdir");
    let postfix = common::Postfix::start(
        maildir.path(),
        &[
            ("PEER_DOMAIN", "elsewhere.example".into()),
            ("PEER_USERS", "friend:x".into()),
            ("PEER_POSTFIX_FAST", "1".into()),
        ],
    );
    let port = postfix.port;
    let opts = Options {
        relay: format!(
            "smarthost = \"127.0.0.1:{port}\"\nretry_schedule = \"1s\"\nscan_interval = \"1s\"\n\
             command_timeout = \"20s\"\n"
        ),
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    relay_one(&server, "friend@elsewhere.example", "via postfix");
    let new = maildir.path().join("friend").join("new");
    let landed = || {
        std::fs::read_dir(&new)
            .map(|rd| {
                rd.flatten().any(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|t| t.contains("Subject: via postfix"))
                })
            })
            .unwrap_or(false)
    };
    assert!(
        wait_until(Duration::from_secs(30), landed),
        "not in Postfix's Maildir; mailbagd log:\n{}",
        server.log()
    );
    assert!(wait_until(Duration::from_secs(10), || server
        .queued()
        .is_empty()));
    assert!(
        server.log().contains("250 2.0.0 Ok: queued"),
        "{}",
        server.log()
    );
}

#[test]
fn starttls_is_used_when_offered_and_a_broken_handshake_falls_back_to_plaintext() {
    if !require("python3") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, ck.cert.pem()).expect("cert");
    std::fs::write(&k, ck.key_pair.serialize_pem()).expect("key");
    let acceptor = mailbagd::tls::load_acceptor(&c, &k).expect("acceptor");

    // A real handshake: the self-signed certificate is accepted (opportunistic TLS).
    let sink = Sink::start_tls(Mode::Accept, SinkTls::On(acceptor));
    let server = Server::start_with(relay_options(&sink, ""), |_| {});
    relay_one(&server, "friend@elsewhere.example", "encrypted");
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1),
        "{}",
        server.log()
    );
    assert!(sink.state.lock().expect("lock").messages[0].tls);
    drop(server);

    // A broken handshake: the same host is retried once in plaintext.
    let sink = Sink::start_tls(Mode::Accept, SinkTls::Broken);
    let server = Server::start_with(relay_options(&sink, ""), |_| {});
    relay_one(&server, "friend@elsewhere.example", "plain after all");
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1),
        "{}",
        server.log()
    );
    assert!(!sink.state.lock().expect("lock").messages[0].tls);
    assert!(server.log().contains("retrying in plaintext once"));
}

#[test]
fn delayed_dsn_is_sent_once_while_retries_go_on() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::TempFirst(u32::MAX));
    let server = Server::start_with(relay_options(&sink, "delay_warning = \"1s\"\n"), |_| {});
    relay_one(&server, "friend@elsewhere.example", "slow one");
    assert!(
        wait_until(Duration::from_secs(15), || !server
            .message_texts("joe", "")
            .is_empty()),
        "no delay warning; log:\n{}",
        server.log()
    );
    // Retries go on, but the warning is not repeated.
    let before = sink.transactions();
    assert!(wait_until(Duration::from_secs(10), || sink.transactions()
        >= before + 2));
    let texts = server.message_texts("joe", "");
    assert_eq!(texts.len(), 1);
    let status = parse_delivery_status(texts[0].as_bytes()).expect("DSN");
    let r = &status.recipients[0];
    assert_eq!(r.action, Action::Delayed);
    assert_eq!(r.status.to_string(), "4.3.0");
    assert!(r.will_retry_until.is_some(), "{r:?}");
    // Headers only for a delay warning.
    assert!(texts[0].contains("text/rfc822-headers"), "{}", texts[0]);
    assert!(!texts[0].contains("relayed body"), "{}", texts[0]);
    assert_eq!(server.queued().len(), 1);
}

/// A delay warning nobody wants (here the sender is a local domain's
/// non-user) is decided once, not again on every retry pass (a review: the
/// "no bounce" line was logged at each pass while the message waited).
#[test]
fn an_unwanted_delay_warning_is_decided_once() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::TempFirst(u32::MAX));
    let server = Server::start_with(relay_options(&sink, "delay_warning = \"1s\"\n"), |_| {});
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    relay_as_a_local_non_user(&server);
    let said = NO_BOUNCE_FOR_NON_USER;
    assert!(
        wait_until(Duration::from_secs(15), || server.log().contains(said)),
        "{}",
        server.log()
    );
    let before = sink.transactions();
    assert!(wait_until(Duration::from_secs(10), || sink.transactions()
        >= before + 2));
    assert_eq!(server.log().matches(said).count(), 1, "{}", server.log());
}

/// A message whose next hop keeps answering 4xx expires after
/// `max_queue_age`: the bounce says 5.4.7 in mailbagd's own diagnostic type
/// (RFC 3464 section 2.3.6: an `smtp` diagnostic is the remote host's reply),
/// with the last reply quoted in its text.
#[test]
fn an_expired_message_bounces_with_mailbagds_own_diagnostic() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::TempFirst(u32::MAX));
    let server = Server::start_with(
        relay_options(&sink, "max_queue_age = \"3s\"\ndelay_warning = \"1h\"\n"),
        |_| {},
    );
    relay_one(&server, "friend@elsewhere.example", "never taken");
    assert!(
        wait_until(Duration::from_secs(20), || !server
            .message_texts("joe", "")
            .is_empty()),
        "no bounce; log:\n{}",
        server.log()
    );
    let texts = server.message_texts("joe", "");
    let status = parse_delivery_status(texts[0].as_bytes()).expect("DSN");
    let r = &status.recipients[0];
    assert_eq!(r.action, Action::Failed);
    assert_eq!(r.status.to_string(), "5.4.7");
    // Folded after "last error:".
    assert!(
        texts[0].contains(
            "Diagnostic-Code: X-Mailbagd; 5.4.7 message expired in the queue; last error:"
        ) && texts[0].contains("451 4.3.0"),
        "{}",
        texts[0]
    );
    assert!(!texts[0].contains("Diagnostic-Code: smtp;"), "{}", texts[0]);
}

/// A message body from a file, for submitting with the outbound transport.
struct FileJob {
    path: std::path::PathBuf,
    accepted: usize,
}

impl mailbagd::outbound::transport::Job for FileJob {
    async fn body(&mut self, _eight_bit: bool) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(&self.path).await
    }

    async fn settle(
        &mut self,
        _txn: usize,
        _rcpt: usize,
        o: &mailbag_smtp_proto::client::Outcome,
    ) -> std::io::Result<()> {
        if o.status() == mailbag_smtp_proto::client::Status::Accepted {
            self.accepted += 1;
        }
        Ok(())
    }
}

/// Runs mailbagd in process with the fake resolver `dns` (MX hosts on the sink's port, next
/// hops on loopback allowed; `extra` is appended to the configuration), submits one message
/// from joe to `recipients` as a client that may relay, and waits up to 20 s until `done(data
/// dir)` holds; then stops the server. Returns the temporary directory (the data is in
/// `data/`).
fn relay_in_process(
    sink: &Sink,
    dns: mailbagd::outbound::mx::FakeResolver,
    extra: &str,
    recipients: &[&[u8]],
    done: impl Fn(&std::path::Path) -> bool,
) -> tempfile::TempDir {
    use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
    use mailbag_smtp_proto::client::Transaction;
    use mailbag_smtp_proto::types::HeloName;
    use mailbagd::config::Config;
    use mailbagd::listener::Role;
    use mailbagd::outbound::transport::{self, TransportOptions};
    use mailbagd::server::Server as Mailbagd;

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Config::from_toml_str(&format!(
        r#"hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = {data:?}
[pop3]
listen = []
[smtp]
listen = ["127.0.0.1:0"]
submission_listen = []
[web]
listen = []
[relay]
mx_port = {port}
scan_interval = "1s"
command_timeout = "10s"
connect_timeout = "5s"
allow_internal_next_hops = true
[[users]]
name = "joe"
password = "secret"
{extra}"#,
        port = sink.port
    ))
    .expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = Mailbagd::bind_with_resolver(config, Some(Arc::new(dns)))
            .await
            .expect("bind");
        let smtp = server
            .local_addrs()
            .into_iter()
            .find(|(r, _)| *r == Role::Smtp)
            .map(|(_, a)| a)
            .expect("smtp");
        server.context().relay.record_login(
            "127.0.0.1".parse().expect("ip"),
            "joe",
            std::time::Instant::now(),
        );
        let stop = Arc::new(tokio::sync::Notify::new());
        let s2 = Arc::clone(&stop);
        let running = tokio::spawn(server.run(async move { s2.notified().await }));

        let body = dir.path().join("m.eml");
        std::fs::write(
            &body,
            "From: joe@example.test\r\nSubject: via MX\r\n\r\nhello\r\n",
        )
        .expect("body");
        let (from, _) = parse_reverse_path(b"<joe@example.test>").expect("from");
        let mut txn = Transaction::new(from);
        for r in recipients {
            txn = txn.recipient(parse_forward_path(r).expect("rcpt").0);
        }
        let opts = TransportOptions::new(HeloName::try_from("client.example").expect("helo"));
        let mut job = FileJob {
            path: body,
            accepted: 0,
        };
        transport::deliver(smtp, "127.0.0.1", &opts, false, &[txn], &mut job)
            .await
            .expect("submitted");
        assert_eq!(job.accepted, recipients.len());

        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done(&data) {
            assert!(
                std::time::Instant::now() < deadline,
                "not done in 20 s; the sink has {}",
                sink.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.notify_one();
        let _ = running.await;
    });
    dir
}

/// MX routing through the whole engine, in process, with a fake resolver: preference order
/// with an unreachable first MX, the implicit MX (A record), an address literal, and a null
/// MX that bounces; recipients of one message are grouped per destination.
#[test]
fn mx_routing_end_to_end_with_a_fake_resolver() {
    use mailbagd::outbound::mx::FakeResolver;

    let sink = Sink::start(Mode::Accept);
    let mut dns = FakeResolver::default();
    // The better MX has no server (127.0.0.2 is not listening): the second one is used.
    dns.add_mx(
        "two.example",
        &[(20, "mx2.two.example"), (10, "mx1.two.example")],
    );
    dns.add_ip("mx1.two.example", "127.0.0.2");
    dns.add_ip("mx2.two.example", "127.0.0.1");
    dns.add_ip("plain.example", "127.0.0.1");
    dns.add_mx("nomail.example", &[(0, ".")]);
    let recipients: [&[u8]; 4] = [
        b"<a@two.example>",
        b"<b@plain.example>",
        b"<c@nomail.example>",
        b"<d@[127.0.0.1]>",
    ];
    let dir = relay_in_process(&sink, dns, "", &recipients, |data| {
        let bounced = std::fs::read_dir(data.join("joe").join("new")).map_or(0, |d| d.count());
        sink.count() >= 3 && bounced >= 1
    });
    let data = dir.path().join("data");

    // One transaction per destination, each with its own recipient.
    assert_eq!(
        sink.recipients(),
        [
            vec!["<a@two.example>".to_string()],
            vec!["<b@plain.example>".to_string()],
            vec!["<d@[127.0.0.1]>".to_string()],
        ]
    );
    // The null MX bounced, with 5.1.10.
    let inbox = data.join("joe").join("new");
    let dsn = std::fs::read_dir(&inbox)
        .expect("inbox")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("read"))
        .next()
        .expect("a DSN");
    let status = parse_delivery_status(&dsn).expect("DSN");
    assert_eq!(status.recipients.len(), 1);
    assert_eq!(status.recipients[0].final_recipient, "c@nomail.example");
    assert_eq!(status.recipients[0].status.to_string(), "5.1.10");
    assert_eq!(status.recipients[0].action, Action::Failed);
}

/// The destinations of one message are tried at the same time: a next hop that takes the
/// connection but never greets (a tarpit, here for the domain tried first) does not hold up
/// the mail for another domain until its greeting times out.
#[test]
fn a_silent_next_hop_holds_up_only_its_own_destination() {
    use mailbagd::outbound::mx::FakeResolver;

    let sink = Sink::start(Mode::Accept);
    let tarpit = Tarpit::start(sink.port);
    let mut dns = FakeResolver::default();
    dns.add_ip("aaa-silent.example", "127.0.0.3");
    dns.add_ip("zzz-fast.example", "127.0.0.1");
    let recipients: [&[u8]; 2] = [b"<a@aaa-silent.example>", b"<z@zzz-fast.example>"];
    // Done when the fast destination has its message while mailbagd still waits for the
    // silent one's greeting (its connection is open: a peek sees no end of stream). Tried
    // one after another, the fast one would get it only after that connection ended.
    relay_in_process(
        &sink,
        dns,
        "[limits]\nshutdown_timeout = \"1s\"\n",
        &recipients,
        |_| tarpit.waiting() && sink.count() == 1,
    );
    assert_eq!(
        sink.recipients(),
        [vec!["<z@zzz-fast.example>".to_string()]]
    );
}

/// A next hop on 127.0.0.3, on `port` (the sink's: `mx_port` is one for all), that takes
/// connections and never answers; they close when it is dropped.
struct Tarpit {
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Tarpit {
    fn start(port: u16) -> Tarpit {
        let Ok(listener) = std::net::TcpListener::bind(("127.0.0.3", port)) else {
            panic!("127.0.0.3:{port} is taken");
        };
        let held = Arc::new(Mutex::new(Vec::new()));
        let h2 = Arc::clone(&held);
        std::thread::spawn(move || {
            for conn in listener.incoming().take(4).flatten() {
                h2.lock().expect("lock").push(conn);
            }
        });
        Tarpit { held }
    }

    /// Whether mailbagd is connected and still waiting for the greeting (its
    /// connection is open: a peek sees no end of stream).
    fn waiting(&self) -> bool {
        let held = self.held.lock().expect("lock");
        held.first().is_some_and(|c| {
            c.set_nonblocking(true).expect("nonblocking");
            !matches!(c.peek(&mut [0u8; 1]), Ok(0))
        })
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.held.lock().expect("lock").clear();
    }
}

/// A next hop that sends its greeting an octet at a time is cut off when the whole
/// reply has not come within `command_timeout`, as a silent one is: a probe's held
/// an attempt for 12 minutes with an 8-second timeout, and six such hosts stalled the
/// whole queue.
#[test]
fn a_next_hop_dripping_its_greeting_is_cut_off_at_the_timeout() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    if !require("python3") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    // At most 30 s: 300 octets, one every 100 ms, to the first connection.
    let drip = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_)
                    if std::time::Instant::now() < deadline && !stopped.load(Ordering::SeqCst) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return,
            }
        };
        for b in b"220-drip.example ".iter().cycle().take(300) {
            if stopped.load(Ordering::SeqCst) || conn.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let server = Server::start_with(
        Options {
            relay: format!(
                "smarthost = \"127.0.0.1:{port}\"\nretry_schedule = \"1h\"\n\
                 scan_interval = \"1s\"\ncommand_timeout = \"2s\"\nconnect_timeout = \"5s\"\n"
            ),
            ..Options::default()
        },
        |_| {},
    );
    relay_one(&server, "friend@elsewhere.example", "dripped");
    let sent = std::time::Instant::now();
    let cut = wait_until(Duration::from_secs(15), || {
        server.log().contains("Timeout waiting for the server")
    });
    let took = sent.elapsed();
    stop.store(true, Ordering::SeqCst);
    drip.join().expect("drip");
    assert!(cut, "{}", server.log());
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(server.queued().len(), 1, "{}", server.log());
}

/// A destination that refuses gets its bounce while another destination of the same
/// message still waits for a silent next hop (the re-probe found the DSN made only when
/// the silent one timed out).
#[test]
fn a_bounce_does_not_wait_for_a_silent_next_hop() {
    use mailbagd::outbound::mx::FakeResolver;

    let sink = Sink::start(Mode::Reject);
    let tarpit = Tarpit::start(sink.port);
    let mut dns = FakeResolver::default();
    dns.add_ip("aaa-silent.example", "127.0.0.3");
    dns.add_ip("zzz-refuses.example", "127.0.0.1");
    let recipients: [&[u8]; 2] = [b"<a@aaa-silent.example>", b"<z@zzz-refuses.example>"];
    let dir = relay_in_process(
        &sink,
        dns,
        "[limits]\nshutdown_timeout = \"1s\"\n",
        &recipients,
        |data| {
            let bounced = std::fs::read_dir(data.join("joe").join("new")).map_or(0, |d| d.count());
            tarpit.waiting() && bounced == 1
        },
    );
    let inbox = dir.path().join("data/joe/new");
    let dsn = std::fs::read_dir(&inbox)
        .expect("inbox")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("read"))
        .next()
        .expect("a DSN");
    let status = parse_delivery_status(&dsn).expect("DSN");
    assert_eq!(status.recipients.len(), 1);
    assert_eq!(
        status.recipients[0].final_recipient,
        "z@zzz-refuses.example"
    );
}

#[test]
fn notify_success_to_a_next_hop_without_dsn_gives_a_relayed_dsn() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::Accept);
    sink.state.lock().expect("lock").dsn = false;
    let server = Server::start_with(relay_options(&sink, ""), |_| {});
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    let script = r#"
import smtplib, sys
port = int(sys.argv[1])
msg = b"From: joe@example.test\r\nSubject: tell me\r\n\r\nhi\r\n"
with smtplib.SMTP('127.0.0.1', port, timeout=20, source_address=('127.0.0.2', 0)) as s:
    s.ehlo('client.example.org')
    s.sendmail('joe@example.test', ['friend@elsewhere.example'], msg,
               rcpt_options=['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;friend+2Bx@elsewhere.example'])
print('SENT')
"#;
    let port = server.port("smtp").to_string();
    let out = common::python(script, &[&port]);
    assert_eq!(out.stdout.trim(), "SENT", "{out:?}\n{}", server.log());
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 1));
    assert!(
        wait_until(Duration::from_secs(15), || !server
            .message_texts("joe", "")
            .is_empty()),
        "no relayed DSN; log:\n{}",
        server.log()
    );
    let texts = server.message_texts("joe", "");
    let status = parse_delivery_status(texts[0].as_bytes()).expect("DSN");
    let r = &status.recipients[0];
    assert_eq!(r.action, Action::Relayed);
    assert_eq!(r.status.to_string(), "2.0.0");
    assert_eq!(r.final_recipient, "friend@elsewhere.example");
    // ORCPT came as xtext (`+2B`) and is reported decoded (RFC 3461 section 6.3).
    assert!(
        texts[0].contains("Original-Recipient: rfc822;friend+x@elsewhere.example"),
        "{}",
        texts[0]
    );
}

/// RFC 3461 section 4.1: `NOTIFY=SUCCESS` for a local recipient gets a "delivered" DSN
/// once the copy is stored: a remote sender's through the queue from `<>`, a local
/// sender's into the INBOX. No `NOTIFY`, `NOTIFY=FAILURE` and the null sender get none.
/// Each address of one mailbox gets its own.
#[test]
fn notify_success_for_a_local_recipient_gives_a_delivered_dsn() {
    if !require("python3") {
        return;
    }
    let (sink, server) = sink_and_server(Mode::Accept);
    let script = r#"
import smtplib, sys
port = int(sys.argv[1])
def send(sender, subject, opts):
    msg = ("From: x@y.example\r\nSubject: %s\r\n\r\nhi\r\n" % subject).encode()
    with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
        s.ehlo('client.example.org')
        s.sendmail(sender, ['joe@example.test'], msg, rcpt_options=opts)
send('friend@elsewhere.example', 'remote sender',
     ['NOTIFY=SUCCESS', 'ORCPT=rfc822;Joe+2Bx@example.test'])
send('joe@example.test', 'local sender', ['NOTIFY=SUCCESS,FAILURE'])
send('friend@elsewhere.example', 'no notify', [])
send('friend@elsewhere.example', 'failure only', ['NOTIFY=FAILURE'])
send('', 'null sender', ['NOTIFY=SUCCESS'])
# Two addresses of joe's mailbox (postmaster is joe's): one copy, and a report for the
# one whose NOTIFY asks (a probe's went unanswered when it came second); the same
# address again in other letters adds nothing.
msg = b"From: x@y.example\r\nSubject: two names\r\n\r\nhi\r\n"
with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
    s.ehlo('client.example.org')
    s.mail('friend@elsewhere.example')
    for rcpt, opts in [('joe@example.test', ['NOTIFY=NEVER']),
                       ('postmaster@example.test', ['NOTIFY=SUCCESS']),
                       ('POSTMASTER@example.test', ['NOTIFY=SUCCESS'])]:
        code, _ = s.rcpt(rcpt, opts)
        assert code == 250, (rcpt, code)
    s.data(msg)
print('SENT')
"#;
    let port = server.port("smtp").to_string();
    let out = common::python(script, &[&port]);
    assert_eq!(out.stdout.trim(), "SENT", "{out:?}\n{}", server.log());
    // The remote sender's reports leave through the queue, from <>.
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 2),
        "no delivered DSN relayed; log:\n{}",
        server.log()
    );
    let reports: Vec<(String, Vec<String>, Vec<u8>)> = {
        let st = sink.state.lock().expect("lock");
        st.messages
            .iter()
            .map(|m| (m.from.clone(), m.to.clone(), m.body.clone()))
            .collect()
    };
    let of = |subject: &str| {
        reports
            .iter()
            .find(|r| String::from_utf8_lossy(&r.2).contains(&format!("Subject: {subject}")))
            .expect("report")
            .clone()
    };
    let two = parse_delivery_status(&of("two names").2).expect("DSN");
    let finals: Vec<&str> = two
        .recipients
        .iter()
        .map(|r| r.final_recipient.as_str())
        .collect();
    assert_eq!(finals, ["postmaster@example.test"]);
    let (from, to, body) = of("remote sender");
    assert_eq!(from, "<>");
    assert_eq!(to, ["<friend@elsewhere.example>"]);
    let status = parse_delivery_status(&body).expect("DSN");
    assert_eq!(status.recipients.len(), 1);
    let r = &status.recipients[0];
    assert_eq!(r.action, Action::Delivered);
    assert_eq!(r.status.to_string(), "2.0.0");
    assert_eq!(r.final_recipient, "joe@example.test");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Original-Recipient: rfc822;Joe+x@example.test"),
        "{text}"
    );
    // The local sender's report lands in joe's INBOX: six messages and one report.
    assert!(
        wait_until(Duration::from_secs(15), || server
            .message_texts("joe", "")
            .len()
            == 7),
        "log:\n{}",
        server.log()
    );
    let texts = server.message_texts("joe", "");
    let reports: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("multipart/report"))
        .collect();
    assert_eq!(reports.len(), 1, "{texts:#?}");
    let status = parse_delivery_status(reports[0].as_bytes()).expect("DSN");
    assert_eq!(status.recipients[0].action, Action::Delivered);
    assert!(
        reports[0].contains("Subject: local sender"),
        "{}",
        reports[0]
    );
    // Nothing else is sent, and the queue is left empty.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.count(), 2);
    assert!(
        wait_until(Duration::from_secs(10), || server.queued().is_empty()),
        "{:?}",
        server.queued()
    );
}

#[test]
fn connections_per_destination_are_limited() {
    if !require("python3") {
        return;
    }
    for (concurrency, want_parallel) in [(1u32, false), (4, true)] {
        let sink = Sink::start(Mode::Accept);
        sink.state.lock().expect("lock").delay = Duration::from_millis(700);
        let extra = format!("concurrency = {concurrency}\n");
        let server = Server::start_with(relay_options(&sink, &extra), |_| {});
        assert_eq!(
            py_pop_login(&server, "127.0.0.2", "joe", "secret"),
            "OK 0 0"
        );
        for i in 0..4 {
            let msg = message("friend@elsewhere.example", &format!("n{i}"), "x");
            send_from_joe(&server, "friend@elsewhere.example", &msg);
        }
        assert!(
            wait_until(Duration::from_secs(30), || sink.count() == 4),
            "{}",
            server.log()
        );
        let max = sink.state.lock().expect("lock").max_active;
        if want_parallel {
            assert!(max >= 2, "concurrency {concurrency}: at most {max} at once");
        } else {
            assert_eq!(max, 1, "concurrency {concurrency}");
        }
    }
}

/// Relays `n` messages (`Subject: <subject> <i>`) from 127.0.0.2 in one pipelined SMTP
/// session (after a POP3 login from there) and checks that each got `250`.
fn submit_relayed(server: &Server, n: usize, subject: &str) {
    let mut steps: Vec<Vec<u8>> = vec![b"EHLO client.example.org\r\n".to_vec()];
    for i in 0..n {
        steps.push(b"MAIL FROM:<joe@example.test>\r\n".to_vec());
        steps.push(b"RCPT TO:<friend@elsewhere.example>\r\n".to_vec());
        steps.push(b"DATA\r\n".to_vec());
        steps.push(format!("Subject: {subject} {i}\r\n\r\nx\r\n.\r\n").into_bytes());
    }
    steps.push(b"QUIT\r\n".to_vec());
    let refs: Vec<&[u8]> = steps.iter().map(Vec::as_slice).collect();
    let r = common::raw_smtp(server, "smtp", "127.0.0.2", &refs);
    assert_eq!(
        r.iter().filter(|l| l.starts_with("250 2.0.0")).count(),
        n,
        "{r:?}"
    );
}

/// The queue lock files the server process has open now.
fn open_queue_locks(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.to_string_lossy().contains("/queue/locks/"))
                .count()
        })
        .unwrap_or(0)
}

/// A probe: with the next hop slow, every queued message waiting for a connection held its
/// queue lock file open (1,341 under a 1,024 limit): `Too many open files`, `451` for new
/// mail, and 35 messages sent twice because their results could not be recorded. A message
/// now takes its lock only once it may connect: at most `relay.max_connections` lock files
/// are open, however long the backlog, and each message arrives once.
#[test]
fn a_backlog_holds_no_lock_file_per_waiting_message() {
    if !require("python3") {
        return;
    }
    let sink = Sink::start(Mode::Accept);
    sink.state.lock().expect("lock").delay = Duration::from_millis(150);
    let server = Server::start_with(
        relay_options(&sink, "max_connections = 2\nconcurrency = 2\n"),
        |_| {},
    );
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    let n = 40;
    submit_relayed(&server, n, "backlog");
    let mut most = 0;
    let drained = wait_until(Duration::from_secs(60), || {
        most = most.max(open_queue_locks(&server));
        sink.count() >= n
    });
    assert!(drained, "{} of {n} arrived\n{}", sink.count(), server.log());
    assert!(most <= 2, "{most} queue lock files open at once");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.count(), n, "each message once");
    assert!(!server.log().contains("Too many open files"));
}

/// A re-probe: with the next hop down, some failed attempts were tried again 0.1 s later,
/// against the retry schedule: a queue scan had read the envelope before the pass wrote its
/// next attempt. Each message is now tried once until its next attempt is due.
#[test]
fn a_failed_attempt_waits_for_its_retry_time() {
    if !require("python3") {
        return;
    }
    // Nothing listens there: every attempt fails at once.
    let closed = common::free_port();
    let server = Server::start_with(
        Options {
            relay: format!(
                "smarthost = \"127.0.0.1:{closed}\"\nretry_schedule = \"30s\"\n\
                 scan_interval = \"50ms\"\nconnect_timeout = \"5s\"\n"
            ),
            ..Options::default()
        },
        |_| {},
    );
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    let n = 300;
    submit_relayed(&server, n, "retry");
    let attempts = || server.log().matches("next hop not usable").count();
    assert!(
        wait_until(Duration::from_secs(30), || attempts() >= n),
        "{} attempts",
        attempts()
    );
    // Well inside the 30 s to the next attempt: no message tried twice.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(attempts(), n);
}

/// Puts a message from joe into the queue at `data/queue` as a pass of the engine left it:
/// `fill` sets the recipients' states (the envelope is written with `update`, so it is
/// exactly what an engine killed at that point leaves on disk).
fn seed_queued(
    data: &std::path::Path,
    subject: &str,
    rcpts: &[&str],
    fill: impl FnOnce(&mut mailbag_mailstore::queue::Envelope),
) {
    use mailbag_mailstore::queue::{NewEnvelope, Queue, QueueOptions, Recipient};
    use std::io::Write;
    let q = Queue::open(data.join("queue"), QueueOptions::default()).expect("queue");
    let now = mailbagd::outbound::unix_now();
    let mut new = NewEnvelope::new("joe@example.test", now - 100);
    for r in rcpts {
        new.recipients.push(Recipient::new(*r));
    }
    let mut w = q.enqueue(&new).expect("enqueue");
    w.write_all(
        format!("From: joe@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
            .as_bytes(),
    )
    .expect("body");
    let id = w.commit().expect("commit");
    let lock = q.lock_delivery().expect("lock");
    let mut env = lock.envelope(&id).expect("envelope");
    fill(&mut env);
    lock.update(&env).expect("update");
}

fn failed_at(at: u64) -> mailbag_mailstore::queue::RecipientState {
    mailbag_mailstore::queue::RecipientState::Failed(mailbag_mailstore::queue::Outcome {
        at,
        host: Some("sink.example".into()),
        reply: "550 5.1.1 no such user here".into(),
    })
}

/// The final recipients of the DSNs in joe's INBOX, sorted.
fn dsn_recipients(server: &Server) -> Vec<String> {
    let mut v: Vec<String> = server
        .message_texts("joe", "")
        .iter()
        .flat_map(|t| {
            parse_delivery_status(t.as_bytes())
                .expect("a well-formed DSN")
                .recipients
                .into_iter()
                .map(|r| r.final_recipient.to_string())
        })
        .collect();
    v.sort();
    v
}

/// The crash window between recording a failure and storing its bounce: envelopes on disk
/// as a SIGKILL there leaves them. A failure recorded as owed (this format), and one
/// recorded by an older engine without the `report` line during a pass that never
/// completed, each bounce exactly once after the start and leave the queue; a failure an
/// older engine recorded in a completed pass (so it was bounced then) is not bounced
/// again, while that message's pending recipient is delivered.
#[test]
fn bounce_owed_at_a_crash_is_sent_once_after_restart() {
    use mailbag_mailstore::queue::{RecipientState, ReportState};
    let sink = Sink::start(Mode::Accept);
    let now = mailbagd::outbound::unix_now();
    let server = Server::start_with(relay_options(&sink, ""), |data| {
        seed_queued(data, "owed", &["a-fail@elsewhere.example"], |e| {
            e.recipients[0].state = failed_at(now - 90);
            e.recipients[0].report = ReportState::Owed;
        });
        seed_queued(
            data,
            "legacy interrupted",
            &["b-fail@elsewhere.example"],
            |e| {
                // Old engine: killed after recording the failure, before the pass ended.
                e.recipients[0].state = failed_at(now - 90);
            },
        );
        seed_queued(
            data,
            "legacy completed",
            &["c-fail@elsewhere.example", "c-ok@elsewhere.example"],
            |e| {
                // Old engine: the failure's pass completed (bounce sent then) and moved
                // next-attempt past it; the other recipient waits for a retry, due now.
                e.recipients[0].state = failed_at(now - 90);
                e.attempts = 1;
                e.next_attempt = now - 50;
                e.recipients[1].state = RecipientState::Pending { last: None };
            },
        );
    });
    assert!(
        wait_until(Duration::from_secs(20), || server.queued().is_empty()
            && sink.count() == 1),
        "queue: {:?}\nlog:\n{}",
        server.queued(),
        server.log()
    );
    // Give a duplicate time to appear: none may.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        dsn_recipients(&server),
        ["a-fail@elsewhere.example", "b-fail@elsewhere.example"],
        "{}",
        server.log()
    );
    assert_eq!(sink.count(), 1);
    let g = sink.state.lock().expect("lock");
    assert_eq!(g.messages[0].to, ["<c-ok@elsewhere.example>"]);
}

/// A bounce that cannot be stored (joe's Maildir is broken) stays owed: logged, the
/// message stays queued with `report owed`; after the repair, the next start makes it
/// (the message is not due: the start-up pass covers every message owing a report).
#[test]
fn a_bounce_that_cannot_be_stored_stays_owed_until_it_can() {
    let sink = Sink::start(Mode::Reject);
    let broken = std::sync::Mutex::new(None);
    let mut server = Server::start_with(relay_options(&sink, ""), |data| {
        let joe = data.join("joe");
        for d in ["new", "cur"] {
            std::fs::create_dir_all(joe.join(d)).expect("maildir");
        }
        std::fs::write(joe.join("tmp"), b"not a directory").expect("break tmp");
        *broken.lock().expect("lock") = Some(joe.join("tmp"));
        seed_queued(data, "to bounce", &["nobody@elsewhere.example"], |_| {});
    });
    assert!(
        wait_until(Duration::from_secs(20), || server
            .log()
            .contains("DSN could not be sent")),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let env_text = || -> String {
        let dir = server.data.join("queue").join("msg");
        std::fs::read_dir(&dir)
            .expect("msg dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "env"))
            .map(|e| std::fs::read_to_string(e.path()).expect("env"))
            .collect()
    };
    let text = env_text();
    assert!(text.contains("  report owed\n  state failed\n"), "{text}");
    assert!(server.message_texts("joe", "").is_empty());
    assert_eq!(
        sink.transactions(),
        1,
        "the failed recipient is not retried"
    );
    // Repair the Maildir and restart: the owed bounce is made, once.
    server.kill9();
    let tmp = broken.lock().expect("lock").take().expect("path");
    std::fs::remove_file(&tmp).expect("rm");
    std::fs::create_dir(&tmp).expect("mkdir");
    let server = server.restart();
    assert!(
        wait_until(Duration::from_secs(20), || server.queued().is_empty()),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(dsn_recipients(&server), ["nobody@elsewhere.example"]);
    assert_eq!(sink.transactions(), 1);
}

/// A queued body cut short (or missing) is not sent: the entry is moved to
/// `corrupt/` and logged (a probe's truncated body was relayed as if whole).
#[test]
fn a_truncated_or_missing_body_is_moved_aside_not_sent() {
    let sink = Sink::start(Mode::Accept);
    let server = Server::start_with(relay_options(&sink, ""), |data| {
        seed_queued(data, "cut short", &["a@elsewhere.example"], |_| {});
        seed_queued(data, "no body", &["b@elsewhere.example"], |_| {});
        seed_queued(data, "whole", &["c@elsewhere.example"], |_| {});
        let msg = data.join("queue").join("msg");
        let mut bodies: Vec<_> = std::fs::read_dir(&msg)
            .expect("msg")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "body"))
            .collect();
        bodies.sort();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&bodies[0])
            .expect("open")
            .set_len(10)
            .expect("truncate");
        std::fs::remove_file(&bodies[1]).expect("rm");
    });
    assert!(
        wait_until(Duration::from_secs(15), || server.queued().is_empty()),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.recipients(),
        [vec!["<c@elsewhere.example>".to_string()]],
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("body file shorter than the size recorded"),
        "{log}"
    );
    assert!(log.contains("body file missing"), "{log}");
    let corrupt = std::fs::read_dir(server.data.join("queue").join("corrupt"))
        .expect("corrupt dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "env"))
        .count();
    assert_eq!(corrupt, 2);
}

/// A client's SMTPUTF8 on a message with an ASCII envelope and header is
/// left out toward a next hop without SMTPUTF8 (RFC 6531 section 3.2), so
/// the message is relayed, not bounced (a probe's needless bounce); one
/// with a UTF-8 Subject still needs it and is not sent to that hop.
#[test]
fn smtputf8_goes_on_only_when_the_message_needs_it() {
    if !require("python3") {
        return;
    }
    let (sink, server) = authorized_relay(Mode::Accept);
    sink.state.lock().expect("lock").smtputf8 = false;
    let send = |subject: &str| {
        let data = format!("Subject: {subject}\r\n\r\nhi\r\n.\r\n");
        let r = raw_smtp(
            &server,
            "smtp",
            "127.0.0.2",
            &[
                b"EHLO c\r\n",
                b"MAIL FROM:<joe@example.test> SMTPUTF8\r\n",
                b"RCPT TO:<friend@elsewhere.example>\r\n",
                b"DATA\r\n",
                data.as_bytes(),
            ],
        );
        assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    };
    send("plain ascii");
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1),
        "not relayed\n{}",
        server.log()
    );
    assert!(server.log().contains("SMTPUTF8 not needed"));
    send("d\u{e9}j\u{e0} vu");
    // The second is bounced to joe (a global DSN), never sent to the sink.
    bounces_to_joe(&server);
    assert_eq!(sink.count(), 1);
    let g = sink.state.lock().expect("lock");
    assert!(String::from_utf8_lossy(&g.messages[0].body).contains("Subject: plain ascii"));
}

/// RFC 6152 section 3: a next hop without 8BITMIME gets an 8-bit message with
/// its 8-bit parts quoted-printable (7-bit throughout, decoding to the original
/// text), an ASCII message as it was, and never `BODY=8BITMIME`.
#[test]
fn a_next_hop_without_8bitmime_gets_8bit_parts_quoted_printable() {
    if !require("python3") {
        return;
    }
    let (sink, server) = authorized_relay(Mode::Accept);
    {
        let mut st = sink.state.lock().expect("lock");
        st.eight_bit_mime = false;
        st.smtputf8 = false;
    }
    let send = |mail: &[u8], data: &[u8]| {
        let r = raw_smtp(
            &server,
            "smtp",
            "127.0.0.2",
            &[
                b"EHLO c\r\n",
                mail,
                b"RCPT TO:<friend@elsewhere.example>\r\n",
                b"DATA\r\n",
                data,
            ],
        );
        assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    };
    send(
        b"MAIL FROM:<joe@example.test> BODY=8BITMIME\r\n",
        "Subject: menu\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         caf\u{e9} cr\u{e8}me = 3\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--b--\r\n.\r\n"
            .as_bytes(),
    );
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 1),
        "not relayed\n{}",
        server.log()
    );
    send(
        b"MAIL FROM:<joe@example.test> BODY=8BITMIME\r\n",
        b"Subject: ascii\r\n\r\nonly = ascii\r\n.\r\n",
    );
    assert!(
        wait_until(Duration::from_secs(15), || sink.count() == 2),
        "not relayed\n{}",
        server.log()
    );
    let st = sink.state.lock().expect("lock");
    let converted = String::from_utf8(st.messages[0].body.clone()).expect("ASCII");
    assert!(converted.is_ascii(), "{converted}");
    assert!(
        converted.contains(
            "Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             caf=C3=A9 cr=C3=A8me =3D 3\r\n--b\r\n"
        ),
        "{converted}"
    );
    assert!(
        converted.contains("\r\nascii part\r\n--b--\r\n"),
        "{converted}"
    );
    let ascii = String::from_utf8_lossy(&st.messages[1].body);
    assert!(ascii.ends_with("\r\n\r\nonly = ascii\r\n"), "{ascii}");
    assert!(!ascii.contains("quoted-printable"), "{ascii}");
    drop(st);
    assert!(server.log().contains("converted to quoted-printable"));
}

/// A client that sends 8-bit octets without `BODY=8BITMIME` and whose
/// relayed message is refused gets its original back labelled
/// `Content-Transfer-Encoding: 8bit` (a probe's bounce carried raw 8-bit
/// octets with no label).
#[test]
fn an_undeclared_8bit_original_is_returned_labelled_8bit() {
    if !require("python3") {
        return;
    }
    let (_sink, server) = authorized_relay(Mode::Reject);
    let r = raw_smtp(
        &server,
        "smtp",
        "127.0.0.2",
        &[
            b"EHLO c\r\n",
            b"MAIL FROM:<joe@example.test>\r\n",
            b"RCPT TO:<friend@elsewhere.example>\r\n",
            b"DATA\r\n",
            "Subject: caf\u{e9}\r\n\r\nd\u{e9}j\u{e0} vu\r\n.\r\n".as_bytes(),
        ],
    );
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    let bounce = bounces_to_joe(&server).concat();
    assert!(
        bounce.contains("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"),
        "{bounce}"
    );
    assert!(bounce.contains("d\u{e9}j\u{e0} vu"), "{bounce}");
}

/// The messages in joe's INBOX once there is one (a bounce to him), within 15 s.
fn bounces_to_joe(server: &Server) -> Vec<String> {
    assert!(
        wait_until(Duration::from_secs(15), || !server
            .message_texts("joe", "")
            .is_empty()),
        "no bounce\n{}",
        server.log()
    );
    server.message_texts("joe", "")
}
