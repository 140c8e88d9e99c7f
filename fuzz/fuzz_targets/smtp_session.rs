//! Server session over arbitrary input, read sizes and application decisions: no panic, no
//! hang, bounded buffers, and the same events whatever the chunking.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::{Mechanism, Reply, ReplyCode};

#[derive(Debug, Arbitrary)]
struct Input {
    data: Vec<u8>,
    reads: Vec<u8>,
    decisions: Vec<u8>,
    lmtp: bool,
    starttls: bool,
}

fn run(input: &Input, chunked: bool) -> (Vec<String>, Vec<u8>) {
    let mut cfg = ServerConfig::default();
    cfg.lmtp = input.lmtp;
    cfg.starttls = input.starttls;
    cfg.auth_mechanisms = vec![Mechanism::PLAIN, Mechanism::LOGIN];
    cfg.auth_requires_tls = false;
    cfg.max_message_size = 4096;
    cfg.max_recipients = 5;
    let mut s = ServerSession::new(cfg).expect("valid config");
    let mut events = Vec::new();
    let mut out = s.take_output();
    let mut pos = 0;
    let mut i = 0;
    let mut d = 0;
    let mut body = 0usize;
    while pos < input.data.len() && !s.is_closed() {
        let n = if chunked {
            usize::from(input.reads.get(i).copied().unwrap_or(200)).max(1)
        } else {
            input.data.len()
        };
        i += 1;
        let end = (pos + n).min(input.data.len());
        s.feed(&input.data[pos..end]);
        pos = end;
        while let Some(ev) = s.next_event() {
            match ev {
                Event::BodyChunk(b) => {
                    body += b.len();
                    continue;
                }
                Event::Quit | Event::Reset | Event::MessageAborted(_) | Event::AuthCancelled => {
                    events.push(format!("{ev:?}"));
                    continue;
                }
                ev => {
                    if body > 0 {
                        events.push(format!("body {body}"));
                        body = 0;
                    }
                    events.push(format!("{ev:?}"));
                    let is_tls = matches!(ev, Event::StartTls);
                    let choice = input.decisions.get(d).copied().unwrap_or(0);
                    d += 1;
                    match choice % 4 {
                        0 | 1 => s.accept(),
                        2 => s.reject(
                            Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, None, "no").unwrap(),
                        ),
                        _ => {
                            s.auth_challenge(b"x");
                            s.accept();
                        }
                    }
                    if is_tls && s.awaiting_tls() {
                        // A real handshake consumes the stream: stop here in both runs.
                        out.extend_from_slice(&s.take_output());
                        return (events, out);
                    }
                }
            }
        }
        assert!(s.output().len() < 1 << 20);
        out.extend_from_slice(&s.take_output());
    }
    if body > 0 {
        events.push(format!("body {body}"));
    }
    (events, out)
}

fuzz_target!(|input: Input| {
    let whole = run(&input, false);
    let chunked = run(&input, true);
    assert_eq!(whole, chunked);
});
