//! The shipped systemd units (`dist/mailbagd.service`, `dist/mailbagd.socket`)
//! pass `systemd-analyze verify` (unit syntax, every directive known, the
//! executables present), with the service pointed at the mailbagd just built.
//! Under `CI=true` a missing systemd-analyze fails the test.

use std::path::Path;
use std::process::Command;

mod common;
use common::require;

#[test]
fn the_units_verify_and_are_hardened() {
    if !require("systemd-analyze") {
        return;
    }
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let dir = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(dist.join("mailbagd.service")).unwrap();
    let socket = std::fs::read_to_string(dist.join("mailbagd.socket")).unwrap();
    for directive in [
        "Type=notify\n",
        "NoNewPrivileges=yes\n",
        "ProtectSystem=strict\n",
        "ReadWritePaths=/var/spool/mailbag\n",
        "StateDirectory=mailbag\n",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
    ] {
        assert!(
            service.contains(directive),
            "mailbagd.service lacks {directive:?}"
        );
    }
    for port in ["25", "110", "587", "995", "465"] {
        assert!(
            socket.contains(&format!("ListenStream={port}\n")),
            "no port {port}"
        );
    }
    let built = service.replace("/usr/local/bin/mailbagd", env!("CARGO_BIN_EXE_mailbagd"));
    std::fs::write(dir.path().join("mailbagd.service"), built).unwrap();
    std::fs::write(dir.path().join("mailbagd.socket"), socket).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("mailbagd.service"))
        .arg(dir.path().join("mailbagd.socket"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
