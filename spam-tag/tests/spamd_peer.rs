//! The spamd client against a real spamd (SpamAssassin 4), started by the test with
//! `shared/peers/spamd-start.sh PORT` and stopped by a Drop guard.
//!
//! Without spamd or the shared/ folder the test skips (prints why), unless `CI=true`, where
//! it fails.
#![cfg(feature = "spamd")]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailbag_spam_tag::spamc::{SpamWord, Verb};
use mailbag_spam_tag::spamd::{FailMode, ScanOutcome, SpamdClient, SpamdError, SpamdOptions};
use mailbag_spam_tag::{
    Folder, GTUBE, HeaderAction, RewriteOptions, UserSettings, decide, rewrite_message,
};

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `bash script port`, killing it after `limit`.
fn run_script(script: &str, port: u16, limit: Duration) -> Result<(), String> {
    let mut child = Command::new("bash")
        .arg(peers_dir().join(script))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("{script} failed ({status}): {err}"));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{script} timed out after {limit:?}"));
            }
            Err(e) => return Err(format!("{script}: {e}")),
        }
    }
}

/// A private spamd; stopped on drop (also when the test fails).
struct Spamd {
    port: u16,
    running: bool,
}

impl Spamd {
    fn start() -> Option<Spamd> {
        let missing = if !peers_dir().join("spamd-start.sh").exists() {
            Some(format!("{} is missing", peers_dir().display()))
        } else if !have("spamd") || !have("spamc") {
            Some("spamd/spamc are not installed".to_owned())
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(!in_ci(), "CI=true but the spamd peer cannot run: {why}");
            eprintln!("skipping the spamd peer test: {why}");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let guard = Spamd {
            port,
            running: true,
        };
        if let Err(e) = run_script("spamd-start.sh", port, Duration::from_secs(90)) {
            // Drop still runs spamd-stop.sh in case spamd started half-way.
            drop(guard);
            panic!("spamd did not start: {e}");
        }
        Some(guard)
    }

    fn stop(&mut self) {
        if self.running {
            self.running = false;
            let _ = run_script("spamd-stop.sh", self.port, Duration::from_secs(30));
        }
    }
}

impl Drop for Spamd {
    fn drop(&mut self) {
        self.stop();
    }
}

const HAM: &[u8] = b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <20261127100000.1234@example.org>\r\n\
From: Alice Example <alice@example.org>\r\n\
To: Bob Example <bob@example.org>\r\n\
Subject: Lunch on Friday\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hi Bob,\r\n\
\r\n\
are we still on for lunch on Friday? The new place near the station\r\n\
has a good menu, and I can book a table for half past twelve.\r\n\
\r\n\
Cheers,\r\n\
Alice\r\n";

fn gtube_message() -> Vec<u8> {
    let mut m = b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <20261127100000.99@example.net>\r\n\
From: Sam <sam@example.net>\r\nTo: Bob <bob@example.org>\r\nSubject: Test spam\r\n\
X-Spam-Flag: NO\r\n\r\nThis is the GTUBE:\r\n\r\n"
        .to_vec();
    m.extend_from_slice(GTUBE);
    m.extend_from_slice(b"\r\n");
    m
}

fn client(port: u16, fail_mode: FailMode) -> SpamdClient {
    let mut o = SpamdOptions::default();
    o.addr = ([127, 0, 0, 1], port).into();
    o.connect_timeout = Duration::from_secs(5);
    o.read_timeout = Duration::from_secs(30);
    o.write_timeout = Duration::from_secs(10);
    o.fail_mode = fail_mode;
    SpamdClient::new(o)
}

#[test]
fn real_spamd() {
    let Some(mut spamd) = Spamd::start() else {
        return;
    };
    let port = spamd.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let c = client(port, FailMode::Open);
            c.ping().await.expect("PING");

            // CHECK: GTUBE is 1000/5.0 spam, the ham message is below 5.
            let gtube = gtube_message();
            let s = c.check(&gtube).await.expect("CHECK gtube");
            assert!(s.is_spam);
            assert_eq!(s.word, SpamWord::TrueFalse);
            assert_eq!(s.score.to_string(), "1000.0");
            assert_eq!(s.threshold.to_string(), "5.0");
            let h = c.check(HAM).await.expect("CHECK ham");
            assert!(!h.is_spam);
            assert!(h.score.value() < 5.0, "ham scored {}", h.score);

            // SYMBOLS: the rule names.
            let (v, s) = c.symbols(&gtube).await.expect("SYMBOLS");
            assert!(s.is_spam);
            assert!(v.rules().iter().any(|r| r.as_str() == "GTUBE"), "{v:?}");

            // REPORT_IFSPAM answers Yes/No.
            let r = c
                .request(Verb::ReportIfSpam, &gtube)
                .await
                .expect("REPORT_IFSPAM");
            assert_eq!(r.head.spam.map(|s| s.word), Some(SpamWord::YesNo));
            assert!(!r.body.is_empty());

            // HEADERS and PROCESS: spamd's rewritten headers / message.
            let (s, headers) = c.headers(&gtube).await.expect("HEADERS");
            assert!(s.is_spam);
            let text = String::from_utf8_lossy(&headers);
            assert!(text.contains("X-Spam-Flag: YES"), "{text}");
            assert!(text.contains("X-Spam-Status: Yes, score=1000.0"), "{text}");
            let (_, processed) = c.process(&gtube).await.expect("PROCESS");
            assert!(processed.len() > gtube.len());
            let (_, processed_ham) = c.process(HAM).await.expect("PROCESS ham");
            assert!(String::from_utf8_lossy(&processed_ham).contains("X-Spam-Status: No"));

            // The user header is accepted.
            let mut o = c.options().clone();
            o.user = Some("joe".to_owned());
            assert!(
                SpamdClient::new(o)
                    .check(&gtube)
                    .await
                    .expect("User")
                    .is_spam
            );

            // LF-only messages are sent unchanged and scored too.
            let lf: Vec<u8> = gtube.iter().copied().filter(|&b| b != b'\r').collect();
            assert!(c.check(&lf).await.expect("LF").is_spam);

            // An unknown verb gets spamd's EX_PROTOCOL answer, surfaced as a status.
            let raw = c.request(Verb::Skip, b"").await;
            assert!(
                raw.is_ok() || matches!(raw, Err(SpamdError::Protocol(_))),
                "{raw:?}"
            );

            // The whole pipeline: scan, decide, rewrite.
            let outcome = c.scan(&gtube).await.expect("scan");
            let verdict = outcome.verdict().expect("scored").clone();
            let d = decide(&UserSettings::default(), Some(&verdict));
            assert_eq!(d.folder, Folder::Spam);
            let out = rewrite_message(&gtube, d.action, RewriteOptions::default()).unwrap();
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.contains("Subject: **SPAM( 1000.0)** Test spam\r\n"),
                "{out}"
            );
            assert!(out.contains("X-Spam-Flag: YES\r\n"));
            assert!(!out.contains("X-Spam-Flag: NO"));
            assert!(out.contains("X-Spam-Prev-Subject: Test spam\r\n"));
            let ham = c.scan(HAM).await.expect("scan ham");
            let d = decide(&UserSettings::default(), ham.verdict());
            assert_eq!(d.folder, Folder::Inbox);
            assert_eq!(d.is_spam, Some(false));
        })
        .await
        .expect("the spamd checks took over 120 s");
    });

    // spamd down: a clear error, and the documented fail-open / fail-closed behaviour.
    spamd.stop();
    rt.block_on(async {
        let open = client(port, FailMode::Open);
        match open.scan(HAM).await {
            Ok(ScanOutcome::Unscanned {
                reason: SpamdError::Unavailable { addr, .. },
            }) => assert_eq!(addr.port(), port),
            other => panic!("expected Unscanned/Unavailable, got {other:?}"),
        }
        let d = decide(&UserSettings::default(), None);
        assert_eq!(
            (d.folder, d.action),
            (Folder::Inbox, HeaderAction::Unscanned)
        );
        let closed = client(port, FailMode::Closed);
        let err = closed
            .scan(HAM)
            .await
            .expect_err("fail-closed returns the error");
        assert!(err.to_string().contains("unavailable"), "{err}");
        assert!(matches!(
            closed.ping().await,
            Err(SpamdError::Unavailable { .. })
        ));
    });
}
