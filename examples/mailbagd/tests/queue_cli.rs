//! `mailbagd queue list`: what an administrator sees of the relay queue.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use mailbag_mailstore::queue::{
    NewEnvelope, Notify, Outcome, Queue, QueueOptions, Recipient, RecipientState,
};

mod common;
use common::{Out, run};

const USERS: &str = "[[users]]\nname = \"joe\"\npassword = \"secret\"\n";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        format!(
            "data_dir = \"{}\"\n[relay]\nqueue_dir = \"{}\"\n{USERS}",
            dir.join("data").display(),
            dir.join("q").display()
        ),
    )
    .unwrap();
    p
}

fn list(config: &Path, extra: &[&str]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailbagd"));
    c.args(["queue", "list", "--config", config.to_str().unwrap()])
        .args(extra)
        .current_dir(config.parent().unwrap());
    run(&mut c)
}

fn fill(dir: &Path) -> Queue {
    let q = Queue::open(dir.join("q"), QueueOptions::default()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut env = NewEnvelope::new("ann@example.org", now - 7200);
    env.client_ip = Some("192.0.2.7".parse().unwrap());
    let mut joe = Recipient::new("joe@example.net");
    joe.notify = Some(Notify::NEVER);
    env.recipients = vec![joe, Recipient::new("kim@example.com")];
    let mut w = q.enqueue(&env).unwrap();
    w.write_all(b"Subject: hi\r\n\r\nhello\r\n").unwrap();
    let id = w.commit().unwrap();

    let lock = q.lock_delivery().unwrap();
    let mut e = q.envelope(&id).unwrap();
    e.attempts = 2;
    e.next_attempt = now + 1200;
    e.recipients[0].state = RecipientState::Delivered(Outcome {
        at: now - 3600,
        host: Some("mx.example.net".into()),
        reply: "250 2.0.0 queued as 4711".into(),
    });
    e.recipients[1].state = RecipientState::Pending {
        last: Some(Outcome {
            at: now - 600,
            host: Some("mx.example.com".into()),
            reply: "451 4.7.1 greylisted\nplease retry".into(),
        }),
    };
    lock.update(&e).unwrap();

    let mut bounce = NewEnvelope::new("", now - 60);
    bounce.recipients.push(Recipient::new("ann@example.org"));
    let mut w = q.enqueue(&bounce).unwrap();
    w.write_all(b"x\r\n").unwrap();
    let bad = w.commit().unwrap();
    let path = dir.join("q/msg").join(format!("{bad}.env"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("size 3", "size three")).unwrap();
    q
}

#[test]
fn empty_or_missing_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let out = list(&cfg, &[]);
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("The queue is empty"), "{}", out.stdout);
    assert!(
        !dir.path().join("q").exists(),
        "listing does not create the queue"
    );
    let out = list(&cfg, &["--json"]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout, "{\"messages\":[],\"corrupt\":[]}\n");
}

#[test]
fn lists_messages_recipients_attempts_and_errors_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let q = fill(dir.path());
    // The running server would hold the delivery lock: listing needs none.
    let _lock = q.lock_delivery().unwrap();

    let out = list(&cfg, &[]);
    assert!(out.ok(), "{out:?}");
    let s = &out.stdout;
    for want in [
        "22 octets  from <ann@example.org>",
        "(2h ago) from client 192.0.2.7",
        "attempts 2, next attempt ",
        "<joe@example.net>  delivered  ",
        "mx.example.net: 250 2.0.0 queued as 4711",
        "<kim@example.com>  pending  last error ",
        // The reply's line break is shown escaped: one line per recipient.
        "mx.example.com: 451 4.7.1 greylisted\\nplease retry\n",
        "CORRUPT: line 7: invalid number",
        "-- 1 message(s), 1 recipient(s) pending, 1 unreadable",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }

    assert!(s.contains("(in 20m)") || s.contains("(in 19m"), "{s}");

    let out = list(&cfg, &["--json"]);
    assert!(out.ok(), "{out:?}");
    let j = &out.stdout;
    for want in [
        "\"sender\":\"ann@example.org\"",
        "\"size\":22",
        "\"attempts\":2",
        "{\"address\":\"joe@example.net\",\"state\":\"delivered\"",
        "\"reply\":\"451 4.7.1 greylisted\\u000aplease retry\"",
        "\"error\":\"line 7: invalid number\",\"quarantined\":false",
    ] {
        assert!(j.contains(want), "missing {want:?} in:\n{j}");
    }
    assert_eq!(j.lines().count(), 1);
}

#[test]
fn bad_config_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("[relay]\nqueue_dirr = \"x\"\n{USERS}")).unwrap();
    let out = list(&p, &[]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("queue_dirr"), "{out:?}");
}
