//! Bad input: every kind gets one `-ERR` line and the session stays usable.

use mailbag_pop3_proto::session::{Event, MessageInfo, ServerConfig, ServerSession};
use mailbag_pop3_proto::types::Uid;

fn session(logged_in: bool) -> ServerSession {
    let mut config = ServerConfig::default();
    config.max_bad_commands = 1000;
    let mut s = ServerSession::new(config).unwrap();
    if logged_in {
        s.feed(b"USER joe\r\nPASS secret\r\n");
        let Some(Event::Login(_)) = s.next_event() else {
            panic!()
        };
        s.accept_login().unwrap();
        let Some(Event::OpenMaildrop { .. }) = s.next_event() else {
            panic!()
        };
        s.maildrop_opened(vec![MessageInfo::new(
            10,
            Uid::try_from("u1".to_string()).unwrap(),
        )])
        .unwrap();
    }
    s.take_output();
    s
}

const BAD_ANY_STATE: &[&[u8]] = &[
    b"",
    b"   ",
    b"XYZZY",
    b"NOOP\0",
    b"\0\0\0\0",
    b"LIST \xff\xfe",
    b"\xc3\xa9T\xc3\xa9",
    b"USER jo\0e",
    b"STAT extra",
    b"RETR",
    b"RETR 1 2",
    b"RETR x",
    b"RETR 0",
    b"RETR -1",
    b"RETR 99999999999999999999999",
    b"TOP 1",
    b"TOP 1 -2",
    b"DELE",
    b"UIDL 1 2",
    b"AUTH PLAIN not-base64!",
    b"APOP joe",
    b"APOP joe nothex",
    b"CAPA CAPA",
    b"QUIT now",
    b"STLS",
    b"UTF8",
    b"LANG",
];

fn check_bad(s: &mut ServerSession, line: &[u8]) {
    let mut input = line.to_vec();
    input.extend_from_slice(b"\r\nCAPA\r\n");
    s.feed(&input);
    assert_eq!(s.next_event(), None, "{line:?}");
    let out = String::from_utf8(s.take_output()).unwrap();
    let first = out.split("\r\n").next().unwrap_or_default();
    assert!(first.starts_with("-ERR "), "{line:?} -> {out:?}");
    assert!(
        out[first.len() + 2..].starts_with("+OK Capability list follows.\r\n"),
        "session not usable after {line:?}: {out:?}"
    );
    assert!(!s.is_closed());
}

#[test]
fn bad_lines_before_login() {
    let mut s = session(false);
    for line in BAD_ANY_STATE {
        check_bad(&mut s, line);
    }
    for line in [
        &b"STAT"[..],
        b"LIST",
        b"RETR 1",
        b"DELE 1",
        b"NOOP",
        b"RSET",
        b"UIDL",
        b"TOP 1 1",
        b"PASS x",
    ] {
        check_bad(&mut s, line);
    }
}

#[test]
fn bad_lines_after_login() {
    let mut s = session(true);
    for line in BAD_ANY_STATE {
        check_bad(&mut s, line);
    }
    for line in [
        &b"USER joe"[..],
        b"PASS secret",
        b"APOP joe c4c9334bac560ecc979e58001b3e22fb",
        b"AUTH PLAIN",
        b"AUTH",
        b"RETR 2",
        b"LIST 4294967295",
        b"TOP 2 0",
        b"DELE 7",
    ] {
        check_bad(&mut s, line);
    }
    // And still fully working.
    s.feed(b"STAT\r\n");
    assert_eq!(s.next_event(), None);
    assert_eq!(s.take_output(), b"+OK 1 10\r\n");
}

#[test]
fn over_long_lines_are_discarded_without_losing_sync() {
    for logged_in in [false, true] {
        let mut s = session(logged_in);
        let mut long = vec![b'A'; 100_000];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        // Fed in pieces, the long line is never buffered whole.
        for piece in long.chunks(4096) {
            s.feed(piece);
            assert!(s.wants_input());
            while s.next_event().is_some() {}
        }
        let out = String::from_utf8(s.take_output()).unwrap();
        let want_noop = if logged_in {
            "+OK\r\n"
        } else {
            "-ERR Command not allowed in this state.\r\n"
        };
        assert_eq!(out, format!("-ERR Command line too long.\r\n{want_noop}"));
    }
}

#[test]
fn eight_bit_user_and_password_are_accepted_as_utf8() {
    let mut s = session(false);
    s.feed("USER j\u{f6}rg\r\nPASS p\u{e4}ss w\u{f6}rd\r\n".as_bytes());
    let Some(Event::Login(req)) = s.next_event() else {
        panic!()
    };
    assert_eq!(req.user.as_str(), "j\u{f6}rg");
    assert!(req.check_secret("p\u{e4}ss w\u{f6}rd"));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut s = session(true);
    s.feed(b"STAT\r\nBOGUS\r\nLIST 1\r\nNOOP\r\nLIST 9\r\nUIDL 1\r\n");
    assert_eq!(s.next_event(), None);
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "+OK 1 10\r\n-ERR Unknown command.\r\n+OK 1 10\r\n+OK\r\n-ERR There's no message 9.\r\n+OK 1 u1\r\n"
    );
}
