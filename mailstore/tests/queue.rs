//! The durable outbound queue through the file system: round trips, crash
//! leftovers, concurrency, the delivery lock, and SIGKILL of a child process
//! (this test binary, re-executed) in the middle of enqueues and updates.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mailbag_mailstore::queue::{
    BodyType, DeliveryLock, Envelope, NewEnvelope, Notify, Outcome, Queue, QueueError, QueueId,
    QueueOptions, Recipient, RecipientState, ReportState, Ret,
};

const ROLE: &str = "MAILSTORE_QUEUE_CHILD";
const DIR: &str = "MAILSTORE_QUEUE_DIR";

fn open(dir: &Path) -> Queue {
    Queue::open(dir, QueueOptions::default()).unwrap()
}

/// A body of 20-80 KB that names its number, written in many chunks.
fn body(n: u64) -> Vec<u8> {
    let mut m = format!("Message-ID: <{n}@queue.test>\r\nSubject: queue {n}\r\n\r\n").into_bytes();
    for l in 0..(200 + (n * 7919) % 600) {
        m.extend_from_slice(format!("{n:06} line {l:05} {}\r\n", "q".repeat(80)).as_bytes());
    }
    m
}

fn new_envelope(n: u64) -> NewEnvelope {
    let mut env = NewEnvelope::new(format!("sender{n}@example.org"), 1_700_000_000 + n);
    env.recipients
        .push(Recipient::new(format!("r{n}@example.net")));
    env.recipients
        .push(Recipient::new(format!("s{n}@example.com")));
    env
}

fn enqueue(q: &Queue, env: &NewEnvelope, data: &[u8]) -> QueueId {
    let mut w = q.enqueue(env).unwrap();
    for chunk in data.chunks(4096) {
        w.write_all(chunk).unwrap();
    }
    w.commit().unwrap()
}

fn read_body(q: &Queue, id: &QueueId) -> Vec<u8> {
    let (mut f, len) = q.body(id).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    assert_eq!(v.len() as u64, len);
    v
}

#[test]
fn every_field_survives_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let mut env = NewEnvelope::new("", 1_700_000_123);
    env.envid = Some("QQ314159 with space".into());
    env.ret = Some(Ret::Full);
    env.client_ip = Some("2001:db8::7".parse().unwrap());
    env.body = BodyType::EightBitMime;
    env.smtputf8 = true;
    let mut r1 = Recipient::new("jöe@exämple.net");
    r1.orcpt = Some("utf-8;j\\x{F6}e@ex\\x{E4}mple.net".into());
    r1.notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    let mut r2 = Recipient::new("kim@example.net");
    r2.notify = Some(Notify::NEVER);
    env.recipients = vec![r1, r2];
    let data = body(1);
    let id = enqueue(&q, &env, &data);
    assert_eq!(id.arrival(), 1_700_000_123);

    let got = q.envelope(&id).unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.reverse_path, "");
    assert_eq!(got.envid.as_deref(), Some("QQ314159 with space"));
    assert_eq!(got.ret, Some(Ret::Full));
    assert_eq!(got.client_ip, env.client_ip);
    assert_eq!(got.arrival, 1_700_000_123);
    assert_eq!(got.body, BodyType::EightBitMime);
    assert!(got.smtputf8);
    assert_eq!(got.size, data.len() as u64);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.next_attempt, 1_700_000_123);
    assert_eq!(got.recipients, env.recipients);
    assert_eq!(read_body(&q, &id), data);

    // Updates: every state, with hostile text in replies.
    let lock = q.lock_delivery().unwrap();
    let mut e = got.clone();
    e.attempts = 3;
    e.next_attempt = 1_700_009_999;
    e.recipients[0].state = RecipientState::Delivered(Outcome {
        at: 1_700_000_200,
        host: Some("mx.exämple.net".into()),
        reply: "250 2.0.0 ok\r\nend\n%".into(),
    });
    e.recipients[1].state = RecipientState::Failed(Outcome {
        at: 1_700_000_201,
        host: None,
        reply: "null MX".into(),
    });
    e.recipients[1].delay_notified = true;
    e.recipients[1].report = ReportState::Owed;
    lock.update(&e).unwrap();
    assert_eq!(q.envelope(&id).unwrap(), e);
    assert!(e.is_finished() && !e.is_complete());
    // The DSN is durable: recorded as done, and the message may go.
    e.recipients[1].report = ReportState::Done;
    lock.update(&e).unwrap();
    assert!(e.is_complete());
    assert_eq!(q.envelope(&id).unwrap(), e);
    assert!(e.is_finished());
    // The file is readable text with one rcpt line per recipient.
    let text = fs::read_to_string(dir.path().join("msg").join(format!("{id}.env"))).unwrap();
    assert!(text.starts_with("mailbag-queue 2\n"), "{text}");
    assert!(
        text.contains("  reply 250 2.0.0 ok%0D%0Aend%0A%25\n"),
        "{text}"
    );
    assert_eq!(text.matches("\nrcpt <").count(), 2);
    assert!(text.contains("  report done\n"), "{text}");
    // A reopened queue (another process) sees the same.
    drop(lock);
    let q2 = open(dir.path());
    assert_eq!(q2.list().unwrap().messages, vec![e]);
}

