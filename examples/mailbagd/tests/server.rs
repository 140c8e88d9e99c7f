//! `mailbagd` driven by real clients: curl, Python's poplib and smtplib,
//! and raw sockets for the dialogues clients cannot produce (a dropped
//! connection, a held maildrop lock, relay-tester addresses).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, SystemTime};

mod common;
use common::{
    GTUBE, Options, RELAY_BATTERY, Server, deliver_local, message, py_pop_auth_plain, py_pop_login,
    py_send, python, require, run,
};

/// A line-oriented raw client.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn connect(server: &Server, role: &str) -> Raw {
        let s = TcpStream::connect(server.addrs[role]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let w = s.try_clone().unwrap();
        Raw {
            r: BufReader::new(s),
            w,
        }
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }
    /// Reads an SMTP reply (all continuation lines); returns the last line.
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
    fn cmd(&mut self, s: &str) -> String {
        self.send(s);
        self.line()
    }
    fn smtp(&mut self, s: &str) -> String {
        self.send(s);
        self.reply()
    }
}

fn pop_stat(server: &Server, user: &str, pass: &str) -> String {
    py_pop_login(server, "127.0.0.1", user, pass)
}

#[test]
fn curl_delivers_locally_and_retrieves_over_pop3() {
    if !require("curl") {
        return;
    }
    let server = Server::start();
    let msg = server.dir.path().join("c.txt");
    std::fs::write(&msg, "From: sender@example.org\r\nTo: joe@example.test\r\nSubject: curl test\r\n\r\nhello from curl\r\n.leading dot\r\n").unwrap();
    let smtp_url = format!(
        "smtp://127.0.0.1:{}/client.example.org",
        server.port("smtp")
    );
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--url",
            &smtp_url,
            "--mail-from",
            "sender@example.org",
            "--mail-rcpt",
            "joe@example.test",
            "--upload-file",
        ])
        .arg(&msg));
    assert!(out.ok(), "curl smtp: {out:?}\n{}", server.log());
    assert_eq!(server.messages("joe", "").len(), 1);

    let base = format!("pop3://joe:secret@127.0.0.1:{}/", server.port("pop3"));
    let list = run(Command::new("curl").args(["-sS", "--max-time", "20", &base]));
    assert!(list.ok(), "{list:?}");
    assert!(list.stdout.starts_with("1 "), "LIST: {:?}", list.stdout);
    let retr = run(Command::new("curl").args(["-sS", "--max-time", "20", &format!("{base}1")]));
    assert!(retr.ok(), "{retr:?}");
    assert!(
        retr.stdout.contains("Subject: curl test\r\n"),
        "{:?}",
        retr.stdout
    );
    assert!(
        retr.stdout.contains("\r\n.leading dot\r\n"),
        "dot-unstuffed: {:?}",
        retr.stdout
    );
    assert!(
        retr.stdout.contains("Received: from client.example.org"),
        "{:?}",
        retr.stdout
    );
    let uidl = run(Command::new("curl").args(["-sS", "--max-time", "20", "-X", "UIDL", &base]));
    assert!(uidl.ok() && uidl.stdout.starts_with("1 "), "{uidl:?}");
    // Wrong password: curl's login-denied exit code.
    let bad = run(Command::new("curl").args([
        "-sS",
        "--max-time",
        "20",
        &format!("pop3://joe:wrong@127.0.0.1:{}/", server.port("pop3")),
    ]));
    assert_eq!(bad.code(), Some(67), "{bad:?}");
}

/// 70 KB of header fields before the body do not hide it from the built-in scorer
/// (the web probe got GTUBE into an INBOX that way).
#[test]
fn a_padded_header_does_not_get_spam_past_the_scorer() {
    let server = Server::start();
    let mut message = String::new();
    for i in 0..70 {
        message.push_str(&format!("X-H{i}: {}\r\n", "y".repeat(990)));
    }
    message.push_str(&format!(
        "From: a@example.org\r\nSubject: padded\r\n\r\n{GTUBE}\r\n.\r\n"
    ));
    let r = common::raw_smtp(
        &server,
        "smtp",
        "127.0.0.1",
        &[
            b"EHLO client.example.org\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<joe@example.test>\r\n",
            b"DATA\r\n",
            message.as_bytes(),
        ],
    );
    assert!(r[5].starts_with("250"), "{r:?}");
    assert_eq!(server.messages("joe", ".Spam").len(), 1, "{}", server.log());
    assert!(server.messages("joe", "").is_empty());
}

#[test]
fn gtube_to_spam_folder_user_is_invisible_to_pop3() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    deliver_local(&server, "joe@example.test", "buy now", GTUBE);
    assert_eq!(server.messages("joe", ".Spam").len(), 1, "{}", server.log());
    assert!(server.messages("joe", "").is_empty());
    let spam = &server.message_texts("joe", ".Spam")[0];
    assert!(spam.contains("X-Spam-Flag: YES"), "{spam}");
    assert_eq!(pop_stat(&server, "joe", "secret"), "OK 0 0");
}

#[test]
fn gtube_to_inbox_user_is_tagged_and_ham_is_untouched() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    deliver_local(&server, "ann@example.test", "cheap pills", GTUBE);
    deliver_local(&server, "ann@example.test", "lunch", "see you at noon");
    let script = r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.user('ann'); p.pass_('secret')
n, _ = p.stat()
for i in range(1, n + 1):
    _, lines, _ = p.retr(i)
    print('\n'.join(l.decode() for l in lines))
    print('=====')
