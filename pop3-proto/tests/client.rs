//! The client session: the RFC examples as transcripts from the client side,
//! the client wired to the crate's own server session in memory (whole
//! sessions, and an error at every step), limits, and chunking invariance.

use mailbag_pop3_proto::client::{
    ClientEvent, ClientOptions, ClientSession, CommandKind, ProtocolError,
};
use mailbag_pop3_proto::codec::{crlf_len, normalize_crlf};
use mailbag_pop3_proto::session::{
    AuthFailure, CommitFailure, Event, MaildropFailure, MessageInfo, ServerConfig, ServerSession,
};
use mailbag_pop3_proto::types::{Capability, Expire, Mechanism, ResponseCode, Uid};
use proptest::prelude::*;

/// Feeds `server` and returns every event (body chunks merged, so the result
/// does not depend on chunking).
fn feed(c: &mut ClientSession, server: &[u8]) -> Vec<ClientEvent> {
    c.feed(server);
    drain(c)
}

fn drain(c: &mut ClientSession) -> Vec<ClientEvent> {
    let mut out: Vec<ClientEvent> = Vec::new();
    while let Some(e) = c.next_event() {
        if let (ClientEvent::BodyChunk(more), Some(ClientEvent::BodyChunk(prev))) =
            (&e, out.last_mut())
        {
            prev.extend_from_slice(more);
            continue;
        }
        out.push(e);
    }
    out
}

fn sent(c: &mut ClientSession) -> String {
    String::from_utf8(c.take_output()).unwrap()
}

fn error(command: CommandKind, code: Option<ResponseCode<'static>>, text: &str) -> ClientEvent {
    ClientEvent::Error {
        command,
        code,
        text: text.into(),
    }
}

fn n(x: u32) -> mailbag_pop3_proto::types::MessageNumber {
    mailbag_pop3_proto::types::MessageNumber::new(x).unwrap()
}

// ---- RFC examples as transcripts ----

/// RFC 1939 section 10, one command at a time (no CAPA, so no pipelining).
#[test]
fn rfc1939_section10_example_session() {
    let msg1 = b"Subject: one\r\n\r\n..starts with a dot\r\n";
    let msg2 = b"Subject: two\r\n\r\nbody\r\n";
    let mut c = ClientSession::new(ClientOptions::default());
    c.login_apop("mrose", "tanstaaf").unwrap();
    c.stat().unwrap();
    c.list(None).unwrap();
    c.retr(1).unwrap();
    c.dele(1).unwrap();
    c.retr(2).unwrap();
    c.dele(2).unwrap();
    c.quit().unwrap();
    assert_eq!(sent(&mut c), "");

    let ev = feed(
        &mut c,
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
    );
    assert_eq!(
        ev,
        [ClientEvent::Greeting {
            code: None,
            text: "POP3 server ready <1896.697170952@dbc.mtview.ca.us>".into(),
            apop_timestamp: Some("<1896.697170952@dbc.mtview.ca.us>".into()),
        }]
    );
    assert_eq!(
        c.apop_timestamp(),
        Some("<1896.697170952@dbc.mtview.ca.us>")
    );
    assert_eq!(
        sent(&mut c),
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
    );
    assert_eq!(
        feed(
            &mut c,
            b"+OK mrose's maildrop has 2 messages (320 octets)\r\n"
        ),
        [ClientEvent::LoggedIn]
    );
    assert!(c.is_logged_in());
    assert_eq!(sent(&mut c), "STAT\r\n");
    assert_eq!(
        feed(&mut c, b"+OK 2 320\r\n"),
        [ClientEvent::Stat {
            count: 2,
            size: 320
        }]
    );
    assert_eq!(sent(&mut c), "LIST\r\n");
    let ev = feed(
        &mut c,
        b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
    );
    let [ClientEvent::List(list)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        list.iter()
            .map(|e| (e.number.get(), e.size))
            .collect::<Vec<_>>(),
        [(1, 120), (2, 200)]
    );
    assert_eq!(sent(&mut c), "RETR 1\r\n");
    let mut wire = b"+OK 120 octets\r\n".to_vec();
    wire.extend_from_slice(b"Subject: one\r\n\r\n...starts with a dot\r\n.\r\n");
    assert_eq!(
        feed(&mut c, &wire),
        [
            ClientEvent::MessageStart { number: n(1) },
            ClientEvent::BodyChunk(msg1.to_vec()),
            ClientEvent::MessageEnd { number: n(1) },
        ]
    );
    assert_eq!(sent(&mut c), "DELE 1\r\n");
    assert_eq!(
        feed(&mut c, b"+OK message 1 deleted\r\n"),
        [ClientEvent::Deleted { number: n(1) }]
    );
    assert_eq!(sent(&mut c), "RETR 2\r\n");
    let mut wire = b"+OK 200 octets\r\n".to_vec();
    wire.extend_from_slice(msg2);
    wire.extend_from_slice(b".\r\n");
    assert_eq!(
        feed(&mut c, &wire),
        [
            ClientEvent::MessageStart { number: n(2) },
            ClientEvent::BodyChunk(msg2.to_vec()),
            ClientEvent::MessageEnd { number: n(2) },
        ]
    );
    assert_eq!(sent(&mut c), "DELE 2\r\n");
    assert_eq!(
        feed(&mut c, b"+OK message 2 deleted\r\n"),
        [ClientEvent::Deleted { number: n(2) }]
    );
    assert_eq!(sent(&mut c), "QUIT\r\n");
    assert_eq!(
        feed(
            &mut c,
            b"+OK dewey POP3 server signing off (maildrop empty)\r\n"
        ),
        [ClientEvent::Closed]
    );
    assert!(c.is_closed() && c.is_idle());
}

