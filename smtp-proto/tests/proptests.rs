//! Property tests: round-trips of commands, replies, addresses and DATA stuffing; chunking
//! invariance of the DATA receiver and the server session.

use std::borrow::Cow;

use mailbag_smtp_proto::address::{
    ForwardPath, Postmaster, ReversePath, parse_forward_path, parse_reverse_path,
};
use mailbag_smtp_proto::codec::{ReplyParser, parse_command};
use mailbag_smtp_proto::data::{DataOptions, DataReceiver, stuff};
use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::{
    Body, By, ByMode, Command, EhloReply, EnhancedStatusCode, Envid, HeloName, Hold, HoldUntil,
    MailParams, Mechanism, MtPriority, Notify, Orcpt, Param, RcptParams, Reply, ReplyCode, Ret,
    Secret, Text, XText,
};
use proptest::prelude::*;

fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-zA-Z0-9_-]{1,8}){0,2}",
        "\"([ !#-\\[\\]-~]|\\\\[ -~]){0,10}\"",
        "[a-zé]{1,6}",
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?(\\.[a-z0-9]{1,8}){0,3}\\.?",
        "\\[(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|1[0-9]{2}|[1-9]?[0-9])){3}\\]",
        "\\[IPv6:(([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|::1|2001:db8::[0-9a-f]{1,4})\\]",
        "[a-zü]{1,5}\\.example",
    ]
}

fn path_text() -> impl Strategy<Value = String> {
    (
        proptest::option::of("@[a-z]{1,5}(,@[a-z]{1,5}\\.[a-z]{2}){0,2}"),
        local_part(),
        host(),
    )
        .prop_map(|(route, l, h)| match route {
            Some(r) => format!("<{r}:{l}@{h}>"),
            None => format!("<{l}@{h}>"),
        })
}

fn reverse_path() -> impl Strategy<Value = ReversePath<'static>> {
    prop_oneof![
        1 => Just(ReversePath::Null),
        6 => path_text().prop_filter_map("valid path", |s| {
            parse_reverse_path(s.as_bytes()).ok().map(|(p, _)| p.into_owned())
        }),
    ]
}

fn forward_path() -> impl Strategy<Value = ForwardPath<'static>> {
    prop_oneof![
        1 => "[pP]ost[mM]aster".prop_map(|s| {
            ForwardPath::Postmaster(Postmaster::try_from(s.as_str()).unwrap().into_owned())
        }),
        6 => path_text().prop_filter_map("valid path", |s| {
            parse_forward_path(s.as_bytes()).ok().map(|(p, _)| p.into_owned())
        }),
    ]
}

fn xtext() -> impl Strategy<Value = XText<'static>> {
    "[ -~é]{1,12}".prop_map(|s| XText::new(Cow::Owned(s)))
}

fn unknown_params() -> impl Strategy<Value = Vec<Param<'static>>> {
    proptest::collection::vec(
        ("X-[A-Z0-9]{1,5}", proptest::option::of("[!-<>-~]{1,6}"))
            .prop_map(|(k, v)| Param::new(&k, v.as_deref()).unwrap().into_owned()),
        0..3,
    )
}

prop_compose! {
    fn mail_params()(
        size in proptest::option::of(any::<u64>()),
        body in proptest::option::of(prop_oneof![Just(Body::SevenBit), Just(Body::EightBitMime), Just(Body::BinaryMime)]),
        smtputf8 in any::<bool>(),
        ret in proptest::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Headers)]),
        envid in proptest::option::of(xtext()),
        auth in proptest::option::of(xtext()),
        requiretls in any::<bool>(),
        prio in proptest::option::of(-9i8..=9),
        by in proptest::option::of((1i64..999_999_999, any::<bool>(), any::<bool>())),
        hold in proptest::option::of(prop_oneof![
            (0u64..999_999_999).prop_map(Hold::For),
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z".prop_map(|s| Hold::Until(HoldUntil::try_from(s.as_str()).unwrap().into_owned())),
        ]),
        unknown in unknown_params(),
    ) -> MailParams<'static> {
        let mut p = MailParams::default();
        p.size = size;
        p.body = body;
        p.smtputf8 = smtputf8;
        p.ret = ret;
        p.envid = envid.and_then(|e| Envid::new(e).ok());
        p.auth = auth;
        p.requiretls = requiretls;
        p.mt_priority = prio.map(|n| MtPriority::try_from(n).unwrap());
        p.by = by.map(|(seconds, r, trace)| By::new(seconds, if r { ByMode::Return } else { ByMode::Notify }, trace).unwrap());
        p.hold = hold;
        p.unknown = unknown;
        p
    }
}

