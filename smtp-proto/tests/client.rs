//! The client session against the crate's own server session, both sans-IO and in memory:
//! pipelined and not, 4xx/5xx at each step, HELO fallback, STARTTLS, DSN and other
//! parameters, several transactions per connection; and a proptest that the chunking of the
//! server's replies does not change what the client does.

use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{
    ClientEvent, ClientOptions, ClientSession, Recipient, Stage, Status, Transaction,
};
use mailbag_smtp_proto::session::{self, HelloKind, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::{
    Body, EnhancedStatusCode, Envid, HeloName, Notify, Orcpt, Reply, ReplyCode, Ret, XText,
};
use proptest::prelude::*;

/// What the scripted server decides for one event: `None` = accept.
type Decide = dyn FnMut(&session::Event<'_>) -> Option<Reply<'static>>;

fn reply(code: u16, esc: (u8, u16, u16), text: &'static str) -> Reply<'static> {
    let esc = EnhancedStatusCode::new(esc.0, esc.1, esc.2).expect("valid");
    Reply::new(ReplyCode::try_from(code).expect("valid"), Some(esc), text).expect("valid")
}

fn txn(from: &str, to: &[&str]) -> Transaction<'static> {
    let (from, _) = parse_reverse_path(from.as_bytes()).expect("valid");
    let mut t = Transaction::new(from.into_owned());
    for r in to {
        let (p, _) = parse_forward_path(r.as_bytes()).expect("valid");
        t = t.recipient(p.into_owned());
    }
    t
}

/// What the server saw: accepted messages (from, recipients, body).
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    messages: Vec<(String, Vec<String>, Vec<u8>)>,
    mail_lines: Vec<String>,
    rcpt_lines: Vec<String>,
}

#[derive(Debug, Default)]
struct Run {
    events: Vec<ClientEvent>,
    seen: Seen,
    /// Client → server, one entry per flush of the client's output.
    client_flushes: Vec<Vec<u8>>,
    /// Server → client, all bytes.
    server_wire: Vec<u8>,
}

/// Runs `txns` (each with its body) over one connection, then QUIT.
fn run(
    cfg: ServerConfig,
    opts: ClientOptions,
    txns: &[(Transaction<'_>, &[u8])],
    decide: &mut Decide,
) -> Run {
    let mut server = ServerSession::new(cfg).unwrap();
    let mut client = ClientSession::new(HeloName::try_from("client.example").expect("valid"), opts);
    let mut out = Run::default();
    let mut next_txn = 0;
    let mut cur: Option<(String, Vec<String>)> = None;
    let mut body = Vec::new();
    for _ in 0..200 {
        // Server → client.
        let s_out = server.take_output();
        out.server_wire.extend_from_slice(&s_out);
        client.feed(&s_out);
        while let Some(ev) = client.next_event() {
            match &ev {
                ClientEvent::Ready => match txns.get(next_txn) {
                    Some((t, _)) => {
                        client.send_mail(t).expect("ready");
                        next_txn += 1;
                    }
                    None => client.quit(),
                },
                ClientEvent::SendBody => {
                    let b = txns[next_txn - 1].1;
                    // Stream in small pieces, as a caller reading a file would.
                    for piece in b.chunks(7) {
                        client.send_body(piece).expect("body");
                    }
                    client.end_body().expect("body");
                }
                ClientEvent::StartTls => {
                    // The in-memory "handshake".
                    assert!(server.awaiting_tls());
                    server.tls_established();
                    client.tls_established();
                }
                _ => {}
            }
            out.events.push(ev);
        }
        // Client → server.
        let c_out = client.take_output();
        if !c_out.is_empty() {
            out.client_flushes.push(c_out.clone());
        }
        server.feed(&c_out);
        while let Some(ev) = server.next_event() {
            match &ev {
                session::Event::MailFrom { from, .. } => {
                    let mut w = Vec::new();
                    from.encode(&mut w);
                    cur = Some((String::from_utf8(w).expect("utf8"), Vec::new()));
                    body.clear();
                }
                session::Event::RcptTo { .. } => {}
                session::Event::BodyChunk(c) => body.extend_from_slice(c),
                _ => {}
            }
            let info = matches!(
                ev,
                session::Event::BodyChunk(_)
                    | session::Event::Quit
                    | session::Event::Reset
                    | session::Event::MessageAborted(_)
            );
            let rcpt = match &ev {
                session::Event::RcptTo { to, .. } => {
                    let mut w = Vec::new();
                    to.encode(&mut w);
                    Some(String::from_utf8(w).expect("utf8"))
                }
                _ => None,
            };
            let complete = matches!(ev, session::Event::MessageComplete { .. });
            let decision = decide(&ev);
            if info {
                continue;
            }
            match decision {
                None => {
                    if let (Some(r), Some(c)) = (rcpt, cur.as_mut()) {
                        c.1.push(r);
                    }
                    if complete && let Some((f, r)) = cur.take() {
                        out.seen.messages.push((f, r, std::mem::take(&mut body)));
                    }
                    server.accept();
                }
                Some(r) => server.reject(r),
            }
        }
        if client.is_closed() && server.output().is_empty() && client.output().is_empty() {
            break;
        }
    }
    for f in &out.client_flushes {
        for line in String::from_utf8_lossy(f).split("\r\n") {
            if line.starts_with("MAIL ") {
                out.seen.mail_lines.push(line.to_string());
            } else if line.starts_with("RCPT ") {
                out.seen.rcpt_lines.push(line.to_string());
            }
        }
    }
    assert!(client.is_closed(), "client not closed: {:?}", out.events);
    out
}

fn accept_all() -> Box<Decide> {
    Box::new(|_| None)
}

fn results(r: &Run) -> Vec<Vec<Status>> {
    r.events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::TransactionComplete(t) => {
                Some(t.recipients.iter().map(|o| o.status()).collect())
            }
            _ => None,
        })
        .collect()
}

const BODY: &[u8] = b"Subject: test\r\n\r\n.leading dot\r\nline\r\n..two\r\n";

#[test]
fn pipelined_transaction_byte_for_byte() {
    let t = txn(
        "<alice@example.org>",
        &["<bob@example.net>", "<carol@example.net>"],
    );
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &[(t, BODY)],
        &mut *accept_all(),
    );
    let wire: Vec<String> = r
        .client_flushes
        .iter()
        .map(|f| String::from_utf8(f.clone()).expect("utf8"))
        .collect();
    assert_eq!(
        wire,
        [
            "EHLO client.example\r\n",
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n\
             RCPT TO:<carol@example.net>\r\nDATA\r\n",
            "Subject: test\r\n\r\n..leading dot\r\nline\r\n...two\r\n.\r\n",
            "QUIT\r\n",
        ]
    );
    assert_eq!(
        String::from_utf8(r.server_wire.clone()).expect("utf8"),
        "220 localhost ESMTP Mailbag\r\n250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
         250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 HELP\r\n\
         250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n\
         354 Start mail input; end with <CRLF>.<CRLF>\r\n250 2.0.0 Message accepted\r\n\
         221 2.0.0 Bye\r\n"
    );
    assert_eq!(
        r.seen.messages,
        [(
            "<alice@example.org>".to_string(),
            vec![
                "<bob@example.net>".to_string(),
                "<carol@example.net>".to_string()
            ],
            BODY.to_vec()
        )]
    );
    assert_eq!(results(&r), [vec![Status::Accepted, Status::Accepted]]);
    assert!(r.events.last() == Some(&ClientEvent::Closed { error: None }));
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    let mut cfg = ServerConfig::default();
    cfg.pipelining = false;
    let t = txn(
        "<alice@example.org>",
        &["<bob@example.net>", "<carol@example.net>"],
    );
    let r = run(
        cfg,
        ClientOptions::default(),
        &[(t, BODY)],
        &mut *accept_all(),
    );
    for f in &r.client_flushes {
        let lines = f.windows(2).filter(|w| w == b"\r\n").count();
        let is_body = f.starts_with(b"Subject");
        assert!(is_body || lines == 1, "{:?}", String::from_utf8_lossy(f));
    }
    assert_eq!(r.seen.messages.len(), 1);
    assert_eq!(r.seen.messages[0].2, BODY);
    assert_eq!(results(&r), [vec![Status::Accepted, Status::Accepted]]);

    // The same with pipelining switched off on the client side.
    let mut opts = ClientOptions::default();
    opts.pipelining = false;
    let t = txn("<alice@example.org>", &["<bob@example.net>"]);
    let r2 = run(
        ServerConfig::default(),
        opts,
        &[(t, BODY)],
        &mut *accept_all(),
    );
    assert!(
        r2.client_flushes.iter().all(
            |f| f.starts_with(b"Subject") || f.windows(2).filter(|w| w == b"\r\n").count() == 1
        )
    );
    assert_eq!(results(&r2), [vec![Status::Accepted]]);
}

