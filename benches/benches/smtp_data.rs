//! SMTP DATA reception of 1 KB, 10 KB and 1 MB messages (1 KB shows the fixed per-message cost): mailbag-smtp-proto's `DataReceiver` (into
//! a Vec, and zero-copy; with the default bare-LF check and with `BareLfPolicy::Accept`, the
//! peer's semantics), Stalwart's smtp-proto `DataReceiver`, and a plain copy as the ceiling.
//!
//! The input is placed 2 KiB (modulo 4 KiB) away from the output buffer, so that no copy
//! suffers from 4K aliasing (which made the peer's figure vary by half between builds).
//!
//! Before measuring, it prints an interleaved best-of-runs comparison of all variants (robust
//! against the load of a shared machine) and checks the first-line behaviour: `.\r\n` right after DATA is an empty
//! message, and `..x` on the first line is `.x`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailbag_smtp_proto::data::{BareLfPolicy, DataOptions, DataReceiver, DataStep, stuff};

#[path = "util/placed.rs"]
mod placed;
use placed::placed_copy;

/// A plain-text message of about `size` octets: headers, 72-column lines, a few lines that
/// start with a dot (stuffed on the wire).
fn message(size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size + 100);
    body.extend_from_slice(
        b"Received: from client.example.net (client.example.net [192.0.2.7])\r\n\
\tby mx.example.org with ESMTP; Fri, 27 Nov 2026 10:00:00 +0000\r\n\
From: Sender <sender@example.net>\r\nTo: User <user@example.org>\r\n\
Subject: A realistic message body for the benchmark\r\nMessage-ID: <1@example.net>\r\n\r\n",
    );
    let words = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet,",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
    ];
    let mut line = 0usize;
    while body.len() < size {
        if line % 97 == 50 {
            body.extend_from_slice(b"...a line starting with dots\r\n");
        }
        let mut len = 0;
        let mut w = line;
        while len < 70 {
            let word = words[w % words.len()];
            body.extend_from_slice(word.as_bytes());
            body.push(b' ');
            len += word.len() + 1;
            w += 3;
        }
        body.extend_from_slice(b"\r\n");
        line += 1;
    }
    body
}

/// Prints how each receiver handles the first line after DATA.
fn first_line_check() {
    for input in [&b".\r\nQUIT\r\n"[..], b"..x\r\n.\r\n"] {
        let mut rx = DataReceiver::new(DataOptions::default());
        let mut ours = Vec::new();
        let (_, end) = rx.receive_into(input, &mut ours);
        assert!(end.is_some());
        let mut peer_rx = stalwart_smtp_proto::request::receiver::DataReceiver::new();
        let mut peer = Vec::new();
        let done = peer_rx.ingest(&mut input.iter(), &mut peer);
        println!(
            "first line {:?}: mailbag body {:?} (end seen), stalwart body {:?} (end seen: {done})",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&peer),
        );
    }
}

/// Receives `wire` with a copy of the body into `out` (`receive_into`).
#[inline(never)]
fn mailbag_copied(wire: &[u8], opts: &DataOptions, out: &mut Vec<u8>) {
    out.clear();
    let mut rx = DataReceiver::new(opts.clone());
    let (used, end) = rx.receive_into(black_box(wire), out);
    assert_eq!(used, wire.len());
    assert!(matches!(end, Some(Ok(_))));
    black_box(&out);
}

/// Receives `wire` zero-copy (`step`, what the session uses); returns the body length.
#[inline(never)]
fn mailbag_zero_copy(wire: &[u8], opts: &DataOptions) -> usize {
    let mut rx = DataReceiver::new(opts.clone());
    let mut rest = black_box(wire);
    let mut total = 0usize;
    loop {
        let (n, step) = rx.step(rest);
        rest = &rest[n..];
        match step {
            DataStep::Body(b) => total += black_box(b).len(),
            DataStep::End(_) | DataStep::NeedMore => break,
            DataStep::Aborted(_) => unreachable!(),
        }
    }
    total
}

/// Receives `wire` with Stalwart's receiver (which copies into `out`).
#[inline(never)]
fn stalwart(wire: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut rx = stalwart_smtp_proto::request::receiver::DataReceiver::new();
    let mut it = black_box(wire).iter();
    assert!(rx.ingest(&mut it, out));
    black_box(&out);
}

