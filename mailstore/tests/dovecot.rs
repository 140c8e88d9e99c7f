//! Interop with Dovecot, both ways:
//! - messages delivered by mailstore are listed and retrieved by Dovecot's POP3
//!   server with the same sizes and content, and mailstore reads the Maildir
//!   correctly after Dovecot has worked on it (renamed, deleted, added its files);
//! - a Maildir filled by `fill-maildir.py` and served by Dovecot reads the same
//!   through mailstore, UIDLs included (seeded from `dovecot-uidlist`);
//! - `doveadm` sees our Maildir++ Spam folder with the same sizes, and the
//!   time we keep as "saved into the folder" (the file's mtime) is Dovecot's
//!   received date: `doveadm search before 7d` picks the same messages as our
//!   7-day retention. (Dovecot's own `savedbefore` on Maildir uses the file's
//!   ctime, which changes with every rename or chown and cannot be set back.)
//! - Dovecot's Maildir++ quota (`doveadm quota get`/`recalc`) and ours keep
//!   the same `maildirsize` file: each reads the other's totals and adds to
//!   them.
//!
//! Needs `dovecot`, `python3` and the shared peer scripts. Without them the
//! tests skip (print why) unless `CI=true`, where they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailbag_mailstore::{
    Error, Folder, MaildirOptions, MaildirStore, Maildrop, Mailstore, UserName,
};

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
}