prop_compose! {
    fn rcpt_params()(
        notify in proptest::option::of(prop_oneof![
            Just(Notify::NEVER),
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_filter_map("non-empty", |(s, f, d)| Notify::new(s, f, d)),
        ]),
        orcpt in proptest::option::of(("rfc822|utf-8|x-[a-z]{1,4}", xtext())),
        unknown in unknown_params(),
    ) -> RcptParams<'static> {
        let mut p = RcptParams::default();
        p.notify = notify;
        p.orcpt = orcpt.map(|(t, address)| Orcpt::new(t, address).unwrap());
        p.unknown = unknown;
        p
    }
}

fn text() -> impl Strategy<Value = Text<'static>> {
    "[!-~]{1,8}( [!-~]{1,8}){0,2}".prop_map(|s| Text::try_from(s.as_str()).unwrap().into_owned())
}

fn command() -> impl Strategy<Value = Command<'static>> {
    let helo = "[a-zA-Z0-9._\\[\\]:-]{1,20}"
        .prop_map(|s| HeloName::try_from(s.as_str()).unwrap().into_owned());
    prop_oneof![
        helo.clone().prop_map(Command::Ehlo),
        helo.clone().prop_map(Command::Helo),
        helo.prop_map(Command::Lhlo),
        (reverse_path(), mail_params()).prop_map(|(from, mut params)| {
            if !from.is_ascii() {
                params.smtputf8 = true;
            }
            Command::Mail { from, params }
        }),
        (forward_path(), rcpt_params()).prop_map(|(to, params)| Command::Rcpt { to, params }),
        Just(Command::Data),
        (0u64..=9_999_999_999_999_999_999, any::<bool>())
            .prop_map(|(size, last)| Command::Bdat { size, last }),
        Just(Command::Rset),
        (text(), any::<bool>())
            .prop_filter("no trailing SMTPUTF8 word", |(t, _)| !t
                .as_str()
                .to_ascii_uppercase()
                .ends_with(" SMTPUTF8"))
            .prop_map(|(target, smtputf8)| Command::Vrfy { target, smtputf8 }),
        (text(), any::<bool>())
            .prop_filter("no trailing SMTPUTF8 word", |(t, _)| !t
                .as_str()
                .to_ascii_uppercase()
                .ends_with(" SMTPUTF8"))
            .prop_map(|(target, smtputf8)| Command::Expn { target, smtputf8 }),
        proptest::option::of(text()).prop_map(Command::Help),
        proptest::option::of(text()).prop_map(Command::Noop),
        Just(Command::Quit),
        Just(Command::StartTls),
        (
            prop_oneof![
                Just(Mechanism::PLAIN),
                Just(Mechanism::LOGIN),
                Just(Mechanism::XOAUTH2),
                "[A-Z0-9_-]{1,20}"
                    .prop_map(|m| Mechanism::try_from(m.as_str()).unwrap().into_owned())
            ],
            proptest::option::of(
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Secret::from_bytes(&b))
            ),
        )
            .prop_map(|(mechanism, initial_response)| Command::Auth {
                mechanism,
                initial_response
            }),
    ]
}

