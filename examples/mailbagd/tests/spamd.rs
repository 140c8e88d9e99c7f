//! `mailbagd` with `spam.spamd` configured: a real spamd scores the mail,
//! and a spamd that is down makes delivery fail open (unscanned, delivered).

use std::process::Command;
use std::time::Duration;

mod common;
use common::{GTUBE, Options, Server, free_port, message, py_send};

/// Stops the spamd peer when dropped.
struct Spamd {
    peers: std::path::PathBuf,
    port: u16,
}

impl Drop for Spamd {
    fn drop(&mut self) {
        let _ = common::run(
            Command::new("bash")
                .arg(self.peers.join("spamd-stop.sh"))
                .arg(self.port.to_string()),
        );
    }
}

#[test]
fn spamd_down_fails_open_and_delivers_unscanned() {
    if !common::require("python3") {
        return;
    }
    let opts = Options {
        spamd: Some(format!("127.0.0.1:{}", free_port())),
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    let to = "ann@example.test";
    assert_eq!(
        py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            to,
            &message(to, "gtube", GTUBE)
        ),
        "SENT"
    );
    let texts = server.message_texts("ann", "");
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("X-Spam-Status: Unknown"), "{}", texts[0]);
    assert!(texts[0].contains("Subject: gtube\r\n"), "{}", texts[0]);
    assert!(server.log().contains("fail-open") || server.log().contains("unscanned"));
}

#[test]
fn real_spamd_scores_gtube_and_ham() {
    let Some(peers) = common::peers_dir() else {
        assert!(!common::in_ci(), "shared/peers is missing (CI=true)");
        eprintln!("SKIP: shared/peers not found");
        return;
    };
    if !common::require("spamd") || !common::require("python3") {
        return;
    }
    let port = free_port();
    // The guard first: a start that panics half-way (timeout) is stopped too.
    let _guard = Spamd {
        peers: peers.clone(),
        port,
    };
    let start = common::run(
        Command::new("bash")
            .arg(peers.join("spamd-start.sh"))
            .arg(port.to_string()),
    );
    assert!(start.ok(), "spamd did not start: {start:?}");

    let opts = Options {
        spamd: Some(format!("127.0.0.1:{port}")),
        spam: "max_scan_size = \"4K\"\n".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    let to = "ann@example.test";
    assert_eq!(
        py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            to,
            &message(to, "offer", GTUBE)
        ),
        "SENT"
    );
    // Over [spam] max_scan_size: not sent to spamd, delivered unscanned, logged.
    let big = format!("{GTUBE}\r\n{}", "padding line\r\n".repeat(400));
    assert_eq!(
        py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            "joe@example.test",
            &message("joe@example.test", "big", &big)
        ),
        "SENT"
    );
    // joe's spam goes to .Spam; this one is not known to be spam.
    let joe = server.message_texts("joe", "");
    assert_eq!(joe.len(), 1);
    assert!(joe[0].contains("Subject: big\r\n"), "{}", joe[0]);
    assert!(joe[0].contains("X-Spam-Status: Unknown"), "{}", joe[0]);
    assert!(
        server
            .log()
            .contains("message not scanned: larger than [spam] max_scan_size"),
        "{}",
        server.log()
    );
    assert_eq!(
        py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            "joe@example.test",
            &message("joe@example.test", "offer", GTUBE)
        ),
        "SENT"
    );
    assert_eq!(
        py_send(
            &server,
            "smtp",
            "127.0.0.1",
            "s@example.org",
            to,
            &message(to, "lunch", "Shall we meet at noon tomorrow?")
        ),
        "SENT"
    );
    assert!(common::wait_until(Duration::from_secs(1), || server
        .messages("ann", "")
        .len()
        == 2));
    let texts = server.message_texts("ann", "");
    let spam = texts
        .iter()
        .find(|t| t.contains("offer"))
        .expect("spam copy");
    assert!(spam.contains("Subject: **SPAM( 1000.0)** offer"), "{spam}");
    assert!(spam.contains("GTUBE"), "rule names from spamd: {spam}");
    let ham = texts
        .iter()
        .find(|t| t.contains("lunch"))
        .expect("ham copy");
    assert!(ham.contains("Subject: lunch\r\n"), "{ham}");
    assert!(ham.contains("X-Spam-Status: No"), "{ham}");
    // joe's spam went to .Spam.
    assert_eq!(server.messages("joe", ".Spam").len(), 1);
}
