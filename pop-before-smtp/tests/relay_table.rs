//! The relay table through the public API only: a day in the life of a small
//! POP-before-SMTP server, with an injected clock.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use mailbag_pop_before_smtp::policy::{PolicyAction, PolicyDecoder, PolicyLimits};
use mailbag_pop_before_smtp::{
    Ipv6PrefixLen, RecordOutcome, RelayOptions, RelayTable, SharedRelayTable,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn login_relay_expire_relogin() {
    let clock = Instant::now();
    let table = SharedRelayTable::new(RelayOptions::default());

    // 09:00 joe checks mail over a dual-stack listener (IPv4-mapped address).
    table.record_login(ip("::ffff:198.51.100.7"), "joe", clock);
    // 09:10 his client sends over IPv4: authorized, and the entry names joe.
    let entry = table.lookup(ip("198.51.100.7"), clock + 10 * MIN).unwrap();
    assert_eq!(entry.user(), "joe");
    assert_eq!(entry.address(), ip("198.51.100.7"));
    // 09:29:59 still authorized; 09:30 no longer.
    assert!(table.is_authorized(
        ip("198.51.100.7"),
        clock + 30 * MIN - Duration::from_secs(1)
    ));
    assert!(!table.is_authorized(ip("198.51.100.7"), clock + 30 * MIN));
    // 09:45 he checks mail again: a fresh 30 minutes.
    assert_eq!(
        table.record_login(ip("198.51.100.7"), "joe", clock + 45 * MIN),
        RecordOutcome::Inserted // the expired entry had been dropped first
    );
    assert!(table.is_authorized(ip("198.51.100.7"), clock + 74 * MIN));
    // 09:50 refreshed again.
    assert_eq!(
        table.record_login(ip("198.51.100.7"), "joe", clock + 50 * MIN),
        RecordOutcome::Refreshed
    );
    assert!(table.is_authorized(ip("198.51.100.7"), clock + 79 * MIN));
    assert!(!table.is_authorized(ip("198.51.100.7"), clock + 80 * MIN));
}

#[test]
fn ipv6_prefix_and_policy_requests() {
    let clock = Instant::now();
    let opts = RelayOptions::default().with_ipv6_prefix(Ipv6PrefixLen::new(64).unwrap());
    let mut table = RelayTable::new(opts);
    table.record_login(ip("2001:db8:aa:1::100"), "ann", clock);

    // Postfix asks about a rotated privacy address in the same /64, and another /64.
    let mut decoder = PolicyDecoder::new(PolicyLimits::default());
    decoder.feed(
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=2001:db8:aa:1:9c1:2ff:fe33:4455\n\n\
request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=2001:db8:aa:2::100\n\n",
    );
    let mut actions = Vec::new();
    while let Some(request) = decoder.decode().unwrap() {
        actions.push(table.decide(&request, clock + MIN).action());
    }
    assert_eq!(actions, [PolicyAction::Ok, PolicyAction::Dunno]);
}

#[test]
fn a_login_flood_cannot_grow_the_table() {
    let clock = Instant::now();
    let bound = 2_000;
    let opts = RelayOptions::default().with_max_entries(NonZeroUsize::new(bound).unwrap());
    let mut table = RelayTable::new(opts);
    // A real user, then 200,000 logins from distinct addresses within one second.
    table.record_login(ip("192.0.2.1"), "joe", clock);
    for i in 0..200_000u32 {
        let at = clock + Duration::from_micros(u64::from(i) * 5);
        table.record_login(IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i)), "bot", at);
        assert!(table.len() <= bound);
    }
    assert_eq!(table.len(), bound);
    // The oldest login was evicted first: the real user lost the authorization, as
    // documented (the bound wins over the window).
    assert!(!table.is_authorized(ip("192.0.2.1"), clock + Duration::from_secs(1)));
    assert!(format!("{table:?}").contains("len: 2000"));
}
