//! RFC 5321 appendix D and RFC 2920 section 3 transcripts, byte for byte, on both sides:
//! the server session produces exactly the server lines, and the client-side codec
//! (command encoder, reply parser) reproduces every line.

use std::borrow::Cow;

use mailbag_smtp_proto::codec::{ReplyParser, parse_command};
use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::{Reply, ReplyCode};

/// One exchange: what the client sends, what the server must answer (all of it).
type Step = (&'static [u8], &'static [u8]);

fn reply(code: u16, lines: &[&str]) -> Reply<'static> {
    Reply::multiline(
        ReplyCode::try_from(code).unwrap(),
        None,
        lines.iter().map(|l| Cow::Owned(l.to_string())).collect(),
    )
    .unwrap()
}

/// Runs the steps; `answer` gives the reply for events that need one (`None` = accept).
/// With `bytewise`, the client input is fed one octet at a time.
fn run(
    cfg: ServerConfig,
    greeting: &[u8],
    steps: &[Step],
    bytewise: bool,
    mut answer: impl FnMut(&Event<'_>) -> Option<Reply<'static>>,
) -> Vec<u8> {
    let mut s = ServerSession::new(cfg).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&s.take_output()),
        String::from_utf8_lossy(greeting)
    );
    let mut body = Vec::new();
    for (client, server) in steps {
        let chunks: Vec<&[u8]> = if bytewise {
            client.chunks(1).collect()
        } else {
            vec![client]
        };
        for c in chunks {
            s.feed(c);
            while let Some(ev) = s.next_event() {
                match ev {
                    Event::BodyChunk(b) => body.extend_from_slice(b),
                    Event::Quit
                    | Event::Reset
                    | Event::MessageAborted(_)
                    | Event::AuthCancelled => {}
                    ev => match answer(&ev) {
                        None => s.accept(),
                        Some(r) => s.respond(r),
                    },
                }
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&s.take_output()),
            String::from_utf8_lossy(server),
            "after client sent {:?}",
            String::from_utf8_lossy(client)
        );
    }
    assert!(s.is_closed());
    body
}

fn foo_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.hostname = "foo.com".into();
    c.greeting = "Simple Mail Transfer Service Ready".into();
    c.enhanced_status_codes = false;
    c.quit_text = "foo.com Service closing transmission channel".into();
    c
}

const GREET_FOO: &[u8] = b"220 foo.com Simple Mail Transfer Service Ready\r\n";
const EHLO_FOO: &[u8] =
    b"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n";