p.quit()
"#;
    let out = python(script, &[&server.port("pop3").to_string()]);
    assert!(out.ok(), "{out:?}");
    let msgs: Vec<&str> = out
        .stdout
        .split("=====\n")
        .filter(|s| !s.trim().is_empty())
        .collect();
    assert_eq!(msgs.len(), 2, "{}", out.stdout);
    let spam = msgs.iter().find(|m| m.contains("cheap pills")).unwrap();
    assert!(
        spam.contains("Subject: **SPAM( 1000.0)** cheap pills\n"),
        "{spam}"
    );
    assert!(spam.contains("X-Spam-Flag: YES"), "{spam}");
    let ham = msgs.iter().find(|m| m.contains("lunch")).unwrap();
    assert!(ham.contains("\nSubject: lunch\n"), "{ham}");
    assert!(!ham.contains("**SPAM"), "{ham}");
    assert!(!ham.contains("X-Spam-Flag"), "{ham}");
    assert!(ham.ends_with("\nsee you at noon\n"), "{ham:?}");
}

#[test]
fn scanning_off_user_gets_gtube_untouched_in_inbox() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    deliver_local(&server, "bob@example.test", "raw", GTUBE);
    let texts = server.message_texts("bob", "");
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("Subject: raw\r\n"), "{}", texts[0]);
    assert!(!texts[0].contains("X-Spam-"), "{}", texts[0]);
}

#[test]
fn relay_refused_before_pop_login_and_accepted_after_from_same_address() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let msg = message("friend@elsewhere.example", "relay me", "hello");
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.2",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert!(v.starts_with("RCPT-REFUSED 554"), "{v}");
    assert!(v.contains("5.7.1"), "{v}");
    assert!(server.queued().is_empty());

    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.2",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert_eq!(v, "SENT", "{}", server.log());
    let q = server.queued();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].starts_with(
            "client 127.0.0.2\nfrom <joe@example.test>\nto <friend@elsewhere.example>\n\n"
        ),
        "{}",
        q[0]
    );
    assert!(q[0].contains("Subject: relay me"));
    // The log names the POP3 user whose login let it relay (abuse handling).
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("relay recipient accepted (POP-before-SMTP)")
                && l.contains("pop3_user=\"joe\"")),
        "{}",
        server.log()
    );

    // Another address is still refused.
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.3",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert!(v.starts_with("RCPT-REFUSED 554"), "{v}");
    assert_eq!(server.queued().len(), 1);
}

/// A probe: a POP3 login, a restart (SIGTERM), then relay from the same
/// address got `554 5.7.1`, a permanent refusal for a user who had checked
/// mail a second before. The table is kept over a graceful restart; a crash
/// (kill -9) still loses it.
#[test]
fn pop_before_smtp_logins_survive_a_graceful_restart() {
    if !require("python3") {
        return;
    }
    let mut server = Server::start();
    let remote = "friend@elsewhere.example";
    let rcpt = |s: &Server, src: &str| common::rcpt_reply(s, s.port("smtp"), src, remote);
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "joe", "secret"),
        "OK 0 0"
    );
    assert!(rcpt(&server, "127.0.0.2").starts_with("250"));
    assert!(server.terminate().success());
    let mut server = server.restart();
    assert!(
        server
            .log()
            .contains("POP-before-SMTP logins kept over the restart logins=1"),
        "{}",
        server.log()
    );
    let r = rcpt(&server, "127.0.0.2");
    assert!(r.starts_with("250"), "{r}\n{}", server.log());
    assert!(rcpt(&server, "127.0.0.3").starts_with("554"));
    // Read once: after a crash nothing is left to read.
    server.kill9();
    let server = server.restart();
    assert!(rcpt(&server, "127.0.0.2").starts_with("554"));
}

#[test]
fn relay_authorization_expires_after_the_window() {
    if !require("python3") {
        return;
    }
    let opts = Options {
        window: "5s".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    let msg = message("friend@elsewhere.example", "relay", "x");
    assert_eq!(
        py_pop_login(&server, "127.0.0.2", "ann", "secret"),
        "OK 0 0"
    );
    let login = std::time::Instant::now();
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.2",
        "ann@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert_eq!(v, "SENT");
    // The first send must have happened inside the window for the test to mean anything.
    assert!(login.elapsed() < Duration::from_secs(5), "client too slow");
    std::thread::sleep(Duration::from_millis(5500).saturating_sub(login.elapsed()));
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.2",
        "ann@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert!(v.starts_with("RCPT-REFUSED 554"), "{v}");
}

#[test]
fn wrong_password_authorizes_nothing() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let r = py_pop_login(&server, "127.0.0.4", "joe", "hunter2-xyzzy");
    assert!(r.starts_with("ERR -ERR [AUTH]"), "{r}");
    let r = py_pop_login(&server, "127.0.0.4", "nosuchuser", "secret");
    assert!(r.starts_with("ERR -ERR [AUTH]"), "{r}");
    let msg = message("friend@elsewhere.example", "relay", "x");
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.4",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert!(v.starts_with("RCPT-REFUSED 554"), "{v}");
    let v = py_send(
        &server,
        "submission",
        "127.0.0.4",
        "joe@example.test",
        "joe@example.test",
        &msg,
    );
    assert!(v.starts_with("MAIL-REFUSED 530"), "{v}");
    assert!(!server.log().contains("hunter2-xyzzy"), "password in log");
}