/// RFC 2449 section 5's CAPA example; PIPELINING turns on pipelining.
#[test]
fn rfc2449_capa_example() {
    let mut c = ClientSession::new(ClientOptions::default());
    feed(&mut c, b"+OK ready\r\n");
    c.capa().unwrap();
    assert_eq!(sent(&mut c), "CAPA\r\n");
    assert!(!c.is_pipelining());
    let ev = feed(
        &mut c,
        b"+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL CRAM-MD5 KERBEROS_V4\r\n\
          RESP-CODES\r\nLOGIN-DELAY 900\r\nPIPELINING\r\nEXPIRE 60\r\nUIDL\r\n\
          IMPLEMENTATION Shlemazle-Plotz-v302\r\n.\r\n",
    );
    let [ClientEvent::Capabilities(caps)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(caps.len(), 9);
    assert_eq!(caps[0], Capability::Top);
    assert_eq!(
        caps[2],
        Capability::Sasl(vec![
            Mechanism::try_from("CRAM-MD5").unwrap(),
            Mechanism::try_from("KERBEROS_V4").unwrap()
        ])
    );
    assert_eq!(
        caps[4],
        Capability::LoginDelay {
            seconds: 900,
            per_user: false
        }
    );
    assert_eq!(
        caps[6],
        Capability::Expire {
            policy: Expire::Days(60),
            per_user: false
        }
    );
    assert_eq!(c.capabilities(), &caps[..]);
    assert!(c.is_pipelining());
    // Now several commands go out together and the replies match in order.
    c.login_user_pass("joe", "pw").unwrap();
    c.stat().unwrap();
    c.uidl(Some(1)).unwrap();
    assert_eq!(sent(&mut c), "USER joe\r\nPASS pw\r\nSTAT\r\nUIDL 1\r\n");
    let ev = feed(
        &mut c,
        b"+OK\r\n+OK in\r\n+OK 1 5\r\n+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n",
    );
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0], ClientEvent::LoggedIn);
    assert_eq!(ev[1], ClientEvent::Stat { count: 1, size: 5 });
    let ClientEvent::Uidl(u) = &ev[2] else {
        panic!()
    };
    assert_eq!(u[0].uid.as_str(), "whqtswO00WBw418f9t5JxYwZ");
}

