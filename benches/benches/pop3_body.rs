//! RETR body encoding (dot-stuffing, bare LF to CRLF, terminator) measured
//! against a plain copy of the same bytes, in 64 KiB chunks, in the same run.
//! The goal is at least half of copy speed.
//!
//! Before criterion's runs it prints an interleaved best-of comparison.
//!
//! * `copy`: `extend_from_slice` of every chunk (what sending the message
//!   unchanged through an output buffer costs).
//! * `encode`: `BodyEncoder::encode_chunk`, which copies into a `Vec`.
//! * `encode_segments`: `BodyEncoder::encode_segments`, zero-copy: the
//!   borrowed runs and static inserts are collected as `IoSlice`s, ready for
//!   `write_vectored` from the read buffer, as a server would.

use std::io::IoSlice;
use std::time::Instant;

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use mailbag_pop3_proto::codec::BodyEncoder;

#[path = "util/placed.rs"]
mod placed;
use placed::placed_copy;

const CHUNK: usize = 64 * 1024;

/// A 1 MiB message of ~72-octet lines, some starting with a dot.
fn message(eol: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"From: a@example.test");
    m.extend_from_slice(eol);
    m.extend_from_slice(b"Subject: bench");
    m.extend_from_slice(eol);
    m.extend_from_slice(eol);
    let mut i = 0u32;
    while m.len() < 1 << 20 {
        if i % 50 == 0 {
            m.extend_from_slice(b".a line that starts with a dot and must be stuffed on the wire");
        } else {
            m.extend_from_slice(
                b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmo",
            );
        }
        m.extend_from_slice(eol);
        i += 1;
    }
    m
}

/// `copy` of the benchmark: every chunk appended to `out`.
#[inline(never)]
fn copy(msg: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    for chunk in black_box(msg).chunks(CHUNK) {
        out.extend_from_slice(chunk);
    }
    out.len()
}

/// `encode` of the benchmark: `encode_chunk` into `out`.
#[inline(never)]
fn encode(msg: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut enc = BodyEncoder::new();
    for chunk in black_box(msg).chunks(CHUNK) {
        enc.encode_chunk(chunk, out);
    }
    enc.finish(out);
    out.len()
}

/// `encode_segments` of the benchmark: the segments collected as `IoSlice`s.
#[inline(never)]
fn segments<'a>(msg: &'a [u8], iov: &mut Vec<IoSlice<'a>>) -> usize {
    iov.clear();
    let mut enc = BodyEncoder::new();
    for chunk in black_box(msg).chunks(CHUNK) {
        enc.encode_segments(chunk, |seg| iov.push(IoSlice::new(seg)));
    }
    enc.finish_segments(|seg| iov.push(IoSlice::new(seg)));
    iov.len()
}

/// Interleaved best-of-runs comparison, printed before criterion's
/// sequential runs (which on a shared machine partly measure load changes):
/// the three variants take turns in short blocks, and each one's best run
/// counts.
fn interleaved(name: &str, msg: &[u8], out: &mut Vec<u8>) {
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(1 << 16);
    for round in 1..=3 {
        let mut best = [f64::MAX; 3];
        for _ in 0..40 {
            for _ in 0..10 {
                let t = Instant::now();
                black_box(copy(msg, out));
                best[0] = best[0].min(t.elapsed().as_nanos() as f64);
                let t = Instant::now();
                black_box(encode(msg, out));
                best[1] = best[1].min(t.elapsed().as_nanos() as f64);
                let t = Instant::now();
                black_box(segments(msg, &mut iov));
                best[2] = best[2].min(t.elapsed().as_nanos() as f64);
            }
        }
        let gib = |ns: f64| msg.len() as f64 / ns * 1e9 / f64::from(1u32 << 30);
        println!(
            "interleaved {name} round {round} (GiB/s, ratio to copy): copy {:.1} | encode {:.1} \
             ({:.2}x) | encode_segments {:.1} ({:.2}x)",
            gib(best[0]),
            gib(best[1]),
            best[0] / best[1],
            gib(best[2]),
            best[0] / best[2],
        );
    }
}

fn bench(c: &mut Criterion) {
    for (name, eol) in [("crlf", &b"\r\n"[..]), ("bare_lf", &b"\n"[..])] {
        let mut out = Vec::with_capacity((1 << 21) + 4096);
        let original = message(eol);
        let (storage, off) = placed_copy(&original, &out);
        let msg = &storage[off..off + original.len()];
        interleaved(name, msg, &mut out);
        let mut g = c.benchmark_group(format!("pop3_body/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("copy", |b| b.iter(|| copy(msg, &mut out)));
        g.bench_function("encode", |b| b.iter(|| encode(msg, &mut out)));
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(1 << 16);
        g.bench_function("encode_segments", |b| b.iter(|| segments(msg, &mut iov)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