#[test]
fn repeated_pop3_failures_lock_out_even_the_right_password() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    // The right password works at first (and clears nothing it should not).
    assert!(pop_stat(&server, "bob", "bobpw").starts_with("OK"));
    // Five failures from 127.0.0.1 (a new connection each, as a guesser
    // reconnects), the default `login.failures_before_lockout`.
    for _ in 0..5 {
        let r = py_pop_login(&server, "127.0.0.1", "joe", "wrong");
        assert_eq!(r, "ERR -ERR [AUTH] Authentication failed.");
    }
    // Locked out: the right password is refused with the same [AUTH] reply,
    // for every user from this address.
    for (user, pass) in [("joe", "secret"), ("bob", "bobpw"), ("nobody", "x")] {
        let r = py_pop_login(&server, "127.0.0.1", user, pass);
        assert_eq!(r, "ERR -ERR [AUTH] Authentication failed.", "{user}");
    }
    // joe is locked out from another address too (counted per user name);
    // another user from another address is not.
    let r = py_pop_login(&server, "127.0.0.5", "joe", "secret");
    assert!(r.starts_with("ERR -ERR [AUTH]"), "{r}");
    assert!(py_pop_login(&server, "127.0.0.5", "bob", "bobpw").starts_with("OK"));
    assert!(server.log().contains("locked out"));
}

#[test]
fn sasl_plain_failures_count_in_the_same_limiter_as_user_pass() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    assert!(
        py_pop_auth_plain(&server, "127.0.0.6", "joe@example.test", "secret").starts_with("OK")
    );
    // Failures over SASL with the name spelled three ways, then over USER/PASS:
    // five for joe, from two addresses.
    for (src, user) in [
        ("127.0.0.6", "joe"),
        ("127.0.0.6", "JOE@example.test"),
        ("127.0.0.7", "joe/Spam"),
        ("127.0.0.7", "Joe"),
    ] {
        let r = py_pop_auth_plain(&server, src, user, "wrong");
        assert_eq!(r, "ERR -ERR [AUTH] Authentication failed.", "{user}");
    }
    let r = py_pop_login(&server, "127.0.0.8", "joe", "wrong");
    assert!(r.starts_with("ERR -ERR [AUTH]"), "{r}");
    // joe is locked out, over SASL and USER/PASS, with the right password.
    let r = py_pop_auth_plain(&server, "127.0.0.9", "joe", "secret");
    assert_eq!(r, "ERR -ERR [AUTH] Authentication failed.");
    let r = py_pop_login(&server, "127.0.0.9", "joe", "secret");
    assert!(r.starts_with("ERR -ERR [AUTH]"), "{r}");
    // Another user is not.
    assert!(py_pop_auth_plain(&server, "127.0.0.9", "bob", "bobpw").starts_with("OK"));
}

#[test]
fn submission_refuses_unauthorized_clients_and_accepts_after_login() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let msg = message("joe@example.test", "submitted", "x");
    let v = py_send(
        &server,
        "submission",
        "127.0.0.5",
        "ann@example.test",
        "joe@example.test",
        &msg,
    );
    assert!(v.starts_with("MAIL-REFUSED 530"), "{v}");
    assert!(v.contains("5.7.0"), "{v}");
    assert!(server.messages("joe", "").is_empty());
    assert_eq!(
        py_pop_login(&server, "127.0.0.5", "ann", "secret"),
        "OK 0 0"
    );
    let v = py_send(
        &server,
        "submission",
        "127.0.0.5",
        "ann@example.test",
        "joe@example.test",
        &msg,
    );
    assert_eq!(v, "SENT");
    let v = py_send(
        &server,
        "submission",
        "127.0.0.5",
        "ann@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert_eq!(v, "SENT");
    assert_eq!(server.messages("joe", "").len(), 1);
    assert_eq!(server.queued().len(), 1);
}

#[test]
fn unknown_local_user_gets_550_and_postmaster_is_accepted() {
    let server = Server::start();
    let mut c = Raw::connect(&server, "smtp");
    assert!(c.reply().starts_with("220 "));
    assert!(c.smtp("EHLO client.example.org").starts_with("250 "));
    assert!(c.smtp("MAIL FROM:<s@example.org>").starts_with("250 "));
    let r = c.smtp("RCPT TO:<nobody@example.test>");
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let r = c.smtp("RCPT TO:<Postmaster>");
    assert!(r.starts_with("250 "), "{r}");
    let r = c.smtp("RCPT TO:<postmaster@example.test>");
    assert!(r.starts_with("250 "), "{r}");
    assert!(c.smtp("DATA").starts_with("354 "));
    c.send("Subject: to postmaster\r\n\r\nhi\r\n.");
    let r = c.reply();
    assert!(r.starts_with("250 "), "{r}");
    assert!(c.smtp("QUIT").starts_with("221 "));
    // postmaster = first user (joe); one copy per user.
    assert_eq!(server.messages("joe", "").len(), 1);
}

/// The relay battery from an unauthorized client, in one session: every form is refused.
#[test]
fn address_tricks_never_make_an_open_relay() {
    let server = Server::start();
    // Every refusal counts toward max_bad_commands (20, then 421): 13 forms
    // a session, each session ending with DATA refused for want of recipients.
    for tricks in RELAY_BATTERY.chunks(13) {
        let mut c = Raw::connect(&server, "smtp");
        assert!(c.reply().starts_with("220 "));
        assert!(c.smtp("EHLO relaytest.example").starts_with("250 "));
        assert!(
            c.smtp("MAIL FROM:<tester@elsewhere.example>")
                .starts_with("250 ")
        );
        for t in tricks {
            let r = c.smtp(&format!("RCPT TO:{t}"));
            assert!(r.starts_with('5'), "RCPT TO:{t} -> {r}");
        }
        let r = c.smtp("DATA");
        assert!(
            r.starts_with("554") || r.starts_with("503"),
            "DATA without recipients: {r}"
        );
    }
    assert!(server.queued().is_empty());
}

