//! Property tests: `parse(encode(x)) == x` for every command, response,
//! capability and listing value; the body codec round-trips under any
//! chunking; a session gives the same output whatever the input chunking.

use mailbag_pop3_proto::codec::{
    BodyDecoder, BodyEncoder, DecodeStatus, Encode, normalize_crlf, parse_capability,
    parse_command, parse_list_entry, parse_response, parse_sasl_response, parse_uidl_entry,
};
use mailbag_pop3_proto::session::{AuthFailure, Event, MessageInfo, ServerConfig, ServerSession};
use mailbag_pop3_proto::types::{
    ApopDigest, Atom, Capability, Command, Expire, LangArg, Language, ListEntry, Mechanism,
    MessageNumber, OtherCapability, OtherCode, Password, Response, ResponseCode, SaslResponse,
    Secret, Status, StatusResponse, Text, Uid, UidlEntry, UserName,
};
use proptest::prelude::*;

fn msg_number() -> impl Strategy<Value = MessageNumber> {
    prop_oneof![1u32..20, 1u32..=u32::MAX].prop_map(|n| MessageNumber::new(n).unwrap())
}

fn user_name() -> impl Strategy<Value = UserName<'static>> {
    "[!-~\u{a0}-\u{2ff}]{1,40}".prop_map(|s| UserName::try_from(s).unwrap())
}

fn password() -> impl Strategy<Value = Password<'static>> {
    prop_oneof![
        "[ -~\u{a0}-\u{2ff}]{0,40}".prop_map(|s| Password::try_from(s).unwrap()),
        // Octets of a legacy charset (Latin-1 and the like), not UTF-8.
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..40)
            .prop_map(|b| Password::try_from(b).unwrap()),
    ]
}

fn mechanism() -> impl Strategy<Value = Mechanism<'static>> {
    "[A-Z0-9_-]{1,20}".prop_map(|s| Mechanism::try_from(s).unwrap())
}

fn command() -> impl Strategy<Value = Command<'static>> {
    prop_oneof![
        user_name().prop_map(Command::User),
        password().prop_map(Command::Pass),
        (user_name(), "[0-9a-f]{32}").prop_map(|(name, d)| Command::Apop {
            name,
            digest: ApopDigest::try_from(d.as_str()).unwrap()
        }),
        Just(Command::Stat),
        proptest::option::of(msg_number()).prop_map(Command::List),
        msg_number().prop_map(Command::Retr),
        msg_number().prop_map(Command::Dele),
        Just(Command::Noop),
        Just(Command::Rset),
        Just(Command::Quit),
        (msg_number(), any::<u32>()).prop_map(|(msg, lines)| Command::Top { msg, lines }),
        proptest::option::of(msg_number()).prop_map(Command::Uidl),
        Just(Command::Capa),
        Just(Command::Stls),
        (
            mechanism(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60))
        )
            .prop_map(|(mechanism, ir)| Command::Auth {
                mechanism,
                initial_response: ir.map(Secret::new)
            }),
        Just(Command::AuthList),
        Just(Command::Utf8),
        prop_oneof![
            Just(None),
            Just(Some(LangArg::Wildcard)),
            "[a-zA-Z0-9-]{1,20}".prop_map(|t| Some(LangArg::Tag(Language::try_from(t).unwrap()))),
        ]
        .prop_map(Command::Lang),
    ]
}

fn response_code() -> impl Strategy<Value = ResponseCode<'static>> {
    prop_oneof![
        Just(ResponseCode::InUse),
        Just(ResponseCode::LoginDelay),
        Just(ResponseCode::SysTemp),
        Just(ResponseCode::SysPerm),
        Just(ResponseCode::Auth),
        Just(ResponseCode::Utf8),
        "[!-Z^-~\\\\]{1,20}".prop_filter_map("known code", |s| OtherCode::try_from(s)
            .ok()
            .map(ResponseCode::Other)),
    ]
}

