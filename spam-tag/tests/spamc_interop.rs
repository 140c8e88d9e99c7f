//! The server direction of the codec against the real `spamc` client: a small spamd built
//! from `parse_request_head` + `encode_response_head` and the built-in scorer, queried with
//! `spamc -K` (PING), `-c` (CHECK) and `-y` (SYMBOLS).
//!
//! Without `spamc` the test skips (prints why), unless `CI=true`, where it fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailbag_spam_tag::spamc::{
    ResponseHead, SpamResult, SpamWord, SpamcLimits, StatusCode, StatusText, Verb, Version,
    encode_response_head, parse_request_head,
};
use mailbag_spam_tag::{BuiltinScorer, GTUBE, Score, Scorer};

/// Serves one connection: returns the verb and user name spamc sent.
fn serve(mut s: TcpStream) -> (Verb, Option<String>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let limits = SpamcLimits::default();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let (verb, user, length, used) = loop {
        if let Some((head, used)) = parse_request_head(&buf, &limits).expect("valid request") {
            break (
                head.verb,
                head.user.map(|u| u.as_str().to_owned()),
                head.content_length.unwrap_or(0),
                used,
            );
        }
        let n = s.read(&mut tmp).expect("read head");
        assert!(n > 0, "spamc closed before the head was complete");
        buf.extend_from_slice(&tmp[..n]);
    };
    let mut body = buf[used..].to_vec();
    while (body.len() as u64) < length {
        let n = s.read(&mut tmp).expect("read body");
        assert!(n > 0, "spamc closed before the body was complete");
        body.extend_from_slice(&tmp[..n]);
    }
    let verdict = BuiltinScorer::default().score(&body);
    let threshold = Score::DEFAULT_THRESHOLD;
    let spam = SpamResult {
        is_spam: verdict.is_spam(threshold),
        word: SpamWord::TrueFalse,
        score: verdict.score(),
        threshold,
    };
    let mut out = Vec::new();
    match verb {
        Verb::Ping => encode_response_head(
            &ResponseHead {
                version: Version::V1_5,
                code: StatusCode::EX_OK,
                text: StatusText::new("PONG").unwrap(),
                content_length: None,
                spam: None,
            },
            &mut out,
        ),
        Verb::Symbols => {
            let names: Vec<&str> = verdict.rules().iter().map(|r| r.as_str()).collect();
            let list = names.join(",");
            encode_response_head(
                &ResponseHead {
                    version: Version::V1_1,
                    code: StatusCode::EX_OK,
                    text: StatusText::new("EX_OK").unwrap(),
                    content_length: Some(list.len() as u64),
                    spam: Some(spam),
                },
                &mut out,
            );
            out.extend_from_slice(list.as_bytes());
        }
        _ => encode_response_head(
            &ResponseHead {
                version: Version::V1_1,
                code: StatusCode::EX_OK,
                text: StatusText::new("EX_OK").unwrap(),
                content_length: None,
                spam: Some(spam),
            },
            &mut out,
        ),
    }
    s.write_all(&out).unwrap();
    (verb, user)
}

/// Runs spamc with `args` and `stdin`, bounded in time, while serving one connection.
fn spamc(args: &[&str], stdin: &[u8]) -> (String, i32, Verb, Option<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    l.set_nonblocking(true).unwrap();
    let mut child = Command::new("spamc")
        .args(["-d", "127.0.0.1", "-p", &port, "-t", "10"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spamc");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let conn = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("spamc did not connect: {e}");
            }
        }
    };
    conn.set_nonblocking(false).unwrap();
    let (verb, user) = serve(conn);
    writer.join().unwrap();
    let status = loop {
        match child.try_wait().unwrap() {
            Some(st) => break st,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("spamc did not exit");
            }
        }
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (out, status.code().unwrap_or(-1), verb, user)
}

fn have_spamc() -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v spamc"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but spamc is not installed"
        );
        eprintln!("skipping: spamc is not installed");
    }
    ok
}

const HEADERS: &[u8] = b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\
From: a@example.org\r\nTo: b@example.org\r\nSubject: Hello\r\n\r\n";

#[test]
fn real_spamc_against_our_codec() {
    if !have_spamc() {
        return;
    }
    let (out, code, verb, _) = spamc(&["-K"], b"");
    assert_eq!(verb, Verb::Ping);
    assert_eq!(code, 0, "spamc -K: {out}");

    let mut gtube = HEADERS.to_vec();
    gtube.extend_from_slice(GTUBE);
    gtube.extend_from_slice(b"\r\n");
    let (out, code, verb, user) = spamc(&["-c", "-u", "joe"], &gtube);
    assert_eq!(verb, Verb::Check);
    assert_eq!(user.as_deref(), Some("joe"));
    assert_eq!(out.trim(), "1000.0/5.0");
    assert_eq!(code, 1, "spamc -c exits 1 for spam");

    let mut ham = HEADERS.to_vec();
    ham.extend_from_slice(b"Hi there.\r\n");
    let (out, code, _, _) = spamc(&["-c"], &ham);
    assert_eq!(out.trim(), "0.0/5.0");
    assert_eq!(code, 0);

    let (out, _, verb, _) = spamc(&["-y"], b"Subject: x\n\n");
    assert_eq!(verb, Verb::Symbols);
    assert_eq!(
        out.trim(),
        "EMPTY_MESSAGE,MISSING_DATE,MISSING_FROM,MISSING_HEADERS,MISSING_MID"
    );
}
