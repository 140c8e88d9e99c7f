//! Deliveries per second into a Maildir INBOX, with fsync (the honest setting:
//! file fsync, rename, directory fsync) and without; the memory backend as a
//! baseline. 10 KiB messages with LF line endings, written in 4 KiB chunks.
//! Every 2,000 deliveries the bench switches to a fresh user (untimed), so
//! directories stay a realistic size and nothing is deleted while measuring.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailbag_mailstore::{Folder, MaildirOptions, MaildirStore, Mailstore, MemoryStore, UserName};

const PER_USER: u64 = 2000;

fn message() -> Vec<u8> {
    let mut m = b"From: bench@example.org\nTo: joe@example.test\nSubject: bench\n\n".to_vec();
    while m.len() < 10 * 1024 {
        m.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again and again.\n",
        );
    }
    m.truncate(10 * 1024);
    m
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mailbag-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn deliver(store: &dyn Mailstore, user: &UserName, msg: &[u8]) {
    let mut d = store.begin_delivery(user, Folder::Inbox).unwrap();
    for chunk in msg.chunks(4096) {
        d.write_chunk(chunk).unwrap();
    }
    d.commit().unwrap();
}

/// Times `iters` deliveries spread over `threads` threads, moving to a new
/// user every `PER_USER` deliveries outside the timed part.
fn timed(
    store: &MaildirStore,
    next_user: &mut u64,
    msg: &[u8],
    iters: u64,
    threads: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        *next_user += 1;
        let user = UserName::new(format!("u{next_user}")).unwrap();
        store.create_user(&user).unwrap();
        let batch = (iters - done).min(PER_USER);
        let t = Instant::now();
        std::thread::scope(|sc| {
            for k in 0..threads {
                let user = &user;
                sc.spawn(move || {
                    for _ in (k..batch).step_by(threads as usize) {
                        deliver(store, user, msg);
                    }
                });
            }
        });
        total += t.elapsed();
        done += batch;
    }
    total
}

fn bench(c: &mut Criterion) {
    let msg = message();
    let mut g = c.benchmark_group("mailstore_deliver_10KiB");
    g.throughput(Throughput::Elements(1));
    for (name, fsync, threads) in [
        ("maildir_fsync", true, 1),
        ("maildir_no_fsync", false, 1),
        // Four SMTP sessions delivering at once (as the Postfix peer bench
        // does): concurrent fsyncs share journal commits.
        ("maildir_fsync_4_threads", true, 4),
    ] {
        let dir = scratch(name);
        let mut o = MaildirOptions::default();
        o.fsync = fsync;
        let store = MaildirStore::new(&dir, o).unwrap();
        let mut next_user = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| timed(&store, &mut next_user, &msg, iters, threads))
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    let joe = UserName::new("joe").unwrap();
    let mem = MemoryStore::new();
    mem.create_user(&joe).unwrap();
    let mut count = 0u32;
    g.bench_function("memory", |b| {
        b.iter(|| {
            deliver(&mem, &joe, &msg);
            count += 1;
            // Keep memory flat: drop what was delivered now and then.
            if count % 1000 == 0 {
                let later = std::time::SystemTime::now() + Duration::from_secs(1);
                mem.expunge_older_than(&joe, Folder::Inbox, later).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
