//! The login names users type, through real clients: the full address in
//! any letter case opens the INBOX, `joe/Spam` opens joe's Spam folder as
//! a maildrop of its own (poplib, curl and mpop), and either login
//! authorizes relay (POP-before-SMTP). Under `CI=true` a missing client
//! fails the test.

use std::fs;
use std::process::Command;

mod common;
use common::{GTUBE, Server, deliver_local, message, py_pop_login, py_send, python, require, run};

/// One ham and one GTUBE message for joe (whose spam goes to `.Spam`).
fn seed(server: &Server) {
    for (subject, body) in [("ham for joe", "hello"), ("buy now", GTUBE)] {
        deliver_local(server, "joe@example.test", subject, body);
    }
    assert_eq!(server.messages("joe", "").len(), 1, "{}", server.log());
    assert_eq!(server.messages("joe", ".Spam").len(), 1, "{}", server.log());
}

/// CAPA's `EXPIRE` (RFC 2449 6.7), read by poplib: before login the
/// shortest of any maildrop with `USER` (7 days: the Spam folder's
/// `spam_retention`), after login the INBOX's `NEVER` or the Spam folder's 7.
/// Before, no `EXPIRE` was listed at all, though Spam is emptied weekly.
#[test]
fn capa_expire_names_each_maildrops_retention() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let capa = |user: &str| {
        common::py_pop(
            &server,
            "127.0.0.1",
            user,
            "secret",
            "print(p.capa().get('EXPIRE')); p.user(user); p.pass_(pw); print(p.capa().get('EXPIRE'))",
        )
    };
    assert_eq!(capa("joe"), "['7', 'USER']\n['NEVER']\nOK 0 0");
    assert_eq!(capa("joe/Spam"), "['7', 'USER']\n['7']\nOK 0 0");
}

#[test]
fn address_forms_and_spam_login_with_poplib() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    seed(&server);
    for user in ["joe", "JOE", "joe@example.test", "Joe@EXAMPLE.TEST"] {
        let stat = py_pop_login(&server, "127.0.0.1", user, "secret");
        assert!(stat.starts_with("OK 1 "), "{user}: {stat}");
    }
    for user in ["joe/Spam", "joe/spam", "JOE@Example.Test/Spam"] {
        let stat = py_pop_login(&server, "127.0.0.1", user, "secret");
        assert!(stat.starts_with("OK 1 "), "{user}: {stat}");
    }
    for (user, pass) in [
        ("joe@elsewhere.test", "secret"),
        ("joe/Ham", "secret"),
        ("joe/Spam", "wrong"),
    ] {
        let stat = py_pop_login(&server, "127.0.0.1", user, pass);
        assert!(stat.starts_with("ERR -ERR [AUTH]"), "{user}: {stat}");
    }

    // Both folders at once, each once; RETR, UIDL and DELE work in Spam;
    // DELE at QUIT deletes from Spam only.
    let port = server.port("pop3").to_string();
    let script = r#"
import poplib, sys
port = int(sys.argv[1])
def login(user):
    p = poplib.POP3('127.0.0.1', port, timeout=20)
    p.user(user); p.pass_('secret')
    return p
capa = poplib.POP3('127.0.0.1', port, timeout=20)
print(capa.capa().get('IMPLEMENTATION'))
capa.quit()
inbox = login('joe@example.test')
spam = login('joe/Spam')
try:
    login('JOE/SPAM')
    print('second Spam session allowed')
except poplib.error_proto as e:
    print(e.args[0].decode())
print(inbox.stat(), spam.stat())
lines = spam.retr(1)[1]
print('GTUBE' if any(b'GTUBE' in l for l in lines) else 'no GTUBE')
print(spam.uidl(1).decode())
print(spam.top(1, 0)[0].decode())
spam.dele(1)
spam.quit()
inbox.quit()
"#;
    let out = python(script, &[&port]);
    assert!(out.ok(), "{out:?}\n{}", server.log());
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.remove(0),
        "['Mailbag;', 'Spam', 'folder:', 'log', 'in', 'as', '<mailbox>/Spam']",
        "CAPA IMPLEMENTATION"
    );
    assert!(lines[0].starts_with("-ERR [IN-USE]"), "{out:?}");
    assert!(
        lines[1].starts_with("(1, ") && lines[1].contains(") (1, "),
        "{out:?}"
    );
    assert_eq!(lines[2], "GTUBE", "{out:?}");
    assert!(lines[3].starts_with("+OK 1 "), "{out:?}");
    assert!(lines[4].starts_with("+OK"), "{out:?}");
    assert!(server.messages("joe", ".Spam").is_empty(), "{out:?}");
    assert_eq!(server.messages("joe", "").len(), 1);
}

#[test]
fn spam_login_authorizes_relay() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    let out = "friend@elsewhere.example";
    let msg = message(out, "relayed", "hi");
    let submit = |src: &str| py_send(&server, "submission", src, "joe@example.test", out, &msg);
    assert!(submit("127.0.0.7").starts_with("MAIL-REFUSED 530"));
    let stat = py_pop_login(&server, "127.0.0.7", "JOE@example.test/Spam", "secret");
    assert!(stat.starts_with("OK 0 "), "{stat}");
    assert_eq!(submit("127.0.0.7"), "SENT", "{}", server.log());
    // Another address is still refused.
    assert!(submit("127.0.0.8").starts_with("MAIL-REFUSED 530"));
    assert!(server.log().contains("folder=Spam"), "{}", server.log());
}

#[test]
fn spam_login_with_curl_and_mpop() {
    if !require("python3") || !require("curl") || !require("mpop") {
        return;
    }
    let server = Server::start();
    seed(&server);
    let base = format!("pop3://127.0.0.1:{}/", server.port("pop3"));
    let curl = |login: &str, url: &str| {
        run(Command::new("curl").args(["-sS", "--max-time", "20", "-u", login, url]))
    };
    let list = curl("joe/Spam:secret", &base);
    assert!(list.ok() && list.stdout.starts_with("1 "), "{list:?}");
    let retr = curl("joe/Spam:secret", &format!("{base}1"));
    assert!(retr.ok() && retr.stdout.contains("GTUBE"), "{retr:?}");
    let inbox = curl("joe@example.test:secret", &format!("{base}1"));
    assert!(
        inbox.ok() && inbox.stdout.contains("ham for joe"),
        "{inbox:?}"
    );

    // mpop fetches the Spam folder as a second account (leaving it there).
    let w = server.dir.path();
    let md = w.join("spam-md");
    for d in ["cur", "new", "tmp"] {
        fs::create_dir_all(md.join(d)).unwrap();
    }
    let out = run(common::mpop(&server, "joe/Spam", "secret")
        .arg(format!("--delivery=maildir,{}", md.display()))
        .args(["--keep=on", "--only-new=off"])
        .arg(format!("--uidls-file={}", w.join("uidls").display()))
        .arg("-Q"));
    assert!(out.ok(), "{out:?}\n{}", server.log());
    let fetched: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|d| fs::read_dir(md.join(d)).unwrap().flatten())
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(fetched.len(), 1);
    assert!(fetched[0].contains("GTUBE"), "{}", fetched[0]);
    assert_eq!(
        server.messages("joe", ".Spam").len(),
        1,
        "kept on the server"
    );
}