fn foo_answers(ev: &Event<'_>) -> Option<Reply<'static>> {
    match ev {
        Event::Hello { .. } => Some(reply(
            250,
            &["foo.com greets bar.com", "8BITMIME", "SIZE", "DSN", "HELP"],
        )),
        Event::MailFrom { .. } | Event::MessageComplete { .. } => Some(reply(250, &["OK"])),
        Event::RcptTo { to, .. } => {
            let mut w = Vec::new();
            to.encode(&mut w);
            if w == b"<Green@foo.com>" {
                Some(reply(550, &["No such user here"]))
            } else {
                Some(reply(250, &["OK"]))
            }
        }
        Event::Vrfy { target, .. } => {
            assert_eq!(target.as_str(), "Crispin");
            Some(reply(250, &["Mark Crispin <Admin.MRC@foo.com>"]))
        }
        _ => None,
    }
}

const D1: &[Step] = &[
    (b"EHLO bar.com\r\n", EHLO_FOO),
    (b"MAIL FROM:<Smith@bar.com>\r\n", b"250 OK\r\n"),
    (b"RCPT TO:<Jones@foo.com>\r\n", b"250 OK\r\n"),
    (b"RCPT TO:<Green@foo.com>\r\n", b"550 No such user here\r\n"),
    (b"RCPT TO:<Brown@foo.com>\r\n", b"250 OK\r\n"),
    (
        b"DATA\r\n",
        b"354 Start mail input; end with <CRLF>.<CRLF>\r\n",
    ),
    (
        b"Blah blah blah...\r\n...etc. etc. etc.\r\n.\r\n",
        b"250 OK\r\n",
    ),
    (
        b"QUIT\r\n",
        b"221 foo.com Service closing transmission channel\r\n",
    ),
];

#[test]
fn rfc5321_d1_typical_transaction() {
    for bytewise in [false, true] {
        let body = run(foo_config(), GREET_FOO, D1, bytewise, foo_answers);
        // The line "...etc." as sent starts with a dot: one is removed (section 4.5.2).
        assert_eq!(body, b"Blah blah blah...\r\n..etc. etc. etc.\r\n");
    }
}

const D2: &[Step] = &[
    (b"EHLO bar.com\r\n", EHLO_FOO),
    (b"MAIL FROM:<Smith@bar.com>\r\n", b"250 OK\r\n"),
    (b"RCPT TO:<Jones@foo.com>\r\n", b"250 OK\r\n"),
    (b"RCPT TO:<Green@foo.com>\r\n", b"550 No such user here\r\n"),
    (b"RSET\r\n", b"250 OK\r\n"),
    (
        b"QUIT\r\n",
        b"221 foo.com Service closing transmission channel\r\n",
    ),
];

#[test]
fn rfc5321_d2_aborted_transaction() {
    for bytewise in [false, true] {
        let body = run(foo_config(), GREET_FOO, D2, bytewise, foo_answers);
        assert!(body.is_empty());
    }
}

const D3_STEP1: &[Step] = &[
    (b"EHLO bar.com\r\n", EHLO_FOO),
    (b"MAIL FROM:<JQP@bar.com>\r\n", b"250 OK\r\n"),
    (b"RCPT TO:<@foo.com:Jones@XYZ.COM>\r\n", b"250 OK\r\n"),
    (
        b"DATA\r\n",
        b"354 Start mail input; end with <CRLF>.<CRLF>\r\n",
    ),
    (
        b"Date: Thu, 21 May 1998 05:33:29 -0700\r\nFrom: John Q. Public <JQP@bar.com>\r\n\
Subject: The Next Meeting of the Board\r\nTo: Jones@xyz.com\r\n\r\nBill:\r\n\
The next meeting of the board of directors will be\r\non Tuesday.\r\n\
John.\r\n.\r\n",
        b"250 OK\r\n",
    ),
    (
        b"QUIT\r\n",
        b"221 foo.com Service closing transmission channel\r\n",
    ),
];

#[test]
fn rfc5321_d3_relayed_mail_step1() {
    let mut final_domain = None;
    let body = run(foo_config(), GREET_FOO, D3_STEP1, false, |ev| {
        if let Event::RcptTo { to, .. } = ev {
            // The source route is ignored: the destination is XYZ.COM.
            final_domain = to.final_domain().map(|d| d.into_owned());
        }
        foo_answers(ev)
    });
    assert_eq!(final_domain.as_deref(), Some("xyz.com"));
    assert!(body.starts_with(b"Date: Thu, 21 May 1998"));
    assert!(body.ends_with(b"John.\r\n"));
}

#[test]
fn rfc5321_d3_relayed_mail_step2() {
    let mut cfg = foo_config();
    cfg.hostname = "xyz.com".into();
    cfg.quit_text = "xyz.com Service closing transmission channel".into();
    let steps: &[Step] = &[
        (b"EHLO foo.com\r\n", b"250 xyz.com is on the air\r\n"),
        (b"MAIL FROM:<@foo.com:JQP@bar.com>\r\n", b"250 OK\r\n"),
        (b"RCPT TO:<Jones@XYZ.COM>\r\n", b"250 OK\r\n"),
        (b"DATA\r\n", b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
        (b"Received: from bar.com by foo.com ; Thu, 21 May 1998\r\n    05:33:29 -0700\r\n\r\nBill:\r\n.\r\n", b"250 OK\r\n"),
        (b"QUIT\r\n", b"221 xyz.com Service closing transmission channel\r\n"),
    ];
    run(
        cfg,
        b"220 xyz.com Simple Mail Transfer Service Ready\r\n",
        steps,
        true,
        |ev| match ev {
            Event::Hello { .. } => Some(reply(250, &["xyz.com is on the air"])),
            Event::MailFrom { from, .. } => {
                let mut w = Vec::new();
                from.encode(&mut w);
                assert_eq!(w, b"<@foo.com:JQP@bar.com>");
                Some(reply(250, &["OK"]))
            }
            ev => foo_answers(ev),
        },
    );
}

const EHLO_FOO_VRFY: &[u8] = b"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250-VRFY\r\n250 HELP\r\n";

const D4: &[Step] = &[
    (b"EHLO bar.com\r\n", EHLO_FOO_VRFY),
    (
        b"VRFY Crispin\r\n",
        b"250 Mark Crispin <Admin.MRC@foo.com>\r\n",
    ),
    (b"MAIL FROM:<EAK@bar.com>\r\n", b"250 OK\r\n"),
    (b"RCPT TO:<Admin.MRC@foo.com>\r\n", b"250 OK\r\n"),
    (
        b"DATA\r\n",
        b"354 Start mail input; end with <CRLF>.<CRLF>\r\n",
    ),
    (
        b"Blah blah blah...\r\n...etc. etc. etc.\r\n.\r\n",
        b"250 OK\r\n",
    ),
    (
        b"QUIT\r\n",
        b"221 foo.com Service closing transmission channel\r\n",
    ),
];

#[test]
fn rfc5321_d4_verifying_and_sending() {
    run(foo_config(), GREET_FOO, D4, true, |ev| match ev {
        Event::Hello { .. } => Some(reply(
            250,
            &[
                "foo.com greets bar.com",
                "8BITMIME",
                "SIZE",
                "DSN",
                "VRFY",
                "HELP",
            ],
        )),
        ev => foo_answers(ev),
    });
}

// ---------------------------------------------------------------- RFC 2920

fn inno_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.hostname = "innosoft.com".into();
    c.greeting = "SMTP service ready".into();
    c.enhanced_status_codes = false;
    c.quit_text = "goodbye".into();
    c
}

const GREET_INNO: &[u8] = b"220 innosoft.com SMTP service ready\r\n";

fn inno_answers(
    rejected: &'static [&'static str],
) -> impl FnMut(&Event<'_>) -> Option<Reply<'static>> {
    move |ev| match ev {
        Event::Hello { .. } => Some(reply(250, &["innosoft.com", "PIPELINING"])),
        Event::MailFrom { from, .. } => {
            let mut w = Vec::new();
            from.encode(&mut w);
            Some(reply(
                250,
                &[&format!("sender {} OK", String::from_utf8(w).unwrap())],
            ))
        }
        Event::RcptTo { to, .. } => {
            let mut w = Vec::new();
            to.encode(&mut w);
            let a = String::from_utf8(w).unwrap();
            if rejected.contains(&a.as_str()) {
                Some(reply(550, &[&format!("remote mail to {a} not allowed")]))
            } else {
                Some(reply(250, &[&format!("recipient {a} OK")]))
            }
        }
        Event::DataStart => Some(reply(
            354,
            &["enter mail, end with line containing only \".\""],
        )),
        Event::MessageComplete { .. } => Some(reply(250, &["message sent"])),
        _ => None,
    }
}

#[test]
fn rfc2920_3_1_pipelined_transaction() {
    let steps: &[Step] = &[
        (
            b"EHLO dbc.mtview.ca.us\r\n",
            b"250-innosoft.com\r\n250 PIPELINING\r\n",
        ),
        (
            b"MAIL FROM:<mrose@dbc.mtview.ca.us>\r\nRCPT TO:<ned@innosoft.com>\r\n\
RCPT TO:<dan@innosoft.com>\r\nRCPT TO:<kvc@innosoft.com>\r\nDATA\r\n",
            b"250 sender <mrose@dbc.mtview.ca.us> OK\r\n250 recipient <ned@innosoft.com> OK\r\n\
250 recipient <dan@innosoft.com> OK\r\n250 recipient <kvc@innosoft.com> OK\r\n\
354 enter mail, end with line containing only \".\"\r\n",
        ),
        (
            b"Hi.\r\n.\r\nQUIT\r\n",
            b"250 message sent\r\n221 goodbye\r\n",
        ),
    ];
    for bytewise in [false, true] {
        let body = run(
            inno_config(),
            GREET_INNO,
            steps,
            bytewise,
            inno_answers(&[]),
        );
        assert_eq!(body, b"Hi.\r\n");
    }
}

#[test]
fn rfc2920_3_2_pipelined_with_rejected_recipient() {
    let steps: &[Step] = &[
        (b"EHLO dbc.mtview.ca.us\r\n", b"250-innosoft.com\r\n250 PIPELINING\r\n"),
        (
            b"MAIL FROM:<mrose@dbc.mtview.ca.us>\r\nRCPT TO:<ned@innosoft.com>\r\n\
RCPT TO:<dan@innosoft.com>\r\nRCPT TO:<kvc@innosoft.com>\r\nDATA\r\n",
            b"250 sender <mrose@dbc.mtview.ca.us> OK\r\n550 remote mail to <ned@innosoft.com> not allowed\r\n\
250 recipient <dan@innosoft.com> OK\r\n250 recipient <kvc@innosoft.com> OK\r\n\
354 enter mail, end with line containing only \".\"\r\n",
        ),
        (b"Hi.\r\n.\r\nQUIT\r\n", b"250 message sent\r\n221 goodbye\r\n"),
    ];
    for bytewise in [false, true] {
        run(
            inno_config(),
            GREET_INNO,
            steps,
            bytewise,
            inno_answers(&["<ned@innosoft.com>"]),
        );
    }
}

#[test]
fn rfc2920_3_3_pipelined_all_recipients_rejected() {
    let steps: &[Step] = &[
        (b"EHLO dbc.mtview.ca.us\r\n", b"250-innosoft.com\r\n250 PIPELINING\r\n"),
        (
            b"MAIL FROM:<mrose@dbc.mtview.ca.us>\r\nRCPT TO:<ned@innosoft.com>\r\n\
RCPT TO:<dan@innosoft.com>\r\nDATA\r\n",
            b"250 sender <mrose@dbc.mtview.ca.us> OK\r\n550 remote mail to <ned@innosoft.com> not allowed\r\n\
550 remote mail to <dan@innosoft.com> not allowed\r\n554 no valid recipients given\r\n",
        ),
        (b"QUIT\r\n", b"221 goodbye\r\n"),
    ];
    for bytewise in [false, true] {
        run(
            inno_config(),
            GREET_INNO,
            steps,
            bytewise,
            inno_answers(&["<ned@innosoft.com>", "<dan@innosoft.com>"]),
        );
    }
}

// ---------------------------------------------------------------- client side

/// Every client command line of the transcripts parses and re-encodes to the same octets;
/// every server reply parses and re-encodes to the same octets.
#[test]
fn client_side_codec_reproduces_transcripts() {
    let all: Vec<&[Step]> = vec![D1, D2, D3_STEP1, D4];
    let parser = ReplyParser::default();
    for steps in all {
        for (client, server) in steps {
            if !client.ends_with(b".\r\n") {
                let cmd = parse_command(client).unwrap();
                let mut w = Vec::new();
                cmd.encode(&mut w);
                assert_eq!(&w, client);
            }
            let mut rest: &[u8] = server;
            while !rest.is_empty() {
                let (r, n) = parser.parse(rest).unwrap().unwrap();
                let mut w = Vec::new();
                r.encode(&mut w);
                assert_eq!(w, rest[..n].to_vec());
                rest = &rest[n..];
            }
        }
    }
    let (greeting, _) = parser.parse(GREET_FOO).unwrap().unwrap();
    assert_eq!(greeting.code(), ReplyCode::READY);
}