#[test]
fn dropped_pop3_connection_deletes_nothing_and_dele_quit_deletes() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    deliver_local(&server, "ann@example.test", "one", "1");
    deliver_local(&server, "ann@example.test", "two", "2");
    let mut c = Raw::connect(&server, "pop3");
    assert!(c.line().starts_with("+OK"));
    assert!(c.cmd("USER ann").starts_with("+OK"));
    assert!(c.cmd("PASS secret").starts_with("+OK"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("DELE 2").starts_with("+OK"));
    drop(c); // no QUIT
    // The lock is released once the server notices; then nothing is deleted.
    assert!(common::wait_until(Duration::from_secs(5), || pop_stat(
        &server, "ann", "secret"
    )
    .starts_with("OK 2 ")));

    let script = r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.user('ann'); p.pass_('secret')
p.dele(1)
print(p.quit().decode())
"#;
    let out = python(script, &[&server.port("pop3").to_string()]);
    assert!(out.ok() && out.stdout.starts_with("+OK"), "{out:?}");
    assert!(pop_stat(&server, "ann", "secret").starts_with("OK 1 "));
    assert_eq!(server.messages("ann", "").len(), 1);
}

#[test]
fn second_concurrent_login_gets_in_use() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let mut c = Raw::connect(&server, "pop3");
    assert!(c.line().starts_with("+OK"));
    assert!(c.cmd("USER joe").starts_with("+OK"));
    assert!(c.cmd("PASS secret").starts_with("+OK"));
    let r = pop_stat(&server, "joe", "secret");
    assert!(r.starts_with("ERR -ERR [IN-USE]"), "{r}");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(pop_stat(&server, "joe", "secret"), "OK 0 0");
}

#[test]
fn stls_and_starttls_with_a_generated_certificate() {
    if !require("python3") {
        return;
    }
    let opts = Options {
        tls: true,
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    let cert = server.cert_pem.clone().unwrap();
    let script = r#"
import poplib, smtplib, ssl, sys
cert, pop, pops, smtp, subs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cert)
ctx.check_hostname = False
# POP3 STLS, then login over TLS (records 127.0.0.1 for relaying).
p = poplib.POP3('127.0.0.1', pop, timeout=20)
assert 'STLS' in p.capa(), p.capa()
p.stls(ctx)
assert 'STLS' not in p.capa()
p.user('joe'); p.pass_('secret')
print('POP3-STLS', p.stat()[0])
p.quit()
# Implicit TLS POP3.
p = poplib.POP3_SSL('127.0.0.1', pops, context=ctx, timeout=20)
p.user('joe'); p.pass_('secret')
print('POP3S', p.stat()[0])
p.quit()
# SMTP STARTTLS on the port-25 role.
msg = b'From: a@example.org\r\nTo: joe@example.test\r\nSubject: tls\r\n\r\nover tls\r\n'
with smtplib.SMTP('127.0.0.1', smtp, local_hostname='client.example.org', timeout=20) as s:
    s.starttls(context=ctx)
    s.ehlo()
    assert not s.has_extn('starttls')
    s.sendmail('a@example.org', ['joe@example.test'], msg)
print('STARTTLS sent')
# Implicit TLS submission (authorized by the POP3 login above).
with smtplib.SMTP_SSL('127.0.0.1', subs, local_hostname='client.example.org', context=ctx, timeout=20) as s:
    s.ehlo()
    print('STARTTLS on 465:', s.docmd('STARTTLS')[0])
    s.sendmail('joe@example.test', ['friend@elsewhere.example'], msg)
print('SUBMISSIONS sent')
"#;
    let out = python(
        script,
        &[
            cert.to_str().unwrap(),
            &server.port("pop3").to_string(),
            &server.port("pop3s").to_string(),
            &server.port("smtp").to_string(),
            &server.port("submissions").to_string(),
        ],
    );
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert_eq!(
        out.stdout,
        "POP3-STLS 0\nPOP3S 0\nSTARTTLS sent\nSTARTTLS on 465: 503\nSUBMISSIONS sent\n"
    );
    assert_eq!(server.messages("joe", "").len(), 1);
    assert!(server.message_texts("joe", "")[0].contains("with ESMTPS"));
    assert_eq!(server.queued().len(), 1);
}

/// fetchmail and mpop set up with an address send it as the TLS server name
/// (RFC 6066 section 3 forbids it, and rustls ignores it): rustls logged a
/// warning for each such connection, the client's habit, not the server's
/// fault.
#[test]
fn an_address_sent_as_the_tls_server_name_is_no_warning() {
    if !require("openssl") {
        return;
    }
    let opts = Options {
        tls: true,
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    let out = common::run_with_input(
        std::process::Command::new("openssl").args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port("pop3s")),
            "-servername",
            "127.0.0.1",
            "-quiet",
            "-ign_eof",
        ]),
        Some(b"QUIT\r\n"),
        std::time::Duration::from_secs(20),
    );
    assert!(out.stdout.contains("+OK"), "{out:?}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("role=\"pop3s\""), "{log}");
    // (Tests run as root in CI: that start-up warning is not the one sought.)
    let warned = log
        .lines()
        .any(|l| l.contains(" WARN ") && !l.contains("running as root"));
    assert!(!log.contains("SNI") && !warned, "{log}");
}

