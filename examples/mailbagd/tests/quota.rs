//! Mailbox quotas: `[limits] user_quota` for everyone, a passwd-file
//! user's own `quota=` over it (`quota=0`: none). A delivery over quota gets
//! `452 4.2.2` (temporary: the sender keeps the message and retries), POP3
//! still works, and once the user made room mail is accepted again; a
//! reload that raises the quota applies to the next delivery. A mailbox
//! already full, or one an announced `SIZE=` would take over, refuses its
//! own RCPT, and the other recipients get the message; one found over its
//! quota only after DATA is bounced while the others get it. Under
//! `CI=true` a missing python3 fails the tests.

use std::time::Duration;

mod common;
use common::{GTUBE, Options, Server, py_pop_login, raw_smtp, require};

/// Sends one message of about `size` octets to `to`: the reply to its end of DATA.
fn send(server: &Server, to: &str, size: usize) -> String {
    let rcpt = format!("RCPT TO:<{to}>\r\n");
    let body = format!(
        "From: a@example.org\r\nSubject: quota\r\n\r\n{}\r\n.\r\n",
        "x".repeat(size)
    );
    let replies = raw_smtp(
        server,
        "smtp",
        "127.0.0.1",
        &[
            b"EHLO client.example.org\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            rcpt.as_bytes(),
            b"DATA\r\n",
            body.as_bytes(),
            b"QUIT\r\n",
        ],
    );
    replies[5].clone()
}

/// A server where every user has a 3K quota and ann's INBOX holds one
/// message of `size` octets that another program put there.
fn ann_holding(size: usize) -> Server {
    Server::start_with(
        Options {
            limits: "user_quota = \"3K\"\n".into(),
            ..Options::default()
        },
        |data| {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(data.join("ann").join(sub)).unwrap();
            }
            std::fs::write(data.join("ann/new/1700000000.M1P1.other"), "x".repeat(size)).unwrap();
        },
    )
}

/// Sends `msg` (CRLF) from `from` to ann and joe, without `SIZE=`: the
/// reply to the end of DATA.
fn to_ann_and_joe(server: &Server, from: &str, msg: &str) -> String {
    let mail = format!("MAIL FROM:<{from}>\r\n");
    let data = format!("{msg}.\r\n");
    let r = raw_smtp(
        server,
        "smtp",
        "127.0.0.1",
        &[
            b"EHLO client.example.org\r\n",
            mail.as_bytes(),
            b"RCPT TO:<ann@example.test>\r\n",
            b"RCPT TO:<joe@example.test>\r\n",
            b"DATA\r\n",
            data.as_bytes(),
            b"QUIT\r\n",
        ],
    );
    r[6].clone()
}

#[test]
fn over_quota_is_452_and_pop3_makes_room() {
    if !require("python3") {
        return;
    }
    let mut passwd = None;
    let server = Server::start_with(
        Options {
            limits: "user_quota = \"3K\"\n".into(),
            userdb: "__PASSWD__".into(),
            ..Options::default()
        },
        |data| {
            let p = data.parent().unwrap().join("users.passwd");
            std::fs::write(
                &p,
                "small:{PLAIN}pw::::::quota=1K\nbig:{PLAIN}pw::::::quota=0\n",
            )
            .unwrap();
            let cfg = data.parent().unwrap().join("mailbag.toml");
            let text = std::fs::read_to_string(&cfg).unwrap().replace(
                "__PASSWD__",
                &format!("passwd_file = {p:?}\ncheck_interval = \"1h\""),
            );
            std::fs::write(&cfg, text).unwrap();
            passwd = Some(p);
        },
    );
    let passwd = passwd.unwrap();

    // joe has the default 3K: the first 2K message fits, the second does not.
    assert!(send(&server, "joe@example.test", 2000).starts_with("250"));
    let full = send(&server, "joe@example.test", 2000);
    assert_eq!(full, "452 4.2.2 Mailbox full", "{}", server.log());
    // small's own 1K is below the default; big has none at all.
    assert_eq!(
        send(&server, "small@example.test", 1500),
        "452 4.2.2 Mailbox full"
    );
    for _ in 0..3 {
        assert!(send(&server, "big@example.test", 2000).starts_with("250"));
    }

    // POP3 still works over quota; deleting makes room.
    let script = r#"
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
p.user('joe'); p.pass_('secret')
print(p.stat()[0]); p.dele(1); p.quit()
"#;
    let out = common::python(script, &["127.0.0.1", &server.port("pop3").to_string()]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.trim(), "1");
    assert!(send(&server, "joe@example.test", 2000).starts_with("250"));

    // A larger quota in the passwd-file applies after a reload.
    std::fs::write(
        &passwd,
        "small:{PLAIN}pw::::::quota=10K\nbig:{PLAIN}pw::::::quota=0\n",
    )
    .unwrap();
    server.signal_hup();
    assert!(common::wait_until(Duration::from_secs(10), || server
        .log()
        .contains("configuration reloaded")));
    assert!(send(&server, "small@example.test", 1500).starts_with("250"));
    assert!(py_pop_login(&server, "127.0.0.1", "small", "pw").starts_with("OK 1"));
}