/// A rejection at each step, pipelined and not; a second transaction on the same connection
/// always succeeds (so the RSET after a failure worked).
#[test]
fn failures_at_each_step() {
    #[derive(Clone, Copy, Debug)]
    enum At {
        Mail(u16),
        Rcpt2(u16),
        AllRcpt(u16),
        Data(u16),
        Final(u16),
    }
    let cases = [
        (At::Mail(451), vec![Status::Temporary, Status::Temporary]),
        (At::Mail(550), vec![Status::Permanent, Status::Permanent]),
        (At::Rcpt2(450), vec![Status::Accepted, Status::Temporary]),
        (At::Rcpt2(550), vec![Status::Accepted, Status::Permanent]),
        (At::AllRcpt(550), vec![Status::Permanent, Status::Permanent]),
        (At::AllRcpt(452), vec![Status::Temporary, Status::Temporary]),
        (At::Data(451), vec![Status::Temporary, Status::Temporary]),
        (At::Data(554), vec![Status::Permanent, Status::Permanent]),
        (At::Final(452), vec![Status::Temporary, Status::Temporary]),
        (At::Final(552), vec![Status::Permanent, Status::Permanent]),
    ];
    for pipelining in [true, false] {
        for (at, expected) in &cases {
            let at = *at;
            let mut first = true;
            let mut rcpts = 0;
            let mut decide = move |ev: &session::Event<'_>| -> Option<Reply<'static>> {
                let class = |c: u16| if c >= 500 { 5 } else { 4 };
                let rej = |c: u16| reply(c, (class(c), 0, 0), "no");
                if !first {
                    return None;
                }
                match (ev, at) {
                    (session::Event::MailFrom { .. }, At::Mail(c)) => Some(rej(c)),
                    (session::Event::RcptTo { .. }, At::Rcpt2(c)) => {
                        rcpts += 1;
                        (rcpts == 2).then(|| rej(c))
                    }
                    (session::Event::RcptTo { .. }, At::AllRcpt(c)) => Some(rej(c)),
                    (session::Event::DataStart, At::Data(c)) => {
                        first = false;
                        Some(rej(c))
                    }
                    (session::Event::DataStart, _) => None,
                    (session::Event::MessageComplete { .. }, At::Final(c)) => {
                        first = false;
                        Some(rej(c))
                    }
                    (session::Event::MessageComplete { .. }, _) => {
                        first = false;
                        None
                    }
                    (session::Event::Reset, _) => {
                        first = false;
                        None
                    }
                    _ => None,
                }
            };
            let mut cfg = ServerConfig::default();
            cfg.pipelining = pipelining;
            let t1 = txn("<a@example.org>", &["<b@example.net>", "<c@example.net>"]);
            let t2 = txn("<a@example.org>", &["<d@example.net>"]);
            let r = run(
                cfg,
                ClientOptions::default(),
                &[(t1, BODY), (t2, b"x\r\n")],
                &mut decide,
            );
            let res = results(&r);
            assert_eq!(res[0], *expected, "{at:?} pipelining={pipelining}");
            assert_eq!(res[1], [Status::Accepted], "{at:?} pipelining={pipelining}");
            // Only the second message, and for Rcpt2 also the first (to its first
            // recipient), reached the server.
            let delivered: Vec<&Vec<String>> = r.seen.messages.iter().map(|m| &m.1).collect();
            if let At::Rcpt2(_) = at {
                assert_eq!(delivered.len(), 2);
                assert_eq!(delivered[0], &["<b@example.net>".to_string()]);
            } else {
                assert_eq!(delivered.len(), 1, "{at:?} pipelining={pipelining}");
            }
            assert_eq!(
                r.seen.messages.last().map(|m| m.1.clone()),
                Some(vec!["<d@example.net>".to_string()])
            );
            // A failed transaction is followed by RSET before the next MAIL.
            let wire: String = r
                .client_flushes
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            // (After the final reply the transaction is over: no RSET is needed.)
            match at {
                At::Final(_) | At::Rcpt2(_) => assert!(!wire.contains("RSET"), "{wire}"),
                _ => assert!(wire.contains("RSET\r\nMAIL"), "{wire}"),
            }
            // Without pipelining, nothing is sent after a MAIL failure, and DATA is not sent
            // when every recipient failed.
            if !pipelining {
                let first_txn = wire.split("RSET").next().unwrap_or("");
                match at {
                    At::Mail(_) => assert!(!first_txn.contains("RCPT"), "{wire}"),
                    At::AllRcpt(_) => assert!(!first_txn.contains("DATA"), "{wire}"),
                    _ => {}
                }
            }
            // The per-recipient RCPT events: one per recipient unless MAIL failed.
            let rcpt_events = r
                .events
                .iter()
                .filter(|e| matches!(e, ClientEvent::RecipientReply { .. }))
                .count();
            let want = match at {
                At::Mail(_) => 1,
                _ => 3,
            };
            assert_eq!(rcpt_events, want, "{at:?} pipelining={pipelining}");
        }
    }
}

