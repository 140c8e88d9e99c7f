//! Subject tagging throughput on 10 KB messages (CRLF, a folded Subject with an encoded
//! word, forged X-Spam-* headers to remove): the streaming rewriter fed in 4 KiB chunks
//! (spam: tag + headers; ham: headers only; release: untag), the whole-message helper,
//! and the built-in scorer on the same message.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use mailbag_spam_tag::{
    BuiltinScorer, HeaderAction, HeaderRewriter, RewriteOptions, RuleName, Score, Scorer, Verdict,
    rewrite_message,
};

fn message() -> Vec<u8> {
    let mut m = b"Return-Path: <sender@example.net>\r\n\
Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n\tby mail.example.org with ESMTP id 4F2A1\r\n\tfor <joe@example.org>; Fri, 27 Nov 2026 10:00:00 +0000\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <20261127100000.1234@example.net>\r\n\
From: Sender <sender@example.net>\r\n\
To: Joe <joe@example.org>\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from the bench, with a subject that is long\r\n\
 enough to be folded over two lines\r\n\
X-Spam-Flag: NO\r\n\
X-Spam-Status: No, score=-100.0 required=5.0 tests=FORGED\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n"
        .to_vec();
    while m.len() < 10 * 1024 {
        m.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n",
        );
    }
    m.truncate(10 * 1024);
    m
}

fn actions() -> Vec<(&'static str, HeaderAction)> {
    let rules: Vec<RuleName> = ["BAYES_99", "HTML_MESSAGE", "MISSING_MID", "URIBL_BLOCKED"]
        .iter()
        .map(|r| RuleName::new(r).unwrap())
        .collect();
    vec![
        (
            "spam_tag",
            HeaderAction::Mark {
                verdict: Verdict::new(Score::from_tenths(73), rules.clone()),
                required: Score::DEFAULT_THRESHOLD,
                tag_subject: true,
            },
        ),
        (
            "ham_headers",
            HeaderAction::Mark {
                verdict: Verdict::new(Score::from_tenths(12), rules),
                required: Score::DEFAULT_THRESHOLD,
                tag_subject: true,
            },
        ),
        ("untag", HeaderAction::Untag),
    ]
}

fn bench(c: &mut Criterion) {
    let msg = message();
    let opts = RewriteOptions::default();
    let mut g = c.benchmark_group("spam_tagging_10k");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    for (name, action) in actions() {
        let mut out = Vec::with_capacity(msg.len() + 1024);
        g.bench_with_input(BenchmarkId::new("stream_4k", name), &msg, |b, msg| {
            b.iter(|| {
                out.clear();
                let mut rw = HeaderRewriter::new(action.clone(), opts.clone());
                for chunk in msg.chunks(4096) {
                    rw.feed(chunk, &mut out).unwrap();
                }
                rw.finish(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    let (_, spam) = actions().swap_remove(0);
    g.bench_with_input(BenchmarkId::new("whole", "spam_tag"), &msg, |b, msg| {
        b.iter(|| black_box(rewrite_message(msg, spam.clone(), opts.clone()).unwrap()))
    });
    let scorer = BuiltinScorer::default();
    g.bench_with_input(BenchmarkId::new("builtin_scorer", "10k"), &msg, |b, msg| {
        b.iter(|| black_box(scorer.score(msg)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