/// RFC 5034 section 6's example: CAPA, STLS, CAPA again over TLS, AUTH PLAIN
/// without and then with an initial response.
#[test]
fn rfc5034_sasl_example() {
    let mut options = ClientOptions::default();
    options.sasl_initial_response = false;
    let mut c = ClientSession::new(options);
    c.capa().unwrap();
    c.stls().unwrap();
    feed(
        &mut c,
        b"+OK pop.example.com BlurdyBlurp POP3 server ready\r\n",
    );
    assert_eq!(sent(&mut c), "CAPA\r\n");
    let ev = feed(
        &mut c,
        b"+OK List of capabilities follows\r\nSASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS\r\n\
          STLS\r\nIMPLEMENTATION BlurdyBlurp POP3 server\r\n.\r\n",
    );
    assert!(matches!(&ev[..], [ClientEvent::Capabilities(c)] if c.len() == 3));
    assert_eq!(sent(&mut c), "STLS\r\n");
    // Plaintext injected after the +OK is never read.
    let ev = feed(&mut c, b"+OK Begin TLS negotiation now\r\n+OK injected\r\n");
    assert_eq!(ev, [ClientEvent::TlsReady]);
    assert!(c.awaiting_tls());
    c.feed(b"\x16\x03\x01 handshake bytes");
    assert_eq!(c.next_event(), None);
    c.tls_established().unwrap();
    assert!(c.is_tls() && !c.awaiting_tls());
    assert!(c.capabilities().is_empty());
    assert!(c.stls().is_err());
    c.capa().unwrap();
    assert_eq!(sent(&mut c), "CAPA\r\n");
    feed(
        &mut c,
        b"+OK List of capabilities follows\r\nSASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS\r\n\
          IMPLEMENTATION BlurdyBlurp POP3 server\r\n.\r\n",
    );
    c.login_sasl_plain(Some("test"), "test", "test").unwrap();
    assert_eq!(sent(&mut c), "AUTH PLAIN\r\n");
    assert_eq!(feed(&mut c, b"+ \r\n"), []);
    assert_eq!(sent(&mut c), "dGVzdAB0ZXN0AHRlc3Q=\r\n");
    assert_eq!(
        feed(&mut c, b"+OK Maildrop locked and ready\r\n"),
        [ClientEvent::LoggedIn]
    );
    c.quit().unwrap();
    assert_eq!(sent(&mut c), "QUIT\r\n");
    assert_eq!(feed(&mut c, b"+OK\r\n"), [ClientEvent::Closed]);

    // The same with the initial response (the server advertised PLAIN).
    let mut c = ClientSession::new(ClientOptions::default());
    c.capa().unwrap();
    feed(&mut c, b"+OK ready\r\n");
    feed(&mut c, b"+OK\r\nSASL PLAIN\r\n.\r\n");
    sent(&mut c);
    c.login_sasl_plain(Some("test"), "test", "test").unwrap();
    assert_eq!(sent(&mut c), "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
    assert_eq!(
        feed(&mut c, b"+OK Maildrop locked and ready\r\n"),
        [ClientEvent::LoggedIn]
    );
}

#[test]
fn sasl_login_and_unexpected_challenge() {
    let mut c = ClientSession::new(ClientOptions::default());
    feed(&mut c, b"+OK ready\r\n");
    c.login_sasl_login("joe", "secret").unwrap();
    c.stat().unwrap(); // waits for the AUTH exchange to end
    assert_eq!(sent(&mut c), "AUTH LOGIN\r\n");
    feed(&mut c, b"+ VXNlcm5hbWU6\r\n");
    assert_eq!(sent(&mut c), "am9l\r\n");
    feed(&mut c, b"+ UGFzc3dvcmQ6\r\n");
    assert_eq!(sent(&mut c), "c2VjcmV0\r\n");
    // A third challenge is cancelled.
    feed(&mut c, b"+ \r\n");
    assert_eq!(sent(&mut c), "*\r\n");
    // The server must answer the cancel, not challenge again.
    let mut c2 = ClientSession::new(ClientOptions::default());
    feed(&mut c2, b"+OK ready\r\n");
    c2.login_sasl_plain(None, "joe", "secret").unwrap();
    feed(&mut c2, b"+ \r\n+ \r\n");
    assert_eq!(sent(&mut c2), "AUTH PLAIN\r\nAGpvZQBzZWNyZXQ=\r\n*\r\n");
    assert_eq!(
        feed(&mut c2, b"+ \r\n"),
        [
            ClientEvent::ProtocolError(ProtocolError::Unexpected),
            ClientEvent::Closed
        ]
    );
    assert_eq!(
        feed(&mut c, b"-ERR [AUTH] Authentication aborted.\r\n"),
        [error(
            CommandKind::Auth,
            Some(ResponseCode::Auth),
            "Authentication aborted."
        )]
    );
    assert_eq!(sent(&mut c), "STAT\r\n");
    // A challenge outside AUTH closes the session.
    assert_eq!(
        feed(&mut c, b"+ abc=\r\n"),
        [
            ClientEvent::ProtocolError(ProtocolError::Unexpected),
            ClientEvent::Closed
        ]
    );
}

#[test]
fn greeting_refused_and_user_refused() {
    let mut c = ClientSession::new(ClientOptions::default());
    c.stat().unwrap();
    assert_eq!(
        feed(&mut c, b"-ERR [SYS/TEMP] too busy\r\n"),
        [
            error(
                CommandKind::Greeting,
                Some(ResponseCode::SysTemp),
                "too busy"
            ),
            ClientEvent::Closed
        ]
    );
    assert_eq!(sent(&mut c), "");
    assert_eq!(
        c.stat(),
        Err(mailbag_pop3_proto::client::ClientError::Closed)
    );

    // A refused USER: the PASS is never sent, one error is reported.
    let mut c = ClientSession::new(ClientOptions::default());
    feed(&mut c, b"+OK\r\n");
    c.login_user_pass("joe", "secret").unwrap();
    assert_eq!(sent(&mut c), "USER joe\r\n");
    assert_eq!(
        feed(&mut c, b"-ERR no such user\r\n"),
        [error(CommandKind::User, None, "no such user")]
    );
    assert_eq!(sent(&mut c), "");
    assert!(c.is_idle());
    // The login may be tried again.
    c.login_user_pass("joe", "secret").unwrap();
    assert_eq!(sent(&mut c), "USER joe\r\n");

    // APOP without a timestamp is refused.
    let mut c = ClientSession::new(ClientOptions::default());
    feed(&mut c, b"+OK\r\n");
    assert!(c.login_apop("joe", "x").is_err());
}

/// Status text that is not UTF-8 or holds a control character (a server
/// set up for Latin-1, a TAB in an error) is shown with `?` for each; the
/// reply still counts as the `+OK` or `-ERR` it is. Before, such a greeting
/// closed the session as a protocol error and a refused PASS looked like one.
#[test]
fn status_text_of_a_legacy_charset_is_read_with_question_marks() {
    let mut c = ClientSession::new(ClientOptions::default());
    let events = feed(&mut c, b"+OK Willkommen, M\xfcller\r\n");
    assert!(
        matches!(&events[..], [ClientEvent::Greeting { text, .. }] if text == "Willkommen, M?ller"),
        "{events:?}"
    );
    c.login_user_pass("joe", "secret").unwrap();
    assert_eq!(
        feed(&mut c, b"+OK\r\n-ERR [AUTH] falsches\tPa\xdfwort\r\n"),
        [error(
            CommandKind::Pass,
            Some(ResponseCode::Auth),
            "falsches?Pa?wort"
        )]
    );
    assert!(c.is_idle());
    // A line that is no status line at all is still a protocol error.
    c.stat().unwrap();
    let events = feed(&mut c, b"*OK \xff\r\n");
    assert!(
        matches!(events.last(), Some(ClientEvent::Closed)),
        "{events:?}"
    );
}

// ---- limits ----

#[test]
fn limits_are_protocol_errors() {
    let greeted = || {
        let mut c = ClientSession::new(ClientOptions::default());
        feed(&mut c, b"+OK\r\n");
        c
    };
    // A status line over 512 octets.
    let mut c = greeted();
    c.noop().unwrap();
    let mut long = b"+OK ".to_vec();
    long.resize(600, b'a');
    long.extend_from_slice(b"\r\n");
    assert_eq!(
        feed(&mut c, &long),
        [
            ClientEvent::ProtocolError(ProtocolError::LineTooLong { max: 512 }),
            ClientEvent::Closed
        ]
    );
    // A line that never ends is not buffered beyond the limit.
    let mut c = greeted();
    c.noop().unwrap();
    for _ in 0..100 {
        c.feed(&[b'a'; 1000]);
        assert_eq!(c.next_event(), None);
    }
    assert!(!c.is_closed());
    assert!(c.buffered_input() < 512, "{c:?}");

    // Too many listing entries.
    let mut options = ClientOptions::default();
    options.max_listing_entries = 3;
    let mut c = ClientSession::new(options);
    feed(&mut c, b"+OK\r\n");
    c.list(None).unwrap();
    assert_eq!(
        feed(&mut c, b"+OK\r\n1 1\r\n2 2\r\n3 3\r\n4 4\r\n.\r\n"),
        [
            ClientEvent::ProtocolError(ProtocolError::TooManyEntries { max: 3 }),
            ClientEvent::Closed
        ]
    );
    // Too many capabilities.
    let mut options = ClientOptions::default();
    options.max_capabilities = 1;
    let mut c = ClientSession::new(options);
    feed(&mut c, b"+OK\r\n");
    c.capa().unwrap();
    assert!(matches!(
        feed(&mut c, b"+OK\r\nTOP\r\nUIDL\r\n.\r\n")[0],
        ClientEvent::ProtocolError(ProtocolError::TooManyEntries { max: 1 })
    ));
    // Input fed without reading events.
    let mut c = greeted();
    c.retr(1).unwrap();
    c.feed(&vec![b'x'; 100 * 1024]);
    c.feed(&vec![b'x'; 100 * 1024]);
    assert_eq!(
        drain(&mut c),
        [
            ClientEvent::ProtocolError(ProtocolError::InputOverflow { max: 128 * 1024 }),
            ClientEvent::Closed
        ]
    );
    // Body chunks are bounded.
    let mut c = greeted();
    c.retr(1).unwrap();
    c.feed(b"+OK\r\n");
    c.feed(&vec![b'x'; 100 * 1024]);
    let mut chunks = 0;
    while let Some(e) = c.next_event() {
        if let ClientEvent::BodyChunk(b) = e {
            assert!(b.len() <= 16 * 1024);
            chunks += 1;
        }
    }
    assert!(chunks >= 7);
    // Data nobody asked for, malformed replies.
    let mut c = greeted();
    assert_eq!(
        feed(&mut c, b"+OK surprise\r\n"),
        [
            ClientEvent::ProtocolError(ProtocolError::Unexpected),
            ClientEvent::Closed
        ]
    );
    let mut c = greeted();
    c.stat().unwrap();
    assert_eq!(
        feed(&mut c, b"+OK lots\r\n")[0],
        ClientEvent::ProtocolError(ProtocolError::Malformed {
            command: CommandKind::Stat
        })
    );
    let mut c = greeted();
    c.noop().unwrap();
    assert_eq!(
        feed(&mut c, b"HTTP/1.1 200 OK\r\n")[0],
        ClientEvent::ProtocolError(ProtocolError::Malformed {
            command: CommandKind::Noop
        })
    );
    // The connection ending early.
    let mut c = greeted();
    c.stat().unwrap();
    c.connection_closed();
    assert_eq!(
        drain(&mut c),
        [
            ClientEvent::ProtocolError(ProtocolError::ConnectionClosed),
            ClientEvent::Closed
        ]
    );
}

// ---- against the crate's own server ----

const MESSAGES: [(&str, &[u8]); 3] = [
    (
        "uid-1",
        b"Subject: dots\n\n.leading dot\n..two dots\n.\nend\n",
    ),
    (
        "uid-2",
        b"Subject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
    ),
    ("uid-3", b"Subject: three\r\n\r\nbye"),
];

#[derive(Default, Clone, Copy)]
struct Script {
    login: Option<AuthFailure>,
    maildrop: Option<MaildropFailure>,
    commit_fails: bool,
}

/// Shuttles bytes between the two sessions until both are quiet; the
/// server's application side answers from `MESSAGES`. Returns the client's
/// events.
fn pump(c: &mut ClientSession, s: &mut ServerSession, script: Script) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    loop {
        let mut progress = false;
        while let Some(ev) = s.next_event() {
            progress = true;
            match ev {
                Event::Login(req) => match script.login {
                    Some(f) => s.reject_login(f).unwrap(),
                    None if req.user.as_str() == "joe" && req.check_secret("secret") => {
                        s.accept_login().unwrap()
                    }
                    None => s.reject_login(AuthFailure::Credentials).unwrap(),
                },
                Event::OpenMaildrop { .. } => match script.maildrop {
                    Some(f) => s.maildrop_failed(f).unwrap(),
                    None => s
                        .maildrop_opened(
                            MESSAGES
                                .iter()
                                .map(|(u, m)| {
                                    MessageInfo::new(
                                        crlf_len(m),
                                        Uid::try_from(u.to_string()).unwrap(),
                                    )
                                })
                                .collect(),
                        )
                        .unwrap(),
                },
                Event::Retrieve(req) => {
                    for chunk in MESSAGES[req.index].1.chunks(5) {
                        s.message_chunk(chunk).unwrap();
                    }
                    s.message_end().unwrap();
                }
                Event::Commit { .. } => s
                    .commit_done(if script.commit_fails {
                        Err(CommitFailure)
                    } else {
                        Ok(())
                    })
                    .unwrap(),
                Event::StartTls => s.tls_established().unwrap(),
                other => panic!("{other:?}"),
            }
        }
        let out = s.take_output();
        if !out.is_empty() {
            progress = true;
            c.feed(&out);
        }
        for e in drain(c) {
            progress = true;
            if e == ClientEvent::TlsReady {
                c.tls_established().unwrap();
            }
            events.push(e);
        }
        let out = c.take_output();
        if !out.is_empty() {
            progress = true;
            s.feed(&out);
        }
        if !progress {
            return events;
        }
    }
}