#[test]
fn message_outcome_and_stage_are_reported() {
    let mut decide = |ev: &session::Event<'_>| match ev {
        session::Event::MessageComplete { .. } => Some(reply(554, (5, 7, 1), "spam")),
        _ => None,
    };
    let t = txn("<a@example.org>", &["<b@example.net>"]);
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &[(t, BODY)],
        &mut decide,
    );
    let Some(ClientEvent::TransactionComplete(res)) = r
        .events
        .iter()
        .find(|e| matches!(e, ClientEvent::TransactionComplete(_)))
    else {
        panic!("{:?}", r.events)
    };
    assert_eq!(res.message.stage(), Stage::DataEnd);
    assert!(res.message.is_remote());
    assert_eq!(res.message.reply().code().get(), 554);
    assert_eq!(
        res.message.reply().enhanced(),
        EnhancedStatusCode::new(5, 7, 1).ok()
    );
    assert_eq!(res.message.reply().lines(), ["spam"]);
    assert_eq!(res.recipients, std::slice::from_ref(&res.message));
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let mut decide = |ev: &session::Event<'_>| match ev {
        session::Event::Hello {
            kind: HelloKind::Ehlo,
            ..
        } => Some(reply(502, (5, 5, 1), "no EHLO here")),
        _ => None,
    };
    let mut t = txn("<a@example.org>", &["<b@example.net>"]);
    t.params.body = Some(Body::EightBitMime);
    t.params.size = Some(40);
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &[(t, BODY)],
        &mut decide,
    );
    assert!(String::from_utf8_lossy(&r.client_flushes[1]).starts_with("HELO client.example\r\n"));
    // No extensions after HELO: no parameters, and no pipelining.
    assert_eq!(r.seen.mail_lines, ["MAIL FROM:<a@example.org>"]);
    assert_eq!(results(&r), [vec![Status::Accepted]]);
}

