//! Time to open a POP3 maildrop of 10,000 messages (scan new/ and cur/, load
//! the UID index, build the listing; no message is read):
//! - `ours_10k`: files named by mailstore (`,S=` and `,W=` in the name);
//! - `foreign_10k_cached`: files named like Postfix/fill-maildir.py (no
//!   `,W=`), CRLF sizes cached in the index by an earlier open;
//! - `foreign_10k_first_open`: the same without an index: every message is
//!   read once to count its CRLF size (the one-time cost after a migration).

use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mailbag_mailstore::{Folder, MaildirOptions, MaildirStore, Mailstore, UserName};

const N: usize = 10_000;

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mailbag-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn message(i: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <{i}@bench>\nSubject: message {i}\n\n").into_bytes();
    for _ in 0..40 {
        m.extend_from_slice(b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\n");
    }
    m
}

fn store(root: &Path) -> MaildirStore {
    let mut o = MaildirOptions::default();
    o.fsync = false;
    MaildirStore::new(root, o).unwrap()
}

fn bench(c: &mut Criterion) {
    let joe = UserName::new("joe").unwrap();

    let ours = scratch("open-ours");
    let s = store(&ours);
    s.create_user(&joe).unwrap();
    for i in 0..N {
        s.deliver(&joe, Folder::Inbox, &mut &message(i)[..])
            .unwrap();
    }
    drop(s.open_maildrop(&joe).unwrap()); // assigns the UIDs once

    let foreign = scratch("open-foreign");
    let f = store(&foreign);
    f.create_user(&joe).unwrap();
    let cur = foreign.join("joe/cur");
    for i in 0..N {
        let m = message(i);
        let name = format!("1764000000.M{i:07}P4242.mta,S={}:2,S", m.len());
        std::fs::write(cur.join(name), m).unwrap();
    }
    drop(f.open_maildrop(&joe).unwrap());

    let mut g = c.benchmark_group("mailstore_open_maildrop");
    g.sample_size(20);
    g.bench_function("ours_10k", |b| {
        b.iter(|| {
            let md = s.open_maildrop(&joe).unwrap();
            assert_eq!(md.entries().len(), N);
        })
    });
    g.bench_function("foreign_10k_cached", |b| {
        b.iter(|| {
            let md = f.open_maildrop(&joe).unwrap();
            assert_eq!(md.entries().len(), N);
        })
    });
    g.sample_size(10);
    g.bench_function("foreign_10k_first_open", |b| {
        b.iter_batched(
            || std::fs::remove_file(foreign.join("joe/mailbag-uidlist")).unwrap(),
            |()| {
                let md = f.open_maildrop(&joe).unwrap();
                assert_eq!(md.entries().len(), N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&ours);
    let _ = std::fs::remove_dir_all(&foreign);
}

criterion_group!(benches, bench);
criterion_main!(benches);