#[test]
fn due_remove_and_listing_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let ids: Vec<QueueId> = [30, 10, 20]
        .iter()
        .map(|&t| {
            let mut env = NewEnvelope::new("a@x", t);
            env.recipients.push(Recipient::new("b@y"));
            enqueue(&q, &env, b"x\r\n")
        })
        .collect();
    let lock = q.lock_delivery().unwrap();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(lock.due(100).unwrap(), sorted);
    assert_eq!(lock.due(15).unwrap(), vec![ids[1].clone()]);
    assert!(lock.due(9).unwrap().is_empty());
    let mut e = lock.envelope(&ids[1]).unwrap();
    e.next_attempt = 50;
    lock.update(&e).unwrap();
    assert_eq!(lock.due(40).unwrap(), vec![ids[2].clone(), ids[0].clone()]);
    let listed: Vec<QueueId> = q
        .list()
        .unwrap()
        .messages
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, sorted);
    lock.remove(&ids[1]).unwrap();
    assert!(matches!(lock.remove(&ids[1]), Err(QueueError::NotFound(_))));
    assert!(matches!(lock.update(&e), Err(QueueError::NotFound(_))));
    assert!(matches!(q.envelope(&ids[1]), Err(QueueError::NotFound(_))));
    assert_eq!(q.list().unwrap().messages.len(), 2);
}