/// The re-probe smuggled a second message inside a BDAT chunk whose BDAT line was too
/// long (or held a TAB): the line was refused, the connection stayed, and the chunk ran as
/// commands. Such a line now closes the connection, and nothing in the chunk is delivered.
#[test]
fn a_chunk_behind_a_bad_bdat_line_never_runs_as_commands() {
    let server = Server::start();
    for bdat in [
        format!("BDAT 93 LAST{}\r\n", " ".repeat(1100)),
        "BDAT\t93 LAST\r\n".to_owned(),
    ] {
        let chunk = "RSET\r\nMAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<ann@example.test>\r\n\
                     DATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\n";
        let r = common::raw_smtp(
            &server,
            "smtp",
            "127.0.0.1",
            &[
                b"EHLO client.example.org\r\n",
                b"MAIL FROM:<a@example.org>\r\n",
                b"RCPT TO:<joe@example.test>\r\n",
                format!("{bdat}{chunk}").as_bytes(),
                b"QUIT\r\n",
            ],
        );
        assert!(r[4].starts_with("521 5.5.4"), "{r:?}");
        assert_eq!(r[5], "EOF", "{r:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(server.messages("ann", "").is_empty());
    assert!(server.messages("joe", "").is_empty());
}

/// RFC 6531 section 3.7.3: a transaction that used SMTPUTF8 is received `with UTF8SMTP`,
/// another `with ESMTP`.
#[test]
fn smtputf8_mail_is_received_with_utf8smtp() {
    let server = Server::start();
    for (mail, with) in [
        (
            "MAIL FROM:<s@ex\u{e4}mple.org> SMTPUTF8\r\n",
            "with UTF8SMTP id",
        ),
        ("MAIL FROM:<s@example.org>\r\n", "with ESMTP id"),
    ] {
        let r = common::raw_smtp(
            &server,
            "smtp",
            "127.0.0.1",
            &[
                b"EHLO client.example.org\r\n",
                mail.as_bytes(),
                b"RCPT TO:<joe@example.test>\r\n",
                b"DATA\r\n",
                "Subject: u\r\n\r\nb\u{f6}dy\r\n.\r\n".as_bytes(),
                b"QUIT\r\n",
            ],
        );
        assert!(r[5].starts_with("250"), "{r:?}");
        let texts = server.message_texts("joe", "");
        assert!(texts.last().unwrap().contains(with), "{with}: {texts:?}");
        for f in server.messages("joe", "") {
            std::fs::remove_file(f).unwrap();
        }
    }
}

/// The id of the first `Received:` field of a stored message.
fn received_id(text: &str) -> String {
    text.split(" id ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c == ';' || c.is_whitespace()).next())
        .unwrap()
        .to_owned()
}

/// `Received:` ids were connection ids, which start at 1 in every process: they repeated
/// after each restart and on every host. They now end in the process's mark, which the log
/// names at start-up and a restart changes.
#[test]
fn received_ids_carry_the_process_mark() {
    let mark = |server: &Server| {
        let log = server.log();
        let at = log.find("instance=").expect("instance logged") + "instance=".len();
        log[at..].split_whitespace().next().unwrap().to_owned()
    };
    let send = |server: &Server| {
        let r = common::raw_smtp(
            server,
            "smtp",
            "127.0.0.1",
            &[
                b"EHLO client.example.org\r\n",
                b"MAIL FROM:<s@example.org>\r\n",
                b"RCPT TO:<joe@example.test>\r\n",
                b"DATA\r\n",
                b"Subject: id\r\n\r\nx\r\n.\r\n",
                b"QUIT\r\n",
            ],
        );
        assert!(r[5].starts_with("250"), "{r:?}");
    };
    let server = Server::start();
    let first = mark(&server);
    send(&server);
    let server = server.restart();
    let second = mark(&server);
    assert_ne!(first, second);
    send(&server);
    let texts = server.message_texts("joe", "");
    assert_eq!(texts.len(), 2);
    // One message per process, in whatever order the Maildir lists them.
    let mut marks: Vec<String> = texts
        .iter()
        .map(|text| received_id(text).rsplit_once('.').unwrap().1.to_owned())
        .collect();
    marks.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(marks, expected);
}

/// Each message of a connection has its own `Received:` id (RFC 5321 section 4.4): the
/// second and later ones add their number (a probe found four messages of one session
/// under one id).
#[test]
fn each_message_of_a_connection_has_its_own_received_id() {
    let server = Server::start();
    let transaction: [&[u8]; 4] = [
        b"MAIL FROM:<s@example.org>\r\n",
        b"RCPT TO:<joe@example.test>\r\n",
        b"DATA\r\n",
        b"Subject: one\r\n\r\nx\r\n.\r\n",
    ];
    let mut steps: Vec<&[u8]> = vec![b"EHLO client.example.org\r\n"];
    steps.extend(transaction);
    steps.extend(&transaction[..3]);
    steps.extend([&b"Subject: two\r\n\r\nx\r\n.\r\n"[..], b"QUIT\r\n"]);
    let r = common::raw_smtp(&server, "smtp", "127.0.0.1", &steps);
    assert!(r[5].starts_with("250") && r[9].starts_with("250"), "{r:?}");
    let id_of = |subject: &str| {
        let texts = server.message_texts("joe", "");
        received_id(
            texts
                .iter()
                .find(|t| t.contains(&format!("Subject: {subject}")))
                .expect("stored"),
        )
    };
    let (one, two) = (id_of("one"), id_of("two"));
    let (conn, mark) = one.split_once('.').unwrap();
    assert_eq!(two, format!("{conn}-2.{mark}"));
}

/// RFC 6409 section 8: a customer's message (a POP3 login from its address) that lacks
/// `Date:` and `Message-ID:` gets them (a probe's mail from curl had neither, and its spam
/// score grew by both), and is scored with them; one that has them keeps its own, and
/// anyone else's mail gets none.
#[test]
fn a_customers_message_gets_the_date_and_message_id_it_lacks() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    assert!(py_pop_login(&server, "127.0.0.2", "joe", "secret").starts_with("OK"));
    let send = |src: &str, head: &str| {
        let data = format!("{head}Subject: from {src}\r\n\r\nhi\r\n.\r\n");
        let r = common::raw_smtp(
            &server,
            "smtp",
            src,
            &[
                b"EHLO client.example.org\r\n",
                b"MAIL FROM:<me@example.org>\r\n",
                b"RCPT TO:<joe@example.test>\r\n",
                b"DATA\r\n",
                data.as_bytes(),
            ],
        );
        assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
        server
            .message_texts("joe", "")
            .into_iter()
            .find(|t| t.contains(&format!("Subject: from {src}")))
            .expect("stored")
    };
    let ours = send("127.0.0.2", "");
    assert!(ours.contains("\r\nDate: "), "{ours}");
    let id_line = ours
        .lines()
        .find(|l| l.starts_with("Message-ID: <"))
        .unwrap_or_else(|| panic!("no Message-ID: {ours}"));
    assert!(id_line.ends_with("@mail.example.test>"), "{id_line}");
    let theirs = send("127.0.0.3", "");
    assert!(
        !theirs.contains("\r\nDate: ") && !theirs.contains("Message-ID:"),
        "{theirs}"
    );
    // The built-in scorer scores the message as stored, with the fields the server
    // added (a probe's customer mail was filed as spam for lacking them); a
    // stranger's message is scored without.
    assert!(
        !ours.contains("MISSING_DATE") && !ours.contains("MISSING_MID"),
        "{ours}"
    );
    assert!(
        theirs.contains("MISSING_DATE") && theirs.contains("MISSING_MID"),
        "{theirs}"
    );
    let complete = send(
        "127.0.0.2",
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@example.org>\r\n",
    );
    assert_eq!(complete.matches("Date: ").count(), 1, "{complete}");
    assert_eq!(complete.matches("Message-ID: ").count(), 1, "{complete}");
    // A message that is all header, with no empty line, gets them too.
    let r = common::raw_smtp(
        &server,
        "smtp",
        "127.0.0.2",
        &[
            b"EHLO client.example.org\r\n",
            b"MAIL FROM:<me@example.org>\r\n",
            b"RCPT TO:<joe@example.test>\r\n",
            b"DATA\r\n",
            b"Subject: only a header\r\n.\r\n",
        ],
    );
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    // (Scored as spam or not: INBOX or Spam.)
    let only = ["", ".Spam"]
        .into_iter()
        .flat_map(|f| server.message_texts("joe", f))
        .find(|t| t.contains("Subject: only a header"))
        .expect("stored");
    assert!(
        only.contains("\r\nDate: ") && only.contains("Message-ID: <"),
        "{only}"
    );
}

/// `[pop3] uidl_format = "%f"` (Courier's, Dovecot's `%g` on Maildir): a Maildir a
/// Courier server wrote is served with the ids its clients know, the file's base name,
/// and they hold across sessions.
#[test]
fn uidls_take_the_configured_form() {
    if !require("python3") {
        return;
    }
    let server = Server::start_with(Options::default(), |data| {
        let cfg = data.parent().unwrap().join("mailbag.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            text.replacen("[pop3]\n", "[pop3]\nuidl_format = \"%f\"\n", 1),
        )
        .unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(data.join("joe").join(sub)).unwrap();
        }
        for (name, text) in [
            ("cur/1100000000.12345.courier:2,S", "Subject: one\n\nold\n"),
            ("new/1100000001.12346.courier", "Subject: two\n\nnew\n"),
        ] {
            std::fs::write(data.join("joe").join(name), text).unwrap();
        }
    });
    let script = r#"
import poplib, sys
for _ in range(2):
    p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
    p.user('joe'); p.pass_('secret')
    print(sorted(l.decode().split()[1] for l in p.uidl()[1]))
    p.quit()
"#;
    let out = common::python(script, &[&server.port("pop3").to_string()]);
    let want = "['1100000000.12345.courier', '1100000001.12346.courier']";
    assert_eq!(out.stdout.trim(), format!("{want}\n{want}"), "{out:?}");
}

