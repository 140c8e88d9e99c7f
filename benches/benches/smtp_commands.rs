//! SMTP command parsing: a realistic pipelined command stream through mailbag-smtp-proto
//! (framer + parser) and through Stalwart's smtp-proto (`Request::parse`), plus a plain copy
//! of the same bytes as the ceiling.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailbag_smtp_proto::codec::{Frame, LineFramer, parse_command};

/// EHLO, MAIL with parameters, 40 RCPTs, DATA, then (next transaction) RSET, NOOP, QUIT.
fn stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"EHLO client-17.mail.example.net\r\n");
    s.extend_from_slice(
        b"MAIL FROM:<newsletter-bounces+user=example.org@lists.example.net> SIZE=48213 BODY=8BITMIME\r\n",
    );
    for i in 0..40 {
        s.extend_from_slice(
            format!(
                "RCPT TO:<recipient.number{i}@destination-{}.example.org>\r\n",
                i % 7
            )
            .as_bytes(),
        );
    }
    s.extend_from_slice(b"DATA\r\n");
    s.extend_from_slice(b"RSET\r\nNOOP\r\nQUIT\r\n");
    s
}

fn commands(c: &mut Criterion) {
    let input = stream();
    let count = input.iter().filter(|&&b| b == b'\n').count();
    let mut g = c.benchmark_group("smtp_commands");
    g.throughput(Throughput::Bytes(input.len() as u64));

    g.bench_function("mailbag", |b| {
        let mut framer = LineFramer::new(512);
        b.iter(|| {
            let mut rest = black_box(&input[..]);
            let mut n = 0;
            while let Frame::Line { line, consumed } = framer.frame(rest) {
                let cmd = parse_command(&rest[line]);
                black_box(&cmd);
                n += usize::from(cmd.is_ok());
                rest = &rest[consumed..];
            }
            assert_eq!(n, count);
        })
    });

    g.bench_function("stalwart", |b| {
        b.iter(|| {
            let mut it = black_box(&input[..]).iter();
            let mut n = 0;
            while it.len() > 0 {
                let r = stalwart_smtp_proto::Request::parse(&mut it);
                black_box(&r);
                n += usize::from(r.is_ok());
            }
            assert_eq!(n, count);
        })
    });

    g.bench_function("copy", |b| {
        let mut out = Vec::with_capacity(input.len());
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&input[..]));
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, commands);
criterion_main!(benches);
