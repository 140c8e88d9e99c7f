//! mailbagd behind HAProxy (`mode tcp`, `send-proxy-v2` and `send-proxy`, from
//! `shared/peers/haproxy-start.sh`) with `[proxy] trusted_networks` naming the
//! balancer: the PROXY header's client address is the client for POP-before-SMTP,
//! logs and `Received:`; a POP3 login through the balancer authorizes relay from
//! that client only; the relay-tester address tricks are refused from another
//! client through the balancer; a PROXY line from an untrusted client is only a bad
//! command; a trusted connection without a header is closed; implicit TLS works
//! behind the balancer (header first). Under `CI=true` a missing haproxy or python3
//! fails the tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::{
    Balancer, Options, RELAY_BATTERY, Server, peers_dir, py_pop_login, py_pop_login_port,
    raw_smtp_port, rcpt_arg_reply, rcpt_reply, require,
};

fn start() -> Server {
    Server::start_with(
        Options {
            tls: true,
            tables: "[proxy]\ntrusted_networks = [\"127.0.0.1/32\"]\nheader_timeout = \"1s\"\n"
                .into(),
            ..Options::default()
        },
        |_| {},
    )
}

#[test]
fn the_balancer_s_client_address_is_the_client_for_relay_logs_and_received() {
    if !require("haproxy") || !require("python3") || peers_dir().is_none() {
        assert!(!common::in_ci(), "shared/peers missing");
        return;
    }
    let server = start();
    let pop3 = Balancer::start(&server, &[server.port("pop3")], "2");
    let smtp = Balancer::start(&server, &[server.port("smtp")], "2");
    let smtp_v1 = Balancer::start(&server, &[server.port("smtp")], "1");

    // Before any login: no relay from 127.0.0.2 through the balancer.
    assert!(rcpt_reply(&server, smtp.port, "127.0.0.2", "kim@elsewhere.example").starts_with("5"));
    // A POP3 login through the balancer from 127.0.0.2 ...
    let login = py_pop_login_port(pop3.port, "127.0.0.2", "joe", "secret");
    assert!(login.starts_with("OK"), "{login}\n{}", server.log());
    assert!(
        server.log().contains("client=127.0.0.2"),
        "{}",
        server.log()
    );
    // ... authorizes 127.0.0.2 through either header version, and directly ...
    for port in [smtp.port, smtp_v1.port, server.port("smtp")] {
        let r = rcpt_reply(&server, port, "127.0.0.2", "kim@elsewhere.example");
        assert!(r.starts_with("250"), "relay from 127.0.0.2 via {port}: {r}");
    }
    // ... and nobody else: not 127.0.0.3, not the balancer's own address.
    let r = rcpt_reply(&server, smtp.port, "127.0.0.3", "kim@elsewhere.example");
    assert!(r.starts_with("5"), "{r}");

    // The relay battery from the unauthorized client through the balancer.
    for t in RELAY_BATTERY {
        let r = rcpt_arg_reply(&server, smtp.port, "127.0.0.3", t);
        assert!(r.starts_with('5'), "RCPT TO:{t} through the balancer: {r}");
    }
    assert!(server.queued().is_empty(), "RCPT only: nothing was sent");

    // Received: names the client behind the balancer.
    let msg = common::message("ann@example.test", "via balancer", "hello");
    let sent = raw_smtp_port(
        &server,
        smtp.port,
        "127.0.0.3",
        &[
            b"EHLO c\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<ann@example.test>\r\n",
            b"DATA\r\n",
            format!("{msg}.\r\n").as_bytes(),
            b"QUIT\r\n",
        ],
    );
    assert!(sent[5].starts_with("250"), "{sent:?}");
    let stored = server.message_texts("ann", "");
    assert!(stored[0].contains("[127.0.0.3]"), "{}", stored[0]);
    assert!(!stored[0].contains("[127.0.0.1]"), "{}", stored[0]);
}