fn pair(apop: bool) -> (ClientSession, ServerSession) {
    let mut config = ServerConfig::default();
    config.tls_available = true;
    if apop {
        config.apop_timestamp = Some("<42.1700000000@pop.example.test>".into());
    }
    (
        ClientSession::new(ClientOptions::default()),
        ServerSession::new(config).unwrap(),
    )
}

fn whole_session(c: &mut ClientSession) {
    c.stat().unwrap();
    c.list(None).unwrap();
    c.list(Some(2)).unwrap();
    c.uidl(None).unwrap();
    c.retr(1).unwrap();
    c.top(2, 1).unwrap();
    c.dele(1).unwrap();
    c.noop().unwrap();
    c.quit().unwrap();
}

fn check_whole_session(ev: &[ClientEvent]) {
    let sizes: Vec<u64> = MESSAGES.iter().map(|(_, m)| crlf_len(m)).collect();
    assert_eq!(
        ev[0],
        ClientEvent::Stat {
            count: 3,
            size: sizes.iter().sum()
        }
    );
    let ClientEvent::List(l) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(l.iter().map(|e| e.size).collect::<Vec<_>>(), sizes);
    let ClientEvent::List(l) = &ev[2] else {
        panic!("{ev:?}")
    };
    assert_eq!((l.len(), l[0].number, l[0].size), (1, n(2), sizes[1]));
    let ClientEvent::Uidl(u) = &ev[3] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        u.iter().map(|e| e.uid.as_str()).collect::<Vec<_>>(),
        ["uid-1", "uid-2", "uid-3"]
    );
    assert_eq!(
        ev[4..12],
        [
            ClientEvent::MessageStart { number: n(1) },
            ClientEvent::BodyChunk(normalize_crlf(MESSAGES[0].1).into_owned()),
            ClientEvent::MessageEnd { number: n(1) },
            ClientEvent::MessageStart { number: n(2) },
            ClientEvent::BodyChunk(b"Subject: two\r\n\r\nline 1\r\n".to_vec()),
            ClientEvent::MessageEnd { number: n(2) },
            ClientEvent::Deleted { number: n(1) },
            ClientEvent::Noop,
        ]
    );
    assert_eq!(ev[12..], [ClientEvent::Closed]);
}

