//! `loadgen` against a mailbagd started in this process: SMTP delivers the
//! messages it counts (they are in the Maildir), POP3 retrieves them (with
//! and without pipelining), a wrong password is counted as an error, and a
//! non-loopback target or source is refused.

use std::process::Command;
use std::sync::Arc;

use mailbagd::config::Config;
use mailbagd::listener::Role;
use mailbagd::server::Server;

/// Runs loadgen; its exit status and output line.
fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

#[test]
fn loadgen_delivers_retrieves_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = Config::from_toml_str(&format!(
        r#"
hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = {data:?}
[pop3]
listen = ["127.0.0.1:0"]
[smtp]
listen = ["127.0.0.1:0"]
submission_listen = []
[web]
listen = []
[relay]
queue_dir = {queue:?}
[[users]]
name = "joe"
password = "secret"
[[users]]
name = "ann"
password = "secret"
"#,
        data = dir.path().join("data"),
        queue = dir.path().join("queue"),
    ))
    .unwrap();
    let server = rt.block_on(Server::bind(config)).unwrap();
    let addr = |role| {
        server
            .local_addrs()
            .into_iter()
            .find(|(r, _)| *r == role)
            .map(|(_, a)| a.port().to_string())
            .unwrap()
    };
    let (smtp, pop3) = (addr(Role::Smtp), addr(Role::Pop3));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopper = Arc::clone(&stop);
    let running = rt.spawn(server.run(async move { stopper.notified().await }));

    // 30 messages to joe on three connections, 5 to ann one connection each.
    let (code, out, err) = loadgen(&[
        "smtp",
        &smtp,
        "--sessions",
        "3",
        "--messages",
        "30",
        "--size",
        "10240",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(field(&out, "messages"), 30.0, "{out}");
    assert_eq!(field(&out, "errors"), 0.0, "{out}{err}");
    assert!(field(&out, "p99_ms") >= field(&out, "p50_ms"));
    let (code, out, err) = loadgen(&[
        "smtp",
        &smtp,
        "--messages",
        "5",
        "--to",
        "ann@example.test",
        "--new-connection",
    ]);
    assert_eq!((code, field(&out, "messages")), (0, 5.0), "{out}{err}");
    let new = |u: &str| {
        std::fs::read_dir(dir.path().join("data").join(u).join("new"))
            .unwrap()
            .count()
    };
    assert_eq!((new("joe"), new("ann")), (30, 5));

    // Every message retrieved, twice per user, then pipelined.
    let (code, out, err) = loadgen(&[
        "pop3",
        &pop3,
        "joe,ann",
        "secret",
        "--sessions-per-user",
        "2",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(field(&out, "messages"), 70.0, "{out}{err}");
    let (_, out, _) = loadgen(&["pop3", &pop3, "joe", "secret", "--pipeline", "8"]);
    assert_eq!(field(&out, "messages"), 30.0, "{out}");
    // A refused login is an error, and the run fails when nothing worked.
    let (code, out, err) = loadgen(&["pop3", &pop3, "joe", "wrong"]);
    assert_eq!((code, field(&out, "errors")), (1, 1.0), "{out}");
    assert!(err.contains("PASS"), "{err}");

    // Loopback only.
    let (code, _, err) = loadgen(&["smtp", &smtp, "--host", "192.0.2.1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("refusing non-loopback target 192.0.2.1"),
        "{err}"
    );
    let (code, _, err) = loadgen(&["pop3", &pop3, "joe", "secret", "--source", "10.0.0.1"]);
    assert_eq!(code, 2);
    assert!(err.contains("refusing non-loopback source"), "{err}");

    stop.notify_one();
    let _ = rt.block_on(running);
}
