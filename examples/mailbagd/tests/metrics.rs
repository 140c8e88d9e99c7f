//! `[metrics] listen`: `/metrics` parses with a Prometheus text-format
//! parser (prometheus-parse, not our encoder's code) and counts what
//! clients did; `/health` answers 200 while every listener is up; no user
//! name or address shows in a label. Under `CI=true` a missing python3
//! fails the tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::{GTUBE, Options, Server, py_pop_login, require};

/// `GET path` over HTTP/1.0: the status code and the body (for
/// `/metrics`, checked to be labelled as the OpenMetrics text it is).
fn get(server: &Server, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(server.addrs["metrics"]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    if path == "/metrics" && status == 200 {
        let content_type = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        });
        assert_eq!(
            content_type.as_deref(),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            "{head}"
        );
        assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    }
    (status, body.to_owned())
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

#[test]
fn metrics_count_logins_messages_and_connections_and_health_is_ok() {
    if !require("python3") {
        return;
    }
    let server = Server::start_with(
        Options {
            tables: "[metrics]\nlisten = \"127.0.0.1:0\"\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let (status, health) = get(&server, "/health");
    assert_eq!((status, health.as_str()), (200, "ok\n"));

    let (status, before) = get(&server, "/metrics");
    assert_eq!(status, 200);
    let ok = [("service", "pop3"), ("result", "ok")];
    let failed = [("service", "pop3"), ("result", "failed")];
    let logins_ok = sample(&before, "mailbag_logins_total", &ok);

    assert!(py_pop_login(&server, "127.0.0.1", "joe", "secret").starts_with("OK"));
    assert!(py_pop_login(&server, "127.0.0.1", "joe", "wrong").starts_with("ERR"));
    // The right password while another session holds the maildrop: `in_use`,
    // not `ok` (a cluster probe saw 25 such refusals counted as logins).
    {
        use std::io::{BufRead, BufReader, Write};
        let mut held = std::net::TcpStream::connect(server.addrs["pop3"]).unwrap();
        held.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        held.write_all(b"USER joe\r\nPASS secret\r\n").unwrap();
        let mut lines = BufReader::new(held.try_clone().unwrap()).lines();
        let replies: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
        assert_eq!(replies[2], "+OK Logged in.", "{replies:?}");
        let r = py_pop_login(&server, "127.0.0.2", "joe", "secret");
        assert!(r.starts_with("ERR -ERR [IN-USE]"), "{r}");
    }
    common::deliver_local(&server, "joe@example.test", "ham", "a plain message");
    common::deliver_local(&server, "joe@example.test", "spam", GTUBE);
    // Relay without a POP3 login from 127.0.0.2: refused at RCPT.
    let replies = common::raw_smtp(
        &server,
        "smtp",
        "127.0.0.2",
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<someone@elsewhere.example>\r\n",
            b"QUIT\r\n",
        ],
    );
    assert!(replies[3].starts_with("55"), "{replies:?}");
    // A message over the size limit: the session refuses it at the end of DATA
    // itself, and it is counted as that reply.
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(1_100_000));
    let replies = common::raw_smtp(
        &server,
        "smtp",
        "127.0.0.1",
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<joe@example.test>\r\n",
            b"DATA\r\n",
            big.as_bytes(),
        ],
    );
    assert!(replies[5].starts_with("552 5.3.4"), "{replies:?}");

    // Refused by the protocol session itself, not by mailbagd's policy: a
    // probe's metric counted none of these.
    let replies = common::raw_smtp(
        &server,
        "smtp",
        "127.0.0.1",
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.org> SIZE=999999999999\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<bad address>\r\n",
            b"XYZZY\r\n",
            b"QUIT\r\n",
        ],
    );
    assert!(replies[2].starts_with("552 5.3.4"), "{replies:?}");
    assert!(replies[4].starts_with("501"), "{replies:?}");
    assert!(replies[5].starts_with("500"), "{replies:?}");

    let (_, after) = get(&server, "/metrics");
    let refused = |stage: &str, status: &str| {
        sample(
            &after,
            "mailbag_smtp_refusals_total",
            &[("stage", stage), ("status", status)],
        )
    };
    assert_eq!(refused("mail", "5.3.4"), 1.0, "{after}");
    assert_eq!(refused("rcpt", "5.1.3"), 1.0, "{after}");
    assert_eq!(refused("other", "5.5.1"), 1.0, "{after}");
    assert_eq!(
        sample(&after, "mailbag_smtp_refusals_total", &[("stage", "data")]),
        0.0,
        "the message over the size limit is counted as a message, once"
    );
    assert_eq!(sample(&after, "mailbag_logins_total", &ok), logins_ok + 2.0);
    assert_eq!(
        sample(
            &after,
            "mailbag_logins_total",
            &[("service", "pop3"), ("result", "in_use")]
        ),
        1.0
    );
    assert!(sample(&after, "mailbag_logins_total", &failed) >= 1.0);
    assert_eq!(
        sample(&after, "mailbag_smtp_messages_total", &[("class", "2xx")]),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "mailbag_smtp_messages_total",
            &[("class", "5xx"), ("status", "5.3.4")]
        ),
        1.0
    );
    // The relay refusal (policy) and the 501 (syntax).
    assert_eq!(
        sample(
            &after,
            "mailbag_smtp_refusals_total",
            &[("stage", "rcpt"), ("class", "5xx")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "mailbag_spam_verdicts_total",
            &[("verdict", "spam")]
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "mailbag_spam_verdicts_total", &[("verdict", "ham")]),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "mailbag_local_deliveries_total",
            &[("folder", "INBOX")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "mailbag_local_deliveries_total",
            &[("folder", "Spam")]
        ),
        1.0
    );
    assert!(sample(&after, "mailbag_connections_total", &[("role", "pop3")]) >= 2.0);
    assert!(sample(&after, "mailbag_connections_total", &[("role", "smtp")]) >= 3.0);
    assert_eq!(sample(&after, "mailbag_relay_queue_messages", &[]), 0.0);
    assert_eq!(sample(&after, "mailbag_listeners_up", &[]), 4.0);
    // Labels name roles and results, never a user or an address.
    for secret in ["joe", "127.0.0", "example"] {
        assert!(!after.contains(secret), "{secret:?} in /metrics:\n{after}");
    }

    // A reload is counted with its result.
    server.signal_hup();
    assert!(common::wait_until(Duration::from_secs(10), || {
        sample(
            &get(&server, "/metrics").1,
            "mailbag_reloads_total",
            &[("result", "ok")],
        ) == 1.0
    }));
    assert_eq!(
        sample(
            &get(&server, "/metrics").1,
            "mailbag_last_reload_success",
            &[]
        ),
        1.0
    );
    let (status, _) = get(&server, "/nothing-here");
    assert_eq!(status, 404);
}