#[test]
fn parameters_only_when_offered() {
    let mut t = txn("<a@example.org>", &["<b@example.net>"]);
    t.params.size = Some(1234);
    t.params.body = Some(Body::EightBitMime);
    t.params.ret = Some(Ret::Headers);
    t.params.envid = Some(Envid::new(XText::new("id+1")).unwrap());
    let mut rc = Recipient::new(t.recipients[0].to.clone());
    rc.params.notify = Notify::new(false, true, true);
    rc.params.orcpt = Some(Orcpt::new("rfc822", XText::new("b@example.net")).unwrap());
    t.recipients[0] = rc;

    // Default server: SIZE and 8BITMIME but no DSN.
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &[(t.clone(), BODY)],
        &mut *accept_all(),
    );
    assert_eq!(
        r.seen.mail_lines,
        ["MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME"]
    );
    assert_eq!(r.seen.rcpt_lines, ["RCPT TO:<b@example.net>"]);
    assert_eq!(results(&r), [vec![Status::Accepted]]);

    // DSN offered: RET, ENVID, NOTIFY and ORCPT go along.
    let mut cfg = ServerConfig::default();
    cfg.dsn = true;
    let r = run(
        cfg,
        ClientOptions::default(),
        &[(t.clone(), BODY)],
        &mut *accept_all(),
    );
    assert_eq!(
        r.seen.mail_lines,
        ["MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=id+2B1"]
    );
    assert_eq!(
        r.seen.rcpt_lines,
        ["RCPT TO:<b@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.net"]
    );

    // Nothing offered but SIZE off / 8BITMIME off.
    let mut cfg = ServerConfig::default();
    cfg.size = false;
    cfg.eight_bit_mime = false;
    cfg.smtputf8 = false;
    let r = run(
        cfg,
        ClientOptions::default(),
        &[(t, BODY)],
        &mut *accept_all(),
    );
    assert_eq!(r.seen.mail_lines, ["MAIL FROM:<a@example.org>"]);

    // SMTPUTF8 when an address needs it and the server offers it.
    let t = txn("<a@example.org>", &["<bü@example.net>"]);
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &[(t, BODY)],
        &mut *accept_all(),
    );
    assert_eq!(r.seen.mail_lines, ["MAIL FROM:<a@example.org> SMTPUTF8"]);
    assert_eq!(results(&r), [vec![Status::Accepted]]);
}