fn status_response() -> impl Strategy<Value = StatusResponse<'static>> {
    (
        prop_oneof![Just(Status::Ok), Just(Status::Err)],
        proptest::option::of(response_code()),
        prop_oneof![
            "[ -~]{0,60}",
            "\\[[A-Z/-]{1,10}\\][ -~]{0,10}",
            "\\PC{0,30}"
        ],
    )
        .prop_filter_map("ambiguous text", |(st, code, text)| {
            StatusResponse::new(st, code, text).ok()
        })
}

fn response() -> impl Strategy<Value = Response<'static>> {
    prop_oneof![
        status_response().prop_map(Response::Status),
        proptest::collection::vec(any::<u8>(), 0..60)
            .prop_map(|d| Response::Challenge(Secret::new(d))),
    ]
}

fn atom() -> impl Strategy<Value = Atom<'static>> {
    "[!-~]{1,12}".prop_map(|s| Atom::try_from(s).unwrap())
}

fn capability() -> impl Strategy<Value = Capability<'static>> {
    prop_oneof![
        Just(Capability::Top),
        Just(Capability::User),
        proptest::collection::vec(mechanism(), 0..4).prop_map(Capability::Sasl),
        Just(Capability::RespCodes),
        (any::<u32>(), any::<bool>())
            .prop_map(|(seconds, per_user)| Capability::LoginDelay { seconds, per_user }),
        Just(Capability::Pipelining),
        (
            prop_oneof![Just(Expire::Never), any::<u32>().prop_map(Expire::Days)],
            any::<bool>()
        )
            .prop_map(|(policy, per_user)| Capability::Expire { policy, per_user }),
        Just(Capability::Uidl),
        "[ -~]{1,30}".prop_map(|t| Capability::Implementation(Text::try_from(t).unwrap())),
        Just(Capability::Implementation(Text::EMPTY)),
        Just(Capability::Stls),
        Just(Capability::AuthRespCode),
        any::<bool>().prop_map(|user| Capability::Utf8 { user }),
        Just(Capability::Lang),
        (atom(), proptest::collection::vec(atom(), 0..4)).prop_filter_map("known tag", |(n, a)| {
            OtherCapability::new(n, a).ok().map(Capability::Other)
        }),
    ]
}

fn strip_crlf(v: &[u8]) -> &[u8] {
    v.strip_suffix(b"\r\n")
        .expect("encoders end lines with CRLF")
}

