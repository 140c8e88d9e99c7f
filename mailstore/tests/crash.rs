//! Crash safety: a child process (this test binary, re-executed) is killed
//! with SIGKILL in the middle of deliveries or while holding the maildrop lock.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailbag_mailstore::{Error, Folder, MaildirOptions, MaildirStore, Mailstore, UserName};

const ROLE: &str = "MAILSTORE_CRASH_CHILD";
const ROOT: &str = "MAILSTORE_CRASH_ROOT";
const PAUSE_AT: &str = "MAILSTORE_CRASH_PAUSE_AT";

/// The message with id `id`: large enough (about 100-400 KB) that it is
/// written in many chunks, so the kill usually lands inside a delivery.
fn message(id: u64) -> Vec<u8> {
    let mut m = format!("Message-ID: <{id}@crash.test>\nSubject: crash test {id}\n\n").into_bytes();
    let lines = 1000 + (id * 7919) % 3000;
    for l in 0..lines {
        m.extend_from_slice(format!("{id:06} line {l:05} {}\n", "z".repeat(80)).as_bytes());
    }
    m.extend_from_slice(format!("end of {id}\n").as_bytes());
    m
}

fn joe() -> UserName {
    UserName::new("joe").unwrap()
}

/// Kills (SIGKILL) and reaps the child when dropped, also when a test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(
    role: &str,
    root: &Path,
    pause_at: Option<u64>,
) -> (ChildGuard, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .env(
            PAUSE_AT,
            pause_at.map(|p| p.to_string()).unwrap_or_default(),
        )
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(ROOT, root)
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

/// Waits (bounded) for a line from the child containing `prefix`; returns it from there.
fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("child gave no {prefix:?} line: {e}"));
        // The harness prints "test child_entry ... " before the first line.
        if let Some(i) = line.find(prefix) {
            return line[i..].to_owned();
        }
    }
}

