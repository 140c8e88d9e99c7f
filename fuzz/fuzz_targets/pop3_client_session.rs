//! The client session driven by arbitrary server bytes, interleaved with
//! arbitrary (well-formed) commands queued by the caller, TLS handshakes,
//! partial output writes and connection ends. No panic; every buffer stays
//! under its limit; nothing happens after close.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mailbag_pop3_proto::client::{ClientEvent, ClientOptions, ClientSession};

#[derive(Debug, Arbitrary)]
enum Op {
    Feed(Vec<u8>),
    FeedLine(u8, u8),
    Command(u8, u8),
    TlsEstablished,
    Consume(u16),
    ConnectionClosed,
}

/// Server lines that get the session into every state.
const LINES: [&[u8]; 24] = [
    b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n",
    b"+OK\r\n",
    b"-ERR [AUTH] Authentication failed.\r\n",
    b"-ERR [IN-USE] locked\r\n",
    b"-ERR [SYS/TEMP] later\r\n",
    b"+OK 2 320\r\n",
    b"+OK 1 120\r\n",
    b"+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n",
    b"1 120\r\n",
    b"2 whqtswO00WBw418f9t5JxYwZ\r\n",
    b".\r\n",
    b"..stuffed\r\n",
    b"TOP\r\n",
    b"PIPELINING\r\n",
    b"SASL PLAIN LOGIN\r\n",
    b"STLS\r\n",
    b"+ \r\n",
    b"+ VXNlcm5hbWU6\r\n",
    b"Subject: x\r\n",
    b"\r\n",
    b"body line\n",
    b".\n",
    b"-ERR\r\n",
    b"+OK [LOGIN-DELAY] x\r\n",
];

fn command(c: &mut ClientSession, which: u8, arg: u8) {
    let n = u32::from(arg % 4);
    // Refusals (closed, wrong state, message 0) are fine: only panics are not.
    let _ = match which % 18 {
        0 => c.capa(),
        1 => c.stls(),
        2 => c.login_user_pass("joe", "secret"),
        3 => c.login_apop("joe", "secret"),
        4 => c.login_sasl_plain(None, "joe", "secret"),
        5 => c.login_sasl_login("joe", "secret"),
        6 => c.stat(),
        7 => c.list(None),
        8 => c.list(Some(n)),
        9 => c.uidl(None),
        10 => c.uidl(Some(n)),
        11 => c.retr(n),
        12 => c.top(n, u32::from(arg)),
        13 => c.dele(n),
        14 => c.rset(),
        15 => c.noop(),
        16 => c.quit(),
        _ => c.login_sasl_plain(Some("admin"), "joe", "secret"),
    };
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut options = ClientOptions::default();
    options.pipelining = u.arbitrary().unwrap_or(true);
    options.sasl_initial_response = u.arbitrary().unwrap_or(true);
    options.implicit_tls = u.arbitrary().unwrap_or(false);
    // Small limits so that they are reached.
    options.max_line = 16 + usize::from(u.arbitrary::<u8>().unwrap_or(255)) * 2;
    options.max_sasl_line = options.max_line;
    options.max_listing_entries = usize::from(u.arbitrary::<u8>().unwrap_or(8) % 16);
    options.max_capabilities = usize::from(u.arbitrary::<u8>().unwrap_or(8) % 16);
    options.max_body_chunk = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(64));
    options.max_buffered_input = 1024 + usize::from(u.arbitrary::<u16>().unwrap_or(4096));
    let limits = options.clone();
    let mut c = ClientSession::new(options);
    let mut steps = 0;
    while let Ok(op) = u.arbitrary::<Op>() {
        steps += 1;
        if steps > 200 {
            break;
        }
        let was_closed = c.is_closed();
        match op {
            Op::Feed(bytes) => c.feed(&bytes),
            Op::FeedLine(a, b) => {
                c.feed(LINES[usize::from(a) % LINES.len()]);
                c.feed(LINES[usize::from(b) % LINES.len()]);
            }
            Op::Command(which, arg) => command(&mut c, which, arg),
            Op::TlsEstablished => {
                let awaiting = c.awaiting_tls();
                assert_eq!(c.tls_established().is_ok(), awaiting);
            }
            Op::Consume(n) => c.consume_output(usize::from(n)),
            Op::ConnectionClosed => c.connection_closed(),
        }
        assert!(
            c.buffered_input() <= limits.max_buffered_input,
            "input not bounded"
        );
        let mut events = 0;
        let mut closed_seen = false;
        while let Some(ev) = c.next_event() {
            events += 1;
            assert!(events < 100_000, "event loop does not terminate");
            assert!(!was_closed, "event after close");
            assert!(!closed_seen, "event after Closed");
            match ev {
                ClientEvent::BodyChunk(b) => {
                    assert!(
                        !b.is_empty() && b.len() <= limits.max_body_chunk,
                        "chunk not bounded"
                    );
                }
                ClientEvent::List(l) => assert!(l.len() <= limits.max_listing_entries.max(1)),
                ClientEvent::Uidl(l) => assert!(l.len() <= limits.max_listing_entries.max(1)),
                ClientEvent::Capabilities(l) => assert!(l.len() <= limits.max_capabilities),
                ClientEvent::Closed => closed_seen = true,
                _ => {}
            }
        }
        assert_eq!(closed_seen || was_closed, c.is_closed());
        assert!(
            c.buffered_input() <= limits.max_buffered_input,
            "input not bounded"
        );
        assert!(c.output().len() <= steps * 1024, "output not bounded");
    }
});
