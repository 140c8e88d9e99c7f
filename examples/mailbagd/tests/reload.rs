//! Live reload: SIGHUP re-reads the configuration, the passwd-file and the
//! TLS certificate without dropping connections; the passwd-file is also
//! re-read by itself when it changes; a failing reload keeps the running
//! state; bad passwd-file lines are skipped at reload; keys that need a
//! restart are named. Under `CI=true` a missing python3 fails the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::{Options, Server, py_pop_login, require, run_with_input};

/// A line-at-a-time client on a raw TCP connection.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(server: &Server, role: &str) -> (Conn, String) {
        let s = TcpStream::connect(server.addrs[role]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Conn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = c.reply();
        (c, greeting)
    }

    /// One reply: a line, or the last line of an SMTP multi-line reply.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            let multi = line.len() > 3 && line.as_bytes().get(3) == Some(&b'-');
            if !multi {
                return line.trim_end().to_owned();
            }
        }
    }

    fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// Reads a POP3 multi-line answer up to its lone dot.
    fn multiline(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "connection closed in a multi-line answer");
            if line == ".\r\n" {
                return out;
            }
            out.push_str(&line);
        }
    }
}

fn mailbagd(args: &[&str], stdin: Option<&str>) -> common::Out {
    run_with_input(
        Command::new(env!("CARGO_BIN_EXE_mailbagd")).args(args),
        stdin.map(str::as_bytes),
        Duration::from_secs(60),
    )
}

/// The passwd-file of these tests: user `pat` (password `patpw`).
fn passwd_path(data: &Path) -> PathBuf {
    data.parent().unwrap().join("users.passwd")
}

fn start(check_interval: &str, tls: bool) -> (Server, PathBuf) {
    let mut file = None;
    let server = Server::start_with(
        Options {
            tls,
            userdb: {
                // The file is made in `before`; its path is known now.
                String::from("__PASSWD__")
            },
            ..Options::default()
        },
        |data| {
            let p = passwd_path(data);
            std::fs::write(&p, "# users\npat:{PLAIN}patpw::::::\n").unwrap();
            // The configuration names it, with the check interval of the test.
            let cfg = data.parent().unwrap().join("mailbag.toml");
            let text = std::fs::read_to_string(&cfg).unwrap().replace(
                "__PASSWD__",
                &format!("passwd_file = {p:?}\ncheck_interval = \"{check_interval}\""),
            );
            std::fs::write(&cfg, text).unwrap();
            file = Some(p);
        },
    );
    (server, file.unwrap())
}

/// Waits (10 s at most) until a POP3 login of `user` answers `OK…` or `ERR…` (`want`).
fn wait_for_login(server: &Server, user: &str, password: &str, want: &str) {
    assert!(
        common::wait_until(Duration::from_secs(10), || py_pop_login(
            server,
            "127.0.0.1",
            user,
            password
        )
        .starts_with(want)),
        "a POP3 login of {user} never answered {want}:\n{}",
        server.log()
    );
}

fn wait_for_log(server: &Server, text: &str, times: usize) {
    assert!(
        common::wait_until(Duration::from_secs(20), || server
            .log()
            .matches(text)
            .count()
            >= times),
        "no {times}× {text:?} in the log:\n{}",
        server.log()
    );
}

