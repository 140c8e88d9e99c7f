//! The Dovecot passwd-file user database (`[userdb] passwd_file`): hashes
//! made by Dovecot's own `doveadm pw` in every scheme mailbagd reads (and
//! with no scheme named) log in over POP3 and
//! on the web page, extra fields set a user's spam defaults, a bad line
//! fails `--check` with exit status 2 naming the line and is left out at
//! start-up (logged), and `mailbagd user …`
//! / `mailbagd pw` edit the file in ways both mailbagd and Dovecot accept.
//! Under `CI=true` a missing `doveadm` or python3 fails the tests.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
mod webutil;
use common::{GTUBE, Options, Server, py_pop_login, require, run, run_with_input};
use webutil::{Client, WebServer};

/// `doveadm pw -s SCHEME -p PASSWORD`: `{SCHEME}…`.
fn doveadm_pw(scheme: &str, password: &str) -> String {
    let out = run(Command::new("doveadm").args(["pw", "-s", scheme, "-p", password]));
    assert!(out.ok(), "{out:?}");
    out.stdout.trim().to_owned()
}

/// `doveadm pw -t HASH -p PASSWORD`: does Dovecot verify our hash?
fn doveadm_verifies(hash: &str, password: &str) -> bool {
    let out = run(Command::new("doveadm").args(["pw", "-t", hash, "-p", password]));
    out.ok() && out.stdout.contains("(verified)")
}

/// A server whose users are those of the passwd-file `file`.
fn with_passwd_file(file: &Path) -> Server {
    Server::start_with(
        Options {
            userdb: format!("passwd_file = {file:?}"),
            ..Options::default()
        },
        |_| {},
    )
}

fn mailbagd(args: &[&str], stdin: Option<&str>) -> common::Out {
    run_with_input(
        Command::new(env!("CARGO_BIN_EXE_mailbagd")).args(args),
        stdin.map(str::as_bytes),
        Duration::from_secs(60),
    )
}

/// Every scheme mailbagd reads, as `doveadm pw -s` names them: the strong ones, `PLAIN`,
/// `CRYPT` (what `doveadm pw` makes without `-s` on Debian), and the older fast ones a
/// passwd-file moved from Dovecot may still hold.
const SCHEMES: [&str; 19] = [
    "ARGON2ID",
    "ARGON2I",
    "BLF-CRYPT",
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "PLAIN",
    "CRYPT",
    "MD5-CRYPT",
    "CRAM-MD5",
    "PLAIN-MD5",
    "LDAP-MD5",
    "SMD5",
    "SHA",
    "SSHA",
    "SHA256",
    "SSHA256",
    "SHA512",
    "SSHA512",
    "SHA256.HEX",
];

/// A passwd-file with one user per scheme (`u0`… with password `pw-SCHEME`),
/// every hash made by `doveadm pw`.
fn doveadm_passwd_file(path: &Path) {
    let mut text = String::from("# made by doveadm pw\n");
    for (i, scheme) in SCHEMES.iter().enumerate() {
        let hash = doveadm_pw(scheme, &format!("pw-{scheme}"));
        text.push_str(&format!("u{i}:{hash}:1000:1000::/home/u{i}::\n"));
    }
    // `doveadm pw` with no scheme named: its default (`{CRYPT}` on Debian).
    let out = run(Command::new("doveadm").args(["pw", "-p", "pw-default"]));
    assert!(out.ok(), "{out:?}");
    text.push_str(&format!("udefault:{}\n", out.stdout.trim()));
    std::fs::write(path, text).unwrap();
}

