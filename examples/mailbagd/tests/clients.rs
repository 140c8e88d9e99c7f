//! `mailbagd` with the mail clients of a real user: swaks and msmtp send,
//! fetchmail and mpop fetch, and mpop's `--auth-only` (POP-before-SMTP)
//! followed by msmtp relays. Under `CI=true` a missing client fails the test.

use std::fs;
use std::process::Command;

mod common;
use common::{CLIENT_TIMEOUT, Server, message, run, run_with_input};

fn maildir(root: &std::path::Path) -> std::path::PathBuf {
    for d in ["cur", "new", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    root.to_owned()
}

fn count_files(dir: &std::path::Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn swaks_sends_and_unknown_user_is_refused() {
    if !common::require("swaks") {
        return;
    }
    let server = Server::start();
    let port = server.port("smtp").to_string();
    let out = run(Command::new("swaks").args([
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--from",
        "sender@example.org",
        "--to",
        "ann@example.test",
        "--header",
        "Subject: swaks test",
        "--body",
        "hello from swaks",
        "--timeout",
        "20",
    ]));
    assert!(out.ok(), "{out:?}\n{}", server.log());
    let texts = server.message_texts("ann", "");
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("Subject: swaks test"), "{}", texts[0]);
    assert!(texts[0].contains("hello from swaks"));

    // Pipelined, too.
    let out = run(Command::new("swaks").args([
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "-f",
        "s@example.org",
        "-t",
        "ann@example.test",
        "--pipeline",
        "--silent",
        "1",
        "--timeout",
        "20",
    ]));
    assert!(out.ok(), "{out:?}");
    assert_eq!(server.messages("ann", "").len(), 2);

    // 5xx at RCPT: swaks exits 24.
    let out = run(Command::new("swaks").args([
        "-s",
        "127.0.0.1",
        "-p",
        &port,
        "-f",
        "s@example.org",
        "-t",
        "nobody@example.test",
        "--quit-after",
        "RCPT",
        "--silent",
        "2",
        "--timeout",
        "20",
    ]));
    assert_eq!(out.code(), Some(24), "{out:?}");
}

#[test]
fn msmtp_sends_with_pipelining() {
    if !common::require("msmtp") {
        return;
    }
    let server = Server::start();
    let msg = "From: sender@example.org\nTo: joe@example.test\nSubject: msmtp test\nMessage-ID: <t1@example.org>\n\nhello\n.leading dot line\n";
    let out = run_with_input(
        Command::new("msmtp").args([
            "-C",
            "/dev/null",
            "--host=127.0.0.1",
            &format!("--port={}", server.port("smtp")),
            "--tls=off",
            "--auth=off",
            "--from=sender@example.org",
            "--domain=client.example.org",
            "--timeout=20",
            "--",
            "joe@example.test",
        ]),
        Some(msg.as_bytes()),
        CLIENT_TIMEOUT,
    );
    assert!(out.ok(), "{out:?}\n{}", server.log());
    let texts = server.message_texts("joe", "");
    assert_eq!(texts.len(), 1, "{}", server.log());
    assert!(texts[0].contains("Subject: msmtp test"));
    assert!(
        texts[0].contains("\n.leading dot line"),
        "unstuffed: {}",
        texts[0]
    );
}

#[test]
fn fetchmail_fetches_all_mail() {
    if !common::require("fetchmail") || !common::require("python3") {
        return;
    }
    let server = Server::start();
    for i in 0..3 {
        let to = "ann@example.test";
        let v = common::py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            to,
            &message(to, &format!("fm {i}"), "body"),
        );
        assert_eq!(v, "SENT");
    }
    let w = server.dir.path();
    let fm = w.join("fm");
    fs::create_dir_all(&fm).unwrap();
    let md = maildir(&w.join("fetched"));
    let rc = fm.join("fetchmailrc");
    fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {} protocol pop3 auth password timeout 30\n  user \"ann\" password \"secret\" is \"root\" here\n  sslproto '' keep fetchall\n",
            server.port("pop3")
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&fm, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mda = format!("cat > $(mktemp {}/new/fetchmail.XXXXXXXX)", md.display());
    let out = run(Command::new("fetchmail")
        .env("FETCHMAILHOME", &fm)
        .arg("-f")
        .arg(&rc)
        .args(["--nosyslog", "--nodetach", "--idfile"])
        .arg(fm.join("ids"))
        .args(["--mda", &mda]));
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert_eq!(count_files(&md.join("new")), 3, "{out:?}");
    // keep: nothing was deleted on the server.
    assert_eq!(server.messages("ann", "").len(), 3);
}

