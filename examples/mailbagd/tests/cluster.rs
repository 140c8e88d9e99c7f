//! Three mailbagd hosts sharing their POP-before-SMTP table in Redis
//! (`[cluster] redis`, a real `redis-server` from `shared/peers/redis-start.sh`)
//! behind HAProxy (`send-proxy-v2`, round robin): a POP3 login through the
//! balancer authorizes relay from that client on every host and from no other
//! client; the relay tricks are refused through the balancer; with Redis
//! stopped, local mail and POP3 logins still work and relay gets `451 4.3.0`;
//! when Redis is back a login recorded during the outage is retried into it and
//! relay works again, by itself. Under `CI=true` a missing redis-server, haproxy
//! or python3 fails the test.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{
    Balancer, Options, Server, free_port, peers_dir, py_pop_login, py_pop_login_port,
    raw_smtp_port, rcpt_reply, require, wait_until,
};

/// A private redis-server on a free port; stopped when dropped.
struct Redis {
    port: u16,
    state: PathBuf,
    peers: PathBuf,
}

impl Redis {
    fn start(dir: &std::path::Path, port: u16) -> Redis {
        let peers = peers_dir().expect("shared/peers");
        let state = dir.join("peers-redis");
        let out = common::run(
            Command::new("bash")
                .arg(peers.join("redis-start.sh"))
                .arg(port.to_string())
                .env("PEERS_STATE_DIR", &state),
        );
        assert!(out.ok(), "redis-start.sh: {out:?}");
        Redis { port, state, peers }
    }

    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(self.peers.join("redis-stop.sh"))
            .arg(self.port.to_string())
            .env("PEERS_STATE_DIR", &self.state)
            .output();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn three_hosts_share_the_relay_table_and_fail_closed_without_redis() {
    if !require("redis-server") || !require("haproxy") || !require("python3") {
        return;
    }
    assert!(
        peers_dir().is_some() || !common::in_ci(),
        "shared/peers missing"
    );
    if peers_dir().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let redis = Redis::start(work.path(), redis_port);
    let tables = format!(
        "[cluster]\nredis = \"redis://127.0.0.1:{redis_port}/0\"\nredis_timeout = \"500ms\"\n\
         [proxy]\ntrusted_networks = [\"127.0.0.1/32\"]\n"
    );
    let hosts: Vec<Server> = (0..3)
        .map(|_| {
            Server::start_with(
                Options {
                    tables: tables.clone(),
                    ..Options::default()
                },
                |_| {},
            )
        })
        .collect();
    let ports = |role: &str| hosts.iter().map(|h| h.port(role)).collect::<Vec<_>>();
    let pop3 = Balancer::start(&hosts[0], &ports("pop3"), "2");
    let smtp = Balancer::start(&hosts[0], &ports("smtp"), "2");
    let remote = "kim@elsewhere.example";

    // A login through the balancer (it lands on one host) authorizes 127.0.0.2 on all.
    assert!(rcpt_reply(&hosts[1], hosts[1].port("smtp"), "127.0.0.2", remote).starts_with('5'));
    let login = py_pop_login_port(pop3.port, "127.0.0.2", "joe", "secret");
    assert!(login.starts_with("OK"), "{login}");
    for h in &hosts {
        let r = rcpt_reply(h, h.port("smtp"), "127.0.0.2", remote);
        assert!(
            r.starts_with("250"),
            "relay from 127.0.0.2 on a host: {r}\n{}",
            h.log()
        );
        let r = rcpt_reply(h, h.port("smtp"), "127.0.0.3", remote);
        assert!(r.starts_with('5'), "relay from 127.0.0.3: {r}");
    }
    // Through the balancer: each round-robin turn reaches another host.
    for _ in 0..3 {
        assert!(rcpt_reply(&hosts[0], smtp.port, "127.0.0.2", remote).starts_with("250"));
    }
    for t in [
        "victim@elsewhere.example",
        "victim%elsewhere.example@example.test",
        "elsewhere.example!victim@example.test",
        "\"victim@elsewhere.example\"@example.test",
        "@example.test:victim@elsewhere.example",
        "victim@[127.0.0.1]",
    ] {
        for _ in 0..3 {
            let r = rcpt_reply(&hosts[0], smtp.port, "127.0.0.3", t);
            assert!(
                r.starts_with('5'),
                "RCPT TO:<{t}> from 127.0.0.3 via the balancer: {r}"
            );
        }
    }

    // Redis stopped: relay fails closed, local mail and logins go on.
    redis.stop();
    for h in &hosts {
        let r = rcpt_reply(h, h.port("smtp"), "127.0.0.2", remote);
        assert!(
            r.starts_with("451 4.3.0"),
            "relay without Redis: {r}\n{}",
            h.log()
        );
        let msg = common::message("ann@example.test", "no redis", "local mail still works");
        let r = raw_smtp_port(
            h,
            h.port("smtp"),
            "127.0.0.5",
            &[
                b"EHLO c\r\n",
                b"MAIL FROM:<a@example.org>\r\n",
                b"RCPT TO:<ann@example.test>\r\n",
                b"DATA\r\n",
                format!("{msg}.\r\n").as_bytes(),
            ],
        );
        assert!(r[5].starts_with("250"), "local mail without Redis: {r:?}");
        assert_eq!(h.messages("ann", "").len(), 1);
    }
    let login = py_pop_login(&hosts[1], "127.0.0.4", "joe", "secret");
    assert!(login.starts_with("OK"), "login without Redis: {login}");
    assert!(hosts[1].log().contains("cannot record the login for relay"));

    // Redis back (empty: it keeps nothing): the login made during the outage is
    // retried into it, so 127.0.0.4 may relay; 127.0.0.2's old login is gone.
    let _redis = Redis::start(work.path(), redis_port);
    assert!(
        wait_until(Duration::from_secs(20), || rcpt_reply(
            &hosts[2],
            hosts[2].port("smtp"),
            "127.0.0.4",
            remote
        )
        .starts_with("250")),
        "{}",
        hosts[1].log()
    );
    assert!(
        hosts[1]
            .log()
            .contains("login recorded for relay after a retry")
    );
    let r = rcpt_reply(&hosts[0], hosts[0].port("smtp"), "127.0.0.2", remote);
    assert!(r.starts_with('5'), "{r}\n{}", hosts[0].log());
    assert!(py_pop_login_port(pop3.port, "127.0.0.2", "joe", "secret").starts_with("OK"));
    assert!(rcpt_reply(&hosts[0], hosts[0].port("smtp"), "127.0.0.2", remote).starts_with("250"));
}