#[test]
fn doveadm_pw_hashes_log_in_over_pop3_and_the_web() {
    if !require("doveadm") || !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    doveadm_passwd_file(&file);
    let server = with_passwd_file(&file);
    for (i, scheme) in SCHEMES.iter().enumerate() {
        let user = format!("u{i}");
        let good = py_pop_login(&server, "127.0.0.1", &user, &format!("pw-{scheme}"));
        assert!(good.starts_with("OK 0 0"), "{scheme}: {good}");
        let bad = py_pop_login(&server, "127.0.0.2", &user, "pw-wrong");
        assert!(!bad.starts_with("OK"), "{scheme}: {bad}");
    }
    let good = py_pop_login(&server, "127.0.0.1", "udefault", "pw-default");
    assert!(good.starts_with("OK 0 0"), "doveadm pw's default: {good}");
    // `[[users]]` of the config file still work beside the passwd-file.
    assert!(py_pop_login(&server, "127.0.0.3", "joe", "secret").starts_with("OK"));

    // The web page logs in with the same check (in-process server).
    let web = WebServer::start(&format!("\n[userdb]\npasswd_file = {file:?}"));
    for (i, scheme) in SCHEMES.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let mut c = Client::new(web.web());
        let r = c.login(&format!("u{i}"), &format!("pw-{scheme}"));
        assert_eq!(r.status, 303, "{scheme}: {r:?}");
        assert_eq!(c.get("/settings").status, 200, "{scheme}");
        // No Maildir yet (made on the first delivery or POP3 login): an empty Spam page.
        let spam = c.get("/spam");
        assert_eq!(spam.status, 200, "{scheme}: {spam:?}");
        assert!(
            !web.data.join(format!("u{i}")).exists(),
            "listing made no Maildir"
        );
    }
    let mut c = Client::new(web.web());
    assert_eq!(c.login("u0", "pw-wrong").status, 401);
}

#[test]
fn extra_fields_set_a_users_spam_defaults() {
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(
        &file,
        "cat:{PLAIN}catpw:1000:1000::/home/cat::spam_folder=INBOX subject_prefix=no quota=1G\n\
         dan:{PLAIN}danpw:::::: spam_folder=Spam\n",
    )
    .unwrap();
    let web = WebServer::start(&format!("\n[userdb]\npasswd_file = {file:?}"));
    for user in ["cat", "dan"] {
        let r = webutil::smtp_send(web.smtp(), &format!("{user}@example.test"), "offer", GTUBE);
        assert!(r.starts_with("250"), "{r}");
    }
    // cat: spam in the INBOX, Subject untagged; dan: spam in the Spam folder.
    let cat = webutil::pop3_fetch_all(web.pop3(), "cat", "catpw");
    assert_eq!(
        cat.len(),
        1,
        "INBOX {:?}, Spam {:?}",
        web.files("cat", ""),
        web.files("cat", ".Spam")
    );
    assert_eq!(webutil::subject(&cat[0]), "offer");
    assert!(cat[0].contains("X-Spam-Flag: YES"), "{}", cat[0]);
    assert!(webutil::pop3_fetch_all(web.pop3(), "dan", "danpw").is_empty());
    assert_eq!(web.files("dan", ".Spam").len(), 1);
}

/// A password with a TAB (which `mailbagd user add` and `doveadm pw` take) logs in with
/// USER/PASS and with AUTH PLAIN (the re-probe found POP3 refused it, while the web page
/// took it).
#[test]
fn a_password_with_a_tab_logs_in() {
    if !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(&file, "tab:{PLAIN}a\tb c\n").unwrap();
    let server = with_passwd_file(&file);
    let r = py_pop_login(&server, "127.0.0.1", "tab", "a\tb c");
    assert!(r.starts_with("OK 0 0"), "USER/PASS: {r}");
    let r = common::py_pop_auth_plain(&server, "127.0.0.1", "tab", "a\tb c");
    assert!(r.starts_with("OK 0 0"), "AUTH PLAIN: {r}");
    assert!(!py_pop_login(&server, "127.0.0.2", "tab", "a b c").starts_with("OK"));
}

