//! The relay queue: messages per second through `enqueue` + `commit` (body
//! fsync, envelope fsync, rename, directory fsync: what must happen before
//! an SMTP `250`), and the whole life of a queued message (enqueue, one
//! envelope update after the next hop's reply, remove). Baseline in the same
//! run: a plain Maildir delivery of the same 10 KiB message, with fsync.
//! The `nofsync` variants show the CPU and file-system cost without the disk.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailbag_mailstore::queue::{
    NewEnvelope, Outcome, Queue, QueueOptions, Recipient, RecipientState,
};
use mailbag_mailstore::{Folder, MaildirOptions, MaildirStore, Mailstore, UserName};

/// Messages kept in the queue before it is emptied (untimed).
const BATCH: u64 = 1000;

fn message() -> Vec<u8> {
    let mut m =
        b"From: bench@example.org\r\nTo: joe@example.net\r\nSubject: bench\r\n\r\n".to_vec();
    while m.len() < 10 * 1024 {
        m.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n",
        );
    }
    m.truncate(10 * 1024);
    m
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mailbag-bench-queue-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn envelope() -> NewEnvelope {
    let mut env = NewEnvelope::new("bench@example.org", 1_700_000_000);
    env.client_ip = Some("192.0.2.7".parse().unwrap());
    env.recipients.push(Recipient::new("joe@example.net"));
    env.recipients.push(Recipient::new("kim@example.com"));
    env
}

fn enqueue(q: &Queue, env: &NewEnvelope, msg: &[u8]) -> mailbag_mailstore::queue::QueueId {
    let mut w = q.enqueue(env).unwrap();
    for chunk in msg.chunks(4096) {
        w.write_all(chunk).unwrap();
    }
    w.commit().unwrap()
}

fn empty(q: &Queue) {
    let lock = q.lock_delivery().unwrap();
    for id in lock.due(u64::MAX).unwrap() {
        lock.remove(&id).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let msg = message();
    let env = envelope();
    let mut g = c.benchmark_group("mailstore_queue");
    g.throughput(Throughput::Elements(1));

    for fsync in [true, false] {
        let tag = if fsync { "fsync" } else { "nofsync" };

        // Baseline: a Maildir delivery of the same message.
        let root = scratch(&format!("maildir-{tag}"));
        let mut mopts = MaildirOptions::default();
        mopts.fsync = fsync;
        let store = MaildirStore::new(&root, mopts).unwrap();
        let mut user_no = 0u64;
        g.bench_function(format!("maildir_deliver_{tag}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    user_no += 1;
                    let user = UserName::new(format!("u{user_no}")).unwrap();
                    store.create_user(&user).unwrap();
                    let n = (iters - done).min(BATCH);
                    let t = Instant::now();
                    for _ in 0..n {
                        let mut d = store.begin_delivery(&user, Folder::Inbox).unwrap();
                        for chunk in msg.chunks(4096) {
                            d.write_chunk(chunk).unwrap();
                        }
                        d.commit().unwrap();
                    }
                    total += t.elapsed();
                    done += n;
                }
                total
            })
        });
        let _ = std::fs::remove_dir_all(&root);

        let mut opts = QueueOptions::default();
        opts.fsync = fsync;
        let dir = scratch(&format!("q-{tag}"));
        let q = Queue::open(&dir, opts).unwrap();

        g.bench_function(format!("enqueue_commit_{tag}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(BATCH);
                    let t = Instant::now();
                    for _ in 0..n {
                        enqueue(&q, &env, &msg);
                    }
                    total += t.elapsed();
                    done += n;
                    empty(&q);
                }
                total
            })
        });

        let lock = q.lock_delivery().unwrap();
        g.bench_function(format!("enqueue_update_remove_{tag}"), |b| {
            b.iter(|| {
                let id = enqueue(&q, &env, &msg);
                let mut e = lock.envelope(&id).unwrap();
                for r in &mut e.recipients {
                    r.state = RecipientState::Delivered(Outcome {
                        at: 1_700_000_001,
                        host: Some("mx.example.net".into()),
                        reply: "250 2.0.0 ok".into(),
                    });
                }
                e.attempts = 1;
                lock.update(&e).unwrap();
                lock.remove(&id).unwrap();
            })
        });
        drop(lock);
        drop(q);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
