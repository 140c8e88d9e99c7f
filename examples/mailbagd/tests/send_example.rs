//! smtp-proto's `send` example (`smtp-proto/examples/send.rs`, built by
//! `cargo test --workspace`) against real servers: it delivers a message
//! through mailbagd's submission port and through Postfix, both with
//! STARTTLS required (the `Received:` field the server writes says
//! `ESMTPS`); without a CA it sends in plaintext, and a certificate it
//! does not trust stops it before anything is sent. Under `CI=true` a
//! missing Postfix, python3 or example binary fails the test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{Options, Postfix, Server, require, run, wait_until};

fn send(bin: &Path, cafile: Option<&Path>, server: &str, msg: &Path) -> common::Out {
    let mut c = Command::new(bin);
    if let Some(ca) = cafile {
        c.arg("--cafile").arg(ca);
    }
    c.args([
        "--helo",
        "client.example.org",
        server,
        "alice@example.org",
        "joe@example.test",
    ])
    .arg(msg);
    run(&mut c)
}

fn maildir_texts(dir: &Path) -> Vec<String> {
    ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

#[test]
fn send_example_delivers_over_starttls_to_mailbagd_and_postfix() {
    if !require("postfix") || !require("python3") || !require("openssl") {
        return;
    }
    let Some(bin) = common::built_example("send") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let msg = work.path().join("message.eml");
    std::fs::write(
        &msg,
        "From: alice@example.org\nTo: joe@example.test\nSubject: sent by the example\n\n.leading dot\nbody\n",
    )
    .unwrap();

    // mailbagd: submission with STARTTLS, after a POP3 login from the same
    // address (POP-before-SMTP, as the user's mail program does).
    let server = Server::start_with(
        Options {
            tls: true,
            ..Options::default()
        },
        |_| {},
    );
    let stat = common::py_pop_login(&server, "127.0.0.1", "joe", "secret");
    assert!(stat.starts_with("OK"), "{stat}");
    let ca = server.cert_pem.clone().expect("test certificate");
    let addr = format!("127.0.0.1:{}", server.port("submission"));
    let out = send(&bin, Some(&ca), &addr, &msg);
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert!(out.stdout.starts_with("sent over TLS: 250"), "{out:?}");
    let texts = server.message_texts("joe", "");
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("with ESMTPS"), "{}", texts[0]);
    assert!(
        texts[0].contains("\r\n.leading dot\r\n"),
        "dot-stuffed and unstuffed"
    );
    // Without --cafile the example sends in plaintext; a wrong CA refuses TLS.
    let plain = send(&bin, None, &addr, &msg);
    assert!(plain.stdout.starts_with("sent: 250"), "{plain:?}");
    let other_ca = work.path().join("other-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let refused = send(&bin, Some(&other_ca), &addr, &msg);
    assert!(
        !refused.ok() && refused.stderr.contains("TLS"),
        "{refused:?}"
    );
    assert_eq!(server.message_texts("joe", "").len(), 2);

    // Postfix with a certificate of its own (made by openssl: a leaf,
    // CA:FALSE, which rustls accepts as its own trust anchor), STARTTLS offered.
    let (cert, key) = (
        work.path().join("pf-cert.pem"),
        work.path().join("pf-key.pem"),
    );
    let made = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(made.ok(), "{made:?}");
    // This Postfix's smtpd reads them as the postfix user.
    {
        use std::os::unix::fs::PermissionsExt;
        let open =
            |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        open(work.path(), 0o755).unwrap();
        open(&cert, 0o644).unwrap();
        open(&key, 0o644).unwrap();
    }
    let root = tempfile::tempdir().unwrap();
    let postfix = Postfix::start(
        root.path(),
        &[(
            "PEER_POSTFIX_EXTRA",
            format!(
                "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}",
                cert.display(),
                key.display()
            ),
        )],
    );
    // The peer's master.cf has no tlsmgr, without which smtpd answers 220 to
    // STARTTLS and then drops TLS ("no entropy for TLS key generation"): add
    // it, offer TLS (a setting the peer script has: changed in place, see
    // `Postfix::configure`) and reload.
    let master = postfix.dir().join("etc/master.cf");
    let mut text = std::fs::read_to_string(&master).unwrap();
    text.push_str("tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n");
    std::fs::write(&master, text).unwrap();
    postfix.configure(&[("smtpd_tls_security_level", "may".into())]);
    // Until the reload has replaced the smtpd processes: no TLS (4.7.10), nothing sent.
    let postfix_addr = format!("127.0.0.1:{}", postfix.port);
    let mut out = send(&bin, Some(&cert), &postfix_addr, &msg);
    for _ in 0..20 {
        if out.ok() || !out.stderr.contains("4.7.10") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        out = send(&bin, Some(&cert), &postfix_addr, &msg);
    }
    assert!(
        out.ok() && out.stdout.starts_with("sent over TLS: 250"),
        "{out:?}"
    );
    let joe = root.path().join("joe");
    assert!(
        wait_until(Duration::from_secs(20), || !maildir_texts(&joe).is_empty()),
        "Postfix did not deliver"
    );
    let delivered = &maildir_texts(&joe)[0];
    assert!(delivered.contains("ESMTPS"), "{delivered}");
    assert!(delivered.contains("\n.leading dot\n"), "{delivered}");
}
