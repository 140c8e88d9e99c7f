//! mailbagd's passwd-file user database at ISP size: loading a configuration
//! whose passwd-file holds 100,000 users (every one with an `{ARGON2ID}`
//! hash as `doveadm pw` writes it), and what a login costs next to one bare hash verification (the ratio shows
//! that finding the user among 100,000 adds nothing measurable).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use mailbagd::config::{Config, PasswordHash};
use mailbagd::password_hash::HashScheme;

const USERS: usize = 100_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = PasswordHash::make(HashScheme::Argon2id, b"secret").expect("hash");
    let mut text = String::with_capacity(USERS * 140);
    for i in 0..USERS {
        text.push_str(&format!(
            "user{i:06}:{}:1000:1000::/home/user{i:06}::spam_folder=Spam\n",
            hash.to_dovecot()
        ));
    }
    let file = dir.path().join("passwd");
    std::fs::write(&file, &text).expect("write passwd-file");
    let toml = format!(
        "data_dir = {:?}\n[userdb]\npasswd_file = {file:?}\n",
        dir.path().join("data")
    );

    // Once, outside criterion: a first load, as at start-up. (Its memory is
    // measured on the server process instead: see the server README.)
    let t0 = Instant::now();
    let config = Config::from_toml_str(&toml).expect("config");
    println!(
        "userdb: {USERS} users, first load in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );

    let mut g = c.benchmark_group("userdb_100k");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("load_config", |b| {
        b.iter(|| black_box(Config::from_toml_str(&toml).expect("config")))
    });
    // A login of the last user of the file vs. the bare hash check it makes.
    g.bench_function("login_user099999", |b| {
        b.iter(|| black_box(config.authenticate("user099999", b"secret").is_some()))
    });
    g.bench_function("one_hash_verification", |b| {
        b.iter(|| black_box(hash.verify(b"secret")))
    });
    g.finish();
}

// criterion's macros make undocumented public functions.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(harness::benches);
