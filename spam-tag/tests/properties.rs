//! Properties: tagging twice equals tagging once, the body is byte-identical for any
//! message and any chunking, the output header block is well-formed, and the spamc codec
//! round-trips.

use mailbag_spam_tag::spamc::{
    RequestHead, ResponseHead, ResponseReader, SpamResult, SpamWord, SpamcLimits, StatusCode,
    StatusText, UserName, Verb, Version, encode_request_head, encode_response_head,
    parse_request_head,
};
use mailbag_spam_tag::{
    HeaderAction, HeaderRewriter, RewriteOptions, RuleName, Score, TagValues, Template, Verdict,
};
use proptest::prelude::*;

const TEMPLATES: &[&str] = &[
    "**SPAM( _SCORE_)**",
    "[SPAM _SCORE(0)_/_REQD_]",
    "*** SPAM ***",
    "_YESNOCAPS_ _HITS_ _TESTS_:",
    "(_STARS_)",
    "SPAM _STARS_",
    "[_SCORE( )_]",
];

fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9!?.,:]{1,12}".prop_map(String::into_bytes),
        Just(b"**SPAM(".to_vec()),
        Just(b"7.3)**".to_vec()),
        Just(b"**SPAM( 5.2)**".to_vec()),
        Just(b"**spam( -1.0)**".to_vec()),
        Just(b"[SPAM 07.3/5.0]".to_vec()),
        Just(b"*** SPAM ***".to_vec()),
        Just(b"=?UTF-8?B?w6TDtsO8?=".to_vec()),
        Just("grüße".as_bytes().to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"Re:".to_vec()),
        (0usize..1500).prop_map(|n| vec![b'x'; n]),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

/// A Subject value: words joined by blanks, sometimes folded.
fn subject_value(eol: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((word(), 0u8..6), 0..12).prop_map(move |ws| {
        let mut v = Vec::new();
        for (w, sep) in ws {
            match sep {
                0 => v.extend_from_slice(b"  "),
                1 => v.push(b'\t'),
                2 => {
                    v.extend_from_slice(eol);
                    v.push(b' ');
                }
                _ => v.push(b' '),
            }
            // Keep it a header value: no line breaks from the random words.
            v.extend(w.into_iter().filter(|&b| b != b'\n' && b != b'\r'));
        }
        v
    })
}

fn header(eol: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let line = move |name: &str, value: Vec<u8>| {
        let mut l = name.as_bytes().to_vec();
        l.extend_from_slice(&value);
        l.extend_from_slice(eol);
        l
    };
    prop_oneof![
        subject_value(eol).prop_map(move |v| line("Subject:", v)),
        subject_value(eol).prop_map(move |v| line("subject :", v)),
        subject_value(eol).prop_map(move |v| line("X-Spam-Flag: ", v)),
        subject_value(eol).prop_map(move |v| line("x-spam-status:", v)),
        subject_value(eol).prop_map(move |v| line("X-Spam-Prev-Subject: ", v)),
        subject_value(eol).prop_map(move |v| line("X-Other: ", v)),
        Just(line("From: a@example.org", vec![])),
    ]
}

#[derive(Debug, Clone)]
struct Msg {
    eol: &'static [u8],
    headers: Vec<u8>,
    body: Vec<u8>,
}

impl Msg {
    fn bytes(&self) -> Vec<u8> {
        let mut m = self.headers.clone();
        m.extend_from_slice(self.eol);
        m.extend_from_slice(&self.body);
        m
    }
}

fn message() -> impl Strategy<Value = Msg> {
    prop_oneof![Just(&b"\r\n"[..]), Just(&b"\n"[..])].prop_flat_map(|eol| {
        (
            proptest::collection::vec(header(eol), 0..8),
            proptest::collection::vec(any::<u8>(), 0..400),
        )
            .prop_map(move |(hs, body)| Msg {
                eol,
                headers: hs.concat(),
                body,
            })
    })
}

fn rule() -> impl Strategy<Value = RuleName> {
    "[A-Z_][A-Z0-9_]{0,20}".prop_map(|s| RuleName::new(&s).unwrap())
}

