//! The example sessions of RFC 1939 (section 10 and the command examples),
//! RFC 2449 (CAPA), RFC 2595 (STLS) and RFC 5034 (AUTH), byte for byte.
//!
//! Two kinds of checks:
//! * codec: every client line of the RFC parses as a command and encodes back
//!   to the same bytes; every server first line / listing line parses and
//!   encodes back to the same bytes;
//! * session: our server produces the RFC's server side exactly where the RFC
//!   text is normative (status, numbers, listings, terminators) and our
//!   documented wording where the RFC text is free-form.

use mailbag_pop3_proto::codec::{
    Encode, parse_capability, parse_command, parse_list_entry, parse_response, parse_uidl_entry,
};
use mailbag_pop3_proto::session::{Event, MessageInfo, ServerConfig, ServerSession};
use mailbag_pop3_proto::types::{Capability, Command, Response, Uid};

fn crlf(lines: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn command_roundtrip(line: &str) {
    let cmd = parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
    let mut want = line.as_bytes().to_vec();
    want.extend_from_slice(b"\r\n");
    assert_eq!(cmd.to_bytes(), want, "{line}");
}

fn response_roundtrip(line: &str) {
    let r = parse_response(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
    let mut want = line.as_bytes().to_vec();
    want.extend_from_slice(b"\r\n");
    assert_eq!(r.to_bytes(), want, "{line}");
}

// RFC 1939 section 10 (the example POP3 session).
const RFC1939_CLIENT: &[&str] = &[
    "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
    "STAT",
    "LIST",
    "RETR 1",
    "DELE 1",
    "RETR 2",
    "DELE 2",
    "QUIT",
];

const RFC1939_SERVER_FIRST_LINES: &[&str] = &[
    "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
    "+OK mrose's maildrop has 2 messages (320 octets)",
    "+OK 2 320",
    "+OK 2 messages (320 octets)",
    "+OK 120 octets",
    "+OK message 1 deleted",
    "+OK 200 octets",
    "+OK message 2 deleted",
    "+OK dewey POP3 server signing off (maildrop empty)",
];

#[test]
fn rfc1939_section10_codec() {
    for l in RFC1939_CLIENT {
        command_roundtrip(l);
    }
    for l in RFC1939_SERVER_FIRST_LINES {
        response_roundtrip(l);
    }
    for l in ["1 120", "2 200"] {
        let e = parse_list_entry(l.as_bytes()).unwrap();
        assert_eq!(e.to_bytes(), crlf(&[l]));
    }
    match parse_response(RFC1939_SERVER_FIRST_LINES[0].as_bytes()).unwrap() {
        Response::Status(s) => {
            assert_eq!(
                s.apop_timestamp(),
                Some("<1896.697170952@dbc.mtview.ca.us>")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc1939_section10_session() {
    let mut config = ServerConfig::default();
    config.greeting = "POP3 server ready".into();
    config.apop_timestamp = Some("<1896.697170952@dbc.mtview.ca.us>".into());
    let mut s = ServerSession::new(config).unwrap();
    // Two messages of 120 and 200 octets (CRLF line ends).
    let msg1 = format!("Subject: one\r\n\r\n{}\r\n", "a".repeat(120 - 18));
    let msg2 = format!("Subject: two\r\n\r\n{}\r\n", "b".repeat(200 - 18));
    assert_eq!((msg1.len(), msg2.len()), (120, 200));
    let msgs = [msg1.as_bytes(), msg2.as_bytes()];
    let mut wire = s.take_output();
    s.feed(&crlf(RFC1939_CLIENT));
    while let Some(ev) = s.next_event() {
        match ev {
            Event::Login(req) => {
                assert_eq!(req.user.as_str(), "mrose");
                assert!(req.check_secret("tanstaaf"));
                s.accept_login().unwrap();
            }
            Event::OpenMaildrop { .. } => s
                .maildrop_opened(vec![
                    MessageInfo::new(
                        120,
                        Uid::try_from("whqtswO00WBw418f9t5JxYwZ".to_string()).unwrap(),
                    ),
                    MessageInfo::new(
                        200,
                        Uid::try_from("QhdPYR:00WBw1Ph7x7".to_string()).unwrap(),
                    ),
                ])
                .unwrap(),
            Event::Retrieve(r) => {
                s.message_chunk(msgs[r.index]).unwrap();
                s.message_end().unwrap();
            }
            Event::Commit { deleted } => {
                assert_eq!(deleted.len(), 2);
                s.commit_done(Ok(())).unwrap();
            }
            other => panic!("{other:?}"),
        }
        wire.extend_from_slice(&s.take_output());
    }
    let mut want = crlf(&[
        "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
        "+OK Logged in.",
        "+OK 2 320",
        "+OK 2 messages (320 octets)",
        "1 120",
        "2 200",
        ".",
        "+OK 120 octets",
    ]);
    want.extend_from_slice(msg1.as_bytes());
    want.extend_from_slice(&crlf(&[".", "+OK Marked to be deleted.", "+OK 200 octets"]));
    want.extend_from_slice(msg2.as_bytes());
    want.extend_from_slice(&crlf(&[
        ".",
        "+OK Marked to be deleted.",
        "+OK Logging out, messages deleted.",
    ]));
    assert_eq!(
        String::from_utf8(wire).unwrap(),
        String::from_utf8(want).unwrap()
    );
    assert!(s.is_closed());
}

// RFC 1939 sections 5 and 7: the examples of the individual commands.
#[test]
fn rfc1939_command_examples() {
    for l in [
        "STAT",
        "LIST",
        "LIST 2",
        "LIST 3",
        "RETR 1",
        "DELE 1",
        "DELE 2",
        "NOOP",
        "RSET",
        "QUIT",
        "TOP 1 10",
        "TOP 100 3",
        "UIDL",
        "UIDL 2",
        "UIDL 3",
        "USER frated",
        "USER mrose",
        "PASS secret",
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
    ] {
        command_roundtrip(l);
    }
    for l in [
        "+OK 2 320",
        "+OK 2 messages (320 octets)",
        "+OK 2 200",
        "-ERR no such message, only 2 messages in maildrop",
        "+OK 120 octets",
        "+OK message 1 deleted",
        "-ERR message 2 already deleted",
        "+OK",
        "+OK maildrop has 2 messages (320 octets)",
        "+OK dewey POP3 server signing off",
        "+OK unique-id listing follows",
        "+OK 2 QhdPYR:00WBw1Ph7x7",
        "-ERR sorry, no mailbox for frated here",
        "+OK mrose is a real hoopy frood",
        "+OK mrose's maildrop has 2 messages (320 octets)",
        "-ERR maildrop already locked",
    ] {
        response_roundtrip(l);
    }
    for l in ["1 whqtswO00WBw418f9t5JxYwZ", "2 QhdPYR:00WBw1Ph7x7"] {
        assert_eq!(
            parse_uidl_entry(l.as_bytes()).unwrap().to_bytes(),
            crlf(&[l])
        );
    }
}

#[test]
fn rfc1939_uidl_and_top_session() {
    let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    s.take_output();
    s.feed(b"USER mrose\r\nPASS tanstaaf\r\n");
    let Some(Event::Login(_)) = s.next_event() else {
        panic!()
    };
    s.accept_login().unwrap();
    let Some(Event::OpenMaildrop { .. }) = s.next_event() else {
        panic!()
    };
    s.maildrop_opened(vec![
        MessageInfo::new(
            120,
            Uid::try_from("whqtswO00WBw418f9t5JxYwZ".to_string()).unwrap(),
        ),
        MessageInfo::new(
            200,
            Uid::try_from("QhdPYR:00WBw1Ph7x7".to_string()).unwrap(),
        ),
    ])
    .unwrap();
    s.take_output();
    s.feed(b"UIDL\r\nUIDL 2\r\nUIDL 3\r\nLIST 3\r\nTOP 1 1\r\n");
    let Some(Event::Retrieve(r)) = s.next_event() else {
        panic!()
    };
    assert_eq!(r.top_lines, Some(1));
    s.message_chunk(b"From: a\r\nSubject: b\r\n\r\nline 1\r\nline 2\r\n")
        .unwrap();
    s.message_end().unwrap();
    assert_eq!(s.next_event(), None);
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        String::from_utf8(crlf(&[
            "+OK",
            "1 whqtswO00WBw418f9t5JxYwZ",
            "2 QhdPYR:00WBw1Ph7x7",
            ".",
            "+OK 2 QhdPYR:00WBw1Ph7x7",
            "-ERR There's no message 3.",
            "-ERR There's no message 3.",
            "+OK",
            "From: a",
            "Subject: b",
            "",
            "line 1",
            ".",
        ]))
        .unwrap()
    );
}

// RFC 2449 section 5 (CAPA example).
const RFC2449_CAPA: &[&str] = &[
    "TOP",
    "USER",
    "SASL CRAM-MD5 KERBEROS_V4",
    "RESP-CODES",
    "LOGIN-DELAY 900",
    "PIPELINING",
    "EXPIRE 60",
    "UIDL",
    "IMPLEMENTATION Shlemazle-Plotz-v302",
];

#[test]
fn rfc2449_capa_example() {
    command_roundtrip("CAPA");
    response_roundtrip("+OK Capability list follows");
    for l in RFC2449_CAPA {
        let c = parse_capability(l.as_bytes()).unwrap();
        assert_eq!(c.to_bytes(), crlf(&[l]), "{l}");
    }
    assert_eq!(
        parse_capability(b"LOGIN-DELAY 900").unwrap(),
        Capability::LoginDelay {
            seconds: 900,
            per_user: false
        }
    );
    // RFC 2449 section 8 response code examples.
    for l in [
        "-ERR [IN-USE] Do you have another POP session running?",
        "-ERR [LOGIN-DELAY] wait 900 seconds",
        "-ERR [AUTH] Invalid password",
        "-ERR [SYS/TEMP] Mailbox store unavailable",
        "-ERR [SYS/PERM] Your account is disabled",
    ] {
        response_roundtrip(l);
    }
}

#[test]
fn rfc2595_stls_example() {
    command_roundtrip("STLS");
    response_roundtrip("+OK Begin TLS negotiation");
    response_roundtrip("-ERR Command not permitted when TLS active");
    let mut config = ServerConfig::default();
    config.tls_available = true;
    let mut s = ServerSession::new(config).unwrap();
    s.take_output();
    s.feed(b"CAPA\r\n");
    assert_eq!(s.next_event(), None);
    let capa = String::from_utf8(s.take_output()).unwrap();
    assert!(capa.contains("\r\nSTLS\r\n"), "{capa}");
    s.feed(b"STLS\r\n");
    assert_eq!(s.next_event(), Some(Event::StartTls));
    assert_eq!(s.take_output(), crlf(&["+OK Begin TLS negotiation now."]));
    s.tls_established().unwrap();
    s.feed(b"STLS\r\n");
    assert_eq!(s.next_event(), None);
    assert_eq!(s.take_output(), crlf(&["-ERR TLS already active."]));
}

// RFC 5034 section 6 (examples).
#[test]
fn rfc5034_examples() {
    command_roundtrip("AUTH PLAIN");
    command_roundtrip("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=");
    response_roundtrip("+ ");
    response_roundtrip("+OK Maildrop locked and ready");
    response_roundtrip("-ERR [SYS/PERM] Unknown mechanism");
    for l in [
        "SASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS",
        "STLS",
        "IMPLEMENTATION BlurdyBlurp POP3 server",
    ] {
        assert_eq!(
            parse_capability(l.as_bytes()).unwrap().to_bytes(),
            crlf(&[l])
        );
    }

    // Without initial response: "+ " challenge, then the data line.
    let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    s.take_output();
    s.feed(b"AUTH PLAIN\r\n");
    assert_eq!(s.next_event(), None);
    assert_eq!(s.take_output(), b"+ \r\n");
    s.feed(b"dGVzdAB0ZXN0AHRlc3Q=\r\n");
    let Some(Event::Login(req)) = s.next_event() else {
        panic!()
    };
    assert_eq!(req.user.as_str(), "test");
    assert_eq!(req.authzid, None);
    assert!(req.check_secret("test"));
    s.accept_login().unwrap();
    let Some(Event::OpenMaildrop { .. }) = s.next_event() else {
        panic!()
    };
    s.maildrop_opened(vec![]).unwrap();
    assert_eq!(s.take_output(), crlf(&["+OK Logged in."]));

    // With initial response; "=" is an empty one.
    let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    s.take_output();
    s.feed(b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
    assert!(matches!(s.next_event(), Some(Event::Login(_))));
    match parse_command(b"AUTH PLAIN =").unwrap() {
        Command::Auth {
            initial_response: Some(ir),
            ..
        } => assert!(ir.expose().is_empty()),
        other => panic!("{other:?}"),
    }
}