/// A passwd-file of Dovecot's virtual users (`doveadm pw` hashes under
/// `user@domain` names): a name of a local domain is that user, who logs in
/// by either name, gets mail and can be edited by either name with
/// `mailbagd user`; a name of another domain is a bad line naming it; two
/// lines for one user (`dup@example.test`, `DUP`) are both left out and its
/// mail deferred. Before, every `user@domain` line was skipped as "not
/// usable as the local part".
#[test]
fn user_at_domain_names_of_a_dovecot_file_are_local_users() {
    if !require("python3") || !require("doveadm") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(
        &file,
        format!(
            "vjoe@example.test:{}\nvann@other.test:{}\ndup@example.test:{}\nDUP:{}\n",
            doveadm_pw("SHA512-CRYPT", "vpw"),
            doveadm_pw("SHA512-CRYPT", "apw"),
            doveadm_pw("SHA512-CRYPT", "d1"),
            doveadm_pw("SHA512-CRYPT", "d2"),
        ),
    )
    .unwrap();
    let server = with_passwd_file(&file);
    common::deliver_local(&server, "vjoe@example.test", "hello", "body");
    for name in ["vjoe", "vjoe@example.test", "VJOE@Example.Test"] {
        let r = py_pop_login(&server, "127.0.0.1", name, "vpw");
        assert!(r.starts_with("OK 1 "), "{name}: {r}");
    }
    let port = server.port("smtp");
    let r = common::rcpt_reply(&server, port, "127.0.0.9", "vann@example.test");
    assert!(r.starts_with("550 5.1.1"), "{r}");
    // Two lines for one user: neither is used, the mail waits (451), nobody
    // gets the other's.
    let r = common::rcpt_reply(&server, port, "127.0.0.9", "dup@example.test");
    assert!(r.starts_with("451 4.3.5"), "{r}");
    assert!(!py_pop_login(&server, "127.0.0.1", "dup", "d1").starts_with("OK"));
    assert!(
        server
            .log()
            .contains("\"other.test\" is not one of `local_domains`"),
        "{}",
        server.log()
    );
    // `mailbagd user` finds the line by either name and keeps its spelling.
    let f = file.to_str().unwrap();
    let out = mailbagd(&["user", "passwd", "vjoe", "--file", f], Some("new\n"));
    assert!(out.ok(), "{out:?}");
    let out = mailbagd(
        &["user", "check", "vjoe@example.test", "--file", f],
        Some("new\n"),
    );
    assert!(out.ok(), "{out:?}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("vjoe@example.test:{ARGON2ID}")
    );
}