fn action() -> impl Strategy<Value = HeaderAction> {
    prop_oneof![
        4 => (-200i32..20_000, proptest::collection::vec(rule(), 0..30), any::<bool>()).prop_map(
            |(t, rules, tag_subject)| HeaderAction::Mark {
                verdict: Verdict::new(Score::from_tenths(t), rules),
                required: Score::DEFAULT_THRESHOLD,
                tag_subject,
            }
        ),
        1 => Just(HeaderAction::Untag),
        1 => Just(HeaderAction::Strip),
        1 => Just(HeaderAction::Unscanned),
    ]
}

fn options() -> impl Strategy<Value = RewriteOptions> {
    (proptest::sample::select(TEMPLATES), 40usize..120).prop_map(|(t, w)| {
        let mut o = RewriteOptions::default();
        o.template = Template::new(t).unwrap();
        o.fold_width = w;
        o
    })
}

fn rewrite_chunked(
    msg: &[u8],
    action: &HeaderAction,
    opts: &RewriteOptions,
    sizes: &[usize],
) -> Vec<u8> {
    let mut rw = HeaderRewriter::new(action.clone(), opts.clone());
    let mut out = Vec::new();
    let mut rest = msg;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        rw.feed(&rest[..n], &mut out).unwrap();
        rest = &rest[n..];
        i += 1;
    }
    rw.finish(&mut out).unwrap();
    out
}

fn rewrite(msg: &[u8], action: &HeaderAction, opts: &RewriteOptions) -> Vec<u8> {
    rewrite_chunked(msg, action, opts, &[usize::MAX])
}

