//! The server session driven by arbitrary input: fed bytes in arbitrary
//! chunks, interleaved with arbitrary (but well-formed) application answers,
//! timeouts and partial output writes. No panic; answering the pending event
//! always succeeds; buffers stay bounded; nothing happens after close.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mailbag_pop3_proto::session::{
    AuthFailure, CommitFailure, Event, MaildropFailure, MessageInfo, ServerConfig, ServerSession,
};
use mailbag_pop3_proto::types::Uid;

const MESSAGES: [&[u8]; 3] = [b"Subject: a\n\n.x\nbody\n", b"A: b\r\n\r\n.\r\n", b""];

#[derive(Debug, Arbitrary)]
enum Op {
    Feed(Vec<u8>),
    FeedLine(u8, u8),
    Consume(u16),
    Timeout,
}

const LINES: [&[u8]; 24] = [
    b"USER joe\r\n",
    b"PASS secret\r\n",
    b"AUTH PLAIN\r\n",
    b"AGpvZQBzZWNyZXQ=\r\n",
    b"AUTH LOGIN\r\n",
    b"am9l\r\n",
    b"*\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"UIDL\r\n",
    b"RETR 1\r\n",
    b"RETR 2\r\n",
    b"TOP 1 0\r\n",
    b"TOP 2 5\r\n",
    b"DELE 1\r\n",
    b"DELE 3\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"CAPA\r\n",
    b"STLS\r\n",
    b"QUIT\r\n",
    b"UTF8\r\n",
    b"APOP joe c4c9334bac560ecc979e58001b3e22fb\r\n",
    b"AUTH\r\n",
];

fn answer(s: &mut ServerSession, ev: Event, u: &mut Unstructured<'_>) {
    let choice = u.arbitrary::<u8>().unwrap_or(0);
    let r = match ev {
        Event::Login(_) => match choice % 6 {
            0 => s.reject_login(AuthFailure::Credentials),
            1 => s.reject_login(AuthFailure::InUse),
            2 => s.reject_login(AuthFailure::Temporary),
            _ => s.accept_login(),
        },
        Event::OpenMaildrop { .. } => match choice % 5 {
            0 => s.maildrop_failed(MaildropFailure::InUse),
            _ => s.maildrop_opened(
                MESSAGES
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        MessageInfo::new(
                            mailbag_pop3_proto::codec::crlf_len(m),
                            Uid::try_from(format!("u{i}")).expect("valid uid"),
                        )
                    })
                    .collect(),
            ),
        },
        Event::Retrieve(req) => {
            assert!(req.index < MESSAGES.len());
            if choice % 7 == 0 {
                s.message_failed()
            } else {
                let step = usize::from(choice % 5) + 1;
                // Both styles, mixed chunk by chunk.
                for (k, c) in MESSAGES[req.index].chunks(step).enumerate() {
                    if (usize::from(choice) + k) % 2 == 0 {
                        s.message_chunk(c).expect("chunk while retrieving");
                    } else {
                        s.message_segments(c, |seg| assert!(!seg.is_empty()))
                            .expect("segments while retrieving");
                    }
                }
                s.message_end()
            }
        }
        Event::Commit { .. } => {
            if choice % 3 == 0 {
                s.commit_done(Err(CommitFailure))
            } else {
                s.commit_done(Ok(()))
            }
        }
        Event::StartTls => s.tls_established(),
        _ => Ok(()),
    };
    r.expect("answering the pending event succeeds");
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut config = ServerConfig::default();
    config.tls_available = u.arbitrary().unwrap_or(false);
    config.utf8 = u.arbitrary().unwrap_or(false);
    config.require_tls_for_login = u.arbitrary().unwrap_or(false);
    if u.arbitrary().unwrap_or(false) {
        config.apop_timestamp = Some("<1.2@fuzz>".into());
    }
    let mut s = ServerSession::new(config).expect("valid config");
    let mut steps = 0;
    while let Ok(op) = u.arbitrary::<Op>() {
        steps += 1;
        if steps > 200 {
            break;
        }
        match op {
            Op::Feed(bytes) => s.feed(&bytes),
            Op::FeedLine(a, b) => {
                s.feed(LINES[usize::from(a) % LINES.len()]);
                s.feed(LINES[usize::from(b) % LINES.len()]);
            }
            Op::Consume(n) => s.consume_output(usize::from(n)),
            Op::Timeout => s.timed_out(),
        }
        let mut events = 0;
        while let Some(ev) = s.next_event() {
            events += 1;
            assert!(events < 10_000, "event loop does not terminate");
            assert!(!s.is_closed(), "event after close");
            answer(&mut s, ev, &mut u);
        }
        if s.is_closed() {
            assert!(s.next_event().is_none());
        }
        assert!(
            s.output().len() <= 64 * 1024 + 64 * 1024,
            "output not bounded"
        );
    }
});
