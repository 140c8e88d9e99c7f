//! mailbag-pop-before-smtp: relay-table lookups per second with 100,000 entries,
//! logins (refresh and insert with eviction), and a whole policy request cycle
//! (decode + decide + encode).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailbag_pop_before_smtp::policy::{PolicyDecoder, PolicyLimits};
use mailbag_pop_before_smtp::{RelayOptions, RelayTable, SharedRelayTable};

const ENTRIES: u32 = 100_000;
const BATCH: u32 = 1_000;

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn v6(i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
}

fn full_table(addr: fn(u32) -> IpAddr, t0: Instant) -> RelayTable {
    let opts =
        RelayOptions::default().with_max_entries(NonZeroUsize::new(ENTRIES as usize).unwrap());
    let mut table = RelayTable::new(opts);
    for i in 0..ENTRIES {
        table.record_login(
            addr(i),
            "user@example.test",
            t0 + Duration::from_micros(u64::from(i)),
        );
    }
    assert_eq!(table.len(), ENTRIES as usize);
    table
}

fn lookups(c: &mut Criterion) {
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(60);
    let table4 = full_table(v4, t0);
    let table6 = full_table(v6, t0);
    // Spread the probes over the whole table (a stride coprime with ENTRIES).
    let probes: Vec<u32> = (0..BATCH).map(|k| (k * 7_919) % ENTRIES).collect();

    let mut g = c.benchmark_group("pbs_table/lookup_100k");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    g.bench_function("ipv4_hit", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|&&i| table4.is_authorized(black_box(v4(i)), now))
                .count()
        })
    });
    g.bench_function("ipv4_miss", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|&&i| table4.is_authorized(black_box(v4(i + ENTRIES)), now))
                .count()
        })
    });
    g.bench_function("ipv4_mapped_hit", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|&&i| {
                    let IpAddr::V4(a) = v4(i) else { unreachable!() };
                    table4.is_authorized(black_box(IpAddr::V6(a.to_ipv6_mapped())), now)
                })
                .count()
        })
    });
    g.bench_function("ipv6_hit", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|&&i| table6.is_authorized(black_box(v6(i)), now))
                .count()
        })
    });
    let shared = SharedRelayTable::from(table4.clone());
    g.bench_function("shared_ipv4_hit", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|&&i| shared.is_authorized(black_box(v4(i)), now))
                .count()
        })
    });
    g.finish();
}

fn logins(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("pbs_table/login_100k");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    // Refresh existing entries (table stays full, nothing evicted).
    let mut table = full_table(v4, t0);
    let mut clock = t0 + Duration::from_secs(1);
    g.bench_function("refresh", |b| {
        b.iter(|| {
            for k in 0..BATCH {
                clock += Duration::from_nanos(1);
                table.record_login(v4((k * 7_919) % ENTRIES), "user@example.test", clock);
            }
        })
    });
    // New addresses into a full table: each insert evicts the oldest entry.
    let mut table = full_table(v4, t0);
    let mut next = ENTRIES;
    g.bench_function("insert_evicting", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                clock += Duration::from_nanos(1);
                table.record_login(v4(next), "user@example.test", clock);
                next = next.wrapping_add(1);
            }
        })
    });
    g.finish();
}

fn policy_cycle(c: &mut Criterion) {
    let t0 = Instant::now();
    let table = full_table(v4, t0);
    let now = t0 + Duration::from_secs(60);
    // A request as Postfix 3.7.11 sends it at RCPT (captured from the peer instance),
    // for a client that is in the table.
    let request = b"request=smtpd_access_policy\n\
protocol_state=RCPT\n\
protocol_name=ESMTP\n\
client_address=10.0.1.44\n\
client_name=unknown\n\
client_port=52517\n\
reverse_client_name=unknown\n\
server_address=127.0.0.1\n\
server_port=18725\n\
helo_name=vm\n\
sender=sender@client.test\n\
recipient=someone@elsewhere.example\n\
recipient_count=0\n\
queue_id=\n\
instance=3cda.6b09c1aa.bac99.0\n\
size=0\n\
etrn_domain=\n\
stress=\n\
sasl_method=\n\
sasl_username=\n\
sasl_sender=\n\
ccert_subject=\n\
ccert_issuer=\n\
ccert_fingerprint=\n\
ccert_pubkey_fingerprint=\n\
encryption_protocol=\n\
encryption_cipher=\n\
encryption_keysize=0\n\
policy_context=\n\
\n";
    let mut wire = Vec::new();
    for _ in 0..100 {
        wire.extend_from_slice(request);
    }
    let mut g = c.benchmark_group("pbs_table/policy");
    g.throughput(Throughput::Elements(100));
    g.bench_function("decode_decide_encode", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            let mut decoder = PolicyDecoder::new(PolicyLimits::default());
            decoder.feed(black_box(&wire));
            out.clear();
            while let Ok(Some(r)) = decoder.decode() {
                table.decide(&r, now).action().encode_response(&mut out);
            }
            assert_eq!(out.len(), 100 * b"action=OK\n\n".len());
        })
    });
    g.finish();
}

criterion_group!(benches, lookups, logins, policy_cycle);
criterion_main!(benches);
