//! The Spam digest through real clients: spam arrives over SMTP (smtplib),
//! the digest is sent (by `mailbagd digest --now`, and by the server on its
//! own with a short `digest_interval`), fetched over POP3 with poplib, its
//! release link opened with urllib (a confirmation page: GET releases
//! nothing), confirmed with a POST, and the message is back in the INBOX
//! untagged and retrievable over POP3. Under `CI=true` a missing python3
//! fails the test.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{GTUBE, Options, Server, deliver_local, python, require, run, wait_until};

/// Every INBOX message of `user` over POP3 (poplib), as text, in order. A
/// multipart message (a digest) is its header section and then each part as a
/// mail client shows it, decoded by Python's `email` package (the parts are
/// quoted-printable).
fn pop3_messages(server: &Server, user: &str) -> Vec<String> {
    let port = server.port("pop3").to_string();
    let script = r#"
import poplib, sys, json, email, email.policy
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.user(sys.argv[2]); p.pass_('secret')
out = []
for i in range(1, p.stat()[0] + 1):
    raw = b'\r\n'.join(p.retr(i)[1])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if msg.is_multipart():
        head = raw.split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace')
        parts = [part.get_content() for part in msg.walk() if not part.is_multipart()]
        out.append(head + '\r\n\r\n' + '\r\n'.join(parts))
    else:
        out.append(raw.decode('utf-8', 'replace'))
p.quit()
print(json.dumps(out))
"#;
    let out = python(script, &[&port, user]);
    assert!(out.ok(), "{out:?}\n{}", server.log());
    serde_json::from_str(&out.stdout).unwrap()
}

fn send_spam(server: &Server, subject: &str) {
    deliver_local(server, "joe@example.test", subject, GTUBE);
}

fn digest_now(server: &Server, user: &str) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_mailbagd"))
        .arg("--config")
        .arg(server.config_path())
        .args(["digest", "--now", user]));
    assert!(out.ok(), "{out:?}");
    out.stdout.trim().to_owned()
}

/// GET (or POST with the form fields of the page) a web URL with urllib;
/// returns `status` and the body.
fn http(url: &str, post_form_of: Option<&str>) -> (u16, String) {
    let script = r#"
import sys, urllib.request, urllib.error, urllib.parse, re
url = sys.argv[1]
data = None
if len(sys.argv) > 2:
    page = sys.argv[2]
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
    data = urllib.parse.urlencode(fields).encode()
    url = url.split('?')[0]
try:
    r = urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=20)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
    let mut args = vec![url];
    if let Some(p) = post_form_of {
        args.push(p);
    }
    let out = python(script, &args);
    assert!(out.ok(), "{out:?}");
    let (status, body) = out.stdout.split_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

/// The release links of a digest's text part.
fn release_links(digest: &str) -> Vec<String> {
    digest
        .lines()
        .filter_map(|l| l.split_once("Release it to your INBOX: "))
        .map(|(_, link)| link.trim().to_owned())
        .collect()
}

