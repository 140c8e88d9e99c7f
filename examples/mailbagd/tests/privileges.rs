//! `[server] user`: started as root, mailbagd reads its TLS key (readable
//! by root only), binds its ports, then serves as `nobody`; a user that does
//! not exist stops start-up. These tests need root (they are skipped
//! otherwise, and fail under `CI=true`, which runs as root).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod common;
use common::{Options, Server, in_ci, py_pop_login, require};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !in_ci(),
        "the privilege tests must run as root under CI=true"
    );
    eprintln!("SKIP: not root");
    false
}

/// The real, effective, saved and file-system user ids of a process.
fn uids(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn started_as_root_it_serves_as_nobody() {
    if !root_or_skip() || !require("python3") {
        return;
    }
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let nobody = String::from_utf8(nobody.stdout).unwrap().trim().to_owned();
    let server = Server::start_with(
        Options {
            tls: true,
            tables: "[server]\nuser = \"nobody\"\n".into(),
            ..Options::default()
        },
        |data| {
            let dir = data.parent().unwrap();
            let ok = Command::new("chown")
                .arg("-R")
                .arg("nobody:")
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success());
            // The key stays root's: read before the change of user.
            let key = dir.join("key.pem");
            let ok = Command::new("chown")
                .arg("root:")
                .arg(&key)
                .status()
                .unwrap();
            assert!(ok.success());
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        },
    );
    assert_eq!(uids(server.pid()), vec![nobody.clone(); 4]);
    assert!(server.log().contains("gave up root"), "{}", server.log());
    assert!(
        !server.log().contains("running as root"),
        "{}",
        server.log()
    );
    // It serves: TLS with the root-only key, a delivery and a login.
    common::deliver_local(&server, "joe@example.test", "hi", "as nobody");
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK 1"));
    let script = r#"
import poplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3_SSL('127.0.0.1', int(sys.argv[1]), context=ctx, timeout=20)
p.user('joe'); p.pass_('secret'); print(p.stat()[0]); p.quit()
"#;
    let out = common::python(script, &[&server.port("pop3s").to_string()]);
    assert!(out.ok() && out.stdout.trim() == "1", "{out:?}");
    // The message file belongs to nobody.
    let file = &server.messages("joe", "")[0];
    let owner = Command::new("stat")
        .args(["-c", "%u"])
        .arg(file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(owner.stdout).unwrap().trim(), nobody);
}

/// Started as root without `[server] user`, the server serves as root and
/// says at start-up that its mail files will be root's (a probe found that
/// Dovecot, as `mail`, then could not read them, with no word from us).
#[test]
fn root_without_a_server_user_is_warned_about() {
    if !root_or_skip() {
        return;
    }
    let server = Server::start();
    assert_eq!(uids(server.pid()), vec!["0".to_owned(); 4]);
    let log = server.log();
    assert!(
        log.contains("running as root without [server] user"),
        "{log}"
    );
}

/// The configuration read as root at start-up but unreadable by `[server] user`
/// would make every reload fail: the server says so at start-up (the re-probe found it
/// silent until the first reload).
#[test]
fn a_configuration_only_root_can_read_is_reported_at_start_up() {
    if !root_or_skip() {
        return;
    }
    let server = Server::start_with(
        Options {
            tables: "[server]\nuser = \"nobody\"\n".into(),
            ..Options::default()
        },
        |data| {
            let dir = data.parent().unwrap();
            let ok = Command::new("chown")
                .arg("-R")
                .arg("nobody:")
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success());
            let config = dir.join("mailbag.toml");
            let ok = Command::new("chown")
                .arg("root:")
                .arg(&config)
                .status()
                .unwrap();
            assert!(ok.success());
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        },
    );
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || server
            .log()
            .contains("configuration file is not readable by [server] user")),
        "{}",
        server.log()
    );
    assert!(
        !server
            .log()
            .contains("[userdb] passwd_file is not readable")
    );
}

