//! SMTP command parsing: a realistic pipelined command stream through mailbag-smtp-proto
//! (framer + parser) and through Stalwart's smtp-proto (`Request::parse`), plus a plain copy
//! of the same bytes as the ceiling. Before measuring, it prints an interleaved best-of-runs
//! comparison of the two parsers (robust against the load of a shared machine).

use std::hint::black_box;
use std::time::Instant;

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

/// Parses the stream with mailbag-smtp-proto; returns the number of commands parsed.
#[inline(never)]
fn mailbag(input: &[u8], framer: &mut LineFramer) -> usize {
    let mut rest = input;
    let mut n = 0;
    while let Frame::Line { line, consumed } = framer.frame(rest) {
        let cmd = parse_command(&rest[line]);
        black_box(&cmd);
        n += usize::from(cmd.is_ok());
        rest = &rest[consumed..];
    }
    n
}

/// Parses the stream with Stalwart's smtp-proto; returns the number of commands parsed.
#[inline(never)]
fn stalwart(input: &[u8]) -> usize {
    let mut it = input.iter();
    let mut n = 0;
    while it.len() > 0 {
        let r = stalwart_smtp_proto::Request::parse(&mut it);
        black_box(&r);
        n += usize::from(r.is_ok());
    }
    n
}

/// On a busy machine criterion's one-after-the-other runs mostly measure the load changes
/// between them, so this prints an interleaved figure first: the two parsers alternate in
/// short blocks of runs (warm caches and branch predictors, as in criterion's loops), and
/// the best run of each counts (3 rounds of 60 blocks of 50 runs).
fn interleaved(input: &[u8], count: usize) {
    let mut framer = LineFramer::new(512);
    for round in 1..=3 {
        let (mut ours, mut peer) = (f64::MAX, f64::MAX);
        for _ in 0..60 {
            for _ in 0..50 {
                let t = Instant::now();
                assert_eq!(mailbag(black_box(input), &mut framer), count);
                ours = ours.min(t.elapsed().as_nanos() as f64);
            }
            for _ in 0..50 {
                let t = Instant::now();
                assert_eq!(stalwart(black_box(input)), count);
                peer = peer.min(t.elapsed().as_nanos() as f64);
            }
        }
        let per = |ns: f64| ns / count as f64;
        println!(
            "interleaved round {round}: mailbag {:.1} ns/command, stalwart {:.1} ns/command, \
             mailbag/stalwart throughput {:.2}x",
            per(ours),
            per(peer),
            peer / ours
        );
    }
}

fn commands(c: &mut Criterion) {
    let input = stream();
    let count = input.iter().filter(|&&b| b == b'\n').count();
    interleaved(&input, count);
    let mut g = c.benchmark_group("smtp_commands");
    g.throughput(Throughput::Bytes(input.len() as u64));

    g.bench_function("mailbag", |b| {
        let mut framer = LineFramer::new(512);
        b.iter(|| assert_eq!(mailbag(black_box(&input[..]), &mut framer), count))
    });

    g.bench_function("stalwart", |b| {
        b.iter(|| assert_eq!(stalwart(black_box(&input[..])), count))
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