#[test]
fn size_over_the_servers_limit_fails_without_sending() {
    let mut cfg = ServerConfig::default();
    cfg.max_message_size = 100;
    let mut t = txn("<a@example.org>", &["<b@example.net>"]);
    t.params.size = Some(101);
    let r = run(
        cfg,
        ClientOptions::default(),
        &[(t, BODY)],
        &mut *accept_all(),
    );
    assert!(r.seen.mail_lines.is_empty());
    assert_eq!(results(&r), [vec![Status::Permanent]]);
}

#[test]
fn starttls_then_ehlo_again() {
    let mut cfg = ServerConfig::default();
    cfg.starttls = true;
    let t = txn("<a@example.org>", &["<b@example.net>"]);
    let r = run(
        cfg,
        ClientOptions::default(),
        &[(t, BODY)],
        &mut *accept_all(),
    );
    let wire: Vec<String> = r
        .client_flushes
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(wire[0], "EHLO client.example\r\n");
    assert_eq!(wire[1], "STARTTLS\r\n");
    assert_eq!(wire[2], "EHLO client.example\r\n");
    assert!(r.events.contains(&ClientEvent::StartTls));
    assert_eq!(results(&r), [vec![Status::Accepted]]);
    assert_eq!(r.seen.messages.len(), 1);
}

#[test]
fn several_transactions_on_one_connection() {
    let ts: Vec<(Transaction<'_>, &[u8])> = (0..3)
        .map(|i| {
            let to = format!("<u{i}@example.net>");
            (txn("<a@example.org>", &[to.as_str()]), BODY)
        })
        .collect();
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &ts,
        &mut *accept_all(),
    );
    assert_eq!(r.seen.messages.len(), 3);
    assert_eq!(results(&r).len(), 3);
    let ready = r
        .events
        .iter()
        .filter(|e| **e == ClientEvent::Ready)
        .count();
    assert_eq!(ready, 4);
}