/// A password with a non-ASCII letter sent by a client set up for Latin-1
/// (poplib with `encoding = 'latin-1'`): it logs in whether `doveadm pw` made
/// the hash of the password as text (UTF-8) or of the Latin-1 octets
/// themselves, as do UTF-8 clients for the first; a wrong letter does not.
/// Before, a PASS line that was not UTF-8 got `-ERR` and never logged in.
#[test]
fn a_latin1_client_logs_in_with_a_non_ascii_password() {
    if !require("python3") || !require("doveadm") {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let octets = run(Command::new("doveadm")
        .args(["pw", "-s", "SHA512-CRYPT", "-p"])
        .arg(std::ffi::OsStr::from_bytes(b"gr\xfcn")));
    assert!(octets.ok(), "{octets:?}");
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(
        &file,
        format!(
            "text:{}\noctets:{}\n",
            doveadm_pw("SHA512-CRYPT", "grün"),
            octets.stdout.trim()
        ),
    )
    .unwrap();
    let server = with_passwd_file(&file);
    let latin1 = "p.encoding = 'latin-1'; p.user(user); p.pass_(pw)";
    let auth_plain = "p._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\\0' + user.encode() + b'\\0' + pw.encode('latin-1')).decode())";
    for user in ["text", "octets"] {
        for login in [latin1, auth_plain] {
            let r = common::py_pop(&server, "127.0.0.1", user, "grün", login);
            assert!(r.starts_with("OK 0 0"), "{user} by {login}: {r}");
        }
    }
    assert!(py_pop_login(&server, "127.0.0.1", "text", "grün").starts_with("OK 0 0"));
    let r = common::py_pop(&server, "127.0.0.1", "text", "grýn", latin1);
    assert!(r.starts_with("ERR -ERR [AUTH]"), "{r}");
}

/// Lines another tool wrote that mailbagd cannot use: a Latin-1 full name
/// spoils nothing (the field is not used), and the rest of the file loads; a
/// user whose line is skipped (a scheme mailbagd does not read, a bad extra
/// value) is not an unknown recipient but a local fault: `451 4.3.5`, so the
/// sender retries until the line is fixed, while a name in no line gets `550`.
/// `mailbagd user list` refuses the file, naming the line that is not UTF-8.
#[test]
fn unusable_lines_defer_their_users_mail_and_latin1_spoils_nothing() {
    if !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    let mut text = b"good:{PLAIN}g1\npbk:{PBKDF2}$1$abcdefgh$1000$deadbeef\n".to_vec();
    text.extend_from_slice(b"lat:{PLAIN}m1:1000:1000:Hans M\xfcller:/home/lat::\n");
    text.extend_from_slice(b"badq:{PLAIN}b1::::::quota=lots\n");
    std::fs::write(&file, &text).unwrap();
    let server = with_passwd_file(&file);
    let port = server.port("smtp");
    let rcpt = |to: &str| common::rcpt_reply(&server, port, "127.0.0.9", to);
    assert!(rcpt("good@example.test").starts_with("250"));
    assert!(rcpt("lat@example.test").starts_with("250"));
    for unusable in ["pbk@example.test", "BADQ@example.test"] {
        let r = rcpt(unusable);
        assert!(r.starts_with("451 4.3.5"), "{unusable}: {r}");
    }
    assert!(rcpt("nobody@example.test").starts_with("550 5.1.1"));
    assert!(py_pop_login(&server, "127.0.0.1", "lat", "m1").starts_with("OK 0 0"));
    let out = mailbagd(&["user", "list", "--file", file.to_str().unwrap()], None);
    assert!(
        !out.ok() && out.stderr.contains("line 3 is not UTF-8"),
        "{out:?}"
    );
}

/// Dovecot's `nologin` and `allow_nets` extra fields, which a migrated file
/// uses to disable or fence users, are honoured at login (poplib): a
/// `nologin=y` user cannot log in (nor, so, authorize relay) yet gets mail; an
/// `allow_nets` user logs in only from those networks; a bad network skips
/// the line.
#[test]
fn nologin_and_allow_nets_are_honoured() {
    if !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(
        &file,
        "nolog:{PLAIN}n1::::::nologin=y reason=disabled\n\
         netuser:{PLAIN}n2::::::allow_nets=127.0.0.2/32,10.0.0.0/8\n\
         badnet:{PLAIN}n3::::::allow_nets=127.0.0.300\n\
         ok:{PLAIN}n4\n",
    )
    .unwrap();
    let server = with_passwd_file(&file);
    assert!(py_pop_login(&server, "127.0.0.3", "nolog", "n1").starts_with("ERR"));
    let relay = common::rcpt_reply(&server, server.port("smtp"), "127.0.0.3", "x@far.example");
    assert!(relay.starts_with("554"), "{relay}");
    assert!(
        common::rcpt_reply(
            &server,
            server.port("smtp"),
            "127.0.0.9",
            "nolog@example.test"
        )
        .starts_with("250")
    );
    assert!(py_pop_login(&server, "127.0.0.3", "netuser", "n2").starts_with("ERR"));
    assert!(py_pop_login(&server, "127.0.0.2", "netuser", "n2").starts_with("OK"));
    assert!(py_pop_login(&server, "127.0.0.4", "badnet", "n3").starts_with("ERR"));
    assert!(
        server.log().contains("allow_nets=127.0.0.300"),
        "{}",
        server.log()
    );
    assert!(py_pop_login(&server, "127.0.0.4", "ok", "n4").starts_with("OK"));
    // The client hears the same for each refusal; the log says which it was.
    assert!(py_pop_login(&server, "127.0.0.6", "ok", "n5").starts_with("ERR"));
    assert!(py_pop_login(&server, "127.0.0.6", "nobody", "n4").starts_with("ERR"));
    let log = server.log();
    for (user, why) in [
        ("nolog", "user may not log in (nologin)"),
        ("netuser", "not allowed from this address (allow_nets)"),
        ("ok", "wrong password"),
        ("nobody", "unknown user"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("login failed") && l.contains(user) && l.contains(why)),
            "{user}: {why}\n{log}"
        );
    }
}