#[test]
fn digest_lists_spam_and_its_link_releases_after_confirmation() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    send_spam(&server, "cheap =?UTF-8?Q?p=C3=AFlls?= <now>");
    send_spam(&server, "second offer");
    assert_eq!(server.messages("joe", ".Spam").len(), 2, "{}", server.log());

    assert_eq!(
        digest_now(&server, "joe"),
        "joe: digest of 2 message(s) sent"
    );
    assert_eq!(
        digest_now(&server, "joe"),
        "joe: no new spam since the last digest"
    );
    assert_eq!(
        digest_now(&server, "ann"),
        "ann: spam goes to the INBOX, no digest"
    );

    let inbox = pop3_messages(&server, "joe");
    assert_eq!(inbox.len(), 1, "only the digest is in the INBOX");
    let digest = &inbox[0];
    assert!(digest.contains("Subject: Spam digest: 2 messages in your Spam folder"));
    assert!(digest.contains("From: Mailbag <postmaster@mail.example.test>"));
    assert!(digest.contains("multipart/alternative"));
    assert!(!digest.contains("**SPAM"), "the digest is never tagged");
    // Decoded subject in the text part, HTML-escaped in the HTML part.
    assert!(digest.contains("* cheap pïlls <now>"), "{digest}");
    assert!(digest.contains("cheap pïlls &#60;now&#62;"), "{digest}");
    assert!(digest.contains("joe/Spam"), "mentions the Spam login");
    let links = release_links(digest);
    assert_eq!(links.len(), 2, "{links:?}");
    // Both parts link each message.
    assert_eq!(digest.matches("/release?u=joe").count(), 4, "{digest}");
    // `[web] public_url` is unset: the links name the hostname and the web
    // port of the configuration (0 here, as the CLI reads it); open them on
    // the port the server bound.
    assert!(
        links
            .iter()
            .all(|l| l.starts_with("http://mail.example.test:")),
        "{links:?}"
    );
    let path = &links[0][links[0].find("/release?").unwrap()..];
    let link = format!("http://127.0.0.1:{}{path}", server.port("http"));

    // Opening the link releases nothing: a confirmation page.
    let (status, page) = http(&link, None);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("cheap pïlls &#60;now&#62;"), "{page}");
    assert!(page.contains("confirm-release"));
    assert_eq!(server.messages("joe", ".Spam").len(), 2);

    // A link altered in any field is refused.
    for (from, to) in [("u=joe", "u=ann"), ("&e=", "&e=9"), ("&t=", "&t=0")] {
        let (status, _) = http(&link.replacen(from, to, 1), None);
        assert_eq!(status, 404, "{from} -> {to}");
    }

    // The POST releases: back in the INBOX, untagged, retrievable.
    let (status, done) = http(&link, Some(&page));
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Released"));
    assert_eq!(server.messages("joe", ".Spam").len(), 1);
    let inbox = pop3_messages(&server, "joe");
    assert_eq!(inbox.len(), 2);
    let released = &inbox[1];
    assert!(released.contains("GTUBE"), "{released}");
    assert!(
        released.contains("Subject: cheap =?UTF-8?Q?p=C3=AFlls?= <now>"),
        "{released}"
    );
    assert!(!released.contains("X-Spam-Flag"), "{released}");
    // Used once: the message has left Spam, so the link is dead.
    let (status, _) = http(&link, Some(&page));
    assert_eq!(status, 404);
    let (status, _) = http(&link, None);
    assert_eq!(status, 404);
}

#[test]
fn the_server_sends_digests_on_its_own_and_only_for_new_spam() {
    if !require("python3") {
        return;
    }
    let opts = Options {
        sweep_interval: "1s".into(),
        spam: "digest_interval = \"2s\"".into(),
        ..Options::default()
    };
    let server = Server::start_with(opts, |_| {});
    // The first pass only starts the count; spam then arrives.
    assert!(wait_until(Duration::from_secs(10), || server
        .data
        .join("joe/mailbag-digest")
        .is_file()));
    send_spam(&server, "periodic offer");
    assert!(
        wait_until(Duration::from_secs(20), || server.messages("joe", "").len()
            == 1),
        "{}",
        server.log()
    );
    let digest = &server.message_texts("joe", "")[0];
    assert!(
        digest.contains("Spam digest: 1 message in your Spam folder"),
        "{digest}"
    );
    assert!(digest.contains("periodic offer"));
    // The server names the web port it bound in its links.
    let base = format!("http://mail.example.test:{}/release?", server.port("http"));
    assert!(digest.contains(&base), "{digest}");
    // Nothing new: no second digest, also not after a restart.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.messages("joe", "").len(), 1, "{}", server.log());
    let server = server.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.messages("joe", "").len(), 1, "{}", server.log());
    assert!(
        server.messages("ann", "").is_empty(),
        "ann's spam goes to the INBOX"
    );
    // Nor do the passes write anything for her (most users are like ann).
    assert!(!server.data.join("ann/mailbag-digest").exists());
}