#[test]
fn corrupt_envelope_is_due_reported_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let good = enqueue(&q, &new_envelope(1), b"good\r\n");
    let bad = enqueue(&q, &new_envelope(2), b"bad\r\n");
    let path = dir.path().join("msg").join(format!("{bad}.env"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("attempts 0", "attempts zero")).unwrap();

    let listing = q.list().unwrap();
    assert_eq!(listing.messages.len(), 1);
    assert_eq!(listing.corrupt.len(), 1);
    assert_eq!(listing.corrupt[0].id, bad);
    assert!(!listing.corrupt[0].quarantined);
    let msg = listing.corrupt[0].error.to_string();
    assert!(
        msg.contains("line 8") && msg.contains("invalid number"),
        "{msg}"
    );

    let lock = q.lock_delivery().unwrap();
    assert_eq!(lock.due(u64::MAX).unwrap(), vec![good.clone(), bad.clone()]);
    assert!(matches!(
        lock.envelope(&bad),
        Err(QueueError::Corrupt { .. })
    ));
    lock.quarantine(&bad).unwrap();
    assert_eq!(lock.due(u64::MAX).unwrap(), vec![good]);
    let listing = q.list().unwrap();
    assert_eq!(listing.corrupt.len(), 1);
    assert!(listing.corrupt[0].quarantined);
    // Garbage bytes and an oversized file are reported too, never a panic.
    let g = enqueue(&q, &new_envelope(3), b"g\r\n");
    let gp = dir.path().join("msg").join(format!("{g}.env"));
    fs::write(&gp, [0xff, 0xfe, 0, b'\n']).unwrap();
    assert!(matches!(q.envelope(&g), Err(QueueError::Corrupt { .. })));
    fs::write(&gp, vec![b'a'; 2 * 1024 * 1024]).unwrap();
    match q.envelope(&g) {
        Err(QueueError::Corrupt { error, .. }) => {
            assert_eq!(error.reason, "envelope file too large")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn leftovers_of_dead_writers_are_cleaned_but_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let live = open(dir.path());
    let mut w = live.enqueue(&new_envelope(1)).unwrap();
    w.write_all(b"in progress").unwrap();
    // What a killed process leaves: an unlocked lock file, a work directory,
    // a directory whose lock file is gone, a stray envelope.tmp.
    let tmp = dir.path().join("tmp");
    fs::write(tmp.join("9000.lock"), "").unwrap();
    fs::create_dir_all(tmp.join("9000")).unwrap();
    fs::write(tmp.join("9000/000000000001.9000.1.env"), "half").unwrap();
    fs::create_dir_all(tmp.join("9001/x")).unwrap();
    // A body whose writer (instance 9000) died before the envelope was written.
    let msg = dir.path().join("msg");
    fs::write(msg.join("000000000001.9000.1.body"), "orphan").unwrap();
    fs::write(tmp.join("unrelated"), "kept").unwrap();
    let other = open(dir.path());
    assert!(!tmp.join("9000").exists() && !tmp.join("9000.lock").exists());
    assert!(!tmp.join("9001").exists());
    assert!(
        tmp.join("unrelated").exists(),
        "foreign names are not touched"
    );
    assert!(
        !msg.join("000000000001.9000.1.body").exists(),
        "orphan body removed"
    );
    assert!(
        msg.join(format!("{}.body", w.id())).exists(),
        "the live writer's body is kept"
    );
    // The live writer is untouched and commits.
    w.write_all(b"!").unwrap();
    let id = w.commit().unwrap();
    assert_eq!(read_body(&other, &id), b"in progress!");
    assert!(other.list().unwrap().corrupt.is_empty());
}

#[test]
fn concurrent_enqueues_from_threads_and_instances() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = QueueOptions::default();
    opts.fsync = false;
    let queues: Vec<Queue> = (0..2)
        .map(|_| Queue::open(dir.path(), opts.clone()).unwrap())
        .collect();
    let handles: Vec<_> = (0..6u64)
        .map(|t| {
            let q = queues[(t % 2) as usize].clone();
            std::thread::spawn(move || {
                (0..25u64)
                    .map(|i| {
                        let n = t * 1000 + i;
                        let mut env = new_envelope(n);
                        env.arrival = 1_700_000_000; // same second everywhere
                        (enqueue(&q, &env, &body(n % 7)), n)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for h in handles {
        for (id, n) in h.join().unwrap() {
            assert!(all.insert(id, n).is_none(), "duplicate id");
        }
    }
    assert_eq!(all.len(), 150);
    let listing = queues[0].list().unwrap();
    assert_eq!(listing.messages.len(), 150);
    for env in &listing.messages {
        let n = all[&env.id];
        assert_eq!(env.reverse_path, format!("sender{n}@example.org"));
        assert_eq!(read_body(&queues[1], &env.id), body(n % 7));
    }
}

#[test]
fn delivery_lock_is_exclusive_and_listing_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    let id = enqueue(&a, &new_envelope(1), b"x\r\n");
    let lock = a.lock_delivery().unwrap();
    assert!(matches!(b.lock_delivery(), Err(QueueError::Locked)));
    assert!(matches!(a.lock_delivery(), Err(QueueError::Locked)));
    assert_eq!(b.list().unwrap().messages.len(), 1);
    assert_eq!(b.envelope(&id).unwrap().id, id);
    let pid = fs::read_to_string(dir.path().join("lock")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
    drop(lock);
    let _relocked: DeliveryLock = b.lock_delivery().unwrap();
}

/// Kills (SIGKILL) and reaps the child when dropped, also when a test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(role: &str, dir: &Path) -> (ChildGuard, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (guard, rx)
}

/// Waits (bounded) for a line from the child containing `word`; returns it from there.
fn expect_line(rx: &mpsc::Receiver<String>, word: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("child gave no {word:?} line: {e}"));
        if let Some(i) = line.find(word) {
            return line[i..].to_owned();
        }
    }
}

/// Entry point of the child role; a no-op when run as an ordinary test.
#[test]
#[ignore = "child role of the SIGKILL tests, started by them with an environment variable"]
fn child_entry() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        eprintln!("child_entry: only meaningful as the child of a queue crash test");
        return;
    };
    let q = Queue::open(&dir, QueueOptions::default()).unwrap();
    match role.as_str() {
        "enqueue" => {
            for n in 0.. {
                let data = body(n);
                let mut w = q.enqueue(&new_envelope(n)).unwrap();
                for chunk in data.chunks(4096) {
                    w.write_all(chunk).unwrap();
                }
                let id = w.commit().unwrap();
                // The "250": only now is the message acknowledged.
                println!("committed {id} {n}");
            }
        }
        "enqueue-pause" => {
            for n in 0..2 {
                let id = enqueue(&q, &new_envelope(n), &body(n));
                println!("committed {id} {n}");
            }
            let data = body(2);
            let mut w = q.enqueue(&new_envelope(2)).unwrap();
            w.write_all(&data[..data.len() / 2]).unwrap();
            w.flush().unwrap();
            println!("writing {}", w.id());
            std::thread::sleep(Duration::from_secs(30));
        }
        "update" => {
            let lock = q.lock_delivery().unwrap();
            println!("locked");
            for round in 1u32.. {
                for id in lock.due(u64::MAX).unwrap() {
                    let mut e = lock.envelope(&id).unwrap();
                    e.attempts = round;
                    e.recipients[0].state = RecipientState::Pending {
                        last: Some(Outcome {
                            at: u64::from(round),
                            host: Some("mx.example.net".into()),
                            reply: format!("451 round {round} {}", "z".repeat(500)),
                        }),
                    };
                    lock.update(&e).unwrap();
                }
                println!("round {round}");
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn sigkill_in_the_middle_of_a_body_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, rx) = spawn_child("enqueue-pause", dir.path());
    let line = expect_line(&rx, "writing ");
    let id: QueueId = line["writing ".len()..].parse().unwrap();
    let msg = dir.path().join("msg");
    assert!(
        msg.join(format!("{id}.body")).exists(),
        "the body is being written"
    );
    // Not a message yet, not even a corrupt one, for a reader next to it.
    let q = open(dir.path());
    let listing = q.list().unwrap();
    assert_eq!(listing.messages.len(), 2);
    assert!(listing.corrupt.is_empty());
    drop(q);
    // A queue opened while the writer lives keeps its body.
    assert!(msg.join(format!("{id}.body")).exists());
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    let q = open(dir.path());
    assert!(
        !msg.join(format!("{id}.body")).exists(),
        "orphan removed on open"
    );
    let listing = q.list().unwrap();
    assert_eq!(listing.messages.len(), 2);
    for env in &listing.messages {
        let n = if env.reverse_path == "sender0@example.org" {
            0
        } else {
            1
        };
        assert_eq!(read_body(&q, &env.id), body(n));
    }
}

#[test]
fn sigkill_during_enqueues_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<QueueId, u64> = BTreeMap::new();
    for round in 0..3u64 {
        let (mut child, rx) = spawn_child("enqueue", dir.path());
        let target = acked.len() as u64 + 4 + round * 3;
        while (acked.len() as u64) < target {
            let line = expect_line(&rx, "committed ");
            let mut parts = line.split(' ').skip(1);
            let id: QueueId = parts.next().unwrap().parse().unwrap();
            acked.insert(id, parts.next().unwrap().parse().unwrap());
        }
        std::thread::sleep(Duration::from_millis(2 + round * 5));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            if let Some(i) = line.find("committed ") {
                let mut parts = line[i..].split(' ').skip(1);
                let id: QueueId = parts.next().unwrap().parse().unwrap();
                acked.insert(id, parts.next().unwrap().parse().unwrap());
            }
        }
        drop(child);

        // Reopen (as a restarted server would): all acknowledged messages are
        // there, whole; nothing half-written is visible; tmp/ is cleaned.
        let q = open(dir.path());
        let listing = q.list().unwrap();
        assert!(listing.corrupt.is_empty(), "{:?}", listing.corrupt);
        let visible: BTreeMap<QueueId, Envelope> = listing
            .messages
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        for (id, n) in &acked {
            let env = visible
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged {id} lost"));
            assert_eq!(env.reverse_path, format!("sender{n}@example.org"));
            assert_eq!(read_body(&q, id), body(*n));
            assert_eq!(env.size, body(*n).len() as u64);
        }
        // At most one message committed but not yet acknowledged (killed
        // between commit and println); it is complete too.
        assert!(visible.len() <= acked.len() + 1);
        for env in visible.values() {
            let n: u64 = env.reverse_path
                ["sender".len()..env.reverse_path.len() - "@example.org".len()]
                .parse()
                .unwrap();
            assert_eq!(read_body(&q, &env.id), body(n));
            acked.entry(env.id.clone()).or_insert(n);
        }
        let tmp_entries: Vec<_> = fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            tmp_entries.len(),
            2,
            "only our own instance: {tmp_entries:?}"
        );
        // No orphan body of the killed writer is left beside the envelopes.
        let names: Vec<String> = fs::read_dir(dir.path().join("msg"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for n in &names {
            if let Some(id) = n.strip_suffix(".body") {
                assert!(names.contains(&format!("{id}.env")), "orphan {n}");
            } else {
                assert!(n.ends_with(".env"), "unexpected {n}");
            }
        }
    }
}

#[test]
fn sigkill_during_updates_leaves_old_or_new_envelope_and_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    for n in 0..20 {
        enqueue(&q, &new_envelope(n), b"x\r\n");
    }
    let (mut child, rx) = spawn_child("update", dir.path());
    expect_line(&rx, "locked");
    assert!(matches!(q.lock_delivery(), Err(QueueError::Locked)));
    expect_line(&rx, "round 3");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    // The kernel released the lock with the dead process.
    let lock = q.lock_delivery().unwrap();
    let listing = q.list().unwrap();
    assert!(listing.corrupt.is_empty(), "{:?}", listing.corrupt);
    assert_eq!(listing.messages.len(), 20);
    let rounds: Vec<u32> = listing.messages.iter().map(|e| e.attempts).collect();
    let max = *rounds.iter().max().unwrap();
    assert!(
        rounds.iter().all(|r| *r + 1 >= max && *r >= 3),
        "{rounds:?}"
    );
    for env in &listing.messages {
        let last = env.recipients[0].state.outcome().unwrap();
        assert_eq!(last.at, u64::from(env.attempts));
    }
    // Updating again works over any envelope.tmp left behind.
    let mut e = listing.messages[0].clone();
    e.attempts = 99;
    lock.update(&e).unwrap();
    assert_eq!(q.envelope(&e.id).unwrap().attempts, 99);
}