#[test]
fn sighup_keeps_open_sessions_and_the_next_login_sees_a_new_user() {
    if !require("python3") {
        return;
    }
    // The passwd-file is looked at hourly: only the signal can make the new user known.
    let (server, passwd) = start("1h", false);
    common::deliver_local(
        &server,
        "joe@example.test",
        "before",
        "kept across the reload",
    );

    // A POP3 session in the transaction state, holding joe's maildrop.
    let (mut pop, greeting) = Conn::open(&server, "pop3");
    assert!(greeting.starts_with("+OK"), "{greeting}");
    assert!(pop.cmd("USER joe").starts_with("+OK"));
    assert!(pop.cmd("PASS secret").starts_with("+OK"));
    assert!(pop.cmd("STAT").starts_with("+OK 1 "));

    // An SMTP transaction half-way through its DATA, to a passwd-file user.
    let (mut smtp, greeting) = Conn::open(&server, "smtp");
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(smtp.cmd("EHLO client.example.org").starts_with("250"));
    assert!(smtp.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<pat@example.test>").starts_with("250"));
    assert!(smtp.cmd("DATA").starts_with("354"));
    smtp.send("From: a@example.org\r\nSubject: across a reload\r\n\r\nfirst half\r\n");

    // A user added meanwhile, then the reload.
    let f = passwd.to_str().unwrap();
    let add = mailbagd(&["user", "add", "newbie", "--file", f], Some("newpw\n"));
    assert!(add.ok(), "{add:?}");
    assert!(py_pop_login(&server, "127.0.0.1", "newbie", "newpw").starts_with("ERR"));
    server.signal_hup();
    wait_for_log(&server, "configuration reloaded", 1);

    // Both sessions complete.
    smtp.send("second half\r\n.\r\n");
    let end = smtp.reply();
    assert!(
        end.starts_with("250"),
        "end of DATA after the reload: {end}"
    );
    assert!(smtp.cmd("QUIT").starts_with("221"));
    assert!(pop.cmd("RETR 1").starts_with("+OK"));
    assert!(pop.multiline().contains("kept across the reload"));
    assert!(pop.cmd("DELE 1").starts_with("+OK"));
    let quit = pop.cmd("QUIT");
    assert!(quit.starts_with("+OK"), "{quit}");
    assert!(
        server.messages("joe", "").is_empty(),
        "DELE committed at QUIT"
    );
    let pat = server.message_texts("pat", "");
    assert_eq!(pat.len(), 1, "{}", server.log());
    assert!(pat[0].contains("first half\r\nsecond half\r\n"));

    // The next login sees the new user; the old ones are still there.
    let login = py_pop_login(&server, "127.0.0.1", "newbie", "newpw");
    assert!(login.starts_with("OK 0"), "{login}\n{}", server.log());
    assert!(py_pop_login(&server, "127.0.0.1", "pat", "patpw").starts_with("OK 1"));
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
}

#[test]
fn the_passwd_file_is_reread_when_it_changes_and_bad_lines_are_skipped() {
    if !require("python3") {
        return;
    }
    let (server, passwd) = start("200ms", false);
    let f = passwd.to_str().unwrap();
    let add = mailbagd(&["user", "add", "zoe", "--file", f], Some("zoepw\n"));
    assert!(add.ok(), "{add:?}");
    // Logins tried before the reload would count as failures against the
    // login limiter: wait for it.
    wait_for_log(&server, "configuration reloaded", 1);
    wait_for_login(&server, "zoe", "zoepw", "OK");
    assert!(server.log().contains("passwd-file changed"));

    // A password change takes effect the same way.
    let passwd_cmd = mailbagd(&["user", "passwd", "zoe", "--file", f], Some("other\n"));
    assert!(passwd_cmd.ok(), "{passwd_cmd:?}");
    wait_for_log(&server, "configuration reloaded", 2);
    wait_for_login(&server, "zoe", "other", "OK");
    assert!(py_pop_login(&server, "127.0.0.1", "zoe", "zoepw").starts_with("ERR"));

    // A malformed line (line 4: no password field; line 5: a name mailstore
    // refuses) is skipped with its number; everyone else keeps working.
    let mut text = std::fs::read_to_string(&passwd).unwrap();
    text.push_str("brokenline\nbad/name:{PLAIN}x::::::\nlou:{PLAIN}loupw::::::\n");
    std::fs::write(&passwd, text).unwrap();
    wait_for_log(&server, "configuration reloaded", 3);
    wait_for_login(&server, "lou", "loupw", "OK");
    let log = server.log();
    assert!(
        log.contains("line 4") && log.contains("line 5") && log.contains("line skipped"),
        "{log}"
    );
    // Logged as errors, as at start-up.
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("line 4") && l.contains("line skipped")),
        "{log}"
    );
    assert!(py_pop_login(&server, "127.0.0.1", "pat", "patpw").starts_with("OK"));
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));

    // A user removed cannot log in any more.
    let del = mailbagd(&["user", "del", "lou", "--file", f], None);
    assert!(del.ok(), "{del:?}");
    wait_for_login(&server, "lou", "loupw", "ERR");
}