/// A passwd-file line whose hash is of the empty password (`doveadm pw -p
/// ''`) lets no one in: an empty password never logs in (USER/PASS, AUTH
/// PLAIN, the web page), so it cannot authorize relay either; `mailbagd pw`
/// refuses to make such a hash.
#[test]
fn a_hash_of_the_empty_password_lets_no_one_in() {
    if !require("python3") || !require("doveadm") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    let hash = doveadm_pw("SHA512-CRYPT", "");
    assert!(doveadm_verifies(&hash, ""), "{hash}");
    std::fs::write(&file, format!("emptyh:{hash}\n")).unwrap();
    let server = with_passwd_file(&file);
    let r = py_pop_login(&server, "127.0.0.5", "emptyh", "");
    assert!(r.starts_with("ERR"), "USER/PASS: {r}");
    let r = common::py_pop_auth_plain(&server, "127.0.0.5", "emptyh", "");
    assert!(!r.starts_with("OK"), "AUTH PLAIN: {r}");
    let relay = common::rcpt_reply(
        &server,
        server.port("smtp"),
        "127.0.0.5",
        "victim@far.example",
    );
    assert!(relay.starts_with("554"), "{relay}");
    let out = mailbagd(&["pw", "-s", "SHA512-CRYPT", "-p", ""], None);
    assert!(
        !out.ok() && out.stderr.contains("empty password"),
        "{out:?}"
    );
}

/// A bad line is left out at start-up as at a reload: after a restart the other users
/// still get their mail (a probe found one typo stopped the next start for everyone).
#[test]
fn a_bad_line_is_left_out_at_start_up_and_logged() {
    if !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(&file, "amy:{PLAIN}amy-pw\nbad:{NOPE}x\ncyd:{PLAIN}cyd-pw\n").unwrap();
    let server = with_passwd_file(&file);
    for (user, pw) in [("amy", "amy-pw"), ("cyd", "cyd-pw")] {
        let r = py_pop_login(&server, "127.0.0.1", user, pw);
        assert!(r.starts_with("OK 0 0"), "{user}: {r}\n{}", server.log());
    }
    assert!(!py_pop_login(&server, "127.0.0.2", "bad", "x").starts_with("OK"));
    let log = server.log();
    assert!(
        log.contains("ERROR")
            && log.contains("line 2: user \"bad\": unknown password scheme {NOPE}"),
        "{log}"
    );
}

