//! Three mailbagd hosts sharing their POP-before-SMTP table in Redis
//! (`[cluster] redis`, a real `redis-server` from `shared/peers/redis-start.sh`)
//! behind HAProxy (`send-proxy-v2`, round robin): a POP3 login through the
//! balancer authorizes relay from that client on every host and from no other
//! client; the relay tricks are refused through the balancer; with Redis
//! stopped, local mail and POP3 logins still work and relay gets `451 4.3.0`;
//! when Redis is back a login recorded during the outage is retried into it and
//! relay works again, by itself. Under `CI=true` a missing redis-server, haproxy
//! or python3 fails the test. Also, on one host: a command after Redis
//! restarted is answered, and a maildrop lease Redis takes only after a
//! stall (a `SET` it had not answered) is deleted by the host that asked.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailbag_mailstore::{Folder, UserName};
use mailbag_pop_before_smtp::RelayOptions;
use mailbagd::maildrop_lease::{LOCK_KEY_PREFIX, LeaseError, MaildropLeases};
use mailbagd::redis_conn::RedisConn;
use mailbagd::relay_store::{RedisRelay, RelayBackend};

mod common;
use common::{
    Balancer, Options, Postfix, RELAY_BATTERY, Server, free_port, peers_dir, postfix_relay_attempt,
    py_pop_login, py_pop_login_port, raw_smtp_port, rcpt_arg_reply, rcpt_reply, require,
    wait_until,
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

    /// Sends `signal` (`STOP`, `CONT`) to the redis-server.
    fn signal(&self, signal: &str) {
        let record = self.state.join(format!("redis-{}.dir", self.port));
        let dir = std::fs::read_to_string(record).unwrap();
        let pid = std::fs::read_to_string(PathBuf::from(dir.trim()).join("redis.pid")).unwrap();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} redis-server");
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

/// One redis-server, a runtime and the server's URL.
/// Fields drop in this order: the redis-server is stopped while its state
/// directory (in `work`) still tells `redis-stop.sh` which one it is.
struct One {
    redis: Redis,
    rt: tokio::runtime::Runtime,
    url: String,
    work: tempfile::TempDir,
}

/// [`One`], or `None` when redis-server is missing (outside CI).
fn one_redis() -> Option<One> {
    if !require("redis-server") {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = Redis::start(work.path(), port);
    Some(One {
        work,
        redis,
        rt: tokio::runtime::Runtime::new().unwrap(),
        url: format!("redis://127.0.0.1:{port}/0"),
    })
}

/// [`One`], a connection to its Redis and the POP-before-SMTP table on it
/// with `options`.
fn relay_on_redis(options: RelayOptions) -> Option<(One, Arc<RedisConn>, Arc<RedisRelay>)> {
    let one = one_redis()?;
    let conn = Arc::new(RedisConn::new(&one.url, Duration::from_secs(2)).unwrap());
    let relay = Arc::new(RedisRelay::new(Arc::clone(&conn), options));
    Some((one, conn, relay))
}

fn get(conn: &RedisConn, key: &str, rt: &tokio::runtime::Runtime) -> Option<String> {
    rt.block_on(conn.run(redis::cmd("GET").arg(key))).unwrap()
}

#[test]
fn a_command_after_redis_restarted_is_answered() {
    let Some(One {
        work,
        redis,
        rt,
        url,
    }) = one_redis()
    else {
        return;
    };
    let conn = RedisConn::new(&url, Duration::from_secs(2)).unwrap();
    rt.block_on(conn.run::<()>(redis::cmd("SET").arg("k").arg("v")))
        .unwrap();
    assert_eq!(get(&conn, "k", &rt).as_deref(), Some("v"));
    redis.stop();
    let _redis = Redis::start(work.path(), redis.port);
    // The connection made before the restart is dropped: the command goes
    // again on a new one (the new Redis keeps nothing).
    assert_eq!(get(&conn, "k", &rt), None);
}

/// With Redis stalled, commands at once do not wait in line for the
/// connection, each for its own `redis_timeout`: after one fails, the others
/// fail at once for one timeout. Each of twenty commands sent within 0.6 s
/// ends within two and a half timeouts of its start (before: up to four; a
/// cluster probe measured the tenth of ten POP3 logins at 11 s with a 1 s
/// timeout, the thirtieth of thirty at 49 s); once Redis answers again, so
/// does the next command after that timeout.
#[test]
fn commands_during_a_stall_do_not_wait_in_line() {
    let Some(One {
        work: _work,
        redis,
        rt,
        url,
    }) = one_redis()
    else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let conn = Arc::new(RedisConn::new(&url, timeout).unwrap());
    assert_eq!(get(&conn, "k", &rt), None);
    redis.signal("STOP");
    let waits: Vec<Duration> = rt.block_on(async {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let conn = Arc::clone(&conn);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i * 30)).await;
                    let started = Instant::now();
                    let r = conn.run::<Option<String>>(redis::cmd("GET").arg("k")).await;
                    assert!(r.is_err(), "{r:?}");
                    started.elapsed()
                })
            })
            .collect();
        let mut waits = Vec::new();
        for t in tasks {
            waits.push(t.await.unwrap());
        }
        waits
    });
    redis.signal("CONT");
    let longest = waits.iter().max().unwrap();
    assert!(*longest < timeout * 5 / 2, "{waits:?}");
    std::thread::sleep(timeout);
    assert_eq!(get(&conn, "k", &rt), None);
}