#[test]
fn mpop_fetches_all_mail_and_auth_only_enables_msmtp_relay() {
    if !common::require("mpop") || !common::require("msmtp") || !common::require("python3") {
        return;
    }
    let server = Server::start();
    for i in 0..2 {
        let to = "joe@example.test";
        let v = common::py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            to,
            &message(to, &format!("mpop {i}"), "body"),
        );
        assert_eq!(v, "SENT");
    }
    let w = server.dir.path();
    let md = maildir(&w.join("mpop-md"));
    let out = run(common::mpop(&server, "joe", "secret")
        .arg(format!("--delivery=maildir,{}", md.display()))
        .args(["--keep=on", "--only-new=off"])
        .arg(format!("--uidls-file={}", w.join("uidls").display()))
        .arg("-Q"));
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert_eq!(
        count_files(&md.join("new")) + count_files(&md.join("cur")),
        2
    );

    // Relay before a POP login from this address is refused: msmtp fails.
    let subm_port = format!("--port={}", server.port("submission"));
    let msg =
        "From: joe@example.test\nTo: friend@elsewhere.example\nSubject: via mpop+msmtp\n\nhi\n";
    let msmtp = |input: &str| {
        run_with_input(
            Command::new("msmtp").args([
                "-C",
                "/dev/null",
                "--host=127.0.0.1",
                &subm_port,
                "--tls=off",
                "--auth=off",
                "--from=joe@example.test",
                "--domain=client.example.org",
                "--timeout=20",
                "--",
                "friend@elsewhere.example",
            ]),
            Some(input.as_bytes()),
            CLIENT_TIMEOUT,
        )
    };
    // (mpop above logged in from 127.0.0.1, so use a fresh server for the refusal.)
    let fresh = Server::start();
    let out = run_with_input(
        Command::new("msmtp").args([
            "-C",
            "/dev/null",
            "--host=127.0.0.1",
            &format!("--port={}", fresh.port("submission")),
            "--tls=off",
            "--auth=off",
            "--from=joe@example.test",
            "--domain=client.example.org",
            "--timeout=20",
            "--",
            "friend@elsewhere.example",
        ]),
        Some(msg.as_bytes()),
        CLIENT_TIMEOUT,
    );
    assert!(!out.ok(), "unauthorized submission must fail: {out:?}");
    assert!(out.stderr.contains("530"), "{out:?}");
    assert!(fresh.queued().is_empty());

    // mpop --auth-only (SMTP-after-POP) then msmtp: relayed into the queue.
    let out = run(common::mpop(&server, "joe", "secret")
        .args(["--delivery=mbox,/dev/null", "--auth-only"])
        .arg(format!("--uidls-file={}", w.join("uidls2").display())));
    assert!(out.ok(), "{out:?}");
    let out = msmtp(msg);
    assert!(out.ok(), "{out:?}\n{}", server.log());
    let q = server.queued();
    assert_eq!(q.len(), 1);
    assert!(q[0].contains("to <friend@elsewhere.example>"), "{}", q[0]);

    // A wrong password: mpop exits 77 and authorizes nothing new.
    let out = run(common::mpop(&server, "joe", "wrong")
        .args(["--delivery=mbox,/dev/null", "--auth-only"])
        .arg(format!("--uidls-file={}", w.join("uidls3").display())));
    assert_eq!(out.code(), Some(77), "{out:?}");
}