#[test]
fn require_tls_for_login_refuses_plaintext_login() {
    if !require("python3") {
        return;
    }
    let opts = Options {
        tls: true,
        require_tls_for_login: true,
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    let r = pop_stat(&server, "joe", "secret");
    assert!(r.starts_with("ERR -ERR"), "{r}");
    // Still authorizes nothing.
    let msg = message("friend@elsewhere.example", "x", "y");
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.1",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert!(v.starts_with("RCPT-REFUSED 554"), "{v}");
    // After STLS the same login works (and then authorizes relaying).
    let script = r#"
import poplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
p = poplib.POP3('127.0.0.1', int(sys.argv[2]), timeout=20)
caps = p.capa()
print('USER' in caps, 'STLS' in caps)
p.stls(ctx)
print('USER' in p.capa())
p.user('joe'); p.pass_('secret')
print(p.stat()[0])
p.quit()
"#;
    let cert = server.cert_pem.clone().unwrap();
    let out = python(
        script,
        &[cert.to_str().unwrap(), &server.port("pop3").to_string()],
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout, "False True\nTrue\n0\n");
    let v = py_send(
        &server,
        "smtp",
        "127.0.0.1",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert_eq!(v, "SENT");
}

#[test]
fn sweeper_removes_8_day_old_spam_and_keeps_6_day_old() {
    let day = Duration::from_secs(86_400);
    let server = Server::start_with(Options::default(), |data| {
        let spam_new = data.join("joe").join(".Spam").join("new");
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(data.join("joe").join(d)).unwrap();
            std::fs::create_dir_all(data.join("joe").join(".Spam").join(d)).unwrap();
        }
        for (name, age) in [
            ("1000000000.M1P1Q1.test,S=20", 8),
            ("1000000001.M1P1Q2.test,S=20", 6),
        ] {
            let p = spam_new.join(name);
            std::fs::write(&p, "Subject: x\n\nold spam\n").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::now() - age * day).unwrap();
        }
    });
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .messages("joe", ".Spam")
            .len()
            == 1),
        "sweep did not run: {:?}\n{}",
        server.messages("joe", ".Spam"),
        server.log()
    );
    let left = server.messages("joe", ".Spam");
    assert!(
        left[0].to_string_lossy().contains("1000000001."),
        "{left:?}"
    );
}

