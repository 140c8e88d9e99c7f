//! `mailbagd` command line: --help, --check, clear errors for bad configs.

use std::process::Command;

mod common;
use common::{Out, run};

fn mailbagd(args: &[&str], dir: &std::path::Path) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailbagd"));
    c.args(args).current_dir(dir);
    run(&mut c)
}

const USERS: &str = "[[users]]\nname = \"joe\"\npassword = \"secret\"\n";

fn check(toml: &str) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml).unwrap();
    mailbagd(&["--config", p.to_str().unwrap(), "--check"], dir.path())
}

#[test]
fn help_documents_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = mailbagd(&["--help"], dir.path());
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("--config"), "{}", out.stdout);
    assert!(out.stdout.contains("embedded"), "{}", out.stdout);
    // What mailbagd is, not what the package folder is.
    assert!(
        out.stdout.starts_with("mailbagd: an ISP mail server"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Example programs"), "{}", out.stdout);
    // The demo configuration: its user and its loopback ports.
    for needle in [
        "joe",
        "secret",
        "127.0.0.1:1110",
        "127.0.0.1:2525",
        "127.0.0.1:5870",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    // Every subcommand.
    assert!(out.stdout.contains("queue list"), "{}", out.stdout);
    let queue = mailbagd(&["queue", "--help"], dir.path());
    assert!(queue.ok() && queue.stdout.contains("list"), "{queue:?}");
}

#[test]
fn embedded_defaults_check_ok() {
    let dir = tempfile::tempdir().unwrap();
    let out = mailbagd(&["--check"], dir.path());
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("configuration OK"));
}

#[test]
fn good_config_checks_ok() {
    let out = check(USERS);
    assert!(out.ok(), "{out:?}");
    assert!(!out.stderr.contains("warning"), "{out:?}");
}

/// Valid but probably not meant: `--check` passes and says why.
#[test]
fn check_warns_of_an_autologout_below_rfc_1939() {
    let out = check(&format!("[pop3]\nidle_timeout = \"5s\"\n{USERS}"));
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr
            .contains("warning: [pop3] idle_timeout is 5s, below RFC 1939's 10-minute minimum"),
        "{out:?}"
    );
    let out = check(&format!("[pop3]\nidle_timeout = \"10m\"\n{USERS}"));
    assert!(out.ok() && !out.stderr.contains("warning"), "{out:?}");
}

#[test]
fn bad_configs_exit_non_zero_with_a_clear_message() {
    let cases: &[(&str, &str)] = &[
        ("colour = \"blue\"\n", "unknown field `colour`"),
        (
            "[pop3]\nlisten = [\"localhost:110:1\"]\n",
            "invalid socket address",
        ),
        (
            "[tls]\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\n",
            "tls.cert_file: file /nonexistent/c.pem not found",
        ),
        (
            "[[users]]\nname = \"joe\"\npassword = \"x\"\n",
            "duplicate user \"joe\"",
        ),
        ("[spam]\nspam_retention = \"a week\"\n", "invalid duration"),
    ];
    for (extra, expect) in cases {
        let out = check(&format!("{extra}{USERS}"));
        assert_eq!(out.code(), Some(2), "{extra}: {out:?}");
        assert!(
            out.stderr.contains(expect),
            "{extra}: expected {expect:?} in {:?}",
            out.stderr
        );
        assert!(out.stderr.starts_with("mailbagd: "), "{:?}", out.stderr);
    }
}

#[test]
fn missing_config_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = mailbagd(&["--config", "/nonexistent/mailbag.toml"], dir.path());
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("cannot read config file"), "{out:?}");
}

#[test]
fn port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        format!("data_dir = \"d\"\n[pop3]\nlisten = [\"127.0.0.1:{port}\"]\n[smtp]\nlisten = []\nsubmission_listen = []\n{USERS}"),
    )
    .unwrap();
    let out = mailbagd(&["--config", p.to_str().unwrap()], dir.path());
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port} (pop3)")),
        "{out:?}"
    );
}

/// `--check` refuses a `[server] user` or `group` the system does not have
/// (a start would stop on it; a probe's check passed), and takes one it has.
#[test]
fn check_refuses_a_server_user_that_does_not_exist() {
    let out = check(&format!(
        "{USERS}[server]\nuser = \"no-such-user-mailbag\"\n"
    ));
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("server.user"), "{out:?}");
    let out = check(&format!(
        "{USERS}[server]\nuser = \"nobody\"\ngroup = \"no-such-group-mailbag\"\n"
    ));
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("server.group"), "{out:?}");
    let out = check(&format!("{USERS}[server]\nuser = \"nobody\"\n"));
    assert!(out.ok(), "{out:?}");
}

/// `--check` loads the TLS certificate and key as a start does: a key of another
/// certificate, the two files swapped, an empty key, an encrypted key or a directory
/// are each a configuration error (exit status 2) naming the key; a start says the
/// same. Before, `--check` said "configuration OK" and the start failed with status 1.
#[test]
fn check_loads_the_tls_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let two = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(d.join("cert.pem"), one.cert.pem()).unwrap();
    std::fs::write(d.join("key.pem"), one.key_pair.serialize_pem()).unwrap();
    std::fs::write(d.join("other.pem"), two.key_pair.serialize_pem()).unwrap();
    std::fs::write(d.join("empty.pem"), "").unwrap();
    std::fs::write(
        d.join("encrypted.pem"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = |cert: &str, key: &str| {
        let p = d.join("c.toml");
        std::fs::write(
            &p,
            format!(
                "data_dir = {:?}\n[pop3]\nlisten = [\"127.0.0.1:0\"]\n\
                 [smtp]\nlisten = [\"127.0.0.1:0\"]\nsubmission_listen = [\"127.0.0.1:0\"]\n\
                 [web]\nlisten = [\"127.0.0.1:0\"]\n\
                 [tls]\ncert_file = {:?}\nkey_file = {:?}\n{USERS}",
                d.join("data"),
                d.join(cert),
                d.join(key)
            ),
        )
        .unwrap();
        p
    };
    let ok = config("cert.pem", "key.pem");
    let out = mailbagd(&["--config", ok.to_str().unwrap(), "--check"], d);
    assert!(out.ok(), "{out:?}");
    for (cert, key, says) in [
        (
            "cert.pem",
            "other.pem",
            "does not belong to the first certificate",
        ),
        ("key.pem", "cert.pem", "tls.cert_file"),
        ("cert.pem", "empty.pem", "tls.key_file"),
        ("cert.pem", "encrypted.pem", "the private key is encrypted"),
        ("cert.pem", ".", "a directory"),
    ] {
        let p = config(cert, key);
        let out = mailbagd(&["--config", p.to_str().unwrap(), "--check"], d);
        assert_eq!(out.status.code(), Some(2), "{cert} {key}: {out:?}");
        assert!(
            out.stderr.contains("invalid config") && out.stderr.contains(says),
            "{cert} {key}: {out:?}"
        );
    }
    // A start with the mismatched key stops the same way (its listeners on port 0:
    // it binds them before it loads the pair).
    let p = config("cert.pem", "other.pem");
    let out = mailbagd(&["--config", p.to_str().unwrap()], d);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("does not belong"), "{out:?}");
    // The admin commands do not load them (the key is often the server's alone).
    for args in [&["queue", "list"][..], &["digest", "--now", "joe"]] {
        let mut all = vec!["--config", p.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = mailbagd(&all, d);
        assert!(out.ok(), "{args:?}: {out:?}");
    }
}