fn reply() -> impl Strategy<Value = Reply<'static>> {
    (
        200u16..=599,
        proptest::option::of((0u16..1000, 0u16..1000)),
        proptest::collection::vec("[ -~é]{0,30}", 1..5),
    )
        .prop_filter_map("valid reply", |(code, esc, lines)| {
            let code = ReplyCode::try_from(code).ok()?;
            let class = code.class();
            let esc = match esc {
                Some((s, d)) if matches!(class, 2 | 4 | 5) => {
                    Some(EnhancedStatusCode::new(class, s, d).ok()?)
                }
                _ => None,
            };
            Reply::multiline(code, esc, lines.into_iter().map(Cow::Owned).collect()).ok()
        })
}

/// Reply wire made of lines that look like enhanced codes (with and without leading zeros,
/// alone, followed by text, mixed on some lines only) and EHLO keywords.
fn code_like_reply_wire() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "",
        " ",
        "2.0.0",
        "2.00.0",
        "2.252.053",
        "2.1.5",
        "5.1.1",
        "SIZE 10",
        "PIPELINING",
        "x",
    ]);
    proptest::collection::vec((piece.clone(), piece), 1..5).prop_map(|lines| {
        let mut wire = Vec::new();
        let last = lines.len() - 1;
        for (i, (a, b)) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = if b.is_empty() {
                a.to_string()
            } else {
                format!("{a} {b}")
            };
            wire.extend_from_slice(format!("250{sep}{text}\r\n").as_bytes());
        }
        wire
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A parsed reply re-encodes to a reply that parses to the same value, and its EHLO
    /// reading survives `EhloReply::to_reply` (the smtp_reply fuzz target's property, on
    /// the inputs where a lenient code reader loses text).
    #[test]
    fn code_like_reply_text_round_trips(wire in code_like_reply_wire()) {
        let parser = ReplyParser::default();
        let (reply, used) = parser.parse(&wire).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        let mut again = Vec::new();
        reply.encode(&mut again);
        let (back, _) = parser.parse(&again).unwrap().unwrap();
        prop_assert_eq!(&back, &reply);
        let ehlo = EhloReply::from_reply(&reply).unwrap();
        let mut w = Vec::new();
        ehlo.to_reply().unwrap().encode(&mut w);
        let (r2, _) = parser.parse(&w).unwrap().unwrap();
        prop_assert_eq!(EhloReply::from_reply(&r2), Some(ehlo), "{}", String::from_utf8_lossy(&wire));
    }

    #[test]
    fn command_round_trip(cmd in command()) {
        let mut wire = Vec::new();
        cmd.encode(&mut wire);
        let parsed = parse_command(&wire);
        prop_assert_eq!(parsed.as_ref(), Ok(&cmd), "{}", String::from_utf8_lossy(&wire));
        // Canonical: encoding the parsed value gives the same octets.
        let mut again = Vec::new();
        parsed.unwrap().encode(&mut again);
        prop_assert_eq!(again, wire);
    }

    #[test]
    fn reply_round_trip(r in reply()) {
        let mut wire = Vec::new();
        r.encode(&mut wire);
        let (parsed, used) = ReplyParser::default().parse(&wire).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(parsed, r);
    }

    #[test]
    fn path_round_trip(p in path_text()) {
        if let Ok((fp, rest)) = parse_forward_path(p.as_bytes()) {
            prop_assert!(rest.is_empty());
            let mut wire = Vec::new();
            fp.encode(&mut wire);
            prop_assert_eq!(&wire, p.as_bytes());
            let (again, _) = parse_forward_path(&wire).unwrap();
            prop_assert_eq!(again, fp);
        }
    }

    #[test]
    fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(cmd) = parse_command(&line) {
            // Whatever parses re-encodes to something that parses to the same value.
            let mut wire = Vec::new();
            cmd.encode(&mut wire);
            prop_assert_eq!(parse_command(&wire), Ok(cmd));
        }
    }

    #[test]
    fn data_unstuff_stuff_identity(
        lines in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..40),
                Just(b".".to_vec()),
                Just(b"..".to_vec()),
                Just(b".\r".to_vec()),
            ],
            0..30,
        ),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut body = Vec::new();
        for l in &lines {
            body.extend_from_slice(l);
            body.extend_from_slice(b"\r\n");
        }
        let mut wire = Vec::new();
        stuff(&body, &mut wire);
        wire.extend_from_slice(b"NEXT COMMAND\r\n");
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        points.dedup();
        let mut rx = DataReceiver::new(DataOptions::default());
        let mut out = Vec::new();
        let mut buffered = Vec::new();
        let mut end = None;
        let mut total_used = 0;
        for w in points.windows(2) {
            buffered.extend_from_slice(&wire[w[0]..w[1]]);
            let (used, e) = rx.receive_into(&buffered, &mut out);
            buffered.drain(..used);
            total_used += used;
            if e.is_some() {
                end = e;
                break;
            }
        }
        // A bare CR in a line went out as CRLF (RFC 5321 section 2.3.8).
        let body = crlf_only(&body);
        prop_assert_eq!(&out, &body);
        prop_assert_eq!(end, Some(Ok(body.len() as u64)));
        prop_assert_eq!(&wire[total_used..], b"NEXT COMMAND\r\n");
    }

    /// With a line limit, the stuffer's output (whatever the chunking of its
    /// input) arrives through the receiver as lines of at most `max` octets
    /// before their CRLF; taking out every inserted CRLF SP gives the body
    /// back; a body whose lines all fit goes out as without a limit.
    #[test]
    fn stuffer_line_limit_breaks_long_lines_and_keeps_the_text(
        lines in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), b'a'..=b'z'], 0..40),
                Just(b".".to_vec()),
            ],
            0..12,
        ),
        max in 2usize..12,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        use mailbag_smtp_proto::data::Stuffer;
        // Lines may hold bare CRs (sent as CRLF); none starts with a SP, so
        // that the inserted `CRLF SP` can be told apart.
        let mut body = Vec::new();
        for l in &lines {
            body.extend_from_slice(l);
            body.extend_from_slice(b"\r\n");
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        points.push(0);
        points.push(body.len());
        points.sort_unstable();
        points.dedup();
        let mut s = Stuffer::with_max_line(max);
        let mut wire = Vec::new();
        for w in points.windows(2) {
            s.chunk(&body[w[0]..w[1]], &mut wire);
        }
        s.finish(&mut wire);
        let mut whole = Vec::new();
        let mut one = Stuffer::with_max_line(max);
        one.chunk(&body, &mut whole);
        one.finish(&mut whole);
        prop_assert_eq!(&wire, &whole, "chunking changed the output");
        let mut opts = DataOptions::default();
        opts.bare_lf = mailbag_smtp_proto::data::BareLfPolicy::Accept;
        let mut rx = DataReceiver::new(opts);
        let mut out = Vec::new();
        let (_, end) = rx.receive_into(&wire, &mut out);
        prop_assert!(matches!(end, Some(Ok(_))), "{:?}", end);
        for line in out.split(|b| *b == b'\n') {
            let text = line.strip_suffix(b"\r").unwrap_or(line);
            prop_assert!(text.len() <= max, "{:?}", String::from_utf8_lossy(line));
        }
        let unfolded: Vec<u8> = {
            let mut u = Vec::new();
            let mut i = 0;
            while i < out.len() {
                if out[i..].starts_with(b"\r\n ") {
                    i += 3;
                } else {
                    u.push(out[i]);
                    i += 1;
                }
            }
            u
        };
        prop_assert_eq!(&unfolded, &crlf_only(&body));
        if lines.iter().all(|l| l.len() <= max) {
            let mut plain = Vec::new();
            stuff(&body, &mut plain);
            prop_assert_eq!(&wire, &plain);
        }
    }

    #[test]
    fn data_receiver_chunking_invariance(
        input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        policy in prop_oneof![
            Just(mailbag_smtp_proto::data::BareLfPolicy::Reject),
            Just(mailbag_smtp_proto::data::BareLfPolicy::Normalize),
            Just(mailbag_smtp_proto::data::BareLfPolicy::Accept),
        ],
        max_size in 0u64..64,
    ) {
        let mut opts = DataOptions::default();
        opts.max_size = max_size;
        opts.bare_lf = policy;
        let mut rx = DataReceiver::new(opts.clone());
        let mut whole = Vec::new();
        let whole_end = rx.receive_into(&input, &mut whole);
        let whole_err = rx.error();
        let too_big = whole_err == Some(mailbag_smtp_proto::data::DataError::TooBig);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        points.push(0);
        points.push(input.len());
        points.sort_unstable();
        points.dedup();
        let mut rx = DataReceiver::new(opts);
        let mut out = Vec::new();
        let mut buffered = Vec::new();
        let mut used_total = 0;
        let mut end = None;
        for w in points.windows(2) {
            buffered.extend_from_slice(&input[w[0]..w[1]]);
            let (used, e) = rx.receive_into(&buffered, &mut out);
            buffered.drain(..used);
            used_total += used;
            if e.is_some() {
                end = e;
                break;
            }
        }
        prop_assert_eq!((used_total, end), (whole_end.0, whole_end.1));
        prop_assert_eq!(rx.error(), whole_err);
        if !too_big {
            // After a size failure the partial body is dropped, so only compare otherwise.
            prop_assert_eq!(out, whole);
        }
    }

    #[test]
    fn session_chunking_invariance(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40)) {
        let whole = run_session(&[SCRIPT]);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(SCRIPT.len() + 1)).collect();
        points.push(0);
        points.push(SCRIPT.len());
        points.sort_unstable();
        points.dedup();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &SCRIPT[w[0]..w[1]]).collect();
        prop_assert_eq!(run_session(&chunks), whole);
    }
}