#[test]
fn null_sender_and_postmaster() {
    let t = txn("<>", &["<Postmaster>"]);
    let r = run(
        ServerConfig::default(),
        ClientOptions::default(),
        &[(t, b"")],
        &mut *accept_all(),
    );
    assert_eq!(r.seen.mail_lines, ["MAIL FROM:<>"]);
    assert_eq!(r.seen.rcpt_lines, ["RCPT TO:<Postmaster>"]);
    assert_eq!(r.seen.messages[0].2, b"");
}

/// While the session waits for the caller (ready, or sending the body),
/// a server sending more than `max_buffered` octets is a protocol error:
/// before, `feed` kept them all, parsed nothing, and the buffer grew without
/// end (an API review).
#[test]
fn a_server_flooding_a_waiting_session_is_a_protocol_error() {
    let mut opts = ClientOptions::default();
    opts.max_buffered = 1000;
    let mut c = ClientSession::new(HeloName::try_from("relay.example.org").unwrap(), opts);
    c.feed(b"220 mx.example.net ESMTP\r\n");
    assert_eq!(c.next_event(), None);
    c.feed(b"250 mx.example.net\r\n");
    assert_eq!(c.next_event(), Some(ClientEvent::Ready));
    for _ in 0..3 {
        c.feed(&[b'x'; 400]);
    }
    assert!(!c.wants_input());
    assert!(
        matches!(c.next_event(), Some(ClientEvent::Closed { error: Some(_) })),
        "flooded while ready"
    );
}

// ---------------------------------------------------------------- chunking invariance

/// Drives a client over a fixed server byte stream split at `cuts`; returns the events and
/// everything the client wrote.
fn replay(server: &[u8], cuts: &[usize], pipelining: bool) -> (Vec<ClientEvent>, Vec<u8>) {
    let mut opts = ClientOptions::default();
    opts.pipelining = pipelining;
    let mut c = ClientSession::new(HeloName::try_from("c.example").expect("valid"), opts);
    let t1 = txn("<a@example.org>", &["<b@example.net>", "<c@example.net>"]);
    let t2 = txn("<a@example.org>", &["<d@example.net>"]);
    let txns = [t1, t2];
    let mut next = 0;
    let mut events = Vec::new();
    let mut wire = Vec::new();
    let mut pos = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c % (server.len() + 1)).collect();
    bounds.push(server.len());
    bounds.sort_unstable();
    for b in bounds {
        if b < pos {
            continue;
        }
        c.feed(&server[pos..b]);
        pos = b;
        while let Some(ev) = c.next_event() {
            match &ev {
                ClientEvent::Ready => match txns.get(next) {
                    Some(t) => {
                        c.send_mail(t).expect("ready");
                        next += 1;
                    }
                    None => c.quit(),
                },
                ClientEvent::SendBody => {
                    c.send_body(BODY).expect("body");
                    c.end_body().expect("body");
                }
                _ => {}
            }
            events.push(ev);
        }
        wire.extend_from_slice(&c.take_output());
    }
    (events, wire)
}

fn server_streams() -> Vec<&'static [u8]> {
    vec![
        // All accepted, pipelined.
        b"220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n250 ok\r\n250 ok\r\n250 ok\r\n\
354 go\r\n250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n",
        // Second recipient refused, then a 4xx final reply; RSET; second transaction ok.
        b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n\
451 4.3.0 later\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n",
        // MAIL refused, pipelined RCPTs and DATA get 503/554; RSET; second transaction.
        b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n550 5.7.1 no\r\n503 5.5.1 x\r\n503 5.5.1 x\r\n\
554 5.5.1 x\r\n250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n",
        // Greeting then 421 during the transaction.
        b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n421 4.3.2 bye\r\n",
        // Multi-line replies everywhere and garbage at the end.
        b"220-mx\r\n220 hello\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n250-a\r\n250 b\r\n\
250 ok\r\n250 ok\r\n354-x\r\n354 y\r\n250-q\r\n250 q\r\nxx\r\n",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn reply_chunking_does_not_change_the_outcome(
        which in 0usize..5,
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        pipelining in any::<bool>(),
    ) {
        let streams = server_streams();
        let stream = streams[which];
        let (whole_events, whole_wire) = replay(stream, &[], pipelining);
        let (events, wire) = replay(stream, &cuts, pipelining);
        prop_assert_eq!(events, whole_events);
        prop_assert_eq!(wire, whole_wire);
    }

    #[test]
    fn byte_by_byte_equals_whole(which in 0usize..5) {
        let streams = server_streams();
        let stream = streams[which];
        let cuts: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(replay(stream, &cuts, true), replay(stream, &[], true));
    }
}