#[test]
fn oversized_message_is_refused_with_552() {
    let server = Server::start(); // max_message_size = 1 MiB in the test config
    let mut c = Raw::connect(&server, "smtp");
    assert!(c.reply().starts_with("220 "));
    c.send("EHLO client.example.org");
    let mut saw_size = false;
    loop {
        let l = c.line();
        saw_size |= l.contains("SIZE 1048576");
        if l.as_bytes()[3] == b' ' {
            break;
        }
    }
    assert!(saw_size);
    let r = c.smtp("MAIL FROM:<s@example.org> SIZE=2000000");
    assert!(r.starts_with("552"), "{r}");
}

#[test]
fn partially_refused_recipients_still_deliver_to_the_rest() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let script = r#"
import smtplib, sys
with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example.org', timeout=20) as s:
    refused = s.sendmail('s@example.org', ['joe@example.test', 'nobody@example.test', 'ann@example.test'],
                         b'Subject: multi\r\n\r\nhi\r\n')
    print(sorted(refused.keys()), refused['nobody@example.test'][0])
"#;
    let out = python(script, &[&server.port("smtp").to_string()]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.trim(), "['nobody@example.test'] 550");
    assert_eq!(server.messages("ann", "").len(), 1);
    assert_eq!(server.messages("joe", "").len(), 1);
}

/// One message for two local users whose second Maildir cannot take it (its `tmp` is
/// a file): the whole message gets a 4xx with nothing stored for the first user either,
/// so the client's retry after the repair stores exactly one copy for each.
#[test]
fn a_store_failure_for_one_local_user_duplicates_nothing_on_retry() {
    let server = Server::start_with(Options::default(), |data| {
        let bob = data.join("bob");
        for d in ["new", "cur"] {
            std::fs::create_dir_all(bob.join(d)).unwrap();
        }
        std::fs::write(bob.join("tmp"), b"not a directory").unwrap();
    });
    let send = |server: &Server| -> String {
        let mut c = Raw::connect(server, "smtp");
        assert!(c.reply().starts_with("220"));
        assert!(c.smtp("EHLO client.example.org").starts_with("250"));
        assert!(c.smtp("MAIL FROM:<sender@example.org>").starts_with("250"));
        assert!(c.smtp("RCPT TO:<joe@example.test>").starts_with("250"));
        assert!(c.smtp("RCPT TO:<bob@example.test>").starts_with("250"));
        assert!(c.smtp("DATA").starts_with("354"));
        c.send("Subject: for both\r\n\r\nhello both\r\n.");
        let r = c.reply();
        c.smtp("QUIT");
        r
    };
    let r = send(&server);
    assert!(r.starts_with("451"), "{r}\n{}", server.log());
    assert!(server.messages("joe", "").is_empty(), "stored behind a 4xx");
    assert!(server.messages("bob", "").is_empty());
    // Repaired: the retry stores one copy each.
    let tmp = server.data.join("bob").join("tmp");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let r = send(&server);
    assert!(r.starts_with("250"), "{r}\n{}", server.log());
    assert_eq!(server.messages("joe", "").len(), 1);
    assert_eq!(server.messages("bob", "").len(), 1);
}

/// Large messages as stored on disk by other tools, over several 64 KiB read
/// chunks: CRLF and bare LF with a few dot lines per chunk (sent zero-copy
/// from the read buffer), one that is all dot lines (more segments than
/// `MAX_WRITE_SEGMENTS`: joined into one buffer), mixed line ends, and no
/// final line end. Python's poplib (which undoes dot-stuffing) gets every
/// line back, octet counts equal the LIST sizes, and TOP stops where it
/// should; over plain POP3 and over implicit TLS.
#[test]
fn large_messages_of_every_line_ending_retrieve_intact() {
    if !require("python3") {
        return;
    }
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for (eol, lines) in [(&b"\r\n"[..], 6000), (b"\n", 4000)] {
        let mut m = b"Subject: big".to_vec();
        m.extend_from_slice(eol);
        m.extend_from_slice(eol);
        for i in 0..lines {
            if i % 37 == 0 {
                m.extend_from_slice(b".a line that starts with a dot");
            } else if i % 101 == 0 {
                m.push(b'.');
            } else {
                m.extend_from_slice(
                    format!("line {i} of the message, {}", "x".repeat(i % 90)).as_bytes(),
                );
            }
            m.extend_from_slice(eol);
        }
        bodies.push(m);
    }
    let mut mixed = b"Subject: mixed\n\r\n".to_vec();
    for i in 0..30000 {
        mixed.extend_from_slice(format!("..{i}").as_bytes());
        mixed.extend_from_slice(if i % 3 == 0 { b"\n" } else { b"\r\n" });
    }
    mixed.extend_from_slice(b"no final line end");
    bodies.push(mixed);
    let stored = bodies.clone();
    let server = Server::start_with(
        Options {
            tls: true,
            ..Options::default()
        },
        move |data| {
            for d in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(data.join("joe").join(d)).unwrap();
            }
            for (i, m) in stored.iter().enumerate() {
                let name = format!("100000000{i}.M{i}P1.test");
                std::fs::write(data.join("joe").join("new").join(name), m).unwrap();
            }
        },
    );
    let out_dir = server.dir.path().join("retrieved");
    std::fs::create_dir_all(&out_dir).unwrap();
    let script = r#"