/// A probe: digests soon after one another listed the first one's messages
/// again (and alternated between the same messages for ever with a short
/// interval); and a user whose spam goes to the INBOX now got no digest for
/// what had been filed before (which the sweeper deletes).
#[test]
fn each_message_is_listed_once_and_spam_filed_before_a_switch_to_the_inbox_too() {
    if !require("python3") {
        return;
    }
    let server = Server::start();
    send_spam(&server, "first");
    assert_eq!(
        digest_now(&server, "joe"),
        "joe: digest of 1 message(s) sent"
    );
    send_spam(&server, "second");
    assert_eq!(
        digest_now(&server, "joe"),
        "joe: digest of 1 message(s) sent"
    );
    for _ in 0..2 {
        assert_eq!(
            digest_now(&server, "joe"),
            "joe: no new spam since the last digest"
        );
    }
    let digests = pop3_messages(&server, "joe");
    assert_eq!(digests.len(), 2);
    assert!(digests[0].contains("* first") && !digests[0].contains("* second"));
    assert!(digests[1].contains("* second") && !digests[1].contains("* first"));

    // ann's spam goes to the INBOX; her Spam folder holds a message filed
    // before (written by hand, as another tool would).
    assert_eq!(
        digest_now(&server, "ann"),
        "ann: spam goes to the INBOX, no digest"
    );
    let new = server.data.join("ann/.Spam/new");
    std::fs::create_dir_all(&new).unwrap();
    for d in ["cur", "tmp"] {
        std::fs::create_dir_all(server.data.join("ann/.Spam").join(d)).unwrap();
    }
    std::fs::write(
        new.join("1764900000.M1P1.elsewhere"),
        "From: x@elsewhere.example\r\nSubject: **SPAM( 9.0)** filed before\r\n\r\nbody\r\n",
    )
    .unwrap();
    assert_eq!(
        digest_now(&server, "ann"),
        "ann: digest of 1 message(s) sent"
    );
    let digest = &pop3_messages(&server, "ann")[0];
    assert!(digest.contains("* filed before"), "{digest}");
}

/// A removed user's release links end with the user (the web probe released a removed
/// user's message into the orphaned Maildir by a digest link).
#[test]
fn a_removed_users_release_links_are_refused() {
    if !require("python3") {
        return;
    }
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("passwd");
    std::fs::write(&file, "pat:{PLAIN}secret\n").unwrap();
    let server = Server::start_with(
        Options {
            userdb: format!("passwd_file = {file:?}\ncheck_interval = \"100ms\""),
            ..Options::default()
        },
        |_| {},
    );
    deliver_local(&server, "pat@example.test", "offer", GTUBE);
    assert_eq!(
        digest_now(&server, "pat"),
        "pat: digest of 1 message(s) sent"
    );
    let inbox = pop3_messages(&server, "pat");
    let links = release_links(&inbox[0]);
    let path = &links[0][links[0].find("/release?").unwrap()..];
    let link = format!("http://127.0.0.1:{}{path}", server.port("http"));
    let (status, page) = http(&link, None);
    assert_eq!(status, 200, "{page}");
    std::fs::write(&file, "# pat left\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || http(&link, None).0 == 404),
        "{}",
        server.log()
    );
    let (status, _) = http(&link, Some(&page));
    assert_eq!(status, 404);
    assert_eq!(server.messages("pat", ".Spam").len(), 1, "nothing released");
}

/// `[spam] digest_max_entries`: the digest lists the oldest messages (deleted soonest)
/// up to the limit and says how many more arrived (a probe's digest of 5,006 messages was 3 MB); the
/// next digest does not list the ones left out.
#[test]
fn a_digest_lists_at_most_digest_max_entries() {
    if !require("python3") {
        return;
    }
    let server = Server::start_with(
        Options {
            spam: "digest_max_entries = 2\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    for s in ["first", "second", "third"] {
        send_spam(&server, s);
    }
    assert_eq!(
        digest_now(&server, "joe"),
        "joe: digest of 3 message(s) sent"
    );
    let inbox = pop3_messages(&server, "joe");
    let digest = &inbox[0];
    assert!(
        digest.contains("Subject: Spam digest: 3 messages"),
        "{digest}"
    );
    assert_eq!(release_links(digest).len(), 2, "{digest}");
    assert!(
        digest.contains("* first") && digest.contains("* second"),
        "{digest}"
    );
    assert!(
        !digest.contains("* third"),
        "the newest is left out: {digest}"
    );
    assert_eq!(
        digest.matches("1 more is not listed here.").count(),
        2,
        "both parts say so: {digest}"
    );
    assert_eq!(
        digest_now(&server, "joe"),
        "joe: no new spam since the last digest"
    );
}
