//! Mailbox quotas: `[limits] user_quota` for everyone, a passwd-file
//! user's own `quota=` over it (`quota=0`: none). A delivery over quota gets
//! `452 4.2.2` (temporary: the sender keeps the message and retries), POP3
//! still works, and once the user made room mail is accepted again; a
//! reload that raises the quota applies to the next delivery. Under
//! `CI=true` a missing python3 fails the tests.

use std::time::Duration;

mod common;
use common::{Options, Server, py_pop_login, raw_smtp, require};

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