/// A login recorded late (retried after Redis came back) keeps the window
/// it had from the login, not a whole new one (a cluster probe saw a login
/// stay authorized 28 s with a 20 s window); one whose window is over by
/// then is not recorded.
#[test]
fn a_login_recorded_late_keeps_its_window_from_the_login() {
    use mailbag_pop_before_smtp::store::RelayStore;
    let window = Duration::from_secs(20);
    let Some((one, conn, relay)) = relay_on_redis(RelayOptions::default().with_window(window))
    else {
        return;
    };
    let relay = &*relay;
    let now = Instant::now();
    let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    one.rt.block_on(async {
        let late = now.checked_sub(Duration::from_secs(15)).unwrap();
        relay.record_login(a, "joe", late).await.unwrap();
        let over = now.checked_sub(Duration::from_secs(21)).unwrap();
        relay.record_login(b, "ann", over).await.unwrap();
        let ttl: i64 = conn
            .run(redis::cmd("PTTL").arg("mailbag:relay:192.0.2.1"))
            .await
            .unwrap();
        assert!((1..=5_000).contains(&ttl), "{ttl} ms left");
        assert!(relay.is_authorized(a, Instant::now()).await.unwrap());
        assert!(!relay.is_authorized(b, Instant::now()).await.unwrap());
    });
}