/// `Some(reason)` when the environment cannot run these tests.
fn missing_prerequisite() -> Option<String> {
    let peers = peers_dir();
    for f in ["dovecot-start.sh", "dovecot-stop.sh", "fill-maildir.py"] {
        if !peers.join(f).is_file() {
            return Some(format!("{} not found", peers.join(f).display()));
        }
    }
    for tool in ["dovecot", "python3", "bash"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// True if the test should run; panics under CI when it cannot.
fn prerequisites_ok(test: &str) -> bool {
    match missing_prerequisite() {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: CI=true but {why}")
        }
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

/// Runs a command with a deadline; kills it if it overruns.
fn run(cmd: &mut Command, limit: Duration) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    let mut child = cmd.stdin(Stdio::null()).spawn().expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command with a deadline and returns its stdout if it succeeded.
fn output(cmd: &mut Command, limit: Duration) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().ok()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().ok()?;
    status.success().then_some(out)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Dovecot POP3 server, stopped on drop (also when the test fails).
struct Dovecot {
    port: u16,
    state: tempfile::TempDir,
}

impl Dovecot {
    fn start(root: &Path) -> Dovecot {
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let ok = run(
            Command::new("bash")
                .arg(peers_dir().join("dovecot-start.sh"))
                .arg(port.to_string())
                .arg(root)
                .env("PEERS_STATE_DIR", state.path()),
            Duration::from_secs(30),
        );
        let d = Dovecot { port, state };
        assert!(ok, "dovecot-start.sh failed");
        d
    }

    /// Runs `doveadm` with this instance's configuration.
    fn doveadm(&self, args: &[&str]) -> String {
        let record = self.state.path().join(format!("dovecot-{}.dir", self.port));
        let dir = std::fs::read_to_string(record).unwrap();
        let conf = Path::new(dir.trim()).join("dovecot.conf");
        output(
            Command::new("doveadm").arg("-c").arg(conf).args(args),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|| panic!("doveadm {args:?} failed"))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        run(
            Command::new("bash")
                .arg(peers_dir().join("dovecot-stop.sh"))
                .arg(self.port.to_string())
                .env("PEERS_STATE_DIR", self.state.path())
                .stdout(Stdio::null()),
            Duration::from_secs(30),
        );
    }
}

/// A minimal POP3 client (loopback only, with timeouts).
struct Pop3 {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop3 {
    fn login(port: u16, user: &str) -> Pop3 {
        let addr = ([127, 0, 0, 1], port).into();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut p = Pop3 {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = p.line();
        assert!(
            greeting.starts_with(b"+OK"),
            "{}",
            String::from_utf8_lossy(&greeting)
        );
        p.ok(&format!("USER {user}"));
        p.ok("PASS secret");
        p
    }

    fn line(&mut self) -> Vec<u8> {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l).unwrap();
        assert!(
            l.ends_with(b"\r\n"),
            "bad line {:?}",
            String::from_utf8_lossy(&l)
        );
        l
    }

    fn ok(&mut self, cmd: &str) -> String {
        self.w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let l = self.line();
        let s = String::from_utf8_lossy(&l).into_owned();
        assert!(s.starts_with("+OK"), "{cmd}: {s}");
        s
    }

    /// A multi-line reply, dot-unstuffed, lines with their CRLF.
    fn multi(&mut self, cmd: &str) -> Vec<u8> {
        self.ok(cmd);
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == b".\r\n" {
                return out;
            }
            out.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
        }
    }

    /// `(number, value)` pairs of LIST or UIDL.
    fn listing(&mut self, cmd: &str) -> Vec<(usize, String)> {
        let text = String::from_utf8(self.multi(cmd)).unwrap();
        text.lines()
            .map(|l| {
                let (n, v) = l.split_once(' ').unwrap();
                (n.parse().unwrap(), v.to_owned())
            })
            .collect()
    }
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// POP3 ends a message that lacks a final line ending with one.
fn as_sent(mut msg: Vec<u8>) -> Vec<u8> {
    if !msg.is_empty() && !msg.ends_with(b"\r\n") {
        msg.extend_from_slice(b"\r\n");
    }
    msg
}

#[test]
fn mailstore_delivers_dovecot_reads_and_back() {
    if !prerequisites_ok("mailstore_delivers_dovecot_reads_and_back") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::new(root.path(), MaildirOptions::default()).unwrap();
    let joe = UserName::new("joe").unwrap();
    store.create_user(&joe).unwrap();
    let mut big = b"Subject: big\n\n".to_vec();
    for i in 0..3000 {
        big.extend_from_slice(format!("{i:05} {}\n", "b".repeat(60)).as_bytes());
    }
    let messages: Vec<Vec<u8>> = vec![
        b"From: a@example.org\nSubject: LF only\n\nline\n.leading dot\n..two dots\n.\nend\n"
            .to_vec(),
        b"From: b@example.org\r\nSubject: CRLF\r\n\r\nbody\r\n".to_vec(),
        b"Subject: mixed\n\r\nbare lf\nand crlf\r\nand lone \r cr\n".to_vec(),
        big,
        b"Subject: no final newline\n\nlast".to_vec(),
    ];
    for m in &messages {
        store.deliver(&joe, Folder::Inbox, &mut &m[..]).unwrap();
    }
    store
        .deliver(
            &joe,
            Folder::Spam,
            &mut &b"Subject: spam\n\nnot for POP3\n"[..],
        )
        .unwrap();

    let mut md = open_maildrop(&store, &joe);
    let ours: Vec<(u64, String, Vec<u8>)> = (1..=messages.len())
        .map(|n| {
            let e = md.entries()[n - 1].clone();
            (
                e.size,
                e.uid.to_string(),
                read_all(md.read_message(n).unwrap()),
            )
        })
        .collect();
    let our_tops: Vec<Vec<u8>> = (1..=messages.len())
        .map(|n| read_all(md.read_top(n, 1).unwrap()))
        .collect();
    drop(md); // no commit

    let dovecot = Dovecot::start(root.path());
    let mut pop = Pop3::login(dovecot.port, "joe");
    let stat = pop.ok("STAT");
    let total: u64 = ours.iter().map(|o| o.0).sum();
    assert_eq!(stat.trim_end(), format!("+OK {} {}", ours.len(), total));
    let list = pop.listing("LIST");
    assert_eq!(list.len(), ours.len());
    for (n, size) in &list {
        assert_eq!(size.parse::<u64>().unwrap(), ours[n - 1].0, "LIST {n}");
    }
    for n in 1..=ours.len() {
        let got = pop.multi(&format!("RETR {n}"));
        assert_eq!(got, as_sent(ours[n - 1].2.clone()), "RETR {n}");
        let top = pop.multi(&format!("TOP {n} 1"));
        assert_eq!(
            String::from_utf8_lossy(&top),
            String::from_utf8_lossy(&as_sent(our_tops[n - 1].clone())),
            "TOP {n} 1"
        );
    }
    pop.ok("DELE 2");
    pop.ok("QUIT");
    drop(dovecot);

    // Dovecot moved the retrieved messages to cur/ (":2,S"), expunged #2 and
    // wrote its own files; none of that confuses us, and UIDs are unchanged.
    assert!(root.path().join("joe/dovecot-uidlist").exists());
    let mut md = open_maildrop(&store, &joe);
    let expect: Vec<&(u64, String, Vec<u8>)> = ours
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(md.entries().len(), expect.len());
    for (i, o) in expect.iter().enumerate() {
        let e = md.entries()[i].clone();
        assert_eq!((e.size, e.uid.to_string()), (o.0, o.1.clone()));
        assert_eq!(read_all(md.read_message(i + 1).unwrap()), o.2);
    }
    let listed = store.list(&joe, Folder::Inbox).unwrap();
    assert!(listed.iter().all(|m| m.seen), "Dovecot set \\Seen on RETR");
    assert_eq!(store.list(&joe, Folder::Spam).unwrap().len(), 1);
}

#[test]
fn dovecot_maildir_reads_the_same_through_mailstore() {
    if !prerequisites_ok("dovecot_maildir_reads_the_same_through_mailstore") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let fill = |user: &str, n: &str, size: &str, new: bool| {
        let mut c = Command::new("python3");
        c.arg(peers_dir().join("fill-maildir.py"))
            .arg(root.path().join(user))
            .args([n, size])
            .stdout(Stdio::null());
        if new {
            c.arg("--new");
        }
        assert!(
            run(&mut c, Duration::from_secs(60)),
            "fill-maildir.py failed"
        );
    };
    fill("joe", "40", "3000", false);
    fill("ann", "12", "1500", true);

    // What Dovecot serves.
    let dovecot = Dovecot::start(root.path());
    let mut served = Vec::new();
    for user in ["joe", "ann"] {
        let mut pop = Pop3::login(dovecot.port, user);
        let list = pop.listing("LIST");
        let uidl = pop.listing("UIDL");
        let mut msgs = Vec::new();
        for (n, size) in &list {
            let body = pop.multi(&format!("RETR {n}"));
            msgs.push((size.parse::<u64>().unwrap(), uidl[n - 1].1.clone(), body));
        }
        pop.ok("QUIT");
        served.push(msgs);
    }
    drop(dovecot);

    // What mailstore reads from the same Maildirs, twice (UIDs stable).
    let store = MaildirStore::new(root.path(), MaildirOptions::default()).unwrap();
    assert_eq!(
        store.users().unwrap(),
        vec![UserName::new("ann").unwrap(), UserName::new("joe").unwrap()]
    );
    for _ in 0..2 {
        for (user, want) in ["joe", "ann"].iter().zip(&served) {
            let u = UserName::new(*user).unwrap();
            let mut md = open_maildrop(&store, &u);
            assert_eq!(md.entries().len(), want.len(), "{user}");
            for (i, (size, uidl, body)) in want.iter().enumerate() {
                let e = md.entries()[i].clone();
                assert_eq!(e.size, *size, "{user} {}", i + 1);
                assert_eq!(e.uid.as_str(), uidl, "{user} {}: UIDL as Dovecot's", i + 1);
                assert_eq!(&as_sent(read_all(md.read_message(i + 1).unwrap())), body);
            }
        }
    }
    // Retrieved-and-committed mail moves to cur/ like Dovecot does.
    let ann = UserName::new("ann").unwrap();
    let mut md = open_maildrop(&store, &ann);
    let _ = read_all(md.read_message(1).unwrap());
    md.mark_deleted(2).unwrap();
    let s = md.commit().unwrap();
    assert_eq!(
        (s.deleted, s.seen),
        (1, 0),
        "Dovecot had already set \\Seen"
    );
    assert_eq!(open_maildrop(&store, &ann).entries().len(), 11);
}

/// Opens a maildrop, retrying `InUse` for up to 2 s: the lock file's
/// descriptor is briefly shared with a child process that another test
/// thread is spawning (between fork and exec), and flock is released only
/// when every copy is closed.
fn open_maildrop(store: &MaildirStore, user: &UserName) -> Box<dyn Maildrop> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match store.open_maildrop(user) {
            Err(Error::InUse) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.unwrap(),
        }
    }
}

#[test]
fn doveadm_sees_our_spam_folder_and_save_times() {
    if !prerequisites_ok("doveadm_sees_our_spam_folder_and_save_times") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::new(root.path(), MaildirOptions::default()).unwrap();
    let joe = UserName::new("joe").unwrap();
    store.create_user(&joe).unwrap();
    let spam: [&[u8]; 3] = [
        b"Subject: old spam\nDate: Thu, 01 Jan 2099 00:00:00 +0000\n\nbuy\n",
        b"Subject: new spam\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n\r\nbuy now\r\n",
        b"Subject: mixed\n\r\nline\nline\r\n",
    ];
    for m in spam {
        store.deliver(&joe, Folder::Spam, &mut &m[..]).unwrap();
    }
    // The first one was saved 8 days ago (its Date header says 2099).
    // (Found by content: `M<usecs>` is not zero-padded, so names do not sort
    // in delivery order when the microseconds gain a digit.)
    let new = root.path().join("joe/.Spam/new");
    let old_spam = std::fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().starts_with(b"Subject: old spam"))
        .expect("the old spam's file");
    let eight_days_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 86400);
    std::fs::File::options()
        .write(true)
        .open(&old_spam)
        .unwrap()
        .set_modified(eight_days_ago)
        .unwrap();
    let mut ours: Vec<u64> = store
        .list(&joe, Folder::Spam)
        .unwrap()
        .iter()
        .map(|m| m.size)
        .collect();
    ours.sort_unstable();

    let dovecot = Dovecot::start(root.path());
    let list = dovecot.doveadm(&["mailbox", "list", "-u", "joe"]);
    assert!(list.lines().any(|l| l.trim() == "Spam"), "{list}");
    let fetched = dovecot.doveadm(&["fetch", "-u", "joe", "size.virtual", "mailbox", "Spam"]);
    let mut theirs: Vec<u64> = fetched
        .lines()
        .filter_map(|l| l.strip_prefix("size.virtual: "))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    theirs.sort_unstable();
    assert_eq!(theirs, ours, "CRLF sizes of the Spam folder");
    let old = dovecot.doveadm(&["search", "-u", "joe", "mailbox", "Spam", "before", "7d"]);
    assert_eq!(old.lines().count(), 1, "doveadm before 7d: {old}");
    let recent = dovecot.doveadm(&["search", "-u", "joe", "mailbox", "Spam", "since", "7d"]);
    assert_eq!(recent.lines().count(), 2, "doveadm since 7d: {recent}");
    drop(dovecot);

    // Our 7-day retention removes the same one message.
    let cutoff = std::time::SystemTime::now() - Duration::from_secs(7 * 86400);
    assert_eq!(
        store
            .expunge_older_than(&joe, Folder::Spam, cutoff)
            .unwrap(),
        1
    );
    let left = store.list(&joe, Folder::Spam).unwrap();
    assert_eq!(left.len(), 2);
    for m in left {
        let body = read_all(store.read(&joe, Folder::Spam, &m.uid).unwrap());
        assert!(!body.starts_with(b"Subject: old spam"));
    }
}