#[test]
fn a_full_mailbox_refuses_its_copy_at_rcpt_and_the_others_get_theirs() {
    if !require("python3") {
        return;
    }
    // ann is over her quota already.
    let server = ann_holding(4000);
    let count =
        |u: &str| std::fs::read_dir(server.data.join(u).join("new")).map_or(0, |d| d.count());
    let body = "From: a@example.org\r\nSubject: q\r\n\r\nhello\r\n.\r\n";
    let transaction = |mail: &str, rcpts: [&str; 2]| {
        let rcpts = rcpts.map(|r| format!("RCPT TO:<{r}>\r\n"));
        raw_smtp(
            &server,
            "smtp",
            "127.0.0.1",
            &[
                b"EHLO client.example.org\r\n",
                mail.as_bytes(),
                rcpts[0].as_bytes(),
                rcpts[1].as_bytes(),
                b"DATA\r\n",
                body.as_bytes(),
                b"QUIT\r\n",
            ],
        )
    };
    // A full mailbox: its RCPT gets 452, and joe still gets the message.
    let r = transaction(
        "MAIL FROM:<a@example.org>\r\n",
        ["ann@example.test", "joe@example.test"],
    );
    assert_eq!(r[3], "452 4.2.2 Mailbox full", "{r:?}");
    assert!(r[4].starts_with("250") && r[6].starts_with("250"), "{r:?}");
    assert_eq!((count("ann"), count("joe")), (1, 1));
    // An announced size that would take joe over his 3K: refused at RCPT,
    // before the message is sent; bob (with room for it) gets it.
    let r = transaction(
        "MAIL FROM:<a@example.org> SIZE=3000\r\n",
        ["joe@example.test", "bob@example.test"],
    );
    assert_eq!(r[3], "452 4.2.2 Mailbox full", "{r:?}");
    assert!(r[4].starts_with("250") && r[6].starts_with("250"), "{r:?}");
    assert_eq!((count("joe"), count("bob")), (1, 1));
    assert!(server.log().contains("recipient refused: mailbox full"));
}

/// `[limits] quota_file_recount_size`: a `maildirsize` file smaller than it is
/// trusted (here one another program left wrong: it says the mailbox is
/// empty while a 4,000-octet message sits in it); at `"0"` every check counts
/// the Maildir instead.
#[test]
fn quota_file_recount_size_decides_whether_maildirsize_is_trusted() {
    if !require("python3") {
        return;
    }
    for (limit, expected) in [("", "250"), ("quota_file_recount_size = \"0\"\n", "452")] {
        let server = Server::start_with(
            Options {
                limits: format!("user_quota = \"3000\"\n{limit}"),
                ..Options::default()
            },
            |data| {
                for sub in ["new", "cur", "tmp"] {
                    std::fs::create_dir_all(data.join("ann").join(sub)).unwrap();
                }
                std::fs::write(data.join("ann/new/1700000000.M1P1.other"), "x".repeat(4000))
                    .unwrap();
                std::fs::write(data.join("ann/maildirsize"), "3000S\n0 0\n").unwrap();
            },
        );
        let r = raw_smtp(
            &server,
            "smtp",
            "127.0.0.1",
            &[
                b"EHLO client.example.org\r\n",
                b"MAIL FROM:<a@example.org>\r\n",
                b"RCPT TO:<ann@example.test>\r\n",
                b"QUIT\r\n",
            ],
        );
        assert!(r[3].starts_with(expected), "{limit:?}: {r:?}");
    }
}