/// A user removed, or whose password changed, relays no more from the
/// addresses their old logins authorized (POP-before-SMTP): the reload
/// revokes them at once, instead of at the end of the window (30 minutes).
/// Others keep theirs. Found by a cluster probe: a deleted user's address
/// went on relaying, logged as that user.
#[test]
fn a_removed_or_changed_user_relays_no_more() {
    if !require("python3") {
        return;
    }
    let (server, passwd) = start("200ms", false);
    let f = passwd.to_str().unwrap();
    for (user, pw) in [("zoe", "zoepw"), ("max", "maxpw")] {
        let add = mailbagd(
            &["user", "add", user, "--file", f],
            Some(&format!("{pw}\n")),
        );
        assert!(add.ok(), "{add:?}");
    }
    wait_for_log(&server, "configuration reloaded", 1);
    wait_for_login(&server, "zoe", "zoepw", "OK");
    let relay =
        |src: &str| common::rcpt_reply(&server, server.port("smtp"), src, "kim@elsewhere.example");
    for (src, user, pw) in [
        ("127.0.0.2", "zoe", "zoepw"),
        ("127.0.0.3", "max", "maxpw"),
        ("127.0.0.4", "pat", "patpw"),
    ] {
        assert!(py_pop_login(&server, src, user, pw).starts_with("OK"));
        assert!(relay(src).starts_with("250"), "{src}");
    }
    let del = mailbagd(&["user", "del", "zoe", "--file", f], None);
    assert!(del.ok(), "{del:?}");
    let changed = mailbagd(&["user", "passwd", "max", "--file", f], Some("newpw\n"));
    assert!(changed.ok(), "{changed:?}");
    assert!(
        common::wait_until(Duration::from_secs(10), || relay("127.0.0.2")
            .starts_with("554")
            && relay("127.0.0.3").starts_with("554")),
        "removed and changed users still relay:\n{}",
        server.log()
    );
    assert!(server.log().contains("relay authorizations revoked"));
    assert!(relay("127.0.0.4").starts_with("250"), "untouched user");
    // A login with the new password authorizes again.
    assert!(py_pop_login(&server, "127.0.0.3", "max", "newpw").starts_with("OK"));
    assert!(relay("127.0.0.3").starts_with("250"));
}