#[test]
fn an_unknown_user_stops_start_up() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailbag.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[pop3]\nlisten = [\"127.0.0.1:0\"]\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n\
             submission_listen = []\n[web]\nlisten = []\n[relay]\nqueue_dir = {:?}\n\
             [server]\nuser = \"no-such-user-mailbag\"\n[[users]]\nname = \"joe\"\npassword = \"x\"\n",
            dir.path().join("data"),
            dir.path().join("queue")
        ),
    )
    .unwrap();
    let out = common::run_with_input(
        Command::new(env!("CARGO_BIN_EXE_mailbagd"))
            .arg("--config")
            .arg(&cfg),
        None,
        std::time::Duration::from_secs(30),
    );
    assert!(!out.ok());
    assert!(
        out.stderr.contains("no user \"no-such-user-mailbag\""),
        "{out:?}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "the store was opened as root"
    );
}

/// `mailbagd user add` run as root, with a configuration whose `[server] user` is
/// nobody, makes a new passwd-file that nobody owns (the re-probe found it root's, 0600:
/// the server, once it gave root up, could not reload it).
#[test]
fn user_add_makes_a_new_passwd_file_for_the_server_user() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let config = dir.path().join("mailbag.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[server]\nuser = \"nobody\"\n[userdb]\npasswd_file = {passwd:?}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = common::run_with_input(
        Command::new(env!("CARGO_BIN_EXE_mailbagd"))
            .arg("--config")
            .arg(&config)
            .args(["user", "add", "carol"]),
        Some(b"carol-pw\n"),
        std::time::Duration::from_secs(60),
    );
    assert!(out.ok(), "{out:?}");
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let owner = Command::new("stat")
        .args(["-c", "%u %a"])
        .arg(&passwd)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(owner.stdout).unwrap().trim(),
        format!("{} 600", String::from_utf8(nobody.stdout).unwrap().trim())
    );
}

/// The queue and digest commands, run as root while the server runs as
/// `[server] user`, work as that user: every file they write stays the
/// server's (a probe's `queue hold` made an envelope root's, which the
/// server then could not read, and `digest --now` a digest joe could not
/// retrieve).
#[test]
fn admin_commands_run_as_root_leave_the_files_the_servers() {
    if !root_or_skip() || !require("python3") {
        return;
    }
    let closed = common::free_port();
    let server = Server::start_with(
        Options {
            tables: "[server]\nuser = \"nobody\"\n".into(),
            relay: format!("smarthost = \"127.0.0.1:{closed}\"\nretry_schedule = \"1h\"\n"),
            ..Options::default()
        },
        |data| {
            let ok = Command::new("chown")
                .arg("-R")
                .arg("nobody:")
                .arg(data.parent().unwrap())
                .status()
                .unwrap();
            assert!(ok.success());
        },
    );
    assert!(py_pop_login(&server, "127.0.0.2", "joe", "secret").starts_with("OK"));
    let msg = common::message("friend@elsewhere.example", "queued", "x");
    let sent = common::py_send(
        &server,
        "smtp",
        "127.0.0.2",
        "joe@example.test",
        "friend@elsewhere.example",
        &msg,
    );
    assert_eq!(sent, "SENT", "{}", server.log());
    common::deliver_local(&server, "joe@example.test", "spam", common::GTUBE);
    let cli = |args: &[&str]| {
        let out = common::run(
            Command::new(env!("CARGO_BIN_EXE_mailbagd"))
                .arg("--config")
                .arg(server.config_path())
                .args(args),
        );
        assert!(out.ok(), "{args:?}: {out:?}");
        out.stdout
    };
    let listing = cli(&["queue", "list", "--json"]);
    let id = listing
        .split("\"id\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a queued message")
        .to_owned();
    cli(&["queue", "hold", &id]);
    cli(&["queue", "release", &id]);
    cli(&["queue", "show", &id]);
    cli(&["digest", "--now", "joe"]);
    let out = common::run(
        Command::new("find")
            .arg(&server.data)
            .args(["!", "-user", "nobody"]),
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.trim(), "", "files not the server user's");
    // The server still reads the message the commands changed: it stays queued.
    assert!(cli(&["queue", "list"]).contains(&id));
}