#[test]
fn a_bad_line_fails_check_with_exit_status_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let config = dir.path().join("mailbag.toml");
    let write_config = |extra_user: bool| {
        let users = if extra_user {
            "[[users]]\nname = \"joe\"\npassword = \"x\"\n"
        } else {
            ""
        };
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[userdb]\npasswd_file = {file:?}\n{users}",
                dir.path().join("data")
            ),
        )
        .unwrap();
    };
    write_config(false);
    let config_arg = config.to_str().unwrap();
    for (text, expected) in [
        (
            "ok:{PLAIN}x\nann:{PLAIN-MD4}abc\n",
            "line 2: user \"ann\": unknown password scheme {PLAIN-MD4}",
        ),
        (
            "ok:{PLAIN}x\nann:{MD5}abc\n",
            "line 2: user \"ann\": not a valid MD5-CRYPT hash",
        ),
        ("ok:{PLAIN}x\n\nbad line\n", "line 3: not `name:password:"),
        ("ok:{PLAIN}x\n../x:{PLAIN}y\n", "line 2: user \"../x\""),
        (
            "ok:{PLAIN}x\nOK:{PLAIN}y\n",
            "line 2: user \"OK\": a user of this name",
        ),
        (
            "ok:{BLF-CRYPT}$6$abc$def\n",
            "line 1: user \"ok\": not a valid BLF-CRYPT hash",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = mailbagd(&["--config", config_arg, "--check"], None);
        assert_eq!(out.code(), Some(2), "{text:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{text:?}: {}", out.stderr);
    }
    // A name in both the passwd-file and [[users]].
    write_config(true);
    std::fs::write(&file, "# users\nJoe:{PLAIN}x\n").unwrap();
    let out = mailbagd(&["--config", config_arg, "--check"], None);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("line 2: user \"Joe\""),
        "{}",
        out.stderr
    );
    // `user add` with that configuration refuses what the server would.
    std::fs::write(&file, "# users\nann:{PLAIN}y\n").unwrap();
    for (name, expected) in [
        ("JOE", "[[users]]"),
        ("Ann", "line 2"),
        ("queue", "relay.queue_dir"),
        ("mailbag-web-secret", "web.secret_file"),
    ] {
        let out = mailbagd(&["--config", config_arg, "user", "add", name], Some("pw\n"));
        assert!(
            !out.ok() && out.stderr.contains(expected),
            "{name}: {out:?}"
        );
    }
    let eve = mailbagd(
        &["--config", config_arg, "user", "add", "eve"],
        Some("pw\n"),
    );
    assert!(eve.ok(), "{eve:?}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("\neve:{ARGON2ID}")
    );
    // `user list` with that configuration lists as users only what a reload
    // keeps: reserved names and [[users]] clashes are bad lines.
    std::fs::write(&file, "ann:{PLAIN}y\nqueue:{PLAIN}z\nJOE:{PLAIN}w\n").unwrap();
    let list = mailbagd(&["--config", config_arg, "user", "list"], None);
    assert!(list.ok(), "{list:?}");
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines[0], "ann PLAIN", "{list:?}");
    assert_eq!(lines.len(), 3, "{list:?}");
    assert!(
        lines[1].starts_with('#') && lines[1].contains("line 2"),
        "{list:?}"
    );
    assert!(
        lines[2].starts_with('#') && lines[2].contains("line 3"),
        "{list:?}"
    );
}