/// Lines of the output header block (up to the first empty line), without line ends.
fn header_lines(out: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut lines = Vec::new();
    let mut pos = 0;
    while let Some(i) = out[pos..].iter().position(|&b| b == b'\n') {
        let line = &out[pos..pos + i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += i + 1;
        if line.is_empty() {
            return (lines, pos);
        }
        lines.push(line);
    }
    panic!("no empty line ends the output header block");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tagging_twice_equals_tagging_once(m in message(), a in action(), o in options()) {
        let once = rewrite(&m.bytes(), &a, &o);
        let twice = rewrite(&once, &a, &o);
        prop_assert_eq!(String::from_utf8_lossy(&once), String::from_utf8_lossy(&twice));
    }

    #[test]
    fn body_unchanged_for_any_chunking(
        m in message(),
        a in action(),
        o in options(),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let whole = rewrite(&m.bytes(), &a, &o);
        let chunked = rewrite_chunked(&m.bytes(), &a, &o, &sizes);
        prop_assert_eq!(&whole, &chunked);
        let (_, body_at) = header_lines(&whole);
        prop_assert_eq!(&whole[body_at..], &m.body[..]);
    }

    #[test]
    fn output_header_block_is_well_formed(m in message(), a in action(), o in options()) {
        let out = rewrite(&m.bytes(), &a, &o);
        let (lines, body_at) = header_lines(&out);
        let tagged = matches!(&a, HeaderAction::Mark { verdict, required, tag_subject: true }
            if verdict.is_spam(*required));
        let mut flags = 0;
        let mut statuses = 0;
        let mut ours = false;
        for (i, l) in lines.iter().enumerate() {
            prop_assert!(!l.contains(&b'\r'), "bare CR in {:?}", String::from_utf8_lossy(l));
            let continuation = l[0] == b' ' || l[0] == b'\t';
            prop_assert!(i > 0 || !continuation, "first line is a continuation");
            if !continuation {
                let lower = l.to_ascii_lowercase();
                let untag = matches!(a, HeaderAction::Untag);
                ours = (!untag && lower.starts_with(b"x-spam-"))
                    || (tagged && lower.starts_with(b"subject:"));
                flags += usize::from(lower.starts_with(b"x-spam-flag:"));
                statuses += usize::from(lower.starts_with(b"x-spam-status:"));
            }
            if ours {
                prop_assert!(l.len() <= 998, "line of {} bytes", l.len());
                prop_assert!(!continuation || l.iter().any(|&b| b != b' ' && b != b'\t'),
                    "blank continuation line");
            }
        }
        // Every header line ends with the message's line ending.
        let head = &out[..body_at];
        let newlines = head.iter().filter(|&&b| b == b'\n').count();
        let crlfs = head.windows(2).filter(|w| w == b"\r\n").count();
        prop_assert_eq!(crlfs, if m.eol == b"\r\n" { newlines } else { 0 });
        match &a {
            HeaderAction::Mark { verdict, required, .. } => {
                prop_assert_eq!(flags, usize::from(verdict.is_spam(*required)));
                prop_assert_eq!(statuses, 1);
            }
            HeaderAction::Unscanned => {
                prop_assert_eq!((flags, statuses), (0, 1));
            }
            HeaderAction::Strip | HeaderAction::Untag => {
                prop_assert_eq!((flags, statuses), (0, 0))
            }
            _ => {}
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        msg in proptest::collection::vec(any::<u8>(), 0..600),
        a in action(),
        sizes in proptest::collection::vec(1usize..32, 1..6),
    ) {
        let o = RewriteOptions::default();
        let whole = rewrite(&msg, &a, &o);
        prop_assert_eq!(&whole, &rewrite_chunked(&msg, &a, &o, &sizes));
        let twice = rewrite(&whole, &a, &o);
        prop_assert_eq!(whole, twice);
    }

    #[test]
    fn template_strips_what_it_renders(
        tenths in -1000i32..200_000,
        rules in proptest::collection::vec(rule(), 0..10),
        t in proptest::sample::select(TEMPLATES),
        subject in "[a-z][a-z ]{0,30}[a-z]",
    ) {
        let t = Template::new(t).unwrap();
        let mut sorted = rules.clone();
        sorted.sort();
        let v = TagValues::new(Score::from_tenths(tenths), Score::DEFAULT_THRESHOLD, &sorted);
        let tagged = format!("{} {}", t.render(&v), subject);
        prop_assert_eq!(t.strip_tags(tagged.as_bytes()), subject.as_bytes());
        let twice = format!("{} {}", t.render(&v), tagged);
        prop_assert_eq!(t.strip_tags(twice.as_bytes()), subject.as_bytes());
    }

    #[test]
    fn spamc_request_head_round_trips(
        verb in proptest::sample::select(vec![
            Verb::Check, Verb::Symbols, Verb::Report, Verb::ReportIfSpam,
            Verb::Process, Verb::Headers, Verb::Ping, Verb::Skip,
        ]),
        major in any::<u8>(),
        minor in any::<u8>(),
        user in proptest::option::of("[!-~]{1,40}"),
        len in proptest::option::of(any::<u64>()),
        body in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let head = RequestHead {
            verb,
            version: Version { major, minor },
            user: user.map(|u| UserName::new(u).unwrap()),
            content_length: len,
        };
        let mut wire = Vec::new();
        encode_request_head(&head, &mut wire);
        let head_len = wire.len();
        wire.extend_from_slice(&body);
        let (parsed, used) = parse_request_head(&wire, &SpamcLimits::default()).unwrap().unwrap();
        prop_assert_eq!(parsed, head);
        prop_assert_eq!(used, head_len);
        // Every strict prefix of the head is incomplete, never an error.
        for cut in 0..head_len {
            prop_assert_eq!(parse_request_head(&wire[..cut], &SpamcLimits::default()), Ok(None));
        }
    }

    #[test]
    fn spamc_response_round_trips(
        major in any::<u8>(),
        minor in any::<u8>(),
        code in any::<u8>(),
        text in "[ -~]{0,60}",
        spam in proptest::option::of((any::<bool>(), any::<bool>(), -100_000i32..100_000, -1000i32..1000)),
        body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        sizes in proptest::collection::vec(1usize..40, 1..5),
    ) {
        let head = ResponseHead {
            version: Version { major, minor },
            code: StatusCode(code),
            text: StatusText::new(text).unwrap(),
            content_length: body.as_ref().map(|b| b.len() as u64),
            spam: spam.map(|(is_spam, yn, s, t)| SpamResult {
                is_spam,
                word: if yn { SpamWord::YesNo } else { SpamWord::TrueFalse },
                score: Score::from_tenths(s),
                threshold: Score::from_tenths(t),
            }),
        };
        let mut wire = Vec::new();
        encode_response_head(&head, &mut wire);
        let body = body.unwrap_or_default();
        wire.extend_from_slice(&body);
        let mut r = ResponseReader::new(SpamcLimits::default());
        let mut rest = &wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            r.feed(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        let resp = r.finish().unwrap();
        prop_assert_eq!(resp.head, head);
        prop_assert_eq!(resp.body, body);
    }
}
