//! Connections: listeners of the shipped configuration (IPv4 and IPv6 on one
//! port), per-role connection limits, pipelined POP3 after large responses,
//! write timeouts.

use std::fs;
use std::path::Path;

mod common;
use common::Server;

/// Has this machine an IPv6 loopback? (Under CI=true it must.)
fn ipv6_loopback() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            assert!(
                !common::in_ci(),
                "no IPv6 loopback (CI=true needs one): {e}"
            );
            eprintln!("SKIP (IPv6 part): no IPv6 loopback on this machine: {e}");
            false
        }
    }
}

/// A port free on every address of both families (bound and released).
fn free_dual_port(v6: bool) -> u16 {
    let addr = if v6 { "[::]:0" } else { "0.0.0.0:0" };
    // On Linux a `[::]` socket without IPV6_V6ONLY holds the IPv4 port too.
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

const PY_POP_TLS: &str = r#"
import poplib, ssl, sys
host, port, user, pw, mode = sys.argv[1:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == 'stls':
    p = poplib.POP3(host, int(port), timeout=20)
    p.stls(ctx)
else:
    p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=20)
try:
    p.user(user); p.pass_(pw)
    n, size = p.stat()
    print('OK', n, size)
    p.quit()
except poplib.error_proto as e:
    print('ERR', e.args[0].decode())
"#;

fn pop_tls_login(host: &str, port: u16, mode: &str) -> String {
    let out = common::python(
        PY_POP_TLS,
        &[host, &port.to_string(), "alice", "secret", mode],
    );
    assert!(out.ok(), "python poplib failed: {out:?}");
    out.stdout.trim().to_owned()
}

/// The shipped `mailbag-production.toml` runs: it lists `0.0.0.0:P` and
/// `[::]:P` for every service, which only binds when the IPv6 listener is
/// IPv6-only. Ports, directories and TLS files are replaced by temporary
/// ones; the rest of the file is used as shipped.
#[test]
fn shipped_production_config_serves_over_ipv4_and_ipv6() {
    if !common::require("python3") {
        return;
    }
    let v6 = ipv6_loopback();
    let shipped =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("mailbag-production.toml"))
            .expect("read mailbag-production.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    fs::write(&cert, ck.cert.pem()).expect("write cert");
    fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");

    let mut text = shipped.clone();
    let mut replace = |from: &str, to: &str| {
        assert!(
            text.contains(from),
            "the shipped config no longer has {from:?}"
        );
        text = text.replace(from, to);
    };
    replace("/var/lib/mailbag/mail", &data.display().to_string());
    replace(
        "/var/spool/mailbag/queue",
        &dir.path().join("queue").display().to_string(),
    );
    replace("/etc/mailbag/fullchain.pem", &cert.display().to_string());
    replace("/etc/mailbag/privkey.pem", &key.display().to_string());
    let mut ports = std::collections::HashMap::new();
    for p in [110u16, 995, 25, 587, 465, 443] {
        let free = free_dual_port(v6);
        replace(
            &format!("\"0.0.0.0:{p}\", \"[::]:{p}\""),
            &if v6 {
                format!("\"0.0.0.0:{free}\", \"[::]:{free}\"")
            } else {
                format!("\"0.0.0.0:{free}\"")
            },
        );
        ports.insert(p, free);
    }
    let cfg = dir.path().join("mailbag.toml");
    fs::write(&cfg, text).expect("write config");
    let server = Server::start_config(
        dir,
        data,
        cfg,
        &[
            "pop3",
            "pop3s",
            "smtp",
            "submission",
            "submissions",
            "https",
        ],
    );
    let mut hosts = vec!["127.0.0.1"];
    if v6 {
        hosts.push("::1");
    }
    for host in hosts {
        for (port, mode) in [(ports[&110], "stls"), (ports[&995], "implicit")] {
            let got = pop_tls_login(host, port, mode);
            assert_eq!(
                got,
                "OK 0 0",
                "POP3 ({mode}) login over {host}; log:\n{}",
                server.log()
            );
        }
    }
}