#[test]
fn user_commands_and_pw_make_what_mailbagd_and_dovecot_accept() {
    if !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(&file, "# our users\namy:{PLAIN}a:1:1::/h::quota=2G\n").unwrap();
    let f = file.to_str().unwrap();
    let add = mailbagd(&["user", "add", "zed", "--file", f], Some("zed-pw\n"));
    assert!(add.ok(), "{add:?}");
    let add = mailbagd(
        &["user", "add", "sue", "-s", "BLF-CRYPT", "--file", f],
        Some("sue-pw\n"),
    );
    assert!(add.ok(), "{add:?}");
    let again = mailbagd(&["user", "add", "ZED", "--file", f], Some("x\n"));
    assert!(
        !again.ok() && again.stderr.contains("already exists"),
        "{again:?}"
    );
    let bad = mailbagd(&["user", "add", "a/b", "--file", f], Some("x\n"));
    assert!(!bad.ok(), "{bad:?}");
    assert!(mailbagd(&["user", "check", "zed", "--file", f], Some("zed-pw\n")).ok());
    let wrong = mailbagd(&["user", "check", "zed", "--file", f], Some("nope\n"));
    assert_eq!(wrong.code(), Some(1), "{wrong:?}");
    let list = mailbagd(&["user", "list", "--file", f], None);
    assert_eq!(
        list.stdout, "amy PLAIN\nzed ARGON2ID\nsue BLF-CRYPT\n",
        "{list:?}"
    );
    assert!(mailbagd(&["user", "passwd", "sue", "--file", f], Some("sue-new\n")).ok());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("# our users\namy:{PLAIN}a:1:1::/h::quota=2G\n"),
        "{text}"
    );

    // The server takes the file as the commands left it.
    let server = with_passwd_file(&file);
    assert!(py_pop_login(&server, "127.0.0.1", "zed", "zed-pw").starts_with("OK"));
    assert!(py_pop_login(&server, "127.0.0.1", "sue", "sue-new").starts_with("OK"));
    assert!(!py_pop_login(&server, "127.0.0.2", "sue", "sue-pw").starts_with("OK"));
    drop(server);
    assert!(mailbagd(&["user", "del", "zed", "--file", f], None).ok());
    assert!(!std::fs::read_to_string(&file).unwrap().contains("zed:"));

    // `mailbagd pw` hashes, checked by Dovecot itself.
    if !require("doveadm") {
        return;
    }
    // New hashes only in the strong schemes; the older ones are read only.
    let refused = mailbagd(&["pw", "-s", "SSHA256", "-p", "hunter2"], None);
    assert!(
        !refused.ok() && refused.stderr.contains("read only"),
        "{refused:?}"
    );
    for scheme in &SCHEMES[..5] {
        let out = mailbagd(&["pw", "-s", scheme, "-p", "hunter2"], None);
        assert!(out.ok(), "{out:?}");
        let hash = out.stdout.trim();
        assert!(hash.starts_with(&format!("{{{scheme}}}")), "{hash}");
        assert!(
            doveadm_verifies(hash, "hunter2"),
            "{scheme}: Dovecot does not verify {hash}"
        );
        assert!(!doveadm_verifies(hash, "hunter3"), "{scheme}");
    }
}

/// A password changed in the passwd-file (perhaps because it leaked) ends
/// that user's web sessions once the server has re-read the file; other
/// users' sessions go on.
#[test]
fn a_password_change_ends_the_users_web_sessions() {
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(&file, "cat:{PLAIN}catpw\ndan:{PLAIN}danpw\n").unwrap();
    // The server binary with its config file (a reload re-reads that file).
    let server = Server::start_with(
        Options {
            userdb: format!("passwd_file = {file:?}\ncheck_interval = \"100ms\""),
            ..Options::default()
        },
        |_| {},
    );
    let web = server.addrs["http"];
    let mut cat = Client::new(web);
    assert_eq!(cat.login("cat", "catpw").status, 303);
    let mut dan = Client::new(web);
    assert_eq!(dan.login("dan", "danpw").status, 303);
    // A second session of cat's: a thief's browser that keeps polling.
    let mut thief = Client::new(web);
    assert_eq!(thief.login("cat", "catpw").status, 303);
    assert_eq!(cat.get("/settings").status, 200);
    assert_eq!(dan.get("/settings").status, 200);
    let f = file.to_str().unwrap();
    let changed = mailbagd(&["user", "passwd", "cat", "--file", f], Some("new-catpw\n"));
    assert!(changed.ok(), "{changed:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cat.get("/settings").status == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "cat's session outlived the change"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = cat.get("/settings");
    assert_eq!(after.status, 303, "{after:?}");
    assert_eq!(after.header("location"), Some("/login"));
    assert_eq!(dan.get("/settings").status, 200, "dan's session goes on");
    assert_eq!(thief.get("/settings").status, 303);
    assert_eq!(cat.login("cat", "new-catpw").status, 303);
    assert_eq!(cat.get("/settings").status, 200);
    // The old password back (a restored backup): the ended sessions stay ended (the web
    // probe found them paused, and working again).
    std::fs::write(&file, "cat:{PLAIN}catpw\ndan:{PLAIN}danpw\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Client::new(web).login("cat", "catpw").status != 303 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old password never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        thief.get("/settings").status,
        303,
        "the thief's session came back"
    );
}