/// Interleaved best-of-runs comparison, printed before criterion's sequential runs (which on
/// a busy machine mostly measure load changes): the variants take turns in short blocks of
/// runs (warm caches and branch predictors, as in criterion's loops), and the best run of
/// each counts.
fn interleaved(name: &str, wire: &[u8], body_len: usize, blocks: usize, out: &mut Vec<u8>) {
    let mut accept = DataOptions::default();
    accept.bare_lf = BareLfPolicy::Accept;
    let strict = DataOptions::default();
    for round in 1..=3 {
        let mut best = [f64::MAX; 6];
        for _ in 0..blocks {
            let mut time = |k: usize, f: &mut dyn FnMut()| {
                for _ in 0..20 {
                    let t = Instant::now();
                    f();
                    best[k] = best[k].min(t.elapsed().as_nanos() as f64);
                }
            };
            time(0, &mut || stalwart(wire, out));
            time(1, &mut || mailbag_copied(wire, &strict, out));
            time(2, &mut || {
                assert_eq!(mailbag_zero_copy(wire, &strict), body_len)
            });
            time(3, &mut || mailbag_copied(wire, &accept, out));
            time(4, &mut || {
                assert_eq!(mailbag_zero_copy(wire, &accept), body_len)
            });
            time(5, &mut || {
                out.clear();
                out.extend_from_slice(black_box(wire));
                black_box(&*out);
            });
        }
        let gib = |ns: f64| wire.len() as f64 / ns * 1e9 / f64::from(1u32 << 30);
        let r = |k: usize| best[0] / best[k];
        println!(
            "interleaved {name} round {round} (GiB/s, ratio to stalwart): stalwart {:.1} | \
             default copied {:.1} ({:.2}x), zero-copy {:.1} ({:.2}x) | Accept copied {:.1} \
             ({:.2}x), zero-copy {:.1} ({:.2}x) | copy {:.1}",
            gib(best[0]),
            gib(best[1]),
            r(1),
            gib(best[2]),
            r(2),
            gib(best[3]),
            r(3),
            gib(best[4]),
            r(4),
            gib(best[5]),
        );
    }
}

fn data(c: &mut Criterion) {
    first_line_check();
    for (name, size, blocks) in [
        ("1KB", 1024, 400),
        ("10KB", 10 * 1024, 100),
        ("1MB", 1024 * 1024, 5),
    ] {
        let body = message(size);
        let mut stuffed = Vec::new();
        stuff(&body, &mut stuffed);
        let mut out = Vec::with_capacity(stuffed.len());
        let (storage, off) = placed_copy(&stuffed, &out);
        let wire = &storage[off..off + stuffed.len()];
        interleaved(name, wire, body.len(), blocks, &mut out);
    }
    let mut g = c.benchmark_group("smtp_data");
    for (name, size) in [("1KB", 1024), ("10KB", 10 * 1024), ("1MB", 1024 * 1024)] {
        let body = message(size);
        let mut stuffed = Vec::new();
        stuff(&body, &mut stuffed);
        g.throughput(Throughput::Bytes(stuffed.len() as u64));
        let mut out = Vec::with_capacity(stuffed.len());
        let (storage, off) = placed_copy(&stuffed, &out);
        let wire = &storage[off..off + stuffed.len()];

        g.bench_with_input(BenchmarkId::new("mailbag", name), &wire, |b, wire| {
            b.iter(|| mailbag_copied(wire, &DataOptions::default(), &mut out))
        });

        g.bench_with_input(
            BenchmarkId::new("mailbag_zero_copy", name),
            &wire,
            |b, wire| {
                b.iter(|| assert_eq!(mailbag_zero_copy(wire, &DataOptions::default()), body.len()))
            },
        );

        // Same semantics as the peer: bare LF kept as data (end of data still strict).
        let mut accept = DataOptions::default();
        accept.bare_lf = BareLfPolicy::Accept;
        g.bench_with_input(
            BenchmarkId::new("mailbag_accept", name),
            &wire,
            |b, wire| b.iter(|| mailbag_copied(wire, &accept, &mut out)),
        );

        g.bench_with_input(
            BenchmarkId::new("mailbag_accept_zero_copy", name),
            &wire,
            |b, wire| b.iter(|| assert_eq!(mailbag_zero_copy(wire, &accept), body.len())),
        );

        g.bench_with_input(BenchmarkId::new("stalwart", name), &wire, |b, wire| {
            b.iter(|| stalwart(wire, &mut out))
        });

        g.bench_with_input(BenchmarkId::new("copy", name), &wire, |b, wire| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(wire));
                black_box(&out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, data);
criterion_main!(benches);