/// `body` with each bare CR and bare LF made CRLF, octet by octet: what the
/// stuffer sends.
fn crlf_only(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &c) in body.iter().enumerate() {
        match c {
            b'\r' if body.get(i + 1) == Some(&b'\n') => out.push(c),
            b'\n' if i > 0 && body[i - 1] == b'\r' => out.push(c),
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(c),
        }
    }
    out
}

/// A pipelined session touching most paths: errors, DATA with stuffing, BDAT, RSET, QUIT.
const SCRIPT: &[u8] =
    b"NOOP\r\nEHLO client.example\r\nMAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME\r\n\
RCPT TO:<x@y.z>\r\nRCPT TO:<bad@@y>\r\nRCPT TO:<Postmaster>\r\nBOGUS\r\nDATA\r\n\
..first\r\nline\r\n.\r\n\r\n.\r\nMAIL FROM:<> X-FOO=1\r\nMAIL FROM:<>\r\nRCPT TO:<q@r.s>\r\n\
BDAT 5\r\nhelloBDAT 3 LAST\r\nabcRSET\r\nVRFY someone\r\nQUIT\r\nignored\r\n";

fn run_session(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
    let mut s = ServerSession::new(ServerConfig::default()).unwrap();
    let mut events = Vec::new();
    let mut body = Vec::new();
    for c in chunks {
        s.feed(c);
        while let Some(ev) = s.next_event() {
            match ev {
                Event::BodyChunk(b) => body.extend_from_slice(b),
                ev => {
                    if !body.is_empty() {
                        events.push(format!("body {:?}", String::from_utf8_lossy(&body)));
                        body.clear();
                    }
                    let name = format!("{ev:?}");
                    let info = matches!(ev, Event::Quit | Event::Reset | Event::MessageAborted(_));
                    events.push(name);
                    if !info {
                        s.accept();
                    }
                }
            }
        }
    }
    (events, s.take_output())
}

#[test]
fn session_script_expected_output() {
    let (events, out) = run_session(&[SCRIPT]);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("501 5.1.3 Bad recipient address syntax"),
        "{out}"
    );
    assert!(
        out.contains("500 5.5.1 Syntax error, command unrecognized"),
        "{out}"
    );
    assert!(out.contains("555 5.5.4 Unsupported parameter"), "{out}");
    assert!(out.contains("250 2.0.0 5 octets received"), "{out}");
    assert!(out.ends_with("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n221 2.0.0 Bye\r\n"), "{out}");
    assert!(
        events.contains(&"body \".first\\r\\nline\\r\\n\"".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"body \"helloabc\"".to_string()),
        "{events:?}"
    );
}