import poplib, ssl, sys
cert, pop, pops, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cert)
ctx.check_hostname = False
for kind in ('plain', 'tls'):
    if kind == 'plain':
        p = poplib.POP3('127.0.0.1', pop, timeout=20)
    else:
        p = poplib.POP3_SSL('127.0.0.1', pops, context=ctx, timeout=20)
    p.user('joe'); p.pass_('secret')
    sizes = [int(l.split()[1]) for l in p.list()[1]]
    for n in range(1, len(sizes) + 1):
        resp, lines, octets = p.retr(n)
        assert octets == sizes[n - 1], (kind, n, octets, sizes[n - 1])
        open('%s/%s-%d' % (out, kind, n), 'wb').write(b'\n'.join(lines))
        resp, lines, octets = p.top(n, 3)
        open('%s/%s-top-%d' % (out, kind, n), 'wb').write(b'\n'.join(lines))
    print(kind, len(sizes))
    p.quit()
"#;
    let cert = server.cert_pem.clone().unwrap();
    let out = python(
        script,
        &[
            cert.to_str().unwrap(),
            &server.port("pop3").to_string(),
            &server.port("pop3s").to_string(),
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert_eq!(out.stdout, "plain 3\ntls 3\n");
    // Messages are listed in delivery (name) order.
    for (i, m) in bodies.iter().enumerate() {
        let mut lines: Vec<&[u8]> = m
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect();
        if m.ends_with(b"\n") {
            lines.pop();
        }
        let whole = lines.join(&b"\n"[..]);
        // Header, blank line, three body lines.
        let top = lines[..5].join(&b"\n"[..]);
        for kind in ["plain", "tls"] {
            let got = std::fs::read(out_dir.join(format!("{kind}-{}", i + 1))).unwrap();
            assert!(got == whole, "{kind} message {} differs", i + 1);
            let got = std::fs::read(out_dir.join(format!("{kind}-top-{}", i + 1))).unwrap();
            assert!(got == top, "{kind} TOP of message {} differs", i + 1);
        }
    }
}

/// A web page's POST whose body is SMTP commands, from a client address
/// that may relay (the browser of a customer who just fetched mail): closed
/// at the request line with `421`, nothing relayed or delivered, on the
/// port-25 and the submission role (a probe relayed mail this way through
/// headless Chromium).
#[test]
fn an_http_post_to_an_smtp_port_runs_none_of_its_body() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    assert!(py_pop_login(&server, "127.0.0.2", "joe", "secret").starts_with("OK"));
    let body = "EHLO x\r\nMAIL FROM:<joe@example.test>\r\nRCPT TO:<victim@remote.example>\r\n\
                RCPT TO:<ann@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    let post = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for role in ["smtp", "submission"] {
        let r = common::raw_smtp_port(&server, server.port(role), "127.0.0.2", &[post.as_bytes()]);
        assert!(r[1].starts_with("421 4.7.0"), "{role}: {r:?}");
    }
    assert!(server.queued().is_empty(), "{:?}", server.queued());
    assert!(server.messages("ann", "").is_empty());
}

/// `EHLO été.example` (UTF-8, as RFC 6531 allows): the stored `Received:`
/// names that domain, as its A-label without SMTPUTF8 and as sent with it
/// (a probe found `from t.example`: the other letters dropped).
#[test]
fn a_u_label_ehlo_name_is_kept_in_received() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    for (mail, subject) in [
        ("MAIL FROM:<a@example.org>\r\n", "plain"),
        ("MAIL FROM:<a@example.org> SMTPUTF8\r\n", "utf8"),
    ] {
        let msg = format!("Subject: {subject}\r\n\r\nhi\r\n.\r\n");
        let r = common::raw_smtp_port(
            &server,
            server.port("smtp"),
            "127.0.0.9",
            &[
                "EHLO \u{e9}t\u{e9}.example\r\n".as_bytes(),
                mail.as_bytes(),
                b"RCPT TO:<ann@example.test>\r\n",
                b"DATA\r\n",
                msg.as_bytes(),
            ],
        );
        assert!(r[5].starts_with("250"), "{r:?}");
    }
    let stored: Vec<String> = server
        .messages("ann", "")
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    assert_eq!(stored.len(), 2);
    let received = |subject: &str| {
        stored
            .iter()
            .find(|m| m.contains(&format!("Subject: {subject}")))
            .and_then(|m| m.lines().find(|l| l.starts_with("Received: from ")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(
        received("plain").starts_with("Received: from xn--t-9fab.example ("),
        "{}",
        received("plain")
    );
    assert!(
        received("utf8").starts_with("Received: from \u{e9}t\u{e9}.example ("),
        "{}",
        received("utf8")
    );
}

/// A web page's POST of POP3 commands with wrong passwords, sent twice:
/// each is closed at its request line, so no password is tried and the
/// customer's address is not locked out (five failures would lock it).
#[test]
fn an_http_post_to_the_pop3_port_tries_no_password() {
    use std::io::{Read, Write};
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let guesses = "USER joe\r\nPASS a\r\nPASS b\r\nUSER joe\r\nPASS c\r\nUSER joe\r\nPASS d\r\n";
    let post = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{guesses}",
        guesses.len()
    );
    for _ in 0..2 {
        let mut s = std::net::TcpStream::connect(server.addrs["pop3"]).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(post.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.ends_with("-ERR HTTP request to a POP3 server: closing.\r\n"),
            "{answer}"
        );
        assert!(!answer.contains("[AUTH]"), "{answer}");
    }
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
}