#[test]
fn replay_streams_have_the_expected_outcomes() {
    let streams = server_streams();
    let outcomes = |i: usize| -> Vec<Vec<Status>> {
        replay(streams[i], &[], true)
            .0
            .iter()
            .filter_map(|e| match e {
                ClientEvent::TransactionComplete(t) => {
                    Some(t.recipients.iter().map(|o| o.status()).collect())
                }
                _ => None,
            })
            .collect()
    };
    use Status::{Accepted as A, Permanent as P, Temporary as T};
    assert_eq!(outcomes(0), [vec![A, A], vec![A]]);
    assert_eq!(outcomes(1), [vec![T, P], vec![A]]);
    assert_eq!(outcomes(2), [vec![P, P], vec![A]]);
    assert_eq!(outcomes(3), [vec![T, T]]);
    assert_eq!(outcomes(4), [vec![A, A], vec![T]]);
    let (ev, _) = replay(streams[4], &[], true);
    assert!(matches!(ev.last(), Some(ClientEvent::Closed { error: Some(e) }) if !e.is_remote()));
}

// ---------------------------------------------------------------- RFC transcripts

/// Plays a transcript turn by turn: each server turn is fed whole, and the client must then
/// have written exactly the client lines that follow it in the transcript.
fn play_turns(
    turns: &[(&[&str], &[&str])],
    txn: &Transaction<'_>,
    body: &[u8],
    helo: &str,
) -> Vec<ClientEvent> {
    let mut c = ClientSession::new(
        HeloName::try_from(helo).expect("helo").into_owned(),
        ClientOptions::default(),
    );
    let mut sent = false;
    let mut events = Vec::new();
    for (server, client) in turns {
        let mut s = String::new();
        for l in *server {
            s.push_str(l);
            s.push_str("\r\n");
        }
        c.feed(s.as_bytes());
        while let Some(ev) = c.next_event() {
            match &ev {
                ClientEvent::Ready if !sent => {
                    c.send_mail(txn).expect("ready");
                    sent = true;
                }
                ClientEvent::Ready => c.quit(),
                ClientEvent::SendBody => {
                    c.send_body(body).expect("body");
                    c.end_body().expect("end");
                }
                _ => {}
            }
            events.push(ev);
        }
        let mut want = String::new();
        for l in *client {
            want.push_str(l);
            want.push_str("\r\n");
        }
        assert_eq!(
            String::from_utf8(c.take_output()).expect("utf8"),
            want,
            "after server turn {server:?}"
        );
    }
    assert!(c.is_closed());
    events
}

/// RFC 5321 appendix D.1 (no PIPELINING: one command per turn). The body's second line
/// is `etc. etc. etc.`: the RFC's `...etc` would be dot-stuffed on the wire.
#[test]
fn rfc5321_d1_typical_transaction() {
    let txn = txn(
        "<Smith@bar.com>",
        &["<Jones@foo.com>", "<Green@foo.com>", "<Brown@foo.com>"],
    );
    let body = b"Blah blah blah...\r\netc. etc. etc.\r\n";
    let turns: [(&[&str], &[&str]); 9] = [
        (
            &["220 foo.com Simple Mail Transfer Service Ready"],
            &["EHLO bar.com"],
        ),
        (
            &[
                "250-foo.com greets bar.com",
                "250-8BITMIME",
                "250-SIZE",
                "250-DSN",
                "250 HELP",
            ],
            &["MAIL FROM:<Smith@bar.com>"],
        ),
        (&["250 OK"], &["RCPT TO:<Jones@foo.com>"]),
        (&["250 OK"], &["RCPT TO:<Green@foo.com>"]),
        (&["550 No such user here"], &["RCPT TO:<Brown@foo.com>"]),
        (&["250 OK"], &["DATA"]),
        (
            &["354 Start mail input; end with <CRLF>.<CRLF>"],
            &["Blah blah blah...", "etc. etc. etc.", "."],
        ),
        (&["250 OK"], &["QUIT"]),
        (&["221 foo.com Service closing transmission channel"], &[]),
    ];
    let events = play_turns(&turns, &txn, body, "bar.com");
    let Some(ClientEvent::TransactionComplete(r)) = events
        .iter()
        .find(|e| matches!(e, ClientEvent::TransactionComplete(_)))
    else {
        panic!("{events:?}")
    };
    let st: Vec<Status> = r.recipients.iter().map(|o| o.status()).collect();
    assert_eq!(st, [Status::Accepted, Status::Permanent, Status::Accepted]);
    assert_eq!(r.recipients[1].reply().lines(), ["No such user here"]);
    assert_eq!(events.last(), Some(&ClientEvent::Closed { error: None }));
}