/// No `SIZE=` announced: a message that would take one recipient over its
/// quota is only found out after DATA. The other recipient gets it, the
/// sender (a local user here, so the bounce lands in its INBOX; `RET=HDRS`
/// so that it fits bob's quota too) gets a bounce naming only the full one;
/// a message that would take every recipient over gets `452 4.2.2` at the
/// end of DATA, with nothing stored and nothing queued. The sender is
/// Python's smtplib.
#[test]
fn over_quota_after_data_bounces_that_recipient_and_the_others_get_it() {
    if !require("python3") {
        return;
    }
    // ann has room for a small message, not for this one.
    let server = ann_holding(2000);
    let count = |u: &str| server.messages(u, "").len();
    let msg = common::message(
        "ann@example.test, joe@example.test",
        "big",
        &"y".repeat(1500),
    );
    let path = server.dir.path().join("big.eml");
    std::fs::write(&path, &msg).unwrap();
    let script = r#"
import smtplib, sys
host, port, path = sys.argv[1:4]
msg = open(path, 'rb').read()
try:
    with smtplib.SMTP(host, int(port), local_hostname='client.example.org', timeout=20) as s:
        # Like a client that announces no size (smtplib would send SIZE=).
        s.ehlo()
        s.esmtp_features.pop('size', None)
        print('SENT', s.sendmail('bob@example.test', ['ann@example.test', 'joe@example.test'], msg,
                                 mail_options=['RET=HDRS']))
except smtplib.SMTPResponseException as e:
    print('REFUSED', e.smtp_code, e.smtp_error.decode())
"#;
    let port = server.port("smtp").to_string();
    let send = || common::python(script, &["127.0.0.1", &port, path.to_str().unwrap()]);
    let out = send();
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.trim(), "SENT {}", "{}", server.log());
    assert_eq!((count("ann"), count("joe")), (1, 1));
    assert!(server.message_texts("joe", "")[0].contains(&"y".repeat(1500)));
    let bounced = || {
        server
            .message_texts("bob", "")
            .into_iter()
            .find(|m| m.contains("Action: failed"))
    };
    assert!(
        common::wait_until(Duration::from_secs(20), || bounced().is_some()),
        "no bounce for bob: {}",
        server.log()
    );
    let dsn = bounced().unwrap();
    assert!(
        dsn.contains("Final-Recipient: rfc822; ann@example.test") && dsn.contains("Status: 5.2.2"),
        "{dsn}"
    );
    assert!(
        !dsn.contains("Final-Recipient: rfc822; joe@example.test"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Subject: big") && !dsn.contains("yyyy"),
        "RET=HDRS: {dsn}"
    );
    assert!(server.log().contains("over quota after DATA"));
    assert!(
        common::wait_until(Duration::from_secs(20), || server.queued().is_empty()),
        "the bounce's queue entry stays: {:?}",
        server.queued()
    );

    // Now joe is short of room for it too: every recipient over, so no one gets it.
    let out = send();
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.trim(), "REFUSED 452 4.2.2 Mailbox full");
    assert_eq!((count("ann"), count("joe")), (1, 1));
    assert!(server.queued().is_empty(), "{:?}", server.queued());
    assert_eq!(server.message_texts("bob", "").len(), 1);
}

/// A copy judged spam that would take its mailbox over quota is dropped
/// without a bounce (spam's sender is most likely forged: the bounce would be
/// backscatter); the other recipient still gets the message.
#[test]
fn spam_over_quota_after_data_is_not_bounced() {
    let server = ann_holding(2000);
    let body = format!("{GTUBE}\r\n{}", "z".repeat(1500));
    let msg = common::message("ann@example.test", "offer", &body);
    let r = to_ann_and_joe(&server, "offers@example.org", &msg);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(server.messages("joe", ".Spam").len(), 1, "{}", server.log());
    assert!(server.messages("ann", ".Spam").is_empty());
    assert_eq!(server.messages("ann", "").len(), 1);
    assert!(
        server
            .log()
            .contains("over quota after DATA, judged spam: dropped without a bounce")
    );
    assert!(server.queued().is_empty(), "{:?}", server.queued());
}

/// A bounce that cannot be made (its local sender's mailbox stays full) is
/// tried on every pass until `relay.max_queue_age` after the failure it
/// reports, then given up, logged and counted, so that the message leaves
/// the queue instead of staying in it for as long as the mailbox is full.
#[test]
fn a_bounce_to_a_full_local_sender_is_given_up_after_max_queue_age() {
    let server = Server::start_with(
        Options {
            limits: "user_quota = \"3K\"\n".into(),
            relay: "smarthost = \"127.0.0.1:1\"\nmax_queue_age = \"4s\"\n".into(),
            ..Options::default()
        },
        |data| {
            for (user, size) in [("ann", 2000), ("bob", 3100)] {
                for sub in ["new", "cur", "tmp"] {
                    std::fs::create_dir_all(data.join(user).join(sub)).unwrap();
                }
                let file = data.join(user).join("new/1700000000.M1P1.other");
                std::fs::write(file, "x".repeat(size)).unwrap();
            }
        },
    );
    let msg = common::message("ann@example.test", "big", &"y".repeat(1500));
    let r = to_ann_and_joe(&server, "bob@example.test", &msg);
    assert!(r.starts_with("250"), "{r}");
    assert!(
        common::wait_until(Duration::from_secs(20), || server
            .log()
            .contains("DSN could not be sent")),
        "{}",
        server.log()
    );
    // `max_queue_age` leaves room for a loaded machine's first pass (with 1 s, a
    // CI run's first pass came after it and gave the report up at once).
    assert_eq!(server.queued().len(), 1);
    // A start-up makes a pass over every message that owes a report.
    std::thread::sleep(Duration::from_millis(4200));
    let server = server.restart();
    assert!(
        common::wait_until(Duration::from_secs(20), || server.queued().is_empty()),
        "{:?}\n{}",
        server.queued(),
        server.log()
    );
    assert!(server.log().contains("DSN given up"), "{}", server.log());
    assert_eq!(server.messages("bob", "").len(), 1);
    assert_eq!(server.messages("joe", "").len(), 1);
}
