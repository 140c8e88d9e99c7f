//! pop3-proto's `fetch` example (`pop3-proto/examples/fetch.rs`, built by
//! `cargo test --workspace`) against real servers: it fetches joe's mailbox
//! from mailbagd into a Maildir, skips what it fetched before and leaves the
//! mail on the server; Dovecot then serves that Maildir, and the example
//! fetches it again from Dovecot. Under `CI=true` a missing Dovecot, python3
//! or example binary fails the test.

use std::path::Path;
use std::process::Command;

mod common;
use common::{Server, deliver_local, python, require, run};

fn fetch(bin: &Path, server: &str, user: &str, maildir: &Path) -> String {
    let out = run(Command::new(bin)
        .env("POP3_PASSWORD", "secret")
        .args([server, user])
        .arg(maildir));
    assert!(out.ok(), "{out:?}");
    out.stdout.trim().to_owned()
}

fn files(maildir: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(maildir.join(d)).ok())
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

/// STAT over POP3 with poplib (user joe, password secret).
fn stat(port: u16) -> String {
    let script = r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.user('joe'); p.pass_('secret')
print(p.stat()[0])
p.quit()
"#;
    let out = python(script, &[&port.to_string()]);
    assert!(out.ok(), "{out:?}");
    out.stdout.trim().to_owned()
}

#[test]
fn fetch_example_keeps_mail_on_mailbagd_and_dovecot_serves_what_it_fetched() {
    if !require("python3") || !require("dovecot") {
        return;
    }
    let Some(bin) = common::built_example("fetch") else {
        return;
    };
    let server = Server::start();
    let send =
        |subject: &str, body: &str| deliver_local(&server, "joe@example.test", subject, body);
    send("first", "one\r\n.dot line\r\nend");
    send("second", "two");
    let root = tempfile::tempdir().unwrap();
    let md = root.path().join("joe");
    let mailbagd = format!("127.0.0.1:{}", server.port("pop3"));
    assert_eq!(
        fetch(&bin, &mailbagd, "joe", &md),
        format!(
            "fetched 2 new message(s) of 2 into {}; all left on the server",
            md.display()
        )
    );
    assert!(fetch(&bin, &mailbagd, "joe", &md).starts_with("fetched 0 new message(s) of 2"));
    send("third", "three");
    assert!(fetch(&bin, &mailbagd, "joe", &md).starts_with("fetched 1 new message(s) of 3"));
    assert_eq!(stat(server.port("pop3")), "3", "left on the server");
    // A login name with `/` (the Spam folder) is not a path for the UID record.
    assert!(fetch(&bin, &mailbagd, "joe/Spam", &md).starts_with("fetched 0 new message(s) of 0"));
    let fetched = files(&md);
    assert_eq!(fetched.len(), 3);
    assert!(
        fetched.iter().all(|m| !m.contains('\r')),
        "LF line ends in the Maildir"
    );
    assert!(
        fetched.iter().any(|m| m.contains("\n.dot line\n")),
        "dot-unstuffed"
    );

    // Dovecot serves that Maildir; the example fetches it from Dovecot.
    let dovecot = common::Dovecot::start(root.path());
    let port = dovecot.port;
    assert_eq!(stat(port), "3");
    let again = tempfile::tempdir().unwrap();
    let md2 = again.path().join("copy");
    let server2 = format!("127.0.0.1:{port}");
    assert!(fetch(&bin, &server2, "joe", &md2).starts_with("fetched 3 new message(s) of 3"));
    assert!(fetch(&bin, &server2, "joe", &md2).starts_with("fetched 0 new message(s) of 3"));
    assert_eq!(stat(port), "3", "left on Dovecot");
    assert_eq!(files(&md2), fetched, "the same messages, octet for octet");
}