/// RFC 2920 section 3.1 (PIPELINING): MAIL, the RCPTs and DATA in one write; the client
/// sends QUIT after the final reply (the RFC's client pipelines it after the dot; the
/// octets are the same).
#[test]
fn rfc2920_pipelined_transaction() {
    let txn = txn(
        "<mrose@dbc.mtview.ca.us>",
        &[
            "<ned@innosoft.com>",
            "<dan@innosoft.com>",
            "<kvc@innosoft.com>",
        ],
    );
    let body = b"Subject: pipelining\r\n\r\nHi\r\n";
    let turns: [(&[&str], &[&str]); 5] = [
        (
            &["220 innosoft.com SMTP service ready"],
            &["EHLO dbc.mtview.ca.us"],
        ),
        (
            &["250-innosoft.com", "250 PIPELINING"],
            &[
                "MAIL FROM:<mrose@dbc.mtview.ca.us>",
                "RCPT TO:<ned@innosoft.com>",
                "RCPT TO:<dan@innosoft.com>",
                "RCPT TO:<kvc@innosoft.com>",
                "DATA",
            ],
        ),
        (
            &[
                "250 sender <mrose@dbc.mtview.ca.us> OK",
                "250 recipient <ned@innosoft.com> OK",
                "250 recipient <dan@innosoft.com> OK",
                "250 recipient <kvc@innosoft.com> OK",
                "354 enter mail, end with line containing only \".\"",
            ],
            &["Subject: pipelining", "", "Hi", "."],
        ),
        (&["250 message sent"], &["QUIT"]),
        (&["221 goodbye"], &[]),
    ];
    let events = play_turns(&turns, &txn, body, "dbc.mtview.ca.us");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::TransactionComplete(r)
        if r.recipients.iter().all(|o| o.status() == Status::Accepted)))
    );
}

/// A `250` whose text runs past the 512-octet line limit, after the final
/// dot, split over any number of reads: the message was taken (a probe's
/// next hop answered so and got the message again at every retry, since
/// the reply was refused as malformed). Long EHLO lines are usable too.
#[test]
fn a_long_250_after_the_dot_means_delivered() {
    let long = "k".repeat(1500);
    let stream = format!(
        "220 mx\r\n250-mx\r\n250-{long}\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n\
         354 go\r\n250 2.0.0 queued as {long}\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n\
         221 bye\r\n"
    );
    for cuts in [vec![], (0..stream.len()).step_by(97).collect::<Vec<_>>()] {
        let (events, _) = replay(stream.as_bytes(), &cuts, true);
        let done: Vec<&ClientEvent> = events
            .iter()
            .filter(|e| matches!(e, ClientEvent::TransactionComplete(_)))
            .collect();
        assert_eq!(done.len(), 2, "{events:?}");
        for e in done {
            let ClientEvent::TransactionComplete(t) = e else {
                unreachable!()
            };
            assert!(
                t.recipients.iter().all(|r| r.status() == Status::Accepted),
                "{t:?}"
            );
        }
    }
}