#[test]
fn untrusted_headers_count_for_nothing_and_trusted_connections_need_one() {
    if !require("haproxy") || !require("python3") || peers_dir().is_none() {
        assert!(!common::in_ci(), "shared/peers missing");
        return;
    }
    let server = start();
    // 127.0.0.2 logs in directly (not through a balancer).
    assert!(py_pop_login(&server, "127.0.0.2", "joe", "secret").starts_with("OK"));
    // 127.0.0.3 claims to be 127.0.0.2 with a PROXY line: just a bad command.
    let r = raw_smtp_port(
        &server,
        server.port("smtp"),
        "127.0.0.3",
        &[
            b"PROXY TCP4 127.0.0.2 127.0.0.1 5000 25\r\n",
            b"EHLO c\r\n",
            b"MAIL FROM:<a@example.org>\r\n",
            b"RCPT TO:<kim@elsewhere.example>\r\n",
        ],
    );
    assert!(r[1].starts_with('5'), "{r:?}");
    assert!(
        r[4].starts_with('5'),
        "relay from 127.0.0.3 with a forged header: {r:?}"
    );

    // A trusted address without a header: closed, no greeting.
    let mut c = TcpStream::connect(("127.0.0.1", server.port("smtp"))).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"EHLO c\r\n").unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // ... and one that sends nothing is closed after header_timeout (1 s).
    let mut idle = TcpStream::connect(("127.0.0.1", server.port("pop3"))).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let _ = idle.read_to_end(&mut got);
    assert!(got.is_empty() && start.elapsed() < Duration::from_secs(8));
    assert!(server.log().contains("without a valid PROXY header"));

    // Implicit TLS behind the balancer: the header comes first, then the handshake.
    let pop3s = Balancer::start(&server, &[server.port("pop3s")], "2");
    let script = r#"
import poplib, socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class P(poplib.POP3_SSL):
    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), timeout, source_address=('127.0.0.4', 0))
        return ctx.wrap_socket(s)
p = P('127.0.0.1', int(sys.argv[1]), context=ctx, timeout=20)
p.user('joe'); p.pass_('secret'); print(p.stat()[0]); p.quit()
"#;
    let out = common::python(script, &[&pop3s.port.to_string()]);
    assert!(out.ok(), "{out:?}\n{}", server.log());
    assert!(server.log().contains("client=127.0.0.4"));
}

/// A PROXY header whose source no TCP client can have (0.0.0.0 here; `::`,
/// broadcast and multicast alike) names nobody: the connection counts as
/// the balancer's own, so a POP3 login under it authorizes no one else who
/// claims that address. Before, the login recorded 0.0.0.0 and every later
/// header claiming it could relay (a cluster probe).
#[test]
fn a_header_naming_an_address_no_client_has_authorizes_nobody() {
    let server = start();
    // Sends the header and `lines` from the trusted balancer address, then
    // returns all that came back.
    let talk = |port: u16, lines: &str| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(format!("PROXY TCP4 0.0.0.0 127.0.0.1 5000 {port}\r\n{lines}").as_bytes())
            .unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        got
    };
    let pop3 = talk(server.port("pop3"), "USER joe\r\nPASS secret\r\nQUIT\r\n");
    assert!(pop3.contains("+OK Logged in."), "{pop3}");
    let smtp = talk(
        server.port("smtp"),
        "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<kim@elsewhere.example>\r\nQUIT\r\n",
    );
    let rcpt = smtp
        .lines()
        .filter(|l| !l.starts_with("250-"))
        .nth(3)
        .unwrap_or("");
    assert!(rcpt.starts_with("554 5.7.1"), "{smtp}");
    assert!(!server.log().contains("client=0.0.0.0"), "{}", server.log());
}

/// `[proxy] trusted_networks` that holds every address lets any client claim
/// any source address: the server starts (a lab may want it) but warns.
#[test]
fn trusting_every_address_is_warned_about() {
    for (nets, warned) in [
        ("\"0.0.0.0/0\"", true),
        ("\"::/0\", \"127.0.0.1/32\"", true),
        ("\"127.0.0.1/32\"", false),
    ] {
        let server = Server::start_with(
            Options {
                tables: format!("[proxy]\ntrusted_networks = [{nets}]\n"),
                ..Options::default()
            },
            |_| {},
        );
        assert_eq!(
            server
                .log()
                .contains("trusted_networks holds every address"),
            warned,
            "{nets}: {}",
            server.log()
        );
    }
}