/// A connection turned away at a connection limit is counted, per role and
/// reason (a probe found such refusals in no metric).
#[test]
fn connections_refused_at_a_limit_are_counted() {
    let server = Server::start_with(
        Options {
            tables: "[metrics]\nlisten = \"127.0.0.1:0\"\n".into(),
            limits: "max_connections_per_ip = 1\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let pop3 = [("role", "pop3"), ("reason", "per_address")];
    let before = sample(
        &get(&server, "/metrics").1,
        "mailbag_connections_refused_total",
        &pop3,
    );
    let mut first = TcpStream::connect(server.addrs["pop3"]).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 3];
    first.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"+OK");
    let mut second = TcpStream::connect(server.addrs["pop3"]).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    let _ = second.read_to_string(&mut text);
    assert!(text.starts_with("-ERR [SYS/TEMP]"), "{text}");
    let (_, metrics) = get(&server, "/metrics");
    assert_eq!(
        sample(&metrics, "mailbag_connections_refused_total", &pop3),
        before + 1.0,
        "{metrics}"
    );
    drop(first);
}

/// A copy delivered unscanned to a user who has scanning on (spamd down, fail-open) is
/// counted as `verdict="unscanned"` (a probe found spamd failures visible only in the
/// log); a user with scanning off adds no verdict.
#[test]
fn a_copy_delivered_unscanned_is_counted() {
    if !require("python3") {
        return;
    }
    let server = Server::start_with(
        Options {
            spamd: Some(format!("127.0.0.1:{}", common::free_port())),
            tables: "[metrics]\nlisten = \"127.0.0.1:0\"\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    common::deliver_local(&server, "joe@example.test", "no spamd", GTUBE);
    let (status, text) = get(&server, "/metrics");
    assert_eq!(status, 200);
    let verdict = |v: &str| sample(&text, "mailbag_spam_verdicts_total", &[("verdict", v)]);
    assert_eq!(
        (verdict("unscanned"), verdict("spam"), verdict("ham")),
        (1.0, 0.0, 0.0),
        "{text}"
    );
    assert_eq!(
        server.message_texts("joe", "").len(),
        1,
        "delivered to the INBOX"
    );
}