/// The first line of the SMTP server's answer to `RCPT TO:<user@example.test>`
/// on a new connection (a session keeps the users it began with).
fn rcpt_reply(server: &Server, user: &str) -> String {
    let (mut c, greeting) = Conn::open(server, "smtp");
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(c.cmd("EHLO client.example.org").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    let reply = c.cmd(&format!("RCPT TO:<{user}@example.test>"));
    c.cmd("QUIT");
    reply
}

/// An admin's editor or script rewriting the passwd-file in place (not
/// renamed over) leaves it half written for a while: a check meanwhile must
/// not take the missing half's users for unknown (a `550` bounces their
/// mail). Found by a probe: `zed`, last in the file, got `550 5.1.1`.
#[test]
fn a_passwd_file_rewritten_in_place_is_not_read_half_written() {
    let (server, passwd) = start("300ms", false);
    let mut text = String::from("pat:{PLAIN}patpw::::::\n");
    for i in 0..400 {
        text.push_str(&format!("user{i}:{{PLAIN}}pw{i}::::::\n"));
    }
    text.push_str("zed:{PLAIN}zedpw::::::\n");
    std::fs::write(&passwd, &text).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || rcpt_reply(&server, "zed")
            .starts_with("250")),
        "zed never known:\n{}",
        server.log()
    );

    // The same users and one more, written in place a line every 5 ms
    // (about 2 s: several checks see the file change).
    text.push_str("amy:{PLAIN}amypw::::::\n");
    let writer = {
        let (path, text) = (passwd.clone(), text.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            for line in text.split_inclusive('\n') {
                f.write_all(line.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut replies = Vec::new();
    while !writer.is_finished() {
        replies.push(rcpt_reply(&server, "zed"));
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || rcpt_reply(&server, "amy")
            .starts_with("250")),
        "amy never known:\n{}",
        server.log()
    );
    replies.push(rcpt_reply(&server, "zed"));
    let refused: Vec<_> = replies.iter().filter(|r| !r.starts_with("250")).collect();
    assert!(
        replies.len() > 20 && refused.is_empty(),
        "{} probes, refused: {refused:?}\n{}",
        replies.len(),
        server.log()
    );
}

#[test]
fn a_failing_reload_keeps_the_running_state_and_restart_keys_are_named() {
    if !require("python3") {
        return;
    }
    let (server, _passwd) = start("1h", false);
    let cfg = server.config_path().to_owned();
    let good = std::fs::read_to_string(&cfg).unwrap();

    // Nothing changed: nothing named, also not the connection limits that
    // start-up lowered to fit the open-file limit (when it did).
    server.signal_hup();
    wait_for_log(&server, "configuration reloaded", 1);
    assert!(!server.log().contains("needs restart"), "{}", server.log());

    // A syntax error: one error line, the server keeps serving as before.
    std::fs::write(&cfg, format!("{good}\n[[users]\nname = ")).unwrap();
    server.signal_hup();
    wait_for_log(&server, "reload failed", 1);
    // The TOML error's own lines (its caret diagram) are joined into that one
    // line (a probe's log parser saw five).
    let log = server.log();
    let failed = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(failed.contains(" | "), "{failed}");
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with('|') || l.trim_start().starts_with('^')),
        "{log}"
    );
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
    assert!(py_pop_login(&server, "127.0.0.1", "pat", "patpw").starts_with("OK"));

    // A new data_dir and a new POP3 listen address need a restart: named,
    // and ignored; a new user in [[users]] and a new pop3 idle time apply.
    let changed = good
        .replacen("data_dir = ", "data_dir = \"/nonexistent/elsewhere\"\n#", 1)
        .replacen(
            "[pop3]\nlisten = [\"127.0.0.1:0\"]",
            "[pop3]\nlisten = [\"127.0.0.1:1\"]",
            1,
        )
        + "[[users]]\nname = \"tom\"\npassword = \"tompw\"\n";
    std::fs::write(&cfg, changed).unwrap();
    server.signal_hup();
    wait_for_log(&server, "configuration reloaded", 2);
    let log = server.log();
    for key in ["data_dir", "pop3.listen"] {
        assert!(
            log.lines().any(|l| l.contains("needs restart")
                && l.contains(&format!("key=\"{key}\""))
                || l.contains("needs restart") && l.contains(&format!("key={key}"))),
            "{key} not named as needing a restart:\n{log}"
        );
    }
    assert!(py_pop_login(&server, "127.0.0.1", "tom", "tompw").starts_with("OK"));
    // Still the old data directory: joe's mail is where it was.
    common::deliver_local(&server, "joe@example.test", "after", "still here");
    assert_eq!(server.messages("joe", "").len(), 1);
}

