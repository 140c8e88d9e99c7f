//! Postfix policy delegation (`[pop_before_smtp] policy_listen`): a real
//! Postfix from `shared/peers`, configured with `check_policy_service` on
//! mailbagd's policy port, relays for a client address only after a POP3
//! login to mailbagd from that address, and never for another address.
//! Under `CI=true` a missing Postfix or python3 fails the test.

mod common;
use common::{
    Options, Postfix, Server, postfix_relay_attempt as relay_attempt, py_pop_login, require,
};

#[test]
fn postfix_relays_after_a_pop3_login_to_mailbagd_and_only_then() {
    if !require("postfix") || !require("python3") {
        return;
    }
    let server = Server::start_with(
        Options {
            pop_before_smtp: "policy_listen = \"127.0.0.1:0\"".into(),
            ..Options::default()
        },
        |_| {},
    );
    let policy = server.addrs["policy"];
    let root = tempfile::tempdir().unwrap();
    let postfix = Postfix::asking(root.path(), policy);
    let denied = Postfix::relay_denied;
    // Before any login: refused for everyone.
    let before = relay_attempt(postfix.port, "127.0.0.2");
    assert!(denied(&before), "{before}");
    // A POP3 login to mailbagd from .2 authorizes .2 at Postfix, not .3. (The
    // peer has no outbound transport: a permitted relay recipient then meets
    // its `error:` transport, which Postfix reports at RCPT; that check runs
    // only once relay control let the recipient through.)
    assert!(py_pop_login(&server, "127.0.0.2", "joe", "secret").starts_with("OK"));
    let after = relay_attempt(postfix.port, "127.0.0.2");
    assert!(
        !denied(&after) && after.contains("no outbound delivery from the peer instance"),
        "{after}"
    );
    let other = relay_attempt(postfix.port, "127.0.0.3");
    assert!(denied(&other), "{other}");
    // A failed login authorizes nothing.
    assert!(!py_pop_login(&server, "127.0.0.4", "joe", "wrong").starts_with("OK"));
    let failed = relay_attempt(postfix.port, "127.0.0.4");
    assert!(denied(&failed), "{failed}");
    assert!(server.log().contains("127.0.0.2"), "{}", server.log());
}