/// A login this host could not write to Redis (stalled) still lets the
/// client relay through this host for its window, rather than a permanent
/// `554` until the retry lands (a cluster probe); a client that made no login
/// still gets an error (`451`), never a relay; once the login is written,
/// Redis alone answers.
#[test]
fn a_login_not_yet_in_redis_authorizes_through_its_host() {
    use mailbag_pop_before_smtp::store::RelayStore;
    let Some((one, _conn, relay)) = relay_on_redis(RelayOptions::default()) else {
        return;
    };
    let (ann, kim) = ("192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap());
    one.redis.signal("STOP");
    one.rt.block_on(async {
        let logged_in = Instant::now();
        assert!(relay.record_login(ann, "ann", logged_in).await.is_err());
        assert!(relay.is_authorized(ann, Instant::now()).await.unwrap());
        let backend = RelayBackend::Redis(Arc::clone(&relay));
        assert_eq!(
            backend.authorizing_user(ann).await.unwrap().as_deref(),
            Some("ann")
        );
        assert!(relay.is_authorized(kim, Instant::now()).await.is_err());
        one.redis.signal("CONT");
        tokio::time::sleep(Duration::from_secs(2)).await;
        relay.record_login(ann, "ann", logged_in).await.unwrap();
        let ann_user = ["ann".to_owned()];
        assert_eq!(
            backend
                .revoke_users(&ann_user, Instant::now())
                .await
                .unwrap(),
            1
        );
        assert!(!relay.is_authorized(ann, Instant::now()).await.unwrap());
    });
}

/// On Redis, revoking a user's relay authorizations (a reload found them
/// removed or their password changed) deletes every key naming that user
/// that a login before the reload set, and only those, however many keys
/// the table holds (read in SCAN batches); a login since (with the new
/// password) stays.
#[test]
fn revoking_a_user_on_redis_deletes_their_keys_only() {
    let Some((one, conn, relay)) = relay_on_redis(RelayOptions::default()) else {
        return;
    };
    let relay = RelayBackend::Redis(relay);
    one.rt.block_on(async {
        let now = Instant::now();
        for i in 0..3000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            let user = if i % 1000 == 7 { "joe" } else { "ann" };
            relay.record_login(ip, user, now).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let reload = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let since: std::net::IpAddr = "192.0.2.99".parse().unwrap();
        relay
            .record_login(since, "joe", Instant::now())
            .await
            .unwrap();
        let joe = ["joe".to_owned()];
        assert_eq!(relay.revoke_users(&joe, reload).await.unwrap(), 3);
        assert_eq!(relay.revoke_users(&joe, reload).await.unwrap(), 0);
        let left: usize = conn.run(&redis::cmd("DBSIZE")).await.unwrap();
        assert_eq!(left, 2998);
        assert_eq!(
            relay.authorizing_user(since).await.unwrap().as_deref(),
            Some("joe")
        );
        let joes = std::net::Ipv4Addr::from(0x0a00_0000 + 1007).into();
        assert_eq!(relay.authorizing_user(joes).await.unwrap(), None);
        let anns = std::net::Ipv4Addr::from(0x0a00_0000 + 1008).into();
        assert_eq!(
            relay.authorizing_user(anns).await.unwrap().as_deref(),
            Some("ann")
        );
    });
}

/// Every command's outcome reaches the observer once (the server's
/// `mailbag_redis_commands_total` and `mailbag_redis_up`), Redis down too.
#[test]
fn the_observer_hears_every_outcome() {
    let Some(One {
        work: _work,
        redis,
        rt,
        url,
    }) = one_redis()
    else {
        return;
    };
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = std::sync::Arc::clone(&heard);
    let conn = RedisConn::new(&url, Duration::from_millis(500))
        .unwrap()
        .with_observer(Box::new(move |ok| h.lock().unwrap().push(ok)));
    assert_eq!(get(&conn, "k", &rt), None);
    redis.stop();
    assert!(
        rt.block_on(conn.run::<()>(redis::cmd("GET").arg("k")))
            .is_err()
    );
    assert_eq!(*heard.lock().unwrap(), [true, false]);
}

#[test]
fn a_lease_redis_takes_after_a_stall_is_deleted_by_its_host() {
    let Some(One {
        work: _work,
        redis,
        rt,
        url,
    }) = one_redis()
    else {
        return;
    };
    let conn = Arc::new(RedisConn::new(&url, Duration::from_millis(300)).unwrap());
    // Connected before the stall (as a host that has been running is), so
    // that the SET is sent and waits in Redis's socket.
    let pong: String = rt.block_on(conn.run(&redis::cmd("PING"))).unwrap();
    assert_eq!(pong, "PONG");
    let lease = Duration::from_secs(30);
    let leases = Arc::new(MaildropLeases::new(conn, lease));
    let check = RedisConn::new(&url, Duration::from_secs(2)).unwrap();
    let key = format!("{LOCK_KEY_PREFIX}joe/INBOX");
    assert_eq!(get(&check, &key, &rt), None);

    redis.signal("STOP");
    let joe = UserName::new("joe").unwrap();
    let r = rt.block_on(leases.acquire(&joe, Folder::Inbox));
    assert!(matches!(r, Err(LeaseError::Unavailable(_))), "{r:?}");
    redis.signal("CONT");
    // Redis ran the SET it had not answered: a lease that no session holds...
    assert!(
        get(&check, &key, &rt).is_some(),
        "the late SET took the lease"
    );
    // ...which the host that asked deletes within a sixth of the lease (5 s),
    // not at its expiry (30 s).
    let resumed = Instant::now();
    while get(&check, &key, &rt).is_some() {
        assert!(
            resumed.elapsed() < lease / 2,
            "the lease was left to expire"
        );
        std::thread::sleep(Duration::from_millis(200));
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
    let hosts = start_hosts(3, &tables);
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
        // Every host's log names the user of the login another host recorded.
        assert!(h.log().contains("pop3_user=\"joe\""), "{}", h.log());
    }
    // Through the balancer: each round-robin turn reaches another host.
    for _ in 0..3 {
        assert!(rcpt_reply(&hosts[0], smtp.port, "127.0.0.2", remote).starts_with("250"));
    }
    // The relay battery from the unauthorized client, through the balancer
    // (each form reaches every host in turn).
    for t in RELAY_BATTERY {
        for _ in 0..3 {
            let r = rcpt_arg_reply(&hosts[0], smtp.port, "127.0.0.3", t);
            assert!(
                r.starts_with('5'),
                "RCPT TO:{t} from 127.0.0.3 via the balancer: {r}"
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

/// `n` hosts, each on its own data directory, with `tables` in their
/// configuration.
fn start_hosts(n: usize, tables: &str) -> Vec<Server> {
    (0..n)
        .map(|_| {
            Server::start_with(
                Options {
                    tables: tables.to_owned(),
                    ..Options::default()
                },
                |_| {},
            )
        })
        .collect()
}

/// A second host on `first`'s data directory (its own queue directory: the
/// queue's delivery lock is per directory), with the same configuration.
fn sibling(first: &Server) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(first.config_path()).unwrap();
    let queue = first.data.join("queue");
    let text = text.replace(
        &format!("queue_dir = {queue:?}"),
        &format!("queue_dir = {:?}", dir.path().join("queue")),
    );
    assert!(!text.contains(&format!("{queue:?}")));
    let cfg = dir.path().join("mailbag.toml");
    std::fs::write(&cfg, text).unwrap();
    let data = first.data.clone();
    Server::start_config(dir, data, cfg, &["pop3", "smtp", "submission", "http"])
}

fn cluster_tables(redis_port: u16, lease: &str) -> String {
    format!(
        "[cluster]\nredis = \"redis://127.0.0.1:{redis_port}/0\"\nredis_timeout = \"500ms\"\n\
         lock_lease = \"{lease}\"\n[proxy]\ntrusted_networks = [\"127.0.0.1/32\"]\n"
    )
}

/// Redis, HAProxy, python3 and the peers' HAProxy script are here (under
/// `CI=true` their absence fails the test).
fn have_cluster_parts() -> bool {
    if !require("redis-server") || !require("haproxy") || !require("python3") {
        return false;
    }
    if peers_dir().is_none() {
        assert!(!common::in_ci(), "shared/peers missing");
        return false;
    }
    true
}

/// How long until `user` can log in on `host` (from 127.0.0.3), at most 10 s.
fn time_to_log_in(host: &Server, user: &str) -> Duration {
    let start = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || py_pop_login(
            host,
            "127.0.0.3",
            user,
            "secret"
        )
        .starts_with("OK")),
        "{}",
        host.log()
    );
    start.elapsed()
}

/// A POP3 session that logs in and stays in the transaction state.
fn hold_maildrop(port: u16, src: &str, user: &str, pass: &str) -> std::net::TcpStream {
    use std::io::{BufRead, BufReader, Write};
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &format!("{src}:0")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(
        &format!("127.0.0.1:{port}")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for cmd in ["", &format!("USER {user}"), &format!("PASS {pass}")] {
        if !cmd.is_empty() {
            write!(s, "{cmd}\r\n").unwrap();
        }
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("+OK"), "{cmd}: {line}");
    }
    s
}

#[test]
fn one_maildrop_session_across_hosts_and_a_killed_host_frees_it_within_a_lease() {
    if !have_cluster_parts() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let redis = Redis::start(work.path(), redis_port);
    let mut a = Server::start_with(
        Options {
            tables: cluster_tables(redis_port, "3s"),
            ..Options::default()
        },
        |_| {},
    );
    let b = sibling(&a);
    let pop3 = Balancer::start(&a, &[a.port("pop3"), b.port("pop3")], "2");

    // Sessions that follow each other at once, alternating hosts: each QUIT
    // frees the maildrop (lock file and lease) before its +OK.
    let script = r#"
import socket, sys
ports = [int(p) for p in sys.argv[1:]]
bad = []
for i in range(200):
    s = socket.create_connection(('127.0.0.1', ports[i % 2]), timeout=10, source_address=('127.0.0.2', 0))
    # Pipelined (the server announces PIPELINING): the login reaches the
    # server as early as a client can send it.
    s.sendall(b'USER joe\r\nPASS secret\r\n')
    f = s.makefile('rb'); f.readline(); f.readline()
    r = f.readline()
    if not r.startswith(b'+OK'): bad.append((i, r))
    s.sendall(b'QUIT\r\n'); f.readline(); s.close()
print('refused', len(bad), bad[:3])
"#;
    let out = common::python(
        script,
        &[&a.port("pop3").to_string(), &b.port("pop3").to_string()],
    );
    assert!(out.ok() && out.stdout.starts_with("refused 0 "), "{out:?}");

    // joe's session on host A; host B and the balancer (either host) say IN-USE.
    let held = hold_maildrop(a.port("pop3"), "127.0.0.2", "joe", "secret");
    let on_b = py_pop_login(&b, "127.0.0.3", "joe", "secret");
    assert!(on_b.contains("[IN-USE]"), "{on_b}");
    for _ in 0..2 {
        let via = py_pop_login_port(pop3.port, "127.0.0.3", "joe", "secret");
        assert!(via.contains("[IN-USE]"), "{via}");
    }
    // ann is free meanwhile.
    assert!(py_pop_login(&b, "127.0.0.3", "ann", "secret").starts_with("OK"));

    // Host A dies with SIGKILL: joe's lease is not renewed and expires (3 s).
    a.kill9();
    drop(held);
    let freed = time_to_log_in(&b, "joe");
    assert!(
        freed <= Duration::from_secs(5),
        "freed after {freed:?} (lease 3 s)"
    );

    // Redis down: no lease can be taken, but every host also takes the
    // maildrop's lock file, so logins go on and stay exclusive.
    redis.stop();
    let held = hold_maildrop(b.port("pop3"), "127.0.0.3", "ann", "secret");
    assert!(
        b.log().contains("no maildrop lease in Redis"),
        "{}",
        b.log()
    );
    let c = sibling(&a);
    let r = py_pop_login(&c, "127.0.0.4", "ann", "secret");
    assert!(r.contains("[IN-USE]"), "{r}");
    drop(held);
    let _redis = Redis::start(work.path(), redis_port);
    assert!(wait_until(Duration::from_secs(10), || py_pop_login(
        &c,
        "127.0.0.4",
        "ann",
        "secret"
    )
    .starts_with("OK")));
    eprintln!("maildrop freed {freed:?} after SIGKILL of its host (lease 3 s)");
}

/// Without Redis the maildrop lock is a lock file on the shared storage (a
/// dot-lock, safe on NFS): one session across hosts, and a host killed with
/// SIGKILL frees its users' maildrops once the file turns stale.
#[test]
fn without_redis_the_lock_file_keeps_one_session_across_hosts() {
    if !require("python3") {
        return;
    }
    let mut a = Server::start_with(
        Options {
            tables: "[cluster]\nlock_lease = \"2s\"\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let b = sibling(&a);
    let held = hold_maildrop(a.port("pop3"), "127.0.0.2", "joe", "secret");
    // Kept fresh past its stale timeout while the session lives.
    std::thread::sleep(Duration::from_secs(3));
    let on_b = py_pop_login(&b, "127.0.0.3", "joe", "secret");
    assert!(on_b.contains("[IN-USE]"), "{on_b}");
    assert!(py_pop_login(&b, "127.0.0.3", "ann", "secret").starts_with("OK"));
    a.kill9();
    drop(held);
    let lock = a.data.join("joe").join("mailbag-pop3.lock");
    assert!(lock.is_file(), "a killed host leaves its lock file");
    let freed = time_to_log_in(&b, "joe");
    assert!(
        freed <= Duration::from_secs(4),
        "freed after {freed:?} (stale after 2 s)"
    );
    assert!(!lock.exists(), "released at the end of the session");
}

/// 3 hosts on one data directory take 3 × 300 deliveries to one user (one SMTP
/// client per host) while POP3 sessions through the balancer read and delete:
/// every acknowledged message is retrieved exactly once, and no UID repeats.
#[test]
fn three_hosts_deliver_to_one_maildir_while_pop3_reads_and_deletes() {
    if !have_cluster_parts() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let _redis = Redis::start(work.path(), redis_port);
    let a = Server::start_with(
        Options {
            tables: cluster_tables(redis_port, "10s"),
            ..Options::default()
        },
        |_| {},
    );
    let (b, c) = (sibling(&a), sibling(&a));
    let hosts = [&a, &b, &c];
    let pop3 = Balancer::start(&a, &[a.port("pop3"), b.port("pop3"), c.port("pop3")], "2");
    let smtp_ports: Vec<String> = hosts.iter().map(|h| h.port("smtp").to_string()).collect();
    let script = r#"
import poplib, smtplib, socket, sys, threading, time
pop_port = int(sys.argv[1]); smtp_ports = [int(p) for p in sys.argv[2].split(',')]
per_host = int(sys.argv[3])
acked, got, uids, errors = set(), [], set(), []
done = threading.Event()
def send(i, port):
    s = smtplib.SMTP('127.0.0.1', port, timeout=60, source_address=('127.0.0.%d' % (10 + i), 0))
    for n in range(per_host):
        mid = 'h%d-%d' % (i, n)
        msg = 'From: a@example.org\r\nTo: ann@example.test\r\nSubject: %s\r\n\r\nbody %s\r\n' % (mid, mid)
        try:
            s.sendmail('a@example.org', ['ann@example.test'], msg)
            acked.add(mid)
        except Exception as e:
            errors.append('send %s: %r' % (mid, e))
    s.quit()
class P(poplib.POP3):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=('127.0.0.2', 0))
def drain():
    try:
        p = P('127.0.0.1', pop_port, timeout=60)
        p.user('ann'); p.pass_('secret')
    except poplib.error_proto as e:
        if b'IN-USE' in e.args[0]: return
        raise
    for line in p.uidl()[1]:
        n, uid = line.split()
        if uid in uids: errors.append('uid %r seen twice' % uid)
        uids.add(uid)
        for l in p.retr(int(n))[1]:
            if l.startswith(b'Subject: '): got.append(l[9:].decode())
        p.dele(int(n))
    p.quit()
senders = [threading.Thread(target=send, args=(i, port)) for i, port in enumerate(smtp_ports)]
for t in senders: t.start()
while any(t.is_alive() for t in senders):
    drain(); time.sleep(0.05)
drain()
dups = len(got) - len(set(got))
missing = acked - set(got)
extra = set(got) - acked
print('acked', len(acked), 'retrieved', len(got), 'dups', dups, 'missing', len(missing), 'extra', len(extra), 'errors', len(errors))
for e in errors[:5]: print(e)
"#;
    let started = std::time::Instant::now();
    let out = common::python(
        script,
        &[&pop3.port.to_string(), &smtp_ports.join(","), "300"],
    );
    assert!(out.ok(), "{out:?}");
    let line = out.stdout.lines().next().unwrap_or_default().to_owned();
    assert_eq!(
        line,
        "acked 900 retrieved 900 dups 0 missing 0 extra 0 errors 0",
        "{}\n{}",
        out.stdout,
        a.log()
            .lines()
            .filter(|l| l.contains("WARN"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "3 x 300 deliveries with concurrent POP3 drains: {:?}",
        started.elapsed()
    );
    assert!(a.messages("ann", "").is_empty());
}

/// A site that keeps Postfix for SMTP: Postfix asks host A's policy listener
/// (`check_policy_service`) about a POP3 login made on host B, through
/// Redis; with Redis down it defers relay (4xx, never a relay and never a
/// bounce) and still takes mail for its own domain.
#[test]
fn postfix_asks_one_host_about_a_login_made_on_another() {
    if !have_cluster_parts() || !require("postfix") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let redis = Redis::start(work.path(), redis_port);
    let a = Server::start_with(
        Options {
            tables: cluster_tables(redis_port, "10s"),
            pop_before_smtp: "policy_listen = \"127.0.0.1:0\"".into(),
            ..Options::default()
        },
        |_| {},
    );
    let b = sibling(&a);
    let policy = a.addrs["policy"];
    let root = tempfile::tempdir().unwrap();
    let postfix = Postfix::asking(root.path(), policy);
    let denied = Postfix::relay_denied;
    let before = postfix_relay_attempt(postfix.port, "127.0.0.2");
    assert!(denied(&before), "{before}");
    assert!(py_pop_login(&b, "127.0.0.2", "joe", "secret").starts_with("OK"));
    let after = postfix_relay_attempt(postfix.port, "127.0.0.2");
    assert!(
        !denied(&after) && after.contains("no outbound delivery from the peer instance"),
        "{after}\n{}",
        a.log()
    );
    let other = postfix_relay_attempt(postfix.port, "127.0.0.3");
    assert!(denied(&other), "{other}");

    redis.stop();
    let during = postfix_relay_attempt(postfix.port, "127.0.0.2");
    assert!(
        during.starts_with('4') && during.contains("Relay authorization temporarily unavailable"),
        "{during}"
    );
    let msg = common::message("joe@example.test", "during the outage", "local mail");
    let local = raw_smtp_port(
        &a,
        postfix.port,
        "127.0.0.3",
        &[
            b"EHLO c\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<joe@example.test>\r\n",
            b"DATA\r\n",
            format!("{msg}.\r\n").as_bytes(),
        ],
    );
    assert!(
        local[3].starts_with("250") && local[5].starts_with("250"),
        "{local:?}"
    );
    assert!(a.log().contains("relay table unavailable"), "{}", a.log());
}

/// `mailbag_redis_up` says at once whether the cluster's Redis answers: the
/// server asks it `PING` at start-up (before any login), and warns when it
/// does not answer; then every `[cluster] ping_interval`, so that an outage and
/// a return with no client about show too (before, `redis_up` stayed 1 after
/// Redis stopped in a quiet minute); a server without `[cluster] redis` has
/// no Redis metrics.
#[test]
fn redis_up_is_known_from_start_up_and_kept_current() {
    if !require("redis-server") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let redis = Redis::start(work.path(), redis_port);
    let metrics = |server: &Server| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(server.addrs["metrics"]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let start = |cluster: String| {
        Server::start_with(
            Options {
                tables: format!("[metrics]\nlisten = \"127.0.0.1:0\"\n{cluster}"),
                ..Options::default()
            },
            |_| {},
        )
    };
    let up = start(format!(
        "[cluster]\nredis = \"redis://127.0.0.1:{redis_port}/0\"\nredis_timeout = \"500ms\"\n\
         ping_interval = \"2s\"\n"
    ));
    assert!(
        common::wait_until(Duration::from_secs(10), || metrics(&up)
            .contains("mailbag_redis_up 1")),
        "{}",
        metrics(&up)
    );
    let down = start(format!(
        "[cluster]\nredis = \"redis://127.0.0.1:{}/0\"\nredis_timeout = \"500ms\"\n",
        free_port()
    ));
    assert!(
        common::wait_until(Duration::from_secs(10), || down
            .log()
            .contains("does not answer at start-up")),
        "{}",
        down.log()
    );
    assert!(metrics(&down).contains("mailbag_redis_up 0"));
    let single = start(String::new());
    assert!(!metrics(&single).contains("redis"));
    // No client uses Redis: the interval's PING notices it stop and return.
    let every = Duration::from_secs(2);
    redis.signal("STOP");
    assert!(
        common::wait_until(every + Duration::from_secs(3), || metrics(&up)
            .contains("mailbag_redis_up 0")),
        "{}",
        metrics(&up)
    );
    redis.signal("CONT");
    assert!(
        common::wait_until(every + Duration::from_secs(3), || metrics(&up)
            .contains("mailbag_redis_up 1")),
        "{}",
        metrics(&up)
    );
}

/// Two hosts' limiters on one Redis count one set of failures: the third
/// failure, on either host, locks the address and the user name out on
/// both, for `lockout`; a success takes back only its own failure from the
/// address and clears the user name.
#[test]
fn the_login_limiter_counts_every_hosts_failures_in_redis() {
    use mailbagd::login_limiter::LoginLimitOptions;
    use mailbagd::shared_login_limiter::SharedLoginLimiter;
    let Some(one) = one_redis() else { return };
    let mut opts = LoginLimitOptions::default();
    opts.failures_before_lockout = 3;
    opts.lockout = Duration::from_secs(2);
    let host = || {
        let conn = Arc::new(RedisConn::new(&one.url, Duration::from_secs(2)).unwrap());
        (SharedLoginLimiter::new(Arc::clone(&conn), opts), conn)
    };
    let ((a, conn), (b, _)) = (host(), host());
    let rt = &one.rt;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let guesser = ip("192.0.2.7");
    let attempt = |l: &SharedLoginLimiter, from, user| {
        let t = l.token();
        (rt.block_on(l.attempt(from, user, &t)).unwrap(), t)
    };
    assert_eq!(attempt(&a, guesser, "joe").0, Ok(1));
    assert_eq!(attempt(&b, guesser, "JOE").0, Ok(2));
    assert_eq!(attempt(&a, guesser, "joe").0, Ok(3));
    let locked_at = Instant::now();
    for (limiter, from, user) in [(&b, guesser, "ann"), (&a, ip("192.0.2.8"), "Joe")] {
        let left = attempt(limiter, from, user).0.unwrap_err();
        assert!(
            left > Duration::from_millis(1000) && left <= Duration::from_secs(2),
            "{left:?}"
        );
    }
    // Another address and another user: not affected.
    let (verdict, kim) = attempt(&b, ip("192.0.2.9"), "kim");
    assert_eq!(verdict, Ok(1));
    let [kim_addr, kim_user] = SharedLoginLimiter::keys(ip("192.0.2.9"), "kim");
    rt.block_on(b.succeeded(ip("192.0.2.9"), "kim", &kim))
        .unwrap();
    assert_eq!(get(&conn, &kim_addr, rt), None);
    assert_eq!(get(&conn, &kim_user, rt), None);
    // A success sent twice takes the failure back once; an attempt that runs
    // only after its success (a stalled Redis) counts nothing.
    assert_eq!(attempt(&b, ip("192.0.2.9"), "kim").0, Ok(1));
    rt.block_on(b.succeeded(ip("192.0.2.9"), "kim", &kim))
        .unwrap();
    assert_eq!(get(&conn, &kim_addr, rt).as_deref(), Some("1"));
    let late = b.token();
    rt.block_on(b.succeeded(ip("192.0.2.9"), "kim", &late))
        .unwrap();
    assert_eq!(
        rt.block_on(b.attempt(ip("192.0.2.9"), "kim", &late))
            .unwrap(),
        Ok(0)
    );
    assert_eq!(get(&conn, &kim_addr, rt).as_deref(), Some("1"));
    // A success from the guesser's address after the lock-out: the user
    // name is cleared, the address keeps its other failures.
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(locked_at.elapsed()));
    assert_eq!(attempt(&a, guesser, "ann").0, Ok(1));
    let (verdict, sue_try) = attempt(&b, guesser, "sue");
    assert_eq!(verdict, Ok(2));
    rt.block_on(a.succeeded(guesser, "sue", &sue_try)).unwrap();
    let [addr, sue] = SharedLoginLimiter::keys(guesser, "sue");
    assert_eq!(get(&conn, &addr, rt).as_deref(), Some("1"));
    assert_eq!(get(&conn, &sue, rt), None);
}

/// An attempt that Redis takes only after a stall, when the host had given
/// up on it, is taken back by the host's success once Redis answers: right
/// passwords during a stall leave no failures behind (a cluster probe found
/// an address locked out by them).
#[test]
fn attempts_redis_runs_after_a_stall_are_taken_back_by_their_success() {
    use mailbagd::login_limiter::LoginLimitOptions;
    use mailbagd::shared_login_limiter::SharedLoginLimiter;
    let Some(one) = one_redis() else { return };
    let mut opts = LoginLimitOptions::default();
    opts.failures_before_lockout = 3;
    opts.lockout = Duration::from_secs(60);
    let rt = &one.rt;
    let ip: std::net::IpAddr = "192.0.2.17".parse().unwrap();
    // Three hosts, each connected to Redis.
    let hosts: Vec<SharedLoginLimiter> = (0..3)
        .map(|_| {
            let conn = Arc::new(RedisConn::new(&one.url, Duration::from_millis(300)).unwrap());
            assert_eq!(get(&conn, "nothing", rt), None);
            SharedLoginLimiter::new(conn, opts)
        })
        .collect();
    // A stall: a login of bob on each host with the right password; Redis
    // answers none of them in time, and runs them when it resumes.
    one.redis.signal("STOP");
    for limiter in &hosts {
        let t = limiter.token();
        assert!(rt.block_on(limiter.attempt(ip, "bob", &t)).is_err());
        let _guard = rt.enter();
        limiter.succeeded_in_background(ip, "bob", t);
    }
    std::thread::sleep(Duration::from_millis(500));
    one.redis.signal("CONT");
    let [addr, user] = SharedLoginLimiter::keys(ip, "bob");
    let check = Arc::new(RedisConn::new(&one.url, Duration::from_secs(2)).unwrap());
    let clean = wait_until(Duration::from_secs(15), || {
        get(&check, &addr, rt).is_none() && get(&check, &user, rt).is_none()
    });
    assert!(
        clean,
        "left behind: address {:?}, user {:?}",
        get(&check, &addr, rt),
        get(&check, &user, rt)
    );
    // The stalled attempts did run (their tokens are marked), and counted
    // nothing in the end: a fourth attempt is the first failure.
    let t = hosts[0].token();
    assert_eq!(rt.block_on(hosts[0].attempt(ip, "ann", &t)).unwrap(), Ok(1));
}

/// A password guesser whom the balancer spreads over two hosts is locked
/// out after `failures_before_lockout` failures in all, on both hosts, and
/// so is the user name from every address; other users log in. With Redis
/// stopped each host counts alone again.
#[test]
fn a_guesser_spread_over_hosts_is_locked_out_on_every_host() {
    if !have_cluster_parts() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let redis = Redis::start(work.path(), redis_port);
    let tables = format!(
        "{}[login]\nfailures_before_lockout = 3\n",
        cluster_tables(redis_port, "60s")
    );
    let hosts = start_hosts(2, &tables);
    let pop3 = Balancer::start(
        &hosts[0],
        &[hosts[0].port("pop3"), hosts[1].port("pop3")],
        "2",
    );
    for _ in 0..3 {
        let r = py_pop_login_port(pop3.port, "127.0.0.6", "joe", "guess");
        assert!(r.starts_with("ERR"), "{r}");
    }
    for h in &hosts {
        assert!(
            h.log().contains("login failed"),
            "each host saw a failure\n{}",
            h.log()
        );
        for (src, user) in [
            ("127.0.0.6", "joe"),
            ("127.0.0.7", "joe"),
            ("127.0.0.6", "ann"),
        ] {
            let r = py_pop_login(h, src, user, "secret");
            assert!(r.starts_with("ERR"), "{user} from {src}: {r}\n{}", h.log());
        }
        assert!(h.log().contains("login refused: locked out"), "{}", h.log());
        let r = py_pop_login(h, "127.0.0.8", "ann", "secret");
        assert!(r.starts_with("OK"), "{r}\n{}", h.log());
    }
    // Without Redis: each host's own count decides, and logins go on.
    redis.stop();
    let r = py_pop_login(&hosts[1], "127.0.0.9", "ann", "secret");
    assert!(r.starts_with("OK"), "{r}\n{}", hosts[1].log());
}

/// With Redis answering, only the shared count decides: a success on host
/// B clears joe's failures for host A too, and a lock-out ends after
/// `lockout` on every host, however many refused attempts a host saw
/// meanwhile (a probe found a host's own count locking joe out after a
/// success elsewhere, and holding a lock-out past `lockout`).
#[test]
fn a_success_and_the_end_of_a_lock_out_hold_on_every_host() {
    if !have_cluster_parts() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let _redis = Redis::start(work.path(), redis_port);
    let tables = format!(
        "{}[login]\nfailures_before_lockout = 3\nlockout = \"3s\"\n",
        cluster_tables(redis_port, "60s")
    );
    let hosts = start_hosts(2, &tables);
    let (a, b) = (&hosts[0], &hosts[1]);
    let login = |h: &Server, src: &str, pass: &str| py_pop_login(h, src, "joe", pass);
    assert!(login(a, "127.0.0.10", "guess").starts_with("ERR"));
    assert!(login(b, "127.0.0.10", "guess").starts_with("ERR"));
    assert!(login(b, "127.0.0.11", "secret").starts_with("OK"));
    // Two failures since the success: under the limit of three.
    assert!(login(a, "127.0.0.12", "guess").starts_with("ERR"));
    assert!(login(a, "127.0.0.12", "guess").starts_with("ERR"));
    let r = login(a, "127.0.0.13", "secret");
    assert!(r.starts_with("OK"), "{r}\n{}", a.log());

    // Three failures on A lock joe out; B refuses him three times meanwhile.
    for _ in 0..3 {
        assert!(login(a, "127.0.0.14", "guess").starts_with("ERR"));
    }
    let locked = Instant::now();
    for _ in 0..3 {
        let r = login(b, "127.0.0.15", "secret");
        assert!(r.starts_with("ERR"), "{r}");
    }
    assert!(
        locked.elapsed() < Duration::from_secs(3),
        "too slow to test"
    );
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(locked.elapsed()));
    for h in [b, a] {
        let r = login(h, "127.0.0.15", "secret");
        assert!(r.starts_with("OK"), "after the lock-out: {r}\n{}", h.log());
    }
}