/// Dovecot's Maildir++ quota for `doveadm`, limited to `quota` octets.
fn with_maildir_quota(quota: u64, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "-o",
        "mail_plugins=quota",
        "-o",
        "plugin/quota=maildir:User quota",
        "-o",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!("plugin/quota_rule=*:storage={quota}B"));
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// `doveadm quota get`'s STORAGE (KiB) and MESSAGE values.
fn dovecot_quota(dovecot: &Dovecot, quota: u64) -> (u64, u64) {
    let args = with_maildir_quota(quota, &["quota", "get", "-u", "joe"]);
    let out = dovecot.doveadm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let value = |kind: &str| {
        out.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let i = f.iter().position(|w| *w == kind)?;
                f.get(i + 1)?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {kind} in {out}"))
    };
    (value("STORAGE"), value("MESSAGE"))
}

#[test]
fn maildirsize_is_shared_with_dovecots_maildir_quota() {
    if !prerequisites_ok("maildirsize_is_shared_with_dovecots_maildir_quota") {
        return;
    }
    const QUOTA: u64 = 100_000;
    let root = tempfile::tempdir().unwrap();
    let mut opts = MaildirOptions::default();
    opts.user_quota = Some(QUOTA);
    let store = MaildirStore::new(root.path(), opts).unwrap();
    let joe = UserName::new("joe").unwrap();
    store.create_user(&joe).unwrap();
    // Whole KiB, so that Dovecot's STORAGE (in KiB) is exact.
    for (folder, kib) in [(Folder::Inbox, 2), (Folder::Spam, 3), (Folder::Inbox, 5)] {
        let body = vec![b'x'; kib * 1024];
        store.deliver(&joe, folder, &mut &body[..]).unwrap();
    }
    let mut md = open_maildrop(&store, &joe);
    let two_kib = md.entries().iter().position(|e| e.size < 3000).unwrap() + 1;
    md.mark_deleted(two_kib).unwrap();
    md.commit().unwrap();
    let file = root.path().join("joe/maildirsize");
    let ours = std::fs::read_to_string(&file).unwrap();
    assert_eq!(ours, "100000S\n0 0\n2048 1\n3072 1\n5120 1\n-2048 -1\n");

    // Dovecot reads our totals, and keeps our file as it is (a file it
    // could not read, it would have recounted and rewritten).
    let dovecot = Dovecot::start(root.path());
    assert_eq!(dovecot_quota(&dovecot, QUOTA), (8, 2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ours);

    // Dovecot's own recount we read as it is, and add to.
    let args = with_maildir_quota(QUOTA, &["quota", "recalc", "-u", "joe"]);
    dovecot.doveadm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let theirs = std::fs::read_to_string(&file).unwrap();
    assert_eq!(theirs, "100000S\n8192 2\n");
    let ino = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
    let before = ino();
    store.check_quota(&joe, 1000).unwrap();
    assert_eq!(ino(), before, "not rewritten");
    store
        .deliver(&joe, Folder::Inbox, &mut &vec![b'y'; 4096][..])
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "100000S\n8192 2\n4096 1\n"
    );
    assert_eq!(dovecot_quota(&dovecot, QUOTA), (12, 3));
}

