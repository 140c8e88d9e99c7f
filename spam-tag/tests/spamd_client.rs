//! The spamd client against scripted fake servers on 127.0.0.1: exact request bytes,
//! timeouts, error statuses, broken replies, a closed port, and the fail-open/fail-closed
//! policy. (The real-spamd test is `spamd_peer.rs`.)
#![cfg(feature = "spamd")]

use std::net::SocketAddr;
use std::time::Duration;

use mailbag_spam_tag::spamc::{SpamcError, StatusCode};
use mailbag_spam_tag::spamd::{FailMode, ScanOutcome, SpamdClient, SpamdError, SpamdOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the fake server does with its one connection.
#[derive(Clone, Copy)]
enum Script {
    /// Read the request to EOF, answer these bytes, close.
    Answer(&'static [u8]),
    /// Read the request and never answer.
    Silent,
    /// Read the request, then answer these bytes one every 100 ms.
    Drip(&'static [u8]),
}

/// Starts a one-connection fake spamd; returns its address and the request it received.
async fn fake(script: Script) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut req)).await;
        match script {
            Script::Answer(bytes) => {
                let _ = s.write_all(bytes).await;
                let _ = s.shutdown().await;
            }
            Script::Silent => tokio::time::sleep(Duration::from_secs(3)).await,
            Script::Drip(bytes) => {
                for b in bytes.chunks(1) {
                    if s.write_all(b).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        req
    });
    (addr, task)
}

fn client(addr: SocketAddr, mode: FailMode) -> SpamdClient {
    let mut o = SpamdOptions::default();
    o.addr = addr;
    o.read_timeout = Duration::from_millis(300);
    o.fail_mode = mode;
    SpamdClient::new(o)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn request_bytes_and_symbols_reply() {
    rt().block_on(async {
        let (addr, task) = fake(Script::Answer(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,NO_RECEIVED,NO_RELAYS",
        ))
        .await;
        let mut o = client(addr, FailMode::Open).options().clone();
        o.user = Some("joe".into());
        let c = SpamdClient::new(o);
        let (v, s) = c.symbols(b"Subject: x\r\n\r\nbody").await.unwrap();
        assert_eq!(
            task.await.unwrap(),
            b"SYMBOLS SPAMC/1.5\r\nUser: joe\r\nContent-length: 18\r\n\r\nSubject: x\r\n\r\nbody"
        );
        assert!(s.is_spam);
        assert_eq!(v.score().to_string(), "1000.0");
        let names: Vec<&str> = v.rules().iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["GTUBE", "NO_RECEIVED", "NO_RELAYS"]);
    });
}

#[test]
fn ping_pong() {
    rt().block_on(async {
        let (addr, task) = fake(Script::Answer(b"SPAMD/1.5 0 PONG\r\n")).await;
        client(addr, FailMode::Open).ping().await.unwrap();
        assert_eq!(task.await.unwrap(), b"PING SPAMC/1.5\r\n\r\n");
    });
}

#[test]
fn error_status_is_an_error_and_fails_open() {
    rt().block_on(async {
        let answer: &[u8] = b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, got 13 bytes)\r\n";
        let (addr, _t) = fake(Script::Answer(answer)).await;
        match client(addr, FailMode::Closed).check(b"x").await {
            Err(SpamdError::Status { code, text }) => {
                assert_eq!(code, StatusCode::EX_PROTOCOL);
                assert!(text.starts_with("Bad header line"));
            }
            other => panic!("{other:?}"),
        }
        let (addr, _t) = fake(Script::Answer(answer)).await;
        let out = client(addr, FailMode::Open).scan(b"x").await.unwrap();
        assert!(out.verdict().is_none());
        assert!(matches!(
            out,
            ScanOutcome::Unscanned {
                reason: SpamdError::Status { .. }
            }
        ));
    });
}

#[test]
fn broken_replies_are_protocol_errors() {
    rt().block_on(async {
        for (answer, want) in [
            (
                &b"HTTP/1.1 200 OK\r\n\r\n"[..],
                SpamcError::BadLine("status"),
            ),
            (
                b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1",
                SpamcError::Truncated,
            ),
            (
                b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 1.0 / 5.0\r\n\r\nabc",
                SpamcError::Truncated,
            ),
            (
                b"SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\nSpam: True ; 1.0 / 5.0\r\n\r\nA B",
                SpamcError::BadSymbols,
            ),
            (b"", SpamcError::Truncated),
        ] {
            let (addr, _t) = fake(Script::Answer(answer)).await;
            match client(addr, FailMode::Closed).symbols(b"m").await {
                Err(SpamdError::Protocol(e)) => assert_eq!(e, want),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(answer)),
            }
        }
        // A CHECK reply without the Spam header.
        let (addr, _t) = fake(Script::Answer(b"SPAMD/1.1 0 EX_OK\r\n\r\n")).await;
        assert!(matches!(
            client(addr, FailMode::Closed).check(b"m").await,
            Err(SpamdError::Incomplete(_))
        ));
    });
}

#[test]
fn read_timeout() {
    rt().block_on(async {
        let (addr, _t) = fake(Script::Silent).await;
        match client(addr, FailMode::Closed).check(b"m").await {
            Err(SpamdError::Timeout { stage, after }) => {
                assert_eq!(stage, "read");
                assert_eq!(after, Duration::from_millis(300));
            }
            other => panic!("{other:?}"),
        }
        let (addr, _t) = fake(Script::Silent).await;
        let out = client(addr, FailMode::Open).scan(b"m").await.unwrap();
        assert!(matches!(
            out,
            ScanOutcome::Unscanned {
                reason: SpamdError::Timeout { .. }
            }
        ));
    });
}

/// The read timeout bounds the whole reply: one sent an octet every 100 ms
/// (each read well within 300 ms) fails after 300 ms, not after its 6 s.
#[test]
fn a_reply_that_trickles_in_times_out_as_a_whole() {
    rt().block_on(async {
        let reply: &[u8] =
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 1.0 / 5.0\r\n\r\n";
        let (addr, _t) = fake(Script::Drip(reply)).await;
        let started = tokio::time::Instant::now();
        match client(addr, FailMode::Closed).check(b"m").await {
            Err(SpamdError::Timeout { stage: "read", .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn closed_port_is_unavailable() {
    rt().block_on(async {
        // Bind then drop, so that nothing listens on the port.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let err = client(addr, FailMode::Closed).scan(b"m").await.unwrap_err();
        assert!(matches!(err, SpamdError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()));
        let out = client(addr, FailMode::Open).scan(b"m").await.unwrap();
        assert!(out.verdict().is_none());
    });
}

#[test]
fn too_large_is_never_sent() {
    rt().block_on(async {
        // Nothing listens: the client must not even connect.
        let mut o = SpamdOptions::default();
        o.addr = ([127, 0, 0, 1], 9).into();
        o.max_message_size = 10;
        o.fail_mode = FailMode::Closed;
        let out = SpamdClient::new(o).scan(&[b'x'; 11]).await.unwrap();
        assert!(matches!(
            out,
            ScanOutcome::Unscanned {
                reason: SpamdError::TooLarge { size: 11, max: 10 }
            }
        ));
    });
}

#[test]
fn bad_user_name_is_refused() {
    rt().block_on(async {
        let mut o = SpamdOptions::default();
        o.addr = ([127, 0, 0, 1], 9).into();
        o.user = Some("two words".into());
        assert!(matches!(
            SpamdClient::new(o).check(b"m").await,
            Err(SpamdError::BadUser)
        ));
    });
}
