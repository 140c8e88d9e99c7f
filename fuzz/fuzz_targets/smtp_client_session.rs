//! Client session over arbitrary server replies, read sizes and caller choices: no panic, no
//! hang, bounded buffers, and the same events and output whatever the chunking.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{ClientOptions, ClientSession, ClientEvent, Transaction};
use mailbag_smtp_proto::types::HeloName;

#[derive(Debug, Arbitrary)]
struct Input {
    data: Vec<u8>,
    reads: Vec<u8>,
    pipelining: bool,
    recipients: u8,
    body: Vec<u8>,
    quit_early: bool,
}

fn run(input: &Input, chunked: bool) -> (Vec<ClientEvent>, Vec<u8>) {
    let mut opts = ClientOptions::default();
    opts.pipelining = input.pipelining;
    opts.max_buffered = 4096;
    let Ok(helo) = HeloName::try_from("fuzz.example") else {
        return (Vec::new(), Vec::new());
    };
    let mut c = ClientSession::new(helo, opts);
    let Ok((from, _)) = parse_reverse_path(b"<a@example.org>") else {
        return (Vec::new(), Vec::new());
    };
    let mut txn = Transaction::new(from);
    for _ in 0..(input.recipients % 5).max(1) {
        if let Ok((to, _)) = parse_forward_path(b"<b@example.net>") {
            txn = txn.recipient(to);
        }
    }
    txn.params.size = Some(input.body.len() as u64);
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut txns = 0;
    if input.quit_early {
        c.quit();
    }
    loop {
        while let Some(ev) = c.next_event() {
            match &ev {
                ClientEvent::Ready if txns < 3 => {
                    txns += 1;
                    c.send_mail(&txn).expect("ready means ready");
                }
                ClientEvent::Ready => c.quit(),
                ClientEvent::SendBody => {
                    c.send_body(&input.body).expect("body");
                    c.end_body().expect("body");
                }
                ClientEvent::StartTls => c.tls_established(),
                _ => {}
            }
            events.push(ev);
            assert!(events.len() < 10_000, "event flood");
        }
        out.extend_from_slice(&c.take_output());
        if c.is_closed() || pos >= input.data.len() {
            break;
        }
        let n = if chunked {
            usize::from(input.reads.get(i).copied().unwrap_or(200)).max(1)
        } else {
            input.data.len()
        };
        i += 1;
        let end = (pos + n).min(input.data.len());
        c.feed(&input.data[pos..end]);
        pos = end;
    }
    if !c.is_closed() {
        c.connection_closed();
        while let Some(ev) = c.next_event() {
            events.push(ev);
        }
    }
    assert!(c.is_closed());
    (events, out)
}

fuzz_target!(|input: Input| {
    let whole = run(&input, false);
    let chunked = run(&input, true);
    // StartTls drops buffered plaintext, so chunking may legitimately differ after it.
    if !whole.0.contains(&ClientEvent::StartTls) && !chunked.0.contains(&ClientEvent::StartTls) {
        assert_eq!(whole, chunked);
    }
});