/// Every (POP3 id, message) pair a server serves: `RETR` of each message
/// with its `UIDL` id.
fn dovecot_ids(port: u16, user: &str) -> Vec<(String, Vec<u8>)> {
    let mut pop = Pop3::login(port, user);
    let uidl = pop.listing("UIDL");
    let out = uidl
        .iter()
        .map(|(n, id)| (id.clone(), pop.multi(&format!("RETR {n}"))))
        .collect();
    pop.ok("QUIT");
    out
}

/// Dovecot and mailstore serving one Maildir in turn (a move with a way
/// back, or both serving it): each numbers the messages new to it on its own
/// under the one UID validity we took from Dovecot, so a message we number
/// and one Dovecot numbers next could get the same UID. A POP3 id must never
/// name two different messages, or a client that leaves mail on the server
/// skips one of them as already fetched (a probe lost a message that way
/// with mpop). Here Dovecot numbers a message X while our message W, which
/// we numbered first, is out of its sight.
#[test]
fn dovecot_and_mailstore_never_give_one_id_to_two_messages() {
    if !prerequisites_ok("dovecot_and_mailstore_never_give_one_id_to_two_messages") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let joe_dir = root.path().join("joe");
    let mut fill = Command::new("python3");
    fill.arg(peers_dir().join("fill-maildir.py"))
        .arg(&joe_dir)
        .args(["3", "1000"])
        .stdout(Stdio::null());
    assert!(run(&mut fill, Duration::from_secs(60)), "fill-maildir.py");
    let dovecot = Dovecot::start(root.path());
    let first = dovecot_ids(dovecot.port, "joe");
    assert_eq!(first.len(), 3);

    // We take Dovecot's numbering over, then number a delivery of ours.
    let store = MaildirStore::new(root.path(), MaildirOptions::default()).unwrap();
    let joe = UserName::new("joe").unwrap();
    let seeded: Vec<String> = open_maildrop(&store, &joe)
        .entries()
        .iter()
        .map(|e| e.uid.to_string())
        .collect();
    let dovecots: Vec<String> = first.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(seeded, dovecots, "Dovecot's ids taken over");
    store
        .deliver(&joe, Folder::Inbox, &mut &b"Subject: W\r\n\r\nours\r\n"[..])
        .unwrap();
    drop(open_maildrop(&store, &joe));

    // Dovecot numbers X while W is away, then W.
    let new = joe_dir.join("new");
    let w_name = std::fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .find(|n| !n.to_string_lossy().starts_with('.'))
        .expect("W in new/");
    // Both servers run as one user in a real set-up: Dovecot's is the
    // owner of the Maildir (its start script chowned it).
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&joe_dir).unwrap();
        std::os::unix::fs::chown(new.join(&w_name), Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let aside = root.path().join("aside");
    std::fs::rename(new.join(&w_name), &aside).unwrap();
    std::fs::write(
        new.join("1900000000.M1P1.dovecot-x"),
        b"Subject: X\r\n\r\nhis\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(dovecot_ids(dovecot.port, "joe").len(), 4);
    // Dovecot tells changes of a Maildir directory by its mtime, in whole
    // seconds: one change per second keeps its view exact.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::rename(&aside, new.join(&w_name)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let theirs = dovecot_ids(dovecot.port, "joe");
    assert_eq!(theirs.len(), 5);
    drop(dovecot);

    let mut md = open_maildrop(&store, &joe);
    let ours: Vec<(String, Vec<u8>)> = (1..=md.entries().len())
        .map(|n| {
            let id = md.entries()[n - 1].uid.to_string();
            (id, as_sent(read_all(md.read_message(n).unwrap())))
        })
        .collect();
    assert_eq!(ours.len(), 5);
    for (id, body) in &ours {
        for (their_id, their_body) in &theirs {
            if id == their_id {
                assert_eq!(
                    String::from_utf8_lossy(body),
                    String::from_utf8_lossy(their_body),
                    "id {id} names two messages"
                );
            }
        }
    }
    // The three Dovecot numbered first keep its ids on both servers.
    for (id, _) in &first {
        assert!(ours.iter().any(|(o, _)| o == id), "{id}");
    }
}