#[test]
fn against_server_one_at_a_time() {
    let (mut c, mut s) = pair(false);
    c.login_user_pass("joe", "secret").unwrap();
    whole_session(&mut c);
    let ev = pump(&mut c, &mut s, Script::default());
    assert!(matches!(
        ev[0],
        ClientEvent::Greeting {
            apop_timestamp: None,
            ..
        }
    ));
    assert_eq!(ev[1], ClientEvent::LoggedIn);
    check_whole_session(&ev[2..]);
    assert!(c.is_closed() && s.is_closed());
}

#[test]
fn against_server_pipelined_stls_apop_and_sasl() {
    // CAPA (PIPELINING), STLS, CAPA again, APOP, everything pipelined.
    let (mut c, mut s) = pair(true);
    c.capa().unwrap();
    c.stls().unwrap();
    let ev = pump(&mut c, &mut s, Script::default());
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(ev[2], ClientEvent::TlsReady);
    assert!(c.is_tls() && s.is_tls());
    c.capa().unwrap();
    c.login_apop("joe", "secret").unwrap();
    whole_session(&mut c);
    let ev = pump(&mut c, &mut s, Script::default());
    assert!(
        matches!(&ev[0], ClientEvent::Capabilities(caps) if caps.contains(&Capability::Pipelining))
    );
    assert_eq!(ev[1], ClientEvent::LoggedIn);
    check_whole_session(&ev[2..]);

    for (plain, ir) in [(true, true), (true, false), (false, true), (false, false)] {
        let mut options = ClientOptions::default();
        options.sasl_initial_response = ir;
        let mut c = ClientSession::new(options);
        let mut s = ServerSession::new(ServerConfig::default()).unwrap();
        c.capa().unwrap();
        if plain {
            c.login_sasl_plain(None, "joe", "secret").unwrap();
        } else {
            c.login_sasl_login("joe", "secret").unwrap();
        }
        whole_session(&mut c);
        let ev = pump(&mut c, &mut s, Script::default());
        assert_eq!(ev[2], ClientEvent::LoggedIn, "{plain} {ir}");
        check_whole_session(&ev[3..]);
    }
}