proptest! {
    #[test]
    fn command_roundtrip(cmd in command()) {
        let wire = cmd.to_bytes();
        prop_assert_eq!(parse_command(strip_crlf(&wire)).unwrap(), cmd);
    }

    #[test]
    fn response_roundtrip(r in response()) {
        let wire = r.to_bytes();
        prop_assert_eq!(parse_response(strip_crlf(&wire)).unwrap(), r);
    }

    #[test]
    fn capability_roundtrip(c in capability()) {
        let wire = c.to_bytes();
        prop_assert_eq!(parse_capability(strip_crlf(&wire)).unwrap(), c);
    }

    #[test]
    fn listing_roundtrip(n in msg_number(), size in any::<u64>(), uid in "[!-~]{1,70}") {
        let l = ListEntry { number: n, size };
        prop_assert_eq!(parse_list_entry(strip_crlf(&l.to_bytes())).unwrap(), l);
        let u = UidlEntry { number: n, uid: Uid::try_from(uid).unwrap() };
        let wire = u.to_bytes();
        prop_assert_eq!(parse_uidl_entry(strip_crlf(&wire)).unwrap(), u);
    }

    #[test]
    fn sasl_response_roundtrip(d in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))) {
        let r = match d { Some(d) => SaslResponse::Data(Secret::new(d)), None => SaslResponse::Cancel };
        prop_assert_eq!(parse_sasl_response(strip_crlf(&r.to_bytes())).unwrap(), r);
    }

    #[test]
    fn parsers_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_command(&line);
        let _ = parse_response(&line);
        let _ = parse_capability(&line);
        let _ = parse_sasl_response(&line);
    }

    #[test]
    fn body_roundtrip_any_chunking(
        body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
        cuts in proptest::collection::vec(1usize..20, 0..30),
        dec_cuts in proptest::collection::vec(1usize..20, 0..30),
    ) {
        let mut enc = BodyEncoder::new();
        let mut wire = Vec::new();
        let mut rest = &body[..];
        for c in &cuts {
            let (a, b) = rest.split_at((*c).min(rest.len()));
            enc.encode_chunk(a, &mut wire);
            rest = b;
        }
        enc.encode_chunk(rest, &mut wire);
        enc.finish(&mut wire);
        let mut dec = BodyDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut done = false;
        for c in dec_cuts.iter().chain(std::iter::repeat(&7)) {
            let end = (pos + c).min(wire.len());
            match dec.decode(&wire[pos..end], &mut out) {
                DecodeStatus::Done { consumed } => {
                    prop_assert_eq!(pos + consumed, wire.len());
                    done = true;
                    break;
                }
                DecodeStatus::NeedMore => pos = end,
            }
            if pos == wire.len() { break; }
        }
        prop_assert!(done);
        prop_assert_eq!(out, normalize_crlf(&body).into_owned());
    }

    #[test]
    fn body_encoder_matches_naive_reference(
        body in prop_oneof![
            // Dense special octets.
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), Just(b'b')], 0..700),
            // Realistic lines: long clean CRLF stretches with the odd dot
            // line or bare LF (exercises the block scanner's mode switches).
            proptest::collection::vec((0usize..150, 0u8..20), 0..80).prop_map(|lines| {
                let mut v = Vec::new();
                for (len, kind) in lines {
                    if kind == 0 { v.push(b'.'); }
                    v.extend(std::iter::repeat_n(b'x', len));
                    v.extend_from_slice(if kind == 1 { b"\n" } else { b"\r\n" });
                }
                v
            }),
        ],
        step in 1usize..3000,
    ) {
        // Reference: normalise line ends, stuff every line starting with '.', terminate.
        let norm = normalize_crlf(&body);
        let mut want = Vec::new();
        let mut at_start = true;
        for &b in norm.iter() {
            if at_start && b == b'.' {
                want.push(b'.');
            }
            want.push(b);
            at_start = b == b'\n';
        }
        want.extend_from_slice(b".\r\n");
        let mut enc = BodyEncoder::new();
        let mut got = Vec::new();
        for c in body.chunks(step) {
            enc.encode_chunk(c, &mut got);
        }
        enc.finish(&mut got);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn body_segments_equal_copy_for_any_chunking(
        body in prop_oneof![
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..400),
            proptest::collection::vec((0usize..150, 0u8..12), 0..60).prop_map(|lines| {
                let mut v = Vec::new();
                for (len, kind) in lines {
                    if kind == 0 { v.push(b'.'); }
                    v.extend(std::iter::repeat_n(b'x', len));
                    v.extend_from_slice(match kind { 1 => b"\n", 2 => b"\r", _ => b"\r\n" });
                }
                v
            }),
        ],
        cuts in proptest::collection::vec(0usize..300, 0..10),
        styles in proptest::collection::vec(any::<bool>(), 11),
    ) {
        // Reference: the copying API, whole.
        let mut enc = BodyEncoder::new();
        let mut want = Vec::new();
        enc.encode_chunk(&body, &mut want);
        enc.finish(&mut want);
        // Chunked, each chunk through one API or the other.
        let mut enc = BodyEncoder::new();
        let mut got = Vec::new();
        let mut rest = &body[..];
        for (i, c) in cuts.iter().map(Some).chain([None]).enumerate() {
            let (a, b) = rest.split_at(c.map_or(rest.len(), |c| (*c).min(rest.len())));
            rest = b;
            if styles[i] {
                enc.encode_segments(a, |s| {
                    assert!(!s.is_empty());
                    got.extend_from_slice(s);
                });
            } else {
                enc.encode_chunk(a, &mut got);
            }
        }
        enc.finish_segments(|s| got.extend_from_slice(s));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn session_same_output_for_any_chunking(
        lines in proptest::collection::vec(session_line(), 0..25),
        cuts in proptest::collection::vec(1usize..12, 1..40),
    ) {
        let input: Vec<u8> = lines.concat();
        let whole = drive(&[&input[..]]);
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let (a, b) = rest.split_at((*c).min(rest.len()));
            chunks.push(a);
            rest = b;
        }
        prop_assert_eq!(drive(&chunks), whole);
    }
}

