//! The sans-IO SMTP client session (`mailbag_smtp_proto::client::ClientSession`): one whole
//! connection (greeting, EHLO, a pipelined transaction with 1 or 40 recipients and a 10 KB
//! body streamed in 4 KB pieces, QUIT) against a canned server reply stream, fed whole and
//! in 64-octet reads. Throughput in octets of server replies plus client output; also the
//! dot-stuffer alone (`data::Stuffer`) against a plain copy.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{ClientEvent, ClientOptions, ClientSession, Transaction};
use mailbag_smtp_proto::data::Stuffer;
use mailbag_smtp_proto::types::HeloName;

fn body(size: usize) -> Vec<u8> {
    let mut b = b"From: a@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    let mut i = 0;
    while b.len() < size {
        if i % 50 == 0 {
            b.extend_from_slice(b".a line that needs stuffing\r\n");
        }
        b.extend_from_slice(b"The quick brown fox jumps over the lazy dog 0123456789 abcdef\r\n");
        i += 1;
    }
    b
}

fn transaction(n: usize) -> Transaction<'static> {
    let (from, _) = parse_reverse_path(b"<alice@example.org>").expect("valid");
    let mut t = Transaction::new(from.into_owned());
    for i in 0..n {
        let a = format!("<user{i}@example.net>");
        let (to, _) = parse_forward_path(a.as_bytes()).expect("valid");
        t = t.recipient(to.into_owned());
    }
    t.params.size = Some(10_240);
    t
}

fn server_stream(n: usize) -> Vec<u8> {
    let mut s = b"220 mx.example.net ESMTP\r\n250-mx.example.net\r\n250-PIPELINING\r\n\
250-SIZE 10240000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n250 2.1.0 Sender OK\r\n"
        .to_vec();
    for _ in 0..n {
        s.extend_from_slice(b"250 2.1.5 Recipient OK\r\n");
    }
    s.extend_from_slice(b"354 Start mail input\r\n250 2.0.0 queued as 1234\r\n221 2.0.0 Bye\r\n");
    s
}

/// Runs one connection; returns octets written by the client.
fn run(stream: &[u8], read: usize, txn: &Transaction<'_>, body: &[u8]) -> usize {
    let helo = HeloName::try_from("relay.example.org").expect("valid");
    let mut c = ClientSession::new(helo, ClientOptions::default());
    let mut written = 0;
    let mut sent = false;
    for piece in stream.chunks(read) {
        c.feed(piece);
        while let Some(ev) = c.next_event() {
            match ev {
                ClientEvent::Ready if !sent => {
                    c.send_mail(txn).expect("ready");
                    sent = true;
                }
                ClientEvent::Ready => c.quit(),
                ClientEvent::SendBody => {
                    for chunk in body.chunks(4096) {
                        c.send_body(chunk).expect("body");
                        written += c.output().len();
                        let n = c.output().len();
                        c.consume_output(n);
                    }
                    c.end_body().expect("body");
                }
                ClientEvent::TransactionComplete(r) => {
                    black_box(r);
                }
                _ => {}
            }
        }
        written += c.output().len();
        let n = c.output().len();
        c.consume_output(n);
    }
    assert!(c.is_closed());
    written
}

fn bench(c: &mut Criterion) {
    let body = body(10_240);
    let mut g = c.benchmark_group("smtp_client_session");
    for n in [1usize, 40] {
        let txn = transaction(n);
        let stream = server_stream(n);
        let out = run(&stream, stream.len(), &txn, &body);
        g.throughput(Throughput::Bytes((stream.len() + out) as u64));
        for read in [stream.len(), 64] {
            let id = format!("{n}rcpt_read{}", if read == 64 { "64" } else { "all" });
            g.bench_with_input(BenchmarkId::from_parameter(id), &read, |b, &read| {
                b.iter(|| black_box(run(black_box(&stream), read, &txn, &body)));
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("smtp_client_stuffer");
    let big = self::body(1 << 20);
    g.throughput(Throughput::Bytes(big.len() as u64));
    let mut out = Vec::with_capacity(big.len() + 65_536);
    g.bench_function("stuffer_1MB_64KB_pieces", |b| {
        b.iter(|| {
            out.clear();
            let mut s = Stuffer::new();
            for chunk in big.chunks(65_536) {
                s.chunk(black_box(chunk), &mut out);
            }
            s.finish(&mut out);
            black_box(out.len())
        });
    });
    g.bench_function("copy_1MB", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&big));
            black_box(out.len())
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
