//! POP3 command parsing on a realistic pipelined stream: a client that logs
//! in, lists, and downloads and deletes 500 messages, all pipelined.
//! Measured: framer + nom parser alone, and the whole server session.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use mailbag_pop3_proto::codec::{LineFramer, MAX_COMMAND_LINE, parse_command};
use mailbag_pop3_proto::session::{Event, MessageInfo, ServerConfig, ServerSession};
use mailbag_pop3_proto::types::Uid;

const MESSAGES: usize = 500;

fn stream() -> Vec<u8> {
    let mut s =
        b"CAPA\r\nUSER joe@example.test\r\nPASS correct horse battery\r\nSTAT\r\nLIST\r\nUIDL\r\n"
            .to_vec();
    for i in 1..=MESSAGES {
        s.extend_from_slice(
            format!("LIST {i}\r\nUIDL {i}\r\nTOP {i} 10\r\nRETR {i}\r\nDELE {i}\r\n").as_bytes(),
        );
    }
    s.extend_from_slice(b"NOOP\r\nQUIT\r\n");
    s
}

fn bench(c: &mut Criterion) {
    let input = stream();
    let mut g = c.benchmark_group("pop3_parse");
    g.throughput(Throughput::Bytes(input.len() as u64));

    g.bench_function("framer+parse_command", |b| {
        b.iter(|| {
            let mut framer = LineFramer::new();
            framer.push(black_box(&input));
            let mut n = 0usize;
            while let Some(Ok(line)) = framer.next_line(MAX_COMMAND_LINE) {
                if parse_command(line).is_ok() {
                    n += 1;
                }
            }
            assert_eq!(n, 7 + 5 * MESSAGES + 1);
            n
        })
    });

    let listing: Vec<MessageInfo> = (0..MESSAGES)
        .map(|i| MessageInfo::new(2000, Uid::try_from(format!("uid{i:08}")).unwrap()))
        .collect();
    g.bench_function("server_session(empty bodies)", |b| {
        b.iter(|| {
            let mut s = ServerSession::new(ServerConfig::default()).unwrap();
            s.feed(black_box(&input));
            let mut out = 0usize;
            while let Some(ev) = s.next_event() {
                match ev {
                    Event::Login(_) => s.accept_login().unwrap(),
                    Event::OpenMaildrop { .. } => s.maildrop_opened(listing.clone()).unwrap(),
                    Event::Retrieve(_) => s.message_end().unwrap(),
                    Event::Commit { .. } => s.commit_done(Ok(())).unwrap(),
                    _ => unreachable!(),
                }
                out += s.output().len();
                s.consume_output(usize::MAX);
            }
            out + s.output().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