fn session_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"USER joe\r\n".to_vec()),
        Just(b"PASS secret\r\n".to_vec()),
        Just(b"PASS wrong\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"AGpvZQBzZWNyZXQ=\r\n".to_vec()),
        Just(b"AUTH LOGIN am9l\r\n".to_vec()),
        Just(b"c2VjcmV0\r\n".to_vec()),
        Just(b"*\r\n".to_vec()),
        Just(b"STAT\r\n".to_vec()),
        Just(b"LIST\r\n".to_vec()),
        (1u32..5).prop_map(|n| format!("LIST {n}\r\n").into_bytes()),
        (1u32..5).prop_map(|n| format!("RETR {n}\r\n").into_bytes()),
        (1u32..5, 0u32..3).prop_map(|(n, l)| format!("TOP {n} {l}\r\n").into_bytes()),
        (1u32..5).prop_map(|n| format!("DELE {n}\r\n").into_bytes()),
        Just(b"UIDL\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b"NOOP\r\n".to_vec()),
        Just(b"CAPA\r\n".to_vec()),
        Just(b"STLS\r\n".to_vec()),
        Just(b"QUIT\r\n".to_vec()),
        Just(b"BOGUS\n".to_vec()),
        Just([vec![b'x'; 300], b"\r\n".to_vec()].concat()),
        proptest::collection::vec(any::<u8>(), 0..10),
    ]
}

const MESSAGES: [&[u8]; 3] = [
    b"Subject: a\n\n.dot\nbody\n",
    b"Subject: b\r\n\r\nline\r\n",
    b"no blank line",
];

/// Drives a session with a deterministic application, feeding `chunks` one by
/// one, and returns all output plus a trace of events.
fn drive(chunks: &[&[u8]]) -> (Vec<u8>, Vec<String>) {
    let mut config = ServerConfig::default();
    config.max_bad_commands = 1000;
    config.max_auth_failures = 1000;
    let mut s = ServerSession::new(config).unwrap();
    let mut out = s.take_output();
    let mut trace = Vec::new();
    for chunk in chunks {
        s.feed(chunk);
        while let Some(ev) = s.next_event() {
            trace.push(format!("{ev:?}"));
            match ev {
                Event::Login(req) => {
                    if req.check_secret("secret") {
                        s.accept_login().unwrap()
                    } else {
                        s.reject_login(AuthFailure::Credentials).unwrap()
                    }
                }
                Event::OpenMaildrop { .. } => s
                    .maildrop_opened(
                        MESSAGES
                            .iter()
                            .enumerate()
                            .map(|(i, m)| {
                                MessageInfo::new(
                                    mailbag_pop3_proto::codec::crlf_len(m),
                                    Uid::try_from(format!("u{i}")).unwrap(),
                                )
                            })
                            .collect(),
                    )
                    .unwrap(),
                Event::Retrieve(r) => {
                    for c in MESSAGES[r.index].chunks(3) {
                        s.message_chunk(c).unwrap();
                    }
                    s.message_end().unwrap();
                }
                Event::Commit { .. } => s.commit_done(Ok(())).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
            out.extend_from_slice(&s.take_output());
        }
        out.extend_from_slice(&s.take_output());
    }
    (out, trace)
}
