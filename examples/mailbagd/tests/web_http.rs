//! The self-service web page over HTTP (raw TCP client, in-process
//! `mailbagd`): login (wrong password, unknown user, rate limit), cookies,
//! CSRF, cross-user message ids, settings applied to delivery and kept over
//! a restart, the Spam page (paging, release, delete, delete all), TLS.

use std::time::{Duration, Instant};

mod webutil;
use webutil::{Client, GTUBE, WebServer, enc, http, pop3_fetch_all, smtp_send, subject};

const FAST: &str = "login_failure_delay = \"0s\"";

fn login_ok(c: &mut Client, user: &str) {
    let r = c.login(user, "secret");
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/settings"));
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_answer_and_delay() {
    let server = WebServer::start("login_failure_delay = \"300ms\"");
    let mut answers = Vec::new();
    // ann has a SHA-crypt hash: an unknown user costs the same hash work.
    for (user, pass) in [("ann", "wrong"), ("nobody", "wrong"), ("joe", "secreT")] {
        let mut c = Client::new(server.web());
        let t0 = Instant::now();
        let r = c.login(user, pass);
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(300), "{user}: {took:?}");
        assert_eq!(r.status, 401, "{user}: {r:?}");
        assert!(r.body.contains("Wrong mailbox name or password."));
        assert!(!c.cookies.contains_key("mailbag_session"), "{user}");
        // The same page, but for the echoed name and the fresh login token.
        let csrf = r.csrf().unwrap();
        let body = r
            .body
            .replace(&csrf, "TOKEN")
            .replace(&format!("value=\"{user}\""), "value=\"USER\"");
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    // The right password works.
    let mut c = Client::new(server.web());
    login_ok(&mut c, "ann");
    assert!(c.get("/settings").body.contains("Log out ann"));
}

/// Three failures lock out (the `[login]` limiter, shared with POP3).
const LOCK_AFTER_3: &str = "login_failure_delay = \"0s\"\n[login]\nfailures_before_lockout = 3";

/// One POP3 login over raw TCP (USER/PASS): the reply to PASS.
fn pop3_login(server: &WebServer, user: &str, pass: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(server.pop3()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("+OK"), "{line}");
    for cmd in [format!("USER {user}"), format!("PASS {pass}")] {
        line.clear();
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        r.read_line(&mut line).unwrap();
    }
    let _ = w.write_all(b"QUIT\r\n");
    line
}

#[test]
fn login_failures_lock_out_the_address_with_429() {
    let server = WebServer::start(LOCK_AFTER_3);
    let mut c = Client::new(server.web());
    // Different user names: the address is counted.
    for user in ["joe", "ann", "nobody"] {
        assert_eq!(c.login(user, "wrong").status, 401);
    }
    // Even the right password is refused now.
    let r = c.login("joe", "secret");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("Too many login attempts"), "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    assert!(!c.cookies.contains_key("mailbag_session"));
}

#[test]
fn web_login_failures_count_for_pop3_and_pop3_failures_for_the_web() {
    let server = WebServer::start(LOCK_AFTER_3);
    // Web failures, then the right password over POP3: refused with [AUTH]. The
    // login between them takes back only itself: the address keeps the first failure.
    let mut c = Client::new(server.web());
    assert_eq!(c.login("joe", "wrong").status, 401);
    assert_eq!(pop3_login(&server, "joe", "secret"), "+OK Logged in.\r\n");
    for _ in 0..2 {
        assert_eq!(c.login("joe", "wrong").status, 401);
    }
    let r = pop3_login(&server, "joe", "secret");
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    // The same answer as for a wrong password and for an unknown user.
    assert_eq!(r, pop3_login(&server, "nobody", "x"));

    let server = WebServer::start(LOCK_AFTER_3);
    // POP3 failures (ann, from 127.0.0.1), then the right password on the web page: 429.
    for _ in 0..3 {
        let r = pop3_login(&server, "ann", "wrong");
        assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
    }
    let mut c = Client::new(server.web());
    assert_eq!(c.login("ann", "secret").status, 429);

    // However the name is typed, the failures count against the mailbox.
    let server = WebServer::start(LOCK_AFTER_3);
    let mut c = Client::new(server.web());
    for typed in ["JOE", "joe@example.test", "Joe@EXAMPLE.TEST/Spam"] {
        assert_eq!(c.login(typed, "wrong").status, 401, "{typed}");
    }
    let r = pop3_login(&server, "joe", "secret");
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
}

#[test]
fn the_full_address_in_any_case_logs_in_to_the_mailbox() {
    let server = WebServer::start(FAST);
    for typed in ["JOE", "Joe@Example.TEST", "joe@example.test/Spam"] {
        let mut c = Client::new(server.web());
        login_ok(&mut c, typed);
        let page = c.get("/settings");
        assert_eq!(page.status, 200);
        assert!(page.body.contains("joe"), "{typed}: {}", page.body);
        assert!(
            !page.body.contains("Joe@"),
            "{typed}: the mailbox name is shown"
        );
    }
    let mut c = Client::new(server.web());
    assert_eq!(c.login("joe@elsewhere.test", "secret").status, 401);
}

#[test]
fn cookie_attributes_security_headers_and_logout() {
    let server = WebServer::start(FAST);
    let mut c = Client::new(server.web());
    let page = c.get("/login");
    let login_cookie = page.set_cookie("mailbag_login").unwrap();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let r = c.login("joe", "secret");
    let sc = r.set_cookie("mailbag_session").unwrap().to_owned();
    let value = sc
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("mailbag_session=")
        .unwrap();
    assert_eq!(value.len(), 32, "{sc}");
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{sc}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
        assert!(sc.split("; ").any(|a| a == attr), "{attr} missing: {sc}");
    }
    assert!(!sc.contains("Secure"), "plain HTTP: {sc}");
    // The login token cookie is cleared after login.
    assert!(r.set_cookie("mailbag_login").unwrap().contains("Max-Age=0"));

    let settings = c.get("/settings");
    assert_eq!(settings.status, 200);
    let csp = settings.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(settings.header("x-frame-options"), Some("DENY"));
    // Plain HTTP: no HSTS (RFC 6797 section 7.2: only sent over TLS).
    assert_eq!(settings.header("strict-transport-security"), None);
    assert_eq!(settings.header("cache-control"), Some("no-store"));
    assert_eq!(settings.header("x-content-type-options"), Some("nosniff"));
    assert!(
        settings
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let css = c.get("/style.css");
    assert!(css.header("content-type").unwrap().starts_with("text/css"));

    // Logout: the cookie is cleared and the old id is dead server-side.
    let csrf = settings.csrf().unwrap();
    let out = c.post("/logout", &format!("csrf={csrf}"));
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/login"));
    assert!(
        out.set_cookie("mailbag_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    let replay = http(
        server.web(),
        "GET",
        "/settings",
        &format!("mailbag_session={value}"),
        None,
    );
    assert_eq!(replay.status, 303);
    assert_eq!(replay.header("location"), Some("/login"));
    // Without a session every page leads to the login.
    assert_eq!(http(server.web(), "GET", "/spam", "", None).status, 303);
    let forged = http(
        server.web(),
        "GET",
        "/settings",
        &format!("mailbag_session={}", "0".repeat(32)),
        None,
    );
    assert_eq!(forged.status, 303);
}

#[test]
fn posts_without_the_csrf_token_are_refused_with_403() {
    let server = WebServer::start(FAST);
    // Login form: no token, wrong token, token without its cookie.
    let mut c = Client::new(server.web());
    let page = c.get("/login");
    let token = page.csrf().unwrap();
    assert_eq!(c.post("/login", "user=joe&password=secret").status, 403);
    assert_eq!(
        c.post(
            "/login",
            &format!("csrf={}&user=joe&password=secret", "a".repeat(32))
        )
        .status,
        403
    );
    let no_cookie = http(
        server.web(),
        "POST",
        "/login",
        "",
        Some(&format!("csrf={token}&user=joe&password=secret")),
    );
    assert_eq!(no_cookie.status, 403);
    assert!(!c.cookies.contains_key("mailbag_session"));
    // Another client's valid token with this client's valid cookie, both issued in the
    // same second (the web probe logged a victim into the attacker's mailbox so: the
    // tokens of one second were alike).
    let mut other = Client::new(server.web());
    let theirs = other.get("/login").csrf().unwrap();
    assert_ne!(theirs, token, "two tokens alike");
    assert_eq!(
        c.post("/login", &format!("csrf={theirs}&user=joe&password=secret"))
            .status,
        403
    );

    login_ok(&mut c, "joe");
    let csrf = c.csrf();
    let change = "spam_scanning=off&subject_prefix=off&spam_folder=INBOX";
    for form in [
        change.to_owned(),
        format!("csrf=&{change}"),
        format!("csrf={}&{change}", "b".repeat(32)),
    ] {
        let r = c.post("/settings", &form);
        assert_eq!(r.status, 403, "{form}: {r:?}");
        assert!(r.body.contains("security token"));
    }
    // Not a form at all.
    let raw = http(
        server.web(),
        "POST",
        "/settings",
        &format!("mailbag_session={}", c.cookies["mailbag_session"]),
        None,
    );
    assert_eq!(raw.status, 403);
    // Nothing changed.
    let page = c.get("/settings");
    assert!(page.body.contains(r#"value="on" id="scanning-on" checked"#));
    assert!(
        page.body
            .contains(r#"value="Spam" id="folder-spam" checked"#)
    );
    for path in [
        "/spam/release",
        "/spam/delete",
        "/spam/delete-all",
        "/logout",
    ] {
        assert_eq!(c.post(path, "uid=0000000100000001").status, 403, "{path}");
    }
    // Still logged in; with the token it works.
    let r = c.post("/settings", &format!("csrf={csrf}&{change}"));
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/settings?saved=1");
    assert!(page.body.contains("Your settings are saved"));
    assert!(
        page.body
            .contains(r#"value="INBOX" id="folder-inbox" checked"#)
    );
}

#[test]
fn another_users_message_ids_are_404() {
    let server = WebServer::start(FAST);
    assert!(smtp_send(server.smtp(), "ann@example.test", "ann's spam", GTUBE).starts_with("250"));
    let mut ann = Client::new(server.web());
    login_ok(&mut ann, "ann");
    let page = ann.get("/spam");
    assert!(
        page.body.contains("ann&#39;s spam") || page.body.contains("ann's spam"),
        "{}",
        page.body
    );
    let marker = "name=\"uid\" value=\"";
    let i = page.body.find(marker).unwrap() + marker.len();
    let ann_uid = page.body[i..i + 16].to_owned();

    let mut joe = Client::new(server.web());
    login_ok(&mut joe, "joe");
    let csrf = joe.csrf();
    assert!(joe.get("/spam").body.contains("Your Spam folder is empty."));
    for path in ["/spam/release", "/spam/delete"] {
        for uid in [ann_uid.as_str(), "../ann/.Spam", "", "zz zz"] {
            let r = joe.post(path, &format!("csrf={csrf}&uid={}&page=1", enc(uid)));
            assert_eq!(r.status, 404, "{path} {uid}: {r:?}");
        }
    }
    // ann's message is untouched and joe's INBOX got nothing.
    assert_eq!(server.files("ann", ".Spam").len(), 1);
    assert!(server.files("joe", "").is_empty());
    // ann herself can release it.
    let csrf = ann.csrf();
    let r = ann.post(
        "/spam/release",
        &format!("csrf={csrf}&uid={ann_uid}&page=1"),
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert!(server.files("ann", ".Spam").is_empty());
}

#[test]
fn settings_apply_to_the_next_delivery_and_survive_a_restart() {
    let server = WebServer::start(FAST);
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    let csrf = c.csrf();
    // Default: spam goes to Spam.
    assert!(smtp_send(server.smtp(), "joe@example.test", "first", GTUBE).starts_with("250"));
    assert_eq!(server.files("joe", ".Spam").len(), 1);
    // INBOX, no prefix.
    let r = c.post(
        "/settings",
        &format!("csrf={csrf}&spam_scanning=on&subject_prefix=off&spam_folder=INBOX"),
    );
    assert_eq!(r.status, 303);
    assert!(smtp_send(server.smtp(), "joe@example.test", "second", GTUBE).starts_with("250"));
    let inbox = pop3_fetch_all(server.pop3(), "joe", "secret");
    assert_eq!(inbox.len(), 1);
    assert_eq!(subject(&inbox[0]), "second");
    assert!(inbox[0].contains("X-Spam-Flag: YES"), "{}", inbox[0]);
    // Prefix on.
    let r = c.post(
        "/settings",
        &format!("csrf={csrf}&spam_scanning=on&subject_prefix=on&spam_folder=INBOX"),
    );
    assert_eq!(r.status, 303);
    assert!(smtp_send(server.smtp(), "joe@example.test", "third", GTUBE).starts_with("250"));
    let inbox = pop3_fetch_all(server.pop3(), "joe", "secret");
    assert!(
        inbox
            .iter()
            .any(|m| subject(m).starts_with("**SPAM( 100") && subject(m).ends_with(")** third")),
        "{inbox:?}"
    );
    // Scanning off: no verdict headers.
    let r = c.post(
        "/settings",
        &format!("csrf={csrf}&spam_scanning=off&subject_prefix=on&spam_folder=Spam"),
    );
    assert_eq!(r.status, 303);
    assert!(smtp_send(server.smtp(), "joe@example.test", "fourth", GTUBE).starts_with("250"));
    let inbox = pop3_fetch_all(server.pop3(), "joe", "secret");
    let fourth = inbox.iter().find(|m| subject(m) == "fourth").unwrap();
    assert!(!fourth.contains("X-Spam-"), "{fourth}");
    // A bad value is refused and changes nothing.
    let r = c.post(
        "/settings",
        &format!("csrf={csrf}&spam_scanning=maybe&subject_prefix=on&spam_folder=Spam"),
    );
    assert_eq!(r.status, 400);

    // Restart on the same data: the settings are still there.
    let (dir, data) = server.stop();
    let server = WebServer::start_in(dir, data, FAST, "");
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    let page = c.get("/settings");
    assert!(
        page.body
            .contains(r#"value="off" id="scanning-off" checked"#)
    );
    assert!(
        page.body
            .contains(r#"value="Spam" id="folder-spam" checked"#)
    );
    assert!(smtp_send(server.smtp(), "joe@example.test", "fifth", GTUBE).starts_with("250"));
    assert!(
        pop3_fetch_all(server.pop3(), "joe", "secret")
            .iter()
            .any(|m| subject(m) == "fifth")
    );
}

/// `n` GTUBE messages to joe (his spam goes to the Spam folder), subjects
/// `offer 0`, `offer 1`, ….
fn send_offers(server: &WebServer, n: usize) {
    for i in 0..n {
        let r = smtp_send(
            server.smtp(),
            "joe@example.test",
            &format!("offer {i}"),
            GTUBE,
        );
        assert!(r.starts_with("250"), "{r}");
    }
}

#[test]
fn spam_page_pages_releases_deletes_and_empties() {
    let server = WebServer::start(&format!("{FAST}\npage_size = 4"));
    send_offers(&server, 10);
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    let csrf = c.csrf();
    let p1 = c.get("/spam");
    assert_eq!(p1.status, 200);
    assert_eq!(p1.header("cache-control"), Some("no-store"));
    assert!(p1.body.contains("10 messages in your Spam folder"));
    assert!(p1.body.contains("Page 1 of 3"));
    assert_eq!(p1.body.matches("class=\"release\"").count(), 4);
    // Newest first; the tag is not shown in the Subject, the score is.
    let first = p1.body.find("offer 9").unwrap();
    assert!(first < p1.body.find("offer 8").unwrap());
    assert!(p1.body.contains(">100"), "{}", p1.body);
    assert!(p1.body.contains("sender@example.org"));
    let p3 = c.get("/spam?page=3");
    assert_eq!(p3.body.matches("class=\"release\"").count(), 2);
    assert!(p3.body.contains("offer 0") && p3.body.contains("offer 1"));
    assert!(c.get("/spam?page=99").body.contains("Page 3 of 3"));

    // Release "offer 9": untagged in the INBOX over POP3, gone from Spam.
    let marker = "name=\"uid\" value=\"";
    let i = p1.body.find(marker).unwrap() + marker.len();
    let uid = p1.body[i..i + 16].to_owned();
    let r = c.post("/spam/release", &format!("csrf={csrf}&uid={uid}&page=1"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/spam?page=1&done=released"));
    assert!(
        c.get("/spam?page=1&done=released")
            .body
            .contains("released to your INBOX")
    );
    let inbox = pop3_fetch_all(server.pop3(), "joe", "secret");
    assert_eq!(inbox.len(), 1);
    assert_eq!(subject(&inbox[0]), "offer 9");
    // No verdict a client trusts is left (X-Spam-Flag, X-Spam-Status, X-Spam-Level);
    // the informational X-Spam-Prev-Subject stays, the body is intact.
    let (head, body) = inbox[0].split_once("\r\n\r\n").unwrap();
    for line in head.lines() {
        let lower = line.to_ascii_lowercase();
        for verdict in ["x-spam-flag:", "x-spam-status:", "x-spam-level:"] {
            assert!(!lower.starts_with(verdict), "{line:?} kept in\n{head}");
        }
        assert!(!lower.contains("**spam"), "{line:?}");
    }
    assert!(head.contains("X-Spam-Prev-Subject: offer 9"), "{head}");
    assert!(body.contains("GTUBE"), "{body}");
    // Released again: gone.
    assert_eq!(
        c.post("/spam/release", &format!("csrf={csrf}&uid={uid}&page=1"))
            .status,
        404
    );

    // Delete one.
    let p1 = c.get("/spam");
    let i = p1.body.find(marker).unwrap() + marker.len();
    let uid = p1.body[i..i + 16].to_owned();
    let r = c.post("/spam/delete", &format!("csrf={csrf}&uid={uid}&page=1"));
    assert_eq!(r.status, 303);
    assert_eq!(server.files("joe", ".Spam").len(), 8);

    // Delete all, after the confirmation page.
    let confirm = c.get("/spam/delete-all");
    assert!(
        confirm.body.contains("deletes the 8 messages"),
        "{}",
        confirm.body
    );
    let upto_marker = "name=\"upto\" value=\"";
    let i = confirm.body.find(upto_marker).unwrap() + upto_marker.len();
    let upto: String = confirm.body[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    // Without confirmation: nothing.
    assert_eq!(
        c.post("/spam/delete-all", &format!("csrf={csrf}")).status,
        400
    );
    assert_eq!(server.files("joe", ".Spam").len(), 8);
    // Spam arriving after the confirmation page was shown is kept.
    std::thread::sleep(Duration::from_millis(20));
    assert!(smtp_send(server.smtp(), "joe@example.test", "late", GTUBE).starts_with("250"));
    let r = c.post("/spam/delete-all", &format!("csrf={csrf}&upto={upto}"));
    assert_eq!(r.status, 303);
    let left = server.files("joe", ".Spam");
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("late"));
}

/// RFC 1939: a POP3 session on the Spam folder (`joe/Spam`) has it to
/// itself. The web page's release, delete and delete all answer `409` while
/// it lasts and change nothing (a probe's session got `-ERR [SYS/TEMP]` for
/// messages released and deleted meanwhile), and work once it has ended.
#[test]
fn spam_actions_wait_for_a_pop3_session_on_the_spam_folder() {
    use std::io::{BufRead, BufReader, Write};
    let server = WebServer::start(FAST);
    send_offers(&server, 2);
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    let csrf = c.csrf();
    let page = c.get("/spam");
    let marker = "name=\"uid\" value=\"";
    let i = page.body.find(marker).unwrap() + marker.len();
    let uid = page.body[i..i + 16].to_owned();

    let s = std::net::TcpStream::connect(server.pop3()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut cmd = |line: &str| {
        if !line.is_empty() {
            w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        }
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        reply
    };
    assert!(cmd("").starts_with("+OK"));
    assert!(cmd("USER joe/Spam").starts_with("+OK"));
    assert!(cmd("PASS secret").starts_with("+OK"));
    assert!(cmd("STAT").starts_with("+OK 2 "));

    let busy = c.post("/spam/release", &format!("csrf={csrf}&uid={uid}&page=1"));
    assert_eq!(busy.status, 409, "{busy:?}");
    assert!(busy.body.contains("Spam folder in use"), "{}", busy.body);
    assert_eq!(
        c.post("/spam/delete", &format!("csrf={csrf}&uid={uid}&page=1"))
            .status,
        409
    );
    let upto = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(
        c.post("/spam/delete-all", &format!("csrf={csrf}&upto={upto}"))
            .status,
        409
    );
    // The session's folder is as it found it.
    assert_eq!(server.files("joe", ".Spam").len(), 2);
    assert!(server.files("joe", "").is_empty());
    assert!(cmd("STAT").starts_with("+OK 2 "));
    assert!(cmd("QUIT").starts_with("+OK"));

    let r = c.post("/spam/release", &format!("csrf={csrf}&uid={uid}&page=1"));
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(server.files("joe", ".Spam").len(), 1);
}

#[test]
fn self_made_login_tokens_are_refused_with_403() {
    let server = WebServer::start(FAST);
    // A client plants a well-formed token of its own in the login cookie and
    // the form (the double submit matches): refused, it is not the server's.
    for token in [
        "0".repeat(48),
        format!("{:016x}{}", 1_800_000_000u64, "ab".repeat(16)),
        "a".repeat(32),
    ] {
        let form = format!("csrf={token}&user=joe&password=secret");
        let r = http(
            server.web(),
            "POST",
            "/login",
            &format!("mailbag_login={token}"),
            Some(&form),
        );
        assert_eq!(r.status, 403, "{token}: {r:?}");
        assert!(r.set_cookie("mailbag_session").is_none());
    }
    // A planted cookie is not echoed into the login form either: the page
    // issues a token of its own.
    let r = http(
        server.web(),
        "GET",
        "/login",
        &format!("mailbag_login={}", "0".repeat(48)),
        None,
    );
    let token = r.csrf().unwrap();
    assert_ne!(token, "0".repeat(48));
    assert!(r.set_cookie("mailbag_login").unwrap().contains(&token));
    // The server's own token works.
    let form = format!("csrf={token}&user=joe&password=secret");
    let r = http(
        server.web(),
        "POST",
        "/login",
        &format!("mailbag_login={token}"),
        Some(&form),
    );
    assert_eq!(r.status, 303, "{r:?}");
}

#[test]
fn https_cookies_are_host_prefixed_and_secure() {
    use std::io::{Read, Write};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let tls = format!("[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n");
    let data = dir.path().join("data");
    let server = WebServer::start_in(dir, data, &format!("{FAST}\ntls = true"), &tls);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let request = |req: String| -> webutil::HttpResponse {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
        let tcp = std::net::TcpStream::connect(server.web()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        webutil::parse_response(&raw)
    };
    let page =
        request("GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into());
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    // `__Host-` names (a sibling subdomain cannot plant them): Secure,
    // Path=/, no Domain.
    let host_prefixed = |r: &webutil::HttpResponse| {
        let all = r.all("set-cookie");
        assert!(!all.is_empty(), "{r:?}");
        for c in all {
            assert!(c.starts_with("__Host-mailbag_"), "{c}");
            assert!(c.ends_with("; Secure"), "{c}");
            assert!(c.split("; ").any(|a| a == "Path=/"), "{c}");
            assert!(!c.to_ascii_lowercase().contains("domain="), "{c}");
        }
    };
    host_prefixed(&page);
    let login_cookie = page.set_cookie("__Host-mailbag_login").unwrap();
    assert!(login_cookie.contains("HttpOnly"), "{login_cookie}");
    let token = page.csrf().unwrap();
    let form = format!("csrf={token}&user=joe&password=secret");
    let post = |cookie: &str| {
        request(format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ))
    };
    // The unprefixed name (which a sibling subdomain could set) is not read.
    assert_eq!(post(&format!("mailbag_login={token}")).status, 403);
    let r = post(&format!("__Host-mailbag_login={token}"));
    assert_eq!(r.status, 303, "{r:?}");
    host_prefixed(&r);
    let sc = r.set_cookie("__Host-mailbag_session").unwrap();
    assert!(sc.contains("HttpOnly") && sc.ends_with("; Secure"), "{sc}");
    // The session works under its prefixed name only.
    let session = sc.split(';').next().unwrap().to_owned();
    let get = |cookie: &str| {
        request(format!(
            "GET /settings HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
        ))
    };
    assert_eq!(get(&session).status, 200);
    let unprefixed = session.strip_prefix("__Host-").unwrap();
    assert_eq!(get(unprefixed).status, 303);
}

#[test]
fn slow_or_idle_clients_are_cut_off_and_big_forms_refused() {
    use std::io::{Read, Write};
    let server = WebServer::start(&format!(
        "{FAST}\nrequest_timeout = \"1s\"\nmax_request_body = 2048"
    ));
    // Connected, nothing sent: closed after the request timeout.
    for partial in [&b""[..], b"GET /login HTTP/1.1\r\nHost: x\r\n"] {
        let mut s = std::net::TcpStream::connect(server.web()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(partial).unwrap();
        let t0 = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "{partial:?}: open for {took:?}"
        );
    }
    // A form over the body limit: 413, nothing read into memory past it.
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    let csrf = c.csrf();
    let big = format!("csrf={csrf}&spam_folder={}", "x".repeat(4096));
    assert_eq!(c.post("/settings", &big).status, 413);
    // A body declared over the limit is refused at once, without waiting for it (the
    // web probe's held the connection until the request timeout), and no `100 Continue`.
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut s = std::net::TcpStream::connect(server.web()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             {expect}Content-Length: 10000000000\r\n\r\ncsrf=x"
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 413", "{expect:?}");
    }
    // Two login tabs: both forms carry the same (cookie's) token.
    let mut tabs = Client::new(server.web());
    let first = tabs.get("/login").csrf().unwrap();
    let second = tabs.get("/login").csrf().unwrap();
    assert_eq!(first, second);
}

// ---------------------------------------------------------------------------
// Hostile input: every bad request gets a clear 4xx, never a 500, a panic or a
// hang, and the server stays usable.

/// Sends raw bytes on a fresh connection; returns all the server sent until it
/// closed the connection, and how long that took.
fn raw(addr: std::net::SocketAddr, req: &[u8]) -> (Vec<u8>, Duration) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let t0 = Instant::now();
    // The server may answer and close before it has read it all (431).
    let _ = s.write_all(req);
    let mut out = Vec::new();
    // A reset after the answer is fine: what was read so far is kept.
    let _ = s.read_to_end(&mut out);
    (out, t0.elapsed())
}

/// The status of the first response in `raw`.
fn status(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"))
}

fn get_raw(addr: std::net::SocketAddr, target: &[u8], extra: &[u8]) -> u16 {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    req.extend_from_slice(extra);
    req.extend_from_slice(b"\r\n");
    status(&raw(addr, &req).0)
}

fn still_usable(server: &WebServer) {
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    assert_eq!(c.get("/spam").status, 200);
}

#[test]
fn hostile_request_heads_get_4xx() {
    let server = WebServer::start(FAST);
    let web = server.web();
    // Huge header field, many header fields: 431. The limit
    // (max_request_head, 65536 by default) holds to the octet, counted as
    // sent: "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" is 49
    // octets, the field's name, colon, space and CRLF 9 more, the empty
    // line 2.
    let big = format!("X-Big: {}\r\n", "a".repeat(300 * 1024));
    assert_eq!(get_raw(web, b"/login", big.as_bytes()), 431);
    let at = |n: usize| format!("X-Big: {}\r\n", "a".repeat(n - 60));
    assert_eq!(get_raw(web, b"/login", at(65_536).as_bytes()), 200);
    assert_eq!(get_raw(web, b"/login", at(65_537).as_bytes()), 431);
    assert_eq!(get_raw(web, b"/login", at(90_000).as_bytes()), 431);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(get_raw(web, b"/login", many.as_bytes()), 431);
    // The connection layer's own refusals (head size, Host) carry the same
    // security headers as the pages.
    for req in [
        format!(
            "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
            at(65_537)
        ),
        "GET /login HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let answer = String::from_utf8_lossy(&raw(web, req.as_bytes()).0).to_ascii_lowercase();
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            head.starts_with("http/1.1 431") || head.starts_with("http/1.1 400"),
            "{head}"
        );
        for h in [
            "content-security-policy: default-src 'self'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "cache-control: no-store",
            "connection: close",
        ] {
            assert!(head.contains(h), "{h} missing: {head}");
        }
    }
    // A header line without a colon.
    assert_eq!(get_raw(web, b"/login", b"no colon here\r\n"), 400);
    // An over-long URL (past max_request_head), and a long one within it.
    let long = format!("/login?x={}", "a".repeat(300 * 1024));
    assert!(
        matches!(get_raw(web, long.as_bytes(), b""), 414 | 431),
        "over-long URL"
    );
    let long = format!("/{}", "a".repeat(20 * 1024));
    assert_eq!(get_raw(web, long.as_bytes(), b""), 404);
    // Non-UTF-8 bytes in the path and the query: raw ones are a bad request
    // line, percent-encoded ones are just an unknown page.
    assert_eq!(get_raw(web, b"/\xff\xfe", b""), 400);
    assert_eq!(get_raw(web, b"/login?x=\xff", b""), 400);
    assert_eq!(get_raw(web, b"/%FF%00%2e%2e/", b""), 404);
    assert_eq!(get_raw(web, b"/login?user=%FF%00", b""), 200);
    // Non-UTF-8 and oversized cookies are ignored: the login page.
    assert_eq!(
        get_raw(
            web,
            b"/login",
            b"Cookie: mailbag_login=\xff\xfe; a=\x80\r\n"
        ),
        200
    );
    let cookie = format!("Cookie: mailbag_session={}\r\n", "f".repeat(10 * 1024));
    assert_eq!(get_raw(web, b"/settings", cookie.as_bytes()), 303);
    // Methods a route does not have: 405 with Allow; unknown path: 404.
    for (method, path) in [
        ("DELETE", "/login"),
        ("TRACE", "/settings"),
        ("PUT", "/spam/release"),
        ("PATCH", "/style.css"),
    ] {
        let (out, _) = raw(
            web,
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&out), 405, "{method} {path}");
        let r = webutil::parse_response(&out);
        assert!(r.header("allow").is_some(), "{method} {path}: {r:?}");
    }
    assert_eq!(
        status(
            &raw(
                web,
                b"TRACE /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .0
        ),
        404
    );
    // HEAD: the GET's status and headers, no body.
    let (out, _) = raw(
        web,
        b"HEAD /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let r = webutil::parse_response(&out);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "{:?}", r.body);
    assert!(r.header("content-security-policy").is_some());
    // Host: missing in HTTP/1.1 or given twice is 400; HTTP/1.0 may omit it.
    assert_eq!(
        status(&raw(web, b"GET /login HTTP/1.1\r\nConnection: close\r\n\r\n").0),
        400
    );
    assert_eq!(get_raw(web, b"/login", b"Host: y\r\n"), 400);
    let (out, took) = raw(web, b"GET /login HTTP/1.0\r\n\r\n");
    assert_eq!(status(&out), 200);
    assert!(
        took < Duration::from_secs(10),
        "HTTP/1.0 not closed: {took:?}"
    );
    // Keep-alive pipelining: two requests in one write, two answers in order.
    let (out, _) = raw(
        web,
        b"GET /login HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    let css = text.rfind("HTTP/1.1 200 OK").unwrap();
    assert!(text[css..].contains("text/css"), "{text}");
    assert!(text[..css].contains("text/html"), "{text}");
    still_usable(&server);
}

#[test]
fn hostile_cookies_queries_forms_and_ids_get_4xx() {
    let server = WebServer::start(FAST);
    assert!(smtp_send(server.smtp(), "joe@example.test", "junk", GTUBE).starts_with("250"));
    let web = server.web();
    let mut c = Client::new(web);
    login_ok(&mut c, "joe");
    let csrf = c.csrf();
    let session = c.cookies["mailbag_session"].clone();
    let ok_cookie = format!("mailbag_session={session}");
    // Paging values that are not a page number: the first page.
    for page in ["-1", "99999999999999999999", "abc", "%00", "1e3", ""] {
        let r = c.get(&format!("/spam?page={page}"));
        assert_eq!(r.status, 200, "page={page}");
        assert!(r.body.contains(">junk<"), "page={page}: {}", r.body);
    }
    // A repeated query field is a bad request, not a server error.
    let r = c.get("/spam?page=1&page=2");
    assert!((400..500).contains(&r.status), "{r:?}");
    // Duplicate cookies: a valid session is not confused by a stale one
    // after it, a stale one first gets the login page; a 10 KB extra cookie
    // and non-UTF-8 bytes in another Cookie field do not matter.
    let dup = format!("Cookie: {ok_cookie}; mailbag_session=0000\r\n");
    assert_eq!(get_raw(web, b"/settings", dup.as_bytes()), 200);
    let dup = format!("Cookie: mailbag_session=0000; {ok_cookie}\r\n");
    assert!(matches!(
        get_raw(web, b"/settings", dup.as_bytes()),
        200 | 303
    ));
    let big = format!("Cookie: junk={}; {ok_cookie}\r\n", "j".repeat(10 * 1024));
    assert_eq!(get_raw(web, b"/settings", big.as_bytes()), 200);
    let mut bad = format!("Cookie: {ok_cookie}\r\nCookie: x=").into_bytes();
    bad.extend_from_slice(b"\xff\xfe\r\n");
    assert_eq!(get_raw(web, b"/settings", &bad), 200);
    // Hostile message ids: 404, the message stays in Spam.
    let long = "a".repeat(8 * 1024);
    for uid in [
        "../../../etc/passwd",
        "..%2F..%2Fx",
        "%00",
        "0000000000000000%00",
        &long,
        "",
    ] {
        for action in ["release", "delete"] {
            let r = c.post(
                &format!("/spam/{action}"),
                &format!("csrf={csrf}&uid={uid}&page=1"),
            );
            assert_eq!(r.status, 404, "{action} {uid:.40}");
        }
    }
    assert_eq!(server.files("joe", ".Spam").len(), 1);
    // Repeated form fields, a wrong Content-Type, non-UTF-8 form bytes: 4xx.
    let marker = "name=\"uid\" value=\"";
    let page = c.get("/spam").body;
    let i = page.find(marker).unwrap() + marker.len();
    let uid = page[i..i + 16].to_owned();
    let r = c.post("/spam/release", &format!("csrf={csrf}&uid={uid}&uid={uid}"));
    assert!((400..500).contains(&r.status), "{r:?}");
    for ctype in [
        "text/plain",
        "application/json",
        "multipart/form-data; boundary=x",
    ] {
        let form = format!("csrf={csrf}&uid={uid}");
        let req = format!(
            "POST /spam/release HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {ok_cookie}\r\n\
             Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        let s = status(&raw(web, req.as_bytes()).0);
        assert!((400..500).contains(&s), "{ctype}: {s}");
    }
    let mut form = format!("csrf={csrf}&uid=").into_bytes();
    form.extend_from_slice(b"\xff\xfe\x00abc&page=\xff");
    let mut req = format!(
        "POST /spam/release HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {ok_cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        form.len()
    )
    .into_bytes();
    req.extend_from_slice(&form);
    assert_eq!(status(&raw(web, &req).0), 404);
    // The message survived all of that and can still be released.
    assert_eq!(server.files("joe", ".Spam").len(), 1);
    let r = c.post("/spam/release", &format!("csrf={csrf}&uid={uid}&page=1"));
    assert_eq!(r.status, 303, "{r:?}");
    still_usable(&server);
}

#[test]
fn stalled_requests_time_out_and_free_the_connection() {
    let server = WebServer::start(&format!("{FAST}\nrequest_timeout = \"2s\""));
    let web = server.web();
    // A body shorter than its Content-Length, then silence: 408 and closed.
    let (out, took) = raw(
        web,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 1000\r\n\r\ncsrf=abc&user=joe",
    );
    assert_eq!(status(&out), 408, "{}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.contains("content-security-policy:"), "{text}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // A header that never ends, and a connection that sends nothing: closed.
    for req in [&b"GET /login HTTP/1.1\r\nHost: x\r\n"[..], b""] {
        let (out, took) = raw(web, req);
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(out.is_empty() || status(&out) == 408, "{out:?}");
    }
    // Idle after a keep-alive answer: closed too.
    let (out, took) = raw(web, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&out), 200);
    assert!(took < Duration::from_secs(10), "{took:?}");
    still_usable(&server);
}

/// Askama's numeric entities as named ones, to compare.
fn unescape(body: &str) -> String {
    body.replace("&#60;", "&lt;")
        .replace("&#62;", "&gt;")
        .replace("&#34;", "&quot;")
}

#[test]
fn hostile_names_and_subjects_are_escaped_and_csp_forbids_inline_script() {
    let server = WebServer::start(FAST);
    let evil = "<script>alert(\"x\")</script> 'q' & \"dq\"";
    // RFC 2047: "<img src=x onerror=alert(1)>" base64-encoded.
    let encoded = "=?UTF-8?B?PGltZyBzcmM9eCBvbmVycm9yPWFsZXJ0KDEpPg==?=";
    for s in [evil, encoded] {
        assert!(smtp_send(server.smtp(), "joe@example.test", s, GTUBE).starts_with("250"));
    }
    let check = |what: &str, r: &webutil::HttpResponse| {
        assert!(!r.body.contains("<script"), "{what}: {}", r.body);
        assert!(!r.body.contains("<img"), "{what}: {}", r.body);
        assert!(!r.body.contains("\"><"), "{what}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{what}: {csp}"
        );
        assert!(
            !csp.contains("script-src"),
            "{what}: no looser script-src: {csp}"
        );
    };
    // The login page echoes a failed user name, escaped.
    let mut c = Client::new(server.web());
    let r = c.login(&format!("\"><{evil}"), "wrong");
    assert_eq!(r.status, 401);
    check("login", &r);
    assert!(unescape(&r.body).contains("&lt;script&gt;"), "{}", r.body);
    check("login page", &c.get("/login"));
    login_ok(&mut c, "joe");
    let spam = c.get("/spam");
    assert_eq!(spam.status, 200);
    check("spam", &spam);
    let body = unescape(&spam.body);
    assert!(
        body.contains("&lt;script&gt;alert(&quot;x&quot;)"),
        "{}",
        spam.body
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        spam.body
    );
    for path in [
        "/settings",
        "/spam/delete-all",
        "/nowhere",
        "/spam?page=2&done=%3Cscript%3E",
    ] {
        check(path, &c.get(path));
    }
    let csrf = c.csrf();
    check(
        "bad uid",
        &c.post("/spam/release", &format!("csrf={csrf}&uid=%3Cscript%3E")),
    );
}

/// Issue 14 item 17: 19 Spam messages whose `From:` is `=?a` × 21,000 (a header that
/// made a quadratic decoder take seconds per page). The page still lists them, with the
/// shown sender cut to its bound (spam-tag's linear RFC 2047 decoder).
#[test]
fn pathological_encoded_words_are_shown_cut_to_their_bound() {
    let server = WebServer::start(FAST);
    let spam_new = server.data.join("joe").join(".Spam").join("new");
    std::fs::create_dir_all(&spam_new).unwrap();
    let from = "=?a".repeat(21_000);
    for i in 0..19 {
        let msg = format!(
            "From: {from}\r\nSubject: heavy {i}\r\nX-Spam-Status: Yes, score=9.0 required=5.0\r\n\r\nbody\r\n"
        );
        std::fs::write(spam_new.join(format!("17000000{i:02}.M1P1.test")), msg).unwrap();
    }
    let mut c = Client::new(server.web());
    login_ok(&mut c, "joe");
    let spam = c.get("/spam");
    assert_eq!(spam.status, 200);
    let body = unescape(&spam.body);
    assert!(body.contains("heavy 0"), "{}", spam.body);
    // No row shows more than the bounded sender (200 characters and an ellipsis).
    assert!(!body.contains(&"=?a".repeat(100)), "sender not cut");
    assert!(body.len() < 200_000, "page of {} octets", body.len());
}

/// RFC 9112 section 9.6: a client that shuts down its sending side right
/// after its request (`nc -N`, socat, scripts) still gets the answer, here a
/// failed login's, which comes only after the failure delay, long after the
/// server read the end of the input.
#[test]
fn a_half_closed_request_is_still_answered() {
    use std::io::{Read, Write};
    let server = WebServer::start("login_failure_delay = \"1s\"");
    let mut c = Client::new(server.web());
    let csrf = c.get("/login").csrf().expect("login token");
    let cookie: Vec<String> = c.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let form = format!("csrf={csrf}&user=joe&password=wrong");
    let mut s = std::net::TcpStream::connect(server.web()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        cookie.join("; "),
        form.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 401 "), "{text:?}");
}

/// A login ends the session the browser already had (another user's on a
/// shared computer, whose login form was still open): its cookie no longer
/// opens any page.
#[test]
fn a_login_ends_the_session_the_browser_had() {
    let server = WebServer::start(FAST);
    let mut ann = Client::new(server.web());
    login_ok(&mut ann, "ann");
    let old = ann.cookies.get("mailbag_session").unwrap().clone();
    // The login form, fetched before ann logged in, posted with her cookie.
    let mut c = Client::new(server.web());
    let csrf = c.get("/login").csrf().expect("login token");
    c.cookies.insert("mailbag_session".into(), old.clone());
    let r = c.post("/login", &format!("csrf={csrf}&user=joe&password=secret"));
    assert_eq!(r.status, 303, "{r:?}");
    assert_ne!(c.cookies.get("mailbag_session"), Some(&old));
    assert_eq!(ann.get("/settings").status, 303);
    assert_eq!(c.get("/settings").status, 200);
}