/// A passwd-file that had users and has none after a change (cut short,
/// garbled) is refused while `[[users]]` remain: before, the reload went
/// through with an INFO line and every user of the file got `550 5.1.1`.
/// A file left with comments alone removes its users on purpose: applied.
#[test]
fn a_passwd_file_emptied_beside_inline_users_is_refused() {
    if !require("python3") {
        return;
    }
    let (server, passwd) = start("1h", false);
    wait_for_login(&server, "pat", "patpw", "OK");
    // One at a time: two SIGHUPs sent together may arrive as one.
    for (n, broken) in ["", "garbage without colons\n"].into_iter().enumerate() {
        std::fs::write(&passwd, broken).unwrap();
        server.signal_hup();
        wait_for_log(&server, "has no users now (it had 1)", n + 1);
    }
    assert!(
        !server.log().contains("configuration reloaded"),
        "{}",
        server.log()
    );
    assert!(py_pop_login(&server, "127.0.0.1", "pat", "patpw").starts_with("OK"));
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
    // Repaired with another user: applied.
    std::fs::write(&passwd, "sam:{PLAIN}sampw::::::\n").unwrap();
    server.signal_hup();
    wait_for_log(&server, "configuration reloaded", 1);
    assert!(py_pop_login(&server, "127.0.0.1", "sam", "sampw").starts_with("OK"));
    // Every user removed on purpose, a comment left: applied.
    std::fs::write(&passwd, "# sam left\n").unwrap();
    server.signal_hup();
    wait_for_log(&server, "configuration reloaded", 2);
    assert!(py_pop_login(&server, "127.0.0.1", "sam", "sampw").starts_with("ERR"));
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
}

/// The SHA-256 of the certificate a TLS port presents.
fn cert_fingerprint(port: u16) -> String {
    let script = r#"
import ssl, socket, sys, hashlib
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10)
t = ctx.wrap_socket(s)
print(hashlib.sha256(t.getpeercert(True)).hexdigest())
t.close()
"#;
    let out = common::python(script, &[&port.to_string()]);
    assert!(out.ok(), "{out:?}");
    out.stdout.trim().to_owned()
}

#[test]
fn sighup_reloads_the_tls_certificate_and_a_bad_one_is_refused() {
    if !require("python3") {
        return;
    }
    let (server, _passwd) = start("1h", true);
    let port = server.port("pop3s");
    let first = cert_fingerprint(port);
    let (mut open, greeting) = Conn::open(&server, "pop3");
    assert!(greeting.starts_with("+OK"));

    // A new certificate and key in the same files.
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = server.dir.path();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    server.signal_hup();
    wait_for_log(&server, "configuration reloaded", 1);
    let second = cert_fingerprint(port);
    assert_ne!(first, second, "the new certificate is not served");
    // The connection opened before the reload still works.
    assert!(open.cmd("CAPA").starts_with("+OK"));
    open.multiline();

    // A broken certificate: the reload fails, the last good one stays.
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    server.signal_hup();
    wait_for_log(&server, "reload failed", 1);
    assert_eq!(cert_fingerprint(port), second);
    assert!(open.cmd("QUIT").starts_with("+OK"));
}

/// A reload that removes `[tls]` while the implicit-TLS listeners (restart-only) stay
/// is refused, and TLS goes on being served (before, it was applied and each TLS port
/// accepted connections and closed them at once, without a word in the log).
#[test]
fn a_reload_that_removes_tls_under_running_tls_listeners_is_refused() {
    if !require("python3") {
        return;
    }
    let (server, _passwd) = start("1h", true);
    let port = server.port("pop3s");
    let first = cert_fingerprint(port);
    let cfg = server.config_path().to_owned();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let start = text.find("[tls]").expect("a [tls] table");
    let end = text[start + 5..]
        .find("\n[")
        .map_or(text.len(), |i| start + 5 + i + 1);
    let without = format!("{}{}", &text[..start], &text[end..])
        .replace("tls_listen = [\"127.0.0.1:0\"]", "tls_listen = []");
    assert!(
        !without.contains("[tls]") && !without.contains("cert_file"),
        "{without}"
    );
    std::fs::write(&cfg, without).unwrap();
    server.signal_hup();
    wait_for_log(&server, "reload failed", 1);
    let log = server.log();
    assert!(
        log.contains("[tls] is removed, but the running pop3.tls_listen, smtp.tls_listen need it"),
        "{log}"
    );
    assert_eq!(cert_fingerprint(port), first, "TLS is still served");
}