#[test]
fn against_server_errors_at_every_step() {
    // Wrong password: [AUTH]; the queued commands are refused in turn.
    let (mut c, mut s) = pair(false);
    c.login_user_pass("joe", "wrong").unwrap();
    c.stat().unwrap();
    let ev = pump(&mut c, &mut s, Script::default());
    assert!(matches!(
        &ev[1],
        ClientEvent::Error {
            command: CommandKind::Pass,
            code: Some(ResponseCode::Auth),
            ..
        }
    ));
    assert!(matches!(
        &ev[2],
        ClientEvent::Error {
            command: CommandKind::Stat,
            ..
        }
    ));
    assert!(!c.is_logged_in());

    // Each refusal the server has, with its response code.
    let cases: [(Script, CommandKind, ResponseCode<'static>); 5] = [
        (
            Script {
                login: Some(AuthFailure::InUse),
                ..Script::default()
            },
            CommandKind::Pass,
            ResponseCode::InUse,
        ),
        (
            Script {
                login: Some(AuthFailure::Temporary),
                ..Script::default()
            },
            CommandKind::Pass,
            ResponseCode::SysTemp,
        ),
        (
            Script {
                login: Some(AuthFailure::Permanent),
                ..Script::default()
            },
            CommandKind::Pass,
            ResponseCode::SysPerm,
        ),
        (
            Script {
                login: Some(AuthFailure::LoginDelay),
                ..Script::default()
            },
            CommandKind::Pass,
            ResponseCode::LoginDelay,
        ),
        (
            Script {
                maildrop: Some(MaildropFailure::InUse),
                ..Script::default()
            },
            CommandKind::Pass,
            ResponseCode::InUse,
        ),
    ];
    for (script, command, code) in cases {
        let (mut c, mut s) = pair(false);
        c.login_user_pass("joe", "secret").unwrap();
        let ev = pump(&mut c, &mut s, script);
        assert!(
            matches!(&ev[1], ClientEvent::Error { command: k, code: Some(got), .. } if *k == command && *got == code),
            "{ev:?}"
        );
    }

    // Errors in the TRANSACTION state: no such message, deleted message,
    // and a failed commit at QUIT.
    let (mut c, mut s) = pair(true);
    c.login_apop("joe", "secret").unwrap();
    c.retr(9).unwrap();
    c.dele(1).unwrap();
    c.retr(1).unwrap();
    c.top(1, 0).unwrap();
    c.list(Some(1)).unwrap();
    c.uidl(Some(7)).unwrap();
    c.dele(1).unwrap();
    c.rset().unwrap();
    c.dele(2).unwrap();
    c.quit().unwrap();
    let ev = pump(
        &mut c,
        &mut s,
        Script {
            commit_fails: true,
            ..Script::default()
        },
    );
    let kinds: Vec<_> = ev
        .iter()
        .map(|e| match e {
            ClientEvent::Error { command, .. } => format!("err {}", command.as_str()),
            other => format!("{other:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap()
                .to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Greeting", "LoggedIn", "err RETR", "Deleted", "err RETR", "err TOP", "err LIST",
            "err UIDL", "err DELE", "Reset", "Deleted", "err QUIT", "Closed"
        ]
    );
    assert!(c.is_closed() && s.is_closed());
}

// ---- chunking invariance ----

/// What a pipelined server sends for a session with everything in it.
fn server_transcript() -> Vec<u8> {
    let mut c = queued_client();
    let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    // Record what the server sends while the sessions talk.
    let mut wire = Vec::new();
    loop {
        let mut progress = false;
        while let Some(ev) = s.next_event() {
            progress = true;
            match ev {
                Event::Login(_) => s.accept_login().unwrap(),
                Event::OpenMaildrop { .. } => s
                    .maildrop_opened(
                        MESSAGES
                            .iter()
                            .map(|(u, m)| {
                                MessageInfo::new(crlf_len(m), Uid::try_from(u.to_string()).unwrap())
                            })
                            .collect(),
                    )
                    .unwrap(),
                Event::Retrieve(req) => {
                    s.message_chunk(MESSAGES[req.index].1).unwrap();
                    s.message_end().unwrap();
                }
                Event::Commit { .. } => s.commit_done(Ok(())).unwrap(),
                other => panic!("{other:?}"),
            }
        }
        let out = s.take_output();
        if !out.is_empty() {
            progress = true;
            wire.extend_from_slice(&out);
            c.feed(&out);
        }
        while c.next_event().is_some() {
            progress = true;
        }
        let out = c.take_output();
        if !out.is_empty() {
            progress = true;
            s.feed(&out);
        }
        if !progress {
            break;
        }
    }
    wire
}

fn queued_client() -> ClientSession {
    let mut c = ClientSession::new(ClientOptions::default());
    c.capa().unwrap();
    c.login_user_pass("joe", "secret").unwrap();
    whole_session(&mut c);
    c
}

/// Feeds `wire` in pieces cut at `cuts`; returns the events (chunks merged)
/// and everything the client sent.
fn run_split(wire: &[u8], cuts: &[usize]) -> (Vec<ClientEvent>, Vec<u8>) {
    let mut c = queued_client();
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|&x| x % (wire.len() + 1)).collect();
    cuts.push(0);
    cuts.push(wire.len());
    cuts.sort_unstable();
    for w in cuts.windows(2) {
        c.feed(&wire[w[0]..w[1]]);
        for e in drain(&mut c) {
            match (e, events.last_mut()) {
                (ClientEvent::BodyChunk(more), Some(ClientEvent::BodyChunk(prev))) => {
                    prev.extend_from_slice(&more);
                }
                (e, _) => events.push(e),
            }
        }
        out.extend_from_slice(&c.take_output());
    }
    (events, out)
}

#[test]
fn transcript_gives_the_whole_session() {
    let wire = server_transcript();
    let (ev, out) = run_split(&wire, &[]);
    assert!(matches!(ev[1], ClientEvent::Capabilities(_)));
    assert_eq!(ev[2], ClientEvent::LoggedIn);
    check_whole_session(&ev[3..]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "CAPA\r\nUSER joe\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nRETR 1\r\n\
         TOP 2 1\r\nDELE 1\r\nNOOP\r\nQUIT\r\n"
    );
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let wire = server_transcript();
        let whole = run_split(&wire, &[]);
        let split = run_split(&wire, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn arbitrary_server_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = b"+OK <a@b>\r\n".to_vec();
        wire.extend_from_slice(&data);
        let _ = run_split(&wire, &cuts);
    }
}

/// A login the crate's own server can take: `USER`, `PASS` and `APOP` lines
/// longer than 255 octets (RFC 2449 section 4) are refused before anything is
/// sent (before, a 249-octet user name went out and the server answered
/// "Command line too long").
#[test]
fn login_lines_fit_the_servers_command_line() {
    let greeted = || {
        let mut c = ClientSession::new(ClientOptions::default());
        feed(&mut c, b"+OK ready <1.2@host>\r\n");
        c
    };
    // "USER " + 248 + CRLF is 255 octets: sent, and taken by the server session.
    let user = "u".repeat(248);
    let mut c = greeted();
    c.login_user_pass(&user, "secret").unwrap();
    let line = c.take_output();
    assert_eq!(line.len(), 255);
    let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    s.take_output();
    s.feed(&line);
    assert_eq!(s.next_event(), None);
    let reply = s.take_output();
    assert!(
        reply.starts_with(b"+OK"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    for (u, p) in [
        ("u".repeat(249), "secret".to_string()),
        ("joe".into(), "p".repeat(250)),
    ] {
        let mut c = greeted();
        assert!(
            c.login_user_pass(&u, &p).is_err(),
            "{} {}",
            u.len(),
            p.len()
        );
        assert!(c.take_output().is_empty());
    }
    // "APOP " + name + " " + 32 digits + CRLF.
    let mut c = greeted();
    assert!(c.login_apop(&"a".repeat(216), "secret").is_err());
    assert!(c.take_output().is_empty());
    let mut c = greeted();
    c.login_apop(&"a".repeat(215), "secret").unwrap();
    assert_eq!(c.take_output().len(), 255);
}