/// Entry point of the child role; a no-op when run as an ordinary test.
#[test]
#[ignore = "child role of the crash tests, started by them with an environment variable"]
fn child_entry() {
    let (Ok(role), Ok(root)) = (std::env::var(ROLE), std::env::var(ROOT)) else {
        eprintln!("child_entry: only meaningful as the child of a crash test");
        return;
    };
    let store = MaildirStore::new(root, MaildirOptions::default()).unwrap();
    match role.as_str() {
        "deliver" => {
            let pause_at: Option<u64> = std::env::var(PAUSE_AT).ok().and_then(|v| v.parse().ok());
            for id in 0.. {
                let msg = message(id);
                let mut d = store.begin_delivery(&joe(), Folder::Inbox).unwrap();
                let chunks: Vec<&[u8]> = msg.chunks(4096).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    d.write_chunk(chunk).unwrap();
                    if pause_at == Some(id) && i == chunks.len() / 2 {
                        println!("writing {id}");
                        std::thread::sleep(Duration::from_secs(30));
                    }
                }
                d.commit().unwrap();
                println!("done {id}");
            }
        }
        "efbig" => {
            // Run under `ulimit -f` with SIGXFSZ ignored: writes past the
            // limit fail with EFBIG, a real I/O error in the middle of a delivery.
            let msg = message(1);
            let mut d = store.begin_delivery(&joe(), Folder::Inbox).unwrap();
            let mut err = None;
            for chunk in msg.chunks(4096) {
                if let Err(e) = d.write_chunk(chunk) {
                    err = Some(e);
                    break;
                }
            }
            let err = match err {
                Some(e) => e,
                None => d.commit().unwrap_err(),
            };
            assert!(matches!(err, Error::Io { .. }), "{err}");
            assert!(err.is_temporary());
            println!("io error: {err}");
        }
        "lock" => {
            // Holds the maildrop and keeps its lock fresh, as a server does.
            let md = store.open_maildrop(&joe()).unwrap();
            let keep = md.lock_keep_alive().unwrap();
            println!("locked");
            for _ in 0..600 {
                std::thread::sleep(Duration::from_millis(100));
                keep.refresh().unwrap();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn sigkill_during_deliveries_loses_nothing_reported_and_shows_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = MaildirStore::new(dir.path(), MaildirOptions::default()).unwrap();
    store.create_user(&joe()).unwrap();

    for round in 0..3u64 {
        // Round 0 kills the child while it is paused in the middle of writing
        // message 4 (surely mid-delivery); later rounds at varying moments.
        let pause_at = (round == 0).then_some(4);
        let (mut child, rx) = spawn_child("deliver", dir.path(), pause_at);
        let mut reported = Vec::new();
        if let Some(p) = pause_at {
            loop {
                let line = expect_line(&rx, "");
                if let Some(i) = line.find("done ") {
                    reported.push(line[i + 5..].parse::<u64>().unwrap());
                } else if line.contains(&format!("writing {p}")) {
                    break;
                }
            }
            assert_eq!(
                std::fs::read_dir(dir.path().join("joe/tmp"))
                    .unwrap()
                    .count(),
                1,
                "the paused delivery is in tmp/"
            );
        } else {
            let target = 5 + round * 3;
            while (reported.len() as u64) < target {
                let line = expect_line(&rx, "done ");
                reported.push(line["done ".len()..].parse::<u64>().unwrap());
            }
            std::thread::sleep(Duration::from_millis(3 + round * 7));
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        // Lines printed before the kill are still in the pipe.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if let Some(i) = line.find("done ") {
                reported.push(line[i + 5..].parse().unwrap());
            }
        }
        drop(child);

        // Only complete messages are visible in new/ and cur/.
        let mut visible = Vec::new();
        for sub in ["new", "cur"] {
            for ent in std::fs::read_dir(dir.path().join("joe").join(sub)).unwrap() {
                let path = ent.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let id: u64 = std::str::from_utf8(&data[13..])
                    .unwrap()
                    .split('@')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(data, message(id), "partial or corrupt file {path:?}");
                visible.push(id);
            }
        }
        for id in &reported {
            assert!(visible.contains(id), "reported delivery {id} missing");
        }
        if let Some(p) = pause_at {
            let mut v = visible.clone();
            v.sort_unstable();
            assert_eq!(v, (0..p).collect::<Vec<_>>(), "exactly the committed ones");
            assert_eq!(reported, (0..p).collect::<Vec<_>>());
        }

        // The store still works: the maildrop lists and reads them all.
        let mut md = store.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries().len(), visible.len());
        for n in 1..=md.entries().len() {
            let mut out = Vec::new();
            md.read_message(n).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out.len() as u64, md.entries()[n - 1].size);
        }
        // Delete everything so the next round's ids are unambiguous.
        for n in 1..=md.entries().len() {
            md.mark_deleted(n).unwrap();
        }
        md.commit().unwrap();
    }
    // Interrupted deliveries leave at most files in tmp/, which the stale-tmp
    // sweep removes.
    let removed = store
        .remove_stale_tmp(
            &joe(),
            Folder::Inbox,
            std::time::SystemTime::now() + Duration::from_secs(1),
        )
        .unwrap();
    assert!(
        (1..=3).contains(&removed),
        "{removed} interrupted deliveries in tmp/"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("joe/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn write_error_mid_delivery_is_temporary_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = MaildirStore::new(dir.path(), MaildirOptions::default()).unwrap();
    store.create_user(&joe()).unwrap();
    let exe = std::env::current_exe().unwrap();
    // 64 blocks of 1 KiB (bash): enough for the test binary's own needs,
    // far less than the 100+ KB message.
    let script = "trap '' XFSZ; ulimit -f 64; exec \"$0\" --exact child_entry --nocapture --include-ignored --test-threads=1";
    let child = Command::new("bash")
        .args(["-c", script])
        .arg(exe)
        .env(ROLE, "efbig")
        .env(ROOT, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let mut out = String::new();
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success() && out.contains("io error:"),
        "{status} {out} {err}"
    );
    assert!(out.contains("File too large"), "{out}");
    for sub in ["tmp", "new", "cur"] {
        assert_eq!(
            std::fs::read_dir(dir.path().join("joe").join(sub))
                .unwrap()
                .count(),
            0,
            "{sub}"
        );
    }
}

#[test]
fn lock_of_a_killed_process_is_taken_over_once_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MaildirOptions::default();
    opts.maildrop_lock_stale = Duration::from_secs(1);
    let store = MaildirStore::new(dir.path(), opts).unwrap();
    store.create_user(&joe()).unwrap();
    let (mut child, rx) = spawn_child("lock", dir.path(), None);
    expect_line(&rx, "locked");
    let lock_file = dir.path().join("joe/mailbag-pop3.lock");
    let token = std::fs::read_to_string(&lock_file).unwrap();
    assert!(token.starts_with(&format!("{} ", child.0.id())), "{token}");
    // Held, and kept fresh past the stale timeout: refused all along.
    for _ in 0..15 {
        assert!(matches!(store.open_maildrop(&joe()), Err(Error::InUse)));
        std::thread::sleep(Duration::from_millis(100));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    // The lock file is left behind; once stale it is taken over.
    assert!(lock_file.exists());
    let killed = Instant::now();
    let md = loop {
        match store.open_maildrop(&joe()) {
            Ok(md) => break md,
            Err(Error::InUse) if killed.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("not taken over: {e}"),
        }
    };
    assert!(killed.elapsed() <= Duration::from_millis(1500));
    let token = std::fs::read_to_string(&lock_file).unwrap();
    assert!(
        token.starts_with(&format!("{} ", std::process::id())),
        "{token}"
    );
    drop(md);
    assert!(!lock_file.exists());
}
